//! Raw views of a request body's top level: the one body rewrite the relay
//! ever makes (replacing `model` when an account maps it; every other byte is
//! kept, members in their original order), and the hash of the cacheable
//! prefix (`system` + `tools` + the first message) that keeps sessions
//! without a session id on one account.

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// The body with its top-level `model` set to `model`; None if the body is
/// not a JSON object (it was inspected before, so that does not happen).
pub fn with_model(body: &[u8], model: &str) -> Option<Bytes> {
    let members = top_level_members(body)?;
    let mut out = Vec::with_capacity(body.len() + model.len());
    out.push(b'{');
    let mut first = true;
    let mut replaced = false;
    for (key, value) in &members {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, key).ok()?;
        out.push(b':');
        if key == "model" && !replaced {
            serde_json::to_writer(&mut out, model).ok()?;
            replaced = true;
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    if !replaced {
        return None;
    }
    out.push(b'}');
    Some(Bytes::from(out))
}

/// Bodies larger than this are not hashed for stickiness (a second pass over
/// a very large body is not worth it; such clients send session ids anyway).
const MAX_HASHED_BODY: usize = 1 << 20;

/// A stable hash of the prompt's cacheable prefix, or None when there is
/// nothing to hash.
pub fn prefix_hash(body: &[u8]) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    if body.len() > MAX_HASHED_BODY {
        return None;
    }
    let members = top_level_members(body)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut any = false;
    for name in ["system", "tools"] {
        if let Some((_, v)) = members.iter().find(|(k, _)| k == name) {
            v.get().hash(&mut hasher);
            any = true;
        }
    }
    if let Some((_, messages)) = members.iter().find(|(k, _)| k == "messages") {
        let first: Vec<&RawValue> = serde_json::from_str(messages.get()).ok()?;
        if let Some(m) = first.first() {
            m.get().hash(&mut hasher);
            any = true;
        }
    }
    any.then(|| hasher.finish())
}

fn top_level_members(body: &[u8]) -> Option<Vec<(String, &RawValue)>> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                members.push((k, v));
            }
            Ok(members)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let members = de.deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_changes_and_order_is_kept() {
        let body = br#"{"stream":true, "model":"claude-sonnet-4","messages":[{"role":"user","content":"a \"q\" \u00e9"}],"metadata":{"user_id":"{\"x\":1}"}}"#;
        let out = with_model(body, "claude-sonnet-4-5").unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            r#"{"stream":true,"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"a \"q\" \u00e9"}],"metadata":{"user_id":"{\"x\":1}"}}"#
        );
    }

    #[test]
    fn prefix_hash_follows_system_and_first_message_only() {
        let a = br#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"x"}]}"#;
        let b = br#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"y"},{"role":"user","content":"z"}]}"#;
        let c = br#"{"model":"m","system":"be long","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(prefix_hash(a).is_some());
        assert_eq!(
            prefix_hash(a),
            prefix_hash(b),
            "later turns do not move the session"
        );
        assert_ne!(prefix_hash(a), prefix_hash(c));
        assert_eq!(prefix_hash(br#"{"model":"m"}"#), None);
    }

    #[test]
    fn non_objects_and_bodies_without_model_are_left_alone() {
        assert!(with_model(b"[1,2]", "m").is_none());
        assert!(with_model(b"{\"messages\":[]}", "m").is_none());
        assert!(with_model(b"{\"model\":\"a\"} trailing", "m").is_none());
    }
}
