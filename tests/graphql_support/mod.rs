//! Harness for the admin API tests: a real sled store in a tempdir, the
//! first admin bootstrapped, `graphql::router` served on 127.0.0.1:0 with
//! `axum::serve`, and a reqwest client that speaks GraphQL to it.
#![allow(dead_code)]

use argon2::password_hash::{PasswordHasher, SaltString};
use claude_relay::config::Config;
use claude_relay::domain::{Admin, AdminId, Role};
use claude_relay::graphql::{self, AdminState};
use claude_relay::store::{Store, StoreOptions};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

pub const OWNER: &str = "owner";
pub const OWNER_PASSWORD: &str = "owner-password-123";

pub struct Harness {
    pub addr: SocketAddr,
    pub store: Store,
    pub config: Arc<Config>,
    pub dir: tempfile::TempDir,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Harness {
    /// An owner `owner` / `owner-password-123` from the config, as `RELAY_ADMIN_*` would give.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            admin_user: Some(OWNER.into()),
            admin_password: Some(OWNER_PASSWORD.into()),
            ..Config::default()
        };
        adjust(&mut config);
        let store = Store::open(&StoreOptions {
            data_dir: config.data_dir.clone(),
            master_key: config.master_key.clone(),
            master_key_file: config.master_key_path(),
            cache_capacity_bytes: 8 * 1024 * 1024,
        })
        .unwrap();
        graphql::bootstrap_admin(&store, &config).await.unwrap();
        let config = Arc::new(config);
        let router = graphql::router(AdminState::new(store.clone(), config.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Harness {
            addr,
            store,
            config,
            dir,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// POSTs a GraphQL request and returns the JSON body (whatever the status).
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(self.url())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Logs in and returns the session token; panics on failure.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let resp = self.try_login(username, password).await;
        data(&resp)["login"]["token"].as_str().unwrap().to_string()
    }

    pub async fn try_login(&self, username: &str, password: &str) -> Value {
        self.post(
            None,
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token expiresAt admin { username role } } }",
            json!({ "u": username, "p": password }),
        )
        .await
    }

    pub async fn owner_token(&self) -> String {
        self.login(OWNER, OWNER_PASSWORD).await
    }

    /// Adds an admin directly in the store (quicker than `createAdmin` through the API).
    pub fn add_admin(&self, username: &str, password: &str, role: Role) -> Admin {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string();
        let now = chrono::Utc::now();
        let admin = Admin {
            id: AdminId::generate(),
            username: username.into(),
            password_hash: hash,
            role,
            created_at: now,
            password_changed_at: now,
            disabled: false,
        };
        self.store.put_admin(&admin).unwrap();
        admin
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The `data` of a response that must have no errors.
pub fn data(resp: &Value) -> &Value {
    assert!(resp.get("errors").is_none(), "unexpected errors: {resp:#}");
    &resp["data"]
}

/// `errors[0].extensions.code`, panicking if there is no error.
pub fn code(resp: &Value) -> &str {
    resp["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {resp:#}"))
}

/// Whether `needle` appears anywhere in the serialized response.
pub fn mentions(resp: &Value, needle: &str) -> bool {
    resp.to_string().contains(needle)
}
