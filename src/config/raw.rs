//! The configuration as written: every key optional, types checked, nothing else.
//!
//! Validation (`validate.rs`) turns these into the model, filling defaults and reporting missing
//! keys, so that one bad value never hides the problems after it.

use std::{collections::BTreeMap, net::SocketAddr};

use serde::Deserialize;

use super::{
    duration::Humane,
    model::{ConsentOwner, EightByEightChannel, LogFormat, Product, RoutingOwner},
};

/// The main file (after defaults and environment are merged in).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMain {
    pub state_dir: Option<String>,
    pub channels_dir: Option<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub relay: RawRelay,
    #[serde(default)]
    pub pubsub: RawPubSub,
    #[serde(default)]
    pub retention: RawRetention,
    #[serde(default)]
    pub orgs: Vec<RawOrg>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub max_body_bytes: Option<usize>,
    pub shutdown_grace: Option<Humane>,
    pub public_base_url: Option<String>,
    pub hosted_file_ttl: Option<Humane>,
    pub header_timeout: Option<Humane>,
    pub body_timeout: Option<Humane>,
    pub max_connections: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPubSub {
    pub initial_replay: Option<crate::config::InitialReplay>,
    pub num_requested: Option<i32>,
    pub retention: Option<Humane>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelay {
    pub concurrency: Option<u32>,
    pub batch_size: Option<u32>,
    pub poll_interval: Option<Humane>,
    pub lease: Option<Humane>,
    pub retry_schedule: Option<Vec<Humane>>,
    pub finished_retention: Option<Humane>,
    pub max_retry_after: Option<Humane>,
    pub allow_private_media_urls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub quarantine: Option<Humane>,
    pub dedupe: Option<Humane>,
    pub ended_sessions: Option<Humane>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub max_connections: Option<u32>,
    pub acquire_timeout: Option<Humane>,
    pub commit_batch_size: Option<u32>,
    pub allow_unverified_tls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub token_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOrg {
    pub org_id: Option<String>,
    pub name: Option<String>,
    pub login_url: Option<String>,
    pub token_url: Option<String>,
    pub scrt_base_url: Option<String>,
    pub instance_url: Option<String>,
    pub pubsub_endpoint: Option<String>,
    pub consumer_key: Option<String>,
    pub username: Option<String>,
    pub private_key_file: Option<String>,
    pub requests_per_second: Option<u32>,
    pub token_max_age: Option<Humane>,
}

/// One channel file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChannel {
    pub name: Option<String>,
    pub org_id: Option<String>,
    pub product: Option<Product>,
    pub authorization_context: Option<String>,
    pub channel_address_identifier: Option<String>,
    pub routing_owner: Option<RoutingOwner>,
    pub consent_owner: Option<ConsentOwner>,
    #[serde(default)]
    pub platform_event: RawPlatformEvent,
    #[serde(default)]
    pub features: RawFeatures,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub capabilities: RawCapabilities,
    pub routing: Option<RawRouting>,
    pub provider: Option<RawProvider>,
    pub whatsapp_template: Option<RawWhatsappTemplate>,
}

/// `[whatsapp_template]`: the approved template sent outside WhatsApp's 24-hour window.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhatsappTemplate {
    pub name: Option<String>,
    pub language: Option<String>,
    pub body_parameters: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlatformEvent {
    pub name: Option<String>,
    pub event_type_field: Option<String>,
    pub payload_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFeatures {
    pub typing: Option<bool>,
    pub receipts: Option<bool>,
    pub typing_quiet_time: Option<Humane>,
}

/// `[capabilities]`: narrows what the channel registers with Salesforce.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapabilities {
    pub formats: Option<Vec<String>>,
    pub max_attachment_kb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    pub inactivate_after: Option<Humane>,
    pub end_after: Option<Humane>,
    pub sweep_cron: Option<String>,
    pub opt_out_keywords: Option<Vec<String>>,
}

/// Routing policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PolicyKind {
    ChannelDefault,
    Queue,
    Flow,
    Agents,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::ChannelDefault => "channel-default",
            Self::Queue => "queue",
            Self::Flow => "flow",
            Self::Agents => "agents",
        }
    }
}

/// `[routing]`: the keys of every policy; validation checks which ones the chosen policy uses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub policy: Option<PolicyKind>,
    pub queue_id: Option<String>,
    pub flow_id: Option<String>,
    pub fallback_queue_id: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub agents: Option<Vec<RawAgent>>,
    pub capacity_weight: Option<f64>,
    pub capacity_percentage: Option<f64>,
    pub max_attempts: Option<u32>,
    pub offer_timeout: Option<Humane>,
    pub remove_previous_agent: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub user_id: Option<String>,
    pub capacity: Option<u32>,
}

/// Provider kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum ProviderKind {
    #[serde(rename = "8x8")]
    EightByEight,
    #[serde(rename = "kaleyra")]
    Kaleyra,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::EightByEight => "8x8",
            Self::Kaleyra => "kaleyra",
        }
    }
}

/// `[provider]`: the keys of both kinds; validation checks which ones the kind uses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub kind: Option<ProviderKind>,
    pub base_url: Option<String>,
    pub api_key_file: Option<String>,
    pub webhook_authorization_file: Option<String>,
    pub webhook_authentication: Option<RawWebhookAuthentication>,
    // 8x8
    pub sub_account_id: Option<String>,
    pub channel: Option<EightByEightChannel>,
    pub webhook_allow_networks: Option<Vec<String>>,
    pub media_hosts: Option<Vec<String>>,
    // Kaleyra
    pub sid: Option<String>,
    pub agent_id: Option<String>,
    pub basic_username: Option<String>,
    pub basic_password_file: Option<String>,
}

/// `provider.webhook_authentication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawWebhookAuthentication {
    /// The provider's `Authorization` header, checked against `webhook_authorization_file`.
    Authorization,
    /// No check by byocd: a proxy in front of it authenticates.
    None,
}
