//! The usage writer: the relay hands each finished request to a [`UsageSink`]
//! (a channel send, never a disk wait); one background task merges records
//! into per-hour aggregates (bounded by subjects × hours, not by requests) and
//! writes them to the store in one batch per flush interval. A failed flush
//! keeps everything pending and retries; shutdown drains and flushes.

use crate::domain::{KeyId, UsageRecord, UsageSubject, UsageTotals};
use crate::store::{Store, UsageBatch};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most request-log entries held between flushes; beyond it the oldest log
/// entries (never aggregates) are skipped.
const MAX_PENDING_LOG: usize = 50_000;

/// Where the relay sends finished requests. Cheap to clone.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::UnboundedSender<UsageRecord>,
    health: Arc<WriterHealth>,
    live: broadcast::Sender<Arc<UsageRecord>>,
}

/// What `/ready` and metrics read about the writer.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// Unix ms of the first failed flush in the current failure streak; 0 when healthy.
    failing_since_ms: AtomicI64,
    flushed_records: AtomicU64,
    failed_flushes: AtomicU64,
    stopped: AtomicBool,
}

impl WriterHealth {
    /// How long flushing has been failing, if it is.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(
                (Utc::now().timestamp_millis() - since).max(0) as u64,
            )),
        }
    }
    pub fn flushed_records(&self) -> u64 {
        self.flushed_records.load(Ordering::Relaxed)
    }
    pub fn failed_flushes(&self) -> u64 {
        self.failed_flushes.load(Ordering::Relaxed)
    }
}

impl UsageSink {
    /// Hands a record to the writer. Never blocks.
    pub fn record(&self, record: UsageRecord) {
        // Live views are optional: no clone unless someone listens.
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(Arc::new(record.clone()));
        }
        if self.tx.send(record).is_err() {
            // Only after shutdown has drained the writer; nothing can be saved any more.
            tracing::error!("usage writer stopped; a usage record could not be saved");
        }
    }

    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    /// Each finished request as it happens (for live views).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UsageRecord>> {
        self.live.subscribe()
    }
}

/// Starts the writer task on `tracker`; it flushes every `interval` and, once
/// `shutdown` fires and every sink is dropped or the token is cancelled, drains and flushes.
pub fn spawn(
    store: Store,
    interval: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> UsageSink {
    let (tx, rx) = mpsc::unbounded_channel();
    let health = Arc::new(WriterHealth::default());
    let (live, _) = broadcast::channel(1024);
    let writer = Writer {
        store,
        pending: Pending::default(),
        health: health.clone(),
    };
    tracker.spawn(writer.run(rx, interval, shutdown));
    UsageSink { tx, health, live }
}

#[derive(Default)]
struct Pending {
    hourly: HashMap<(UsageSubject, DateTime<Utc>), UsageTotals>,
    records: Vec<UsageRecord>,
    last_used: HashMap<KeyId, DateTime<Utc>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.hourly.is_empty() && self.records.is_empty() && self.last_used.is_empty()
    }

    fn add(&mut self, record: UsageRecord) {
        let hour = record
            .at
            .duration_trunc(TimeDelta::hours(1))
            .unwrap_or(record.at);
        let delta = UsageTotals::from_record(&record);
        let mut subjects: [Option<UsageSubject>; 6] =
            [None, None, None, Some(UsageSubject::Global), None, None];
        if let Some(key) = record.key_id {
            subjects[0] = Some(UsageSubject::Key(key));
            subjects[4] = Some(UsageSubject::KeyModel(key, record.model.clone()));
            let seen = self.last_used.entry(key).or_insert(record.at);
            if *seen < record.at {
                *seen = record.at;
            }
        }
        if let Some(account) = record.account_id {
            subjects[1] = Some(UsageSubject::Account(account));
            subjects[5] = Some(UsageSubject::AccountModel(account, record.model.clone()));
        }
        subjects[2] = Some(UsageSubject::Model(record.model.clone()));
        for subject in subjects.into_iter().flatten() {
            self.hourly
                .entry((subject, hour))
                .or_default()
                .merge(&delta);
        }
        if self.records.len() < MAX_PENDING_LOG {
            self.records.push(record);
        }
    }

    fn to_batch(&self) -> UsageBatch {
        UsageBatch {
            hourly: self
                .hourly
                .iter()
                .map(|((subject, hour), totals)| (subject.clone(), *hour, *totals))
                .collect(),
            records: self.records.clone(),
            key_last_used: self.last_used.iter().map(|(k, t)| (*k, *t)).collect(),
        }
    }
}

struct Writer {
    store: Store,
    pending: Pending,
    health: Arc<WriterHealth>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<UsageRecord>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                maybe = rx.recv() => match maybe {
                    Some(record) => self.pending.add(record),
                    None => break,
                },
                _ = tick.tick() => self.flush().await,
                () = shutdown.cancelled() => break,
            }
        }
        // Drain what is already queued, then write it all.
        rx.close();
        while let Ok(record) = rx.try_recv() {
            self.pending.add(record);
        }
        for attempt in 0..5u32 {
            self.flush().await;
            if self.pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
        }
        if !self.pending.is_empty() {
            tracing::error!(
                records = self.pending.records.len(),
                "usage could not be written at shutdown"
            );
        }
        self.health.stopped.store(true, Ordering::Relaxed);
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = self.pending.to_batch();
        let store = self.store.clone();
        let count = batch.records.len() as u64;
        let result = tokio::task::spawn_blocking(move || store.apply_usage(&batch)).await;
        match result {
            Ok(Ok(())) => {
                self.pending = Pending::default();
                self.health.failing_since_ms.store(0, Ordering::Relaxed);
                self.health
                    .flushed_records
                    .fetch_add(count, Ordering::Relaxed);
            }
            Ok(Err(e)) => self.note_failure(&e.to_string()),
            Err(e) => self.note_failure(&e.to_string()),
        }
    }

    fn note_failure(&self, error: &str) {
        self.health.failed_flushes.fetch_add(1, Ordering::Relaxed);
        crate::metrics::usage_flush_failed();
        let _ = self.health.failing_since_ms.compare_exchange(
            0,
            Utc::now().timestamp_millis(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        tracing::error!(error, "usage flush failed; keeping the batch and retrying");
    }
}
