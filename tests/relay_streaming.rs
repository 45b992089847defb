//! Streaming: the client receives exactly the bytes upstream sent, as they
//! arrive, and usage is captured from the stream on the side.

mod common;

use common::{simple_body, TestRelay};
use futures::StreamExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn stream_is_byte_for_byte_what_upstream_sent() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-stream", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let request_id = resp.headers()["request-id"].to_str().unwrap().to_string();
    let received = resp.bytes().await.unwrap();
    let sent = relay
        .sim
        .sim
        .sent_body(&request_id)
        .expect("the simulator recorded what it sent");
    assert_eq!(received, sent, "the relay altered the stream");
    let text = String::from_utf8(received.to_vec()).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert!(events.contains(&"content_block_delta") && events.contains(&"message_delta"));
    let usage = relay.wait_key_requests(&key_id, 1).await;
    assert!(usage["outputTokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn chunks_are_forwarded_as_they_arrive() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-incremental", 1).await;
    let (_, key) = relay.add_key("k").await;
    relay.sim.sim.set_stream_delay(Duration::from_millis(100));
    let started = Instant::now();
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut first_delta_at = None;
    let mut seen = String::new();
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_delta_at.is_none() && seen.contains("content_block_delta") {
            first_delta_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_delta_at.expect("no delta seen");
    // With ≥ 5 deltas 100 ms apart, the first must arrive well before the end.
    assert!(
        total.saturating_sub(first) >= Duration::from_millis(300),
        "first delta at {first:?} of {total:?}: buffered"
    );
}

#[tokio::test]
async fn compressed_upstream_answers_still_yield_exact_usage() {
    let relay = TestRelay::start().await;
    relay.add_account("a1", "sk-ant-api03-gzip", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    for encoding in ["gzip", "br", "zstd"] {
        let resp = relay
            .messages(&key, &simple_body(false))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    let usage = relay.wait_key_requests(&key_id, 3).await;
    assert!(usage["inputTokens"].as_u64().unwrap() > 0);
    assert!(usage["outputTokens"].as_u64().unwrap() > 0);
    let encodings: Vec<String> = relay
        .sim
        .sim
        .requests()
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "accept-encoding")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(encodings.len(), 3);
    assert!(
        encodings.iter().all(|e| e.contains("gzip")),
        "{encodings:?}"
    );
}
