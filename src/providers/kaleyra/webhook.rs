//! Kaleyra RCS callbacks → normalised events.
//!
//! # What is accepted
//!
//! Kaleyra posts one JSON object per callback, in one of two shapes:
//!
//! - **flat**: the event's fields at the top level — `{type, eventId, from, to, sentAt,
//!   messageId, ref, ref1, ref2, …}`;
//! - **wrapped**: `{code, message, data: {type, eventId, from, to, sentAt, messageId,
//!   carrierId, …}, error: {…}}`, where `code` is `4000` for delivery reports, `4006` for an
//!   unsubscription and `4007` for a mobile-originated message.
//!
//! A body is wrapped when it has a `data` member and no `type`; `code` and `message` of the
//! wrapper are checked for type but not interpreted (the event's `type` decides). A JSON
//! array of such objects is also accepted and gives its events in order; Kaleyra documents no
//! batching, but accepting it costs nothing and an array is never mistaken for one event.
//! Members this parser does not read (`to`, `ref1`, `ref2`, `carrierId`, …) are ignored, so
//! new ones do not send callbacks to quarantine; the members it reads must have the right type.
//!
//! On callbacks `from` is the **end user** (digits without `+`, normalised to E.164) and `to`
//! the agent's service code.
//!
//! | `type` | event |
//! |---|---|
//! | `USER_MESSAGE` (`userMessage.type` `TEXT`) | [`InboundEvent::Message`] with [`InboundContent::Text`] |
//! | `SUBSCRIBE` / `UNSUBSCRIBE` | [`InboundEvent::Subscription`] (`subscribed` true / false) |
//! | `SENT` / `DELIVERED` / `READ` | [`InboundEvent::Receipt`] Sent / Delivered / Read |
//! | `TTL_EXPIRATION_REVOKED` | [`InboundEvent::Receipt`] Expired |
//! | `ERROR` | [`InboundEvent::Receipt`] Failed, with the error's code and message if given |
//! | `COMPOSING` | [`InboundEvent::Typing`] |
//!
//! `type` is compared without regard to ASCII case. Other `userMessage` types (files,
//! locations, suggestion replies) are undocumented and refused, so their bodies are kept in
//! quarantine for a later version to learn from.
//!
//! # Decisions
//!
//! - **Dedupe key**: `eventId`; when it is absent (the documented `SUBSCRIBE` and
//!   `UNSUBSCRIBE` samples have none) `"<messageId>:<TYPE>"`. A body with neither is refused.
//!   Two `COMPOSING` events without `eventId` for the same `messageId` would collapse into one;
//!   the documented `COMPOSING` callbacks carry an `eventId`.
//! - **`messageId`** is required on `USER_MESSAGE` and on every delivery report (it is what
//!   receipts are matched on); `ref` becomes the receipt's client reference.
//! - **`sentAt`** is required. Kaleyra documents ISO 8601 (`2025-06-16T13:46:38.929Z`); also
//!   accepted are an ISO 8601 date-time without offset (read as UTC) and epoch time as an
//!   integer or a string of digits — milliseconds from 10^11 up, seconds below.
//! - **Error detail** of `ERROR` / `TTL_EXPIRATION_REVOKED` is read, first found, from
//!   `data.error`, the wrapper's `error`, or `errorCode` / `errorMessage` beside the event's
//!   fields; within an error object from `error_code` / `errorCode` / `code` and
//!   `error_message` / `errorMessage` / `message` / `reason`. Kaleyra has not published its
//!   callback error codes yet; an `ERROR` without detail is a failure without a code.
//! - Identifiers longer than [`MAX_ID_CHARS`] characters and bodies of more than
//!   [`MAX_EVENTS_PER_BODY`] events are refused.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::providers::{
    DeliveryStatus, E164, EndUser, InboundContent, InboundEvent, InboundMessage, ParseError,
    ProviderCode, Receipt, Subscription, Typing,
};

/// Longest `eventId`, `messageId` or `ref` accepted, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// Most events accepted in one body (an array).
pub const MAX_EVENTS_PER_BODY: usize = 100;

/// Epoch values from this one up are milliseconds; below, seconds (10^11 s is in the year
/// 5138; 10^11 ms is in 1973).
const EPOCH_MILLIS_FROM: i64 = 100_000_000_000;

/// How many characters of a refused value a reason quotes.
const QUOTE_CHARS: usize = 40;

/// Every callback `type` this parser knows.
pub const CALLBACK_TYPES: [&str; 9] = [
    "USER_MESSAGE",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "SENT",
    "DELIVERED",
    "READ",
    "COMPOSING",
    "TTL_EXPIRATION_REVOKED",
    "ERROR",
];

/// Parses a callback body (one event, flat or wrapped, or an array of them).
pub fn parse_callbacks(body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new(format!("body is not valid JSON: {e}")))?;
    match value {
        Value::Object(object) => Ok(vec![parse_event(&object, "")?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ParseError::new("body is an empty array: no event in it"));
            }
            if items.len() > MAX_EVENTS_PER_BODY {
                return Err(ParseError::new(format!(
                    "body holds {} events, more than the {MAX_EVENTS_PER_BODY} accepted",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(object) => parse_event(object, &format!("[{i}].")),
                    other => Err(ParseError::new(format!(
                        "[{i}]: expected an event object, got {}",
                        json_kind(other)
                    ))),
                })
                .collect()
        }
        other => Err(ParseError::new(format!(
            "body is {}, expected a callback object",
            json_kind(&other)
        ))),
    }
}

/// Fields of one event and where they sit, for reasons that name them.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// Path prefix of the event's fields: `""`, `"data."`, `"[2].data."`.
    prefix: String,
}

impl<'a> Fields<'a> {
    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A string member that may be absent or null; an empty string counts as absent.
    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ParseError::new(format!(
                "`{}`: expected a string, got {}",
                self.path(key),
                json_kind(other)
            ))),
        }
    }

    fn req_str(&self, key: &str) -> Result<&'a str, ParseError> {
        self.opt_str(key)?
            .ok_or_else(|| ParseError::new(format!("`{}`: missing", self.path(key))))
    }

    /// An identifier: a string of at most [`MAX_ID_CHARS`] characters.
    fn opt_id(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        let id = self.opt_str(key)?;
        if let Some(id) = id
            && id.chars().count() > MAX_ID_CHARS
        {
            return Err(ParseError::new(format!(
                "`{}`: longer than {MAX_ID_CHARS} characters",
                self.path(key)
            )));
        }
        Ok(id)
    }

    fn req_id(&self, key: &str) -> Result<&'a str, ParseError> {
        self.opt_id(key)?
            .ok_or_else(|| ParseError::new(format!("`{}`: missing", self.path(key))))
    }
}

fn parse_event(top: &Map<String, Value>, prefix: &str) -> Result<InboundEvent, ParseError> {
    let wrapper = match top.get("data") {
        Some(data) if !top.contains_key("type") => Some(data),
        _ => None,
    };
    let (fields, wrapper_error) = if let Some(data) = wrapper {
        check_code(top.get("code"), &format!("{prefix}code"))?;
        if let Some(message) = top.get("message")
            && !matches!(message, Value::String(_) | Value::Null)
        {
            return Err(ParseError::new(format!(
                "`{prefix}message`: expected a string, got {}",
                json_kind(message)
            )));
        }
        let Value::Object(data) = data else {
            return Err(ParseError::new(format!(
                "`{prefix}data`: expected the event object, got {}",
                json_kind(data)
            )));
        };
        (
            Fields {
                map: data,
                prefix: format!("{prefix}data."),
            },
            error_detail(top.get("error"), &format!("{prefix}error"))?,
        )
    } else {
        (
            Fields {
                map: top,
                prefix: prefix.to_owned(),
            },
            None,
        )
    };

    let kind = match fields.map.get("type") {
        None | Some(Value::Null) => {
            return Err(ParseError::new(format!(
                "`{}`: missing (neither a flat event nor a wrapped `data` object)",
                fields.path("type")
            )));
        }
        Some(Value::String(s)) => s.to_ascii_uppercase(),
        Some(other) => {
            return Err(ParseError::new(format!(
                "`{}`: expected a string, got {}",
                fields.path("type"),
                json_kind(other)
            )));
        }
    };
    if !CALLBACK_TYPES.contains(&kind.as_str()) {
        return Err(ParseError::new(format!(
            "`{}`: `{}` is not a Kaleyra RCS callback type (expected one of {})",
            fields.path("type"),
            quote(&kind),
            CALLBACK_TYPES.join(", ")
        )));
    }

    let from = fields.req_str("from")?;
    let msisdn = E164::parse(from).map_err(|e| {
        ParseError::new(format!(
            "`{}`: `{}` is not an international phone number: {e}",
            fields.path("from"),
            quote(from)
        ))
    })?;
    let user = EndUser::phone(msisdn);
    let at = match fields.map.get("sentAt") {
        None | Some(Value::Null) => {
            return Err(ParseError::new(format!(
                "`{}`: missing",
                fields.path("sentAt")
            )));
        }
        Some(value) => parse_time(value)
            .map_err(|e| ParseError::new(format!("`{}`: {e}", fields.path("sentAt"))))?,
    };
    let event_id = fields.opt_id("eventId")?;
    let message_id = fields.opt_id("messageId")?;
    let reference = fields.opt_id("ref")?;
    let event_key = match (event_id, message_id) {
        (Some(id), _) => id.to_owned(),
        (None, Some(message_id)) => format!("{message_id}:{kind}"),
        (None, None) => {
            return Err(ParseError::new(format!(
                "`{}`: missing, and no `{}` to key the event by",
                fields.path("eventId"),
                fields.path("messageId")
            )));
        }
    };

    let receipt = |status: DeliveryStatus, error: Option<ProviderCode>| {
        Ok::<_, ParseError>(InboundEvent::Receipt(Receipt {
            event_key: event_key.clone(),
            provider_message_id: fields.req_id("messageId")?.to_owned(),
            client_reference: reference.map(str::to_owned),
            user: Some(user.clone()),
            status,
            error,
            at,
        }))
    };

    match kind.as_str() {
        "USER_MESSAGE" => {
            let provider_message_id = fields.req_id("messageId")?.to_owned();
            let text = user_message_text(&fields)?;
            Ok(InboundEvent::Message(InboundMessage {
                event_key,
                provider_message_id,
                user,
                received_at: at,
                content: InboundContent::Text { text },
                reply_to: None,
            }))
        }
        "SUBSCRIBE" | "UNSUBSCRIBE" => Ok(InboundEvent::Subscription(Subscription {
            event_key,
            user,
            subscribed: kind == "SUBSCRIBE",
            at,
        })),
        "COMPOSING" => Ok(InboundEvent::Typing(Typing {
            event_key,
            user,
            at,
        })),
        "SENT" => receipt(DeliveryStatus::Sent, None),
        "DELIVERED" => receipt(DeliveryStatus::Delivered, None),
        "READ" => receipt(DeliveryStatus::Read, None),
        "TTL_EXPIRATION_REVOKED" | "ERROR" => {
            let error = match error_detail(fields.map.get("error"), &fields.path("error"))? {
                Some(e) => Some(e),
                None => match wrapper_error {
                    Some(e) => Some(e),
                    None => flat_error(&fields)?,
                },
            };
            let status = if kind == "ERROR" {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Expired
            };
            receipt(status, error)
        }
        _ => Err(ParseError::new(format!(
            "`{}`: `{}` is not handled",
            fields.path("type"),
            quote(&kind)
        ))),
    }
}

fn user_message_text(fields: &Fields<'_>) -> Result<String, ParseError> {
    let path = fields.path("userMessage");
    let message = match fields.map.get("userMessage") {
        None | Some(Value::Null) => return Err(ParseError::new(format!("`{path}`: missing"))),
        Some(Value::Object(m)) => Fields {
            map: m,
            prefix: format!("{path}."),
        },
        Some(other) => {
            return Err(ParseError::new(format!(
                "`{path}`: expected an object, got {}",
                json_kind(other)
            )));
        }
    };
    let kind = message.req_str("type")?;
    if !kind.eq_ignore_ascii_case("TEXT") {
        return Err(ParseError::new(format!(
            "`{path}.type`: `{}` is not supported (Kaleyra documents only TEXT)",
            quote(kind)
        )));
    }
    Ok(message.req_str("text")?.to_owned())
}

/// The wrapper's `code`: a string or a number when present.
fn check_code(code: Option<&Value>, path: &str) -> Result<(), ParseError> {
    match code {
        None | Some(Value::Null | Value::String(_) | Value::Number(_)) => Ok(()),
        Some(other) => Err(ParseError::new(format!(
            "`{path}`: expected a string or a number, got {}",
            json_kind(other)
        ))),
    }
}

/// The code and message of an error object, if it has either.
fn error_detail(error: Option<&Value>, path: &str) -> Result<Option<ProviderCode>, ParseError> {
    let map = match error {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(ParseError::new(format!(
                "`{path}`: expected an object, got {}",
                json_kind(other)
            )));
        }
    };
    let fields = Fields {
        map,
        prefix: format!("{path}."),
    };
    let mut code = None;
    for key in ["error_code", "errorCode", "code"] {
        if let Some(c) = code_member(&fields, key)? {
            code = Some(c);
            break;
        }
    }
    let mut message = None;
    for key in ["error_message", "errorMessage", "message", "reason"] {
        if let Some(m) = fields.opt_str(key)? {
            message = Some(m.to_owned());
            break;
        }
    }
    Ok(match (code, message) {
        (None, None) => None,
        (code, message) => Some(ProviderCode {
            code: code.unwrap_or_else(|| "ERROR".to_owned()),
            message,
        }),
    })
}

/// `errorCode` / `errorMessage` beside a flat event's fields.
fn flat_error(fields: &Fields<'_>) -> Result<Option<ProviderCode>, ParseError> {
    let code = code_member(fields, "errorCode")?;
    let message = fields.opt_str("errorMessage")?.map(str::to_owned);
    Ok(match (code, message) {
        (None, None) => None,
        (code, message) => Some(ProviderCode {
            code: code.unwrap_or_else(|| "ERROR".to_owned()),
            message,
        }),
    })
}

/// A code written as a string or a number.
fn code_member(fields: &Fields<'_>, key: &str) -> Result<Option<String>, ParseError> {
    match fields.map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(ParseError::new(format!(
            "`{}`: expected a string or a number, got {}",
            fields.path(key),
            json_kind(other)
        ))),
    }
}

/// `sentAt` as documented (ISO 8601) or as epoch seconds / milliseconds.
pub fn parse_time(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                let n: i64 = s
                    .parse()
                    .map_err(|_| format!("`{}` is too large for a time", quote(s)))?;
                return from_epoch(n);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc));
            }
            if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
                return Ok(t.and_utc());
            }
            Err(format!(
                "`{}` is not an ISO 8601 date-time (e.g. 2025-06-16T13:46:38.929Z) nor epoch time",
                quote(s)
            ))
        }
        Value::Number(n) => match n.as_i64() {
            Some(n) => from_epoch(n),
            None => Err(format!(
                "{n} is not a whole number of seconds or milliseconds"
            )),
        },
        other => Err(format!(
            "expected an ISO 8601 string or epoch time, got {}",
            json_kind(other)
        )),
    }
}

fn from_epoch(n: i64) -> Result<DateTime<Utc>, String> {
    if n < 0 {
        return Err(format!("{n} is before 1970"));
    }
    let t = if n >= EPOCH_MILLIS_FROM {
        DateTime::from_timestamp_millis(n)
    } else {
        DateTime::from_timestamp(n, 0)
    };
    t.ok_or_else(|| format!("{n} is out of range for a time"))
}

/// What a JSON value is, for reasons.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first characters of `s`, for quoting in a reason.
fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(QUOTE_CHARS).collect();
    if s.chars().nth(QUOTE_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<InboundEvent>, ParseError> {
        parse_callbacks(body.as_bytes())
    }

    fn reason(body: &str) -> String {
        parse(body).unwrap_err().reason
    }

    const FLAT_DELIVERED: &str = r#"{"type":"DELIVERED","eventId":"e1","from":"447700900123",
        "to":"agent","sentAt":"2025-06-16T13:46:41.295Z","messageId":"m1","ref":"r1"}"#;

    #[test]
    fn a_flat_delivery_report_is_a_receipt() {
        let events = parse(FLAT_DELIVERED).unwrap();
        let [InboundEvent::Receipt(r)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(r.event_key, "e1");
        assert_eq!(r.provider_message_id, "m1");
        assert_eq!(r.client_reference.as_deref(), Some("r1"));
        assert_eq!(r.status, DeliveryStatus::Delivered);
        assert_eq!(
            r.user.as_ref().unwrap().msisdn.as_ref().unwrap().as_str(),
            "+447700900123"
        );
        assert_eq!(r.at.timestamp_millis(), 1_750_081_601_295);
    }

    #[test]
    fn times_in_every_accepted_form() {
        let expected = DateTime::parse_from_rfc3339("2025-06-16T13:46:41Z")
            .unwrap()
            .with_timezone(&Utc);
        for t in [
            json("2025-06-16T13:46:41Z"),
            json("2025-06-16T15:46:41+02:00"),
            json("2025-06-16T13:46:41"),
            json("1750081601"),
            json("1750081601000"),
            Value::from(1_750_081_601_i64),
            Value::from(1_750_081_601_000_i64),
        ] {
            assert_eq!(parse_time(&t).unwrap(), expected, "{t}");
        }
        for bad in [
            json("yesterday"),
            json(""),
            json("99999999999999999999999"),
            Value::from(-1),
            Value::from(1.5),
            Value::Bool(true),
            Value::from(i64::MAX),
        ] {
            assert!(parse_time(&bad).is_err(), "{bad}");
        }
    }

    fn json(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    #[test]
    fn the_key_falls_back_to_message_id_and_type() {
        let events = parse(
            r#"{"type":"unsubscribe","from":"+44 7700 900123","sentAt":"2025-06-18T13:37:40.631Z",
                "messageId":"m9"}"#,
        )
        .unwrap();
        let [InboundEvent::Subscription(s)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(s.event_key, "m9:UNSUBSCRIBE");
        assert!(!s.subscribed);
        assert!(
            reason(r#"{"type":"SUBSCRIBE","from":"447700900123","sentAt":"2025-06-18T13:37:40Z"}"#)
                .contains("`eventId`: missing, and no `messageId`")
        );
    }

    #[test]
    fn reasons_name_the_field() {
        let cases = [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[]", "empty array"),
            ("42", "is a number"),
            ("[1]", "[0]: expected an event object"),
            ("{}", "`type`: missing"),
            (r#"{"type":7}"#, "`type`: expected a string"),
            (r#"{"type":"BOUNCED"}"#, "not a Kaleyra RCS callback type"),
            (
                r#"{"type":"SENT","sentAt":"2025-06-16T13:46:41Z"}"#,
                "`from`: missing",
            ),
            (
                r#"{"type":"SENT","from":"0770090012"}"#,
                "`from`: `0770090012` is not",
            ),
            (
                r#"{"type":"SENT","from":447700900123}"#,
                "`from`: expected a string",
            ),
            (
                r#"{"type":"SENT","from":"447700900123"}"#,
                "`sentAt`: missing",
            ),
            (
                r#"{"type":"SENT","from":"447700900123","sentAt":"soon","eventId":"e"}"#,
                "`sentAt`: `soon` is not",
            ),
            (
                r#"{"type":"SENT","from":"447700900123","sentAt":1750081601,"eventId":"e"}"#,
                "`messageId`: missing",
            ),
            (
                r#"{"type":"SENT","from":"447700900123","sentAt":1750081601,"eventId":["e"]}"#,
                "`eventId`: expected a string",
            ),
            (
                r#"{"type":"USER_MESSAGE","from":"447700900123","sentAt":1750081601,"eventId":"e","messageId":"m"}"#,
                "`userMessage`: missing",
            ),
            (
                r#"{"type":"USER_MESSAGE","from":"447700900123","sentAt":1750081601,"eventId":"e","messageId":"m","userMessage":{"type":"IMAGE"}}"#,
                "`userMessage.type`: `IMAGE` is not supported",
            ),
            (
                r#"{"type":"USER_MESSAGE","from":"447700900123","sentAt":1750081601,"eventId":"e","messageId":"m","userMessage":{"type":"TEXT"}}"#,
                "`userMessage.text`: missing",
            ),
            (
                r#"{"code":"4000","data":[]}"#,
                "`data`: expected the event object",
            ),
            (
                r#"{"code":true,"data":{}}"#,
                "`code`: expected a string or a number",
            ),
            (r#"{"code":"4000","data":{}}"#, "`data.type`: missing"),
            (
                r#"{"code":"4000","data":{"type":"ERROR","from":"447700900123","sentAt":1750081601,"eventId":"e","messageId":"m"},"error":"boom"}"#,
                "`error`: expected an object",
            ),
            (
                r#"[{"type":"SENT","eventId":"e","from":"447700900123","sentAt":1750081601,"messageId":"m"},{"type":"SENT"}]"#,
                "`[1].from`: missing",
            ),
        ];
        for (body, expected) in cases {
            let got = reason(body);
            assert!(
                got.contains(expected),
                "{body}\n  gave: {got}\n  expected: {expected}"
            );
        }
    }

    #[test]
    fn error_detail_is_found_wherever_it_is() {
        let base = r#""type":"ERROR","eventId":"e","from":"447700900123","sentAt":1750081601,"messageId":"m""#;
        let code = |body: String| match parse(&body).unwrap().remove(0) {
            InboundEvent::Receipt(r) => r.error,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(format!(
                r#"{{{base},"errorCode":4401,"errorMessage":"gone"}}"#
            )),
            Some(ProviderCode {
                code: "4401".into(),
                message: Some("gone".into())
            })
        );
        assert_eq!(
            code(format!(
                r#"{{"code":"4000","data":{{{base},"error":{{"reason":"x"}}}},"error":{{"error_code":"Y"}}}}"#
            )),
            Some(ProviderCode {
                code: "ERROR".into(),
                message: Some("x".into())
            })
        );
        assert_eq!(
            code(format!(
                r#"{{"code":"4000","data":{{{base}}},"error":{{"error_code":"Y"}}}}"#
            )),
            Some(ProviderCode {
                code: "Y".into(),
                message: None
            })
        );
        assert_eq!(
            code(format!(
                r#"{{"code":"4000","data":{{{base}}},"error":{{}}}}"#
            )),
            None
        );
    }

    #[test]
    fn arrays_give_their_events_in_order() {
        let body = format!("[{FLAT_DELIVERED},{FLAT_DELIVERED}]");
        assert_eq!(parse(&body).unwrap().len(), 2);
        let many = format!(
            "[{}]",
            vec![FLAT_DELIVERED; MAX_EVENTS_PER_BODY + 1].join(",")
        );
        assert!(reason(&many).contains("more than the 100"));
    }

    #[test]
    fn long_identifiers_and_odd_bytes_do_not_panic() {
        let long = "x".repeat(MAX_ID_CHARS + 1);
        let body = FLAT_DELIVERED.replace("\"e1\"", &format!("\"{long}\""));
        assert!(reason(&body).contains("longer than 256"));
        for body in [
            &b"\xff\xfe"[..],
            b"{\"type\":\"\xc3\x28\"}",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            b"{\"type\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}",
        ] {
            assert!(parse_callbacks(body).is_err());
        }
    }
}
