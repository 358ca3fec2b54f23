//! The Kaleyra RCS provider: every documented callback variant (flat and wrapped) parsed into
//! its normalised event, malformed callbacks refused with a reason, webhook authentication,
//! every call against the strict emulator with every error class, and the emulator's own
//! strictness on hand-built requests.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::{Duration, Instant},
};

use byocd::{
    config::{KaleyraAccount, SecretFile},
    providers::{
        DeliveryStatus, E164, EndUser, InboundContent, InboundEvent, InboundMessage, LastInbound,
        OutboundMedia, Provider, ProviderCode, ProviderErrorClass, ReadOutcome, Receipt,
        Subscription, Typing, TypingOutcome, kaleyra::Kaleyra,
    },
    sandbox::kaleyra::{
        Callback, CallbackFormat, CallbackKind, KaleyraCallbacks, KaleyraEmulator, KaleyraFailure,
        KaleyraSettings,
    },
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const END_USER: &str = "447700900123";
const AGENT: &str = "byocd_rcs";
const SID: &str = "HXIN1700000000042";
const API_KEY: &str = "A1b2C3d4E5f6-kaleyra-test-key";
const BASIC_USER: &str = "byocd";
const BASIC_PASSWORD: &str = "s3cret-basic-password";
const WEBHOOK_AUTH: &str = "Bearer callback-profile-value-0123456789";
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------------
// Helpers

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

fn account(base_url: &str, webhook_authorization: Option<&str>) -> KaleyraAccount {
    KaleyraAccount {
        sid: SID.to_owned(),
        base_url: base_url.to_owned(),
        api_key: SecretFile::from_value("test:api-key", API_KEY),
        agent_id: AGENT.to_owned(),
        basic: None,
        webhook_authorization: webhook_authorization.map_or(
            byocd::config::WebhookAuthentication::None,
            |v| {
                byocd::config::WebhookAuthentication::Authorization(SecretFile::from_value(
                    "test:webhook-authorization",
                    v,
                ))
            },
        ),
    }
}

fn parser() -> Kaleyra {
    Kaleyra::new(&account("http://127.0.0.1:9", None), http())
}

fn user() -> EndUser {
    EndUser::phone(E164::parse(END_USER).unwrap())
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kaleyra")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(format!("{name}.json"))).expect("fixture")
}

async fn emulator(settings: KaleyraSettings) -> (KaleyraEmulator, Kaleyra) {
    let emulator = KaleyraEmulator::start(settings).await.expect("emulator");
    let provider = Kaleyra::new(&emulator.account(), http());
    (emulator, provider)
}

fn settings() -> KaleyraSettings {
    KaleyraSettings::new(SID, API_KEY, AGENT)
}

// ---------------------------------------------------------------------------------------------
// Callbacks: every documented variant

fn message(key: &str, id: &str, when: &str, text: &str) -> InboundEvent {
    InboundEvent::Message(InboundMessage {
        event_key: key.to_owned(),
        provider_message_id: id.to_owned(),
        user: user(),
        received_at: at(when),
        content: InboundContent::Text {
            text: text.to_owned(),
        },
        reply_to: None,
    })
}

fn subscription(key: &str, subscribed: bool, when: &str) -> InboundEvent {
    InboundEvent::Subscription(Subscription {
        event_key: key.to_owned(),
        user: user(),
        subscribed,
        at: at(when),
    })
}

fn receipt(
    key: &str,
    id: &str,
    reference: &str,
    status: DeliveryStatus,
    error: Option<(&str, &str)>,
    when: &str,
) -> InboundEvent {
    InboundEvent::Receipt(Receipt {
        event_key: key.to_owned(),
        provider_message_id: id.to_owned(),
        client_reference: Some(reference.to_owned()),
        user: Some(user()),
        status,
        error: error.map(|(code, message)| ProviderCode {
            code: code.to_owned(),
            message: Some(message.to_owned()),
        }),
        at: at(when),
    })
}

fn typing(key: &str, when: &str) -> InboundEvent {
    InboundEvent::Typing(Typing {
        event_key: key.to_owned(),
        user: user(),
        at: at(when),
    })
}

/// Every fixture and the one event it must give.
fn expected_fixtures() -> Vec<(&'static str, InboundEvent)> {
    use DeliveryStatus::*;
    const MID: &str = "4543932d-c8f0-48c4-90bf-f9a000000005";
    const MID_TTL: &str = "0b5e1f58-f739-446a-b1f1-5c0000009d2e";
    const MID_ERR: &str = "7c9d2e11-4b2a-4f7e-9a55-000000000e01";
    const ERR: Option<(&str, &str)> = Some(("UNREACHABLE", "Recipient is not reachable over RCS"));
    vec![
        (
            "flat_user_message",
            message(
                "MxRyZhJhOhTcimpjoAV1",
                "47a6fd7c-163c-4024-ad8e-e2740000f4a1",
                "2025-06-18T13:37:40.683Z",
                "Hi, my order has not arrived",
            ),
        ),
        (
            "wrapped_user_message",
            message(
                "Mx4S-xOe57S8aB00C94",
                "9b1f2c3d-0000-4e5f-8a9b-0c1d2e3f4a5b",
                "2026-04-20T09:01:28.702Z",
                "STOP",
            ),
        ),
        (
            "flat_subscribe",
            subscription(
                "5ffc6b3b-9511-4530-82d2-415400000001:SUBSCRIBE",
                true,
                "2025-06-18T13:37:02.367Z",
            ),
        ),
        (
            "wrapped_subscribe",
            subscription(
                "6a25ff08-42e4-4f07-984a-4d0000007709:SUBSCRIBE",
                true,
                "2026-04-20T08:58:17.240Z",
            ),
        ),
        (
            "flat_unsubscribe",
            subscription(
                "b1641ff6-a2c8-4e01-a54a-2b00000009cf:UNSUBSCRIBE",
                false,
                "2025-06-18T13:37:40.631Z",
            ),
        ),
        (
            "wrapped_unsubscribe",
            subscription(
                "e467ccda-179b-472f-9c73-600000000011:UNSUBSCRIBE",
                false,
                "2026-04-20T09:01:28.667Z",
            ),
        ),
        (
            "flat_sent",
            receipt(
                "c8c3aa5d-1082-45a9-9f88-026c99000008",
                MID,
                "conv-entry-1",
                Sent,
                None,
                "2025-06-16T13:46:38.929Z",
            ),
        ),
        (
            "wrapped_sent",
            receipt(
                "d1c3aa5d-1082-45a9-9f88-026c99000009",
                MID,
                "conv-entry-1",
                Sent,
                None,
                "2025-06-16T13:46:38.929Z",
            ),
        ),
        (
            "flat_delivered",
            receipt(
                "MxfdhMDmfQQSqKCtB001",
                MID,
                "conv-entry-1",
                Delivered,
                None,
                "2025-06-16T13:46:41.295Z",
            ),
        ),
        (
            "wrapped_delivered",
            receipt(
                "MxfdhMDmfQQSqKCtB002",
                MID,
                "conv-entry-1",
                Delivered,
                None,
                "2025-06-16T13:46:41.295Z",
            ),
        ),
        (
            "flat_read",
            receipt(
                "MxZJragNjfT=qY4Y0001",
                MID,
                "conv-entry-1",
                Read,
                None,
                "2025-06-16T13:46:49.193Z",
            ),
        ),
        (
            "wrapped_read",
            receipt(
                "MxZJragNjfT=qY4Y0002",
                MID,
                "conv-entry-1",
                Read,
                None,
                "2025-06-16T13:46:49.193Z",
            ),
        ),
        (
            "flat_composing",
            typing("MxComposing000000001", "2025-06-16T13:47:02.004Z"),
        ),
        (
            "wrapped_composing",
            typing("MxComposing000000002", "2025-06-16T13:47:02.004Z"),
        ),
        (
            "flat_ttl_expiration_revoked",
            receipt(
                "+447700900123/0b5e1f58-f739-446a-b1f1-5c0000009d2e",
                MID_TTL,
                "conv-entry-2",
                Expired,
                None,
                "2025-06-17T13:46:38.000Z",
            ),
        ),
        (
            "wrapped_ttl_expiration_revoked",
            receipt(
                "+447700900123/0b5e1f58-f739-446a-b1f1-5c0000009d2f",
                MID_TTL,
                "conv-entry-2",
                Expired,
                None,
                "2025-06-17T13:46:38.000Z",
            ),
        ),
        (
            "flat_error",
            receipt(
                "MxError0000000000001",
                MID_ERR,
                "conv-entry-3",
                Failed,
                ERR,
                "2025-06-16T14:00:00.000Z",
            ),
        ),
        (
            "wrapped_error",
            receipt(
                "MxError0000000000002",
                MID_ERR,
                "conv-entry-3",
                Failed,
                ERR,
                "2025-06-16T14:00:00.000Z",
            ),
        ),
    ]
}

#[test]
fn every_fixture_parses_into_its_event() {
    let provider = parser();
    let expected = expected_fixtures();
    for (name, event) in &expected {
        let got = provider.parse_webhook(&fixture(name));
        assert_eq!(got, Ok(vec![event.clone()]), "{name}");
    }
    // Every file in the directory is covered, and every type in both formats.
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = expected.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(files, names);
    for kind in CallbackKind::samples() {
        for format in CallbackFormat::ALL {
            let name = format!("{}_{}", format.name(), kind.type_name().to_lowercase());
            assert!(names.contains(&name), "no fixture {name}");
        }
    }
}

#[test]
fn all_fixtures_in_one_array_give_all_events_in_order() {
    let expected = expected_fixtures();
    let items: Vec<Value> = expected
        .iter()
        .map(|(name, _)| serde_json::from_slice(&fixture(name)).unwrap())
        .collect();
    let body = serde_json::to_vec(&items).unwrap();
    let events = parser().parse_webhook(&body).unwrap();
    let wanted: Vec<InboundEvent> = expected.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events, wanted);
}

#[test]
fn callbacks_built_by_the_sender_parse_into_matching_events() {
    let provider = parser();
    let variants = KaleyraCallbacks::every_variant(END_USER, AGENT);
    assert_eq!(variants.len(), 18);
    for (callback, format) in variants {
        let what = format!("{} {}", format.name(), callback.kind.type_name());
        let events = provider
            .parse_webhook(&callback.to_bytes(format))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let [event] = events.as_slice() else {
            panic!("{what}: {events:?}");
        };
        let key = callback
            .event_id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", callback.message_id, callback.kind.type_name()));
        assert_eq!(event.event_key(), key, "{what}");
        match (&callback.kind, event) {
            (CallbackKind::UserMessage { text }, InboundEvent::Message(m)) => {
                assert_eq!(m.content, InboundContent::Text { text: text.clone() });
                assert_eq!(m.provider_message_id, callback.message_id);
                assert_eq!(m.received_at, callback.sent_at);
                assert_eq!(m.user, user());
            }
            (CallbackKind::Subscribe, InboundEvent::Subscription(s)) => assert!(s.subscribed),
            (CallbackKind::Unsubscribe, InboundEvent::Subscription(s)) => assert!(!s.subscribed),
            (CallbackKind::Composing, InboundEvent::Typing(t)) => assert_eq!(t.user, user()),
            (kind, InboundEvent::Receipt(r)) => {
                let status = match kind {
                    CallbackKind::Sent => DeliveryStatus::Sent,
                    CallbackKind::Delivered => DeliveryStatus::Delivered,
                    CallbackKind::Read => DeliveryStatus::Read,
                    CallbackKind::TtlExpirationRevoked => DeliveryStatus::Expired,
                    CallbackKind::Error { .. } => DeliveryStatus::Failed,
                    other => panic!("{other:?} gave a receipt"),
                };
                assert_eq!(r.status, status, "{what}");
                assert_eq!(r.provider_message_id, callback.message_id);
                assert_eq!(r.client_reference, callback.reference);
                assert_eq!(r.at, callback.sent_at);
                if let CallbackKind::Error {
                    error_code,
                    error_message,
                } = kind
                {
                    let e = r.error.as_ref().expect("error detail");
                    assert_eq!(Some(&e.code), error_code.as_ref());
                    assert_eq!(&e.message, error_message);
                }
            }
            (kind, event) => panic!("{kind:?} gave {event:?}"),
        }
    }
}

#[test]
fn the_same_callback_gives_the_same_event_in_both_formats() {
    let provider = parser();
    for kind in CallbackKind::samples() {
        let callback = Callback::new(kind, END_USER, AGENT).with_reference("r-1");
        let flat = provider.parse_webhook(&callback.to_bytes(CallbackFormat::Flat));
        let wrapped = provider.parse_webhook(&callback.to_bytes(CallbackFormat::Wrapped));
        assert!(flat.is_ok());
        assert_eq!(flat, wrapped, "{:?}", callback.kind);
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks: malformed

#[test]
fn malformed_callbacks_are_refused_with_a_reason_that_names_the_problem() {
    let provider = parser();
    let delivered: Value = serde_json::from_slice(&fixture("flat_delivered")).unwrap();
    let wrapped: Value = serde_json::from_slice(&fixture("wrapped_user_message")).unwrap();
    let without = |v: &Value, key: &str| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let with = |v: &Value, pointer: &str, value: Value| {
        let mut v = v.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        v
    };
    let subscribe: Value = serde_json::from_slice(&fixture("flat_subscribe")).unwrap();
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "not JSON".into(),
            b"type=SENT&from=1".to_vec(),
            "not valid JSON",
        ),
        ("empty body".into(), Vec::new(), "not valid JSON"),
        ("a string".into(), br#""SENT""#.to_vec(), "is a string"),
        (
            "unknown type".into(),
            serde_json::to_vec(&with(&delivered, "/type", json!("BOUNCED"))).unwrap(),
            "`type`: `BOUNCED` is not a Kaleyra RCS callback type",
        ),
        (
            "missing from".into(),
            serde_json::to_vec(&without(&delivered, "from")).unwrap(),
            "`from`: missing",
        ),
        (
            "masked from".into(),
            serde_json::to_vec(&with(&delivered, "/from", json!("9176XXXXXXXX"))).unwrap(),
            "`from`: `9176XXXXXXXX` is not an international phone number",
        ),
        (
            "missing eventId and messageId".into(),
            serde_json::to_vec(&without(&subscribe, "messageId")).unwrap(),
            "`eventId`: missing",
        ),
        (
            "missing messageId on a receipt".into(),
            serde_json::to_vec(&without(&delivered, "messageId")).unwrap(),
            "`messageId`: missing",
        ),
        (
            "numeric eventId".into(),
            serde_json::to_vec(&with(&delivered, "/eventId", json!(17))).unwrap(),
            "`eventId`: expected a string, got a number",
        ),
        (
            "object sentAt".into(),
            serde_json::to_vec(&with(&delivered, "/sentAt", json!({}))).unwrap(),
            "`sentAt`: expected an ISO 8601 string or epoch time, got an object",
        ),
        (
            "wrapped data is a string".into(),
            serde_json::to_vec(&with(&wrapped, "/data", json!("USER_MESSAGE"))).unwrap(),
            "`data`: expected the event object, got a string",
        ),
        (
            "wrapped text is a number".into(),
            serde_json::to_vec(&with(&wrapped, "/data/userMessage/text", json!(5))).unwrap(),
            "`data.userMessage.text`: expected a string, got a number",
        ),
        (
            "wrapped without type".into(),
            serde_json::to_vec(&without(&wrapped["data"], "type"))
                .map(|d| {
                    format!(
                        r#"{{"code":"4007","data":{}}}"#,
                        String::from_utf8(d).unwrap()
                    )
                })
                .unwrap()
                .into_bytes(),
            "`data.type`: missing",
        ),
    ];
    for (what, body, expected) in cases {
        let reason = provider.parse_webhook(&body).unwrap_err().reason;
        assert!(
            reason.contains(expected),
            "{what}: got `{reason}`, expected `{expected}`"
        );
    }
}

#[test]
fn every_truncated_fixture_is_refused_without_panicking() {
    let provider = parser();
    for (name, _) in expected_fixtures() {
        let body = fixture(name);
        for cut in 0..body.len() - 2 {
            let result = provider.parse_webhook(&body[..cut]);
            assert!(result.is_err(), "{name} cut at {cut} parsed");
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let provider = parser();
    for (name, _) in expected_fixtures() {
        let body = fixture(name);
        for i in 0..body.len() {
            for byte in [b'"', b'{', b'[', b'0', b'x', b'\\', b'-', 0xff] {
                let mut mutated = body.clone();
                mutated[i] = byte;
                let _ = provider.parse_webhook(&mutated);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook authentication

#[test]
fn authentication_compares_the_configured_authorization() {
    let configured = Kaleyra::new(&account("http://127.0.0.1:9", Some(WEBHOOK_AUTH)), http());
    let mut headers = http::HeaderMap::new();
    assert_eq!(
        configured.authenticate(&headers, PEER),
        Err(byocd::providers::AuthFailure::Missing("Authorization"))
    );
    headers.insert(
        http::header::AUTHORIZATION,
        "Bearer callback-profile-value-0123456788".parse().unwrap(),
    );
    assert_eq!(
        configured.authenticate(&headers, PEER),
        Err(byocd::providers::AuthFailure::Wrong("Authorization"))
    );
    headers.insert(http::header::AUTHORIZATION, "Bearer".parse().unwrap());
    assert_eq!(
        configured.authenticate(&headers, PEER),
        Err(byocd::providers::AuthFailure::Wrong("Authorization"))
    );
    headers.insert(http::header::AUTHORIZATION, WEBHOOK_AUTH.parse().unwrap());
    assert_eq!(configured.authenticate(&headers, PEER), Ok(()));

    // Only an explicit `webhook_authentication = "none"` (a proxy authenticates) lets all in.
    let open = parser();
    assert_eq!(open.authenticate(&http::HeaderMap::new(), PEER), Ok(()));
    assert_eq!(open.authenticate(&headers, PEER), Ok(()));
}

#[tokio::test]
async fn the_sender_posts_with_the_authorization_given() {
    use axum::{Router, extract::State, http::HeaderMap, routing::post};
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/webhooks/rcs",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    seen.lock()
                        .unwrap()
                        .push((auth, serde_json::from_slice(&body).unwrap()));
                    axum::http::StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/webhooks/rcs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let callback = Callback::new(CallbackKind::Composing, END_USER, AGENT);
    let sender = KaleyraCallbacks::new(&url, Some(WEBHOOK_AUTH));
    assert_eq!(
        sender
            .send(&callback, CallbackFormat::Wrapped)
            .await
            .unwrap(),
        202
    );
    let anonymous = KaleyraCallbacks::new(&url, None);
    assert_eq!(
        anonymous
            .send(&callback, CallbackFormat::Flat)
            .await
            .unwrap(),
        202
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0.as_deref(), Some(WEBHOOK_AUTH));
    assert_eq!(seen[0].1, callback.to_json(CallbackFormat::Wrapped));
    assert_eq!(seen[0].1["code"], "4000");
    assert_eq!(seen[1].0, None);
    assert_eq!(seen[1].1["type"], "COMPOSING");
}

// ---------------------------------------------------------------------------------------------
// Calls against the emulator

#[tokio::test]
async fn send_text_posts_digits_text_and_reference() {
    let (emulator, provider) = emulator(settings().with_basic(BASIC_USER, BASIC_PASSWORD)).await;
    let sent = provider
        .send_text(&user(), "Your parcel leaves today", "entry-42")
        .await
        .unwrap();
    let log = emulator.requests_to("/rcs/messages");
    assert_eq!(log.len(), 1);
    let request = &log[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/v1/{SID}/rcs/messages"));
    assert_eq!(
        request.body,
        Some(json!({
            "from": AGENT,
            "to": [END_USER],
            "text": "Your parcel leaves today",
            "ref": "entry-42",
        }))
    );
    assert_eq!(request.header("api-key"), Some("A1b2…"));
    assert_eq!(request.header("authorization"), Some("Basi…"));
    assert_eq!(request.status, 200);
    assert_eq!(request.code().as_deref(), Some("1200"));
    assert_eq!(
        sent.provider_message_id,
        request.response["data"]["messageId"].as_str().unwrap()
    );
    let messages = emulator.sent_messages();
    assert_eq!(messages[0].message_id, sent.provider_message_id);
    assert_eq!(messages[0].reference.as_deref(), Some("entry-42"));

    // A delivery report for it comes back as a receipt with the reference.
    let dr = Callback::new(CallbackKind::Delivered, END_USER, AGENT)
        .with_message_id(&sent.provider_message_id)
        .with_reference("entry-42");
    let events = provider
        .parse_webhook(&dr.to_bytes(CallbackFormat::Wrapped))
        .unwrap();
    let [InboundEvent::Receipt(r)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(r.provider_message_id, sent.provider_message_id);
    assert_eq!(r.client_reference.as_deref(), Some("entry-42"));
}

#[tokio::test]
async fn send_media_posts_the_file_url() {
    let (emulator, provider) = emulator(settings()).await;
    let image = OutboundMedia::Url {
        url: "https://files.example.com/m/7f3a/photo.png".to_owned(),
        mime_type: "image/png".to_owned(),
        file_name: Some("photo.png".to_owned()),
    };
    let sent = provider
        .send_media(&user(), &image, Some("The damaged box"), "entry-43")
        .await
        .unwrap();
    let pdf = OutboundMedia::Url {
        url: "https://files.example.com/m/7f3b/invoice.pdf".to_owned(),
        mime_type: "application/pdf".to_owned(),
        file_name: Some("invoice.pdf".to_owned()),
    };
    provider
        .send_media(&user(), &pdf, None, "entry-44")
        .await
        .unwrap();
    let log = emulator.requests_to("/rcs/messages");
    assert_eq!(
        log[0].body,
        Some(json!({
            "from": AGENT,
            "to": [END_USER],
            "file": {
                "fileUrl": "https://files.example.com/m/7f3a/photo.png",
                "thumbnailUrl": "https://files.example.com/m/7f3a/photo.png",
                "contentDescription": "The damaged box",
            },
            "ref": "entry-43",
        }))
    );
    assert_eq!(
        log[1].body.as_ref().unwrap()["file"],
        json!({
            "fileUrl": "https://files.example.com/m/7f3b/invoice.pdf",
            "contentDescription": "invoice.pdf",
        })
    );
    // A file's answer lists recipientDetails.
    assert_eq!(
        log[0].response["data"]["recipientDetails"][0]["messageId"],
        sent.provider_message_id.as_str()
    );
}

/// The rule `config check` holds `server.public_base_url` to (https, or http only to a loopback
/// host) is the rule at send time: a hosted file on a loopback `http://` base is not refused by
/// byocd. Kaleyra itself wants a public HTTPS URL, and the emulator, like it, answers 1400.
#[tokio::test]
async fn a_loopback_http_file_url_is_not_refused_by_byocd() {
    let (emulator, provider) = emulator(settings()).await;
    let media = OutboundMedia::Url {
        url: "http://127.0.0.1:8080/files/7?expires=1&signature=abc".to_owned(),
        mime_type: "application/pdf".to_owned(),
        file_name: None,
    };
    let e = provider
        .send_media(&user(), &media, None, "r")
        .await
        .unwrap_err();
    let log = emulator.requests_to("/rcs/messages");
    assert_eq!(log.len(), 1, "byocd must make the call");
    assert_eq!(
        log[0].body.as_ref().unwrap()["file"]["fileUrl"],
        "http://127.0.0.1:8080/files/7?expires=1&signature=abc"
    );
    assert_eq!(e.status, Some(400), "{e:?}");
}

#[tokio::test]
async fn media_kaleyra_cannot_fetch_is_refused_without_a_call() {
    let (emulator, provider) = emulator(settings()).await;
    let bytes = OutboundMedia::Bytes {
        bytes: bytes::Bytes::from_static(b"%PDF-1.7"),
        mime_type: "application/pdf".to_owned(),
        file_name: "a.pdf".to_owned(),
    };
    let e = provider
        .send_media(&user(), &bytes, None, "r")
        .await
        .unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Permanent);
    assert!(
        e.message
            .unwrap()
            .contains("byocd must serve the file itself")
    );

    for (url, why) in [
        (
            "http://files.example.com/a.pdf",
            "the file URL must use https:// (plain http:// is allowed only to a loopback host",
        ),
        (
            "ftp://files.example.com/a.pdf",
            "the file URL must be an https:// URL with a host, not `ftp:`",
        ),
        ("not a url", "the file URL is not a URL"),
    ] {
        let media = OutboundMedia::Url {
            url: url.to_owned(),
            mime_type: "application/pdf".to_owned(),
            file_name: None,
        };
        let e = provider
            .send_media(&user(), &media, None, "r")
            .await
            .unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Permanent, "{url}");
        assert_eq!(e.status, None);
        let message = e.message.unwrap();
        assert!(message.starts_with(why), "{url}: {message}");
        assert!(!message.contains(url), "{message}");
    }
    let nobody = EndUser {
        msisdn: None,
        channel_user_id: Some("US.123".to_owned()),
        display_name: None,
    };
    let e = provider.send_text(&nobody, "hi", "r").await.unwrap_err();
    assert!(e.message.unwrap().contains("no phone number"));
    assert!(emulator.requests().is_empty());
}

#[tokio::test]
async fn typing_posts_e164_with_plus_and_an_empty_composing() {
    let (emulator, provider) = emulator(settings()).await;
    // The last inbound message is ignored: Kaleyra has no typing window.
    let long_ago = LastInbound {
        provider_message_id: "m-old".to_owned(),
        at: Utc::now() - chrono::Duration::days(3),
    };
    let outcome = provider
        .send_typing(&user(), Some(&long_ago), Utc::now())
        .await
        .unwrap();
    assert_eq!(outcome, TypingOutcome::Sent);
    assert_eq!(
        provider
            .send_typing(&user(), None, Utc::now())
            .await
            .unwrap(),
        TypingOutcome::Sent
    );
    let log = emulator.requests_to("/rcs/events");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].path, format!("/v1/{SID}/rcs/events"));
    assert_eq!(
        log[0].body,
        Some(json!({ "from": AGENT, "to": "+447700900123", "composing": {} }))
    );
    assert_eq!(log[0].code().as_deref(), Some("RCS1002"));
}

#[tokio::test]
async fn typing_without_a_number_is_dropped_and_read_marks_are_not_supported() {
    let (emulator, provider) = emulator(settings()).await;
    let nobody = EndUser {
        msisdn: None,
        channel_user_id: Some("GB.998877".to_owned()),
        display_name: None,
    };
    let outcome = provider
        .send_typing(&nobody, None, Utc::now())
        .await
        .unwrap();
    let TypingOutcome::Dropped { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("no phone number"));
    assert_eq!(
        provider.mark_read("4543932d-c8f0").await.unwrap(),
        ReadOutcome::NotSupported
    );
    assert!(emulator.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Error classes

fn assert_secrets_absent(e: &byocd::providers::ProviderError) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains(API_KEY), "{text}");
    assert!(!text.contains(BASIC_PASSWORD), "{text}");
}

#[tokio::test]
async fn request_errors_are_permanent_and_name_the_field() {
    let (emulator, provider) = emulator(settings()).await;

    // Real validation: text too long names `text`.
    let e = provider
        .send_text(&user(), &"x".repeat(3073), "r")
        .await
        .unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Permanent);
    assert_eq!(e.status, Some(400));
    assert_eq!(e.code.as_deref(), Some("1400"));
    assert!(
        e.message.as_deref().unwrap().starts_with("`text` refused"),
        "{e}"
    );

    // Real validation: a wrong agent id is 1419, naming `from`.
    let mut wrong_agent = emulator.account();
    wrong_agent.agent_id = "someone_else".to_owned();
    let e = Kaleyra::new(&wrong_agent, http())
        .send_text(&user(), "hi", "r")
        .await
        .unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Permanent);
    assert_eq!(e.code.as_deref(), Some("1419"));
    assert!(
        e.message
            .as_deref()
            .unwrap()
            .starts_with("`from` refused (INVALID_SERVICE_CODE)"),
        "{e}"
    );

    // Injected: every documented 14xx.
    for (code, field) in [
        (1400, None),
        (1417, Some("`to`")),
        (1419, Some("`from`")),
        (1420, Some("`ttl`")),
        (1423, Some("`to`")),
    ] {
        emulator.inject(
            "messages",
            KaleyraFailure::Code {
                http_status: 400,
                code,
            },
            1,
        );
        let e = provider.send_text(&user(), "hi", "r").await.unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Permanent, "{code}");
        assert_eq!(e.code.as_deref(), Some(code.to_string().as_str()));
        if let Some(field) = field {
            assert!(e.message.as_deref().unwrap().starts_with(field), "{e}");
        }
        assert_secrets_absent(&e);
    }
}

#[tokio::test]
async fn throttling_and_outages_are_retryable_with_retry_after() {
    let (emulator, provider) = emulator(settings()).await;
    for (status, seconds) in [
        (429, Some(7)),
        (503, Some(30)),
        (504, None),
        (500, None),
        (502, None),
    ] {
        let failure = match seconds {
            Some(seconds) => KaleyraFailure::RetryAfter {
                http_status: status,
                seconds,
            },
            None => KaleyraFailure::Code {
                http_status: status,
                code: status,
            },
        };
        emulator.inject("messages", failure.clone(), 1);
        let e = provider.send_text(&user(), "hi", "r").await.unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Retryable, "{status}");
        assert_eq!(e.status, Some(status));
        assert_eq!(e.retry_after, seconds.map(Duration::from_secs), "{status}");

        emulator.inject("events", failure, 1);
        let e = provider
            .send_typing(&user(), None, Utc::now())
            .await
            .unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Retryable, "typing {status}");
        assert_eq!(e.retry_after, seconds.map(Duration::from_secs));
    }
    // The next call goes through again.
    provider.send_text(&user(), "hi", "r").await.unwrap();
}

#[tokio::test]
async fn a_refused_typing_event_is_permanent_and_says_why() {
    let (emulator, provider) = emulator(settings()).await;
    emulator.inject(
        "events",
        KaleyraFailure::ProviderError {
            http_status: 400,
            error_text: "Access Denied".to_owned(),
        },
        1,
    );
    let e = provider
        .send_typing(&user(), None, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Permanent);
    assert_eq!(e.code.as_deref(), Some("RCS1004"));
    assert_eq!(
        e.message.as_deref(),
        Some("the RCS platform refused the event (PROV_ERROR): Access Denied")
    );
    let log = emulator.requests_to("/rcs/events");
    assert_eq!(log[0].response["error"]["error_code"], "PROV_ERROR");
}

#[tokio::test]
async fn refused_credentials_are_an_authorisation_error_that_hides_them() {
    let (emulator, _) = emulator(settings().with_basic(BASIC_USER, BASIC_PASSWORD)).await;

    let mut wrong_key = emulator.account();
    wrong_key.api_key = SecretFile::from_value("test:wrong", "wrong-key-0000");
    let mut no_basic = emulator.account();
    no_basic.basic = None;
    let mut wrong_password = emulator.account();
    if let Some(b) = wrong_password.basic.as_mut() {
        b.password = SecretFile::from_value("test:wrong", "not-the-password");
    }
    let mut wrong_sid = emulator.account();
    wrong_sid.sid = "HXIN1700000000099".to_owned();

    for (what, account, status) in [
        ("wrong key", wrong_key, 401),
        ("no basic", no_basic, 401),
        ("wrong password", wrong_password, 401),
        ("wrong sid", wrong_sid, 403),
    ] {
        let provider = Kaleyra::new(&account, http());
        let e = provider.send_text(&user(), "hi", "r").await.unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Authorisation, "{what}");
        assert_eq!(e.status, Some(status), "{what}");
        assert_secrets_absent(&e);
        let e = provider
            .send_typing(&user(), None, Utc::now())
            .await
            .unwrap_err();
        assert_eq!(e.class, ProviderErrorClass::Authorisation, "typing {what}");
    }
    // The log never shows the secrets either.
    for request in emulator.requests() {
        let text = format!("{request:?}");
        assert!(!text.contains(API_KEY) && !text.contains(BASIC_PASSWORD));
    }
}

#[tokio::test]
async fn a_cut_connection_or_no_server_is_retryable() {
    let (emulator, provider) = emulator(settings()).await;
    emulator.inject("messages", KaleyraFailure::Disconnect, 1);
    let e = provider.send_text(&user(), "hi", "r").await.unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Retryable);
    assert_eq!(e.status, None);
    assert_eq!(emulator.requests()[0].status, 0);

    emulator.inject("events", KaleyraFailure::Disconnect, 1);
    let e = provider
        .send_typing(&user(), None, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Retryable);

    let base_url = emulator.base_url();
    emulator.shutdown().await;
    let gone = Kaleyra::new(&account(&base_url, None), http());
    let e = gone.send_text(&user(), "hi", "r").await.unwrap_err();
    assert_eq!(e.class, ProviderErrorClass::Retryable);
    assert!(e.message.unwrap().starts_with("could not connect"));
}

#[tokio::test]
async fn delays_slow_the_next_calls_only() {
    let (emulator, provider) = emulator(settings()).await;
    emulator.delay("events", Duration::from_millis(300), 1);
    let started = Instant::now();
    provider
        .send_typing(&user(), None, Utc::now())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    provider
        .send_typing(&user(), None, Utc::now())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}

// ---------------------------------------------------------------------------------------------
// The emulator's strictness, with hand-built requests

struct Raw {
    emulator: KaleyraEmulator,
    http: reqwest::Client,
}

impl Raw {
    async fn new() -> Self {
        Self {
            emulator: KaleyraEmulator::start(settings()).await.unwrap(),
            http: http(),
        }
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.emulator.base_url()))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("api-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn messages(&self, body: Value) -> (u16, Value) {
        self.post(
            &self.emulator.path("messages"),
            Some(API_KEY),
            &body.to_string(),
        )
        .await
    }

    async fn events(&self, body: Value) -> (u16, Value) {
        self.post(
            &self.emulator.path("events"),
            Some(API_KEY),
            &body.to_string(),
        )
        .await
    }
}

fn code(body: &Value) -> String {
    match &body["code"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn error_message(body: &Value) -> String {
    body.pointer("/data/error/error_message")
        .or_else(|| body.pointer("/error/error_message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_emulator_checks_credentials_and_the_sid() {
    let raw = Raw::new().await;
    let good = json!({"from": AGENT, "to": "+447700900123", "composing": {}}).to_string();
    let events = raw.emulator.path("events");

    let (status, body) = raw.post(&events, None, &good).await;
    assert_eq!((status, code(&body)), (401, "401".to_owned()));
    assert!(error_message(&body).contains("api-key header is missing"));
    let (status, _) = raw.post(&events, Some("nope"), &good).await;
    assert_eq!(status, 401);
    let (status, body) = raw
        .post("/v1/HXIN0000000000000/rcs/events", Some(API_KEY), &good)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = raw
        .post(&format!("/v1/{SID}/rcs/lookup"), Some(API_KEY), &good)
        .await;
    assert_eq!(status, 404);
    let (status, body) = raw.post(&events, Some(API_KEY), &good).await;
    assert_eq!((status, code(&body)), (200, "RCS1002".to_owned()));
    assert_eq!(body["data"]["to"], "+447700900123");

    // Only POST.
    let response = raw
        .http
        .get(format!("{}{events}", raw.emulator.base_url()))
        .header("api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "1405");

    // Basic credentials, when configured.
    let basic = KaleyraEmulator::start(settings().with_basic(BASIC_USER, BASIC_PASSWORD))
        .await
        .unwrap();
    let url = format!("{}{}", basic.base_url(), basic.path("events"));
    let send = |auth: Option<(&'static str, &'static str)>| {
        let mut request = raw
            .http
            .post(&url)
            .header("api-key", API_KEY)
            .header("content-type", "application/json")
            .body(good.clone());
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        send(Some((BASIC_USER, "wrong")))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        send(Some((BASIC_USER, BASIC_PASSWORD)))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn the_emulator_checks_typing_events() {
    let raw = Raw::new().await;
    let cases = [
        (
            json!({"from": AGENT, "to": "447700900123", "composing": {}}),
            "1417",
            "E.164 format with `+`",
        ),
        (
            json!({"from": AGENT, "to": ["+447700900123"], "composing": {}}),
            "1400",
            "$.to: must be a string",
        ),
        (
            json!({"from": AGENT, "to": "+447700900123", "composing": {"state": "active"}}),
            "1400",
            "$.composing: must be an empty object",
        ),
        (
            json!({"from": AGENT, "to": "+447700900123", "composing": true}),
            "1400",
            "$.composing: must be an empty object",
        ),
        (
            json!({"from": AGENT, "to": "+447700900123"}),
            "1400",
            "$.composing: required",
        ),
        (
            json!({"from": "other_agent", "to": "+447700900123", "composing": {}}),
            "1419",
            "Invalid service code",
        ),
        (
            json!({"to": "+447700900123", "composing": {}}),
            "1400",
            "$.from: required",
        ),
        (
            json!({"from": AGENT, "to": "+447700900123", "composing": {}, "typing": true}),
            "1400",
            "$.typing: unknown field",
        ),
    ];
    for (body, expected_code, expected_message) in cases {
        let (status, answer) = raw.events(body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&answer), expected_code, "{body}");
        assert!(
            error_message(&answer).contains(expected_message),
            "{body}: {answer}"
        );
    }
}

#[tokio::test]
async fn the_emulator_checks_messages() {
    let raw = Raw::new().await;
    let cases = [
        (
            json!({"from": AGENT, "to": ["+447700900123"], "text": "hi"}),
            "1417",
            "without `+`",
        ),
        (
            json!({"from": AGENT, "to": [], "text": "hi"}),
            "1400",
            "$.to: must be a non-empty array",
        ),
        (
            json!({"from": AGENT, "to": "447700900123", "text": "hi"}),
            "1400",
            "$.to",
        ),
        (
            json!({"from": "x", "to": [END_USER], "text": "hi"}),
            "1419",
            "Invalid service code",
        ),
        (
            json!({"from": AGENT, "to": [END_USER]}),
            "1400",
            "one of text, file",
        ),
        (
            json!({"from": AGENT, "to": [END_USER], "text": "hi", "file": {"fileUrl": "https://a.example/x.pdf"}}),
            "1400",
            "only one content element",
        ),
        (
            json!({"from": AGENT, "to": [END_USER], "file": {"fileUrl": "http://a.example/x.pdf"}}),
            "1400",
            "$.file.fileUrl: must be a valid public HTTPS URL",
        ),
        (
            json!({"from": AGENT, "to": [END_USER], "file": {"url": "https://a.example/x.pdf"}}),
            "1400",
            "$.file.url: unknown field",
        ),
        (
            json!({"from": AGENT, "to": [END_USER], "text": ""}),
            "1400",
            "$.text: must not be empty",
        ),
        (
            json!({"from": AGENT, "to": [END_USER], "text": "hi", "ttl": 0}),
            "1420",
            "Invalid TTL",
        ),
        (
            json!({"from": AGENT, "to": [END_USER], "text": "hi", "ref": 42}),
            "1400",
            "$.ref: must be a string",
        ),
    ];
    for (body, expected_code, expected_message) in cases {
        let (status, answer) = raw.messages(body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&answer), expected_code, "{body}");
        assert!(
            error_message(&answer).contains(expected_message),
            "{body}: {answer}"
        );
    }

    // Not JSON, or not declared as JSON.
    let path = raw.emulator.path("messages");
    let (status, answer) = raw.post(&path, Some(API_KEY), "{\"from\":").await;
    assert_eq!((status, code(&answer)), (400, "1400".to_owned()));
    assert_eq!(
        answer["data"]["error"]["error_code"],
        "INVALID_FIELD_FORMAT"
    );
    let response = raw
        .http
        .post(format!("{}{path}", raw.emulator.base_url()))
        .header("api-key", API_KEY)
        .header("content-type", "text/plain")
        .body(json!({"from": AGENT, "to": [END_USER], "text": "hi"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Several numbers: one message each, listed in recipientDetails.
    let (status, answer) = raw
        .messages(
            json!({"from": AGENT, "to": [END_USER, "14155550100"], "text": "hi", "ttl": 3600}),
        )
        .await;
    assert_eq!((status, code(&answer)), (200, "1200".to_owned()));
    assert_eq!(
        answer["data"]["recipientDetails"].as_array().unwrap().len(),
        2
    );
    assert_eq!(raw.emulator.sent_messages().len(), 2);

    // The log keeps bodies that are not JSON as text, and can be cleared.
    let log = raw.emulator.requests();
    assert!(
        log.iter()
            .any(|r| r.raw_body.as_deref() == Some("{\"from\":"))
    );
    raw.emulator.clear_log();
    assert!(raw.emulator.requests().is_empty());
}
