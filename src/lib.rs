//! byocd — a Bring Your Own Channel daemon connecting 8x8 Chat Apps and Kaleyra RCS end users to
//! Salesforce reps through the Interaction Service API and the Pub/Sub API.
//!
//! The binary (`src/main.rs`) only parses the command line; everything it runs lives here so
//! that tests drive the same code paths.

pub mod admin;
pub mod app;
pub mod channels;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod domain;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod providers;
pub mod relay;
pub mod routing;
pub mod salesforce;
pub mod sandbox;
pub mod sd;
pub mod store;
pub mod telemetry;
