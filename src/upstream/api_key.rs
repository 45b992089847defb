//! `anthropic_api_key` accounts: a Console API key sent as `x-api-key`; and
//! `anthropic_compatible` accounts: any Anthropic-Messages-compatible base
//! URL with a static key (sent as `x-api-key` and as a Bearer token, since
//! gateways expect one or the other) plus the admin's extra headers.

use super::{base_url_of, Error};
use crate::domain::{Account, Secret};
use http::{HeaderMap, HeaderName, HeaderValue};

pub struct ApiKeyAdapter {
    base_url: String,
    client: reqwest::Client,
    /// Pre-built header value: no per-request allocation or validation.
    key_header: HeaderValue,
    /// Further headers set on every call (pre-validated).
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl ApiKeyAdapter {
    pub fn new(account: &Account, client: reqwest::Client) -> Result<ApiKeyAdapter, Error> {
        let key: &Secret = account
            .credentials
            .api_key
            .as_ref()
            .ok_or(Error::MissingCredentials)?;
        let mut key_header =
            HeaderValue::from_str(key.expose()).map_err(|_| Error::MissingCredentials)?;
        key_header.set_sensitive(true);
        Ok(ApiKeyAdapter {
            base_url: base_url_of(account),
            client,
            key_header,
            extra: Vec::new(),
        })
    }

    /// An `anthropic_compatible` account: the key both ways, plus extra headers.
    pub fn compatible(account: &Account, client: reqwest::Client) -> Result<ApiKeyAdapter, Error> {
        if account.base_url.as_deref().is_none_or(str::is_empty) {
            return Err(Error::MissingCredentials);
        }
        let mut adapter = Self::new(account, client)?;
        let key = account
            .credentials
            .api_key
            .as_ref()
            .ok_or(Error::MissingCredentials)?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| Error::MissingCredentials)?;
        bearer.set_sensitive(true);
        adapter.extra.push((http::header::AUTHORIZATION, bearer));
        for (name, value) in &account.credentials.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::MissingCredentials)?;
            let mut value =
                HeaderValue::from_str(value.expose()).map_err(|_| Error::MissingCredentials)?;
            value.set_sensitive(true);
            adapter.extra.push((name, value));
        }
        Ok(adapter)
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn authorize(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        headers.insert("x-api-key", self.key_header.clone());
        for (name, value) in &self.extra {
            headers.insert(name.clone(), value.clone());
        }
        Ok(())
    }
}
