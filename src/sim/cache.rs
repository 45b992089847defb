//! Input-token estimation and per-credential prompt caching.
//!
//! The prompt is cut into blocks in the order the real cache sees it (tools, system,
//! messages); each block gets a chained SHA-256 over everything before it, so a block's hash
//! identifies the whole prefix ending there. Blocks carrying `cache_control` are breakpoints:
//! their prefixes are written to the credential's cache (5 minutes, or 1 hour for
//! `"ttl": "1h"`); a later request reads the longest cached prefix and writes the rest up to
//! its last breakpoint. Tokens are serialised bytes / 4, plus a small fixed overhead, so
//! `count_tokens` equals input + cache creation + cache read of the same prompt.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Fixed per-request tokens, like the real API's framing, so input tokens are never zero.
const OVERHEAD_TOKENS: u64 = 3;
const FIVE_MINUTES: Duration = Duration::from_secs(5 * 60);
const ONE_HOUR: Duration = Duration::from_secs(3600);

fn tokens(bytes: u64) -> u64 {
    bytes / 4
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ttl {
    FiveMinutes,
    OneHour,
}

impl Ttl {
    fn of(cache_control: &Value) -> Ttl {
        match cache_control.get("ttl").and_then(Value::as_str) {
            Some("1h") => Ttl::OneHour,
            _ => Ttl::FiveMinutes,
        }
    }

    fn duration(self) -> Duration {
        match self {
            Ttl::FiveMinutes => FIVE_MINUTES,
            Ttl::OneHour => ONE_HOUR,
        }
    }
}

struct Block {
    /// Serialised bytes of this block and all before it.
    cum_bytes: u64,
    /// Hash of the prefix ending with this block.
    hash: [u8; 32],
    /// `Some` for a `cache_control` breakpoint.
    breakpoint: Option<Ttl>,
}

/// Hashes and counts what is written to it; cannot fail.
struct HashCount<'a> {
    hasher: &'a mut Sha256,
    bytes: u64,
}

impl io::Write for HashCount<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The prompt-bearing parts of a request (tools, system, messages) as cacheable blocks.
pub(crate) struct Prompt {
    blocks: Vec<Block>,
    total_bytes: u64,
}

impl Prompt {
    pub(crate) fn parse(body: &Value) -> Prompt {
        let mut p = Prompt {
            blocks: Vec::new(),
            total_bytes: 0,
        };
        if let Some(tools) = body.get("tools").and_then(Value::as_array) {
            for tool in tools {
                p.push("tool", tool);
            }
        }
        match body.get("system") {
            Some(Value::Array(blocks)) => blocks.iter().for_each(|b| p.push("system", b)),
            Some(other) if !other.is_null() => p.push("system", other),
            _ => {}
        }
        if let Some(messages) = body.get("messages").and_then(Value::as_array) {
            for message in messages {
                let role = message.get("role").and_then(Value::as_str).unwrap_or("");
                match message.get("content") {
                    Some(Value::Array(blocks)) => blocks.iter().for_each(|b| p.push(role, b)),
                    Some(other) => p.push(role, other),
                    None => {}
                }
            }
        }
        // Top-level `cache_control` (automatic caching) marks the last block.
        if let Some(cc) = body.get("cache_control").filter(|v| v.is_object()) {
            if let Some(last) = p.blocks.last_mut() {
                last.breakpoint.get_or_insert(Ttl::of(cc));
            }
        }
        p
    }

    fn push(&mut self, tag: &str, value: &Value) {
        let mut hasher = Sha256::new();
        if let Some(prev) = self.blocks.last() {
            hasher.update(prev.hash);
        }
        hasher.update(tag.as_bytes());
        hasher.update([0u8]);
        let mut w = HashCount {
            hasher: &mut hasher,
            bytes: 0,
        };
        // The marker itself is not content: moving a breakpoint must not change the prefix.
        let breakpoint = match value {
            Value::Object(map) => {
                write_without_cache_control(&mut w, map);
                map.get("cache_control").map(Ttl::of)
            }
            other => {
                // Writing into HashCount cannot fail.
                let _ = serde_json::to_writer(&mut w, other);
                None
            }
        };
        self.total_bytes += w.bytes;
        self.blocks.push(Block {
            cum_bytes: self.total_bytes,
            hash: hasher.finalize().into(),
            breakpoint,
        });
    }

    /// The input-token estimate of the whole prompt (what `count_tokens` answers).
    pub(crate) fn total_tokens(&self) -> u64 {
        tokens(self.total_bytes) + OVERHEAD_TOKENS
    }
}

fn write_without_cache_control(w: &mut HashCount<'_>, map: &Map<String, Value>) {
    use io::Write;
    // Writing into HashCount cannot fail, so the results are ignored.
    let _ = w.write_all(b"{");
    let mut first = true;
    for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "cache_control") {
        if !first {
            let _ = w.write_all(b",");
        }
        first = false;
        let _ = serde_json::to_writer(&mut *w, k);
        let _ = w.write_all(b":");
        let _ = serde_json::to_writer(&mut *w, v);
    }
    let _ = w.write_all(b"}");
}

/// How the prompt's input tokens split between uncached, cache writes and cache reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PromptUsage {
    pub(crate) input: u64,
    pub(crate) creation_5m: u64,
    pub(crate) creation_1h: u64,
    pub(crate) read: u64,
}

impl PromptUsage {
    pub(crate) fn creation(&self) -> u64 {
        self.creation_5m + self.creation_1h
    }

    /// Anthropic's `usage` object.
    pub(crate) fn to_json(self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.creation(),
            "cache_read_input_tokens": self.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.creation_5m,
                "ephemeral_1h_input_tokens": self.creation_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }
}

struct Entry {
    expires: Instant,
    ttl: Ttl,
}

/// Cached prefixes per credential (each account has its own cache, as upstream).
#[derive(Default)]
pub(crate) struct PromptCache {
    by_credential: Mutex<HashMap<String, HashMap<[u8; 32], Entry>>>,
}

impl PromptCache {
    /// Splits the prompt's tokens into uncached / written / read, updating the cache.
    pub(crate) fn account(&self, credential: &str, prompt: &Prompt) -> PromptUsage {
        let total = prompt.total_tokens();
        let blocks = &prompt.blocks;
        let Some(last) = blocks.iter().rposition(|b| b.breakpoint.is_some()) else {
            return PromptUsage {
                input: total,
                ..PromptUsage::default()
            };
        };
        let now = Instant::now();
        let mut all = self.by_credential.lock();
        if !all.contains_key(credential) {
            all.insert(credential.to_owned(), HashMap::new());
        }
        let Some(store) = all.get_mut(credential) else {
            return PromptUsage::default();
        };
        store.retain(|_, e| e.expires > now);

        let mut usage = PromptUsage::default();
        let mut boundary = 0;
        let hit = (0..=last)
            .rev()
            .find(|&i| store.contains_key(&blocks[i].hash));
        if let Some(i) = hit {
            // A read refreshes the entry's lifetime, as upstream does.
            if let Some(e) = store.get_mut(&blocks[i].hash) {
                e.expires = now + e.ttl.duration();
            }
            boundary = blocks[i].cum_bytes;
            usage.read = tokens(boundary);
        }
        let first_unread = hit.map_or(0, |i| i + 1);
        for block in &blocks[first_unread..=last] {
            let Some(ttl) = block.breakpoint else {
                continue;
            };
            let written = tokens(block.cum_bytes) - tokens(boundary);
            match ttl {
                Ttl::FiveMinutes => usage.creation_5m += written,
                Ttl::OneHour => usage.creation_1h += written,
            }
            boundary = block.cum_bytes;
            store.insert(
                block.hash,
                Entry {
                    expires: now + ttl.duration(),
                    ttl,
                },
            );
        }
        usage.input = total - tokens(boundary);
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo(turns: usize, ttl: Option<&str>) -> Value {
        let mut cc = json!({"type": "ephemeral"});
        if let Some(t) = ttl {
            cc["ttl"] = json!(t);
        }
        let mut messages = Vec::new();
        for i in 0..turns {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            messages.push(json!({"role": role, "content": [{"type": "text", "text": format!("turn {i} with some padding text to weigh more")}]}));
        }
        if let Some(last) = messages.last_mut() {
            last["content"][0]["cache_control"] = cc.clone();
        }
        json!({
            "system": [{"type": "text", "text": "You are a long system prompt. ".repeat(20), "cache_control": cc}],
            "messages": messages,
        })
    }

    #[test]
    fn write_then_read_then_extend() {
        let cache = PromptCache::default();
        let p1 = Prompt::parse(&convo(1, None));
        let u1 = cache.account("k", &p1);
        assert_eq!(u1.read, 0);
        assert!(u1.creation_5m > 0 && u1.creation_1h == 0);
        assert_eq!(u1.input + u1.creation() + u1.read, p1.total_tokens());

        let u2 = cache.account("k", &p1);
        assert_eq!(u2.creation(), 0);
        assert_eq!(u2.read, u1.creation_5m);
        assert_eq!(u2.input, u1.input);

        // The next turn moves the breakpoint: the old prefix is read, the new part written.
        let p3 = Prompt::parse(&convo(3, None));
        let u3 = cache.account("k", &p3);
        assert_eq!(u3.read, u1.creation_5m);
        assert!(u3.creation_5m > 0);
        assert_eq!(u3.input + u3.creation() + u3.read, p3.total_tokens());

        // Another credential has its own cache.
        assert_eq!(cache.account("other", &p1), u1);
    }

    #[test]
    fn one_hour_ttl_and_no_markers() {
        let cache = PromptCache::default();
        let u = cache.account("k", &Prompt::parse(&convo(1, Some("1h"))));
        assert!(u.creation_1h > 0);
        let plain = json!({"messages": [{"role": "user", "content": "hi"}]});
        let p = Prompt::parse(&plain);
        let u = cache.account("k", &p);
        assert_eq!(u.input, p.total_tokens());
        assert_eq!(u.creation() + u.read, 0);
    }
}
