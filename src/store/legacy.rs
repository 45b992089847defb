//! Legacy key hashes from imported deployments (claude-relay-service): the
//! `legacy_key_hashes` tree (legacy hash → key id + source) and the
//! `legacy_sources` tree (source id → the source's hashing secret, sealed by
//! the vault). CRS stores `sha256_hex(raw_key + ENCRYPTION_KEY)`, so a raw key
//! issued there can only be recognised with that secret; this file owns
//! recognising such keys and moving them to our native hash on first use.
//! It never stores a raw key and never returns a source secret.

use super::trees::{decode, encode};
use super::{abort, Error, Store, StoreEvent};
use crate::domain::{key_display_prefix, sha256_hex, ApiKey, KeyId};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;

const WHAT_ENTRY: &str = "legacy key hash";
const WHAT_SOURCE: &str = "legacy source";

/// Where a legacy hash came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyKeyHash {
    pub key_id: KeyId,
    /// The import source (see [`LegacySource`]).
    pub source: String,
}

/// An import source whose key hashes the relay still recognises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacySource {
    /// Stable id derived from the source's secret (never the secret itself).
    pub id: String,
    /// Human label, e.g. the Redis address without its password.
    pub label: String,
    pub added_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct StoredSource {
    label: String,
    added_at: DateTime<Utc>,
    /// base64 of the vault-sealed secret (AAD `legacy_source/<id>`).
    sealed: String,
}

fn source_aad(id: &str) -> Vec<u8> {
    format!("legacy_source/{id}").into_bytes()
}

/// The display prefix of a raw key whose prefix we do not know: everything up
/// to the last `_` in its first 16 characters (`cr_`, `sk-team_`), if any.
fn guess_prefix(raw: &str) -> &str {
    let head: usize = raw.char_indices().nth(16).map_or(raw.len(), |(i, _)| i);
    match raw[..head].rfind('_') {
        Some(i) => &raw[..=i],
        None => "",
    }
}

/// A legacy hash's stored entry.
pub(super) fn encode_entry(key_id: KeyId, source: String) -> Result<Vec<u8>, Error> {
    encode(&LegacyKeyHash { key_id, source })
}

impl Store {
    /// Registers (or relabels) a source and seals its hashing secret.
    pub fn put_legacy_source(&self, id: &str, label: &str, secret: &str) -> Result<(), Error> {
        let added_at = match self.inner.legacy_sources.get(id.as_bytes())? {
            Some(v) => decode::<StoredSource>(&v, WHAT_SOURCE)?.added_at,
            None => Utc::now(),
        };
        let sealed = self.inner.vault.seal(&source_aad(id), secret.as_bytes())?;
        let stored = StoredSource {
            label: label.to_string(),
            added_at,
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        };
        self.inner
            .legacy_sources
            .insert(id.as_bytes(), encode(&stored)?)?;
        Ok(())
    }

    pub fn legacy_sources(&self) -> Result<Vec<LegacySource>, Error> {
        let mut out = Vec::new();
        for entry in self.inner.legacy_sources.iter() {
            let (id, v) = entry?;
            let stored: StoredSource = decode(&v, WHAT_SOURCE)?;
            out.push(LegacySource {
                id: String::from_utf8_lossy(&id).into_owned(),
                label: stored.label,
                added_at: stored.added_at,
            });
        }
        Ok(out)
    }

    /// Every source with its unsealed secret, for hashing a presented key.
    fn legacy_secrets(&self) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::new();
        for entry in self.inner.legacy_sources.iter() {
            let (id, v) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let stored: StoredSource = decode(&v, WHAT_SOURCE)?;
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(&stored.sealed)
                .map_err(|_| Error::Corrupt("legacy source secret is not base64".into()))?;
            let plain = self.inner.vault.open(&source_aad(&id), &sealed)?;
            let secret = String::from_utf8(plain)
                .map_err(|_| Error::Corrupt("legacy source secret is not UTF-8".into()))?;
            out.push((id, secret));
        }
        Ok(out)
    }

    /// Records that `legacy_hash` (from `source`) identifies `key_id`.
    pub fn put_legacy_key_hash(
        &self,
        legacy_hash: &str,
        key_id: KeyId,
        source: &str,
    ) -> Result<(), Error> {
        self.inner.legacy_key_hashes.insert(
            legacy_hash.as_bytes(),
            encode_entry(key_id, source.to_string())?,
        )?;
        // A key that was unknown a moment ago may be known now.
        self.emit(StoreEvent::KeyChanged {
            id: key_id,
            key_hash: legacy_hash.to_string(),
        });
        Ok(())
    }

    pub fn legacy_key_hash(&self, legacy_hash: &str) -> Result<Option<LegacyKeyHash>, Error> {
        self.inner
            .legacy_key_hashes
            .get(legacy_hash.as_bytes())?
            .map(|v| decode(&v, WHAT_ENTRY))
            .transpose()
    }

    pub fn remove_legacy_key_hash(&self, legacy_hash: &str) -> Result<(), Error> {
        self.inner
            .legacy_key_hashes
            .remove(legacy_hash.as_bytes())?;
        Ok(())
    }

    /// Number of legacy hashes not yet upgraded to native ones.
    pub fn legacy_key_hash_count(&self) -> usize {
        self.inner.legacy_key_hashes.len()
    }

    /// Resolves a raw key that its native hash did not find: tries each legacy
    /// source's `sha256_hex(raw + secret)`; a hit is upgraded at once (the
    /// key's hash becomes `sha256_hex(raw)` and the legacy entry goes), in one
    /// transaction. Finally re-reads the native hash, so a request racing
    /// another one's upgrade still finds the key. `Ok(None)`: unknown key.
    pub fn key_by_legacy(&self, raw: &str) -> Result<Option<ApiKey>, Error> {
        if self.inner.legacy_sources.is_empty() {
            return Ok(None);
        }
        let native = sha256_hex(raw);
        for (_source, secret) in self.legacy_secrets()? {
            let legacy = sha256_hex(&format!("{raw}{secret}"));
            let Some(entry) = self.legacy_key_hash(&legacy)? else {
                continue;
            };
            if let Some(key) = self.upgrade_legacy(&legacy, entry.key_id, raw, &native)? {
                return Ok(Some(key));
            }
        }
        self.key_by_hash(&native)
    }

    /// Moves a key from its legacy hash to the native one.
    fn upgrade_legacy(
        &self,
        legacy: &str,
        key_id: KeyId,
        raw: &str,
        native: &str,
    ) -> Result<Option<ApiKey>, Error> {
        let trees = (
            &self.inner.keys,
            &self.inner.keys_by_hash,
            &self.inner.legacy_key_hashes,
        );
        let display = key_display_prefix(raw, guess_prefix(raw));
        let outcome = trees.transaction(|(keys, by_hash, legacy_tree)| {
            legacy_tree.remove(legacy.as_bytes())?;
            let Some(v) = keys.get(key_id.0.as_bytes())? else {
                return Ok(None); // a purged key: the dangling entry is gone now
            };
            let mut key: ApiKey = match decode(&v, "api key") {
                Ok(k) => k,
                Err(e) => return abort(e),
            };
            if let Some(owner) = by_hash.get(native.as_bytes())? {
                if owner.as_ref() != key_id.0.as_bytes() {
                    return abort(Error::Conflict(
                        "an imported key's native hash belongs to another key".into(),
                    ));
                }
            }
            let old_hash = std::mem::replace(&mut key.key_hash, native.to_string());
            key.display_prefix = display.clone();
            if old_hash != native {
                by_hash.remove(old_hash.as_bytes())?;
            }
            by_hash.insert(native.as_bytes(), key_id.0.as_bytes())?;
            match encode(&key) {
                Ok(value) => keys.insert(key_id.0.as_bytes(), value)?,
                Err(e) => return abort(e),
            };
            Ok(Some((key, old_hash)))
        })?;
        let Some((key, old_hash)) = outcome else {
            return Ok(None);
        };
        tracing::info!(key.id = %key.id, "imported key upgraded to its native hash on first use");
        for key_hash in [old_hash, native.to_string()] {
            self.emit(StoreEvent::KeyChanged {
                id: key.id,
                key_hash,
            });
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::sample_key;
    use super::super::test_support::open;
    use super::*;

    const SECRET: &str = "CHANGE-THIS-32-CHARACTER-KEY-NOW";

    #[test]
    fn crs_hash_vector_and_upgrade_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let raw = format!("cr_{}", "0".repeat(64));
        // The verified vector from the CRS data model.
        let legacy = sha256_hex(&format!("{raw}{SECRET}"));
        assert_eq!(
            legacy,
            "ed2cbdb470e2c5cf28c4338b11394e66263b509bf1b3a3f89b373ddf736bdf58"
        );
        assert_eq!(store.key_by_legacy(&raw).unwrap(), None, "no sources yet");
        let key = sample_key("imported", "crs:placeholder");
        store.create_key(&key).unwrap();
        store
            .put_legacy_source("src1", "redis://host:6379/0", SECRET)
            .unwrap();
        store.put_legacy_key_hash(&legacy, key.id, "src1").unwrap();
        assert_eq!(store.key_by_hash(&sha256_hex(&raw)).unwrap(), None);

        let found = store.key_by_legacy(&raw).unwrap().unwrap();
        assert_eq!(found.id, key.id);
        assert_eq!(found.key_hash, sha256_hex(&raw));
        assert!(found.display_prefix.starts_with("cr_0000"));
        // Upgraded: the native hash works, the legacy entry and placeholder are gone.
        assert_eq!(
            store.key_by_hash(&sha256_hex(&raw)).unwrap().unwrap().id,
            key.id
        );
        assert_eq!(store.legacy_key_hash(&legacy).unwrap(), None);
        assert_eq!(store.key_by_hash("crs:placeholder").unwrap(), None);
        // A second legacy lookup (a racing request) still finds it natively.
        assert_eq!(store.key_by_legacy(&raw).unwrap().unwrap().id, key.id);
        assert_eq!(store.key_by_legacy("cr_unknown").unwrap(), None);
        assert_eq!(
            store.legacy_sources().unwrap()[0].label,
            "redis://host:6379/0"
        );
    }

    #[tokio::test]
    async fn source_secret_is_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let secret = "legacy-secret-MUST-NOT-BE-ON-DISK-0123";
        store.put_legacy_source("s", "label", secret).unwrap();
        store.flush().await.unwrap();
        drop(store);
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }

    #[test]
    fn prefixes_are_guessed_from_the_raw_key() {
        assert_eq!(guess_prefix("cr_abc"), "cr_");
        assert_eq!(guess_prefix("team_key_abcdef0123456789"), "team_key_");
        assert_eq!(guess_prefix("abcdef"), "");
    }
}
