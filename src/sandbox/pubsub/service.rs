//! The gRPC side: metadata checks, `GetTopic`, `GetSchema`, and one task per `Subscribe`
//! stream that applies replay, flow control, keep-alives, token re-checks and injected ends.

use std::{pin::Pin, sync::Arc, sync::atomic::Ordering};

use tokio::{net::TcpListener, sync::mpsc, time::Instant};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming, metadata::MetadataMap};

use super::{
    LoggedFetchRequest, MAX_PENDING_REQUESTED, Shared, replay_id, replay_seq, tenant_matches,
};
use crate::salesforce::pubsub::proto::{
    ConsumerEvent, FetchRequest, FetchResponse, ProducerEvent, ReplayPreset, SchemaInfo,
    SchemaRequest, TopicInfo, TopicRequest,
    pub_sub_server::{PubSub, PubSubServer},
};

/// Responses buffered per stream before the task waits for the client.
const STREAM_BUFFER: usize = 16;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let cancel = shared.cancel.clone();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let result = tonic::transport::Server::builder()
        .add_service(PubSubServer::new(Service { shared }))
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "pub/sub emulator stopped with an error");
    }
}

struct Service {
    shared: Arc<Shared>,
}

fn rpc_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Service {
    /// Checks the call's metadata; returns the access token.
    fn authenticate(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let shared = &self.shared;
        if Shared::take(&shared.unauthenticated) {
            return Err(Status::unauthenticated("injected: authentication failed"));
        }
        let text = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let token = text("accesstoken")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("accesstoken metadata is missing"))?;
        shared.state().seen_tokens.insert(token.to_owned());
        if !shared.token_ok(token) {
            return Err(Status::unauthenticated(
                "accesstoken is not a valid session: invalid, revoked or expired",
            ));
        }
        let instance_url = text("instanceurl")
            .ok_or_else(|| Status::unauthenticated("instanceurl metadata is missing"))?;
        if !(instance_url.starts_with("https://") || instance_url.starts_with("http://")) {
            return Err(Status::unauthenticated(format!(
                "instanceurl {instance_url:?} is not a URL"
            )));
        }
        let tenant = text("tenantid")
            .ok_or_else(|| Status::permission_denied("tenantid metadata is missing"))?;
        if !tenant_matches(&shared.org_id, tenant) {
            return Err(Status::permission_denied(format!(
                "tenantid {tenant:?} is not the org of the session"
            )));
        }
        Ok(token.to_owned())
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PubSub for Service {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let stream_no = self.shared.next_stream.fetch_add(1, Ordering::SeqCst);
        let token = self.authenticate(request.metadata())?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shared = self.shared.clone();
        shared.active_streams.fetch_add(1, Ordering::SeqCst);
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let mut stream = Subscription {
                shared: shared.clone(),
                number: stream_no,
                token,
                tx,
            };
            stream.run(inbound).await;
            shared.active_streams.fetch_sub(1, Ordering::SeqCst);
        });
        let mut rx = ReceiverStream::new(rx);
        if !self.shared.headers_with_first_response {
            return Ok(Response::new(Box::pin(rx)));
        }
        // Headers go with the first response: nothing is answered until the stream has one.
        match rx.next().await {
            Some(first) => Ok(Response::new(Box::pin(tokio_stream::once(first).chain(rx)))),
            None => Err(Status::unavailable(
                "the stream ended before its first response",
            )),
        }
    }

    async fn get_schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> Result<Response<SchemaInfo>, Status> {
        self.authenticate(request.metadata())?;
        let schema_id = request.into_inner().schema_id;
        let state = self.shared.state();
        let schema = state
            .topics
            .iter()
            .map(|t| &t.schema)
            .find(|s| s.id == schema_id)
            .ok_or_else(|| Status::not_found(format!("no schema with id {schema_id:?}")))?;
        Ok(Response::new(SchemaInfo {
            schema_json: schema.json.clone(),
            schema_id: schema.id.clone(),
            rpc_id: rpc_id(),
        }))
    }

    async fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        self.authenticate(request.metadata())?;
        let topic_name = request.into_inner().topic_name;
        let state = self.shared.state();
        let topic = state
            .topic(&topic_name)
            .ok_or_else(|| Status::not_found(format!("no topic {topic_name:?}")))?;
        Ok(Response::new(TopicInfo {
            topic_name: topic.settings.topic_name.clone(),
            tenant_guid: self.shared.org_id.clone(),
            can_publish: true,
            can_subscribe: true,
            schema_id: topic.schema.id.clone(),
            rpc_id: rpc_id(),
        }))
    }
}

/// Why a stream stops.
enum Stop {
    /// End with this status.
    Fail(Status),
    /// The client went away (or the server task is gone): nothing to send.
    Gone,
}

/// One `Subscribe` stream.
struct Subscription {
    shared: Arc<Shared>,
    number: u64,
    token: String,
    tx: mpsc::Sender<Result<FetchResponse, Status>>,
}

/// Where a started subscription stands.
struct Position {
    topic_name: String,
    schema_id: String,
    /// Sequence number of the last event delivered (or the start position).
    cursor: u64,
    /// Credit left.
    credit: i32,
}

impl Subscription {
    async fn run(&mut self, mut inbound: Streaming<FetchRequest>) {
        let result = self.serve(&mut inbound).await;
        if let Err(Stop::Fail(status)) = result {
            let _ = self.tx.send(Err(status)).await;
        }
    }

    async fn serve(&mut self, inbound: &mut Streaming<FetchRequest>) -> Result<(), Stop> {
        let cancel = self.shared.cancel.clone();
        let mut published = self.shared.published_tx.subscribe();
        published.borrow_and_update();

        // The first request sets the topic and where to start.
        let first = tokio::select! {
            _ = cancel.cancelled() => return Err(shutting_down()),
            _ = self.tx.closed() => return Err(Stop::Gone),
            message = inbound.message() => match message {
                Ok(Some(request)) => request,
                Ok(None) | Err(_) => return Err(Stop::Gone),
            },
        };
        self.log(&first, true);
        let mut position = self.start(&first)?;
        self.add_credit(&mut position, first.num_requested)?;

        let interval = self.shared.keepalive_interval;
        let mut keepalive_at = Instant::now() + interval;
        let mut inbound_open = true;
        loop {
            if self.deliver(&mut position).await? {
                keepalive_at = Instant::now() + interval;
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(shutting_down()),
                _ = self.tx.closed() => return Err(Stop::Gone),
                message = inbound.message(), if inbound_open => match message {
                    Ok(Some(request)) => {
                        self.log(&request, false);
                        self.more(&mut position, &request)?;
                    }
                    // A half-closed request stream still receives what it asked for.
                    Ok(None) => inbound_open = false,
                    Err(_) => return Err(Stop::Gone),
                },
                changed = published.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Gone);
                    }
                }
                () = tokio::time::sleep_until(keepalive_at) => {
                    let keepalive = FetchResponse {
                        events: Vec::new(),
                        latest_replay_id: replay_id(position.cursor),
                        rpc_id: rpc_id(),
                        pending_num_requested: position.credit,
                    };
                    self.respond(keepalive).await?;
                    keepalive_at = Instant::now() + interval;
                }
            }
        }
    }

    fn log(&self, request: &FetchRequest, first: bool) {
        self.shared.state().fetch_requests.push(LoggedFetchRequest {
            stream: self.number,
            first,
            topic_name: request.topic_name.clone(),
            replay_preset: request.replay_preset,
            replay_id: request.replay_id.clone(),
            num_requested: request.num_requested,
            auth_refresh: !request.auth_refresh.is_empty(),
        });
    }

    /// Resolves the first request's topic and replay option.
    fn start(&self, first: &FetchRequest) -> Result<Position, Stop> {
        let invalid = |m: String| Stop::Fail(Status::invalid_argument(m));
        if first.topic_name.is_empty() {
            return Err(invalid("the first FetchRequest must name the topic".into()));
        }
        let state = self.shared.state();
        let topic = state.topic(&first.topic_name).ok_or_else(|| {
            Stop::Fail(Status::not_found(format!(
                "no topic {:?}",
                first.topic_name
            )))
        })?;
        let cursor = match ReplayPreset::try_from(first.replay_preset) {
            Ok(ReplayPreset::Latest) => topic.latest,
            Ok(ReplayPreset::Earliest) => topic.earliest_position(),
            Ok(ReplayPreset::Custom) => {
                let seq = replay_seq(&first.replay_id).ok_or_else(|| {
                    invalid(format!(
                        "replay_id must be {} bytes, got {}",
                        super::REPLAY_ID_LEN,
                        first.replay_id.len()
                    ))
                })?;
                if seq > topic.latest {
                    return Err(invalid(format!(
                        "replay_id {seq} is not a replay id of {}",
                        first.topic_name
                    )));
                }
                if seq < topic.earliest_position() {
                    return Err(invalid(format!(
                        "replay_id {seq} is older than the events retained"
                    )));
                }
                seq
            }
            Err(_) => {
                return Err(invalid(format!(
                    "unknown replay_preset {}",
                    first.replay_preset
                )));
            }
        };
        Ok(Position {
            topic_name: topic.settings.topic_name.clone(),
            schema_id: topic.schema.id.clone(),
            cursor,
            credit: 0,
        })
    }

    fn add_credit(&self, position: &mut Position, num_requested: i32) -> Result<(), Stop> {
        if num_requested < 0 {
            return Err(Stop::Fail(Status::invalid_argument(format!(
                "num_requested must not be negative, got {num_requested}"
            ))));
        }
        position.credit = position
            .credit
            .saturating_add(num_requested)
            .min(MAX_PENDING_REQUESTED);
        Ok(())
    }

    /// A later request: same topic (or none), more credit, maybe a fresh token.
    fn more(&mut self, position: &mut Position, request: &FetchRequest) -> Result<(), Stop> {
        if !request.topic_name.is_empty() && request.topic_name != position.topic_name {
            return Err(Stop::Fail(Status::invalid_argument(format!(
                "topic_name {:?} differs from the stream's topic {:?}",
                request.topic_name, position.topic_name
            ))));
        }
        if !request.auth_refresh.is_empty() {
            self.shared
                .state()
                .seen_tokens
                .insert(request.auth_refresh.clone());
            if !self.shared.token_ok(&request.auth_refresh) {
                return Err(Stop::Fail(Status::unauthenticated(
                    "auth_refresh is not a valid session",
                )));
            }
            self.token.clone_from(&request.auth_refresh);
        }
        self.add_credit(position, request.num_requested)
    }

    /// Sends the events the credit allows; true when something was sent.
    async fn deliver(&mut self, position: &mut Position) -> Result<bool, Stop> {
        if position.credit <= 0 {
            return Ok(false);
        }
        let limit = usize::try_from(position.credit).unwrap_or(0);
        let events: Vec<ConsumerEvent> = {
            let state = self.shared.state();
            let Some(topic) = state.topic(&position.topic_name) else {
                return Ok(false);
            };
            topic
                .events
                .iter()
                .filter(|e| e.seq > position.cursor)
                .take(limit)
                .map(|e| ConsumerEvent {
                    event: Some(ProducerEvent {
                        id: e.id.clone(),
                        schema_id: position.schema_id.clone(),
                        payload: e.avro.clone(),
                        headers: Vec::new(),
                    }),
                    replay_id: replay_id(e.seq),
                })
                .collect()
        };
        let Some(last) = events.last() else {
            return Ok(false);
        };
        let count = events.len();
        let last_seq = replay_seq(&last.replay_id).unwrap_or(position.cursor);
        position.cursor = last_seq;
        position.credit -= i32::try_from(count).unwrap_or(MAX_PENDING_REQUESTED);
        let response = FetchResponse {
            events,
            latest_replay_id: replay_id(last_seq),
            rpc_id: rpc_id(),
            pending_num_requested: position.credit,
        };
        self.respond(response).await?;
        Ok(true)
    }

    /// Sends one response after re-checking the token, then applies an injected end.
    async fn respond(&self, response: FetchResponse) -> Result<(), Stop> {
        if !self.shared.token_ok(&self.token) {
            return Err(Stop::Fail(Status::unauthenticated(
                "the session of this subscription is no longer valid",
            )));
        }
        let count = response.events.len();
        self.tx.send(Ok(response)).await.map_err(|_| Stop::Gone)?;
        self.shared.events_sent.fetch_add(count, Ordering::SeqCst);
        if Shared::take(&self.shared.streams_to_end) {
            return Err(Stop::Fail(Status::unavailable(
                "injected: the stream was closed by the server",
            )));
        }
        Ok(())
    }
}

fn shutting_down() -> Stop {
    Stop::Fail(Status::unavailable("the server is shutting down"))
}
