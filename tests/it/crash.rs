//! The crash test: the real `byocd serve` binary accepts a few thousand 8x8 webhooks across many
//! conversations, as fast as it takes them, while it is killed with SIGKILL at random moments and
//! restarted, twenty times — on SQLite one daemon, on PostgreSQL two replicas sharing the
//! database, one killed at a time. Afterwards every webhook that was answered 200 has reached
//! Salesforce (the emulator), each conversation's messages first appear in the order they were
//! sent, and the only duplicates are redeliveries of the same entry id by a row claimed by a
//! process that was then killed and claimed again by another (a lease released at start or taken
//! over after expiry) — what at-least-once allows (docs/reliability.md). Each duplicate is traced
//! through a trigger the test adds to its own database. `BYOCD_SOAK=1` (scripts/soak.sh) runs it
//! larger.
//!
//! The kill timing comes from a seed that the test prints; `BYOCD_CRASH_SEED=<seed>` repeats it.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use byocd::{
    sandbox::salesforce::SalesforceEmulator,
    store::{AuditFilter, OutboxFilter, OutboxItem, Store},
};
use support::{
    TestDb,
    channels::{WA_CHANNEL, WA_WEBHOOK_AUTH},
    daemon::{Daemon, Launcher, Rng, WebhookSender},
    harness::wa_text,
    salesforce::{MSG_ADDRESS, emulator_and_config},
};

/// The run's size: the suite's, or the soak's (`BYOCD_SOAK=1`, scripts/soak.sh).
struct Scale {
    /// End users, each with their own conversation.
    conversations: usize,
    /// Messages each end user sends, one after another.
    messages: usize,
    /// Webhooks in flight at once (across conversations): enough to keep the daemon at the
    /// highest rate it reaches.
    in_flight: usize,
    /// SIGKILLs per run.
    kills: usize,
}

fn scale() -> Scale {
    if crate::faults::soak() {
        Scale {
            conversations: 400,
            messages: 50,
            in_flight: 64,
            kills: 20,
        }
    } else {
        Scale {
            conversations: 150,
            messages: 20,
            in_flight: 48,
            kills: 20,
        }
    }
}

/// Random pause before each kill.
const KILL_AFTER: (Duration, Duration) = (Duration::from_millis(150), Duration::from_millis(900));
/// Random pause between a kill and the restart (webhooks meanwhile find nobody listening).
const RESTART_AFTER: (Duration, Duration) = (Duration::from_millis(0), Duration::from_millis(300));
/// Time allowed for every webhook to be answered 200.
const SEND_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed, after the last webhook was answered, for everything to reach Salesforce.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A short lease, so rows a killed daemon held come back quickly (yet longer than a delivery and
/// its settling take on a busy machine, so no lease is lost but to a kill), and quick retries.
const RELAY: &str = r#"
[relay]
lease = "5s"
poll_interval = "50ms"
retry_schedule = ["200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s"]
"#;

/// Test instrumentation, not product schema: every status change of an outbox row, with the
/// lease owner (`HOSTNAME:pid:random`), so each duplicate can be traced to a claim by a process
/// that was killed and a later claim by another.
const INSTRUMENT_PG: [&str; 3] = [
    "CREATE TABLE test_outbox_transitions (
        seq bigserial PRIMARY KEY,
        outbox_id bigint NOT NULL,
        owner text,
        to_status text NOT NULL)",
    "CREATE FUNCTION test_outbox_transition() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        INSERT INTO test_outbox_transitions (outbox_id, owner, to_status)
        VALUES (NEW.id, NEW.lease_owner, NEW.status);
        RETURN NEW;
     END $$",
    "CREATE TRIGGER test_outbox_transition AFTER UPDATE OF status ON outbox
     FOR EACH ROW EXECUTE FUNCTION test_outbox_transition()",
];
const INSTRUMENT_SQLITE: [&str; 2] = [
    "CREATE TABLE test_outbox_transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        outbox_id INTEGER NOT NULL,
        owner TEXT,
        to_status TEXT NOT NULL)",
    "CREATE TRIGGER test_outbox_transition AFTER UPDATE OF status ON outbox
     FOR EACH ROW BEGIN
        INSERT INTO test_outbox_transitions (outbox_id, owner, to_status)
        VALUES (NEW.id, NEW.lease_owner, NEW.status);
     END",
];

async fn instrument(url: &str) {
    use sqlx::Connection;
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        for statement in INSTRUMENT_PG {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        for statement in INSTRUMENT_SQLITE {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }
}

/// Per row, the owners of its claims, in order.
async fn claims_by_row(url: &str) -> HashMap<i64, Vec<String>> {
    use sqlx::Connection;
    let query = "SELECT outbox_id, COALESCE(owner, '') FROM test_outbox_transitions \
                 WHERE to_status = 'leased' ORDER BY seq";
    let rows: Vec<(i64, String)> = if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut conn).await.unwrap()
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(&options.read_only(true))
            .await
            .unwrap();
        sqlx::query_as(query).fetch_all(&mut conn).await.unwrap()
    };
    let mut by_row: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, owner) in rows {
        by_row.entry(id).or_default().push(owner);
    }
    by_row
}

fn msisdn(conversation: usize) -> String {
    format!("+4477009{conversation:05}")
}

fn text(conversation: usize, n: usize) -> String {
    format!("crash test {} message {n:03}", msisdn(conversation))
}

/// The texts each end user sent, in order.
fn sent(scale: &Scale) -> HashMap<String, Vec<String>> {
    (0..scale.conversations)
        .map(|c| (msisdn(c), (0..scale.messages).map(|n| text(c, n)).collect()))
        .collect()
}

/// Per end user, the distinct texts the emulator holds; and the number of entries in all.
fn arrived(emulator: &SalesforceEmulator) -> (HashMap<String, HashSet<String>>, usize) {
    let mut entries = 0;
    let texts = emulator
        .conversations()
        .into_iter()
        .filter(|c| c.channel_address_identifier == MSG_ADDRESS)
        .map(|c| {
            entries += c.entries.len();
            let texts = c
                .entries
                .iter()
                .filter_map(|e| e.text())
                .map(str::to_owned)
                .collect();
            (c.end_user_client_id, texts)
        })
        .collect();
    (texts, entries)
}

fn missing(expected: &HashMap<String, Vec<String>>, emulator: &SalesforceEmulator) -> usize {
    let (got, _) = arrived(emulator);
    expected
        .iter()
        .map(|(user, texts)| {
            let have = got.get(user);
            texts
                .iter()
                .filter(|t| !have.is_some_and(|h| h.contains(*t)))
                .count()
        })
        .sum()
}

/// Twenty SIGKILLs at the highest rate the daemon reaches (issue 20): on SQLite one daemon,
/// killed and restarted; on PostgreSQL two replicas sharing the database, one of them killed
/// at a time while the other carries on. Zero lost, order kept, and every duplicate traced to a
/// claim by a killed process followed by a claim by another (a lease taken over).
async fn a_daemon_killed_at_random_moments_loses_nothing_and_keeps_order(db: TestDb) {
    let _turn = support::exclusive().await;
    let scale = scale();
    let backend = db.url.split(':').next().unwrap_or_default().to_owned();
    let replicas = if backend == "postgres" { 2 } else { 1 };
    let kills = scale.kills;
    let total = scale.conversations * scale.messages;
    let (mut rng, seed) = Rng::from_env_or_random("BYOCD_CRASH_SEED");
    eprintln!(
        "crash[{backend}]: {total} webhooks over {} conversations, {replicas} daemon(s), \
         {kills} kills, seed {seed} (BYOCD_CRASH_SEED={seed} repeats the kill timing)",
        scale.conversations
    );
    // The schema first, so the instrumentation can be added; the daemons find nothing to migrate.
    db.migrated().await.close().await;
    instrument(&db.url).await;
    let began = Instant::now();

    let (emulator, config) = emulator_and_config(RELAY).await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let mut daemons = Vec::new();
    for r in 0..replicas {
        daemons.push(launcher.start(&format!("crash-r{r}-0")).await);
    }
    let addresses = Arc::new(RwLock::new(
        daemons.iter().map(Daemon::url).collect::<Vec<_>>(),
    ));
    // Lease owners (`HOSTNAME:pid:`) of the processes killed so far.
    let mut killed: Vec<String> = Vec::new();

    // The provider: one task per conversation, each message sent once the previous one was
    // answered 200, every webhook retried until it is; with replicas, to either, alternating.
    let sender = WebhookSender::new(scale.in_flight);
    // Webhooks committed before a kill cut off their answer: the retry is answered "duplicate".
    let committed_unanswered = Arc::new(AtomicUsize::new(0));
    let send_deadline = Instant::now() + SEND_TIMEOUT;
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..scale.conversations {
        let sender = sender.clone();
        let addresses = addresses.clone();
        let committed_unanswered = committed_unanswered.clone();
        let messages = scale.messages;
        senders.spawn(async move {
            let user = msisdn(c);
            for n in 0..messages {
                let body = wa_text(&format!("crash-{c:03}-{n:03}"), &user, &text(c, n));
                let answer = sender
                    .post_until_accepted(
                        || {
                            let a = addresses.read().unwrap();
                            a[(c + n) % a.len()].clone()
                        },
                        &format!("/webhooks/{WA_CHANNEL}"),
                        WA_WEBHOOK_AUTH,
                        &body,
                        send_deadline,
                    )
                    .await;
                assert_eq!(answer["status"], "accepted", "{answer}");
                if answer["duplicates"] == 1 {
                    committed_unanswered.fetch_add(1, Relaxed);
                }
            }
        });
    }

    // Meanwhile: SIGKILL at random moments (a random replica), restart at once (or nearly).
    let expected = sent(&scale);
    let mut rate_window: Option<(Instant, usize)> = None;
    for k in 1..=kills {
        tokio::time::sleep(rng.between(KILL_AFTER.0, KILL_AFTER.1)).await;
        let accepted = sender.accepted();
        if accepted == total {
            eprintln!("crash[{backend}]: every webhook answered before kill {k}");
        }
        let delivered = total - missing(&expected, &emulator);
        let victim = (rng.next_u64() % replicas as u64) as usize;
        let daemon = &mut daemons[victim];
        killed.push(format!("{}:{}:", daemon.name, daemon.pid));
        daemon.kill();
        rate_window.get_or_insert((Instant::now(), accepted));
        eprintln!(
            "crash[{backend}]: kill {k}/{kills} ({} pid {}) at {:.1}s: {accepted}/{total} \
             webhooks answered 200, {delivered}/{total} messages at Salesforce",
            daemon.name,
            daemon.pid,
            began.elapsed().as_secs_f64()
        );
        tokio::time::sleep(rng.between(RESTART_AFTER.0, RESTART_AFTER.1)).await;
        let restarting = Instant::now();
        *daemon = launcher.start(&format!("crash-r{victim}-{k}")).await;
        addresses.write().unwrap()[victim] = daemon.url();
        eprintln!(
            "crash[{backend}]: restarted as pid {} on {} in {} ms",
            daemon.pid,
            daemon.addr,
            restarting.elapsed().as_millis()
        );
    }
    let killing = rate_window.map(|(at, accepted)| (at.elapsed(), sender.accepted() - accepted));
    while let Some(joined) = senders.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let all_answered = began.elapsed();
    let retries = sender.retries.load(Relaxed);
    let committed_unanswered = committed_unanswered.load(Relaxed);
    eprintln!(
        "crash[{backend}]: all {total} webhooks answered 200 after {:.1}s ({retries} failed \
         attempts retried by the sender; {committed_unanswered} webhook(s) had been committed \
         before a kill cut off the answer, and their retry was answered as a duplicate)",
        all_answered.as_secs_f64()
    );

    // The last daemons run undisturbed until everything accepted has reached Salesforce.
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    let tails = |daemons: &[Daemon]| {
        daemons
            .iter()
            .map(|d| d.log_tail(30))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    loop {
        let left = missing(&expected, &emulator);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "{left} of {total} accepted messages had not reached Salesforce {DRAIN_TIMEOUT:?} \
             after the last webhook was answered; the daemons' logs end:\n{}",
            tails(&daemons)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rows whose worker was killed after Salesforce accepted them stay leased until the lease
    // expires (PostgreSQL) or the next start releases them (SQLite); they are then sent again
    // (a duplicate the checks below account for) and settled. Wait for the store to settle too.
    loop {
        let open = unsettled_rows(&db.url).await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "{open} rows still unsettled {DRAIN_TIMEOUT:?} after the last webhook was answered; \
             the daemons' logs end:\n{}",
            tails(&daemons)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = began.elapsed();
    // Every row is done, and a row's audit rows commit in the same transaction as its status:
    // stop the daemons cleanly (SIGTERM lets them finish anything still in flight).
    for daemon in &mut daemons {
        let clean = daemon.stop(Duration::from_secs(20)).await;
        eprintln!(
            "crash[{backend}]: {} stopped {}",
            daemon.name,
            if clean { "cleanly" } else { "by SIGKILL" }
        );
    }
    eprintln!(
        "crash[{backend}]: everything at Salesforce after {:.1}s",
        drained.as_secs_f64()
    );

    // The store: one row per webhook (provider retries of committed webhooks added nothing),
    // every row done, one delivery audited per row.
    let store = db.open().await;
    let rows = store
        .outbox(&OutboxFilter {
            limit: 1_000_000,
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    // Each start registers the channels' capabilities: not webhook work.
    let (registrations, rows): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|r| r.kind == byocd::store::relay::kind::ISA_CAPABILITIES);
    assert_eq!(
        rows.len(),
        total,
        "one outbox row per accepted webhook: a repeated webhook must add nothing"
    );
    let unfinished: Vec<_> = rows
        .iter()
        .filter(|r| r.status != "done")
        .map(|r| (r.id, r.status.clone(), r.attempts, r.last_error.clone()))
        .collect();
    assert!(
        unfinished.is_empty(),
        "rows not done after the drain: {unfinished:?}"
    );
    let audited = store
        .audit(&AuditFilter {
            kind: Some("outbox.delivered".into()),
            limit: 1_000_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        audited.len(),
        total + registrations.iter().filter(|r| r.status == "done").count(),
        "one outbox.delivered audit row per row"
    );
    let by_entry: HashMap<&str, &OutboxItem> = rows
        .iter()
        .map(|r| (r.payload["entry_id"].as_str().expect("entry_id"), r))
        .collect();
    assert_eq!(by_entry.len(), total, "entry ids are unique per row");
    store.close().await;
    let claims = claims_by_row(&db.url).await;
    let was_killed = |owner: &str| killed.iter().any(|k| owner.starts_with(k.as_str()));

    // Salesforce: every accepted message, in order of first appearance, duplicates only as
    // redeliveries of the same entry by a row that was claimed again after a kill.
    let mut duplicates = 0;
    let mut duplicated_entries = 0;
    for (user, texts) in &expected {
        let conversation = emulator
            .conversation_of(MSG_ADDRESS, user)
            .unwrap_or_else(|| panic!("Salesforce has no conversation with {user}"));
        let mut first_seen: Vec<&str> = Vec::new();
        let mut id_of_text: HashMap<&str, &str> = HashMap::new();
        let mut times: HashMap<&str, i32> = HashMap::new();
        for entry in &conversation.entries {
            let text = entry
                .text()
                .unwrap_or_else(|| panic!("{user}: an entry that is not a text: {}", entry.json));
            let id = entry.id.as_str();
            match id_of_text.get(text) {
                Some(first) => assert_eq!(
                    *first, id,
                    "{user}: {text:?} arrived twice under two entry ids: a second interaction, \
                     not a redelivery of the same one"
                ),
                None => {
                    id_of_text.insert(text, id);
                    first_seen.push(text);
                }
            }
            *times.entry(id).or_default() += 1;
        }
        assert_eq!(
            first_seen, *texts,
            "{user}: the order of first appearance at Salesforce is not the order sent"
        );
        for (id, n) in times {
            let row = by_entry
                .get(id)
                .unwrap_or_else(|| panic!("{user}: entry {id} is no outbox row's entry"));
            assert_eq!(
                row.payload["content"]["text"].as_str(),
                id_of_text.iter().find(|(_, i)| **i == id).map(|(t, _)| *t),
                "{user}: entry {id} carries another row's text"
            );
            // Each arrival is one claim of the row: more arrivals than claims would be a
            // duplicate that no expired lease explains.
            assert!(
                n <= row.attempts,
                "{user}: entry {id} arrived {n} times but its row was claimed only {} times",
                row.attempts
            );
            if n > 1 {
                // A lease taken over after a kill: of the row's claims, every one but the last
                // was held by a process that was then killed.
                let owners = claims.get(&row.id).map(Vec::as_slice).unwrap_or_default();
                let before_last = &owners[..owners.len().saturating_sub(1)];
                let taken_over = before_last.iter().filter(|o| was_killed(o)).count();
                assert!(
                    taken_over as i32 >= n - 1,
                    "{user}: entry {id} arrived {n} times, but only {taken_over} of its row's \
                     claims ({owners:?}) were held by a process that was killed ({killed:?})"
                );
                duplicated_entries += 1;
                duplicates += n as usize - 1;
            }
        }
    }
    let reclaimed = rows.iter().filter(|r| r.attempts > 1).count();
    let max_attempts = rows.iter().map(|r| r.attempts).max().unwrap_or_default();
    let (_, entries) = arrived(&emulator);
    let rate = killing
        .map(|(took, n)| {
            format!(
                "{:.0} webhooks/s answered while killing",
                n as f64 / took.as_secs_f64().max(0.001)
            )
        })
        .unwrap_or_default();
    crate::faults::figure(&format!(
        "crash[{backend}]: PASS in {:.1}s — {total} messages, {} conversations, {replicas} \
         daemon(s), {kills} kills, {rate}, {:.0} webhooks/s overall; {retries} sender retries \
         ({committed_unanswered} committed but unanswered), {entries} entries at Salesforce, \
         {duplicates} duplicate(s) of {duplicated_entries} entr(y/ies), each a lease taken over \
         after a kill; {reclaimed} row(s) claimed more than once (at most {max_attempts} times)",
        began.elapsed().as_secs_f64(),
        scale.conversations,
        total as f64 / all_answered.as_secs_f64()
    ));
}

/// A lease far longer than the test: rows held by a killed daemon come back only if released.
const LONG_LEASE: &str = r#"
[relay]
lease = "1h"
poll_interval = "50ms"
retry_schedule = ["200ms", "500ms", "1s"]
"#;

/// Issue 14: a daemon killed while its deliveries are in flight leaves rows leased. On SQLite the
/// next daemon is provably the only one (the lock file), so it releases them at start and
/// delivers them at once; on PostgreSQL another replica may own them, so the lease stands.
async fn leases_of_a_killed_daemon_are_released_at_start_on_sqlite_only(db: TestDb) {
    let _turn = support::exclusive().await;
    let sqlite = db.url.starts_with("sqlite");
    let (emulator, config) = emulator_and_config(LONG_LEASE).await;
    const USERS: usize = 4;
    // The first deliveries hang (longer than the test waits) until the kill cuts them off.
    emulator.delay(
        "/api/v1/interactions",
        Duration::from_secs(300),
        USERS as u32,
    );
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let mut daemon = launcher.start("leases-0").await;
    let sender = WebhookSender::new(USERS);
    let deadline = Instant::now() + SEND_TIMEOUT;
    let texts: Vec<String> = (0..USERS).map(|c| text(c, 0)).collect();
    for (c, text) in texts.iter().enumerate() {
        let url = daemon.url();
        sender
            .post_until_accepted(
                || url.clone(),
                &format!("/webhooks/{WA_CHANNEL}"),
                WA_WEBHOOK_AUTH,
                &wa_text(&format!("lease-{c}"), &msisdn(c), text),
                deadline,
            )
            .await;
    }
    let wait = Instant::now() + Duration::from_secs(30);
    while leased_rows(&db.url).await < USERS as i64 {
        assert!(Instant::now() < wait, "the deliveries were never leased");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.kill();

    let mut daemon = launcher.start("leases-1").await;
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    if sqlite {
        assert!(
            log.contains("released work an earlier process had leased"),
            "no release at start:\n{log}"
        );
        // With a one-hour lease, only the release can bring them to Salesforce now.
        let wait = Instant::now() + DRAIN_TIMEOUT;
        while missing_texts(&emulator, &texts) > 0 {
            assert!(
                Instant::now() < wait,
                "released rows were not delivered:\n{}",
                daemon.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A text reaches Salesforce a moment before its row is marked done: the daemon's
        // graceful stop lets those settles finish, and then nothing is left leased.
        assert!(daemon.stop(Duration::from_secs(30)).await);
        assert_eq!(leased_rows(&db.url).await, 0);
        assert_eq!(audit_kind_count(&db.url, "outbox.leases_released").await, 1);
    } else {
        assert!(!log.contains("released work an earlier process had leased"));
        // Many poll intervals later, the dead process's rows are still its own.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(leased_rows(&db.url).await, USERS as i64, "the leases stand");
        assert!(daemon.stop(Duration::from_secs(30)).await);
        assert_eq!(audit_kind_count(&db.url, "outbox.leases_released").await, 0);
    }
}

fn missing_texts(emulator: &SalesforceEmulator, texts: &[String]) -> usize {
    let (got, _) = arrived(emulator);
    texts
        .iter()
        .filter(|t| !got.values().any(|have| have.contains(*t)))
        .count()
}

on_both_backends!(
    a_daemon_killed_at_random_moments_loses_nothing_and_keeps_order,
    leases_of_a_killed_daemon_are_released_at_start_on_sqlite_only,
);

/// Outbox rows leased now.
async fn leased_rows(url: &str) -> i64 {
    count(url, "SELECT COUNT(*) FROM outbox WHERE status = 'leased'").await
}

/// Audit rows of `kind`.
async fn audit_kind_count(url: &str, kind: &str) -> i64 {
    count(
        url,
        &format!("SELECT COUNT(*) FROM audit_log WHERE kind = '{kind}'"),
    )
    .await
}

/// Outbox rows not yet done, read beside the running daemon (which holds the SQLite store's
/// lock file, so a plain read-only connection is used rather than a second store).
async fn unsettled_rows(url: &str) -> i64 {
    count(url, "SELECT COUNT(*) FROM outbox WHERE status <> 'done'").await
}

/// One count, read over a plain read-only connection beside whatever is running.
async fn count(url: &str, query: &str) -> i64 {
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
