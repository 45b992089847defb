//! Upstream accounts: the `accounts` tree. Credentials and the proxy URL are
//! sealed together by the vault (AAD = `account/<id>`) and never reach disk in
//! plain text; everything else is stored as is. Callers see decrypted
//! [`Account`]s.

use super::trees::{decode, encode};
use super::{Error, Store, StoreEvent};
use crate::domain::{
    Account, AccountId, AccountKind, AccountRouting, AccountStatus, Credentials, Secret,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const WHAT: &str = "account";

/// The on-disk form of an account.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    id: AccountId,
    name: String,
    kind: AccountKind,
    priority: u32,
    status: AccountStatus,
    base_url: Option<String>,
    #[serde(default)]
    routing: AccountRouting,
    /// base64 of the vault-sealed JSON of [`SealedPart`].
    sealed: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct SealedPart {
    credentials: Credentials,
    proxy: Option<Secret>,
}

fn aad(id: AccountId) -> Vec<u8> {
    format!("account/{id}").into_bytes()
}

impl Store {
    pub fn put_account(&self, account: &Account) -> Result<(), Error> {
        let secret = serde_json::to_vec(&SealedPart {
            credentials: account.credentials.clone(),
            proxy: account.proxy.clone(),
        })
        .map_err(|e| Error::Corrupt(format!("encode account secrets: {e}")))?;
        let sealed = self.inner.vault.seal(&aad(account.id), &secret)?;
        let stored = StoredAccount {
            id: account.id,
            name: account.name.clone(),
            kind: account.kind,
            priority: account.priority,
            status: account.status,
            base_url: account.base_url.clone(),
            routing: account.routing.clone(),
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
            created_at: account.created_at,
            updated_at: account.updated_at,
        };
        self.inner
            .accounts
            .insert(account.id.0.as_bytes(), encode(&stored)?)?;
        self.emit(StoreEvent::AccountChanged { id: account.id });
        Ok(())
    }

    pub fn get_account(&self, id: AccountId) -> Result<Option<Account>, Error> {
        self.inner
            .accounts
            .get(id.0.as_bytes())?
            .map(|v| self.unseal_account(&v))
            .transpose()
    }

    /// All accounts in id (creation) order, credentials decrypted.
    pub fn list_accounts(&self) -> Result<Vec<Account>, Error> {
        self.inner
            .accounts
            .iter()
            .values()
            .map(|v| self.unseal_account(&v?))
            .collect()
    }

    fn unseal_account(&self, bytes: &[u8]) -> Result<Account, Error> {
        let stored: StoredAccount = decode(bytes, WHAT)?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&stored.sealed)
            .map_err(|_| Error::Corrupt("account secrets are not base64".into()))?;
        let plain = self.inner.vault.open(&aad(stored.id), &sealed)?;
        let part: SealedPart = serde_json::from_slice(&plain)
            .map_err(|e| Error::Corrupt(format!("account secrets: {e}")))?;
        Ok(Account {
            id: stored.id,
            name: stored.name,
            kind: stored.kind,
            priority: stored.priority,
            status: stored.status,
            base_url: stored.base_url,
            credentials: part.credentials,
            proxy: part.proxy,
            routing: stored.routing,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::test_support::{open, options};
    use super::*;

    pub(crate) const CREDENTIAL: &str = "sk-ant-api03-PLAINTEXT-MUST-NOT-BE-ON-DISK-0123456789";
    pub(crate) const PROXY: &str = "socks5h://user:proxy-password-on-disk-check@proxy.example:1080";

    pub(crate) fn sample_account(name: &str) -> Account {
        let now = Utc::now();
        Account {
            id: AccountId::generate(),
            name: name.into(),
            kind: AccountKind::AnthropicApiKey,
            priority: 10,
            status: AccountStatus::Active,
            base_url: Some("http://127.0.0.1:9".into()),
            credentials: Credentials {
                api_key: Some(Secret::new(CREDENTIAL)),
                ..Credentials::default()
            },
            proxy: Some(Secret::new(PROXY)),
            routing: Default::default(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn accounts_round_trip_decrypted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = sample_account("a");
        let mut b = sample_account("b");
        b.kind = AccountKind::ClaudeOauth;
        b.credentials = Credentials {
            api_key: None,
            access_token: Some(Secret::new("access")),
            refresh_token: Some(Secret::new("refresh")),
            expires_at: Some(Utc::now()),
            ..Credentials::default()
        };
        b.proxy = None;
        store.put_account(&a).unwrap();
        store.put_account(&b).unwrap();
        assert_eq!(store.get_account(a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(store.list_accounts().unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(store.get_account(AccountId::generate()).unwrap(), None);
    }

    /// Greps every file sled wrote for the credential and the proxy password.
    #[tokio::test]
    async fn credentials_never_reach_disk_in_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let account = sample_account("a");
        store.put_account(&account).unwrap();
        store.flush().await.unwrap();
        drop(store);
        let mut files = 0;
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for needle in [
                CREDENTIAL,
                "proxy-password-on-disk-check",
                "PLAINTEXT-MUST-NOT",
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {}",
                    path.display()
                );
            }
        }
        assert!(files > 1, "sled wrote its files");
        // And the record still opens after a restart.
        let store = open(dir.path());
        assert_eq!(store.get_account(account.id).unwrap(), Some(account));
    }

    #[test]
    fn missing_key_file_with_encrypted_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_account(&sample_account("a")).unwrap();
        drop(store);
        let opts = options(dir.path());
        std::fs::remove_file(&opts.master_key_file).unwrap();
        match Store::open(&opts) {
            Err(Error::MasterKey(msg)) => assert!(msg.contains("missing"), "{msg}"),
            other => panic!("expected a master key error, got {:?}", other.err()),
        }
        assert!(
            !opts.master_key_file.exists(),
            "no new key generated over existing data"
        );
    }

    #[test]
    fn a_wrong_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put_account(&sample_account("a")).unwrap();
        drop(store);
        let opts = options(dir.path());
        std::fs::write(&opts.master_key_file, "33".repeat(32)).unwrap();
        assert!(matches!(Store::open(&opts), Err(Error::MasterKey(_))));
    }
}
