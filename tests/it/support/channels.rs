//! A configuration directory with one org and two channels (8x8 WhatsApp, Kaleyra RCS), written
//! to a temporary directory with its secret files, pointing at whatever URLs a test gives.

use std::path::{Path, PathBuf};

use byocd::config::Config;

use super::salesforce::{
    CC_ADDRESS, CC_CONTEXT, CONSUMER_KEY, MSG_ADDRESS, MSG_CONTEXT, ORG_ID, USERNAME, keys,
};

/// The 8x8 channel's name.
pub const WA_CHANNEL: &str = "acme-whatsapp";
/// The Kaleyra channel's name.
pub const RCS_CHANNEL: &str = "acme-rcs";
/// The `Authorization` value 8x8 sends.
pub const WA_WEBHOOK_AUTH: &str = "Bearer 8x8-webhook-secret-for-tests";
/// The `Authorization` value Kaleyra's callback profile sends.
pub const RCS_WEBHOOK_AUTH: &str = "Basic a2FsZXlyYTpjYWxsYmFjaw==";
/// 8x8 API key.
pub const WA_API_KEY: &str = "8x8-api-key-for-tests";
/// 8x8 sub-account.
pub const WA_SUB_ACCOUNT: &str = "Acme_WA_01";
/// Kaleyra API key.
pub const RCS_API_KEY: &str = "kaleyra-api-key-for-tests";
/// Kaleyra SID.
pub const RCS_SID: &str = "HXIN1234567890AB";
/// Kaleyra agent id.
pub const RCS_AGENT: &str = "acme_rcs";

/// Where each external service is.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Salesforce login and SCRT host.
    pub salesforce: String,
    /// 8x8 API host.
    pub eightbyeight: String,
    /// Kaleyra API host.
    pub kaleyra: String,
    /// Pub/Sub API endpoint.
    pub pubsub: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            salesforce: "http://127.0.0.1:9".into(),
            eightbyeight: "http://127.0.0.1:9".into(),
            kaleyra: "http://127.0.0.1:9".into(),
            pubsub: "http://127.0.0.1:9".into(),
        }
    }
}

/// A written configuration directory.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub main_file: PathBuf,
}

impl ConfigDir {
    /// Writes the files; `extra_main` is appended to the main file, `wa_extra` to the 8x8
    /// channel's `[provider]` table.
    pub fn write(endpoints: &Endpoints, extra_main: &str, wa_extra: &str) -> Self {
        Self::write_routing(
            endpoints,
            extra_main,
            wa_extra,
            "policy = \"channel-default\"",
        )
    }

    /// As [`ConfigDir::write`], with the Kaleyra (CCaaS) channel's `[routing]` table body.
    pub fn write_routing(
        endpoints: &Endpoints,
        extra_main: &str,
        wa_extra: &str,
        rcs_routing: &str,
    ) -> Self {
        Self::write_all(endpoints, extra_main, wa_extra, rcs_routing, "whatsapp")
    }

    /// As [`ConfigDir::write_routing`], with the 8x8 channel's `channel` (`whatsapp` or `rcs`;
    /// its name stays [`WA_CHANNEL`]).
    pub fn write_all(
        endpoints: &Endpoints,
        extra_main: &str,
        wa_extra: &str,
        rcs_routing: &str,
        eightbyeight_channel: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("secrets")).unwrap();
        std::fs::create_dir_all(root.join("channels.d")).unwrap();
        let secret = |name: &str, value: &str| {
            std::fs::write(root.join("secrets").join(name), value).unwrap();
        };
        byocd::crypto::TokenKey::generate_file(&root.join("secrets/token.key")).unwrap();
        secret("org.pem", &keys().0.private_pem);
        secret("8x8-api.key", WA_API_KEY);
        secret("8x8-webhook.auth", WA_WEBHOOK_AUTH);
        secret("kaleyra-api.key", RCS_API_KEY);
        secret("kaleyra-webhook.auth", RCS_WEBHOOK_AUTH);
        let sf = &endpoints.salesforce;
        let pubsub = &endpoints.pubsub;
        let main = format!(
            r#"state_dir = "state"

[security]
token_key_file = "secrets/token.key"

[[orgs]]
org_id = "{ORG_ID}"
name = "Acme"
login_url = "{sf}"
scrt_base_url = "{sf}"
consumer_key = "{CONSUMER_KEY}"
username = "{USERNAME}"
private_key_file = "secrets/org.pem"
pubsub_endpoint = "{pubsub}"
instance_url = "https://acme.my.salesforce.com"
{extra_main}
"#
        );
        let main_file = root.join("byocd.toml");
        std::fs::write(&main_file, main).unwrap();
        std::fs::write(
            root.join("channels.d").join(format!("{WA_CHANNEL}.toml")),
            format!(
                r#"org_id = "{ORG_ID}"
product = "Messaging"
authorization_context = "{MSG_CONTEXT}"
channel_address_identifier = "{MSG_ADDRESS}"
routing_owner = "Salesforce"
consent_owner = "Salesforce"

[platform_event]
name = "Acme_Event__e"

[provider]
kind = "8x8"
sub_account_id = "{WA_SUB_ACCOUNT}"
channel = "{eightbyeight_channel}"
base_url = "{}"
api_key_file = "secrets/8x8-api.key"
webhook_authorization_file = "secrets/8x8-webhook.auth"
{wa_extra}
"#,
                endpoints.eightbyeight
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("channels.d").join(format!("{RCS_CHANNEL}.toml")),
            format!(
                r#"org_id = "{ORG_ID}"
product = "CCaaS"
authorization_context = "{CC_CONTEXT}"
channel_address_identifier = "{CC_ADDRESS}"
routing_owner = "Partner"
consent_owner = "Partner"

[platform_event]
name = "Acme_Event__e"

[routing]
{rcs_routing}

[provider]
kind = "kaleyra"
sid = "{RCS_SID}"
base_url = "{}"
api_key_file = "secrets/kaleyra-api.key"
agent_id = "{RCS_AGENT}"
webhook_authorization_file = "secrets/kaleyra-webhook.auth"
"#,
                endpoints.kaleyra
            ),
        )
        .unwrap();
        Self { dir, main_file }
    }

    /// Loads the configuration, with the database URL given.
    pub fn load(&self, database_url: &str) -> Config {
        byocd::config::load_with_env(
            &self.main_file,
            &[("BYOCD__DATABASE__URL".to_string(), database_url.to_string())],
        )
        .unwrap_or_else(|e| panic!("test configuration does not load:\n{e}"))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
