//! `claude_oauth` accounts: a Claude subscription's access token, refreshed
//! before it expires. One refresh at a time per account (single flight); the
//! new tokens are persisted with a flushed write before they are used, so a
//! crash never loses a rotated refresh token.

use super::{base_url_of, Error};
use crate::config::Config;
use crate::domain::{Account, AccountId, AccountStatus, Credentials, Secret};
use crate::store::Store;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;

/// The beta the API requires for OAuth bearer tokens.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

#[derive(Clone, PartialEq)]
struct Tokens {
    access: Secret,
    refresh: Secret,
    expires_at: Option<DateTime<Utc>>,
}

pub struct OAuthAdapter {
    account_id: AccountId,
    base_url: String,
    client: reqwest::Client,
    tokens: ArcSwap<Tokens>,
    refresh_lock: tokio::sync::Mutex<()>,
    config: Arc<Config>,
    store: Store,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(serde::Deserialize)]
struct TokenError {
    error: Option<String>,
}

impl OAuthAdapter {
    pub fn new(
        account: &Account,
        client: reqwest::Client,
        config: Arc<Config>,
        store: Store,
    ) -> Result<OAuthAdapter, Error> {
        let tokens = tokens_of(&account.credentials).ok_or(Error::MissingCredentials)?;
        Ok(OAuthAdapter {
            account_id: account.id,
            base_url: base_url_of(account),
            client,
            tokens: ArcSwap::from_pointee(tokens),
            refresh_lock: tokio::sync::Mutex::new(()),
            config,
            store,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Takes tokens an admin stored, unless they are the ones already held.
    pub fn adopt(&self, credentials: &Credentials) {
        if let Some(tokens) = tokens_of(credentials) {
            if *self.tokens.load_full() != tokens {
                self.tokens.store(Arc::new(tokens));
            }
        }
    }

    pub async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        let access = self.access_token().await?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", access.expose()))
            .map_err(|_| Error::MissingCredentials)?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
        crate::relay::headers::append_betas(headers, &[OAUTH_BETA]);
        Ok(())
    }

    fn needs_refresh(&self, tokens: &Tokens) -> bool {
        let margin =
            chrono::Duration::from_std(self.config.oauth_refresh_before).unwrap_or_default();
        tokens
            .expires_at
            .is_some_and(|exp| exp - margin <= Utc::now())
    }

    async fn access_token(&self) -> Result<Secret, Error> {
        let current = self.tokens.load_full();
        if !self.needs_refresh(&current) {
            return Ok(current.access.clone());
        }
        let _guard = self.refresh_lock.lock().await;
        // Another request may have refreshed while this one waited.
        let current = self.tokens.load_full();
        if !self.needs_refresh(&current) {
            return Ok(current.access.clone());
        }
        match self.refresh(&current).await {
            Ok(fresh) => Ok(fresh),
            Err(Error::AuthFailed) => {
                self.mark_auth_failed().await;
                Err(Error::AuthFailed)
            }
            // A transient refresh failure: the old token may still be valid for a while.
            Err(e) if current.expires_at.is_some_and(|exp| exp > Utc::now()) => {
                tracing::warn!(account.id = %self.account_id, error = %e, "token refresh failed; using the current token until it expires");
                Ok(current.access.clone())
            }
            Err(e) => Err(e),
        }
    }

    async fn refresh(&self, current: &Tokens) -> Result<Secret, Error> {
        let body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": current.refresh.expose(),
            "client_id": self.config.oauth_client_id,
        });
        let resp = self
            .client
            .post(&self.config.oauth_token_url)
            .timeout(self.config.oauth_refresh_timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Refresh(redact(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Refresh(redact(&e)))?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenError>(&bytes)
                .ok()
                .and_then(|e| e.error);
            if error.as_deref() == Some("invalid_grant") {
                return Err(Error::AuthFailed);
            }
            return Err(Error::Refresh(format!(
                "token endpoint answered {}",
                status.as_u16()
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| Error::Refresh("unreadable token response".into()))?;
        let fresh = Tokens {
            access: Secret::new(parsed.access_token),
            refresh: parsed
                .refresh_token
                .map(Secret::new)
                .unwrap_or_else(|| current.refresh.clone()),
            expires_at: parsed.expires_in.map(|s| {
                Utc::now() + chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2_000))
            }),
        };
        self.persist(&fresh).await?;
        self.tokens.store(Arc::new(fresh.clone()));
        tracing::info!(account.id = %self.account_id, "OAuth token refreshed");
        Ok(fresh.access)
    }

    /// Writes the new tokens and waits for the flush before they are used.
    async fn persist(&self, tokens: &Tokens) -> Result<(), Error> {
        let store_err = |e: crate::store::Error| {
            Error::Refresh(format!("cannot persist refreshed tokens: {e}"))
        };
        let mut account = self
            .store
            .get_account(self.account_id)
            .map_err(store_err)?
            .ok_or_else(|| Error::Refresh("account no longer exists".into()))?;
        account.credentials.access_token = Some(tokens.access.clone());
        account.credentials.refresh_token = Some(tokens.refresh.clone());
        account.credentials.expires_at = tokens.expires_at;
        account.updated_at = Utc::now();
        self.store.put_account(&account).map_err(store_err)?;
        self.store.flush().await.map_err(store_err)
    }

    async fn mark_auth_failed(&self) {
        tracing::warn!(account.id = %self.account_id, "OAuth refresh token rejected; account marked AUTH_FAILED");
        if let Ok(Some(mut account)) = self.store.get_account(self.account_id) {
            account.status = AccountStatus::AuthFailed;
            account.updated_at = Utc::now();
            if let Err(e) = self.store.put_account(&account) {
                tracing::error!(account.id = %self.account_id, error = %e, "cannot mark account AUTH_FAILED");
            }
        }
    }
}

fn tokens_of(credentials: &Credentials) -> Option<Tokens> {
    Some(Tokens {
        access: credentials.access_token.clone()?,
        refresh: credentials.refresh_token.clone()?,
        expires_at: credentials.expires_at,
    })
}

/// reqwest errors may include the URL; keep only the kind.
fn redact(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}
