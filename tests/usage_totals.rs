//! Usage and cost totals are exact: the sum of what upstream reported, by
//! token kind, priced from the embedded table, for keys and accounts.

mod common;

use common::TestRelay;
use serde_json::{json, Value};

/// Usage as upstream reported it, from a Message or an SSE stream.
fn reported_usage(body: &str, stream: bool) -> [u64; 5] {
    let usage_of = |u: &Value| {
        [
            u["input_tokens"].as_u64().unwrap_or(0),
            u["output_tokens"].as_u64().unwrap_or(0),
            u["cache_creation"]["ephemeral_5m_input_tokens"]
                .as_u64()
                .unwrap_or(0),
            u["cache_creation"]["ephemeral_1h_input_tokens"]
                .as_u64()
                .unwrap_or(0),
            u["cache_read_input_tokens"].as_u64().unwrap_or(0),
        ]
    };
    if !stream {
        return usage_of(&serde_json::from_str::<Value>(body).unwrap()["usage"]);
    }
    let mut total = [0u64; 5];
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let v: Value = serde_json::from_str(data).unwrap();
        match v["type"].as_str() {
            Some("message_start") => {
                let u = usage_of(&v["message"]["usage"]);
                total = [u[0], total[1], u[2], u[3], u[4]];
            }
            Some("message_delta") => total[1] = v["usage"]["output_tokens"].as_u64().unwrap(),
            _ => {}
        }
    }
    total
}

#[tokio::test]
async fn totals_match_upstream_reports_exactly() {
    let relay = TestRelay::start().await;
    let account = relay.add_account("a", "sk-ant-api03-totals", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    let long_system = "You are a careful assistant. ".repeat(200);
    let mut expected = [0u64; 5];
    let mut n = 0;
    for (i, stream) in [false, true, false, true, true, false]
        .into_iter()
        .enumerate()
    {
        let ttl = if i % 2 == 0 { "5m" } else { "1h" };
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 50,
            "stream": stream,
            "system": [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral", "ttl": ttl}}],
            "messages": [{"role": "user", "content": format!("question number {i}")}]
        });
        let resp = relay.messages(&key, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let got = reported_usage(&text, stream);
        for k in 0..5 {
            expected[k] += got[k];
        }
        n += 1;
    }
    assert!(
        expected[4] > 0,
        "the simulator should have served cache reads"
    );
    assert!(
        expected[2] + expected[3] > 0,
        "the simulator should have written the cache"
    );
    let usage = relay.wait_key_requests(&key_id, n).await;
    assert_eq!(usage["inputTokens"].as_u64().unwrap(), expected[0]);
    assert_eq!(usage["outputTokens"].as_u64().unwrap(), expected[1]);
    assert_eq!(
        usage["cacheCreationInputTokens"].as_u64().unwrap(),
        expected[2] + expected[3]
    );
    assert_eq!(usage["cacheReadInputTokens"].as_u64().unwrap(), expected[4]);
    // claude-sonnet-4-5 in nano-USD per token: input 3000, output 15000,
    // cache write 5m 3750, 1h 6000, cache read 300.
    let nano = expected[0] * 3_000
        + expected[1] * 15_000
        + expected[2] * 3_750
        + expected[3] * 6_000
        + expected[4] * 300;
    let cost = claude_relay::domain::NanoUsd(nano).to_decimal_string();
    assert_eq!(usage["costUsd"].as_str().unwrap(), cost);
    let acc = relay.account_usage(&account).await;
    assert_eq!(acc["costUsd"].as_str().unwrap(), cost);
    assert_eq!(acc["requests"].as_u64().unwrap(), n);
}

#[tokio::test]
async fn key_multiplier_bills_keys_but_not_accounts() {
    let relay = TestRelay::start().await;
    let account = relay.add_account("a", "sk-ant-api03-multiplier", 1).await;
    let v = relay
        .gql(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
            json!({"i": {"name": "double", "costMultiplier": 2.0}}),
        )
        .await;
    let key_id = v["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = v["createApiKey"]["secret"].as_str().unwrap().to_string();
    relay
        .messages(&key, &common::simple_body(false))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let usage = relay.wait_key_requests(&key_id, 1).await;
    let key_cost =
        claude_relay::domain::NanoUsd::parse_decimal(usage["costUsd"].as_str().unwrap()).unwrap();
    let acc = relay.account_usage(&account).await;
    let list_cost =
        claude_relay::domain::NanoUsd::parse_decimal(acc["costUsd"].as_str().unwrap()).unwrap();
    assert!(list_cost.0 > 0);
    assert_eq!(key_cost.0, list_cost.0 * 2);
}
