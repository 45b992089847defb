//! One key's counters and the arithmetic on them: rate windows, budget
//! periods, reservations of requests in flight, concurrency counts. Pure and
//! synchronous; the engine holds a `KeyState` behind the key's own lock and
//! calls `check` + `commit` at admission and `settle`/`release` at the end.
//!
//! # The reservation rule
//! Token and cost limits count three things: what is settled in the current
//! window or period (`used`), the estimates of this key's requests in flight
//! (`reserved`, key-wide, because a request in flight settles into whatever
//! window or period is current when it ends), and the request's own estimate.
//! A request is admitted only if `used + reserved < limit` and
//! `used + reserved + min(own, limit) <= limit`. Clamping its own estimate to
//! the limit lets a single request larger than a whole limit run alone in a
//! fresh window instead of never; the strict `<` keeps a limit that is
//! exactly reached closed even to requests estimated at zero. Concurrent
//! requests therefore overshoot a limit by at most their own
//! (real − reserved) each.

use super::estimate::Estimate;
use super::period::{Bounds, Calendar};
use super::policy::{KeyPolicy, ModelScope, RateWindow};
use super::refusal::{
    local_reset_phrase, reset_phrase, secs_until, span, usd, Refusal, RefusalKind,
};
use crate::domain::NanoUsd;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A fixed window that began at an admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    pub duration_secs: u64,
    pub started_at: DateTime<Utc>,
    /// Admitted requests (counted at admission, as claude-relay-service does).
    pub requests: u64,
    /// Settled tokens (all four kinds).
    pub tokens: u64,
    /// Settled billed cost.
    pub cost: NanoUsd,
}

impl WindowState {
    fn begin(duration_secs: u64, now: DateTime<Utc>) -> Self {
        Self {
            duration_secs,
            started_at: now,
            requests: 0,
            tokens: 0,
            cost: NanoUsd::ZERO,
        }
    }

    pub fn ends_at(&self) -> DateTime<Utc> {
        let len = i64::try_from(self.duration_secs)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .unwrap_or(TimeDelta::MAX);
        self.started_at
            .checked_add_signed(len)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Running at `now`. A clock stepped back before the start still counts
    /// as inside the window, so an NTP correction does not reset it.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        now < self.ends_at()
    }
}

/// Billed cost settled in one calendar period. The bounds are cached so the
/// zone arithmetic runs once per period, not per request; a zone or weekday
/// change therefore takes effect at the next boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodCounter {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub used: NanoUsd,
}

impl PeriodCounter {
    fn current(&self, now: DateTime<Utc>) -> Option<Bounds> {
        match (self.start, self.end) {
            (Some(start), Some(end)) if start <= now && now < end => Some(Bounds { start, end }),
            _ => None,
        }
    }

    /// Used in the period containing `now` (0 once the stored period is over;
    /// kept if the clock went back before it).
    pub fn used_at(&self, now: DateTime<Utc>) -> NanoUsd {
        match self.end {
            Some(end) if now >= end => NanoUsd::ZERO,
            _ => self.used,
        }
    }

    /// The bounds to report at `now`.
    pub fn bounds_at(
        &self,
        now: DateTime<Utc>,
        fresh: impl FnOnce(DateTime<Utc>) -> Bounds,
    ) -> Bounds {
        self.current(now).unwrap_or_else(|| fresh(now))
    }

    fn add(
        &mut self,
        now: DateTime<Utc>,
        cost: NanoUsd,
        fresh: impl FnOnce(DateTime<Utc>) -> Bounds,
    ) {
        if self.current(now).is_none() {
            let b = fresh(now);
            // A later period starts from zero; an earlier one (the clock went
            // back) keeps what was counted rather than forgiving it.
            if self.start.is_none_or(|s| s < b.start) {
                self.used = NanoUsd::ZERO;
            }
            self.start = Some(b.start);
            self.end = Some(b.end);
        }
        self.used = self.used.saturating_add(cost);
    }
}

/// The weekly counter of a family budget, tied to the scope it counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyCounter {
    pub scope: ModelScope,
    pub week: PeriodCounter,
}

/// Everything the engine tracks for one key.
#[derive(Debug, Default)]
pub struct KeyState {
    /// Set by the first admitted request of an activation-mode key.
    pub activated_at: Option<DateTime<Utc>>,
    pub windows: Vec<WindowState>,
    pub daily: PeriodCounter,
    pub weekly: PeriodCounter,
    pub monthly: PeriodCounter,
    pub total: NanoUsd,
    pub family: Option<FamilyCounter>,
    /// Estimates of requests in flight.
    pub reserved_tokens: u64,
    pub reserved_cost: u64,
    pub reserved_family_cost: u64,
    pub in_flight: u32,
    pub queued: u32,
}

/// Where a calendar period lies around an instant.
pub type PeriodFn = fn(&Calendar, DateTime<Utc>) -> Bounds;

/// What one admission asks of the counters.
pub struct Demand<'a> {
    pub policy: &'a KeyPolicy,
    pub calendar: Calendar,
    pub estimate: Estimate,
    /// The requested model falls under the policy's family budget.
    pub family: bool,
    pub now: DateTime<Utc>,
}

/// How an admitted request ended.
pub struct Settlement {
    pub calendar: Calendar,
    pub admitted_at: DateTime<Utc>,
    pub estimate: Estimate,
    pub family: bool,
    pub now: DateTime<Utc>,
    pub tokens: u64,
    pub cost: NanoUsd,
    pub counted_as_request: bool,
}

/// See the module doc: room for the request's own (clamped) estimate.
pub fn fits(used: u64, reserved: u64, own: u64, limit: u64) -> bool {
    let committed = used.saturating_add(reserved);
    committed < limit && committed.saturating_add(own.min(limit)) <= limit
}

impl KeyState {
    /// The window of this length active at `now`, if any.
    pub fn active_window(&self, duration_secs: u64, now: DateTime<Utc>) -> Option<&WindowState> {
        self.windows
            .iter()
            .find(|w| w.duration_secs == duration_secs && w.is_active(now))
    }

    pub fn family_used_at(&self, scope: &ModelScope, now: DateTime<Utc>) -> NanoUsd {
        match &self.family {
            Some(f) if &f.scope == scope => f.week.used_at(now),
            _ => NanoUsd::ZERO,
        }
    }

    /// Rate windows, then budgets; the first limit that has no room refuses.
    pub fn check(&self, d: &Demand<'_>) -> Result<(), Refusal> {
        for w in &d.policy.rate_windows {
            self.check_window(w, d)?;
        }
        self.check_budgets(d)
    }

    fn check_window(&self, w: &RateWindow, d: &Demand<'_>) -> Result<(), Refusal> {
        let active = self.active_window(w.duration_secs, d.now);
        let length = span(w.duration_secs);
        let refuse = |what: String| {
            let (when, retry) = match active {
                Some(a) => (
                    format!("the window resets at {}", reset_phrase(d.now, a.ends_at())),
                    secs_until(d.now, a.ends_at()),
                ),
                // Nothing settled yet: only requests in flight hold it.
                None => ("it frees up as requests in flight finish".to_string(), 1),
            };
            Err(Refusal::new(
                RefusalKind::Window,
                format!("Rate limit reached for this API key: {what} per {length} window; {when}."),
                Some(retry),
            ))
        };
        let (requests, tokens, cost) =
            active.map_or((0, 0, NanoUsd::ZERO), |a| (a.requests, a.tokens, a.cost));
        if let Some(max) = w.max_requests {
            if requests >= max {
                return refuse(format!("{max} requests ({requests} used)"));
            }
        }
        if let Some(max) = w.max_tokens {
            if !fits(tokens, self.reserved_tokens, d.estimate.tokens, max) {
                return refuse(format!(
                    "{max} tokens ({tokens} used, {} reserved by requests in flight, this request needs about {})",
                    self.reserved_tokens, d.estimate.tokens
                ));
            }
        }
        if let Some(max) = w.max_cost {
            if !fits(cost.0, self.reserved_cost, d.estimate.billed_cost.0, max.0) {
                return refuse(format!(
                    "{} ({} used, {} reserved by requests in flight, this request needs about {})",
                    usd(max),
                    usd(cost),
                    usd(NanoUsd(self.reserved_cost)),
                    usd(d.estimate.billed_cost)
                ));
            }
        }
        Ok(())
    }

    fn check_budgets(&self, d: &Demand<'_>) -> Result<(), Refusal> {
        let b = &d.policy.budgets;
        let cal = d.calendar;
        let periods: [(&str, Option<NanoUsd>, &PeriodCounter, PeriodFn); 3] = [
            ("Daily", b.daily, &self.daily, Calendar::day),
            ("Weekly", b.weekly, &self.weekly, Calendar::week),
            ("Monthly", b.monthly, &self.monthly, Calendar::month),
        ];
        for (name, limit, counter, bounds) in periods {
            let Some(limit) = limit else { continue };
            let used = counter.used_at(d.now);
            if !fits(
                used.0,
                self.reserved_cost,
                d.estimate.billed_cost.0,
                limit.0,
            ) {
                let end = counter.bounds_at(d.now, |now| bounds(&cal, now)).end;
                return Err(self.budget_refusal(name, limit, used, d, Some(end)));
            }
        }
        if let Some(limit) = b.total {
            if !fits(
                self.total.0,
                self.reserved_cost,
                d.estimate.billed_cost.0,
                limit.0,
            ) {
                return Err(self.budget_refusal("Total", limit, self.total, d, None));
            }
        }
        if let (true, Some(f)) = (d.family, &b.family_weekly) {
            let used = self.family_used_at(&f.models, d.now);
            if !fits(
                used.0,
                self.reserved_family_cost,
                d.estimate.billed_cost.0,
                f.limit.0,
            ) {
                let end = match &self.family {
                    Some(c) if c.scope == f.models => c.week.bounds_at(d.now, |now| cal.week(now)),
                    _ => cal.week(d.now),
                }
                .end;
                let name = format!("Weekly budget for {}", f.models);
                return Err(self.budget_refusal(&name, f.limit, used, d, Some(end)));
            }
        }
        Ok(())
    }

    fn budget_refusal(
        &self,
        name: &str,
        limit: NanoUsd,
        used: NanoUsd,
        d: &Demand<'_>,
        resets: Option<DateTime<Utc>>,
    ) -> Refusal {
        let name = if name.starts_with("Weekly budget for") {
            name.to_string()
        } else {
            format!("{name} budget")
        };
        let in_flight = if self.reserved_cost > 0 {
            format!(
                ", {} reserved by requests in flight",
                usd(NanoUsd(self.reserved_cost))
            )
        } else {
            String::new()
        };
        let when = match resets {
            Some(at) => format!(
                "it resets at {}",
                local_reset_phrase(d.now, at, d.calendar.tz)
            ),
            None => "it does not reset; ask the key's administrator".to_string(),
        };
        Refusal::new(
            RefusalKind::Budget,
            format!(
                "{name} of this API key is used up: {} limit, {} used{in_flight}; {when}.",
                usd(limit),
                usd(used)
            ),
            resets.map(|at| secs_until(d.now, at)),
        )
    }

    /// Counts an admitted request: (re)starts windows, reserves its estimate.
    pub fn commit(&mut self, d: &Demand<'_>) {
        let policy = d.policy;
        // Windows the policy no longer has are forgotten; one that comes back
        // starts fresh.
        self.windows.retain(|s| {
            policy
                .rate_windows
                .iter()
                .any(|w| w.duration_secs == s.duration_secs)
        });
        for w in &policy.rate_windows {
            match self
                .windows
                .iter_mut()
                .find(|s| s.duration_secs == w.duration_secs)
            {
                Some(s) if s.is_active(d.now) => s.requests += 1,
                Some(s) => {
                    *s = WindowState::begin(w.duration_secs, d.now);
                    s.requests = 1;
                }
                None => {
                    let mut s = WindowState::begin(w.duration_secs, d.now);
                    s.requests = 1;
                    self.windows.push(s);
                }
            }
        }
        match (&policy.budgets.family_weekly, &mut self.family) {
            (Some(f), Some(c)) if c.scope == f.models => {}
            (Some(f), slot) => {
                *slot = Some(FamilyCounter {
                    scope: f.models.clone(),
                    week: PeriodCounter::default(),
                })
            }
            (None, slot) => *slot = None,
        }
        self.reserved_tokens = self.reserved_tokens.saturating_add(d.estimate.tokens);
        self.reserved_cost = self.reserved_cost.saturating_add(d.estimate.billed_cost.0);
        if d.family {
            self.reserved_family_cost = self
                .reserved_family_cost
                .saturating_add(d.estimate.billed_cost.0);
        }
    }

    /// Gives back a reservation without charging anything.
    pub fn release(&mut self, estimate: Estimate, family: bool) {
        self.reserved_tokens = self.reserved_tokens.saturating_sub(estimate.tokens);
        self.reserved_cost = self.reserved_cost.saturating_sub(estimate.billed_cost.0);
        if family {
            self.reserved_family_cost = self
                .reserved_family_cost
                .saturating_sub(estimate.billed_cost.0);
        }
    }

    /// Replaces the reservation with the real amounts, in the windows and
    /// periods current at `s.now` (a window that ended with no request since
    /// has nothing to count into: the next request starts a fresh one).
    pub fn settle(&mut self, s: &Settlement) {
        self.release(s.estimate, s.family);
        for w in &mut self.windows {
            if w.is_active(s.now) {
                w.tokens = w.tokens.saturating_add(s.tokens);
                w.cost = w.cost.saturating_add(s.cost);
            }
            let counted_here = w.started_at <= s.admitted_at && s.admitted_at < w.ends_at();
            if !s.counted_as_request && counted_here {
                w.requests = w.requests.saturating_sub(1);
            }
        }
        let cal = s.calendar;
        self.daily.add(s.now, s.cost, |now| cal.day(now));
        self.weekly.add(s.now, s.cost, |now| cal.week(now));
        self.monthly.add(s.now, s.cost, |now| cal.month(now));
        self.total = self.total.saturating_add(s.cost);
        if s.family {
            if let Some(f) = &mut self.family {
                f.week.add(s.now, s.cost, |now| cal.week(now));
            }
        }
    }

    /// Whether the state holds anything a checkpoint must keep.
    pub fn has_persistent_data(&self) -> bool {
        self.activated_at.is_some()
            || !self.windows.is_empty()
            || self.daily.start.is_some()
            || self.total > NanoUsd::ZERO
            || self.family.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_follows_the_reservation_rule() {
        assert!(fits(0, 0, 10, 10));
        assert!(!fits(0, 1, 10, 10));
        assert!(fits(5, 0, 5, 10));
        assert!(!fits(5, 1, 5, 10));
        // One request larger than the whole limit runs alone in a fresh period.
        assert!(fits(0, 0, 1_000, 10));
        assert!(!fits(1, 0, 1_000, 10));
        // A reached limit stays closed even to a zero estimate.
        assert!(!fits(10, 0, 0, 10));
        assert!(fits(9, 0, 0, 10));
        assert!(!fits(u64::MAX, u64::MAX, u64::MAX, u64::MAX));
    }
}
