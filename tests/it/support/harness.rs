//! The inbound path in-process: the Salesforce emulator, a configuration pointing at it, the
//! store on a manual clock, the webhook server with the durable intake, and a relay whose steps
//! the test drives.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Instant,
};

use byocd::{
    app::config_records,
    clock::{ManualClock, SharedClock},
    config::Config,
    http::{self, AppState},
    relay::{Relay, Settled, intake::Intake},
    salesforce::{
        auth::TokenManager,
        isa::{ClientSettings, IsaClient},
    },
    sandbox::salesforce::SalesforceEmulator,
    store::{AnyStore, Store, StoreOptions},
};
use chrono::{TimeZone, Utc};
use tokio::sync::Notify;

use super::{
    TestDb,
    channels::{ConfigDir, Endpoints, RCS_WEBHOOK_AUTH, WA_CHANNEL, WA_WEBHOOK_AUTH},
    salesforce::emulator_settings,
};

pub struct Harness {
    pub db: TestDb,
    pub store: AnyStore,
    pub emulator: SalesforceEmulator,
    pub clock: ManualClock,
    pub config: Config,
    pub config_dir: ConfigDir,
    pub relay: Relay,
    /// The sweeper whose health `/readyz` reports.
    pub sweeper: byocd::lifecycle::sweeper::Sweeper,
    pub url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, "").await
    }

    /// `extra_main` is appended to the main configuration file (e.g. a `[relay]` table).
    pub async fn start_with(db: TestDb, extra_main: &str) -> Self {
        Self::start_rcs(db, extra_main, "").await
    }

    /// As [`Harness::start_with`]; `rcs_extra` is appended to the Kaleyra channel's `[routing]`
    /// table (start it with a table header, e.g. `[session]`).
    pub async fn start_rcs(db: TestDb, extra_main: &str, rcs_extra: &str) -> Self {
        Self::start_full(db, extra_main, "", rcs_extra).await
    }

    /// As [`Harness::start_rcs`]; `wa_extra` is appended to the 8x8 channel's `[provider]`
    /// table. Unless `extra_main` sets `relay.allow_private_media_urls`, it is on: the media
    /// servers of the tests listen on 127.0.0.1 over http.
    pub async fn start_full(db: TestDb, extra_main: &str, wa_extra: &str, rcs_extra: &str) -> Self {
        let emulator = SalesforceEmulator::start(emulator_settings())
            .await
            .unwrap();
        let config_dir = ConfigDir::write_routing(
            &Endpoints {
                salesforce: emulator.base_url(),
                ..Endpoints::default()
            },
            extra_main,
            wa_extra,
            &format!("policy = \"channel-default\"\n{rcs_extra}"),
        );
        let mut config = config_dir.load(&db.url);
        if !extra_main.contains("allow_private_media_urls") {
            config.relay.allow_private_media_urls = true;
        }
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap());
        let shared: SharedClock = Arc::new(clock.clone());
        let store = AnyStore::open(
            &db.url,
            StoreOptions {
                clock: shared.clone(),
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let (orgs, channels) = config_records(&config);
        store.sync_config(&orgs, &channels).await.unwrap();
        let channels = Arc::new(RwLock::new(Arc::new(byocd::channels::channel_map(
            &config.channels,
            &reqwest::Client::new(),
        ))));
        // Tokens are minted against the emulator's own clock; the store's clock is the manual one.
        let tokens = TokenManager::new(
            &config.orgs,
            store.clone(),
            Arc::new(config.token_key.take().unwrap()),
            Arc::new(byocd::clock::SystemClock),
        );
        let isa = IsaClient::new(
            &config.orgs,
            tokens,
            ClientSettings {
                max_retry_after: config.relay.max_retry_after,
                ..ClientSettings::default()
            },
        );
        let wake = Arc::new(Notify::new());
        let relay = Relay::new(
            store.clone(),
            Some(isa),
            channels.clone(),
            config.relay.clone(),
            shared.clone(),
            wake.clone(),
            None,
        );
        let sweeper = byocd::lifecycle::sweeper::Sweeper::new(
            store.clone(),
            config.channels.clone(),
            shared.clone(),
            wake.clone(),
        );
        let state = AppState {
            store: store.clone(),
            started: Instant::now(),
            version: "test",
            config_hash: Arc::new(std::sync::RwLock::new(Arc::from("test"))),
            metrics: byocd::metrics::Metrics::new(),
            channels,
            // As the daemon runs it: webhooks committed in groups.
            sink: Arc::new(Intake::new(
                store.clone(),
                shared,
                wake,
                64,
                1,
                std::time::Duration::from_secs(2),
            )),
            max_body_bytes: config.server.max_body_bytes,
            limits: http::Limits::from(&config.server),
            file_signer: None,
            sweeper: Some(sweeper.clone()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            db,
            store,
            emulator,
            clock,
            config,
            config_dir,
            relay,
            sweeper,
            url,
            _server: server,
        }
    }

    /// Posts a webhook body to a channel with its right credentials.
    pub async fn webhook(&self, channel: &str, body: &serde_json::Value) -> serde_json::Value {
        let auth = if channel == WA_CHANNEL {
            WA_WEBHOOK_AUTH
        } else {
            RCS_WEBHOOK_AUTH
        };
        let response = reqwest::Client::new()
            .post(format!("{}/webhooks/{channel}", self.url))
            .header("Authorization", auth)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "webhook to {channel} refused");
        response.json().await.unwrap()
    }

    /// Runs relay steps until one finds nothing due; returns every settled row.
    pub async fn drain(&self) -> Vec<(i64, Settled)> {
        let mut all = Vec::new();
        for _ in 0..1000 {
            let step = self.relay.step().await;
            if step.is_empty() {
                return all;
            }
            super::assert_settled(&step);
            all.extend(step);
        }
        panic!("the relay never ran out of due work");
    }
}

/// An 8x8 v3 inbound text message.
pub fn wa_text(umid: &str, msisdn: &str, text: &str) -> serde_json::Value {
    serde_json::json!({
        "namespace": "ChatApps",
        "eventType": "inbound_message_received",
        "description": "ChatApps inbound message",
        "version": 3,
        "payload": {
            "umid": umid,
            "subAccountId": super::channels::WA_SUB_ACCOUNT,
            "timestamp": "2026-11-21T10:00:00.00Z",
            "user": { "msisdn": msisdn },
            "recipient": { "channel": "WhatsApp", "channelId": "acme" },
            "type": "Text",
            "content": { "text": text }
        }
    })
}

/// An 8x8 v3 inbound media message.
pub fn wa_media(
    umid: &str,
    msisdn: &str,
    kind: &str,
    url: &str,
    caption: Option<&str>,
) -> serde_json::Value {
    let mut content = serde_json::json!({ "url": url });
    if let Some(c) = caption {
        content["text"] = c.into();
    }
    serde_json::json!({
        "namespace": "ChatApps",
        "eventType": "inbound_message_received",
        "version": 3,
        "payload": {
            "umid": umid,
            "subAccountId": super::channels::WA_SUB_ACCOUNT,
            "timestamp": "2026-11-21T10:00:00.00Z",
            "user": { "msisdn": msisdn },
            "recipient": { "channel": "WhatsApp", "channelId": "acme" },
            "type": kind,
            "content": content
        }
    })
}

/// An 8x8 v9 status webhook for a message we sent.
pub fn wa_status(umid: &str, state: &str, error: Option<(i64, &str)>) -> serde_json::Value {
    let mut status = serde_json::json!({ "state": state, "timestamp": "2026-11-21T10:05:00.00Z" });
    if let Some((code, message)) = error {
        status["errorCode"] = code.into();
        status["errorMessage"] = message.into();
    }
    serde_json::json!({
        "namespace": "ChatApps",
        "eventType": "outbound_message_status_changed",
        "version": 9,
        "payload": {
            "umid": umid,
            "subAccountId": super::channels::WA_SUB_ACCOUNT,
            "channel": "whatsapp",
            "status": status
        }
    })
}

/// A Kaleyra flat callback (MO or DR) of `kind` from `from` (digits).
pub fn kaleyra(kind: &str, event_id: &str, from: &str, text: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "type": kind,
        "eventId": event_id,
        "from": from,
        "to": super::channels::RCS_AGENT,
        "sentAt": "2026-11-21T10:00:00Z",
        "messageId": format!("msg-{event_id}"),
    });
    if let Some(t) = text {
        body["userMessage"] = serde_json::json!({ "type": "TEXT", "text": t });
    }
    body
}

pub use super::channels::{RCS_CHANNEL as RCS, WA_CHANNEL as WA};
