//! HTTP and WebSocket transport of the admin API: POST and GET `/graphql`
//! (GET runs queries only), graphql-ws at `/graphql/ws` (authenticated in
//! `connection_init`). Resolves the Bearer session once per request, applies
//! the request timeout, and makes sure every error carries a code. Logs only
//! operation names, never query text (it may hold literals such as passwords).

use super::auth::{bearer, resolve_hash, resolve_token, RequestAuth, Services};
use super::error::{ensure_codes, response_with, GqlError, BAD_USER_INPUT, INTERNAL};
use super::AdminSchema;
use crate::domain::sha256_hex;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Data, ParseRequestError};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct HttpState {
    pub schema: AdminSchema,
    pub services: Arc<Services>,
}

/// The peer address, when the server was started with connect info
/// (`into_make_service_with_connect_info::<SocketAddr>()`); used for login throttling.
pub(crate) struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Malformed requests answer 400 (413 when too large) with a coded GraphQL error body.
pub(crate) struct Rejection(ParseRequestError);

impl From<ParseRequestError> for Rejection {
    fn from(e: ParseRequestError) -> Self {
        Rejection(e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, message) = match self.0 {
            ParseRequestError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            _ => (StatusCode::BAD_REQUEST, "not a valid GraphQL request"),
        };
        (
            status,
            GraphQLResponse::from(response_with(BAD_USER_INPUT, message)),
        )
            .into_response()
    }
}

pub(crate) async fn graphql_post(
    State(app): State<HttpState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    req: GraphQLRequest<Rejection>,
) -> Response {
    execute(&app, ip, &headers, req.into_inner())
        .await
        .into_response()
}

/// Queries only: a mutation (or subscription) over GET is refused with 405,
/// so a link or a prefetch can never change anything.
pub(crate) async fn graphql_get(
    State(app): State<HttpState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    req: GraphQLRequest<Rejection>,
) -> Response {
    let req = req.into_inner();
    if !only_queries(&req.query) {
        let body = response_with(
            BAD_USER_INPUT,
            "only queries are allowed over GET; send mutations with POST",
        );
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            GraphQLResponse::from(body),
        )
            .into_response();
    }
    execute(&app, ip, &headers, req).await.into_response()
}

/// True unless the document holds a mutation or subscription. A document
/// that does not parse is left to the executor, which reports it and runs nothing.
fn only_queries(query: &str) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(query) else {
        return true;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Query,
        DocumentOperations::Multiple(ops) => {
            ops.values().all(|op| op.node.ty == OperationType::Query)
        }
    }
}

async fn execute(
    app: &HttpState,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    req: async_graphql::Request,
) -> GraphQLResponse {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let principal = match token.map(|t| resolve_token(&app.services.store, t, Utc::now())) {
        None => None,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            // Render through GqlError so the cause is logged once and hidden.
            let err: async_graphql::Error = e.into();
            return response_with(INTERNAL, &err.message).into();
        }
    };
    tracing::debug!(
        graphql.operation = req.operation_name.as_deref().unwrap_or("-"),
        authenticated = principal.is_some(),
        "admin API request"
    );
    let req = req.data(RequestAuth {
        principal,
        ws_token_hash: None,
        client_ip: ip,
    });
    let timeout = app.services.config.graphql_timeout;
    let mut resp = match tokio::time::timeout(timeout, app.schema.execute(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "admin API request timed out"
            );
            response_with(
                INTERNAL,
                "the request took longer than the configured GraphQL timeout",
            )
        }
    };
    ensure_codes(&mut resp);
    resp.into()
}

/// graphql-transport-ws (and the older graphql-ws) over `/graphql/ws`.
pub(crate) async fn graphql_ws(
    State(app): State<HttpState>,
    ClientAddr(ip): ClientAddr,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let HttpState { schema, services } = app;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    connection_init(&services, ip, &payload)
                })
                .serve()
        })
}

/// Authenticates a socket from `{"authorization": "Bearer …"}` or
/// `{"token": "…"}`; the session is checked again on every operation.
fn connection_init(
    services: &Services,
    ip: Option<IpAddr>,
    payload: &serde_json::Value,
) -> async_graphql::Result<Data> {
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str());
    let token = field("authorization")
        .or_else(|| field("Authorization"))
        .and_then(bearer)
        .or_else(|| field("token").map(str::trim).filter(|t| !t.is_empty()));
    let unauthenticated = || -> async_graphql::Error {
        GqlError::Unauthenticated(
            "connection_init needs a valid session: {\"authorization\": \"Bearer <token>\"}".into(),
        )
        .into()
    };
    let hash = sha256_hex(token.ok_or_else(unauthenticated)?);
    if resolve_hash(&services.store, &hash, Utc::now())?.is_none() {
        return Err(unauthenticated());
    }
    let mut data = Data::default();
    data.insert(RequestAuth {
        principal: None,
        ws_token_hash: Some(hash),
        client_ip: ip,
    });
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_allows_queries_only() {
        assert!(only_queries("{ me { id } }"));
        assert!(only_queries(
            "query A { me { id } } query B { me { username } }"
        ));
        assert!(!only_queries("mutation { logout { revokedSessions } }"));
        assert!(!only_queries(
            "query A { me { id } } mutation B { logout { revokedSessions } }"
        ));
        assert!(!only_queries("subscription { x }"));
        assert!(only_queries("this is not graphql"));
    }
}
