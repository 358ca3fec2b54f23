//! Recorded pauses when the daemon syncs its configuration.
//!
//! The relay's gate pauses a channel or disables an org after some Salesforce errors and records
//! it in the store, so admin commands in another process see it (`byocd channels list`, `byocd
//! token status`). A daemon that starts or reloads opens its gate afresh: whatever was decided
//! under the old settings no longer holds. [`lift`] clears those records, each with an audit
//! row naming what was lifted and why it had been paused.

use serde_json::json;

use crate::store::{AnyStore, AuditEntry, RecordedPause, Result, Store};

/// Clears the recorded pauses and disablements, audited; the names of what it cleared
/// (channels, then orgs).
pub async fn lift(store: &AnyStore) -> Result<Vec<String>> {
    let lifted = store.lift_recorded_pauses(&audit).await?;
    Ok(lifted.iter().map(|p| p.name().to_owned()).collect())
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
