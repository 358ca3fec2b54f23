//! Bulk-seeded sessions (one INSERT ... SELECT per table) and the sweeper's queries timed on them.
//!
//! Session `i` (0-based) of `n` belongs to its own end user and conversation, is active, and was
//! last active at `t0 + i ms`: the sessions idle since before `t0 + k ms` are exactly the first
//! `k`, so one seeded table serves every stale fraction.

use std::time::{Duration, Instant};

use anyhow::Context;
use byocd::{
    config::Config,
    store::{
        AnyStore, Backend, Store, StoreOptions, known_end_users_sql,
        relay::{SWEEP_SELECT_END_SQL, SWEEP_SELECT_INACTIVATE_SQL},
    },
};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use byocd::sandbox::stack::{ORG_ID, WA_CHANNEL};

/// Migrates the database and stores the configuration's orgs and channels (what the seeded rows
/// refer to).
pub async fn prepare(url: &str, config: &Config) -> anyhow::Result<()> {
    let store = AnyStore::open(url, StoreOptions::default()).await?;
    store.migrate().await?;
    let (orgs, channels) = byocd::app::config_records(config);
    store.sync_config(&orgs, &channels).await?;
    store.close().await;
    Ok(())
}

/// The instant session `i` was last active.
pub fn activity(t0: DateTime<Utc>, i: u64) -> DateTime<Utc> {
    t0 + chrono::Duration::milliseconds(i as i64)
}

/// SQLite's fixed-width timestamp text (as the store writes it).
fn sqlite_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

const SQLITE_SEED: [&str; 3] = [
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
     INSERT INTO end_users (id, channel, provider_user_key, salesforce_client_id, msisdn, \
       created_at, updated_at) \
     SELECT printf('00000001-0000-4000-8000-%012x', i), $2, printf('+1555%07d', i), \
       printf('+1555%07d', i), printf('+1555%07d', i), $3, $3 FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
     INSERT INTO conversations (id, channel, end_user_id, conversation_identifier, created_at, \
       updated_at) \
     SELECT printf('00000002-0000-4000-8000-%012x', i), $2, \
       printf('00000001-0000-4000-8000-%012x', i), printf('00000004-0000-4000-8000-%012x', i), \
       $3, $3 FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
     INSERT INTO sessions (id, conversation_id, channel, work_item_id, status, opened_at, \
       last_activity_at) \
     SELECT printf('00000003-0000-4000-8000-%012x', i), \
       printf('00000002-0000-4000-8000-%012x', i), $2, printf('0MwZZZ%09d', i), 'active', $3, \
       strftime('%Y-%m-%dT%H:%M:%S', $4 + i / 1000, 'unixepoch') \
         || printf('.%06dZ', (i % 1000) * 1000) FROM n",
];

const PG_SEED: [&str; 3] = [
    "INSERT INTO end_users (id, channel, provider_user_key, salesforce_client_id, msisdn, \
       created_at, updated_at) \
     SELECT ('00000001-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, $2, \
       '+1555' || lpad(i::text, 7, '0'), '+1555' || lpad(i::text, 7, '0'), \
       '+1555' || lpad(i::text, 7, '0'), $3, $3 \
     FROM generate_series(0::bigint, $1::bigint - 1) AS i",
    "INSERT INTO conversations (id, channel, end_user_id, conversation_identifier, created_at, \
       updated_at) \
     SELECT ('00000002-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, $2, \
       ('00000001-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, \
       '00000004-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), $3, $3 \
     FROM generate_series(0::bigint, $1::bigint - 1) AS i",
    "INSERT INTO sessions (id, conversation_id, channel, work_item_id, status, opened_at, \
       last_activity_at) \
     SELECT ('00000003-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, \
       ('00000002-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, $2, \
       '0MwZZZ' || lpad(i::text, 9, '0'), 'active', $3, $4 + i * interval '1 millisecond' \
     FROM generate_series(0::bigint, $1::bigint - 1) AS i",
];

/// A raw connection pool on the database (SQLite or PostgreSQL).
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres") {
            Ok(Self::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await?,
            ))
        } else {
            use std::str::FromStr;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .busy_timeout(Duration::from_secs(30))
                // Seeding only: the store's own connections commit with synchronous = FULL.
                .pragma("synchronous", "OFF");
            Ok(Self::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?,
            ))
        }
    }

    pub async fn close(self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }

    /// Inserts `n` end users, conversations and sessions; returns how long it took (with the
    /// checkpoint or VACUUM ANALYZE that follows).
    pub async fn seed(&self, n: u64, t0: DateTime<Utc>) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let n = i64::try_from(n)?;
        match self {
            Self::Sqlite(pool) => {
                for sql in SQLITE_SEED {
                    sqlx::query(sql)
                        .bind(n)
                        .bind(WA_CHANNEL)
                        .bind(sqlite_ts(t0))
                        .bind(t0.timestamp())
                        .execute(pool)
                        .await
                        .context("seeding SQLite")?;
                }
                // Move the seeded pages from the WAL into the database file, as a long-running
                // daemon's checkpoints would have.
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                for sql in PG_SEED {
                    sqlx::query(sql)
                        .bind(n)
                        .bind(WA_CHANNEL)
                        .bind(t0)
                        .bind(t0)
                        .execute(pool)
                        .await
                        .context("seeding PostgreSQL")?;
                }
                // What autovacuum would have done by the time a table holds a million rows.
                for table in ["end_users", "conversations", "sessions"] {
                    sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                        .execute(pool)
                        .await?;
                }
            }
        }
        Ok(started.elapsed())
    }

    /// Runs a sweeper selection; returns the rows it found.
    async fn select(
        &self,
        sql: &'static str,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<usize> {
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query(sql)
                .bind(WA_CHANNEL)
                .bind(sqlite_ts(cutoff))
                .bind(limit)
                .fetch_all(pool)
                .await?
                .len(),
            Self::Postgres(pool) => sqlx::query(sql)
                .bind(WA_CHANNEL)
                .bind(cutoff)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .len(),
        })
    }

    /// The plan of a sweeper selection, one line per step.
    pub async fn plan(
        &self,
        sql: &'static str,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(WA_CHANNEL)
                .bind(sqlite_ts(cutoff))
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap_or_default())
                .collect(),
            Self::Postgres(pool) => sqlx::query(AssertSqlSafe(format!("EXPLAIN {sql}")))
                .bind(WA_CHANNEL)
                .bind(cutoff)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
                .collect(),
        })
    }

    /// Removes the outbox rows a timed sweep left (so a daemon started on this database later
    /// does not send session operations the emulator never heard of).
    pub async fn clear_outbox(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("DELETE FROM outbox").execute(pool).await?;
            }
            Self::Postgres(pool) => {
                sqlx::query("DELETE FROM outbox").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// The database's size on disk, in MiB.
    pub async fn size_mib(&self, sqlite_file: Option<&std::path::Path>) -> f64 {
        match self {
            Self::Sqlite(_) => sqlite_file
                .map(|f| {
                    let len =
                        |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                    let wal = f.with_extension("db-wal");
                    (len(f.to_owned()) + len(wal)) as f64 / 1024.0 / 1024.0
                })
                .unwrap_or(f64::NAN),
            Self::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await
                    .map(|b| b as f64 / 1024.0 / 1024.0)
                    .unwrap_or(f64::NAN)
            }
        }
    }
}

/// The intake's end-user lookup timed among the seeded end users.
#[derive(Debug, Clone, Default)]
pub struct LookupTiming {
    pub end_users: u64,
    /// (what was looked up, found, first ms, median ms) for a seeded and an unknown number.
    pub cases: Vec<(&'static str, bool, f64, f64)>,
    pub plan: Vec<String>,
}

impl Raw {
    /// The intake's lookup (`known_end_users_sql`) for one end user with this number.
    fn lookup_query(&self, prefix: &str) -> AssertSqlSafe<String> {
        let backend = match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        };
        AssertSqlSafe(format!("{prefix} {}", known_end_users_sql(backend)))
    }

    async fn lookup_rows(&self, prefix: &str, msisdn: &str) -> anyhow::Result<Vec<String>> {
        let sql = self.lookup_query(prefix);
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query(sql)
                .bind(serde_json::json!([[WA_CHANNEL, msisdn, msisdn, null]]).to_string())
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(if prefix.is_empty() { 0 } else { 3 }))
                .collect::<Result<_, _>>()?,
            Self::Postgres(pool) => sqlx::query(sql)
                .bind(vec![WA_CHANNEL])
                .bind(vec![msisdn])
                .bind(vec![Some(msisdn)])
                .bind(vec![None::<String>])
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    if prefix.is_empty() {
                        r.try_get::<uuid::Uuid, _>(0).map(|id| id.to_string())
                    } else {
                        r.try_get::<String, _>(0)
                    }
                })
                .collect::<Result<_, _>>()?,
        })
    }

    async fn lookup(&self, msisdn: &str) -> anyhow::Result<bool> {
        Ok(!self.lookup_rows("", msisdn).await?.is_empty())
    }

    pub async fn lookup_plan(&self, msisdn: &str) -> anyhow::Result<Vec<String>> {
        let prefix = match self {
            Self::Sqlite(_) => "EXPLAIN QUERY PLAN",
            Self::Postgres(_) => "EXPLAIN",
        };
        self.lookup_rows(prefix, msisdn).await
    }
}

impl Raw {
    /// PostgreSQL's view of a table: live rows and when it was last analyzed.
    pub async fn table_stats(&self, table: &str) -> Option<(i64, Option<String>)> {
        let Self::Postgres(pool) = self else {
            return None;
        };
        sqlx::query_as::<_, (i64, Option<String>)>(
            "SELECT n_live_tup, GREATEST(last_analyze, last_autoanalyze)::text \
             FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(table)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
    }
}

/// Times the end-user lookup of a group of webhooks (`known_end_users_sql`, run by the intake
/// for every group) for the last seeded end user and for an unknown one, `runs` times each.
pub async fn time_lookup(raw: &Raw, n: u64, runs: usize) -> anyhow::Result<LookupTiming> {
    let mut out = LookupTiming {
        end_users: n,
        ..LookupTiming::default()
    };
    let known = format!("+1555{:07}", n.saturating_sub(1));
    for (what, msisdn) in [
        ("a stored end user", known.as_str()),
        ("a new end user", "+19990000001"),
    ] {
        let mut times = Vec::new();
        let mut found = false;
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            found = raw.lookup(msisdn).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let first = times[0];
        times.sort_by(f64::total_cmp);
        out.cases.push((what, found, first, times[times.len() / 2]));
    }
    out.plan = raw.lookup_plan(&known).await.unwrap_or_default();
    Ok(out)
}

/// One selection timed several times.
#[derive(Debug, Clone)]
pub struct SelectTiming {
    pub query: &'static str,
    pub stale_percent: f64,
    pub limit: i64,
    pub rows: usize,
    pub first_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// Times the sweeper's two selections for each stale fraction and limit: one first run, then
/// `runs` more; the median is of all runs.
pub async fn time_selects(
    raw: &Raw,
    n: u64,
    t0: DateTime<Utc>,
    stale_fractions: &[f64],
    limits: &[i64],
    runs: usize,
) -> anyhow::Result<Vec<SelectTiming>> {
    let mut out = Vec::new();
    for &fraction in stale_fractions {
        let stale = (n as f64 * fraction).round() as u64;
        let cutoff = activity(t0, stale);
        for &limit in limits {
            for (name, sql) in [
                ("end", SWEEP_SELECT_END_SQL),
                ("inactivate", SWEEP_SELECT_INACTIVATE_SQL),
            ] {
                let mut times = Vec::new();
                let mut rows = 0;
                for _ in 0..=runs {
                    let t = Instant::now();
                    rows = raw.select(sql, cutoff, limit).await?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let first = times[0];
                let mut sorted = times.clone();
                sorted.sort_by(f64::total_cmp);
                out.push(SelectTiming {
                    query: name,
                    stale_percent: fraction * 100.0,
                    limit,
                    rows,
                    first_ms: first,
                    median_ms: sorted[sorted.len() / 2],
                    max_ms: sorted[sorted.len() - 1],
                });
            }
        }
    }
    Ok(out)
}

/// `domain::lifecycle::sweep_sessions` ending stale sessions batch after batch.
#[derive(Debug, Clone, Default)]
pub struct SweepRun {
    pub batches: usize,
    pub ended: usize,
    pub first_batch_ms: f64,
    pub median_batch_ms: f64,
    pub total_ms: f64,
    pub complete: bool,
}

/// Ends the sessions idle since before `end_before` with the store's own sweep, `batch` at a
/// time (as the sweeper does), until none is left or the budget is spent.
pub async fn sweep_all(
    url: &str,
    end_before: DateTime<Utc>,
    batch: u32,
    max_batches: usize,
    budget: Duration,
) -> anyhow::Result<SweepRun> {
    let store = AnyStore::open(url, StoreOptions::default()).await?;
    // Nothing to inactivate: every batch ends sessions only.
    let inactivate_before = end_before - chrono::Duration::days(365);
    let mut times = Vec::new();
    let mut run = SweepRun::default();
    let started = Instant::now();
    while run.batches < max_batches && started.elapsed() < budget {
        let t = Instant::now();
        let report = byocd::domain::lifecycle::sweep_sessions(
            &store,
            WA_CHANNEL,
            ORG_ID,
            inactivate_before,
            end_before,
            true,
            batch,
        )
        .await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if report.ended == 0 && report.inactivated == 0 {
            run.complete = true;
            break;
        }
        times.push(ms);
        run.batches += 1;
        run.ended += report.ended;
    }
    run.total_ms = started.elapsed().as_secs_f64() * 1000.0;
    store.close().await;
    if let Some(first) = times.first() {
        run.first_batch_ms = *first;
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        run.median_batch_ms = sorted[sorted.len() / 2];
    }
    Ok(run)
}

/// What a finished message's outbox row carries (the size of a text message's interaction).
const FINISHED_PAYLOAD: &str = r#"{"conversation_identifier":"00000004-0000-4000-8000-000000000000","channel_address_identifier":"whatsapp:+15550000000","end_user":"+15550000000","message":{"kind":"text","text":"A message delivered long ago, kept as the outbox keeps every finished row.","provider_message_id":"seeded"},"received_at":"2026-01-01T00:00:00.000000Z"}"#;

const SQLITE_FINISHED: [&str; 2] = [
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
     INSERT INTO outbox (kind, org_id, channel, ordering_key, conversation_id, session_id, \
       payload, priority, status, attempts, next_attempt_at, created_at, updated_at, finished_at) \
     SELECT 'isa.message', $2, $3, printf('00000002-0000-4000-8000-%012x', i % $4), \
       printf('00000002-0000-4000-8000-%012x', i % $4), \
       printf('00000003-0000-4000-8000-%012x', i % $4), $5, 0, 'done', 1, $6, $6, $6, $6 FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
     INSERT INTO message_map (channel, provider_message_id, salesforce_entry_id, \
       conversation_id, direction, created_at) \
     SELECT $3, printf('seeded-%09d', i), printf('seeded-entry-%09d', i), \
       printf('00000002-0000-4000-8000-%012x', i % $4), 'inbound', $6 FROM n",
];

const PG_FINISHED: [&str; 2] = [
    "INSERT INTO outbox (kind, org_id, channel, ordering_key, conversation_id, session_id, \
       payload, priority, status, attempts, next_attempt_at, created_at, updated_at, finished_at) \
     SELECT 'isa.message', $2, $3, '00000002-0000-4000-8000-' || lpad(to_hex(i % $4), 12, '0'), \
       ('00000002-0000-4000-8000-' || lpad(to_hex(i % $4), 12, '0'))::uuid, \
       ('00000003-0000-4000-8000-' || lpad(to_hex(i % $4), 12, '0'))::uuid, $5::jsonb, 0, \
       'done', 1, $6, $6, $6, $6 \
     FROM generate_series(0::bigint, $1::bigint - 1) AS i",
    "INSERT INTO message_map (channel, provider_message_id, salesforce_entry_id, \
       conversation_id, direction, created_at) \
     SELECT $3, 'seeded-' || lpad(i::text, 9, '0'), 'seeded-entry-' || lpad(i::text, 9, '0'), \
       ('00000002-0000-4000-8000-' || lpad(to_hex(i % $4), 12, '0'))::uuid, 'inbound', $6 \
     FROM generate_series(0::bigint, $1::bigint - 1) AS i",
];

impl Raw {
    /// Stores `rows` finished messages: `conversations` end users with their conversation and
    /// session (as [`Raw::seed`]), then `rows` outbox rows with status `done`, round-robin over
    /// those conversations, each with its `message_map` row. Returns how long it took (with the
    /// checkpoint or VACUUM ANALYZE that follows).
    pub async fn seed_finished(
        &self,
        rows: u64,
        conversations: u64,
        t0: DateTime<Utc>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.seed(conversations, t0).await?;
        let (rows, conversations) = (i64::try_from(rows)?, i64::try_from(conversations.max(1))?);
        match self {
            Self::Sqlite(pool) => {
                for sql in SQLITE_FINISHED {
                    sqlx::query(sql)
                        .bind(rows)
                        .bind(ORG_ID)
                        .bind(WA_CHANNEL)
                        .bind(conversations)
                        .bind(FINISHED_PAYLOAD)
                        .bind(sqlite_ts(t0))
                        .execute(pool)
                        .await
                        .context("seeding finished messages on SQLite")?;
                }
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                for sql in PG_FINISHED {
                    sqlx::query(sql)
                        .bind(rows)
                        .bind(ORG_ID)
                        .bind(WA_CHANNEL)
                        .bind(conversations)
                        .bind(FINISHED_PAYLOAD)
                        .bind(t0)
                        .execute(pool)
                        .await
                        .context("seeding finished messages on PostgreSQL")?;
                }
                for table in ["outbox", "message_map"] {
                    sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                        .execute(pool)
                        .await?;
                }
            }
        }
        Ok(started.elapsed())
    }

    /// Rows of `table` with `status` (the finished rows a run started beside).
    pub async fn count_status(&self, table: &str, status: &str) -> anyhow::Result<i64> {
        let sql = AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE status = $1"));
        Ok(match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(status)
                    .fetch_one(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(status)
                    .fetch_one(pool)
                    .await?
            }
        })
    }
}
