//! One export run, start to end, independent of who drives it (the server's
//! job pool in `export::service`, or the offline CLI): what an export asks
//! for ([`ExportSpec`]), reading the matching keys from the store in batches
//! of at most [`BATCH`], their usage, and writing rows through the format
//! writers. It owns the two row variants: STANDARD (masked settings and
//! usage, through `row::KeyRows`) and MIGRATION ([`MigrationKey`]: unmasked,
//! with the key hash, for `export::import`).
//!
//! Memory is bounded by one batch plus the writer's fixed buffers; the only
//! other state is the per-model column list (models, not keys) and a cache
//! of binding names (accounts and groups, not keys).

use super::format::{self, Format, Writer, WriterOptions};
use super::mask::{MaskConfig, MaskMode, Masker, PseudonymKey};
use super::row::{KeyRowOptions, KeyRows, KeyUsage};
use crate::domain::{
    AccountId, ApiKey, GroupId, KeyBinding, KeyId, KeyStatus, UsageSubject, UsageTotals,
};
use crate::store::{KeyFilter, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Keys read from the store per step (the ceiling).
pub const BATCH: usize = 100;

/// Which rows an export writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Settings and usage, free text masked: for accounting and audits.
    #[default]
    Standard,
    /// Everything another instance needs to take the keys over (hashes,
    /// policy, bindings with names), unmasked. OWNER only.
    Migration,
}

/// How free text is masked in a STANDARD export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// Written as stored.
    None,
    Full,
    /// A few leading and trailing characters (the default).
    #[default]
    Partial,
    Pseudonym,
}

/// Usage periods by name, resolved in a time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodPreset {
    Today,
    ThisMonth,
    LastMonth,
    Last7Days,
    Last30Days,
}

impl PeriodPreset {
    /// Parses `today`, `this_month`, `last_month`, `last_7_days`,
    /// `last_30_days`; `lifetime` is `Ok(None)`.
    pub fn parse(s: &str) -> Result<Option<PeriodPreset>, String> {
        Ok(Some(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "lifetime" => return Ok(None),
                "today" => PeriodPreset::Today,
                "this_month" => PeriodPreset::ThisMonth,
                "last_month" => PeriodPreset::LastMonth,
                "last_7_days" => PeriodPreset::Last7Days,
                "last_30_days" => PeriodPreset::Last30Days,
                other => return Err(format!("unknown usage period {other:?}")),
            },
        ))
    }

    /// `[from, to)` of the period in `tz` as of `now`.
    pub fn range(
        self,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        use chrono::{Datelike, TimeZone};
        let local = now.with_timezone(&tz).date_naive();
        let start_of = |d: chrono::NaiveDate| {
            tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        };
        let month_start = local.with_day(1)?;
        match self {
            PeriodPreset::Today => Some((start_of(local)?, now)),
            PeriodPreset::ThisMonth => Some((start_of(month_start)?, now)),
            PeriodPreset::LastMonth => {
                let prev = month_start.pred_opt()?.with_day(1)?;
                Some((start_of(prev)?, start_of(month_start)?))
            }
            PeriodPreset::Last7Days => Some((now - chrono::Duration::days(7), now)),
            PeriodPreset::Last30Days => Some((now - chrono::Duration::days(30), now)),
        }
    }
}

/// What one export asks for. Stored with the job record (as JSON), so it is
/// plain data: the usage period is already resolved to instants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub format: Format,
    #[serde(default)]
    pub variant: Variant,
    #[serde(default)]
    pub filter: KeyFilter,
    /// Columns or column groups to keep (STANDARD only); `None`: all.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// `[from, to)` of the `usage.period` block; `None`: lifetime only.
    #[serde(default)]
    pub period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Add the per-model breakdown of the period (lifetime without one).
    #[serde(default)]
    pub by_model: bool,
    #[serde(default)]
    pub masking: Masking,
    #[serde(default)]
    pub csv_bom: bool,
}

impl ExportSpec {
    pub fn new(format: Format) -> ExportSpec {
        ExportSpec {
            format,
            variant: Variant::Standard,
            filter: KeyFilter::default(),
            fields: None,
            period: None,
            by_model: false,
            masking: Masking::Partial,
            csv_bom: false,
        }
    }

    /// Checks the combination; the message is for the admin.
    pub fn validate(&self) -> Result<(), String> {
        if self.variant == Variant::Migration {
            if self.format == Format::Csv {
                return Err(
                    "a MIGRATION export is JSON or NDJSON: CSV cannot carry a key's policy exactly"
                        .into(),
                );
            }
            if self.fields.is_some() {
                return Err("a MIGRATION export always has every field".into());
            }
        }
        if let Some((from, to)) = self.period {
            if from >= to {
                return Err("the usage period must start before it ends".into());
            }
        }
        // Unknown fields are found by the schema; check them now rather
        // than after the first pass over the store.
        if let Some(fields) = &self.fields {
            let rows =
                KeyRows::new(self.row_options(Vec::new()), None).map_err(|e| e.to_string())?;
            rows.schema().select(fields).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn row_options(&self, models: Vec<String>) -> KeyRowOptions {
        KeyRowOptions {
            period: self.period.is_some(),
            models,
        }
    }

    /// The file name a finished export gets (without directory).
    pub fn file_name(&self, at: DateTime<Utc>) -> String {
        let variant = match self.variant {
            Variant::Standard => "keys",
            Variant::Migration => "keys-migration",
        };
        format!(
            "{variant}-{}.{}",
            at.format("%Y%m%dT%H%M%SZ"),
            self.format.extension()
        )
    }
}

/// Instance settings a run needs beyond the spec.
#[derive(Clone, Debug)]
pub struct RunEnv {
    /// Key prefixes the masker recognises as relay keys.
    pub relay_key_prefixes: Vec<String>,
    /// The instance's pseudonym key (stable pseudonyms across exports).
    pub pseudonym_key: PseudonymKey,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub processed: u64,
    pub total: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    #[error("reading the store failed: {0}")]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Write(#[from] format::Error),
    #[error("{0}")]
    Invalid(String),
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        RunError::Write(format::Error::Io(e))
    }
}

/// Walks the keys matching `filter` in batches of at most [`BATCH`].
///
/// Reads through `Store::keys_after_id` (id order, one range scan per
/// batch) rather than `Store::for_each_key_batch`: the latter re-reads and
/// sorts every key per page until the key indexes land, which is quadratic
/// in the store size; an export needs a stable order, not creation order.
fn walk(
    store: &Store,
    filter: &KeyFilter,
    cancel: &AtomicBool,
    mut each: impl FnMut(Vec<ApiKey>) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let mut after: Option<KeyId> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(RunError::Cancelled);
        }
        let (keys, more) = store.keys_after_id(filter, after, BATCH)?;
        after = keys.last().map(|k| k.id);
        if !keys.is_empty() {
            each(keys)?;
        }
        // Export work competes with the relay for two cores: give the
        // scheduler a chance between batches.
        std::thread::yield_now();
        if !more {
            return Ok(());
        }
    }
}

/// Runs one export into `out`: a counting pass (total, and the model
/// columns of a per-model breakdown), then the rows. `progress` is called
/// after every batch; `cancel` is checked between batches.
pub fn run<W: Write>(
    store: &Store,
    spec: &ExportSpec,
    env: &RunEnv,
    out: W,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, Progress), RunError> {
    spec.validate().map_err(RunError::Invalid)?;
    let mut models = BTreeSet::new();
    let mut total = 0u64;
    let need_models = spec.by_model && spec.variant == Variant::Standard;
    if need_models {
        walk(store, &spec.filter, cancel, |keys| {
            total += keys.len() as u64;
            for k in &keys {
                models.extend(store.key_models(k.id)?);
            }
            Ok(())
        })?;
    } else {
        // The key indexes count matches without reading every key record.
        total = store
            .query_keys(
                &spec.filter,
                &crate::store::KeyOrder::default(),
                None,
                0,
                true,
            )?
            .total_count
            .unwrap_or(0);
    }
    let mut state = Progress {
        total,
        ..Progress::default()
    };
    progress(state);
    match spec.variant {
        Variant::Standard => {
            let models: Vec<String> = models.into_iter().collect();
            run_standard(store, spec, env, out, models, cancel, &mut state, progress)
        }
        Variant::Migration => run_migration(store, spec, out, cancel, &mut state, progress),
    }
}

/// Names of bound accounts and groups, looked up once each.
#[derive(Default)]
struct BindingNames {
    accounts: HashMap<AccountId, Option<String>>,
    groups: HashMap<GroupId, Option<String>>,
}

impl BindingNames {
    fn name(&mut self, store: &Store, binding: KeyBinding) -> Result<Option<&str>, RunError> {
        Ok(match binding {
            KeyBinding::None => None,
            KeyBinding::Account(id) => {
                if let std::collections::hash_map::Entry::Vacant(e) = self.accounts.entry(id) {
                    e.insert(store.get_account(id)?.map(|a| a.name));
                }
                self.accounts.get(&id).and_then(|n| n.as_deref())
            }
            KeyBinding::Group(id) => {
                if let std::collections::hash_map::Entry::Vacant(e) = self.groups.entry(id) {
                    e.insert(store.get_group(id)?.map(|g| g.name));
                }
                self.groups.get(&id).and_then(|n| n.as_deref())
            }
        })
    }
}

/// The masker of a STANDARD export, compiled once per run.
fn masker(spec: &ExportSpec, env: &RunEnv) -> Option<Masker> {
    let mode = match spec.masking {
        Masking::None => return None,
        Masking::Full => MaskMode::Full,
        Masking::Partial => MaskMode::Partial {
            keep_start: 4,
            keep_end: 4,
        },
        Masking::Pseudonym => MaskMode::Pseudonym,
    };
    Some(Masker::new(MaskConfig {
        mode,
        relay_key_prefixes: env.relay_key_prefixes.clone(),
        pseudonym_key: env.pseudonym_key.clone(),
        ..MaskConfig::default()
    }))
}

#[allow(clippy::too_many_arguments)]
fn run_standard<W: Write>(
    store: &Store,
    spec: &ExportSpec,
    env: &RunEnv,
    out: W,
    models: Vec<String>,
    cancel: &AtomicBool,
    state: &mut Progress,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, Progress), RunError> {
    let by_model = !models.is_empty();
    let rows = KeyRows::new(spec.row_options(models), masker(spec, env))?;
    let options = WriterOptions {
        format: spec.format,
        csv_bom: spec.csv_bom,
        csv_neutralize: true,
        fields: spec.fields.clone(),
    };
    let mut writer = Writer::new(out, rows.schema(), &options)?;
    let mut names = BindingNames::default();
    let mut breakdown: Vec<(String, UsageTotals)> = Vec::new();
    walk(store, &spec.filter, cancel, |keys| {
        for k in &keys {
            let lifetime = store.usage_total(&UsageSubject::Key(k.id), None)?;
            let period = match spec.period {
                Some(range) => Some(store.usage_total(&UsageSubject::Key(k.id), Some(range))?),
                None => None,
            };
            breakdown.clear();
            if by_model {
                for m in store.key_models(k.id)? {
                    let t =
                        store.usage_total(&UsageSubject::KeyModel(k.id, m.clone()), spec.period)?;
                    breakdown.push((m, t));
                }
            }
            let binding_name = names.name(store, k.binding)?;
            let usage = KeyUsage {
                lifetime,
                period,
                by_model: &breakdown,
                binding_name,
            };
            writer.write(&rows.row(k, usage))?;
        }
        state.processed += keys.len() as u64;
        state.bytes = writer.bytes_written();
        progress(*state);
        Ok(())
    })?;
    let out = writer.finish()?;
    Ok((out, *state))
}

/// The tag every migration record carries, so an import recognises the
/// format (and refuses a STANDARD export, which has no hashes).
pub const MIGRATION_FORMAT: &str = "claude-relay.keys.migration/1";

/// One key in a MIGRATION export: every stored setting, the SHA-256 of the
/// secret (never the secret), and the binding with both id and name so a
/// target instance with other ids can still resolve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationKey {
    pub format: String,
    pub id: KeyId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub key_hash: String,
    #[serde(default)]
    pub display_prefix: String,
    pub status: KeyStatus,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    pub cost_multiplier: f64,
    #[serde(default)]
    pub policy: crate::limits::KeyPolicy,
    #[serde(default)]
    pub binding: MigrationBinding,
    /// Legacy (claude-relay-service) hash data of keys imported from it and
    /// not yet upgraded to the native hash. This store keeps none yet, so
    /// it is never written; the slot exists so files from an instance that
    /// has it import here without loss of the other fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<serde_json::Value>,
}

/// A binding as carried in a migration file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationBinding {
    /// `none`, `account` or `group`.
    pub kind: String,
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    #[serde(default)]
    pub name: Option<String>,
}

impl MigrationKey {
    pub fn from_key(k: &ApiKey, binding_name: Option<&str>) -> MigrationKey {
        let (kind, id) = match k.binding {
            KeyBinding::None => ("none", None),
            KeyBinding::Account(a) => ("account", Some(a.0)),
            KeyBinding::Group(g) => ("group", Some(g.0)),
        };
        MigrationKey {
            format: MIGRATION_FORMAT.to_string(),
            id: k.id,
            name: k.name.clone(),
            description: k.description.clone(),
            key_hash: k.key_hash.clone(),
            display_prefix: k.display_prefix.clone(),
            status: k.status,
            tags: k.tags.clone(),
            created_at: k.created_at,
            updated_at: k.updated_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            cost_multiplier: k.cost_multiplier,
            policy: k.policy.clone(),
            binding: MigrationBinding {
                kind: kind.to_string(),
                id,
                name: binding_name.map(str::to_string),
            },
            legacy: None,
        }
    }
}

/// Counts bytes on their way to the output.
struct Counter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn run_migration<W: Write>(
    store: &Store,
    spec: &ExportSpec,
    out: W,
    cancel: &AtomicBool,
    state: &mut Progress,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, Progress), RunError> {
    let json = spec.format == Format::Json;
    let mut w = Counter {
        inner: std::io::BufWriter::with_capacity(64 * 1024, out),
        bytes: 0,
    };
    if json {
        w.write_all(b"[")?;
    }
    let mut names = BindingNames::default();
    let mut first = true;
    walk(store, &spec.filter, cancel, |keys| {
        for k in &keys {
            let name = names.name(store, k.binding)?;
            let rec = MigrationKey::from_key(k, name);
            if json {
                w.write_all(if first { b"\n" } else { b",\n" })?;
            }
            first = false;
            serde_json::to_writer(&mut w, &rec).map_err(std::io::Error::from)?;
            if !json {
                w.write_all(b"\n")?;
            }
        }
        state.processed += keys.len() as u64;
        state.bytes = w.bytes;
        progress(*state);
        Ok(())
    })?;
    if json {
        w.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    }
    w.flush()?;
    state.bytes = w.bytes;
    let out = w
        .inner
        .into_inner()
        .map_err(|e| RunError::from(e.into_error()))?;
    Ok((out, *state))
}
