//! A strict emulator of Salesforce's Pub/Sub API (`eventbus.v1.PubSub`): the gRPC server
//! byocd subscribes to for rep activity, serving custom platform event topics.
//!
//! It is a real tonic server on `127.0.0.1:0` (HTTP/2 without TLS) implementing `GetTopic`,
//! `GetSchema` and `Subscribe`. Tests publish events with [`PubSubEmulator::publish`] (or through
//! [`crate::sandbox::rep::Rep`]), and can end streams, refuse calls as unauthenticated and read
//! every `FetchRequest` received.
//!
//! # Behaviour
//!
//! - Every call must carry the metadata `accesstoken` (a token the [`TokenCheck`] accepts and
//!   not refused by [`PubSubEmulator::revoke_tokens`]), `instanceurl` (an `http(s)://` URL);
//!   either missing or bad is `UNAUTHENTICATED`. `tenantid` must be the org id (15
//!   characters, or its 18-character form), else `PERMISSION_DENIED`.
//! - `GetTopic` of an unknown topic is `NOT_FOUND`; `GetSchema` of an unknown id is
//!   `NOT_FOUND`. A topic's schema is a record with `CreatedDate` (long, epoch milliseconds),
//!   `CreatedById` (string) and the configured event-type and payload fields as
//!   `["null", "string"]`; its id is derived from the schema text, so it is stable.
//! - `Subscribe`: the first `FetchRequest` must name a known topic (`INVALID_ARGUMENT` when
//!   empty, `NOT_FOUND` when unknown); a later one naming another topic is `INVALID_ARGUMENT`.
//!   `LATEST` starts after the newest event, `EARLIEST` at the oldest retained one, `CUSTOM`
//!   after the event whose replay id is given; a replay id that is not 8 bytes, lies ahead of
//!   the newest event or before the retained ones is `INVALID_ARGUMENT`.
//! - Flow control is exact: the stream never carries more events than the `num_requested`
//!   credit received so far. Outstanding credit is capped at [`MAX_PENDING_REQUESTED`] (the
//!   documented limit: more is treated as 100); a negative `num_requested` is
//!   `INVALID_ARGUMENT`. `pending_num_requested` of a response is the credit left after it.
//! - Events go out as soon as there is credit, as many per response as the credit allows.
//!   Each carries the topic's `schema_id`, a UUID `id` and the Avro binary record; its
//!   `replay_id` is an 8-byte big-endian sequence number (per topic, not starting at 1).
//! - When nothing was sent for `keepalive_interval` (no event or no credit), the stream gets
//!   an empty `FetchResponse` whose `latest_replay_id` is the stream's position: the replay id
//!   of the last event it delivered, or where it started. It never points past an event the
//!   stream has not delivered, so storing it cannot lose events.
//! - The token is checked again before every response: once it is refused (revoked in the
//!   Salesforce emulator, or by [`PubSubEmulator::revoke_tokens`]) the stream ends with
//!   `UNAUTHENTICATED`, as Salesforce ends streams whose session expired. A non-empty
//!   `auth_refresh` in a later `FetchRequest` replaces the stream's token when valid.
//! - The stream keeps running after the client half-closes its request stream.
//! - With [`PubSubSettings::headers_with_first_response`] the response headers of `Subscribe`
//!   go out only with the stream's first response (an event or a keep-alive), as a server that
//!   holds them back may do; a client that waits for headers waits that long.
//!
//! # Injection
//!
//! [`PubSubEmulator::end_streams`] ends the next N streams with `UNAVAILABLE` right after
//! their next response; [`PubSubEmulator::inject_unauthenticated`] answers the next N calls
//! with `UNAUTHENTICATED` before any check; [`PubSubEmulator::revoke_tokens`] refuses every
//! token presented so far.

mod schema;
mod service;

use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::sandbox::salesforce::SalesforceEmulator;
use schema::{EventFields, EventSchema};

/// The keep-alive interval of the real service (an empty response "within 270 seconds").
pub const REAL_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(270);

/// The keep-alive interval [`PubSubSettings::new`] sets: short, for tests.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// The most events a subscription may have requested and not yet received.
pub const MAX_PENDING_REQUESTED: i32 = 100;

/// The `CreatedById` of published events: the org's Automated Process user.
pub const AUTOMATED_PROCESS_USER_ID: &str = "005000000000APU";

/// Length of a replay id: a big-endian `u64`.
pub const REPLAY_ID_LEN: usize = 8;

/// How long [`PubSubEmulator::shutdown`] waits for the server before aborting it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Which access tokens the emulator accepts.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    /// Any non-empty token (for unit tests).
    Any,
    /// Exactly the tokens this Salesforce emulator issued and still considers valid.
    Salesforce(SalesforceEmulator),
    /// Exactly these tokens.
    Fixed(Vec<String>),
}

impl TokenCheck {
    fn accepts(&self, token: &str) -> bool {
        if token.is_empty() {
            return false;
        }
        match self {
            Self::Any => true,
            Self::Salesforce(salesforce) => salesforce.is_valid_token(token),
            Self::Fixed(tokens) => tokens.iter().any(|t| t == token),
        }
    }
}

/// One custom platform event topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// `/event/<API name>`, e.g. `/event/Acme_Event__e`.
    pub topic_name: String,
    /// API name of the event-type field, e.g. `EventType__c`.
    pub event_type_field: String,
    /// API name of the payload field, e.g. `Payload__c`.
    pub payload_field: String,
}

impl TopicSettings {
    /// A topic with the fields `EventType__c` and `Payload__c`.
    pub fn new(topic_name: &str) -> Self {
        Self {
            topic_name: topic_name.to_owned(),
            event_type_field: "EventType__c".to_owned(),
            payload_field: "Payload__c".to_owned(),
        }
    }
}

/// What the emulated Pub/Sub service looks like.
#[derive(Debug, Clone)]
pub struct PubSubSettings {
    /// The org id `tenantid` must name (15 characters).
    pub org_id: String,
    /// The topics served.
    pub topics: Vec<TopicSettings>,
    /// How long a stream stays silent before a keep-alive.
    pub keepalive_interval: Duration,
    /// Which `accesstoken` values are valid.
    pub token_check: TokenCheck,
    /// How many events each topic retains (oldest dropped first); `None` keeps all.
    pub retention: Option<usize>,
    /// Hold `Subscribe`'s response headers back until the stream's first response.
    pub headers_with_first_response: bool,
}

impl PubSubSettings {
    /// Settings with [`DEFAULT_KEEPALIVE_INTERVAL`] and unlimited retention.
    pub fn new(org_id: &str, topics: Vec<TopicSettings>, token_check: TokenCheck) -> Self {
        Self {
            org_id: org_id.to_owned(),
            topics,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            token_check,
            retention: None,
            headers_with_first_response: false,
        }
    }
}

/// An event published on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The topic, e.g. `/event/Acme_Event__e`.
    pub topic_name: String,
    /// The 8-byte replay id.
    pub replay_id: Vec<u8>,
    /// The `ProducerEvent.id` (a UUID).
    pub event_id: String,
    /// The event-type field (`Interaction`, `RoutingRequested`), if set.
    pub event_type: Option<String>,
    /// The payload field (a JSON string), if set.
    pub payload: Option<String>,
    /// `CreatedDate`, epoch milliseconds.
    pub created_date_ms: i64,
    /// The Avro binary record as sent.
    pub avro: Vec<u8>,
}

/// One `FetchRequest` received, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedFetchRequest {
    /// The stream it came on (numbered from 1 in order of subscription).
    pub stream: u64,
    /// Whether it was the stream's first request.
    pub first: bool,
    /// `topic_name` as sent (may be empty after the first).
    pub topic_name: String,
    /// `replay_preset` as sent (0 `LATEST`, 1 `EARLIEST`, 2 `CUSTOM`).
    pub replay_preset: i32,
    /// `replay_id` as sent.
    pub replay_id: Vec<u8>,
    /// `num_requested` as sent.
    pub num_requested: i32,
    /// Whether `auth_refresh` was set (its value is not kept).
    pub auth_refresh: bool,
}

/// Why [`PubSubEmulator::try_publish`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
}

/// A topic and its retained events.
struct Topic {
    settings: TopicSettings,
    schema: EventSchema,
    /// Sequence number of the newest event (the base before any).
    latest: u64,
    /// Retained events, oldest first.
    events: VecDeque<StoredEvent>,
}

impl Topic {
    /// The position before the oldest retained event.
    fn earliest_position(&self) -> u64 {
        self.events.front().map_or(self.latest, |e| e.seq - 1)
    }
}

#[derive(Clone)]
struct StoredEvent {
    seq: u64,
    id: String,
    avro: Vec<u8>,
}

struct State {
    topics: Vec<Topic>,
    retention: Option<usize>,
    published: Vec<PublishedEvent>,
    fetch_requests: Vec<LoggedFetchRequest>,
    seen_tokens: HashSet<String>,
    revoked_tokens: HashSet<String>,
}

impl State {
    fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.settings.topic_name == name)
    }

    fn apply_retention(&mut self) {
        if let Some(keep) = self.retention {
            for topic in &mut self.topics {
                while topic.events.len() > keep {
                    topic.events.pop_front();
                }
            }
        }
    }
}

/// What the service and the handle share.
pub(crate) struct Shared {
    org_id: String,
    keepalive_interval: Duration,
    headers_with_first_response: bool,
    token_check: TokenCheck,
    state: Mutex<State>,
    /// Bumped on every publish; streams wait on it.
    published_tx: watch::Sender<u64>,
    cancel: CancellationToken,
    streams_to_end: AtomicU32,
    unauthenticated: AtomicU32,
    active_streams: AtomicUsize,
    events_sent: AtomicUsize,
    next_stream: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Whether `token` is accepted now.
    fn token_ok(&self, token: &str) -> bool {
        !self.state().revoked_tokens.contains(token) && self.token_check.accepts(token)
    }

    /// Takes one unit of `counter` if any is left.
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Handle on a running emulator; clones share the same server.
#[derive(Clone)]
pub struct PubSubEmulator {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PubSubEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubEmulator")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl PubSubEmulator {
    /// Starts the emulator on `127.0.0.1:0`. Fails with `InvalidInput` when a topic name is
    /// not `/event/<valid Avro name>`, a field name is not a valid Avro name, or two topics
    /// share a name.
    pub async fn start(settings: PubSubSettings) -> std::io::Result<Self> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mut topics: Vec<Topic> = Vec::new();
        for topic in &settings.topics {
            if topics
                .iter()
                .any(|t| t.settings.topic_name == topic.topic_name)
            {
                return Err(invalid(format!("topic {} given twice", topic.topic_name)));
            }
            let schema = EventSchema::for_topic(topic).map_err(invalid)?;
            topics.push(Topic {
                settings: topic.clone(),
                schema,
                latest: random_base(),
                events: VecDeque::new(),
            });
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (published_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            org_id: settings.org_id,
            keepalive_interval: settings.keepalive_interval,
            headers_with_first_response: settings.headers_with_first_response,
            token_check: settings.token_check,
            state: Mutex::new(State {
                topics,
                retention: settings.retention,
                published: Vec::new(),
                fetch_requests: Vec::new(),
                seen_tokens: HashSet::new(),
                revoked_tokens: HashSet::new(),
            }),
            published_tx,
            cancel: CancellationToken::new(),
            streams_to_end: AtomicU32::new(0),
            unauthenticated: AtomicU32::new(0),
            active_streams: AtomicUsize::new(0),
            events_sent: AtomicUsize::new(0),
            next_stream: AtomicU64::new(1),
        });
        let task = tokio::spawn(service::serve(listener, shared.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                addr,
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT` (plain HTTP/2).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The org id `tenantid` must name.
    pub fn org_id(&self) -> String {
        self.inner.shared.org_id.clone()
    }

    /// The schema id of `topic_name`'s schema, if the topic exists.
    pub fn schema_id(&self, topic_name: &str) -> Option<String> {
        self.inner
            .shared
            .state()
            .topic(topic_name)
            .map(|t| t.schema.id.clone())
    }

    /// The Avro schema JSON of `topic_name`, if the topic exists.
    pub fn schema_json(&self, topic_name: &str) -> Option<String> {
        self.inner
            .shared
            .state()
            .topic(topic_name)
            .map(|t| t.schema.json.clone())
    }

    /// The settings of `topic_name`, if the topic exists.
    pub fn topic(&self, topic_name: &str) -> Option<TopicSettings> {
        self.inner
            .shared
            .state()
            .topic(topic_name)
            .map(|t| t.settings.clone())
    }

    /// The first topic (the one a single-channel test uses).
    pub fn first_topic(&self) -> Option<TopicSettings> {
        self.inner
            .shared
            .state()
            .topics
            .first()
            .map(|t| t.settings.clone())
    }

    /// Publishes an event with both fields set and returns its replay id.
    ///
    /// # Panics
    ///
    /// When `topic_name` is not a topic of the emulator (a mistake in the test).
    pub fn publish(&self, topic_name: &str, event_type: &str, payload_json: &str) -> Vec<u8> {
        self.try_publish(topic_name, Some(event_type), Some(payload_json))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Publishes an event whose fields may be null and returns its replay id.
    pub fn try_publish(
        &self,
        topic_name: &str,
        event_type: Option<&str>,
        payload_json: Option<&str>,
    ) -> Result<Vec<u8>, PublishError> {
        let shared = &self.inner.shared;
        let created_date_ms = chrono::Utc::now().timestamp_millis();
        let mut state = shared.state();
        let topic = state
            .topics
            .iter_mut()
            .find(|t| t.settings.topic_name == topic_name)
            .ok_or_else(|| PublishError::UnknownTopic(topic_name.to_owned()))?;
        let avro = topic.schema.encode(
            &topic.settings,
            &EventFields {
                created_date_ms,
                created_by_id: AUTOMATED_PROCESS_USER_ID,
                event_type,
                payload: payload_json,
            },
        );
        topic.latest += 1;
        let seq = topic.latest;
        let event_id = uuid::Uuid::new_v4().to_string();
        topic.events.push_back(StoredEvent {
            seq,
            id: event_id.clone(),
            avro: avro.clone(),
        });
        let replay_id = replay_id(seq);
        state.published.push(PublishedEvent {
            topic_name: topic_name.to_owned(),
            replay_id: replay_id.clone(),
            event_id,
            event_type: event_type.map(str::to_owned),
            payload: payload_json.map(str::to_owned),
            created_date_ms,
            avro,
        });
        state.apply_retention();
        drop(state);
        shared.published_tx.send_modify(|n| *n += 1);
        Ok(replay_id)
    }

    /// Every event published, in order (including those no longer retained).
    pub fn published(&self) -> Vec<PublishedEvent> {
        self.inner.shared.state().published.clone()
    }

    /// Sets how many events each topic retains (`None`: all) and drops the excess now.
    pub fn set_retention(&self, events: Option<usize>) {
        let mut state = self.inner.shared.state();
        state.retention = events;
        state.apply_retention();
    }

    /// Every `FetchRequest` received, in order of arrival.
    pub fn fetch_requests(&self) -> Vec<LoggedFetchRequest> {
        self.inner.shared.state().fetch_requests.clone()
    }

    /// How many events all streams have carried so far.
    pub fn events_sent(&self) -> usize {
        self.inner.shared.events_sent.load(Ordering::SeqCst)
    }

    /// How many `Subscribe` streams are open now.
    pub fn active_streams(&self) -> usize {
        self.inner.shared.active_streams.load(Ordering::SeqCst)
    }

    /// How many `Subscribe` streams were opened so far (including refused ones).
    pub fn streams_opened(&self) -> u64 {
        self.inner.shared.next_stream.load(Ordering::SeqCst) - 1
    }

    /// The next `times` streams (open or new) end with `UNAVAILABLE` right after their next
    /// response (event batch or keep-alive).
    pub fn end_streams(&self, times: u32) {
        self.inner
            .shared
            .streams_to_end
            .fetch_add(times, Ordering::SeqCst);
    }

    /// The next `times` calls (any rpc) answer `UNAUTHENTICATED` before any check.
    pub fn inject_unauthenticated(&self, times: u32) {
        self.inner
            .shared
            .unauthenticated
            .fetch_add(times, Ordering::SeqCst);
    }

    /// Every token presented so far is refused from now on: calls answer `UNAUTHENTICATED`
    /// and open streams end with it at their next response. A freshly minted token works.
    /// (With [`TokenCheck::Salesforce`], [`SalesforceEmulator::revoke_tokens`] has the same
    /// effect on the tokens it issued.)
    pub fn revoke_tokens(&self) {
        let mut state = self.inner.shared.state();
        let seen: Vec<String> = state.seen_tokens.iter().cloned().collect();
        state.revoked_tokens.extend(seen);
    }

    /// Stops the server: open streams end with `UNAVAILABLE`.
    pub async fn shutdown(self) {
        self.inner.shared.cancel.cancel();
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The 8-byte big-endian replay id of sequence number `seq`.
pub fn replay_id(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// The sequence number of an 8-byte replay id.
pub fn replay_seq(replay_id: &[u8]) -> Option<u64> {
    <[u8; REPLAY_ID_LEN]>::try_from(replay_id)
        .ok()
        .map(u64::from_be_bytes)
}

/// Lowest first sequence number of a topic, so replay ids do not look like counts.
const REPLAY_BASE_MIN: u64 = 1_000;
/// Spread of the random first sequence number.
const REPLAY_BASE_SPREAD: u128 = 1_000_000;

fn random_base() -> u64 {
    let spread = uuid::Uuid::new_v4().as_u128() % REPLAY_BASE_SPREAD;
    REPLAY_BASE_MIN + u64::try_from(spread).unwrap_or(0)
}

/// Locks a mutex, ignoring poisoning.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `tenant` names the org `org_id`: equal, or its 18-character form.
fn tenant_matches(org_id: &str, tenant: &str) -> bool {
    tenant == org_id || (tenant.len() == 18 && org_id.len() == 15 && to_18(org_id) == tenant)
}

/// The 18-character form of a 15-character Salesforce id (case-encoding suffix).
fn to_18(id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = id.to_owned();
    for chunk in id.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        out.push(char::from(ALPHABET[bits]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_character_ids() {
        assert_eq!(to_18("00D000000000001"), "00D000000000001EAA");
        assert_eq!(to_18("001A0000006Vm9r"), "001A0000006Vm9rIAC");
        assert!(tenant_matches("00D000000000001", "00D000000000001EAA"));
        assert!(!tenant_matches("00D000000000001", "00D000000000002"));
    }

    #[test]
    fn replay_ids_are_big_endian() {
        assert_eq!(replay_id(258), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(replay_seq(&replay_id(7)), Some(7));
        assert_eq!(replay_seq(b"abc"), None);
    }
}
