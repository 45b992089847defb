//! Key policy through real HTTP: one test per limit kind (streaming
//! included), a budget raced by concurrent requests, the wait queue,
//! activation on first use, restrictions, a restart in the middle of a
//! window, and the key holder's own usage page.

mod common;

use common::{simple_body, TestRelay};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

async fn key_with_policy(relay: &TestRelay, name: &str, policy: Value) -> (String, String) {
    let v = relay
        .gql(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
            json!({"i": {"name": name, "policy": policy}}),
        )
        .await;
    (
        v["createApiKey"]["apiKey"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        v["createApiKey"]["secret"].as_str().unwrap().to_string(),
    )
}

async fn refusal(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, String, String) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    (
        status,
        headers,
        v["error"]["type"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn request_window_refuses_with_retry_after_and_names_the_limit() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-window", 1).await;
    let (_, key) = key_with_policy(
        &relay,
        "w",
        json!({"rate_windows": [{"duration_secs": 3600, "max_requests": 2}]}),
    )
    .await;
    for stream in [false, true] {
        let resp = relay
            .messages(&key, &simple_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let (status, headers, kind, message) = refusal(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(kind, "rate_limit_error");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 3000 && retry <= 3600, "{retry}");
    assert!(message.contains('2'), "{message}");
    assert_eq!(
        relay.sim.sim.requests().len(),
        2,
        "refused requests never reach upstream"
    );
}

#[tokio::test]
async fn token_window_counts_streamed_usage() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-tokens", 1).await;
    let (_, key) = key_with_policy(
        &relay,
        "t",
        json!({"rate_windows": [{"duration_secs": 600, "max_tokens": 60}]}),
    )
    .await;
    // The estimate (input + min(max_tokens, 4096)) must fit: keep max_tokens small.
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 20, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = relay.messages(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let resp = relay.messages(&key, &body).send().await.unwrap();
    let second_ok = resp.status() == 200;
    resp.bytes().await.unwrap();
    // Each streamed answer is ~20-30 tokens in total, so at most a couple fit in 60.
    let mut refused = false;
    for _ in 0..3 {
        let resp = relay.messages(&key, &body).send().await.unwrap();
        if resp.status() == 429 {
            let (_, _, kind, message) = refusal(resp).await;
            assert_eq!(kind, "rate_limit_error");
            assert!(message.to_lowercase().contains("token"), "{message}");
            refused = true;
            break;
        }
        resp.bytes().await.unwrap();
    }
    assert!(
        refused,
        "the token window never tripped on streamed requests (second ok: {second_ok})"
    );
}

#[tokio::test]
async fn daily_budget_answers_402_billing_error_and_races_stay_bounded() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-budget", 1).await;
    // $0.002 a day; each request costs about $0.0004 at sonnet prices.
    let limit_nano = 2_000_000u64;
    let (key_id, key) =
        key_with_policy(&relay, "b", json!({"budgets": {"daily": limit_nano}})).await;
    let sends = (0..12).map(|_| relay.messages(&key, &simple_body(false)).send());
    let results = futures::future::join_all(sends).await;
    let ok = results
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == 200)
        .count() as u64;
    assert!((1..12).contains(&ok), "{ok} succeeded");
    let usage = relay.wait_key_requests(&key_id, ok).await;
    let spent = claude_relay::domain::NanoUsd::parse_decimal(usage["costUsd"].as_str().unwrap())
        .unwrap()
        .0;
    // Every estimate (max_tokens 64 priced in full) exceeds the real cost, so
    // the reservation rule keeps concurrent spend within the budget.
    assert!(
        spent <= limit_nano,
        "spent {spent} over the {limit_nano} budget"
    );
    for resp in results {
        let resp = resp.unwrap();
        if resp.status() != 200 {
            let (status, headers, kind, message) = refusal(resp).await;
            assert_eq!(status, 402);
            assert_eq!(kind, "billing_error");
            assert_eq!(headers["x-should-retry"], "false");
            assert!(message.to_lowercase().contains("daily"), "{message}");
        }
    }
}

#[tokio::test]
async fn concurrency_limit_refuses_or_queues() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-conc", 1).await;
    relay.sim.sim.set_stream_delay(Duration::from_millis(100));
    let (_, strict) = key_with_policy(
        &relay,
        "strict",
        json!({"concurrency": {"max_in_flight": 1}}),
    )
    .await;
    let (_, queued) =
        key_with_policy(&relay, "queued", json!({"concurrency": {"max_in_flight": 1, "queue": {"max_queued": 2, "max_wait_ms": 20000}}})).await;

    let first = relay
        .messages(&strict, &simple_body(true))
        .send()
        .await
        .unwrap();
    let (status, headers, kind, _) = refusal(
        relay
            .messages(&strict, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, kind.as_str()), (429, "rate_limit_error"));
    assert!(headers.get("retry-after").is_some());
    first.bytes().await.unwrap();

    let holder = relay
        .messages(&queued, &simple_body(true))
        .send()
        .await
        .unwrap();
    let waiter = tokio::spawn(relay.messages(&queued, &simple_body(false)).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "the second request should wait in the queue"
    );
    let mut stream = holder.bytes_stream();
    while stream.next().await.is_some() {}
    let resp = waiter.await.unwrap().unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the queued request runs once the first finishes"
    );
}

#[tokio::test]
async fn model_client_and_permission_restrictions_are_403() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-rules", 1).await;
    let (_, deny) = key_with_policy(
        &relay,
        "deny",
        json!({"models": {"mode": "deny", "patterns": ["claude-opus-*"]}}),
    )
    .await;
    let opus = json!({"model": "claude-opus-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, kind, message) =
        refusal(relay.messages(&deny, &opus).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (403, "permission_error"));
    assert_eq!(headers["x-should-retry"], "false");
    assert!(message.contains("claude-opus-4-5"), "{message}");
    assert_eq!(
        relay
            .messages(&deny, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let (_, allow) = key_with_policy(
        &relay,
        "allow",
        json!({"models": {"mode": "allow", "patterns": ["claude-opus-*"]}}),
    )
    .await;
    let (status, ..) = refusal(
        relay
            .messages(&allow, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        relay.messages(&allow, &opus).send().await.unwrap().status(),
        200
    );

    let (_, cc_only) = key_with_policy(&relay, "cc", json!({"clients": ["claude_code"]})).await;
    let (status, _, kind, _) = refusal(
        relay
            .messages(&cc_only, &simple_body(false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, kind.as_str()), (403, "permission_error"));
    let metadata = r#"{"device_id":"8bbfdd09255973b7cf08c60af11a4eb47cc7c98a7c13db3f549262810efd734f","account_uuid":"","session_id":"c2fd1380-2a3e-4f19-af32-c12020fa2a3c"}"#;
    let cc_body = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "metadata": {"user_id": metadata}, "messages": [{"role": "user", "content": "hi"}]});
    let resp = relay
        .messages(&cc_only, &cc_body)
        .header("user-agent", "claude-cli/2.1.197 (external, sdk-cli)")
        .header("x-app", "cli")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "Claude Code itself is let through");
}

#[tokio::test]
async fn activation_starts_on_first_use_and_is_persisted() {
    let relay = TestRelay::start().await;
    relay
        .add_account("a", "sk-ant-api03-kp-activation", 1)
        .await;
    let (key_id, key) = key_with_policy(
        &relay,
        "act",
        json!({"expiry": {"mode": "activation", "amount": 2, "unit": "hours"}}),
    )
    .await;
    let q = "query($id: ID!) { apiKey(id: $id) { policy } }";
    let before = relay.gql(q, json!({"id": key_id})).await;
    assert_eq!(
        before["apiKey"]["policy"]["expiry"]["activated_at"],
        Value::Null
    );
    assert_eq!(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let after = relay.gql(q, json!({"id": key_id})).await;
    let at = after["apiKey"]["policy"]["expiry"]["activated_at"]
        .as_str()
        .expect("activation persisted")
        .to_string();
    let at = chrono::DateTime::parse_from_rfc3339(&at).unwrap();
    assert!((chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds() < 30);
}

#[tokio::test]
async fn windows_survive_a_restart() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-restart", 1).await;
    let (_, key) = key_with_policy(
        &relay,
        "r",
        json!({"rate_windows": [{"duration_secs": 3600, "max_requests": 3}]}),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            relay
                .messages(&key, &simple_body(false))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let (sim, dir) = relay.stop().await;
    let relay = TestRelay::start_on(sim, dir, |_| {}).await;
    assert_eq!(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn key_holders_see_their_own_usage_and_limits() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-self", 1).await;
    let (key_id, key) = key_with_policy(&relay, "self", json!({"rate_windows": [{"duration_secs": 60, "max_requests": 10}], "budgets": {"monthly": 5_000_000_000u64}})).await;
    relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    relay.wait_key_requests(&key_id, 1).await;
    for prefix in ["", "/api", "/claude"] {
        let v: Value = relay
            .http
            .get(format!("{}{prefix}/v1/key/usage", relay.base_url))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["key"]["id"], key_id.as_str());
        assert_eq!(v["usage"]["total"]["requests"], 1);
        assert_eq!(v["usage"]["today"]["requests"], 1);
        assert_eq!(v["usage"]["by_day"].as_array().unwrap().len(), 1);
        assert_eq!(v["usage"]["by_model"][0]["model"], "claude-sonnet-4-5");
        assert!(v["limits"].is_object(), "{v}");
        assert!(!v.to_string().contains(&key), "the secret is never echoed");
    }
    let other = relay
        .http
        .get(format!("{}/v1/key/usage", relay.base_url))
        .header("x-api-key", format!("cr_{key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401, "a key id is not a key");
}

#[tokio::test]
async fn total_weekly_monthly_and_family_budgets_trip() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-kp-budgets", 1).await;
    let opus = json!({"model": "claude-opus-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    // A tiny budget: the first request fits its estimate, and once spent the next is refused.
    for (name, budgets, period) in [
        ("total", json!({"total": 1_000_000}), "total"),
        ("weekly", json!({"weekly": 1_000_000}), "weekly"),
        ("monthly", json!({"monthly": 1_000_000}), "monthly"),
        (
            "family",
            json!({"family_weekly": {"models": {"matching": "claude-opus-*"}, "limit": 1_000_000}}),
            "opus",
        ),
    ] {
        let (key_id, key) = key_with_policy(&relay, name, json!({"budgets": budgets})).await;
        let body = if name == "family" {
            opus.clone()
        } else {
            simple_body(false)
        };
        let mut refused = None;
        for i in 0..10u64 {
            let resp = relay.messages(&key, &body).send().await.unwrap();
            if resp.status() == 402 {
                refused = Some(refusal(resp).await);
                break;
            }
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
            relay.wait_key_requests(&key_id, i + 1).await;
        }
        let (status, _, kind, message) =
            refused.unwrap_or_else(|| panic!("the {name} budget never tripped"));
        assert_eq!((status, kind.as_str()), (402, "billing_error"));
        assert!(message.to_lowercase().contains(period), "{name}: {message}");
        if name == "family" {
            // Other families are not limited by an opus budget.
            assert_eq!(
                relay
                    .messages(&key, &simple_body(false))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
        }
    }
}
