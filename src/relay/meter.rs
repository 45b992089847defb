//! Exactly one usage record per client request. A [`Meter`] carries what the
//! record needs; the [`Bill`] guard owns it and emits the record when the
//! request ends — on success, on a relayed error, or, through `Drop`, when the
//! client goes away before the answer (then with estimated counts).

use crate::domain::{AccountId, KeyId, NanoUsd, TokenUsage, UsageRecord};
use crate::usage::pricing::{billed_cost, PricingTable};
use crate::usage::UsageSink;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Output tokens assumed for a request cancelled before its answer (Claude
/// Code asks for 64,000, which would grossly overbill).
pub const ESTIMATED_OUTPUT_CAP: u64 = 4_096;

/// Status recorded for a request the client abandoned (nginx's convention).
pub const STATUS_CLIENT_CLOSED: u16 = 499;

/// Everything a usage record needs besides the outcome.
pub struct Meter {
    pub sink: UsageSink,
    pub pricing: Arc<PricingTable>,
    pub key_id: KeyId,
    pub cost_multiplier: f64,
    pub requested_model: String,
    pub stream: bool,
    pub started: Instant,
    pub estimated_input_tokens: u64,
    pub max_tokens: Option<u64>,
}

/// How a request ended, for its record.
pub struct Outcome<'a> {
    pub account_id: Option<AccountId>,
    /// The model upstream reported, else the requested one.
    pub model: Option<&'a str>,
    pub tokens: TokenUsage,
    pub estimated: bool,
    pub status: u16,
    pub ttfb: Option<Duration>,
}

impl Meter {
    /// What a request that never got its answer is billed: its reservation estimate.
    pub fn estimate(&self) -> TokenUsage {
        TokenUsage {
            input: self.estimated_input_tokens,
            output: self
                .max_tokens
                .unwrap_or(ESTIMATED_OUTPUT_CAP)
                .min(ESTIMATED_OUTPUT_CAP),
            ..TokenUsage::default()
        }
    }

    fn record(&self, key_id: Option<KeyId>, outcome: Outcome<'_>) -> UsageRecord {
        let model = outcome.model.unwrap_or(&self.requested_model);
        let list = self.pricing.cost(model, &outcome.tokens);
        let list_cost = list.unwrap_or(NanoUsd::ZERO);
        UsageRecord {
            at: Utc::now(),
            key_id,
            account_id: outcome.account_id,
            requested_model: self.requested_model.clone(),
            model: model.to_string(),
            tokens: outcome.tokens,
            list_cost,
            billed_cost: if key_id.is_some() {
                billed_cost(list_cost, self.cost_multiplier)
            } else {
                NanoUsd::ZERO
            },
            unpriced: list.is_none() && outcome.tokens.total() > 0,
            estimated: outcome.estimated,
            status: outcome.status,
            stream: self.stream,
            latency_ms: self.started.elapsed().as_millis() as u64,
            ttfb_ms: outcome.ttfb.map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// A failed attempt that upstream may still charge: billed to its account only.
    pub fn charge_account_only(&self, outcome: Outcome<'_>) {
        self.sink.record(self.record(None, outcome));
    }
}

/// Owns the request's one record. Emits it once: by [`Bill::finish`], or on
/// drop as an estimated, client-closed record.
pub struct Bill {
    meter: Option<Meter>,
    /// The key policy's hold on this request, settled with the record.
    admission: Option<crate::limits::Admission>,
    /// The account of the attempt in progress, billed if the client leaves now.
    account_id: Option<AccountId>,
}

impl Bill {
    pub fn new(meter: Meter) -> Bill {
        Bill {
            meter: Some(meter),
            admission: None,
            account_id: None,
        }
    }

    pub fn meter(&self) -> Option<&Meter> {
        self.meter.as_ref()
    }

    pub fn set_admission(&mut self, admission: crate::limits::Admission) {
        self.admission = Some(admission);
    }

    /// Records the request and settles its policy reservation with the same amounts.
    fn emit(&mut self, meter: Meter, record: UsageRecord) {
        if let Some(admission) = self.admission.take() {
            // A request that never reached an account is not counted.
            admission.settle(
                record.tokens.total(),
                record.billed_cost,
                record.account_id.is_some(),
            );
        }
        meter.sink.record(record);
    }

    pub fn set_account(&mut self, account_id: Option<AccountId>) {
        self.account_id = account_id;
    }

    pub fn finish(mut self, outcome: Outcome<'_>) {
        if let Some(meter) = self.meter.take() {
            let record = meter.record(Some(meter.key_id), outcome);
            self.emit(meter, record);
        }
    }
}

impl Drop for Bill {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            // Only an attempt that reached an account can have cost anything.
            if self.account_id.is_some() {
                let tokens = meter.estimate();
                let record = meter.record(
                    Some(meter.key_id),
                    Outcome {
                        account_id: self.account_id,
                        model: None,
                        tokens,
                        estimated: true,
                        status: STATUS_CLIENT_CLOSED,
                        ttfb: None,
                    },
                );
                self.emit(meter, record);
            }
        }
    }
}
