//! `byocd channels list`.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

use crate::{admin, app, store::Store};

/// `byocd channels …`.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Every channel of the configuration files and of the database (retired ones too), with its
    /// provider, org and state; a paused channel with why and its next probe.
    List,
}

/// Runs `byocd channels COMMAND` with the configuration at `path`.
pub fn run(path: &Path, command: ChannelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChannelsCommand::List => super::with_admin_config(path, |config| async move {
            let store = app::open_store_read_only(&config).await?;
            let text = admin::channels_list(&config, &store, chrono::Utc::now()).await;
            store.close().await;
            super::print_text(&text?)?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}
