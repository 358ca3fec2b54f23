//! The configured channels at run time: each channel's configuration with its provider client.
//! Webhooks look channels up here to authenticate and parse; the relay, to deliver on them.

use std::{collections::BTreeMap, sync::Arc};

use crate::{config::ChannelConfig, providers::AnyProvider};

/// A configured channel and its provider client.
#[derive(Debug, Clone)]
pub struct ChannelRuntime {
    /// The channel's configuration.
    pub config: ChannelConfig,
    /// Its provider.
    pub provider: AnyProvider,
    /// Its webhook metrics' label sets, resolved on the first webhook ([`crate::metrics::Metrics::channel`]).
    pub meters: std::sync::OnceLock<crate::metrics::ChannelMeters>,
}

/// The configured channels by name.
pub type ChannelMap = BTreeMap<String, Arc<ChannelRuntime>>;

/// Builds the channel map from the configuration.
pub fn channel_map(channels: &[ChannelConfig], http: &reqwest::Client) -> ChannelMap {
    channels
        .iter()
        .map(|c| {
            if matches!(
                c.webhook_authentication(),
                crate::config::WebhookAuthentication::None
            ) {
                tracing::warn!(
                    channel = ?c.name,
                    file = %c.file.display(),
                    "webhooks of this channel are NOT authenticated by byocd \
                     (provider.webhook_authentication = \"none\"): only a proxy that authenticates \
                     them may reach the listener"
                );
            }
            (
                c.name.clone(),
                Arc::new(ChannelRuntime {
                    config: c.clone(),
                    provider: AnyProvider::for_channel(c, http.clone()),
                    meters: std::sync::OnceLock::new(),
                }),
            )
        })
        .collect()
}
