//! `byocd sessions list|show`.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

use crate::{
    admin::{self, SessionKey},
    app, config,
    store::{SessionFilter, Store},
};

/// `byocd sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, most recently active first.
    List {
        /// Only this channel's.
        #[arg(long)]
        channel: Option<String>,
        /// Only sessions in this status.
        #[arg(long, value_parser = ["active", "inactive", "ended"])]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Show one session: its conversation and end user, routings, outbox rows and timeline.
    Show {
        /// byocd's session id (from `sessions list`), or Salesforce's MessagingSession id, which
        /// is the session's work item id (15 characters, or the 18-character form).
        #[arg(value_parser = admin::parse_session_key)]
        id: SessionKey,
    },
}

/// Runs `byocd sessions COMMAND` with the configuration at `path`.
pub fn run(path: &Path, command: SessionsCommand) -> anyhow::Result<ExitCode> {
    super::with_admin_config(path, |config| sessions(config, command))
}

async fn sessions(config: config::Config, command: SessionsCommand) -> anyhow::Result<ExitCode> {
    let store = app::open_store_read_only(&config).await?;
    let result = async {
        match command {
            SessionsCommand::List {
                channel,
                status,
                limit,
            } => {
                if let Some(channel) = &channel {
                    admin::check_channel(&config, &store, channel).await?;
                }
                let filter = SessionFilter {
                    channel,
                    status,
                    limit,
                };
                super::print_text(&admin::sessions_list(&store, &filter).await?)?;
                Ok(ExitCode::SUCCESS)
            }
            SessionsCommand::Show { id: key } => {
                let found = match admin::find_session(&store, &key).await? {
                    Some(id) => admin::session_show(&store, id).await?,
                    None => None,
                };
                match (found, &key) {
                    (Some(text), _) => {
                        super::print_text(&text)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    (None, SessionKey::Byocd(_)) => {
                        anyhow::bail!("no session {key} (`byocd sessions list` shows their ids)")
                    }
                    (None, SessionKey::WorkItem { .. }) => anyhow::bail!(
                        "no session has the MessagingSession (work item) id {key} \
                         (`byocd sessions list` shows byocd's ids)"
                    ),
                }
            }
        }
    }
    .await;
    store.close().await;
    result
}
