//! Budgets: daily, weekly (reset weekday + hour, zones, DST), monthly, total and family; 402 billing_error refusals.

use super::*;
use chrono::Weekday;

#[tokio::test]
async fn daily_budget_in_a_zone_is_402_billing_error_until_local_midnight() {
    let l = Limits::new(chrono_tz::UTC);
    let key = KeyId::generate();
    let p = KeyPolicy {
        budgets: Budgets {
            daily: Some(usd("1")),
            time_zone: Some(chrono_tz::Asia::Shanghai),
            ..Budgets::default()
        },
        ..KeyPolicy::default()
    };
    // 10:00 UTC is 18:00 in Shanghai; the local day ends at 16:00 UTC.
    admit(&l, ask(key, &p, t0(), est(0, usd("0.3"))))
        .await
        .settle_at(t0(), 0, usd("0.6"), true);
    // $0.6 used + $0.3 fits: admitted, and it crosses the limit when it ends.
    admit(&l, ask(key, &p, t0() + secs(1), est(0, usd("0.3"))))
        .await
        .settle_at(t0() + secs(2), 0, usd("0.6"), true);
    let r = refuse(&l, ask(key, &p, t0() + secs(3), est(0, usd("0.01")))).await;
    assert_eq!(r.kind, RefusalKind::Budget);
    assert_eq!(
        (r.kind.status(), r.kind.error_type()),
        (402, "billing_error")
    );
    assert_eq!(r.retry_after_secs, Some(6 * 3_600 - 3));
    assert!(
        r.message
            .starts_with("Daily budget of this API key is used up: $1 limit, $1.2 used;"),
        "{}",
        r.message
    );
    assert!(r.message.contains("2026-03-02T16:00:00Z"), "{}", r.message);
    assert!(
        r.message.contains("2026-03-03 00:00 Asia/Shanghai"),
        "{}",
        r.message
    );
    let s = l.key_status(key, &p, t0() + secs(3));
    assert_eq!(s.time_zone, "Asia/Shanghai");
    assert_eq!(s.budgets[0].period, BudgetPeriod::Daily);
    assert_eq!(s.budgets[0].resets_at, Some(t("2026-03-02T16:00:00Z")));
    assert_eq!(s.budgets[0].cost.left, Some(NanoUsd::ZERO));
    // The next local day starts from zero.
    admit(
        &l,
        ask(key, &p, t("2026-03-02T16:00:00Z"), est(0, usd("0.5"))),
    )
    .await;
}

#[tokio::test]
async fn weekly_budget_resets_at_weekday_and_hour_in_the_keys_zone_across_dst() {
    let l = Limits::new(chrono_tz::UTC);
    let key = KeyId::generate();
    // Weeks start Sunday 09:00 in New York; DST begins Sunday 2026-03-08.
    let p = KeyPolicy {
        budgets: Budgets {
            weekly: Some(usd("5")),
            weekly_reset: WeeklyReset {
                weekday: Weekday::Sun,
                hour: 9,
            },
            time_zone: Some(chrono_tz::America::New_York),
            ..Budgets::default()
        },
        ..KeyPolicy::default()
    };
    let tue = t("2026-03-03T15:00:00Z");
    admit(&l, ask(key, &p, tue, Estimate::default()))
        .await
        .settle_at(tue, 0, usd("5"), true);
    // Sunday 08:59 EDT (12:59 UTC): still the old week.
    let r = refuse(
        &l,
        ask(key, &p, t("2026-03-08T12:59:00Z"), Estimate::default()),
    )
    .await;
    assert_eq!(r.retry_after_secs, Some(60));
    assert!(r.message.contains("Weekly budget"), "{}", r.message);
    assert!(
        r.message.contains("2026-03-08 09:00 America/New_York"),
        "{}",
        r.message
    );
    let s = l.key_status(key, &p, t("2026-03-08T12:59:00Z"));
    let week = &s.budgets[1];
    assert_eq!(week.period_start, Some(t("2026-03-01T14:00:00Z"))); // 09:00 EST
    assert_eq!(week.resets_at, Some(t("2026-03-08T13:00:00Z"))); // 09:00 EDT
                                                                 // 09:00 EDT: a new week.
    admit(
        &l,
        ask(key, &p, t("2026-03-08T13:00:00Z"), est(0, usd("4"))),
    )
    .await;
}

#[tokio::test]
async fn monthly_and_total_budgets() {
    let (l, key) = engine();
    let p = KeyPolicy {
        budgets: Budgets {
            monthly: Some(usd("10")),
            total: Some(usd("15")),
            ..Budgets::default()
        },
        ..KeyPolicy::default()
    };
    admit(&l, ask(key, &p, t0(), Estimate::default()))
        .await
        .settle_at(t0(), 0, usd("10"), true);
    let r = refuse(
        &l,
        ask(key, &p, t("2026-03-31T23:59:59Z"), Estimate::default()),
    )
    .await;
    assert!(r.message.starts_with("Monthly budget"), "{}", r.message);
    assert_eq!(r.retry_after_secs, Some(1));
    let april = t("2026-04-01T00:00:00Z");
    admit(&l, ask(key, &p, april, Estimate::default()))
        .await
        .settle_at(april, 0, usd("5"), true);
    let r = refuse(
        &l,
        ask(key, &p, t("2026-05-01T00:00:00Z"), Estimate::default()),
    )
    .await;
    assert!(r.message.starts_with("Total budget"), "{}", r.message);
    assert!(r.message.contains("does not reset"), "{}", r.message);
    assert_eq!(r.retry_after_secs, None);
}

#[tokio::test]
async fn family_budget_covers_only_its_models() {
    let (l, key) = engine();
    let mut p = KeyPolicy {
        budgets: Budgets {
            family_weekly: Some(FamilyBudget {
                models: ModelScope::Matching("claude-opus-*".into()),
                limit: usd("2"),
            }),
            ..Budgets::default()
        },
        ..KeyPolicy::default()
    };
    let mut a = ask(key, &p, t0(), est(0, usd("0.5")));
    a.model = "claude-opus-4-8";
    admit(&l, a).await.settle_at(t0(), 0, usd("2"), true);
    let mut a = ask(key, &p, t0(), est(0, usd("0.5")));
    a.model = "claude-opus-4-8";
    let r = refuse(&l, a).await;
    assert_eq!(r.kind, RefusalKind::Budget);
    assert!(
        r.message.starts_with("Weekly budget for models matching claude-opus-* of this API key is used up: $2 limit, $2 used"),
        "{}",
        r.message
    );
    // Monday 00:00 UTC is the default week start.
    assert_eq!(r.retry_after_secs, Some(6 * 86_400 + 14 * 3_600));
    // Sonnet is not in the family.
    admit(&l, ask(key, &p, t0(), est(0, usd("0.5")))).await;
    let s = l.key_status(key, &p, t0());
    let fam = s.budgets.last().unwrap();
    assert_eq!(fam.period, BudgetPeriod::FamilyWeekly);
    assert_eq!(fam.cost.used, usd("2"));

    // All Claude models (claude-relay-service's weeklyOpusCostLimit).
    p.budgets.family_weekly = Some(FamilyBudget {
        models: ModelScope::AllClaude,
        limit: usd("1"),
    });
    let key = KeyId::generate();
    admit(&l, ask(key, &p, t0(), Estimate::default()))
        .await
        .settle_at(t0(), 0, usd("1"), true);
    assert_eq!(
        refuse(&l, ask(key, &p, t0(), Estimate::default()))
            .await
            .kind,
        RefusalKind::Budget
    );
    let mut other = ask(key, &p, t0(), Estimate::default());
    other.model = "gpt-4o";
    admit(&l, other).await;
}
