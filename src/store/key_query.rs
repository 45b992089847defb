//! Key queries: the one filter and ordering every key listing shares (the
//! admin API's `apiKeys`, exports, batch operations), and the store's paged
//! answer to them. Pages are keyset-based on (sort value, id), so a reader
//! walking a large store in batches never holds more than one page.

use super::{key_index, Error, Store};
use crate::domain::{AccountId, ApiKey, GroupId, KeyBinding, KeyId, KeyStatus, UsageSubject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which keys. Every present criterion must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyFilter {
    /// Only these statuses; `None` means every status except `Deleted`.
    pub statuses: Option<Vec<KeyStatus>>,
    /// Only these ids (batch operations by id).
    pub ids: Option<Vec<KeyId>>,
    /// Keys carrying every one of these tags.
    pub tags: Vec<String>,
    /// Case-insensitive substring of the name, description or display prefix.
    pub search: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Keys with an expiry before this instant (never-expiring keys excluded).
    pub expires_before: Option<DateTime<Utc>>,
    pub bound_account: Option<AccountId>,
    pub bound_group: Option<GroupId>,
    /// Usage thresholds, over [`KeyFilter::usage_since`] (lifetime when absent).
    pub min_billed_cost_nano: Option<u64>,
    pub max_billed_cost_nano: Option<u64>,
    pub min_requests: Option<u64>,
    pub max_requests: Option<u64>,
    /// Start of the usage period for thresholds and cost ordering (e.g. the
    /// first instant of this month in the configured zone); `None` = lifetime.
    pub usage_since: Option<DateTime<Utc>>,
}

impl KeyFilter {
    /// Whether the filter needs usage totals (read from usage buckets).
    pub fn needs_usage(&self) -> bool {
        self.min_billed_cost_nano.is_some()
            || self.max_billed_cost_nano.is_some()
            || self.min_requests.is_some()
            || self.max_requests.is_some()
    }

    /// The criteria that need only the key record.
    pub fn matches_record(&self, k: &ApiKey) -> bool {
        let status_ok = match &self.statuses {
            Some(list) => list.contains(&k.status),
            None => k.status != KeyStatus::Deleted,
        };
        if !status_ok {
            return false;
        }
        if let Some(ids) = &self.ids {
            if !ids.contains(&k.id) {
                return false;
            }
        }
        if !self
            .tags
            .iter()
            .all(|t| k.tags.iter().any(|x| x.eq_ignore_ascii_case(t.trim())))
        {
            return false;
        }
        if let Some(s) = self
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let s = s.to_lowercase();
            let hit = k.name.to_lowercase().contains(&s)
                || k.description.to_lowercase().contains(&s)
                || k.display_prefix.to_lowercase().contains(&s);
            if !hit {
                return false;
            }
        }
        if self.created_from.is_some_and(|t| k.created_at < t)
            || self.created_before.is_some_and(|t| k.created_at >= t)
        {
            return false;
        }
        if let Some(before) = self.expires_before {
            if k.expires_at.is_none_or(|e| e >= before) {
                return false;
            }
        }
        if let Some(a) = self.bound_account {
            if k.binding != KeyBinding::Account(a) {
                return false;
            }
        }
        if let Some(g) = self.bound_group {
            if k.binding != KeyBinding::Group(g) {
                return false;
            }
        }
        true
    }

    /// The usage criteria, given the key's totals over the filter's period.
    pub fn matches_usage(&self, requests: u64, billed_cost_nano: u64) -> bool {
        self.min_billed_cost_nano
            .is_none_or(|m| billed_cost_nano >= m)
            && self
                .max_billed_cost_nano
                .is_none_or(|m| billed_cost_nano <= m)
            && self.min_requests.is_none_or(|m| requests >= m)
            && self.max_requests.is_none_or(|m| requests <= m)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySortField {
    #[default]
    CreatedAt,
    Name,
    LastUsedAt,
    /// Billed cost over the filter's usage period.
    BilledCost,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOrder {
    pub field: KeySortField,
    pub descending: bool,
}

/// A key's place in one ordering, compared as (value, id). `value` is a
/// fixed-width or lowercased string so byte order is the sort order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyPosition {
    pub value: String,
    pub id: KeyId,
}

/// One key in a page, with its position (for the next page's `after`).
#[derive(Clone, Debug)]
pub struct KeyHit {
    pub key: ApiKey,
    pub position: KeyPosition,
}

#[derive(Clone, Debug, Default)]
pub struct KeyPage {
    pub hits: Vec<KeyHit>,
    /// Matching keys in total, when asked for.
    pub total_count: Option<u64>,
    pub has_next: bool,
}

fn time_value(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(String::new, |t| {
        format!("{:020}", t.timestamp_micros().max(0))
    })
}

/// Where a query's candidates come from.
enum Source {
    /// The filter's id list.
    Ids(Vec<KeyId>),
    /// The union of these posting prefixes (e.g. one tag's, or one per status).
    Postings(Vec<Vec<u8>>),
    /// Keys whose billed cost in the period lies in `[lo, hi]` (lo > 0).
    CostRange { label: String, lo: u64, hi: u64 },
}

/// Candidates below this (relative to the page and store size) are read and
/// sorted in memory; above it the ordering index is walked instead.
fn prefer_candidates(candidates: u64, limit: usize, keys: u64) -> bool {
    let c = u128::from(candidates);
    c * c <= (limit as u128 + 1) * u128::from(keys.max(1))
}

fn parse_micros(value: &str) -> Result<u64, Error> {
    value
        .parse::<u64>()
        .map_err(|_| Error::Corrupt("key position is not a number".into()))
}

impl Store {
    /// Usage totals of one key over `[since, now)`, or its lifetime totals,
    /// from the buckets (periods the index does not keep).
    fn key_usage_since(
        &self,
        id: KeyId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), Error> {
        let range = since.map(|s| (s, Utc::now() + chrono::Duration::hours(1)));
        let t = self.usage_total(&UsageSubject::Key(id), range)?;
        Ok((t.requests, t.billed_cost.0))
    }

    /// (requests, billed cost) of a key in the filter's period.
    fn period_usage(
        &self,
        id: KeyId,
        filter: &KeyFilter,
        label: Option<&str>,
    ) -> Result<(u64, u64), Error> {
        match label {
            Some(l) => self.indexed_usage(id, l),
            None => self.key_usage_since(id, filter.usage_since),
        }
    }

    fn key_position(
        &self,
        k: &ApiKey,
        filter: &KeyFilter,
        order: &KeyOrder,
        label: Option<&str>,
    ) -> Result<KeyPosition, Error> {
        let value = match order.field {
            KeySortField::CreatedAt => time_value(Some(k.created_at)),
            KeySortField::LastUsedAt => time_value(k.last_used_at),
            KeySortField::Name => k.name.to_lowercase(),
            KeySortField::BilledCost => {
                let (_, cost) = self.period_usage(k.id, filter, label)?;
                format!("{cost:020}")
            }
        };
        Ok(KeyPosition { value, id: k.id })
    }

    /// The key if it passes every criterion of the filter.
    fn matching_key(
        &self,
        id: KeyId,
        filter: &KeyFilter,
        label: Option<&str>,
    ) -> Result<Option<std::sync::Arc<ApiKey>>, Error> {
        let Some(key) = self.cached_key(id)? else {
            return Ok(None);
        };
        if !filter.matches_record(&key) {
            return Ok(None);
        }
        if filter.needs_usage() {
            let (requests, cost) = self.period_usage(id, filter, label)?;
            if !filter.matches_usage(requests, cost) {
                return Ok(None);
            }
        }
        Ok(Some(key))
    }

    /// One page of the keys matching `filter` in `order`, strictly after
    /// `after` (in that order's direction). `with_total` also counts every
    /// match; batch readers leave it off.
    ///
    /// Plan: the filter's most selective source (ids, a tag, a binding, a
    /// search trigram, a cost range or the statuses; sizes from the index
    /// counters) is compared with walking the ordering's index. A small
    /// source is read, checked and sorted in memory (keeping only the page);
    /// otherwise the ordering index is walked from `after` and each key is
    /// checked until the page is full. `totalCount` comes from the counters
    /// when the filter is one posting plus statuses, else from the source.
    /// Orderings by cost over a period the index does not keep (not this
    /// month, not lifetime) fall back to the source and the usage buckets.
    pub fn query_keys(
        &self,
        filter: &KeyFilter,
        order: &KeyOrder,
        after: Option<&KeyPosition>,
        limit: usize,
        with_total: bool,
    ) -> Result<KeyPage, Error> {
        let mut statuses: Vec<KeyStatus> = filter
            .statuses
            .clone()
            .unwrap_or_else(|| vec![KeyStatus::Active, KeyStatus::Disabled]);
        statuses.sort_by_key(|s| key_index::status_byte(*s));
        statuses.dedup();
        let uses_usage = filter.needs_usage() || order.field == KeySortField::BilledCost;
        let label = if uses_usage {
            self.usage_label(filter.usage_since)
        } else {
            None
        };
        let label = label.as_deref();
        let all_keys = self.index_count_all()?;

        // The candidate sources and their sizes (upper bounds).
        let mut sources: Vec<(u64, Source)> = Vec::new();
        let status_prefixes: Vec<Vec<u8>> = statuses
            .iter()
            .map(|s| key_index::status_prefix(*s))
            .collect();
        sources.push((
            self.index_count_each(&status_prefixes, &statuses)?,
            Source::Postings(status_prefixes),
        ));
        let mut postings = 0usize;
        if let Some(ids) = &filter.ids {
            let mut ids = ids.clone();
            ids.sort();
            ids.dedup();
            sources.push((ids.len() as u64, Source::Ids(ids)));
        }
        let mut single = |prefix: Vec<u8>, sources: &mut Vec<(u64, Source)>| -> Result<(), Error> {
            postings += 1;
            let n = self.index_count(&prefix, &statuses)?;
            sources.push((n, Source::Postings(vec![prefix])));
            Ok(())
        };
        for t in &filter.tags {
            single(key_index::tag_prefix(t.trim()), &mut sources)?;
        }
        if let Some(a) = filter.bound_account {
            single(key_index::account_prefix(a), &mut sources)?;
        }
        if let Some(g) = filter.bound_group {
            single(key_index::group_prefix(g), &mut sources)?;
        }
        let search = filter
            .search
            .as_deref()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        if let Some(s) = &search {
            let mut best: Option<(u64, Vec<u8>)> = None;
            for t in key_index::trigrams(s) {
                let p = key_index::trigram_prefix(&t);
                let n = self.index_count(&p, &statuses)?;
                if best.as_ref().is_none_or(|b| n < b.0) {
                    best = Some((n, p));
                }
            }
            if let Some((n, p)) = best {
                sources.push((n, Source::Postings(vec![p])));
            }
        }
        if let (Some(l), Some(lo)) = (label, filter.min_billed_cost_nano.filter(|m| *m > 0)) {
            sources.push((
                self.cost_count(l)?,
                Source::CostRange {
                    label: l.to_string(),
                    lo,
                    hi: filter.max_billed_cost_nano.unwrap_or(u64::MAX),
                },
            ));
        }
        let (candidates, source) = sources
            .into_iter()
            .min_by_key(|(n, _)| *n)
            .unwrap_or((0, Source::Postings(Vec::new())));

        // Exact counts straight from the counters: statuses plus at most one posting.
        let simple = postings <= 1
            && filter.ids.is_none()
            && search.is_none()
            && filter.created_from.is_none()
            && filter.created_before.is_none()
            && filter.expires_before.is_none()
            && !filter.needs_usage();
        let counter_total = if simple { Some(candidates) } else { None };
        let indexed_order = order.field != KeySortField::BilledCost || label.is_some();
        let from_source = !indexed_order
            || (with_total && counter_total.is_none())
            || prefer_candidates(candidates, limit, all_keys);

        let mut page = if from_source {
            self.page_from_source(&source, filter, order, after, limit, label)?
        } else {
            self.page_from_order(filter, order, after, limit, label)?
        };
        if with_total {
            page.total_count = counter_total.or(page.total_count);
        } else {
            page.total_count = None;
        }
        Ok(page)
    }

    /// Keys in the index, any status.
    fn index_count_all(&self) -> Result<u64, Error> {
        let prefixes: Vec<Vec<u8>> = key_index::STATUSES
            .iter()
            .map(|s| key_index::status_prefix(*s))
            .collect();
        self.index_count_each(&prefixes, &key_index::STATUSES)
    }

    /// Sum of each prefix's counters over the statuses.
    fn index_count_each(&self, prefixes: &[Vec<u8>], statuses: &[KeyStatus]) -> Result<u64, Error> {
        let mut n = 0u64;
        for p in prefixes {
            n = n.saturating_add(self.index_count(p, statuses)?);
        }
        Ok(n)
    }

    /// Reads every candidate of the source, keeps the page after `after`
    /// (bounded: sorted and cut whenever it doubles) and counts matches.
    fn page_from_source(
        &self,
        source: &Source,
        filter: &KeyFilter,
        order: &KeyOrder,
        after: Option<&KeyPosition>,
        limit: usize,
        label: Option<&str>,
    ) -> Result<KeyPage, Error> {
        let keep = limit.saturating_add(1);
        // Records stay shared (`Arc`) until the page is cut: only the page is cloned.
        let mut hits: Vec<(KeyPosition, std::sync::Arc<ApiKey>)> = Vec::new();
        let mut total = 0u64;
        let descending = order.descending;
        let cmp = |a: &(KeyPosition, _), b: &(KeyPosition, _)| {
            if descending {
                b.0.cmp(&a.0)
            } else {
                a.0.cmp(&b.0)
            }
        };
        let mut visit = |id: KeyId| -> Result<(), Error> {
            let Some(key) = self.matching_key(id, filter, label)? else {
                return Ok(());
            };
            total += 1;
            let position = self.key_position(&key, filter, order, label)?;
            let beyond = after.is_none_or(|a| {
                if descending {
                    position < *a
                } else {
                    position > *a
                }
            });
            if beyond {
                hits.push((position, key));
                if hits.len() >= keep.saturating_mul(2).max(64) {
                    hits.sort_by(cmp);
                    hits.truncate(keep);
                }
            }
            Ok(())
        };
        let index = self.key_index_tree();
        match source {
            Source::Ids(ids) => {
                for id in ids {
                    visit(*id)?;
                }
            }
            Source::Postings(prefixes) => {
                for p in prefixes {
                    key_index::for_each_posting(index, p, &mut visit)?;
                }
            }
            Source::CostRange { label, lo, hi } => {
                let prefix = key_index::cost_prefix(label);
                let mut start = prefix.clone();
                start.extend_from_slice(&lo.to_be_bytes());
                let mut end = prefix;
                end.extend_from_slice(&hi.to_be_bytes());
                end.extend_from_slice(&[0xff; 17]);
                for entry in index.range(start..end).keys() {
                    visit(key_index::id_of(&entry?)?)?;
                }
            }
        }
        hits.sort_by(cmp);
        let has_next = hits.len() > limit;
        hits.truncate(limit);
        Ok(KeyPage {
            hits: hits
                .into_iter()
                .map(|(position, key)| KeyHit {
                    key: (*key).clone(),
                    position,
                })
                .collect(),
            total_count: Some(total),
            has_next,
        })
    }

    /// Walks the ordering's index from `after`, checking each key, until the
    /// page (plus one, for `has_next`) is full.
    fn page_from_order(
        &self,
        filter: &KeyFilter,
        order: &KeyOrder,
        after: Option<&KeyPosition>,
        limit: usize,
        label: Option<&str>,
    ) -> Result<KeyPage, Error> {
        let mut hits: Vec<KeyHit> = Vec::new();
        let want = limit.saturating_add(1);
        let mut visit = |position: KeyPosition| -> Result<bool, Error> {
            if let Some(key) = self.matching_key(position.id, filter, label)? {
                hits.push(KeyHit {
                    key: (*key).clone(),
                    position,
                });
            }
            Ok(hits.len() < want)
        };
        let index = self.key_index_tree();
        let desc = order.descending;
        match order.field {
            KeySortField::CreatedAt => {
                let lo = key_index::created_key(
                    filter
                        .created_from
                        .map_or(0, |t| u64::try_from(t.timestamp_micros()).unwrap_or(0)),
                    KeyId(uuid::Uuid::nil()),
                );
                let hi = key_index::created_key(
                    filter.created_before.map_or(u64::MAX, |t| {
                        u64::try_from(t.timestamp_micros()).unwrap_or(0)
                    }),
                    KeyId(uuid::Uuid::nil()),
                );
                let at = after
                    .map(|a| Ok::<_, Error>(key_index::created_key(parse_micros(&a.value)?, a.id)))
                    .transpose()?;
                walk(
                    index,
                    lo,
                    hi,
                    at,
                    desc,
                    |k| {
                        let micros = key_index::be_u64(&k[1..9])?;
                        Ok(KeyPosition {
                            value: format!("{micros:020}"),
                            id: key_index::id_of(k)?,
                        })
                    },
                    &mut visit,
                )?;
            }
            KeySortField::LastUsedAt => {
                let at = after
                    .map(|a| {
                        let micros = if a.value.is_empty() {
                            None
                        } else {
                            Some(parse_micros(&a.value)?)
                        };
                        Ok::<_, Error>(key_index::last_used_key(micros, a.id))
                    })
                    .transpose()?;
                walk(
                    index,
                    vec![b'l'],
                    vec![b'm'],
                    at,
                    desc,
                    |k| {
                        let value = match k.get(1) {
                            Some(1) => format!("{:020}", key_index::be_u64(&k[2..10])?),
                            _ => String::new(),
                        };
                        Ok(KeyPosition {
                            value,
                            id: key_index::id_of(k)?,
                        })
                    },
                    &mut visit,
                )?;
            }
            KeySortField::Name => {
                let at = after.map(|a| key_index::name_key(&a.value, a.id));
                walk(
                    index,
                    vec![b'n'],
                    vec![b'o'],
                    at,
                    desc,
                    |k| {
                        let name = &k[1..k.len() - 17];
                        Ok(KeyPosition {
                            value: String::from_utf8_lossy(name).into_owned(),
                            id: key_index::id_of(k)?,
                        })
                    },
                    &mut visit,
                )?;
            }
            KeySortField::BilledCost => {
                let label = label.unwrap_or(key_index::LIFETIME);
                self.walk_cost(label, after, desc, &mut visit)?;
            }
        }
        let has_next = hits.len() > limit;
        hits.truncate(limit);
        Ok(KeyPage {
            hits,
            total_count: None,
            has_next,
        })
    }

    /// The cost ordering: keys with a positive cost come from the cost
    /// index; keys without (cost 0, ordered by id) from the keys tree,
    /// skipping those the index lists. Ascending: zero-cost keys first.
    fn walk_cost(
        &self,
        label: &str,
        after: Option<&KeyPosition>,
        desc: bool,
        visit: &mut dyn FnMut(KeyPosition) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let index = self.key_index_tree();
        let prefix = key_index::cost_prefix(label);
        let mut hi = prefix.clone();
        hi.extend_from_slice(&[0xff; 25]);
        let after_cost = after.map(|a| parse_micros(&a.value)).transpose()?;
        let to_position = |k: &[u8]| -> Result<KeyPosition, Error> {
            let at = prefix.len();
            let cost = key_index::be_u64(&k[at..at + 8])?;
            Ok(KeyPosition {
                value: format!("{cost:020}"),
                id: key_index::id_of(k)?,
            })
        };
        let positive_at = match (after, after_cost) {
            (Some(a), Some(c)) if c > 0 => Some(key_index::cost_key(label, c, a.id)),
            _ => None,
        };
        let zero_after = match (after, after_cost) {
            (Some(a), Some(0)) => Some(a.id),
            _ => None,
        };
        let mut more = true;
        let zero_segment = |from: Option<KeyId>,
                            visit: &mut dyn FnMut(KeyPosition) -> Result<bool, Error>|
         -> Result<bool, Error> {
            let keys = &self.inner.keys;
            let iter: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = match (from, desc) {
                (None, false) => Box::new(keys.iter().keys()),
                (None, true) => Box::new(keys.iter().keys().rev()),
                (Some(id), false) => Box::new(
                    keys.range((
                        std::ops::Bound::Excluded(id.0.as_bytes().to_vec()),
                        std::ops::Bound::Unbounded,
                    ))
                    .keys(),
                ),
                (Some(id), true) => Box::new(keys.range(..id.0.as_bytes().to_vec()).keys().rev()),
            };
            for k in iter {
                let id = key_index::id_of(&k?)?;
                if self.indexed_usage(id, label)?.1 > 0 {
                    continue;
                }
                let position = KeyPosition {
                    value: format!("{:020}", 0),
                    id,
                };
                if !visit(position)? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if desc {
            if zero_after.is_none() {
                let mut lo = prefix.clone();
                lo.extend_from_slice(&1u64.to_be_bytes());
                more = walk(index, lo, hi.clone(), positive_at, true, to_position, visit)?;
            }
            if more {
                zero_segment(zero_after, visit)?;
            }
        } else {
            if after_cost.is_none_or(|c| c == 0) {
                more = zero_segment(zero_after, visit)?;
            }
            if more {
                let mut lo = prefix.clone();
                lo.extend_from_slice(&1u64.to_be_bytes());
                walk(index, lo, hi, positive_at, false, to_position, visit)?;
            }
        }
        Ok(())
    }

    /// Calls `each` with successive batches (at most `batch` keys) of the
    /// keys matching `filter`, in creation order, until it returns `false`.
    /// Memory is bounded by one batch (plus the ids of a small source).
    pub fn for_each_key_batch(
        &self,
        filter: &KeyFilter,
        batch: usize,
        mut each: impl FnMut(Vec<ApiKey>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let order = KeyOrder::default();
        let mut after: Option<KeyPosition> = None;
        loop {
            let page = self.query_keys(filter, &order, after.as_ref(), batch.max(1), false)?;
            after = page.hits.last().map(|h| h.position.clone());
            let has_next = page.has_next;
            let keys: Vec<ApiKey> = page.hits.into_iter().map(|h| h.key).collect();
            if keys.is_empty() || !each(keys)? || !has_next {
                return Ok(());
            }
        }
    }
}

/// Walks the index entries in `[lo, hi)` in either direction, strictly after
/// `at` (in that direction), handing each entry's position to `visit` until
/// it returns `false`. Returns whether the walk ran to the end.
fn walk(
    index: &sled::Tree,
    lo: Vec<u8>,
    hi: Vec<u8>,
    at: Option<Vec<u8>>,
    desc: bool,
    to_position: impl Fn(&[u8]) -> Result<KeyPosition, Error>,
    visit: &mut dyn FnMut(KeyPosition) -> Result<bool, Error>,
) -> Result<bool, Error> {
    use std::ops::Bound;
    let range: (Bound<Vec<u8>>, Bound<Vec<u8>>) = match (at, desc) {
        (Some(at), false) if at >= lo => (Bound::Excluded(at), Bound::Excluded(hi)),
        (Some(at), true) if at < hi => (Bound::Included(lo), Bound::Excluded(at)),
        _ => (Bound::Included(lo), Bound::Excluded(hi)),
    };
    if let (Bound::Excluded(a) | Bound::Included(a), Bound::Excluded(b)) = (&range.0, &range.1) {
        if a >= b {
            return Ok(true);
        }
    }
    let iter = index.range(range).keys();
    let iter: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = if desc {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    for k in iter {
        if !visit(to_position(&k?)?)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::sample_key;
    use super::super::test_support::open;
    use super::*;

    #[test]
    fn pages_walk_every_match_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let mut want = Vec::new();
        for i in 0..25 {
            let mut k = sample_key(&format!("key-{i:02}"), &format!("{i:064x}"));
            k.tags = if i % 2 == 0 {
                vec!["even".into()]
            } else {
                vec![]
            };
            k.created_at += chrono::Duration::seconds(i);
            store.create_key(&k).expect("create");
            if i % 2 == 0 {
                want.push(k.id);
            }
        }
        let filter = KeyFilter {
            tags: vec!["EVEN".into()],
            ..KeyFilter::default()
        };
        let mut seen = Vec::new();
        store
            .for_each_key_batch(&filter, 4, |batch| {
                assert!(batch.len() <= 4);
                seen.extend(batch.iter().map(|k| k.id));
                Ok(true)
            })
            .expect("walk");
        assert_eq!(seen, want);

        let desc = KeyOrder {
            field: KeySortField::Name,
            descending: true,
        };
        let page = store
            .query_keys(&filter, &desc, None, 3, true)
            .expect("page");
        assert_eq!(page.total_count, Some(13));
        assert!(page.has_next);
        let names: Vec<&str> = page.hits.iter().map(|h| h.key.name.as_str()).collect();
        assert_eq!(names, ["key-24", "key-22", "key-20"]);
        let next = store
            .query_keys(&filter, &desc, Some(&page.hits[2].position), 3, false)
            .expect("next");
        assert_eq!(next.hits[0].key.name, "key-18");
    }
}
