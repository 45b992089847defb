//! Bedrock's errors in Anthropic's shape. Bedrock answers failures with an
//! AWS error type (`x-amzn-ErrorType: ThrottlingException:…`) and
//! `{"message": …}`; the relay's classification and its clients expect
//! Anthropic's status codes and `{"type":"error","error":{…}}`. The mapping
//! keeps what matters for failover: throttling and quota are 429s, an
//! unavailable service is 529, refused credentials are 401/403, and
//! request mistakes stay 400/404 (passed through, never failed over).

use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Rest after a `ThrottlingException`: Bedrock sends no `retry-after`, and
/// without one a 429 would count as an exhausted quota (a long rest).
pub const THROTTLE_RETRY_AFTER_SECS: u64 = 10;

/// How one Bedrock error is shown.
#[derive(Debug, PartialEq, Eq)]
pub struct Mapped {
    pub status: StatusCode,
    pub error_type: &'static str,
    /// Seconds for a `retry-after` header (None: none).
    pub retry_after: Option<u64>,
}

/// The AWS error type of a response: `x-amzn-errortype` up to its `:`, else
/// the body's `__type` (after any `#`).
pub fn aws_error_type(headers: &HeaderMap, body: &Value) -> Option<String> {
    let from_header = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).trim().to_owned());
    from_header.filter(|t| !t.is_empty()).or_else(|| {
        body.get("__type")
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
    })
}

/// The `message` (or `Message`) of an AWS error body.
pub fn message_of(body: &Value) -> Option<String> {
    body.get("message")
        .or_else(|| body.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Maps an AWS error type (or, without one, the status) to Anthropic's.
pub fn map(aws_type: Option<&str>, status: StatusCode) -> Mapped {
    let m = |code: u16, error_type, retry_after| Mapped {
        status: StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
        error_type,
        retry_after,
    };
    match aws_type.unwrap_or_default() {
        "ThrottlingException" => m(429, "rate_limit_error", Some(THROTTLE_RETRY_AFTER_SECS)),
        "ServiceQuotaExceededException" => m(429, "rate_limit_error", None),
        "ServiceUnavailableException" => m(529, "overloaded_error", None),
        "ModelNotReadyException" => m(503, "api_error", Some(5)),
        "InternalServerException" | "ModelErrorException" | "ModelStreamErrorException" => {
            m(500, "api_error", None)
        }
        "ModelTimeoutException" => m(504, "api_error", None),
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException" => m(401, "authentication_error", None),
        "AccessDeniedException" => m(403, "permission_error", None),
        "ValidationException" => m(400, "invalid_request_error", None),
        "ResourceNotFoundException" => m(404, "not_found_error", None),
        _ => match status.as_u16() {
            401 => m(401, "authentication_error", None),
            403 => m(403, "permission_error", None),
            404 => m(404, "not_found_error", None),
            413 => m(413, "request_too_large", None),
            429 => m(429, "rate_limit_error", Some(THROTTLE_RETRY_AFTER_SECS)),
            code @ 400..=499 => m(code, "invalid_request_error", None),
            code => m(code, "api_error", None),
        },
    }
}

/// The Anthropic error type of an exception inside a stream
/// (`:exception-type` is lowerCamelCase there: `throttlingException`).
pub fn stream_error_type(exception: &str) -> &'static str {
    let mut name = exception.to_owned();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    map(Some(&name), StatusCode::INTERNAL_SERVER_ERROR).error_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::classify::{classify, FailureKind};
    use std::time::{Duration, SystemTime};

    /// The mapped statuses drive failover the way the AWS meaning asks for.
    #[test]
    fn mapped_errors_classify_as_their_aws_meaning() {
        let kind = |aws: &str| {
            let m = map(Some(aws), StatusCode::BAD_REQUEST);
            let mut headers = HeaderMap::new();
            if let Some(s) = m.retry_after {
                headers.insert("retry-after", s.into());
            }
            classify(
                m.status,
                &headers,
                SystemTime::now(),
                Duration::from_secs(60),
            )
            .kind
        };
        assert_eq!(kind("ThrottlingException"), FailureKind::RateLimited);
        assert_eq!(
            kind("ServiceQuotaExceededException"),
            FailureKind::QuotaExhausted
        );
        assert_eq!(kind("ServiceUnavailableException"), FailureKind::Overloaded);
        assert_eq!(kind("ModelNotReadyException"), FailureKind::ServerError);
        assert_eq!(kind("InvalidSignatureException"), FailureKind::AuthRejected);
        assert_eq!(kind("AccessDeniedException"), FailureKind::AuthRejected);
        assert_eq!(kind("ValidationException"), FailureKind::ClientError);
        assert_eq!(kind("ResourceNotFoundException"), FailureKind::ClientError);
    }

    #[test]
    fn error_type_from_header_or_body() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            aws_error_type(&headers, &Value::Null).as_deref(),
            Some("ThrottlingException")
        );
        let body = serde_json::json!({"__type": "com.amazon.coral.validate#ValidationException", "Message": "bad"});
        assert_eq!(
            aws_error_type(&HeaderMap::new(), &body).as_deref(),
            Some("ValidationException")
        );
        assert_eq!(message_of(&body).as_deref(), Some("bad"));
        assert_eq!(stream_error_type("throttlingException"), "rate_limit_error");
        assert_eq!(
            stream_error_type("serviceUnavailableException"),
            "overloaded_error"
        );
        assert_eq!(stream_error_type("modelStreamErrorException"), "api_error");
    }
}
