//! The OpenAI-compatible routes: `POST …/chat/completions` and
//! `GET /openai/…/models`. A chat request is translated to Anthropic
//! Messages and then takes the relay's own path (auth, policy, failover,
//! tap, usage); the answer is translated back — streams chunk by chunk, with
//! the usage tap still reading Anthropic bytes underneath. Errors use
//! OpenAI's shape on these routes.

use super::auth::authenticate_from;
use super::error::ApiError;
use super::forward::relay;
use super::handler::{admit_family, invalid_request, meter, prepare, read_body, route_info};
use super::inspect::inspect_messages;
use super::meter::Bill;
use super::RelayState;
use crate::limits::EndpointFamily;
use crate::openai::request::{to_anthropic, TranslateOptions};
use crate::openai::response::to_chat_completion;
use crate::openai::stream::ChunkStream;
use crate::openai::{models::to_openai_list, OpenAiError, ReplyContext};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

/// Headers the relay sets on its own errors that OpenAI clients also honour.
const KEPT_ERROR_HEADERS: [&str; 3] = ["request-id", "retry-after", "x-should-retry"];

pub async fn chat_completions(State(state): State<RelayState>, request: Request) -> Response {
    let result = chat(&state, request).await;
    let status = result.as_ref().map_or_else(|_| 0, |r| r.status().as_u16());
    let response = match result {
        Ok(response) => response,
        Err(Failure::Api(e)) => openai_error_of(e),
        Err(Failure::OpenAi(e)) => e.into_response(),
    };
    crate::metrics::request_done(
        "chat_completions",
        if status == 0 {
            response.status().as_u16()
        } else {
            status
        },
    );
    response
}

/// The two ways a chat request can fail before an answer exists.
enum Failure {
    Api(ApiError),
    OpenAi(OpenAiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<OpenAiError> for Failure {
    fn from(e: OpenAiError) -> Self {
        Failure::OpenAi(e)
    }
}

async fn chat(state: &RelayState, request: Request) -> Result<Response, Failure> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let key = authenticate_from(&parts, &state.keys, &state.store, &state.auth_throttle)?;
    let (raw, _reservation) = read_body(state, &parts, body).await?;
    let options = TranslateOptions {
        fetch_images: state.config.fetch_image_urls,
        ..TranslateOptions::default()
    };
    let mut translated = to_anthropic(&raw, &options)?;
    if !translated.remote_images.is_empty() {
        let policy = super::fetch::FetchPolicy::new(
            state.config.image_fetch_max_bytes,
            state.config.image_fetch_timeout,
        );
        let images = super::fetch::fetch_images(&translated.remote_images, &policy).await?;
        translated.attach_images(&images)?;
    }
    let info = inspect_messages(&translated.body).map_err(invalid_request)?;
    let admission =
        admit_family(state, &key, &parts, &info, EndpointFamily::OpenaiCompatible).await?;
    let mut bill = Bill::new(meter(state, &key, &info, started));
    bill.set_admission(admission);
    let route = route_info(state, &key, &parts, &info, &translated.body);
    let mut prepared = prepare(&parts, translated.body.clone(), &info, started, route);
    prepared.path = "/v1/messages".into();
    prepared.query = None;
    let response = relay(state, prepared, Some(bill)).await?;
    Ok(translate_answer(response, translated.reply).await)
}

/// An Anthropic answer (stream, Message or passed-through error) in OpenAI's shape.
async fn translate_answer(response: Response, reply: ReplyContext) -> Response {
    let (parts, body) = response.into_parts();
    let request_id = parts.headers.get("request-id").cloned();
    let is_stream = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut out = if parts.status == StatusCode::OK && is_stream {
        let chunks = ChunkStream::new(body.into_data_stream(), reply);
        let mut r = Response::new(Body::from_stream(chunks));
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        r
    } else {
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => return OpenAiError::bad_upstream_response().into_response(),
        };
        if parts.status == StatusCode::OK {
            match to_chat_completion(&bytes, &reply) {
                Ok(json) => json_response(StatusCode::OK, json),
                Err(e) => e.into_response(),
            }
        } else {
            OpenAiError::from_anthropic_body(parts.status, &bytes).into_response()
        }
    };
    if let Some(id) = request_id {
        out.headers_mut().insert("request-id", id);
    }
    out
}

fn json_response(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The relay's own error, in OpenAI's shape, keeping its retry headers.
fn openai_error_of(e: ApiError) -> Response {
    let converted = OpenAiError::from_anthropic(e.status(), e.error_type(), &e.message());
    let original = e.into_response();
    let mut out = converted.into_response();
    copy_headers(original.headers(), out.headers_mut());
    out
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in KEPT_ERROR_HEADERS {
        if let Some(v) = from.get(name) {
            to.insert(name, v.clone());
        }
    }
}

/// `GET /openai/v1/models` (and `/openai/claude/v1/models`): the relay's
/// model list in OpenAI's list shape.
pub async fn models(state: State<RelayState>, request: Request) -> Response {
    let response = super::models::list(state, request).await;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) else {
        return OpenAiError::bad_upstream_response().into_response();
    };
    if status != StatusCode::OK {
        let mut out = OpenAiError::from_anthropic_body(status, &bytes).into_response();
        copy_headers(&parts.headers, out.headers_mut());
        return out;
    }
    match to_openai_list(&bytes) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(e) => e.into_response(),
    }
}
