//! The stale-session sweeper, with time injected (no sleeps), on both backends.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::sync::Arc;

use byocd::{
    lifecycle::sweeper::Sweeper,
    sandbox::salesforce::SessionStatus,
    store::{AuditFilter, OutboxFilter, Store, relay::kind},
};
use chrono::Duration;
use support::{
    TestDb,
    channels::RCS_CHANNEL,
    harness::{Harness, kaleyra},
    salesforce::CC_ADDRESS,
};

fn sweeper(h: &Harness) -> Sweeper {
    Sweeper::new(
        h.store.clone(),
        h.config.channels.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(tokio::sync::Notify::new()),
    )
}

async fn open_session(h: &Harness, n: usize) -> String {
    let user = format!("+4477009004{n:02}");
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", &format!("s-{n}"), &user[1..], Some("hi")),
    )
    .await;
    h.drain().await;
    user
}

async fn idle_sessions_are_inactivated_then_ended_with_the_documented_body(db: TestDb) {
    let h = Harness::start(db).await;
    let user = open_session(&h, 1).await;
    let channel = h.config.channel(RCS_CHANNEL).unwrap().clone();
    let sweeper = sweeper(&h);
    let conversation = h.emulator.conversation_of(CC_ADDRESS, &user).unwrap();
    let session = conversation.current_session().unwrap().id.clone();

    // Not idle long enough: nothing.
    h.clock.advance(Duration::minutes(29));
    assert_eq!(
        sweeper.sweep(&channel).await.unwrap().unwrap().inactivated,
        0
    );

    // Past inactivate_after (30 min).
    h.clock.advance(Duration::minutes(2));
    let report = sweeper.sweep(&channel).await.unwrap().unwrap();
    assert_eq!((report.inactivated, report.ended), (1, 0));
    assert_eq!(
        sweeper.sweep(&channel).await.unwrap().unwrap().inactivated,
        0,
        "a second sweep finds nothing"
    );
    h.drain().await;
    let calls = h.emulator.requests_to("/api/v1/messagingSession");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].body.clone().unwrap(),
        serde_json::json!({
            "channelAddressIdentifier": CC_ADDRESS,
            "endUserClientId": user,
            "conversationIdentifier": conversation.id,
            "sessionId": session,
            "operation": "Inactivate",
            "operationBy": "System",
        })
    );
    assert_eq!(
        h.emulator
            .conversation(&conversation.id)
            .unwrap()
            .session(&session)
            .unwrap()
            .status,
        SessionStatus::Inactive
    );

    // Past end_after (24 h).
    h.clock.advance(Duration::hours(24));
    let report = sweeper.sweep(&channel).await.unwrap().unwrap();
    assert_eq!((report.inactivated, report.ended), (0, 1));
    h.drain().await;
    let calls = h.emulator.requests_to("/api/v1/messagingSession");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].body.clone().unwrap()["operation"], "End");
    assert_eq!(calls[1].body.clone().unwrap()["operationBy"], "System");
    assert_eq!(
        h.emulator
            .conversation(&conversation.id)
            .unwrap()
            .session(&session)
            .unwrap()
            .status,
        SessionStatus::Ended
    );
    // An ended session is never swept again.
    h.clock.advance(Duration::hours(48));
    let report = sweeper.sweep(&channel).await.unwrap().unwrap();
    assert_eq!((report.inactivated, report.ended), (0, 0));
    assert!(sweeper.last_success().contains_key(RCS_CHANNEL));
}

async fn a_session_salesforce_already_ended_is_reconciled_not_retried(db: TestDb) {
    let h = Harness::start(db).await;
    let user = open_session(&h, 2).await;
    let channel = h.config.channel(RCS_CHANNEL).unwrap().clone();
    let conversation = h.emulator.conversation_of(CC_ADDRESS, &user).unwrap();
    // The rep ended it in Salesforce; byocd did not hear of it.
    assert!(
        h.emulator
            .rep_ends_session(&conversation.current_session().unwrap().id)
    );
    h.clock.advance(Duration::hours(25));
    sweeper(&h).sweep(&channel).await.unwrap();
    h.drain().await;
    let row = h
        .store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == kind::ISA_SESSION_OPERATION)
        .unwrap();
    assert_eq!(row.status, "done", "reconciled, not dead-lettered");
    let reconciled = h
        .store
        .audit(&AuditFilter {
            kind: Some("session.reconciled".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reconciled.len(), 1);
    assert_eq!(reconciled[0].entry.detail["reason"], "SESSION_NOT_FOUND");
}

on_both_backends!(
    idle_sessions_are_inactivated_then_ended_with_the_documented_body,
    a_session_salesforce_already_ended_is_reconciled_not_retried,
    readiness_fails_when_a_channels_sweep_is_stale,
    unsubscribe_ends_the_session_by_the_end_user_and_opts_out,
    a_stop_keyword_is_relayed_then_ends_the_session,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_end_each_stale_session_exactly_once() {
    let h = Harness::start(TestDb::postgres().await).await;
    for n in 0..12 {
        open_session(&h, 10 + n).await;
    }
    let channel = h.config.channel(RCS_CHANNEL).unwrap().clone();
    h.clock.advance(Duration::hours(25));
    // A second "replica": its own store connection pool on the same database and clock.
    let other_store = byocd::store::AnyStore::open(
        &h.db.url,
        byocd::store::StoreOptions {
            clock: Arc::new(h.clock.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let a = sweeper(&h);
    let b = Sweeper::new(
        other_store,
        h.config.channels.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let mut ended = 0;
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(a.sweep(&channel), b.sweep(&channel));
        for r in [ra.unwrap(), rb.unwrap()].into_iter().flatten() {
            ended += r.ended;
        }
    }
    assert_eq!(
        ended, 12,
        "each stale session ended once across both replicas"
    );
    h.drain().await;
    let operations = h
        .store
        .outbox(&OutboxFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kind::ISA_SESSION_OPERATION)
        .count();
    assert_eq!(operations, 12);
    assert_eq!(h.emulator.requests_to("/api/v1/messagingSession").len(), 12);
}

/// `/readyz` fails, naming the channel, once a channel's sweep has gone three scheduled runs
/// without succeeding, and recovers with the next successful sweep.
async fn readiness_fails_when_a_channels_sweep_is_stale(db: TestDb) {
    let h = Harness::start(db).await;
    let readyz = || async {
        let response = reqwest::get(format!("{}/readyz", h.url)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["sweeps"].as_array().unwrap().len(),
        h.config.channels.len()
    );
    assert!(body["sweeps"][0]["stale"] == false);

    // Two missed runs (the default schedule is every minute): still ready.
    h.clock.advance(Duration::seconds(150));
    assert_eq!(readyz().await.0, 200);

    // The third missed run, and its grace, have passed: not ready, every channel named.
    h.clock.advance(Duration::seconds(70));
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    for channel in &h.config.channels {
        assert!(reason.contains(&channel.name), "{reason}");
    }

    // Sweep one channel: it is fine again, the others still stale.
    let first = h.config.channels[0].clone();
    h.sweeper.sweep(&first).await.unwrap();
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    let still_stale = body["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stale"] == true)
        .count();
    assert_eq!(still_stale, h.config.channels.len() - 1);
    let fresh = body["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["channel"] == first.name.as_str())
        .unwrap();
    assert_eq!(fresh["stale"], false);

    // Every channel swept: ready again.
    for channel in &h.config.channels {
        h.sweeper.sweep(channel).await.unwrap();
    }
    assert_eq!(readyz().await.0, 200);
}

/// Kaleyra `UNSUBSCRIBE` ends the open session as the end user and records the opt-out as
/// consent (the channel's consent owner is Partner); the sweeper leaves the session alone.
async fn unsubscribe_ends_the_session_by_the_end_user_and_opts_out(db: TestDb) {
    let h = Harness::start(db).await;
    let user = open_session(&h, 3).await;
    let conversation = h.emulator.conversation_of(CC_ADDRESS, &user).unwrap();
    let session = conversation.current_session().unwrap().id.clone();
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("UNSUBSCRIBE", "u-3", &user[1..], None),
    )
    .await;
    h.drain().await;
    let calls = h.emulator.requests_to("/api/v1/messagingSession");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].body.clone().unwrap(),
        serde_json::json!({
            "channelAddressIdentifier": CC_ADDRESS,
            "endUserClientId": user,
            "conversationIdentifier": conversation.id,
            "sessionId": session,
            "operation": "End",
            "operationBy": "EndUser",
        })
    );
    let now = h.emulator.conversation(&conversation.id).unwrap();
    assert_eq!(now.session(&session).unwrap().status, SessionStatus::Ended);
    assert_eq!(now.consent_status.as_deref(), Some("OptedOut"));
    let opted_out = h
        .store
        .audit(&AuditFilter {
            kind: Some("end_user.opted_out".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(opted_out.len(), 1);
    assert_eq!(opted_out[0].entry.detail["via"], "UNSUBSCRIBE");
    // Nothing is left for the sweeper.
    h.clock.advance(Duration::hours(25));
    let report = sweeper(&h)
        .sweep(h.config.channel(RCS_CHANNEL).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.inactivated, report.ended), (0, 0));
    // The same webhook again changes nothing.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("UNSUBSCRIBE", "u-3", &user[1..], None),
    )
    .await;
    h.drain().await;
    assert_eq!(h.emulator.requests_to("/api/v1/messagingSession").len(), 1);
}

/// A configured keyword is relayed to the rep like any message, then ends the session as the
/// end user; other text, and the keyword inside a sentence, does not.
async fn a_stop_keyword_is_relayed_then_ends_the_session(db: TestDb) {
    let h = Harness::start_rcs(
        db,
        "",
        "\n[session]\nopt_out_keywords = [\"stop\", \"Arret\"]\n",
    )
    .await;
    let user = "+447700900431";
    h.webhook(
        RCS_CHANNEL,
        &kaleyra(
            "USER_MESSAGE",
            "k-1",
            &user[1..],
            Some("please stop calling"),
        ),
    )
    .await;
    h.drain().await;
    assert!(
        h.emulator
            .requests_to("/api/v1/messagingSession")
            .is_empty()
    );
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "k-2", &user[1..], Some("  Stop ")),
    )
    .await;
    h.drain().await;
    let texts: Vec<String> = h
        .emulator
        .requests_to("/api/v1/interactions")
        .iter()
        .map(|r| r.body.clone().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains("Stop"), "{}", texts[1]);
    let calls = h.emulator.requests_to("/api/v1/messagingSession");
    assert_eq!(calls.len(), 1);
    let body = calls[0].body.clone().unwrap();
    assert_eq!(body["operation"], "End");
    assert_eq!(body["operationBy"], "EndUser");
    let conversation = h.emulator.conversation_of(CC_ADDRESS, user).unwrap();
    assert_eq!(
        body["sessionId"],
        conversation.sessions.last().unwrap().id.as_str()
    );
    assert_eq!(
        conversation.sessions.last().unwrap().status,
        SessionStatus::Ended
    );
    assert_eq!(conversation.consent_status.as_deref(), Some("OptedOut"));
    // Writing again opens a new session.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "k-3", &user[1..], Some("hello again")),
    )
    .await;
    h.drain().await;
    let conversation = h.emulator.conversation_of(CC_ADDRESS, user).unwrap();
    assert_eq!(
        conversation.current_session().unwrap().status,
        SessionStatus::Active
    );
}
