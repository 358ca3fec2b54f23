//! `byocd keygen`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;

use crate::crypto::TokenKey;

/// `byocd keygen --out PATH`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key; an existing file is never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes a new random token-encryption key file (mode 0600).
pub fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let out = args.out;
    let key = TokenKey::generate_file(&out)
        .with_context(|| format!("cannot write a key to {}", out.display()))?;
    println!(
        "wrote token key {} to {} (mode 0600); point security.token_key_file at it",
        key.id(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
