//! A sender of 8x8 Chat Apps webhooks: builds every documented payload variant (inbound
//! messages in the v2 and v3 formats, delivery receipts in v8 and v9, WhatsApp Business App
//! echoes) and POSTs them with a chosen `Authorization` value.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{EightByEightChannel, EightByEightEmulator};
use crate::providers::MediaKind;

/// Format of an inbound-message webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundFormat {
    /// No `version`; `user.channelUserId` repeats the phone digits.
    V2,
    /// `version: 3`; `user.channelUserId` is the BSUID, `msisdn` may be absent.
    V3,
}

/// Format of a delivery-receipt webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// No `version`; `user.channelUserId` repeats the phone digits.
    V8,
    /// `version: 9`; BSUID in `channelUserId`, `outboundContent` on WhatsApp `queued`.
    V9,
}

/// The end user of a webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookUser {
    /// E.164 number with `+`.
    pub msisdn: Option<String>,
    /// WhatsApp BSUID.
    pub channel_user_id: Option<String>,
    /// WhatsApp profile name.
    pub name: Option<String>,
    /// WhatsApp username (v3).
    pub username: Option<String>,
}

impl WebhookUser {
    /// A user known by number.
    pub fn phone(msisdn: &str) -> Self {
        Self {
            msisdn: Some(msisdn.to_owned()),
            ..Self::default()
        }
    }

    /// A WhatsApp user who hides their number.
    pub fn bsuid(channel_user_id: &str) -> Self {
        Self {
            channel_user_id: Some(channel_user_id.to_owned()),
            ..Self::default()
        }
    }

    /// With a BSUID.
    pub fn with_bsuid(mut self, channel_user_id: &str) -> Self {
        self.channel_user_id = Some(channel_user_id.to_owned());
        self
    }

    /// With a profile name.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// With a username.
    pub fn with_username(mut self, username: &str) -> Self {
        self.username = Some(username.to_owned());
        self
    }

    /// The `user` object in `format` (`v2` / `v8` style when `legacy`).
    fn json(&self, legacy: bool, with_names: bool) -> Value {
        let mut user = Map::new();
        if let Some(m) = &self.msisdn {
            user.insert("msisdn".into(), json!(m));
        }
        if legacy {
            // v2/v8: the phone digits, whatever the BSUID.
            if let Some(m) = &self.msisdn {
                user.insert("channelUserId".into(), json!(m.trim_start_matches('+')));
            } else if let Some(id) = &self.channel_user_id {
                user.insert("channelUserId".into(), json!(id));
            }
        } else if let Some(id) = &self.channel_user_id {
            user.insert("channelUserId".into(), json!(id));
        }
        if with_names {
            if let Some(n) = &self.name {
                user.insert("name".into(), json!(n));
            }
            if !legacy && let Some(u) = &self.username {
                user.insert("username".into(), json!(u));
            }
        }
        Value::Object(user)
    }
}

/// What an end user's message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundBody {
    /// `Text`.
    Text(String),
    /// `Image`, `Audio`, `Video` or `File` at a URL, with an optional caption.
    Media {
        /// Which.
        kind: MediaKind,
        /// Pre-signed URL.
        url: String,
        /// Caption (`content.text`).
        caption: Option<String>,
    },
    /// `Location`.
    Location {
        /// Latitude.
        latitude: f64,
        /// Longitude.
        longitude: f64,
    },
    /// `Interactive` `button_reply`.
    ButtonReply {
        /// Button id.
        id: String,
        /// Button title.
        title: String,
    },
    /// `Interactive` `list_reply`.
    ListReply {
        /// Row id.
        id: String,
        /// Row title.
        title: String,
        /// Row description.
        description: Option<String>,
    },
    /// `Interactive` `nfmReply` (WhatsApp Flow answer).
    FlowReply {
        /// The raw `responseJson`.
        response_json: String,
    },
    /// An RCS suggestion reply: type `Buttons` with the suggestion's `text` and its postback
    /// data as `payload` (how byocd reads RCS replies, `providers::eightbyeight::webhook`).
    SuggestionReply {
        /// The suggestion's text.
        text: String,
        /// Its postback data.
        payload: String,
    },
    /// `Interactive` `callPermissionReply`.
    CallPermissionReply {
        /// `accept` or `reject`.
        accept: bool,
    },
}

impl InboundBody {
    fn type_and_content(&self) -> (&'static str, Value) {
        match self {
            Self::Text(text) => ("Text", json!({ "text": text })),
            Self::Media { kind, url, caption } => {
                let kind = match kind {
                    MediaKind::Image => "Image",
                    MediaKind::Audio => "Audio",
                    MediaKind::Video => "Video",
                    MediaKind::File => "File",
                };
                let mut content = json!({ "url": url });
                if let Some(c) = caption {
                    content["text"] = json!(c);
                }
                (kind, content)
            }
            Self::Location {
                latitude,
                longitude,
            } => (
                "Location",
                json!({ "location": { "latitude": latitude, "longitude": longitude } }),
            ),
            Self::SuggestionReply { text, payload } => {
                ("Buttons", json!({ "text": text, "payload": payload }))
            }
            Self::ButtonReply { id, title } => (
                "Interactive",
                json!({ "interactive": { "type": "button_reply",
                    "button_reply": { "id": id, "title": title } } }),
            ),
            Self::ListReply {
                id,
                title,
                description,
            } => {
                let mut reply = json!({ "id": id, "title": title });
                if let Some(d) = description {
                    reply["description"] = json!(d);
                }
                (
                    "Interactive",
                    json!({ "interactive": { "type": "list_reply", "list_reply": reply } }),
                )
            }
            Self::FlowReply { response_json } => (
                "Interactive",
                json!({ "interactive": { "type": "nfmReply",
                    "nfmReply": { "responseJson": response_json } } }),
            ),
            Self::CallPermissionReply { accept } => (
                "Interactive",
                json!({ "interactive": { "type": "callPermissionReply",
                    "callPermissionReply": {
                        "response": if *accept { "accept" } else { "reject" },
                        "isPermanent": true,
                        "responseSource": "user_action",
                    } } }),
            ),
        }
    }
}

/// A delivery receipt to build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The umid of the message sent.
    pub umid: String,
    /// The `clientMessageId` it was sent with.
    pub client_message_id: Option<String>,
    /// The recipient.
    pub user: Option<WebhookUser>,
    /// `queued`, `sent`, `delivered`, `undelivered`, `rejected` or `read`.
    pub state: String,
    /// `delivered_to_operator`, `delivered_to_recipient`, `rejected_by_operator`,
    /// `undelivered_to_recipient`.
    pub detail: Option<String>,
    /// `errorCode` and `errorMessage`.
    pub error: Option<(i64, String)>,
    /// WhatsApp's `providerErrorCode`.
    pub whatsapp_error: Option<String>,
    /// When; `None` means now.
    pub at: Option<DateTime<Utc>>,
}

impl StatusUpdate {
    /// A receipt of `umid` in `state`.
    pub fn new(umid: &str, state: &str) -> Self {
        Self {
            umid: umid.to_owned(),
            state: state.to_owned(),
            ..Self::default()
        }
    }
}

/// A built webhook: its umid and body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookPayload {
    /// The `payload.umid`.
    pub umid: String,
    /// The whole body.
    pub body: Value,
}

impl WebhookPayload {
    /// The body as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }
}

/// Builds and sends 8x8 Chat Apps webhooks for one sub-account.
#[derive(Debug, Clone)]
pub struct EightByEightWebhooks {
    sub_account_id: String,
    channel: EightByEightChannel,
    http: reqwest::Client,
    emulator: Option<EightByEightEmulator>,
}

impl EightByEightWebhooks {
    /// A sender for `sub_account_id` on `channel`.
    pub fn new(sub_account_id: &str, channel: EightByEightChannel) -> Self {
        Self {
            sub_account_id: sub_account_id.to_owned(),
            channel,
            http: reqwest::Client::new(),
            emulator: None,
        }
    }

    /// Inbound messages built from now on are recorded in `emulator` (at its clock), so
    /// typing and read calls may name them.
    pub fn recording_into(mut self, emulator: EightByEightEmulator) -> Self {
        self.emulator = Some(emulator);
        self
    }

    fn channel_name(&self) -> &'static str {
        match self.channel {
            EightByEightChannel::Whatsapp => "whatsapp",
            EightByEightChannel::Rcs => "rcs",
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.emulator
            .as_ref()
            .map_or_else(Utc::now, EightByEightEmulator::now)
    }

    /// An inbound message from `user`.
    pub fn inbound(
        &self,
        format: InboundFormat,
        user: &WebhookUser,
        body: &InboundBody,
    ) -> WebhookPayload {
        self.inbound_replying(format, user, body, None)
    }

    /// An inbound message quoting the earlier message `reply_to` (`replyToUmid`).
    pub fn inbound_replying(
        &self,
        format: InboundFormat,
        user: &WebhookUser,
        body: &InboundBody,
        reply_to: Option<&str>,
    ) -> WebhookPayload {
        let umid = uuid::Uuid::new_v4().to_string();
        let at = self.now();
        let (kind, content) = body.type_and_content();
        let mut payload = json!({
            "umid": umid,
            "subAccountId": self.sub_account_id,
            "timestamp": timestamp(at),
            "user": user.json(format == InboundFormat::V2, true),
            "recipient": { "channel": self.channel_name(), "channelId": "emulated-channel-1" },
            "type": kind,
            "content": content,
        });
        if let Some(r) = reply_to {
            payload["replyToUmid"] = json!(r);
        }
        let mut body = json!({
            "namespace": "ChatApps",
            "eventType": "inbound_message_received",
            "description": "ChatApps inbound message",
            "payload": payload,
        });
        if format == InboundFormat::V3 {
            body["version"] = json!(3);
        }
        if let Some(emulator) = &self.emulator {
            emulator.record_inbound(&umid, at);
            emulator.record_inbound_from(user, at);
        }
        WebhookPayload { umid, body }
    }

    /// A v3 text message from `user`.
    pub fn inbound_text(&self, user: &WebhookUser, text: &str) -> WebhookPayload {
        self.inbound(InboundFormat::V3, user, &InboundBody::Text(text.to_owned()))
    }

    /// A delivery receipt.
    pub fn status(&self, format: StatusFormat, update: &StatusUpdate) -> WebhookPayload {
        let legacy = format == StatusFormat::V8;
        let mut status = json!({
            "state": update.state,
            "timestamp": timestamp(update.at.unwrap_or_else(|| self.now())),
        });
        if let Some(d) = &update.detail {
            status["detail"] = json!(d);
        }
        if let Some((code, message)) = &update.error {
            status["errorCode"] = json!(code);
            status["errorMessage"] = json!(message);
        }
        let mut payload = json!({
            "umid": update.umid,
            "subAccountId": self.sub_account_id,
            "channel": self.channel_name(),
            "status": status,
        });
        if let Some(id) = &update.client_message_id {
            payload["clientMessageId"] = json!(id);
        }
        if let Some(user) = &update.user {
            // Early WhatsApp receipts of a message sent by number carry no BSUID.
            let early = matches!(update.state.as_str(), "queued")
                || update.detail.as_deref() == Some("delivered_to_operator");
            let mut user = user.clone();
            if early && !legacy && user.msisdn.is_some() {
                user.channel_user_id = None;
            }
            payload["user"] = user.json(legacy, false);
        }
        if self.channel == EightByEightChannel::Whatsapp {
            let mut whatsapp = Map::new();
            if let Some(code) = &update.whatsapp_error {
                whatsapp.insert("providerErrorCode".into(), json!(code));
            }
            if matches!(update.state.as_str(), "sent" | "delivered" | "read") {
                whatsapp.insert("pricingCategory".into(), json!("service"));
            }
            if !whatsapp.is_empty() {
                payload["whatsapp"] = Value::Object(whatsapp);
            }
            if !legacy && update.state == "queued" {
                payload["outboundContent"] = json!({
                    "channel": "whatsapp",
                    "contentType": "text",
                    "body": { "text": "(emulated outbound content)" },
                });
            }
        }
        let mut body = json!({
            "namespace": "ChatApps",
            "eventType": "outbound_message_status_changed",
            "description": "ChatApps outbound message delivery receipt",
            "payload": payload,
        });
        if !legacy {
            body["version"] = json!(9);
        }
        WebhookPayload {
            umid: update.umid.clone(),
            body,
        }
    }

    /// A message the business sent from the WhatsApp Business App.
    pub fn external_app_message(
        &self,
        format: StatusFormat,
        user: &WebhookUser,
        text: &str,
    ) -> WebhookPayload {
        let umid = uuid::Uuid::new_v4().to_string();
        let mut body = json!({
            "namespace": "ChatApps",
            "eventType": "external_app_message",
            "description": "External App Message",
            "payload": {
                "umid": umid,
                "subAccountId": self.sub_account_id,
                "timestamp": timestamp(self.now()),
                "channel": self.channel_name(),
                "user": user.json(format == StatusFormat::V8, false),
                "type": "Text",
                "content": { "text": text },
            },
        });
        if format == StatusFormat::V9 {
            body["version"] = json!(9);
        }
        WebhookPayload { umid, body }
    }

    /// One payload of each documented variant, named: inbound v2 and v3 (text, each media
    /// type, location, button and list replies, Flow and call-permission replies, a
    /// BSUID-only user), receipts v8 and v9 for each state, and the Business App echo.
    pub fn documented_variants(&self) -> Vec<(String, WebhookPayload)> {
        let phone = WebhookUser::phone("+6591234567").with_name("Mei");
        let full = phone
            .clone()
            .with_bsuid("SG.1349120865530274")
            .with_username("mei.tan");
        let hidden = WebhookUser::bsuid("SG.998877665544").with_username("anon.user");
        let bodies = [
            ("text", InboundBody::Text("Hello, is anyone there?".into())),
            (
                "image",
                InboundBody::Media {
                    kind: MediaKind::Image,
                    url: "https://media.example.invalid/in/photo.jpg?sig=abc".into(),
                    caption: Some("my receipt".into()),
                },
            ),
            (
                "audio",
                InboundBody::Media {
                    kind: MediaKind::Audio,
                    url: "https://media.example.invalid/in/voice.ogg?sig=abc".into(),
                    caption: None,
                },
            ),
            (
                "video",
                InboundBody::Media {
                    kind: MediaKind::Video,
                    url: "https://media.example.invalid/in/clip.mp4?sig=abc".into(),
                    caption: None,
                },
            ),
            (
                "file",
                InboundBody::Media {
                    kind: MediaKind::File,
                    url: "https://media.example.invalid/in/invoice.pdf?sig=abc".into(),
                    caption: Some("invoice".into()),
                },
            ),
            (
                "location",
                InboundBody::Location {
                    latitude: 1.2834,
                    longitude: 103.8607,
                },
            ),
            (
                "button_reply",
                InboundBody::ButtonReply {
                    id: "btn-yes".into(),
                    title: "Yes".into(),
                },
            ),
            (
                "list_reply",
                InboundBody::ListReply {
                    id: "slot-2".into(),
                    title: "Monday 2 pm".into(),
                    description: Some("2:00 PM - 3:00 PM".into()),
                },
            ),
            (
                "nfm_reply",
                InboundBody::FlowReply {
                    response_json: "{\"flow_token\":\"t-1\"}".into(),
                },
            ),
            (
                "call_permission_reply",
                InboundBody::CallPermissionReply { accept: true },
            ),
        ];
        let mut out = Vec::new();
        for (name, body) in &bodies {
            out.push((
                format!("inbound_v2_{name}"),
                self.inbound(InboundFormat::V2, &phone, body),
            ));
            out.push((
                format!("inbound_v3_{name}"),
                self.inbound(InboundFormat::V3, &full, body),
            ));
        }
        if self.channel == EightByEightChannel::Whatsapp {
            out.push((
                "inbound_v3_bsuid_only".into(),
                self.inbound_text(&hidden, "I hide my number"),
            ));
        }
        let states: [ReceiptCase; 7] = [
            ("queued", None, None),
            ("sent", None, None),
            ("delivered", Some("delivered_to_operator"), None),
            ("delivered", Some("delivered_to_recipient"), None),
            ("read", None, None),
            (
                "undelivered",
                Some("undelivered_to_recipient"),
                Some((1022, "Message window expired")),
            ),
            (
                "rejected",
                Some("rejected_by_operator"),
                Some((15, "Invalid destination")),
            ),
        ];
        for (format, tag) in [(StatusFormat::V8, "v8"), (StatusFormat::V9, "v9")] {
            for (state, detail, error) in states {
                let update = StatusUpdate {
                    umid: uuid::Uuid::new_v4().to_string(),
                    client_message_id: Some("byocd-msg-0001".into()),
                    user: Some(full.clone()),
                    state: state.into(),
                    detail: detail.map(str::to_owned),
                    error: error.map(|(c, m)| (c, m.to_owned())),
                    whatsapp_error: error.map(|_| "131047".to_owned()),
                    at: None,
                };
                let name = match detail {
                    Some(d) => format!("status_{tag}_{state}_{d}"),
                    None => format!("status_{tag}_{state}"),
                };
                out.push((name, self.status(format, &update)));
            }
            out.push((
                format!("external_app_message_{tag}"),
                self.external_app_message(format, &full, "Sent from the Business App"),
            ));
        }
        out
    }

    /// POSTs `payload` to `url` with `authorization` as the `Authorization` header (none when
    /// `None`); returns the HTTP status.
    pub async fn post(
        &self,
        url: &str,
        authorization: Option<&str>,
        payload: &WebhookPayload,
    ) -> Result<u16, reqwest::Error> {
        self.post_raw(url, authorization, payload.to_bytes()).await
    }

    /// POSTs any bytes as `application/json` (for malformed bodies).
    pub async fn post_raw(
        &self,
        url: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> Result<u16, reqwest::Error> {
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(a) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, a);
        }
        Ok(request.send().await?.status().as_u16())
    }
}

/// A documented receipt: state, detail, error code and message.
type ReceiptCase = (
    &'static str,
    Option<&'static str>,
    Option<(i64, &'static str)>,
);

/// 8x8's time format: `2026-07-03T03:23:21.90Z`.
fn timestamp(at: DateTime<Utc>) -> String {
    super::format_time(at)
}
