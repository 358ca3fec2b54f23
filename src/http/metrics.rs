//! `GET /metrics` on `server.metrics_listen` (loopback by default), in the Prometheus text format
//! (version 0.0.4): the daemon's metrics ([`crate::metrics`]), then the gauges owned by other
//! parts, read at each scrape from memory — the relay's gate, the sweeper, the Pub/Sub
//! subscriptions — and the database gauges, which a scrape never queries: [`StoreGaugeCache`]
//! refreshes them every [`STORE_GAUGE_REFRESH`] in the background.
//!
//! No sentinel values: a fact not known yet (a subscription that never heard from its stream, a
//! sweep that never succeeded) has no sample rather than a `-1` or a `0`.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock, atomic::AtomicU64},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    lifecycle::sweeper::Sweeper,
    metrics::Metrics,
    relay::Relay,
    salesforce::pubsub::Liveness,
    store::{AnyStore, Store, StoreGauges},
};

/// How often the database gauges are read again.
pub const STORE_GAUGE_REFRESH: Duration = Duration::from_secs(10);

/// The database gauges as last read, shared by the refresher and the scrapes.
#[derive(Debug, Default, Clone)]
pub struct StoreGaugeCache {
    last: Arc<RwLock<Option<Read>>>,
}

#[derive(Debug)]
struct Read {
    /// The gauges of the last read that succeeded.
    gauges: Option<StoreGauges>,
    /// Whether the last read succeeded.
    up: bool,
    /// When the last read was made.
    at: chrono::DateTime<chrono::Utc>,
}

impl StoreGaugeCache {
    /// Reads the gauges from `store` now; a failure keeps the previous gauges and marks the store
    /// down.
    pub async fn refresh(&self, store: &AnyStore) {
        let read = store.gauges().await;
        let mut last = self.last.write().expect("gauge cache lock");
        let previous = last.take().and_then(|r| r.gauges);
        *last = Some(match read {
            Ok(gauges) => Read {
                gauges: Some(gauges),
                up: true,
                at: chrono::Utc::now(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the state store did not answer");
                Read {
                    gauges: previous,
                    up: false,
                    at: chrono::Utc::now(),
                }
            }
        });
    }

    /// Refreshes the cache every [`STORE_GAUGE_REFRESH`] until `stop`.
    pub async fn run(self, store: AnyStore, stop: tokio_util::sync::CancellationToken) {
        loop {
            self.refresh(&store).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(STORE_GAUGE_REFRESH) => {}
            }
        }
    }
}

/// Where the gauges come from when `/metrics` is scraped.
#[derive(Default)]
pub struct Sources<'a> {
    /// The relay (paused channels, disabled orgs).
    pub relay: Option<&'a Relay>,
    /// The sweeper (last success, duration, staleness).
    pub sweeper: Option<&'a Sweeper>,
    /// Each subscription: org id, topic, liveness.
    pub pubsub: &'a [(String, String, Liveness)],
    /// The database gauges as last read (outbox depth and age, routings by status).
    pub store: Option<&'a StoreGaugeCache>,
}

type Labels = Vec<(&'static str, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// The families filled at a scrape. Each is shown with its HELP and TYPE lines even without a
/// sample (a registry leaves empty families out): a dashboard finds every name byocd exports.
#[derive(Debug, Default)]
struct Scraped(Vec<(&'static str, &'static str, Filled)>);

#[derive(Debug)]
enum Filled {
    Gauges(GaugeFamily),
    Counters(Family<Labels, Counter>),
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, family) in &self.0 {
            match family {
                Filled::Gauges(f) => {
                    f.encode(encoder.encode_descriptor(name, help, None, f.metric_type())?)?
                }
                Filled::Counters(f) => {
                    f.encode(encoder.encode_descriptor(name, help, None, f.metric_type())?)?
                }
            }
        }
        Ok(())
    }
}

/// A gauge family filled at a scrape.
fn gauges(
    registry: &mut Scraped,
    name: &'static str,
    help: &'static str,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) {
    let family = GaugeFamily::default();
    for (labels, value) in samples {
        family.get_or_create(&labels).set(value);
    }
    registry.0.push((name, help, Filled::Gauges(family)));
}

/// A counter family filled at a scrape from counts kept elsewhere (`name` without `_total`).
fn counters(
    registry: &mut Scraped,
    name: &'static str,
    help: &'static str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in samples {
        family.get_or_create(&labels).inc_by(value);
    }
    registry.0.push((name, help, Filled::Counters(family)));
}

/// Everything, in the Prometheus text format: `metrics`, then the gauges read from `sources`
/// now.
pub async fn render(metrics: &Metrics, sources: &Sources<'_>) -> String {
    let mut out = String::new();
    metrics.render_into(&mut out);
    let mut registry = Scraped::default();
    let now = chrono::Utc::now();
    let seconds_since =
        |t: chrono::DateTime<chrono::Utc>| (now - t).num_milliseconds().max(0) as f64 / 1000.0;
    let timestamp = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as f64 / 1000.0;
    if let Some(cache) = sources.store {
        let last = cache.last.read().expect("gauge cache lock");
        let read = last.as_ref();
        let g = read.and_then(|r| r.gauges.as_ref());
        gauges(
            &mut registry,
            "byocd_outbox_depth",
            "Outbox rows waiting (pending) or being delivered (leased), by kind",
            g.into_iter().flat_map(|g| {
                g.outbox.iter().map(|(kind, status, n, _)| {
                    (
                        vec![("kind", kind.clone()), ("status", status.clone())],
                        *n as f64,
                    )
                })
            }),
        );
        let mut oldest: BTreeMap<&str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
        for (kind, _, _, at) in g.iter().flat_map(|g| g.outbox.iter()) {
            let e = oldest.entry(kind).or_insert(*at);
            *e = (*e).min(*at);
        }
        gauges(
            &mut registry,
            "byocd_outbox_oldest_age_seconds",
            "Age of the oldest pending or leased outbox row, by kind (no sample: none waiting)",
            oldest
                .into_iter()
                .map(|(kind, at)| (vec![("kind", kind.to_owned())], seconds_since(at))),
        );
        gauges(
            &mut registry,
            "byocd_routings",
            "Routing records in the database by status (Routed, Offered, Accepted, Declined, Failed, ...)",
            g.into_iter().flat_map(|g| {
                g.routings
                    .iter()
                    .map(|(status, n)| (vec![("status", status.clone())], *n as f64))
            }),
        );
        gauges(
            &mut registry,
            "byocd_store_up",
            "1 when the state store answered the last read of the database gauges",
            [(Vec::new(), f64::from(u8::from(read.is_some_and(|r| r.up))))],
        );
        gauges(
            &mut registry,
            "byocd_store_gauges_age_seconds",
            "Age of the database gauges shown (they are read in the background, not at each scrape)",
            read.map(|r| (Vec::new(), seconds_since(r.at))),
        );
    }
    if !sources.pubsub.is_empty() {
        let key =
            |org: &String, topic: &String| vec![("org_id", org.clone()), ("topic", topic.clone())];
        gauges(
            &mut registry,
            "byocd_pubsub_last_event_timestamp_seconds",
            "When the subscription last committed an event (no sample: none since start)",
            sources.pubsub.iter().filter_map(|(org, topic, l)| {
                l.last_event.map(|t| (key(org, topic), timestamp(t)))
            }),
        );
        gauges(
            &mut registry,
            "byocd_pubsub_lag_seconds",
            "Seconds since the subscription's stream last answered (events or keep-alive); grows when the stream stalls (no sample: it never answered)",
            sources.pubsub.iter().filter_map(|(org, topic, l)| {
                l.last_seen.map(|t| (key(org, topic), seconds_since(t)))
            }),
        );
        counters(
            &mut registry,
            "byocd_pubsub_events",
            "Events committed per subscription since start",
            sources
                .pubsub
                .iter()
                .map(|(org, topic, l)| (key(org, topic), l.events)),
        );
        counters(
            &mut registry,
            "byocd_pubsub_streams",
            "Streams opened per subscription since start (reconnects)",
            sources
                .pubsub
                .iter()
                .map(|(org, topic, l)| (key(org, topic), l.streams)),
        );
        counters(
            &mut registry,
            "byocd_pubsub_stream_failures",
            "Stream attempts that failed per subscription since start (connect, token, or the stream broke)",
            sources
                .pubsub
                .iter()
                .map(|(org, topic, l)| (key(org, topic), l.failures)),
        );
    }
    if let Some(relay) = sources.relay {
        gauges(
            &mut registry,
            "byocd_channel_paused",
            "1 while the channel is paused by remediation",
            relay
                .gate()
                .paused()
                .into_iter()
                .map(|(channel, pause)| (vec![("channel", channel), ("code", pause.code)], 1.0)),
        );
        gauges(
            &mut registry,
            "byocd_org_disabled",
            "1 while the org is disabled by remediation (until reload)",
            relay
                .gate()
                .disabled()
                .into_iter()
                .map(|(org, disabled)| (vec![("org_id", org), ("code", disabled.code)], 1.0)),
        );
    }
    if let Some(sweeper) = sources.sweeper {
        let health = sweeper.health();
        let durations = sweeper.last_duration();
        let channel =
            |h: &crate::lifecycle::sweeper::SweepHealth| vec![("channel", h.channel.clone())];
        gauges(
            &mut registry,
            "byocd_sweep_last_success_timestamp_seconds",
            "When the channel's session sweep last succeeded (no sample: not yet)",
            health
                .iter()
                .filter_map(|h| h.last_success.map(|t| (channel(h), timestamp(t)))),
        );
        gauges(
            &mut registry,
            "byocd_sweep_duration_seconds",
            "How long the channel's last sweep took",
            health.iter().filter_map(|h| {
                durations
                    .get(&h.channel)
                    .map(|d| (channel(h), d.as_secs_f64()))
            }),
        );
        gauges(
            &mut registry,
            "byocd_sweep_stale",
            "1 when the channel's sweep missed three scheduled runs (readiness fails)",
            health
                .iter()
                .map(|h| (channel(h), f64::from(u8::from(h.stale)))),
        );
    }
    let mut scraped = Registry::default();
    scraped.register_collector(Box::new(registry));
    prometheus_client::encoding::prometheus_text::encode(&mut out, &scraped)
        .expect("writing to a String cannot fail");
    out
}
