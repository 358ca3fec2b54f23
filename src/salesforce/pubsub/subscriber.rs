//! One subscription per org and platform event: `GetTopic` → `GetSchema` (cached by schema id)
//! → `Subscribe`, resuming from the stored replay id.
//!
//! - **Flow control.** The stream carries at most the credit given; the subscriber asks for
//!   more (`FetchRequest` with only `num_requested`) whenever half of it has been used, so the
//!   stream never stalls.
//! - **Commit before credit.** Each response's events are decoded, turned into outbox rows and
//!   committed **together with the replay id** of the last event (one transaction) before more
//!   credit is asked for. After a crash the subscription resumes (`CUSTOM`) after the last
//!   committed event: nothing is lost and nothing is relayed twice.
//! - **Keep-alives** (empty responses) carry the latest replay id; it is stored, and they prove
//!   the stream is alive.
//! - **Failures.** A stream that ends or fails is reopened with exponential backoff and jitter;
//!   `UNAUTHENTICATED` re-mints the token (single-flight) first. A stored position older than the
//!   platform's retention raises an alert: events may have been lost.
//! - **A position the platform no longer keeps.** When the stream refuses the stored replay id
//!   (`INVALID_ARGUMENT` on a `CUSTOM` subscription: the event is past the retention, or the id
//!   is corrupt), the subscription falls back to `EARLIEST` — every event the platform still
//!   keeps, all newer than the stored position — and raises a `pubsub.gap` alert that records
//!   the refused replay id and when it was stored: events published between then and the
//!   oldest event still kept may have been missed. Nothing newer is lost.

use std::{collections::HashMap, sync::Arc, time::Duration};

use apache_avro::{Schema, types::Value as Avro};
use serde_json::json;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, metadata::MetadataValue, transport::Endpoint};

use super::proto::{
    FetchRequest, ReplayPreset, SchemaRequest, TopicRequest, pub_sub_client::PubSubClient,
};
use crate::{
    clock::SharedClock,
    config::{ChannelConfig, InitialReplay, OrgConfig, PubSubSettings},
    salesforce::{
        auth::{AccessToken, TokenManager},
        events,
    },
    store::{AnyStore, AuditEntry, OutboundBatch, OutboundIntake, Severity, Store},
};

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a subscription needs.
#[derive(Clone)]
pub struct Subscription {
    /// The org.
    pub org: OrgConfig,
    /// The topic, `/event/<platform event>`.
    pub topic: String,
    /// The channels whose platform event this is.
    pub channels: Vec<ChannelConfig>,
    /// `[pubsub]` settings.
    pub settings: PubSubSettings,
}

/// Liveness of a subscription, for readiness and metrics.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    /// When the stream last answered (events or keep-alive).
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last event was committed.
    pub last_event: Option<chrono::DateTime<chrono::Utc>>,
    /// Events committed since start.
    pub events: u64,
    /// `Subscribe` calls made since start, each after `GetTopic` was answered (the token, the
    /// tenant and the permission to subscribe accepted). The stream may not have answered yet:
    /// a server may hold its response headers back until the first event or keep-alive.
    pub subscribes: u64,
    /// Streams opened since start (their response headers arrived).
    pub streams: u64,
    /// Stream attempts that failed since start (connect, token, or the stream broke).
    pub failures: u64,
}

/// A running subscriber.
#[derive(Clone)]
pub struct Subscriber {
    sub: Arc<Subscription>,
    store: AnyStore,
    tokens: TokenManager,
    clock: SharedClock,
    wake: Arc<Notify>,
    schemas: Arc<Mutex<HashMap<String, Schema>>>,
    liveness: Arc<std::sync::Mutex<Liveness>>,
    /// Set after the stored replay id was refused: streams start at `EARLIEST` until one has
    /// answered (and a position newer than the refused one is stored).
    from_earliest: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("token: {0}")]
    Token(String),
    #[error("connecting to {endpoint} failed: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{0}")]
    Status(tonic::Status),
    #[error("the stored replay id was refused: {status}")]
    ReplayRefused {
        status: tonic::Status,
        replay_id: Vec<u8>,
        stored_at: chrono::DateTime<chrono::Utc>,
    },
    #[error("{0}")]
    Other(String),
}

impl From<tonic::Status> for StreamError {
    fn from(status: tonic::Status) -> Self {
        Self::Status(status)
    }
}

impl Subscriber {
    /// A subscriber for `sub`; committed work wakes `wake`.
    pub fn new(
        sub: Subscription,
        store: AnyStore,
        tokens: TokenManager,
        clock: SharedClock,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            sub: Arc::new(sub),
            store,
            tokens,
            clock,
            wake,
            schemas: Arc::default(),
            liveness: Arc::default(),
            from_earliest: Arc::default(),
        }
    }

    /// What the subscription has done so far.
    pub fn liveness(&self) -> Liveness {
        self.liveness.lock().expect("liveness lock").clone()
    }

    /// Runs until `cancel`: opens the stream, and reopens it with backoff whenever it ends.
    pub async fn run(self, cancel: CancellationToken) {
        let org_id = self.sub.org.org_id.as_str().to_owned();
        let mut backoff = FIRST_BACKOFF;
        tracing::info!(org_id, topic = %self.sub.topic, "pubsub: subscribing");
        self.check_gap().await;
        while !cancel.is_cancelled() {
            let opened_before = self.liveness().streams;
            let attempt = tokio::select! {
                () = cancel.cancelled() => break,
                r = self.attempt(&cancel) => r,
            };
            // A stream that opened and was then cut (a server restart, a load balancer) is a
            // normal end, not a failure to connect: the backoff starts again from its first
            // step, so streams cut every few seconds do not push reconnects towards a minute.
            if self.liveness().streams > opened_before {
                backoff = FIRST_BACKOFF;
            }
            match attempt {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err((StreamError::Status(status), Some(used)))
                    if status.code() == Code::Unauthenticated =>
                {
                    self.liveness.lock().expect("liveness lock").failures += 1;
                    tracing::warn!(org_id, "pubsub: token refused; re-minting");
                    // Report the token this stream was opened with, not whatever is current
                    // now: when several streams (and ISA calls) saw the same token refused,
                    // the first report mints and the others get that fresh token back.
                    if let Err(e) = self.tokens.token_rejected(&org_id, &used).await {
                        tracing::error!(org_id, error = %e, "pubsub: re-minting failed");
                    }
                }
                Err((
                    StreamError::ReplayRefused {
                        status,
                        replay_id,
                        stored_at,
                    },
                    _,
                )) => {
                    self.liveness.lock().expect("liveness lock").failures += 1;
                    self.fall_back(&status, &replay_id, stored_at).await;
                }
                Err((e, _)) => {
                    self.liveness.lock().expect("liveness lock").failures += 1;
                    tracing::warn!(org_id, topic = %self.sub.topic, error = %e, retry_in = ?backoff, "pubsub: stream ended");
                    let jitter = backoff.mul_f64(0.2 * unit_random());
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff + jitter) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            // A clean end or a re-mint: reopen promptly but not in a tight loop.
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(FIRST_BACKOFF) => {}
            }
        }
        tracing::info!(org_id, topic = %self.sub.topic, "pubsub: stopped");
    }

    /// The stored replay id was refused: the next streams start at `EARLIEST`, and an alert
    /// records what may have been missed.
    async fn fall_back(
        &self,
        status: &tonic::Status,
        replay_id: &[u8],
        stored_at: chrono::DateTime<chrono::Utc>,
    ) {
        use std::sync::atomic::Ordering;
        let org_id = self.sub.org.org_id.as_str();
        self.from_earliest.store(true, Ordering::SeqCst);
        let replay_hex = hex::encode(replay_id);
        let message = format!(
            "subscription {} of org {org_id}: the platform refused the stored replay id {replay_hex} \
             (stored {}; {}): resuming from the earliest event it still keeps; events published \
             between then and that event may have been missed",
            self.sub.topic,
            stored_at.to_rfc3339(),
            status.message()
        );
        tracing::error!("{message}");
        let entry = AuditEntry::new("pubsub.gap", message)
            .severity(Severity::Alert)
            .org(org_id)
            .detail(json!({
                "topic": self.sub.topic,
                "age_hours": (self.clock.now() - stored_at).num_hours(),
                "refused_replay_id": replay_hex,
                "stored_at": stored_at.to_rfc3339(),
                "resumed_from": "earliest",
            }));
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not write an audit row");
        }
    }

    /// Alerts when the stored position is older than the platform keeps events.
    async fn check_gap(&self) {
        let org_id = self.sub.org.org_id.as_str();
        let Ok(Some(cursor)) = self.store.cursor(org_id, &self.sub.topic).await else {
            return;
        };
        let age = self.clock.now() - cursor.updated_at;
        let retention = chrono::Duration::from_std(self.sub.settings.retention).unwrap_or_default();
        if age > retention {
            let message = format!(
                "subscription {} of org {org_id} resumes after {} h, longer than the platform keeps events ({} h): events may have been lost",
                self.sub.topic,
                age.num_hours(),
                retention.num_hours()
            );
            tracing::error!("{message}");
            let entry = AuditEntry::new("pubsub.gap", message)
                .severity(Severity::Alert)
                .org(org_id)
                .detail(json!({ "topic": self.sub.topic, "age_hours": age.num_hours() }));
            if let Err(e) = self.store.append_audit(&entry).await {
                tracing::error!(error = %e, "could not write an audit row");
            }
        }
    }

    /// One stream: a token, then [`Self::stream`] with it. A failure comes back with the token
    /// the stream used (none when no token could be had), so a refusal reports that token.
    async fn attempt(
        &self,
        cancel: &CancellationToken,
    ) -> Result<(), (StreamError, Option<AccessToken>)> {
        let token = self
            .tokens
            .token(self.sub.org.org_id.as_str())
            .await
            .map_err(|e| (StreamError::Token(e.to_string()), None))?;
        self.stream(&token, cancel)
            .await
            .map_err(|e| (e, Some(token)))
    }

    async fn stream(
        &self,
        token: &AccessToken,
        cancel: &CancellationToken,
    ) -> Result<(), StreamError> {
        let org = &self.sub.org;
        let org_id = org.org_id.as_str().to_owned();
        let instance_url = org
            .instance_url
            .clone()
            .or_else(|| token.instance_url().map(str::to_owned))
            .unwrap_or_else(|| org.login_url.clone());
        let endpoint = org.pubsub_endpoint.clone();
        let mut builder =
            Endpoint::from_shared(endpoint.clone()).map_err(|e| StreamError::Connect {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        if endpoint.starts_with("https://") {
            builder = builder
                .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
                .map_err(|e| StreamError::Connect {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                })?;
        }
        let channel = builder
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| StreamError::Connect {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        let metadata = Metadata {
            token: MetadataValue::try_from(token.expose())
                .map_err(|e| StreamError::Token(e.to_string()))?,
            instance_url: MetadataValue::try_from(instance_url.as_str())
                .map_err(|e| StreamError::Other(format!("instance url: {e}")))?,
            tenant: MetadataValue::try_from(org_id.as_str())
                .map_err(|e| StreamError::Other(format!("org id: {e}")))?,
        };
        let mut client = PubSubClient::new(channel);

        let topic = client
            .get_topic(metadata.request(TopicRequest {
                topic_name: self.sub.topic.clone(),
            }))
            .await?
            .into_inner();
        if !topic.can_subscribe {
            return Err(StreamError::Other(format!(
                "the integration user may not subscribe to {}",
                self.sub.topic
            )));
        }

        let cursor = self
            .store
            .cursor(&org_id, &self.sub.topic)
            .await
            .map_err(|e| StreamError::Other(e.to_string()))?;
        let from_earliest = self.from_earliest.load(std::sync::atomic::Ordering::SeqCst);
        let stored = cursor.as_ref().map(|c| (c.replay_id.clone(), c.updated_at));
        let (preset, replay_id) = match cursor {
            Some(_) if from_earliest => (ReplayPreset::Earliest, Vec::new()),
            Some(c) => (ReplayPreset::Custom, c.replay_id),
            None => match self.sub.settings.initial_replay {
                InitialReplay::Latest => (ReplayPreset::Latest, Vec::new()),
                InitialReplay::Earliest => (ReplayPreset::Earliest, Vec::new()),
            },
        };
        let credit = self.sub.settings.num_requested;
        let (requests, outgoing) = mpsc::channel(16);
        requests
            .send(FetchRequest {
                topic_name: self.sub.topic.clone(),
                replay_preset: preset as i32,
                replay_id,
                num_requested: credit,
                auth_refresh: String::new(),
            })
            .await
            .map_err(|_| StreamError::Other("request channel closed".into()))?;
        self.liveness.lock().expect("liveness lock").subscribes += 1;
        // The stored position is checked when the stream opens or with its first answer.
        let refused = |status: tonic::Status| match &stored {
            Some((replay_id, stored_at))
                if preset == ReplayPreset::Custom && status.code() == Code::InvalidArgument =>
            {
                StreamError::ReplayRefused {
                    status,
                    replay_id: replay_id.clone(),
                    stored_at: *stored_at,
                }
            }
            _ => StreamError::Status(status),
        };
        let mut stream = client
            .subscribe(metadata.request(ReceiverStream::new(outgoing)))
            .await
            .map_err(refused)?
            .into_inner();
        self.liveness.lock().expect("liveness lock").streams += 1;
        let mut remaining = credit;
        let mut first = true;

        loop {
            let response = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                r = stream.message() => match r {
                    Ok(r) => r,
                    Err(status) if first => return Err(refused(status)),
                    Err(status) => return Err(status.into()),
                },
            };
            if first && response.is_some() {
                first = false;
                // An answer from `EARLIEST`: what it carries is stored as it is committed.
                self.from_earliest
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            }
            let Some(response) = response else {
                return Err(StreamError::Other("the server ended the stream".into()));
            };
            self.liveness.lock().expect("liveness lock").last_seen = Some(self.clock.now());
            if response.events.is_empty() {
                if !response.latest_replay_id.is_empty() {
                    self.store
                        .advance_cursor(&org_id, &self.sub.topic, &response.latest_replay_id)
                        .await
                        .map_err(|e| StreamError::Other(e.to_string()))?;
                }
            } else {
                let count = response.events.len() as i32;
                let mut intakes = Vec::new();
                let mut last_replay = Vec::new();
                for event in &response.events {
                    last_replay.clone_from(&event.replay_id);
                    let Some(producer) = &event.event else {
                        continue;
                    };
                    let schema = self
                        .schema(&mut client, &metadata, &producer.schema_id)
                        .await?;
                    match self.decode(&schema, &producer.payload) {
                        Ok(Some(intake)) => intakes.push(intake),
                        Ok(None) => {}
                        Err(reason) => self.audit_unreadable(&producer.id, &reason).await,
                    }
                }
                let report = crate::domain::outbound::accept(
                    &self.store,
                    &OutboundBatch {
                        org_id: org_id.clone(),
                        topic: self.sub.topic.clone(),
                        replay_id: last_replay,
                        events: intakes,
                    },
                )
                .await
                .map_err(|e| StreamError::Other(e.to_string()))?;
                if report.outbox_rows > 0 {
                    self.wake.notify_one();
                }
                {
                    let mut liveness = self.liveness.lock().expect("liveness lock");
                    liveness.events += u64::from(count.unsigned_abs());
                    liveness.last_event = Some(self.clock.now());
                }
                remaining -= count;
            }
            // Keep credit topped up: ask for more once half is used.
            if remaining <= credit / 2 {
                let more = credit - remaining;
                requests
                    .send(FetchRequest {
                        num_requested: more,
                        ..FetchRequest::default()
                    })
                    .await
                    .map_err(|_| StreamError::Other("request channel closed".into()))?;
                remaining = credit;
            }
        }
    }

    async fn schema(
        &self,
        client: &mut PubSubClient<tonic::transport::Channel>,
        metadata: &Metadata,
        schema_id: &str,
    ) -> Result<Schema, StreamError> {
        if let Some(schema) = self.schemas.lock().await.get(schema_id) {
            return Ok(schema.clone());
        }
        let info = client
            .get_schema(metadata.request(SchemaRequest {
                schema_id: schema_id.to_owned(),
            }))
            .await?
            .into_inner();
        let schema = Schema::parse_str(&info.schema_json)
            .map_err(|e| StreamError::Other(format!("schema {schema_id} is not Avro: {e}")))?;
        self.schemas
            .lock()
            .await
            .insert(schema_id.to_owned(), schema.clone());
        Ok(schema)
    }

    /// Decodes one event into the work it calls for; `Ok(None)` for events of no concern.
    fn decode(&self, schema: &Schema, payload: &[u8]) -> Result<Option<OutboundIntake>, String> {
        let record = apache_avro::from_avro_datum(schema, &mut &payload[..], None)
            .map_err(|e| format!("not Avro of the topic's schema: {e}"))?;
        let Avro::Record(fields) = record else {
            return Err("the event is not an Avro record".into());
        };
        // The field names come from the channel definition; channels sharing a topic share them.
        let channel = &self.sub.channels[0];
        let field = |name: &str| -> Option<String> {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| string_of(v))
        };
        let event_type = field(&channel.platform_event.event_type_field).ok_or_else(|| {
            format!(
                "field {} missing or empty",
                channel.platform_event.event_type_field
            )
        })?;
        let payload_json = field(&channel.platform_event.payload_field).ok_or_else(|| {
            format!(
                "field {} missing or empty",
                channel.platform_event.payload_field
            )
        })?;
        let event = events::parse(&event_type, &payload_json).map_err(|e| e.0)?;
        Ok(Some(crate::domain::outbound::plan(
            &self.sub.channels,
            event,
            self.clock.now(),
        )))
    }

    async fn audit_unreadable(&self, event_id: &str, reason: &str) {
        tracing::warn!(event_id, reason, "pubsub: event skipped");
        let entry = AuditEntry::new(
            "pubsub.event_unreadable",
            format!("platform event {event_id} could not be read and was skipped: {reason}"),
        )
        .severity(Severity::Warning)
        .actor("salesforce")
        .org(self.sub.org.org_id.as_str())
        .detail(json!({ "topic": self.sub.topic, "event_id": event_id, "reason": reason }));
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not write an audit row");
        }
    }
}

/// A string, or a string inside a union with null.
fn string_of(value: &Avro) -> Option<String> {
    match value {
        Avro::String(s) => Some(s.clone()),
        Avro::Union(_, inner) => string_of(inner),
        _ => None,
    }
}

struct Metadata {
    token: MetadataValue<tonic::metadata::Ascii>,
    instance_url: MetadataValue<tonic::metadata::Ascii>,
    tenant: MetadataValue<tonic::metadata::Ascii>,
}

impl Metadata {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let m = request.metadata_mut();
        m.insert("accesstoken", self.token.clone());
        m.insert("instanceurl", self.instance_url.clone());
        m.insert("tenantid", self.tenant.clone());
        request
    }
}

fn unit_random() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// The subscriptions the configuration calls for: one per org and platform event.
pub fn subscriptions(
    orgs: &[OrgConfig],
    channels: &[ChannelConfig],
    settings: &PubSubSettings,
) -> Vec<Subscription> {
    let mut out: Vec<Subscription> = Vec::new();
    for channel in channels {
        let topic = format!("/event/{}", channel.platform_event.name);
        let Some(org) = orgs.iter().find(|o| o.org_id == channel.org_id) else {
            continue;
        };
        match out
            .iter_mut()
            .find(|s| s.org.org_id == channel.org_id && s.topic == topic)
        {
            Some(sub) => sub.channels.push(channel.clone()),
            None => out.push(Subscription {
                org: org.clone(),
                topic,
                channels: vec![channel.clone()],
                settings: settings.clone(),
            }),
        }
    }
    out
}
