//! Sticky sessions for prompt-cache affinity: (pool, session) → account, in
//! a moka cache whose entries live for the sticky TTL after their last use
//! (default 1 h; changeable at run time). Expiry is also checked against the
//! balancer's injected clock, so paused-time tests and the simulation see the
//! same TTL as production; moka's own expiry bounds memory.
//!
//! Each entry holds its account's live state, so the number of sessions an
//! account holds is kept on the account (incremented on bind, decremented by
//! moka's eviction listener) for the stats.

use super::health::LiveState;
use super::session::SessionKey;
use super::snapshot::PoolKey;
use crate::domain::AccountId;
use moka::ops::compute::Op;
use moka::sync::Cache;
use moka::Expiry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const R: Ordering = Ordering::Relaxed;

pub(crate) type StickyKey = (PoolKey, SessionKey);

#[derive(Debug)]
pub(crate) struct StickyEntry {
    pub account: AccountId,
    live: Arc<LiveState>,
    /// Unix ms of the last use, on the balancer's clock.
    last_used: AtomicU64,
}

impl StickyEntry {
    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_used.fetch_max(now_ms, R);
    }
}

/// Every use renews the entry to the full TTL (time-to-idle).
struct TtlExpiry(Arc<AtomicU64>);

impl TtlExpiry {
    fn ttl(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.0.load(R)))
    }
}

impl Expiry<StickyKey, Arc<StickyEntry>> for TtlExpiry {
    fn expire_after_create(
        &self,
        _: &StickyKey,
        _: &Arc<StickyEntry>,
        _: Instant,
    ) -> Option<Duration> {
        self.ttl()
    }

    fn expire_after_read(
        &self,
        _: &StickyKey,
        _: &Arc<StickyEntry>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        self.ttl()
    }

    fn expire_after_update(
        &self,
        _: &StickyKey,
        _: &Arc<StickyEntry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.ttl()
    }
}

pub(crate) struct StickyMap {
    cache: Cache<StickyKey, Arc<StickyEntry>>,
    ttl_ms: Arc<AtomicU64>,
}

impl StickyMap {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> StickyMap {
        let ttl_ms = Arc::new(AtomicU64::new(super::clock::duration_ms(ttl).max(1)));
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(TtlExpiry(ttl_ms.clone()))
            .eviction_listener(|_, entry: Arc<StickyEntry>, _| {
                entry.live.sticky_held.fetch_sub(1, R);
            })
            .build();
        StickyMap { cache, ttl_ms }
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(R))
    }

    /// Applies to entries from their next use on.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(super::clock::duration_ms(ttl).max(1), R);
    }

    /// The live mapping, or `None` (an entry idle past the TTL is dropped).
    pub(crate) fn get(&self, key: &StickyKey, now_ms: u64) -> Option<Arc<StickyEntry>> {
        let entry = self.cache.get(key)?;
        if now_ms.saturating_sub(entry.last_used.load(R)) > self.ttl_ms.load(R) {
            self.unbind(key, entry.account);
            return None;
        }
        Some(entry)
    }

    pub(crate) fn bind(
        &self,
        key: StickyKey,
        account: AccountId,
        live: &Arc<LiveState>,
        now_ms: u64,
    ) {
        live.sticky_held.fetch_add(1, R);
        self.cache.insert(
            key,
            Arc::new(StickyEntry {
                account,
                live: live.clone(),
                last_used: AtomicU64::new(now_ms),
            }),
        );
    }

    /// Drops the mapping if it still points at `account` (a concurrent
    /// request may already have moved the session elsewhere).
    pub(crate) fn unbind(&self, key: &StickyKey, account: AccountId) {
        let _ = self
            .cache
            .entry(*key)
            .and_compute_with(|current| match current {
                Some(e) if e.value().account == account => Op::Remove,
                _ => Op::Nop,
            });
    }

    /// Approximate number of live mappings.
    pub(crate) fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Every mapping, for lazy persistence.
    pub(crate) fn entries(&self) -> Vec<(StickyKey, AccountId, u64)> {
        self.cache
            .iter()
            .map(|(k, v)| (*k, v.account, v.last_used.load(R)))
            .collect()
    }
}
