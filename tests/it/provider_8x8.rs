//! The 8x8 Chat Apps provider: every documented webhook variant, authentication, every call
//! against the strict emulator (including the two-hour typing rule on both sides of the
//! boundary), every error class, and the emulator's own strictness.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::{net::IpAddr, time::Duration};

use byocd::{
    config::{EightByEightAccount, EightByEightChannel, IpNetwork, SecretFile},
    providers::{
        AuthFailure, DeliveryStatus, E164, EndUser, InboundContent, InboundEvent, InboundMessage,
        LastInbound, MediaKind, OutboundMedia, Provider, ProviderCode, ProviderErrorClass,
        ReadOutcome, Receipt, Recorded, TypingOutcome, eightbyeight::EightByEight,
    },
    sandbox::eightbyeight::{
        EightByEightEmulator, EightByEightSettings, EightByEightWebhooks, Failure, InboundBody,
        InboundFormat, StatusFormat, StatusUpdate, WebhookUser,
    },
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const WA: &str = "acme-whatsapp";
const RCS: &str = "acme-rcs";
const API_KEY: &str = "k3y-for-tests-only";
const HOOK_SECRET: &str = "Basic d2ViaG9vazpzM2NyM3Q=";

fn account(sa: &str, channel: EightByEightChannel, base_url: &str) -> EightByEightAccount {
    EightByEightAccount {
        sub_account_id: sa.into(),
        channel,
        base_url: base_url.into(),
        api_key: SecretFile::from_value("cred:8x8-key", API_KEY),
        webhook_authorization: byocd::config::WebhookAuthentication::Authorization(
            SecretFile::from_value("cred:8x8-hook", HOOK_SECRET),
        ),
        webhook_allow_networks: Vec::new(),
        media_hosts: Vec::new(),
    }
}

fn provider(sa: &str, channel: EightByEightChannel, base_url: &str) -> EightByEight {
    EightByEight::new(&account(sa, channel, base_url), reqwest::Client::new())
}

fn wa_parser() -> EightByEight {
    provider(
        WA,
        EightByEightChannel::Whatsapp,
        "https://chatapps.8x8.com",
    )
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn num(s: &str) -> Option<E164> {
    Some(E164::parse(s).unwrap())
}

fn user(msisdn: Option<&str>, id: Option<&str>, name: Option<&str>) -> EndUser {
    EndUser {
        msisdn: msisdn.and_then(num),
        channel_user_id: id.map(str::to_owned),
        display_name: name.map(str::to_owned),
    }
}

fn mei_v2() -> EndUser {
    user(Some("+6591234567"), None, Some("Mei Tan"))
}

fn mei_v3() -> EndUser {
    user(
        Some("+6591234567"),
        Some("SG.1349120865530274"),
        Some("Mei Tan"),
    )
}

fn msg(
    umid: &str,
    user: EndUser,
    ts: &str,
    content: InboundContent,
    reply_to: Option<&str>,
) -> InboundEvent {
    InboundEvent::Message(InboundMessage {
        event_key: umid.into(),
        provider_message_id: umid.into(),
        user,
        received_at: at(ts),
        content,
        reply_to: reply_to.map(str::to_owned),
    })
}

fn media(kind: MediaKind, url: &str, caption: Option<&str>) -> InboundContent {
    InboundContent::Media {
        media: kind,
        url: url.into(),
        mime_type: None,
        file_name: None,
        caption: caption.map(str::to_owned),
    }
}

#[allow(clippy::too_many_arguments)]
fn rcpt(
    umid: &str,
    key_tail: &str,
    client_reference: Option<&str>,
    user: Option<EndUser>,
    status: DeliveryStatus,
    error: Option<(&str, &str)>,
    ts: &str,
) -> InboundEvent {
    InboundEvent::Receipt(Receipt {
        event_key: format!("{umid}:{key_tail}"),
        provider_message_id: umid.into(),
        client_reference: client_reference.map(str::to_owned),
        user,
        status,
        error: error.map(|(c, m)| ProviderCode {
            code: c.into(),
            message: Some(m.into()),
        }),
        at: at(ts),
    })
}

const U: &str = "c2000000-0000-4000-8000-0000000000";
const V3_TS: &str = "2026-06-09T10:13:20.00Z";

/// What each fixture must parse into.
fn expected(name: &str) -> Vec<InboundEvent> {
    let u = |n: &str| format!("{U}{n}");
    let a = |n: &str| format!("a1000000-0000-4000-8000-0000000000{n}");
    let phone_only = || Some(user(Some("+6591234567"), None, None));
    let v2_receipt_user = || Some(user(Some("+6591234567"), None, None));
    let both = || Some(user(Some("+6591234567"), Some("SG.1349120865530274"), None));
    let cmid = Some("byocd-7f3a");
    let event = match name {
        "inbound_v2_text" => msg(
            &a("01"),
            mei_v2(),
            "2026-01-01T14:34:56.017Z",
            InboundContent::Text {
                text: "Hi, my order has not arrived".into(),
            },
            Some("a1000000-0000-4000-8000-0000000000ff"),
        ),
        "inbound_v3_text" => msg(
            &a("02"),
            mei_v3(),
            V3_TS,
            InboundContent::Text {
                text: "Hello from v3".into(),
            },
            None,
        ),
        "inbound_v3_bsuid_only" => msg(
            &a("03"),
            user(None, Some("US.13491208655302741918"), Some("quiet.user")),
            V3_TS,
            InboundContent::Text {
                text: "No number here".into(),
            },
            None,
        ),
        "inbound_v3_rcs_text" => msg(
            &a("04"),
            user(Some("+447700900123"), None, None),
            "2026-07-03T01:14:03.00Z",
            InboundContent::Text {
                text: "RCS hello".into(),
            },
            None,
        ),
        "inbound_v3_image" => msg(
            &a("10"),
            mei_v3(),
            V3_TS,
            media(
                MediaKind::Image,
                "https://chatapps.8x8.example/in/5b1f.jpg?X-Sig=abc",
                Some("Here is the damage"),
            ),
            None,
        ),
        "inbound_v3_audio" => msg(
            &a("11"),
            mei_v3(),
            V3_TS,
            media(
                MediaKind::Audio,
                "https://chatapps.8x8.example/in/5b20.ogg?X-Sig=abc",
                None,
            ),
            None,
        ),
        "inbound_v3_video" => msg(
            &a("12"),
            mei_v3(),
            V3_TS,
            media(
                MediaKind::Video,
                "https://chatapps.8x8.example/in/5b21.mp4?X-Sig=abc",
                None,
            ),
            None,
        ),
        "inbound_v3_file" => msg(
            &a("13"),
            mei_v3(),
            V3_TS,
            media(
                MediaKind::File,
                "https://chatapps.8x8.example/in/5b22.pdf?X-Sig=abc",
                Some("invoice.pdf"),
            ),
            None,
        ),
        "inbound_v2_image" => msg(
            &a("20"),
            mei_v2(),
            V3_TS,
            media(
                MediaKind::Image,
                "https://chatapps.8x8.example/in/5b30.png?X-Sig=def",
                None,
            ),
            None,
        ),
        "inbound_v3_location" => msg(
            &a("21"),
            mei_v3(),
            V3_TS,
            InboundContent::Location {
                latitude: 1.2834,
                longitude: 103.8607,
                name: None,
                address: None,
            },
            None,
        ),
        "inbound_v3_button_reply" => msg(
            &a("22"),
            mei_v3(),
            V3_TS,
            InboundContent::InteractiveReply {
                id: Some("btn-talk-to-agent".into()),
                title: "Talk to an agent".into(),
            },
            None,
        ),
        "inbound_v3_list_reply" => msg(
            &a("23"),
            mei_v3(),
            V3_TS,
            InboundContent::InteractiveReply {
                id: Some("slot-2".into()),
                title: "Monday, Oct 9".into(),
            },
            None,
        ),
        "inbound_v2_button_reply" => msg(
            &a("24"),
            mei_v2(),
            V3_TS,
            InboundContent::InteractiveReply {
                id: Some("btn-no".into()),
                title: "No thanks".into(),
            },
            None,
        ),
        "inbound_v3_nfm_reply" => InboundEvent::Recorded(Recorded {
            event_key: a("25"),
            kind: "inbound_message_received:nfmReply".into(),
            user: both(),
            at: at("2026-03-19T22:51:55.00Z"),
        }),
        "inbound_v2_call_permission_reply" => InboundEvent::Recorded(Recorded {
            event_key: a("26"),
            kind: "inbound_message_received:callPermissionReply".into(),
            user: phone_only(),
            at: at("2026-01-22T22:51:55.00Z"),
        }),
        "status_v9_queued" => rcpt(
            &u("01"),
            "queued",
            None,
            phone_only(),
            DeliveryStatus::Queued,
            None,
            "2026-07-03T03:23:21.90Z",
        ),
        "status_v9_sent" => rcpt(
            &u("02"),
            "sent",
            cmid,
            phone_only(),
            DeliveryStatus::Sent,
            None,
            "2026-07-03T03:23:22.40Z",
        ),
        "status_v9_delivered_to_operator" => rcpt(
            &u("03"),
            "delivered:delivered_to_operator",
            cmid,
            phone_only(),
            DeliveryStatus::Sent,
            None,
            "2026-07-03T03:23:23.00Z",
        ),
        "status_v9_delivered" => rcpt(
            &u("04"),
            "delivered:delivered_to_recipient",
            cmid,
            both(),
            DeliveryStatus::Delivered,
            None,
            "2026-07-03T03:40:54.16Z",
        ),
        "status_v9_read" => rcpt(
            &u("05"),
            "read",
            cmid,
            both(),
            DeliveryStatus::Read,
            None,
            "2026-07-03T05:12:41.30Z",
        ),
        "status_v9_undelivered" => rcpt(
            &u("06"),
            "undelivered:undelivered_to_recipient",
            cmid,
            Some(user(None, Some("US.13491208655302741918"), None)),
            DeliveryStatus::Undelivered,
            Some(("1022", "Message window expired (WhatsApp error 131047)")),
            "2026-07-03T06:00:00.00Z",
        ),
        "status_v9_rejected" => rcpt(
            &u("07"),
            "rejected:rejected_by_operator",
            cmid,
            phone_only(),
            DeliveryStatus::Rejected,
            Some(("15", "Invalid destination")),
            "2026-07-03T06:01:00.00Z",
        ),
        "status_v9_rcs_read" => rcpt(
            &u("08"),
            "read",
            cmid,
            Some(user(Some("+447700900123"), None, None)),
            DeliveryStatus::Read,
            None,
            "2026-07-03T03:41:51.85Z",
        ),
        "status_v8_queued" => rcpt(
            &u("11"),
            "queued",
            cmid,
            v2_receipt_user(),
            DeliveryStatus::Queued,
            None,
            "2025-05-05T09:15:50.00Z",
        ),
        "status_v8_sent" => rcpt(
            &u("12"),
            "sent",
            cmid,
            v2_receipt_user(),
            DeliveryStatus::Sent,
            None,
            "2025-05-05T09:15:51.00Z",
        ),
        "status_v8_delivered" => rcpt(
            &u("13"),
            "delivered:delivered_to_recipient",
            cmid,
            v2_receipt_user(),
            DeliveryStatus::Delivered,
            None,
            "2025-05-05T09:15:57.00Z",
        ),
        "status_v8_read" => rcpt(
            &u("14"),
            "read",
            cmid,
            v2_receipt_user(),
            DeliveryStatus::Read,
            None,
            "2025-05-17T06:27:52.45Z",
        ),
        "status_v8_undelivered" => rcpt(
            &u("15"),
            "undelivered:rejected_by_operator",
            cmid,
            v2_receipt_user(),
            DeliveryStatus::Undelivered,
            Some(("15", "Invalid destination (WhatsApp error 131009)")),
            "2026-01-01T00:00:00Z",
        ),
        "status_v8_rejected" => rcpt(
            &u("16"),
            "rejected",
            cmid,
            v2_receipt_user(),
            DeliveryStatus::Rejected,
            Some(("43", "Spam filter")),
            "2026-01-01T00:00:01Z",
        ),
        "external_app_message_v9" => InboundEvent::Recorded(Recorded {
            event_key: "external:e3000000-0000-4000-8000-000000000001".into(),
            kind: "external_app_message".into(),
            user: both(),
            at: at("2026-01-28T09:16:53.00Z"),
        }),
        "external_app_message_v8" => InboundEvent::Recorded(Recorded {
            event_key: "external:e3000000-0000-4000-8000-000000000002".into(),
            kind: "external_app_message".into(),
            user: phone_only(),
            at: at("2026-01-28T09:16:53.00Z"),
        }),
        other => panic!("fixture {other} has no expectation"),
    };
    vec![event]
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/8x8");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_documented_fixture_parses_into_the_expected_events() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 31, "fixtures: {}", fixtures.len());
    let whatsapp = wa_parser();
    let rcs = provider(RCS, EightByEightChannel::Rcs, "https://chatapps.8x8.com");
    for (name, body) in fixtures {
        let parser = if name.contains("rcs") {
            &rcs
        } else {
            &whatsapp
        };
        let events = parser
            .parse_webhook(&body)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(events, expected(&name), "{name}");
    }
}

#[test]
fn receipts_of_one_message_have_distinct_keys_and_retries_share_them() {
    let p = wa_parser();
    let sender = EightByEightWebhooks::new(WA, EightByEightChannel::Whatsapp);
    let mut keys = Vec::new();
    for (state, detail) in [
        ("queued", None),
        ("sent", None),
        ("delivered", Some("delivered_to_operator")),
        ("delivered", Some("delivered_to_recipient")),
        ("read", None),
    ] {
        let mut update = StatusUpdate::new("u-1", state);
        update.detail = detail.map(str::to_owned);
        update.user = Some(WebhookUser::phone("+6591234567"));
        let payload = sender.status(StatusFormat::V9, &update);
        let first = p.parse_webhook(&payload.to_bytes()).unwrap();
        let retry = p.parse_webhook(&payload.to_bytes()).unwrap();
        assert_eq!(first[0].event_key(), retry[0].event_key());
        keys.push(first[0].event_key().to_owned());
    }
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
}

#[test]
fn every_variant_the_webhook_sender_builds_parses() {
    for channel in [EightByEightChannel::Whatsapp, EightByEightChannel::Rcs] {
        let sa = if channel == EightByEightChannel::Whatsapp {
            WA
        } else {
            RCS
        };
        let p = provider(sa, channel, "https://chatapps.8x8.com");
        let sender = EightByEightWebhooks::new(sa, channel);
        let variants = sender.documented_variants();
        assert!(variants.len() >= 30);
        for (name, payload) in variants {
            let events = p
                .parse_webhook(&payload.to_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(events.len(), 1, "{name}");
            let key = events[0].event_key();
            assert!(key.contains(&payload.umid), "{name}: {key}");
            if name.starts_with("inbound_") && !name.contains("nfm") && !name.contains("call_perm")
            {
                let InboundEvent::Message(m) = &events[0] else {
                    panic!("{name}: {:?}", events[0])
                };
                assert!(m.user.salesforce_key().is_some());
            }
        }
    }
}

#[test]
fn malformed_webhooks_name_the_problem() {
    let p = wa_parser();
    let good: Value =
        serde_json::from_slice(&std::fs::read(fixture_path("inbound_v3_text")).unwrap()).unwrap();
    let text = good.to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad json", b"{not json".to_vec(), "body: not JSON"),
        ("empty body", Vec::new(), "body: not JSON"),
        ("array", b"[]".to_vec(), "body: expected a JSON object"),
        (
            "truncated",
            text.as_bytes()[..text.len() / 2].to_vec(),
            "body: not JSON",
        ),
        (
            "unknown eventType",
            with(&good, "/eventType", json!("inbound_reaction")).into(),
            "eventType: unknown event type `inbound_reaction`",
        ),
        (
            "eventType number",
            with(&good, "/eventType", json!(5)).into(),
            "eventType: expected a string, got a number",
        ),
        (
            "missing umid",
            without(&good, "umid").into(),
            "payload.umid: missing",
        ),
        (
            "umid number",
            with(&good, "/payload/umid", json!(42)).into(),
            "payload.umid: expected a string, got a number",
        ),
        (
            "missing user identity",
            with(&good, "/payload/user", json!({ "name": "Mei" })).into(),
            "payload.user: has neither msisdn nor channelUserId",
        ),
        (
            "missing user",
            without(&good, "user").into(),
            "payload.user: missing",
        ),
        (
            "user is a string",
            with(&good, "/payload/user", json!("+6591234567")).into(),
            "payload.user: expected an object, got a string",
        ),
        (
            "text is a number",
            with(&good, "/payload/content/text", json!(1)).into(),
            "payload.content.text: expected a string, got a number",
        ),
        (
            "missing timestamp",
            without(&good, "timestamp").into(),
            "payload.timestamp: missing",
        ),
        (
            "missing payload",
            serde_json::to_vec(
                &json!({ "namespace": "ChatApps", "eventType": "inbound_message_received" }),
            )
            .unwrap(),
            "payload: missing",
        ),
    ];
    for (what, body, reason) in cases {
        let err = p.parse_webhook(&body).unwrap_err();
        assert!(
            err.reason.starts_with(reason),
            "{what}: got `{}`, want `{reason}`",
            err.reason
        );
    }
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/8x8")
        .join(format!("{name}.json"))
}

fn with(v: &Value, pointer: &str, new: Value) -> String {
    let mut v = v.clone();
    *v.pointer_mut(pointer).unwrap() = new;
    v.to_string()
}

fn without(v: &Value, field: &str) -> String {
    let mut v = v.clone();
    v["payload"].as_object_mut().unwrap().remove(field);
    v.to_string()
}

// ---------------------------------------------------------------------------------------------
// Authentication.

fn headers(authorization: Option<&str>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Some(a) = authorization {
        h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
    }
    h
}

#[test]
fn authenticate_checks_the_header_and_the_source() {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let p = wa_parser();
    assert_eq!(p.authenticate(&headers(Some(HOOK_SECRET)), local), Ok(()));
    assert_eq!(
        p.authenticate(&headers(None), local),
        Err(AuthFailure::Missing("Authorization"))
    );
    assert_eq!(
        p.authenticate(&headers(Some("Basic d3Jvbmc=")), local),
        Err(AuthFailure::Wrong("Authorization"))
    );
    // Same length, one byte off; and a prefix of the secret.
    let mut near = HOOK_SECRET.as_bytes().to_vec();
    *near.last_mut().unwrap() ^= 1;
    let near = String::from_utf8(near).unwrap();
    assert_eq!(
        p.authenticate(&headers(Some(&near)), local),
        Err(AuthFailure::Wrong("Authorization"))
    );
    assert_eq!(
        p.authenticate(&headers(Some(&HOOK_SECRET[..10])), local),
        Err(AuthFailure::Wrong("Authorization"))
    );
    // The comparison the provider relies on is the constant-time one.
    assert!(byocd::providers::constant_time_eq(
        HOOK_SECRET.as_bytes(),
        HOOK_SECRET.as_bytes()
    ));
    assert!(!byocd::providers::constant_time_eq(
        near.as_bytes(),
        HOOK_SECRET.as_bytes()
    ));

    let mut acct = account(
        WA,
        EightByEightChannel::Whatsapp,
        "https://chatapps.8x8.com",
    );
    acct.webhook_allow_networks = vec![
        "203.0.113.0/24".parse::<IpNetwork>().unwrap(),
        "2001:db8::/32".parse::<IpNetwork>().unwrap(),
    ];
    let p = EightByEight::new(&acct, reqwest::Client::new());
    let inside: IpAddr = "203.0.113.9".parse().unwrap();
    let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
    let inside6: IpAddr = "2001:db8::5".parse().unwrap();
    let outside: IpAddr = "198.51.100.7".parse().unwrap();
    for ip in [inside, mapped, inside6] {
        assert_eq!(
            p.authenticate(&headers(Some(HOOK_SECRET)), ip),
            Ok(()),
            "{ip}"
        );
    }
    assert_eq!(
        p.authenticate(&headers(Some(HOOK_SECRET)), outside),
        Err(AuthFailure::SourceNotAllowed(outside))
    );
    // A wrong secret is refused as such, wherever it comes from.
    assert_eq!(
        p.authenticate(&headers(Some("nope")), inside),
        Err(AuthFailure::Wrong("Authorization"))
    );
}

// ---------------------------------------------------------------------------------------------
// Calls against the emulator.

async fn emulator(channel: EightByEightChannel) -> (EightByEightEmulator, EightByEight) {
    let sa = if channel == EightByEightChannel::Whatsapp {
        WA
    } else {
        RCS
    };
    let mut settings = EightByEightSettings::new(sa, channel, API_KEY);
    settings.max_file_bytes = 64 * 1024;
    let emu = EightByEightEmulator::start(settings).await.unwrap();
    let p = provider(sa, channel, &emu.base_url());
    (emu, p)
}

fn mei() -> EndUser {
    user(
        Some("+6591234567"),
        Some("SG.1349120865530274"),
        Some("Mei"),
    )
}

#[tokio::test]
async fn send_text_by_number_and_by_bsuid() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let sent = p.send_text(&mei(), "Hello Mei", "byocd-1").await.unwrap();
    let log = emu.requests_to("/messages");
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.path, format!("/api/v1/subaccounts/{WA}/messages"));
    assert_eq!(r.header("authorization"), Some("Bearer …"));
    assert_eq!(
        r.body,
        Some(json!({
            "user": { "msisdn": "+6591234567" },
            "type": "text",
            "content": { "text": "Hello Mei" },
            "clientMessageId": "byocd-1",
        }))
    );
    assert_eq!(r.response["umid"], json!(sent.provider_message_id));
    assert_eq!(r.response["status"]["state"], json!("queued"));
    assert!(uuid::Uuid::parse_str(&sent.provider_message_id).is_ok());

    let hidden = user(None, Some("US.13491208655302741918"), None);
    p.send_text(&hidden, "Hi", "").await.unwrap();
    let body = emu.requests_to("/messages")[1].body.clone().unwrap();
    assert_eq!(
        body,
        json!({ "user": { "channelUserId": "US.13491208655302741918" },
                "type": "text", "content": { "text": "Hi" } })
    );

    // The emulator can then play the receipts of what it accepted.
    let dr = emu
        .delivery_receipt(&sent.provider_message_id, "read", None)
        .unwrap();
    let events = p.parse_webhook(&dr.to_bytes()).unwrap();
    let InboundEvent::Receipt(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.status, DeliveryStatus::Read);
    assert_eq!(r.client_reference.as_deref(), Some("byocd-1"));
    assert_eq!(r.provider_message_id, sent.provider_message_id);
}

#[tokio::test]
async fn local_refusals_make_no_call() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let long = "x".repeat(51);
    let err = p.send_text(&mei(), "hi", &long).await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Permanent);
    assert!(
        err.message
            .unwrap()
            .contains("clientMessageId has 51 characters")
    );
    let nobody = user(None, None, None);
    let err = p.send_text(&nobody, "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Permanent);
    let media = OutboundMedia::Bytes {
        bytes: bytes::Bytes::from_static(b"%PDF"),
        mime_type: "application/pdf".into(),
        file_name: "a.pdf".into(),
    };
    assert!(p.send_media(&mei(), &media, None, &long).await.is_err());
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
    // 50 characters are fine.
    p.send_text(&mei(), "hi", &"y".repeat(50)).await.unwrap();
}

#[tokio::test]
async fn send_media_by_url() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    for (mime, kind) in [
        ("image/jpeg", "image"),
        ("audio/ogg", "audio"),
        ("video/mp4", "video"),
        ("application/pdf", "file"),
    ] {
        let media = OutboundMedia::Url {
            url: "https://files.example.com/x".into(),
            mime_type: mime.into(),
            file_name: None,
        };
        p.send_media(&mei(), &media, Some("see this"), "r-1")
            .await
            .unwrap();
        let body = emu.requests_to("/messages").last().unwrap().body.clone();
        assert_eq!(
            body,
            Some(json!({
                "user": { "msisdn": "+6591234567" },
                "type": kind,
                "content": { "url": "https://files.example.com/x", "text": "see this" },
                "clientMessageId": "r-1",
            })),
            "{mime}"
        );
    }
}

#[tokio::test]
async fn send_media_by_bytes_uploads_then_sends_and_the_file_can_be_fetched() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let data = bytes::Bytes::from(vec![7u8; 4096]);
    let media = OutboundMedia::Bytes {
        bytes: data.clone(),
        mime_type: "image/png".into(),
        file_name: "scan.png".into(),
    };
    let sent = p.send_media(&mei(), &media, None, "r-2").await.unwrap();
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].path, format!("/api/v1/subaccounts/{WA}/files"));
    assert_eq!(log[0].status, 201);
    assert_eq!(
        log[0].file,
        Some((Some("scan.png".into()), Some("image/png".into()), 4096))
    );
    let file_name = log[0].response["fileName"].as_str().unwrap().to_owned();
    assert!(file_name.ends_with(".png"));
    let body = log[1].body.clone().unwrap();
    assert_eq!(body["type"], json!("image"));
    assert_eq!(log[1].response["umid"], json!(sent.provider_message_id));
    let url = body["content"]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/files/{file_name}?token=", emu.base_url())),
        "{url}"
    );
    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.headers()["content-type"].to_str().unwrap(),
        "image/png"
    );
    assert_eq!(fetched.bytes().await.unwrap(), data);
    // Without the token: not found.
    let bare = reqwest::get(format!("{}/files/{file_name}", emu.base_url()))
        .await
        .unwrap();
    assert_eq!(bare.status(), 404);
}

#[tokio::test]
async fn an_oversized_upload_is_permanent() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let media = OutboundMedia::Bytes {
        bytes: bytes::Bytes::from(vec![0u8; 65 * 1024]),
        mime_type: "video/mp4".into(),
        file_name: "big.mp4".into(),
    };
    let err = p.send_media(&mei(), &media, None, "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Permanent);
    assert_eq!(err.status, Some(413));
    assert_eq!(err.code.as_deref(), Some("7001"));
    assert!(emu.requests_to("/messages").is_empty());
}

async fn inbound(emu: &EightByEightEmulator) -> LastInbound {
    let payload = emu
        .webhooks()
        .inbound_text(&WebhookUser::phone("+6591234567"), "hello");
    LastInbound {
        provider_message_id: payload.umid.clone(),
        at: emu.inbound_at(&payload.umid).unwrap(),
    }
}

#[tokio::test]
async fn typing_within_two_hours_is_sent() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let last = inbound(&emu).await;
    let out = p.send_typing(&mei(), Some(&last), emu.now()).await.unwrap();
    assert_eq!(out, TypingOutcome::Sent);
    let log = emu.requests_to("/events");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 200);
    assert_eq!(
        log[0].body,
        Some(json!({ "channel": "whatsapp", "type": "typing", "umid": last.provider_message_id }))
    );
}

#[tokio::test]
async fn typing_at_one_hour_fifty_nine_is_sent() {
    let (emu, p) = emulator(EightByEightChannel::Rcs).await;
    let last = inbound(&emu).await;
    emu.advance_clock(Duration::from_secs(119 * 60));
    let out = p.send_typing(&mei(), Some(&last), emu.now()).await.unwrap();
    assert_eq!(out, TypingOutcome::Sent);
    let log = emu.requests_to("/events");
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].body.as_ref().unwrap()["channel"], json!("rcs"));
}

#[tokio::test]
async fn typing_at_two_hours_one_is_dropped_without_a_call() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let last = inbound(&emu).await;
    emu.advance_clock(Duration::from_secs(121 * 60));
    emu.clear_log();
    let out = p.send_typing(&mei(), Some(&last), emu.now()).await.unwrap();
    assert_eq!(
        out,
        TypingOutcome::Dropped {
            reason: "last inbound message is older than 2 hours".into()
        }
    );
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn typing_without_a_known_inbound_message_is_dropped() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let out = p.send_typing(&mei(), None, emu.now()).await.unwrap();
    assert_eq!(
        out,
        TypingOutcome::Dropped {
            reason: "no inbound message known".into()
        }
    );
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn mark_read_on_whatsapp_and_not_on_rcs() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    let last = inbound(&emu).await;
    assert_eq!(
        p.mark_read(&last.provider_message_id).await.unwrap(),
        ReadOutcome::Marked
    );
    let log = emu.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].path,
        format!(
            "/api/v1/subaccounts/{WA}/messages/{}/read",
            last.provider_message_id
        )
    );
    assert_eq!(log[0].status, 200);

    let (emu, p) = emulator(EightByEightChannel::Rcs).await;
    let last = inbound(&emu).await;
    assert_eq!(
        p.mark_read(&last.provider_message_id).await.unwrap(),
        ReadOutcome::NotSupported
    );
    assert!(emu.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Error classes.

#[tokio::test]
async fn rate_limits_are_retryable_with_retry_after() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    emu.inject("messages", Failure::RateLimited { seconds: 7 }, 1);
    let err = p.send_text(&mei(), "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Retryable);
    assert_eq!(err.status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    // Only once.
    p.send_text(&mei(), "hi", "r").await.unwrap();
}

#[tokio::test]
async fn server_errors_and_code_2000_are_retryable() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    emu.inject(
        "messages",
        Failure::Error {
            http_status: 500,
            code: 2000,
        },
        1,
    );
    emu.inject(
        "messages",
        Failure::Error {
            http_status: 400,
            code: 2000,
        },
        1,
    );
    emu.inject(
        "messages",
        Failure::Error {
            http_status: 503,
            code: 1000,
        },
        1,
    );
    for _ in 0..3 {
        let err = p.send_text(&mei(), "hi", "r").await.unwrap_err();
        assert_eq!(err.class, ProviderErrorClass::Retryable, "{err}");
    }
}

#[tokio::test]
async fn refused_credentials_are_authorisation_errors() {
    let (emu, _) = emulator(EightByEightChannel::Whatsapp).await;
    let mut acct = account(WA, EightByEightChannel::Whatsapp, &emu.base_url());
    acct.api_key = SecretFile::from_value("cred:8x8-key", "not-the-key");
    let p = EightByEight::new(&acct, reqwest::Client::new());
    let err = p.send_text(&mei(), "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Authorisation);
    assert_eq!(err.status, Some(401));
    assert_eq!(err.code.as_deref(), Some("1200"));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("not-the-key"), "{shown}");
    assert!(!shown.contains(API_KEY), "{shown}");
    emu.inject(
        "events",
        Failure::Error {
            http_status: 403,
            code: 1201,
        },
        1,
    );
    let (_, good) = (
        0,
        provider(WA, EightByEightChannel::Whatsapp, &emu.base_url()),
    );
    let last = inbound(&emu).await;
    let err = good
        .send_typing(&mei(), Some(&last), emu.now())
        .await
        .unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Authorisation);
}

#[tokio::test]
async fn bad_requests_are_permanent_and_say_what_was_wrong() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    emu.inject(
        "messages",
        Failure::Error {
            http_status: 400,
            code: 1002,
        },
        1,
    );
    let err = p.send_text(&mei(), "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Permanent);
    assert_eq!(err.code.as_deref(), Some("1002"));
    assert!(err.message.is_some());

    // A real 3xxx from the emulator's own checks: text over WhatsApp's limit.
    let err = p
        .send_text(&mei(), &"a".repeat(4097), "r")
        .await
        .unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Permanent);
    assert_eq!(err.code.as_deref(), Some("3006"));
    assert!(err.message.unwrap().starts_with("Too long text"));

    // A typing event for a umid the emulator never saw: 1300, permanent.
    let ghost = LastInbound {
        provider_message_id: "0f0f0f0f-0000-4000-8000-000000000000".into(),
        at: emu.now(),
    };
    let err = p
        .send_typing(&mei(), Some(&ghost), emu.now())
        .await
        .unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Permanent);
    assert_eq!(err.code.as_deref(), Some("1300"));
}

#[tokio::test]
async fn disconnects_and_timeouts_are_retryable() {
    let (emu, p) = emulator(EightByEightChannel::Whatsapp).await;
    emu.inject("messages", Failure::Disconnect, 1);
    let err = p.send_text(&mei(), "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Retryable);
    assert_eq!(err.status, None);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let slow = EightByEight::new(
        &account(WA, EightByEightChannel::Whatsapp, &emu.base_url()),
        http,
    );
    emu.delay("messages", Duration::from_secs(2), 1);
    let err = slow.send_text(&mei(), "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Retryable);
    assert!(err.message.unwrap().contains("timed out"));

    let closed = provider(WA, EightByEightChannel::Whatsapp, "http://127.0.0.1:9");
    let err = closed.send_text(&mei(), "hi", "r").await.unwrap_err();
    assert_eq!(err.class, ProviderErrorClass::Retryable);
}

// ---------------------------------------------------------------------------------------------
// The emulator's strictness on its own.

async fn raw(
    emu: &EightByEightEmulator,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}{path}", emu.base_url()));
    if let Some(b) = bearer {
        request = request.header("authorization", format!("Bearer {b}"));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn assert_error(answer: &(u16, Value), status: u16, code: u64) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["code"], json!(code), "{answer:?}");
    assert!(answer.1["message"].is_string());
    assert!(uuid::Uuid::parse_str(answer.1["errorId"].as_str().unwrap()).is_ok());
    assert!(answer.1["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_emulator_refuses_what_8x8_refuses() {
    let (emu, _) = emulator(EightByEightChannel::Whatsapp).await;
    let messages = format!("/api/v1/subaccounts/{WA}/messages");
    let events = format!("/api/v1/subaccounts/{WA}/events");
    let text = json!({ "user": { "msisdn": "+6591234567" }, "type": "text",
                       "content": { "text": "hi" } });

    // Bearer.
    assert_error(
        &raw(&emu, &messages, None, Some(text.clone())).await,
        401,
        1200,
    );
    assert_error(
        &raw(&emu, &messages, Some("wrong"), Some(text.clone())).await,
        401,
        1200,
    );
    // Sub-account: bad pattern, and someone else's.
    assert_error(
        &raw(
            &emu,
            "/api/v1/subaccounts/a%20b/messages",
            Some(API_KEY),
            Some(text.clone()),
        )
        .await,
        400,
        1001,
    );
    assert_error(
        &raw(
            &emu,
            "/api/v1/subaccounts/other-account/messages",
            Some(API_KEY),
            Some(text.clone()),
        )
        .await,
        400,
        1001,
    );
    assert_error(
        &raw(
            &emu,
            &format!("/api/v1/subaccounts/{}/messages", "x".repeat(51)),
            Some(API_KEY),
            Some(text.clone()),
        )
        .await,
        400,
        1001,
    );
    // Body schema.
    let mut cases = vec![
        (json!({ "type": "text", "content": { "text": "hi" } }), 3001),
        (
            json!({ "user": {}, "type": "text", "content": { "text": "hi" } }),
            3002,
        ),
        (
            json!({ "user": { "msisdn": "6591234567" }, "type": "text", "content": { "text": "hi" } }),
            1002,
        ),
        (
            json!({ "user": { "channelUserId": "6591234567" }, "type": "text", "content": { "text": "hi" } }),
            1000,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "sticker", "content": {} }),
            3010,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "Text", "content": { "text": "x" } }),
            3010,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "text" }),
            3004,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "text", "content": {} }),
            3005,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "image", "content": {} }),
            3007,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "image", "content": { "url": "not a url" } }),
            3008,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "location", "content": { "location": { "latitude": 100, "longitude": 0 } } }),
            3021,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "richCard", "content": { "richCard": {} } }),
            3010,
        ),
        (
            json!({ "user": { "msisdn": "+6591234567" }, "type": "text", "content": { "text": "x" }, "priority": 1 }),
            1000,
        ),
    ];
    let mut long_id = text.clone();
    long_id["clientMessageId"] = json!("c".repeat(51));
    cases.push((long_id, 3009));
    for (body, code) in cases {
        let answer = raw(&emu, &messages, Some(API_KEY), Some(body.clone())).await;
        assert_eq!(answer.1["code"], json!(code), "{body} → {answer:?}");
        assert_eq!(answer.0, 400, "{body}");
    }
    // Not JSON.
    let answer = reqwest::Client::new()
        .post(format!("{}{messages}", emu.base_url()))
        .bearer_auth(API_KEY)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 415);
    // A good one passes.
    let ok = raw(&emu, &messages, Some(API_KEY), Some(text.clone())).await;
    assert_eq!(ok.0, 200, "{ok:?}");

    // Typing: unknown umid, too old, bad channel enum, other channel, wrong type, no umid.
    let known = emu
        .webhooks()
        .inbound_text(&WebhookUser::phone("+6591234567"), "hi")
        .umid;
    let typing = |channel: &str, kind: &str, umid: &str| json!({ "channel": channel, "type": kind, "umid": umid });
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(typing(
                "whatsapp",
                "typing",
                "11111111-2222-4333-8444-555555555555",
            )),
        )
        .await,
        404,
        1300,
    );
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(typing("telegram", "typing", &known)),
        )
        .await,
        400,
        1000,
    );
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(typing("rcs", "typing", &known)),
        )
        .await,
        400,
        1000,
    );
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(typing("whatsapp", "read", &known)),
        )
        .await,
        400,
        1000,
    );
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(json!({ "channel": "whatsapp", "type": "typing" })),
        )
        .await,
        400,
        3029,
    );
    let fine = raw(
        &emu,
        &events,
        Some(API_KEY),
        Some(typing("whatsapp", "typing", &known)),
    )
    .await;
    assert_eq!(fine.0, 200);
    let old = "99999999-2222-4333-8444-555555555555";
    emu.record_inbound(old, emu.now() - chrono::Duration::minutes(121));
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(typing("whatsapp", "typing", old)),
        )
        .await,
        400,
        1010,
    );
    emu.advance_clock(Duration::from_secs(2 * 60 * 60));
    assert_error(
        &raw(
            &emu,
            &events,
            Some(API_KEY),
            Some(typing("whatsapp", "typing", &known)),
        )
        .await,
        400,
        1010,
    );

    // Read: unknown umid.
    assert_error(
        &raw(
            &emu,
            &format!("/api/v1/subaccounts/{WA}/messages/nope/read"),
            Some(API_KEY),
            None,
        )
        .await,
        404,
        1300,
    );
    // Unknown path.
    assert_error(
        &raw(&emu, "/api/v1/subaccounts/x/nothing", Some(API_KEY), None).await,
        404,
        1300,
    );
    // Upload without the `file` part.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/subaccounts/{WA}/files", emu.base_url()))
        .bearer_auth(API_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    // The log redacts the key everywhere.
    for r in emu.requests() {
        for (_, v) in &r.headers {
            assert!(!v.contains(API_KEY), "{v}");
        }
    }
}

#[tokio::test]
async fn the_rcs_emulator_refuses_read_marks_and_bsuids() {
    let (emu, _) = emulator(EightByEightChannel::Rcs).await;
    let known = emu
        .webhooks()
        .inbound_text(&WebhookUser::phone("+447700900123"), "hi")
        .umid;
    assert_error(
        &raw(
            &emu,
            &format!("/api/v1/subaccounts/{RCS}/messages/{known}/read"),
            Some(API_KEY),
            None,
        )
        .await,
        400,
        2003,
    );
    assert_error(
        &raw(
            &emu,
            &format!("/api/v1/subaccounts/{RCS}/messages"),
            Some(API_KEY),
            Some(
                json!({ "user": { "channelUserId": "US.123" }, "type": "text",
                         "content": { "text": "hi" } }),
            ),
        )
        .await,
        400,
        1000,
    );
}

#[tokio::test]
async fn the_webhook_sender_posts_with_the_given_authorization() {
    use axum::{Router, http::HeaderMap, routing::post};
    let app = Router::new().route(
        "/hook",
        post(|headers: HeaderMap, body: axum::body::Bytes| async move {
            let ok = headers
                .get("authorization")
                .is_some_and(|v| v == HOOK_SECRET)
                && wa_parser().parse_webhook(&body).is_ok();
            if ok {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::UNAUTHORIZED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sender = EightByEightWebhooks::new(WA, EightByEightChannel::Whatsapp);
    let payload = sender.inbound(
        InboundFormat::V2,
        &WebhookUser::phone("+6591234567"),
        &InboundBody::Text("hi".into()),
    );
    assert_eq!(
        sender
            .post(&url, Some(HOOK_SECRET), &payload)
            .await
            .unwrap(),
        200
    );
    assert_eq!(sender.post(&url, None, &payload).await.unwrap(), 401);
    assert_eq!(
        sender.post(&url, Some("wrong"), &payload).await.unwrap(),
        401
    );
}
