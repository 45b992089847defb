//! Upstream accounts through the admin API over real HTTP: both kinds,
//! credentials masked in every answer and encrypted on disk, validation,
//! updates, soft delete and list-cost usage.

mod graphql_support;

use chrono::Utc;
use claude_relay::domain::{
    AccountId, AccountKind, AccountStatus, NanoUsd, UsageSubject, UsageTotals,
};
use claude_relay::store::UsageBatch;
use graphql_support::{code, data, mentions, Harness};
use serde_json::{json, Value};

const FIELDS: &str = "id name kind priority status baseUrl proxy apiKey accessToken refreshToken expiresAt createdAt updatedAt";
const API_KEY: &str = "sk-ant-api03-RAWSECRETVALUE-abcdefghijklmnop-0123456789";
const ACCESS: &str = "sk-ant-oat01-RAWACCESSTOKEN-abcdefghijklmnop-0123456789";
const REFRESH: &str = "sk-ant-ort01-RAWREFRESHTOKEN-abcdefghijklmnop-0123456789";
const PROXY: &str = "socks5h://proxyuser:RAWPROXYPASSWORD@proxy.example:1080";

async fn create(h: &Harness, token: &str, input: Value) -> Value {
    let q = format!("mutation($input: CreateAccountInput!) {{ createAccount(input: $input) {{ account {{ {FIELDS} }} }} }}");
    h.post(Some(token), &q, json!({ "input": input })).await
}

async fn update(h: &Harness, token: &str, input: Value) -> Value {
    let q = format!("mutation($input: UpdateAccountInput!) {{ updateAccount(input: $input) {{ account {{ {FIELDS} }} }} }}");
    h.post(Some(token), &q, json!({ "input": input })).await
}

fn no_raw_secrets(resp: &Value) {
    for raw in [
        "RAWSECRETVALUE",
        "RAWACCESSTOKEN",
        "RAWREFRESHTOKEN",
        "RAWPROXYPASSWORD",
        "proxyuser",
    ] {
        assert!(!mentions(resp, raw), "{raw} leaked in {resp}");
    }
}

#[tokio::test]
async fn both_kinds_are_created_with_credentials_masked_everywhere() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let resp = create(
        &h,
        &token,
        json!({ "name": "console", "kind": "ANTHROPIC_API_KEY", "apiKey": API_KEY, "baseUrl": "http://127.0.0.1:9/", "proxy": PROXY, "priority": 1 }),
    )
    .await;
    no_raw_secrets(&resp);
    let a = &data(&resp)["createAccount"]["account"];
    assert_eq!(a["kind"], "ANTHROPIC_API_KEY");
    assert_eq!(a["status"], "ACTIVE");
    assert_eq!(a["priority"], 1);
    assert_eq!(a["baseUrl"], "http://127.0.0.1:9");
    assert_eq!(a["apiKey"], "sk-a…6789");
    assert_eq!(a["proxy"], "socks5h://****@proxy.example:1080");
    assert!(a["accessToken"].is_null());

    let expires = "2030-01-01T00:00:00Z";
    let resp = create(
        &h,
        &token,
        json!({ "name": "max plan", "kind": "CLAUDE_OAUTH", "accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": expires }),
    )
    .await;
    no_raw_secrets(&resp);
    let o = &data(&resp)["createAccount"]["account"];
    assert_eq!(o["kind"], "CLAUDE_OAUTH");
    assert_eq!(o["priority"], 50, "default priority");
    assert_eq!(o["accessToken"], "sk-a…6789");
    assert_eq!(o["refreshToken"], "sk-a…6789");
    assert_eq!(o["expiresAt"], expires);
    assert!(o["apiKey"].is_null() && o["proxy"].is_null());

    // The relay sees the real credentials through the store.
    let id = AccountId::parse(a["id"].as_str().unwrap()).unwrap();
    let stored = h.store.get_account(id).unwrap().unwrap();
    assert_eq!(stored.kind, AccountKind::AnthropicApiKey);
    assert_eq!(stored.credentials.api_key.unwrap().expose(), API_KEY);
    assert_eq!(stored.proxy.unwrap().expose(), PROXY);

    // Lists and single reads are masked too.
    let q = format!("{{ accounts {{ totalCount edges {{ node {{ {FIELDS} }} }} }} }}");
    let list = h.post(Some(&token), &q, json!({})).await;
    assert_eq!(data(&list)["accounts"]["totalCount"], 2);
    no_raw_secrets(&list);
    let one = h
        .post(
            Some(&token),
            &format!("query($id: ID!) {{ account(id: $id) {{ {FIELDS} }} }}"),
            json!({ "id": id.to_string() }),
        )
        .await;
    no_raw_secrets(&one);
    assert_eq!(data(&one)["account"]["name"], "console");

    // And nothing readable reached the disk.
    h.store.flush().await.unwrap();
    let mut stack = vec![h.config.data_dir.clone()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            for raw in [
                "RAWSECRETVALUE",
                "RAWACCESSTOKEN",
                "RAWREFRESHTOKEN",
                "RAWPROXYPASSWORD",
            ] {
                assert!(
                    !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
                    "{raw} in {}",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn invalid_input_is_refused_with_bad_user_input() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let cases = [
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY" }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "  " }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "accessToken": "t" }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "expiresAt": "2030-01-01T00:00:00Z" }),
        json!({ "name": "a", "kind": "CLAUDE_OAUTH", "accessToken": "t" }),
        json!({ "name": "a", "kind": "CLAUDE_OAUTH", "refreshToken": "r" }),
        json!({ "name": "a", "kind": "CLAUDE_OAUTH", "accessToken": "t", "refreshToken": "r", "apiKey": "k" }),
        json!({ "name": "", "kind": "ANTHROPIC_API_KEY", "apiKey": "k" }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "priority": 0 }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "priority": 1001 }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "proxy": "socks4://p:1080" }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "proxy": "proxy.example:8080" }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "baseUrl": "ftp://x" }),
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "baseUrl": "https://u:p@x" }),
        json!({ "name": "a", "kind": "SOMETHING_ELSE", "apiKey": "k" }),
    ];
    for input in cases {
        assert_eq!(
            code(&create(&h, &token, input.clone()).await),
            "BAD_USER_INPUT",
            "{input}"
        );
    }
    assert!(
        h.store.list_accounts().unwrap().is_empty(),
        "nothing was written"
    );
    let ok = create(
        &h,
        &token,
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k" }),
    )
    .await;
    data(&ok);
    let dup = create(
        &h,
        &token,
        json!({ "name": "A", "kind": "ANTHROPIC_API_KEY", "apiKey": "k2" }),
    )
    .await;
    assert_eq!(code(&dup), "CONFLICT");
}

#[tokio::test]
async fn updates_soft_deletes_and_restores() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let resp = create(
        &h,
        &token,
        json!({ "name": "oauth", "kind": "CLAUDE_OAUTH", "accessToken": ACCESS, "refreshToken": REFRESH, "proxy": PROXY, "baseUrl": "https://gw.example" }),
    )
    .await;
    let id = data(&resp)["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let account_id = AccountId::parse(&id).unwrap();

    // The relay marks it AUTH_FAILED; new tokens from the admin make it ACTIVE again.
    let mut stored = h.store.get_account(account_id).unwrap().unwrap();
    stored.status = AccountStatus::AuthFailed;
    h.store.put_account(&stored).unwrap();
    let resp = update(
        &h,
        &token,
        json!({ "id": id, "accessToken": "new-access-token-0123456789", "refreshToken": "new-refresh-token-0123456789", "proxy": null, "priority": 7, "name": "oauth 2" }),
    )
    .await;
    let a = &data(&resp)["updateAccount"]["account"];
    assert_eq!(a["status"], "ACTIVE");
    assert!(a["proxy"].is_null(), "null clears the proxy");
    assert_eq!(
        a["baseUrl"], "https://gw.example",
        "left out means unchanged"
    );
    assert_eq!(a["priority"], 7);
    assert_eq!(a["name"], "oauth 2");
    let stored = h.store.get_account(account_id).unwrap().unwrap();
    assert_eq!(
        stored.credentials.access_token.unwrap().expose(),
        "new-access-token-0123456789"
    );
    assert!(stored.proxy.is_none());

    for bad in [
        json!({ "id": id, "apiKey": "k" }),
        json!({ "id": id, "status": "AUTH_FAILED" }),
        json!({ "id": id, "status": "DELETED" }),
        json!({ "id": id, "priority": -3 }),
        json!({ "id": id, "proxy": "gopher://x" }),
    ] {
        assert_eq!(
            code(&update(&h, &token, bad.clone()).await),
            "BAD_USER_INPUT",
            "{bad}"
        );
    }
    let unknown = AccountId::generate().to_string();
    assert_eq!(
        code(&update(&h, &token, json!({ "id": unknown, "priority": 2 })).await),
        "NOT_FOUND"
    );

    let delete = "mutation($id: ID!) { deleteAccount(input: {id: $id}) { deletedId } }";
    let resp = h.post(Some(&token), delete, json!({ "id": id })).await;
    assert_eq!(data(&resp)["deleteAccount"]["deletedId"], id.as_str());
    assert_eq!(
        h.store.get_account(account_id).unwrap().unwrap().status,
        AccountStatus::Deleted
    );
    assert_eq!(
        code(&h.post(Some(&token), delete, json!({ "id": unknown })).await),
        "NOT_FOUND"
    );
    let list = h
        .post(Some(&token), "{ accounts { totalCount } }", json!({}))
        .await;
    assert_eq!(
        data(&list)["accounts"]["totalCount"],
        0,
        "deleted accounts are hidden by default"
    );
    let deleted = h
        .post(
            Some(&token),
            "{ accounts(filter: {status: [DELETED]}) { edges { node { id status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&deleted)["accounts"]["edges"][0]["node"]["status"],
        "DELETED"
    );

    let restored = update(&h, &token, json!({ "id": id, "status": "ACTIVE" })).await;
    assert_eq!(
        data(&restored)["updateAccount"]["account"]["status"],
        "ACTIVE"
    );
}

#[tokio::test]
async fn accounts_order_by_priority_and_filter_by_kind() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    for (name, priority) in [("c", 30), ("a", 10), ("b", 20)] {
        data(&create(&h, &token, json!({ "name": name, "kind": "ANTHROPIC_API_KEY", "apiKey": "k", "priority": priority })).await);
    }
    data(&create(&h, &token, json!({ "name": "o", "kind": "CLAUDE_OAUTH", "accessToken": "t", "refreshToken": "r", "priority": 1 })).await);
    let q = "query($after: String) { accounts(first: 2, after: $after, orderBy: {field: PRIORITY}, filter: {kind: ANTHROPIC_API_KEY}) { totalCount edges { node { name } } pageInfo { hasNextPage endCursor } } }";
    let first = h.post(Some(&token), q, json!({})).await;
    let page = &data(&first)["accounts"];
    assert_eq!(page["totalCount"], 3);
    assert_eq!(
        page["edges"],
        json!([{ "node": { "name": "a" } }, { "node": { "name": "b" } }])
    );
    let next = h
        .post(
            Some(&token),
            q,
            json!({ "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        data(&next)["accounts"]["edges"],
        json!([{ "node": { "name": "c" } }])
    );
    assert_eq!(data(&next)["accounts"]["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn account_usage_reports_list_cost() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let resp = create(
        &h,
        &token,
        json!({ "name": "a", "kind": "ANTHROPIC_API_KEY", "apiKey": "k" }),
    )
    .await;
    let id = data(&resp)["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let now = Utc::now();
    h.store
        .apply_usage(&UsageBatch {
            hourly: vec![(
                UsageSubject::Account(AccountId::parse(&id).unwrap()),
                now,
                UsageTotals {
                    requests: 4,
                    output_tokens: 40,
                    list_cost: NanoUsd(1_234_567_890),
                    billed_cost: NanoUsd(2_469_135_780),
                    error_requests: 1,
                    ..UsageTotals::default()
                },
            )],
            ..UsageBatch::default()
        })
        .unwrap();
    let q = "query($id: ID!, $from: DateTime) { account(id: $id) { usage { requests outputTokens costUsd billedCostUsd errorRequests } recent: usage(from: $from) { requests } } }";
    let from = (now - chrono::Duration::hours(1)).to_rfc3339();
    let resp = h
        .post(Some(&token), q, json!({ "id": id, "from": from }))
        .await;
    let usage = &data(&resp)["account"];
    assert_eq!(
        usage["usage"],
        json!({ "requests": 4, "outputTokens": 40, "costUsd": "1.23456789", "billedCostUsd": "2.46913578", "errorRequests": 1 })
    );
    assert_eq!(usage["recent"]["requests"], 4);
}
