//! `GET /v1/key/usage` (under every prefix): a key holder's own view,
//! authenticated by the key itself — its limits with current window use and
//! reset times, budgets left, and usage today, in total, by day (last 30 UTC
//! days) and by model. Knowing a key's id is never enough: only the key works.

use super::auth::authenticate_from;
use super::error::ApiError;
use super::RelayState;
use crate::domain::{UsageSubject, UsageTotals};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DurationRound, TimeDelta, Utc};
use serde_json::{json, Value};

/// Days in the daily series.
const SERIES_DAYS: i64 = 30;

pub async fn key_usage(State(state): State<RelayState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match build(&state, &parts) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn build(state: &RelayState, parts: &http::request::Parts) -> Result<Value, ApiError> {
    let key = authenticate_from(parts, &state.keys, &state.store, &state.auth_throttle)?;
    let internal = |e: crate::store::Error| {
        tracing::error!(error = %e, "key usage lookup failed");
        ApiError::Internal
    };
    let now = Utc::now();
    let today = now.duration_trunc(TimeDelta::days(1)).unwrap_or(now);
    let subject = UsageSubject::Key(key.id);
    let total = state.store.usage_total(&subject, None).map_err(internal)?;
    let mut by_day = Vec::with_capacity(SERIES_DAYS as usize);
    for back in (0..SERIES_DAYS).rev() {
        let from = today - TimeDelta::days(back);
        let day = state
            .store
            .usage_total(&subject, Some((from, from + TimeDelta::days(1))))
            .map_err(internal)?;
        if day.requests > 0 {
            let mut v = totals_json(&day);
            v["date"] = json!(from.format("%Y-%m-%d").to_string());
            by_day.push(v);
        }
    }
    let mut by_model = Vec::new();
    for model in state.store.key_models(key.id).map_err(internal)? {
        let t = state
            .store
            .usage_total(&UsageSubject::KeyModel(key.id, model.clone()), None)
            .map_err(internal)?;
        let mut v = totals_json(&t);
        v["model"] = json!(model);
        by_model.push(v);
    }
    let today_totals = state
        .store
        .usage_total(&subject, Some((today, today + TimeDelta::days(1))))
        .map_err(internal)?;
    Ok(json!({
        "key": {
            "id": key.id.to_string(),
            "name": key.name,
            "display_prefix": key.display_prefix,
            "status": key.status,
            "created_at": key.created_at,
            "expires_at": key.expires_at,
            "cost_multiplier": key.cost_multiplier,
        },
        "limits": state.limits.key_status(key.id, &key.policy, now),
        "usage": {
            "total": totals_json(&total),
            "today": totals_json(&today_totals),
            "by_day": by_day,
            "by_model": by_model,
        },
    }))
}

/// Usage in the self-service shape; cost is the key's billed cost.
fn totals_json(t: &UsageTotals) -> Value {
    json!({
        "requests": t.requests,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cache_creation_input_tokens": t.cache_creation_tokens(),
        "cache_read_input_tokens": t.cache_read_tokens,
        "cost_usd": t.billed_cost.to_decimal_string(),
    })
}
