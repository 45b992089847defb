//! Bedrock's `InvokeModelWithResponseStream` answer → Anthropic SSE.
//!
//! Bedrock frames each Anthropic stream event in the AWS event-stream
//! binary format (prelude, CRCs, typed headers; decoded here by AWS's
//! `aws-smithy-eventstream`): a `chunk` event's payload is
//! `{"bytes":"<base64 of the event JSON>"}`. Each becomes
//! `event: <type>\ndata: <json>\n\n`, byte for byte the JSON Bedrock carried,
//! so the client sees what the Anthropic API sends and the relay's SSE tap
//! reads usage as usual. Bedrock's own `amazon-bedrock-invocationMetrics`
//! (added to `message_stop`) is dropped. Exception frames become one
//! Anthropic `error` event, after which the stream ends.

use super::errors;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::io;

/// Bedrock's extra field on `message_stop`; not part of the Anthropic event.
const METRICS_FIELD: &str = "amazon-bedrock-invocationMetrics";

/// Incremental converter: feed bytes as they arrive, get SSE bytes back.
#[derive(Default)]
pub struct Converter {
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
    /// An exception frame was converted: nothing more may follow.
    finished: bool,
}

impl Converter {
    pub fn new() -> Converter {
        Converter::default()
    }

    /// Whether an exception ended the stream.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Converts every complete frame in `chunk` (plus what was buffered).
    /// A corrupt frame (bad CRC, bad length) is an error: the stream cannot
    /// be resynchronised.
    pub fn feed(&mut self, chunk: &[u8]) -> io::Result<Bytes> {
        self.buffer.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while !self.finished {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => self.convert(&message, &mut out)?,
                Ok(DecodedFrame::Incomplete) => break,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed Bedrock event-stream frame",
                    ))
                }
            }
        }
        Ok(out.freeze())
    }

    fn convert(&mut self, message: &Message, out: &mut BytesMut) -> io::Result<()> {
        match header(message, ":message-type") {
            Some("event") => {
                if header(message, ":event-type") == Some("chunk") {
                    chunk_event(message.payload(), out)?;
                }
                // Other event types (none today) carry nothing for the client.
                Ok(())
            }
            Some("exception") => {
                let kind = header(message, ":exception-type").unwrap_or("internalServerException");
                let text = serde_json::from_slice::<Value>(message.payload())
                    .ok()
                    .and_then(|v| errors::message_of(&v))
                    .unwrap_or_else(|| "Bedrock ended the stream with an error".to_owned());
                self.error_event(kind, &text, out);
                Ok(())
            }
            Some("error") => {
                let kind = header(message, ":error-code").unwrap_or("internalServerException");
                let text = header(message, ":error-message")
                    .unwrap_or("Bedrock ended the stream with an error")
                    .to_owned();
                self.error_event(kind, &text, out);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "Bedrock event-stream frame without a message type",
            )),
        }
    }

    fn error_event(&mut self, kind: &str, text: &str, out: &mut BytesMut) {
        let error_type = errors::stream_error_type(kind);
        let data = serde_json::json!({
            "type": "error",
            "error": {"type": error_type, "message": text},
        });
        write_event(out, "error", data.to_string().as_bytes());
        self.finished = true;
    }
}

/// `{"bytes":"<base64>"}` → one SSE event.
fn chunk_event(payload: &[u8], out: &mut BytesMut) -> io::Result<()> {
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        bytes: std::borrow::Cow<'a, str>,
    }
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("Bedrock chunk {what}"));
    let chunk: Chunk<'_> = serde_json::from_slice(payload).map_err(|_| bad("is not JSON"))?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(chunk.bytes.as_bytes())
        .map_err(|_| bad("is not base64"))?;
    let mut event: Value = serde_json::from_slice(&json).map_err(|_| bad("holds no JSON event"))?;
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("event has no type"))?
        .to_owned();
    // Only `message_stop` carries Bedrock's metrics; every other event is
    // forwarded as the exact bytes Bedrock sent.
    match event.as_object_mut().and_then(|o| o.remove(METRICS_FIELD)) {
        Some(_) => write_event(out, &kind, event.to_string().as_bytes()),
        None => write_event(out, &kind, &json),
    }
    Ok(())
}

fn write_event(out: &mut BytesMut, kind: &str, data: &[u8]) {
    out.reserve(kind.len() + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Wraps Bedrock's response body into an SSE byte stream.
pub fn to_sse<S>(upstream: S) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
{
    async_stream::stream! {
        let mut converter = Converter::new();
        let mut upstream = Box::pin(upstream);
        while let Some(chunk) = upstream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(_) => {
                    yield Err(io::Error::new(io::ErrorKind::ConnectionAborted, "Bedrock stream broke"));
                    return;
                }
            };
            match converter.feed(&chunk) {
                Ok(sse) => {
                    if !sse.is_empty() {
                        yield Ok(sse);
                    }
                }
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
            if converter.finished() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;
    use serde_json::json;

    fn frame(headers: Vec<Header>, payload: &[u8]) -> Vec<u8> {
        let message = Message::new_from_parts(headers, Bytes::copy_from_slice(payload));
        let mut buf = Vec::new();
        write_message_to(&message, &mut buf).unwrap();
        buf
    }

    fn chunk(event: &Value) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        frame(
            vec![
                Header::new(":event-type", HeaderValue::String("chunk".into())),
                Header::new(
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ),
                Header::new(":message-type", HeaderValue::String("event".into())),
            ],
            json!({"bytes": b64, "p": "abcdefgh"})
                .to_string()
                .as_bytes(),
        )
    }

    #[test]
    fn chunks_become_sse_even_when_split_byte_by_byte() {
        let start = json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "usage": {"input_tokens": 7, "output_tokens": 1}}});
        let stop = json!({"type": "message_stop", METRICS_FIELD: {"inputTokenCount": 7, "outputTokenCount": 3}});
        let mut wire = chunk(&start);
        wire.extend(chunk(&stop));
        let mut converter = Converter::new();
        let mut out = Vec::new();
        for byte in &wire {
            out.extend_from_slice(&converter.feed(std::slice::from_ref(byte)).unwrap());
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!("event: message_start\ndata: {start}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n")
        );
        assert!(!converter.finished());
    }

    #[test]
    fn exception_becomes_one_error_event_and_ends() {
        let mut wire = frame(
            vec![
                Header::new(
                    ":exception-type",
                    HeaderValue::String("throttlingException".into()),
                ),
                Header::new(
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ),
                Header::new(":message-type", HeaderValue::String("exception".into())),
            ],
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        wire.extend(chunk(&json!({"type": "ping"})));
        let mut converter = Converter::new();
        let out = converter.feed(&wire).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("event: error\ndata: "), "{text}");
        let data: Value = serde_json::from_str(
            text.trim_end()
                .strip_prefix("event: error\ndata: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["error"]["type"], "rate_limit_error");
        assert_eq!(
            data["error"]["message"],
            "Too many requests, please wait before trying again."
        );
        assert!(converter.finished());
        assert!(!text.contains("ping"));
    }

    #[test]
    fn corrupt_frame_is_an_error() {
        let mut wire = chunk(&json!({"type": "ping"}));
        let last = wire.len() - 1;
        wire[last] ^= 0xff; // message CRC
        assert!(Converter::new().feed(&wire).is_err());
    }
}
