//! The import report: per section what was read, created, updated, left
//! unchanged and skipped (with the reason), plus warnings, conflicts (fields
//! changed on both sides since the last import; the local value was kept)
//! and notes for the operator. Serde for machines, `Display` for the CLI.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Section {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: Vec<Skipped>,
}

impl Section {
    pub fn imported(&self) -> u64 {
        self.created + self.updated
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The CRS record, e.g. `gemini_account:abc`.
    pub record: String,
    pub reason: String,
}

/// A field changed locally and in CRS since the last import: local kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub record: String,
    pub field: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// The Redis address without its password.
    pub source: String,
    pub source_id: String,
    /// `keys`, `accounts`, `groups`, `usage`.
    pub sections: BTreeMap<String, Section>,
    pub warnings: Vec<String>,
    pub conflicts: Vec<Conflict>,
    pub notes: Vec<String>,
    /// Usage moved into our buckets (totals over every key).
    pub usage: UsageSummary,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageSummary {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_tokens: u64,
    pub cache_read_tokens: u64,
    /// Rated (billed) cost in nano-USD.
    pub billed_cost_nanos: u64,
    /// Hourly buckets written.
    pub buckets: u64,
}

impl Report {
    pub fn section(&mut self, name: &str) -> &mut Section {
        self.sections.entry(name.to_string()).or_default()
    }

    pub fn skip(&mut self, section: &str, record: impl Into<String>, reason: impl Into<String>) {
        self.section(section).skipped.push(Skipped {
            record: record.into(),
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Whether a rerun would change anything (nothing created or updated).
    pub fn changed_anything(&self) -> bool {
        self.sections.values().any(|s| s.imported() > 0) || self.usage.buckets > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        writeln!(f, "Import from {} [{}]{mode}", self.source, self.source_id)?;
        writeln!(
            f,
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "section", "read", "imported", "created", "updated", "unchanged", "skipped"
        )?;
        for (name, s) in &self.sections {
            writeln!(
                f,
                "{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
                name,
                s.read,
                s.imported(),
                s.created,
                s.updated,
                s.unchanged,
                s.skipped.len()
            )?;
        }
        let u = &self.usage;
        writeln!(
            f,
            "usage moved: {} requests, {} input / {} output / {} cache-write / {} cache-read tokens, ${} billed, {} hourly buckets",
            u.requests,
            u.input_tokens,
            u.output_tokens,
            u.cache_creation_tokens,
            u.cache_read_tokens,
            crate::domain::NanoUsd(u.billed_cost_nanos),
            u.buckets
        )?;
        for (name, s) in &self.sections {
            for skip in &s.skipped {
                writeln!(f, "skipped {name} {}: {}", skip.record, skip.reason)?;
            }
        }
        for c in &self.conflicts {
            writeln!(
                f,
                "conflict {}: `{}` changed here and in CRS since the last import; kept the local value",
                c.record, c.field
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}
