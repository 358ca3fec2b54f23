//! `byocd config check`.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;

/// `byocd config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the main file and every channel file; print every problem as `file:key: message`.
    Check,
}

/// Runs `byocd config COMMAND` on the configuration at `path`.
pub fn run(path: &Path, command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Check => check(path),
    }
}

/// Validates the configuration; prints every problem (on stdout: they are the command's output)
/// and fails on any.
fn check(path: &Path) -> ExitCode {
    match crate::config::load(path) {
        Ok(config) => {
            for channel in &config.channels {
                if matches!(
                    channel.webhook_authentication(),
                    crate::config::WebhookAuthentication::None
                ) {
                    // Named as problems are: relative to the main file's directory.
                    let base = path.parent().unwrap_or(Path::new(""));
                    let file = channel.file.strip_prefix(base).unwrap_or(&channel.file);
                    println!(
                        "{}:provider.webhook_authentication: warning: \"none\": byocd accepts this channel's \
                         webhooks without credentials; only a proxy that authenticates them may reach it",
                        file.display()
                    );
                }
            }
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
