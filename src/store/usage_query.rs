//! Analytics over the usage tree without scanning raw request records: cost
//! rankings per local month (the `usage_rank` tree, kept in the same
//! transaction as the buckets), the past-write generation that lets callers
//! cache answers about closed hours, and the filtered, paginated, age- and
//! count-bounded request log.
//!
//! Rankings are kept per month of the analytics time zone (configured
//! `time_zone`), because "top keys this month" must not read every key's
//! buckets. An hour bucket belongs to the local month its start falls in.
//! When the zone changes (or a store predates the rankings), they are rebuilt
//! once from the hour buckets.

use super::trees::decode;
use super::usage::{escape, unescape};
use super::{Error, Store};
use crate::domain::{AccountId, KeyId, NanoUsd, UsageRecord, UsageSubject, UsageTotals};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use sled::transaction::{ConflictableTransactionResult, TransactionalTree};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Default age bound of the request log (it is also bounded by count).
pub const REQUEST_LOG_MAX_AGE: Duration = Duration::days(7);
/// Most aged-out log entries one flush removes, so a backlog (after a long
/// stop) is worked off over several flushes instead of one huge transaction.
const AGE_PRUNE_PER_FLUSH: usize = 10_000;
const ZONE_KEY: &[u8] = b"zone";
const WHAT: &str = "usage bucket";

/// What a cost ranking ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RankKind {
    /// Ranked by billed cost.
    Key,
    /// Ranked by list cost (what the account costs upstream).
    Account,
    /// Ranked by billed cost.
    Model,
}

impl RankKind {
    fn tag(self) -> char {
        match self {
            RankKind::Key => 'k',
            RankKind::Account => 'a',
            RankKind::Model => 'm',
        }
    }

    /// The cost this kind is ranked by.
    pub fn sort_cost(self, billed: NanoUsd, list: NanoUsd) -> NanoUsd {
        match self {
            RankKind::Account => list,
            RankKind::Key | RankKind::Model => billed,
        }
    }
}

/// One entry of a ranking: a key or account id (UUID text) or a model name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankedCost {
    pub id: String,
    pub billed: NanoUsd,
    pub list: NanoUsd,
}

/// Store-side analytics state (one per open store).
pub(crate) struct AnalyticsState {
    rank: sled::Tree,
    zone: parking_lot::RwLock<Tz>,
    generation: AtomicU64,
    log_max_age_secs: AtomicI64,
}

impl AnalyticsState {
    pub(crate) fn new(rank: sled::Tree) -> AnalyticsState {
        AnalyticsState {
            rank,
            zone: parking_lot::RwLock::new(chrono_tz::UTC),
            generation: AtomicU64::new(0),
            log_max_age_secs: AtomicI64::new(REQUEST_LOG_MAX_AGE.num_seconds()),
        }
    }
}

/// Cost deltas per (local month, kind, id) of one usage batch.
#[derive(Default)]
pub(crate) struct RankPlan(BTreeMap<(String, RankKind, String), (u64, u64)>);

fn month_label(tz: Tz, hour: DateTime<Utc>) -> String {
    hour.with_timezone(&tz).format("%Y%m").to_string()
}

fn value_key(month: &str, kind: RankKind, id: &str) -> Vec<u8> {
    format!("v|{month}|{}|{id}", kind.tag()).into_bytes()
}

fn order_prefix(month: &str, kind: RankKind) -> Vec<u8> {
    format!("o|{month}|{}|", kind.tag()).into_bytes()
}

/// Highest cost first: the inverted big-endian cost sorts descending.
fn order_key(month: &str, kind: RankKind, id: &str, billed: u64, list: u64) -> Vec<u8> {
    let mut key = order_prefix(month, kind);
    let cost = kind.sort_cost(NanoUsd(billed), NanoUsd(list)).0;
    key.extend_from_slice(&(!cost).to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

fn encode_costs(billed: u64, list: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&billed.to_be_bytes());
    v[8..].copy_from_slice(&list.to_be_bytes());
    v
}

fn decode_costs(v: &[u8]) -> Option<(u64, u64)> {
    let billed = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let list = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((billed, list))
}

fn rank_id(subject: &UsageSubject) -> Option<(RankKind, String)> {
    match subject {
        UsageSubject::Key(id) => Some((RankKind::Key, id.to_string())),
        UsageSubject::Account(id) => Some((RankKind::Account, id.to_string())),
        UsageSubject::Model(m) => Some((RankKind::Model, escape(m))),
        _ => None,
    }
}

impl RankPlan {
    fn add(&mut self, month: String, kind: RankKind, id: String, delta: &UsageTotals) {
        let e = self.0.entry((month, kind, id)).or_default();
        e.0 = e.0.saturating_add(delta.billed_cost.0);
        e.1 = e.1.saturating_add(delta.list_cost.0);
    }
}

/// Applies a plan inside the usage transaction: each entry's old order key
/// goes, the new value and order key come.
pub(crate) fn apply_rank(
    rank: &TransactionalTree,
    plan: &RankPlan,
) -> ConflictableTransactionResult<(), Error> {
    for ((month, kind, id), (db, dl)) in &plan.0 {
        let vkey = value_key(month, *kind, id);
        let (ob, ol) = match rank.get(&vkey)? {
            Some(v) => {
                let (b, l) = decode_costs(&v).unwrap_or((0, 0));
                rank.remove(order_key(month, *kind, id, b, l))?;
                (b, l)
            }
            None => (0, 0),
        };
        let (nb, nl) = (ob.saturating_add(*db), ol.saturating_add(*dl));
        rank.insert(vkey, &encode_costs(nb, nl)[..])?;
        rank.insert(order_key(month, *kind, id, nb, nl), &[][..])?;
    }
    Ok(())
}

/// A filter over the request log; empty lists match everything.
#[derive(Clone, Debug, Default)]
pub struct RequestLogFilter {
    pub key_ids: Vec<KeyId>,
    pub account_ids: Vec<AccountId>,
    /// Matches the upstream-reported or the requested model name.
    pub models: Vec<String>,
    pub statuses: Vec<u16>,
    /// `Some(true)`: only non-2xx; `Some(false)`: only 2xx.
    pub errors: Option<bool>,
}

impl RequestLogFilter {
    pub fn is_empty(&self) -> bool {
        self.key_ids.is_empty()
            && self.account_ids.is_empty()
            && self.models.is_empty()
            && self.statuses.is_empty()
            && self.errors.is_none()
    }

    pub fn matches(&self, r: &UsageRecord) -> bool {
        let any = |ok: bool, empty: bool| empty || ok;
        any(
            r.key_id.is_some_and(|k| self.key_ids.contains(&k)),
            self.key_ids.is_empty(),
        ) && any(
            r.account_id.is_some_and(|a| self.account_ids.contains(&a)),
            self.account_ids.is_empty(),
        ) && any(
            self.models
                .iter()
                .any(|m| *m == r.model || *m == r.requested_model),
            self.models.is_empty(),
        ) && any(self.statuses.contains(&r.status), self.statuses.is_empty())
            && self
                .errors
                .is_none_or(|e| e != (200..300).contains(&r.status))
    }
}

/// One request-log entry with its position (the opaque log key) for cursors.
#[derive(Clone, Debug)]
pub struct RequestLogEntry {
    pub position: Vec<u8>,
    pub record: UsageRecord,
}

impl Store {
    /// Sets the zone of the monthly cost rankings; rebuilds them from the hour
    /// buckets when the stored rankings were kept in another zone (or none).
    pub fn set_analytics_time_zone(&self, tz: Tz) -> Result<(), Error> {
        *self.inner.analytics.zone.write() = tz;
        let rank = &self.inner.analytics.rank;
        let stored = rank.get(ZONE_KEY)?;
        if stored.as_deref() == Some(tz.name().as_bytes()) {
            return Ok(());
        }
        self.rebuild_rankings(tz)
    }

    /// The zone of the monthly cost rankings.
    pub fn analytics_time_zone(&self) -> Tz {
        *self.inner.analytics.zone.read()
    }

    fn rebuild_rankings(&self, tz: Tz) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let mut plan = RankPlan::default();
        for (prefix, kind) in [
            ("k|", RankKind::Key),
            ("a|", RankKind::Account),
            ("m|", RankKind::Model),
        ] {
            for entry in self.inner.usage.scan_prefix(prefix.as_bytes()) {
                let (key, value) = entry?;
                let Ok(text) = std::str::from_utf8(&key) else {
                    continue;
                };
                // `<kind>|<id>|h|yyyymmddhh`: only hour buckets.
                let Some((head, stamp)) = text.rsplit_once("|h|") else {
                    continue;
                };
                let Some(id) = head.strip_prefix(prefix) else {
                    continue;
                };
                let Ok(naive) =
                    chrono::NaiveDateTime::parse_from_str(&format!("{stamp}0000"), "%Y%m%d%H%M%S")
                else {
                    continue;
                };
                let hour = Utc.from_utc_datetime(&naive);
                let totals = super::trees::decode_totals(&value, WHAT)?;
                plan.add(month_label(tz, hour), kind, id.to_string(), &totals);
            }
        }
        let rank = &self.inner.analytics.rank;
        rank.clear()?;
        let mut batch = sled::Batch::default();
        for ((month, kind, id), (b, l)) in &plan.0 {
            batch.insert(value_key(month, *kind, id), &encode_costs(*b, *l)[..]);
            batch.insert(order_key(month, *kind, id, *b, *l), &[][..]);
        }
        batch.insert(ZONE_KEY, tz.name().as_bytes());
        rank.apply_batch(batch)?;
        tracing::info!(
            zone = tz.name(),
            entries = plan.0.len(),
            ms = started.elapsed().as_millis() as u64,
            "cost rankings rebuilt"
        );
        Ok(())
    }

    /// The ranking deltas of a batch's hourly deltas.
    pub(crate) fn rank_plan(
        &self,
        hourly: &[(UsageSubject, DateTime<Utc>, UsageTotals)],
    ) -> RankPlan {
        let tz = self.analytics_time_zone();
        let mut plan = RankPlan::default();
        for (subject, hour, delta) in hourly {
            if let Some((kind, id)) = rank_id(subject) {
                plan.add(month_label(tz, *hour), kind, id, delta);
            }
        }
        plan
    }

    pub(crate) fn rank_tree(&self) -> &sled::Tree {
        &self.inner.analytics.rank
    }

    /// Counts a write that reaches an hour before the previous one, so that
    /// cached answers about closed hours are no longer trusted.
    pub(crate) fn note_usage_written(&self, hourly: &[(UsageSubject, DateTime<Utc>, UsageTotals)]) {
        if self.reaches_closed_hours(hourly) {
            self.note_closed_hours_written();
        }
    }

    pub(crate) fn reaches_closed_hours(
        &self,
        hourly: &[(UsageSubject, DateTime<Utc>, UsageTotals)],
    ) -> bool {
        let horizon = closed_horizon(Utc::now());
        hourly.iter().any(|(_, hour, _)| *hour < horizon)
    }

    pub(crate) fn note_closed_hours_written(&self) {
        self.inner
            .analytics
            .generation
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever usage of a closed hour (see [`closed_horizon`]) is
    /// written; part of every analytics cache key.
    pub fn usage_generation(&self) -> u64 {
        self.inner.analytics.generation.load(Ordering::Acquire)
    }

    /// The `n` most expensive subjects of a local month (`yyyymm` in the
    /// analytics zone), most expensive first.
    pub fn top_of_month(
        &self,
        kind: RankKind,
        month: &str,
        n: usize,
    ) -> Result<Vec<RankedCost>, Error> {
        let rank = &self.inner.analytics.rank;
        let prefix = order_prefix(month, kind);
        let mut out = Vec::with_capacity(n.min(1024));
        for key in rank.scan_prefix(&prefix).keys().take(n) {
            let key = key?;
            let Some(id) = key
                .get(prefix.len() + 8..)
                .and_then(|b| std::str::from_utf8(b).ok())
            else {
                continue;
            };
            let (billed, list) = rank
                .get(value_key(month, kind, id))?
                .and_then(|v| decode_costs(&v))
                .unwrap_or((0, 0));
            out.push(RankedCost {
                id: display_id(kind, id),
                billed: NanoUsd(billed),
                list: NanoUsd(list),
            });
        }
        Ok(out)
    }

    /// Every subject with cost in a local month (unordered).
    pub fn ranked_in_month(&self, kind: RankKind, month: &str) -> Result<Vec<RankedCost>, Error> {
        let prefix = format!("v|{month}|{}|", kind.tag());
        let mut out = Vec::new();
        for entry in self.inner.analytics.rank.scan_prefix(prefix.as_bytes()) {
            let (key, value) = entry?;
            let Some(id) = key
                .get(prefix.len()..)
                .and_then(|b| std::str::from_utf8(b).ok())
            else {
                continue;
            };
            let (billed, list) = decode_costs(&value).unwrap_or((0, 0));
            out.push(RankedCost {
                id: display_id(kind, id),
                billed: NanoUsd(billed),
                list: NanoUsd(list),
            });
        }
        Ok(out)
    }

    /// The models a key used in `[from, to)` (hour granularity), from its
    /// key×model day and hour buckets (never the request log).
    pub fn key_models_in(
        &self,
        key_id: KeyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for model in self.key_models(key_id)? {
            let t = self.usage_total(
                &UsageSubject::KeyModel(key_id, model.clone()),
                Some((from, to)),
            )?;
            if t.requests > 0 {
                out.push(model);
            }
        }
        Ok(out)
    }

    /// Sets how old a request-log entry may get (the count bound stays).
    pub fn set_request_log_max_age(&self, age: Duration) {
        self.inner
            .analytics
            .log_max_age_secs
            .store(age.num_seconds().max(1), Ordering::Relaxed);
    }

    /// Log entries older than this are past the age bound.
    pub(crate) fn request_log_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let age = self
            .inner
            .analytics
            .log_max_age_secs
            .load(Ordering::Relaxed);
        now - Duration::seconds(age)
    }

    /// How many of the oldest log entries are past the age bound (at most
    /// [`AGE_PRUNE_PER_FLUSH`]); they form a prefix of the log.
    pub(crate) fn aged_log_entries(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let cutoff = self.request_log_cutoff(now);
        let micros = u64::try_from(cutoff.timestamp_micros()).unwrap_or(0);
        let mut n = 0;
        for key in self
            .inner
            .requests
            .range(..micros.to_be_bytes().to_vec())
            .keys()
            .take(AGE_PRUNE_PER_FLUSH)
        {
            key?;
            n += 1;
        }
        Ok(n)
    }

    /// A page of the request log, newest first, after `after` (a position
    /// from an earlier page), with whether more match and how many match in all.
    pub fn request_log_page(
        &self,
        filter: &RequestLogFilter,
        after: Option<&[u8]>,
        first: usize,
    ) -> Result<(Vec<RequestLogEntry>, bool, usize), Error> {
        let requests = &self.inner.requests;
        let iter = match after {
            Some(pos) => requests.range(..pos.to_vec()),
            None => requests.range::<Vec<u8>, _>(..),
        };
        let mut page = Vec::with_capacity(first.min(500) + 1);
        for entry in iter.rev() {
            let (key, value) = entry?;
            let record: UsageRecord = decode(&value, "request log entry")?;
            if filter.matches(&record) {
                page.push(RequestLogEntry {
                    position: key.to_vec(),
                    record,
                });
                if page.len() > first {
                    break;
                }
            }
        }
        let has_next = page.len() > first;
        page.truncate(first);
        // The log is bounded (count and age), so an exact filtered count is a
        // bounded scan; unfiltered it is the kept length.
        let total = if filter.is_empty() {
            self.inner.request_log_len.load(Ordering::Acquire)
        } else {
            let mut n = 0;
            for value in requests.iter().values() {
                if filter.matches(&decode(&value?, "request log entry")?) {
                    n += 1;
                }
            }
            n
        };
        Ok((page, has_next, total))
    }

    /// (entries, bytes of keys and values) of the request log, for reports.
    pub fn request_log_footprint(&self) -> Result<(usize, u64), Error> {
        let mut n = 0;
        let mut bytes = 0u64;
        for entry in self.inner.requests.iter() {
            let (k, v) = entry?;
            n += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((n, bytes))
    }

    /// The sum of several subjects' totals over the same range.
    pub fn usage_total_of(
        &self,
        subjects: &[UsageSubject],
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<UsageTotals, Error> {
        let mut total = UsageTotals::default();
        for s in subjects {
            total.merge(&self.usage_total(s, range)?);
        }
        Ok(total)
    }

    /// Month costs of many subjects at once, by id (for ranking ranges that
    /// are whole local months).
    pub fn month_costs(
        &self,
        kind: RankKind,
        months: &[String],
    ) -> Result<HashMap<String, (NanoUsd, NanoUsd)>, Error> {
        let mut out: HashMap<String, (NanoUsd, NanoUsd)> = HashMap::new();
        for m in months {
            for r in self.ranked_in_month(kind, m)? {
                let e = out.entry(r.id).or_insert((NanoUsd::ZERO, NanoUsd::ZERO));
                e.0 = e.0.saturating_add(r.billed);
                e.1 = e.1.saturating_add(r.list);
            }
        }
        Ok(out)
    }
}

fn display_id(kind: RankKind, id: &str) -> String {
    match kind {
        RankKind::Model => unescape(id),
        _ => id.to_string(),
    }
}

/// Hours before this instant are closed: no new usage lands in them in
/// normal operation (records are stamped when they finish and flushed within
/// a second), so answers about them may be cached until the generation moves.
pub fn closed_horizon(now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = now.timestamp();
    let hour = secs - secs.rem_euclid(3600);
    Utc.timestamp_opt(hour - 3600, 0).single().unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open, open_with_log_max};
    use super::super::UsageBatch;
    use super::*;
    use crate::domain::TokenUsage;

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    fn cost(billed: u64, list: u64) -> UsageTotals {
        UsageTotals {
            requests: 1,
            billed_cost: NanoUsd(billed),
            list_cost: NanoUsd(list),
            ..UsageTotals::default()
        }
    }

    #[test]
    fn rankings_follow_writes_and_local_months() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .set_analytics_time_zone(chrono_tz::Asia::Tokyo)
            .unwrap();
        let (a, b) = (KeyId::generate(), KeyId::generate());
        // 2025-01-31 20:00 UTC is 2025-02-01 05:00 in Tokyo.
        store
            .apply_usage(&UsageBatch {
                hourly: vec![
                    (UsageSubject::Key(a), at(2025, 1, 31, 20), cost(100, 50)),
                    (UsageSubject::Key(b), at(2025, 1, 31, 10), cost(70, 500)),
                    (UsageSubject::Key(b), at(2025, 2, 3, 10), cost(60, 1)),
                ],
                ..UsageBatch::default()
            })
            .unwrap();
        let feb = store.top_of_month(RankKind::Key, "202502", 10).unwrap();
        assert_eq!(
            feb.iter()
                .map(|r| (r.id.clone(), r.billed.0))
                .collect::<Vec<_>>(),
            vec![(a.to_string(), 100), (b.to_string(), 60)]
        );
        let jan = store.top_of_month(RankKind::Key, "202501", 10).unwrap();
        assert_eq!(jan.len(), 1);
        assert_eq!(jan[0].billed, NanoUsd(70));
        // A second write moves b above a (old order entries are removed).
        store
            .apply_usage(&UsageBatch {
                hourly: vec![(UsageSubject::Key(b), at(2025, 2, 4, 0), cost(50, 1))],
                ..UsageBatch::default()
            })
            .unwrap();
        let feb = store.top_of_month(RankKind::Key, "202502", 10).unwrap();
        assert_eq!(feb[0].id, b.to_string());
        assert_eq!(feb[0].billed, NanoUsd(110));
        assert_eq!(feb.len(), 2, "no stale order entries");
        assert_eq!(
            store
                .top_of_month(RankKind::Key, "202502", 1)
                .unwrap()
                .len(),
            1
        );

        // Another zone rebuilds from the hour buckets: in UTC, a's hour is January.
        store.set_analytics_time_zone(chrono_tz::UTC).unwrap();
        let jan = store.top_of_month(RankKind::Key, "202501", 10).unwrap();
        assert_eq!(
            jan.iter()
                .map(|r| (r.id.clone(), r.billed.0))
                .collect::<Vec<_>>(),
            vec![(a.to_string(), 100), (b.to_string(), 70)]
        );
        let feb = store.top_of_month(RankKind::Key, "202502", 10).unwrap();
        assert_eq!(feb.len(), 1);
        assert_eq!(feb[0].billed, NanoUsd(110));
    }

    #[test]
    fn accounts_rank_by_list_cost_and_models_are_unescaped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (x, y) = (AccountId::generate(), AccountId::generate());
        store
            .apply_usage(&UsageBatch {
                hourly: vec![
                    (UsageSubject::Account(x), at(2025, 3, 1, 0), cost(1000, 1)),
                    (UsageSubject::Account(y), at(2025, 3, 1, 0), cost(1, 9)),
                    (
                        UsageSubject::Model("a|b".into()),
                        at(2025, 3, 1, 0),
                        cost(5, 5),
                    ),
                ],
                ..UsageBatch::default()
            })
            .unwrap();
        let top = store.top_of_month(RankKind::Account, "202503", 2).unwrap();
        assert_eq!(top[0].id, y.to_string());
        let models = store.top_of_month(RankKind::Model, "202503", 2).unwrap();
        assert_eq!(models[0].id, "a|b");
    }

    fn record(at: DateTime<Utc>, key: Option<KeyId>, model: &str, status: u16) -> UsageRecord {
        UsageRecord {
            at,
            key_id: key,
            account_id: None,
            requested_model: model.into(),
            model: model.into(),
            tokens: TokenUsage::default(),
            list_cost: NanoUsd(1),
            billed_cost: NanoUsd(1),
            unpriced: false,
            estimated: false,
            status,
            stream: false,
            latency_ms: 1,
            ttfb_ms: 1,
        }
    }

    #[test]
    fn request_log_pages_filter_and_age_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_log_max(dir.path(), 1000);
        let key = KeyId::generate();
        let now = Utc::now();
        let mut records = Vec::new();
        for i in 0..30i64 {
            let k = (i % 3 == 0).then_some(key);
            let status = if i % 5 == 0 { 529 } else { 200 };
            records.push(record(now - Duration::seconds(100 - i), k, "m", status));
        }
        // Two entries that age out: kept while the bound is 30 days, gone
        // with the next flush once it is 7 days again.
        records.push(record(now - Duration::days(8), Some(key), "m", 200));
        records.push(record(now - Duration::days(9), Some(key), "m", 200));
        store.set_request_log_max_age(Duration::days(30));
        store
            .apply_usage(&UsageBatch {
                records,
                ..UsageBatch::default()
            })
            .unwrap();
        store.set_request_log_max_age(REQUEST_LOG_MAX_AGE);
        assert_eq!(store.aged_log_entries(now).unwrap(), 2);
        store.apply_usage(&UsageBatch::default()).unwrap();
        assert_eq!(store.aged_log_entries(now).unwrap(), 0);
        // Records already past the bound are not logged at all.
        store
            .apply_usage(&UsageBatch {
                records: vec![record(now - Duration::days(10), None, "m", 200)],
                ..UsageBatch::default()
            })
            .unwrap();
        assert_eq!(store.aged_log_entries(now).unwrap(), 0);

        let filter = RequestLogFilter {
            key_ids: vec![key],
            ..RequestLogFilter::default()
        };
        let (p1, more, total) = store.request_log_page(&filter, None, 4).unwrap();
        assert_eq!(total, 10);
        assert!(more);
        assert_eq!(p1.len(), 4);
        assert!(p1.windows(2).all(|w| w[0].record.at >= w[1].record.at));
        let mut seen = p1.len();
        let mut after = p1.last().unwrap().position.clone();
        loop {
            let (p, more, _) = store.request_log_page(&filter, Some(&after), 4).unwrap();
            seen += p.len();
            assert!(p.iter().all(|e| e.record.key_id == Some(key)));
            if !more {
                break;
            }
            after = p.last().unwrap().position.clone();
        }
        assert_eq!(seen, 10, "pages cover every match once");
        let errors = RequestLogFilter {
            errors: Some(true),
            ..RequestLogFilter::default()
        };
        let (_, _, n) = store.request_log_page(&errors, None, 1).unwrap();
        assert_eq!(n, 6);
        let (_, _, all) = store
            .request_log_page(&RequestLogFilter::default(), None, 1)
            .unwrap();
        assert_eq!(all, 30);
    }

    #[test]
    fn models_of_a_key_and_an_account_are_found_by_seeking() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (k, other) = (KeyId::generate(), KeyId::generate());
        let a = AccountId::generate();
        let mut hourly = Vec::new();
        for (i, m) in ["b", "a|x", "a", "c%"].iter().enumerate() {
            for h in 0..30 {
                let t = at(2025, 1, 1, 0) + Duration::hours(h * (i as i64 + 1));
                hourly.push((UsageSubject::KeyModel(k, m.to_string()), t, cost(1, 1)));
            }
        }
        hourly.push((
            UsageSubject::KeyModel(other, "z".into()),
            at(2025, 1, 1, 0),
            cost(1, 1),
        ));
        hourly.push((
            UsageSubject::AccountModel(a, "m1".into()),
            at(2025, 1, 1, 0),
            cost(1, 1),
        ));
        store
            .apply_usage(&UsageBatch {
                hourly,
                ..UsageBatch::default()
            })
            .unwrap();
        let mut models = store.key_models(k).unwrap();
        models.sort();
        assert_eq!(models, vec!["a", "a|x", "b", "c%"]);
        assert_eq!(store.key_models(other).unwrap(), vec!["z"]);
        assert_eq!(store.account_models(a).unwrap(), vec!["m1"]);
        assert!(store
            .account_models(AccountId::generate())
            .unwrap()
            .is_empty());
        let in_range = store
            .key_models_in(k, at(2025, 1, 3, 0), at(2025, 1, 5, 0))
            .unwrap();
        assert_eq!(
            in_range.len(),
            3,
            "model `b` stops after 30 hours: {in_range:?}"
        );
    }

    #[test]
    fn closed_horizon_is_the_start_of_the_previous_hour() {
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 10, 30, 0).unwrap();
        assert_eq!(closed_horizon(now), at(2025, 1, 1, 9));
    }
}
