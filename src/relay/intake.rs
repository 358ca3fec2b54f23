//! The inbound intake: a webhook's parsed events become state and outbox rows, committed with
//! whatever other webhooks are waiting ([`group_commit`](super::group_commit)); only after that
//! commit is the webhook answered, and the relay workers are woken.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::group_commit::{GroupCommit, IntakeWrites};
use crate::{
    clock::SharedClock,
    config::ChannelConfig,
    http::{Accepted, ChannelRuntime, InboundSink, SinkError, SinkFuture},
    providers::InboundEvent,
    store::{AnyStore, IntakeBatch},
};

/// The durable inbound sink.
#[derive(Debug, Clone)]
pub struct Intake {
    store: AnyStore,
    clock: SharedClock,
    wake: Arc<Notify>,
    group: Option<GroupCommit<IntakeWrites>>,
}

impl Intake {
    /// An intake writing to `store`, each webhook in its own transaction, waking `wake` after
    /// each commit.
    pub fn new(store: AnyStore, clock: SharedClock, wake: Arc<Notify>) -> Self {
        Self {
            store,
            clock,
            wake,
            group: None,
        }
    }

    /// Commits webhooks in groups of at most `max_group` ([`GroupCommit`]) with `writers`
    /// writers; a webhook that waits `wait` for room in the queue is refused as busy.
    pub fn with_group_commit(mut self, max_group: usize, writers: usize, wait: Duration) -> Self {
        let writes = IntakeWrites {
            store: self.store.clone(),
            wake: self.wake.clone(),
        };
        self.group = Some(GroupCommit::start(writes, max_group, writers, wait));
        self
    }

    /// Maps events to the work they call for, by the channel's settings
    /// ([`domain::inbound::plan`](crate::domain::inbound::plan)).
    pub fn plan(&self, channel: &ChannelConfig, events: Vec<InboundEvent>) -> IntakeBatch {
        crate::domain::inbound::plan(channel, events, self.clock.now())
    }
}

impl InboundSink for Intake {
    fn accept<'a>(
        &'a self,
        channel: &'a ChannelRuntime,
        events: Vec<InboundEvent>,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            let batch = self.plan(&channel.config, events);
            let report = match &self.group {
                Some(group) => group.commit(batch).await?,
                None => {
                    let report = crate::domain::inbound::accept(&self.store, &batch)
                        .await
                        .map_err(|e| SinkError(e.to_string()))?;
                    if report.outbox_rows > 0 {
                        self.wake.notify_one();
                    }
                    report
                }
            };
            Ok(Accepted {
                new: report.new,
                duplicates: report.duplicates,
            })
        })
    }
}
