//! The vault: AES-256-GCM sealing of secrets at rest under the master key.
//! Owns loading (or, for a brand-new store only, creating) the master key and
//! the key-check value in `meta` that refuses a wrong key. It never logs or
//! returns key material.
//!
//! Sealed layout: `[format 1][12-byte random nonce][ciphertext + 16-byte tag]`;
//! the additional authenticated data is the record's id, so a sealed value
//! cannot be moved to another record unnoticed.

use super::{Error, StoreOptions};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use rand::RngCore;
use std::io::Write;
use std::path::Path;

const SEALED_FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
/// `meta` entry holding a sealed known plaintext: opening it proves the key.
pub(crate) const KEY_CHECK: &[u8] = b"key_check";
const KEY_CHECK_AAD: &[u8] = b"meta/key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"claude-relay master key check v1";

pub(crate) struct Vault {
    cipher: Aes256Gcm,
}

impl Vault {
    pub(crate) fn from_key(key: &[u8; 32]) -> Vault {
        Vault {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Corrupt("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let body = match sealed.split_first() {
            Some((&SEALED_FORMAT, rest)) if rest.len() > NONCE_LEN => rest,
            _ => return Err(Error::Corrupt("sealed value has an unknown layout".into())),
        };
        let (nonce, ct) = body.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| {
                Error::MasterKey("a sealed value does not open with this master key".into())
            })
    }

    /// Loads the master key (environment value first, then the key file) and
    /// checks it against the store's key-check value, writing that value on
    /// first use. A new key file is generated only when `meta` holds no key
    /// check and `has_encrypted_data` is false: the store has never sealed anything.
    pub(crate) fn load(
        opts: &StoreOptions,
        meta: &sled::Tree,
        has_encrypted_data: bool,
    ) -> Result<Vault, Error> {
        let existing_check = meta.get(KEY_CHECK)?;
        let established = existing_check.is_some() || has_encrypted_data;
        let key = match &opts.master_key {
            Some(material) => parse_key_material(material)?,
            None => load_or_create_key_file(&opts.master_key_file, established)?,
        };
        let vault = Vault::from_key(&key);
        match existing_check {
            Some(check) => {
                let plain = vault.open(KEY_CHECK_AAD, &check).map_err(|_| {
                    Error::MasterKey(
                        "the master key does not match this store (key check failed); \
                         use the key the store was created with"
                            .into(),
                    )
                })?;
                if plain != KEY_CHECK_PLAINTEXT {
                    return Err(Error::MasterKey(
                        "the key check value is not recognised".into(),
                    ));
                }
            }
            None => {
                meta.insert(KEY_CHECK, vault.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)?)?;
                meta.flush()?;
            }
        }
        Ok(vault)
    }
}

/// Accepts 64 hex characters or standard/URL-safe base64 of exactly 32 bytes.
pub(crate) fn parse_key_material(material: &str) -> Result<[u8; 32], Error> {
    let s = material.trim();
    let bytes = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(s).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
            .ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| Error::MasterKey("expected 64 hex characters or base64 of 32 bytes".into()))
}

fn load_or_create_key_file(path: &Path, established: bool) -> Result<[u8; 32], Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key_material(&text).map_err(|_| {
            Error::MasterKey(format!(
                "key file {} does not hold 64 hex characters or base64 of 32 bytes",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if established {
                return Err(Error::MasterKey(format!(
                    "this store holds encrypted data but the key file {} is missing; \
                     restore it or set RELAY_MASTER_KEY (a new key is never generated over existing data)",
                    path.display()
                )));
            }
            create_key_file(path)
        }
        Err(e) => Err(Error::MasterKey(format!(
            "cannot read key file {}: {e}",
            path.display()
        ))),
    }
}

fn create_key_file(path: &Path) -> Result<[u8; 32], Error> {
    let io_err = |e: std::io::Error| {
        Error::MasterKey(format!("cannot create key file {}: {e}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let mut options = std::fs::OpenOptions::new();
    // create_new: never overwrite a key file that appeared meanwhile.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_binds_the_record_id() {
        let v = Vault::from_key(&[7u8; 32]);
        let a = v.seal(b"account/1", b"secret").unwrap();
        let b = v.seal(b"account/1", b"secret").unwrap();
        assert_ne!(a, b, "fresh nonce per value");
        assert_eq!(v.open(b"account/1", &a).unwrap(), b"secret");
        assert!(v.open(b"account/2", &a).is_err(), "AAD binds the record id");
        assert!(Vault::from_key(&[8u8; 32]).open(b"account/1", &a).is_err());
    }

    #[test]
    fn key_material_formats() {
        let hex_key = "ab".repeat(32);
        assert_eq!(parse_key_material(&hex_key).unwrap(), [0xab; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        assert_eq!(parse_key_material(&format!("{b64}\n")).unwrap(), [0xab; 32]);
        assert!(parse_key_material("too short").is_err());
        assert!(parse_key_material(&"ab".repeat(31)).is_err());
    }
}
