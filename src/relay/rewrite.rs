//! The one body rewrite the relay ever makes: replacing the top-level
//! `model` when an account maps the requested model to another name. Every
//! other byte of the body is kept: the top-level members are copied as raw
//! JSON in their original order, only `model`'s value changes.

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
    fn non_objects_and_bodies_without_model_are_left_alone() {
        assert!(with_model(b"[1,2]", "m").is_none());
        assert!(with_model(b"{\"messages\":[]}", "m").is_none());
        assert!(with_model(b"{\"model\":\"a\"} trailing", "m").is_none());
    }
}
