//! Balancer benchmarks, printed as tables (figures go into issue notes,
//! never into assertions):
//! 1. one selection (`route` + dropping the lease) over 10, 100 and 1,000
//!    accounts for every strategy, with and without a sticky session,
//!    p50/p99/p99.9 from an HDR histogram of individually timed calls;
//! 2. the workload simulation (`balancer::simulate`): each strategy, with
//!    and without sticky sessions, against a round-robin baseline.
//!
//! `cargo bench --bench balancer` runs both; pass `select` or `simulate` to
//! run one.

use claude_relay::balancer::simulate::{self, Scenario};
use claude_relay::balancer::{Balancer, Feedback, Options, RouteRequest, SessionKey};
use claude_relay::domain::{
    Account, AccountId, AccountKind, AccountStatus, Credentials, KeyBinding, StrategyKind,
};
use hdrhistogram::Histogram;
use std::hint::black_box;
use std::time::{Duration, Instant};

const STRATEGIES: [StrategyKind; 5] = [
    StrategyKind::Priority,
    StrategyKind::LeastUsed,
    StrategyKind::CostFirst,
    StrategyKind::Balanced,
    StrategyKind::Latency,
];

/// A mixed pool: a third subscriptions with windows, some with allow-lists,
/// spread priorities, weights and price multipliers.
fn pool(n: usize) -> Vec<Account> {
    (0..n)
        .map(|i| {
            let mut a = Account {
                id: AccountId::generate(),
                name: format!("acct-{i}"),
                kind: if i % 3 == 0 {
                    AccountKind::ClaudeOauth
                } else {
                    AccountKind::AnthropicApiKey
                },
                priority: (i % 7) as u32 + 1,
                status: AccountStatus::Active,
                base_url: None,
                credentials: Credentials::default(),
                proxy: None,
                routing: Default::default(),
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
            };
            a.routing.weight = 50 + (i % 5) as u32 * 50;
            a.routing.cost_multiplier = 1.0 + (i % 4) as f64 * 0.1;
            if a.kind == AccountKind::ClaudeOauth {
                a.routing.window_token_limit = Some(5_000_000);
            }
            if i % 10 == 9 {
                a.routing.allowed_models = vec!["claude-haiku-*".into()];
            }
            a
        })
        .collect()
}

fn bench_select(only_accounts: Option<usize>, only_strategy: Option<&str>) {
    println!("\n## One selection (route + lease drop), ns per call");
    println!(
        "| strategy | accounts | sticky | p50 | p99 | p99.9 | max |\n|---|---:|---|---:|---:|---:|---:|"
    );
    for n in [10usize, 100, 1_000] {
        if only_accounts.is_some_and(|o| o != n) {
            continue;
        }
        let accounts = pool(n);
        for strategy in STRATEGIES {
            if only_strategy.is_some_and(|s| s != format!("{strategy:?}")) {
                continue;
            }
            for sticky in [false, true] {
                let b = Balancer::with_options(Options {
                    seed: Some(42),
                    strategy,
                    ..Options::default()
                });
                b.sync(&accounts);
                // Give every account some history so health, EWMAs and
                // headroom are real numbers, not defaults.
                for i in 0..(n * 4) {
                    let req = RouteRequest::new("claude-sonnet-4-5");
                    if let Ok(lease) = b.route(&req) {
                        b.feedback(
                            &lease,
                            Feedback::Success {
                                ttfb: Duration::from_millis(300 + (i % 17) as u64 * 40),
                                latency: Duration::from_millis(2_000 + (i % 13) as u64 * 100),
                                tokens: 25_000,
                                cost_nano: 10_000_000,
                                limits: None,
                            },
                        );
                    }
                }
                let session = sticky.then(|| SessionKey::from_session_id("bench-session"));
                let req = RouteRequest {
                    model: "claude-sonnet-4-5",
                    session,
                    binding: KeyBinding::None,
                    estimated_tokens: 20_000,
                    estimated_cost_nano: 60_000_000,
                    exclude: &[],
                };
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("valid bounds");
                for _ in 0..20_000 {
                    black_box(b.route(black_box(&req)).ok());
                }
                for _ in 0..200_000 {
                    let t = Instant::now();
                    let lease = b.route(black_box(&req));
                    drop(black_box(lease));
                    let ns = t.elapsed().as_nanos() as u64;
                    let _ = hist.record(ns.max(1));
                }
                println!(
                    "| {:?} | {} | {} | {} | {} | {} | {} |",
                    strategy,
                    n,
                    if sticky { "yes" } else { "no" },
                    hist.value_at_quantile(0.5),
                    hist.value_at_quantile(0.99),
                    hist.value_at_quantile(0.999),
                    hist.max()
                );
            }
        }
    }
}

fn bench_simulate() {
    let scenario = Scenario::default();
    println!(
        "\n## Workload simulation: {} sessions × {} turns, {}-token cached prefix, seed {}",
        scenario.sessions, scenario.turns, scenario.prefix_tokens, scenario.seed
    );
    let t = Instant::now();
    let reports = simulate::compare(&scenario);
    println!("{}", simulate::table(&reports));
    println!(
        "(simulated in {:.1} s of real time)",
        t.elapsed().as_secs_f64()
    );
}

/// Arguments: `select`, `simulate` (both when neither is given), and for
/// profiling `accounts=N`, `strategy=Name`.
fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let value = |key: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let only_accounts = value("accounts").and_then(|v| v.parse().ok());
    let only_strategy = value("strategy");
    let parts: Vec<&String> = args.iter().filter(|a| !a.contains('=')).collect();
    let wants = |name: &str| parts.is_empty() || parts.iter().any(|a| *a == name);
    if wants("select") {
        bench_select(only_accounts, only_strategy);
    }
    if wants("simulate") {
        bench_simulate();
    }
}
