//! `byocd token status`.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

use crate::{admin, app, store::Store};

/// `byocd token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Per configured org: whether a token is stored, its age and expiry, the last mint attempt,
    /// and whether the org is paused. Never the token.
    Status,
}

/// Runs `byocd token COMMAND` with the configuration at `path`.
pub fn run(path: &Path, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Status => super::with_admin_config(path, |config| async move {
            let store = app::open_store_read_only(&config).await?;
            let text = admin::token_status(&config, &store, chrono::Utc::now()).await;
            store.close().await;
            super::print_text(&text?)?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}
