//! A tiny WebSocket client (RFC 6455 framing) speaking graphql-transport-ws
//! to the admin API's `/graphql/ws`, so tests need no WebSocket
//! dev-dependency.
#![allow(dead_code)]

use base64::Engine;
use serde_json::{json, Value};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub enum Frame {
    Text(String),
    Close(u16, String),
}

pub struct Ws {
    stream: BufReader<TcpStream>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr) -> Ws {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut stream = BufReader::new(tcp);
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let request = format!(
            "GET /graphql/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
            addr
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

    pub async fn send(&mut self, msg: Value) {
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

    pub async fn recv(&mut self) -> Frame {
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

    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Frame::Text(t) => serde_json::from_str(&t).unwrap(),
            Frame::Close(code, reason) => panic!("socket closed: {code} {reason}"),
        }
    }

    /// Runs one operation and returns its `next` payload.
    pub async fn run(&mut self, id: &str, query: &str) -> Value {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } }))
            .await;
        let msg = self.recv_json().await;
        assert_eq!(msg["id"], id, "{msg}");
        assert_eq!(msg["type"], "next", "{msg}");
        msg["payload"].clone()
    }
}
