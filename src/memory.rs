//! The process allocator: jemalloc with two arenas, for every binary that
//! links this crate (the relay, its examples and benchmarks measure the same
//! allocator).
//!
//! Why jemalloc over glibc malloc: sled copies a B-tree node on each write,
//! and under `import-redis`'s write load glibc spent about half the CPU in
//! `_int_malloc`/`unlink_chunk` walking fragmented free lists; jemalloc took
//! the 100,000-key import from 121 s to 71 s (same binary otherwise). The
//! relay's own figures do not move: on the 100,000-key admin benchmark store
//! it held 229 MB after the target queries against 226 MB for glibc capped
//! at two arenas (same store, `examples/admin_bench.rs`), inside the 256 MB
//! goal. mimalloc was as fast but held about 100 MB more there.
//!
//! Why two arenas: jemalloc's default is four per core, and memory freed in
//! one arena is not reused by another; the box is small (1–2 cores) and the
//! hot path has few threads. An operator can still override any option with
//! `_RJEM_MALLOC_CONF` in the environment (it is read after this default).

#[cfg(all(target_os = "linux", not(miri)))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer jemalloc reads at start-up (a raw pointer is not
/// `Sync`, so it cannot be a static by itself).
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: it points at an immutable, 'static, NUL-terminated byte string.
unsafe impl Sync for MallocConf {}

/// jemalloc's built-in options (`malloc_conf` under tikv-jemallocator's
/// `_rjem_` symbol prefix), read before the first allocation.
#[cfg(all(target_os = "linux", not(miri)))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf = MallocConf(c"narenas:2".as_ptr());
