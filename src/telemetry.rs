//! Logging: plain text, JSON lines or the systemd journal, as the configuration says; by default
//! (`format = "auto"`) the journal when systemd connected our output to it (`JOURNAL_STREAM`
//! set), so each line keeps its priority (`journalctl -p err -u byocd`). `RUST_LOG`, when set,
//! overrides the configured level.

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
    let auto = format == LogFormat::Auto;
    match resolve(format, std::env::var_os("JOURNAL_STREAM").as_deref()) {
        LogFormat::Journald if auto => match tracing_journald::layer() {
            Ok(layer) => {
                registry.with(layer).init();
                None
            }
            // JOURNAL_STREAM without a reachable journal socket: lines on stderr, which
            // systemd still collects.
            Err(_) => {
                registry
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_ansi(false)
                            .with_target(false)
                            .without_time(),
                    )
                    .init();
                None
            }
        },
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
        LogFormat::Journald | LogFormat::Auto => match tracing_journald::layer() {
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

/// The format to use: `auto` is the journal when `journal_stream` (the `JOURNAL_STREAM`
/// variable systemd sets when it connects stdout/stderr to the journal) is present, else plain.
pub fn resolve(format: LogFormat, journal_stream: Option<&std::ffi::OsStr>) -> LogFormat {
    match format {
        LogFormat::Auto if journal_stream.is_some_and(|s| !s.is_empty()) => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Plain,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_the_journal_under_systemd_and_plain_elsewhere() {
        let stream = std::ffi::OsStr::new("8:123456");
        assert_eq!(resolve(LogFormat::Auto, Some(stream)), LogFormat::Journald);
        assert_eq!(resolve(LogFormat::Auto, None), LogFormat::Plain);
        assert_eq!(
            resolve(LogFormat::Auto, Some(std::ffi::OsStr::new(""))),
            LogFormat::Plain
        );
        // A format the configuration names is kept, under systemd or not.
        assert_eq!(resolve(LogFormat::Plain, Some(stream)), LogFormat::Plain);
        assert_eq!(resolve(LogFormat::Json, Some(stream)), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Journald, None), LogFormat::Journald);
    }
}
