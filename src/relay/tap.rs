//! The tap: a response body that forwards each upstream chunk to the client
//! the moment it arrives and feeds a copy to the SSE usage parser on the
//! side. It never re-serialises or holds the stream. It ends on upstream end,
//! upstream error, idle timeout or client disconnect (drop), and in every case
//! settles the request's one usage record and releases the account lease.

use super::meter::{Bill, Outcome};
use super::sse::SseUsageParser;
use crate::balancer::{Balancer, Feedback, Lease};
use crate::domain::TokenUsage;
use bytes::Bytes;
use futures::Stream;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub type UpstreamStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Why the stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Completed,
    UpstreamError,
    IdleTimeout,
    ClientGone,
}

/// What the tap reports to the balancer when the stream ends.
pub struct StreamFeedback {
    pub balancer: Balancer,
    pub pricing: std::sync::Arc<crate::usage::pricing::PricingTable>,
    /// Rate-limit headers of the response (applied on success).
    pub limits: Option<crate::balancer::RateLimitInfo>,
    /// When the attempt started (for latency).
    pub started: tokio::time::Instant,
}

pub struct Tap {
    /// Chunks read before the stream was committed to this client (already parsed).
    prefix: VecDeque<Bytes>,
    upstream: UpstreamStream,
    parser: SseUsageParser,
    bill: Option<Bill>,
    lease: Option<Lease>,
    feedback: StreamFeedback,
    ttfb: Duration,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// A final SSE event the relay still has to send (error after a failure).
    trailer: Option<Bytes>,
    finished: bool,
}

impl Tap {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: VecDeque<Bytes>,
        upstream: UpstreamStream,
        parser: SseUsageParser,
        bill: Option<Bill>,
        lease: Lease,
        feedback: StreamFeedback,
        ttfb: Duration,
        idle_timeout: Duration,
    ) -> Tap {
        Tap {
            prefix,
            upstream,
            parser,
            bill,
            lease: Some(lease),
            feedback,
            ttfb,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            trailer: None,
            finished: false,
        }
    }

    fn finish(&mut self, end: End) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let account_id = Some(lease.account_id());
        let estimated_input = self
            .bill
            .as_ref()
            .and_then(Bill::meter)
            .map_or(0, |m| m.estimated_input_tokens);
        let (tokens, estimated) = settled_usage(&self.parser, estimated_input);
        self.report(&lease, end, &tokens);
        drop(lease);
        let Some(bill) = self.bill.take() else { return };
        let status = match end {
            End::Completed | End::UpstreamError | End::IdleTimeout => 200,
            End::ClientGone => {
                crate::metrics::client_disconnect();
                super::meter::STATUS_CLIENT_CLOSED
            }
        };
        let model = self.parser.model().map(str::to_owned);
        bill.finish(Outcome {
            account_id,
            model: model.as_deref(),
            tokens,
            estimated: estimated || end != End::Completed && !self.parser.saw_message_stop(),
            status,
            ttfb: Some(self.ttfb),
        });
    }

    /// Health feedback: a clean end is a success; an error the client saw
    /// (event, interruption, idle) counts against the account; a client that
    /// left says nothing about the account.
    fn report(&self, lease: &Lease, end: End, tokens: &TokenUsage) {
        let fb = &self.feedback;
        let outcome = match end {
            End::ClientGone => return,
            End::Completed if self.parser.error().is_none() => {
                let cost = self
                    .parser
                    .model()
                    .and_then(|m| fb.pricing.cost(m, tokens))
                    .unwrap_or_default();
                Feedback::Success {
                    ttfb: self.ttfb,
                    latency: fb.started.elapsed(),
                    tokens: tokens.total(),
                    cost_nano: cost.0,
                    limits: fb.limits,
                }
            }
            _ => Feedback::StreamError,
        };
        fb.balancer.feedback(lease, outcome);
    }
}

/// Usage as far as the stream got: real counts where upstream sent them,
/// else input from the request estimate and output ≈ 4 characters a token.
fn settled_usage(parser: &SseUsageParser, estimated_input: u64) -> (TokenUsage, bool) {
    let mut tokens = parser.usage();
    let mut estimated = false;
    if !parser.saw_message_start() {
        tokens.input = estimated_input;
        estimated = true;
    }
    if !parser.saw_output_usage() {
        tokens.output = tokens.output.max(parser.output_chars().div_ceil(4));
        estimated = true;
    }
    (tokens, estimated)
}

/// The SSE error event the relay appends when it ends a stream itself.
pub fn sse_error_event(error_type: &str, message: &str) -> Bytes {
    let data =
        serde_json::json!({"type": "error", "error": {"type": error_type, "message": message}});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

impl Stream for Tap {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(chunk) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(trailer) = this.trailer.take() {
            return Poll::Ready(Some(Ok(trailer)));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        match this.upstream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.parser.feed(&chunk);
                let deadline = tokio::time::Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(_))) => {
                this.finished = true;
                this.finish(End::UpstreamError);
                Poll::Ready(Some(Ok(sse_error_event(
                    "api_error",
                    "Upstream connection was interrupted",
                ))))
            }
            Poll::Ready(None) => {
                this.finished = true;
                this.finish(End::Completed);
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.finished = true;
                    this.finish(End::IdleTimeout);
                    Poll::Ready(Some(Ok(sse_error_event(
                        "api_error",
                        "Upstream stream was idle for too long; the relay ended it",
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropping `upstream` (after this) cancels the upstream request.
        self.finish(End::ClientGone);
    }
}
