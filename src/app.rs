//! The daemon: open and migrate the store, sync the configuration into it, serve HTTP until told
//! to stop. `main` and the tests call the same [`run`].

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Instant,
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
        pubsub::{Subscriber, subscriptions},
    },
    store::{AnyStore, AuditEntry, ChannelRecord, OrgRecord, Store, StoreError, StoreOptions},
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
    let settings = json!({
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
    let content_hash = Sha256::digest(settings.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
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

/// Runs the daemon on `listener` until `shutdown` completes.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let store = open_store(&config).await?;
    let applied = store.migrate().await?;
    for migration in &applied {
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            "store: applied migration"
        );
    }
    let (orgs, channels) = config_records(&config);
    let report = store.sync_config(&orgs, &channels).await?;
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

    let provider_http = reqwest::Client::builder()
        .timeout(PROVIDER_REQUEST_TIMEOUT)
        .user_agent(concat!("byocd/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with these settings always builds");
    let clock: SharedClock = Arc::new(SystemClock);
    let wake = Arc::new(Notify::new());
    let channels = Arc::new(RwLock::new(Arc::new(http::channel_map(
        &config.channels,
        &provider_http,
    ))));
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
    let isa = match config.token_key.take() {
        Some(key) if !config.orgs.is_empty() => {
            let tokens =
                TokenManager::new(&config.orgs, store.clone(), Arc::new(key), clock.clone());
            for sub in subscriptions(&config.orgs, &config.channels, &config.pubsub) {
                let subscriber = Subscriber::new(
                    sub,
                    store.clone(),
                    tokens.clone(),
                    clock.clone(),
                    wake.clone(),
                );
                tracker.spawn(subscriber.run(cancel.child_token()));
            }
            Some(IsaClient::new(
                &config.orgs,
                tokens,
                ClientSettings::default(),
            ))
        }
        _ => None,
    };
    let relay = Relay::new(
        store.clone(),
        isa,
        channels.clone(),
        config.relay.clone(),
        clock.clone(),
        wake.clone(),
        file_host,
    );
    let sweeper = crate::lifecycle::sweeper::Sweeper::new(
        store.clone(),
        config.channels.clone(),
        clock.clone(),
        wake.clone(),
    );
    tracker.spawn(sweeper.clone().run(cancel.child_token()));
    let metrics_listener = TcpListener::bind(config.server.metrics_listen)
        .await
        .map_err(|source| RunError::Metrics {
            addr: config.server.metrics_listen,
            source,
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    {
        let relay = relay.clone();
        let sweeper = sweeper.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = relay.metrics().render(Some(&relay), Some(&sweeper));
                async move {
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
    let relay_task = tokio::spawn(relay.run(cancel.child_token(), config.server.shutdown_grace));

    let state = AppState {
        store: store.clone(),
        started: Instant::now(),
        version: VERSION,
        config_hash: Arc::from(config.content_hash.as_str()),
        channels,
        sink: Arc::new(Intake::new(store.clone(), clock.clone(), wake)),
        max_body_bytes: config.server.max_body_bytes,
        file_signer,
        sweeper: Some(sweeper),
    };
    tracing::info!(listen = %listener.local_addr()?, metrics = %metrics_addr, database = %store.backend(), "byocd ready");
    let served = axum::serve(
        listener,
        http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    // Webhooks are no longer accepted: let the relay finish what is in flight, then stop.
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
    served?;
    Ok(())
}
