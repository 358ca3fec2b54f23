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

/// `byocd migrate`: applies the migrations this binary carries, then exits.
pub fn migrate(path: &Path) -> anyhow::Result<ExitCode> {
    super::with_config(path, |config| async move {
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
    })
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
