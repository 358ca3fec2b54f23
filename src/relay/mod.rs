//! The outbox relay: workers that deliver committed work to Salesforce (and, later, to the
//! providers), at least once and in order per conversation.
//!
//! - **Claim.** A worker claims due rows with a lease ([`Store::claim_outbox`]: SQLite in one
//!   `BEGIN IMMEDIATE` transaction, PostgreSQL with `FOR UPDATE SKIP LOCKED`). A row is never
//!   claimed while an earlier row of its conversation is unfinished, so a conversation's rows
//!   go out one at a time, in order, even across replicas.
//! - **Deliver** outside any transaction; ids inside the request (entry and message ids) were
//!   fixed when the row was written, so a retry sends the same entry again.
//! - **Settle** in one transaction with its audit row: done (and what Salesforce answered), a
//!   retry at the next step of `relay.retry_schedule` (±20 % jitter, a longer `Retry-After`
//!   wins), or a dead letter with an alert. A worker that dies holding a lease leaves the row to
//!   be claimed again when the lease expires: that is the one place a duplicate can arise.
//! - **Concurrency** is bounded by `relay.concurrency`; new work wakes the dispatcher at once,
//!   otherwise it polls every `relay.poll_interval`. On shutdown it stops claiming and lets
//!   deliveries in flight finish up to a deadline; unfinished rows go back after their lease.

pub mod deliver;
mod failure;
pub mod intake;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::failure::{Action, classify, retry_delay};
use crate::{
    clock::SharedClock,
    config::RelaySettings,
    http::ChannelMap,
    salesforce::isa::IsaClient,
    store::{AnyStore, Delivered, OutboxItem, Store},
};

/// What processing one row ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Delivered.
    Done,
    /// Scheduled again.
    Retry,
    /// Dead-lettered.
    Dead,
    /// The lease was lost to another worker before settling.
    LeaseLost,
}

/// The outbox relay.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    isa: Option<IsaClient>,
    channels: Arc<RwLock<Arc<ChannelMap>>>,
    settings: RelaySettings,
    clock: SharedClock,
    wake: Arc<Notify>,
    owner: String,
    media: reqwest::Client,
    file_host: Option<Arc<dyn FileHost>>,
}

/// The future a [`FileHost`] returns.
pub type HostFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>;

/// Serves rep files on public, expiring URLs for providers that host nothing (Kaleyra).
pub trait FileHost: Send + Sync + std::fmt::Debug {
    /// Keeps `bytes` and returns a public HTTPS URL for them.
    fn host<'a>(
        &'a self,
        channel: &'a str,
        bytes: bytes::Bytes,
        mime_type: &'a str,
        file_name: &'a str,
    ) -> HostFuture<'a>;
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay delivering `store`'s outbox. `isa` is `None` when no org is configured (then
    /// Salesforce work stays queued).
    pub fn new(
        store: AnyStore,
        isa: Option<IsaClient>,
        channels: Arc<RwLock<Arc<ChannelMap>>>,
        settings: RelaySettings,
        clock: SharedClock,
        wake: Arc<Notify>,
        file_host: Option<Arc<dyn FileHost>>,
    ) -> Self {
        let owner = format!(
            "{}:{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "byocd".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let media = reqwest::Client::builder()
            .timeout(deliver::MEDIA_DOWNLOAD_TIMEOUT)
            .user_agent(concat!("byocd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with these settings always builds");
        Self {
            inner: Arc::new(Inner {
                store,
                isa,
                channels,
                settings,
                clock,
                wake,
                owner,
                media,
                file_host,
            }),
        }
    }

    /// This relay's lease owner name.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Claims one batch and processes it to the end, one row after another; returns what each
    /// row ended in. For tests and tools: the daemon runs [`Relay::run`].
    pub async fn step(&self) -> Vec<(i64, Settled)> {
        let items = match self
            .inner
            .store
            .claim_outbox(
                &self.inner.owner,
                self.inner.settings.batch_size,
                self.inner.settings.lease,
            )
            .await
        {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "relay: claiming work failed");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let id = item.id;
            out.push((id, self.process(item).await));
        }
        out
    }

    /// Runs until `cancel`, then lets deliveries in flight finish for up to `grace`.
    pub async fn run(self, cancel: CancellationToken, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.inner.settings.concurrency as usize));
        let tracker = TaskTracker::new();
        tracing::info!(owner = %self.inner.owner, concurrency = self.inner.settings.concurrency, "relay: started");
        while !cancel.is_cancelled() {
            let free = permits
                .available_permits()
                .min(self.inner.settings.batch_size as usize);
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self
                    .inner
                    .store
                    .claim_outbox(&self.inner.owner, free as u32, self.inner.settings.lease)
                    .await
                {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::error!(error = %e, "relay: claiming work failed; backing off");
                        Vec::new()
                    }
                }
            };
            let busy = !claimed.is_empty();
            for item in claimed {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let relay = self.clone();
                tracker.spawn(async move {
                    relay.process(item).await;
                    drop(permit);
                });
            }
            if busy {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.settings.poll_interval) => {}
                // A finished delivery frees a permit and may unblock its conversation.
                _ = permits.acquire() , if permits.available_permits() == 0 => {}
            }
        }
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                "relay: deliveries still in flight after the shutdown grace period; their rows return to the queue when the lease expires"
            );
        }
        tracing::info!("relay: stopped");
    }

    /// Delivers one claimed row and settles it.
    pub async fn process(&self, item: OutboxItem) -> Settled {
        let span = tracing::info_span!("deliver", outbox_id = item.id, kind = %item.kind, channel = %item.channel, conversation_id = ?item.conversation_id);
        let _guard = span.enter();
        let outcome = deliver::deliver(self, &item).await;
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        let settled = match outcome {
            Ok(delivered) => store
                .complete_outbox(&item, owner, &delivered)
                .await
                .map(|ok| {
                    if ok {
                        Settled::Done
                    } else {
                        Settled::LeaseLost
                    }
                }),
            Err(failure) => match failure.action(&item, &self.inner.settings.retry_schedule) {
                Action::Retry { after } => {
                    let at = self.now() + chrono::Duration::from_std(after).unwrap_or_default();
                    tracing::warn!(error = %failure.error, attempt = item.attempts, retry_in = ?after, "delivery failed; will retry");
                    store
                        .retry_outbox(&item, owner, at, &failure.error, failure.code.as_deref())
                        .await
                        .map(|ok| {
                            if ok {
                                Settled::Retry
                            } else {
                                Settled::LeaseLost
                            }
                        })
                }
                Action::DeadLetter => {
                    tracing::error!(error = %failure.error, attempt = item.attempts, "delivery failed for good; dead-lettered");
                    store
                        .dead_letter_outbox(&item, owner, &failure.error, failure.code.as_deref())
                        .await
                        .map(|ok| {
                            if ok {
                                Settled::Dead
                            } else {
                                Settled::LeaseLost
                            }
                        })
                }
            },
        };
        match settled {
            Ok(Settled::LeaseLost) => {
                tracing::warn!("relay: lease lost before settling; another worker owns the row");
                Settled::LeaseLost
            }
            Ok(s) => s,
            Err(e) => {
                // The row stays leased and returns after its lease: delivered again, at least once.
                tracing::error!(error = %e, "relay: could not settle a delivery; it will be retried after its lease");
                Settled::LeaseLost
            }
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

/// A delivery that did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What happened, for the audit trail and the row's `last_error`.
    pub error: String,
    /// The error code (Salesforce or provider), if any.
    pub code: Option<String>,
    /// What to do about it.
    pub class: crate::salesforce::codes::ErrorClass,
    /// How long the service asked us to wait.
    pub retry_after: Option<Duration>,
}

impl Failure {
    fn action(&self, item: &OutboxItem, schedule: &[Duration]) -> Action {
        classify(self.class, item.attempts, schedule, self.retry_after)
    }
}

/// The result of delivering one row.
pub type Outcome = Result<Delivered, Failure>;
