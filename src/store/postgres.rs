//! PostgreSQL backend: several daemon replicas on one database.
//!
//! Migrations run under the migrator's advisory lock, so replicas may start at the same time.
//! Claims of shared work use `FOR UPDATE SKIP LOCKED`; singletons (the sweeper) take an advisory
//! lock per run. The audit log is protected by triggers that refuse UPDATE, DELETE and TRUNCATE.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::{
    Pool, Postgres, Transaction,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    types::Json,
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
    sqlite::{expected_version, newly_applied},
};
use crate::clock::SharedClock;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Claims due outbox rows; rows locked by another replica's claim are skipped, and a row never
/// overtakes an unfinished earlier row of its ordering key.
pub(crate) const CLAIM_SQL: &str = "UPDATE outbox SET status = 'leased', lease_owner = $1, lease_until = $2, \
     attempts = attempts + 1, updated_at = $3 \
     WHERE id IN (SELECT o.id FROM outbox o \
       WHERE o.status IN ('pending', 'leased') \
         AND ((o.status = 'pending' AND o.next_attempt_at <= $3) \
              OR (o.status = 'leased' AND o.lease_until < $3)) \
         AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key \
                         AND e.id < o.id AND e.status IN ('pending', 'leased')) \
       ORDER BY o.priority DESC, o.next_attempt_at, o.id LIMIT $4 \
       FOR UPDATE SKIP LOCKED) \
     RETURNING id, kind, org_id, channel, ordering_key, conversation_id, session_id, payload, \
     attempts, status, next_attempt_at, last_error, last_code, created_at, finished_at";

/// As SQLite's, with the ids gathered into an array first: `id IN (subquery)` let PostgreSQL's
/// generic plan hash-join the subquery against a scan of the whole outbox.
pub(crate) const PURGE_SQL: &str = "DELETE FROM outbox WHERE id = ANY(ARRAY(SELECT id FROM outbox \
     WHERE status IN ('done', 'discarded') AND finished_at < $1 ORDER BY finished_at LIMIT $2))";

/// As SQLite's, with the ids gathered into an array first.
pub(crate) const PURGE_QUARANTINE_SQL: &str = "DELETE FROM quarantine WHERE id = ANY(ARRAY(\
     SELECT id FROM quarantine WHERE received_at < $1 ORDER BY received_at LIMIT $2))";

/// The oldest `$2` keys received before `$1`, and any received at the same instant as the
/// newest of them (keys of one group commit share it), all through `inbound_dedupe_by_time`: the
/// table's key has two columns, and deleting by row address (`ctid`) scanned the table.
pub(crate) const PURGE_DEDUPE_SQL: &str = "DELETE FROM inbound_dedupe WHERE received_at <= \
     (SELECT max(received_at) FROM (SELECT received_at FROM inbound_dedupe WHERE received_at < $1 \
     ORDER BY received_at LIMIT $2) AS oldest)";

/// As SQLite's, with the ids gathered into an array first.
pub(crate) const PURGE_ENDED_ROUTINGS_SQL: &str = "DELETE FROM routings WHERE session_id = \
     ANY(ARRAY(SELECT s.id FROM sessions s WHERE s.status = 'ended' AND s.ended_at < $1 AND \
     NOT EXISTS (SELECT 1 FROM outbox o WHERE o.session_id = s.id) ORDER BY s.ended_at LIMIT $2))";

/// As SQLite's, with the ids gathered into an array first.
pub(crate) const PURGE_ENDED_SESSIONS_SQL: &str = "DELETE FROM sessions WHERE id = ANY(ARRAY(\
     SELECT s.id FROM sessions s WHERE s.status = 'ended' AND s.ended_at < $1 AND NOT EXISTS \
     (SELECT 1 FROM outbox o WHERE o.session_id = s.id) ORDER BY s.ended_at LIMIT $2))";

/// As SQLite's, with the ids gathered into an array first.
pub(crate) const PURGE_HOSTED_FILES_SQL: &str = "DELETE FROM hosted_files WHERE id = ANY(ARRAY(\
     SELECT id FROM hosted_files WHERE expires_at < $1 ORDER BY expires_at LIMIT $2))";

/// As SQLite's: `strpos` over the JSON's text (no `LIKE` wildcards).
pub(crate) const ERASE_OUTBOX_TEXT_SQL: &str = "DELETE FROM outbox WHERE ($2::text IS NULL OR \
     channel = $2) AND (strpos(payload::text, $1) > 0 OR strpos(ordering_key, $1) > 0)";

/// As SQLite's: `position` over the bytes.
pub(crate) const ERASE_QUARANTINE_SQL: &str = "DELETE FROM quarantine WHERE ($2::text IS NULL OR \
     channel = $2) AND position($1::bytea IN body) > 0";

/// As SQLite's.
pub(crate) const AUDIT_MENTIONS_SQL: &str = "SELECT id FROM audit_log WHERE \
     strpos(detail::text, $1) > 0 OR strpos(message, $1) > 0";

/// The transactions of other sessions that hold or wait for `RowExclusiveLock` on `audit_log`
/// (every `INSERT` takes it before its row gets an id, and keeps it until the transaction
/// ends), by virtual transaction id.
const AUDIT_WRITERS_SQL: &str = "SELECT virtualtransaction FROM pg_locks \
     WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' \
     AND relation = 'audit_log'::regclass \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND pid IS DISTINCT FROM pg_backend_pid()";

type Db = Postgres;
type Ts = DateTime<Utc>;
type Id = Uuid;
type Js = Json<Value>;

fn enc_ts(t: DateTime<Utc>) -> Ts {
    t
}

fn dec_ts(t: Ts) -> Result<DateTime<Utc>> {
    Ok(t)
}

fn enc_uuid(id: Uuid) -> Id {
    id
}

fn dec_uuid(id: Id) -> Result<Uuid> {
    Ok(id)
}

fn enc_json(value: &Value) -> Js {
    Json(value.clone())
}

fn dec_json(value: Js) -> Result<Value> {
    Ok(value.0)
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool<Postgres>,
    clock: SharedClock,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`).
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url)?.application_name("byocd");
        if let Some(password) = &options.password {
            connect = connect.password(password.expose_secret());
        }
        if options.read_only {
            // An admin command that only reads: every transaction of its sessions is read-only,
            // so that no bug of its own can change the database.
            connect = connect.options([("default_transaction_read_only", "on")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self {
            pool,
            clock: options.clock,
        })
    }

    fn reader(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn writer(&self) -> &Pool<Postgres> {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// The claim's transaction. The claim must walk `outbox_due` in its order and stop at the
    /// first claimable rows; with statistics that lag behind a fast-growing backlog (the table
    /// churns faster than autovacuum analyzes it) the planner instead gathered every unfinished
    /// row with a bitmap scan and sorted them — 6 ms per claim at a few thousand rows, growing
    /// with the backlog, so the relay fell further behind the more it had to do. Bitmap scans and
    /// sorts are off for this one transaction.
    async fn begin_claim(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn backend_migrate(&self) -> Result<Vec<AppliedMigration>> {
        // Read the version under the same advisory lock the migrator takes, so that two replicas
        // starting together each report only what they applied themselves.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtext('byocd.migrate'))")
            .execute(&mut *conn)
            .await?;
        let result = async {
            let before = self.backend_schema_status().await?.applied;
            MIGRATOR.run(&self.pool).await?;
            Ok(newly_applied(&MIGRATOR, before))
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock(hashtext('byocd.migrate'))")
            .execute(&mut *conn)
            .await?;
        result
    }

    async fn backend_schema_status(&self) -> Result<SchemaStatus> {
        let (exists,): (bool,) =
            sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        let applied = if exists {
            sqlx::query_as::<_, (Option<i64>,)>(
                "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
            )
            .fetch_one(&self.pool)
            .await?
            .0
        } else {
            None
        };
        Ok(SchemaStatus {
            applied,
            expected: expected_version(&MIGRATOR),
        })
    }

    async fn backend_release_earlier_leases(&self) -> Result<u64> {
        // Replicas share the database: a lease may belong to a live process. Leases expire.
        Ok(0)
    }

    async fn backend_try_exclusive(&self, key: &str) -> Result<Option<super::ExclusiveGuard>> {
        let mut tx = self.pool.begin().await?;
        let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        Ok(taken.then(|| super::ExclusiveGuard::new(Some(tx))))
    }

    /// See [`Store::audit_seal_horizon`](super::Store::audit_seal_horizon). The highest visible
    /// id first, then the transactions that hold (or wait for) `RowExclusiveLock` on
    /// `audit_log`: a row with a smaller id took its id after its transaction took that lock,
    /// and before the visible row took its own (the sequence only grows), so its transaction is
    /// in the list unless it has already ended. `pg_locks` lists fast-path locks too and is
    /// readable by any role.
    async fn backend_seal_horizon(&self) -> Result<super::SealHorizon> {
        let (up_to,): (i64,) = sqlx::query_as("SELECT COALESCE(max(id), 0) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let in_flight: Vec<(String,)> = sqlx::query_as(AUDIT_WRITERS_SQL)
            .fetch_all(&self.pool)
            .await?;
        Ok(super::SealHorizon {
            up_to,
            in_flight: in_flight.into_iter().map(|(v,)| v).collect(),
        })
    }

    async fn backend_horizon_reached(&self, horizon: &super::SealHorizon) -> Result<bool> {
        if horizon.in_flight.is_empty() {
            return Ok(true);
        }
        let still: Vec<(String,)> = sqlx::query_as(AUDIT_WRITERS_SQL)
            .fetch_all(&self.pool)
            .await?;
        Ok(!still.iter().any(|(v,)| horizon.in_flight.contains(v)))
    }

    async fn backend_close(&self) {
        self.pool.close().await;
    }
}

/// The end users a group's events name (`$1`…`$4`: channels, keys, numbers, user ids), each
/// found by any identifier through its own index (the key; the number; the user id) — per
/// probe, in a `LATERAL` subquery, so the plan is index scans whatever the table statistics
/// say (a join of the probes with the table planned hash joins over sequential scans) — with
/// their conversation and its newest session that has not ended; an end user matched twice is
/// listed twice. Three lookups joined by
/// `UNION` rather than one `OR` across the three columns: with `OR` both databases used only
/// the `channel` part of an index and read every end user of the channel (175 ms per webhook
/// with a million). A `NULL` identifier matches nothing (`x = NULL` is never true).
pub(crate) const KNOWN_END_USERS_SQL: &str = "SELECT e.id, e.channel, e.provider_user_key, \
     e.salesforce_client_id, e.msisdn, e.channel_user_id, e.display_name, e.created_at, c.id, \
     c.conversation_identifier, \
     (SELECT s.id FROM sessions s WHERE s.conversation_id = c.id AND s.status <> 'ended' \
      ORDER BY s.opened_at DESC LIMIT 1) \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS q(channel, k, m, u) \
     CROSS JOIN LATERAL (\
       SELECT id, channel, provider_user_key, salesforce_client_id, msisdn, channel_user_id, \
       display_name, created_at FROM end_users \
       WHERE channel = q.channel AND provider_user_key = q.k \
       UNION ALL SELECT id, channel, provider_user_key, salesforce_client_id, msisdn, \
       channel_user_id, display_name, created_at FROM end_users \
       WHERE channel = q.channel AND msisdn = q.m \
       UNION ALL SELECT id, channel, provider_user_key, salesforce_client_id, msisdn, \
       channel_user_id, display_name, created_at FROM end_users \
       WHERE channel = q.channel AND channel_user_id = q.u) AS e \
     LEFT JOIN conversations c ON c.channel = e.channel AND c.end_user_id = e.id";

/// Brings the waiting typing-stopped rows of ordering keys (`$2`) forward to now (`$1`; `$3` the
/// kind): they go out before the messages being accepted.
pub(crate) const TYPING_STOP_NOW_SQL: &str = "UPDATE outbox SET next_attempt_at = $1, updated_at = $1 \
     WHERE ordering_key = ANY($2::text[]) AND status IN ('pending', 'leased') \
     AND kind = $3 AND status = 'pending' AND next_attempt_at > $1";

/// Marks delivered rows done (`$1` now, `$2` their ids, `$3` the owner): only those still leased
/// to this owner; their ids.
pub(crate) const DONE_SQL: &str = "UPDATE outbox SET status = 'done', finished_at = $1, \
     updated_at = $1, lease_owner = NULL, lease_until = NULL, last_error = NULL, last_code = NULL \
     WHERE id = ANY($2::int8[]) AND status = 'leased' AND lease_owner = $3 RETURNING id";

/// As SQLite's, with the ids as an array.
pub(crate) const RELEASE_SQL: &str = "UPDATE outbox SET status = 'pending', updated_at = $1, \
     lease_owner = NULL, lease_until = NULL, \
     attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
     WHERE id = ANY($2::int8[]) AND status = 'leased' AND lease_owner = $3 RETURNING id";

/// Claims the next rows of ordering keys right after their previous rows were marked done (`$1`
/// owner, `$2` lease until, `$3` now, `$4` the keys, `$5` the most rows per key): as SQLite's,
/// each key's first `$5` unfinished rows up to the first that is not pending and due. Each key's
/// rows are read by a LATERAL index scan of `outbox_by_ordering_key` that stops after `$5`, and
/// the ids are gathered into an array before the rows are fetched by id. A concurrent claim that
/// took a row first leaves it `leased`: the run stops before it, and the re-checked
/// `status = 'pending'` skips it. The key is matched as a range and the rows ordered by
/// `ordering_key, id`, an order only that index gives: with `= k.key` and `ORDER BY o.id`, and
/// statistics taken when the table held one conversation, the planner walked `outbox_pkey` from
/// the first id and filtered out every finished row of the conversation — at every claim, so a
/// conversation's backlog drained in quadratic time. The due test is written `(…) IS TRUE` so that it is not an
/// index condition: as a plain `<=` the planner, with statistics of a table that looked nearly
/// empty, walked `outbox_due` through every due pending row instead of fetching a few rows by id.
pub(crate) const CLAIM_NEXT_OF_KEYS_SQL: &str = "UPDATE outbox SET status = 'leased', \
     lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
     WHERE id = ANY (ARRAY(SELECT r.id FROM (SELECT o.id, min(CASE WHEN o.status = 'pending' \
                   AND o.next_attempt_at <= $3 THEN 1 ELSE 0 END) \
                   OVER (PARTITION BY k.key ORDER BY o.id) AS runs \
                  FROM UNNEST($4::text[]) AS k(key) CROSS JOIN LATERAL (SELECT o.id, o.status, \
                   o.next_attempt_at FROM outbox o WHERE o.ordering_key >= k.key \
                   AND o.ordering_key <= k.key AND o.status IN ('pending', 'leased') \
                   ORDER BY o.ordering_key, o.id LIMIT $5) AS o) AS r \
                  WHERE r.runs = 1)) \
       AND status = 'pending' AND (next_attempt_at <= $3) IS TRUE \
     RETURNING id, kind, org_id, channel, ordering_key, conversation_id, session_id, payload, \
     attempts, status, next_attempt_at, last_error, last_code, created_at, finished_at";

/// A list of row ids as one parameter.
fn enc_ids(ids: &[i64]) -> Vec<i64> {
    ids.to_vec()
}

/// A list of texts as one parameter.
fn enc_texts(texts: &[String]) -> Vec<String> {
    texts.to_vec()
}

impl_store!(PgStore, PgTx);
impl_tx!(PgTx);

// The multi-row inserts: one array parameter per column, read back with `UNNEST … WITH
// ORDINALITY`, in array order.
impl PgTx {
    pub(crate) async fn first_sights(&mut self, keys: &[(String, String)]) -> Result<Vec<bool>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (channels, event_keys): (Vec<&str>, Vec<&str>) =
            keys.iter().map(|(c, k)| (c.as_str(), k.as_str())).unzip();
        let fresh: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO inbound_dedupe (channel, event_key, received_at) \
             SELECT r.channel, r.event_key, $3 \
             FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS r(channel, event_key, n) \
             ORDER BY r.n ON CONFLICT DO NOTHING RETURNING channel, event_key",
        )
        .bind(channels)
        .bind(event_keys)
        .bind(self.now)
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
        type Row = (
            Uuid,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            DateTime<Utc>,
            Option<Uuid>,
            Option<String>,
            Option<Uuid>,
        );
        let rows: Vec<Row> = sqlx::query_as(KNOWN_END_USERS_SQL)
            .bind(
                probes
                    .iter()
                    .map(|p| p.channel.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(probes.iter().map(|p| p.key.as_str()).collect::<Vec<_>>())
            .bind(
                probes
                    .iter()
                    .map(|p| p.msisdn.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                probes
                    .iter()
                    .map(|p| p.channel_user_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| super::tx::KnownEndUser {
                user: super::tx::EndUserRow {
                    id: r.0,
                    channel: r.1,
                    provider_user_key: r.2,
                    msisdn: r.4,
                    channel_user_id: r.5,
                    display_name: r.6,
                },
                salesforce_client_id: r.3,
                created_at: r.7,
                conversation: r.8.map(|id| (id, r.9)),
                open_session: r.10,
            })
            .collect())
    }

    pub(crate) async fn insert_end_users(&mut self, rows: &[super::tx::EndUserRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let inserted = sqlx::query(
            "INSERT INTO end_users (id, channel, provider_user_key, salesforce_client_id, \
             msisdn, channel_user_id, display_name, created_at, updated_at) \
             SELECT r.id, r.channel, r.k, r.k, r.m, r.u, r.d, $7, $7 \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[]) WITH ORDINALITY AS r(id, channel, k, m, u, d, n) \
             ORDER BY r.n ON CONFLICT DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.provider_user_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.msisdn.as_deref()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.channel_user_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.display_name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(self.now)
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
        sqlx::query(
            "UPDATE end_users SET msisdn = COALESCE(r.m, end_users.msisdn), \
             channel_user_id = COALESCE(r.u, end_users.channel_user_id), \
             display_name = COALESCE(r.d, end_users.display_name), updated_at = $5 \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) AS r(id, m, u, d) \
             WHERE end_users.id = r.id",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.msisdn.as_deref()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.channel_user_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.display_name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(self.now)
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
        let inserted = sqlx::query(
            "INSERT INTO conversations (id, channel, end_user_id, created_at, updated_at) \
             SELECT r.id, r.channel, r.end_user_id, $4, $4 \
             FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) WITH ORDINALITY \
             AS r(id, channel, end_user_id, n) ORDER BY r.n ON CONFLICT DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.end_user_id).collect::<Vec<_>>())
        .bind(self.now)
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
        sqlx::query(
            "UPDATE conversations SET conversation_identifier = r.identifier, updated_at = $3 \
             FROM UNNEST($1::uuid[], $2::text[]) AS r(id, identifier) \
             WHERE conversations.id = r.id \
             AND conversations.conversation_identifier IS DISTINCT FROM r.identifier",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, i)| i.as_str()).collect::<Vec<_>>())
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// As SQLite's.
    pub(crate) async fn set_work_items(&mut self, rows: &[(Uuid, String)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE sessions SET work_item_id = r.work_item \
             FROM UNNEST($1::uuid[], $2::text[]) AS r(id, work_item) \
             WHERE sessions.id = r.id AND sessions.work_item_id IS NULL \
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.work_item_id = r.work_item)",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, w)| w.as_str()).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
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
             SELECT r.id, r.conversation_id, r.channel, 'active', $7, r.a, r.li, r.lp \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], \
             $5::timestamptz[], $6::text[]) WITH ORDINALITY \
             AS r(id, conversation_id, channel, a, li, lp, n) ORDER BY r.n",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_activity_at).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.last_inbound.as_ref().map(|(at, _)| *at))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.last_inbound.as_ref().map(|(_, id)| id.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(self.now)
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
            "UPDATE sessions SET last_activity_at = r.a, status = 'active', \
             inactivated_at = NULL, \
             last_inbound_at = COALESCE(r.li, sessions.last_inbound_at), \
             last_inbound_provider_message_id = CASE WHEN r.li IS NULL \
               THEN sessions.last_inbound_provider_message_id ELSE r.lp END \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[]) \
             AS r(id, a, li, lp) WHERE sessions.id = r.id",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_activity_at).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.last_inbound.as_ref().map(|(at, _)| *at))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.last_inbound.as_ref().map(|(_, id)| id.as_str()))
                .collect::<Vec<_>>(),
        )
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
            .bind(self.now)
            .bind(ordering_keys)
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
        let ids: Vec<(i64,)> = sqlx::query_as(
            "INSERT INTO outbox (kind, org_id, channel, ordering_key, conversation_id, \
             session_id, payload, priority, status, attempts, next_attempt_at, created_at, \
             updated_at) \
             SELECT r.kind, r.org_id, r.channel, r.ordering_key, r.conversation_id, \
             r.session_id, r.payload::jsonb, r.priority, 'pending', 0, r.due, $10, $10 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], \
             $6::uuid[], $7::text[], $8::int4[], $9::timestamptz[]) WITH ORDINALITY \
             AS r(kind, org_id, channel, ordering_key, conversation_id, session_id, payload, \
             priority, due, n) ORDER BY r.n RETURNING id",
        )
        .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.org_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.ordering_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.session_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.payload.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.priority).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.due).collect::<Vec<_>>())
        .bind(self.now)
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
        sqlx::query(
            "INSERT INTO message_map (channel, provider_message_id, salesforce_entry_id, \
             conversation_id, direction, created_at) \
             SELECT r.channel, r.provider_message_id, r.entry_id, r.conversation_id, \
             r.direction, $6 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[]) \
             WITH ORDINALITY AS r(channel, provider_message_id, entry_id, conversation_id, \
             direction, n) ORDER BY r.n ON CONFLICT DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.provider_message_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.salesforce_entry_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.direction).collect::<Vec<_>>())
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(crate) async fn insert_audit(&mut self, entries: &[AuditEntry]) -> Result<Vec<i64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<(i64,)> = sqlx::query_as(
            "INSERT INTO audit_log (at, kind, severity, actor, org_id, channel, \
             conversation_id, session_id, message, detail) \
             SELECT $10, r.kind, r.severity, r.actor, r.org_id, r.channel, r.conversation_id, \
             r.session_id, r.message, r.detail::jsonb \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::uuid[], $7::uuid[], $8::text[], $9::text[]) WITH ORDINALITY \
             AS r(kind, severity, actor, org_id, channel, conversation_id, session_id, message, \
             detail, n) ORDER BY r.n RETURNING id",
        )
        .bind(entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.severity.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(entries.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.org_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .iter()
                .map(|e| e.channel.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .iter()
                .map(|e| e.conversation_id)
                .collect::<Vec<_>>(),
        )
        .bind(entries.iter().map(|e| e.session_id).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .iter()
                .map(|e| e.detail.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(self.now)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(super::tx::in_insert_order(
            ids.into_iter().map(|(id,)| id).collect(),
        ))
    }
}
