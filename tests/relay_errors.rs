//! Every error the relay answers itself, in Anthropic's envelope with the
//! right status and retry headers, plus upstream errors mapped per conventions.md.

mod common;

use claude_relay::sim::Fault;
use common::{simple_body, TestRelay};
use serde_json::{json, Value};

async fn error_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["type"], "error",
        "not an Anthropic error envelope: {body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    (status, headers, body)
}

#[tokio::test]
async fn bad_keys_get_401_without_retry() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-auth", 1).await;
    let (key_id, key) = relay.add_key("k1").await;

    let missing = relay
        .http
        .post(format!("{}/v1/messages", relay.base_url))
        .json(&simple_body(false))
        .send()
        .await
        .unwrap();
    let unknown = relay
        .messages(
            "cr_0000000000000000000000000000000000000000000000000000000000000000",
            &simple_body(false),
        )
        .send()
        .await
        .unwrap();
    let garbage = relay
        .messages("not even a key", &simple_body(false))
        .send()
        .await
        .unwrap();
    for resp in [missing, unknown, garbage] {
        let (status, headers, body) = error_of(resp).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["type"], "authentication_error");
        assert_eq!(headers["x-should-retry"], "false");
        assert!(headers.get("request-id").is_some());
    }

    relay
        .gql(
            "mutation($i: UpdateApiKeyInput!) { updateApiKey(input: $i) { apiKey { id } } }",
            json!({"i": {"id": key_id, "status": "DISABLED"}}),
        )
        .await;
    let (status, _, body) = error_of(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disabled"));

    let (expired_id, expired) = relay.add_key("k2").await;
    relay
        .gql(
            "mutation($i: UpdateApiKeyInput!) { updateApiKey(input: $i) { apiKey { id } } }",
            json!({"i": {"id": expired_id, "expiresAt": (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339()}}),
        )
        .await;
    assert_eq!(
        relay
            .messages(&expired, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (status, _, body) = error_of(
        relay
            .messages(&expired, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn malformed_requests_get_400_and_oversize_413() {
    let relay = TestRelay::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    relay.add_account("a1", "sk-ant-api03-bad-input", 1).await;
    let (key_id, key) = relay.add_key("k1").await;
    let post = |body: String| {
        relay
            .http
            .post(format!("{}/v1/messages", relay.base_url))
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, needle) in [
        ("{not json".to_string(), "JSON"),
        (
            json!({"messages": [], "max_tokens": 5}).to_string(),
            "model",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5}).to_string(),
            "messages",
        ),
        ("[1,2,3]".to_string(), ""),
    ] {
        let (status, _, v) = error_of(post(body).await.unwrap()).await;
        assert_eq!(status, 400);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    let huge = json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x".repeat(100 * 1024)}]});
    let (status, _, v) = error_of(post(huge.to_string()).await.unwrap()).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["type"], "request_too_large");
    assert!(
        relay.sim.sim.requests().is_empty(),
        "refused requests must not reach upstream"
    );
    // Refused requests are not counted.
    relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(relay.wait_key_requests(&key_id, 1).await["requests"], 1);
}

#[tokio::test]
async fn no_account_gets_503_without_retry() {
    let relay = TestRelay::start().await;
    let (_, key) = relay.add_key("k1").await;
    let (status, headers, v) = error_of(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("claude-sonnet-4-5"));
    assert_eq!(headers["x-should-retry"], "false");
}

#[tokio::test]
async fn exhausted_failover_gets_529_with_retry_after() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-exhaust-1", 1).await;
    relay.add_account("a2", "sk-ant-api03-exhaust-2", 1).await;
    let (_, key) = relay.add_key("k1").await;
    relay.sim.sim.set_fault(
        "sk-ant-api03-exhaust-1",
        Fault::RateLimited {
            retry_after_secs: 20,
        },
    );
    relay
        .sim
        .sim
        .set_fault("sk-ant-api03-exhaust-2", Fault::Overloaded);
    let (status, headers, v) = error_of(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 529);
    assert_eq!(v["error"]["type"], "overloaded_error");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(relay.sim.sim.requests().len(), 2, "each account tried once");
    // Both rest now: the next request is refused without reaching upstream.
    let (status, headers, _) = error_of(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 529);
    assert!(headers.get("retry-after").is_some());
    assert_eq!(relay.sim.sim.requests().len(), 2);
}

#[tokio::test]
async fn upstream_auth_failure_is_never_shown_as_the_clients_401() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-revoked", 1).await;
    let (_, key) = relay.add_key("k1").await;
    relay
        .sim
        .sim
        .set_fault("sk-ant-api03-revoked", Fault::Unauthorized);
    let (status, _, v) = error_of(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 529);
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn client_caused_upstream_errors_pass_through_unchanged() {
    let relay = TestRelay::start().await;
    relay
        .add_account("a1", "sk-ant-api03-passthrough-1", 1)
        .await;
    relay
        .add_account("a2", "sk-ant-api03-passthrough-2", 1)
        .await;
    let (key_id, key) = relay.add_key("k1").await;
    let body = json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let resp = relay.messages(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(
        relay.sim.sim.requests().len(),
        1,
        "a client error is not failed over"
    );
    // It reached upstream, so it is counted with its status.
    relay.wait_key_requests(&key_id, 1).await;
}

#[tokio::test]
async fn repeated_bad_keys_from_one_address_are_throttled() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-throttle", 1).await;
    let (_, key) = relay.add_key("k1").await;
    for i in 0..30 {
        let resp = relay
            .messages(&format!("cr_guess_{i}"), &simple_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let (status, headers, v) = error_of(
        relay
            .messages("cr_guess_more", &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(headers["x-should-retry"], "false");
    assert!(headers.get("retry-after").is_some());
    // Even a valid key from that address waits out the window: the throttle runs before lookup.
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
}
