//! Unit tests of the stream converter: text and tool-call streams, byte
//! splits at every position, the usage chunk, errors and cut-off streams,
//! and the `ChunkStream` body adapter.

use super::*;
use futures::StreamExt;
use serde_json::{json, Value};

/// A real streamed answer (thinking, text, a tool call), as Anthropic sends it.
const TOOL_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":2048,\"cache_read_input_tokens\":10240,\"cache_creation\":{\"ephemeral_5m_input_tokens\":2048,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":3,\"service_tier\":\"standard\"}}}\n",
    "\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n",
    "\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants the weather.\"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxWf\"}}\n",
    "\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n",
    "\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check \\\"Paris\\\"\\n\"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"– météo ☀\"}}\n",
    "\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n",
    "\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n",
    "\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n",
    "\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"now\",\"input\":{}}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n",
    "\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":3}\n",
    "\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n",
    "\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n",
    "\n",
);

/// A plain text answer, as the captured SDK stream request would get.
const TEXT_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn ctx(include_usage: bool) -> ReplyContext {
    ReplyContext {
        model: "claude-sonnet-4-6".into(),
        created: 1_700_000_000,
        include_usage,
        json_tool: None,
    }
}

fn convert(ctx: ReplyContext, chunks: &[&[u8]]) -> String {
    let mut c = ChunkConverter::new(ctx);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&c.feed(chunk));
    }
    out.extend_from_slice(&c.finish());
    String::from_utf8(out).unwrap()
}

/// The `data:` payloads, each JSON or the literal `[DONE]`.
fn events(sse: &str) -> Vec<Value> {
    assert!(sse.ends_with("\n\n"), "{sse:?}");
    sse.split_terminator("\n\n")
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {e:?}"));
            if data == "[DONE]" {
                Value::String("[DONE]".into())
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

fn delta(ev: &Value) -> &Value {
    &ev["choices"][0]["delta"]
}

#[test]
fn text_stream_exact_output() {
    let out = convert(ctx(true), &[TEXT_STREAM.as_bytes()]);
    let head = r#"{"id":"chatcmpl-msg_1","object":"chat.completion.chunk","created":1700000000,"model":"claude-sonnet-4-6""#;
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {head},"choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
        ) + "\n\n"
    };
    let want = [
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Hi"}"#, "null"),
        chunk(r#"{"content":"!"}"#, "null"),
        chunk("{}", r#""stop""#),
        format!(r#"data: {head},"choices":[],"usage":{{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16,"prompt_tokens_details":{{"cached_tokens":0,"cache_write_tokens":0}}}}}}"#) + "\n\n",
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    assert_eq!(out, want);
}

#[test]
fn no_usage_chunk_unless_asked() {
    let evs = events(&convert(ctx(false), &[TEXT_STREAM.as_bytes()]));
    assert_eq!(evs.len(), 5);
    assert!(evs.iter().all(|e| e.get("usage").is_none()));
    assert_eq!(evs[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(evs[4], "[DONE]");
}

#[test]
fn tool_call_stream() {
    let evs = events(&convert(ctx(true), &[TOOL_STREAM.as_bytes()]));
    let model = "claude-sonnet-4-5-20250929";
    assert!(evs[..evs.len() - 1].iter().all(|e| e["model"] == model
        && e["id"] == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
        && e["object"] == "chat.completion.chunk"
        && e["created"] == 1_700_000_000));
    let deltas: Vec<&Value> = evs[..evs.len() - 2].iter().map(delta).collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"content": "Let me check \"Paris\"\n"}),
            &json!({"content": "– météo ☀"}),
            &json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\": "}}]}),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            &json!({"tool_calls": [{"index": 1, "id": "toolu_02", "type": "function", "function": {"name": "now", "arguments": ""}}]}),
            &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            &json!({}),
        ]
    );
    assert_eq!(
        evs[evs.len() - 3]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    let usage = &evs[evs.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 472 + 2048 + 10240, "completion_tokens": 89, "total_tokens": 472 + 2048 + 10240 + 89,
               "prompt_tokens_details": {"cached_tokens": 10240, "cache_write_tokens": 2048}})
    );
    assert_eq!(evs[evs.len() - 1], "[DONE]");
}

#[test]
fn split_at_every_byte_position_gives_the_same_output() {
    for stream in [TOOL_STREAM, TEXT_STREAM] {
        for body in [
            stream.to_owned(),
            stream.replace('\n', "\r\n"),
            stream.replace('\n', "\r"),
        ] {
            let bytes = body.as_bytes();
            let whole = convert(ctx(true), &[bytes]);
            assert_eq!(
                whole,
                convert(ctx(true), &[stream.as_bytes()]),
                "line ends do not matter"
            );
            for i in 0..=bytes.len() {
                assert_eq!(
                    convert(ctx(true), &[&bytes[..i], b"", &bytes[i..]]),
                    whole,
                    "split at {i}"
                );
            }
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(convert(ctx(true), &bytewise), whole);
        }
    }
}

#[test]
fn output_is_emitted_as_soon_as_each_event_completes() {
    let mut c = ChunkConverter::new(ctx(false));
    let cut = TEXT_STREAM.find("event: content_block_delta").unwrap();
    let first = c.feed(&TEXT_STREAM.as_bytes()[..cut]);
    assert_eq!(
        events(std::str::from_utf8(&first).unwrap()).len(),
        1,
        "role chunk only"
    );
    let half =
        c.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,");
    assert!(half.is_empty());
    let rest = c.feed(b"\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n");
    assert_eq!(
        delta(&events(std::str::from_utf8(&rest).unwrap())[0])["content"],
        "Hi"
    );
    assert!(!c.is_done());
}

#[test]
fn error_event_mid_stream() {
    let cut = TEXT_STREAM.find("event: content_block_stop").unwrap();
    let mut body = TEXT_STREAM[..cut].to_owned();
    body.push_str("event: error\ndata: {\"type\":\"error\",\"error\":{\"details\":null,\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
    // Anything after the error is ignored.
    body.push_str(&TEXT_STREAM[cut..]);
    let out = convert(ctx(true), &[body.as_bytes()]);
    let evs = events(&out);
    assert_eq!(evs.len(), 5, "{out}");
    assert_eq!(delta(&evs[2])["content"], "!");
    assert_eq!(
        evs[3],
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
    );
    assert_eq!(evs[4], "[DONE]");
}

#[test]
fn relay_trailer_error_and_malformed_error() {
    // The tap's own trailer when upstream breaks (relay/tap.rs sse_error_event).
    let trailer = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Upstream connection was interrupted\"}}\n\n";
    let cut = TEXT_STREAM.find("event: message_delta").unwrap();
    let out = convert(ctx(true), &[&TEXT_STREAM.as_bytes()[..cut], trailer]);
    let evs = events(&out);
    let err = &evs[evs.len() - 2]["error"];
    assert_eq!(
        (err["type"].as_str(), err["message"].as_str()),
        (
            Some("server_error"),
            Some("Upstream connection was interrupted")
        )
    );
    assert_eq!(evs[evs.len() - 1], "[DONE]");

    let out = convert(ctx(false), &[b"event: error\ndata: not json\n\n"]);
    let evs = events(&out);
    assert_eq!(evs[0]["error"]["type"], "server_error");
    assert_eq!(evs.len(), 2);
}

#[test]
fn cut_off_streams() {
    // Cut before message_delta: the answer is incomplete → error, [DONE].
    let cut = TEXT_STREAM.find("event: message_delta").unwrap();
    let evs = events(&convert(ctx(true), &[&TEXT_STREAM.as_bytes()[..cut]]));
    assert!(evs[evs.len() - 2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ended before"));
    assert_eq!(evs[evs.len() - 1], "[DONE]");

    // Cut after message_delta: finish and usage as normal.
    let cut = TEXT_STREAM.find("event: message_stop").unwrap();
    let whole = convert(ctx(true), &[TEXT_STREAM.as_bytes()]);
    assert_eq!(convert(ctx(true), &[&TEXT_STREAM.as_bytes()[..cut]]), whole);

    // Nothing at all.
    let evs = events(&convert(ctx(true), &[]));
    assert_eq!(evs.len(), 2);
    assert!(evs[0].get("error").is_some());
}

#[test]
fn finish_reason_length_and_refusal() {
    for (reason, want) in [
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("stop_sequence", "stop"),
    ] {
        let body = TEXT_STREAM.replace("\"end_turn\"", &format!("\"{reason}\""));
        let evs = events(&convert(ctx(false), &[body.as_bytes()]));
        assert_eq!(evs[evs.len() - 2]["choices"][0]["finish_reason"], want);
    }
}

#[test]
fn forced_json_tool_streams_as_content() {
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_j\",\"model\":\"claude-sonnet-4-6\",\"usage\":{\"input_tokens\":5}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"Sure: \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"here\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_j\",\"name\":\"person\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"name\\\":\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Ada\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let ctx = ReplyContext {
        json_tool: Some("person".into()),
        ..ctx(false)
    };
    let evs = events(&convert(ctx, &[body.as_bytes()]));
    let text: String = evs
        .iter()
        .filter_map(|e| delta(e)["content"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"name": "Ada"})
    );
    assert!(evs.iter().all(|e| delta(e).get("tool_calls").is_none()));
    assert_eq!(evs[evs.len() - 2]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn missing_message_start_still_well_formed() {
    let body = TEXT_STREAM.split_once("\n\n").unwrap().1;
    let evs = events(&convert(ctx(false), &[body.as_bytes()]));
    assert_eq!(delta(&evs[0]), &json!({"role": "assistant", "content": ""}));
    assert_eq!(evs[0]["model"], "claude-sonnet-4-6");
    assert!(evs[0]["id"].as_str().unwrap().starts_with("chatcmpl-relay"));
    let ids: std::collections::HashSet<&str> = evs[..evs.len() - 1]
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "one id for the whole stream");
}

#[tokio::test]
async fn chunk_stream_adapter_converts_and_drains_upstream() {
    let bytes = TOOL_STREAM.as_bytes();
    let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(37)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let n = pieces.len();
    let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = polled.clone();
    let upstream = futures::stream::iter(pieces).inspect(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let out: Vec<Bytes> = ChunkStream::new(upstream, ctx(true))
        .map(Result::unwrap)
        .collect()
        .await;
    assert!(out.iter().all(|b| !b.is_empty()));
    assert_eq!(out.concat(), convert(ctx(true), &[bytes]).into_bytes());
    assert_eq!(
        polled.load(std::sync::atomic::Ordering::Relaxed),
        n,
        "upstream read to its end"
    );

    // Upstream ends early: the adapter adds the error and [DONE] itself.
    let cut = TEXT_STREAM.find("event: content_block_stop").unwrap();
    let upstream =
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(&TEXT_STREAM[..cut]))]);
    let out: Vec<Bytes> = ChunkStream::new(upstream, ctx(false))
        .map(Result::unwrap)
        .collect()
        .await;
    let text = String::from_utf8(out.concat()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n") && text.contains("\"error\""));

    // An inner error passes through and ends the stream.
    let upstream = futures::stream::iter([
        Ok(Bytes::from_static(b"event: ping\ndata: {}\n\n")),
        Err(std::io::Error::other("boom")),
        Ok(Bytes::from_static(b"never read")),
    ]);
    let items: Vec<Result<Bytes, std::io::Error>> =
        ChunkStream::new(upstream, ctx(false)).collect().await;
    assert_eq!(items.len(), 1);
    assert!(items[0].is_err());
}
