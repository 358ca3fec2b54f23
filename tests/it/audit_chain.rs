//! The audit trail's hash chain: the sealer seals committed rows in id order, `verify` passes on
//! an untouched trail and names the first row an intruder with the owner's rights changed,
//! deleted or slipped in; an anchored head catches a cut or rebuilt chain; on PostgreSQL rows
//! committed out of id order are sealed in id order, and a runtime role with only INSERT and
//! SELECT on the trail writes and seals it but cannot change it. Each test on SQLite and
//! PostgreSQL unless its name says PostgreSQL.

use crate::support;

use byocd::{
    domain::audit_chain::{self, Anchor, Breach, Broken, Verification},
    lifecycle::seal::Sealer,
    store::{AnyStore, AuditEntry, Severity, Store, StoreOptions},
};
use serde_json::json;
use support::TestDb;

fn entry(n: i64) -> AuditEntry {
    AuditEntry::new("test.row", format!("row {n} — ünïcode"))
        .severity(if n % 2 == 0 {
            Severity::Info
        } else {
            Severity::Warning
        })
        .org("00D000000000001")
        .conversation(uuid::Uuid::new_v4())
        .detail(json!({ "n": n, "nested": { "b": [1, 2.5, null], "a": "x" } }))
}

async fn append(store: &AnyStore, from: i64, to: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in from..=to {
        ids.push(store.append_audit(&entry(n)).await.unwrap());
    }
    ids
}

/// One sealing round with nothing in flight: seals every committed row.
async fn seal(store: &AnyStore) -> u64 {
    Sealer::new().round(store).await.unwrap().0
}

async fn verify(db: &TestDb, expect: Option<Anchor>) -> Verification {
    let store = AnyStore::open(
        &db.url,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let v = audit_chain::verify(&store, expect).await.unwrap();
    store.close().await;
    v
}

/// Runs statements as an intruder with the owner's rights: the append-only triggers off first
/// (SQLite: dropped; PostgreSQL: disabled, then enabled again).
async fn tamper(db: &TestDb, statements: &[&str]) {
    use sqlx::Connection;
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        for t in [
            "audit_log_no_update",
            "audit_log_no_delete",
            "audit_seal_no_update",
            "audit_seal_no_delete",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "ALTER TABLE audit_log DISABLE TRIGGER USER; \
             ALTER TABLE audit_seal DISABLE TRIGGER USER",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        sqlx::raw_sql(
            "ALTER TABLE audit_log ENABLE TRIGGER USER; \
             ALTER TABLE audit_seal ENABLE TRIGGER USER",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

fn broken(id: i64, breach: Breach) -> Option<Broken> {
    Some(Broken { id, breach })
}

async fn sealing_happens_and_an_untouched_trail_verifies(db: TestDb) {
    let store = db.migrated().await;
    let mut ids = append(&store, 1, 5).await;
    let mut tx = store.transaction().await.unwrap();
    ids.extend(
        tx.insert_audit(&[entry(6), entry(7), entry(8)])
            .await
            .unwrap(),
    );
    tx.commit().await.unwrap();

    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.unsealed, v.broken, v.head), (0, 8, None, None));

    assert_eq!(seal(&store).await, 8);
    let head = store.audit_chain_head().await.unwrap().unwrap();
    assert_eq!(head.audit_id, *ids.last().unwrap());
    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.unsealed, v.broken.clone()), (8, 0, None));
    let anchor = v.anchor().unwrap();
    assert_eq!(
        anchor.to_string(),
        format!("{}@{}", head.hash, head.audit_id)
    );
    assert_eq!(seal(&store).await, 0, "nothing new to seal");

    append(&store, 9, 10).await;
    let v = verify(&db, Some(anchor.clone())).await;
    assert_eq!((v.sealed, v.unsealed, v.broken), (8, 2, None));
    assert_eq!(seal(&store).await, 2);
    let v = verify(&db, Some(anchor)).await;
    assert_eq!((v.sealed, v.unsealed, v.broken), (10, 0, None));
    store.close().await;
}

async fn a_modified_row_is_named_first_broken(db: TestDb) {
    let store = db.migrated().await;
    append(&store, 1, 6).await;
    seal(&store).await;
    store.close().await;

    tamper(
        &db,
        &[r#"UPDATE audit_log SET detail = '{"n": 99}' WHERE id = 5"#],
    )
    .await;
    assert_eq!(verify(&db, None).await.broken, broken(5, Breach::Modified));
    tamper(&db, &["UPDATE audit_log SET actor = 'admin' WHERE id = 3"]).await;
    let v = verify(&db, None).await;
    assert_eq!(
        v.broken,
        broken(3, Breach::Modified),
        "the first broken row"
    );
    assert_eq!(v.sealed, 2, "rows 1 and 2 verified before it");
    tamper(&db, &["UPDATE audit_log SET channel = 'acme' WHERE id = 1"]).await;
    assert_eq!(verify(&db, None).await.broken, broken(1, Breach::Modified));
}

async fn a_deleted_row_is_named_missing(db: TestDb) {
    let store = db.migrated().await;
    append(&store, 1, 6).await;
    seal(&store).await;
    store.close().await;

    tamper(&db, &["DELETE FROM audit_log WHERE id = 4"]).await;
    assert_eq!(verify(&db, None).await.broken, broken(4, Breach::Missing));
    // Its seal deleted too: the next seal still names it as its predecessor.
    tamper(&db, &["DELETE FROM audit_seal WHERE audit_id = 4"]).await;
    assert_eq!(verify(&db, None).await.broken, broken(4, Breach::Missing));
}

/// An id that never committed is no gap in the chain; a row slipped into it later is.
async fn a_gap_verifies_and_a_row_forged_into_it_is_named_inserted(db: TestDb) {
    let store = db.migrated().await;
    append(&store, 1, 3).await;
    if db.url.starts_with("sqlite:") {
        // SQLite gives a rolled-back id out again; skip one as a crashed writer would leave it.
        store.close().await;
        tamper(
            &db,
            &["UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'audit_log'"],
        )
        .await;
    } else {
        // PostgreSQL: a transaction that took an id and rolled back.
        let mut tx = store.transaction().await.unwrap();
        assert_eq!(tx.insert_audit(&[entry(0)]).await.unwrap(), [4]);
        tx.rollback().await.unwrap();
        store.close().await;
    }
    let store = db.open().await;
    assert_eq!(append(&store, 5, 6).await, [5, 6]);
    assert_eq!(seal(&store).await, 5);
    store.close().await;
    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.broken), (5, None));

    let overriding = if db.url.starts_with("sqlite:") {
        ""
    } else {
        "OVERRIDING SYSTEM VALUE"
    };
    let forge = format!(
        "INSERT INTO audit_log (id, at, kind, severity, actor, message, detail) {overriding} \
         VALUES (4, '2026-11-21T10:00:00.000000Z', 'channel.added', 'info', 'daemon', \
         'forged', '{{}}')"
    );
    tamper(&db, &[&forge]).await;
    assert_eq!(verify(&db, None).await.broken, broken(4, Breach::Inserted));
}

async fn a_cut_or_rebuilt_chain_is_caught_only_with_an_anchored_head(db: TestDb) {
    let store = db.migrated().await;
    append(&store, 1, 3).await;
    seal(&store).await;
    let at_3 = verify(&db, None).await.anchor().unwrap();
    append(&store, 4, 5).await;
    seal(&store).await;
    let at_5 = verify(&db, None).await.anchor().unwrap();
    assert_eq!((at_3.id, at_5.id), (3, 5));
    store.close().await;

    // The last two rows cut with their seals: the rest of the chain is intact.
    tamper(
        &db,
        &[
            "DELETE FROM audit_seal WHERE audit_id >= 4",
            "DELETE FROM audit_log WHERE id >= 4",
        ],
    )
    .await;
    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.broken), (3, None));
    assert_eq!(
        verify(&db, Some(at_5)).await.broken,
        broken(5, Breach::Truncated)
    );
    assert_eq!(verify(&db, Some(at_3.clone())).await.broken, None);

    // Row 2 rewritten and the whole chain sealed again, as byocd would.
    tamper(
        &db,
        &[
            "DELETE FROM audit_seal",
            "UPDATE audit_log SET message = 'nothing to see' WHERE id = 2",
        ],
    )
    .await;
    let store = db.open().await;
    assert_eq!(seal(&store).await, 3);
    store.close().await;
    assert_eq!(verify(&db, None).await.broken, None);
    assert_eq!(
        verify(&db, Some(at_3)).await.broken,
        broken(3, Breach::Rewritten)
    );
}

/// A backlog (the rows of an upgrade, or a daemon that was down) is sealed by one round in
/// chunks, and verified page by page. Prints how long each took (`--nocapture`).
async fn a_backlog_of_ten_thousand_rows_is_sealed_in_one_round_and_verifies(db: TestDb) {
    let store = db.migrated().await;
    for chunk in 0..20 {
        let mut tx = store.transaction().await.unwrap();
        let entries: Vec<_> = (0..500).map(|n| entry(chunk * 500 + n)).collect();
        tx.insert_audit(&entries).await.unwrap();
        tx.commit().await.unwrap();
    }
    let started = std::time::Instant::now();
    assert_eq!(seal(&store).await, 10_000);
    let sealing = started.elapsed();
    store.close().await;
    let started = std::time::Instant::now();
    let v = verify(&db, None).await;
    let verifying = started.elapsed();
    assert_eq!((v.sealed, v.unsealed, v.broken), (10_000, 0, None));
    eprintln!(
        "{}: sealed 10,000 rows in {sealing:?}, verified them in {verifying:?}",
        db.url.split(':').next().unwrap()
    );
}

on_both_backends!(
    a_backlog_of_ten_thousand_rows_is_sealed_in_one_round_and_verifies,
    sealing_happens_and_an_untouched_trail_verifies,
    a_modified_row_is_named_first_broken,
    a_deleted_row_is_named_missing,
    a_gap_verifies_and_a_row_forged_into_it_is_named_inserted,
    a_cut_or_rebuilt_chain_is_caught_only_with_an_anchored_head,
);

/// Two transactions take ids 1 and 2; the second commits first. Sealing row 2 then would make
/// row 1, committed later, look inserted: the sealer waits until row 1's transaction has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_committed_out_of_id_order_are_sealed_in_id_order() {
    let db = TestDb::postgres().await;
    let store = db.migrated().await;
    let mut sealer = Sealer::new();

    let mut first = store.transaction().await.unwrap();
    let first_ids = first.insert_audit(&[entry(1)]).await.unwrap();
    let mut second = store.transaction().await.unwrap();
    let second_ids = second.insert_audit(&[entry(2)]).await.unwrap();
    assert!(second_ids[0] > first_ids[0]);
    second.commit().await.unwrap();

    assert_eq!(sealer.round(&store).await.unwrap().0, 0);
    assert_eq!(store.audit_chain_head().await.unwrap(), None);
    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.unsealed, v.broken), (0, 1, None));

    // Traffic goes on: a third transaction is in flight when the first commits. The horizon
    // taken while the first was open (up to row 2) is sealed; row 3 waits for its own.
    let mut third = store.transaction().await.unwrap();
    let third_ids = third.insert_audit(&[entry(3)]).await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(sealer.round(&store).await.unwrap().0, 2);
    third.commit().await.unwrap();
    assert_eq!(sealer.round(&store).await.unwrap().0, 1);

    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.unsealed, v.broken), (3, 0, None));
    assert_eq!(v.head.unwrap().0, third_ids[0]);
    store.close().await;
}

/// The GRANT statements of docs/security.md, for `role` on database `database`.
fn runtime_role_grants(role: &str, database: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"))
        .expect("docs/security.md");
    let block = doc
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("GRANT") && b.contains("byocd_app"))
        .expect("docs/security.md shows the runtime role's GRANT statements");
    block
        .split(';')
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .replace("byocd_app", role)
                .replace("DATABASE byocd ", &format!("DATABASE {database} "))
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_runtime_role_with_insert_and_select_on_the_trail_writes_and_seals_it_but_cannot_change_it()
 {
    use sqlx::Connection;
    let db = TestDb::postgres().await;
    let owner = db.migrated().await;
    owner.close().await;
    let role = format!("byocd_rt_{}", uuid::Uuid::new_v4().simple());
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut statements = vec![format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'runtime-secret'"
    )];
    statements.extend(runtime_role_grants(&role, &database));
    for sql in &statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let host_and_db = db.url.rsplit_once('@').map(|(_, rest)| rest).unwrap();
    let runtime_url = format!("postgres://{role}:runtime-secret@{host_and_db}");

    // The daemon's start as that role: the schema is current, so nothing is migrated.
    let store = AnyStore::open(&runtime_url, StoreOptions::default())
        .await
        .unwrap();
    assert!(
        byocd::app::migrate_unless_current(&store)
            .await
            .unwrap()
            .is_empty()
    );
    append(&store, 1, 2).await;
    let mut tx = store.transaction().await.unwrap();
    tx.insert_audit(&[entry(3)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seal(&store).await, 3);
    store.close().await;
    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.broken), (3, None));

    let mut as_role = sqlx::PgConnection::connect(&runtime_url).await.unwrap();
    for sql in [
        "UPDATE audit_log SET message = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "UPDATE audit_seal SET hash = repeat('0', 64)",
        "DELETE FROM audit_seal",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "ALTER TABLE audit_seal DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_no_update ON audit_log",
        "CREATE TABLE audit_log_copy (id bigint)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'forged', true, '\\x00', 0)",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut as_role)
            .await
            .expect_err(sql)
            .to_string();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }
    let v = verify(&db, None).await;
    assert_eq!((v.sealed, v.broken), (3, None));
}
