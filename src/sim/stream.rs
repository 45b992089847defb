//! The SSE body of a streaming `/v1/messages` answer: the real event sequence
//! (`message_start`, `content_block_start`, `ping`, deltas, `content_block_stop`,
//! `message_delta`, `message_stop`), the streaming faults, the per-delta delay, and the
//! completed/cancelled stream counters.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::cache::PromptUsage;
use super::faults::Fault;
use super::messages::{Reply, ReplyBlock};
use super::{Ctx, Inner};

/// Pause before a simulated drop; see its use.
const FLUSH_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Everything a stream needs, decided before the first byte.
pub(crate) struct StreamPlan {
    pub(crate) message_id: String,
    pub(crate) model: String,
    pub(crate) reply: Reply,
    pub(crate) usage: PromptUsage,
    pub(crate) fault: Option<Fault>,
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn overloaded_event() -> Bytes {
    event(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
}

/// Counts the stream as cancelled when the body is dropped before it was finished, which
/// is how hyper reports a client that went away.
struct CancelGuard {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.cancelled_streams.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) fn sse_response(ctx: Ctx, plan: StreamPlan) -> Response {
    let StreamPlan {
        message_id,
        model,
        reply,
        usage,
        fault,
    } = plan;
    let delay = ctx.inner.stream_delay();
    // A fault set for more deltas than the reply has strikes after the last one.
    let at = |n: u32| Some((n as usize).min(reply.pieces.len()));
    let (drop_at, error_at) = match &fault {
        Some(Fault::DropMidStream { after_deltas }) => (at(*after_deltas), None),
        Some(Fault::ErrorEventMidStream { after_deltas }) => (None, at(*after_deltas)),
        _ => (None, None),
    };
    let error_before_content = fault == Some(Fault::ErrorEventBeforeContent);

    let body = async_stream::stream! {
        let mut guard = CancelGuard { inner: ctx.inner.clone(), finished: false };
        let start = json!({
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage.to_json(1),
            },
        });
        yield Ok::<Bytes, io::Error>(event("message_start", &start));
        if error_before_content {
            guard.finished = true;
            yield Ok(overloaded_event());
            return;
        }
        let block = match &reply.block {
            ReplyBlock::Text => json!({"type": "text", "text": ""}),
            ReplyBlock::ToolUse { id, name } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        };
        yield Ok(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ));
        yield Ok(event("ping", &json!({"type": "ping"})));
        for i in 0..=reply.pieces.len() {
            if drop_at == Some(i) {
                guard.finished = true;
                // Let hyper flush what was sent (it does when the body is pending), so
                // the client really holds N deltas when the connection dies.
                tokio::time::sleep(FLUSH_PAUSE).await;
                // A body error makes hyper abort the connection: no terminating chunk.
                yield Err(io::Error::new(io::ErrorKind::ConnectionAborted, "simulated drop"));
                return;
            }
            if error_at == Some(i) {
                guard.finished = true;
                yield Ok(overloaded_event());
                return;
            }
            let Some(piece) = reply.pieces.get(i) else {
                break;
            };
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.shutdown_requested() => {
                        guard.finished = true;
                        yield Err(io::Error::new(io::ErrorKind::ConnectionAborted, "shutting down"));
                        return;
                    }
                }
            }
            let delta = match &reply.block {
                ReplyBlock::Text => json!({"type": "text_delta", "text": piece}),
                ReplyBlock::ToolUse { .. } => {
                    json!({"type": "input_json_delta", "partial_json": piece})
                }
            };
            yield Ok(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            ));
        }
        yield Ok(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        yield Ok(event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": reply.pieces.len()},
            }),
        ));
        guard.finished = true;
        ctx.inner.completed_streams.fetch_add(1, Ordering::Relaxed);
        yield Ok(event("message_stop", &json!({"type": "message_stop"})));
    };

    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
