//! The daemon: open and migrate the store, sync the configuration into it, serve HTTP until told
//! to stop. `main` and the tests call the same [`run`].

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    clock::{SharedClock, SystemClock},
    config::{ChannelConfig, Config, OrgConfig},
    http::{self, AppState},
    relay::{Relay, intake::Intake},
    salesforce::{
        auth::TokenManager,
        isa::{ClientSettings, IsaClient},
        pubsub::{Subscriber, Subscription, subscriptions},
    },
    store::{
        AnyStore, AppliedMigration, AuditEntry, ChannelRecord, OrgRecord, Store, StoreError,
        StoreOptions,
    },
};

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Time allowed for one call to a provider.
const PROVIDER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Serving HTTP failed.
    #[error("http listener failed: {0}")]
    Http(#[from] std::io::Error),
    /// The metrics listener could not be bound.
    #[error("cannot listen for metrics on server.metrics_listen = {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> Result<AnyStore, StoreError> {
    AnyStore::open(
        &config.database_url(),
        StoreOptions {
            max_connections: config.database.max_connections,
            acquire_timeout: config.database.acquire_timeout,
            password: config.database.password.clone(),
            ..StoreOptions::default()
        },
    )
    .await
}

/// Applies the migrations the database lacks; a database already at this binary's schema is
/// left alone, so the daemon may run as a PostgreSQL role that cannot change the schema
/// (docs/security.md): the owner runs `byocd migrate` before an upgrade.
pub async fn migrate_unless_current(store: &AnyStore) -> Result<Vec<AppliedMigration>, StoreError> {
    if store.schema_status().await?.is_current() {
        return Ok(Vec::new());
    }
    store.migrate().await
}

/// Opens the store for reading beside a running daemon (admin and audit commands).
pub async fn open_store_read_only(config: &Config) -> Result<AnyStore, StoreError> {
    AnyStore::open(
        &config.database_url(),
        StoreOptions {
            max_connections: 2,
            acquire_timeout: config.database.acquire_timeout,
            password: config.database.password.clone(),
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .await
}

/// Opens the store for an admin command that writes beside a running daemon: no lock file.
pub async fn open_store_for_admin(config: &Config) -> Result<AnyStore, StoreError> {
    AnyStore::open(
        &config.database_url(),
        StoreOptions {
            max_connections: 2,
            acquire_timeout: config.database.acquire_timeout,
            password: config.database.password.clone(),
            exclusive: false,
            ..StoreOptions::default()
        },
    )
    .await
}

/// The org and channel records the configuration defines, as the store keeps them. Secrets
/// appear only as their references.
pub fn config_records(config: &Config) -> (Vec<OrgRecord>, Vec<ChannelRecord>) {
    let orgs = config.orgs.iter().map(org_record).collect();
    let channels = config.channels.iter().map(channel_record).collect();
    (orgs, channels)
}

fn org_record(org: &OrgConfig) -> OrgRecord {
    let mut settings = json!({
        "name": org.name,
        "login_url": org.login_url,
        "scrt_base_url": org.scrt_base_url,
        "instance_url": org.instance_url,
        "pubsub_endpoint": org.pubsub_endpoint,
        "consumer_key": org.consumer_key,
        "username": org.username,
        "private_key_file": org.private_key.reference(),
        "requests_per_second": org.requests_per_second,
        "token_max_age_seconds": org.token_max_age.map(|d| d.as_secs()),
    });
    // Only when set, so that an org without it keeps the content hash it had before the key
    // existed (a changed hash is an org changed on reload).
    if let Some(token_url) = &org.token_url {
        settings["token_url"] = json!(token_url);
    }
    let content_hash = hex::encode(Sha256::digest(settings.to_string().as_bytes()));
    OrgRecord {
        org_id: org.org_id.as_str().to_owned(),
        name: org.name.clone(),
        content_hash,
        settings,
    }
}

fn channel_record(channel: &ChannelConfig) -> ChannelRecord {
    let settings = channel.settings_json();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    ChannelRecord {
        name: channel.name.clone(),
        org_id: channel.org_id.as_str().to_owned(),
        product: text(&settings["product"]),
        provider: text(&settings["provider"]["kind"]),
        channel_address_identifier: channel.channel_address_identifier.clone(),
        content_hash: channel.content_hash().to_owned(),
        settings,
    }
}

/// What tells a running daemon to reload or stop: `main` feeds it from SIGHUP and SIGTERM/SIGINT,
/// tests from their own hands.
pub struct Control {
    /// Completes when the daemon should stop.
    pub shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// One message per reload request.
    pub reload: tokio::sync::mpsc::Receiver<()>,
}

impl Control {
    /// A control that stops when `shutdown` completes and never reloads.
    pub fn stop_on(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        let (_tx, reload) = tokio::sync::mpsc::channel(1);
        Self {
            shutdown: Box::pin(shutdown),
            reload,
        }
    }
}

/// Runs the daemon on `listener` until `control` says stop; reloads the configuration when it
/// says reload.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    control: Control,
) -> Result<(), RunError> {
    let Control {
        shutdown,
        reload: mut reloads,
    } = control;
    let notifier = Arc::new(crate::sd::Notifier::from_env());
    let store = open_store(&config).await?;
    let applied = migrate_unless_current(&store).await?;
    for migration in &applied {
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            "store: applied migration"
        );
    }
    release_earlier_leases(&store).await?;
    let (orgs, channels) = config_records(&config);
    let report = store.sync_config(&orgs, &channels).await?;
    // The gate opens afresh: what was recorded of pauses no longer holds.
    crate::lifecycle::pauses::lift(&store).await?;
    tracing::info!(
        orgs = orgs.len(),
        channels = channels.len(),
        added = report.channels.added.len(),
        changed = report.channels.changed.len(),
        retired = report.channels.retired.len(),
        "config: synced into the store"
    );
    store
        .append_audit(
            &AuditEntry::new("daemon.started", format!("byocd {VERSION} started")).detail(json!({
                "version": VERSION,
                "config_hash": config.content_hash,
                "database": store.backend(),
                "migrations_applied": applied.iter().map(|m| m.version).collect::<Vec<_>>(),
            })),
        )
        .await?;
    // Every channel registers what it can render (docs/salesforce.md, "Capabilities").
    crate::domain::capabilities::enqueue(&store, None, &config.channels).await?;

    let provider_http = reqwest::Client::builder()
        .timeout(PROVIDER_REQUEST_TIMEOUT)
        .user_agent(concat!("byocd/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with these settings always builds");
    let clock: SharedClock = Arc::new(SystemClock);
    let wake = Arc::new(Notify::new());
    let map = crate::channels::channel_map(&config.channels, &provider_http);
    // Webhooks see the configured channels; the relay also keeps channels retired by a reload,
    // so the work they already accepted is still delivered.
    let channels = Arc::new(RwLock::new(Arc::new(map.clone())));
    let relay_channels = Arc::new(RwLock::new(Arc::new(map)));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let file_signer = config
        .token_key
        .as_ref()
        .map(|key| http::files::FileSigner::new(key.derive("hosted-files")));
    let file_host: Option<Arc<dyn crate::relay::FileHost>> =
        match (&file_signer, &config.server.public_base_url) {
            (Some(signer), Some(base)) => Some(Arc::new(http::files::HostedFiles {
                store: store.clone(),
                signer: signer.clone(),
                base_url: base.clone(),
                ttl: config.server.hosted_file_ttl,
                clock: clock.clone(),
            })),
            _ => None,
        };
    let metrics = crate::metrics::Metrics::new();
    let token_key = config.token_key.take().map(Arc::new);
    let tokens = match &token_key {
        Some(key) if !config.orgs.is_empty() => Some(
            TokenManager::new(&config.orgs, store.clone(), key.clone(), clock.clone())
                .with_metrics(metrics.clone()),
        ),
        _ => None,
    };
    let isa = tokens.as_ref().map(|tokens| {
        IsaClient::new(
            &config.orgs,
            tokens.clone(),
            ClientSettings {
                max_retry_after: config.relay.max_retry_after,
                ..ClientSettings::default()
            },
        )
    });
    let relay = Relay::new(
        store.clone(),
        isa,
        relay_channels.clone(),
        config.relay.clone(),
        clock.clone(),
        wake.clone(),
        file_host,
    )
    .with_metrics(metrics.clone());
    let sweeper = crate::lifecycle::sweeper::Sweeper::new(
        store.clone(),
        config.channels.clone(),
        clock.clone(),
        wake.clone(),
    );
    tracker.spawn(sweeper.clone().run(cancel.child_token()));
    tracker.spawn(crate::lifecycle::seal::run(
        store.clone(),
        cancel.child_token(),
    ));
    tracker.spawn(crate::lifecycle::purge::run(
        store.clone(),
        clock.clone(),
        crate::domain::privacy::Retention::from_config(
            config.relay.finished_retention,
            &config.retention,
        ),
        cancel.child_token(),
    ));
    let subscribers: SubscriberSet = Arc::default();
    let config_hash = Arc::new(RwLock::new(Arc::from(config.content_hash.as_str())));
    let mut live = Live {
        config,
        store: store.clone(),
        clock: clock.clone(),
        wake: wake.clone(),
        provider_http,
        channels: channels.clone(),
        relay_channels,
        relay: relay.clone(),
        sweeper: sweeper.clone(),
        token_key,
        tokens,
        subscribers: subscribers.clone(),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        config_hash: config_hash.clone(),
    };
    live.start_subscribers().await;

    let metrics_listener = TcpListener::bind(live.config.server.metrics_listen)
        .await
        .map_err(|source| RunError::Metrics {
            addr: live.config.server.metrics_listen,
            source,
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    {
        let relay = relay.clone();
        let sweeper = sweeper.clone();
        let subscribers = subscribers.clone();
        // The database gauges are read in the background, never by a scrape.
        let store = http::metrics::StoreGaugeCache::default();
        tracker.spawn(store.clone().run(live.store.clone(), cancel.child_token()));
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let relay = relay.clone();
                let sweeper = sweeper.clone();
                let subscribers = subscribers.clone();
                let store = store.clone();
                async move {
                    let pubsub = pubsub_liveness(&subscribers);
                    let text = http::metrics::render(
                        &relay.metrics(),
                        &http::metrics::Sources {
                            relay: Some(&relay),
                            sweeper: Some(&sweeper),
                            pubsub: &pubsub,
                            store: Some(&store),
                        },
                    )
                    .await;
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
        let stop = cancel.child_token();
        tracker.spawn(async move {
            let served = axum::serve(metrics_listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let relay_task = tokio::spawn(
        relay
            .clone()
            .run(cancel.child_token(), live.config.server.shutdown_grace),
    );

    let state = AppState {
        store: store.clone(),
        started: Instant::now(),
        version: VERSION,
        config_hash,
        channels,
        sink: Arc::new(
            Intake::new(
                store.clone(),
                clock.clone(),
                wake,
                live.config.database.commit_batch_size as usize,
                intake_writers(&live.config),
                INTAKE_WAIT,
            )
            .with_replay_window(live.config.retention.dedupe),
        ),
        metrics: relay.metrics().clone(),
        max_body_bytes: live.config.server.max_body_bytes,
        limits: http::Limits::from(&live.config.server),
        file_signer,
        sweeper: Some(sweeper),
    };
    let listen_addr = listener.local_addr()?;
    let stop_accepting = CancellationToken::new();
    let server = {
        let stop = stop_accepting.clone();
        let limits = state.limits;
        tokio::spawn(http::serve(
            listener,
            http::router(state),
            limits,
            async move { stop.cancelled().await },
        ))
    };
    let status = format!(
        "ready: listen={listen_addr} metrics={metrics_addr} database={} channels={}",
        store.backend(),
        live.config.channels.len()
    );
    notifier.ready(&status);
    tracing::info!(listen = %listen_addr, metrics = %metrics_addr, database = %store.backend(), "byocd ready");

    let watchdog = crate::sd::watchdog_interval();
    let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = reloads.recv() => {
                notifier.reloading();
                live.reload().await;
                notifier.ready(&format!(
                    "ready: listen={listen_addr} metrics={metrics_addr} database={} channels={} (reloaded)",
                    store.backend(),
                    live.config.channels.len()
                ));
            }
            _ = ping.tick(), if watchdog.is_some() => {
                // Only a daemon whose runtime turns and whose store answers says it is alive.
                match tokio::time::timeout(watchdog.unwrap_or_default(), store.ping()).await {
                    Ok(Ok(())) => notifier.watchdog(),
                    Ok(Err(e)) => tracing::warn!(error = %e, "watchdog: the state store does not answer; not pinging systemd"),
                    Err(_) => tracing::warn!("watchdog: the state store ping timed out; not pinging systemd"),
                }
            }
        }
    }
    notifier.stopping();
    tracing::info!(
        grace_seconds = live.config.server.shutdown_grace.as_secs(),
        "stopping: no new webhooks; letting work in flight finish"
    );
    // Stop accepting; requests already being answered finish (they commit before answering).
    stop_accepting.cancel();
    let served = server.await;
    // Then let the relay finish what is in flight (up to shutdown_grace), and stop the rest.
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    if let Err(e) = relay_task.await {
        tracing::error!(error = %e, "relay task failed");
    }
    store
        .append_audit(&AuditEntry::new("daemon.stopped", "byocd stopped"))
        .await?;
    store.close().await;
    if let Err(e) = served {
        tracing::error!(error = %e, "http listener task failed");
    }
    Ok(())
}

/// How long a webhook waits for room in the commit queue before it is answered 503.
const INTAKE_WAIT: Duration = Duration::from_secs(2);

/// Group-commit writers (database connections the intake uses): SQLite has one writer
/// connection, so one; PostgreSQL two (one group's statements overlap the previous group's
/// commit), or one with a pool of fewer than four, the rest of the pool left to the relay, the
/// sweeper and the subscribers.
fn intake_writers(config: &Config) -> usize {
    match config.database.backend() {
        crate::config::DatabaseBackend::Sqlite => 1,
        crate::config::DatabaseBackend::Postgres => {
            (config.database.max_connections as usize / 2).clamp(1, 2)
        }
    }
}

/// The running Pub/Sub subscribers by (org id, topic).
type SubscriberSet = Arc<std::sync::Mutex<BTreeMap<(String, String), RunningSubscriber>>>;

struct RunningSubscriber {
    /// What its settings hash to: it is restarted when this changes.
    fingerprint: String,
    subscriber: Subscriber,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

fn pubsub_liveness(
    subscribers: &SubscriberSet,
) -> Vec<(String, String, crate::salesforce::pubsub::Liveness)> {
    subscribers
        .lock()
        .expect("subscriber lock")
        .iter()
        .map(|((org, topic), running)| (org.clone(), topic.clone(), running.subscriber.liveness()))
        .collect()
}

/// On SQLite (one daemon per file, the lock file held) work an earlier process had leased — it
/// was killed mid-delivery — is due again now instead of after its lease; logged and audited.
/// On PostgreSQL the leases stand (another replica may be delivering them).
async fn release_earlier_leases(store: &AnyStore) -> Result<(), StoreError> {
    let released = store.release_earlier_leases().await?;
    if released > 0 {
        tracing::warn!(
            rows = released,
            "store: released work an earlier process had leased; it is delivered again now"
        );
        let entry = AuditEntry::new(
            "outbox.leases_released",
            format!("{released} row(s) leased by an earlier process made due again at start"),
        )
        .severity(crate::store::Severity::Warning)
        .detail(serde_json::json!({ "rows": released }));
        if let Err(e) = store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not write an audit row");
        }
    }
    Ok(())
}

/// How long startup waits for each subscription to open its stream before saying ready anyway.
const SUBSCRIBE_READY_WAIT: Duration = Duration::from_secs(10);

/// The parts of a running daemon a reload changes.
struct Live {
    config: Config,
    store: AnyStore,
    clock: SharedClock,
    wake: Arc<Notify>,
    provider_http: reqwest::Client,
    channels: Arc<RwLock<Arc<crate::channels::ChannelMap>>>,
    relay_channels: Arc<RwLock<Arc<crate::channels::ChannelMap>>>,
    relay: Relay,
    sweeper: crate::lifecycle::sweeper::Sweeper,
    token_key: Option<Arc<crate::crypto::TokenKey>>,
    tokens: Option<TokenManager>,
    subscribers: SubscriberSet,
    tracker: TaskTracker,
    cancel: CancellationToken,
    config_hash: Arc<RwLock<Arc<str>>>,
}

/// What a subscriber reads from its settings, hashed: the org, the topic, `[pubsub]`, and of each
/// channel what turns an event into work (name, address, platform event fields, typing, whether
/// the partner routes). A change elsewhere in a channel (session policy, provider keys, …)
/// leaves its subscriber running.
fn subscription_fingerprint(sub: &Subscription) -> String {
    let mut h = Sha256::new();
    h.update(org_record(&sub.org).content_hash.as_bytes());
    h.update(sub.topic.as_bytes());
    h.update(format!("{:?}", sub.settings).as_bytes());
    let mut channels: Vec<String> = sub
        .channels
        .iter()
        .map(|c| {
            format!(
                "{}|{}|{:?}|{}|{}",
                c.name,
                c.channel_address_identifier,
                c.platform_event,
                c.features.typing,
                c.routing.is_some()
            )
        })
        .collect();
    channels.sort_unstable();
    for c in channels {
        h.update(c.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Settings a reload cannot change in a running daemon, by the key an admin edits.
fn needs_restart(old: &Config, new: &Config, key_id_changed: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key: &'static str, changed: bool| {
        if changed {
            out.push(key);
        }
    };
    check("server.listen", old.server.listen != new.server.listen);
    check(
        "server.metrics_listen",
        old.server.metrics_listen != new.server.metrics_listen,
    );
    check(
        "server.max_body_bytes",
        old.server.max_body_bytes != new.server.max_body_bytes,
    );
    check(
        "server.shutdown_grace",
        old.server.shutdown_grace != new.server.shutdown_grace,
    );
    check(
        "server.public_base_url",
        old.server.public_base_url != new.server.public_base_url,
    );
    check(
        "server.hosted_file_ttl",
        old.server.hosted_file_ttl != new.server.hosted_file_ttl,
    );
    check(
        "server.header_timeout, body_timeout, max_connections, max_concurrent_requests",
        http::Limits::from(&old.server) != http::Limits::from(&new.server),
    );
    check(
        "database",
        old.database_url() != new.database_url()
            || old.database.max_connections != new.database.max_connections
            || old.database.acquire_timeout != new.database.acquire_timeout
            || old.database.commit_batch_size != new.database.commit_batch_size,
    );
    check("state_dir", old.state_dir != new.state_dir);
    check("security.token_key_file", key_id_changed);
    check(
        "log",
        old.log.level != new.log.level || old.log.format != new.log.format,
    );
    check(
        "relay",
        format!("{:?}", old.relay) != format!("{:?}", new.relay),
    );
    out
}

impl Live {
    /// Starts the subscribers the configuration asks for that are not running, stops those it no
    /// longer asks for, and restarts those whose settings changed. Returns the restarted and
    /// stopped ones as `org_id topic`.
    async fn start_subscribers(&mut self) -> (Vec<String>, Vec<String>) {
        let wanted: BTreeMap<(String, String), Subscription> = match &self.tokens {
            Some(_) => subscriptions(
                &self.config.orgs,
                &self.config.channels,
                &self.config.pubsub,
            )
            .into_iter()
            .map(|s| ((s.org.org_id.as_str().to_owned(), s.topic.clone()), s))
            .collect(),
            None => BTreeMap::new(),
        };
        let mut stopping = Vec::new();
        let mut started = Vec::new();
        let mut stopped = Vec::new();
        {
            let mut running = self.subscribers.lock().expect("subscriber lock");
            let keys: Vec<(String, String)> = running.keys().cloned().collect();
            for key in keys {
                let keep = wanted.get(&key).is_some_and(|sub| {
                    running
                        .get(&key)
                        .is_some_and(|r| r.fingerprint == subscription_fingerprint(sub))
                });
                if !keep && let Some(r) = running.remove(&key) {
                    r.cancel.cancel();
                    if !wanted.contains_key(&key) {
                        stopped.push(format!("{} {}", key.0, key.1));
                    }
                    stopping.push(r.handle);
                }
            }
        }
        // A subscriber commits before it acknowledges, so stopping it loses nothing: its
        // successor resumes from the stored replay id.
        for handle in stopping {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "a stopped subscriber's task failed");
            }
        }
        let mut fresh = Vec::new();
        for (key, sub) in wanted {
            if self
                .subscribers
                .lock()
                .expect("subscriber lock")
                .contains_key(&key)
            {
                continue;
            }
            let Some(tokens) = self.tokens.clone() else {
                continue;
            };
            let fingerprint = subscription_fingerprint(&sub);
            let subscriber = Subscriber::new(
                sub,
                self.store.clone(),
                tokens,
                self.clock.clone(),
                self.wake.clone(),
            );
            let cancel = self.cancel.child_token();
            let handle = self.tracker.spawn(subscriber.clone().run(cancel.clone()));
            tracing::info!(org_id = %key.0, topic = %key.1, "pubsub: subscriber started");
            started.push(format!("{} {}", key.0, key.1));
            fresh.push(subscriber.clone());
            self.subscribers.lock().expect("subscriber lock").insert(
                key,
                RunningSubscriber {
                    fingerprint,
                    subscriber,
                    cancel,
                    handle,
                },
            );
        }
        // Ready means subscribed: wait (bounded) for each new subscription to make its
        // Subscribe call (GetTopic answered: token, tenant and permission accepted), or to fail
        // its first attempt (Pub/Sub unreachable: webhooks are still taken; the subscriber
        // retries and the failure is logged and counted). Not for the stream's first response:
        // an idle topic may send nothing, headers included, until its first keep-alive.
        let deadline = tokio::time::Instant::now() + SUBSCRIBE_READY_WAIT;
        for subscriber in fresh {
            loop {
                let l = subscriber.liveness();
                if l.subscribes > 0 || l.failures > 0 {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        "pubsub: a subscription has not opened its stream yet; going on (it keeps retrying)"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        (started, stopped)
    }

    /// A refused reload: audited at error severity (a failure to audit is logged) and counted.
    async fn refuse(&self, entry: AuditEntry) {
        let entry = entry.severity(crate::store::Severity::Error);
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, "reload: cannot audit the refused reload");
        }
        self.relay
            .metrics()
            .inc("byocd_config_reloads_total", &[("outcome", "refused")]);
    }

    /// SIGHUP: re-read and validate every file; apply if valid, otherwise keep the configuration
    /// in force and say why.
    async fn reload(&mut self) {
        let old_hash = self.config.content_hash.clone();
        let path = self.config.main_file.clone();
        tracing::info!(file = %path.display(), "reload: reading the configuration");
        let mut new = match crate::config::load(&path) {
            Ok(config) => config,
            Err(errors) => {
                for problem in &errors.problems {
                    tracing::error!("reload: {problem}");
                }
                tracing::error!(
                    problems = errors.problems.len(),
                    config_hash = %old_hash,
                    "reload refused: the configuration has problems; still running on the previous one"
                );
                self.refuse(
                    AuditEntry::new(
                        "config.reload_failed",
                        format!(
                            "reload refused: {} problem(s); the previous configuration stays in force",
                            errors.problems.len()
                        ),
                    )
                    .detail(json!({
                        "old_hash": old_hash,
                        "problems": errors.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })),
                )
                .await;
                return;
            }
        };
        let new_key = new.token_key.take().map(Arc::new);
        let key_id_changed = match (&self.token_key, &new_key) {
            (Some(old), Some(new)) => old.id() != new.id(),
            (Some(_), None) => true,
            _ => false,
        };
        let restart_keys = needs_restart(&self.config, &new, key_id_changed);
        for key in &restart_keys {
            tracing::warn!(
                key,
                "reload: this setting changed but takes effect only at the next restart"
            );
        }
        if self.token_key.is_none() {
            self.token_key = new_key;
        }
        // Pauses and disabled orgs were decided under the old settings: start afresh. The gate
        // first, then the store's records (lifted after the sync), so a probe failing in
        // between cannot leave a recorded pause on an open gate.
        self.relay.gate().reset();
        let (org_records, channel_records) = config_records(&new);
        let report = match self.store.sync_config(&org_records, &channel_records).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "reload refused: cannot record the configuration in the store; still running on the previous one");
                self.refuse(
                    AuditEntry::new(
                        "config.reload_failed",
                        "reload refused: the store did not take the configuration",
                    )
                    .detail(json!({ "old_hash": old_hash, "new_hash": new.content_hash, "error": e.to_string() })),
                )
                .await;
                return;
            }
        };
        // The gate is open; on a failure only the record admin commands read is stale until
        // the next reload or start (logged and audited as an alert).
        crate::lifecycle::pauses::lift_or_alert(&self.store).await;
        // Orgs: a new token manager and client when any org's settings changed.
        let org_hashes = |c: &Config| -> Vec<(String, String)> {
            config_records(c)
                .0
                .into_iter()
                .map(|o| (o.org_id, o.content_hash))
                .collect()
        };
        // Compared with this process's own previous configuration, not with the sync report:
        // with several replicas another one may have synced the new files first.
        let orgs_changed = org_hashes(&self.config) != org_hashes(&new);
        if orgs_changed || self.tokens.is_none() {
            self.tokens = match &self.token_key {
                Some(key) if !new.orgs.is_empty() => Some(
                    TokenManager::new(
                        &new.orgs,
                        self.store.clone(),
                        key.clone(),
                        self.clock.clone(),
                    )
                    .with_metrics(self.relay.metrics().clone()),
                ),
                _ => None,
            };
            self.relay.set_isa(self.tokens.as_ref().map(|tokens| {
                IsaClient::new(
                    &new.orgs,
                    tokens.clone(),
                    ClientSettings {
                        max_retry_after: new.relay.max_retry_after,
                        ..ClientSettings::default()
                    },
                )
            }));
        }
        // Channels: webhooks see exactly the new set; the relay keeps retired ones for the work
        // they already accepted.
        let map = crate::channels::channel_map(&new.channels, &self.provider_http);
        let mut relay_map = map.clone();
        for (name, runtime) in self.relay_channels.read().expect("channel map lock").iter() {
            relay_map
                .entry(name.clone())
                .or_insert_with(|| runtime.clone());
        }
        *self.channels.write().expect("channel map lock") = Arc::new(map);
        *self.relay_channels.write().expect("channel map lock") = Arc::new(relay_map);
        let rescheduled = self.sweeper.set_channels(new.channels.clone());
        // Channels whose capabilities changed (or are new) register them again.
        if let Err(e) = crate::domain::capabilities::enqueue(
            &self.store,
            Some(&self.config.channels),
            &new.channels,
        )
        .await
        {
            tracing::error!(error = %e, "reload: cannot queue the channels' capabilities for Salesforce");
        }
        self.config = new;
        *self.config_hash.write().expect("config hash lock") =
            Arc::from(self.config.content_hash.as_str());
        let (restarted, stopped) = self.start_subscribers().await;
        self.wake.notify_one();
        let new_hash = self.config.content_hash.clone();
        tracing::info!(
            old_hash = %old_hash,
            new_hash = %new_hash,
            added = ?report.channels.added,
            changed = ?report.channels.changed,
            retired = ?report.channels.retired,
            subscribers_started = ?restarted,
            subscribers_stopped = ?stopped,
            "reload: applied"
        );
        let entry = AuditEntry::new(
            "config.reloaded",
            format!(
                "configuration reloaded: {} channel(s) added, {} changed, {} retired",
                report.channels.added.len(),
                report.channels.changed.len(),
                report.channels.retired.len()
            ),
        )
        .detail(json!({
            "old_hash": old_hash,
            "new_hash": new_hash,
            "channels": {
                "added": report.channels.added,
                "changed": report.channels.changed,
                "retired": report.channels.retired,
            },
            "orgs_changed": orgs_changed,
            "subscribers_started": restarted,
            "subscribers_stopped": stopped,
            "sweep_rescheduled": rescheduled,
            "needs_restart": restart_keys,
        }));
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, "reload: cannot audit the reload");
        }
        self.relay
            .metrics()
            .inc("byocd_config_reloads_total", &[("outcome", "applied")]);
    }
}
