//! `vertex` accounts: Claude on Google Vertex AI. The adapter signs a JWT
//! with the service account's RSA key (RS256, through `ring`), exchanges it
//! at the key file's `token_uri` for an access token (cached, renewed five
//! minutes before expiry, one exchange at a time), and sends the Anthropic
//! request to `…/publishers/anthropic/models/{model}:rawPredict` (or
//! `:streamRawPredict`) with `model` moved into the path and
//! `anthropic_version: vertex-2023-10-16` in the body. Vertex answers in
//! Anthropic's own format (JSON and SSE), so successes pass through; Google's
//! error JSON is rendered as Anthropic's.

use super::{synthetic_response, Error};
use crate::domain::{Account, Secret};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// The `anthropic_version` Vertex's Claude models take in the body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Renew this long before the token expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Rest after a 429 (`RESOURCE_EXHAUSTED`), which carries no `retry-after`.
const QUOTA_RETRY_AFTER_SECS: u64 = 10;

/// Anthropic name → Vertex model id, where the generic rule (a dated name
/// `x-YYYYMMDD` becomes `x@YYYYMMDD`) does not give it.
const BUILTIN: &[(&str, &str)] = &[
    ("claude-opus-4-5", "claude-opus-4-5@20251101"),
    ("claude-haiku-4-5", "claude-haiku-4-5@20251001"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5@20250929"),
    ("claude-opus-4-1", "claude-opus-4-1@20250805"),
    ("claude-opus-4-0", "claude-opus-4@20250514"),
    ("claude-opus-4-20250514", "claude-opus-4@20250514"),
    ("claude-sonnet-4-0", "claude-sonnet-4@20250514"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4@20250514"),
    ("claude-3-7-sonnet-latest", "claude-3-7-sonnet@20250219"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku@20241022"),
];

/// The Vertex model id for a requested (possibly already mapped) model.
pub fn model_id(model: &str) -> String {
    if model.contains('@') {
        return model.to_owned();
    }
    if let Some((_, id)) = BUILTIN.iter().find(|(name, _)| *name == model) {
        return (*id).to_owned();
    }
    match model.rsplit_once('-') {
        Some((name, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{name}@{date}")
        }
        _ => model.to_owned(),
    }
}

/// The fields of a Google service-account key file the adapter uses.
#[derive(serde::Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

pub struct VertexAdapter {
    endpoint: String,
    project: String,
    region: String,
    client_email: String,
    token_uri: String,
    key: RsaKeyPair,
    client: reqwest::Client,
    /// The current access token and when it expires; the lock is held during
    /// an exchange so concurrent requests wait for one exchange.
    token: Mutex<Option<(Secret, SystemTime)>>,
    listed: Vec<String>,
}

impl VertexAdapter {
    pub fn new(account: &Account, client: reqwest::Client) -> Result<VertexAdapter, Error> {
        let gcp = account
            .credentials
            .gcp
            .as_ref()
            .ok_or(Error::MissingCredentials)?;
        let sa: ServiceAccount = serde_json::from_str(gcp.service_account_json.expose())
            .map_err(|_| Error::MissingCredentials)?;
        let key = parse_private_key(&sa.private_key).ok_or(Error::MissingCredentials)?;
        let endpoint = match account.base_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if gcp.region == "global" => "https://aiplatform.googleapis.com".to_owned(),
            None => format!("https://{}-aiplatform.googleapis.com", gcp.region),
        };
        let mut listed: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
        for m in &account.routing.model_mapping {
            if !listed.contains(&m.from) {
                listed.push(m.from.clone());
            }
        }
        Ok(VertexAdapter {
            endpoint,
            project: gcp.project_id.clone(),
            region: gcp.region.clone(),
            client_email: sa.client_email,
            token_uri: sa.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            key,
            client,
            token: Mutex::new(None),
            listed,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.endpoint
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn listed_models(&self) -> &[String] {
        &self.listed
    }

    /// A valid access token, exchanging a new JWT when due.
    async fn access_token(&self) -> Result<Secret, Error> {
        let mut slot = self.token.lock().await;
        if let Some((token, expires)) = slot.as_ref() {
            if SystemTime::now() + RENEW_BEFORE < *expires {
                return Ok(token.clone());
            }
        }
        let (token, expires) = self.exchange().await?;
        *slot = Some((token.clone(), expires));
        Ok(token)
    }

    async fn exchange(&self) -> Result<(Secret, SystemTime), Error> {
        let now = SystemTime::now();
        let assertion = self.jwt(now)?;
        let response = self
            .client
            .post(&self.token_uri)
            .timeout(TOKEN_TIMEOUT)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|_| Error::Refresh("token endpoint unreachable".into()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            // `error` is a code such as invalid_grant; never a secret.
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            tracing::warn!(
                upstream.status = status.as_u16(),
                oauth.error = code,
                "Vertex token exchange refused"
            );
            return Err(Error::Refresh(format!("token exchange refused ({code})")));
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Refresh("token response without access_token".into()))?;
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
        Ok((Secret::new(token), now + Duration::from_secs(lifetime)))
    }

    /// The RS256-signed assertion Google's token endpoint takes.
    fn jwt(&self, now: SystemTime) -> Result<String, Error> {
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
        let claims = b64(&json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + 3600,
        }));
        let input = format!("{header}.{claims}");
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::Refresh("cannot sign the token request".into()))?;
        Ok(format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The Vertex call for an Anthropic `/v1/messages` request, or a
    /// ready-made Anthropic error response when the body cannot be sent.
    pub async fn request(
        &self,
        path: &str,
        client_headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Result<reqwest::RequestBuilder, reqwest::Response>, Error> {
        if path != "/v1/messages" {
            return Err(Error::Unsupported("this endpoint"));
        }
        let Some((model, stream, body)) = translate(body) else {
            return Ok(Err(synthetic_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "The request body must be a JSON object with a model",
                None,
            )));
        };
        let token = self.access_token().await?;
        let action = if stream {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        let url = format!(
            "{}/v1/projects/{}/locations/{}/publishers/anthropic/models/{}:{action}",
            self.endpoint,
            self.project,
            self.region,
            model_id(&model)
        );
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Vertex takes betas as the header, like the Anthropic API.
        for beta in client_headers.get_all("anthropic-beta") {
            headers.append("anthropic-beta", beta.clone());
        }
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::MissingCredentials)?;
        bearer.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, bearer);
        Ok(Ok(self.client.post(url).headers(headers).body(body)))
    }

    /// Successes pass through; Google's errors become Anthropic's.
    pub async fn response(&self, response: reqwest::Response) -> reqwest::Response {
        let status = response.status();
        if status.is_success() {
            return response;
        }
        let body = response.bytes().await.unwrap_or_default();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if json.get("type").and_then(Value::as_str) == Some("error") {
            // Already Anthropic's (the model's own error, e.g. overloaded).
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            out.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return reqwest::Response::from(out);
        }
        let message = json
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Vertex AI answered {}", status.as_u16()));
        let (error_type, retry_after) = match status.as_u16() {
            400 => ("invalid_request_error", None),
            401 => ("authentication_error", None),
            403 => ("permission_error", None),
            404 => ("not_found_error", None),
            413 => ("request_too_large", None),
            429 => ("rate_limit_error", Some(QUOTA_RETRY_AFTER_SECS)),
            529 | 503 => ("overloaded_error", None),
            _ => ("api_error", None),
        };
        synthetic_response(status, error_type, &message, retry_after)
    }
}

/// Anthropic body → (model, stream, Vertex body).
fn translate(body: &[u8]) -> Option<(String, bool, Bytes)> {
    let mut object: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let model = match object.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return None,
    };
    let stream = object.get("stream").and_then(Value::as_bool) == Some(true);
    object.insert(
        "anthropic_version".into(),
        Value::String(VERTEX_ANTHROPIC_VERSION.into()),
    );
    let body = serde_json::to_vec(&object).ok()?;
    Some((model, stream, Bytes::from(body)))
}

/// A PKCS#8 PEM private key (what Google's key files hold).
fn parse_private_key(pem: &str) -> Option<RsaKeyPair> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    RsaKeyPair::from_pkcs8(&der).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_model_ids() {
        assert_eq!(model_id("claude-sonnet-4-5"), "claude-sonnet-4-5@20250929");
        assert_eq!(
            model_id("claude-sonnet-4-5-20250929"),
            "claude-sonnet-4-5@20250929"
        );
        assert_eq!(model_id("claude-opus-4-20250514"), "claude-opus-4@20250514");
        assert_eq!(
            model_id("claude-haiku-4-5@20251001"),
            "claude-haiku-4-5@20251001"
        );
        assert_eq!(model_id("house-model"), "house-model");
    }

    #[test]
    fn body_keeps_stream_and_gains_version() {
        let (model, stream, body) =
            translate(br#"{"model":"claude-sonnet-4-5","stream":true,"max_tokens":5}"#).unwrap();
        assert_eq!(model, "claude-sonnet-4-5");
        assert!(stream);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"stream": true, "max_tokens": 5, "anthropic_version": "vertex-2023-10-16"})
        );
        assert!(translate(br#"{"max_tokens":5}"#).is_none());
    }
}
