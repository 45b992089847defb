//! Reads only what routing needs from a request body (model, stream,
//! max_tokens, metadata.user_id, an input-size estimate) through borrowed serde
//! views; the body itself is forwarded unchanged. Also extracts usage from a
//! non-streaming Message response.
//!
//! CONTRACT (implemented by the parsing line of work; signatures are fixed).

use crate::domain::TokenUsage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// `metadata.user_id` as sent (Claude Code sends a JSON string).
    pub user_id: Option<String>,
    /// ≈ text bytes / 4, base64 payloads excluded.
    pub estimated_input_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// Not JSON or not an object; the message says where.
    #[error("{0}")]
    Malformed(String),
    #[error("model: Field required")]
    MissingModel,
    #[error("messages: Field required")]
    MissingMessages,
}

/// For `/v1/messages`: model and messages are required.
#[allow(unused_variables)]
pub fn inspect_messages(body: &[u8]) -> Result<RequestInfo, InspectError> {
    todo!()
}

/// For `/v1/messages/count_tokens`: model is required; messages are upstream's business.
#[allow(unused_variables)]
pub fn inspect_count_tokens(body: &[u8]) -> Result<RequestInfo, InspectError> {
    todo!()
}

/// Model and usage from a non-streaming Message JSON response.
#[allow(unused_variables)]
pub fn message_usage(body: &[u8]) -> Option<(String, TokenUsage)> {
    todo!()
}
