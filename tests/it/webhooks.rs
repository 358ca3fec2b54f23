//! The webhook endpoint: unknown channels, authentication, size limits, quarantine and hand-off
//! to the inbound sink — on both backends, since quarantine is state.

use crate::support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use byocd::{
    app::config_records,
    channels::{self, ChannelRuntime},
    http::{self, AppState},
    providers::InboundEvent,
    relay::intake::{Accepted, InboundSink, SinkError, SinkFuture},
    store::{AnyStore, AuditFilter, Store},
};
use support::{
    TestDb,
    channels::{ConfigDir, Endpoints, RCS_CHANNEL, RCS_WEBHOOK_AUTH, WA_CHANNEL, WA_WEBHOOK_AUTH},
};

/// A sink that records what it is given, or fails when told to.
#[derive(Debug, Default)]
struct RecordingSink {
    events: Mutex<Vec<(String, InboundEvent)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl InboundSink for RecordingSink {
    fn accept<'a>(
        &'a self,
        channel: &'a ChannelRuntime,
        events: Vec<InboundEvent>,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SinkError::Unavailable("database unavailable".into()));
            }
            let n = events.len();
            self.events
                .lock()
                .unwrap()
                .extend(events.into_iter().map(|e| (channel.config.name.clone(), e)));
            Ok(Accepted {
                new: n,
                duplicates: 0,
            })
        })
    }
}

struct Server {
    url: String,
    store: AnyStore,
    sink: Arc<RecordingSink>,
    config_dir: ConfigDir,
    db: TestDb,
    _task: tokio::task::JoinHandle<()>,
}

const MAX_BODY: usize = 64 * 1024;

async fn serve(db: TestDb, wa_extra: &str) -> Server {
    let config_dir = ConfigDir::write(
        &Endpoints::default(),
        &format!("\n[server]\nmax_body_bytes = {MAX_BODY}\n"),
        wa_extra,
    );
    let config = config_dir.load(&db.url);
    let store = db.migrated().await;
    let (orgs, channels) = config_records(&config);
    store.sync_config(&orgs, &channels).await.unwrap();
    let sink = Arc::new(RecordingSink::default());
    let state = AppState {
        store: store.clone(),
        started: Instant::now(),
        version: "test",
        config_hash: Arc::new(std::sync::RwLock::new(Arc::from("test"))),
        metrics: byocd::metrics::Metrics::new(),
        channels: Arc::new(RwLock::new(Arc::new(channels::channel_map(
            &config.channels,
            &reqwest::Client::new(),
        )))),
        sink: sink.clone(),
        max_body_bytes: config.server.max_body_bytes,
        file_signer: None,
        sweeper: None,
    };
    assert_eq!(state.max_body_bytes, MAX_BODY);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server {
        url,
        store,
        sink,
        config_dir,
        db,
        _task: task,
    }
}

const INBOUND_8X8: &str = r#"{
  "namespace": "ChatApps",
  "eventType": "inbound_message_received",
  "description": "ChatApps inbound message",
  "version": 3,
  "payload": {
    "umid": "1b0b9c1a-3a6e-4f57-9d35-2b0a6c1f0e01",
    "subAccountId": "Acme_WA_01",
    "timestamp": "2026-11-21T10:00:00.00Z",
    "user": { "msisdn": "+447700900123", "channelUserId": "GB.4477009001", "name": "Sam" },
    "recipient": { "channel": "WhatsApp", "channelId": "acme-wa" },
    "type": "Text",
    "content": { "text": "Hello" }
  }
}"#;

const MO_KALEYRA: &str = r#"{
  "type": "USER_MESSAGE",
  "eventId": "ev-0001",
  "from": "447700900124",
  "to": "acme_rcs",
  "sentAt": "2026-11-21T10:00:00Z",
  "messageId": "msg-0001",
  "userMessage": { "type": "TEXT", "text": "Hi" }
}"#;

async fn post(
    server: &Server,
    channel: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/{channel}", server.url))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn nothing_stored(server: &Server) {
    assert!(
        server.sink.events.lock().unwrap().is_empty(),
        "events reached the sink"
    );
    assert!(server.store.quarantined(None, 10).await.unwrap().is_empty());
    let audit = server.store.audit(&AuditFilter::default()).await.unwrap();
    assert!(
        audit.iter().all(|r| !r.entry.kind.starts_with("webhook")),
        "{audit:?}"
    );
}

async fn an_unknown_channel_is_refused_and_nothing_stored(db: TestDb) {
    let server = serve(db, "").await;
    let (status, body) = post(
        &server,
        "no-such-channel",
        Some(WA_WEBHOOK_AUTH),
        INBOUND_8X8,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("no-such-channel"),
        "{body}"
    );
    nothing_stored(&server).await;
}

async fn unauthenticated_webhooks_get_401_and_nothing_stored(db: TestDb) {
    let server = serve(db, "").await;
    for (channel, auth) in [
        (WA_CHANNEL, None),
        (WA_CHANNEL, Some("Bearer wrong")),
        (WA_CHANNEL, Some(RCS_WEBHOOK_AUTH)),
        (RCS_CHANNEL, None),
        (RCS_CHANNEL, Some(WA_WEBHOOK_AUTH)),
    ] {
        let (status, body) = post(&server, channel, auth, INBOUND_8X8).await;
        assert_eq!(status, 401, "{channel} {auth:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("Authorization"),
            "{body}"
        );
    }
    nothing_stored(&server).await;
}

async fn a_source_outside_the_allow_list_is_refused(db: TestDb) {
    let server = serve(db, r#"webhook_allow_networks = ["203.0.113.0/24"]"#).await;
    let (status, body) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), INBOUND_8X8).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    nothing_stored(&server).await;
}

async fn an_oversized_body_gets_413_and_nothing_stored(db: TestDb) {
    let server = serve(db, "").await;
    let big = format!(r#"{{"padding": "{}"}}"#, "x".repeat(MAX_BODY + 1));
    let (status, body) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("max_body_bytes"),
        "{body}"
    );
    nothing_stored(&server).await;
}

async fn an_unreadable_authenticated_body_is_quarantined_verbatim_and_answered_200(db: TestDb) {
    let server = serve(db, "").await;
    let garbage =
        r#"{"namespace": "ChatApps", "eventType": "inbound_message_received", "payload": {"#;
    let (status, body) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), garbage).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "quarantined");
    let id = body["quarantine_id"].as_i64().unwrap();

    let unknown = r#"{"namespace": "ChatApps", "eventType": "something_new", "payload": {}}"#;
    let (status, _) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), unknown).await;
    assert_eq!(status, 200);
    let (status, _) = post(&server, RCS_CHANNEL, Some(RCS_WEBHOOK_AUTH), "[1, 2").await;
    assert_eq!(status, 200);

    let item = server.store.quarantined_item(id).await.unwrap().unwrap();
    assert_eq!(item.body, garbage.as_bytes(), "kept byte for byte");
    assert_eq!(item.channel, WA_CHANNEL);
    assert_eq!(item.provider, "8x8");
    assert_eq!(item.content_type.as_deref(), Some("application/json"));
    assert!(!item.reason.is_empty());
    let listed = server.store.quarantined(None, 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].provider, "kaleyra", "newest first");
    assert_eq!(
        server
            .store
            .quarantined(Some(WA_CHANNEL), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let audit = server
        .store
        .audit(&AuditFilter {
            kind: Some("webhook.quarantined".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0].entry.detail["quarantine_id"], id);
    assert!(server.sink.events.lock().unwrap().is_empty());

    // An admin reads them with the CLI, beside the store (read-only; no lock taken).
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_byocd"))
            .arg("--config")
            .arg(&server.config_dir.main_file)
            .args(args)
            .env("BYOCD__DATABASE__URL", &server.db.url)
            .output()
            .unwrap()
    };
    let out = cli(&["quarantine", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 4, "a header and three rows:\n{text}");
    assert!(
        text.contains(WA_CHANNEL) && text.contains(RCS_CHANNEL),
        "{text}"
    );
    let out = cli(&["quarantine", "show", &id.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&item.reason), "{text}");
    assert!(
        text.ends_with(&format!("{garbage}\n")),
        "body verbatim:\n{text}"
    );
    let out = cli(&["quarantine", "show", "999999"]);
    assert!(!out.status.success());
}

async fn parsed_events_reach_the_sink_and_a_failing_sink_means_503(db: TestDb) {
    let server = serve(db, "").await;
    let (status, body) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), INBOUND_8X8).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["events"], 1);
    let (status, body) = post(&server, RCS_CHANNEL, Some(RCS_WEBHOOK_AUTH), MO_KALEYRA).await;
    assert_eq!(status, 200, "{body}");
    {
        let events = server.sink.events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, WA_CHANNEL);
        assert!(
            matches!(&events[0].1, InboundEvent::Message(m) if m.provider_message_id == "1b0b9c1a-3a6e-4f57-9d35-2b0a6c1f0e01")
        );
        assert_eq!(events[1].0, RCS_CHANNEL);
        assert!(matches!(&events[1].1, InboundEvent::Message(_)));
    }

    server
        .sink
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), INBOUND_8X8).await;
    assert_eq!(status, 503, "{body}");
    assert!(server.store.quarantined(None, 10).await.unwrap().is_empty());
}

on_both_backends!(
    an_unknown_channel_is_refused_and_nothing_stored,
    unauthenticated_webhooks_get_401_and_nothing_stored,
    a_source_outside_the_allow_list_is_refused,
    an_oversized_body_gets_413_and_nothing_stored,
    an_unreadable_authenticated_body_is_quarantined_verbatim_and_answered_200,
    parsed_events_reach_the_sink_and_a_failing_sink_means_503,
);
