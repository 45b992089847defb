//! Usage analytics over real HTTP against a real sled store, checked
//! against a brute-force reference: random usage records go through the real
//! usage writer into the buckets, and every series point, top-N list and
//! total the API answers is compared with sums over the raw records (all
//! granularities, day and month boundaries in several zones, DST included).
//! Also: cost insights, the request log's filters and pagination, and that a
//! viewer cannot mutate.

mod graphql_support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use claude_relay::domain::Role;
use claude_relay::domain::{AccountId, KeyId, NanoUsd, TokenUsage, UsageRecord};
use claude_relay::store::Store;
use claude_relay::usage::pricing::PricingTable;
use graphql_support::{code, data, Harness};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;

const MODELS: [&str; 3] = ["claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"];

fn nano(v: &Value) -> u64 {
    NanoUsd::parse_decimal(v.as_str().unwrap()).unwrap().0
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

/// Writes records through the real usage writer and waits until flushed.
async fn write(store: &Store, records: Vec<UsageRecord>) {
    let tracker = tokio_util::task::TaskTracker::new();
    let token = tokio_util::sync::CancellationToken::new();
    let sink = claude_relay::usage::writer::spawn(
        store.clone(),
        std::time::Duration::from_millis(20),
        &tracker,
        token.clone(),
    );
    for r in records {
        sink.record(r);
    }
    token.cancel();
    tracker.close();
    tracker.wait().await;
}

async fn create_key(h: &Harness, token: &str, name: &str) -> KeyId {
    let v = h
        .post(
            Some(token),
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } } }",
            json!({"i": {"name": name}}),
        )
        .await;
    let id = data(&v)["createApiKey"]["apiKey"]["id"].as_str().unwrap();
    KeyId(uuid::Uuid::parse_str(id).unwrap())
}

fn record(
    at: DateTime<Utc>,
    key: KeyId,
    account: AccountId,
    model: &str,
    tokens: TokenUsage,
    cost: u64,
    status: u16,
) -> UsageRecord {
    UsageRecord {
        at,
        key_id: Some(key),
        account_id: Some(account),
        requested_model: model.into(),
        model: model.into(),
        tokens,
        list_cost: NanoUsd(cost),
        billed_cost: NanoUsd(cost * 2),
        unpriced: false,
        estimated: false,
        status,
        stream: false,
        latency_ms: 10,
        ttfb_ms: 5,
    }
}

struct Data {
    keys: Vec<KeyId>,
    accounts: Vec<AccountId>,
    records: Vec<UsageRecord>,
}

/// 3,000 random records between 2025-01-20 and 2025-03-12 (a month end and
/// New York's DST start inside), 4 keys, 3 accounts, 3 models.
async fn generate(h: &Harness, token: &str) -> Data {
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(create_key(h, token, &format!("key-{i}")).await);
    }
    let accounts: Vec<AccountId> = (0..3).map(|_| AccountId::generate()).collect();
    let mut rng = StdRng::seed_from_u64(42);
    let start = Utc.with_ymd_and_hms(2025, 1, 20, 0, 0, 0).unwrap();
    let span = 51 * 86_400;
    let records: Vec<UsageRecord> = (0..3000)
        .map(|_| {
            let at = start + Duration::seconds(rng.gen_range(0..span));
            let tokens = TokenUsage {
                input: rng.gen_range(1..5000),
                output: rng.gen_range(1..2000),
                cache_creation_5m: rng.gen_range(0..100),
                cache_creation_1h: rng.gen_range(0..50),
                cache_read: rng.gen_range(0..3000),
            };
            // Skewed so rankings are clear: key i costs about (i+1)².
            let k = rng.gen_range(0..4usize);
            let cost = rng.gen_range(1..1000) * ((k as u64 + 1) * (k as u64 + 1));
            record(
                at,
                keys[k],
                accounts[rng.gen_range(0..3)],
                MODELS[rng.gen_range(0..3)],
                tokens,
                cost,
                if rng.gen_bool(0.1) { 529 } else { 200 },
            )
        })
        .collect();
    write(&h.store, records.clone()).await;
    Data {
        keys,
        accounts,
        records,
    }
}

#[derive(Default, Debug, PartialEq)]
struct Sum {
    requests: u64,
    input: u64,
    output: u64,
    cache_5m: u64,
    cache_1h: u64,
    cache_read: u64,
    list: u64,
    billed: u64,
    errors: u64,
}

fn brute<'a>(records: impl Iterator<Item = &'a UsageRecord>) -> Sum {
    let mut s = Sum::default();
    for r in records {
        s.requests += 1;
        s.input += r.tokens.input;
        s.output += r.tokens.output;
        s.cache_5m += r.tokens.cache_creation_5m;
        s.cache_1h += r.tokens.cache_creation_1h;
        s.cache_read += r.tokens.cache_read;
        s.list += r.list_cost.0;
        s.billed += r.billed_cost.0;
        s.errors += u64::from(r.status != 200);
    }
    s
}

fn api_sum(p: &Value) -> Sum {
    let n = |f: &str| p[f].as_u64().unwrap();
    Sum {
        requests: n("requests"),
        input: n("inputTokens"),
        output: n("outputTokens"),
        cache_5m: n("cacheCreation5mInputTokens"),
        cache_1h: n("cacheCreation1hInputTokens"),
        cache_read: n("cacheReadInputTokens"),
        list: nano(&p["listCostUsd"]),
        billed: nano(&p["billedCostUsd"]),
        errors: n("errorRequests"),
    }
}

const POINT: &str = "start end label requests inputTokens outputTokens cacheCreation5mInputTokens cacheCreation1hInputTokens cacheReadInputTokens listCostUsd billedCostUsd errorRequests";

/// Checks every point of every returned series against the records that
/// `belongs` admits for that series' group.
fn check_series(
    series: &Value,
    records: &[UsageRecord],
    belongs: impl Fn(&UsageRecord, Option<&str>) -> bool,
) {
    let list = series.as_array().unwrap();
    assert!(!list.is_empty());
    for s in list {
        let group = s["groupId"].as_str();
        let points = s["points"].as_array().unwrap();
        assert!(!points.is_empty());
        for p in points {
            let start = DateTime::parse_from_rfc3339(p["start"].as_str().unwrap()).unwrap();
            let end = DateTime::parse_from_rfc3339(p["end"].as_str().unwrap()).unwrap();
            let expected = brute(
                records
                    .iter()
                    .filter(|r| r.at >= start && r.at < end && belongs(r, group)),
            );
            assert_eq!(api_sum(p), expected, "point {p} of group {group:?}");
        }
    }
}

async fn series(h: &Harness, token: &str, args: &str) -> Value {
    let q = format!(
        "{{ usageSeries({args}) {{ groupBy groupId groupName total {{ requests }} points {{ {POINT} }} }} }}"
    );
    let v = h.post(Some(token), &q, json!({})).await;
    data(&v)["usageSeries"].clone()
}

#[tokio::test]
async fn series_and_rankings_match_a_brute_force_reference() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let d = generate(&h, &token).await;
    let recs = &d.records;

    // Global, daily in New York (DST starts 2025-03-09: a 23-hour day).
    let s = series(
        &h,
        &token,
        r#"from: "2025-02-25T00:00:00Z", to: "2025-03-12T00:00:00Z", granularity: DAY, timeZone: "America/New_York""#,
    )
    .await;
    assert_eq!(s[0]["points"][0]["label"], "2025-02-24");
    assert!(s[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["label"] == "2025-03-09"
            && p["end"] == "2025-03-10T04:00:00Z"
            && p["start"] == "2025-03-09T05:00:00Z"));
    check_series(&s, recs, |_, _| true);

    // Hourly for one key.
    let k1 = d.keys[1];
    let s = series(
        &h,
        &token,
        &format!(r#"from: "2025-02-27T10:30:00Z", to: "2025-03-02T04:00:00Z", granularity: HOUR, filter: {{keyIds: ["{k1}"]}}"#),
    )
    .await;
    assert_eq!(s[0]["points"].as_array().unwrap().len(), 66);
    check_series(&s, recs, |r, _| r.key_id == Some(k1));

    // Monthly in Tokyo for one key and one model (key×model buckets).
    let s = series(
        &h,
        &token,
        &format!(r#"from: "2025-01-01T00:00:00Z", to: "2025-03-31T00:00:00Z", granularity: MONTH, timeZone: "Asia/Tokyo", filter: {{keyIds: ["{k1}"], models: ["claude-opus-4-1"]}}"#),
    )
    .await;
    assert_eq!(
        s[0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["2025-01", "2025-02", "2025-03"],
        "2025-01-01T00:00Z is already 09:00 on January 1 in Tokyo"
    );
    assert_eq!(s[0]["points"][0]["start"], "2024-12-31T15:00:00Z");
    check_series(&s, recs, |r, _| {
        r.key_id == Some(k1) && r.model == "claude-opus-4-1"
    });

    // One account, grouped by model, daily in UTC (account×model buckets).
    let a0 = d.accounts[0];
    let s = series(
        &h,
        &token,
        &format!(r#"from: "2025-02-01T00:00:00Z", to: "2025-02-10T00:00:00Z", granularity: DAY, groupBy: MODEL, filter: {{accountIds: ["{a0}"]}}"#),
    )
    .await;
    assert_eq!(s.as_array().unwrap().len(), 3);
    check_series(&s, recs, |r, g| {
        r.account_id == Some(a0) && Some(r.model.as_str()) == g
    });

    // Grouped by key without a filter: the two most expensive keys of the range.
    let (from, to) = (
        Utc.with_ymd_and_hms(2025, 2, 3, 5, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 2, 20, 13, 0, 0).unwrap(),
    );
    let s = series(
        &h,
        &token,
        &format!(
            r#"from: "{}", to: "{}", granularity: DAY, groupBy: KEY, limit: 2"#,
            rfc(from),
            rfc(to)
        ),
    )
    .await;
    let expected_top = top_brute(
        recs,
        from,
        to,
        |r| r.key_id.unwrap().to_string(),
        |r| r.billed_cost.0,
    );
    let got: Vec<String> = s
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["groupId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        expected_top[..2]
            .iter()
            .map(|x| x.0.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        s[0]["groupName"],
        format!(
            "key-{}",
            d.keys.iter().position(|k| k.to_string() == got[0]).unwrap()
        )
    );
    check_series(&s, recs, |r, g| {
        Some(r.key_id.unwrap().to_string().as_str()) == g
    });

    // Top-N: a whole month (from the rankings), an arbitrary range (bounded
    // walk), accounts by list cost, models by billed cost.
    for (from, to) in [
        (
            Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
        ),
        (from, to),
        (
            Utc.with_ymd_and_hms(2025, 1, 31, 22, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2025, 2, 1, 3, 0, 0).unwrap(),
        ),
    ] {
        for (by, id_of, cost_of) in [
            (
                "KEY",
                (|r: &UsageRecord| r.key_id.unwrap().to_string()) as fn(&UsageRecord) -> String,
                (|r: &UsageRecord| r.billed_cost.0) as fn(&UsageRecord) -> u64,
            ),
            (
                "ACCOUNT",
                |r| r.account_id.unwrap().to_string(),
                |r| r.list_cost.0,
            ),
            ("MODEL", |r| r.model.clone(), |r| r.billed_cost.0),
        ] {
            let v = h
                .post(
                    Some(&token),
                    &format!(
                        r#"{{ topUsage(by: {by}, from: "{}", to: "{}", first: 3) {{ rank id name costUsd billedCostUsd listCostUsd usage {{ requests }} }} }}"#,
                        rfc(from),
                        rfc(to)
                    ),
                    json!({}),
                )
                .await;
            let got: Vec<(String, u64)> = data(&v)["topUsage"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x["id"].as_str().unwrap().to_string(), nano(&x["costUsd"])))
                .collect();
            let mut expected = top_brute(recs, from, to, id_of, cost_of);
            expected.truncate(3);
            assert_eq!(got, expected, "top {by} over {from}..{to}");
        }
    }
}

/// Subjects by cost over `[from, to)`, highest first.
fn top_brute(
    recs: &[UsageRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    id: impl Fn(&UsageRecord) -> String,
    cost: impl Fn(&UsageRecord) -> u64,
) -> Vec<(String, u64)> {
    let mut m: HashMap<String, u64> = HashMap::new();
    for r in recs.iter().filter(|r| r.at >= from && r.at < to) {
        *m.entry(id(r)).or_default() += cost(r);
    }
    let mut v: Vec<(String, u64)> = m.into_iter().filter(|(_, c)| *c > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[tokio::test]
async fn recent_requests_filter_and_paginate_like_the_reference() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let keys = [
        create_key(&h, &token, "alpha").await,
        create_key(&h, &token, "beta").await,
    ];
    let accounts = [AccountId::generate(), AccountId::generate()];
    let mut rng = StdRng::seed_from_u64(7);
    let now = Utc::now();
    let records: Vec<UsageRecord> = (0..80)
        .map(|i| {
            record(
                now - Duration::seconds(10 * i + rng.gen_range(0..5)),
                keys[rng.gen_range(0..2)],
                accounts[rng.gen_range(0..2)],
                MODELS[rng.gen_range(0..3)],
                TokenUsage::default(),
                1,
                [200, 200, 529, 400][rng.gen_range(0..4)],
            )
        })
        .collect();
    write(&h.store, records.clone()).await;

    let q = "query($f: RequestLogFilterInput, $after: String) { recentRequests(first: 7, after: $after, filter: $f) { totalCount edges { cursor node { at keyId keyName accountId model status } } pageInfo { hasNextPage endCursor } } }";
    let filters = [
        json!(null),
        json!({"keyIds": [keys[0].to_string()]}),
        json!({"keyIds": [keys[1].to_string()], "errors": true}),
        json!({"accountIds": [accounts[1].to_string()], "models": ["claude-haiku-4-5"]}),
        json!({"statuses": [400]}),
    ];
    for f in filters {
        let matches = |r: &UsageRecord| {
            let key_ok = f["keyIds"].as_array().is_none_or(|ks| {
                ks.iter()
                    .any(|k| k.as_str() == Some(&r.key_id.unwrap().to_string()))
            });
            let acct_ok = f["accountIds"].as_array().is_none_or(|a| {
                a.iter()
                    .any(|x| x.as_str() == Some(&r.account_id.unwrap().to_string()))
            });
            let model_ok = f["models"]
                .as_array()
                .is_none_or(|m| m.iter().any(|x| x.as_str() == Some(&r.model)));
            let err_ok = f["errors"].as_bool().is_none_or(|e| e == (r.status != 200));
            let status_ok = f["statuses"]
                .as_array()
                .is_none_or(|s| s.iter().any(|x| x.as_u64() == Some(u64::from(r.status))));
            key_ok && acct_ok && model_ok && err_ok && status_ok
        };
        let mut expected: Vec<&UsageRecord> = records.iter().filter(|r| matches(r)).collect();
        expected.sort_by_key(|r| std::cmp::Reverse(r.at));
        let mut got = Vec::new();
        let mut after = Value::Null;
        loop {
            let v = h
                .post(Some(&token), q, json!({"f": f, "after": after}))
                .await;
            let c = &data(&v)["recentRequests"];
            assert_eq!(
                c["totalCount"].as_u64().unwrap() as usize,
                expected.len(),
                "{f}"
            );
            let edges = c["edges"].as_array().unwrap();
            assert!(edges.len() <= 7);
            got.extend(edges.iter().map(|e| e["node"].clone()));
            if !c["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = c["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(got.len(), expected.len(), "{f}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g["keyId"].as_str().unwrap(), e.key_id.unwrap().to_string());
            assert_eq!(g["status"].as_u64().unwrap(), u64::from(e.status));
            assert_eq!(g["model"], e.model.as_str());
            let at = DateTime::parse_from_rfc3339(g["at"].as_str().unwrap()).unwrap();
            assert_eq!(at, e.at, "newest first, each once");
        }
        if let Some(first) = got.first() {
            let name = if first["keyId"].as_str().unwrap() == keys[0].to_string() {
                "alpha"
            } else {
                "beta"
            };
            assert_eq!(first["keyName"], name);
        }
    }
    let bad = h
        .post(
            Some(&token),
            "{ recentRequests(after: \"bm9wZQ\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
    let retention = h
        .post(
            Some(&token),
            "{ requestLogRetention { maxEntries maxAgeSeconds entries bytes } }",
            json!({}),
        )
        .await;
    let r = &data(&retention)["requestLogRetention"];
    assert_eq!(r["maxEntries"], 100_000);
    assert_eq!(r["maxAgeSeconds"], 7 * 86_400);
    assert_eq!(r["entries"], 80);
    assert!(r["bytes"].as_u64().unwrap() > 80 * 100);
}

#[tokio::test]
async fn cost_insights_price_savings_and_explain_their_suggestions() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let tiny = create_key(&h, &token, "tiny").await;
    let losing = create_key(&h, &token, "losing").await;
    let saver = create_key(&h, &token, "saver").await;
    let acct = AccountId::generate();
    let at = Utc::now() - Duration::minutes(30);
    let mut records = Vec::new();
    for _ in 0..30 {
        let t = TokenUsage {
            input: 100,
            output: 50,
            ..TokenUsage::default()
        };
        records.push(record(at, tiny, acct, "claude-opus-4-1", t, 9_000, 200));
    }
    for _ in 0..25 {
        let t = TokenUsage {
            input: 10,
            output: 10,
            cache_creation_5m: 16_000,
            cache_read: 2_000,
            ..TokenUsage::default()
        };
        records.push(record(
            at,
            losing,
            acct,
            "claude-sonnet-4-5",
            t,
            100_000,
            200,
        ));
    }
    for _ in 0..30 {
        let t = TokenUsage {
            input: 10,
            output: 10,
            cache_creation_5m: 1_000,
            cache_read: 40_000,
            ..TokenUsage::default()
        };
        records.push(record(at, saver, acct, "claude-sonnet-4-5", t, 50_000, 200));
    }
    write(&h.store, records.clone()).await;

    let from = rfc(Utc::now() - Duration::days(1));
    let to = rfc(Utc::now() + Duration::hours(1));
    let v = h
        .post(
            Some(&token),
            "query($f: DateTime, $t: DateTime) { costInsights(from: $f, to: $t) { topKeys { id name costUsd } topModels { id } topAccounts { id costUsd } cacheByKey { id name requests cacheWriteTokens cacheReadTokens cacheReadShare savingUsd } cacheByAccount { id savingUsd cacheReadTokens } suggestions { kind subjectId subjectName message figures { name value } } } }",
            json!({"f": from, "t": to}),
        )
        .await;
    let ci = &data(&v)["costInsights"];
    let top: Vec<&str> = ci["topKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["losing", "saver", "tiny"], "by billed cost");
    assert_eq!(ci["topModels"][0]["id"], "claude-sonnet-4-5");

    let sonnet = PricingTable::embedded().price("claude-sonnet-4-5").unwrap();
    let saving = |reads: u64| {
        (u128::from(reads) * u128::from(sonnet.input - sonnet.cache_read) + 500) / 1000
    };
    let row = |name: &str| {
        ci["cacheByKey"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    let s = row("saver");
    assert_eq!(s["cacheReadTokens"], 30 * 40_000);
    assert_eq!(u128::from(nano(&s["savingUsd"])), saving(30 * 40_000));
    let share = s["cacheReadShare"].as_f64().unwrap();
    assert!((share - 1_200_000.0 / (300.0 + 30_000.0 + 1_200_000.0)).abs() < 1e-9);
    assert_eq!(
        u128::from(nano(&ci["cacheByAccount"][0]["savingUsd"])),
        saving(30 * 40_000) + saving(25 * 2_000),
        "per account: the same prices over all of its requests"
    );

    let kinds: Vec<(&str, &str)> = ci["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap(),
                s["subjectName"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("SMALL_REQUESTS_ON_EXPENSIVE_MODEL", "tiny")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("LOW_CACHE_HIT_RATIO", "losing")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.len(),
        2,
        "saver caches well; no account rests: {kinds:?}"
    );
    let small = ci["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "SMALL_REQUESTS_ON_EXPENSIVE_MODEL")
        .unwrap();
    assert!(small["message"]
        .as_str()
        .unwrap()
        .contains("30 requests averaging 150 tokens"));
    assert!(small["figures"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "averageTokens", "value": "150"})));

    // Today's totals (UTC) against the records.
    let today_start = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let v = h
        .post(
            Some(&token),
            "{ usageSummary(timeZone: \"UTC\") { timeZone todayStart today { requests billedCostUsd } thisMonth { requests } } }",
            json!({}),
        )
        .await;
    let sum = &data(&v)["usageSummary"];
    let expected = brute(records.iter().filter(|r| r.at >= today_start));
    assert_eq!(
        sum["today"]["requests"].as_u64().unwrap(),
        expected.requests
    );
    assert_eq!(nano(&sum["today"]["billedCostUsd"]), expected.billed);
}

#[tokio::test]
async fn viewers_read_analytics_but_cannot_mutate() {
    let h = Harness::start().await;
    h.add_admin("viewer", "viewer-password-123", Role::Viewer);
    let viewer = h.login("viewer", "viewer-password-123").await;
    let owner = h.owner_token().await;
    let read = h
        .post(
            Some(&viewer),
            "{ usageSummary { today { requests } } topUsage(by: KEY) { id } recentRequests { totalCount } }",
            json!({}),
        )
        .await;
    data(&read);
    for m in [
        "mutation { resetAccountState(input: {id: \"00000000-0000-0000-0000-000000000001\"}) { reset } }",
        "mutation { updateSettings(input: {pricingOverrides: [{model: \"m\", inputPerMtok: \"1\", outputPerMtok: \"2\"}]}) { settings { strategy } } }",
    ] {
        assert_eq!(code(&h.post(Some(&viewer), m, json!({})).await), "FORBIDDEN", "{m}");
    }
    let settings = h
        .post(
            Some(&owner),
            "{ settings { pricingOverrides { model } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&settings)["settings"]["pricingOverrides"], json!([]));
    // Prices finer than the pico-dollar per token are refused, as are duplicates.
    for bad in [
        r#"[{model: "m", inputPerMtok: "1.0000001", outputPerMtok: "2"}]"#,
        r#"[{model: "m", inputPerMtok: "1", outputPerMtok: "2"}, {model: "m", inputPerMtok: "1", outputPerMtok: "2"}]"#,
    ] {
        let v = h
            .post(
                Some(&owner),
                &format!("mutation {{ updateSettings(input: {{pricingOverrides: {bad}}}) {{ settings {{ strategy }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(code(&v), "BAD_USER_INPUT", "{bad}");
    }
    let unauth = h
        .post(None, "{ usageSummary { today { requests } } }", json!({}))
        .await;
    assert_eq!(code(&unauth), "UNAUTHENTICATED");
}
