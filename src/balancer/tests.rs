//! Behaviour of the balancer through its public interface: pools and
//! bindings, strategies end to end, sticky sessions, failover, caps,
//! allow-lists, the breaker and header-driven rests. Time is a `ManualClock`
//! or tokio's paused clock; randomness is seeded.

use super::*;
use crate::domain::{
    AccountKind, AccountMode, AccountStatus, Credentials, Group, GroupId, ModelMapping,
};
use crate::upstream::ratelimit::{Claim, Unified, UnifiedStatus, Window};
use chrono::Utc;

const SONNET: &str = "claude-sonnet-4-5";
const OPUS: &str = "claude-opus-4-5";

fn account(priority: u32, status: AccountStatus) -> Account {
    Account {
        id: AccountId::generate(),
        name: format!("a{priority}"),
        kind: AccountKind::AnthropicApiKey,
        priority,
        status,
        base_url: None,
        credentials: Credentials::default(),
        proxy: None,
        routing: Default::default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn active(priority: u32) -> Account {
    account(priority, AccountStatus::Active)
}

fn manual(strategy: StrategyKind) -> (Balancer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    let b = Balancer::with_options(Options {
        clock: clock.clone(),
        seed: Some(7),
        strategy,
        ..Options::default()
    });
    (b, clock)
}

fn failure(b: &Balancer, kind: FailureKind, status: u16, rest: Option<Duration>) -> Feedback {
    Feedback::Failure {
        failure: Failure {
            kind,
            status: Some(status),
            cooldown_until: rest.map(|d| b.now() + d),
        },
        limits: None,
        model_family: None,
    }
}

fn success(ttfb_ms: u64) -> Feedback {
    Feedback::Success {
        ttfb: Duration::from_millis(ttfb_ms),
        latency: Duration::from_millis(ttfb_ms * 3),
        tokens: 1_000,
        cost_nano: 0,
        limits: None,
    }
}

fn pick(b: &Balancer, req: &RouteRequest<'_>) -> AccountId {
    b.route(req).unwrap().account_id()
}

// ---- the interface the relay uses today ----

#[test]
fn lowest_priority_first_then_least_recently_used() {
    let b = Balancer::default();
    let (a1, a2, a3) = (active(1), active(1), active(5));
    b.sync(&[a3.clone(), a1.clone(), a2.clone()]);
    let first = b.select(&[]).unwrap().account_id();
    let second = b.select(&[]).unwrap().account_id();
    assert_ne!(first, second);
    assert!([a1.id, a2.id].contains(&first) && [a1.id, a2.id].contains(&second));
    assert_eq!(b.select(&[a1.id, a2.id]).unwrap().account_id(), a3.id);
}

#[test]
fn skips_disabled_and_cooling_accounts() {
    let b = Balancer::default();
    let off = account(1, AccountStatus::Disabled);
    let (hot, cold) = (active(2), active(3));
    b.sync(&[off.clone(), hot.clone(), cold.clone()]);
    let until = SystemTime::now() + Duration::from_secs(30);
    b.cool_down(hot.id, until);
    assert_eq!(b.select(&[]).unwrap().account_id(), cold.id);
    match b.select(&[cold.id]) {
        Err(NoAccount::AllBusy {
            earliest_available: Some(t),
        }) => assert_eq!(unix_ms(t), unix_ms(until)),
        other => panic!("unexpected {other:?}"),
    }
    b.clear_cooldown(hot.id);
    assert_eq!(b.select(&[]).unwrap().account_id(), hot.id);
}

#[test]
fn no_enabled_account_is_reported_as_such() {
    let b = Balancer::default();
    assert_eq!(b.select(&[]).unwrap_err(), NoAccount::NoneConfigured);
    b.sync(&[
        account(1, AccountStatus::Disabled),
        account(1, AccountStatus::AuthFailed),
    ]);
    assert_eq!(b.select(&[]).unwrap_err(), NoAccount::NoneConfigured);
    assert_eq!(b.enabled_count(), 0);
}

#[test]
fn lease_releases_in_flight_on_drop_and_sync_keeps_counters() {
    let b = Balancer::default();
    let a = active(1);
    b.sync(std::slice::from_ref(&a));
    let lease = b.select(&[]).unwrap();
    assert_eq!(b.slots()[0].in_flight(), 1);
    let mut changed = a.clone();
    changed.priority = 2;
    b.sync(&[changed]);
    assert_eq!(b.slots()[0].in_flight(), 1);
    drop(lease);
    assert_eq!(b.slots()[0].in_flight(), 0);
}

// ---- failover, caps, models ----

#[test]
fn failover_never_reuses_an_account() {
    let (b, _) = manual(StrategyKind::Balanced);
    let accounts: Vec<Account> = (0..4).map(|_| active(1)).collect();
    b.sync(&accounts);
    let mut tried = Vec::new();
    for _ in 0..4 {
        let lease = b
            .route(&RouteRequest {
                exclude: &tried,
                ..RouteRequest::new(SONNET)
            })
            .unwrap();
        assert!(!tried.contains(&lease.account_id()));
        tried.push(lease.account_id());
    }
    let err = b
        .route(&RouteRequest {
            exclude: &tried,
            ..RouteRequest::new(SONNET)
        })
        .unwrap_err();
    assert_eq!(
        err,
        NoAccount::AllBusy {
            earliest_available: None
        }
    );
}

#[test]
fn concurrency_cap_sends_the_overflow_elsewhere() {
    let (b, _) = manual(StrategyKind::Priority);
    let mut capped = active(1);
    capped.routing.max_concurrency = Some(2);
    let spare = active(9);
    b.sync(&[capped.clone(), spare.clone()]);
    let req = RouteRequest::new(SONNET);
    let l1 = b.route(&req).unwrap();
    let l2 = b.route(&req).unwrap();
    assert_eq!((l1.account_id(), l2.account_id()), (capped.id, capped.id));
    let l3 = b.route(&req).unwrap();
    assert_eq!(l3.account_id(), spare.id);
    let alone = RouteRequest {
        exclude: std::slice::from_ref(&spare.id),
        ..req
    };
    assert!(matches!(b.route(&alone), Err(NoAccount::AllBusy { .. })));
    drop(l1);
    assert_eq!(pick(&b, &alone), capped.id);
}

#[test]
fn allow_lists_and_mappings_decide_eligibility() {
    let (b, _) = manual(StrategyKind::Priority);
    let mut sonnet_only = active(1);
    sonnet_only.routing.allowed_models = vec!["claude-sonnet-*".into()];
    let mut mapper = active(2);
    mapper.routing.allowed_models = vec!["claude-haiku-*".into()];
    mapper.routing.model_mapping = vec![ModelMapping {
        from: "claude-opus-*".into(),
        to: "claude-sonnet-4-5".into(),
    }];
    b.sync(&[sonnet_only.clone(), mapper.clone()]);

    let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
    assert_eq!(lease.account_id(), sonnet_only.id);
    assert_eq!(lease.upstream_model(), None);
    let lease = b.route(&RouteRequest::new(OPUS)).unwrap();
    assert_eq!(lease.account_id(), mapper.id);
    assert_eq!(lease.upstream_model(), Some("claude-sonnet-4-5"));
    assert_eq!(lease.model_family(), ModelFamily::Sonnet);
    assert_eq!(pick(&b, &RouteRequest::new("claude-haiku-4-5")), mapper.id);
    assert_eq!(
        b.route(&RouteRequest::new("gpt-4o")).unwrap_err(),
        NoAccount::NoneConfigured
    );
}

#[test]
fn bindings_pick_their_pools_and_groups_their_strategy() {
    let (b, _) = manual(StrategyKind::Priority);
    let group = Group {
        id: GroupId::generate(),
        name: "team".into(),
        description: String::new(),
        strategy: Some(StrategyKind::CostFirst),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    let shared = active(1);
    let mut dedicated = active(1);
    dedicated.routing.mode = AccountMode::Dedicated;
    let mut pay = active(1);
    pay.routing.mode = AccountMode::GroupOnly;
    pay.routing.group_ids = vec![group.id];
    let mut sub = active(9);
    sub.kind = AccountKind::ClaudeOauth;
    sub.routing.group_ids = vec![group.id];
    b.sync_all(
        &[shared.clone(), dedicated.clone(), pay.clone(), sub.clone()],
        std::slice::from_ref(&group),
    );
    // Shared pool: shared-mode accounts only, by priority.
    for _ in 0..3 {
        let id = pick(&b, &RouteRequest::new(SONNET));
        assert!(id == shared.id || id == sub.id);
        assert_ne!(id, dedicated.id);
    }
    // Bound to an account: that one, whatever its mode.
    let to_dedicated = RouteRequest {
        binding: KeyBinding::Account(dedicated.id),
        ..RouteRequest::new(SONNET)
    };
    assert_eq!(pick(&b, &to_dedicated), dedicated.id);
    // Group: its own strategy (cost_first) prefers the free subscription
    // over the higher-priority pay-per-token account.
    let to_group = RouteRequest {
        binding: KeyBinding::Group(group.id),
        ..RouteRequest::new(SONNET)
    };
    assert_eq!(pick(&b, &to_group), sub.id);
    assert_eq!(b.stats().decisions.cost_first, 1);
    let unknown = RouteRequest {
        binding: KeyBinding::Group(GroupId::generate()),
        ..RouteRequest::new(SONNET)
    };
    assert_eq!(b.route(&unknown).unwrap_err(), NoAccount::NoneConfigured);
}

#[test]
fn strategy_switch_at_run_time() {
    let (b, _) = manual(StrategyKind::Priority);
    let pay = active(1);
    let mut sub = active(5);
    sub.kind = AccountKind::ClaudeOauth;
    b.sync(&[pay.clone(), sub.clone()]);
    assert_eq!(pick(&b, &RouteRequest::new(SONNET)), pay.id);
    b.set_strategy(StrategyKind::CostFirst);
    assert_eq!(b.strategy(), StrategyKind::CostFirst);
    assert_eq!(pick(&b, &RouteRequest::new(SONNET)), sub.id);
    let d = b.stats().decisions;
    assert_eq!((d.priority, d.cost_first), (1, 1));
}

// ---- sticky sessions ----

#[test]
fn sticky_session_is_kept_then_moved_on_cooldown() {
    let (b, _) = manual(StrategyKind::Priority);
    let accounts: Vec<Account> = (0..3).map(|_| active(1)).collect();
    b.sync(&accounts);
    let session = session_key(Some("c2fd1380-2a3e-4f19-af32-c12020fa2a3c"), None, None);
    let req = RouteRequest {
        session,
        ..RouteRequest::new(SONNET)
    };
    let home = pick(&b, &req);
    // Without stickiness priority+LRU would rotate; the session stays.
    for _ in 0..5 {
        assert_eq!(pick(&b, &req), home);
        assert_ne!(pick(&b, &RouteRequest::new(SONNET)), home);
    }
    b.cool_down(home, b.now() + Duration::from_secs(60));
    let moved = pick(&b, &req);
    assert_ne!(moved, home);
    assert_eq!(
        pick(&b, &req),
        moved,
        "the session settles on its new account"
    );
    let stats = b.stats();
    assert_eq!(stats.decisions.sticky_moves, 1);
    assert!(stats.decisions.sticky_hits >= 6);
}

#[test]
fn failover_moves_the_session_and_failure_breaks_it() {
    let (b, _) = manual(StrategyKind::Priority);
    let accounts: Vec<Account> = (0..3).map(|_| active(1)).collect();
    b.sync(&accounts);
    let session = Some(SessionKey::from_prefix_hash(99));
    let first = b
        .route(&RouteRequest {
            session,
            ..RouteRequest::new(SONNET)
        })
        .unwrap();
    let home = first.account_id();
    // The attempt fails with a 529: the next attempt excludes it and the
    // session follows the new account.
    b.feedback(&first, failure(&b, FailureKind::Overloaded, 529, None));
    let tried = [home];
    let second = pick(
        &b,
        &RouteRequest {
            session,
            exclude: &tried,
            ..RouteRequest::new(SONNET)
        },
    );
    assert_ne!(second, home);
    let req = RouteRequest {
        session,
        ..RouteRequest::new(SONNET)
    };
    assert_eq!(pick(&b, &req), second);
}

#[test]
fn sticky_ttl_follows_the_injected_clock() {
    let (b, clock) = manual(StrategyKind::Priority);
    let accounts: Vec<Account> = (0..2).map(|_| active(1)).collect();
    b.sync(&accounts);
    b.set_sticky_ttl(Duration::from_secs(600));
    let req = RouteRequest {
        session: Some(SessionKey::from_session_id("s")),
        ..RouteRequest::new(SONNET)
    };
    let home = pick(&b, &req);
    clock.advance(Duration::from_secs(590));
    assert_eq!(pick(&b, &req), home, "renewed on use");
    clock.advance(Duration::from_secs(590));
    assert_eq!(pick(&b, &req), home);
    let hits = b.stats().decisions.sticky_hits;
    clock.advance(Duration::from_secs(601));
    let _ = pick(&b, &req);
    assert_eq!(
        b.stats().decisions.sticky_hits,
        hits,
        "expired: a fresh pick"
    );
}

#[test]
fn a_slow_account_loses_its_sessions() {
    let (b, _) = manual(StrategyKind::Priority);
    let accounts: Vec<Account> = (0..3).map(|_| active(1)).collect();
    b.sync(&accounts);
    let req = RouteRequest {
        session: Some(SessionKey::from_session_id("slow")),
        ..RouteRequest::new(SONNET)
    };
    // Build a pool average of ~500 ms on the other accounts.
    for _ in 0..20 {
        let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
        b.feedback(&lease, success(500));
    }
    let lease = b.route(&req).unwrap();
    let home = lease.account_id();
    b.feedback(&lease, success(500));
    drop(lease);
    // Now it answers in 9 s, far above the pool: after a few such answers
    // the session leaves it.
    let mut slow_answers = 0;
    loop {
        let lease = b.route(&req).unwrap();
        if lease.account_id() != home {
            break;
        }
        slow_answers += 1;
        assert!(slow_answers <= 3, "still clinging to a slow account");
        b.feedback(&lease, success(9_000));
    }
    let stats = b.stats();
    let slow = stats.accounts.iter().find(|a| a.id == home).unwrap();
    assert_eq!(slow.state, AccountState::Degraded);
    assert_eq!(stats.decisions.sticky_moves, 1);
}

// ---- breaker and rests ----

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_and_recovers_through_a_half_open_trial() {
    let b = Balancer::with_options(Options {
        seed: Some(1),
        ..Options::default()
    });
    let a = active(1);
    b.sync(std::slice::from_ref(&a));
    let req = RouteRequest::new(SONNET);
    for _ in 0..5 {
        let lease = b.route(&req).unwrap();
        assert!(!lease.is_trial());
        b.feedback(&lease, failure(&b, FailureKind::ServerError, 500, None));
    }
    let open_until = match b.route(&req) {
        Err(NoAccount::AllBusy {
            earliest_available: Some(t),
        }) => t,
        other => panic!("breaker should be open: {other:?}"),
    };
    assert_eq!(b.stats().accounts[0].state, AccountState::CoolingDown);
    assert!(matches!(
        b.stats().accounts[0].breaker,
        BreakerState::Open { .. }
    ));
    tokio::time::advance(open_until.duration_since(b.now()).unwrap()).await;
    // Half-open: exactly one trial at a time.
    let trial = b.route(&req).unwrap();
    assert!(trial.is_trial());
    assert!(matches!(b.route(&req), Err(NoAccount::AllBusy { .. })));
    // A trial dropped without a verdict frees the slot.
    drop(trial);
    let trial = b.route(&req).unwrap();
    assert!(trial.is_trial());
    b.feedback(&trial, success(400));
    drop(trial);
    assert_eq!(b.stats().accounts[0].breaker, BreakerState::Closed);
    let lease = b.route(&req).unwrap();
    assert!(!lease.is_trial());
}

#[test]
fn exhausted_window_in_headers_rests_until_reset() {
    let (b, _) = manual(StrategyKind::Priority);
    let mut sub = active(1);
    sub.kind = AccountKind::ClaudeOauth;
    let spare = active(5);
    b.sync(&[sub.clone(), spare.clone()]);
    let reset = b.now() + Duration::from_secs(2 * 3600);
    let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
    assert_eq!(lease.account_id(), sub.id);
    let limits = RateLimitInfo {
        unified: Some(Unified {
            status: Some(UnifiedStatus::Rejected),
            reset: Some(reset),
            representative_claim: Some(Claim::FiveHour),
            five_hour: Window {
                status: Some(UnifiedStatus::Rejected),
                utilization: Some(1.0),
                reset: Some(reset),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    b.feedback(
        &lease,
        Feedback::Failure {
            failure: Failure {
                kind: FailureKind::QuotaExhausted,
                status: Some(429),
                cooldown_until: Some(b.now() + Duration::from_secs(300)),
            },
            limits: Some(limits),
            model_family: None,
        },
    );
    let stats = b.stats();
    let s = stats.accounts.iter().find(|a| a.id == sub.id).unwrap();
    assert_eq!(s.cooldown_until.map(unix_ms), Some(unix_ms(reset)));
    assert_eq!(s.cooldown_reason, Some(ErrorReason::WindowExhausted));
    assert_eq!(pick(&b, &RouteRequest::new(SONNET)), spare.id);
    let only_sub = RouteRequest {
        binding: KeyBinding::Account(sub.id),
        ..RouteRequest::new(SONNET)
    };
    match b.route(&only_sub) {
        Err(NoAccount::AllBusy {
            earliest_available: Some(t),
        }) => assert_eq!(unix_ms(t), unix_ms(reset)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn burst_429_is_a_short_rest_and_family_limits_spare_other_models() {
    let (b, clock) = manual(StrategyKind::Priority);
    let (a, spare) = (active(1), active(5));
    b.sync(&[a.clone(), spare.clone()]);
    let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
    b.feedback(
        &lease,
        failure(
            &b,
            FailureKind::RateLimited,
            429,
            Some(Duration::from_secs(3)),
        ),
    );
    drop(lease);
    assert_eq!(pick(&b, &RouteRequest::new(SONNET)), spare.id);
    clock.advance(Duration::from_secs(4));
    assert_eq!(pick(&b, &RouteRequest::new(SONNET)), a.id);
    // A weekly Opus limit: Opus goes elsewhere, Sonnet stays.
    let lease = b.route(&RouteRequest::new(OPUS)).unwrap();
    assert_eq!(lease.account_id(), a.id);
    b.feedback(
        &lease,
        Feedback::Failure {
            failure: Failure {
                kind: FailureKind::QuotaExhausted,
                status: Some(429),
                cooldown_until: Some(b.now() + Duration::from_secs(3600)),
            },
            limits: None,
            model_family: Some(ModelFamily::Opus),
        },
    );
    assert_eq!(pick(&b, &RouteRequest::new(OPUS)), spare.id);
    assert_eq!(pick(&b, &RouteRequest::new(SONNET)), a.id);
    let stats = b.stats();
    let s = stats.accounts.iter().find(|x| x.id == a.id).unwrap();
    assert_eq!(s.state, AccountState::RateLimited);
    assert_eq!(s.rate_limited[0].family, ModelFamily::Opus);
}

#[test]
fn low_headroom_is_a_last_resort() {
    let (b, _) = manual(StrategyKind::Priority);
    let mut sub = active(1);
    sub.kind = AccountKind::ClaudeOauth;
    sub.routing.window_token_limit = Some(100_000);
    let spare = active(5);
    b.sync(&[sub.clone(), spare.clone()]);
    let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
    assert_eq!(lease.account_id(), sub.id);
    b.feedback(
        &lease,
        Feedback::Success {
            ttfb: Duration::from_millis(300),
            latency: Duration::from_millis(900),
            tokens: 90_000,
            cost_nano: 0,
            limits: None,
        },
    );
    drop(lease);
    let big = RouteRequest {
        estimated_tokens: 20_000,
        ..RouteRequest::new(SONNET)
    };
    assert_eq!(pick(&b, &big), spare.id, "would overrun the window");
    let small = RouteRequest {
        estimated_tokens: 2_000,
        ..RouteRequest::new(SONNET)
    };
    assert_eq!(pick(&b, &small), sub.id);
    let tried = [spare.id];
    let last_resort = RouteRequest {
        exclude: &tried,
        ..big
    };
    assert_eq!(pick(&b, &last_resort), sub.id);
}

#[test]
fn auth_failures_show_in_stats_and_success_clears_them() {
    let (b, clock) = manual(StrategyKind::Priority);
    let a = active(1);
    b.sync(&[a.clone(), account(2, AccountStatus::Disabled)]);
    let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
    b.feedback(
        &lease,
        failure(
            &b,
            FailureKind::AuthRejected,
            401,
            Some(Duration::from_secs(60)),
        ),
    );
    drop(lease);
    let stats = b.stats();
    assert_eq!(stats.accounts[0].state, AccountState::AuthFailed);
    assert_eq!(stats.accounts[1].state, AccountState::Disabled);
    let last = stats.accounts[0].last_error.unwrap();
    assert_eq!(
        (last.reason, last.status),
        (ErrorReason::AuthRejected, Some(401))
    );
    clock.advance(Duration::from_secs(61));
    let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
    b.feedback(&lease, success(300));
    assert_eq!(b.stats().accounts[0].state, AccountState::Healthy);
}

#[test]
fn client_errors_do_not_count_against_the_account() {
    let (b, _) = manual(StrategyKind::Priority);
    let a = active(1);
    b.sync(std::slice::from_ref(&a));
    for _ in 0..10 {
        let lease = b.route(&RouteRequest::new(SONNET)).unwrap();
        b.feedback(&lease, failure(&b, FailureKind::ClientError, 400, None));
    }
    let stats = b.stats();
    assert_eq!(stats.accounts[0].state, AccountState::Healthy);
    assert_eq!(stats.accounts[0].errors_total, 0);
}

#[test]
fn large_classes_are_walked_from_random_points_and_still_spread() {
    let (b, _) = manual(StrategyKind::Priority);
    let mut accounts: Vec<Account> = (0..300).map(|_| active(7)).collect();
    let mut best = active(1);
    best.routing.max_concurrency = Some(1);
    accounts.push(best.clone());
    b.sync(&accounts);
    let req = RouteRequest::new(SONNET);
    let first = b.route(&req).unwrap();
    assert_eq!(first.account_id(), best.id, "the better class wins");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..300 {
        seen.insert(pick(&b, &req));
    }
    // LRU inside sampled windows of the 300-account class: nearly all used.
    assert!(seen.len() > 200, "{}", seen.len());
    assert!(!seen.contains(&best.id), "held at its cap");
    b.set_strategy(StrategyKind::LeastUsed);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..300 {
        seen.insert(pick(&b, &req));
    }
    assert!(seen.len() > 200, "{}", seen.len());
}

#[test]
fn in_flight_estimates_count_against_the_window() {
    let (b, _) = manual(StrategyKind::Priority);
    let mut sub = active(1);
    sub.kind = AccountKind::ClaudeOauth;
    sub.routing.window_token_limit = Some(100_000);
    let spare = active(5);
    b.sync(&[sub.clone(), spare.clone()]);
    let req = RouteRequest {
        estimated_tokens: 60_000,
        ..RouteRequest::new(SONNET)
    };
    let first = b.route(&req).unwrap();
    assert_eq!(first.account_id(), sub.id);
    let second = b.route(&req).unwrap();
    assert_eq!(second.account_id(), spare.id, "60k in flight + 60k > 100k");
    drop(first);
    drop(second);
    let third = b.route(&req).unwrap();
    assert_eq!(
        third.account_id(),
        sub.id,
        "an abandoned estimate is released"
    );
    // Feedback replaces the estimate with the real count.
    b.feedback(
        &third,
        Feedback::Success {
            ttfb: Duration::from_millis(300),
            latency: Duration::from_millis(900),
            tokens: 30_000,
            cost_nano: 0,
            limits: None,
        },
    );
    drop(third);
    let used = b.stats().accounts[0].window_tokens_used;
    assert_eq!(used, 30_000);
}

#[test]
fn stream_errors_count_against_health_and_move_the_session() {
    let (b, _) = manual(StrategyKind::Priority);
    let accounts: Vec<Account> = (0..2).map(|_| active(1)).collect();
    b.sync(&accounts);
    let req = RouteRequest {
        session: Some(SessionKey::from_session_id("mid-stream")),
        ..RouteRequest::new(SONNET)
    };
    let lease = b.route(&req).unwrap();
    let home = lease.account_id();
    b.feedback(&lease, Feedback::StreamError);
    drop(lease);
    let stats = b.stats();
    let s = stats.accounts.iter().find(|a| a.id == home).unwrap();
    assert_eq!(s.errors_total, 1);
    assert_eq!(
        s.last_error.map(|e| e.reason),
        Some(ErrorReason::StreamError)
    );
    assert!(s.cooldown_until.is_none(), "no rest for one broken stream");
    // The mapping was dropped: LRU now sends the session to the other account.
    assert_ne!(pick(&b, &req), home);
}

#[test]
fn reset_account_clears_cooldown_breaker_and_health() {
    let (b, _clock) = manual(StrategyKind::Priority);
    let (sick, spare) = (active(1), active(2));
    b.sync(&[sick.clone(), spare.clone()]);
    for _ in 0..5 {
        let lease = b.select(&[spare.id]).unwrap();
        assert_eq!(lease.account_id(), sick.id);
        b.feedback(&lease, failure(&b, FailureKind::ServerError, 500, None));
    }
    b.cool_down(sick.id, b.now() + Duration::from_secs(600));
    assert_eq!(b.select(&[]).unwrap().account_id(), spare.id, "sick rests");
    let stats = |b: &Balancer| {
        b.stats()
            .accounts
            .into_iter()
            .find(|a| a.id == sick.id)
            .unwrap()
    };
    assert!(matches!(stats(&b).breaker, BreakerState::Open { .. }));
    assert!(b.reset_account(sick.id));
    let s = stats(&b);
    assert_eq!(s.breaker, BreakerState::Closed);
    assert!(s.cooldown_until.is_none());
    assert_eq!(s.state, AccountState::Healthy);
    assert!(s.last_error.is_none());
    assert_eq!(
        b.select(&[]).unwrap().account_id(),
        sick.id,
        "back in front"
    );
    assert!(!b.reset_account(AccountId::generate()));
}
