//! The `byocd` command line: parses the arguments and hands each command to its module in
//! [`byocd::cli`]. Everything it runs lives in the library.

use std::process::ExitCode;

use byocd::cli::{self, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    let result = match command {
        Command::Serve => cli::daemon::serve(&config),
        Command::Migrate(args) => cli::daemon::migrate(&config, args),
        Command::Config { command } => Ok(cli::config::run(&config, command)),
        Command::Outbox { command } => cli::outbox::run(&config, command),
        Command::Quarantine { command } => cli::quarantine::run(&config, command),
        Command::Channels { command } => cli::channels::run(&config, command),
        Command::Sessions { command } => cli::sessions::run(&config, command),
        Command::Audit(args) => cli::audit::run(&config, args),
        Command::Forget(args) => cli::forget::run(&config, args),
        Command::Token { command } => cli::token::run(&config, command),
        Command::Keygen(args) => cli::keygen::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Explain(args) => Ok(cli::explain::run(args)),
        Command::Doctor(args) => cli::doctor::run(&config, args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("byocd: {e:#}");
        ExitCode::FAILURE
    })
}
