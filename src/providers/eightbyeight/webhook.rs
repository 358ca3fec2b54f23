//! 8x8 Chat Apps webhooks: the `ChatApps` envelope and its three event types, read into
//! normalised [`InboundEvent`]s.
//!
//! # Formats accepted
//!
//! | `eventType` | `version` | becomes |
//! |---|---|---|
//! | `inbound_message_received` | absent or `2` (v2), `3` | [`InboundEvent::Message`] |
//! | `outbound_message_status_changed` | absent or `8` (v8), `9` | [`InboundEvent::Receipt`] |
//! | `external_app_message` | absent, `8`, `9` | [`InboundEvent::Recorded`] |
//!
//! Any other event type or version is refused: a format byocd has not been taught is kept in
//! quarantine rather than guessed at.
//!
//! # End users
//!
//! `user.msisdn` is normalised to E.164. `user.channelUserId` is kept as the channel user id
//! when it has the BSUID form (`US.1349…`); v2 webhooks repeat the phone digits there, which are
//! recognised (all digits) and used as the number when `msisdn` is absent, never as a user id.
//! Any other non-empty id (a LINE user id) is kept as it is. A user with neither a number nor a
//! user id is an error.
//!
//! # Dedupe keys
//!
//! - inbound message: its `umid`;
//! - delivery receipt: `umid:state`, or `umid:state:detail` when 8x8 gives a `detail` — one
//!   message has several receipts, and `delivered` comes twice (`delivered_to_operator`, then
//!   `delivered_to_recipient`), so the state alone would swallow the second;
//! - `external_app_message`: `external:umid` (the umid is an outbound message's, so it is kept
//!   apart from inbound keys).
//!
//! # Content
//!
//! `Text` → text; `Image`, `Audio`, `Video`, `File` with `content.url` → media (with
//! `content.text` as caption); `Location` → location; `Interactive` `button_reply` /
//! `list_reply` → interactive reply; `Buttons` / `List` with `content.text` (RCS suggestion
//! replies) → interactive reply with `content.payload` as id. `Interactive` `nfmReply`
//! (WhatsApp Flow answers) and `callPermissionReply` are documented but mean nothing to a rep:
//! they become [`InboundEvent::Recorded`]. `None`, `Carousel` and `Template` messages are
//! refused.
//!
//! # Receipt states
//!
//! `queued`, `sent`, `read`, `undelivered`, `rejected` map one to one; `delivered` with detail
//! `delivered_to_operator` is [`DeliveryStatus::Sent`] (it reached the operator, not the
//! phone), otherwise [`DeliveryStatus::Delivered`]; `failed` and `error` (listed by the send
//! API's status schema) are [`DeliveryStatus::Failed`]. `status.errorCode` (number or string)
//! and `status.errorMessage` become the receipt's [`ProviderCode`], with WhatsApp's
//! `providerErrorCode` added to the message.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::super::{
    DeliveryStatus, E164, EndUser, InboundContent, InboundEvent, InboundMessage, MediaKind,
    ParseError, ProviderCode, Receipt, Recorded, identity,
};

/// The `namespace` of every Chat Apps webhook.
pub const NAMESPACE: &str = "ChatApps";
/// `eventType` of an end user's message.
pub const INBOUND_MESSAGE: &str = "inbound_message_received";
/// `eventType` of a delivery receipt.
pub const STATUS_CHANGED: &str = "outbound_message_status_changed";
/// `eventType` of a message the business sent from the WhatsApp Business App.
pub const EXTERNAL_APP_MESSAGE: &str = "external_app_message";

/// Longest `umid` accepted (8x8's are 36-character UUIDs).
const MAX_UMID_CHARS: usize = 100;
/// Longest end-user key Salesforce accepts (`from` / `endUserClientId`).
const MAX_USER_ID_CHARS: usize = 240;

/// Parses one webhook body. `sub_account_id` is the channel's: a payload naming another
/// sub-account is refused.
pub fn parse(body: &[u8], sub_account_id: &str) -> Result<Vec<InboundEvent>, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new(format!("body: not JSON ({e})")))?;
    let envelope = value
        .as_object()
        .ok_or_else(|| ParseError::new("body: expected a JSON object"))?;
    let namespace = req_str(envelope, "namespace", "namespace")?;
    if namespace != NAMESPACE {
        return Err(ParseError::new(format!(
            "namespace: expected `{NAMESPACE}`, got `{}`",
            clip(namespace)
        )));
    }
    let event_type = req_str(envelope, "eventType", "eventType")?;
    let version = version(envelope)?;
    let payload = match envelope.get("payload") {
        Some(Value::Object(p)) => p,
        Some(other) => return Err(wrong_type("payload", "an object", other)),
        None => return Err(missing("payload")),
    };
    if let Some(sa) = opt_str(payload, "subAccountId", "payload.subAccountId")?
        && sa != sub_account_id
    {
        return Err(ParseError::new(format!(
            "payload.subAccountId: `{}` is not this channel's sub-account",
            clip(sa)
        )));
    }
    match event_type {
        INBOUND_MESSAGE => {
            check_version(version, &[2, 3], event_type)?;
            inbound(payload).map(|e| vec![e])
        }
        STATUS_CHANGED => {
            check_version(version, &[8, 9], event_type)?;
            receipt(payload).map(|e| vec![InboundEvent::Receipt(e)])
        }
        EXTERNAL_APP_MESSAGE => {
            check_version(version, &[8, 9], event_type)?;
            external(payload).map(|e| vec![InboundEvent::Recorded(e)])
        }
        other => Err(ParseError::new(format!(
            "eventType: unknown event type `{}`",
            clip(other)
        ))),
    }
}

fn version(envelope: &Map<String, Value>) -> Result<Option<u64>, ParseError> {
    match envelope.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ParseError::new(format!("version: `{n}` is not a format version"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ParseError::new(format!("version: `{}` is not a number", clip(s)))),
        Some(other) => Err(wrong_type("version", "a number", other)),
    }
}

fn check_version(version: Option<u64>, known: &[u64], event_type: &str) -> Result<(), ParseError> {
    match version {
        Some(v) if !known.contains(&v) => Err(ParseError::new(format!(
            "version: {event_type} format {v} is not supported (known: absent, {})",
            known
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Ok(()),
    }
}

fn inbound(payload: &Map<String, Value>) -> Result<InboundEvent, ParseError> {
    let umid = umid(payload)?;
    let received_at = timestamp(payload, "timestamp", "payload.timestamp")?;
    let user = match payload.get("user") {
        Some(Value::Object(u)) => end_user(u, "payload.user")?,
        Some(other) => return Err(wrong_type("payload.user", "an object", other)),
        None => return Err(missing("payload.user")),
    };
    let reply_to = opt_str(payload, "replyToUmid", "payload.replyToUmid")?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let kind = req_str(payload, "type", "payload.type")?;
    let content = match payload.get("content") {
        Some(Value::Object(c)) => c,
        Some(other) => return Err(wrong_type("payload.content", "an object", other)),
        None => return Err(missing("payload.content")),
    };
    let content = match content_of(kind, content)? {
        Content::Relayed(c) => c,
        Content::Recorded(what) => {
            return Ok(InboundEvent::Recorded(Recorded {
                event_key: umid.clone(),
                kind: format!("{INBOUND_MESSAGE}:{what}"),
                user: Some(user),
                at: received_at,
            }));
        }
    };
    Ok(InboundEvent::Message(InboundMessage {
        event_key: umid.clone(),
        provider_message_id: umid,
        user,
        received_at,
        content,
        reply_to,
    }))
}

enum Content {
    Relayed(InboundContent),
    Recorded(&'static str),
}

fn content_of(kind: &str, content: &Map<String, Value>) -> Result<Content, ParseError> {
    let media = |media: MediaKind| -> Result<Content, ParseError> {
        let url = req_str(content, "url", "payload.content.url")?;
        if url.trim().is_empty() {
            return Err(ParseError::new("payload.content.url: empty"));
        }
        let caption = opt_str(content, "text", "payload.content.text")?
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Content::Relayed(InboundContent::Media {
            media,
            url: url.to_owned(),
            mime_type: None,
            file_name: None,
            caption,
        }))
    };
    match kind.to_ascii_lowercase().as_str() {
        "text" => {
            let text = req_str(content, "text", "payload.content.text")?;
            Ok(Content::Relayed(InboundContent::Text {
                text: text.to_owned(),
            }))
        }
        "image" => media(MediaKind::Image),
        "audio" => media(MediaKind::Audio),
        "video" => media(MediaKind::Video),
        "file" => media(MediaKind::File),
        "location" => location(content).map(Content::Relayed),
        "interactive" => interactive(content),
        "buttons" | "list" => {
            let title = req_str(content, "text", "payload.content.text")?;
            let id = opt_str(content, "payload", "payload.content.payload")?.map(str::to_owned);
            Ok(Content::Relayed(InboundContent::InteractiveReply {
                id,
                title: title.to_owned(),
            }))
        }
        _ => Err(ParseError::new(format!(
            "payload.type: `{}` messages are not supported",
            clip(kind)
        ))),
    }
}

fn location(content: &Map<String, Value>) -> Result<InboundContent, ParseError> {
    let location = match content.get("location") {
        Some(Value::Object(l)) => l,
        Some(other) => return Err(wrong_type("payload.content.location", "an object", other)),
        None => return Err(missing("payload.content.location")),
    };
    let coordinate = |key: &str, path: &str, limit: f64| -> Result<f64, ParseError> {
        let value = match location.get(key) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(other) => return Err(wrong_type(path, "a number", other)),
            None => return Err(missing(path)),
        };
        match value {
            Some(v) if v.is_finite() && v.abs() <= limit => Ok(v),
            _ => Err(ParseError::new(format!(
                "{path}: not a coordinate between -{limit} and {limit}"
            ))),
        }
    };
    let latitude = coordinate("latitude", "payload.content.location.latitude", 90.0)?;
    let longitude = coordinate("longitude", "payload.content.location.longitude", 180.0)?;
    let name = opt_str(location, "name", "payload.content.location.name")?.map(str::to_owned);
    let address =
        opt_str(location, "address", "payload.content.location.address")?.map(str::to_owned);
    Ok(InboundContent::Location {
        latitude,
        longitude,
        name,
        address,
    })
}

fn interactive(content: &Map<String, Value>) -> Result<Content, ParseError> {
    let interactive = match content.get("interactive") {
        Some(Value::Object(i)) => i,
        Some(other) => {
            return Err(wrong_type(
                "payload.content.interactive",
                "an object",
                other,
            ));
        }
        None => return Err(missing("payload.content.interactive")),
    };
    let kind = req_str(interactive, "type", "payload.content.interactive.type")?;
    let reply = |key: &str| -> Result<Content, ParseError> {
        let path = format!("payload.content.interactive.{key}");
        let reply = match interactive.get(key) {
            Some(Value::Object(r)) => r,
            Some(other) => return Err(wrong_type(&path, "an object", other)),
            None => return Err(missing(&path)),
        };
        let title = req_str(reply, "title", &format!("{path}.title"))?;
        let id = opt_str(reply, "id", &format!("{path}.id"))?.map(str::to_owned);
        Ok(Content::Relayed(InboundContent::InteractiveReply {
            id,
            title: title.to_owned(),
        }))
    };
    match kind {
        "button_reply" => reply("button_reply"),
        "list_reply" => reply("list_reply"),
        "nfmReply" => Ok(Content::Recorded("nfmReply")),
        "callPermissionReply" => Ok(Content::Recorded("callPermissionReply")),
        other => Err(ParseError::new(format!(
            "payload.content.interactive.type: unknown interactive reply `{}`",
            clip(other)
        ))),
    }
}

fn receipt(payload: &Map<String, Value>) -> Result<Receipt, ParseError> {
    let umid = umid(payload)?;
    let client_reference = opt_str(payload, "clientMessageId", "payload.clientMessageId")?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let user = optional_user(payload)?;
    let status = match payload.get("status") {
        Some(Value::Object(s)) => s,
        Some(other) => return Err(wrong_type("payload.status", "an object", other)),
        None => return Err(missing("payload.status")),
    };
    let state = req_str(status, "state", "payload.status.state")?;
    let detail = opt_str(status, "detail", "payload.status.detail")?.filter(|d| !d.is_empty());
    let at = timestamp(status, "timestamp", "payload.status.timestamp")?;
    let lower_state = state.to_ascii_lowercase();
    let delivery = match lower_state.as_str() {
        "queued" => DeliveryStatus::Queued,
        "sent" => DeliveryStatus::Sent,
        "delivered" if detail.is_some_and(|d| d.eq_ignore_ascii_case("delivered_to_operator")) => {
            DeliveryStatus::Sent
        }
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "undelivered" => DeliveryStatus::Undelivered,
        "rejected" => DeliveryStatus::Rejected,
        "failed" | "error" => DeliveryStatus::Failed,
        _ => {
            return Err(ParseError::new(format!(
                "payload.status.state: unknown state `{}`",
                clip(state)
            )));
        }
    };
    let code = match status.get("errorCode") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(wrong_type("payload.status.errorCode", "a code", other)),
    };
    let message = opt_str(status, "errorMessage", "payload.status.errorMessage")?
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let whatsapp_code = match payload.get("whatsapp") {
        Some(Value::Object(w)) => match w.get("providerErrorCode") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
        _ => None,
    };
    let error = match (code, whatsapp_code) {
        (None, None) => None,
        (Some(code), whatsapp) => Some(ProviderCode {
            code,
            message: match (message, whatsapp) {
                (Some(m), Some(w)) => Some(format!("{m} (WhatsApp error {w})")),
                (None, Some(w)) => Some(format!("WhatsApp error {w}")),
                (m, None) => m,
            },
        }),
        (None, Some(w)) => Some(ProviderCode {
            code: format!("whatsapp:{w}"),
            message,
        }),
    };
    let event_key = match detail {
        Some(d) => format!("{umid}:{lower_state}:{}", d.to_ascii_lowercase()),
        None => format!("{umid}:{lower_state}"),
    };
    Ok(Receipt {
        event_key,
        provider_message_id: umid,
        client_reference,
        user,
        status: delivery,
        error,
        at,
    })
}

fn external(payload: &Map<String, Value>) -> Result<Recorded, ParseError> {
    let umid = umid(payload)?;
    let at = timestamp(payload, "timestamp", "payload.timestamp")?;
    let user = optional_user(payload)?;
    Ok(Recorded {
        event_key: format!("external:{umid}"),
        kind: EXTERNAL_APP_MESSAGE.to_owned(),
        user,
        at,
    })
}

/// The `user` of a receipt or external message: optional, and a user object without any
/// identifier counts as absent (early WhatsApp receipts may carry little).
fn optional_user(payload: &Map<String, Value>) -> Result<Option<EndUser>, ParseError> {
    match payload.get("user") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(u)) => {
            if u.get("msisdn").is_none() && u.get("channelUserId").is_none() {
                return Ok(None);
            }
            end_user(u, "payload.user").map(Some)
        }
        Some(other) => Err(wrong_type("payload.user", "an object", other)),
    }
}

fn end_user(user: &Map<String, Value>, path: &str) -> Result<EndUser, ParseError> {
    let msisdn_path = format!("{path}.msisdn");
    let mut msisdn = match opt_str(user, "msisdn", &msisdn_path)?.filter(|s| !s.trim().is_empty()) {
        Some(raw) => {
            Some(E164::parse(raw).map_err(|e| ParseError::new(format!("{msisdn_path}: {e}")))?)
        }
        None => None,
    };
    let id_path = format!("{path}.channelUserId");
    let mut channel_user_id = None;
    if let Some(id) = opt_str(user, "channelUserId", &id_path)?.map(str::trim)
        && !id.is_empty()
    {
        if identity::is_bsuid(id) {
            channel_user_id = Some(id.to_owned());
        } else if looks_like_phone_digits(id) {
            // v2: the phone digits repeated; a number, not a user id.
            let number = E164::parse(id).map_err(|e| ParseError::new(format!("{id_path}: {e}")))?;
            if let Some(m) = &msisdn {
                if *m != number {
                    return Err(ParseError::new(format!(
                        "{id_path}: phone digits that differ from {msisdn_path}"
                    )));
                }
            } else {
                msisdn = Some(number);
            }
        } else if id.chars().count() > MAX_USER_ID_CHARS || id.chars().any(char::is_control) {
            return Err(ParseError::new(format!(
                "{id_path}: not a user id (control characters or over {MAX_USER_ID_CHARS} characters)"
            )));
        } else {
            channel_user_id = Some(id.to_owned());
        }
    }
    if msisdn.is_none() && channel_user_id.is_none() {
        return Err(ParseError::new(format!(
            "{path}: has neither msisdn nor channelUserId"
        )));
    }
    let name = opt_str(user, "name", &format!("{path}.name"))?;
    let username = opt_str(user, "username", &format!("{path}.username"))?;
    let display_name = name
        .or(username)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    Ok(EndUser {
        msisdn,
        channel_user_id,
        display_name,
    })
}

fn looks_like_phone_digits(id: &str) -> bool {
    let digits = id.strip_prefix('+').unwrap_or(id);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn umid(payload: &Map<String, Value>) -> Result<String, ParseError> {
    let umid = req_str(payload, "umid", "payload.umid")?.trim();
    if umid.is_empty() {
        return Err(ParseError::new("payload.umid: empty"));
    }
    if umid.chars().count() > MAX_UMID_CHARS || !umid.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ParseError::new(format!(
            "payload.umid: not a message id (printable ASCII, at most {MAX_UMID_CHARS} characters)"
        )));
    }
    Ok(umid.to_owned())
}

/// An ISO 8601 time; 8x8 writes `2026-06-09T10:13:20.00Z`, and a time without an offset is
/// taken as UTC, as 8x8 documents every time to be.
fn timestamp(map: &Map<String, Value>, key: &str, path: &str) -> Result<DateTime<Utc>, ParseError> {
    let raw = req_str(map, key, path)?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| ParseError::new(format!("{path}: `{}` is not an ISO 8601 time", clip(raw))))
}

fn req_str<'a>(map: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, ParseError> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(missing(path)),
        Some(other) => Err(wrong_type(path, "a string", other)),
    }
}

fn opt_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ParseError> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) | None => Ok(None),
        Some(other) => Err(wrong_type(path, "a string", other)),
    }
}

fn missing(path: &str) -> ParseError {
    ParseError::new(format!("{path}: missing"))
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> ParseError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ParseError::new(format!("{path}: expected {expected}, got {got}"))
}

/// At most 64 characters of a value quoted in an error.
fn clip(s: &str) -> String {
    const KEEP: usize = 64;
    let mut out: String = s
        .chars()
        .take(KEEP)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > KEEP {
        out.push('…');
    }
    out
}
