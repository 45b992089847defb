//! Account selection. The balancer keeps an immutable snapshot of accounts
//! and pools (swapped whole through `ArcSwap` on every store change), with
//! per-account live atomics beside it, and picks one account per attempt
//! without I/O or a shared lock. It hands out a [`Lease`] that releases the
//! in-flight count on drop, and learns from [`Feedback`] the relay gives at
//! the end of each attempt. Knows nothing about HTTP: upstream headers reach
//! it already parsed ([`RateLimitInfo`]).
//!
//! # Layout
//! - `snapshot`: slots, pools, per-(pool, model) eligible lists (precomputed).
//! - `health`: per-account atomics, EWMAs, outcome window, circuit breaker.
//! - `headroom`: upstream rate-limit headers and own window counts → headroom, rests.
//! - `strategy`: the five strategies; they compare, never measure.
//! - `sticky`: (pool, session) → account with a TTL renewed on use.
//! - `session`: session keys from the header, `metadata.user_id`, or a prefix hash.
//! - `model`: families, wildcard allow-lists, model mapping.
//! - `clock`: injected clock and seeded RNG.
//! - `stats`: the admin snapshot.
//! - `simulate`: the workload simulation behind the `balancer` bench.

mod clock;
mod headroom;
mod health;
mod model;
mod reset;
mod scan;
mod session;
pub mod simulate;
mod snapshot;
mod stats;
mod sticky;
mod strategy;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, Rng, TokioClock};
pub use headroom::RateLimitInfo;
pub use health::{BreakerState, ErrorReason, LiveState};
pub use model::{glob_match, ModelFamily};
pub use session::{session_id_from_user_id, session_key, SessionKey};
pub use snapshot::{AccountSlot, PoolKey};
pub use stats::{
    AccountState, AccountStats, BalancerStats, DecisionCounts, FamilyLimit, LastError,
};

use crate::domain::{Account, AccountId, Group, KeyBinding, StrategyKind};
use crate::upstream::{Failure, FailureKind};
use arc_swap::ArcSwap;
use clock::{from_unix_ms, unix_ms};
use health::Availability;
use snapshot::{Eligible, Plan, Snapshot};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use sticky::{StickyKey, StickyMap};

const R: Ordering = Ordering::Relaxed;

/// Rest after a failure that named none (classify normally names one).
const DEFAULT_REST_MS: u64 = 30_000;
/// TTFB assumed before any sample exists.
const DEFAULT_TTFB_MS: f64 = 1_000.0;

/// One request's routing needs.
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    /// Requested model; allow-lists and mappings apply to it. Empty: any model.
    pub model: &'a str,
    /// From [`session_key`]; `None`: no stickiness.
    pub session: Option<SessionKey>,
    /// `None` → shared pool; `Account` → that account only; `Group` → its members.
    pub binding: KeyBinding,
    /// Input + expected output tokens, for headroom checks (0: unknown).
    pub estimated_tokens: u64,
    /// List-price estimate in nano-USD, for `cost_first` (0: unknown).
    pub estimated_cost_nano: u64,
    /// Accounts already tried for this request.
    pub exclude: &'a [AccountId],
}

impl<'a> RouteRequest<'a> {
    /// A request for `model` from the shared pool with nothing else known.
    pub fn new(model: &'a str) -> RouteRequest<'a> {
        RouteRequest {
            model,
            session: None,
            binding: KeyBinding::None,
            estimated_tokens: 0,
            estimated_cost_nano: 0,
            exclude: &[],
        }
    }
}

/// How one attempt ended, reported by the relay.
#[derive(Clone, Copy, Debug)]
pub enum Feedback {
    /// The response (or stream) completed.
    Success {
        ttfb: Duration,
        latency: Duration,
        /// All four kinds summed (conventions.md "tokens").
        tokens: u64,
        /// What the attempt cost at list price.
        cost_nano: u64,
        limits: Option<RateLimitInfo>,
    },
    /// The attempt failed before the client saw anything (or an upstream
    /// error status was passed through).
    Failure {
        failure: Failure,
        limits: Option<RateLimitInfo>,
        /// Set when upstream said the limit applies to one model family only.
        model_family: Option<ModelFamily>,
    },
    /// An error event arrived after content had been forwarded.
    StreamError,
}

/// Holds one in-flight request on an account; released on drop, whatever
/// path the request ends on.
#[derive(Debug)]
pub struct Lease {
    account_id: AccountId,
    live: Arc<LiveState>,
    /// This request is the breaker's half-open trial.
    trial: bool,
    /// Feedback given (the trial slot is then settled by it, not by drop).
    settled: AtomicBool,
    upstream_model: Option<Arc<str>>,
    family: ModelFamily,
    sticky: Option<StickyKey>,
    subscription: bool,
    window_limit: headroom::WindowLimit,
    /// Estimated tokens counted against the own window until feedback.
    reserved: AtomicU64,
}

impl Lease {
    pub fn account_id(&self) -> AccountId {
        self.account_id
    }

    /// The model name to send upstream when the account maps the requested one.
    pub fn upstream_model(&self) -> Option<&str> {
        self.upstream_model.as_deref()
    }

    /// Family of the model this attempt sends upstream.
    pub fn model_family(&self) -> ModelFamily {
        self.family
    }

    /// Whether this attempt is a circuit breaker's half-open trial.
    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.live.release();
        headroom::unreserve(&self.live, self.reserved.swap(0, R));
        if self.trial && !self.settled.load(R) {
            // Dropped without a verdict: let the next request try.
            self.live.release_trial();
        }
    }
}

/// Why no account was picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAccount {
    /// No enabled account in the pool serves the model (503, do not retry).
    NoneConfigured,
    /// Accounts exist but all rest, are full or were already tried; the
    /// earliest rest end if any.
    AllBusy {
        earliest_available: Option<SystemTime>,
    },
}

/// Construction options; `Default` is what production uses.
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// `None`: seeded from entropy.
    pub seed: Option<u64>,
    pub strategy: StrategyKind,
    pub sticky_ttl: Duration,
    pub sticky_capacity: u64,
    /// `cost_first`: among free subscription accounts, use first the one whose window resets soonest.
    pub drain_soonest_reset: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(TokioClock::default()),
            seed: None,
            strategy: StrategyKind::Priority,
            sticky_ttl: Duration::from_secs(3600),
            sticky_capacity: 1_000_000,
            drain_soonest_reset: false,
        }
    }
}

/// Cheap clonable handle.
#[derive(Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: ArcSwap<Snapshot>,
    strategy: AtomicU8,
    drain_soonest_reset: AtomicBool,
    picks: AtomicU64,
    clock: Arc<dyn Clock>,
    rng: Rng,
    sticky: StickyMap,
    /// Pool-wide TTFB average (the "pool's" in the degraded check).
    pool_ttfb: health::Ewma,
    decisions: [AtomicU64; 5],
    sticky_hits: AtomicU64,
    sticky_moves: AtomicU64,
    refused: AtomicU64,
}

impl Default for Balancer {
    fn default() -> Self {
        Self::with_options(Options::default())
    }
}

fn strategy_code(s: StrategyKind) -> u8 {
    match s {
        StrategyKind::Priority => 0,
        StrategyKind::LeastUsed => 1,
        StrategyKind::CostFirst => 2,
        StrategyKind::Balanced => 3,
        StrategyKind::Latency => 4,
    }
}

fn strategy_of(code: u8) -> StrategyKind {
    match code {
        1 => StrategyKind::LeastUsed,
        2 => StrategyKind::CostFirst,
        3 => StrategyKind::Balanced,
        4 => StrategyKind::Latency,
        _ => StrategyKind::Priority,
    }
}

/// What a sticky lookup concluded.
enum StickyVerdict {
    Use {
        trial: bool,
    },
    /// Unusable for now (full, or already tried): serve elsewhere, keep the mapping
    /// unless the new pick replaces it.
    Skip,
    /// Resting, degraded or nearly out of headroom: move the session.
    Break,
}

impl Balancer {
    pub fn with_options(options: Options) -> Balancer {
        Balancer {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::empty()),
                strategy: AtomicU8::new(strategy_code(options.strategy)),
                drain_soonest_reset: AtomicBool::new(options.drain_soonest_reset),
                picks: AtomicU64::new(0),
                clock: options.clock,
                rng: options.seed.map_or_else(Rng::from_entropy, Rng::seeded),
                sticky: StickyMap::new(options.sticky_ttl, options.sticky_capacity),
                pool_ttfb: health::Ewma::default(),
                decisions: Default::default(),
                sticky_hits: AtomicU64::new(0),
                sticky_moves: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the accounts, keeping the groups and the live state of accounts that stay.
    pub fn sync(&self, accounts: &[Account]) {
        let groups = self.inner.snapshot.load().groups.clone();
        self.sync_all(accounts, &groups);
    }

    /// Rebuilds the snapshot from accounts and groups; live state (counters,
    /// cooldowns, EWMAs, leases) is kept by account id.
    pub fn sync_all(&self, accounts: &[Account], groups: &[Group]) {
        let old = self.inner.snapshot.load();
        let next = Snapshot::build(accounts, groups, |id| old.live(id).cloned());
        self.inner.snapshot.store(Arc::new(next));
    }

    /// Number of enabled accounts (regardless of cooldown).
    pub fn enabled_count(&self) -> usize {
        self.inner
            .snapshot
            .load()
            .slots
            .iter()
            .filter(|s| s.is_enabled())
            .count()
    }

    /// Picks a shared-pool account not in `exclude`, for any model.
    pub fn select(&self, exclude: &[AccountId]) -> Result<Lease, NoAccount> {
        self.route(&RouteRequest {
            exclude,
            ..RouteRequest::new("")
        })
    }

    pub fn set_strategy(&self, strategy: StrategyKind) {
        self.inner.strategy.store(strategy_code(strategy), R);
    }

    /// The global strategy (groups may override it).
    pub fn strategy(&self) -> StrategyKind {
        strategy_of(self.inner.strategy.load(R))
    }

    pub fn set_sticky_ttl(&self, ttl: Duration) {
        self.inner.sticky.set_ttl(ttl);
    }

    pub fn set_drain_soonest_reset(&self, on: bool) {
        self.inner.drain_soonest_reset.store(on, R);
    }

    /// Now on the balancer's clock (for building `Failure`s in tests and the simulation).
    pub fn now(&self) -> SystemTime {
        from_unix_ms(self.inner.clock.now_ms())
    }

    /// Picks an account for one attempt: the pool from the binding, the
    /// eligible accounts for the model (precomputed), the session's sticky
    /// account if it is still good, else the strategy (the group's or the
    /// global one) over the available accounts, healthy ones with headroom
    /// first and the others only as a last resort.
    pub fn route(&self, req: &RouteRequest<'_>) -> Result<Lease, NoAccount> {
        let inner = &*self.inner;
        let snap = inner.snapshot.load();
        let now = inner.clock.now_ms();
        let Some(pool) = snap.pool(req.binding) else {
            inner.refused.fetch_add(1, R);
            return Err(NoAccount::NoneConfigured);
        };
        let plan = pool.plan(&snap.slots, req.model);
        if plan.eligible.is_empty() {
            inner.refused.fetch_add(1, R);
            return Err(NoAccount::NoneConfigured);
        }
        let strategy = pool.strategy.unwrap_or_else(|| self.strategy());
        let sticky_key = match (req.session, pool.key) {
            (_, PoolKey::Account(_)) | (None, _) => None,
            (Some(session), key) => Some((key, session)),
        };
        // Exclusions as plan positions, so the scan compares integers.
        let mut skip: Vec<u32> = req
            .exclude
            .iter()
            .filter_map(|id| plan.position.get(id).copied())
            .collect();

        let mut rebind = sticky_key.is_some();
        if let Some(key) = sticky_key {
            if let Some(entry) = inner.sticky.get(&key, now) {
                match plan.position.get(&entry.account) {
                    Some(&pos) => {
                        match sticky_verdict(&plan.eligible[pos as usize], pos, &skip, req, now) {
                            StickyVerdict::Use { trial } => {
                                if let Some(lease) =
                                    self.acquire(&plan, pos, trial, Some(key), req, now)
                                {
                                    entry.touch(now);
                                    inner.sticky_hits.fetch_add(1, R);
                                    return Ok(lease);
                                }
                                rebind = false;
                            }
                            StickyVerdict::Skip => {
                                // Failover after this account failed moves the
                                // session; a merely full account keeps it.
                                rebind = skip.contains(&pos);
                            }
                            StickyVerdict::Break => {
                                inner.sticky.unbind(&key, entry.account);
                                inner.sticky_moves.fetch_add(1, R);
                            }
                        }
                    }
                    // The session's account does not serve this model (e.g. a
                    // side request on another model): serve elsewhere, keep it.
                    None => rebind = false,
                }
            }
        }

        let cx = strategy::Context {
            now_ms: now,
            rng: &inner.rng,
            estimated_cost_nano: req.estimated_cost_nano,
            drain_soonest_reset: inner.drain_soonest_reset.load(R),
            default_ttfb_ms: inner.pool_ttfb.get().unwrap_or(DEFAULT_TTFB_MS),
        };
        let scan = scan::Scan {
            plan: &plan,
            req,
            now,
            strategy,
            cx: &cx,
        };
        // Each round picks one account; losing the race for its last slot
        // (another request took it meanwhile) skips it and picks again.
        loop {
            let chosen = match scan.sample(&skip) {
                Some(c) => c,
                None => match scan.full(&skip) {
                    Ok(c) => c,
                    Err(earliest) => {
                        inner.refused.fetch_add(1, R);
                        return Err(NoAccount::AllBusy {
                            earliest_available: earliest.map(from_unix_ms),
                        });
                    }
                },
            };
            let Some(lease) = self.acquire(&plan, chosen.pos, chosen.trial, sticky_key, req, now)
            else {
                skip.push(chosen.pos);
                continue;
            };
            inner.decisions[usize::from(strategy_code(strategy))].fetch_add(1, R);
            if let (Some(key), true) = (sticky_key, rebind) {
                inner
                    .sticky
                    .bind(key, lease.account_id, &chosen.e.live, now);
            }
            return Ok(lease);
        }
    }

    fn acquire(
        &self,
        plan: &Plan,
        pos: u32,
        trial: bool,
        sticky: Option<StickyKey>,
        req: &RouteRequest<'_>,
        now: u64,
    ) -> Option<Lease> {
        let (e, target) = (
            plan.eligible.get(pos as usize)?,
            plan.accounts.get(pos as usize)?,
        );
        if trial && !e.live.try_take_trial() {
            return None;
        }
        if !e.live.try_acquire(e.cap) {
            if trial {
                e.live.release_trial();
            }
            return None;
        }
        let pick = self.inner.picks.fetch_add(1, R) + 1;
        e.live.hot.last_pick.store(pick, R);
        // Count the estimate against the window now, so concurrent requests
        // see it before the answer's real count replaces it.
        let reserved = if e.window_limit.tokens > 0 {
            headroom::count_window_tokens(&e.live, now, req.estimated_tokens);
            req.estimated_tokens
        } else {
            0
        };
        tracing::trace!(account.id = %target.id, trial, "selected");
        Some(Lease {
            account_id: target.id,
            live: e.live.clone(),
            trial,
            settled: AtomicBool::new(false),
            upstream_model: target.upstream_model.clone(),
            family: e.family,
            sticky,
            subscription: e.subscription,
            window_limit: e.window_limit,
            reserved: AtomicU64::new(reserved),
        })
    }

    /// Learns from one attempt: latency and outcome feed the EWMAs, the
    /// outcome window and the breaker; rate-limit headers feed headroom and,
    /// when a window is exhausted, a rest until its reset; failures rest the
    /// account as classified and break its sticky sessions.
    pub fn feedback(&self, lease: &Lease, outcome: Feedback) {
        let inner = &*self.inner;
        let now = inner.clock.now_ms();
        let live = &lease.live;
        let trial = lease.trial && !lease.settled.swap(true, R);
        // The real count (on success) replaces the estimate.
        headroom::unreserve(live, lease.reserved.swap(0, R));
        match outcome {
            Feedback::Success {
                ttfb,
                latency,
                tokens,
                cost_nano,
                limits,
            } => {
                let ttfb_ms = ttfb.as_secs_f64() * 1e3;
                live.record_success(now, ttfb_ms, latency.as_secs_f64() * 1e3, trial);
                inner
                    .pool_ttfb
                    .observe(ttfb_ms, now, false, health::POOL_MIN_WEIGHT);
                live.tokens_total.fetch_add(tokens, R);
                live.spent_nano.fetch_add(cost_nano, R);
                if lease.subscription || lease.window_limit.tokens > 0 {
                    headroom::count_window_tokens(live, now, tokens);
                }
                if let Some(info) = limits {
                    if headroom::apply(live, &info, now).is_some() {
                        self.unstick(lease);
                    }
                }
            }
            Feedback::Failure {
                failure,
                limits,
                model_family,
            } => {
                let reason = reason_of(failure.kind);
                live.record_failure(now, reason, failure.status, trial);
                let exhausted = limits.and_then(|info| headroom::apply(live, &info, now));
                let named = failure.cooldown_until.map(unix_ms);
                match failure.kind {
                    FailureKind::ClientError => {}
                    FailureKind::RateLimited | FailureKind::QuotaExhausted => {
                        // A window the headers call exhausted already rests
                        // the account until its reset; otherwise rest as
                        // classified (retry-after, or long for a spend limit).
                        if exhausted.is_none() {
                            let until = named.unwrap_or(now + DEFAULT_REST_MS);
                            match model_family {
                                Some(f) => live.limit_family(f, until),
                                None => live.cool_down(until, reason),
                            }
                        }
                    }
                    FailureKind::AuthRejected => {
                        live.auth_failed.store(true, R);
                        live.cool_down(named.unwrap_or(now + DEFAULT_REST_MS), reason);
                    }
                    _ => {
                        if let Some(until) = named {
                            live.cool_down(until, reason);
                        }
                    }
                }
                if failure.kind != FailureKind::ClientError {
                    self.unstick(lease);
                }
            }
            Feedback::StreamError => {
                live.record_failure(now, ErrorReason::StreamError, None, trial);
                self.unstick(lease);
            }
        }
        live.refresh_health(now, inner.pool_ttfb.get());
    }

    fn unstick(&self, lease: &Lease) {
        if let Some(key) = lease.sticky {
            self.inner.sticky.unbind(&key, lease.account_id);
        }
    }

    /// Rests an account until `until` (keeps a later rest already set).
    pub fn cool_down(&self, id: AccountId, until: SystemTime) {
        if let Some(live) = self.inner.snapshot.load().live(id) {
            live.cool_down(unix_ms(until), ErrorReason::Manual);
        }
    }

    /// Clears an account-wide rest (after a success, the account is evidently fine).
    pub fn clear_cooldown(&self, id: AccountId) {
        if let Some(live) = self.inner.snapshot.load().live(id) {
            live.clear_cooldown();
        }
    }

    /// The slots, for stats and tests.
    pub fn slots(&self) -> Arc<Vec<Arc<AccountSlot>>> {
        self.inner.snapshot.load().slots.clone()
    }

    /// Every sticky mapping as (pool, session, account, last use), for lazy persistence.
    pub fn sticky_entries(&self) -> Vec<(PoolKey, SessionKey, AccountId, SystemTime)> {
        self.inner
            .sticky
            .entries()
            .into_iter()
            .map(|((pool, session), account, at)| (pool, session, account, from_unix_ms(at)))
            .collect()
    }

    /// Restores a persisted sticky mapping (ignored if the account is gone).
    pub fn restore_sticky(
        &self,
        pool: PoolKey,
        session: SessionKey,
        account: AccountId,
        last_used: SystemTime,
    ) {
        if let Some(live) = self.inner.snapshot.load().live(account) {
            self.inner
                .sticky
                .bind((pool, session), account, live, unix_ms(last_used));
        }
    }

    pub fn stats(&self) -> BalancerStats {
        let inner = &*self.inner;
        let now = inner.clock.now_ms();
        let snap = inner.snapshot.load();
        let d = |s: StrategyKind| inner.decisions[usize::from(strategy_code(s))].load(R);
        BalancerStats {
            at: from_unix_ms(now),
            strategy: self.strategy(),
            sticky_ttl: inner.sticky.ttl(),
            decisions: DecisionCounts {
                priority: d(StrategyKind::Priority),
                least_used: d(StrategyKind::LeastUsed),
                cost_first: d(StrategyKind::CostFirst),
                balanced: d(StrategyKind::Balanced),
                latency: d(StrategyKind::Latency),
                sticky_hits: inner.sticky_hits.load(R),
                sticky_moves: inner.sticky_moves.load(R),
                refused: inner.refused.load(R),
            },
            sticky_sessions: inner.sticky.len(),
            pool_ttfb_ms: inner.pool_ttfb.get(),
            accounts: snap.slots.iter().map(|s| stats::account(s, now)).collect(),
        }
    }
}

/// Whether a session may stay on its account for this request.
fn sticky_verdict(
    e: &Eligible,
    pos: u32,
    skip: &[u32],
    req: &RouteRequest<'_>,
    now: u64,
) -> StickyVerdict {
    if skip.contains(&pos) {
        return StickyVerdict::Skip;
    }
    match e.live.availability(now, e.family, e.cap) {
        Availability::Resting(_) => StickyVerdict::Break,
        Availability::Full => StickyVerdict::Skip,
        Availability::Ready { trial } => {
            let (_, low) = headroom::headroom(&e.live, now, e.window_limit, req.estimated_tokens);
            if low || e.live.is_degraded(now) {
                StickyVerdict::Break
            } else {
                StickyVerdict::Use { trial }
            }
        }
    }
}

fn reason_of(kind: FailureKind) -> ErrorReason {
    match kind {
        FailureKind::RateLimited => ErrorReason::RateLimited,
        FailureKind::QuotaExhausted => ErrorReason::QuotaExhausted,
        FailureKind::Overloaded => ErrorReason::Overloaded,
        FailureKind::ServerError => ErrorReason::ServerError,
        FailureKind::AuthRejected => ErrorReason::AuthRejected,
        FailureKind::Transport => ErrorReason::Transport,
        FailureKind::ClientError => ErrorReason::ClientError,
    }
}
