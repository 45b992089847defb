//! Token and cost accounting.
pub mod pricing;
