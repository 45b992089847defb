//! The upstream HTTP client pool: one reqwest client per distinct proxy (and
//! one for direct calls), so connections are reused across accounts that share
//! a route. Clients decode gzip/br/zstd themselves so usage can always be read.

use crate::config::Config;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The proxy URL is unusable; the text never contains the URL (it may hold a password).
    #[error("invalid proxy configuration ({0})")]
    BadProxy(&'static str),
    #[error("cannot build HTTP client")]
    Build,
}

/// Hands out shared reqwest clients keyed by proxy URL.
pub struct ClientPool {
    connect_timeout: Duration,
    direct: reqwest::Client,
    by_proxy: Mutex<HashMap<String, reqwest::Client>>,
}

impl ClientPool {
    pub fn new(config: &Config) -> Result<ClientPool, PoolError> {
        let direct = builder(config.upstream_connect_timeout)
            .build()
            .map_err(|_| PoolError::Build)?;
        Ok(ClientPool {
            connect_timeout: config.upstream_connect_timeout,
            direct,
            by_proxy: Mutex::new(HashMap::new()),
        })
    }

    /// The client for calls through `proxy` (None: direct).
    pub fn client(&self, proxy: Option<&str>) -> Result<reqwest::Client, PoolError> {
        let Some(url) = proxy.filter(|p| !p.is_empty()) else {
            return Ok(self.direct.clone());
        };
        // Building a client is rare (once per proxy) and the map is tiny; the
        // lock is never held across an await.
        let mut map = self.by_proxy.lock();
        if let Some(client) = map.get(url) {
            return Ok(client.clone());
        }
        let scheme = url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "http" | "https" | "socks5" | "socks5h") {
            return Err(PoolError::BadProxy(
                "scheme must be http, https, socks5 or socks5h",
            ));
        }
        let proxy = reqwest::Proxy::all(url).map_err(|_| PoolError::BadProxy("unparseable URL"))?;
        let client = builder(self.connect_timeout)
            .proxy(proxy)
            .build()
            .map_err(|_| PoolError::Build)?;
        map.insert(url.to_string(), client.clone());
        Ok(client)
    }
}

fn builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // Upstream redirects are never followed: a redirect would carry credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .gzip(true)
        .brotli(true)
        .zstd(true)
        .no_proxy()
}
