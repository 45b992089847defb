//! The admin API over WebSocket (`/graphql/ws`, graphql-transport-ws):
//! authentication in `connection_init`, operations over the socket, and a
//! session revoked elsewhere stops working on the socket at once. Uses a
//! tiny hand-written WebSocket client (RFC 6455 framing) to avoid a
//! dev-dependency.

mod graphql_support;

use base64::Engine;
use graphql_support::Harness;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

enum Frame {
    Text(String),
    Close(u16, String),
}

struct Ws {
    stream: BufReader<TcpStream>,
}

impl Ws {
    async fn connect(h: &Harness) -> Ws {
        let tcp = TcpStream::connect(h.addr).await.unwrap();
        let mut stream = BufReader::new(tcp);
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let request = format!(
            "GET /graphql/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
            h.addr
        );
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Ws { stream }
    }

    async fn send(&mut self, msg: Value) {
        let payload = msg.to_string().into_bytes();
        let mask: [u8; 4] = rand::random();
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await.unwrap();
            let len = match head[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await.unwrap()),
                127 => self.stream.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await.unwrap();
            match head[0] & 0x0f {
                0x1 => return Frame::Text(String::from_utf8(payload).unwrap()),
                0x8 => {
                    let code = payload
                        .get(..2)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    return Frame::Close(code, reason);
                }
                _ => continue, // ping/pong: not used by these tests
            }
        }
    }

    async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Frame::Text(t) => serde_json::from_str(&t).unwrap(),
            Frame::Close(code, reason) => panic!("socket closed: {code} {reason}"),
        }
    }

    /// Runs one operation and returns its `next` payload.
    async fn run(&mut self, id: &str, query: &str) -> Value {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } }))
            .await;
        let msg = self.recv_json().await;
        assert_eq!(msg["id"], id, "{msg}");
        assert_eq!(msg["type"], "next", "{msg}");
        msg["payload"].clone()
    }
}

#[tokio::test]
async fn sockets_authenticate_in_connection_init_and_follow_the_session() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let mut ws = Ws::connect(&h).await;
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
        let mut ws = Ws::connect(&h).await;
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
    let mut ws = Ws::connect(&h).await;
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
        let mut ws = Ws::connect(&h).await;
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
    let mut ws = Ws::connect(&h).await;
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
