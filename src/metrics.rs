//! Prometheus metrics: the names (one list, `relay_` prefix), the recorder
//! install, and `/metrics`. Recording is a few atomic adds through the
//! `metrics` facade; rendering happens only when scraped.

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Client requests answered, by route family and status class.
pub const REQUESTS_TOTAL: &str = "relay_requests_total";
/// Upstream attempts, by outcome (`ok`, `failover`, `client_error`, `transport`).
pub const UPSTREAM_ATTEMPTS_TOTAL: &str = "relay_upstream_attempts_total";
/// Time the relay itself added to a request (everything but waiting on upstream).
pub const OVERHEAD_SECONDS: &str = "relay_overhead_seconds";
/// Time to the first upstream byte.
pub const UPSTREAM_TTFB_SECONDS: &str = "relay_upstream_ttfb_seconds";
/// Usage records written by the usage writer, and failed flushes.
pub const USAGE_RECORDS_TOTAL: &str = "relay_usage_records_total";
pub const USAGE_FLUSH_FAILURES_TOTAL: &str = "relay_usage_flush_failures_total";
/// Streams ended by the client before upstream finished.
pub const CLIENT_DISCONNECTS_TOTAL: &str = "relay_client_disconnects_total";

/// Admin API operations that took longer than `graphql.slow_query_threshold_ms`.
pub const GRAPHQL_SLOW_OPERATIONS_TOTAL: &str = "relay_graphql_slow_operations_total";
/// Duration of every admin API operation (query, mutation, subscription set-up).
pub const GRAPHQL_OPERATION_SECONDS: &str = "relay_graphql_operation_seconds";
/// Audit entries that could not be written (the mutation itself went through).
pub const AUDIT_WRITE_FAILURES_TOTAL: &str = "relay_audit_write_failures_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder once (later calls, e.g. from tests starting
/// several relays in one process, reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            let builder = PrometheusBuilder::new().set_buckets(&buckets).ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async {
            match install() {
                Some(h) => (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    h.render(),
                )
                    .into_response(),
                None => http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }),
    )
}

pub fn request_done(family: &'static str, status: u16) {
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    metrics::counter!(REQUESTS_TOTAL, "family" => family, "status" => class).increment(1);
}

pub fn attempt(outcome: &'static str) {
    metrics::counter!(UPSTREAM_ATTEMPTS_TOTAL, "outcome" => outcome).increment(1);
}

pub fn overhead(d: Duration) {
    metrics::histogram!(OVERHEAD_SECONDS).record(d.as_secs_f64());
}

pub fn upstream_ttfb(d: Duration) {
    metrics::histogram!(UPSTREAM_TTFB_SECONDS).record(d.as_secs_f64());
}

pub fn client_disconnect() {
    metrics::counter!(CLIENT_DISCONNECTS_TOTAL).increment(1);
}

pub fn usage_flushed(records: u64) {
    metrics::counter!(USAGE_RECORDS_TOTAL).increment(records);
}

pub fn usage_flush_failed() {
    metrics::counter!(USAGE_FLUSH_FAILURES_TOTAL).increment(1);
}

/// One finished admin API operation; `slow` when over the configured threshold.
/// Labelled by operation type only: operation names are client-chosen and unbounded.
pub fn graphql_operation(kind: &'static str, d: Duration, slow: bool) {
    metrics::histogram!(GRAPHQL_OPERATION_SECONDS, "type" => kind).record(d.as_secs_f64());
    if slow {
        metrics::counter!(GRAPHQL_SLOW_OPERATIONS_TOTAL, "type" => kind).increment(1);
    }
}

pub fn audit_write_failed() {
    metrics::counter!(AUDIT_WRITE_FAILURES_TOTAL).increment(1);
}
