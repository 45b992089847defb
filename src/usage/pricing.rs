//! The pricing table: per-token prices of Claude models, embedded at build
//! time (derived from LiteLLM's price list) and overridable by a file; also the
//! built-in model list served by `/v1/models` when no upstream answers.
//!
//! The embedded data is `src/usage/pricing.json`, written by
//! `scripts/gen-pricing.py` from LiteLLM's `model_prices_and_context_window.json`
//! (litellm 1.110.2, MIT License, Copyright (c) 2023 Berri AI); rerun the script
//! to refresh it. Prices are integers in pico-USD per token, so every list price
//! is exact and a cost is an exact sum, rounded once to nano-USD.
//!
//! # Override file
//!
//! `pricing_file` (config) / `RELAY_PRICING_FILE` names a JSON object mapping a
//! model name to its prices, in LiteLLM's field names and units (USD per
//! token), so an entry can be pasted from LiteLLM's list; other fields are
//! ignored:
//!
//! ```json
//! {
//!   "claude-sonnet-4-5": {
//!     "input_cost_per_token": 3e-6,
//!     "output_cost_per_token": 1.5e-5,
//!     "cache_creation_input_token_cost": 3.75e-6,
//!     "cache_creation_input_token_cost_above_1hr": 6e-6,
//!     "cache_read_input_token_cost": 3e-7
//!   },
//!   "my-gateway-model": { "alias_of": "claude-opus-4-8" }
//! }
//! ```
//!
//! - `input_cost_per_token` and `output_cost_per_token` are required (unless
//!   `alias_of` is given). Missing cache prices follow Anthropic's multipliers
//!   of the input price: 5m write 1.25×, 1h write 2×, read 0.1×.
//! - An entry replaces the model's prices as a whole, and also those of the
//!   built-in dated ids of that name (overriding `claude-sonnet-4-5` reprices
//!   `claude-sonnet-4-5-20250929` too, unless the file names that one as well).
//! - `alias_of` prices a name like another (built-in or overriding) model.
//! - Prices are kept to the pico-dollar; the built-in `/v1/models` list is
//!   not changed by overrides.

use crate::domain::{NanoUsd, TokenUsage};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// Prices in pico-USD per token (10^-12 USD), so every list price is an integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

/// A model of the built-in table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    /// RFC 3339.
    pub created_at: String,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read pricing file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid pricing file {0}: {1}")]
    Parse(String, String),
}

/// Prices by model name and the built-in model list. Cloning is cheap (one
/// `Arc`), and lookups take no lock.
#[derive(Clone, Debug, Default)]
pub struct PricingTable {
    table: Arc<Table>,
    /// Prices with the run-time overrides (admin API settings) laid over
    /// `table`; `None` when there are none. Shared by clones, so the relay's
    /// copies follow a change at once.
    live: Arc<arc_swap::ArcSwapOption<HashMap<String, ModelPrice>>>,
}

#[derive(Debug, Default)]
struct Table {
    /// Every priced name: ids and resolved aliases.
    prices: HashMap<String, ModelPrice>,
    /// The entries before alias resolution, so an overlay re-resolves aliases
    /// (overriding `claude-opus-5-5` reprices `claude-opus-latest`).
    raw: HashMap<String, Raw>,
    /// Listed built-in models, newest first.
    models: Vec<ModelInfo>,
}

const EMBEDDED_JSON: &str = include_str!("pricing.json");

static EMBEDDED: LazyLock<PricingTable> = LazyLock::new(|| match parse_embedded(EMBEDDED_JSON) {
    Ok(table) => table,
    Err(e) => {
        // Cannot happen with the committed file (a unit test parses it); if it
        // did, every model would be unpriced (flagged), never billed $0.
        tracing::error!(error = %e, "embedded pricing table is invalid");
        PricingTable::default()
    }
});

/// The committed data file (see `scripts/gen-pricing.py`).
#[derive(Deserialize)]
struct EmbeddedFile {
    models: Vec<EmbeddedModel>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct EmbeddedModel {
    id: String,
    display_name: String,
    created_at: String,
    listed: bool,
    max_input_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    input: u64,
    output: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    cache_read: u64,
}

/// One entry of an override file, in LiteLLM's names (USD per token).
#[derive(Deserialize)]
struct OverrideEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
    cache_creation_input_token_cost_above_1hr: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    alias_of: Option<String>,
}

/// A name's entry before aliases are resolved.
#[derive(Clone, Debug)]
enum Raw {
    Price(ModelPrice),
    Alias(String),
}

fn parse_embedded(json: &str) -> Result<PricingTable, String> {
    let file: EmbeddedFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut raw = HashMap::with_capacity(file.models.len() + file.aliases.len());
    let mut listed = Vec::new();
    for m in file.models {
        let price = ModelPrice {
            input: m.input,
            output: m.output,
            cache_write_5m: m.cache_write_5m,
            cache_write_1h: m.cache_write_1h,
            cache_read: m.cache_read,
        };
        if m.listed {
            listed.push(ModelInfo {
                id: m.id.clone(),
                display_name: m.display_name,
                created_at: m.created_at,
                max_input_tokens: m.max_input_tokens,
                max_output_tokens: m.max_output_tokens,
            });
        }
        raw.insert(m.id, Raw::Price(price));
    }
    for (name, target) in file.aliases {
        raw.insert(name, Raw::Alias(target));
    }
    // RFC 3339 UTC strings of one format sort as dates; stable, so the
    // generator's tie-break order is kept.
    listed.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(PricingTable {
        table: Arc::new(Table {
            prices: resolve(&raw)?,
            raw,
            models: listed,
        }),
        live: Default::default(),
    })
}

/// Follows aliases (a few hops at most) to prices.
fn resolve(raw: &HashMap<String, Raw>) -> Result<HashMap<String, ModelPrice>, String> {
    let mut prices = HashMap::with_capacity(raw.len());
    for (name, entry) in raw {
        let mut cur = entry;
        let mut hops = 0;
        let price = loop {
            match cur {
                Raw::Price(p) => break *p,
                Raw::Alias(target) => {
                    hops += 1;
                    match raw.get(target) {
                        Some(next) if hops <= 8 => cur = next,
                        Some(_) => return Err(format!("{name}: alias_of loops")),
                        None => {
                            return Err(format!("{name}: alias_of names unknown model {target:?}"))
                        }
                    }
                }
            }
        };
        prices.insert(name.clone(), price);
    }
    Ok(prices)
}

/// USD per token (LiteLLM) to pico-USD per token, rounded to the pico-dollar.
fn usd_to_pico(model: &str, field: &str, usd: f64) -> Result<u64, String> {
    let pico = (usd * 1e12).round();
    // 1e7 USD per token is far beyond any price; it also keeps sums in u128 tiny.
    if !usd.is_finite() || usd < 0.0 || pico > 1e19 {
        return Err(format!(
            "{model}: {field} must be a price in USD per token, got {usd}"
        ));
    }
    Ok(pico as u64)
}

fn override_entry(model: &str, e: &OverrideEntry) -> Result<Raw, String> {
    if let Some(target) = &e.alias_of {
        return Ok(Raw::Alias(target.clone()));
    }
    let required = |v: Option<f64>, field: &str| match v {
        Some(usd) => usd_to_pico(model, field, usd),
        None => Err(format!("{model}: {field} is required")),
    };
    let optional = |v: Option<f64>, field: &str, default: u64| match v {
        Some(usd) => usd_to_pico(model, field, usd),
        None => Ok(default),
    };
    let input = required(e.input_cost_per_token, "input_cost_per_token")?;
    let output = required(e.output_cost_per_token, "output_cost_per_token")?;
    Ok(Raw::Price(ModelPrice {
        input,
        output,
        cache_write_5m: optional(
            e.cache_creation_input_token_cost,
            "cache_creation_input_token_cost",
            input * 5 / 4,
        )?,
        cache_write_1h: optional(
            e.cache_creation_input_token_cost_above_1hr,
            "cache_creation_input_token_cost_above_1hr",
            input * 2,
        )?,
        cache_read: optional(
            e.cache_read_input_token_cost,
            "cache_read_input_token_cost",
            input / 10,
        )?,
    }))
}

/// `name` without a trailing `-YYYYMMDD` date, if it has one.
fn strip_date(name: &str) -> Option<&str> {
    let (stem, date) = name.rsplit_once('-')?;
    (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) && !stem.is_empty())
        .then_some(stem)
}

/// Whether `known` is a prefix of `model` ending at a name boundary: the rest
/// starts with a non-alphanumeric character, and is not `-<1 or 2 digits>`
/// (that would be another minor version: `claude-opus-4` must not price
/// `claude-opus-4-10`).
fn is_boundary_prefix(known: &str, model: &str) -> bool {
    let Some(rest) = model.strip_prefix(known) else {
        return false;
    };
    let rest = rest.as_bytes();
    match rest.first() {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() => false,
        Some(b'-') => {
            let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            !(1..=2).contains(&digits)
        }
        Some(_) => true,
    }
}

impl PricingTable {
    /// The built-in table (parsed once per process).
    pub fn embedded() -> PricingTable {
        // A fresh run-time layer: tables of different relays must not share it.
        PricingTable {
            table: EMBEDDED.table.clone(),
            live: Default::default(),
        }
    }

    /// Lays run-time overrides (exact prices per model name) over this
    /// table's prices, for every clone of it; an empty map removes them. Like
    /// file overrides, an undated name also reprices its dated ids.
    pub fn set_runtime_overrides(&self, overrides: &BTreeMap<String, ModelPrice>) {
        if overrides.is_empty() {
            self.live.store(None);
            return;
        }
        let entries = overrides
            .iter()
            .map(|(m, p)| (m.clone(), Raw::Price(*p)))
            .collect();
        match self.layered(entries) {
            Ok((prices, _)) => self.live.store(Some(Arc::new(prices))),
            // Plain prices cannot fail to resolve; keep the old layer if they did.
            Err(e) => tracing::error!(error = %e, "cannot apply pricing overrides"),
        }
    }

    /// The embedded table with the file's entries laid over it.
    pub fn with_overrides(path: &Path) -> Result<PricingTable, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(shown.clone(), e))?;
        Self::embedded()
            .overlay(&text)
            .map_err(|e| Error::Parse(shown, e))
    }

    /// Lays override-file JSON over this table.
    fn overlay(&self, json: &str) -> Result<PricingTable, String> {
        let entries: BTreeMap<String, OverrideEntry> = serde_json::from_str(json)
            .map_err(|e| format!("expected a JSON object of model name to prices: {e}"))?;
        let mut overridden: HashMap<String, Raw> = HashMap::with_capacity(entries.len());
        for (model, e) in &entries {
            overridden.insert(model.clone(), override_entry(model, e)?);
        }
        let (prices, raw) = self.layered(overridden)?;
        Ok(PricingTable {
            table: Arc::new(Table {
                prices,
                raw,
                models: self.table.models.clone(),
            }),
            live: Default::default(),
        })
    }

    /// This table's entries with `overridden` laid over them, resolved.
    #[allow(clippy::type_complexity)]
    fn layered(
        &self,
        overridden: HashMap<String, Raw>,
    ) -> Result<(HashMap<String, ModelPrice>, HashMap<String, Raw>), String> {
        let mut raw = self.table.raw.clone();
        // Dated built-in ids follow an override of their undated name.
        for (name, entry) in raw.iter_mut() {
            if overridden.contains_key(name) {
                continue;
            }
            if let Some(o) = strip_date(name).and_then(|stem| overridden.get(stem)) {
                *entry = o.clone();
            }
        }
        raw.extend(overridden);
        Ok((resolve(&raw)?, raw))
    }

    /// Exact name, then the name without a date/version suffix, then aliases.
    ///
    /// In order: the exact name; without a `-YYYYMMDD` suffix; a `-latest`
    /// name without that suffix (`claude-3-7-sonnet-latest`; the built-in
    /// `claude-opus-latest` style aliases are exact names); the longest known
    /// name that prefixes it at a boundary (`claude-sonnet-4-5@20250929`,
    /// `claude-opus-4-1-20250805-v1:0`). Otherwise `None`: unpriced.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        let live = self.live.load();
        let prices = live.as_deref().unwrap_or(&self.table.prices);
        if let Some(p) = prices.get(model) {
            return Some(*p);
        }
        let undated = strip_date(model);
        if let Some(p) = undated.and_then(|m| prices.get(m)) {
            return Some(*p);
        }
        let base = undated.unwrap_or(model);
        if let Some(p) = base.strip_suffix("-latest").and_then(|m| prices.get(m)) {
            return Some(*p);
        }
        prices
            .iter()
            .filter(|(known, _)| is_boundary_prefix(known, model))
            .max_by_key(|(known, _)| known.len())
            .map(|(_, p)| *p)
    }

    /// List cost of the tokens, or None when the model is unpriced.
    ///
    /// Σ tokens × pico-USD price, in u128, rounded half up to nano-USD once.
    pub fn cost(&self, model: &str, tokens: &TokenUsage) -> Option<NanoUsd> {
        let p = self.price(model)?;
        let pico = [
            (tokens.input, p.input),
            (tokens.output, p.output),
            (tokens.cache_creation_5m, p.cache_write_5m),
            (tokens.cache_creation_1h, p.cache_write_1h),
            (tokens.cache_read, p.cache_read),
        ]
        .iter()
        .map(|&(n, price)| u128::from(n) * u128::from(price))
        .sum::<u128>();
        let nano = (pico + 500) / 1000;
        Some(NanoUsd(u64::try_from(nano).unwrap_or(u64::MAX)))
    }

    /// Built-in models, newest first.
    ///
    /// Bare Anthropic ids only, each model once (under its dated id when it
    /// has one, as Anthropic lists them); older models that are only priced
    /// are not listed.
    pub fn models(&self) -> &[ModelInfo] {
        &self.table.models
    }
}

/// Billed cost = list cost × the key's multiplier, rounded to the nearest nano-dollar.
///
/// The multiplier is taken as the decimal it prints as (`0.7`, not the binary
/// 0.6999…), so `5 × 0.7` is 3.5 and rounds half up to 4 as an admin expects.
/// A negative or NaN multiplier bills nothing; results saturate at `u64::MAX`.
pub fn billed_cost(list: NanoUsd, multiplier: f64) -> NanoUsd {
    if multiplier.is_nan() || multiplier <= 0.0 || list.0 == 0 {
        return NanoUsd::ZERO;
    }
    if multiplier == 1.0 {
        return list;
    }
    let Some((num, scale)) = decimal_parts(multiplier) else {
        return NanoUsd(u64::MAX);
    };
    let Some(product) = u128::from(list.0).checked_mul(num) else {
        return NanoUsd(u64::MAX);
    };
    let den = 10u128.pow(scale);
    let rounded = product / den + u128::from((product % den) * 2 >= den);
    NanoUsd(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// `x` (finite, positive) as `num / 10^scale` from its shortest decimal
/// rendering. Digits past the 30th decimal are dropped: they cannot move a
/// u64 of nano-dollars by half a unit. `None` when `x` is too large for u128.
fn decimal_parts(x: f64) -> Option<(u128, u32)> {
    const MAX_SCALE: usize = 30;
    if !x.is_finite() {
        return None;
    }
    let text = x.to_string(); // never in exponent form
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = &frac[..frac.len().min(MAX_SCALE)];
    let mut num: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        num = num
            .checked_mul(10)?
            .checked_add(u128::from(b.checked_sub(b'0')?))?;
    }
    Some((num, frac.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64, c5m: u64, c1h: u64, read: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cache_creation_5m: c5m,
            cache_creation_1h: c1h,
            cache_read: read,
        }
    }

    #[test]
    fn embedded_table_parses_with_exact_prices() {
        let t = PricingTable::embedded();
        assert_eq!(
            t.price("claude-sonnet-4-5"),
            Some(ModelPrice {
                input: 3_000_000,
                output: 15_000_000,
                cache_write_5m: 3_750_000,
                cache_write_1h: 6_000_000,
                cache_read: 300_000
            })
        );
        for m in [
            "claude-opus-4-8",
            "claude-sonnet-4-6",
            "claude-haiku-4-5",
            "claude-opus-4-1",
            "claude-sonnet-4",
        ] {
            assert!(t.price(m).is_some(), "{m} priced");
        }
        assert_eq!(t.price("claude-opus-4-1").unwrap().input, 15_000_000);
        assert_eq!(
            t.price("claude-haiku-4-5").unwrap().cache_write_1h,
            2_000_000
        );
        assert_eq!(t.price("claude-opus-latest"), t.price("claude-opus-5-5"));
    }

    #[test]
    fn cost_of_each_token_kind_is_exact() {
        let t = PricingTable::embedded();
        let m = "claude-sonnet-4-5";
        // $3 / $15 / $3.75 / $6 / $0.30 per million tokens.
        assert_eq!(
            t.cost(m, &tokens(1234, 0, 0, 0, 0)),
            Some(NanoUsd(3_702_000))
        );
        assert_eq!(
            t.cost(m, &tokens(0, 567, 0, 0, 0)),
            Some(NanoUsd(8_505_000))
        );
        assert_eq!(
            t.cost(m, &tokens(0, 0, 1000, 0, 0)),
            Some(NanoUsd(3_750_000))
        );
        assert_eq!(
            t.cost(m, &tokens(0, 0, 0, 2000, 0)),
            Some(NanoUsd(12_000_000))
        );
        assert_eq!(
            t.cost(m, &tokens(0, 0, 0, 0, 10_000)),
            Some(NanoUsd(3_000_000))
        );
        let all = t.cost(m, &tokens(1234, 567, 1000, 2000, 10_000)).unwrap();
        assert_eq!(all, NanoUsd(30_957_000));
        assert_eq!(all.to_decimal_string(), "0.030957");
        assert_eq!(t.cost(m, &TokenUsage::default()), Some(NanoUsd::ZERO));
        // Haiku 4.5 cache read is $0.10/M: one token is 100 nano-dollars.
        assert_eq!(
            t.cost("claude-haiku-4-5-20251001", &tokens(0, 0, 0, 0, 1)),
            Some(NanoUsd(100))
        );
        // Huge counts do not overflow.
        assert_eq!(
            t.cost("claude-opus-4-1", &tokens(u64::MAX, 0, 0, 0, 0)),
            Some(NanoUsd(u64::MAX))
        );
    }

    #[test]
    fn lookup_by_date_suffix_alias_and_prefix() {
        let t = PricingTable::embedded();
        let s45 = t.price("claude-sonnet-4-5");
        assert_eq!(t.price("claude-sonnet-4-5-20250929"), s45);
        assert_eq!(
            t.price("claude-sonnet-4-5-20991231"),
            s45,
            "a future snapshot of a known model"
        );
        assert_eq!(t.price("claude-sonnet-4-5-latest"), s45);
        assert_eq!(t.price("claude-sonnet-4-5@20250929"), s45);
        assert_eq!(
            t.price("claude-opus-4-1-20250805-v1:0"),
            t.price("claude-opus-4-1")
        );
        assert_eq!(
            t.price("claude-3-5-sonnet-20240620"),
            t.price("claude-3-5-sonnet-20241022")
        );
        assert_eq!(
            t.price("claude-3-7-sonnet-latest"),
            t.price("claude-3-7-sonnet")
        );
        assert_eq!(
            t.price("claude-sonnet-latest"),
            t.price("claude-sonnet-5-5")
        );
    }

    #[test]
    fn unknown_models_are_unpriced_never_free() {
        let t = PricingTable::embedded();
        for m in [
            "",
            "gpt-4o",
            "claude",
            "claude-opus",
            "claude-opus-4-10",
            "claude-sonnet-4-55",
            "claude-opus-4-1x",
            "CLAUDE-SONNET-4-5",
        ] {
            assert_eq!(t.price(m), None, "{m}");
            assert_eq!(t.cost(m, &tokens(1, 1, 0, 0, 0)), None, "{m}");
        }
        assert_eq!(
            PricingTable::default().cost("claude-sonnet-4-5", &tokens(1, 0, 0, 0, 0)),
            None
        );
    }

    #[test]
    fn models_are_bare_listed_and_newest_first() {
        let t = PricingTable::embedded();
        let models = t.models();
        assert!(models.len() >= 10);
        for w in models.windows(2) {
            assert!(
                w[0].created_at >= w[1].created_at,
                "{} before {}",
                w[0].id,
                w[1].id
            );
        }
        for m in models {
            assert!(
                m.id.starts_with("claude-") && !m.id.contains(['/', '.', ':', '@']),
                "{}",
                m.id
            );
            assert!(m.display_name.starts_with("Claude "), "{}", m.display_name);
            assert!(
                chrono::DateTime::parse_from_rfc3339(&m.created_at).is_ok(),
                "{}",
                m.created_at
            );
            assert!(t.price(&m.id).is_some());
        }
        let s45 = models
            .iter()
            .find(|m| m.id == "claude-sonnet-4-5-20250929")
            .unwrap();
        assert_eq!(s45.display_name, "Claude Sonnet 4.5");
        assert_eq!(s45.created_at, "2025-09-29T00:00:00Z");
        assert_eq!(
            (s45.max_input_tokens, s45.max_output_tokens),
            (Some(200_000), Some(64_000))
        );
        // Listed once, under the dated id; priced-only legacy models are not listed.
        assert!(!models
            .iter()
            .any(|m| m.id == "claude-sonnet-4-5" || m.id == "claude-opus-4-1"));
    }

    #[test]
    fn override_file_is_laid_over_the_embedded_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(
            &path,
            r#"{
              "claude-sonnet-4-5": {"input_cost_per_token": 2e-06, "output_cost_per_token": 1e-05,
                 "cache_creation_input_token_cost": 2.5e-06, "cache_read_input_token_cost": 2e-07,
                 "litellm_provider": "anthropic", "max_input_tokens": 200000, "supports_vision": true},
              "acme-model": {"input_cost_per_token": 1.5e-10, "output_cost_per_token": 1e-06},
              "acme-alias": {"alias_of": "acme-model"}
            }"#,
        )
        .unwrap();
        let t = PricingTable::with_overrides(&path).unwrap();
        let s = t.price("claude-sonnet-4-5").unwrap();
        assert_eq!(
            s,
            ModelPrice {
                input: 2_000_000,
                output: 10_000_000,
                cache_write_5m: 2_500_000,
                cache_write_1h: 4_000_000, // not given: 2x input
                cache_read: 200_000
            }
        );
        assert_eq!(
            t.price("claude-sonnet-4-5-20250929"),
            Some(s),
            "dated id follows"
        );
        assert_eq!(
            t.price("claude-opus-4-8"),
            PricingTable::embedded().price("claude-opus-4-8")
        );
        let a = t.price("acme-alias").unwrap();
        assert_eq!(
            (a.input, a.cache_write_5m, a.cache_write_1h, a.cache_read),
            (150, 187, 300, 15)
        );
        // Rounding to nano-USD: 150 pico per token.
        assert_eq!(
            t.cost("acme-model", &tokens(3, 0, 0, 0, 0)),
            Some(NanoUsd(0))
        );
        assert_eq!(
            t.cost("acme-model", &tokens(4, 0, 0, 0, 0)),
            Some(NanoUsd(1))
        );
        assert_eq!(
            t.cost("acme-model", &tokens(10, 0, 0, 0, 0)),
            Some(NanoUsd(2)),
            "1.5 rounds up"
        );
        assert_eq!(t.models(), PricingTable::embedded().models());
        // Built-in aliases follow an override of their target.
        std::fs::write(&path, r#"{"claude-opus-5-5": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#).unwrap();
        let t = PricingTable::with_overrides(&path).unwrap();
        assert_eq!(t.price("claude-opus-latest").unwrap().input, 1_000_000);
        // The embedded table itself is unchanged.
        assert_eq!(
            PricingTable::embedded()
                .price("claude-sonnet-4-5")
                .unwrap()
                .input,
            3_000_000
        );
    }

    #[test]
    fn bad_override_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let err = |json: &str| {
            std::fs::write(&path, json).unwrap();
            PricingTable::with_overrides(&path).unwrap_err().to_string()
        };
        assert!(err("[1]").contains("expected a JSON object"));
        assert!(err(r#"{"m": {"output_cost_per_token": 1e-6}}"#)
            .contains("m: input_cost_per_token is required"));
        assert!(
            err(r#"{"m": {"input_cost_per_token": -1, "output_cost_per_token": 1}}"#)
                .contains("USD per token")
        );
        assert!(err(r#"{"m": {"alias_of": "nope"}}"#).contains("unknown model"));
        assert!(err(r#"{"a": {"alias_of": "b"}, "b": {"alias_of": "a"}}"#).contains("loops"));
        let missing = PricingTable::with_overrides(&dir.path().join("absent.json")).unwrap_err();
        assert!(matches!(missing, Error::Read(..)), "{missing}");
    }

    #[test]
    fn runtime_overrides_reprice_every_clone_and_can_be_removed() {
        let table = PricingTable::embedded();
        let copy = table.clone();
        let other = PricingTable::embedded();
        let before = table.price("claude-sonnet-4-5-20250929").unwrap();
        let mut o = BTreeMap::new();
        let p = ModelPrice {
            input: 1,
            output: 2,
            cache_write_5m: 3,
            cache_write_1h: 4,
            cache_read: 5,
        };
        o.insert("claude-sonnet-4-5".to_string(), p);
        o.insert("brand-new".to_string(), p);
        table.set_runtime_overrides(&o);
        assert_eq!(copy.price("claude-sonnet-4-5").unwrap(), p);
        assert_eq!(
            copy.price("claude-sonnet-4-5-20250929").unwrap(),
            p,
            "dated ids follow"
        );
        assert_eq!(copy.price("brand-new").unwrap(), p);
        assert_eq!(
            other.price("claude-sonnet-4-5-20250929").unwrap(),
            before,
            "other tables untouched"
        );
        table.set_runtime_overrides(&BTreeMap::new());
        assert_eq!(copy.price("claude-sonnet-4-5-20250929").unwrap(), before);
        assert_eq!(copy.price("brand-new"), None);
    }

    #[test]
    fn billed_cost_rounds_to_the_nearest_nano() {
        assert_eq!(billed_cost(NanoUsd(30_957_000), 1.0), NanoUsd(30_957_000));
        assert_eq!(
            billed_cost(NanoUsd(3), 1.5),
            NanoUsd(5),
            "4.5 rounds half up"
        );
        assert_eq!(
            billed_cost(NanoUsd(5), 0.7),
            NanoUsd(4),
            "3.5 in decimal, not 3.4999… in binary"
        );
        assert_eq!(billed_cost(NanoUsd(5), 0.69), NanoUsd(3));
        assert_eq!(
            billed_cost(NanoUsd(1_000_000_007), 1.1),
            NanoUsd(1_100_000_008)
        );
        assert_eq!(
            billed_cost(NanoUsd(1_000_000_000), 0.125),
            NanoUsd(125_000_000)
        );
        assert_eq!(
            billed_cost(NanoUsd(u64::MAX / 2), 2.0),
            NanoUsd(u64::MAX - 1)
        );
        assert_eq!(billed_cost(NanoUsd(u64::MAX), 3.0), NanoUsd(u64::MAX));
        assert_eq!(billed_cost(NanoUsd(u64::MAX), 1e300), NanoUsd(u64::MAX));
        assert_eq!(billed_cost(NanoUsd(1_000), 1e-30), NanoUsd(0));
        assert_eq!(billed_cost(NanoUsd(100), 0.0), NanoUsd(0));
        assert_eq!(billed_cost(NanoUsd(100), -1.0), NanoUsd(0));
        assert_eq!(billed_cost(NanoUsd(100), f64::NAN), NanoUsd(0));
        assert_eq!(billed_cost(NanoUsd(100), f64::INFINITY), NanoUsd(u64::MAX));
    }
}
