//! The OpenAI Chat Completions face, as a pure translation layer: request
//! bodies into Anthropic Messages bodies, and Anthropic answers (JSON, SSE,
//! errors, model lists) back into OpenAI's shapes. No I/O, no routes, no
//! state: the relay wires these into its own path (auth, failover, usage tap)
//! and keeps every byte it sends upstream an ordinary Messages request.
//!
//! How a request flows (what the relay does around these functions):
//! 1. [`request::to_anthropic`] turns the client's body into a Messages body
//!    plus the [`ReplyContext`] the answer needs; its error renders as-is.
//! 2. The relay inspects, bills and forwards that body like any other.
//! 3. A non-streaming 200 goes through [`response::to_chat_completion`]; a
//!    stream goes tap → [`stream::ChunkStream`] → client, so the usage tap
//!    still sees Anthropic's events; an upstream error body goes through
//!    [`error::OpenAiError::from_anthropic_body`].
//!
//! Depends on nothing else in the crate (not on `relay`, which depends on it).

pub mod error;
mod events;
pub mod models;
pub mod request;
pub mod response;
pub mod stream;

pub use error::OpenAiError;
pub use request::{to_anthropic, FetchedImage, TranslateOptions, Translated};
pub use response::to_chat_completion;
pub use stream::{ChunkConverter, ChunkStream};

/// What the answer's translation needs to know about the request. Made by
/// [`request::to_anthropic`]; handed to the response or stream converter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyContext {
    /// The model the client asked for: the answer's `model` when upstream
    /// does not name one.
    pub model: String,
    /// Unix seconds for `created` (every chunk of a stream carries the same).
    pub created: u64,
    /// Stream only: end with a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// `response_format: json_schema` was served by forcing this tool: its
    /// input is the answer's `content`, not a tool call.
    pub json_tool: Option<String>,
}

impl ReplyContext {
    /// A context for `model` stamped with the current time.
    pub fn new(model: impl Into<String>) -> Self {
        ReplyContext {
            model: model.into(),
            created: unix_now(),
            include_usage: false,
            json_tool: None,
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `chatcmpl-` + Anthropic's message id, so a client-side id leads straight
/// to the upstream request in logs.
fn completion_id(message_id: Option<&str>) -> String {
    match message_id {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-relay{}", uuid::Uuid::new_v4().simple()),
    }
}
