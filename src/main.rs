//! The `byocd` command line. Everything it runs lives in the library.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use byocd::{
    app, config,
    crypto::TokenKey,
    store::{Store, redact_url},
};
use clap::{Parser, Subcommand};

/// byocd connects 8x8 Chat Apps and Kaleyra RCS end users to Salesforce reps through Bring Your
/// Own Channel, keeping its state durably in SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "byocd", version, about, long_about = None)]
struct Cli {
    /// The main configuration file; channel files are read from `channels.d/` beside it.
    #[arg(
        long,
        global = true,
        env = "BYOCD_CONFIG",
        default_value = "/etc/byocd/byocd.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: migrate, sync the configuration, serve webhooks and health checks.
    Serve,
    /// Apply the database migrations this binary carries, then exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write a new random token-encryption key file (mode 0600).
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the main file and every channel file; print every problem as `file:key: message`.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("byocd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => Ok(config_check(&cli.config)),
        Command::Keygen { out } => {
            let key = TokenKey::generate_file(&out)
                .with_context(|| format!("cannot write a key to {}", out.display()))?;
            println!(
                "wrote token key {} to {} (mode 0600); point security.token_key_file at it",
                key.id(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(migrate(config))
        }
        Command::Serve => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            if let Some(warning) = byocd::telemetry::init(&config.log.level, config.log.format) {
                tracing::warn!("{warning}");
            }
            runtime()?.block_on(serve(config))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the configuration, or prints every problem and returns `None`.
fn load_or_report(path: &std::path::Path) -> Option<config::Config> {
    match config::load(path) {
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

fn config_check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!(
                "{}: OK ({} org(s), {} channel(s), content hash {})",
                path.display(),
                config.orgs.len(),
                config.channels.len(),
                &config.content_hash[..12.min(config.content_hash.len())]
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for problem in &errors.problems {
                println!("{problem}");
            }
            eprintln!("{} problem(s) found", errors.problems.len());
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: config::Config) -> anyhow::Result<ExitCode> {
    let url = redact_url(&config.database_url());
    let store = app::open_store(&config)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let applied = store.migrate().await?;
    let status = store.schema_status().await?;
    if applied.is_empty() {
        println!(
            "{url}: schema is current (version {}); nothing to do",
            status.expected
        );
    } else {
        for migration in &applied {
            println!(
                "{url}: applied migration {} ({})",
                migration.version, migration.description
            );
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: config::Config) -> anyhow::Result<ExitCode> {
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    app::run(config, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
