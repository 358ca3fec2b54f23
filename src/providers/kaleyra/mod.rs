//! Kaleyra RCS: callbacks in, RCS Messages API calls out.
//!
//! # Callbacks
//!
//! [`Kaleyra::parse_webhook`] reads delivery-report and mobile-originated callbacks in both of
//! Kaleyra's shapes; see [`webhook`] for the mapping and the decisions on dedupe keys and
//! times.
//!
//! [`Kaleyra::authenticate`] compares the `Authorization` header, in constant time, with the
//! value the account's callback profile sends (`webhook_authorization_file`, required, at least
//! 16 characters). Kaleyra signs nothing (the body carries no signature), so the header is the
//! whole proof: it is checked before the body is read. At the proxy in front of byocd, restrict
//! the webhook path to Kaleyra's source networks (Kaleyra gives them on request). Only an
//! explicit `webhook_authentication = "none"` (a proxy authenticates) accepts callbacks without
//! it.
//!
//! # Calls
//!
//! | operation | request |
//! |---|---|
//! | send text | `POST {base_url}/v1/{sid}/rcs/messages` `{from: agent_id, to: [digits], text, ref}` |
//! | send media | same, with `file: {fileUrl, thumbnailUrl?, contentDescription?}` instead of `text` |
//! | typing | `POST {base_url}/v1/{sid}/rcs/events` `{from: agent_id, to: "+E.164", composing: {}}` |
//! | mark read | none: Kaleyra has no read API ([`ReadOutcome::NotSupported`]) |
//!
//! Every call carries the `api-key` header and, when the account has Basic credentials,
//! `Authorization: Basic …`. Neither is ever logged or put in an error.
//!
//! Decisions:
//!
//! - Numbers go without `+` in the send API's `to` array and **with** `+` in the typing
//!   event's `to`, as the two pages show. An end user without a phone number cannot be
//!   addressed: sends fail permanently, typing is dropped.
//! - Typing has no time window on Kaleyra: the `last_inbound` argument is ignored.
//! - Media must already be at a public `https` URL; Kaleyra hosts nothing, so
//!   [`OutboundMedia::Bytes`] is refused (byocd serves the file itself and passes its URL). The
//!   URL is checked by the rule `config check` applies to `server.public_base_url`
//!   ([`crate::config::check_endpoint_url`]: https, or http only to a loopback host), so a
//!   configuration that loads never has every file send refused here. The
//!   caption, else the file name, becomes `contentDescription` (RCS file messages show no
//!   caption: send it as a separate text if it must be seen). Kaleyra's file page marks
//!   `thumbnailUrl` as required; for the image types it lists as thumbnails (JPEG, GIF, PNG) the
//!   file itself is given as its thumbnail, for other files none is sent.
//! - Answers, in this order: HTTP 401/403 → [`ProviderErrorClass::Authorisation`]; `RCS1004`
//!   (typing, `PROV_ERROR`) → **Permanent**, because a typing indicator is only worth showing
//!   now, and the error is the downstream RCS platform's refusal (the documented sample is
//!   "Access Denied"), which a retry seconds later would only repeat with a stale indicator;
//!   HTTP 429, 500, 502, 503, 504 → Retryable (with `Retry-After` when given); code `1200`
//!   (send) or `RCS1002` (typing) with a 2xx → success; `14xx` → Permanent, naming the field
//!   (`to` for 1417 and 1423, `from` for 1419, `ttl` for 1420; the `$.path` in
//!   `error_message` for 1400); anything else → Permanent. No answer at all (refused
//!   connection, time-out, connection cut) → Retryable.
//! - A `1200` answer without a `messageId` is a Permanent error rather than a retry: the
//!   message may have gone out, and a retry would send it twice.

mod api;
pub mod webhook;

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::{
    AuthFailure, EndUser, InboundEvent, LastInbound, MediaForm, OutboundMedia, ParseError,
    Provider, ProviderError, ReadOutcome, Sent, TypingOutcome, check_authorization,
};
use crate::config::{KaleyraAccount, SecretFile, WebhookAuthentication};

pub use api::{EVENT_FAILED_CODE, EVENT_PUBLISHED_CODE, REQUEST_TIMEOUT, SEND_SUCCESS_CODE};

/// The name of this provider in errors, logs and the store.
pub const PROVIDER_NAME: &str = "kaleyra";

/// The Kaleyra RCS provider of one channel.
#[derive(Debug, Clone)]
pub struct Kaleyra {
    http: reqwest::Client,
    base_url: String,
    sid: String,
    agent_id: String,
    api_key: SecretFile,
    basic: Option<(String, SecretFile)>,
    webhook_authorization: WebhookAuthentication,
}

impl Kaleyra {
    /// A client for `account`, sending through `http`.
    pub fn new(account: &KaleyraAccount, http: reqwest::Client) -> Self {
        Self {
            http,
            base_url: account.base_url.trim_end_matches('/').to_owned(),
            sid: account.sid.clone(),
            agent_id: account.agent_id.clone(),
            api_key: account.api_key.clone(),
            basic: account
                .basic
                .as_ref()
                .map(|b| (b.username.clone(), b.password.clone())),
            webhook_authorization: account.webhook_authorization.clone(),
        }
    }

    /// A harmless authenticated call that proves the credentials (`byocd doctor`).
    pub async fn check_credentials(&self) -> Result<(), ProviderError> {
        self.check_credentials_call().await
    }

    /// The agent id (`from` of every call).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }
}

impl Provider for Kaleyra {
    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn media_form(&self) -> MediaForm {
        // Kaleyra hosts nothing: it fetches the file from a public URL.
        MediaForm::Url
    }

    fn authenticate(&self, headers: &http::HeaderMap, _peer: IpAddr) -> Result<(), AuthFailure> {
        check_authorization(&self.webhook_authorization, headers)
    }

    fn parse_webhook(&self, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse_callbacks(body)
    }

    async fn send_text(
        &self,
        to: &EndUser,
        text: &str,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        self.send_text_message(to, text, client_reference).await
    }

    async fn send_rich(
        &self,
        to: &EndUser,
        message: &crate::providers::RichMessage,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        self.send_choices_message(to, message, client_reference)
            .await
    }

    async fn send_media(
        &self,
        to: &EndUser,
        media: &OutboundMedia,
        caption: Option<&str>,
        client_reference: &str,
    ) -> Result<Sent, ProviderError> {
        self.send_file_message(to, media, caption, client_reference)
            .await
    }

    async fn send_typing(
        &self,
        to: &EndUser,
        _last_inbound: Option<&LastInbound>,
        _now: DateTime<Utc>,
    ) -> Result<TypingOutcome, ProviderError> {
        self.publish_composing(to).await
    }

    async fn mark_read(&self, _provider_message_id: &str) -> Result<ReadOutcome, ProviderError> {
        Ok(ReadOutcome::NotSupported)
    }
}
