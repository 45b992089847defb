//! The pricing table: per-token prices of Claude models, embedded at build
//! time (derived from LiteLLM's price list) and overridable by a file; also the
//! built-in model list served by `/v1/models` when no upstream answers.
//!
//! CONTRACT (implemented by the parsing line of work; signatures are fixed).

use crate::domain::{NanoUsd, TokenUsage};
use std::path::Path;

/// Prices in pico-USD per token (10^-12 USD), so every list price is an integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

/// A model of the built-in table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    /// RFC 3339.
    pub created_at: String,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read pricing file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid pricing file {0}: {1}")]
    Parse(String, String),
}

#[derive(Clone, Debug, Default)]
pub struct PricingTable {
    _private: (),
}

#[allow(unused_variables)]
impl PricingTable {
    pub fn embedded() -> PricingTable {
        todo!()
    }
    /// The embedded table with the file's entries laid over it.
    pub fn with_overrides(path: &Path) -> Result<PricingTable, Error> {
        todo!()
    }
    /// Exact name, then the name without a date/version suffix, then aliases.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        todo!()
    }
    /// List cost of the tokens, or None when the model is unpriced.
    pub fn cost(&self, model: &str, tokens: &TokenUsage) -> Option<NanoUsd> {
        todo!()
    }
    /// Built-in models, newest first.
    pub fn models(&self) -> &[ModelInfo] {
        todo!()
    }
}

/// Billed cost = list cost × the key's multiplier, rounded to the nearest nano-dollar.
#[allow(unused_variables)]
pub fn billed_cost(list: NanoUsd, multiplier: f64) -> NanoUsd {
    todo!()
}
