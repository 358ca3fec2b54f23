//! Idle sessions: the sweeper's rules.
//!
//! A channel's sessions idle past `end_after` are ended, active ones idle past
//! `inactivate_after` are inactivated — locally at once, so a second sweep (or a second
//! replica) finds nothing — and, on partner-routed channels, an `isa.session_operation` job
//! tells Salesforce (`operationBy: System`). The store only selects, updates and inserts.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Writes;
use crate::{
    salesforce::types::{SessionOperation, SessionOperationBy},
    store::job::{IsaSessionOperation, Job},
    store::{AnyStore, AuditEntry, Result, Store, SweepReport, relay::inbound_key},
};

/// Sweeps a channel's idle sessions, at most `limit` of each kind, in one transaction: open
/// sessions idle since before `end_before` are ended, active ones idle since before
/// `inactivate_before` are inactivated, and, when `notify_salesforce`, a job tells Salesforce.
/// Audited per session.
#[allow(clippy::too_many_arguments)]
pub async fn sweep_sessions(
    store: &AnyStore,
    channel: &str,
    org_id: &str,
    inactivate_before: DateTime<Utc>,
    end_before: DateTime<Utc>,
    notify_salesforce: bool,
    limit: u32,
) -> Result<SweepReport> {
    let mut tx = store.transaction().await?;
    let now = tx.now();
    let mut writes = Writes::default();
    let mut report = SweepReport::default();
    // Ends first: a session ended now is not inactivated as well.
    for (operation, cutoff) in [
        (SessionOperation::End, end_before),
        (SessionOperation::Inactivate, inactivate_before),
    ] {
        let ending = operation == SessionOperation::End;
        let idle = tx.idle_sessions(channel, cutoff, limit, !ending).await?;
        for stale in idle {
            let changed = if ending {
                tx.end_session(stale.session, "System", "idle")
                    .await?
                    .is_some()
            } else {
                tx.inactivate_session(stale.session).await?
            };
            if !changed {
                continue;
            }
            if ending {
                report.ended += 1;
            } else {
                report.inactivated += 1;
            }
            let mut row = None;
            if notify_salesforce && let Some(work_item) = &stale.work_item_id {
                let job = Job::IsaSessionOperation(IsaSessionOperation {
                    from: stale.end_user_key.clone(),
                    operation,
                    operation_by: SessionOperationBy::System,
                    work_item_id: Some(work_item.clone()),
                });
                row = Some(writes.outbox(
                    org_id,
                    channel,
                    inbound_key(stale.conversation),
                    Some(stale.conversation),
                    Some(stale.session),
                    job,
                    now,
                ));
            }
            let (kind, done) = if ending {
                ("session.ended", "ended")
            } else {
                ("session.inactivated", "inactivated")
            };
            let entry = AuditEntry::new(kind, format!("idle session {done} by the sweeper"))
                .org(org_id)
                .channel(channel)
                .conversation(stale.conversation)
                .session(stale.session)
                .detail(json!({
                    "operation": if ending { "End" } else { "Inactivate" },
                    "work_item_id": stale.work_item_id,
                    "outbox_id": null,
                    "idle_since_before": cutoff.to_rfc3339(),
                }));
            writes.audit_naming(entry, "outbox_id", row);
        }
    }
    writes.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(report)
}
