//! Finished work leaves the outbox.
//!
//! Delivered and discarded rows are kept `relay.finished_retention` (7 days by default) — long
//! enough for `byocd outbox show` and for an operator to look into yesterday's traffic — and
//! then deleted, so the outbox holds what is pending plus a bounded tail and its statements
//! stay as fast after a year as on the first day. Dead-lettered rows stay until an admin sends
//! them again or discards them. The audit trail and `message_map` (what receipts and auditors
//! need afterwards) are not touched.
//!
//! Every [`PURGE_INTERVAL`], one daemon (on PostgreSQL, whichever replica takes the advisory
//! lock) deletes in chunks of [`CHUNK`] rows with a pause between chunks, at most
//! [`MAX_CHUNKS`] per run, so a first purge of a large backlog never holds the database for
//! long. A run that deleted rows writes one `outbox.purged` audit row with the count.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::SharedClock,
    store::{AnyStore, AuditEntry, Store, StoreError},
};

/// How often the purge runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
pub const CHUNK: u32 = 5_000;
/// Statements per run at most (then the next run goes on).
pub const MAX_CHUNKS: usize = 100;
/// Pause between two chunks, leaving the database to the pipeline.
const PAUSE: Duration = Duration::from_millis(20);

/// One purge run: deletes rows finished more than `retention` ago; returns how many.
pub async fn purge_once(
    store: &AnyStore,
    clock: &SharedClock,
    retention: Duration,
) -> Result<u64, StoreError> {
    let Some(guard) = store.try_exclusive("byocd.outbox_purge").await? else {
        return Ok(0);
    };
    let before = clock.now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let mut purged = 0;
    let mut result = Ok(());
    for chunk in 0..MAX_CHUNKS {
        if chunk > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        match store.purge_finished_outbox(before, CHUNK).await {
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
    guard.release().await;
    if purged > 0 {
        tracing::info!(rows = purged, finished_before = %before.to_rfc3339(), "outbox: finished work purged");
        let entry = AuditEntry::new(
            "outbox.purged",
            format!("{purged} finished outbox row(s) older than the retention deleted"),
        )
        .detail(json!({ "rows": purged, "finished_before": before.to_rfc3339() }));
        if let Err(e) = store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not write an audit row");
        }
    }
    result.map(|()| purged)
}

/// Purges every [`PURGE_INTERVAL`] until `cancel`.
pub async fn run(
    store: AnyStore,
    clock: SharedClock,
    retention: Duration,
    cancel: CancellationToken,
) {
    loop {
        if let Err(e) = purge_once(&store, &clock, retention).await {
            tracing::warn!(error = %e, "outbox: purging finished work failed; trying again later");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
    }
}
