//! The CRS Redis import in the admin API, for OWNERs only: `importRedis`
//! starts `import::run_live` against the running relay's store and returns
//! at once (an import of a large deployment outlasts a GraphQL request);
//! `redisImport(id)` reads a job and the `redisImportProgress(id)`
//! subscription pushes its phase and progress until it ends, then the
//! report. It owns the job registry (the latest jobs, in memory: a restart
//! forgets them; the imported data and the import links are in the store).
//! One import runs at a time.

use super::auth::{require_owner, services};
use super::error::GqlError;
use super::scalars::{DateTime, Usd};
use crate::domain::NanoUsd;
use crate::import::{self, report, ImportOptions, Sections};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, Subscription, ID};
use chrono::Utc;
use futures::Stream;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Finished jobs kept for `redisImport(id)`.
const KEEP_JOBS: usize = 10;
/// Progress is pushed at most this often (the importer advances per record).
const PUSH_EVERY: Duration = Duration::from_millis(200);

/// What the import reads.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ImportSection {
    Keys,
    Accounts,
    Groups,
    Usage,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ImportState {
    Running,
    Succeeded,
    Failed,
}

#[derive(InputObject)]
pub struct ImportRedisInput {
    /// `redis://[:password@]host:port/db` of the CRS deployment; only read from.
    pub redis_url: String,
    /// The CRS ENCRYPTION_KEY: decrypts account credentials and keeps the raw
    /// `cr_...` keys working. Stored sealed; never shown again.
    pub crs_encryption_key: String,
    /// Report what would be imported without writing anything.
    #[graphql(default)]
    pub dry_run: bool,
    /// Sections to import; all of them when left out.
    pub only: Option<Vec<ImportSection>>,
    /// CRS's TIMEZONE_OFFSET in hours (its date buckets use it).
    #[graphql(default = 8)]
    pub crs_timezone_offset: i32,
}

/// One import job as clients see it at a moment.
#[derive(Clone)]
struct Snapshot {
    state: ImportState,
    phase: String,
    done: u64,
    total: u64,
    finished_at: Option<chrono::DateTime<Utc>>,
    report: Option<Arc<import::Report>>,
    error: Option<String>,
}

struct Job {
    id: String,
    started_at: chrono::DateTime<Utc>,
    started_by: String,
    dry_run: bool,
    tx: watch::Sender<Snapshot>,
}

/// The latest jobs; the first one may be running.
#[derive(Default)]
pub(crate) struct Jobs {
    latest: Mutex<VecDeque<Arc<Job>>>,
}

impl Jobs {
    fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.latest.lock().iter().find(|j| j.id == id).cloned()
    }

    /// Registers a new job unless one is running.
    fn start(&self, job: Arc<Job>) -> Result<(), GqlError> {
        let mut latest = self.latest.lock();
        if let Some(running) = latest
            .iter()
            .find(|j| j.tx.borrow().state == ImportState::Running)
        {
            return Err(GqlError::Conflict(format!(
                "import {} is still running",
                running.id
            )));
        }
        latest.push_front(job);
        latest.truncate(KEEP_JOBS);
        Ok(())
    }
}

/// Feeds the importer's progress into the job's watch channel.
struct JobProgress {
    tx: watch::Sender<Snapshot>,
}

impl import::Progress for JobProgress {
    fn phase(&self, name: &str, total: u64) {
        self.tx.send_modify(|s| {
            s.phase = name.to_string();
            s.total = total;
            s.done = 0;
        });
    }
    fn advance(&self, n: u64) {
        self.tx.send_modify(|s| s.done = s.done.saturating_add(n));
    }
}

fn jobs<'a>(ctx: &Context<'a>) -> Result<&'a Jobs, GqlError> {
    ctx.data::<Jobs>()
        .map_err(|_| GqlError::internal("import jobs missing from the schema"))
}

/// The Redis password and the ENCRYPTION_KEY never appear in a job's error.
fn scrub(message: &str, opts: &ImportOptions) -> String {
    let mut out = message.to_string();
    let password = opts
        .redis_url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo.rsplit(':').next().unwrap_or(userinfo));
    for secret in [password, Some(opts.encryption_key.as_str())]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
    {
        out = out.replace(secret, "****");
    }
    out
}

fn options(input: ImportRedisInput, key_prefix: &str) -> Result<ImportOptions, GqlError> {
    let url = input.redis_url.trim().to_string();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(GqlError::bad_input(
            "redisUrl must be redis://[:password@]host:port/db (or rediss://)",
        ));
    }
    if input.crs_encryption_key.is_empty() {
        return Err(GqlError::bad_input("crsEncryptionKey is required"));
    }
    if !(-12..=14).contains(&input.crs_timezone_offset) {
        return Err(GqlError::bad_input(
            "crsTimezoneOffset must be within -12..=14",
        ));
    }
    let only = match input.only {
        None => Sections::default(),
        Some(list) if list.is_empty() => {
            return Err(GqlError::bad_input("only must name at least one section"))
        }
        Some(list) => Sections {
            keys: list.contains(&ImportSection::Keys),
            accounts: list.contains(&ImportSection::Accounts),
            groups: list.contains(&ImportSection::Groups),
            usage: list.contains(&ImportSection::Usage),
        },
    };
    Ok(ImportOptions {
        redis_url: url,
        encryption_key: input.crs_encryption_key,
        dry_run: input.dry_run,
        only,
        tz_offset_hours: input.crs_timezone_offset,
        key_prefix: key_prefix.to_string(),
    })
}

/// A CRS import job.
pub struct RedisImport {
    job: Arc<Job>,
    snap: Snapshot,
}

impl RedisImport {
    fn of(job: Arc<Job>) -> RedisImport {
        let snap = job.tx.borrow().clone();
        RedisImport { job, snap }
    }
}

#[Object]
impl RedisImport {
    async fn id(&self) -> ID {
        ID(self.job.id.clone())
    }
    async fn state(&self) -> ImportState {
        self.snap.state
    }
    async fn dry_run(&self) -> bool {
        self.job.dry_run
    }
    /// The OWNER who started it.
    async fn started_by(&self) -> &str {
        &self.job.started_by
    }
    async fn started_at(&self) -> DateTime {
        DateTime(self.job.started_at)
    }
    async fn finished_at(&self) -> Option<DateTime> {
        self.snap.finished_at.map(DateTime)
    }
    /// The section being read: `groups`, `accounts`, `keys`, `usage`.
    async fn phase(&self) -> &str {
        &self.snap.phase
    }
    /// Records of the current phase done so far, of `total`.
    async fn done(&self) -> u64 {
        self.snap.done
    }
    async fn total(&self) -> u64 {
        self.snap.total
    }
    /// Why the import failed (nothing after the failure was written).
    async fn error(&self) -> Option<&str> {
        self.snap.error.as_deref()
    }
    /// The final report, once it SUCCEEDED.
    async fn report(&self) -> Option<ImportReport> {
        self.snap.report.as_ref().map(|r| ImportReport(r.clone()))
    }
}

/// What one import read, wrote, skipped and noticed.
pub struct ImportReport(Arc<import::Report>);

#[derive(SimpleObject)]
pub struct ImportSectionReport {
    pub name: String,
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: Vec<ImportSkipped>,
}

/// A CRS record that was not imported, and why.
#[derive(SimpleObject)]
pub struct ImportSkipped {
    pub record: String,
    pub reason: String,
}

/// A field changed locally and in CRS since the last import: the local value was kept.
#[derive(SimpleObject)]
pub struct ImportConflict {
    pub record: String,
    pub field: String,
}

/// Usage moved into claude-relay's buckets by this import.
#[derive(SimpleObject)]
pub struct ImportUsageSummary {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_tokens: u64,
    pub cache_read_tokens: u64,
    pub billed_cost: Usd,
    pub hourly_buckets: u64,
}

fn section(name: &str, s: &report::Section) -> ImportSectionReport {
    ImportSectionReport {
        name: name.to_string(),
        read: s.read,
        created: s.created,
        updated: s.updated,
        unchanged: s.unchanged,
        skipped: s
            .skipped
            .iter()
            .map(|k| ImportSkipped {
                record: k.record.clone(),
                reason: k.reason.clone(),
            })
            .collect(),
    }
}

#[Object]
impl ImportReport {
    /// The Redis address, without its password.
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn dry_run(&self) -> bool {
        self.0.dry_run
    }
    async fn sections(&self) -> Vec<ImportSectionReport> {
        self.0
            .sections
            .iter()
            .map(|(name, s)| section(name, s))
            .collect()
    }
    async fn warnings(&self) -> &[String] {
        &self.0.warnings
    }
    async fn conflicts(&self) -> Vec<ImportConflict> {
        self.0
            .conflicts
            .iter()
            .map(|c| ImportConflict {
                record: c.record.clone(),
                field: c.field.clone(),
            })
            .collect()
    }
    /// For the operator, e.g. the CRS admin to create here.
    async fn notes(&self) -> &[String] {
        &self.0.notes
    }
    async fn usage(&self) -> ImportUsageSummary {
        let u = &self.0.usage;
        ImportUsageSummary {
            requests: u.requests,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_creation_tokens: u.cache_creation_tokens,
            cache_read_tokens: u.cache_read_tokens,
            billed_cost: Usd(NanoUsd(u.billed_cost_nanos)),
            hourly_buckets: u.buckets,
        }
    }
    /// The report as the `import-redis` command prints it.
    async fn text(&self) -> String {
        self.0.to_string()
    }
}

#[derive(SimpleObject)]
pub struct ImportRedisPayload {
    /// The job, RUNNING; follow it with `redisImportProgress(id)`.
    pub import: RedisImport,
}

#[derive(Default)]
pub struct ImportQuery;

#[Object]
impl ImportQuery {
    /// A recent CRS import job (OWNER only).
    async fn redis_import(&self, ctx: &Context<'_>, id: ID) -> Result<Option<RedisImport>> {
        require_owner(ctx)?;
        Ok(jobs(ctx)?.get(&id).map(RedisImport::of))
    }
}

#[derive(Default)]
pub struct ImportMutation;

#[Object]
impl ImportMutation {
    /// Starts importing a claude-relay-service deployment from its Redis
    /// into this running relay (OWNER only; one import at a time). Imported
    /// keys, accounts and groups take effect at once.
    async fn import_redis(
        &self,
        ctx: &Context<'_>,
        input: ImportRedisInput,
    ) -> Result<ImportRedisPayload> {
        let principal = require_owner(ctx)?;
        let svc = services(ctx)?;
        let opts = options(input, &svc.config.key_prefix)?;
        let (tx, _) = watch::channel(Snapshot {
            state: ImportState::Running,
            phase: "starting".into(),
            done: 0,
            total: 0,
            finished_at: None,
            report: None,
            error: None,
        });
        let job = Arc::new(Job {
            id: uuid::Uuid::now_v7().to_string(),
            started_at: Utc::now(),
            started_by: principal.admin.username.clone(),
            dry_run: opts.dry_run,
            tx,
        });
        jobs(ctx)?.start(job.clone())?;
        tracing::info!(import = %job.id, by = %job.started_by, dry_run = opts.dry_run,
            source = %import::source::redacted_url(&opts.redis_url), "CRS import started");
        let (store, limits) = (svc.store.clone(), svc.limits.clone());
        let worker = job.clone();
        // Its own thread and runtime: the importer's sled writes are
        // synchronous and would otherwise hold a relay worker for seconds.
        let spawned = std::thread::Builder::new()
            .name("crs-import".into())
            .spawn(move || {
                let _unstuck = Unstuck(worker.clone());
                let progress = JobProgress {
                    tx: worker.tx.clone(),
                };
                let result = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(import::run_live(&store, &limits, &opts, &progress)),
                    Err(e) => Err(import::Error::Options(format!(
                        "cannot start the import runtime: {e}"
                    ))),
                };
                finish(&worker, result, &opts);
            });
        if let Err(e) = spawned {
            fail(&job, format!("cannot start the import thread: {e}"));
        }
        Ok(ImportRedisPayload {
            import: RedisImport::of(job),
        })
    }
}

fn fail(job: &Job, message: String) {
    job.tx.send_modify(|s| {
        s.state = ImportState::Failed;
        s.finished_at = Some(Utc::now());
        s.error = Some(message);
    });
}

/// Fails a job whose thread ended without finishing it (a panic), so its
/// subscribers end and the next import may start.
struct Unstuck(Arc<Job>);

impl Drop for Unstuck {
    fn drop(&mut self) {
        if self.0.tx.borrow().state == ImportState::Running {
            tracing::error!(import = %self.0.id, "CRS import stopped unexpectedly");
            fail(
                &self.0,
                "the import stopped unexpectedly (see the relay log)".into(),
            );
        }
    }
}

fn finish(job: &Job, result: Result<import::Report, import::Error>, opts: &ImportOptions) {
    let now = Utc::now();
    match result {
        Ok(report) => {
            tracing::info!(import = %job.id, "CRS import finished");
            job.tx.send_modify(|s| {
                s.state = ImportState::Succeeded;
                s.finished_at = Some(now);
                s.report = Some(Arc::new(report));
            });
        }
        Err(e) => {
            let message = scrub(&e.to_string(), opts);
            tracing::warn!(import = %job.id, error = %message, "CRS import failed");
            fail(job, message);
        }
    }
}

#[derive(Default)]
pub struct ImportSubscription;

#[Subscription]
impl ImportSubscription {
    /// The job now, then its progress (at most every 200 ms) until it ends;
    /// the last item carries the report or the error.
    async fn redis_import_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = RedisImport>> {
        require_owner(ctx)?;
        let job = jobs(ctx)?
            .get(&id)
            .ok_or_else(|| GqlError::NotFound(format!("no import {}", id.as_str())))?;
        let mut rx = job.tx.subscribe();
        Ok(async_stream::stream! {
            loop {
                rx.mark_unchanged();
                let item = RedisImport::of(job.clone());
                let running = item.snap.state == ImportState::Running;
                yield item;
                if !running {
                    break;
                }
                tokio::time::sleep(PUSH_EVERY).await;
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
    }
}
