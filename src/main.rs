//! The `byocd` command line. Everything it runs lives in the library.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use byocd::{
    app, config,
    crypto::TokenKey,
    store::{Store, redact_url},
};
use clap::{Parser, Subcommand};

/// byocd connects 8x8 Chat Apps and Kaleyra RCS end users to Salesforce reps through Bring Your
/// Own Channel, keeping its state durably in SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "byocd", version, about, long_about = None)]
struct Cli {
    /// The main configuration file; channel files are read from `channels.d/` beside it.
    #[arg(
        long,
        global = true,
        env = "BYOCD_CONFIG",
        default_value = "/etc/byocd/byocd.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: migrate, sync the configuration, serve webhooks and health checks.
    Serve,
    /// Apply the database migrations this binary carries, then exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work waiting to be delivered, delivered, or dead-lettered.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Webhook bodies that could not be read, kept verbatim.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Channels: configured and stored, active, paused or retired.
    Channels {
        #[command(subcommand)]
        command: ChannelsCommand,
    },
    /// Messaging sessions: their conversation, end user, routings, work and timeline.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Read the audit trail, oldest first (the newest `--limit` rows that match).
    Audit {
        /// Only rows about this session (its byocd id, from `sessions list`).
        #[arg(long)]
        session: Option<uuid::Uuid>,
        /// Only rows about this conversation.
        #[arg(long)]
        conversation: Option<uuid::Uuid>,
        /// Only rows about this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Only rows about this org (15-character id).
        #[arg(long)]
        org: Option<String>,
        /// Only this kind, or the kinds under it: `token` matches `token.minted` and
        /// `token.mint_failed`.
        #[arg(long)]
        kind: Option<String>,
        /// Rows at or after this time: RFC 3339 (2026-11-21T10:00:00Z) or a date (2026-11-21,
        /// from its midnight UTC).
        #[arg(long, value_name = "TIME", value_parser = byocd::admin::parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Rows before this time: RFC 3339, or a date (2026-11-21: up to the end of that day UTC).
        #[arg(long, value_name = "TIME", value_parser = byocd::admin::parse_until)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many rows (the newest of those that match).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// table (aligned columns), json (JSON Lines: one object per line) or csv (RFC 4180,
        /// header row).
        #[arg(long, value_enum, default_value_t = byocd::admin::Format::Table)]
        format: byocd::admin::Format,
    },
    /// Salesforce access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Write a new random token-encryption key file (mode 0600).
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the whole product on this machine: the daemon on a fresh SQLite directory with
    /// emulators of Salesforce, Pub/Sub, 8x8 and Kaleyra; play a conversation on each provider
    /// and print what happens (needs no configuration; nothing leaves 127.0.0.1).
    Demo {
        /// Stay up afterwards and print curl commands for your own webhooks and rep actions.
        #[arg(long)]
        keep_running: bool,
        /// Put the configuration and the state here (must be empty or absent) instead of a new
        /// temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print every audit row at the end, not only the ones that are not routine.
        #[arg(long)]
        full_audit: bool,
    },
    /// Say what byocd does about an error code, and why (needs no configuration).
    Explain {
        /// The code: an Interaction Service code (10004), an errorReason (SESSION_NOT_FOUND),
        /// http:503, 8x8:1002, kaleyra:1417, timeout, connect, reset, rate_limit, or a token
        /// endpoint error (invalid_grant, token:ERROR).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        code: Option<String>,
        /// Print the whole remediation table (Markdown), as docs/remediation.md shows it.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the main file and every channel file; print every problem as `file:key: message`.
    Check,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List outbox rows, newest first.
    List {
        /// Only rows in this status: pending, leased, done, dead, discarded.
        #[arg(long)]
        status: Option<String>,
        /// Only this channel's rows.
        #[arg(long)]
        channel: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one row: what it carries and its last error.
    Show {
        /// Its id.
        id: i64,
    },
    /// Send a dead or discarded row again, now.
    Retry {
        /// Its id.
        id: i64,
    },
    /// Give up on a pending or dead row.
    Discard {
        /// Its id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Every channel of the configuration files and of the database (retired ones too), with its
    /// provider, org and state; a paused channel with why and its next probe.
    List,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
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
        #[arg(value_parser = byocd::admin::parse_session_key)]
        id: byocd::admin::SessionKey,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Per configured org: whether a token is stored, its age and expiry, the last mint attempt,
    /// and whether the org is paused. Never the token.
    Status,
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// List quarantined webhooks, newest first.
    List {
        /// Only this channel's.
        #[arg(long)]
        channel: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// table (aligned columns), json (JSON Lines: one object per line) or csv (RFC 4180,
        /// header row). None of them shows the bodies: `quarantine show ID` does.
        #[arg(long, value_enum, default_value_t = byocd::admin::Format::Table)]
        format: byocd::admin::Format,
    },
    /// Show one quarantined webhook: why, and its body byte for byte.
    Show {
        /// Its id, from `quarantine list`.
        id: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("byocd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => Ok(config_check(&cli.config)),
        Command::Explain { code, all } => Ok(explain(code.as_deref(), all)),
        Command::Demo {
            keep_running,
            dir,
            full_audit,
        } => {
            runtime()?.block_on(byocd::demo::run(byocd::demo::DemoOptions {
                keep_running,
                dir,
                full_audit,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => {
            let key = TokenKey::generate_file(&out)
                .with_context(|| format!("cannot write a key to {}", out.display()))?;
            println!(
                "wrote token key {} to {} (mode 0600); point security.token_key_file at it",
                key.id(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox { command } => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(outbox(config, command))
        }
        Command::Quarantine { command } => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(quarantine(config, command))
        }
        Command::Channels {
            command: ChannelsCommand::List,
        } => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(async {
                let store = app::open_store_read_only(&config).await?;
                let text = byocd::admin::channels_list(&config, &store, chrono::Utc::now()).await;
                store.close().await;
                print!("{}", text?);
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Sessions { command } => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(sessions(config, command))
        }
        Command::Audit {
            session,
            conversation,
            channel,
            org,
            kind,
            since,
            until,
            limit,
            format,
        } => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            let filter = byocd::store::AuditFilter {
                kind,
                org_id: org,
                channel,
                conversation_id: conversation,
                session_id: session,
                since,
                until,
                limit,
            };
            runtime()?.block_on(audit(config, filter, format))
        }
        Command::Token {
            command: TokenCommand::Status,
        } => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(async {
                let store = app::open_store_read_only(&config).await?;
                let text = byocd::admin::token_status(&config, &store, chrono::Utc::now()).await;
                store.close().await;
                print!("{}", text?);
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Migrate => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            runtime()?.block_on(migrate(config))
        }
        Command::Serve => {
            let Some(config) = load_or_report(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            if let Some(warning) = byocd::telemetry::init(&config.log.level, config.log.format) {
                tracing::warn!("{warning}");
            }
            runtime()?.block_on(serve(config))
        }
    }
}

/// `byocd explain`: one code, or the whole table with `--all`.
fn explain(code: Option<&str>, all: bool) -> ExitCode {
    use byocd::lifecycle::remediation;
    if all {
        print!("{}", remediation::render_table());
        return ExitCode::SUCCESS;
    }
    match remediation::Trigger::parse(code.unwrap_or_default()) {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the configuration, or prints every problem and returns `None`.
fn load_or_report(path: &std::path::Path) -> Option<config::Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            for problem in &errors.problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "byocd: configuration has {} problem(s); nothing was started",
                errors.problems.len()
            );
            None
        }
    }
}

fn config_check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
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

async fn migrate(config: config::Config) -> anyhow::Result<ExitCode> {
    let url = redact_url(&config.database_url());
    let store = app::open_store(&config)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let applied = store.migrate().await?;
    let status = store.schema_status().await?;
    if applied.is_empty() {
        println!(
            "{url}: schema is current (version {}); nothing to do",
            status.expected
        );
    } else {
        for migration in &applied {
            println!(
                "{url}: applied migration {} ({})",
                migration.version, migration.description
            );
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn outbox(config: config::Config, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    use byocd::store::OutboxFilter;
    let store = match command {
        OutboxCommand::Retry { .. } | OutboxCommand::Discard { .. } => {
            app::open_store_for_admin(&config).await?
        }
        _ => app::open_store_read_only(&config).await?,
    };
    let actor = format!(
        "admin:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    );
    let code = match command {
        OutboxCommand::List {
            status,
            channel,
            limit,
        } => {
            let rows = store
                .outbox(&OutboxFilter {
                    status,
                    channel,
                    session_id: None,
                    limit,
                })
                .await?;
            if rows.is_empty() {
                println!("no outbox rows");
            } else {
                println!(
                    "{:>8}  {:<9}  {:<22}  {:<20}  {:>3}  {:<24}  LAST ERROR",
                    "ID", "STATUS", "KIND", "CHANNEL", "TRY", "NEXT ATTEMPT"
                );
                for r in rows {
                    println!(
                        "{:>8}  {:<9}  {:<22}  {:<20}  {:>3}  {:<24}  {}",
                        r.id,
                        r.status,
                        r.kind,
                        r.channel,
                        r.attempts,
                        r.next_attempt_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            ExitCode::SUCCESS
        }
        OutboxCommand::Show { id } => match store.outbox_item(id).await? {
            Some(r) => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no outbox row #{id}");
                ExitCode::FAILURE
            }
        },
        OutboxCommand::Retry { id } => {
            if store.requeue_outbox(id, &actor).await? {
                println!("outbox row #{id} will be sent again now");
                ExitCode::SUCCESS
            } else {
                eprintln!("outbox row #{id} does not exist or is not dead or discarded");
                ExitCode::FAILURE
            }
        }
        OutboxCommand::Discard { id } => {
            if store.discard_outbox(id, &actor).await? {
                println!("outbox row #{id} discarded");
                ExitCode::SUCCESS
            } else {
                eprintln!("outbox row #{id} does not exist or is not pending or dead");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}

async fn quarantine(
    config: config::Config,
    command: QuarantineCommand,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let store = app::open_store_read_only(&config).await?;
    match command {
        QuarantineCommand::List {
            channel,
            limit,
            format,
        } => {
            let items = store.quarantined(channel.as_deref(), limit).await?;
            let text = byocd::admin::render_quarantined(&items, format)?;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        QuarantineCommand::Show { id } => {
            let Some(q) = store.quarantined_item(id).await? else {
                eprintln!("no quarantined webhook #{id}");
                return Ok(ExitCode::FAILURE);
            };
            println!("id:           {}", q.id);
            println!("received:     {}", q.received_at.to_rfc3339());
            println!("channel:      {}", q.channel);
            println!("provider:     {}", q.provider);
            println!("reason:       {}", q.reason);
            println!(
                "content type: {}",
                q.content_type.as_deref().unwrap_or("(none)")
            );
            println!("bytes:        {}", q.size);
            println!();
            let mut out = std::io::stdout().lock();
            out.write_all(&q.body)?;
            out.write_all(b"\n")?;
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
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
                    byocd::admin::check_channel(&config, &store, channel).await?;
                }
                let filter = byocd::store::SessionFilter {
                    channel,
                    status,
                    limit,
                };
                print!("{}", byocd::admin::sessions_list(&store, &filter).await?);
                Ok(ExitCode::SUCCESS)
            }
            SessionsCommand::Show { id: key } => {
                let found = match byocd::admin::find_session(&store, &key).await? {
                    Some(id) => byocd::admin::session_show(&store, id).await?,
                    None => None,
                };
                match (found, &key) {
                    (Some(text), _) => {
                        print!("{text}");
                        Ok(ExitCode::SUCCESS)
                    }
                    (None, byocd::admin::SessionKey::Byocd(_)) => {
                        anyhow::bail!("no session {key} (`byocd sessions list` shows their ids)")
                    }
                    (None, byocd::admin::SessionKey::WorkItem { .. }) => anyhow::bail!(
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

async fn audit(
    config: config::Config,
    filter: byocd::store::AuditFilter,
    format: byocd::admin::Format,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
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
            byocd::admin::check_channel(&config, &store, channel).await?;
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
        let text = byocd::admin::render_audit(&rows, format)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

async fn serve(config: config::Config) -> anyhow::Result<ExitCode> {
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (reload_tx, reload) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if reload_tx.send(()).await.is_err() {
                break;
            }
        }
    });
    app::run(
        config,
        listener,
        app::Control {
            shutdown: Box::pin(shutdown_signal()),
            reload,
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
