//! Reading CRS hash fields the way CRS itself does: every value is a string;
//! booleans are `=== 'true'`, numbers `parseInt`/`parseFloat` of the leading
//! digits (empty or missing is 0), JSON fields fall back to empty.

use super::source::Fields;
use crate::domain::NanoUsd;
use chrono::{DateTime, TimeZone, Utc};

pub fn text<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name).map(String::as_str).unwrap_or("")
}

pub fn flag(f: &Fields, name: &str) -> bool {
    text(f, name) == "true"
}

/// JavaScript `parseInt(x)`: optional sign and leading digits; else None.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(digits.len(), |(i, _)| i);
    let n: i64 = digits[..end].parse().ok()?;
    Some(if neg { -n } else { n })
}

/// `parseInt(x) || 0`.
pub fn int(f: &Fields, name: &str) -> i64 {
    parse_int(text(f, name)).unwrap_or(0)
}

/// `parseFloat(x || 0)`, NaN and negative values as 0.
pub fn float(f: &Fields, name: &str) -> f64 {
    let s = text(f, name).trim();
    let v: f64 = s.parse().unwrap_or(0.0);
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

/// USD amount → nano-USD, rounded; None for 0 ("no limit" in CRS).
pub fn usd(f: &Fields, name: &str) -> Option<NanoUsd> {
    let v = float(f, name);
    let nanos = (v * NanoUsd::PER_USD as f64).round();
    (nanos >= 1.0 && nanos < u64::MAX as f64).then_some(NanoUsd(nanos as u64))
}

/// A JSON array of strings; anything else is empty.
pub fn list(f: &Fields, name: &str) -> Vec<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(text(f, name))
        .map(|v| {
            v.into_iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn json(f: &Fields, name: &str) -> serde_json::Value {
    serde_json::from_str(text(f, name)).unwrap_or(serde_json::Value::Null)
}

/// An ISO-8601 instant, or epoch milliseconds.
pub fn time(f: &Fields, name: &str) -> Option<DateTime<Utc>> {
    let s = text(f, name).trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    s.parse::<i64>()
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

pub fn millis(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_like_javascript() {
        let f = fields(&[
            ("a", "12abc"),
            ("b", ""),
            ("c", "0.04"),
            ("d", "[\"x\",1,\"y\"]"),
            ("e", "2026-11-24T15:52:23.562Z"),
            ("g", "1795737143261"),
            ("t", "true"),
        ]);
        assert_eq!(int(&f, "a"), 12);
        assert_eq!(int(&f, "b"), 0);
        assert_eq!(int(&f, "missing"), 0);
        assert_eq!(usd(&f, "c"), Some(NanoUsd(40_000_000)));
        assert_eq!(usd(&f, "b"), None);
        assert_eq!(list(&f, "d"), vec!["x", "y"]);
        assert_eq!(list(&f, "a"), Vec::<String>::new());
        assert_eq!(time(&f, "e").unwrap().timestamp_millis(), 1_795_535_543_562);
        assert_eq!(time(&f, "g").unwrap().timestamp_millis(), 1_795_737_143_261);
        assert!(flag(&f, "t") && !flag(&f, "a"));
    }
}
