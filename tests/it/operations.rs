//! Operating the real `byocd serve` binary as systemd would: readiness and stop notifications on
//! `$NOTIFY_SOCKET`, SIGHUP reloads (a changed, an added and a retired channel apply without a
//! restart while webhooks keep coming; a broken file leaves the running configuration in force
//! and names every problem), and SIGTERM under load (exit 0, and after a restart everything
//! that was answered 200 reaches Salesforce exactly once). On SQLite and on PostgreSQL.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use byocd::{
    sandbox::{
        pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings},
        salesforce::SalesforceEmulator,
    },
    store::{AuditFilter, Store},
};
use support::{
    TestDb,
    channels::{ConfigDir, Endpoints, RCS_CHANNEL, WA_CHANNEL, WA_WEBHOOK_AUTH},
    daemon::{Daemon, Launcher, WebhookSender},
    harness::wa_text,
    salesforce::{MSG_ADDRESS, ORG_ID, emulator_and_config, emulator_settings},
};
use tokio::net::UnixDatagram;

/// Quick retries and a short lease, so the tests do not wait on production timings.
const RELAY: &str = r#"
[relay]
lease = "3s"
poll_interval = "50ms"
retry_schedule = ["200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s"]
"#;

const SEND_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A stand-in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        Self {
            socket,
            path,
            _dir: dir,
        }
    }

    /// Waits for a notification containing `line` (as a whole line); returns the datagram.
    async fn expect(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no `{line}` notification within 30 s"))
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.lines().any(|l| l == line) {
                return text;
            }
        }
    }
}

async fn health(client: &reqwest::Client, daemon: &Daemon) -> serde_json::Value {
    client
        .get(format!("{}/readyz", daemon.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    daemon: &Daemon,
    channel: &str,
    auth: &str,
    body: &serde_json::Value,
) -> u16 {
    client
        .post(format!("{}/webhooks/{channel}", daemon.url()))
        .header("authorization", auth)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn scrape(client: &reqwest::Client, daemon: &Daemon) -> String {
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    let addr = log
        .lines()
        .find(|l| l.contains("byocd ready"))
        .and_then(|l| l.split("metrics=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the ready line names the metrics address")
        .to_owned();
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `series` (name and labels exactly), 0 if absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// How many times each text reached the emulator's 8x8 channel.
fn arrived(emulator: &SalesforceEmulator) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for c in emulator
        .conversations()
        .into_iter()
        .filter(|c| c.channel_address_identifier == MSG_ADDRESS)
    {
        for e in &c.entries {
            if let Some(t) = e.text() {
                *out.entry(t.to_owned()).or_default() += 1;
            }
        }
    }
    out
}

async fn wait_delivered(emulator: &SalesforceEmulator, texts: &[String], daemon: &Daemon) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let got = arrived(emulator);
        let missing: Vec<&String> = texts.iter().filter(|t| !got.contains_key(*t)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted messages never reached Salesforce (first: {:?}); log ends:\n{}",
            missing.len(),
            texts.len(),
            missing.first(),
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The channel file of a second 8x8 channel, beside the test's two.
fn extra_channel(dir: &Path) -> String {
    let wa =
        std::fs::read_to_string(dir.join("channels.d").join(format!("{WA_CHANNEL}.toml"))).unwrap();
    wa.replace(MSG_ADDRESS, "acme-whatsapp-eu-address")
}

async fn sighup_applies_changed_added_and_retired_channels_and_a_broken_file_changes_nothing(
    db: TestDb,
) {
    let _turn = support::exclusive().await;
    let (emulator, config) = emulator_and_config(RELAY).await;
    let channels_d = config.path().join("channels.d");
    let notify = NotifySocket::bind();
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path())
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .env("WATCHDOG_USEC", "400000");
    let daemon = launcher.start("reload").await;
    let ready = notify.expect("READY=1").await;
    assert!(ready.contains("STATUS=ready: listen="), "{ready}");
    // WatchdogSec=0.4s: pinged every 0.2 s.
    notify.expect("WATCHDOG=1").await;
    let client = reqwest::Client::new();
    let hash_before = health(&client, &daemon).await["config_hash"]
        .as_str()
        .unwrap()
        .to_owned();

    // Webhooks keep coming on the 8x8 channel throughout.
    let address = Arc::new(RwLock::new(daemon.url()));
    let sender = WebhookSender::new(4);
    let stop_sending = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stream = {
        let (sender, address, stop, sent) = (
            sender.clone(),
            address.clone(),
            stop_sending.clone(),
            sent.clone(),
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + SEND_TIMEOUT;
            let mut n = 0;
            while stop.load(Relaxed) == 0 && n < 2_000 {
                let text = format!("reload stream message {n:04}");
                let body = wa_text(&format!("reload-{n:04}"), "+447700900123", &text);
                let answer = sender
                    .post_until_accepted(
                        || address.read().unwrap().clone(),
                        &format!("/webhooks/{WA_CHANNEL}"),
                        WA_WEBHOOK_AUTH,
                        &body,
                        deadline,
                    )
                    .await;
                assert_eq!(answer["new"], 1, "{answer}");
                sent.lock().unwrap().push(text);
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Before: the extra channel is unknown, the Kaleyra channel answers.
    let eu = wa_text("eu-1", "+447700900999", "hello from the new channel");
    // An unknown channel answers as refused credentials do (401): no channel enumeration.
    assert_eq!(
        post(&client, &daemon, "acme-whatsapp-eu", WA_WEBHOOK_AUTH, &eu).await,
        401
    );
    let rcs_probe = serde_json::json!({ "not": "a kaleyra webhook" });
    assert_ne!(
        post(
            &client,
            &daemon,
            RCS_CHANNEL,
            "Basic a2FsZXlyYTpjYWxsYmFjaw==",
            &rcs_probe
        )
        .await,
        401
    );

    // Change the 8x8 channel, add a second one, retire the Kaleyra one; SIGHUP.
    let wa_file = channels_d.join(format!("{WA_CHANNEL}.toml"));
    let wa = std::fs::read_to_string(&wa_file).unwrap();
    std::fs::write(
        &wa_file,
        wa.replace("[provider]", "[features]\ntyping = false\n\n[provider]"),
    )
    .unwrap();
    std::fs::write(
        channels_d.join("acme-whatsapp-eu.toml"),
        extra_channel(config.path()),
    )
    .unwrap();
    std::fs::remove_file(channels_d.join(format!("{RCS_CHANNEL}.toml"))).unwrap();
    let mark = daemon.log_len();
    // The stream is flowing before the reload…
    let before_reload = sender.wait_accepted(1, Instant::now() + SEND_TIMEOUT).await;
    daemon.signal("HUP");
    notify.expect("RELOADING=1").await;
    let reloaded = notify.expect("READY=1").await;
    assert!(reloaded.contains("(reloaded)"), "{reloaded}");
    let log = daemon.wait_for_log("reload: applied", mark).await;
    assert!(log.contains("acme-whatsapp-eu"), "{log}");
    // …and goes on through it.
    sender
        .wait_accepted(before_reload + 1, Instant::now() + SEND_TIMEOUT)
        .await;

    // After: the same process answers with the new configuration.
    let hash_after = health(&client, &daemon).await["config_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        hash_before, hash_after,
        "the configuration hash in force changed"
    );
    assert_eq!(
        post(&client, &daemon, "acme-whatsapp-eu", WA_WEBHOOK_AUTH, &eu).await,
        200
    );
    assert_eq!(
        post(
            &client,
            &daemon,
            RCS_CHANNEL,
            "Basic a2FsZXlyYTpjYWxsYmFjaw==",
            &rcs_probe
        )
        .await,
        401,
        "the retired channel takes no more webhooks"
    );

    // A broken channel file: the reload is refused, every problem logged, nothing changes.
    std::fs::write(
        channels_d.join("broken.toml"),
        "org_id = \"00D000000000001AAA\"\nproduct = \"Messaging\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let mark = daemon.log_len();
    let before_refusal = sender.accepted();
    daemon.signal("HUP");
    let log = daemon.wait_for_log("reload refused", mark).await;
    sender
        .wait_accepted(before_refusal + 1, Instant::now() + SEND_TIMEOUT)
        .await;
    for needle in ["broken.toml:org_id", "broken.toml:colour"] {
        assert!(
            log.contains(needle),
            "`{needle}` not named in the log:\n{log}"
        );
    }
    let hash_kept = health(&client, &daemon).await["config_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hash_kept, hash_after, "the running configuration stayed");
    let eu2 = wa_text("eu-2", "+447700900999", "still here after a refused reload");
    assert_eq!(
        post(&client, &daemon, "acme-whatsapp-eu", WA_WEBHOOK_AUTH, &eu2).await,
        200
    );

    // Stop the stream; everything it had accepted reaches Salesforce, once.
    stop_sending.store(1, Relaxed);
    stream.await.unwrap();
    let sent = sent.lock().unwrap().clone();
    wait_delivered(&emulator, &sent, &daemon).await;
    let got = arrived(&emulator);
    for t in &sent {
        assert_eq!(got[t], 1, "{t} reached Salesforce {} times", got[t]);
    }
    assert_eq!(
        sender.retries.load(Relaxed),
        0,
        "no webhook had to be retried"
    );

    // The metrics listener tells the same story.
    let metrics = scrape(&client, &daemon).await;
    for line in [
        "byocd_config_reloads_total{outcome=\"applied\"} 1",
        "byocd_config_reloads_total{outcome=\"refused\"} 1",
        "byocd_webhooks_total{channel=\"\",outcome=\"rejected\",reason=\"unknown_channel\"} 2",
        "byocd_webhooks_total{channel=\"acme-whatsapp-eu\",outcome=\"accepted\",reason=\"\"} 2",
        "byocd_token_mints_total{org_id=\"00D000000000001\",outcome=\"ok\",reason=\"no stored token\"} 1",
        "byocd_store_up 1",
    ] {
        assert!(
            metrics.contains(line),
            "`{line}` not in /metrics:\n{metrics}"
        );
    }
    let accepted = metric(
        &metrics,
        "byocd_webhooks_total{channel=\"acme-whatsapp\",outcome=\"accepted\",reason=\"\"}",
    );
    assert_eq!(accepted as usize, sent.len(), "{metrics}");
    let delivered = metric(
        &metrics,
        "byocd_deliveries_total{kind=\"isa.message\",outcome=\"delivered\",code=\"\"}",
    );
    assert!(delivered as usize >= sent.len(), "{metrics}");
    // This test's Pub/Sub endpoint never answers and no sweep has run yet: those families are
    // there, without a sample (no -1 or 0 standing for "not yet").
    for family in [
        "byocd_outbox_depth",
        "byocd_outbox_oldest_age_seconds",
        "# TYPE byocd_pubsub_lag_seconds gauge",
        "# TYPE byocd_pubsub_last_event_timestamp_seconds gauge",
        "byocd_pubsub_streams_total{org_id=\"00D000000000001\",topic=\"/event/Acme_Event__e\"}",
        "# TYPE byocd_sweep_last_success_timestamp_seconds gauge",
        "byocd_sweep_stale{channel=\"acme-whatsapp-eu\"} 0",
        "byocd_routings",
        "byocd_remediation_actions_total",
        "byocd_channel_paused",
    ] {
        assert!(
            metrics.contains(family),
            "`{family}` not in /metrics:\n{metrics}"
        );
    }
    for sentinel in [
        "} -1\n",
        "byocd_sweep_last_success_timestamp_seconds{channel=\"acme-whatsapp-eu\"} 0\n",
    ] {
        assert!(
            !metrics.contains(sentinel),
            "`{sentinel}` in /metrics:\n{metrics}"
        );
    }

    // SIGTERM: STOPPING=1, exit 0.
    let mut daemon = daemon;
    daemon.signal("TERM");
    notify.expect("STOPPING=1").await;
    assert!(
        daemon.stop(Duration::from_secs(30)).await,
        "exit 0 after SIGTERM"
    );

    // The audit trail says what happened, with both hashes (read once the daemon is gone:
    // SQLite admits one daemon).
    let store = db.open().await;
    let rows = store
        .audit(&AuditFilter {
            kind: Some("config".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let applied = rows
        .iter()
        .find(|r| r.entry.kind == "config.reloaded")
        .expect("config.reloaded");
    assert_eq!(applied.entry.detail["old_hash"], hash_before.as_str());
    assert_eq!(applied.entry.detail["new_hash"], hash_after.as_str());
    assert_eq!(
        applied.entry.detail["channels"]["added"],
        serde_json::json!(["acme-whatsapp-eu"])
    );
    assert_eq!(
        applied.entry.detail["channels"]["changed"],
        serde_json::json!([WA_CHANNEL])
    );
    assert_eq!(
        applied.entry.detail["channels"]["retired"],
        serde_json::json!([RCS_CHANNEL])
    );
    let refused = rows
        .iter()
        .find(|r| r.entry.kind == "config.reload_failed")
        .expect("config.reload_failed");
    assert_eq!(refused.entry.detail["old_hash"], hash_after.as_str());
    assert!(
        refused.entry.detail["problems"].as_array().unwrap().len() >= 2,
        "{}",
        refused.entry.detail
    );
    let channels = store.channels().await.unwrap();
    let rcs = channels.iter().find(|c| c.name == RCS_CHANNEL).unwrap();
    assert!(
        rcs.retired_at.is_some(),
        "the Kaleyra channel is retired in the store"
    );
    store.close().await;
}

async fn sigterm_under_load_exits_zero_and_loses_nothing(db: TestDb) {
    let _turn = support::exclusive().await;
    // Slow Salesforce: deliveries are in flight when SIGTERM comes.
    let (emulator, config) = emulator_and_config(RELAY).await;
    emulator.delay("/api/v1/interactions", Duration::from_millis(150), 100_000);
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let mut daemon = launcher.start("term-0").await;
    let address = Arc::new(RwLock::new(daemon.url()));

    const CONVERSATIONS: usize = 30;
    const PER_CONVERSATION: usize = 20;
    let sender = WebhookSender::new(12);
    let deadline = Instant::now() + SEND_TIMEOUT;
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..CONVERSATIONS {
        let (sender, address) = (sender.clone(), address.clone());
        senders.spawn(async move {
            let user = format!("+4477007{c:05}");
            let mut texts = Vec::new();
            for n in 0..PER_CONVERSATION {
                let text = format!("term test {user} message {n:03}");
                let body = wa_text(&format!("term-{c:03}-{n:03}"), &user, &text);
                let answer = sender
                    .post_until_accepted(
                        || address.read().unwrap().clone(),
                        &format!("/webhooks/{WA_CHANNEL}"),
                        WA_WEBHOOK_AUTH,
                        &body,
                        deadline,
                    )
                    .await;
                assert_eq!(answer["status"], "accepted", "{answer}");
                texts.push(text);
            }
            texts
        });
    }
    // Stop in the middle of the load.
    let total = CONVERSATIONS * PER_CONVERSATION;
    sender.wait_accepted(total / 3, deadline).await;
    let accepted_at_stop = sender.accepted();
    let delivered_at_stop = arrived(&emulator).len();
    let stopping = Instant::now();
    assert!(
        daemon.stop(Duration::from_secs(60)).await,
        "byocd did not exit 0 within 60 s of SIGTERM; log ends:\n{}",
        daemon.log_tail(30)
    );
    let stop_took = stopping.elapsed();
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(log.contains("stopping: no new webhooks"), "{log}");
    eprintln!(
        "sigterm: {accepted_at_stop}/{total} accepted, {delivered_at_stop} delivered when stopped; \
         exit 0 after {} ms",
        stop_took.as_millis()
    );

    // Restart; the senders retry what found nobody listening.
    daemon = launcher.start("term-1").await;
    *address.write().unwrap() = daemon.url();
    let mut texts = Vec::new();
    while let Some(joined) = senders.join_next().await {
        texts.extend(joined.unwrap());
    }
    assert_eq!(texts.len(), total);
    wait_delivered(&emulator, &texts, &daemon).await;
    let got = arrived(&emulator);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "delivered more than once after a clean stop: {twice:?}"
    );
    assert!(daemon.stop(Duration::from_secs(30)).await);
}

/// JSON logs: every line is one JSON object; lines about a delivery carry the channel and the
/// conversation id (at debug, where deliveries are narrated); no message body appears at info
/// or above, and no secret at any level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_channel_and_conversation_and_hold_no_body_or_secret() {
    let _turn = support::exclusive().await;
    let db = TestDb::sqlite().await;
    let (emulator, config) = emulator_and_config(RELAY).await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path())
        .env("BYOCD__LOG__FORMAT", "json")
        .env(
            "RUST_LOG",
            "debug,sqlx=warn,hyper=info,h2=info,tonic=info,reqwest=info",
        );
    let mut daemon = launcher.start("json").await;
    let client = reqwest::Client::new();
    let body_text = "my card number is 4111 1111 1111 1111";
    let body = wa_text("json-1", "+447700900555", body_text);
    assert_eq!(
        post(&client, &daemon, WA_CHANNEL, WA_WEBHOOK_AUTH, &body).await,
        200
    );
    wait_delivered(&emulator, &[body_text.to_owned()], &daemon).await;
    assert!(daemon.stop(Duration::from_secs(30)).await);

    let text = std::fs::read_to_string(&daemon.log).unwrap();
    let mut delivery_lines = 0;
    let mut info = String::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        if value["level"] != "DEBUG" && value["level"] != "TRACE" {
            info.push_str(line);
            info.push('\n');
        }
        // The channels' capability registrations at start belong to no conversation.
        if let Some(span) = value
            .get("span")
            .filter(|s| s["name"] == "deliver" && s["kind"] != "isa.capabilities")
        {
            delivery_lines += 1;
            assert_eq!(span["channel"], WA_CHANNEL, "{line}");
            assert!(
                span["conversation_id"]
                    .as_str()
                    .is_some_and(|c| c.contains('-')),
                "no conversation id: {line}"
            );
        }
    }
    assert!(delivery_lines > 0, "no line about the delivery:\n{text}");
    let secrets = [
        support::channels::WA_API_KEY,
        WA_WEBHOOK_AUTH,
        "8x8-webhook-secret-for-tests",
        "PRIVATE KEY",
    ];
    // Parts of the body that no timestamp, port, PID or id in a log line can spell by chance
    // (a bare "4111" can: "10:41:07.341112Z").
    for needle in [body_text, "card number", "4111 1111"] {
        assert!(
            !info.contains(needle),
            "an info line holds `{needle}`:\n{info}"
        );
    }
    for needle in secrets {
        assert!(!text.contains(needle), "the log holds `{needle}`:\n{text}");
    }
    let key = std::fs::read_to_string(config.path().join("secrets/token.key")).unwrap();
    assert!(!text.contains(key.trim()), "the log holds the token key");
}

/// Issue 14: an idle topic whose server sends no response headers until its first keep-alive
/// (here an hour away) must not hold readiness back: ready means the Subscribe call was made,
/// not that the stream has answered.
#[tokio::test]
async fn ready_does_not_wait_for_an_idle_stream_to_answer() {
    let _turn = support::exclusive().await;
    let salesforce = SalesforceEmulator::start(emulator_settings())
        .await
        .unwrap();
    let mut settings = PubSubSettings::new(
        ORG_ID,
        vec![TopicSettings::new("/event/Acme_Event__e")],
        TokenCheck::Salesforce(salesforce.clone()),
    );
    settings.keepalive_interval = Duration::from_secs(3600);
    settings.headers_with_first_response = true;
    let pubsub = PubSubEmulator::start(settings).await.unwrap();
    let config = ConfigDir::write(
        &Endpoints {
            salesforce: salesforce.base_url(),
            pubsub: pubsub.endpoint(),
            ..Endpoints::default()
        },
        RELAY,
        "",
    );
    let db = TestDb::sqlite().await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let started = Instant::now();
    let mut daemon = launcher.start("idle-topic").await;
    let took = started.elapsed();
    let text = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(
        !text.contains("has not opened its stream yet"),
        "readiness waited out its bound instead of seeing the subscription made:\n{text}"
    );
    // The Subscribe call reaches the server (it may land a moment after ready), and the stream
    // sends nothing back, not even headers, for an hour.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pubsub.fetch_requests().iter().any(|f| f.first) {
        assert!(
            Instant::now() < deadline,
            "the Subscribe call's first FetchRequest never reached Pub/Sub"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("start to ready with an idle topic: {took:?}");
    assert!(
        daemon.stop(Duration::from_secs(30)).await,
        "SIGTERM stops it"
    );
}

on_both_backends!(
    sighup_applies_changed_added_and_retired_channels_and_a_broken_file_changes_nothing,
    sigterm_under_load_exits_zero_and_loses_nothing,
);
