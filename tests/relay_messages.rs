//! Non-streaming messages, count_tokens, models, route prefixes and header rules,
//! through the real router over real HTTP against the simulated upstream.

mod common;

use common::{simple_body, TestRelay};
use serde_json::{json, Value};

#[tokio::test]
async fn non_streaming_message_is_relayed_and_billed() {
    let relay = TestRelay::start().await;
    let account = relay.add_account("a1", "sk-ant-api03-msg-one", 1).await;
    let (key_id, key) = relay.add_key("k1").await;

    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["model"], "claude-sonnet-4-5");
    let input = msg["usage"]["input_tokens"].as_u64().unwrap();
    let output = msg["usage"]["output_tokens"].as_u64().unwrap();
    assert!(input > 0 && output > 0);

    let usage = relay.wait_key_requests(&key_id, 1).await;
    assert_eq!(usage["inputTokens"].as_u64().unwrap(), input);
    assert_eq!(usage["outputTokens"].as_u64().unwrap(), output);
    // claude-sonnet-4-5: $3 / MTok input, $15 / MTok output.
    let expected_nano = input * 3_000 + output * 15_000;
    let expected = claude_relay::domain::NanoUsd(expected_nano).to_decimal_string();
    assert_eq!(usage["costUsd"].as_str().unwrap(), expected);
    let acc = relay.account_usage(&account).await;
    assert_eq!(acc["requests"].as_u64(), Some(1));
    assert_eq!(acc["costUsd"].as_str().unwrap(), expected);
}

#[tokio::test]
async fn every_route_prefix_and_bearer_auth_work() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-prefixes", 1).await;
    let (_, key) = relay.add_key("k1").await;
    for prefix in ["", "/api", "/claude"] {
        let resp = relay
            .http
            .post(format!("{}{prefix}/v1/messages?beta=true", relay.base_url))
            .bearer_auth(&key)
            .header("anthropic-version", "2023-06-01")
            .json(&simple_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "prefix {prefix:?}");
        let last = relay.sim.sim.requests().pop().unwrap();
        assert_eq!(last.path, "/v1/messages");
        assert_eq!(last.query.as_deref(), Some("beta=true"));
    }
}

#[tokio::test]
async fn request_headers_follow_the_deny_list_and_responses_the_allow_list() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-headers", 1).await;
    let (_, key) = relay.add_key("k1").await;
    let resp = relay
        .messages(&key, &simple_body(false))
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("x-stainless-lang", "js")
        .header("x-app", "cli")
        .header(
            "X-Claude-Code-Session-Id",
            "c2fd1380-2a3e-4f19-af32-c12020fa2a3c",
        )
        .header("cookie", "session=secret")
        .header("x-forwarded-for", "10.0.0.9")
        .header("cf-connecting-ip", "10.0.0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for banned in [
        "anthropic-ratelimit-requests-remaining",
        "anthropic-organization-id",
        "set-cookie",
        "cf-ray",
        "server",
    ] {
        assert!(
            resp.headers().get(banned).is_none(),
            "{banned} leaked to the client"
        );
    }
    assert!(resp.headers().get("request-id").is_some());
    let seen = relay.sim.sim.requests().pop().unwrap();
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("anthropic-beta").as_deref(),
        Some("claude-code-20250219,interleaved-thinking-2025-05-14")
    );
    assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(header("x-stainless-lang").as_deref(), Some("js"));
    assert_eq!(header("x-app").as_deref(), Some("cli"));
    assert_eq!(
        header("x-claude-code-session-id").as_deref(),
        Some("c2fd1380-2a3e-4f19-af32-c12020fa2a3c")
    );
    assert_eq!(
        header("x-api-key").as_deref(),
        Some("sk-ant-api03-headers"),
        "upstream gets the account's key"
    );
    for gone in [
        "cookie",
        "x-forwarded-for",
        "cf-connecting-ip",
        "authorization",
    ] {
        assert_eq!(header(gone), None, "{gone} reached upstream");
    }
    assert!(
        !seen.headers.iter().any(|(_, v)| v.contains(&key)),
        "the relay key reached upstream"
    );
}

#[tokio::test]
async fn count_tokens_is_relayed_but_not_billed() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-count", 1).await;
    let (key_id, key) = relay.add_key("k1").await;
    let resp = relay
        .http
        .post(format!("{}/v1/messages/count_tokens", relay.base_url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "count me"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0);
    // A billed request afterwards is the first and only one counted.
    relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    let usage = relay.wait_key_requests(&key_id, 1).await;
    assert_eq!(usage["requests"], 1);
}

#[tokio::test]
async fn models_come_from_upstream_in_the_superset_shape() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-models", 1).await;
    let (_, key) = relay.add_key("k1").await;
    let v: Value = relay
        .http
        .get(format!("{}/v1/models?limit=2", relay.base_url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for m in data {
        assert_eq!(m["type"], "model");
        assert_eq!(m["object"], "model");
        assert!(m["created"].as_i64().unwrap() > 0);
        assert!(
            m["owned_by"].is_string()
                && m["display_name"].is_string()
                && m["created_at"].is_string()
        );
    }
    assert!(
        v.get("has_more").is_some() && v.get("first_id").is_some() && v.get("last_id").is_some()
    );
    let first = data[0]["id"].as_str().unwrap();
    let one: Value = relay
        .http
        .get(format!("{}/claude/v1/models/{first}", relay.base_url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], first);
    assert_eq!(one["object"], "model");
    let missing = relay
        .http
        .get(format!("{}/v1/models/gpt-4", relay.base_url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn models_fall_back_to_the_builtin_table_without_accounts() {
    let relay = TestRelay::start().await;
    let (_, key) = relay.add_key("k1").await;
    let v: Value = relay
        .http
        .get(format!("{}/api/v1/models", relay.base_url))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().any(|id| id.starts_with("claude-sonnet")),
        "{ids:?}"
    );
    let unauth = relay
        .http
        .get(format!("{}/v1/models", relay.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
}

#[tokio::test]
async fn metrics_count_requests_and_measure_overhead() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-metrics", 1).await;
    let (_, key) = relay.add_key("k1").await;
    for stream in [false, true] {
        relay
            .messages(&key, &simple_body(stream))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let text = relay
        .http
        .get(format!("{}/metrics", relay.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("relay_requests_total")
                && l.contains("family=\"messages\"")
                && l.contains("status=\"2xx\"")
        })
        .unwrap_or_else(|| panic!("no request counter in:\n{text}"));
    // Other tests in this binary share the global recorder, so at least our two.
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 2.0, "{line}");
    assert!(text.contains("relay_overhead_seconds_bucket"), "{text}");
    assert!(
        text.contains("relay_upstream_attempts_total{outcome=\"ok\"}"),
        "{text}"
    );
}
