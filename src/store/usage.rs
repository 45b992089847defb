//! Usage: the `usage` bucket tree and the bounded `requests` log.
//!
//! Bucket keys put one subject's buckets together and in time order, so a
//! range scan answers a period: `<subject>h|yyyymmddhh` (UTC hour),
//! `<subject>d|yyyymmdd` (UTC day, the sum of its hours) and `<subject>t`
//! (lifetime), where `<subject>` is `k|<uuid>|`, `a|<uuid>|`, `m|<model>|`
//! (with `%` and `|` escaped) or `g|`. Hourly buckets are the source of truth;
//! days exist so long ranges read fewer entries.

use super::trees::{decode, decode_totals, encode, encode_totals};
use super::{abort, key_index, Error, Store, UsageBatch};
use crate::domain::{ApiKey, KeyId, UsageRecord, UsageSubject, UsageTotals};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sled::transaction::{ConflictableTransactionResult, TransactionalTree};
use sled::Transactional;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The request log keeps at most this many of the newest requests.
pub const REQUEST_LOG_MAX: usize = 100_000;

/// `meta` entry: the request log's length (u64 be), written in the same
/// transaction as the log, so opening the store needs no scan of it.
pub(super) const LOG_LEN_META: &[u8] = b"request_log_len";

/// The request log's length as recorded in `meta` (schema 3 writes it).
pub(super) fn stored_log_len(meta: &sled::Tree) -> Result<usize, Error> {
    match meta.get(LOG_LEN_META)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(|b| usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX))
            .map_err(|_| Error::Corrupt("request log length is not a u64".into())),
    }
}

const WHAT: &str = "usage bucket";
const WHAT_RECORD: &str = "request log entry";
const HOUR_SECS: i64 = 3600;
const DAY_SECS: i64 = 86_400;

fn subject_prefix(subject: &UsageSubject) -> String {
    match subject {
        UsageSubject::Key(id) => format!("k|{id}|"),
        UsageSubject::Account(id) => format!("a|{id}|"),
        // Escaped so a model name containing `|` cannot reach into another subject's range.
        UsageSubject::Model(m) => format!("m|{}|", escape(m)),
        UsageSubject::KeyModel(id, m) => format!("km|{id}|{}|", escape(m)),
        UsageSubject::AccountModel(id, m) => format!("am|{id}|{}|", escape(m)),
        UsageSubject::Global => "g|".into(),
    }
}

/// Escapes a model name so it cannot reach into another subject's key range.
pub(super) fn escape(model: &str) -> String {
    model.replace('%', "%25").replace('|', "%7C")
}

pub(super) fn unescape(model: &str) -> String {
    model.replace("%7C", "|").replace("%25", "%")
}

fn hour_key(prefix: &str, hour: DateTime<Utc>) -> Vec<u8> {
    format!("{prefix}h|{}", hour.format("%Y%m%d%H")).into_bytes()
}

fn day_key(prefix: &str, t: DateTime<Utc>) -> Vec<u8> {
    format!("{prefix}d|{}", t.format("%Y%m%d")).into_bytes()
}

fn lifetime_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}t").into_bytes()
}

fn floor_to(t: DateTime<Utc>, unit: i64) -> DateTime<Utc> {
    let secs = t.timestamp();
    Utc.timestamp_opt(secs - secs.rem_euclid(unit), 0)
        .single()
        .unwrap_or(t)
}

fn ceil_to(t: DateTime<Utc>, unit: i64) -> DateTime<Utc> {
    let floor = floor_to(t, unit);
    if floor == t {
        t
    } else {
        floor + Duration::seconds(unit)
    }
}

/// Bucket labels are four-digit years: keep ranges inside 1970..=9999.
fn clamp(t: DateTime<Utc>) -> DateTime<Utc> {
    let min = DateTime::<Utc>::UNIX_EPOCH;
    let max = Utc
        .with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(t);
    t.clamp(min, max)
}

/// Request log key: big-endian microseconds (so the log sorts by time) and
/// 16 random bytes (so requests finishing in the same microsecond coexist).
fn log_key(at: DateTime<Utc>) -> Vec<u8> {
    let micros = u64::try_from(at.timestamp_micros()).unwrap_or(0);
    let mut key = Vec::with_capacity(24);
    key.extend_from_slice(&micros.to_be_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// [`Store::usage_total`] over a usage tree (also used by the key index
/// build, which runs before the `Store` exists).
pub(crate) fn total_in(
    usage: &sled::Tree,
    subject: &UsageSubject,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<UsageTotals, Error> {
    let prefix = subject_prefix(subject);
    let Some((from, to)) = range else {
        return usage
            .get(lifetime_key(&prefix))?
            .map(|v| decode_totals(&v, WHAT))
            .transpose()
            .map(Option::unwrap_or_default);
    };
    let from = floor_to(clamp(from), HOUR_SECS);
    let to = ceil_to(clamp(to), HOUR_SECS);
    if from >= to {
        return Ok(UsageTotals::default());
    }
    let first_day = ceil_to(from, DAY_SECS);
    let end_day = floor_to(to, DAY_SECS);
    let mut total = UsageTotals::default();
    if first_day < end_day {
        sum_keys(
            usage,
            &mut total,
            hour_key(&prefix, from),
            hour_key(&prefix, first_day),
        )?;
        sum_keys(
            usage,
            &mut total,
            day_key(&prefix, first_day),
            day_key(&prefix, end_day),
        )?;
        sum_keys(
            usage,
            &mut total,
            hour_key(&prefix, end_day),
            hour_key(&prefix, to),
        )?;
    } else {
        sum_keys(
            usage,
            &mut total,
            hour_key(&prefix, from),
            hour_key(&prefix, to),
        )?;
    }
    Ok(total)
}

fn sum_keys(
    usage: &sled::Tree,
    total: &mut UsageTotals,
    lo: Vec<u8>,
    hi: Vec<u8>,
) -> Result<(), Error> {
    for v in usage.range(lo..hi).values() {
        total.merge(&decode_totals(&v?, WHAT)?);
    }
    Ok(())
}

/// What a batch of hourly deltas adds: to its hour, UTC day and lifetime
/// buckets, and to each key's period totals in the cost index (lifetime and
/// the bucket's month in the billing zone). Shared by the usage writer's
/// [`Store::apply_usage`] and the importer's bulk path, so both leave the
/// same store.
pub(super) struct BucketPlan {
    /// Ordered, so buckets are read and written in key order (one subject's
    /// buckets sit together in the same leaves).
    buckets: BTreeMap<Vec<u8>, UsageTotals>,
    key_usage: BTreeMap<(KeyId, String), (u64, u64)>,
}

impl BucketPlan {
    pub(super) fn of(
        hourly: &[(UsageSubject, DateTime<Utc>, UsageTotals)],
        tz: chrono_tz::Tz,
    ) -> Self {
        let mut plan = BucketPlan {
            buckets: BTreeMap::new(),
            key_usage: BTreeMap::new(),
        };
        for (subject, hour, delta) in hourly {
            let prefix = subject_prefix(subject);
            let hour = floor_to(*hour, HOUR_SECS);
            for key in [
                hour_key(&prefix, hour),
                day_key(&prefix, hour),
                lifetime_key(&prefix),
            ] {
                plan.buckets.entry(key).or_default().merge(delta);
            }
            if let UsageSubject::Key(id) = subject {
                let month = key_index::bucket_month_label(hour, tz);
                for label in [key_index::LIFETIME.to_string(), month] {
                    let e = plan.key_usage.entry((*id, label)).or_default();
                    e.0 = e.0.saturating_add(delta.requests);
                    e.1 = e.1.saturating_add(delta.billed_cost.0);
                }
            }
        }
        plan
    }

    /// The keys whose indexed usage this plan moves.
    pub(super) fn keys(&self) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = self.key_usage.keys().map(|(id, _)| *id).collect();
        ids.dedup();
        ids
    }

    /// Adds the plan inside the caller's transaction.
    pub(super) fn write(
        &self,
        usage: &TransactionalTree,
        index: &TransactionalTree,
    ) -> ConflictableTransactionResult<(), Error> {
        for (key, delta) in &self.buckets {
            let mut total = match usage.get(key)? {
                Some(v) => match decode_totals(&v, WHAT) {
                    Ok(t) => t,
                    Err(e) => return abort(e),
                },
                None => UsageTotals::default(),
            };
            total.merge(delta);
            usage.insert(key.as_slice(), encode_totals(&total))?;
        }
        for ((id, label), (requests, cost)) in &self.key_usage {
            key_index::add_usage(index, *id, label, *requests, *cost)?;
        }
        Ok(())
    }
}

impl Store {
    /// Adds each hourly delta to its hour, UTC day and lifetime buckets,
    /// appends the records to the request log (pruning the oldest beyond
    /// [`REQUEST_LOG_MAX`]) and moves keys' `last_used_at` forward: one
    /// transaction. Last-used updates emit no event: they do not change
    /// anything a cache of keys needs, and the usage writer runs every few
    /// hundred milliseconds.
    pub fn apply_usage(&self, batch: &UsageBatch) -> Result<(), Error> {
        let plan = BucketPlan::of(&batch.hourly, self.time_zone());
        let mut last_used: BTreeMap<KeyId, DateTime<Utc>> = BTreeMap::new();
        for (id, at) in &batch.key_last_used {
            let entry = last_used.entry(*id).or_insert(*at);
            *entry = (*entry).max(*at);
        }
        let log_cutoff = self.request_log_cutoff(Utc::now());
        let mut log = batch
            .records
            .iter()
            // A record already past the age bound (a replay, a clock jump) would be pruned at once.
            .filter(|r| r.at >= log_cutoff)
            .map(|r| Ok((log_key(r.at), encode(r)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        log.sort_by(|a, b| a.0.cmp(&b.0));

        // The usage writer is the only caller, so the log length cannot move
        // between this plan and the commit.
        let current = self.inner.request_log_len.load(Ordering::Acquire);
        let excess = (current + log.len()).saturating_sub(self.inner.request_log_max);
        let drop_existing = excess.min(current);
        let log = &log[excess - drop_existing..];
        // The log is also bounded by age; aged entries are its oldest, so
        // both bounds drop a prefix of it.
        let drop_existing = drop_existing.max(self.aged_log_entries(Utc::now())?);
        let rank = self.rank_plan(&batch.hourly);
        let prune = self
            .inner
            .requests
            .iter()
            .keys()
            .take(drop_existing)
            .collect::<Result<Vec<_>, _>>()?;

        let new_len = (current + log.len()).saturating_sub(prune.len());
        let trees = (
            &self.inner.usage,
            &self.inner.requests,
            &self.inner.keys,
            self.rank_tree(),
            &self.inner.key_index,
            &self.inner.meta,
        );
        trees.transaction(|(usage, requests, keys, rank_tree, index, meta)| {
            super::usage_query::apply_rank(rank_tree, &rank)?;
            plan.write(usage, index)?;
            for key in &prune {
                requests.remove(key.clone())?;
            }
            for (key, value) in log {
                requests.insert(key.as_slice(), value.as_slice())?;
            }
            if !prune.is_empty() || !log.is_empty() {
                meta.insert(LOG_LEN_META, &(new_len as u64).to_be_bytes())?;
            }
            for (id, at) in &last_used {
                let Some(v) = keys.get(id.0.as_bytes())? else {
                    continue; // a purged key: its usage still counts, there is nothing to touch
                };
                let mut key: ApiKey = match decode(&v, "api key") {
                    Ok(k) => k,
                    Err(e) => return abort(e),
                };
                if key.last_used_at.is_none_or(|prev| prev < *at) {
                    key_index::move_last_used(index, *id, key.last_used_at, *at)?;
                    key.last_used_at = Some(*at);
                    match encode(&key) {
                        Ok(v) => keys.insert(id.0.as_bytes(), v)?,
                        Err(e) => return abort(e),
                    };
                }
            }
            Ok(())
        })?;
        let touched: Vec<KeyId> = last_used.keys().copied().collect();
        self.forget_keys(&touched);
        self.inner.request_log_len.store(new_len, Ordering::Release);
        self.note_usage_written(&batch.hourly);
        Ok(())
    }

    /// Sum over `[from, to)` (hour granularity), or the lifetime total when `range` is None.
    ///
    /// Hour granularity: every hourly bucket that overlaps the range counts in
    /// full. Whole UTC days inside the range are read from day buckets, which
    /// are exact sums of their hours.
    pub fn usage_total(
        &self,
        subject: &UsageSubject,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<UsageTotals, Error> {
        total_in(&self.inner.usage, subject, range)
    }

    /// The newest finished requests, newest first.
    /// The models a key has used (names as upstream reported them).
    pub fn key_models(&self, key_id: KeyId) -> Result<Vec<String>, Error> {
        self.subject_models(&format!("km|{key_id}|"))
    }

    /// The models an account served (names as upstream reported them).
    pub fn account_models(
        &self,
        account_id: crate::domain::AccountId,
    ) -> Result<Vec<String>, Error> {
        self.subject_models(&format!("am|{account_id}|"))
    }

    /// The models under `prefix` (`km|<id>|` or `am|<id>|`): one seek per
    /// model, skipping over its hour and day buckets (escaped names hold no
    /// `|`, so `<model>|` + 0xff is past all of them).
    fn subject_models(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut models = Vec::new();
        let mut cursor = prefix.as_bytes().to_vec();
        while let Some(entry) = self.inner.usage.range(cursor.clone()..).keys().next() {
            let key = entry?;
            let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
                break;
            };
            let Some(end) = rest.iter().position(|b| *b == b'|') else {
                break;
            };
            let model = String::from_utf8_lossy(&rest[..end]).into_owned();
            cursor = [prefix.as_bytes(), &rest[..=end], &[0xff]].concat();
            models.push(unescape(&model));
        }
        Ok(models)
    }

    pub fn recent_requests(&self, limit: usize) -> Result<Vec<UsageRecord>, Error> {
        self.inner
            .requests
            .iter()
            .values()
            .rev()
            .take(limit)
            .map(|v| decode(&v?, WHAT_RECORD))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::sample_key;
    use super::super::test_support::{open, open_with_log_max};
    use super::*;
    use crate::domain::{AccountId, NanoUsd, TokenUsage};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn delta(requests: u64, input: u64, cost: u64) -> UsageTotals {
        UsageTotals {
            requests,
            input_tokens: input,
            output_tokens: 2 * input,
            list_cost: NanoUsd(cost),
            billed_cost: NanoUsd(cost * 2),
            ..UsageTotals::default()
        }
    }

    fn record(when: DateTime<Utc>, model: &str) -> UsageRecord {
        UsageRecord {
            at: when,
            key_id: None,
            account_id: Some(AccountId::generate()),
            requested_model: model.into(),
            model: model.into(),
            tokens: TokenUsage::default(),
            list_cost: NanoUsd(1),
            billed_cost: NanoUsd(1),
            unpriced: false,
            estimated: false,
            status: 200,
            stream: true,
            latency_ms: 10,
            ttfb_ms: 5,
        }
    }

    #[test]
    fn hour_day_and_lifetime_buckets_sum_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let key = UsageSubject::Key(KeyId::generate());
        let other = UsageSubject::Key(KeyId::generate());
        // 22:00 and 23:00 on day 1, 00:00 and 05:00 on day 2, 12:00 on day 4.
        let batch = UsageBatch {
            hourly: vec![
                (key.clone(), at(2025, 1, 1, 22, 0), delta(1, 10, 100)),
                (key.clone(), at(2025, 1, 1, 23, 0), delta(2, 20, 200)),
                (key.clone(), at(2025, 1, 2, 0, 0), delta(3, 30, 300)),
                (key.clone(), at(2025, 1, 2, 5, 0), delta(4, 40, 400)),
                (key.clone(), at(2025, 1, 4, 12, 0), delta(5, 50, 500)),
                (other.clone(), at(2025, 1, 2, 0, 0), delta(100, 1000, 1)),
            ],
            ..UsageBatch::default()
        };
        store.apply_usage(&batch).unwrap();
        // Applying a second batch adds to the same buckets.
        store
            .apply_usage(&UsageBatch {
                hourly: vec![(key.clone(), at(2025, 1, 2, 0, 17), delta(1, 1, 1))],
                ..UsageBatch::default()
            })
            .unwrap();

        let life = store.usage_total(&key, None).unwrap();
        assert_eq!(life.requests, 16);
        assert_eq!(life.input_tokens, 151);
        assert_eq!(life.list_cost, NanoUsd(1501));
        assert_eq!(life.billed_cost, NanoUsd(3002));

        let sum = |from, to| store.usage_total(&key, Some((from, to))).unwrap().requests;
        assert_eq!(
            sum(at(2025, 1, 1, 23, 0), at(2025, 1, 2, 1, 0)),
            2 + 3 + 1,
            "across midnight"
        );
        assert_eq!(
            sum(at(2025, 1, 1, 22, 0), at(2025, 1, 1, 23, 0)),
            1,
            "end is exclusive"
        );
        assert_eq!(
            sum(at(2025, 1, 1, 22, 30), at(2025, 1, 1, 22, 31)),
            1,
            "partial hours count whole"
        );
        assert_eq!(
            sum(at(2025, 1, 2, 0, 0), at(2025, 1, 3, 0, 0)),
            3 + 4 + 1,
            "one whole day"
        );
        assert_eq!(
            sum(at(2025, 1, 1, 23, 0), at(2025, 1, 4, 13, 0)),
            2 + 3 + 4 + 1 + 5,
            "hours + days + hours"
        );
        assert_eq!(
            sum(at(2024, 1, 1, 0, 0), at(2026, 1, 1, 0, 0)),
            16,
            "a range over everything equals lifetime"
        );
        assert_eq!(
            sum(at(2025, 1, 3, 0, 0), at(2025, 1, 4, 0, 0)),
            0,
            "an empty day"
        );
        assert_eq!(
            sum(at(2025, 1, 4, 0, 0), at(2025, 1, 1, 0, 0)),
            0,
            "reversed range"
        );
        let other_total = store.usage_total(&other, None).unwrap();
        assert_eq!(other_total.requests, 100, "subjects do not mix");
    }

    #[test]
    fn model_subjects_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let plain = UsageSubject::Model("m".into());
        let tricky = UsageSubject::Model("m|h|".into());
        let hour = at(2025, 3, 1, 10, 0);
        store
            .apply_usage(&UsageBatch {
                hourly: vec![
                    (plain.clone(), hour, delta(1, 1, 1)),
                    (tricky.clone(), hour, delta(7, 1, 1)),
                ],
                ..UsageBatch::default()
            })
            .unwrap();
        let range = Some((at(2025, 3, 1, 0, 0), at(2025, 3, 2, 0, 0)));
        assert_eq!(store.usage_total(&plain, range).unwrap().requests, 1);
        assert_eq!(store.usage_total(&tricky, range).unwrap().requests, 7);
    }

    #[test]
    fn last_used_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let key = sample_key("k", "h");
        store.create_key(&key).unwrap();
        let t1 = at(2025, 1, 1, 10, 0);
        let t2 = at(2025, 1, 1, 11, 0);
        store
            .apply_usage(&UsageBatch {
                key_last_used: vec![(key.id, t1), (key.id, t2), (KeyId::generate(), t1)],
                ..UsageBatch::default()
            })
            .unwrap();
        assert_eq!(
            store.get_key(key.id).unwrap().unwrap().last_used_at,
            Some(t2)
        );
        store
            .apply_usage(&UsageBatch {
                key_last_used: vec![(key.id, t1)],
                ..UsageBatch::default()
            })
            .unwrap();
        assert_eq!(
            store.get_key(key.id).unwrap().unwrap().last_used_at,
            Some(t2)
        );
    }

    #[test]
    fn request_log_is_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_log_max(dir.path(), 5);
        // Recent, so that the age bound (7 days) keeps them.
        let base = Utc::now() - Duration::hours(3);
        for batch in 0..3 {
            let records = (0..3)
                .map(|i| {
                    record(
                        base + Duration::minutes(batch * 3 + i),
                        &format!("m{}", batch * 3 + i),
                    )
                })
                .collect();
            store
                .apply_usage(&UsageBatch {
                    records,
                    ..UsageBatch::default()
                })
                .unwrap();
        }
        let recent = store.recent_requests(100).unwrap();
        let models: Vec<_> = recent.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, vec!["m8", "m7", "m6", "m5", "m4"]);
        assert_eq!(store.recent_requests(2).unwrap().len(), 2);
        drop(store);
        // The count survives a reopen and pruning continues from there.
        let store = open_with_log_max(dir.path(), 5);
        store
            .apply_usage(&UsageBatch {
                records: vec![record(base + Duration::hours(1), "m9")],
                ..UsageBatch::default()
            })
            .unwrap();
        let models: Vec<_> = store
            .recent_requests(100)
            .unwrap()
            .into_iter()
            .map(|r| r.model)
            .collect();
        assert_eq!(models, vec!["m9", "m8", "m7", "m6", "m5"]);
        let recorded = |s: &Store| s.inner.request_log_len.load(Ordering::Acquire);
        assert_eq!(recorded(&store), 5);
        assert_eq!(stored_log_len(&store.inner.meta).unwrap(), 5);

        // A store from before schema 3 has no recorded length: the migration counts it.
        store.inner.meta.remove(LOG_LEN_META).unwrap();
        store
            .inner
            .meta
            .insert("schema_version", &2u32.to_be_bytes())
            .unwrap();
        drop(store);
        let store = open_with_log_max(dir.path(), 5);
        assert_eq!(recorded(&store), 5);
        assert_eq!(store.request_log_footprint().unwrap().0, 5);
    }

    #[test]
    fn usage_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let subject = UsageSubject::Global;
        {
            let store = open(dir.path());
            store
                .apply_usage(&UsageBatch {
                    hourly: vec![(subject.clone(), at(2025, 1, 1, 1, 0), delta(3, 1, 1))],
                    records: vec![record(Utc::now(), "x")],
                    ..UsageBatch::default()
                })
                .unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.usage_total(&subject, None).unwrap().requests, 3);
        assert_eq!(store.recent_requests(10).unwrap().len(), 1);
    }
}
