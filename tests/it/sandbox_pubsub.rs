//! The Pub/Sub API emulator driven by the generated gRPC client (not byocd's subscriber):
//! metadata checks, topics and schemas, Avro events, replay presets, exact flow control,
//! keep-alives, injected stream ends and `UNAUTHENTICATED`, and the payloads of every rep
//! action against the shape of Salesforce's AsyncAPI file.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::{path::Path, process::Command, sync::OnceLock, time::Duration};

use apache_avro::{Schema, from_avro_datum, types::Value as Avro};
use byocd::{
    salesforce::pubsub::proto::{
        FetchRequest, FetchResponse, ReplayPreset, SchemaRequest, TopicRequest,
        pub_sub_client::PubSubClient,
    },
    sandbox::{
        pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings, replay_seq},
        rep::{ParticipantOperation, Rep, TransferTarget, UploadResult},
        salesforce::{EmulatedChannel, EmulatorSettings, SalesforceEmulator, SessionStatus},
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status, Streaming, transport::Channel};

const ORG_ID: &str = "00D000000000001";
const TOPIC: &str = "/event/Acme_Event__e";
const OTHER_TOPIC: &str = "/event/Other_Event__e";
const INSTANCE_URL: &str = "https://acme.my.salesforce.com";
const TOKEN: &str = "00D000000000001!test-token";
const CONSUMER_KEY: &str = "3MVG9pubsub.test.key";
const USERNAME: &str = "integration@pubsub.test";
const CHANNEL: &str = "pubsub-channel-address";
const CONTEXT: &str = "Pubsub_Channel";
const END_USER: &str = "+15550001111";
/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long a test watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(600);

// ---------------------------------------------------------------------------------------------
// Setup

fn topics() -> Vec<TopicSettings> {
    vec![TopicSettings::new(TOPIC), TopicSettings::new(OTHER_TOPIC)]
}

async fn start_with(keepalive: Duration) -> PubSubEmulator {
    let mut settings = PubSubSettings::new(ORG_ID, topics(), TokenCheck::Any);
    settings.keepalive_interval = keepalive;
    PubSubEmulator::start(settings).await.unwrap()
}

/// An emulator whose keep-alives stay out of the way.
async fn start() -> PubSubEmulator {
    start_with(Duration::from_secs(60)).await
}

async fn client(emu: &PubSubEmulator) -> PubSubClient<Channel> {
    PubSubClient::connect(emu.endpoint()).await.unwrap()
}

fn with_metadata<T>(message: T, token: Option<&str>, tenant: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    if let Some(token) = token {
        metadata.insert("accesstoken", token.parse().unwrap());
    }
    metadata.insert("instanceurl", INSTANCE_URL.parse().unwrap());
    if let Some(tenant) = tenant {
        metadata.insert("tenantid", tenant.parse().unwrap());
    }
    request
}

fn authed<T>(message: T) -> Request<T> {
    with_metadata(message, Some(TOKEN), Some(ORG_ID))
}

fn first(preset: ReplayPreset, replay_id: Vec<u8>, num_requested: i32) -> FetchRequest {
    FetchRequest {
        topic_name: TOPIC.into(),
        replay_preset: preset.into(),
        replay_id,
        num_requested,
        auth_refresh: String::new(),
    }
}

fn credit(num_requested: i32) -> FetchRequest {
    FetchRequest {
        num_requested,
        ..FetchRequest::default()
    }
}

/// An open subscription: the sender of further requests and the response stream.
struct Sub {
    requests: mpsc::Sender<FetchRequest>,
    responses: Streaming<FetchResponse>,
}

async fn subscribe_as(
    client: &mut PubSubClient<Channel>,
    request: FetchRequest,
    token: &str,
) -> Result<Sub, Status> {
    let (requests, rx) = mpsc::channel(16);
    requests.send(request).await.unwrap();
    let responses = client
        .subscribe(with_metadata(
            ReceiverStream::new(rx),
            Some(token),
            Some(ORG_ID),
        ))
        .await?
        .into_inner();
    Ok(Sub {
        requests,
        responses,
    })
}

async fn subscribe(client: &mut PubSubClient<Channel>, request: FetchRequest) -> Sub {
    subscribe_as(client, request, TOKEN).await.unwrap()
}

impl Sub {
    /// The next response or error, failing after [`PATIENCE`].
    async fn next(&mut self) -> Result<FetchResponse, Status> {
        match tokio::time::timeout(PATIENCE, self.responses.message()).await {
            Ok(Ok(Some(response))) => Ok(response),
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("nothing arrived within {PATIENCE:?}"),
        }
    }

    /// Responses until `count` events arrived (keep-alives skipped).
    async fn events(&mut self, count: usize) -> Vec<FetchResponse> {
        let mut responses = Vec::new();
        let mut seen = 0;
        while seen < count {
            let response = self.next().await.unwrap();
            seen += response.events.len();
            if !response.events.is_empty() {
                responses.push(response);
            }
        }
        assert_eq!(seen, count, "more events than expected arrived");
        responses
    }

    /// Asserts no event arrives for [`QUIET`] (keep-alives allowed).
    async fn assert_quiet(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            match tokio::time::timeout_at(deadline, self.responses.message()).await {
                Err(_) => return,
                Ok(Ok(Some(r))) => assert!(r.events.is_empty(), "unexpected events: {r:?}"),
                Ok(other) => panic!("the stream ended: {other:?}"),
            }
        }
    }
}

fn seqs(responses: &[FetchResponse]) -> Vec<u64> {
    responses
        .iter()
        .flat_map(|r| &r.events)
        .map(|e| replay_seq(&e.replay_id).unwrap())
        .collect()
}

fn publish_n(emu: &PubSubEmulator, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| replay_seq(&emu.publish(TOPIC, "Interaction", &format!("{{\"n\":{i}}}"))).unwrap())
        .collect()
}

/// Decodes an event's Avro record into (field name → value).
fn decode(schema_json: &str, payload: &[u8]) -> Vec<(String, Avro)> {
    let schema = Schema::parse_str(schema_json).unwrap();
    match from_avro_datum(&schema, &mut &payload[..], None).unwrap() {
        Avro::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

fn union_string(value: &Avro) -> Option<String> {
    match value {
        Avro::Union(_, inner) => match inner.as_ref() {
            Avro::String(s) => Some(s.clone()),
            Avro::Null => None,
            other => panic!("not a string: {other:?}"),
        },
        other => panic!("not a union: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

#[tokio::test]
async fn every_call_needs_a_token_an_instance_url_and_the_tenant() {
    let emu = start().await;
    let mut c = client(&emu).await;
    let topic = || TopicRequest {
        topic_name: TOPIC.into(),
    };

    let missing = c
        .get_topic(with_metadata(topic(), None, Some(ORG_ID)))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);

    let empty = c
        .get_topic(with_metadata(topic(), Some(""), Some(ORG_ID)))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::Unauthenticated);

    let wrong_tenant = c
        .get_topic(with_metadata(topic(), Some(TOKEN), Some("00D000000000999")))
        .await
        .unwrap_err();
    assert_eq!(wrong_tenant.code(), Code::PermissionDenied);

    let no_tenant = c
        .get_topic(with_metadata(topic(), Some(TOKEN), None))
        .await
        .unwrap_err();
    assert_eq!(no_tenant.code(), Code::PermissionDenied);

    let mut no_instance = Request::new(topic());
    no_instance
        .metadata_mut()
        .insert("accesstoken", TOKEN.parse().unwrap());
    no_instance
        .metadata_mut()
        .insert("tenantid", ORG_ID.parse().unwrap());
    let no_instance = c.get_topic(no_instance).await.unwrap_err();
    assert_eq!(no_instance.code(), Code::Unauthenticated);

    // The 18-character form of the org id is the same tenant.
    c.get_topic(with_metadata(
        topic(),
        Some(TOKEN),
        Some("00D000000000001EAA"),
    ))
    .await
    .unwrap();

    // Subscribe checks the metadata before the stream starts.
    let (tx, rx) = mpsc::channel(1);
    tx.send(first(ReplayPreset::Latest, vec![], 1))
        .await
        .unwrap();
    let refused = c
        .subscribe(with_metadata(ReceiverStream::new(rx), None, Some(ORG_ID)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    emu.shutdown().await;
}

#[tokio::test]
async fn fixed_tokens_and_revocation() {
    let settings = PubSubSettings::new(
        ORG_ID,
        topics(),
        TokenCheck::Fixed(vec![TOKEN.into(), "second".into()]),
    );
    let emu = PubSubEmulator::start(settings).await.unwrap();
    let mut c = client(&emu).await;
    let request = |token| {
        with_metadata(
            TopicRequest {
                topic_name: TOPIC.into(),
            },
            Some(token),
            Some(ORG_ID),
        )
    };
    assert_eq!(
        c.get_topic(request("forged")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    c.get_topic(request(TOKEN)).await.unwrap();

    // An open stream ends with UNAUTHENTICATED at its next response once its token is revoked.
    let mut sub = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 5)).await;
    emu.revoke_tokens();
    emu.publish(TOPIC, "Interaction", "{}");
    assert_eq!(sub.next().await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        c.get_topic(request(TOKEN)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // A token never presented before still works.
    c.get_topic(request("second")).await.unwrap();
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Topics, schemas, events

#[tokio::test]
async fn topics_and_schemas() {
    let emu = start().await;
    let mut c = client(&emu).await;
    let info = c
        .get_topic(authed(TopicRequest {
            topic_name: TOPIC.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.topic_name, TOPIC);
    assert!(info.can_subscribe);
    assert!(!info.schema_id.is_empty());
    assert!(!info.rpc_id.is_empty());

    let unknown = c
        .get_topic(authed(TopicRequest {
            topic_name: "/event/Nope__e".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let schema = c
        .get_schema(authed(SchemaRequest {
            schema_id: info.schema_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(schema.schema_id, info.schema_id);
    let json: Value = serde_json::from_str(&schema.schema_json).unwrap();
    assert_eq!(json["type"], "record");
    assert_eq!(json["name"], "Acme_Event__e");
    let fields: Vec<(String, Value)> = json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f["type"].clone()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("CreatedDate".into(), json!("long")),
            ("CreatedById".into(), json!("string")),
            ("EventType__c".into(), json!(["null", "string"])),
            ("Payload__c".into(), json!(["null", "string"])),
        ]
    );

    // Schema ids are stable: another emulator serves the same id for the same topic.
    let again = start().await;
    assert_eq!(again.schema_id(TOPIC).unwrap(), info.schema_id);
    again.shutdown().await;

    let unknown = c
        .get_schema(authed(SchemaRequest {
            schema_id: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Field names come from the topic settings.
    let custom = TopicSettings {
        topic_name: "/event/Custom__e".into(),
        event_type_field: "ns__Kind__c".into(),
        payload_field: "ns__Body__c".into(),
    };
    let other = PubSubEmulator::start(PubSubSettings::new(ORG_ID, vec![custom], TokenCheck::Any))
        .await
        .unwrap();
    let json: Value =
        serde_json::from_str(&other.schema_json("/event/Custom__e").unwrap()).unwrap();
    assert_eq!(json["fields"][2]["name"], "ns__Kind__c");
    assert_eq!(json["fields"][3]["name"], "ns__Body__c");
    other.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn events_decode_with_the_topic_schema() {
    let emu = start().await;
    let mut c = client(&emu).await;
    let mut sub = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 10)).await;
    // Give the stream time to take its position before publishing.
    sub.assert_quiet().await;
    let payload = r#"{"conversationIdentifier":"c-1"}"#;
    let replay = emu.publish(TOPIC, "Interaction", payload);
    emu.try_publish(TOPIC, None, None).unwrap();

    let responses = sub.events(2).await;
    let events: Vec<_> = responses.iter().flat_map(|r| &r.events).collect();
    let event = events[0].event.as_ref().unwrap();
    assert_eq!(events[0].replay_id, replay);
    assert_eq!(events[0].replay_id.len(), 8);
    assert_eq!(event.schema_id, emu.schema_id(TOPIC).unwrap());
    assert!(uuid::Uuid::parse_str(&event.id).is_ok());
    let fields = decode(&emu.schema_json(TOPIC).unwrap(), &event.payload);
    assert_eq!(fields[0].0, "CreatedDate");
    assert!(matches!(fields[0].1, Avro::Long(ms) if ms > 1_600_000_000_000));
    assert_eq!(fields[1].1, Avro::String("005000000000APU".into()));
    assert_eq!(fields[2].0, "EventType__c");
    assert_eq!(union_string(&fields[2].1).as_deref(), Some("Interaction"));
    assert_eq!(fields[3].0, "Payload__c");
    assert_eq!(union_string(&fields[3].1).as_deref(), Some(payload));

    // Null fields are the null branch of the union.
    let nulls = decode(
        &emu.schema_json(TOPIC).unwrap(),
        &events[1].event.as_ref().unwrap().payload,
    );
    assert_eq!(union_string(&nulls[2].1), None);
    assert_eq!(union_string(&nulls[3].1), None);

    // The response's latest replay id is its last event's.
    assert_eq!(
        responses.last().unwrap().latest_replay_id,
        events[1].replay_id
    );
    assert_eq!(emu.published().len(), 2);
    assert_eq!(emu.events_sent(), 2);
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Replay

#[tokio::test]
async fn replay_presets() {
    let emu = start().await;
    let mut c = client(&emu).await;
    let before = publish_n(&emu, 3);
    assert!(before.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(before[0] > 1, "replay ids should not look like counts");

    // LATEST: only what comes after.
    let mut latest = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 10)).await;
    latest.assert_quiet().await;
    let after = publish_n(&emu, 1);
    assert_eq!(seqs(&latest.events(1).await), after);

    // EARLIEST: everything retained.
    let mut earliest = subscribe(&mut c, first(ReplayPreset::Earliest, vec![], 10)).await;
    let mut all = before.clone();
    all.extend(&after);
    assert_eq!(seqs(&earliest.events(4).await), all);

    // CUSTOM: strictly after the given id.
    let mut custom = subscribe(
        &mut c,
        first(ReplayPreset::Custom, before[1].to_be_bytes().to_vec(), 10),
    )
    .await;
    assert_eq!(seqs(&custom.events(2).await), vec![before[2], after[0]]);
    custom.assert_quiet().await;

    // CUSTOM at the newest event: nothing until the next one.
    let mut tip = subscribe(
        &mut c,
        first(ReplayPreset::Custom, after[0].to_be_bytes().to_vec(), 10),
    )
    .await;
    tip.assert_quiet().await;

    // Garbage, future and expired replay ids are INVALID_ARGUMENT.
    for bad in [
        b"abc".to_vec(),
        vec![],
        (after[0] + 5).to_be_bytes().to_vec(),
    ] {
        let mut sub = subscribe(&mut c, first(ReplayPreset::Custom, bad.clone(), 10)).await;
        assert_eq!(
            sub.next().await.unwrap_err().code(),
            Code::InvalidArgument,
            "{bad:?}"
        );
    }
    emu.set_retention(Some(2));
    let mut expired = subscribe(
        &mut c,
        first(ReplayPreset::Custom, before[0].to_be_bytes().to_vec(), 10),
    )
    .await;
    assert_eq!(
        expired.next().await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut retained = subscribe(&mut c, first(ReplayPreset::Earliest, vec![], 10)).await;
    assert_eq!(seqs(&retained.events(2).await), vec![before[2], after[0]]);

    // An unknown or missing topic.
    let mut unknown = subscribe(
        &mut c,
        FetchRequest {
            topic_name: "/event/Nope__e".into(),
            ..first(ReplayPreset::Latest, vec![], 1)
        },
    )
    .await;
    assert_eq!(unknown.next().await.unwrap_err().code(), Code::NotFound);
    let mut nameless = subscribe(&mut c, credit(1)).await;
    assert_eq!(
        nameless.next().await.unwrap_err().code(),
        Code::InvalidArgument
    );
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Flow control

#[tokio::test]
async fn flow_control_is_exact() {
    let emu = start().await;
    let mut c = client(&emu).await;
    let mut sub = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 2)).await;
    sub.assert_quiet().await;
    let published = publish_n(&emu, 5);

    let responses = sub.events(2).await;
    assert_eq!(seqs(&responses), published[..2]);
    assert_eq!(responses.last().unwrap().pending_num_requested, 0);
    sub.assert_quiet().await;
    assert_eq!(emu.events_sent(), 2);

    sub.requests.send(credit(3)).await.unwrap();
    let responses = sub.events(3).await;
    assert_eq!(seqs(&responses), published[2..]);
    assert_eq!(responses.last().unwrap().pending_num_requested, 0);
    assert_eq!(emu.events_sent(), 5);

    // Credit given ahead is kept: 4 more requested, 1 published → 3 left.
    sub.requests.send(credit(4)).await.unwrap();
    let one = publish_n(&emu, 1);
    let responses = sub.events(1).await;
    assert_eq!(seqs(&responses), one);
    assert_eq!(responses[0].pending_num_requested, 3);

    let log = emu.fetch_requests();
    let counts: Vec<i32> = log.iter().map(|r| r.num_requested).collect();
    assert_eq!(counts, vec![2, 3, 4]);
    assert!(log[0].first && !log[1].first);
    assert_eq!(log[0].topic_name, TOPIC);
    assert_eq!(emu.active_streams(), 1);

    // Another topic in a later request, or negative credit, is INVALID_ARGUMENT.
    sub.requests
        .send(FetchRequest {
            topic_name: OTHER_TOPIC.into(),
            ..credit(1)
        })
        .await
        .unwrap();
    assert_eq!(sub.next().await.unwrap_err().code(), Code::InvalidArgument);
    let mut negative = subscribe(&mut c, first(ReplayPreset::Latest, vec![], -1)).await;
    assert_eq!(
        negative.next().await.unwrap_err().code(),
        Code::InvalidArgument
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn outstanding_credit_is_capped_at_one_hundred() {
    let emu = start().await;
    let mut c = client(&emu).await;
    publish_n(&emu, 150);
    let mut sub = subscribe(&mut c, first(ReplayPreset::Earliest, vec![], 1000)).await;
    let responses = sub.events(100).await;
    assert_eq!(responses.last().unwrap().pending_num_requested, 0);
    sub.assert_quiet().await;
    sub.requests.send(credit(50)).await.unwrap();
    sub.events(50).await;
    assert_eq!(emu.events_sent(), 150);
    emu.shutdown().await;
}

#[tokio::test]
async fn half_closed_request_streams_still_receive() {
    let emu = start().await;
    let mut c = client(&emu).await;
    let mut sub = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 3)).await;
    sub.assert_quiet().await;
    let Sub {
        requests,
        mut responses,
    } = sub;
    drop(requests);
    publish_n(&emu, 3);
    let mut got = 0;
    while got < 3 {
        let response = tokio::time::timeout(PATIENCE, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got += response.events.len();
    }
    assert_eq!(got, 3);
    drop(responses);
    // The server notices the client left.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while emu.active_streams() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(emu.active_streams(), 0);
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Keep-alives

#[tokio::test]
async fn keepalives_carry_the_stream_position() {
    let emu = start_with(Duration::from_millis(200)).await;
    let mut c = client(&emu).await;
    let base = publish_n(&emu, 2);

    // No credit: keep-alives, positioned before the undelivered events.
    let mut idle = subscribe(
        &mut c,
        first(ReplayPreset::Custom, base[0].to_be_bytes().to_vec(), 0),
    )
    .await;
    let keepalive = idle.next().await.unwrap();
    assert!(keepalive.events.is_empty());
    assert_eq!(keepalive.latest_replay_id, base[0].to_be_bytes().to_vec());
    assert_eq!(keepalive.pending_num_requested, 0);

    // Caught up: keep-alives carry the last event delivered.
    let mut caught_up = subscribe(&mut c, first(ReplayPreset::Earliest, vec![], 5)).await;
    assert_eq!(seqs(&caught_up.events(2).await), base);
    let keepalive = caught_up.next().await.unwrap();
    assert!(keepalive.events.is_empty());
    assert_eq!(keepalive.latest_replay_id, base[1].to_be_bytes().to_vec());
    assert_eq!(keepalive.pending_num_requested, 3);
    // And keep coming.
    let again = caught_up.next().await.unwrap();
    assert!(again.events.is_empty());
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Injection

#[tokio::test]
async fn injected_stream_ends_after_the_next_event() {
    // Keep-alives out of the way: a keep-alive would be the "next response" if one came between
    // the injection and the event (it did, on a busy CI machine, with a 200 ms interval).
    let emu = start().await;
    let mut c = client(&emu).await;
    let mut sub = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 10)).await;
    sub.assert_quiet().await;
    emu.end_streams(1);
    let published = publish_n(&emu, 1);
    // The next response still arrives, then the stream ends.
    let response = sub.next().await.unwrap();
    assert_eq!(seqs(&[response]), published);
    assert_eq!(sub.next().await.unwrap_err().code(), Code::Unavailable);
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_stream_ends() {
    let emu = start_with(Duration::from_millis(200)).await;
    let mut c = client(&emu).await;
    // A keep-alive counts as a response; the injection is used up after one stream. Nothing is
    // published, so every response is a keep-alive.
    emu.end_streams(1);
    let mut idle = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 1)).await;
    assert!(idle.next().await.unwrap().events.is_empty());
    assert_eq!(idle.next().await.unwrap_err().code(), Code::Unavailable);
    let mut fine = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 1)).await;
    assert!(fine.next().await.unwrap().events.is_empty());
    assert!(fine.next().await.unwrap().events.is_empty());

    // Shutting down ends open streams with UNAVAILABLE.
    let handle = emu.clone();
    handle.shutdown().await;
    assert_eq!(fine.next().await.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test]
async fn injected_unauthenticated() {
    let emu = start().await;
    let mut c = client(&emu).await;
    emu.inject_unauthenticated(2);
    let topic = || {
        authed(TopicRequest {
            topic_name: TOPIC.into(),
        })
    };
    assert_eq!(
        c.get_topic(topic()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let refused = subscribe_as(&mut c, first(ReplayPreset::Latest, vec![], 1), TOKEN).await;
    assert_eq!(refused.err().unwrap().code(), Code::Unauthenticated);
    c.get_topic(topic()).await.unwrap();
    let _sub = subscribe(&mut c, first(ReplayPreset::Latest, vec![], 1)).await;
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The rep, with a real Salesforce emulator and its tokens

struct KeyPair {
    private_pem: String,
    public_pem: String,
}

fn keys() -> &'static KeyPair {
    static KEYS: OnceLock<KeyPair> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("org.pem");
        let public = dir.path().join("org.pub.pem");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &path(&private),
        ]);
        run(&[
            "pkey",
            "-in",
            &path(&private),
            "-pubout",
            "-out",
            &path(&public),
        ]);
        KeyPair {
            private_pem: std::fs::read_to_string(private).unwrap(),
            public_pem: std::fs::read_to_string(public).unwrap(),
        }
    })
}

/// Salesforce and Pub/Sub emulators sharing tokens, a token, and a conversation of
/// [`END_USER`] on [`CHANNEL`].
struct World {
    salesforce: SalesforceEmulator,
    pubsub: PubSubEmulator,
    rep: Rep,
    http: reqwest::Client,
    token: String,
}

impl World {
    async fn start() -> Self {
        let salesforce = SalesforceEmulator::start(EmulatorSettings {
            org_id: ORG_ID.into(),
            consumer_key: CONSUMER_KEY.into(),
            username: USERNAME.into(),
            audience: None,
            public_key_pem: keys().public_pem.clone(),
            channels: vec![EmulatedChannel {
                channel_address_identifier: CHANNEL.into(),
                authorization_context: CONTEXT.into(),
                product: "CCaaS".into(),
                routing_owner: "Partner".into(),
                consent_owner: "Partner".into(),
                queues: vec!["00G000000000001".into()],
                flows: vec![],
                users: vec!["005000000000001".into()],
            }],
            rate_limit_per_second: None,
        })
        .await
        .unwrap();
        let pubsub = PubSubEmulator::start(PubSubSettings::new(
            ORG_ID,
            vec![TopicSettings::new(TOPIC)],
            TokenCheck::Salesforce(salesforce.clone()),
        ))
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let token = Self::mint(&http, &salesforce).await;
        let world = Self {
            rep: Rep::new(salesforce.clone(), pubsub.clone()),
            salesforce,
            pubsub,
            http,
            token,
        };
        world.end_user_writes("hello").await;
        world
    }

    async fn mint(http: &reqwest::Client, salesforce: &SalesforceEmulator) -> String {
        let claims = json!({
            "iss": CONSUMER_KEY,
            "sub": USERNAME,
            "aud": salesforce.base_url(),
            "exp": chrono::Utc::now().timestamp() + 120,
        });
        let assertion = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(keys().private_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        let body: Value = http
            .post(format!("{}/services/oauth2/token", salesforce.base_url()))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The end user sends a message through the Interaction Service (opens the conversation).
    async fn end_user_writes(&self, text: &str) {
        let id = uuid::Uuid::new_v4().to_string();
        let json = json!({
            "to": CHANNEL,
            "from": END_USER,
            "interactions": [{
                "interactionType": "EntryInteraction",
                "timestamp": chrono::Utc::now().timestamp_millis(),
                "payload": {
                    "id": id,
                    "entryType": "Message",
                    "abstractMessage": {
                        "id": id,
                        "messageType": "StaticContentMessage",
                        "staticContent": { "formatType": "Text", "text": text },
                    },
                },
            }],
        });
        let form = Form::new().part(
            "json",
            Part::text(json.to_string())
                .mime_str("application/json")
                .unwrap(),
        );
        let response = self
            .http
            .post(format!(
                "{}/api/v1/interactions",
                self.salesforce.base_url()
            ))
            .bearer_auth(&self.token)
            .header("OrgId", ORG_ID)
            .header("RequestId", uuid::Uuid::new_v4().to_string())
            .header("AuthorizationContext", CONTEXT)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }

    /// The payload JSON of the last event published, with its event type.
    fn last(&self) -> (String, Value) {
        let event = self.pubsub.published().pop().unwrap();
        (
            event.event_type.unwrap(),
            serde_json::from_str(&event.payload.unwrap()).unwrap(),
        )
    }

    fn conversation_id(&self) -> String {
        self.salesforce
            .conversation_of(CHANNEL, END_USER)
            .unwrap()
            .id
    }
}

#[track_caller]
fn assert_keys(value: &Value, keys: &[&str]) {
    for key in keys {
        assert!(
            value.get(key).is_some_and(|v| !v.is_null()),
            "{key} missing in {value}"
        );
    }
}

/// Checks an `InteractionEvent` and its `ConversationEntry`; returns the entry payload.
#[track_caller]
fn assert_interaction(world: &World, event: &(String, Value), entry_type: &str) -> Value {
    let (kind, json) = event;
    assert_eq!(kind, "Interaction");
    assert_keys(
        json,
        &[
            "conversationIdentifier",
            "channelAddressIdentifier",
            "recipient",
            "payload",
        ],
    );
    assert_eq!(json["conversationIdentifier"], world.conversation_id());
    assert_eq!(json["channelAddressIdentifier"], CHANNEL);
    assert_eq!(
        json["recipient"],
        json!({ "appType": "custom", "subject": END_USER, "role": "EndUser" })
    );
    let entry = &json["payload"];
    assert_keys(
        entry,
        &[
            "identifier",
            "entryType",
            "entryPayload",
            "sender",
            "senderDisplayName",
            "clientTimestamp",
            "clientDuration",
            "transcriptedTimestamp",
        ],
    );
    assert_eq!(entry["entryType"], entry_type);
    assert_eq!(
        entry["sender"],
        json!({ "appType": "agent", "subject": world.rep.user_id(), "role": "Agent" })
    );
    assert_eq!(world.rep.user_id().len(), 15);
    assert!(entry["clientTimestamp"].is_i64());
    let payload = entry["entryPayload"].clone();
    assert_keys(&payload, &["entryType", "id"]);
    assert_eq!(payload["entryType"], entry_type);
    assert_eq!(payload["id"], entry["identifier"]);
    payload
}

#[tokio::test]
async fn rep_messages_reach_a_subscriber_with_salesforce_tokens() {
    let world = World::start().await;
    let mut c = client(&world.pubsub).await;
    let mut sub = subscribe_as(&mut c, first(ReplayPreset::Latest, vec![], 5), &world.token)
        .await
        .unwrap();
    sub.assert_quiet().await;

    let identifier = world
        .rep
        .message((CHANNEL, END_USER), "How can I help?")
        .unwrap();
    let responses = sub.events(1).await;
    let event = responses[0].events[0].event.as_ref().unwrap();
    let fields = decode(&world.pubsub.schema_json(TOPIC).unwrap(), &event.payload);
    assert_eq!(union_string(&fields[2].1).as_deref(), Some("Interaction"));
    let json: Value = serde_json::from_str(&union_string(&fields[3].1).unwrap()).unwrap();
    let payload = assert_interaction(&world, &("Interaction".into(), json.clone()), "Message");
    assert_eq!(json["payload"]["identifier"], identifier);
    assert_keys(&payload, &["abstractMessage"]);
    let message = &payload["abstractMessage"];
    assert_keys(message, &["id", "messageType", "staticContent"]);
    assert_eq!(message["messageType"], "StaticContentMessage");
    assert_eq!(
        message["staticContent"],
        json!({ "formatType": "Text", "text": "How can I help?" })
    );

    // A token Salesforce does not know is refused; revoking Salesforce's tokens ends the stream.
    let forged = subscribe_as(&mut c, first(ReplayPreset::Latest, vec![], 1), "00D!forged").await;
    assert_eq!(forged.err().unwrap().code(), Code::Unauthenticated);
    world.salesforce.revoke_tokens();
    world
        .rep
        .message((CHANNEL, END_USER), "still there?")
        .unwrap();
    assert_eq!(sub.next().await.unwrap_err().code(), Code::Unauthenticated);

    // Unknown conversations are refused.
    assert!(world.rep.message((CHANNEL, "+15559999999"), "hi").is_err());
}

#[tokio::test]
async fn rep_attachment_is_downloadable_with_a_token() {
    let world = World::start().await;
    let bytes = b"%PDF-1.4 fake".to_vec();
    world
        .rep
        .attachment(
            (CHANNEL, END_USER),
            "invoice.pdf",
            "application/pdf",
            bytes.clone(),
            Some("your invoice"),
        )
        .unwrap();
    let event = world.last();
    let payload = assert_interaction(&world, &event, "Message");
    let content = &payload["abstractMessage"]["staticContent"];
    assert_eq!(content["formatType"], "Attachments");
    assert_eq!(content["text"], "your invoice");
    let attachment = &content["attachments"][0];
    assert_keys(attachment, &["id", "name", "mimeType", "url"]);
    assert_eq!(attachment["name"], "invoice.pdf");
    assert_eq!(attachment["mimeType"], "application/pdf");
    let url = attachment["url"].as_str().unwrap();
    assert!(url.starts_with(&world.salesforce.base_url()));

    let anonymous = world.http.get(url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let forged = world
        .http
        .get(url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let download = world
        .http
        .get(url)
        .bearer_auth(&world.token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.bytes().await.unwrap().to_vec(), bytes);
    let missing = world
        .http
        .get(format!("{url}x"))
        .bearer_auth(&world.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(world.salesforce.rep_files().len(), 1);
}

#[tokio::test]
async fn rep_typing_acknowledgements_participants_and_updates() {
    let world = World::start().await;
    let conversation = (CHANNEL, END_USER);

    for (started, entry_type) in [
        (true, "TypingStartedIndicator"),
        (false, "TypingStoppedIndicator"),
    ] {
        world.rep.typing(conversation, started).unwrap();
        let payload = assert_interaction(&world, &world.last(), entry_type);
        assert!(payload["timestamp"].is_i64());
    }

    for (read, entry_type) in [
        (true, "ReadAcknowledgement"),
        (false, "DeliveryAcknowledgement"),
    ] {
        world
            .rep
            .acknowledgement(conversation, "entry-1", read)
            .unwrap();
        let payload = assert_interaction(&world, &world.last(), entry_type);
        assert_keys(
            &payload,
            &[
                "recipient",
                "acknowledgedConversationEntryIdentifier",
                "acknowledgementTimestamp",
            ],
        );
        assert_eq!(
            payload["acknowledgedConversationEntryIdentifier"],
            "entry-1"
        );
        assert!(payload["acknowledgementTimestamp"].is_i64());
    }

    world
        .rep
        .participant_changed(conversation, ParticipantOperation::Remove)
        .unwrap();
    let payload = assert_interaction(&world, &world.last(), "ParticipantChanged");
    assert_keys(&payload, &["entries", "participant"]);
    let change = &payload["entries"][0];
    assert_eq!(change["operation"], "remove");
    assert_eq!(change["participant"]["role"], "Agent");
    assert_keys(&change["participant"], &["appType", "subject", "role"]);

    world
        .rep
        .message_updated(
            conversation,
            "inbound-message-1",
            "photo.jpg",
            &UploadResult::Error {
                error_type: "AttachmentTooLarge".into(),
                message: "too big".into(),
            },
        )
        .unwrap();
    let payload = assert_interaction(&world, &world.last(), "MessageUpdated");
    let updated = &payload["updatedMessage"];
    assert_keys(updated, &["id", "messageType"]);
    assert_eq!(updated["id"], "inbound-message-1");
    let result = &updated["staticContent"]["attachments"][0]["attachmentUploadResult"];
    assert_eq!(result["resultType"], "ErrorAttachmentUploadResult");
    assert_eq!(result["errorType"], "AttachmentTooLarge");
}

#[tokio::test]
async fn rep_ends_the_session() {
    let world = World::start().await;
    let session = world
        .salesforce
        .conversation_of(CHANNEL, END_USER)
        .unwrap()
        .current_session()
        .unwrap()
        .clone();
    world.rep.end_session((CHANNEL, END_USER)).unwrap();
    let payload = assert_interaction(&world, &world.last(), "SessionStatusChanged");
    assert_keys(
        &payload,
        &[
            "sessionId",
            "channelAddressIdentifier",
            "conversationIdentifier",
            "sessionStatus",
            "sessionStartTime",
        ],
    );
    assert_eq!(payload["sessionId"], session.id);
    assert_eq!(payload["sessionStatus"], "Ended");
    assert_eq!(payload["sessionStatusPrev"], "Active");
    assert_eq!(payload["sessionEndedByRole"], "Agent");
    let ended = world
        .salesforce
        .conversation_of(CHANNEL, END_USER)
        .unwrap()
        .current_session()
        .unwrap()
        .clone();
    assert_eq!(ended.status, SessionStatus::Ended);
    assert_eq!(ended.changed_by.as_deref(), Some("Agent"));
    // Nothing left to end.
    assert!(world.rep.end_session((CHANNEL, END_USER)).is_err());
}

#[tokio::test]
async fn rep_requests_a_transfer() {
    let world = World::start().await;
    let request = world
        .rep
        .transfer_request(
            (CHANNEL, END_USER),
            &TransferTarget::Queue("00G000000000001".into()),
        )
        .unwrap();
    let (kind, json) = world.last();
    assert_eq!(kind, "RoutingRequested");
    assert_keys(&json, &["channelAddressIdentifier", "recipient", "payload"]);
    assert_eq!(json["recipient"]["subject"], END_USER);
    let payload = &json["payload"];
    assert_eq!(payload["conversationIdentifier"], world.conversation_id());
    assert_eq!(payload["routingType"], "Transfer");
    let parameters = &payload["routingParameters"];
    assert_eq!(parameters["queueId"], "00G000000000001");
    assert!(parameters.get("userId").is_none());
    let channel_data: Value =
        serde_json::from_str(parameters["channelData"].as_str().unwrap()).unwrap();
    assert_eq!(channel_data["eventId"], request.event_id);
    assert_eq!(channel_data["routingType"], "Transfer");

    world
        .rep
        .transfer_request(
            (CHANNEL, END_USER),
            &TransferTarget::User("005000000000001".into()),
        )
        .unwrap();
    assert_eq!(
        world.last().1["payload"]["routingParameters"]["userId"],
        "005000000000001"
    );
}

#[tokio::test]
async fn rep_message_without_the_payload_wrapper() {
    let world = World::start().await;
    let identifier = world
        .rep
        .message_without_wrapper((CHANNEL, END_USER), "bare")
        .unwrap();
    let (kind, json) = world.last();
    assert_eq!(kind, "Interaction");
    assert!(json.get("payload").is_none());
    assert!(json.get("conversationIdentifier").is_none());
    assert_eq!(json["channelAddressIdentifier"], CHANNEL);
    assert_eq!(json["identifier"], identifier);
    assert_eq!(json["entryType"], "Message");
    assert_eq!(
        json["entryPayload"]["abstractMessage"]["staticContent"]["text"],
        "bare"
    );
}
