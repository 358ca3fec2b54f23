//! Configuration: typed, layered, validated in one pass.
//!
//! Layers, later wins:
//!
//! 1. the commented defaults `config/byocd.toml`, embedded in the binary ([`DEFAULTS`]);
//! 2. the main file (`--config PATH`, default [`DEFAULT_MAIN_FILE`]);
//! 3. `BYOCD__SECTION__KEY` environment variables, for the main file's settings (not orgs);
//! 4. one TOML file per channel in `channels_dir` (default `channels.d/` beside the main file).
//!
//! Secrets are given only by reference (`*_file` keys: a path or `cred:NAME` for a systemd
//! credential) and read at load time; see [`secret`]. [`load`] reports every problem it finds as
//! `file:key: message`, not just the first one. `docs/configuration.md` describes every key.

mod duration;
mod load;
mod model;
mod net;
mod raw;
pub mod secret;
mod tree;
mod validate;

use std::{fmt, path::Path};

pub use duration::{format_duration, parse_duration};
pub use load::{ENV_PREFIX, ENV_SEPARATOR};
pub use model::*;
pub use net::{IpNetwork, check_endpoint_url};
pub use secret::SecretFile;
pub use validate::*;

/// The commented defaults, as shipped in `config/byocd.toml`.
pub const DEFAULTS: &str = include_str!("../../config/byocd.toml");

/// Where the main file is unless `--config` says otherwise.
pub const DEFAULT_MAIN_FILE: &str = "/etc/byocd/byocd.toml";

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The main file as given, `channels.d/<name>.toml` for a channel file, or
    /// `env:BYOCD__SECTION__KEY` for an environment override.
    pub file: String,
    /// Dotted key path (`provider.sub_account_id`, `orgs[0].org_id`), `line:column` for a TOML
    /// syntax error, or empty for a problem with the whole file.
    pub key: String,
    /// What is wrong, and where possible what to do about it.
    pub message: String,
}

impl Problem {
    fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            key: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found by [`load`], sorted by file, then key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems; never empty.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    fn new(mut problems: Vec<Problem>) -> Self {
        problems.sort_by(|a, b| (&a.file, &a.key).cmp(&(&b.file, &b.key)));
        problems.dedup();
        Self { problems }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates the configuration whose main file is `main_file`, with overrides from the
/// process environment.
pub fn load(main_file: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(main_file, &process_env())
}

fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// [`load`] for the admin commands, which need only the database: every secret but
/// `database.password_file` is left unread (its value empty; `security.token_key_file` is read
/// if it can be, to name the key), and problems about them are not reported. So an operator
/// can run `sudo -u byocd byocd outbox list` without the daemon's systemd credentials (`cred:`)
/// or read access to its provider keys. Never start the daemon or call a service with it.
pub fn load_for_admin(main_file: &Path) -> Result<Config, ConfigErrors> {
    load::load_with_env(main_file, &process_env(), true)
}

/// [`load`] with an explicit environment instead of the process's (`BYOCD__…` overrides,
/// `STATE_DIRECTORY`, `CREDENTIALS_DIRECTORY`); what tests call.
pub fn load_with_env(main_file: &Path, env: &[(String, String)]) -> Result<Config, ConfigErrors> {
    load::load_with_env(main_file, env, false)
}

/// [`load_for_admin`] with an explicit environment (tests).
pub fn load_for_admin_with_env(
    main_file: &Path,
    env: &[(String, String)],
) -> Result<Config, ConfigErrors> {
    load::load_with_env(main_file, env, true)
}
