//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: request validation as the real
//! API does it, fault dispatch, and the deterministic reply (text that echoes the last user
//! message, or a `tool_use` block when the request forces a tool).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::cache::Prompt;
use super::faults::Fault;
use super::stream::{self, StreamPlan};
use super::wire::{self, ApiError, Credential};
use super::{Ctx, RateInfo, ReqMeta};

/// Natural replies are about this long, so tests see real multi-delta streams.
const ECHO_WORDS: usize = 8;
const MAX_ECHO_WORD_CHARS: usize = 24;
/// Size of the `partial_json` pieces a tool input is streamed in.
const JSON_PIECE_CHARS: usize = 12;

fn with_rate(mut resp: Response, rate: RateInfo) -> Response {
    resp.extensions_mut().insert(rate);
    resp
}

fn rate(credential: &Credential, input: u64, output: u64, limited: bool) -> RateInfo {
    RateInfo {
        credential: credential.clone(),
        input_tokens: input,
        output_tokens: output,
        limited,
    }
}

fn bad_request(message: &str, request_id: &str) -> Response {
    wire::error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        request_id,
    )
}

/// What every `/v1/messages*` request goes through before its own work: authentication,
/// the version header, JSON parsing and fault injection.
enum Preflight {
    Ready {
        credential: Credential,
        body: Value,
        /// A streaming fault to play out in the SSE body.
        stream_fault: Option<Fault>,
    },
    Done(Response),
}

async fn preflight(ctx: &Ctx, headers: &HeaderMap, body: &[u8], request_id: &str) -> Preflight {
    let credential = match wire::authenticate(headers) {
        Ok(c) => c,
        Err(e) => return Preflight::Done(e.render(request_id)),
    };
    let healthy = |resp| Preflight::Done(with_rate(resp, rate(&credential, 0, 0, false)));
    if !headers.contains_key("anthropic-version") {
        return healthy(bad_request(
            "anthropic-version: header is required",
            request_id,
        ));
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return healthy(bad_request(
                &format!("There was an error parsing the body: {e}"),
                request_id,
            ))
        }
    };
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let mut stream_fault = None;
    if let Some(fault) = ctx.inner.faults.take(&credential.value, streaming) {
        if let Some(resp) = fault.http_response(credential.kind, request_id) {
            let limited = matches!(fault, Fault::RateLimited { .. });
            return Preflight::Done(with_rate(resp, rate(&credential, 0, 0, limited)));
        }
        if fault == Fault::Hang {
            return Preflight::Done(hang(ctx, request_id).await);
        }
        stream_fault = Some(fault);
    }
    Preflight::Ready {
        credential,
        body,
        stream_fault,
    }
}

/// Never answers; only a shutdown of the serving [`super::SimHandle`] ends it (a client
/// that goes away drops this future).
pub(crate) async fn hang(ctx: &Ctx, request_id: &str) -> Response {
    ctx.shutdown_requested().await;
    wire::error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "The simulated upstream is shutting down.",
        request_id,
    )
}

/// Checks required fields the way the real API reports them; returns (model, max_tokens).
fn validate(body: &Value, need_max_tokens: bool) -> Result<(String, u64), ApiError> {
    let bad = |m: &str| Err(ApiError::invalid_request(m));
    if !body.is_object() {
        return bad("Input should be a valid dictionary");
    }
    let model = match body.get("model") {
        None | Some(Value::Null) => return bad("model: Field required"),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return bad("model: Input should be a valid string"),
    };
    let max_tokens = if need_max_tokens {
        match body.get("max_tokens") {
            None | Some(Value::Null) => return bad("max_tokens: Field required"),
            Some(v) => match v.as_u64() {
                Some(0) => return bad("max_tokens: Input should be greater than or equal to 1"),
                Some(n) => n,
                None => return bad("max_tokens: Input should be a valid integer"),
            },
        }
    } else {
        0
    };
    match body.get("messages") {
        None | Some(Value::Null) => return bad("messages: Field required"),
        Some(Value::Array(m)) if m.is_empty() => {
            return bad("messages: at least one message is required")
        }
        Some(Value::Array(_)) => {}
        Some(_) => return bad("messages: Input should be a valid list"),
    }
    if !model.starts_with("claude-") {
        return Err(ApiError::not_found(format!("model: {model}")));
    }
    Ok((model, max_tokens))
}

pub(crate) async fn create(
    State(ctx): State<Ctx>,
    Extension(meta): Extension<ReqMeta>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rid = meta.request_id.as_str();
    let (credential, body, stream_fault) = match preflight(&ctx, &headers, &body, rid).await {
        Preflight::Ready {
            credential,
            body,
            stream_fault,
        } => (credential, body, stream_fault),
        Preflight::Done(resp) => return resp,
    };
    let (model, max_tokens) = match validate(&body, true) {
        Ok(v) => v,
        Err(e) => return with_rate(e.render(rid), rate(&credential, 0, 0, false)),
    };
    let usage = ctx
        .inner
        .cache
        .account(&credential.value, &Prompt::parse(&body));
    let reply = Reply::build(&body, max_tokens);
    let output = reply.pieces.len() as u64;
    let info = rate(&credential, usage.input + usage.creation(), output, false);
    let message_id = wire::message_id();

    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let plan = StreamPlan {
            message_id,
            model,
            reply,
            usage,
            fault: stream_fault,
        };
        return with_rate(stream::sse_response(ctx, plan), info);
    }
    let message = json!({
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [reply.content_block()],
        "stop_reason": reply.stop_reason,
        "stop_sequence": null,
        "usage": usage.to_json(output),
    });
    with_rate(wire::json_response(StatusCode::OK, &message), info)
}

pub(crate) async fn count_tokens(
    State(ctx): State<Ctx>,
    Extension(meta): Extension<ReqMeta>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rid = meta.request_id.as_str();
    let (credential, body) = match preflight(&ctx, &headers, &body, rid).await {
        Preflight::Ready {
            credential, body, ..
        } => (credential, body),
        Preflight::Done(resp) => return resp,
    };
    let resp = match validate(&body, false) {
        Ok(_) => {
            let n = Prompt::parse(&body).total_tokens();
            wire::json_response(StatusCode::OK, &json!({ "input_tokens": n }))
        }
        Err(e) => e.render(rid),
    };
    with_rate(resp, rate(&credential, 0, 0, false))
}

/// The single content block of a reply.
pub(crate) enum ReplyBlock {
    Text,
    ToolUse { id: String, name: String },
}

/// A deterministic answer, pre-cut into the pieces a stream sends as deltas (one piece is
/// one output token).
pub(crate) struct Reply {
    pub(crate) block: ReplyBlock,
    pub(crate) pieces: Vec<String>,
    pub(crate) stop_reason: &'static str,
}

impl Reply {
    pub(crate) fn build(body: &Value, max_tokens: u64) -> Reply {
        if let Some((name, schema)) = forced_tool(body) {
            let input = sample_input(schema).to_string();
            // Tool input is never cut by max_tokens: a truncated JSON would be useless and
            // the inputs here are a handful of tokens.
            return Reply {
                block: ReplyBlock::ToolUse {
                    id: wire::tool_use_id(),
                    name,
                },
                pieces: chunk_chars(&input, JSON_PIECE_CHARS),
                stop_reason: "tool_use",
            };
        }
        let echo = last_user_words(body);
        let said = if echo.is_empty() {
            "your request".to_owned()
        } else {
            format!("\"{}\"", echo.join(" "))
        };
        let text = format!(
            "Simulated reply to {said}: the relay forwarded this answer from a simulated upstream, one word at a time."
        );
        let mut pieces: Vec<String> = text
            .split(' ')
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_owned()
                } else {
                    format!(" {w}")
                }
            })
            .collect();
        let limit = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        let stop_reason = if pieces.len() > limit {
            pieces.truncate(limit);
            "max_tokens"
        } else {
            "end_turn"
        };
        Reply {
            block: ReplyBlock::Text,
            pieces,
            stop_reason,
        }
    }

    /// The full block of a non-streaming response.
    pub(crate) fn content_block(&self) -> Value {
        let joined = self.pieces.concat();
        match &self.block {
            ReplyBlock::Text => json!({"type": "text", "text": joined}),
            ReplyBlock::ToolUse { id, name } => {
                let input: Value = serde_json::from_str(&joined).unwrap_or_else(|_| json!({}));
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }
}

/// The tool a request forces (`tool_choice` `tool` or `any`), with its input schema.
fn forced_tool(body: &Value) -> Option<(String, Option<&Value>)> {
    let tools = body.get("tools")?.as_array().filter(|t| !t.is_empty())?;
    let choice = body.get("tool_choice")?;
    let tool_name = |t: &Value| t.get("name").and_then(Value::as_str).map(str::to_owned);
    let name = match choice.get("type").and_then(Value::as_str)? {
        "tool" => choice
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| tools.first().and_then(tool_name))?,
        "any" => tools.first().and_then(tool_name)?,
        _ => return None,
    };
    let schema = tools
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name.as_str()))
        .and_then(|t| t.get("input_schema"));
    Some((name, schema))
}

/// A small input that satisfies simple schemas: required properties (else the first
/// three) with a value of their declared type.
fn sample_input(schema: Option<&Value>) -> Value {
    let mut input = serde_json::Map::new();
    let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return Value::Object(input);
    };
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let names: Vec<&str> = if required.is_empty() {
        props.keys().map(String::as_str).take(3).collect()
    } else {
        required
    };
    for name in names {
        let prop = props.get(name);
        let value = if let Some(first) = prop
            .and_then(|p| p.get("enum"))
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            first.clone()
        } else {
            match prop.and_then(|p| p.get("type")).and_then(Value::as_str) {
                Some("integer") | Some("number") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!("simulated"),
            }
        };
        input.insert(name.to_owned(), value);
    }
    Value::Object(input)
}

/// A few words of the last user turn's text, so replies differ per request.
fn last_user_words(body: &Value) -> Vec<String> {
    let Some(message) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
    else {
        return Vec::new();
    };
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    text.split_whitespace()
        .take(ECHO_WORDS)
        .map(|w| w.chars().take(MAX_ECHO_WORD_CHARS).collect())
        .collect()
}

fn chunk_chars(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reply_echoes_and_respects_max_tokens() {
        let body = json!({"messages": [{"role": "user", "content": "Say hi please"}]});
        let r = Reply::build(&body, 1000);
        assert_eq!(r.stop_reason, "end_turn");
        let text = r.pieces.concat();
        assert!(text.contains("\"Say hi please\""), "{text}");
        assert!(r.pieces.len() >= 15 && r.pieces.len() <= 35);
        let r = Reply::build(&body, 4);
        assert_eq!(r.pieces.len(), 4);
        assert_eq!(r.stop_reason, "max_tokens");
    }

    #[test]
    fn forced_tool_reply() {
        let body = json!({
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"]}}],
            "tool_choice": {"type": "any"},
        });
        let r = Reply::build(&body, 100);
        assert_eq!(r.stop_reason, "tool_use");
        let block = r.content_block();
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({"city": "simulated"}));
        let auto = json!({"messages": [], "tools": body["tools"], "tool_choice": {"type": "auto"}});
        assert_eq!(Reply::build(&auto, 100).stop_reason, "end_turn");
    }
}
