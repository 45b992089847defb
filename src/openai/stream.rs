//! Anthropic SSE → OpenAI `chat.completion.chunk` SSE, incrementally: fed
//! raw upstream bytes split anywhere, it emits each OpenAI chunk as soon as
//! the Anthropic event behind it is complete, and holds nothing but the
//! event being read.
//!
//! What the client sees, in order:
//! 1. a role chunk (`delta: {"role":"assistant","content":""}`) at `message_start`;
//! 2. `content` deltas for text; for each tool call a first chunk with
//!    `index`, `id`, `type` and `name` (arguments `""`), then its arguments
//!    as they arrive (a call whose arguments never arrive gets `"{}"`, so
//!    clients that parse them do not choke on `""`);
//! 3. at `message_stop`, a chunk with empty `delta` and the `finish_reason`;
//! 4. with `include_usage`, a chunk with `choices: []` and `usage`;
//! 5. `data: [DONE]`.
//!
//! An Anthropic `event: error` (upstream's or the relay's own trailer)
//! becomes `data: {"error":{…}}` and `[DONE]`; so does a stream that ends
//! before its `message_delta`. Thinking, signatures and server-tool blocks
//! have no OpenAI form and are skipped.
//!
//! Chunks are written straight into a byte buffer around a prefix made once
//! (`{"id":…,"object":…,"created":…,"model":…`); only the event data is
//! parsed, with borrowed strings.

use super::error::OpenAiError;
use super::events::SseReader;
use super::response::{finish_reason, Usage};
use super::{completion_id, ReplyContext};
use bytes::Bytes;
use futures::Stream;
use http::StatusCode;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

const DONE: &[u8] = b"data: [DONE]\n\n";

/// The converter for one stream.
#[derive(Debug)]
pub struct ChunkConverter {
    reader: SseReader,
    state: State,
}

impl ChunkConverter {
    pub fn new(ctx: ReplyContext) -> Self {
        ChunkConverter {
            reader: SseReader::default(),
            state: State {
                ctx,
                head: Vec::new(),
                started: false,
                done: false,
                block: None,
                tools: 0,
                stop_reason: None,
                usage: Usage::default(),
            },
        }
    }

    /// Feeds the next upstream chunk; returns the OpenAI bytes it completes
    /// (often empty, e.g. for a `ping` or half an event).
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = Vec::new();
        let state = &mut self.state;
        self.reader
            .feed(chunk, |name, data| state.on_event(name, data, &mut out));
        Bytes::from(out)
    }

    /// The upstream stream ended: whatever is still owed (the ending, or an
    /// error if the answer was cut off). Empty once `[DONE]` was sent.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        self.state.finish(&mut out);
        Bytes::from(out)
    }

    /// `[DONE]` was emitted; further input is ignored.
    pub fn is_done(&self) -> bool {
        self.state.done
    }
}

#[derive(Debug)]
struct State {
    ctx: ReplyContext,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…` (no closing brace).
    head: Vec<u8>,
    /// The role chunk was sent.
    started: bool,
    /// `[DONE]` was sent.
    done: bool,
    /// The content block being streamed (Anthropic streams one at a time).
    block: Option<(u64, Block)>,
    /// Tool calls seen so far (the next call's OpenAI `index`).
    tools: u32,
    stop_reason: Option<String>,
    usage: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool {
        index: u32,
        has_arguments: bool,
    },
    /// The forced JSON tool of `response_format: json_schema`: its input is text.
    JsonAnswer {
        has_text: bool,
    },
    Other,
}

impl State {
    fn on_event(&mut self, name: &[u8], data: &[u8], out: &mut Vec<u8>) {
        if self.done || name == b"ping" {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<Event>(data) else {
            if name == b"error" {
                self.fail(
                    "api_error",
                    "The upstream stream sent a malformed error",
                    out,
                );
            }
            return;
        };
        // The data's `type` is authoritative; the event name stands in for it.
        let kind = match ev.kind.as_deref() {
            Some(k) => k,
            None => std::str::from_utf8(name).unwrap_or(""),
        };
        match kind {
            "message_start" => {
                if let Some(msg) = &ev.message {
                    if self.head.is_empty() {
                        self.make_head(msg.id.as_deref(), msg.model.as_deref());
                    }
                    if let Some(u) = &msg.usage {
                        self.usage.merge(u);
                    }
                }
                self.start(out);
            }
            "content_block_start" => {
                self.start(out);
                let index = ev.index.unwrap_or(0);
                let Some(cb) = &ev.content_block else { return };
                let block = match &*cb.kind {
                    "text" => {
                        let text = cb.text.as_deref().filter(|t| !t.is_empty());
                        if let Some(t) = text.filter(|_| self.ctx.json_tool.is_none()) {
                            self.content(t, out);
                        }
                        Block::Text
                    }
                    "tool_use" => {
                        let name = cb.name.as_deref().unwrap_or("");
                        if self.ctx.json_tool.as_deref() == Some(name) {
                            Block::JsonAnswer { has_text: false }
                        } else {
                            let index = self.tools;
                            self.tools += 1;
                            self.tool_start(index, cb.id.as_deref().unwrap_or(""), name, out);
                            Block::Tool {
                                index,
                                has_arguments: false,
                            }
                        }
                    }
                    _ => Block::Other,
                };
                self.block = Some((index, block));
            }
            "content_block_delta" => {
                let Some(delta) = &ev.delta else { return };
                let block = match &mut self.block {
                    Some((i, b)) if Some(*i) == ev.index || ev.index.is_none() => b,
                    _ => return,
                };
                match (delta.kind.as_deref(), block) {
                    (Some("text_delta"), Block::Text) if self.ctx.json_tool.is_none() => {
                        if let Some(t) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                            self.content(t, out);
                        }
                    }
                    (
                        Some("input_json_delta"),
                        Block::Tool {
                            index,
                            has_arguments,
                        },
                    ) => {
                        if let Some(p) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            *has_arguments = true;
                            let index = *index;
                            self.tool_arguments(index, p, out);
                        }
                    }
                    (Some("input_json_delta"), Block::JsonAnswer { has_text }) => {
                        if let Some(p) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            *has_text = true;
                            self.content(p, out);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => match self.block.take() {
                Some((
                    _,
                    Block::Tool {
                        index,
                        has_arguments: false,
                    },
                )) => self.tool_arguments(index, "{}", out),
                Some((_, Block::JsonAnswer { has_text: false })) => self.content("{}", out),
                _ => {}
            },
            "message_delta" => {
                if let Some(reason) = ev.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(u) = &ev.usage {
                    self.usage.merge(u);
                }
            }
            "message_stop" => self.end(out),
            "error" => {
                let (ty, message) = ev
                    .error
                    .as_ref()
                    .map(|e| {
                        (
                            e.kind.as_deref().unwrap_or("api_error"),
                            e.message.as_deref().unwrap_or(""),
                        )
                    })
                    .unwrap_or(("api_error", ""));
                let message = if message.is_empty() {
                    "The upstream stream failed"
                } else {
                    message
                };
                self.fail(ty, message, out);
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.stop_reason.is_some() {
            // Cut after `message_delta`: the answer is whole, only the last
            // event is missing.
            self.end(out);
        } else {
            self.fail(
                "api_error",
                "The upstream stream ended before the answer was complete",
                out,
            );
        }
    }

    fn make_head(&mut self, message_id: Option<&str>, model: Option<&str>) {
        let model = model.filter(|m| !m.is_empty()).unwrap_or(&self.ctx.model);
        let mut head = Vec::with_capacity(128 + model.len());
        head.extend_from_slice(b"{\"id\":");
        push_json_str(&mut head, &completion_id(message_id));
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        let _ = write!(head, "{}", self.ctx.created);
        head.extend_from_slice(b",\"model\":");
        push_json_str(&mut head, model);
        self.head = head;
    }

    /// The role chunk, once, before anything else.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.chunk(
            out,
            |o| o.extend_from_slice(br#"{"role":"assistant","content":""}"#),
            None,
        );
    }

    fn content(&mut self, text: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.chunk(
            out,
            |o| {
                o.extend_from_slice(br#"{"content":"#);
                push_json_str(o, text);
                o.push(b'}');
            },
            None,
        );
    }

    fn tool_start(&mut self, index: u32, id: &str, name: &str, out: &mut Vec<u8>) {
        self.chunk(
            out,
            |o| {
                let _ = write!(o, r#"{{"tool_calls":[{{"index":{index},"id":"#);
                push_json_str(o, id);
                o.extend_from_slice(br#","type":"function","function":{"name":"#);
                push_json_str(o, name);
                o.extend_from_slice(br#","arguments":""}}]}"#);
            },
            None,
        );
    }

    fn tool_arguments(&mut self, index: u32, arguments: &str, out: &mut Vec<u8>) {
        self.chunk(
            out,
            |o| {
                let _ = write!(
                    o,
                    r#"{{"tool_calls":[{{"index":{index},"function":{{"arguments":"#
                );
                push_json_str(o, arguments);
                o.extend_from_slice(b"}}]}");
            },
            None,
        );
    }

    /// Finish chunk, usage chunk (if asked for), `[DONE]`.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let reason = finish_reason(self.stop_reason.as_deref(), self.ctx.json_tool.is_some());
        self.chunk(out, |o| o.extend_from_slice(b"{}"), Some(reason));
        if self.ctx.include_usage {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&self.head);
            out.extend_from_slice(b",\"choices\":[],\"usage\":");
            // Serialising plain integers into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &self.usage.to_openai());
            out.extend_from_slice(b"}\n\n");
        }
        out.extend_from_slice(DONE);
        self.done = true;
    }

    /// An error payload and `[DONE]`.
    fn fail(&mut self, anthropic_type: &str, message: &str, out: &mut Vec<u8>) {
        let e = OpenAiError::from_anthropic(StatusCode::OK, anthropic_type, message);
        out.extend_from_slice(&e.to_sse_event());
        out.extend_from_slice(DONE);
        self.done = true;
    }

    /// `data: <head>,"choices":[{"index":0,"delta":<delta>,"logprobs":null,"finish_reason":…}]}`
    fn chunk(&mut self, out: &mut Vec<u8>, delta: impl FnOnce(&mut Vec<u8>), finish: Option<&str>) {
        if self.head.is_empty() {
            self.make_head(None, None);
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.head);
        out.extend_from_slice(br#","choices":[{"index":0,"delta":"#);
        delta(out);
        out.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
        match finish {
            Some(reason) => push_json_str(out, reason),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Every Anthropic stream event's data, read in one borrowed pass.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<StartMessage<'a>>,
    index: Option<u64>,
    #[serde(borrow)]
    content_block: Option<ContentBlock<'a>>,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    usage: Option<Usage>,
    #[serde(borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ContentBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

/// A `content_block_delta`'s delta or a `message_delta`'s delta.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

pin_project_lite::pin_project! {
    /// A response body stream converted on the fly. Wrap the relay's usage
    /// tap in it (tap → `ChunkStream` → client), so the tap keeps seeing
    /// Anthropic's events. After `[DONE]` it keeps draining the inner stream
    /// to its end, so the tap settles the request as completed rather than
    /// as a client disconnect.
    pub struct ChunkStream<S> {
        #[pin]
        inner: S,
        converter: ChunkConverter,
        ended: bool,
    }
}

impl<S> ChunkStream<S> {
    pub fn new(inner: S, ctx: ReplyContext) -> Self {
        ChunkStream {
            inner,
            converter: ChunkConverter::new(ctx),
            ended: false,
        }
    }
}

impl<S, E> Stream for ChunkStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if *this.ended {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = this.converter.feed(&chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    *this.ended = true;
                    let out = this.converter.finish();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
