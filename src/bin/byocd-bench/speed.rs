//! End to end at full speed (closed loop): what reaches the Interaction Service emulator, and in
//! what order, when webhooks come as fast as byocd answers them.
//!
//! - Many conversations: [`delivered_between`] counts the interactions the emulator processed in
//!   the measurement window of a [`crate::load::closed_loop`] run.
//! - One conversation: [`one_conversation`] sends N webhooks from one end user over a few
//!   connections and checks that the emulator received every accepted one once, in an order that
//!   respects the order the provider could see (a webhook answered before another was sent is
//!   delivered before it).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use byocd::sandbox::{salesforce::SalesforceEmulator, stack::Stack};
use serde_json::Value;

use crate::{
    load::{self, Bodies},
    stats::{Hist, ProcUse, Summary, Watch},
};

const INTERACTIONS: &str = "/api/v1/interactions";

/// The texts of the messages one logged request carried to `/api/v1/interactions` (202 only).
fn texts(body: Option<&Value>) -> Vec<String> {
    body.and_then(|b| b["interactions"].as_array())
        .map(|all| {
            all.iter()
                .filter_map(|i| {
                    i["payload"]["abstractMessage"]["staticContent"]["text"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Interactions the emulator accepted (202) with their processing time inside `[from, to)`.
pub fn delivered_between(sf: &SalesforceEmulator, from: Instant, to: Instant) -> u64 {
    sf.requests_to(INTERACTIONS)
        .iter()
        .filter(|r| r.status == 202)
        .filter(|r| r.answered_at.is_some_and(|at| at >= from && at < to))
        .map(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["interactions"].as_array())
                .map_or(1, |a| a.len() as u64)
        })
        .sum()
}

/// What [`one_conversation`] measured.
#[derive(Debug, Clone)]
pub struct OneResult {
    pub messages: usize,
    pub clients: usize,
    /// Webhooks answered 200 (after retries of refused ones).
    pub accepted: usize,
    /// Answers other than 200 (each retried, as a provider would).
    pub refusals: usize,
    /// Messages that were never accepted (retries exhausted or out of time).
    pub unaccepted: usize,
    /// Accepted messages the emulator received (once or more).
    pub delivered: usize,
    /// Messages the emulator received more than once.
    pub duplicates: usize,
    /// Deliveries that came before a message the provider had seen answered before sending them.
    pub order_violations: usize,
    /// Delivered messages per second, first send to last delivery.
    pub rate: f64,
    /// Webhooks answered per second, first send to last answer.
    pub accept_rate: f64,
    /// Last webhook answered → last delivery in the emulator.
    pub drain: Duration,
    pub accept_latency: Summary,
    pub procs: Option<ProcUse>,
    /// Every accepted message once, in order; the first problem otherwise.
    pub check: Result<(), String>,
}

/// Sends and answer of one message's accepted attempt.
#[derive(Debug, Clone, Copy)]
struct Sent {
    sent: Instant,
    answered: Instant,
}

/// `messages` webhooks from one end user, `clients` connections each sending its next one when
/// the previous is answered (a refused one is sent again after 20 ms, at most 20 times), followed
/// to the Interaction Service emulator for at most `drain` after the last answer.
#[allow(clippy::too_many_arguments)]
pub async fn one_conversation(
    stack: &Stack,
    url: &str,
    messages: usize,
    clients: usize,
    prefix: u32,
    max_send: Duration,
    drain: Duration,
    watch: Option<Watch>,
) -> OneResult {
    let tag = format!("one{prefix}-");
    let bodies = Bodies::new(prefix);
    let sent: Arc<Mutex<Vec<Option<Sent>>>> = Arc::new(Mutex::new(vec![None; messages]));
    let next = Arc::new(AtomicUsize::new(0));
    let refusals = Arc::new(AtomicUsize::new(0));
    let cursor = stack.salesforce.requests_from(0).len();
    let p0 = watch.map(|w| w.stamp());
    let start = Instant::now();
    let send_until = start + max_send;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (sent, next, refusals) = (sent.clone(), next.clone(), refusals.clone());
        let (bodies, tag, url) = (bodies.clone(), tag.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = load::client(1);
            let mut hist = Hist::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages || Instant::now() >= send_until {
                    break;
                }
                let body = bodies.body(0, &format!("{tag}{i}"));
                for _ in 0..20 {
                    let t = Instant::now();
                    let status = load::post(&client, &url, body.clone()).await;
                    let answered = Instant::now();
                    if status == 200 {
                        hist.push(answered - t);
                        sent.lock().expect("sent lock")[i] = Some(Sent { sent: t, answered });
                        break;
                    }
                    refusals.fetch_add(1, Ordering::Relaxed);
                    if Instant::now() >= send_until {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            hist
        }));
    }
    let mut accept_hist = Hist::default();
    for t in tasks {
        if let Ok(h) = t.await {
            accept_hist.merge(h);
        }
    }
    let sent = sent.lock().expect("sent lock").clone();
    let accepted = sent.iter().flatten().count();
    let last_answer = sent.iter().flatten().map(|s| s.answered).max();

    // Follow the emulator's log: each message's first arrival (its position in the order of
    // arrival) and how often it arrived.
    let mut arrivals: Vec<(usize, Instant)> = Vec::new(); // (message, processed at)
    let mut times = vec![0_usize; messages];
    let mut stranger = 0; // a tagged text that is no message of this run
    let mut read = cursor;
    let follow = |read: &mut usize,
                  arrivals: &mut Vec<(usize, Instant)>,
                  times: &mut Vec<usize>,
                  stranger: &mut usize| {
        let fresh = stack.salesforce.requests_from(*read);
        for r in &fresh {
            // A request still open is read again next time.
            let Some(at) = r.answered_at else { break };
            *read = r.seq + 1;
            if r.path != INTERACTIONS || r.status != 202 {
                continue;
            }
            for text in texts(r.body.as_ref()) {
                let Some(n) = text.strip_prefix(tag.as_str()) else {
                    continue;
                };
                match n.parse::<usize>() {
                    Ok(i) if i < messages => {
                        times[i] += 1;
                        if times[i] == 1 {
                            arrivals.push((i, at));
                        }
                    }
                    _ => *stranger += 1,
                }
            }
        }
    };
    let drain_end = Instant::now() + drain;
    loop {
        follow(&mut read, &mut arrivals, &mut times, &mut stranger);
        if arrivals.len() >= accepted || Instant::now() > drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let p1 = watch.map(|w| w.stamp());
    // A moment more, for duplicates that would come after the last first arrival.
    tokio::time::sleep(Duration::from_millis(300)).await;
    follow(&mut read, &mut arrivals, &mut times, &mut stranger);

    let last_delivery = arrivals.iter().map(|(_, at)| *at).max();
    let delivered = arrivals.len();
    let duplicates = times.iter().filter(|n| **n > 1).count();
    let unaccepted = messages - accepted;
    let not_sent_delivered = arrivals.iter().filter(|(i, _)| sent[*i].is_none()).count();
    let missing = sent
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_some() && times[*i] == 0)
        .count();

    // Order: a message answered before another was sent must arrive before it. Sweep the sends in
    // time order, keeping the latest arrival position among the messages answered before.
    let mut position = vec![usize::MAX; messages];
    for (pos, (i, _)) in arrivals.iter().enumerate() {
        position[*i] = pos;
    }
    let mut by_answer: Vec<(Instant, usize)> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (s.answered, i)))
        .collect();
    by_answer.sort();
    let mut by_send: Vec<(Instant, usize)> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (s.sent, i)))
        .collect();
    by_send.sort();
    let mut order_violations = 0;
    let mut first_violation = None;
    let (mut k, mut latest): (usize, Option<(usize, usize)>) = (0, None); // (position, message)
    for (sent_at, j) in &by_send {
        while k < by_answer.len() && by_answer[k].0 < *sent_at {
            let i = by_answer[k].1;
            if position[i] != usize::MAX && latest.is_none_or(|(p, _)| position[i] > p) {
                latest = Some((position[i], i));
            }
            k += 1;
        }
        if let Some((p, i)) = latest
            && position[*j] != usize::MAX
            && position[*j] < p
        {
            order_violations += 1;
            first_violation.get_or_insert((i, *j));
        }
    }

    let check = if unaccepted > 0 {
        Err(format!(
            "{unaccepted} of {messages} webhooks were never accepted (20 tries each)"
        ))
    } else if missing > 0 {
        Err(format!(
            "{missing} of {accepted} accepted messages never reached the emulator (waited {} s after the last answer)",
            drain.as_secs()
        ))
    } else if duplicates > 0 {
        Err(format!(
            "{duplicates} messages reached the emulator more than once"
        ))
    } else if order_violations > 0 {
        let (i, j) = first_violation.unwrap_or_default();
        Err(format!(
            "{order_violations} messages arrived before one answered before they were sent \
             (first: message {j} before message {i})"
        ))
    } else if not_sent_delivered > 0 || stranger > 0 {
        Err(format!(
            "the emulator received {} messages that were never accepted",
            not_sent_delivered + stranger
        ))
    } else {
        Ok(())
    };

    let elapsed = last_delivery.map_or(Duration::ZERO, |d| d.saturating_duration_since(start));
    OneResult {
        messages,
        clients,
        accepted,
        refusals: refusals.load(Ordering::Relaxed),
        unaccepted,
        delivered,
        duplicates,
        order_violations,
        rate: delivered as f64 / elapsed.as_secs_f64().max(1e-3),
        accept_rate: accepted as f64
            / last_answer
                .map_or(0.0, |a| a.saturating_duration_since(start).as_secs_f64())
                .max(1e-3),
        drain: match (last_answer, last_delivery) {
            (Some(a), Some(d)) => d.saturating_duration_since(a),
            _ => Duration::ZERO,
        },
        accept_latency: accept_hist.summary(),
        procs: p0.zip(p1).map(|(a, b)| a.until(&b)),
        check,
    }
}
