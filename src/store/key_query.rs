//! Key queries: the one filter and ordering every key listing shares (the
//! admin API's `apiKeys`, exports, batch operations), and the store's paged
//! answer to them. Pages are keyset-based on (sort value, id), so a reader
//! walking a large store in batches never holds more than one page.

use super::{Error, Store};
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

impl Store {
    /// Usage totals of one key over `[since, now)`, or its lifetime totals.
    fn key_usage_since(
        &self,
        id: KeyId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), Error> {
        let range = since.map(|s| (s, Utc::now() + chrono::Duration::hours(1)));
        let t = self.usage_total(&UsageSubject::Key(id), range)?;
        Ok((t.requests, t.billed_cost.0))
    }

    fn key_position(
        &self,
        k: &ApiKey,
        filter: &KeyFilter,
        order: &KeyOrder,
    ) -> Result<KeyPosition, Error> {
        let value = match order.field {
            KeySortField::CreatedAt => time_value(Some(k.created_at)),
            KeySortField::LastUsedAt => time_value(k.last_used_at),
            KeySortField::Name => k.name.to_lowercase(),
            KeySortField::BilledCost => {
                let (_, cost) = self.key_usage_since(k.id, filter.usage_since)?;
                format!("{cost:020}")
            }
        };
        Ok(KeyPosition { value, id: k.id })
    }

    /// One page of the keys matching `filter` in `order`, strictly after
    /// `after` (in that order's direction). `with_total` also counts every
    /// match, which costs a full pass; batch readers leave it off.
    pub fn query_keys(
        &self,
        filter: &KeyFilter,
        order: &KeyOrder,
        after: Option<&KeyPosition>,
        limit: usize,
        with_total: bool,
    ) -> Result<KeyPage, Error> {
        let mut matched: Vec<KeyHit> = Vec::new();
        let mut total = 0u64;
        for key in self.list_keys()? {
            if !filter.matches_record(&key) {
                continue;
            }
            if filter.needs_usage() {
                let (requests, cost) = self.key_usage_since(key.id, filter.usage_since)?;
                if !filter.matches_usage(requests, cost) {
                    continue;
                }
            }
            total += 1;
            let position = self.key_position(&key, filter, order)?;
            let beyond = after.is_none_or(|a| {
                if order.descending {
                    position < *a
                } else {
                    position > *a
                }
            });
            if beyond {
                matched.push(KeyHit { key, position });
            }
        }
        if order.descending {
            matched.sort_by(|a, b| b.position.cmp(&a.position));
        } else {
            matched.sort_by(|a, b| a.position.cmp(&b.position));
        }
        let has_next = matched.len() > limit;
        matched.truncate(limit);
        Ok(KeyPage {
            hits: matched,
            total_count: with_total.then_some(total),
            has_next,
        })
    }

    /// Calls `each` with successive batches (at most `batch` keys) of the
    /// keys matching `filter`, in creation order, until it returns `false`.
    /// Memory is bounded by one batch.
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
