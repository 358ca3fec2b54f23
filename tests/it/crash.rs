//! The crash test: the real `byocd serve` binary accepts a few thousand 8x8 webhooks across many
//! conversations while it is killed with SIGKILL at random moments and restarted, several times.
//! Afterwards every webhook that was answered 200 has reached Salesforce (the emulator), each
//! conversation's messages first appear in the order they were sent, and the only duplicates are
//! redeliveries of the same entry id by a row whose lease expired after its worker was killed —
//! what at-least-once allows (docs/reliability.md). On SQLite and on PostgreSQL.
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
    daemon::{Launcher, Rng, WebhookSender},
    harness::wa_text,
    salesforce::{MSG_ADDRESS, emulator_and_config},
};

/// End users, each with their own conversation.
const CONVERSATIONS: usize = 120;
/// Messages each end user sends, one after another.
const MESSAGES_PER_CONVERSATION: usize = 25;
/// Webhooks in flight at once (across conversations).
const IN_FLIGHT: usize = 12;
/// SIGKILLs per run.
const KILLS: usize = 6;
/// Random pause before each kill.
const KILL_AFTER: (Duration, Duration) = (Duration::from_millis(400), Duration::from_millis(2500));
/// Random pause between a kill and the restart (webhooks meanwhile find nobody listening).
const RESTART_AFTER: (Duration, Duration) = (Duration::from_millis(0), Duration::from_millis(400));
/// Time allowed for every webhook to be answered 200.
const SEND_TIMEOUT: Duration = Duration::from_secs(150);
/// Time allowed, after the last webhook was answered, for everything to reach Salesforce.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A short lease, so rows a killed daemon held come back quickly, and quick retries.
const RELAY: &str = r#"
[relay]
lease = "2s"
poll_interval = "50ms"
retry_schedule = ["200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s"]
"#;

fn msisdn(conversation: usize) -> String {
    format!("+4477009{conversation:05}")
}

fn text(conversation: usize, n: usize) -> String {
    format!("crash test {} message {n:03}", msisdn(conversation))
}

/// The texts each end user sent, in order.
fn sent() -> HashMap<String, Vec<String>> {
    (0..CONVERSATIONS)
        .map(|c| {
            (
                msisdn(c),
                (0..MESSAGES_PER_CONVERSATION).map(|n| text(c, n)).collect(),
            )
        })
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

async fn a_daemon_killed_at_random_moments_loses_nothing_and_keeps_order(db: TestDb) {
    let _turn = support::exclusive().await;
    let backend = db.url.split(':').next().unwrap_or_default().to_owned();
    let total = CONVERSATIONS * MESSAGES_PER_CONVERSATION;
    let (mut rng, seed) = Rng::from_env_or_random("BYOCD_CRASH_SEED");
    eprintln!(
        "crash[{backend}]: {total} webhooks over {CONVERSATIONS} conversations, {KILLS} kills, \
         seed {seed} (BYOCD_CRASH_SEED={seed} repeats the kill timing)"
    );
    let began = Instant::now();

    let (emulator, config) = emulator_and_config(RELAY).await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let mut daemon = launcher.start("crash-0").await;
    let address = Arc::new(RwLock::new(daemon.url()));

    // The provider: one task per conversation, each message sent once the previous one was
    // answered 200, every webhook retried until it is.
    let sender = WebhookSender::new(IN_FLIGHT);
    // Webhooks committed before a kill cut off their answer: the retry is answered "duplicate".
    let committed_unanswered = Arc::new(AtomicUsize::new(0));
    let send_deadline = Instant::now() + SEND_TIMEOUT;
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..CONVERSATIONS {
        let sender = sender.clone();
        let address = address.clone();
        let committed_unanswered = committed_unanswered.clone();
        senders.spawn(async move {
            let user = msisdn(c);
            for n in 0..MESSAGES_PER_CONVERSATION {
                let body = wa_text(&format!("crash-{c:03}-{n:03}"), &user, &text(c, n));
                let answer = sender
                    .post_until_accepted(
                        || address.read().unwrap().clone(),
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

    // Meanwhile: SIGKILL at random moments, restart at once (or nearly).
    let expected = sent();
    for k in 1..=KILLS {
        tokio::time::sleep(rng.between(KILL_AFTER.0, KILL_AFTER.1)).await;
        let accepted = sender.accepted();
        let delivered = total - missing(&expected, &emulator);
        daemon.kill();
        eprintln!(
            "crash[{backend}]: kill {k}/{KILLS} (pid {}) at {:.1}s: {accepted}/{total} webhooks \
             answered 200, {delivered}/{total} messages at Salesforce",
            daemon.pid,
            began.elapsed().as_secs_f64()
        );
        tokio::time::sleep(rng.between(RESTART_AFTER.0, RESTART_AFTER.1)).await;
        let restarting = Instant::now();
        daemon = launcher.start(&format!("crash-{k}")).await;
        *address.write().unwrap() = daemon.url();
        eprintln!(
            "crash[{backend}]: restarted as pid {} on {} in {} ms",
            daemon.pid,
            daemon.addr,
            restarting.elapsed().as_millis()
        );
    }
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

    // The last daemon runs undisturbed until everything accepted has reached Salesforce.
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let left = missing(&expected, &emulator);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "{left} of {total} accepted messages had not reached Salesforce {DRAIN_TIMEOUT:?} \
             after the last webhook was answered; the daemon's log ends:\n{}",
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rows whose worker was killed after Salesforce accepted them stay leased until the lease
    // expires; the last daemon then sends them again (a duplicate the check below accounts for)
    // and settles them. Wait for the store to settle too.
    loop {
        let open = unsettled_rows(&db.url).await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "{open} rows still unsettled {DRAIN_TIMEOUT:?} after the last webhook was answered; \
             the daemon's log ends:\n{}",
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = began.elapsed();
    // Every row is done, and a row's audit rows commit in the same transaction as its status:
    // stop the daemon cleanly (SIGTERM lets it finish anything still in flight).
    let clean = daemon.stop(Duration::from_secs(20)).await;
    eprintln!(
        "crash[{backend}]: everything at Salesforce after {:.1}s; daemon stopped {}",
        drained.as_secs_f64(),
        if clean { "cleanly" } else { "by SIGKILL" }
    );

    // The store: one row per webhook (provider retries of committed webhooks added nothing),
    // every row done, one delivery audited per row.
    let store = db.open().await;
    let rows = store
        .outbox(&OutboxFilter {
            limit: 100_000,
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
            limit: 100_000,
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

    // Salesforce: every accepted message, in order of first appearance, duplicates only as
    // redeliveries of the same entry by a row that was claimed again.
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
                duplicated_entries += 1;
                duplicates += n as usize - 1;
            }
        }
    }
    let reclaimed = rows.iter().filter(|r| r.attempts > 1).count();
    let max_attempts = rows.iter().map(|r| r.attempts).max().unwrap_or_default();
    let (_, entries) = arrived(&emulator);
    eprintln!(
        "crash[{backend}]: PASS in {:.1}s — {total} messages, {CONVERSATIONS} conversations, \
         {KILLS} kills, {retries} sender retries ({committed_unanswered} committed but \
         unanswered), {entries} entries at Salesforce, {duplicates} \
         duplicate(s) of {duplicated_entries} entr(y/ies), {reclaimed} row(s) claimed more than \
         once (at most {max_attempts} times)",
        began.elapsed().as_secs_f64()
    );
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
