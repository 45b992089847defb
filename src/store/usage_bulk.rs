//! Bulk usage for the offline importer (`import-redis`): one chunk of
//! imported hourly deltas, merged in memory, applied together with the
//! import checkpoints that record it as imported, in one transaction.
//!
//! The store contents are exactly what [`Store::apply_usage`] would leave
//! for the same deltas (hour, day and lifetime buckets, the key index's
//! per-period usage and cost order, the monthly cost rankings); only the
//! request log and last-used times, which an import does not touch, are left
//! out. Merging a chunk first means each bucket, index and ranking entry is
//! read and written once per chunk instead of once per delta batch; the
//! shared model and global buckets in particular, which every key touches.
//!
//! Why the checkpoints go in the same transaction: usage is additive, so a
//! rerun must know exactly which usage is already in. A sled transaction is
//! atomic across trees (also across a crash), so after any interruption
//! each chunk's usage is in if and only if its checkpoints are; a rerun
//! imports only what the checkpoints do not cover, and never counts twice.
//! The keys' limit counters, seeded with the chunk's spend, go in the same
//! transaction for the same reason.

use super::imports::SealedBlob;
use super::usage::BucketPlan;
use super::{Error, Store};
use crate::domain::{KeyId, UsageSubject, UsageTotals};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sled::Transactional;

/// One chunk of imported usage, merged and planned ahead of its write
/// ([`Store::prepare_usage_bulk`]), so that the thread that writes to sled
/// does only the writing.
pub struct UsageBulk {
    plan: BucketPlan,
    rank: super::usage_query::RankPlan,
    checkpoints: Vec<SealedBlob>,
    /// Limit counters to write (`limit_counters.rs`), encoded.
    counters: Vec<(KeyId, Vec<u8>)>,
    /// Whether it reaches a closed hour (cached analytics must go).
    closed_hours: bool,
}

impl UsageBulk {
    /// Writes these keys' limit counters with the chunk.
    pub fn with_limit_counters<T: Serialize>(
        mut self,
        counters: &[(KeyId, T)],
    ) -> Result<UsageBulk, Error> {
        for (key_id, value) in counters {
            self.counters.push((*key_id, super::trees::encode(value)?));
        }
        Ok(self)
    }
}

impl Store {
    /// Adds `hourly` (subject, hour, delta) like [`Store::apply_usage`] and
    /// writes `checkpoints` (sealed import blobs) in the same transaction.
    /// For the importer: one call per chunk of a few hundred keys.
    pub fn apply_usage_bulk(
        &self,
        hourly: &[(UsageSubject, DateTime<Utc>, UsageTotals)],
        checkpoints: &[SealedBlob],
    ) -> Result<(), Error> {
        let bulk = self.prepare_usage_bulk(hourly, checkpoints.to_vec());
        self.write_usage_bulk(bulk)
    }

    /// Merges and plans a chunk (pure CPU: no store access but the zone).
    pub fn prepare_usage_bulk(
        &self,
        hourly: &[(UsageSubject, DateTime<Utc>, UsageTotals)],
        checkpoints: Vec<SealedBlob>,
    ) -> UsageBulk {
        UsageBulk {
            plan: BucketPlan::of(hourly, self.time_zone()),
            rank: self.rank_plan(hourly),
            checkpoints,
            counters: Vec::new(),
            closed_hours: self.reaches_closed_hours(hourly),
        }
    }

    /// Writes a prepared chunk and its checkpoints in one transaction.
    pub fn write_usage_bulk(&self, bulk: UsageBulk) -> Result<(), Error> {
        let UsageBulk {
            plan,
            rank,
            checkpoints,
            counters,
            closed_hours,
        } = bulk;
        let trees = (
            &self.inner.usage,
            self.rank_tree(),
            &self.inner.key_index,
            &self.inner.imports,
            &self.inner.limit_counters,
        );
        trees.transaction(|(usage, rank_tree, index, imports, limit_counters)| {
            super::usage_query::apply_rank(rank_tree, &rank)?;
            plan.write(usage, index)?;
            for blob in &checkpoints {
                imports.insert(blob.key.as_slice(), blob.value.as_slice())?;
            }
            for (key_id, value) in &counters {
                limit_counters.insert(key_id.0.as_bytes(), value.as_slice())?;
            }
            Ok(())
        })?;
        self.forget_keys(&plan.keys());
        if closed_hours {
            self.note_closed_hours_written();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::sample_key;
    use super::super::test_support::open;
    use super::super::UsageBatch;
    use super::*;
    use crate::domain::{AccountId, KeyId, NanoUsd};
    use crate::store::{KeyFilter, KeyOrder, KeySortField, RankKind};
    use chrono::{Duration, TimeZone};

    fn totals(n: u64) -> UsageTotals {
        UsageTotals {
            requests: n,
            input_tokens: 10 * n,
            output_tokens: 3 * n,
            cache_read_tokens: n / 2,
            list_cost: NanoUsd(1_000 * n),
            billed_cost: NanoUsd(1_500 * n + 7),
            unpriced_requests: n % 3,
            ..UsageTotals::default()
        }
    }

    /// Deltas of several keys over three months (both sides of month and
    /// day boundaries), with shared model and global subjects, as the
    /// importer produces them.
    fn deltas(
        keys: &[KeyId],
        account: AccountId,
    ) -> Vec<(UsageSubject, DateTime<Utc>, UsageTotals)> {
        let base = Utc.with_ymd_and_hms(2026, 9, 30, 22, 17, 0).unwrap();
        let mut out = Vec::new();
        for (i, id) in keys.iter().enumerate() {
            for step in 0..12u64 {
                let at = base
                    + Duration::hours(i64::try_from(step * 7 + i as u64 * 13).unwrap())
                    + Duration::days(i64::try_from(step * 3).unwrap());
                let model = if step % 2 == 0 {
                    "claude-a"
                } else {
                    "claude|b"
                };
                let t = totals(step + i as u64 + 1);
                for subject in [
                    UsageSubject::KeyModel(*id, model.into()),
                    UsageSubject::Key(*id),
                    UsageSubject::Model(model.into()),
                    UsageSubject::Global,
                ] {
                    out.push((subject, at, t));
                }
            }
        }
        out.push((UsageSubject::Account(account), base, totals(5)));
        out
    }

    fn dump(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }

    #[test]
    fn bulk_leaves_exactly_what_apply_usage_leaves() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(dir_a.path()), open(dir_b.path()));
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let mut keys = Vec::new();
        for i in 0..6 {
            let key = sample_key(&format!("k{i}"), &format!("h{i}"));
            for store in [&a, &b] {
                store.set_time_zone(tz).unwrap();
                store.set_analytics_time_zone(tz).unwrap();
                store.create_key(&key).unwrap();
            }
            keys.push(key.id);
        }
        let account = AccountId::generate();
        let all = deltas(&keys, account);
        // The usage writer's way: small batches in arrival order.
        for chunk in all.chunks(5) {
            a.apply_usage(&UsageBatch {
                hourly: chunk.to_vec(),
                ..UsageBatch::default()
            })
            .unwrap();
        }
        // The importer's way: two chunks, the second adding to buckets the first wrote.
        let (first, second) = all.split_at(all.len() / 2);
        b.apply_usage_bulk(first, &[]).unwrap();
        b.apply_usage_bulk(second, &[]).unwrap();

        // Byte for byte, every tree the usage touches.
        assert_eq!(dump(&a.inner.usage), dump(&b.inner.usage));
        assert_eq!(dump(a.rank_tree()), dump(b.rank_tree()));
        assert_eq!(dump(&a.inner.key_index), dump(&b.inner.key_index));

        // And through the readers: totals over ranges, rankings, listings by cost.
        let from = Utc.with_ymd_and_hms(2026, 10, 1, 3, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 10, 20, 15, 0, 0).unwrap();
        let mut subjects: Vec<UsageSubject> = keys.iter().map(|k| UsageSubject::Key(*k)).collect();
        subjects.extend([
            UsageSubject::Global,
            UsageSubject::Model("claude|b".into()),
            UsageSubject::KeyModel(keys[2], "claude-a".into()),
            UsageSubject::Account(account),
        ]);
        for s in &subjects {
            for range in [None, Some((from, to))] {
                let t = a.usage_total(s, range).unwrap();
                assert!(range.is_some() || t.requests > 0, "{s:?} has usage");
                assert_eq!(t, b.usage_total(s, range).unwrap(), "{s:?} {range:?}");
            }
        }
        for month in ["202609", "202610", "202611"] {
            for kind in [RankKind::Key, RankKind::Model, RankKind::Account] {
                assert_eq!(
                    a.top_of_month(kind, month, 10).unwrap(),
                    b.top_of_month(kind, month, 10).unwrap(),
                    "{kind:?} {month}"
                );
            }
        }
        let order = KeyOrder {
            field: KeySortField::BilledCost,
            descending: true,
        };
        let page = |s: &Store, since: Option<DateTime<Utc>>| {
            let filter = KeyFilter {
                usage_since: since,
                ..KeyFilter::default()
            };
            s.query_keys(&filter, &order, None, 100, true)
                .unwrap()
                .hits
                .into_iter()
                .map(|h| (h.key.id, h.position))
                .collect::<Vec<_>>()
        };
        let october = Some(Utc.with_ymd_and_hms(2026, 9, 30, 16, 0, 0).unwrap());
        assert_eq!(page(&a, None), page(&b, None));
        assert_eq!(page(&a, october), page(&b, october));
        assert_eq!(page(&a, None).len(), keys.len());
    }

    #[test]
    fn checkpoints_commit_with_the_usage() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let hour = Utc.with_ymd_and_hms(2026, 10, 1, 3, 0, 0).unwrap();
        let blob = store
            .seal_import_blob("src", "usage/key/x", &42u32)
            .unwrap();
        store
            .apply_usage_bulk(&[(UsageSubject::Global, hour, totals(2))], &[blob])
            .unwrap();
        assert_eq!(
            store.import_blob::<u32>("src", "usage/key/x").unwrap(),
            Some(42)
        );
        assert_eq!(
            store
                .usage_total(&UsageSubject::Global, None)
                .unwrap()
                .requests,
            2
        );
    }
}
