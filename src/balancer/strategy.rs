//! Selection strategies: given the eligible accounts, pick one. Strategies
//! only compare what the slots report; they never measure or mutate.

use super::AccountSlot;
use std::sync::Arc;

/// Picks the index of one candidate, or None when the list is empty.
pub trait Strategy: Send + Sync {
    fn pick(&self, candidates: &[&Arc<AccountSlot>]) -> Option<usize>;
}

/// Lowest priority number first (1 is most preferred, as in
/// claude-relay-service); least recently used among equals.
pub struct PriorityLru;

impl Strategy for PriorityLru {
    fn pick(&self, candidates: &[&Arc<AccountSlot>]) -> Option<usize> {
        candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, slot)| (slot.priority, slot.last_pick()))
            .map(|(i, _)| i)
    }
}
