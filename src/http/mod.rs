//! The HTTP surface: provider webhooks, hosted files, liveness and readiness; and the
//! `/metrics` page of the metrics listener.

pub mod files;
mod health;
pub mod metrics;
pub mod webhooks;

use std::{
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};

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

/// The router of the public listener.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/files/{id}", get(files::serve))
        .route(
            "/webhooks/{channel}",
            post(webhooks::receive).layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(state)
}
