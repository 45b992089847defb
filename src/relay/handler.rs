//! The relay handlers. `messages` reads top to bottom as the request path:
//! authenticate → read and inspect the body → (policy) → forward with
//! failover → tap. `count_tokens` takes the same path without billing.

use super::auth::authenticate_from;
use super::error::ApiError;
use super::forward::{relay, Prepared, RouteInfo};
use super::headers::upstream_request_headers;
use super::inspect::{inspect_count_tokens, inspect_messages, InspectError, RequestInfo};
use super::meter::{Bill, Meter};
use super::RelayState;
use crate::balancer::session_key;
use crate::domain::ApiKey;
use crate::limits::{estimate, Admission, Ask, ClientHints, EndpointFamily, Expiry, Refusal};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use http::request::Parts;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::time::{timeout, Instant};

/// The API version sent when the client sent none.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Read size reserved for a body without a `content-length`, until it is read.
const UNKNOWN_LENGTH_RESERVATION: usize = 1 << 20;

pub async fn messages(State(state): State<RelayState>, request: Request) -> Response {
    handle(state, request, Endpoint::Messages)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn count_tokens(State(state): State<RelayState>, request: Request) -> Response {
    handle(state, request, Endpoint::CountTokens)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Messages,
    CountTokens,
}

async fn handle(
    state: RelayState,
    request: Request,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let key = authenticate_from(&parts, &state.keys, &state.store, &state.auth_throttle)?;
    let (body, _reservation) = read_body(&state, &parts, body).await?;
    let info = match endpoint {
        Endpoint::Messages => inspect_messages(&body),
        Endpoint::CountTokens => inspect_count_tokens(&body),
    }
    .map_err(invalid_request)?;
    let admission = admit(&state, &key, &parts, &info, endpoint).await?;
    let bill =
        (endpoint == Endpoint::Messages).then(|| Bill::new(meter(&state, &key, &info, started)));
    let bill = match (bill, admission) {
        (Some(mut bill), Some(admission)) => {
            bill.set_admission(admission);
            Some(bill)
        }
        (bill, _) => bill,
    };
    let route = route_info(&state, &key, &parts, &info, &body);
    let prepared = prepare(&parts, body, &info, started, route);
    let result = relay(&state, prepared, bill).await;
    let family = match endpoint {
        Endpoint::Messages => "messages",
        Endpoint::CountTokens => "count_tokens",
    };
    crate::metrics::request_done(
        family,
        result
            .as_ref()
            .map_or_else(|e| e.status().as_u16(), |r| r.status().as_u16()),
    );
    result
}

/// The key policy's verdict: messages are admitted (reserving their
/// estimate), count_tokens is only checked (not billed, not counted).
async fn admit(
    state: &RelayState,
    key: &ApiKey,
    parts: &Parts,
    info: &RequestInfo,
    endpoint: Endpoint,
) -> Result<Option<Admission>, ApiError> {
    if endpoint == Endpoint::CountTokens {
        state
            .limits
            .check(&ask_for(
                state,
                key,
                parts,
                info,
                EndpointFamily::AnthropicMessages,
            ))
            .map_err(refused)?;
        return Ok(None);
    }
    admit_family(state, key, parts, info, EndpointFamily::AnthropicMessages)
        .await
        .map(Some)
}

/// Admits a billed request of an endpoint family, persisting a first-use activation.
pub(super) async fn admit_family(
    state: &RelayState,
    key: &ApiKey,
    parts: &Parts,
    info: &RequestInfo,
    family: EndpointFamily,
) -> Result<Admission, ApiError> {
    let admission = state
        .limits
        .admit(ask_for(state, key, parts, info, family))
        .await
        .map_err(refused)?;
    if let Some(at) = admission.activated() {
        persist_activation(state, key.id, at);
    }
    Ok(admission)
}

fn ask_for<'a>(
    state: &RelayState,
    key: &'a ApiKey,
    parts: &'a Parts,
    info: &'a RequestInfo,
    family: EndpointFamily,
) -> Ask<'a> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    Ask {
        key_id: key.id,
        policy: &key.policy,
        model: &info.model,
        endpoint: family,
        user_agent: header("user-agent"),
        client_hints: ClientHints {
            x_app: header("x-app"),
            metadata_user_id: info.user_id.as_deref(),
        },
        estimate: estimate(
            &info.model,
            info.estimated_input_tokens,
            info.max_tokens,
            &state.pricing,
            key.cost_multiplier,
        ),
        now: Utc::now(),
    }
}

pub fn refused(r: Refusal) -> ApiError {
    ApiError::Refused(Box::new(r))
}

/// Records when an activation-mode key was first used (once per key).
fn persist_activation(state: &RelayState, key_id: crate::domain::KeyId, at: chrono::DateTime<Utc>) {
    let result = state.store.get_key(key_id).and_then(|found| match found {
        Some(mut key) => {
            if let Expiry::Activation { activated_at, .. } = &mut key.policy.expiry {
                if activated_at.is_none() {
                    *activated_at = Some(at);
                    return state.store.put_key(&key);
                }
            }
            Ok(())
        }
        None => Ok(()),
    });
    if let Err(e) = result {
        tracing::error!(key.id = %key_id, error = %e, "cannot persist key activation");
    }
}

/// What the request's usage record needs.
pub(super) fn meter(
    state: &RelayState,
    key: &ApiKey,
    info: &RequestInfo,
    started: Instant,
) -> Meter {
    Meter {
        sink: state.usage.clone(),
        pricing: state.pricing.clone(),
        key_id: key.id,
        cost_multiplier: key.cost_multiplier,
        requested_model: info.model.clone(),
        stream: info.stream,
        started,
        estimated_input_tokens: info.estimated_input_tokens,
        max_tokens: info.max_tokens,
    }
}

pub(super) fn invalid_request(e: InspectError) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

/// What the balancer needs: the key's binding, the sticky-session key, and
/// the request's list-price estimate.
pub(super) fn route_info(
    state: &RelayState,
    key: &ApiKey,
    parts: &Parts,
    info: &RequestInfo,
    body: &[u8],
) -> RouteInfo {
    let header_session = parts
        .headers
        .get("x-claude-code-session-id")
        .and_then(|v| v.to_str().ok());
    let est = estimate(
        &info.model,
        info.estimated_input_tokens,
        info.max_tokens,
        &state.pricing,
        1.0,
    );
    RouteInfo {
        binding: key.binding,
        session: session_key(header_session, info.user_id.as_deref(), None).or_else(|| {
            // No session id: the cacheable prefix keeps the conversation on one account.
            session_key(None, None, super::rewrite::prefix_hash(body))
        }),
        estimated_tokens: est.tokens,
        estimated_cost_nano: est.billed_cost.0,
    }
}

/// The upstream request: the client's path without the relay prefix, its
/// query, its headers minus the deny-list, and its body bytes untouched.
pub(super) fn prepare(
    parts: &Parts,
    body: Bytes,
    info: &RequestInfo,
    received_at: Instant,
    route: RouteInfo,
) -> Prepared {
    let mut headers = upstream_request_headers(&parts.headers);
    if !headers.contains_key("anthropic-version") {
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        );
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Prepared {
        method: Method::POST,
        path: upstream_path(parts.uri.path()).to_string(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body,
        model: info.model.clone(),
        received_at,
        route,
    }
}

/// `/api/v1/messages` and `/claude/v1/messages` → `/v1/messages`.
pub fn upstream_path(path: &str) -> &str {
    for prefix in super::ROUTE_PREFIXES {
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.starts_with('/') {
                return rest;
            }
        }
    }
    path
}

/// Releases its share of the in-flight body budget on drop.
pub struct BodyReservation {
    counter: Arc<AtomicUsize>,
    amount: usize,
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.amount, Ordering::Relaxed);
    }
}

fn reserve(state: &RelayState, amount: usize) -> Result<BodyReservation, ApiError> {
    let counter = state.inflight_body_bytes.clone();
    let before = counter.fetch_add(amount, Ordering::Relaxed);
    let reservation = BodyReservation { counter, amount };
    if before + amount > state.config.max_inflight_body_bytes {
        return Err(ApiError::RelayBusy);
    }
    Ok(reservation)
}

/// Reads the body within the size limit, the read timeout and the relay-wide
/// in-flight budget.
pub(super) async fn read_body(
    state: &RelayState,
    parts: &Parts,
    body: Body,
) -> Result<(Bytes, BodyReservation), ApiError> {
    let limit = state.config.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::RequestTooLarge { limit_bytes: limit });
    }
    let reservation = reserve(state, declared.unwrap_or(UNKNOWN_LENGTH_RESERVATION))?;
    let limited = http_body_util::Limited::new(body, limit);
    let collected = match timeout(state.config.client_body_timeout, limited.collect()).await {
        Err(_) => return Err(ApiError::BodyTimeout),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(ApiError::RequestTooLarge { limit_bytes: limit })
        }
        Ok(Err(_)) => {
            return Err(ApiError::InvalidRequest(
                "Could not read the request body".into(),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    if collected.is_empty() {
        return Err(ApiError::InvalidRequest(
            "Request body is empty; a JSON object is required".into(),
        ));
    }
    Ok((collected, reservation))
}
