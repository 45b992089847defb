//! Rate windows: requests, tokens and cost; fixed windows that start at a request; reservations; settlement across a window end.

use super::*;

#[tokio::test]
async fn default_policy_admits_everything() {
    let (l, key) = engine();
    let p = KeyPolicy::default();
    for i in 0..100 {
        let a = admit(&l, ask(key, &p, t0() + secs(i), est(1_000_000, usd("100")))).await;
        a.settle_at(t0() + secs(i), 1_000_000, usd("100"), true);
    }
    let s = l.key_status(key, &p, t0());
    assert_eq!(s.budgets[0].cost.used, usd("10000"));
    assert_eq!(s.budgets[0].cost.left, None);
}

#[tokio::test]
async fn request_window_refuses_with_reset_time_and_restarts_at_the_next_request() {
    let (l, key) = engine();
    let mut w = window(60);
    w.max_requests = Some(3);
    let p = KeyPolicy {
        rate_windows: vec![w],
        ..KeyPolicy::default()
    };
    // The window starts at the first request (10 s past the minute), not on
    // a clock boundary.
    let start = t0() + secs(10);
    for i in 0..3 {
        admit(&l, ask(key, &p, start + secs(i), Estimate::default()))
            .await
            .settle_at(start + secs(i), 10, NanoUsd::ZERO, true);
    }
    let r = refuse(&l, ask(key, &p, start + secs(45), Estimate::default())).await;
    assert_eq!(r.kind, RefusalKind::Window);
    assert_eq!(
        (r.kind.status(), r.kind.error_type()),
        (429, "rate_limit_error")
    );
    assert_eq!(r.retry_after_secs, Some(15));
    assert!(
        r.message
            .contains("3 requests (3 used) per 1 minute window"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("2026-03-02T10:01:10Z (in 15 seconds)"),
        "{}",
        r.message
    );
    let s = l.key_status(key, &p, start + secs(45));
    assert_eq!(s.windows[0].started_at, Some(start));
    assert_eq!(s.windows[0].resets_at, Some(start + secs(60)));
    assert_eq!(s.windows[0].requests.left, Some(0));

    // At the reset instant the next request starts a new window at its own time.
    let later = start + secs(60);
    admit(&l, ask(key, &p, later, Estimate::default())).await;
    let s = l.key_status(key, &p, later);
    assert_eq!(s.windows[0].started_at, Some(later));
    assert_eq!(s.windows[0].requests.used, 1);
    // After an idle gap the window is not running until a request comes.
    let idle = later + secs(500);
    let s = l.key_status(key, &p, idle);
    assert_eq!(
        (s.windows[0].started_at, s.windows[0].requests.used),
        (None, 0)
    );
    admit(&l, ask(key, &p, idle, Estimate::default())).await;
    assert_eq!(
        l.key_status(key, &p, idle).windows[0].started_at,
        Some(idle)
    );
}

#[tokio::test]
async fn token_window_reserves_estimates_of_requests_in_flight() {
    let (l, key) = engine();
    let mut w = window(300);
    w.max_tokens = Some(10_000);
    let p = KeyPolicy {
        rate_windows: vec![w],
        ..KeyPolicy::default()
    };
    let e = est(4_000, NanoUsd::ZERO);
    let a1 = admit(&l, ask(key, &p, t0(), e)).await;
    let _a2 = admit(&l, ask(key, &p, t0(), e)).await;
    // 0 used + 8,000 reserved + 4,000 > 10,000.
    let r = refuse(&l, ask(key, &p, t0(), e)).await;
    assert!(
        r.message.contains("10000 tokens (0 used, 8000 reserved"),
        "{}",
        r.message
    );
    // The first one really used 1,000: room again (1,000 + 4,000 + 4,000).
    a1.settle_at(t0() + secs(5), 1_000, NanoUsd::ZERO, true);
    let a3 = admit(&l, ask(key, &p, t0() + secs(6), e)).await;
    let s = l.key_status(key, &p, t0() + secs(6));
    assert_eq!(s.windows[0].tokens.used, 1_000);
    assert_eq!(s.windows[0].tokens.reserved, 8_000);
    assert_eq!(s.windows[0].tokens.left, Some(1_000));
    // The response that crosses the limit completes and is counted in full …
    a3.settle_at(t0() + secs(7), 20_000, NanoUsd::ZERO, true);
    // … and the next request is refused until the window resets.
    let r = refuse(&l, ask(key, &p, t0() + secs(8), est(1, NanoUsd::ZERO))).await;
    assert_eq!(r.retry_after_secs, Some(292));
}

#[tokio::test]
async fn cost_window_and_a_request_larger_than_the_whole_limit() {
    let (l, key) = engine();
    let mut w = window(3_600);
    w.max_cost = Some(usd("1"));
    let p = KeyPolicy {
        rate_windows: vec![w],
        ..KeyPolicy::default()
    };
    // Estimated at $3 against a $1 window: it may still run, alone, in a fresh window.
    let big = admit(&l, ask(key, &p, t0(), est(0, usd("3")))).await;
    let r = refuse(&l, ask(key, &p, t0(), est(0, usd("0.01")))).await;
    assert_eq!(r.kind, RefusalKind::Window);
    assert!(
        r.message.contains("$1 ($0 used, $3 reserved"),
        "{}",
        r.message
    );
    big.settle_at(t0() + secs(1), 0, usd("2.5"), true);
    let r = refuse(&l, ask(key, &p, t0() + secs(2), est(0, NanoUsd::ZERO))).await;
    assert!(r.message.contains("$1 ($2.5 used"), "{}", r.message);
    assert_eq!(r.retry_after_secs, Some(3_598));
}

#[tokio::test]
async fn a_request_that_never_reached_upstream_leaves_the_request_window() {
    let (l, key) = engine();
    let mut w = window(60);
    w.max_requests = Some(1);
    let p = KeyPolicy {
        rate_windows: vec![w],
        ..KeyPolicy::default()
    };
    admit(&l, ask(key, &p, t0(), Estimate::default()))
        .await
        .settle_at(t0(), 0, NanoUsd::ZERO, false);
    admit(&l, ask(key, &p, t0() + secs(1), Estimate::default()))
        .await
        .settle_at(t0() + secs(1), 5, NanoUsd::ZERO, true);
    refuse(&l, ask(key, &p, t0() + secs(2), Estimate::default())).await;
}

#[tokio::test]
async fn settling_after_the_window_ended_counts_into_the_current_window_only() {
    let (l, key) = engine();
    let mut w = window(60);
    w.max_tokens = Some(1_000);
    let p = KeyPolicy {
        rate_windows: vec![w],
        ..KeyPolicy::default()
    };
    let slow = admit(&l, ask(key, &p, t0(), est(100, NanoUsd::ZERO))).await;
    // No request since the window ended: nothing to count into.
    slow.settle_at(t0() + secs(90), 900, NanoUsd::ZERO, true);
    let s = l.key_status(key, &p, t0() + secs(90));
    assert_eq!(s.windows[0].tokens.used, 0);
    // A request in flight across a boundary counts into the window that is
    // running when it ends (it was reserved against that one too).
    let a = admit(&l, ask(key, &p, t0() + secs(100), est(100, NanoUsd::ZERO))).await;
    let b = admit(&l, ask(key, &p, t0() + secs(150), est(100, NanoUsd::ZERO))).await;
    let _c = admit(&l, ask(key, &p, t0() + secs(165), est(100, NanoUsd::ZERO))).await;
    a.settle_at(t0() + secs(170), 300, NanoUsd::ZERO, true);
    b.settle_at(t0() + secs(170), 50, NanoUsd::ZERO, true);
    let s = l.key_status(key, &p, t0() + secs(170));
    assert_eq!(s.windows[0].started_at, Some(t0() + secs(165)));
    assert_eq!(s.windows[0].tokens.used, 350);
    assert_eq!(s.windows[0].tokens.reserved, 100);
}

#[tokio::test]
async fn dropping_an_unsettled_admission_releases_reservation_and_slot() {
    let (l, key) = engine();
    let p = KeyPolicy {
        budgets: Budgets {
            daily: Some(usd("1")),
            ..Budgets::default()
        },
        concurrency: Some(ConcurrencyLimit {
            max_in_flight: 1,
            queue: None,
        }),
        ..KeyPolicy::default()
    };
    let a = admit(&l, ask(key, &p, t0(), est(10, usd("0.9")))).await;
    let s = l.key_status(key, &p, t0());
    assert_eq!(
        (s.concurrency.in_flight, s.budgets[0].cost.reserved),
        (1, usd("0.9"))
    );
    drop(a);
    let s = l.key_status(key, &p, t0());
    assert_eq!(
        (s.concurrency.in_flight, s.budgets[0].cost.reserved),
        (0, NanoUsd::ZERO)
    );
    assert_eq!(s.budgets[0].cost.used, NanoUsd::ZERO);
    admit(&l, ask(key, &p, t0(), est(10, usd("0.9")))).await;
}
