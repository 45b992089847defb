//! `anthropic_api_key` accounts: a Console API key sent as `x-api-key`.

use super::{base_url_of, Error};
use crate::domain::{Account, Secret};
use http::{HeaderMap, HeaderValue};

pub struct ApiKeyAdapter {
    base_url: String,
    client: reqwest::Client,
    /// Pre-built header value: no per-request allocation or validation.
    key_header: HeaderValue,
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
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn authorize(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        headers.insert("x-api-key", self.key_header.clone());
        Ok(())
    }
}
