//! Partner-owned routing (CCaaS) against the emulators, on both backends.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::time::{Duration, Instant};

use byocd::{
    relay::Settled,
    sandbox::rep::TransferTarget,
    store::{AuditFilter, OutboxFilter, OutboxItem, Store, relay::kind},
};
use serde_json::Value;
use support::{
    TestDb,
    channels::RCS_CHANNEL,
    harness::kaleyra,
    outbound::Outbound,
    salesforce::{CC_ADDRESS, FLOW, QUEUE, REP_1, REP_2, REP_3},
};

/// The routing calls the emulator received, in order: (method and path, body).
fn routing_calls(h: &Outbound) -> Vec<(String, Value)> {
    h.salesforce
        .requests()
        .into_iter()
        .filter(|r| {
            [
                "/api/v1/consent",
                "/api/v1/route",
                "/api/v1/agentWork",
                "/api/v1/routingResult",
            ]
            .contains(&r.path.as_str())
        })
        .map(|r| {
            (
                format!("{} {}", r.method, r.path),
                r.body.unwrap_or_default(),
            )
        })
        .collect()
}

/// A new end user writes on the CCaaS channel; returns their number.
async fn new_session(h: &Outbound, n: usize) -> String {
    let user = format!("+4477009003{n:02}");
    h.webhook(
        RCS_CHANNEL,
        &kaleyra(
            "USER_MESSAGE",
            &format!("mo-{n}"),
            &user[1..],
            Some("I need help with my order"),
        ),
    )
    .await;
    user
}

fn names(calls: &[(String, Value)]) -> Vec<&str> {
    calls.iter().map(|(c, _)| c.as_str()).collect()
}

async fn each_policy_routes_a_new_session_with_the_right_calls_in_order(first: TestDb) {
    // One database per policy (each policy is its own configuration), of the same backend.
    let postgres = !first.url.starts_with("sqlite:");
    let mut first = Some(first);
    for (policy, expected_info) in [
        ("policy = \"channel-default\"", None),
        (
            &*format!("policy = \"queue\"\nqueue_id = \"{QUEUE}\""),
            Some(serde_json::json!({ "queueId": QUEUE })),
        ),
        (
            &*format!(
                "policy = \"flow\"\nflow_id = \"{FLOW}\"\nfallback_queue_id = \"{QUEUE}\"\n[routing.attributes]\nTopic = \"message\"\nSource = \"=whatsapp\""
            ),
            Some(serde_json::json!({
                "flow": { "flowId": FLOW, "queueId": QUEUE },
                "routingAttributes": { "Topic": "I need help with my order", "Source": "whatsapp" }
            })),
        ),
    ] {
        let db = match first.take() {
            Some(db) => db,
            None if postgres => TestDb::postgres().await,
            None => TestDb::sqlite().await,
        };
        let h = Outbound::start_with_routing(db, "", policy).await;
        new_session(&h, 1).await;
        h.drain().await;
        let calls = routing_calls(&h);
        assert_eq!(
            names(&calls),
            ["PATCH /api/v1/consent", "POST /api/v1/route"],
            "{policy}"
        );
        assert_eq!(calls[0].1["consentStatus"], "ImplicitlyOptedIn");
        assert_eq!(calls[1].1["routingType"], "Initial");
        match &expected_info {
            None => assert!(calls[1].1.get("routingInfo").is_none(), "{policy}"),
            Some(info) => assert_eq!(&calls[1].1["routingInfo"], info, "{policy}"),
        }
        // A second message in the same session routes nothing more.
        h.webhook(
            RCS_CHANNEL,
            &kaleyra("USER_MESSAGE", "mo-again", "447700900301", Some("hello?")),
        )
        .await;
        h.drain().await;
        assert_eq!(routing_calls(&h).len(), 2, "{policy}");
    }
}

fn pool(capacity: u32) -> String {
    format!(
        "policy = \"agents\"\nagents = [\n  {{ user_id = \"{REP_1}\", capacity = {capacity} }},\n  {{ user_id = \"{REP_2}\", capacity = {capacity} }},\n  {{ user_id = \"{REP_3}\", capacity = {capacity} }},\n]\ncapacity_weight = 1.0\nmax_attempts = 3\nfallback_queue_id = \"{QUEUE}\""
    )
}

async fn a_pool_spreads_thirty_sessions_by_load_and_a_decline_reroutes(db: TestDb) {
    let h = Outbound::start_with_routing(db, "", &pool(11)).await;
    for n in 0..30 {
        new_session(&h, n).await;
    }
    h.drain().await;
    let calls = routing_calls(&h);
    let offers: Vec<&Value> = calls
        .iter()
        .filter(|(c, _)| c == "POST /api/v1/agentWork")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(offers.len(), 30);
    let per_rep = |rep: &str| offers.iter().filter(|b| b["userId"] == rep).count();
    assert_eq!(
        (per_rep(REP_1), per_rep(REP_2), per_rep(REP_3)),
        (10, 10, 10)
    );
    assert_eq!(offers[0]["capacityWeight"], 1.0);
    assert_eq!(offers[0]["routingContext"]["routingType"], "Initial");
    // Each offer follows its own /route, whose correlation id it carries.
    let first_route = calls
        .iter()
        .position(|(c, _)| c == "POST /api/v1/route")
        .unwrap();
    let first_offer = calls
        .iter()
        .position(|(c, _)| c == "POST /api/v1/agentWork")
        .unwrap();
    assert!(first_route < first_offer);

    // The first rep declines the first session: it goes to the least-loaded rep not yet tried.
    let user = "+447700900300";
    let conversation = h.salesforce.conversation_of(CC_ADDRESS, user).unwrap();
    let work = conversation.agent_works[0].clone();
    h.rep
        .entry(
            (CC_ADDRESS, user),
            "RoutingWorkResult",
            serde_json::json!({ "workId": work.id, "workType": "Declined" }),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_WORK_RESULT, 1).await;
    h.drain().await;
    let offers: Vec<Value> = routing_calls(&h)
        .into_iter()
        .filter(|(c, _)| c == "POST /api/v1/agentWork")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(offers.len(), 31, "one more offer after the decline");
    let again = &offers[30];
    assert_eq!(again["workItemId"], conversation.sessions[0].id.as_str());
    assert_ne!(
        again["userId"],
        work.user_id.as_str(),
        "not the rep who declined"
    );
}

async fn a_transfer_is_answered_in_time_even_when_route_is_slow_and_an_unknown_queue_fails_in_time(
    db: TestDb,
) {
    let h = Outbound::start_with_routing(db, "", "policy = \"channel-default\"").await;
    let user = new_session(&h, 7).await;
    h.drain().await;
    let before = routing_calls(&h).len();

    // The rep transfers to a queue; Salesforce's /route takes 20 s.
    h.salesforce
        .delay("/api/v1/route", Duration::from_secs(20), 1);
    let started = Instant::now();
    h.rep
        .transfer_request(
            (CC_ADDRESS, user.as_str()),
            &TransferTarget::Queue(QUEUE.into()),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_REQUEST, 1).await;
    h.drain().await;
    let elapsed = started.elapsed();
    eprintln!("transfer with a 20 s /route answered after {elapsed:?}");
    let calls = routing_calls(&h)[before..].to_vec();
    assert_eq!(
        names(&calls),
        ["POST /api/v1/route", "POST /api/v1/routingResult"]
    );
    assert_eq!(calls[0].1["routingType"], "Transfer");
    assert_eq!(calls[0].1["routingInfo"]["queueId"], QUEUE);
    assert_eq!(calls[1].1["success"], true);
    assert!(calls[1].1.get("errorMessage").is_none());

    // A transfer to a rep: the AgentWork carries the request's correlation id.
    let request = h
        .rep
        .transfer_request(
            (CC_ADDRESS, user.as_str()),
            &TransferTarget::User(REP_2.into()),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_REQUEST, 2).await;
    h.drain().await;
    let calls = routing_calls(&h);
    let offer = calls
        .iter()
        .rev()
        .find(|(c, _)| c == "POST /api/v1/agentWork")
        .unwrap();
    assert_eq!(offer.1["userId"], REP_2);
    assert_eq!(
        offer.1["routingContext"]["routingCorrelationId"],
        request.event_id.as_str()
    );
    assert_eq!(calls.last().unwrap().1["success"], true);

    // A transfer to a queue Salesforce does not know: success false, with the reason.
    h.rep
        .transfer_request(
            (CC_ADDRESS, user.as_str()),
            &TransferTarget::Queue("00G00000000NOPE".into()),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_REQUEST, 3).await;
    h.drain().await;
    let last = routing_calls(&h).pop().unwrap();
    assert_eq!(last.0, "POST /api/v1/routingResult");
    assert_eq!(last.1["success"], false);
    assert!(
        last.1["errorMessage"].as_str().unwrap().contains("10032"),
        "{}",
        last.1["errorMessage"]
    );
}

async fn an_unanswered_offer_goes_to_the_next_rep_and_an_abandoned_routing_is_cleared(db: TestDb) {
    let routing = format!(
        "policy = \"agents\"\nagents = [\n  {{ user_id = \"{REP_1}\", capacity = 5 }},\n  {{ user_id = \"{REP_2}\", capacity = 5 }},\n]\nmax_attempts = 2\noffer_timeout = \"30s\""
    );
    let h = Outbound::start_with_routing(db, "", &routing).await;
    let user = new_session(&h, 40).await;
    h.drain().await;
    let first = h
        .salesforce
        .conversation_of(CC_ADDRESS, &user)
        .unwrap()
        .agent_works[0]
        .clone();
    assert_eq!(first.user_id, REP_1);

    // Nobody answers for 31 s: the offer is cancelled and the next rep gets it.
    h.clock.advance(chrono::Duration::seconds(31));
    h.drain().await;
    let calls = routing_calls(&h);
    let tail: Vec<_> = calls.iter().rev().take(2).rev().cloned().collect();
    assert_eq!(
        names(&tail),
        ["PATCH /api/v1/agentWork", "POST /api/v1/agentWork"]
    );
    assert_eq!(tail[0].1["workId"], first.id.as_str());
    assert_eq!(tail[0].1["status"], "Cancel");
    assert_eq!(tail[1].1["userId"], REP_2);

    // The second rep declines and the pool is spent with no fallback queue: the pending routing
    // is cleared.
    let second = h
        .salesforce
        .conversation_of(CC_ADDRESS, &user)
        .unwrap()
        .agent_works
        .last()
        .unwrap()
        .clone();
    h.rep
        .entry(
            (CC_ADDRESS, user.as_str()),
            "RoutingWorkResult",
            serde_json::json!({ "workId": second.id, "workType": "Declined" }),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_WORK_RESULT, 1).await;
    h.drain().await;
    let delete = h
        .salesforce
        .requests_to("/api/v1/route")
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("DELETE /route");
    assert_eq!(delete.body.unwrap()["cancelReason"], "Unavailable");
    // The check of the second offer, once due, finds it answered (declined) and does nothing.
    h.clock.advance(chrono::Duration::seconds(31));
    h.drain().await;
    assert_eq!(
        routing_calls(&h)
            .iter()
            .filter(|(c, _)| c == "POST /api/v1/agentWork")
            .count(),
        2
    );
}

async fn after_a_transfer_to_another_rep_the_previous_rep_is_removed(db: TestDb) {
    let routing = format!(
        "policy = \"agents\"\nagents = [{{ user_id = \"{REP_1}\", capacity = 5 }}]\nremove_previous_agent = true"
    );
    let h = Outbound::start_with_routing(db, "", &routing).await;
    let user = new_session(&h, 50).await;
    h.drain().await;
    let work = h
        .salesforce
        .conversation_of(CC_ADDRESS, &user)
        .unwrap()
        .agent_works[0]
        .clone();
    // The rep accepts: Salesforce says so on the platform event.
    assert!(h.salesforce.rep_accepts_work(&work.id));
    h.rep
        .entry(
            (CC_ADDRESS, user.as_str()),
            "RoutingWorkResult",
            serde_json::json!({ "workId": work.id, "workType": "Accepted" }),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_WORK_RESULT, 1).await;
    h.drain().await;
    // The rep transfers the session to a colleague.
    h.rep
        .transfer_request(
            (CC_ADDRESS, user.as_str()),
            &TransferTarget::User(REP_3.into()),
        )
        .unwrap();
    h.wait_rows(kind::ROUTING_REQUEST, 1).await;
    h.drain().await;
    let calls = routing_calls(&h);
    let tail: Vec<_> = calls.iter().rev().take(2).rev().cloned().collect();
    assert_eq!(
        names(&tail),
        ["POST /api/v1/agentWork", "POST /api/v1/routingResult"]
    );
    let removed = h.salesforce.requests_to("/api/v1/participant");
    assert_eq!(removed.len(), 1);
    let body = removed[0].body.clone().unwrap();
    assert_eq!(body["operation"], "Remove");
    assert_eq!(body["participants"][0]["subject"], REP_1);
    assert_eq!(body["participants"][0]["role"], "Agent");
}

/// The session's `routing.initial` row.
async fn initial_row(h: &Outbound) -> OutboxItem {
    h.store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == kind::ROUTING_INITIAL)
        .expect("a routing.initial row")
}

/// Waits (up to 20 s) until the subscriber has applied the session's end locally.
async fn wait_ended(h: &Outbound, session: uuid::Uuid) {
    for _ in 0..400 {
        let detail = h.store.session(session).await.unwrap().unwrap();
        if detail.summary.status == "ended" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session end never reached the store");
}

/// The session's `routing.skipped_session_ended` audit rows.
async fn skipped_audit(h: &Outbound, session: uuid::Uuid) -> Vec<Value> {
    h.store
        .audit(&AuditFilter {
            kind: Some("routing.skipped_session_ended".into()),
            session_id: Some(session),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.detail)
        .collect()
}

/// Checks what a routing step stopped by the session's end leaves behind: its row finished
/// (not dead, not reconciled) after one attempt, the routing recorded as cancelled, one audit
/// row naming the call it stopped before.
async fn assert_stopped_before(h: &Outbound, row: &OutboxItem, session: uuid::Uuid, call: &str) {
    let after = h.store.outbox_item(row.id).await.unwrap().unwrap();
    assert_eq!(after.status, "done", "{after:?}");
    assert_eq!(after.attempts, 1, "no retry: {after:?}");
    let routings = h.store.routings_of_session(session).await.unwrap();
    assert_eq!(routings.len(), 1, "{routings:?}");
    assert_eq!(routings[0].routing.status, "Cancelled");
    assert!(
        routings[0]
            .routing
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("ended")),
        "{routings:?}"
    );
    let audit = skipped_audit(h, session).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["before"], call, "{audit:?}");
    assert_eq!(audit[0]["outbox_id"], row.id, "{audit:?}");
    assert_eq!(audit[0]["session_status"], "ended", "{audit:?}");
}

async fn a_session_the_rep_ended_before_its_routing_is_not_routed(db: TestDb) {
    let h = Outbound::start_with_routing(db, "", &pool(5)).await;
    let user = new_session(&h, 60).await;
    // The first message goes to Salesforce; its routing is queued, not yet sent.
    assert_eq!(h.relay.step().await.len(), 1);
    let row = initial_row(&h).await;
    assert_eq!(row.status, "pending");
    let session = row.session_id.unwrap();
    // The rep ends the session meanwhile.
    h.rep.end_session((CC_ADDRESS, user.as_str())).unwrap();
    wait_ended(&h, session).await;

    let settled = h.drain().await;
    assert_eq!(
        names(&routing_calls(&h)),
        Vec::<&str>::new(),
        "no consent, /route or /agentWork for an ended session"
    );
    assert_eq!(settled, [(row.id, Settled::Done)]);
    assert_stopped_before(&h, &row, session, "PATCH /consent").await;
}

async fn a_session_ended_while_consent_is_sent_stops_before_route(db: TestDb) {
    let h = Outbound::start_with_routing(db, "", &pool(5)).await;
    let user = new_session(&h, 61).await;
    assert_eq!(h.relay.step().await.len(), 1);
    let row = initial_row(&h).await;
    let session = row.session_id.unwrap();
    // Consent takes 5 s at Salesforce; the rep ends the session while it is under way.
    h.salesforce
        .delay("/api/v1/consent", Duration::from_secs(5), 1);
    let relay = h.relay.clone();
    let step = tokio::spawn(async move { relay.step().await });
    for _ in 0..400 {
        if !h.salesforce.requests_to("/api/v1/consent").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.rep.end_session((CC_ADDRESS, user.as_str())).unwrap();
    wait_ended(&h, session).await;
    assert!(
        !step.is_finished(),
        "the session ended only after consent was answered"
    );

    let settled = step.await.unwrap();
    assert_eq!(names(&routing_calls(&h)), ["PATCH /api/v1/consent"]);
    assert_eq!(settled, [(row.id, Settled::Done)]);
    assert_stopped_before(&h, &row, session, "POST /route").await;
}

/// A routing step's Salesforce failure is recorded like every other job's: with the `RequestId`
/// of the failed attempt (the routing module once had a copy of the conversion that dropped it).
async fn a_failed_routing_call_keeps_its_request_id(db: TestDb) {
    let h = Outbound::start_with_routing(db, "", &pool(5)).await;
    new_session(&h, 62).await;
    assert_eq!(h.relay.step().await.len(), 1);
    let row = initial_row(&h).await;
    h.salesforce.inject(
        "/api/v1/consent",
        byocd::sandbox::salesforce::Failure::RetryAfter {
            http_status: 429,
            seconds: 1,
        },
        1,
    );
    assert_eq!(h.relay.step().await, [(row.id, Settled::Retry)]);
    let after = h.store.outbox_item(row.id).await.unwrap().unwrap();
    let error = after.last_error.unwrap_or_default();
    let request_id = h.salesforce.requests_to("/api/v1/consent")[0]
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("requestid"))
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    assert!(
        !request_id.is_empty() && error.ends_with(&format!("(RequestId {request_id})")),
        "{error} / {request_id}"
    );
}

on_both_backends!(
    a_failed_routing_call_keeps_its_request_id,
    a_session_the_rep_ended_before_its_routing_is_not_routed,
    a_session_ended_while_consent_is_sent_stops_before_route,
    after_a_transfer_to_another_rep_the_previous_rep_is_removed,
    an_unanswered_offer_goes_to_the_next_rep_and_an_abandoned_routing_is_cleared,
    each_policy_routes_a_new_session_with_the_right_calls_in_order,
    a_pool_spreads_thirty_sessions_by_load_and_a_decline_reroutes,
    a_transfer_is_answered_in_time_even_when_route_is_slow_and_an_unknown_queue_fails_in_time,
);
