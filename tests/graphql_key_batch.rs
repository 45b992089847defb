//! Batch key operations and secret regeneration through the admin API:
//! secrets shown once and stored only as hashes, by-filter bounds, the
//! affected/failed report, the old secret refused by the real relay after
//! regeneration, the key list's new filters and orderings, and a VIEWER
//! refused every one of these mutations.

mod common;
mod graphql_support;

use claude_relay::domain::{sha256_hex, Role};
use common::{simple_body, TestRelay};
use graphql_support::{code, data, Harness};
use serde_json::{json, Value};

const CREATE: &str = "mutation($i: CreateApiKeysInput!) { createApiKeys(input: $i) { created { secret apiKey { id name tags displayPrefix } } } }";
const DISABLE: &str = "mutation($i: DisableApiKeysInput!) { disableApiKeys(input: $i) { matchedCount affectedCount affectedIds failures { id code } } }";
const DELETE: &str = "mutation($i: DeleteApiKeysInput!) { deleteApiKeys(input: $i) { matchedCount affectedCount affectedIds failures { id code } } }";
const UPDATE: &str = "mutation($i: UpdateApiKeysInput!) { updateApiKeys(input: $i) { matchedCount affectedCount affectedIds failures { id code } } }";
const REGENERATE: &str = "mutation($i: RegenerateApiKeySecretInput!) { regenerateApiKeySecret(input: $i) { secret apiKey { id displayPrefix } } }";
const LIST: &str = "query($f: ApiKeyFilter, $o: ApiKeyOrder, $first: Int, $after: String) { apiKeys(filter: $f, orderBy: $o, first: $first, after: $after) { totalCount edges { node { id name status tags } } pageInfo { hasNextPage endCursor } } }";

async fn create(h: &Harness, token: &str, prefix: &str, count: i32, tags: &[&str]) -> Value {
    h.post(
        Some(token),
        CREATE,
        json!({ "i": { "count": count, "namePrefix": prefix, "template": { "tags": tags, "description": "batch" } } }),
    )
    .await
}

fn names(list: &Value) -> Vec<String> {
    list["apiKeys"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn create_many_shows_each_secret_once_and_stores_only_hashes() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let resp = create(&h, &token, "team", 25, &["bulk"]).await;
    let created = data(&resp)["createApiKeys"]["created"]
        .as_array()
        .expect("created")
        .clone();
    assert_eq!(created.len(), 25);
    assert_eq!(created[0]["apiKey"]["name"], "team-0001");
    assert_eq!(created[24]["apiKey"]["name"], "team-0025");
    let secrets: std::collections::BTreeSet<&str> = created
        .iter()
        .map(|c| c["secret"].as_str().expect("secret"))
        .collect();
    assert_eq!(secrets.len(), 25, "every secret differs");
    let stored = h.store.list_keys().expect("keys");
    for c in &created {
        let secret = c["secret"].as_str().expect("secret");
        let id = c["apiKey"]["id"].as_str().expect("id");
        let key = stored
            .iter()
            .find(|k| k.id.to_string() == id)
            .expect("stored");
        assert_eq!(key.key_hash, sha256_hex(secret));
        let record = serde_json::to_string(key).expect("json");
        assert!(!record.contains(secret), "the raw secret is not stored");
    }
    // Secrets are never readable afterwards: the key type has no secret field.
    let again = h
        .post(
            Some(&token),
            "{ apiKeys { edges { node { secret } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        code(&again),
        "BAD_USER_INPUT",
        "no `secret` field on ApiKey"
    );

    // A taken name refuses the whole batch before anything is written.
    let clash = create(&h, &token, "team", 30, &[]).await;
    assert_eq!(code(&clash), "CONFLICT");
    assert_eq!(h.store.list_keys().expect("keys").len(), 25);
    let too_many = create(&h, &token, "more", 1001, &[]).await;
    assert_eq!(code(&too_many), "BAD_USER_INPUT");
}

#[tokio::test]
async fn by_filter_operations_are_bounded_and_report_what_they_did() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    create(&h, &token, "bulk", 12, &["bulk"]).await;
    create(&h, &token, "other", 3, &["other"]).await;

    let selection = |max: i32| json!({ "filter": { "tag": "BULK" }, "maxCount": max });
    let over = h
        .post(
            Some(&token),
            DISABLE,
            json!({ "i": { "selection": selection(5) } }),
        )
        .await;
    assert_eq!(code(&over), "BAD_USER_INPUT");
    let active = h
        .post(Some(&token), LIST, json!({ "f": { "status": ["ACTIVE"] } }))
        .await;
    assert_eq!(
        data(&active)["apiKeys"]["totalCount"],
        15,
        "nothing changed"
    );

    let done = h
        .post(
            Some(&token),
            DISABLE,
            json!({ "i": { "selection": selection(12) } }),
        )
        .await;
    let p = &data(&done)["disableApiKeys"];
    assert_eq!(p["matchedCount"], 12);
    assert_eq!(p["affectedCount"], 12);
    let disabled = h
        .post(
            Some(&token),
            LIST,
            json!({ "f": { "status": ["DISABLED"] } }),
        )
        .await;
    assert_eq!(data(&disabled)["apiKeys"]["totalCount"], 12);

    // Tags added and removed by filter; the tag index follows.
    let upd = h
        .post(
            Some(&token),
            UPDATE,
            json!({ "i": { "selection": { "filter": { "tag": "bulk", "status": ["DISABLED"] } }, "changes": { "addTags": ["moved"], "removeTags": ["bulk"], "status": "ACTIVE" } } }),
        )
        .await;
    assert_eq!(data(&upd)["updateApiKeys"]["affectedCount"], 12);
    let bulk = h
        .post(Some(&token), LIST, json!({ "f": { "tag": "bulk" } }))
        .await;
    assert_eq!(data(&bulk)["apiKeys"]["totalCount"], 0);
    let moved = h
        .post(
            Some(&token),
            LIST,
            json!({ "f": { "tags": ["moved"], "status": ["ACTIVE"] }, "first": 5 }),
        )
        .await;
    assert_eq!(data(&moved)["apiKeys"]["totalCount"], 12);

    // Delete by ids, one of them unknown: reported, the rest done.
    let ids: Vec<Value> = data(&moved)["apiKeys"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    let mut with_unknown = ids.clone();
    with_unknown.push(json!(uuid::Uuid::now_v7().to_string()));
    let del = h
        .post(
            Some(&token),
            DELETE,
            json!({ "i": { "selection": { "ids": with_unknown } } }),
        )
        .await;
    let p = &data(&del)["deleteApiKeys"];
    assert_eq!(p["matchedCount"], 6);
    assert_eq!(p["affectedCount"], 5);
    assert_eq!(p["failures"][0]["code"], "NOT_FOUND");
    let left = h
        .post(Some(&token), LIST, json!({ "f": { "tag": "moved" } }))
        .await;
    assert_eq!(data(&left)["apiKeys"]["totalCount"], 7);

    let neither = h
        .post(Some(&token), DELETE, json!({ "i": { "selection": {} } }))
        .await;
    assert_eq!(code(&neither), "BAD_USER_INPUT");
}

#[tokio::test]
async fn the_key_list_filters_orders_and_pages_with_cursors() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    create(&h, &token, "zeta", 7, &["t1"]).await;
    create(&h, &token, "alpha", 6, &["t1", "t2"]).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let resp = h
            .post(
                Some(&token),
                LIST,
                json!({ "f": { "tag": "t1", "search": "A-00" }, "o": { "field": "NAME", "direction": "DESC" }, "first": 4, "after": after }),
            )
            .await;
        let d = data(&resp);
        assert_eq!(d["apiKeys"]["totalCount"], 13);
        seen.extend(names(d));
        if d["apiKeys"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = d["apiKeys"]["pageInfo"]["endCursor"]
            .as_str()
            .map(String::from);
    }
    let mut want: Vec<String> = (1..=7)
        .map(|i| format!("zeta-{i:04}"))
        .chain((1..=6).map(|i| format!("alpha-{i:04}")))
        .collect();
    want.sort();
    want.reverse();
    assert_eq!(seen, want);

    // Cost orderings answer (nothing used yet: every key costs 0, by id).
    for field in [
        "BILLED_COST_THIS_MONTH",
        "BILLED_COST_LIFETIME",
        "LAST_USED_AT",
    ] {
        let resp = h
            .post(Some(&token), LIST, json!({ "f": { "tags": ["t1", "T2"] }, "o": { "field": field, "direction": "DESC" } }))
            .await;
        assert_eq!(data(&resp)["apiKeys"]["totalCount"], 6, "{field}");
    }
    // Bad input is BAD_USER_INPUT.
    for f in [
        json!({ "createdFrom": "2026-01-02T00:00:00Z", "createdBefore": "2026-01-01T00:00:00Z" }),
        json!({ "minRequests": -1 }),
        json!({ "minCostUsd": "2", "maxCostUsd": "1" }),
        json!({ "ids": ["not-an-id"] }),
        json!({ "boundAccountId": "nope" }),
    ] {
        let resp = h.post(Some(&token), LIST, json!({ "f": f })).await;
        assert_eq!(code(&resp), "BAD_USER_INPUT", "{f}");
    }
    let cross = h
        .post(Some(&token), LIST, json!({ "f": { "usagePeriod": "LIFETIME", "minRequests": 1 }, "o": { "field": "BILLED_COST_THIS_MONTH" } }))
        .await;
    assert_eq!(code(&cross), "BAD_USER_INPUT");
    let resp = h
        .post(
            Some(&token),
            LIST,
            json!({ "first": 1, "o": { "field": "NAME" } }),
        )
        .await;
    let cursor = data(&resp)["apiKeys"]["pageInfo"]["endCursor"].clone();
    let other = h
        .post(
            Some(&token),
            LIST,
            json!({ "after": cursor, "o": { "field": "CREATED_AT" } }),
        )
        .await;
    assert_eq!(
        code(&other),
        "BAD_USER_INPUT",
        "a cursor from another ordering"
    );
}

#[tokio::test]
async fn a_viewer_can_run_none_of_the_batch_mutations() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let made = create(&h, &token, "keep", 2, &["v"]).await;
    let id = data(&made)["createApiKeys"]["created"][0]["apiKey"]["id"].clone();
    h.add_admin("watcher", "watcher-password-1", Role::Viewer);
    let viewer = h.login("watcher", "watcher-password-1").await;
    let sel = json!({ "ids": [id.clone()] });
    let attempts = [
        (CREATE, json!({ "i": { "count": 1, "namePrefix": "x" } })),
        (DISABLE, json!({ "i": { "selection": sel } })),
        (DELETE, json!({ "i": { "selection": sel } })),
        (
            UPDATE,
            json!({ "i": { "selection": sel, "changes": { "description": "x" } } }),
        ),
        (REGENERATE, json!({ "i": { "id": id } })),
    ];
    let before = serde_json::to_string(&h.store.list_keys().expect("keys")).expect("json");
    for (query, vars) in attempts {
        let resp = h.post(Some(&viewer), query, vars).await;
        assert_eq!(code(&resp), "FORBIDDEN", "{query}");
    }
    let after = serde_json::to_string(&h.store.list_keys().expect("keys")).expect("json");
    assert_eq!(before, after, "a viewer changed nothing");
    // …but may list.
    let list = h.post(Some(&viewer), LIST, json!({})).await;
    assert_eq!(data(&list)["apiKeys"]["totalCount"], 2);
}

#[tokio::test]
async fn a_regenerated_secret_replaces_the_old_one_at_once() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-regen", 1).await;
    let (key_id, old) = relay.add_key("rotating").await;
    let ok = relay
        .messages(&old, &simple_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200, "the old secret works before");

    let v = relay
        .gql(REGENERATE, json!({ "i": { "id": key_id } }))
        .await;
    let new = v["regenerateApiKeySecret"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(new, old);
    let refused = relay
        .messages(&old, &simple_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 401, "the old secret stops at once");
    let works = relay
        .messages(&new, &simple_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(works.status(), 200, "the new secret works");
}

#[tokio::test]
async fn accounts_filter_by_group_and_mode_and_sort_by_update() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let g = h
        .post(
            Some(&token),
            "mutation { createGroup(input: {name: \"pool\"}) { group { id } } }",
            json!({}),
        )
        .await;
    let group_id = data(&g)["createGroup"]["group"]["id"].clone();
    let make = |name: &str, routing: Value| json!({ "i": { "name": name, "kind": "ANTHROPIC_API_KEY", "apiKey": "sk-ant-api03-x", "routing": routing } });
    let create =
        "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }";
    for (name, routing) in [
        (
            "in-group",
            json!({ "mode": "GROUP_ONLY", "groupIds": [group_id.clone()] }),
        ),
        ("shared", json!({ "mode": "SHARED" })),
        ("dedicated", json!({ "mode": "DEDICATED" })),
    ] {
        let r = h.post(Some(&token), create, make(name, routing)).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let list = "query($f: AccountFilter, $o: AccountOrder) { accounts(filter: $f, orderBy: $o) { totalCount edges { node { name } } } }";
    let by_group = h
        .post(Some(&token), list, json!({ "f": { "groupId": group_id } }))
        .await;
    assert_eq!(
        data(&by_group)["accounts"]["edges"][0]["node"]["name"],
        "in-group"
    );
    assert_eq!(data(&by_group)["accounts"]["totalCount"], 1);
    let by_mode = h
        .post(Some(&token), list, json!({ "f": { "mode": "DEDICATED" } }))
        .await;
    assert_eq!(
        data(&by_mode)["accounts"]["edges"][0]["node"]["name"],
        "dedicated"
    );
    assert_eq!(data(&by_mode)["accounts"]["totalCount"], 1);
    let newest = h
        .post(
            Some(&token),
            list,
            json!({ "o": { "field": "UPDATED_AT", "direction": "DESC" } }),
        )
        .await;
    assert_eq!(
        data(&newest)["accounts"]["edges"][0]["node"]["name"],
        "dedicated"
    );
    let bad = h
        .post(Some(&token), list, json!({ "f": { "groupId": "nope" } }))
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
}
