//! Per-credential rate-limit windows and the `anthropic-ratelimit-*` headers that describe
//! them: the per-minute request/token windows of API keys, plus the 5-hour and 7-day
//! "unified" windows of OAuth (subscription) credentials.
//!
//! The limits are reported, not enforced: a load benchmark must not be throttled by its own
//! baseline. Rejections are injected with [`super::Fault::RateLimited`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;

use super::wire::CredKind;
use super::RateInfo;

const REQUESTS_LIMIT: u64 = 4_000;
const INPUT_TOKENS_LIMIT: u64 = 2_000_000;
const OUTPUT_TOKENS_LIMIT: u64 = 400_000;
/// Token budgets behind the unified utilisation fractions of OAuth credentials.
const FIVE_HOUR_TOKENS: f64 = 1_000_000.0;
const SEVEN_DAY_TOKENS: f64 = 10_000_000.0;

const MINUTE: Duration = Duration::from_secs(60);
const FIVE_HOURS: Duration = Duration::from_secs(5 * 3600);
const SEVEN_DAYS: Duration = Duration::from_secs(7 * 24 * 3600);

/// A fixed window that starts with the first request after the previous one ended.
#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    resets_at: DateTime<Utc>,
    requests: u64,
    input: u64,
    output: u64,
}

impl Window {
    fn new(now: Instant, wall: DateTime<Utc>, len: Duration) -> Window {
        Window {
            started: now,
            resets_at: wall + chrono::Duration::from_std(len).unwrap_or_default(),
            requests: 0,
            input: 0,
            output: 0,
        }
    }

    fn roll(&mut self, now: Instant, wall: DateTime<Utc>, len: Duration) {
        if now.duration_since(self.started) >= len {
            *self = Window::new(now, wall, len);
        }
    }

    fn add(&mut self, input: u64, output: u64) {
        self.requests += 1;
        self.input += input;
        self.output += output;
    }
}

struct CredWindows {
    minute: Window,
    five_hours: Window,
    seven_days: Window,
}

pub(crate) struct RateLimits {
    by_credential: Mutex<HashMap<String, CredWindows>>,
    /// Multiplies the per-minute limits (benchmarks push far past a real tier).
    scale: std::sync::atomic::AtomicU64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            by_credential: Mutex::default(),
            scale: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl RateLimits {
    pub(crate) fn set_scale(&self, factor: u64) {
        self.scale
            .store(factor.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts the request (and its tokens) and writes the headers describing the windows.
    pub(crate) fn account_and_render(&self, rate: &RateInfo, headers: &mut HeaderMap) {
        let now = Instant::now();
        let wall = Utc::now();
        let (minute, five_hours, seven_days) = {
            let mut all = self.by_credential.lock();
            let w = all
                .entry(rate.credential.value.clone())
                .or_insert_with(|| CredWindows {
                    minute: Window::new(now, wall, MINUTE),
                    five_hours: Window::new(now, wall, FIVE_HOURS),
                    seven_days: Window::new(now, wall, SEVEN_DAYS),
                });
            w.minute.roll(now, wall, MINUTE);
            w.five_hours.roll(now, wall, FIVE_HOURS);
            w.seven_days.roll(now, wall, SEVEN_DAYS);
            for window in [&mut w.minute, &mut w.five_hours, &mut w.seven_days] {
                window.add(rate.input_tokens, rate.output_tokens);
            }
            (w.minute, w.five_hours, w.seven_days)
        };

        let scale = self.scale.load(std::sync::atomic::Ordering::Relaxed);
        let (requests_limit, input_limit, output_limit) = (
            REQUESTS_LIMIT * scale,
            INPUT_TOKENS_LIMIT * scale,
            OUTPUT_TOKENS_LIMIT * scale,
        );
        let reset = minute.resets_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let requests_left = if rate.limited {
            0
        } else {
            requests_limit.saturating_sub(minute.requests)
        };
        let input_left = input_limit.saturating_sub(minute.input);
        let output_left = output_limit.saturating_sub(minute.output);
        let groups: [(&str, u64, u64); 4] = [
            ("requests", requests_limit, requests_left),
            (
                "tokens",
                input_limit + output_limit,
                input_left + output_left,
            ),
            ("input-tokens", input_limit, input_left),
            ("output-tokens", output_limit, output_left),
        ];
        for (name, limit, remaining) in groups {
            put(
                headers,
                &format!("anthropic-ratelimit-{name}-limit"),
                &limit.to_string(),
            );
            put(
                headers,
                &format!("anthropic-ratelimit-{name}-remaining"),
                &remaining.to_string(),
            );
            put(
                headers,
                &format!("anthropic-ratelimit-{name}-reset"),
                &reset,
            );
        }

        if rate.credential.kind == CredKind::OAuth {
            let status = if rate.limited { "rejected" } else { "allowed" };
            let util = |w: &Window, budget: f64| {
                let used = (w.input + w.output) as f64 / budget;
                format!("{:.4}", used.min(1.0))
            };
            let five_reset = five_hours.resets_at.timestamp().to_string();
            let seven_reset = seven_days.resets_at.timestamp().to_string();
            put(headers, "anthropic-ratelimit-unified-status", status);
            put(headers, "anthropic-ratelimit-unified-5h-status", status);
            put(
                headers,
                "anthropic-ratelimit-unified-5h-utilization",
                &util(&five_hours, FIVE_HOUR_TOKENS),
            );
            put(headers, "anthropic-ratelimit-unified-5h-reset", &five_reset);
            put(headers, "anthropic-ratelimit-unified-7d-status", "allowed");
            put(
                headers,
                "anthropic-ratelimit-unified-7d-utilization",
                &util(&seven_days, SEVEN_DAY_TOKENS),
            );
            put(
                headers,
                "anthropic-ratelimit-unified-7d-reset",
                &seven_reset,
            );
            put(
                headers,
                "anthropic-ratelimit-unified-representative-claim",
                "five_hour",
            );
            put(headers, "anthropic-ratelimit-unified-reset", &five_reset);
        }
    }
}

fn put(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}
