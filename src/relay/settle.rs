//! Batched settling: delivered rows are marked done together.
//!
//! Deliveries finish one by one; each hands its row and what Salesforce (or the provider)
//! answered to [`Completions`], whose writer marks everything waiting done in one transaction
//! ([`Store::complete_outbox_group`]: the rows, their follow-up work and one audit row each),
//! then tells each delivery whether it still held its lease. A delivery counts as settled only
//! after that commit, and its conversation's next row is claimed right after.

use std::time::Duration;

use super::group_commit::{GroupCommit, GroupWrites, WriteFuture};
use crate::store::{AnyStore, Delivered, OutboxItem, Store};

/// The relay's completions: delivered rows waiting to be marked done.
#[derive(Debug)]
pub struct Completions {
    store: AnyStore,
    owner: String,
}

impl Completions {
    /// A writer marking rows done for lease `owner`, in groups of at most `max_group`. A
    /// delivery waits at most `wait` for room in the queue (then its row is settled again
    /// after its lease, like any row whose worker could not settle it).
    pub fn start(
        store: AnyStore,
        owner: String,
        max_group: usize,
        wait: Duration,
    ) -> GroupCommit<Self> {
        GroupCommit::start(Self { store, owner }, max_group, 1, wait)
    }
}

impl GroupWrites for Completions {
    type Item = (OutboxItem, Delivered);
    type Output = bool;

    fn write_group<'a>(&'a self, items: &'a [Self::Item]) -> WriteFuture<'a, Vec<bool>> {
        Box::pin(self.store.complete_outbox_group(&self.owner, items))
    }

    fn write_one<'a>(&'a self, item: &'a Self::Item) -> WriteFuture<'a, bool> {
        Box::pin(self.store.complete_outbox(&item.0, &self.owner, &item.1))
    }
}
