//! Secondary indexes over relay keys, all in the one `key_index` tree so a
//! key write and its index changes are one sled transaction:
//!
//! | entry | key | meaning |
//! |---|---|---|
//! | status posting | `s<status>` + id | keys with this status |
//! | tag posting | `t<tag, ASCII-lowercased>\0` + id | keys with this tag |
//! | account / group posting | `a<uuid>` / `g<uuid>` + id | keys bound to it |
//! | trigram postings | `3<3 bytes>` + id group → the group's ids | keys whose lowercased name, description or display prefix contains these bytes |
//! | created order | `c<µs be8>` + id | creation time |
//! | last-used order | `l\0` + id (never used) or `l\1<µs be8>` + id | last use |
//! | name order | `n<name lowercased>\0` + id | name |
//! | billed-cost order | `m<label>\0<nano-USD be8>` + id, only when > 0 | cost in a period |
//! | period usage | `v` + id + `<label>` → requests be8, cost be8 | a key's totals in a period |
//! | counters | `#<posting prefix><status byte>` → u64 be | keys per posting and status |
//!
//! Trigram postings are grouped because they are most of the index (a
//! dozen per key): one entry per trigram and *id group*, the first
//! [`GROUP_LEN`] bytes of the id, holding that group's ids sorted. Key ids
//! are UUIDv7, so a group is the keys created within the same 256 ms: keys
//! created one by one keep an entry each, while a batch (`createApiKeys`,
//! `import-redis`) writes one entry per trigram instead of one per key and
//! trigram. Each trigram's scan still yields every id exactly once.
//!
//! Periods (`<label>`) are `life` (lifetime) and `yyyymm`, the month in the
//! store's billing time zone ([`Store::set_time_zone`]) that contains the
//! *end* of the hourly usage bucket, which is exactly how
//! `usage_total([month start, now))` counts a bucket that straddles a
//! half-hour zone's month start. Record entries are derived from the key
//! record by [`diff`]; the usage entries and the last-used entry are moved by
//! the usage writer's `apply_usage` in its own transaction.

use super::trees::{self, decode};
use super::{Error, Store};
use crate::domain::{AccountId, ApiKey, GroupId, KeyBinding, KeyId, KeyStatus, UsageSubject};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use sled::transaction::{ConflictableTransactionResult, TransactionalTree};
use std::collections::{BTreeMap, BTreeSet};

/// The period label of lifetime totals.
pub(crate) const LIFETIME: &str = "life";
/// Counter "status" byte for counters that are not split by status.
const ANY_STATUS: u8 = 0xff;
/// `meta` entry: the zone the month entries were built in.
const ZONE_META: &[u8] = b"key_index_zone";
const ID_LEN: usize = 16;
/// Bytes of a key id that name its trigram group: UUIDv7's first 40 bits
/// of milliseconds, so 256 ms windows.
pub(crate) const GROUP_LEN: usize = 5;
/// A trigram posting as [`entries`] lists it (one per key): `3`, the
/// trigram, the id. Stored grouped ([`IndexDiff::groups`]).
const TRIGRAM_ENTRY_LEN: usize = 1 + 3 + ID_LEN;

pub(crate) const STATUSES: [KeyStatus; 3] =
    [KeyStatus::Active, KeyStatus::Disabled, KeyStatus::Deleted];

pub(crate) fn status_byte(s: KeyStatus) -> u8 {
    match s {
        KeyStatus::Active => b'a',
        KeyStatus::Disabled => b'd',
        KeyStatus::Deleted => b'x',
    }
}

pub(crate) fn status_prefix(s: KeyStatus) -> Vec<u8> {
    vec![b's', status_byte(s)]
}

pub(crate) fn tag_prefix(tag: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(tag.len() + 2);
    v.push(b't');
    v.extend_from_slice(tag.to_ascii_lowercase().as_bytes());
    v.push(0);
    v
}

pub(crate) fn account_prefix(id: AccountId) -> Vec<u8> {
    let mut v = vec![b'a'];
    v.extend_from_slice(id.0.as_bytes());
    v
}

pub(crate) fn group_prefix(id: GroupId) -> Vec<u8> {
    let mut v = vec![b'g'];
    v.extend_from_slice(id.0.as_bytes());
    v
}

pub(crate) fn trigram_prefix(t: &[u8]) -> Vec<u8> {
    let mut v = vec![b'3'];
    v.extend_from_slice(t);
    v
}

/// The distinct byte trigrams of `text` (already lowercased). A substring
/// of the text has only trigrams of the text, so a search term's trigrams
/// narrow the candidates without missing any.
pub(crate) fn trigrams(text: &str) -> BTreeSet<[u8; 3]> {
    text.as_bytes()
        .windows(3)
        .map(|w| [w[0], w[1], w[2]])
        .collect()
}

fn with_id(mut prefix: Vec<u8>, id: KeyId) -> Vec<u8> {
    prefix.extend_from_slice(id.0.as_bytes());
    prefix
}

/// The id at the end of an index entry.
pub(crate) fn id_of(entry: &[u8]) -> Result<KeyId, Error> {
    entry
        .len()
        .checked_sub(ID_LEN)
        .and_then(|at| uuid::Uuid::from_slice(&entry[at..]).ok())
        .map(KeyId)
        .ok_or_else(|| Error::Corrupt("key index entry without an id".into()))
}

fn micros(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_micros()).unwrap_or(0)
}

pub(crate) fn created_key(micros: u64, id: KeyId) -> Vec<u8> {
    let mut v = vec![b'c'];
    v.extend_from_slice(&micros.to_be_bytes());
    with_id(v, id)
}

pub(crate) fn last_used_key(micros: Option<u64>, id: KeyId) -> Vec<u8> {
    let mut v = vec![b'l'];
    match micros {
        None => v.push(0),
        Some(m) => {
            v.push(1);
            v.extend_from_slice(&m.to_be_bytes());
        }
    }
    with_id(v, id)
}

pub(crate) fn name_key(lower_name: &str, id: KeyId) -> Vec<u8> {
    let mut v = name_prefix(lower_name);
    v.extend_from_slice(id.0.as_bytes());
    v
}

pub(crate) fn name_prefix(lower_name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(lower_name.len() + 2 + ID_LEN);
    v.push(b'n');
    v.extend_from_slice(lower_name.as_bytes());
    v.push(0);
    v
}

pub(crate) fn cost_prefix(label: &str) -> Vec<u8> {
    let mut v = vec![b'm'];
    v.extend_from_slice(label.as_bytes());
    v.push(0);
    v
}

pub(crate) fn cost_key(label: &str, cost: u64, id: KeyId) -> Vec<u8> {
    let mut v = cost_prefix(label);
    v.extend_from_slice(&cost.to_be_bytes());
    with_id(v, id)
}

fn usage_value_key(id: KeyId, label: &str) -> Vec<u8> {
    let mut v = vec![b'v'];
    v.extend_from_slice(id.0.as_bytes());
    v.extend_from_slice(label.as_bytes());
    v
}

fn count_key(prefix: &[u8], status: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + 2);
    v.push(b'#');
    v.extend_from_slice(prefix);
    v.push(status);
    v
}

pub(crate) fn be_u64(bytes: &[u8]) -> Result<u64, Error> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt("key index number is not 8 bytes".into()))
}

fn usage_pair(bytes: &[u8]) -> Result<(u64, u64), Error> {
    if bytes.len() != 16 {
        return Err(Error::Corrupt("key usage entry is not 16 bytes".into()));
    }
    Ok((be_u64(&bytes[..8])?, be_u64(&bytes[8..])?))
}

/// The first instant of the month containing `now`, in `tz` (the same
/// calendar the budgets use).
pub fn month_start(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    crate::limits::Calendar {
        tz,
        week: Default::default(),
    }
    .month(now)
    .start
}

/// `yyyymm` of the instant in `tz`.
pub(crate) fn month_label(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y%m").to_string()
}

/// The month label an hourly bucket starting at `hour` belongs to: the month
/// of its last second (see the module comment).
pub(crate) fn bucket_month_label(hour: DateTime<Utc>, tz: Tz) -> String {
    month_label(hour + Duration::seconds(3599), tz)
}

/// The posting prefixes a key is listed under (each also counted per status).
fn postings(k: &ApiKey) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    out.insert(status_prefix(k.status));
    for t in &k.tags {
        out.insert(tag_prefix(t));
    }
    match k.binding {
        KeyBinding::None => {}
        KeyBinding::Account(a) => {
            out.insert(account_prefix(a));
        }
        KeyBinding::Group(g) => {
            out.insert(group_prefix(g));
        }
    }
    for field in [&k.name, &k.description, &k.display_prefix] {
        for t in trigrams(&field.to_lowercase()) {
            out.insert(trigram_prefix(&t));
        }
    }
    out
}

/// Every record-derived entry of a key, with the counter it bumps.
fn entries(k: &ApiKey) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let status = status_byte(k.status);
    let mut out: BTreeMap<Vec<u8>, Option<Vec<u8>>> = postings(k)
        .into_iter()
        .map(|p| {
            let counter = count_key(&p, status);
            (with_id(p, k.id), Some(counter))
        })
        .collect();
    out.insert(created_key(micros(k.created_at), k.id), None);
    out.insert(last_used_key(k.last_used_at.map(micros), k.id), None);
    out.insert(name_key(&k.name.to_lowercase(), k.id), None);
    out
}

/// What one key write changes in the index.
#[derive(Default, Debug)]
pub(crate) struct IndexDiff {
    remove: Vec<Vec<u8>>,
    insert: Vec<Vec<u8>>,
    counts: BTreeMap<Vec<u8>, i64>,
    /// Trigram group entry → ids that leave it and ids that join it.
    groups: BTreeMap<Vec<u8>, GroupChange>,
}

#[derive(Default, Debug)]
struct GroupChange {
    remove: Vec<[u8; ID_LEN]>,
    add: Vec<[u8; ID_LEN]>,
}

impl IndexDiff {
    /// Adds another key's changes (batch creates write each counter and
    /// each trigram group once).
    pub(crate) fn merge(&mut self, other: IndexDiff) {
        self.remove.extend(other.remove);
        self.insert.extend(other.insert);
        for (k, n) in other.counts {
            *self.counts.entry(k).or_default() += n;
        }
        self.counts.retain(|_, n| *n != 0);
        for (k, change) in other.groups {
            let mine = self.groups.entry(k).or_default();
            mine.remove.extend(change.remove);
            mine.add.extend(change.add);
        }
    }

    fn group(&mut self, entry: &[u8]) -> Option<(&mut GroupChange, [u8; ID_LEN])> {
        let (key, id) = trigram_group(entry)?;
        Some((self.groups.entry(key).or_default(), id))
    }
}

/// For a per-key trigram entry (`3<trigram><id>`): its group entry's key
/// (`3<trigram><first GROUP_LEN bytes of the id>`) and the id.
fn trigram_group(entry: &[u8]) -> Option<(Vec<u8>, [u8; ID_LEN])> {
    if entry.len() != TRIGRAM_ENTRY_LEN || entry.first() != Some(&b'3') {
        return None;
    }
    let id: [u8; ID_LEN] = entry[4..].try_into().ok()?;
    let mut key = entry[..4].to_vec();
    key.extend_from_slice(&id[..GROUP_LEN]);
    Some((key, id))
}

/// The ids in a trigram group entry's value.
fn group_ids(value: &[u8]) -> Result<BTreeSet<[u8; ID_LEN]>, Error> {
    if !value.len().is_multiple_of(ID_LEN) {
        return Err(Error::Corrupt("trigram group is not a list of ids".into()));
    }
    Ok(value
        .chunks_exact(ID_LEN)
        .filter_map(|c| <[u8; ID_LEN]>::try_from(c).ok())
        .collect())
}

fn encode_group(ids: &BTreeSet<[u8; ID_LEN]>) -> Vec<u8> {
    ids.iter().flatten().copied().collect()
}

/// Calls `visit` with every id listed under a posting prefix (a trigram's
/// groups are unpacked), each exactly once.
pub(crate) fn for_each_posting(
    index: &sled::Tree,
    prefix: &[u8],
    mut visit: impl FnMut(KeyId) -> Result<(), Error>,
) -> Result<(), Error> {
    let grouped = prefix.first() == Some(&b'3');
    for item in index.scan_prefix(prefix) {
        let (k, v) = item?;
        if grouped {
            for id in group_ids(&v)? {
                visit(KeyId(uuid::Uuid::from_bytes(id)))?;
            }
        } else {
            visit(id_of(&k)?)?;
        }
    }
    Ok(())
}

/// The index changes that turn `old`'s entries into `new`'s.
pub(crate) fn diff(old: Option<&ApiKey>, new: Option<&ApiKey>) -> IndexDiff {
    let old = old.map(entries).unwrap_or_default();
    let new = new.map(entries).unwrap_or_default();
    let mut d = IndexDiff::default();
    for (k, counter) in &old {
        if !new.contains_key(k) {
            match d.group(k) {
                Some((group, id)) => group.remove.push(id),
                None => d.remove.push(k.clone()),
            }
        }
        if let Some(c) = counter {
            *d.counts.entry(c.clone()).or_default() -= 1;
        }
    }
    for (k, counter) in &new {
        if !old.contains_key(k) {
            match d.group(k) {
                Some((group, id)) => group.add.push(id),
                None => d.insert.push(k.clone()),
            }
        }
        if let Some(c) = counter {
            *d.counts.entry(c.clone()).or_default() += 1;
        }
    }
    d.counts.retain(|_, n| *n != 0);
    d
}

fn bump(
    tx: &TransactionalTree,
    key: &[u8],
    delta: i64,
) -> ConflictableTransactionResult<(), Error> {
    let current = match tx.get(key)? {
        Some(v) => match be_u64(&v) {
            Ok(n) => n,
            Err(e) => return super::abort(e),
        },
        None => 0,
    };
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        tx.remove(key)?;
    } else {
        tx.insert(key, &next.to_be_bytes())?;
    }
    Ok(())
}

/// Applies a diff inside the caller's transaction.
pub(crate) fn apply(
    tx: &TransactionalTree,
    d: &IndexDiff,
) -> ConflictableTransactionResult<(), Error> {
    for k in &d.remove {
        tx.remove(k.as_slice())?;
    }
    for k in &d.insert {
        tx.insert(k.as_slice(), &[])?;
    }
    for (k, delta) in &d.counts {
        bump(tx, k, *delta)?;
    }
    for (k, change) in &d.groups {
        let mut ids = match tx.get(k)? {
            Some(v) => match group_ids(&v) {
                Ok(ids) => ids,
                Err(e) => return super::abort(e),
            },
            None => BTreeSet::new(),
        };
        for id in &change.remove {
            ids.remove(id);
        }
        ids.extend(change.add.iter().copied());
        if ids.is_empty() {
            tx.remove(k.as_slice())?;
        } else {
            tx.insert(k.as_slice(), encode_group(&ids))?;
        }
    }
    Ok(())
}

/// Moves a key's last-used entry (inside the usage writer's transaction).
pub(crate) fn move_last_used(
    tx: &TransactionalTree,
    id: KeyId,
    old: Option<DateTime<Utc>>,
    new: DateTime<Utc>,
) -> ConflictableTransactionResult<(), Error> {
    tx.remove(last_used_key(old.map(micros), id))?;
    tx.insert(last_used_key(Some(micros(new)), id), &[])?;
    Ok(())
}

/// Adds usage to a key's totals in one period and moves its cost entry.
pub(crate) fn add_usage(
    tx: &TransactionalTree,
    id: KeyId,
    label: &str,
    requests: u64,
    cost: u64,
) -> ConflictableTransactionResult<(), Error> {
    let vk = usage_value_key(id, label);
    let (r0, c0) = match tx.get(&vk)? {
        Some(v) => match usage_pair(&v) {
            Ok(p) => p,
            Err(e) => return super::abort(e),
        },
        None => (0, 0),
    };
    let (r1, c1) = (r0.saturating_add(requests), c0.saturating_add(cost));
    let mut value = Vec::with_capacity(16);
    value.extend_from_slice(&r1.to_be_bytes());
    value.extend_from_slice(&c1.to_be_bytes());
    tx.insert(vk, value)?;
    if c1 != c0 {
        if c0 > 0 {
            tx.remove(cost_key(label, c0, id))?;
        } else {
            bump(tx, &count_key(&cost_prefix(label), ANY_STATUS), 1)?;
        }
        tx.insert(cost_key(label, c1, id), &[])?;
    }
    Ok(())
}

/// Builds the whole index from the keys and usage trees (migration to
/// schema 2, and [`Store::set_time_zone`] for the month entries). Clears the
/// tree first, so an interrupted build is simply run again. Usage entries
/// are built for lifetime and for the current month in `tz`.
pub(crate) fn rebuild(db: &sled::Db, tz: Tz, now: DateTime<Utc>) -> Result<(), Error> {
    let index = db.open_tree(trees::KEY_INDEX)?;
    let keys = db.open_tree(trees::KEYS)?;
    let usage = db.open_tree(trees::USAGE)?;
    index.clear()?;
    let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    let month = month_label(now, tz);
    let since = month_start(now, tz);
    let until = now + Duration::hours(1);
    // Every key's trigram ids, grouped (about 16 bytes per key and trigram).
    let mut groups: BTreeMap<Vec<u8>, BTreeSet<[u8; ID_LEN]>> = BTreeMap::new();
    for item in keys.iter() {
        let (_, v) = item?;
        let key: ApiKey = decode(&v, "api key")?;
        for (entry, counter) in entries(&key) {
            match trigram_group(&entry) {
                Some((group, id)) => {
                    groups.entry(group).or_default().insert(id);
                }
                None => batch.insert(entry, &[]),
            }
            if let Some(c) = counter {
                *counts.entry(c).or_default() += 1;
            }
        }
        let subject = UsageSubject::Key(key.id);
        let life = super::usage::total_in(&usage, &subject, None)?;
        let this_month = super::usage::total_in(&usage, &subject, Some((since, until)))?;
        for (label, t) in [(LIFETIME, life), (month.as_str(), this_month)] {
            if t.requests == 0 && t.billed_cost.0 == 0 {
                continue;
            }
            let mut value = Vec::with_capacity(16);
            value.extend_from_slice(&t.requests.to_be_bytes());
            value.extend_from_slice(&t.billed_cost.0.to_be_bytes());
            batch.insert(usage_value_key(key.id, label), value);
            if t.billed_cost.0 > 0 {
                batch.insert(cost_key(label, t.billed_cost.0, key.id), &[]);
                *counts
                    .entry(count_key(&cost_prefix(label), ANY_STATUS))
                    .or_default() += 1;
            }
        }
        pending += 1;
        // Bounded batches: a large store is indexed without holding it all.
        if pending >= 2000 {
            index.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    for (k, n) in counts {
        batch.insert(k, &n.to_be_bytes());
    }
    for (k, ids) in &groups {
        batch.insert(k.as_slice(), encode_group(ids));
    }
    index.apply_batch(batch)?;
    Ok(())
}

/// Migration to schema 4: turns per-key trigram postings (`3<trigram><id>`,
/// schema 2 and 3) into group entries. One sled batch per trigram, each
/// atomic; a group entry left by an interrupted run is merged, not lost.
pub(crate) fn group_trigram_postings(db: &sled::Db) -> Result<(), Error> {
    let index = db.open_tree(trees::KEY_INDEX)?;
    let mut trigram: Option<Vec<u8>> = None;
    let mut batch = sled::Batch::default();
    let mut groups: BTreeMap<Vec<u8>, BTreeSet<[u8; ID_LEN]>> = BTreeMap::new();
    let flush = |batch: &mut sled::Batch,
                 groups: &mut BTreeMap<Vec<u8>, BTreeSet<[u8; ID_LEN]>>|
     -> Result<(), Error> {
        for (k, mut ids) in std::mem::take(groups) {
            if let Some(v) = index.get(&k)? {
                ids.extend(group_ids(&v)?);
            }
            batch.insert(k, encode_group(&ids));
        }
        index.apply_batch(std::mem::take(batch))?;
        Ok(())
    };
    for item in index.scan_prefix(b"3") {
        let (k, _) = item?;
        let Some((group, id)) = trigram_group(&k) else {
            continue; // already a group entry
        };
        if trigram.as_deref() != Some(&k[..4]) {
            flush(&mut batch, &mut groups)?;
            trigram = Some(k[..4].to_vec());
        }
        batch.remove(k);
        groups.entry(group).or_default().insert(id);
    }
    flush(&mut batch, &mut groups)
}

/// The zone recorded for the month entries, if any.
pub(crate) fn recorded_zone(meta: &sled::Tree) -> Result<Option<String>, Error> {
    Ok(meta
        .get(ZONE_META)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

pub(crate) fn record_zone(meta: &sled::Tree, tz: Tz) -> Result<(), Error> {
    meta.insert(ZONE_META, tz.name().as_bytes())?;
    Ok(())
}

impl Store {
    /// The billing time zone ("this month" in key queries and the cost
    /// index). The store starts in UTC; the app sets the configured
    /// `time_zone` right after opening, before the usage writer starts. The
    /// zone the month entries were built in is kept in `meta`: a different
    /// zone rebuilds the index once (lifetime and this month).
    pub fn set_time_zone(&self, tz: Tz) -> Result<(), Error> {
        let recorded = recorded_zone(&self.inner.meta)?;
        if recorded.as_deref() != Some(tz.name()) {
            tracing::info!(
                zone = tz.name(),
                "rebuilding the key index for a new time zone"
            );
            rebuild(&self.inner.db, tz, Utc::now())?;
            record_zone(&self.inner.meta, tz)?;
            self.inner.meta.flush()?;
        }
        *self.inner.zone.write() = tz;
        Ok(())
    }

    pub fn time_zone(&self) -> Tz {
        *self.inner.zone.read()
    }

    /// The sum of the counters of `prefix` over `statuses`.
    pub(crate) fn index_count(&self, prefix: &[u8], statuses: &[KeyStatus]) -> Result<u64, Error> {
        let mut n = 0u64;
        for s in statuses {
            if let Some(v) = self
                .inner
                .key_index
                .get(count_key(prefix, status_byte(*s)))?
            {
                n = n.saturating_add(be_u64(&v)?);
            }
        }
        Ok(n)
    }

    /// Keys with a positive cost in the period.
    pub(crate) fn cost_count(&self, label: &str) -> Result<u64, Error> {
        match self
            .inner
            .key_index
            .get(count_key(&cost_prefix(label), ANY_STATUS))?
        {
            Some(v) => be_u64(&v),
            None => Ok(0),
        }
    }

    /// A key's (requests, billed cost) in an indexed period.
    pub(crate) fn indexed_usage(&self, id: KeyId, label: &str) -> Result<(u64, u64), Error> {
        match self.inner.key_index.get(usage_value_key(id, label))? {
            Some(v) => usage_pair(&v),
            None => Ok((0, 0)),
        }
    }

    /// The period label for usage since `since`, when the index has it:
    /// lifetime, or the start of the current month in the store's zone.
    pub(crate) fn usage_label(&self, since: Option<DateTime<Utc>>) -> Option<String> {
        let Some(since) = since else {
            return Some(LIFETIME.to_string());
        };
        let tz = self.time_zone();
        let now = Utc::now();
        (month_start(now, tz) == since).then(|| month_label(now, tz))
    }

    pub(crate) fn key_index_tree(&self) -> &sled::Tree {
        &self.inner.key_index
    }

    /// Keys whose name is `name` ignoring case (any status), from the name index.
    pub fn keys_named(&self, name: &str) -> Result<Vec<ApiKey>, Error> {
        let mut out = Vec::new();
        for entry in self
            .inner
            .key_index
            .scan_prefix(name_prefix(&name.to_lowercase()))
            .keys()
        {
            if let Some(k) = self.get_key(id_of(&entry?)?)? {
                out.push(k);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn diff_moves_changed_entries_and_counters_only() {
        let mut a = super::super::keys::tests::sample_key("Alpha", "h");
        a.tags = vec!["x".into(), "Y".into()];
        let mut b = a.clone();
        b.status = KeyStatus::Disabled;
        b.tags = vec!["y".into()];
        let d = diff(Some(&a), Some(&b));
        assert_eq!(
            d.remove,
            vec![
                with_id(tag_prefix("x"), a.id),
                with_id(status_prefix(KeyStatus::Active), a.id)
            ]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert!(d
            .insert
            .contains(&with_id(status_prefix(KeyStatus::Disabled), a.id)));
        assert_eq!(d.counts.get(&count_key(&tag_prefix("y"), b'a')), Some(&-1));
        assert_eq!(d.counts.get(&count_key(&tag_prefix("y"), b'd')), Some(&1));
        assert!(diff(Some(&a), Some(&a)).counts.is_empty());
    }

    #[test]
    fn month_labels_follow_the_bucket_end() {
        let kolkata: Tz = "Asia/Kolkata".parse().expect("zone");
        // 18:00–19:00 UTC on Oct 31 is 23:30–00:30 in Kolkata: it straddles
        // the month start at 18:30 UTC, and counts for November.
        let hour = Utc.with_ymd_and_hms(2026, 10, 31, 18, 0, 0).unwrap();
        assert_eq!(bucket_month_label(hour, kolkata), "202611");
        assert_eq!(bucket_month_label(hour, chrono_tz::UTC), "202610");
        assert_eq!(
            month_start(hour, kolkata),
            Utc.with_ymd_and_hms(2026, 9, 30, 18, 30, 0).unwrap()
        );
    }
}
