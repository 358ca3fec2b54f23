//! `byocd outbox list|show|retry|discard`: work waiting, delivered or dead-lettered.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

use crate::{
    admin, app, config,
    store::{OutboxFilter, Store},
};

/// `byocd outbox …`.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List outbox rows, newest first.
    List {
        /// Only rows in this status: pending, leased, done, dead, discarded.
        #[arg(long)]
        status: Option<String>,
        /// Only this channel's rows.
        #[arg(long)]
        channel: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one row: what it carries and its last error.
    Show {
        /// Its id.
        id: i64,
    },
    /// Send a dead or discarded row again, now.
    Retry {
        /// Its id.
        id: i64,
    },
    /// Give up on a pending or dead row.
    Discard {
        /// Its id.
        id: i64,
    },
}

/// Runs `byocd outbox COMMAND` with the configuration at `path`.
pub fn run(path: &Path, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    super::with_admin_config(path, |config| outbox(config, command))
}

async fn outbox(config: config::Config, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let store = match command {
        OutboxCommand::Retry { .. } | OutboxCommand::Discard { .. } => {
            app::open_store_for_admin(&config).await?
        }
        _ => app::open_store_read_only(&config).await?,
    };
    let actor = format!(
        "admin:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    );
    let code = match command {
        OutboxCommand::List {
            status,
            channel,
            limit,
        } => {
            let rows = store
                .outbox(&OutboxFilter {
                    status,
                    channel,
                    session_id: None,
                    limit,
                })
                .await?;
            if rows.is_empty() {
                println!("no outbox rows");
            } else {
                println!(
                    "{:>8}  {:<9}  {:<22}  {:<20}  {:>3}  {:<24}  LAST ERROR",
                    "ID", "STATUS", "KIND", "CHANNEL", "TRY", "NEXT ATTEMPT"
                );
                let cell = |text: &str| admin::escape_controls(text, false).into_owned();
                for r in rows {
                    println!(
                        "{:>8}  {:<9}  {:<22}  {:<20}  {:>3}  {:<24}  {}",
                        r.id,
                        cell(&r.status),
                        cell(&r.kind),
                        cell(&r.channel),
                        r.attempts,
                        r.next_attempt_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        cell(r.last_error.as_deref().unwrap_or(""))
                    );
                }
            }
            ExitCode::SUCCESS
        }
        OutboxCommand::Show { id } => match store.outbox_item(id).await? {
            Some(r) => {
                println!("{}", admin::json_safe(&serde_json::to_string_pretty(&r)?));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no outbox row #{id}");
                ExitCode::FAILURE
            }
        },
        OutboxCommand::Retry { id } => {
            if store.requeue_outbox(id, &actor).await? {
                println!("outbox row #{id} will be sent again now");
                ExitCode::SUCCESS
            } else {
                eprintln!("outbox row #{id} does not exist or is not dead or discarded");
                ExitCode::FAILURE
            }
        }
        OutboxCommand::Discard { id } => {
            if store.discard_outbox(id, &actor).await? {
                println!("outbox row #{id} discarded");
                ExitCode::SUCCESS
            } else {
                eprintln!("outbox row #{id} does not exist or is not pending or dead");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}
