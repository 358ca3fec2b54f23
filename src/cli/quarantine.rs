//! `byocd quarantine list|show`: webhook bodies that could not be read, kept verbatim.

use std::{io::Write, path::Path, process::ExitCode};

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
    /// Show one quarantined webhook: why, and its body byte for byte.
    Show {
        /// Its id, from `quarantine list`.
        id: i64,
    },
}

/// Runs `byocd quarantine COMMAND` with the configuration at `path`.
pub fn run(path: &Path, command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    super::with_config(path, |config| quarantine(config, command))
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
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        QuarantineCommand::Show { id } => {
            let Some(q) = store.quarantined_item(id).await? else {
                eprintln!("no quarantined webhook #{id}");
                return Ok(ExitCode::FAILURE);
            };
            println!("id:           {}", q.id);
            println!("received:     {}", q.received_at.to_rfc3339());
            println!("channel:      {}", q.channel);
            println!("provider:     {}", q.provider);
            println!("reason:       {}", q.reason);
            println!(
                "content type: {}",
                q.content_type.as_deref().unwrap_or("(none)")
            );
            println!("bytes:        {}", q.size);
            println!();
            let mut out = std::io::stdout().lock();
            out.write_all(&q.body)?;
            out.write_all(b"\n")?;
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
