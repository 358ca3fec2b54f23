//! Every `errorReason` of `POST /messagingSession`, injected through the Salesforce emulator,
//! produces the action the remediation table (docs/remediation.md) gives it — one test per
//! value, on both backends, with time injected (no sleeps).
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use byocd::{
    clock::Clock,
    lifecycle::remediation,
    sandbox::salesforce::{Failure, SessionStatus},
    store::{AuditFilter, AuditRow, OutboxFilter, OutboxItem, Severity, Store, relay::kind},
};
use chrono::Duration;
use support::{
    TestDb,
    channels::RCS_CHANNEL,
    harness::{Harness, kaleyra},
    salesforce::CC_ADDRESS,
};

const USER: &str = "+447700900777";
const SESSION_ENDPOINT: &str = "/api/v1/messagingSession";
const INTERACTIONS: &str = "/api/v1/interactions";

/// The Inactivate of an idle session meets `reason`; returns the harness and the row.
async fn inactivation_refused_with(db: TestDb, reason: &str) -> (Harness, OutboxItem) {
    let h = Harness::start(db).await;
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "m-1", &USER[1..], Some("hello")),
    )
    .await;
    h.drain().await;
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 1);
    let channel = h.config.channel(RCS_CHANNEL).unwrap().clone();
    h.clock.advance(Duration::minutes(31));
    let report = h.sweeper.sweep(&channel).await.unwrap().unwrap();
    assert_eq!(report.inactivated, 1);
    h.emulator
        .inject(SESSION_ENDPOINT, Failure::ErrorReason(reason.into()), 1);
    h.drain().await;
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 1);
    let row = session_row(&h).await;
    (h, row)
}

async fn session_row(h: &Harness) -> OutboxItem {
    h.store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == kind::ISA_SESSION_OPERATION)
        .expect("the sweep wrote a session operation")
}

async fn audit(h: &Harness, kind: &str) -> Vec<AuditRow> {
    h.store
        .audit(&AuditFilter {
            kind: Some(kind.into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

fn documented(reason: &str) -> &'static str {
    let trigger = remediation::Trigger::parse(&format!("reason:{reason}")).unwrap();
    remediation::remedy(&trigger).action.as_str()
}

fn session_status(h: &Harness) -> SessionStatus {
    let conversation = h.emulator.conversation_of(CC_ADDRESS, USER).unwrap();
    conversation.current_session().unwrap().status
}

/// Retry: the row waits for the next step of the schedule, spending an attempt, and goes
/// through once Salesforce stops refusing.
async fn expect_retry(db: TestDb, reason: &str) {
    assert_eq!(documented(reason), "retry");
    let (h, row) = inactivation_refused_with(db, reason).await;
    assert_eq!(row.status, "pending");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_code.as_deref(), Some(reason));
    let retries = audit(&h, "outbox.retry_scheduled").await;
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].entry.detail["code"], reason);
    assert!(audit(&h, "channel.paused").await.is_empty());
    let metrics = byocd::http::metrics::render(
        &h.relay.metrics(),
        &byocd::http::metrics::Sources {
            relay: Some(&h.relay),
            ..Default::default()
        },
    )
    .await;
    assert!(
        metrics.contains("byocd_remediation_actions_total{action=\"retry\""),
        "{metrics}"
    );
    h.clock.advance(Duration::minutes(1));
    h.drain().await;
    assert_eq!(session_row(&h).await.status, "done");
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 2);
    assert_eq!(session_status(&h), SessionStatus::Inactive);
}

/// Reconcile: the session is over here too; nothing is sent again, nothing is alerted, and the
/// sweeper never touches it again.
async fn expect_reconcile(db: TestDb, reason: &str) {
    assert_eq!(documented(reason), "reconcile");
    let (h, row) = inactivation_refused_with(db, reason).await;
    assert_eq!(row.status, "done");
    let reconciled = audit(&h, "session.reconciled").await;
    assert_eq!(reconciled.len(), 1);
    assert_eq!(reconciled[0].entry.detail["reason"], reason);
    assert!(audit(&h, "outbox.dead_lettered").await.is_empty());
    let channel = h.config.channel(RCS_CHANNEL).unwrap().clone();
    h.clock.advance(Duration::hours(25));
    let report = h.sweeper.sweep(&channel).await.unwrap().unwrap();
    assert_eq!((report.inactivated, report.ended), (0, 0));
    h.drain().await;
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 1);
}

/// Pause: one alert; the channel sends nothing while inbound work is still accepted and
/// queued; no attempt is spent; the probe goes through and the channel resumes by itself,
/// its queue delivered in order.
async fn expect_pause(db: TestDb, reason: &str) {
    assert_eq!(documented(reason), "pause_channel");
    let (h, row) = inactivation_refused_with(db, reason).await;
    assert_eq!(row.status, "pending");
    assert_eq!(row.attempts, 0, "a held row spends no attempt");
    let paused = audit(&h, "channel.paused").await;
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].entry.severity, Severity::Alert);
    assert_eq!(paused[0].entry.channel.as_deref(), Some(RCS_CHANNEL));
    assert_eq!(paused[0].entry.detail["action"], "pause_channel");
    assert!(
        paused[0].entry.detail["code"]
            .as_str()
            .unwrap()
            .contains(reason)
    );
    assert!(h.relay.gate().paused().contains_key(RCS_CHANNEL));
    assert_eq!(
        h.relay
            .metrics()
            .get("byocd_alerts_total", &[("kind", "channel.paused")]),
        1
    );
    let metrics = byocd::http::metrics::render(
        &h.relay.metrics(),
        &byocd::http::metrics::Sources {
            relay: Some(&h.relay),
            sweeper: Some(&h.sweeper),
            ..Default::default()
        },
    )
    .await;
    assert!(
        metrics.contains(&format!("byocd_channel_paused{{channel=\"{RCS_CHANNEL}\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("byocd_remediation_actions_total{action=\"pause_channel\""),
        "{metrics}"
    );

    // The end user writes again: accepted and queued, not sent.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "m-2", &USER[1..], Some("anyone?")),
    )
    .await;
    h.drain().await;
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 1);
    let queued = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert_eq!(
        queued.iter().filter(|r| r.status == "pending").count(),
        2,
        "{queued:#?}"
    );
    assert!(queued.iter().all(|r| r.status != "dead"));

    // Still held before the probe time, however often the relay looks.
    h.clock.advance(Duration::milliseconds(500));
    h.drain().await;
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 1);

    // The probe goes through (the admin fixed it): the channel resumes and its queue drains.
    h.clock.advance(Duration::minutes(5));
    h.drain().await;
    h.drain().await;
    assert!(h.relay.gate().paused().is_empty());
    assert_eq!(audit(&h, "channel.resumed").await.len(), 1);
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 2);
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 2);
    let all = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert!(all.iter().all(|r| r.status == "done"), "{all:#?}");
}

/// Disable the org: one alert; every channel of the org holds its work, with no probing, until
/// the configuration is reloaded (the gate reset).
async fn expect_disable(db: TestDb, reason: &str) {
    assert_eq!(documented(reason), "disable_org");
    let (h, row) = inactivation_refused_with(db, reason).await;
    assert_eq!(row.status, "pending");
    assert_eq!(row.attempts, 0);
    let disabled = audit(&h, "org.disabled").await;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].entry.severity, Severity::Alert);
    assert_eq!(disabled[0].entry.detail["action"], "disable_org");
    assert!(h.relay.gate().disabled().contains_key(&row.org_id));
    let metrics = byocd::http::metrics::render(
        &h.relay.metrics(),
        &byocd::http::metrics::Sources {
            relay: Some(&h.relay),
            ..Default::default()
        },
    )
    .await;
    assert!(
        metrics.contains(&format!("byocd_org_disabled{{org_id=\"{}\"", row.org_id)),
        "{metrics}"
    );

    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "m-2", &USER[1..], Some("anyone?")),
    )
    .await;
    for _ in 0..3 {
        h.clock.advance(Duration::hours(8));
        h.drain().await;
    }
    assert_eq!(
        h.emulator.requests_to(SESSION_ENDPOINT).len(),
        1,
        "no probing"
    );
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 1);
    let held = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert!(held.iter().all(|r| r.status != "dead"), "{held:#?}");
    assert!(held.iter().all(|r| r.attempts <= 1), "{held:#?}");

    // Reload.
    h.relay.gate().reset();
    h.clock.advance(Duration::minutes(2));
    h.drain().await;
    assert_eq!(h.emulator.requests_to(SESSION_ENDPOINT).len(), 2);
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 2);
}

async fn active_conversation_not_found(db: TestDb) {
    expect_reconcile(db, "ACTIVE_CONVERSATION_NOT_FOUND").await
}
async fn end_session_failed(db: TestDb) {
    expect_retry(db, "END_SESSION_FAILED").await
}
async fn internal_error(db: TestDb) {
    expect_retry(db, "INTERNAL_ERROR").await
}
async fn permission_denied(db: TestDb) {
    expect_pause(db, "PERMISSION_DENIED").await
}
async fn channel_address_not_found(db: TestDb) {
    expect_pause(db, "CHANNEL_ADDRESS_NOT_FOUND").await
}
async fn session_not_found(db: TestDb) {
    expect_reconcile(db, "SESSION_NOT_FOUND").await
}
async fn end_user_not_found(db: TestDb) {
    expect_reconcile(db, "END_USER_NOT_FOUND").await
}
async fn org_not_found(db: TestDb) {
    expect_disable(db, "ORG_NOT_FOUND").await
}
async fn conversation_precondition_failed(db: TestDb) {
    expect_retry(db, "CONVERSATION_PRECONDITION_FAILED").await
}
async fn conversation_processing_aborted(db: TestDb) {
    expect_retry(db, "CONVERSATION_PROCESSING_ABORTED").await
}
async fn channel_address_is_inactive(db: TestDb) {
    expect_pause(db, "CHANNEL_ADDRESS_IS_INACTIVE").await
}
async fn customer_error(db: TestDb) {
    expect_pause(db, "CUSTOMER_ERROR").await
}
async fn no_access(db: TestDb) {
    expect_pause(db, "NO_ACCESS").await
}
async fn an_undocumented_reason(db: TestDb) {
    expect_retry(db, "QUOTA_OF_SOMETHING_NEW").await
}

on_both_backends!(
    active_conversation_not_found,
    end_session_failed,
    internal_error,
    permission_denied,
    channel_address_not_found,
    session_not_found,
    end_user_not_found,
    org_not_found,
    conversation_precondition_failed,
    conversation_processing_aborted,
    channel_address_is_inactive,
    customer_error,
    no_access,
    an_undocumented_reason,
    a_token_refused_after_a_remint_pauses_the_channel,
    a_retry_after_of_centuries_is_cut_to_the_maximum,
);

/// The list above covers every documented value.
#[test]
fn every_documented_reason_has_a_test() {
    let tested = [
        "ACTIVE_CONVERSATION_NOT_FOUND",
        "END_SESSION_FAILED",
        "INTERNAL_ERROR",
        "PERMISSION_DENIED",
        "CHANNEL_ADDRESS_NOT_FOUND",
        "SESSION_NOT_FOUND",
        "END_USER_NOT_FOUND",
        "ORG_NOT_FOUND",
        "CONVERSATION_PRECONDITION_FAILED",
        "CONVERSATION_PROCESSING_ABORTED",
        "CHANNEL_ADDRESS_IS_INACTIVE",
        "CUSTOMER_ERROR",
        "NO_ACCESS",
    ];
    for reason in byocd::salesforce::codes::ErrorReason::ALL_KNOWN {
        assert!(
            tested.contains(&reason.as_str()),
            "{} untested",
            reason.as_str()
        );
    }
}

/// A token refused (401, code 10004) even after the client re-minted it once: the table's
/// `remint_then_retry` ends in a paused channel, whose probe later goes through.
async fn a_token_refused_after_a_remint_pauses_the_channel(db: TestDb) {
    assert_eq!(
        remediation::remedy(&remediation::Trigger::IsaCode(10004))
            .action
            .as_str(),
        "remint_then_retry"
    );
    let h = Harness::start(db).await;
    h.emulator.inject(
        INTERACTIONS,
        Failure::IsaError {
            http_status: 401,
            code: 10004,
        },
        2,
    );
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "t-1", &USER[1..], Some("hello")),
    )
    .await;
    h.drain().await;
    assert_eq!(
        h.emulator.requests_to("/services/oauth2/token").len(),
        2,
        "the first mint, then one re-mint after the first refusal; none after the second"
    );
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 2);
    let paused = audit(&h, "channel.paused").await;
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].entry.detail["action"], "remint_then_retry");
    assert!(
        paused[0].entry.detail["code"]
            .as_str()
            .unwrap()
            .contains("10004")
    );
    // The probe, after the first step, goes through with the token now accepted.
    h.clock.advance(Duration::minutes(1));
    h.drain().await;
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 3);
    assert!(h.relay.gate().paused().is_empty());
    let rows = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert!(rows.iter().all(|r| r.status == "done"), "{rows:#?}");
}

/// Salesforce answers 429 with `Retry-After: 18446744073709551615` (u64::MAX seconds): the
/// delivery neither panics (leaving its row leased) nor waits for centuries; the row is
/// rescheduled `relay.max_retry_after` later, the org's calls are held back as long, and the
/// message then goes through.
async fn a_retry_after_of_centuries_is_cut_to_the_maximum(db: TestDb) {
    let h = Harness::start_with(db, "\n[relay]\nmax_retry_after = \"1s\"\n").await;
    h.emulator.inject(
        INTERACTIONS,
        Failure::RetryAfter {
            http_status: 429,
            seconds: u64::MAX,
        },
        1,
    );
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "r-1", &USER[1..], Some("hello")),
    )
    .await;
    let now = h.clock.now();
    h.drain().await;
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 1);
    let rows = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.attempts == 1)
        .unwrap_or_else(|| panic!("the refused row is pending: {rows:#?}"));
    assert_eq!(row.status, "pending", "not leased, not dead: {row:#?}");
    // The schedule's first step (1 s ± 20 %) or the cut Retry-After (1 s), whichever is longer.
    assert!(
        row.next_attempt_at >= now + Duration::seconds(1)
            && row.next_attempt_at <= now + Duration::milliseconds(1200),
        "{:?} after {now:?}",
        row.next_attempt_at
    );
    assert_eq!(audit(&h, "outbox.retry_scheduled").await.len(), 1);
    // Once due, it goes through (the hold on the org's calls lasts at most a second).
    h.clock.advance(Duration::minutes(1));
    let started = std::time::Instant::now();
    h.drain().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(h.emulator.requests_to(INTERACTIONS).len(), 2);
    let rows = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert!(rows.iter().all(|r| r.status == "done"), "{rows:#?}");
}
