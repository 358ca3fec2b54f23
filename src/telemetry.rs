//! Logging: plain text, JSON lines or the systemd journal, as the configuration says.
//! `RUST_LOG`, when set, overrides the configured level.

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. Returns an error message if the journal was asked for and is
/// not reachable (then plain output is used).
pub fn init(level: &str, format: LogFormat) -> Option<String> {
    // The scheduler crate narrates its own life at info ("Job creator created"): quiet it
    // unless the filter names it.
    let level = if level.contains("tokio_cron_scheduler") {
        level.to_owned()
    } else {
        format!("{level},tokio_cron_scheduler=warn")
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Plain => {
            // Under systemd the journal stamps each line; elsewhere a timestamp helps.
            let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(false);
            if under_systemd {
                registry.with(layer.without_time()).init();
            } else {
                registry.with(layer).init();
            }
            None
        }
        LogFormat::Json => {
            registry
                .with(tracing_subscriber::fmt::layer().json().with_target(false))
                .init();
            None
        }
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => {
                registry.with(layer).init();
                None
            }
            Err(e) => {
                registry
                    .with(tracing_subscriber::fmt::layer().with_ansi(false))
                    .init();
                Some(format!(
                    "journald logging requested but the journal is not reachable ({e}); logging to stderr"
                ))
            }
        },
    }
}
