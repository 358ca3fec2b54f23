//! End-to-end flows at a fixed offered rate (open loop: each request leaves at its scheduled
//! time whatever happened to the earlier ones), followed to the emulator on the other side.
//!
//! - Inbound: 8x8 webhook → byocd → the Salesforce emulator's `/api/v1/interactions`.
//! - Outbound: a rep's message published on the Pub/Sub emulator → byocd → the 8x8 emulator's
//!   `/messages`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use byocd::sandbox::{
    salesforce::SalesforceEmulator,
    stack::{Stack, WA_ADDRESS},
};
use serde_json::Value;

use crate::{
    load::{self, Bodies},
    stats::{CpuStamp, CpuUse, Hist, Summary},
};

/// At most this many requests in flight; past it the sender waits (and falls behind schedule,
/// which the result shows).
const MAX_IN_FLIGHT: usize = 4096;

/// A fixed-rate run.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub duration: Duration,
    /// How long to wait, after the last send, for the last arrivals.
    pub drain: Duration,
}

impl Rate {
    fn count(&self) -> usize {
        (f64::from(self.per_second) * self.duration.as_secs_f64()).round() as usize
    }

    fn due(&self, start: Instant, i: usize) -> Instant {
        start + Duration::from_secs_f64(i as f64 / f64::from(self.per_second))
    }
}

/// What a fixed-rate run measured.
#[derive(Debug, Clone)]
pub struct FlowResult {
    pub offered_rate: u32,
    pub scheduled: usize,
    pub sent: usize,
    /// Sends per second over the send window (below the offered rate when the sender fell
    /// behind).
    pub send_rate: f64,
    /// How far behind schedule the sender fell at worst.
    pub max_sender_lag_ms: f64,
    /// Accepted at the entrance (webhook 200, or event published).
    pub accepted: usize,
    pub refused: usize,
    /// The answers other than acceptance: (HTTP status, 0 for no answer; count).
    pub refusals: Vec<(u16, usize)>,
    /// Webhook answer latency (inbound only).
    pub accept_latency: Option<Summary>,
    /// Arrived at the emulator on the other side.
    pub delivered: usize,
    /// Arrivals per second, first send to last arrival.
    pub delivered_rate: f64,
    /// Accepted (webhook answered / event published) → arrived.
    pub latency: Summary,
    /// Scheduled send → arrived (inbound: includes the webhook's own latency and any wait of
    /// the sender).
    pub latency_from_send: Summary,
    pub cpu: CpuUse,
}

impl FlowResult {
    /// Sustained: everything sent on schedule (the sender kept ≥ 97 % of the offered rate),
    /// accepted and delivered, with p99 under `p99_ms` (a queue that grows for the whole run
    /// cannot stay under it).
    pub fn sustained(&self, p99_ms: f64) -> bool {
        let offered = f64::from(self.offered_rate);
        self.refused == 0
            && self.sent == self.scheduled
            && self.send_rate >= 0.97 * offered
            && self.delivered == self.accepted
            && self.latency.p99 < p99_ms
    }

    /// What the daemon delivered per second, the best estimate of its capacity when it fell
    /// behind.
    pub fn capacity(&self) -> f64 {
        self.delivered_rate.min(self.send_rate)
    }
}

/// Per-request timestamps.
#[derive(Debug, Clone, Copy, Default)]
struct Stamp {
    /// When it was due to leave (open loop: latency counts from here, so a sender that falls
    /// behind does not hide the wait).
    due: Option<Instant>,
    sent: Option<Instant>,
    accepted: Option<Instant>,
    arrived: Option<Instant>,
}

/// Follows the Salesforce emulator's log and stamps the arrival of each `tag-N` entry.
fn follow_interactions(
    sf: &SalesforceEmulator,
    tag: &str,
    next: &mut usize,
    seen: &mut Vec<bool>,
    stamps: &Mutex<Vec<Stamp>>,
) -> usize {
    let fresh = sf.requests_from(*next);
    let mut arrived = 0;
    let mut stamps = stamps.lock().expect("stamps lock");
    let mut contiguous = true;
    for r in &fresh {
        if seen.len() <= r.seq {
            seen.resize(r.seq + 1, false);
        }
        if seen[r.seq] {
            if contiguous {
                *next = r.seq + 1;
            }
            continue;
        }
        let Some(at) = r.answered_at else {
            contiguous = false;
            continue;
        };
        seen[r.seq] = true;
        if contiguous {
            *next = r.seq + 1;
        }
        if r.path != "/api/v1/interactions" || r.status != 202 {
            continue;
        }
        let text = r.body.as_ref().and_then(|b| {
            b["interactions"][0]["payload"]["abstractMessage"]["staticContent"]["text"].as_str()
        });
        if let Some(i) = text
            .and_then(|t| t.strip_prefix(tag))
            .and_then(|n| n.parse::<usize>().ok())
            && let Some(stamp) = stamps.get_mut(i)
            && stamp.arrived.is_none()
        {
            stamp.arrived = Some(at);
            arrived += 1;
        }
    }
    arrived
}

/// Webhooks at `rate` from distinct end users, each followed to the Interaction Service
/// emulator.
pub async fn inbound(stack: &Stack, url: &str, rate: Rate, prefix: u32) -> FlowResult {
    let tag = format!("e2e{prefix}-");
    let total = rate.count();
    let stamps = Arc::new(Mutex::new(vec![Stamp::default(); total]));
    let statuses = Arc::new(Mutex::new(vec![0_u16; total]));
    let client = load::client(1024);
    let bodies = Bodies::new(prefix);
    // Build the bodies up front: the sender only sends.
    let prepared: Vec<Vec<u8>> = (0..total)
        .map(|i| bodies.body(i as u64, &format!("{tag}{i}")))
        .collect();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now() + Duration::from_millis(50);
    let cpu0 = CpuStamp::now();

    // The follower runs beside the sender.
    let follower = {
        let sf = stack.salesforce.clone();
        let stamps = stamps.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            let mut next = 0;
            let mut seen = Vec::new();
            let mut arrived = 0;
            let hard_end = start + rate.duration + rate.drain;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                arrived += follow_interactions(&sf, &tag, &mut next, &mut seen, &stamps);
                if arrived >= total || Instant::now() > hard_end {
                    break;
                }
            }
            arrived
        })
    };

    let mut max_lag = Duration::ZERO;
    let mut tasks = Vec::with_capacity(total);
    let mut last_send = start;
    for (i, body) in prepared.into_iter().enumerate() {
        let due = rate.due(start, i);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let now = Instant::now();
        max_lag = max_lag.max(now.saturating_duration_since(due));
        last_send = now;
        let client = client.clone();
        let url = url.to_owned();
        let stamps = stamps.clone();
        let statuses = statuses.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = load::post(&client, &url, body).await;
            let answered = Instant::now();
            {
                let mut s = stamps.lock().expect("stamps lock");
                s[i].due = Some(due);
                s[i].sent = Some(sent);
                if status == 200 {
                    s[i].accepted = Some(answered);
                }
            }
            statuses.lock().expect("statuses lock")[i] = status;
            drop(permit);
        }));
    }
    let send_window = last_send.saturating_duration_since(start);
    for t in tasks {
        let _ = t.await;
    }
    // Wait for the follower (bounded by the drain), but stop early when everything arrived.
    let accepted_count = stamps
        .lock()
        .expect("stamps lock")
        .iter()
        .filter(|s| s.accepted.is_some())
        .count();
    let drain_end = Instant::now() + rate.drain;
    let follower_abort = follower.abort_handle();
    loop {
        let arrived = stamps
            .lock()
            .expect("stamps lock")
            .iter()
            .filter(|s| s.arrived.is_some())
            .count();
        if arrived >= accepted_count || Instant::now() > drain_end || follower.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follower_abort.abort();
    let cpu = cpu0.until(&CpuStamp::now());

    let stamps = stamps.lock().expect("stamps lock").clone();
    let statuses = statuses.lock().expect("statuses lock").clone();
    let mut accept = Hist::default();
    let mut latency = Hist::default();
    let mut from_send = Hist::default();
    let mut last_arrival = start;
    let mut delivered = 0;
    for s in &stamps {
        if let (Some(sent), Some(acc)) = (s.sent, s.accepted) {
            accept.push(acc.saturating_duration_since(sent));
        }
        if let (Some(acc), Some(arr)) = (s.accepted, s.arrived) {
            latency.push(arr.saturating_duration_since(acc));
            delivered += 1;
            last_arrival = last_arrival.max(arr);
        }
        if let (Some(due), Some(arr)) = (s.due, s.arrived) {
            from_send.push(arr.saturating_duration_since(due));
        }
    }
    let sent = statuses.len();
    let mut refusals: std::collections::BTreeMap<u16, usize> = std::collections::BTreeMap::new();
    for status in statuses.iter().filter(|s| **s != 200) {
        *refusals.entry(*status).or_default() += 1;
    }
    FlowResult {
        refusals: refusals.into_iter().collect(),
        offered_rate: rate.per_second,
        scheduled: total,
        sent,
        send_rate: sent as f64 / send_window.as_secs_f64().max(1e-3),
        max_sender_lag_ms: max_lag.as_secs_f64() * 1000.0,
        accepted: accept.len(),
        refused: statuses.iter().filter(|s| **s != 200).count(),
        accept_latency: Some(accept.summary()),
        delivered,
        delivered_rate: delivered as f64
            / last_arrival
                .saturating_duration_since(start)
                .as_secs_f64()
                .max(1e-3),
        latency: latency.summary(),
        latency_from_send: from_send.summary(),
        cpu,
    }
}

/// Opens `count` conversations (one webhook each) and waits until the Interaction Service
/// emulator has all of them; returns the end users' numbers.
pub async fn open_conversations(
    stack: &Stack,
    url: &str,
    count: usize,
    prefix: u32,
) -> anyhow::Result<Vec<String>> {
    let bodies = Bodies::new(prefix);
    let client = load::client(32);
    let tag = format!("open{prefix}-");
    let users: Vec<String> = (0..count as u64).map(|i| bodies.msisdn(i)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        let client = client.clone();
        let url = url.to_owned();
        let body = bodies.body(i as u64, &format!("{tag}{i}"));
        tasks.spawn(async move {
            let status = load::post(&client, &url, body).await;
            drop(permit);
            status
        });
    }
    while let Some(status) = tasks.join_next().await {
        let status = status?;
        anyhow::ensure!(
            status == 200,
            "a webhook opening a conversation got {status}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let known = users
            .iter()
            .filter(|u| stack.salesforce.conversation_of(WA_ADDRESS, u).is_some())
            .count();
        if known == count {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {known} of {count} conversations reached the Salesforce emulator in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(users)
}

/// When an event was published: the instant, and the wall-clock time counted from its schedule.
type Published = (Instant, chrono::DateTime<chrono::Utc>);

/// Rep messages at `rate`, round-robin over `users`' conversations, each followed to the 8x8
/// emulator.
pub async fn outbound(stack: &Stack, users: &[String], rate: Rate, prefix: u32) -> FlowResult {
    let tag = format!("out{prefix}-");
    let total = rate.count();
    let published: Arc<Mutex<Vec<Option<Published>>>> = Arc::new(Mutex::new(vec![None; total]));
    let arrived: Arc<Mutex<HashMap<usize, chrono::DateTime<chrono::Utc>>>> = Arc::default();
    let start = Instant::now() + Duration::from_millis(50);
    let cpu0 = CpuStamp::now();
    let follower = {
        let wa = stack.wa.clone();
        let arrived = arrived.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            let mut next = 0;
            let hard_end = start + rate.duration + rate.drain;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let fresh = wa.sent_messages_from(next);
                next += fresh.len();
                let mut a = arrived.lock().expect("arrived lock");
                for m in fresh {
                    if let Some(i) = m
                        .content
                        .get("text")
                        .and_then(Value::as_str)
                        .and_then(|t| t.strip_prefix(tag.as_str()))
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        a.entry(i).or_insert(m.at);
                    }
                }
                if a.len() >= total || Instant::now() > hard_end {
                    break;
                }
            }
        })
    };
    let mut max_lag = Duration::ZERO;
    let mut last_send = start;
    let mut refused = 0;
    for i in 0..total {
        let due = rate.due(start, i);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        let now = Instant::now();
        max_lag = max_lag.max(now.saturating_duration_since(due));
        last_send = now;
        let user = &users[i % users.len()];
        // Latency counts from when the event was due (what the sender was late by, plus now).
        let at = chrono::Utc::now()
            - chrono::Duration::from_std(now.saturating_duration_since(due)).unwrap_or_default();
        match stack
            .rep
            .message((WA_ADDRESS, user.as_str()), &format!("{tag}{i}"))
        {
            Ok(_) => published.lock().expect("published lock")[i] = Some((now, at)),
            Err(_) => refused += 1,
        }
    }
    let send_window = last_send.saturating_duration_since(start);
    let accepted = total - refused;
    let drain_end = Instant::now() + rate.drain;
    loop {
        let n = arrived.lock().expect("arrived lock").len();
        if n >= accepted || Instant::now() > drain_end || follower.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follower.abort();
    let cpu = cpu0.until(&CpuStamp::now());
    let published = published.lock().expect("published lock").clone();
    let arrived = arrived.lock().expect("arrived lock").clone();
    let mut latency = Hist::default();
    let mut last_arrival = start;
    for (i, p) in published.iter().enumerate() {
        if let (Some((sent, sent_utc)), Some(at)) = (p, arrived.get(&i)) {
            let lat = (*at - *sent_utc).to_std().unwrap_or_default();
            latency.push(lat);
            last_arrival = last_arrival.max(*sent + lat);
        }
    }
    let delivered = latency.len();
    let summary = latency.summary();
    FlowResult {
        offered_rate: rate.per_second,
        scheduled: total,
        sent: total,
        send_rate: total as f64 / send_window.as_secs_f64().max(1e-3),
        max_sender_lag_ms: max_lag.as_secs_f64() * 1000.0,
        accepted,
        refused,
        refusals: if refused > 0 {
            vec![(0, refused)]
        } else {
            Vec::new()
        },
        accept_latency: None,
        delivered,
        delivered_rate: delivered as f64
            / last_arrival
                .saturating_duration_since(start)
                .as_secs_f64()
                .max(1e-3),
        latency: summary,
        latency_from_send: summary,
        cpu,
    }
}
