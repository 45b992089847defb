//! Key exports and imports in the admin API: `startExport`, `exports`,
//! `export(id)`, `cancelExport`, `deleteExport`, `createExportDownload`,
//! `importApiKeys` and the `exportProgress` subscription, plus the HTTP
//! download route (`GET /exports/download/{token}`). Jobs themselves run in
//! `export::service`; this file owns the API shapes and who may do what:
//!
//! - any admin may start a STANDARD export; a VIEWER's is always masked;
//! - MIGRATION exports (key hashes, unmasked) and imports are OWNER only,
//!   and so is downloading a MIGRATION file;
//! - cancelling and deleting need a writer, or the admin who started it.

use super::auth::{require_admin, require_writer, services, Principal};
use super::connection::{paginate, PageInfo, SortKey, DEFAULT_PAGE};
use super::error::GqlError;
use super::keys::ApiKeyFilter;
use super::scalars::DateTime;
use crate::domain::Role;
use crate::export::format::Format;
use crate::export::import;
use crate::export::jobs::{ExportSpec, Masking, PeriodPreset, Variant};
use crate::export::service::{Exports, ServiceError};
use crate::store::{ExportRecord, ExportState as StoreState};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, Subscription, ID};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::Stream;

/// The path prefix of download URLs.
pub const DOWNLOAD_PATH: &str = "/exports/download";

/// Output format of an export.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ExportFormat {
    /// One JSON array, one nested object per key.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// A header row and one flat row per key (nested values as dotted columns).
    Csv,
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Json => Format::Json,
            ExportFormat::Ndjson => Format::Ndjson,
            ExportFormat::Csv => Format::Csv,
        }
    }
}

impl From<Format> for ExportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Json => ExportFormat::Json,
            Format::Ndjson => ExportFormat::Ndjson,
            Format::Csv => ExportFormat::Csv,
        }
    }
}

/// What an export carries.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum ExportVariant {
    /// Settings and usage, free text masked.
    #[default]
    Standard,
    /// For another claude-relay instance: key hashes, policy and bindings
    /// (ids and names), unmasked. JSON or NDJSON; OWNER only.
    Migration,
}

/// How free text (names, descriptions, tags, binding names) is masked.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum ExportMasking {
    /// As stored (not allowed for the VIEWER role).
    None,
    /// `[REDACTED:kind]`.
    Full,
    /// A few leading and trailing characters kept.
    #[default]
    Partial,
    /// A stable keyed pseudonym per value (`email#1a2b3c4d5e6f`).
    Pseudonym,
}

/// The period of the `usage.period` columns, in the configured time zone.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum ExportUsagePeriod {
    /// No period block: lifetime totals only.
    #[default]
    Lifetime,
    /// Since midnight.
    Today,
    /// Since the first of this month.
    ThisMonth,
    /// The whole previous calendar month.
    LastMonth,
    /// The last 7 × 24 hours.
    Last7Days,
    /// The last 30 × 24 hours.
    Last30Days,
}

/// Where an export job is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ExportState {
    /// Waiting for the export pool.
    Queued,
    /// Writing rows.
    Running,
    /// The file is ready to download.
    Completed,
    /// Stopped by an error (see `errors`) or a restart; no file.
    Failed,
    /// Stopped on request; no file.
    Cancelled,
}

impl From<StoreState> for ExportState {
    fn from(s: StoreState) -> Self {
        match s {
            StoreState::Queued => ExportState::Queued,
            StoreState::Running => ExportState::Running,
            StoreState::Completed => ExportState::Completed,
            StoreState::Failed => ExportState::Failed,
            StoreState::Cancelled => ExportState::Cancelled,
        }
    }
}

/// An export job of relay keys.
pub struct ExportNode(pub ExportRecord);

impl ExportNode {
    fn spec(&self) -> Option<ExportSpec> {
        serde_json::from_value(self.0.spec.clone()).ok()
    }
}

/// An export job of relay keys: its state, counts and file.
#[Object(name = "Export")]
impl ExportNode {
    /// The job's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Where the job is.
    async fn state(&self) -> ExportState {
        self.0.state.into()
    }
    /// The file's format.
    async fn format(&self) -> Option<ExportFormat> {
        self.spec().map(|s| s.format.into())
    }
    /// STANDARD or MIGRATION.
    async fn variant(&self) -> Option<ExportVariant> {
        self.spec().map(|s| match s.variant {
            Variant::Standard => ExportVariant::Standard,
            Variant::Migration => ExportVariant::Migration,
        })
    }
    /// Keys written so far.
    async fn processed(&self) -> u64 {
        self.0.processed
    }
    /// Keys matching the filter (known once the job has counted them).
    async fn total(&self) -> u64 {
        self.0.total
    }
    /// Bytes written so far; the file size once completed.
    async fn bytes(&self) -> u64 {
        self.0.bytes
    }
    /// What went wrong, last cause last.
    async fn errors(&self) -> &[String] {
        &self.0.errors
    }
    /// The admin who started it.
    async fn requested_by(&self) -> &str {
        &self.0.requested_by
    }
    /// The download's file name, once completed.
    async fn file_name(&self) -> Option<&str> {
        self.0.file_name.as_deref()
    }
    /// When it was requested.
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    /// When it left the queue.
    async fn started_at(&self) -> Option<DateTime> {
        self.0.started_at.map(DateTime)
    }
    /// When it reached a terminal state.
    async fn finished_at(&self) -> Option<DateTime> {
        self.0.finished_at.map(DateTime)
    }
    /// When the job and its file are removed (retention).
    async fn expires_at(&self) -> DateTime {
        self.0.expires_at.into()
    }
}

/// One export job in a page.
#[derive(SimpleObject)]
pub struct ExportEdge {
    /// Opaque position, for `after`.
    pub cursor: String,
    /// The job.
    pub node: ExportNode,
}

/// Export jobs, newest first.
#[derive(SimpleObject)]
pub struct ExportConnection {
    /// Jobs in total, across pages.
    pub total_count: usize,
    /// This page's jobs.
    pub edges: Vec<ExportEdge>,
    /// Where this page is.
    pub page_info: PageInfo,
}

/// What to export.
#[derive(InputObject)]
pub struct StartExportInput {
    /// JSON, NDJSON or CSV.
    pub format: ExportFormat,
    /// STANDARD (default) or MIGRATION (OWNER only).
    #[graphql(default)]
    pub variant: ExportVariant,
    /// The keys: the same filter as `apiKeys`.
    pub filter: Option<ApiKeyFilter>,
    /// Columns or column groups to keep (e.g. `name`, `usage.period`,
    /// `budgets`); all when absent. STANDARD only. Unknown names are
    /// refused.
    pub fields: Option<Vec<String>>,
    /// The `usage.period` block; `usageFrom`/`usageTo` override it.
    #[graphql(default)]
    pub usage_period: ExportUsagePeriod,
    /// Start of a custom usage period (with `usageTo`, else now).
    pub usage_from: Option<DateTime>,
    /// End (exclusive) of a custom usage period; now when absent.
    pub usage_to: Option<DateTime>,
    /// Add the per-model breakdown of the period.
    #[graphql(default)]
    pub by_model: bool,
    /// How free text is masked (default PARTIAL; a MIGRATION export is
    /// never masked).
    #[graphql(default)]
    pub masking: ExportMasking,
    /// Start CSV with a UTF-8 byte order mark (for Excel).
    #[graphql(default)]
    pub csv_bom: bool,
}

/// The started job.
#[derive(SimpleObject)]
pub struct StartExportPayload {
    /// The new job's id (also `export.id`).
    pub id: ID,
    /// The job as recorded (QUEUED).
    pub export: ExportNode,
}

/// Which export to cancel.
#[derive(InputObject)]
pub struct CancelExportInput {
    /// The job's id.
    pub id: ID,
}

/// The job after the request (it reaches CANCELLED within one batch).
#[derive(SimpleObject)]
pub struct CancelExportPayload {
    /// The job.
    pub export: ExportNode,
}

/// Which export to delete.
#[derive(InputObject)]
pub struct DeleteExportInput {
    /// The job's id.
    pub id: ID,
}

/// The deleted job.
#[derive(SimpleObject)]
pub struct DeleteExportPayload {
    /// The id of the job that was removed.
    pub deleted_id: ID,
}

/// Which export to download.
#[derive(InputObject)]
pub struct CreateExportDownloadInput {
    /// A COMPLETED job's id.
    pub id: ID,
}

/// A one-time download link: it works once, until `expiresAt`.
#[derive(SimpleObject)]
pub struct CreateExportDownloadPayload {
    /// Path of the download on this server: `/exports/download/<token>`.
    pub url: String,
    /// After this instant the link no longer works.
    pub expires_at: DateTime,
}

/// Keys to import.
#[derive(InputObject)]
pub struct ImportApiKeysInput {
    /// The content of a MIGRATION export (JSON array or NDJSON). Bodies are
    /// limited to 1 MB: use `claude-relay import keys` for larger files.
    pub data: String,
    /// Report what would happen without writing anything.
    #[graphql(default)]
    pub dry_run: bool,
}

/// What happened to one imported key.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ImportOutcome {
    /// New on this instance.
    Created,
    /// Settings changed to the file's.
    Updated,
    /// Already as in the file.
    Unchanged,
    /// Not imported: another key has its secret or its name.
    Conflict,
}

/// One imported key with a change, a conflict or an unresolved binding.
#[derive(SimpleObject)]
pub struct ImportApiKeysItem {
    /// The key's id (the same on both instances).
    pub id: ID,
    /// The key's name.
    pub name: String,
    /// What happened to it.
    pub outcome: ImportOutcome,
    /// Why (conflicts) or which binding was unresolved.
    pub message: Option<String>,
}

/// The result of an import (or, with `dryRun`, what it would be).
#[derive(SimpleObject)]
pub struct ImportApiKeysPayload {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Keys new to this instance.
    pub created: u64,
    /// Keys whose settings changed.
    pub updated: u64,
    /// Keys already as in the file.
    pub unchanged: u64,
    /// Keys not imported (see `items`).
    pub conflicts: u64,
    /// Keys whose account or group does not exist here (imported unbound).
    pub unresolved_bindings: u64,
    /// Per key, at most 1000.
    pub items: Vec<ImportApiKeysItem>,
}

impl From<import::ImportReport> for ImportApiKeysPayload {
    fn from(r: import::ImportReport) -> Self {
        ImportApiKeysPayload {
            dry_run: r.dry_run,
            created: r.created,
            updated: r.updated,
            unchanged: r.unchanged,
            conflicts: r.conflicts,
            unresolved_bindings: r.unresolved_bindings,
            items: r
                .items
                .into_iter()
                .map(|i| ImportApiKeysItem {
                    id: ID(i.id),
                    name: i.name,
                    outcome: match i.outcome {
                        import::Outcome::Created => ImportOutcome::Created,
                        import::Outcome::Updated => ImportOutcome::Updated,
                        import::Outcome::Unchanged => ImportOutcome::Unchanged,
                        import::Outcome::Conflict => ImportOutcome::Conflict,
                    },
                    message: i.message,
                })
                .collect(),
        }
    }
}

/// One progress event of a running export.
#[derive(SimpleObject, Clone, Debug)]
pub struct ExportProgress {
    /// The job's id.
    pub id: ID,
    /// Where the job is; the last event's state is terminal.
    pub state: ExportState,
    /// Keys written so far.
    pub processed: u64,
    /// Keys matching the filter.
    pub total: u64,
    /// Bytes written so far.
    pub bytes: u64,
    /// Keys per second since the job started.
    pub rate: f64,
    /// Seconds left at the current rate, when known.
    pub eta_seconds: Option<f64>,
}

fn exports_of<'a>(ctx: &Context<'a>) -> Result<&'a Exports, GqlError> {
    services(ctx)?
        .exports
        .as_ref()
        .ok_or_else(|| GqlError::internal("the export service did not start"))
}

impl From<ServiceError> for GqlError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => GqlError::NotFound("no export with this id".into()),
            ServiceError::Invalid(m) => GqlError::BadUserInput(m),
            ServiceError::Conflict(m) => GqlError::Conflict(m),
            ServiceError::Store(e) => e.into(),
            ServiceError::Io(e) => GqlError::internal(format!("export files: {e}")),
        }
    }
}

fn export_id(id: &ID) -> Result<uuid::Uuid, GqlError> {
    uuid::Uuid::parse_str(id.as_str()).map_err(|_| GqlError::bad_input("id is not an export id"))
}

fn require_owner(p: &Principal, what: &str) -> Result<(), GqlError> {
    if p.admin.role == Role::Owner {
        Ok(())
    } else {
        Err(GqlError::Forbidden(format!("{what} is for the OWNER role")))
    }
}

/// Writers may manage every job; others only their own.
fn may_manage(p: &Principal, r: &ExportRecord) -> Result<(), GqlError> {
    match p.admin.role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Viewer if r.requested_by == p.admin.username => Ok(()),
        Role::Viewer => Err(GqlError::Forbidden(
            "a VIEWER may manage only exports they started".into(),
        )),
    }
}

fn preset(p: ExportUsagePeriod) -> Option<PeriodPreset> {
    Some(match p {
        ExportUsagePeriod::Lifetime => return None,
        ExportUsagePeriod::Today => PeriodPreset::Today,
        ExportUsagePeriod::ThisMonth => PeriodPreset::ThisMonth,
        ExportUsagePeriod::LastMonth => PeriodPreset::LastMonth,
        ExportUsagePeriod::Last7Days => PeriodPreset::Last7Days,
        ExportUsagePeriod::Last30Days => PeriodPreset::Last30Days,
    })
}

#[derive(Default)]
pub struct ExportQuery;

#[Object]
impl ExportQuery {
    /// Export jobs, newest first (expired ones are gone).
    async fn exports(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
    ) -> Result<ExportConnection> {
        require_admin(ctx)?;
        let all = exports_of(ctx)?.list().map_err(GqlError::from)?;
        let page = paginate(
            all,
            |r: &ExportRecord| SortKey::time(Some(r.created_at), r.id),
            "exports",
            true,
            first.unwrap_or(DEFAULT_PAGE),
            after.as_deref(),
        )?;
        Ok(ExportConnection {
            total_count: page.total_count,
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, r)| ExportEdge {
                    cursor,
                    node: ExportNode(r),
                })
                .collect(),
            page_info: page.page_info,
        })
    }

    /// One export job, or null.
    async fn export(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ExportNode>> {
        require_admin(ctx)?;
        let id = export_id(&id)?;
        Ok(exports_of(ctx)?
            .get(id)
            .map_err(GqlError::from)?
            .map(ExportNode))
    }
}

#[derive(Default)]
pub struct ExportMutation;

#[Object]
impl ExportMutation {
    /// Starts an export job; follow it with `exportProgress` or `export(id)`
    /// and fetch the file through `createExportDownload`.
    async fn start_export(
        &self,
        ctx: &Context<'_>,
        input: StartExportInput,
    ) -> Result<StartExportPayload> {
        let p = require_writer(ctx)?;
        let svc = services(ctx)?;
        let variant = match input.variant {
            ExportVariant::Standard => Variant::Standard,
            ExportVariant::Migration => {
                require_owner(&p, "a MIGRATION export")?;
                Variant::Migration
            }
        };
        let masking = match input.masking {
            ExportMasking::None if p.admin.role == Role::Viewer => {
                return Err(GqlError::Forbidden(
                    "the VIEWER role sees free text masked: choose a masking mode".into(),
                )
                .into())
            }
            ExportMasking::None => Masking::None,
            ExportMasking::Full => Masking::Full,
            ExportMasking::Partial => Masking::Partial,
            ExportMasking::Pseudonym => Masking::Pseudonym,
        };
        let tz = crate::limits::parse_time_zone(&svc.config.time_zone)
            .map_err(|e| GqlError::internal(format!("configured time zone: {e}")))?;
        let now = Utc::now();
        let period = match (input.usage_from, input.usage_to) {
            (Some(from), to) => Some((from.0, to.map_or(now, |t| t.0))),
            (None, Some(_)) => return Err(GqlError::bad_input("usageTo needs usageFrom").into()),
            (None, None) => preset(input.usage_period).and_then(|p| p.range(tz, now)),
        };
        let filter = match &input.filter {
            Some(f) => f.to_key_filter(tz)?,
            None => Default::default(),
        };
        let spec = ExportSpec {
            format: input.format.into(),
            variant,
            filter,
            fields: input.fields,
            period,
            by_model: input.by_model,
            masking,
            csv_bom: input.csv_bom,
        };
        let record = exports_of(ctx)?
            .start_job(spec, &p.admin.username)
            .map_err(GqlError::from)?;
        tracing::info!(export.id = %record.id, admin = %p.admin.username, "export started");
        Ok(StartExportPayload {
            id: ID(record.id.to_string()),
            export: ExportNode(record),
        })
    }

    /// Stops a queued or running export (its partial file is removed). A
    /// finished export is returned unchanged.
    async fn cancel_export(
        &self,
        ctx: &Context<'_>,
        input: CancelExportInput,
    ) -> Result<CancelExportPayload> {
        let p = require_writer(ctx)?;
        let exports = exports_of(ctx)?;
        let id = export_id(&input.id)?;
        let r = exports
            .get(id)
            .map_err(GqlError::from)?
            .ok_or_else(|| GqlError::NotFound("no export with this id".into()))?;
        may_manage(&p, &r)?;
        let r = exports.cancel(id).map_err(GqlError::from)?;
        Ok(CancelExportPayload {
            export: ExportNode(r),
        })
    }

    /// Removes an export job and its file (cancelling it if it runs).
    async fn delete_export(
        &self,
        ctx: &Context<'_>,
        input: DeleteExportInput,
    ) -> Result<DeleteExportPayload> {
        let p = require_writer(ctx)?;
        let exports = exports_of(ctx)?;
        let id = export_id(&input.id)?;
        let r = exports
            .get(id)
            .map_err(GqlError::from)?
            .ok_or_else(|| GqlError::NotFound("no export with this id".into()))?;
        may_manage(&p, &r)?;
        exports.delete(id).map_err(GqlError::from)?;
        Ok(DeleteExportPayload {
            deleted_id: input.id,
        })
    }

    /// A one-time, short-lived (5 minutes) download link for a completed
    /// export. The link carries its own token: never a session token.
    async fn create_export_download(
        &self,
        ctx: &Context<'_>,
        input: CreateExportDownloadInput,
    ) -> Result<CreateExportDownloadPayload> {
        let p = require_writer(ctx)?;
        let exports = exports_of(ctx)?;
        let id = export_id(&input.id)?;
        let r = exports
            .get(id)
            .map_err(GqlError::from)?
            .ok_or_else(|| GqlError::NotFound("no export with this id".into()))?;
        let node = ExportNode(r);
        if node.spec().map(|s| s.variant) == Some(Variant::Migration) {
            require_owner(&p, "downloading a MIGRATION export")?;
        }
        may_manage(&p, &node.0)?;
        let (token, expires_at) = exports.create_download(id).map_err(GqlError::from)?;
        Ok(CreateExportDownloadPayload {
            url: format!("{DOWNLOAD_PATH}/{token}"),
            expires_at: expires_at.into(),
        })
    }

    /// Imports the keys of a MIGRATION export (OWNER only). Idempotent:
    /// keys are matched by id and hash; `dryRun` reports without writing.
    async fn import_api_keys(
        &self,
        ctx: &Context<'_>,
        input: ImportApiKeysInput,
    ) -> Result<ImportApiKeysPayload> {
        let p = require_admin(ctx)?;
        require_owner(&p, "importing keys")?;
        let svc = services(ctx)?;
        let records = import::parse(&input.data).map_err(|e| GqlError::bad_input(e.to_string()))?;
        let _guard = svc.writes.lock().await;
        let store = svc.store.clone();
        let dry_run = input.dry_run;
        let report = tokio::task::spawn_blocking(move || import::import(&store, &records, dry_run))
            .await
            .map_err(|e| GqlError::internal(format!("import task: {e}")))?
            .map_err(|e| match e {
                import::ImportError::Store(e) => GqlError::from(e),
                other => GqlError::bad_input(other.to_string()),
            })?;
        tracing::info!(
            admin = %p.admin.username,
            dry_run,
            created = report.created,
            updated = report.updated,
            conflicts = report.conflicts,
            "api keys imported"
        );
        Ok(report.into())
    }
}

/// How often a running export pushes progress at most.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Default)]
pub struct ExportSubscription;

#[Subscription]
impl ExportSubscription {
    /// Progress of an export, at most five events a second, in order; the
    /// last event has a terminal state (COMPLETED, FAILED or CANCELLED) and
    /// the stream then ends. A finished export yields one event.
    async fn export_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = ExportProgress>> {
        require_admin(ctx)?;
        let exports = exports_of(ctx)?.clone();
        let uuid = export_id(&id)?;
        let first = exports
            .get(uuid)
            .map_err(GqlError::from)?
            .ok_or_else(|| GqlError::NotFound("no export with this id".into()))?;
        let rx = exports.watch(uuid);
        Ok(async_stream::stream! {
            let event = |state: StoreState, p: crate::export::jobs::Progress, started: Option<std::time::Instant>| {
                let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                let rate = if secs > 0.0 { p.processed as f64 / secs } else { 0.0 };
                let eta = (rate > 0.0 && !state.is_terminal())
                    .then(|| p.total.saturating_sub(p.processed) as f64 / rate);
                ExportProgress {
                    id: id.clone(),
                    state: state.into(),
                    processed: p.processed,
                    total: p.total,
                    bytes: p.bytes,
                    rate,
                    eta_seconds: eta,
                }
            };
            let Some(mut rx) = rx else {
                // Not running (finished, or interrupted): the record is final.
                let p = crate::export::jobs::Progress {
                    processed: first.processed,
                    total: first.total,
                    bytes: first.bytes,
                };
                yield event(first.state, p, None);
                return;
            };
            loop {
                let live = rx.borrow_and_update().clone();
                yield event(live.state, live.progress, live.started);
                if live.state.is_terminal() {
                    return;
                }
                tokio::time::sleep(PROGRESS_EVERY).await;
                if rx.changed().await.is_err() {
                    // The job ended between two polls: report the stored end.
                    let end = exports.get(uuid).ok().flatten();
                    if let Some(r) = end {
                        let p = crate::export::jobs::Progress {
                            processed: r.processed,
                            total: r.total,
                            bytes: r.bytes,
                        };
                        yield event(r.state, p, live.started);
                    }
                    return;
                }
            }
        })
    }
}

/// `GET /exports/download/{token}`: streams the file once, with
/// `Content-Disposition: attachment`. Every refusal is the same 404, so
/// the route tells nothing about tokens it does not honour.
pub async fn download(State(exports): State<Exports>, Path(token): Path<String>) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "unknown, used or expired download link"})),
        )
            .into_response()
    };
    let found = {
        let exports = exports.clone();
        tokio::task::spawn_blocking(move || exports.redeem(&token)).await
    };
    let download = match found {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => return not_found(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "export download failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "export download task failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let file = match tokio::fs::File::open(&download.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "export file missing");
            return not_found();
        }
    };
    let len = file.metadata().await.map(|m| m.len()).ok();
    let stream = async_stream::stream! {
        use tokio::io::AsyncReadExt;
        let mut file = file;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => yield Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&buf[..n])),
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
        }
    };
    let mut resp = Response::new(Body::from_stream(stream));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(download.content_type),
    );
    // File names are ours (`keys-<time>.<ext>`): plain ASCII, no quoting issue.
    if let Ok(v) =
        header::HeaderValue::from_str(&format!("attachment; filename=\"{}\"", download.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    resp
}

/// The download route, served beside `/graphql`.
pub fn router(exports: Exports) -> axum::Router {
    axum::Router::new()
        .route(
            &format!("{DOWNLOAD_PATH}/{{token}}"),
            axum::routing::get(download),
        )
        .with_state(exports)
}
