//! The relay's one error type, rendered in Anthropic's error envelope
//! `{"type":"error","error":{"type":…,"message":…},"request_id":…}` with the
//! status, `request-id`, `retry-after` and `x-should-retry` that steer the
//! official SDKs' retry logic correctly. Messages never carry internals.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401: missing, unknown, disabled or expired relay key.
    Authentication(&'static str),
    /// 400 invalid_request_error.
    InvalidRequest(String),
    /// 413 request_too_large.
    RequestTooLarge { limit_bytes: usize },
    /// 408: the client did not send its body in time.
    BodyTimeout,
    /// 404 not_found_error.
    NotFound(String),
    /// 529 overloaded_error: every attempt failed or all accounts rest.
    Overloaded { retry_after_secs: u64 },
    /// 529: the relay's own memory guard for in-flight bodies.
    RelayBusy,
    /// 503 api_error: no account can serve the model; retrying will not help.
    NoAccount { model: String },
    /// 429: too many failed key lookups from one client address.
    AuthThrottled { retry_after_secs: u64 },
    /// A key policy refusal (window, budget, concurrency, restriction).
    Refused(Box<crate::limits::Refusal>),
    /// 500 api_error.
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Authentication(_) => StatusCode::UNAUTHORIZED,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Overloaded { .. } | ApiError::RelayBusy => overloaded_status(),
            ApiError::NoAccount { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Refused(r) => {
                StatusCode::from_u16(r.kind.status()).unwrap_or(StatusCode::FORBIDDEN)
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Authentication(_) => "authentication_error",
            ApiError::InvalidRequest(_) | ApiError::BodyTimeout => "invalid_request_error",
            ApiError::RequestTooLarge { .. } => "request_too_large",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::Overloaded { .. } | ApiError::RelayBusy => "overloaded_error",
            ApiError::NoAccount { .. } | ApiError::Internal => "api_error",
            ApiError::AuthThrottled { .. } => "rate_limit_error",
            ApiError::Refused(r) => r.kind.error_type(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::Authentication(m) => (*m).to_string(),
            ApiError::InvalidRequest(m) | ApiError::NotFound(m) => m.clone(),
            ApiError::RequestTooLarge { limit_bytes } => {
                format!("Request exceeds the maximum allowed size of {limit_bytes} bytes")
            }
            ApiError::BodyTimeout => "Timed out reading the request body".into(),
            ApiError::Overloaded { .. } => {
                "Overloaded: no upstream account could serve the request; retry later".into()
            }
            ApiError::RelayBusy => {
                "Overloaded: the relay is handling too much request data; retry shortly".into()
            }
            ApiError::NoAccount { model } => {
                format!("No upstream account is available to serve model {model}")
            }
            ApiError::AuthThrottled { .. } => {
                "Too many requests with invalid API keys from this address; retry later".into()
            }
            ApiError::Refused(r) => r.message.clone(),
            ApiError::Internal => "Internal server error".into(),
        }
    }

    /// The value for `x-should-retry`, where the SDKs' default guess is wrong.
    fn should_retry(&self) -> Option<&'static str> {
        match self {
            ApiError::Authentication(_)
            | ApiError::NoAccount { .. }
            | ApiError::AuthThrottled { .. } => Some("false"),
            ApiError::Overloaded { .. } | ApiError::RelayBusy => Some("true"),
            ApiError::Refused(r) => Some(if r.kind.should_retry() {
                "true"
            } else {
                "false"
            }),
            _ => None,
        }
    }
}

/// 529, Anthropic's "overloaded".
pub fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// A fresh `req_…` id for responses the relay makes itself.
pub fn new_request_id() -> String {
    format!("req_relay{}", uuid::Uuid::new_v4().simple())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = new_request_id();
        let body = serde_json::json!({
            "type": "error",
            "error": { "type": self.error_type(), "message": self.message() },
            "request_id": request_id,
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("request-id", v);
        }
        if let Some(v) = self.should_retry() {
            headers.insert("x-should-retry", HeaderValue::from_static(v));
        }
        let retry_after = match &self {
            ApiError::Overloaded { retry_after_secs } => Some(*retry_after_secs),
            ApiError::RelayBusy => Some(1),
            ApiError::AuthThrottled { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Refused(r) => r.retry_after_secs,
            _ => None,
        };
        if let Some(secs) = retry_after {
            headers.insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: ApiError) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn envelope_and_retry_headers() {
        let (s, h, v) = render(ApiError::Authentication("invalid x-api-key")).await;
        assert_eq!(s, 401);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(h["x-should-retry"], "false");
        assert!(h["request-id"].to_str().unwrap().starts_with("req_"));

        let (s, h, v) = render(ApiError::Overloaded {
            retry_after_secs: 7,
        })
        .await;
        assert_eq!(s.as_u16(), 529);
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(h["retry-after"], "7");

        let (s, h, v) = render(ApiError::NoAccount {
            model: "claude-x".into(),
        })
        .await;
        assert_eq!(s, 503);
        assert_eq!(h["x-should-retry"], "false");
        assert!(v["error"]["message"].as_str().unwrap().contains("claude-x"));

        let (s, _, v) = render(ApiError::RequestTooLarge { limit_bytes: 10 }).await;
        assert_eq!(s, 413);
        assert_eq!(v["error"]["type"], "request_too_large");
    }
}
