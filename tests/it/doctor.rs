//! Issue 19: `byocd doctor` passes against the emulators (Salesforce, Pub/Sub) with the test
//! configuration, and names each setup trap injected into it, with its fix, exiting non-zero.
//! The doctor reads no database (its token mint uses a throwaway one), so no backend matrix.
#![cfg(feature = "sandbox")] // runs against the emulators

use std::{path::Path, process::Command};

use byocd::sandbox::{
    pubsub::{PubSubEmulator, PubSubSettings, TokenCheck, TopicSettings},
    salesforce::SalesforceEmulator,
};

use crate::support::{
    channels::{ConfigDir, Endpoints, WA_CHANNEL},
    salesforce::{CONSUMER_KEY, MSG_CONTEXT, ORG_ID, USERNAME, emulator_settings, keys},
};

const BIN: &str = env!("CARGO_BIN_EXE_byocd");

struct Setup {
    _salesforce: SalesforceEmulator,
    _pubsub: PubSubEmulator,
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
    let config = ConfigDir::write(
        &Endpoints {
            salesforce: salesforce.base_url(),
            pubsub: pubsub.endpoint(),
            ..Endpoints::default()
        },
        "",
        "",
    );
    Setup {
        _salesforce: salesforce,
        _pubsub: pubsub,
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
        "PASS  database: SQLite",
        "PASS  public base URL",
        ", 0 failed",
    ] {
        assert!(text.contains(line), "`{line}` not in:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");

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
