//! Token and cost accounting: the pricing table, cost arithmetic, and the
//! batched writer that moves usage from the hot path to the store.

pub mod analytics;
pub mod insights;
pub mod pricing;
pub mod writer;

pub use writer::{UsageSink, WriterHealth};
