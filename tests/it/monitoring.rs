//! Issue 19: what an operator watches. The real daemon's `/metrics` parsed with a Prometheus
//! text-format parser (histograms, build info, process metrics, no negative sentinel), and the
//! shipped Grafana dashboard and alert rules (docs/monitoring/) checked to reference only
//! metrics that daemon exports. On SQLite and on PostgreSQL (the database gauges come from
//! the store).
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use prometheus_parse::{Sample, Scrape, Value};
use support::{
    TestDb,
    channels::{WA_CHANNEL, WA_WEBHOOK_AUTH},
    daemon::{Daemon, Launcher},
    harness::wa_text,
    salesforce::emulator_and_config,
};

const RELAY: &str = r#"
[relay]
lease = "3s"
poll_interval = "50ms"
"#;

/// The metrics address from the daemon's ready line.
fn metrics_addr(daemon: &Daemon) -> String {
    std::fs::read_to_string(&daemon.log)
        .unwrap()
        .lines()
        .find(|l| l.contains("byocd ready"))
        .and_then(|l| l.split("metrics=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the ready line names the metrics address")
        .to_owned()
}

async fn scrape(client: &reqwest::Client, addr: &str) -> (String, Scrape) {
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse ({e}):\n{text}"));
    (text, scrape)
}

fn samples<'a>(scrape: &'a Scrape, metric: &str) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .collect()
}

/// The observation count of the histogram `metric` whose labels include `labels`.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> u64 {
    samples(scrape, metric)
        .into_iter()
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count) as u64,
            other => panic!("{metric} is not a histogram: {other:?}"),
        })
        .sum()
}

/// Every metric name in the text, each as exported: a histogram by its family name.
fn exported(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .docs
        .keys()
        .cloned()
        .chain(scrape.samples.iter().map(|s| s.metric.clone()))
        .collect()
}

/// The metric names a PromQL expression reads (`byocd_*`, `process_*`), without the
/// `_bucket`/`_sum`/`_count` of a histogram's series.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if starts_word && (rest.starts_with("byocd_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

fn known(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| exported.contains(family))
        })
}

/// Every `expr` in the dashboard's panels, wherever they nest.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

async fn metrics_parse_with_histograms_and_the_dashboard_and_rules_use_only_exported_metrics(
    db: TestDb,
) {
    let _turn = support::exclusive().await;
    let (_emulator, config) = emulator_and_config(RELAY).await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let mut daemon = launcher.start("metrics").await;
    let client = reqwest::Client::new();

    // Two end-user messages reach Salesforce; a webhook for an unknown channel is refused.
    for n in 0..2 {
        let text = format!("metrics message {n}");
        let answer = client
            .post(format!("{}/webhooks/{WA_CHANNEL}", daemon.url()))
            .header("authorization", WA_WEBHOOK_AUTH)
            .json(&wa_text(&format!("metrics-{n}"), "+447700900123", &text))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let refused = client
        .post(format!("{}/webhooks/no-such-channel", daemon.url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Wait until /metrics has counted both deliveries and the database gauges were read.
    let addr = metrics_addr(&daemon);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (text, scrape) = loop {
        let (text, scrape) = scrape(&client, &addr).await;
        let delivered = histogram_count(
            &scrape,
            "byocd_delivery_latency_seconds",
            &[("kind", "isa.message")],
        );
        if delivered >= 2 && !samples(&scrape, "byocd_store_up").is_empty() {
            break (text, scrape);
        }
        assert!(
            Instant::now() < deadline,
            "two deliveries never counted; /metrics:\n{text}\nlog:\n{}",
            daemon.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The histograms an operator reads.
    assert_eq!(
        histogram_count(
            &scrape,
            "byocd_webhook_accept_duration_seconds",
            &[("channel", WA_CHANNEL)]
        ),
        2,
        "{text}"
    );
    assert!(
        histogram_count(
            &scrape,
            "byocd_call_duration_seconds",
            &[
                ("target", "salesforce"),
                ("endpoint", "isa.message"),
                ("outcome", "ok")
            ]
        ) >= 2,
        "{text}"
    );
    assert!(
        histogram_count(
            &scrape,
            "byocd_token_mint_duration_seconds",
            &[("outcome", "ok")]
        ) >= 1,
        "{text}"
    );
    // provider.* kinds (Pub/Sub event to provider) are exported before their first delivery.
    assert_eq!(
        histogram_count(
            &scrape,
            "byocd_delivery_latency_seconds",
            &[("kind", "provider.message")]
        ),
        0
    );
    assert!(
        samples(&scrape, "byocd_delivery_latency_seconds")
            .iter()
            .any(|s| s.labels.get("kind") == Some("provider.message")),
        "{text}"
    );

    // Counters keep their names; the refusal is counted by reason.
    let refusals: f64 = samples(&scrape, "byocd_webhooks_total")
        .iter()
        .filter(|s| s.labels.get("reason") == Some("unknown_channel"))
        .map(|s| match s.value {
            Value::Counter(v) => v,
            ref other => panic!("byocd_webhooks_total is not a counter: {other:?}"),
        })
        .sum();
    assert_eq!(refusals, 1.0, "{text}");

    // Build info and process metrics.
    let build = samples(&scrape, "byocd_build_info");
    assert_eq!(build.len(), 1, "{text}");
    assert_eq!(
        build[0].labels.get("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(build[0].labels.get("build"), Some("sandbox"));
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        let value = match samples(&scrape, name).first().map(|s| &s.value) {
            Some(Value::Gauge(v)) => *v,
            other => panic!("{name}: {other:?}\n{text}"),
        };
        assert!(value > 0.0, "{name} = {value}");
    }
    assert!(
        !samples(&scrape, "process_cpu_seconds_total").is_empty(),
        "{text}"
    );

    // No sentinel: no gauge is negative.
    for s in &scrape.samples {
        if let Value::Gauge(v) = s.value {
            assert!(v >= 0.0, "{} {:?} = {v}", s.metric, s.labels);
        }
    }

    // The dashboard and the alert rules read only what this daemon exports.
    let names = exported(&scrape);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("byocd-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{} panel queries", exprs.len());
    let rules = std::fs::read_to_string(root.join("byocd-alerts.yml")).unwrap();
    let rule_exprs: Vec<String> = rules
        .split("expr:")
        .skip(1)
        .map(|e| e.split("\n        for:").next().unwrap().to_owned())
        .map(|e| e.split("\n        labels:").next().unwrap().to_owned())
        .collect();
    assert!(rule_exprs.len() >= 14, "{} rules", rule_exprs.len());
    let mut referenced = BTreeSet::new();
    for expr in exprs.iter().chain(&rule_exprs) {
        for name in metric_names(expr) {
            assert!(
                known(&name, &names),
                "`{name}` (in `{}`) is not exported by byocd; it exports:\n{names:#?}",
                expr.trim()
            );
            referenced.insert(name);
        }
    }
    assert!(referenced.len() >= 20, "{referenced:?}");

    assert!(daemon.stop(Duration::from_secs(30)).await);
}

#[test]
fn metric_names_are_read_from_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.95, sum by (le) (rate(byocd_delivery_latency_seconds_bucket{instance=~\"$instance\"}[5m]))) / process_open_fds"
        ),
        ["byocd_delivery_latency_seconds_bucket", "process_open_fds"]
    );
    let exported: BTreeSet<String> = ["byocd_delivery_latency_seconds".to_owned()].into();
    assert!(known("byocd_delivery_latency_seconds_bucket", &exported));
    assert!(!known("byocd_delivery_latency_bucket", &exported));
    assert!(!known("byocd_no_such_metric", &exported));
}

on_both_backends!(
    metrics_parse_with_histograms_and_the_dashboard_and_rules_use_only_exported_metrics,
);
