//! The HTTP surface: provider webhooks (later), liveness and readiness.

mod health;

use std::{sync::Arc, time::Instant};

use axum::{Router, routing::get};

use crate::store::AnyStore;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The state store.
    pub store: AnyStore,
    /// When the daemon started.
    pub started: Instant,
    /// This build's version.
    pub version: &'static str,
    /// Hash of the configuration in force.
    pub config_hash: Arc<str>,
}

/// The router of the public listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}
