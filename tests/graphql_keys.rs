//! Relay keys through the admin API over real HTTP: the secret shown once
//! and stored only as a hash, pagination, updates, soft delete, error codes
//! and usage after the usage writer's batches.

mod graphql_support;

use chrono::{TimeZone, Utc};
use claude_relay::domain::{sha256_hex, KeyId, KeyStatus, NanoUsd, UsageSubject, UsageTotals};
use claude_relay::store::UsageBatch;
use graphql_support::{code, data, mentions, Harness};
use serde_json::{json, Value};

const CREATE: &str = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id name description displayPrefix status tags costMultiplier expiresAt createdAt lastUsedAt } secret } }";
const UPDATE: &str = "mutation($input: UpdateApiKeyInput!) { updateApiKey(input: $input) { apiKey { id name description status tags costMultiplier expiresAt updatedAt } } }";
const DELETE: &str = "mutation($id: ID!) { deleteApiKey(input: {id: $id}) { deletedId } }";
const PAGE: &str = "query($first: Int, $after: String, $filter: ApiKeyFilter, $orderBy: ApiKeyOrder) { apiKeys(first: $first, after: $after, filter: $filter, orderBy: $orderBy) { totalCount edges { cursor node { id name status } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";

async fn create(h: &Harness, token: &str, input: Value) -> Value {
    h.post(Some(token), CREATE, json!({ "input": input })).await
}

async fn create_named(h: &Harness, token: &str, name: &str) -> String {
    let resp = create(h, token, json!({ "name": name })).await;
    data(&resp)["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn names(page: &Value) -> Vec<String> {
    page["apiKeys"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_secret_is_shown_once_and_stored_only_as_its_hash() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let resp = create(
        &h,
        &token,
        json!({ "name": " team a ", "description": "for CI", "tags": ["ci", "ci", "prod"], "costMultiplier": 1.5 }),
    )
    .await;
    let payload = &data(&resp)["createApiKey"];
    let secret = payload["secret"].as_str().unwrap();
    assert!(secret.starts_with("cr_") && secret.len() == 67, "{secret}");
    let key = &payload["apiKey"];
    assert_eq!(key["name"], "team a", "names are trimmed");
    assert_eq!(key["status"], "ACTIVE");
    assert_eq!(key["tags"], json!(["ci", "prod"]));
    assert_eq!(key["costMultiplier"], 1.5);
    assert!(key["lastUsedAt"].is_null());
    let shown = key["displayPrefix"].as_str().unwrap();
    assert!(shown.starts_with(&secret[..7]) && shown.ends_with(&secret[63..]) && shown.len() < 20);

    // The relay finds it by hash; the store holds no raw key anywhere.
    let stored = h.store.key_by_hash(&sha256_hex(secret)).unwrap().unwrap();
    assert_eq!(stored.id.to_string(), key["id"].as_str().unwrap());
    assert!(!serde_json::to_string(&h.store.list_keys().unwrap())
        .unwrap()
        .contains(&secret[3..]));

    // No read ever shows it again.
    let id = key["id"].as_str().unwrap();
    let one = h
        .post(
            Some(&token),
            "query($id: ID!) { apiKey(id: $id) { id name displayPrefix } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data(&one)["apiKey"]["displayPrefix"], shown);
    let list = h.post(Some(&token), PAGE, json!({})).await;
    assert!(!mentions(&one, &secret[3..]) && !mentions(&list, &secret[3..]));
}

#[tokio::test]
async fn pages_follow_stable_keyset_cursors() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create_named(&h, &token, &format!("key-{i}")).await);
    }
    let first = h.post(Some(&token), PAGE, json!({ "first": 3 })).await;
    let page = &data(&first)["apiKeys"];
    assert_eq!(page["totalCount"], 7);
    assert_eq!(names(data(&first)), vec!["key-0", "key-1", "key-2"]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], false);
    let cursor = page["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    assert_eq!(page["edges"][2]["cursor"], cursor.as_str());

    // Deleting a key already seen and adding a new one do not shift the next page.
    let resp = h.post(Some(&token), DELETE, json!({ "id": ids[1] })).await;
    data(&resp);
    create_named(&h, &token, "key-7").await;
    let second = h
        .post(Some(&token), PAGE, json!({ "first": 3, "after": cursor }))
        .await;
    assert_eq!(names(data(&second)), vec!["key-3", "key-4", "key-5"]);
    assert_eq!(
        data(&second)["apiKeys"]["totalCount"],
        7,
        "deleted keys are hidden by default"
    );
    let cursor = data(&second)["apiKeys"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let third = h
        .post(Some(&token), PAGE, json!({ "first": 3, "after": cursor }))
        .await;
    assert_eq!(names(data(&third)), vec!["key-6", "key-7"]);
    assert_eq!(data(&third)["apiKeys"]["pageInfo"]["hasNextPage"], false);

    // The default page, orderings and filters.
    let all = h.post(Some(&token), PAGE, json!({})).await;
    assert_eq!(names(data(&all)).len(), 7);
    let desc = h
        .post(
            Some(&token),
            PAGE,
            json!({ "first": 2, "orderBy": { "field": "NAME", "direction": "DESC" } }),
        )
        .await;
    assert_eq!(names(data(&desc)), vec!["key-7", "key-6"]);
    let deleted = h
        .post(
            Some(&token),
            PAGE,
            json!({ "filter": { "status": ["DELETED"] } }),
        )
        .await;
    assert_eq!(names(data(&deleted)), vec!["key-1"]);
    let search = h
        .post(
            Some(&token),
            PAGE,
            json!({ "filter": { "search": "KEY-4" } }),
        )
        .await;
    assert_eq!(names(data(&search)), vec!["key-4"]);

    // Bad paging arguments are the caller's error.
    assert_eq!(
        code(&h.post(Some(&token), PAGE, json!({ "first": 501 })).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(&h.post(Some(&token), PAGE, json!({ "first": -1 })).await),
        "BAD_USER_INPUT"
    );
    let bogus = h
        .post(Some(&token), PAGE, json!({ "after": "bm90LWEtY3Vyc29y" }))
        .await;
    assert_eq!(code(&bogus), "BAD_USER_INPUT");
    let by_name = data(&desc)["apiKeys"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let mixed = h
        .post(Some(&token), PAGE, json!({ "after": by_name }))
        .await;
    assert_eq!(
        code(&mixed),
        "BAD_USER_INPUT",
        "a cursor from another ordering"
    );
    let max = h.post(Some(&token), PAGE, json!({ "first": 500 })).await;
    data(&max);
}

#[tokio::test]
async fn updates_soft_deletes_and_restores() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let expiry = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let resp = create(&h, &token, json!({ "name": "k", "expiresAt": expiry })).await;
    let id = data(&resp)["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = h.store.subscribe();

    let updated = h
        .post(
            Some(&token),
            UPDATE,
            json!({ "input": { "id": id, "name": "renamed", "tags": ["x"], "status": "DISABLED", "expiresAt": null, "costMultiplier": 0.5 } }),
        )
        .await;
    let key = &data(&updated)["updateApiKey"]["apiKey"];
    assert_eq!(key["name"], "renamed");
    assert_eq!(key["status"], "DISABLED");
    assert!(key["expiresAt"].is_null(), "null clears the expiry");
    assert_eq!(key["costMultiplier"], 0.5);
    let stored = h
        .store
        .get_key(KeyId::parse(&id).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, KeyStatus::Disabled);
    assert!(
        events.try_recv().is_ok(),
        "the store announced the change (cache invalidation)"
    );

    // Leaving fields out keeps them.
    let same = h
        .post(
            Some(&token),
            UPDATE,
            json!({ "input": { "id": id, "description": "d" } }),
        )
        .await;
    assert_eq!(data(&same)["updateApiKey"]["apiKey"]["name"], "renamed");

    let deleted = h.post(Some(&token), DELETE, json!({ "id": id })).await;
    assert_eq!(data(&deleted)["deleteApiKey"]["deletedId"], id.as_str());
    let again = h.post(Some(&token), DELETE, json!({ "id": id })).await;
    assert_eq!(
        data(&again)["deleteApiKey"]["deletedId"],
        id.as_str(),
        "deleting twice is fine"
    );
    let one = h
        .post(
            Some(&token),
            "query($id: ID!) { apiKey(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data(&one)["apiKey"]["status"],
        "DELETED",
        "soft delete keeps the record"
    );
    assert_eq!(
        h.store
            .get_key(KeyId::parse(&id).unwrap())
            .unwrap()
            .unwrap()
            .status,
        KeyStatus::Deleted
    );

    let restored = h
        .post(
            Some(&token),
            UPDATE,
            json!({ "input": { "id": id, "status": "ACTIVE" } }),
        )
        .await;
    assert_eq!(
        data(&restored)["updateApiKey"]["apiKey"]["status"],
        "ACTIVE"
    );
}

#[tokio::test]
async fn errors_carry_the_right_codes() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let id = create_named(&h, &token, "taken").await;
    assert_eq!(
        code(&create(&h, &token, json!({ "name": "TAKEN" })).await),
        "CONFLICT"
    );
    let other = create_named(&h, &token, "other").await;
    let rename = h
        .post(
            Some(&token),
            UPDATE,
            json!({ "input": { "id": other, "name": "taken" } }),
        )
        .await;
    assert_eq!(code(&rename), "CONFLICT");

    let unknown = KeyId::generate().to_string();
    assert_eq!(
        code(&h.post(Some(&token), DELETE, json!({ "id": unknown })).await),
        "NOT_FOUND"
    );
    assert_eq!(
        code(
            &h.post(
                Some(&token),
                UPDATE,
                json!({ "input": { "id": unknown, "name": "x" } })
            )
            .await
        ),
        "NOT_FOUND"
    );
    let missing = h
        .post(
            Some(&token),
            "query($id: ID!) { apiKey(id: $id) { id } }",
            json!({ "id": unknown }),
        )
        .await;
    assert!(
        data(&missing)["apiKey"].is_null(),
        "a query by unknown id answers null"
    );
    assert_eq!(
        code(
            &h.post(Some(&token), DELETE, json!({ "id": "not-an-id" }))
                .await
        ),
        "BAD_USER_INPUT"
    );

    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for input in [
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": "n", "costMultiplier": -1.0 }),
        json!({ "name": "n", "expiresAt": past }),
        json!({ "name": "n", "expiresAt": "tomorrow" }),
        json!({ "name": "n", "tags": [""] }),
    ] {
        assert_eq!(
            code(&create(&h, &token, input.clone()).await),
            "BAD_USER_INPUT",
            "{input}"
        );
    }
    let delete_via_update = h
        .post(
            Some(&token),
            UPDATE,
            json!({ "input": { "id": id, "status": "DELETED" } }),
        )
        .await;
    assert_eq!(code(&delete_via_update), "BAD_USER_INPUT");
}

#[tokio::test]
async fn usage_reports_what_the_usage_writer_stored() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let id = create_named(&h, &token, "metered").await;
    let key_id = KeyId::parse(&id).unwrap();
    let hour = |d: u32, hh: u32| Utc.with_ymd_and_hms(2025, 3, d, hh, 0, 0).unwrap();
    let delta = |requests: u64, list: u64| UsageTotals {
        requests,
        input_tokens: 100 * requests,
        output_tokens: 10 * requests,
        cache_creation_5m_tokens: 3,
        cache_creation_1h_tokens: 4,
        cache_read_tokens: 5,
        list_cost: NanoUsd(list),
        billed_cost: NanoUsd(list * 2),
        ..UsageTotals::default()
    };
    h.store
        .apply_usage(&UsageBatch {
            hourly: vec![
                (UsageSubject::Key(key_id), hour(1, 23), delta(1, 1_000_000)),
                (UsageSubject::Key(key_id), hour(2, 0), delta(2, 2_500_000)),
                (UsageSubject::Global, hour(2, 0), delta(2, 2_500_000)),
            ],
            key_last_used: vec![(key_id, hour(2, 0))],
            ..UsageBatch::default()
        })
        .unwrap();
    let q = "query($id: ID!, $from: DateTime, $to: DateTime) { apiKey(id: $id) { lastUsedAt life: usage { requests inputTokens outputTokens cacheCreationInputTokens cacheReadInputTokens costUsd listCostUsd } day2: usage(from: $from, to: $to) { requests costUsd } } usage { requests costUsd } }";
    let resp = h
        .post(
            Some(&token),
            q,
            json!({ "id": id, "from": "2025-03-02T00:00:00Z", "to": "2025-03-03T00:00:00+00:00" }),
        )
        .await;
    let key = &data(&resp)["apiKey"];
    assert_eq!(key["lastUsedAt"], "2025-03-02T00:00:00Z");
    assert_eq!(
        key["life"],
        json!({
            "requests": 3, "inputTokens": 300, "outputTokens": 30, "cacheCreationInputTokens": 14,
            "cacheReadInputTokens": 10, "costUsd": "0.007", "listCostUsd": "0.0035"
        }),
        "keys report billed cost"
    );
    assert_eq!(key["day2"], json!({ "requests": 2, "costUsd": "0.005" }));
    assert_eq!(
        data(&resp)["usage"],
        json!({ "requests": 2, "costUsd": "0.005" })
    );

    let reversed = h
        .post(
            Some(&token),
            q,
            json!({ "id": id, "from": "2025-03-03T00:00:00Z", "to": "2025-03-02T00:00:00Z" }),
        )
        .await;
    assert_eq!(code(&reversed), "BAD_USER_INPUT");
}
