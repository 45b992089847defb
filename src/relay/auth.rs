//! Client authentication: the relay key from `x-api-key` or
//! `Authorization: Bearer`, hashed with SHA-256 and looked up through the key
//! cache. No format check: an unknown string is simply unknown.

use super::error::ApiError;
use crate::cache::KeyCache;
use crate::domain::{sha256_hex, ApiKey, KeyStatus};
use crate::store::Store;
use chrono::Utc;
use http::HeaderMap;
use std::sync::Arc;

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
