//! Per-key limit counters: the `limit_counters` tree, `KeyId` → the limits
//! engine's checkpoint of that key (windows, budgets, activation; JSON in
//! the store's record form). The relay writes only keys whose counters
//! changed since its last checkpoint, so the cost follows traffic rather
//! than the number of keys (one blob for all keys was rewritten whole every
//! few seconds). The store does not interpret the values.

use super::trees::{decode, encode};
use super::{Error, Store};
use crate::domain::KeyId;
use serde::de::DeserializeOwned;
use serde::Serialize;

const WHAT: &str = "limit counters";
/// The state blob that held every key's counters before schema 5.
const OLD_STATE_BLOB: &str = "limits";

impl Store {
    /// Writes changed keys' counters (None removes a key's) in one transaction.
    pub fn put_limit_counters<T: Serialize>(
        &self,
        changes: &[(KeyId, Option<T>)],
    ) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let encoded = changes
            .iter()
            .map(|(k, v)| Ok((*k, v.as_ref().map(encode).transpose()?)))
            .collect::<Result<Vec<_>, Error>>()?;
        // One transaction: a checkpoint is written whole or not at all.
        self.inner.limit_counters.transaction(|tree| {
            for (key_id, value) in &encoded {
                match value {
                    Some(v) => tree.insert(key_id.0.as_bytes(), v.as_slice())?,
                    None => tree.remove(key_id.0.as_bytes())?,
                };
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<Error>>(())
        })?;
        Ok(())
    }

    pub fn limit_counter<T: DeserializeOwned>(&self, key_id: KeyId) -> Result<Option<T>, Error> {
        self.inner
            .limit_counters
            .get(key_id.0.as_bytes())?
            .map(|v| decode(&v, WHAT))
            .transpose()
    }

    /// Every key's counters (at startup).
    pub fn limit_counters<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        self.inner
            .limit_counters
            .iter()
            .values()
            .map(|v| decode(&v?, WHAT))
            .collect()
    }
}

/// Migration 5: splits the one `limits` state blob into per-key entries.
/// Entries are overwritten and the blob removed last, so a rerun after an
/// interruption gives the same result.
pub(super) fn split_limits_state(db: &sled::Db) -> Result<(), Error> {
    let state = db.open_tree(super::trees::STATE)?;
    let tree = db.open_tree(super::trees::LIMIT_COUNTERS)?;
    let Some(blob) = state.get(OLD_STATE_BLOB)? else {
        return Ok(());
    };
    let snapshot: serde_json::Value = decode(&blob, WHAT)?;
    let keys = snapshot
        .get("keys")
        .and_then(|k| k.as_array())
        .cloned()
        .unwrap_or_default();
    for key in &keys {
        let id = key
            .get("key_id")
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .ok_or_else(|| Error::Corrupt(format!("{WHAT}: an entry without a key id")))?;
        tree.insert(id.as_bytes(), encode(key)?)?;
    }
    tree.flush()?;
    state.remove(OLD_STATE_BLOB)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::open;
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_write_and_remove_per_key_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (KeyId(uuid::Uuid::now_v7()), KeyId(uuid::Uuid::now_v7()));
        {
            let store = open(dir.path());
            store
                .put_limit_counters(&[
                    (a, Some(json!({"key_id": a.0, "total": 5}))),
                    (b, Some(json!({"key_id": b.0, "total": 7}))),
                ])
                .unwrap();
            store
                .put_limit_counters::<serde_json::Value>(&[(a, None)])
                .unwrap();
        }
        let store = open(dir.path());
        let all: Vec<serde_json::Value> = store.limit_counters().unwrap();
        assert_eq!(all, vec![json!({"key_id": b.0, "total": 7})]);
        assert_eq!(store.limit_counter::<serde_json::Value>(a).unwrap(), None);
    }

    #[test]
    fn migration_splits_the_single_blob_into_entries() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let old = json!({"keys": [{"key_id": a, "total": 1}, {"key_id": b, "total": 2}]});
        let state = db.open_tree(super::super::trees::STATE).unwrap();
        state.insert(OLD_STATE_BLOB, encode(&old).unwrap()).unwrap();
        split_limits_state(&db).unwrap();
        // Rerunning (an interrupted upgrade) changes nothing.
        split_limits_state(&db).unwrap();
        assert!(state.get(OLD_STATE_BLOB).unwrap().is_none());
        let tree = db.open_tree(super::super::trees::LIMIT_COUNTERS).unwrap();
        let got: Vec<serde_json::Value> = tree
            .iter()
            .values()
            .map(|v| decode(&v.unwrap(), WHAT).unwrap())
            .collect();
        let mut want = vec![
            json!({"key_id": a, "total": 1}),
            json!({"key_id": b, "total": 2}),
        ];
        want.sort_by_key(|v| v["key_id"].as_str().unwrap().to_string());
        assert_eq!(got, want);
    }
}
