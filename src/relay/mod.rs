//! The client-facing hot path: the Anthropic routes (bare, and under the
//! `/api` and `/claude` prefixes that claude-relay-service deployments use),
//! and the state their handlers share. Each step of the path lives in its own
//! file; `handler.rs` calls them in order.

pub mod auth;
pub mod chat;
pub mod error;
pub mod fetch;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod inspect;
pub mod key_usage;
pub mod meter;
pub mod models;
pub mod rewrite;
pub mod sse;
pub mod tap;

pub use error::ApiError;

use crate::balancer::Balancer;
use crate::cache::KeyCache;
use crate::config::Config;
use crate::store::Store;
use crate::upstream::Upstreams;
use crate::usage::pricing::PricingTable;
use crate::usage::UsageSink;
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// Prefixes under which every Anthropic route is also served.
pub const ROUTE_PREFIXES: [&str; 2] = ["/api", "/claude"];

/// What the relay handlers share. Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct RelayState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keys: KeyCache,
    pub balancer: Balancer,
    pub upstreams: Upstreams,
    pub pricing: Arc<PricingTable>,
    pub usage: UsageSink,
    /// Bytes of request bodies currently held, against `max_inflight_body_bytes`.
    pub inflight_body_bytes: Arc<AtomicUsize>,
    pub auth_throttle: auth::AuthThrottle,
    /// Settings an admin may change at run time; loaded without locking.
    pub settings: Arc<arc_swap::ArcSwap<crate::config::RuntimeSettings>>,
    /// Per-key limits, budgets and restrictions.
    pub limits: crate::limits::Limits,
}

/// The relay routes.
pub fn router(state: RelayState) -> Router {
    let mut router = Router::new();
    for prefix in std::iter::once("").chain(ROUTE_PREFIXES) {
        router = router
            .route(&format!("{prefix}/v1/messages"), post(handler::messages))
            .route(
                &format!("{prefix}/v1/messages/count_tokens"),
                post(handler::count_tokens),
            )
            .route(&format!("{prefix}/v1/models"), get(models::list))
            .route(&format!("{prefix}/v1/models/{{id}}"), get(models::get))
            .route(&format!("{prefix}/v1/key/usage"), get(key_usage::key_usage));
    }
    for path in [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/openai/claude/v1/chat/completions",
    ] {
        router = router.route(path, post(chat::chat_completions));
    }
    for path in ["/openai/v1/models", "/openai/claude/v1/models"] {
        router = router.route(path, get(chat::models));
    }
    router.with_state(state)
}
