//! What a request reserves against token and cost limits before it runs:
//! input ≈ text bytes / 4 (RequestInfo already measures it, base64 payloads
//! excluded), output = min(max_tokens, 4,096) — Claude Code asks for 64,000,
//! which would reserve far more than a turn usually costs — priced at the
//! requested model's list price × the key's multiplier.

use crate::domain::{NanoUsd, TokenUsage};
use crate::usage::pricing::{billed_cost, PricingTable};

/// Output tokens reserved at most (the same cap the meter bills a cancelled
/// request with).
pub const ESTIMATED_OUTPUT_CAP: u64 = 4_096;

/// A request's reservation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// All four token kinds (here input + output).
    pub tokens: u64,
    /// Billed cost: list cost × the key's multiplier. Zero for a model
    /// without a known price (its settlement is unpriced too).
    pub billed_cost: NanoUsd,
}

/// The reservation for a messages request.
pub fn estimate(
    model: &str,
    estimated_input_tokens: u64,
    max_tokens: Option<u64>,
    pricing: &PricingTable,
    multiplier: f64,
) -> Estimate {
    let output = max_tokens
        .unwrap_or(ESTIMATED_OUTPUT_CAP)
        .min(ESTIMATED_OUTPUT_CAP);
    let usage = TokenUsage {
        input: estimated_input_tokens,
        output,
        ..TokenUsage::default()
    };
    let list = pricing.cost(model, &usage).unwrap_or(NanoUsd::ZERO);
    Estimate {
        tokens: usage.total(),
        billed_cost: billed_cost(list, multiplier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_priced_at_list_times_multiplier() {
        let pricing = PricingTable::embedded();
        let e = estimate("claude-sonnet-4-5", 1_000, Some(64_000), &pricing, 1.0);
        assert_eq!(e.tokens, 1_000 + 4_096);
        let list = pricing
            .cost(
                "claude-sonnet-4-5",
                &TokenUsage {
                    input: 1_000,
                    output: 4_096,
                    ..TokenUsage::default()
                },
            )
            .unwrap();
        assert_eq!(e.billed_cost, list);
        assert!(list > NanoUsd::ZERO);
        let doubled = estimate("claude-sonnet-4-5", 1_000, Some(64_000), &pricing, 2.0);
        assert_eq!(doubled.billed_cost.0, list.0 * 2);
        let small = estimate("claude-sonnet-4-5", 10, Some(64), &pricing, 1.0);
        assert_eq!(small.tokens, 74);
        let unpriced = estimate("no-such-model", 10, None, &pricing, 1.0);
        assert_eq!(unpriced.tokens, 10 + 4_096);
        assert_eq!(unpriced.billed_cost, NanoUsd::ZERO);
    }
}
