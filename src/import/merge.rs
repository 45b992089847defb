//! Idempotency: the CRS id → our id links of this run (loaded from the store,
//! extended as records are created) and the three-way merge that decides,
//! field by field, between the record as last imported (base), as it is here
//! now (local) and as CRS has it now (incoming).
//!
//! Rule per field: CRS unchanged since the last import → keep local; local
//! unchanged → take CRS; both changed to the same value → nothing to do; both
//! changed differently → keep local and report a conflict.

use crate::store::{self, ImportLink, Store};
use serde_json::Value;
use std::collections::HashMap;

/// Record kinds in the `imports` tree.
pub const KIND_KEY: &str = "key";
pub const KIND_ACCOUNT: &str = "account";
pub const KIND_GROUP: &str = "group";

/// The outcome of merging one record.
#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    /// The local view with CRS's changes applied.
    pub value: Value,
    pub updated: Vec<String>,
    pub conflicts: Vec<String>,
}

/// Merges objects field by field (see the module doc). Fields missing from
/// `incoming` are left alone.
pub fn three_way(base: &Value, local: &Value, incoming: &Value) -> Merged {
    let mut value = local.clone();
    let mut out = Merged::default();
    let (Some(incoming), Some(target)) = (incoming.as_object(), value.as_object_mut()) else {
        return Merged {
            value: incoming.clone(),
            ..Merged::default()
        };
    };
    for (field, new) in incoming {
        let old = base.get(field).unwrap_or(&Value::Null);
        let here = target.get(field).cloned().unwrap_or(Value::Null);
        if new == old || &here == new {
            continue;
        }
        if &here == old {
            target.insert(field.clone(), new.clone());
            out.updated.push(field.clone());
        } else {
            out.conflicts.push(field.clone());
        }
    }
    out.value = value;
    out
}

/// CRS id → our id, per kind, for one source. Only the ids stay in memory
/// (a few dozen bytes per record, so 100,000 keys stay small); a link's
/// merge base is read from the store when its record is merged.
pub struct Links {
    pub source: String,
    store: Option<Store>,
    ids: HashMap<(&'static str, String), uuid::Uuid>,
}

impl Links {
    /// Loads the ids of every link of the source (none without a store).
    pub fn load(store: Option<&Store>, source: &str) -> Result<Links, store::Error> {
        let mut ids = HashMap::new();
        if let Some(store) = store {
            for kind in [KIND_KEY, KIND_ACCOUNT, KIND_GROUP] {
                for (foreign, local_id) in store.import_link_ids(source, kind)? {
                    ids.insert((kind, foreign), local_id);
                }
            }
        }
        Ok(Links {
            source: source.to_string(),
            store: store.cloned(),
            ids,
        })
    }

    /// The stored link, with its merge base. A link made earlier in a dry
    /// run is not stored: it has an id ([`Links::local_id`]) but no base,
    /// which is fine because each record is merged once per run.
    pub fn get(
        &self,
        kind: &'static str,
        foreign: &str,
    ) -> Result<Option<ImportLink>, store::Error> {
        // Every stored link's id was loaded (or added) here: an unknown id
        // has no link, and asking the store would wait for a write in flight.
        if self.local_id(kind, foreign).is_none() {
            return Ok(None);
        }
        match &self.store {
            Some(store) => store.import_link(&self.source, kind, foreign),
            None => Ok(None),
        }
    }

    pub fn local_id(&self, kind: &'static str, foreign: &str) -> Option<uuid::Uuid> {
        self.ids.get(&(kind, foreign.to_string())).copied()
    }

    /// Records a link in memory and, unless dry-running, in the store. The
    /// link is written before the record it names: a crash in between leaves
    /// a link whose record a rerun recreates under the same id, never a
    /// record a rerun would duplicate.
    pub fn put(
        &mut self,
        dry_run: bool,
        kind: &'static str,
        foreign: &str,
        link: ImportLink,
    ) -> Result<(), store::Error> {
        if let (Some(store), false) = (&self.store, dry_run) {
            store.put_import_link(&self.source, kind, foreign, &link)?;
        }
        self.ids.insert((kind, foreign.to_string()), link.local_id);
        Ok(())
    }

    /// Records a new record's link in memory and returns it sealed, for the
    /// caller to commit in the record's own transaction (None when
    /// dry-running): link and record then exist together or not at all.
    pub fn stage(
        &mut self,
        dry_run: bool,
        kind: &'static str,
        foreign: &str,
        link: ImportLink,
    ) -> Result<Option<store::SealedBlob>, store::Error> {
        let sealed = match (&self.store, dry_run) {
            (Some(store), false) => {
                Some(store.seal_import_link(&self.source, kind, foreign, &link)?)
            }
            _ => None,
        };
        self.ids.insert((kind, foreign.to_string()), link.local_id);
        Ok(sealed)
    }
}

/// A UUID v7 carrying the CRS creation time, so imported records sort by
/// when they were created in CRS (our ids are time-ordered).
pub fn id_at(created_ms: Option<i64>) -> uuid::Uuid {
    match created_ms.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        )),
        None => uuid::Uuid::now_v7(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn three_way_takes_upstream_changes_and_keeps_local_edits() {
        let base = json!({"name": "a", "limit": 1, "tags": ["x"], "desc": "d"});
        let local = json!({"name": "renamed", "limit": 1, "tags": ["x"], "desc": "d"});
        let incoming = json!({"name": "crs-name", "limit": 2, "tags": ["x"], "desc": "d2"});
        let m = three_way(&base, &local, &incoming);
        assert_eq!(
            m.value,
            json!({"name": "renamed", "limit": 2, "tags": ["x"], "desc": "d2"})
        );
        assert_eq!(m.updated, vec!["desc".to_string(), "limit".to_string()]);
        assert_eq!(m.conflicts, vec!["name".to_string()]);
        // Nothing changed anywhere: nothing to do.
        let same = three_way(&base, &base, &base);
        assert!(same.updated.is_empty() && same.conflicts.is_empty());
        // A local edit that CRS did not touch is simply kept.
        let kept = three_way(&base, &local, &base);
        assert_eq!(kept.value, local);
        assert!(kept.conflicts.is_empty());
    }

    #[test]
    fn ids_carry_the_creation_time() {
        let a = id_at(Some(1_700_000_000_000));
        let b = id_at(Some(1_700_000_001_000));
        assert!(a < b);
        assert_eq!(a.get_version_num(), 7);
    }
}
