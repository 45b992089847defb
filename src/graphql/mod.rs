//! The admin API (GraphQL): sessions, relay keys, upstream accounts and
//! their usage, over the same `Store` the relay uses. It owns the schema
//! (committed as schema/schema.graphql), its transport and admin bootstrap;
//! it never opens sled trees itself.
//!
//! Layout: `http` (transport, auth header, timeout), `auth` (sessions,
//! roles, passwords, throttling), `bootstrap` (first admin), `session`,
//! `keys`, `key_batch` (batch key operations), `accounts` (resolvers), `usage`, `types`, `scalars`,
//! `balancer` (live stats), `import` (the CRS Redis import, OWNER only),
//! `connection` (pagination), `validate` (input checks), `error` (`GqlError`),
//! `admins` (admin management), `audit` (audit extension and `auditLog`),
//! `viewer` (masking for the VIEWER role), `slow` (slow-operation
//! detection), `playground` (embedded GraphiQL),
//! `exports` (export jobs, imports and the download route).

mod accounts;
mod admins;
mod analytics;
mod audit;
mod auth;
mod balancer;
mod bootstrap;
mod connection;
mod error;
mod exports;
mod http;
mod import;
mod key_batch;
mod keys;
mod playground;
mod routing;
mod scalars;
mod session;
mod slow;
mod types;
mod usage;
mod validate;
mod viewer;

pub use bootstrap::{bootstrap_admin, password_file, DEFAULT_ADMIN, PASSWORD_FILE};
pub use error::GqlError;

use crate::config::Config;
use crate::store::Store;
use async_graphql::{MergedObject, MergedSubscription, Schema};
use axum::handler::Handler;
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
    /// The relay's usage sink, for live subscriptions (None: refused).
    pub usage: Option<crate::usage::UsageSink>,
    /// Prices in effect, for cost insights.
    pub pricing: Arc<crate::usage::pricing::PricingTable>,
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
            usage: None,
            pricing: Arc::new(crate::usage::pricing::PricingTable::embedded()),
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
    import::ImportQuery,
    admins::AdminQuery,
    audit::AuditQuery,
    analytics::AnalyticsQuery,
    exports::ExportQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    session::SessionMutation,
    keys::KeyMutation,
    key_batch::KeyBatchMutation,
    accounts::AccountMutation,
    routing::RoutingMutation,
    import::ImportMutation,
    admins::AdminMutation,
    analytics::AnalyticsMutation,
    exports::ExportMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(
    balancer::Subscription,
    import::ImportSubscription,
    analytics::AnalyticsSubscription,
    exports::ExportSubscription,
);

pub type AdminSchema = Schema<Query, Mutation, Subscription>;

/// Depth and complexity limits, introspection, the audit and slow-query
/// extensions, all from `config.graphql`.
fn build_schema(
    config: &Config,
    services: Option<(Arc<auth::Services>, Arc<analytics::AnalyticsServices>)>,
) -> AdminSchema {
    let g = &config.graphql;
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(import::Jobs::default())
    .limit_depth(g.max_depth)
    .limit_complexity(g.max_complexity)
    .limit_recursive_depth(32)
    .limit_directives(16)
    .extension(audit::Audit)
    .extension(slow::SlowQueries {
        threshold: g.slow_query_threshold,
    });
    if !g.introspection {
        builder = builder.disable_introspection();
    }
    match services {
        Some((s, a)) => builder.data(s).data(a).finish(),
        None => builder.finish(),
    }
}

/// POST and GET `/graphql` (GET: queries only, or the playground page for a
/// browser), `/graphql/assets/…` (the playground's embedded assets) and
/// `/graphql/ws` (graphql-transport-ws; authenticate in `connection_init`).
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so
/// login throttling and the audit log see the client address.
pub fn router(state: AdminState) -> Router {
    let max_body = state.config.graphql.max_body_bytes;
    let analytics = Arc::new(analytics::AnalyticsServices::new(
        state.store.clone(),
        state.usage,
        state.pricing,
    ));
    let downloads = state.exports.clone().map(exports::router);
    let mut services = auth::Services::new(
        state.store,
        state.config.clone(),
        state.limits,
        state.balancer,
    );
    services.exports = state.exports;
    let services = Arc::new(services);
    let app = http::HttpState {
        schema: build_schema(&state.config, Some((services.clone(), analytics))),
        services,
    };
    let limited = axum::middleware::from_fn_with_state(max_body, http::limit_body);
    let router = Router::new()
        .route(
            "/graphql",
            get(http::graphql_get).post(http::graphql_post.layer(limited)),
        )
        .route("/graphql/ws", get(http::graphql_ws))
        .route("/graphql/assets/{version}/{*path}", get(playground::asset))
        .with_state(app);
    match downloads {
        Some(d) => router.merge(d),
        None => router,
    }
}

/// The SDL of the schema, for the schema test and schema/schema.graphql.
pub fn schema_sdl() -> String {
    build_schema(&Config::default(), None).sdl()
}
