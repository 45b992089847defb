//! The failover loop: pick an account, send, classify; try another account
//! only while nothing has reached the client. A 200 stream is peeked until
//! its first content event, so an error inside the stream before content is
//! failed over too. Client-caused upstream errors pass through unchanged;
//! after exhausted attempts the client gets 529 with `retry-after`.

use super::error::ApiError;
use super::headers::copy_client_response_headers;
use super::inspect::message_usage;
use super::meter::{Bill, Outcome};
use super::sse::SseUsageParser;
use super::tap::{StreamFeedback, Tap, UpstreamStream};
use super::RelayState;
use crate::balancer::{Feedback, Lease, NoAccount, RateLimitInfo, RouteRequest, SessionKey};
use crate::domain::KeyBinding;
use crate::domain::{AccountId, TokenUsage};
use crate::upstream::ratelimit;
use crate::upstream::{
    self, classify::stream_error_failure, classify::transport_failure, Adapter, Failure,
};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::{timeout, Instant};

/// Most bytes buffered while peeking a stream before it is committed anyway.
const MAX_PEEK_BYTES: usize = 1 << 20;

/// A request ready to go upstream: the body stays the client's bytes.
pub struct Prepared {
    pub method: Method,
    /// Upstream path, e.g. `/v1/messages` (relay prefixes removed).
    pub path: String,
    pub query: Option<String>,
    /// The client's headers after the deny-list.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The model the client asked for (for messages naming it).
    pub model: String,
    /// When the relay received the request (for the overhead metric).
    pub received_at: Instant,
    /// What the balancer needs to route this request.
    pub route: RouteInfo,
}

/// The request's routing needs, prepared once before the failover loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteInfo {
    pub binding: KeyBinding,
    pub session: Option<SessionKey>,
    pub estimated_tokens: u64,
    pub estimated_cost_nano: u64,
}

/// One attempt's result, before anything reached the client.
enum Attempt {
    /// A response arrived (any status).
    Answered(reqwest::Response, Duration),
    /// Could not get an answer from this account.
    Failed(Failure),
}

/// Runs the failover loop and renders the client's response.
pub async fn relay(
    state: &RelayState,
    req: Prepared,
    mut bill: Option<Bill>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let settings = state.settings.load();
    let max_attempts = (settings.max_failover_attempts as usize).max(1);
    let default_cooldown = Duration::from_secs(settings.default_cooldown_secs);
    let mut tried: Vec<AccountId> = Vec::with_capacity(max_attempts);
    let mut earliest_rest: Option<SystemTime> = None;
    let mut last_account: Option<AccountId> = None;
    // Time spent waiting on upstream; the rest of the request's time is overhead.
    let mut upstream_wait = Duration::ZERO;
    let overhead = |upstream_wait: Duration| {
        crate::metrics::overhead(req.received_at.elapsed().saturating_sub(upstream_wait));
    };

    // Accounts whose kind cannot serve this endpoint are never picked; the
    // tried ones join them as the loop goes.
    let count_tokens = req.path.ends_with("/count_tokens");
    let incapable = if count_tokens {
        state.upstreams.lacking(|c| c.count_tokens)
    } else {
        Vec::new()
    };
    let mut excluded = incapable.clone();
    while tried.len() < max_attempts {
        let route = RouteRequest {
            model: &req.model,
            session: req.route.session,
            binding: req.route.binding,
            estimated_tokens: req.route.estimated_tokens,
            estimated_cost_nano: req.route.estimated_cost_nano,
            exclude: &excluded,
        };
        let routed = state.balancer.route(&route);
        if routed.is_err() && tried.is_empty() && !incapable.is_empty() {
            // Nothing capable: say why when the pool has only incapable kinds.
            if let Some(kind) = unsupported_kind(state, &route) {
                return Err(ApiError::InvalidRequest(format!(
                    "count_tokens is not supported by the upstream accounts serving this request ({kind} accounts); send /v1/messages instead"
                )));
            }
        }
        let lease = match routed {
            Ok(lease) => lease,
            Err(NoAccount::NoneConfigured) => {
                return Err(ApiError::NoAccount {
                    model: req.model.clone(),
                })
            }
            Err(NoAccount::AllBusy { earliest_available }) => {
                earliest_rest = min_time(earliest_rest, earliest_available);
                break;
            }
        };
        let account_id = lease.account_id();
        tried.push(account_id);
        excluded.push(account_id);
        last_account = Some(account_id);
        if let Some(bill) = bill.as_mut() {
            bill.set_account(Some(account_id));
        }
        let Some(adapter) = state.upstreams.get(account_id) else {
            tracing::warn!(account.id = %account_id, "selected account has no adapter");
            continue;
        };
        let stream_wanted = req.path.ends_with("/messages");
        let sent_at = Instant::now();
        // An account that maps the requested model gets the body with its name.
        let body = match lease.upstream_model() {
            Some(model) => {
                super::rewrite::with_model(&req.body, model).unwrap_or_else(|| req.body.clone())
            }
            None => req.body.clone(),
        };
        let attempt = send(state, &adapter, &req, body, started, stream_wanted).await;
        upstream_wait += sent_at.elapsed();
        let response = match attempt {
            Attempt::Answered(response, ttfb) => {
                crate::metrics::upstream_ttfb(sent_at.elapsed());
                (response, ttfb)
            }
            Attempt::Failed(failure) => {
                crate::metrics::attempt("transport");
                earliest_rest = min_time(earliest_rest, rest(state, &lease, failure, None));
                continue;
            }
        };
        let (response, ttfb) = response;
        let status = response.status();
        if !status.is_success() {
            let failure = upstream::classify(
                status,
                response.headers(),
                SystemTime::now(),
                default_cooldown,
            );
            if !failure.is_retryable() {
                crate::metrics::attempt("client_error");
                return pass_through(state, response, lease, bill, ttfb).await;
            }
            crate::metrics::attempt("failover");
            tracing::info!(account.id = %account_id, upstream.status = status.as_u16(), "attempt failed; trying another account");
            let limits = ratelimit::parse(response.headers(), SystemTime::now());
            earliest_rest = min_time(earliest_rest, rest(state, &lease, failure, limits));
            continue;
        }
        if is_event_stream(response.headers()) {
            let peek_started = Instant::now();
            let peeked = peek(state, response, &bill, account_id, ttfb).await;
            upstream_wait += peek_started.elapsed();
            match peeked {
                Peeked::Committed(committed) => {
                    crate::metrics::attempt("ok");
                    let response = committed.into_response(state, lease, bill);
                    overhead(upstream_wait);
                    return Ok(response);
                }
                Peeked::Failed(failure) => {
                    crate::metrics::attempt("failover");
                    earliest_rest = min_time(earliest_rest, rest(state, &lease, failure, None));
                    continue;
                }
            }
        }
        let read_started = Instant::now();
        // Reading the (small) body is upstream time; the bookkeeping after it is negligible.
        let completed = complete(state, response, &lease, bill.take(), ttfb, started).await;
        upstream_wait += read_started.elapsed();
        drop(lease);
        match completed {
            Ok(response) => {
                crate::metrics::attempt("ok");
                overhead(upstream_wait);
                return Ok(response);
            }
            Err((failure, returned_bill)) => {
                crate::metrics::attempt("transport");
                bill = returned_bill;
                earliest_rest = min_time(earliest_rest, failure.cooldown_until);
                continue;
            }
        }
    }

    let retry_after_secs = earliest_rest
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .map_or(1, |d| d.as_secs().clamp(1, 60));
    if let Some(bill) = bill {
        if tried.is_empty() {
            // Refused by the relay itself: not a counted request.
            drop(bill);
        } else {
            bill.finish(Outcome {
                account_id: last_account,
                model: None,
                tokens: TokenUsage::default(),
                estimated: false,
                status: super::error::overloaded_status().as_u16(),
                ttfb: None,
            });
        }
    }
    Err(ApiError::Overloaded { retry_after_secs })
}

/// The kind of an account the request could use if incapable kinds were
/// allowed, i.e. why nothing was found.
fn unsupported_kind(state: &RelayState, route: &RouteRequest<'_>) -> Option<&'static str> {
    let probe = RouteRequest {
        exclude: &[],
        ..*route
    };
    let lease = state.balancer.route(&probe).ok()?;
    state
        .upstreams
        .get(lease.account_id())
        .map(|a| a.kind_name())
}

fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Tells the balancer an attempt failed (it rests the account as the
/// failure and the rate-limit headers say); returns when it will be back.
fn rest(
    state: &RelayState,
    lease: &Lease,
    failure: Failure,
    limits: Option<RateLimitInfo>,
) -> Option<SystemTime> {
    state.balancer.feedback(
        lease,
        Feedback::Failure {
            failure,
            limits,
            model_family: None,
        },
    );
    failure.cooldown_until
}

async fn send(
    state: &RelayState,
    adapter: &Arc<Adapter>,
    req: &Prepared,
    body: Bytes,
    started: Instant,
    stream_wanted: bool,
) -> Attempt {
    let request = adapter
        .request(
            req.method.clone(),
            &req.path,
            req.query.as_deref(),
            req.headers.clone(),
            body,
        )
        .await;
    let send = match request {
        Ok(Ok(builder)) => builder.send(),
        // The adapter answered itself (a request its upstream cannot take).
        Ok(Err(response)) => return Attempt::Answered(response, started.elapsed()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot authorize upstream request");
            let now = SystemTime::now();
            return Attempt::Failed(Failure {
                kind: upstream::FailureKind::AuthRejected,
                status: None,
                cooldown_until: Some(
                    now + Duration::from_secs(state.settings.load().default_cooldown_secs),
                ),
            });
        }
    };
    let limit = if stream_wanted {
        state.config.stream_first_byte_timeout
    } else {
        state.config.upstream_total_timeout
    };
    match timeout(limit, send).await {
        Ok(Ok(response)) => Attempt::Answered(adapter.response(response).await, started.elapsed()),
        Ok(Err(e)) => {
            tracing::info!(error = %redact(&e), "upstream request failed");
            Attempt::Failed(transport_failure(SystemTime::now()))
        }
        Err(_) => Attempt::Failed(transport_failure(SystemTime::now())),
    }
}

fn redact(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A client-caused upstream error (400/404/413/422…): relayed unchanged.
async fn pass_through(
    state: &RelayState,
    response: reqwest::Response,
    lease: Lease,
    bill: Option<Bill>,
    ttfb: Duration,
) -> Result<Response, ApiError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = timeout(state.config.upstream_total_timeout, response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    if let Some(bill) = bill {
        bill.finish(Outcome {
            account_id: Some(lease.account_id()),
            model: None,
            tokens: TokenUsage::default(),
            estimated: false,
            status: status.as_u16(),
            ttfb: Some(ttfb),
        });
    }
    Ok(build_response(status, &headers, Body::from(body)))
}

/// A non-streaming success: read the whole (small) Message and bill it.
async fn complete(
    state: &RelayState,
    response: reqwest::Response,
    lease: &Lease,
    bill: Option<Bill>,
    ttfb: Duration,
    started: Instant,
) -> Result<Response, (Failure, Option<Bill>)> {
    let status = response.status();
    let headers = response.headers().clone();
    let remaining = state
        .config
        .upstream_total_timeout
        .saturating_sub(started.elapsed());
    let body = match timeout(remaining, response.bytes()).await {
        Ok(Ok(body)) => body,
        _ => {
            let failure = transport_failure(SystemTime::now());
            rest(state, lease, failure, None);
            return Err((failure, bill));
        }
    };
    let (model, tokens) =
        message_usage(&body).map_or((None, TokenUsage::default()), |(m, t)| (Some(m), t));
    let cost = model
        .as_deref()
        .and_then(|m| state.pricing.cost(m, &tokens))
        .unwrap_or_default();
    state.balancer.feedback(
        lease,
        Feedback::Success {
            ttfb,
            latency: started.elapsed(),
            tokens: tokens.total(),
            cost_nano: cost.0,
            limits: ratelimit::parse(&headers, SystemTime::now()),
        },
    );
    if let Some(bill) = bill {
        bill.finish(Outcome {
            account_id: Some(lease.account_id()),
            model: model.as_deref(),
            tokens,
            estimated: false,
            status: status.as_u16(),
            ttfb: Some(ttfb),
        });
    }
    Ok(build_response(status, &headers, Body::from(body)))
}

fn build_response(status: StatusCode, upstream_headers: &HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    copy_client_response_headers(upstream_headers, response.headers_mut());
    response
}

/// A stream committed to this client: what was read while peeking, and the rest.
struct Committed {
    headers: HeaderMap,
    limits: Option<RateLimitInfo>,
    started: Instant,
    prefix: VecDeque<Bytes>,
    stream: UpstreamStream,
    parser: SseUsageParser,
    ttfb: Duration,
}

impl Committed {
    fn into_response(self, state: &RelayState, lease: Lease, bill: Option<Bill>) -> Response {
        let tap = Tap::new(
            self.prefix,
            self.stream,
            self.parser,
            bill,
            lease,
            StreamFeedback {
                balancer: state.balancer.clone(),
                pricing: state.pricing.clone(),
                limits: self.limits,
                started: self.started,
            },
            self.ttfb,
            state.config.stream_idle_timeout,
        );
        let mut response = build_response(StatusCode::OK, &self.headers, Body::from_stream(tap));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

enum Peeked {
    Committed(Box<Committed>),
    Failed(Failure),
}

/// Reads a 200 stream until its first content event. An error event or an
/// early end before that point is a failed attempt (charged to the account
/// only if upstream had started the message).
async fn peek(
    state: &RelayState,
    response: reqwest::Response,
    bill: &Option<Bill>,
    account_id: AccountId,
    ttfb: Duration,
) -> Peeked {
    let started = Instant::now()
        .checked_sub(ttfb)
        .unwrap_or_else(Instant::now);
    let headers = response.headers().clone();
    let mut stream: UpstreamStream = response.bytes_stream().boxed();
    let mut parser = SseUsageParser::new();
    let mut prefix = VecDeque::new();
    let mut buffered = 0usize;
    let mut ttfb = ttfb;
    let first_byte_at = Instant::now();
    loop {
        let wait = if prefix.is_empty() {
            state.config.stream_first_byte_timeout
        } else {
            state.config.stream_idle_timeout
        };
        let failure = match timeout(wait, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                if prefix.is_empty() {
                    ttfb += first_byte_at.elapsed();
                }
                parser.feed(&chunk);
                buffered += chunk.len();
                prefix.push_back(chunk);
                if parser.error().is_some() && !parser.saw_content() {
                    Some(stream_error_failure(SystemTime::now()))
                } else if parser.saw_content()
                    || parser.saw_message_stop()
                    || buffered > MAX_PEEK_BYTES
                {
                    None
                } else {
                    continue;
                }
            }
            Ok(None) if parser.saw_message_stop() => None,
            Ok(Some(Err(_)) | None) | Err(_) => Some(transport_failure(SystemTime::now())),
        };
        let Some(failure) = failure else {
            return Peeked::Committed(Box::new(Committed {
                limits: ratelimit::parse(&headers, SystemTime::now()),
                started,
                headers,
                prefix,
                stream,
                parser,
                ttfb,
            }));
        };
        if parser.saw_message_start() {
            if let Some(meter) = bill.as_ref().and_then(Bill::meter) {
                meter.charge_account_only(Outcome {
                    account_id: Some(account_id),
                    model: parser.model(),
                    tokens: parser.usage(),
                    estimated: !parser.saw_output_usage(),
                    status: 200,
                    ttfb: Some(ttfb),
                });
            }
        }
        return Peeked::Failed(failure);
    }
}
