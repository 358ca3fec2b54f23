//! `byocd audit`: the audit trail, filtered; `byocd audit verify` checks its hash chain and
//! `byocd audit head` prints the chain's head to record elsewhere (docs/audit.md).

use std::{path::Path, process::ExitCode};

use chrono::{DateTime, Utc};

use crate::{
    admin::{self, Format},
    app, config,
    domain::audit_chain::{self, Anchor},
    store::{AuditFilter, Store},
};

/// `byocd audit [FILTERS]` (its help text is the one on `Command::Audit`), or one of its
/// subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// Check or anchor the trail's hash chain instead of listing rows.
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// Only rows about this session (its byocd id, from `sessions list`).
    #[arg(long)]
    pub session: Option<uuid::Uuid>,
    /// Only rows about this conversation.
    #[arg(long)]
    pub conversation: Option<uuid::Uuid>,
    /// Only rows about this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only rows about this org (15-character id).
    #[arg(long)]
    pub org: Option<String>,
    /// Only this kind, or the kinds under it: `token` matches `token.minted` and
    /// `token.mint_failed`.
    #[arg(long)]
    pub kind: Option<String>,
    /// Rows at or after this time: RFC 3339 (2026-11-21T10:00:00Z) or a date (2026-11-21,
    /// from its midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = admin::parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Rows before this time: RFC 3339, or a date (2026-11-21: up to the end of that day UTC).
    #[arg(long, value_name = "TIME", value_parser = admin::parse_until)]
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows (the newest of those that match).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// table (aligned columns), json (JSON Lines: one object per line) or csv (RFC 4180,
    /// header row).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// What `byocd audit` does besides listing rows.
#[derive(Debug, clap::Subcommand)]
pub enum AuditAction {
    /// Check the audit trail's hash chain (reads the database only): prints OK with the rows
    /// sealed and not yet sealed and the chain's head, or names the first broken row and exits
    /// with status 1.
    Verify {
        /// A head recorded earlier (`HASH@ID`, as `verify` and `head` print it): also check that
        /// the chain still holds it, which catches rows cut from the end and a chain rewritten
        /// whole.
        #[arg(long, value_name = "HASH@ID")]
        expect_head: Option<Anchor>,
    },
    /// Print the chain's head as HASH@ID, to record outside the database.
    Head,
}

/// Runs `byocd audit …` with the configuration at `path`.
pub fn run(path: &Path, args: AuditArgs) -> anyhow::Result<ExitCode> {
    if let Some(action) = args.action {
        return super::with_admin_config(path, |config| chain(config, action));
    }
    let filter = AuditFilter {
        kind: args.kind,
        org_id: args.org,
        channel: args.channel,
        conversation_id: args.conversation,
        session_id: args.session,
        since: args.since,
        until: args.until,
        limit: args.limit,
    };
    super::with_admin_config(path, |config| audit(config, filter, args.format))
}

async fn audit(
    config: config::Config,
    filter: AuditFilter,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let store = app::open_store_read_only(&config).await?;
    let result = async {
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            anyhow::bail!(
                "--since {} is not before --until {}: no row can match",
                since.to_rfc3339(),
                until.to_rfc3339()
            );
        }
        if let Some(channel) = &filter.channel {
            admin::check_channel(&config, &store, channel).await?;
        }
        if let Some(id) = filter.session_id
            && store.session(id).await?.is_none()
        {
            anyhow::bail!(
                "--session {id}: no such session (`byocd sessions list` shows their ids)"
            );
        }
        if let Some(id) = filter.conversation_id
            && store.conversation_context(id).await?.is_none()
        {
            anyhow::bail!("--conversation {id}: no such conversation");
        }
        let rows = store.audit(&filter).await?;
        let text = admin::render_audit(&rows, format)?;
        super::print_formatted(&text)?;
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

async fn chain(config: config::Config, action: AuditAction) -> anyhow::Result<ExitCode> {
    let store = app::open_store_read_only(&config).await?;
    let result = async {
        match action {
            AuditAction::Head => {
                match store.audit_chain_head().await? {
                    Some(head) => super::print_text(&format!("{}@{}\n", head.hash, head.audit_id))?,
                    None => super::print_text("no audit row is sealed yet\n")?,
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditAction::Verify { expect_head } => {
                let verification = audit_chain::verify(&store, expect_head).await?;
                super::print_text(&render_verification(&verification))?;
                Ok(if verification.broken.is_some() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    }
    .await;
    store.close().await;
    result
}

/// What `byocd audit verify` prints.
pub fn render_verification(v: &audit_chain::Verification) -> String {
    match &v.broken {
        Some(broken) => format!(
            "audit trail BROKEN at row {}: {}\nrows verified before it: {}\n",
            broken.id,
            broken.breach.explain(),
            v.sealed
        ),
        None => {
            let mut out = format!(
                "audit trail OK: {} rows sealed and verified, {} not sealed yet\n",
                v.sealed, v.unsealed
            );
            match v.anchor() {
                Some(anchor) => out.push_str(&format!(
                    "head: {anchor}\n(record it outside the database; `byocd audit verify \
                     --expect-head {anchor}` later checks the chain still holds it)\n"
                )),
                None => out.push_str("head: none (no row is sealed yet)\n"),
            }
            out
        }
    }
}
