//! `import-redis`: moves a claude-relay-service (CRS) deployment into
//! claude-relay from its Redis: groups, Claude accounts (credentials
//! decrypted with the CRS ENCRYPTION_KEY and sealed again by our vault), API
//! keys (their CRS hashes kept as legacy hashes so the same raw keys keep
//! working) and usage history. Reads Redis only; writes only through
//! [`Store`]. Idempotent: records are matched by CRS id through the store's
//! import links, and a rerun merges field by field (`merge.rs`).
//!
//! # Files
//! - `source.rs`: Redis reads (SCAN + index SETs, TYPE filters, pipelines).
//! - `crypto.rs`: CRS decryption and the import source id.
//! - `fields.rs`: parsing CRS's string-typed hash fields.
//! - `merge.rs`: CRS id → our id links and the three-way field merge.
//! - `accounts.rs`: groups and Claude OAuth/Console accounts.
//! - `keys.rs`: API keys, their policy and legacy hashes.
//! - `series.rs`: placing one CRS counter series onto UTC hours (pure).
//! - `usage.rs`: usage counters → hourly buckets after the last cutoff.
//! - `report.rs`: what was read, imported, skipped, and why.

mod accounts;
pub mod crypto;
mod fields;
mod keys;
pub mod merge;
pub mod report;
mod series;
pub mod source;
mod usage;

pub use report::Report;

use crate::store::{self, Store};
use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use merge::Links;
use source::Source;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("invalid option: {0}")]
    Options(String),
    #[error("store writer task failed: {0}")]
    Writer(String),
}

/// One store write at a time on a blocking thread, so that the next batch
/// is read from Redis (and placed) while sled works on this one. Batches
/// still commit one after another, in order: `run` waits for the previous.
#[derive(Default)]
pub(crate) struct Background(Option<tokio::task::JoinHandle<Result<(), store::Error>>>);

impl Background {
    /// Waits for the write in flight, if any.
    pub(crate) async fn wait(&mut self) -> Result<(), Error> {
        if let Some(task) = self.0.take() {
            task.await.map_err(|e| Error::Writer(e.to_string()))??;
        }
        Ok(())
    }

    /// Starts `write` once the previous write has committed.
    pub(crate) async fn run(
        &mut self,
        write: impl FnOnce() -> Result<(), store::Error> + Send + 'static,
    ) -> Result<(), Error> {
        self.wait().await?;
        self.0 = Some(tokio::task::spawn_blocking(write));
        Ok(())
    }
}

/// Which parts to import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sections {
    pub keys: bool,
    pub accounts: bool,
    pub groups: bool,
    pub usage: bool,
}

impl Default for Sections {
    fn default() -> Self {
        Sections {
            keys: true,
            accounts: true,
            groups: true,
            usage: true,
        }
    }
}

impl Sections {
    /// Parses `keys,accounts,groups,usage` (any subset, any order).
    pub fn parse(list: &str) -> Result<Sections, Error> {
        let mut s = Sections {
            keys: false,
            accounts: false,
            groups: false,
            usage: false,
        };
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "keys" => s.keys = true,
                "accounts" => s.accounts = true,
                "groups" => s.groups = true,
                "usage" => s.usage = true,
                other => {
                    return Err(Error::Options(format!(
                        "unknown section {other:?} (expected keys, accounts, groups, usage)"
                    )))
                }
            }
        }
        Ok(s)
    }
}

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// `redis://[:password@]host:port/db`.
    pub redis_url: String,
    /// CRS's ENCRYPTION_KEY, as-is.
    pub encryption_key: String,
    pub dry_run: bool,
    pub only: Sections,
    /// CRS's TIMEZONE_OFFSET in hours (its day/hour bucket names use it).
    pub tz_offset_hours: i32,
    /// Prefix for display forms of imported keys (e.g. `cr_`).
    pub key_prefix: String,
}

/// Progress callbacks (the CLI draws a bar; tests pass [`NoProgress`]).
pub trait Progress: Send + Sync {
    fn phase(&self, name: &str, total: u64);
    fn advance(&self, n: u64);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// A terminal progress bar (hidden when stderr is not a terminal).
pub struct BarProgress {
    bar: indicatif::ProgressBar,
}

impl Default for BarProgress {
    fn default() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        BarProgress { bar }
    }
}

impl BarProgress {
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for BarProgress {
    fn phase(&self, name: &str, total: u64) {
        self.bar.set_message(name.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
}

/// What every section works with.
pub(crate) struct Ctx<'a> {
    store: Option<&'a Store>,
    opts: &'a ImportOptions,
    src: Source,
    cipher: crypto::CrsCipher,
    links: Links,
    report: Report,
    progress: &'a dyn Progress,
    now: DateTime<Utc>,
    /// CRS's fixed offset, for bucket names.
    offset: FixedOffset,
    /// The same offset as an IANA zone, for imported budgets.
    zone: Option<Tz>,
    /// The running relay's limit counters, when importing into a live relay:
    /// seeded budgets go there (the relay checkpoints its own counters over
    /// the stored ones).
    live_limits: Option<&'a crate::limits::Limits>,
}

impl Ctx<'_> {
    /// The store to write to, unless dry-running.
    fn writer(&self) -> Option<&Store> {
        if self.opts.dry_run {
            None
        } else {
            self.store
        }
    }
}

/// The IANA name of a whole-hour UTC offset (`Etc/GMT-8` is UTC+8).
pub fn offset_zone(hours: i32) -> Option<Tz> {
    let name = match hours {
        0 => "UTC".to_string(),
        h if h > 0 => format!("Etc/GMT-{h}"),
        h => format!("Etc/GMT+{}", -h),
    };
    name.parse().ok()
}

/// Runs the import. `store` is None only for a dry run against a data dir
/// that has no store yet (then everything counts as new).
pub async fn run(
    store: Option<&Store>,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    run_with(store, None, opts, progress).await
}

/// Runs the import into the store of a running relay: the same as [`run`],
/// except that budget counters seeded from CRS spend go into the relay's
/// live `limits` (store writes reach the relay's caches through store events).
pub async fn run_live(
    store: &Store,
    limits: &crate::limits::Limits,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    run_with(Some(store), Some(limits), opts, progress).await
}

async fn run_with(
    store: Option<&Store>,
    live_limits: Option<&crate::limits::Limits>,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    if opts.encryption_key.is_empty() {
        return Err(Error::Options("the CRS ENCRYPTION_KEY is empty".into()));
    }
    if store.is_none() && !opts.dry_run {
        return Err(Error::Options(
            "a store is required unless dry-running".into(),
        ));
    }
    let offset = FixedOffset::east_opt(opts.tz_offset_hours.saturating_mul(3600))
        .filter(|_| (-12..=14).contains(&opts.tz_offset_hours))
        .ok_or_else(|| {
            Error::Options(format!(
                "--crs-timezone-offset {} is outside -12..=14",
                opts.tz_offset_hours
            ))
        })?;
    let source_id = crypto::source_id(&opts.encryption_key);
    let src = Source::connect(&opts.redis_url).await?;
    let mut ctx = Ctx {
        store,
        opts,
        src,
        cipher: crypto::CrsCipher::new(&opts.encryption_key),
        links: Links::load(store, &source_id)?,
        report: Report {
            dry_run: opts.dry_run,
            source: source::redacted_url(&opts.redis_url),
            source_id: source_id.clone(),
            ..Report::default()
        },
        progress,
        now: Utc::now(),
        offset,
        zone: offset_zone(opts.tz_offset_hours),
        live_limits,
    };
    for (on, name) in [
        (opts.only.groups, "groups"),
        (opts.only.accounts, "accounts"),
        (opts.only.keys, "keys"),
        (opts.only.usage, "usage"),
    ] {
        if on {
            ctx.report.section(name);
        }
    }
    // The record kinds (not the numerous usage counters: those are walked
    // once, by their own pattern).
    let mut census: Vec<&str> = vec![
        "apikey:",
        "account_group:",
        "claude:account:",
        "claude_console_account:",
        "session:",
        "account_usage:",
    ];
    census.extend(accounts::OTHER_PLATFORMS.iter().map(|p| p.0));
    ctx.src.census(&census).await?;
    accounts::verify_encryption_key(&mut ctx).await?;
    if let Some(store) = ctx.writer() {
        store.put_legacy_source(&source_id, &ctx.report.source, &opts.encryption_key)?;
    }
    ctx.report.notes.push(
        "admins are not imported (CRS keeps the admin password in plain text in data/init.json); \
         create the CRS admin here with the admin API or RELAY_ADMIN_USER/RELAY_ADMIN_PASSWORD"
            .into(),
    );
    if let Some(admin) = admin_name(&mut ctx).await? {
        ctx.report
            .notes
            .push(format!("the CRS admin user is {admin:?}"));
    }
    let started = std::time::Instant::now();
    let timed = |section: &str, since: std::time::Instant| {
        tracing::info!(
            section,
            seconds = since.elapsed().as_secs_f64(),
            "import section done"
        );
    };
    if opts.only.groups {
        let t = std::time::Instant::now();
        accounts::import_groups(&mut ctx).await?;
        timed("groups", t);
    }
    if opts.only.accounts {
        let t = std::time::Instant::now();
        accounts::import_accounts(&mut ctx).await?;
        timed("accounts", t);
    }
    if opts.only.keys {
        let t = std::time::Instant::now();
        keys::import_keys(&mut ctx).await?;
        timed("keys", t);
    }
    if opts.only.usage {
        let t = std::time::Instant::now();
        usage::import_usage(&mut ctx).await?;
        timed("usage", t);
    }
    timed("all", started);
    if let Some(store) = ctx.writer() {
        store.flush().await?;
    }
    Ok(ctx.report)
}

/// The CRS admin's name: CRS caches it in `session:admin_credentials` for
/// 24 h after each start (the password lives in data/init.json); failing
/// that, a web session (`session:{token}`) names who logged in.
async fn admin_name(ctx: &mut Ctx<'_>) -> Result<Option<String>, Error> {
    let mut candidates = vec!["session:admin_credentials".to_string()];
    let sessions = ctx.src.scan("session:*").await?;
    candidates.extend(sessions.into_iter().filter(|k| {
        k.strip_prefix("session:")
            .is_some_and(|t| !t.contains(':') && t != "admin_credentials")
    }));
    let types = ctx.src.types(&candidates).await?;
    let hashes: Vec<String> = candidates
        .into_iter()
        .zip(types)
        .filter(|(_, t)| t == "hash")
        .map(|(k, _)| k)
        .collect();
    let maps = ctx.src.hgetall_many(&hashes).await?;
    Ok(maps
        .into_iter()
        .filter_map(|m| m.get("username").cloned())
        .find(|u| !u.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_zones() {
        assert!(!Sections::parse("keys,usage").unwrap().accounts);
        assert!(Sections::parse("keys,bogus").is_err());
        assert_eq!(offset_zone(8), Some(chrono_tz::Etc::GMTMinus8));
        assert_eq!(offset_zone(-5), Some(chrono_tz::Etc::GMTPlus5));
        assert_eq!(offset_zone(0), Some(chrono_tz::UTC));
    }
}
