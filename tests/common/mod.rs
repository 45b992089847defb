//! Test harness: the real relay on 127.0.0.1:0 with a temp sled dir, in
//! front of the simulated upstream, driven over real HTTP.
#![allow(dead_code)]

use claude_relay::app::App;
use claude_relay::config::Config;
use claude_relay::sim::{SimHandle, SimUpstream};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

pub struct TestRelay {
    pub addr: SocketAddr,
    pub base_url: String,
    pub sim: SimHandle,
    pub data_dir: TempDir,
    pub admin_token: String,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub fn test_config(data_dir: &std::path::Path) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        master_key: Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into()),
        admin_user: Some(ADMIN_USER.into()),
        admin_password: Some(ADMIN_PASSWORD.into()),
        usage_flush_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

impl TestRelay {
    pub async fn start() -> TestRelay {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestRelay {
        let sim = SimUpstream::new()
            .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_on(sim, data_dir, tweak).await
    }

    /// Starts a relay on an existing sim and data dir (for restart tests).
    pub async fn start_on(
        sim: SimHandle,
        data_dir: TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> TestRelay {
        let mut config = test_config(data_dir.path());
        tweak(&mut config);
        // After an in-process restart, connection tasks of the previous relay
        // may still hold the sled lock for a moment; a new process never sees this.
        let mut attempts = 0;
        let app = loop {
            match App::start(config.clone()).await {
                Ok(app) => break app,
                Err(e) if attempts < 100 && e.to_string().contains("lock") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("relay did not start: {e}"),
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut relay = TestRelay {
            addr,
            base_url: format!("http://{addr}"),
            sim,
            data_dir,
            admin_token: String::new(),
            http,
            shutdown: Some(tx),
            server: Some(server),
        };
        relay.admin_token = relay.login(ADMIN_USER, ADMIN_PASSWORD).await;
        relay
    }

    /// Stops the relay (draining and flushing) and hands back the sim and data dir.
    pub async fn stop(mut self) -> (SimHandle, TempDir) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        let TestRelay { sim, data_dir, .. } = self;
        (sim, data_dir)
    }

    pub async fn login(&self, user: &str, password: &str) -> String {
        let v = self
            .gql_as(
                None,
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token expiresAt } }",
                json!({"u": user, "p": password}),
            )
            .await;
        v["data"]["login"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {v}"))
            .to_string()
    }

    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.base_url))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Runs an admin query and fails the test on GraphQL errors.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let v = self
            .gql_as(Some(&self.admin_token.clone()), query, variables)
            .await;
        assert!(v.get("errors").is_none(), "GraphQL errors: {v}");
        v["data"].clone()
    }

    /// Adds an API-key account pointing at the simulator; returns its id.
    pub async fn add_account(&self, name: &str, upstream_key: &str, priority: i64) -> String {
        let v = self
            .gql(
                "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id name kind priority status } } }",
                json!({"i": {"name": name, "kind": "ANTHROPIC_API_KEY", "apiKey": upstream_key, "baseUrl": self.sim.base_url(), "priority": priority}}),
            )
            .await;
        v["createAccount"]["account"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Issues a relay key; returns (id, raw secret).
    pub async fn add_key(&self, name: &str) -> (String, String) {
        let v = self
            .gql(
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id name } secret } }",
                json!({"i": {"name": name}}),
            )
            .await;
        (
            v["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
            v["createApiKey"]["secret"].as_str().unwrap().to_string(),
        )
    }

    pub async fn key_usage(&self, key_id: &str) -> Value {
        let v = self
            .gql(
                "query($id: ID!) { apiKey(id: $id) { usage { requests inputTokens outputTokens cacheCreationInputTokens cacheReadInputTokens costUsd } } }",
                json!({"id": key_id}),
            )
            .await;
        v["apiKey"]["usage"].clone()
    }

    pub async fn account_usage(&self, account_id: &str) -> Value {
        let v = self
            .gql(
                "query($id: ID!) { account(id: $id) { usage { requests inputTokens outputTokens cacheCreationInputTokens cacheReadInputTokens costUsd } } }",
                json!({"id": account_id}),
            )
            .await;
        v["account"]["usage"].clone()
    }

    /// Polls the key's usage until `requests` reaches `n` (the writer flushes behind).
    pub async fn wait_key_requests(&self, key_id: &str, n: u64) -> Value {
        for _ in 0..200 {
            let u = self.key_usage(key_id).await;
            if u["requests"].as_u64() == Some(n) {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "key usage never reached {n} requests: {}",
            self.key_usage(key_id).await
        );
    }

    pub fn messages(&self, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v1/messages", self.base_url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(body)
    }
}

pub fn simple_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello to the relay"}]
    })
}
