//! Key queries and the key index against a brute-force reference on
//! generated keys: random filters in every ordering, page walks with keys
//! changing between pages, and the incrementally maintained index compared
//! with one rebuilt from scratch (updates, deletes, rebinds, usage, reopen,
//! migration from a store without the index).

use super::key_index::{self, month_start};
use super::keys::tests::sample_key;
use super::test_support::open;
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

const TAGS: [&str; 6] = ["alpha", "Beta", "gamma", "delta", "eps", "zeta"];

struct World {
    store: Store,
    accounts: Vec<AccountId>,
    groups: Vec<GroupId>,
    rng: StdRng,
    n: usize,
}

impl World {
    fn new(dir: &std::path::Path, seed: u64) -> World {
        World {
            store: open(dir),
            accounts: (0..3).map(|_| AccountId::generate()).collect(),
            groups: (0..2).map(|_| GroupId::generate()).collect(),
            rng: StdRng::seed_from_u64(seed),
            n: 0,
        }
    }

    fn random_key(&mut self) -> ApiKey {
        self.n += 1;
        let r = &mut self.rng;
        let mut k = sample_key(
            &format!("Key-{:03}-{}", r.gen_range(0..500), self.n),
            &format!("hash-{}-{}", self.n, r.gen::<u64>()),
        );
        k.description = if r.gen_bool(0.3) {
            format!("owner team {}", r.gen_range(0..10))
        } else {
            String::new()
        };
        k.tags = TAGS
            .iter()
            .filter(|_| r.gen_bool(0.3))
            .map(|t| t.to_string())
            .collect();
        k.status = match r.gen_range(0..10) {
            0 => KeyStatus::Disabled,
            1 => KeyStatus::Deleted,
            _ => KeyStatus::Active,
        };
        k.binding = match r.gen_range(0..6) {
            0 => KeyBinding::Account(self.accounts[r.gen_range(0..3)]),
            1 => KeyBinding::Group(self.groups[r.gen_range(0..2)]),
            _ => KeyBinding::None,
        };
        // Some keys share a creation instant, so ties are broken by id.
        k.created_at = Utc::now() - chrono::Duration::seconds(r.gen_range(0..50) * 60);
        k.expires_at = r
            .gen_bool(0.3)
            .then(|| Utc::now() + chrono::Duration::days(r.gen_range(1..30)));
        k
    }

    fn add_keys(&mut self, n: usize) -> Vec<ApiKey> {
        let keys: Vec<ApiKey> = (0..n).map(|_| self.random_key()).collect();
        for k in &keys {
            self.store.create_key(k).expect("create");
        }
        keys
    }

    /// Usage for some keys: this month, an older month, and last-used times.
    fn add_usage(&mut self, keys: &[ApiKey], older_months: bool) {
        let now = Utc::now();
        let start = month_start(now, self.store.time_zone());
        let hours_this_month = (now - start).num_hours().max(0);
        let mut batch = UsageBatch::default();
        for k in keys {
            if !self.rng.gen_bool(0.6) {
                continue;
            }
            for _ in 0..self.rng.gen_range(1..4) {
                let older = older_months && self.rng.gen_bool(0.3);
                let hour = if older {
                    start - chrono::Duration::hours(self.rng.gen_range(1..2000))
                } else {
                    start + chrono::Duration::hours(self.rng.gen_range(0..=hours_this_month))
                };
                let cost = if self.rng.gen_bool(0.1) {
                    0 // unpriced: requests without cost
                } else {
                    self.rng.gen_range(1..5) * 1000
                };
                batch.hourly.push((
                    UsageSubject::Key(k.id),
                    hour,
                    UsageTotals {
                        requests: self.rng.gen_range(1..4),
                        billed_cost: NanoUsd(cost),
                        ..Default::default()
                    },
                ));
            }
            let used = now - chrono::Duration::seconds(self.rng.gen_range(0..100_000));
            batch.key_last_used.push((k.id, used));
        }
        self.store.apply_usage(&batch).expect("usage");
    }

    fn random_filter(&mut self) -> KeyFilter {
        let r = &mut self.rng;
        let now = Utc::now();
        let mut f = KeyFilter::default();
        if r.gen_bool(0.3) {
            let all = [KeyStatus::Active, KeyStatus::Disabled, KeyStatus::Deleted];
            f.statuses = Some(all.into_iter().filter(|_| r.gen_bool(0.5)).collect());
        }
        if r.gen_bool(0.4) {
            f.tags.push(TAGS[r.gen_range(0..TAGS.len())].to_uppercase());
        }
        if r.gen_bool(0.1) {
            f.tags.push(TAGS[r.gen_range(0..TAGS.len())].into());
        }
        if r.gen_bool(0.25) {
            f.search =
                Some(["key-1", "ey-2", "TEAM 3", "k", "-0", "zz", "cr_"][r.gen_range(0..7)].into());
        }
        if r.gen_bool(0.15) {
            f.created_from = Some(now - chrono::Duration::minutes(r.gen_range(0..50)));
        }
        if r.gen_bool(0.15) {
            f.created_before = Some(now - chrono::Duration::minutes(r.gen_range(0..50)));
        }
        if r.gen_bool(0.1) {
            f.expires_before = Some(now + chrono::Duration::days(r.gen_range(0..30)));
        }
        if r.gen_bool(0.15) {
            f.bound_account = Some(self.accounts[r.gen_range(0..3)]);
        } else if r.gen_bool(0.15) {
            f.bound_group = Some(self.groups[r.gen_range(0..2)]);
        }
        f.usage_since = r
            .gen_bool(0.5)
            .then(|| month_start(now, self.store.time_zone()));
        if r.gen_bool(0.2) {
            f.min_billed_cost_nano = Some(r.gen_range(0..8) * 1000);
        }
        if r.gen_bool(0.1) {
            f.max_billed_cost_nano = Some(r.gen_range(0..8) * 1000);
        }
        if r.gen_bool(0.1) {
            f.min_requests = Some(r.gen_range(0..5));
        }
        if r.gen_bool(0.05) {
            f.max_requests = Some(r.gen_range(0..5));
        }
        if r.gen_bool(0.05) {
            let keys = self.store.list_keys().expect("list");
            f.ids = Some(
                keys.iter()
                    .filter(|_| r.gen_bool(0.2))
                    .map(|k| k.id)
                    .collect(),
            );
        }
        f
    }
}

/// The reference: every key, checked and ordered by brute force from the
/// usage buckets (not the index).
fn reference(store: &Store, filter: &KeyFilter, order: &KeyOrder) -> Vec<KeyPosition> {
    let usage = |id: KeyId| {
        let range = filter
            .usage_since
            .map(|s| (s, Utc::now() + chrono::Duration::hours(1)));
        let t = store
            .usage_total(&UsageSubject::Key(id), range)
            .expect("usage");
        (t.requests, t.billed_cost.0)
    };
    let mut out: Vec<KeyPosition> = store
        .list_keys()
        .expect("list")
        .into_iter()
        .filter(|k| filter.matches_record(k))
        .filter(|k| {
            let (r, c) = usage(k.id);
            filter.matches_usage(r, c)
        })
        .map(|k| {
            let value = match order.field {
                KeySortField::CreatedAt => {
                    format!("{:020}", k.created_at.timestamp_micros())
                }
                KeySortField::LastUsedAt => k
                    .last_used_at
                    .map_or(String::new(), |t| format!("{:020}", t.timestamp_micros())),
                KeySortField::Name => k.name.to_lowercase(),
                KeySortField::BilledCost => format!("{:020}", usage(k.id).1),
            };
            KeyPosition { value, id: k.id }
        })
        .collect();
    out.sort();
    if order.descending {
        out.reverse();
    }
    out
}

fn orders() -> Vec<KeyOrder> {
    let fields = [
        KeySortField::CreatedAt,
        KeySortField::Name,
        KeySortField::LastUsedAt,
        KeySortField::BilledCost,
    ];
    fields
        .into_iter()
        .flat_map(|field| [false, true].map(|descending| KeyOrder { field, descending }))
        .collect()
}

fn walk_all(store: &Store, f: &KeyFilter, o: &KeyOrder, page: usize) -> (Vec<KeyPosition>, u64) {
    let mut seen = Vec::new();
    let mut after: Option<KeyPosition> = None;
    let mut total = None;
    loop {
        let p = store
            .query_keys(f, o, after.as_ref(), page, total.is_none())
            .expect("query");
        total = total.or(p.total_count);
        seen.extend(p.hits.iter().map(|h| h.position.clone()));
        after = p.hits.last().map(|h| h.position.clone());
        if !p.has_next {
            break;
        }
        assert_eq!(p.hits.len(), page, "a page with more behind it is full");
    }
    (seen, total.expect("total on the first page"))
}

#[test]
fn random_filters_in_every_order_match_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = World::new(dir.path(), 7);
    let keys = w.add_keys(400);
    w.add_usage(&keys, true);
    let mut checked = 0;
    for round in 0..60 {
        let f = w.random_filter();
        for o in orders() {
            let want = reference(&w.store, &f, &o);
            let page = [1, 3, 7, 50, 500][round % 5];
            let (got, total) = walk_all(&w.store, &f, &o, page);
            assert_eq!(got, want, "filter {f:?} order {o:?} page {page}");
            assert_eq!(total as usize, want.len(), "total for {f:?}");
            checked += want.len();
        }
    }
    assert!(checked > 5_000, "the filters select something ({checked})");
}

#[test]
fn pages_stay_consistent_while_keys_change_between_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = World::new(dir.path(), 11);
    let keys = w.add_keys(300);
    w.add_usage(&keys, false);
    for round in 0..40 {
        let f = w.random_filter();
        let o = orders()[round % 8];
        let before: BTreeSet<KeyId> = reference(&w.store, &f, &o).iter().map(|p| p.id).collect();
        let mut touched: BTreeSet<KeyId> = BTreeSet::new();
        let mut seen: Vec<KeyPosition> = Vec::new();
        let mut after: Option<KeyPosition> = None;
        loop {
            let p = w
                .store
                .query_keys(&f, &o, after.as_ref(), 5, false)
                .expect("query");
            seen.extend(p.hits.iter().map(|h| h.position.clone()));
            after = p.hits.last().map(|h| h.position.clone());
            // Between pages: new keys, deleted keys, more usage.
            for k in w.add_keys(2) {
                touched.insert(k.id);
            }
            let all = w.store.list_keys().expect("list");
            let victim = &all[w.rng.gen_range(0..all.len())];
            let mut gone = victim.clone();
            gone.status = KeyStatus::Deleted;
            w.store.put_key(&gone).expect("delete");
            touched.insert(gone.id);
            let some = all[w.rng.gen_range(0..all.len())].clone();
            touched.insert(some.id);
            w.add_usage(&[some], false);
            if !p.has_next {
                break;
            }
        }
        for pair in seen.windows(2) {
            let ordered = if o.descending {
                pair[0] > pair[1]
            } else {
                pair[0] < pair[1]
            };
            assert!(ordered, "pages in order for {o:?}: {pair:?}");
        }
        // A key whose sort value moved (new usage) may legitimately show up
        // again further on; every untouched match shows up exactly once.
        for id in before.difference(&touched) {
            let times = seen.iter().filter(|p| p.id == *id).count();
            assert_eq!(times, 1, "untouched key {id} seen exactly once");
        }
        let untouched_seen = seen.iter().filter(|p| !touched.contains(&p.id)).count();
        assert_eq!(
            untouched_seen,
            before.difference(&touched).count(),
            "nothing else"
        );
    }
}

/// Every index entry, for comparing the maintained index with a rebuild.
fn snapshot(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .key_index_tree()
        .iter()
        .map(|e| {
            let (k, v) = e.expect("entry");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn rebuilt(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    key_index::rebuild(&store.inner.db, store.time_zone(), Utc::now()).expect("rebuild");
    snapshot(store)
}

#[test]
fn the_maintained_index_equals_a_rebuild_after_every_kind_of_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = World::new(dir.path(), 3);
    let keys = w.add_keys(120);
    w.add_usage(&keys, false);
    for (i, k) in keys.iter().enumerate() {
        let mut k = w.store.get_key(k.id).expect("get").expect("there");
        match i % 6 {
            0 => k.status = KeyStatus::Deleted,
            1 => k.tags = vec!["new-tag".into(), "ALPHA".into()],
            2 => k.binding = KeyBinding::Group(w.groups[1]),
            3 => k.binding = KeyBinding::None,
            4 => {
                k.name = format!("renamed {i}");
                k.description = "moved elsewhere".into();
            }
            _ => k.key_hash = format!("regenerated-{i}"),
        }
        w.store.put_key(&k).expect("put");
    }
    w.add_usage(&keys, false);
    let maintained = snapshot(&w.store);
    assert!(maintained.len() > 1000, "the index has entries");
    assert_eq!(maintained, rebuilt(&w.store));

    // Reopen: the index is durable and still consistent.
    let store = w.store.clone();
    drop(w);
    drop(store);
    let store = open(dir.path());
    assert_eq!(snapshot(&store), maintained);
    assert_eq!(rebuilt(&store), maintained);
}

#[test]
fn migration_builds_the_index_for_a_store_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (want, filter) = {
        let mut w = World::new(dir.path(), 5);
        let keys = w.add_keys(80);
        w.add_usage(&keys, false);
        let want = snapshot(&w.store);
        // Make it a version-1 store: no index, old schema version.
        w.store.key_index_tree().clear().expect("clear");
        w.store
            .inner
            .meta
            .insert("schema_version", &1u32.to_be_bytes())
            .expect("version");
        w.store.inner.meta.remove("key_index_zone").expect("zone");
        let filter = KeyFilter {
            tags: vec!["alpha".into()],
            ..KeyFilter::default()
        };
        (want, filter)
    };
    let store = open(dir.path());
    assert_eq!(
        store.schema_version().expect("version"),
        super::meta::CURRENT_VERSION
    );
    assert_eq!(snapshot(&store), want);
    let order = KeyOrder {
        field: KeySortField::BilledCost,
        descending: true,
    };
    let (got, _) = walk_all(&store, &filter, &order, 10);
    assert_eq!(got, reference(&store, &filter, &order));
}

#[test]
fn a_new_time_zone_rebuilds_this_months_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = World::new(dir.path(), 9);
    let keys = w.add_keys(50);
    w.add_usage(&keys, true);
    let tz: chrono_tz::Tz = "Pacific/Kiritimati".parse().expect("zone");
    w.store.set_time_zone(tz).expect("zone");
    assert_eq!(w.store.time_zone(), tz);
    let filter = KeyFilter {
        usage_since: Some(month_start(Utc::now(), tz)),
        ..KeyFilter::default()
    };
    let order = KeyOrder {
        field: KeySortField::BilledCost,
        descending: true,
    };
    assert!(w.store.usage_label(filter.usage_since).is_some());
    let (got, _) = walk_all(&w.store, &filter, &order, 7);
    assert_eq!(got, reference(&w.store, &filter, &order));
    drop(w);
    assert_eq!(open(dir.path()).time_zone(), tz, "the zone is remembered");
}

#[test]
fn names_are_found_through_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let a = sample_key("Billing", "h1");
    store.create_key(&a).expect("create");
    store
        .create_key(&sample_key("Billing 2", "h2"))
        .expect("create");
    let found = store.keys_named("BILLING").expect("named");
    assert_eq!(found.iter().map(|k| k.id).collect::<Vec<_>>(), vec![a.id]);
}

#[test]
fn a_batch_of_keys_shares_trigram_entries_and_search_still_finds_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let batch: Vec<ApiKey> = (0..300)
        .map(|i| sample_key(&format!("batchkey-{i:03}"), &format!("hash-{i}")))
        .collect();
    store.create_keys(&batch).expect("create");
    // 300 keys created within a few milliseconds: one or two id groups
    // (a 256 ms window may end mid-batch), not 300 entries.
    let bat: Vec<(Vec<u8>, Vec<u8>)> = store
        .key_index_tree()
        .scan_prefix(key_index::trigram_prefix(b"bat"))
        .map(|e| {
            let (k, v) = e.expect("entry");
            (k.to_vec(), v.to_vec())
        })
        .collect();
    assert!(
        (1..=2).contains(&bat.len()),
        "{} entries for one trigram",
        bat.len()
    );
    let listed: usize = bat.iter().map(|(_, v)| v.len() / 16).sum();
    assert_eq!(listed, 300, "every key listed once");

    for probe in ["batchkey-123", "key-12", "-299"] {
        let filter = KeyFilter {
            search: Some(probe.into()),
            ..KeyFilter::default()
        };
        let order = KeyOrder {
            field: KeySortField::Name,
            descending: false,
        };
        let (got, _) = walk_all(&store, &filter, &order, 7);
        assert_eq!(got, reference(&store, &filter, &order), "search {probe}");
        assert!(!got.is_empty(), "search {probe} finds keys");
    }
}

#[test]
fn migration_groups_per_key_trigram_postings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (want, per_key) = {
        let mut w = World::new(dir.path(), 11);
        let keys = w.add_keys(90);
        w.add_usage(&keys, false);
        let want = snapshot(&w.store);
        // Back to schema 3's layout: one `3<trigram><id>` entry per key.
        let index = w.store.key_index_tree();
        let mut per_key = 0usize;
        for (k, v) in want.iter().filter(|(k, _)| k.first() == Some(&b'3')) {
            index.remove(k).expect("remove");
            for id in v.chunks(16) {
                let mut entry = k[..4].to_vec();
                entry.extend_from_slice(id);
                index.insert(entry, &[]).expect("insert");
                per_key += 1;
            }
        }
        w.store
            .inner
            .meta
            .insert("schema_version", &3u32.to_be_bytes())
            .expect("version");
        (want, per_key)
    };
    assert!(
        per_key > 500,
        "the old layout had {per_key} trigram entries"
    );
    let store = open(dir.path());
    assert_eq!(
        store.schema_version().expect("version"),
        super::meta::CURRENT_VERSION
    );
    assert_eq!(snapshot(&store), want);
    assert_eq!(rebuilt(&store), want);
}
