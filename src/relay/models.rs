//! `GET /v1/models` and `/v1/models/{id}`: asked of an upstream account where
//! one answers, else served from the built-in table (narrowed to the models
//! the account's kind declares when it has no models endpoint, e.g.
//! Bedrock). Either way the answer is the superset shape that both the
//! Anthropic and OpenAI SDKs accept.

use super::auth::authenticate_from;
use super::error::ApiError;
use super::headers::upstream_request_headers;
use super::RelayState;
use crate::usage::pricing::ModelInfo;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use std::time::Duration;

const UPSTREAM_MODELS_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn list(State(state): State<RelayState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(e) = authenticate_checked(&state, &parts) {
        return e.into_response();
    }
    let query = parts.uri.query().unwrap_or_default();
    if let Some(models) = declared_models(&state) {
        return Json(builtin_page(&models, query)).into_response();
    }
    // Every prefix (/api, /claude, /openai…) asks upstream the same thing.
    let path = "/v1/models";
    if let Some((StatusCode::OK, mut body)) = ask_upstream(&state, &parts, path).await {
        if let Some(items) = body.get_mut("data").and_then(Value::as_array_mut) {
            items.iter_mut().for_each(superset_item);
            if let Some(obj) = body.as_object_mut() {
                obj.insert("object".into(), json!("list"));
            }
            return Json(body).into_response();
        }
    }
    Json(builtin_page(state.pricing.models(), query)).into_response()
}

/// The preferred account's own model table, for kinds without an upstream
/// models endpoint: known models with their details, others by name only.
fn declared_models(state: &RelayState) -> Option<Vec<ModelInfo>> {
    let lease = state.balancer.select(&[]).ok()?;
    let adapter = state.upstreams.get(lease.account_id())?;
    let names = adapter.listed_models()?;
    let known = state.pricing.models();
    Some(
        names
            .iter()
            .map(|name| {
                known
                    .iter()
                    .find(|m| &m.id == name)
                    .cloned()
                    .unwrap_or_else(|| ModelInfo {
                        id: name.clone(),
                        display_name: name.clone(),
                        created_at: "1970-01-01T00:00:00Z".into(),
                        max_input_tokens: None,
                        max_output_tokens: None,
                    })
            })
            .collect(),
    )
}

pub async fn get(
    State(state): State<RelayState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(e) = authenticate_checked(&state, &parts) {
        return e.into_response();
    }
    if let Some(models) = declared_models(&state) {
        return match models.iter().find(|m| m.id == id) {
            Some(model) => Json(model_json(model)).into_response(),
            None => ApiError::NotFound(format!("model: {id}")).into_response(),
        };
    }
    let path = format!("/v1/models/{id}");
    match ask_upstream(&state, &parts, &path).await {
        Some((StatusCode::OK, mut body)) if body.is_object() => {
            superset_item(&mut body);
            Json(body).into_response()
        }
        Some((StatusCode::NOT_FOUND, _)) => {
            ApiError::NotFound(format!("model: {id}")).into_response()
        }
        _ => match state.pricing.models().iter().find(|m| m.id == id) {
            Some(model) => Json(model_json(model)).into_response(),
            None => ApiError::NotFound(format!("model: {id}")).into_response(),
        },
    }
}

/// Authenticates and applies the key's static policy (not billed or counted).
fn authenticate_checked(state: &RelayState, parts: &http::request::Parts) -> Result<(), ApiError> {
    let key = authenticate_from(parts, &state.keys, &state.store, &state.auth_throttle)?;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let ask = crate::limits::Ask {
        key_id: key.id,
        policy: &key.policy,
        model: "",
        endpoint: crate::limits::EndpointFamily::AnthropicMessages,
        user_agent: header("user-agent"),
        client_hints: crate::limits::ClientHints {
            x_app: header("x-app"),
            metadata_user_id: None,
        },
        estimate: crate::limits::Estimate {
            tokens: 0,
            billed_cost: crate::domain::NanoUsd::ZERO,
        },
        now: chrono::Utc::now(),
    };
    state.limits.check(&ask).map_err(super::handler::refused)
}

/// One try on the preferred account; any failure means "use the built-in table".
async fn ask_upstream(
    state: &RelayState,
    parts: &http::request::Parts,
    path: &str,
) -> Option<(StatusCode, Value)> {
    let lease = state.balancer.select(&[]).ok()?;
    let adapter = state.upstreams.get(lease.account_id())?;
    if !adapter.capabilities().upstream_models {
        return None;
    }
    let mut headers = upstream_request_headers(&parts.headers);
    if !headers.contains_key("anthropic-version") {
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    adapter.authorize(&mut headers).await.ok()?;
    let mut url = format!("{}{}", adapter.base_url(), path);
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let response = adapter
        .client()
        .get(url)
        .headers(headers)
        .timeout(UPSTREAM_MODELS_TIMEOUT)
        .send()
        .await
        .ok()?;
    let status = response.status();
    let body: Value = response.json().await.ok()?;
    Some((status, body))
}

/// Adds the OpenAI-style fields next to Anthropic's.
fn superset_item(item: &mut Value) {
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    let created = obj
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or(0, |t| t.timestamp());
    obj.entry("type").or_insert(json!("model"));
    obj.insert("object".into(), json!("model"));
    obj.entry("created").or_insert(json!(created));
    obj.entry("owned_by").or_insert(json!("anthropic"));
}

fn model_json(model: &ModelInfo) -> Value {
    let mut item = json!({
        "type": "model",
        "id": model.id,
        "display_name": model.display_name,
        "created_at": model.created_at,
    });
    superset_item(&mut item);
    item
}

/// Anthropic's pagination over the built-in table: `limit`, `after_id`, `before_id`.
fn builtin_page(models: &[ModelInfo], query: &str) -> Value {
    let mut limit = 20usize;
    let mut after_id = None;
    let mut before_id = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("limit", v)) => limit = v.parse::<usize>().unwrap_or(20).clamp(1, 1000),
            Some(("after_id", v)) => after_id = Some(v.to_string()),
            Some(("before_id", v)) => before_id = Some(v.to_string()),
            _ => {}
        }
    }
    let position = |id: &str| models.iter().position(|m| m.id == id);
    let (start, end) = match (
        after_id.as_deref().and_then(position),
        before_id.as_deref().and_then(position),
    ) {
        (Some(after), _) => (after + 1, models.len().min(after + 1 + limit)),
        (None, Some(before)) => (before.saturating_sub(limit), before),
        (None, None) => (0, models.len().min(limit)),
    };
    let page: Vec<Value> = models[start..end].iter().map(model_json).collect();
    let mut out = Map::new();
    out.insert("object".into(), json!("list"));
    out.insert(
        "first_id".into(),
        json!(page.first().and_then(|m| m.get("id")).cloned()),
    );
    out.insert(
        "last_id".into(),
        json!(page.last().and_then(|m| m.get("id")).cloned()),
    );
    out.insert(
        "has_more".into(),
        json!(if before_id.is_some() && after_id.is_none() {
            start > 0
        } else {
            end < models.len()
        }),
    );
    out.insert("data".into(), Value::Array(page));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(n: usize) -> Vec<ModelInfo> {
        (0..n)
            .map(|i| ModelInfo {
                id: format!("claude-m{i}"),
                display_name: format!("M{i}"),
                created_at: "2025-01-01T00:00:00Z".into(),
                max_input_tokens: None,
                max_output_tokens: None,
            })
            .collect()
    }

    #[test]
    fn builtin_pages_like_anthropic() {
        let all = models(5);
        let first = builtin_page(&all, "limit=2");
        assert_eq!(first["data"].as_array().unwrap().len(), 2);
        assert_eq!(first["has_more"], true);
        assert_eq!(first["last_id"], "claude-m1");
        assert_eq!(first["data"][0]["object"], "model");
        assert_eq!(first["data"][0]["created"], 1_735_689_600);
        let next = builtin_page(&all, "limit=2&after_id=claude-m3");
        assert_eq!(next["data"][0]["id"], "claude-m4");
        assert_eq!(next["has_more"], false);
        let back = builtin_page(&all, "limit=2&before_id=claude-m2");
        assert_eq!(back["first_id"], "claude-m0");
        assert_eq!(back["has_more"], false);
    }
}
