//! Export jobs on a running server: the bounded pool that runs them, their
//! files under `<data>/exports/`, live progress, cancellation, one-time
//! download tokens, restart recovery and retention. Job records live in the
//! store (`store::exports`); one run is `export::jobs::run`.
//!
//! Files are written as `<id>.partial` and renamed to their final name only
//! after a successful, synced finish, so a cancelled, failed or interrupted
//! job never leaves a file that looks complete. At start-up, jobs the store
//! still shows as QUEUED or RUNNING were interrupted by the restart: they
//! are marked FAILED and every `*.partial` file is removed.

use super::jobs::{self, ExportSpec, Progress, RunEnv, RunError};
use super::mask::PseudonymKey;
use crate::domain::sha256_hex;
use crate::store::{DownloadGrant, ExportId, ExportRecord, ExportState, Store};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Exports run at once; the rest wait QUEUED. One keeps a 2-core box's
/// second core for the relay.
pub const CONCURRENT_EXPORTS: usize = 1;
/// How long a download token works.
pub const DOWNLOAD_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// The directory under the data dir.
pub const EXPORTS_DIR: &str = "exports";
const PARTIAL_SUFFIX: &str = ".partial";
/// The store's name for the persisted pseudonym key.
const PSEUDONYM_STATE: &str = "export_pseudonym_key";
/// How often expired exports and tokens are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no export with this id")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("export files: {0}")]
    Io(#[from] std::io::Error),
}

/// A live snapshot of one job, pushed to progress subscribers.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveProgress {
    pub state: ExportState,
    pub progress: Progress,
    pub started: Option<std::time::Instant>,
}

struct Live {
    cancel: Arc<AtomicBool>,
    tx: watch::Sender<LiveProgress>,
}

struct Inner {
    store: Store,
    dir: PathBuf,
    retention: chrono::Duration,
    env: RunEnv,
    pool: Arc<Semaphore>,
    live: Mutex<HashMap<ExportId, Live>>,
    tracker: TaskTracker,
}

/// Cheap clonable handle to the export jobs of one instance.
#[derive(Clone)]
pub struct Exports {
    inner: Arc<Inner>,
}

/// A file ready to stream.
pub struct Download {
    pub path: PathBuf,
    pub file_name: String,
    pub content_type: &'static str,
}

impl Exports {
    /// Recovers from a previous run (see the module docs) and, inside a
    /// tokio runtime, starts the retention sweep on `tracker` until `token`.
    pub fn start(
        store: Store,
        data_dir: &Path,
        retention: Duration,
        relay_key_prefix: &str,
        tracker: &TaskTracker,
        token: CancellationToken,
    ) -> Result<Exports, ServiceError> {
        let dir = data_dir.join(EXPORTS_DIR);
        std::fs::create_dir_all(&dir)?;
        let pseudonym_key = pseudonym_key(&store)?;
        let exports = Exports {
            inner: Arc::new(Inner {
                store,
                dir,
                retention: chrono::Duration::from_std(retention)
                    .unwrap_or_else(|_| chrono::Duration::hours(24)),
                env: RunEnv {
                    relay_key_prefixes: vec![relay_key_prefix.to_string()],
                    pseudonym_key,
                },
                pool: Arc::new(Semaphore::new(CONCURRENT_EXPORTS)),
                live: Mutex::new(HashMap::new()),
                tracker: tracker.clone(),
            }),
        };
        exports.recover()?;
        exports.sweep(Utc::now())?;
        if tokio::runtime::Handle::try_current().is_ok() {
            let me = exports.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = token.cancelled() => {
                            me.cancel_all();
                            return;
                        }
                        _ = tick.tick() => {
                            if let Err(e) = me.sweep(Utc::now()) {
                                tracing::warn!(error = %e, "export retention sweep failed");
                            }
                        }
                    }
                }
            });
        }
        Ok(exports)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn env(&self) -> &RunEnv {
        &self.inner.env
    }

    /// Marks jobs left QUEUED or RUNNING by a previous process as FAILED
    /// and removes every partial file.
    fn recover(&self) -> Result<(), ServiceError> {
        let now = Utc::now();
        for mut r in self.inner.store.list_exports()? {
            if !r.state.is_terminal() {
                r.state = ExportState::Failed;
                r.errors.push("interrupted by restart".into());
                r.finished_at = Some(now);
                self.inner.store.put_export(&r)?;
                tracing::warn!(export.id = %r.id, "export interrupted by restart; marked failed");
            }
        }
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(PARTIAL_SUFFIX))
            {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Removes exports (records and files) past their expiry, and expired
    /// download tokens.
    pub fn sweep(&self, now: DateTime<Utc>) -> Result<usize, ServiceError> {
        let mut removed = 0;
        for r in self.inner.store.list_exports()? {
            if r.expires_at <= now && r.state.is_terminal() {
                self.remove_files(&r);
                self.inner.store.delete_export(r.id)?;
                removed += 1;
            }
        }
        self.inner.store.prune_download_grants(now)?;
        Ok(removed)
    }

    fn partial_path(&self, id: ExportId) -> PathBuf {
        self.inner.dir.join(format!("{id}{PARTIAL_SUFFIX}"))
    }

    /// The final file of a job: `<id>-<name>`, so two jobs never share one.
    fn final_path(&self, id: ExportId, file_name: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}-{file_name}"))
    }

    fn remove_files(&self, r: &ExportRecord) {
        let _ = std::fs::remove_file(self.partial_path(r.id));
        if let Some(name) = &r.file_name {
            let _ = std::fs::remove_file(self.final_path(r.id, name));
        }
    }

    /// Records a QUEUED job and runs it when the pool has room.
    pub fn start_job(
        &self,
        spec: ExportSpec,
        requested_by: &str,
    ) -> Result<ExportRecord, ServiceError> {
        spec.validate().map_err(ServiceError::Invalid)?;
        let now = Utc::now();
        let record = ExportRecord {
            id: uuid::Uuid::now_v7(),
            state: ExportState::Queued,
            spec: serde_json::to_value(&spec)
                .map_err(|e| ServiceError::Invalid(format!("spec: {e}")))?,
            requested_by: requested_by.to_string(),
            processed: 0,
            total: 0,
            bytes: 0,
            errors: Vec::new(),
            file_name: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            expires_at: now + self.inner.retention,
        };
        self.inner.store.put_export(&record)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, _) = watch::channel(LiveProgress {
            state: ExportState::Queued,
            progress: Progress::default(),
            started: None,
        });
        self.inner.live.lock().insert(
            record.id,
            Live {
                cancel: cancel.clone(),
                tx: tx.clone(),
            },
        );
        let me = self.clone();
        let id = record.id;
        self.inner.tracker.spawn(async move {
            me.drive(id, spec, cancel, tx).await;
        });
        Ok(record)
    }

    async fn drive(
        &self,
        id: ExportId,
        spec: ExportSpec,
        cancel: Arc<AtomicBool>,
        tx: watch::Sender<LiveProgress>,
    ) {
        let permit = self.inner.pool.clone().acquire_owned().await;
        let finished = if cancel.load(Ordering::Relaxed) || permit.is_err() {
            Err(RunError::Cancelled)
        } else {
            let started = std::time::Instant::now();
            tx.send_modify(|p| {
                p.state = ExportState::Running;
                p.started = Some(started);
            });
            let _ = self.update(id, |r| {
                r.state = ExportState::Running;
                r.started_at = Some(Utc::now());
            });
            let me = self.clone();
            let spec2 = spec.clone();
            let tx2 = tx.clone();
            let cancel2 = cancel.clone();
            // Store reads and encoding are blocking work: a thread of its
            // own, at a lower priority, so the async workers that serve
            // relay traffic win the cores when both are busy.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("export".into())
                .spawn(move || {
                    lower_priority();
                    let _ = done_tx.send(me.write_file(id, &spec2, &cancel2, &tx2));
                });
            match spawned {
                Ok(_) => done_rx.await.unwrap_or_else(|_| {
                    Err(RunError::Invalid(
                        "the export thread ended without a result".into(),
                    ))
                }),
                Err(e) => Err(RunError::Invalid(format!(
                    "cannot start the export thread: {e}"
                ))),
            }
        };
        drop(permit);
        let now = Utc::now();
        let (state, error) = match &finished {
            Ok(_) => (ExportState::Completed, None),
            Err(RunError::Cancelled) => (ExportState::Cancelled, None),
            Err(e) => (ExportState::Failed, Some(e.to_string())),
        };
        if state != ExportState::Completed {
            let _ = std::fs::remove_file(self.partial_path(id));
        }
        let progress = finished.as_ref().map(|(p, _)| *p).ok();
        let file_name = finished.ok().map(|(_, name)| name);
        let result = self.update(id, |r| {
            r.state = state;
            r.finished_at = Some(now);
            if let Some(p) = progress {
                r.processed = p.processed;
                r.total = p.total;
                r.bytes = p.bytes;
            } else {
                let live = tx.borrow().progress;
                r.processed = live.processed;
                r.total = live.total;
                r.bytes = 0;
            }
            r.file_name = file_name.clone();
            if let Some(e) = &error {
                r.errors.push(e.clone());
            }
        });
        match result {
            Ok(true) => {}
            // Deleted while running: its file must not outlive the record.
            Ok(false) => {
                if let Some(name) = &file_name {
                    let _ = std::fs::remove_file(self.final_path(id, name));
                }
            }
            Err(e) => tracing::error!(export.id = %id, error = %e, "cannot record export result"),
        }
        if let Some(e) = &error {
            tracing::warn!(export.id = %id, error = %e, "export failed");
        } else {
            tracing::info!(export.id = %id, state = ?state, "export finished");
        }
        tx.send_modify(|p| {
            p.state = state;
            if let Some(pr) = progress {
                p.progress = pr;
            }
        });
        self.inner.live.lock().remove(&id);
    }

    /// Runs the export into `<id>.partial`, syncs it and renames it to its
    /// final name. Returns the progress and the file name.
    fn write_file(
        &self,
        id: ExportId,
        spec: &ExportSpec,
        cancel: &AtomicBool,
        tx: &watch::Sender<LiveProgress>,
    ) -> Result<(Progress, String), RunError> {
        let partial = self.partial_path(id);
        let file = std::fs::File::create(&partial)?;
        let mut on_progress = |p: Progress| {
            tx.send_modify(|l| l.progress = p);
        };
        let (file, progress) = jobs::run(
            &self.inner.store,
            spec,
            &self.inner.env,
            file,
            cancel,
            &mut on_progress,
        )?;
        file.sync_all()?;
        drop(file);
        if cancel.load(Ordering::Relaxed) {
            return Err(RunError::Cancelled);
        }
        let name = spec.file_name(Utc::now());
        std::fs::rename(&partial, self.final_path(id, &name))?;
        Ok((progress, name))
    }

    /// Applies `change` to the stored record; `false` if it is gone.
    fn update(
        &self,
        id: ExportId,
        change: impl FnOnce(&mut ExportRecord),
    ) -> Result<bool, ServiceError> {
        match self.inner.store.get_export(id)? {
            Some(mut r) => {
                change(&mut r);
                self.inner.store.put_export(&r)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The record with live counts for a running job.
    pub fn get(&self, id: ExportId) -> Result<Option<ExportRecord>, ServiceError> {
        let Some(mut r) = self.inner.store.get_export(id)? else {
            return Ok(None);
        };
        if let Some(live) = self.inner.live.lock().get(&id) {
            let l = live.tx.borrow();
            if !r.state.is_terminal() {
                r.state = l.state;
            }
            r.processed = l.progress.processed;
            r.total = l.progress.total;
            r.bytes = l.progress.bytes;
        }
        Ok(Some(r))
    }

    /// Every job, newest first, with live counts.
    pub fn list(&self) -> Result<Vec<ExportRecord>, ServiceError> {
        let mut all = self.inner.store.list_exports()?;
        all.reverse();
        let live = self.inner.live.lock();
        for r in &mut all {
            if let Some(l) = live.get(&r.id) {
                let l = l.tx.borrow();
                if !r.state.is_terminal() {
                    r.state = l.state;
                }
                r.processed = l.progress.processed;
                r.total = l.progress.total;
                r.bytes = l.progress.bytes;
            }
        }
        Ok(all)
    }

    /// Asks a queued or running job to stop; a finished job is left as it is.
    pub fn cancel(&self, id: ExportId) -> Result<ExportRecord, ServiceError> {
        if let Some(live) = self.inner.live.lock().get(&id) {
            live.cancel.store(true, Ordering::Relaxed);
        }
        self.get(id)?.ok_or(ServiceError::NotFound)
    }

    fn cancel_all(&self) {
        for live in self.inner.live.lock().values() {
            live.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Cancels the job if it runs, then removes its record, file and tokens.
    pub fn delete(&self, id: ExportId) -> Result<(), ServiceError> {
        let record = self
            .inner
            .store
            .get_export(id)?
            .ok_or(ServiceError::NotFound)?;
        if let Some(live) = self.inner.live.lock().get(&id) {
            live.cancel.store(true, Ordering::Relaxed);
        }
        self.inner.store.delete_export(id)?;
        self.remove_files(&record);
        Ok(())
    }

    /// Live progress of a job: `None` when it is not running (the stored
    /// record is then final).
    pub fn watch(&self, id: ExportId) -> Option<watch::Receiver<LiveProgress>> {
        self.inner.live.lock().get(&id).map(|l| l.tx.subscribe())
    }

    /// A one-time download token for a completed job, valid for
    /// [`DOWNLOAD_TOKEN_TTL`]; only its hash is stored.
    pub fn create_download(&self, id: ExportId) -> Result<(String, DateTime<Utc>), ServiceError> {
        let r = self.get(id)?.ok_or(ServiceError::NotFound)?;
        if r.state != ExportState::Completed || r.file_name.is_none() {
            return Err(ServiceError::Conflict(
                "only a COMPLETED export can be downloaded".into(),
            ));
        }
        let token = random_token();
        let expires_at = Utc::now()
            + chrono::Duration::from_std(DOWNLOAD_TOKEN_TTL)
                .unwrap_or_else(|_| chrono::Duration::minutes(5));
        self.inner.store.put_download_grant(
            &sha256_hex(&token),
            &DownloadGrant {
                export_id: id,
                expires_at,
            },
        )?;
        Ok((token, expires_at))
    }

    /// Redeems a download token: the file to stream, or `None` when the
    /// token is unknown, used or expired (all look the same to a caller).
    pub fn redeem(&self, token: &str) -> Result<Option<Download>, ServiceError> {
        let Some(grant) = self.inner.store.take_download_grant(&sha256_hex(token))? else {
            return Ok(None);
        };
        if grant.expires_at <= Utc::now() {
            return Ok(None);
        }
        let Some(r) = self.inner.store.get_export(grant.export_id)? else {
            return Ok(None);
        };
        let (Some(name), ExportState::Completed) = (r.file_name.as_ref(), r.state) else {
            return Ok(None);
        };
        let spec: ExportSpec = serde_json::from_value(r.spec.clone())
            .map_err(|e| ServiceError::Invalid(format!("stored spec: {e}")))?;
        Ok(Some(Download {
            path: self.final_path(r.id, name),
            file_name: name.clone(),
            content_type: spec.format.content_type(),
        }))
    }
}

/// Lowers the calling thread's CPU priority (nice 10). Linux's
/// `setpriority` on a thread id changes that thread only.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory
    // is shared with them.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            tracing::debug!("cannot lower the export thread's priority");
        }
    }
}

/// 32 random bytes, URL-safe.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The instance's pseudonym key, created once and kept in the store so
/// pseudonyms stay stable across exports and restarts.
pub fn pseudonym_key(store: &Store) -> Result<PseudonymKey, crate::store::Error> {
    if let Some(hex_key) = store.get_state::<String>(PSEUDONYM_STATE)? {
        if let Some(bytes) = hex::decode(&hex_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            return Ok(PseudonymKey::from_bytes(bytes));
        }
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    store.put_state_quiet(PSEUDONYM_STATE, &hex::encode(bytes))?;
    Ok(PseudonymKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::format::Format;
    use crate::store::StoreOptions;

    fn open(dir: &Path) -> Store {
        Store::open(&StoreOptions {
            data_dir: dir.to_path_buf(),
            master_key: Some("22".repeat(32)),
            master_key_file: dir.join("master.key"),
            cache_capacity_bytes: 8 << 20,
        })
        .expect("store")
    }

    async fn finished(exports: &Exports, id: ExportId) -> ExportRecord {
        for _ in 0..500 {
            let r = exports.get(id).expect("get").expect("record");
            if r.state.is_terminal() && exports.watch(id).is_none() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("export never finished");
    }

    #[tokio::test]
    async fn tokens_expire_and_retention_removes_files_and_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let exports = Exports::start(
            store.clone(),
            dir.path(),
            Duration::from_secs(3600),
            "cr_",
            &TaskTracker::new(),
            CancellationToken::new(),
        )
        .expect("start");
        let r = exports
            .start_job(ExportSpec::new(Format::Ndjson), "owner")
            .expect("job");
        let done = finished(&exports, r.id).await;
        assert_eq!(done.state, ExportState::Completed);
        let name = done.file_name.clone().expect("file");
        let file = exports.final_path(r.id, &name);
        assert!(file.exists());

        // An expired grant is refused even though it was never used.
        let (token, _) = exports.create_download(r.id).expect("token");
        store
            .put_download_grant(
                &sha256_hex(&token),
                &DownloadGrant {
                    export_id: r.id,
                    expires_at: Utc::now() - chrono::Duration::seconds(1),
                },
            )
            .expect("grant");
        assert!(exports.redeem(&token).expect("redeem").is_none());
        let (token, _) = exports.create_download(r.id).expect("token");
        assert!(exports.redeem(&token).expect("redeem").is_some());
        assert!(exports.redeem(&token).expect("redeem").is_none());

        assert_eq!(exports.sweep(Utc::now()).expect("sweep"), 0);
        assert_eq!(
            exports
                .sweep(Utc::now() + chrono::Duration::hours(2))
                .expect("sweep"),
            1
        );
        assert!(!file.exists());
        assert!(store.get_export(r.id).expect("get").is_none());
    }
}
