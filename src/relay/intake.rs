//! The inbound intake: a webhook's parsed events become state and outbox rows, committed with
//! whatever other webhooks are waiting ([`group_commit`](super::group_commit)); only after that
//! commit is the webhook answered, and the relay workers are woken.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Notify;

use super::group_commit::{CommitError, GroupCommit, IntakeWrites};
use crate::{
    channels::ChannelRuntime,
    clock::SharedClock,
    config::ChannelConfig,
    providers::InboundEvent,
    store::{AnyStore, AuditEntry, IntakeBatch, Severity, Store},
};

/// What the sink did with a webhook's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Events committed now.
    pub new: usize,
    /// Events already committed before (provider retries).
    pub duplicates: usize,
}

/// Why the sink could not commit (the provider will retry).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink refused to wait longer for its turn to commit (back-pressure), saying why.
    #[error("busy: {0}")]
    Busy(String),
    /// The sink could not commit: a failing store, or an intake that has stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The database's disk is full: nothing was written.
    #[error("the database's disk is full: {0}")]
    DiskFull(String),
}

impl From<CommitError> for SinkError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Busy(_) => SinkError::Busy(e.to_string()),
            CommitError::Stopped => SinkError::Unavailable(format!("the intake's {e}")),
            CommitError::Store(e) if e.is_disk_full() => SinkError::DiskFull(e.to_string()),
            CommitError::Store(e) => SinkError::Unavailable(e.to_string()),
        }
    }
}

/// The future a sink returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<Accepted, SinkError>> + Send + 'a>>;

/// Where parsed webhook events go: the durable inbound intake ([`Intake`]; tests give their own).
pub trait InboundSink: Send + Sync + std::fmt::Debug {
    /// Commits `events` of `channel`; returns only once they are durable.
    fn accept<'a>(
        &'a self,
        channel: &'a ChannelRuntime,
        events: Vec<InboundEvent>,
    ) -> SinkFuture<'a>;
}

/// The durable inbound sink.
#[derive(Debug, Clone)]
pub struct Intake {
    clock: SharedClock,
    store: AnyStore,
    group: GroupCommit<IntakeWrites>,
    /// Events older than this are refused as stale (`retention.dedupe`); `None`: none is.
    replay_window: Option<Duration>,
    /// Since when the database's disk is full, and webhooks refused since; `None` while writes
    /// go through.
    disk_full: Arc<Mutex<Option<DiskFull>>>,
}

/// A spell of a full disk: webhooks answered 503 until a write goes through again.
#[derive(Debug, Clone)]
struct DiskFull {
    since: chrono::DateTime<chrono::Utc>,
    refused: u64,
}

impl Intake {
    /// An intake writing to `store` in groups of at most `max_group` webhooks
    /// ([`GroupCommit`]) with `writers` writers, waking `wake` after each commit that wrote
    /// work; a webhook that waits `wait` for room in the queue is refused as busy.
    pub fn new(
        store: AnyStore,
        clock: SharedClock,
        wake: Arc<Notify>,
        max_group: usize,
        writers: usize,
        wait: Duration,
    ) -> Self {
        let writes = IntakeWrites {
            store: store.clone(),
            wake,
        };
        Self {
            clock,
            store,
            group: GroupCommit::start(writes, max_group, writers, wait),
            replay_window: None,
            disk_full: Arc::default(),
        }
    }

    /// Refuses events whose own timestamp is older than `window` (the dedupe retention:
    /// [`domain::privacy::replay_horizon`](crate::domain::privacy::replay_horizon)).
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = Some(window);
        self
    }

    /// Maps events to the work they call for, by the channel's settings
    /// ([`domain::inbound::plan`](crate::domain::inbound::plan)).
    pub fn plan(&self, channel: &ChannelConfig, events: Vec<InboundEvent>) -> IntakeBatch {
        let now = self.clock.now();
        let mut batch = crate::domain::inbound::plan(channel, events, now);
        batch.stale_before = self
            .replay_window
            .map(|w| crate::domain::privacy::replay_horizon(now, w));
        batch
    }
}

impl Intake {
    /// A webhook was refused for a full disk: the first of a spell is logged as an error that
    /// says what to do; the others are counted.
    fn disk_is_full(&self, error: &SinkError) {
        let mut spell = self.disk_full.lock().expect("disk-full lock poisoned");
        match spell.as_mut() {
            Some(spell) => spell.refused += 1,
            None => {
                tracing::error!(error = %error, "the database's disk is full: webhooks are answered 503 and nothing is written until space is freed (providers retry them; work resumes by itself)");
                *spell = Some(DiskFull {
                    since: self.clock.now(),
                    refused: 1,
                });
            }
        }
    }

    /// A commit went through: if the disk was full until now, the spell is over — logged, and
    /// written to the audit trail as an alert now that it can be written.
    async fn disk_has_room(&self) {
        let Some(spell) = self
            .disk_full
            .lock()
            .expect("disk-full lock poisoned")
            .take()
        else {
            return;
        };
        let now = self.clock.now();
        let message = format!(
            "the database's disk was full from {} to {}: {} webhook(s) were answered 503 and \
             nothing of them was written (providers retry them)",
            spell.since.to_rfc3339(),
            now.to_rfc3339(),
            spell.refused
        );
        tracing::warn!("{message}");
        let entry = AuditEntry::new("database.disk_full", message)
            .severity(Severity::Alert)
            .detail(serde_json::json!({
                "since": spell.since.to_rfc3339(),
                "until": now.to_rfc3339(),
                "webhooks_refused": spell.refused,
            }));
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not audit the end of a full disk");
        }
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
            let report = match self.group.commit(batch).await.map_err(SinkError::from) {
                Ok(report) => report,
                Err(e @ SinkError::DiskFull(_)) => {
                    self.disk_is_full(&e);
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            self.disk_has_room().await;
            Ok(Accepted {
                new: report.new,
                duplicates: report.duplicates,
            })
        })
    }
}
