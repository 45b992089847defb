//! sled tree names (the one list of them) and the one value encoding every
//! tree uses: a leading format-version byte followed by JSON (serde).
//! JSON keeps records readable in a hex dump and tolerant of added fields;
//! the version byte lets a later migration change the encoding per value.

use super::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Schema version and the master key check.
pub(crate) const META: &str = "meta";
/// `KeyId` (16 bytes, UUID v7 so creation-ordered) → `ApiKey`.
pub(crate) const KEYS: &str = "keys";
/// SHA-256 hex of a raw key → `KeyId` bytes.
pub(crate) const KEYS_BY_HASH: &str = "keys_by_hash";
/// Secondary indexes over keys (postings, orderings, counters, per-period
/// usage); layout in `key_index.rs`.
pub(crate) const KEY_INDEX: &str = "key_index";
/// `AccountId` → stored account (credentials and proxy sealed by the vault).
pub(crate) const ACCOUNTS: &str = "accounts";
/// `AdminId` → `Admin`.
pub(crate) const ADMINS: &str = "admins";
/// Lowercased username → `AdminId` bytes (usernames are unique regardless of case).
pub(crate) const ADMINS_BY_NAME: &str = "admins_by_name";
/// SHA-256 hex of a session token → `AdminSession`.
pub(crate) const SESSIONS: &str = "sessions";
/// `<subject>|h|yyyymmddhh`, `<subject>|d|yyyymmdd`, `<subject>|t` → `UsageTotals`.
pub(crate) const USAGE: &str = "usage";
/// Big-endian microseconds + random 16 bytes → `UsageRecord` (bounded log).
pub(crate) const REQUESTS: &str = "requests";
/// Cost rankings per local month: `v|<yyyymm>|<kind>|<id>` → costs and
/// `o|<yyyymm>|<kind>|<!cost>|<id>` → () in cost order (`usage_query.rs`).
pub(crate) const USAGE_RANK: &str = "usage_rank";

/// Big-endian `u64` id (monotonic) → `AuditEntry`; append-only.
pub(crate) const AUDIT: &str = "audit";

/// `GroupId` → `Group`.
pub(crate) const GROUPS: &str = "groups";
/// Named blobs: run-time settings, and state other modules persist lazily
/// (sticky sessions, limit counters), each under its own name.
pub(crate) const STATE: &str = "state";
/// Legacy (imported) key hash hex → `LegacyKeyHash` (key id + import source).
pub(crate) const LEGACY_KEY_HASHES: &str = "legacy_key_hashes";
/// Import source id → its key-hashing secret, sealed by the vault.
pub(crate) const LEGACY_SOURCES: &str = "legacy_sources";
/// Import links (foreign id → our id + base) and checkpoints, sealed.
pub(crate) const IMPORTS: &str = "imports";

/// `ExportId` (16 bytes, UUID v7) → `ExportRecord` (export jobs).
pub(crate) const EXPORTS: &str = "exports";
/// SHA-256 hex of a one-time download token → `DownloadGrant`.
pub(crate) const EXPORT_DOWNLOADS: &str = "export_downloads";

/// The version byte written in front of every encoded value.
const VALUE_FORMAT: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    out.push(VALUE_FORMAT);
    serde_json::to_writer(&mut out, value).map_err(|e| Error::Corrupt(format!("encode: {e}")))?;
    Ok(out)
}

/// Decodes a value written by [`encode`]; `what` names the record kind for the error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT, json)) => {
            serde_json::from_slice(json).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
        }
        Some((v, _)) => Err(Error::Corrupt(format!("{what}: unknown value format {v}"))),
        None => Err(Error::Corrupt(format!("{what}: empty value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_versions_are_corrupt() {
        let bytes = encode(&vec![1u32, 2, 3]).unwrap();
        assert_eq!(bytes[0], VALUE_FORMAT);
        assert_eq!(decode::<Vec<u32>>(&bytes, "t").unwrap(), vec![1, 2, 3]);
        assert!(matches!(
            decode::<Vec<u32>>(&[9, b'[', b']'], "t"),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            decode::<Vec<u32>>(&[], "t"),
            Err(Error::Corrupt(_))
        ));
    }
}
