//! Workload simulation for the `balancer` bench: a Claude-Code-like
//! workload (sessions of several turns sharing a cached prefix, mixed
//! models) replayed in virtual time against an in-process upstream
//! ([`upstream`]) through the real [`Balancer`] API, with failover as the
//! relay does it (bounded attempts, never the same account twice). Each
//! strategy, with and without sticky sessions, is compared with a plain
//! round-robin baseline on marginal cost, cache-read share, upstream 429s,
//! client-visible errors and latency. Seeded: the same scenario always gives
//! the same figures. A harness, not part of the request path.

mod upstream;

pub use upstream::AccountSpec;

use super::clock::{ManualClock, Rng};
use super::{Balancer, Feedback, Lease, NoAccount, Options, RouteRequest, SessionKey};
use crate::domain::{
    Account, AccountId, AccountKind, AccountStatus, Credentials, StrategyKind, TokenUsage,
};
use crate::upstream::{Failure, FailureKind};
use crate::usage::pricing::{billed_cost, PricingTable};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use upstream::{Answer, Attempt, Upstream};

/// Virtual start of every run (Unix ms).
const START_MS: u64 = 1_800_000_000_000;

/// The fixed workload and pool (issue: 200 sessions × 8 turns, 20,000-token
/// prefix, 20/60/20 Opus/Sonnet/Haiku; 2 subscriptions with 5M-token
/// windows, pay-per-token ×1.0 and ×1.2, one pay-per-token account answering
/// 30 % 529).
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub sessions: usize,
    pub turns: usize,
    pub prefix_tokens: u64,
    /// (model, share) — shares sum to 1.
    pub models: Vec<(&'static str, f64)>,
    pub accounts: Vec<AccountSpec>,
    /// Sessions start uniformly over this span.
    pub arrival_span: Duration,
    /// Think time between a turn's answer and the next turn, uniform.
    pub think_time: (Duration, Duration),
    /// User message per turn, uniform token range.
    pub user_tokens: (u64, u64),
    /// Answer length per turn, uniform token range.
    pub output_tokens: (u64, u64),
    pub max_attempts: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        let pay = |name, cost_multiplier, overload_rate| AccountSpec {
            name,
            subscription: false,
            window_tokens: 0,
            cost_multiplier,
            overload_rate,
            base_ttfb_ms: 450.0,
            input_tokens_per_minute: 2_000_000,
        };
        let sub = |name| AccountSpec {
            name,
            subscription: true,
            window_tokens: 5_000_000,
            cost_multiplier: 1.0,
            overload_rate: 0.0,
            base_ttfb_ms: 550.0,
            input_tokens_per_minute: 0,
        };
        Scenario {
            seed: 20_261_127,
            sessions: 200,
            turns: 8,
            prefix_tokens: 20_000,
            models: vec![
                ("claude-opus-4-5", 0.2),
                ("claude-sonnet-4-5", 0.6),
                ("claude-haiku-4-5", 0.2),
            ],
            accounts: vec![
                sub("sub-1"),
                sub("sub-2"),
                pay("pay-1.0", 1.0, 0.0),
                pay("pay-1.2", 1.2, 0.0),
                pay("flaky-1.0", 1.0, 0.3),
            ],
            arrival_span: Duration::from_secs(3600),
            think_time: (Duration::from_secs(5), Duration::from_secs(60)),
            user_tokens: (100, 800),
            output_tokens: (200, 1_500),
            max_attempts: 3,
        }
    }
}

/// Who picks the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Next account in turn, skipping those already tried; no health, no stickiness.
    RoundRobin,
    Balancer {
        strategy: StrategyKind,
        sticky: bool,
        /// cost_first: drain the subscription window that resets soonest.
        drain: bool,
    },
}

impl Policy {
    pub fn name(&self) -> String {
        match self {
            Policy::RoundRobin => "round_robin".into(),
            Policy::Balancer {
                strategy,
                sticky,
                drain,
            } => {
                let s = match strategy {
                    StrategyKind::Priority => "priority",
                    StrategyKind::LeastUsed => "least_used",
                    StrategyKind::CostFirst => "cost_first",
                    StrategyKind::Balanced => "balanced",
                    StrategyKind::Latency => "latency",
                };
                format!(
                    "{s}{}{}",
                    if *sticky { "+sticky" } else { "" },
                    if *drain { "+drain" } else { "" }
                )
            }
        }
    }
}

/// Figures of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub policy: Policy,
    pub turns: u64,
    /// Marginal spend: subscription tokens inside their window cost nothing,
    /// pay-per-token tokens cost list price × multiplier.
    pub cost_nano: u64,
    /// Cache reads / all prompt tokens of served attempts.
    pub cache_read_share: f64,
    pub upstream_429: u64,
    pub upstream_529: u64,
    /// Turns that failed on every attempt (or found no account).
    pub client_errors: u64,
    pub attempts: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    /// Served turns per account, in scenario order.
    pub served_per_account: Vec<(&'static str, u64)>,
    pub sticky_hits: u64,
}

/// One session's pre-drawn workload (identical for every policy).
struct Session {
    start_ms: u64,
    model: &'static str,
    user: Vec<u64>,
    output: Vec<u64>,
    think_ms: Vec<u64>,
}

fn draw(rng: &Rng, (lo, hi): (u64, u64)) -> u64 {
    lo + rng.below((hi.saturating_sub(lo) + 1) as usize) as u64
}

fn workload(s: &Scenario) -> Vec<Session> {
    let rng = Rng::seeded(s.seed);
    let span = s.arrival_span.as_millis() as u64;
    let think = (
        s.think_time.0.as_millis() as u64,
        s.think_time.1.as_millis() as u64,
    );
    (0..s.sessions)
        .map(|_| {
            let start_ms = START_MS + draw(&rng, (0, span));
            let u = rng.unit();
            let mut acc = 0.0;
            let model = s
                .models
                .iter()
                .find(|(_, share)| {
                    acc += share;
                    u < acc
                })
                .or(s.models.last())
                .map_or("claude-sonnet-4-5", |(m, _)| m);
            Session {
                start_ms,
                model,
                user: (0..s.turns).map(|_| draw(&rng, s.user_tokens)).collect(),
                output: (0..s.turns).map(|_| draw(&rng, s.output_tokens)).collect(),
                think_ms: (0..s.turns).map(|_| draw(&rng, think)).collect(),
            }
        })
        .collect()
}

fn model_speed(model: &str) -> (f64, f64) {
    // (ms per output token, TTFB factor)
    match super::ModelFamily::of(model) {
        super::ModelFamily::Opus => (25.0, 1.5),
        super::ModelFamily::Haiku => (8.0, 0.5),
        _ => (16.0, 1.0),
    }
}

fn domain_accounts(specs: &[AccountSpec]) -> Vec<Account> {
    specs
        .iter()
        .map(|spec| {
            let mut a = Account {
                id: AccountId::generate(),
                name: spec.name.to_string(),
                kind: if spec.subscription {
                    AccountKind::ClaudeOauth
                } else {
                    AccountKind::AnthropicApiKey
                },
                // CRS's default priority for every account: a neutral start.
                priority: 50,
                status: AccountStatus::Active,
                base_url: None,
                credentials: Credentials::default(),
                proxy: None,
                routing: Default::default(),
                created_at: chrono::DateTime::UNIX_EPOCH,
                updated_at: chrono::DateTime::UNIX_EPOCH,
            };
            a.routing.cost_multiplier = spec.cost_multiplier;
            if spec.subscription {
                a.routing.window_token_limit = Some(spec.window_tokens);
            }
            a
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A turn's next attempt (the first, or a failover).
    Attempt { session: usize },
    /// A served turn's answer completes.
    Done { request: u64 },
}

struct Turn {
    turn: usize,
    /// When the client sent it.
    sent_ms: u64,
    tried: Vec<usize>,
}

struct InFlight {
    session: usize,
    account: usize,
    lease: Option<Lease>,
    ttfb_ms: u64,
    latency_ms: u64,
    usage: TokenUsage,
    list_cost: u64,
    limits: crate::upstream::ratelimit::RateLimitInfo,
}

/// Runs one policy over the scenario.
pub fn run(s: &Scenario, policy: Policy) -> Report {
    let pricing = PricingTable::embedded();
    let sessions = workload(s);
    let accounts = domain_accounts(&s.accounts);
    let index_of: HashMap<AccountId, usize> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id, i))
        .collect();
    let clock = Arc::new(ManualClock::default());
    clock.set_ms(START_MS);
    let balancer = match policy {
        Policy::RoundRobin => None,
        Policy::Balancer {
            strategy, drain, ..
        } => {
            let b = Balancer::with_options(Options {
                clock: clock.clone(),
                seed: Some(s.seed),
                strategy,
                drain_soonest_reset: drain,
                ..Options::default()
            });
            b.sync(&accounts);
            Some(b)
        }
    };
    let sticky = matches!(policy, Policy::Balancer { sticky: true, .. });
    let mut upstream = Upstream::new(&s.accounts, s.seed ^ 0x5eed);
    let mut rr_next = 0usize;

    let mut queue: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<_>, at: u64, e: Event| {
        seq += 1;
        queue.push(Reverse((at, seq, e)));
    };
    let mut turns: Vec<Turn> = Vec::with_capacity(sessions.len());
    let mut history: Vec<u64> = vec![0; sessions.len()];
    for (i, sess) in sessions.iter().enumerate() {
        turns.push(Turn {
            turn: 0,
            sent_ms: sess.start_ms,
            tried: Vec::new(),
        });
        push(&mut queue, sess.start_ms, Event::Attempt { session: i });
    }
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut next_request = 0u64;
    let mut report = Report {
        policy,
        turns: 0,
        cost_nano: 0,
        cache_read_share: 0.0,
        upstream_429: 0,
        upstream_529: 0,
        client_errors: 0,
        attempts: 0,
        p50_ms: 0,
        p99_ms: 0,
        served_per_account: s.accounts.iter().map(|a| (a.name, 0)).collect(),
        sticky_hits: 0,
    };
    let (mut read, mut prompt) = (0u64, 0u64);
    let mut latencies: Vec<u64> = Vec::new();

    while let Some(Reverse((now, _, event))) = queue.pop() {
        clock.set_ms(now);
        match event {
            Event::Attempt { session } => {
                let sess = &sessions[session];
                let t = &mut turns[session];
                let k = t.turn;
                let prompt_tokens = s.prefix_tokens + history[session] + sess.user[k];
                let attempt = {
                    let (ms_per_output_token, ttfb_factor) = model_speed(sess.model);
                    Attempt {
                        session: session as u32,
                        prompt_tokens,
                        output_tokens: sess.output[k],
                        ms_per_output_token,
                        ttfb_factor,
                    }
                };
                let give_up = t.tried.len() >= s.max_attempts.min(s.accounts.len());
                // Pick an account.
                let picked: Option<(usize, Option<Lease>)> = if give_up {
                    None
                } else if let Some(b) = &balancer {
                    let exclude: Vec<AccountId> = t.tried.iter().map(|&i| accounts[i].id).collect();
                    let estimate = TokenUsage {
                        input: prompt_tokens,
                        output: sess.output[k],
                        ..TokenUsage::default()
                    };
                    let req = RouteRequest {
                        model: sess.model,
                        session: sticky
                            .then(|| SessionKey::from_session_id(&format!("session-{session}"))),
                        binding: crate::domain::KeyBinding::None,
                        estimated_tokens: estimate.total(),
                        estimated_cost_nano: pricing.cost(sess.model, &estimate).map_or(0, |c| c.0),
                        exclude: &exclude,
                    };
                    match b.route(&req) {
                        Ok(lease) => index_of
                            .get(&lease.account_id())
                            .copied()
                            .map(|i| (i, Some(lease))),
                        Err(NoAccount::AllBusy { .. } | NoAccount::NoneConfigured) => None,
                    }
                } else {
                    let n = s.accounts.len();
                    (0..n)
                        .map(|off| (rr_next + off) % n)
                        .find(|i| !t.tried.contains(i))
                        .map(|i| {
                            rr_next = (i + 1) % n;
                            (i, None)
                        })
                };
                let Some((account, lease)) = picked else {
                    report.client_errors += 1;
                    finish_turn(
                        s,
                        sess,
                        session,
                        t,
                        now,
                        &mut history,
                        &mut queue,
                        &mut push,
                        false,
                    );
                    continue;
                };
                report.attempts += 1;
                t.tried.push(account);
                match upstream.answer(account, &attempt, now) {
                    Answer::Ok {
                        usage,
                        ttfb_ms,
                        latency_ms,
                        limits,
                    } => {
                        let list_cost = pricing.cost(sess.model, &usage).map_or(0, |c| c.0);
                        next_request += 1;
                        in_flight.insert(
                            next_request,
                            InFlight {
                                session,
                                account,
                                lease,
                                ttfb_ms,
                                latency_ms,
                                usage,
                                list_cost,
                                limits,
                            },
                        );
                        push(
                            &mut queue,
                            now + latency_ms,
                            Event::Done {
                                request: next_request,
                            },
                        );
                    }
                    Answer::Overloaded { after_ms } => {
                        report.upstream_529 += 1;
                        if let (Some(b), Some(lease)) = (&balancer, &lease) {
                            b.feedback(
                                lease,
                                Feedback::Failure {
                                    failure: Failure {
                                        kind: FailureKind::Overloaded,
                                        status: Some(529),
                                        cooldown_until: Some(b.now() + Duration::from_secs(5)),
                                    },
                                    limits: None,
                                    model_family: None,
                                },
                            );
                        }
                        push(&mut queue, now + after_ms, Event::Attempt { session });
                    }
                    Answer::RateLimited {
                        after_ms,
                        retry_after_ms,
                        limits,
                    } => {
                        report.upstream_429 += 1;
                        if let (Some(b), Some(lease)) = (&balancer, &lease) {
                            let (kind, rest) = match retry_after_ms {
                                Some(ms) => (FailureKind::RateLimited, Duration::from_millis(ms)),
                                None => (FailureKind::QuotaExhausted, Duration::from_secs(300)),
                            };
                            b.feedback(
                                lease,
                                Feedback::Failure {
                                    failure: Failure {
                                        kind,
                                        status: Some(429),
                                        cooldown_until: Some(b.now() + rest),
                                    },
                                    limits: Some(limits),
                                    model_family: None,
                                },
                            );
                        }
                        push(&mut queue, now + after_ms, Event::Attempt { session });
                    }
                }
            }
            Event::Done { request } => {
                let Some(done) = in_flight.remove(&request) else {
                    continue;
                };
                if let (Some(b), Some(lease)) = (&balancer, &done.lease) {
                    b.feedback(
                        lease,
                        Feedback::Success {
                            ttfb: Duration::from_millis(done.ttfb_ms),
                            latency: Duration::from_millis(done.latency_ms),
                            tokens: done.usage.total(),
                            cost_nano: done.list_cost,
                            limits: Some(done.limits),
                        },
                    );
                }
                drop(done.lease);
                let spec = &s.accounts[done.account];
                let free = spec.subscription && upstream.in_window(done.account);
                if !free {
                    report.cost_nano +=
                        billed_cost(crate::domain::NanoUsd(done.list_cost), spec.cost_multiplier).0;
                }
                read += done.usage.cache_read;
                prompt += done.usage.input + done.usage.cache_creation() + done.usage.cache_read;
                report.served_per_account[done.account].1 += 1;
                let sess = &sessions[done.session];
                let t = &mut turns[done.session];
                latencies.push(now - t.sent_ms);
                report.turns += 1;
                finish_turn(
                    s,
                    sess,
                    done.session,
                    t,
                    now,
                    &mut history,
                    &mut queue,
                    &mut push,
                    true,
                );
            }
        }
    }
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    report.p50_ms = pct(0.5);
    report.p99_ms = pct(0.99);
    report.cache_read_share = if prompt == 0 {
        0.0
    } else {
        read as f64 / prompt as f64
    };
    if let Some(b) = &balancer {
        report.sticky_hits = b.stats().decisions.sticky_hits;
    }
    report
}

/// Ends a turn (served or not) and schedules the session's next one.
#[allow(clippy::too_many_arguments)]
fn finish_turn(
    s: &Scenario,
    sess: &Session,
    session: usize,
    t: &mut Turn,
    now: u64,
    history: &mut [u64],
    queue: &mut BinaryHeap<Reverse<(u64, u64, Event)>>,
    push: &mut impl FnMut(&mut BinaryHeap<Reverse<(u64, u64, Event)>>, u64, Event),
    served: bool,
) {
    let k = t.turn;
    if served {
        history[session] += sess.user[k] + sess.output[k];
    }
    t.turn += 1;
    t.tried.clear();
    if t.turn < s.turns {
        t.sent_ms = now + sess.think_ms[k];
        push(queue, t.sent_ms, Event::Attempt { session });
    }
}

/// Round robin, then every strategy without and with sticky sessions.
pub fn compare(s: &Scenario) -> Vec<Report> {
    let mut policies = vec![Policy::RoundRobin];
    for strategy in [
        StrategyKind::Priority,
        StrategyKind::LeastUsed,
        StrategyKind::CostFirst,
        StrategyKind::Balanced,
        StrategyKind::Latency,
    ] {
        for sticky in [false, true] {
            policies.push(Policy::Balancer {
                strategy,
                sticky,
                drain: false,
            });
        }
    }
    policies.push(Policy::Balancer {
        strategy: StrategyKind::CostFirst,
        sticky: true,
        drain: true,
    });
    policies.into_iter().map(|p| run(s, p)).collect()
}

/// A Markdown table of reports, cost relative to the first (the baseline).
pub fn table(reports: &[Report]) -> String {
    let base = reports.first().map_or(1, |r| r.cost_nano.max(1)) as f64;
    let mut out = String::from(
        "| policy | cost USD | vs RR | cache-read share | upstream 429 | upstream 529 | client errors | attempts | p50 s | p99 s | served per account | sticky hits |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    for r in reports {
        let served: Vec<String> = r
            .served_per_account
            .iter()
            .map(|(n, c)| format!("{n}:{c}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:+.1}% | {:.1}% | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |",
            r.policy.name(),
            r.cost_nano as f64 / 1e9,
            (r.cost_nano as f64 / base - 1.0) * 100.0,
            r.cache_read_share * 100.0,
            r.upstream_429,
            r.upstream_529,
            r.client_errors,
            r.attempts,
            r.p50_ms as f64 / 1e3,
            r.p99_ms as f64 / 1e3,
            served.join(" "),
            r.sticky_hits,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Scenario {
        Scenario {
            sessions: 20,
            turns: 4,
            ..Scenario::default()
        }
    }

    #[test]
    fn runs_are_reproducible_and_serve_every_turn() {
        let s = small();
        for policy in [
            Policy::RoundRobin,
            Policy::Balancer {
                strategy: StrategyKind::CostFirst,
                sticky: true,
                drain: false,
            },
        ] {
            let a = run(&s, policy);
            let b = run(&s, policy);
            assert_eq!(a.cost_nano, b.cost_nano);
            assert_eq!(a.served_per_account, b.served_per_account);
            assert_eq!(a.turns + a.client_errors, (s.sessions * s.turns) as u64);
        }
    }
}
