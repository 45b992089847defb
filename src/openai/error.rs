//! OpenAI's error shape `{"error":{"message","type","param","code"}}` and the
//! mapping from Anthropic errors (upstream bodies and the relay's own) onto
//! it. Owns only the rendering; which headers go along (`request-id`,
//! `retry-after`, `x-should-retry`) stays the caller's business.
//!
//! Mapping, by Anthropic error type (status kept unless noted):
//!
//! | Anthropic | OpenAI status | type | code |
//! |---|---|---|---|
//! | `invalid_request_error` | as given (400, 408…) | `invalid_request_error` | – |
//! | `authentication_error` | 401 | `invalid_request_error` | `invalid_api_key` |
//! | `permission_error` | 403 | `invalid_request_error` | `permission_denied` |
//! | `not_found_error` | 404 | `invalid_request_error` | `not_found` |
//! | `request_too_large` | 413 | `invalid_request_error` | `request_too_large` |
//! | `rate_limit_error` | 429 | `rate_limit_error` | `rate_limit_exceeded` |
//! | `api_error` | as given (500, 503…) | `server_error` | – |
//! | `overloaded_error` | **503** (not 529) | `server_error` | `overloaded` |
//! | `timeout_error` | 504 | `server_error` | `timeout` |
//! | anything else | as given | by status class | – |
//!
//! 529 becomes 503 because OpenAI clients and generic HTTP retry policies know
//! 503 as "try again later" and many do not know 529; the OpenAI SDK retries
//! both. The types follow what OpenAI itself sends (it reports a bad key as
//! `invalid_request_error` with code `invalid_api_key`).

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// An error in OpenAI's shape, with the HTTP status it goes out with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl OpenAiError {
    /// 400 `invalid_request_error`: the request cannot be translated as sent.
    /// `param` names the offending field (`messages[2].content[0].image_url`).
    pub fn invalid_request(param: Option<String>, message: impl Into<String>) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "invalid_request_error",
            message: message.into(),
            param,
            code: None,
        }
    }

    /// 400 with code `unsupported_parameter` (OpenAI's own code): a field
    /// Claude cannot honour and that would change the answer if ignored.
    pub fn unsupported_parameter(param: &str, message: impl Into<String>) -> Self {
        OpenAiError {
            code: Some("unsupported_parameter"),
            ..Self::invalid_request(Some(param.to_owned()), message)
        }
    }

    /// 400 with code `unsupported_value`: a known field with a value Claude
    /// cannot honour (`n: 2`, an `input_audio` part).
    pub fn unsupported_value(param: String, message: impl Into<String>) -> Self {
        OpenAiError {
            code: Some("unsupported_value"),
            ..Self::invalid_request(Some(param), message)
        }
    }

    /// 502: upstream answered 200 with something that is not a Message.
    pub fn bad_upstream_response() -> Self {
        OpenAiError {
            status: StatusCode::BAD_GATEWAY,
            error_type: "server_error",
            message: "The upstream returned a response the relay could not translate".into(),
            param: None,
            code: None,
        }
    }

    /// From an Anthropic error type, status and message: the relay's own
    /// errors (`ApiError::status()`, `error_type()`, `message()`) and the
    /// parsed content of upstream error bodies and `event: error` events.
    pub fn from_anthropic(status: StatusCode, anthropic_type: &str, message: &str) -> Self {
        let (status, error_type, code) = map(status, anthropic_type);
        OpenAiError {
            status,
            error_type,
            message: message.to_owned(),
            param: None,
            code,
        }
    }

    /// From an upstream error response body (`{"type":"error","error":{…}}`)
    /// and its status. A body that is not Anthropic's envelope (an HTML page
    /// from a proxy, say) is not echoed: the message is a generic one.
    pub fn from_anthropic_body(status: StatusCode, body: &[u8]) -> Self {
        let parsed = serde_json::from_slice::<Envelope>(body)
            .ok()
            .and_then(|e| e.error);
        let error_type = parsed
            .as_ref()
            .and_then(|e| e.error_type.as_deref())
            .unwrap_or("");
        let message = parsed
            .as_ref()
            .and_then(|e| e.message.as_deref())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| generic_message(status));
        Self::from_anthropic(status, error_type, message)
    }

    /// Sets `code` (e.g. `insufficient_quota` for a spent budget).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn error_type(&self) -> &'static str {
        self.error_type
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// The JSON body `{"error":{…}}`.
    pub fn to_body(&self) -> Bytes {
        Bytes::from(self.to_json())
    }

    /// The error as one SSE event of an OpenAI stream: `data: {"error":{…}}`.
    /// No `event:` line: the OpenAI SDK raises on any data with an `error`
    /// key, and `event:` names other than its own are not what it expects.
    pub fn to_sse_event(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.message.len() + 96);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.to_json());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                message: &self.message,
                error_type: self.error_type,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        // Serialising plain strings and options cannot fail; the fallback is
        // still a valid envelope.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error_type,
            self.message
        )
    }
}

impl std::error::Error for OpenAiError {}

/// Status and JSON body only; the caller adds `request-id`, `retry-after`
/// and `x-should-retry` as the relay does for every error it makes.
impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = Response::new(axum::body::Body::from(self.to_body()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// (status, type, code) for an Anthropic error type; see the module table.
fn map(
    status: StatusCode,
    anthropic_type: &str,
) -> (StatusCode, &'static str, Option<&'static str>) {
    const INVALID: &str = "invalid_request_error";
    const SERVER: &str = "server_error";
    let status = if status.as_u16() == 529 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    match anthropic_type {
        "invalid_request_error" => (status, INVALID, None),
        "authentication_error" => (StatusCode::UNAUTHORIZED, INVALID, Some("invalid_api_key")),
        "permission_error" => (StatusCode::FORBIDDEN, INVALID, Some("permission_denied")),
        "not_found_error" => (StatusCode::NOT_FOUND, INVALID, Some("not_found")),
        "request_too_large" => (
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID,
            Some("request_too_large"),
        ),
        "rate_limit_error" => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
        ),
        "api_error" => (status, SERVER, None),
        "overloaded_error" => (StatusCode::SERVICE_UNAVAILABLE, SERVER, Some("overloaded")),
        "timeout_error" => (StatusCode::GATEWAY_TIMEOUT, SERVER, Some("timeout")),
        _ if status.is_client_error() => (status, INVALID, None),
        // A type we do not know on a 2xx (an error event in a 200 stream) or 5xx.
        _ if status.is_success() => (StatusCode::INTERNAL_SERVER_ERROR, SERVER, None),
        _ => (status, SERVER, None),
    }
}

fn generic_message(status: StatusCode) -> &'static str {
    if status.is_client_error() {
        "The request was rejected upstream"
    } else {
        "The upstream service failed to answer"
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: Option<AnthropicError<'a>>,
}

#[derive(Deserialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type", borrow)]
    error_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    error_type: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn s(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    fn body_of(e: &OpenAiError) -> Value {
        serde_json::from_slice(&e.to_body()).unwrap()
    }

    #[test]
    fn mapping_matrix() {
        // (anthropic status, anthropic type) → (status, type, code)
        let cases: &[(u16, &str, u16, &str, Option<&str>)] = &[
            (
                400,
                "invalid_request_error",
                400,
                "invalid_request_error",
                None,
            ),
            (
                408,
                "invalid_request_error",
                408,
                "invalid_request_error",
                None,
            ),
            (
                401,
                "authentication_error",
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            (
                403,
                "permission_error",
                403,
                "invalid_request_error",
                Some("permission_denied"),
            ),
            (
                404,
                "not_found_error",
                404,
                "invalid_request_error",
                Some("not_found"),
            ),
            (
                413,
                "request_too_large",
                413,
                "invalid_request_error",
                Some("request_too_large"),
            ),
            (
                429,
                "rate_limit_error",
                429,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            (500, "api_error", 500, "server_error", None),
            (503, "api_error", 503, "server_error", None),
            (
                529,
                "overloaded_error",
                503,
                "server_error",
                Some("overloaded"),
            ),
            (504, "timeout_error", 504, "server_error", Some("timeout")),
            (422, "something_new", 422, "invalid_request_error", None),
            (502, "something_new", 502, "server_error", None),
            (529, "", 503, "server_error", None),
            // An error event inside a 200 stream.
            (
                200,
                "overloaded_error",
                503,
                "server_error",
                Some("overloaded"),
            ),
            (200, "weird", 500, "server_error", None),
        ];
        for &(status, ty, want_status, want_type, want_code) in cases {
            let e = OpenAiError::from_anthropic(s(status), ty, "msg");
            assert_eq!(
                (e.status().as_u16(), e.error_type(), e.code()),
                (want_status, want_type, want_code),
                "{status} {ty}"
            );
            let v = body_of(&e);
            assert_eq!(
                v,
                json!({"error": {"message": "msg", "type": want_type, "param": null, "code": want_code}})
            );
        }
    }

    #[test]
    fn upstream_bodies() {
        let e = OpenAiError::from_anthropic_body(
            s(400),
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 0 < 1"},"request_id":"req_1"}"#,
        );
        assert_eq!(e.status(), 400);
        assert_eq!(e.message(), "max_tokens: 0 < 1");

        let e = OpenAiError::from_anthropic_body(
            s(529),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!((e.status().as_u16(), e.error_type()), (503, "server_error"));

        // Not an envelope: nothing of it is echoed.
        let e = OpenAiError::from_anthropic_body(s(502), b"<html>secret proxy page</html>");
        assert_eq!(e.status(), 502);
        assert_eq!(e.error_type(), "server_error");
        assert!(!e.message().contains("secret"));
        let e = OpenAiError::from_anthropic_body(s(404), b"");
        assert_eq!(e.error_type(), "invalid_request_error");
    }

    #[test]
    fn translator_errors_carry_param_and_code() {
        let e = OpenAiError::unsupported_value("n".into(), "n must be 1");
        assert_eq!(
            body_of(&e),
            json!({"error": {"message": "n must be 1", "type": "invalid_request_error", "param": "n", "code": "unsupported_value"}})
        );
        let e = OpenAiError::from_anthropic(s(429), "rate_limit_error", "budget spent")
            .with_code("insufficient_quota");
        assert_eq!(e.code(), Some("insufficient_quota"));
    }

    #[test]
    fn sse_event_shape() {
        let e = OpenAiError::from_anthropic(s(200), "overloaded_error", "Overloaded \"now\"");
        let ev = e.to_sse_event();
        let text = std::str::from_utf8(&ev).unwrap();
        assert!(
            text.starts_with("data: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text[6..text.len() - 2]).unwrap();
        assert_eq!(v["error"]["message"], "Overloaded \"now\"");
    }

    #[tokio::test]
    async fn into_response() {
        use http_body_util::BodyExt;
        let r = OpenAiError::invalid_request(None, "bad").into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/json");
        let b = r.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}
