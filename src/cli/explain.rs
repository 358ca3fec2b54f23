//! `byocd explain`: what byocd does about an error code, from the remediation table.

use std::process::ExitCode;

use crate::lifecycle::remediation;

/// `byocd explain CODE` or `byocd explain --all`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The code: an Interaction Service code (10004), an errorReason (SESSION_NOT_FOUND),
    /// http:503, 8x8:1002, kaleyra:1417, timeout, connect, reset, rate_limit, or a token
    /// endpoint error (invalid_grant, token:ERROR).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub code: Option<String>,
    /// Print the whole remediation table (Markdown), as docs/remediation.md shows it.
    #[arg(long)]
    pub all: bool,
}

/// One code, or the whole table with `--all`; a code it cannot read exits 2.
pub fn run(args: ExplainArgs) -> ExitCode {
    if args.all {
        print!("{}", remediation::render_table());
        return ExitCode::SUCCESS;
    }
    match remediation::Trigger::parse(args.code.as_deref().unwrap_or_default()) {
        Ok(trigger) => {
            print!("{}", remediation::explain(&trigger));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("byocd: {e}");
            ExitCode::from(2)
        }
    }
}
