//! The admin API (GraphQL): sessions, relay keys, upstream accounts and
//! their usage, over the same `Store` the relay uses. It owns the schema
//! (committed as schema/schema.graphql), its transport and admin bootstrap;
//! it never opens sled trees itself.
//!
//! Layout: `http` (transport, auth header, timeout), `auth` (sessions,
//! roles, passwords, throttling), `bootstrap` (first admin), `session`,
//! `keys`, `accounts` (resolvers), `usage`, `types`, `scalars`,
//! `connection` (pagination), `validate` (input checks), `error` (`GqlError`),
//! `exports` (export jobs, imports and the download route).

mod accounts;
mod auth;
mod balancer;
mod bootstrap;
mod connection;
mod error;
mod exports;
mod http;
mod keys;
mod routing;
mod scalars;
mod session;
mod types;
mod usage;
mod validate;

pub use bootstrap::{bootstrap_admin, password_file, DEFAULT_ADMIN, PASSWORD_FILE};
pub use error::GqlError;

use crate::config::Config;
use crate::store::Store;
use async_graphql::{MergedObject, MergedSubscription, Schema};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What the admin API needs from the app.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub config: Arc<Config>,
    /// Live limit counters (for key status); read-only here.
    pub limits: crate::limits::Limits,
    /// Live balancer state (for stats); read-only here.
    pub balancer: crate::balancer::Balancer,
    /// Export jobs; `None` leaves the export API answering INTERNAL.
    pub exports: Option<crate::export::service::Exports>,
}

impl AdminState {
    /// An admin API over `store` with fresh (empty) live state, for tools
    /// and tests. Its export jobs run on their own task tracker.
    pub fn new(store: Store, config: Arc<Config>) -> AdminState {
        let exports = match crate::export::service::Exports::start(
            store.clone(),
            &config.data_dir,
            config.export_retention,
            &config.key_prefix,
            &tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        ) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(error = %e, "export service did not start");
                None
            }
        };
        AdminState {
            store,
            config,
            limits: crate::limits::Limits::new(chrono_tz::UTC),
            balancer: crate::balancer::Balancer::default(),
            exports,
        }
    }
}

#[derive(MergedObject, Default)]
pub struct Query(
    session::SessionQuery,
    keys::KeyQuery,
    accounts::AccountQuery,
    usage::UsageQuery,
    routing::RoutingQuery,
    balancer::BalancerQuery,
    exports::ExportQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    session::SessionMutation,
    keys::KeyMutation,
    accounts::AccountMutation,
    routing::RoutingMutation,
    exports::ExportMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(balancer::BalancerSubscription, exports::ExportSubscription);

pub type AdminSchema = Schema<Query, Mutation, Subscription>;

/// Deep enough for GraphiQL's introspection query, shallow enough to stop abuse.
const MAX_DEPTH: usize = 16;
const MAX_COMPLEXITY: usize = 2000;
/// GraphQL documents are small; this also bounds what the parser sees.
const MAX_BODY_BYTES: usize = 1024 * 1024;

fn build_schema(services: Option<Arc<auth::Services>>) -> AdminSchema {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
    .limit_directives(16);
    match services {
        Some(s) => builder.data(s).finish(),
        None => builder.finish(),
    }
}

/// POST and GET `/graphql` (GET: queries only) and `/graphql/ws`
/// (graphql-transport-ws; authenticate in `connection_init`). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so login throttling
/// also counts per client address.
pub fn router(state: AdminState) -> Router {
    let downloads = state.exports.clone().map(exports::router);
    let mut services = auth::Services::new(state.store, state.config, state.limits, state.balancer);
    services.exports = state.exports;
    let services = Arc::new(services);
    let app = http::HttpState {
        schema: build_schema(Some(services.clone())),
        services,
    };
    let router = Router::new()
        .route("/graphql", get(http::graphql_get).post(http::graphql_post))
        .route("/graphql/ws", get(http::graphql_ws))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .with_state(app);
    match downloads {
        Some(d) => router.merge(d),
        None => router,
    }
}

/// The SDL of the schema, for the schema test and schema/schema.graphql.
pub fn schema_sdl() -> String {
    build_schema(None).sdl()
}
