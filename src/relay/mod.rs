//! The outbox relay: workers that deliver committed work to Salesforce and to the providers, at
//! least once and in order per conversation. The inbound intake that commits webhooks' work
//! ([`intake`]) lives here too.
//!
//! - **Claim.** A worker claims due rows with a lease ([`Store::claim_outbox`]: SQLite in one
//!   `BEGIN IMMEDIATE` transaction, PostgreSQL with `FOR UPDATE SKIP LOCKED`). A row is never
//!   claimed while an earlier row of its conversation is unfinished, so a conversation's rows
//!   go out one at a time, in order, even across replicas.
//! - **Read** the row once into a [`Job`]; a row that is not one (unknown kind, a payload of
//!   the wrong shape) is dead-lettered with an alert at once, never retried.
//! - **Deliver** outside any transaction; ids inside the request (entry and message ids) were
//!   fixed when the row was written, so a retry sends the same entry again.
//! - **Settle** with its audit row: done (and what Salesforce answered) — rows delivered at
//!   about the same time are marked done together in one transaction ([`settle`]) — or
//!   what the remediation table says of the failure ([`Failure::decide`]) — a retry at the next step of
//!   `relay.retry_schedule` (±20 % jitter, a longer `Retry-After` wins), a reconcile, a pause of
//!   the channel or a disabled org (the row held by the [`gate`], no attempt spent), or a dead
//!   letter with an alert. A worker that dies holding a lease leaves the row to
//!   be claimed again when the lease expires: that is the one place a duplicate can arise.
//! - **Concurrency** is bounded by `relay.concurrency`; new work and every settled row wake the
//!   dispatcher at once (a settled row may unblock its conversation's next one), otherwise it
//!   polls every `relay.poll_interval`. On shutdown it stops claiming and lets
//!   deliveries in flight finish up to a deadline; unfinished rows go back after their lease.

pub mod deliver;
pub mod gate;
pub mod group_commit;
pub mod intake;
pub mod media;
pub mod settle;

use std::{
    collections::VecDeque,
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use self::gate::{Admit, Gate, HoldScope};
use crate::{
    channels::ChannelMap,
    clock::SharedClock,
    config::RelaySettings,
    lifecycle::failure::{Decision, Failure},
    salesforce::{codes::ErrorClass, isa::IsaClient},
    store::{
        AnyStore, AuditEntry, Completed, Completion, Delivered, OutboxItem, Severity, Store,
        job::Job,
    },
};

/// How many times a settle that failed for a transient reason is tried again.
const SETTLE_RETRIES: u32 = 6;
/// The pause before the first of those retries; it doubles up to [`SETTLE_RETRY_MAX_PAUSE`]. With
/// the default `database.acquire_timeout` (5 s) all of them fit well inside the default lease.
const SETTLE_RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between settle retries.
const SETTLE_RETRY_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Most rows of one conversation delivered one after another by one worker before it lets the
/// next claim share the work out again.
pub const MAX_CHAIN: usize = 64;

/// Most rows of one conversation claimed together with a completion, and delivered one after
/// another while the earlier ones' completions commit ([`Relay::process_chain`]).
pub const RUN: usize = 16;

/// How a delivered row is settled.
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// Wait for its completion to commit, claiming with it up to this many of its
    /// conversation's next rows.
    Wait { claim_next: u32 },
    /// Hand its completion to the group commit and go on: the run's next row is delivered
    /// while it commits.
    Pipeline,
}

/// What processing one row gave.
#[derive(Debug)]
enum Step {
    /// Settled.
    Settled(Settled),
    /// Delivered; its completion is committing.
    Committing(tokio::task::JoinHandle<Settled>),
}

/// Waits for every completion still committing and writes what each row ended in at its place
/// in `out`.
async fn join_completions(
    committing: &mut Vec<(usize, tokio::task::JoinHandle<Settled>)>,
    out: &mut [(i64, Settled)],
    metrics: &crate::metrics::Metrics,
) {
    for (at, handle) in committing.drain(..) {
        out[at].1 = handle.await.unwrap_or_else(|e| {
            // The task cannot panic short of a bug; its row stays leased and goes out again.
            tracing::error!(error = %e, "relay: a completion task failed; its row returns after its lease");
            metrics.inc("byocd_relay_settle_failures_total", &[]);
            Settled::Unsettled
        });
    }
}

/// What processing one row ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Delivered.
    Done,
    /// Scheduled again.
    Retry,
    /// Dead-lettered.
    Dead,
    /// Held back, without spending an attempt: its channel is paused or its org disabled.
    Held,
    /// Not sent again: Salesforce no longer has what it names (reconciled).
    Reconciled,
    /// The lease was lost to another worker before settling.
    LeaseLost,
    /// Delivered or failed, but what happened could not be recorded: the database refused the
    /// settlement (logged, counted in `byocd_relay_settle_failures_total`). The row stays
    /// leased and goes out again after its lease.
    Unsettled,
}

/// The outbox relay.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    isa: RwLock<Option<IsaClient>>,
    channels: Arc<RwLock<Arc<ChannelMap>>>,
    settings: RelaySettings,
    clock: SharedClock,
    wake: Arc<Notify>,
    owner: String,
    media: reqwest::Client,
    /// End users' files, under the rules of [`media`].
    inbound_media: reqwest::Client,
    file_host: Option<Arc<dyn FileHost>>,
    gate: Gate,
    metrics: RwLock<Arc<crate::metrics::Metrics>>,
    completions: group_commit::GroupCommit<settle::Completions>,
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
        let inbound_media = media::client(
            deliver::MEDIA_DOWNLOAD_TIMEOUT,
            settings.allow_private_media_urls,
        );
        let completions = settle::Completions::start(
            store.clone(),
            owner.clone(),
            settings.concurrency.max(1) as usize,
            settings.lease,
        );
        Self {
            inner: Arc::new(Inner {
                completions,
                store,
                isa: RwLock::new(isa),
                channels,
                settings,
                clock,
                wake,
                owner,
                media,
                inbound_media,
                file_host,
                gate: Gate::default(),
                metrics: RwLock::new(crate::metrics::Metrics::new()),
            }),
        }
    }

    /// The Interaction Service client in force (`None`: no org configured).
    pub fn isa(&self) -> Option<IsaClient> {
        self.inner.isa.read().expect("relay isa lock").clone()
    }

    /// Replaces the Interaction Service client (reload with changed orgs). Deliveries in flight
    /// finish with the client they started with.
    pub fn set_isa(&self, isa: Option<IsaClient>) {
        *self.inner.isa.write().expect("relay isa lock") = isa;
    }

    /// Shares `metrics` instead of the relay's own counters, in this relay and every clone of
    /// it, made before or after.
    pub fn with_metrics(self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        *self.inner.metrics.write().expect("relay metrics lock") = metrics;
        self
    }

    /// The gate: paused channels and disabled orgs.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The relay's counters (remediation actions, alerts), for `/metrics`.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.inner
            .metrics
            .read()
            .expect("relay metrics lock")
            .clone()
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
            out.extend(self.process_chain(item).await);
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
                    relay.process_chain(item).await;
                    drop(permit);
                    // The settled row may have been the one holding its conversation's next row
                    // back: claim again now rather than at the next poll.
                    relay.inner.wake.notify_one();
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

    /// Delivers `item` and then, while rows settle done and their conversation's next rows are
    /// due, those rows — claimed in the same transaction as a completion, so a busy conversation
    /// does not wait for the next claim — up to about [`MAX_CHAIN`] rows in all. The rows come
    /// in runs of up to [`RUN`]: each row of a run is delivered as soon as the previous one was
    /// answered, while the previous one's completion commits (they share the completions' group
    /// commit), and the last row of a run waits for every earlier completion before its own
    /// claims the next run. A run stops at its first row that does not end delivered (a
    /// failure, a hold, a lost lease) or once half the lease has passed since it was claimed;
    /// its rows not yet tried go back to the queue untouched ([`Store::release_outbox`]).
    /// Returns what each row ended in.
    pub async fn process_chain(&self, item: OutboxItem) -> Vec<(i64, Settled)> {
        let half_lease = self.inner.settings.lease / 2;
        let mut out: Vec<(i64, Settled)> = Vec::new();
        let mut committing: Vec<(usize, tokio::task::JoinHandle<Settled>)> = Vec::new();
        let mut run: VecDeque<OutboxItem> = VecDeque::from([item]);
        let mut run_deadline = crate::clock::later(self.now(), half_lease);
        while let Some(current) = run.pop_front() {
            let id = current.id;
            let finish = if run.is_empty() {
                // The conversation's next rows are claimed once every earlier row is done.
                join_completions(&mut committing, &mut out, &self.metrics()).await;
                let budget = MAX_CHAIN.saturating_sub(out.len() + 1).min(RUN);
                Finish::Wait {
                    claim_next: u32::try_from(budget).unwrap_or(0),
                }
            } else {
                Finish::Pipeline
            };
            let mut next = Vec::new();
            match self.process_one(current, finish, &mut next).await {
                Step::Committing(handle) => {
                    out.push((id, Settled::Done));
                    committing.push((out.len() - 1, handle));
                }
                Step::Settled(settled) => {
                    out.push((id, settled));
                    // Only the last row of a run is settled here when delivered; any other
                    // settled row ends the run.
                    if !run.is_empty() {
                        self.release(run.drain(..).collect()).await;
                    }
                }
            }
            if !next.is_empty() {
                run.extend(next);
                run_deadline = crate::clock::later(self.now(), half_lease);
            }
            if !run.is_empty() && self.now() > run_deadline {
                tracing::debug!(
                    rows = run.len(),
                    "relay: a run's rows waited half their lease; they go back to the queue"
                );
                self.release(run.drain(..).collect()).await;
            }
        }
        join_completions(&mut committing, &mut out, &self.metrics()).await;
        out
    }

    /// Gives rows of a run that were never tried back to the queue. If that fails they stay
    /// leased and return when their lease expires, like any row whose worker stopped.
    async fn release(&self, rows: Vec<OutboxItem>) {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let released = self
            .settling(|| self.inner.store.release_outbox(&self.inner.owner, &ids))
            .await;
        match released {
            Ok(_) => self.inner.wake.notify_one(),
            Err(e) => {
                tracing::error!(error = %e, rows = ids.len(), "relay: could not put a run's untried rows back; they return after their lease");
            }
        }
    }

    /// Delivers one claimed row and settles it: the gate first (a paused channel or a disabled
    /// org holds the row back), then the delivery, then what the remediation table says of its
    /// failure. A row delivered is settled as `finish` says; with [`Finish::Wait`] its
    /// conversation's next due rows, already claimed, are put in `next`.
    async fn process_one(
        &self,
        item: OutboxItem,
        finish: Finish,
        next: &mut Vec<OutboxItem>,
    ) -> Step {
        let span = tracing::info_span!("deliver", outbox_id = item.id, kind = %item.kind, channel = %item.channel, conversation_id = ?item.conversation_id);
        // `instrument`, not `span.enter()`: an entered guard held across awaits leaks the span
        // into whatever else runs on the thread meanwhile.
        self.process_in_span(item, finish, next)
            .instrument(span)
            .await
    }

    async fn process_in_span(
        &self,
        item: OutboxItem,
        finish: Finish,
        next: &mut Vec<OutboxItem>,
    ) -> Step {
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        // A row is read once; one that is not a job can never be delivered: dead-lettered with
        // an alert at once, whatever its channel's state, never retried.
        let job = match Job::parse(&item.kind, &item.payload) {
            Ok(job) => job,
            Err(e) => {
                let failure = Failure::new(e.to_string(), ErrorClass::BadInput);
                self.count_delivery(&item, &Err(failure.clone()), 0.0);
                let settled = self.settle_failure(&item, failure, false).await;
                return Step::Settled(self.settled(item.attempts, settled));
            }
        };
        let admit = self
            .inner
            .gate
            .admit(&item.channel, &item.org_id, self.now());
        let settled = match admit {
            Admit::Hold {
                until,
                reason,
                scope,
            } => {
                self.hold_all(&item, scope, until, &reason).await;
                self.settling(|| store.defer_outbox(&item, owner, until, &reason))
                    .await
                    .map(|ok| lease(ok, Settled::Held))
            }
            Admit::Go | Admit::Probe => {
                let probe = admit == Admit::Probe;
                let called = std::time::Instant::now();
                let outcome = deliver::deliver(self, &item, &job).await;
                self.count_delivery(&item, &outcome, called.elapsed().as_secs_f64());
                match outcome {
                    Ok(delivered) => {
                        return self.finish_done(item, delivered, probe, finish, next).await;
                    }
                    Err(failure) => self.settle_failure(&item, failure, probe).await,
                }
            }
        };
        Step::Settled(self.settled(item.attempts, settled))
    }

    /// The first hold of a paused channel (or disabled org) until a time holds all its pending
    /// rows due before then in one statement (`Store::defer_pending`): the relay then claims
    /// only the next probe, not the whole backlog again at every probe. Only logged if it
    /// fails: each row is still held as it is claimed.
    async fn hold_all(
        &self,
        item: &OutboxItem,
        scope: HoldScope,
        until: DateTime<Utc>,
        reason: &str,
    ) {
        let key = match scope {
            HoldScope::Channel => &item.channel,
            HoldScope::Org => &item.org_id,
        };
        if !self.inner.gate.hold_all_first(scope, key, until) {
            return;
        }
        match self
            .inner
            .store
            .defer_pending(scope, key, until, reason)
            .await
        {
            Ok(held) => {
                tracing::debug!(held, until = %until.to_rfc3339(), "relay: held the rest of the backlog")
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay: could not hold the rest of the backlog; rows are held one by one")
            }
        }
    }

    /// Settles a delivered row as `finish` says: its completion waited for, or handed to the
    /// group commit to finish while the run goes on. Either way it is settled with whatever
    /// else finished meanwhile, in one transaction.
    async fn finish_done(
        &self,
        item: OutboxItem,
        delivered: Delivered,
        probe: bool,
        finish: Finish,
        next: &mut Vec<OutboxItem>,
    ) -> Step {
        if probe {
            self.resume(&item).await;
        }
        let attempts = item.attempts;
        match finish {
            Finish::Pipeline => {
                let relay = self.clone();
                let completion = Completion {
                    item,
                    delivered,
                    claim_next: 0,
                };
                let task = async move {
                    let completed = relay.complete(completion).await;
                    relay.settled(attempts, completed.map(|c| lease(c.settled, Settled::Done)))
                };
                Step::Committing(tokio::spawn(task.instrument(tracing::Span::current())))
            }
            Finish::Wait { claim_next } => {
                let completion = Completion {
                    item,
                    delivered,
                    claim_next,
                };
                let completed = self.complete(completion).await.map(|c| {
                    *next = c.next;
                    lease(c.settled, Settled::Done)
                });
                Step::Settled(self.settled(attempts, completed))
            }
        }
    }

    /// Commits a delivered row's completion through the group commit; a transient database
    /// failure is retried (see `settling`).
    async fn complete(&self, completion: Completion) -> crate::store::Result<Completed> {
        self.settling(|| {
            let completion = completion.clone();
            async move {
                match self.inner.completions.commit(completion).await {
                    Ok(completed) => Ok(completed),
                    Err(group_commit::CommitError::Store(e)) => Err(e),
                    Err(e) => Err(crate::store::StoreError::Io(format!("settling: {e}"))),
                }
            }
        })
        .await
    }

    /// Counts a delivery attempt whose call took `call_seconds`; a delivered one also by its
    /// latency since the work was accepted (the row's creation).
    fn count_delivery(&self, item: &OutboxItem, outcome: &Outcome, call_seconds: f64) {
        let metrics = self.metrics();
        match outcome {
            Ok(_) => {
                let latency =
                    (self.now() - item.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics.delivery(&item.kind, call_seconds, Ok(latency));
            }
            Err(failure) => {
                metrics.delivery(&item.kind, call_seconds, Err(&failure.trigger_label()));
            }
        }
    }

    /// Logs how settling a row of `attempts` attempts went.
    fn settled(&self, attempts: i32, settled: crate::store::Result<Settled>) -> Settled {
        match settled {
            Ok(Settled::LeaseLost) => {
                tracing::warn!("relay: lease lost before settling; another worker owns the row");
                Settled::LeaseLost
            }
            Ok(s) => {
                tracing::debug!(attempt = attempts + 1, settled = ?s, "delivery settled");
                s
            }
            Err(e) => {
                // The row stays leased and returns after its lease: delivered again, at least once.
                tracing::error!(error = %e, "relay: could not settle a delivery; it will be retried after its lease");
                self.metrics().inc("byocd_relay_settle_failures_total", &[]);
                Settled::Unsettled
            }
        }
    }

    /// Settles a row whose delivery failed, as the remediation table says.
    async fn settle_failure(
        &self,
        item: &OutboxItem,
        failure: Failure,
        probe: bool,
    ) -> crate::store::Result<Settled> {
        // Whatever the other side echoed of the person (a number, the message text) stays out
        // of `last_error`, the logs and the audit trail.
        let mut failure = failure;
        failure.error = crate::domain::privacy::scrub_error(&failure.error, &item.payload);
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        let schedule = &self.inner.settings.retry_schedule;
        // One decision over the remediation table; every job's failure is settled by it.
        let decision = failure.decide(item.attempts, schedule, self.inner.settings.max_retry_after);
        let remedy = decision.action();
        let code = failure.trigger_label();
        self.metrics().inc(
            "byocd_remediation_actions_total",
            &[("action", remedy.as_str()), ("code", &code)],
        );
        match decision {
            Decision::Pause(_) => {
                // A refused token reaches the relay only after the client re-minted once and the
                // new token was refused too: the table's "then pause".
                let now = self.now();
                let (pause, new) = self.inner.gate.pause(&item.channel, &code, now, schedule);
                self.record_pause(
                    &item.channel,
                    Some(pause.next_probe),
                    Some(&format!("{code}: {}", failure.error)),
                )
                .await;
                if new {
                    tracing::error!(code = %code, action = %remedy, error = %failure.error, next_probe = %pause.next_probe.to_rfc3339(), "channel paused: nothing is sent on it until a probe succeeds or the configuration is reloaded");
                    self.alert(
                        AuditEntry::new(
                            "channel.paused",
                            format!(
                                "channel {} paused after {code}: {}; its work stays queued",
                                item.channel, failure.error
                            ),
                        )
                        .channel(&item.channel)
                        .org(&item.org_id),
                        &failure,
                        remedy,
                        json!({ "next_probe_at": pause.next_probe.to_rfc3339() }),
                    )
                    .await;
                } else {
                    tracing::warn!(code = %code, next_probe = %pause.next_probe.to_rfc3339(), "probe failed; the channel stays paused");
                }
                self.settling(|| store.defer_outbox(item, owner, pause.next_probe, &failure.error))
                    .await
                    .map(|ok| lease(ok, Settled::Held))
            }
            Decision::DisableOrg => {
                let now = self.now();
                if self.inner.gate.disable(&item.org_id, &code, now) {
                    if let Err(e) = store
                        .set_org_disabled(&item.org_id, Some(&format!("{code}: {}", failure.error)))
                        .await
                    {
                        tracing::warn!(org_id = %item.org_id, error = %e, "could not record the org's disablement for admin commands");
                    }
                    tracing::error!(org_id = %item.org_id, code = %code, error = %failure.error, "org disabled: nothing is sent on any of its channels until the configuration is reloaded");
                    self.alert(
                        AuditEntry::new(
                            "org.disabled",
                            format!(
                                "org {} disabled after {code}: {}; its work stays queued until reload",
                                item.org_id, failure.error
                            ),
                        )
                        .channel(&item.channel)
                        .org(&item.org_id),
                        &failure,
                        remedy,
                        json!({}),
                    )
                    .await;
                }
                let until = crate::clock::later(now, gate::DISABLED_RECHECK);
                self.settling(|| store.defer_outbox(item, owner, until, &failure.error))
                    .await
                    .map(|ok| lease(ok, Settled::Held))
            }
            Decision::Reconcile => {
                if let Some(session) = item.session_id {
                    store.reconcile_session(session, &code).await?;
                }
                tracing::info!(code = %code, "reconciled: Salesforce no longer has what the work names; not sent again");
                let delivered = Delivered {
                    detail: json!({ "reconciled": code, "error": failure.error }),
                    ..Delivered::default()
                };
                self.settling(|| store.complete_outbox(item, owner, &delivered))
                    .await
                    .map(|ok| lease(ok, Settled::Reconciled))
            }
            Decision::Retry { .. } | Decision::DeadLetter => {
                if probe {
                    self.inner
                        .gate
                        .probe_inconclusive(&item.channel, self.now(), schedule);
                    let next_probe = self
                        .inner
                        .gate
                        .paused()
                        .get(&item.channel)
                        .map(|p| p.next_probe);
                    if let Some(next_probe) = next_probe {
                        self.record_pause(&item.channel, Some(next_probe), None)
                            .await;
                    }
                }
                match decision {
                    Decision::Retry { after } => {
                        let at = crate::clock::later(self.now(), after);
                        tracing::warn!(error = %failure.error, attempt = item.attempts, retry_in = ?after, "delivery failed; will retry");
                        self.settling(|| {
                            store.retry_outbox(
                                item,
                                owner,
                                at,
                                &failure.error,
                                failure.code.as_deref(),
                            )
                        })
                        .await
                        .map(|ok| lease(ok, Settled::Retry))
                    }
                    _ => {
                        tracing::error!(error = %failure.error, code = %code, attempt = item.attempts, "delivery failed for good; dead-lettered");
                        self.metrics()
                            .inc("byocd_alerts_total", &[("kind", "outbox.dead_lettered")]);
                        self.settling(|| {
                            store.dead_letter_outbox(
                                item,
                                owner,
                                &failure.error,
                                failure.code.as_deref(),
                            )
                        })
                        .await
                        .map(|ok| lease(ok, Settled::Dead))
                    }
                }
            }
        }
    }

    /// Runs one settling transaction (`attempt`), again after a transient database failure
    /// ([`AnyStore::is_transient`]: a pool timeout, a broken connection, a deadlock or
    /// serialization abort on PostgreSQL), up to [`SETTLE_RETRIES`] times with a growing pause.
    /// Giving up leaves the row leased, and a delivery that reached Salesforce but was not
    /// recorded goes out a second time once its lease expires; so a momentary shortage of
    /// connections must not end the settle. Running it again is safe: the transaction is all or
    /// nothing and only changes a row still leased to this worker, so if an attempt committed
    /// without this worker hearing of it, the next finds the row settled and reports the lease
    /// lost.
    async fn settling<T, F, Fut>(&self, mut attempt: F) -> crate::store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = crate::store::Result<T>>,
    {
        let mut pause = SETTLE_RETRY_FIRST_PAUSE;
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(e) if retries < SETTLE_RETRIES && self.inner.store.is_transient(&e) => {
                    retries += 1;
                    tracing::warn!(error = %e, retry = retries, retry_in = ?pause, "relay: settling a delivery failed for a transient reason; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(SETTLE_RETRY_MAX_PAUSE);
                }
                result => return result,
            }
        }
    }

    async fn resume(&self, item: &OutboxItem) {
        let Some(pause) = self.inner.gate.resume(&item.channel) else {
            return;
        };
        tracing::info!(channel = %item.channel, paused_since = %pause.since.to_rfc3339(), "probe delivered: channel resumed");
        self.record_pause(&item.channel, None, None).await;
        let entry = AuditEntry::new(
            "channel.resumed",
            format!(
                "channel {} resumed: a probe was delivered (paused since {} after {})",
                item.channel,
                pause.since.to_rfc3339(),
                pause.code
            ),
        )
        .channel(&item.channel)
        .org(&item.org_id)
        .detail(json!({
            "code": pause.code,
            "paused_since": pause.since.to_rfc3339(),
            "failed_probes": pause.failed_probes,
            "probe_outbox_id": item.id,
        }));
        if let Err(e) = self.inner.store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not audit a channel's resumption");
        }
        self.inner.wake.notify_one();
    }

    /// Writes a channel's pause where admin commands in another process see it (`None` lifts
    /// it; a `None` reason keeps the recorded one). Only logged if it fails: the gate in memory
    /// is what holds the rows.
    async fn record_pause(
        &self,
        channel: &str,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) {
        if let Err(e) = self
            .inner
            .store
            .set_channel_pause(channel, until, reason)
            .await
        {
            tracing::warn!(channel, error = %e, "could not record the channel's pause for admin commands");
        }
    }

    async fn alert(
        &self,
        entry: AuditEntry,
        failure: &Failure,
        remedy: crate::lifecycle::remediation::Action,
        mut extra: serde_json::Value,
    ) {
        extra["code"] = failure.trigger_label().into();
        extra["action"] = remedy.as_str().into();
        extra["error"] = failure.error.clone().into();
        let entry = entry.severity(Severity::Alert).detail(extra);
        self.metrics()
            .inc("byocd_alerts_total", &[("kind", &entry.kind)]);
        if let Err(e) = self.inner.store.append_audit(&entry).await {
            tracing::error!(error = %e, kind = %entry.kind, "could not write an alert to the audit trail");
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

fn lease(ok: bool, settled: Settled) -> Settled {
    if ok { settled } else { Settled::LeaseLost }
}

/// The result of delivering one row.
pub type Outcome = Result<Delivered, Failure>;
