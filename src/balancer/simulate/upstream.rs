//! The simulation's upstream, in process: per-account prompt caching (a
//! cache write the first time an account sees a prefix, reads after, 5-minute
//! TTL refreshed on use), per-account limits (a 5-hour token window on
//! subscriptions, a per-minute input-token bucket on pay-per-token accounts),
//! rate-limit "headers" as the parser would produce them, injected 529s, and a
//! latency model in which uncached prompt tokens cost time. Deterministic for
//! a seed.

use super::super::clock::{from_unix_ms, Rng};
use crate::domain::TokenUsage;
use crate::upstream::ratelimit::{Bucket, Claim, RateLimitInfo, Unified, UnifiedStatus, Window};
use std::collections::HashMap;

const CACHE_TTL_MS: u64 = 5 * 60 * 1000;
const FIVE_HOURS_MS: u64 = 5 * 3600 * 1000;
const MINUTE_MS: u64 = 60_000;
/// Tokens of framing every request carries besides its cached prompt.
const OVERHEAD_TOKENS: u64 = 3;

/// One upstream account of the scenario.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    pub name: &'static str,
    /// Subscription (OAuth): free inside its 5-hour window.
    pub subscription: bool,
    /// Subscription window size in tokens (all four kinds).
    pub window_tokens: u64,
    /// Pay-per-token: list price × this.
    pub cost_multiplier: f64,
    /// Share of attempts answered 529.
    pub overload_rate: f64,
    pub base_ttfb_ms: f64,
    /// Pay-per-token: input + cache-write tokens per minute.
    pub input_tokens_per_minute: u64,
}

/// One attempt as upstream sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub session: u32,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Relative speed of the model: time per output token, and TTFB factor.
    pub ms_per_output_token: f64,
    pub ttfb_factor: f64,
}

pub(crate) enum Answer {
    Ok {
        usage: TokenUsage,
        ttfb_ms: u64,
        latency_ms: u64,
        limits: RateLimitInfo,
    },
    /// 529 overloaded, answered after `after_ms`.
    Overloaded { after_ms: u64 },
    /// 429; `retry_after_ms` only for burst limits.
    RateLimited {
        after_ms: u64,
        retry_after_ms: Option<u64>,
        limits: RateLimitInfo,
    },
}

struct CacheEntry {
    tokens: u64,
    expires_ms: u64,
}

struct AccountState {
    spec: AccountSpec,
    window_start: u64,
    window_used: u64,
    minute_start: u64,
    minute_used: u64,
}

pub(crate) struct Upstream {
    accounts: Vec<AccountState>,
    caches: HashMap<(usize, u32), CacheEntry>,
    rng: Rng,
}

impl Upstream {
    pub(crate) fn new(specs: &[AccountSpec], seed: u64) -> Upstream {
        Upstream {
            accounts: specs
                .iter()
                .map(|spec| AccountState {
                    spec: spec.clone(),
                    window_start: 0,
                    window_used: 0,
                    minute_start: 0,
                    minute_used: 0,
                })
                .collect(),
            caches: HashMap::new(),
            rng: Rng::seeded(seed),
        }
    }

    pub(crate) fn answer(&mut self, account: usize, a: &Attempt, now: u64) -> Answer {
        let jitter = 0.8 + 0.4 * self.rng.unit();
        let Some(acct) = self.accounts.get_mut(account) else {
            return Answer::Overloaded { after_ms: 1 };
        };
        if self.rng.unit() < acct.spec.overload_rate {
            return Answer::Overloaded {
                after_ms: (300.0 * jitter) as u64,
            };
        }
        if acct.window_start == 0 || now >= acct.window_start + FIVE_HOURS_MS {
            acct.window_start = now;
            acct.window_used = 0;
        }
        if acct.minute_start == 0 || now >= acct.minute_start + MINUTE_MS {
            acct.minute_start = now;
            acct.minute_used = 0;
        }
        let key = (account, a.session);
        let cached = match self.caches.get(&key) {
            Some(e) if e.expires_ms > now => e.tokens.min(a.prompt_tokens),
            _ => 0,
        };
        let usage = TokenUsage {
            input: OVERHEAD_TOKENS,
            output: a.output_tokens,
            cache_creation_5m: a.prompt_tokens - cached,
            cache_creation_1h: 0,
            cache_read: cached,
        };
        if acct.spec.subscription && acct.window_used >= acct.spec.window_tokens {
            let limits = unified(acct, now, true);
            return Answer::RateLimited {
                after_ms: (150.0 * jitter) as u64,
                retry_after_ms: None,
                limits,
            };
        }
        let input_cost = usage.input + usage.cache_creation();
        if !acct.spec.subscription
            && acct.minute_used + input_cost > acct.spec.input_tokens_per_minute
        {
            let reset = acct.minute_start + MINUTE_MS;
            return Answer::RateLimited {
                after_ms: (150.0 * jitter) as u64,
                retry_after_ms: Some(reset.saturating_sub(now).max(1_000)),
                limits: minute(acct, reset),
            };
        }
        // Served: the cache now holds the whole prompt (Claude Code marks
        // its last message), and a read refreshes the TTL.
        self.caches.insert(
            key,
            CacheEntry {
                tokens: a.prompt_tokens,
                expires_ms: now + CACHE_TTL_MS,
            },
        );
        acct.window_used += usage.total();
        acct.minute_used += input_cost;
        // Prompt processing: uncached tokens are slow, cached ones nearly free.
        let ttfb = (acct.spec.base_ttfb_ms
            + usage.cache_creation() as f64 * 0.04
            + usage.cache_read as f64 * 0.002)
            * a.ttfb_factor
            * jitter;
        let latency = ttfb + a.output_tokens as f64 * a.ms_per_output_token * jitter;
        let limits = if acct.spec.subscription {
            unified(acct, now, false)
        } else {
            minute(acct, acct.minute_start + MINUTE_MS)
        };
        Answer::Ok {
            usage,
            ttfb_ms: ttfb as u64,
            latency_ms: latency as u64,
            limits,
        }
    }

    /// Whether a subscription account is still inside its window's budget.
    pub(crate) fn in_window(&self, account: usize) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|a| a.spec.subscription && a.window_used <= a.spec.window_tokens)
    }
}

fn unified(acct: &AccountState, _now: u64, rejected: bool) -> RateLimitInfo {
    let reset = from_unix_ms(acct.window_start + FIVE_HOURS_MS);
    let status = if rejected {
        UnifiedStatus::Rejected
    } else {
        UnifiedStatus::Allowed
    };
    let util = acct.window_used as f64 / acct.spec.window_tokens.max(1) as f64;
    RateLimitInfo {
        unified: Some(Unified {
            status: Some(status),
            reset: Some(reset),
            representative_claim: Some(Claim::FiveHour),
            five_hour: Window {
                status: Some(status),
                utilization: Some(util),
                reset: Some(reset),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn minute(acct: &AccountState, reset: u64) -> RateLimitInfo {
    let limit = acct.spec.input_tokens_per_minute;
    RateLimitInfo {
        input_tokens: Bucket {
            limit: Some(limit),
            remaining: Some(limit.saturating_sub(acct.minute_used)),
            reset: Some(from_unix_ms(reset)),
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subscription: bool) -> AccountSpec {
        AccountSpec {
            name: "t",
            subscription,
            window_tokens: 100_000,
            cost_multiplier: 1.0,
            overload_rate: 0.0,
            base_ttfb_ms: 500.0,
            input_tokens_per_minute: 1_000_000,
        }
    }

    fn attempt(prompt: u64) -> Attempt {
        Attempt {
            session: 1,
            prompt_tokens: prompt,
            output_tokens: 100,
            ms_per_output_token: 10.0,
            ttfb_factor: 1.0,
        }
    }

    #[test]
    fn caching_is_per_account_with_a_five_minute_ttl() {
        let mut up = Upstream::new(&[spec(false), spec(false)], 1);
        let t0 = 1_800_000_000_000;
        let usage = |a: Answer| match a {
            Answer::Ok { usage, .. } => usage,
            _ => panic!("not served"),
        };
        let first = usage(up.answer(0, &attempt(20_000), t0));
        assert_eq!((first.cache_creation_5m, first.cache_read), (20_000, 0));
        let second = usage(up.answer(0, &attempt(21_000), t0 + 60_000));
        assert_eq!(
            (second.cache_creation_5m, second.cache_read),
            (1_000, 20_000)
        );
        let other = usage(up.answer(1, &attempt(21_000), t0 + 60_000));
        assert_eq!(other.cache_read, 0, "another account has its own cache");
        let late = usage(up.answer(0, &attempt(21_000), t0 + 60_000 + CACHE_TTL_MS + 1));
        assert_eq!(late.cache_read, 0, "expired");
    }

    #[test]
    fn subscription_window_runs_out() {
        let mut up = Upstream::new(&[spec(true)], 1);
        let t0 = 1_800_000_000_000;
        let mut served = 0;
        for i in 0..10 {
            match up.answer(0, &attempt(30_000), t0 + i) {
                Answer::Ok { .. } => served += 1,
                Answer::RateLimited { limits, .. } => {
                    let u = limits.unified.unwrap();
                    assert_eq!(u.status, Some(UnifiedStatus::Rejected));
                    break;
                }
                Answer::Overloaded { .. } => panic!("no overloads configured"),
            }
        }
        assert_eq!(
            served, 4,
            "100k window: 30k-token requests until past the limit"
        );
    }
}
