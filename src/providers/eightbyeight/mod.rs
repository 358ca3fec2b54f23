//! The 8x8 Chat Apps provider (WhatsApp and RCS sub-accounts).
//!
//! - Webhooks: the `Authorization` value configured for the sub-account, compared in constant
//!   time, and an optional allow-list of source networks; bodies are read by [`webhook`].
//! - Calls (`Authorization: Bearer <api key>`, under `{base_url}/api/v1/subaccounts/{sa}`):
//!   `POST /messages` (text; media by URL), `POST /files` (multipart `file`) for media given as
//!   bytes, then `POST /messages` with the hosted URL `{base_url}/files/{fileName}?token={token}`
//!   (the form 8x8's media-hosting guide gives); `POST /events` for typing, only within
//!   [`TYPING_WINDOW`] of the end user's last message; `POST /messages/{umid}/read` on WhatsApp; `GET /messages/{umid}` of a random umid to prove the
//!   credentials (`byocd doctor`).
//! - Errors: the `{code, message, errorId, timestamp}` body is read; 408, 429 (with
//!   `Retry-After`), 5xx and code 2000 are retryable, 401/403 and codes 1200/1201 are
//!   authorisation failures, anything else (1xxx, 3xxx, 7001 …) is permanent and carries 8x8's
//!   message. Transport failures and timeouts are retryable. The API key never appears in an
//!   error or a log line.

pub mod webhook;

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AuthFailure, EndUser, InboundEvent, LastInbound, MediaForm, OutboundMedia, ParseError,
    Provider, ProviderError, ProviderErrorClass, ReadOutcome, RichMessage, Sent, TYPING_WINDOW,
    TypingOutcome, retry_after,
};
use crate::config::{EightByEightAccount, EightByEightChannel, IpNetwork, SecretFile};

/// The provider's name in errors, logs and the audit trail.
pub const NAME: &str = "8x8";
/// Longest `clientMessageId` 8x8 accepts.
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 50;
/// The longest a JSON call may take, whatever the client's own timeouts.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a file upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// 8x8's code for an internal error (retryable whatever the HTTP status).
const CODE_INTERNAL: i64 = 2000;
/// 8x8's codes for refused credentials.
const CODES_AUTHORISATION: [i64; 2] = [1200, 1201];
/// Why a typing indicator is not sent when no inbound message is known.
pub const DROP_NO_INBOUND: &str = "no inbound message known";
/// Why a typing indicator is not sent when the last inbound message is too old.
pub const DROP_TOO_OLD: &str = "last inbound message is older than 2 hours";

/// The 8x8 provider of one channel (one sub-account).
#[derive(Debug, Clone)]
pub struct EightByEight {
    sub_account_id: String,
    channel: EightByEightChannel,
    base_url: String,
    api_key: SecretFile,
    webhook_authorization: crate::config::WebhookAuthentication,
    allow: Vec<IpNetwork>,
    http: reqwest::Client,
}

impl EightByEight {
    /// A client for `account`, sending with `http`.
    pub fn new(account: &EightByEightAccount, http: reqwest::Client) -> Self {
        Self {
            sub_account_id: account.sub_account_id.clone(),
            channel: account.channel,
            base_url: account.base_url.trim_end_matches('/').to_owned(),
            api_key: account.api_key.clone(),
            webhook_authorization: account.webhook_authorization.clone(),
            allow: account.webhook_allow_networks.clone(),
            http,
        }
    }

    /// The sub-account this provider sends from.
    pub fn sub_account_id(&self) -> &str {
        &self.sub_account_id
    }

    /// WhatsApp or RCS.
    pub fn channel(&self) -> EightByEightChannel {
        self.channel
    }

    /// `channel` of a typing event.
    fn channel_name(&self) -> &'static str {
        match self.channel {
            EightByEightChannel::Whatsapp => "whatsapp",
            EightByEightChannel::Rcs => "rcs",
        }
    }

    /// `{base_url}/api/v1/subaccounts/{sa}/{tail}` with each segment percent-encoded.
    fn url(&self, tail: &[&str]) -> Result<reqwest::Url, ProviderError> {
        let mut url = reqwest::Url::parse(&self.base_url).map_err(|e| {
            local_error(
                "call",
                format!("base_url `{}` is not a URL: {e}", self.base_url),
            )
        })?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| local_error("call", "base_url cannot have a path".into()))?;
            segments
                .pop_if_empty()
                .extend(["api", "v1", "subaccounts", &self.sub_account_id])
                .extend(tail);
        }
        Ok(url)
    }

    /// The public URL of a file uploaded to 8x8's hosting.
    pub fn hosted_file_url(&self, file_name: &str, token: &str) -> Result<String, ProviderError> {
        let mut url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| local_error("upload file", format!("base_url is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| local_error("upload file", "base_url cannot have a path".into()))?
            .pop_if_empty()
            .extend(["files", file_name]);
        url.query_pairs_mut().append_pair("token", token);
        Ok(url.into())
    }

    async fn post_json(
        &self,
        operation: &'static str,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ProviderError> {
        let mut request = self
            .http
            .post(url)
            .bearer_auth(self.api_key.expose())
            .header(http::header::ACCEPT, "application/json");
        request = match body {
            Some(body) => request.json(body),
            None => request.header(http::header::CONTENT_LENGTH, "0"),
        };
        call(operation, request, CALL_TIMEOUT).await
    }

    async fn send_message(
        &self,
        operation: &'static str,
        to: &EndUser,
        kind: &str,
        content: Value,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        let user = recipient(operation, to)?;
        check_reference(operation, client_reference)?;
        let mut body = json!({ "user": user, "type": kind, "content": content });
        if !client_reference.is_empty() {
            body["clientMessageId"] = Value::String(client_reference.to_owned());
        }
        let url = self.url(&["messages"])?;
        let (_, answer) = self.post_json(operation, url, Some(&body)).await?;
        match answer.get("umid").and_then(Value::as_str) {
            Some(umid) if !umid.is_empty() => {
                tracing::debug!(umid, "8x8 accepted the message");
                Ok(Sent {
                    provider_message_id: umid.to_owned(),
                })
            }
            _ => Err(ProviderError {
                provider: NAME,
                operation,
                class: ProviderErrorClass::Permanent,
                status: None,
                code: None,
                message: Some("8x8 accepted the message but answered no umid".into()),
                retry_after: None,
            }),
        }
    }

    /// Proves the API key and the sub-account with a harmless authenticated read: the details
    /// of a message that cannot exist (`GET /messages/{umid}` with a fresh random umid). 8x8
    /// answers 404 ("not found", code 1300; its reference's example says 4018) only after it
    /// accepted the key and the sub-account; a refused key is 401 code 1200, a sub-account the
    /// key does not own code 1001.
    /// `Ok` means both were accepted; the error otherwise, as [`classify`] reads it.
    pub async fn check_credentials(&self) -> Result<(), ProviderError> {
        const OPERATION: &str = "check credentials";
        let umid = uuid::Uuid::new_v4().to_string();
        let url = self.url(&["messages", &umid])?;
        let request = || {
            self.http
                .get(url.clone())
                .bearer_auth(self.api_key.expose())
                .header(http::header::ACCEPT, "application/json")
        };
        let mut outcome = call(OPERATION, request(), CALL_TIMEOUT).await;
        // One read a second per sub-account: a second doctor run (or the daemon's own lookups)
        // within the second is answered 429; wait as asked, once.
        if let Err(e) = &outcome
            && e.status == Some(429)
        {
            let wait = e.retry_after.unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
            outcome = call(OPERATION, request(), CALL_TIMEOUT).await;
        }
        match outcome {
            Ok(_) => Ok(()),
            // 8x8's reference shows code 4018 for this 404 and its twins 1300: any 8x8 error
            // body (a code) will do; a 404 without one is not 8x8 (a wrong base URL).
            Err(e) if e.status == Some(404) && e.code.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends an approved WhatsApp template (`type: template`): `content.template` with its
    /// `name`, `language` and one `body` component whose `text` parameters are `parameters` in
    /// order (no component when there are none) — the form of 8x8's template guide. Business-
    /// initiated: allowed outside the 24-hour window.
    #[tracing::instrument(skip_all, fields(sub_account = %self.sub_account_id))]
    pub async fn send_template(
        &self,
        to: &EndUser,
        name: &str,
        language: &str,
        parameters: &[String],
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        self.send_message(
            "send template",
            to,
            "template",
            json!({ "template": template_content(name, language, parameters) }),
            client_reference,
        )
        .await
    }

    /// Uploads `bytes` to 8x8's file hosting and returns the public URL to send.
    #[tracing::instrument(skip_all, fields(sub_account = %self.sub_account_id, bytes = bytes.len()))]
    pub async fn upload(
        &self,
        bytes: bytes::Bytes,
        mime_type: &str,
        file_name: &str,
    ) -> Result<String, ProviderError> {
        const OPERATION: &str = "upload file";
        let part = reqwest::multipart::Part::stream_with_length(bytes.clone(), bytes.len() as u64)
            .file_name(file_name.to_owned())
            .mime_str(mime_type)
            .map_err(|e| local_error(OPERATION, format!("MIME type `{mime_type}`: {e}")))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let request = self
            .http
            .post(self.url(&["files"])?)
            .bearer_auth(self.api_key.expose())
            .header(http::header::ACCEPT, "application/json")
            .multipart(form);
        let (_, answer) = call(OPERATION, request, UPLOAD_TIMEOUT).await?;
        let uploaded: Uploaded = serde_json::from_value(answer).map_err(|e| ProviderError {
            provider: NAME,
            operation: OPERATION,
            class: ProviderErrorClass::Permanent,
            status: None,
            code: None,
            message: Some(format!("8x8's upload answer lacks fileName or token: {e}")),
            retry_after: None,
        })?;
        self.hosted_file_url(&uploaded.file_name, &uploaded.token)
    }
}

/// The answer of `POST /files`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Uploaded {
    file_name: String,
    token: String,
}

/// `content.template` of a template send.
pub fn template_content(name: &str, language: &str, parameters: &[String]) -> Value {
    let mut template = json!({ "name": name, "language": language });
    if !parameters.is_empty() {
        let parameters: Vec<Value> = parameters
            .iter()
            .map(|text| json!({ "type": "text", "text": text }))
            .collect();
        template["components"] = json!([{ "type": "body", "parameters": parameters }]);
    }
    template
}

/// The `user` of a send: the number when known, else the channel user id (BSUID).
fn recipient(operation: &'static str, to: &EndUser) -> Result<Value, ProviderError> {
    if let Some(msisdn) = &to.msisdn {
        Ok(json!({ "msisdn": msisdn.as_str() }))
    } else if let Some(id) = &to.channel_user_id {
        Ok(json!({ "channelUserId": id }))
    } else {
        Err(local_error(
            operation,
            "the end user has neither a phone number nor a channel user id".into(),
        ))
    }
}

/// Refuses a `clientMessageId` longer than 8x8 accepts.
fn check_reference(operation: &'static str, client_reference: &str) -> Result<(), ProviderError> {
    let chars = client_reference.chars().count();
    if chars > MAX_CLIENT_MESSAGE_ID_CHARS {
        return Err(local_error(
            operation,
            format!(
                "clientMessageId has {chars} characters; 8x8 accepts at most {MAX_CLIENT_MESSAGE_ID_CHARS}"
            ),
        ));
    }
    Ok(())
}

/// The message `type` and `content` of a message with choices: WhatsApp interactive reply
/// buttons or a one-section list (`content.interactive`, Meta's interactive object that 8x8
/// passes on), or RCS text with suggested replies (`content.suggestions`).
pub fn rich_content(message: &RichMessage) -> (&'static str, Value) {
    match message {
        RichMessage::Buttons { body, buttons } => (
            "interactive",
            json!({ "interactive": {
                "type": "button",
                "body": { "text": body },
                "action": { "buttons": buttons.iter().map(|b| json!({
                    "type": "reply",
                    "reply": { "id": b.id, "title": b.title },
                })).collect::<Vec<_>>() },
            } }),
        ),
        RichMessage::List { body, button, rows } => (
            "interactive",
            json!({ "interactive": {
                "type": "list",
                "body": { "text": body },
                "action": {
                    "button": button,
                    "sections": [{ "rows": rows.iter().map(|r| json!({
                        "id": r.id, "title": r.title,
                    })).collect::<Vec<_>>() }],
                },
            } }),
        ),
        RichMessage::Suggestions { text, replies } => (
            "text",
            json!({
                "text": text,
                "suggestions": replies.iter().map(|r| json!({
                    "reply": { "text": r.title, "postbackData": r.id },
                })).collect::<Vec<_>>(),
            }),
        ),
        // The OAS's `richCard` (RCS only): lower-case enums, media under `contentInfo`, an
        // open-URL action as the card's one suggestion.
        RichMessage::Card(card) => {
            let mut rich = json!({
                "cardOrientation": "vertical",
                "title": card.title,
                "media": { "height": "medium", "contentInfo": { "fileUrl": card.image_url } },
                "suggestions": [{ "action": {
                    "text": card.open_label,
                    "postbackData": card.open_postback,
                    "openUrlAction": { "url": card.url },
                } }],
            });
            if let Some(description) = &card.description {
                rich["description"] = json!(description);
            }
            ("richCard", json!({ "richCard": rich }))
        }
        // One card: a standalone `richCard`; two to ten: the OAS's `carousel` (cards are
        // always vertical; `cardWidth` medium).
        RichMessage::Carousel(cards) => match cards.as_slice() {
            [card] => {
                let mut rich = card_content(card);
                rich["cardOrientation"] = json!("vertical");
                ("richCard", json!({ "richCard": rich }))
            }
            cards => (
                "carousel",
                json!({ "carousel": {
                    "cardWidth": "medium",
                    "cards": cards.iter().map(card_content).collect::<Vec<_>>(),
                } }),
            ),
        },
    }
}

/// One card as the OAS shapes it: title, description, media under `contentInfo`, and its
/// suggestions (a reply, or an action with `openUrlAction`).
fn card_content(card: &crate::providers::Card) -> Value {
    use crate::providers::CardSuggestion;
    let mut content = json!({
        "title": card.title,
        "media": { "height": "medium", "contentInfo": { "fileUrl": card.image_url } },
        "suggestions": card.suggestions.iter().map(CardSuggestion::rcs_json).collect::<Vec<_>>(),
    });
    if let Some(description) = &card.description {
        content["description"] = json!(description);
    }
    content
}

/// The message `type` 8x8 expects for a MIME type.
pub fn media_type_for(mime_type: &str) -> &'static str {
    let essence = mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split('/').next().unwrap_or_default() {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        _ => "file",
    }
}

/// A refusal on our side, before any call: permanent.
fn local_error(operation: &'static str, message: String) -> ProviderError {
    ProviderError {
        provider: NAME,
        operation,
        class: ProviderErrorClass::Permanent,
        status: None,
        code: None,
        message: Some(message),
        retry_after: None,
    }
}

/// A call that got no answer: retryable.
fn transport(operation: &'static str, e: &reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport failure"
    };
    // The URL holds no secret, but the error chain is enough; keep the message short.
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    ProviderError {
        provider: NAME,
        operation,
        class: ProviderErrorClass::Retryable,
        status: None,
        code: None,
        message: Some(if detail.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {detail}")
        }),
        retry_after: None,
    }
}

/// Sends `request` and reads its answer, within `limit` on top of the client's own timeouts.
async fn call(
    operation: &'static str,
    request: reqwest::RequestBuilder,
    limit: Duration,
) -> Result<(u16, Value), ProviderError> {
    let exchange = async {
        let response = request.send().await.map_err(|e| transport(operation, &e))?;
        answer(operation, response).await
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError {
            provider: NAME,
            operation,
            class: ProviderErrorClass::Retryable,
            status: None,
            code: None,
            message: Some(format!("timed out after {} s", limit.as_secs())),
            retry_after: None,
        }),
    }
}

/// The 8x8 error body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    code: Option<Value>,
    message: Option<String>,
    error_id: Option<String>,
}

/// A success answer's JSON body (`Null` when empty), or the error it means.
async fn answer(
    operation: &'static str,
    response: reqwest::Response,
) -> Result<(u16, Value), ProviderError> {
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport(operation, &e))?;
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    if (200..300).contains(&status) {
        return Ok((status, body));
    }
    Err(classify(operation, status, &body, wait))
}

/// What an 8x8 error answer means.
fn classify(
    operation: &'static str,
    status: u16,
    body: &Value,
    retry_after: Option<Duration>,
) -> ProviderError {
    let parsed: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_default();
    let code = parsed.code.as_ref().and_then(|c| match c {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let class = if status == 429 || status == 408 || status >= 500 || code == Some(CODE_INTERNAL) {
        ProviderErrorClass::Retryable
    } else if status == 401
        || status == 403
        || code.is_some_and(|c| CODES_AUTHORISATION.contains(&c))
    {
        ProviderErrorClass::Authorisation
    } else {
        ProviderErrorClass::Permanent
    };
    let mut message = parsed.message.filter(|m| !m.is_empty()).unwrap_or_else(|| {
        format!(
            "HTTP {status} without an 8x8 error body{}",
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    });
    if let Some(id) = parsed.error_id.filter(|i| !i.is_empty()) {
        message.push_str(&format!(" [errorId {id}]"));
    }
    ProviderError {
        provider: NAME,
        operation,
        class,
        status: Some(status),
        code: code
            .map(|c| c.to_string())
            .or_else(|| parsed.code.and_then(|c| c.as_str().map(str::to_owned))),
        message: Some(message),
        retry_after,
    }
}

impl Provider for EightByEight {
    fn name(&self) -> &'static str {
        NAME
    }

    fn media_form(&self) -> MediaForm {
        // 8x8 uploads the bytes to its own file store first.
        MediaForm::Bytes
    }

    fn authenticate(&self, headers: &http::HeaderMap, peer: IpAddr) -> Result<(), AuthFailure> {
        // 8x8 sends a fixed `Authorization` value and signs nothing: checked from the headers,
        // before the body is read.
        super::check_authorization(&self.webhook_authorization, headers)?;
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(peer)) {
            return Err(AuthFailure::SourceNotAllowed(peer));
        }
        Ok(())
    }

    fn parse_webhook(&self, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(body, &self.sub_account_id)
    }

    #[tracing::instrument(skip_all, fields(provider = NAME, sub_account = %self.sub_account_id))]
    async fn send_text(
        &self,
        to: &EndUser,
        text: &str,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        self.send_message(
            "send text",
            to,
            "text",
            json!({ "text": text }),
            client_reference,
        )
        .await
    }

    async fn send_rich(
        &self,
        to: &EndUser,
        message: &RichMessage,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        let (kind, content) = rich_content(message);
        self.send_message("send choices", to, kind, content, client_reference)
            .await
    }

    #[tracing::instrument(skip_all, fields(provider = NAME, sub_account = %self.sub_account_id))]
    async fn send_media(
        &self,
        to: &EndUser,
        media: &OutboundMedia,
        caption: Option<&str>,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        const OPERATION: &str = "send media";
        // Refuse a bad recipient or reference before uploading anything.
        recipient(OPERATION, to)?;
        check_reference(OPERATION, client_reference)?;
        let (url, mime_type) = match media {
            OutboundMedia::Url { url, mime_type, .. } => (url.clone(), mime_type.as_str()),
            OutboundMedia::Bytes {
                bytes,
                mime_type,
                file_name,
            } => (
                self.upload(bytes.clone(), mime_type, file_name).await?,
                mime_type.as_str(),
            ),
        };
        let mut content = json!({ "url": url });
        if let Some(caption) = caption.filter(|c| !c.is_empty()) {
            content["text"] = Value::String(caption.to_owned());
        }
        self.send_message(
            OPERATION,
            to,
            media_type_for(mime_type),
            content,
            client_reference,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(provider = NAME, sub_account = %self.sub_account_id))]
    async fn send_typing(
        &self,
        _to: &EndUser,
        last_inbound: Option<&LastInbound>,
        now: DateTime<Utc>,
    ) -> Result<TypingOutcome, ProviderError> {
        let Some(last) = last_inbound else {
            return Ok(TypingOutcome::Dropped {
                reason: DROP_NO_INBOUND.into(),
            });
        };
        if now - last.at >= TYPING_WINDOW {
            return Ok(TypingOutcome::Dropped {
                reason: DROP_TOO_OLD.into(),
            });
        }
        let body = json!({
            "channel": self.channel_name(),
            "type": "typing",
            "umid": last.provider_message_id,
        });
        let url = self.url(&["events"])?;
        self.post_json("typing", url, Some(&body)).await?;
        Ok(TypingOutcome::Sent)
    }

    #[tracing::instrument(skip_all, fields(provider = NAME, sub_account = %self.sub_account_id))]
    async fn mark_read(&self, provider_message_id: &str) -> Result<ReadOutcome, ProviderError> {
        if self.channel != EightByEightChannel::Whatsapp {
            return Ok(ReadOutcome::NotSupported);
        }
        if provider_message_id.is_empty() {
            return Err(local_error("mark read", "no umid to mark read".into()));
        }
        let url = self.url(&["messages", provider_message_id, "read"])?;
        self.post_json("mark read", url, None).await?;
        Ok(ReadOutcome::Marked)
    }
}

#[cfg(test)]
mod tests;
