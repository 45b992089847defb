//! Why a request was refused: the kind (which decides the HTTP status and
//! Anthropic error type, see the table in [`super`]), a message naming the
//! limit, its current value and when it resets, and a retry hint. Messages
//! are built only on refusal, never on the admitted path.

use crate::domain::NanoUsd;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// A rate window's requests, tokens or cost.
    Window,
    /// Too many requests in flight (queue full, queue timeout, or no queue).
    Concurrency,
    /// A daily, weekly, monthly, total or family budget is used up.
    Budget,
    /// The model is not allowed for this key.
    Model,
    /// The client (user-agent / request shape) is not allowed for this key.
    Client,
    /// The endpoint family is not permitted for this key.
    Permission,
    /// The key's fixed expiry or activation period is over.
    Expired,
}

impl RefusalKind {
    /// The HTTP status the relay answers with.
    pub fn status(self) -> u16 {
        match self {
            RefusalKind::Window | RefusalKind::Concurrency => 429,
            RefusalKind::Budget => 402,
            RefusalKind::Model | RefusalKind::Client | RefusalKind::Permission => 403,
            RefusalKind::Expired => 401,
        }
    }

    /// The Anthropic error envelope's `error.type`.
    pub fn error_type(self) -> &'static str {
        match self {
            RefusalKind::Window | RefusalKind::Concurrency => "rate_limit_error",
            RefusalKind::Budget => "billing_error",
            RefusalKind::Model | RefusalKind::Client | RefusalKind::Permission => {
                "permission_error"
            }
            RefusalKind::Expired => "authentication_error",
        }
    }

    /// Whether a client should retry on its own (`x-should-retry`): only
    /// short-lived limits; budgets, restrictions and expiry need a person.
    pub fn should_retry(self) -> bool {
        matches!(self, RefusalKind::Window | RefusalKind::Concurrency)
    }
}

/// A refused request, ready to render in the Anthropic error envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    /// Seconds until the limit frees up (the `retry-after` header), when known.
    pub retry_after_secs: Option<u64>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    pub(super) fn new(kind: RefusalKind, message: String, retry_after_secs: Option<u64>) -> Self {
        Self {
            kind,
            message,
            retry_after_secs,
        }
    }
}

/// Whole seconds from `now` until `at`, rounded up, at least 1.
pub(super) fn secs_until(now: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    let ms = (at - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

/// `$1.5`, `$0.000123`: exact nano-dollar decimals, as budgets are set.
pub(super) fn usd(v: NanoUsd) -> String {
    format!("${}", v.to_decimal_string())
}

/// `90 seconds`, `1 minute`, `5 hours`, `1 day`, `1 hour 30 minutes`.
pub(super) fn span(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut parts = Vec::new();
    let mut left = secs;
    for (size, name) in UNITS {
        let n = left / size;
        if n > 0 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
            left -= n * size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        "0 seconds".into()
    } else {
        parts.join(" ")
    }
}

/// `2026-01-02T00:00:00Z (in 3 hours 5 minutes)`.
pub(super) fn reset_phrase(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    format!(
        "{} (in {})",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        span(secs_until(now, at))
    )
}

/// A reset in a key's zone: UTC, plus the local wall time for people.
pub(super) fn local_reset_phrase(now: DateTime<Utc>, at: DateTime<Utc>, tz: Tz) -> String {
    if tz == chrono_tz::UTC {
        return reset_phrase(now, at);
    }
    format!(
        "{}, {} {}",
        reset_phrase(now, at),
        at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_type_pairs() {
        use RefusalKind::*;
        let pairs: Vec<_> = [
            Window,
            Concurrency,
            Budget,
            Model,
            Client,
            Permission,
            Expired,
        ]
        .into_iter()
        .map(|k| (k.status(), k.error_type(), k.should_retry()))
        .collect();
        assert_eq!(
            pairs,
            [
                (429, "rate_limit_error", true),
                (429, "rate_limit_error", true),
                (402, "billing_error", false),
                (403, "permission_error", false),
                (403, "permission_error", false),
                (403, "permission_error", false),
                (401, "authentication_error", false),
            ]
        );
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(1), "1 second");
        assert_eq!(span(90), "1 minute 30 seconds");
        assert_eq!(span(18_000), "5 hours");
        assert_eq!(span(86_400 + 3_600 + 61), "1 day 1 hour");
        assert_eq!(span(0), "0 seconds");
    }

    #[test]
    fn seconds_round_up() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(secs_until(t, t + chrono::TimeDelta::milliseconds(1500)), 2);
        assert_eq!(secs_until(t, t), 1);
        assert_eq!(secs_until(t, t - chrono::TimeDelta::seconds(5)), 1);
    }
}
