//! byocd — a Bring Your Own Channel daemon connecting 8x8 Chat Apps and Kaleyra RCS end users to
//! Salesforce reps through the Interaction Service API and the Pub/Sub API.
//!
//! The binary (`src/main.rs`) only parses the command line ([`cli`]) and dispatches; everything it
//! runs lives here so that tests drive the same code paths.
//!
//! The `sandbox` feature (on by default) adds the emulators of the services byocd talks to
//! (`sandbox`) and `byocd demo` (`demo`), which the demo, the benchmarks and the integration
//! tests run against. The production build (`cargo build --release --no-default-features`) leaves
//! them out: nothing the product runs depends on them.

pub mod admin;
pub mod app;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod domain;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod providers;
pub mod relay;
pub mod routing;
pub mod salesforce;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sd;
pub mod store;
pub mod telemetry;
