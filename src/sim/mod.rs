//! A simulated Anthropic upstream (wire-format faithful, with fault injection) for tests,
//! benchmarks and `claude-relay demo`.
//!
//! This file owns the public handle ([`SimUpstream`], [`SimHandle`]), the shared state, the
//! router assembly and the per-request middleware (recording, `request-id`, rate-limit and
//! "must not be forwarded" headers). Route handlers live in the sibling modules.
//!
//! Nothing here depends on the rest of the crate: the simulator is the yardstick the relay is
//! measured against, so it must not share code (or bugs) with it.
//!
//! Routes: `POST /v1/messages` (any query), `POST /v1/messages/count_tokens`,
//! `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/oauth/token`, and a
//! simulated AWS Bedrock runtime (`POST /model/{id}/invoke` and
//! `…/invoke-with-response-stream`, SigV4-checked; see [`bedrock`]) and a
//! simulated Vertex AI (`POST /vertex/token`, `…:rawPredict`,
//! `…:streamRawPredict`; see [`vertex`]).
//!
//! Credentials: API keys (`sk-ant-…`, not `sk-ant-oat…`) in `x-api-key` or as a Bearer token
//! (the official SDKs send them that way); OAuth access tokens (`sk-ant-oat…`) as Bearer
//! with `anthropic-beta: oauth-2025-04-20`. Faults can be set per credential
//! ([`SimUpstream::set_fault`]) or implied by its name: `-fault-429`, `-fault-529`,
//! `-fault-500`, `-fault-401`, `-fault-403`, `-fault-spend`, `-fault-hang`, `-fault-drop`.
//! A refreshed OAuth token keeps the `-fault-…` suffix of its refresh token.

pub mod bedrock;
mod cache;
mod faults;
mod messages;
mod models;
mod oauth;
mod ratelimit;
mod stream;
#[cfg(test)]
mod tests;
pub mod vertex;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::compression::predicate::{NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, DefaultPredicate};

pub use faults::Fault;

/// Anthropic's own request body limit; larger bodies get 413 `request_too_large`.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Recording is capped so a long benchmark cannot grow memory without bound; the oldest
/// entries are dropped first.
const MAX_RECORDED: usize = 100_000;

/// One request as the simulator received it (after the relay rewrote it).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lowercase (as `http` stores them); values lossily decoded.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The `x-api-key` value, else the `Authorization: Bearer` token.
    pub credential: Option<String>,
}

impl RecordedRequest {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by every clone of a [`SimUpstream`] and every request it serves.
pub(crate) struct Inner {
    faults: faults::FaultTable,
    stream_delay_nanos: AtomicU64,
    recording: AtomicBool,
    recorded: Mutex<std::collections::VecDeque<RecordedRequest>>,
    /// Response bodies as sent, by request id (newest `MAX_SENT_BODIES`), so tests
    /// can compare what a relay forwarded with what upstream sent, byte for byte.
    sent: Mutex<std::collections::VecDeque<SentBody>>,
    completed_streams: AtomicU64,
    cancelled_streams: AtomicU64,
    refreshes: AtomicU64,
    oauth: oauth::RefreshTokens,
    limits: ratelimit::RateLimits,
    cache: cache::PromptCache,
    /// AWS key pairs the simulated Bedrock accepts.
    aws_keys: bedrock::AwsKeys,
    /// Service accounts and tokens of the simulated Vertex AI.
    gcp: vertex::GcpState,
    /// Sent as `anthropic-organization-id` (a header the relay must strip).
    org_id: String,
}

impl Inner {
    fn stream_delay(&self) -> Duration {
        Duration::from_nanos(self.stream_delay_nanos.load(Ordering::Relaxed))
    }
}

/// Per-router context: the shared state plus the shutdown signal of the server serving it.
#[derive(Clone)]
pub(crate) struct Ctx {
    inner: Arc<Inner>,
    /// `true` once the owning [`SimHandle`] shuts down; hanging requests and delayed streams
    /// watch it so a graceful shutdown cannot wait forever.
    shutdown: Arc<watch::Sender<bool>>,
}

impl Ctx {
    /// Resolves once shutdown was requested (never, for a router used in-process).
    async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// A simulated Anthropic API. Cheap to clone: all clones share one state.
#[derive(Clone)]
pub struct SimUpstream {
    inner: Arc<Inner>,
}

impl Default for SimUpstream {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SimUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimUpstream").finish_non_exhaustive()
    }
}

impl SimUpstream {
    pub fn new() -> SimUpstream {
        SimUpstream {
            inner: Arc::new(Inner {
                faults: faults::FaultTable::default(),
                stream_delay_nanos: AtomicU64::new(0),
                recording: AtomicBool::new(true),
                recorded: Mutex::new(std::collections::VecDeque::new()),
                sent: Mutex::new(std::collections::VecDeque::new()),
                completed_streams: AtomicU64::new(0),
                cancelled_streams: AtomicU64::new(0),
                refreshes: AtomicU64::new(0),
                oauth: oauth::RefreshTokens::default(),
                limits: ratelimit::RateLimits::default(),
                cache: cache::PromptCache::default(),
                aws_keys: bedrock::AwsKeys::default(),
                gcp: vertex::GcpState::default(),
                org_id: uuid::Uuid::new_v4().to_string(),
            }),
        }
    }

    /// The full app, for in-process use (e.g. `tower::ServiceExt::oneshot`). Hanging requests
    /// of this router only end when the caller drops them.
    pub fn router(&self) -> Router {
        let (tx, _) = watch::channel(false);
        self.router_with(Arc::new(tx))
    }

    fn router_with(&self, shutdown: Arc<watch::Sender<bool>>) -> Router {
        let ctx = Ctx {
            inner: self.inner.clone(),
            shutdown,
        };
        Router::new()
            .route("/v1/messages", post(messages::create))
            .route("/v1/messages/count_tokens", post(messages::count_tokens))
            .route("/v1/models", get(models::list))
            .route("/v1/models/{id}", get(models::retrieve))
            .route("/v1/oauth/token", post(oauth::token))
            .route("/model/{model_id}/{action}", post(bedrock::invoke))
            .route("/vertex/token", post(vertex::token))
            .route(
                "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model_action}",
                post(vertex::predict),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // The middleware below already enforced the 32 MB limit while buffering.
            .layer(DefaultBodyLimit::disable())
            .layer(middleware::from_fn_with_state(ctx.clone(), around_request))
            // Outermost so it sees final headers; its default predicate skips
            // `text/event-stream`, so SSE is never compressed, and Bedrock's
            // event stream is left alone the same way (as AWS does).
            .layer(
                CompressionLayer::new().compress_when(DefaultPredicate::new().and(
                    NotForContentType::const_new("application/vnd.amazon.eventstream"),
                )),
            )
            .with_state(ctx)
    }

    /// Binds `addr` (port 0 picks a free port) and serves in a background task.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, _) = watch::channel(false);
        let tx = Arc::new(tx);
        // Without TCP_NODELAY, Nagle + delayed ACKs stall each small SSE event ~40 ms.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = self.router_with(tx.clone());
        let mut rx = tx.subscribe();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|down| *down).await;
            });
            // axum's serve loop only ends with an error on accept failures it cannot retry;
            // a test sees that as connection errors, so there is nothing more to report.
            let _ = serve.await;
        });
        Ok(SimHandle {
            addr,
            sim: self,
            shutdown: tx,
            task: Some(task),
        })
    }

    /// Makes every request with this credential fail with `fault` until cleared.
    /// `credential` is the API key (`x-api-key`) or the OAuth access token (Bearer); an OAuth
    /// refresh token may be given too, to make `/v1/oauth/token` fail.
    pub fn set_fault(&self, credential: &str, fault: Fault) {
        self.inner.faults.set(credential, fault, None);
    }

    /// Like [`set_fault`](Self::set_fault) for the next `times` requests the fault applies
    /// to, then healthy. `times == 0` clears the fault.
    pub fn set_fault_times(&self, credential: &str, fault: Fault, times: u32) {
        if times == 0 {
            self.inner.faults.clear(credential);
        } else {
            self.inner.faults.set(credential, fault, Some(times));
        }
    }

    /// Lets the simulated Bedrock accept another AWS key pair (the pair
    /// [`bedrock::SIM_AWS_ACCESS_KEY_ID`] / [`bedrock::SIM_AWS_SECRET_ACCESS_KEY`]
    /// is always accepted). Faults for Bedrock calls are set on the access key id.
    pub fn add_aws_key(&self, access_key_id: &str, secret_access_key: &str) {
        self.inner.aws_keys.add(access_key_id, secret_access_key);
    }

    /// Lets the simulated Vertex AI accept another service account e-mail
    /// (signing with the simulator's key; see [`vertex::service_account_json`]).
    /// Faults for Vertex calls are set on the e-mail.
    pub fn add_gcp_service_account(&self, client_email: &str) {
        self.inner.gcp.add(client_email);
    }

    /// Removes an explicit fault (a fault implied by the credential's name stays).
    pub fn clear_fault(&self, credential: &str) {
        self.inner.faults.clear(credential);
    }

    /// Delay before each SSE content delta (default zero).
    pub fn set_stream_delay(&self, per_event: Duration) {
        let nanos = u64::try_from(per_event.as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .stream_delay_nanos
            .store(nanos, Ordering::Relaxed);
    }

    /// Turns request recording on or off (on by default; benchmarks turn it off).
    /// Multiplies the per-minute limits the simulator reports (default 1 = a
    /// real tier's 4,000 requests a minute); load benchmarks raise it so the
    /// relay's headroom logic does not rest every account.
    pub fn set_limit_scale(&self, factor: u64) {
        self.inner.limits.set_scale(factor);
    }

    pub fn set_recording(&self, on: bool) {
        self.inner.recording.store(on, Ordering::Relaxed);
    }

    /// Every request received, in arrival order (the newest 100 000 at most).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.recorded.lock().iter().cloned().collect()
    }

    /// The body sent for the response with this `request-id`, as far as it was sent.
    pub fn sent_body(&self, request_id: &str) -> Option<bytes::Bytes> {
        let sent = self.inner.sent.lock();
        sent.iter()
            .rev()
            .find(|(id, _)| id == request_id)
            .map(|(_, buf)| bytes::Bytes::from(buf.lock().clone()))
    }

    pub fn clear_requests(&self) {
        self.inner.recorded.lock().clear();
    }

    /// Streams that sent `message_stop`.
    pub fn completed_streams(&self) -> u64 {
        self.inner.completed_streams.load(Ordering::Relaxed)
    }

    /// Streams whose client went away before the end.
    pub fn cancelled_streams(&self) -> u64 {
        self.inner.cancelled_streams.load(Ordering::Relaxed)
    }

    /// Successful OAuth refreshes served.
    pub fn refresh_count(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }
}

/// A running simulator. Dropping it stops the server (without waiting).
pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: SimUpstream,
    shutdown: Arc<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// `http://127.0.0.1:<port>` (loopback even when bound to the unspecified address).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stops accepting, ends hanging requests and running streams, and waits (at most 5 s)
    /// for the server task.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// What the middleware knows about a request before the handler runs.
#[derive(Clone)]
pub(crate) struct ReqMeta {
    pub(crate) request_id: String,
}

/// Set by handlers on responses to authenticated requests, so the middleware can account
/// the request against the credential's rate-limit windows and emit the headers.
#[derive(Clone)]
pub(crate) struct RateInfo {
    pub(crate) credential: wire::Credential,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    /// The response is a (simulated) rate-limit rejection: show exhausted windows.
    pub(crate) limited: bool,
}

/// Records the request, buffers its body (enforcing the size limit) and decorates the
/// response with the headers every real Anthropic response carries.
async fn around_request(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let request_id = wire::request_id();
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    let body_len = body.as_ref().map(|b| b.len()).unwrap_or(0);
    if ctx.inner.recording.load(Ordering::Relaxed) {
        record(&ctx.inner, &parts, body_len);
    }
    let mut resp = match body {
        Ok(bytes) => {
            parts.extensions.insert(ReqMeta {
                request_id: request_id.clone(),
            });
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => wire::error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            &request_id,
        ),
    };
    let rate = resp.extensions_mut().remove::<RateInfo>();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    wire::insert_noise_headers(headers, &ctx.inner.org_id);
    if let Some(rate) = rate {
        ctx.inner.limits.account_and_render(&rate, headers);
    }
    if ctx.inner.recording.load(Ordering::Relaxed) {
        resp = tee_body(&ctx.inner, &request_id, resp);
    }
    resp
}

/// A response body being sent, by request id; grows as the body streams out.
type SentBody = (String, Arc<Mutex<Vec<u8>>>);

/// Most response bodies kept for [`SimUpstream::sent_body`].
const MAX_SENT_BODIES: usize = 1_000;

/// Copies the response body into the sent-bodies log as it streams out.
fn tee_body(inner: &Inner, request_id: &str, resp: Response) -> Response {
    use futures::StreamExt;
    let buf = Arc::new(Mutex::new(Vec::new()));
    {
        let mut sent = inner.sent.lock();
        if sent.len() >= MAX_SENT_BODIES {
            sent.pop_front();
        }
        sent.push_back((request_id.to_owned(), buf.clone()));
    }
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            buf.lock().extend_from_slice(bytes);
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn record(inner: &Inner, parts: &axum::http::request::Parts, body_len: usize) {
    let credential = wire::raw_credential(&parts.headers).map(str::to_owned);
    let rec = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: header_list(&parts.headers),
        body_len,
        credential,
    };
    let mut recorded = inner.recorded.lock();
    if recorded.len() >= MAX_RECORDED {
        recorded.pop_front();
    }
    recorded.push_back(rec);
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn not_found(meta: Option<axum::Extension<ReqMeta>>) -> Response {
    let id = meta.map(|m| m.0.request_id).unwrap_or_default();
    wire::error_response(StatusCode::NOT_FOUND, "not_found_error", "Not Found", &id)
}

async fn method_not_allowed(meta: Option<axum::Extension<ReqMeta>>) -> Response {
    let id = meta.map(|m| m.0.request_id).unwrap_or_default();
    wire::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "Method Not Allowed",
        &id,
    )
}
