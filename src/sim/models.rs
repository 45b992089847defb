//! `GET /v1/models` (Anthropic's paginated list shape) and `GET /v1/models/{id}` over a
//! fixed catalogue, newest first, as the real API orders it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::faults::Fault;
use super::messages::hang;
use super::wire;
use super::{Ctx, RateInfo, ReqMeta};

struct Model {
    id: &'static str,
    /// The undated alias the real API also accepts on retrieve.
    alias: Option<&'static str>,
    display_name: &'static str,
    created_at: &'static str,
}

const fn model(
    id: &'static str,
    alias: Option<&'static str>,
    display_name: &'static str,
    created_at: &'static str,
) -> Model {
    Model {
        id,
        alias,
        display_name,
        created_at,
    }
}

const MODELS: &[Model] = &[
    model(
        "claude-opus-4-8",
        None,
        "Claude Opus 4.8",
        "2026-09-01T00:00:00Z",
    ),
    model(
        "claude-sonnet-4-6",
        None,
        "Claude Sonnet 4.6",
        "2026-02-17T00:00:00Z",
    ),
    model(
        "claude-opus-4-5-20251101",
        Some("claude-opus-4-5"),
        "Claude Opus 4.5",
        "2025-11-24T00:00:00Z",
    ),
    model(
        "claude-haiku-4-5-20251001",
        Some("claude-haiku-4-5"),
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
    ),
    model(
        "claude-sonnet-4-5-20250929",
        Some("claude-sonnet-4-5"),
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    model(
        "claude-opus-4-1-20250805",
        Some("claude-opus-4-1"),
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
    model(
        "claude-opus-4-20250514",
        Some("claude-opus-4-0"),
        "Claude Opus 4",
        "2025-05-22T00:00:00Z",
    ),
    model(
        "claude-sonnet-4-20250514",
        Some("claude-sonnet-4-0"),
        "Claude Sonnet 4",
        "2025-05-22T00:00:00Z",
    ),
    model(
        "claude-3-7-sonnet-20250219",
        Some("claude-3-7-sonnet-latest"),
        "Claude Sonnet 3.7",
        "2025-02-24T00:00:00Z",
    ),
    model(
        "claude-3-5-haiku-20241022",
        Some("claude-3-5-haiku-latest"),
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
    model(
        "claude-3-haiku-20240307",
        None,
        "Claude Haiku 3",
        "2024-03-07T00:00:00Z",
    ),
];

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

fn to_json(m: &Model) -> Value {
    json!({
        "type": "model",
        "id": m.id,
        "display_name": m.display_name,
        "created_at": m.created_at,
    })
}

/// Authentication and fault injection, as for messages (no version header required).
async fn preflight(
    ctx: &Ctx,
    headers: &HeaderMap,
    request_id: &str,
) -> Result<wire::Credential, Response> {
    let credential = wire::authenticate(headers).map_err(|e| e.render(request_id))?;
    if let Some(fault) = ctx.inner.faults.take(&credential.value, false) {
        if let Some(mut resp) = fault.http_response(credential.kind, request_id) {
            resp.extensions_mut().insert(rate(
                &credential,
                matches!(fault, Fault::RateLimited { .. }),
            ));
            return Err(resp);
        }
        if fault == Fault::Hang {
            return Err(hang(ctx, request_id).await);
        }
    }
    Ok(credential)
}

fn rate(credential: &wire::Credential, limited: bool) -> RateInfo {
    RateInfo {
        credential: credential.clone(),
        input_tokens: 0,
        output_tokens: 0,
        limited,
    }
}

fn respond(status: StatusCode, body: &Value, credential: &wire::Credential) -> Response {
    let mut resp = wire::json_response(status, body);
    resp.extensions_mut().insert(rate(credential, false));
    resp
}

pub(crate) async fn list(
    State(ctx): State<Ctx>,
    Extension(meta): Extension<ReqMeta>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let rid = meta.request_id.as_str();
    let credential = match preflight(&ctx, &headers, rid).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            let mut resp = wire::error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "limit: Input should be an integer between 1 and 1000",
                rid,
            );
            resp.extensions_mut().insert(rate(&credential, false));
            return resp;
        }
    };
    let position = |id: &str| MODELS.iter().position(|m| m.id == id);
    // An unknown cursor gives an empty last page, which ends SDK auto-pagination.
    let (start, end) = if let Some(after) = query.get("after_id") {
        match position(after) {
            Some(p) => (p + 1, (p + 1 + limit).min(MODELS.len())),
            None => (0, 0),
        }
    } else if let Some(before) = query.get("before_id") {
        match position(before) {
            Some(p) => (p.saturating_sub(limit), p),
            None => (0, 0),
        }
    } else {
        (0, limit.min(MODELS.len()))
    };
    let page = &MODELS[start..end];
    let has_more = if query.contains_key("before_id") {
        start > 0 && !page.is_empty()
    } else {
        end < MODELS.len() && !page.is_empty()
    };
    let body = json!({
        "data": page.iter().map(to_json).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": page.first().map(|m| m.id),
        "last_id": page.last().map(|m| m.id),
    });
    respond(StatusCode::OK, &body, &credential)
}

pub(crate) async fn retrieve(
    State(ctx): State<Ctx>,
    Extension(meta): Extension<ReqMeta>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let rid = meta.request_id.as_str();
    let credential = match preflight(&ctx, &headers, rid).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match MODELS
        .iter()
        .find(|m| m.id == id || m.alias == Some(id.as_str()))
    {
        Some(m) => respond(StatusCode::OK, &to_json(m), &credential),
        None => {
            let mut resp = wire::error_response(
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!("model: {id}"),
                rid,
            );
            resp.extensions_mut().insert(rate(&credential, false));
            resp
        }
    }
}
