//! Configuration: defaults < TOML file < `RELAY_*` environment < flags, parsed
//! once into an immutable [`Config`]. Settings an admin may change while the
//! relay runs live in [`RuntimeSettings`] behind an `ArcSwap`.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the relay needs to start. Built by [`Config::load`] or, in
/// tests, from [`Config::default`] with fields overwritten.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Master key material (64 hex chars or base64 of 32 bytes), from `RELAY_MASTER_KEY`.
    pub master_key: Option<String>,
    /// Where the master key file lives when no key is given in the environment.
    pub master_key_file: Option<PathBuf>,
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    /// Prefix of issued relay keys (`cr_` + 64 hex).
    pub key_prefix: String,
    pub upstream_connect_timeout: Duration,
    pub upstream_total_timeout: Duration,
    pub stream_first_byte_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub client_body_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_inflight_body_bytes: usize,
    pub oauth_refresh_timeout: Duration,
    pub oauth_refresh_before: Duration,
    /// Default token endpoint for `claude_oauth` accounts.
    pub oauth_token_url: String,
    pub oauth_client_id: String,
    pub graphql_timeout: Duration,
    pub sled_cache_bytes: u64,
    pub max_failover_attempts: usize,
    pub usage_flush_interval: Duration,
    /// How long flushing may keep failing before `/ready` reports it.
    pub usage_flush_alarm_after: Duration,
    pub admin_session_ttl: Duration,
    pub pricing_file: Option<PathBuf>,
    /// Default cooldown for an account that failed without a `retry-after`.
    pub default_cooldown: Duration,
    pub log_filter: String,
    /// IANA zone for days, weeks and months of budgets and reports.
    pub time_zone: String,
    /// Fetch http(s) image URLs of OpenAI chat requests (off: a 400).
    pub fetch_image_urls: bool,
    /// Most bytes of one fetched image.
    pub image_fetch_max_bytes: usize,
    /// Time for one image fetch, all included.
    pub image_fetch_timeout: Duration,
    /// Admin API limits, introspection, slow-query threshold and audit retention.
    pub graphql: GraphqlConfig,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Real-IP` are believed
    /// (admin login throttling and the audit log's client address). Empty:
    /// the peer address is the client address.
    pub trusted_proxies: Vec<Cidr>,
    /// How long finished exports (records and files) are kept.
    pub export_retention: Duration,
}

/// The admin API's guard rails (TOML table `[graphql]`).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphqlConfig {
    /// Deep enough for GraphiQL's introspection query, shallow enough to stop abuse.
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Largest accepted POST body on `/graphql`; larger ones answer 413.
    pub max_body_bytes: usize,
    /// Whether `__schema` / `__type` are answered (GraphiQL needs them).
    pub introspection: bool,
    /// Operations slower than this are logged (name and duration only) and counted.
    pub slow_query_threshold: Duration,
    /// Audit entries kept at most (oldest dropped first).
    pub audit_max_entries: usize,
    /// Audit entries older than this are dropped.
    pub audit_max_age: Duration,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            max_depth: 16,
            max_complexity: 2000,
            max_body_bytes: 1024 * 1024,
            introspection: true,
            slow_query_threshold: Duration::from_millis(500),
            audit_max_entries: 100_000,
            audit_max_age: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// An address block such as `10.0.0.0/8`, `::1/128` or a bare address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from("./data"),
            master_key: None,
            master_key_file: None,
            admin_user: None,
            admin_password: None,
            key_prefix: "cr_".into(),
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_total_timeout: Duration::from_secs(600),
            stream_first_byte_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(120),
            client_body_timeout: Duration::from_secs(60),
            max_body_bytes: 32 * 1024 * 1024,
            max_inflight_body_bytes: 256 * 1024 * 1024,
            oauth_refresh_timeout: Duration::from_secs(30),
            oauth_refresh_before: Duration::from_secs(300),
            oauth_token_url: "https://console.anthropic.com/v1/oauth/token".into(),
            oauth_client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".into(),
            graphql_timeout: Duration::from_secs(30),
            sled_cache_bytes: 64 * 1024 * 1024,
            max_failover_attempts: 3,
            usage_flush_interval: Duration::from_millis(250),
            usage_flush_alarm_after: Duration::from_secs(30),
            admin_session_ttl: Duration::from_secs(12 * 3600),
            pricing_file: None,
            default_cooldown: Duration::from_secs(60),
            log_filter: "info".into(),
            time_zone: "UTC".into(),
            fetch_image_urls: false,
            image_fetch_max_bytes: 5 * 1024 * 1024,
            image_fetch_timeout: Duration::from_secs(10),
            graphql: GraphqlConfig::default(),
            trusted_proxies: Vec::new(),
            export_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// The optional TOML file. Every field is optional; durations are seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub master_key_file: Option<PathBuf>,
    pub key_prefix: Option<String>,
    pub upstream_connect_timeout_secs: Option<u64>,
    pub upstream_total_timeout_secs: Option<u64>,
    pub stream_first_byte_timeout_secs: Option<u64>,
    pub stream_idle_timeout_secs: Option<u64>,
    pub client_body_timeout_secs: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub max_inflight_body_bytes: Option<usize>,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub graphql_timeout_secs: Option<u64>,
    pub sled_cache_bytes: Option<u64>,
    pub max_failover_attempts: Option<usize>,
    pub usage_flush_interval_ms: Option<u64>,
    pub admin_session_ttl_secs: Option<u64>,
    pub pricing_file: Option<PathBuf>,
    pub default_cooldown_secs: Option<u64>,
    pub log: Option<String>,
    pub time_zone: Option<String>,
    pub fetch_image_urls: Option<bool>,
    pub image_fetch_max_bytes: Option<usize>,
    pub image_fetch_timeout_secs: Option<u64>,
    pub trusted_proxies: Option<Vec<Cidr>>,
    pub graphql: Option<FileGraphqlConfig>,
    pub export_retention_secs: Option<u64>,
}

/// `[graphql]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGraphqlConfig {
    pub max_depth: Option<usize>,
    pub max_complexity: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub introspection: Option<bool>,
    pub slow_query_threshold_ms: Option<u64>,
    pub audit_max_entries: Option<usize>,
    pub audit_max_age_days: Option<u64>,
}

/// Command-line values that override everything else.
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// Settings an admin may change while the relay runs (GraphQL
/// `updateSettings`); persisted in the store and held in an `ArcSwap` that
/// readers load without locking.
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeSettings {
    pub strategy: crate::domain::StrategyKind,
    /// How long a session stays on its account without use.
    pub sticky_ttl_secs: u64,
    /// Rest for an account that failed without a `retry-after`.
    pub default_cooldown_secs: u64,
    pub max_failover_attempts: u32,
    /// Prices set at run time per model name, laid over the built-in table
    /// and the pricing file; they price requests that finish after the change.
    pub pricing_overrides: std::collections::BTreeMap<String, PriceOverride>,
}

/// One model's prices set at run time, in pico-USD per token (exact, like
/// the built-in table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PriceOverride {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

impl PriceOverride {
    pub fn price(&self) -> crate::usage::pricing::ModelPrice {
        crate::usage::pricing::ModelPrice {
            input: self.input,
            output: self.output,
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
            cache_read: self.cache_read,
        }
    }
}

impl RuntimeSettings {
    /// The run-time overrides as prices.
    pub fn override_prices(
        &self,
    ) -> std::collections::BTreeMap<String, crate::usage::pricing::ModelPrice> {
        self.pricing_overrides
            .iter()
            .map(|(m, p)| (m.clone(), p.price()))
            .collect()
    }

    /// The store's name for the persisted settings.
    pub const STATE_NAME: &'static str = "settings";

    /// Start-up values from the static configuration.
    pub fn from_config(config: &Config) -> RuntimeSettings {
        RuntimeSettings {
            strategy: crate::domain::StrategyKind::Priority,
            sticky_ttl_secs: 3600,
            default_cooldown_secs: config.default_cooldown.as_secs(),
            max_failover_attempts: u32::try_from(config.max_failover_attempts).unwrap_or(3),
            pricing_overrides: Default::default(),
        }
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
}

impl Config {
    /// Layers defaults, the TOML file, the environment and the flags.
    pub fn load(flags: &FlagOverrides) -> Result<Config, Error> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut cfg = Config::default();
        let file_path = flags
            .config_file
            .clone()
            .or_else(|| env("RELAY_CONFIG").map(PathBuf::from));
        if let Some(path) = file_path {
            let file = read_file_config(&path)?;
            cfg.apply_file(file);
        }
        if let Some(v) = env("RELAY_LISTEN") {
            cfg.listen = v.parse().map_err(|_| Error::Env {
                name: "RELAY_LISTEN",
                message: format!("expected host:port, got {v:?}"),
            })?;
        }
        if let Some(v) = env("RELAY_DATA_DIR") {
            cfg.data_dir = PathBuf::from(v);
        }
        cfg.master_key = env("RELAY_MASTER_KEY");
        if let Some(v) = env("RELAY_MASTER_KEY_FILE") {
            cfg.master_key_file = Some(PathBuf::from(v));
        }
        cfg.admin_user = env("RELAY_ADMIN_USER");
        cfg.admin_password = env("RELAY_ADMIN_PASSWORD");
        if let Some(v) = env("RELAY_KEY_PREFIX") {
            cfg.key_prefix = v;
        }
        if let Some(v) = env("RELAY_PRICING_FILE") {
            cfg.pricing_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("RELAY_LOG") {
            cfg.log_filter = v;
        }
        if let Some(v) = env("RELAY_TIME_ZONE") {
            cfg.time_zone = v;
        }
        if let Some(v) = env("RELAY_FETCH_IMAGE_URLS") {
            cfg.fetch_image_urls = matches!(v.trim(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = env("RELAY_OAUTH_TOKEN_URL") {
            cfg.oauth_token_url = v;
        }
        if let Some(v) = env("RELAY_TRUSTED_PROXIES") {
            cfg.trusted_proxies = v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(str::parse)
                .collect::<Result<_, String>>()
                .map_err(|message| Error::Env {
                    name: "RELAY_TRUSTED_PROXIES",
                    message,
                })?;
        }
        if let Some(v) = env("RELAY_GRAPHQL_INTROSPECTION") {
            cfg.graphql.introspection = match v.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(Error::Env {
                        name: "RELAY_GRAPHQL_INTROSPECTION",
                        message: format!("expected true or false, got {v:?}"),
                    })
                }
            };
        }
        if let Some(listen) = flags.listen {
            cfg.listen = listen;
        }
        if let Some(dir) = &flags.data_dir {
            cfg.data_dir = dir.clone();
        }
        Ok(cfg)
    }

    fn apply_file(&mut self, f: FileConfig) {
        let secs = Duration::from_secs;
        if let Some(v) = f.listen {
            self.listen = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = f.master_key_file {
            self.master_key_file = Some(v);
        }
        if let Some(v) = f.key_prefix {
            self.key_prefix = v;
        }
        if let Some(v) = f.upstream_connect_timeout_secs {
            self.upstream_connect_timeout = secs(v);
        }
        if let Some(v) = f.upstream_total_timeout_secs {
            self.upstream_total_timeout = secs(v);
        }
        if let Some(v) = f.stream_first_byte_timeout_secs {
            self.stream_first_byte_timeout = secs(v);
        }
        if let Some(v) = f.stream_idle_timeout_secs {
            self.stream_idle_timeout = secs(v);
        }
        if let Some(v) = f.client_body_timeout_secs {
            self.client_body_timeout = secs(v);
        }
        if let Some(v) = f.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = f.max_inflight_body_bytes {
            self.max_inflight_body_bytes = v;
        }
        if let Some(v) = f.oauth_token_url {
            self.oauth_token_url = v;
        }
        if let Some(v) = f.oauth_client_id {
            self.oauth_client_id = v;
        }
        if let Some(v) = f.graphql_timeout_secs {
            self.graphql_timeout = secs(v);
        }
        if let Some(v) = f.sled_cache_bytes {
            self.sled_cache_bytes = v;
        }
        if let Some(v) = f.max_failover_attempts {
            self.max_failover_attempts = v.max(1);
        }
        if let Some(v) = f.usage_flush_interval_ms {
            self.usage_flush_interval = Duration::from_millis(v.max(10));
        }
        if let Some(v) = f.admin_session_ttl_secs {
            self.admin_session_ttl = secs(v);
        }
        if let Some(v) = f.pricing_file {
            self.pricing_file = Some(v);
        }
        if let Some(v) = f.default_cooldown_secs {
            self.default_cooldown = secs(v);
        }
        if let Some(v) = f.log {
            self.log_filter = v;
        }
        if let Some(v) = f.time_zone {
            self.time_zone = v;
        }
        if let Some(v) = f.export_retention_secs {
            self.export_retention = secs(v.max(60));
        }
        if let Some(v) = f.fetch_image_urls {
            self.fetch_image_urls = v;
        }
        if let Some(v) = f.image_fetch_max_bytes {
            self.image_fetch_max_bytes = v;
        }
        if let Some(v) = f.image_fetch_timeout_secs {
            self.image_fetch_timeout = secs(v);
        }
        if let Some(v) = f.trusted_proxies {
            self.trusted_proxies = v;
        }
        if let Some(g) = f.graphql {
            let c = &mut self.graphql;
            if let Some(v) = g.max_depth {
                c.max_depth = v.max(1);
            }
            if let Some(v) = g.max_complexity {
                c.max_complexity = v.max(1);
            }
            if let Some(v) = g.max_body_bytes {
                c.max_body_bytes = v.max(1024);
            }
            if let Some(v) = g.introspection {
                c.introspection = v;
            }
            if let Some(v) = g.slow_query_threshold_ms {
                c.slow_query_threshold = Duration::from_millis(v);
            }
            if let Some(v) = g.audit_max_entries {
                c.audit_max_entries = v.max(1);
            }
            if let Some(v) = g.audit_max_age_days {
                c.audit_max_age = secs(v.max(1).saturating_mul(24 * 3600));
            }
        }
    }

    /// The master key file: the configured path, else `master.key` in the data dir.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\ndata_dir = \"/tmp/x\"\nmax_failover_attempts = 5\n",
        )
        .unwrap();
        let mut cfg = Config::default();
        cfg.apply_file(read_file_config(&path).unwrap());
        assert_eq!(cfg.listen.port(), 4000);
        assert_eq!(cfg.max_failover_attempts, 5);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn graphql_table_and_trusted_proxies_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[graphql]\nintrospection = false\nslow_query_threshold_ms = 250\nmax_body_bytes = 4096\n",
        )
        .unwrap();
        let mut cfg = Config::default();
        cfg.apply_file(read_file_config(&path).unwrap());
        assert!(!cfg.graphql.introspection);
        assert_eq!(cfg.graphql.slow_query_threshold, Duration::from_millis(250));
        assert_eq!(cfg.graphql.max_body_bytes, 4096);
        assert_eq!(cfg.trusted_proxies.len(), 2);
        assert!(cfg.trusted_proxies[0].contains("10.2.3.4".parse().unwrap()));
        assert!(!cfg.trusted_proxies[0].contains("11.2.3.4".parse().unwrap()));
        assert!(cfg.trusted_proxies[1].contains("::1".parse().unwrap()));
        assert!(cfg.trusted_proxies[0].contains("::ffff:10.0.0.9".parse().unwrap()));
        std::fs::write(&path, "trusted_proxies = [\"10.0.0.0/33\"]\n").unwrap();
        assert!(matches!(read_file_config(&path), Err(Error::Parse { .. })));
    }

    #[test]
    fn cidr_edges() {
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:4000\"\n").unwrap();
        assert!(matches!(read_file_config(&path), Err(Error::Parse { .. })));
    }
}
