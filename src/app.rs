//! The application: opens the store, builds every service once, wires the
//! routes, and runs the server until the shutdown future it is given
//! resolves. Shutdown is ordered: stop accepting, drain requests, flush usage,
//! flush sled. Background tasks live on one `TaskTracker` with one
//! `CancellationToken`.

use crate::balancer::Balancer;
use crate::cache::KeyCache;
use crate::config::{Config, RuntimeSettings};
use crate::graphql::{self, AdminState};
use crate::relay::{self, ApiError, RelayState};
use crate::store::{self, Store, StoreEvent, StoreOptions};
use crate::upstream::{self, Upstreams};
use crate::usage::pricing::{self, PricingTable};
use crate::usage::{self as usage_mod, UsageSink};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Pricing(#[from] pricing::Error),
    #[error(transparent)]
    Upstream(#[from] upstream::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("invalid time zone: {0}")]
    TimeZone(String),
    #[error("export service: {0}")]
    Exports(#[from] crate::export::service::ServiceError),
}

/// The running relay's services. Not `Clone`: one owner, so it is clear where
/// shutdown happens.
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub relay: RelayState,
    pub exports: crate::export::service::Exports,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl App {
    /// Opens the store and starts the background tasks (usage writer, store event listener).
    pub async fn start(config: Config) -> Result<App, Error> {
        let config = Arc::new(config);
        crate::metrics::install();
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::DataDir(config.data_dir.display().to_string(), e))?;
        let store = Store::open(&StoreOptions {
            data_dir: config.data_dir.clone(),
            master_key: config.master_key.clone(),
            master_key_file: config.master_key_path(),
            cache_capacity_bytes: config.sled_cache_bytes,
        })?;
        // "This month" for key queries and the cost index is in the configured zone.
        let tz = crate::limits::parse_time_zone(&config.time_zone).map_err(Error::TimeZone)?;
        store.set_time_zone(tz)?;
        graphql::bootstrap_admin(&store, &config).await?;
        let pricing = Arc::new(match &config.pricing_file {
            Some(path) => PricingTable::with_overrides(path)?,
            None => PricingTable::embedded(),
        });
        let balancer = Balancer::default();
        let upstreams = Upstreams::new(config.clone(), store.clone())?;
        let accounts = store.list_accounts()?;
        balancer.sync_all(&accounts, &store.list_groups()?);
        upstreams.sync(&accounts);
        let keys = KeyCache::default();
        let settings = Arc::new(arc_swap::ArcSwap::from_pointee(load_settings(
            &store, &config,
        )));
        apply_settings(&balancer, &settings.load());
        pricing.set_runtime_overrides(&settings.load().override_prices());
        // Monthly cost rankings follow the configured zone (rebuilt once if it changed).
        store.set_analytics_time_zone(tz)?;
        let limits = crate::limits::Limits::new(tz);
        match store.limit_counters::<crate::limits::KeySnapshot>() {
            Ok(keys) => limits.restore(crate::limits::LimitsSnapshot { keys }),
            Err(e) => {
                tracing::error!(error = %e, "cannot restore limit counters; starting them empty")
            }
        }

        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let usage: UsageSink = usage_mod::writer::spawn(
            store.clone(),
            config.usage_flush_interval,
            &tracker,
            token.clone(),
        );
        // Subscribe before anything can write, so no event falls between
        // the initial load and the listener's first poll.
        let events = store.subscribe();
        tracker.spawn(follow_store_events(
            events,
            store.clone(),
            keys.clone(),
            balancer.clone(),
            upstreams.clone(),
            settings.clone(),
            pricing.clone(),
            token.clone(),
        ));

        let relay = RelayState {
            config: config.clone(),
            store: store.clone(),
            keys,
            balancer: balancer.clone(),
            upstreams,
            pricing,
            usage,
            inflight_body_bytes: Arc::new(AtomicUsize::new(0)),
            auth_throttle: relay::auth::AuthThrottle::default(),
            settings: settings.clone(),
            limits: limits.clone(),
        };
        restore_sticky(&store, &balancer);
        let exports = crate::export::service::Exports::start(
            store.clone(),
            &config.data_dir,
            config.export_retention,
            &config.key_prefix,
            &tracker,
            token.clone(),
        )?;
        tracker.spawn(checkpoint_limits(
            store.clone(),
            limits,
            balancer.clone(),
            token.clone(),
        ));
        Ok(App {
            config,
            store,
            relay,
            exports,
            tracker,
            token,
        })
    }

    /// Every route of the relay: the Anthropic API, the admin API, health.
    pub fn router(&self) -> Router {
        let admin = AdminState {
            store: self.store.clone(),
            config: self.config.clone(),
            limits: self.relay.limits.clone(),
            balancer: self.relay.balancer.clone(),
            usage: Some(self.relay.usage.clone()),
            pricing: self.relay.pricing.clone(),
            exports: Some(self.exports.clone()),
        };
        let health = Router::new()
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/ready", get(ready))
            .with_state(self.relay.clone());
        relay::router(self.relay.clone())
            .merge(graphql::router(admin))
            .merge(health)
            .merge(crate::metrics::router())
            .fallback(not_found)
    }

    /// Serves until `shutdown` resolves, then drains and flushes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let router = self.router();
        // Small SSE events must not wait for Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        self.shutdown().await;
        served.map_err(Error::Serve)
    }

    /// Stops background tasks after writing pending usage, then flushes sled.
    pub async fn shutdown(self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        // Every request has finished: this is the final state of the counters.
        save_limits(&self.store, &self.relay.limits);
        save_sticky(&self.store, &self.relay.balancer);
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
    }
}

/// How often limit counters are checkpointed (a crash loses at most this much).
const LIMITS_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes the counters of the keys that changed since the last checkpoint.
fn save_limits(store: &Store, limits: &crate::limits::Limits) {
    let changed = limits.take_changed();
    if let Err(e) = store.put_limit_counters(&changed) {
        tracing::error!(error = %e, "cannot checkpoint limit counters");
        limits.mark_changed(changed.into_iter().map(|(k, _)| k));
    }
}

/// The store's name for the persisted sticky sessions.
const STICKY_STATE: &str = "sticky_sessions";

/// One persisted sticky session (the balancer's own types are not serde).
#[derive(serde::Serialize, serde::Deserialize)]
struct StickyEntry {
    pool: StickyPool,
    session: u64,
    account: crate::domain::AccountId,
    last_used_ms: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
enum StickyPool {
    Shared,
    Group(crate::domain::GroupId),
    Account(crate::domain::AccountId),
}

/// Persists sticky sessions lazily, so a restart keeps prompt caches warm.
fn save_sticky(store: &Store, balancer: &Balancer) {
    use crate::balancer::PoolKey;
    let entries: Vec<StickyEntry> = balancer
        .sticky_entries()
        .into_iter()
        .map(|(pool, session, account, at)| StickyEntry {
            pool: match pool {
                PoolKey::Shared => StickyPool::Shared,
                PoolKey::Group(g) => StickyPool::Group(g),
                PoolKey::Account(a) => StickyPool::Account(a),
            },
            session: session.get(),
            account,
            last_used_ms: at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        })
        .collect();
    if let Err(e) = store.put_state_quiet(STICKY_STATE, &entries) {
        tracing::error!(error = %e, "cannot persist sticky sessions");
    }
}

fn restore_sticky(store: &Store, balancer: &Balancer) {
    use crate::balancer::{PoolKey, SessionKey};
    match store.get_state::<Vec<StickyEntry>>(STICKY_STATE) {
        Ok(Some(entries)) => {
            for e in entries {
                let pool = match e.pool {
                    StickyPool::Shared => PoolKey::Shared,
                    StickyPool::Group(g) => PoolKey::Group(g),
                    StickyPool::Account(a) => PoolKey::Account(a),
                };
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.last_used_ms);
                balancer.restore_sticky(pool, SessionKey::from_raw(e.session), e.account, at);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot restore sticky sessions"),
    }
}

/// Checkpoints the limit counters so windows and budgets survive a restart.
async fn checkpoint_limits(
    store: Store,
    limits: crate::limits::Limits,
    balancer: Balancer,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(LIMITS_CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {
                let (store, limits, balancer) = (store.clone(), limits.clone(), balancer.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    save_limits(&store, &limits);
                    save_sticky(&store, &balancer);
                })
                .await;
            }
        }
    }
}

/// Hands the balancer the settings it owns.
fn apply_settings(balancer: &Balancer, settings: &RuntimeSettings) {
    balancer.set_strategy(settings.strategy);
    balancer.set_sticky_ttl(std::time::Duration::from_secs(settings.sticky_ttl_secs));
}

/// The persisted run-time settings, else the start-up values.
fn load_settings(store: &Store, config: &Config) -> RuntimeSettings {
    match store.get_state::<RuntimeSettings>(RuntimeSettings::STATE_NAME) {
        Ok(Some(s)) => s,
        Ok(None) => RuntimeSettings::from_config(config),
        Err(e) => {
            tracing::error!(error = %e, "cannot read run-time settings; using the configured ones");
            RuntimeSettings::from_config(config)
        }
    }
}

async fn ready(axum::extract::State(state): axum::extract::State<RelayState>) -> Response {
    let health = state.usage.health();
    match health.failing_for() {
        Some(d) if d > state.config.usage_flush_alarm_after => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "usage writes failing", "failing_for_secs": d.as_secs()})),
        )
            .into_response(),
        _ => Json(serde_json::json!({"status": "ready"})).into_response(),
    }
}

async fn not_found(uri: http::Uri) -> Response {
    ApiError::NotFound(format!("Not found: {}", uri.path())).into_response()
}

/// Keeps caches, the account pool and the prices in step with the store.
#[allow(clippy::too_many_arguments)]
async fn follow_store_events(
    mut events: tokio::sync::broadcast::Receiver<StoreEvent>,
    store: Store,
    keys: KeyCache,
    balancer: Balancer,
    upstreams: Upstreams,
    settings: Arc<arc_swap::ArcSwap<RuntimeSettings>>,
    pricing: Arc<PricingTable>,
    token: CancellationToken,
) {
    let resync_accounts = || match (store.list_accounts(), store.list_groups()) {
        (Ok(accounts), Ok(groups)) => {
            balancer.sync_all(&accounts, &groups);
            upstreams.sync(&accounts);
        }
        (Err(e), _) | (_, Err(e)) => tracing::error!(error = %e, "cannot reload accounts"),
    };
    loop {
        let event = tokio::select! {
            () = token.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event @ StoreEvent::KeyChanged { .. }) => keys.on_event(&event),
            Ok(StoreEvent::AccountChanged { .. } | StoreEvent::GroupChanged { .. }) => {
                resync_accounts()
            }
            Ok(StoreEvent::StateChanged { name }) if name == RuntimeSettings::STATE_NAME => {
                match store.get_state::<RuntimeSettings>(RuntimeSettings::STATE_NAME) {
                    Ok(Some(fresh)) => {
                        apply_settings(&balancer, &fresh);
                        pricing.set_runtime_overrides(&fresh.override_prices());
                        settings.store(Arc::new(fresh));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "cannot reload run-time settings"),
                }
            }
            Ok(StoreEvent::StateChanged { .. }) => {}
            Ok(StoreEvent::AdminChanged { .. }) => {}
            Err(RecvError::Lagged(_)) => {
                keys.clear();
                resync_accounts();
            }
            Err(RecvError::Closed) => return,
        }
    }
}
