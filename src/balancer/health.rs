//! Per-account live state: every counter the balancer measures about one
//! account, as atomics, so the select path reads without locks and feedback
//! writes without blocking selection. Owns the EWMAs (latency, TTFB, a peak
//! TTFB for `latency`), the sliding outcome window, the circuit breaker, the
//! cooldowns (whole account and per model family), the last error and the
//! cached health score. Choosing between accounts lives in `strategy.rs`;
//! reading upstream headers into headroom lives in `headroom.rs`.

use super::model::ModelFamily;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

const R: Ordering = Ordering::Relaxed;

/// Outcome window: 6 buckets of 10 s (one minute, sliding by 10 s).
const BUCKETS: usize = 6;
const BUCKET_MS: u64 = 10_000;
pub(crate) const WINDOW_MS: u64 = BUCKETS as u64 * BUCKET_MS;
/// Time constant of the EWMAs.
const TAU_MS: f64 = 10_000.0;
/// Least weight of one sample in an account's EWMAs, and in the pool's
/// (where one account's samples must not move the reference much).
pub(crate) const ACCOUNT_MIN_WEIGHT: f64 = 0.25;
pub(crate) const POOL_MIN_WEIGHT: f64 = 0.02;
/// Consecutive account failures that open the breaker.
const TRIP_CONSECUTIVE: u32 = 5;
/// Or: this error share over at least `TRIP_MIN_SAMPLES` in the window.
const TRIP_ERROR_RATE: f64 = 0.5;
const TRIP_MIN_SAMPLES: u64 = 10;
/// First open period; doubled on each failed trial, capped.
const OPEN_BASE_MS: u64 = 10_000;
const OPEN_MAX_MS: u64 = 300_000;
/// Degraded: this error share over at least 4 samples…
const DEGRADED_ERROR_RATE: f64 = 0.25;
/// …or TTFB this many times the pool's and above an absolute floor.
pub(crate) const DEGRADED_TTFB_FACTOR: f64 = 3.0;
pub(crate) const DEGRADED_TTFB_FLOOR_MS: f64 = 2_000.0;

/// Why an account last failed or rests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorReason {
    /// 429 with retry-after (a burst limit).
    RateLimited = 1,
    /// 429 without retry-after (spend or quota limit).
    QuotaExhausted,
    /// A 5-hour / weekly window reported exhausted by upstream headers.
    WindowExhausted,
    Overloaded,
    ServerError,
    AuthRejected,
    Transport,
    /// The request itself was at fault (not held against the account).
    ClientError,
    /// An error event after content had reached the client.
    StreamError,
    /// Set by an admin or the relay through `cool_down`.
    Manual,
}

impl ErrorReason {
    fn from_u8(v: u8) -> Option<ErrorReason> {
        use ErrorReason::*;
        Some(match v {
            1 => RateLimited,
            2 => QuotaExhausted,
            3 => WindowExhausted,
            4 => Overloaded,
            5 => ServerError,
            6 => AuthRejected,
            7 => Transport,
            8 => ClientError,
            9 => StreamError,
            10 => Manual,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        use ErrorReason::*;
        match self {
            RateLimited => "rate_limited",
            QuotaExhausted => "quota_exhausted",
            WindowExhausted => "window_exhausted",
            Overloaded => "overloaded",
            ServerError => "server_error",
            AuthRejected => "auth_rejected",
            Transport => "transport",
            ClientError => "client_error",
            StreamError => "stream_error",
            Manual => "manual",
        }
    }

    /// Failures that say something about the account's health (the breaker
    /// counts them); limits and client faults do not.
    pub(crate) fn is_account_fault(self) -> bool {
        matches!(
            self,
            ErrorReason::Overloaded
                | ErrorReason::ServerError
                | ErrorReason::AuthRejected
                | ErrorReason::Transport
                | ErrorReason::StreamError
        )
    }
}

/// An exponentially weighted moving average with time-based decay, as f64
/// bits in one atomic (0 bits = no sample yet).
#[derive(Debug, Default)]
pub(crate) struct Ewma {
    bits: AtomicU64,
    at_ms: AtomicU64,
}

impl Ewma {
    /// `peak`: a sample above the average replaces it at once (tower's
    /// peak-EWMA), so a slowing account is noticed on its first slow answer.
    /// `min_weight`: the least weight a sample gets, even in a burst (the
    /// time decay alone would ignore samples arriving in the same instant).
    pub(crate) fn observe(&self, sample: f64, now_ms: u64, peak: bool, min_weight: f64) {
        let at = self.at_ms.swap(now_ms, R);
        let dt = now_ms.saturating_sub(at) as f64;
        let keep = (-dt / TAU_MS).exp().min(1.0 - min_weight);
        let _ = self.bits.fetch_update(R, R, |bits| {
            let old = f64::from_bits(bits);
            let next = if bits == 0 || (peak && sample > old) {
                sample
            } else {
                old * keep + sample * (1.0 - keep)
            };
            Some(next.max(f64::MIN_POSITIVE).to_bits())
        });
    }

    pub(crate) fn get(&self) -> Option<f64> {
        match self.bits.load(R) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// Forgets every sample (an admin reset the account).
    pub(crate) fn reset(&self) {
        self.bits.store(0, R);
        self.at_ms.store(0, R);
    }

    /// The value decayed toward zero by the time since the last sample, so an
    /// idle account slowly looks attractive again and gets probed (tower).
    pub(crate) fn decayed(&self, now_ms: u64) -> Option<f64> {
        let v = self.get()?;
        let dt = now_ms.saturating_sub(self.at_ms.load(R)) as f64;
        Some(v * (-dt / TAU_MS).exp())
    }
}

/// Successes and errors per 10-second bucket; each bucket is one atomic
/// holding its epoch, so stale buckets are recognised without a sweeper.
#[derive(Debug, Default)]
pub(crate) struct OutcomeWindow {
    buckets: [AtomicU64; BUCKETS],
}

const EPOCH_MASK: u64 = 0xff_ffff;
const COUNT_MASK: u64 = 0xf_ffff;

impl OutcomeWindow {
    fn record(&self, now_ms: u64, success: bool) {
        let epoch = (now_ms / BUCKET_MS) & EPOCH_MASK;
        let slot = &self.buckets[(now_ms / BUCKET_MS) as usize % BUCKETS];
        let _ = slot.fetch_update(R, R, |v| {
            let (ep, mut err, mut ok) = (v >> 40, (v >> 20) & COUNT_MASK, v & COUNT_MASK);
            if ep != epoch {
                (err, ok) = (0, 0);
            }
            if success {
                ok = (ok + 1).min(COUNT_MASK);
            } else {
                err = (err + 1).min(COUNT_MASK);
            }
            Some(epoch << 40 | err << 20 | ok)
        });
    }

    /// Forgets every outcome (an admin reset the account).
    pub(crate) fn reset(&self) {
        for slot in &self.buckets {
            slot.store(0, R);
        }
    }

    /// (successes, errors) over the last minute.
    pub(crate) fn totals(&self, now_ms: u64) -> (u64, u64) {
        let current = now_ms / BUCKET_MS;
        let (mut ok, mut err) = (0, 0);
        for slot in &self.buckets {
            let v = slot.load(R);
            let ep = v >> 40;
            let age = (current & EPOCH_MASK).wrapping_sub(ep) & EPOCH_MASK;
            if v != 0 && age < BUCKETS as u64 {
                ok += v & COUNT_MASK;
                err += (v >> 20) & COUNT_MASK;
            }
        }
        (ok, err)
    }
}

/// Breaker position as seen at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Refusing traffic until the given Unix ms.
    Open {
        until_ms: u64,
    },
    /// Open period over: one trial request at a time decides.
    HalfOpen,
}

/// What the select path learns about one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Availability {
    /// Usable; `trial` when the pick must take the breaker's trial slot.
    Ready { trial: bool },
    /// Resting until this Unix ms.
    Resting(u64),
    /// At its concurrency cap, or its half-open trial is already running.
    Full,
}

/// The fields every selection reads, packed into one cache line so a scan
/// over a large pool touches one line per account.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Hot {
    pub in_flight: AtomicU32,
    /// The half-open breaker's single trial is taken.
    pub trial: AtomicBool,
    /// Selection counter value at the last pick (least-recently-used order).
    pub last_pick: AtomicU64,
    /// The latest end of any rest ever set (account, family, breaker): when
    /// it is past, nothing rests and the cold fields need not be read.
    pub rest_until: AtomicU64,
    /// 0 = breaker closed; else the Unix ms its open period ends (half-open after).
    pub breaker_open_until: AtomicU64,
    /// valid-until ms << 21 | degraded << 20 | health score ppm (20 bits),
    /// computed at feedback time and trusted until valid-until.
    pub health: AtomicU64,
    /// Until when header-derived limits say anything (max of their resets).
    pub limits_until: AtomicU64,
    /// The relay's own count of tokens in the current 5-hour window.
    pub window_start: AtomicU64,
    pub window_tokens: AtomicU64,
}

const HEALTH_SCORE_MASK: u64 = 0xf_ffff;
const HEALTH_DEGRADED: u64 = 1 << 20;
const PERFECT_PPM: u32 = 1_000_000;

/// Counters that outlive snapshot rebuilds: a changed account record gets a
/// new slot but keeps the same `LiveState`, so leases taken before the change
/// still release the right counter. The hot line is aligned so two
/// accounts' hot counters never share a cache line; everything else is boxed
/// apart, so the hot lines of a pool sit densely in memory and a scan over
/// a thousand accounts streams through them.
#[derive(Debug, Default)]
pub struct LiveState {
    pub(crate) hot: Hot,
    cold: Box<ColdState>,
}

impl std::ops::Deref for LiveState {
    type Target = ColdState;

    fn deref(&self) -> &ColdState {
        &self.cold
    }
}

/// What feedback, stats and the rarer checks of the select path read.
#[derive(Debug, Default)]
pub struct ColdState {
    /// Unix ms until which the whole account rests; 0 = available.
    pub(crate) cooldown_until: AtomicU64,
    pub(crate) cooldown_reason: AtomicU8,
    /// Unix ms until which one model family is rate-limited on this account.
    pub(crate) family_until: [AtomicU64; ModelFamily::COUNT],
    pub(crate) breaker_opens: AtomicU32,
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) auth_failed: AtomicBool,
    /// Share of the tightest upstream window used, in ppm, from headers;
    /// meaningful until `header_reset` (then the window has renewed).
    pub(crate) header_used_ppm: AtomicU32,
    pub(crate) header_reset: AtomicU64,
    /// Absolute tokens left in the per-minute bucket, until `tokens_reset`.
    pub(crate) tokens_remaining: AtomicU64,
    pub(crate) tokens_reset: AtomicU64,
    /// When the subscription's 5-hour window resets (headers or own counter).
    pub(crate) window_reset: AtomicU64,
    pub(crate) ttfb_peak: Ewma,
    pub(crate) ttfb: Ewma,
    pub(crate) latency: Ewma,
    pub(crate) outcomes: OutcomeWindow,
    /// reason << 16 | status, and when.
    pub(crate) last_error: AtomicU64,
    pub(crate) last_error_at: AtomicU64,
    pub(crate) sticky_held: AtomicI64,
    pub(crate) requests_total: AtomicU64,
    pub(crate) errors_total: AtomicU64,
    pub(crate) tokens_total: AtomicU64,
    pub(crate) spent_nano: AtomicU64,
}

impl LiveState {
    /// Whether a new request may go to this account now. The common case
    /// (nothing resting, breaker closed) reads only the hot line.
    #[inline]
    pub(crate) fn availability(&self, now: u64, family: ModelFamily, cap: u32) -> Availability {
        if self.hot.rest_until.load(R) > now {
            let until = self
                .cooldown_until
                .load(R)
                .max(self.family_until[family.index()].load(R));
            if until > now {
                return Availability::Resting(until);
            }
        }
        let mut trial = false;
        let open_until = self.hot.breaker_open_until.load(R);
        if open_until != 0 {
            if open_until > now {
                return Availability::Resting(open_until);
            }
            if self.hot.trial.load(R) {
                return Availability::Full;
            }
            trial = true;
        }
        if cap != u32::MAX && self.hot.in_flight.load(R) >= cap {
            return Availability::Full;
        }
        Availability::Ready { trial }
    }

    /// Takes one in-flight slot under the cap (a compare-and-swap, so two
    /// selections racing for the last slot cannot both win).
    pub(crate) fn try_acquire(&self, cap: u32) -> bool {
        self.hot
            .in_flight
            .fetch_update(R, R, |n| (n < cap).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn release(&self) {
        let _ = self
            .hot
            .in_flight
            .fetch_update(R, R, |n| Some(n.saturating_sub(1)));
    }

    pub(crate) fn try_take_trial(&self) -> bool {
        self.hot.trial.compare_exchange(false, true, R, R).is_ok()
    }

    pub(crate) fn release_trial(&self) {
        self.hot.trial.store(false, R);
    }

    pub(crate) fn breaker(&self, now: u64) -> BreakerState {
        match self.hot.breaker_open_until.load(R) {
            0 => BreakerState::Closed,
            until if until > now => BreakerState::Open { until_ms: until },
            _ => BreakerState::HalfOpen,
        }
    }

    /// Rests the account until `until_ms` (a later rest already set stays).
    pub(crate) fn cool_down(&self, until_ms: u64, reason: ErrorReason) {
        if self.cooldown_until.fetch_max(until_ms, R) < until_ms {
            self.cooldown_reason.store(reason as u8, R);
        }
        self.hot.rest_until.fetch_max(until_ms, R);
    }

    pub(crate) fn cooldown_reason(&self) -> Option<ErrorReason> {
        ErrorReason::from_u8(self.cooldown_reason.load(R))
    }

    pub(crate) fn limit_family(&self, family: ModelFamily, until_ms: u64) {
        self.family_until[family.index()].fetch_max(until_ms, R);
        self.hot.rest_until.fetch_max(until_ms, R);
    }

    /// Lifts the account-wide rest; family limits and the breaker stay.
    pub(crate) fn clear_cooldown(&self) {
        self.cooldown_until.store(0, R);
        let others = self
            .family_until
            .iter()
            .map(|f| f.load(R))
            .chain(std::iter::once(self.hot.breaker_open_until.load(R)))
            .max()
            .unwrap_or(0);
        self.hot.rest_until.store(others, R);
    }

    pub(crate) fn record_success(&self, now: u64, ttfb_ms: f64, latency_ms: f64, trial: bool) {
        self.requests_total.fetch_add(1, R);
        self.outcomes.record(now, true);
        self.consecutive_failures.store(0, R);
        self.auth_failed.store(false, R);
        self.ttfb_peak
            .observe(ttfb_ms, now, true, ACCOUNT_MIN_WEIGHT);
        self.ttfb.observe(ttfb_ms, now, false, ACCOUNT_MIN_WEIGHT);
        self.latency
            .observe(latency_ms, now, false, ACCOUNT_MIN_WEIGHT);
        let open_until = self.hot.breaker_open_until.load(R);
        // A trial success, or any success once the open period is over,
        // closes the breaker; a success of a request started before the
        // breaker opened says nothing about now.
        if open_until != 0 && (trial || open_until <= now) {
            self.hot.breaker_open_until.store(0, R);
            self.breaker_opens.store(0, R);
        }
        if trial {
            self.release_trial();
        }
    }

    /// Counts a failure; account faults feed the breaker.
    pub(crate) fn record_failure(
        &self,
        now: u64,
        reason: ErrorReason,
        status: Option<u16>,
        trial: bool,
    ) {
        self.last_error.store(
            u64::from(reason as u8) << 16 | u64::from(status.unwrap_or(0)),
            R,
        );
        self.last_error_at.store(now, R);
        if reason == ErrorReason::ClientError {
            if trial {
                self.release_trial();
            }
            return;
        }
        self.requests_total.fetch_add(1, R);
        self.errors_total.fetch_add(1, R);
        self.outcomes.record(now, false);
        if !reason.is_account_fault() {
            if trial {
                self.release_trial();
            }
            return;
        }
        let consecutive = self.consecutive_failures.fetch_add(1, R) + 1;
        let open = self.hot.breaker_open_until.load(R);
        if trial || (open != 0 && open <= now) {
            // The trial failed: open again, for longer.
            self.open_breaker(now);
        } else if open == 0 {
            let (ok, err) = self.outcomes.totals(now);
            let rate_trip =
                ok + err >= TRIP_MIN_SAMPLES && err as f64 >= TRIP_ERROR_RATE * (ok + err) as f64;
            if consecutive >= TRIP_CONSECUTIVE || rate_trip {
                self.open_breaker(now);
            }
        }
        if trial {
            self.release_trial();
        }
    }

    fn open_breaker(&self, now: u64) {
        let opens = self.breaker_opens.fetch_add(1, R).min(5);
        let period = (OPEN_BASE_MS << opens).min(OPEN_MAX_MS);
        self.hot.breaker_open_until.store(now + period, R);
        self.hot.rest_until.fetch_max(now + period, R);
    }

    pub(crate) fn last_error(&self) -> Option<(ErrorReason, Option<u16>, u64)> {
        let packed = self.last_error.load(R);
        let reason = ErrorReason::from_u8((packed >> 16) as u8)?;
        let status = (packed & 0xffff) as u16;
        Some((
            reason,
            (status != 0).then_some(status),
            self.last_error_at.load(R),
        ))
    }

    /// Recomputes the cached health score: success rate (Laplace-smoothed,
    /// squared so errors weigh), TTFB against the pool's, and a penalty for
    /// consecutive failures.
    pub(crate) fn refresh_health(&self, now: u64, pool_ttfb_ms: Option<f64>) {
        let (ok, err) = self.outcomes.totals(now);
        let success = (ok as f64 + 1.0) / ((ok + err) as f64 + 1.0);
        let own = self.ttfb.get();
        let latency = match (own, pool_ttfb_ms) {
            (Some(own), Some(pool)) if own > pool && pool > 0.0 => pool / own,
            _ => 1.0,
        };
        let streak = 1.0 / (1.0 + f64::from(self.consecutive_failures.load(R)));
        let score = (success * success * latency * streak).clamp(0.01, 1.0);
        let slow = match (own, pool_ttfb_ms) {
            (Some(own), Some(pool)) => {
                own > DEGRADED_TTFB_FACTOR * pool && own > DEGRADED_TTFB_FLOOR_MS
            }
            _ => false,
        };
        let failing = ok + err >= 4 && err as f64 >= DEGRADED_ERROR_RATE * (ok + err) as f64;
        let packed = (now + WINDOW_MS) << 21
            | if slow || failing { HEALTH_DEGRADED } else { 0 }
            | ((score * 1e6) as u64).min(HEALTH_SCORE_MASK);
        self.hot.health.store(packed, R);
    }

    /// Cached health in ppm; a score older than the window is forgotten
    /// (no traffic, no evidence), so a shunned account gets another chance.
    #[inline]
    pub(crate) fn health_ppm(&self, now: u64) -> u32 {
        let h = self.hot.health.load(R);
        if h >> 21 < now {
            PERFECT_PPM
        } else {
            (h & HEALTH_SCORE_MASK) as u32
        }
    }

    /// Failing often or slow against the pool, as of the last feedback.
    #[inline]
    pub(crate) fn is_degraded(&self, now: u64) -> bool {
        let h = self.hot.health.load(R);
        h >> 21 >= now && h & HEALTH_DEGRADED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_window_slides() {
        let w = OutcomeWindow::default();
        let t0 = 1_700_000_000_000;
        for i in 0..10 {
            w.record(t0 + i * 1_000, i % 2 == 0);
        }
        assert_eq!(w.totals(t0 + 9_000), (5, 5));
        assert_eq!(w.totals(t0 + 30_000), (5, 5));
        assert_eq!(w.totals(t0 + 70_000), (0, 0));
        w.record(t0 + 70_000, true);
        assert_eq!(w.totals(t0 + 70_000), (1, 0));
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let e = Ewma::default();
        e.observe(100.0, 1_000, true, 0.1);
        e.observe(500.0, 2_000, true, 0.1);
        assert_eq!(e.get(), Some(500.0));
        e.observe(100.0, 12_000, true, 0.1);
        let v = e.get().unwrap();
        assert!(v < 300.0 && v > 100.0, "{v}");
        assert!(e.decayed(42_000).unwrap() < v / 10.0);
    }

    #[test]
    fn breaker_opens_after_consecutive_faults_and_recovers_by_trial() {
        let s = LiveState::default();
        let t0 = 1_700_000_000_000;
        for i in 0..TRIP_CONSECUTIVE as u64 {
            assert_eq!(s.breaker(t0 + i), BreakerState::Closed);
            s.record_failure(t0 + i, ErrorReason::ServerError, Some(500), false);
        }
        let open_until = t0 + 4 + OPEN_BASE_MS;
        assert_eq!(
            s.breaker(t0 + 5),
            BreakerState::Open {
                until_ms: open_until
            }
        );
        assert_eq!(
            s.availability(t0 + 5, ModelFamily::Sonnet, u32::MAX),
            Availability::Resting(open_until)
        );
        let later = open_until + 1;
        assert_eq!(
            s.availability(later, ModelFamily::Sonnet, u32::MAX),
            Availability::Ready { trial: true }
        );
        assert!(s.try_take_trial());
        assert_eq!(
            s.availability(later, ModelFamily::Sonnet, u32::MAX),
            Availability::Full
        );
        // A failed trial reopens for twice as long.
        s.record_failure(later, ErrorReason::Overloaded, Some(529), true);
        assert_eq!(
            s.breaker(later),
            BreakerState::Open {
                until_ms: later + 2 * OPEN_BASE_MS
            }
        );
        let again = later + 2 * OPEN_BASE_MS;
        assert!(s.try_take_trial());
        s.record_success(again, 300.0, 900.0, true);
        assert_eq!(s.breaker(again), BreakerState::Closed);
        assert_eq!(
            s.availability(again, ModelFamily::Sonnet, u32::MAX),
            Availability::Ready { trial: false }
        );
    }

    #[test]
    fn limits_and_client_errors_do_not_trip_the_breaker() {
        let s = LiveState::default();
        for i in 0..20 {
            s.record_failure(i, ErrorReason::ClientError, Some(400), false);
            s.record_failure(i, ErrorReason::RateLimited, Some(429), false);
        }
        assert_eq!(s.breaker(30), BreakerState::Closed);
        assert_eq!(s.last_error().map(|e| e.0), Some(ErrorReason::RateLimited));
    }

    #[test]
    fn concurrency_cap_is_enforced_by_cas() {
        let s = LiveState::default();
        assert!(s.try_acquire(2));
        assert!(s.try_acquire(2));
        assert!(!s.try_acquire(2));
        assert_eq!(s.availability(0, ModelFamily::Opus, 2), Availability::Full);
        s.release();
        assert!(s.try_acquire(2));
    }
}
