//! `anthropic_compatible` accounts: any Anthropic-compatible base URL with a
//! static key (sent as x-api-key and Bearer) and extra headers whose values
//! stay secret.

mod common;

use common::{simple_body, TestRelay};
use serde_json::json;

#[tokio::test]
async fn compatible_gateway_gets_key_and_extra_headers() {
    let relay = TestRelay::start().await;
    let v = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id kind headerNames apiKey } } }",
            json!({"i": {"name": "gateway", "kind": "ANTHROPIC_COMPATIBLE", "apiKey": "sk-ant-api03-gateway-key-123456",
                   "baseUrl": relay.sim.base_url(), "headers": [{"name": "X-Gateway-Tenant", "value": "tenant-secret-42"}]}}),
        )
        .await;
    let account = &v["createAccount"]["account"];
    assert_eq!(account["kind"], "ANTHROPIC_COMPATIBLE");
    assert_eq!(account["headerNames"], json!(["x-gateway-tenant"]));
    assert!(
        !v.to_string().contains("tenant-secret-42")
            && !v.to_string().contains("gateway-key-123456")
    );
    let (_, key) = relay.add_key("k").await;
    for stream in [false, true] {
        let resp = relay
            .messages(&key, &simple_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let seen = relay.sim.sim.requests().pop().unwrap();
    assert_eq!(
        seen.header("x-api-key"),
        Some("sk-ant-api03-gateway-key-123456")
    );
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-ant-api03-gateway-key-123456")
    );
    assert_eq!(seen.header("x-gateway-tenant"), Some("tenant-secret-42"));

    let no_url = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({"i": {"name": "nourl", "kind": "ANTHROPIC_COMPATIBLE", "apiKey": "sk-x-0123456789"}}),
        )
        .await;
    assert_eq!(no_url["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    let reserved = relay
        .gql_as(
            Some(&relay.admin_token),
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({"i": {"name": "bad", "kind": "ANTHROPIC_COMPATIBLE", "apiKey": "sk-x-0123456789", "baseUrl": "http://127.0.0.1:1",
                   "headers": [{"name": "Authorization", "value": "x"}]}}),
        )
        .await;
    assert_eq!(
        reserved["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
}
