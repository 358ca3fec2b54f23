//! Rep-initiated conversations inside WhatsApp's rules, and the Salesforce events byocd acts on
//! (consent, participants, conference, message updates): through the real endpoints, against
//! the emulators, on both backends.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use byocd::{
    config::TemplateParameter,
    sandbox::{
        eightbyeight::WebhookUser,
        rep::{ParticipantOperation, TransferTarget, UploadResult},
    },
    store::{AuditFilter, AuditRow, Store, relay::kind},
};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use support::{
    TestDb,
    channels::{ConfigDir, Endpoints, RCS_CHANNEL, WA_CHANNEL},
    harness::kaleyra,
    outbound::Outbound,
    salesforce::{CC_ADDRESS, MSG_ADDRESS, REP_2, REP_3},
};

const WA_USER: &str = "+447700900301";
const RCS_USER: &str = "+447700900302";
const NEW_WA_USER: &str = "+447700900303";
const NEW_RCS_USER: &str = "+447700900304";

/// The 8x8 channel's approved template, filled with the rep's text.
const TEMPLATE: &str = r#"
[whatsapp_template]
name = "agent_follow_up"
language = "en_US"
body_parameters = ["=Acme", "text"]
"#;

/// The end user writes on WhatsApp; returns the provider's timestamp of their message.
async fn wa_writes(h: &Outbound, user: &str) -> DateTime<Utc> {
    let inbound =
        h.wa.webhooks()
            .inbound_text(&WebhookUser::phone(user), "hello");
    h.webhook(WA_CHANNEL, &inbound.body).await;
    h.drain().await;
    assert!(h.salesforce.conversation_of(MSG_ADDRESS, user).is_some());
    inbound.body["payload"]["timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sets byocd's clock and the 8x8 emulator's to `at`.
fn clocks_at(h: &Outbound, at: DateTime<Utc>) {
    h.clock.set(at);
    let ahead = at - h.wa.now();
    if ahead > Duration::zero() {
        h.wa.advance_clock(ahead.to_std().unwrap());
    }
}

/// The rep sends `text` to `user` on `address` and the relay delivers it.
async fn rep_sends(h: &Outbound, address: &str, user: &str, text: &str, nth: usize) -> String {
    let entry = h.rep.message((address, user), text).unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, nth).await;
    h.drain().await;
    entry
}

async fn audit_of(h: &Outbound, kind: &str) -> Vec<AuditRow> {
    h.store
        .audit(&AuditFilter {
            kind: Some(kind.into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The `MessageDeliveryFailed` entries Salesforce received for `user` on `address`.
fn delivery_failures(h: &Outbound, address: &str, user: &str) -> Vec<serde_json::Value> {
    h.salesforce
        .conversation_of(address, user)
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.entry_type.as_deref() == Some("MessageDeliveryFailed"))
        .map(|e| e.json["payload"].clone())
        .collect()
}

async fn at_23h59_text_is_sent_and_at_24h01_the_template(db: TestDb) {
    let h = Outbound::start_with_wa(db, TEMPLATE).await;
    let wrote = wa_writes(&h, WA_USER).await;

    clocks_at(&h, wrote + Duration::hours(23) + Duration::minutes(59));
    rep_sends(&h, MSG_ADDRESS, WA_USER, "Still there?", 1).await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, "text");
    assert_eq!(sent[0].content["text"], "Still there?");

    clocks_at(&h, wrote + Duration::hours(24) + Duration::minutes(1));
    let entry = rep_sends(&h, MSG_ADDRESS, WA_USER, "Your order\n\nis    ready", 2).await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].kind, "template");
    assert_eq!(
        sent[1].content,
        json!({ "template": {
            "name": "agent_follow_up",
            "language": "en_US",
            "components": [{ "type": "body", "parameters": [
                { "type": "text", "text": "Acme" },
                { "type": "text", "text": "Your order is ready" },
            ] }],
        } })
    );
    assert_eq!(sent[1].client_message_id.as_deref(), Some(entry.as_str()));
    // 8x8 flagged nothing as sent outside the window, and the rep was told of no failure.
    assert!(h.wa.window_refusals().is_empty());
    assert!(delivery_failures(&h, MSG_ADDRESS, WA_USER).is_empty());
    let substituted = audit_of(&h, "outbound.template_sent").await;
    assert_eq!(substituted.len(), 1);
    assert!(
        !substituted[0].entry.message.contains("order"),
        "no message text in the audit trail"
    );
    assert_eq!(substituted[0].entry.detail["template"], "agent_follow_up");

    // The emulator holds 8x8 to the rule too: free-form text sent outside the window is
    // accepted, then reported undelivered with 1022.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/subaccounts/{}/messages",
            h.wa.base_url(),
            h.wa.settings().sub_account_id
        ))
        .bearer_auth(&h.wa.settings().api_key)
        .json(&json!({ "user": { "msisdn": WA_USER }, "type": "text", "content": { "text": "late" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let umid = response.json::<serde_json::Value>().await.unwrap()["umid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(h.wa.window_refusals(), std::slice::from_ref(&umid));
    let receipt = h.wa.window_receipt(&umid).unwrap();
    assert_eq!(receipt.body["payload"]["status"]["errorCode"], 1022);
}

async fn without_a_template_the_rep_learns_the_24_hour_rule(db: TestDb) {
    let h = Outbound::start(db, "").await;
    let wrote = wa_writes(&h, WA_USER).await;
    clocks_at(&h, wrote + Duration::hours(24) + Duration::minutes(1));
    let entry = rep_sends(&h, MSG_ADDRESS, WA_USER, "Are you there?", 1).await;
    assert!(
        h.wa.sent_messages().is_empty(),
        "nothing free-form outside the window"
    );
    let failed = delivery_failures(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["failedConversationEntryIdentifier"],
        entry.as_str()
    );
    assert_eq!(failed[0]["errorCode"], "whatsapp_24h_window");
    let reason = failed[0]["errorMessage"].as_str().unwrap();
    assert!(reason.contains("24-hour"), "{reason}");
    assert!(reason.contains("[whatsapp_template]"), "{reason}");
    assert_eq!(audit_of(&h, "outbound.window_closed").await.len(), 1);
}

async fn proactive_messages_open_a_session_rcs_directly_whatsapp_as_a_template(db: TestDb) {
    let h = Outbound::start_with_wa(db, TEMPLATE).await;
    // The rep starts conversations with end users byocd has never seen.
    h.salesforce
        .rep_opens_conversation(CC_ADDRESS, NEW_RCS_USER);
    h.salesforce
        .rep_opens_conversation(MSG_ADDRESS, NEW_WA_USER);
    rep_sends(
        &h,
        CC_ADDRESS,
        NEW_RCS_USER,
        "Your appointment is tomorrow",
        1,
    )
    .await;
    rep_sends(
        &h,
        MSG_ADDRESS,
        NEW_WA_USER,
        "Your appointment is tomorrow",
        2,
    )
    .await;

    // RCS has no such window: sent as text.
    let rcs = h.rcs.sent_messages();
    assert_eq!(rcs.len(), 1, "{rcs:?}");
    assert_eq!(rcs[0].text.as_deref(), Some("Your appointment is tomorrow"));
    // WhatsApp: the end user never wrote, so the template.
    let wa = h.wa.sent_messages();
    assert_eq!(wa.len(), 1);
    assert_eq!(wa[0].kind, "template");
    assert_eq!(wa[0].user["msisdn"], NEW_WA_USER);
    let proactive = audit_of(&h, "outbound.proactive").await;
    assert_eq!(proactive.len(), 2);
    assert!(proactive.iter().all(|a| a.entry.session_id.is_some()));
    // When the end user answers, the window opens and text flows again.
    let wrote = wa_writes(&h, NEW_WA_USER).await;
    clocks_at(&h, wrote + Duration::minutes(5));
    rep_sends(&h, MSG_ADDRESS, NEW_WA_USER, "Great, see you", 3).await;
    assert_eq!(h.wa.sent_messages()[1].kind, "text");
    // A Kaleyra end user who wrote is answered as before.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "mo-p1", &RCS_USER[1..], Some("hi")),
    )
    .await;
    h.drain().await;
    rep_sends(&h, CC_ADDRESS, RCS_USER, "Hello", 4).await;
    assert_eq!(h.rcs.sent_messages().len(), 2);
}

async fn an_opt_out_stops_rep_messages_and_an_opt_in_lets_them_through(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_writes(&h, WA_USER).await;
    h.rep
        .consent_updated((MSG_ADDRESS, WA_USER), "OptOut", true)
        .unwrap();
    let consent = wait_audit(&h, "end_user.consent_updated", 1).await;
    let conversation = consent[0].entry.conversation_id.unwrap();
    let context = h
        .store
        .conversation_context(conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(context.consent.as_deref(), Some("OptOut"));

    let entry = rep_sends(&h, MSG_ADDRESS, WA_USER, "One more offer", 1).await;
    assert!(h.wa.sent_messages().is_empty(), "nothing after an opt-out");
    let failed = delivery_failures(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["errorCode"], "end_user_opted_out");
    assert_eq!(
        failed[0]["failedConversationEntryIdentifier"],
        entry.as_str()
    );
    assert_eq!(audit_of(&h, "outbound.refused_opted_out").await.len(), 1);

    h.rep
        .consent_updated((MSG_ADDRESS, WA_USER), "OptIn", true)
        .unwrap();
    wait_audit(&h, "end_user.consent_updated", 2).await;
    let context = h
        .store
        .conversation_context(conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(context.consent.as_deref(), Some("OptIn"));
    rep_sends(&h, MSG_ADDRESS, WA_USER, "Welcome back", 2).await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content["text"], "Welcome back");
}

async fn participants_are_kept_and_conferenced_reps_join(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_writes(&h, WA_USER).await;
    let ann = h.rep.clone().as_user("005000000000ANN", "Ann");
    let bob = h.rep.clone().as_user("005000000000BOB", "Bob");
    ann.participant_changed((MSG_ADDRESS, WA_USER), ParticipantOperation::Add)
        .unwrap();
    bob.participant_changed((MSG_ADDRESS, WA_USER), ParticipantOperation::Add)
        .unwrap();
    ann.participant_changed((MSG_ADDRESS, WA_USER), ParticipantOperation::Remove)
        .unwrap();
    let changed = wait_audit(&h, "session.participants_changed", 3).await;
    let session = changed[0].entry.session_id.unwrap();
    let subjects = |list: Option<serde_json::Value>| -> Vec<String> {
        list.unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    let now = h.store.session_participants(session).await.unwrap();
    assert_eq!(subjects(now), ["005000000000BOB"]);

    h.rep
        .participants_conferenced(
            (MSG_ADDRESS, WA_USER),
            &["005000000000CAT", "005000000000DAN"],
        )
        .unwrap();
    wait_audit(&h, "session.participants_conferenced", 1).await;
    let now = h.store.session_participants(session).await.unwrap();
    assert_eq!(
        subjects(now),
        ["005000000000BOB", "005000000000CAT", "005000000000DAN"]
    );
    // The end user's number is in neither the list nor the audit trail.
    for row in audit_of(&h, "session.participants").await {
        assert!(!row.entry.detail.to_string().contains(WA_USER));
    }
}

async fn message_updates_are_relayed_where_8x8_can_show_them_else_recorded(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_writes(&h, WA_USER).await;
    let message = h
        .rep
        .message((MSG_ADDRESS, WA_USER), "A file follows")
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    // The rep's message gets its file: 8x8 gets it too.
    let pdf = b"%PDF-1.4 the file".to_vec();
    h.rep
        .message_updated_with_file(
            (MSG_ADDRESS, WA_USER),
            &message,
            "terms.pdf",
            "application/pdf",
            pdf,
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 2).await;
    h.drain().await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].kind, "file");
    assert_eq!(
        sent[1].client_message_id.as_deref(),
        Some(format!("{message}#1001").as_str())
    );
    // The end user's upload failed at Salesforce: nothing to show them; recorded with the reason.
    h.rep
        .message_updated(
            (MSG_ADDRESS, WA_USER),
            &uuid::Uuid::new_v4().to_string(),
            "photo.jpg",
            &UploadResult::Error {
                error_type: "AttachmentTooLarge".into(),
                message: "too large".into(),
            },
        )
        .unwrap();
    let recorded = wait_audit_matching(&h, "outbound.recorded", "MessageUpdated").await;
    assert!(recorded.contains("AttachmentTooLarge"), "{recorded}");
    assert_eq!(h.wa.sent_messages().len(), 2);
}

/// With `remove_previous_agent`, the rep removed after a transfer is the one Salesforce says
/// is in the session (byocd routed the session to no rep itself: `channel-default`); a rep who
/// already left is not removed again.
async fn a_transfer_removes_the_rep_salesforce_says_is_in_the_session(db: TestDb) {
    let h = Outbound::start_with_routing(
        db,
        "",
        "policy = \"channel-default\"\nremove_previous_agent = true",
    )
    .await;
    let transfer = async |user: &str, n: usize| {
        h.rep
            .transfer_request((CC_ADDRESS, user), &TransferTarget::User(REP_3.into()))
            .unwrap();
        h.wait_rows(kind::ROUTING_REQUEST, n).await;
        h.drain().await;
    };
    let rep_2 = h.rep.clone().as_user(REP_2, "Rep Two");

    // REP_2 joined; REP_2 transfers to REP_3: REP_2 is removed.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "mo-t1", &RCS_USER[1..], Some("hi")),
    )
    .await;
    h.drain().await;
    rep_2
        .participant_changed((CC_ADDRESS, RCS_USER), ParticipantOperation::Add)
        .unwrap();
    wait_audit(&h, "session.participants_changed", 1).await;
    transfer(RCS_USER, 1).await;
    let removed = h.salesforce.requests_to("/api/v1/participant");
    assert_eq!(removed.len(), 1);
    let body = removed[0].body.clone().unwrap();
    assert_eq!(body["operation"], "Remove");
    assert_eq!(body["participants"][0]["subject"], REP_2);

    // Another end user: REP_2 joined and already left; the transfer removes nobody.
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "mo-t2", &NEW_RCS_USER[1..], Some("hi")),
    )
    .await;
    h.drain().await;
    for operation in [ParticipantOperation::Add, ParticipantOperation::Remove] {
        rep_2
            .participant_changed((CC_ADDRESS, NEW_RCS_USER), operation)
            .unwrap();
    }
    wait_audit(&h, "session.participants_changed", 3).await;
    transfer(NEW_RCS_USER, 2).await;
    assert_eq!(h.salesforce.requests_to("/api/v1/participant").len(), 1);
}

/// Waits (up to 20 s) for at least `n` audit rows of `kind`.
async fn wait_audit(h: &Outbound, kind: &str, n: usize) -> Vec<AuditRow> {
    for _ in 0..400 {
        let rows = audit_of(h, kind).await;
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} {kind} audit rows after 20 s");
}

/// Waits (up to 20 s) for an audit row of `kind` whose message contains `text`; its message.
async fn wait_audit_matching(h: &Outbound, kind: &str, text: &str) -> String {
    for _ in 0..400 {
        if let Some(row) = audit_of(h, kind)
            .await
            .into_iter()
            .find(|r| r.entry.message.contains(text))
        {
            return row.entry.message;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no {kind} audit row about {text} after 20 s");
}

/// `[whatsapp_template]`: read into the channel when valid; every bad key named as
/// `file:key` by `config check`, and the table refused on a channel without WhatsApp's window.
#[test]
fn template_keys_are_checked_as_file_and_key() {
    let endpoints = Endpoints {
        salesforce: "http://127.0.0.1:9".into(),
        eightbyeight: "http://127.0.0.1:9".into(),
        kaleyra: "http://127.0.0.1:9".into(),
        pubsub: "http://127.0.0.1:9".into(),
    };
    let env = [(
        "BYOCD__DATABASE__URL".to_string(),
        "sqlite:///tmp/byocd-never-opened.db".to_string(),
    )];
    let good = ConfigDir::write(&endpoints, "", TEMPLATE);
    let config = byocd::config::load_with_env(&good.main_file, &env).unwrap();
    let wa = config
        .channels
        .iter()
        .find(|c| c.name == WA_CHANNEL)
        .unwrap();
    let template = wa.whatsapp_template.as_ref().unwrap();
    assert_eq!(template.name, "agent_follow_up");
    assert_eq!(template.language, "en_US");
    assert_eq!(
        template.body_parameters,
        [
            TemplateParameter::Literal("Acme".into()),
            TemplateParameter::Text
        ]
    );
    assert!(
        config
            .channels
            .iter()
            .find(|c| c.name == RCS_CHANNEL)
            .unwrap()
            .whatsapp_template
            .is_none()
    );

    let bad = ConfigDir::write(
        &endpoints,
        "",
        "\n[whatsapp_template]\nname = \"Agent Follow-Up\"\nlanguage = \"english\"\nbody_parameters = [\"text\", \"message\", \"=two\\nlines\"]\n",
    );
    let problems = byocd::config::load_with_env(&bad.main_file, &env)
        .unwrap_err()
        .to_string();
    for key in [
        "acme-whatsapp.toml:whatsapp_template.name: `Agent Follow-Up` is not a WhatsApp template name",
        "acme-whatsapp.toml:whatsapp_template.language: `english` is not a WhatsApp language code",
        "acme-whatsapp.toml:whatsapp_template.body_parameters[1]: `message` is neither",
        "acme-whatsapp.toml:whatsapp_template.body_parameters[2]: a fixed parameter",
    ] {
        assert!(problems.contains(key), "{key} missing from:\n{problems}");
    }
    // Missing keys are named too.
    let missing = ConfigDir::write(&endpoints, "", "\n[whatsapp_template]\n");
    let problems = byocd::config::load_with_env(&missing.main_file, &env)
        .unwrap_err()
        .to_string();
    assert!(problems.contains("whatsapp_template.name"), "{problems}");
    assert!(
        problems.contains("whatsapp_template.language"),
        "{problems}"
    );
}

on_both_backends!(
    at_23h59_text_is_sent_and_at_24h01_the_template,
    without_a_template_the_rep_learns_the_24_hour_rule,
    proactive_messages_open_a_session_rcs_directly_whatsapp_as_a_template,
    an_opt_out_stops_rep_messages_and_an_opt_in_lets_them_through,
    participants_are_kept_and_conferenced_reps_join,
    message_updates_are_relayed_where_8x8_can_show_them_else_recorded,
    a_transfer_removes_the_rep_salesforce_says_is_in_the_session,
);
