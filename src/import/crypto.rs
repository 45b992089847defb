//! claude-relay-service's credential encryption, read side only: AES-256-CBC
//! (PKCS#7) under `scrypt(ENCRYPTION_KEY, per-type salt, N=16384, r=8, p=1)`,
//! stored as `ivhex:cipherhex`; the deprecated `createDecipher` form (no
//! colon, key and IV from OpenSSL's MD5 `EVP_BytesToKey`); and plain text,
//! which CRS also accepts. Also the import source id and the legacy key hash.
//! Decrypted values live only in memory until the store seals them again.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use md5::{Digest, Md5};
use std::collections::HashMap;

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Salt of Claude OAuth accounts (`claude:account:*`).
pub const SALT_CLAUDE_OAUTH: &str = "salt";
/// Salt of Claude Console accounts (`claude_console_account:*`).
pub const SALT_CLAUDE_CONSOLE: &str = "claude-console-salt";

/// How a stored value was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `ivhex:cipherhex` under the scrypt key.
    Cbc,
    /// The deprecated no-colon `createDecipher` form.
    LegacyCipher,
    /// Not encrypted at all (CRS returns such values unchanged).
    Plain,
}

/// Decrypts CRS values with one ENCRYPTION_KEY; scrypt keys are derived
/// once per salt (each derivation costs ~50 ms by design).
pub struct CrsCipher {
    secret: String,
    keys: HashMap<String, [u8; 32]>,
}

impl CrsCipher {
    pub fn new(secret: &str) -> CrsCipher {
        CrsCipher {
            secret: secret.to_string(),
            keys: HashMap::new(),
        }
    }

    fn key(&mut self, salt: &str) -> Result<[u8; 32], String> {
        if let Some(k) = self.keys.get(salt) {
            return Ok(*k);
        }
        // Node's crypto.scryptSync defaults: N = 2^14, r = 8, p = 1.
        let params = scrypt::Params::new(14, 8, 1, 32).map_err(|e| e.to_string())?;
        let mut out = [0u8; 32];
        scrypt::scrypt(self.secret.as_bytes(), salt.as_bytes(), &params, &mut out)
            .map_err(|e| e.to_string())?;
        self.keys.insert(salt.to_string(), out);
        Ok(out)
    }

    /// The plaintext of a stored value. An `ivhex:cipherhex` value that does
    /// not decrypt is an error (a wrong ENCRYPTION_KEY, most likely); a
    /// no-colon value that does not decrypt is taken as plain text.
    pub fn decrypt(&mut self, salt: &str, stored: &str) -> Result<(String, Encoding), String> {
        if stored.is_empty() {
            return Ok((String::new(), Encoding::Plain));
        }
        if let Some((iv_hex, ct_hex)) = stored.split_once(':') {
            if let (Ok(iv), Ok(ct)) = (hex::decode(iv_hex), hex::decode(ct_hex)) {
                if iv.len() == 16 && !ct.is_empty() && ct.len().is_multiple_of(16) {
                    let key = self.key(salt)?;
                    return cbc_decrypt(&key, &iv, &ct)
                        .map(|p| (p, Encoding::Cbc))
                        .ok_or_else(|| {
                            "does not decrypt with this ENCRYPTION_KEY (wrong key?)".to_string()
                        });
                }
            }
            return Ok((stored.to_string(), Encoding::Plain));
        }
        let looks_legacy = stored.len() >= 32
            && stored.len().is_multiple_of(32)
            && stored.bytes().all(|b| b.is_ascii_hexdigit());
        if looks_legacy {
            if let Some(plain) = self.legacy_decrypt(stored) {
                return Ok((plain, Encoding::LegacyCipher));
            }
        }
        Ok((stored.to_string(), Encoding::Plain))
    }

    /// `crypto.createDecipher('aes-256-cbc', ENCRYPTION_KEY)`: key and IV from
    /// `EVP_BytesToKey(MD5, no salt, 1 iteration)`.
    fn legacy_decrypt(&self, stored: &str) -> Option<String> {
        let ct = hex::decode(stored).ok()?;
        let mut material = Vec::with_capacity(48);
        let mut prev: Vec<u8> = Vec::new();
        while material.len() < 48 {
            let mut h = Md5::new();
            h.update(&prev);
            h.update(self.secret.as_bytes());
            prev = h.finalize().to_vec();
            material.extend_from_slice(&prev);
        }
        let key: [u8; 32] = material[..32].try_into().ok()?;
        cbc_decrypt(&key, &material[32..48], &ct)
    }
}

fn cbc_decrypt(key: &[u8; 32], iv: &[u8], ct: &[u8]) -> Option<String> {
    let dec = Aes256CbcDec::new_from_slices(key, iv).ok()?;
    let mut buf = ct.to_vec();
    let plain = dec.decrypt_padded_mut::<Pkcs7>(&mut buf).ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The stable id of an import source: derived from its secret (two imports
/// of one deployment share it; the secret cannot be recovered from it).
pub fn source_id(secret: &str) -> String {
    let digest = crate::domain::sha256_hex(&format!("claude-relay import source\0{secret}"));
    format!("crs-{}", &digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;

    const KEY: &str = "CHANGE-THIS-32-CHARACTER-KEY-NOW";

    #[test]
    fn scrypt_keys_match_the_crs_vectors() {
        let mut c = CrsCipher::new(KEY);
        assert_eq!(
            hex::encode(c.key(SALT_CLAUDE_OAUTH).unwrap()),
            "6bc19eafb4ba064c8c75601131fe8c2d790380763c2e2fa72e1c13372c9e024f"
        );
        assert_eq!(
            hex::encode(c.key(SALT_CLAUDE_CONSOLE).unwrap()),
            "9e772dc0bbe0069e66c75a502066af6e1890c4956191fdaca3e88e72750bfc30"
        );
    }

    #[test]
    fn decrypts_the_documented_vector_and_refuses_a_wrong_key() {
        let stored = "00112233445566778899aabbccddeeff:a126361db3713deb926eeae2c1c2ddd0650323ca7d05c05c965a3e056543db43";
        let mut c = CrsCipher::new(KEY);
        assert_eq!(
            c.decrypt(SALT_CLAUDE_OAUTH, stored).unwrap(),
            ("sk-ant-oat01-test".to_string(), Encoding::Cbc)
        );
        assert!(CrsCipher::new("another-key")
            .decrypt(SALT_CLAUDE_OAUTH, stored)
            .is_err());
        assert_eq!(
            c.decrypt(SALT_CLAUDE_OAUTH, "sk-plain").unwrap(),
            ("sk-plain".to_string(), Encoding::Plain)
        );
        assert_eq!(c.decrypt(SALT_CLAUDE_OAUTH, "").unwrap().0, "");
    }

    #[test]
    fn legacy_create_decipher_values_decrypt() {
        type Enc = cbc::Encryptor<aes::Aes256>;
        let c = CrsCipher::new(KEY);
        // Build the legacy form the way Node's createCipher does.
        let mut material = Vec::new();
        let mut prev: Vec<u8> = Vec::new();
        while material.len() < 48 {
            let mut h = Md5::new();
            h.update(&prev);
            h.update(KEY.as_bytes());
            prev = h.finalize().to_vec();
            material.extend_from_slice(&prev);
        }
        let plain = b"legacy-refresh-token";
        let mut buf = vec![0u8; 32];
        buf[..plain.len()].copy_from_slice(plain);
        let ct = Enc::new_from_slices(&material[..32], &material[32..48])
            .unwrap()
            .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
            .unwrap()
            .to_vec();
        let mut c2 = CrsCipher::new(KEY);
        assert_eq!(
            c2.decrypt(SALT_CLAUDE_OAUTH, &hex::encode(ct)).unwrap(),
            ("legacy-refresh-token".to_string(), Encoding::LegacyCipher)
        );
        drop(c);
    }

    #[test]
    fn source_ids_are_stable_and_do_not_show_the_secret() {
        assert_eq!(source_id(KEY), source_id(KEY));
        assert_ne!(source_id(KEY), source_id("other"));
        assert!(!source_id(KEY).contains("CHANGE"));
    }
}
