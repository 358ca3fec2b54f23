//! A strict emulator of the 8x8 Chat Apps API byocd calls, and a sender of 8x8's webhooks.
//!
//! [`EightByEightEmulator`] is a real HTTP/1.1 server on `127.0.0.1:0` for one sub-account. It
//! serves `POST /api/v1/subaccounts/{sa}/messages`, `/files`, `/events`,
//! `/messages/{umid}/read` and `GET /files/{name}?token=`, checks what 8x8 checks, answers with
//! 8x8's bodies, keeps a request log, can fail or slow down the next calls of an operation, and
//! has a clock tests can move (for the two-hour typing window).
//!
//! [`EightByEightWebhooks`] builds every documented webhook variant and POSTs it.
//!
//! # What the emulator answers
//!
//! Errors carry `{code, message, errorId, timestamp}`. Checks run in this order:
//!
//! | rule | answer |
//! |---|---|
//! | injected failure for the operation | as injected (after any injected delay) |
//! | `Authorization` is not `Bearer <api key>` | 401, code 1200 |
//! | sub-account id not matching `^[A-Za-z0-9\-._&]{3,50}$`, or not this one | 400, code 1001 |
//! | unknown path | 404, code 1300; wrong method 405, code 1000 |
//! | JSON endpoint without `Content-Type: application/json` | 415, code 1000 |
//! | body not a JSON object | 400, code 1000 |
//! | body over the size limit | 413, code 7001 |
//!
//! `POST /messages`: `user` missing 3001; `user` without `msisdn` or `channelUserId` 3002;
//! `msisdn` not E.164 with `+` 1002; `channelUserId` not a BSUID, or given on an RCS
//! sub-account, 1000; `type` missing or not in the OAS enum (lower case) 3010, `carousel` /
//! `richCard` on WhatsApp 3010; `content` missing 3004; text type without text 3005, text over
//! the channel's limit (WhatsApp 4,096, RCS 3,072 characters) 3006; media type without
//! `content.url` 3007, URL not absolute http(s) 3008; location without valid coordinates 3021;
//! `clientMessageId` not a string 1000, over 50 characters 3009; a top-level field the OAS does
//! not list 1000. Success: 200 `{umid, clientMessageId, user, status: {state: "queued",
//! timestamp}}`.
//!
//! Template sends (`type: template`) are checked strictly and free-form WhatsApp messages
//! outside the 24-hour window are accepted, then flagged for an `undelivered` 1022 receipt, as
//! 8x8 does: see [`window`].
//! Interactive messages (WhatsApp reply buttons and lists) and RCS suggestions are checked
//! by the limits the `rich` module lists (400, code 1000, naming the field).
//!
//! `POST /events` (typing): `channel` missing or not `whatsapp` | `rcs` 1000, not this
//! sub-account's channel 1000; `type` not `typing` 1000; `umid` missing 3029; `umid` of no
//! inbound message the emulator recorded 404 code 1300 ("Object wasn't found or is already
//! expired"); inbound message 2 hours old or more by the emulator's clock 400 code 1010. 8x8
//! documents the two-hour rule but no code for it; these are the emulator's choice. Success:
//! 200 with an empty body.
//!
//! `POST /messages/{umid}/read`: on an RCS sub-account 400 code 2003 (unsupported product);
//! unknown inbound umid 404 code 1300. Success: 200 with an empty body.
//!
//! `POST /files`: multipart with exactly one part, named `file` (else 400 code 1000); over
//! [`EightByEightSettings::max_file_bytes`] 413 code 7001. Success: 201 `{fileName, token}` and
//! `Location: /files/{fileName}?token={token}`.
//!
//! `GET /messages/{umid}` (message details): one call a second per sub-account, else 429 code
//! 429 ("Quota exceeded…") with `Retry-After: 1`; a umid that is not a UUID 400 code 1000; a
//! umid the emulator sent 200 `{data: [one record]}` (`umid`, `subAccountId`, `channel`,
//! `channelId`, `direction`, `status`, `contentType`, `createdAt`, `step`, masked `user` and
//! `content`); any other 404 code 1300 (8x8's reference example says 4018; its twins 1300).
//! `byocd doctor` reads a random umid to prove the key and the sub-account.
//!
//! `GET /files/{name}?token=`: no bearer needed; a wrong or missing token or unknown file 404
//! code 1300. Success: 200 with the bytes and their content type (8x8 answers a 302 to storage;
//! the emulator serves the file directly).

mod rich;
mod server;
mod webhooks;
pub mod window;

use crate::sandbox::net::Running;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use webhooks::{
    EightByEightWebhooks, InboundBody, InboundFormat, StatusFormat, StatusUpdate, WebhookPayload,
    WebhookUser,
};

pub use crate::config::EightByEightChannel;

/// How long after an inbound message 8x8 accepts a typing event for it.
pub const TYPING_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);
/// 8x8's documented upload limit (100 MB).
pub const DEFAULT_MAX_FILE_BYTES: usize = 100 * 1024 * 1024;

/// What the emulated sub-account looks like.
#[derive(Debug, Clone)]
pub struct EightByEightSettings {
    /// The sub-account id paths must name.
    pub sub_account_id: String,
    /// WhatsApp or RCS.
    pub channel: EightByEightChannel,
    /// The API key `Authorization: Bearer` must carry.
    pub api_key: String,
    /// Largest file `POST /files` accepts.
    pub max_file_bytes: usize,
}

impl EightByEightSettings {
    /// A sub-account with the default upload limit.
    pub fn new(sub_account_id: &str, channel: EightByEightChannel, api_key: &str) -> Self {
        Self {
            sub_account_id: sub_account_id.to_owned(),
            channel,
            api_key: api_key.to_owned(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl Default for EightByEightSettings {
    fn default() -> Self {
        Self::new(
            "acme-whatsapp",
            EightByEightChannel::Whatsapp,
            "emulated-8x8-api-key",
        )
    }
}

/// A failure the emulator answers instead of processing a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `http_status` with the 8x8 error body carrying `code`.
    Error {
        /// HTTP status.
        http_status: u16,
        /// 8x8 error code.
        code: u32,
    },
    /// 429 with `Retry-After: seconds` and code 1100 (8x8 documents no code for 429).
    RateLimited {
        /// Value of `Retry-After`.
        seconds: u64,
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
    /// Path without query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased; `Authorization` is cut to `Bearer …`.
    pub headers: Vec<(String, String)>,
    /// The JSON body, when there was one that parsed.
    pub body: Option<Value>,
    /// A body that was not JSON (lossy UTF-8, first 4 KiB), or a multipart summary.
    pub raw_body: Option<String>,
    /// The uploaded file of `POST /files`: (file name, content type, length).
    pub file: Option<(Option<String>, Option<String>, usize)>,
    /// HTTP status answered; 0 when the connection was cut.
    pub status: u16,
    /// Body answered (`Null` when empty or not JSON).
    pub response: Value,
}

impl LoggedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The 8x8 `code` answered, if any.
    pub fn error_code(&self) -> Option<u64> {
        self.response.get("code").and_then(Value::as_u64)
    }
}

/// A message the emulator accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// The umid it answered.
    pub umid: String,
    /// The `user` sent.
    pub user: Value,
    /// The `type` sent.
    pub kind: String,
    /// The `content` sent.
    pub content: Value,
    /// The `clientMessageId` sent.
    pub client_message_id: Option<String>,
    /// When (emulator clock).
    pub at: DateTime<Utc>,
}

/// A file uploaded to the emulator.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub(crate) token: String,
    pub(crate) content_type: String,
    pub(crate) bytes: bytes::Bytes,
}

/// The emulated sub-account's state.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) clock_offset: chrono::Duration,
    pub(crate) inbound: HashMap<String, DateTime<Utc>>,
    pub(crate) sent: Vec<SentMessage>,
    pub(crate) files: HashMap<String, StoredFile>,
    /// When each user (number or user id) last wrote (emulator clock).
    pub(crate) inbound_users: HashMap<String, DateTime<Utc>>,
    /// Free-form WhatsApp messages accepted outside the 24-hour window (their umids).
    pub(crate) window_refused: Vec<String>,
    /// When message details were last read (8x8 allows one read a second per sub-account).
    pub(crate) last_details: Option<DateTime<Utc>>,
}

impl State {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }
}

/// Handle on a running emulator; clones share the same server.
#[derive(Clone)]
pub struct EightByEightEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EightByEightEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EightByEightEmulator")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<server::Shared>,
    running: Running,
}

impl EightByEightEmulator {
    /// Starts the emulator on `127.0.0.1:0`.
    pub async fn start(settings: EightByEightSettings) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let shared = Arc::new(server::Shared::new(settings));
        let running = Running::spawn(listener, |listener, stop| {
            server::serve(listener, shared.clone(), stop)
        })?;
        Ok(Self {
            inner: Arc::new(Inner { shared, running }),
        })
    }

    /// `http://127.0.0.1:PORT`: the `base_url` of an 8x8 account pointed at the emulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.running.addr())
    }

    /// The settings the emulator was started with.
    pub fn settings(&self) -> &EightByEightSettings {
        &self.inner.shared.settings
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.inner.shared.log).clone()
    }

    /// The requests whose path ends with `path_suffix` (`/messages`, `/events`, `/read`,
    /// `/files`), in order of arrival.
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

    /// The next `times` calls of `operation` (`messages`, `files`, `events`, `read`,
    /// `download`) answer `failure`. Queued failures are used in order.
    pub fn inject(&self, operation: &str, failure: Failure, times: u32) {
        self.inner.shared.faults.inject(operation, failure, times);
    }

    /// The next `times` calls of `operation` wait `latency` before being processed.
    pub fn delay(&self, operation: &str, latency: Duration, times: u32) {
        self.inner.shared.faults.delay(operation, latency, times);
    }

    /// Moves the emulator's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut state = lock(&self.inner.shared.state);
        state.clock_offset = state
            .clock_offset
            .checked_add(&by)
            .unwrap_or(chrono::Duration::MAX);
    }

    /// The emulator's current time.
    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.inner.shared.state).now()
    }

    /// Records an inbound message: typing and read calls may then name `umid`.
    pub fn record_inbound(&self, umid: &str, at: DateTime<Utc>) {
        lock(&self.inner.shared.state)
            .inbound
            .insert(umid.to_owned(), at);
    }

    /// When the inbound message `umid` was recorded, if it was.
    pub fn inbound_at(&self, umid: &str) -> Option<DateTime<Utc>> {
        lock(&self.inner.shared.state).inbound.get(umid).copied()
    }

    /// Every message accepted so far, in order.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        lock(&self.inner.shared.state).sent.clone()
    }

    /// The messages accepted from position `start` on (in order): a cheap way to follow what
    /// arrives while messages keep coming.
    pub fn sent_messages_from(&self, start: usize) -> Vec<SentMessage> {
        lock(&self.inner.shared.state)
            .sent
            .get(start..)
            .map(<[SentMessage]>::to_vec)
            .unwrap_or_default()
    }

    /// The uploaded file `file_name`: its content type and bytes.
    pub fn uploaded_file(&self, file_name: &str) -> Option<(String, bytes::Bytes)> {
        lock(&self.inner.shared.state)
            .files
            .get(file_name)
            .map(|f| (f.content_type.clone(), f.bytes.clone()))
    }

    /// A webhook sender for this sub-account whose inbound messages are recorded here (at the
    /// emulator's clock), so typing and read calls may name them.
    pub fn webhooks(&self) -> EightByEightWebhooks {
        let settings = self.settings();
        EightByEightWebhooks::new(&settings.sub_account_id, settings.channel)
            .recording_into(self.clone())
    }

    /// The delivery receipt (v9) 8x8 would send for the message `umid` the emulator accepted,
    /// in `state` (`queued`, `sent`, `delivered`, `undelivered`, `rejected`, `read`) with an
    /// optional `detail`; `None` when no such message was sent.
    pub fn delivery_receipt(
        &self,
        umid: &str,
        state: &str,
        detail: Option<&str>,
    ) -> Option<WebhookPayload> {
        let sent = lock(&self.inner.shared.state)
            .sent
            .iter()
            .find(|m| m.umid == umid)
            .cloned()?;
        let user = WebhookUser {
            msisdn: sent
                .user
                .get("msisdn")
                .and_then(Value::as_str)
                .map(str::to_owned),
            channel_user_id: sent
                .user
                .get("channelUserId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: None,
            username: None,
        };
        let update = StatusUpdate {
            umid: sent.umid.clone(),
            client_message_id: sent.client_message_id.clone(),
            user: Some(user),
            state: state.to_owned(),
            detail: detail.map(str::to_owned),
            error: None,
            whatsapp_error: None,
            at: Some(self.now()),
        };
        Some(self.webhooks().status(StatusFormat::V9, &update))
    }

    /// Stops the server and waits for it (at most a few seconds).
    pub async fn shutdown(self) {
        self.inner.running.shutdown().await;
    }
}

/// 8x8's time format, with hundredths of a second: `2026-07-03T03:23:21.90Z`.
pub(crate) fn format_time(at: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{}.{:02}Z",
        at.format("%Y-%m-%dT%H:%M:%S"),
        (at.nanosecond() % 1_000_000_000) / 10_000_000
    )
}

/// Locks a mutex, ignoring poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
