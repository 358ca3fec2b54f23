//! What PostgreSQL spent its time on during a run: the top statements of `pg_stat_statements`
//! (scripts/bench.sh preloads the module; without it these figures are simply absent).

use sqlx::Connection;

/// One normalised statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
}

/// The busiest statements, and the execution time of all.
#[derive(Debug, Clone, Default)]
pub struct PgStats {
    pub total_ms: f64,
    pub calls: i64,
    pub top: Vec<Statement>,
}

async fn connect(admin: &str) -> Option<sqlx::PgConnection> {
    sqlx::PgConnection::connect(admin).await.ok()
}

/// Creates the extension in the admin database; false when the module is not loaded.
pub async fn enable(admin: &str) -> bool {
    let Some(mut c) = connect(admin).await else {
        return false;
    };
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut c)
        .await
        .is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut c)
            .await
            .is_ok()
}

/// Forgets what was counted so far.
pub async fn reset(admin: &str) {
    if let Some(mut c) = connect(admin).await {
        let _ = sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut c)
            .await;
    }
}

/// The `n` statements with the most execution time since the last reset.
pub async fn read(admin: &str, n: i64) -> Option<PgStats> {
    let mut c = connect(admin).await?;
    let filter = "query NOT LIKE '%pg_stat_statements%'";
    let (total_ms, calls): (f64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(sum(total_exec_time), 0)::float8, COALESCE(sum(calls), 0)::int8 \
         FROM pg_stat_statements WHERE {filter}"
    )))
    .fetch_one(&mut c)
    .await
    .ok()?;
    let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT query, calls, total_exec_time::float8, mean_exec_time::float8 \
         FROM pg_stat_statements WHERE {filter} ORDER BY total_exec_time DESC LIMIT $1"
    )))
    .bind(n)
    .fetch_all(&mut c)
    .await
    .ok()?;
    Some(PgStats {
        total_ms,
        calls,
        top: rows
            .into_iter()
            .map(|(query, calls, total_ms, mean_ms)| Statement {
                query,
                calls,
                total_ms,
                mean_ms,
            })
            .collect(),
    })
}
