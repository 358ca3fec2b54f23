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
        ("StaticContentMessage", &["Text", "Attachments", "RichLink"]),
        (
            "ChoicesMessage",
            &[
                "Buttons",
                "QuickReplies",
                "ListPicker",
                "Carousel",
                "TimePicker",
            ],
        ),
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

/// `PATCH /capabilities` calls Salesforce answered 200 for an `AuthorizationContext`.
fn registrations(
    emulator: &byocd::sandbox::salesforce::SalesforceEmulator,
    context: &str,
) -> usize {
    emulator
        .requests_to("/api/v1/capabilities")
        .iter()
        .filter(|r| r.status == 200)
        .filter(|r| {
            r.headers
                .iter()
                .any(|(k, v)| k == "authorizationcontext" && v == context)
        })
        .count()
}

/// Waits (60 s at most) until Salesforce holds a registration of `context` that `done` accepts.
async fn wait_registered(
    emulator: &byocd::sandbox::salesforce::SalesforceEmulator,
    context: &str,
    done: impl Fn(&Value) -> bool,
    daemon: &support::daemon::Daemon,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(body) = emulator.capabilities().get(context).filter(|b| done(b)) {
            return body.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{context}: no such registration within 60 s (has {:?}); the daemon's log ends:\n{}",
            emulator.capabilities().get(context).map(formats),
            daemon.log_tail(40)
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The real `byocd serve`: both channels register at start; a SIGHUP that changes nothing
/// registers nothing; a SIGHUP narrowing the WhatsApp channel's `[capabilities]` registers
/// that channel again with the narrowed body, and only that channel.
async fn a_running_daemon_registers_at_start_and_again_after_a_sighup_that_changes_them(
    db: TestDb,
) {
    use support::{
        daemon::Launcher,
        salesforce::{CC_CONTEXT, MSG_CONTEXT, emulator_and_config},
    };
    let _turn = support::exclusive().await;
    let (emulator, config) =
        emulator_and_config("\n[relay]\nlease = \"3s\"\npoll_interval = \"50ms\"\n").await;
    let logs = tempfile::tempdir().unwrap();
    let mut launcher = Launcher::new(&config.main_file, &db.url, logs.path());
    let daemon = launcher.start("capabilities").await;
    let everything: &[(&str, &[&str])] = &[
        ("StaticContentMessage", &["Text", "Attachments", "RichLink"]),
        (
            "ChoicesMessage",
            &[
                "Buttons",
                "QuickReplies",
                "ListPicker",
                "Carousel",
                "TimePicker",
            ],
        ),
    ];
    let at_start = wait_registered(&emulator, MSG_CONTEXT, |_| true, &daemon).await;
    assert_eq!(formats(&at_start), owned(everything));
    wait_registered(&emulator, CC_CONTEXT, |_| true, &daemon).await;

    // A reload that changes nothing registers nothing (checked below: the narrowing reload's
    // registration, in the same order per channel, is the second one).
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_for_log("reload: applied", mark).await;

    // The admin narrows the WhatsApp channel and reloads.
    let wa_file = config
        .path()
        .join("channels.d")
        .join(format!("{WA_CHANNEL}.toml"));
    let text = std::fs::read_to_string(&wa_file).unwrap();
    assert!(text.contains("[provider]"), "{text}");
    std::fs::write(
        &wa_file,
        text.replace(
            "[provider]",
            "[capabilities]\nformats = [\"Text\", \"Buttons\"]\n\n[provider]",
        ),
    )
    .unwrap();
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_for_log("reload: applied", mark).await;
    let narrowed = wait_registered(
        &emulator,
        MSG_CONTEXT,
        |b| formats(b).len() == 2 && formats(b)[0].1.len() == 1,
        &daemon,
    )
    .await;
    assert_eq!(
        formats(&narrowed),
        owned(&[
            ("StaticContentMessage", &["Text"]),
            ("ChoicesMessage", &["Buttons"]),
        ])
    );
    assert_eq!(
        registrations(&emulator, MSG_CONTEXT),
        2,
        "the WhatsApp channel registered at start and after the narrowing reload only"
    );
    assert_eq!(
        registrations(&emulator, CC_CONTEXT),
        1,
        "the unchanged RCS channel registered once, at start"
    );
}

on_both_backends!(
    a_running_daemon_registers_at_start_and_again_after_a_sighup_that_changes_them,
    channels_register_at_start_and_again_after_a_reload_that_changes_them,
    a_refused_registration_is_dead_lettered_with_an_alert_and_the_channel_keeps_working,
);
