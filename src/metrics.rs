//! The daemon's counters, and how a metric family is written in the Prometheus text format.
//!
//! Counters are kept here, per daemon (not global, so tests in one process do not share them),
//! counted by the relay, the webhook handler and the token manager. This module imports nothing
//! of byocd: the `/metrics` page that adds the gauges read from the relay, the sweeper, the
//! subscriptions and the store is [`crate::http::metrics`]. No crate: a handful of labelled
//! counters needs none.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
};

/// A counter's name and its labels, in order.
type Key = (&'static str, Vec<(&'static str, String)>);

/// The daemon's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
}

/// Help texts of the counters.
const HELP: &[(&str, &str)] = &[
    (
        "byocd_webhooks_total",
        "Provider webhooks by channel and outcome (accepted, duplicate, rejected) and, when rejected, why.",
    ),
    (
        "byocd_deliveries_total",
        "Delivery attempts by outbox kind, outcome (delivered, failed) and the failure's code.",
    ),
    (
        "byocd_token_mints_total",
        "OAuth token mints by org, outcome (ok, failed) and reason.",
    ),
    (
        "byocd_config_reloads_total",
        "Configuration reloads by outcome (applied, refused).",
    ),
    (
        "byocd_remediation_actions_total",
        "Failed deliveries by the remediation action taken and the code that triggered it.",
    ),
    (
        "byocd_alerts_total",
        "Alerts written to the audit trail (severity alert), by audit kind.",
    ),
];

impl Metrics {
    /// A fresh set of counters.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Adds one to `name{labels}`.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        );
        *self
            .counters
            .lock()
            .expect("metrics lock poisoned")
            .entry(key)
            .or_default() += 1;
    }

    /// The value of `name{labels}` (0 if never counted).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        );
        self.counters
            .lock()
            .expect("metrics lock poisoned")
            .get(&key)
            .copied()
            .unwrap_or_default()
    }

    /// The counters alone (no gauges).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_counters(&mut out);
        out
    }

    /// Appends the counters to `out`.
    pub fn render_counters(&self, out: &mut String) {
        let counters = self.counters.lock().expect("metrics lock poisoned").clone();
        for (name, help) in HELP {
            family(
                out,
                name,
                COUNTER,
                help,
                counters
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .map(|((_, labels), value)| (labels.clone(), value)),
            );
        }
    }
}

/// The TYPE of a gauge family.
pub const GAUGE: &str = "gauge";
/// The TYPE of a counter family.
pub const COUNTER: &str = "counter";

/// One metric family: its HELP and TYPE lines, then one line per labelled sample.
pub fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{} {value}", render_labels(&labels));
    }
}

fn render_labels(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_escaped_labels() {
        let m = Metrics::new();
        m.inc("byocd_alerts_total", &[("kind", "channel.paused")]);
        m.inc("byocd_alerts_total", &[("kind", "channel.paused")]);
        m.inc(
            "byocd_remediation_actions_total",
            &[("action", "retry"), ("code", "reason:\"X\"")],
        );
        let text = m.render();
        assert!(
            text.contains("byocd_alerts_total{kind=\"channel.paused\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "byocd_remediation_actions_total{action=\"retry\",code=\"reason:\\\"X\\\"\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(m.get("byocd_alerts_total", &[("kind", "other")]), 0);
    }
}
