//! SQLite backend: the embedded default.
//!
//! - WAL journal, set explicitly (SQLite does not default to it), with `synchronous = FULL` so a
//!   commit that was acknowledged to a provider survives a power cut, not only a crash.
//! - One writer connection; every write transaction starts with `BEGIN IMMEDIATE`, so it takes
//!   the write lock up front instead of failing half-way with `SQLITE_BUSY`.
//! - A separate read-only pool, so reads (the API, auditors' commands) never queue behind writes.
//! - A lock file beside the database (`<file>.lock`, held with an OS file lock for the life of
//!   the store): a second daemon on the same file refuses to start with a clear message. Readers
//!   such as the `sqlite3` shell are not affected.

use std::{
    fs::File,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{
    Pool, Sqlite, Transaction,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use uuid::Uuid;

use super::relay::{
    Completed, Completion, ConversationContext, Cursor, Delivered, NewRouting, OutboxFilter,
    OutboxItem, RoutingRecord,
};
use super::{
    AppliedMigration, AuditEntry, AuditFilter, AuditRow, ChannelRecord, ExclusiveGuard,
    NewQuarantine, OrgRecord, QuarantinedWebhook, RecordedPause, Result, SchemaStatus, SealedToken,
    Severity, StoreError, StoreGauges, StoreOptions, StoredChannel, StoredOrg, StoredToken,
    SyncReport,
    shared::{impl_store, impl_tx},
};
use crate::clock::SharedClock;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Claims due outbox rows inside a `BEGIN IMMEDIATE` transaction (one writer, so no row locks are
/// needed); a row never overtakes an unfinished earlier row of its ordering key.
pub(crate) const CLAIM_SQL: &str = "UPDATE outbox SET status = 'leased', lease_owner = $1, lease_until = $2, \
     attempts = attempts + 1, updated_at = $3 \
     WHERE id IN (SELECT o.id FROM outbox o \
       WHERE o.status IN ('pending', 'leased') \
         AND ((o.status = 'pending' AND o.next_attempt_at <= $3) \
              OR (o.status = 'leased' AND o.lease_until < $3)) \
         AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key \
                         AND e.id < o.id AND e.status IN ('pending', 'leased')) \
       ORDER BY o.priority DESC, o.next_attempt_at, o.id LIMIT $4) \
     RETURNING id, kind, org_id, channel, ordering_key, conversation_id, session_id, payload, \
     attempts, status, next_attempt_at, last_error, last_code, created_at, finished_at";

/// Deletes up to `$2` rows that finished (delivered or discarded) before `$1`, oldest first,
/// found through the partial index `outbox_finished`. Dead rows stay until an admin sends them
/// again or discards them; the audit trail and `message_map` are not touched.
pub(crate) const PURGE_SQL: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
     WHERE status IN ('done', 'discarded') AND finished_at < $1 ORDER BY finished_at LIMIT $2)";

/// Deletes up to `$2` quarantined bodies that arrived before `$1`, oldest first, through
/// `quarantine_by_time`.
pub(crate) const PURGE_QUARANTINE_SQL: &str = "DELETE FROM quarantine WHERE id IN (SELECT id \
     FROM quarantine WHERE received_at < $1 ORDER BY received_at LIMIT $2)";

/// Deletes up to `$2` dedupe keys received before `$1`, oldest first, through
/// `inbound_dedupe_by_time`.
pub(crate) const PURGE_DEDUPE_SQL: &str = "DELETE FROM inbound_dedupe WHERE rowid IN (SELECT \
     rowid FROM inbound_dedupe WHERE received_at < $1 ORDER BY received_at LIMIT $2)";

/// Deletes the routings of the ended sessions [`PURGE_ENDED_SESSIONS_SQL`] takes, first (they
/// refer to them).
pub(crate) const PURGE_ENDED_ROUTINGS_SQL: &str = "DELETE FROM routings WHERE session_id IN \
     (SELECT s.id FROM sessions s WHERE s.status = 'ended' AND s.ended_at < $1 AND NOT EXISTS \
     (SELECT 1 FROM outbox o WHERE o.session_id = s.id) ORDER BY s.ended_at LIMIT $2)";

/// Deletes up to `$2` sessions that ended before `$1`, oldest first, through `sessions_ended`;
/// a session some outbox row still refers to stays (`outbox_by_session`).
pub(crate) const PURGE_ENDED_SESSIONS_SQL: &str = "DELETE FROM sessions WHERE id IN \
     (SELECT s.id FROM sessions s WHERE s.status = 'ended' AND s.ended_at < $1 AND NOT EXISTS \
     (SELECT 1 FROM outbox o WHERE o.session_id = s.id) ORDER BY s.ended_at LIMIT $2)";

/// Deletes up to `$2` hosted files that expired before `$1`, through `hosted_files_by_expiry`.
pub(crate) const PURGE_HOSTED_FILES_SQL: &str = "DELETE FROM hosted_files WHERE id IN (SELECT \
     id FROM hosted_files WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";

/// Erasure: deletes the outbox rows (of channel `$2`, or all with `NULL`) whose payload or
/// ordering key contains `$1`, byte for byte (no `LIKE` wildcards).
pub(crate) const ERASE_OUTBOX_TEXT_SQL: &str = "DELETE FROM outbox WHERE ($2 IS NULL OR \
     channel = $2) AND (instr(payload, $1) > 0 OR instr(ordering_key, $1) > 0)";

/// Erasure: deletes the quarantined bodies (of channel `$2`, or all) that contain the bytes `$1`.
pub(crate) const ERASE_QUARANTINE_SQL: &str = "DELETE FROM quarantine WHERE ($2 IS NULL OR \
     channel = $2) AND instr(body, $1) > 0";

/// Erasure: the audit rows whose message or detail contains `$1` (rows written before
/// audit rows stopped naming end users; append-only, so they are counted, not changed).
pub(crate) const AUDIT_MENTIONS_SQL: &str = "SELECT id FROM audit_log WHERE \
     instr(detail, $1) > 0 OR instr(message, $1) > 0";

/// The end users a group's events name (`$1`: a JSON array of `[channel, key, number, user id]`),
/// each found by any identifier through its own index (the key; the number; the user id), with
/// their conversation and its newest session that has not ended. Three lookups joined by
/// `UNION` rather than one `OR` across the three columns: with `OR` both databases used only
/// the `channel` part of an index and read every end user of the channel (175 ms per webhook
/// with a million). A `NULL` identifier matches nothing (`x = NULL` is never true).
pub(crate) const KNOWN_END_USERS_SQL: &str = "WITH q AS (SELECT j.value ->> 0 AS channel, \
     j.value ->> 1 AS k, j.value ->> 2 AS m, j.value ->> 3 AS u FROM json_each($1) AS j), \
     found AS (\
       SELECT e.id FROM q JOIN end_users e ON e.channel = q.channel AND e.provider_user_key = q.k \
       UNION SELECT e.id FROM q JOIN end_users e ON e.channel = q.channel AND e.msisdn = q.m \
       UNION SELECT e.id FROM q JOIN end_users e ON e.channel = q.channel \
         AND e.channel_user_id = q.u) \
     SELECT e.id, e.channel, e.provider_user_key, e.salesforce_client_id, e.msisdn, \
     e.channel_user_id, e.display_name, e.created_at, c.id, c.conversation_identifier, \
     (SELECT s.id FROM sessions s WHERE s.conversation_id = c.id AND s.status <> 'ended' \
      ORDER BY s.opened_at DESC LIMIT 1) \
     FROM found f JOIN end_users e ON e.id = f.id \
     LEFT JOIN conversations c ON c.channel = e.channel AND c.end_user_id = e.id";

/// Brings the waiting typing-stopped rows of ordering keys (`$2`, a JSON array) forward to now
/// (`$1`; `$3` the kind): they go out before the messages being accepted.
pub(crate) const TYPING_STOP_NOW_SQL: &str = "UPDATE outbox SET next_attempt_at = $1, updated_at = $1 \
     WHERE ordering_key IN (SELECT value FROM json_each($2)) AND status IN ('pending', 'leased') \
     AND kind = $3 AND status = 'pending' AND next_attempt_at > $1";

/// Marks delivered rows done (`$1` now, `$2` their ids as a JSON array, `$3` the owner): only
/// those still leased to this owner; their ids.
pub(crate) const DONE_SQL: &str = "UPDATE outbox SET status = 'done', finished_at = $1, \
     updated_at = $1, lease_owner = NULL, lease_until = NULL, last_error = NULL, last_code = NULL \
     WHERE id IN (SELECT value FROM json_each($2)) AND status = 'leased' AND lease_owner = $3 \
     RETURNING id";

/// Keeps sessions' work items (`$1`: a JSON array of [session id, work item]). The `+` keeps
/// `work_item_id IS NULL` from being an index condition: as one, SQLite walked every session
/// without a work item through the work item index and joined the array to each, at every
/// settled group — SQLite's webhook accept fell from 2,250 to 1,020 per second.
pub(crate) const SET_WORK_ITEMS_SQL: &str = "UPDATE sessions SET work_item_id = j.value ->> 1 \
     FROM json_each($1) AS j WHERE sessions.id = j.value ->> 0 \
     AND +sessions.work_item_id IS NULL \
     AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.work_item_id = j.value ->> 1)";

/// Puts rows claimed but not tried back (`$1` now, `$2` their ids, `$3` the owner): pending
/// again, as due as they were, their claim's attempt given back; only those still leased to this
/// owner. Their ids.
pub(crate) const RELEASE_SQL: &str = "UPDATE outbox SET status = 'pending', updated_at = $1, \
     lease_owner = NULL, lease_until = NULL, \
     attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
     WHERE id IN (SELECT value FROM json_each($2)) AND status = 'leased' AND lease_owner = $3 \
     RETURNING id";

/// Claims the next rows of ordering keys right after their previous rows were marked done (`$1`
/// owner, `$2` lease until, `$3` now, `$4` the keys as a JSON array, `$5` the most rows per
/// key): each key's first `$5` unfinished rows, in id order, up to the first that is not
/// pending and due (leased elsewhere, or waiting for its time). A conversation's rows thus follow
/// each other without waiting for the next claim (which scans for every conversation's first
/// row), and a run of them can be delivered one after another while the previous ones settle.
/// The key's `$5`-th unfinished row bounds the index range read, so a long backlog costs no
/// more than a short one; the running minimum over the key's rows stops the run at its first
/// row that may not go yet. `CROSS JOIN` makes the keys the outer loop (SQLite keeps that
/// order): a plain join let the planner scan every unfinished row and look each one's key up.
/// `INDEXED BY` keeps the planner off the rowid: with statistics of a table holding one
/// conversation it walked the rowids from the first, through every finished row of the
/// conversation, at each claim. SQLite allows no outer column in `LIMIT`, hence the bound
/// instead of a limit per key.
pub(crate) const CLAIM_NEXT_OF_KEYS_SQL: &str = "UPDATE outbox SET status = 'leased', \
     lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
     WHERE id IN (SELECT r.id FROM (SELECT o.id, min(CASE WHEN o.status = 'pending' \
                    AND o.next_attempt_at <= $3 THEN 1 ELSE 0 END) \
                    OVER (PARTITION BY o.ordering_key ORDER BY o.id) AS runs \
                  FROM json_each($4) AS k CROSS JOIN outbox o INDEXED BY outbox_by_ordering_key \
                   ON o.ordering_key = k.value \
                   AND o.status IN ('pending', 'leased') \
                   AND o.id <= COALESCE((SELECT x.id FROM outbox x INDEXED BY outbox_by_ordering_key \
                     WHERE x.ordering_key = k.value AND x.status IN ('pending', 'leased') \
                     ORDER BY x.id LIMIT 1 OFFSET $5 - 1), 9223372036854775807)) AS r \
                  WHERE r.runs = 1) \
       AND status = 'pending' AND next_attempt_at <= $3 \
     RETURNING id, kind, org_id, channel, ordering_key, conversation_id, session_id, payload, \
     attempts, status, next_attempt_at, last_error, last_code, created_at, finished_at";

/// A list of row ids as one parameter: a JSON array.
fn enc_ids(ids: &[i64]) -> String {
    Value::from(ids.to_vec()).to_string()
}

/// A list of texts as one parameter: a JSON array.
fn enc_texts(texts: &[String]) -> String {
    Value::from(texts.to_vec()).to_string()
}

type Db = Sqlite;
type Ts = String;
type Id = String;
type Js = String;

/// The fixed-width UTC format of every timestamp column: sorts and compares as text.
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

fn enc_ts(t: DateTime<Utc>) -> Ts {
    t.format(TS_FORMAT).to_string()
}

fn dec_ts(text: Ts) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp `{text}`: {e}")))
}

fn enc_uuid(id: Uuid) -> Id {
    id.to_string()
}

fn dec_uuid(text: Id) -> Result<Uuid> {
    Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("uuid `{text}`: {e}")))
}

fn enc_json(value: &Value) -> Js {
    value.to_string()
}

fn dec_json(text: Js) -> Result<Value> {
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("json: {e}")))
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Pool<Sqlite>,
    readers: Pool<Sqlite>,
    clock: SharedClock,
    /// The lock file, held until [`Store::close`](super::Store::close) or until the last clone
    /// is dropped; either releases the OS lock.
    lock: Arc<Mutex<Option<File>>>,
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://path`, `sqlite:path` or `sqlite::memory:`). An
    /// exclusive (the default) writable store creates the file and its missing parent
    /// directories and takes its lock file; a read-only or non-exclusive one (admin commands)
    /// requires the file to exist.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout);
        let path = base.get_filename().to_path_buf();
        let in_memory = path.as_os_str().is_empty() || path == Path::new(":memory:");
        // Only the daemon and `migrate` (exclusive) create the file and its directories; an
        // admin command beside them must not leave an empty database behind a typo.
        if (options.read_only || !options.exclusive) && !in_memory && !path.exists() {
            return Err(StoreError::Io(format!(
                "no SQLite database at {}: `byocd migrate` or starting the daemon creates it",
                path.display()
            )));
        }
        if options.read_only {
            // Beside a running daemon: no lock, no writer; every pool connection is read-only.
            let readers = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true).create_if_missing(false))
                .await?;
            return Ok(Self {
                writer: readers.clone(),
                readers,
                clock: options.clock,
                lock: Arc::new(Mutex::new(None)),
            });
        }
        let lock = if in_memory || !options.exclusive {
            None
        } else {
            Some(take_lock(&path)?)
        };
        let write_options = base
            .clone()
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            // A write transaction whose COMMIT failed for a full disk is rolled back by SQLite
            // itself, so the ROLLBACK sqlx sends when it is dropped fails too, and sqlx goes on
            // believing the connection is inside a transaction: every later BEGIN on it failed
            // ("non-zero transaction depth") until the daemon restarted, long after space had
            // returned (issue 20). Such a connection is closed, and a fresh one opened.
            .before_acquire(|conn, _| {
                let usable = !sqlx::Connection::is_in_transaction(conn);
                if !usable {
                    tracing::warn!("the SQLite writer connection was left inside a failed transaction; opening a fresh one");
                }
                Box::pin(async move { Ok(usable) })
            })
            .connect_with(write_options)
            .await?;
        let readers = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true))
                .await?
        };
        Ok(Self {
            writer,
            readers,
            clock: options.clock,
            lock: Arc::new(Mutex::new(lock)),
        })
    }

    fn reader(&self) -> &Pool<Sqlite> {
        &self.readers
    }

    fn writer(&self) -> &Pool<Sqlite> {
        &self.writer
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The claim's transaction: a write transaction (SQLite's planner walks `outbox_due` in
    /// order by itself).
    async fn begin_claim(&self) -> Result<Transaction<'static, Sqlite>> {
        self.begin_write().await
    }

    async fn backend_migrate(&self) -> Result<Vec<AppliedMigration>> {
        let before = self.backend_schema_status().await?.applied;
        MIGRATOR.run(&self.writer).await?;
        Ok(newly_applied(&MIGRATOR, before))
    }

    async fn backend_schema_status(&self) -> Result<SchemaStatus> {
        let exists: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.writer)
        .await?;
        let applied = match exists {
            None => None,
            Some(_) => {
                sqlx::query_as::<_, (Option<i64>,)>(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                )
                .fetch_one(&self.writer)
                .await?
                .0
            }
        };
        Ok(SchemaStatus {
            applied,
            expected: expected_version(&MIGRATOR),
        })
    }

    async fn backend_try_exclusive(&self, _key: &str) -> Result<Option<super::ExclusiveGuard>> {
        // One daemon per SQLite file (the lock file): it is always the only one.
        Ok(Some(super::ExclusiveGuard::new(None)))
    }

    /// One writer at a time, and ids above every id ever used (`AUTOINCREMENT`): a row that
    /// commits later always has a larger id than every committed one, so the sealer may seal
    /// all it sees, inside its own write transaction.
    async fn backend_seal_horizon(&self) -> Result<super::SealHorizon> {
        Ok(super::SealHorizon {
            up_to: i64::MAX,
            in_flight: Vec::new(),
        })
    }

    async fn backend_horizon_reached(&self, horizon: &super::SealHorizon) -> Result<bool> {
        Ok(horizon.in_flight.is_empty())
    }

    async fn backend_release_earlier_leases(&self) -> Result<u64> {
        // Only with the lock file held: then no other process can hold a live lease here.
        if self.lock.lock().expect("lock mutex poisoned").is_none() {
            return Ok(0);
        }
        let now = enc_ts(self.clock.now());
        let released = sqlx::query(
            "UPDATE outbox SET status = 'pending', lease_owner = NULL, lease_until = NULL, \
             updated_at = $1 WHERE status = 'leased'",
        )
        .bind(now)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(released)
    }

    async fn backend_close(&self) {
        self.readers.close().await;
        self.writer.close().await;
        self.lock.lock().expect("lock mutex poisoned").take();
    }
}

/// Takes the exclusive lock file beside the database, or says who holds it.
fn take_lock(db: &Path) -> Result<File> {
    let mut lock_path = PathBuf::from(db);
    lock_path.as_mut_os_string().push(".lock");
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            db: db.display().to_string(),
            lock: lock_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// The newest version a migrator carries.
pub(super) fn expected_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The migrations above `before`, i.e. those the last run applied.
pub(super) fn newly_applied(migrator: &Migrator, before: Option<i64>) -> Vec<AppliedMigration> {
    migrator
        .iter()
        .filter(|m| before.is_none_or(|b| m.version > b))
        .map(|m| AppliedMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect()
}

impl_store!(SqliteStore, SqliteTx);
impl_tx!(SqliteTx);

// The multi-row inserts: the rows go in as one JSON array parameter (an array of arrays of text,
// numbers and nulls) read back with `json_each`, in array order.
impl SqliteTx {
    pub(crate) async fn first_sights(&mut self, keys: &[(String, String)]) -> Result<Vec<bool>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = Value::from(
            keys.iter()
                .map(|(c, k)| Value::from(vec![c.as_str(), k.as_str()]))
                .collect::<Vec<_>>(),
        );
        let fresh: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO inbound_dedupe (channel, event_key, received_at) \
             SELECT j.value ->> 0, j.value ->> 1, $2 FROM json_each($1) AS j WHERE true \
             ORDER BY j.key ON CONFLICT DO NOTHING RETURNING channel, event_key",
        )
        .bind(rows.to_string())
        .bind(enc_ts(self.now))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(super::tx::first_sightings(keys, fresh))
    }

    pub(crate) async fn known_end_users(
        &mut self,
        probes: &[super::tx::UserProbe],
    ) -> Result<Vec<super::tx::KnownEndUser>> {
        if probes.is_empty() {
            return Ok(Vec::new());
        }
        let json = Value::from(
            probes
                .iter()
                .map(|p| serde_json::json!([p.channel, p.key, p.msisdn, p.channel_user_id]))
                .collect::<Vec<_>>(),
        );
        type Row = (
            Id,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Ts,
            Option<Id>,
            Option<String>,
            Option<Id>,
        );
        let rows: Vec<Row> = sqlx::query_as(KNOWN_END_USERS_SQL)
            .bind(json.to_string())
            .fetch_all(&mut *self.tx)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(super::tx::KnownEndUser {
                    user: super::tx::EndUserRow {
                        id: dec_uuid(r.0)?,
                        channel: r.1,
                        provider_user_key: r.2,
                        msisdn: r.4,
                        channel_user_id: r.5,
                        display_name: r.6,
                    },
                    salesforce_client_id: r.3,
                    created_at: dec_ts(r.7)?,
                    conversation: match r.8 {
                        Some(id) => Some((dec_uuid(id)?, r.9)),
                        None => None,
                    },
                    open_session: r.10.map(dec_uuid).transpose()?,
                })
            })
            .collect()
    }

    pub(crate) async fn insert_end_users(&mut self, rows: &[super::tx::EndUserRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = Value::from(
            rows.iter()
                .map(|r| {
                    serde_json::json!([
                        enc_uuid(r.id),
                        r.channel,
                        r.provider_user_key,
                        r.msisdn,
                        r.channel_user_id,
                        r.display_name,
                    ])
                })
                .collect::<Vec<_>>(),
        );
        let inserted = sqlx::query(
            "INSERT INTO end_users (id, channel, provider_user_key, salesforce_client_id, \
             msisdn, channel_user_id, display_name, created_at, updated_at) \
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 2, j.value ->> 3, \
             j.value ->> 4, j.value ->> 5, $2, $2 FROM json_each($1) AS j WHERE true \
             ORDER BY j.key ON CONFLICT DO NOTHING",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if inserted < rows.len() as u64 {
            return Err(StoreError::Raced("end user"));
        }
        Ok(())
    }

    pub(crate) async fn update_end_users(&mut self, rows: &[super::tx::EndUserRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = Value::from(
            rows.iter()
                .map(|r| {
                    serde_json::json!([enc_uuid(r.id), r.msisdn, r.channel_user_id, r.display_name])
                })
                .collect::<Vec<_>>(),
        );
        sqlx::query(
            "UPDATE end_users SET msisdn = COALESCE(j.value ->> 1, msisdn), \
             channel_user_id = COALESCE(j.value ->> 2, channel_user_id), \
             display_name = COALESCE(j.value ->> 3, display_name), updated_at = $2 \
             FROM json_each($1) AS j WHERE end_users.id = j.value ->> 0",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(crate) async fn insert_conversations(
        &mut self,
        rows: &[super::tx::ConversationRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = Value::from(
            rows.iter()
                .map(|r| serde_json::json!([enc_uuid(r.id), r.channel, enc_uuid(r.end_user_id)]))
                .collect::<Vec<_>>(),
        );
        let inserted = sqlx::query(
            "INSERT INTO conversations (id, channel, end_user_id, created_at, updated_at) \
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, $2, $2 FROM json_each($1) AS j \
             WHERE true ORDER BY j.key ON CONFLICT DO NOTHING",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if inserted < rows.len() as u64 {
            return Err(StoreError::Raced("conversation"));
        }
        Ok(())
    }

    pub(crate) async fn set_conversation_identifiers(
        &mut self,
        rows: &[(Uuid, String)],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = Value::from(
            rows.iter()
                .map(|(id, identifier)| serde_json::json!([enc_uuid(*id), identifier]))
                .collect::<Vec<_>>(),
        );
        sqlx::query(
            "UPDATE conversations SET conversation_identifier = j.value ->> 1, updated_at = $2 \
             FROM json_each($1) AS j WHERE conversations.id = j.value ->> 0 \
             AND conversations.conversation_identifier IS NOT j.value ->> 1",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Keeps each session's Salesforce work item (MessagingSession id), learned on delivery:
    /// only where the session has none yet and no other session holds it (Salesforce continued
    /// that session: the first mapping stays). Give each session and each work item once.
    pub(crate) async fn set_work_items(&mut self, rows: &[(Uuid, String)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = Value::from(
            rows.iter()
                .map(|(id, work_item)| serde_json::json!([enc_uuid(*id), work_item]))
                .collect::<Vec<_>>(),
        );
        sqlx::query(SET_WORK_ITEMS_SQL)
            .bind(json.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    fn session_json(rows: &[super::tx::SessionActivity]) -> String {
        Value::from(
            rows.iter()
                .map(|r| {
                    serde_json::json!([
                        enc_uuid(r.id),
                        enc_uuid(r.conversation_id),
                        r.channel,
                        enc_ts(r.last_activity_at),
                        r.last_inbound.as_ref().map(|(at, _)| enc_ts(*at)),
                        r.last_inbound.as_ref().map(|(_, id)| id),
                    ])
                })
                .collect::<Vec<_>>(),
        )
        .to_string()
    }

    pub(crate) async fn insert_sessions(
        &mut self,
        rows: &[super::tx::SessionActivity],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO sessions (id, conversation_id, channel, status, opened_at, \
             last_activity_at, last_inbound_at, last_inbound_provider_message_id) \
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, 'active', $2, j.value ->> 3, \
             j.value ->> 4, j.value ->> 5 FROM json_each($1) AS j ORDER BY j.key",
        )
        .bind(Self::session_json(rows))
        .bind(enc_ts(self.now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(crate) async fn touch_sessions(
        &mut self,
        rows: &[super::tx::SessionActivity],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE sessions SET last_activity_at = j.value ->> 3, status = 'active', \
             inactivated_at = NULL, \
             last_inbound_at = COALESCE(j.value ->> 4, last_inbound_at), \
             last_inbound_provider_message_id = CASE WHEN j.value ->> 4 IS NULL \
               THEN last_inbound_provider_message_id ELSE j.value ->> 5 END \
             FROM json_each($1) AS j WHERE sessions.id = j.value ->> 0",
        )
        .bind(Self::session_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(crate) async fn make_due_now(
        &mut self,
        ordering_keys: &[String],
        kind: &str,
    ) -> Result<u64> {
        if ordering_keys.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(TYPING_STOP_NOW_SQL)
            .bind(enc_ts(self.now))
            .bind(Value::from(ordering_keys.to_vec()).to_string())
            .bind(kind)
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }

    pub(crate) async fn insert_outbox(
        &mut self,
        rows: &[super::tx::NewOutboxRow],
    ) -> Result<Vec<i64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let json = Value::from(
            rows.iter()
                .map(|r| {
                    serde_json::json!([
                        r.kind,
                        r.org_id,
                        r.channel,
                        r.ordering_key,
                        r.conversation_id.map(enc_uuid),
                        r.session_id.map(enc_uuid),
                        enc_json(&r.payload),
                        r.priority,
                        enc_ts(r.due),
                    ])
                })
                .collect::<Vec<_>>(),
        );
        let ids: Vec<(i64,)> = sqlx::query_as(
            "INSERT INTO outbox (kind, org_id, channel, ordering_key, conversation_id, \
             session_id, payload, priority, status, attempts, next_attempt_at, created_at, \
             updated_at) \
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
             j.value ->> 5, j.value ->> 6, j.value ->> 7, 'pending', 0, j.value ->> 8, $2, $2 \
             FROM json_each($1) AS j ORDER BY j.key RETURNING id",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(super::tx::in_insert_order(
            ids.into_iter().map(|(id,)| id).collect(),
        ))
    }

    pub(crate) async fn insert_message_map(
        &mut self,
        rows: &[super::tx::MessageMapRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = Value::from(
            rows.iter()
                .map(|r| {
                    serde_json::json!([
                        r.channel,
                        r.provider_message_id,
                        r.salesforce_entry_id,
                        enc_uuid(r.conversation_id),
                        r.direction,
                    ])
                })
                .collect::<Vec<_>>(),
        );
        sqlx::query(
            "INSERT INTO message_map (channel, provider_message_id, salesforce_entry_id, \
             conversation_id, direction, created_at) \
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, $2 \
             FROM json_each($1) AS j WHERE true ORDER BY j.key ON CONFLICT DO NOTHING",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(crate) async fn insert_audit(&mut self, entries: &[AuditEntry]) -> Result<Vec<i64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let json = Value::from(
            entries
                .iter()
                .map(|e| {
                    serde_json::json!([
                        e.kind,
                        e.severity.as_str(),
                        e.actor,
                        e.org_id,
                        e.channel,
                        e.conversation_id.map(enc_uuid),
                        e.session_id.map(enc_uuid),
                        e.message,
                        enc_json(&e.detail),
                    ])
                })
                .collect::<Vec<_>>(),
        );
        let ids: Vec<(i64,)> = sqlx::query_as(
            "INSERT INTO audit_log (at, kind, severity, actor, org_id, channel, \
             conversation_id, session_id, message, detail) \
             SELECT $2, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, \
             j.value ->> 4, j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8 \
             FROM json_each($1) AS j ORDER BY j.key RETURNING id",
        )
        .bind(json.to_string())
        .bind(enc_ts(self.now))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(super::tx::in_insert_order(
            ids.into_iter().map(|(id,)| id).collect(),
        ))
    }
}
