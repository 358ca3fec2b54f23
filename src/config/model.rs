//! The validated configuration: what the rest of the daemon reads.
//!
//! Every value here has passed validation; defaults are filled in. Types that hold secrets
//! ([`SecretFile`], [`DatabaseSettings`]) print only references or redacted forms in `Debug`.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{duration, net::IpNetwork, secret::SecretFile};
use crate::crypto::TokenKey;

/// The whole configuration, as loaded by [`super::load`].
#[derive(Debug)]
pub struct Config {
    /// The main file, as given (`--config PATH`).
    pub main_file: PathBuf,
    /// The directory of channel files (may not exist: then there are no channels).
    pub channels_dir: PathBuf,
    /// SHA-256 (hex) over the main file's bytes and each channel file's name and bytes, in name
    /// order: changes whenever any file changes.
    pub content_hash: String,
    /// HTTP listeners and limits.
    pub server: ServerSettings,
    /// The state database.
    pub database: DatabaseSettings,
    /// Where the daemon keeps its state (the SQLite database, its lock file).
    pub state_dir: PathBuf,
    /// The key that seals OAuth tokens at rest (`security.token_key_file`); present whenever an
    /// org is configured.
    pub token_key: Option<TokenKey>,
    /// Logging.
    pub log: LogSettings,
    /// The outbox relay.
    pub relay: RelaySettings,
    /// The Pub/Sub subscriptions.
    pub pubsub: PubSubSettings,
    /// How long each class of personal data is kept (`[retention]`).
    pub retention: RetentionSettings,
    /// Salesforce orgs, in file order.
    pub orgs: Vec<OrgConfig>,
    /// Channels, one per file in `channels_dir`, in file-name order.
    pub channels: Vec<ChannelConfig>,
}

impl Config {
    /// The database URL to connect to: `database.url`, or `sqlite://<state_dir>/byocd.db` when it
    /// is empty. It never contains the `database.password_file` secret; apply
    /// [`DatabaseSettings::password`] to the connect options instead.
    pub fn database_url(&self) -> String {
        self.database.url.clone()
    }

    /// The org with this id.
    pub fn org(&self, org_id: &str) -> Option<&OrgConfig> {
        self.orgs.iter().find(|o| o.org_id.as_str() == org_id)
    }

    /// The channel with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Where a subscription with no stored position starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialReplay {
    /// Only events published from now on.
    Latest,
    /// Every event the platform still retains.
    Earliest,
}

/// `[pubsub]`: reading the channels' platform events.
#[derive(Debug, Clone, Serialize)]
pub struct PubSubSettings {
    /// Where to start when no position is stored (first start).
    pub initial_replay: InitialReplay,
    /// Events requested at a time (flow-control credit), topped up as they are committed.
    pub num_requested: i32,
    /// How long the platform keeps events; a stored position older than this means events
    /// were lost, and an alert is raised.
    pub retention: Duration,
}

/// `[relay]`: the workers that deliver the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct RelaySettings {
    /// Deliveries in flight at once.
    pub concurrency: u32,
    /// Rows claimed per poll.
    pub batch_size: u32,
    /// How often idle workers look for due work (new work also wakes them at once).
    pub poll_interval: Duration,
    /// How long a claimed row stays claimed; a row whose worker died is retried after it.
    pub lease: Duration,
    /// Delay before each retry (±20 % jitter); after the last, the row is dead-lettered.
    pub retry_schedule: Vec<Duration>,
    /// How long delivered (and discarded) rows stay in the outbox before they are purged.
    pub finished_retention: Duration,
    /// The longest `Retry-After` honoured (a longer one is cut to this): a retry's delay and
    /// the hold on an org's Salesforce calls.
    pub max_retry_after: Duration,
    /// Fetch end users' media over `http` and from loopback, private and link-local addresses
    /// too (the sandbox and tests only).
    pub allow_private_media_urls: bool,
}

/// `[retention]`: how long each class of stored personal data is kept before the periodic
/// purge deletes it (docs/security.md). Finished outbox work is `relay.finished_retention`;
/// hosted files expire after `server.hosted_file_ttl`.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionSettings {
    /// Quarantined webhook bodies, counted from when they arrived.
    pub quarantine: Duration,
    /// Dedupe keys of accepted events, counted from when they arrived; a webhook event whose
    /// provider timestamp is older than this is refused as stale (it could no longer be
    /// recognised as a replay).
    pub dedupe: Duration,
    /// Ended sessions (and their routings), counted from when they ended.
    pub ended_sessions: Duration,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address of the webhook, media and health listener.
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics listener.
    pub metrics_listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long shutdown waits for work in flight.
    pub shutdown_grace: Duration,
    /// The public HTTPS address of this daemon's listener (behind its proxy), for files it
    /// serves to providers that host nothing (Kaleyra). `None`: rep files cannot be sent there.
    pub public_base_url: Option<String>,
    /// How long a served file's signed URL stays valid.
    pub hosted_file_ttl: Duration,
    /// Longest wait for a request head, from a connection's opening or its previous answer
    /// (so also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Longest wait for an authenticated webhook's whole body.
    pub body_timeout: Duration,
    /// Most connections the public listener keeps open at once.
    pub max_connections: usize,
    /// Most webhook and file requests answered at once; more are answered 503.
    pub max_concurrent_requests: usize,
}

/// Which database backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    /// `sqlite:` URLs (and the default).
    Sqlite,
    /// `postgres://` and `postgresql://` URLs.
    Postgres,
}

/// `[database]`.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// The resolved URL (see [`Config::database_url`]). `Debug` hides any password in it.
    pub url: String,
    /// PostgreSQL password read from `password_file`, to be set on the connect options.
    pub password: Option<SecretString>,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// Most accepted webhooks committed together in one transaction (group commit); 1 commits
    /// each alone.
    pub commit_batch_size: u32,
}

impl DatabaseSettings {
    /// The backend the URL selects.
    pub fn backend(&self) -> DatabaseBackend {
        if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            DatabaseBackend::Postgres
        } else {
            DatabaseBackend::Sqlite
        }
    }
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`; other URLs unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("commit_batch_size", &self.commit_batch_size)
            .finish()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// The default: the journal when systemd connected the output to it (`JOURNAL_STREAM` is
    /// set), plain lines otherwise.
    Auto,
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
    /// Structured fields for the systemd journal.
    Journald,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A `tracing` filter directive (`info`, `byocd=debug,sqlx=warn`); `RUST_LOG` overrides it.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

/// A Salesforce org id: exactly 15 letters and digits, starting with `00D`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// Length of an org id as Salesforce expects it in the `OrgId` header.
    pub const LEN: usize = 15;
    /// Key prefix of Organization records.
    pub const PREFIX: &'static str = "00D";

    /// Checks and wraps an org id.
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars != Self::LEN {
            return Err(format!(
                "must be the 15-character org id, got {chars} characters"
            ));
        }
        if !text.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("must contain only letters and digits".to_owned());
        }
        if !text.starts_with(Self::PREFIX) {
            return Err(format!(
                "must start with `{}` (an org id), got `{}`",
                Self::PREFIX,
                &text[..3]
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Salesforce record id (queue, flow, user): 15 or 18 letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SalesforceId(String);

impl SalesforceId {
    /// Checks and wraps a record id.
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars != 15 && chars != 18 {
            return Err(format!(
                "must be a 15- or 18-character Salesforce id, got {chars} characters"
            ));
        }
        if !text.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("must contain only letters and digits".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SalesforceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[[orgs]]`: a Salesforce org and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct OrgConfig {
    /// The 15-character org id (`OrgId` header, Pub/Sub `tenantid`).
    pub org_id: OrgId,
    /// A label for logs and the audit trail (default: the org id).
    pub name: String,
    /// OAuth login host: the JWT `aud`, and by default where the token is requested (no
    /// trailing `/`).
    pub login_url: String,
    /// Full URL of the token endpoint, when it is not `{login_url}/services/oauth2/token` (a
    /// proxy, or a My Domain endpoint with another audience); see [`OrgConfig::token_endpoint`].
    pub token_url: Option<String>,
    /// Interaction Service base URL, e.g. `https://acme.my.salesforce-scrt.com` (no trailing `/`).
    pub scrt_base_url: String,
    /// Instance URL for Pub/Sub metadata; `None`: the one returned with the access token.
    pub instance_url: Option<String>,
    /// Pub/Sub API endpoint (no trailing `/`).
    pub pubsub_endpoint: String,
    /// Connected app / external client app consumer key (JWT `iss`).
    pub consumer_key: String,
    /// The integration user (JWT `sub`).
    pub username: String,
    /// PEM RSA private key that signs the JWT (checked to parse at load time).
    pub private_key: SecretFile,
    /// Client-side limit on Interaction Service requests per second.
    pub requests_per_second: u32,
    /// Re-mint tokens older than this even without a 401; `None`: only on rejection.
    pub token_max_age: Option<Duration>,
}

impl OrgConfig {
    /// Where the token is requested: `token_url`, else `{login_url}/services/oauth2/token`.
    pub fn token_endpoint(&self) -> String {
        self.token_url.clone().unwrap_or_else(|| {
            format!(
                "{}/services/oauth2/token",
                self.login_url.trim_end_matches('/')
            )
        })
    }

    /// The JWT signing key, parsed from [`OrgConfig::private_key`].
    pub fn jwt_encoding_key(
        &self,
    ) -> Result<jsonwebtoken::EncodingKey, jsonwebtoken::errors::Error> {
        jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.expose().as_bytes())
    }
}

/// BYOC product of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Product {
    /// BYOC for Messaging.
    Messaging,
    /// BYOC for CCaaS.
    #[serde(rename = "CCaaS")]
    CCaaS,
}

/// Who routes conversations (`ConversationChannelDefinition.routingOwner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RoutingOwner {
    /// Omni-Channel routes.
    Salesforce,
    /// byocd routes, by the channel's [`RoutingPolicy`] (CCaaS only).
    Partner,
}

/// Who owns consent (`ConversationChannelDefinition.consentOwner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ConsentOwner {
    /// Salesforce keeps consent (required for Messaging).
    Salesforce,
    /// byocd reports consent with `PATCH /consent` (CCaaS only).
    Partner,
}

/// `[platform_event]`: the custom platform event Salesforce publishes rep activity on.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformEvent {
    /// API name of the event, e.g. `Acme_Event__e` (topic `/event/<name>`).
    pub name: String,
    /// API name of its event-type field.
    pub event_type_field: String,
    /// API name of its payload field.
    pub payload_field: String,
}

/// `[features]`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Features {
    /// Relay typing indicators both ways.
    pub typing: bool,
    /// Relay delivery and read receipts.
    pub receipts: bool,
    /// After the end user's last typing signal, how long until Salesforce is told typing
    /// stopped (earlier if a message comes first).
    pub typing_quiet_time: Duration,
}

/// The format types byocd renders for a rep (`[capabilities] formats` names a subset).
pub const RENDERED_FORMATS: [&str; 8] = [
    "Text",
    "Attachments",
    "RichLink",
    "Buttons",
    "QuickReplies",
    "ListPicker",
    "Carousel",
    "TimePicker",
];

/// `[capabilities]`: narrows what the channel registers with Salesforce
/// (`PATCH /capabilities`); by default everything its provider and kind can render.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CapabilityLimits {
    /// Only these of [`RENDERED_FORMATS`] (always with `Text`).
    pub formats: Option<Vec<String>>,
    /// Rep files at most this large, in KiB (below the provider's own limit).
    pub max_attachment_kb: Option<u64>,
}

/// `[session]`: when idle sessions are inactivated and ended.
#[derive(Debug, Clone, Serialize)]
pub struct SessionPolicy {
    /// Idle time after which a session is inactivated.
    #[serde(serialize_with = "duration::serialize")]
    pub inactivate_after: Duration,
    /// Idle time after which a session is ended (longer than `inactivate_after`).
    #[serde(serialize_with = "duration::serialize")]
    pub end_after: Duration,
    /// Six-field cron expression (with seconds, UTC) of the idle-session sweep.
    pub sweep_cron: String,
    /// Messages whose whole text is one of these words (trimmed, any case) end the session
    /// with `operationBy: EndUser` and opt the end user out (stored upper-case).
    pub opt_out_keywords: Vec<String>,
}

impl SessionPolicy {
    /// Whether `text` is an opt-out keyword of this channel: the keyword it is, if so.
    pub fn opt_out_keyword(&self, text: &str) -> Option<&str> {
        let text = text.trim();
        self.opt_out_keywords
            .iter()
            .find(|k| k.eq_ignore_ascii_case(text))
            .map(String::as_str)
    }
}

/// How `capacityWeight` / `capacityPercentage` is sent on `POST /agentWork`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkCapacity {
    /// `capacityWeight` (≥ 0).
    Weight(f64),
    /// `capacityPercentage` (0–100).
    Percentage(f64),
}

/// A rep in an agent pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolAgent {
    /// Salesforce user id of the rep.
    pub user_id: SalesforceId,
    /// How many conversations the rep may hold at once.
    pub capacity: u32,
}

/// `[routing]` of a channel with `routing_owner = "Partner"`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum RoutingPolicy {
    /// `POST /route` without `routingInfo`: Salesforce applies the channel's routing setting.
    ChannelDefault,
    /// Route to one queue.
    Queue {
        /// The queue (`00G…`).
        queue_id: SalesforceId,
    },
    /// Route through an Omni-Channel flow.
    Flow {
        /// Flow DurableId (`300…`).
        flow_id: SalesforceId,
        /// Queue used when the flow does not route.
        fallback_queue_id: SalesforceId,
        /// `routingAttributes`: flow variable name → source expression.
        attributes: BTreeMap<String, String>,
    },
    /// byocd picks a rep from a pool and creates the AgentWork itself.
    Agents {
        /// The pool, in preference order.
        agents: Vec<PoolAgent>,
        /// Capacity sent with the AgentWork, if any.
        capacity: Option<WorkCapacity>,
        /// Reps tried before giving up (or falling back to the queue).
        max_attempts: u32,
        /// Queue used when no rep of the pool takes the work.
        fallback_queue_id: Option<SalesforceId>,
        /// An offer no rep accepted within this time is cancelled and goes to the next rep.
        offer_timeout: Duration,
    },
}

/// The 8x8 Chat Apps channel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EightByEightChannel {
    /// WhatsApp.
    Whatsapp,
    /// RCS.
    Rcs,
}

/// An 8x8 Chat Apps sub-account.
#[derive(Debug, Clone, Serialize)]
pub struct EightByEightAccount {
    /// The sub-account id (`^[A-Za-z0-9\-._&]{3,50}$`).
    pub sub_account_id: String,
    /// WhatsApp or RCS.
    pub channel: EightByEightChannel,
    /// Regional API host (no trailing `/`).
    pub base_url: String,
    /// API key (`Authorization: Bearer`).
    pub api_key: SecretFile,
    /// How 8x8's webhooks are authenticated.
    pub webhook_authorization: WebhookAuthentication,
    /// Webhook sources allowed; empty: any.
    pub webhook_allow_networks: Vec<IpNetwork>,
    /// Hosts end users' media may be fetched from (`host` or `*.domain`, lower case); empty:
    /// any public host.
    pub media_hosts: Vec<String>,
}

/// Optional HTTP Basic credentials for Kaleyra.
#[derive(Debug, Clone, Serialize)]
pub struct BasicCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: SecretFile,
}

/// A Kaleyra RCS account.
#[derive(Debug, Clone, Serialize)]
pub struct KaleyraAccount {
    /// Account SID (in every path).
    pub sid: String,
    /// Pod API host, e.g. `https://rcs-api.in.kaleyra.io` (no trailing `/`).
    pub base_url: String,
    /// API key (`api-key` header).
    pub api_key: SecretFile,
    /// The approved RCS agent id (`from`).
    pub agent_id: String,
    /// Basic credentials, when the account needs them.
    pub basic: Option<BasicCredentials>,
    /// How Kaleyra's callbacks are authenticated.
    pub webhook_authorization: WebhookAuthentication,
}

/// How a channel's webhooks are authenticated: mandatory, so a channel says which.
#[derive(Debug, Clone)]
pub enum WebhookAuthentication {
    /// The exact `Authorization` value the provider sends (`provider.webhook_authorization_file`),
    /// at least [`MIN_WEBHOOK_SECRET_CHARS`] characters long.
    Authorization(SecretFile),
    /// byocd checks no credentials: a proxy in front of it authenticates the webhooks
    /// (`provider.webhook_authentication = "none"`; logged as a warning at every start and
    /// reload).
    None,
}

/// Fewest characters of a webhook `Authorization` value (`config check` refuses shorter ones):
/// 16 random characters are beyond guessing at any request rate a listener answers.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

impl Serialize for WebhookAuthentication {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Only the reference, as for every secret.
            Self::Authorization(secret) => secret.serialize(s),
            Self::None => s.serialize_str("none (webhook_authentication = \"none\")"),
        }
    }
}

/// `[provider]` of a channel.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind")]
pub enum Provider {
    /// 8x8 Chat Apps.
    #[serde(rename = "8x8")]
    EightByEight(EightByEightAccount),
    /// Kaleyra RCS.
    #[serde(rename = "kaleyra")]
    Kaleyra(KaleyraAccount),
}

/// `[whatsapp_template]` of an 8x8 WhatsApp channel: an approved template (by Meta, through
/// 8x8) whose body parameters the rep's text fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhatsappTemplate {
    /// The template's name as approved (`^[a-z0-9_]{1,512}$`).
    pub name: String,
    /// Its language code as approved (`en`, `en_US`, `pt_BR`, …).
    pub language: String,
    /// What fills the body parameters `{{1}}`, `{{2}}`, … in order.
    pub body_parameters: Vec<TemplateParameter>,
}

/// Longest text of one template body parameter byocd sends (WhatsApp's body holds at most
/// 1,024 characters): a longer rep text is cut, a longer fixed text refused.
pub const MAX_TEMPLATE_PARAMETER_CHARS: usize = 1024;

/// What fills one body parameter of a [`WhatsappTemplate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateParameter {
    /// The rep's text (`"text"`), made a valid parameter (docs/providers.md).
    Text,
    /// A fixed text (`"=…"`).
    Literal(String),
}

/// A channel: one file in `channels.d/`.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelConfig {
    /// Unique name (default: the file name without `.toml`).
    pub name: String,
    /// The org the channel belongs to.
    pub org_id: OrgId,
    /// BYOC product.
    pub product: Product,
    /// Developer name of the ConversationChannelDefinition (`AuthorizationContext` header).
    pub authorization_context: String,
    /// `channelAddressIdentifier`: unique across channels.
    pub channel_address_identifier: String,
    /// Who routes.
    pub routing_owner: RoutingOwner,
    /// Who owns consent.
    pub consent_owner: ConsentOwner,
    /// The platform event carrying rep activity.
    pub platform_event: PlatformEvent,
    /// Feature switches.
    pub features: Features,
    /// Idle-session policy.
    pub session: SessionPolicy,
    /// What the channel registers with Salesforce, narrowed (`[capabilities]`).
    pub capabilities: CapabilityLimits,
    /// Routing policy; `Some` exactly when `routing_owner` is `Partner`.
    pub routing: Option<RoutingPolicy>,
    /// After a transfer to another rep, remove the rep who had the session
    /// (`[routing] remove_previous_agent`).
    pub remove_previous_agent: bool,
    /// The messaging provider and its account.
    pub provider: Provider,
    /// The approved template sent instead of a rep's free-form message outside WhatsApp's
    /// 24-hour customer-service window (`[whatsapp_template]`; 8x8 WhatsApp channels only).
    pub whatsapp_template: Option<WhatsappTemplate>,
    /// The channel file.
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(skip)]
    pub(crate) hash: String,
}

impl ChannelConfig {
    /// SHA-256 (hex) of the channel file's bytes.
    pub fn content_hash(&self) -> &str {
        &self.hash
    }

    /// How this channel's webhooks are authenticated.
    pub fn webhook_authentication(&self) -> &WebhookAuthentication {
        match &self.provider {
            Provider::EightByEight(a) => &a.webhook_authorization,
            Provider::Kaleyra(a) => &a.webhook_authorization,
        }
    }

    /// Every setting as JSON (for the channels table and `config check`); secrets appear only as
    /// their references.
    pub fn settings_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("channel settings serialize to JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_are_checked() {
        assert!(OrgId::parse("00D5g000004ABCD").is_ok());
        assert_eq!(
            OrgId::parse("00D5g000004ABCDEAA").unwrap_err(),
            "must be the 15-character org id, got 18 characters"
        );
        assert!(
            OrgId::parse("0015g000004ABCD")
                .unwrap_err()
                .contains("must start with `00D`")
        );
        assert!(
            OrgId::parse("00D5g000004AB-D")
                .unwrap_err()
                .contains("letters and digits")
        );
    }

    #[test]
    fn urls_lose_their_password_in_debug() {
        assert_eq!(
            redact_url("postgres://byocd:hunter2@db:5432/byocd?sslmode=require"),
            "postgres://byocd:***@db:5432/byocd?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/byocd"), "postgres://db/byocd");
        assert_eq!(
            redact_url("sqlite:///var/lib/byocd/byocd.db"),
            "sqlite:///var/lib/byocd/byocd.db"
        );
        let settings = DatabaseSettings {
            url: "postgres://u:hunter2@h/d".into(),
            password: Some(SecretString::from("pw-from-file".to_owned())),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
            commit_batch_size: 1,
        };
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("pw-from-file"),
            "{debug}"
        );
    }
}
