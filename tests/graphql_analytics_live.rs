//! Live analytics through the real relay (TestRelay + simulated upstream):
//! `requestLog` and `usageTicker` delivered over a real WebSocket after real
//! relayed requests, `resetAccountState` lifting a real cooldown, and a
//! run-time pricing override that prices the next request and survives a
//! restart.

mod common;
mod ws_support;

use claude_relay::sim::Fault;
use common::{simple_body, TestRelay};
use serde_json::{json, Value};
use std::time::Duration;
use ws_support::Ws;

/// A graphql-transport-ws connection authenticated as the relay's admin.
async fn admin_ws(relay: &TestRelay) -> Ws {
    let mut ws = Ws::connect(relay.addr).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", relay.admin_token) } }))
        .await;
    assert_eq!(ws.recv_json().await["type"], "connection_ack");
    ws
}

fn nano(usd: &Value) -> u64 {
    claude_relay::domain::NanoUsd::parse_decimal(usd.as_str().unwrap())
        .unwrap()
        .0
}

#[tokio::test]
async fn request_log_and_usage_ticker_arrive_over_a_websocket() {
    let relay = TestRelay::start().await;
    relay
        .add_account("acct-one", "sk-ant-api03-live-1", 1)
        .await;
    let (key_id, key) = relay.add_key("live-key").await;
    let (_, other) = relay.add_key("other-key").await;

    let mut ws = admin_ws(&relay).await;
    ws.send(json!({"id": "log", "type": "subscribe", "payload": {"query":
        "subscription($k: [ID!]) { requestLog(filter: {keyIds: $k}) { keyId keyName accountName model inputTokens outputTokens billedCostUsd listCostUsd latencyMs status stream } }",
        "variables": {"k": [key_id]}}}))
        .await;
    ws.send(json!({"id": "tick", "type": "subscribe", "payload": {"query":
        "subscription { usageTicker { requests tokens costUsd errors droppedEvents today { requests } } }"}}))
        .await;
    // Let both subscriptions start listening before traffic flows.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (k, stream) in [(&key, false), (&other, false), (&key, true)] {
        let resp = relay
            .messages(k, &simple_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }

    let mut logged = Vec::new();
    let mut ticked = 0;
    let mut today_seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while (logged.len() < 2 || ticked < 3 || today_seen < 3)
        && tokio::time::Instant::now() < deadline
    {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.recv_json())
            .await
            .expect("a message within 5 s");
        assert_eq!(msg["type"], "next", "{msg}");
        let data = &msg["payload"]["data"];
        match msg["id"].as_str() {
            Some("log") => logged.push(data["requestLog"].clone()),
            Some("tick") => {
                let t = &data["usageTicker"];
                ticked += t["requests"].as_u64().unwrap();
                today_seen = today_seen.max(t["today"]["requests"].as_u64().unwrap());
                assert_eq!(t["droppedEvents"], 0);
                if t["requests"].as_u64().unwrap() > 0 {
                    assert!(t["tokens"].as_u64().unwrap() > 0, "{t}");
                    assert!(nano(&t["costUsd"]) > 0, "{t}");
                }
            }
            other => panic!("unexpected id {other:?}"),
        }
    }
    assert_eq!(
        ticked, 3,
        "every request counted once in the per-second totals"
    );
    assert_eq!(today_seen, 3, "today's running total");
    assert_eq!(logged.len(), 2, "the filter keeps only live-key's requests");
    for row in &logged {
        assert_eq!(row["keyId"], key_id.as_str());
        assert_eq!(row["keyName"], "live-key");
        assert_eq!(row["accountName"], "acct-one");
        assert_eq!(row["model"], "claude-sonnet-4-5");
        assert_eq!(row["status"], 200);
        assert!(row["inputTokens"].as_u64().unwrap() > 0);
        assert!(row["outputTokens"].as_u64().unwrap() > 0);
        assert!(nano(&row["billedCostUsd"]) > 0);
    }
    assert_eq!(logged[0]["stream"], false);
    assert_eq!(logged[1]["stream"], true);
}

#[tokio::test]
async fn reset_account_state_lifts_a_cooldown() {
    let relay = TestRelay::start().await;
    let first = relay.add_account("first", "sk-ant-api03-rs-first", 1).await;
    relay
        .add_account("second", "sk-ant-api03-rs-second", 2)
        .await;
    let (_, key) = relay.add_key("k").await;
    relay.sim.sim.set_fault(
        "sk-ant-api03-rs-first",
        Fault::RateLimited {
            retry_after_secs: 300,
        },
    );
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "served by the second account");
    relay.sim.sim.clear_fault("sk-ant-api03-rs-first");

    // The window view: the second account's last five hours hold the request.
    let row = |v: &Value, name: &str| {
        v["accountWindowUsage"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap()
    };
    let mut window = Value::Null;
    for _ in 0..100 {
        window = relay
            .gql(
                "{ accountWindowUsage { name windowTokensUsed lastFiveHours { requests inputTokens } } }",
                json!({}),
            )
            .await;
        if row(&window, "second")["lastFiveHours"]["requests"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let second = row(&window, "second");
    assert_eq!(second["lastFiveHours"]["requests"], 1, "{window}");
    assert!(second["lastFiveHours"]["inputTokens"].as_u64().unwrap() > 0);
    // API-key accounts have no 5-hour window: the balancer counts none.
    assert_eq!(second["windowTokensUsed"], 0, "{second}");
    assert_eq!(
        row(&window, "first")["lastFiveHours"]["requests"],
        0,
        "{window}"
    );

    let state = |v: &Value| {
        v["balancerStats"]["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["accountId"] == first.as_str())
            .cloned()
            .unwrap()
    };
    let q = "{ balancerStats { accounts { accountId state cooldownUntil headroom rateLimitedFamilies circuit healthScore } } }";
    let before = state(&relay.gql(q, json!({})).await);
    assert_ne!(before["state"], "HEALTHY", "{before}");
    assert!(!before["cooldownUntil"].is_null());

    let out = relay
        .gql(
            "mutation($i: ResetAccountStateInput!) { resetAccountState(input: $i) { accountId reset } }",
            json!({"i": {"id": first}}),
        )
        .await;
    assert_eq!(out["resetAccountState"]["reset"], true);
    let after = state(&relay.gql(q, json!({})).await);
    assert_eq!(after["state"], "HEALTHY", "{after}");
    assert_eq!(
        after["headroom"], 1.0,
        "header-derived limits are forgotten too"
    );
    assert!(after["cooldownUntil"].is_null());

    // The first account (priority 1) serves again. A new conversation: the
    // first one's sticky session rightly stays where its cache now is.
    relay.sim.sim.clear_requests();
    let mut body = simple_body(false);
    body["messages"][0]["content"] = json!("A different conversation");
    let resp = relay.messages(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Vec<String> = relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.credential)
        .collect();
    assert_eq!(seen, ["sk-ant-api03-rs-first"]);

    let missing = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation { resetAccountState(input: {id: \"00000000-0000-0000-0000-000000000001\"}) { reset } }",
            json!({}),
        )
        .await;
    assert_eq!(missing["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

/// The newest logged request's tokens and list cost.
async fn newest(relay: &TestRelay) -> Value {
    let v = relay
        .gql(
            "{ recentRequests(first: 1) { edges { node { inputTokens outputTokens cacheCreationInputTokens cacheReadInputTokens listCostUsd } } } }",
            json!({}),
        )
        .await;
    v["recentRequests"]["edges"][0]["node"].clone()
}

async fn send_and_wait(relay: &TestRelay, key_id: &str, key: &str, n: u64) -> Value {
    let resp = relay
        .messages(key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    relay.wait_key_requests(key_id, n).await;
    newest(relay).await
}

/// $100/MTok input, $1000/MTok output, cache prices by the default multipliers.
fn overridden_cost(row: &Value) -> u64 {
    let n = |f: &str| row[f].as_u64().unwrap();
    n("inputTokens") * 100_000
        + n("outputTokens") * 1_000_000
        + n("cacheCreationInputTokens") * 125_000
        + n("cacheReadInputTokens") * 10_000
}

#[tokio::test]
async fn pricing_override_prices_the_next_request_and_survives_restart() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-price", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    let first = send_and_wait(&relay, &key_id, &key, 1).await;
    assert_ne!(nano(&first["listCostUsd"]), overridden_cost(&first));

    let set = relay
        .gql(
            "mutation($i: UpdateSettingsInput!) { updateSettings(input: $i) { settings { pricingOverrides { model inputPerMtok outputPerMtok cacheWrite5mPerMtok cacheReadPerMtok } } } }",
            json!({"i": {"pricingOverrides": [{"model": "claude-sonnet-4-5", "inputPerMtok": "100", "outputPerMtok": "1000"}]}}),
        )
        .await;
    let o = &set["updateSettings"]["settings"]["pricingOverrides"][0];
    assert_eq!(o["model"], "claude-sonnet-4-5");
    assert_eq!(o["cacheWrite5mPerMtok"], "125");
    assert_eq!(o["cacheReadPerMtok"], "10");
    // The relay follows the stored settings through the store's event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = send_and_wait(&relay, &key_id, &key, 2).await;
    assert_eq!(nano(&second["listCostUsd"]), overridden_cost(&second));

    let (sim, dir) = relay.stop().await;
    let relay = TestRelay::start_on(sim, dir, |_| {}).await;
    let settings = relay
        .gql(
            "{ settings { pricingOverrides { model inputPerMtok } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        settings["settings"]["pricingOverrides"][0]["inputPerMtok"],
        "100"
    );
    let third = send_and_wait(&relay, &key_id, &key, 3).await;
    assert_eq!(nano(&third["listCostUsd"]), overridden_cost(&third));

    // An empty list removes the overrides again.
    relay
        .gql(
            "mutation { updateSettings(input: {pricingOverrides: []}) { settings { strategy } } }",
            json!({}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fourth = send_and_wait(&relay, &key_id, &key, 4).await;
    assert_eq!(nano(&fourth["listCostUsd"]), nano(&first["listCostUsd"]));
}
