//! Issue 19: `byocd doctor` passes against the emulators (Salesforce, Pub/Sub, 8x8, Kaleyra) with the test
//! configuration, and names each setup trap injected into it, with its fix, exiting non-zero.
//! The doctor reads no database (its token mint uses a throwaway one), so no backend matrix.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::{path::Path, process::Command};

use byocd::sandbox::{
    eightbyeight::{EightByEightChannel, EightByEightEmulator, EightByEightSettings},
    kaleyra::{KaleyraEmulator, KaleyraSettings},
    pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings},
    salesforce::SalesforceEmulator,
};

use crate::support::{
    channels::{
        ConfigDir, Endpoints, RCS_AGENT, RCS_API_KEY, RCS_SID, WA_API_KEY, WA_CHANNEL,
        WA_SUB_ACCOUNT,
    },
    salesforce::{CONSUMER_KEY, MSG_CONTEXT, ORG_ID, USERNAME, emulator_settings, keys},
};

const BIN: &str = env!("CARGO_BIN_EXE_byocd");

struct Setup {
    salesforce: SalesforceEmulator,
    _pubsub: PubSubEmulator,
    wa: EightByEightEmulator,
    rcs: KaleyraEmulator,
    config: ConfigDir,
}

async fn setup() -> Setup {
    let salesforce = SalesforceEmulator::start(emulator_settings())
        .await
        .unwrap();
    let pubsub = PubSubEmulator::start(PubSubSettings::new(
        ORG_ID,
        vec![TopicSettings::new("/event/Acme_Event__e")],
        TokenCheck::Salesforce(salesforce.clone()),
    ))
    .await
    .unwrap();
    let wa = EightByEightEmulator::start(EightByEightSettings::new(
        WA_SUB_ACCOUNT,
        EightByEightChannel::Whatsapp,
        WA_API_KEY,
    ))
    .await
    .unwrap();
    let rcs = KaleyraEmulator::start(KaleyraSettings::new(RCS_SID, RCS_API_KEY, RCS_AGENT))
        .await
        .unwrap();
    let config = ConfigDir::write(
        &Endpoints {
            salesforce: salesforce.base_url(),
            pubsub: pubsub.endpoint(),
            eightbyeight: wa.base_url(),
            kaleyra: rcs.base_url(),
        },
        "",
        "",
    );
    Setup {
        salesforce,
        _pubsub: pubsub,
        wa,
        rcs,
        config,
    }
}

/// Runs `byocd doctor` (off the async runtime's threads); returns (success, stdout).
async fn doctor(config: &Path, extra: &[&str]) -> (bool, String) {
    let config = config.to_owned();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("doctor")
            .args(&extra)
            .env_remove("BYOCD_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "`{from}` not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn main_file(s: &Setup) -> std::path::PathBuf {
    s.config.main_file.clone()
}

fn wa_file(s: &Setup) -> std::path::PathBuf {
    s.config
        .path()
        .join("channels.d")
        .join(format!("{WA_CHANNEL}.toml"))
}

fn assert_fails(ok: bool, text: &str, check: &str, says: &[&str]) {
    assert!(!ok, "doctor exited 0 with a trap set:\n{text}");
    let line = text
        .lines()
        .position(|l| l.starts_with("FAIL") && l.contains(check))
        .unwrap_or_else(|| panic!("no FAIL line for `{check}`:\n{text}"));
    let block: String = text
        .lines()
        .skip(line)
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    for needle in says {
        assert!(
            block.contains(needle),
            "`{needle}` not in:\n{block}\n\nwhole report:\n{text}"
        );
    }
}

#[tokio::test]
async fn doctor_passes_on_a_correct_setup() {
    let s = setup().await;
    let (ok, text) = doctor(&main_file(&s), &[]).await;
    assert!(ok, "{text}");
    for line in [
        "PASS  configuration: 1 org(s), 2 channel(s) valid",
        &format!("PASS  org {ORG_ID}: private key"),
        &format!("PASS  org {ORG_ID}: clock"),
        &format!("PASS  org {ORG_ID}: token mint"),
        "PASS  channel acme-whatsapp: platform event: /event/Acme_Event__e is readable and its schema has EventType__c and Payload__c",
        &format!(
            "PASS  channel acme-whatsapp: Interaction Service: PATCH /capabilities with AuthorizationContext {MSG_CONTEXT} accepted"
        ),
        "PASS  channel acme-rcs: Interaction Service",
        &format!(
            "PASS  channel acme-whatsapp: provider credentials: 8x8 sub-account {WA_SUB_ACCOUNT} at {} accepted the API key",
            s.wa.base_url()
        ),
        &format!(
            "PASS  channel acme-rcs: provider credentials: Kaleyra SID {RCS_SID} at {} accepted the API key",
            s.rcs.base_url()
        ),
        "PASS  database: SQLite",
        "PASS  public base URL",
        ", 0 failed",
    ] {
        assert!(text.contains(line), "`{line}` not in:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
    // Harmless: one read of each provider, nothing sent.
    let wa_calls = s.wa.requests();
    assert_eq!(wa_calls.len(), 1, "{wa_calls:?}");
    assert_eq!(wa_calls[0].method, "GET");
    let umid = wa_calls[0]
        .path
        .strip_prefix(&format!("/api/v1/subaccounts/{WA_SUB_ACCOUNT}/messages/"))
        .unwrap_or_else(|| panic!("{}", wa_calls[0].path));
    assert!(uuid::Uuid::parse_str(umid).is_ok(), "{umid}");
    assert_eq!(wa_calls[0].status, 404);
    assert!(s.wa.sent_messages().is_empty());
    let rcs_calls = s.rcs.requests();
    assert_eq!(rcs_calls.len(), 1, "{rcs_calls:?}");
    assert_eq!(
        (rcs_calls[0].method.as_str(), rcs_calls[0].path.as_str()),
        (
            "GET",
            format!("/v1/{RCS_SID}/rcs/lookup/%2B12025550100").as_str()
        )
    );
    assert_eq!(rcs_calls[0].status, 200);
    assert!(s.rcs.sent_messages().is_empty());

    // One channel only.
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert!(ok, "{text}");
    assert!(!text.contains("channel acme-rcs"), "{text}");
    let (ok, text) = doctor(&main_file(&s), &["--channel", "no-such"]).await;
    assert!(!ok && text.contains("no channel `no-such`"), "{text}");
}

#[tokio::test]
async fn a_wrong_consumer_key_is_named_as_invalid_client() {
    let s = setup().await;
    edit(&main_file(&s), CONSUMER_KEY, "3MVG9someone.elses.key");
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "token mint",
        &["invalid_client", "orgs.consumer_key", "Consumer Key"],
    );
    // Nothing further is tried without a token, and it says so.
    assert_fails(ok, &text, "channel acme-whatsapp", &["no token"]);
}

#[tokio::test]
async fn a_wrong_user_or_certificate_is_named_as_invalid_grant() {
    let s = setup().await;
    edit(&main_file(&s), USERNAME, "nobody@acme.example");
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "token mint",
        &[
            "invalid_grant",
            "nobody@acme.example",
            "pre-authorised",
            "certificate",
        ],
    );

    // The right user, but the key of a certificate the connected app does not have.
    let s = setup().await;
    std::fs::write(
        s.config.path().join("secrets/org.pem"),
        &keys().1.private_pem,
    )
    .unwrap();
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(ok, &text, "token mint", &["invalid_grant", "certificate"]);
}

#[tokio::test]
async fn a_key_file_that_is_not_a_key_is_named() {
    let s = setup().await;
    std::fs::write(
        s.config.path().join("secrets/org.pem"),
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "configuration",
        &[
            "private_key_file",
            "secrets/org.pem",
            "not a PEM RSA private key",
        ],
    );
}

#[tokio::test]
async fn an_eighteen_character_org_id_is_named() {
    let s = setup().await;
    let long = format!("{ORG_ID}AAA");
    edit(
        &main_file(&s),
        &format!("org_id = \"{ORG_ID}\""),
        &format!("org_id = \"{long}\""),
    );
    let (ok, text) = doctor(&main_file(&s), &[]).await;
    assert_fails(ok, &text, "configuration", &["org_id", "15-character"]);
}

#[tokio::test]
async fn platform_event_traps_are_named_with_the_schema_fields() {
    // A field name the event does not have.
    let s = setup().await;
    edit(
        &wa_file(&s),
        "name = \"Acme_Event__e\"",
        "name = \"Acme_Event__e\"\nevent_type_field = \"Kind__c\"",
    );
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "platform event",
        &["has no field Kind__c", "EventType__c", "Payload__c"],
    );

    // An event that does not exist.
    let s = setup().await;
    edit(
        &wa_file(&s),
        "name = \"Acme_Event__e\"",
        "name = \"Acme_Evnt__e\"",
    );
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "platform event",
        &["/event/Acme_Evnt__e", "platform_event.name"],
    );
}

#[tokio::test]
async fn an_authorization_context_salesforce_does_not_know_is_named() {
    let s = setup().await;
    edit(
        &wa_file(&s),
        &format!("authorization_context = \"{MSG_CONTEXT}\""),
        "authorization_context = \"Acme_WhatsAp\"",
    );
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "Interaction Service",
        &["Acme_WhatsAp", "refused", "developer name", "byocd explain"],
    );
}

#[tokio::test]
async fn unverified_postgres_tls_and_a_private_public_base_url_are_named() {
    let s = setup().await;
    let main = main_file(&s);
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        text.replacen(
            "state_dir = \"state\"\n",
            "state_dir = \"state\"\n\n[server]\npublic_base_url = \"https://10.0.0.5/byocd/\"\n\n[database]\nurl = \"postgres://byocd@db.example.com/byocd\"\nallow_unverified_tls = true\n",
            1,
        ),
    )
    .unwrap();
    let (ok, text) = doctor(&main, &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "database TLS",
        &["sslmode=prefer", "sslmode=verify-full"],
    );
    assert_fails(
        ok,
        &text,
        "public base URL",
        &["10.0.0.5 is not a public address", "https"],
    );
    // The Salesforce checks still run and pass.
    assert!(
        text.contains(&format!("PASS  org {ORG_ID}: token mint")),
        "{text}"
    );
}

#[tokio::test]
async fn provider_credentials_the_provider_refuses_are_named_with_the_setting() {
    // 8x8: an API key of nobody's, then a sub-account the key does not own.
    let s = setup().await;
    std::fs::write(s.config.path().join("secrets/8x8-api.key"), "not-the-key").unwrap();
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "provider credentials",
        &["8x8", "HTTP 401", "code 1200", "provider.api_key_file"],
    );
    assert!(
        !text.contains("not-the-key"),
        "the key was printed:\n{text}"
    );
    let s = setup().await;
    edit(
        &wa_file(&s),
        &format!("sub_account_id = \"{WA_SUB_ACCOUNT}\""),
        "sub_account_id = \"Acme_WA_02\"",
    );
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "provider credentials",
        &["Acme_WA_02", "code 1001", "provider.sub_account_id"],
    );

    // Kaleyra: a wrong key, then another account's SID.
    let s = setup().await;
    std::fs::write(s.config.path().join("secrets/kaleyra-api.key"), "stale-key").unwrap();
    let (ok, text) = doctor(&main_file(&s), &["--channel", "acme-rcs"]).await;
    assert_fails(
        ok,
        &text,
        "provider credentials",
        &["kaleyra", "HTTP 401", "provider.api_key_file"],
    );
    let s = setup().await;
    let rcs_file = s.config.path().join("channels.d").join("acme-rcs.toml");
    edit(
        &rcs_file,
        &format!("sid = \"{RCS_SID}\""),
        "sid = \"HXIN0000000000ZZ\"",
    );
    let (ok, text) = doctor(&main_file(&s), &["--channel", "acme-rcs"]).await;
    assert_fails(
        ok,
        &text,
        "provider credentials",
        &["HXIN0000000000ZZ", "HTTP 403", "provider.sid"],
    );
    // The rest of the channel's checks still ran.
    assert!(
        text.contains("PASS  channel acme-rcs: Interaction Service"),
        "{text}"
    );
}

#[tokio::test]
async fn a_clock_far_from_salesforces_is_named_with_ntp() {
    let s = setup().await;
    // Salesforce's clock (its `Date` and its checks of the assertion) is 10 minutes ahead.
    s.salesforce
        .advance_clock(std::time::Duration::from_secs(600));
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert_fails(
        ok,
        &text,
        "clock",
        &[
            "s away from Salesforce's",
            "synchronise the clock",
            "timedatectl",
        ],
    );
    let line = text.lines().find(|l| l.contains(": clock:")).unwrap();
    let seconds: u64 = line
        .split("clock is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((595..=605).contains(&seconds), "{line}");
    // And Salesforce refuses the assertion as expired: the mint names the clock too.
    assert_fails(ok, &text, "token mint", &["invalid_grant", "clock"]);

    // Within a few seconds passes.
    let s = setup().await;
    s.salesforce
        .advance_clock(std::time::Duration::from_secs(20));
    let (ok, text) = doctor(&main_file(&s), &["--channel", WA_CHANNEL]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("PASS  org {ORG_ID}: clock: within")),
        "{text}"
    );
}
