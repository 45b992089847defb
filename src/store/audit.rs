//! The audit log: the `audit` tree, append-only. Keys are big-endian `u64`
//! ids from sled's monotonic id generator, so iteration order is append
//! order and ids never repeat, even across restarts. There is deliberately
//! no update or delete API: the only removal is retention (oldest entries
//! first, by count and age), never an edit of an entry in place.
//!
//! What goes into an entry (masking secrets, choosing the action name) is
//! the admin API's business; this file only keeps the records.

use super::trees::{decode, encode};
use super::{Error, Store};
use crate::domain::AdminId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;

const WHAT: &str = "audit entry";

/// One audited action: a mutation or a login attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by [`Store::append_audit`]; increases with every append.
    pub id: u64,
    pub at: DateTime<Utc>,
    /// The admin who acted; `None` for a failed login (nobody was authenticated).
    pub admin_id: Option<AdminId>,
    /// The admin's username at the time (or the name a login attempt gave, masked).
    pub admin_username: Option<String>,
    /// The client address, after `trusted_proxies`.
    pub client_ip: Option<String>,
    /// The mutation field name, e.g. `createApiKey` or `login`.
    pub action: String,
    /// The id of the record acted on, when there is one.
    pub target: Option<String>,
    /// `OK` or the error code the client saw.
    pub outcome: String,
    /// The arguments, with secrets removed and free text masked.
    pub changes: serde_json::Value,
    /// The target record's changed fields (before → after), scrubbed alike;
    /// absent in entries written before diffs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<serde_json::Value>,
}

/// How much of the audit log is kept.
#[derive(Clone, Copy, Debug)]
pub struct AuditRetention {
    pub max_entries: usize,
    pub max_age: Duration,
}

impl Store {
    /// Appends an entry (its `id` is assigned here and returned), then drops
    /// the oldest entries beyond the retention.
    pub fn append_audit(
        &self,
        mut entry: AuditEntry,
        retention: AuditRetention,
    ) -> Result<AuditEntry, Error> {
        entry.id = self.inner.db.generate_id()?;
        self.inner
            .audit
            .insert(entry.id.to_be_bytes(), encode(&entry)?)?;
        self.inner.audit_len.fetch_add(1, Ordering::Relaxed);
        self.prune_audit(retention, entry.at)?;
        Ok(entry)
    }

    /// Removes entries from the old end while there are too many or they are
    /// too old. Usually removes one entry or none, so each append stays cheap.
    fn prune_audit(&self, retention: AuditRetention, now: DateTime<Utc>) -> Result<(), Error> {
        let oldest_allowed = now
            - chrono::Duration::from_std(retention.max_age)
                .unwrap_or_else(|_| chrono::Duration::days(365));
        while let Some((key, value)) = self.inner.audit.first()? {
            let too_many = self.inner.audit_len.load(Ordering::Relaxed) > retention.max_entries;
            let too_old = || -> Result<bool, Error> {
                let e: AuditEntry = decode(&value, WHAT)?;
                Ok(e.at < oldest_allowed)
            };
            if !(too_many || too_old()?) {
                break;
            }
            if self.inner.audit.remove(key)?.is_some() {
                self.inner.audit_len.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Entries newest first, starting below `before` (an id) when given.
    pub fn audit_newest_first(
        &self,
        before: Option<u64>,
    ) -> impl Iterator<Item = Result<AuditEntry, Error>> + '_ {
        let range = match before {
            Some(id) => self.inner.audit.range(..id.to_be_bytes()),
            None => self.inner.audit.range::<[u8; 8], _>(..),
        };
        range
            .rev()
            .map(|r| r.map_err(Error::from).and_then(|(_, v)| decode(&v, WHAT)))
    }

    /// Entries currently kept.
    pub fn audit_len(&self) -> usize {
        self.inner.audit_len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::open;
    use super::*;

    fn entry(action: &str, at: DateTime<Utc>) -> AuditEntry {
        AuditEntry {
            id: 0,
            at,
            admin_id: None,
            admin_username: Some("root".into()),
            client_ip: Some("127.0.0.1".into()),
            action: action.into(),
            target: None,
            outcome: "OK".into(),
            changes: serde_json::json!({}),
            diff: None,
        }
    }

    const KEEP_ALL: AuditRetention = AuditRetention {
        max_entries: 1000,
        max_age: Duration::from_secs(3600),
    };

    #[test]
    fn ids_increase_and_reads_are_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let now = Utc::now();
        let ids: Vec<u64> = (0..5)
            .map(|i| {
                store
                    .append_audit(entry(&format!("a{i}"), now), KEEP_ALL)
                    .unwrap()
                    .id
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let all: Vec<String> = store
            .audit_newest_first(None)
            .map(|e| e.unwrap().action)
            .collect();
        assert_eq!(all, ["a4", "a3", "a2", "a1", "a0"]);
        let below: Vec<String> = store
            .audit_newest_first(Some(ids[2]))
            .map(|e| e.unwrap().action)
            .collect();
        assert_eq!(below, ["a1", "a0"]);
        assert_eq!(store.audit_len(), 5);
    }

    #[test]
    fn retention_drops_the_oldest_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let now = Utc::now();
        let three = AuditRetention {
            max_entries: 3,
            max_age: Duration::from_secs(3600),
        };
        store
            .append_audit(entry("ancient", now - chrono::Duration::hours(2)), three)
            .unwrap();
        // The ancient one goes as soon as anything is appended.
        for i in 0..4 {
            store
                .append_audit(entry(&format!("n{i}"), now), three)
                .unwrap();
        }
        let kept: Vec<String> = store
            .audit_newest_first(None)
            .map(|e| e.unwrap().action)
            .collect();
        assert_eq!(kept, ["n3", "n2", "n1"]);
        assert_eq!(store.audit_len(), 3);
    }

    #[test]
    fn entries_survive_a_reopen_and_ids_keep_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let store = open(dir.path());
            store
                .append_audit(entry("a", Utc::now()), KEEP_ALL)
                .unwrap()
                .id
        };
        let store = open(dir.path());
        assert_eq!(store.audit_len(), 1);
        let second = store
            .append_audit(entry("b", Utc::now()), KEEP_ALL)
            .unwrap()
            .id;
        assert!(second > first);
    }
}
