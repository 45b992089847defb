//! Reads only what routing needs from a request body (model, stream,
//! max_tokens, metadata.user_id, an input-size estimate) through borrowed serde
//! views; the body itself is forwarded unchanged. Also extracts usage from a
//! non-streaming Message response.
//!
//! One serde pass over the body, no `serde_json::Value` tree: hand-written
//! visitors keep the fields routing needs and add up text sizes on the way,
//! so a 30 MB body costs one scan and no copies of its strings. Fields the
//! relay does not own are read loosely (a wrongly typed `stream` or
//! `metadata` is upstream's to reject, with its own error); only what the
//! relay cannot route without is an error here.

use crate::domain::TokenUsage;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

use super::sse::WireUsage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// `metadata.user_id` as sent (Claude Code sends a JSON string).
    pub user_id: Option<String>,
    /// ≈ text bytes / 4, base64 payloads excluded.
    pub estimated_input_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// Not JSON or not an object; the message says where.
    #[error("{0}")]
    Malformed(String),
    #[error("model: Field required")]
    MissingModel,
    #[error("messages: Field required")]
    MissingMessages,
}

/// For `/v1/messages`: model and messages are required.
pub fn inspect_messages(body: &[u8]) -> Result<RequestInfo, InspectError> {
    let view = parse_request(body)?;
    if !view.has_messages {
        return Err(InspectError::MissingMessages);
    }
    view.into_info()
}

/// For `/v1/messages/count_tokens`: model is required; messages are upstream's business.
pub fn inspect_count_tokens(body: &[u8]) -> Result<RequestInfo, InspectError> {
    parse_request(body)?.into_info()
}

/// Model and usage from a non-streaming Message JSON response.
///
/// `None` when the body is not such a Message (no `model` or no `usage`).
/// Cache writes are split 5m/1h as in the SSE parser.
pub fn message_usage(body: &[u8]) -> Option<(String, TokenUsage)> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        model: Option<Cow<'a, str>>,
        usage: Option<WireUsage>,
    }
    let msg: Message = serde_json::from_slice(body).ok()?;
    let mut tokens = TokenUsage::default();
    msg.usage?.apply(&mut tokens, &mut 0);
    Some((msg.model?.into_owned(), tokens))
}

/// What one pass over a request body yields.
#[derive(Default)]
struct RequestView<'a> {
    model: Option<Loose<'a>>,
    stream: Option<Loose<'a>>,
    max_tokens: Option<Loose<'a>>,
    user_id: Option<Loose<'a>>,
    has_messages: bool,
    /// Bytes of text in `system`, `messages` and `tools`.
    text_bytes: u64,
}

impl RequestView<'_> {
    fn into_info(self) -> Result<RequestInfo, InspectError> {
        let model = match self.model {
            None | Some(Loose::Null) => return Err(InspectError::MissingModel),
            Some(Loose::Str(m)) => m.into_owned(),
            Some(_) => {
                return Err(InspectError::Malformed(
                    "model: Input should be a valid string".into(),
                ))
            }
        };
        Ok(RequestInfo {
            model,
            stream: matches!(self.stream, Some(Loose::Bool(true))),
            max_tokens: match self.max_tokens {
                Some(Loose::U64(n)) => Some(n),
                _ => None,
            },
            user_id: match self.user_id {
                Some(Loose::Str(s)) => Some(s.into_owned()),
                _ => None,
            },
            estimated_input_tokens: self.text_bytes.div_ceil(4),
        })
    }
}

fn parse_request(body: &[u8]) -> Result<RequestView<'_>, InspectError> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|&b| b != b'{') {
        // Say "not an object" only for bodies that are JSON at all.
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => InspectError::Malformed("Request body must be a JSON object".into()),
            Err(e) => not_json(&e),
        });
    }
    serde_json::from_slice::<RequestView>(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            InspectError::Malformed(format!("Invalid request body: {e}"))
        }
        _ => not_json(&e),
    })
}

fn not_json(e: &serde_json::Error) -> InspectError {
    InspectError::Malformed(format!("Request body is not valid JSON: {e}"))
}

impl<'de> Deserialize<'de> for RequestView<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RequestView<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = RequestView::default();
                // Repeated keys: the last one wins, as in most JSON parsers.
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Model => v.model = Some(map.next_value()?),
                        TopKey::Stream => v.stream = Some(map.next_value()?),
                        TopKey::MaxTokens => v.max_tokens = Some(map.next_value()?),
                        TopKey::Metadata => v.user_id = map.next_value::<Metadata>()?.user_id,
                        TopKey::Messages => {
                            let t = map.next_value::<Option<TextBytes>>()?;
                            v.has_messages = t.is_some();
                            v.text_bytes += t.map_or(0, |t| t.0);
                        }
                        TopKey::Text => v.text_bytes += map.next_value::<TextBytes>()?.0,
                        TopKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(v)
            }
        }
        d.deserialize_map(V)
    }
}

/// Top-level keys of a request body that matter here.
enum TopKey {
    Model,
    Stream,
    MaxTokens,
    Metadata,
    Messages,
    /// `system` and `tools`: only their size matters.
    Text,
    Other,
}

impl<'de> Deserialize<'de> for TopKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<TopKey, E> {
                Ok(match k {
                    "model" => TopKey::Model,
                    "stream" => TopKey::Stream,
                    "max_tokens" => TopKey::MaxTokens,
                    "metadata" => TopKey::Metadata,
                    "messages" => TopKey::Messages,
                    "system" | "tools" => TopKey::Text,
                    _ => TopKey::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON value read without insisting on its type: the caller decides
/// whether a wrong type matters.
enum Loose<'a> {
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    U64(u64),
    /// Any other number, an array or an object.
    Other,
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Loose::Bool(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Loose::U64(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(n).map_or(Loose::Other, Loose::U64))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// `metadata`, of which only `user_id` matters.
struct Metadata<'a> {
    user_id: Option<Loose<'a>>,
}

impl<'de> Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut user_id = None;
                while let Some(key) = map.next_key::<TextKey>()? {
                    if matches!(key.role, KeyRole::UserId) {
                        user_id = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Metadata { user_id })
            }
        }
        // Not an object: no user id, and upstream will say what is wrong.
        let loose_or_map = d.deserialize_any(LooseOr(V))?;
        Ok(loose_or_map.unwrap_or(Metadata { user_id: None }))
    }
}

/// Runs the inner visitor on a map and swallows any other value (`None`).
struct LooseOr<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for LooseOr<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// UTF-8 bytes of the text in a JSON subtree: every string value and object
/// key, unescaped. Opaque payloads are left out because they are not text
/// the model reads as tokens: the `data` of an object whose `type` is
/// `base64` (image/document sources) or `redacted_thinking`, and `signature`
/// strings (thinking-block signatures sent back verbatim).
struct TextBytes(u64);

impl<'de> Deserialize<'de> for TextBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = TextBytes;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<TextBytes, E> {
        Ok(TextBytes(s.len() as u64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextBytes, A::Error> {
        let mut total = 0u64;
        while let Some(t) = seq.next_element::<TextBytes>()? {
            total += t.0;
        }
        Ok(TextBytes(total))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextBytes, A::Error> {
        let mut total = 0u64;
        let mut opaque = false;
        // `data` may come before `type`: hold its size until the object ends.
        let mut data = 0u64;
        while let Some(key) = map.next_key::<TextKey>()? {
            total += key.len;
            match key.role {
                KeyRole::Type => {
                    let t = map.next_value::<TypeValue>()?;
                    opaque |= t.opaque;
                    total += t.len;
                }
                KeyRole::Data if opaque => {
                    map.next_value::<IgnoredAny>()?;
                }
                KeyRole::Data => data += map.next_value::<TextBytes>()?.0,
                KeyRole::Signature => {
                    map.next_value::<IgnoredAny>()?;
                }
                KeyRole::UserId | KeyRole::Other => total += map.next_value::<TextBytes>()?.0,
            }
        }
        if !opaque {
            total += data;
        }
        Ok(TextBytes(total))
    }
}

/// Object keys with a meaning here (read without allocating the key).
enum KeyRole {
    Type,
    /// In `metadata`; elsewhere an ordinary key.
    UserId,
    Data,
    Signature,
    Other,
}

/// An object key: its size (keys count as text) and its role.
struct TextKey {
    len: u64,
    role: KeyRole,
}

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TextKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<TextKey, E> {
                let role = match k {
                    "type" => KeyRole::Type,
                    "data" => KeyRole::Data,
                    "signature" => KeyRole::Signature,
                    "user_id" => KeyRole::UserId,
                    _ => KeyRole::Other,
                };
                Ok(TextKey {
                    len: k.len() as u64,
                    role,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// The value of a `type` key: usually a short string, but in a JSON schema
/// (tools) it can be a property named `type` holding anything.
struct TypeValue {
    len: u64,
    opaque: bool,
}

impl<'de> Deserialize<'de> for TypeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TypeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TypeValue, E> {
                Ok(TypeValue {
                    len: s.len() as u64,
                    opaque: matches!(s, "base64" | "redacted_thinking"),
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<TypeValue, E> {
                Ok(TypeValue {
                    len: 0,
                    opaque: false,
                })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TypeValue, E> {
                self.visit_unit()
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TypeValue, E> {
                self.visit_unit()
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TypeValue, E> {
                self.visit_unit()
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TypeValue, E> {
                self.visit_unit()
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TypeValue, A::Error> {
                let t = TextVisitor.visit_seq(seq)?;
                Ok(TypeValue {
                    len: t.0,
                    opaque: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TypeValue, A::Error> {
                let t = TextVisitor.visit_map(map)?;
                Ok(TypeValue {
                    len: t.0,
                    opaque: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::PathBuf;

    /// Request bodies of a capture file, re-serialised (the captures store
    /// them as JSON objects), with the path they came from.
    fn capture_bodies(file: &str) -> Option<Vec<(String, Value)>> {
        // `shared/` sits beside the main checkout; worktrees are one level deeper.
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let candidates = [
            manifest.join("../shared/captures").join(file),
            manifest.join("../../shared/captures").join(file),
            PathBuf::from("/work/shared/captures").join(file),
        ];
        let Some(text) = candidates
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
        else {
            eprintln!("SKIP: capture {file} not found (looked in {candidates:?})");
            return None;
        };
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let rec: Value = serde_json::from_str(line).unwrap();
            if let Some(body) = rec.get("body").filter(|b| b.is_object()) {
                out.push((rec["path"].as_str().unwrap().to_owned(), body.clone()));
            }
        }
        Some(out)
    }

    /// Reference for `TextBytes`, over a `Value` tree (tests only).
    fn reference_text_bytes(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64,
            Value::Array(a) => a.iter().map(reference_text_bytes).sum(),
            Value::Object(o) => {
                let opaque = matches!(
                    o.get("type").and_then(Value::as_str),
                    Some("base64" | "redacted_thinking")
                );
                o.iter()
                    .map(|(k, v)| {
                        let skip = k == "signature" || (k == "data" && opaque);
                        k.len() as u64 + if skip { 0 } else { reference_text_bytes(v) }
                    })
                    .sum()
            }
            _ => 0,
        }
    }

    fn reference_estimate(body: &Value) -> u64 {
        ["system", "messages", "tools"]
            .iter()
            .filter_map(|k| body.get(*k))
            .map(reference_text_bytes)
            .sum::<u64>()
            .div_ceil(4)
    }

    #[test]
    fn claude_code_bodies_are_read() {
        let Some(bodies) = capture_bodies("claude_code_tool_use.jsonl") else {
            return;
        };
        assert_eq!(bodies.len(), 2);
        for (_, body) in &bodies {
            let bytes = serde_json::to_vec(body).unwrap();
            let info = inspect_messages(&bytes).unwrap();
            assert_eq!(info.model, "claude-opus-4-8");
            assert!(info.stream);
            assert_eq!(info.max_tokens, Some(64000));
            let uid = info.user_id.as_deref().unwrap();
            assert!(uid.starts_with("{\"device_id\":\"8bbfdd09"), "{uid}");
            assert!(uid.contains("\"session_id\":\"c2fd1380-2a3e-4f19-af32-c12020fa2a3c\""));
            assert_eq!(info.estimated_input_tokens, reference_estimate(body));
            // 76 KB of mostly text: thousands of tokens, fewer than bytes/4.
            assert!(
                info.estimated_input_tokens > 10_000,
                "{}",
                info.estimated_input_tokens
            );
            assert!(info.estimated_input_tokens <= bytes.len() as u64 / 4);
            // Pretty-printed (other whitespace, same text) gives the same answer.
            let pretty = serde_json::to_vec_pretty(body).unwrap();
            assert_eq!(inspect_messages(&pretty).unwrap(), info);
        }
    }

    #[test]
    fn every_captured_anthropic_body_is_accepted() {
        let files = [
            "claude_code_tool_use.jsonl",
            "claude_code_model_haiku.jsonl",
            "claude_code_midstream_close.jsonl",
            "claude_code_err529_fallback.jsonl",
            "python_anthropic.jsonl",
            "node_anthropic_sdk.jsonl",
        ];
        let mut seen = 0;
        for file in files {
            let Some(bodies) = capture_bodies(file) else {
                continue;
            };
            for (path, body) in bodies {
                let bytes = serde_json::to_vec(&body).unwrap();
                let info = if path.ends_with("/count_tokens") {
                    inspect_count_tokens(&bytes)
                } else {
                    inspect_messages(&bytes)
                }
                .unwrap_or_else(|e| panic!("{file} {path}: {e}"));
                assert_eq!(info.model, body["model"].as_str().unwrap(), "{file}");
                assert_eq!(
                    info.stream,
                    body.get("stream") == Some(&json!(true)),
                    "{file}"
                );
                assert_eq!(
                    info.max_tokens,
                    body.get("max_tokens").and_then(Value::as_u64),
                    "{file}"
                );
                assert_eq!(
                    info.estimated_input_tokens,
                    reference_estimate(&body),
                    "{file}"
                );
                seen += 1;
            }
        }
        if seen > 0 {
            assert!(seen >= 40, "only {seen} bodies");
        }
    }

    #[test]
    fn haiku_capture_and_retry_without_stream() {
        if let Some(bodies) = capture_bodies("claude_code_model_haiku.jsonl") {
            let bytes = serde_json::to_vec(&bodies[0].1).unwrap();
            let info = inspect_messages(&bytes).unwrap();
            assert_eq!(info.model, "claude-haiku-4-5");
            assert_eq!(info.max_tokens, Some(32000));
        }
        // After a failed stream Claude Code re-sends the body without `stream`.
        if let Some(bodies) = capture_bodies("claude_code_midstream_close.jsonl") {
            let streams: Vec<bool> = bodies
                .iter()
                .map(|(_, b)| {
                    inspect_messages(&serde_json::to_vec(b).unwrap())
                        .unwrap()
                        .stream
                })
                .collect();
            assert_eq!(streams, [true, false]);
        }
    }

    #[test]
    fn stream_defaults_to_false_and_minimal_body() {
        let info = inspect_messages(br#"{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}"#).unwrap();
        assert_eq!(
            info,
            RequestInfo {
                model: "claude-sonnet-4-6".into(),
                stream: false,
                max_tokens: Some(64),
                user_id: None,
                estimated_input_tokens: ("role".len()
                    + "user".len()
                    + "content".len()
                    + "Say hi".len())
                .div_ceil(4) as u64,
            }
        );
        assert!(
            !inspect_messages(br#"{"model":"m","messages":[],"stream":false}"#)
                .unwrap()
                .stream
        );
        assert!(
            !inspect_messages(br#"{"model":"m","messages":[],"stream":null}"#)
                .unwrap()
                .stream
        );
        assert!(
            inspect_messages(br#"{"model":"m","messages":[],"stream":true}"#)
                .unwrap()
                .stream
        );
    }

    #[test]
    fn base64_payloads_are_excluded_from_the_estimate() {
        let big = "QUJD".repeat(250_000); // 1 MB of base64
        let with_image = json!({
            "model": "claude-sonnet-4-6",
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"data": big, "media_type": "image/png", "type": "base64"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": big}},
                {"type": "text", "text": "What is in this image?"}
            ]}]
        });
        let without = json!({
            "model": "claude-sonnet-4-6",
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"data": "", "media_type": "image/png", "type": "base64"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": ""}},
                {"type": "text", "text": "What is in this image?"}
            ]}]
        });
        let a = inspect_messages(&serde_json::to_vec(&with_image).unwrap()).unwrap();
        let b = inspect_messages(&serde_json::to_vec(&without).unwrap()).unwrap();
        assert_eq!(a.estimated_input_tokens, b.estimated_input_tokens);
        assert!(a.estimated_input_tokens < 40);
        assert_eq!(a.estimated_input_tokens, reference_estimate(&with_image));

        // A `data` field that is not a base64 source is text like any other.
        let tool = json!({"model": "m", "messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "name": "n", "input": {"data": "x".repeat(400)}}
        ]}]});
        let c = inspect_messages(&serde_json::to_vec(&tool).unwrap()).unwrap();
        assert!(c.estimated_input_tokens >= 100);
        assert_eq!(c.estimated_input_tokens, reference_estimate(&tool));

        // JSON-schema properties named `type`/`data` (tools) are counted, not misread.
        let schema = json!({"model": "m", "messages": [], "tools": [{"name": "t", "input_schema":
            {"type": "object", "properties": {"type": {"type": "string"}, "data": {"type": "string", "description": "payload"}}}}]});
        let s = inspect_messages(&serde_json::to_vec(&schema).unwrap()).unwrap();
        assert_eq!(s.estimated_input_tokens, reference_estimate(&schema));
    }

    #[test]
    fn errors() {
        let malformed = |b: &[u8]| match inspect_messages(b) {
            Err(InspectError::Malformed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(malformed(b"").starts_with("Request body is not valid JSON: EOF"));
        assert!(malformed(b"{\"model\": \"x\",").starts_with("Request body is not valid JSON:"));
        assert!(malformed(b"model=x").starts_with("Request body is not valid JSON:"));
        assert!(malformed(b"{\"model\":\"x\",\"messages\":[]} trailing")
            .contains("trailing characters"));
        assert_eq!(malformed(b" [1, 2]"), "Request body must be a JSON object");
        assert_eq!(
            malformed(b"\"claude\""),
            "Request body must be a JSON object"
        );
        assert_eq!(
            malformed(b"{\"model\": 5, \"messages\": []}"),
            "model: Input should be a valid string"
        );
        assert!(malformed(b"{\"model\":\"x\",\"messages\":[\"\xff\"]}").contains("line 1"));

        assert_eq!(
            inspect_messages(br#"{"messages":[]}"#),
            Err(InspectError::MissingModel)
        );
        assert_eq!(
            inspect_messages(br#"{"model":null,"messages":[]}"#),
            Err(InspectError::MissingModel)
        );
        assert_eq!(
            inspect_messages(br#"{"model":"m"}"#),
            Err(InspectError::MissingMessages)
        );
        assert_eq!(
            inspect_messages(br#"{"model":"m","messages":null}"#),
            Err(InspectError::MissingMessages)
        );
        assert_eq!(
            InspectError::MissingModel.to_string(),
            "model: Field required"
        );

        // count_tokens does not require messages.
        assert_eq!(
            inspect_count_tokens(br#"{"model":"m"}"#).unwrap().model,
            "m"
        );
        assert_eq!(
            inspect_count_tokens(br#"{"messages":[]}"#),
            Err(InspectError::MissingModel)
        );
    }

    #[test]
    fn fields_the_relay_does_not_own_are_read_loosely() {
        let info = inspect_messages(
            br#"{"model":"claude-opus-4-8","messages":[{"role":"system","content":"be brief"}],
                "stream":"yes","max_tokens":-1,"metadata":"not an object","thinking":{"type":"adaptive"},
                "context_management":{"edits":[]},"output_config":{"effort":"high"}}"#,
        )
        .unwrap();
        assert!(!info.stream);
        assert_eq!(info.max_tokens, None);
        assert_eq!(info.user_id, None);
        let info = inspect_messages(
            br#"{"model":"m\u002d1","messages":[],"metadata":{"user_id":{"a":1}}}"#,
        )
        .unwrap();
        assert_eq!(info.model, "m-1");
        assert_eq!(info.user_id, None);
        let info = inspect_messages(
            br#"{"model":"m","messages":[],"metadata":{"other":[1],"user_id":"u-1"}}"#,
        )
        .unwrap();
        assert_eq!(info.user_id.as_deref(), Some("u-1"));
    }

    #[test]
    fn usage_of_a_plain_message_response() {
        let body = br#"{"model":"claude-sonnet-4-5-20250929","id":"msg_01","type":"message","role":"assistant",
            "content":[{"type":"text","text":"Hi!"}],"stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":12,"cache_creation_input_tokens":300,"cache_read_input_tokens":40,
            "cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},
            "output_tokens":6,"service_tier":"standard"}}"#;
        let (model, usage) = message_usage(body).unwrap();
        assert_eq!(model, "claude-sonnet-4-5-20250929");
        assert_eq!(
            usage,
            TokenUsage {
                input: 12,
                output: 6,
                cache_creation_5m: 100,
                cache_creation_1h: 200,
                cache_read: 40
            }
        );
        let (_, u) = message_usage(br#"{"model":"m","usage":{"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":50}}"#).unwrap();
        assert_eq!((u.cache_creation_5m, u.cache_creation_1h), (50, 0));
        assert_eq!(
            message_usage(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            None
        );
        assert_eq!(message_usage(b"not json"), None);
    }
}
