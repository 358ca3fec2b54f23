//! The state store, every test run once on SQLite and once on PostgreSQL.

use crate::support;

use byocd::{
    crypto::TokenKey,
    store::{
        AnyStore, AuditEntry, AuditFilter, ChannelRecord, OrgRecord, SealedToken, Severity, Store,
        StoreError, StoreOptions,
    },
};
use secrecy::ExposeSecret;
use serde_json::json;
use support::TestDb;

const ORG: &str = "00D000000000001";
const ORG2: &str = "00D000000000002";

fn org(id: &str, hash: &str) -> OrgRecord {
    OrgRecord {
        org_id: id.into(),
        name: format!("org {id}"),
        content_hash: hash.into(),
        settings: json!({ "login_url": "https://login.salesforce.com", "private_key_file": "keys/org.pem" }),
    }
}

fn channel(name: &str, org_id: &str, address: &str, hash: &str) -> ChannelRecord {
    ChannelRecord {
        name: name.into(),
        org_id: org_id.into(),
        product: "Messaging".into(),
        provider: "8x8".into(),
        channel_address_identifier: address.into(),
        content_hash: hash.into(),
        settings: json!({ "provider": { "kind": "8x8", "api_key_file": "secrets/8x8.key" } }),
    }
}

/// Table and view columns, in order, as the database itself describes them.
async fn columns(db: &TestDb) -> Vec<(String, String)> {
    if db.url.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
             AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY m.name, p.cid",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' \
             ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    }
}

/// Runs one statement on the database outside the store, as an auditor or intruder would.
async fn raw_execute(db: &TestDb, sql: &'static str) -> Result<u64, sqlx::Error> {
    use sqlx::Connection;
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    }
}

/// Runs statements outside the store, in order, on one connection; stops at the first error.
async fn raw_batch(db: &TestDb, statements: &[&str]) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
        for sql in statements {
            // Test fixtures written in this file; nothing from outside.
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await?;
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        for sql in statements {
            // Test fixtures written in this file; nothing from outside.
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await?;
        }
    }
    Ok(())
}

/// An upgrade from schema 6: a rep's choices recorded before migration 7 (which rebuilds the
/// table on SQLite) are still there and still answer, and a carousel can then be recorded —
/// a form nothing else accepts.
async fn migration_7_keeps_recorded_choices_and_admits_carousels(db: TestDb) {
    use sqlx::Connection;
    const CONVERSATION: &str = "00000000-0000-4000-8000-000000000007";
    // Schema 6, as the previous release left it: migrations 1 to 6 from this tree.
    let backend = if db.url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("migrations/{backend}"));
    let six = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, six.path().join(name)).unwrap();
        }
    }
    let old = sqlx::migrate::Migrator::new(six.path()).await.unwrap();
    assert_eq!(old.iter().count(), 6);
    if backend == "sqlite" {
        use sqlx::ConnectOptions;
        let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
        let mut conn = options.create_if_missing(true).connect().await.unwrap();
        old.run(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        old.run(&mut conn).await.unwrap();
    }
    let at = "2026-11-30T10:00:00Z";
    let prompt = |entry: &str, form: &str| {
        format!(
            "INSERT INTO choice_prompts (conversation_id, salesforce_entry_id, message_id, \
             outbox_id, provider_message_id, form, options, created_at) VALUES \
             ('{CONVERSATION}', '{entry}', 'msg-{entry}', 7, 'umid-{entry}', '{form}', \
             '[{{\"number\": 1, \"option_identifier\": \"yes\", \"sent_id\": \"yes\", \
             \"title\": \"Yes\"}}]', '{at}')"
        )
    };
    raw_batch(
        &db,
        &[
            &format!(
                "INSERT INTO orgs (org_id, name, content_hash, settings, created_at, updated_at) \
                 VALUES ('{ORG}', 'org', 'h', '{{}}', '{at}', '{at}')"
            ),
            &format!(
                "INSERT INTO channels (name, org_id, product, provider, \
                 channel_address_identifier, content_hash, settings, created_at, updated_at) \
                 VALUES ('acme-rcs', '{ORG}', 'Messaging', '8x8', 'addr', 'h', '{{}}', '{at}', '{at}')"
            ),
            &format!(
                "INSERT INTO end_users (id, channel, provider_user_key, salesforce_client_id, \
                 created_at, updated_at) VALUES ('00000000-0000-4000-8000-000000000001', \
                 'acme-rcs', '+447700900007', '+447700900007', '{at}', '{at}')"
            ),
            &format!(
                "INSERT INTO conversations (id, channel, end_user_id, created_at, updated_at) \
                 VALUES ('{CONVERSATION}', 'acme-rcs', '00000000-0000-4000-8000-000000000001', \
                 '{at}', '{at}')"
            ),
            &prompt("before", "suggestions"),
        ],
    )
    .await
    .unwrap();
    // Schema 6 refuses a carousel: what the relay ran into before migration 7.
    let refused = raw_batch(&db, &[&prompt("early", "carousel")]).await;
    assert!(refused.is_err(), "schema 6 accepted a carousel record");

    let store = db.open().await;
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), [7]);
    let conversation = uuid::Uuid::parse_str(CONVERSATION).unwrap();
    let kept = store.choice_prompts(conversation, 5).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (kept[0].salesforce_entry_id.as_str(), kept[0].form.as_str()),
        ("before", "suggestions")
    );
    assert_eq!(kept[0].options[0]["sent_id"], "yes");

    raw_batch(&db, &[&prompt("after", "carousel")])
        .await
        .unwrap();
    let forms: Vec<String> = store
        .choice_prompts(conversation, 5)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.form)
        .collect();
    assert_eq!(forms.len(), 2);
    assert!(forms.contains(&"carousel".to_owned()), "{forms:?}");
    let bogus = raw_batch(&db, &[&prompt("bogus", "tiles")]).await;
    assert!(bogus.is_err(), "an unknown form was accepted");
}

async fn migrating_twice_applies_once(db: TestDb) {
    let store = db.open().await;
    let before = store.schema_status().await.unwrap();
    assert_eq!(before.applied, None);
    assert!(!before.is_current());

    let applied = store.migrate().await.unwrap();
    assert_eq!(
        applied.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(store.schema_status().await.unwrap().is_current());
    let schema = columns(&db).await;

    assert!(store.migrate().await.unwrap().is_empty());
    assert_eq!(
        columns(&db).await,
        schema,
        "second migrate changed the schema"
    );
    for table in [
        "orgs",
        "channels",
        "oauth_tokens",
        "end_users",
        "conversations",
        "sessions",
        "message_map",
        "outbox",
        "inbound_dedupe",
        "quarantine",
        "pubsub_cursors",
        "routings",
        "audit_log",
        "audit_seal",
        "audit_trail",
        "session_timeline",
        "channel_status",
        "outbox_summary",
    ] {
        assert!(
            schema.iter().any(|(t, _)| t == table),
            "{table} missing from the schema"
        );
    }
    store.ping().await.unwrap();
}

async fn sync_adds_changes_and_retires_with_audit(db: TestDb) {
    let store = db.migrated().await;
    let report = store
        .sync_config(
            &[org(ORG, "o1")],
            &[
                channel("acme-wa", ORG, "addr-wa", "c1"),
                channel("acme-rcs", ORG, "addr-rcs", "c2"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(report.orgs.added, [ORG]);
    assert_eq!(report.channels.added, ["acme-wa", "acme-rcs"]);

    // Same files again: nothing changes and nothing is audited.
    let audit_before = store.audit(&AuditFilter::default()).await.unwrap().len();
    let again = store
        .sync_config(
            &[org(ORG, "o1")],
            &[
                channel("acme-wa", ORG, "addr-wa", "c1"),
                channel("acme-rcs", ORG, "addr-rcs", "c2"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again.channels.unchanged, 2);
    assert_eq!(again.orgs.unchanged, 1);
    assert_eq!(
        store.audit(&AuditFilter::default()).await.unwrap().len(),
        audit_before
    );

    // One edited, one removed.
    let report = store
        .sync_config(
            &[org(ORG, "o1")],
            &[channel("acme-wa", ORG, "addr-wa", "c1-edited")],
        )
        .await
        .unwrap();
    assert_eq!(report.channels.changed, ["acme-wa"]);
    assert_eq!(report.channels.retired, ["acme-rcs"]);

    let channels = store.channels().await.unwrap();
    assert_eq!(channels.len(), 2, "a retired channel keeps its row");
    let rcs = channels.iter().find(|c| c.name == "acme-rcs").unwrap();
    assert!(rcs.retired_at.is_some());
    let wa = channels.iter().find(|c| c.name == "acme-wa").unwrap();
    assert_eq!(wa.content_hash, "c1-edited");
    assert!(wa.retired_at.is_none());
    assert_eq!(wa.settings["provider"]["api_key_file"], "secrets/8x8.key");

    let kinds: Vec<_> = store
        .audit(&AuditFilter {
            kind: Some("channel".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.entry.kind, r.entry.channel.unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("channel.added".to_string(), "acme-wa".to_string()),
            ("channel.added".into(), "acme-rcs".into()),
            ("channel.retired".into(), "acme-rcs".into()),
            ("channel.changed".into(), "acme-wa".into()),
        ]
    );
    let changed = store
        .audit(&AuditFilter {
            kind: Some("channel.changed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(changed[0].entry.detail["content_hash"], "c1-edited");
    assert_eq!(changed[0].entry.org_id.as_deref(), Some(ORG));
}

async fn a_retired_address_can_be_taken_by_a_renamed_channel_and_restored(db: TestDb) {
    let store = db.migrated().await;
    store
        .sync_config(&[org(ORG, "o1")], &[channel("old-name", ORG, "addr", "h")])
        .await
        .unwrap();
    // Renamed in the files: the old name retires and the new one takes the same address.
    let report = store
        .sync_config(&[org(ORG, "o1")], &[channel("new-name", ORG, "addr", "h")])
        .await
        .unwrap();
    assert_eq!(report.channels.retired, ["old-name"]);
    assert_eq!(report.channels.added, ["new-name"]);

    // And back: the old row is restored, its history intact.
    let report = store
        .sync_config(&[org(ORG, "o1")], &[channel("old-name", ORG, "addr", "h")])
        .await
        .unwrap();
    assert_eq!(report.channels.changed, ["old-name"]);
    assert_eq!(report.channels.retired, ["new-name"]);
    let active: Vec<_> = store
        .channels()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.retired_at.is_none())
        .map(|c| c.name)
        .collect();
    assert_eq!(active, ["old-name"]);
}

async fn two_active_channels_cannot_share_an_address(db: TestDb) {
    let store = db.migrated().await;
    let err = store
        .sync_config(
            &[org(ORG, "o1")],
            &[
                channel("a", ORG, "same", "h1"),
                channel("b", ORG, "same", "h2"),
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    // The failed sync changed nothing.
    assert!(store.channels().await.unwrap().is_empty());
    assert!(
        store
            .audit(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn orgs_retire_when_removed(db: TestDb) {
    let store = db.migrated().await;
    store
        .sync_config(&[org(ORG, "o1"), org(ORG2, "o2")], &[])
        .await
        .unwrap();
    let report = store.sync_config(&[org(ORG, "o1b")], &[]).await.unwrap();
    assert_eq!(report.orgs.changed, [ORG]);
    assert_eq!(report.orgs.retired, [ORG2]);
    let rows = store
        .audit(&AuditFilter {
            org_id: Some(ORG2.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<_> = rows.iter().map(|r| r.entry.kind.as_str()).collect();
    assert_eq!(kinds, ["org.added", "org.retired"]);
}

async fn tokens_are_stored_sealed_and_replaced(db: TestDb) {
    let store = db.migrated().await;
    store.sync_config(&[org(ORG, "o1")], &[]).await.unwrap();
    assert!(store.token(ORG).await.unwrap().is_none());

    let key = TokenKey::generate();
    let plaintext = "00D000000000001!AQ4AQFakeAccessTokenThatMustNeverBeStoredInClear";
    let context = format!("oauth_tokens|{ORG}");
    store
        .save_token(&SealedToken {
            org_id: ORG.into(),
            sealed_token: key.seal(plaintext, &context),
            key_id: key.id().into(),
            instance_url: Some("https://acme.my.salesforce.com".into()),
        })
        .await
        .unwrap();
    let stored = store.token(ORG).await.unwrap().unwrap();
    assert_eq!(stored.token.key_id, key.id());
    assert_eq!(
        key.open(&stored.token.sealed_token, &context)
            .unwrap()
            .expose_secret(),
        plaintext
    );

    // Nothing in the database holds the plaintext.
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        store.close().await;
        for suffix in ["", "-wal"] {
            let file = format!("{path}{suffix}");
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(
                    !bytes
                        .windows(plaintext.len())
                        .any(|w| w == plaintext.as_bytes()),
                    "{file} holds the token in clear"
                );
            }
        }
        let store = db.open().await;
        assert!(store.token(ORG).await.unwrap().is_some());
        check_replace_and_discard(&store, &key, &context).await;
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let (dump,): (String,) =
            sqlx::query_as("SELECT string_agg(t::text, '|') FROM oauth_tokens t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(
            !dump.contains(plaintext),
            "oauth_tokens holds the token in clear"
        );
        assert!(!dump.contains("FakeAccessToken"));
        check_replace_and_discard(&store, &key, &context).await;
    }
}

async fn check_replace_and_discard(store: &AnyStore, key: &TokenKey, context: &str) {
    store
        .save_token(&SealedToken {
            org_id: ORG.into(),
            sealed_token: key.seal("second", context),
            key_id: key.id().into(),
            instance_url: None,
        })
        .await
        .unwrap();
    let stored = store.token(ORG).await.unwrap().unwrap();
    assert_eq!(
        key.open(&stored.token.sealed_token, context)
            .unwrap()
            .expose_secret(),
        "second"
    );
    assert_eq!(stored.token.instance_url, None);
    assert!(store.discard_token(ORG).await.unwrap());
    assert!(!store.discard_token(ORG).await.unwrap());
    assert!(store.token(ORG).await.unwrap().is_none());
}

async fn audit_rows_filter_by_subject_kind_and_time(db: TestDb) {
    use chrono::{Duration, TimeZone, Utc};
    let clock = byocd::clock::ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap());
    let store = AnyStore::open(
        &db.url,
        StoreOptions {
            clock: std::sync::Arc::new(clock.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let session = uuid::Uuid::now_v7();
    let conversation = uuid::Uuid::now_v7();
    let first = store
        .append_audit(
            &AuditEntry::new("token.minted", "minted a token for org 00D000000000001")
                .org(ORG)
                .detail(json!({ "latency_ms": 120 })),
        )
        .await
        .unwrap();
    clock.advance(Duration::hours(1));
    let second = store
        .append_audit(
            &AuditEntry::new("isa.call", "POST /interactions 202")
                .org(ORG)
                .channel("acme-wa")
                .conversation(conversation)
                .session(session)
                .detail(json!({ "status": 202, "request_id": "c0ffee" })),
        )
        .await
        .unwrap();
    clock.advance(Duration::hours(1));
    store
        .append_audit(
            &AuditEntry::new("token.mint_failed", "invalid_grant")
                .severity(Severity::Alert)
                .actor("salesforce")
                .org(ORG2),
        )
        .await
        .unwrap();
    assert!(second > first, "audit ids grow");

    let all = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0].at,
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
    );
    assert_eq!(all[2].entry.severity, Severity::Alert);
    assert_eq!(all[2].entry.actor, "salesforce");

    let tokens = store
        .audit(&AuditFilter {
            kind: Some("token".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tokens.len(), 2, "a kind matches its children");
    let by_session = store
        .audit(&AuditFilter {
            session_id: Some(session),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_session.len(), 1);
    assert_eq!(by_session[0].entry.conversation_id, Some(conversation));
    assert_eq!(by_session[0].entry.detail["status"], 202);
    let by_channel = store
        .audit(&AuditFilter {
            channel: Some("acme-wa".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_channel.len(), 1);
    let window = store
        .audit(&AuditFilter {
            since: Some(Utc.with_ymd_and_hms(2026, 11, 1, 9, 30, 0).unwrap()),
            until: Some(Utc.with_ymd_and_hms(2026, 11, 1, 10, 30, 0).unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.iter().map(|r| r.id).collect::<Vec<_>>(), [second]);
    let newest = store
        .audit(&AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].id, second, "the newest rows, oldest first");
}

async fn the_database_refuses_to_change_the_audit_log(db: TestDb) {
    let store = db.migrated().await;
    store
        .append_audit(&AuditEntry::new("test.kept", "must stay"))
        .await
        .unwrap();
    store.close().await;
    for sql in [
        "UPDATE audit_log SET message = 'rewritten'",
        "DELETE FROM audit_log",
    ] {
        let err = raw_execute(&db, sql).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    if db.url.starts_with("postgres") {
        let err = raw_execute(&db, "TRUNCATE audit_log")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{err}");
    }
    let store = db.open().await;
    let rows = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.message, "must stay");
}

/// A reload lifts the recorded pauses; when the database refuses, the failure is audited as an
/// alert (besides the ERROR log line) and the record stays as it was.
async fn a_failure_to_lift_recorded_pauses_on_reload_is_audited_as_an_alert(db: TestDb) {
    use sqlx::Connection;
    let store = db.migrated().await;
    store
        .sync_config(
            &[org(ORG, "o1")],
            &[channel("acme-whatsapp", ORG, "addr", "h1")],
        )
        .await
        .unwrap();
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        store
            .set_channel_pause("acme-whatsapp", Some(until), Some("10031: refused"))
            .await
            .unwrap()
    );
    // The database refuses the lift, as a lost privilege or a full disk would.
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TRIGGER refuse_lift BEFORE UPDATE ON channels \
             BEGIN SELECT RAISE(ABORT, 'lift refused by the test'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_lift() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'lift refused by the test'; END $$; \
             CREATE TRIGGER refuse_lift BEFORE UPDATE ON channels \
             FOR EACH ROW EXECUTE FUNCTION refuse_lift()",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    assert!(
        byocd::lifecycle::pauses::lift_or_alert(&store)
            .await
            .is_empty()
    );
    let alerts = store
        .audit(&AuditFilter {
            kind: Some("config.pauses_not_cleared".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].entry.severity, Severity::Alert);
    let error = alerts[0].entry.detail["error"].as_str().unwrap();
    assert!(error.contains("lift refused by the test"), "{error}");
    let channels = store.channels().await.unwrap();
    assert_eq!(channels[0].pause_reason.as_deref(), Some("10031: refused"));
    store.close().await;
}

/// The SQL blocks of docs/audit.md.
fn audit_doc_queries() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit.md"))
        .expect("docs/audit.md");
    doc.split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_owned())
        .collect()
}

async fn the_audit_guide_queries_run_unchanged(db: TestDb) {
    let store = db.migrated().await;
    store
        .sync_config(
            &[org(ORG, "o1")],
            &[channel("acme-whatsapp", ORG, "addr", "hash-v1")],
        )
        .await
        .unwrap();
    store
        .sync_config(
            &[org(ORG, "o1")],
            &[channel("acme-whatsapp", ORG, "addr", "hash-v2")],
        )
        .await
        .unwrap();
    store
        .append_audit(
            &AuditEntry::new("daemon.started", "byocd started")
                .detail(json!({ "version": "0.1.0", "config_hash": "abc" })),
        )
        .await
        .unwrap();
    store.close().await;

    let queries = audit_doc_queries();
    assert!(queries.len() >= 8, "docs/audit.md lost its examples");
    let mut rows_per_query = Vec::new();
    for sql in &queries {
        let rows = if db.url.starts_with("sqlite:") {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(&mut conn)
                .await
                .map(|r| r.len())
        } else {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(&mut conn)
                .await
                .map(|r| r.len())
        };
        rows_per_query.push(rows.unwrap_or_else(|e| panic!("{sql}\nfailed: {e}")));
    }
    // The channel history shows both versions; the start shows once; the channel is listed.
    let find = |needle: &str| {
        let i = queries.iter().position(|q| q.contains(needle)).unwrap();
        rows_per_query[i]
    };
    assert_eq!(find("kind LIKE 'channel.%'"), 2);
    assert_eq!(find("kind = 'daemon.started'"), 1);
    assert_eq!(find("FROM channel_status"), 1);
}

/// The intake's end-user lookup runs for every group of webhooks: each of its three branches
/// must be an index search, never a scan of the channel's end users (a lookup that scanned took
/// 175 ms per webhook with a million end users; docs/benchmarks.md), and so must the reads of
/// the end user's conversation and open session. Checked on the plan each database chooses for
/// the statement with its parameters unbound, on empty tables (where a scan looks cheapest).
async fn the_end_user_lookup_searches_indexes_and_scans_nothing(db: TestDb) {
    let store = db.migrated().await;
    store.close().await;
    use byocd::store::Backend;
    let sqlite = db.url.starts_with("sqlite");
    let sql = byocd::store::known_end_users_sql(if sqlite {
        Backend::Sqlite
    } else {
        Backend::Postgres
    });
    let plan: Vec<String> = if sqlite {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            sql.replace('$', "?")
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter().map(|r| r.3).collect()
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PREPARE lookup(text[], text[], text[], text[]) AS {sql}"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(
            "EXPLAIN EXECUTE lookup(ARRAY['c'], ARRAY['k'], ARRAY['+6591234567'], \
             ARRAY[NULL]::text[])",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        pool.close().await;
        rows.into_iter().map(|r| r.0).collect()
    };
    let text = plan.join("\n");
    let by_identifier = ["provider_user_key", "msisdn", "channel_user_id"];
    for column in by_identifier {
        assert!(
            plan.iter().any(|l| {
                (l.contains("SEARCH e USING") || l.contains("Index Cond"))
                    && l.contains(&format!("{column} = "))
                    || l.contains(&format!("{column}=?"))
            }),
            "no index search by {column}:\n{text}"
        );
    }
    for table in ["end_users", "e", "conversations", "c", "sessions", "s"] {
        assert!(
            !plan
                .iter()
                .any(|l| l.contains(&format!("SCAN {table}")) && !l.contains("VIRTUAL TABLE")),
            "a scan of {table}:\n{text}"
        );
    }
    assert!(!text.contains("Seq Scan"), "a sequential scan:\n{text}");
}

/// Issue 15: finished work leaves the outbox after its retention — delivered and discarded rows
/// only; pending, leased and dead-lettered rows stay, and so do the audit trail and the message
/// id map. The purge is audited with its count, and a second run finds nothing more.
async fn finished_work_is_purged_after_its_retention_and_nothing_else(db: TestDb) {
    use byocd::lifecycle::purge::purge_once;
    let store = db.migrated().await;
    store
        .sync_config(&[org(ORG, "o1")], &[channel("c", ORG, "addr", "h")])
        .await
        .unwrap();
    let ago = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    // (status, finished this many days ago)
    let rows = [
        ("done", Some(10)),
        ("done", Some(9)),
        ("done", Some(8)),
        ("done", Some(1)),
        ("discarded", Some(30)),
        ("dead", Some(30)),
        ("pending", None),
        ("leased", None),
    ];
    for (n, (status, finished)) in rows.iter().enumerate() {
        let finished = finished.map_or("NULL".to_owned(), |d| format!("'{}'", ago(d)));
        let created = ago(40);
        raw_execute_owned(
            &db,
            format!(
                "INSERT INTO outbox (kind, org_id, channel, ordering_key, payload, status, attempts, \
                 next_attempt_at, created_at, updated_at, finished_at) VALUES ('isa.message', \
                 '{ORG}', 'c', 'k{n}', '{{}}', '{status}', 1, '{created}', '{created}', '{created}', \
                 {finished})"
            ),
        )
        .await
        .unwrap();
    }
    store
        .append_audit(&AuditEntry::new("inbound.message", "kept"))
        .await
        .unwrap();
    let clock: byocd::clock::SharedClock = std::sync::Arc::new(byocd::clock::SystemClock);
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    assert_eq!(purge_once(&store, &clock, week).await.unwrap(), 4);
    let left: Vec<String> = store
        .outbox(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["dead", "done", "leased", "pending"]);
    let purged = store
        .audit(&AuditFilter {
            kind: Some("outbox.purged".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].entry.detail["rows"], 4);
    assert_eq!(
        store
            .audit(&AuditFilter {
                kind: Some("inbound.message".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1,
        "the audit trail is not purged"
    );
    assert_eq!(purge_once(&store, &clock, week).await.unwrap(), 0);
    assert_eq!(
        store
            .audit(&AuditFilter {
                kind: Some("outbox.purged".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1,
        "an empty run is not audited"
    );
}

/// Issue 17: the retention purges find their rows through an index on age (migration 0003)
/// and never scan the tables they purge: the quarantine, the dedupe keys, the sessions, nor the
/// outbox they check for rows still referring to a session. (PostgreSQL plans a sequential
/// scan of an empty table whatever its indexes, so there sequential scans are discouraged
/// (`enable_seqscan = off`): the plan then shows whether an index can serve each step.)
async fn the_retention_purges_search_indexes_and_scan_nothing(db: TestDb) {
    let store = db.migrated().await;
    store.close().await;
    use byocd::store::Backend;
    let sqlite = db.url.starts_with("sqlite");
    let statements = byocd::store::retention_purge_sql(if sqlite {
        Backend::Sqlite
    } else {
        Backend::Postgres
    });
    for (n, sql) in statements.into_iter().enumerate() {
        let plan: Vec<String> = if sqlite {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                sql.replace('$', "?")
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            rows.into_iter().map(|r| r.3).collect()
        } else {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("SET plan_cache_mode = force_generic_plan")
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PREPARE purge{n}(timestamptz, bigint) AS {sql}"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN EXECUTE purge{n}('2026-01-01T00:00:00Z', 5000)"
            )))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            drop(conn);
            pool.close().await;
            rows.into_iter().map(|r| r.0).collect()
        };
        let text = plan.join("\n");
        let index = [
            "quarantine_by_time",
            "inbound_dedupe_by_time",
            "sessions_ended",
            "sessions_ended",
            "hosted_files_by_expiry",
        ][n];
        assert!(
            text.contains(index),
            "statement {n} does not use {index}:\n{text}"
        );
        for table in [
            "quarantine",
            "inbound_dedupe",
            "sessions",
            "s",
            "outbox",
            "o",
        ] {
            assert!(
                !plan.iter().any(|l| l.contains(&format!("SCAN {table}"))
                    && !l.contains("USING")
                    && !l.contains("VIRTUAL TABLE")),
                "statement {n} scans {table}:\n{text}"
            );
        }
        assert!(!text.contains("Seq Scan on quarantine"), "{text}");
        assert!(!text.contains("Seq Scan on inbound_dedupe"), "{text}");
        assert!(!text.contains("Seq Scan on sessions"), "{text}");
        assert!(!text.contains("Seq Scan on outbox"), "{text}");
        assert!(!text.contains("Seq Scan on hosted_files"), "{text}");
    }
}

/// Issue 17: each class of personal data leaves after its own retention (defaults: quarantined
/// bodies 30 days, dedupe keys 30 days plus an hour of clock skew, ended sessions 90 days with
/// their routings, finished work 7 days) and nothing younger does; a session an outbox row
/// still refers to stays, open sessions stay. Each class is audited with its count only, and a
/// second run finds nothing.
async fn each_class_of_personal_data_is_purged_after_its_retention_and_nothing_younger(db: TestDb) {
    use byocd::{
        domain::privacy::Retention,
        lifecycle::purge::purge_all,
        store::{NewQuarantine, PurgeClass},
    };
    let store = db.migrated().await;
    store
        .sync_config(&[org(ORG, "o1")], &[channel("c", ORG, "addr", "h")])
        .await
        .unwrap();
    let ago = |minutes: i64| {
        (chrono::Utc::now() - chrono::Duration::minutes(minutes))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    const DAY: i64 = 24 * 60;
    let exec = |sql: String| {
        let db = &db;
        async move { raw_execute_owned(db, sql).await.unwrap() }
    };
    // Quarantined bodies: 40 days old (goes), 20 days old (stays).
    for (n, age) in [(1, 40 * DAY), (2, 20 * DAY)] {
        let id = store
            .quarantine(&NewQuarantine {
                channel: "c".into(),
                provider: "8x8".into(),
                reason: format!("unreadable {n}"),
                content_type: None,
                body: b"+447700900555 says hi".to_vec(),
            })
            .await
            .unwrap();
        exec(format!(
            "UPDATE quarantine SET received_at = '{}' WHERE id = {id}",
            ago(age)
        ))
        .await;
    }
    // Dedupe keys: 40 days, 30 days and 2 hours (past the skew allowance: go), 30 days and 20
    // minutes (within it), one day (stay).
    for (key, age) in [
        ("k40", 40 * DAY),
        ("k30h2", 30 * DAY + 120),
        ("k30m20", 30 * DAY + 20),
        ("k1", DAY),
    ] {
        exec(format!(
            "INSERT INTO inbound_dedupe (channel, event_key, received_at) VALUES ('c', '{key}', '{}')",
            ago(age)
        ))
        .await;
    }
    // One end user's sessions: ended 100 days ago with a routing (goes, with the routing);
    // ended 100 days ago but a dead-lettered outbox row refers to it (stays); ended 10 days ago
    // (stays); open since 200 days (stays).
    let user = uuid::Uuid::new_v4();
    let conversation = uuid::Uuid::new_v4();
    let old = ago(200 * DAY);
    exec(format!(
        "INSERT INTO end_users (id, channel, provider_user_key, salesforce_client_id, msisdn, \
         created_at, updated_at) VALUES ('{user}', 'c', '+447700900555', '+447700900555', \
         '+447700900555', '{old}', '{old}')"
    ))
    .await;
    exec(format!(
        "INSERT INTO conversations (id, channel, end_user_id, created_at, updated_at) \
         VALUES ('{conversation}', 'c', '{user}', '{old}', '{old}')"
    ))
    .await;
    let sessions: Vec<(uuid::Uuid, &str, Option<i64>)> = [
        ("ended", Some(100 * DAY)),
        ("ended", Some(100 * DAY)),
        ("ended", Some(10 * DAY)),
        ("active", None),
    ]
    .into_iter()
    .map(|(status, ended)| (uuid::Uuid::new_v4(), status, ended))
    .collect();
    for (id, status, ended) in &sessions {
        let ended = ended.map_or("NULL".to_owned(), |m| format!("'{}'", ago(m)));
        exec(format!(
            "INSERT INTO sessions (id, conversation_id, channel, status, opened_at, \
             last_activity_at, ended_at) VALUES ('{id}', '{conversation}', 'c', '{status}', \
             '{old}', '{old}', {ended})"
        ))
        .await;
    }
    exec(format!(
        "INSERT INTO routings (id, session_id, channel, kind, status, created_at, updated_at) \
         VALUES ('{}', '{}', 'c', 'Initial', 'Closed', '{old}', '{old}')",
        uuid::Uuid::new_v4(),
        sessions[0].0
    ))
    .await;
    exec(format!(
        "INSERT INTO outbox (kind, org_id, channel, ordering_key, conversation_id, session_id, \
         payload, status, attempts, next_attempt_at, created_at, updated_at) VALUES \
         ('isa.message', '{ORG}', 'c', 'k', '{conversation}', '{}', '{{}}', 'dead', 8, '{old}', \
         '{old}', '{old}')",
        sessions[1].0
    ))
    .await;

    // Hosted files: one expired a minute ago (goes), one expires in an hour (stays).
    for (name, expires) in [("gone.pdf", -1), ("kept.pdf", 60)] {
        store
            .host_file(
                "c",
                "application/pdf",
                name,
                b"%PDF",
                chrono::Utc::now() + chrono::Duration::minutes(expires),
            )
            .await
            .unwrap();
    }
    let clock: byocd::clock::SharedClock = std::sync::Arc::new(byocd::clock::SystemClock);
    let days = |d: u64| std::time::Duration::from_secs(d * 86_400);
    let retention = Retention {
        finished_outbox: days(7),
        quarantine: days(30),
        dedupe: days(30),
        ended_sessions: days(90),
    };
    let purged = purge_all(&store, &clock, &retention).await.unwrap();
    assert_eq!(
        purged,
        [
            (PurgeClass::FinishedOutbox, 0),
            (PurgeClass::Quarantine, 1),
            (PurgeClass::Dedupe, 2),
            (PurgeClass::EndedSessions, 1),
            (PurgeClass::HostedFiles, 1),
        ]
    );
    let reasons: Vec<String> = store
        .quarantined(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.reason)
        .collect();
    assert_eq!(reasons, ["unreadable 2"]);
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            use sqlx::Connection;
            if db.url.starts_with("sqlite") {
                let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query_as::<_, (String,)>(sql)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(t,)| t)
                    .collect::<Vec<_>>()
            } else {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query_as::<_, (String,)>(sql)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(t,)| t)
                    .collect::<Vec<_>>()
            }
        }
    };
    assert_eq!(
        count("SELECT event_key FROM inbound_dedupe ORDER BY event_key").await,
        ["k1", "k30m20"]
    );
    let mut left = count("SELECT CAST(id AS text) FROM sessions").await;
    left.sort();
    let mut expected: Vec<String> = sessions[1..].iter().map(|s| s.0.to_string()).collect();
    expected.sort();
    assert_eq!(
        left, expected,
        "only the unreferenced session ended 100 days ago went"
    );
    assert!(
        count("SELECT CAST(id AS text) FROM routings")
            .await
            .is_empty()
    );
    assert_eq!(
        count("SELECT file_name FROM hosted_files").await,
        ["kept.pdf"]
    );
    for (kind, rows) in [
        ("quarantine.purged", 1),
        ("dedupe.purged", 2),
        ("sessions.purged", 1),
        ("hosted_files.purged", 1),
    ] {
        let audit = store
            .audit(&AuditFilter {
                kind: Some(kind.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(audit.len(), 1, "{kind}");
        assert_eq!(audit[0].entry.detail["rows"], rows, "{kind}");
        assert!(
            !audit[0].entry.detail.to_string().contains("447700900555"),
            "counts, never contents: {:?}",
            audit[0].entry
        );
    }
    assert!(
        store
            .audit(&AuditFilter {
                kind: Some("outbox.purged".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty(),
        "a class with nothing to purge is not audited"
    );
    let again = purge_all(&store, &clock, &retention).await.unwrap();
    assert!(again.iter().all(|(_, n)| *n == 0), "{again:?}");
}

/// Runs one statement built at run time.
async fn raw_execute_owned(db: &TestDb, sql: String) -> Result<u64, sqlx::Error> {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql);
    if db.url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    }
}

/// Finished rows the outbox plan test stores beside the unfinished ones.
const FINISHED_ROWS: i64 = 1_000_000;

/// Issue 15: the statements the pipeline runs on unfinished outbox work (the relay's claim, the
/// intake's typing-stopped and receipt-coalescing lookups) search an index, however much finished
/// work the table holds: with a million done rows and a few pending ones, no plan scans the
/// outbox. (A scan made throughput fall with every message ever received.)
async fn outbox_statements_on_unfinished_work_scan_nothing_beside_a_million_finished_rows(
    db: TestDb,
) {
    use byocd::store::{Backend, claim_sql, purge_sql, relay, settle_sql, typing_stop_now_sql};
    let store = db.migrated().await;
    store
        .sync_config(&[org(ORG, "o1")], &[channel("c", ORG, "addr", "h")])
        .await
        .unwrap();
    store.close().await;
    let sqlite = db.url.starts_with("sqlite");
    let columns = "kind, org_id, channel, ordering_key, payload, status, attempts, \
                   next_attempt_at, created_at, updated_at, finished_at";
    // (ordering key, status) of the finished rows, then of a few unfinished ones.
    let seed = if sqlite {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {FINISHED_ROWS}) \
             INSERT INTO outbox ({columns}) SELECT 'isa.message', '{ORG}', 'c', 'conv-' || (i % 50000), \
             '{{}}', 'done', 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', \
             '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z' FROM n"
        )
    } else {
        format!(
            "INSERT INTO outbox ({columns}) SELECT 'isa.message', '{ORG}', 'c', 'conv-' || (i % 50000), \
             '{{}}', 'done', 1, now(), now(), now(), now() FROM generate_series(1, {FINISHED_ROWS}) AS i"
        )
    };
    let unfinished = if sqlite {
        format!(
            "INSERT INTO outbox ({columns}) SELECT 'isa.message', '{ORG}', 'c', 'conv-' || i, '{{}}', \
             'pending', 0, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', \
             '2026-01-01T00:00:00.000000Z', NULL FROM (SELECT 1 AS i UNION ALL SELECT 2 UNION ALL SELECT 3)"
        )
    } else {
        format!(
            "INSERT INTO outbox ({columns}) SELECT 'isa.message', '{ORG}', 'c', 'conv-' || i, '{{}}', \
             'pending', 0, now(), now(), now(), NULL FROM generate_series(1, 3) AS i"
        )
    };
    // Each statement with its PostgreSQL parameter types and sample arguments.
    let backend = if sqlite {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let [done_sql, claim_next_sql, release_sql] = settle_sql(backend);
    let statements: [(&str, &str, &str, &str); 8] = [
        (
            "mark done",
            done_sql,
            "timestamptz, int8[], text",
            "now(), ARRAY[1, 2], 'w'",
        ),
        (
            "claim the next rows of keys",
            claim_next_sql,
            "text, timestamptz, timestamptz, text[], bigint",
            "'w', now(), now(), ARRAY['conv-1', 'conv-2'], 16",
        ),
        (
            "release untried rows",
            release_sql,
            "timestamptz, int8[], text",
            "now(), ARRAY[1, 2], 'w'",
        ),
        (
            "claim",
            claim_sql(if sqlite {
                Backend::Sqlite
            } else {
                Backend::Postgres
            }),
            "text, timestamptz, timestamptz, bigint",
            "'w', now(), now(), 16",
        ),
        (
            "typing stop now",
            typing_stop_now_sql(if sqlite {
                Backend::Sqlite
            } else {
                Backend::Postgres
            }),
            "timestamptz, text[], text",
            "now(), ARRAY['conv-1'], 'isa.typing_stopped'",
        ),
        (
            "newest pending of a kind",
            relay::NEWEST_PENDING_OF_KIND_SQL,
            "text, text",
            "'conv-1', 'isa.typing_stopped'",
        ),
        (
            "newest unfinished",
            relay::NEWEST_UNFINISHED_SQL,
            "text",
            "'conv-1'",
        ),
        (
            "purge finished",
            purge_sql(if sqlite {
                Backend::Sqlite
            } else {
                Backend::Postgres
            }),
            "timestamptz, bigint",
            "now() - interval '7 days', 5000",
        ),
    ];
    let mut plans = Vec::new();
    if sqlite {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        for sql in [seed.as_str(), unfinished.as_str(), "ANALYZE"] {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
        }
        // Settling keeps work items by session id, not by walking the sessions without one.
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            byocd::store::sqlite_set_work_items_sql().replace('$', "?")
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|r| r.3).collect();
        assert!(
            plan.iter()
                .any(|l| l
                    .starts_with("SEARCH sessions USING INDEX sqlite_autoindex_sessions_1 (id=?)")),
            "work items are not kept by session id: {plan:?}"
        );
        for (name, sql, _, _) in statements {
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                sql.replace('$', "?")
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            plans.push((name, rows.into_iter().map(|r| r.3).collect::<Vec<_>>()));
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        for sql in [seed.as_str(), unfinished.as_str(), "ANALYZE outbox"] {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
        }
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .unwrap();
        for (n, (name, sql, types, args)) in statements.into_iter().enumerate() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PREPARE s{n}({types}) AS {sql}"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
            let rows: Vec<(String,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE s{n}({args})")))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
            plans.push((name, rows.into_iter().map(|r| r.0).collect()));
        }
        drop(conn);
        pool.close().await;
    }
    for (name, plan) in plans {
        let text = plan.join("\n");
        let scans: Vec<&String> = plan
            .iter()
            .filter(|l| {
                let l = l.trim_start();
                l.contains("Seq Scan")
                    || (l.starts_with("SCAN ")
                        && !l.contains(" USING ")
                        && !l.contains("VIRTUAL TABLE")
                        // A subquery's rows read back from a co-routine (`r` in the claim
                        // of next rows): no table.
                        && !l.starts_with("SCAN (subquery-")
                        && l != "SCAN r")
            })
            .collect();
        assert!(scans.is_empty(), "`{name}` scans the outbox:\n{text}");
        // A conversation's next rows are read from unfinished rows only: a walk of the primary
        // key through finished rows grows with the conversation's history, and on SQLite a scan
        // of every unfinished row with each key looked up grows with the backlog.
        if name == "claim the next rows of keys" {
            if sqlite {
                assert!(
                    text.contains("SEARCH o USING INDEX outbox_by_ordering_key (ordering_key=?"),
                    "`{name}` does not search each key's unfinished rows:\n{text}"
                );
            } else {
                assert!(
                    !text.contains("outbox_pkey on outbox o"),
                    "`{name}` walks the primary key for a conversation's rows:\n{text}"
                );
            }
        }
        assert!(
            text.contains("outbox_due")
                || text.contains("outbox_by_ordering_key")
                || text.contains("outbox_finished")
                || text.contains("INTEGER PRIMARY KEY")
                || text.contains("outbox_pkey"),
            "`{name}` uses none of the outbox's partial indexes nor its key:\n{text}"
        );
    }
}

/// Issue 15: one conversation's backlog, part of it delivered, with statistics taken while the
/// table held only that conversation (the bench's one-conversation run): the claim of its next
/// rows reads them from the index of unfinished rows — it walked the primary key through every
/// finished row before, at each claim — and returns a run: the first rows in order, up to the
/// first that may not go yet.
async fn the_next_run_of_a_conversation_skips_its_finished_rows_and_stops_at_the_first_not_due(
    db: TestDb,
) {
    use byocd::store::{Backend, settle_sql};
    let store = db.migrated().await;
    store
        .sync_config(&[org(ORG, "o1")], &[channel("c", ORG, "addr", "h")])
        .await
        .unwrap();
    store.close().await;
    let sqlite = db.url.starts_with("sqlite");
    let (backend, t0, later) = if sqlite {
        (
            Backend::Sqlite,
            "'2026-01-01T00:00:00.000000Z'",
            "'2026-01-02T00:00:00.000000Z'",
        )
    } else {
        (Backend::Postgres, "now()", "now() + interval '1 day'")
    };
    let [_, claim_next_sql, _] = settle_sql(backend);
    let series = if sqlite {
        "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i FROM n)"
    } else {
        "(SELECT i FROM generate_series(1, 1000) AS i)"
    };
    let setup = [
        format!(
            "INSERT INTO outbox (kind, org_id, channel, ordering_key, payload, status, attempts, \
             next_attempt_at, created_at, updated_at) SELECT 'isa.message', '{ORG}', 'c', 'one', \
             '{{}}', 'pending', 0, {t0}, {t0}, {t0} FROM {series} AS s"
        ),
        if sqlite {
            "ANALYZE".into()
        } else {
            "ANALYZE outbox".into()
        },
        format!("UPDATE outbox SET status = 'done', finished_at = {t0} WHERE id <= 600"),
        // Row 610 waits for its time (a typing stop, say): the run stops before it.
        format!("UPDATE outbox SET next_attempt_at = {later} WHERE id = 610"),
    ];
    let (explain, claimed): (Vec<String>, Vec<i64>) = if sqlite {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        for sql in &setup {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&pool)
                .await
                .unwrap();
        }
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            claim_next_sql.replace('$', "?")
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        let rows: Vec<sqlx::sqlite::SqliteRow> = sqlx::query(claim_next_sql)
            .bind("w")
            .bind("2026-01-01T00:01:30.000000Z")
            .bind("2026-01-01T00:00:00.000000Z")
            .bind(r#"["one"]"#)
            .bind(16_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        use sqlx::Row;
        let ids: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>("id")).collect();
        pool.close().await;
        (plan.into_iter().map(|r| r.3).collect(), ids)
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        for sql in &setup {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&pool)
                .await
                .unwrap();
        }
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PREPARE next_run(text, timestamptz, timestamptz, text[], bigint) AS {claim_next_sql}"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        let plan: Vec<(String,)> = sqlx::query_as(
            "EXPLAIN EXECUTE next_run('w', now() + interval '90 seconds', now(), ARRAY['one'], 16)",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let rows: Vec<sqlx::postgres::PgRow> = sqlx::query(
            "EXECUTE next_run('w', now() + interval '90 seconds', now(), ARRAY['one'], 16)",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        use sqlx::Row;
        let ids = rows.iter().map(|r| r.get::<i64, _>("id")).collect();
        drop(conn);
        pool.close().await;
        (plan.into_iter().map(|r| r.0).collect(), ids)
    };
    let text = explain.join("\n");
    if sqlite {
        assert!(
            text.contains("SEARCH o USING INDEX outbox_by_ordering_key (ordering_key=?"),
            "{text}"
        );
    } else {
        assert!(
            text.contains("outbox_by_ordering_key") && !text.contains("outbox_pkey on outbox o"),
            "{text}"
        );
    }
    let mut claimed = claimed;
    claimed.sort_unstable();
    assert_eq!(
        claimed,
        (601..610).collect::<Vec<i64>>(),
        "the first unfinished rows, up to the one not yet due"
    );
}

on_both_backends!(
    the_retention_purges_search_indexes_and_scan_nothing,
    the_next_run_of_a_conversation_skips_its_finished_rows_and_stops_at_the_first_not_due,
    each_class_of_personal_data_is_purged_after_its_retention_and_nothing_younger,
    finished_work_is_purged_after_its_retention_and_nothing_else,
    outbox_statements_on_unfinished_work_scan_nothing_beside_a_million_finished_rows,
    the_end_user_lookup_searches_indexes_and_scans_nothing,
    the_audit_guide_queries_run_unchanged,
    migrating_twice_applies_once,
    migration_7_keeps_recorded_choices_and_admits_carousels,
    sync_adds_changes_and_retires_with_audit,
    a_retired_address_can_be_taken_by_a_renamed_channel_and_restored,
    two_active_channels_cannot_share_an_address,
    orgs_retire_when_removed,
    tokens_are_stored_sealed_and_replaced,
    audit_rows_filter_by_subject_kind_and_time,
    the_database_refuses_to_change_the_audit_log,
    a_failure_to_lift_recorded_pauses_on_reload_is_audited_as_an_alert,
);

#[tokio::test]
async fn both_backends_have_the_same_tables_views_and_columns() {
    let sqlite = TestDb::sqlite().await;
    let postgres = TestDb::postgres().await;
    sqlite.migrated().await;
    postgres.migrated().await;
    assert_eq!(columns(&sqlite).await, columns(&postgres).await);
}

#[tokio::test]
async fn a_second_daemon_on_the_same_sqlite_file_is_refused() {
    let db = TestDb::sqlite().await;
    let first = db.migrated().await;
    let err = AnyStore::open(&db.url, StoreOptions::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }), "{message}");
    assert!(
        message.contains("another byocd is already using"),
        "{message}"
    );
    // Once the first lets go, the file can be opened again.
    first.close().await;
    drop(first);
    let again = db.open().await;
    again.ping().await.unwrap();
}
