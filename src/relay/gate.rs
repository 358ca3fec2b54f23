//! The relay's gate: which channels are paused and which orgs are disabled, as the remediation
//! table decided (`pause_channel`, `disable_org`).
//!
//! - A **paused** channel sends nothing: its rows stay queued, in order, and are deferred to the
//!   next probe without spending an attempt of their schedule. When the probe time comes, one
//!   row goes out as the probe (one at a time; a probe that never settles — its worker died — is
//!   replaced after [`PROBE_TIMEOUT`]): if it is delivered the channel resumes at once; if it fails
//!   again the next probe waits for the next step of `relay.retry_schedule` (its last step
//!   repeats), at most [`MAX_PROBE_INTERVAL`].
//! - A **disabled** org sends nothing on any of its channels until the configuration is reloaded
//!   (or the daemon restarted); there is no probing. Its rows are deferred by
//!   [`DISABLED_RECHECK`] at a time, without spending attempts.
//! - Inbound work is still accepted and queued either way: the gate only holds rows back.
//!
//! The gate lives in memory, per replica: each replica learns of a fault from its own failed
//! call (one call per replica, not one per row), and a restart starts with an open gate, which
//! the first failing call closes again.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};

/// A probe that has not settled after this long (its worker died, or could not settle) no
/// longer blocks the next one.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest wait between two probes of a paused channel, whatever the retry schedule's step:
/// one call per channel every few minutes costs nothing, and a channel held by an outage of
/// hours resumes within minutes of the service's return instead of after the schedule's last
/// step (hours).
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// How far a disabled org's rows are pushed back each time they come due.
pub const DISABLED_RECHECK: Duration = Duration::from_secs(60);

/// What the gate says of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Send it.
    Go,
    /// Send it as the probe of its paused channel.
    Probe,
    /// Hold it until then.
    Hold {
        /// When to look again.
        until: DateTime<Utc>,
        /// Why, for the row's `last_error`.
        reason: String,
        /// Whose rows the hold is about: all of them are held until then.
        scope: HoldScope,
    },
}

/// Whose rows a hold is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldScope {
    /// Every row of the row's channel (paused).
    Channel,
    /// Every row of the row's org (disabled).
    Org,
}

/// A paused channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// The code that paused it.
    pub code: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// When the next probe may go.
    pub next_probe: DateTime<Utc>,
    /// Failed probes so far.
    pub failed_probes: u32,
    /// When the probe in flight went out, if one is.
    probing_since: Option<DateTime<Utc>>,
}

/// A disabled org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    /// The code that disabled it.
    pub code: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    paused: HashMap<String, Pause>,
    disabled: HashMap<String, Disabled>,
    /// Per channel or org held, until when its pending rows were last held in one statement.
    held_until: HashMap<(HoldScope, String), DateTime<Utc>>,
}

/// The gate of one relay (shared by its workers).
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<State>,
}

fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    crate::clock::later(now, by)
}

fn probe_delay(schedule: &[Duration], failed_probes: u32) -> Duration {
    let step = (failed_probes as usize).min(schedule.len().saturating_sub(1));
    schedule
        .get(step)
        .copied()
        .unwrap_or(Duration::from_secs(60))
        .min(MAX_PROBE_INTERVAL)
}

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("relay gate lock poisoned")
    }

    /// Whether the pending rows of `key` (a channel or an org) still need holding until
    /// `until` in one statement: true the first time a hold reaches that time, so one write
    /// holds a paused channel's whole backlog per probe instead of one write per row.
    pub fn hold_all_first(&self, scope: HoldScope, key: &str, until: DateTime<Utc>) -> bool {
        let mut state = self.state();
        let slot = state
            .held_until
            .entry((scope, key.to_owned()))
            .or_insert(DateTime::<Utc>::MIN_UTC);
        if *slot >= until {
            return false;
        }
        *slot = until;
        true
    }

    /// Whether a row of `channel` (of `org`) may go now.
    pub fn admit(&self, channel: &str, org: &str, now: DateTime<Utc>) -> Admit {
        let mut state = self.state();
        if let Some(disabled) = state.disabled.get(org) {
            return Admit::Hold {
                until: later(now, DISABLED_RECHECK),
                reason: format!(
                    "org {org} is disabled since {} after {}; reload the configuration once it is fixed",
                    disabled.since.to_rfc3339(),
                    disabled.code
                ),
                scope: HoldScope::Org,
            };
        }
        match state.paused.get_mut(channel) {
            None => Admit::Go,
            Some(pause)
                if now >= pause.next_probe
                    && pause
                        .probing_since
                        .is_none_or(|since| now >= later(since, PROBE_TIMEOUT)) =>
            {
                pause.probing_since = Some(now);
                Admit::Probe
            }
            Some(pause) => Admit::Hold {
                until: if pause.probing_since.is_some() {
                    later(now, Duration::from_secs(1)).max(pause.next_probe)
                } else {
                    pause.next_probe
                },
                reason: format!(
                    "channel {channel} is paused since {} after {}; next probe at {}",
                    pause.since.to_rfc3339(),
                    pause.code,
                    pause.next_probe.to_rfc3339()
                ),
                scope: HoldScope::Channel,
            },
        }
    }

    /// Pauses `channel` after `code` (or, when it is paused already and this was its probe,
    /// pushes the next probe back). Returns the pause and whether it is new.
    pub fn pause(
        &self,
        channel: &str,
        code: &str,
        now: DateTime<Utc>,
        schedule: &[Duration],
    ) -> (Pause, bool) {
        let mut state = self.state();
        match state.paused.get_mut(channel) {
            Some(pause) => {
                if pause.probing_since.is_some() {
                    pause.probing_since = None;
                    pause.failed_probes += 1;
                    pause.next_probe = later(now, probe_delay(schedule, pause.failed_probes));
                }
                pause.code = code.to_owned();
                (pause.clone(), false)
            }
            None => {
                let pause = Pause {
                    code: code.to_owned(),
                    since: now,
                    next_probe: later(now, probe_delay(schedule, 0)),
                    failed_probes: 0,
                    probing_since: None,
                };
                state.paused.insert(channel.to_owned(), pause.clone());
                (pause, true)
            }
        }
    }

    /// The probe of `channel` failed for a reason that does not call for a pause (a passing
    /// fault): the channel stays paused and the next probe waits for the next step.
    pub fn probe_inconclusive(&self, channel: &str, now: DateTime<Utc>, schedule: &[Duration]) {
        if let Some(pause) = self.state().paused.get_mut(channel)
            && pause.probing_since.is_some()
        {
            pause.probing_since = None;
            pause.failed_probes += 1;
            pause.next_probe = later(now, probe_delay(schedule, pause.failed_probes));
        }
    }

    /// The probe of `channel` went through: it resumes. Returns the pause it ends, if any.
    pub fn resume(&self, channel: &str) -> Option<Pause> {
        let mut state = self.state();
        state
            .held_until
            .remove(&(HoldScope::Channel, channel.to_owned()));
        state.paused.remove(channel)
    }

    /// Disables `org` after `code`. Returns whether it was enabled until now.
    pub fn disable(&self, org: &str, code: &str, now: DateTime<Utc>) -> bool {
        let mut state = self.state();
        if state.disabled.contains_key(org) {
            return false;
        }
        state.disabled.insert(
            org.to_owned(),
            Disabled {
                code: code.to_owned(),
                since: now,
            },
        );
        true
    }

    /// Opens the gate entirely (a reload): every channel resumes, every org is enabled.
    pub fn reset(&self) {
        let mut state = self.state();
        state.paused.clear();
        state.disabled.clear();
        state.held_until.clear();
    }

    /// The paused channels, by name.
    pub fn paused(&self) -> HashMap<String, Pause> {
        self.state().paused.clone()
    }

    /// The disabled orgs, by id.
    pub fn disabled(&self) -> HashMap<String, Disabled> {
        self.state().disabled.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(60)];

    #[test]
    fn a_paused_channel_holds_its_rows_then_lets_one_probe_through() {
        let gate = Gate::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(gate.admit("c", "o", t0), Admit::Go);
        let (pause, new) = gate.pause("c", "10031", t0, &SCHEDULE);
        assert!(new);
        assert_eq!(pause.next_probe, t0 + chrono::Duration::seconds(10));
        assert!(
            matches!(gate.admit("c", "o", t0), Admit::Hold { until, .. } if until == pause.next_probe)
        );
        assert_eq!(gate.admit("other", "o", t0), Admit::Go);
        let t1 = t0 + chrono::Duration::seconds(10);
        assert_eq!(gate.admit("c", "o", t1), Admit::Probe);
        // Only one probe at a time, unless the one in flight never settles.
        assert!(matches!(gate.admit("c", "o", t1), Admit::Hold { .. }));
        let stuck = t1 + chrono::Duration::from_std(PROBE_TIMEOUT).unwrap();
        assert_eq!(gate.admit("c", "o", stuck), Admit::Probe);
        let (pause, new) = gate.pause("c", "10031", t1, &SCHEDULE);
        assert!(!new);
        assert_eq!(pause.next_probe, t1 + chrono::Duration::seconds(60));
        let t2 = t1 + chrono::Duration::seconds(60);
        assert_eq!(gate.admit("c", "o", t2), Admit::Probe);
        gate.pause("c", "10031", t2, &SCHEDULE);
        // The last step repeats.
        assert_eq!(
            gate.paused()["c"].next_probe,
            t2 + chrono::Duration::seconds(60)
        );
        assert!(gate.resume("c").is_some());
        assert_eq!(gate.admit("c", "o", t2), Admit::Go);
    }

    #[test]
    fn the_backlog_is_held_once_per_time_and_again_after_a_reset() {
        let gate = Gate::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let t1 = t0 + chrono::Duration::seconds(10);
        assert!(gate.hold_all_first(HoldScope::Channel, "c", t1));
        assert!(!gate.hold_all_first(HoldScope::Channel, "c", t1));
        assert!(!gate.hold_all_first(HoldScope::Channel, "c", t0));
        assert!(
            gate.hold_all_first(HoldScope::Org, "c", t1),
            "an org is not a channel"
        );
        let t2 = t1 + chrono::Duration::seconds(60);
        assert!(gate.hold_all_first(HoldScope::Channel, "c", t2));
        gate.reset();
        assert!(gate.hold_all_first(HoldScope::Channel, "c", t1));
    }

    #[test]
    fn a_disabled_org_holds_every_channel_until_reset() {
        let gate = Gate::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(gate.disable("o", "10099", t0));
        assert!(!gate.disable("o", "10099", t0));
        for channel in ["a", "b"] {
            assert!(matches!(
                gate.admit(channel, "o", t0 + chrono::Duration::days(1)),
                Admit::Hold { .. }
            ));
        }
        assert_eq!(gate.admit("a", "other", t0), Admit::Go);
        gate.reset();
        assert_eq!(gate.admit("a", "o", t0), Admit::Go);
    }
}
