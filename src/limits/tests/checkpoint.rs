//! Checkpoints and status: snapshot/restore mid-window, and the key status report.

use super::*;

#[tokio::test]
async fn snapshot_and_restore_mid_window_keep_windows_budgets_and_activation() {
    let (l, key) = engine();
    let mut w = window(3_600);
    w.max_requests = Some(5);
    w.max_tokens = Some(100_000);
    let p = KeyPolicy {
        expiry: Expiry::Activation {
            amount: 30,
            unit: ActivationUnit::Days,
            activated_at: None,
        },
        rate_windows: vec![w],
        budgets: Budgets {
            daily: Some(usd("3")),
            family_weekly: Some(FamilyBudget {
                models: ModelScope::AllClaude,
                limit: usd("100"),
            }),
            ..Budgets::default()
        },
        ..KeyPolicy::default()
    };
    for i in 0..3 {
        admit(&l, ask(key, &p, t0() + secs(i), est(10, usd("0.1"))))
            .await
            .settle_at(t0() + secs(i), 1_000, usd("0.5"), true);
    }
    // A request in flight at checkpoint time is not carried over.
    let _in_flight = admit(&l, ask(key, &p, t0() + secs(5), est(5_000, usd("1")))).await;
    let snap = l.snapshot();
    let json = serde_json::to_string(&snap).unwrap();

    // "Restart" 10 minutes into the window.
    let restarted = Limits::new(chrono_tz::UTC);
    restarted.restore(serde_json::from_str(&json).unwrap());
    assert_eq!(restarted.snapshot(), snap);
    let now = t0() + secs(600);
    let s = restarted.key_status(key, &p, now);
    assert_eq!(s.windows[0].started_at, Some(t0()));
    assert_eq!(s.windows[0].resets_at, Some(t0() + secs(3_600)));
    assert_eq!(s.windows[0].requests.used, 4);
    assert_eq!(s.windows[0].tokens.used, 3_000);
    assert_eq!(s.windows[0].tokens.reserved, 0);
    assert_eq!(s.budgets[0].cost.used, usd("1.5"));
    assert_eq!(s.budgets.last().unwrap().cost.used, usd("1.5"));
    assert_eq!(s.activated_at, Some(t0()));
    // One more request fits in the restored window, then it is refused with
    // the original reset time.
    admit(&restarted, ask(key, &p, now, Estimate::default())).await;
    let r = refuse(&restarted, ask(key, &p, now, Estimate::default())).await;
    assert_eq!(r.kind, RefusalKind::Window);
    assert_eq!(r.retry_after_secs, Some(3_000));
    // The restored key does not activate again.
    let later = t0() + secs(3_600);
    assert_eq!(
        admit(&restarted, ask(key, &p, later, Estimate::default()))
            .await
            .activated(),
        None
    );
}

#[tokio::test]
async fn key_status_reports_every_limit() {
    let (l, key) = engine();
    let mut w = window(18_000);
    w.max_requests = Some(100);
    w.max_cost = Some(usd("5"));
    let p = KeyPolicy {
        rate_windows: vec![w],
        budgets: Budgets {
            daily: Some(usd("10")),
            weekly: Some(usd("50")),
            ..Budgets::default()
        },
        concurrency: Some(ConcurrencyLimit {
            max_in_flight: 3,
            queue: None,
        }),
        ..KeyPolicy::default()
    };
    admit(&l, ask(key, &p, t0(), est(0, usd("0.5"))))
        .await
        .settle_at(t0(), 2_000, usd("1.25"), true);
    let _held = admit(&l, ask(key, &p, t0(), est(0, usd("0.5")))).await;
    let s = l.key_status(key, &p, t0() + secs(60));
    assert_eq!(s.time_zone, "UTC");
    assert_eq!(s.expires_at, None);
    let w = &s.windows[0];
    assert_eq!(
        (w.requests.used, w.requests.limit, w.requests.left),
        (2, Some(100), Some(98))
    );
    assert_eq!(w.cost.used, usd("1.25"));
    assert_eq!(w.cost.reserved, usd("0.5"));
    assert_eq!(w.cost.left, Some(usd("3.25")));
    assert_eq!(w.tokens.limit, None);
    let periods: Vec<_> = s.budgets.iter().map(|b| b.period).collect();
    assert_eq!(
        periods,
        [
            BudgetPeriod::Daily,
            BudgetPeriod::Weekly,
            BudgetPeriod::Monthly,
            BudgetPeriod::Total
        ]
    );
    assert_eq!(s.budgets[0].cost.left, Some(usd("8.25")));
    assert_eq!(s.budgets[1].period_start, Some(t("2026-03-02T00:00:00Z")));
    assert_eq!(s.budgets[1].resets_at, Some(t("2026-03-09T00:00:00Z")));
    assert_eq!(s.budgets[2].cost.limit, None);
    assert_eq!(s.budgets[3].resets_at, None);
    assert_eq!((s.concurrency.in_flight, s.concurrency.limit), (1, Some(3)));
    // Serializable for GET /v1/key/usage.
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["budgets"][0]["period"], "daily");
    // An unknown key reports an untouched state.
    let fresh = l.key_status(KeyId::generate(), &p, t0());
    assert_eq!(fresh.windows[0].requests.used, 0);
}

/// The checkpoint writes only what changed: keys that settled a request
/// since the last one, and forgotten keys (as removals); restored keys are
/// already stored and are not written back.
#[tokio::test]
async fn take_changed_names_only_the_keys_touched_since_the_last_checkpoint() {
    let (l, a) = engine();
    let b = KeyId(uuid::Uuid::now_v7());
    let idle = KeyId(uuid::Uuid::now_v7());
    let p = KeyPolicy::default();
    for key in [a, b] {
        admit(&l, ask(key, &p, t0(), est(10, usd("0.1"))))
            .await
            .settle_at(t0(), 100, usd("0.5"), true);
    }
    let mut first: Vec<KeyId> = l
        .take_changed()
        .into_iter()
        .map(|(k, s)| {
            assert_eq!(s.unwrap().total, usd("0.5"));
            k
        })
        .collect();
    first.sort();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(first, both);
    assert!(l.take_changed().is_empty(), "nothing changed since");

    l.restore(LimitsSnapshot {
        keys: vec![l
            .key_snapshot(a)
            .map(|s| KeySnapshot { key_id: idle, ..s })
            .unwrap()],
    });
    assert!(
        l.take_changed().is_empty(),
        "a restore is what the store holds"
    );

    admit(&l, ask(b, &p, t0() + secs(1), est(10, usd("0.1"))))
        .await
        .settle_at(t0() + secs(1), 100, usd("0.25"), true);
    l.forget(a);
    let mut second = l.take_changed();
    second.sort_by_key(|(k, _)| *k);
    let mut want = vec![(a, None), (b, Some(usd("0.75")))];
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(
        second
            .into_iter()
            .map(|(k, s)| (k, s.map(|s| s.total)))
            .collect::<Vec<_>>(),
        want
    );

    // A failed write marks its keys again.
    l.mark_changed([b]);
    assert_eq!(l.take_changed().len(), 1);
}
