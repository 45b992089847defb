//! Upstream adapters: one per account kind behind one interface. An adapter
//! knows its base URL, injects its credentials (refreshing OAuth tokens when
//! due) and carries the HTTP client for its proxy. Classifying upstream
//! answers into retry/cooldown decisions lives in [`classify`].
//!
//! The [`Upstreams`] registry maps account ids to adapters; it is rebuilt from
//! the store when accounts change, keeping the adapters of unchanged accounts
//! (so an OAuth adapter keeps its refreshed tokens).

pub mod api_key;
pub mod bedrock;
pub mod classify;
pub mod client;
pub mod oauth;
pub mod ratelimit;
pub mod vertex;

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
    /// The account kind cannot serve this kind of request (see [`Capabilities`]).
    #[error("{0} is not supported by this account kind")]
    Unsupported(&'static str),
}

/// What an account kind can serve; the relay routes and answers by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `POST /v1/messages/count_tokens`.
    pub count_tokens: bool,
    /// `GET /v1/models` answered by upstream (else from the adapter's table).
    pub upstream_models: bool,
    /// `stream: true` on `/v1/messages`.
    pub streaming: bool,
}

/// A response made by an adapter itself (Anthropic's error JSON), shaped as
/// if upstream had sent it, so the relay's one failover path handles it.
pub fn synthetic_response(
    status: http::StatusCode,
    error_type: &str,
    message: &str,
    retry_after_secs: Option<u64>,
) -> reqwest::Response {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
    })
    .to_string();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after_secs {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    reqwest::Response::from(response)
}

/// One adapter per account kind.
pub enum Adapter {
    ApiKey(api_key::ApiKeyAdapter),
    OAuth(oauth::OAuthAdapter),
    Bedrock(bedrock::BedrockAdapter),
    /// Boxed: the RSA key and token slot make it several times larger
    /// than the other adapters.
    Vertex(Box<vertex::VertexAdapter>),
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
            AccountKind::Bedrock => {
                Adapter::Bedrock(bedrock::BedrockAdapter::new(account, client)?)
            }
            AccountKind::Vertex => {
                Adapter::Vertex(Box::new(vertex::VertexAdapter::new(account, client)?))
            }
        })
    }

    /// The GraphQL name of the account kind, for messages to clients.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Adapter::ApiKey(_) => "ANTHROPIC_API_KEY or ANTHROPIC_COMPATIBLE",
            Adapter::OAuth(_) => "CLAUDE_OAUTH",
            Adapter::Bedrock(_) => "BEDROCK",
            Adapter::Vertex(_) => "VERTEX",
        }
    }

    pub fn capabilities(&self) -> Capabilities {
        match self {
            Adapter::ApiKey(_) | Adapter::OAuth(_) => Capabilities {
                count_tokens: true,
                upstream_models: true,
                streaming: true,
            },
            // Bedrock's CountTokens and Vertex's count-tokens take other
            // request shapes and are not offered in every region; their model
            // lists are not Anthropic's.
            Adapter::Bedrock(_) | Adapter::Vertex(_) => Capabilities {
                count_tokens: false,
                upstream_models: false,
                streaming: true,
            },
        }
    }

    /// Model names served from the adapter's own table, for kinds whose
    /// upstream has no Anthropic-shaped models endpoint.
    pub fn listed_models(&self) -> Option<&[String]> {
        match self {
            Adapter::Bedrock(a) => Some(a.listed_models()),
            Adapter::Vertex(a) => Some(a.listed_models()),
            Adapter::ApiKey(_) | Adapter::OAuth(_) => None,
        }
    }

    /// The upstream call for `path` (e.g. `/v1/messages`) with the client's
    /// (deny-listed) headers and body: URL, credentials and, for kinds that
    /// speak another protocol, the translated request. `Ok(Err(response))`
    /// is an answer the adapter gives itself (a request it cannot send).
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        query: Option<&str>,
        mut headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<Result<reqwest::RequestBuilder, reqwest::Response>, Error> {
        match self {
            Adapter::Bedrock(a) => return a.request(path, &headers, &body),
            Adapter::Vertex(a) => return a.request(path, &headers, &body).await,
            Adapter::ApiKey(_) | Adapter::OAuth(_) => {}
        }
        self.authorize(&mut headers).await?;
        let base = self.base_url();
        let mut url = String::with_capacity(base.len() + path.len() + 32);
        url.push_str(base);
        url.push_str(path);
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        Ok(Ok(self
            .client()
            .request(method, url)
            .headers(headers)
            .body(body)))
    }

    /// Upstream's answer as the Anthropic API would give it (unchanged for
    /// Anthropic-speaking kinds).
    pub async fn response(&self, response: reqwest::Response) -> reqwest::Response {
        match self {
            Adapter::Bedrock(a) => a.response(response).await,
            Adapter::Vertex(a) => a.response(response).await,
            Adapter::ApiKey(_) | Adapter::OAuth(_) => response,
        }
    }

    pub fn base_url(&self) -> &str {
        match self {
            Adapter::ApiKey(a) => a.base_url(),
            Adapter::OAuth(a) => a.base_url(),
            Adapter::Bedrock(a) => a.base_url(),
            Adapter::Vertex(a) => a.base_url(),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        match self {
            Adapter::ApiKey(a) => a.client(),
            Adapter::OAuth(a) => a.client(),
            Adapter::Bedrock(a) => a.client(),
            Adapter::Vertex(a) => a.client(),
        }
    }

    /// Sets the account's credentials (and any beta the kind requires) on an
    /// outgoing request; may refresh an OAuth token first.
    pub async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        match self {
            Adapter::ApiKey(a) => a.authorize(headers),
            Adapter::OAuth(a) => a.authorize(headers).await,
            // Bedrock signs the whole translated request in `request`.
            Adapter::Bedrock(_) | Adapter::Vertex(_) => {
                Err(Error::Unsupported("header-only authorization"))
            }
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

    /// Accounts whose kind cannot do what `can` asks (e.g. count_tokens).
    pub fn lacking(&self, can: impl Fn(&Capabilities) -> bool) -> Vec<AccountId> {
        self.inner
            .map
            .load()
            .iter()
            .filter(|(_, e)| !can(&e.adapter.capabilities()))
            .map(|(id, _)| *id)
            .collect()
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
        && a.credentials.aws == b.credentials.aws
        && a.credentials.gcp == b.credentials.gcp
        && (!matches!(a.kind, AccountKind::Bedrock | AccountKind::Vertex)
            || a.routing.model_mapping == b.routing.model_mapping)
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
