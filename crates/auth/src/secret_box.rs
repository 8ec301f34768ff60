//! Secrets at rest (digest passwords, connection passwords): ChaCha20-Poly1305 (RustCrypto)
//! under a 32-byte key from `UCBRIDGE_SECRET_KEY` (base64) or a key file.
//!
//! Stored form: `v1:` + base64(12-byte nonce ‖ ciphertext+tag). The owner (a userid, a
//! connection name) is the associated data, so a ciphertext copied onto another row does
//! not decrypt.

use std::path::{Path, PathBuf};

use crate::Secret;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// Environment variable holding the key (base64 of 32 bytes).
pub const SECRET_KEY_ENV: &str = "UCBRIDGE_SECRET_KEY";
/// Environment variable naming a file that holds the key (base64 of 32 bytes, or the 32
/// raw bytes).
pub const SECRET_KEY_FILE_ENV: &str = "UCBRIDGE_SECRET_KEY_FILE";

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error(
        "no secret key for secrets at rest (connection and digest passwords): set {SECRET_KEY_ENV} to the base64 of 32 random \
         bytes (e.g. `openssl rand -base64 32`), or point {SECRET_KEY_FILE_ENV} / \
         [provisioning] secret_key_file at a file holding it"
    )]
    Missing,
    #[error("the secret key {origin} is not valid: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("cannot read the secret key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the stored secret of {userid} was sealed with secret key {stored_key_id}, \
         the configured key is {key_id} (set the key that sealed it, or enter the secret again)"
    )]
    WrongKey {
        userid: String,
        stored_key_id: String,
        key_id: String,
    },
    #[error("the stored secret of {userid} cannot be opened with the configured secret key (wrong key, corrupt or tampered)")]
    Decrypt { userid: String },
}

/// The AEAD key. Debug never shows it.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
    key_id: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    /// From 32 key bytes.
    pub fn from_bytes(key: &[u8]) -> Result<SecretBox, SecretKeyError> {
        if key.len() != 32 {
            return Err(SecretKeyError::Invalid {
                origin: "given".into(),
                reason: format!("it is {} bytes long, 32 are needed", key.len()),
            });
        }
        let digest = Sha256::digest([b"ucbridge-key-id:".as_slice(), key].concat());
        let key_id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            key_id,
        })
    }

    /// From base64 text (surrounding whitespace ignored).
    pub fn from_base64(text: &str, origin: &str) -> Result<SecretBox, SecretKeyError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SecretKeyError::Invalid {
                origin: origin.to_owned(),
                reason: format!("not base64 ({e})"),
            })?;
        SecretBox::from_bytes(&bytes).map_err(|e| match e {
            SecretKeyError::Invalid { reason, .. } => SecretKeyError::Invalid {
                origin: origin.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// From a key file: base64 text, or exactly 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<SecretBox, SecretKeyError> {
        let bytes = std::fs::read(path).map_err(|source| SecretKeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.len() == 32 {
            return SecretBox::from_bytes(&bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        SecretBox::from_base64(&text, &format!("in {}", path.display()))
    }

    /// `UCBRIDGE_SECRET_KEY`, else the file in `UCBRIDGE_SECRET_KEY_FILE`, else
    /// `key_file` (from the configuration), else [`SecretKeyError::Missing`].
    pub fn from_env_or_file(key_file: Option<&Path>) -> Result<SecretBox, SecretKeyError> {
        if let Ok(text) = std::env::var(SECRET_KEY_ENV) {
            if !text.trim().is_empty() {
                return SecretBox::from_base64(&text, &format!("in {SECRET_KEY_ENV}"));
            }
        }
        if let Some(path) = std::env::var_os(SECRET_KEY_FILE_ENV) {
            return SecretBox::from_file(Path::new(&path));
        }
        match key_file {
            Some(path) => SecretBox::from_file(path),
            None => Err(SecretKeyError::Missing),
        }
    }

    /// A fresh random key, base64 (for `ucbridge devices key` style setup and tests).
    pub fn generate_key_base64() -> String {
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        B64.encode(key)
    }

    /// Fingerprint of the key (first 6 bytes of a SHA-256), stored beside ciphertexts.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Encrypt `password` for `userid`.
    pub fn seal(&self, userid: &str, password: &Secret) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: password.expose().as_bytes(),
                    aad: userid.as_bytes(),
                },
            )
            // Encryption fails only for plaintexts beyond ChaCha20's 256 GiB limit.
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{}", B64.encode(out))
    }

    /// Decrypt what [`SecretBox::seal`] produced for `userid`.
    pub fn open(
        &self,
        userid: &str,
        sealed: &str,
        stored_key_id: &str,
    ) -> Result<Secret, SecretKeyError> {
        if stored_key_id != self.key_id {
            return Err(SecretKeyError::WrongKey {
                userid: userid.to_owned(),
                stored_key_id: stored_key_id.to_owned(),
                key_id: self.key_id.clone(),
            });
        }
        let decrypt = SecretKeyError::Decrypt {
            userid: userid.to_owned(),
        };
        let bytes = sealed
            .strip_prefix("v1:")
            .and_then(|b| B64.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(|| SecretKeyError::Decrypt {
                userid: userid.to_owned(),
            })?;
        let (nonce, body) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: userid.as_bytes(),
                },
            )
            .map_err(|_| decrypt)?;
        let text = String::from_utf8(plain).map_err(|_| SecretKeyError::Decrypt {
            userid: userid.to_owned(),
        })?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_the_owner() {
        let key = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
        let pw = Secret::new("s3cret-Value".to_owned());
        let sealed = key.seal("alice", &pw);
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains(pw.expose()));
        let opened = key.open("alice", &sealed, key.key_id()).unwrap();
        assert_eq!(opened.expose(), pw.expose());
        // Another owner's row, or another key: refused.
        assert!(matches!(
            key.open("bob", &sealed, key.key_id()),
            Err(SecretKeyError::Decrypt { .. })
        ));
        let other = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
        assert!(matches!(
            other.open("alice", &sealed, key.key_id()),
            Err(SecretKeyError::WrongKey { .. })
        ));
        // Debug never prints the key.
        assert!(!format!("{key:?}").contains("cipher"));
    }

    #[test]
    fn bad_keys_are_named() {
        let err = SecretBox::from_base64("c2hvcnQ=", "in UCBRIDGE_SECRET_KEY").unwrap_err();
        assert!(err.to_string().contains("32 are needed"), "{err}");
        assert!(err.to_string().contains("UCBRIDGE_SECRET_KEY"), "{err}");
        assert!(SecretKeyError::Missing
            .to_string()
            .contains("UCBRIDGE_SECRET_KEY"));
    }
}
