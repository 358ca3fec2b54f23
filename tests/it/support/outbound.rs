//! Both directions in-process: emulators of Salesforce (with Pub/Sub and a rep), 8x8 and
//! Kaleyra; a configuration pointing at them; the store on a manual clock; the webhook server
//! with the intake; a running Pub/Sub subscriber; a relay whose steps the test drives.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use byocd::{
    app::config_records,
    clock::{ManualClock, SharedClock, SystemClock},
    config::{Config, EightByEightChannel, RelaySettings},
    http::{self, AppState, files::FileSigner, files::HostedFiles},
    relay::{FileHost, Relay, Settled, intake::Intake},
    salesforce::{
        auth::TokenManager,
        isa::{ClientSettings, IsaClient},
        pubsub::{Subscriber, subscriptions},
    },
    sandbox::{
        eightbyeight::{EightByEightEmulator, EightByEightSettings},
        kaleyra::{KaleyraEmulator, KaleyraSettings},
        pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings},
        rep::Rep,
        salesforce::SalesforceEmulator,
    },
    store::{AnyStore, OutboxFilter, Store, StoreOptions},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    TestDb,
    channels::{
        ConfigDir, Endpoints, RCS_AGENT, RCS_API_KEY, RCS_SID, RCS_WEBHOOK_AUTH, WA_API_KEY,
        WA_CHANNEL, WA_SUB_ACCOUNT, WA_WEBHOOK_AUTH,
    },
    salesforce::emulator_settings,
};

/// The platform event topic of both channels.
pub const TOPIC: &str = "/event/Acme_Event__e";
/// A second platform event of the same org, which no channel reads unless a test subscribes to it.
pub const SECOND_TOPIC: &str = "/event/Acme_Other_Event__e";

pub struct Outbound {
    pub db: TestDb,
    pub store: AnyStore,
    pub salesforce: SalesforceEmulator,
    pub pubsub: PubSubEmulator,
    pub rep: Rep,
    pub wa: EightByEightEmulator,
    pub rcs: KaleyraEmulator,
    pub clock: ManualClock,
    pub config: Config,
    pub relay: Relay,
    pub url: String,
    pub tokens: TokenManager,
    pub wake: Arc<Notify>,
    pub subscriber: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    _config_dir: ConfigDir,
    _server: tokio::task::JoinHandle<()>,
}

impl Outbound {
    /// Everything up, the subscriber running. `extra_main` is appended to the main file.
    pub async fn start(db: TestDb, extra_main: &str) -> Self {
        Self::start_with_routing(db, extra_main, "policy = \"channel-default\"").await
    }

    /// As [`Outbound::start`], with the Kaleyra (CCaaS) channel's `[routing]` table body.
    pub async fn start_with_routing(db: TestDb, extra_main: &str, rcs_routing: &str) -> Self {
        Self::start_with_channels(db, extra_main, "", rcs_routing).await
    }

    /// As [`Outbound::start`], with `wa_extra` appended to the 8x8 channel's file (after its
    /// `[provider]` keys: more keys, or more tables).
    pub async fn start_with_wa(db: TestDb, wa_extra: &str) -> Self {
        Self::start_with_channels(db, "", wa_extra, "policy = \"channel-default\"").await
    }

    /// Everything up, with the main file's extra lines, the 8x8 channel file's extra lines and
    /// the Kaleyra channel's `[routing]` table body.
    pub async fn start_with_channels(
        db: TestDb,
        extra_main: &str,
        wa_extra: &str,
        rcs_routing: &str,
    ) -> Self {
        Self::start_all(
            db,
            extra_main,
            wa_extra,
            rcs_routing,
            EightByEightChannel::Whatsapp,
        )
        .await
    }

    /// As [`Outbound::start`], with the 8x8 channel (still named `WA_CHANNEL`, at
    /// `MSG_ADDRESS`) on RCS, and its emulator an RCS sub-account.
    pub async fn start_8x8_rcs(db: TestDb) -> Self {
        Self::start_all(
            db,
            "",
            "",
            "policy = \"channel-default\"",
            EightByEightChannel::Rcs,
        )
        .await
    }

    async fn start_all(
        db: TestDb,
        extra_main: &str,
        wa_extra: &str,
        rcs_routing: &str,
        eightbyeight: EightByEightChannel,
    ) -> Self {
        let salesforce = SalesforceEmulator::start(emulator_settings())
            .await
            .unwrap();
        let mut pubsub_settings = PubSubSettings::new(
            super::salesforce::ORG_ID,
            vec![TopicSettings::new(TOPIC), TopicSettings::new(SECOND_TOPIC)],
            TokenCheck::Salesforce(salesforce.clone()),
        );
        pubsub_settings.keepalive_interval = Duration::from_millis(500);
        let pubsub = PubSubEmulator::start(pubsub_settings).await.unwrap();
        let wa = EightByEightEmulator::start(EightByEightSettings::new(
            WA_SUB_ACCOUNT,
            eightbyeight,
            WA_API_KEY,
        ))
        .await
        .unwrap();
        let rcs = KaleyraEmulator::start(KaleyraSettings::new(RCS_SID, RCS_API_KEY, RCS_AGENT))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config_dir = ConfigDir::write_all(
            &Endpoints {
                salesforce: salesforce.base_url(),
                eightbyeight: wa.base_url(),
                kaleyra: rcs.base_url(),
                pubsub: pubsub.endpoint(),
            },
            &format!(
                "\n[server]\npublic_base_url = \"https://byocd.partner.example\"\n\n[pubsub]\ninitial_replay = \"earliest\"\n{extra_main}"
            ),
            wa_extra,
            rcs_routing,
            match eightbyeight {
                EightByEightChannel::Whatsapp => "whatsapp",
                EightByEightChannel::Rcs => "rcs",
            },
        );
        let mut config = config_dir.load(&db.url);
        let clock = ManualClock::new(chrono::Utc::now());
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
        let channel_map = Arc::new(RwLock::new(Arc::new(byocd::channels::channel_map(
            &config.channels,
            &reqwest::Client::new(),
        ))));
        let key = config.token_key.take().unwrap();
        let signer = FileSigner::new(key.derive("hosted-files"));
        let tokens = TokenManager::new(
            &config.orgs,
            store.clone(),
            Arc::new(key),
            Arc::new(SystemClock),
        );
        let isa = IsaClient::new(&config.orgs, tokens.clone(), ClientSettings::default());
        let wake = Arc::new(Notify::new());
        let host: Arc<dyn FileHost> = Arc::new(HostedFiles {
            store: store.clone(),
            signer: signer.clone(),
            base_url: config.server.public_base_url.clone().unwrap(),
            ttl: config.server.hosted_file_ttl,
            clock: shared.clone(),
        });
        let relay = Relay::new(
            store.clone(),
            Some(isa),
            channel_map.clone(),
            RelaySettings {
                // The emulators serve files on 127.0.0.1 over http.
                allow_private_media_urls: true,
                ..config.relay.clone()
            },
            shared.clone(),
            wake.clone(),
            Some(host),
        );
        let state = AppState {
            store: store.clone(),
            started: Instant::now(),
            version: "test",
            config_hash: Arc::new(std::sync::RwLock::new(Arc::from("test"))),
            metrics: byocd::metrics::Metrics::new(),
            channels: channel_map,
            sink: Arc::new(Intake::new(
                store.clone(),
                shared.clone(),
                wake.clone(),
                64,
                1,
                Duration::from_secs(2),
            )),
            max_body_bytes: config.server.max_body_bytes,
            limits: http::Limits::from(&config.server),
            file_signer: Some(signer),
            sweeper: None,
        };
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        let rep = Rep::new(salesforce.clone(), pubsub.clone());
        let mut this = Self {
            db,
            store,
            salesforce,
            pubsub,
            rep,
            wa,
            rcs,
            clock,
            config,
            relay,
            url,
            tokens,
            wake,
            subscriber: None,
            _config_dir: config_dir,
            _server: server,
        };
        this.start_subscriber();
        this
    }

    /// Starts (again) the subscription, as a restarted daemon would.
    pub fn start_subscriber(&mut self) {
        let sub = subscriptions(
            &self.config.orgs,
            &self.config.channels,
            &self.config.pubsub,
        )
        .pop()
        .unwrap();
        let subscriber = Subscriber::new(
            sub,
            self.store.clone(),
            self.tokens.clone(),
            Arc::new(self.clock.clone()),
            self.wake.clone(),
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(subscriber.run(cancel.clone()));
        self.subscriber = Some((cancel, task));
    }

    /// Starts one more subscription of the same org and channels, to `topic`, sharing the
    /// token manager (as a daemon whose org has two platform events does). Runs until the test
    /// ends.
    pub fn start_extra_subscriber(&self, topic: &str) -> tokio::task::JoinHandle<()> {
        let mut sub = subscriptions(
            &self.config.orgs,
            &self.config.channels,
            &self.config.pubsub,
        )
        .pop()
        .unwrap();
        sub.topic = topic.to_owned();
        let subscriber = Subscriber::new(
            sub,
            self.store.clone(),
            self.tokens.clone(),
            Arc::new(self.clock.clone()),
            self.wake.clone(),
        );
        tokio::spawn(subscriber.run(CancellationToken::new()))
    }

    /// Stops the subscription.
    pub async fn stop_subscriber(&mut self) {
        if let Some((cancel, task)) = self.subscriber.take() {
            cancel.cancel();
            task.await.unwrap();
        }
    }

    /// Posts a webhook with the channel's credentials.
    pub async fn webhook(&self, channel: &str, body: &serde_json::Value) {
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
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// Waits (up to 20 s) until at least `n` outbox rows of `kind` exist.
    pub async fn wait_rows(&self, kind: &str, n: usize) {
        for _ in 0..400 {
            let rows = self
                .store
                .outbox(&OutboxFilter {
                    limit: 10_000,
                    ..Default::default()
                })
                .await
                .unwrap();
            if rows.iter().filter(|r| r.kind == kind).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} {kind} rows after 20 s");
    }

    /// Runs relay steps until nothing is due.
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
