//! The balancer in the admin API: `balancerStats` as a query and as a
//! subscription (pushed every second over graphql-transport-ws) — per-account
//! state, weight, health score, load, rates, EWMA latency and TTFB, headroom,
//! cooldown, sticky sessions held, and decision counts per strategy.

use super::auth::{require_admin, services};
use super::scalars::DateTime;
use super::types::Strategy;
use crate::balancer::{self, AccountState as LiveAccountState, BreakerState};
use async_graphql::{Context, Enum, Object, Result, SimpleObject, Subscription, ID};
use futures::Stream;
use std::time::{Duration, SystemTime};

/// How often the subscription pushes a snapshot.
const PUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum AccountState {
    Healthy,
    Degraded,
    CoolingDown,
    RateLimited,
    AuthFailed,
    Disabled,
}

impl From<LiveAccountState> for AccountState {
    fn from(s: LiveAccountState) -> Self {
        match s {
            LiveAccountState::Healthy => AccountState::Healthy,
            LiveAccountState::Degraded => AccountState::Degraded,
            LiveAccountState::CoolingDown => AccountState::CoolingDown,
            LiveAccountState::RateLimited => AccountState::RateLimited,
            LiveAccountState::AuthFailed => AccountState::AuthFailed,
            LiveAccountState::Disabled => AccountState::Disabled,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

fn time(t: SystemTime) -> DateTime {
    DateTime(t.into())
}

/// Live state of one account.
#[derive(SimpleObject)]
pub struct AccountLiveStats {
    pub account_id: ID,
    pub name: String,
    pub state: AccountState,
    pub circuit: CircuitState,
    pub cooldown_until: Option<DateTime>,
    /// Why it rests (e.g. RATE_LIMITED, SERVER_ERROR), when it does.
    pub cooldown_reason: Option<String>,
    /// Model families upstream limited on their own, with their end.
    pub rate_limited_families: Vec<String>,
    pub weight: u32,
    /// 0–1: success rate, latency and recent errors combined.
    pub health_score: f64,
    pub in_flight: u32,
    pub max_concurrency: Option<u32>,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub ewma_latency_ms: Option<f64>,
    pub ewma_ttfb_ms: Option<f64>,
    /// 0–1 share of the current window still available.
    pub headroom: f64,
    pub window_tokens_used: u64,
    pub window_resets_at: Option<DateTime>,
    pub sticky_sessions: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime>,
    pub requests_total: u64,
    pub errors_total: u64,
    pub tokens_total: u64,
}

/// Decisions taken per strategy since start.
#[derive(SimpleObject)]
pub struct DecisionCounts {
    pub priority: u64,
    pub least_used: u64,
    pub cost_first: u64,
    pub balanced: u64,
    pub latency: u64,
    pub sticky_hits: u64,
    pub sticky_moves: u64,
    pub refused: u64,
}

/// A point-in-time view of the balancer.
#[derive(SimpleObject)]
pub struct BalancerStats {
    pub at: DateTime,
    pub strategy: Strategy,
    pub sticky_ttl_seconds: u64,
    pub sticky_sessions: u64,
    pub pool_ttfb_ms: Option<f64>,
    pub decisions: DecisionCounts,
    pub accounts: Vec<AccountLiveStats>,
}

fn convert(s: balancer::BalancerStats) -> BalancerStats {
    let d = s.decisions;
    BalancerStats {
        at: time(s.at),
        strategy: s.strategy.into(),
        sticky_ttl_seconds: s.sticky_ttl.as_secs(),
        sticky_sessions: s.sticky_sessions,
        pool_ttfb_ms: s.pool_ttfb_ms,
        decisions: DecisionCounts {
            priority: d.priority,
            least_used: d.least_used,
            cost_first: d.cost_first,
            balanced: d.balanced,
            latency: d.latency,
            sticky_hits: d.sticky_hits,
            sticky_moves: d.sticky_moves,
            refused: d.refused,
        },
        accounts: s
            .accounts
            .into_iter()
            .map(|a| AccountLiveStats {
                account_id: ID(a.id.to_string()),
                name: a.name,
                state: a.state.into(),
                circuit: match a.breaker {
                    BreakerState::Closed => CircuitState::Closed,
                    BreakerState::Open { .. } => CircuitState::Open,
                    _ => CircuitState::HalfOpen,
                },
                cooldown_until: a.cooldown_until.map(time),
                cooldown_reason: a.cooldown_reason.map(|r| format!("{r:?}")),
                rate_limited_families: a
                    .rate_limited
                    .iter()
                    .map(|f| format!("{:?}", f.family))
                    .collect(),
                weight: a.weight,
                health_score: a.health_score,
                in_flight: a.in_flight,
                max_concurrency: a.max_concurrency,
                requests_per_second: a.requests_per_sec,
                error_rate: a.error_rate,
                ewma_latency_ms: a.ewma_latency_ms,
                ewma_ttfb_ms: a.ewma_ttfb_ms,
                headroom: a.headroom,
                window_tokens_used: a.window_tokens_used,
                window_resets_at: a.window_resets_at.map(time),
                sticky_sessions: a.sticky_sessions,
                last_error: a.last_error.map(|e| match e.status {
                    Some(s) => format!("{:?} ({s})", e.reason),
                    None => format!("{:?}", e.reason),
                }),
                last_error_at: a.last_error.map(|e| time(e.at)),
                requests_total: a.requests_total,
                errors_total: a.errors_total,
                tokens_total: a.tokens_total,
            })
            .collect(),
    }
}

#[derive(Default)]
pub struct BalancerQuery;

#[Object]
impl BalancerQuery {
    /// The balancer's live view of every account.
    async fn balancer_stats(&self, ctx: &Context<'_>) -> Result<BalancerStats> {
        require_admin(ctx)?;
        Ok(convert(services(ctx)?.balancer.stats()))
    }
}

#[derive(Default)]
pub struct BalancerSubscription;

#[Subscription]
impl BalancerSubscription {
    /// `balancerStats` pushed every second.
    async fn balancer_stats(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = BalancerStats>> {
        require_admin(ctx)?;
        let balancer = services(ctx)?.balancer.clone();
        let mut tick = tokio::time::interval(PUSH_EVERY);
        Ok(async_stream::stream! {
            loop {
                tick.tick().await;
                yield convert(balancer.stats());
            }
        })
    }
}
