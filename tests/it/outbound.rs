//! Rep → end user over the Pub/Sub API, through the outbox, to 8x8 and Kaleyra; on both backends.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::time::Duration;

use byocd::{
    sandbox::eightbyeight::{Failure as EightByEightFailure, WebhookUser},
    store::{AuditFilter, OutboxFilter, Store, relay::kind},
};
use support::{
    TestDb,
    channels::{RCS_AGENT, RCS_CHANNEL, WA_CHANNEL},
    harness::kaleyra,
    outbound::{Outbound, SECOND_TOPIC, TOPIC},
    salesforce::{CC_ADDRESS, MSG_ADDRESS, ORG_ID},
};

const WA_USER: &str = "+447700900201";
const RCS_USER: &str = "+447700900202";

/// The end user writes first (on 8x8, through the emulator's sender so it knows the umid), and
/// the message reaches Salesforce: the conversation exists on both sides. Returns the umid.
async fn wa_conversation(h: &Outbound) -> String {
    let inbound =
        h.wa.webhooks()
            .inbound_text(&WebhookUser::phone(WA_USER), "hello");
    h.webhook(WA_CHANNEL, &inbound.body).await;
    h.drain().await;
    assert!(h.salesforce.conversation_of(MSG_ADDRESS, WA_USER).is_some());
    inbound.umid
}

async fn rcs_conversation(h: &Outbound) {
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "mo-1", &RCS_USER[1..], Some("hi")),
    )
    .await;
    h.drain().await;
    assert!(h.salesforce.conversation_of(CC_ADDRESS, RCS_USER).is_some());
}

async fn a_rep_message_reaches_8x8_and_its_receipt_comes_back_to_salesforce(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    let entry = h
        .rep
        .message((MSG_ADDRESS, WA_USER), "How can I help?")
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content["text"], "How can I help?");
    assert_eq!(sent[0].user["msisdn"], WA_USER);
    assert_eq!(sent[0].client_message_id.as_deref(), Some(entry.as_str()));

    // 8x8 reports it delivered, then read: Salesforce gets the acknowledgements for that entry.
    for state in ["delivered", "read"] {
        let receipt =
            h.wa.delivery_receipt(
                &sent[0].umid,
                state,
                Some("delivered_to_recipient").filter(|_| state == "delivered"),
            )
            .unwrap();
        h.webhook(WA_CHANNEL, &receipt.body).await;
    }
    h.drain().await;
    let acked: Vec<_> = h
        .salesforce
        .conversation_of(MSG_ADDRESS, WA_USER)
        .unwrap()
        .acknowledgements
        .into_iter()
        .map(|a| (a.acknowledgement_type, a.acknowledged_entry_id))
        .collect();
    assert_eq!(
        acked,
        [
            ("Delivered".to_string(), entry.clone()),
            ("Read".to_string(), entry)
        ]
    );
}

async fn rep_files_are_uploaded_to_8x8_and_served_signed_for_kaleyra(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    rcs_conversation(&h).await;
    let pdf = b"%PDF-1.4 a small document".to_vec();
    h.rep
        .attachment(
            (MSG_ADDRESS, WA_USER),
            "terms.pdf",
            "application/pdf",
            pdf.clone(),
            Some("our terms"),
        )
        .unwrap();
    h.rep
        .attachment(
            (CC_ADDRESS, RCS_USER),
            "terms.pdf",
            "application/pdf",
            pdf.clone(),
            None,
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 3).await;
    h.drain().await;

    // 8x8: the text, then the file uploaded to 8x8 and sent from its hosting.
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].content["text"], "our terms");
    assert_eq!(sent[1].kind, "file");
    let url = sent[1].content["url"].as_str().unwrap();
    let name = url
        .split("/files/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let (mime, bytes) = h.wa.uploaded_file(&percent_decode(name)).unwrap();
    assert_eq!(mime, "application/pdf");
    assert_eq!(bytes.as_ref(), pdf.as_slice());

    // Kaleyra: a file message pointing at byocd's own signed URL, which serves the bytes.
    let sent = h.rcs.sent_messages();
    assert_eq!(sent.len(), 1);
    let file_url = sent[0].file_url.clone().unwrap();
    assert!(
        file_url.starts_with("https://byocd.partner.example/files/"),
        "{file_url}"
    );
    let local = file_url.replace("https://byocd.partner.example", &h.url);
    let response = reqwest::get(&local).await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/pdf");
    assert_eq!(
        header("content-disposition"),
        "attachment; filename=\"terms.pdf\"; filename*=UTF-8''terms.pdf"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("content-security-policy"), "sandbox");
    assert_eq!(response.bytes().await.unwrap().as_ref(), pdf.as_slice());
    let forged = local.replace("signature=", "signature=00");
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 403);
}

/// A rep file whose name carries a CR/LF (header injection) and whose type is HTML: Kaleyra's
/// URL serves it as a download that no browser renders, with the name percent-encoded.
async fn a_hostile_file_name_is_served_as_an_inert_attachment(db: TestDb) {
    let h = Outbound::start(db, "").await;
    rcs_conversation(&h).await;
    let page = b"<script>alert(document.cookie)</script>".to_vec();
    h.rep
        .attachment(
            (CC_ADDRESS, RCS_USER),
            "x\r\nSet-Cookie: s=1\r\n\r\n<b>é.html",
            "text/html",
            page.clone(),
            None,
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let sent = h.rcs.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let file_url = sent[0].file_url.clone().unwrap();
    let local = file_url.replace("https://byocd.partner.example", &h.url);
    let response = reqwest::get(&local).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(headers.get("set-cookie").is_none(), "{headers:?}");
    assert_eq!(
        headers["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"x__Set-Cookie: s=1____<b>_.html\"; \
         filename*=UTF-8''x%0D%0ASet-Cookie%3A%20s%3D1%0D%0A%0D%0A%3Cb%3E%C3%A9.html"
    );
    assert_eq!(headers["content-security-policy"], "sandbox");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.unwrap().as_ref(), page.as_slice());
}

fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

async fn rep_typing_respects_the_8x8_window_and_reaches_kaleyra_as_composing(db: TestDb) {
    let h = Outbound::start(db, "").await;
    let umid = wa_conversation(&h).await;
    rcs_conversation(&h).await;
    h.rep.typing((MSG_ADDRESS, WA_USER), true).unwrap();
    h.rep.typing((CC_ADDRESS, RCS_USER), true).unwrap();
    h.rep.typing((CC_ADDRESS, RCS_USER), false).unwrap();
    h.wait_rows(kind::PROVIDER_TYPING, 2).await;
    h.drain().await;
    let events = h.wa.requests_to("/events");
    assert_eq!(events.len(), 1);
    let body = events[0].body.clone().unwrap();
    assert_eq!(body["umid"], umid.as_str());
    assert_eq!(body["type"], "typing");
    assert_eq!(body["channel"], "whatsapp");
    let composing = h.rcs.requests_to("/rcs/events");
    assert_eq!(composing.len(), 1, "stopped is not sent to Kaleyra");
    let body = composing[0].body.clone().unwrap();
    assert_eq!(body["to"], RCS_USER);
    assert_eq!(body["from"], RCS_AGENT);
    assert_eq!(body["composing"], serde_json::json!({}));

    // Two hours and a minute after the end user's last message: no call, and the drop is audited.
    h.clock.advance(chrono::Duration::minutes(121));
    h.wa.advance_clock(Duration::from_secs(121 * 60));
    h.rep.typing((MSG_ADDRESS, WA_USER), true).unwrap();
    h.wait_rows(kind::PROVIDER_TYPING, 3).await;
    h.drain().await;
    assert_eq!(
        h.wa.requests_to("/events").len(),
        1,
        "no call outside the window"
    );
    let dropped = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbound.typing_dropped".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(
        dropped[0].entry.message.contains("2 hours"),
        "{}",
        dropped[0].entry.message
    );
}

async fn a_session_the_rep_ended_is_ended_here_and_a_refused_message_is_reported(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    // 8x8 refuses the rep's message for good: the rep learns through MessageDeliveryFailed.
    h.wa.inject(
        "messages",
        EightByEightFailure::Error {
            http_status: 400,
            code: 1002,
        },
        1,
    );
    let entry = h
        .rep
        .message((MSG_ADDRESS, WA_USER), "this will fail")
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let failed: Vec<_> = h
        .salesforce
        .conversation_of(MSG_ADDRESS, WA_USER)
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.entry_type.as_deref() == Some("MessageDeliveryFailed"))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].json["payload"]["failedConversationEntryIdentifier"],
        entry.as_str()
    );
    assert_eq!(failed[0].json["payload"]["errorCode"], "1002");

    h.rep.end_session((MSG_ADDRESS, WA_USER)).unwrap();
    for _ in 0..200 {
        let changed = h
            .store
            .audit(&AuditFilter {
                kind: Some("session.status_changed".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if !changed.is_empty() {
            assert_eq!(changed[0].entry.detail["status"], "Ended");
            let session = changed[0].entry.session_id.unwrap();
            let timeline = h
                .store
                .audit(&AuditFilter {
                    session_id: Some(session),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(timeline.iter().any(|r| r.entry.kind == "inbound.message"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session end never arrived");
}

async fn a_burst_across_a_restart_loses_nothing_and_relays_nothing_twice(db: TestDb) {
    let mut h = Outbound::start(db, "num_requested = 5\n").await;
    wa_conversation(&h).await;
    let mut entries = Vec::new();
    for n in 0..12 {
        entries.push(
            h.rep
                .message((MSG_ADDRESS, WA_USER), &format!("burst {n}"))
                .unwrap(),
        );
    }
    h.wait_rows(kind::PROVIDER_MESSAGE, 4).await;
    // The daemon stops in the middle of the burst…
    h.stop_subscriber().await;
    let before = h.store.cursor(ORG_ID, TOPIC).await.unwrap().unwrap();
    for n in 12..30 {
        entries.push(
            h.rep
                .message((MSG_ADDRESS, WA_USER), &format!("burst {n}"))
                .unwrap(),
        );
    }
    // …and comes back, resuming after the last event it committed.
    h.start_subscriber();
    h.wait_rows(kind::PROVIDER_MESSAGE, 30).await;
    h.drain().await;
    let sent: Vec<_> =
        h.wa.sent_messages()
            .into_iter()
            .map(|m| m.content["text"].as_str().unwrap().to_owned())
            .collect();
    let expected: Vec<_> = (0..30).map(|n| format!("burst {n}")).collect();
    assert_eq!(sent, expected, "every event once, in order");
    let resumed = h
        .pubsub
        .fetch_requests()
        .into_iter()
        .filter(|f| f.first)
        .collect::<Vec<_>>();
    assert_eq!(resumed.len(), 2);
    assert_eq!(resumed[1].replay_preset, 2, "CUSTOM on resume");
    assert_eq!(resumed[1].replay_id, before.replay_id);
    // Credit was topped up in steps of at most num_requested.
    assert!(
        h.pubsub
            .fetch_requests()
            .iter()
            .all(|f| f.num_requested <= 5)
    );
}

async fn a_dropped_stream_and_a_revoked_token_recover_by_themselves(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    h.rep.message((MSG_ADDRESS, WA_USER), "one").unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.pubsub.end_streams(1);
    h.rep.message((MSG_ADDRESS, WA_USER), "two").unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 2).await;
    h.salesforce.revoke_tokens();
    h.pubsub.end_streams(1);
    h.rep.message((MSG_ADDRESS, WA_USER), "three").unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 3).await;
    // The next event can only come on a new stream, opened with a new token.
    h.rep.message((MSG_ADDRESS, WA_USER), "four").unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 4).await;
    h.drain().await;
    let texts: Vec<_> =
        h.wa.sent_messages()
            .into_iter()
            .map(|m| m.content["text"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    assert!(
        h.pubsub.streams_opened() >= 3,
        "{}",
        h.pubsub.streams_opened()
    );
    let mints = h
        .store
        .audit(&AuditFilter {
            kind: Some("token.minted".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(mints.len() >= 2, "a new token after the revocation");
    let rows = h.store.outbox(&OutboxFilter::default()).await.unwrap();
    assert!(rows.iter().all(|r| r.status == "done"));
}

/// Issue 14: when the token is revoked while two streams of the org are open and Interaction
/// Service calls are in flight, every one of them sees it refused — and exactly one new token is
/// minted (each caller reports the token it used; whoever comes second gets the fresh one).
async fn a_revoked_token_seen_by_two_streams_and_the_relay_is_minted_once(db: TestDb) {
    let h = Outbound::start(db, "").await;
    let _second = h.start_extra_subscriber(SECOND_TOPIC);
    wa_conversation(&h).await;
    // Both streams open (and so both hold the first token).
    for _ in 0..400 {
        if h.pubsub.streams_opened() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(h.pubsub.streams_opened(), 2);
    let mints_before = h.tokens.mint_attempts();
    assert_eq!(mints_before, 1, "one token so far");

    h.salesforce.revoke_tokens();
    // Interaction Service traffic while the streams fail: three end-user messages relayed.
    for n in 0..3 {
        let inbound =
            h.wa.webhooks()
                .inbound_text(&WebhookUser::phone(WA_USER), &format!("while revoked {n}"));
        h.webhook(WA_CHANNEL, &inbound.body).await;
    }
    h.drain().await;
    // Each stream ends at its next keep-alive and reopens with the new token.
    for _ in 0..400 {
        if h.pubsub.streams_opened() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(h.pubsub.streams_opened() >= 4, "both streams reopened");
    // The streams work with the new token: a rep message on the channels' topic arrives.
    h.rep.message((MSG_ADDRESS, WA_USER), "after").unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let entries = h
        .salesforce
        .conversation_of(MSG_ADDRESS, WA_USER)
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 4, "hello and the three sent while revoked");

    assert_eq!(
        h.tokens.mint_attempts() - mints_before,
        1,
        "one mint for one revocation, however many callers saw it"
    );
    let mints = h
        .store
        .audit(&AuditFilter {
            kind: Some("token.minted".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mints.len(), 2, "the first token and one replacement");
}

async fn unknown_channels_are_skipped_and_the_documented_variant_without_wrapper_is_read(
    db: TestDb,
) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    // An event for a channel address this daemon does not serve.
    h.pubsub.publish(
        TOPIC,
        "Interaction",
        &serde_json::json!({
            "conversationIdentifier": "elsewhere",
            "channelAddressIdentifier": "someone-elses-channel",
            "recipient": { "appType": "custom", "subject": "+447700900999", "role": "EndUser" },
            "payload": { "identifier": "x-1", "entryType": "Message", "clientTimestamp": 0,
                "transcriptedTimestamp": 0, "clientDuration": 0,
                "sender": { "appType": "agent", "subject": "005000000000001", "role": "Agent" },
                "entryPayload": { "entryType": "Message", "abstractMessage": {
                    "messageType": "StaticContentMessage", "id": "m-1",
                    "staticContent": { "formatType": "Text", "text": "not for us" } } } }
        })
        .to_string(),
    );
    h.rep
        .message_without_wrapper((MSG_ADDRESS, WA_USER), "no wrapper")
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let texts: Vec<_> =
        h.wa.sent_messages()
            .into_iter()
            .map(|m| m.content["text"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(texts, ["no wrapper"]);
    let skipped = h
        .store
        .audit(&AuditFilter {
            kind: Some("outbound.unknown_channel".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        skipped[0].entry.detail["channel_address_identifier"],
        "someone-elses-channel"
    );
    // The cursor moved past both events.
    let cursor = h.store.cursor(ORG_ID, TOPIC).await.unwrap().unwrap();
    assert_eq!(
        cursor.replay_id,
        h.pubsub.published().last().unwrap().replay_id
    );
}

on_both_backends!(
    unknown_channels_are_skipped_and_the_documented_variant_without_wrapper_is_read,
    a_rep_message_reaches_8x8_and_its_receipt_comes_back_to_salesforce,
    rep_files_are_uploaded_to_8x8_and_served_signed_for_kaleyra,
    a_hostile_file_name_is_served_as_an_inert_attachment,
    rep_typing_respects_the_8x8_window_and_reaches_kaleyra_as_composing,
    a_session_the_rep_ended_is_ended_here_and_a_refused_message_is_reported,
    a_burst_across_a_restart_loses_nothing_and_relays_nothing_twice,
    a_dropped_stream_and_a_revoked_token_recover_by_themselves,
    a_revoked_token_seen_by_two_streams_and_the_relay_is_minted_once,
);
