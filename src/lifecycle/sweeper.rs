//! The stale-session sweeper: on each channel's cron schedule (`[session] sweep_cron`), sessions
//! idle past `inactivate_after` are inactivated and those idle past `end_after` are ended, with
//! `operationBy: System`.
//!
//! - **Indexed.** The query reads the partial index of open sessions by channel and last
//!   activity, so its cost follows the number of stale sessions, not the history.
//! - **Idempotent, once across replicas.** The local state changes in the same transaction as
//!   the outbox row, so a second sweep finds nothing; on PostgreSQL each run also takes an
//!   advisory lock per channel, so one replica sweeps at a time (SQLite: one daemon by
//!   construction).
//! - **Through the outbox.** The Salesforce calls (`POST /messagingSession`, partner-routed
//!   channels only — the API is for partner-owned routing; Salesforce times out its own
//!   sessions elsewhere) are paced by the org's rate limit like every other call. A session
//!   Salesforce no longer knows is reconciled, not retried.
//! - **Own scheduling.** tokio-cron-scheduler fires the runs; byocd keeps its own cancellation
//!   (a run under way when the daemon stops is tracked and let finish)
//!   and records each channel's last successful sweep for the staleness alarm: when
//!   [`STALE_AFTER_RUNS`] scheduled runs in a row pass without one, `/readyz` answers 503 naming
//!   the channel.
//! - **Reloadable.** [`Sweeper::set_channels`] swaps the channel list on reload; the schedule is
//!   rebuilt only when a channel's `sweep_cron` changed or a channel came or went, and each run
//!   reads its channel's current policy.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    clock::SharedClock,
    config::{ChannelConfig, RoutingOwner},
    store::{AnyStore, Store, SweepReport},
};

/// Sessions of each kind handled per run; the next run takes the rest.
pub const SWEEP_BATCH: u32 = 500;

/// Runs in a row without a successful sweep that make a channel's sweep stale (`/readyz` fails).
pub const STALE_AFTER_RUNS: usize = 3;

/// Time a run is given to finish before it counts as missed.
pub const RUN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The health of one channel's sweep, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SweepHealth {
    /// The channel.
    pub channel: String,
    /// When its sweep last succeeded here (or another replica held the sweep), if ever.
    pub last_success: Option<DateTime<Utc>>,
    /// When it became stale: the third scheduled run after the last success (or after the
    /// start), plus [`RUN_GRACE`].
    pub stale_at: Option<DateTime<Utc>>,
    /// Whether that time has passed.
    pub stale: bool,
}

/// The sweeper of every configured channel.
#[derive(Clone)]
pub struct Sweeper {
    store: AnyStore,
    channels: Arc<RwLock<Arc<Vec<ChannelConfig>>>>,
    clock: SharedClock,
    wake: Arc<Notify>,
    /// What happened to each configured channel's sweep, by channel.
    runs: Arc<Mutex<HashMap<String, ChannelRuns>>>,
    reschedule: Arc<Notify>,
}

/// One channel's sweeping, as this daemon saw it.
#[derive(Debug, Clone, Copy)]
struct ChannelRuns {
    /// When the channel joined: the start, or the reload that added it.
    joined: DateTime<Utc>,
    /// When its sweep last succeeded (or another replica held it).
    last_success: Option<DateTime<Utc>>,
    /// How long its last sweep here took.
    last_duration: Option<std::time::Duration>,
}

impl ChannelRuns {
    fn joined(at: DateTime<Utc>) -> Self {
        Self {
            joined: at,
            last_success: None,
            last_duration: None,
        }
    }
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper").finish_non_exhaustive()
    }
}

impl Sweeper {
    /// A sweeper for `channels`; work it writes wakes `wake` (the relay).
    pub fn new(
        store: AnyStore,
        channels: Vec<ChannelConfig>,
        clock: SharedClock,
        wake: Arc<Notify>,
    ) -> Self {
        let now = clock.now();
        let runs = channels
            .iter()
            .map(|c| (c.name.clone(), ChannelRuns::joined(now)))
            .collect();
        Self {
            store,
            channels: Arc::new(RwLock::new(Arc::new(channels))),
            clock,
            wake,
            runs: Arc::new(Mutex::new(runs)),
            reschedule: Arc::default(),
        }
    }

    /// The channels swept now.
    pub fn channels(&self) -> Arc<Vec<ChannelConfig>> {
        self.channels.read().expect("sweeper lock").clone()
    }

    /// Replaces the channel list (reload). Channels that are new start their staleness clock now;
    /// the schedule is rebuilt only if a `sweep_cron` changed or a channel came or went. Returns
    /// whether it was rebuilt.
    pub fn set_channels(&self, channels: Vec<ChannelConfig>) -> bool {
        let schedule = |list: &[ChannelConfig]| {
            let mut v: Vec<(String, String)> = list
                .iter()
                .map(|c| (c.name.clone(), c.session.sweep_cron.clone()))
                .collect();
            v.sort();
            v
        };
        let now = self.clock.now();
        let old = self.channels();
        let rebuild = schedule(&old) != schedule(&channels);
        {
            let mut runs = self.runs.lock().expect("sweeper lock");
            runs.retain(|name, _| channels.iter().any(|c| &c.name == name));
            for c in &channels {
                runs.entry(c.name.clone())
                    .or_insert_with(|| ChannelRuns::joined(now));
            }
        }
        *self.channels.write().expect("sweeper lock") = Arc::new(channels);
        if rebuild {
            self.reschedule.notify_one();
        }
        rebuild
    }

    /// One sweep of `channel`, now. `Ok(None)` when another replica is sweeping it.
    pub async fn sweep(&self, channel: &ChannelConfig) -> Result<Option<SweepReport>, String> {
        let lock_key = format!("byocd.sweep.{}", channel.name);
        let Some(guard) = self
            .store
            .try_exclusive(&lock_key)
            .await
            .map_err(|e| e.to_string())?
        else {
            tracing::debug!(channel = %channel.name, "sweep skipped: another replica is sweeping");
            // The channel is being swept: not stale.
            self.mark_success(&channel.name);
            return Ok(None);
        };
        let began = std::time::Instant::now();
        let now = self.clock.now();
        let ago = |d: std::time::Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
        let report = crate::domain::lifecycle::sweep_sessions(
            &self.store,
            &channel.name,
            channel.org_id.as_str(),
            ago(channel.session.inactivate_after),
            ago(channel.session.end_after),
            channel.routing_owner == RoutingOwner::Partner,
            SWEEP_BATCH,
        )
        .await
        .map_err(|e| e.to_string());
        guard.release().await;
        if let Some(runs) = self
            .runs
            .lock()
            .expect("sweeper lock")
            .get_mut(&channel.name)
        {
            runs.last_duration = Some(began.elapsed());
        }
        let report = report?;
        self.mark_success(&channel.name);
        if report.inactivated + report.ended > 0 {
            tracing::info!(channel = %channel.name, inactivated = report.inactivated, ended = report.ended, "idle sessions swept");
            self.wake.notify_one();
        }
        Ok(Some(report))
    }

    fn mark_success(&self, channel: &str) {
        let now = self.clock.now();
        self.runs
            .lock()
            .expect("sweeper lock")
            .entry(channel.to_owned())
            .or_insert_with(|| ChannelRuns::joined(now))
            .last_success = Some(now);
    }

    /// The health of every channel's sweep now: stale when [`STALE_AFTER_RUNS`] scheduled runs
    /// in a row have passed without a success.
    pub fn health(&self) -> Vec<SweepHealth> {
        let now = self.clock.now();
        let runs = self.runs.lock().expect("sweeper lock").clone();
        self.channels()
            .iter()
            .map(|channel| {
                let seen = runs.get(&channel.name);
                let last_success = seen.and_then(|r| r.last_success);
                let started = seen.map_or(now, |r| r.joined);
                let since = last_success.unwrap_or(started).max(started);
                let stale_at = CronParser::builder()
                    .seconds(Seconds::Required)
                    .dom_and_dow(true)
                    .build()
                    .parse(&channel.session.sweep_cron)
                    .ok()
                    .and_then(|cron| cron.iter_after(since).nth(STALE_AFTER_RUNS - 1))
                    .map(|at| at + chrono::Duration::from_std(RUN_GRACE).unwrap_or_default());
                SweepHealth {
                    channel: channel.name.clone(),
                    last_success,
                    stale: stale_at.is_some_and(|at| now > at),
                    stale_at,
                }
            })
            .collect()
    }

    /// How long each channel's last sweep here took.
    pub fn last_duration(&self) -> HashMap<String, std::time::Duration> {
        self.runs
            .lock()
            .expect("sweeper lock")
            .iter()
            .filter_map(|(name, r)| r.last_duration.map(|d| (name.clone(), d)))
            .collect()
    }

    /// When each channel was last swept successfully.
    pub fn last_success(&self) -> HashMap<String, DateTime<Utc>> {
        self.runs
            .lock()
            .expect("sweeper lock")
            .iter()
            .filter_map(|(name, r)| r.last_success.map(|at| (name.clone(), at)))
            .collect()
    }

    /// Runs every channel's schedule until `cancel`, rebuilding it when
    /// [`Sweeper::set_channels`] changed the schedules.
    /// A sweep under way when `cancel` fires (or the schedule is rebuilt) is let finish: each
    /// run is tracked, and this returns only once none is running.
    pub async fn run(self, cancel: CancellationToken) {
        let runs = TaskTracker::new();
        loop {
            let Some(mut scheduler) = self.schedule(&cancel, &runs).await else {
                runs.close();
                runs.wait().await;
                return;
            };
            let rebuild = tokio::select! {
                () = cancel.cancelled() => false,
                () = self.reschedule.notified() => true,
            };
            if let Err(e) = scheduler.shutdown().await {
                tracing::warn!(error = %e, "sweeper: scheduler shutdown");
            }
            if !rebuild {
                runs.close();
                runs.wait().await;
                return;
            }
            tracing::info!("sweeper: schedules changed; rescheduled");
        }
    }

    /// A started scheduler with one job per channel; each run reads the channel's current policy.
    async fn schedule(
        &self,
        cancel: &CancellationToken,
        runs: &TaskTracker,
    ) -> Option<JobScheduler> {
        let scheduler = match JobScheduler::new().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "sweeper: cannot create the scheduler");
                return None;
            }
        };
        for channel in self.channels().iter() {
            let sweeper = self.clone();
            let name = channel.name.clone();
            let run_cancel = cancel.clone();
            let runs = runs.clone();
            let job = Job::new_async(channel.session.sweep_cron.as_str(), move |_id, _lock| {
                let sweeper = sweeper.clone();
                let name = name.clone();
                let cancel = run_cancel.clone();
                Box::pin(runs.track_future(async move {
                    if cancel.is_cancelled() {
                        return;
                    }
                    let Some(channel) = sweeper.channels().iter().find(|c| c.name == name).cloned()
                    else {
                        return;
                    };
                    if let Err(e) = sweeper.sweep(&channel).await {
                        tracing::error!(channel = %channel.name, error = %e, "sweep failed; the next run tries again");
                    }
                }))
            });
            match job {
                Ok(job) => {
                    if let Err(e) = scheduler.add(job).await {
                        tracing::error!(channel = %channel.name, error = %e, "sweeper: cannot schedule");
                    }
                }
                Err(e) => {
                    tracing::error!(channel = %channel.name, error = %e, "sweeper: bad sweep_cron")
                }
            }
        }
        if let Err(e) = scheduler.start().await {
            tracing::error!(error = %e, "sweeper: cannot start the scheduler");
            return None;
        }
        Some(scheduler)
    }
}
