//! `POST /v1/oauth/token`: the refresh-token grant of Claude OAuth accounts. Refresh tokens
//! are single use (a second use, or any token containing `invalid`, is `invalid_grant`), as
//! upstream rotates them on every refresh.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::faults::Fault;
use super::messages::hang;
use super::wire::{self, CredKind};
use super::{Ctx, ReqMeta};

/// Lifetime of issued access tokens (8 hours, as upstream).
const EXPIRES_IN_SECS: u64 = 28_800;

#[derive(Default)]
pub(crate) struct RefreshTokens {
    used: Mutex<HashSet<String>>,
}

fn oauth_error(error: &str, description: &str) -> Response {
    wire::json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

/// Accepts a JSON object (what Claude Code sends) or a form-encoded body (RFC 6749).
fn parse_fields(body: &[u8]) -> Option<Value> {
    if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(body) {
        return Some(v);
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut map = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(form_decode(k)?, Value::String(form_decode(v)?));
    }
    (!map.is_empty()).then_some(Value::Object(map))
}

fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub(crate) async fn token(
    State(ctx): State<Ctx>,
    Extension(meta): Extension<ReqMeta>,
    body: Bytes,
) -> Response {
    let Some(fields) = parse_fields(&body) else {
        return oauth_error(
            "invalid_request",
            "Request body must be JSON or form-encoded",
        );
    };
    let field = |name: &str| fields.get(name).and_then(Value::as_str);
    match field("grant_type") {
        Some("refresh_token") => {}
        Some(_) => {
            return oauth_error(
                "unsupported_grant_type",
                "Only the refresh_token grant is supported",
            )
        }
        None => return oauth_error("invalid_request", "Missing grant_type"),
    }
    let Some(refresh_token) = field("refresh_token").filter(|t| !t.is_empty()) else {
        return oauth_error("invalid_request", "Missing refresh_token");
    };
    if field("client_id").is_none_or(str::is_empty) {
        return oauth_error("invalid_request", "Missing client_id");
    }
    // Only explicit faults apply here: a `-fault-…` suffix in a refresh token is carried
    // over to the new access token instead (see below).
    if let Some(fault) = ctx.inner.faults.take_explicit(refresh_token, false) {
        if let Some(resp) = fault.http_response(CredKind::OAuth, &meta.request_id) {
            return resp;
        }
        if fault == Fault::Hang {
            return hang(&ctx, &meta.request_id).await;
        }
    }
    if refresh_token.contains("invalid") {
        return oauth_error("invalid_grant", "Invalid refresh token");
    }
    if !ctx.inner.oauth.used.lock().insert(refresh_token.to_owned()) {
        return oauth_error("invalid_grant", "Refresh token has already been used");
    }
    // Keeping a fault marker lets a demo account stay faulty across refreshes; an account
    // whose access token alone carries the marker is healed by refreshing.
    let marker = refresh_token
        .rfind("-fault-")
        .map(|i| &refresh_token[i..])
        .unwrap_or("");
    ctx.inner.refreshes.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "access_token": format!("sk-ant-oat01-sim-{}{marker}", wire::token_suffix()),
        "refresh_token": format!("sk-ant-ort01-sim-{}{marker}", wire::token_suffix()),
        "expires_in": EXPIRES_IN_SECS,
        "token_type": "Bearer",
        "scope": "user:inference user:profile",
    });
    wire::json_response(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_json_bodies() {
        let v = parse_fields(b"grant_type=refresh_token&refresh_token=a%2Bb+c&client_id=x");
        let v = v.unwrap_or_default();
        assert_eq!(v["refresh_token"], "a+b c");
        let v = parse_fields(br#"{"grant_type":"refresh_token"}"#).unwrap_or_default();
        assert_eq!(v["grant_type"], "refresh_token");
    }
}
