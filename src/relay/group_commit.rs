//! Group commit: many small writes, one transaction.
//!
//! Callers hand a write to a [`GroupCommit`] and wait. A writer task takes everything waiting —
//! up to a group's size, without waiting for more when fewer are there — and writes it in
//! **one** transaction (one `BEGIN`, one `COMMIT`, one fsync for the lot instead of one each),
//! then answers each caller with its own result. Nothing is answered before its commit.
//!
//! - **One bad write fails only itself.** If a group's transaction fails, nothing of it was
//!   written; each write of the group is then made in a transaction of its own, and only the
//!   one that fails again gets the error.
//! - **Back-pressure.** The queue holds four groups; a caller that waits [`GroupCommit::commit`]'s
//!   bound for room is refused as busy before anything is written. The writers use at most
//!   `writers` database connections.
//!
//! Two kinds of write go through it: accepted webhooks ([`IntakeWrites`]: the intake answers a
//! webhook only once its group committed) and delivered outbox rows (the relay's
//! [`Completions`](super::settle::Completions)).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::store::{AnyStore, IntakeBatch, IntakeReport, StoreError};

/// A boxed, sendable future.
pub type WriteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// How one kind of write is made: a group in one transaction, or one alone.
pub trait GroupWrites: Send + Sync + 'static {
    /// One write.
    type Item: Send + Sync + 'static;
    /// What one write reports.
    type Output: Send + 'static;
    /// Writes `items` in one transaction, all or nothing; one output each, in order.
    fn write_group<'a>(&'a self, items: &'a [Self::Item]) -> WriteFuture<'a, Vec<Self::Output>>;
    /// Writes one item in a transaction of its own.
    fn write_one<'a>(&'a self, item: &'a Self::Item) -> WriteFuture<'a, Self::Output>;
    /// Called after a successful commit with what it wrote.
    fn committed(&self, _outputs: &[Self::Output]) {}
}

type Waiting<W> = (
    <W as GroupWrites>::Item,
    oneshot::Sender<Result<<W as GroupWrites>::Output, StoreError>>,
);

/// The queue of writes waiting to be committed, and its writers. Cheap to clone.
pub struct GroupCommit<W: GroupWrites> {
    queue: mpsc::Sender<Waiting<W>>,
    wait: Duration,
}

impl<W: GroupWrites> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            wait: self.wait,
        }
    }
}

impl<W: GroupWrites> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("capacity", &self.queue.max_capacity())
            .field("wait", &self.wait)
            .finish()
    }
}

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The queue stayed full for the whole wait: nothing was written.
    #[error("the commit queue stayed full for {0:?}")]
    Busy(Duration),
    /// The writers have stopped (shutting down): nothing was written.
    #[error("the writers have stopped")]
    Stopped,
    /// The database refused the write.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl<W: GroupWrites> GroupCommit<W> {
    /// Starts `writers` writer tasks making groups of at most `max_group` writes with `writes`.
    /// A caller waits at most `wait` for room in the queue. The writers stop when the last
    /// handle is dropped.
    pub fn start(writes: W, max_group: usize, writers: usize, wait: Duration) -> Self {
        let max_group = max_group.max(1);
        let (queue, receiver) = mpsc::channel(max_group * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        let writes = Arc::new(writes);
        for _ in 0..writers.max(1) {
            tokio::spawn(write_groups(writes.clone(), receiver.clone(), max_group));
        }
        Self { queue, wait }
    }

    /// Commits `item` with whatever else is waiting; returns once it is durable.
    pub async fn commit(&self, item: W::Item) -> Result<W::Output, CommitError> {
        let permit = match tokio::time::timeout(self.wait, self.queue.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(CommitError::Stopped),
            Err(_) => return Err(CommitError::Busy(self.wait)),
        };
        let (reply, answer) = oneshot::channel();
        permit.send((item, reply));
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CommitError::Stopped),
        }
    }
}

/// One writer: takes a group off the queue, commits it, answers each caller; until the queue
/// closes.
async fn write_groups<W: GroupWrites>(
    writes: Arc<W>,
    receiver: Arc<Mutex<mpsc::Receiver<Waiting<W>>>>,
    max_group: usize,
) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < max_group {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            group
        };
        commit_group(&*writes, group).await;
    }
}

/// Commits `group` in one transaction; if that fails, each write alone.
async fn commit_group<W: GroupWrites>(writes: &W, group: Vec<Waiting<W>>) {
    let (items, replies): (Vec<W::Item>, Vec<_>) = group.into_iter().unzip();
    match writes.write_group(&items).await {
        Ok(outputs) => {
            writes.committed(&outputs);
            // A caller may have gone (a webhook's client hung up): it is committed anyway.
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(output));
            }
        }
        Err(e) if items.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) if e.is_database_unavailable() => {
            // The database is gone (stopped, restarting, unreachable): each write alone would
            // wait out the same timeout in turn, keeping every caller (a provider waiting for
            // its answer) for as many timeouts. All are answered now; their providers retry.
            tracing::warn!(writes = items.len(), error = %e, "a group commit failed: the database is unavailable");
            for reply in replies {
                // An I/O error, as the database's own: still transient and unavailable.
                let copy = std::io::Error::other(format!("the database is unavailable: {e}"));
                let _ = reply.send(Err(StoreError::Database(sqlx::Error::Io(copy))));
            }
        }
        Err(e) => {
            tracing::warn!(
                writes = items.len(),
                error = %e,
                "a group commit failed; committing its writes one by one"
            );
            for (item, reply) in items.iter().zip(replies) {
                let result = writes.write_one(item).await;
                if let Ok(output) = &result {
                    writes.committed(std::slice::from_ref(output));
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// Accepted webhooks: [`accept_group`](crate::domain::inbound::accept_group), waking the relay after a commit that
/// wrote outbox rows.
#[derive(Debug)]
pub struct IntakeWrites {
    /// The store.
    pub store: AnyStore,
    /// Woken when work was written.
    pub wake: Arc<Notify>,
}

impl GroupWrites for IntakeWrites {
    type Item = IntakeBatch;
    type Output = IntakeReport;

    fn write_group<'a>(&'a self, items: &'a [IntakeBatch]) -> WriteFuture<'a, Vec<IntakeReport>> {
        Box::pin(crate::domain::inbound::accept_group(&self.store, items))
    }

    fn write_one<'a>(&'a self, item: &'a IntakeBatch) -> WriteFuture<'a, IntakeReport> {
        Box::pin(crate::domain::inbound::accept(&self.store, item))
    }

    fn committed(&self, outputs: &[IntakeReport]) {
        if outputs.iter().any(|r| r.outbox_rows > 0) {
            self.wake.notify_one();
        }
    }
}
