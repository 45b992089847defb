//! Import bookkeeping: the `imports` tree. For each import source it maps a
//! foreign record id (e.g. a CRS API key id) to our id together with the
//! record as last imported (the base of a three-way merge, so a rerun can
//! tell local edits from upstream changes), and keeps named checkpoint blobs
//! (e.g. usage counters already imported). Values are sealed by the vault
//! because a base may hold upstream credentials.
//!
//! Keys: `<source>\0l\0<kind>\0<foreign id>` for links and
//! `<source>\0b\0<name>` for blobs.

use super::{Error, Store};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One imported record: our id and the record as last imported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportLink {
    pub local_id: uuid::Uuid,
    /// The mapped fields as written by the last import (importer-defined shape).
    pub base: serde_json::Value,
    pub imported_at: DateTime<Utc>,
}

fn link_key(source: &str, kind: &str, foreign_id: &str) -> Vec<u8> {
    format!("{source}\0l\0{kind}\0{foreign_id}").into_bytes()
}

fn blob_key(source: &str, name: &str) -> Vec<u8> {
    format!("{source}\0b\0{name}").into_bytes()
}

/// Format byte of a sealed import record: the vault's sealing of the
/// zstd-compressed JSON. Records written before it are the base64 text of
/// the sealed JSON, which never starts with this byte, and still read. The
/// compact form matters to `import-redis`: a link's merge base and a usage
/// checkpoint are a kilobyte of JSON each, per key.
const SEALED_ZSTD: u8 = 0x01;
const ZSTD_LEVEL: i32 = 1;

fn aad(key: &[u8]) -> Vec<u8> {
    let mut aad = b"import/".to_vec();
    aad.extend_from_slice(key);
    aad
}

/// A checkpoint blob sealed ahead of a write, so that it can be committed
/// in the same transaction as what it records ([`Store::apply_usage_bulk`]).
#[derive(Clone)]
pub struct SealedBlob {
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
}

impl Store {
    fn seal_value<T: Serialize>(&self, key: &[u8], value: &T) -> Result<Vec<u8>, Error> {
        let plain = serde_json::to_vec(value)
            .map_err(|e| Error::Corrupt(format!("encode import record: {e}")))?;
        let packed = zstd::bulk::compress(&plain, ZSTD_LEVEL)
            .map_err(|e| Error::Corrupt(format!("compress import record: {e}")))?;
        let sealed = self.inner.vault.seal(&aad(key), &packed)?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(SEALED_ZSTD);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open_value<T: DeserializeOwned>(&self, key: &[u8], stored: &[u8]) -> Result<T, Error> {
        let plain = match stored.split_first() {
            Some((&SEALED_ZSTD, sealed)) => {
                let packed = self.inner.vault.open(&aad(key), sealed)?;
                zstd::stream::decode_all(packed.as_slice())
                    .map_err(|e| Error::Corrupt(format!("import record: {e}")))?
            }
            _ => {
                let sealed = base64::engine::general_purpose::STANDARD
                    .decode(stored)
                    .map_err(|_| Error::Corrupt("import record is not base64".into()))?;
                self.inner.vault.open(&aad(key), &sealed)?
            }
        };
        serde_json::from_slice(&plain).map_err(|e| Error::Corrupt(format!("import record: {e}")))
    }

    pub fn import_link(
        &self,
        source: &str,
        kind: &str,
        foreign_id: &str,
    ) -> Result<Option<ImportLink>, Error> {
        let key = link_key(source, kind, foreign_id);
        self.inner
            .imports
            .get(&key)?
            .map(|v| self.open_value(&key, &v))
            .transpose()
    }

    pub fn put_import_link(
        &self,
        source: &str,
        kind: &str,
        foreign_id: &str,
        link: &ImportLink,
    ) -> Result<(), Error> {
        let key = link_key(source, kind, foreign_id);
        let value = self.seal_value(&key, link)?;
        self.inner.imports.insert(key, value)?;
        Ok(())
    }

    /// A link sealed for a write in another transaction
    /// ([`Store::prepare_keys`]).
    pub fn seal_import_link(
        &self,
        source: &str,
        kind: &str,
        foreign_id: &str,
        link: &ImportLink,
    ) -> Result<SealedBlob, Error> {
        let key = link_key(source, kind, foreign_id);
        let value = self.seal_value(&key, link)?;
        Ok(SealedBlob { key, value })
    }

    /// Every link of one kind from one source: (foreign id, link).
    pub fn import_links(
        &self,
        source: &str,
        kind: &str,
    ) -> Result<Vec<(String, ImportLink)>, Error> {
        let prefix = link_key(source, kind, "");
        let mut out = Vec::new();
        for entry in self.inner.imports.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let foreign = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            out.push((foreign, self.open_value(&key, &value)?));
        }
        Ok(out)
    }

    /// The local ids of every link of one kind from one source: (foreign
    /// id, local id), without holding the links' merge bases in memory.
    pub fn import_link_ids(
        &self,
        source: &str,
        kind: &str,
    ) -> Result<Vec<(String, uuid::Uuid)>, Error> {
        #[derive(Deserialize)]
        struct LinkId {
            local_id: uuid::Uuid,
        }
        let prefix = link_key(source, kind, "");
        let mut out = Vec::new();
        for entry in self.inner.imports.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let foreign = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let link: LinkId = self.open_value(&key, &value)?;
            out.push((foreign, link.local_id));
        }
        Ok(out)
    }

    pub fn import_blob<T: DeserializeOwned>(
        &self,
        source: &str,
        name: &str,
    ) -> Result<Option<T>, Error> {
        let key = blob_key(source, name);
        self.inner
            .imports
            .get(&key)?
            .map(|v| self.open_value(&key, &v))
            .transpose()
    }

    /// Seals a blob for [`Store::apply_usage_bulk`] (it is written there).
    pub fn seal_import_blob<T: Serialize>(
        &self,
        source: &str,
        name: &str,
        value: &T,
    ) -> Result<SealedBlob, Error> {
        let key = blob_key(source, name);
        let value = self.seal_value(&key, value)?;
        Ok(SealedBlob { key, value })
    }

    pub fn put_import_blob<T: Serialize>(
        &self,
        source: &str,
        name: &str,
        value: &T,
    ) -> Result<(), Error> {
        let key = blob_key(source, name);
        let value = self.seal_value(&key, value)?;
        self.inner.imports.insert(key, value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::open;
    use super::*;

    #[test]
    fn links_and_blobs_round_trip_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let link = ImportLink {
            local_id: uuid::Uuid::now_v7(),
            base: serde_json::json!({"name": "a", "secret": "sk-x"}),
            imported_at: Utc::now(),
        };
        store.put_import_link("s1", "key", "crs-1", &link).unwrap();
        store.put_import_link("s2", "key", "crs-2", &link).unwrap();
        assert_eq!(
            store.import_link("s1", "key", "crs-1").unwrap(),
            Some(link.clone())
        );
        assert_eq!(store.import_link("s1", "account", "crs-1").unwrap(), None);
        let all = store.import_links("s1", "key").unwrap();
        assert_eq!(all, vec![("crs-1".to_string(), link)]);
        store.put_import_blob("s1", "cutoff", &42u32).unwrap();
        assert_eq!(store.import_blob::<u32>("s1", "cutoff").unwrap(), Some(42));
        assert_eq!(store.import_blob::<u32>("s2", "cutoff").unwrap(), None);
    }

    #[test]
    fn records_are_sealed_compressed_and_the_older_base64_form_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let base = serde_json::json!({
            "name": "team key", "secret": "sk-ant-api03-secret",
            "tags": ["a", "b"], "budgets": {"daily": 5.0, "total": 0.0}
        });
        let link = ImportLink {
            local_id: uuid::Uuid::now_v7(),
            base,
            imported_at: Utc::now(),
        };
        store.put_import_link("s1", "key", "crs-1", &link).unwrap();
        let key = link_key("s1", "key", "crs-1");
        let stored = store.inner.imports.get(&key).unwrap().unwrap();
        let json = serde_json::to_vec(&link).unwrap();
        assert_eq!(stored[0], SEALED_ZSTD);
        assert!(
            stored.len() < json.len(),
            "{} vs {}",
            stored.len(),
            json.len()
        );
        assert!(!String::from_utf8_lossy(&stored).contains("sk-ant"));
        // Another key's AAD does not open it.
        let other = link_key("s1", "key", "crs-2");
        store.inner.imports.insert(&other, stored.as_ref()).unwrap();
        assert!(store.import_link("s1", "key", "crs-2").is_err());

        // A record as written before the compact form: base64 of the sealed JSON.
        let sealed = store.inner.vault.seal(&aad(&key), &json).unwrap();
        let old = base64::engine::general_purpose::STANDARD.encode(sealed);
        store.inner.imports.insert(&key, old.as_bytes()).unwrap();
        assert_eq!(store.import_link("s1", "key", "crs-1").unwrap(), Some(link));
    }
}
