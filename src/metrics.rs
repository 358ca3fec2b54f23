//! Prometheus metrics, in the text exposition format, on `server.metrics_listen` (loopback by
//! default) at `GET /metrics`.
//!
//! Counters are kept here, per daemon (not global, so tests in one process do not share them);
//! gauges are read when scraped from the parts that own the facts (the relay's gate, the
//! sweeper). No crate: a handful of labelled counters needs none.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use crate::{lifecycle::sweeper::Sweeper, relay::Relay};

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

    /// Everything, in the Prometheus text format: the counters, then the gauges of `relay`'s
    /// gate and `sweeper`'s health.
    pub fn render(&self, relay: Option<&Relay>, sweeper: Option<&Sweeper>) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics lock poisoned").clone();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, labels), value) in counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {value}", render_labels(labels));
            }
        }
        if let Some(relay) = relay {
            let _ = writeln!(
                out,
                "# HELP byocd_channel_paused 1 while the channel is paused by remediation.\n# TYPE byocd_channel_paused gauge"
            );
            for (channel, pause) in relay.gate().paused() {
                let _ = writeln!(
                    out,
                    "byocd_channel_paused{} 1",
                    render_labels(&[("channel", channel), ("code", pause.code)])
                );
            }
            let _ = writeln!(
                out,
                "# HELP byocd_org_disabled 1 while the org is disabled by remediation (until reload).\n# TYPE byocd_org_disabled gauge"
            );
            for (org, disabled) in relay.gate().disabled() {
                let _ = writeln!(
                    out,
                    "byocd_org_disabled{} 1",
                    render_labels(&[("org_id", org), ("code", disabled.code)])
                );
            }
        }
        if let Some(sweeper) = sweeper {
            let health = sweeper.health();
            let _ = writeln!(
                out,
                "# HELP byocd_sweep_last_success_timestamp_seconds When the channel's session sweep last succeeded (0: not yet).\n# TYPE byocd_sweep_last_success_timestamp_seconds gauge"
            );
            for h in &health {
                let at = h.last_success.map_or(0, |t| t.timestamp());
                let _ = writeln!(
                    out,
                    "byocd_sweep_last_success_timestamp_seconds{} {at}",
                    render_labels(&[("channel", h.channel.clone())])
                );
            }
            let _ = writeln!(
                out,
                "# HELP byocd_sweep_stale 1 when the channel's sweep missed three scheduled runs (readiness fails).\n# TYPE byocd_sweep_stale gauge"
            );
            for h in &health {
                let _ = writeln!(
                    out,
                    "byocd_sweep_stale{} {}",
                    render_labels(&[("channel", h.channel.clone())]),
                    u8::from(h.stale)
                );
            }
        }
        out
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
        let text = m.render(None, None);
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
