//! Image URLs on the OpenAI endpoint: off by default (a clear 400); when
//! enabled, a URL whose host is loopback or private is refused before any
//! connection, whatever the route to it.

mod common;

use common::TestRelay;
use serde_json::{json, Value};

fn chat_with_image(url: &str) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]
    })
}

async fn post(relay: &TestRelay, key: &str, body: &Value) -> (u16, Value) {
    let resp = relay
        .http
        .post(format!("{}/v1/chat/completions", relay.base_url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn image_urls_are_refused_unless_enabled_and_public() {
    let relay = TestRelay::start().await;
    relay
        .add_account("a", "sk-ant-api03-image-test-0001", 1)
        .await;
    let (_, key) = relay.add_key("k").await;
    let image = format!("{}/v1/models", relay.sim.base_url());
    let (status, body) = post(&relay, &key, &chat_with_image(&image)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not fetch image URLs"));

    let relay = TestRelay::start_with(|c| c.fetch_image_urls = true).await;
    relay
        .add_account("a", "sk-ant-api03-image-test-0001", 1)
        .await;
    let (_, key) = relay.add_key("k").await;
    for url in [
        format!("{}/cat.png", relay.sim.base_url()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:10.0.0.1]/x.png".to_owned(),
    ] {
        let (status, body) = post(&relay, &key, &chat_with_image(&url)).await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("loopback, private or link-local"),
            "{message}"
        );
    }
    // Nothing reached the upstream: the request was refused before routing.
    assert!(relay.sim.sim.requests().is_empty());
}
