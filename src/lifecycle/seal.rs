//! The sealer: appends the audit trail's hash chain (`domain::audit_chain`) behind the writers.
//!
//! Writers insert audit rows as before, in their own transactions, with no lock of the chain's:
//! the pipeline's group commits are not serialised on it. Every [`SEAL_INTERVAL`], one daemon
//! (on PostgreSQL, whichever replica takes the advisory lock `byocd.audit_seal`) seals the rows
//! that can no longer change place, in id order, in chunks of [`CHUNK`].
//!
//! Which rows are final ([`Store::audit_seal_horizon`]): on SQLite every committed row (one
//! writer at a time). On PostgreSQL ids come from a sequence when a row is inserted and are
//! visible when its transaction commits, so a smaller id can still appear after a larger one is
//! visible. A horizon is the highest visible id with the list of transactions then inserting
//! into `audit_log`; once they have all ended, no row up to it can appear any more. The sealer
//! seals up to a fresh horizon when nothing is in flight; under constant traffic it keeps the
//! previous round's horizon until its transactions have ended (a round later, as transactions
//! are short) and seals up to that. A rolled-back id simply never appears: the chain is over the
//! rows that exist when they are sealed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{
    domain::audit_chain,
    store::{AnyStore, AuditSeal, SealHorizon, Store, StoreError},
};

/// How often the sealer runs.
pub const SEAL_INTERVAL: Duration = Duration::from_secs(2);
/// Rows sealed per transaction.
pub const CHUNK: u32 = 1_000;
/// Transactions per round at most (then the next round goes on).
pub const MAX_CHUNKS: usize = 50;

/// The sealer's state between rounds: the horizon it waits on.
#[derive(Debug, Default)]
pub struct Sealer {
    pending: Option<SealHorizon>,
}

impl Sealer {
    /// A sealer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// One round: seals what is final (see the module documentation); returns how many rows
    /// it sealed and the chain's head after it. Another replica sealing now: nothing.
    pub async fn round(
        &mut self,
        store: &AnyStore,
    ) -> Result<(u64, Option<AuditSeal>), StoreError> {
        let Some(guard) = store.try_exclusive("byocd.audit_seal").await? else {
            return Ok((0, None));
        };
        let result = self.round_held(store).await;
        guard.release().await;
        result
    }

    async fn round_held(
        &mut self,
        store: &AnyStore,
    ) -> Result<(u64, Option<AuditSeal>), StoreError> {
        let fresh = store.audit_seal_horizon().await?;
        let up_to = if store.audit_horizon_reached(&fresh).await? {
            self.pending = None;
            Some(fresh.up_to)
        } else {
            match self.pending.take() {
                Some(pending) if store.audit_horizon_reached(&pending).await? => {
                    self.pending = Some(fresh);
                    Some(pending.up_to)
                }
                // Still waiting on the older horizon: keep it (a newer one would only wait
                // longer under constant traffic).
                Some(pending) => {
                    self.pending = Some(pending);
                    None
                }
                None => {
                    self.pending = Some(fresh);
                    None
                }
            }
        };
        let Some(up_to) = up_to else {
            return Ok((0, store.audit_chain_head().await?));
        };
        let mut sealed = 0;
        let mut head = None;
        for _ in 0..MAX_CHUNKS {
            let (n, h) = store.seal_audit(up_to, CHUNK, &audit_chain::link).await?;
            sealed += n;
            head = h;
            if n < u64::from(CHUNK) {
                break;
            }
        }
        Ok((sealed, head))
    }
}

/// Seals every [`SEAL_INTERVAL`] until `cancel`.
pub async fn run(store: AnyStore, cancel: CancellationToken) {
    let mut sealer = Sealer::new();
    loop {
        match sealer.round(&store).await {
            Ok((n, Some(head))) if n > 0 => tracing::debug!(
                rows = n,
                head = %format_args!("{}@{}", head.hash, head.audit_id),
                "audit: rows sealed"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "audit: sealing failed; trying again later"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SEAL_INTERVAL) => {}
        }
    }
}
