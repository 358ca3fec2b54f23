//! The HTTP surface: provider webhooks, hosted files, liveness and readiness; and the
//! `/metrics` page of the metrics listener.
//!
//! [`serve`] runs the public listener with its limits ([`Limits`], `[server]`): a request head
//! must arrive within `header_timeout` (hyper's header-read timer, which also runs while a
//! kept-alive connection waits for its next request: it is the idle timeout too), an
//! authenticated body within `body_timeout`; at most `max_connections` connections are open
//! (beyond it, new ones wait in the kernel's accept queue until one closes) and at most
//! `max_concurrent_requests` webhook and file requests are being answered (beyond it, 503 at
//! once; health checks are not counted).

pub mod files;
mod health;
pub mod metrics;
pub mod webhooks;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    error_handling::HandleErrorLayer,
    extract::{ConnectInfo, DefaultBodyLimit},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use tokio::net::TcpListener;

use crate::{
    channels::{ChannelMap, ChannelRuntime},
    relay::intake::InboundSink,
    store::AnyStore,
};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The state store.
    pub store: AnyStore,
    /// When the daemon started.
    pub started: Instant,
    /// This build's version.
    pub version: &'static str,
    /// Hash of the configuration in force; replaced on reload.
    pub config_hash: Arc<RwLock<Arc<str>>>,
    /// The daemon's counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The configured channels; replaced as a whole on reload.
    pub channels: Arc<RwLock<Arc<ChannelMap>>>,
    /// Where parsed webhook events go.
    pub sink: Arc<dyn InboundSink>,
    /// Largest webhook body accepted.
    pub max_body_bytes: usize,
    /// Timeouts and caps of the listener.
    pub limits: Limits,
    /// Signs and checks the URLs of files byocd serves (`None`: no files are served).
    pub file_signer: Option<files::FileSigner>,
    /// The session sweeper, whose staleness `/readyz` reports (`None`: not checked).
    pub sweeper: Option<crate::lifecycle::sweeper::Sweeper>,
}

impl AppState {
    /// The channel named `name`, if configured.
    pub fn channel(&self, name: &str) -> Option<Arc<ChannelRuntime>> {
        self.channels
            .read()
            .expect("channel map lock poisoned")
            .get(name)
            .cloned()
    }
}

/// The limits of the public listener (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a complete request head, from the connection's opening or the previous
    /// answer (so also the idle timeout of a kept-alive connection).
    pub header_timeout: Duration,
    /// Longest wait for an authenticated request's whole body.
    pub body_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most webhook and file requests answered at once; more get 503.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        use crate::config::{
            DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONCURRENT_REQUESTS,
            DEFAULT_SERVER_MAX_CONNECTIONS,
        };
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_SERVER_MAX_CONNECTIONS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }
}

impl From<&crate::config::ServerSettings> for Limits {
    fn from(server: &crate::config::ServerSettings) -> Self {
        Self {
            header_timeout: server.header_timeout,
            body_timeout: server.body_timeout,
            max_connections: server.max_connections,
            max_concurrent_requests: server.max_concurrent_requests,
        }
    }
}

/// The router of the public listener.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let busy = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": "busy, please retry" })),
            )
                .into_response()
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.limits.max_concurrent_requests,
        ));
    let capped = Router::new()
        .route("/files/{id}", get(files::serve))
        .route(
            "/webhooks/{channel}",
            post(webhooks::receive).layer(DefaultBodyLimit::max(limit)),
        )
        .layer(busy);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(capped)
        .with_state(state)
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes; then lets the requests
/// being answered finish (idle connections are closed) and returns.
///
/// Each request carries [`ConnectInfo`] with the peer's address, as axum's own `serve` gives.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};

    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: over the cap, connections wait in the kernel's accept queue.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        // axum's `Listener` retries (and logs) accept errors such as running out of files.
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), request)
        });
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that went away, sent garbage or was too slow: its problem, not ours.
                tracing::debug!(peer = %peer, error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
