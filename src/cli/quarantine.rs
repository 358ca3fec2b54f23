//! `byocd quarantine list|show`: webhook bodies that could not be read, kept verbatim.

use std::{io::Write, path::Path, process::ExitCode};

use anyhow::Context;
use clap::Subcommand;

use crate::{
    admin::{self, Format},
    app, config,
    store::Store,
};

/// `byocd quarantine …`.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined webhooks, newest first.
    List {
        /// Only this channel's.
        #[arg(long)]
        channel: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// table (aligned columns), json (JSON Lines: one object per line) or csv (RFC 4180,
        /// header row). None of them shows the bodies: `quarantine show ID` does.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one quarantined webhook: why, and its body, with control characters (escape
    /// sequences) escaped and bytes that are not UTF-8 as \xNN; `--raw FILE` writes the body
    /// byte for byte to FILE instead.
    Show {
        /// Its id, from `quarantine list`.
        id: i64,
        /// Write the exact body to this file (created with mode 0600; an existing file is
        /// refused) instead of showing it.
        #[arg(long, value_name = "FILE")]
        raw: Option<std::path::PathBuf>,
    },
}

/// Runs `byocd quarantine COMMAND` with the configuration at `path`.
pub fn run(path: &Path, command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    super::with_admin_config(path, |config| quarantine(config, command))
}

async fn quarantine(
    config: config::Config,
    command: QuarantineCommand,
) -> anyhow::Result<ExitCode> {
    let store = app::open_store_read_only(&config).await?;
    match command {
        QuarantineCommand::List {
            channel,
            limit,
            format,
        } => {
            let items = store.quarantined(channel.as_deref(), limit).await?;
            let text = admin::render_quarantined(&items, format)?;
            super::print_formatted(&text)?;
        }
        QuarantineCommand::Show { id, raw } => {
            let Some(q) = store.quarantined_item(id).await? else {
                eprintln!("no quarantined webhook #{id}");
                return Ok(ExitCode::FAILURE);
            };
            let field = |text: &str| admin::escape_controls(text, false).into_owned();
            let mut text = format!(
                "id:           {}\nreceived:     {}\nchannel:      {}\nprovider:     {}\n\
                 reason:       {}\ncontent type: {}\nbytes:        {}\n",
                q.id,
                q.received_at.to_rfc3339(),
                field(&q.channel),
                field(&q.provider),
                field(&q.reason),
                field(q.content_type.as_deref().unwrap_or("(none)")),
                q.size,
            );
            match raw {
                Some(path) => {
                    write_new_private(&path, &q.body)
                        .with_context(|| format!("--raw {}", path.display()))?;
                    text.push_str(&format!("body:         written to {}\n", path.display()));
                }
                None => {
                    text.push('\n');
                    text.push_str(&admin::escape_bytes(&q.body));
                    text.push('\n');
                }
            }
            super::print_text(&text)?;
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (refusing an existing file) readable by its owner only, and writes `bytes`.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
