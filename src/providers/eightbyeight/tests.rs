//! Parsing edge cases and error classification.

use serde_json::{Value, json};

use super::*;
use crate::providers::{DeliveryStatus, InboundContent, MediaKind};

const SA: &str = "acme-wa";

fn parse(v: &Value) -> Result<Vec<InboundEvent>, ParseError> {
    webhook::parse(v.to_string().as_bytes(), SA)
}

fn inbound(version: Option<u64>, user: Value, kind: &str, content: Value) -> Value {
    let mut v = json!({
        "namespace": "ChatApps",
        "eventType": "inbound_message_received",
        "description": "ChatApps inbound message",
        "payload": {
            "umid": "0b7c8f3e-1d2a-4c55-9e61-3f0a2b4c5d6e",
            "subAccountId": SA,
            "timestamp": "2026-06-09T10:13:20.00Z",
            "user": user,
            "recipient": { "channel": "whatsapp", "channelId": "chan-1" },
            "type": kind,
            "content": content,
        }
    });
    if let Some(version) = version {
        v["version"] = json!(version);
    }
    v
}

fn status(state: &str, detail: Option<&str>) -> Value {
    let mut v = json!({
        "version": 9,
        "namespace": "ChatApps",
        "eventType": "outbound_message_status_changed",
        "payload": {
            "umid": "5d1e7a90-0000-4000-8000-000000000001",
            "subAccountId": SA,
            "channel": "whatsapp",
            "user": { "msisdn": "+447700900123" },
            "status": { "state": state, "timestamp": "2026-07-03T03:23:21.90Z" }
        }
    });
    if let Some(detail) = detail {
        v["payload"]["status"]["detail"] = json!(detail);
    }
    v
}

fn reason(v: &Value) -> String {
    parse(v).unwrap_err().reason
}

fn message(events: Vec<InboundEvent>) -> InboundMessage {
    match events.as_slice() {
        [InboundEvent::Message(m)] => m.clone(),
        other => panic!("expected one message, got {other:?}"),
    }
}

fn receipt(events: Vec<InboundEvent>) -> Receipt {
    match events.as_slice() {
        [InboundEvent::Receipt(r)] => r.clone(),
        other => panic!("expected one receipt, got {other:?}"),
    }
}

use crate::providers::{InboundMessage, Receipt};

#[test]
fn v2_phone_digits_in_channel_user_id_are_not_a_bsuid() {
    let v = inbound(
        None,
        json!({ "msisdn": "+447700900123", "channelUserId": "447700900123", "name": "Sam" }),
        "Text",
        json!({ "text": "hi" }),
    );
    let m = message(parse(&v).unwrap());
    assert_eq!(m.user.msisdn.unwrap().as_str(), "+447700900123");
    assert_eq!(m.user.channel_user_id, None);
    assert_eq!(m.user.display_name.as_deref(), Some("Sam"));
}

#[test]
fn v2_digits_alone_give_the_number() {
    let v = inbound(
        Some(2),
        json!({ "channelUserId": "447700900123" }),
        "Text",
        json!({ "text": "hi" }),
    );
    let m = message(parse(&v).unwrap());
    assert_eq!(m.user.msisdn.unwrap().as_str(), "+447700900123");
}

#[test]
fn v2_digits_that_contradict_the_number_are_refused() {
    let v = inbound(
        None,
        json!({ "msisdn": "+447700900123", "channelUserId": "447700900999" }),
        "Text",
        json!({ "text": "hi" }),
    );
    assert!(reason(&v).contains("payload.user.channelUserId"));
}

#[test]
fn v3_bsuid_only_user() {
    let v = inbound(
        Some(3),
        json!({ "channelUserId": "US.13491208655302741918", "username": "sam.w" }),
        "Text",
        json!({ "text": "hi" }),
    );
    let m = message(parse(&v).unwrap());
    assert_eq!(m.user.msisdn, None);
    assert_eq!(
        m.user.channel_user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(m.user.display_name.as_deref(), Some("sam.w"));
    assert_eq!(
        m.user.salesforce_key().as_deref(),
        Some("US.13491208655302741918")
    );
}

#[test]
fn a_user_without_identity_is_refused() {
    let v = inbound(
        Some(3),
        json!({ "name": "Sam" }),
        "Text",
        json!({ "text": "hi" }),
    );
    assert_eq!(
        reason(&v),
        "payload.user: has neither msisdn nor channelUserId"
    );
    let v = inbound(
        Some(3),
        json!({ "msisdn": "", "channelUserId": "  " }),
        "Text",
        json!({ "text": "hi" }),
    );
    assert!(reason(&v).contains("neither msisdn nor channelUserId"));
}

#[test]
fn a_bad_number_names_the_field() {
    let v = inbound(
        Some(3),
        json!({ "msisdn": "07700900123" }),
        "Text",
        json!({ "text": "hi" }),
    );
    assert!(reason(&v).starts_with("payload.user.msisdn: "));
}

#[test]
fn types_are_read_case_insensitively_and_media_keeps_its_caption() {
    let v = inbound(
        Some(3),
        json!({ "msisdn": "+447700900123" }),
        "IMAGE",
        json!({ "url": "https://media.example/x.jpg", "text": "look" }),
    );
    let m = message(parse(&v).unwrap());
    assert_eq!(
        m.content,
        InboundContent::Media {
            media: MediaKind::Image,
            url: "https://media.example/x.jpg".into(),
            mime_type: None,
            file_name: None,
            caption: Some("look".into()),
        }
    );
}

#[test]
fn media_without_url_is_refused() {
    let v = inbound(
        Some(3),
        json!({ "msisdn": "+447700900123" }),
        "Video",
        json!({ "text": "no url" }),
    );
    assert_eq!(reason(&v), "payload.content.url: missing");
}

#[test]
fn locations_must_be_coordinates() {
    let user = json!({ "msisdn": "+447700900123" });
    let ok = inbound(
        Some(3),
        user.clone(),
        "Location",
        json!({ "location": { "latitude": "1.29", "longitude": 103.85 } }),
    );
    assert!(matches!(
        message(parse(&ok).unwrap()).content,
        InboundContent::Location { latitude, .. } if (latitude - 1.29).abs() < 1e-9
    ));
    let bad = inbound(
        Some(3),
        user.clone(),
        "Location",
        json!({ "location": { "latitude": 91, "longitude": 0 } }),
    );
    assert!(reason(&bad).starts_with("payload.content.location.latitude"));
    let bad = inbound(
        Some(3),
        user,
        "Location",
        json!({ "location": { "latitude": 1 } }),
    );
    assert_eq!(reason(&bad), "payload.content.location.longitude: missing");
}

#[test]
fn flow_and_call_permission_replies_are_recorded_not_relayed() {
    let v = inbound(
        Some(3),
        json!({ "msisdn": "+447700900123" }),
        "Interactive",
        json!({ "interactive": { "type": "nfmReply", "nfmReply": { "responseJson": "{}" } } }),
    );
    match parse(&v).unwrap().as_slice() {
        [InboundEvent::Recorded(r)] => {
            assert_eq!(r.kind, "inbound_message_received:nfmReply");
            assert_eq!(r.event_key, "0b7c8f3e-1d2a-4c55-9e61-3f0a2b4c5d6e");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_interactive_and_message_types_are_refused() {
    let user = json!({ "msisdn": "+447700900123" });
    let v = inbound(
        Some(3),
        user.clone(),
        "Interactive",
        json!({ "interactive": { "type": "product_reply" } }),
    );
    assert!(reason(&v).starts_with("payload.content.interactive.type: unknown"));
    let v = inbound(Some(3), user, "Carousel", json!({}));
    assert_eq!(
        reason(&v),
        "payload.type: `Carousel` messages are not supported"
    );
}

#[test]
fn rcs_suggestion_replies_become_interactive_replies() {
    let v = inbound(
        Some(3),
        json!({ "msisdn": "+447700900123" }),
        "Buttons",
        json!({ "text": "Yes please", "payload": "opt-yes" }),
    );
    assert_eq!(
        message(parse(&v).unwrap()).content,
        InboundContent::InteractiveReply {
            id: Some("opt-yes".into()),
            title: "Yes please".into()
        }
    );
}

#[test]
fn unknown_versions_and_namespaces_are_refused() {
    let v = inbound(
        Some(4),
        json!({ "msisdn": "+447700900123" }),
        "Text",
        json!({ "text": "x" }),
    );
    assert!(reason(&v).starts_with("version: inbound_message_received format 4"));
    let mut v = status("sent", None);
    v["version"] = json!(3);
    assert!(reason(&v).starts_with("version:"));
    let mut v = status("sent", None);
    v["namespace"] = json!("Voice");
    assert!(reason(&v).starts_with("namespace:"));
}

#[test]
fn another_sub_account_is_refused() {
    let mut v = status("sent", None);
    v["payload"]["subAccountId"] = json!("someone-else");
    assert!(reason(&v).starts_with("payload.subAccountId:"));
}

#[test]
fn receipt_keys_carry_state_and_detail() {
    let op = receipt(parse(&status("delivered", Some("delivered_to_operator"))).unwrap());
    let rc = receipt(parse(&status("delivered", Some("delivered_to_recipient"))).unwrap());
    let rd = receipt(parse(&status("read", None)).unwrap());
    assert_eq!(op.status, DeliveryStatus::Sent);
    assert_eq!(rc.status, DeliveryStatus::Delivered);
    assert_eq!(rd.status, DeliveryStatus::Read);
    assert_eq!(
        op.event_key,
        "5d1e7a90-0000-4000-8000-000000000001:delivered:delivered_to_operator"
    );
    assert_ne!(op.event_key, rc.event_key);
    assert_eq!(rd.event_key, "5d1e7a90-0000-4000-8000-000000000001:read");
}

#[test]
fn error_codes_may_be_numbers_or_strings() {
    let mut v = status("undelivered", Some("rejected_by_operator"));
    v["payload"]["status"]["errorCode"] = json!(15);
    v["payload"]["status"]["errorMessage"] = json!("Invalid destination");
    v["payload"]["whatsapp"] = json!({ "providerErrorCode": "131009" });
    let r = receipt(parse(&v).unwrap());
    assert_eq!(r.status, DeliveryStatus::Undelivered);
    let e = r.error.unwrap();
    assert_eq!(e.code, "15");
    assert_eq!(
        e.message.as_deref(),
        Some("Invalid destination (WhatsApp error 131009)")
    );
    v["payload"]["status"]["errorCode"] = json!("1022");
    assert_eq!(receipt(parse(&v).unwrap()).error.unwrap().code, "1022");
    v["payload"]["status"]["errorCode"] = json!([1]);
    assert!(reason(&v).starts_with("payload.status.errorCode: expected a code"));
}

#[test]
fn unknown_states_are_refused() {
    assert_eq!(
        reason(&status("teleported", None)),
        "payload.status.state: unknown state `teleported`"
    );
}

#[test]
fn timestamps_without_offset_are_utc_and_garbage_is_refused() {
    let mut v = status("sent", None);
    v["payload"]["status"]["timestamp"] = json!("2026-07-03T03:23:21.9");
    assert_eq!(
        receipt(parse(&v).unwrap()).at.to_rfc3339(),
        "2026-07-03T03:23:21.900+00:00"
    );
    v["payload"]["status"]["timestamp"] = json!("yesterday");
    assert!(reason(&v).starts_with("payload.status.timestamp:"));
}

#[test]
fn receipts_without_user_identity_have_no_user() {
    let mut v = status("queued", None);
    v["payload"]["user"] = json!({});
    assert_eq!(receipt(parse(&v).unwrap()).user, None);
}

#[test]
fn garbage_never_panics() {
    let samples: [&[u8]; 12] = [
        b"",
        b"null",
        b"[]",
        b"{",
        b"\xff\xfe",
        b"{\"namespace\":\"ChatApps\"}",
        b"{\"namespace\":\"ChatApps\",\"eventType\":7}",
        b"{\"namespace\":\"ChatApps\",\"eventType\":\"inbound_message_received\",\"payload\":[]}",
        b"{\"namespace\":\"ChatApps\",\"eventType\":\"inbound_message_received\",\"version\":-1,\"payload\":{}}",
        b"{\"namespace\":\"ChatApps\",\"eventType\":\"inbound_message_received\",\"version\":1e300,\"payload\":{}}",
        b"{\"namespace\":\"ChatApps\",\"eventType\":\"outbound_message_status_changed\",\"payload\":{\"umid\":\"\xc3\xa9\"}}",
        b"{\"namespace\":\"ChatApps\",\"eventType\":\"external_app_message\",\"payload\":{\"umid\":\"x\"}}",
    ];
    for s in samples {
        assert!(webhook::parse(s, SA).is_err(), "{s:?}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(webhook::parse(deep.as_bytes(), SA).is_err());
    let long_umid = inbound(
        Some(3),
        json!({ "msisdn": "+447700900123" }),
        "Text",
        json!({ "text": "x" }),
    );
    let mut long_umid = long_umid;
    long_umid["payload"]["umid"] = json!("é".repeat(500));
    assert!(reason(&long_umid).starts_with("payload.umid:"));
}

#[test]
fn errors_are_classified() {
    let body =
        |code: i64| json!({ "code": code, "message": "m", "errorId": "e", "timestamp": "t" });
    let c = |status, body: &Value| classify("send text", status, body, None).class;
    assert_eq!(c(500, &body(2000)), ProviderErrorClass::Retryable);
    assert_eq!(c(400, &body(2000)), ProviderErrorClass::Retryable);
    assert_eq!(c(503, &Value::Null), ProviderErrorClass::Retryable);
    assert_eq!(c(429, &Value::Null), ProviderErrorClass::Retryable);
    assert_eq!(c(401, &body(1200)), ProviderErrorClass::Authorisation);
    assert_eq!(c(400, &body(1201)), ProviderErrorClass::Authorisation);
    assert_eq!(c(400, &body(1002)), ProviderErrorClass::Permanent);
    assert_eq!(c(400, &body(3009)), ProviderErrorClass::Permanent);
    assert_eq!(c(413, &body(7001)), ProviderErrorClass::Permanent);
    let e = classify("send text", 404, &Value::Null, None);
    assert_eq!(
        e.message.as_deref(),
        Some("HTTP 404 without an 8x8 error body (Not Found)")
    );
    let e = classify("send text", 400, &body(1002), None);
    assert_eq!(e.code.as_deref(), Some("1002"));
    assert_eq!(e.message.as_deref(), Some("m [errorId e]"));
}

#[test]
fn media_types_follow_the_mime_type() {
    assert_eq!(media_type_for("image/png"), "image");
    assert_eq!(media_type_for("Audio/OGG; codecs=opus"), "audio");
    assert_eq!(media_type_for("video/mp4"), "video");
    assert_eq!(media_type_for("application/pdf"), "file");
    assert_eq!(media_type_for(""), "file");
}

#[test]
fn rcs_suggestions_are_text_with_reply_suggestions() {
    let message = RichMessage::Suggestions {
        text: "Was this helpful?".into(),
        replies: vec![
            crate::providers::RichChoice {
                id: "yes".into(),
                title: "Yes".into(),
            },
            crate::providers::RichChoice {
                id: "no".into(),
                title: "No".into(),
            },
        ],
    };
    let (kind, content) = rich_content(&message);
    assert_eq!(kind, "text");
    assert_eq!(
        content,
        json!({
            "text": "Was this helpful?",
            "suggestions": [
                { "reply": { "text": "Yes", "postbackData": "yes" } },
                { "reply": { "text": "No", "postbackData": "no" } },
            ],
        })
    );
}
