//! `bedrock` accounts: Claude on AWS Bedrock. The adapter turns the
//! relay's Anthropic Messages request into Bedrock's `InvokeModel` /
//! `InvokeModelWithResponseStream` call (model id in the path, `model` and
//! `stream` out of the body, `anthropic_version: bedrock-2023-05-31`, betas
//! in `anthropic_beta`), signs it with SigV4, and turns the answer back
//! into what the Anthropic API would have sent: Messages JSON passes
//! through, the event stream becomes SSE ([`eventstream`]), AWS errors
//! become Anthropic errors ([`errors`]). Bedrock has no count_tokens or
//! models endpoint in the Anthropic shape; the adapter says so through
//! its capabilities.

pub mod errors;
pub mod eventstream;
pub mod models;
pub mod sigv4;

use super::{synthetic_response, Error};
use crate::domain::{Account, AwsCredentials};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// The `anthropic_version` Bedrock's Claude models take in the body.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Most bytes of an error body read to render it (AWS errors are tiny).
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct BedrockAdapter {
    /// `https://bedrock-runtime.<region>.amazonaws.com` or the override.
    endpoint: String,
    aws: AwsCredentials,
    client: reqwest::Client,
    /// Anthropic model names this account serves without a mapping: the
    /// built-in table plus the account's own mapping sources.
    listed: Vec<String>,
}

impl BedrockAdapter {
    pub fn new(account: &Account, client: reqwest::Client) -> Result<BedrockAdapter, Error> {
        let aws = account
            .credentials
            .aws
            .clone()
            .ok_or(Error::MissingCredentials)?;
        if aws.region.is_empty() || aws.access_key_id.expose().is_empty() {
            return Err(Error::MissingCredentials);
        }
        let endpoint = match account.base_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://bedrock-runtime.{}.amazonaws.com", aws.region),
        };
        let mut listed: Vec<String> = models::builtin_names().map(str::to_owned).collect();
        for m in &account.routing.model_mapping {
            if !listed.contains(&m.from) {
                listed.push(m.from.clone());
            }
        }
        Ok(BedrockAdapter {
            endpoint,
            aws,
            client,
            listed,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.endpoint
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Model names for `GET /v1/models` on this account.
    pub fn listed_models(&self) -> &[String] {
        &self.listed
    }

    /// The signed Bedrock call for an Anthropic `/v1/messages` request, or
    /// a ready-made Anthropic error response when the body cannot be sent.
    pub fn request(
        &self,
        path: &str,
        client_headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Result<reqwest::RequestBuilder, reqwest::Response>, Error> {
        if path != "/v1/messages" {
            return Err(Error::Unsupported("this endpoint"));
        }
        let translated = match translate(client_headers, body) {
            Ok(t) => t,
            Err(message) => {
                return Ok(Err(synthetic_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &message,
                    None,
                )))
            }
        };
        let action = if translated.stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        let url = format!(
            "{}/model/{}/{action}",
            self.endpoint,
            encode_segment(models::model_id(&translated.model))
        );
        let accept = if translated.stream {
            "application/vnd.amazon.eventstream"
        } else {
            "application/json"
        };
        let signed_headers = [("content-type", "application/json"), ("accept", accept)];
        let signer = sigv4::Signer::bedrock(&self.aws);
        let auth = signer
            .sign(
                "POST",
                &url,
                &signed_headers,
                &translated.body,
                SystemTime::now(),
            )
            .map_err(|_| Error::MissingCredentials)?;
        let mut headers = HeaderMap::with_capacity(8);
        for (name, value) in signed_headers {
            headers.insert(name, HeaderValue::from_static(value));
        }
        for (name, value) in auth {
            headers.insert(name, value);
        }
        Ok(Ok(self
            .client
            .post(url)
            .headers(headers)
            .body(translated.body)))
    }

    /// Bedrock's answer as the Anthropic API would have given it.
    pub async fn response(&self, response: reqwest::Response) -> reqwest::Response {
        let status = response.status();
        let mut headers = HeaderMap::new();
        // AWS's request id is the closest thing to Anthropic's `request-id`.
        if let Some(id) = response.headers().get("x-amzn-requestid") {
            headers.insert("request-id", id.clone());
        }
        if status.is_success() {
            let is_stream = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/vnd.amazon.eventstream"));
            if !is_stream {
                // Messages JSON already: only the id header is added.
                let mut response = response;
                response.headers_mut().extend(headers);
                return response;
            }
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            let body = reqwest::Body::wrap_stream(eventstream::to_sse(response.bytes_stream()));
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            return reqwest::Response::from(out);
        }
        let upstream_headers = response.headers().clone();
        let body = read_capped(response).await;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let aws_type = errors::aws_error_type(&upstream_headers, &json);
        let mapped = errors::map(aws_type.as_deref(), status);
        if matches!(mapped.status.as_u16(), 401 | 403) {
            // The admin needs to know why; the type never holds a secret.
            tracing::warn!(
                aws.error = aws_type.as_deref().unwrap_or("unknown"),
                upstream.status = status.as_u16(),
                "Bedrock refused the account's credentials"
            );
        }
        let message = errors::message_of(&json).unwrap_or_else(|| {
            format!(
                "Bedrock answered {} {}",
                status.as_u16(),
                aws_type.as_deref().unwrap_or("without an error type")
            )
        });
        let mut out = synthetic_response(
            mapped.status,
            mapped.error_type,
            &message,
            mapped.retry_after,
        );
        out.headers_mut().extend(headers);
        out
    }
}

/// The parts of an Anthropic request Bedrock takes differently.
struct Translated {
    model: String,
    stream: bool,
    body: Bytes,
}

/// Anthropic body → Bedrock body. Errors are messages for a 400.
fn translate(client_headers: &HeaderMap, body: &[u8]) -> Result<Translated, String> {
    let mut object: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| "The request body must be a JSON object".to_owned())?;
    let model = match object.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err("model: Field required".to_owned()),
    };
    let stream = object.remove("stream").and_then(|v| v.as_bool()) == Some(true);
    object.insert(
        "anthropic_version".into(),
        Value::String(BEDROCK_ANTHROPIC_VERSION.into()),
    );
    // Bedrock takes betas in the body; the client's header list is kept in
    // order after any the body already names, without duplicates.
    let mut betas: Vec<Value> = match object.remove("anthropic_beta") {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    for value in client_headers.get_all("anthropic-beta") {
        let Ok(list) = value.to_str() else { continue };
        for beta in list.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            let beta = Value::String(beta.to_owned());
            if !betas.contains(&beta) {
                betas.push(beta);
            }
        }
    }
    if !betas.is_empty() {
        object.insert("anthropic_beta".into(), Value::Array(betas));
    }
    let body =
        serde_json::to_vec(&object).map_err(|_| "The request body cannot be encoded".to_owned())?;
    Ok(Translated {
        model,
        stream,
        body: Bytes::from(body),
    })
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay):
/// model ids hold `:` and ARNs hold `/`.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 8);
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn read_capped(response: reqwest::Response) -> Vec<u8> {
    use futures::StreamExt;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            let room = MAX_ERROR_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    // An error body that does not arrive is rendered from the status alone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), read).await;
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_loses_model_and_stream_and_gains_version_and_betas() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-beta",
            HeaderValue::from_static("context-1m-2025-08-07, interleaved-thinking-2025-05-14"),
        );
        let body = json!({
            "model": "claude-sonnet-4-5", "stream": true, "max_tokens": 10,
            "anthropic_beta": ["interleaved-thinking-2025-05-14"],
            "messages": [{"role": "user", "content": "hi"}]
        });
        let t = translate(&headers, body.to_string().as_bytes()).unwrap();
        assert_eq!(t.model, "claude-sonnet-4-5");
        assert!(t.stream);
        let sent: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            sent,
            json!({
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
                "anthropic_version": "bedrock-2023-05-31",
                "anthropic_beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"],
            })
        );
        assert!(translate(&HeaderMap::new(), b"[1]").is_err());
        assert!(translate(&HeaderMap::new(), br#"{"max_tokens":1}"#).is_err());
    }

    #[test]
    fn model_ids_are_encoded_as_one_segment() {
        assert_eq!(
            encode_segment("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "anthropic.claude-sonnet-4-5-20250929-v1%3A0"
        );
        assert_eq!(
            encode_segment("arn:aws:bedrock:us-east-1:1:inference-profile/us.x"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x"
        );
    }
}
