//! Plain shared data: ids, units, records. No I/O and no dependencies on other
//! modules, so every room of the crate can speak these types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7), so ids sort by creation.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a relay-issued API key.
    KeyId
);
id_type!(
    /// Identifies an upstream account.
    AccountId
);
id_type!(
    /// Identifies an admin user.
    AdminId
);
id_type!(
    /// Identifies an account group.
    GroupId
);

/// Money inside the relay: integer nano-dollars (1 USD = 10^9). Never a float.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NanoUsd(pub u64);

impl NanoUsd {
    pub const ZERO: NanoUsd = NanoUsd(0);
    pub const PER_USD: u64 = 1_000_000_000;

    pub fn saturating_add(self, other: NanoUsd) -> NanoUsd {
        NanoUsd(self.0.saturating_add(other.0))
    }

    /// Exact decimal rendering, e.g. `0.000123450` → `"0.00012345"`.
    pub fn to_decimal_string(self) -> String {
        let whole = self.0 / Self::PER_USD;
        let frac = self.0 % Self::PER_USD;
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:09}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }

    /// Parses a decimal USD string with at most 9 fractional digits.
    pub fn parse_decimal(s: &str) -> Option<NanoUsd> {
        let s = s.trim();
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if frac.len() > 9 {
            return None;
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let frac_val: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().ok()?
        };
        whole
            .checked_mul(Self::PER_USD)?
            .checked_add(frac_val)
            .map(NanoUsd)
    }
}

impl fmt::Display for NanoUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

/// Token counts of one request, by kind. Cache creation is split by TTL
/// because the two are priced differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cache_creation_5m: u64,
    pub cache_creation_1h: u64,
    pub cache_read: u64,
}

impl TokenUsage {
    pub fn cache_creation(&self) -> u64 {
        self.cache_creation_5m + self.cache_creation_1h
    }

    /// "Tokens" as limits count them: all four kinds summed.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_creation() + self.cache_read
    }
}

/// Upstream account kinds; one adapter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    AnthropicApiKey,
    ClaudeOauth,
    /// Any Anthropic-Messages-compatible base URL with a static key.
    AnthropicCompatible,
    /// Claude on AWS Bedrock (SigV4-signed InvokeModel calls).
    Bedrock,
    /// Claude on Google Vertex AI (service-account JWT exchanged for tokens).
    Vertex,
}

/// Lifecycle state an admin sets (or `AuthFailed`, set by the relay when
/// upstream rejects the account's credentials for good).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
    AuthFailed,
    Deleted,
}

/// Lifecycle state of a relay key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Disabled,
    Deleted,
}

/// Admin roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Viewer,
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The raw value, for the one place that must send it (an upstream header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A masked form safe for the API: the first 4 and last 4 characters for
    /// long values, nothing at all for short ones.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks a secret value for display: `abcd…wxyz` for long values, `****` for short ones.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 16 {
        return "****".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// A relay-issued key as stored. The raw key is never kept: only its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    pub description: String,
    /// Lowercase hex SHA-256 of the raw key.
    pub key_hash: String,
    /// Safe display form, e.g. `cr_1a2b…9f0e`.
    pub display_prefix: String,
    pub status: KeyStatus,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Billed cost = list cost × this multiplier (1.0 = list price).
    pub cost_multiplier: f64,
    #[serde(default)]
    pub binding: KeyBinding,
    /// Limits, budgets and restrictions (default: none).
    #[serde(default)]
    pub policy: crate::limits::KeyPolicy,
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.status == KeyStatus::Active && self.expires_at.is_none_or(|exp| exp > now)
    }
}

/// Upstream credentials, decrypted, in memory only. The store keeps them encrypted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    pub api_key: Option<Secret>,
    /// Extra headers sent with every call (anthropic_compatible gateways); may carry secrets.
    #[serde(default)]
    pub headers: Vec<(String, Secret)>,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Bedrock accounts: the AWS key pair and region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsCredentials>,
    /// Vertex accounts: the service account and where to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpCredentials>,
}

/// What a Vertex account calls with: a Google service account (its JSON key
/// file, secret as a whole), the project and the region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcpCredentials {
    pub service_account_json: Secret,
    pub project_id: String,
    /// e.g. `us-east5`, or `global`.
    pub region: String,
}

/// What a Bedrock account signs its calls with. The region lives here too
/// (it is part of every signature), so one record says where and as whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Temporary (STS) credentials carry a session token.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// e.g. `us-east-1`.
    pub region: String,
}

/// An upstream account with its credentials decrypted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub kind: AccountKind,
    /// 1 is most preferred (as in claude-relay-service).
    pub priority: u32,
    pub status: AccountStatus,
    /// Overrides the kind's default API base URL (e.g. for tests or a gateway).
    pub base_url: Option<String>,
    pub credentials: Credentials,
    /// http, https, socks5 or socks5h URL; may carry a password, so it is a secret.
    pub proxy: Option<Secret>,
    /// How the balancer may use the account.
    #[serde(default)]
    pub routing: AccountRouting,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which keys an account serves (conventions.md "Lifecycle of records").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMode {
    /// Serves keys that are not bound to anything (the shared pool).
    #[default]
    Shared,
    /// Serves only keys bound to this account.
    Dedicated,
    /// Serves only keys bound to one of its groups.
    GroupOnly,
}

/// Maps a requested model name to the name sent upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMapping {
    pub from: String,
    pub to: String,
}

/// Routing settings of an account. Every field has a default so records
/// written before a field existed still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountRouting {
    pub mode: AccountMode,
    pub group_ids: Vec<GroupId>,
    /// Configured weight for the `balanced` strategy (1–1000; default 100).
    pub weight: u32,
    /// Most requests in flight at once on this account (None: unlimited).
    pub max_concurrency: Option<u32>,
    /// Model patterns the account serves (`*` wildcards); empty = every model.
    pub allowed_models: Vec<String>,
    pub model_mapping: Vec<ModelMapping>,
    /// Pay-per-token accounts cost list price × this multiplier.
    pub cost_multiplier: f64,
    /// Subscription accounts: tokens per 5-hour window, when known (headroom
    /// without upstream headers).
    pub window_token_limit: Option<u64>,
}

impl Default for AccountRouting {
    fn default() -> Self {
        Self {
            mode: AccountMode::Shared,
            group_ids: Vec::new(),
            weight: 100,
            max_concurrency: None,
            allowed_models: Vec::new(),
            model_mapping: Vec::new(),
            cost_multiplier: 1.0,
            window_token_limit: None,
        }
    }
}

/// Balancing strategies (conventions.md enum names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    #[default]
    Priority,
    LeastUsed,
    CostFirst,
    Balanced,
    Latency,
}

/// A named group of accounts, optionally with its own strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// None: the global strategy.
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a key is bound to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum KeyBinding {
    /// The shared pool.
    #[default]
    None,
    Account(AccountId),
    Group(GroupId),
}

/// An admin user. The password is kept only as an argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Admin {
    pub id: AdminId,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
    /// A disabled admin cannot log in and has no sessions. Absent in records
    /// written before it existed, hence the default.
    #[serde(default)]
    pub disabled: bool,
}

/// A logged-in admin session. The token is kept only as a SHA-256 hex hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminSession {
    pub token_hash: String,
    pub admin_id: AdminId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One finished client request (or one failed attempt billed to an account
/// only), as the relay reports it to the usage writer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub at: DateTime<Utc>,
    /// `None` for a failed attempt that upstream may still charge: it is
    /// billed to the account, never to the key.
    pub key_id: Option<KeyId>,
    pub account_id: Option<AccountId>,
    /// The model name the client asked for.
    pub requested_model: String,
    /// The model upstream reported (the price comes from this one).
    pub model: String,
    pub tokens: TokenUsage,
    pub list_cost: NanoUsd,
    pub billed_cost: NanoUsd,
    /// True when no price was known for `model`: the cost is then not $0 but unknown.
    pub unpriced: bool,
    /// True when some counts were estimated (client disconnect, cancelled request).
    pub estimated: bool,
    pub status: u16,
    pub stream: bool,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
}

/// Additive usage totals: one bucket (an hour, a day, a lifetime) of one entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_5m_tokens: u64,
    pub cache_creation_1h_tokens: u64,
    pub cache_read_tokens: u64,
    pub list_cost: NanoUsd,
    pub billed_cost: NanoUsd,
    /// Requests whose model had no known price.
    pub unpriced_requests: u64,
    /// Requests with estimated counts.
    pub estimated_requests: u64,
    /// Requests answered with a non-2xx status.
    pub error_requests: u64,
}

impl UsageTotals {
    pub fn from_record(rec: &UsageRecord) -> Self {
        Self {
            requests: 1,
            input_tokens: rec.tokens.input,
            output_tokens: rec.tokens.output,
            cache_creation_5m_tokens: rec.tokens.cache_creation_5m,
            cache_creation_1h_tokens: rec.tokens.cache_creation_1h,
            cache_read_tokens: rec.tokens.cache_read,
            list_cost: rec.list_cost,
            billed_cost: rec.billed_cost,
            unpriced_requests: u64::from(rec.unpriced),
            estimated_requests: u64::from(rec.estimated),
            error_requests: u64::from(!(200..300).contains(&rec.status)),
        }
    }

    pub fn merge(&mut self, other: &UsageTotals) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_5m_tokens += other.cache_creation_5m_tokens;
        self.cache_creation_1h_tokens += other.cache_creation_1h_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.list_cost = self.list_cost.saturating_add(other.list_cost);
        self.billed_cost = self.billed_cost.saturating_add(other.billed_cost);
        self.unpriced_requests += other.unpriced_requests;
        self.estimated_requests += other.estimated_requests;
        self.error_requests += other.error_requests;
    }

    pub fn cache_creation_tokens(&self) -> u64 {
        self.cache_creation_5m_tokens + self.cache_creation_1h_tokens
    }
}

/// Which entity a usage bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageSubject {
    Key(KeyId),
    Account(AccountId),
    Model(String),
    /// One key's use of one model (the upstream-reported name).
    KeyModel(KeyId, String),
    /// One account's use of one model (prices cache savings per account).
    AccountModel(AccountId, String),
    /// Everything the relay served.
    Global,
}

/// Lowercase hex SHA-256 of a secret (relay keys, admin session tokens).
pub fn sha256_hex(raw: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// A new raw relay key: the prefix and 64 lowercase hex characters (256 random bits).
pub fn generate_raw_key(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The safe display form of a raw key: the prefix, 4 characters, an ellipsis, the last 4.
pub fn key_display_prefix(raw: &str, prefix: &str) -> String {
    let body = raw.strip_prefix(prefix).unwrap_or(raw);
    let chars: Vec<char> = body.chars().collect();
    if chars.len() < 12 {
        return format!("{prefix}…");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_usd_round_trips_decimal() {
        for (s, n) in [
            ("0", 0),
            ("1", 1_000_000_000),
            ("0.000123", 123_000),
            ("12.5", 12_500_000_000),
        ] {
            let v = NanoUsd::parse_decimal(s).unwrap();
            assert_eq!(v, NanoUsd(n));
            assert_eq!(v.to_decimal_string(), s);
        }
        assert_eq!(NanoUsd::parse_decimal("1.0000000001"), None);
        assert_eq!(NanoUsd::parse_decimal("-1"), None);
        assert_eq!(NanoUsd::parse_decimal("abc"), None);
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-ant-api03-verysecretvalue-1234");
        assert_eq!(format!("{s:?}"), "Secret(****)");
        assert_eq!(format!("{s}"), "****");
        assert_eq!(s.masked(), "sk-a…1234");
        assert_eq!(Secret::new("short").masked(), "****");
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let raw = generate_raw_key("cr_");
        assert_eq!(raw.len(), 67);
        assert!(raw[3..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(raw, generate_raw_key("cr_"));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let shown = key_display_prefix(&raw, "cr_");
        assert!(shown.starts_with(&raw[..7]) && shown.ends_with(&raw[63..]));
    }
}
