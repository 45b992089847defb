//! Process memory tuning for the small box: caps glibc malloc's arenas.
//!
//! glibc gives each thread that contends for the heap its own arena (up to
//! 8 per core), and memory freed in one arena is not reused by another. The
//! relay's threads (tokio workers, sled's flusher, the usage writer) each
//! touch sled pages, so on the 100,000-key benchmark store the process kept
//! about 30 MB more after the same queries than with two arenas, at no
//! measurable latency cost (`examples/admin_bench.rs`).
//!
//! Other allocators, measured on the same store: mimalloc held 287 MB after
//! the benchmark's queries and jemalloc (two arenas) 192 MB, against 184 MB
//! here. Both would halve `import-redis`'s CPU (sled copies a node per
//! write), but the relay is the process that runs all the time.

/// Arenas glibc may create; an operator's `MALLOC_ARENA_MAX` wins.
const MALLOC_ARENAS: i32 = 2;

/// Applies the cap; call once at start-up, before the runtime's threads exist.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before other threads allocate, and a refusal (0) leaves the default.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}
