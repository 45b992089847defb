//! The client-facing hot path.
pub mod headers;
pub mod inspect;
pub mod sse;
