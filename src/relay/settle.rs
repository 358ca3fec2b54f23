//! Batched settling: delivered rows are marked done together.
//!
//! Deliveries finish one by one; each hands its row and what Salesforce (or the provider)
//! answered to [`Completions`], whose writer marks everything waiting done in one transaction
//! ([`Store::complete_outbox_group`]: the rows, their follow-up work and one audit row each),
//! then tells each delivery whether it still held its lease — and hands it its conversation's
//! next row when that was due, claimed in the same transaction. A delivery counts as settled only
//! after that commit, and its conversation's next row is claimed right after.

use std::time::Duration;

use super::group_commit::{GroupCommit, GroupWrites, WriteFuture};
use crate::store::{AnyStore, Completed, Completion, Store};

/// The relay's completions: delivered rows waiting to be marked done.
#[derive(Debug)]
pub struct Completions {
    store: AnyStore,
    owner: String,
    lease: Duration,
}

impl Completions {
    /// A writer marking rows done for lease `owner`, in groups of at most `max_group`; a next
    /// row claimed with a completion is leased for `lease`. A delivery waits at most `lease`
    /// for room in the queue (then its row is settled again after its lease, like any row
    /// whose worker could not settle it).
    pub fn start(
        store: AnyStore,
        owner: String,
        max_group: usize,
        lease: Duration,
    ) -> GroupCommit<Self> {
        GroupCommit::start(
            Self {
                store,
                owner,
                lease,
            },
            max_group,
            1,
            lease,
        )
    }
}

impl GroupWrites for Completions {
    type Item = Completion;
    type Output = Completed;

    fn write_group<'a>(&'a self, items: &'a [Completion]) -> WriteFuture<'a, Vec<Completed>> {
        Box::pin(
            self.store
                .complete_outbox_group(&self.owner, self.lease, items),
        )
    }

    fn write_one<'a>(&'a self, item: &'a Completion) -> WriteFuture<'a, Completed> {
        Box::pin(async move {
            let mut done = self
                .store
                .complete_outbox_group(&self.owner, self.lease, std::slice::from_ref(item))
                .await?;
            Ok(done.pop().expect("one completion, one answer"))
        })
    }
}
