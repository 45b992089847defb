//! The admin API over WebSocket (`/graphql/ws`, graphql-transport-ws):
//! authentication in `connection_init`, operations over the socket, and a
//! session revoked elsewhere stops working on the socket at once (client:
//! tests/ws_support).

mod graphql_support;
mod ws_support;

use graphql_support::Harness;
use serde_json::json;
use ws_support::{Frame, Ws};

#[tokio::test]
async fn sockets_authenticate_in_connection_init_and_follow_the_session() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let mut ws = Ws::connect(h.addr).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(ws.recv_json().await["type"], "connection_ack");
    let me = ws.run("1", "{ me { username role } }").await;
    assert_eq!(me["data"]["me"]["username"], graphql_support::OWNER);
    assert_eq!(ws.recv_json().await["type"], "complete");
    let created = ws
        .run(
            "2",
            "mutation { createApiKey(input: {name: \"from ws\"}) { apiKey { name } } }",
        )
        .await;
    assert_eq!(created["data"]["createApiKey"]["apiKey"]["name"], "from ws");
    assert_eq!(ws.recv_json().await["type"], "complete");

    // Logging out over HTTP closes the socket at once (conventions.md:
    // revoked sessions close their sockets).
    let out = h
        .post(
            Some(&token),
            "mutation { logout { revokedSessions } }",
            json!({}),
        )
        .await;
    graphql_support::data(&out);
    assert_closed_as_revoked(&mut ws).await;
}

/// The next frame is the 4403 close sent when the session ended.
async fn assert_closed_as_revoked(ws: &mut Ws) {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), ws.recv())
        .await
        .expect("the socket was not closed");
    match frame {
        Frame::Close(code, reason) => {
            assert_eq!(code, 4403);
            assert!(reason.contains("revoked"), "{reason}");
        }
        Frame::Text(t) => panic!("expected a close, got {t}"),
    }
}

#[tokio::test]
async fn deleting_or_disabling_an_admin_closes_their_subscriptions() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    for action in ["disable", "delete"] {
        let name = format!("sub-{action}");
        let admin = h.add_admin(
            &name,
            "subscriber-pass-1",
            claude_relay::domain::Role::Admin,
        );
        let token = h.login(&name, "subscriber-pass-1").await;
        let mut ws = Ws::connect(h.addr).await;
        ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        assert_eq!(ws.recv_json().await["type"], "connection_ack");
        let first = ws.run("s", "subscription { balancerStats { at } }").await;
        assert!(first["data"]["balancerStats"]["at"].is_string(), "{first}");
        let (query, input) = match action {
            "disable" => (
                "mutation($i: UpdateAdminInput!) { updateAdmin(input: $i) { revokedSessions } }",
                json!({ "id": admin.id.to_string(), "disabled": true }),
            ),
            _ => (
                "mutation($i: DeleteAdminInput!) { deleteAdmin(input: $i) { revokedSessions } }",
                json!({ "id": admin.id.to_string() }),
            ),
        };
        graphql_support::data(&h.post(Some(&owner), query, json!({ "i": input })).await);
        // Stats frames may still be in flight before the close.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match ws.recv().await {
                    Frame::Text(_) => continue,
                    Frame::Close(code, _) => return code,
                }
            }
        })
        .await
        .expect("the socket was not closed");
        assert_eq!(closed, 4403, "{action}");
    }
}

#[tokio::test]
async fn a_token_field_is_accepted_too() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let mut ws = Ws::connect(h.addr).await;
    ws.send(json!({ "type": "connection_init", "payload": { "token": token } }))
        .await;
    assert_eq!(ws.recv_json().await["type"], "connection_ack");
}

#[tokio::test]
async fn sockets_without_a_valid_session_are_closed() {
    let h = Harness::start().await;
    for payload in [
        json!({}),
        json!({ "authorization": "Bearer cra_nope" }),
        json!({ "token": "" }),
    ] {
        let mut ws = Ws::connect(h.addr).await;
        ws.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        match ws.recv().await {
            Frame::Close(code, reason) => {
                assert_ne!(code, 1000, "not a normal close");
                assert!(reason.contains("session"), "{reason}");
            }
            Frame::Text(t) => panic!("expected a close, got {t}"),
        }
    }
}

#[tokio::test]
async fn balancer_stats_are_pushed_every_second() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let mut ws = Ws::connect(h.addr).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(ws.recv_json().await["type"], "connection_ack");
    let first = ws
        .run("s", "subscription { balancerStats { at strategy accounts { accountId } decisions { priority } } }")
        .await;
    assert_eq!(first["data"]["balancerStats"]["strategy"], "PRIORITY");
    let second = ws.recv_json().await;
    assert_eq!(second["type"], "next", "{second}");
    assert_eq!(second["id"], "s");
    let t1 = first["data"]["balancerStats"]["at"]
        .as_str()
        .unwrap()
        .to_string();
    let t2 = second["payload"]["data"]["balancerStats"]["at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(t2 > t1, "snapshots move forward: {t1} then {t2}");
}
