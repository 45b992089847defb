//! `bedrock` accounts end to end: real HTTP from a client through the relay
//! to the simulated Bedrock runtime, which checks every SigV4 signature with
//! its own implementation. Non-streaming and streaming answers look like
//! the Anthropic API's, usage is recorded, throttling fails over, refused
//! credentials never reach the client as 401/403, and the capabilities
//! (no count_tokens, models from the account's table) are answered clearly.

mod common;

use claude_relay::sim::bedrock::{SIM_AWS_ACCESS_KEY_ID, SIM_AWS_SECRET_ACCESS_KEY};
use claude_relay::sim::Fault;
use common::{simple_body, TestRelay};
use serde_json::{json, Value};

const SECOND_KEY_ID: &str = "AKIASECONDBEDROCKACCT";
const SECOND_SECRET: &str = "second/Bedrock+Secret/Access/Key/987654";
const THIRD_KEY_ID: &str = "AKIATHIRDBEDROCKACCTX";
const THIRD_SECRET: &str = "third/Bedrock+Secret/Access/Key/5555555";

async fn add_bedrock(
    relay: &TestRelay,
    name: &str,
    key_id: &str,
    secret: &str,
    priority: i64,
    extra: Value,
) -> Value {
    let mut input = json!({
        "name": name, "kind": "BEDROCK", "priority": priority,
        "awsAccessKeyId": key_id, "awsSecretAccessKey": secret, "awsRegion": "us-east-1",
        "baseUrl": relay.sim.base_url(),
    });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    let v = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id kind awsAccessKeyId awsRegion awsSessionTokenSet apiKey } } }",
            json!({"i": input}),
        )
        .await;
    v["createAccount"]["account"].clone()
}

/// (event name, data JSON) of each SSE event.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap_or_else(|_| panic!("bad data: {v}"));
                }
            }
            (name, data)
        })
        .collect()
}

fn bedrock_calls(relay: &TestRelay) -> Vec<claude_relay::sim::RecordedRequest> {
    relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/model/"))
        .collect()
}

#[tokio::test]
async fn messages_and_streams_through_bedrock_look_like_anthropic() {
    let relay = TestRelay::start().await;
    let account = add_bedrock(
        &relay,
        "bedrock",
        SIM_AWS_ACCESS_KEY_ID,
        SIM_AWS_SECRET_ACCESS_KEY,
        1,
        json!({}),
    )
    .await;
    assert_eq!(account["kind"], "BEDROCK");
    assert_eq!(account["awsRegion"], "us-east-1");
    assert_eq!(account["awsSessionTokenSet"], false);
    assert_eq!(account["awsAccessKeyId"], "AKIA…ROCK");
    assert!(!account.to_string().contains(SIM_AWS_SECRET_ACCESS_KEY));
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (key_id, key) = relay.add_key("k").await;

    // Non-streaming: Bedrock's Messages JSON passes through.
    let resp = relay
        .messages(&key, &simple_body(false))
        .header("anthropic-beta", "context-1m-2025-08-07")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("request-id").is_some());
    assert!(resp.headers().get("x-amzn-requestid").is_none());
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "claude-sonnet-4-5-20250929");
    assert!(message["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Say hello to the relay"));
    let call = bedrock_calls(&relay).pop().unwrap();
    assert_eq!(
        call.path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    );
    let auth = call.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={SIM_AWS_ACCESS_KEY_ID}/"
        )) && auth.contains("/us-east-1/bedrock/aws4_request"),
        "{auth}"
    );
    // Nothing Anthropic-specific (or the client's key) goes to AWS.
    assert!(call.header("x-api-key").is_none());
    assert!(call.header("anthropic-version").is_none());
    assert!(call.header("anthropic-beta").is_none());

    // Streaming: the event stream arrives as Anthropic SSE.
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
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"],
        "{text}"
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let deltas = names
        .iter()
        .filter(|n| **n == "content_block_delta")
        .count();
    assert!(deltas > 5, "{text}");
    assert_eq!(names.len(), deltas + 6);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "{text}");
    }
    // Bedrock's invocation metrics are not part of Anthropic's event.
    assert_eq!(events.last().unwrap().1, json!({"type": "message_stop"}));
    assert!(!text.contains("amazon-bedrock"));
    let start_usage = &events[0].1["message"]["usage"];
    assert!(start_usage["input_tokens"].as_u64().unwrap() > 0);
    let call = bedrock_calls(&relay).pop().unwrap();
    assert!(call.path.ends_with("/invoke-with-response-stream"));
    assert_eq!(
        call.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );

    // Both requests were metered from what Bedrock reported.
    let usage = relay.wait_key_requests(&key_id, 2).await;
    assert!(usage["inputTokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["outputTokens"].as_u64().unwrap(),
        (deltas as u64) * 2,
        "{usage}"
    );
    assert_ne!(usage["costUsd"], "0", "{usage}");
    let account_usage = relay.account_usage(&account_id).await;
    assert_eq!(account_usage["requests"], 2);
}

#[tokio::test]
async fn throttling_and_stream_exceptions_fail_over_to_another_account() {
    let relay = TestRelay::start().await;
    relay.sim.sim.add_aws_key(SECOND_KEY_ID, SECOND_SECRET);
    relay.sim.sim.add_aws_key(THIRD_KEY_ID, THIRD_SECRET);
    add_bedrock(
        &relay,
        "first",
        SIM_AWS_ACCESS_KEY_ID,
        SIM_AWS_SECRET_ACCESS_KEY,
        1,
        json!({}),
    )
    .await;
    add_bedrock(&relay, "second", SECOND_KEY_ID, SECOND_SECRET, 2, json!({})).await;
    add_bedrock(&relay, "third", THIRD_KEY_ID, THIRD_SECRET, 3, json!({})).await;
    let (key_id, key) = relay.add_key("k").await;
    let signer_of = |r: &claude_relay::sim::RecordedRequest| {
        let auth = r.header("authorization").unwrap_or_default().to_owned();
        [SIM_AWS_ACCESS_KEY_ID, SECOND_KEY_ID, THIRD_KEY_ID]
            .into_iter()
            .find(|id| auth.contains(&format!("Credential={id}/")))
            .unwrap_or("none")
    };

    // An exception frame before any content moves a stream to the next account.
    relay
        .sim
        .sim
        .set_fault_times(SIM_AWS_ACCESS_KEY_ID, Fault::ErrorEventBeforeContent, 1);
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let names: Vec<String> = sse_events(&text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(!names.iter().any(|n| n == "error"), "{text}");
    let signers: Vec<&str> = bedrock_calls(&relay).iter().map(signer_of).collect();
    assert_eq!(signers, [SIM_AWS_ACCESS_KEY_ID, SECOND_KEY_ID]);

    // A ThrottlingException (429) does too; the first account still rests.
    relay.sim.sim.clear_requests();
    relay.sim.sim.set_fault_times(
        SECOND_KEY_ID,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let signers: Vec<&str> = bedrock_calls(&relay).iter().map(signer_of).collect();
    assert_eq!(signers, [SECOND_KEY_ID, THIRD_KEY_ID]);
    relay.wait_key_requests(&key_id, 2).await;
}

#[tokio::test]
async fn refused_credentials_are_an_account_problem_not_the_clients() {
    let relay = TestRelay::start().await;
    let bad = add_bedrock(
        &relay,
        "wrong-secret",
        SIM_AWS_ACCESS_KEY_ID,
        "not/the/right/secret/at/all/0000000000",
        1,
        json!({}),
    )
    .await;
    let (_, key) = relay.add_key("k").await;

    // The only account is refused: the client sees 529, never 401/403.
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 529);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    let seen = bedrock_calls(&relay);
    assert_eq!(seen.len(), 1);
    let stats = relay
        .gql(
            "{ balancerStats { accounts { accountId state } } }",
            json!({}),
        )
        .await;
    let state = stats["balancerStats"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["accountId"] == bad["id"])
        .map(|a| a["state"].clone());
    assert_eq!(state, Some(json!("AUTH_FAILED")));

    // With a good account next to it the request is served there.
    relay.sim.sim.add_aws_key(SECOND_KEY_ID, SECOND_SECRET);
    add_bedrock(&relay, "good", SECOND_KEY_ID, SECOND_SECRET, 2, json!({})).await;
    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("message_stop"));
}

/// The simulator itself refuses a wrong secret the way AWS does; the relay
/// test above relies on it.
#[tokio::test]
async fn simulator_refuses_a_bad_signature_like_aws() {
    let relay = TestRelay::start().await;
    let resp = relay
        .http
        .post(format!(
            "{}/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
            relay.sim.base_url()
        ))
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={SIM_AWS_ACCESS_KEY_ID}/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
        )
        .header("x-amz-date", "20250101T000000Z")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .starts_with("InvalidSignatureException:"));
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));
}

#[tokio::test]
async fn capabilities_count_tokens_and_models() {
    let relay = TestRelay::start().await;
    add_bedrock(
        &relay,
        "bedrock",
        SIM_AWS_ACCESS_KEY_ID,
        SIM_AWS_SECRET_ACCESS_KEY,
        1,
        json!({"routing": {"modelMapping": [{"from": "claude-sonnet-4-5", "to": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}, {"from": "house-model", "to": "anthropic.claude-haiku-4-5-20251001-v1:0"}]}}),
    )
    .await;
    let (_, key) = relay.add_key("k").await;
    let count = |relay: &TestRelay| {
        relay
            .http
            .post(format!("{}/v1/messages/count_tokens", relay.base_url))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };

    // Only Bedrock: count_tokens is refused clearly, not failed over.
    let resp = count(&relay).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("BEDROCK"));
    assert!(bedrock_calls(&relay).is_empty());

    // The per-account mapping overrides the built-in id.
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        bedrock_calls(&relay).pop().unwrap().path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    );

    // Models come from the account's table, mapping sources included.
    let list: Value = relay
        .http
        .get(format!("{}/v1/models?limit=1000", relay.base_url))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"claude-sonnet-4-5"), "{list}");
    assert!(ids.contains(&"house-model"), "{list}");
    assert!(!ids.iter().any(|id| id.starts_with("gpt")), "{list}");
    let missing = relay
        .http
        .get(format!("{}/v1/models/claude-2.1", relay.base_url))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Next to an API-key account, count_tokens goes there.
    relay
        .add_account("console", "sk-ant-api03-console-key-0001", 5)
        .await;
    let resp = count(&relay).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["input_tokens"].as_u64().unwrap() > 0);
    assert!(relay
        .sim
        .sim
        .requests()
        .iter()
        .any(|r| r.path == "/v1/messages/count_tokens"));
}

#[tokio::test]
async fn bedrock_fields_are_checked() {
    let relay = TestRelay::start().await;
    let create = |input: Value| {
        relay.gql_as(
            Some(&relay.admin_token),
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({"i": input}),
        )
    };
    let missing_region = create(json!({"name": "a", "kind": "BEDROCK", "awsAccessKeyId": "AKIAX0000000", "awsSecretAccessKey": "s"})).await;
    assert_eq!(
        missing_region["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let with_api_key = create(json!({"name": "b", "kind": "BEDROCK", "apiKey": "sk-ant-x", "awsAccessKeyId": "AKIAX0000000", "awsSecretAccessKey": "s", "awsRegion": "us-east-1"})).await;
    assert_eq!(
        with_api_key["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let aws_on_api_key = create(json!({"name": "c", "kind": "ANTHROPIC_API_KEY", "apiKey": "sk-ant-x", "awsRegion": "us-east-1"})).await;
    assert_eq!(
        aws_on_api_key["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let bad_region = create(json!({"name": "d", "kind": "BEDROCK", "awsAccessKeyId": "AKIAX0000000", "awsSecretAccessKey": "s", "awsRegion": "Mars"})).await;
    assert_eq!(
        bad_region["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );

    // Rotating the secret through updateAccount takes effect on the next
    // call (a new adapter), and a session token is signed along.
    let account = add_bedrock(
        &relay,
        "rotating",
        SIM_AWS_ACCESS_KEY_ID,
        "stale/secret/000000000000000000000000",
        1,
        json!({}),
    )
    .await;
    let (_, key) = relay.add_key("k").await;
    let v = relay
        .gql(
            "mutation($i: UpdateAccountInput!) { updateAccount(input: $i) { account { id awsSessionTokenSet } } }",
            json!({"i": {"id": account["id"], "awsSecretAccessKey": SIM_AWS_SECRET_ACCESS_KEY, "awsSessionToken": "temporary-session-token-1"}}),
        )
        .await;
    assert_eq!(v["updateAccount"]["account"]["awsSessionTokenSet"], true);
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let call = bedrock_calls(&relay).pop().unwrap();
    assert_eq!(
        call.header("x-amz-security-token"),
        Some("temporary-session-token-1")
    );
    assert!(call
        .header("authorization")
        .unwrap()
        .contains("x-amz-security-token"));
}

/// The OpenAI endpoint works over a Bedrock account too: the chat request is
/// translated to Messages, sent to Bedrock, and its SSE (converted from the
/// event stream) becomes chat completion chunks with usage.
#[tokio::test]
async fn openai_chat_completions_over_bedrock() {
    let relay = TestRelay::start().await;
    add_bedrock(
        &relay,
        "bedrock",
        SIM_AWS_ACCESS_KEY_ID,
        SIM_AWS_SECRET_ACCESS_KEY,
        1,
        json!({}),
    )
    .await;
    let (_, key) = relay.add_key("k").await;
    let chat = |stream: bool| {
        relay
            .http
            .post(format!("{}/v1/chat/completions", relay.base_url))
            .bearer_auth(&key)
            .json(&json!({
                "model": "claude-sonnet-4-5",
                "stream": stream,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Hello over Bedrock"}]
            }))
            .send()
    };
    let completion: Value = chat(false).await.unwrap().json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    assert!(completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Hello over Bedrock"));
    assert!(completion["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let text = chat(true).await.unwrap().text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(content.contains("Hello over Bedrock"), "{content}");
    assert!(chunks
        .last()
        .and_then(|c| c["usage"]["completion_tokens"].as_u64())
        .is_some_and(|n| n > 0));
    assert_eq!(
        bedrock_calls(&relay)
            .iter()
            .filter(|c| c.path.ends_with("/invoke-with-response-stream"))
            .count(),
        1
    );
}
