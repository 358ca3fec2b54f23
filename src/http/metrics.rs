//! `GET /metrics` on `server.metrics_listen` (loopback by default): the daemon's counters
//! ([`crate::metrics`]) and the gauges read at each scrape from the parts that own the facts —
//! the relay's gate, the sweeper, the Pub/Sub subscriptions and the store.

use std::collections::BTreeMap;

use crate::{
    lifecycle::sweeper::Sweeper,
    metrics::{COUNTER, GAUGE, Metrics, family},
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

/// Everything, in the Prometheus text format: `metrics`' counters, then the gauges read from
/// `sources` now.
pub async fn render(metrics: &Metrics, sources: &Sources<'_>) -> String {
    let mut out = String::new();
    metrics.render_counters(&mut out);
    let now = chrono::Utc::now();
    let seconds_since =
        |t: chrono::DateTime<chrono::Utc>| (now - t).num_milliseconds().max(0) as f64 / 1000.0;
    if let Some(store) = sources.store {
        let store_up = match store.gauges().await {
            Ok(g) => {
                family(
                    &mut out,
                    "byocd_outbox_depth",
                    GAUGE,
                    "Outbox rows waiting (pending) or being delivered (leased), by kind.",
                    g.outbox.iter().map(|(kind, status, n, _)| {
                        (vec![("kind", kind.clone()), ("status", status.clone())], n)
                    }),
                );
                let mut oldest: BTreeMap<&str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
                for (kind, _, _, at) in &g.outbox {
                    let e = oldest.entry(kind).or_insert(*at);
                    *e = (*e).min(*at);
                }
                family(
                    &mut out,
                    "byocd_outbox_oldest_age_seconds",
                    GAUGE,
                    "Age of the oldest pending or leased outbox row, by kind.",
                    oldest
                        .into_iter()
                        .map(|(kind, at)| (vec![("kind", kind.to_owned())], seconds_since(at))),
                );
                family(
                    &mut out,
                    "byocd_routings",
                    GAUGE,
                    "Routing records in the database by status (Routed, Offered, Accepted, Declined, Failed, ...).",
                    g.routings
                        .iter()
                        .map(|(status, n)| (vec![("status", status.clone())], n)),
                );
                1
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the state store did not answer");
                0
            }
        };
        family(
            &mut out,
            "byocd_store_up",
            GAUGE,
            "1 when the state store answered this scrape.",
            [(Vec::new(), store_up)],
        );
    }
    if !sources.pubsub.is_empty() {
        let per_subscription = |value: fn(&Liveness) -> String| {
            sources.pubsub.iter().map(move |(org, topic, l)| {
                (
                    vec![("org_id", org.clone()), ("topic", topic.clone())],
                    value(l),
                )
            })
        };
        family(
            &mut out,
            "byocd_pubsub_last_event_timestamp_seconds",
            GAUGE,
            "When the subscription last committed an event (0: none since start).",
            per_subscription(|l| l.last_event.map_or(0, |t| t.timestamp()).to_string()),
        );
        family(
            &mut out,
            "byocd_pubsub_lag_seconds",
            GAUGE,
            "Seconds since the subscription's stream last answered (events or keep-alive); grows when the stream stalls.",
            sources.pubsub.iter().map(|(org, topic, l)| {
                (
                    vec![("org_id", org.clone()), ("topic", topic.clone())],
                    l.last_seen.map_or(-1.0, seconds_since),
                )
            }),
        );
        family(
            &mut out,
            "byocd_pubsub_events_total",
            COUNTER,
            "Events committed per subscription since start.",
            per_subscription(|l| l.events.to_string()),
        );
        family(
            &mut out,
            "byocd_pubsub_streams_total",
            COUNTER,
            "Streams opened per subscription since start (reconnects).",
            per_subscription(|l| l.streams.to_string()),
        );
    }
    if let Some(relay) = sources.relay {
        family(
            &mut out,
            "byocd_channel_paused",
            GAUGE,
            "1 while the channel is paused by remediation.",
            relay
                .gate()
                .paused()
                .into_iter()
                .map(|(channel, pause)| (vec![("channel", channel), ("code", pause.code)], 1)),
        );
        family(
            &mut out,
            "byocd_org_disabled",
            GAUGE,
            "1 while the org is disabled by remediation (until reload).",
            relay
                .gate()
                .disabled()
                .into_iter()
                .map(|(org, disabled)| (vec![("org_id", org), ("code", disabled.code)], 1)),
        );
    }
    if let Some(sweeper) = sources.sweeper {
        let health = sweeper.health();
        let durations = sweeper.last_duration();
        let channel =
            |h: &crate::lifecycle::sweeper::SweepHealth| vec![("channel", h.channel.clone())];
        family(
            &mut out,
            "byocd_sweep_last_success_timestamp_seconds",
            GAUGE,
            "When the channel's session sweep last succeeded (0: not yet).",
            health
                .iter()
                .map(|h| (channel(h), h.last_success.map_or(0, |t| t.timestamp()))),
        );
        family(
            &mut out,
            "byocd_sweep_duration_seconds",
            GAUGE,
            "How long the channel's last sweep took.",
            health.iter().filter_map(|h| {
                durations
                    .get(&h.channel)
                    .map(|d| (channel(h), d.as_secs_f64()))
            }),
        );
        family(
            &mut out,
            "byocd_sweep_stale",
            GAUGE,
            "1 when the channel's sweep missed three scheduled runs (readiness fails).",
            health.iter().map(|h| (channel(h), u8::from(h.stale))),
        );
    }
    out
}
