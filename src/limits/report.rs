//! What leaves the engine besides admissions: checkpoints of the counters
//! ([`KeySnapshot`] per changed key, serde, for the app to store so a
//! restart keeps windows and budgets) and a key's limit status ([`KeyLimitStatus`],
//! for `GET /v1/key/usage` and GraphQL).
//!
//! A snapshot carries settled counters and activations, never reservations
//! or concurrency counts: requests in flight do not survive a restart. Money
//! is integer nano-USD here; the HTTP and GraphQL faces render decimals.

use super::engine::Limits;
use super::period::Calendar;
use super::policy::{Expiry, KeyPolicy, ModelScope};
use super::state::{FamilyCounter, KeyState, PeriodCounter, PeriodFn, WindowState};
use crate::domain::{KeyId, NanoUsd};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// Every key's persistent counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsSnapshot {
    pub keys: Vec<KeySnapshot>,
}

/// One key's persistent counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeySnapshot {
    pub key_id: KeyId,
    #[serde(default)]
    pub activated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub windows: Vec<WindowState>,
    #[serde(default)]
    pub daily: PeriodCounter,
    #[serde(default)]
    pub weekly: PeriodCounter,
    #[serde(default)]
    pub monthly: PeriodCounter,
    #[serde(default)]
    pub total: NanoUsd,
    #[serde(default)]
    pub family: Option<FamilyCounter>,
}

/// A key's limits as its holder sees them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyLimitStatus {
    pub expires_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    /// Activation mode, not used yet: the clock starts at the first request.
    pub activation_pending: bool,
    /// The zone days, weeks and months are counted in.
    pub time_zone: String,
    pub windows: Vec<WindowStatus>,
    /// Daily, weekly, monthly and total always (limit `None` when unset),
    /// then the family budget when the policy has one.
    pub budgets: Vec<BudgetStatus>,
    pub concurrency: ConcurrencyStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowStatus {
    pub duration_secs: u64,
    /// None: no window is running; the next request starts one.
    pub started_at: Option<DateTime<Utc>>,
    pub resets_at: Option<DateTime<Utc>>,
    /// Requests count at admission, so those in flight are in `used`.
    pub requests: Gauge<u64>,
    pub tokens: Gauge<u64>,
    pub cost: Gauge<NanoUsd>,
}

/// Used, reserved by requests in flight, limit, and what is left of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Gauge<T> {
    pub used: T,
    pub reserved: T,
    pub limit: Option<T>,
    pub left: Option<T>,
}

impl Gauge<u64> {
    fn new(used: u64, reserved: u64, limit: Option<u64>) -> Self {
        Self {
            used,
            reserved,
            limit,
            left: limit.map(|l| l.saturating_sub(used.saturating_add(reserved))),
        }
    }
}

impl Gauge<NanoUsd> {
    fn money(used: NanoUsd, reserved: u64, limit: Option<NanoUsd>) -> Self {
        let g = Gauge::new(used.0, reserved, limit.map(|l| l.0));
        Self {
            used,
            reserved: NanoUsd(reserved),
            limit,
            left: g.left.map(NanoUsd),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
    Total,
    FamilyWeekly,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub period: BudgetPeriod,
    /// For the family budget: which models it covers.
    pub models: Option<ModelScope>,
    pub cost: Gauge<NanoUsd>,
    /// None for the total budget.
    pub period_start: Option<DateTime<Utc>>,
    pub resets_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConcurrencyStatus {
    pub in_flight: u32,
    pub queued: u32,
    pub limit: Option<u32>,
}

impl Limits {
    /// The persistent counters of every key that has any, ordered by key id
    /// (the checkpoint writes [`Limits::take_changed`] instead).
    #[cfg(test)]
    pub fn snapshot(&self) -> LimitsSnapshot {
        let mut keys = Vec::new();
        self.for_each_entry(|key_id, entry| {
            keys.extend(key_snapshot(key_id, &entry.state.lock()));
        });
        keys.sort_by_key(|k| k.key_id);
        LimitsSnapshot { keys }
    }

    /// The counters changed since the last call, for the checkpoint: a
    /// key's snapshot, or None when its stored counters should go (a key
    /// forgotten, or one whose counters are empty again). Only keys that
    /// saw requests (or a restore) are visited beyond a flag check, so the
    /// cost follows activity, not the number of keys.
    pub fn take_changed(&self) -> Vec<(KeyId, Option<KeySnapshot>)> {
        let mut out: Vec<(KeyId, Option<KeySnapshot>)> = self
            .take_forgotten()
            .into_iter()
            .map(|k| (k, None))
            .collect();
        self.for_each_entry(|key_id, entry| {
            if !entry.dirty.load(Ordering::Relaxed) {
                return;
            }
            let st = entry.state.lock();
            entry.dirty.store(false, Ordering::Relaxed);
            out.push((key_id, key_snapshot(key_id, &st)));
        });
        out
    }

    /// One key's persistent counters, None when it has none.
    pub fn key_snapshot(&self, key_id: KeyId) -> Option<KeySnapshot> {
        self.existing(key_id)
            .and_then(|e| key_snapshot(key_id, &e.state.lock()))
    }

    /// Marks keys changed again (their checkpoint write failed).
    pub fn mark_changed(&self, keys: impl IntoIterator<Item = KeyId>) {
        for key_id in keys {
            if let Some(entry) = self.existing(key_id) {
                let _st = entry.lock_for_change();
            }
        }
    }

    /// Loads checkpointed counters (at startup, or to seed them from usage
    /// history), replacing those of the keys it names; reservations and
    /// concurrency counts of requests in flight are kept.
    pub fn restore(&self, snapshot: LimitsSnapshot) {
        for k in snapshot.keys {
            let entry = self.entry(k.key_id);
            let mut st = entry.state.lock();
            st.activated_at = k.activated_at;
            st.windows = k.windows;
            st.daily = k.daily;
            st.weekly = k.weekly;
            st.monthly = k.monthly;
            st.total = k.total;
            st.family = k.family;
        }
    }

    /// The key's windows, budgets and concurrency at `now`, against `policy`.
    pub fn key_status(
        &self,
        key_id: KeyId,
        policy: &KeyPolicy,
        now: DateTime<Utc>,
    ) -> KeyLimitStatus {
        let calendar = self.calendar(policy);
        match self.existing(key_id) {
            Some(entry) => status(&entry.state.lock(), policy, calendar, now),
            None => status(&KeyState::default(), policy, calendar, now),
        }
    }
}

fn status(st: &KeyState, policy: &KeyPolicy, cal: Calendar, now: DateTime<Utc>) -> KeyLimitStatus {
    let activated_at = match policy.expiry {
        Expiry::Activation { activated_at, .. } => activated_at.or(st.activated_at),
        _ => None,
    };
    let windows = policy
        .rate_windows
        .iter()
        .map(|w| {
            let active = st.active_window(w.duration_secs, now);
            let (requests, tokens, cost) =
                active.map_or((0, 0, NanoUsd::ZERO), |a| (a.requests, a.tokens, a.cost));
            WindowStatus {
                duration_secs: w.duration_secs,
                started_at: active.map(|a| a.started_at),
                resets_at: active.map(WindowState::ends_at),
                requests: Gauge::new(requests, 0, w.max_requests),
                tokens: Gauge::new(tokens, st.reserved_tokens, w.max_tokens),
                cost: Gauge::money(cost, st.reserved_cost, w.max_cost),
            }
        })
        .collect();
    let b = &policy.budgets;
    let periodic = |period, counter: &PeriodCounter, limit, fresh: PeriodFn| {
        let bounds = counter.bounds_at(now, |now| fresh(&cal, now));
        BudgetStatus {
            period,
            models: None,
            cost: Gauge::money(counter.used_at(now), st.reserved_cost, limit),
            period_start: Some(bounds.start),
            resets_at: Some(bounds.end),
        }
    };
    let mut budgets = vec![
        periodic(BudgetPeriod::Daily, &st.daily, b.daily, Calendar::day),
        periodic(BudgetPeriod::Weekly, &st.weekly, b.weekly, Calendar::week),
        periodic(
            BudgetPeriod::Monthly,
            &st.monthly,
            b.monthly,
            Calendar::month,
        ),
        BudgetStatus {
            period: BudgetPeriod::Total,
            models: None,
            cost: Gauge::money(st.total, st.reserved_cost, b.total),
            period_start: None,
            resets_at: None,
        },
    ];
    if let Some(f) = &b.family_weekly {
        let week = match &st.family {
            Some(c) if c.scope == f.models => c.week,
            _ => PeriodCounter::default(),
        };
        let mut s = periodic(
            BudgetPeriod::FamilyWeekly,
            &week,
            Some(f.limit),
            Calendar::week,
        );
        s.models = Some(f.models.clone());
        s.cost = Gauge::money(week.used_at(now), st.reserved_family_cost, Some(f.limit));
        budgets.push(s);
    }
    KeyLimitStatus {
        expires_at: policy.expiry.expires_at(st.activated_at),
        activated_at,
        activation_pending: matches!(policy.expiry, Expiry::Activation { .. })
            && activated_at.is_none(),
        time_zone: cal.tz.name().to_string(),
        windows,
        budgets,
        concurrency: ConcurrencyStatus {
            in_flight: st.in_flight,
            queued: st.queued,
            limit: policy.concurrency.map(|c| c.max_in_flight),
        },
    }
}

/// A key's persistent counters, None when it has none.
fn key_snapshot(key_id: KeyId, st: &KeyState) -> Option<KeySnapshot> {
    st.has_persistent_data().then(|| KeySnapshot {
        key_id,
        activated_at: st.activated_at,
        windows: st.windows.clone(),
        daily: st.daily,
        weekly: st.weekly,
        monthly: st.monthly,
        total: st.total,
        family: st.family.clone(),
    })
}
