//! Engine tests through `Limits::admit` at explicit instants: shared
//! helpers here, then one file per theme — windows, budgets, restrictions
//! (expiry, model, client, endpoint), concurrency (the queue under paused
//! tokio time, the overshoot bound under real threads), checkpoints.

use super::*;
use crate::domain::{KeyId, NanoUsd};
use chrono::{DateTime, TimeDelta, Utc};

mod budgets;
mod checkpoint;
mod concurrency;
mod restrictions;
mod windows;

/// Claude Code 2.1.197 as recorded in shared/captures/claude_code_tool_use.jsonl.
pub(super) const CC_UA: &str = "claude-cli/2.1.197 (external, sdk-cli)";
pub(super) const CC_X_APP: &str = "cli";
pub(super) const CC_USER_ID: &str = r#"{"device_id":"8bbfdd09255973b7cf08c60af11a4eb47cc7c98a7c13db3f549262810efd734f","account_uuid":"","session_id":"c2fd1380-2a3e-4f19-af32-c12020fa2a3c"}"#;

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Monday 2026-03-02 10:00 UTC.
pub(super) fn t0() -> DateTime<Utc> {
    t("2026-03-02T10:00:00Z")
}

pub(super) fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

pub(super) fn usd(s: &str) -> NanoUsd {
    NanoUsd::parse_decimal(s).unwrap()
}

pub(super) fn est(tokens: u64, cost: NanoUsd) -> Estimate {
    Estimate {
        tokens,
        billed_cost: cost,
    }
}

pub(super) fn ask<'a>(
    key: KeyId,
    policy: &'a KeyPolicy,
    now: DateTime<Utc>,
    estimate: Estimate,
) -> Ask<'a> {
    Ask {
        key_id: key,
        policy,
        model: "claude-sonnet-4-6",
        endpoint: EndpointFamily::AnthropicMessages,
        user_agent: None,
        client_hints: ClientHints::default(),
        estimate,
        now,
    }
}

pub(super) fn window(duration_secs: u64) -> RateWindow {
    RateWindow {
        duration_secs,
        ..RateWindow::default()
    }
}

pub(super) fn engine() -> (Limits, KeyId) {
    (Limits::new(chrono_tz::UTC), KeyId::generate())
}

pub(super) async fn admit(l: &Limits, a: Ask<'_>) -> Admission {
    match l.admit(a).await {
        Ok(adm) => adm,
        Err(r) => panic!("refused: {r:?}"),
    }
}

pub(super) async fn refuse(l: &Limits, a: Ask<'_>) -> Refusal {
    l.admit(a).await.expect_err("should be refused")
}
