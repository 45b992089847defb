//! HTTP and WebSocket transport of the admin API: POST and GET `/graphql`
//! (GET runs queries only), graphql-ws at `/graphql/ws` (authenticated in
//! `connection_init`). Resolves the Bearer session once per request, applies
//! the request timeout, and makes sure every error carries a code. Logs only
//! operation names, never query text (it may hold literals such as passwords).

use super::auth::{bearer, resolve_hash, resolve_token, RequestAuth, Services};
use super::error::{ensure_codes, response_with, GqlError, BAD_USER_INPUT, INTERNAL};
use super::AdminSchema;
use crate::config::Cidr;
use crate::domain::{sha256_hex, AdminId};
use crate::store::StoreEvent;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Data, ParseRequestError};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
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

/// The client address: the peer (when the server was started with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or, when the peer
/// is one of `trusted_proxies`, the address the proxy reports. Used for
/// login throttling and the audit log.
pub(crate) struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<HttpState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientAddr(client_ip(
            peer,
            &parts.headers,
            &state.services.config.trusted_proxies,
        )))
    }
}

/// See [`ClientAddr`]. `X-Forwarded-For` is read from the right: each
/// trusted proxy appends the address it saw, so the first untrusted address
/// from the right is the client (anything left of it is client-supplied and
/// could be forged). Without that header, `X-Real-IP`. An unparsable entry
/// stops the walk at the last address known good.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !forwarded.is_empty() {
        let mut last_good = peer;
        for entry in forwarded.iter().rev() {
            let Ok(ip) = entry.parse::<IpAddr>() else {
                return Some(last_good);
            };
            if !is_trusted(ip) {
                return Some(ip);
            }
            last_good = ip;
        }
        return Some(last_good);
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(Some(peer))
}

/// Bounds what a POST to `/graphql` may send: the body is read up to the
/// configured limit (`graphql.max_body_bytes`) and refused with 413 and a
/// coded GraphQL error beyond it, whether or not `Content-Length` was sent.
pub(crate) async fn limit_body(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            GraphQLResponse::from(response_with(BAD_USER_INPUT, "request body too large")),
        )
            .into_response()
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                too_large()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    GraphQLResponse::from(response_with(
                        BAD_USER_INPUT,
                        "the request body could not be read",
                    )),
                )
                    .into_response()
            }
        }
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
    uri: axum::http::Uri,
    req: Result<GraphQLRequest<Rejection>, Rejection>,
) -> Response {
    if super::playground::wants_page(&headers, uri.query()) {
        return super::playground::page();
    }
    let req = match req {
        Ok(req) => req.into_inner(),
        Err(rejection) => return rejection.into_response(),
    };
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

/// graphql-transport-ws (and the older graphql-ws) over `/graphql/ws`. A
/// socket whose session ends (logout, password change, admin disabled or
/// deleted, expiry) is closed with code 4403 "session revoked".
pub(crate) async fn graphql_ws(
    State(app): State<HttpState>,
    ClientAddr(ip): ClientAddr,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let HttpState { schema, services } = app;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(socket, schema, services, ip, protocol))
}

/// The session a socket authenticated with, once `connection_init` ran.
type SocketSession = Arc<parking_lot::Mutex<Option<(AdminId, String)>>>;

async fn serve_socket(
    socket: axum::extract::ws::WebSocket,
    schema: AdminSchema,
    services: Arc<Services>,
    ip: Option<IpAddr>,
    protocol: GraphQLProtocol,
) {
    use futures::{SinkExt, StreamExt};
    // Subscribed before anything runs, so no revocation can slip between.
    let events = services.store.subscribe();
    let session: SocketSession = Arc::default();
    let (mut ws_tx, ws_rx) = socket.split();
    // The GraphQL side writes into a channel; this task owns the real sink
    // so it can also send the close frame when the session is revoked.
    let (tx, mut rx) = futures::channel::mpsc::channel::<Message>(16);
    let init = {
        let (services, session) = (services.clone(), session.clone());
        move |payload: serde_json::Value| async move {
            let (data, who) = connection_init(&services, ip, &payload)?;
            *session.lock() = Some(who);
            Ok(data)
        }
    };
    let serve = GraphQLWebSocket::new_with_pair(tx, ws_rx, schema, protocol)
        .on_connection_init(init)
        .serve();
    let revoked = watch_session(services.store.clone(), events, session);
    tokio::pin!(serve, revoked);
    let mut serving = true;
    loop {
        tokio::select! {
            _ = &mut serve, if serving => serving = false,
            msg = rx.next() => match msg {
                Some(m) => {
                    if ws_tx.send(m).await.is_err() {
                        break;
                    }
                }
                // `serve` ended and everything it wrote went out.
                None => break,
            },
            _ = &mut revoked => {
                tracing::info!("closing an admin WebSocket: its session ended");
                let close = Message::Close(Some(CloseFrame {
                    code: SESSION_REVOKED,
                    reason: "session revoked".into(),
                }));
                let _ = ws_tx.send(close).await;
                break;
            }
        }
    }
}

/// Close code of a socket whose session ended (4000-4999: application codes).
const SESSION_REVOKED: u16 = 4403;
/// Sessions also expire; how often an idle socket re-checks its session.
const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Resolves when the socket's session no longer resolves to an enabled
/// admin. Re-checked on every change to that admin (the store emits
/// `AdminChanged` for session and admin writes), when events were missed,
/// and periodically for expiry.
async fn watch_session(
    store: crate::store::Store,
    mut events: tokio::sync::broadcast::Receiver<StoreEvent>,
    session: SocketSession,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut tick = tokio::time::interval(SESSION_RECHECK);
    loop {
        let check = tokio::select! {
            ev = events.recv() => match ev {
                Ok(StoreEvent::AdminChanged { id }) => {
                    session.lock().as_ref().is_some_and(|(a, _)| *a == id)
                }
                Ok(_) => false,
                Err(RecvError::Lagged(_)) => true,
                // The store is gone (shutdown); the socket ends with the server.
                Err(RecvError::Closed) => std::future::pending().await,
            },
            _ = tick.tick() => true,
        };
        let hash = session.lock().as_ref().map(|(_, h)| h.clone());
        if let (true, Some(hash)) = (check, hash) {
            // A storage error is not proof of revocation: keep the socket.
            if let Ok(None) = resolve_hash(&store, &hash, Utc::now()) {
                return;
            }
        }
    }
}

/// Authenticates a socket from `{"authorization": "Bearer …"}` or
/// `{"token": "…"}`; the session is checked again on every operation.
fn connection_init(
    services: &Services,
    ip: Option<IpAddr>,
    payload: &serde_json::Value,
) -> async_graphql::Result<(Data, (AdminId, String))> {
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
    let Some(principal) = resolve_hash(&services.store, &hash, Utc::now())? else {
        return Err(unauthenticated());
    };
    let mut data = Data::default();
    data.insert(RequestAuth {
        principal: None,
        ws_token_hash: Some(hash.clone()),
        client_ip: ip,
    });
    Ok((data, (principal.admin.id, hash)))
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

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 203.0.113.7, 10.0.0.2".parse().unwrap(),
        );
        // Untrusted peer: headers ignored.
        assert_eq!(
            client_ip(Some(ip("198.51.100.1")), &h, &trusted),
            Some(ip("198.51.100.1"))
        );
        // Trusted peer: the first untrusted address from the right.
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &h, &trusted),
            Some(ip("203.0.113.7"))
        );
        // X-Real-IP when there is no X-Forwarded-For.
        let mut real = HeaderMap::new();
        real.insert("x-real-ip", "203.0.113.9".parse().unwrap());
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &real, &trusted),
            Some(ip("203.0.113.9"))
        );
        // Garbage stops the walk at the last good address.
        let mut bad = HeaderMap::new();
        bad.insert("x-forwarded-for", "evil, 10.0.0.3".parse().unwrap());
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &bad, &trusted),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(client_ip(None, &h, &trusted), None);
    }
}
