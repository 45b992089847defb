//! Upstream adapters: one per account kind behind one interface. An adapter
//! knows its base URL, injects its credentials (refreshing OAuth tokens when
//! due) and carries the HTTP client for its proxy. Classifying upstream
//! answers into retry/cooldown decisions lives in [`classify`].
//!
//! The [`Upstreams`] registry maps account ids to adapters; it is rebuilt from
//! the store when accounts change, keeping the adapters of unchanged accounts
//! (so an OAuth adapter keeps its refreshed tokens).

pub mod api_key;
pub mod classify;
pub mod client;
pub mod oauth;
pub mod ratelimit;

pub use classify::{classify, Failure, FailureKind};

use crate::config::Config;
use crate::domain::{Account, AccountId, AccountKind, AccountStatus};
use crate::store::Store;
use arc_swap::ArcSwap;
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;

/// The public Anthropic API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("account has no usable credentials")]
    MissingCredentials,
    /// The refresh token was refused for good (`invalid_grant`).
    #[error("OAuth refresh token rejected")]
    AuthFailed,
    #[error("OAuth token refresh failed: {0}")]
    Refresh(String),
    #[error(transparent)]
    Pool(#[from] client::PoolError),
}

/// One adapter per account kind.
pub enum Adapter {
    ApiKey(api_key::ApiKeyAdapter),
    OAuth(oauth::OAuthAdapter),
}

impl Adapter {
    fn build(
        account: &Account,
        pool: &client::ClientPool,
        config: &Arc<Config>,
        store: &Store,
    ) -> Result<Adapter, Error> {
        let client = pool.client(account.proxy.as_ref().map(|p| p.expose()))?;
        Ok(match account.kind {
            AccountKind::AnthropicCompatible => {
                Adapter::ApiKey(api_key::ApiKeyAdapter::compatible(account, client)?)
            }
            AccountKind::AnthropicApiKey => {
                Adapter::ApiKey(api_key::ApiKeyAdapter::new(account, client)?)
            }
            AccountKind::ClaudeOauth => Adapter::OAuth(oauth::OAuthAdapter::new(
                account,
                client,
                config.clone(),
                store.clone(),
            )?),
        })
    }

    pub fn base_url(&self) -> &str {
        match self {
            Adapter::ApiKey(a) => a.base_url(),
            Adapter::OAuth(a) => a.base_url(),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        match self {
            Adapter::ApiKey(a) => a.client(),
            Adapter::OAuth(a) => a.client(),
        }
    }

    /// Sets the account's credentials (and any beta the kind requires) on an
    /// outgoing request; may refresh an OAuth token first.
    pub async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        match self {
            Adapter::ApiKey(a) => a.authorize(headers),
            Adapter::OAuth(a) => a.authorize(headers).await,
        }
    }
}

struct Entry {
    /// The account as the adapter was built from it; a changed record rebuilds the adapter.
    account: Account,
    adapter: Arc<Adapter>,
}

/// Account id → adapter, read without locks on the hot path.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<UpstreamsInner>,
}

struct UpstreamsInner {
    map: ArcSwap<HashMap<AccountId, Arc<Entry>>>,
    pool: client::ClientPool,
    config: Arc<Config>,
    store: Store,
}

impl Upstreams {
    pub fn new(config: Arc<Config>, store: Store) -> Result<Upstreams, Error> {
        let pool = client::ClientPool::new(&config)?;
        Ok(Upstreams {
            inner: Arc::new(UpstreamsInner {
                map: ArcSwap::from_pointee(HashMap::new()),
                pool,
                config,
                store,
            }),
        })
    }

    pub fn get(&self, id: AccountId) -> Option<Arc<Adapter>> {
        self.inner.map.load().get(&id).map(|e| e.adapter.clone())
    }

    /// Rebuilds the registry from the current accounts. Accounts whose adapter
    /// cannot be built (e.g. a malformed proxy) are left out and logged.
    pub fn sync(&self, accounts: &[Account]) {
        let old = self.inner.map.load();
        let mut next = HashMap::with_capacity(accounts.len());
        for account in accounts {
            if account.status == AccountStatus::Deleted {
                continue;
            }
            if let Some(entry) = old.get(&account.id) {
                if same_route(&entry.account, account) {
                    if let Adapter::OAuth(oauth) = entry.adapter.as_ref() {
                        // An admin may have pasted new tokens; the adapter's own
                        // refresh writes come back here unchanged and are no-ops.
                        oauth.adopt(&account.credentials);
                    }
                    next.insert(account.id, entry.clone());
                    continue;
                }
            }
            match Adapter::build(
                account,
                &self.inner.pool,
                &self.inner.config,
                &self.inner.store,
            ) {
                Ok(adapter) => {
                    next.insert(
                        account.id,
                        Arc::new(Entry {
                            account: account.clone(),
                            adapter: Arc::new(adapter),
                        }),
                    );
                }
                Err(e) => {
                    tracing::warn!(account.id = %account.id, error = %e, "account left out of the pool")
                }
            }
        }
        self.inner.map.store(Arc::new(next));
    }
}

/// Whether an adapter built for `a` can keep serving `b`. Status and priority
/// are the balancer's business; OAuth tokens are adopted in place so that the
/// adapter's single-flight refresh state survives.
fn same_route(a: &Account, b: &Account) -> bool {
    a.kind == b.kind
        && a.base_url == b.base_url
        && a.proxy == b.proxy
        && a.credentials.api_key == b.credentials.api_key
}

/// The base URL of an account, without a trailing slash.
pub(crate) fn base_url_of(account: &Account) -> String {
    account
        .base_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/')
        .to_string()
}
