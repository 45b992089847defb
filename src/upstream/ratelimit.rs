//! Reads upstream rate-limit headers into a [`RateLimitInfo`]: the per-minute
//! `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*`
//! buckets of API-key accounts (RFC 3339 resets) and the 5-hour / 7-day
//! `anthropic-ratelimit-unified-*` windows of subscription (OAuth) accounts
//! (utilization fractions, Unix-second resets). Pure: no state, no I/O.
//!
//! The struct is plain data so the balancer can take it without knowing
//! anything about HTTP; the relay calls [`parse`] on every upstream answer
//! (success or failure) and hands the result to `Balancer::feedback`.

use http::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything the headers said; fields are `None` when a header was absent or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateLimitInfo {
    pub requests: Bucket,
    /// The most restrictive token bucket upstream applies (input + output).
    pub tokens: Bucket,
    pub input_tokens: Bucket,
    pub output_tokens: Bucket,
    /// Subscription windows; `None` on API-key accounts.
    pub unified: Option<Unified>,
}

/// One per-minute bucket of an API-key account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// When the bucket is fully replenished.
    pub reset: Option<SystemTime>,
}

impl Bucket {
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }
}

/// The unified (subscription) limits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Unified {
    /// Overall verdict for this request.
    pub status: Option<UnifiedStatus>,
    /// When the binding window resets (`anthropic-ratelimit-unified-reset`).
    pub reset: Option<SystemTime>,
    /// Which window the overall status describes.
    pub representative_claim: Option<Claim>,
    pub five_hour: Window,
    pub seven_day: Window,
    /// Weekly per-family windows, when upstream reports them.
    pub seven_day_opus: Window,
    pub seven_day_sonnet: Window,
}

/// One unified window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    pub status: Option<UnifiedStatus>,
    /// Fraction used, 0.0–1.0 (values above 1 mean over the limit).
    pub utilization: Option<f64>,
    pub reset: Option<SystemTime>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnifiedStatus {
    Allowed,
    AllowedWarning,
    Rejected,
}

/// The window named by `anthropic-ratelimit-unified-representative-claim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    FiveHour,
    SevenDay,
    SevenDayOpus,
    SevenDaySonnet,
    Other,
}

const PREFIX: &str = "anthropic-ratelimit-";

/// Parses the rate-limit headers of one upstream answer; `None` when there
/// are none. `now` turns small numeric resets (seconds from now, as some
/// gateways send) into times.
pub fn parse(headers: &HeaderMap, now: SystemTime) -> Option<RateLimitInfo> {
    if !headers.keys().any(|k| k.as_str().starts_with(PREFIX)) {
        return None;
    }
    let get = |name: &str| -> Option<&str> {
        headers
            .get(format!("{PREFIX}{name}").as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let bucket = |name: &str| Bucket {
        limit: get(&format!("{name}-limit")).and_then(|v| v.parse().ok()),
        remaining: get(&format!("{name}-remaining")).and_then(|v| v.parse().ok()),
        reset: get(&format!("{name}-reset")).and_then(|v| parse_time(v, now)),
    };
    // Upstream has spelled the per-family weekly windows both ways.
    let window = |names: &[&str]| {
        names
            .iter()
            .map(|name| Window {
                status: get(&format!("unified-{name}-status")).and_then(parse_status),
                utilization: get(&format!("unified-{name}-utilization"))
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|u| u.is_finite() && *u >= 0.0),
                reset: get(&format!("unified-{name}-reset")).and_then(|v| parse_time(v, now)),
            })
            .find(|w| w != &Window::default())
            .unwrap_or_default()
    };
    let unified = Unified {
        status: get("unified-status").and_then(parse_status),
        reset: get("unified-reset").and_then(|v| parse_time(v, now)),
        representative_claim: get("unified-representative-claim").map(parse_claim),
        five_hour: window(&["5h"]),
        seven_day: window(&["7d"]),
        seven_day_opus: window(&["7d_opus", "7d-opus"]),
        seven_day_sonnet: window(&["7d_sonnet", "7d-sonnet"]),
    };
    Some(RateLimitInfo {
        requests: bucket("requests"),
        tokens: bucket("tokens"),
        input_tokens: bucket("input-tokens"),
        output_tokens: bucket("output-tokens"),
        unified: (unified != Unified::default()).then_some(unified),
    })
}

fn parse_status(v: &str) -> Option<UnifiedStatus> {
    match v.to_ascii_lowercase().as_str() {
        "allowed" => Some(UnifiedStatus::Allowed),
        "allowed_warning" | "warning" => Some(UnifiedStatus::AllowedWarning),
        "rejected" | "throttled" => Some(UnifiedStatus::Rejected),
        _ => None,
    }
}

fn parse_claim(v: &str) -> Claim {
    match v.to_ascii_lowercase().as_str() {
        "five_hour" | "5h" => Claim::FiveHour,
        "seven_day" | "7d" => Claim::SevenDay,
        "seven_day_opus" | "7d_opus" => Claim::SevenDayOpus,
        "seven_day_sonnet" | "7d_sonnet" => Claim::SevenDaySonnet,
        _ => Claim::Other,
    }
}

/// RFC 3339, Unix seconds (unified headers) or Unix milliseconds; a number
/// too small to be a date is taken as seconds from `now`.
fn parse_time(v: &str, now: SystemTime) -> Option<SystemTime> {
    if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        return Some(if n >= 1e12 {
            UNIX_EPOCH + Duration::from_millis(n as u64)
        } else if n >= 1e9 {
            UNIX_EPOCH + Duration::from_secs_f64(n)
        } else {
            now + Duration::from_secs_f64(n)
        });
    }
    let t = chrono::DateTime::parse_from_rfc3339(v).ok()?;
    let secs = u64::try_from(t.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, t.timestamp_subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn api_key_buckets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers(&[
            ("anthropic-ratelimit-requests-limit", "4000"),
            ("anthropic-ratelimit-requests-remaining", "3999"),
            ("anthropic-ratelimit-requests-reset", "2023-11-14T22:14:20Z"),
            ("anthropic-ratelimit-tokens-limit", "2400000"),
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:21.5Z"),
            ("anthropic-ratelimit-input-tokens-remaining", "garbage"),
            ("content-type", "application/json"),
        ]);
        let info = parse(&h, now).unwrap();
        assert_eq!(info.requests.limit, Some(4000));
        assert_eq!(info.requests.remaining, Some(3999));
        assert_eq!(
            info.requests.reset,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_060))
        );
        assert_eq!(info.tokens.remaining, Some(0));
        assert_eq!(
            info.tokens.reset,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_001_500))
        );
        assert!(info.input_tokens.is_empty());
        assert_eq!(info.unified, None);
    }

    #[test]
    fn unified_windows_as_the_simulated_upstream_sends_them() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers(&[
            ("anthropic-ratelimit-unified-status", "rejected"),
            ("anthropic-ratelimit-unified-5h-status", "rejected"),
            ("anthropic-ratelimit-unified-5h-utilization", "1.0000"),
            ("anthropic-ratelimit-unified-5h-reset", "1700003600"),
            ("anthropic-ratelimit-unified-7d-status", "allowed"),
            ("anthropic-ratelimit-unified-7d-utilization", "0.4200"),
            ("anthropic-ratelimit-unified-7d-reset", "1700500000"),
            ("anthropic-ratelimit-unified-7d_opus-utilization", "0.9"),
            (
                "anthropic-ratelimit-unified-representative-claim",
                "five_hour",
            ),
            ("anthropic-ratelimit-unified-reset", "1700003600"),
        ]);
        let u = parse(&h, now).unwrap().unified.unwrap();
        assert_eq!(u.status, Some(UnifiedStatus::Rejected));
        assert_eq!(u.representative_claim, Some(Claim::FiveHour));
        assert_eq!(u.five_hour.utilization, Some(1.0));
        assert_eq!(
            u.five_hour.reset,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_003_600))
        );
        assert_eq!(u.seven_day.status, Some(UnifiedStatus::Allowed));
        assert_eq!(u.seven_day.utilization, Some(0.42));
        assert_eq!(u.seven_day_opus.utilization, Some(0.9));
        assert_eq!(u.seven_day_sonnet, Window::default());
        assert_eq!(u.reset, u.five_hour.reset);
    }

    #[test]
    fn no_rate_limit_headers_is_none_and_relative_resets_work() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse(&headers(&[("retry-after", "3")]), now), None);
        let info = parse(
            &headers(&[("anthropic-ratelimit-requests-reset", "30")]),
            now,
        )
        .unwrap();
        assert_eq!(info.requests.reset, Some(now + Duration::from_secs(30)));
    }
}
