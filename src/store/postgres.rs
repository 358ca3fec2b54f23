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

use super::StoreError;
use super::relay::{
    Completed, Completion, ConversationContext, Cursor, Delivered, EndUserIdentity, IntakeBatch,
    IntakeEvent, IntakeReport, IntakeWork, NewRouting, OutboundBatch, OutboundIntake, OutboundWork,
    OutboxFilter, OutboxItem, RoutingRecord, SweepReport,
};
use super::{
    AppliedMigration, AuditEntry, AuditFilter, AuditRow, ChannelRecord, ExclusiveGuard,
    NewQuarantine, OrgRecord, QuarantinedWebhook, Result, SchemaStatus, SealedToken, Severity,
    StoreGauges, StoreOptions, StoredChannel, StoredOrg, StoredToken, SyncReport,
    shared::impl_store,
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

impl_store!(PgStore);
