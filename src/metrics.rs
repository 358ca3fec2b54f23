//! The daemon's metrics, on the `prometheus-client` crate: counters, latency histograms, the
//! build info and the process metrics, kept per daemon (not global, so tests in one process do
//! not share them). The `/metrics` page, which adds the gauges owned by the relay's gate, the
//! sweeper, the Pub/Sub subscriptions and the cached database gauges, is
//! [`crate::http::metrics`].
//!
//! Recording is cheap on the paths every message takes: the label sets of a delivery (per
//! outbox kind, delivered or failed) and of a webhook accepted on a channel are resolved once
//! ([`Metrics::kind`], [`Metrics::channel`]) and then recorded with the crate's atomic counter
//! and its histogram (a short uncontended mutex, no allocation). Rare events (refusals,
//! failures, reloads, remediation actions, alerts, token mints) look their label set up in the
//! family.
//!
//! Histogram families (seconds):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `byocd_webhook_accept_duration_seconds` | channel | a webhook's arrival to its 200 (events committed) |
//! | `byocd_delivery_latency_seconds` | kind | an outbox row's creation (webhook or Pub/Sub event committed) to its delivery; `isa.*`/`routing.*` kinds: accept to Salesforce; `provider.*` kinds: Pub/Sub event to provider |
//! | `byocd_call_duration_seconds` | target, endpoint, outcome | each delivery call to Salesforce or the provider, by outbox kind (the endpoint) and outcome (ok, failed) |
//! | `byocd_token_mint_duration_seconds` | outcome | each OAuth token mint |

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{Arc, OnceLock, RwLock},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::Counter, family::Family, histogram::Histogram, info::Info},
    registry::Registry,
};

type Label = Cow<'static, str>;
type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Webhook accept latency buckets: a commit is milliseconds; seconds mean a queue.
const ACCEPT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Acceptance-to-delivery buckets: milliseconds when healthy, minutes to hours under retries
/// and pauses.
const LATENCY_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Outbound call buckets (Salesforce, providers, the token endpoint).
const CALL_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn accept_histogram() -> Histogram {
    Histogram::new(ACCEPT_BUCKETS)
}
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}
fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    channel: Label,
    outcome: Label,
    reason: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    kind: Label,
    outcome: Label,
    code: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    target: Label,
    endpoint: Label,
    outcome: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: Label,
    build: Label,
}

/// Labelled counters of rare events, by name: `byocd_token_mints_total`,
/// `byocd_config_reloads_total`, `byocd_remediation_actions_total`, `byocd_alerts_total`, and
/// any counter a part of byocd counts through [`Metrics::inc`].
type Labels = Vec<(&'static str, String)>;

/// Help texts of the counters counted through [`Metrics::inc`], in the order they are shown.
const HELP: &[(&str, &str)] = &[
    (
        "byocd_token_mints_total",
        "OAuth token mints by org, outcome (ok, failed) and reason",
    ),
    (
        "byocd_config_reloads_total",
        "Configuration reloads by outcome (applied, refused)",
    ),
    (
        "byocd_remediation_actions_total",
        "Failed deliveries by the remediation action taken and the code that triggered it",
    ),
    (
        "byocd_alerts_total",
        "Alerts written to the audit trail (severity alert), by audit kind",
    ),
    (
        "byocd_relay_settle_failures_total",
        "Deliveries whose outcome the database refused to record; each row goes out again after its lease",
    ),
];

/// The counters counted by name ([`Metrics::inc`]), encoded at each scrape with the crate's
/// families. Their HELP and TYPE lines are shown even before the first count.
#[derive(Debug, Default)]
struct Named {
    families: RwLock<BTreeMap<&'static str, Family<Labels, Counter>>>,
}

impl Named {
    fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let key: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some(family) = self.families.read().expect("metrics lock").get(name) {
            family.get_or_create(&key).inc();
            return;
        }
        self.families
            .write()
            .expect("metrics lock")
            .entry(name)
            .or_default()
            .get_or_create(&key)
            .inc();
    }

    fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let key: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.families
            .read()
            .expect("metrics lock")
            .get(name)
            .and_then(|f| f.get(&key).map(|c| c.get()))
            .unwrap_or_default()
    }
}

impl Collector for Named {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = self.families.read().expect("metrics lock");
        let empty = Family::<Labels, Counter>::default();
        let mut names: Vec<(&str, &str)> = HELP.to_vec();
        for name in families.keys() {
            if !HELP.iter().any(|(n, _)| n == name) {
                names.push((name, "Counted by byocd"));
            }
        }
        for (name, help) in names {
            let family = families.get(name).unwrap_or(&empty);
            // The encoder adds `_total` to a counter's name.
            let bare = name.strip_suffix("_total").unwrap_or(name);
            let metric = encoder.encode_descriptor(bare, help, None, MetricType::Counter)?;
            family.encode(metric)?;
        }
        Ok(())
    }
}

/// The label sets of one outbox kind, resolved once.
#[derive(Debug, Clone)]
pub struct KindMeters {
    delivered: Counter,
    latency: Histogram,
    call_ok: Histogram,
    call_failed: Histogram,
}

/// The label sets of one channel's accepted webhooks, resolved once.
#[derive(Debug, Clone)]
pub struct ChannelMeters {
    accepted: Counter,
    duplicate: Counter,
    accept_seconds: Histogram,
}

impl ChannelMeters {
    /// A webhook accepted after `seconds`: events new to byocd, or only duplicates.
    pub fn accepted(&self, only_duplicates: bool, seconds: f64) {
        if only_duplicates {
            self.duplicate.inc();
        } else {
            self.accepted.inc();
        }
        self.accept_seconds.observe(seconds);
    }
}

/// Where a delivery's call went: Salesforce (`isa.*`, `routing.*`) or the channel's provider
/// (`provider.*`).
fn target_of(kind: &str) -> &'static str {
    if kind.starts_with("provider.") {
        "provider"
    } else {
        "salesforce"
    }
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    webhook_seconds: HistogramFamily<ChannelLabels>,
    deliveries: Family<DeliveryLabels, Counter>,
    latency: HistogramFamily<KindLabels>,
    calls: HistogramFamily<CallLabels>,
    mint_seconds: HistogramFamily<OutcomeLabels>,
    named: Arc<Named>,
    kinds: Vec<(&'static str, KindMeters)>,
}

impl Metrics {
    /// A fresh set of metrics, with the label sets of every outbox kind resolved.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "byocd_webhooks",
            "Provider webhooks by channel and outcome (accepted, duplicate, rejected) and, when rejected, why",
            webhooks.clone(),
        );
        let webhook_seconds: HistogramFamily<ChannelLabels> =
            Family::new_with_constructor(accept_histogram);
        registry.register(
            "byocd_webhook_accept_duration_seconds",
            "Time from a webhook's arrival to its answer once its events are committed (accepted or duplicate), by channel",
            webhook_seconds.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "byocd_deliveries",
            "Delivery attempts by outbox kind, outcome (delivered, failed) and the failure's code",
            deliveries.clone(),
        );
        let latency: HistogramFamily<KindLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "byocd_delivery_latency_seconds",
            "Time from the work's acceptance (webhook or Pub/Sub event committed) to its delivery, by outbox kind: isa.* and routing.* kinds reach Salesforce, provider.* kinds reach the provider",
            latency.clone(),
        );
        let calls: HistogramFamily<CallLabels> = Family::new_with_constructor(call_histogram);
        registry.register(
            "byocd_call_duration_seconds",
            "Each delivery call to Salesforce or to the provider by target, endpoint (the outbox kind) and outcome (ok, failed)",
            calls.clone(),
        );
        let mint_seconds: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(call_histogram);
        registry.register(
            "byocd_token_mint_duration_seconds",
            "Each OAuth token mint by outcome (ok, failed)",
            mint_seconds.clone(),
        );
        registry.register(
            "byocd_build",
            "The running byocd: version and build (production, or sandbox with the emulators)",
            Info::new(BuildLabels {
                version: Cow::Borrowed(env!("CARGO_PKG_VERSION")),
                build: Cow::Borrowed(if cfg!(feature = "sandbox") {
                    "sandbox"
                } else {
                    "production"
                }),
            }),
        );
        let named = Arc::new(Named::default());
        registry.register_collector(Box::new(named.clone()));
        registry.register_collector(Box::new(Process));

        let kinds = crate::store::job::KINDS
            .iter()
            .map(|kind| {
                let k = Cow::Borrowed(*kind);
                let call = |outcome: &'static str| {
                    calls.get_or_create_owned(&CallLabels {
                        target: Cow::Borrowed(target_of(kind)),
                        endpoint: k.clone(),
                        outcome: Cow::Borrowed(outcome),
                    })
                };
                let meters = KindMeters {
                    delivered: deliveries.get_or_create_owned(&DeliveryLabels {
                        kind: k.clone(),
                        outcome: Cow::Borrowed("delivered"),
                        code: Cow::Borrowed(""),
                    }),
                    latency: latency.get_or_create_owned(&KindLabels { kind: k.clone() }),
                    call_ok: call("ok"),
                    call_failed: call("failed"),
                };
                (*kind, meters)
            })
            .collect();
        Arc::new(Self {
            registry,
            webhooks,
            webhook_seconds,
            deliveries,
            latency,
            calls,
            mint_seconds,
            named,
            kinds,
        })
    }

    /// The resolved label sets of an outbox kind (`None` for a kind byocd does not know: then
    /// [`Metrics::delivery`] looks it up).
    pub fn kind(&self, kind: &str) -> Option<&KindMeters> {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, m)| m)
    }

    /// A delivery attempt of `kind`: its call took `call_seconds`; delivered, `latency_seconds`
    /// after the work was accepted; or failed with `code`.
    pub fn delivery(&self, kind: &str, call_seconds: f64, result: Result<f64, &str>) {
        match (self.kind(kind), result) {
            (Some(m), Ok(latency)) => {
                m.delivered.inc();
                m.latency.observe(latency);
                m.call_ok.observe(call_seconds);
            }
            (Some(m), Err(code)) => {
                m.call_failed.observe(call_seconds);
                self.count_failed(kind, code);
            }
            (None, result) => {
                let k: Label = Cow::Owned(kind.to_owned());
                let outcome = if result.is_ok() { "ok" } else { "failed" };
                self.calls
                    .get_or_create(&CallLabels {
                        target: Cow::Borrowed(target_of(kind)),
                        endpoint: k.clone(),
                        outcome: Cow::Borrowed(outcome),
                    })
                    .observe(call_seconds);
                match result {
                    Ok(latency) => {
                        self.deliveries
                            .get_or_create(&DeliveryLabels {
                                kind: k.clone(),
                                outcome: Cow::Borrowed("delivered"),
                                code: Cow::Borrowed(""),
                            })
                            .inc();
                        self.latency
                            .get_or_create(&KindLabels { kind: k })
                            .observe(latency);
                    }
                    Err(code) => self.count_failed(kind, code),
                }
            }
        }
    }

    fn count_failed(&self, kind: &str, code: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                kind: Cow::Owned(kind.to_owned()),
                outcome: Cow::Borrowed("failed"),
                code: Cow::Owned(code.to_owned()),
            })
            .inc();
    }

    /// The resolved label sets of a channel's accepted webhooks, kept in `slot` (the channel's
    /// run-time state) after the first use.
    pub fn channel<'a>(
        &self,
        slot: &'a OnceLock<ChannelMeters>,
        channel: &str,
    ) -> &'a ChannelMeters {
        slot.get_or_init(|| {
            let webhook = |outcome: &'static str| {
                self.webhooks.get_or_create_owned(&WebhookLabels {
                    channel: Cow::Owned(channel.to_owned()),
                    outcome: Cow::Borrowed(outcome),
                    reason: Cow::Borrowed(""),
                })
            };
            ChannelMeters {
                accepted: webhook("accepted"),
                duplicate: webhook("duplicate"),
                accept_seconds: self.webhook_seconds.get_or_create_owned(&ChannelLabels {
                    channel: Cow::Owned(channel.to_owned()),
                }),
            }
        })
    }

    /// A webhook refused on `channel` ("" when the channel is unknown) for `reason`.
    pub fn webhook_rejected(&self, channel: &str, reason: &'static str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                channel: Cow::Owned(channel.to_owned()),
                outcome: Cow::Borrowed("rejected"),
                reason: Cow::Borrowed(reason),
            })
            .inc();
    }

    /// A token mint that took `seconds`, counted by org, outcome and reason.
    pub fn token_mint(&self, org_id: &str, outcome: &'static str, reason: &str, seconds: f64) {
        self.named.inc(
            "byocd_token_mints_total",
            &[("org_id", org_id), ("outcome", outcome), ("reason", reason)],
        );
        self.mint_seconds
            .get_or_create(&OutcomeLabels {
                outcome: Cow::Borrowed(outcome),
            })
            .observe(seconds);
    }

    /// Adds one to the counter `name{labels}` (a rare event: the label set is looked up).
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.named.inc(name, labels);
    }

    /// The value of a counter counted through [`Metrics::inc`] (0 if never counted).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        self.named.get(name, labels)
    }

    /// Everything this registry holds, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// Appends everything this registry holds to `out`.
    pub fn render_into(&self, out: &mut String) {
        prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
            .expect("writing to a String cannot fail");
    }
}

/// The process metrics Prometheus's client libraries export under the same names, read from
/// `/proc/self` at each scrape (Linux; nothing elsewhere).
#[derive(Debug)]
struct Process;

/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`, fixed at 100 by the kernel's ABI.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Default, PartialEq)]
struct ProcessFacts {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    threads: Option<i64>,
    virtual_memory_bytes: Option<i64>,
    resident_memory_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl ProcessFacts {
    fn read() -> Self {
        let mut facts = Self::default();
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            facts.apply_stat(&stat, boot_time);
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            facts.resident_memory_bytes = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                .map(|kb| kb * 1024);
        }
        facts.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64);
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            facts.max_fds = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok());
        }
        facts
    }

    /// Reads `/proc/self/stat`: the fields after the command name (which may hold spaces and
    /// parentheses) start after its last `)`.
    fn apply_stat(&mut self, stat: &str, boot_time: Option<f64>) {
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return;
        };
        // `rest` starts with field 3 (state): field n is at index n - 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            self.cpu_seconds = Some((utime + stime) / USER_HZ);
        }
        self.threads = field(20).map(|v| v as i64);
        if let (Some(start), Some(boot)) = (field(22), boot_time) {
            self.start_time_seconds = Some(boot + start / USER_HZ);
        }
        self.virtual_memory_bytes = field(23).map(|v| v as i64);
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::{counter::ConstCounter, gauge::ConstGauge};
        let facts = ProcessFacts::read();
        if let Some(v) = facts.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                facts.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                facts.threads.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                facts.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                facts.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                facts.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                facts.max_fds.map(|v| v as f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        Ok(())
    }
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

    #[test]
    fn deliveries_count_and_time_on_resolved_label_sets() {
        let m = Metrics::new();
        m.delivery("isa.message", 0.02, Ok(0.3));
        m.delivery("isa.message", 0.5, Err("HTTP 503"));
        m.delivery("provider.message", 0.04, Ok(1.5));
        let text = m.render();
        for line in [
            "byocd_deliveries_total{kind=\"isa.message\",outcome=\"delivered\",code=\"\"} 1\n",
            "byocd_deliveries_total{kind=\"isa.message\",outcome=\"failed\",code=\"HTTP 503\"} 1\n",
            "byocd_delivery_latency_seconds_bucket{kind=\"isa.message\",le=\"0.5\"} 1\n",
            "byocd_delivery_latency_seconds_count{kind=\"provider.message\"} 1\n",
            "byocd_call_duration_seconds_count{target=\"salesforce\",endpoint=\"isa.message\",outcome=\"failed\"} 1\n",
            "byocd_call_duration_seconds_count{target=\"provider\",endpoint=\"provider.message\",outcome=\"ok\"} 1\n",
            "byocd_build_info{version=\"",
        ] {
            assert!(text.contains(line), "`{line}` not in:\n{text}");
        }
    }

    #[test]
    fn proc_stat_fields_after_a_command_with_spaces() {
        // pid (comm) state ppid ... utime=14 stime=15 ... num_threads=20 ... starttime=22 vsize=23
        let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 7 0 5000 123456789 300 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let mut facts = ProcessFacts::default();
        facts.apply_stat(stat, Some(1_700_000_000.0));
        assert_eq!(facts.cpu_seconds, Some(4.0));
        assert_eq!(facts.threads, Some(7));
        assert_eq!(facts.start_time_seconds, Some(1_700_000_050.0));
        assert_eq!(facts.virtual_memory_bytes, Some(123_456_789));
    }
}
