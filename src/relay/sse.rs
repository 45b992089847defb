//! Incremental SSE parser that watches an Anthropic event stream on the side
//! for usage. Pure: no I/O, never re-serialises, never holds the whole stream.
//!
//! It runs on every chunk of every stream, so it stays cheap: lines are cut
//! with `memchr` straight out of the chunk (only a line split across chunks is
//! copied), only `message_start`, `message_delta` and `error` data is fully
//! deserialised (borrowed, unknown fields skipped), `content_block_delta`
//! data is read just far enough to count its text, and `ping` data is never
//! looked at. Events follow the WHATWG SSE rules: `\n`, `\r\n` or `\r` line
//! ends, `:` comments, several `data:` lines joined by `\n`, and an event is
//! dispatched by a blank line (one that never ends is never counted, as a
//! client would never see it either).
//!
//! Also owns the wire shape of Anthropic's `usage` object, shared with
//! [`super::inspect::message_usage`] so that streams and plain responses split
//! cache writes the same way.

use crate::domain::TokenUsage;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Longest line (and longest event data) kept. Anthropic's events are a few
/// hundred bytes; anything longer is garbage we refuse to buffer.
const MAX_LINE: usize = 1024 * 1024;

/// Data buffers above this capacity are released after their event, so one
/// big event does not pin memory for the rest of a long stream.
const KEEP_CAPACITY: usize = 64 * 1024;

/// An `event: error` seen in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub error_type: String,
    pub message: String,
}

/// The event name of the event being read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// No `event:` line (yet). Clients skip such events; so do we.
    #[default]
    Unnamed,
    MessageStart,
    MessageDelta,
    MessageStop,
    ContentBlockDelta,
    /// `content_block_start`, `content_block_stop` and any future `content_block_*`.
    ContentBlockOther,
    Error,
    /// `ping` and every other name: data not needed.
    Ignored,
}

impl Kind {
    fn from_name(name: &[u8]) -> Kind {
        match name {
            b"message_start" => Kind::MessageStart,
            b"message_delta" => Kind::MessageDelta,
            b"message_stop" => Kind::MessageStop,
            b"content_block_delta" => Kind::ContentBlockDelta,
            b"error" => Kind::Error,
            n if n.starts_with(b"content_block_") => Kind::ContentBlockOther,
            _ => Kind::Ignored,
        }
    }

    /// Whether the event's data must be kept until dispatch. Data seen before
    /// any `event:` line is kept too, since the name may still follow.
    fn wants_data(self) -> bool {
        matches!(
            self,
            Kind::Unnamed
                | Kind::MessageStart
                | Kind::MessageDelta
                | Kind::ContentBlockDelta
                | Kind::Error
        )
    }
}

#[derive(Debug, Default)]
pub struct SseUsageParser {
    state: Box<State>,
}

/// The parser's state, boxed so the parser is one pointer to move around
/// (it lives in stream wrappers and futures).
#[derive(Debug, Default)]
struct State {
    /// A line split across chunks (only then is anything copied here).
    line: Vec<u8>,
    /// The current line outgrew `MAX_LINE`: drop bytes up to its end.
    discarding: bool,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to it.
    skip_lf: bool,

    kind: Kind,
    /// Data lines of the current event, joined by `\n` (only if `kind.wants_data()`).
    data: Vec<u8>,
    has_data: bool,
    /// Part of the current event was dropped (too long): do not parse its data.
    broken: bool,

    usage: TokenUsage,
    /// Last `cache_creation.ephemeral_1h_input_tokens` seen, for events that
    /// repeat the cache-creation total without the breakdown.
    cache_1h: u64,
    model: Option<String>,
    saw_message_start: bool,
    saw_content: bool,
    saw_output_usage: bool,
    saw_message_stop: bool,
    error: Option<StreamError>,
    output_chars: u64,
}

impl SseUsageParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk exactly as received (events may be split anywhere).
    pub fn feed(&mut self, chunk: &[u8]) {
        self.state.feed(chunk);
    }

    /// Usage so far: input/cache from `message_start`, output from the last `message_delta`.
    ///
    /// Before any `message_delta`, `output` is the (small) count `message_start`
    /// reported; [`Self::saw_output_usage`] tells the two apart. A
    /// `message_delta` that repeats input or cache counts updates them.
    pub fn usage(&self) -> TokenUsage {
        self.state.usage
    }

    /// `message.model` from `message_start`.
    pub fn model(&self) -> Option<&str> {
        self.state.model.as_deref()
    }

    pub fn saw_message_start(&self) -> bool {
        self.state.saw_message_start
    }

    /// Any `content_block_*` event seen (content reached the client).
    pub fn saw_content(&self) -> bool {
        self.state.saw_content
    }

    /// A `message_delta` carrying `usage.output_tokens` was seen.
    pub fn saw_output_usage(&self) -> bool {
        self.state.saw_output_usage
    }

    pub fn saw_message_stop(&self) -> bool {
        self.state.saw_message_stop
    }

    pub fn error(&self) -> Option<&StreamError> {
        self.state.error.as_ref()
    }

    /// Characters of text/thinking/partial_json deltas seen (for estimates).
    pub fn output_chars(&self) -> u64 {
        self.state.output_chars
    }
}

impl State {
    fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.buffer_partial(rest);
                return;
            };
            let piece = &rest[..end];
            if self.discarding {
                self.discarding = false;
            } else if self.line.is_empty() {
                self.line_complete(piece);
            } else if self.line.len() + piece.len() > MAX_LINE {
                self.drop_line();
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                self.line_complete(&line);
                line.clear();
                self.line = line;
            }
            let was_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
    }

    /// Keeps the unterminated tail of a chunk, within `MAX_LINE`.
    fn buffer_partial(&mut self, tail: &[u8]) {
        if self.discarding {
            return;
        }
        if self.line.len() + tail.len() > MAX_LINE {
            self.drop_line();
            self.discarding = true;
        } else {
            self.line.extend_from_slice(tail);
        }
    }

    /// Forgets an over-long line and releases its memory. The event it
    /// belonged to can no longer be trusted.
    fn drop_line(&mut self) {
        self.line = Vec::new();
        self.broken = true;
    }

    fn line_complete(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.kind = Kind::from_name(value),
            b"data" => {
                if self.kind.wants_data() && !self.broken {
                    let sep = usize::from(self.has_data);
                    if self.data.len() + sep + value.len() > MAX_LINE {
                        self.broken = true;
                        self.data = Vec::new();
                    } else {
                        if self.has_data {
                            self.data.push(b'\n');
                        }
                        self.data.extend_from_slice(value);
                    }
                }
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
    }

    /// End of an event (blank line).
    fn dispatch(&mut self) {
        // Per the SSE rules an event without any data line is not dispatched.
        if self.has_data {
            let data = std::mem::take(&mut self.data);
            let parse = !self.broken;
            match self.kind {
                Kind::MessageStart => {
                    self.saw_message_start = true;
                    if parse {
                        self.on_message_start(&data);
                    }
                }
                Kind::MessageDelta => {
                    if parse {
                        self.on_message_delta(&data);
                    }
                }
                Kind::MessageStop => self.saw_message_stop = true,
                Kind::ContentBlockDelta => {
                    self.saw_content = true;
                    if parse {
                        if let Ok(d) = serde_json::from_slice::<BlockDelta>(&data) {
                            self.output_chars += d.delta.chars;
                        }
                    }
                }
                Kind::ContentBlockOther => self.saw_content = true,
                Kind::Error => self.on_error(if parse { &data } else { b"" }),
                Kind::Unnamed | Kind::Ignored => {}
            }
            self.data = data;
        }
        self.kind = Kind::Unnamed;
        self.has_data = false;
        self.broken = false;
        self.data.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
    }

    fn on_message_start(&mut self, data: &[u8]) {
        let Ok(ev) = serde_json::from_slice::<MessageStart>(data) else {
            return;
        };
        let Some(msg) = ev.message else { return };
        if let Some(model) = msg.model {
            self.model = Some(model.into_owned());
        }
        if let Some(u) = msg.usage {
            u.apply(&mut self.usage, &mut self.cache_1h);
        }
    }

    fn on_message_delta(&mut self, data: &[u8]) {
        let Ok(ev) = serde_json::from_slice::<MessageDelta>(data) else {
            return;
        };
        if let Some(u) = ev.usage {
            if u.output_tokens.is_some() {
                self.saw_output_usage = true;
            }
            u.apply(&mut self.usage, &mut self.cache_1h);
        }
    }

    fn on_error(&mut self, data: &[u8]) {
        let parsed = serde_json::from_slice::<ErrorEvent>(data)
            .ok()
            .and_then(|e| e.error);
        self.error = Some(match parsed {
            Some(e) => StreamError {
                error_type: e
                    .error_type
                    .map_or_else(|| "api_error".to_owned(), Cow::into_owned),
                message: e.message.map(Cow::into_owned).unwrap_or_default(),
            },
            None => StreamError {
                error_type: "api_error".to_owned(),
                message: "malformed error event".to_owned(),
            },
        });
    }
}

/// Anthropic's `usage` object (of `message_start.message`, `message_delta`
/// and a non-streaming Message). Every field may be absent or null.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Lays the counts present here over `usage`; absent ones keep their value.
    ///
    /// Cache writes: `cache_creation_input_tokens` is the billed total. The 1h
    /// part comes from the `cache_creation` breakdown (or, when this object
    /// has none, the last breakdown seen, in `cache_1h`), capped at the total;
    /// the rest is 5m. Without any breakdown everything is 5m.
    pub(crate) fn apply(&self, usage: &mut TokenUsage, cache_1h: &mut u64) {
        if let Some(v) = self.input_tokens {
            usage.input = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output = v;
        }
        if let Some(v) = self.cache_read_input_tokens {
            usage.cache_read = v;
        }
        let (b5m, b1h) = match &self.cache_creation {
            Some(c) => (c.ephemeral_5m_input_tokens, c.ephemeral_1h_input_tokens),
            None => (None, None),
        };
        if let Some(h) = b1h {
            *cache_1h = h;
        }
        match self.cache_creation_input_tokens {
            Some(total) => {
                let h = (*cache_1h).min(total);
                usage.cache_creation_1h = h;
                usage.cache_creation_5m = total - h;
            }
            None if b5m.is_some() || b1h.is_some() => {
                usage.cache_creation_5m = b5m.unwrap_or(0);
                usage.cache_creation_1h = b1h.unwrap_or(0);
            }
            None => {}
        }
    }
}

#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(borrow)]
    message: Option<StartMessage<'a>>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct MessageDelta {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ErrorEvent<'a> {
    #[serde(borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type", borrow)]
    error_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockDelta {
    delta: DeltaChars,
}

/// Characters of a delta's `text`, `thinking` or `partial_json`, counted while
/// parsing so no string is kept (serde_json unescapes into its own scratch
/// buffer only when a string has escapes).
#[derive(Default)]
struct DeltaChars {
    chars: u64,
}

impl<'de> Deserialize<'de> for DeltaChars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DeltaChars;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a content block delta")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<DeltaChars, A::Error> {
                let mut out = DeltaChars::default();
                while let Some(key) = map.next_key::<DeltaKey>()? {
                    if key.counted {
                        out.chars += map.next_value::<CharCount>()?.0;
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A delta key; `counted` for the three that carry generated text.
struct DeltaKey {
    counted: bool,
}

impl<'de> Deserialize<'de> for DeltaKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DeltaKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<DeltaKey, E> {
                Ok(DeltaKey {
                    counted: matches!(k, "text" | "thinking" | "partial_json"),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// The number of `char`s of a string value (0 for any other JSON value).
struct CharCount(u64);

impl<'de> Deserialize<'de> for CharCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CharCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CharCount, E> {
                Ok(CharCount(s.chars().count() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<CharCount, E> {
                Ok(CharCount(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<CharCount, E> {
                Ok(CharCount(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<CharCount, E> {
                Ok(CharCount(0))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<CharCount, E> {
                Ok(CharCount(0))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<CharCount, E> {
                Ok(CharCount(0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<CharCount, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(CharCount(0))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<CharCount, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(CharCount(0))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real streamed answer (thinking, text, a tool call), as Anthropic sends it.
    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":2048,\"cache_read_input_tokens\":10240,\"cache_creation\":{\"ephemeral_5m_input_tokens\":2048,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":3,\"service_tier\":\"standard\"}}}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n",
        "\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants the weather.\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxWf\"}}\n",
        "\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check \\\"Paris\\\"\\n\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"– météo ☀\"}}\n",
        "\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"Paris\\\"}\"}}\n",
        "\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n",
        "\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n",
        "\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n",
        "\n",
    );

    /// "The user wants the weather." + "Let me check \"Paris\"\n" + "– météo ☀" + "" + "{\"location\": \"Paris\"}"
    const STREAM_CHARS: u64 = 27 + 21 + 9 + 21;

    /// Everything observable, for comparing two parses.
    fn summary(p: &SseUsageParser) -> String {
        format!(
            "{:?} {:?} start={} content={} out={} stop={} err={:?} chars={}",
            p.usage(),
            p.model(),
            p.saw_message_start(),
            p.saw_content(),
            p.saw_output_usage(),
            p.saw_message_stop(),
            p.error(),
            p.output_chars()
        )
    }

    fn parse_whole(s: &[u8]) -> SseUsageParser {
        let mut p = SseUsageParser::new();
        p.feed(s);
        p
    }

    #[test]
    fn real_stream_fed_whole() {
        let p = parse_whole(STREAM.as_bytes());
        assert_eq!(
            p.usage(),
            TokenUsage {
                input: 472,
                output: 89,
                cache_creation_5m: 2048,
                cache_creation_1h: 0,
                cache_read: 10240
            }
        );
        assert_eq!(p.model(), Some("claude-sonnet-4-5-20250929"));
        assert!(
            p.saw_message_start()
                && p.saw_content()
                && p.saw_output_usage()
                && p.saw_message_stop()
        );
        assert_eq!(p.error(), None);
        assert_eq!(p.output_chars(), STREAM_CHARS);
    }

    #[test]
    fn real_stream_fed_byte_by_byte() {
        let whole = summary(&parse_whole(STREAM.as_bytes()));
        let mut p = SseUsageParser::new();
        for b in STREAM.as_bytes() {
            p.feed(std::slice::from_ref(b));
        }
        assert_eq!(summary(&p), whole);
    }

    #[test]
    fn real_stream_split_at_every_position() {
        for body in [
            STREAM.to_owned(),
            STREAM.replace('\n', "\r\n"),
            STREAM.replace('\n', "\r"),
        ] {
            let bytes = body.as_bytes();
            let whole = summary(&parse_whole(bytes));
            assert!(whole.contains("output: 89"), "{whole}");
            for i in 0..=bytes.len() {
                let mut p = SseUsageParser::new();
                p.feed(&bytes[..i]);
                p.feed(&[]);
                p.feed(&bytes[i..]);
                assert_eq!(summary(&p), whole, "split at {i}");
            }
        }
    }

    #[test]
    fn crlf_stream_matches_lf_stream() {
        let lf = summary(&parse_whole(STREAM.as_bytes()));
        let crlf = summary(&parse_whole(STREAM.replace('\n', "\r\n").as_bytes()));
        assert_eq!(crlf, lf);
        // A `\r\n` split between two chunks is one line end, not two.
        let mut p = SseUsageParser::new();
        p.feed(b"event: message_stop\r");
        p.feed(b"\ndata: {}\r");
        p.feed(b"\n\r");
        p.feed(b"\n");
        assert!(p.saw_message_stop());
    }

    #[test]
    fn cache_creation_is_split_5m_1h() {
        let p = parse_whole(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-8\",\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":7,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000},\"output_tokens\":1}}}\n\n",
        );
        let u = p.usage();
        assert_eq!(
            (
                u.cache_creation_5m,
                u.cache_creation_1h,
                u.cache_read,
                u.input
            ),
            (1000, 2000, 7, 5)
        );
        assert!(!p.saw_output_usage());

        // No breakdown: all creation is 5m.
        let p = parse_whole(
            b"event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":null}}}\n\n",
        );
        assert_eq!(
            (p.usage().cache_creation_5m, p.usage().cache_creation_1h),
            (300, 0)
        );

        // A message_delta repeating counts without the breakdown keeps the 1h share.
        let mut p = SseUsageParser::new();
        p.feed(b"event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":3000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000}}}}\n\n");
        p.feed(b"event: message_delta\ndata: {\"usage\":{\"input_tokens\":6,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":9,\"output_tokens\":40}}\n\n");
        let u = p.usage();
        assert_eq!(
            u,
            TokenUsage {
                input: 6,
                output: 40,
                cache_creation_5m: 1000,
                cache_creation_1h: 2000,
                cache_read: 9
            }
        );
    }

    #[test]
    fn output_tokens_are_cumulative_last_wins() {
        let mut p = SseUsageParser::new();
        p.feed(b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":10}}\n\n");
        p.feed(b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":25}}\n\n");
        assert_eq!(p.usage().output, 25);
        assert!(p.saw_output_usage());
    }

    #[test]
    fn error_event_is_captured() {
        let mut p = SseUsageParser::new();
        p.feed(
            STREAM
                .split("event: content_block_delta")
                .next()
                .unwrap()
                .as_bytes(),
        );
        p.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"details\":null,\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(
            p.error(),
            Some(&StreamError {
                error_type: "overloaded_error".into(),
                message: "Overloaded".into()
            })
        );
        assert!(p.saw_message_start() && !p.saw_message_stop());

        let p = parse_whole(b"event: error\ndata: not json\n\n");
        assert_eq!(p.error().unwrap().error_type, "api_error");
    }

    #[test]
    fn cut_off_stream_keeps_start_usage_and_counts_text() {
        // Upstream dropped mid-stream: no message_delta, the last event unfinished.
        let cut = STREAM
            .find("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}")
            .unwrap();
        let p = parse_whole(&STREAM.as_bytes()[..cut + 30]);
        let u = p.usage();
        assert_eq!(
            (u.input, u.cache_creation_5m, u.cache_read),
            (472, 2048, 10240)
        );
        assert_eq!(u.output, 3, "message_start's own output count");
        assert!(p.saw_message_start() && p.saw_content());
        assert!(!p.saw_output_usage() && !p.saw_message_stop());
        assert_eq!(p.output_chars(), 27 + 21 + 9);
        assert_eq!(p.model(), Some("claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn multiple_data_lines_comments_and_unnamed_events() {
        let mut p = SseUsageParser::new();
        p.feed(b": keep-alive comment\n\n");
        p.feed(b"event: message_start\ndata: {\"message\":\ndata: {\"model\":\"claude-haiku-4-5\",\ndata:\"usage\":{\"input_tokens\":12}}}\nid: 1\nretry: 5\n\n");
        assert_eq!(p.model(), Some("claude-haiku-4-5"));
        assert_eq!(p.usage().input, 12);
        // Without an `event:` line clients skip the event; so do we.
        p.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":99}}\n\n");
        assert!(!p.saw_output_usage());
        // An event line without data is not dispatched.
        p.feed(b"event: message_stop\n\n");
        assert!(!p.saw_message_stop());
        p.feed(b"event:message_stop\ndata:\n\n");
        assert!(p.saw_message_stop());
    }

    #[test]
    fn huge_junk_line_is_dropped_without_growing_memory() {
        let mut p = SseUsageParser::new();
        p.feed(
            STREAM
                .split("event: content_block_start")
                .next()
                .unwrap()
                .as_bytes(),
        );
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..40 {
            // 2.5 MB without a line end
            p.feed(&junk);
            assert!(
                p.state.line.capacity() <= MAX_LINE + junk.len(),
                "{}",
                p.state.line.capacity()
            );
        }
        assert!(
            p.state.line.capacity() < junk.len(),
            "buffer released once over the cap"
        );
        p.feed(b"\n\n");
        p.feed(b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":7}}\n\n");
        assert_eq!(p.usage().output, 7, "parsing resumes after the junk line");
        assert_eq!(p.usage().input, 472);

        // A single chunk carrying an over-long data line: data is capped too.
        let mut p = SseUsageParser::new();
        let mut big = b"event: message_start\ndata: ".to_vec();
        big.extend(std::iter::repeat_n(b'y', MAX_LINE + 10));
        big.extend_from_slice(b"\n\n");
        p.feed(&big);
        assert!(p.state.data.capacity() <= KEEP_CAPACITY);
        assert!(p.saw_message_start());
    }
}
