//! The whole outside world on loopback: the emulators of Salesforce (token endpoint and
//! Interaction Service), its Pub/Sub API, 8x8 and Kaleyra, a small file host for end-user
//! pictures, and a configuration directory that points byocd at them — freshly generated keys
//! and secrets, one channel per provider. `byocd demo` and the benchmarks run the real daemon
//! on it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine as _;

use super::{
    eightbyeight::{EightByEightEmulator, EightByEightSettings},
    kaleyra::{KaleyraEmulator, KaleyraSettings},
    pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings},
    rep::Rep,
    salesforce::{EmulatedChannel, EmulatorSettings, SalesforceEmulator},
};
use crate::config::EightByEightChannel;

/// The emulated org.
pub const ORG_ID: &str = "00D000000000DMO";
/// The connected app's consumer key.
pub const CONSUMER_KEY: &str = "3MVG9sandbox.consumer.key";
/// The integration user.
pub const USERNAME: &str = "byoc-integration@sandbox.example";
/// The platform event both channels share.
pub const TOPIC: &str = "/event/Sandbox_Event__e";

/// The 8x8 WhatsApp channel (BYOC for Messaging, routed by Salesforce).
pub const WA_CHANNEL: &str = "sandbox-whatsapp";
/// The approved WhatsApp template of the sandbox's 8x8 channel (`[whatsapp_template]`).
pub const WA_TEMPLATE: &str = "agent_follow_up";
/// Its channel address identifier in Salesforce.
pub const WA_ADDRESS: &str = "+6580001234";
/// Its conversation channel definition.
pub const WA_CONTEXT: &str = "Sandbox_WhatsApp_CCD";
/// The 8x8 sub-account.
pub const WA_SUB_ACCOUNT: &str = "Sandbox_WA_01";
/// The 8x8 API key.
pub const WA_API_KEY: &str = "sandbox-8x8-api-key";
/// The `Authorization` 8x8 puts on its webhooks.
pub const WA_WEBHOOK_AUTH: &str = "Bearer sandbox-8x8-webhook-secret";

/// The Kaleyra RCS channel (BYOC for CCaaS, routed by byocd).
pub const RCS_CHANNEL: &str = "sandbox-rcs";
/// Its channel address identifier in Salesforce.
pub const RCS_ADDRESS: &str = "sandbox_rcs_agent";
/// Its conversation channel definition.
pub const RCS_CONTEXT: &str = "Sandbox_RCS_CCD";
/// The Kaleyra account SID.
pub const RCS_SID: &str = "HXSANDBOX0000001";
/// The Kaleyra API key.
pub const RCS_API_KEY: &str = "sandbox-kaleyra-api-key";
/// The RCS agent.
pub const RCS_AGENT: &str = "sandbox_rcs";
/// The `Authorization` of the Kaleyra callback profile.
pub const RCS_WEBHOOK_AUTH: &str = "Basic c2FuZGJveDpjYWxsYmFjaw==";
/// The reps byocd routes the Kaleyra channel's sessions to.
pub const REPS: [&str; 2] = ["005000000000AAA", "005000000000BBB"];

/// What to build.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the configuration directory is written (`byocd.toml`, `channels.d/`, `secrets/`)
    /// and the state directory made (`state/`).
    pub root: PathBuf,
    /// byocd's webhook listener (`127.0.0.1:0`: any free port).
    pub listen: SocketAddr,
    /// byocd's metrics listener.
    pub metrics_listen: SocketAddr,
    /// `database.url`; empty: SQLite in `state/`.
    pub database_url: String,
    /// Appended to the main file (e.g. a `[relay]` table).
    pub extra_main: String,
    /// The `[session]` table body of both channels.
    pub session: String,
    /// Pub/Sub keep-alive interval of the emulator.
    pub keepalive: Duration,
}

impl StackOptions {
    /// Everything on loopback under `root`, ports chosen by the system, SQLite, idle sessions
    /// inactivated after 30 s and ended after 60 s, swept every 5 s.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: String::new(),
            extra_main: String::new(),
            session:
                "inactivate_after = \"30s\"\nend_after = \"60s\"\nsweep_cron = \"*/5 * * * * *\"\n"
                    .into(),
            keepalive: Duration::from_secs(5),
        }
    }
}

/// The emulators, running, and the configuration that points at them.
#[derive(Debug)]
pub struct Stack {
    /// Salesforce: token endpoint, Interaction Service, rep file downloads.
    pub salesforce: SalesforceEmulator,
    /// Salesforce's Pub/Sub API.
    pub pubsub: PubSubEmulator,
    /// 8x8 Chat Apps.
    pub wa: EightByEightEmulator,
    /// Kaleyra RCS.
    pub rcs: KaleyraEmulator,
    /// A rep acting in Salesforce (publishes on the platform event).
    pub rep: Rep,
    /// Where end-user files are served (`<base>/picture.png`).
    pub media_base: String,
    /// The main configuration file.
    pub config_file: PathBuf,
    media: tokio::task::JoinHandle<()>,
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// An emulator or a file could not be set up.
    #[error("sandbox: {0}")]
    Io(#[from] std::io::Error),
    /// Key generation failed.
    #[error("sandbox: cannot generate the org's RSA key")]
    Key,
}

/// A small PNG (a 1×1 pixel), the end user's picture.
pub const PICTURE_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// An RSA key pair in PEM: (PKCS#8 private key, SubjectPublicKeyInfo public key).
pub fn generate_rsa_pem() -> Result<(String, String), StackError> {
    use aws_lc_rs::{
        encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der},
        rsa::{KeyPair, KeySize},
        signature::KeyPair as _,
    };
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| StackError::Key)?;
    let private: Pkcs8V1Der<'_> = pair.as_der().map_err(|_| StackError::Key)?;
    let public: PublicKeyX509Der<'_> = pair.public_key().as_der().map_err(|_| StackError::Key)?;
    Ok((
        pem("PRIVATE KEY", private.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Stack {
    /// Generates the keys, starts every emulator on loopback and writes the configuration.
    pub async fn start(options: &StackOptions) -> Result<Self, StackError> {
        let (private_pem, public_pem) = generate_rsa_pem()?;
        let salesforce = SalesforceEmulator::start(EmulatorSettings {
            org_id: ORG_ID.into(),
            consumer_key: CONSUMER_KEY.into(),
            username: USERNAME.into(),
            audience: None,
            public_key_pem: public_pem,
            channels: vec![
                EmulatedChannel {
                    channel_address_identifier: WA_ADDRESS.into(),
                    authorization_context: WA_CONTEXT.into(),
                    product: "Messaging".into(),
                    routing_owner: "Salesforce".into(),
                    consent_owner: "Salesforce".into(),
                    queues: vec![],
                    flows: vec![],
                    users: vec![],
                },
                EmulatedChannel {
                    channel_address_identifier: RCS_ADDRESS.into(),
                    authorization_context: RCS_CONTEXT.into(),
                    product: "CCaaS".into(),
                    routing_owner: "Partner".into(),
                    consent_owner: "Partner".into(),
                    queues: vec![],
                    flows: vec![],
                    users: REPS.iter().map(|r| (*r).to_owned()).collect(),
                },
            ],
            rate_limit_per_second: None,
        })
        .await?;
        let mut pubsub_settings = PubSubSettings::new(
            ORG_ID,
            vec![TopicSettings::new(TOPIC)],
            TokenCheck::Salesforce(salesforce.clone()),
        );
        pubsub_settings.keepalive_interval = options.keepalive;
        let pubsub = PubSubEmulator::start(pubsub_settings).await?;
        let wa = EightByEightEmulator::start(EightByEightSettings::new(
            WA_SUB_ACCOUNT,
            EightByEightChannel::Whatsapp,
            WA_API_KEY,
        ))
        .await?;
        let rcs =
            KaleyraEmulator::start(KaleyraSettings::new(RCS_SID, RCS_API_KEY, RCS_AGENT)).await?;
        let (media_base, media) = serve_media().await?;
        let rep = Rep::new(salesforce.clone(), pubsub.clone()).on_topic(TOPIC);
        let config_file = write_config(
            options,
            &private_pem,
            &salesforce.base_url(),
            &pubsub.endpoint(),
            &wa.base_url(),
            &rcs.base_url(),
        )?;
        Ok(Self {
            salesforce,
            pubsub,
            wa,
            rcs,
            rep,
            media_base,
            config_file,
            media,
        })
    }

    /// Stops every emulator.
    pub async fn shutdown(self) {
        self.media.abort();
        self.wa.shutdown().await;
        self.rcs.shutdown().await;
        self.pubsub.shutdown().await;
        self.salesforce.shutdown().await;
    }
}

/// Serves [`PICTURE_PNG`] at `/picture.png` on loopback.
async fn serve_media() -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::{Router, http::header::CONTENT_TYPE, routing::get};
    let app = Router::new().route(
        "/picture.png",
        get(|| async { ([(CONTENT_TYPE, "image/png")], PICTURE_PNG) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "sandbox media host stopped");
        }
    });
    Ok((base, task))
}

fn write_config(
    options: &StackOptions,
    private_pem: &str,
    salesforce: &str,
    pubsub: &str,
    eightbyeight: &str,
    kaleyra: &str,
) -> std::io::Result<PathBuf> {
    let root = &options.root;
    std::fs::create_dir_all(root.join("secrets"))?;
    std::fs::create_dir_all(root.join("channels.d"))?;
    std::fs::create_dir_all(root.join("state"))?;
    let secret = |name: &str, value: &str| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(root.join("secrets").join(name))?;
        f.write_all(value.as_bytes())
    };
    let key_file = root.join("secrets/token.key");
    if !key_file.exists() {
        crate::crypto::TokenKey::generate_file(&key_file)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    secret("org.pem", private_pem)?;
    secret("8x8-api.key", WA_API_KEY)?;
    secret("8x8-webhook.auth", WA_WEBHOOK_AUTH)?;
    secret("kaleyra-api.key", RCS_API_KEY)?;
    secret("kaleyra-webhook.auth", RCS_WEBHOOK_AUTH)?;
    let database = if options.database_url.is_empty() {
        String::new()
    } else {
        format!("url = \"{}\"\n", options.database_url)
    };
    let main = format!(
        r#"# Written by byocd's sandbox: every service below is an emulator on loopback.
state_dir = "state"
channels_dir = "channels.d"

[server]
listen = "{listen}"
metrics_listen = "{metrics}"
shutdown_grace = "5s"
public_base_url = "https://byocd.sandbox.example"

[database]
{database}
[security]
token_key_file = "secrets/token.key"

[pubsub]
initial_replay = "earliest"

[[orgs]]
org_id = "{ORG_ID}"
name = "Sandbox org"
login_url = "{salesforce}"
scrt_base_url = "{salesforce}"
instance_url = "{salesforce}"
consumer_key = "{CONSUMER_KEY}"
username = "{USERNAME}"
private_key_file = "secrets/org.pem"
pubsub_endpoint = "{pubsub}"
{extra}
"#,
        listen = options.listen,
        metrics = options.metrics_listen,
        extra = options.extra_main,
    );
    let main_file = root.join("byocd.toml");
    std::fs::write(&main_file, main)?;
    let event = TOPIC.trim_start_matches("/event/");
    let session = &options.session;
    std::fs::write(
        root.join("channels.d").join(format!("{WA_CHANNEL}.toml")),
        format!(
            r#"# 8x8 WhatsApp through BYOC for Messaging; Salesforce routes and owns consent.
org_id = "{ORG_ID}"
product = "Messaging"
authorization_context = "{WA_CONTEXT}"
channel_address_identifier = "{WA_ADDRESS}"
routing_owner = "Salesforce"
consent_owner = "Salesforce"

[platform_event]
name = "{event}"

[session]
{session}
[provider]
kind = "8x8"
sub_account_id = "{WA_SUB_ACCOUNT}"
channel = "whatsapp"
base_url = "{eightbyeight}"
api_key_file = "secrets/8x8-api.key"
webhook_authorization_file = "secrets/8x8-webhook.auth"

# Outside WhatsApp's 24-hour window a rep's text goes out as this approved template.
[whatsapp_template]
name = "{WA_TEMPLATE}"
language = "en"
body_parameters = ["text"]
"#
        ),
    )?;
    std::fs::write(
        root.join("channels.d").join(format!("{RCS_CHANNEL}.toml")),
        format!(
            r#"# Kaleyra RCS through BYOC for CCaaS; byocd routes each new session to a rep.
org_id = "{ORG_ID}"
product = "CCaaS"
authorization_context = "{RCS_CONTEXT}"
channel_address_identifier = "{RCS_ADDRESS}"
routing_owner = "Partner"
consent_owner = "Partner"

[platform_event]
name = "{event}"

[session]
{session}
[routing]
policy = "agents"
agents = [{{ user_id = "{rep_a}", capacity = 5 }}, {{ user_id = "{rep_b}", capacity = 5 }}]

[provider]
kind = "kaleyra"
sid = "{RCS_SID}"
base_url = "{kaleyra}"
api_key_file = "secrets/kaleyra-api.key"
agent_id = "{RCS_AGENT}"
webhook_authorization_file = "secrets/kaleyra-webhook.auth"
"#,
            rep_a = REPS[0],
            rep_b = REPS[1],
        ),
    )?;
    Ok(main_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_written_configuration_passes_config_check() {
        let dir = tempfile::tempdir().unwrap();
        let stack = Stack::start(&StackOptions::new(dir.path())).await.unwrap();
        let config = crate::config::load(&stack.config_file)
            .unwrap_or_else(|e| panic!("the sandbox configuration is invalid:\n{e}"));
        assert_eq!(config.channels.len(), 2);
        assert_eq!(config.orgs[0].org_id.as_str(), ORG_ID);
        stack.shutdown().await;
    }
}
