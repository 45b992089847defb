//! Relay keys: the `keys` tree (id → `ApiKey`), its `keys_by_hash` index
//! (SHA-256 hex → id) and the secondary indexes of `key_index`, always
//! changed together in one transaction. The raw key is never stored; only
//! its hash.

use super::trees::{decode, encode};
use super::{abort, key_index, Error, Store, StoreEvent};
use crate::domain::{ApiKey, KeyId};
use sled::Transactional;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const WHAT: &str = "api key";

/// A batch of keys encoded and indexed ahead of its write
/// ([`Store::prepare_keys`]).
pub struct PreparedKeys {
    keys: Vec<ApiKey>,
    values: Vec<Vec<u8>>,
    diff: key_index::IndexDiff,
    /// (legacy hash, key id, encoded entry).
    legacy: Vec<(String, KeyId, Vec<u8>)>,
    /// Import links of the keys (`imports` tree).
    links: Vec<super::SealedBlob>,
}

impl Store {
    /// Fails with `Conflict` if the hash is already taken.
    pub fn create_key(&self, key: &ApiKey) -> Result<(), Error> {
        let (keys, by_hash, index) = (
            &self.inner.keys,
            &self.inner.keys_by_hash,
            &self.inner.key_index,
        );
        let value = encode(key)?;
        let diff = key_index::diff(None, Some(key));
        (keys, by_hash, index).transaction(|(keys, by_hash, index)| {
            if by_hash.get(key.key_hash.as_bytes())?.is_some() {
                return abort(Error::Conflict(
                    "a key with this hash already exists".into(),
                ));
            }
            if keys.get(key.id.0.as_bytes())?.is_some() {
                return abort(Error::Conflict("a key with this id already exists".into()));
            }
            keys.insert(key.id.0.as_bytes(), value.as_slice())?;
            by_hash.insert(key.key_hash.as_bytes(), key.id.0.as_bytes())?;
            key_index::apply(index, &diff)?;
            Ok(())
        })?;
        self.forget_keys(&[key.id]);
        self.inner.key_writes.fetch_add(1, Ordering::AcqRel);
        self.emit(StoreEvent::KeyChanged {
            id: key.id,
            key_hash: key.key_hash.clone(),
        });
        Ok(())
    }

    /// Creates many keys in one transaction: all or none (`Conflict` if any
    /// id or hash is taken, also within the batch). Index counters are
    /// merged, so a batch writes each counter once; batch creates and bulk
    /// imports use this instead of one transaction per key.
    pub fn create_keys(&self, batch: &[ApiKey]) -> Result<(), Error> {
        self.write_keys(Store::prepare_keys(batch.to_vec(), Vec::new(), Vec::new())?)
    }

    /// Encodes and indexes a batch ahead of its write (pure CPU), so that an
    /// importer's writer thread only writes. `legacy` are (legacy hash, key
    /// id, source) entries (see `legacy.rs`) and `links` import links, both
    /// committed with the keys.
    pub fn prepare_keys(
        batch: Vec<ApiKey>,
        legacy: Vec<(String, KeyId, String)>,
        links: Vec<super::SealedBlob>,
    ) -> Result<PreparedKeys, Error> {
        let mut hashes = std::collections::BTreeSet::new();
        let mut values = Vec::with_capacity(batch.len());
        let mut diff = key_index::IndexDiff::default();
        for key in &batch {
            if !hashes.insert(key.key_hash.as_str()) {
                return Err(Error::Conflict(
                    "a key hash appears twice in the batch".into(),
                ));
            }
            values.push(encode(key)?);
            diff.merge(key_index::diff(None, Some(key)));
        }
        let legacy = legacy
            .into_iter()
            .map(|(hash, id, source)| Ok((hash, id, super::legacy::encode_entry(id, source)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(PreparedKeys {
            keys: batch,
            values,
            diff,
            legacy,
            links,
        })
    }

    /// Writes a prepared batch in one transaction (see [`Store::create_keys`]).
    pub fn write_keys(&self, prepared: PreparedKeys) -> Result<(), Error> {
        let PreparedKeys {
            keys: batch,
            values,
            diff,
            legacy,
            links,
        } = prepared;
        let trees = (
            &self.inner.keys,
            &self.inner.keys_by_hash,
            &self.inner.key_index,
            &self.inner.legacy_key_hashes,
            &self.inner.imports,
        );
        trees.transaction(|(keys, by_hash, index, legacy_tree, imports)| {
            for (key, value) in batch.iter().zip(&values) {
                if by_hash.get(key.key_hash.as_bytes())?.is_some() {
                    return abort(Error::Conflict(
                        "a key with this hash already exists".into(),
                    ));
                }
                if keys.get(key.id.0.as_bytes())?.is_some() {
                    return abort(Error::Conflict("a key with this id already exists".into()));
                }
                keys.insert(key.id.0.as_bytes(), value.as_slice())?;
                by_hash.insert(key.key_hash.as_bytes(), key.id.0.as_bytes())?;
            }
            key_index::apply(index, &diff)?;
            for (hash, _, entry) in &legacy {
                legacy_tree.insert(hash.as_bytes(), entry.as_slice())?;
            }
            for link in &links {
                imports.insert(link.key.as_slice(), link.value.as_slice())?;
            }
            Ok(())
        })?;
        let ids: Vec<KeyId> = batch.iter().map(|k| k.id).collect();
        self.forget_keys(&ids);
        self.inner.key_writes.fetch_add(1, Ordering::AcqRel);
        for key in batch {
            self.emit(StoreEvent::KeyChanged {
                id: key.id,
                key_hash: key.key_hash,
            });
        }
        // A key that was unknown under its legacy hash a moment ago is known now.
        for (hash, id, _) in legacy {
            self.emit(StoreEvent::KeyChanged { id, key_hash: hash });
        }
        Ok(())
    }

    /// Counts committed key creates and updates (see `cache::KeyCache`).
    pub fn key_writes(&self) -> u64 {
        self.inner.key_writes.load(Ordering::Acquire)
    }

    /// Creates or replaces a key. A changed hash moves the index entry; a hash
    /// owned by another key is a `Conflict`. `last_used_at` never moves
    /// backwards: the usage writer owns it, and an admin edit that read the
    /// key earlier must not undo a newer use. Emits one event per affected
    /// hash, so a cache drops the old hash too.
    pub fn put_key(&self, key: &ApiKey) -> Result<(), Error> {
        let (keys, by_hash, index) = (
            &self.inner.keys,
            &self.inner.keys_by_hash,
            &self.inner.key_index,
        );
        let old_hash = (keys, by_hash, index).transaction(|(keys, by_hash, index)| {
            if let Some(owner) = by_hash.get(key.key_hash.as_bytes())? {
                if owner.as_ref() != key.id.0.as_bytes() {
                    return abort(Error::Conflict(
                        "a key with this hash already exists".into(),
                    ));
                }
            }
            let old = match keys
                .get(key.id.0.as_bytes())?
                .map(|v| decode::<ApiKey>(&v, WHAT))
            {
                Some(Ok(old)) => Some(old),
                Some(Err(e)) => return abort(e),
                None => None,
            };
            let mut new = key.clone();
            if let Some(prev) = old.as_ref().and_then(|o| o.last_used_at) {
                new.last_used_at = Some(new.last_used_at.map_or(prev, |t| t.max(prev)));
            }
            let value = match encode(&new) {
                Ok(v) => v,
                Err(e) => return abort(e),
            };
            keys.insert(key.id.0.as_bytes(), value)?;
            key_index::apply(index, &key_index::diff(old.as_ref(), Some(&new)))?;
            let old_hash = old.map(|o| o.key_hash);
            if let Some(old_hash) = old_hash.as_deref().filter(|h| *h != key.key_hash) {
                by_hash.remove(old_hash.as_bytes())?;
            }
            by_hash.insert(key.key_hash.as_bytes(), key.id.0.as_bytes())?;
            Ok(old_hash)
        })?;
        self.forget_keys(&[key.id]);
        self.inner.key_writes.fetch_add(1, Ordering::AcqRel);
        if let Some(old_hash) = old_hash.filter(|h| *h != key.key_hash) {
            self.emit(StoreEvent::KeyChanged {
                id: key.id,
                key_hash: old_hash,
            });
        }
        self.emit(StoreEvent::KeyChanged {
            id: key.id,
            key_hash: key.key_hash.clone(),
        });
        Ok(())
    }

    pub fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, Error> {
        self.inner
            .keys
            .get(id.0.as_bytes())?
            .map(|v| decode(&v, WHAT))
            .transpose()
    }

    pub fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        let Some(id) = self.inner.keys_by_hash.get(key_hash.as_bytes())? else {
            return Ok(None);
        };
        let id = uuid::Uuid::from_slice(&id)
            .map_err(|_| Error::Corrupt("keys_by_hash entry is not an id".into()))?;
        self.get_key(KeyId(id))
    }

    /// A key record for listings, from the record cache when it is there.
    pub(crate) fn cached_key(&self, id: KeyId) -> Result<Option<Arc<ApiKey>>, Error> {
        if let Some(k) = self.inner.key_records.get(&id) {
            return Ok(Some(k));
        }
        let generation = self.inner.key_generation.load(Ordering::Acquire);
        let key = self.get_key(id)?.map(Arc::new);
        if let Some(k) = &key {
            // A write that committed since we read would be undone by caching.
            if self.inner.key_generation.load(Ordering::Acquire) == generation {
                self.inner.key_records.insert(id, k.clone());
            }
        }
        Ok(key)
    }

    /// Drops cached records after a committed write.
    pub(crate) fn forget_keys(&self, ids: &[KeyId]) {
        self.inner.key_generation.fetch_add(1, Ordering::AcqRel);
        for id in ids {
            self.inner.key_records.invalidate(id);
        }
    }

    /// Calls `each` with every key, one decoded at a time (for passes over
    /// all keys that keep only a little of each).
    pub fn for_each_key(&self, mut each: impl FnMut(ApiKey)) -> Result<(), Error> {
        for value in self.inner.keys.iter().values() {
            each(decode(&value?, WHAT)?);
        }
        Ok(())
    }

    /// All keys in id (creation) order.
    pub fn list_keys(&self) -> Result<Vec<ApiKey>, Error> {
        self.inner
            .keys
            .iter()
            .values()
            .map(|v| decode(&v?, WHAT))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::test_support::open;
    use super::*;
    use crate::domain::KeyStatus;
    use chrono::Utc;

    pub(crate) fn sample_key(name: &str, hash: &str) -> ApiKey {
        let now = Utc::now();
        ApiKey {
            id: KeyId::generate(),
            name: name.into(),
            description: String::new(),
            key_hash: hash.into(),
            display_prefix: "cr_abcd…wxyz".into(),
            status: KeyStatus::Active,
            tags: vec!["team-a".into()],
            created_at: now,
            updated_at: now,
            last_used_at: None,
            expires_at: None,
            cost_multiplier: 1.0,
            binding: Default::default(),
            policy: Default::default(),
        }
    }

    #[test]
    fn keys_round_trip_through_id_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = sample_key("a", "hash-a");
        let b = sample_key("b", "hash-b");
        store.create_key(&a).unwrap();
        store.create_key(&b).unwrap();
        assert_eq!(store.get_key(a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(store.key_by_hash("hash-b").unwrap().as_ref(), Some(&b));
        assert_eq!(store.key_by_hash("nope").unwrap(), None);
        assert_eq!(store.list_keys().unwrap(), vec![a.clone(), b.clone()]);
    }

    #[test]
    fn batch_creates_are_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .create_key(&sample_key("taken", "taken-hash"))
            .unwrap();
        let batch: Vec<ApiKey> = (0..5)
            .map(|i| sample_key(&format!("b{i}"), &format!("b-hash-{i}")))
            .collect();
        let mut clashing = batch.clone();
        clashing.push(sample_key("late", "taken-hash"));
        assert!(matches!(
            store.create_keys(&clashing),
            Err(Error::Conflict(_))
        ));
        assert_eq!(store.list_keys().unwrap().len(), 1, "nothing of the batch");
        store.create_keys(&batch).unwrap();
        assert_eq!(store.list_keys().unwrap().len(), 6);
        assert_eq!(store.key_by_hash("b-hash-3").unwrap().unwrap().name, "b3");
        assert_eq!(store.keys_named("B4").unwrap().len(), 1, "indexed too");
    }

    #[test]
    fn duplicate_hash_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.create_key(&sample_key("a", "same")).unwrap();
        assert!(matches!(
            store.create_key(&sample_key("b", "same")),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            store.put_key(&sample_key("c", "same")),
            Err(Error::Conflict(_))
        ));
        assert_eq!(
            store.list_keys().unwrap().len(),
            1,
            "aborted writes leave nothing behind"
        );
    }

    #[test]
    fn put_key_moves_the_hash_index_and_reports_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut key = sample_key("a", "old-hash");
        store.create_key(&key).unwrap();
        let mut rx = store.subscribe();
        key.key_hash = "new-hash".into();
        key.name = "renamed".into();
        store.put_key(&key).unwrap();
        assert_eq!(store.key_by_hash("old-hash").unwrap(), None);
        assert_eq!(
            store.key_by_hash("new-hash").unwrap().unwrap().name,
            "renamed"
        );
        let mut hashes = Vec::new();
        while let Ok(StoreEvent::KeyChanged { key_hash, .. }) = rx.try_recv() {
            hashes.push(key_hash);
        }
        assert_eq!(hashes, vec!["old-hash".to_string(), "new-hash".to_string()]);
    }
}
