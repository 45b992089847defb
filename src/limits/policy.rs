//! A key's policy as stored with the key and edited through GraphQL: expiry,
//! rate windows, budgets, concurrency, and the model, client and endpoint
//! rules. Plain serde data and the rule checks built on `matching.rs`
//! (validation is in `validate.rs`); it holds no counters (those live in
//! the engine) and does no I/O.
//!
//! Every struct is `#[serde(default)]` and `KeyPolicy::default()` limits
//! nothing, so a key stored before a field existed (or imported with an empty
//! policy) keeps working unchanged.

use super::matching::{
    glob_match, is_claude_code_shape, is_claude_code_user_agent, is_claude_family,
    starts_with_ignore_case,
};
use crate::domain::NanoUsd;
use chrono::{DateTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest rate window accepted: longer ones are budgets in disguise.
pub const MAX_WINDOW_SECS: u64 = 366 * 86_400;
/// Longest wait an admin may configure for the concurrency queue ("short").
pub const MAX_QUEUE_WAIT_MS: u64 = 300_000;
/// Longest activation period (ten years), so expiry arithmetic cannot overflow.
pub const MAX_ACTIVATION_HOURS: u64 = 10 * 366 * 24;

/// Everything a relay key is allowed to do, and how much.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyPolicy {
    #[serde(default)]
    pub expiry: Expiry,
    /// Any number of fixed windows, each with its own length and maxima.
    #[serde(default)]
    pub rate_windows: Vec<RateWindow>,
    #[serde(default)]
    pub budgets: Budgets,
    /// None: any number of requests in flight.
    #[serde(default)]
    pub concurrency: Option<ConcurrencyLimit>,
    #[serde(default)]
    pub models: ModelRule,
    /// Clients the key may be used from; empty = any client.
    #[serde(default)]
    pub clients: Vec<ClientKind>,
    /// Endpoint families the key may call; empty = all of them (also the
    /// default for imported keys whose permission list is empty).
    #[serde(default)]
    pub permissions: Vec<EndpointFamily>,
}

/// When a key stops working.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Expiry {
    #[default]
    Never,
    /// Stops working at a fixed instant.
    Fixed { at: DateTime<Utc> },
    /// Starts its clock at the first admitted request and runs for
    /// `amount` `unit`s. `activated_at` is persisted by the caller once the
    /// engine reports the activation ([`super::Admission::activated`]).
    Activation {
        #[serde(default = "default_activation_amount")]
        amount: u32,
        #[serde(default)]
        unit: ActivationUnit,
        #[serde(default)]
        activated_at: Option<DateTime<Utc>>,
    },
}

fn default_activation_amount() -> u32 {
    30
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationUnit {
    #[default]
    Days,
    Hours,
}

impl Expiry {
    /// The activation period, for activation mode.
    pub fn activation_period(&self) -> Option<TimeDelta> {
        match *self {
            Expiry::Activation { amount, unit, .. } => {
                let hours = match unit {
                    ActivationUnit::Days => u64::from(amount) * 24,
                    ActivationUnit::Hours => u64::from(amount),
                };
                let hours = hours.min(MAX_ACTIVATION_HOURS);
                // Cannot fail after the clamp; `hours` stays far below i64 range.
                TimeDelta::try_hours(i64::try_from(hours).unwrap_or(0))
            }
            _ => None,
        }
    }

    /// When the key expires, given the activation the engine knows of (the
    /// policy's own `activated_at` wins when set). None: it does not expire,
    /// or it is not activated yet.
    pub fn expires_at(&self, known_activation: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match *self {
            Expiry::Never => None,
            Expiry::Fixed { at } => Some(at),
            Expiry::Activation { activated_at, .. } => {
                let start = activated_at.or(known_activation)?;
                let period = self.activation_period()?;
                Some(
                    start
                        .checked_add_signed(period)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                )
            }
        }
    }
}

/// A fixed window: it starts at the first admitted request after the
/// previous one ended and lasts `duration_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateWindow {
    pub duration_secs: u64,
    pub max_requests: Option<u64>,
    /// Input + output + cache creation + cache read.
    pub max_tokens: Option<u64>,
    /// Billed cost (list × the key's multiplier).
    pub max_cost: Option<NanoUsd>,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            duration_secs: 60,
            max_requests: None,
            max_tokens: None,
            max_cost: None,
        }
    }
}

/// Cost budgets per calendar period, all in billed cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Budgets {
    pub daily: Option<NanoUsd>,
    pub weekly: Option<NanoUsd>,
    pub monthly: Option<NanoUsd>,
    /// Lifetime.
    pub total: Option<NanoUsd>,
    /// A weekly limit on one model family only (what claude-relay-service's
    /// `weeklyOpusCostLimit` covers: all Claude models).
    pub family_weekly: Option<FamilyBudget>,
    /// Where a week begins, in `time_zone`.
    pub weekly_reset: WeeklyReset,
    /// IANA zone for days, weeks and months; None = the relay's default zone.
    pub time_zone: Option<Tz>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeeklyReset {
    pub weekday: Weekday,
    /// 0–23, local time.
    pub hour: u8,
}

impl Default for WeeklyReset {
    fn default() -> Self {
        Self {
            weekday: Weekday::Mon,
            hour: 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FamilyBudget {
    pub models: ModelScope,
    pub limit: NanoUsd,
}

/// Which requested models a family budget covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelScope {
    /// Every Claude model (names containing `claude`, `opus`, `sonnet` or
    /// `haiku`, as claude-relay-service decides).
    #[default]
    AllClaude,
    /// Names matching a `*` wildcard pattern, e.g. `claude-opus-*`.
    Matching(String),
}

impl ModelScope {
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelScope::AllClaude => is_claude_family(model),
            ModelScope::Matching(pattern) => glob_match(pattern, model),
        }
    }
}

impl fmt::Display for ModelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelScope::AllClaude => f.write_str("all Claude models"),
            ModelScope::Matching(p) => write!(f, "models matching {p}"),
        }
    }
}

/// Requests in flight at once, with an optional short wait queue instead of
/// an immediate 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConcurrencyLimit {
    pub max_in_flight: u32,
    pub queue: Option<WaitQueue>,
}

impl Default for ConcurrencyLimit {
    fn default() -> Self {
        Self {
            max_in_flight: 1,
            queue: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaitQueue {
    pub max_queued: u32,
    pub max_wait_ms: u64,
}

impl Default for WaitQueue {
    // claude-relay-service's defaults: 3 waiting, 10 s.
    fn default() -> Self {
        Self {
            max_queued: 3,
            max_wait_ms: 10_000,
        }
    }
}

/// Model allow-list or deny-list, with `*` wildcards; matched against the
/// model name the client requested (conventions.md "Model mapping").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "patterns")]
pub enum ModelRule {
    #[default]
    Any,
    /// Only these; an empty allow-list permits nothing (validation refuses it).
    Allow(Vec<String>),
    Deny(Vec<String>),
}

impl ModelRule {
    pub fn permits(&self, model: &str) -> bool {
        match self {
            ModelRule::Any => true,
            ModelRule::Allow(patterns) => patterns.iter().any(|p| glob_match(p, model)),
            ModelRule::Deny(patterns) => !patterns.iter().any(|p| glob_match(p, model)),
        }
    }
}

/// A client a key may be restricted to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Claude Code: user-agent `claude-cli/X.Y.Z`, and on messages requests
    /// also a non-empty `x-app` header and a Claude Code `metadata.user_id`.
    ClaudeCode,
    /// Any client whose user-agent starts with this (case-insensitive).
    UserAgentPrefix(String),
}

/// Endpoint families a key may be permitted to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointFamily {
    /// `/v1/messages` and its count_tokens and models companions.
    AnthropicMessages,
    /// The OpenAI-compatible routes (`/openai/v1/...`).
    OpenaiCompatible,
}

impl EndpointFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointFamily::AnthropicMessages => "anthropic_messages",
            EndpointFamily::OpenaiCompatible => "openai_compatible",
        }
    }
}

/// What the client restriction reads from a request besides its user-agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHints<'a> {
    /// The `x-app` header (Claude Code sends `cli`).
    pub x_app: Option<&'a str>,
    /// `metadata.user_id` from the body (RequestInfo::user_id).
    pub metadata_user_id: Option<&'a str>,
}

impl KeyPolicy {
    /// Whether the key may call this endpoint family (empty list = all).
    pub fn permits_endpoint(&self, family: EndpointFamily) -> bool {
        self.permissions.is_empty() || self.permissions.contains(&family)
    }

    /// Whether the client restriction lets this request through.
    /// `shape_checked` is true for billed messages requests, where Claude Code
    /// must also show its request shape; count_tokens and models calls are
    /// judged by user-agent alone (as claude-relay-service does).
    pub fn permits_client(
        &self,
        family: EndpointFamily,
        user_agent: Option<&str>,
        hints: ClientHints<'_>,
        shape_checked: bool,
    ) -> bool {
        if self.clients.is_empty() {
            return true;
        }
        let ua = user_agent.unwrap_or("");
        self.clients.iter().any(|client| match client {
            ClientKind::ClaudeCode => {
                // Claude Code never calls the OpenAI-compatible routes.
                family == EndpointFamily::AnthropicMessages
                    && is_claude_code_user_agent(ua)
                    && (!shape_checked || is_claude_code_shape(hints))
            }
            ClientKind::UserAgentPrefix(prefix) => starts_with_ignore_case(ua, prefix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CC_UA: &str = "claude-cli/2.1.197 (external, sdk-cli)";
    const CC_USER_ID: &str = r#"{"device_id":"8bbfdd09255973b7cf08c60af11a4eb47cc7c98a7c13db3f549262810efd734f","account_uuid":"","session_id":"c2fd1380-2a3e-4f19-af32-c12020fa2a3c"}"#;

    #[test]
    fn empty_json_is_the_default_policy_and_limits_nothing() {
        let p: KeyPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, KeyPolicy::default());
        assert!(p.validate().is_ok());
        assert!(p.permits_endpoint(EndpointFamily::OpenaiCompatible));
        assert!(p.models.permits("anything"));
        assert!(p.permits_client(
            EndpointFamily::OpenaiCompatible,
            None,
            ClientHints::default(),
            true
        ));
        assert_eq!(p.expiry.expires_at(None), None);
    }

    #[test]
    fn policy_round_trips_through_json() {
        let p = KeyPolicy {
            expiry: Expiry::Activation {
                amount: 2,
                unit: ActivationUnit::Hours,
                activated_at: None,
            },
            rate_windows: vec![RateWindow {
                duration_secs: 300,
                max_requests: Some(10),
                max_tokens: None,
                max_cost: Some(NanoUsd(5)),
            }],
            budgets: Budgets {
                daily: Some(NanoUsd(1)),
                family_weekly: Some(FamilyBudget {
                    models: ModelScope::Matching("claude-opus-*".into()),
                    limit: NanoUsd(7),
                }),
                weekly_reset: WeeklyReset {
                    weekday: Weekday::Fri,
                    hour: 9,
                },
                time_zone: Some(chrono_tz::Europe::Berlin),
                ..Budgets::default()
            },
            concurrency: Some(ConcurrencyLimit {
                max_in_flight: 2,
                queue: Some(WaitQueue::default()),
            }),
            models: ModelRule::Deny(vec!["claude-opus-*".into()]),
            clients: vec![
                ClientKind::ClaudeCode,
                ClientKind::UserAgentPrefix("my-tool/".into()),
            ],
            permissions: vec![EndpointFamily::AnthropicMessages],
        };
        let json = serde_json::to_string(&p).unwrap();
        let back: KeyPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(p.validate().is_ok(), "{:?}", p.validate());
        // Spot-check the wire names the store and the importer will see.
        assert!(json.contains(r#""mode":"activation""#), "{json}");
        assert!(json.contains(r#""time_zone":"Europe/Berlin""#), "{json}");
        assert!(json.contains(r#""models":{"mode":"deny""#), "{json}");
    }

    #[test]
    fn partial_json_fills_defaults() {
        let p: KeyPolicy = serde_json::from_str(
            r#"{"concurrency":{"queue":{}},"expiry":{"mode":"activation"},"rate_windows":[{"max_requests":5}]}"#,
        )
        .unwrap();
        assert_eq!(
            p.concurrency,
            Some(ConcurrencyLimit {
                max_in_flight: 1,
                queue: Some(WaitQueue {
                    max_queued: 3,
                    max_wait_ms: 10_000
                })
            })
        );
        assert_eq!(p.expiry.activation_period(), Some(TimeDelta::days(30)));
        assert_eq!(p.rate_windows[0].duration_secs, 60);
    }

    #[test]
    fn allow_and_deny_lists() {
        let allow = ModelRule::Allow(vec!["claude-sonnet-*".into(), "claude-haiku-4-5".into()]);
        assert!(allow.permits("claude-sonnet-4-6"));
        assert!(allow.permits("claude-haiku-4-5"));
        assert!(!allow.permits("claude-opus-4-8"));
        assert!(!ModelRule::Allow(vec![]).permits("claude-sonnet-4-6"));
        let deny = ModelRule::Deny(vec!["claude-opus-*".into()]);
        assert!(!deny.permits("claude-opus-4-8"));
        assert!(deny.permits("claude-sonnet-4-6"));
        assert!(ModelRule::Deny(vec![]).permits("claude-opus-4-8"));
    }

    #[test]
    fn claude_code_restriction_reads_real_headers_and_shape() {
        let p = KeyPolicy {
            clients: vec![ClientKind::ClaudeCode],
            ..KeyPolicy::default()
        };
        let real = ClientHints {
            x_app: Some("cli"),
            metadata_user_id: Some(CC_USER_ID),
        };
        let msgs = EndpointFamily::AnthropicMessages;
        assert!(p.permits_client(msgs, Some(CC_UA), real, true));
        // Older Claude Code versions send the legacy user_id form.
        let legacy = format!(
            "user_{}_account__session_{}",
            "ab".repeat(32),
            "c2fd1380-2a3e-4f19-af32-c12020fa2a3c"
        );
        let legacy_hints = ClientHints {
            metadata_user_id: Some(&legacy),
            ..real
        };
        assert!(p.permits_client(msgs, Some(CC_UA), legacy_hints, true));
        // An SDK pretending via the user-agent only is caught by the shape.
        let sdk_like = ClientHints {
            x_app: None,
            metadata_user_id: None,
        };
        assert!(!p.permits_client(msgs, Some(CC_UA), sdk_like, true));
        let no_user_id = ClientHints {
            metadata_user_id: Some("someone"),
            ..real
        };
        assert!(!p.permits_client(msgs, Some(CC_UA), no_user_id, true));
        // count_tokens/models: user-agent alone.
        assert!(p.permits_client(msgs, Some(CC_UA), sdk_like, false));
        assert!(!p.permits_client(msgs, Some("Anthropic/Python 2.14.0"), real, true));
        assert!(!p.permits_client(msgs, Some("claude-cli/2.1"), real, true));
        assert!(!p.permits_client(msgs, None, real, true));
        assert!(!p.permits_client(EndpointFamily::OpenaiCompatible, Some(CC_UA), real, true));
    }

    #[test]
    fn user_agent_prefix_clients() {
        let p = KeyPolicy {
            clients: vec![ClientKind::UserAgentPrefix("OpenAI/Python".into())],
            ..KeyPolicy::default()
        };
        let hints = ClientHints::default();
        assert!(p.permits_client(
            EndpointFamily::OpenaiCompatible,
            Some("openai/python 3.57.0"),
            hints,
            true
        ));
        assert!(!p.permits_client(EndpointFamily::OpenaiCompatible, Some(CC_UA), hints, true));
    }

    #[test]
    fn permissions_default_to_all() {
        let mut p = KeyPolicy::default();
        assert!(p.permits_endpoint(EndpointFamily::AnthropicMessages));
        assert!(p.permits_endpoint(EndpointFamily::OpenaiCompatible));
        p.permissions = vec![EndpointFamily::OpenaiCompatible];
        assert!(!p.permits_endpoint(EndpointFamily::AnthropicMessages));
        assert!(p.permits_endpoint(EndpointFamily::OpenaiCompatible));
    }
}
