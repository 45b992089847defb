//! Session keys for sticky routing. A session is named, in this order, by the
//! `X-Claude-Code-Session-Id` header, by the session id inside
//! `metadata.user_id` (the JSON-string form Claude Code sends today or the
//! older `user_<hex>_account_<…>_session_<uuid>` form, crs-data-model.md 5.4),
//! or else by a hash of the cache-controlled prompt prefix that the relay's
//! inspector computes. The key is a 64-bit digest: cheap to copy and hash,
//! and it never keeps client text in memory.

use serde::Deserialize;
use std::borrow::Cow;

/// A session, as the sticky map keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(u64);

impl SessionKey {
    /// Rebuilds a key from [`SessionKey::get`] (e.g. when restoring persisted mappings).
    pub fn from_raw(raw: u64) -> SessionKey {
        SessionKey(raw)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The key of an explicit session id. The header and `metadata.user_id`
    /// carry the same id, so both give the same key.
    pub fn from_session_id(id: &str) -> SessionKey {
        SessionKey(mix(fnv1a(b"session\0", id.trim().as_bytes())))
    }

    /// The key of a prompt-prefix hash; tagged so it never equals a session id's key.
    pub fn from_prefix_hash(hash: u64) -> SessionKey {
        SessionKey(mix(hash ^ 0x7072_6566_6978_0000))
    }
}

/// The session key of a request, first match wins: header, `metadata.user_id`,
/// prompt-prefix hash. Blank values are skipped.
pub fn session_key(
    header_session_id: Option<&str>,
    metadata_user_id: Option<&str>,
    cache_prefix_hash: Option<u64>,
) -> Option<SessionKey> {
    if let Some(id) = header_session_id.map(str::trim).filter(|s| !s.is_empty()) {
        return Some(SessionKey::from_session_id(id));
    }
    if let Some(id) = metadata_user_id.and_then(session_id_from_user_id) {
        return Some(SessionKey::from_session_id(&id));
    }
    cache_prefix_hash.map(SessionKey::from_prefix_hash)
}

/// The session id inside a `metadata.user_id` value, in either form:
/// the JSON string `{"device_id":…,"account_uuid":…,"session_id":"<uuid>"}`
/// or the legacy `user_<64 hex>_account_<anything>_session_<id>`.
pub fn session_id_from_user_id(user_id: &str) -> Option<Cow<'_, str>> {
    let trimmed = user_id.trim();
    if trimmed.starts_with('{') {
        #[derive(Deserialize)]
        struct UserId<'a> {
            #[serde(borrow, default)]
            session_id: Option<Cow<'a, str>>,
        }
        let parsed: UserId<'_> = serde_json::from_str(trimmed).ok()?;
        return parsed
            .session_id
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s {
                Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
            });
    }
    let rest = trimmed.strip_prefix("user_")?;
    let (device, rest) = rest.split_once("_account_")?;
    if device.is_empty() || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // The account part may itself be empty or contain underscores; the
    // session id is whatever follows the last `_session_`.
    let (_, session) = rest.rsplit_once("_session_")?;
    let session = session.trim();
    (!session.is_empty()).then_some(Cow::Borrowed(session))
}

fn fnv1a(tag: &[u8], bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in tag.iter().chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser: spreads FNV's weak low bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from ../shared/captures/claude_code_tool_use.jsonl.
    const CAPTURED_SESSION: &str = "c2fd1380-2a3e-4f19-af32-c12020fa2a3c";
    const CAPTURED_USER_ID: &str = r#"{"device_id":"8bbfdd09255973b7cf08c60af11a4eb47cc7c98a7c13db3f549262810efd734f","account_uuid":"","session_id":"c2fd1380-2a3e-4f19-af32-c12020fa2a3c"}"#;

    #[test]
    fn header_and_json_user_id_name_the_same_session() {
        let from_header = session_key(Some(CAPTURED_SESSION), None, None).unwrap();
        let from_metadata = session_key(None, Some(CAPTURED_USER_ID), None).unwrap();
        assert_eq!(from_header, from_metadata);
        assert_eq!(
            session_id_from_user_id(CAPTURED_USER_ID).as_deref(),
            Some(CAPTURED_SESSION)
        );
    }

    #[test]
    fn header_wins_then_metadata_then_prefix() {
        let other = r#"{"device_id":"ab","account_uuid":"","session_id":"other"}"#;
        assert_eq!(
            session_key(Some(CAPTURED_SESSION), Some(other), Some(7)),
            Some(SessionKey::from_session_id(CAPTURED_SESSION))
        );
        assert_eq!(
            session_key(Some("  "), Some(other), Some(7)),
            Some(SessionKey::from_session_id("other"))
        );
        assert_eq!(
            session_key(None, Some("not a user id"), Some(7)),
            Some(SessionKey::from_prefix_hash(7))
        );
        assert_eq!(session_key(None, None, None), None);
        assert_ne!(
            SessionKey::from_prefix_hash(7),
            SessionKey::from_session_id("7")
        );
    }

    #[test]
    fn legacy_user_id_form() {
        let hex = "8bbfdd09255973b7cf08c60af11a4eb47cc7c98a7c13db3f549262810efd734f";
        let legacy = format!("user_{hex}_account__session_{CAPTURED_SESSION}");
        assert_eq!(
            session_id_from_user_id(&legacy).as_deref(),
            Some(CAPTURED_SESSION)
        );
        let with_account = format!(
            "user_{hex}_account_4f1c0a2e-1111-2222-3333-444455556666_session_{CAPTURED_SESSION}"
        );
        assert_eq!(
            session_key(None, Some(&with_account), None),
            session_key(Some(CAPTURED_SESSION), None, None)
        );
        assert_eq!(session_id_from_user_id("user_zz_account__session_x"), None);
        assert_eq!(
            session_id_from_user_id(&format!("user_{hex}_account__session_")),
            None
        );
        assert_eq!(session_id_from_user_id(r#"{"device_id":"x"}"#), None);
        assert_eq!(session_id_from_user_id("{not json"), None);
    }
}
