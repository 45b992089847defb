//! The policy engine: [`Limits`] keeps every key's counters in memory and
//! decides admission; [`Admission`] is the RAII guard of one admitted request
//! (its concurrency slot and its reservation). No I/O: checkpointing the
//! counters ([`Limits::take_changed`]) and persisting an activation are the
//! caller's job.
//!
//! Locking: keys live in a sharded map (one `parking_lot` mutex per shard,
//! held only to find or insert a key's entry); each key's counters sit behind
//! that key's own small mutex. No lock spans keys, and no lock is held across
//! an `.await`. The only async part is the concurrency wait queue.

use super::estimate::Estimate;
use super::period::Calendar;
use super::policy::{ClientHints, EndpointFamily, Expiry, KeyPolicy};
use super::refusal::{Refusal, RefusalKind};
use super::state::{Demand, KeyState, Settlement};
use crate::domain::{KeyId, NanoUsd};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::{timeout_at, Duration, Instant};

/// Shards of the key map; a power of two.
const SHARDS: usize = 64;

/// One request, as the engine needs to see it.
pub struct Ask<'a> {
    pub key_id: KeyId,
    pub policy: &'a KeyPolicy,
    /// The model name the client requested (policy applies to it, not to a
    /// mapped name). Empty for calls without a model (`/v1/models`): the
    /// model rule is then not checked.
    pub model: &'a str,
    pub endpoint: EndpointFamily,
    pub user_agent: Option<&'a str>,
    pub client_hints: ClientHints<'a>,
    pub estimate: Estimate,
    pub now: DateTime<Utc>,
}

/// The engine handle; cheap to clone.
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

struct Inner {
    default_tz: Tz,
    shards: Box<[Shard]>,
    /// Keys forgotten since the last checkpoint (their stored counters go).
    forgotten: Mutex<Vec<KeyId>>,
}

/// One slice of the key map.
type Shard = Mutex<HashMap<KeyId, Arc<KeyEntry>>>;

/// A key's state and the wake-up for its concurrency queue.
pub(super) struct KeyEntry {
    pub(super) state: Mutex<KeyState>,
    /// Changed since the last checkpoint; set and cleared under `state`'s
    /// lock, so a checkpoint never misses a change it raced with.
    pub(super) dirty: AtomicBool,
    wake: Notify,
}

impl KeyEntry {
    /// Locks the state for a change the next checkpoint must write.
    pub(super) fn lock_for_change(&self) -> MutexGuard<'_, KeyState> {
        let st = self.state.lock();
        self.dirty.store(true, Ordering::Relaxed);
        st
    }
}

impl Limits {
    /// An engine with no counters; budgets of keys without a zone of their
    /// own use `default_tz`.
    pub fn new(default_tz: Tz) -> Limits {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Limits {
            inner: Arc::new(Inner {
                default_tz,
                shards,
                forgotten: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn default_tz(&self) -> Tz {
        self.inner.default_tz
    }

    fn shard(&self, key_id: KeyId) -> &Shard {
        // UUID v7 ends in random bits; v4 is random throughout.
        let bits = key_id.0.as_u128();
        let mixed = (bits ^ (bits >> 64)) as usize;
        &self.inner.shards[mixed & (SHARDS - 1)]
    }

    pub(super) fn entry(&self, key_id: KeyId) -> Arc<KeyEntry> {
        let mut shard = self.shard(key_id).lock();
        shard
            .entry(key_id)
            .or_insert_with(|| {
                Arc::new(KeyEntry {
                    state: Mutex::new(KeyState::default()),
                    dirty: AtomicBool::new(false),
                    wake: Notify::new(),
                })
            })
            .clone()
    }

    pub(super) fn existing(&self, key_id: KeyId) -> Option<Arc<KeyEntry>> {
        self.shard(key_id).lock().get(&key_id).cloned()
    }

    pub(super) fn for_each_entry(&self, mut f: impl FnMut(KeyId, &KeyEntry)) {
        for shard in self.inner.shards.iter() {
            // Clone the handles out so no shard lock is held while a key lock is taken.
            let entries: Vec<(KeyId, Arc<KeyEntry>)> =
                shard.lock().iter().map(|(k, e)| (*k, e.clone())).collect();
            for (k, e) in entries {
                f(k, &e);
            }
        }
    }

    /// Drops a purged key's counters. Requests still in flight keep their
    /// own handle and finish normally.
    pub fn forget(&self, key_id: KeyId) {
        if self.shard(key_id).lock().remove(&key_id).is_some() {
            self.inner.forgotten.lock().push(key_id);
        }
    }

    /// Takes the keys forgotten since the last call.
    pub(super) fn take_forgotten(&self) -> Vec<KeyId> {
        std::mem::take(&mut *self.inner.forgotten.lock())
    }

    pub(super) fn calendar(&self, policy: &KeyPolicy) -> Calendar {
        Calendar {
            tz: policy.budgets.time_zone.unwrap_or(self.inner.default_tz),
            week: policy.budgets.weekly_reset,
        }
    }

    /// For calls that are authenticated and permission-checked but neither
    /// billed nor counted (count_tokens, models): expiry, endpoint
    /// permission, client (by user-agent alone) and model. Never activates a
    /// key and takes no slot.
    pub fn check(&self, ask: &Ask<'_>) -> Result<(), Refusal> {
        let activated = self
            .existing(ask.key_id)
            .and_then(|e| e.state.lock().activated_at);
        check_expiry(ask.policy, activated, ask.now)?;
        check_static(ask, false)
    }

    /// Admits a billed request or refuses it. In order: expiry, endpoint
    /// permission, client, model; then a concurrency slot (waiting in the
    /// key's bounded queue if the policy has one); then rate windows and
    /// budgets with the reservation rule (state.rs). On success the
    /// request's estimate is reserved and its slot held until the returned
    /// guard is settled or dropped.
    pub async fn admit(&self, ask: Ask<'_>) -> Result<Admission, Refusal> {
        let entry = self.entry(ask.key_id);
        let activated = entry.state.lock().activated_at;
        check_expiry(ask.policy, activated, ask.now)?;
        check_static(&ask, true)?;

        let calendar = self.calendar(ask.policy);
        let family = !ask.model.is_empty()
            && ask
                .policy
                .budgets
                .family_weekly
                .as_ref()
                .is_some_and(|f| f.models.matches(ask.model));
        let limit = ask.policy.concurrency.map(|c| c.max_in_flight);
        let queue = ask.policy.concurrency.and_then(|c| c.queue);

        // Fast path: a free slot and nobody queued ahead. Otherwise join the
        // queue (the block ends the lock before the wait).
        let max_wait_ms = {
            let mut st = entry.lock_for_change();
            // Without a limit nobody waits (waiters left over from an older
            // policy do not hold newcomers back).
            let free = limit.is_none_or(|max| st.in_flight < max && st.queued == 0);
            if free {
                let demand = demand(&ask, calendar, family, ask.now);
                return take(&mut st, &demand)
                    .map(|activated| Admission::new(&entry, &demand, activated));
            }
            let Some(q) = queue.filter(|q| st.queued < q.max_queued) else {
                let max = limit.unwrap_or(0);
                let why = if queue.is_some() {
                    " and the wait queue is full"
                } else {
                    ""
                };
                return Err(Refusal::new(
                    RefusalKind::Concurrency,
                    format!(
                        "Too many concurrent requests for this API key: {max} allowed, {} in flight{why}; retry when one finishes.",
                        st.in_flight
                    ),
                    Some(1),
                ));
            };
            st.queued += 1;
            q.max_wait_ms
        };
        self.wait_in_queue(&entry, &ask, calendar, family, limit, max_wait_ms)
            .await
    }

    /// The queued path: wait for a slot (FIFO among waiters, nobody barges
    /// past them) until the deadline.
    async fn wait_in_queue(
        &self,
        entry: &Arc<KeyEntry>,
        ask: &Ask<'_>,
        calendar: Calendar,
        family: bool,
        limit: Option<u32>,
        max_wait_ms: u64,
    ) -> Result<Admission, Refusal> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(max_wait_ms);
        let mut ticket = QueueTicket {
            entry,
            limit,
            queued: true,
        };
        loop {
            let notified = entry.wake.notified();
            tokio::pin!(notified);
            // Registered before looking, so a release between the look and
            // the wait is not missed.
            notified.as_mut().enable();
            {
                let mut st = entry.lock_for_change();
                if limit.is_none_or(|max| st.in_flight < max) {
                    st.queued = st.queued.saturating_sub(1);
                    ticket.queued = false;
                    // Time spent waiting moves the clock the limits see.
                    let waited =
                        TimeDelta::from_std(started.elapsed()).unwrap_or(TimeDelta::zero());
                    let now = ask.now.checked_add_signed(waited).unwrap_or(ask.now);
                    let demand = demand(ask, calendar, family, now);
                    let result = take(&mut st, &demand);
                    if result.is_err() {
                        // The slot stays free: hand the turn to the next waiter.
                        pass_turn(entry, &st, limit);
                    }
                    return result.map(|activated| Admission::new(entry, &demand, activated));
                }
            }
            if timeout_at(deadline, notified).await.is_err() {
                let in_flight = entry.state.lock().in_flight;
                let max = limit.unwrap_or(0);
                // `ticket` leaves the queue as it drops, after this lock is gone.
                return Err(Refusal::new(
                    RefusalKind::Concurrency,
                    format!(
                        "Too many concurrent requests for this API key: {max} allowed, {in_flight} in flight; waited {max_wait_ms} ms in the queue without a free slot."
                    ),
                    Some(1),
                ));
            }
        }
    }
}

/// The request's demand on the counters at `now`.
fn demand<'a>(ask: &Ask<'a>, calendar: Calendar, family: bool, now: DateTime<Utc>) -> Demand<'a> {
    Demand {
        policy: ask.policy,
        calendar,
        estimate: ask.estimate,
        family,
        now,
    }
}

/// Checks windows and budgets and, if they have room, takes the slot, the
/// reservation and (for an activation-mode key's first request) the
/// activation. Returns the activation instant when this request activated.
fn take(st: &mut KeyState, d: &Demand<'_>) -> Result<Option<DateTime<Utc>>, Refusal> {
    st.check(d)?;
    st.commit(d);
    st.in_flight += 1;
    let activates = matches!(
        d.policy.expiry,
        Expiry::Activation {
            activated_at: None,
            ..
        }
    ) && st.activated_at.is_none();
    if activates {
        st.activated_at = Some(d.now);
        return Ok(Some(d.now));
    }
    Ok(None)
}

/// Wakes the next waiter if a slot is free and someone waits.
fn pass_turn(entry: &KeyEntry, st: &KeyState, limit: Option<u32>) {
    if st.queued > 0 && limit.is_none_or(|max| st.in_flight < max) {
        entry.wake.notify_one();
    }
}

/// A place in a key's wait queue; leaving it (timeout, refusal, or the
/// client going away mid-wait) gives the place back and passes on a wake-up
/// it may have consumed.
struct QueueTicket<'a> {
    entry: &'a KeyEntry,
    limit: Option<u32>,
    queued: bool,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        if self.queued {
            let mut st = self.entry.state.lock();
            st.queued = st.queued.saturating_sub(1);
            pass_turn(self.entry, &st, self.limit);
        }
    }
}

fn check_expiry(
    policy: &KeyPolicy,
    activated: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let Some(at) = policy.expiry.expires_at(activated) else {
        return Ok(());
    };
    if now < at {
        return Ok(());
    }
    let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let message = match policy.expiry {
        Expiry::Activation {
            amount,
            unit,
            activated_at,
        } => {
            let start = activated_at.or(activated).unwrap_or(at);
            let unit = match unit {
                super::policy::ActivationUnit::Days => "days",
                super::policy::ActivationUnit::Hours => "hours",
            };
            format!(
                "This API key expired at {when}: it was activated at {} for {amount} {unit}.",
                start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        }
        _ => format!("This API key expired at {when}."),
    };
    Err(Refusal::new(RefusalKind::Expired, message, None))
}

/// Endpoint permission, client restriction and model rule.
fn check_static(ask: &Ask<'_>, shape_checked: bool) -> Result<(), Refusal> {
    let p = ask.policy;
    if !p.permits_endpoint(ask.endpoint) {
        return Err(Refusal::new(
            RefusalKind::Permission,
            format!(
                "This API key is not permitted to use the {} endpoints.",
                ask.endpoint.as_str()
            ),
            None,
        ));
    }
    if !p.permits_client(
        ask.endpoint,
        ask.user_agent,
        ask.client_hints,
        shape_checked,
    ) {
        return Err(Refusal::new(
            RefusalKind::Client,
            "This API key may only be used from its allowed clients; this request does not come from one of them.".into(),
            None,
        ));
    }
    if !ask.model.is_empty() && !p.models.permits(ask.model) {
        return Err(Refusal::new(
            RefusalKind::Model,
            format!(
                "This API key is not allowed to use the model {}.",
                ask.model
            ),
            None,
        ));
    }
    Ok(())
}

/// An admitted request. Holds its concurrency slot and its reservation; on
/// [`settle`](Admission::settle) the reservation becomes the real amount, and
/// if dropped unsettled (error, cancel, panic) the reservation is simply
/// released. Either way the slot is freed and the next queued request woken.
pub struct Admission {
    entry: Arc<KeyEntry>,
    calendar: Calendar,
    admitted_at: DateTime<Utc>,
    /// Monotonic time of admission, so `settle` can date itself without
    /// trusting the wall clock to move forward.
    clock: Instant,
    estimate: Estimate,
    family: bool,
    activated: Option<DateTime<Utc>>,
    done: bool,
}

impl Admission {
    fn new(entry: &Arc<KeyEntry>, d: &Demand<'_>, activated: Option<DateTime<Utc>>) -> Self {
        Admission {
            entry: entry.clone(),
            calendar: d.calendar,
            admitted_at: d.now,
            clock: Instant::now(),
            estimate: d.estimate,
            family: d.family,
            activated,
            done: false,
        }
    }

    /// Some(instant) when this request activated an activation-mode key: the
    /// caller persists it as the policy's `expiry.activated_at`.
    pub fn activated(&self) -> Option<DateTime<Utc>> {
        self.activated
    }

    pub fn estimate(&self) -> Estimate {
        self.estimate
    }

    /// When the request was admitted (after any queue wait).
    pub fn admitted_at(&self) -> DateTime<Utc> {
        self.admitted_at
    }

    /// Replaces the reservation with what the request really used, dated
    /// admission time + elapsed monotonic time. `actual_tokens` is all four
    /// kinds summed; `actual_billed` is the record's billed cost;
    /// `counted_as_request` is false for a request that never reached
    /// upstream (it then leaves the request windows too).
    pub fn settle(self, actual_tokens: u64, actual_billed: NanoUsd, counted_as_request: bool) {
        let elapsed = TimeDelta::from_std(self.clock.elapsed()).unwrap_or(TimeDelta::zero());
        let now = self
            .admitted_at
            .checked_add_signed(elapsed)
            .unwrap_or(self.admitted_at);
        self.settle_at(now, actual_tokens, actual_billed, counted_as_request);
    }

    /// [`settle`](Admission::settle) at an explicit instant (tests, replays).
    pub fn settle_at(
        mut self,
        now: DateTime<Utc>,
        actual_tokens: u64,
        actual_billed: NanoUsd,
        counted_as_request: bool,
    ) {
        self.done = true;
        let mut st = self.entry.lock_for_change();
        st.settle(&Settlement {
            calendar: self.calendar,
            admitted_at: self.admitted_at,
            estimate: self.estimate,
            family: self.family,
            now,
            tokens: actual_tokens,
            cost: actual_billed,
            counted_as_request,
        });
        free_slot(&self.entry, &mut st);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.entry.lock_for_change();
        st.release(self.estimate, self.family);
        free_slot(&self.entry, &mut st);
    }
}

fn free_slot(entry: &KeyEntry, st: &mut KeyState) {
    st.in_flight = st.in_flight.saturating_sub(1);
    if st.queued > 0 {
        entry.wake.notify_one();
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("admitted_at", &self.admitted_at)
            .field("estimate", &self.estimate)
            .field("family", &self.family)
            .field("activated", &self.activated)
            .finish()
    }
}
