//! Incremental splitter of an SSE byte stream into (event name, data) pairs,
//! for the stream converter. Pure; keeps only a line split across chunks and
//! the data of the event being read, never the stream.
//!
//! WHATWG SSE rules: `\n`, `\r\n` or `\r` line ends (a `\r\n` split across
//! chunks is one end), `:` comments, several `data:` lines joined by `\n`,
//! one optional space after the colon, an event dispatched by a blank line
//! and only if it had data. An event longer than [`MAX_EVENT`] is dropped
//! whole rather than buffered without bound.

/// Longest line or event data kept. Anthropic's events are small; a server
/// tool's result block can reach a few hundred KB, so leave room.
const MAX_EVENT: usize = 8 * 1024 * 1024;

/// Buffers above this capacity are released after use, so one big event
/// does not pin memory for the rest of a long stream.
const KEEP_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(super) struct SseReader {
    /// A line split across chunks (only then is anything copied here).
    line: Vec<u8>,
    /// The current line outgrew `MAX_EVENT`: drop bytes up to its end.
    discarding: bool,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to it.
    skip_lf: bool,
    name: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// Part of the current event was dropped: do not dispatch it.
    broken: bool,
}

impl SseReader {
    /// Feeds the next chunk; `on_event(name, data)` runs for each complete event.
    pub(super) fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8], &[u8])) {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.keep_partial(rest);
                return;
            };
            let piece = &rest[..end];
            if self.discarding {
                self.discarding = false;
            } else if self.line.is_empty() {
                self.line_complete(piece, &mut on_event);
            } else if self.line.len() + piece.len() > MAX_EVENT {
                self.drop_line();
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                self.line_complete(&line, &mut on_event);
                line.clear();
                if line.capacity() <= KEEP_CAPACITY {
                    self.line = line;
                }
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

    fn keep_partial(&mut self, tail: &[u8]) {
        if self.discarding {
            return;
        }
        if self.line.len() + tail.len() > MAX_EVENT {
            self.drop_line();
            self.discarding = true;
        } else {
            self.line.extend_from_slice(tail);
        }
    }

    fn drop_line(&mut self) {
        self.line = Vec::new();
        self.broken = true;
    }

    fn line_complete(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8], &[u8])) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            b"data" => {
                if !self.broken {
                    let sep = usize::from(self.has_data);
                    if self.data.len() + sep + value.len() > MAX_EVENT {
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
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&[u8], &[u8])) {
        if self.has_data && !self.broken {
            on_event(&self.name, &self.data);
        }
        self.name.clear();
        self.data.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
        self.has_data = false;
        self.broken = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut r = SseReader::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, |n, d| {
                out.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(d).into_owned(),
                ))
            });
        }
        out
    }

    #[test]
    fn line_ends_comments_and_multiline_data() {
        let want = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "x\ny".to_owned()),
            (String::new(), "z".to_owned()),
        ];
        for body in [
            ": c\nevent: a\ndata: 1\n\nevent:b\ndata:x\ndata: y\nid: 3\n\nevent: e\n\ndata: z\n\n",
            ": c\r\nevent: a\r\ndata: 1\r\n\r\nevent:b\r\ndata:x\r\ndata: y\r\nid: 3\r\n\r\nevent: e\r\n\r\ndata: z\r\n\r\n",
            ": c\revent: a\rdata: 1\r\revent:b\rdata:x\rdata: y\rid: 3\r\revent: e\r\rdata: z\r\r",
        ] {
            let b = body.as_bytes();
            assert_eq!(events(&[b]), want, "{body:?}");
            for i in 0..=b.len() {
                assert_eq!(events(&[&b[..i], &b[i..]]), want, "split at {i} of {body:?}");
            }
        }
    }

    #[test]
    fn oversized_event_is_dropped_and_reading_resumes() {
        let mut big = b"event: x\ndata: ".to_vec();
        big.extend(std::iter::repeat_n(b'y', MAX_EVENT + 1));
        big.extend_from_slice(b"\n\nevent: ok\ndata: 1\n\n");
        assert_eq!(events(&[&big]), vec![("ok".to_owned(), "1".to_owned())]);
        // The same, arriving in small pieces without a line end.
        let pieces: Vec<&[u8]> = big.chunks(64 * 1024).collect();
        assert_eq!(events(&pieces), vec![("ok".to_owned(), "1".to_owned())]);
    }
}
