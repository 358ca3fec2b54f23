//! End user → Salesforce through the durable outbox, on both backends, against the emulator.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::collections::HashMap;

use byocd::{
    relay::Settled,
    sandbox::salesforce::Failure,
    store::{AuditFilter, OutboxFilter, Severity, Store},
};
use chrono::Duration;
use support::{
    TestDb,
    harness::{Harness, RCS, WA, kaleyra, wa_media, wa_status, wa_text},
    salesforce::{CC_ADDRESS, MSG_ADDRESS},
};

/// The interactions the emulator holds for an end user, as (entry type or interaction type, id).
fn entries(h: &Harness, address: &str, end_user: &str) -> Vec<(String, String)> {
    h.emulator
        .conversation_of(address, end_user)
        .map(|c| {
            c.entries
                .iter()
                .map(|e| {
                    (
                        e.entry_type.clone().unwrap_or(e.interaction_type.clone()),
                        e.id.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn texts(h: &Harness, address: &str, end_user: &str) -> Vec<String> {
    h.emulator
        .conversation_of(address, end_user)
        .map(|c| {
            c.entries
                .iter()
                .filter_map(|e| e.text().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn a_text_message_reaches_salesforce_and_the_session_learns_its_ids(db: TestDb) {
    let h = Harness::start(db).await;
    let answer = h
        .webhook(WA, &wa_text("umid-1", "+447700900001", "Hello there"))
        .await;
    assert_eq!(answer["new"], 1);
    // Nothing has been sent yet: the webhook was answered once the work was committed.
    assert!(h.emulator.requests_to("/api/v1/interactions").is_empty());

    let settled = h.drain().await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1, Settled::Done);
    let call = h
        .emulator
        .requests_to("/api/v1/interactions")
        .pop()
        .unwrap();
    let body = call.body.unwrap();
    assert_eq!(body["to"], MSG_ADDRESS);
    assert_eq!(body["from"], "+447700900001");
    let payload = &body["interactions"][0]["payload"];
    assert_eq!(
        payload["abstractMessage"]["staticContent"]["text"],
        "Hello there"
    );
    assert_eq!(payload["id"], payload["abstractMessage"]["id"]);

    let conversation = h
        .emulator
        .conversation_of(MSG_ADDRESS, "+447700900001")
        .unwrap();
    let row = &h.store.outbox(&OutboxFilter::default()).await.unwrap()[0];
    assert_eq!(row.status, "done");
    let context = h
        .store
        .conversation_context(row.conversation_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        context.conversation_identifier.as_deref(),
        Some(conversation.id.as_str())
    );
    assert_eq!(
        context.work_item_id.as_deref(),
        Some(conversation.current_session().unwrap().id.as_str())
    );
    let kinds: Vec<_> = h
        .store
        .audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.kind)
        .filter(|k| k.starts_with("inbound") || k.starts_with("outbox"))
        .collect();
    assert_eq!(kinds, ["inbound.message", "outbox.delivered"]);
    let delivered = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbox.delivered".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let detail = &delivered[0].entry.detail;
    assert_eq!(detail["endpoint"], "POST /api/v1/interactions");
    assert_eq!(detail["status"], 202);
    assert_eq!(detail["attempt"], 1);
    assert!(detail["request_ids"][0].is_string());
}

async fn a_repeated_webhook_adds_nothing(db: TestDb) {
    let h = Harness::start(db).await;
    let body = wa_text("umid-dup", "+447700900002", "once");
    assert_eq!(h.webhook(WA, &body).await["new"], 1);
    for _ in 0..4 {
        let again = h.webhook(WA, &body).await;
        assert_eq!(again["new"], 0);
        assert_eq!(again["duplicates"], 1);
    }
    h.drain().await;
    assert_eq!(entries(&h, MSG_ADDRESS, "+447700900002").len(), 1);
    assert_eq!(
        h.store
            .outbox(&OutboxFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A PNG signature padded to `len` bytes.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, 0);
    bytes
}

fn redirect(to: &'static str) -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::FOUND,
        [(axum::http::header::LOCATION, to)],
    )
}

/// Serves files for media tests.
async fn file_server() -> String {
    use axum::{Router, http::header::CONTENT_TYPE, routing::get};
    let app = Router::new()
        .route(
            "/photo.png",
            get(|| async { ([(CONTENT_TYPE, "image/png")], png(2048)) }),
        )
        .route(
            "/unlabelled",
            get(|| async { ([(CONTENT_TYPE, "application/octet-stream")], png(100)) }),
        )
        .route(
            "/page.png",
            get(|| async {
                (
                    [(CONTENT_TYPE, "image/png")],
                    "<html><script>alert(1)</script></html>",
                )
            }),
        )
        .route("/to-photo", get(|| async { redirect("/photo.png") }))
        .route(
            "/to-metadata",
            get(|| async { redirect("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/to-elsewhere",
            get(|| async { redirect("https://attacker.example/collect") }),
        )
        .route("/loop", get(|| async { redirect("/loop") }))
        .route(
            "/huge.mp4",
            get(|| async { ([(CONTENT_TYPE, "video/mp4")], vec![0u8; 25_000_001]) }),
        )
        .route(
            "/sticker.webp",
            get(|| async { ([(CONTENT_TYPE, "image/webp")], vec![1u8; 100]) }),
        )
        .route(
            "/gone.png",
            get(|| async { axum::http::StatusCode::NOT_FOUND }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn media_is_forwarded_as_an_attachment_or_explained_to_the_rep(db: TestDb) {
    let h = Harness::start(db).await;
    let files = file_server().await;
    let user = "+447700900003";
    h.webhook(
        WA,
        &wa_media(
            "m-1",
            user,
            "Image",
            &format!("{files}/photo.png"),
            Some("my receipt"),
        ),
    )
    .await;
    h.webhook(
        WA,
        &wa_media("m-2", user, "Video", &format!("{files}/huge.mp4"), None),
    )
    .await;
    h.webhook(
        WA,
        &wa_media("m-3", user, "Image", &format!("{files}/sticker.webp"), None),
    )
    .await;
    h.webhook(
        WA,
        &wa_media("m-4", user, "Image", &format!("{files}/gone.png"), None),
    )
    .await;
    let settled = h.drain().await;
    assert!(
        settled.iter().all(|(_, s)| *s == Settled::Done),
        "{settled:?}"
    );

    let conversation = h.emulator.conversation_of(MSG_ADDRESS, user).unwrap();
    assert_eq!(conversation.entries.len(), 4);
    let photo = &conversation.entries[0];
    assert_eq!(photo.interaction_type, "AttachmentInteraction");
    let attachment = photo.attachment.as_ref().unwrap();
    assert_eq!(attachment.length, 2048);
    assert_eq!(attachment.content_type.as_deref(), Some("image/png"));
    assert_eq!(photo.json["text"], "my receipt");
    let told = texts(&h, MSG_ADDRESS, user);
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(told[0].contains("25000000"), "{}", told[0]);
    assert!(told[1].contains("image/webp"), "{}", told[1]);
    assert!(told[2].contains("404"), "{}", told[2]);
    let audited = h
        .store
        .audit(&AuditFilter {
            kind: Some("inbound.media_not_forwarded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 3);
}

async fn typing_starts_at_once_and_stops_after_the_quiet_time_or_before_the_next_message(
    db: TestDb,
) {
    let h = Harness::start(db).await;
    let user = "+447700900004";
    let digits = &user[1..];
    h.webhook(RCS, &kaleyra("COMPOSING", "t-1", digits, None))
        .await;
    h.drain().await;
    assert_eq!(
        entries(&h, CC_ADDRESS, user)
            .iter()
            .map(|e| e.0.as_str())
            .collect::<Vec<_>>(),
        ["TypingStartedIndicator"]
    );
    // Still composing a second later: no second start, the stop waits longer.
    h.clock.advance(Duration::seconds(1));
    h.webhook(RCS, &kaleyra("COMPOSING", "t-2", digits, None))
        .await;
    h.drain().await;
    h.clock.advance(Duration::seconds(4));
    h.drain().await;
    assert_eq!(
        entries(&h, CC_ADDRESS, user).len(),
        1,
        "stop not due before the quiet time"
    );
    h.clock.advance(Duration::seconds(2));
    h.drain().await;
    assert_eq!(
        entries(&h, CC_ADDRESS, user)
            .iter()
            .map(|e| e.0.as_str())
            .collect::<Vec<_>>(),
        ["TypingStartedIndicator", "TypingStoppedIndicator"]
    );

    // Typing then a message at once: the stop goes first, right before the message.
    h.webhook(RCS, &kaleyra("COMPOSING", "t-3", digits, None))
        .await;
    h.webhook(
        RCS,
        &kaleyra("USER_MESSAGE", "t-4", digits, Some("here it is")),
    )
    .await;
    h.drain().await;
    let kinds: Vec<_> = entries(&h, CC_ADDRESS, user)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        kinds,
        [
            "TypingStartedIndicator",
            "TypingStoppedIndicator",
            "TypingStartedIndicator",
            "TypingStoppedIndicator",
            "Message"
        ]
    );
}

async fn receipts_become_coalesced_acknowledgements_and_failures_message_delivery_failed(
    db: TestDb,
) {
    let h = Harness::start(db).await;
    let user = "+447700900005";
    h.webhook(WA, &wa_text("in-1", user, "hi")).await;
    h.drain().await;
    let row = h.store.outbox(&OutboxFilter::default()).await.unwrap()[0].clone();
    let conversation = row.conversation_id.unwrap();
    // Three rep messages went out through 8x8 (the outbound relay records this mapping).
    for (umid, entry) in [
        ("out-1", "rep-entry-1"),
        ("out-2", "rep-entry-2"),
        ("out-3", "rep-entry-3"),
    ] {
        h.store
            .map_outbound_message(WA, umid, entry, conversation)
            .await
            .unwrap();
    }
    h.webhook(WA, &wa_status("out-1", "delivered", None)).await;
    h.webhook(WA, &wa_status("out-2", "delivered", None)).await;
    h.webhook(WA, &wa_status("out-1", "read", None)).await;
    h.webhook(
        WA,
        &wa_status(
            "out-3",
            "undelivered",
            Some((1022, "Message window expired")),
        ),
    )
    .await;
    // A receipt for a message byocd never sent is recorded and ignored.
    h.webhook(WA, &wa_status("someone-else", "delivered", None))
        .await;
    h.drain().await;

    let acks = h.emulator.requests_to("/api/v1/acknowledgement");
    assert_eq!(acks.len(), 1, "three receipts in one call");
    let body = acks[0].body.clone().unwrap();
    let list = body["acknowledgements"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|a| (
                a["acknowledgementType"].as_str().unwrap(),
                a["acknowledgedConversationEntryIdentifier"]
                    .as_str()
                    .unwrap()
            ))
            .collect::<Vec<_>>(),
        [
            ("Delivered", "rep-entry-1"),
            ("Delivered", "rep-entry-2"),
            ("Read", "rep-entry-1")
        ]
    );
    assert_eq!(body["sender"]["subject"], user);

    let failed: Vec<_> = h
        .emulator
        .conversation_of(MSG_ADDRESS, user)
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.entry_type.as_deref() == Some("MessageDeliveryFailed"))
        .collect();
    assert_eq!(failed.len(), 1);
    let payload = &failed[0].json["payload"];
    assert_eq!(payload["failedConversationEntryIdentifier"], "rep-entry-3");
    assert_eq!(payload["errorCode"], "1022");
    assert_eq!(payload["errorMessage"], "Message window expired");
    assert_eq!(payload["recipient"]["role"], "EndUser");

    let unmatched = h
        .store
        .audit(&AuditFilter {
            kind: Some("inbound.receipt_unmatched".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unmatched.len(), 1);
}

async fn salesforce_down_then_back_delivers_everything_once_in_order(db: TestDb) {
    let h = Harness::start(db).await;
    h.emulator.inject(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 503,
            code: 10094,
        },
        12,
    );
    let users: Vec<String> = (0..4).map(|i| format!("+4477009010{i:02}")).collect();
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..5 {
        for user in &users {
            let text = format!("{user} message {n}");
            h.webhook(WA, &wa_text(&format!("{user}-{n}"), user, &text))
                .await;
            sent.entry(user.clone()).or_default().push(text);
        }
    }
    // Retry after retry, moving the clock past each delay, until everything is through.
    let mut rounds = 0;
    loop {
        h.drain().await;
        let pending = h
            .store
            .outbox(&OutboxFilter {
                status: Some("pending".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if pending.is_empty() {
            break;
        }
        rounds += 1;
        assert!(rounds < 20, "still pending after {rounds} rounds");
        h.clock.advance(Duration::minutes(10));
    }
    for user in &users {
        assert_eq!(
            texts(&h, MSG_ADDRESS, user),
            sent[user],
            "{user}: exactly once, in order"
        );
    }
    assert!(
        h.store
            .outbox(&OutboxFilter::default())
            .await
            .unwrap()
            .iter()
            .all(|r| r.status == "done")
    );
    let retries = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbox.retry_scheduled".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!retries.is_empty());
    assert!(
        retries[0].entry.message.contains("10094"),
        "{}",
        retries[0].entry.message
    );
}

/// Salesforce (or a provider) echoing the end user's number and words in its error: neither
/// reaches `last_error` nor the `outbox.retry_scheduled` and `outbox.dead_lettered` rows.
async fn error_texts_that_echo_the_number_or_the_message_are_stripped_before_they_are_kept(
    db: TestDb,
) {
    let h = Harness::start(db).await;
    let number = "+447700900007";
    let words = "meet me at the station tonight";
    for (http_status, code) in [(503, 10094), (400, 10045)] {
        h.emulator.inject(
            "/api/v1/interactions",
            Failure::IsaErrorMessage {
                http_status,
                code,
                message: format!(
                    "entry from {number} (447700900007) rejected: text '{words}' not accepted"
                ),
            },
            1,
        );
    }
    h.webhook(WA, &wa_text("echo-1", number, words)).await;
    let settled = h.drain().await;
    assert_eq!(settled[0].1, Settled::Retry);
    let retried = h.store.outbox_item(settled[0].0).await.unwrap().unwrap();
    h.clock.advance(Duration::minutes(10));
    let settled = h.drain().await;
    assert_eq!(settled[0].1, Settled::Dead);
    let dead = h.store.outbox_item(settled[0].0).await.unwrap().unwrap();

    let rows = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbox".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let kept: Vec<String> = rows
        .iter()
        .filter(|r| r.entry.kind != "outbox.delivered")
        .flat_map(|r| [r.entry.message.clone(), r.entry.detail.to_string()])
        .chain([
            retried.last_error.clone().unwrap(),
            dead.last_error.clone().unwrap(),
        ])
        .collect();
    assert_eq!(
        kept.len(),
        6,
        "two audit rows and two last errors: {kept:#?}"
    );
    for text in &kept {
        for personal in ["7700900007", "station", words] {
            assert!(!text.contains(personal), "`{personal}` kept in: {text}");
        }
        assert!(
            text.contains("[number]") && text.contains("[redacted]"),
            "{text}"
        );
        assert!(
            text.contains("rejected: text"),
            "the rest of the error stays: {text}"
        );
    }
}

async fn a_permanent_error_dead_letters_with_an_alert_and_an_admin_can_send_it_again(db: TestDb) {
    let h = Harness::start(db).await;
    h.emulator.inject(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 400,
            code: 10045,
        },
        1,
    );
    h.webhook(WA, &wa_text("dl-1", "+447700900006", "doomed"))
        .await;
    let settled = h.drain().await;
    assert_eq!(settled[0].1, Settled::Dead);
    let row = h.store.outbox_item(settled[0].0).await.unwrap().unwrap();
    assert_eq!(row.status, "dead");
    assert_eq!(row.last_code.as_deref(), Some("10045"));
    let alerts: Vec<_> = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbox.dead_lettered".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].entry.severity, Severity::Alert);

    // The admin sends it again; this time Salesforce takes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_byocd"))
        .arg("--config")
        .arg(&h.config_dir.main_file)
        .args(["outbox", "retry", &row.id.to_string()])
        .env("BYOCD__DATABASE__URL", &h.db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The command stamped the row with the real time; bring the test clock up to it.
    h.clock.set(chrono::Utc::now() + Duration::seconds(1));
    h.drain().await;
    assert_eq!(texts(&h, MSG_ADDRESS, "+447700900006"), ["doomed"]);
    assert_eq!(
        h.store.outbox_item(row.id).await.unwrap().unwrap().status,
        "done"
    );
}

async fn one_conversation_waits_while_its_earlier_row_retries_others_go_on(db: TestDb) {
    let h = Harness::start(db).await;
    h.emulator.inject(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 503,
            code: 10019,
        },
        1,
    );
    h.webhook(WA, &wa_text("o-1", "+447700900007", "first"))
        .await;
    h.webhook(WA, &wa_text("o-2", "+447700900007", "second"))
        .await;
    h.webhook(WA, &wa_text("o-3", "+447700900008", "other"))
        .await;
    h.drain().await;
    assert!(
        texts(&h, MSG_ADDRESS, "+447700900007").is_empty(),
        "second must wait for first"
    );
    assert_eq!(texts(&h, MSG_ADDRESS, "+447700900008"), ["other"]);
    h.clock.advance(Duration::seconds(5));
    h.drain().await;
    assert_eq!(texts(&h, MSG_ADDRESS, "+447700900007"), ["first", "second"]);
}

/// Issue 15: a new end user's first messages arrive at once (the provider sends them in parallel):
/// every webhook is accepted — none loses a race to create the end user or the conversation — and
/// all of them reach Salesforce, once each, in one conversation per end user.
async fn concurrent_first_messages_of_a_new_end_user_are_all_accepted(db: TestDb) {
    const USERS: usize = 6;
    const AT_ONCE: usize = 16;
    let h = Harness::start(db).await;
    let user = |u: usize| format!("+4477009007{u:02}");
    let client = reqwest::Client::new();
    // Every connection opened first, so the webhooks really arrive together.
    let warm: Vec<_> = (0..USERS * AT_ONCE)
        .map(|_| tokio::spawn(client.get(format!("{}/healthz", h.url)).send()))
        .collect();
    for w in warm {
        w.await.unwrap().unwrap();
    }
    let posts: Vec<_> = (0..AT_ONCE)
        .flat_map(|n| (0..USERS).map(move |u| (u, n)))
        .map(|(u, n)| {
            let request = client
                .post(format!("{}/webhooks/{WA}", h.url))
                .header("Authorization", support::channels::WA_WEBHOOK_AUTH)
                .json(&wa_text(
                    &format!("race-{u}-{n}"),
                    &user(u),
                    &format!("at once {n}"),
                ));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for post in posts {
        statuses.push(post.await.unwrap());
    }
    assert_eq!(
        statuses,
        vec![200; USERS * AT_ONCE],
        "every first message accepted"
    );
    h.drain().await;
    let mut want: Vec<String> = (0..AT_ONCE).map(|n| format!("at once {n}")).collect();
    want.sort();
    for u in 0..USERS {
        let mut got = texts(&h, MSG_ADDRESS, &user(u));
        got.sort();
        assert_eq!(got, want, "all of {}'s messages, once", user(u));
        let conversations = h
            .emulator
            .conversations()
            .into_iter()
            .filter(|c| c.end_user_client_id == user(u))
            .count();
        assert_eq!(conversations, 1);
    }
}

/// Issue 15: webhooks committed together (group commit) are committed once each, and one that
/// cannot be written fails alone: here one names a channel the database does not know, among
/// forty that are fine, all sent at once.
async fn one_bad_webhook_in_a_group_fails_alone(db: TestDb) {
    use byocd::{
        relay::group_commit::{GroupCommit, IntakeWrites},
        store::{EndUserIdentity, IntakeBatch, IntakeEvent, IntakeWork},
    };
    const GOOD: usize = 40;
    let h = Harness::start(db).await;
    let writes = IntakeWrites {
        store: h.store.clone(),
        wake: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    let group = GroupCommit::start(writes, 64, 1, std::time::Duration::from_secs(5));
    let batch = |channel: &str, n: usize| IntakeBatch {
        channel: channel.to_owned(),
        org_id: support::salesforce::ORG_ID.to_owned(),
        events: vec![IntakeEvent {
            event_key: format!("group-{n}"),
            user: Some(EndUserIdentity {
                key: format!("+4477009100{n:02}"),
                msisdn: Some(format!("+4477009100{n:02}")),
                channel_user_id: None,
                display_name: None,
            }),
            at: chrono::Utc::now(),
            work: IntakeWork::OptOut {
                via: "keyword STOP".into(),
            },
        }],
        end_sessions_in_salesforce: false,
        partner_consent: false,
        stale_before: None,
    };
    let commits: Vec<_> = (0..=GOOD)
        .map(|n| {
            let group = group.clone();
            let batch = if n == GOOD / 2 {
                batch("no-such-channel", n)
            } else {
                batch(WA, n)
            };
            tokio::spawn(async move { group.commit(batch).await })
        })
        .collect();
    let mut results = Vec::new();
    for c in commits {
        results.push(c.await.unwrap());
    }
    for (n, result) in results.iter().enumerate() {
        if n == GOOD / 2 {
            assert!(
                result.is_err(),
                "the webhook of an unknown channel was committed"
            );
        } else {
            assert_eq!(result.as_ref().unwrap().new, 1, "webhook {n}: {result:?}");
        }
    }
    // Committed once each: sending them all again finds every one a duplicate.
    for n in (0..=GOOD).filter(|n| *n != GOOD / 2) {
        let again = group.commit(batch(WA, n)).await.unwrap();
        assert_eq!((again.new, again.duplicates), (0, 1), "webhook {n} again");
    }
    let bad_again = group.commit(batch(WA, GOOD / 2)).await.unwrap();
    assert_eq!(bad_again.new, 1, "the failed one was never written");
}

/// Issue 15: the rules see the rows a group gathered before they are inserted, so webhooks
/// committed together (one transaction, one multi-row insert per table) come out exactly as
/// when each is committed alone: typing starts once and its stop is pushed back, then brought
/// forward by the message; two receipts share one acknowledgement; audit rows name the ids.
async fn a_group_commit_writes_what_webhooks_one_by_one_write(db: TestDb) {
    use byocd::{
        clock::Clock,
        domain::inbound,
        store::{EndUserIdentity, IntakeBatch, IntakeEvent, IntakeWork},
    };
    let h = Harness::start(db).await;
    let now = h.clock.now();
    let identity = |user: &str| EndUserIdentity {
        key: user.to_owned(),
        msisdn: Some(user.to_owned()),
        channel_user_id: None,
        display_name: None,
    };
    let batch = |events: Vec<IntakeEvent>| IntakeBatch {
        channel: WA.to_owned(),
        org_id: support::salesforce::ORG_ID.to_owned(),
        events,
        end_sessions_in_salesforce: false,
        partner_consent: false,
        stale_before: None,
    };
    // What each way wrote, per conversation: (kind, due now, receipts in it) by id, and the
    // outbox ids the receipts' and the message's audit rows name.
    let mut outcomes = Vec::new();
    for (user, grouped) in [("+447700900061", false), ("+447700900062", true)] {
        h.webhook(WA, &wa_text(&format!("first-{user}"), user, "hi"))
            .await;
        let first = h.store.outbox(&OutboxFilter::default()).await.unwrap();
        let conversation = first
            .iter()
            .find(|r| r.payload["from"] == user)
            .and_then(|r| r.conversation_id)
            .unwrap();
        for n in 1..=2 {
            h.store
                .map_outbound_message(
                    WA,
                    &format!("{user}-out-{n}"),
                    &format!("{user}-rep-{n}"),
                    conversation,
                )
                .await
                .unwrap();
        }
        let event = |key: &str, work: IntakeWork| IntakeEvent {
            event_key: format!("{user}-{key}"),
            user: Some(identity(user)),
            at: now,
            work,
        };
        let receipt = |n: u32, ack: &str| IntakeWork::Receipt {
            provider_message_id: format!("{user}-out-{n}"),
            acknowledgement: Some(ack.to_owned()),
            failure: None,
            status: ack.to_lowercase(),
        };
        let batches = vec![
            batch(vec![
                event(
                    "typing-1",
                    IntakeWork::Typing {
                        stop_at: now + Duration::seconds(10),
                    },
                ),
                event("receipt-1", receipt(1, "Delivered")),
                event("receipt-2", receipt(2, "Read")),
            ]),
            batch(vec![
                event(
                    "typing-2",
                    IntakeWork::Typing {
                        stop_at: now + Duration::seconds(20),
                    },
                ),
                event(
                    "message",
                    IntakeWork::Message {
                        provider_message_id: format!("{user}-in-2"),
                        entry_id: uuid::Uuid::new_v4(),
                        content: byocd::providers::InboundContent::Text {
                            text: "again".into(),
                        },
                        reply_to: None,
                        opt_out: None,
                    },
                ),
            ]),
        ];
        let reports = if grouped {
            inbound::accept_group(&h.store, &batches).await.unwrap()
        } else {
            let mut reports = Vec::new();
            for b in &batches {
                reports.push(inbound::accept(&h.store, b).await.unwrap());
            }
            reports
        };
        assert_eq!(
            reports
                .iter()
                .map(|r| (r.new, r.outbox_rows))
                .collect::<Vec<_>>(),
            [(3, 3), (2, 1)],
            "grouped: {grouped}"
        );
        let again = inbound::accept_group(&h.store, &batches).await.unwrap();
        assert!(again.iter().all(|r| r.new == 0), "{again:?}");
        let mut rows: Vec<_> = h
            .store
            .outbox(&OutboxFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.conversation_id == Some(conversation))
            .collect();
        rows.sort_by_key(|r| r.id);
        let first_id = rows[0].id;
        let shape: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.kind.clone(),
                    r.next_attempt_at <= now,
                    r.payload["acknowledgements"].as_array().map(Vec::len),
                )
            })
            .collect();
        let audit = h
            .store
            .audit(&byocd::store::AuditFilter {
                conversation_id: Some(conversation),
                ..Default::default()
            })
            .await
            .unwrap();
        let named: Vec<_> = audit
            .iter()
            .filter(|a| a.entry.kind == "inbound.receipt" || a.entry.kind == "inbound.message")
            .map(|a| {
                (
                    a.id,
                    a.entry.kind.clone(),
                    a.entry.detail["outbox_id"].as_i64().unwrap() - first_id,
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|(_, kind, offset)| (kind, offset))
            .collect::<Vec<_>>();
        outcomes.push((shape, named));
    }
    let expected_shape = vec![
        ("isa.message".to_owned(), true, None),
        ("isa.typing_started".to_owned(), true, None),
        ("isa.typing_stopped".to_owned(), true, None),
        ("isa.acknowledgement".to_owned(), true, Some(2)),
        ("isa.message".to_owned(), true, None),
    ];
    assert_eq!(outcomes[0].0, expected_shape, "one by one");
    assert_eq!(outcomes[1], outcomes[0], "grouped as one by one");
    let named = &outcomes[1].1;
    assert_eq!(
        named,
        &[
            ("inbound.message".to_owned(), 0),
            ("inbound.receipt".to_owned(), 3),
            ("inbound.receipt".to_owned(), 3),
            ("inbound.message".to_owned(), 4),
        ]
    );
}

/// Rewrites stored rows behind the store's back (a row written by an older or broken byocd):
/// `sql` runs as is, with `{json}` standing for the backend's JSON literal of `json`.
async fn tamper(url: &str, sql: &str, json: &serde_json::Value) {
    use sqlx::Connection;
    let literal = json.to_string().replace('\'', "''");
    if url.starts_with("postgres") {
        let sql = sql.replace("{json}", &format!("CAST('{literal}' AS jsonb)"));
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let sql = sql.replace("{json}", &format!("'{literal}'"));
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(
            &options.busy_timeout(std::time::Duration::from_secs(5)),
        )
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A row that is not a job — a payload of the wrong shape, a kind byocd does not know — is
/// dead-lettered at its first attempt with an alert naming the row and what is wrong; nothing
/// of it is sent, and the relay goes on with other work.
async fn a_row_that_is_not_a_job_is_dead_lettered_with_an_alert(db: TestDb) {
    let h = Harness::start(db).await;
    for (umid, user, text) in [
        ("nj-1", "+447700900021", "bad payload"),
        ("nj-2", "+447700900022", "bad kind"),
        ("nj-3", "+447700900023", "fine"),
    ] {
        h.webhook(WA, &wa_text(umid, user, text)).await;
    }
    let mut ids: Vec<i64> = h
        .store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    let [bad_payload, bad_kind, fine] = ids[..] else {
        panic!("three rows expected: {ids:?}")
    };
    tamper(
        &h.db.url,
        &format!("UPDATE outbox SET payload = {{json}} WHERE id = {bad_payload}"),
        &serde_json::json!({ "from": "whatsapp:+447700900021", "entry_id": "not-a-uuid" }),
    )
    .await;
    tamper(
        &h.db.url,
        &format!("UPDATE outbox SET kind = 'isa.carrier_pigeon' WHERE id = {bad_kind}"),
        &serde_json::Value::Null,
    )
    .await;

    let settled: HashMap<i64, Settled> = h.drain().await.into_iter().collect();
    assert_eq!(settled[&bad_payload], Settled::Dead);
    assert_eq!(settled[&bad_kind], Settled::Dead);
    assert_eq!(settled[&fine], Settled::Done);
    assert_eq!(settled.len(), 3, "nothing retried: {settled:?}");
    assert_eq!(texts(&h, MSG_ADDRESS, "+447700900023"), ["fine"]);
    assert_eq!(h.emulator.requests_to("/api/v1/interactions").len(), 1);

    for (id, says) in [
        (bad_payload, "payload.entry_id"),
        (bad_kind, "unknown outbox kind `isa.carrier_pigeon`"),
    ] {
        let row = h.store.outbox_item(id).await.unwrap().unwrap();
        assert_eq!(row.status, "dead");
        assert_eq!(row.attempts, 1);
        assert!(
            row.last_error.as_deref().unwrap_or_default().contains(says),
            "{row:?}"
        );
    }
    let alerts = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbox.dead_lettered".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 2);
    for alert in &alerts {
        assert_eq!(alert.entry.severity, Severity::Alert);
        let id = alert.entry.detail["outbox_id"].as_i64().unwrap();
        assert!(id == bad_payload || id == bad_kind, "{alert:?}");
        assert!(alert.entry.message.contains(&format!("#{id}")), "{alert:?}");
        assert!(
            alert.entry.detail["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not parse") || e.contains("unknown outbox kind")),
            "{alert:?}"
        );
    }
    assert_eq!(
        h.relay
            .metrics()
            .get("byocd_alerts_total", &[("kind", "outbox.dead_lettered")]),
        2
    );

    // Nothing is left to do: neither row comes back.
    h.clock.advance(Duration::hours(1));
    assert!(h.drain().await.is_empty());
}

/// Issue 15: one end user sends 1,000 messages, each after the previous one was answered, while
/// the relay runs: every one reaches Salesforce once, in the order sent.
async fn a_thousand_messages_of_one_end_user_arrive_once_each_in_order(db: TestDb) {
    const MESSAGES: usize = 1_000;
    let h = Harness::start(db).await;
    let user = "+447700900555";
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(
        h.relay
            .clone()
            .run(cancel.clone(), std::time::Duration::from_secs(5)),
    );
    for n in 0..MESSAGES {
        h.webhook(
            WA,
            &wa_text(&format!("one-{n}"), user, &format!("message {n:04}")),
        )
        .await;
    }
    let want: Vec<String> = (0..MESSAGES).map(|n| format!("message {n:04}")).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while texts(&h, MSG_ADDRESS, user).len() < MESSAGES {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {MESSAGES} delivered after 120 s",
            texts(&h, MSG_ADDRESS, user).len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cancel.cancel();
    relay.await.unwrap();
    assert_eq!(texts(&h, MSG_ADDRESS, user), want, "each once, in order");
}

/// Issue 15: a conversation's rows go out in runs — each claimed with the previous row's
/// completion, delivered while the previous one commits. A failure in the middle of a run
/// stops it: the failed row is scheduled again, the rows after it go back to the queue without
/// spending an attempt, and once the retry is due everything arrives once, in order.
async fn a_failure_in_a_run_stops_it_and_gives_its_untried_rows_back(db: TestDb) {
    const MESSAGES: usize = 10;
    let h = Harness::start(db).await;
    let user = "+447700900556";
    for n in 0..MESSAGES {
        h.webhook(WA, &wa_text(&format!("run-{n}"), user, &format!("run {n}")))
            .await;
    }
    // Salesforce answers the first four messages and refuses the fifth (busy, retryable).
    h.emulator.inject_after(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 503,
            code: 10094,
        },
        4,
        1,
    );
    let first = h
        .store
        .claim_outbox(h.relay.owner(), 1, std::time::Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "the conversation's first row");
    let settled = h.relay.process_chain(first[0].clone()).await;
    let outcomes: Vec<Settled> = settled.iter().map(|(_, s)| s.clone()).collect();
    assert_eq!(
        outcomes,
        [
            Settled::Done,
            Settled::Done,
            Settled::Done,
            Settled::Done,
            Settled::Retry
        ],
        "four delivered, the fifth scheduled again, and the run stopped there"
    );
    let rows = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    let failed = settled[4].0;
    for row in &rows {
        match row.id {
            id if settled[..4].iter().any(|(done, _)| *done == id) => {
                assert_eq!((row.status.as_str(), row.attempts), ("done", 1));
            }
            id if id == failed => assert_eq!((row.status.as_str(), row.attempts), ("pending", 1)),
            // Claimed with the run but never sent: back in the queue, no attempt spent.
            _ => assert_eq!(
                (row.status.as_str(), row.attempts),
                ("pending", 0),
                "row {} after the failure",
                row.id
            ),
        }
    }
    let want: Vec<String> = (0..MESSAGES).map(|n| format!("run {n}")).collect();
    assert_eq!(texts(&h, MSG_ADDRESS, user), want[..4]);
    // The rows after the failed one wait for it, even though they are due.
    assert!(
        h.drain().await.is_empty(),
        "nothing overtakes the failed row"
    );
    h.clock.advance(Duration::minutes(10));
    h.drain().await;
    assert_eq!(texts(&h, MSG_ADDRESS, user), want, "each once, in order");
    let rows = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.status == "done" && r.attempts == if r.id == failed { 2 } else { 1 }),
        "one attempt each, two for the retried row: {:?}",
        rows.iter().map(|r| (r.id, r.attempts)).collect::<Vec<_>>()
    );
}

/// Hostile media URLs from a webhook: redirects are followed only to allowed hosts, the type
/// comes from the bytes, and without the sandbox switch http, loopback, link-local (cloud
/// metadata) and names resolving to loopback are refused — the rep is told, nothing is fetched,
/// and the pre-signed part of a URL is nowhere in the outbox or the audit trail.
async fn hostile_media_urls_are_refused(db: TestDb) {
    let files = file_server().await;
    let user = "+447700900013";
    // The sandbox switch on (the file server is on 127.0.0.1), 127.0.0.1 the only media host.
    let h = Harness::start_full(db, "", "media_hosts = [\"127.0.0.1\"]", "").await;
    let media = |id: &str, path: &str| wa_media(id, user, "Image", &format!("{files}{path}"), None);
    for (id, path) in [
        ("h-1", "/to-photo"),
        ("h-2", "/to-metadata"),
        ("h-3", "/to-elsewhere"),
        ("h-4", "/page.png"),
        ("h-5", "/loop"),
        ("h-6", "/unlabelled"),
    ] {
        h.webhook(WA, &media(id, path)).await;
    }
    let settled = h.drain().await;
    assert!(
        settled.iter().all(|(_, s)| *s == Settled::Done),
        "{settled:?}"
    );
    let conversation = h.emulator.conversation_of(MSG_ADDRESS, user).unwrap();
    let attachments: Vec<_> = conversation
        .entries
        .iter()
        .filter_map(|e| e.attachment.as_ref())
        .collect();
    assert_eq!(
        attachments.len(),
        2,
        "the redirect to the photo and the sniffed PNG"
    );
    assert!(
        attachments
            .iter()
            .all(|a| a.content_type.as_deref() == Some("image/png"))
    );
    let told = texts(&h, MSG_ADDRESS, user);
    assert_eq!(told.len(), 4, "{told:?}");
    assert!(
        told[0].contains("169.254.169.254") && told[0].contains("media_hosts"),
        "{}",
        told[0]
    );
    assert!(
        told[1].contains("attacker.example") && told[1].contains("media_hosts"),
        "{}",
        told[1]
    );
    assert!(
        told[2].contains("not a type Salesforce accepts"),
        "{}",
        told[2]
    );
    assert!(
        told[3].contains("redirects more than 3 times"),
        "{}",
        told[3]
    );
}

/// Without the sandbox switch (production): http, loopback, link-local (cloud metadata), names
/// resolving to loopback and IPv4-mapped private addresses are refused before any connection.
async fn media_urls_to_private_addresses_are_refused(db: TestDb) {
    let files = file_server().await;
    let user = "+447700900014";
    let h = Harness::start_with(db, "\n[relay]\nallow_private_media_urls = false\n").await;
    let port = files.rsplit(':').next().unwrap();
    for (id, url) in [
        ("p-1", format!("{files}/photo.png")),
        ("p-2", format!("https://127.0.0.1:{port}/photo.png")),
        (
            "p-3",
            "https://169.254.169.254/latest/meta-data/?X-Amz-Signature=SECRET-SIG".to_owned(),
        ),
        (
            "p-4",
            format!("https://localhost:{port}/photo.png?sig=SECRET-SIG"),
        ),
        (
            "p-5",
            "https://[::ffff:10.0.0.1]/x?sig=SECRET-SIG".to_owned(),
        ),
    ] {
        h.webhook(WA, &wa_media(id, user, "Image", &url, None))
            .await;
    }
    let settled = h.drain().await;
    assert!(
        settled.iter().all(|(_, s)| *s == Settled::Done),
        "{settled:?}"
    );
    let told = texts(&h, MSG_ADDRESS, user);
    assert_eq!(told.len(), 5, "{told:?}");
    assert!(told[0].contains("not https"), "{}", told[0]);
    assert!(
        told[1].contains("127.0.0.1 is not a public address"),
        "{}",
        told[1]
    );
    assert!(
        told[2].contains("169.254.169.254 is not a public address"),
        "{}",
        told[2]
    );
    assert!(
        told[3].contains("resolves to no public address"),
        "{}",
        told[3]
    );
    assert!(told[4].contains("not a public address"), "{}", told[4]);
    let audited = h
        .store
        .audit(&AuditFilter {
            kind: Some("inbound.media_not_forwarded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 5);
    // The job keeps the URL it must fetch; what is told, audited or recorded as an error does not.
    let errors: Vec<_> = h
        .store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.last_error)
        .collect();
    let everything = format!("{told:?}{audited:?}{errors:?}");
    assert!(!everything.contains("SECRET-SIG"), "{everything}");
}

/// Issue 17: purging dedupe keys does not re-open replays. An event taken in, then its key
/// purged after `retention.dedupe`, then the same event sent again: refused as stale (counted as
/// a duplicate, audited with its key and times, nothing else written); a recent event still
/// goes in.
async fn a_replayed_event_older_than_the_dedupe_retention_is_refused(db: TestDb) {
    use byocd::{
        clock::{Clock, SharedClock},
        domain::{
            inbound,
            privacy::{self, Retention},
        },
        store::{EndUserIdentity, IntakeBatch, IntakeEvent, IntakeWork},
    };
    let h = Harness::start(db).await;
    let retention = Retention {
        finished_outbox: std::time::Duration::from_secs(7 * 86_400),
        quarantine: std::time::Duration::from_secs(30 * 86_400),
        dedupe: std::time::Duration::from_secs(30 * 86_400),
        ended_sessions: std::time::Duration::from_secs(90 * 86_400),
    };
    let user = "+447700900071";
    let batch = |key: &str, at: chrono::DateTime<chrono::Utc>| IntakeBatch {
        channel: WA.to_owned(),
        org_id: support::salesforce::ORG_ID.to_owned(),
        events: vec![IntakeEvent {
            event_key: key.to_owned(),
            user: Some(EndUserIdentity {
                key: user.to_owned(),
                msisdn: Some(user.to_owned()),
                channel_user_id: None,
                display_name: None,
            }),
            at,
            work: IntakeWork::RecordOnly {
                what: "the end user subscribed".into(),
            },
        }],
        end_sessions_in_salesforce: false,
        partner_consent: false,
        stale_before: Some(privacy::replay_horizon(h.clock.now(), retention.dedupe)),
    };
    let sent_at = h.clock.now();
    let first = inbound::accept(&h.store, &batch("replayed-1", sent_at))
        .await
        .unwrap();
    assert_eq!((first.new, first.duplicates, first.stale), (1, 0, 0));
    // Within the retention, the key recognises a retry.
    h.clock.advance(Duration::days(29));
    let retry = inbound::accept(&h.store, &batch("replayed-1", sent_at))
        .await
        .unwrap();
    assert_eq!((retry.new, retry.duplicates, retry.stale), (0, 1, 0));
    // Past the retention (and the allowance for clock skew) the key is purged…
    h.clock.advance(Duration::days(2));
    let shared: SharedClock = std::sync::Arc::new(h.clock.clone());
    let purged = byocd::lifecycle::purge::purge_all(&h.store, &shared, &retention)
        .await
        .unwrap();
    assert!(
        purged.contains(&(byocd::store::PurgeClass::Dedupe, 1)),
        "{purged:?}"
    );
    // …and the replay is refused all the same, writing nothing but its audit row.
    let outbox_before = h
        .store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .len();
    let replay = inbound::accept(&h.store, &batch("replayed-1", sent_at))
        .await
        .unwrap();
    assert_eq!((replay.new, replay.duplicates, replay.stale), (0, 1, 1));
    let stale = h
        .store
        .audit(&AuditFilter {
            kind: Some("inbound.stale".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].entry.detail["event_key"], "replayed-1");
    assert_eq!(stale[0].entry.severity, Severity::Warning);
    assert!(
        !stale[0].entry.detail.to_string().contains("447700900071"),
        "{:?}",
        stale[0].entry.detail
    );
    assert_eq!(
        h.store
            .outbox(&OutboxFilter::default())
            .await
            .unwrap()
            .len(),
        outbox_before
    );
    // No key was written for it: with no horizon the same event would be new.
    let mut unguarded = batch("replayed-1", sent_at);
    unguarded.stale_before = None;
    let mut tx = h.store.transaction().await.unwrap();
    let report = inbound::take_in(&mut tx, std::slice::from_ref(&unguarded))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(report[0].new, 1, "the stale event left a dedupe key");
    // A recent event goes in.
    let recent = inbound::accept(&h.store, &batch("recent-1", h.clock.now()))
        .await
        .unwrap();
    assert_eq!((recent.new, recent.stale), (1, 0));
}

on_both_backends!(
    a_replayed_event_older_than_the_dedupe_retention_is_refused,
    hostile_media_urls_are_refused,
    media_urls_to_private_addresses_are_refused,
    a_thousand_messages_of_one_end_user_arrive_once_each_in_order,
    a_failure_in_a_run_stops_it_and_gives_its_untried_rows_back,
    one_bad_webhook_in_a_group_fails_alone,
    a_group_commit_writes_what_webhooks_one_by_one_write,
    concurrent_first_messages_of_a_new_end_user_are_all_accepted,
    a_text_message_reaches_salesforce_and_the_session_learns_its_ids,
    a_repeated_webhook_adds_nothing,
    media_is_forwarded_as_an_attachment_or_explained_to_the_rep,
    typing_starts_at_once_and_stops_after_the_quiet_time_or_before_the_next_message,
    receipts_become_coalesced_acknowledgements_and_failures_message_delivery_failed,
    salesforce_down_then_back_delivers_everything_once_in_order,
    a_permanent_error_dead_letters_with_an_alert_and_an_admin_can_send_it_again,
    error_texts_that_echo_the_number_or_the_message_are_stripped_before_they_are_kept,
    one_conversation_waits_while_its_earlier_row_retries_others_go_on,
    a_row_that_is_not_a_job_is_dead_lettered_with_an_alert,
);
