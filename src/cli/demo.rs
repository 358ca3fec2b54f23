//! `byocd demo`: the whole product on this machine against the emulators (`crate::demo`, with
//! the `sandbox` feature). Without the feature the command is hidden and says how to get it.

use std::process::ExitCode;

/// `byocd demo [--keep-running] [--dir DIR] [--full-audit]`.
#[cfg(feature = "sandbox")]
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
#[cfg(feature = "sandbox")]
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(crate::demo::run(crate::demo::DemoOptions {
        keep_running: args.keep_running,
        dir: args.dir,
        full_audit: args.full_audit,
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// Whatever `byocd demo` was given: this build cannot run it.
#[cfg(not(feature = "sandbox"))]
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Says that this build has no demo and where to get one; exits 2, as for an unknown command.
#[cfg(not(feature = "sandbox"))]
pub fn run(_: DemoArgs) -> anyhow::Result<ExitCode> {
    eprintln!(
        "byocd: `demo` is not in this build: it was built without the `sandbox` feature (the \
         emulators), as a production build is; from a clone, `cargo run --release -- demo` \
         builds it with the feature, which is on by default"
    );
    Ok(ExitCode::from(2))
}
