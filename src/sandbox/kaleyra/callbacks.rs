//! Kaleyra RCS callbacks as Kaleyra sends them, and a sender that posts them to a webhook.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// The two shapes Kaleyra posts callbacks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackFormat {
    /// The event's fields at the top level (`{type, eventId, from, …}`).
    Flat,
    /// `{code, message, data: {type, eventId, from, …}, error: {…}}`.
    Wrapped,
}

impl CallbackFormat {
    /// Both formats.
    pub const ALL: [Self; 2] = [Self::Flat, Self::Wrapped];

    /// `flat` or `wrapped`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Wrapped => "wrapped",
        }
    }
}

/// What a callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackKind {
    /// `USER_MESSAGE`: the end user sent text.
    UserMessage {
        /// The text.
        text: String,
    },
    /// `SUBSCRIBE`: the end user opted in (START / SUBSCRIBE).
    Subscribe,
    /// `UNSUBSCRIBE`: the end user opted out (STOP / UNSUBSCRIBE).
    Unsubscribe,
    /// `SENT`: submitted to the carrier.
    Sent,
    /// `DELIVERED`: on the handset.
    Delivered,
    /// `READ`: read on the handset.
    Read,
    /// `COMPOSING`: the end user is typing.
    Composing,
    /// `TTL_EXPIRATION_REVOKED`: expired before delivery and revoked.
    TtlExpirationRevoked,
    /// `ERROR`: not delivered.
    Error {
        /// `error_code` of the error object, if any.
        error_code: Option<String>,
        /// `error_message` of the error object, if any.
        error_message: Option<String>,
    },
}

impl CallbackKind {
    /// One of each of the nine kinds (text `Hello`, an error with code and message).
    pub fn samples() -> Vec<Self> {
        vec![
            Self::UserMessage {
                text: "Hello".to_owned(),
            },
            Self::Subscribe,
            Self::Unsubscribe,
            Self::Sent,
            Self::Delivered,
            Self::Read,
            Self::Composing,
            Self::TtlExpirationRevoked,
            Self::Error {
                error_code: Some("UNREACHABLE".to_owned()),
                error_message: Some("Recipient is not reachable over RCS".to_owned()),
            },
        ]
    }

    /// The callback's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::UserMessage { .. } => "USER_MESSAGE",
            Self::Subscribe => "SUBSCRIBE",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Read => "READ",
            Self::Composing => "COMPOSING",
            Self::TtlExpirationRevoked => "TTL_EXPIRATION_REVOKED",
            Self::Error { .. } => "ERROR",
        }
    }

    /// Whether Kaleyra's samples of this kind carry an `eventId` (the opt-in and opt-out
    /// ones do not).
    pub fn has_event_id(&self) -> bool {
        !matches!(self, Self::Subscribe | Self::Unsubscribe)
    }

    /// `code` and `message` of the wrapped format. `4000` (delivery reports), `4006`
    /// (unsubscription) and `4007` (mobile-originated message) are documented; `4005` for a
    /// subscription is this emulator's guess.
    pub fn wrapper(&self) -> (&'static str, &'static str) {
        match self {
            Self::UserMessage { .. } => (
                "4007",
                "Mobile-originated message received from the carrier",
            ),
            Self::Subscribe => ("4005", "Subscription request received from the carrier"),
            Self::Unsubscribe => ("4006", "Unsubscription request received from the carrier"),
            Self::Sent => ("4000", "Message successfully submitted to the carrier"),
            Self::Delivered => ("4000", "Message delivered to the handset"),
            Self::Read => ("4000", "Message read on the handset"),
            Self::Composing => ("4000", "Recipient started composing a reply"),
            Self::TtlExpirationRevoked => {
                ("4000", "Message expired before delivery and was revoked")
            }
            Self::Error { .. } => ("4000", "Message undelivered"),
        }
    }
}

/// One callback, with every member Kaleyra fills in.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// What it reports.
    pub kind: CallbackKind,
    /// `eventId`, if the callback has one.
    pub event_id: Option<String>,
    /// `from`: the end user's number, digits without `+`.
    pub from: String,
    /// `to`: the agent's service code.
    pub to: String,
    /// `sentAt`.
    pub sent_at: DateTime<Utc>,
    /// `messageId`: of the end user's message (MO) or of the message reported on (DR).
    pub message_id: String,
    /// `ref` given when the message was sent (delivery reports), if any.
    pub reference: Option<String>,
    /// `carrierId` (wrapped format only), if any.
    pub carrier_id: Option<String>,
}

impl Callback {
    /// A callback of `kind` from `end_user` (with or without `+`) to `agent_id`, now, with a
    /// fresh `messageId` and, where Kaleyra's samples have one, a fresh `eventId`.
    pub fn new(kind: CallbackKind, end_user: &str, agent_id: &str) -> Self {
        let now = Utc::now();
        let sent_at = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        Self {
            event_id: kind
                .has_event_id()
                .then(|| uuid::Uuid::new_v4().to_string()),
            kind,
            from: end_user.trim_start_matches('+').to_owned(),
            to: agent_id.to_owned(),
            sent_at,
            message_id: uuid::Uuid::new_v4().to_string(),
            reference: None,
            carrier_id: None,
        }
    }

    /// The same callback about message `message_id`.
    pub fn with_message_id(mut self, message_id: &str) -> Self {
        self.message_id = message_id.to_owned();
        self
    }

    /// The same callback with `ref`.
    pub fn with_reference(mut self, reference: &str) -> Self {
        self.reference = Some(reference.to_owned());
        self
    }

    /// The same callback with this `eventId` (`None`: without).
    pub fn with_event_id(mut self, event_id: Option<&str>) -> Self {
        self.event_id = event_id.map(str::to_owned);
        self
    }

    /// The same callback at `sent_at`.
    pub fn at(mut self, sent_at: DateTime<Utc>) -> Self {
        self.sent_at = sent_at;
        self
    }

    /// The same callback with `carrierId`.
    pub fn with_carrier(mut self, carrier_id: &str) -> Self {
        self.carrier_id = Some(carrier_id.to_owned());
        self
    }

    /// The callback's JSON in `format`.
    pub fn to_json(&self, format: CallbackFormat) -> Value {
        let mut event = Map::new();
        event.insert("type".into(), json!(self.kind.type_name()));
        if let Some(id) = &self.event_id {
            event.insert("eventId".into(), json!(id));
        }
        event.insert("from".into(), json!(self.from));
        event.insert("to".into(), json!(self.to));
        event.insert(
            "sentAt".into(),
            json!(self.sent_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        event.insert("messageId".into(), json!(self.message_id));
        if let Some(reference) = &self.reference {
            event.insert("ref".into(), json!(reference));
        }
        if let CallbackKind::UserMessage { text } = &self.kind {
            event.insert(
                "userMessage".into(),
                json!({ "type": "TEXT", "text": text }),
            );
        }
        let error = match &self.kind {
            CallbackKind::Error {
                error_code,
                error_message,
            } => {
                let mut e = Map::new();
                if let Some(c) = error_code {
                    e.insert("error_code".into(), json!(c));
                }
                if let Some(m) = error_message {
                    e.insert("error_message".into(), json!(m));
                }
                e
            }
            _ => Map::new(),
        };
        match format {
            CallbackFormat::Flat => {
                if !error.is_empty() {
                    event.insert("error".into(), Value::Object(error));
                }
                Value::Object(event)
            }
            CallbackFormat::Wrapped => {
                if let Some(carrier) = &self.carrier_id {
                    event.insert("carrierId".into(), json!(carrier));
                }
                let (code, message) = self.kind.wrapper();
                json!({
                    "code": code,
                    "message": message,
                    "data": Value::Object(event),
                    "error": Value::Object(error),
                })
            }
        }
    }

    /// The callback's body in `format`.
    pub fn to_bytes(&self, format: CallbackFormat) -> Vec<u8> {
        serde_json::to_vec(&self.to_json(format)).unwrap_or_default()
    }
}

/// Posts callbacks to a webhook URL, as Kaleyra does.
#[derive(Debug, Clone)]
pub struct KaleyraCallbacks {
    http: reqwest::Client,
    url: String,
    authorization: Option<String>,
}

impl KaleyraCallbacks {
    /// A sender to `url` that adds `Authorization: <authorization>` when given (the value of
    /// a callback profile's header).
    pub fn new(url: impl Into<String>, authorization: Option<&str>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            http,
            url: url.into(),
            authorization: authorization.map(str::to_owned),
        }
    }

    /// Every documented variant — the nine kinds of [`CallbackKind::samples`], flat and
    /// wrapped — from `end_user` to `agent_id`. Delivery reports carry `ref` `ref-<kind>` and
    /// wrapped ones `carrierId` `VZ`.
    pub fn every_variant(end_user: &str, agent_id: &str) -> Vec<(Callback, CallbackFormat)> {
        CallbackKind::samples()
            .into_iter()
            .flat_map(|kind| {
                CallbackFormat::ALL.into_iter().map(move |format| {
                    let is_report = !matches!(
                        kind,
                        CallbackKind::UserMessage { .. }
                            | CallbackKind::Subscribe
                            | CallbackKind::Unsubscribe
                            | CallbackKind::Composing
                    );
                    let mut callback = Callback::new(kind.clone(), end_user, agent_id);
                    if is_report {
                        callback = callback
                            .with_reference(&format!("ref-{}", kind.type_name().to_lowercase()));
                    }
                    if format == CallbackFormat::Wrapped {
                        callback = callback.with_carrier("VZ");
                    }
                    (callback, format)
                })
            })
            .collect()
    }

    /// Posts `callback` in `format`; returns the HTTP status answered.
    pub async fn send(
        &self,
        callback: &Callback,
        format: CallbackFormat,
    ) -> Result<u16, reqwest::Error> {
        self.send_raw(callback.to_bytes(format)).await
    }

    /// Posts `body` as JSON; returns the HTTP status answered.
    pub async fn send_json(&self, body: &Value) -> Result<u16, reqwest::Error> {
        self.send_raw(serde_json::to_vec(body).unwrap_or_default())
            .await
    }

    /// Posts `body` as is, with `Content-Type: application/json` (for malformed bodies);
    /// returns the HTTP status answered.
    pub async fn send_raw(&self, body: impl Into<Vec<u8>>) -> Result<u16, reqwest::Error> {
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.into());
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        Ok(request.send().await?.status().as_u16())
    }
}
