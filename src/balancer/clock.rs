//! Time and randomness for the balancer, both injected so tests and the
//! workload simulation are deterministic: a [`Clock`] that reads tokio's clock
//! (so `tokio::time::pause()` works) or a hand-driven [`ManualClock`], and a
//! lock-free seeded [`Rng`].
//!
//! Times are kept as Unix milliseconds in atomics: upstream resets arrive as
//! wall-clock times, and one unit for both avoids conversions on the select path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The balancer's notion of now, in Unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// Wall time at construction plus tokio's monotonic time since then: immune
/// to wall-clock jumps, and it follows a paused tokio clock in tests.
#[derive(Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
    origin_unix_ms: u64,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
            origin_unix_ms: unix_ms(SystemTime::now()),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.origin_unix_ms.saturating_add(elapsed)
    }
}

/// A clock that moves only when told to (simulation, tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock {
            now_ms: AtomicU64::new(unix_ms(start)),
        }
    }

    pub fn set(&self, at: SystemTime) {
        self.now_ms.store(unix_ms(at), Ordering::Relaxed);
    }

    pub fn set_ms(&self, unix_ms: u64) {
        self.now_ms.store(unix_ms, Ordering::Relaxed);
    }

    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// SplitMix64 over one atomic counter: every draw is one `fetch_add`, so
/// concurrent selections never wait on each other, and a fixed seed with a
/// fixed call order gives a fixed sequence.
#[derive(Debug)]
pub struct Rng {
    state: AtomicU64,
}

impl Rng {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub fn seeded(seed: u64) -> Rng {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    /// Seeded from the OS clock and address entropy; for production use.
    pub fn from_entropy() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        Rng::seeded(t ^ (&local as *const u8 as u64).rotate_left(32))
    }

    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(Self::GAMMA, Ordering::Relaxed)
            .wrapping_add(Self::GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by Lemire's multiply-shift (bias < n / 2^64).
    pub fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::default();
        let t0 = clock.now_ms();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms() - t0, 90_000);
    }

    #[test]
    fn seeded_rng_is_reproducible_and_in_range() {
        let a = Rng::seeded(42);
        let b = Rng::seeded(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut seen = [0u32; 5];
        for _ in 0..5_000 {
            seen[a.below(5)] += 1;
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
