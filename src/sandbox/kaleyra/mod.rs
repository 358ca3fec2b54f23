//! A strict emulator of Kaleyra's RCS API (send message, typing event) and a sender of
//! Kaleyra's RCS callbacks, for tests, the demo and benchmarks.
//!
//! [`KaleyraEmulator`] is a real HTTP/1.1 server on `127.0.0.1:0` serving
//! `POST /v1/{sid}/rcs/messages`, `POST /v1/{sid}/rcs/events` and the single-number
//! capability check `GET /v1/{sid}/rcs/lookup/{+E.164}`. It checks every request the
//! way the documentation describes it, answers with Kaleyra's success and error bodies, can
//! be told to fail, cut the connection or slow down for the next N calls of an operation, and
//! logs every request (with `api-key` and `Authorization` redacted) for assertions.
//!
//! [`KaleyraCallbacks`] builds every documented callback — mobile-originated `USER_MESSAGE`,
//! `SUBSCRIBE`, `UNSUBSCRIBE` and delivery reports `SENT`, `DELIVERED`, `READ`, `COMPOSING`,
//! `TTL_EXPIRATION_REVOKED`, `ERROR`, each flat or wrapped — and posts it to a webhook URL.
//!
//! # Checks, in order, and their answers
//!
//! | check | answer |
//! |---|---|
//! | failure or delay injected for the operation | as injected (before any other check) |
//! | path is `/v1/{sid}/rcs/messages`, `/v1/{sid}/rcs/events` or `/v1/{sid}/rcs/lookup/{number}` | 404 |
//! | method is `POST` (`GET` for `lookup`) | 405, code 1405 |
//! | `api-key` present and equal to the configured key | 401 |
//! | `Authorization: Basic base64(user:password)` when Basic credentials are configured | 401 |
//! | `{sid}` is the configured SID | 403 |
//! | `Content-Type` is `application/json` (a `charset` is allowed) | 400, code 1400 `INVALID_FIELD_FORMAT` |
//! | the body is a JSON object | 400, code 1400 `INVALID_FIELD_FORMAT` |
//! | no member the endpoint does not know | 400, code 1400 `INVALID_REQUEST` |
//! | `from` present | 400, code 1400 `MISSING_REQUIRED_FIELD` |
//! | `from` is the agent id | 400, code 1419 `INVALID_SERVICE_CODE` |
//! | messages: `to` a non-empty array of at most [`MAX_RECIPIENTS`] numbers of 8–15 digits, **without** `+` | 400, code 1400 (shape) or 1417 `INVALID_NUMBER` |
//! | messages: exactly one of `text`, `file`, `richCardStandalone`, `richCardCarousel` | 400, code 1400 |
//! | messages: `text` a non-empty string of at most [`MAX_TEXT_CHARS`] characters | 400, code 1400 |
//! | messages: `file.fileUrl` (and `thumbnailUrl` if given) an `https` URL; only `fileUrl`, `thumbnailUrl`, `contentDescription` | 400, code 1400 |
//! | messages: `ttl` an integer from 1 to [`MAX_TTL_SECONDS`] | 400, code 1420 `INVALID_TTL` |
//! | messages: `ref`, `ref1`, `ref2` strings; `suggestions` an array of at most [`MAX_SUGGESTIONS`], each exactly one of `reply` / `action` with `text` (1–25 characters) and `postbackData` (1–2,048) | 400, code 1400 |
//! | events: `to` an E.164 number **with** `+` | 400, code 1417 `INVALID_NUMBER` |
//! | events: `composing` present and exactly `{}` | 400, code 1400 |
//! | lookup: the number (percent-decoded, `%2B` is `+`) an E.164 number **with** `+` | 400, code 1417 `INVALID_NUMBER` |
//!
//! Success: 200 `{"code": "1200", "message": …, "data": {"to", "messageId"}, "error": {}}` for a
//! text to one number, `data.recipientDetails: [{messageId, to}]` for a file or several
//! numbers; 200 `{"code": "RCS1002", "message": …, "data": {requestId, to, messageId},
//! "error": {}}` for a typing event.
//!
//! # Decisions where the documentation says nothing
//!
//! - Error bodies of the messages API are `{"code": <number>, "message", "data": {"error":
//!   {"error_code", "error_message"}}}` as on the error page; the events endpoint answers the
//!   shape of its `RCS1004` sample (`"data": []` and a top-level `error`) and reuses the
//!   messages API's codes for request errors (none are documented for it).
//! - 401, 403, 404, 429 and 5xx bodies are `{"code": <status>, "message", "error":
//!   {"error_code", "error_message"}}`.
//! - A wrong SID is 403 (the key is valid, for another account).
//! - The limits ([`MAX_TEXT_CHARS`], [`MAX_RECIPIENTS`], [`MAX_SUGGESTIONS`],
//!   [`MAX_TTL_SECONDS`]) are the RCS platform's, as Kaleyra publishes none.
//! - `richCardStandalone` is checked field by field (`validate::standalone_card`: orientation,
//!   title ≤200, description ≤2,000, an https media URL and its height, at most 4
//!   suggestions), with enum values in Google RBM's upper case, which Kaleyra's fields mirror
//!   and its pages do not list; `richCardCarousel` likewise (`validate::carousel`: `cardWidth`
//!   `SMALL` / `MEDIUM`, 2 to 10 `cardContents`, each checked as a standalone card's
//!   `content`), the card count from Kaleyra's RCS payload specification.
//! - The lookup's 200 body is not documented: the emulator answers `{"code": "RCS200",
//!   "data": {"deviceAddress", "rcsEnabled": false}, "error": {}}` (byocd reads only the
//!   status: `byocd doctor` uses the lookup to prove the key and the SID).

mod callbacks;
mod server;
mod validate;

use crate::sandbox::net::Running;
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde_json::Value;

pub use callbacks::{Callback, CallbackFormat, CallbackKind, KaleyraCallbacks};

use crate::config::{BasicCredentials, KaleyraAccount, SecretFile};

/// Longest `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 3072;
/// Most numbers in one send's `to`.
pub const MAX_RECIPIENTS: usize = 100;
/// Most `suggestions` in one message.
pub const MAX_SUGGESTIONS: usize = 11;
/// Longest `ttl`: 15 days, in seconds.
pub const MAX_TTL_SECONDS: u64 = 15 * 24 * 3600;

/// The operations that failures and delays are injected into.
pub const OPERATIONS: [&str; 3] = ["messages", "events", "lookup"];

/// What the emulated account looks like.
#[derive(Debug, Clone)]
pub struct KaleyraSettings {
    /// The account SID expected in every path.
    pub sid: String,
    /// The `api-key` expected.
    pub api_key: String,
    /// The approved agent id: the `from` expected.
    pub agent_id: String,
    /// User name and password expected as `Authorization: Basic`; `None`: not checked.
    pub basic: Option<(String, String)>,
}

impl KaleyraSettings {
    /// Settings with this SID, key and agent id, and no Basic credentials.
    pub fn new(sid: &str, api_key: &str, agent_id: &str) -> Self {
        Self {
            sid: sid.to_owned(),
            api_key: api_key.to_owned(),
            agent_id: agent_id.to_owned(),
            basic: None,
        }
    }

    /// The same settings, expecting Basic credentials.
    pub fn with_basic(mut self, username: &str, password: &str) -> Self {
        self.basic = Some((username.to_owned(), password.to_owned()));
        self
    }
}

impl Default for KaleyraSettings {
    fn default() -> Self {
        Self::new(
            "HXIN1700000000000",
            "sandbox-kaleyra-api-key-0001",
            "byocd_rcs",
        )
    }
}

/// A failure the emulator answers instead of processing a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KaleyraFailure {
    /// `http_status` with the error body of Kaleyra code `code` (`1400`, `1417`, `1419`,
    /// `1420`, `1423`, or any other, e.g. `500`).
    Code {
        /// HTTP status to answer.
        http_status: u16,
        /// Kaleyra code to put in the body.
        code: u16,
    },
    /// `http_status` (429, 503, …) with `Retry-After: seconds`.
    RetryAfter {
        /// HTTP status to answer.
        http_status: u16,
        /// Value of `Retry-After`.
        seconds: u64,
    },
    /// The documented typing failure: `RCS1004` "Event publish failed" with
    /// `error.error_code` `PROV_ERROR` and `error_text` in the JSON of `error_message`.
    ProviderError {
        /// HTTP status to answer (undocumented; 400 is a fair guess).
        http_status: u16,
        /// The downstream platform's `errorText`, e.g. `Access Denied`.
        error_text: String,
    },
    /// Close the connection without answering.
    Disconnect,
}

/// One request the emulator received, with its answer.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// Position in the log, from 0.
    pub seq: usize,
    /// HTTP method.
    pub method: String,
    /// Path without query, e.g. `/v1/HXIN…/rcs/events`.
    pub path: String,
    /// Headers, names lower-cased, in the order received; `api-key` and `Authorization` are
    /// cut to their first characters and `…`.
    pub headers: Vec<(String, String)>,
    /// The JSON body, if it was JSON.
    pub body: Option<Value>,
    /// The body as text (lossy, first 4 KiB) when it was not JSON.
    pub raw_body: Option<String>,
    /// HTTP status answered; 0 when the connection was cut.
    pub status: u16,
    /// Body answered (`Null` when none).
    pub response: Value,
}

impl LoggedRequest {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `code` answered, as text (`"1200"`, `"1417"`, `"RCS1002"`), if any.
    pub fn code(&self) -> Option<String> {
        match self.response.get("code")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A message the emulator accepted, one per recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedMessage {
    /// The `messageId` answered.
    pub message_id: String,
    /// The recipient's digits.
    pub to: String,
    /// `ref` of the request, if any.
    pub reference: Option<String>,
    /// `text` of the request, if it was a text.
    pub text: Option<String>,
    /// `file.fileUrl` of the request, if it was a file.
    pub file_url: Option<String>,
}

/// Handle on a running emulator; clones share the same server.
#[derive(Clone)]
pub struct KaleyraEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KaleyraEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KaleyraEmulator")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<server::Shared>,
    running: Running,
}

impl KaleyraEmulator {
    /// Starts the emulator on `127.0.0.1:0`.
    pub async fn start(settings: KaleyraSettings) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let shared = Arc::new(server::Shared::new(settings));
        let running = Running::spawn(listener, |listener, stop| {
            server::serve(listener, shared.clone(), stop)
        })?;
        Ok(Self {
            inner: Arc::new(Inner { shared, running }),
        })
    }

    /// `http://127.0.0.1:PORT`, the `base_url` of an account using this emulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.running.addr())
    }

    /// The settings the emulator was started with.
    pub fn settings(&self) -> KaleyraSettings {
        self.inner.shared.settings.clone()
    }

    /// A channel's Kaleyra account that talks to this emulator with the right credentials
    /// (webhooks authenticated by a proxy: the emulator sends no `Authorization`).
    pub fn account(&self) -> KaleyraAccount {
        let s = &self.inner.shared.settings;
        KaleyraAccount {
            sid: s.sid.clone(),
            base_url: self.base_url(),
            api_key: SecretFile::from_value("sandbox:kaleyra-api-key", &s.api_key),
            agent_id: s.agent_id.clone(),
            basic: s.basic.as_ref().map(|(user, password)| BasicCredentials {
                username: user.clone(),
                password: SecretFile::from_value("sandbox:kaleyra-basic-password", password),
            }),
            webhook_authorization: crate::config::WebhookAuthentication::None,
        }
    }

    /// Path of an operation (`messages` or `events`) for the configured SID.
    pub fn path(&self, operation: &str) -> String {
        format!("/v1/{}/rcs/{operation}", self.inner.shared.settings.sid)
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.inner.shared.log).clone()
    }

    /// The requests whose path ends with `path_suffix` (e.g. `/rcs/events`), in order.
    pub fn requests_to(&self, path_suffix: &str) -> Vec<LoggedRequest> {
        lock(&self.inner.shared.log)
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }

    /// Empties the request log.
    pub fn clear_log(&self) {
        lock(&self.inner.shared.log).clear();
    }

    /// Messages accepted so far, one per recipient, in order.
    pub fn sent_messages(&self) -> Vec<EmulatedMessage> {
        lock(&self.inner.shared.sent).clone()
    }

    /// The next `times` calls of `operation` (`messages` or `events`) answer `failure`, whatever
    /// the request. Queued failures are used in order.
    pub fn inject(&self, operation: &str, failure: KaleyraFailure, times: u32) {
        if times == 0 {
            return;
        }
        lock(&self.inner.shared.failures).push(server::Queued {
            operation: operation.to_owned(),
            item: failure,
            remaining: times,
        });
    }

    /// The next `times` calls of `operation` wait `latency` before being processed.
    pub fn delay(&self, operation: &str, latency: Duration, times: u32) {
        if times == 0 {
            return;
        }
        lock(&self.inner.shared.delays).push(server::Queued {
            operation: operation.to_owned(),
            item: latency,
            remaining: times,
        });
    }

    /// Stops the server and waits for it (at most a few seconds).
    pub async fn shutdown(self) {
        self.inner.running.shutdown().await;
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not hide the log from others).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
