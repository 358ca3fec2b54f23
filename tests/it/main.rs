//! byocd's integration tests, in one test binary: one module per area (each was its own test
//! binary, which compiled the generic code it used from sqlx, tonic, tokio… and linked them
//! again).
//!
//! Run one area with `cargo test --test it admin::`, one backend with `cargo test --test it
//! sqlite::`. The modules share one process, so a test must not change process-wide state (the
//! environment, the working directory, signal handlers, a global tracing subscriber); the tests
//! that drive real daemons under load take turns through [`support::exclusive`]. The modules that
//! run against the emulators say `#![cfg(feature = "sandbox")]`: without the feature they are
//! left out, and the rest run against the production build.

#[macro_use]
mod support;

mod admin;
mod audit_chain;
mod capabilities;
mod choices;
mod cli;
mod config;
mod crash;
mod demo;
mod doctor;
mod faults;
mod inbound;
mod lifecycle;
mod monitoring;
mod operations;
mod outbound;
mod proactive;
mod provider_8x8;
mod provider_kaleyra;
mod relay_replicas;
mod remediation;
mod remediation_actions;
mod routing;
mod salesforce_client;
mod salesforce_codes;
mod sandbox_pubsub;
mod sandbox_salesforce;
mod store;
mod systemd;
mod webhooks;
