//! A strict emulator of the Salesforce side of Bring Your Own Channel: the OAuth 2.0 JWT bearer
//! token endpoint and every Interaction Service API (ISA) endpoint byocd calls.
//!
//! It is a real HTTP/1.1 server on `127.0.0.1:0`. It verifies the assertion's RS256 signature
//! against the configured public key or certificate, checks every header, the multipart
//! structure, the body schema of Salesforce's OpenAPI file and the semantic rules of the
//! digest, answers with the documented error codes, keeps state (conversations, messaging
//! sessions, pending service routings, AgentWork), can be told to fail or slow down the next N
//! calls of an endpoint, enforces a request rate, and logs every request for assertions.
//!
//! # HTTP status of each error class
//!
//! Salesforce documents the `{code, message}` body but not the HTTP status that carries it
//! (digest §6 #5). The emulator decides:
//!
//! | status | codes |
//! |---|---|
//! | 400 | bad input: header values (10016, 10093), body schema, limits, enums, semantic rules (10007–10015, 10021, 10024, 10027–10034, 10037–10054, 10059–10068, 10072–10078, 10083–10085, 10089, 10095–10106, 15106, 15107, 15110) |
//! | 401 | the access token is missing, unknown, revoked or expired (10004); 10003 is also 401 |
//! | 403 | the AuthorizationContext or the product/ownership does not allow the call (10001, 10005, 10022, 10023, 10057, 10099, 10104, 15102, 15104, 15105) |
//! | 404 | a referenced record does not exist (10017, 10018 for an unknown conversation, 10036, 10071, 10082, 10105, 15111) |
//! | 409 | a conflicting record exists (15109), or 10055/10056 when injected |
//! | 413 | the attachment exceeds 25 MB (10008), also when the whole body is too large |
//! | 415 | `Content-Type` is not the one the endpoint takes (code 10016) |
//! | 429 | the rate limit is exceeded: `Retry-After: 1`, code 429, message `Interaction request rate limit exceeded` |
//! | 500 | code 500 (injected only) |
//! | 503 | retryable service conditions 10019 and 10094 (injected only) |
//!
//! A request to a path or method the service does not have answers 404 / 405 with code 10089.
//! The token endpoint answers 400 `{"error", "error_description"}` for every refusal.
//!
//! # Decisions on the digest's ambiguities
//!
//! - JWT `exp` is seconds since the epoch (§6 #1); it must lie in the future and at most
//!   [`MAX_ASSERTION_LIFETIME_SECS`] ahead of the emulator's clock, so an `exp` in
//!   milliseconds is refused as `invalid_grant`. `iss` other than the consumer key is
//!   `invalid_client`; every other refusal is `invalid_grant` and names the claim.
//! - Tokens never expire unless [`SalesforceEmulator::set_token_lifetime`] says so (§6 #2);
//!   the token response carries no `expires_in`, as Salesforce's does not.
//! - `Content-Type` is `multipart/form-data` for `/interactions`, `application/json` elsewhere
//!   (§6 #3); a `charset` parameter is accepted.
//! - `from` is limited to 240 characters like the other identifiers (§6 #6).
//! - `acknowledgementTimestamp` is accepted as a string of digits or an integer (§6 #7).
//! - `cancelReason` takes the YAML spelling `Unknown|Unavailable|Decline|Cancel` (§6 #8).
//! - `AuthorizationContextType` is compared case-insensitively (§6 #9) and, since this emulator
//!   only knows BYOC channels, must name `ConversationChannelDefinition` (else 10093).
//! - `/conversationHistory` accepts the docs' optional `conversationIdentifier` and up to 25
//!   entries, the YAML limit (§6 #10); entries older than 24 hours are refused (10046).
//! - `OrgId` that is not 15 characters, or is not this org's id, is an invalid header (10016),
//!   not a token error: re-minting a token cannot fix it.
//! - A missing `AuthorizationContext` is 10016; one naming no CCD of this org is 10005; one
//!   naming another channel's CCD than the addressed channel's is 10001.
//! - The partner-routing endpoints (`/route`, `/agentWork`, `/routingResult`, `/participant`,
//!   `/messagingSession`) need a CCaaS channel (else 15102) whose routing is partner-owned
//!   (else 15104) (§6 #15); `/conversationHistory` needs a CCaaS channel (else 10057);
//!   `/consent` needs a partner consent owner (else 10022).
//! - Fields a schema does not list are refused with 10089 and named: a misspelt optional field
//!   would otherwise pass unnoticed. Structured content below the format level (form inputs,
//!   capability restrictions) is not checked field by field.
//! - Message and entry ids are compared (10059/10060) but not required to be UUIDs.
//! - `/messagingSession` answers 200 `{"success": false, "errorReason": ...}` for state
//!   problems: unknown channel `CHANNEL_ADDRESS_NOT_FOUND`; no conversation of that end user
//!   on that channel `END_USER_NOT_FOUND`; a `conversationIdentifier` that is not that
//!   conversation `ACTIVE_CONVERSATION_NOT_FOUND`; a session that is already ended, or not a
//!   session of the conversation, `SESSION_NOT_FOUND`. Inactivating an inactive session
//!   succeeds without change. Body errors (10102, 10103, 10106) are `{code, message}` 400s.
//! - An inbound interaction on a conversation whose session is `Inactive` reactivates that
//!   session; after `Ended` it opens a new session with a new id.
//! - `POST /agentWork` without a pending PSR must carry a capacity (10089), as the docs say
//!   capacity is needed when `/route` was not called.
//! - `DELETE /route` without a pending PSR answers 202 `{"success": false}`.
//! - `workItemId` of the wrong shape is 15110 on `/agentWork` and 10012 on `/routingResult`;
//!   an unknown one is 15111 (404) and 10012 (404) respectively; a work item of another
//!   conversation is 15107. An unknown `userId` is 15106, an unknown flow id 10089.
//! - A rep joins a conversation when its AgentWork is accepted (`PATCH /agentWork` `Accept`
//!   or [`SalesforceEmulator::rep_accepts_work`]); `/participant` `Remove` of a rep who has
//!   not joined is 10036. AgentWork moves Assigned → Accepted | Declined | Cancelled, and
//!   Assigned | Accepted → Closed; any other `status` is 10085.
//! - `MessageDeliveryFailed.recipient` must be `custom` / `EndUser` (10037 / 10038) and name
//!   the request's `from` (10054).
//! - `/consent` needs the end user to exist on the channel (10105).
//! - Failure injection happens before any check (even authentication); delays are applied
//!   before the request is processed; the rate limit is one fixed one-second window for the
//!   whole emulated org and applies to `/api/v1/*` only (the scope is undocumented, §5).
//! - The rate-limit refusal is 429 with `Retry-After: 1` and code 429 (no code is documented).

mod errors;
mod files;
mod headers;
mod history;
mod interactions;
mod isa;
mod routing;
mod server;
mod state;
mod token;
mod validate;

use crate::sandbox::net::Running;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde_json::Value;

pub use state::{
    AgentWorkStatus, EmulatedAcknowledgement, EmulatedAgentWork, EmulatedConversation,
    EmulatedEntry, EmulatedPsr, EmulatedSession, PsrStatus, SessionStatus,
};

/// The farthest ahead of the emulator's clock an assertion's `exp` may lie, in seconds
/// (Salesforce: "within 3 minutes"; 30 seconds of clock skew allowed on top).
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 210;

/// The largest attachment `/interactions` accepts, in bytes (25 MB).
pub const MAX_ATTACHMENT_BYTES: usize = 25 * 1024 * 1024;

/// The message of the rate-limit refusal (digest §5).
pub const RATE_LIMIT_MESSAGE: &str = "Interaction request rate limit exceeded";

/// The error code the emulator puts in the body of a rate-limit refusal (undocumented; the
/// HTTP status is reused, like the documented "500" code).
pub const RATE_LIMIT_CODE: u32 = 429;

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/services/oauth2/token";

/// Path under which the files reps attach are served: `GET {FILE_DOWNLOAD_PATH}/{id}` with
/// `Authorization: Bearer <access token>` (a Salesforce content download URL).
pub const FILE_DOWNLOAD_PATH: &str = "/sfc/servlet.shepherd/version/download";

/// A file a rep attached in the console, kept for download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepFile {
    /// 15-character ContentVersion id starting `068`.
    pub id: String,
    /// File name, e.g. `invoice.pdf`.
    pub name: String,
    /// MIME type, e.g. `application/pdf`.
    pub mime_type: String,
    /// Absolute download URL; needs `Authorization: Bearer <valid access token>`.
    pub url: String,
    /// The file's bytes.
    pub bytes: bytes::Bytes,
}

/// What the emulated org looks like.
#[derive(Debug, Clone)]
pub struct EmulatorSettings {
    /// The 15-character org id, e.g. `00D000000000001`; the `OrgId` header must equal it.
    pub org_id: String,
    /// The connected app's consumer key: the JWT `iss` expected.
    pub consumer_key: String,
    /// The integration user's username: the JWT `sub` expected.
    pub username: String,
    /// The JWT `aud` expected; `None` means the emulator's own base URL.
    pub audience: Option<String>,
    /// PEM public key (`PUBLIC KEY` / `RSA PUBLIC KEY`) or X.509 certificate the assertion's
    /// RS256 signature must verify against.
    pub public_key_pem: String,
    /// The messaging channels of the org.
    pub channels: Vec<EmulatedChannel>,
    /// Requests per second accepted on `/api/v1/*`; `None` means unlimited.
    pub rate_limit_per_second: Option<u32>,
}

/// One messaging channel of the emulated org and its conversation channel definition.
#[derive(Debug, Clone)]
pub struct EmulatedChannel {
    /// `MessagingChannel.ChannelAddressIdentifier` (the `to` of inbound interactions).
    pub channel_address_identifier: String,
    /// Developer name of the channel's CCD: the `AuthorizationContext` expected.
    pub authorization_context: String,
    /// `Messaging` (BYOC for Messaging) or `CCaaS` (BYOC for CCaaS).
    pub product: String,
    /// The CCD's routing owner: `Salesforce` or `Partner`.
    pub routing_owner: String,
    /// The CCD's consent owner: `Salesforce` or `Partner`.
    pub consent_owner: String,
    /// Queue ids `/route` may name.
    pub queues: Vec<String>,
    /// Flow ids `/route` may name.
    pub flows: Vec<String>,
    /// User ids `/agentWork` may name.
    pub users: Vec<String>,
}

/// A failure the emulator answers instead of processing the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `http_status` with `{"code": code, "message": <text>}`.
    IsaError {
        /// HTTP status to answer.
        http_status: u16,
        /// ISA error code to put in the body.
        code: u32,
    },
    /// `http_status` with `{"code": code, "message": message}`: an error that echoes what it was
    /// sent, as real services do.
    IsaErrorMessage {
        /// HTTP status to answer.
        http_status: u16,
        /// ISA error code to put in the body.
        code: u32,
        /// The message to put in the body.
        message: String,
    },
    /// `http_status` with a `Retry-After: seconds` header (e.g. 429 or 503); a 429 carries the
    /// rate-limit body, any other status `{"code": http_status, "message": ...}`.
    RetryAfter {
        /// HTTP status to answer.
        http_status: u16,
        /// Value of `Retry-After`.
        seconds: u64,
    },
    /// 200 `{"success": false, "errorReason": <reason>}` (meant for `/messagingSession`).
    ErrorReason(String),
    /// Token endpoint refusal: 400 `{"error", "error_description"}`.
    TokenError {
        /// OAuth error, e.g. `invalid_grant`, `invalid_client`.
        error: String,
        /// Human-readable description.
        description: String,
    },
    /// Close the connection without answering.
    Disconnect,
}

/// One file part of a multipart request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAttachment {
    /// Name of the part (`attachments`).
    pub part_name: String,
    /// File name given in the part, if any.
    pub filename: Option<String>,
    /// Content type of the part, if any.
    pub content_type: Option<String>,
    /// Length of the file in bytes.
    pub length: usize,
}

/// One request the emulator received, with its answer.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// Position in the log, from 0, in order of arrival.
    pub seq: usize,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without query, e.g. `/api/v1/interactions`.
    pub path: String,
    /// Headers, names lower-cased, in the order received; `Authorization` is redacted to its
    /// first 6 characters and `…`.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body; for multipart the `json` part; for the token endpoint the form fields
    /// (with `assertion` redacted). `None` when absent or not parseable.
    pub body: Option<Value>,
    /// The raw body when it was not parseable as what it should be (lossy UTF-8, first 4 KiB).
    pub raw_body: Option<String>,
    /// File parts of a multipart body.
    pub attachments: Vec<LoggedAttachment>,
    /// HTTP status answered; 0 if the connection was closed without answer (or still open).
    pub status: u16,
    /// Body answered (`Null` when none); an `access_token` in it is redacted.
    pub response: Value,
    /// When the emulator had processed the request and chose its answer (`None` while open).
    pub answered_at: Option<std::time::Instant>,
}

impl LoggedRequest {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `code` of an error body answered, if any.
    pub fn error_code(&self) -> Option<u64> {
        self.response.get("code").and_then(Value::as_u64)
    }
}

/// Handle on a running emulator; clones share the same server.
#[derive(Clone)]
pub struct SalesforceEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SalesforceEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceEmulator")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<server::Shared>,
    running: Running,
}

impl SalesforceEmulator {
    /// Starts the emulator on `127.0.0.1:0`.
    pub async fn start(settings: EmulatorSettings) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(server::Shared::new(settings, base_url)?);
        let running = Running::spawn(listener, |listener, stop| {
            server::serve(listener, shared.clone(), stop)
        })?;
        Ok(Self {
            inner: Arc::new(Inner { shared, running }),
        })
    }

    /// `http://127.0.0.1:PORT`: serves `POST /services/oauth2/token` and `/api/v1/*`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.running.addr())
    }

    /// The org id the emulator was started with.
    pub fn org_id(&self) -> String {
        self.inner.shared.settings.org_id.clone()
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.inner.shared.log).clone()
    }

    /// The requests from position `start` of the log on (see [`LoggedRequest::seq`]): a cheap
    /// way to follow the log while requests keep arriving.
    pub fn requests_from(&self, start: usize) -> Vec<LoggedRequest> {
        lock(&self.inner.shared.log)
            .get(start..)
            .map(<[LoggedRequest]>::to_vec)
            .unwrap_or_default()
    }

    /// The requests to `path` (e.g. `/api/v1/interactions`), in order of arrival.
    pub fn requests_to(&self, path: &str) -> Vec<LoggedRequest> {
        lock(&self.inner.shared.log)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Takes the requests logged so far, leaving the log empty (a long run can follow what
    /// arrives without the log growing).
    pub fn take_requests(&self) -> Vec<LoggedRequest> {
        std::mem::take(&mut *lock(&self.inner.shared.log))
    }

    /// Empties the request log.
    pub fn clear_log(&self) {
        lock(&self.inner.shared.log).clear();
    }

    /// The next `times` calls of `endpoint` answer `failure`. `endpoint` is a path such as
    /// `/api/v1/interactions` (any method) or a method and a path such as
    /// `PATCH /api/v1/agentWork`. Queued failures are used in order.
    pub fn inject(&self, endpoint: &str, failure: Failure, times: u32) {
        self.inner.shared.faults.inject(endpoint, failure, 0, times);
    }

    /// As [`SalesforceEmulator::inject`], after letting the next `skip` calls of `endpoint`
    /// through: a failure in the middle of a stream of calls.
    pub fn inject_after(&self, endpoint: &str, failure: Failure, skip: u32, times: u32) {
        self.inner
            .shared
            .faults
            .inject(endpoint, failure, skip, times);
    }

    /// Forgets every queued failure and delay (an outage played with a large `times` ends).
    pub fn clear_faults(&self) {
        self.inner.shared.faults.clear();
    }

    /// The next `times` calls of `endpoint` wait `latency` before being processed.
    pub fn delay(&self, endpoint: &str, latency: Duration, times: u32) {
        self.inner.shared.faults.delay(endpoint, latency, times);
    }

    /// Sets the rate limit of `/api/v1/*`; `None` removes it.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        self.inner.shared.faults.set_rate_limit(per_second);
    }

    /// Every token issued so far becomes invalid (calls answer 401 with code 10004).
    pub fn revoke_tokens(&self) {
        lock(&self.inner.shared.state).revoke_tokens();
    }

    /// Whether `token` is an access token this emulator issued that is neither revoked nor
    /// expired (what the Pub/Sub emulator asks of the `accesstoken` metadata).
    pub fn is_valid_token(&self, token: &str) -> bool {
        lock(&self.inner.shared.state).is_valid_token(token)
    }

    /// Number of access tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.inner.shared.state).tokens_issued()
    }

    /// Tokens issued from now on expire `lifetime` after issue (emulator clock); `None` (the
    /// default) means they only die when revoked.
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        lock(&self.inner.shared.state).token_lifetime = lifetime;
    }

    /// Moves the emulator's clock forward (for JWT `exp` and token lifetime checks).
    pub fn advance_clock(&self, by: Duration) {
        lock(&self.inner.shared.state).advance_clock(by);
    }

    /// The emulator's current time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        lock(&self.inner.shared.state).now()
    }

    /// All conversations, in order of creation.
    pub fn conversations(&self) -> Vec<EmulatedConversation> {
        lock(&self.inner.shared.state).conversations.clone()
    }

    /// The conversation with `conversation_identifier`, if any.
    pub fn conversation(&self, conversation_identifier: &str) -> Option<EmulatedConversation> {
        let state = lock(&self.inner.shared.state);
        state
            .conversation_index(conversation_identifier)
            .map(|i| state.conversations[i].clone())
    }

    /// The conversation of `end_user_client_id` on `channel_address_identifier`, if any.
    pub fn conversation_of(
        &self,
        channel_address_identifier: &str,
        end_user_client_id: &str,
    ) -> Option<EmulatedConversation> {
        let state = lock(&self.inner.shared.state);
        state
            .conversation_index_of(channel_address_identifier, end_user_client_id)
            .map(|i| state.conversations[i].clone())
    }

    /// A rep starts a conversation with an end user on a channel from Salesforce (an outbound
    /// conversation): the conversation of (`channel_address_identifier`,
    /// `end_user_client_id`) is looked up or created with an open session, as `/conversation`
    /// does, so the rep can then message them. Returns it.
    pub fn rep_opens_conversation(
        &self,
        channel_address_identifier: &str,
        end_user_client_id: &str,
    ) -> EmulatedConversation {
        let mut state = lock(&self.inner.shared.state);
        let (index, _) = state.open_conversation(channel_address_identifier, end_user_client_id);
        state.conversations[index].clone()
    }

    /// Capabilities registered with `PATCH /capabilities`, keyed by AuthorizationContext.
    pub fn capabilities(&self) -> BTreeMap<String, Value> {
        lock(&self.inner.shared.state).capabilities.clone()
    }

    /// Keeps a file a rep attached and returns it with its download URL (see
    /// [`FILE_DOWNLOAD_PATH`]).
    pub fn store_rep_file(
        &self,
        name: &str,
        mime_type: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> RepFile {
        let mut state = lock(&self.inner.shared.state);
        let id = state.record_id(state::CONTENT_VERSION_PREFIX);
        let file = RepFile {
            url: format!("{}{FILE_DOWNLOAD_PATH}/{id}", self.base_url()),
            id: id.clone(),
            name: name.to_owned(),
            mime_type: mime_type.to_owned(),
            bytes: bytes.into(),
        };
        state.rep_files.insert(id, file.clone());
        file
    }

    /// The files reps attached, by id order.
    pub fn rep_files(&self) -> Vec<RepFile> {
        lock(&self.inner.shared.state)
            .rep_files
            .values()
            .cloned()
            .collect()
    }

    /// Plays a rep ending the session `session_id` in the console. Returns false when no open
    /// session has that id.
    pub fn rep_ends_session(&self, session_id: &str) -> bool {
        lock(&self.inner.shared.state).end_session(session_id, "Agent")
    }

    /// Plays a rep accepting the AgentWork `agent_work_id` in the console. Returns false when
    /// no assigned AgentWork has that id.
    pub fn rep_accepts_work(&self, agent_work_id: &str) -> bool {
        lock(&self.inner.shared.state).accept_work(agent_work_id)
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
