//! `byocd serve` and `byocd migrate`.

use std::{path::Path, process::ExitCode};

use anyhow::Context;

use crate::{
    app, config,
    store::{Store, redact_url},
    telemetry,
};

/// `byocd serve`: runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration.
pub fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(config) = super::load_or_report(path) else {
        return Ok(ExitCode::FAILURE);
    };
    if let Some(warning) = telemetry::init(&config.log.level, config.log.format) {
        tracing::warn!("{warning}");
    }
    super::runtime()?.block_on(run(config))
}

/// `byocd migrate [--database-url URL]`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Migrate this database instead of the configuration's, e.g. as the schema's owner while
    /// the daemon runs as a role that cannot change the schema (docs/security.md). The
    /// configuration is not read; a PostgreSQL password comes from the URL, `PGPASSWORD` or
    /// `~/.pgpass`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// `byocd migrate`: applies the migrations this binary carries, then exits.
pub fn migrate(path: &Path, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = args.database_url {
        return super::runtime()?.block_on(async move {
            if crate::store::Backend::of_url(&url)? == crate::store::Backend::Postgres {
                crate::config::check_postgres_tls(&url)
                    .map_err(|e| anyhow::anyhow!("--database-url: {e}"))?;
            }
            let store = crate::store::AnyStore::open(&url, Default::default())
                .await
                .with_context(|| format!("cannot open {}", redact_url(&url)))?;
            apply(&store, &redact_url(&url)).await
        });
    }
    super::with_config(path, |config| async move {
        let url = redact_url(&config.database_url());
        let store = app::open_store(&config)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        apply(&store, &url).await
    })
}

async fn apply(store: &crate::store::AnyStore, url: &str) -> anyhow::Result<ExitCode> {
    let result = async {
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
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

async fn run(config: config::Config) -> anyhow::Result<ExitCode> {
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
