//! OpenAI Chat Completions request body → Anthropic Messages request body.
//! Pure: reads bytes, returns bytes and the flags the relay routes on; it
//! fetches nothing (remote image URLs are listed for the caller, see
//! [`Translated::attach_images`]).
//!
//! The rules, and where Claude differs from OpenAI (the README repeats them):
//! - `system` and `developer` messages, wherever they appear, become the
//!   `system` blocks in their order; none is dropped or replaced. A JSON-mode
//!   instruction (below) is appended after them.
//! - `user`/`assistant`/`tool` messages become turns; consecutive turns of
//!   one role are merged (Anthropic requires alternation), `tool` results
//!   become `tool_result` blocks of a user turn and are moved before any
//!   text of that turn (Anthropic requires them first). Empty messages are
//!   dropped.
//! - Images: base64 `data:` URLs become image blocks (jpeg/png/gif/webp);
//!   http(s) URLs are a 400 unless `fetch_images` is on. PDF `file_data`
//!   becomes a document block. Audio, `file_id` and other parts are a 400.
//! - `max_completion_tokens`, else `max_tokens`, else
//!   [`DEFAULT_MAX_TOKENS`] (4096; Anthropic requires a value, OpenAI does
//!   not).
//! - `temperature`: OpenAI allows 0–2, Claude 0–1. Values above 1 are
//!   clamped to 1 (not scaled: 0.7 means the same on both), values outside
//!   0–2 are a 400 as on OpenAI. `top_p` ≥ 1 is OpenAI's no-op default and
//!   is dropped, because recent Claude models refuse `temperature` together
//!   with `top_p`; other values are forwarded.
//! - `stop` (string or list) → `stop_sequences` (empty strings dropped).
//! - `tools` (functions) → tools with `input_schema`; `tool_choice` auto /
//!   none / required (→ any) / a named function (→ tool) / `allowed_tools`
//!   (tools filtered, mode auto or required); `parallel_tool_calls: false`
//!   → `disable_parallel_tool_use`. Assistant `tool_calls` → `tool_use`
//!   blocks (arguments parsed; empty means `{}`). Tool call ids are kept, with
//!   characters Anthropic refuses replaced by `_` (the same way on both
//!   sides, so ids still pair up).
//! - `response_format`: `json_object` → a system instruction to answer with
//!   one JSON object only. `json_schema` without client tools → a forced tool
//!   whose `input_schema` is the schema (Claude then fills the schema
//!   reliably); its input comes back as the message text. With client tools
//!   (or a non-object schema) → a system instruction carrying the schema.
//! - `user` (or `safety_identifier`) → `metadata.user_id`.
//! - A 400 for what would change the answer if ignored: `n` ≠ 1, `logprobs`,
//!   `top_logprobs`, audio output, non-empty `logit_bias`,
//!   `web_search_options`, the legacy `functions`/`function_call`, custom
//!   tools. Ignored as harmless: `frequency_penalty`, `presence_penalty`,
//!   `seed`, `service_tier`, `store`, `metadata`, `prediction`,
//!   `reasoning_effort`, `verbosity`, `prompt_cache_*`, message `name`s and
//!   every unknown field.
//! - Model names pass through untouched; the relay maps and validates them.

mod messages;
mod tools;
mod wire;

use super::error::OpenAiError;
use super::ReplyContext;
use base64::Engine;
use bytes::Bytes;
use messages::{image_media_type, Conversation};
use serde_json::{json, Value};
use tools::{translate_tools, ToolPlan};
use wire::{AnthropicRequest, ChatRequest, Metadata, Stop};

/// `max_tokens` when the client sets neither `max_tokens` nor
/// `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateOptions {
    /// Accept http(s) image URLs (listed in [`Translated::remote_images`] for
    /// the caller to fetch under the outbound-fetch rules). Off: a 400.
    pub fetch_images: bool,
    /// `max_tokens` when the request names none.
    pub default_max_tokens: u64,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            fetch_images: false,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

/// A translated request.
#[derive(Clone, Debug)]
pub struct Translated {
    /// The Anthropic Messages request JSON. While [`Self::remote_images`] is
    /// not empty it holds `{"type":"url"}` image sources in their place.
    pub body: Bytes,
    /// The requested model, as sent.
    pub model: String,
    pub stream: bool,
    /// `stream` and `stream_options.include_usage`.
    pub include_usage: bool,
    /// http(s) image URLs to fetch, in body order (only with `fetch_images`).
    pub remote_images: Vec<String>,
    /// For the response or stream converter.
    pub reply: ReplyContext,
}

/// An image the caller fetched for one of [`Translated::remote_images`].
#[derive(Clone, Debug)]
pub struct FetchedImage {
    /// The response's `content-type` (parameters are ignored).
    pub media_type: String,
    pub data: Bytes,
}

impl Translated {
    /// Puts fetched images (one per [`Self::remote_images`] entry, same order)
    /// into the body as base64 image blocks. A type Claude does not read is
    /// a 400 naming the URL.
    pub fn attach_images(&mut self, images: &[FetchedImage]) -> Result<(), OpenAiError> {
        if images.len() != self.remote_images.len() {
            return Err(OpenAiError::invalid_request(
                None,
                "internal: fetched image count does not match the request",
            ));
        }
        if images.is_empty() {
            return Ok(());
        }
        let mut body: Value = serde_json::from_slice(&self.body)
            .map_err(|_| OpenAiError::invalid_request(None, "internal: body is not JSON"))?;
        let mut next = images.iter().zip(&self.remote_images);
        let messages = body.get_mut("messages").and_then(Value::as_array_mut);
        for turn in messages.into_iter().flatten() {
            let blocks = turn.get_mut("content").and_then(Value::as_array_mut);
            for block in blocks.into_iter().flatten() {
                let nested = block.get_mut("content").and_then(Value::as_array_mut);
                let inner: Vec<&mut Value> = match nested {
                    Some(inner) => inner.iter_mut().collect(),
                    None => vec![block],
                };
                for block in inner {
                    let is_url =
                        block.pointer("/source/type").and_then(Value::as_str) == Some("url");
                    if block.get("type").and_then(Value::as_str) != Some("image") || !is_url {
                        continue;
                    }
                    let Some((image, url)) = next.next() else {
                        break;
                    };
                    let media_type = image_media_type(&image.media_type).ok_or_else(|| {
                        OpenAiError::invalid_request(
                            None,
                            format!("The image at {url} is not a JPEG, PNG, GIF or WebP image"),
                        )
                    })?;
                    block["source"] = json!({
                        "type": "base64",
                        "media_type": media_type,
                        "data": base64::engine::general_purpose::STANDARD.encode(&image.data),
                    });
                }
            }
        }
        self.body = Bytes::from(
            serde_json::to_vec(&body)
                .map_err(|_| OpenAiError::invalid_request(None, "internal: cannot serialise"))?,
        );
        self.remote_images.clear();
        Ok(())
    }
}

/// Translates an OpenAI Chat Completions body into an Anthropic Messages body.
pub fn to_anthropic(body: &[u8], opts: &TranslateOptions) -> Result<Translated, OpenAiError> {
    let req: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| OpenAiError::invalid_request(None, format!("Invalid request body: {e}")))?;
    reject_unsupported(&req)?;
    let model = match &req.model {
        Some(m) if !m.is_empty() => m.clone(),
        _ => return Err(required("model")),
    };
    let messages = req.messages.ok_or_else(|| required("messages"))?;
    if messages.is_empty() {
        return Err(OpenAiError::invalid_request(
            Some("messages".into()),
            "messages must contain at least one message",
        ));
    }
    let mut conv = Conversation::default();
    for (i, message) in messages.into_iter().enumerate() {
        conv.add(i, message, opts)?;
    }
    if conv.turns.is_empty() {
        return Err(OpenAiError::invalid_request(
            Some("messages".into()),
            "messages must contain at least one user or assistant message with content",
        ));
    }
    conv.tool_results_first();

    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(opts.default_max_tokens);
    if max_tokens == 0 {
        let param = if req.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(OpenAiError::invalid_request(
            Some(param.into()),
            format!("{param} must be at least 1"),
        ));
    }
    let temperature = match req.temperature {
        Some(t) if !(0.0..=2.0).contains(&t) => {
            return Err(OpenAiError::invalid_request(
                Some("temperature".into()),
                "temperature must be between 0 and 2",
            ))
        }
        t => t.map(|t| t.min(1.0)),
    };
    let top_p = match req.top_p {
        Some(p) if !(0.0..=1.0).contains(&p) => {
            return Err(OpenAiError::invalid_request(
                Some("top_p".into()),
                "top_p must be between 0 and 1",
            ))
        }
        p => p.filter(|p| *p < 1.0),
    };
    let stop_sequences = match req.stop {
        Stop::Absent => Vec::new(),
        Stop::One(s) => vec![s],
        Stop::Many(v) => v,
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();

    let stream = req.stream.unwrap_or(false);
    let include_usage = stream && req.stream_options.and_then(|o| o.include_usage) == Some(true);

    let tools = translate_tools(req.tools.unwrap_or_default())?;
    let mut plan = ToolPlan::new(tools, req.tool_choice.as_ref(), req.parallel_tool_calls)?;
    let json_tool = plan.apply_response_format(req.response_format.as_ref(), &mut conv.system)?;

    let user_id = req.user.or(req.safety_identifier).filter(|u| !u.is_empty());
    let out = AnthropicRequest {
        model: &model,
        max_tokens,
        system: conv.system,
        messages: conv.turns,
        temperature,
        top_p,
        stop_sequences,
        stream,
        tools: plan.tools,
        tool_choice: plan.choice,
        metadata: user_id.map(|user_id| Metadata { user_id }),
    };
    let body = serde_json::to_vec(&out)
        .map_err(|e| OpenAiError::invalid_request(None, format!("Cannot encode request: {e}")))?;
    let model = model.into_owned();
    Ok(Translated {
        body: Bytes::from(body),
        stream,
        include_usage,
        remote_images: conv.remote_images,
        reply: ReplyContext {
            include_usage,
            json_tool,
            ..ReplyContext::new(model.clone())
        },
        model,
    })
}

pub(super) fn required(field: &str) -> OpenAiError {
    OpenAiError::invalid_request(Some(field.into()), format!("{field}: Field required"))
}

/// The 400s for fields whose meaning would be lost if ignored.
fn reject_unsupported(req: &ChatRequest) -> Result<(), OpenAiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(OpenAiError::unsupported_value(
            "n".into(),
            "Only n=1 is supported: Claude returns one choice per request",
        ));
    }
    if req.logprobs == Some(true) || req.top_logprobs.is_some_and(|k| k > 0) {
        let param = if req.logprobs == Some(true) {
            "logprobs"
        } else {
            "top_logprobs"
        };
        return Err(OpenAiError::unsupported_parameter(
            param,
            "Log probabilities are not available from Claude",
        ));
    }
    let audio_out = req.modalities.iter().flatten().any(|m| m == "audio");
    if req.audio.is_some() || audio_out {
        let param = if req.audio.is_some() {
            "audio"
        } else {
            "modalities"
        };
        return Err(OpenAiError::unsupported_parameter(
            param,
            "Audio output is not available from Claude",
        ));
    }
    if req
        .logit_bias
        .as_ref()
        .is_some_and(|b| b.as_object().is_none_or(|o| !o.is_empty()))
    {
        return Err(OpenAiError::unsupported_parameter(
            "logit_bias",
            "logit_bias is not supported by Claude",
        ));
    }
    if req.web_search_options.is_some() {
        return Err(OpenAiError::unsupported_parameter(
            "web_search_options",
            "web_search_options is not supported on this endpoint",
        ));
    }
    for (field, set) in [
        ("functions", req.functions.is_some()),
        ("function_call", req.function_call.is_some()),
    ] {
        if set {
            return Err(OpenAiError::unsupported_parameter(
                field,
                "The deprecated functions API is not supported; use tools and tool_choice",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
