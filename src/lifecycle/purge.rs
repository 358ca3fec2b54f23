//! Personal data and finished work leave the database after their retention
//! (`domain::privacy`, docs/security.md).
//!
//! Each class has its own retention: delivered and discarded outbox rows
//! `relay.finished_retention` (7 days: long enough for `byocd outbox show` and for an operator to
//! look into yesterday's traffic), quarantined bodies `retention.quarantine`, dedupe keys
//! `retention.dedupe` (an event older than that is refused, so purging its key never lets a
//! replay in), ended sessions `retention.ended_sessions`, hosted files once they expire
//! (`server.hosted_file_ttl`). Dead-lettered rows stay until an admin
//! sends them again or discards them; the audit trail is never purged.
//!
//! Every [`PURGE_INTERVAL`], one daemon (on PostgreSQL, whichever replica takes the advisory
//! lock) deletes each class in chunks of [`CHUNK`] rows through an index on its age, with a
//! pause between chunks, at most [`MAX_CHUNKS`] per class and run, so a first purge of a large
//! backlog never holds the database for long. Each class that lost rows in a run gets one audit
//! row with the count (`outbox.purged`, `quarantine.purged`, `dedupe.purged`,
//! `sessions.purged`, `hosted_files.purged`), never the contents.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::SharedClock,
    domain::privacy::{self, Retention},
    store::{AnyStore, PurgeClass, Store, StoreError},
};

/// How often the purge runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
pub const CHUNK: u32 = 5_000;
/// Statements per class and run at most (then the next run goes on).
pub const MAX_CHUNKS: usize = 100;
/// Pause between two chunks, leaving the database to the pipeline.
const PAUSE: Duration = Duration::from_millis(20);

/// One purge run of finished outbox work only: deletes rows finished more than `retention` ago;
/// returns how many.
pub async fn purge_once(
    store: &AnyStore,
    clock: &SharedClock,
    retention: Duration,
) -> Result<u64, StoreError> {
    let Some(guard) = store.try_exclusive("byocd.outbox_purge").await? else {
        return Ok(0);
    };
    let before = clock.now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let result = purge_class(store, PurgeClass::FinishedOutbox, before).await;
    guard.release().await;
    result
}

/// One purge run of every class; returns how many rows each lost (in
/// [`privacy::purge_before`]'s order). A class that fails is logged and the others still run;
/// the first error is returned after all ran.
pub async fn purge_all(
    store: &AnyStore,
    clock: &SharedClock,
    retention: &Retention,
) -> Result<Vec<(PurgeClass, u64)>, StoreError> {
    let Some(guard) = store.try_exclusive("byocd.outbox_purge").await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut first_error = None;
    for (class, before) in privacy::purge_before(clock.now(), retention) {
        match purge_class(store, class, before).await {
            Ok(n) => out.push((class, n)),
            Err(e) => {
                tracing::warn!(error = %e, ?class, "purge: a class failed; trying again later");
                first_error.get_or_insert(e);
            }
        }
    }
    guard.release().await;
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Deletes the rows of `class` older than `before` in paced chunks, and audits the count.
async fn purge_class(
    store: &AnyStore,
    class: PurgeClass,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut purged = 0;
    let mut result = Ok(());
    for chunk in 0..MAX_CHUNKS {
        if chunk > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        match store.purge_expired(class, before, CHUNK).await {
            Ok(n) => {
                purged += n;
                if n < u64::from(CHUNK) {
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if purged > 0 {
        tracing::info!(rows = purged, ?class, before = %before.to_rfc3339(), "purge: rows past their retention deleted");
        if let Err(e) = store
            .append_audit(&privacy::purged_entry(class, purged, before))
            .await
        {
            tracing::error!(error = %e, "could not write an audit row");
        }
    }
    result.map(|()| purged)
}

/// Purges every [`PURGE_INTERVAL`] until `cancel`.
pub async fn run(
    store: AnyStore,
    clock: SharedClock,
    retention: Retention,
    cancel: CancellationToken,
) {
    loop {
        if let Err(e) = purge_all(&store, &clock, &retention).await {
            tracing::warn!(error = %e, "purging data past its retention failed; trying again later");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
    }
}
