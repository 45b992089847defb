//! Export jobs and their download grants: the `exports` tree (job id →
//! [`ExportRecord`]) and the `export_downloads` tree (SHA-256 hex of a
//! one-time download token → [`DownloadGrant`]). It owns how these records
//! are kept, plus the id-ordered batch walk over keys that exports read.
//! Running jobs, files and progress belong to `export::jobs`.

use super::trees::{decode, encode};
use super::{Error, KeyFilter, Store};
use crate::domain::{ApiKey, KeyId, UsageSubject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const WHAT: &str = "export job";
const WHAT_GRANT: &str = "export download grant";

/// Identifies an export job (UUID v7, so ids sort by creation).
pub type ExportId = Uuid;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl ExportState {
    /// Whether the job has ended (no further change but deletion).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExportState::Completed | ExportState::Failed | ExportState::Cancelled
        )
    }
}

/// One export job as stored. `spec` is the job's own description (format,
/// filter, fields, …), opaque to the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub id: ExportId,
    pub state: ExportState,
    pub spec: serde_json::Value,
    /// Username of the admin who started it (`cli` for offline runs).
    pub requested_by: String,
    pub processed: u64,
    pub total: u64,
    pub bytes: u64,
    /// Problems met along the way (the last one is the failure cause).
    pub errors: Vec<String>,
    /// File name inside the exports directory, once completed.
    pub file_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// After this instant the record and its file are removed.
    pub expires_at: DateTime<Utc>,
}

/// What a one-time download token grants, stored under the token's hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadGrant {
    pub export_id: ExportId,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    pub fn put_export(&self, record: &ExportRecord) -> Result<(), Error> {
        self.inner
            .exports
            .insert(record.id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    pub fn get_export(&self, id: ExportId) -> Result<Option<ExportRecord>, Error> {
        self.inner
            .exports
            .get(id.as_bytes())?
            .map(|v| decode(&v, WHAT))
            .transpose()
    }

    /// Every export job, oldest first. Jobs are few (they expire).
    pub fn list_exports(&self) -> Result<Vec<ExportRecord>, Error> {
        self.inner
            .exports
            .iter()
            .values()
            .map(|v| decode(&v?, WHAT))
            .collect()
    }

    /// Removes the record and every download grant of it.
    pub fn delete_export(&self, id: ExportId) -> Result<(), Error> {
        self.inner.exports.remove(id.as_bytes())?;
        for entry in self.inner.export_downloads.iter() {
            let (k, v) = entry?;
            if decode::<DownloadGrant>(&v, WHAT_GRANT).is_ok_and(|g| g.export_id == id) {
                self.inner.export_downloads.remove(k)?;
            }
        }
        Ok(())
    }

    pub fn put_download_grant(&self, token_hash: &str, grant: &DownloadGrant) -> Result<(), Error> {
        self.inner
            .export_downloads
            .insert(token_hash.as_bytes(), encode(grant)?)?;
        Ok(())
    }

    /// Removes and returns the grant of `token_hash`: a token works once,
    /// even when two requests race (sled's `remove` is atomic).
    pub fn take_download_grant(&self, token_hash: &str) -> Result<Option<DownloadGrant>, Error> {
        self.inner
            .export_downloads
            .remove(token_hash.as_bytes())?
            .map(|v| decode(&v, WHAT_GRANT))
            .transpose()
    }

    /// Drops grants that expired before `now`; returns how many.
    pub fn prune_download_grants(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let mut pruned = 0;
        for entry in self.inner.export_downloads.iter() {
            let (k, v) = entry?;
            let expired =
                decode::<DownloadGrant>(&v, WHAT_GRANT).map_or(true, |g| g.expires_at <= now);
            if expired {
                self.inner.export_downloads.remove(k)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// The keys matching `filter` after `after` in id order, at most
    /// `limit`, and whether more may follow.
    ///
    /// Exports need a stable order, not a particular one; the `keys` tree
    /// is already in id order, so each step is one range scan from the last
    /// id: O(batch) per step and one batch in memory, whatever the filter.
    /// Filter semantics are `KeyFilter`'s own (`matches_record`,
    /// `matches_usage`), identical to the key list.
    pub fn keys_after_id(
        &self,
        filter: &KeyFilter,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<(Vec<ApiKey>, bool), Error> {
        let limit = limit.max(1);
        let iter = match after {
            Some(id) => {
                let mut start = id.0.as_bytes().to_vec();
                // The smallest key strictly greater than `id`.
                start.push(0);
                self.inner.keys.range(start..)
            }
            None => self.inner.keys.iter(),
        };
        let usage_range = filter
            .usage_since
            .map(|s| (s, Utc::now() + chrono::Duration::hours(1)));
        let mut out = Vec::with_capacity(limit.min(128));
        for value in iter.values() {
            let key: ApiKey = decode(&value?, "api key")?;
            if !filter.matches_record(&key) {
                continue;
            }
            if filter.needs_usage() {
                let t = self.usage_total(&UsageSubject::Key(key.id), usage_range)?;
                if !filter.matches_usage(t.requests, t.billed_cost.0) {
                    continue;
                }
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(key);
        }
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::sample_key;
    use super::super::test_support::open;
    use super::*;

    fn record(state: ExportState) -> ExportRecord {
        let now = Utc::now();
        ExportRecord {
            id: Uuid::now_v7(),
            state,
            spec: serde_json::json!({"format": "csv"}),
            requested_by: "owner".into(),
            processed: 0,
            total: 0,
            bytes: 0,
            errors: vec![],
            file_name: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            expires_at: now + chrono::Duration::hours(24),
        }
    }

    #[test]
    fn records_round_trip_and_grants_work_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let r = record(ExportState::Queued);
        store.put_export(&r).expect("put");
        assert_eq!(store.get_export(r.id).expect("get"), Some(r.clone()));
        let grant = DownloadGrant {
            export_id: r.id,
            expires_at: Utc::now() + chrono::Duration::minutes(5),
        };
        store.put_download_grant("h1", &grant).expect("grant");
        assert_eq!(store.take_download_grant("h1").expect("take"), Some(grant));
        assert_eq!(store.take_download_grant("h1").expect("again"), None);
        let old = DownloadGrant {
            export_id: r.id,
            expires_at: Utc::now() - chrono::Duration::seconds(1),
        };
        store.put_download_grant("h2", &old).expect("grant");
        assert_eq!(store.prune_download_grants(Utc::now()).expect("prune"), 1);
        store.put_download_grant("h3", &old).expect("grant");
        store.delete_export(r.id).expect("delete");
        assert_eq!(store.get_export(r.id).expect("get"), None);
        assert_eq!(store.take_download_grant("h3").expect("take"), None);
    }

    #[test]
    fn id_walk_visits_every_match_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let mut want = Vec::new();
        for i in 0..23 {
            let mut k = sample_key(&format!("k{i}"), &format!("{i:064x}"));
            if i % 3 == 0 {
                k.tags = vec!["x".into()];
                want.push(k.id);
            }
            store.create_key(&k).expect("create");
        }
        let filter = KeyFilter {
            tags: vec!["x".into()],
            ..KeyFilter::default()
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (keys, more) = store.keys_after_id(&filter, after, 2).expect("walk");
            assert!(keys.len() <= 2);
            after = keys.last().map(|k| k.id);
            seen.extend(keys.iter().map(|k| k.id));
            if !more {
                break;
            }
        }
        want.sort();
        assert_eq!(seen, want);
    }
}
