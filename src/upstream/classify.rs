//! Classifies a failed upstream attempt: may the relay try another account,
//! and how long should this account rest? Pure functions over status and
//! headers, so the relay decides failover before any byte reaches the client.

use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime};

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// 429 with a retry-after (a burst limit).
    RateLimited,
    /// 429 without retry-after: a spend or quota limit; retrying soon is pointless.
    QuotaExhausted,
    /// 529 or an overloaded_error event.
    Overloaded,
    /// 5xx.
    ServerError,
    /// 401/403: the account's credentials were refused.
    AuthRejected,
    /// Connect failure, reset, or timeout before a response.
    Transport,
    /// 400/404/413/422 and other 4xx: the request itself is at fault; never failed over.
    ClientError,
}

/// A classified failure with the account's suggested rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub status: Option<u16>,
    /// Rest the account until this time (None: no cooldown).
    pub cooldown_until: Option<SystemTime>,
}

impl Failure {
    /// Another account may be tried (nothing reached the client yet).
    pub fn is_retryable(&self) -> bool {
        self.kind != FailureKind::ClientError
    }
}

/// Classifies a non-2xx upstream status.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    default_cooldown: Duration,
) -> Failure {
    let code = status.as_u16();
    let retry_after = retry_after(headers, now);
    let (kind, rest) = match code {
        429 => match retry_after {
            Some(d) => (FailureKind::RateLimited, Some(d)),
            None => (
                FailureKind::QuotaExhausted,
                Some(default_cooldown.max(Duration::from_secs(300))),
            ),
        },
        529 => (
            FailureKind::Overloaded,
            Some(retry_after.unwrap_or(Duration::from_secs(5))),
        ),
        401 | 403 => (FailureKind::AuthRejected, Some(default_cooldown)),
        408 => (FailureKind::Transport, Some(Duration::from_secs(5))),
        500..=599 => (
            FailureKind::ServerError,
            Some(retry_after.unwrap_or(Duration::from_secs(10))),
        ),
        _ => (FailureKind::ClientError, None),
    };
    Failure {
        kind,
        status: Some(code),
        cooldown_until: rest.map(|d| now + d),
    }
}

/// A transport failure (no response).
pub fn transport_failure(now: SystemTime) -> Failure {
    Failure {
        kind: FailureKind::Transport,
        status: None,
        cooldown_until: Some(now + Duration::from_secs(10)),
    }
}

/// An overloaded or other error event seen inside a 200 stream before content.
pub fn stream_error_failure(now: SystemTime) -> Failure {
    Failure {
        kind: FailureKind::Overloaded,
        status: Some(200),
        cooldown_until: Some(now + Duration::from_secs(5)),
    }
}

/// `retry-after-ms`, else `retry-after` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) =
        header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_millis(ms as u64));
        }
    }
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or_default())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn burst_429_rests_for_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let f = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "17")]),
            now,
            Duration::from_secs(60),
        );
        assert_eq!(f.kind, FailureKind::RateLimited);
        assert_eq!(f.cooldown_until, Some(now + Duration::from_secs(17)));
        assert!(f.is_retryable());
    }

    #[test]
    fn spend_limit_429_rests_long() {
        let now = SystemTime::UNIX_EPOCH;
        let f = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            now,
            Duration::from_secs(60),
        );
        assert_eq!(f.kind, FailureKind::QuotaExhausted);
        assert_eq!(f.cooldown_until, Some(now + Duration::from_secs(300)));
    }

    #[test]
    fn client_errors_are_not_retried() {
        for code in [400u16, 404, 413, 422] {
            let f = classify(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                SystemTime::now(),
                Duration::from_secs(60),
            );
            assert!(!f.is_retryable(), "{code}");
            assert_eq!(f.cooldown_until, None);
        }
        for code in [401u16, 403, 429, 500, 502, 529] {
            let f = classify(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                SystemTime::now(),
                Duration::from_secs(60),
            );
            assert!(f.is_retryable(), "{code}");
        }
    }

    #[test]
    fn retry_after_ms_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let f = classify(
            StatusCode::from_u16(529).unwrap(),
            &headers(&[("retry-after-ms", "1500")]),
            now,
            Duration::from_secs(60),
        );
        assert_eq!(f.cooldown_until, Some(now + Duration::from_millis(1500)));
        let f = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", "Tue, 14 Nov 2023 22:13:40 GMT")]),
            now,
            Duration::from_secs(60),
        );
        assert_eq!(f.cooldown_until, Some(now + Duration::from_secs(20)));
    }
}
