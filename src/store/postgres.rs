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
    Completed, Completion, ConversationContext, Cursor, Delivered, EndUserIdentity, NewRouting,
    OutboxFilter, OutboxItem, RoutingRecord,
};
use super::{
    AppliedMigration, AuditEntry, AuditFilter, AuditRow, ChannelRecord, ExclusiveGuard,
    NewQuarantine, OrgRecord, QuarantinedWebhook, Result, SchemaStatus, SealedToken, Severity,
    StoreGauges, StoreOptions, StoredChannel, StoredOrg, StoredToken, SyncReport,
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

    async fn backend_close(&self) {
        self.pool.close().await;
    }
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
