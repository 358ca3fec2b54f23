//! Encryption of secrets at rest (OAuth access tokens in the state database).
//!
//! Tokens are sealed with XChaCha20-Poly1305 under a 32-byte key that lives in a key file (or a
//! systemd credential), never in the database. A sealed value is
//! `v1:<key id>:<base64(nonce || ciphertext)>`:
//!
//! - the 24-byte nonce is random per seal, which is safe for XChaCha20 at any volume we will see;
//! - the key id (the first 8 hex digits of SHA-256 of the key) lets a later key rotation tell which
//!   key sealed a row;
//! - the associated data names where the value belongs (for tokens: `oauth_tokens|<org id>`), so a
//!   ciphertext copied to another row does not open.

use std::{fmt, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

/// Length of a token key in bytes.
pub const KEY_LEN: usize = 32;
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file's content is not a base64 encoding of 32 bytes.
    #[error("token key must be 32 bytes encoded in base64 (as `byocd keygen` writes it): {0}")]
    BadKey(String),
    /// The sealed value was written under another key.
    #[error("sealed with key {found}, but the configured token key is {expected}")]
    WrongKey {
        /// Key id found in the sealed value.
        found: String,
        /// Key id of the configured key.
        expected: String,
    },
    /// The sealed value is damaged, or belongs to another row.
    #[error("sealed value cannot be opened: it is damaged or belongs to another record")]
    Corrupt,
    /// An I/O error while reading or writing a key file.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The key that seals tokens at rest. `Debug` shows only its id.
pub struct TokenKey {
    key: SecretBox<[u8; KEY_LEN]>,
    id: String,
}

impl TokenKey {
    /// Parses the content of a key file: base64 of 32 bytes, surrounding white space ignored.
    pub fn from_file_contents(text: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| CryptoError::BadKey(format!("not base64 ({e})")))?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadKey(format!("decodes to {} bytes", bytes.len())))?;
        Ok(Self::from_bytes(key))
    }

    /// Reads and parses a key file.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(|source| CryptoError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_file_contents(&text)
    }

    fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(key);
        let id = hex::encode(&digest[..4]);
        Self {
            key: SecretBox::new(Box::new(key)),
            id,
        }
    }

    /// A separate 32-byte key for another purpose (`label`), derived from this one, so one key
    /// file serves both without reusing the key itself.
    pub fn derive(&self, label: &str) -> SecretBox<[u8; KEY_LEN]> {
        let mut hasher = Sha256::new();
        hasher.update(b"byocd-derive-v1\0");
        hasher.update(label.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.key.expose_secret());
        SecretBox::new(Box::new(hasher.finalize().into()))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Self::from_bytes(key.into())
    }

    /// The key's id: the first 8 hex digits of its SHA-256. Safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key file content for this key (base64 and a newline).
    pub fn to_file_contents(&self) -> SecretString {
        SecretString::from(format!("{}\n", STANDARD.encode(self.key.expose_secret())))
    }

    /// Writes a new random key to `path` with mode 0600; refuses to overwrite an existing file.
    pub fn generate_file(path: &Path) -> Result<Self, CryptoError> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| CryptoError::Io {
            path: path.display().to_string(),
            source,
        };
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(key.to_file_contents().expose_secret().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.expose_secret().into())
    }

    /// Seals `plaintext`, bound to `context` (the record it belongs to).
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{VERSION}:{}:{}", self.id, STANDARD.encode(blob))
    }

    /// Opens a value sealed by [`TokenKey::seal`] for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, CryptoError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Corrupt);
        };
        if id != self.id {
            return Err(CryptoError::WrongKey {
                found: id.to_owned(),
                expected: self.id.clone(),
            });
        }
        let blob = STANDARD.decode(body).map_err(|_| CryptoError::Corrupt)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Corrupt)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let key = TokenKey::generate();
        let sealed = key.seal(
            "00D000000000001!secret-token",
            "oauth_tokens|00D000000000001",
        );
        assert!(!sealed.contains("secret-token"));
        let opened = key.open(&sealed, "oauth_tokens|00D000000000001").unwrap();
        assert_eq!(opened.expose_secret(), "00D000000000001!secret-token");
    }

    #[test]
    fn a_value_moved_to_another_record_does_not_open() {
        let key = TokenKey::generate();
        let sealed = key.seal("tok", "oauth_tokens|00D000000000001");
        assert!(matches!(
            key.open(&sealed, "oauth_tokens|00D000000000002"),
            Err(CryptoError::Corrupt)
        ));
    }

    #[test]
    fn another_key_is_named_not_guessed() {
        let a = TokenKey::generate();
        let b = TokenKey::generate();
        let sealed = a.seal("tok", "ctx");
        let err = b.open(&sealed, "ctx").unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn key_file_contents_round_trip_and_bad_keys_are_explained() {
        let key = TokenKey::generate();
        let text = key.to_file_contents();
        let again = TokenKey::from_file_contents(text.expose_secret()).unwrap();
        assert_eq!(again.id(), key.id());
        let err = TokenKey::from_file_contents("c2hvcnQ=")
            .unwrap_err()
            .to_string();
        assert!(err.contains("decodes to 5 bytes"), "{err}");
        assert!(format!("{key:?}").contains(key.id()));
        assert!(!format!("{key:?}").contains(text.expose_secret().trim()));
    }

    #[test]
    fn generated_key_file_is_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let key = TokenKey::generate_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(TokenKey::from_file(&path).unwrap().id(), key.id());
        assert!(TokenKey::generate_file(&path).is_err());
    }
}
