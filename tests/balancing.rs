//! The balancer through the real relay: key bindings and account modes,
//! model allow-lists and mappings, sticky sessions, a strategy switched at
//! run time, and the live stats.

mod common;

use common::{simple_body, TestRelay};
use serde_json::{json, Value};

async fn account(
    relay: &TestRelay,
    name: &str,
    key: &str,
    priority: i64,
    routing: Value,
) -> String {
    let v = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({"i": {"name": name, "kind": "ANTHROPIC_API_KEY", "apiKey": key, "baseUrl": relay.sim.base_url(), "priority": priority, "routing": routing}}),
        )
        .await;
    v["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn bound_key(relay: &TestRelay, input: Value) -> String {
    let v = relay
        .gql(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({"i": input}),
        )
        .await;
    v["createApiKey"]["secret"].as_str().unwrap().to_string()
}

fn last_credential(relay: &TestRelay) -> String {
    relay.sim.sim.requests().pop().unwrap().credential.unwrap()
}

#[tokio::test]
async fn bindings_and_modes_decide_who_serves() {
    let relay = TestRelay::start().await;
    let g = relay
        .gql(
            "mutation { createGroup(input: {name: \"vip\"}) { group { id } } }",
            json!({}),
        )
        .await;
    let group = g["createGroup"]["group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    account(&relay, "shared", "sk-ant-api03-bal-shared", 5, json!({})).await;
    let dedicated = account(
        &relay,
        "dedicated",
        "sk-ant-api03-bal-dedicated",
        1,
        json!({"mode": "DEDICATED"}),
    )
    .await;
    account(
        &relay,
        "vip-only",
        "sk-ant-api03-bal-vip",
        1,
        json!({"mode": "GROUP_ONLY", "groupIds": [group]}),
    )
    .await;

    // An unbound key never reaches DEDICATED or GROUP_ONLY accounts, even with better priority.
    let (_, plain) = relay.add_key("plain").await;
    for _ in 0..3 {
        assert_eq!(
            relay
                .messages(&plain, &simple_body(false))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(last_credential(&relay), "sk-ant-api03-bal-shared");
    }
    let to_account = bound_key(
        &relay,
        json!({"name": "to-account", "boundAccountId": dedicated}),
    )
    .await;
    assert_eq!(
        relay
            .messages(&to_account, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(last_credential(&relay), "sk-ant-api03-bal-dedicated");
    let to_group = bound_key(&relay, json!({"name": "to-group", "boundGroupId": group})).await;
    assert_eq!(
        relay
            .messages(&to_group, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(last_credential(&relay), "sk-ant-api03-bal-vip");
}

#[tokio::test]
async fn allow_lists_and_mappings_apply_to_the_requested_model() {
    let relay = TestRelay::start().await;
    account(
        &relay,
        "haiku-only",
        "sk-ant-api03-bal-haiku",
        1,
        json!({"allowedModels": ["claude-haiku-*"]}),
    )
    .await;
    account(
        &relay,
        "mapper",
        "sk-ant-api03-bal-mapper",
        2,
        json!({"modelMapping": [{"from": "claude-sonnet-4-5", "to": "claude-sonnet-4-5-20250929"}]}),
    )
    .await;
    let (_, key) = relay.add_key("k").await;
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    // The haiku-only account was skipped; the mapper sent the mapped name upstream.
    assert_eq!(last_credential(&relay), "sk-ant-api03-bal-mapper");
    assert_eq!(
        v["model"], "claude-sonnet-4-5-20250929",
        "upstream saw the mapped model"
    );
    let haiku = json!({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        relay.messages(&key, &haiku).send().await.unwrap().status(),
        200
    );
    assert_eq!(last_credential(&relay), "sk-ant-api03-bal-haiku");
    // No account serves opus-only… except the mapper (no allow-list): it serves anything.
    let gpt = json!({"model": "gpt-4o", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        relay.messages(&key, &gpt).send().await.unwrap().status(),
        404,
        "passed through from upstream"
    );
}

#[tokio::test]
async fn sessions_stick_to_their_account() {
    let relay = TestRelay::start().await;
    for i in 0..3 {
        account(
            &relay,
            &format!("a{i}"),
            &format!("sk-ant-api03-bal-sticky-{i}"),
            1,
            json!({}),
        )
        .await;
    }
    let (_, key) = relay.add_key("k").await;
    let mut per_session = Vec::new();
    for session in ["s-one", "s-two", "s-three"] {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let resp = relay
                .messages(&key, &simple_body(false))
                .header("X-Claude-Code-Session-Id", session)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            seen.push(last_credential(&relay));
        }
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "session {session} moved: {seen:?}"
        );
        per_session.push(seen[0].clone());
    }
    // Without a session id, one conversation (same system + first message)
    // still sticks, while different conversations spread.
    let mut same = std::collections::HashSet::new();
    for _ in 0..4 {
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap();
        same.insert(last_credential(&relay));
    }
    assert_eq!(same.len(), 1, "{same:?}");
    let mut spread = std::collections::HashSet::new();
    for i in 0..8 {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": format!("conversation {i}")}]});
        relay.messages(&key, &body).send().await.unwrap();
        spread.insert(last_credential(&relay));
    }
    assert!(spread.len() > 1, "{spread:?}");
}

#[tokio::test]
async fn strategy_switches_at_run_time_and_stats_show_accounts() {
    let relay = TestRelay::start().await;
    account(&relay, "a", "sk-ant-api03-bal-stats-a", 1, json!({})).await;
    account(&relay, "b", "sk-ant-api03-bal-stats-b", 9, json!({})).await;
    let (_, key) = relay.add_key("k").await;
    for _ in 0..4 {
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(
            last_credential(&relay),
            "sk-ant-api03-bal-stats-a",
            "PRIORITY prefers priority 1"
        );
    }
    relay
        .gql(
            "mutation { updateSettings(input: {strategy: BALANCED}) { settings { strategy } } }",
            json!({}),
        )
        .await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        // Distinct conversations, so prompt-prefix stickiness does not pin them.
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": format!("question {i}")}]});
        relay.messages(&key, &body).send().await.unwrap();
        seen.insert(last_credential(&relay));
    }
    assert_eq!(seen.len(), 2, "BALANCED spreads by weight: {seen:?}");
    let stats = relay
        .gql(
            "{ balancerStats { strategy accounts { accountId state inFlight requestsTotal } } }",
            json!({}),
        )
        .await;
    assert_eq!(stats["balancerStats"]["strategy"], "BALANCED");
    let accounts = stats["balancerStats"]["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    assert!(
        accounts
            .iter()
            .all(|a| a["inFlight"] == 0 && a["state"] == "HEALTHY"),
        "{stats}"
    );
}

#[tokio::test]
async fn sticky_sessions_survive_a_restart() {
    let relay = TestRelay::start().await;
    for i in 0..4 {
        account(
            &relay,
            &format!("a{i}"),
            &format!("sk-ant-api03-bal-persist-{i}"),
            1,
            json!({}),
        )
        .await;
    }
    let (_, key) = relay.add_key("k").await;
    let mut before = Vec::new();
    for session in ["p-1", "p-2", "p-3", "p-4", "p-5"] {
        relay
            .messages(&key, &simple_body(false))
            .header("X-Claude-Code-Session-Id", session)
            .send()
            .await
            .unwrap();
        before.push(last_credential(&relay));
    }
    let (sim, dir) = relay.stop().await;
    let relay = TestRelay::start_on(sim, dir, |_| {}).await;
    for (i, session) in ["p-1", "p-2", "p-3", "p-4", "p-5"].iter().enumerate() {
        relay
            .messages(&key, &simple_body(false))
            .header("X-Claude-Code-Session-Id", *session)
            .send()
            .await
            .unwrap();
        assert_eq!(
            last_credential(&relay),
            before[i],
            "session {session} moved after the restart"
        );
    }
}
