//! `byocd forget --end-user ID [--channel NAME]`: erases everything that identifies an end user
//! (docs/security.md), in one transaction, leaving one audit row that names only byocd's opaque
//! end-user id.

use std::{path::Path, process::ExitCode};

use clap::Args;

use crate::{
    app, config,
    domain::privacy,
    store::{Erasure, Store},
};

/// `byocd forget …`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The end user: their E.164 number (`+447700900123`; without the `+` is accepted) or their
    /// provider user id (a WhatsApp BSUID).
    #[arg(long = "end-user", value_name = "ID")]
    pub end_user: String,
    /// Only on this channel; by default on every channel.
    #[arg(long)]
    pub channel: Option<String>,
}

/// Runs `byocd forget` with the configuration at `path`.
pub fn run(path: &Path, args: ForgetArgs) -> anyhow::Result<ExitCode> {
    super::with_config(path, |config| forget(config, args))
}

async fn forget(config: config::Config, args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let store = app::open_store_for_admin(&config).await?;
    let channel = args.channel.as_deref();
    let actor = format!(
        "admin:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    );
    let erasure = store
        .erase_end_users(
            &privacy::forget_identifiers(&args.end_user),
            channel,
            &privacy::quarantine_needles,
            &|e| privacy::forgotten_entry(e, channel, &actor),
        )
        .await;
    store.close().await;
    let erasure = erasure?;
    let scope = channel.map_or("on any channel".to_owned(), |c| format!("on channel {c}"));
    if erasure.end_user_ids.is_empty() {
        eprintln!(
            "byocd: no end user known as {} {scope}; nothing changed",
            args.end_user
        );
        return Ok(ExitCode::FAILURE);
    }
    print!("{}", render(&args.end_user, &scope, &erasure));
    Ok(ExitCode::SUCCESS)
}

/// What `byocd forget` prints after an erasure.
pub fn render(given: &str, scope: &str, e: &Erasure) -> String {
    let mut out = format!("forgot the end user {given} {scope}:\n");
    for (what, n) in [
        ("end users", e.end_users),
        ("conversations", e.conversations),
        ("sessions", e.sessions),
        ("routings", e.routings),
        ("outbox rows", e.outbox),
        ("message ids", e.message_map),
        ("quarantined bodies", e.quarantine),
    ] {
        out.push_str(&format!("  {what:<20} {n} deleted\n"));
    }
    let ids: Vec<String> = e.end_user_ids.iter().map(|id| id.to_string()).collect();
    out.push_str(&format!(
        "audit row #{} (end_user.forgotten) names only the internal id(s) {}\n",
        e.audit_id.unwrap_or_default(),
        ids.join(", ")
    ));
    if e.audit_mentions > 0 {
        out.push_str(&format!(
            "note: {} older audit row(s) still contain the identifier: they were written before \
             audit rows stopped naming end users, and the audit trail is append-only \
             (docs/security.md)\n",
            e.audit_mentions
        ));
    }
    out
}
