//! The OpenAI-compatible endpoint: the official `openai` Python SDK against
//! the relay (plain, streaming with usage, tool calling round trip), usage
//! billed like Anthropic requests, errors in OpenAI's shape, and the
//! endpoint-family permission.

mod common;

use common::TestRelay;
use serde_json::{json, Value};
use std::process::Command;

#[tokio::test]
async fn official_openai_sdk_works_through_the_relay() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-openai-sdk", 1).await;
    let (key_id, key) = relay.add_key("openai").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/openai_sdk_check.py"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    for base in ["/openai/v1", "/openai/claude/v1", "/v1"] {
        let base_url = format!("{}{base}", relay.base_url);
        let key = key.clone();
        let python = python.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .env("OPENAI_BASE_URL", base_url)
                .env("OPENAI_API_KEY", key)
                .output()
        })
        .await
        .unwrap()
        .expect("python3 must be installed (.ci/run installs it with the openai package)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "SDK check failed on {base}:\n{stdout}\n{stderr}"
        );
    }
    // Five billed chat calls per run, three runs.
    relay.wait_key_requests(&key_id, 15).await;
}

#[tokio::test]
async fn chat_usage_is_billed_and_errors_use_openai_shape() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-openai-usage", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    let url = format!("{}/v1/chat/completions", relay.base_url);
    let v: Value = relay
        .http
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let usage = relay.wait_key_requests(&key_id, 1).await;
    assert_eq!(usage["outputTokens"], v["usage"]["completion_tokens"]);
    assert_eq!(usage["inputTokens"], v["usage"]["prompt_tokens"]);
    // The Anthropic request that went upstream.
    let seen = relay.sim.sim.requests().pop().unwrap();
    assert_eq!(seen.path, "/v1/messages");

    let bad = relay
        .http
        .post(&url)
        .bearer_auth(&key)
        .body("{nope")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let e: Value = bad.json().await.unwrap();
    assert!(
        e["error"]["message"].is_string() && e["error"]["type"].is_string(),
        "{e}"
    );
    let n2 = relay
        .http
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"model": "claude-sonnet-4-5", "n": 2, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(n2.status(), 400);
    let unauth = relay
        .http
        .post(&url)
        .json(&json!({"model": "x", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let e: Value = unauth.json().await.unwrap();
    assert!(
        e["error"]["message"].is_string() && e.get("type").is_none(),
        "OpenAI shape, not Anthropic's: {e}"
    );

    // A key without the OpenAI permission is refused on this family only.
    let v = relay
        .gql(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({"i": {"name": "anthropic-only", "policy": {"permissions": ["anthropic_messages"]}}}),
        )
        .await;
    let restricted = v["createApiKey"]["secret"].as_str().unwrap().to_string();
    let resp = relay
        .http
        .post(&url)
        .bearer_auth(&restricted)
        .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        relay
            .messages(&restricted, &common::simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
