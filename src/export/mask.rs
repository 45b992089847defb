//! The masking engine: finds secrets and personal data in free text (names,
//! descriptions, tags, notes) with the detectors of `detectors.rs` and
//! replaces them in one of three modes. It owns compiling the detectors
//! (once, in [`Masker::new`]), the one-scan `RegexSet` pre-filter, overlap
//! resolution, and rendering; it knows nothing of exports, rows or formats.
//!
//! # Modes
//! - `Full`: `[REDACTED:email]`.
//! - `Partial`: a few leading and trailing characters and `****`
//!   between them (`sk-a****wxyz`); at least half of the value, and never
//!   fewer than 4 characters, stays hidden whatever the configuration asks;
//!   values under 8 characters show nothing.
//! - `Pseudonym`: `email#1a2b3c4d5e6f`, the first 48 bits of
//!   HMAC-SHA256 under a per-instance key, over a canonical form of the value
//!   (emails lowercased; separators dropped from phone, card and IBAN
//!   numbers) so the same value gets the same token in every export and row
//!   of the instance, and different values different tokens (48 bits: about
//!   one collision in 10^5 exports of 100,000 distinct values).
//!
//!   **Limit.** Without the key nobody can test a guess, so high-entropy
//!   secrets (API keys, tokens) are safe. Low-entropy values are another
//!   matter for anyone who holds the key *or can have values pseudonymised
//!   for them* (an admin who can write a key description and export it):
//!   there are only ~10^10 Chinese mobile numbers and far fewer plausible
//!   emails of a known company, so such a person can enumerate them and
//!   recover the value behind a token. Use `Full` where that matters.
//!
//! # Overlaps
//! Candidates of all detectors are collected, then chosen greedily: the
//! longest first, then the more specific kind (a vendor-prefixed key beats
//! `bearer_token` over the same characters), then the earlier start, then
//! the kind's declaration order. A candidate overlapping one already chosen
//! is dropped. The result is deterministic and non-overlapping.

use super::detectors::{Detector, DetectorKind, KindSet, RELAY_KEY_BODY};
use hmac::{Hmac, Mac};
use regex::{Regex, RegexSet, RegexSetBuilder};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// How a finding is replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaskMode {
    /// `[REDACTED:kind]`.
    #[default]
    Full,
    /// `keep_start` leading and `keep_end` trailing characters around
    /// `****`, reduced so that at least half the value (and at least 4
    /// characters) stays hidden.
    Partial { keep_start: usize, keep_end: usize },
    /// `kind#` and 12 hex digits of a keyed HMAC (see the module docs for
    /// what it does and does not protect).
    Pseudonym,
}

/// The per-instance key of pseudonyms. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PseudonymKey(bytes)
    }

    /// A fresh random key: pseudonyms are then stable only within this
    /// process. An instance passes a persisted key to keep them stable
    /// across exports and restarts.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        PseudonymKey(bytes)
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(****)")
    }
}

/// What to detect and how to mask it.
#[derive(Clone, Debug)]
pub struct MaskConfig {
    pub mode: MaskMode,
    /// Kinds that are looked for; the others are left alone.
    pub enabled: KindSet,
    /// Prefixes of this relay's keys (each followed by 64 hex digits). Empty
    /// prefixes and prefixes over 32 characters are ignored: an empty one
    /// would mask every SHA-256 hex digest.
    pub relay_key_prefixes: Vec<String>,
    pub pseudonym_key: PseudonymKey,
}

impl Default for MaskConfig {
    /// Full masking, every detector, `cr_` relay keys, a random pseudonym key.
    fn default() -> Self {
        MaskConfig {
            mode: MaskMode::Full,
            enabled: KindSet::all(),
            relay_key_prefixes: vec!["cr_".to_string()],
            pseudonym_key: PseudonymKey::random(),
        }
    }
}

impl MaskConfig {
    #[must_use]
    pub fn with_mode(mut self, mode: MaskMode) -> Self {
        self.mode = mode;
        self
    }

    #[must_use]
    pub fn enable(mut self, kind: DetectorKind) -> Self {
        self.enabled = self.enabled.with(kind);
        self
    }

    #[must_use]
    pub fn disable(mut self, kind: DetectorKind) -> Self {
        self.enabled = self.enabled.without(kind);
        self
    }
}

/// One detected value: its kind and byte range in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: DetectorKind,
    pub range: Range<usize>,
}

/// Failure to compile the detectors (not expected: the patterns are static
/// and tested, relay prefixes are escaped).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("detector pattern failed to compile: {0}")]
    Pattern(#[from] regex::Error),
}

/// The compiled masking engine. Cheap to clone (an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Masker {
    inner: Arc<Inner>,
}

struct Inner {
    /// All patterns of the enabled detectors: one scan says which may match.
    set: RegexSet,
    /// Aligned with `set`.
    patterns: Vec<Compiled>,
    mode: MaskMode,
    mac: Hmac<Sha256>,
    /// Set when compiling failed: every non-empty text is then fully
    /// redacted rather than passed through unmasked.
    fail_closed: bool,
}

struct Compiled {
    detector: &'static Detector,
    regex: Regex,
    /// Whether the pattern has the `s` group (else the whole match is masked).
    secret_group: bool,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("mode", &self.inner.mode)
            .field("patterns", &self.inner.patterns.len())
            .field("fail_closed", &self.inner.fail_closed)
            .finish()
    }
}

/// Rejected candidates at most this long are searched again from their
/// second character (see `findings`).
const RESTART_WINDOW: usize = 64;

/// The DFA budget of the pre-filter: the union of ~35 patterns with counted
/// repetitions needs more than the default to stay on the fast lazy DFA.
const SET_DFA_LIMIT: usize = 64 << 20;

impl Masker {
    /// Compiles the enabled detectors. Should compiling ever fail, the
    /// masker fails closed (see [`Masker::is_fail_closed`]) instead of
    /// letting text through unmasked; [`Masker::try_new`] reports the error.
    pub fn new(config: MaskConfig) -> Masker {
        let mode = config.mode;
        let mac = hmac_for(&config.pseudonym_key);
        match Self::try_new(config) {
            Ok(m) => m,
            Err(_) => Masker {
                inner: Arc::new(Inner {
                    set: RegexSet::empty(),
                    patterns: Vec::new(),
                    mode,
                    mac,
                    fail_closed: true,
                }),
            },
        }
    }

    /// Compiles the enabled detectors, reporting a pattern that fails.
    pub fn try_new(config: MaskConfig) -> Result<Masker, Error> {
        let mut sources: Vec<String> = Vec::new();
        let mut patterns: Vec<Compiled> = Vec::new();
        for kind in config.enabled.iter() {
            let detector = kind.detector();
            let owned: Vec<String> = if kind == DetectorKind::RelayKey {
                relay_key_patterns(&config.relay_key_prefixes)
            } else {
                detector.patterns.iter().map(|p| (*p).to_string()).collect()
            };
            for source in owned {
                let regex = Regex::new(&source)?;
                let secret_group = regex.capture_names().any(|n| n == Some("s"));
                patterns.push(Compiled {
                    detector,
                    regex,
                    secret_group,
                });
                sources.push(source);
            }
        }
        let set = RegexSetBuilder::new(&sources)
            .dfa_size_limit(SET_DFA_LIMIT)
            .build()?;
        Ok(Masker {
            inner: Arc::new(Inner {
                set,
                patterns,
                mode: config.mode,
                mac: hmac_for(&config.pseudonym_key),
                fail_closed: false,
            }),
        })
    }

    /// True when the detectors could not be compiled and every non-empty
    /// text is redacted whole.
    pub fn is_fail_closed(&self) -> bool {
        self.inner.fail_closed
    }

    pub fn mode(&self) -> MaskMode {
        self.inner.mode
    }

    /// Whether `kind` is looked for.
    pub fn is_enabled(&self, kind: DetectorKind) -> bool {
        self.inner.patterns.iter().any(|p| p.detector.kind == kind)
    }

    /// The non-overlapping findings in `text`, ordered by position.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        let inner = &*self.inner;
        let hits = inner.set.matches(text);
        if !hits.matched_any() {
            return Vec::new();
        }
        let mut candidates: Vec<(Finding, u8)> = Vec::new();
        for idx in hits.iter() {
            let Some(p) = inner.patterns.get(idx) else {
                continue;
            };
            let check = p.detector.check;
            let mut push = |r: Option<Range<usize>>| {
                if let Some(range) = r.filter(|r| !r.is_empty()) {
                    let finding = Finding {
                        kind: p.detector.kind,
                        range,
                    };
                    candidates.push((finding, p.detector.specificity));
                }
            };
            // A rejected candidate restarts the search one character
            // later, not after it: a greedy pattern may have swallowed the
            // start of a real value (`+1 415 555 2671 4111111111111111`).
            // Work stays linear: at most RESTART_WINDOW restarts per byte.
            let mut at = 0;
            while at < text.len() {
                let (whole, secret) = if p.secret_group {
                    let Some(caps) = p.regex.captures_at(text, at) else {
                        break;
                    };
                    let Some(m) = caps.get(0) else { break };
                    (m.range(), caps.name("s").map_or(m.range(), |s| s.range()))
                } else {
                    let Some(m) = p.regex.find_at(text, at) else {
                        break;
                    };
                    (m.range(), m.range())
                };
                let found = check(text, whole.clone(), secret);
                at = match &found {
                    Some(r) if r.end > whole.start => r.end,
                    // Only short candidates restart inside themselves: the
                    // numbers that need it are under 64 bytes, and a long
                    // rejected candidate (a 100 KB run before `@-bad.com`)
                    // restarting at every character would be quadratic.
                    _ if whole.len() <= RESTART_WINDOW => next_boundary(text, whole.start),
                    _ => whole.end,
                };
                push(found);
            }
        }
        resolve_overlaps(candidates)
    }

    /// `text` with every finding replaced; borrowed (no allocation) when
    /// nothing is found.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.inner.fail_closed {
            return if text.is_empty() {
                Cow::Borrowed(text)
            } else {
                Cow::Owned("[REDACTED:unavailable]".to_string())
            };
        }
        let findings = self.findings(text);
        if findings.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 24 * findings.len());
        let mut last = 0;
        for f in &findings {
            out.push_str(text.get(last..f.range.start).unwrap_or(""));
            self.render(f.kind, text.get(f.range.clone()).unwrap_or(""), &mut out);
            last = f.range.end;
        }
        out.push_str(text.get(last..).unwrap_or(""));
        Cow::Owned(out)
    }

    /// The replacement of one value of `kind`, as [`Masker::mask`] writes it.
    pub fn render(&self, kind: DetectorKind, value: &str, out: &mut String) {
        match self.inner.mode {
            MaskMode::Full => {
                out.push_str("[REDACTED:");
                out.push_str(kind.name());
                out.push(']');
            }
            MaskMode::Partial {
                keep_start,
                keep_end,
            } => render_partial(value, keep_start, keep_end, out),
            MaskMode::Pseudonym => {
                out.push_str(kind.name());
                out.push('#');
                out.push_str(&self.pseudonym_hex(kind, value));
            }
        }
    }

    /// 12 hex digits (48 bits) of HMAC-SHA256 over the canonical value.
    fn pseudonym_hex(&self, kind: DetectorKind, value: &str) -> String {
        let mut mac = self.inner.mac.clone();
        mac.update(canonical(kind, value).as_bytes());
        let tag = mac.finalize().into_bytes();
        hex::encode(tag.get(..6).unwrap_or(&[]))
    }
}

/// The byte index of the character after the one at `at`.
fn next_boundary(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|t| t.chars().next())
        .map_or(text.len(), |c| at + c.len_utf8())
}

fn hmac_for(key: &PseudonymKey) -> Hmac<Sha256> {
    // HMAC pads a short key with zeros to the 64-byte block, so padding it
    // here is the same key, and the fixed-size constructor cannot fail.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&key.0);
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(
        hmac::digest::generic_array::GenericArray::from_slice(&block),
    )
}

fn relay_key_patterns(prefixes: &[String]) -> Vec<String> {
    prefixes
        .iter()
        .filter(|p| !p.is_empty() && p.chars().count() <= 32)
        .map(|p| format!("{}{RELAY_KEY_BODY}", regex::escape(p)))
        .collect()
}

/// The form a value is pseudonymised in, so formatting differences do not
/// give one person two tokens.
fn canonical(kind: DetectorKind, value: &str) -> Cow<'_, str> {
    use DetectorKind as K;
    match kind {
        K::Email => Cow::Owned(value.to_ascii_lowercase()),
        K::PhoneInternational | K::CreditCard | K::Iban | K::ChinaResidentId => Cow::Owned(
            value
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        ),
        K::ChinaMobile => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            // `+86 138…` and `138…` are the same number.
            let national = digits.strip_prefix("86").filter(|d| d.len() == 11);
            Cow::Owned(format!("+86{}", national.unwrap_or(&digits)))
        }
        _ => Cow::Borrowed(value),
    }
}

fn render_partial(value: &str, keep_start: usize, keep_end: usize, out: &mut String) {
    let n = value.chars().count();
    // Values under 8 characters show nothing at all.
    let hidden_min = n.div_ceil(2).max(4);
    let mut budget = if n < 8 { 0 } else { n - hidden_min };
    let start = keep_start.min(budget);
    budget -= start;
    let end = keep_end.min(budget);
    out.extend(value.chars().take(start));
    out.push_str("****");
    out.extend(value.chars().skip(n - end));
}

/// Greedy choice: longest, then most specific, then earliest, then kind order.
fn resolve_overlaps(mut candidates: Vec<(Finding, u8)>) -> Vec<Finding> {
    candidates.sort_by(|(a, sa), (b, sb)| {
        b.range
            .len()
            .cmp(&a.range.len())
            .then(sb.cmp(sa))
            .then(a.range.start.cmp(&b.range.start))
            .then(a.kind.cmp(&b.kind))
    });
    let mut chosen: Vec<Finding> = Vec::with_capacity(candidates.len());
    for (c, _) in candidates {
        // `chosen` is kept sorted by start and non-overlapping, so only the
        // neighbours around the insertion point can overlap.
        let at = chosen.partition_point(|f| f.range.start < c.range.start);
        let clashes_before = at > 0
            && chosen
                .get(at - 1)
                .is_some_and(|f| f.range.end > c.range.start);
        let clashes_after = chosen.get(at).is_some_and(|f| f.range.start < c.range.end);
        if !clashes_before && !clashes_after {
            chosen.insert(at, c);
        }
    }
    chosen
}

#[cfg(test)]
mod tests;
