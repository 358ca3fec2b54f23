//! Recorded pauses when the daemon syncs its configuration.
//!
//! The relay's gate pauses a channel or disables an org after some Salesforce errors and records
//! it in the store, so admin commands in another process see it (`byocd channels list`, `byocd
//! token status`). A daemon that starts or reloads opens its gate afresh: whatever was decided
//! under the old settings no longer holds. [`lift`] clears those records, each with an audit
//! row naming what was lifted and why it had been paused.

use serde_json::json;

use crate::store::{AnyStore, AuditEntry, RecordedPause, Result, Severity, Store, StoreError};

/// Clears the recorded pauses and disablements, audited; the names of what it cleared
/// (channels, then orgs).
pub async fn lift(store: &AnyStore) -> Result<Vec<String>> {
    let lifted = store.lift_recorded_pauses(&audit).await?;
    Ok(lifted.iter().map(|p| p.name().to_owned()).collect())
}

/// [`lift`] on a reload, which goes on whatever happens: a failure is logged at ERROR and
/// audited as an alert (`config.pauses_not_cleared`), since the gate is open while the record
/// that admin commands read (`channels list`, `token status`) still shows the pauses until the
/// next reload or start. Returns what was cleared (nothing after a failure).
pub async fn lift_or_alert(store: &AnyStore) -> Vec<String> {
    match lift(store).await {
        Ok(lifted) => lifted,
        Err(e) => {
            tracing::error!(error = %e, "reload: cannot clear the recorded pauses in the store");
            if let Err(e) = store.append_audit(&not_cleared(&e)).await {
                tracing::error!(error = %e, "could not write an audit row");
            }
            Vec::new()
        }
    }
}

/// The alert of a failed [`lift`].
fn not_cleared(error: &StoreError) -> AuditEntry {
    AuditEntry::new(
        "config.pauses_not_cleared",
        format!(
            "reload: the recorded channel pauses and org disablements could not be cleared \
             ({error}); the daemon sends on every channel again, but `byocd channels list` and \
             `byocd token status` may still show them until the next reload or start"
        ),
    )
    .severity(Severity::Alert)
    .detail(json!({ "error": error.to_string() }))
}

/// The audit row of a lifted pause.
fn audit(pause: &RecordedPause) -> AuditEntry {
    match pause {
        RecordedPause::Channel {
            name,
            org_id,
            reason,
        } => AuditEntry::new(
            "channel.pause_cleared",
            format!(
                "channel {name} is no longer recorded as paused: the daemon synced its \
                 configuration and sends on every channel again"
            ),
        )
        .org(org_id)
        .channel(name)
        .detail(json!({ "pause_reason": reason })),
        RecordedPause::Org { org_id, reason } => AuditEntry::new(
            "org.disable_cleared",
            format!(
                "org {org_id} is no longer recorded as disabled: the daemon synced its \
                 configuration and sends for every org again"
            ),
        )
        .org(org_id)
        .detail(json!({ "pause_reason": reason })),
    }
}
