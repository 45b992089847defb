//! Incremental SSE parser that watches an Anthropic event stream on the side
//! for usage. Pure: no I/O, never re-serialises, never holds the whole stream.
//!
//! CONTRACT (implemented by the parsing line of work; signatures are fixed).

use crate::domain::TokenUsage;

/// An `event: error` seen in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub error_type: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct SseUsageParser {
    _private: (),
}

#[allow(unused_variables)]
impl SseUsageParser {
    pub fn new() -> Self {
        todo!()
    }
    /// Feeds the next chunk exactly as received (events may be split anywhere).
    pub fn feed(&mut self, chunk: &[u8]) {
        todo!()
    }
    /// Usage so far: input/cache from `message_start`, output from the last `message_delta`.
    pub fn usage(&self) -> TokenUsage {
        todo!()
    }
    /// `message.model` from `message_start`.
    pub fn model(&self) -> Option<&str> {
        todo!()
    }
    pub fn saw_message_start(&self) -> bool {
        todo!()
    }
    /// Any `content_block_*` event seen (content reached the client).
    pub fn saw_content(&self) -> bool {
        todo!()
    }
    /// A `message_delta` carrying `usage.output_tokens` was seen.
    pub fn saw_output_usage(&self) -> bool {
        todo!()
    }
    pub fn saw_message_stop(&self) -> bool {
        todo!()
    }
    pub fn error(&self) -> Option<&StreamError> {
        todo!()
    }
    /// Characters of text/thinking/partial_json deltas seen (for estimates).
    pub fn output_chars(&self) -> u64 {
        todo!()
    }
}
