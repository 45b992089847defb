//! A client that goes away mid-stream cancels the upstream request, frees the
//! account, and is still billed for what it consumed.

mod common;

use common::{simple_body, TestRelay};
use futures::StreamExt;
use std::time::Duration;

#[tokio::test]
async fn disconnect_mid_stream_cancels_upstream_and_records_usage() {
    let relay = TestRelay::start().await;
    let account = relay.add_account("a1", "sk-ant-api03-disconnect", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    relay.sim.sim.set_stream_delay(Duration::from_millis(200));
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 200, "stream": true,
        "messages": [{"role": "user", "content": "tell me a long story about relays"}]
    });
    let resp = relay.messages(&key, &body).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("content_block_delta") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);

    let usage = relay.wait_key_requests(&key_id, 1).await;
    assert!(
        usage["inputTokens"].as_u64().unwrap() > 0,
        "input from message_start: {usage}"
    );
    assert!(
        usage["outputTokens"].as_u64().unwrap() > 0,
        "output estimated from forwarded text: {usage}"
    );
    for _ in 0..100 {
        if relay.sim.sim.cancelled_streams() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        relay.sim.sim.cancelled_streams(),
        1,
        "upstream stream was not cancelled"
    );
    assert_eq!(relay.sim.sim.completed_streams(), 0);
    assert_eq!(relay.account_usage(&account).await["requests"], 1);
    let stats = relay
        .gql(
            "{ balancerStats { accounts { accountId inFlight } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        stats["balancerStats"]["accounts"][0]["accountId"],
        account.as_str()
    );
    assert_eq!(
        stats["balancerStats"]["accounts"][0]["inFlight"], 0,
        "the account's lease was released"
    );

    // The account is free again: with max concurrency irrelevant here, a new request is served.
    relay.sim.sim.set_stream_delay(Duration::ZERO);
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn disconnect_before_the_answer_bills_the_estimate() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-hang", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    relay
        .sim
        .sim
        .set_fault("sk-ant-api03-hang", claude_relay::sim::Fault::Hang);
    let req = relay
        .messages(&key, &simple_body(false))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        req.is_err(),
        "the hung request should have timed out client-side"
    );
    let usage = relay.wait_key_requests(&key_id, 1).await;
    // Estimate: input ≈ body bytes / 4, output = min(max_tokens, 4096) = 64.
    assert_eq!(usage["outputTokens"], 64);
    assert!(usage["inputTokens"].as_u64().unwrap() > 0);
}
