//! Failover before the first byte: a failing account is skipped, rested
//! (honouring retry-after), and the client sees a normal answer.

mod common;

use claude_relay::sim::Fault;
use common::{simple_body, TestRelay};
use serde_json::Value;

fn credentials_seen(relay: &TestRelay) -> Vec<String> {
    relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.credential)
        .collect()
}

#[tokio::test]
async fn rate_limited_account_is_skipped_and_rested() {
    let relay = TestRelay::start().await;
    relay.add_account("first", "sk-ant-api03-fo-first", 1).await;
    relay
        .add_account("second", "sk-ant-api03-fo-second", 2)
        .await;
    let (_, key) = relay.add_key("k").await;
    relay.sim.sim.set_fault(
        "sk-ant-api03-fo-first",
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );

    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        credentials_seen(&relay),
        ["sk-ant-api03-fo-first", "sk-ant-api03-fo-second"]
    );

    // The first account now rests: the next request goes straight to the second.
    relay.sim.sim.clear_requests();
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(credentials_seen(&relay), ["sk-ant-api03-fo-second"]);
}

#[tokio::test]
async fn server_errors_and_dead_upstreams_fail_over() {
    let relay = TestRelay::start().await;
    relay.add_account("broken", "sk-ant-api03-fo-500", 1).await;
    let (_, key) = relay.add_key("k").await;
    // An account whose upstream does not even listen.
    relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            serde_json::json!({"i": {"name": "dead", "kind": "ANTHROPIC_API_KEY", "apiKey": "sk-ant-api03-dead", "baseUrl": "http://127.0.0.1:9", "priority": 1}}),
        )
        .await;
    relay.add_account("healthy", "sk-ant-api03-fo-ok", 5).await;
    relay
        .sim
        .sim
        .set_fault("sk-ant-api03-fo-500", Fault::ServerError);
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(
        credentials_seen(&relay).last().map(String::as_str),
        Some("sk-ant-api03-fo-ok")
    );
}

#[tokio::test]
async fn error_event_before_content_is_failed_over_invisibly() {
    let relay = TestRelay::start().await;
    let flaky = relay.add_account("flaky", "sk-ant-api03-fo-event", 1).await;
    relay
        .add_account("steady", "sk-ant-api03-fo-steady", 2)
        .await;
    let (key_id, key) = relay.add_key("k").await;
    relay
        .sim
        .sim
        .set_fault("sk-ant-api03-fo-event", Fault::ErrorEventBeforeContent);
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("event: error"),
        "the client saw the failed attempt: {text}"
    );
    assert_eq!(text.matches("event: message_start").count(), 1);
    assert!(text.contains("event: message_stop"));
    relay.wait_key_requests(&key_id, 1).await;
    // The failed attempt had started a message upstream: billed to its account only.
    for _ in 0..100 {
        if relay.account_usage(&flaky).await["requests"] == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the failed attempt was not recorded against its account");
}

#[tokio::test]
async fn error_after_content_reaches_the_client_as_an_sse_error() {
    let relay = TestRelay::start().await;
    relay.add_account("mid", "sk-ant-api03-fo-mid", 1).await;
    relay.add_account("other", "sk-ant-api03-fo-other", 2).await;
    let (key_id, key) = relay.add_key("k").await;
    relay.sim.sim.set_fault(
        "sk-ant-api03-fo-mid",
        Fault::ErrorEventMidStream { after_deltas: 2 },
    );
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: content_block_delta"));
    assert!(text.contains("event: error"));
    assert_eq!(
        credentials_seen(&relay),
        ["sk-ant-api03-fo-mid"],
        "no failover after content was sent"
    );
    relay.wait_key_requests(&key_id, 1).await;
}
