//! Per-key policy: what a relay key may do (expiry, models, clients,
//! endpoint families) and how much (rate windows, budgets, concurrency).
//! Owns the policy data type, the in-memory counters and admission; depends
//! only on `domain` (and on `usage::pricing` for the estimate helper). It
//! does no I/O: the caller persists activations and checkpoints counters.
//!
//! # Files
//! - `policy.rs`: [`KeyPolicy`] (serde, defaults = no limits) and its rules.
//! - `matching.rs`: `*` wildcards, Claude-family names, Claude Code detection.
//! - `validate.rs`: [`KeyPolicy::validate`] messages for `BAD_USER_INPUT`.
//! - `engine.rs`: [`Limits`] (admission, concurrency queue) and the [`Admission`] guard.
//! - `state.rs`: one key's counters and the reservation rule.
//! - `period.rs`: days, weeks and months in a time zone (DST included).
//! - `estimate.rs`: what a request reserves.
//! - `refusal.rs`: [`Refusal`], its status/type mapping and messages.
//! - `report.rs`: checkpoints ([`LimitsSnapshot`]) and [`KeyLimitStatus`].
//!
//! # Semantics
//! - Checked before forwarding. The response that crosses a limit completes
//!   and is billed in full; the next request is refused. Streamed and
//!   non-streamed requests count the same (settled from the captured usage).
//! - Rate windows are fixed: a window starts at the first admitted request
//!   after the previous one ended and lasts its duration; its reset time is
//!   reported. Requests count at admission; tokens (all four kinds) and
//!   billed cost count when the request settles, into the window current at
//!   that moment.
//! - Budgets count billed cost in calendar periods of the key's zone (the
//!   relay's default zone, UTC unless configured): day, week (from the reset
//!   weekday + hour), month, lifetime, and optionally a weekly budget for one
//!   model family. Settled amounts go to the period current at settlement,
//!   as the usage record is dated at its end.
//! - Reservation: every request reserves its estimate ([`estimate()`]) at
//!   admission; it is admitted only if used + reserved + its own estimate
//!   fits (state.rs has the exact rule), so concurrent requests overshoot a
//!   limit by at most their own (real − estimated) each.
//! - Concurrency: at most `max_in_flight` admitted requests; with a queue,
//!   up to `max_queued` more wait (first come, first served) up to
//!   `max_wait_ms`, else are refused at once.
//! - Policy applies to the model name the client requested.
//!
//! # Refusals: status and error type
//! The relay renders a [`Refusal`] in Anthropic's error envelope
//! (`{"type":"error","error":{"type":…,"message":…}}`) with
//! [`RefusalKind::status`] and [`RefusalKind::error_type`]:
//!
//! | kind | status | `error.type` | headers |
//! |---|---|---|---|
//! | `Window` | 429 | `rate_limit_error` | `retry-after` = seconds until the window resets |
//! | `Concurrency` | 429 | `rate_limit_error` | `retry-after: 1` |
//! | `Budget` | **402** | **`billing_error`** | `x-should-retry: false`; `retry-after` = seconds until the period resets (none for the total budget) |
//! | `Model`, `Client`, `Permission` | 403 | `permission_error` | `x-should-retry: false` |
//! | `Expired` | 401 | `authentication_error` | `x-should-retry: false` |
//!
//! 402 `billing_error` is the pair Anthropic itself uses for billing
//! problems; the official SDKs do not retry it, which is right for a budget
//! that frees up only at the next period.
//!
//! # How the relay calls it
//! - `/v1/messages` (and OpenAI-compatible chat): after inspect, build an
//!   [`Ask`] (requested model, endpoint family, user-agent, `x-app` and
//!   `metadata.user_id` as [`ClientHints`], [`estimate()`] from
//!   `RequestInfo`, `Utc::now()`), `admit(ask).await`; on `Ok`, persist
//!   [`Admission::activated`] if set, keep the guard with the request's bill
//!   and, where the usage record is emitted (also the estimated one on
//!   client cancel), call [`Admission::settle`] with the record's total
//!   tokens, billed cost and whether it reached upstream.
//! - count_tokens and models: [`Limits::check`] only (not billed, not counted).
//! - Periodically and at shutdown: store [`Limits::take_changed`] (the keys
//!   whose counters changed); at startup: [`Limits::restore`].

mod engine;
mod estimate;
mod matching;
mod period;
mod policy;
mod refusal;
mod report;
mod state;
mod validate;

#[cfg(test)]
mod tests;

pub use engine::{Admission, Ask, Limits};
pub use estimate::{estimate, Estimate, ESTIMATED_OUTPUT_CAP};
pub use matching::{glob_match, is_claude_code_shape, is_claude_code_user_agent, is_claude_family};
pub use period::Calendar;
pub use policy::{
    ActivationUnit, Budgets, ClientHints, ClientKind, ConcurrencyLimit, EndpointFamily, Expiry,
    FamilyBudget, KeyPolicy, ModelRule, ModelScope, RateWindow, WaitQueue, WeeklyReset,
    MAX_ACTIVATION_HOURS, MAX_QUEUE_WAIT_MS, MAX_WINDOW_SECS,
};
pub use refusal::{Refusal, RefusalKind};
pub use report::{
    BudgetPeriod, BudgetStatus, ConcurrencyStatus, Gauge, KeyLimitStatus, KeySnapshot,
    LimitsSnapshot, WindowStatus,
};
pub use state::{FamilyCounter, PeriodCounter, WindowState};
pub use validate::{parse_time_zone, PolicyErrors};
