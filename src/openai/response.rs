//! Anthropic Message JSON (a non-streaming 200) → OpenAI `chat.completion`.
//! Also owns what the stream converter shares with it: the `finish_reason`
//! mapping and the usage object.
//!
//! - `content`: the text blocks joined (Claude splits one answer into several
//!   blocks around citations), `null` when there is none. Thinking blocks and
//!   server-tool blocks are not part of an OpenAI message and are left out.
//! - `tool_calls`: one per `tool_use` block, arguments as a JSON string
//!   (`"{}"` for no arguments). Under a forced JSON tool (see
//!   [`ReplyContext::json_tool`]) its input is the `content` instead.
//! - `usage`: `prompt_tokens` = input + cache writes + cache reads (what the
//!   prompt cost in tokens, as OpenAI counts cached tokens inside it),
//!   `prompt_tokens_details.cached_tokens` = cache reads and
//!   `cache_write_tokens` = cache writes.

use super::error::OpenAiError;
use super::{completion_id, ReplyContext};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// Translates a non-streaming Anthropic Message body. A body that is not a
/// Message is a 502: the relay should only pass 200 answers here.
pub fn to_chat_completion(body: &[u8], ctx: &ReplyContext) -> Result<Bytes, OpenAiError> {
    let msg: Message =
        serde_json::from_slice(body).map_err(|_| OpenAiError::bad_upstream_response())?;
    if msg.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(OpenAiError::bad_upstream_response());
    }
    let Some(content) = msg.content else {
        return Err(OpenAiError::bad_upstream_response());
    };
    let json_tool = ctx.json_tool.as_deref();
    let mut text = String::new();
    let mut json_answer: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in content {
        match &*block.kind {
            "text" if json_tool.is_none() => text.push_str(block.text.as_deref().unwrap_or("")),
            "tool_use" => {
                let name = block.name.unwrap_or_default();
                let input = block.input.unwrap_or(Value::Object(Default::default()));
                let arguments = serde_json::to_string(&input).unwrap_or_else(|_| "{}".into());
                if json_tool == Some(&*name) {
                    json_answer.get_or_insert(arguments);
                } else {
                    tool_calls.push(ToolCallOut {
                        id: block.id.unwrap_or_default(),
                        kind: "function",
                        function: FunctionOut { name, arguments },
                    });
                }
            }
            _ => {}
        }
    }
    let content = match json_answer {
        Some(answer) => Some(answer),
        None if text.is_empty() => None,
        None => Some(text),
    };
    let usage = msg.usage.unwrap_or_default();
    let out = ChatCompletion {
        id: completion_id(msg.id.as_deref()),
        object: "chat.completion",
        created: ctx.created,
        model: msg.model.as_deref().unwrap_or(&ctx.model),
        choices: [Choice {
            index: 0,
            message: ChatMessage {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish_reason(msg.stop_reason.as_deref(), json_tool.is_some()),
        }],
        usage: usage.to_openai(),
    };
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|_| OpenAiError::bad_upstream_response())
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`. A forced JSON tool's
/// `tool_use` is an ordinary stop. `pause_turn` (a server tool paused the
/// turn) has no OpenAI counterpart; `stop` is the least surprising.
pub(super) fn finish_reason(stop_reason: Option<&str>, json_mode: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") if !json_mode => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's usage object; every field may be absent.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(super) struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Lays the counts present in `newer` over these (a stream's
    /// `message_delta` repeats or updates what `message_start` said).
    pub(super) fn merge(&mut self, newer: &Usage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    pub(super) fn to_openai(self) -> UsageOut {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens.unwrap_or(0) + cache_write + cache_read;
        let completion = self.output_tokens.unwrap_or(0);
        UsageOut {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: cache_read,
                cache_write_tokens: cache_write,
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    input: Option<Value>,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: UsageOut,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: ChatMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: Cow<'a, str>,
    arguments: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ReplyContext {
        ReplyContext {
            model: "claude-sonnet-4-6".into(),
            created: 1_700_000_000,
            include_usage: false,
            json_tool: None,
        }
    }

    fn convert(body: Value, ctx: &ReplyContext) -> Value {
        let out = to_chat_completion(body.to_string().as_bytes(), ctx).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn text_answer_with_cache_usage() {
        let v = convert(
            json!({
                "id": "msg_01ABC", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-6-20260101",
                "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}
            }),
            &ctx(),
        );
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-msg_01ABC", "object": "chat.completion", "created": 1_700_000_000,
                "model": "claude-sonnet-4-6-20260101",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1110, "completion_tokens": 5, "total_tokens": 1115,
                          "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 100}}
            })
        );
    }

    #[test]
    fn tool_calls_with_json_string_arguments() {
        let v = convert(
            json!({
                "id": "msg_1", "type": "message", "model": "m",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 3, "output_tokens": 4}
            }),
            &ctx(),
        );
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Checking.");
        assert_eq!(
            m["tool_calls"],
            json!([
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}
            ])
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    }

    #[test]
    fn tool_only_answer_has_null_content() {
        let v = convert(
            json!({"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"}),
            &ctx(),
        );
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["model"], "claude-sonnet-4-6",
            "the requested model when upstream names none"
        );
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["usage"]["total_tokens"], 0);
    }

    #[test]
    fn finish_reasons() {
        for (stop, want) in [
            (json!("end_turn"), "stop"),
            (json!("stop_sequence"), "stop"),
            (json!("max_tokens"), "length"),
            (json!("model_context_window_exceeded"), "length"),
            (json!("tool_use"), "tool_calls"),
            (json!("refusal"), "content_filter"),
            (json!("pause_turn"), "stop"),
            (Value::Null, "stop"),
        ] {
            let v = convert(
                json!({"type": "message", "content": [{"type": "text", "text": "x"}], "stop_reason": stop}),
                &ctx(),
            );
            assert_eq!(v["choices"][0]["finish_reason"], want, "{stop}");
        }
    }

    #[test]
    fn forced_json_tool_becomes_content() {
        let ctx = ReplyContext {
            json_tool: Some("person".into()),
            ..ctx()
        };
        let v = convert(
            json!({"type": "message", "content": [
                {"type": "text", "text": "ignored preamble"},
                {"type": "tool_use", "id": "toolu_9", "name": "person", "input": {"name": "Ada", "age": 36}}
            ], "stop_reason": "tool_use"}),
            &ctx,
        );
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "stop");
        assert!(c["message"].get("tool_calls").is_none());
        let answer: Value =
            serde_json::from_str(c["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(answer, json!({"name": "Ada", "age": 36}));
    }

    #[test]
    fn not_a_message_is_502() {
        for body in [
            &br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#[..],
            b"not json",
            b"{}",
        ] {
            let e = to_chat_completion(body, &ctx()).unwrap_err();
            assert_eq!(e.status(), 502);
            assert_eq!(e.error_type(), "server_error");
        }
    }
}
