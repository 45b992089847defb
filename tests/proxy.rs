//! Accounts with a proxy send every call through it: messages, count_tokens,
//! models and OAuth token refresh. The proxy here is a real HTTP forward proxy
//! on loopback that counts what passes.

mod common;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::{simple_body, TestRelay};
use futures::TryStreamExt;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

/// Forwards absolute-form requests (`POST http://host/path`), as HTTP proxies do.
async fn forward(State(seen): State<Seen>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // The account's proxy credentials arrive as Proxy-Authorization.
    let auth = parts
        .headers
        .get("proxy-authorization")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(auth.as_deref(), Some("Basic cmVsYXk6cHJveHktc2VjcmV0LXB3"));
    seen.0.lock().push(parts.uri.path().to_string());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut headers = parts.headers.clone();
    headers.remove("proxy-connection");
    headers.remove("proxy-authorization");
    let upstream = client
        .request(parts.method, parts.uri.to_string())
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(upstream.status());
    for (k, v) in upstream.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            response = response.header(k, v);
        }
    }
    response
        .body(Body::from_stream(
            upstream.bytes_stream().map_err(std::io::Error::other),
        ))
        .unwrap()
}

async fn start_proxy() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://relay:proxy-secret-pw@{addr}"), seen)
}

#[tokio::test]
async fn every_call_of_a_proxied_account_goes_through_its_proxy() {
    let (proxy_url, seen) = start_proxy().await;
    let sim = claude_relay::sim::SimUpstream::new()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let sim_url = sim.base_url();
    let token_url = format!("{sim_url}/v1/oauth/token");
    let relay = TestRelay::start_on(sim, tempfile::tempdir().unwrap(), move |c| {
        c.oauth_token_url = token_url
    })
    .await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
    let v = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({"i": {"name": "proxied", "kind": "CLAUDE_OAUTH", "accessToken": "sk-ant-oat01-proxied", "refreshToken": "sk-ant-ort01-proxied",
                         "expiresAt": expires_at, "baseUrl": sim_url, "proxy": proxy_url, "priority": 1}}),
        )
        .await;
    assert!(v["createAccount"]["account"]["id"].is_string());
    let (_, key) = relay.add_key("k").await;

    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("message_stop"));
    let resp = relay
        .http
        .post(format!("{}/v1/messages/count_tokens", relay.base_url))
        .header("x-api-key", &key)
        .json(
            &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = relay
        .http
        .get(format!("{}/v1/models", relay.base_url))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let paths = seen.0.lock().clone();
    assert_eq!(
        paths,
        [
            "/v1/oauth/token",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/models"
        ]
    );
    // And the proxy URL is never shown in full by the admin API.
    let v = relay
        .gql("{ accounts { edges { node { proxy } } } }", json!({}))
        .await;
    let shown = v["accounts"]["edges"][0]["node"]["proxy"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shown.starts_with("http://") && !shown.contains("proxy-secret-pw"),
        "{shown}"
    );
}
