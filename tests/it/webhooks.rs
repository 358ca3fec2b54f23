//! The webhook endpoint: unknown channels, authentication, size limits, quarantine and hand-off
//! to the inbound sink — on both backends, since quarantine is state; and the listener's limits
//! (slow clients, floods, concurrency) and what it logs of the caller's channel name.

use crate::support;

use std::{
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, Instant},
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
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A sink that records what it is given, or fails when told to, or holds each webhook until
/// released when told to.
#[derive(Debug, Default)]
struct RecordingSink {
    events: Mutex<Vec<(String, InboundEvent)>>,
    fail: std::sync::atomic::AtomicBool,
    hold: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl InboundSink for RecordingSink {
    fn accept<'a>(
        &'a self,
        channel: &'a ChannelRuntime,
        events: Vec<InboundEvent>,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.hold.load(std::sync::atomic::Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.notified().await;
            }
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
    serve_with(db, wa_extra, "").await
}

/// As [`serve`], with more `[server]` keys, served as the daemon serves (`http::serve`, with
/// the configured limits).
async fn serve_with(db: TestDb, wa_extra: &str, server_extra: &str) -> Server {
    let config_dir = ConfigDir::write(
        &Endpoints::default(),
        &format!("\n[server]\nmax_body_bytes = {MAX_BODY}\n{server_extra}\n"),
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
        limits: http::Limits::from(&config.server),
        file_signer: None,
        sweeper: None,
    };
    assert_eq!(state.max_body_bytes, MAX_BODY);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let limits = state.limits;
    let task = tokio::spawn(http::serve(
        listener,
        http::router(state),
        limits,
        std::future::pending(),
    ));
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

/// The one answer to unknown channels and refused credentials.
fn unauthenticated() -> serde_json::Value {
    serde_json::json!({ "error": "unauthenticated" })
}

async fn unknown_channels_and_bad_credentials_get_the_same_401_and_nothing_stored(db: TestDb) {
    let server = serve(db, "").await;
    for (channel, auth) in [
        // Unknown channels, with and without credentials valid elsewhere.
        ("no-such-channel", Some(WA_WEBHOOK_AUTH)),
        ("no-such-channel", None),
        ("acme-whatsapp-eu", Some("Bearer wrong")),
        // Known channels, refused credentials.
        (WA_CHANNEL, None),
        (WA_CHANNEL, Some("Bearer wrong")),
        (WA_CHANNEL, Some(RCS_WEBHOOK_AUTH)),
        // Kaleyra: a secret is now mandatory, so no credentials is refused too.
        (RCS_CHANNEL, None),
        (RCS_CHANNEL, Some(WA_WEBHOOK_AUTH)),
    ] {
        let (status, body) = post(&server, channel, auth, INBOUND_8X8).await;
        assert_eq!(status, 401, "{channel} {auth:?}: {body}");
        assert_eq!(body, unauthenticated(), "{channel} {auth:?}");
    }
    nothing_stored(&server).await;
}

async fn a_source_outside_the_allow_list_is_refused(db: TestDb) {
    let server = serve(db, r#"webhook_allow_networks = ["203.0.113.0/24"]"#).await;
    let (status, body) = post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), INBOUND_8X8).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body, unauthenticated());
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

// ---------------------------------------------------------------------------------------------
// The listener's limits, with raw sockets (a client that misbehaves on purpose)

/// Guard against a hang only: far beyond every timeout a test configures, never reached when
/// the server does its job. No test asserts on elapsed time.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes (or resets) the connection; what it sent before.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads an answer's status line.
async fn read_status_line(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(_) => out.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

async fn an_unauthenticated_request_is_answered_without_its_body_being_read(db: TestDb) {
    let server = serve(db, "").await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    // A head announcing a large body, with wrong credentials; not one byte of the body follows.
    let head = format!(
        "POST /webhooks/{WA_CHANNEL} HTTP/1.1\r\nHost: byocd\r\nAuthorization: Bearer wrong\r\n\
         Content-Type: application/json\r\nContent-Length: {MAX_BODY}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let status = tokio::time::timeout(HANG_GUARD, read_status_line(&mut stream))
        .await
        .expect("answered from the head alone");
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    nothing_stored(&server).await;
}

async fn a_body_that_does_not_arrive_in_time_gets_408_and_nothing_stored(db: TestDb) {
    let server = serve_with(db, "", r#"body_timeout = "300ms""#).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "POST /webhooks/{WA_CHANNEL} HTTP/1.1\r\nHost: byocd\r\nAuthorization: {WA_WEBHOOK_AUTH}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        INBOUND_8X8.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A tenth of the body, then nothing: the connection stays open.
    stream
        .write_all(&INBOUND_8X8.as_bytes()[..INBOUND_8X8.len() / 10])
        .await
        .unwrap();
    let status = tokio::time::timeout(HANG_GUARD, read_status_line(&mut stream))
        .await
        .expect("answered");
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    nothing_stored(&server).await;
}

async fn a_slow_loris_is_cut_off_by_the_header_timeout(db: TestDb) {
    let server = serve_with(db, "", r#"header_timeout = "1s""#).await;
    let (mut reader, mut writer) = TcpStream::connect(address(&server))
        .await
        .unwrap()
        .into_split();
    // A head sent byte by byte, 50 ms apart: 2 000 bytes would take 100 s, far beyond the 1 s
    // the server gives a head.
    let head = format!(
        "POST /webhooks/{WA_CHANNEL} HTTP/1.1\r\nHost: byocd\r\nAuthorization: {WA_WEBHOOK_AUTH}\r\n\
         X-Padding: {}\r\n\r\n",
        "a".repeat(2000)
    );
    let dribble = async {
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the whole head went out, slowly, and the server never cut the client off");
    };
    tokio::select! {
        () = dribble => {}
        answer = read_until_closed(&mut reader) => {
            // Closed by the server: with nothing or with a 408, never with an answer to the
            // request itself.
            assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    nothing_stored(&server).await;
}

async fn a_flood_of_idle_and_unauthenticated_connections_does_not_stop_a_webhook(db: TestDb) {
    let server = serve_with(
        db,
        "",
        "header_timeout = \"1s\"\nmax_connections = 4\nmax_concurrent_requests = 4",
    )
    .await;
    // Twice the cap in connections that send nothing or half a head, and hold on.
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        if i % 2 == 1 {
            stream
                .write_all(format!("POST /webhooks/{WA_CHANNEL} HTTP/1.1\r\nHo").as_bytes())
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    // And as many complete requests with wrong credentials.
    let refused: Vec<_> = (0..8)
        .map(|i| {
            let url = server.url.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{url}/webhooks/{WA_CHANNEL}"))
                    .header("Authorization", format!("Bearer guess-{i}"))
                    .body(INBOUND_8X8)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // The provider's webhook is answered all the same.
    let (status, body) = tokio::time::timeout(
        HANG_GUARD,
        post(&server, WA_CHANNEL, Some(WA_WEBHOOK_AUTH), INBOUND_8X8),
    )
    .await
    .expect("the webhook was answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.sink.events.lock().unwrap().len(), 1);
    for task in refused {
        let status = tokio::time::timeout(HANG_GUARD, task)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(status, 401);
    }
    // Every idle connection was closed by the server.
    for mut stream in idle {
        let answer = tokio::time::timeout(HANG_GUARD, read_until_closed(&mut stream))
            .await
            .expect("an idle connection was closed by the server");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
}

async fn over_the_concurrency_cap_a_webhook_gets_503_and_the_held_one_still_commits(db: TestDb) {
    let server = serve_with(db, "", "max_concurrent_requests = 1").await;
    server
        .sink
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let first = {
        let url = server.url.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/webhooks/{WA_CHANNEL}"))
                .header("Authorization", WA_WEBHOOK_AUTH)
                .body(INBOUND_8X8)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // The first is being answered (held in the sink): the one slot is taken.
    server.sink.entered.notified().await;
    let (status, body) = post(&server, RCS_CHANNEL, Some(RCS_WEBHOOK_AUTH), MO_KALEYRA).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, serde_json::json!({ "error": "busy, please retry" }));
    // Health checks are not counted.
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server
        .sink
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    server.sink.release.notify_one();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(server.sink.events.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// What is logged and answered of the caller's channel name

/// Everything this test binary logs at WARN and above, in the plain format.
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        #[derive(Clone)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let capture = Capture(log.clone());
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || capture.clone())
            .init();
        log
    })
}

async fn a_channel_name_with_control_characters_is_logged_escaped_and_not_echoed(db: TestDb) {
    let log = captured_log();
    let server = serve(db, "").await;
    // A newline to forge a log line, an escape sequence to colour a terminal.
    let (status, body) = post(
        &server,
        "evil%0Aforged%20line%1B%5B31m",
        Some(WA_WEBHOOK_AUTH),
        INBOUND_8X8,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body, unauthenticated(), "the name is not echoed");
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains(r#"channel="evil\nforged line\u{1b}[31m""#),
        "the name logged quoted and escaped:\n{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("forged line")) && !text.contains('\u{1b}'),
        "a raw newline or escape reached the log:\n{text}"
    );
    nothing_stored(&server).await;
}

// ---------------------------------------------------------------------------------------------
// E.164

async fn a_seven_digit_number_is_a_number(db: TestDb) {
    let server = serve(db, "").await;
    // Niue: country code 683, 4-digit subscriber number; Kaleyra sends it without `+`.
    let mo = MO_KALEYRA.replace("447700900124", "6834002");
    let (status, body) = post(&server, RCS_CHANNEL, Some(RCS_WEBHOOK_AUTH), &mo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    let events = server.sink.events.lock().unwrap();
    let InboundEvent::Message(message) = &events[0].1 else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(
        message.user.msisdn.as_ref().map(|m| m.as_str()),
        Some("+6834002")
    );
}

on_both_backends!(
    unknown_channels_and_bad_credentials_get_the_same_401_and_nothing_stored,
    an_unauthenticated_request_is_answered_without_its_body_being_read,
    a_body_that_does_not_arrive_in_time_gets_408_and_nothing_stored,
    a_slow_loris_is_cut_off_by_the_header_timeout,
    a_flood_of_idle_and_unauthenticated_connections_does_not_stop_a_webhook,
    over_the_concurrency_cap_a_webhook_gets_503_and_the_held_one_still_commits,
    a_channel_name_with_control_characters_is_logged_escaped_and_not_echoed,
    a_seven_digit_number_is_a_number,
    a_source_outside_the_allow_list_is_refused,
    an_oversized_body_gets_413_and_nothing_stored,
    an_unreadable_authenticated_body_is_quarantined_verbatim_and_answered_200,
    parsed_events_reach_the_sink_and_a_failing_sink_means_503,
);
