//! A simulated Google Vertex AI for Claude: an OAuth token endpoint
//! (`POST /vertex/token`, JWT-bearer grant) and
//! `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict`
//! / `:streamRawPredict`.
//!
//! The token endpoint checks the assertion's RS256 signature against the
//! public key registered for its issuer (the service account e-mail) and
//! its expiry; predict calls need one of the tokens it issued, a body
//! without `model` but with `anthropic_version: vertex-2023-10-16`, and a
//! Vertex model id (`claude-…@date`). Answers are the simulator's usual
//! Messages JSON or SSE; errors are Google-shaped. Faults are keyed by the
//! service account e-mail.
//!
//! The key below is a throwaway RSA key made for the simulator only.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use parking_lot::Mutex;
use ring::signature::{KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use super::cache::Prompt;
use super::faults::Fault;
use super::messages::{hang, Reply};
use super::stream::{self, StreamPlan};
use super::{wire, Ctx};

/// The service account every simulator accepts.
pub const SIM_GCP_CLIENT_EMAIL: &str = "relay-sim@sim-project.iam.gserviceaccount.com";
pub const SIM_GCP_PROJECT_ID: &str = "sim-project";

/// The simulator's throwaway service-account key (PKCS#8 PEM).
pub const SIM_GCP_PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDHYDMTEcrLv9o9\n1Z5ANGeE597E2sw4Y7dtT9BpIth5MtZpUlleS1bqXrO4PkL9kdI30GtSXoLBJx6m\nhRwK1iNXGvRevspm8zOsrccrIoIOe7DN95qgQWPhIyw0ld9g9b26DwTcw6A9Du0v\nrtPL3TzzIGSoRhqi4IWMdfKUwFGOM4g6MDK7LwSkmQ/UU7xaXUuXfzFJCGQTLWqh\naefrz89sduQ6oHWarigTIvZqkkTLadDSbQ4cBA3yNZFX6KYqUBgNbCuYVabFp2ds\npRr+zl/r0QUEWuCIr93GTFt6Lr4Z+vVJKA9WKu8sOeyHYg48+DksczX5phZK9Svz\n31N+rw9NAgMBAAECggEABnJG1HwDyZi3br5kcoD/Q93XZxgH+F7JBIDLJUsaIrkR\nE7C08QaQld1gBDoHInm/iUx02+HwalxgclPldzg7Rkq50gJrOu7sIc4wnWVtPRik\nu9QgrMPQfewMNtsNsO3hJ43qw1ST7sV3x83oTTQnD1lhx8sUe2W1C7iYklSxjl5v\nkgCdmMJfZfP47ANISdzNFCi/iS9W0Zy8PlMrIfwYo6AxpCSO/06vbAI8stbIdCGg\ns4oD+n/I3p+GZWWKJnGBW4jzlivbi9wD0LX+CTskzVKqOHcl2P3MhqbkuON28miG\nW2ssft/lTGqKYr9MPKGNQ3XWtaAjUW09axpYhuB7gQKBgQDjsRNNwGUHQ1irIv1M\nmF1DuT4sIXaxWBmgwPoUZGkPAVAhbL9eEhhOgOTjreQCB/54j82btrMwKS4T+zdJ\nUyyrZ4VoMPuqu+X57mqLA+wTFwJ5G9Ix8dGYatgaIUxPMwYAZMncH/rlZCTIYbPe\n/Sr5OhctRxmff6w7wQCkV1EgYQKBgQDgKeQKYs/FCtOOnb3QoZycG+OMeMUK7d9A\nv4a5qB0aGCyHFSJQNd4gxC3MiUcNX/tAcK+xo5ABnfj9bpSqCoZkq2viEzZ//6kQ\nI4W85R28SLrJ3nZH4e9dGkkzeu5K6mdF171KCgtKYM7aS+Un42gFtsl4B55Z2hPM\nwmwzDaIGbQKBgQC7yHSlMUGhJdfg/LBvFVIF4qb1+ntLc99fBwi4/L7wkyKlDm0d\nhkrpo8AiTm23hyRGBkOKYrmRxMSt0ggcvy4eBvitn4hPnTvkTs8r64YtkFKH03wd\nmNRFogisND4dK3WNqZIZq35e5aK4aGvSQnXIqjInM3ZcZw2DEoAXCbRswQKBgFnx\ndQaVzzgIuAopUNg9gFFC/3KFospX15RrROuJgOPPf05UNIhqlM4g6R+AlXnQYUfh\n7x0fu9BqSlWl4RC5WGNcRNVZUCzbsEJBfo/kfqHlrM0C7gK5rQl2WpjFYoe8teNY\nRSNIFG+rmFQOz8vJexuP1BbNN8RltDwcZr21YqWhAoGAV9yrBUhe3DCVvEtYkaIg\niqEuUlkwt946WuVVyHUn/wui298GjcXsehcYnAXS40N5VXVJH3BBojSA/xLdtRiZ\nlE4dyS+hsWc362LOXgnKJmZkcHWAXm00vT7VUo/rzSKsFjEhMDDMzkoZjfiEq/h7\nRQxDEIGsTwm0zqA7FexVPps=\n-----END PRIVATE KEY-----";

const VERTEX_VERSION: &str = "vertex-2023-10-16";
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A service-account key file for `client_email` whose `token_uri` is this
/// simulator's token endpoint at `sim_base_url`.
pub fn service_account_json(sim_base_url: &str, client_email: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": SIM_GCP_PROJECT_ID,
        "private_key_id": "sim",
        "private_key": SIM_GCP_PRIVATE_KEY_PEM,
        "client_email": client_email,
        "token_uri": format!("{sim_base_url}/vertex/token"),
    })
    .to_string()
}

/// Registered service accounts (e-mail → public key, DER) and issued tokens.
pub(crate) struct GcpState {
    keys: Mutex<HashMap<String, Vec<u8>>>,
    tokens: Mutex<HashMap<String, (String, SystemTime)>>,
}

impl Default for GcpState {
    fn default() -> Self {
        let state = GcpState {
            keys: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        };
        state.add(SIM_GCP_CLIENT_EMAIL);
        state
    }
}

impl GcpState {
    /// Accepts `client_email` signing with the simulator's key.
    pub(crate) fn add(&self, client_email: &str) {
        if let Some(public) = sim_public_key() {
            self.keys.lock().insert(client_email.to_owned(), public);
        }
    }

    fn email_of(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.lock();
        let (email, expires) = tokens.get(token)?;
        (SystemTime::now() < *expires).then(|| email.clone())
    }
}

fn sim_public_key() -> Option<Vec<u8>> {
    let b64: String = SIM_GCP_PRIVATE_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let pair = RsaKeyPair::from_pkcs8(&der).ok()?;
    Some(pair.public_key().as_ref().to_vec())
}

fn google_error(status: u16, google_status: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    wire::json_response(
        code,
        &json!({"error": {"code": status, "message": message, "status": google_status}}),
    )
}

fn oauth_error(error: &str, description: &str) -> Response {
    wire::json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

/// `POST /vertex/token`: the JWT-bearer grant.
pub(crate) async fn token(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url_form(&body);
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing assertion");
    };
    let email = match verify_jwt(&ctx, assertion) {
        Ok(email) => email,
        Err(description) => return oauth_error("invalid_grant", description),
    };
    let token = format!("ya29.sim-{}", uuid::Uuid::new_v4().simple());
    ctx.inner
        .gcp
        .tokens
        .lock()
        .insert(token.clone(), (email, SystemTime::now() + TOKEN_LIFETIME));
    ctx.inner
        .refreshes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    wire::json_response(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": TOKEN_LIFETIME.as_secs(), "token_type": "Bearer"}),
    )
}

/// Checks an RS256 JWT assertion; returns its issuer.
fn verify_jwt(ctx: &Ctx, jwt: &str) -> Result<String, &'static str> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid JWT: not three parts");
    };
    let header: Value = b64
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("Invalid JWT header")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("Invalid JWT: alg must be RS256");
    }
    let claims: Value = b64
        .decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or("Invalid JWT claims")?;
    let email = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or("Invalid JWT: no iss")?;
    let Some(public) = ctx.inner.gcp.keys.lock().get(email).cloned() else {
        return Err("Invalid JWT Signature.");
    };
    let signature = b64
        .decode(signature)
        .map_err(|_| "Invalid JWT Signature.")?;
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp <= now {
        return Err("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe");
    }
    if claims.get("scope").and_then(Value::as_str).is_none() {
        return Err("Invalid JWT: no scope");
    }
    Ok(email.to_owned())
}

/// `application/x-www-form-urlencoded` → map.
fn url_form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// `POST …/publishers/anthropic/models/{model}:rawPredict|streamRawPredict`.
pub(crate) async fn predict(
    State(ctx): State<Ctx>,
    Path((_project, _location, model_action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model_id, action)) = model_action.rsplit_once(':') else {
        return google_error(404, "NOT_FOUND", "Unknown method");
    };
    if !matches!(action, "rawPredict" | "streamRawPredict") {
        return google_error(404, "NOT_FOUND", "Unknown method");
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(email) = token.and_then(|t| ctx.inner.gcp.email_of(t)) else {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let streaming = parsed
        .as_ref()
        .and_then(|b| b.get("stream"))
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(fault) = ctx.inner.faults.take(&email, streaming) {
        match fault {
            Fault::RateLimited { .. } | Fault::SpendLimited => {
                return google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.",
                )
            }
            Fault::Overloaded => {
                return wire::error_response(
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "overloaded_error",
                    "Overloaded",
                    "",
                )
            }
            Fault::ServerError => return google_error(500, "INTERNAL", "Internal error encountered."),
            Fault::Unauthorized => {
                return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            }
            Fault::Forbidden => {
                return google_error(403, "PERMISSION_DENIED", "Permission denied on resource project.")
            }
            Fault::Hang => return hang(&ctx, "").await,
            other => return respond(&ctx, &email, model_id, parsed, Some(other)),
        }
    }
    respond(&ctx, &email, model_id, parsed, None)
}

fn respond(
    ctx: &Ctx,
    email: &str,
    model_id: &str,
    body: Option<Value>,
    fault: Option<Fault>,
) -> Response {
    let Some((name, date)) = model_id.split_once('@') else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("Publisher Model `{model_id}` was not found or your project does not have access to it."),
        );
    };
    let Some(body) = body.filter(Value::is_object) else {
        return wire::error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Invalid JSON body",
            "",
        );
    };
    if body.get("model").is_some() {
        return wire::error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model: Extra inputs are not permitted",
            "",
        );
    }
    if body.get("anthropic_version").and_then(Value::as_str) != Some(VERTEX_VERSION) {
        return wire::error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic_version: Input should be 'vertex-2023-10-16'",
            "",
        );
    }
    let Some(max_tokens) = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    else {
        return wire::error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
            "",
        );
    };
    let model = format!("{name}-{date}");
    let usage = ctx.inner.cache.account(email, &Prompt::parse(&body));
    let reply = Reply::build(&body, max_tokens);
    let output = reply.pieces.len() as u64;
    let message_id = format!("msg_vrtx_{}", &wire::message_id()[4..]);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream::sse_response(
            ctx.clone(),
            StreamPlan {
                message_id,
                model,
                reply,
                usage,
                fault,
            },
        );
    }
    wire::json_response(
        StatusCode::OK,
        &json!({
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [reply.content_block()],
            "stop_reason": reply.stop_reason,
            "stop_sequence": null,
            "usage": usage.to_json(output),
        }),
    )
}
