//! Configuration loading: the shipped files, the examples, and one test per validation message.
//!
//! Every test works on real files in a temporary directory and passes its environment explicitly
//! (`load_with_env`), so tests never touch the process environment and cannot race.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use byocd::config::{
    self, Config, ConfigErrors, ConsentOwner, DatabaseBackend, LogFormat, Product, Provider,
    RoutingOwner, RoutingPolicy, WorkCapacity,
};
use secrecy::ExposeSecret;

const ORG: &str = "00D5g000004ABCD";
const WA: &str = "acme-whatsapp";
const RCS: &str = "acme-rcs";

/// Secret contents written by the fixture: no test output may contain any of them.
const SECRETS: [(&str, &str); 5] = [
    ("acme-8x8-api.key", "eightbyeight-api-key-SECRET-1"),
    ("acme-8x8-webhook.auth", "Bearer webhook-auth-SECRET-2"),
    ("acme-kaleyra-api.key", "kaleyra-api-key-SECRET-3"),
    ("acme-kaleyra-basic.password", "kaleyra-basic-SECRET-4"),
    (
        "acme-kaleyra-webhook.auth",
        "Basic a2FsZXlyYS1TRUNSRVQtNQ==",
    ),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A throwaway RSA key, generated once per test run.
fn rsa_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("these tests need `openssl` on PATH to generate a throwaway RSA key");
        assert!(
            out.status.success(),
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
}

/// A copy of `config/examples` with every secret it refers to.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    main: PathBuf,
}

impl Fixture {
    fn examples() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let examples = repo().join("config/examples");
        std::fs::create_dir_all(root.join("channels.d")).unwrap();
        std::fs::create_dir_all(root.join("secrets")).unwrap();
        std::fs::copy(examples.join("byocd.toml"), root.join("byocd.toml")).unwrap();
        for name in [WA, RCS] {
            let file = format!("channels.d/{name}.toml");
            std::fs::copy(examples.join(&file), root.join(&file)).unwrap();
        }
        byocd::crypto::TokenKey::generate_file(&root.join("secrets/token.key")).unwrap();
        std::fs::write(root.join("secrets/acme-jwt.key"), rsa_pem()).unwrap();
        for (file, content) in SECRETS {
            std::fs::write(root.join("secrets").join(file), format!("{content}\n")).unwrap();
        }
        let main = root.join("byocd.toml");
        Self {
            _dir: dir,
            root,
            main,
        }
    }

    /// Only a main file, with the given content.
    fn main_only(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let main = root.join("byocd.toml");
        std::fs::write(&main, text).unwrap();
        Self {
            _dir: dir,
            root,
            main,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) -> &Self {
        let path = self.path(rel);
        let before = std::fs::read_to_string(&path).unwrap();
        let after = f(before.clone());
        assert_ne!(before, after, "edit of {rel} changed nothing");
        std::fs::write(path, after).unwrap();
        self
    }

    fn replace(&self, rel: &str, from: &str, to: &str) -> &Self {
        self.edit(rel, |s| {
            assert!(s.contains(from), "{rel} has no {from:?}");
            s.replacen(from, to, 1)
        })
    }

    fn append(&self, rel: &str, text: &str) -> &Self {
        self.edit(rel, |s| format!("{s}\n{text}\n"))
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        std::fs::write(self.path(rel), text).unwrap();
        self
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        self.load_env(&[])
    }

    fn load_env(&self, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::load_with_env(&self.main, &env)
    }

    fn ok(&self) -> Config {
        self.load()
            .unwrap_or_else(|e| panic!("expected a clean load, got:\n{e}"))
    }

    /// The problem lines of a load that must fail.
    fn problems_env(&self, env: &[(&str, &str)]) -> Vec<String> {
        let errors = self.load_env(env).expect_err("expected problems");
        let text = errors.to_string();
        assert_eq!(
            text.lines().count(),
            errors.problems.len(),
            "one line per problem:\n{text}"
        );
        text.lines().map(str::to_owned).collect()
    }

    fn problems(&self) -> Vec<String> {
        self.problems_env(&[])
    }

    /// `<main file>:key`, as problems name keys of the main file.
    fn main_key(&self, key: &str) -> String {
        format!("{}:{key}", self.main.display())
    }
}

fn channel_key(name: &str, key: &str) -> String {
    format!("channels.d/{name}.toml:{key}")
}

/// Asserts that exactly one problem starts with `prefix: ` and returns its message.
#[track_caller]
fn find<'a>(problems: &'a [String], prefix: &str) -> &'a str {
    let hits: Vec<&String> = problems
        .iter()
        .filter(|p| p.starts_with(&format!("{prefix}: ")))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one problem at {prefix}, got:\n{}",
        problems.join("\n")
    );
    &hits[0][prefix.len() + 2..]
}

/// Asserts that the load fails with exactly one problem, at `prefix`, and returns its message.
#[track_caller]
fn only<'a>(problems: &'a [String], prefix: &str) -> &'a str {
    assert_eq!(
        problems.len(),
        1,
        "expected only {prefix}, got:\n{}",
        problems.join("\n")
    );
    find(problems, prefix)
}

// ---------------------------------------------------------------------------------------------
// The shipped files

#[test]
fn shipped_defaults_load_clean_and_match_the_documented_defaults() {
    let main = repo().join("config/byocd.toml");
    let env = [("STATE_DIRECTORY".to_owned(), "/var/lib/byocd".to_owned())];
    let config = config::load_with_env(&main, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.listen.to_string(), config::DEFAULT_LISTEN);
    assert_eq!(
        config.server.metrics_listen.to_string(),
        config::DEFAULT_METRICS_LISTEN
    );
    assert_eq!(config.server.max_body_bytes, config::DEFAULT_MAX_BODY_BYTES);
    assert_eq!(config.server.shutdown_grace, config::DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(config.server.header_timeout, config::DEFAULT_HEADER_TIMEOUT);
    assert_eq!(config.server.body_timeout, config::DEFAULT_BODY_TIMEOUT);
    assert_eq!(
        config.server.max_connections,
        config::DEFAULT_SERVER_MAX_CONNECTIONS
    );
    assert_eq!(
        config.server.max_concurrent_requests,
        config::DEFAULT_MAX_CONCURRENT_REQUESTS
    );
    assert_eq!(
        config.database.max_connections,
        config::DEFAULT_MAX_CONNECTIONS
    );
    assert_eq!(
        config.database.acquire_timeout,
        config::DEFAULT_ACQUIRE_TIMEOUT
    );
    assert_eq!(config.database.backend(), DatabaseBackend::Sqlite);
    assert!(config.database.password.is_none());
    assert_eq!(config.state_dir, Path::new("/var/lib/byocd"));
    assert_eq!(config.database_url(), "sqlite:///var/lib/byocd/byocd.db");
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Auto);
    assert_eq!(config.channels_dir, repo().join("config/channels.d"));
    assert!(config.token_key.is_none() && config.orgs.is_empty() && config.channels.is_empty());
    assert_eq!(config.content_hash.len(), 64);
}

#[test]
fn the_embedded_defaults_are_the_shipped_file() {
    let shipped = std::fs::read_to_string(repo().join("config/byocd.toml")).unwrap();
    assert_eq!(config::DEFAULTS, shipped);
}

#[test]
fn without_state_directory_the_state_is_in_the_working_directory() {
    let fx = Fixture::main_only("");
    let config = fx.ok();
    assert_eq!(
        config.state_dir,
        std::env::current_dir().unwrap().join("byocd-state")
    );
    assert!(config.database_url().ends_with("/byocd-state/byocd.db"));
}

#[test]
fn examples_load_clean_once_their_secrets_exist() {
    let fx = Fixture::examples();
    let config = fx.ok();
    assert_eq!(config.orgs.len(), 1);
    let org = config.org(ORG).expect("the example org");
    assert_eq!(org.name, "Acme production");
    assert_eq!(org.login_url, "https://login.salesforce.com");
    assert_eq!(
        org.pubsub_endpoint,
        "https://api.pubsub.salesforce.com:7443"
    );
    assert_eq!(org.requests_per_second, 2000);
    assert!(org.jwt_encoding_key().is_ok());
    assert!(config.token_key.is_some());
    assert_eq!(config.log.format, LogFormat::Journald);
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");

    let names: Vec<&str> = config.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [RCS, WA], "channels are in file-name order");
    let wa = config.channel(WA).unwrap();
    assert_eq!(wa.product, Product::Messaging);
    assert_eq!(wa.routing_owner, RoutingOwner::Salesforce);
    assert!(wa.routing.is_none());
    let Provider::EightByEight(account) = &wa.provider else {
        panic!("8x8 expected")
    };
    assert_eq!(account.sub_account_id, "Acme_WA_01");
    assert_eq!(account.api_key.expose(), SECRETS[0].1);
    assert!(account.webhook_allow_networks[0].contains("203.0.113.9".parse().unwrap()));

    let rcs = config.channel(RCS).unwrap();
    assert_eq!(rcs.product, Product::CCaaS);
    assert_eq!(rcs.consent_owner, ConsentOwner::Partner);
    let Some(RoutingPolicy::Agents {
        agents,
        capacity,
        max_attempts,
        fallback_queue_id,
        offer_timeout,
    }) = &rcs.routing
    else {
        panic!("agents policy expected: {:?}", rcs.routing)
    };
    assert_eq!(offer_timeout.as_secs(), 60, "the default offer timeout");
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].capacity, 2);
    assert_eq!(*capacity, Some(WorkCapacity::Weight(1.0)));
    assert_eq!(*max_attempts, 3);
    assert_eq!(
        fallback_queue_id.as_ref().unwrap().as_str(),
        "00G5g00000QQQQQ"
    );
    let Provider::Kaleyra(kaleyra) = &rcs.provider else {
        panic!("kaleyra expected")
    };
    assert_eq!(
        kaleyra.basic.as_ref().unwrap().password.expose(),
        SECRETS[3].1
    );
    assert_eq!(rcs.session.sweep_cron, "*/30 * * * * *");
    assert_eq!(rcs.session.opt_out_keywords, ["STOP", "UNSUBSCRIBE"]);
    assert_eq!(rcs.session.opt_out_keyword(" stop "), Some("STOP"));
    assert_eq!(rcs.session.opt_out_keyword("stop it"), None);
    assert_eq!(rcs.platform_event.event_type_field, "EventType__c");
}

#[test]
fn debug_and_settings_json_never_show_a_secret() {
    let fx = Fixture::examples();
    fx.replace("byocd.toml", "[log]", "[database]\nurl = \"postgres://byocd:inline-db-pw@db/byocd?sslmode=verify-full\"\npassword_file = \"secrets/db.password\"\n\n[log]");
    fx.write("secrets/db.password", "db-password-SECRET-6\n");
    let config = fx.ok();
    assert_eq!(
        config.database.password.as_ref().unwrap().expose_secret(),
        "db-password-SECRET-6"
    );
    assert_eq!(config.database.backend(), DatabaseBackend::Postgres);
    let debug = format!("{config:?}");
    let mut json = String::new();
    for channel in &config.channels {
        json.push_str(&channel.settings_json().to_string());
    }
    let token_key = std::fs::read_to_string(fx.path("secrets/token.key")).unwrap();
    let pem_body = rsa_pem().lines().nth(1).unwrap();
    for secret in SECRETS.iter().map(|(_, s)| *s).chain([
        "db-password-SECRET-6",
        "inline-db-pw",
        token_key.trim(),
        pem_body,
    ]) {
        assert!(!debug.contains(secret), "Debug shows {secret:?}:\n{debug}");
        assert!(
            !json.contains(secret),
            "settings_json shows {secret:?}:\n{json}"
        );
    }
    assert!(
        json.contains("secrets/acme-8x8-api.key"),
        "references are shown: {json}"
    );
}

#[test]
fn settings_json_and_hashes_describe_the_channel() {
    let fx = Fixture::examples();
    let config = fx.ok();
    let wa = config.channel(WA).unwrap();
    let json = wa.settings_json();
    assert_eq!(json["provider"]["kind"], "8x8");
    assert_eq!(json["session"]["inactivate_after"], "30m");
    assert_eq!(json["session"]["end_after"], "24h");
    assert_eq!(
        json["provider"]["webhook_allow_networks"][0],
        "203.0.113.0/24"
    );
    assert_eq!(
        config.channel(RCS).unwrap().settings_json()["routing"]["policy"],
        "agents"
    );
    assert_eq!(wa.content_hash().len(), 64);
    assert_ne!(
        wa.content_hash(),
        config.channel(RCS).unwrap().content_hash()
    );

    let before = (config.content_hash.clone(), wa.content_hash().to_owned());
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "typing = true",
        "typing = false",
    );
    let again = fx.ok();
    assert_ne!(again.content_hash, before.0);
    assert_ne!(again.channel(WA).unwrap().content_hash(), before.1);
    assert_eq!(
        again.channel(RCS).unwrap().content_hash(),
        config.channel(RCS).unwrap().content_hash()
    );
}

#[test]
fn systemd_credentials_are_read_from_the_credentials_directory() {
    let fx = Fixture::examples();
    let creds = fx.path("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("wa-api-key"), "from-a-credential\n").unwrap();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"secrets/acme-8x8-api.key\"",
        "\"cred:wa-api-key\"",
    );
    let problems = fx.problems();
    let message = only(&problems, &channel_key(WA, "provider.api_key_file"));
    assert!(
        message.contains("CREDENTIALS_DIRECTORY is not set"),
        "{message}"
    );
    let config = fx
        .load_env(&[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())])
        .unwrap_or_else(|e| panic!("{e}"));
    let Provider::EightByEight(account) = &config.channel(WA).unwrap().provider else {
        panic!()
    };
    assert_eq!(account.api_key.expose(), "from-a-credential");
    assert_eq!(account.api_key.reference(), "cred:wa-api-key");
}

// ---------------------------------------------------------------------------------------------
// One test per validation message

#[test]
fn an_18_character_org_id_is_refused() {
    let fx = Fixture::examples();
    fx.replace("byocd.toml", ORG, "00D5g000004ABCDEAA");
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &fx.main_key("orgs[0].org_id")),
        "must be the 15-character org id, got 18 characters"
    );
}

#[test]
fn an_org_id_must_start_with_00d() {
    let fx = Fixture::examples();
    fx.replace("byocd.toml", ORG, "0015g000004ABCD");
    let problems = fx.problems();
    assert!(find(&problems, &fx.main_key("orgs[0].org_id")).starts_with("must start with `00D`"));
}

#[test]
fn unknown_keys_in_the_main_file_are_named() {
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "[server]\n",
        "colour = \"blue\"\n[server]\nlistn = \"0.0.0.0:1\"\n",
    );
    fx.replace("byocd.toml", "username =", "user_name = \"x\"\nusername =");
    let problems = fx.problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        find(&problems, &fx.main_key("colour"))
            .starts_with("unknown key `colour`; expected one of")
    );
    assert!(find(&problems, &fx.main_key("server.listn")).contains("`listen`"));
    assert!(
        find(&problems, &fx.main_key("orgs[0].user_name")).starts_with("unknown key `user_name`")
    );
}

#[test]
fn unknown_keys_in_a_channel_file_are_named() {
    let fx = Fixture::examples();
    fx.append("channels.d/acme-whatsapp.toml", "colour = \"green\"");
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "[features]\n",
        "[features]\nread_receipts = true\n",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        find(&problems, &channel_key(WA, "provider.colour")).starts_with("unknown key `colour`")
    );
    assert!(find(&problems, &channel_key(WA, "features.read_receipts")).contains("`receipts`"));
}

#[test]
fn inline_secrets_get_a_hint_to_use_the_file_form() {
    let fx = Fixture::examples();
    fx.append("channels.d/acme-whatsapp.toml", "api_key = \"sk-live-123\"");
    fx.replace(
        "byocd.toml",
        "[log]",
        "[database]\npassword = \"hunter2\"\n\n[log]",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(
        find(&problems, &channel_key(WA, "provider.api_key")),
        "unknown key `api_key`; secrets are given by reference: use `api_key_file` (a path or `cred:NAME`)"
    );
    assert!(find(&problems, &fx.main_key("database.password")).contains("use `password_file`"));
    let all = problems.join("\n");
    assert!(
        !all.contains("sk-live-123") && !all.contains("hunter2"),
        "{all}"
    );
}

#[test]
fn an_unreadable_secret_file_is_named_with_its_path_and_error() {
    let fx = Fixture::examples();
    std::fs::remove_file(fx.path("secrets/acme-8x8-api.key")).unwrap();
    let problems = fx.problems();
    let message = only(&problems, &channel_key(WA, "provider.api_key_file"));
    let path = fx.path("secrets/acme-8x8-api.key");
    assert_eq!(
        message,
        format!(
            "cannot read secret file {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn an_empty_secret_file_is_refused() {
    let fx = Fixture::examples();
    fx.write("secrets/acme-kaleyra-api.key", "\n");
    let problems = fx.problems();
    let message = only(&problems, &channel_key(RCS, "provider.api_key_file"));
    assert!(
        message.ends_with("acme-kaleyra-api.key is empty"),
        "{message}"
    );
}

#[test]
fn a_kaleyra_channel_without_a_webhook_secret_is_refused_with_the_way_out() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-rcs.toml",
        "webhook_authorization_file = \"secrets/acme-kaleyra-webhook.auth\"",
        "",
    );
    let problems = fx.problems();
    let message = only(
        &problems,
        &channel_key(RCS, "provider.webhook_authorization_file"),
    );
    assert!(message.starts_with("missing required key"), "{message}");
    assert!(message.contains("at least 16 characters"), "{message}");
    assert!(
        message.contains("webhook_authentication = \"none\""),
        "{message}"
    );
}

#[test]
fn a_short_webhook_secret_is_refused_on_every_provider() {
    let fx = Fixture::examples();
    fx.write("secrets/acme-kaleyra-webhook.auth", "Basic abc\n");
    fx.write("secrets/acme-8x8-webhook.auth", "Bearer 0123456");
    let problems = fx.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    for (channel, file, chars) in [
        (RCS, "acme-kaleyra-webhook.auth", 9),
        (WA, "acme-8x8-webhook.auth", 14),
    ] {
        let message = find(
            &problems,
            &channel_key(channel, "provider.webhook_authorization_file"),
        );
        assert!(message.contains(file), "{message}");
        assert!(
            message.contains(&format!("holds {chars} character(s)"))
                && message.contains("at least 16"),
            "{message}"
        );
        // The secret itself is never in the message.
        assert!(
            !message.contains("abc") && !message.contains("0123456"),
            "{message}"
        );
    }
}

#[test]
fn webhook_authentication_none_is_explicit_and_exclusive() {
    use byocd::config::WebhookAuthentication;
    let fx = Fixture::examples();
    // "none" beside a secret file: one of the two must go.
    fx.replace(
        "channels.d/acme-rcs.toml",
        "webhook_authorization_file =",
        "webhook_authentication = \"none\"\nwebhook_authorization_file =",
    );
    let problems = fx.problems();
    assert!(
        only(
            &problems,
            &channel_key(RCS, "provider.webhook_authorization_file")
        )
        .contains("not used when provider.webhook_authentication = \"none\""),
        "{problems:?}"
    );
    // "none" alone loads: a proxy authenticates.
    fx.replace(
        "channels.d/acme-rcs.toml",
        "webhook_authorization_file = \"secrets/acme-kaleyra-webhook.auth\"",
        "",
    );
    let config = fx.ok();
    let rcs = config.channels.iter().find(|c| c.name == RCS).unwrap();
    assert!(matches!(
        rcs.webhook_authentication(),
        WebhookAuthentication::None
    ));
    let wa = config.channels.iter().find(|c| c.name == WA).unwrap();
    assert!(matches!(
        wa.webhook_authentication(),
        WebhookAuthentication::Authorization(_)
    ));
    // Any other value is named.
    fx.replace(
        "channels.d/acme-rcs.toml",
        "webhook_authentication = \"none\"",
        "webhook_authentication = \"ip\"",
    );
    let problems = fx.problems();
    assert!(
        find(
            &problems,
            &channel_key(RCS, "provider.webhook_authentication")
        )
        .contains("none"),
        "{problems:?}"
    );
}

#[test]
fn listener_limits_must_be_positive() {
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "listen = \"0.0.0.0:8080\"",
        "listen = \"0.0.0.0:8080\"\nheader_timeout = \"0s\"\nbody_timeout = \"0s\"\nmax_connections = 0\nmax_concurrent_requests = 0",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    for key in [
        "server.header_timeout",
        "server.body_timeout",
        "server.max_connections",
        "server.max_concurrent_requests",
    ] {
        assert_eq!(find(&problems, &fx.main_key(key)), "must be greater than 0");
    }
}

#[test]
fn a_private_key_that_is_not_rsa_pem_is_refused() {
    let fx = Fixture::examples();
    fx.write(
        "secrets/acme-jwt.key",
        "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    );
    let problems = fx.problems();
    assert!(
        only(&problems, &fx.main_key("orgs[0].private_key_file"))
            .contains("is not a PEM RSA private key")
    );
}

#[test]
fn a_bad_8x8_sub_account_id_is_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"Acme_WA_01\"",
        "\"Acme WA/01\"",
    );
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &channel_key(WA, "provider.sub_account_id")),
        "`Acme WA/01` is not an 8x8 sub-account id: ` ` is not allowed (letters, digits, `-`, `.`, `_`, `&`)"
    );
}

#[test]
fn bad_enum_values_are_each_reported() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "product = \"Messaging\"",
        "product = \"Chat\"",
    );
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "channel = \"whatsapp\"",
        "channel = \"telegram\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "\nrouting_owner = \"Partner\"",
        "\nrouting_owner = \"Nobody\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "kind = \"kaleyra\"",
        "kind = \"twilio\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "policy = \"agents\"",
        "policy = \"random\"",
    );
    fx.replace("byocd.toml", "format = \"journald\"", "format = \"xml\"");
    let problems = fx.problems();
    assert_eq!(
        find(&problems, &channel_key(WA, "product")),
        "unknown value `Chat`, expected `Messaging` or `CCaaS`"
    );
    assert!(find(&problems, &channel_key(WA, "provider.channel")).contains("`whatsapp` or `rcs`"));
    assert!(
        find(&problems, &channel_key(RCS, "routing_owner")).contains("`Salesforce` or `Partner`")
    );
    assert!(find(&problems, &channel_key(RCS, "provider.kind")).contains("`8x8` or `kaleyra`"));
    assert!(find(&problems, &fx.main_key("log.format")).contains("`plain`, `json`, `journald`"));
    assert!(
        find(&problems, &channel_key(RCS, "routing.policy")).contains("`channel-default`, `queue`")
    );
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn wrong_types_are_reported() {
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "listen = \"0.0.0.0:8080\"",
        "listen = 8080\nmax_body_bytes = \"big\"",
    );
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "typing = true",
        "typing = \"yes\"",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(find(&problems, &fx.main_key("server.listen")).starts_with("invalid type"));
    assert!(find(&problems, &fx.main_key("server.max_body_bytes")).starts_with("invalid type"));
    assert!(find(&problems, &channel_key(WA, "features.typing")).starts_with("invalid type"));
}

#[test]
fn bad_durations_are_explained() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"30m\"",
        "\"half an hour\"",
    );
    let problems = fx.problems();
    assert!(
        only(&problems, &channel_key(WA, "session.inactivate_after"))
            .starts_with("expected a duration such as")
    );
}

#[test]
fn end_after_must_exceed_inactivate_after() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "end_after = \"24h\"",
        "end_after = \"30m\"",
    );
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &channel_key(WA, "session.end_after")),
        "must be longer than session.inactivate_after (30m), got 30m"
    );
}

#[test]
fn a_bad_sweep_cron_is_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"0 * * * * *\"",
        "\"* * * * *\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "\"*/30 * * * * *\"",
        "\"0 99 * * * *\"",
    );
    let problems = fx.problems();
    assert!(find(&problems, &channel_key(WA, "session.sweep_cron")).contains("must have 6 fields"));
    assert!(
        find(&problems, &channel_key(RCS, "session.sweep_cron"))
            .contains("not a valid cron expression")
    );
}

#[test]
fn an_opt_out_keyword_of_two_words_is_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-rcs.toml",
        "[\"STOP\", \"UNSUBSCRIBE\"]",
        "[\"STOP\", \"stop all\"]",
    );
    let problems = fx.problems();
    assert!(
        find(&problems, &channel_key(RCS, "session.opt_out_keywords"))
            .contains("`stop all` must be one word")
    );
}

#[test]
fn a_duplicate_channel_address_is_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"+6580001234\"",
        "\"acme_rcs_agent\"",
    );
    let problems = fx.problems();
    // acme-rcs.toml sorts first, so the WhatsApp file is the duplicate.
    assert_eq!(
        only(&problems, &channel_key(WA, "channel_address_identifier")),
        "channel address `acme_rcs_agent` is already used by channels.d/acme-rcs.toml"
    );
}

#[test]
fn a_duplicate_channel_name_is_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "org_id =",
        "name = \"acme-rcs\"\norg_id =",
    );
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &channel_key(WA, "name")),
        "channel name `acme-rcs` is already used by channels.d/acme-rcs.toml"
    );
}

#[test]
fn a_channel_naming_an_unknown_org_is_refused() {
    let fx = Fixture::examples();
    fx.replace("channels.d/acme-rcs.toml", ORG, "00D5g000009ZZZZ");
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &channel_key(RCS, "org_id")),
        format!(
            "no org with org_id `00D5g000009ZZZZ` is configured in {}",
            fx.main.display()
        )
    );
}

#[test]
fn partner_routing_needs_ccaas() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-rcs.toml",
        "product = \"CCaaS\"",
        "product = \"Messaging\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "consent_owner = \"Partner\"",
        "consent_owner = \"Salesforce\"",
    );
    let problems = fx.problems();
    assert!(
        only(&problems, &channel_key(RCS, "routing_owner")).contains("needs product = \"CCaaS\"")
    );
}

#[test]
fn messaging_needs_salesforce_consent() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "consent_owner = \"Salesforce\"",
        "consent_owner = \"Partner\"",
    );
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &channel_key(WA, "consent_owner")),
        "product = \"Messaging\" requires consent_owner = \"Salesforce\""
    );
}

#[test]
fn routing_with_salesforce_routing_is_refused() {
    let fx = Fixture::examples();
    fx.append(
        "channels.d/acme-whatsapp.toml",
        "[routing]\npolicy = \"channel-default\"",
    );
    let problems = fx.problems();
    assert!(
        only(&problems, &channel_key(WA, "routing"))
            .contains("only with routing_owner = \"Partner\"")
    );
}

#[test]
fn routing_keys_must_belong_to_the_policy_and_ids_must_be_salesforce_ids() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-rcs.toml",
        "policy = \"agents\"",
        "policy = \"agents\"\nqueue_id = \"00G5g00000QQQQQ\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "\"0055g00000BBBBB\"",
        "\"005-bad\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "capacity_weight = 1.0",
        "capacity_weight = 1.0\ncapacity_percentage = 50.0",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(
        find(&problems, &channel_key(RCS, "routing.queue_id")),
        "is not used by policy \"agents\""
    );
    assert!(
        find(&problems, &channel_key(RCS, "routing.agents[1].user_id"))
            .contains("15- or 18-character")
    );
    assert!(find(&problems, &channel_key(RCS, "routing.capacity_percentage")).contains("not both"));
}

#[test]
fn flow_and_queue_policies_load() {
    let fx = Fixture::examples();
    fx.edit("channels.d/acme-rcs.toml", |s| {
        let start = s.find("[routing]").unwrap();
        let end = s.find("[provider]").unwrap();
        format!(
            "{}[routing]\npolicy = \"flow\"\nflow_id = \"3005g0000000001\"\nfallback_queue_id = \"00G5g00000QQQQQ\"\n\n[routing.attributes]\nLanguage = \"end_user.locale\"\n\n{}",
            &s[..start],
            &s[end..]
        )
    });
    let config = fx.ok();
    let Some(RoutingPolicy::Flow { attributes, .. }) = &config.channel(RCS).unwrap().routing else {
        panic!()
    };
    assert_eq!(attributes["Language"], "end_user.locale");

    fx.edit("channels.d/acme-rcs.toml", |s| {
        let start = s.find("[routing]").unwrap();
        let end = s.find("[provider]").unwrap();
        format!(
            "{}[routing]\npolicy = \"queue\"\n\n{}",
            &s[..start],
            &s[end..]
        )
    });
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &channel_key(RCS, "routing.queue_id")),
        "missing required key"
    );
}

#[test]
fn orgs_need_a_token_key() {
    let fx = Fixture::examples();
    fx.replace("byocd.toml", "token_key_file = \"secrets/token.key\"", "");
    let problems = fx.problems();
    assert!(
        only(&problems, &fx.main_key("security.token_key_file"))
            .starts_with("required when orgs are configured")
    );
}

#[test]
fn a_bad_token_key_is_refused() {
    let fx = Fixture::examples();
    fx.write("secrets/token.key", "c2hvcnQ=\n");
    let problems = fx.problems();
    assert!(
        only(&problems, &fx.main_key("security.token_key_file")).contains("decodes to 5 bytes")
    );
}

#[test]
fn a_bad_cidr_is_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"203.0.113.0/24\"",
        "\"203.0.113.0/33\"",
    );
    let problems = fx.problems();
    assert_eq!(
        only(
            &problems,
            &channel_key(WA, "provider.webhook_allow_networks[0]")
        ),
        "`203.0.113.0/33` is not a network: prefix must be 0 to 32"
    );
}

#[test]
fn bad_urls_are_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "\"https://acme.my.salesforce-scrt.com\"",
        "\"acme.my.salesforce-scrt.com\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "\"https://rcs-api.in.kaleyra.io\"",
        "\"ftp://rcs-api.in.kaleyra.io\"",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(find(&problems, &fx.main_key("orgs[0].scrt_base_url")).contains("is not a URL"));
    assert!(
        find(&problems, &channel_key(RCS, "provider.base_url"))
            .contains("must be an https:// URL with a host, not `ftp:`")
    );
}

#[test]
fn a_local_emulator_url_is_accepted() {
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "\"https://acme.my.salesforce-scrt.com\"",
        "\"http://127.0.0.1:7001/\"",
    );
    let config = fx.ok();
    assert_eq!(config.orgs[0].scrt_base_url, "http://127.0.0.1:7001");
}

/// Sets every endpoint of the examples (main file and both channels) to `url(what)`, `what`
/// naming the endpoint.
fn set_every_endpoint(fx: &Fixture, url: impl Fn(&str) -> String) {
    fx.replace(
        "byocd.toml",
        "[server]\n",
        &format!("[server]\npublic_base_url = \"{}\"\n", url("files")),
    );
    fx.replace(
        "byocd.toml",
        "scrt_base_url = \"https://acme.my.salesforce-scrt.com\"",
        &format!(
            "scrt_base_url = \"{}\"\nlogin_url = \"{}\"\ntoken_url = \"{}\"\n\
             pubsub_endpoint = \"{}\"",
            url("scrt"),
            url("login"),
            url("token"),
            url("pubsub")
        ),
    );
    fx.replace(
        "byocd.toml",
        "\"https://acme.my.salesforce.com\"",
        &format!("\"{}\"", url("instance")),
    );
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "\"https://chatapps.8x8.com\"",
        &format!("\"{}\"", url("8x8")),
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "\"https://rcs-api.in.kaleyra.io\"",
        &format!("\"{}\"", url("kaleyra")),
    );
}

#[test]
fn plain_http_off_loopback_is_refused_for_every_endpoint_with_its_key() {
    let fx = Fixture::examples();
    set_every_endpoint(&fx, |what| format!("http://{what}.example.com/"));
    let problems = fx.problems();
    let keys = [
        fx.main_key("server.public_base_url"),
        fx.main_key("orgs[0].login_url"),
        fx.main_key("orgs[0].token_url"),
        fx.main_key("orgs[0].scrt_base_url"),
        fx.main_key("orgs[0].instance_url"),
        fx.main_key("orgs[0].pubsub_endpoint"),
        channel_key(WA, "provider.base_url"),
        channel_key(RCS, "provider.base_url"),
    ];
    assert_eq!(problems.len(), keys.len(), "{problems:#?}");
    for key in &keys {
        let message = find(&problems, key);
        assert!(message.starts_with("`http://"), "{key}: {message}");
        assert!(
            message.contains("must use https:// (plain http:// is allowed only to a loopback host"),
            "{key}: {message}"
        );
    }
    // The one that used to pass `config check` and then fail every Kaleyra file send.
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "[server]\n",
        "[server]\npublic_base_url = \"http://byocd.partner.example\"\n",
    );
    assert_eq!(
        only(&fx.problems(), &fx.main_key("server.public_base_url")),
        "`http://byocd.partner.example` must use https:// (plain http:// is allowed only to a \
         loopback host: 127.0.0.0/8, ::1 or localhost)"
    );
}

#[test]
fn loopback_http_and_any_https_endpoint_are_accepted() {
    for (base, expected) in [
        ("http://127.0.0.1:7001/", "http://127.0.0.1:7001"),
        ("http://127.9.9.9", "http://127.9.9.9"),
        ("http://[::1]:7443/", "http://[::1]:7443"),
        ("http://localhost:8080", "http://localhost:8080"),
        (
            "https://byocd.partner.example/",
            "https://byocd.partner.example",
        ),
        ("https://10.1.2.3:7443", "https://10.1.2.3:7443"),
    ] {
        let fx = Fixture::examples();
        set_every_endpoint(&fx, |_| base.to_owned());
        let config = fx
            .load()
            .unwrap_or_else(|e| panic!("{base}: expected a clean load, got:\n{e}"));
        let org = &config.orgs[0];
        assert_eq!(config.server.public_base_url.as_deref(), Some(expected));
        assert_eq!(org.login_url, expected);
        assert_eq!(org.token_url.as_deref(), Some(expected));
        assert_eq!(org.scrt_base_url, expected);
        assert_eq!(org.instance_url.as_deref(), Some(expected));
        assert_eq!(org.pubsub_endpoint, expected);
        for channel in &config.channels {
            let base_url = match &channel.provider {
                Provider::EightByEight(a) => &a.base_url,
                Provider::Kaleyra(a) => &a.base_url,
            };
            assert_eq!(base_url, expected, "{base}");
        }
    }
}

#[test]
fn the_token_endpoint_defaults_from_login_url_and_can_be_set_apart() {
    let fx = Fixture::examples();
    let org = fx.ok().orgs.remove(0);
    assert_eq!(org.token_url, None);
    assert_eq!(
        org.token_endpoint(),
        "https://login.salesforce.com/services/oauth2/token"
    );

    fx.replace(
        "byocd.toml",
        "username = ",
        "login_url = \"https://acme.my.salesforce.com/\"\n\
         token_url = \"https://sf-proxy.partner.example/oauth/token/\"\nusername = ",
    );
    let org = fx.ok().orgs.remove(0);
    assert_eq!(org.login_url, "https://acme.my.salesforce.com");
    assert_eq!(
        org.token_url.as_deref(),
        Some("https://sf-proxy.partner.example/oauth/token")
    );
    assert_eq!(
        org.token_endpoint(),
        "https://sf-proxy.partner.example/oauth/token"
    );

    fx.replace(
        "byocd.toml",
        "\"https://sf-proxy.partner.example/oauth/token/\"",
        "\"https://sf-proxy.partner.example/token?x=1\"",
    );
    assert_eq!(
        only(&fx.problems(), &fx.main_key("orgs[0].token_url")),
        "`https://sf-proxy.partner.example/token?x=1` must not have a query or fragment"
    );
}

#[test]
fn required_keys_are_reported_missing() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "authorization_context = \"Acme_WhatsApp_CCD\"",
        "",
    );
    fx.replace(
        "byocd.toml",
        "consumer_key = \"3MVG9examplePartnerConnectedAppConsumerKey\"",
        "",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        find(&problems, &channel_key(WA, "authorization_context")),
        "missing required key"
    );
    assert_eq!(
        find(&problems, &fx.main_key("orgs[0].consumer_key")),
        "missing required key"
    );
}

#[test]
fn keys_of_the_other_provider_kind_are_refused() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "channel = \"whatsapp\"",
        "channel = \"whatsapp\"\nagent_id = \"x\"",
    );
    fx.replace(
        "channels.d/acme-rcs.toml",
        "basic_username = \"acme\"\n",
        "",
    );
    let problems = fx.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        find(&problems, &channel_key(WA, "provider.agent_id")),
        "is not used by provider kind \"8x8\""
    );
    assert_eq!(
        find(&problems, &channel_key(RCS, "provider.basic_username")),
        "required when basic_password_file is set"
    );
}

#[test]
fn toml_syntax_errors_give_the_line() {
    let fx = Fixture::examples();
    fx.replace(
        "channels.d/acme-whatsapp.toml",
        "product = \"Messaging\"",
        "product = \"Messaging",
    );
    let problems = fx.problems();
    let line = problems
        .iter()
        .find(|p| p.starts_with("channels.d/acme-whatsapp.toml:"))
        .unwrap();
    assert!(
        line.starts_with("channels.d/acme-whatsapp.toml:5:"),
        "{line}"
    );
    assert!(line.contains("TOML syntax error"), "{line}");
    assert_eq!(problems.len(), 1, "{problems:#?}");

    let fx = Fixture::main_only("[server]\nlisten = \n");
    let problems = fx.problems();
    assert!(
        only(&problems, &fx.main_key("2:10")).starts_with("TOML syntax error"),
        "{problems:?}"
    );
}

#[test]
fn a_missing_main_file_is_one_problem() {
    let fx = Fixture::main_only("");
    std::fs::remove_file(&fx.main).unwrap();
    let problems = fx.problems();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with(&format!("{}: cannot read the main file", fx.main.display())));
}

#[test]
fn channels_dir_is_resolved_and_an_explicit_missing_one_is_reported() {
    let fx = Fixture::examples();
    std::fs::rename(fx.path("channels.d"), fx.path("channels")).unwrap();
    assert!(
        fx.ok().channels.is_empty(),
        "the default directory may be absent"
    );
    fx.replace(
        "byocd.toml",
        "[server]",
        "channels_dir = \"channels\"\n\n[server]",
    );
    let config = fx.ok();
    assert_eq!(config.channels.len(), 2);
    assert_eq!(config.channels_dir, fx.path("channels"));
    assert_eq!(
        config.channel(WA).unwrap().file,
        fx.path("channels/acme-whatsapp.toml")
    );
    fx.replace(
        "byocd.toml",
        "channels_dir = \"channels\"",
        "channels_dir = \"nowhere\"",
    );
    let problems = fx.problems();
    assert!(only(&problems, &fx.main_key("channels_dir")).starts_with("cannot read directory"));
}

#[test]
fn environment_overrides_apply_to_the_main_file() {
    let fx = Fixture::examples();
    let config = fx
        .load_env(&[
            ("BYOCD__SERVER__LISTEN", "0.0.0.0:9000"),
            ("BYOCD__SERVER__SHUTDOWN_GRACE", "5s"),
            ("BYOCD__DATABASE__MAX_CONNECTIONS", "20"),
            ("BYOCD__LOG__LEVEL", "debug"),
            ("BYOCD__LOG__FORMAT", "json"),
            ("BYOCD__STATE_DIR", "/srv/byocd"),
            ("BYOCD_CONFIG", "/not/an/override"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.server.shutdown_grace.as_secs(), 5);
    assert_eq!(config.database.max_connections, 20);
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.database_url(), "sqlite:///srv/byocd/byocd.db");
    // The file hash covers files only.
    assert_eq!(config.content_hash, fx.ok().content_hash);
}

#[test]
fn bad_environment_values_are_reported_as_env() {
    let fx = Fixture::examples();
    let problems = fx.problems_env(&[
        ("BYOCD__SERVER__MAX_BODY_BYTES", "lots"),
        ("BYOCD__SERVER__LISTN", "0.0.0.0:1"),
        ("BYOCD__ORGS__0__ORG_ID", "00D000000000001"),
        ("BYOCD__LOG__LEVEL", "debug"),
    ]);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        find(
            &problems,
            "env:BYOCD__SERVER__MAX_BODY_BYTES:server.max_body_bytes"
        )
        .starts_with("invalid type")
    );
    assert!(
        find(&problems, "env:BYOCD__SERVER__LISTN:server.listn").starts_with("unknown key `listn`")
    );
    assert!(
        find(&problems, "env:BYOCD__ORGS__0__ORG_ID:orgs.0.org_id")
            .starts_with("orgs cannot be set")
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    // The "done when" case: an 18-character org id, an unknown key, a missing key file and
    // a bad 8x8 sub-account id, all in one load.
    let fx = Fixture::examples();
    fx.replace("byocd.toml", ORG, "00D5g000004ABCDEAA");
    fx.replace(
        "channels.d/acme-rcs.toml",
        "[session]\n",
        "[session]\nidle_after = \"5m\"\n",
    );
    std::fs::remove_file(fx.path("secrets/acme-jwt.key")).unwrap();
    fx.replace("channels.d/acme-whatsapp.toml", "\"Acme_WA_01\"", "\"A\"");
    let problems = fx.problems();
    let expected = [
        fx.main_key("orgs[0].org_id"),
        fx.main_key("orgs[0].private_key_file"),
        channel_key(RCS, "session.idle_after"),
        channel_key(WA, "provider.sub_account_id"),
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for prefix in &expected {
        find(&problems, prefix);
    }
    assert_eq!(
        find(&problems, &fx.main_key("orgs[0].org_id")),
        "must be the 15-character org id, got 18 characters"
    );
    // Sorted by file, then key.
    let mut sorted = problems.clone();
    sorted.sort();
    assert_eq!(problems, sorted);
}

#[test]
fn a_duplicate_org_is_refused() {
    let fx = Fixture::examples();
    fx.edit("byocd.toml", |s| {
        let org = &s[s.find("[[orgs]]").unwrap()..];
        format!("{s}\n{}", org.replace("Acme production", "Acme again"))
    });
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &fx.main_key("orgs[1].org_id")),
        format!("org `{ORG}` is already configured as orgs[0]")
    );
}

/// A PostgreSQL server off this machine must be reached with its certificate verified:
/// sqlx's default `sslmode=prefer` accepts any certificate and falls back to clear text.
#[test]
fn postgres_off_loopback_needs_a_verified_certificate_or_an_explicit_opt_out() {
    let fx = Fixture::examples();
    let set = |url: &str, extra: &str| {
        let text = std::fs::read_to_string(fx.path("byocd.toml")).unwrap();
        let text = match text.find("\n[database]\n") {
            Some(at) => {
                let end = text[at + 1..]
                    .find("\n[")
                    .map_or(text.len(), |e| at + 1 + e);
                format!("{}{}", &text[..at], &text[end..])
            }
            None => text,
        };
        std::fs::write(
            fx.path("byocd.toml"),
            text.replacen(
                "[server]",
                &format!("[database]\nurl = \"{url}\"\n{extra}\n[server]"),
                1,
            ),
        )
        .unwrap();
    };
    for (url, mode) in [
        ("postgres://byocd@db.internal/byocd", "prefer"),
        (
            "postgres://byocd@db.internal/byocd?sslmode=require",
            "require",
        ),
        (
            "postgresql://byocd@10.0.0.5:5432/byocd?sslmode=disable",
            "disable",
        ),
    ] {
        set(url, "");
        let problems = fx.problems();
        let message = only(&problems, &fx.main_key("database.url"));
        assert!(
            message.contains(&format!("sslmode={mode}"))
                && message.contains("sslmode=verify-full")
                && message.contains("database.allow_unverified_tls"),
            "{url}: {message}"
        );
    }
    for url in [
        "postgres://byocd@db.internal/byocd?sslmode=verify-full",
        "postgres://byocd@db.internal/byocd?sslmode=verify-ca&sslrootcert=/etc/byocd/ca.pem",
        "postgres://byocd@127.0.0.1:5432/byocd",
        "postgres://byocd@[::1]:5432/byocd",
        "postgres://byocd@localhost/byocd",
        "postgres:///byocd?host=/run/postgresql",
    ] {
        set(url, "");
        fx.ok();
    }
    set(
        "postgres://byocd@db.internal/byocd",
        "allow_unverified_tls = true\n",
    );
    fx.ok();
    set("sqlite:///tmp/x.db", "allow_unverified_tls = true\n");
    assert_eq!(
        only(
            &fx.problems(),
            &fx.main_key("database.allow_unverified_tls")
        ),
        "is only used with a postgres:// URL"
    );
}

#[test]
fn a_relative_state_dir_and_a_postgres_password_on_sqlite() {
    let fx = Fixture::examples();
    fx.replace(
        "byocd.toml",
        "[server]",
        "state_dir = \"state\"\n\n[database]\npassword_file = \"secrets/db.password\"\n\n[server]",
    );
    let problems = fx.problems();
    assert_eq!(
        only(&problems, &fx.main_key("database.password_file")),
        "is only used with a postgres:// URL"
    );
    fx.replace("byocd.toml", "password_file = \"secrets/db.password\"", "");
    let config = fx.ok();
    assert_eq!(config.state_dir, fx.path("state"));
    assert_eq!(
        config.database_url(),
        format!("sqlite://{}", fx.path("state/byocd.db").display())
    );
}

#[test]
fn relay_pubsub_and_file_hosting_settings_load_and_are_checked() {
    let fx = Fixture::main_only(
        "[server]\npublic_base_url = \"https://byocd.partner.example/\"\nhosted_file_ttl = \"2h\"\n\n\
         [relay]\nconcurrency = 4\nlease = \"30s\"\nretry_schedule = [\"2s\", \"1m\"]\n\n\
         [pubsub]\ninitial_replay = \"earliest\"\nnum_requested = 50\nretention = \"48h\"\n",
    );
    let config = fx.ok();
    assert_eq!(
        config.server.public_base_url.as_deref(),
        Some("https://byocd.partner.example")
    );
    assert_eq!(config.server.hosted_file_ttl.as_secs(), 7200);
    assert_eq!(config.relay.concurrency, 4);
    assert_eq!(config.relay.lease.as_secs(), 30);
    assert_eq!(config.relay.retry_schedule.len(), 2);
    assert_eq!(
        config.pubsub.initial_replay,
        byocd::config::InitialReplay::Earliest
    );
    assert_eq!(config.pubsub.num_requested, 50);
    assert_eq!(config.pubsub.retention.as_secs(), 48 * 3600);

    let bad = Fixture::main_only(
        "[server]\npublic_base_url = \"byocd.partner.example\"\n\n\
         [relay]\nconcurrency = 0\nretry_schedule = []\n\n\
         [pubsub]\ninitial_replay = \"sometime\"\nnum_requested = 101\n",
    );
    let problems = bad.problems();
    assert!(find(&problems, &bad.main_key("server.public_base_url")).contains("is not a URL"));
    assert!(find(&problems, &bad.main_key("relay.concurrency")).contains("greater than 0"));
    assert!(find(&problems, &bad.main_key("relay.retry_schedule")).contains("at least one"));
    assert!(find(&problems, &bad.main_key("pubsub.initial_replay")).contains("sometime"));
    assert!(
        find(&problems, &bad.main_key("pubsub.num_requested"))
            .contains("between 1 and 100 (the Pub/Sub API's limit), got 101")
    );
}

/// Issue 17: `[retention]` loads with its defaults (30 days, 30 days, 90 days), takes other
/// durations, and refuses a dedupe retention shorter than Salesforce's 72-hour replay window
/// (with the key named as `config check` prints it) or a zero one.
#[test]
fn retention_settings_load_with_their_defaults_and_are_checked() {
    let day = 24 * 3600;
    let config = Fixture::main_only("").ok();
    assert_eq!(config.retention.quarantine.as_secs(), 30 * day);
    assert_eq!(config.retention.dedupe.as_secs(), 30 * day);
    assert_eq!(config.retention.ended_sessions.as_secs(), 90 * day);
    let config = Fixture::main_only(
        "[retention]\nquarantine = \"7d\"\ndedupe = \"10d\"\nended_sessions = \"1d\"\n",
    )
    .ok();
    assert_eq!(config.retention.quarantine.as_secs(), 7 * day);
    assert_eq!(config.retention.dedupe.as_secs(), 10 * day);
    assert_eq!(config.retention.ended_sessions.as_secs(), day);

    let bad = Fixture::main_only("[retention]\ndedupe = \"3d\"\nquarantine = \"0s\"\n");
    let problems = bad.problems();
    assert!(find(&problems, &bad.main_key("retention.dedupe")).contains("at least 4d"));
    assert!(find(&problems, &bad.main_key("retention.quarantine")).contains("greater than 0"));
}

#[test]
fn capabilities_narrow_with_known_formats_only() {
    let fx = Fixture::examples();
    fx.append(
        "channels.d/acme-whatsapp.toml",
        "\n[capabilities]\nformats = [\"Text\", \"Buttons\"]\nmax_attachment_kb = 5120\n",
    );
    let config = fx.ok();
    let wa = config.channel(WA).unwrap();
    assert_eq!(
        wa.capabilities.formats.as_deref(),
        Some(&["Text".to_owned(), "Buttons".to_owned()][..])
    );
    assert_eq!(wa.capabilities.max_attachment_kb, Some(5120));

    let fx = Fixture::examples();
    fx.append(
        "channels.d/acme-whatsapp.toml",
        "\n[capabilities]\nformats = [\"Buttons\", \"WebView\"]\nmax_attachment_kb = 0\n",
    );
    let problems = fx.problems();
    let formats: Vec<&String> = problems
        .iter()
        .filter(|p| p.starts_with(&channel_key(WA, "capabilities.formats")))
        .collect();
    assert_eq!(formats.len(), 2, "{problems:?}");
    assert!(formats[0].ends_with(
        "`WebView` is not a format byocd renders; use some of Text, Attachments, RichLink, Buttons, QuickReplies, ListPicker, Carousel, TimePicker"
    ));
    assert!(formats[1].ends_with("must include `Text`: every channel relays a rep's text"));
    assert_eq!(
        find(
            &problems,
            &channel_key(WA, "capabilities.max_attachment_kb")
        ),
        "must be at least 1 (KiB)"
    );
}
