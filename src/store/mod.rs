//! The store: the only module that touches sled. Typed trees for keys,
//! accounts, admins, sessions, usage buckets, legacy key hashes and import
//! bookkeeping; secrets sealed by the vault
//! (AES-256-GCM under the master key); schema version and migrations in `meta`.
//! Every committed write emits a [`StoreEvent`] so caches and the balancer can refresh.
//!
//! This file owns the [`Store`] handle, opening, flushing and events; each
//! record kind lives in its own file (`keys`, `accounts`, `admins`, `usage`,
//! `legacy`, `imports`).
//! The public signatures here are a contract other modules code against.

mod accounts;
mod admins;
mod audit;
mod exports;
mod groups;
mod imports;
mod key_index;
#[cfg(test)]
mod key_index_tests;
mod key_query;
mod keys;
mod legacy;
mod limit_counters;
mod meta;
mod state;
mod trees;
mod usage;
mod usage_bulk;
mod usage_query;
mod vault;

use crate::domain::*;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::broadcast;

pub use audit::{AuditEntry, AuditRetention};
pub use exports::{DownloadGrant, ExportId, ExportRecord, ExportState};
pub use imports::{ImportLink, SealedBlob};
pub use key_index::month_start;
pub use key_query::{KeyFilter, KeyHit, KeyOrder, KeyPage, KeyPosition, KeySortField};
pub use keys::PreparedKeys;
pub use legacy::{LegacyKeyHash, LegacySource};
pub use usage::REQUEST_LOG_MAX;
pub use usage_bulk::UsageBulk;
pub use usage_query::{
    closed_horizon, RankKind, RankedCost, RequestLogEntry, RequestLogFilter, REQUEST_LOG_MAX_AGE,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Sled(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Sled(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

/// How to open the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    /// Master key material from the environment (64 hex chars or base64 of 32 bytes).
    pub master_key: Option<String>,
    /// Key file used when `master_key` is None; created (0600) only if no encrypted data exists.
    pub master_key_file: PathBuf,
    pub cache_capacity_bytes: u64,
}

/// What changed; sent on every committed write.
#[derive(Clone, Debug)]
pub enum StoreEvent {
    KeyChanged {
        id: KeyId,
        key_hash: String,
    },
    AccountChanged {
        id: AccountId,
    },
    AdminChanged {
        id: AdminId,
    },
    GroupChanged {
        id: GroupId,
    },
    /// A named state blob changed (e.g. `settings`).
    StateChanged {
        name: String,
    },
}

/// One flush of the usage writer: hourly deltas (added to hour, day and
/// lifetime buckets), the finished requests for the request log, and the
/// keys' last-used times. Applied atomically.
#[derive(Clone, Debug, Default)]
pub struct UsageBatch {
    /// (subject, start of the UTC hour, delta)
    pub hourly: Vec<(UsageSubject, DateTime<Utc>, UsageTotals)>,
    pub records: Vec<UsageRecord>,
    pub key_last_used: Vec<(KeyId, DateTime<Utc>)>,
}

/// Cheap clonable handle to the one sled database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    keys: sled::Tree,
    keys_by_hash: sled::Tree,
    /// Secondary indexes over keys (see `key_index`).
    key_index: sled::Tree,
    /// The billing time zone ("this month"); see [`Store::set_time_zone`].
    zone: parking_lot::RwLock<chrono_tz::Tz>,
    /// Decoded key records by id for listings; every key write invalidates.
    key_records: moka::sync::Cache<KeyId, Arc<ApiKey>>,
    /// Bumped on every key write, so a reader that raced a write does not
    /// put the record it read before the write into `key_records`.
    key_generation: std::sync::atomic::AtomicU64,
    /// Bumped after every committed key create or update (not usage), so
    /// caches of key records can tell an entry is older than a write.
    key_writes: std::sync::atomic::AtomicU64,
    accounts: sled::Tree,
    admins: sled::Tree,
    admins_by_name: sled::Tree,
    sessions: sled::Tree,
    usage: sled::Tree,
    requests: sled::Tree,
    groups: sled::Tree,
    state: sled::Tree,
    legacy_key_hashes: sled::Tree,
    legacy_sources: sled::Tree,
    imports: sled::Tree,
    limit_counters: sled::Tree,
    exports: sled::Tree,
    export_downloads: sled::Tree,
    vault: vault::Vault,
    events: broadcast::Sender<StoreEvent>,
    /// Entries in the request log; kept in memory because sled's `len` is a scan.
    request_log_len: AtomicUsize,
    request_log_max: usize,
    audit: sled::Tree,
    /// Entries in the audit log (sled's `len` is a scan).
    audit_len: AtomicUsize,
    /// Analytics state: the cost ranking tree and its zone, the past-write
    /// generation, the log's age bound (`usage_query.rs`).
    analytics: usage_query::AnalyticsState,
}

/// Key records kept decoded for listings (a few MB; pages and batch
/// operations revisit the same keys).
const KEY_RECORD_CACHE: u64 = 20_000;
/// Subscribers that fall this far behind see `Lagged` and should resync.
const EVENT_CAPACITY: usize = 1024;
/// The sled database lives in this directory under the data dir, beside the
/// key file and the admin password file.
pub const DB_DIR: &str = "db";

impl Store {
    pub fn open(opts: &StoreOptions) -> Result<Store, Error> {
        Self::open_with_log_max(opts, REQUEST_LOG_MAX)
    }

    fn open_with_log_max(opts: &StoreOptions, request_log_max: usize) -> Result<Store, Error> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            Error::Sled(format!(
                "cannot create data dir {}: {e}",
                opts.data_dir.display()
            ))
        })?;
        let db = sled::Config::new()
            .path(opts.data_dir.join(DB_DIR))
            .cache_capacity(opts.cache_capacity_bytes)
            .open()
            .map_err(|e| match e {
                // sled holds an exclusive file lock while a process has it
                // open, and reports it only in the error's text.
                sled::Error::Io(ref io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    Error::Sled(format!(
                        "the store is in use by another process (stop the relay first): {e}"
                    ))
                }
                e => e.into(),
            })?;
        let meta = db.open_tree(trees::META)?;
        meta::check_supported(&meta)?;
        let accounts = db.open_tree(trees::ACCOUNTS)?;
        let vault = vault::Vault::load(opts, &meta, !accounts.is_empty())?;
        meta::migrate(&db, &meta, &vault)?;
        let requests = db.open_tree(trees::REQUESTS)?;
        let request_log_len = usage::stored_log_len(&meta)?;
        let audit = db.open_tree(trees::AUDIT)?;
        let zone = key_index::recorded_zone(&meta)?
            .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
            .unwrap_or(chrono_tz::UTC);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Inner {
            meta,
            keys: db.open_tree(trees::KEYS)?,
            keys_by_hash: db.open_tree(trees::KEYS_BY_HASH)?,
            key_index: db.open_tree(trees::KEY_INDEX)?,
            zone: parking_lot::RwLock::new(zone),
            key_records: moka::sync::Cache::builder()
                .max_capacity(KEY_RECORD_CACHE)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
            key_generation: std::sync::atomic::AtomicU64::new(0),
            key_writes: std::sync::atomic::AtomicU64::new(0),
            accounts,
            admins: db.open_tree(trees::ADMINS)?,
            admins_by_name: db.open_tree(trees::ADMINS_BY_NAME)?,
            sessions: db.open_tree(trees::SESSIONS)?,
            usage: db.open_tree(trees::USAGE)?,
            groups: db.open_tree(trees::GROUPS)?,
            state: db.open_tree(trees::STATE)?,
            legacy_key_hashes: db.open_tree(trees::LEGACY_KEY_HASHES)?,
            legacy_sources: db.open_tree(trees::LEGACY_SOURCES)?,
            imports: db.open_tree(trees::IMPORTS)?,
            limit_counters: db.open_tree(trees::LIMIT_COUNTERS)?,
            exports: db.open_tree(trees::EXPORTS)?,
            export_downloads: db.open_tree(trees::EXPORT_DOWNLOADS)?,
            request_log_len: AtomicUsize::new(request_log_len),
            requests,
            vault,
            events,
            request_log_max,
            audit_len: AtomicUsize::new(audit.len()),
            audit,
            analytics: usage_query::AnalyticsState::new(db.open_tree(trees::USAGE_RANK)?),
            db,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    /// Durable flush (used after OAuth refresh and at shutdown).
    pub async fn flush(&self) -> Result<(), Error> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// Sends an event after a commit; having no subscriber is fine.
    fn emit(&self, event: StoreEvent) {
        let _ = self.inner.events.send(event);
    }

    /// The schema version recorded in `meta` (0 for a store never opened).
    pub fn schema_version(&self) -> Result<u32, Error> {
        meta::read_version(&self.inner.meta)
    }
}

/// Aborts a sled transaction with one of our errors.
fn abort<T>(e: Error) -> sled::transaction::ConflictableTransactionResult<T, Error> {
    Err(sled::transaction::ConflictableTransactionError::Abort(e))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) fn options(dir: &std::path::Path) -> StoreOptions {
        StoreOptions {
            data_dir: dir.to_path_buf(),
            master_key: None,
            master_key_file: dir.join("master.key"),
            cache_capacity_bytes: 8 * 1024 * 1024,
        }
    }

    /// Opens (or reopens) the store in `dir`. A reopen right after a drop
    /// can find sled's file lock still held while its flusher thread winds
    /// down (seen on a loaded box), so a lock error is retried briefly.
    pub(crate) fn open(dir: &std::path::Path) -> Store {
        let mut attempts = 0;
        loop {
            match Store::open(&options(dir)) {
                Ok(store) => return store,
                Err(e) if attempts < 40 => {
                    attempts += 1;
                    eprintln!("store open retry {attempts}: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("open store: {e}"),
            }
        }
    }

    pub(crate) fn open_with_log_max(dir: &std::path::Path, max: usize) -> Store {
        Store::open_with_log_max(&options(dir), max).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_store_held_open_elsewhere_is_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        let held = open(dir.path());
        let err = match Store::open(&options(dir.path())) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a second open of a held store succeeded"),
        };
        assert!(
            err.contains("in use by another process (stop the relay first)"),
            "{err}"
        );
        drop(held);
    }

    #[tokio::test]
    async fn fresh_store_creates_a_0600_key_file_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert_eq!(store.schema_version().unwrap(), meta::CURRENT_VERSION);
        store.flush().await.unwrap();
        drop(store);
        let key_file = dir.path().join("master.key");
        assert!(key_file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = open(dir.path());
        assert_eq!(again.schema_version().unwrap(), meta::CURRENT_VERSION);
    }

    #[test]
    fn environment_key_wins_and_a_wrong_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.master_key = Some("11".repeat(32));
        drop(Store::open(&opts).unwrap());
        assert!(
            !opts.master_key_file.exists(),
            "no key file when the key comes from the environment"
        );
        opts.master_key = Some("22".repeat(32));
        match Store::open(&opts) {
            Err(Error::MasterKey(msg)) => assert!(msg.contains("does not match"), "{msg}"),
            other => panic!("expected a master key error, got {:?}", other.err()),
        }
        // Without any key: the store was set up, so no new key file is generated.
        opts.master_key = None;
        assert!(matches!(Store::open(&opts), Err(Error::MasterKey(_))));
        assert!(!opts.master_key_file.exists());
        opts.master_key = Some("11".repeat(32));
        assert!(Store::open(&opts).is_ok());
    }

    #[test]
    fn events_are_emitted_after_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut rx = store.subscribe();
        let key = keys::tests::sample_key("k1", "hash-1");
        store.create_key(&key).unwrap();
        match rx.try_recv().unwrap() {
            StoreEvent::KeyChanged { id, key_hash } => {
                assert_eq!(id, key.id);
                assert_eq!(key_hash, "hash-1");
            }
            other => panic!("unexpected {other:?}"),
        }
        let account = accounts::tests::sample_account("a1");
        store.put_account(&account).unwrap();
        assert!(
            matches!(rx.try_recv().unwrap(), StoreEvent::AccountChanged { id } if id == account.id)
        );
        let admin = admins::tests::sample_admin("root");
        store.put_admin(&admin).unwrap();
        assert!(
            matches!(rx.try_recv().unwrap(), StoreEvent::AdminChanged { id } if id == admin.id)
        );
        assert!(rx.try_recv().is_err(), "no stray events");
    }
}

#[cfg(test)]
mod reopen_tests {
    use super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn reopen_keeps_keys_accounts_admins_sessions_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::tests::sample_key("k", "hash-k");
        let account = accounts::tests::sample_account("a");
        let admin = admins::tests::sample_admin("root");
        let session = AdminSession {
            token_hash: "session-hash".into(),
            admin_id: admin.id,
            created_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        {
            let store = open(dir.path());
            store.create_key(&key).unwrap();
            store.put_account(&account).unwrap();
            store.put_admin(&admin).unwrap();
            store.put_session(&session).unwrap();
            store
                .apply_usage(&UsageBatch {
                    hourly: vec![(
                        UsageSubject::Key(key.id),
                        Utc::now(),
                        UsageTotals {
                            requests: 2,
                            ..Default::default()
                        },
                    )],
                    ..UsageBatch::default()
                })
                .unwrap();
            store.flush().await.unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.key_by_hash("hash-k").unwrap(), Some(key.clone()));
        assert_eq!(store.list_accounts().unwrap(), vec![account]);
        assert_eq!(store.admin_by_username("root").unwrap(), Some(admin));
        assert_eq!(
            store.session_by_hash("session-hash").unwrap(),
            Some(session)
        );
        assert_eq!(
            store
                .usage_total(&UsageSubject::Key(key.id), None)
                .unwrap()
                .requests,
            2
        );
    }
}
