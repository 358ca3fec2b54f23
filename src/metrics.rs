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

use crate::{
    lifecycle::sweeper::Sweeper,
    relay::Relay,
    salesforce::pubsub::Liveness,
    store::{AnyStore, Store},
};

/// Where the gauges come from when `/metrics` is scraped.
#[derive(Default)]
pub struct Sources<'a> {
    /// The relay (paused channels, disabled orgs).
    pub relay: Option<&'a Relay>,
    /// The sweeper (last success, duration, staleness).
    pub sweeper: Option<&'a Sweeper>,
    /// Each subscription: org id, topic, liveness.
    pub pubsub: &'a [(String, String, Liveness)],
    /// The store (outbox depth and age, routings by status).
    pub store: Option<&'a AnyStore>,
}

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

    fn render_counters(&self, out: &mut String) {
        let counters = self.counters.lock().expect("metrics lock poisoned").clone();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, labels), value) in counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {value}", render_labels(labels));
            }
        }
    }

    /// Everything, in the Prometheus text format: the counters, then the gauges read from
    /// `sources` now.
    pub async fn render_all(&self, sources: &Sources<'_>) -> String {
        let mut out = String::new();
        self.render_counters(&mut out);
        let now = chrono::Utc::now();
        if let Some(store) = sources.store {
            match store.gauges().await {
                Ok(g) => {
                    gauge_header(
                        &mut out,
                        "byocd_outbox_depth",
                        "Outbox rows waiting (pending) or being delivered (leased), by kind.",
                    );
                    for (kind, status, n, _) in &g.outbox {
                        let _ = writeln!(
                            out,
                            "byocd_outbox_depth{} {n}",
                            render_labels(&[("kind", kind.clone()), ("status", status.clone())])
                        );
                    }
                    gauge_header(
                        &mut out,
                        "byocd_outbox_oldest_age_seconds",
                        "Age of the oldest pending or leased outbox row, by kind.",
                    );
                    let mut oldest: BTreeMap<&str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
                    for (kind, _, _, at) in &g.outbox {
                        let e = oldest.entry(kind).or_insert(*at);
                        *e = (*e).min(*at);
                    }
                    for (kind, at) in oldest {
                        let age = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
                        let _ = writeln!(
                            out,
                            "byocd_outbox_oldest_age_seconds{} {age}",
                            render_labels(&[("kind", kind.to_owned())])
                        );
                    }
                    gauge_header(
                        &mut out,
                        "byocd_routings",
                        "Routing records in the database by status (Routed, Offered, Accepted, Declined, Failed, ...).",
                    );
                    for (status, n) in &g.routings {
                        let _ = writeln!(
                            out,
                            "byocd_routings{} {n}",
                            render_labels(&[("status", status.clone())])
                        );
                    }
                    let _ = writeln!(
                        out,
                        "# HELP byocd_store_up 1 when the state store answered this scrape.\n# TYPE byocd_store_up gauge\nbyocd_store_up 1"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: the state store did not answer");
                    let _ = writeln!(
                        out,
                        "# HELP byocd_store_up 1 when the state store answered this scrape.\n# TYPE byocd_store_up gauge\nbyocd_store_up 0"
                    );
                }
            }
        }
        if !sources.pubsub.is_empty() {
            gauge_header(
                &mut out,
                "byocd_pubsub_last_event_timestamp_seconds",
                "When the subscription last committed an event (0: none since start).",
            );
            for (org, topic, l) in sources.pubsub {
                let at = l.last_event.map_or(0, |t| t.timestamp());
                let _ = writeln!(
                    out,
                    "byocd_pubsub_last_event_timestamp_seconds{} {at}",
                    render_labels(&[("org_id", org.clone()), ("topic", topic.clone())])
                );
            }
            gauge_header(
                &mut out,
                "byocd_pubsub_lag_seconds",
                "Seconds since the subscription's stream last answered (events or keep-alive); grows when the stream stalls.",
            );
            for (org, topic, l) in sources.pubsub {
                let lag = l.last_seen.map_or(-1.0, |t| {
                    (now - t).num_milliseconds().max(0) as f64 / 1000.0
                });
                let _ = writeln!(
                    out,
                    "byocd_pubsub_lag_seconds{} {lag}",
                    render_labels(&[("org_id", org.clone()), ("topic", topic.clone())])
                );
            }
            let _ = writeln!(
                out,
                "# HELP byocd_pubsub_events_total Events committed per subscription since start.\n# TYPE byocd_pubsub_events_total counter"
            );
            for (org, topic, l) in sources.pubsub {
                let _ = writeln!(
                    out,
                    "byocd_pubsub_events_total{} {}",
                    render_labels(&[("org_id", org.clone()), ("topic", topic.clone())]),
                    l.events
                );
            }
            let _ = writeln!(
                out,
                "# HELP byocd_pubsub_streams_total Streams opened per subscription since start (reconnects).\n# TYPE byocd_pubsub_streams_total counter"
            );
            for (org, topic, l) in sources.pubsub {
                let _ = writeln!(
                    out,
                    "byocd_pubsub_streams_total{} {}",
                    render_labels(&[("org_id", org.clone()), ("topic", topic.clone())]),
                    l.streams
                );
            }
        }
        if let Some(relay) = sources.relay {
            gauge_header(
                &mut out,
                "byocd_channel_paused",
                "1 while the channel is paused by remediation.",
            );
            for (channel, pause) in relay.gate().paused() {
                let _ = writeln!(
                    out,
                    "byocd_channel_paused{} 1",
                    render_labels(&[("channel", channel), ("code", pause.code)])
                );
            }
            gauge_header(
                &mut out,
                "byocd_org_disabled",
                "1 while the org is disabled by remediation (until reload).",
            );
            for (org, disabled) in relay.gate().disabled() {
                let _ = writeln!(
                    out,
                    "byocd_org_disabled{} 1",
                    render_labels(&[("org_id", org), ("code", disabled.code)])
                );
            }
        }
        if let Some(sweeper) = sources.sweeper {
            let health = sweeper.health();
            let durations = sweeper.last_duration();
            gauge_header(
                &mut out,
                "byocd_sweep_last_success_timestamp_seconds",
                "When the channel's session sweep last succeeded (0: not yet).",
            );
            for h in &health {
                let at = h.last_success.map_or(0, |t| t.timestamp());
                let _ = writeln!(
                    out,
                    "byocd_sweep_last_success_timestamp_seconds{} {at}",
                    render_labels(&[("channel", h.channel.clone())])
                );
            }
            gauge_header(
                &mut out,
                "byocd_sweep_duration_seconds",
                "How long the channel's last sweep took.",
            );
            for h in &health {
                if let Some(d) = durations.get(&h.channel) {
                    let _ = writeln!(
                        out,
                        "byocd_sweep_duration_seconds{} {}",
                        render_labels(&[("channel", h.channel.clone())]),
                        d.as_secs_f64()
                    );
                }
            }
            gauge_header(
                &mut out,
                "byocd_sweep_stale",
                "1 when the channel's sweep missed three scheduled runs (readiness fails).",
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

fn gauge_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
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
