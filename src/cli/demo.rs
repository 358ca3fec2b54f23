//! `byocd demo`: the whole product on this machine against the emulators (`crate::demo`).

use std::process::ExitCode;

/// `byocd demo [--keep-running] [--dir DIR] [--full-audit]`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stay up afterwards and print curl commands for your own webhooks and rep actions.
    #[arg(long)]
    pub keep_running: bool,
    /// Put the configuration and the state here (must be empty or absent) instead of a new
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print every audit row at the end, not only the ones that are not routine.
    #[arg(long)]
    pub full_audit: bool,
}

/// Runs the demo; a step that did not happen fails it.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(crate::demo::run(crate::demo::DemoOptions {
        keep_running: args.keep_running,
        dir: args.dir,
        full_audit: args.full_audit,
    }))?;
    Ok(ExitCode::SUCCESS)
}
