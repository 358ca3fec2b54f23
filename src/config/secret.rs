//! Secrets given by reference.
//!
//! Every secret key in the configuration ends in `_file` and names where the secret is, never the
//! secret itself. A reference is one of:
//!
//! - an absolute path: `/etc/byocd/secrets/acme.key`;
//! - a path relative to the main file's directory: `secrets/acme.key`;
//! - `cred:NAME`: the systemd credential `NAME`, i.e. `$CREDENTIALS_DIRECTORY/NAME` (set up with
//!   `LoadCredential=` or `LoadCredentialEncrypted=` in the unit).
//!
//! The file is read once, at load time, into a [`SecretString`]; surrounding white space (such as a
//! final newline) is removed. Errors name the key, the path and the operating-system error, never
//! the content.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

/// Prefix of a reference to a systemd credential.
pub const CREDENTIAL_PREFIX: &str = "cred:";

/// A secret read from the file a `*_file` key refers to.
///
/// `Debug` and `Serialize` show only the reference as written in the configuration.
#[derive(Clone)]
pub struct SecretFile {
    reference: String,
    path: PathBuf,
    value: SecretString,
}

impl SecretFile {
    /// The reference as written in the configuration (`cred:acme-key`, `secrets/acme.key`, …).
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The file the secret was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret itself.
    pub fn secret(&self) -> &SecretString {
        &self.value
    }

    /// Shortcut for `self.secret().expose_secret()`; call it only where the value is sent.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// A secret left unread (admin commands need only the database): its reference and path,
    /// an empty value.
    pub(crate) fn unread(reference: &str, path: PathBuf) -> Self {
        Self {
            reference: reference.to_owned(),
            path,
            value: SecretString::from(String::new()),
        }
    }

    /// A secret that was not read from a file (for tests and the sandbox).
    pub fn from_value(reference: &str, value: &str) -> Self {
        Self {
            reference: reference.to_owned(),
            path: PathBuf::from(reference),
            value: SecretString::from(value.to_owned()),
        }
    }
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl Serialize for SecretFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.reference)
    }
}

/// Where references are resolved.
#[derive(Debug, Clone)]
pub(crate) struct SecretDirs {
    /// The main file's directory: base of relative references.
    pub base: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`, if set.
    pub credentials: Option<PathBuf>,
    /// Leave every secret but the database password unread ([`super::load_for_admin`]).
    pub database_only: bool,
}

impl SecretDirs {
    /// Turns a reference into a path.
    pub fn resolve(&self, reference: &str) -> Result<PathBuf, String> {
        if reference.trim().is_empty() {
            return Err("is empty; give a path or `cred:NAME`".to_owned());
        }
        if let Some(name) = reference.strip_prefix(CREDENTIAL_PREFIX) {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!(
                    "`{reference}` is not a credential name (expected `cred:NAME`, NAME without `/`)"
                ));
            }
            let Some(dir) = &self.credentials else {
                return Err(format!(
                    "`{reference}` refers to a systemd credential, but $CREDENTIALS_DIRECTORY is not set \
                     (add `LoadCredential={name}:…` to the unit, or give a path)"
                ));
            };
            return Ok(dir.join(name));
        }
        let path = Path::new(reference);
        Ok(if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        })
    }

    /// Resolves a reference and reads the secret it names.
    pub fn read(&self, reference: &str) -> Result<SecretFile, String> {
        let path = self.resolve(reference)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("secret file {} is not UTF-8 text", path.display()))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        Ok(SecretFile {
            reference: reference.to_owned(),
            value: SecretString::from(trimmed.to_owned()),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(base: &Path, credentials: Option<&Path>) -> SecretDirs {
        SecretDirs {
            base: base.to_path_buf(),
            credentials: credentials.map(Path::to_path_buf),
            database_only: false,
        }
    }

    #[test]
    fn references_resolve_to_paths() {
        let d = dirs(
            Path::new("/etc/byocd"),
            Some(Path::new("/run/credentials/byocd.service")),
        );
        assert_eq!(d.resolve("/abs/key").unwrap(), Path::new("/abs/key"));
        assert_eq!(
            d.resolve("secrets/k").unwrap(),
            Path::new("/etc/byocd/secrets/k")
        );
        assert_eq!(
            d.resolve("cred:acme-key").unwrap(),
            Path::new("/run/credentials/byocd.service/acme-key")
        );
        assert!(
            d.resolve("cred:../x")
                .unwrap_err()
                .contains("not a credential name")
        );
        assert!(
            d.resolve("cred:")
                .unwrap_err()
                .contains("not a credential name")
        );
        let no_creds = dirs(Path::new("/etc/byocd"), None);
        assert!(
            no_creds
                .resolve("cred:k")
                .unwrap_err()
                .contains("CREDENTIALS_DIRECTORY")
        );
    }

    #[test]
    fn reading_trims_and_hides_the_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "s3cr3t-value\n").unwrap();
        std::fs::write(dir.path().join("empty"), " \n").unwrap();
        let d = dirs(dir.path(), None);
        let secret = d.read("k").unwrap();
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        assert_eq!(serde_json::to_value(&secret).unwrap(), "k");
        assert!(d.read("empty").unwrap_err().ends_with("is empty"));
        let missing = d.read("nope").unwrap_err();
        assert!(
            missing.contains("cannot read secret file") && missing.contains("nope"),
            "{missing}"
        );
    }
}
