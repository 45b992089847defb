//! sled tree names (the one list of them) and the value encodings: a leading
//! format-version byte followed by JSON (serde) for records, which keeps them
//! readable in a hex dump and tolerant of added fields; and a compact form
//! for usage buckets (format 2: eleven LEB128 varints), the most numerous
//! values by far, where JSON's field names made up most of the store. The
//! version byte lets both forms coexist per value, so a store written before
//! the compact form needs no migration.

use super::Error;
use crate::domain::{NanoUsd, UsageTotals};
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
/// (sticky sessions), each under its own name.
pub(crate) const STATE: &str = "state";
/// Legacy (imported) key hash hex → `LegacyKeyHash` (key id + import source).
pub(crate) const LEGACY_KEY_HASHES: &str = "legacy_key_hashes";
/// Import source id → its key-hashing secret, sealed by the vault.
pub(crate) const LEGACY_SOURCES: &str = "legacy_sources";
/// Import links (foreign id → our id + base) and checkpoints, sealed.
pub(crate) const IMPORTS: &str = "imports";
/// `KeyId` → that key's checkpointed limit counters (`limit_counters.rs`).
pub(crate) const LIMIT_COUNTERS: &str = "limit_counters";

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

/// The version byte of the compact usage-bucket form.
const TOTALS_FORMAT: u8 = 2;
/// Fields in a compact usage bucket, in their fixed order.
const TOTALS_FIELDS: usize = 11;

fn totals_fields(t: &UsageTotals) -> [u64; TOTALS_FIELDS] {
    [
        t.requests,
        t.input_tokens,
        t.output_tokens,
        t.cache_creation_5m_tokens,
        t.cache_creation_1h_tokens,
        t.cache_read_tokens,
        t.list_cost.0,
        t.billed_cost.0,
        t.unpriced_requests,
        t.estimated_requests,
        t.error_requests,
    ]
}

/// Encodes a usage bucket compactly (about 25 bytes instead of about 280).
pub(crate) fn encode_totals(t: &UsageTotals) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + TOTALS_FIELDS * 3);
    out.push(TOTALS_FORMAT);
    for mut v in totals_fields(t) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

/// Decodes a usage bucket in either form (compact, or JSON from older stores).
pub(crate) fn decode_totals(bytes: &[u8], what: &str) -> Result<UsageTotals, Error> {
    let Some((&TOTALS_FORMAT, mut rest)) = bytes.split_first() else {
        return decode(bytes, what);
    };
    let corrupt = || Error::Corrupt(format!("{what}: truncated or overlong compact value"));
    let mut f = [0u64; TOTALS_FIELDS];
    for slot in &mut f {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let (&byte, tail) = rest.split_first().ok_or_else(corrupt)?;
            rest = tail;
            if shift > 63 || (shift == 63 && byte > 1) {
                return Err(corrupt());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        *slot = value;
    }
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok(UsageTotals {
        requests: f[0],
        input_tokens: f[1],
        output_tokens: f[2],
        cache_creation_5m_tokens: f[3],
        cache_creation_1h_tokens: f[4],
        cache_read_tokens: f[5],
        list_cost: NanoUsd(f[6]),
        billed_cost: NanoUsd(f[7]),
        unpriced_requests: f[8],
        estimated_requests: f[9],
        error_requests: f[10],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_buckets_round_trip_compactly_and_old_json_still_reads() {
        let t = UsageTotals {
            requests: 3,
            input_tokens: 1_000_000,
            output_tokens: 0,
            cache_creation_5m_tokens: 127,
            cache_creation_1h_tokens: 128,
            cache_read_tokens: u64::MAX,
            list_cost: NanoUsd(123_456_789_012),
            billed_cost: NanoUsd(1),
            unpriced_requests: 0,
            estimated_requests: 7,
            error_requests: 2,
        };
        let bytes = encode_totals(&t);
        assert_eq!(bytes[0], TOTALS_FORMAT);
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        assert_eq!(decode_totals(&bytes, "t").unwrap(), t);
        assert_eq!(decode_totals(&encode(&t).unwrap(), "t").unwrap(), t);
        assert_eq!(
            decode_totals(&encode_totals(&UsageTotals::default()), "t").unwrap(),
            UsageTotals::default()
        );
        // Truncated, trailing bytes, and an eleventh byte overflowing u64.
        assert!(decode_totals(&bytes[..bytes.len() - 1], "t").is_err());
        assert!(decode_totals(&[bytes.as_slice(), &[0]].concat(), "t").is_err());
        let mut overflow = vec![TOTALS_FORMAT];
        overflow.extend([0xff; 9]);
        overflow.push(0x02);
        overflow.extend([0; 10]);
        assert!(decode_totals(&overflow, "t").is_err());
    }

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
