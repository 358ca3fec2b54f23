//! Messaging providers: 8x8 Chat Apps and Kaleyra RCS.
//!
//! A provider does two things:
//!
//! - **Webhooks in.** [`Provider::authenticate`] checks a webhook's credentials (compared in
//!   constant time) and source network; [`Provider::parse_webhook`] turns its body into
//!   normalised [`InboundEvent`]s. Parsing is a pure function of the bytes, so it can be fuzzed,
//!   and it never panics: a body it cannot read is a [`ParseError`] that the HTTP layer
//!   quarantines.
//! - **Calls out.** Send text, send media, send a typing indicator, mark a message read — each
//!   enforcing the provider's own rules before calling (8x8 typing only within two hours of the
//!   end user's last message; Kaleyra `composing` to an E.164 number with `+`). Failures come
//!   back as a [`ProviderError`] with a class (retryable, permanent, authorisation), the
//!   provider's code and message, and any `Retry-After`.
//!
//! Both providers implement the [`Provider`] trait; [`AnyProvider`] picks one per channel.

pub mod eightbyeight;
pub mod identity;
pub mod kaleyra;

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::identity::{E164, EndUser};

/// How long after the end user's last message 8x8 accepts a typing event.
pub const TYPING_WINDOW: chrono::Duration = chrono::Duration::hours(2);

/// One normalised event carried by a webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InboundEvent {
    /// The end user sent a message.
    Message(InboundMessage),
    /// A delivery or read receipt of a message we sent, or its failure.
    Receipt(Receipt),
    /// The end user started typing (Kaleyra `COMPOSING`).
    Typing(Typing),
    /// The end user subscribed or unsubscribed (Kaleyra `SUBSCRIBE` / `UNSUBSCRIBE`).
    Subscription(Subscription),
    /// An event that is recorded and not relayed (8x8 `external_app_message`).
    Recorded(Recorded),
}

impl InboundEvent {
    /// The key that identifies this event across the provider's retries (8x8 `umid`, Kaleyra
    /// `eventId`, or the message id where there is no event id).
    pub fn event_key(&self) -> &str {
        match self {
            Self::Message(e) => &e.event_key,
            Self::Receipt(e) => &e.event_key,
            Self::Typing(e) => &e.event_key,
            Self::Subscription(e) => &e.event_key,
            Self::Recorded(e) => &e.event_key,
        }
    }
}

/// A message from the end user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundMessage {
    /// Dedupe key.
    pub event_key: String,
    /// The provider's id of the message (8x8 `umid`, Kaleyra `messageId`): what typing and
    /// read calls refer to.
    pub provider_message_id: String,
    /// Who sent it.
    pub user: EndUser,
    /// When the provider received it.
    pub received_at: DateTime<Utc>,
    /// What it says.
    pub content: InboundContent,
    /// The provider message id it replies to, if any.
    pub reply_to: Option<String>,
}

/// What an end user's message holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboundContent {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A file at a URL that the provider hosts (8x8's are pre-signed and expire in 24 hours).
    Media {
        /// Image, audio, video or file.
        media: MediaKind,
        /// Where to download it.
        url: String,
        /// MIME type, if the provider said.
        mime_type: Option<String>,
        /// File name, if the provider said.
        file_name: Option<String>,
        /// Caption.
        caption: Option<String>,
    },
    /// A location.
    Location {
        /// Latitude.
        latitude: f64,
        /// Longitude.
        longitude: f64,
        /// Place name.
        name: Option<String>,
        /// Address.
        address: Option<String>,
    },
    /// A reply to buttons or a list.
    InteractiveReply {
        /// The option's id.
        id: Option<String>,
        /// The option's title as the end user saw it.
        title: String,
    },
}

/// Kinds of media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A picture.
    Image,
    /// Sound.
    Audio,
    /// Video.
    Video,
    /// Any other file.
    File,
}

/// What happened to a message we sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    /// Dedupe key.
    pub event_key: String,
    /// The provider's id of the message we sent (8x8 `umid`, Kaleyra `messageId`).
    pub provider_message_id: String,
    /// Our own reference echoed back (8x8 `clientMessageId`, Kaleyra `ref`), if any.
    pub client_reference: Option<String>,
    /// The end user, when the receipt names one.
    pub user: Option<EndUser>,
    /// The new status.
    pub status: DeliveryStatus,
    /// The provider's error, for failures.
    pub error: Option<ProviderCode>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Delivery states, across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Accepted by the provider, not yet sent.
    Queued,
    /// Sent to the operator / carrier.
    Sent,
    /// Delivered to the end user's device.
    Delivered,
    /// Read by the end user.
    Read,
    /// Could not be delivered.
    Undelivered,
    /// Refused by the provider or operator.
    Rejected,
    /// Expired and revoked before delivery (Kaleyra `TTL_EXPIRATION_REVOKED`).
    Expired,
    /// Failed (Kaleyra `ERROR`).
    Failed,
}

impl DeliveryStatus {
    /// Whether the message will not reach the end user (Salesforce learns through
    /// `MessageDeliveryFailed`).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::Undelivered | Self::Rejected | Self::Expired | Self::Failed
        )
    }
}

/// A provider's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderCode {
    /// The code, as the provider writes it.
    pub code: String,
    /// The message.
    pub message: Option<String>,
}

/// The end user started typing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Typing {
    /// Dedupe key.
    pub event_key: String,
    /// Who.
    pub user: EndUser,
    /// When.
    pub at: DateTime<Utc>,
}

/// The end user subscribed or unsubscribed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    /// Dedupe key.
    pub event_key: String,
    /// Who.
    pub user: EndUser,
    /// `true` for SUBSCRIBE, `false` for UNSUBSCRIBE.
    pub subscribed: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// An event kept for the record only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    /// Dedupe key.
    pub event_key: String,
    /// The provider's event type.
    pub kind: String,
    /// The end user, if named.
    pub user: Option<EndUser>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Why a webhook was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No credentials where the channel expects them.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// Credentials that do not match.
    #[error("wrong {0} header")]
    Wrong(&'static str),
    /// The sender's address is not in the channel's allow-list.
    #[error("source address {0} is not in the channel's allowed networks")]
    SourceNotAllowed(IpAddr),
}

/// Why a webhook body could not be turned into events. The HTTP layer keeps the body in
/// quarantine with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// What was wrong, naming the field where there is one.
    pub reason: String,
}

impl ParseError {
    /// A parse error with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// What a failed provider call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorClass {
    /// Transient (429, 5xx — Kaleyra 500/502/503/504 included —, 8x8 code 2000, no answer):
    /// retry with backoff.
    Retryable,
    /// The request is wrong or the recipient unreachable (8x8 1xxx/3xxx, Kaleyra 14xx): do not
    /// retry; report the failure.
    Permanent,
    /// Our credentials are refused (401/403): the channel's configuration must change.
    Authorisation,
}

/// A failed provider call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{provider} {operation}: {class:?}{}{}{}", status.map(|s| format!(", HTTP {s}")).unwrap_or_default(), code.as_ref().map(|c| format!(", code {c}")).unwrap_or_default(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct ProviderError {
    /// `8x8` or `kaleyra`.
    pub provider: &'static str,
    /// What was attempted (`send text`, `typing`, …).
    pub operation: &'static str,
    /// What it means.
    pub class: ProviderErrorClass,
    /// HTTP status, if there was an answer.
    pub status: Option<u16>,
    /// The provider's error code.
    pub code: Option<String>,
    /// The provider's message, or what went wrong on our side.
    pub message: Option<String>,
    /// How long the provider asked us to wait.
    pub retry_after: Option<Duration>,
}

/// A message the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// The provider's id for it (8x8 `umid`, Kaleyra `messageId`): receipts refer to it.
    pub provider_message_id: String,
}

/// Media to send to an end user.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundMedia {
    /// Already at a public HTTPS URL.
    Url {
        /// The URL.
        url: String,
        /// MIME type.
        mime_type: String,
        /// File name.
        file_name: Option<String>,
    },
    /// Bytes that the provider must host first (8x8 file upload). Kaleyra hosts nothing: byocd
    /// serves the file itself and sends a [`OutboundMedia::Url`].
    Bytes {
        /// The file.
        bytes: bytes::Bytes,
        /// MIME type.
        mime_type: String,
        /// File name.
        file_name: String,
    },
}

/// A message with choices in a provider's native form, already within its limits
/// (`domain::choices` decides the form and applies the truncation rules of docs/providers.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum RichMessage {
    /// WhatsApp interactive reply buttons (8x8 `interactive` of type `button`).
    Buttons {
        /// The question.
        body: String,
        /// One to three buttons.
        buttons: Vec<RichChoice>,
    },
    /// A WhatsApp interactive list message, one section (8x8 `interactive` of type `list`).
    List {
        /// The question.
        body: String,
        /// The label of the button that opens the list.
        button: String,
        /// One to ten rows.
        rows: Vec<RichChoice>,
    },
    /// RCS text with suggested replies (8x8 RCS and Kaleyra `suggestions`).
    Suggestions {
        /// The text.
        text: String,
        /// The suggested replies.
        replies: Vec<RichChoice>,
    },
    /// An RCS standalone rich card for a rep's link (8x8 `richCard`, Kaleyra
    /// `richCardStandalone`), built by `domain::links`.
    Card(LinkCard),
    /// A rep's carousel on RCS, built by `domain::carousel`: two to ten cards as a carousel
    /// (8x8 `carousel`, Kaleyra `richCardCarousel`), one card as a standalone rich card.
    Carousel(Vec<Card>),
}

/// A vertical rich card of a carousel: an image, a title, an optional description, and its
/// suggestions (at most four).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The card's title (at most 200 characters).
    pub title: String,
    /// The card's description (at most 2,000 characters).
    pub description: Option<String>,
    /// The card's image: a public https URL.
    pub image_url: String,
    /// Its suggested replies and actions, in order.
    pub suggestions: Vec<CardSuggestion>,
}

/// One suggestion of a [`Card`]: a reply (its postback data comes back when tapped), or an
/// action that opens `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSuggestion {
    /// What the end user sees (at most 25 characters).
    pub text: String,
    /// The postback data.
    pub postback: String,
    /// The URL an action opens; `None` for a reply.
    pub url: Option<String>,
}

impl CardSuggestion {
    /// The RCS suggestion object both 8x8 and Kaleyra take: `{reply: {text, postbackData}}`,
    /// or `{action: {text, postbackData, openUrlAction: {url}}}`.
    pub fn rcs_json(&self) -> serde_json::Value {
        match &self.url {
            Some(url) => serde_json::json!({ "action": {
                "text": self.text, "postbackData": self.postback, "openUrlAction": { "url": url },
            } }),
            None => {
                serde_json::json!({ "reply": { "text": self.text, "postbackData": self.postback } })
            }
        }
    }
}

/// A vertical rich card: an image, a title, an optional description, one action opening a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCard {
    /// The card's title (at most 200 characters).
    pub title: String,
    /// The card's description (at most 2,000 characters).
    pub description: Option<String>,
    /// The card's image: a public https URL.
    pub image_url: String,
    /// What the action opens.
    pub url: String,
    /// The action's label (at most 25 characters).
    pub open_label: String,
    /// The action's postback data.
    pub open_postback: String,
}

/// One button, row or suggested reply: the id that comes back when the end user picks it,
/// and what they see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RichChoice {
    /// Comes back in the reply (8x8 `button_reply.id` / `list_reply.id`, RCS postback data).
    pub id: String,
    /// Shown to the end user.
    pub title: String,
}

/// How a provider takes a file to send ([`Provider::media_form`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaForm {
    /// The file's bytes ([`OutboundMedia::Bytes`]), which the provider hosts itself.
    Bytes,
    /// A public HTTPS URL it fetches the file from ([`OutboundMedia::Url`]).
    Url,
}

/// The end user's last message, for the 8x8 typing window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastInbound {
    /// Its provider message id (8x8 `umid`).
    pub provider_message_id: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// What became of a typing indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TypingOutcome {
    /// The provider accepted it.
    Sent,
    /// Not sent, by the provider's rules; the caller audits the drop.
    Dropped {
        /// Why.
        reason: String,
    },
}

/// What became of a read mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReadOutcome {
    /// The provider accepted it.
    Marked,
    /// The channel has no read marks (8x8 RCS, Kaleyra).
    NotSupported,
}

/// The operations byocd needs from a messaging provider.
#[allow(async_fn_in_trait)]
pub trait Provider {
    /// `8x8` or `kaleyra`.
    fn name(&self) -> &'static str;

    /// Checks a webhook's credentials and source address.
    fn authenticate(&self, headers: &http::HeaderMap, peer: IpAddr) -> Result<(), AuthFailure>;

    /// Turns a webhook body into normalised events. Never panics.
    fn parse_webhook(&self, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError>;

    /// Whether [`Provider::send_media`] takes a file's bytes or a public URL.
    fn media_form(&self) -> MediaForm;

    /// Sends text; `client_reference` is echoed back on receipts where the provider supports it.
    async fn send_text(
        &self,
        to: &EndUser,
        text: &str,
        client_reference: &str,
    ) -> Result<Sent, ProviderError>;

    /// Sends media with an optional caption.
    async fn send_media(
        &self,
        to: &EndUser,
        media: &OutboundMedia,
        caption: Option<&str>,
        client_reference: &str,
    ) -> Result<Sent, ProviderError>;

    /// Sends a message with choices in the channel's native form.
    async fn send_rich(
        &self,
        to: &EndUser,
        message: &RichMessage,
        client_reference: &str,
    ) -> Result<Sent, ProviderError>;

    /// Shows the end user that a rep is typing, where the provider's rules allow it at `now`.
    async fn send_typing(
        &self,
        to: &EndUser,
        last_inbound: Option<&LastInbound>,
        now: DateTime<Utc>,
    ) -> Result<TypingOutcome, ProviderError>;

    /// Marks the end user's message read, where the channel supports it.
    async fn mark_read(&self, provider_message_id: &str) -> Result<ReadOutcome, ProviderError>;
}

/// The provider of a channel.
#[derive(Debug, Clone)]
pub enum AnyProvider {
    /// 8x8 Chat Apps.
    EightByEight(eightbyeight::EightByEight),
    /// Kaleyra RCS.
    Kaleyra(kaleyra::Kaleyra),
}

impl AnyProvider {
    /// The provider a channel's configuration names.
    pub fn for_channel(channel: &crate::config::ChannelConfig, http: reqwest::Client) -> Self {
        match &channel.provider {
            crate::config::Provider::EightByEight(account) => {
                Self::EightByEight(eightbyeight::EightByEight::new(account, http))
            }
            crate::config::Provider::Kaleyra(account) => {
                Self::Kaleyra(kaleyra::Kaleyra::new(account, http))
            }
        }
    }
}

impl AnyProvider {
    /// A harmless authenticated call that proves the channel's provider credentials
    /// (`byocd doctor`): `Ok` when the provider accepted them.
    pub async fn check_credentials(&self) -> Result<(), ProviderError> {
        match self {
            Self::EightByEight(p) => p.check_credentials().await,
            Self::Kaleyra(p) => p.check_credentials().await,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $call:expr) => {
        match $self {
            AnyProvider::EightByEight($p) => $call,
            AnyProvider::Kaleyra($p) => $call,
        }
    };
}

impl Provider for AnyProvider {
    fn name(&self) -> &'static str {
        dispatch!(self, p => p.name())
    }
    fn authenticate(&self, headers: &http::HeaderMap, peer: IpAddr) -> Result<(), AuthFailure> {
        dispatch!(self, p => p.authenticate(headers, peer))
    }
    fn parse_webhook(&self, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
        dispatch!(self, p => p.parse_webhook(body))
    }

    fn media_form(&self) -> MediaForm {
        dispatch!(self, p => p.media_form())
    }
    async fn send_text(
        &self,
        to: &EndUser,
        text: &str,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        dispatch!(self, p => p.send_text(to, text, client_reference).await)
    }
    async fn send_media(
        &self,
        to: &EndUser,
        media: &OutboundMedia,
        caption: Option<&str>,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        dispatch!(self, p => p.send_media(to, media, caption, client_reference).await)
    }
    async fn send_rich(
        &self,
        to: &EndUser,
        message: &RichMessage,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        dispatch!(self, p => p.send_rich(to, message, client_reference).await)
    }
    async fn send_typing(
        &self,
        to: &EndUser,
        last_inbound: Option<&LastInbound>,
        now: DateTime<Utc>,
    ) -> Result<TypingOutcome, ProviderError> {
        dispatch!(self, p => p.send_typing(to, last_inbound, now).await)
    }
    async fn mark_read(&self, provider_message_id: &str) -> Result<ReadOutcome, ProviderError> {
        dispatch!(self, p => p.mark_read(provider_message_id).await)
    }
}

/// Compares two byte strings in time that depends only on their lengths (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Checks a webhook's `Authorization` header against the channel's
/// [`WebhookAuthentication`](crate::config::WebhookAuthentication), in constant time. Both
/// providers send a fixed value there and sign nothing, so the check needs the headers only:
/// it runs before the body is read.
pub fn check_authorization(
    authentication: &crate::config::WebhookAuthentication,
    headers: &http::HeaderMap,
) -> Result<(), AuthFailure> {
    const HEADER: &str = "Authorization";
    let expected = match authentication {
        crate::config::WebhookAuthentication::Authorization(secret) => secret,
        // Explicitly configured, and warned about at every start and reload.
        crate::config::WebhookAuthentication::None => return Ok(()),
    };
    let Some(given) = headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing(HEADER));
    };
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(AuthFailure::Wrong(HEADER))
    }
}

/// The `Retry-After` of an answer, in seconds.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
