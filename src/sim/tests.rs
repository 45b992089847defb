//! End-to-end tests of the simulator over real HTTP on 127.0.0.1:0 (reqwest as the client).

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Fault, SimHandle, SimUpstream};

const KEY: &str = "sk-ant-api03-test-key";

async fn start() -> SimHandle {
    SimUpstream::new()
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("bind the simulator")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn body(text: &str) -> Value {
    json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    })
}

fn streaming(mut b: Value) -> Value {
    b["stream"] = json!(true);
    b
}

async fn post(h: &SimHandle, key: &str, path: &str, b: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", h.base_url()))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(b)
        .send()
        .await
        .expect("request")
}

async fn message(h: &SimHandle, key: &str, b: &Value) -> reqwest::Response {
    post(h, key, "/v1/messages", b).await
}

/// Parses an SSE body, requiring every event to be `event:` + `data:` + blank line.
fn parse_sse(text: &str) -> Vec<(String, Value)> {
    assert!(text.ends_with("\n\n"), "events end with a blank line");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line first");
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line second");
            assert!(lines.next().is_none());
            let data: Value = serde_json::from_str(data).expect("data is JSON");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(r: &reqwest::Response, name: &str) -> u64 {
    header(r, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("numeric header {name}"))
}

fn is_request_id(id: &str) -> bool {
    id.strip_prefix("req_")
        .is_some_and(|rest| rest.len() >= 24 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test]
async fn non_streaming_message_shape_usage_and_headers() {
    let h = start().await;
    let r = message(&h, KEY, &body("Say hi to the relay")).await;
    assert_eq!(r.status(), 200);
    assert!(is_request_id(header(&r, "request-id").unwrap_or("")));
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    for must_strip in ["anthropic-organization-id", "cf-ray", "set-cookie"] {
        assert!(header(&r, must_strip).is_some(), "{must_strip}");
    }
    assert_eq!(header(&r, "server"), Some("cloudflare"));
    assert_eq!(
        header_u64(&r, "anthropic-ratelimit-requests-remaining"),
        3999
    );
    let reset = header(&r, "anthropic-ratelimit-tokens-reset").unwrap_or("");
    assert!(
        chrono::DateTime::parse_from_rfc3339(reset).is_ok(),
        "{reset}"
    );
    for h in [
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-tokens-limit",
    ] {
        header_u64(&r, h);
    }
    assert!(header(&r, "anthropic-ratelimit-unified-status").is_none());
    let tokens_left = header_u64(&r, "anthropic-ratelimit-tokens-remaining");

    let m: Value = r.json().await.expect("json");
    assert!(m["id"].as_str().unwrap_or("").starts_with("msg_"));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-sonnet-4-6");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["stop_sequence"], Value::Null);
    assert_eq!(m["content"][0]["type"], "text");
    let text = m["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("Say hi to the relay"), "{text}");
    let u = &m["usage"];
    assert_eq!(
        u["output_tokens"].as_u64(),
        Some(text.split(' ').count() as u64)
    );
    assert!(u["input_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 0);
    assert_eq!(u["cache_creation"]["ephemeral_1h_input_tokens"], 0);
    assert_eq!(u["service_tier"], "standard");

    // Remaining values go down per credential, and each credential has its own window.
    let r2 = message(&h, KEY, &body("again")).await;
    assert_eq!(
        header_u64(&r2, "anthropic-ratelimit-requests-remaining"),
        3998
    );
    assert!(header_u64(&r2, "anthropic-ratelimit-tokens-remaining") < tokens_left);
    let other = message(&h, "sk-ant-api03-other", &body("x")).await;
    assert_eq!(
        header_u64(&other, "anthropic-ratelimit-requests-remaining"),
        3999
    );

    // max_tokens cuts the reply.
    let mut short = body("cut me");
    short["max_tokens"] = json!(3);
    let m: Value = message(&h, KEY, &short).await.json().await.expect("json");
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn stream_event_order_and_usage_equal_non_streaming() {
    let h = start().await;
    let b = body("Stream these words please");
    // Different credentials so neither request sees the other's cache (there is none
    // here, but the accounting must not depend on that).
    let plain: Value = message(&h, "sk-ant-api03-a", &b)
        .await
        .json()
        .await
        .expect("json");

    let r = client()
        .post(format!("{}/v1/messages", h.base_url()))
        .header("x-api-key", "sk-ant-api03-b")
        .header("anthropic-version", "2023-06-01")
        .header("accept-encoding", "gzip, br, zstd")
        .json(&streaming(b.clone()))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(header(&r, "cache-control"), Some("no-cache"));
    assert!(
        header(&r, "content-encoding").is_none(),
        "SSE is never compressed"
    );
    assert!(is_request_id(header(&r, "request-id").unwrap_or("")));
    let events = parse_sse(&r.text().await.expect("body"));
    let n = names(&events);
    let deltas = n.iter().filter(|e| **e == "content_block_delta").count();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(n, expected);
    assert!(deltas > 5);

    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-sonnet-4-6");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["output_tokens"], 1);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(text, plain["content"][0]["text"].as_str().unwrap_or("-"));
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["delta"]["stop_sequence"], Value::Null);

    let pu = &plain["usage"];
    let su = &start["usage"];
    for k in [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
    ] {
        assert_eq!(su[k], pu[k], "{k}");
    }
    assert_eq!(delta["usage"]["output_tokens"], pu["output_tokens"]);
    assert_eq!(h.sim.completed_streams(), 1);
    assert_eq!(h.sim.cancelled_streams(), 0);
}

fn cached_body(ttl: Option<&str>) -> Value {
    let mut cc = json!({"type": "ephemeral"});
    if let Some(t) = ttl {
        cc["ttl"] = json!(t);
    }
    json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: sim"},
            {"type": "text", "text": "You are a careful assistant. ".repeat(200), "cache_control": cc},
        ],
        "messages": [{"role": "user", "content": "What is cached?"}],
    })
}

async fn usage_of(h: &SimHandle, key: &str, b: &Value) -> Value {
    let m: Value = message(h, key, b).await.json().await.expect("json");
    m["usage"].clone()
}

#[tokio::test]
async fn prompt_caching_writes_then_reads_per_credential() {
    let h = start().await;
    let b = cached_body(None);
    let first = usage_of(&h, KEY, &b).await;
    let created = first["cache_creation_input_tokens"].as_u64().unwrap_or(0);
    assert!(created > 1000, "{first}");
    assert_eq!(first["cache_read_input_tokens"], 0);
    assert_eq!(
        first["cache_creation"]["ephemeral_5m_input_tokens"],
        created
    );

    let second = usage_of(&h, KEY, &b).await;
    assert_eq!(second["cache_creation_input_tokens"], 0);
    assert_eq!(second["cache_read_input_tokens"], created);
    assert_eq!(second["input_tokens"], first["input_tokens"]);

    // Streaming reads the same cache with the same accounting.
    let r = message(&h, KEY, &streaming(b.clone())).await;
    let events = parse_sse(&r.text().await.expect("body"));
    let su = &events[0].1["message"]["usage"];
    assert_eq!(su["cache_read_input_tokens"], created);
    assert_eq!(su["input_tokens"], first["input_tokens"]);

    // count_tokens is the whole prompt: uncached + written + read.
    let mut ct = b.clone();
    ct.as_object_mut().map(|o| o.remove("max_tokens"));
    let r = post(&h, KEY, "/v1/messages/count_tokens", &ct).await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.expect("json");
    let total = first["input_tokens"].as_u64().unwrap_or(0) + created;
    assert_eq!(c, json!({ "input_tokens": total }));

    // Another account has a cold cache; a 1h breakpoint is reported as such.
    let other = usage_of(&h, "sk-ant-api03-other", &b).await;
    assert_eq!(other["cache_creation_input_tokens"], created);
    let hour = usage_of(&h, "sk-ant-api03-hour", &cached_body(Some("1h"))).await;
    assert_eq!(hour["cache_creation"]["ephemeral_1h_input_tokens"], created);
}

#[tokio::test]
async fn http_faults_have_real_status_and_error_json() {
    let h = start().await;
    let cases = [
        (
            Fault::RateLimited {
                retry_after_secs: 7,
            },
            429,
            "rate_limit_error",
        ),
        (Fault::SpendLimited, 429, "rate_limit_error"),
        (Fault::Overloaded, 529, "overloaded_error"),
        (Fault::ServerError, 500, "api_error"),
        (Fault::Unauthorized, 401, "authentication_error"),
        (Fault::Forbidden, 403, "permission_error"),
    ];
    for (fault, status, kind) in cases {
        h.sim.set_fault(KEY, fault.clone());
        for b in [body("x"), streaming(body("x"))] {
            let r = message(&h, KEY, &b).await;
            assert_eq!(r.status().as_u16(), status, "{fault:?}");
            assert_eq!(header(&r, "content-type"), Some("application/json"));
            let retry_after = header(&r, "retry-after").map(str::to_owned);
            let rid = header(&r, "request-id").unwrap_or("").to_owned();
            let e: Value = r.json().await.expect("json");
            assert_eq!(e["type"], "error");
            assert_eq!(e["error"]["type"], kind);
            assert!(e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert_eq!(e["request_id"], rid.as_str());
            match fault {
                Fault::RateLimited { .. } => assert_eq!(retry_after.as_deref(), Some("7")),
                _ => assert_eq!(retry_after, None, "{fault:?}"),
            }
        }
    }
    // Faults apply to count_tokens and models as well.
    let r = client()
        .get(format!("{}/v1/models", h.base_url()))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    h.sim.clear_fault(KEY);
    assert_eq!(message(&h, KEY, &body("x")).await.status(), 200);

    // For the next N requests only.
    h.sim.set_fault_times(KEY, Fault::Overloaded, 2);
    assert_eq!(message(&h, KEY, &body("x")).await.status(), 529);
    assert_eq!(
        post(&h, KEY, "/v1/messages/count_tokens", &body("x"))
            .await
            .status(),
        529
    );
    assert_eq!(message(&h, KEY, &body("x")).await.status(), 200);

    // Faults by credential name; an explicit fault wins.
    let named = [
        ("sk-ant-api03-a-fault-429", 429),
        ("sk-ant-api03-a-fault-529", 529),
        ("sk-ant-api03-a-fault-500", 500),
        ("sk-ant-api03-a-fault-401", 401),
        ("sk-ant-api03-a-fault-drop", 200),
    ];
    for (key, status) in named {
        assert_eq!(message(&h, key, &body("x")).await.status(), status, "{key}");
    }
    let r = message(&h, "sk-ant-api03-a-fault-429", &body("x")).await;
    assert_eq!(header(&r, "retry-after"), Some("30"));
    h.sim
        .set_fault("sk-ant-api03-a-fault-429", Fault::ServerError);
    assert_eq!(
        message(&h, "sk-ant-api03-a-fault-429", &body("x"))
            .await
            .status(),
        500
    );
}

#[tokio::test]
async fn hang_never_answers_and_shutdown_still_completes() {
    let h = start().await;
    h.sim.set_fault(KEY, Fault::Hang);
    let hung = client()
        .post(format!("{}/v1/messages", h.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body("x"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.is_err_and(|e| e.is_timeout()));
    let named = client()
        .post(format!("{}/v1/messages", h.base_url()))
        .header("x-api-key", "sk-ant-api03-x-fault-hang")
        .header("anthropic-version", "2023-06-01")
        .json(&body("x"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(named.is_err_and(|e| e.is_timeout()));

    // A request still hanging does not keep shutdown waiting.
    let url = format!("{}/v1/messages", h.base_url());
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body("x"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    h.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(4));
    let _ = tokio::time::timeout(Duration::from_secs(5), pending).await;
}

async fn raw_stream(h: &SimHandle, key: &str, b: &Value) -> (Vec<(String, Value)>, bool) {
    let mut r = message(h, key, &streaming(b.clone())).await;
    assert_eq!(r.status(), 200);
    let mut text = Vec::new();
    let mut failed = false;
    loop {
        match r.chunk().await {
            Ok(Some(c)) => text.extend_from_slice(&c),
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let text = String::from_utf8(text).expect("utf-8");
    (parse_sse(&text), failed)
}

#[tokio::test]
async fn drop_mid_stream_closes_the_connection_without_message_stop() {
    let h = start().await;
    h.sim
        .set_fault_times(KEY, Fault::DropMidStream { after_deltas: 2 }, 1);
    // A non-streaming request is served and does not use up the fault.
    assert_eq!(message(&h, KEY, &body("x")).await.status(), 200);
    let (events, failed) = raw_stream(&h, KEY, &body("drop me")).await;
    assert!(failed, "the body ends with a transport error");
    let n = names(&events);
    assert_eq!(n.iter().filter(|e| **e == "content_block_delta").count(), 2);
    assert!(!n.contains(&"message_stop"));
    assert_eq!(h.sim.completed_streams(), 0);
    assert_eq!(h.sim.cancelled_streams(), 0);
    // Used up: the retry streams to the end.
    let (events, failed) = raw_stream(&h, KEY, &body("drop me")).await;
    assert!(!failed);
    assert_eq!(names(&events).last(), Some(&"message_stop"));
    assert_eq!(h.sim.completed_streams(), 1);
}

#[tokio::test]
async fn error_events_in_streams() {
    let h = start().await;
    h.sim
        .set_fault(KEY, Fault::ErrorEventMidStream { after_deltas: 3 });
    let (events, failed) = raw_stream(&h, KEY, &body("x")).await;
    assert!(!failed);
    let n = names(&events);
    assert_eq!(n[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(n.iter().filter(|e| **e == "content_block_delta").count(), 3);
    assert_eq!(n.last(), Some(&"error"));
    assert_eq!(
        events[events.len() - 1].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    h.sim.set_fault(KEY, Fault::ErrorEventBeforeContent);
    let (events, failed) = raw_stream(&h, KEY, &body("x")).await;
    assert!(!failed);
    assert_eq!(names(&events), ["message_start", "error"]);
    assert_eq!(h.sim.completed_streams(), 0);
    assert_eq!(h.sim.cancelled_streams(), 0);
}

#[tokio::test]
async fn tool_use_is_streamed_as_input_json_deltas() {
    let h = start().await;
    let mut b = body("What's the weather in Paris?");
    b["tools"] = json!([{
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city", "unit"]},
    }]);
    b["tool_choice"] = json!({"type": "tool", "name": "get_weather"});
    let m: Value = message(&h, KEY, &b).await.json().await.expect("json");
    assert_eq!(m["stop_reason"], "tool_use");
    let block = &m["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap_or("").starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "simulated", "unit": "c"}));

    let (events, _) = raw_stream(&h, KEY, &b).await;
    assert_eq!(events[1].1["content_block"]["type"], "tool_use");
    assert_eq!(events[1].1["content_block"]["input"], json!({}));
    let json_text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    let parsed: Value = serde_json::from_str(&json_text).expect("complete JSON");
    assert_eq!(parsed, block["input"]);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], m["usage"]["output_tokens"]);
}

#[tokio::test]
async fn oauth_refresh_rotates_tokens_and_rejects_reuse() {
    let h = start().await;
    let url = format!("{}/v1/oauth/token", h.base_url());
    let refresh = |token: &str| {
        client().post(url.clone()).json(&json!({
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        }))
    };
    let r = refresh("sk-ant-ort01-account-1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.expect("json");
    let access = t["access_token"].as_str().unwrap_or("").to_owned();
    assert!(access.starts_with("sk-ant-oat01-sim-"));
    assert!(t["refresh_token"]
        .as_str()
        .unwrap_or("")
        .starts_with("sk-ant-ort01-sim-"));
    assert_eq!(t["expires_in"], 28800);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(h.sim.refresh_count(), 1);

    for used_or_bad in ["sk-ant-ort01-account-1", "sk-ant-ort01-invalid-x"] {
        let r = refresh(used_or_bad).send().await.expect("request");
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"], "invalid_grant");
        assert!(e["error_description"].is_string());
    }
    assert_eq!(h.sim.refresh_count(), 1);

    // The new access token works with the OAuth beta, and gets unified headers.
    let send = |beta: Option<&str>| {
        let mut rb = client()
            .post(format!("{}/v1/messages", h.base_url()))
            .bearer_auth(&access)
            .header("anthropic-version", "2023-06-01")
            .json(&body("hi"));
        if let Some(b) = beta {
            rb = rb.header("anthropic-beta", b);
        }
        rb.send()
    };
    let r = send(Some("claude-code-20250219,oauth-2025-04-20"))
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "anthropic-ratelimit-unified-status"),
        Some("allowed")
    );
    let util: f64 = header(&r, "anthropic-ratelimit-unified-5h-utilization")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&util));
    let reset = header_u64(&r, "anthropic-ratelimit-unified-5h-reset");
    assert!(reset > chrono::Utc::now().timestamp() as u64);
    header_u64(&r, "anthropic-ratelimit-unified-7d-reset");
    header(&r, "anthropic-ratelimit-unified-7d-utilization").expect("7d utilization");
    let r = send(None).await.expect("request");
    assert_eq!(r.status(), 401);

    // An explicit fault on a refresh token fails the refresh itself.
    h.sim.set_fault("sk-ant-ort01-flaky", Fault::ServerError);
    let r = refresh("sk-ant-ort01-flaky").send().await.expect("request");
    assert_eq!(r.status(), 500);
}

#[tokio::test]
async fn models_list_paginates_and_retrieve_knows_ids() {
    let h = start().await;
    let get = |path: &str| {
        client()
            .get(format!("{}{path}", h.base_url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let page: Value = get("/v1/models?limit=5")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let data = page["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 5);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], data[0]["id"]);
    assert_eq!(page["last_id"], "claude-sonnet-4-5-20250929");
    for m in &data {
        assert_eq!(m["type"], "model");
        assert!(m["display_name"].is_string());
        assert!(
            chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap_or("")).is_ok()
        );
    }

    let all: Value = get("/v1/models")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let all_ids: Vec<Value> = all["data"]
        .as_array()
        .map(|d| d.iter().map(|m| m["id"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(all["has_more"], false);

    // Walk the list 5 at a time with after_id, as the SDKs' auto-pagination does.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/models?limit=5&after_id={a}"),
            None => "/v1/models?limit=5".to_owned(),
        };
        let p: Value = get(&path)
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        walked.extend(
            p["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|m| m["id"].clone()),
        );
        if p["has_more"] != true {
            break;
        }
        after = p["last_id"].as_str().map(str::to_owned);
    }
    assert_eq!(walked, all_ids);

    let cursor = all_ids[3].as_str().unwrap_or("");
    let before: Value = get(&format!("/v1/models?limit=2&before_id={cursor}"))
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(before["first_id"], all_ids[1]);
    assert_eq!(before["last_id"], all_ids[2]);
    assert_eq!(before["has_more"], true);

    let one: Value = get("/v1/models/claude-sonnet-4-5-20250929")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(one["id"], "claude-sonnet-4-5-20250929");
    let alias: Value = get("/v1/models/claude-haiku-4-5")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(alias["id"], "claude-haiku-4-5-20251001");
    let r = get("/v1/models/gpt-4o").await.expect("request");
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["type"], "not_found_error");
    assert_eq!(
        get("/v1/models?limit=0").await.expect("request").status(),
        400
    );
}

#[tokio::test]
async fn json_is_compressed_on_request_and_sse_never_is() {
    let h = start().await;
    // Raw: ask for gzip without automatic decoding and decode by hand.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .build()
        .expect("client");
    let r = raw
        .post(format!("{}/v1/messages", h.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("accept-encoding", "gzip")
        .json(&body("compress me"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    let bytes = r.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("gzip");
    let m: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(m["type"], "message");

    // reqwest's own decoders (gzip, br, zstd all advertised) round-trip transparently.
    let m: Value = message(&h, KEY, &body("decode me"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(m["type"], "message");
    for enc in ["br", "zstd"] {
        let r = raw
            .post(format!("{}/v1/messages", h.base_url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .header("accept-encoding", enc)
            .json(&body("x"))
            .send()
            .await
            .expect("request");
        assert_eq!(header(&r, "content-encoding"), Some(enc));
    }

    let r = raw
        .post(format!("{}/v1/messages", h.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("accept-encoding", "gzip, br, zstd")
        .json(&streaming(body("stream")))
        .send()
        .await
        .expect("request");
    assert!(header(&r, "content-encoding").is_none());
    let events = parse_sse(&r.text().await.expect("plain SSE"));
    assert_eq!(names(&events).last(), Some(&"message_stop"));
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let h = start().await;
    let b = body("record me");
    let sent = serde_json::to_vec(&b).expect("json").len();
    client()
        .post(format!("{}/v1/messages?beta=true", h.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "claude-code-20250219")
        .header("X-Claude-Code-Session-Id", "abc")
        .json(&b)
        .send()
        .await
        .expect("request");
    client()
        .get(format!("{}/v1/models?limit=2", h.base_url()))
        .bearer_auth("sk-ant-oat01-tok")
        .header("anthropic-beta", "oauth-2025-04-20")
        .send()
        .await
        .expect("request");
    let reqs = h.sim.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.query.as_deref(), Some("beta=true"));
    assert_eq!(r.body_len, sent);
    assert_eq!(r.credential.as_deref(), Some(KEY));
    assert_eq!(r.header("x-claude-code-session-id"), Some("abc"));
    assert!(r.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| n == "anthropic-beta" && v == "claude-code-20250219"));
    let r = &reqs[1];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/v1/models"));
    assert_eq!(r.query.as_deref(), Some("limit=2"));
    assert_eq!(r.body_len, 0);
    assert_eq!(r.credential.as_deref(), Some("sk-ant-oat01-tok"));
    h.sim.clear_requests();
    assert!(h.sim.requests().is_empty());
    h.sim.set_recording(false);
    message(&h, KEY, &b).await;
    assert!(h.sim.requests().is_empty());
}

#[tokio::test]
async fn client_dropping_mid_stream_counts_as_cancelled() {
    let h = start().await;
    h.sim.set_stream_delay(Duration::from_millis(30));
    let mut r = message(&h, KEY, &streaming(body("slow stream"))).await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.expect("chunk").expect("some bytes");
    assert!(first.starts_with(b"event: message_start"));
    drop(r);
    let sim = h.sim.clone();
    assert!(wait_for(|| sim.cancelled_streams() == 1).await);
    assert_eq!(h.sim.completed_streams(), 0);

    // The delay applies between deltas: a short stream takes at least deltas × delay.
    let started = std::time::Instant::now();
    let (events, _) = raw_stream(&h, KEY, &body("timed")).await;
    let deltas = names(&events)
        .iter()
        .filter(|e| **e == "content_block_delta")
        .count() as u32;
    assert!(started.elapsed() >= Duration::from_millis(30) * deltas);
    assert_eq!(h.sim.completed_streams(), 1);
    assert_eq!(h.sim.cancelled_streams(), 1);
}

#[tokio::test]
async fn invalid_requests_get_anthropic_errors() {
    let h = start().await;
    let url = format!("{}/v1/messages", h.base_url());
    let err = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        assert!(is_request_id(header(&r, "request-id").unwrap_or("")));
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["type"], "error");
        assert!(is_request_id(e["request_id"].as_str().unwrap_or("")));
        (
            status,
            e["error"]["type"].as_str().unwrap_or("").to_owned(),
            e["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    };

    let r = client()
        .post(&url)
        .json(&body("x"))
        .send()
        .await
        .expect("r");
    assert_eq!(err(r).await.0, 401);
    for bad in ["not-a-key", "sk-ant-oat01-in-the-wrong-header"] {
        let r = client()
            .post(&url)
            .header("x-api-key", bad)
            .header("anthropic-version", "2023-06-01")
            .json(&body("x"))
            .send()
            .await
            .expect("r");
        assert_eq!(err(r).await.1, "authentication_error");
    }
    let r = client()
        .post(&url)
        .header("x-api-key", KEY)
        .json(&body("x"))
        .send()
        .await
        .expect("r");
    let (status, kind, msg) = err(r).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(msg.contains("anthropic-version"));

    let r = client()
        .post(&url)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("r");
    assert_eq!(err(r).await.0, 400);

    for field in ["model", "max_tokens", "messages"] {
        let mut b = body("x");
        b.as_object_mut().map(|o| o.remove(field));
        let (status, kind, msg) = err(message(&h, KEY, &b).await).await;
        assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
        assert!(msg.starts_with(field), "{msg}");
    }
    let mut b = body("x");
    b["model"] = json!("gpt-4o");
    let (status, kind, msg) = err(message(&h, KEY, &b).await).await;
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));
    assert_eq!(msg, "model: gpt-4o");

    let r = client()
        .get(format!("{}/v1/nope", h.base_url()))
        .send()
        .await
        .expect("r");
    assert_eq!(err(r).await.0, 404);

    // Roles other than user/assistant are accepted (mid-conversation system turns).
    let mut b = body("x");
    b["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]);
    assert_eq!(message(&h, KEY, &b).await.status(), 200);
}

#[tokio::test]
async fn router_serves_in_process() {
    use tower::ServiceExt;
    let sim = SimUpstream::new();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/messages/count_tokens")
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body("count").to_string()))
        .expect("request");
    let resp = sim.router().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert!(v["input_tokens"].as_u64().unwrap_or(0) > 3);
    assert_eq!(sim.requests().len(), 1);
}
