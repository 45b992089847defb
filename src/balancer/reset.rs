//! An admin's reset of one account's live state: cooldowns (whole account
//! and per model family), the circuit breaker, the outcome window, the
//! health score, the latency averages, the last error and what upstream's
//! rate-limit headers last said (an admin resetting an account knows
//! better, e.g. after a plan upgrade; the next response teaches them again).
//! Counters of traffic (requests, tokens, the relay's own 5-hour window
//! count, in-flight leases) stay: they describe what happened, not a verdict.

use super::health::LiveState;
use super::Balancer;
use crate::domain::AccountId;
use std::sync::atomic::Ordering;

const R: Ordering = Ordering::Relaxed;

impl LiveState {
    pub(crate) fn reset_verdicts(&self) {
        let cold = &**self;
        cold.cooldown_until.store(0, R);
        cold.cooldown_reason.store(0, R);
        for f in &cold.family_until {
            f.store(0, R);
        }
        cold.breaker_opens.store(0, R);
        cold.consecutive_failures.store(0, R);
        cold.auth_failed.store(false, R);
        cold.last_error.store(0, R);
        cold.last_error_at.store(0, R);
        cold.outcomes.reset();
        cold.ttfb.reset();
        cold.ttfb_peak.reset();
        cold.latency.reset();
        cold.header_used_ppm.store(0, R);
        cold.header_reset.store(0, R);
        cold.tokens_remaining.store(0, R);
        cold.tokens_reset.store(0, R);
        self.hot.limits_until.store(0, R);
        self.hot.breaker_open_until.store(0, R);
        self.hot.rest_until.store(0, R);
        self.hot.health.store(0, R);
        // A trial in flight keeps its slot until it settles; with the breaker
        // closed the slot no longer gates anything.
    }
}

impl Balancer {
    /// Clears an account's cooldowns, breaker and health (see the module
    /// doc); false when the balancer does not know the account.
    pub fn reset_account(&self, id: AccountId) -> bool {
        match self.inner.snapshot.load().live(id) {
            Some(live) => {
                live.reset_verdicts();
                true
            }
            None => false,
        }
    }
}
