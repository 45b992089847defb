//! Client authentication: the relay key from `x-api-key` or
//! `Authorization: Bearer`, hashed with SHA-256 and looked up through the key
//! cache. No format check: an unknown string is simply unknown.

use super::error::ApiError;
use crate::cache::KeyCache;
use crate::domain::{sha256_hex, ApiKey, KeyStatus};
use crate::store::Store;
use chrono::Utc;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Failed key lookups one client address may make per window before it is throttled.
const MAX_FAILURES_PER_WINDOW: u32 = 30;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Counts failed authentications per client address, so guessing keys (or a
/// misconfigured client in a loop) is slowed down without touching the store.
#[derive(Clone)]
pub struct AuthThrottle {
    failures: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }
}

impl AuthThrottle {
    /// Refuses an address that failed too often in the current window.
    pub fn check(&self, addr: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(addr) = addr else { return Ok(()) };
        match self.failures.get(&addr) {
            Some(count) if count.load(Ordering::Relaxed) >= MAX_FAILURES_PER_WINDOW => {
                Err(ApiError::AuthThrottled {
                    retry_after_secs: FAILURE_WINDOW.as_secs(),
                })
            }
            _ => Ok(()),
        }
    }

    pub fn note_failure(&self, addr: Option<IpAddr>) {
        if let Some(addr) = addr {
            self.failures
                .get_with(addr, || Arc::new(AtomicU32::new(0)))
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The raw key the client presented, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v);
        }
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = auth.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Resolves and checks the client's key, throttling addresses that keep failing.
pub fn authenticate_from(
    parts: &http::request::Parts,
    keys: &KeyCache,
    store: &Store,
    throttle: &AuthThrottle,
) -> Result<Arc<ApiKey>, ApiError> {
    let addr = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    throttle.check(addr)?;
    let result = authenticate(&parts.headers, keys, store);
    if matches!(result, Err(ApiError::Authentication(_))) {
        throttle.note_failure(addr);
    }
    result
}

/// Resolves and checks the client's key.
pub fn authenticate(
    headers: &HeaderMap,
    keys: &KeyCache,
    store: &Store,
) -> Result<Arc<ApiKey>, ApiError> {
    let raw = presented_key(headers).ok_or(ApiError::Authentication(
        "x-api-key header is required (or Authorization: Bearer <key>)",
    ))?;
    let key = keys
        .lookup(store, &sha256_hex(raw))
        .and_then(|found| match found {
            Some(key) => Ok(Some(key)),
            // Imported keys (claude-relay-service hashes): tried before the 401;
            // a hit is upgraded to the native hash, whose store event purges
            // the negative entry the miss above left.
            None => store.key_by_legacy(raw).map(|k| k.map(Arc::new)),
        })
        .map_err(|e| {
            tracing::error!(error = %e, "key lookup failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::Authentication("invalid x-api-key"))?;
    match key.status {
        KeyStatus::Active => {}
        KeyStatus::Disabled => return Err(ApiError::Authentication("This API key is disabled")),
        KeyStatus::Deleted => return Err(ApiError::Authentication("invalid x-api-key")),
    }
    if key.expires_at.is_some_and(|exp| exp <= Utc::now()) {
        return Err(ApiError::Authentication("This API key has expired"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("authorization", "Bearer cr_abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("cr_abc"));
        h.insert("x-api-key", "cr_xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("cr_xyz"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }
}
