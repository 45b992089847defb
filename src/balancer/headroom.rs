//! Headroom: how much of an account's current windows is left, from two
//! sources — upstream rate-limit headers ([`RateLimitInfo`], parsed by
//! `upstream::ratelimit`) and the relay's own token count against an account's
//! configured 5-hour window. Turns an exhausted window into a cooldown until
//! its reset (per model family where upstream says the limit is per family),
//! and tells the select path when an account is close enough to zero that it
//! should only be a last resort.

use super::health::{ErrorReason, LiveState};
use super::model::ModelFamily;
pub use crate::upstream::ratelimit::RateLimitInfo;
use crate::upstream::ratelimit::{Bucket, Claim, UnifiedStatus, Window};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

const R: Ordering = Ordering::Relaxed;

pub(crate) const FIVE_HOURS_MS: u64 = 5 * 3600 * 1000;
/// Per-minute buckets without a reset header are trusted this long.
const BUCKET_DEFAULT_MS: u64 = 60_000;
/// Below this share left (ppm) an account is routed away from before it
/// reaches zero; it stays a last resort.
pub(crate) const LOW_HEADROOM_PPM: u32 = 20_000;
const PPM: f64 = 1_000_000.0;

/// An exhausted window found in the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub until_ms: u64,
    /// `Some` when upstream says only this family is limited.
    pub family: Option<ModelFamily>,
}

/// Records what the headers say and applies any exhaustion as a rest
/// (whole account, or one family). Returns the exhaustion, if any.
pub(crate) fn apply(live: &LiveState, info: &RateLimitInfo, now: u64) -> Option<Exhausted> {
    let mut tightest: Option<(f64, u64)> = None;
    let mut exhausted: Option<Exhausted> = None;
    let mut note = |used: f64, reset: u64| {
        if reset > now && tightest.is_none_or(|(u, _)| used > u) {
            tightest = Some((used, reset));
        }
    };
    let mut tokens_left: Option<(u64, u64)> = None;
    for (bucket, is_tokens) in [
        (&info.requests, false),
        (&info.tokens, true),
        (&info.input_tokens, true),
        (&info.output_tokens, false),
    ] {
        let reset = bucket_reset(bucket, now);
        if let (Some(limit), Some(remaining)) = (bucket.limit, bucket.remaining) {
            if limit > 0 {
                note(1.0 - remaining.min(limit) as f64 / limit as f64, reset);
            }
        }
        if bucket.remaining == Some(0) && reset > now {
            exhausted = later(exhausted, reset, None);
        }
        if let (true, Some(remaining)) = (is_tokens, bucket.remaining) {
            if tokens_left.is_none_or(|(r, _)| remaining < r) {
                tokens_left = Some((remaining, reset));
            }
        }
    }
    if let Some((remaining, reset)) = tokens_left {
        live.tokens_remaining.store(remaining, R);
        live.tokens_reset.store(reset, R);
    }
    if let Some(u) = &info.unified {
        let windows: [(&Window, Option<ModelFamily>); 4] = [
            (&u.five_hour, None),
            (&u.seven_day, None),
            (&u.seven_day_opus, Some(ModelFamily::Opus)),
            (&u.seven_day_sonnet, Some(ModelFamily::Sonnet)),
        ];
        for (w, family) in windows {
            let reset = w.reset.map(ms).or(u.reset.map(ms)).unwrap_or(0);
            if let Some(util) = w.utilization {
                // A family window binds only that family; it must not make
                // the whole account look full.
                if family.is_none() {
                    note(util, reset);
                }
            }
            let full = w.status == Some(UnifiedStatus::Rejected)
                || w.utilization.is_some_and(|x| x >= 1.0);
            if full && reset > now {
                exhausted = later(exhausted, reset, family);
            }
        }
        if let Some(reset) = u.five_hour.reset.or(u.reset) {
            live.window_reset.store(ms(reset), R);
            align_own_window(live, ms(reset));
        }
        if u.status == Some(UnifiedStatus::Rejected) {
            let family = match u.representative_claim {
                Some(Claim::SevenDayOpus) => Some(ModelFamily::Opus),
                Some(Claim::SevenDaySonnet) => Some(ModelFamily::Sonnet),
                _ => None,
            };
            let reset = u.reset.map(ms).unwrap_or(0);
            if reset > now {
                exhausted = later(exhausted, reset, family);
            }
        }
    }
    if let Some((used, reset)) = tightest {
        live.header_used_ppm
            .store((used.clamp(0.0, 1.0) * PPM) as u32, R);
        live.header_reset.store(reset, R);
    }
    let until = live.header_reset.load(R).max(live.tokens_reset.load(R));
    live.hot.limits_until.store(until, R);
    if let Some(x) = exhausted {
        match x.family {
            Some(f) => live.limit_family(f, x.until_ms),
            None => live.cool_down(x.until_ms, ErrorReason::WindowExhausted),
        }
    }
    exhausted
}

/// Keeps the later of two exhaustions; an account-wide one beats a family one.
fn later(cur: Option<Exhausted>, until_ms: u64, family: Option<ModelFamily>) -> Option<Exhausted> {
    let next = Exhausted { until_ms, family };
    Some(match cur {
        None => next,
        Some(c) if c.family.is_some() && family.is_none() => next,
        Some(c) if c.family.is_none() && family.is_some() => c,
        Some(c) if until_ms > c.until_ms => next,
        Some(c) => c,
    })
}

fn bucket_reset(bucket: &Bucket, now: u64) -> u64 {
    bucket.reset.map_or(now + BUCKET_DEFAULT_MS, ms)
}

fn ms(t: SystemTime) -> u64 {
    super::clock::unix_ms(t)
}

/// Upstream named a 5-hour reset: if it starts a window newer than the one
/// being counted, start counting afresh there.
fn align_own_window(live: &LiveState, reset_ms: u64) {
    let start = reset_ms.saturating_sub(FIVE_HOURS_MS);
    let current = live.hot.window_start.load(R);
    if start > current + 60_000
        && live
            .hot
            .window_start
            .compare_exchange(current, start, R, R)
            .is_ok()
    {
        live.hot.window_tokens.store(0, R);
    }
}

/// Adds served tokens to the account's own 5-hour window count.
pub(crate) fn count_window_tokens(live: &LiveState, now: u64, tokens: u64) {
    let start = live.hot.window_start.load(R);
    if (start == 0 || now >= start + FIVE_HOURS_MS)
        && live
            .hot
            .window_start
            .compare_exchange(start, now, R, R)
            .is_ok()
    {
        live.hot.window_tokens.store(0, R);
        live.window_reset.fetch_max(now + FIVE_HOURS_MS, R);
    }
    live.hot.window_tokens.fetch_add(tokens, R);
}

/// Takes back a reservation made at selection (saturating: the window may
/// have rolled over meanwhile).
pub(crate) fn unreserve(live: &LiveState, tokens: u64) {
    if tokens > 0 {
        let _ = live
            .hot
            .window_tokens
            .fetch_update(R, R, |t| Some(t.saturating_sub(tokens)));
    }
}

/// An account's own 5-hour token window, with the tokens → ppm factor
/// precomputed in 32.32 fixed point: a division per account per request
/// showed up as the hottest instruction of a 1,000-account scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WindowLimit {
    pub tokens: u64,
    ppm_q32: u64,
}

impl WindowLimit {
    pub(crate) fn new(tokens: u64) -> WindowLimit {
        WindowLimit {
            tokens,
            ppm_q32: if tokens == 0 {
                0
            } else {
                // Rounded up, so a whole share never reads as a hair less.
                ((1_000_000u128 << 32).div_ceil(u128::from(tokens))).min(u128::from(u64::MAX))
                    as u64
            },
        }
    }

    #[inline]
    fn used_ppm(&self, spent: u64) -> u32 {
        ((u128::from(spent) * u128::from(self.ppm_q32)) >> 32).min(1_000_000) as u32
    }
}

/// Share left (ppm) of the tightest known window, and whether the account is
/// too close to zero for a request of `estimated_tokens`.
#[inline]
pub(crate) fn headroom(
    live: &LiveState,
    now: u64,
    window: WindowLimit,
    estimated_tokens: u64,
) -> (u32, bool) {
    let limits = live.hot.limits_until.load(R) > now;
    if !limits && window.tokens == 0 {
        // Nothing known: the common case reads one word of the hot line.
        return (1_000_000, false);
    }
    let mut used = if limits && live.header_reset.load(R) > now {
        live.header_used_ppm.load(R)
    } else {
        0
    };
    let mut low = false;
    if window.tokens > 0 {
        let start = live.hot.window_start.load(R);
        if start != 0 && now < start + FIVE_HOURS_MS {
            let spent = live.hot.window_tokens.load(R);
            used = used.max(window.used_ppm(spent));
            low |= spent.saturating_add(estimated_tokens) > window.tokens;
        }
    }
    if limits
        && estimated_tokens > 0
        && live.tokens_reset.load(R) > now
        && estimated_tokens > live.tokens_remaining.load(R)
    {
        low = true;
    }
    let left = 1_000_000u32.saturating_sub(used);
    (left, low || left < LOW_HEADROOM_PPM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::ratelimit::Unified;
    use std::time::{Duration, UNIX_EPOCH};

    const NOW: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn exhausted_five_hour_window_rests_until_reset() {
        let live = LiveState::default();
        let reset = NOW + 3_600_000;
        let info = RateLimitInfo {
            unified: Some(Unified {
                status: Some(UnifiedStatus::Rejected),
                reset: Some(at(reset)),
                representative_claim: Some(Claim::FiveHour),
                five_hour: Window {
                    status: Some(UnifiedStatus::Rejected),
                    utilization: Some(1.0),
                    reset: Some(at(reset)),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let x = apply(&live, &info, NOW).unwrap();
        assert_eq!(
            x,
            Exhausted {
                until_ms: reset,
                family: None
            }
        );
        assert_eq!(live.cooldown_until.load(R), reset);
        assert_eq!(live.cooldown_reason(), Some(ErrorReason::WindowExhausted));
    }

    #[test]
    fn weekly_opus_limit_binds_only_opus() {
        let live = LiveState::default();
        let reset = NOW + 86_400_000;
        let info = RateLimitInfo {
            unified: Some(Unified {
                status: Some(UnifiedStatus::Rejected),
                reset: Some(at(reset)),
                representative_claim: Some(Claim::SevenDayOpus),
                five_hour: Window {
                    utilization: Some(0.3),
                    reset: Some(at(NOW + 1_000_000)),
                    ..Default::default()
                },
                seven_day_opus: Window {
                    utilization: Some(1.0),
                    reset: Some(at(reset)),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let x = apply(&live, &info, NOW).unwrap();
        assert_eq!(x.family, Some(ModelFamily::Opus));
        assert_eq!(live.cooldown_until.load(R), 0);
        assert_eq!(live.family_until[ModelFamily::Opus.index()].load(R), reset);
        let (left, low) = headroom(&live, NOW, WindowLimit::default(), 0);
        assert_eq!((left, low), (700_000, false));
    }

    #[test]
    fn api_key_buckets_route_away_before_zero() {
        let live = LiveState::default();
        let reset = at(NOW + 30_000);
        let info = RateLimitInfo {
            requests: Bucket {
                limit: Some(1000),
                remaining: Some(990),
                reset: Some(reset),
            },
            input_tokens: Bucket {
                limit: Some(400_000),
                remaining: Some(5_000),
                reset: Some(reset),
            },
            ..Default::default()
        };
        assert_eq!(apply(&live, &info, NOW), None);
        let (left, low) = headroom(&live, NOW, WindowLimit::default(), 1_000);
        assert_eq!(left, 12_500);
        assert!(low, "1.25 % left is below the reserve");
        let (_, low) = headroom(&live, NOW + 31_000, WindowLimit::default(), 10_000);
        assert!(!low, "the bucket has refilled");
        // Zero remaining: a rest until the reset.
        let empty = RateLimitInfo {
            tokens: Bucket {
                limit: Some(400_000),
                remaining: Some(0),
                reset: Some(reset),
            },
            ..Default::default()
        };
        assert!(apply(&live, &empty, NOW).is_some());
        assert_eq!(live.cooldown_until.load(R), NOW + 30_000);
    }

    #[test]
    fn own_window_counter() {
        let live = LiveState::default();
        count_window_tokens(&live, NOW, 4_000_000);
        assert_eq!(
            headroom(&live, NOW, WindowLimit::new(5_000_000), 500_000),
            (200_000, false)
        );
        assert!(headroom(&live, NOW, WindowLimit::new(5_000_000), 1_500_000).1);
        count_window_tokens(&live, NOW + FIVE_HOURS_MS, 10);
        assert_eq!(live.hot.window_tokens.load(R), 10);
    }
}
