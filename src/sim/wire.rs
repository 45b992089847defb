//! Wire-level building blocks shared by the simulator's handlers: identifiers, Anthropic
//! error JSON, credential extraction and authentication, and the infrastructure headers a
//! relay must not forward.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

/// The beta OAuth access tokens must announce, as the real API requires.
pub(crate) const OAUTH_BETA: &str = "oauth-2025-04-20";

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(BASE58[rng.gen_range(0..BASE58.len())]))
        .collect()
}

/// `req_011C…`: the shape of real request ids (24+ alphanumerics after `req_`).
pub(crate) fn request_id() -> String {
    format!("req_011C{}", base58(20))
}

pub(crate) fn message_id() -> String {
    format!("msg_01{}", base58(22))
}

pub(crate) fn tool_use_id() -> String {
    format!("toolu_01{}", base58(22))
}

/// A random token suffix for simulated OAuth tokens.
pub(crate) fn token_suffix() -> String {
    base58(40)
}

/// `{"type":"error","error":{...},"request_id":...}` with the matching status.
pub(crate) fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    });
    json_response(status, &body)
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Headers real responses carry that describe the pooled account or Anthropic's edge, so a
/// relay must strip them; tests check that it does.
pub(crate) fn insert_noise_headers(headers: &mut HeaderMap, org_id: &str) {
    if let Ok(v) = HeaderValue::from_str(org_id) {
        headers.insert("anthropic-organization-id", v);
    }
    let ray = format!("{:016x}-SJC", rand::thread_rng().gen::<u64>());
    if let Ok(v) = HeaderValue::from_str(&ray) {
        headers.insert("cf-ray", v);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("cloudflare"));
    let cookie = format!(
        "_cfuvid={}-0.0.1.1-604800000; path=/; domain=.api.anthropic.com; HttpOnly; Secure; SameSite=None",
        base58(43)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, v);
    }
    headers.insert("cf-cache-status", HeaderValue::from_static("DYNAMIC"));
    headers.insert("via", HeaderValue::from_static("1.1 google"));
    headers.insert(
        "x-envoy-upstream-service-time",
        HeaderValue::from_static("7"),
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CredKind {
    ApiKey,
    OAuth,
}

#[derive(Clone, Debug)]
pub(crate) struct Credential {
    pub(crate) value: String,
    pub(crate) kind: CredKind,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, "authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The credential as sent, unvalidated: `x-api-key` first, else the Bearer token.
pub(crate) fn raw_credential(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, "x-api-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| bearer(headers))
}

/// True when any `anthropic-beta` header lists `beta` (comma-separated, as clients send).
pub(crate) fn has_beta(headers: &HeaderMap, beta: &str) -> bool {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|b| b.trim() == beta)
}

/// An Anthropic error before it is rendered (small, unlike a `Response`).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: message.into(),
        }
    }

    fn unauthorized(message: &str) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: message.to_owned(),
        }
    }

    pub(crate) fn render(&self, request_id: &str) -> Response {
        error_response(self.status, self.kind, &self.message, request_id)
    }
}

/// Checks the credential the way the real API does.
pub(crate) fn authenticate(headers: &HeaderMap) -> Result<Credential, ApiError> {
    if let Some(key) = header_str(headers, "x-api-key").map(str::trim) {
        // An OAuth token in x-api-key is as invalid as any other non-key string.
        if key.starts_with("sk-ant-") && !key.starts_with("sk-ant-oat") {
            return Ok(Credential {
                value: key.to_owned(),
                kind: CredKind::ApiKey,
            });
        }
        return Err(ApiError::unauthorized("invalid x-api-key"));
    }
    if headers.contains_key("authorization") {
        let Some(token) = bearer(headers).filter(|t| t.starts_with("sk-ant-")) else {
            return Err(ApiError::unauthorized("Invalid bearer token"));
        };
        // Current official SDKs send API keys as Bearer tokens too, so upstream takes them.
        if !token.starts_with("sk-ant-oat") {
            return Ok(Credential {
                value: token.to_owned(),
                kind: CredKind::ApiKey,
            });
        }
        if !has_beta(headers, OAUTH_BETA) {
            return Err(ApiError::unauthorized(
                "OAuth authentication is currently not supported.",
            ));
        }
        return Ok(Credential {
            value: token.to_owned(),
            kind: CredKind::OAuth,
        });
    }
    Err(ApiError::unauthorized("x-api-key header is required"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_real_shapes() {
        let id = request_id();
        assert!(id.starts_with("req_") && id.len() >= 28);
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(message_id().starts_with("msg_01"));
        assert!(tool_use_id().starts_with("toolu_01"));
    }

    #[test]
    fn authentication_rules() {
        let mut h = HeaderMap::new();
        assert!(authenticate(&h).is_err());
        h.insert("x-api-key", HeaderValue::from_static("sk-ant-api03-x"));
        assert_eq!(
            authenticate(&h).map(|c| c.kind).ok(),
            Some(CredKind::ApiKey)
        );
        h.insert("x-api-key", HeaderValue::from_static("nope"));
        assert!(authenticate(&h).is_err());

        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-ant-oat01-abc"),
        );
        assert!(authenticate(&h).is_err(), "OAuth needs the beta");
        h.insert(
            "anthropic-beta",
            HeaderValue::from_static("claude-code-20250219, oauth-2025-04-20"),
        );
        let c = authenticate(&h).ok();
        assert_eq!(c.as_ref().map(|c| c.kind), Some(CredKind::OAuth));
        assert_eq!(c.map(|c| c.value).as_deref(), Some("sk-ant-oat01-abc"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-ant-api03-x"),
        );
        assert_eq!(
            authenticate(&h).map(|c| c.kind).ok(),
            Some(CredKind::ApiKey),
            "the SDKs send API keys as Bearer"
        );
        h.insert("authorization", HeaderValue::from_static("Bearer nope"));
        assert!(authenticate(&h).is_err());
    }
}
