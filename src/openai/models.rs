//! Anthropic model objects and lists → OpenAI's shapes: a list is
//! `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`,
//! one model is the bare object. `created` is Unix seconds: the relay's own
//! superset shape already carries it; Anthropic's `created_at` (RFC 3339) is
//! converted when it does not.

use super::error::OpenAiError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

const OWNER: &str = "anthropic";

/// An Anthropic (or relay superset) models list → OpenAI's list.
pub fn to_openai_list(body: &[u8]) -> Result<Bytes, OpenAiError> {
    let list: List =
        serde_json::from_slice(body).map_err(|_| OpenAiError::bad_upstream_response())?;
    let out = ListOut {
        object: "list",
        data: list.data.iter().map(Model::to_openai).collect(),
    };
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|_| OpenAiError::bad_upstream_response())
}

/// One Anthropic model object (`GET /v1/models/{id}`) → OpenAI's model object.
pub fn to_openai_model(body: &[u8]) -> Result<Bytes, OpenAiError> {
    let model: Model =
        serde_json::from_slice(body).map_err(|_| OpenAiError::bad_upstream_response())?;
    serde_json::to_vec(&model.to_openai())
        .map(Bytes::from)
        .map_err(|_| OpenAiError::bad_upstream_response())
}

#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow)]
    data: Vec<Model<'a>>,
}

#[derive(Deserialize)]
struct Model<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    created: Option<i64>,
    #[serde(borrow)]
    created_at: Option<Cow<'a, str>>,
}

impl Model<'_> {
    fn to_openai(&self) -> ModelOut<'_> {
        let created = self.created.or_else(|| {
            self.created_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp())
        });
        ModelOut {
            id: &self.id,
            object: "model",
            created: created.unwrap_or(0),
            owned_by: OWNER,
        }
    }
}

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<ModelOut<'a>>,
}

#[derive(Serialize)]
struct ModelOut<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn anthropic_list() {
        let body = json!({
            "data": [
                {"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6", "created_at": "2026-02-17T00:00:00Z"},
                {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-15T00:00:00+00:00", "created": 1_760_486_400}
            ],
            "has_more": false, "first_id": "claude-sonnet-4-6", "last_id": "claude-haiku-4-5"
        });
        let out: Value =
            serde_json::from_slice(&to_openai_list(body.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"object": "list", "data": [
                {"id": "claude-sonnet-4-6", "object": "model", "created": 1_771_286_400, "owned_by": "anthropic"},
                {"id": "claude-haiku-4-5", "object": "model", "created": 1_760_486_400, "owned_by": "anthropic"}
            ]})
        );
    }

    #[test]
    fn one_model_and_missing_dates() {
        let out: Value = serde_json::from_slice(
            &to_openai_model(br#"{"type":"model","id":"claude-x","created_at":"not a date"}"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"id": "claude-x", "object": "model", "created": 0, "owned_by": "anthropic"})
        );
        assert_eq!(to_openai_list(b"{}").unwrap_err().status(), 502);
    }
}
