//! Cache tiers in front of the store. [`KeyCache`] maps a key hash to its
//! record (positive entries) and remembers unknown hashes for a short time
//! (negative entries), so a flood of bad keys never reaches sled. Store events
//! invalidate entries; any key write purges the negative tier, so a key that
//! was just created or restored works at once. Events arrive on a background
//! task, so positive entries also carry the store's key-write generation: an
//! entry older than the last admin key write is re-read, which makes a
//! disabled, deleted or re-keyed key stop working at once, not an event later.

use crate::domain::ApiKey;
use crate::store::{self, Store, StoreEvent};
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct KeyCache {
    positive: Cache<String, (Arc<ApiKey>, u64)>,
    negative: Cache<String, ()>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(100_000, Duration::from_secs(300), Duration::from_secs(30))
    }
}

impl KeyCache {
    pub fn new(capacity: u64, positive_ttl: Duration, negative_ttl: Duration) -> KeyCache {
        KeyCache {
            positive: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(positive_ttl)
                .build(),
            negative: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(negative_ttl)
                .build(),
        }
    }

    /// The key record for a hash: cache, then store. `Ok(None)` = unknown key.
    pub fn lookup(
        &self,
        store: &Store,
        key_hash: &str,
    ) -> Result<Option<Arc<ApiKey>>, store::Error> {
        let generation = store.key_writes();
        if let Some((key, at)) = self.positive.get(key_hash) {
            if at == generation {
                return Ok(Some(key));
            }
        }
        if self.negative.contains_key(key_hash) {
            return Ok(None);
        }
        match store.key_by_hash(key_hash)? {
            Some(key) => {
                let key = Arc::new(key);
                self.positive
                    .insert(key_hash.to_string(), (key.clone(), generation));
                Ok(Some(key))
            }
            None => {
                self.negative.insert(key_hash.to_string(), ());
                Ok(None)
            }
        }
    }

    /// Applies one store event.
    pub fn on_event(&self, event: &StoreEvent) {
        if let StoreEvent::KeyChanged { key_hash, .. } = event {
            self.positive.invalidate(key_hash);
            self.negative.invalidate_all();
        }
    }

    /// Forgets everything (e.g. after missed events).
    pub fn clear(&self) {
        self.positive.invalidate_all();
        self.negative.invalidate_all();
    }
}
