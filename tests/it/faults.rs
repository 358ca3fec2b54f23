//! Faults under load (issue 20): the real `byocd serve` binary takes a stream of 8x8 webhooks
//! across many conversations while the test takes its database away — a PostgreSQL cluster of
//! the test's own, stopped and started again, and its sessions terminated — and afterwards every
//! webhook answered 200 has reached Salesforce exactly once, in order per conversation, and the
//! Pub/Sub subscriber has carried on by itself. `scripts/soak.sh` runs the same at a larger
//! scale (`BYOCD_SOAK=1`); the figures go to docs/reliability.md.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use byocd::{
    clock::Clock,
    config::EightByEightChannel,
    sandbox::{
        eightbyeight::{EightByEightEmulator, EightByEightSettings},
        pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings},
        rep::Rep,
        salesforce::{Failure, SalesforceEmulator},
    },
    store::{AnyStore, AuditFilter, OutboxFilter, Store},
};
use support::{
    TestDb,
    channels::{ConfigDir, Endpoints, WA_API_KEY, WA_CHANNEL, WA_SUB_ACCOUNT, WA_WEBHOOK_AUTH},
    daemon::{Daemon, Launcher, WebhookSender},
    harness::{Harness, wa_text as wa_text_at_fixed_time},
    pg_cluster::PgCluster,
    salesforce::{MSG_ADDRESS, emulator_settings},
};

/// The platform event both channels read.
const TOPIC: &str = "/event/Acme_Event__e";

/// Whether this is the soak's larger run (`BYOCD_SOAK=1`, set by scripts/soak.sh).
pub fn soak() -> bool {
    std::env::var("BYOCD_SOAK").is_ok_and(|v| v == "1")
}

/// Appends one line of figures to `$BYOCD_SOAK_FIGURES` when set (scripts/soak.sh collects
/// them into docs/reliability.md); always prints it.
pub fn figure(line: &str) {
    eprintln!("{line}");
    if let Ok(path) = std::env::var("BYOCD_SOAK_FIGURES") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// An 8x8 inbound text stamped now: the rep's answers in these tests go out inside WhatsApp's
/// 24-hour window, which runs from the provider's timestamp on the daemon's real clock.
fn wa_text(umid: &str, msisdn: &str, text: &str) -> serde_json::Value {
    let mut body = wa_text_at_fixed_time(umid, msisdn, text);
    body["payload"]["timestamp"] = chrono::Utc::now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .into();
    body
}

fn msisdn(conversation: usize) -> String {
    format!("+4477007{conversation:05}")
}

fn text(conversation: usize, n: usize) -> String {
    format!("fault test {} message {n:04}", msisdn(conversation))
}

/// The emulators of both directions on 127.0.0.1, and a configuration pointing at them.
struct World {
    salesforce: SalesforceEmulator,
    pubsub: PubSubEmulator,
    wa: EightByEightEmulator,
    rep: Rep,
    config: ConfigDir,
}

async fn world(relay: &str) -> World {
    let salesforce = SalesforceEmulator::start(emulator_settings())
        .await
        .unwrap();
    let mut settings = PubSubSettings::new(
        support::salesforce::ORG_ID,
        vec![TopicSettings::new(TOPIC)],
        TokenCheck::Salesforce(salesforce.clone()),
    );
    settings.keepalive_interval = Duration::from_millis(500);
    let pubsub = PubSubEmulator::start(settings).await.unwrap();
    let wa = EightByEightEmulator::start(EightByEightSettings::new(
        WA_SUB_ACCOUNT,
        EightByEightChannel::Whatsapp,
        WA_API_KEY,
    ))
    .await
    .unwrap();
    let config = ConfigDir::write(
        &Endpoints {
            salesforce: salesforce.base_url(),
            eightbyeight: wa.base_url(),
            pubsub: pubsub.endpoint(),
            ..Endpoints::default()
        },
        &format!("\n[pubsub]\ninitial_replay = \"earliest\"\n{relay}"),
        "",
    );
    let rep = Rep::new(salesforce.clone(), pubsub.clone());
    World {
        salesforce,
        pubsub,
        wa,
        rep,
        config,
    }
}

/// The provider: one task per conversation, each message sent once the previous one was
/// answered 200, every webhook retried until it is (to whichever address `addresses` holds,
/// round robin when there are several).
fn send_all(
    sender: &WebhookSender,
    addresses: Arc<RwLock<Vec<String>>>,
    conversations: usize,
    messages: usize,
    deadline: Instant,
) -> tokio::task::JoinSet<()> {
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..conversations {
        let sender = sender.clone();
        let addresses = addresses.clone();
        senders.spawn(async move {
            let user = msisdn(c);
            for n in 0..messages {
                let body = wa_text(&format!("fault-{c:04}-{n:04}"), &user, &text(c, n));
                let answer = sender
                    .post_until_accepted(
                        || {
                            let a = addresses.read().unwrap();
                            a[(c + n) % a.len()].clone()
                        },
                        &format!("/webhooks/{WA_CHANNEL}"),
                        WA_WEBHOOK_AUTH,
                        &body,
                        deadline,
                    )
                    .await;
                assert_eq!(answer["status"], "accepted", "{answer}");
            }
        });
    }
    senders
}

async fn join_all(mut senders: tokio::task::JoinSet<()>) {
    while let Some(joined) = senders.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Per end user, the texts Salesforce holds, in order of arrival, with their entry ids.
fn at_salesforce(emulator: &SalesforceEmulator) -> HashMap<String, Vec<(String, String)>> {
    emulator
        .conversations()
        .into_iter()
        .filter(|c| c.channel_address_identifier == MSG_ADDRESS)
        .map(|c| {
            let texts = c
                .entries
                .iter()
                .filter_map(|e| e.text().map(|t| (t.to_owned(), e.id.clone())))
                .collect();
            (c.end_user_client_id, texts)
        })
        .collect()
}

/// How many of the texts sent are not yet at Salesforce.
fn missing(emulator: &SalesforceEmulator, conversations: usize, messages: usize) -> usize {
    let got = at_salesforce(emulator);
    (0..conversations)
        .map(|c| {
            let have: HashSet<&str> = got
                .get(&msisdn(c))
                .map(|v| v.iter().map(|(t, _)| t.as_str()).collect())
                .unwrap_or_default();
            (0..messages)
                .filter(|n| !have.contains(text(c, *n).as_str()))
                .count()
        })
        .sum()
}

/// Checks every conversation at Salesforce: the texts sent, in order of first appearance, a text
/// seen again only under the same entry id (a redelivery, never a second interaction). Returns
/// the number of redeliveries.
fn check_order(emulator: &SalesforceEmulator, conversations: usize, messages: usize) -> usize {
    let got = at_salesforce(emulator);
    let mut duplicates = 0;
    for c in 0..conversations {
        let user = msisdn(c);
        let entries = got
            .get(&user)
            .unwrap_or_else(|| panic!("Salesforce has no conversation with {user}"));
        let mut first_seen = Vec::new();
        let mut id_of: HashMap<&str, &str> = HashMap::new();
        for (text, id) in entries {
            match id_of.get(text.as_str()) {
                Some(first) => {
                    assert_eq!(
                        first, id,
                        "{user}: {text:?} arrived twice under two entry ids"
                    );
                    duplicates += 1;
                }
                None => {
                    id_of.insert(text, id);
                    first_seen.push(text.clone());
                }
            }
        }
        let sent: Vec<String> = (0..messages).map(|n| text(c, n)).collect();
        assert_eq!(
            first_seen, sent,
            "{user}: the order of first appearance at Salesforce is not the order sent"
        );
    }
    duplicates
}

/// Waits (bounded) until every text sent is at Salesforce and no outbox row is unfinished.
async fn drain(
    emulator: &SalesforceEmulator,
    url: &str,
    conversations: usize,
    messages: usize,
    within: Duration,
    daemons: &[&Daemon],
) {
    let deadline = Instant::now() + within;
    loop {
        let left = missing(emulator, conversations, messages);
        let open = count(url, "SELECT COUNT(*) FROM outbox WHERE status <> 'done'").await;
        if left == 0 && open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} messages not at Salesforce and {open} rows unfinished {within:?} after the \
             last webhook was answered; logs end:\n{}",
            daemons
                .iter()
                .map(|d| d.log_tail(30))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One count over a plain connection beside whatever is running.
pub async fn count(url: &str, query: &str) -> i64 {
    use sqlx::Connection;
    let query = sqlx::AssertSqlSafe(query.to_owned());
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(query).fetch_one(&mut conn).await.unwrap();
        n
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(&options.read_only(true))
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as(query).fetch_one(&mut conn).await.unwrap();
        n
    }
}

/// `GET /readyz`'s status.
async fn ready(client: &reqwest::Client, daemon: &Daemon) -> u16 {
    client
        .get(format!("{}/readyz", daemon.url()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits (bounded) until `/readyz` answers `status`.
async fn wait_ready(client: &reqwest::Client, daemon: &Daemon, status: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ready(client, daemon).await == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} {what}; the log ends:\n{}",
            daemon.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until the 8x8 emulator has received `texts`, in this order, each once.
async fn wait_rep_messages(wa: &EightByEightEmulator, texts: &[String], daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent: Vec<String> = wa
            .sent_messages()
            .into_iter()
            .filter_map(|m| m.content["text"].as_str().map(str::to_owned))
            .collect();
        if sent.len() >= texts.len() {
            assert_eq!(sent, texts, "the rep's messages, each once, in order");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {sent:?} of the rep's messages reached 8x8; the log ends:\n{}",
            daemon.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 1: PostgreSQL restarts under load. The daemon keeps running; while the database is gone
/// `/readyz` answers 503 and a webhook is answered 503 (nothing half-written: the provider's
/// retry is what commits it); the relay and the Pub/Sub subscriber resume by themselves; every
/// webhook answered 200 reaches Salesforce exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_under_load_lose_nothing_and_duplicate_nothing() {
    let _turn = support::exclusive().await;
    let (conversations, messages, restarts, outage) = if soak() {
        (200, 50, 5, Duration::from_secs(5))
    } else {
        (40, 15, 2, Duration::from_millis(1500))
    };
    let total = conversations * messages;
    let cluster = PgCluster::start();
    let url = cluster.url.clone();
    let w = world(
        r#"
[relay]
lease = "30s"
poll_interval = "50ms"
retry_schedule = ["200ms", "500ms", "1s"]
"#,
    )
    .await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&w.config.main_file, &url, logs.path());
    let daemon = launcher.start("pg-restart").await;
    // A provider waits a while for its answer; while the database is gone the answer (503)
    // may take the database's acquire timeout (5 s) and a turn in the queue.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let began = Instant::now();

    let sender = WebhookSender::new(12);
    let addresses = Arc::new(RwLock::new(vec![daemon.url()]));
    let senders = send_all(
        &sender,
        addresses,
        conversations,
        messages,
        Instant::now() + Duration::from_secs(300),
    );

    // The rep answers conversation 0 over Pub/Sub before, during and after each outage.
    let mut rep_texts = Vec::new();
    let first_user = msisdn(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while w
        .salesforce
        .conversation_of(MSG_ADDRESS, &first_user)
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "conversation 0 never reached Salesforce"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rep_says = |rep_texts: &mut Vec<String>, when: &str| {
        let t = format!("rep {when} {}", rep_texts.len());
        w.rep
            .message((MSG_ADDRESS, first_user.as_str()), &t)
            .unwrap();
        rep_texts.push(t);
    };
    rep_says(&mut rep_texts, "before");

    let mut terminated = 0;
    let mut refused_during_outage = 0;
    for r in 1..=restarts {
        // A pool of dead connections: every session the daemon holds is terminated.
        sender
            .wait_accepted(
                total * (2 * r - 1) / (2 * restarts + 1),
                Instant::now() + Duration::from_secs(120),
            )
            .await;
        terminated += cluster.terminate_backends().await;

        // The database goes away for a while.
        sender
            .wait_accepted(
                total * (2 * r) / (2 * restarts + 1),
                Instant::now() + Duration::from_secs(120),
            )
            .await;
        let stopped_at = Instant::now();
        cluster.stop();
        wait_ready(&client, &daemon, 503, "with the database stopped").await;
        let answer = client
            .post(format!("{}/webhooks/{WA_CHANNEL}", daemon.url()))
            .header("Authorization", WA_WEBHOOK_AUTH)
            .json(&wa_text(
                &format!("outage-{r}"),
                "+447700000001",
                "during the outage",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            503,
            "a webhook while the database is down is answered 503"
        );
        refused_during_outage += 1;
        rep_says(&mut rep_texts, "during");
        tokio::time::sleep(outage.saturating_sub(stopped_at.elapsed())).await;
        cluster.start_again();
        wait_ready(&client, &daemon, 200, "after the database came back").await;
        rep_says(&mut rep_texts, "after");
        figure(&format!(
            "faults[pg-restart]: restart {r}/{restarts}: down {:.1}s, {} of {total} webhooks \
             answered 200 so far",
            stopped_at.elapsed().as_secs_f64(),
            sender.accepted()
        ));
    }
    join_all(senders).await;
    let answered = began.elapsed();
    drain(
        &w.salesforce,
        &url,
        conversations,
        messages,
        Duration::from_secs(120),
        &[&daemon],
    )
    .await;
    wait_rep_messages(&w.wa, &rep_texts, &daemon).await;
    let mut daemon = daemon;
    assert!(daemon.running(), "the daemon kept running");
    let drained = began.elapsed();

    // Nothing half-written: the webhooks refused during the outages left no trace.
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM outbox WHERE payload::text LIKE '%during the outage%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM inbound_dedupe WHERE event_key LIKE '%outage-%'"
        )
        .await,
        0
    );
    let duplicates = check_order(&w.salesforce, conversations, messages);
    assert_eq!(
        duplicates, 0,
        "every webhook answered 200 reaches Salesforce once"
    );
    let rows = count(
        &url,
        "SELECT COUNT(*) FROM outbox WHERE kind = 'isa.message'",
    )
    .await;
    assert_eq!(rows as usize, total, "one row per accepted webhook");
    assert!(daemon.stop(Duration::from_secs(20)).await);
    figure(&format!(
        "faults[pg-restart]: PASS — {total} webhooks over {conversations} conversations, \
         {restarts} restarts of PostgreSQL and {restarts} terminations of the pool \
         ({terminated} sessions ended), {refused_during_outage} webhooks answered 503 during \
         outages, {} sender retries; all answered in {:.1}s, at Salesforce in {:.1}s, \
         {duplicates} duplicates; {} rep messages over Pub/Sub each once, in order ({} \
         streams opened)",
        sender.retries.load(std::sync::atomic::Ordering::Relaxed),
        answered.as_secs_f64(),
        drained.as_secs_f64(),
        rep_texts.len(),
        w.pubsub.streams_opened()
    ));
}

/// The test process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in MiB.
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Item 3: Salesforce is down for six hours (the emulator answers every Interaction Service call
/// 503; the daemon's clock and the emulator's are moved, nothing waits) while a backlog builds
/// up. Nothing is dead-lettered: the channel is paused and probed, no row spends an attempt on
/// the outage. When Salesforce returns the backlog drains, each conversation in order, each
/// message once, within the org's rate limit.
async fn a_six_hour_salesforce_outage_dead_letters_nothing_and_the_backlog_drains_in_order(
    db: TestDb,
) {
    let _turn = support::exclusive().await;
    let backend = db.url.split(':').next().unwrap_or_default().to_owned();
    // The org's limit at the emulator; byocd is configured at 40 % of it (a token bucket of
    // one second's worth can send up to twice its rate within one second).
    let (conversations, messages, org_limit) = if soak() {
        let total: usize = std::env::var("BYOCD_SOAK_BACKLOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        (1000, total / 1000, 2000)
    } else {
        (20, 25, 500)
    };
    let total = conversations * messages;
    let h = Harness::start_with(
        db,
        // Appended to the org's table, then the relay's: the default retry schedule (about
        // 4 h 43 min in all), which an outage of six hours outlasts.
        &format!(
            "requests_per_second = {}\n\n[relay]\nconcurrency = 32\n",
            org_limit * 2 / 5
        ),
    )
    .await;
    let (rss_before, _) = memory_mib();
    h.emulator.set_rate_limit(Some(org_limit as u32));

    // Salesforce answers normally at first: a token is minted, one message delivered.
    // (The provider's sender below sends it again: answered as a duplicate, nothing added.)
    h.webhook(
        WA_CHANNEL,
        &wa_text("fault-0000-0000", &msisdn(0), &text(0, 0)),
    )
    .await;
    h.drain().await;
    assert_eq!(missing_first(&h.emulator, 1), 0);

    // Then it goes down.
    h.emulator.inject(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 503,
            code: 503,
        },
        u32::MAX,
    );
    let down_at = h.clock.now();
    let sender = WebhookSender::new(16);
    let url = h.url.clone();
    let addresses = Arc::new(RwLock::new(vec![url]));
    let began = Instant::now();
    let senders = send_all(
        &sender,
        addresses,
        conversations,
        messages,
        Instant::now() + Duration::from_secs(1800),
    );
    join_all(senders).await;
    let backlog_took = began.elapsed();
    eprintln!(
        "faults[outage][{backend}]: backlog of {total} built in {:.1}s",
        backlog_took.as_secs_f64()
    );
    let probing = Instant::now();

    // Six hours pass: every time a probe is due, the relay runs; the channel stays paused.
    let outage = chrono::Duration::hours(6);
    let mut probes = 0;
    for _ in 0..10_000 {
        h.drain().await;
        let paused = h.relay.gate().paused();
        let pause = paused
            .get(WA_CHANNEL)
            .unwrap_or_else(|| panic!("the channel is not paused during the outage: {paused:?}"));
        if pause.next_probe - down_at > outage {
            break;
        }
        let step = pause.next_probe - h.clock.now();
        assert!(
            step <= chrono::Duration::minutes(5),
            "probes at most 5 minutes apart, not {step}"
        );
        h.clock.set(pause.next_probe);
        h.emulator.advance_clock(step.to_std().unwrap_or_default());
        probes += 1;
    }
    assert!(h.clock.now() - down_at >= outage - chrono::Duration::minutes(5));
    eprintln!(
        "faults[outage][{backend}]: {probes} probes in {:.1}s",
        probing.elapsed().as_secs_f64()
    );
    let dead = count_rows(&h.store, "dead").await;
    assert_eq!(dead, 0, "nothing dead-lettered during the outage");
    let refused = h
        .emulator
        .requests_to("/api/v1/interactions")
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert!(
        refused <= probes + 40,
        "{refused} calls refused for {probes} probes: rows spent calls on the outage"
    );

    // Salesforce returns; the next probe goes through and the backlog drains.
    h.emulator.clear_faults();
    h.emulator.clear_log();
    let mut pace = Pace::default();
    let mut window = std::collections::VecDeque::new();
    let next_probe = h.relay.gate().paused()[WA_CHANNEL].next_probe;
    let step = next_probe - h.clock.now();
    h.clock.set(next_probe);
    h.emulator.advance_clock(step.to_std().unwrap_or_default());
    let returned_after = h.clock.now() - down_at;
    let draining = Instant::now();
    // One batch, one row after another: its first row is the probe, which goes through and
    // resumes the channel; then the relay runs as the daemon runs it.
    h.relay.step().await;
    pace.follow(&h.emulator, &mut window);
    assert!(
        h.relay.gate().paused().is_empty(),
        "the probe after Salesforce's return resumed the channel"
    );
    let rest = drain_in_process(&h, Duration::from_secs(if soak() { 900 } else { 120 })).await;
    let drain_took = draining.elapsed();
    eprintln!(
        "faults[outage][{backend}]: drained in {:.1}s",
        drain_took.as_secs_f64()
    );
    let checking = Instant::now();
    assert!(h.relay.gate().paused().is_empty(), "the channel resumed");

    // Each conversation in order, each message once; no row spent an attempt on the outage.
    let duplicates = check_order(&h.emulator, conversations, messages);
    assert_eq!(duplicates, 0, "a 503 took no effect: nothing to send twice");
    let rows = h
        .store
        .outbox(&OutboxFilter {
            limit: 1_000_000,
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), total);
    assert!(rows.iter().all(|r| r.status == "done"));
    let max_attempts = rows.iter().map(|r| r.attempts).max().unwrap_or_default();
    assert_eq!(
        max_attempts, 1,
        "every row was delivered at its first attempt: the outage spent none"
    );
    let alerts = h
        .store
        .audit(&AuditFilter {
            kind: Some("channel.paused".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "one alert for the pause");

    // Within the org's rate limit: no call was throttled, and no second saw more than the limit.
    let throttled = pace.throttled + rest.throttled;
    let busiest = pace.busiest.max(rest.busiest);
    assert_eq!(throttled, 0, "calls were throttled");
    assert!(busiest <= org_limit, "{busiest} calls in one second");
    let (rss_after, peak) = memory_mib();
    eprintln!(
        "faults[outage][{backend}]: checked in {:.1}s",
        checking.elapsed().as_secs_f64()
    );
    figure(&format!(
        "faults[outage][{backend}]: PASS — Salesforce down {:.1} h (clocks moved), backlog of \
         {total} messages over {conversations} conversations built in {:.1}s, {probes} probes, \
         0 dead letters, every row delivered at its first attempt; drained in {:.1}s \
         ({:.0} msg/s, busiest second {busiest} calls, org limit {org_limit}/s, byocd set to \
         {}/s), in order, 0 duplicates; test process memory {rss_before:.0} MiB before, \
         {rss_after:.0} MiB after, peak {peak:.0} MiB (emulators and request log included)",
        returned_after.num_minutes() as f64 / 60.0,
        backlog_took.as_secs_f64(),
        drain_took.as_secs_f64(),
        total as f64 / drain_took.as_secs_f64().max(0.001),
        org_limit * 2 / 5
    ));
}

/// What the Interaction Service saw while the backlog drained.
#[derive(Debug, Default)]
struct Pace {
    /// Calls answered.
    calls: usize,
    /// Calls answered 429.
    throttled: usize,
    /// The most calls answered within any one second.
    busiest: usize,
}

impl Pace {
    /// Adds the calls logged since the last look (taken from the log, which stays small).
    fn follow(
        &mut self,
        emulator: &SalesforceEmulator,
        window: &mut std::collections::VecDeque<std::time::Instant>,
    ) {
        let mut taken = emulator.take_requests();
        taken.retain(|r| r.path == "/api/v1/interactions");
        taken.sort_by_key(|r| r.answered_at);
        for r in taken {
            self.calls += 1;
            if r.status == 429 {
                self.throttled += 1;
            }
            let Some(at) = r.answered_at else { continue };
            while window
                .front()
                .is_some_and(|first| at.duration_since(*first) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            window.push_back(at);
            self.busiest = self.busiest.max(window.len());
        }
    }
}

/// Runs the harness's relay as the daemon does (concurrently, paced by the org's limit) until
/// no row is unfinished (bounded by `within`), following the calls Salesforce answers.
async fn drain_in_process(h: &Harness, within: Duration) -> Pace {
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(h.relay.clone().run(cancel.clone(), Duration::from_secs(5)));
    let deadline = Instant::now() + within;
    let mut pace = Pace::default();
    let mut window = std::collections::VecDeque::new();
    loop {
        pace.follow(&h.emulator, &mut window);
        let open = count(
            &h.db.url,
            "SELECT COUNT(*) FROM outbox WHERE status <> 'done'",
        )
        .await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} rows unfinished {within:?} after Salesforce returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    relay.await.unwrap();
    pace.follow(&h.emulator, &mut window);
    pace
}

/// Rows of `status`.
async fn count_rows(store: &AnyStore, status: &str) -> usize {
    store
        .outbox(&OutboxFilter {
            status: Some(status.into()),
            limit: 1_000_000,
            ..OutboxFilter::default()
        })
        .await
        .unwrap()
        .len()
}

/// Of the first `n` messages of conversation 0, how many are not at Salesforce.
fn missing_first(emulator: &SalesforceEmulator, n: usize) -> usize {
    let got = at_salesforce(emulator);
    let have: HashSet<&str> = got
        .get(&msisdn(0))
        .map(|v| v.iter().map(|(t, _)| t.as_str()).collect())
        .unwrap_or_default();
    (0..n)
        .filter(|i| !have.contains(text(0, *i).as_str()))
        .count()
}

/// Item 5: Pub/Sub faults while the rep sends a stream of messages: the stream is cut every
/// few hundred milliseconds and, part-way, the token is revoked mid-stream; then the daemon is
/// away while more is published than the platform keeps, so the stored replay id is refused on
/// resuming. Every event the platform still had reaches 8x8 once, in order; the refused
/// position falls back to the earliest event kept, with an alert recording the refused replay
/// id and when it was stored.
async fn pubsub_faults_under_load_lose_nothing_the_platform_kept(db: TestDb) {
    use byocd::sandbox::eightbyeight::WebhookUser;
    use support::outbound::Outbound;
    let _turn = support::exclusive().await;
    let backend = db.url.split(':').next().unwrap_or_default().to_owned();
    let (events, cut_every, away, kept) = if soak() {
        (3000, Duration::from_secs(2), 500, 200)
    } else {
        (200, Duration::from_millis(300), 30, 20)
    };
    const USER: &str = "+447700900301";
    let mut h = Outbound::start(db, "num_requested = 10\n").await;
    let inbound =
        h.wa.webhooks()
            .inbound_text(&WebhookUser::phone(USER), "hello");
    h.webhook(WA_CHANNEL, &inbound.body).await;
    h.drain().await;
    assert!(h.salesforce.conversation_of(MSG_ADDRESS, USER).is_some());
    let began = Instant::now();

    // The rep writes while the stream is cut again and again; a third of the way, the token is
    // revoked (open streams end with UNAUTHENTICATED at their next answer).
    let rep = h.rep.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..events {
            rep.message((MSG_ADDRESS, USER), &format!("rep {i:05}"))
                .unwrap();
            if i % 5 == 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut cuts = 0;
    let mut revoked = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !publisher.is_finished() || cuts < 3 {
        assert!(Instant::now() < deadline, "the publisher never finished");
        tokio::time::sleep(cut_every).await;
        h.pubsub.end_streams(1);
        cuts += 1;
        if !revoked && h.pubsub.published().len() > events / 3 {
            h.salesforce.revoke_tokens();
            revoked = true;
        }
    }
    publisher.await.unwrap();
    assert!(revoked, "the token was revoked mid-stream");
    let rows_wait = Instant::now() + Duration::from_secs(60);
    while provider_rows(&h).await < events {
        assert!(
            Instant::now() < rows_wait,
            "only {} of {events} rep messages became work",
            provider_rows(&h).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.drain().await;
    let expected: Vec<String> = (0..events).map(|i| format!("rep {i:05}")).collect();
    assert_eq!(
        sent_texts(&h),
        expected,
        "every event once, in order, through the cuts and the revocation"
    );
    let streams = h.pubsub.streams_opened();
    let took = began.elapsed();

    // The daemon is away while more is published than the platform keeps.
    h.stop_subscriber().await;
    let stored = h
        .store
        .cursor(support::salesforce::ORG_ID, TOPIC)
        .await
        .unwrap()
        .expect("a stored position");
    for i in events..events + away {
        h.rep
            .message((MSG_ADDRESS, USER), &format!("rep {i:05}"))
            .unwrap();
    }
    h.pubsub.set_retention(Some(kept));
    let opened_before = first_requests(&h).len();
    h.start_subscriber();
    let rows_wait = Instant::now() + Duration::from_secs(60);
    while provider_rows(&h).await < events + kept {
        assert!(
            Instant::now() < rows_wait,
            "the subscription did not resume from the earliest event kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.drain().await;
    let mut expected = expected;
    expected.extend((events + away - kept..events + away).map(|i| format!("rep {i:05}")));
    assert_eq!(
        sent_texts(&h),
        expected,
        "after the refused position: every event the platform kept, once, in order"
    );
    let gaps = h
        .store
        .audit(&AuditFilter {
            kind: Some("pubsub.gap".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let gap = gaps
        .iter()
        .find(|g| g.entry.detail.get("refused_replay_id").is_some())
        .unwrap_or_else(|| panic!("no alert records the refused replay id: {gaps:?}"));
    assert_eq!(gap.entry.severity, byocd::store::Severity::Alert);
    assert_eq!(
        gap.entry.detail["refused_replay_id"],
        hex::encode(&stored.replay_id)
    );
    assert_eq!(gap.entry.detail["resumed_from"], "earliest");
    // On resuming: the stored position refused (the alert above), then EARLIEST.
    let resumed = first_requests(&h).split_off(opened_before);
    assert!(
        resumed.contains(&1),
        "EARLIEST after the refusal: {resumed:?}"
    );
    figure(&format!(
        "faults[pubsub][{backend}]: PASS — {events} rep messages in {:.1}s with the stream cut \
         {cuts} times (every {cut_every:?}) and the token revoked mid-stream: {streams} streams \
         opened, each event once, in order; then {away} published while away with {kept} kept: \
         the refused replay id fell back to the earliest kept, {kept} delivered, {} recorded as \
         possibly missed (pubsub.gap alert)",
        took.as_secs_f64(),
        away - kept
    ));
}

async fn provider_rows(h: &support::outbound::Outbound) -> usize {
    h.store
        .outbox(&OutboxFilter {
            limit: 1_000_000,
            ..OutboxFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|r| r.kind == byocd::store::relay::kind::PROVIDER_MESSAGE)
        .count()
}

/// The replay preset of every stream's first request, in order.
fn first_requests(h: &support::outbound::Outbound) -> Vec<i32> {
    h.pubsub
        .fetch_requests()
        .iter()
        .filter(|f| f.first)
        .map(|f| f.replay_preset)
        .collect()
}

fn sent_texts(h: &support::outbound::Outbound) -> Vec<String> {
    h.wa.sent_messages()
        .into_iter()
        .filter_map(|m| m.content["text"].as_str().map(str::to_owned))
        .collect()
}

/// A small filesystem for the SQLite database: a tmpfs mounted on a temporary directory
/// (needs the right to mount, as root has), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount a filesystem.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(Self { dir })
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "remount: {out:?}");
    }

    /// KiB in use.
    fn used_kib(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-k", "--output=used"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

async fn integrity(url: &str) -> String {
    use sqlx::Connection;
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let mut conn = sqlx::SqliteConnection::connect_with(&options.read_only(true))
        .await
        .unwrap();
    let (answer,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    answer
}

/// Item 2: the SQLite database's disk fills up under load — a real limit, a tmpfs of a few
/// hundred KiB more than the migrated database (not `max_page_count`: mounting works where the
/// suite runs as root; without the right to mount, the test says so and checks nothing).
/// Webhooks are answered 503 with one clear error in the log, nothing half-written (`PRAGMA
/// integrity_check` passes); when space returns, work resumes by itself, a `database.disk_full`
/// alert records the spell, and every webhook answered 200 reaches Salesforce, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_disk_refuses_webhooks_and_work_resumes_when_space_returns() {
    let _turn = support::exclusive().await;
    let Some(disk) = SmallDisk::mount("64m") else {
        eprintln!(
            "faults[disk-full]: NOT RUN — this process may not mount a tmpfs (run the suite as \
             root, as CI does)"
        );
        return;
    };
    let (conversations, messages) = if soak() { (100, 40) } else { (30, 20) };
    let url = format!("sqlite://{}", disk.dir.path().join("byocd.db").display());
    let w = world(
        r#"
[relay]
lease = "3s"
poll_interval = "50ms"
retry_schedule = ["200ms", "500ms", "1s"]
"#,
    )
    .await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&w.config.main_file, &url, logs.path());
    let mut daemon = launcher.start("disk-full").await;
    // Room for a little more than the migrated database and its WAL.
    let room = disk.used_kib() + 384;
    disk.resize(&format!("{room}k"));
    let client = reqwest::Client::new();
    let began = Instant::now();

    let sender = WebhookSender::new(12);
    let addresses = Arc::new(RwLock::new(vec![daemon.url()]));
    let senders = send_all(
        &sender,
        addresses,
        conversations,
        messages,
        Instant::now() + Duration::from_secs(300),
    );
    // The disk fills: the daemon says so once, clearly, and answers 503.
    let deadline = Instant::now() + Duration::from_secs(120);
    let needle = "the database's disk is full: webhooks are answered 503";
    while !std::fs::read_to_string(&daemon.log)
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(
            Instant::now() < deadline,
            "the disk never filled ({} KiB used of {room}); the log ends:\n{}",
            disk.used_kib(),
            daemon.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let full_at = sender.accepted();
    let answer = client
        .post(format!("{}/webhooks/{WA_CHANNEL}", daemon.url()))
        .header("Authorization", WA_WEBHOOK_AUTH)
        .json(&wa_text(
            "disk-full-probe",
            "+447700000002",
            "while the disk is full",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        503,
        "refused while the disk is full"
    );
    assert_eq!(
        integrity(&url).await,
        "ok",
        "the database is intact while full"
    );

    // Space returns: work resumes by itself.
    disk.resize("64m");
    join_all(senders).await;
    drain(
        &w.salesforce,
        &url,
        conversations,
        messages,
        Duration::from_secs(120),
        &[&daemon],
    )
    .await;
    assert!(daemon.running(), "the daemon kept running");
    let duplicates = check_order(&w.salesforce, conversations, messages);
    assert!(daemon.stop(Duration::from_secs(20)).await);
    assert_eq!(integrity(&url).await, "ok");
    // One error line when a spell starts (not one per webhook), one alert when it ends; a
    // checkpoint can free a little room and end a spell early, so there may be more than one.
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    let spells = log.matches(needle).count();
    let refused = log
        .matches("webhook refused: the database's disk is full")
        .count();
    let alerts = count(
        &url,
        "SELECT COUNT(*) FROM audit_log WHERE kind = 'database.disk_full' AND severity = 'alert'",
    )
    .await;
    assert!(
        spells >= 1 && alerts as usize == spells,
        "{spells} spells, {alerts} alerts"
    );
    assert!(
        refused > spells,
        "{refused} webhooks refused in {spells} spells"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM inbound_dedupe WHERE event_key LIKE '%disk-full-probe%'"
        )
        .await,
        0,
        "the refused webhook left nothing behind"
    );
    figure(&format!(
        "faults[disk-full][sqlite]: PASS — tmpfs of {room} KiB: full after {full_at} of \
         {} webhooks; {refused} answered 503 in {spells} spell(s) of a full disk, one error line \
         and one alert each; integrity_check ok while full and after; \
         resumed when space returned; all at Salesforce in {:.1}s, in order, {duplicates} \
         duplicate(s) (deliveries whose settling the full disk refused, sent again after their \
         lease); database.disk_full alert written",
        conversations * messages,
        began.elapsed().as_secs_f64()
    ));
}

on_both_backends!(
    a_six_hour_salesforce_outage_dead_letters_nothing_and_the_backlog_drains_in_order,
    pubsub_faults_under_load_lose_nothing_the_platform_kept,
);
