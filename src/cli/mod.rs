//! The `byocd` command line: its arguments ([`Cli`]) and, one module per command group, what each
//! command does. `src/main.rs` parses the arguments and hands each command to its module.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Parser, Subcommand};

pub mod audit;
pub mod channels;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod explain;
pub mod forget;
pub mod keygen;
pub mod outbox;
pub mod quarantine;
pub mod sessions;
pub mod token;

/// byocd connects 8x8 Chat Apps and Kaleyra RCS end users to Salesforce reps through Bring Your
/// Own Channel, keeping its state durably in SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "byocd", version, about, long_about = None)]
pub struct Cli {
    /// The main configuration file; channel files are read from `channels.d/` beside it.
    #[arg(
        long,
        global = true,
        env = "BYOCD_CONFIG",
        default_value = "/etc/byocd/byocd.toml"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands, in the order `byocd --help` lists them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: migrate, sync the configuration, serve webhooks and health checks.
    Serve,
    /// Apply the database migrations this binary carries, then exit.
    Migrate(daemon::MigrateArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Work waiting to be delivered, delivered, or dead-lettered.
    Outbox {
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Webhook bodies that could not be read, kept verbatim.
    Quarantine {
        #[command(subcommand)]
        command: quarantine::QuarantineCommand,
    },
    /// Channels: configured and stored, active, paused or retired.
    Channels {
        #[command(subcommand)]
        command: channels::ChannelsCommand,
    },
    /// Messaging sessions: their conversation, end user, routings, work and timeline.
    Sessions {
        #[command(subcommand)]
        command: sessions::SessionsCommand,
    },
    /// Read the audit trail, oldest first (the newest `--limit` rows that match).
    Audit(audit::AuditArgs),
    /// Erase everything that identifies an end user (number, ids, messages), on one channel or
    /// all, leaving one audit row with only an opaque id.
    Forget(forget::ForgetArgs),
    /// Salesforce access tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Write a new random token-encryption key file (mode 0600).
    Keygen(keygen::KeygenArgs),
    /// Run the whole product on this machine: the daemon on a fresh SQLite directory with
    /// emulators of Salesforce, Pub/Sub, 8x8 and Kaleyra; play a conversation on each provider
    /// and print what happens (needs no configuration; nothing leaves 127.0.0.1).
    #[cfg(feature = "sandbox")]
    Demo(demo::DemoArgs),
    /// Not in this build: the demo needs the `sandbox` feature (the emulators).
    #[cfg(not(feature = "sandbox"))]
    #[command(hide = true)]
    Demo(demo::DemoArgs),
    /// Say what byocd does about an error code, and why (needs no configuration).
    Explain(explain::ExplainArgs),
    /// Check the configuration against Salesforce before any traffic: key files, token mint,
    /// the platform event over Pub/Sub, the Interaction Service, the database's TLS, the public
    /// base URL; each check PASS or FAIL with the fix. Exits 0 only when all pass.
    Doctor(doctor::DoctorArgs),
}

/// Writes human-readable output (lists, `show`s, status): control characters escaped, line feeds
/// and tabs kept, whatever stdout is — much of it was chosen by senders and providers.
pub(crate) fn print_text(text: &str) -> anyhow::Result<()> {
    write_stdout(&crate::admin::escape_controls(text, true))
}

/// Writes output in a machine format (`--format json|csv`; tables escape their own cells): as
/// it is to a pipe or a file, with control characters escaped on a terminal.
pub(crate) fn print_formatted(text: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        print_text(text)
    } else {
        write_stdout(text)
    }
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A multi-threaded async runtime for one command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the configuration, or prints every problem and returns `None`.
pub(crate) fn load_or_report(path: &Path) -> Option<crate::config::Config> {
    report(crate::config::load(path))
}

fn report(
    loaded: Result<crate::config::Config, crate::config::ConfigErrors>,
) -> Option<crate::config::Config> {
    match loaded {
        Ok(config) => Some(config),
        Err(errors) => {
            for problem in &errors.problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "byocd: configuration has {} problem(s); nothing was started",
                errors.problems.len()
            );
            None
        }
    }
}

/// Loads the configuration (or prints its problems and fails), then runs `command` on a runtime
/// of its own: what every command that reads the configuration and the database does.
pub(crate) fn with_config<F>(
    path: &Path,
    command: impl FnOnce(crate::config::Config) -> F,
) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let Some(config) = load_or_report(path) else {
        return Ok(ExitCode::FAILURE);
    };
    runtime()?.block_on(command(config))
}

/// As [`with_config`] for an admin command, which needs only the database: the configuration
/// is loaded without its secrets ([`crate::config::load_for_admin`]).
pub(crate) fn with_admin_config<F>(
    path: &Path,
    command: impl FnOnce(crate::config::Config) -> F,
) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let Some(config) = report(crate::config::load_for_admin(path)) else {
        return Ok(ExitCode::FAILURE);
    };
    runtime()?.block_on(command(config))
}
