//! A Salesforce emulator wired to a real store, token manager and Interaction Service client
//! (with the `sandbox` feature); the test org's ids and keys (always).

use std::{path::PathBuf, process::Command, sync::Arc, sync::OnceLock};

#[cfg(feature = "sandbox")]
use byocd::sandbox::salesforce::{EmulatedChannel, EmulatorSettings, SalesforceEmulator};
use byocd::{
    clock::SystemClock,
    config::{OrgConfig, OrgId, SecretFile},
    crypto::TokenKey,
    salesforce::{
        auth::TokenManager,
        isa::{ClientSettings, IsaClient, Target},
    },
    store::{AnyStore, OrgRecord, Store},
};

use super::TestDb;

pub const ORG_ID: &str = "00D000000000001";
pub const CONSUMER_KEY: &str = "3MVG9test.consumer.key";
pub const USERNAME: &str = "integration@acme.example";
/// A Messaging channel routed and consented by Salesforce.
pub const MSG_ADDRESS: &str = "acme-whatsapp-address";
pub const MSG_CONTEXT: &str = "Acme_WhatsApp";
/// A CCaaS channel routed and consented by the partner.
pub const CC_ADDRESS: &str = "acme-rcs-address";
pub const CC_CONTEXT: &str = "Acme_RCS";
pub const QUEUE: &str = "00G000000000001";
pub const FLOW: &str = "300000000000001";
pub const REP_1: &str = "005000000000001";
pub const REP_2: &str = "005000000000002";
pub const REP_3: &str = "005000000000003";

/// An RSA key pair in PEM, made once per test binary with `openssl`.
pub struct KeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

fn make_key_pair(dir: &std::path::Path, name: &str) -> KeyPair {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect(
            "openssl is needed to make throwaway test keys (Debian: apt-get install openssl)",
        );
        assert!(out.status.success(), "openssl {args:?} failed: {out:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    KeyPair {
        private_pem: std::fs::read_to_string(private).unwrap(),
        public_pem: std::fs::read_to_string(public).unwrap(),
    }
}

/// The org's key pair, and a second one Salesforce does not know.
pub fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        (
            make_key_pair(dir.path(), "org"),
            make_key_pair(dir.path(), "stranger"),
        )
    })
}

#[cfg(feature = "sandbox")]
pub fn emulator_settings() -> EmulatorSettings {
    EmulatorSettings {
        org_id: ORG_ID.into(),
        consumer_key: CONSUMER_KEY.into(),
        username: USERNAME.into(),
        audience: None,
        public_key_pem: keys().0.public_pem.clone(),
        channels: vec![
            EmulatedChannel {
                channel_address_identifier: MSG_ADDRESS.into(),
                authorization_context: MSG_CONTEXT.into(),
                product: "Messaging".into(),
                routing_owner: "Salesforce".into(),
                consent_owner: "Salesforce".into(),
                queues: vec![],
                flows: vec![],
                users: vec![],
            },
            EmulatedChannel {
                channel_address_identifier: CC_ADDRESS.into(),
                authorization_context: CC_CONTEXT.into(),
                product: "CCaaS".into(),
                routing_owner: "Partner".into(),
                consent_owner: "Partner".into(),
                queues: vec![QUEUE.into()],
                flows: vec![FLOW.into()],
                users: vec![REP_1.into(), REP_2.into(), REP_3.into()],
            },
        ],
        rate_limit_per_second: None,
    }
}

/// The org as byocd's configuration would define it, pointing at the emulator.
#[cfg(feature = "sandbox")]
pub fn org_config(emulator: &SalesforceEmulator, private_pem: &str) -> OrgConfig {
    OrgConfig {
        org_id: OrgId::parse(ORG_ID).unwrap(),
        name: "Acme".into(),
        login_url: emulator.base_url(),
        token_url: None,
        scrt_base_url: emulator.base_url(),
        instance_url: None,
        pubsub_endpoint: "http://127.0.0.1:1".into(),
        consumer_key: CONSUMER_KEY.into(),
        username: USERNAME.into(),
        private_key: SecretFile::from_value("keys/acme.pem", private_pem),
        requests_per_second: 2000,
        token_max_age: None,
    }
}

/// Everything a Salesforce-side test needs.
#[cfg(feature = "sandbox")]
pub struct Rig {
    pub db: TestDb,
    pub store: AnyStore,
    pub emulator: SalesforceEmulator,
    pub org: OrgConfig,
    pub key: Arc<TokenKey>,
    pub tokens: TokenManager,
    pub client: IsaClient,
    _dir: Option<PathBuf>,
}

#[cfg(feature = "sandbox")]
impl Rig {
    /// A rig whose org signs with `private_pem` (the right key unless a test says otherwise).
    pub async fn start(db: TestDb) -> Self {
        Self::start_with_key(db, &keys().0.private_pem).await
    }

    pub async fn start_with_key(db: TestDb, private_pem: &str) -> Self {
        Self::start_with(db, emulator_settings(), |emulator| {
            org_config(emulator, private_pem)
        })
        .await
    }

    /// A rig on an emulator with `settings`, the org as `org` makes it for that emulator.
    pub async fn start_with(
        db: TestDb,
        settings: EmulatorSettings,
        org: impl FnOnce(&SalesforceEmulator) -> OrgConfig,
    ) -> Self {
        let emulator = SalesforceEmulator::start(settings).await.unwrap();
        let store = db.migrated().await;
        let org = org(&emulator);
        store
            .sync_config(
                &[OrgRecord {
                    org_id: ORG_ID.into(),
                    name: "Acme".into(),
                    content_hash: "h".into(),
                    settings: serde_json::json!({}),
                }],
                &[],
            )
            .await
            .unwrap();
        let key = Arc::new(TokenKey::generate());
        let tokens = TokenManager::new(
            std::slice::from_ref(&org),
            store.clone(),
            key.clone(),
            Arc::new(SystemClock),
        );
        let client = IsaClient::new(
            std::slice::from_ref(&org),
            tokens.clone(),
            ClientSettings::default(),
        );
        Self {
            db,
            store,
            emulator,
            org,
            key,
            tokens,
            client,
            _dir: None,
        }
    }

    /// A new token manager and client on the same store and key, as after a restart.
    pub async fn restart(&mut self) {
        self.store.close().await;
        self.store = self.db.open().await;
        self.tokens = TokenManager::new(
            std::slice::from_ref(&self.org),
            self.store.clone(),
            self.key.clone(),
            Arc::new(SystemClock),
        );
        self.client = IsaClient::new(
            std::slice::from_ref(&self.org),
            self.tokens.clone(),
            ClientSettings::default(),
        );
    }
}

pub fn messaging() -> Target<'static> {
    Target {
        org_id: ORG_ID,
        authorization_context: MSG_CONTEXT,
    }
}

pub fn ccaas() -> Target<'static> {
    Target {
        org_id: ORG_ID,
        authorization_context: CC_CONTEXT,
    }
}

/// The Salesforce emulator and a configuration directory pointing byocd at it (the other
/// services unreachable), with `extra_main` appended to the main file: what the real-binary tests
/// (crash, replicas, operations) start from.
#[cfg(feature = "sandbox")]
pub async fn emulator_and_config(
    extra_main: &str,
) -> (SalesforceEmulator, super::channels::ConfigDir) {
    let emulator = SalesforceEmulator::start(emulator_settings())
        .await
        .unwrap();
    let config = super::channels::ConfigDir::write(
        &super::channels::Endpoints {
            salesforce: emulator.base_url(),
            ..super::channels::Endpoints::default()
        },
        extra_main,
        "",
    );
    (emulator, config)
}
