//! Account selection. The balancer keeps an in-memory snapshot of schedulable
//! accounts with per-account atomics (in-flight, last used, cooldown), picks
//! one per attempt without I/O or a shared lock, and hands out a [`Lease`]
//! that releases the in-flight count on drop. Feedback from the relay turns
//! failures into cooldowns. Knows nothing about HTTP.
//!
//! The choice itself sits behind [`Strategy`], so the full balancer can add
//! strategies without touching the bookkeeping.

mod strategy;

pub use strategy::{PriorityLru, Strategy};

use crate::domain::{Account, AccountId, AccountStatus};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counters that outlive snapshot rebuilds: a changed account record gets a
/// new [`AccountSlot`] but keeps the same `LiveState`, so leases taken before
/// the change still release the right counter.
#[derive(Debug, Default)]
pub struct LiveState {
    in_flight: AtomicU32,
    /// Selection counter value at the last pick (for least-recently-used).
    last_pick: AtomicU64,
    /// Unix ms until which the account rests; 0 = available.
    cooldown_until_ms: AtomicU64,
}

/// One account as the balancer sees it.
#[derive(Debug)]
pub struct AccountSlot {
    pub id: AccountId,
    pub priority: u32,
    pub status: AccountStatus,
    live: Arc<LiveState>,
}

impl AccountSlot {
    pub fn in_flight(&self) -> u32 {
        self.live.in_flight.load(Ordering::Relaxed)
    }

    pub fn last_pick(&self) -> u64 {
        self.live.last_pick.load(Ordering::Relaxed)
    }

    pub fn cooldown_until(&self) -> Option<SystemTime> {
        match self.live.cooldown_until_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    fn is_cooling(&self, now_ms: u64) -> bool {
        self.live.cooldown_until_ms.load(Ordering::Relaxed) > now_ms
    }

    fn is_enabled(&self) -> bool {
        self.status == AccountStatus::Active
    }
}

/// Holds one in-flight request on an account; released on drop, whatever
/// path the request ends on.
#[derive(Debug)]
pub struct Lease {
    account_id: AccountId,
    live: Arc<LiveState>,
}

impl Lease {
    pub fn account_id(&self) -> AccountId {
        self.account_id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no account was picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAccount {
    /// No enabled account exists at all (503, do not retry).
    NoneConfigured,
    /// Accounts exist but all rest or were already tried; the earliest rest end if any.
    AllBusy {
        earliest_available: Option<SystemTime>,
    },
}

/// Cheap clonable handle.
#[derive(Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: ArcSwap<Vec<Arc<AccountSlot>>>,
    strategy: Box<dyn Strategy>,
    picks: AtomicU64,
}

impl Default for Balancer {
    fn default() -> Self {
        Self::new(Box::new(PriorityLru))
    }
}

impl Balancer {
    pub fn new(strategy: Box<dyn Strategy>) -> Balancer {
        Balancer {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Vec::new()),
                strategy,
                picks: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the snapshot with `accounts`, keeping live counters of accounts that stay.
    pub fn sync(&self, accounts: &[Account]) {
        let old = self.inner.snapshot.load();
        let by_id: HashMap<AccountId, &Arc<AccountSlot>> = old.iter().map(|s| (s.id, s)).collect();
        let next: Vec<Arc<AccountSlot>> = accounts
            .iter()
            .filter(|a| a.status != AccountStatus::Deleted)
            .map(|a| {
                Arc::new(AccountSlot {
                    id: a.id,
                    priority: a.priority,
                    status: a.status,
                    live: by_id
                        .get(&a.id)
                        .map(|old| old.live.clone())
                        .unwrap_or_default(),
                })
            })
            .collect();
        self.inner.snapshot.store(Arc::new(next));
    }

    /// Number of enabled accounts (regardless of cooldown).
    pub fn enabled_count(&self) -> usize {
        self.inner
            .snapshot
            .load()
            .iter()
            .filter(|s| s.is_enabled())
            .count()
    }

    /// Picks an account not in `exclude`.
    pub fn select(&self, exclude: &[AccountId]) -> Result<Lease, NoAccount> {
        let snapshot = self.inner.snapshot.load();
        let now_ms = unix_ms(SystemTime::now());
        let mut earliest: Option<u64> = None;
        let mut any_enabled = false;
        let mut candidates: Vec<&Arc<AccountSlot>> = Vec::with_capacity(snapshot.len());
        for slot in snapshot.iter() {
            if !slot.is_enabled() {
                continue;
            }
            any_enabled = true;
            if exclude.contains(&slot.id) {
                continue;
            }
            if slot.is_cooling(now_ms) {
                let until = slot.live.cooldown_until_ms.load(Ordering::Relaxed);
                earliest = Some(earliest.map_or(until, |e| e.min(until)));
                continue;
            }
            candidates.push(slot);
        }
        if !any_enabled {
            return Err(NoAccount::NoneConfigured);
        }
        let Some(index) = self.inner.strategy.pick(&candidates) else {
            return Err(NoAccount::AllBusy {
                earliest_available: earliest.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            });
        };
        let slot = candidates[index];
        slot.live.in_flight.fetch_add(1, Ordering::Relaxed);
        let pick = self.inner.picks.fetch_add(1, Ordering::Relaxed) + 1;
        slot.live.last_pick.store(pick, Ordering::Relaxed);
        tracing::trace!(account.id = %slot.id, account.priority = slot.priority, "selected");
        Ok(Lease {
            account_id: slot.id,
            live: slot.live.clone(),
        })
    }

    /// Rests an account until `until` (keeps a later rest already set).
    pub fn cool_down(&self, id: AccountId, until: SystemTime) {
        let until_ms = unix_ms(until);
        if let Some(slot) = self.inner.snapshot.load().iter().find(|s| s.id == id) {
            slot.live
                .cooldown_until_ms
                .fetch_max(until_ms, Ordering::Relaxed);
        }
    }

    /// Clears a rest (after a success, the account is evidently fine).
    pub fn clear_cooldown(&self, id: AccountId) {
        if let Some(slot) = self.inner.snapshot.load().iter().find(|s| s.id == id) {
            slot.live.cooldown_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// The slots, for stats and tests.
    pub fn slots(&self) -> Arc<Vec<Arc<AccountSlot>>> {
        self.inner.snapshot.load_full()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountKind, Credentials};
    use chrono::Utc;

    fn account(priority: u32, status: AccountStatus) -> Account {
        Account {
            id: AccountId::generate(),
            name: format!("a{priority}"),
            kind: AccountKind::AnthropicApiKey,
            priority,
            status,
            base_url: None,
            credentials: Credentials::default(),
            proxy: None,
            routing: Default::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn lowest_priority_first_then_least_recently_used() {
        let b = Balancer::default();
        let a1 = account(1, AccountStatus::Active);
        let a2 = account(1, AccountStatus::Active);
        let a3 = account(5, AccountStatus::Active);
        b.sync(&[a3.clone(), a1.clone(), a2.clone()]);
        let first = b.select(&[]).unwrap().account_id();
        let second = b.select(&[]).unwrap().account_id();
        assert_ne!(first, second);
        assert!([a1.id, a2.id].contains(&first) && [a1.id, a2.id].contains(&second));
        assert_eq!(b.select(&[a1.id, a2.id]).unwrap().account_id(), a3.id);
    }

    #[test]
    fn skips_disabled_and_cooling_accounts() {
        let b = Balancer::default();
        let off = account(1, AccountStatus::Disabled);
        let hot = account(2, AccountStatus::Active);
        let cold = account(3, AccountStatus::Active);
        b.sync(&[off.clone(), hot.clone(), cold.clone()]);
        let until = SystemTime::now() + Duration::from_secs(30);
        b.cool_down(hot.id, until);
        assert_eq!(b.select(&[]).unwrap().account_id(), cold.id);
        match b.select(&[cold.id]) {
            Err(NoAccount::AllBusy {
                earliest_available: Some(t),
            }) => {
                assert_eq!(unix_ms(t), unix_ms(until));
            }
            other => panic!("unexpected {other:?}"),
        }
        b.clear_cooldown(hot.id);
        assert_eq!(b.select(&[]).unwrap().account_id(), hot.id);
    }

    #[test]
    fn no_enabled_account_is_reported_as_such() {
        let b = Balancer::default();
        assert_eq!(b.select(&[]).unwrap_err(), NoAccount::NoneConfigured);
        b.sync(&[
            account(1, AccountStatus::Disabled),
            account(1, AccountStatus::AuthFailed),
        ]);
        assert_eq!(b.select(&[]).unwrap_err(), NoAccount::NoneConfigured);
    }

    #[test]
    fn lease_releases_in_flight_on_drop_and_sync_keeps_counters() {
        let b = Balancer::default();
        let a = account(1, AccountStatus::Active);
        b.sync(std::slice::from_ref(&a));
        let lease = b.select(&[]).unwrap();
        assert_eq!(b.slots()[0].in_flight(), 1);
        let mut changed = a.clone();
        changed.priority = 2;
        b.sync(&[changed]);
        assert_eq!(b.slots()[0].in_flight(), 1);
        drop(lease);
        assert_eq!(b.slots()[0].in_flight(), 0);
    }
}
