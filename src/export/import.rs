//! Importing a MIGRATION export (`export::jobs::MigrationKey` records, as a
//! JSON array or NDJSON) into this instance: idempotent, with a dry run
//! that reports exactly what a real run would do. It owns the matching
//! rules (by key id, then by hash), name conflicts and binding resolution.
//!
//! Rules, per record:
//! - a key with the same id: `unchanged` when every setting is equal,
//!   else `updated` (hash included: a key regenerated at the source moves);
//! - no such id: `created`;
//! - the hash belongs to another key id, or the name (ignoring case) to
//!   another key that is not deleted: `conflict`, nothing written;
//! - a binding to an account or group that exists neither by id nor by
//!   name here: the key is imported unbound and the binding reported as
//!   `unresolved`, so the admin can bind it again.
//!
//! Usage history is not part of a migration file and is not imported.

use super::jobs::{MigrationKey, MIGRATION_FORMAT};
use crate::domain::{AccountId, AccountStatus, ApiKey, GroupId, KeyBinding, KeyId, KeyStatus};
use crate::store::Store;
use serde::Serialize;
use std::collections::HashMap;

/// Per-record items kept in a report; the counts cover every record.
pub const REPORT_ITEMS_MAX: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Conflict,
}

/// What happened (or, in a dry run, would happen) to one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportItem {
    pub id: String,
    pub name: String,
    pub outcome: Outcome,
    /// Why, for conflicts; the unresolved binding, for the others.
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub conflicts: u64,
    /// Keys whose binding names an account or group missing here.
    pub unresolved_bindings: u64,
    /// Records with a change, a conflict or an unresolved binding (at most
    /// [`REPORT_ITEMS_MAX`]).
    pub items: Vec<ImportItem>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("record {record}: {message}")]
    Parse { record: usize, message: String },
    #[error("the file holds no keys")]
    Empty,
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// Parses a migration file: a JSON array or one JSON object per line.
pub fn parse(text: &str) -> Result<Vec<MigrationKey>, ImportError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(ImportError::Empty);
    }
    let values: Vec<serde_json::Value> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| ImportError::Parse {
            record: 0,
            message: format!("not a JSON array: {e}"),
        })?
    } else {
        let mut out = Vec::new();
        for (i, line) in trimmed.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(serde_json::from_str(line).map_err(|e| ImportError::Parse {
                record: i + 1,
                message: format!("not JSON: {e}"),
            })?);
        }
        out
    };
    let mut keys = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        if v.get("format").and_then(|f| f.as_str()) != Some(MIGRATION_FORMAT) {
            return Err(ImportError::Parse {
                record: i + 1,
                message: format!(
                    "not a migration record (format {MIGRATION_FORMAT:?} expected); \
                     only a MIGRATION export can be imported"
                ),
            });
        }
        // The message names the field, never a value (it may be a hash).
        let k: MigrationKey = serde_json::from_value(v).map_err(|e| ImportError::Parse {
            record: i + 1,
            message: e.to_string(),
        })?;
        if k.key_hash.len() != 64 || !k.key_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImportError::Parse {
                record: i + 1,
                message: "key_hash is not a SHA-256 hex digest".into(),
            });
        }
        keys.push(k);
    }
    if keys.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(keys)
}

/// Imports parsed records; with `dry_run` nothing is written.
pub fn import(
    store: &Store,
    records: &[MigrationKey],
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        dry_run,
        ..ImportReport::default()
    };
    // Names of keys not deleted, to refuse duplicates as the API does.
    let mut names: HashMap<String, KeyId> = HashMap::new();
    for k in store.list_keys()? {
        if k.status != KeyStatus::Deleted {
            names.insert(k.name.to_lowercase(), k.id);
        }
    }
    let accounts = store.list_accounts()?;
    let groups = store.list_groups()?;
    for rec in records {
        let mut item = ImportItem {
            id: rec.id.to_string(),
            name: rec.name.clone(),
            outcome: Outcome::Unchanged,
            message: None,
        };
        let existing = store.get_key(rec.id)?;
        let by_hash = store.key_by_hash(&rec.key_hash)?;
        let conflict = match (&by_hash, rec.status) {
            (Some(other), _) if other.id != rec.id => {
                Some(format!("another key ({}) has the same secret", other.id))
            }
            (_, KeyStatus::Deleted) => None,
            _ => names
                .get(&rec.name.to_lowercase())
                .filter(|owner| **owner != rec.id)
                .map(|owner| format!("another key ({owner}) has this name")),
        };
        if let Some(message) = conflict {
            report.conflicts += 1;
            item.outcome = Outcome::Conflict;
            item.message = Some(message);
            push(&mut report, item);
            continue;
        }
        let (binding, unresolved) = resolve(rec, &accounts, &groups);
        if let Some(u) = unresolved {
            report.unresolved_bindings += 1;
            item.message = Some(u);
        }
        let mut key = ApiKey {
            id: rec.id,
            name: rec.name.clone(),
            description: rec.description.clone(),
            key_hash: rec.key_hash.to_ascii_lowercase(),
            display_prefix: rec.display_prefix.clone(),
            status: rec.status,
            tags: rec.tags.clone(),
            created_at: rec.created_at,
            updated_at: rec.updated_at,
            last_used_at: rec.last_used_at,
            expires_at: rec.expires_at,
            cost_multiplier: rec.cost_multiplier,
            binding,
            policy: rec.policy.clone(),
        };
        item.outcome = match &existing {
            Some(old) => {
                // The store never moves last use backwards; compare as it would write.
                key.last_used_at = match (old.last_used_at, key.last_used_at) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if *old == key {
                    Outcome::Unchanged
                } else {
                    Outcome::Updated
                }
            }
            None => Outcome::Created,
        };
        if !dry_run {
            match item.outcome {
                Outcome::Created => store.create_key(&key)?,
                Outcome::Updated => store.put_key(&key)?,
                Outcome::Unchanged | Outcome::Conflict => {}
            }
        }
        if let Some(old) = &existing {
            if old.name.to_lowercase() != key.name.to_lowercase() {
                names.remove(&old.name.to_lowercase());
            }
        }
        if key.status != KeyStatus::Deleted {
            names.insert(key.name.to_lowercase(), key.id);
        }
        match item.outcome {
            Outcome::Created => report.created += 1,
            Outcome::Updated => report.updated += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Conflict => report.conflicts += 1,
        }
        if item.outcome != Outcome::Unchanged || item.message.is_some() {
            push(&mut report, item);
        }
    }
    Ok(report)
}

fn push(report: &mut ImportReport, item: ImportItem) {
    if report.items.len() < REPORT_ITEMS_MAX {
        report.items.push(item);
    }
}

/// The binding on this instance: by id, else by name; else unbound with a
/// note.
fn resolve(
    rec: &MigrationKey,
    accounts: &[crate::domain::Account],
    groups: &[crate::domain::Group],
) -> (KeyBinding, Option<String>) {
    let b = &rec.binding;
    let name = b.name.as_deref();
    match b.kind.as_str() {
        "account" => {
            let live = |a: &&crate::domain::Account| a.status != AccountStatus::Deleted;
            let found = accounts
                .iter()
                .filter(live)
                .find(|a| Some(a.id.0) == b.id)
                .or_else(|| {
                    accounts
                        .iter()
                        .filter(live)
                        .find(|a| name.is_some_and(|n| a.name == n))
                });
            match found {
                Some(a) => (KeyBinding::Account(AccountId(a.id.0)), None),
                None => (
                    KeyBinding::None,
                    Some(format!(
                        "unresolved binding: account {} ({}) does not exist here; imported unbound",
                        b.id.map(|i| i.to_string()).unwrap_or_default(),
                        name.unwrap_or("no name")
                    )),
                ),
            }
        }
        "group" => {
            let found = groups
                .iter()
                .find(|g| Some(g.id.0) == b.id)
                .or_else(|| groups.iter().find(|g| name.is_some_and(|n| g.name == n)));
            match found {
                Some(g) => (KeyBinding::Group(GroupId(g.id.0)), None),
                None => (
                    KeyBinding::None,
                    Some(format!(
                        "unresolved binding: group {} ({}) does not exist here; imported unbound",
                        b.id.map(|i| i.to_string()).unwrap_or_default(),
                        name.unwrap_or("no name")
                    )),
                ),
            }
        }
        _ => (KeyBinding::None, None),
    }
}
