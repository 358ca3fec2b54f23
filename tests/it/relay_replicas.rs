//! Two real daemons (two `byocd serve` processes, each on its own port) on one PostgreSQL
//! database share the relay: webhooks for many conversations go to either daemon, alternating;
//! both relays claim from the one outbox. Every row is delivered exactly once, each
//! conversation's rows go out one at a time in order, and both replicas do part of the work.
//!
//! Who delivered what is read from a trigger this test adds to its own database: every status
//! change of an outbox row is copied, with the lease owner, to `test_outbox_transitions` (the
//! owner is `HOSTNAME:pid:random`, and each daemon is started with its own `HOSTNAME`).
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use byocd::store::Store;
use support::{
    TestDb,
    channels::{WA_CHANNEL, WA_WEBHOOK_AUTH},
    daemon::{Launcher, WebhookSender},
    harness::wa_text,
    salesforce::{MSG_ADDRESS, emulator_and_config},
};

const CONVERSATIONS: usize = 100;
const MESSAGES_PER_CONVERSATION: usize = 20;
const IN_FLIGHT: usize = 12;
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

const RELAY: &str = r#"
[relay]
poll_interval = "50ms"
"#;

/// Test instrumentation, not product schema: a log of every outbox status change.
const INSTRUMENT: [&str; 3] = [
    "CREATE TABLE test_outbox_transitions (
        seq bigserial PRIMARY KEY,
        outbox_id bigint NOT NULL,
        owner text,
        from_status text NOT NULL,
        to_status text NOT NULL,
        last_error text,
        txid bigint NOT NULL DEFAULT txid_current(),
        at timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE FUNCTION test_outbox_transition() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        INSERT INTO test_outbox_transitions (outbox_id, owner, from_status, to_status, last_error)
        VALUES (NEW.id, CASE WHEN NEW.status = 'leased' THEN NEW.lease_owner
                             ELSE OLD.lease_owner END, OLD.status, NEW.status, NEW.last_error);
        RETURN NEW;
     END $$",
    "CREATE TRIGGER test_outbox_transition AFTER UPDATE OF status ON outbox
     FOR EACH ROW EXECUTE FUNCTION test_outbox_transition()",
];

fn msisdn(conversation: usize) -> String {
    format!("+4477008{conversation:05}")
}

fn text(conversation: usize, n: usize) -> String {
    format!("replica test {} message {n:03}", msisdn(conversation))
}

/// One outbox row as the database holds it.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    ordering_key: String,
    status: String,
    attempts: i32,
    entry_id: Option<String>,
    text: Option<String>,
}

/// One status change recorded by the trigger.
#[derive(Debug, sqlx::FromRow)]
struct Transition {
    seq: i64,
    outbox_id: i64,
    owner: Option<String>,
    from_status: String,
    to_status: String,
    last_error: Option<String>,
    txid: i64,
}

async fn rows(pool: &sqlx::PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT id, ordering_key, status, attempts, payload->>'entry_id' AS entry_id, \
         payload->'content'->>'text' AS text FROM outbox \
         WHERE kind <> 'isa.capabilities' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_deliver_every_row_once_in_order() {
    let _turn = support::exclusive().await;
    let db = TestDb::postgres().await;
    let total = CONVERSATIONS * MESSAGES_PER_CONVERSATION;
    let began = Instant::now();

    // The schema first (the daemons then find nothing to migrate), so the trigger can be added.
    db.migrated().await.close().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    for statement in INSTRUMENT {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }

    let (emulator, config) = emulator_and_config(RELAY).await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    // One after the other: each syncs the configuration into the shared database at start.
    let mut replicas = [
        launcher.start("replica-a").await,
        launcher.start("replica-b").await,
    ];
    let urls = [replicas[0].url(), replicas[1].url()];
    let prefixes = replicas
        .iter()
        .map(|d| format!("{}:{}:", d.name, d.pid))
        .collect::<Vec<_>>();
    eprintln!(
        "replicas: {} on {} and {} on {}",
        prefixes[0], urls[0], prefixes[1], urls[1]
    );

    // Each conversation's messages in order, alternating between the two daemons.
    let sender = WebhookSender::new(IN_FLIGHT);
    let deadline = Instant::now() + SEND_TIMEOUT;
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..CONVERSATIONS {
        let sender = sender.clone();
        let urls = urls.clone();
        senders.spawn(async move {
            let user = msisdn(c);
            for n in 0..MESSAGES_PER_CONVERSATION {
                let body = wa_text(&format!("replica-{c:03}-{n:03}"), &user, &text(c, n));
                let url = &urls[(c + n) % 2];
                let answer = sender
                    .post_until_accepted(
                        || url.clone(),
                        &format!("/webhooks/{WA_CHANNEL}"),
                        WA_WEBHOOK_AUTH,
                        &body,
                        deadline,
                    )
                    .await;
                assert_eq!(answer["new"], 1, "{answer}");
            }
        });
    }
    while let Some(joined) = senders.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let sent = began.elapsed();

    // Both relays run until every row is settled.
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let (settled,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM outbox WHERE status IN ('done', 'dead') \
                 AND kind <> 'isa.capabilities'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if settled as usize == total {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "only {settled} of {total} rows settled {DRAIN_TIMEOUT:?} after the last webhook; \
             replica-a's log ends:\n{}\nreplica-b's log ends:\n{}",
            replicas[0].log_tail(30),
            replicas[1].log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = began.elapsed();
    for daemon in &mut replicas {
        daemon.stop(Duration::from_secs(20)).await;
    }

    // Every row done, delivered once, by one of the two replicas.
    let rows = rows(&pool).await;
    assert_eq!(rows.len(), total, "one row per webhook");
    let not_done: Vec<_> = rows.iter().filter(|r| r.status != "done").collect();
    assert!(not_done.is_empty(), "rows not done: {not_done:?}");
    let transitions: Vec<Transition> = sqlx::query_as(
        "SELECT seq, outbox_id, owner, from_status, to_status, last_error, txid \
         FROM test_outbox_transitions ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut claims: HashMap<i64, Vec<&Transition>> = HashMap::new();
    let mut done: HashMap<i64, Vec<&Transition>> = HashMap::new();
    for t in &transitions {
        match t.to_status.as_str() {
            "leased" => claims.entry(t.outbox_id).or_default().push(t),
            "done" => done.entry(t.outbox_id).or_default().push(t),
            // The untried rest of a run, given back: no error recorded.
            "pending" if t.from_status == "leased" && t.last_error.is_none() => {}
            other => panic!(
                "row {} went {} → {other}: no delivery should fail here ({t:?})",
                t.outbox_id, t.from_status
            ),
        }
    }
    let mut by_replica = [0usize; 2];
    let mut owner_of: HashMap<i64, usize> = HashMap::new();
    for row in &rows {
        let finished = done.get(&row.id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            finished.len(),
            1,
            "row {} was settled done {} times",
            row.id,
            finished.len()
        );
        let owner = finished[0].owner.as_deref().unwrap_or_default();
        let replica = prefixes
            .iter()
            .position(|p| owner.starts_with(p.as_str()))
            .unwrap_or_else(|| panic!("row {} was delivered by {owner:?}, not a replica", row.id));
        by_replica[replica] += 1;
        owner_of.insert(row.id, replica);
    }

    // In order, per conversation, across both replicas. The claim that led to a row's delivery
    // (its last before it was done) came either after the row before it was settled done — the
    // trigger's sequence numbers are taken inside the transactions, so a claim numbered after a
    // commit came after it — or in the same transaction as that row's own claim: one run, which
    // one worker delivers in order, each row after the previous one was answered.
    let mut conversations: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        conversations
            .entry(&row.ordering_key)
            .or_default()
            .push(row);
    }
    assert_eq!(
        conversations.len(),
        CONVERSATIONS,
        "one ordering key per conversation"
    );
    let delivering_claim = |id: i64| {
        let done_at = done[&id][0].seq;
        *claims[&id]
            .iter()
            .rev()
            .find(|c| c.seq < done_at)
            .unwrap_or_else(|| panic!("row {id} was done without a claim"))
    };
    let mut shared_conversations = 0;
    for (key, rows) in &conversations {
        for pair in rows.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let claim = delivering_claim(after.id);
            let before_done = done[&before.id][0].seq;
            let same_run = claim.txid == delivering_claim(before.id).txid;
            assert!(
                claim.seq > before_done || same_run,
                "conversation {key}: row {} was claimed (#{}) before row {} was done \
                 (#{before_done}), and not with it",
                after.id,
                claim.seq,
                before.id
            );
        }
        let owners: HashSet<usize> = rows.iter().map(|r| owner_of[&r.id]).collect();
        if owners.len() == 2 {
            shared_conversations += 1;
        }
    }

    // At Salesforce: each conversation holds exactly the messages sent, in order, each entry
    // once and the entry id its row was written with.
    let entry_of: HashMap<&str, &str> = rows
        .iter()
        .map(|r| {
            (
                r.text.as_deref().expect("a text row"),
                r.entry_id.as_deref().expect("an entry id"),
            )
        })
        .collect();
    let mut ids = HashSet::new();
    for c in 0..CONVERSATIONS {
        let user = msisdn(c);
        let conversation = emulator
            .conversation_of(MSG_ADDRESS, &user)
            .unwrap_or_else(|| panic!("Salesforce has no conversation with {user}"));
        let got: Vec<(&str, &str)> = conversation
            .entries
            .iter()
            .map(|e| (e.text().unwrap_or_default(), e.id.as_str()))
            .collect();
        let want: Vec<(String, &str)> = (0..MESSAGES_PER_CONVERSATION)
            .map(|n| {
                let t = text(c, n);
                let id = entry_of[t.as_str()];
                (t, id)
            })
            .collect();
        let want: Vec<(&str, &str)> = want.iter().map(|(t, id)| (t.as_str(), *id)).collect();
        assert_eq!(
            got, want,
            "{user}: not every message exactly once, in order"
        );
        for (_, id) in got {
            assert!(ids.insert(id.to_owned()), "entry {id} arrived twice");
        }
    }
    assert_eq!(ids.len(), total);

    let claimed_again = claims.values().filter(|c| c.len() > 1).count();
    let max_attempts = rows.iter().map(|r| r.attempts).max().unwrap_or_default();
    eprintln!(
        "replicas: PASS — {total} messages over {CONVERSATIONS} conversations answered in \
         {:.1}s, all delivered after {:.1}s; replica-a delivered {}, replica-b {}; \
         {shared_conversations} conversations were served by both; {claimed_again} row(s) \
         claimed more than once (attempts at most {max_attempts}); {} sender retries",
        sent.as_secs_f64(),
        drained.as_secs_f64(),
        by_replica[0],
        by_replica[1],
        sender.retries.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        by_replica.iter().all(|n| *n > 0),
        "both replicas should have delivered part of the work: {by_replica:?}"
    );
    pool.close().await;
}
