//! A point-in-time view of the balancer for the admin API (the
//! `balancerStats` query and subscription): per-account state, weights,
//! health, load, latency, headroom, cooldowns and sticky sessions held, plus
//! decision counts per strategy. Built from the atomics on demand; the select
//! path never pays for it.

use super::clock::from_unix_ms;
use super::headroom;
use super::health::{BreakerState, ErrorReason, LiveState};
use super::model::ModelFamily;
use super::snapshot::AccountSlot;
use crate::domain::{AccountId, AccountStatus, StrategyKind};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

const R: Ordering = Ordering::Relaxed;

#[derive(Clone, Debug, PartialEq)]
pub struct BalancerStats {
    pub at: SystemTime,
    pub strategy: StrategyKind,
    pub sticky_ttl: Duration,
    pub decisions: DecisionCounts,
    /// Live (pool, session) → account mappings (approximate).
    pub sticky_sessions: u64,
    /// The pool-wide TTFB average the degraded check compares against.
    pub pool_ttfb_ms: Option<f64>,
    pub accounts: Vec<AccountStats>,
}

/// Selections made, by the strategy that made them, plus sticky outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    pub priority: u64,
    pub least_used: u64,
    pub cost_first: u64,
    pub balanced: u64,
    pub latency: u64,
    /// Requests served by their session's sticky account (not counted above).
    pub sticky_hits: u64,
    /// Sessions moved off an account that cooled down, failed or degraded.
    pub sticky_moves: u64,
    /// Requests for which no account could be chosen.
    pub refused: u64,
}

impl DecisionCounts {
    pub fn by_strategy(&self, kind: StrategyKind) -> u64 {
        match kind {
            StrategyKind::Priority => self.priority,
            StrategyKind::LeastUsed => self.least_used,
            StrategyKind::CostFirst => self.cost_first,
            StrategyKind::Balanced => self.balanced,
            StrategyKind::Latency => self.latency,
        }
    }
}

/// What an account is doing, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountState {
    Healthy,
    /// Usable but failing often, slow against the pool, or on a half-open trial.
    Degraded,
    /// Resting (cooldown or open breaker) until `cooldown_until`.
    CoolingDown,
    /// Some model families are rate-limited (`rate_limited`); others serve.
    RateLimited,
    /// Upstream refused its credentials.
    AuthFailed,
    /// Turned off by an admin.
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyLimit {
    pub family: ModelFamily,
    pub until: SystemTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastError {
    pub reason: ErrorReason,
    pub status: Option<u16>,
    pub at: SystemTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AccountStats {
    pub id: AccountId,
    pub name: String,
    pub state: AccountState,
    pub cooldown_until: Option<SystemTime>,
    pub cooldown_reason: Option<ErrorReason>,
    pub breaker: BreakerState,
    pub rate_limited: Vec<FamilyLimit>,
    pub weight: u32,
    /// 0–1: success rate, latency against the pool, recent failures.
    pub health_score: f64,
    pub in_flight: u32,
    pub max_concurrency: Option<u32>,
    /// Over the last minute.
    pub requests_per_sec: f64,
    pub error_rate: f64,
    pub ewma_latency_ms: Option<f64>,
    pub ewma_ttfb_ms: Option<f64>,
    /// Share of the tightest window left, 0–1.
    pub headroom: f64,
    pub window_tokens_used: u64,
    pub window_resets_at: Option<SystemTime>,
    pub sticky_sessions: u64,
    pub last_error: Option<LastError>,
    pub requests_total: u64,
    pub errors_total: u64,
    pub tokens_total: u64,
    pub spent_nano: u64,
}

pub(crate) fn account(slot: &AccountSlot, now: u64) -> AccountStats {
    let live: &LiveState = &slot.live;
    let cooldown = live.cooldown_until.load(R);
    let breaker = live.breaker(now);
    let rate_limited: Vec<FamilyLimit> = ModelFamily::ALL
        .iter()
        .filter_map(|&family| {
            let until = live.family_until[family.index()].load(R);
            (until > now).then(|| FamilyLimit {
                family,
                until: from_unix_ms(until),
            })
        })
        .collect();
    let rest_until = match breaker {
        BreakerState::Open { until_ms } => cooldown.max(until_ms),
        _ => cooldown,
    };
    let state = if slot.status == AccountStatus::Disabled || slot.status == AccountStatus::Deleted {
        AccountState::Disabled
    } else if slot.status == AccountStatus::AuthFailed
        || (live.auth_failed.load(R) && rest_until > now)
    {
        AccountState::AuthFailed
    } else if rest_until > now {
        AccountState::CoolingDown
    } else if !rate_limited.is_empty() {
        AccountState::RateLimited
    } else if live.is_degraded(now) || breaker == BreakerState::HalfOpen {
        AccountState::Degraded
    } else {
        AccountState::Healthy
    };
    let (ok, err) = live.outcomes.totals(now);
    let window_limit = slot.routing.window_token_limit.unwrap_or(0);
    let (left, _) = headroom::headroom(live, now, headroom::WindowLimit::new(window_limit), 0);
    let window_start = live.hot.window_start.load(R);
    let window_tokens_used = if window_start != 0 && now < window_start + headroom::FIVE_HOURS_MS {
        live.hot.window_tokens.load(R)
    } else {
        0
    };
    AccountStats {
        id: slot.id,
        name: slot.name.clone(),
        state,
        cooldown_until: (rest_until > now).then(|| from_unix_ms(rest_until)),
        cooldown_reason: (cooldown > now).then(|| live.cooldown_reason()).flatten(),
        breaker,
        rate_limited,
        weight: slot.routing.weight,
        health_score: f64::from(live.health_ppm(now)) / 1e6,
        in_flight: live.hot.in_flight.load(R),
        max_concurrency: slot.routing.max_concurrency.filter(|&c| c > 0),
        requests_per_sec: (ok + err) as f64 / (super::health::WINDOW_MS as f64 / 1000.0),
        error_rate: if ok + err == 0 {
            0.0
        } else {
            err as f64 / (ok + err) as f64
        },
        ewma_latency_ms: live.latency.get(),
        ewma_ttfb_ms: live.ttfb.get(),
        headroom: f64::from(left) / 1e6,
        window_tokens_used,
        window_resets_at: match live.window_reset.load(R) {
            t if t > now => Some(from_unix_ms(t)),
            _ => None,
        },
        sticky_sessions: u64::try_from(live.sticky_held.load(R)).unwrap_or(0),
        last_error: live.last_error().map(|(reason, status, at)| LastError {
            reason,
            status,
            at: from_unix_ms(at),
        }),
        requests_total: live.requests_total.load(R),
        errors_total: live.errors_total.load(R),
        tokens_total: live.tokens_total.load(R),
        spent_nano: live.spent_nano.load(R),
    }
}
