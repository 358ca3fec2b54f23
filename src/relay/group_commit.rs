//! Group commit for the inbound intake.
//!
//! A webhook's events, once planned, wait here for a writer. A writer takes everything waiting —
//! up to `database.commit_batch_size` webhooks, without waiting for more when fewer are there —
//! and commits them in **one** transaction ([`Store::accept_inbound_group`]): one `BEGIN`, one
//! `COMMIT` and one fsync for the lot instead of one each. Then each webhook is answered with
//! its own report. Nothing is answered before its commit.
//!
//! - **One bad webhook fails only itself.** If the group's transaction fails, nothing of it was
//!   written; each webhook of the group is then committed on its own, and only the one that
//!   fails again is answered with the error (503: the provider retries).
//! - **Back-pressure.** The queue holds a few groups; a webhook that waits
//!   [`GroupCommit::wait`] for room is refused as busy (503) before anything is written, so a
//!   burst beyond what the database commits cannot grow without bound. The writers use at most
//!   `writers` database connections, so the relay always has the rest of the pool.
//! - **Writers.** SQLite has one writer connection: one writer task. PostgreSQL takes two, so
//!   one group's statements run while the previous group's commit waits for its fsync.

use std::{sync::Arc, time::Duration};

use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::{
    http::SinkError,
    store::{AnyStore, IntakeBatch, IntakeReport, Store, StoreError},
};

/// A planned webhook waiting for its commit, and where its answer goes.
struct Waiting {
    batch: IntakeBatch,
    reply: oneshot::Sender<Result<IntakeReport, StoreError>>,
}

/// The queue of webhooks waiting to be committed, and its writers.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Waiting>,
    wait: Duration,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("channel", &self.batch.channel)
            .field("events", &self.batch.events.len())
            .finish()
    }
}

impl GroupCommit {
    /// Starts `writers` writer tasks committing groups of at most `max_group` webhooks to
    /// `store`, waking `wake` after each commit that wrote outbox rows. A webhook waits at most
    /// `wait` for room in the queue. The writers stop when the last handle is dropped.
    pub fn start(
        store: AnyStore,
        max_group: usize,
        writers: usize,
        wait: Duration,
        wake: Arc<Notify>,
    ) -> Self {
        let max_group = max_group.max(1);
        let (queue, receiver) = mpsc::channel(max_group * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_groups(
                store.clone(),
                receiver.clone(),
                max_group,
                wake.clone(),
            ));
        }
        Self { queue, wait }
    }

    /// How long a webhook waits for room in the queue before it is refused as busy.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Commits `batch` with whatever else is waiting; returns once it is durable.
    pub async fn commit(&self, batch: IntakeBatch) -> Result<IntakeReport, SinkError> {
        let permit = match tokio::time::timeout(self.wait, self.queue.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(SinkError("the intake's writers have stopped".into())),
            Err(_) => {
                return Err(SinkError::busy(format_args!(
                    "the commit queue stayed full for {:?}",
                    self.wait
                )));
            }
        };
        let (reply, answer) = oneshot::channel();
        permit.send(Waiting { batch, reply });
        match answer.await {
            Ok(result) => result.map_err(|e| SinkError(e.to_string())),
            Err(_) => Err(SinkError(
                "the intake's writer stopped before committing".into(),
            )),
        }
    }
}

/// One writer: takes a group off the queue, commits it, answers each webhook; until the queue
/// closes.
async fn write_groups(
    store: AnyStore,
    receiver: Arc<Mutex<mpsc::Receiver<Waiting>>>,
    max_group: usize,
    wake: Arc<Notify>,
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
        commit_group(&store, group, &wake).await;
    }
}

/// Commits `group` in one transaction; if that fails, each webhook alone.
async fn commit_group(store: &AnyStore, group: Vec<Waiting>, wake: &Notify) {
    let (batches, replies): (Vec<IntakeBatch>, Vec<_>) =
        group.into_iter().map(|w| (w.batch, w.reply)).unzip();
    match store.accept_inbound_group(&batches).await {
        Ok(reports) => {
            if reports.iter().any(|r| r.outbox_rows > 0) {
                wake.notify_one();
            }
            for (reply, report) in replies.into_iter().zip(reports) {
                // The webhook's request may have gone (client hung up): it is committed anyway.
                let _ = reply.send(Ok(report));
            }
        }
        Err(e) if batches.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(
                webhooks = batches.len(),
                error = %e,
                "intake: a group commit failed; committing its webhooks one by one"
            );
            for (batch, reply) in batches.iter().zip(replies) {
                let result = store.accept_inbound(batch).await;
                if result.as_ref().is_ok_and(|r| r.outbox_rows > 0) {
                    wake.notify_one();
                }
                let _ = reply.send(result);
            }
        }
    }
}
