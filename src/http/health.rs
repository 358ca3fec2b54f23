//! `/healthz` says the process is alive; `/readyz` says it can do its work: the database answers
//! within a deadline, its schema is the one this binary expects, and no channel's session sweep
//! has gone three scheduled runs without succeeding.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use super::AppState;
use crate::store::Store;

/// How long readiness waits for the database before calling it unreachable.
const DATABASE_DEADLINE: Duration = Duration::from_secs(2);

/// Liveness: answers as long as the process serves HTTP.
pub(super) async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "alive",
        "version": state.version,
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

/// Readiness: the database is reachable and its schema current.
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let backend = state.store.backend().to_string();
    let check = async {
        state.store.ping().await?;
        state.store.schema_status().await
    };
    let (status, body) = match tokio::time::timeout(DATABASE_DEADLINE, check).await {
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "not ready",
                "database": backend,
                "reason": format!("database did not answer within {} s", DATABASE_DEADLINE.as_secs()),
            }),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not ready", "database": backend, "reason": "database unreachable" }),
            )
        }
        Ok(Ok(schema)) if !schema.is_current() => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "not ready",
                "database": backend,
                "reason": "schema is not current: run `byocd migrate`",
                "schema": schema,
            }),
        ),
        Ok(Ok(schema)) => {
            let sweeps = state
                .sweeper
                .as_ref()
                .map(|s| s.health())
                .unwrap_or_default();
            let stale: Vec<&str> = sweeps
                .iter()
                .filter(|s| s.stale)
                .map(|s| s.channel.as_str())
                .collect();
            if stale.is_empty() {
                (
                    StatusCode::OK,
                    json!({
                        "status": "ready",
                        "database": backend,
                        "schema": schema,
                        "config_hash": &*state.config_hash.read().expect("config hash lock").clone(),
                        "sweeps": sweeps,
                    }),
                )
            } else {
                tracing::warn!(channels = ?stale, "readiness: session sweeps are stale");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({
                        "status": "not ready",
                        "database": backend,
                        "reason": format!(
                            "the session sweep of channel(s) {} has not succeeded for {} scheduled runs; see the journal for `sweep failed`",
                            stale.join(", "),
                            crate::lifecycle::sweeper::STALE_AFTER_RUNS
                        ),
                        "sweeps": sweeps,
                    }),
                )
            }
        }
    };
    (status, Json(body))
}
