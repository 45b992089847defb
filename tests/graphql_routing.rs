//! Groups, account routing settings, key bindings and run-time settings in
//! the admin API, over real HTTP with a real sled store.

mod common;

use common::TestRelay;
use serde_json::{json, Value};

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn groups_routing_bindings_and_settings() {
    let relay = TestRelay::start().await;
    let g = relay
        .gql(
            "mutation { createGroup(input: {name: \"team-a\", strategy: COST_FIRST}) { group { id name strategy } } }",
            json!({}),
        )
        .await;
    let group_id = g["createGroup"]["group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(g["createGroup"]["group"]["strategy"], "COST_FIRST");
    let dup = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation { createGroup(input: {name: \"TEAM-A\"}) { group { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&dup), "CONFLICT");

    let a = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id routing { mode groupIds weight maxConcurrency allowedModels modelMapping { from to } costMultiplier } } } }",
            json!({"i": {"name": "pooled", "kind": "ANTHROPIC_API_KEY", "apiKey": "sk-ant-api03-routing", "baseUrl": relay.sim.base_url(),
                   "routing": {"mode": "GROUP_ONLY", "groupIds": [group_id], "weight": 250, "maxConcurrency": 4,
                               "allowedModels": ["claude-sonnet-*"], "modelMapping": [{"from": "claude-sonnet-4", "to": "claude-sonnet-4-5"}], "costMultiplier": 1.2}}}),
        )
        .await;
    let account = &a["createAccount"]["account"];
    let account_id = account["id"].as_str().unwrap().to_string();
    assert_eq!(account["routing"]["mode"], "GROUP_ONLY");
    assert_eq!(account["routing"]["groupIds"][0], group_id.as_str());
    assert_eq!(account["routing"]["weight"], 250);
    assert_eq!(account["routing"]["maxConcurrency"], 4);
    assert_eq!(
        account["routing"]["modelMapping"][0]["to"],
        "claude-sonnet-4-5"
    );
    assert_eq!(account["routing"]["costMultiplier"], 1.2);

    let bad = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation($i: UpdateAccountInput!) { updateAccount(input: $i) { account { id } } }",
            json!({"i": {"id": account_id, "routing": {"weight": 0}}}),
        )
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
    let cleared = relay
        .gql(
            "mutation($i: UpdateAccountInput!) { updateAccount(input: $i) { account { routing { maxConcurrency weight } } } }",
            json!({"i": {"id": account_id, "routing": {"maxConcurrency": null}}}),
        )
        .await;
    assert_eq!(
        cleared["updateAccount"]["account"]["routing"]["maxConcurrency"],
        Value::Null
    );
    assert_eq!(
        cleared["updateAccount"]["account"]["routing"]["weight"],
        250
    );

    let k = relay
        .gql(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id boundGroupId boundAccountId } } }",
            json!({"i": {"name": "bound", "boundGroupId": group_id}}),
        )
        .await;
    let key_id = k["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        k["createApiKey"]["apiKey"]["boundGroupId"],
        group_id.as_str()
    );
    let both = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } } }",
            json!({"i": {"name": "both", "boundGroupId": group_id, "boundAccountId": account_id}}),
        )
        .await;
    assert_eq!(code(&both), "BAD_USER_INPUT");
    let rebound = relay
        .gql(
            "mutation($i: UpdateApiKeyInput!) { updateApiKey(input: $i) { apiKey { boundGroupId boundAccountId } } }",
            json!({"i": {"id": key_id, "boundAccountId": account_id, "boundGroupId": null}}),
        )
        .await;
    assert_eq!(
        rebound["updateApiKey"]["apiKey"]["boundAccountId"],
        account_id.as_str()
    );
    assert_eq!(
        rebound["updateApiKey"]["apiKey"]["boundGroupId"],
        Value::Null
    );

    // A bound account cannot be deleted without force; force unbinds.
    let refused = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation($i: DeleteAccountInput!) { deleteAccount(input: $i) { deletedId } }",
            json!({"i": {"id": account_id}}),
        )
        .await;
    assert_eq!(code(&refused), "CONFLICT");
    // A group in use cannot be deleted without force either.
    let refused = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation($i: DeleteGroupInput!) { deleteGroup(input: $i) { deletedId } }",
            json!({"i": {"id": group_id}}),
        )
        .await;
    assert_eq!(code(&refused), "CONFLICT");
    relay
        .gql(
            "mutation($i: DeleteGroupInput!) { deleteGroup(input: $i) { deletedId } }",
            json!({"i": {"id": group_id, "force": true}}),
        )
        .await;
    let a = relay
        .gql(
            "query($id: ID!) { account(id: $id) { routing { groupIds } } }",
            json!({"id": account_id}),
        )
        .await;
    assert_eq!(a["account"]["routing"]["groupIds"], json!([]));
    relay
        .gql(
            "mutation($i: DeleteAccountInput!) { deleteAccount(input: $i) { deletedId } }",
            json!({"i": {"id": account_id, "force": true}}),
        )
        .await;
    let k = relay
        .gql(
            "query($id: ID!) { apiKey(id: $id) { boundAccountId } }",
            json!({"id": key_id}),
        )
        .await;
    assert_eq!(k["apiKey"]["boundAccountId"], Value::Null);

    // Settings change at run time and persist.
    let s = relay
        .gql(
            "{ settings { strategy stickyTtlSeconds maxFailoverAttempts } }",
            json!({}),
        )
        .await;
    assert_eq!(s["settings"]["strategy"], "PRIORITY");
    let s = relay
        .gql("mutation { updateSettings(input: {strategy: LATENCY, stickyTtlSeconds: 600}) { settings { strategy stickyTtlSeconds } } }", json!({}))
        .await;
    assert_eq!(s["updateSettings"]["settings"]["strategy"], "LATENCY");
    let bad = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation { updateSettings(input: {stickyTtlSeconds: 1}) { settings { strategy } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
    let (sim, dir) = relay.stop().await;
    let relay = TestRelay::start_on(sim, dir, |_| {}).await;
    let s = relay
        .gql("{ settings { strategy stickyTtlSeconds } }", json!({}))
        .await;
    assert_eq!(s["settings"]["strategy"], "LATENCY");
    assert_eq!(s["settings"]["stickyTtlSeconds"], 600);
}

#[tokio::test]
async fn groups_page_with_stable_cursors_and_search() {
    let relay = TestRelay::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let g = relay
            .gql(
                "mutation($n: String!, $d: String!) { createGroup(input: {name: $n, description: $d}) { group { id } } }",
                json!({ "n": format!("team-{i}"), "d": if i % 2 == 0 { "Even Pool" } else { "odd" } }),
            )
            .await;
        ids.push(
            g["createGroup"]["group"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let q = "query($after: String, $s: String) { groups(first: 2, after: $after, search: $s) { totalCount edges { node { id name } } pageInfo { hasNextPage endCursor } } }";
    // Walk all pages: every group once, oldest first.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = relay.gql(q, json!({ "after": after })).await;
        let page = &page["groups"];
        assert_eq!(page["totalCount"], 5);
        for e in page["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_string());
        }
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ids);
    // Search over name and description, case-insensitive.
    let even = relay.gql(q, json!({ "s": "even pool" })).await;
    assert_eq!(even["groups"]["totalCount"], 3);
    let one = relay.gql(q, json!({ "s": "TEAM-3" })).await;
    assert_eq!(one["groups"]["edges"][0]["node"]["id"], ids[3]);
    let bad = relay
        .gql_as(
            Some(&relay.admin_token),
            "{ groups(first: 501) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
}
