//! The Pub/Sub API (Salesforce → partner): the generated gRPC client (and, with the `sandbox`
//! feature, the server its emulator serves).

/// Types and stubs generated from `proto/pubsub.proto` (package `eventbus.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("eventbus.v1");
}

pub mod subscriber;

pub use subscriber::{Liveness, Subscriber, Subscription, subscriptions};
