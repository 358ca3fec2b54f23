//! What each channel registers with Salesforce (`PATCH /capabilities`): at start, again after
//! a reload that changes it, and a refusal remediated; on both backends, through the relay and
//! the Salesforce emulator.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use byocd::{
    domain::capabilities,
    sandbox::salesforce::Failure,
    store::{AuditFilter, OutboxFilter, Store, relay::kind},
};
use serde_json::{Value, json};
use support::{
    TestDb,
    channels::{RCS_CHANNEL, WA_CHANNEL},
    outbound::Outbound,
};

/// `[(messageType, [formatType])]` of a registered body.
fn formats(body: &Value) -> Vec<(String, Vec<String>)> {
    body["capabilities"]["channelCapabilities"][0]["messageTypeCapabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["messageType"].as_str().unwrap().to_owned(),
                m["formatTypeCapabilities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["formatType"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The restrictions of a format of the `StaticContentMessage` capabilities.
fn restrictions(body: &Value, format: &str) -> Vec<Value> {
    body["capabilities"]["channelCapabilities"][0]["messageTypeCapabilities"][0]
        ["formatTypeCapabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["formatType"] == format)
        .unwrap()["capabilityFieldRestriction"]
        .as_array()
        .unwrap()
        .clone()
}

fn owned(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    pairs
        .iter()
        .map(|(m, f)| (m.to_string(), f.iter().map(|s| s.to_string()).collect()))
        .collect()
}

async fn channels_register_at_start_and_again_after_a_reload_that_changes_them(db: TestDb) {
    let h = Outbound::start(db, "").await;
    let registered = capabilities::enqueue(&h.store, None, &h.config.channels)
        .await
        .unwrap();
    assert_eq!(registered.len(), h.config.channels.len());
    h.drain().await;
    let wa = h.config.channel(WA_CHANNEL).unwrap().clone();
    let rcs = h.config.channel(RCS_CHANNEL).unwrap().clone();
    let all = h.salesforce.capabilities();
    let body = all[&wa.authorization_context].clone();
    let everything: &[(&str, &[&str])] = &[
        ("StaticContentMessage", &["Text", "Attachments"]),
        ("ChoicesMessage", &["Buttons", "QuickReplies", "ListPicker"]),
    ];
    assert_eq!(formats(&body), owned(everything));
    let channel = &body["capabilities"]["channelCapabilities"][0];
    assert_eq!(body["capabilities"]["appType"], "custom");
    assert_eq!(
        channel["customIntegration"],
        json!({
            "customIntegrationType": "CustomChannelIntegration",
            "integrationNamespace": wa.org_id.as_str(),
            "conversationChannelDefinitionDevName": wa.authorization_context,
        })
    );
    // WhatsApp text is at most 4,096 characters; files are WhatsApp's types, at most 100 MB.
    assert_eq!(
        restrictions(&body, "Text"),
        [
            json!({ "fieldJsonPath": "$.staticContent.text", "restriction": {
            "fieldRestrictionType": "StringFieldRestriction", "encoding": "UTF8", "maxLength": 4096,
        } })
        ]
    );
    let files = restrictions(&body, "Attachments");
    assert_eq!(
        files[0],
        json!({ "fieldJsonPath": "$.staticContent.attachments.mimeType", "restriction": {
            "fieldRestrictionType": "MimeTypeRestriction", "mimeType": "image/jpeg",
        } })
    );
    assert_eq!(
        files.last().unwrap(),
        &json!({ "fieldJsonPath": "$.staticContent.attachments", "restriction": {
            "fieldRestrictionType": "FileSizeRestriction", "maxSizeInKb": 102400,
        } })
    );
    // RCS text is at most 3,072 characters.
    let rcs_body = all[&rcs.authorization_context].clone();
    assert_eq!(
        restrictions(&rcs_body, "Text")[0]["restriction"]["maxLength"],
        3072
    );

    // A reload that changes nothing registers nothing.
    let unchanged = capabilities::enqueue(&h.store, Some(&h.config.channels), &h.config.channels)
        .await
        .unwrap();
    assert!(unchanged.is_empty());
    // A reload narrowing the WhatsApp channel registers that channel only.
    let mut narrowed = h.config.channels.clone();
    for c in narrowed.iter_mut().filter(|c| c.name == WA_CHANNEL) {
        c.capabilities.formats = Some(vec!["Text".into(), "Attachments".into(), "Buttons".into()]);
        c.capabilities.max_attachment_kb = Some(5120);
    }
    let again = capabilities::enqueue(&h.store, Some(&h.config.channels), &narrowed)
        .await
        .unwrap();
    assert_eq!(again, [WA_CHANNEL.to_owned()]);
    h.drain().await;
    let body = h.salesforce.capabilities()[&wa.authorization_context].clone();
    let narrow: &[(&str, &[&str])] = &[
        ("StaticContentMessage", &["Text", "Attachments"]),
        ("ChoicesMessage", &["Buttons"]),
    ];
    assert_eq!(formats(&body), owned(narrow));
    assert_eq!(
        restrictions(&body, "Attachments").last().unwrap()["restriction"]["maxSizeInKb"],
        5120
    );
    let queued = h
        .store
        .audit(&AuditFilter {
            kind: Some("capabilities.queued".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), h.config.channels.len() + 1);
}

async fn a_refused_registration_is_dead_lettered_with_an_alert_and_the_channel_keeps_working(
    db: TestDb,
) {
    let h = Outbound::start(db, "").await;
    h.salesforce.inject(
        "PATCH /api/v1/capabilities",
        Failure::IsaError {
            http_status: 400,
            code: 10050,
        },
        1,
    );
    let wa = h.config.channel(WA_CHANNEL).unwrap().clone();
    capabilities::enqueue(&h.store, None, std::slice::from_ref(&wa))
        .await
        .unwrap();
    h.drain().await;
    let rows = h
        .store
        .outbox(&OutboxFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kind::ISA_CAPABILITIES)
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "dead");
    assert_eq!(rows[0].last_code.as_deref(), Some("10050"));
    let paused = h
        .store
        .audit(&AuditFilter {
            kind: Some("channel.paused".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(paused.is_empty());
    assert!(h.salesforce.capabilities().is_empty());
    // A reload registers again, and Salesforce takes it.
    capabilities::enqueue(&h.store, None, std::slice::from_ref(&wa))
        .await
        .unwrap();
    h.drain().await;
    assert!(
        h.salesforce
            .capabilities()
            .contains_key(&wa.authorization_context)
    );
}

on_both_backends!(
    channels_register_at_start_and_again_after_a_reload_that_changes_them,
    a_refused_registration_is_dead_lettered_with_an_alert_and_the_channel_keeps_working,
);
