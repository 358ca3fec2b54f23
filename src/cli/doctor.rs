//! `byocd doctor [--channel NAME]`: checks, with the real configuration and before any traffic,
//! everything that makes the first message fail, and prints each check as `PASS` or `FAIL` with
//! the exact fix. Exits 0 only when every check passed.
//!
//! | check | how | a failure names |
//! |---|---|---|
//! | configuration | loaded and validated as `byocd serve` would (key files read, the OrgId's 15 characters, URLs) | each problem as `file:key: message` |
//! | private key | the org's PEM parsed as an RSA key | the file and what is wrong with it |
//! | PostgreSQL TLS | the URL reaches the server over a socket or loopback, or verifies its certificate | `sslmode=verify-full` |
//! | public base URL | `server.public_base_url` is `https://` on a public host (providers fetch hosted files from it) | the form to use |
//! | clock | the token endpoint's `Date` answer within 60 s of this machine's clock (JWT assertions live 3 minutes) | NTP |
//! | token mint | a JWT bearer mint against the org's token endpoint, kept nowhere | `invalid_client` → the consumer key; `invalid_grant` → the user, the certificate, the login host |
//! | platform event | `GetTopic` and `GetSchema` over Pub/Sub for the channel's event; its schema has the configured fields | the event name, the field names the schema has |
//! | provider credentials | a harmless authenticated read: 8x8 `GET /messages/{umid}` of a random umid (404 "not found" proves key and sub-account), Kaleyra's capability lookup of a test number | the API key file, the sub-account or SID, the base URL |
//! | Interaction Service | `PATCH /capabilities` with the channel's `AuthorizationContext`: a harmless call that proves the context, the org and the token | the channel definition's developer name, `byocd explain CODE` |
//!
//! The mint uses a throwaway database in a temporary directory: the daemon's stored token is
//! neither used nor replaced, so the mint really happens.

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use crate::{
    clock::SystemClock,
    config::{ChannelConfig, Config, DatabaseBackend, OrgConfig},
    crypto::TokenKey,
    salesforce::{
        auth::{AccessToken, AuthError, TokenManager},
        isa::{ClientSettings, IsaClient, Target},
        pubsub::proto::{SchemaRequest, TopicRequest, pub_sub_client::PubSubClient},
        types::CapabilitiesRequest,
    },
    store::{AnyStore, Store, StoreOptions},
};

/// `byocd doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Check this channel (and its org) only.
    #[arg(long)]
    pub channel: Option<String>,
}

/// The longest clock difference with Salesforce that leaves a JWT assertion (3 minutes) usable.
const MAX_SKEW: Duration = Duration::from_secs(60);

/// The outcome of the checks, printed as they run.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn pass(&mut self, what: &str, detail: &str) {
        self.passed += 1;
        println!("PASS  {what}: {detail}");
    }

    fn fail(&mut self, what: &str, problem: &str, fix: &str) {
        self.failed += 1;
        println!("FAIL  {what}: {problem}\n      fix: {fix}");
    }
}

/// Runs every check; exit status 0 only when all passed.
pub fn run(path: &Path, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let config = match crate::config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            let mut report = Report::default();
            for problem in &errors.problems {
                report.fail(
                    "configuration",
                    &problem.to_string(),
                    "change the key the message names (docs/configuration.md); `byocd config check` lists the same problems",
                );
            }
            println!(
                "\n{} check(s) failed; the rest need a valid configuration",
                report.failed
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let channels: Vec<ChannelConfig> = match &args.channel {
        Some(name) => match config.channel(name) {
            Some(c) => vec![c.clone()],
            None => {
                eprintln!(
                    "byocd doctor: no channel `{name}` is configured (see `byocd channels list`)"
                );
                return Ok(ExitCode::FAILURE);
            }
        },
        None => config.channels.clone(),
    };
    let all = args.channel.is_none();
    let report = super::runtime()?.block_on(check_all(&config, &channels, all))?;
    println!("\n{} passed, {} failed", report.passed, report.failed);
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check_all(
    config: &Config,
    channels: &[ChannelConfig],
    all: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    report.pass(
        "configuration",
        &format!(
            "{} org(s), {} channel(s) valid",
            config.orgs.len(),
            config.channels.len()
        ),
    );
    database_tls(config, &mut report);
    public_base_url(config, &mut report);

    let orgs: Vec<&OrgConfig> = config
        .orgs
        .iter()
        .filter(|o| all || channels.iter().any(|c| c.org_id == o.org_id))
        .collect();
    // A throwaway database for the token manager: the daemon's stored token stays untouched.
    let scratch = std::env::temp_dir().join(format!(
        "byocd-doctor-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&scratch)?;
    let outcome = check_orgs(channels, &orgs, &scratch, &mut report).await;
    let _ = std::fs::remove_dir_all(&scratch);
    outcome?;
    Ok(report)
}

async fn check_orgs(
    channels: &[ChannelConfig],
    orgs: &[&OrgConfig],
    scratch: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let store = AnyStore::open(
        &format!("sqlite://{}", scratch.join("doctor.db").display()),
        StoreOptions::default(),
    )
    .await?;
    store.migrate().await?;
    let owned: Vec<OrgConfig> = orgs.iter().map(|o| (*o).clone()).collect();
    let tokens = TokenManager::new(
        &owned,
        store.clone(),
        Arc::new(TokenKey::generate()),
        Arc::new(SystemClock),
    );
    let isa = IsaClient::new(&owned, tokens.clone(), ClientSettings::default());
    for org in orgs {
        let org_id = org.org_id.as_str();
        let what = format!("org {org_id}");
        private_key(org, &what, report);
        clock_skew(org, &what, report).await;
        let token = match tokens.token(org_id).await {
            Ok(token) => {
                report.pass(
                    &format!("{what}: token mint"),
                    &format!(
                        "the JWT bearer grant for {} was accepted by {}",
                        org.username,
                        org.token_endpoint()
                    ),
                );
                Some(token)
            }
            Err(e) => {
                let (problem, fix) = mint_failure(org, &e);
                report.fail(&format!("{what}: token mint"), &problem, &fix);
                None
            }
        };
        for channel in channels.iter().filter(|c| c.org_id == org.org_id) {
            let what = format!("channel {}", channel.name);
            provider_credentials(channel, &what, report).await;
            match &token {
                Some(token) => {
                    platform_event(org, channel, token, &what, report).await;
                    interaction_service(&isa, channel, &what, report).await;
                }
                None => report.fail(
                    &what,
                    "not checked against Salesforce: the org has no token",
                    "fix the token mint above, then run byocd doctor again",
                ),
            }
        }
    }
    store.close().await;
    Ok(())
}

fn database_tls(config: &Config, report: &mut Report) {
    if config.database.backend() != DatabaseBackend::Postgres {
        report.pass(
            "database",
            "SQLite in the state directory (no network, no TLS to check)",
        );
        return;
    }
    match crate::config::check_postgres_tls(&config.database.url) {
        Ok(()) => report.pass(
            "database TLS",
            "PostgreSQL is reached over a socket or loopback, or verifies the server's certificate",
        ),
        Err(problem) => report.fail(
            "database TLS",
            &problem,
            "add `sslmode=verify-full` to database.url (with `sslrootcert=PATH` for a private CA) and remove database.allow_unverified_tls",
        ),
    }
}

fn public_base_url(config: &Config, report: &mut Report) {
    let Some(url) = &config.server.public_base_url else {
        report.pass(
            "public base URL",
            "server.public_base_url is not set: byocd hosts no files for providers to fetch",
        );
        return;
    };
    match public_url_problem(url) {
        None => report.pass("public base URL", &format!("{url} is an https URL on a public host")),
        Some(problem) => report.fail(
            "public base URL",
            &format!("server.public_base_url = {url}: {problem}"),
            "set it to the https address on the internet where your proxy forwards /files/ to byocd, e.g. https://byoc.example.com/",
        ),
    }
}

/// Why `url` cannot be where providers fetch hosted files from (`None`: it can).
fn public_url_problem(url: &str) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("not a URL ({e})")),
    };
    if parsed.scheme() != "https" {
        return Some(format!(
            "the scheme is {}: providers fetch files over https",
            parsed.scheme()
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Some("it has a query or a fragment: file paths are appended to it".into());
    }
    let Some(host) = parsed.host_str() else {
        return Some("it has no host".into());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            (ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified())
                .then(|| format!("{ip} is not a public address"))
        }
        Ok(std::net::IpAddr::V6(ip)) => (ip.is_loopback() || ip.is_unspecified() || {
            let first = ip.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        })
        .then(|| format!("{ip} is not a public address")),
        Err(_) => {
            let d = host.to_ascii_lowercase();
            (d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || d.ends_with(".internal")
                || !d.contains('.'))
            .then(|| format!("{d} is not a public host name"))
        }
    }
}

fn private_key(org: &OrgConfig, what: &str, report: &mut Report) {
    let file = org.private_key.path().display().to_string();
    match jsonwebtoken::EncodingKey::from_rsa_pem(org.private_key.expose().as_bytes()) {
        Ok(_) => report.pass(
            &format!("{what}: private key"),
            &format!("{file} is an RSA private key in PEM"),
        ),
        Err(e) => report.fail(
            &format!("{what}: private key"),
            &format!("{file} is not an RSA private key in PEM ({e})"),
            "point orgs.private_key_file at the PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY) whose certificate is uploaded to the connected app",
        ),
    }
}

async fn clock_skew(org: &OrgConfig, what: &str, report: &mut Report) {
    let what = format!("{what}: clock");
    let endpoint = org.token_endpoint();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client with these settings always builds");
    let answer = match client.head(&endpoint).send().await {
        Ok(a) => a,
        Err(e) => {
            report.fail(
                &what,
                &format!("the token endpoint {endpoint} did not answer ({})", e.without_url()),
                "check orgs.login_url / orgs.token_url and that this host can reach Salesforce (proxy, firewall)",
            );
            return;
        }
    };
    let Some(date) = answer
        .headers()
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
    else {
        report.pass(
            &what,
            "the token endpoint sent no Date to compare with (not checked)",
        );
        return;
    };
    let skew = (chrono::Utc::now() - date.with_timezone(&chrono::Utc))
        .num_seconds()
        .unsigned_abs();
    if skew <= MAX_SKEW.as_secs() {
        report.pass(&what, &format!("within {skew} s of Salesforce's clock"));
    } else {
        report.fail(
            &what,
            &format!("this machine's clock is {skew} s away from Salesforce's: JWT assertions are refused as expired or not yet valid"),
            "synchronise the clock (timedatectl set-ntp true, or chrony/ntpd)",
        );
    }
}

/// What went wrong with a mint, and the setting to fix.
fn mint_failure(org: &OrgConfig, error: &AuthError) -> (String, String) {
    let fix = match error {
        AuthError::Refused { error, .. }
            if error == "invalid_client" || error == "invalid_client_id" =>
        {
            format!(
                "orgs.consumer_key ({}) must be the connected app's Consumer Key (Setup → App Manager → the app → View → Manage Consumer Details)",
                org.consumer_key
            )
        }
        AuthError::Refused { error, .. } if error == "invalid_grant" => format!(
            "check that {} exists, is active and pre-authorised for the connected app (Manage → Permitted Users: Admin approved users are pre-authorized; its profile or permission set added), that the certificate uploaded to the app is the one of orgs.private_key_file, that orgs.login_url ({}) is the org's login host (the JWT audience), and that this machine's clock is right",
            org.username, org.login_url
        ),
        AuthError::Refused { .. } => {
            "check the connected app's OAuth settings (JWT bearer flow enabled, the api scope)"
                .to_owned()
        }
        AuthError::Unreachable { .. } => {
            "check orgs.login_url / orgs.token_url and that this host reaches Salesforce".to_owned()
        }
        AuthError::Signing { .. } => {
            "point orgs.private_key_file at the RSA private key in PEM".to_owned()
        }
        _ => "run byocd doctor again; if it persists, see docs/salesforce.md".to_owned(),
    };
    (error.to_string(), fix)
}

async fn platform_event(
    org: &OrgConfig,
    channel: &ChannelConfig,
    token: &AccessToken,
    what: &str,
    report: &mut Report,
) {
    let what = format!("{what}: platform event");
    let topic = format!("/event/{}", channel.platform_event.name);
    let event = &channel.platform_event;
    match read_topic(org, token, &topic).await {
        Err(problem) => report.fail(
            &what,
            &format!("{topic} over Pub/Sub ({}): {problem}", org.pubsub_endpoint),
            &format!(
                "platform_event.name must be the API name of the channel's platform event ({}), the integration user needs read access to it, and orgs.pubsub_endpoint must be the Pub/Sub API (api.pubsub.salesforce.com:7443)",
                event.name
            ),
        ),
        Ok(fields) => {
            let missing: Vec<&str> = [&event.event_type_field, &event.payload_field]
                .into_iter()
                .filter(|f| !fields.contains(f))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                report.pass(
                    &what,
                    &format!(
                        "{topic} is readable and its schema has {} and {}",
                        event.event_type_field, event.payload_field
                    ),
                );
            } else {
                report.fail(
                    &what,
                    &format!(
                        "the schema of {topic} has no field {}",
                        missing.join(", ")
                    ),
                    &format!(
                        "set platform_event.event_type_field / payload_field to the event's field API names; its schema has: {}",
                        fields.join(", ")
                    ),
                );
            }
        }
    }
}

/// The field names of `topic`'s schema, read with `GetTopic` and `GetSchema`.
async fn read_topic(
    org: &OrgConfig,
    token: &AccessToken,
    topic: &str,
) -> Result<Vec<String>, String> {
    use tonic::metadata::MetadataValue;
    let endpoint = org.pubsub_endpoint.clone();
    let mut builder = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .map_err(|e| format!("not an endpoint: {e}"))?;
    if endpoint.starts_with("https://") {
        builder = builder
            .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
            .map_err(|e| e.to_string())?;
    }
    let channel = builder
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let instance_url = org
        .instance_url
        .clone()
        .or_else(|| token.instance_url().map(str::to_owned))
        .unwrap_or_else(|| org.login_url.clone());
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "accesstoken",
        MetadataValue::try_from(token.expose()).map_err(|e| e.to_string())?,
    );
    metadata.insert(
        "instanceurl",
        MetadataValue::try_from(instance_url.as_str()).map_err(|e| e.to_string())?,
    );
    metadata.insert(
        "tenantid",
        MetadataValue::try_from(org.org_id.as_str()).map_err(|e| e.to_string())?,
    );
    let mut client = PubSubClient::new(channel);
    let status = |e: tonic::Status| format!("{:?}: {}", e.code(), e.message());
    let info = client
        .get_topic(tonic::Request::from_parts(
            metadata.clone(),
            Default::default(),
            TopicRequest {
                topic_name: topic.to_owned(),
            },
        ))
        .await
        .map_err(status)?
        .into_inner();
    if !info.can_subscribe {
        return Err(format!("the integration user may not subscribe to {topic}"));
    }
    let schema = client
        .get_schema(tonic::Request::from_parts(
            metadata.clone(),
            Default::default(),
            SchemaRequest {
                schema_id: info.schema_id.clone(),
            },
        ))
        .await
        .map_err(status)?
        .into_inner();
    match apache_avro::Schema::parse_str(&schema.schema_json)
        .map_err(|e| format!("the schema is not Avro: {e}"))?
    {
        apache_avro::Schema::Record(record) => {
            Ok(record.fields.iter().map(|f| f.name.clone()).collect())
        }
        _ => Err("the schema is not a record".into()),
    }
}

/// The capabilities the doctor registers to prove the channel's `AuthorizationContext`: the
/// same set the daemon registers at start (`domain::capabilities`), so the check never narrows
/// what the channel has registered.
pub fn capabilities_for(channel: &ChannelConfig) -> CapabilitiesRequest {
    crate::domain::capabilities::request(channel)
}

/// A harmless authenticated call to the channel's provider (`AnyProvider::check_credentials`).
async fn provider_credentials(channel: &ChannelConfig, what: &str, report: &mut Report) {
    use crate::config::Provider as Configured;
    use crate::providers::{AnyProvider, ProviderErrorClass};
    let what = format!("{what}: provider credentials");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client with these settings always builds");
    let provider = AnyProvider::for_channel(channel, http);
    let (names, call) = match &channel.provider {
        Configured::EightByEight(a) => (
            format!("8x8 sub-account {} at {}", a.sub_account_id, a.base_url),
            "GET /api/v1/subaccounts/{sa}/messages/{random umid}",
        ),
        Configured::Kaleyra(a) => (
            format!("Kaleyra SID {} at {}", a.sid, a.base_url),
            "GET /v1/{sid}/rcs/lookup/{a test number}",
        ),
    };
    let Err(e) = provider.check_credentials().await else {
        report.pass(&what, &format!("{names} accepted the API key ({call})"));
        return;
    };
    let fix = match (&channel.provider, e.class, e.status) {
        (Configured::EightByEight(_), _, _) if e.code.as_deref() == Some("1001") => {
            "provider.sub_account_id must be the Chat Apps sub-account the API key belongs to (8x8 Connect → Sub-accounts)"
        }
        (Configured::EightByEight(_), ProviderErrorClass::Authorisation, _) => {
            "provider.api_key_file must hold the sub-account's API key (8x8 Connect → API keys), with nothing else in the file"
        }
        (Configured::Kaleyra(_), _, Some(403)) => {
            "provider.sid must be the account SID the API key was made in (kaleyra.io → Developers → API keys)"
        }
        (Configured::Kaleyra(_), ProviderErrorClass::Authorisation, _) => {
            "provider.api_key_file must hold a live kaleyra.io API key of the account provider.sid names (and provider.basic_username / basic_password_file its Basic credentials, where the account needs them); Kaleyra also answers 401 when RCS is not enabled on the account"
        }
        (_, ProviderErrorClass::Retryable, None) => {
            "check provider.base_url (the provider's regional API host) and that this host reaches it (proxy, firewall)"
        }
        _ => {
            "check provider.base_url and the provider settings in docs/configuration.md; the provider's answer is above"
        }
    };
    report.fail(&what, &format!("{names}: {e}"), fix);
}

async fn interaction_service(
    isa: &IsaClient,
    channel: &ChannelConfig,
    what: &str,
    report: &mut Report,
) {
    let what = format!("{what}: Interaction Service");
    let target = Target {
        org_id: channel.org_id.as_str(),
        authorization_context: &channel.authorization_context,
    };
    match isa.capabilities(target, &capabilities_for(channel)).await {
        Ok(_) => report.pass(
            &what,
            &format!(
                "PATCH /capabilities with AuthorizationContext {} accepted",
                channel.authorization_context
            ),
        ),
        Err(e) => {
            let code = e
                .code()
                .map(|c| format!(" (`byocd explain {c}` says what byocd does about it)"))
                .unwrap_or_default();
            report.fail(
                &what,
                &format!(
                    "PATCH /capabilities with AuthorizationContext {} refused: {e}",
                    channel.authorization_context
                ),
                &format!(
                    "authorization_context must equal the developer name of the channel's Conversation Channel Definition, and orgs.scrt_base_url the org's SCRT2 URL{code}"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_base_urls_that_providers_cannot_reach_are_named() {
        for good in [
            "https://byoc.example.com/",
            "https://byoc.example.com/byocd/",
            "https://203.0.113.10/",
        ] {
            assert_eq!(public_url_problem(good), None, "{good}");
        }
        for (bad, says) in [
            ("http://byoc.example.com/", "scheme is http"),
            ("https://localhost:8080/", "not a public host"),
            ("https://byocd/", "not a public host"),
            ("https://10.1.2.3/", "not a public address"),
            ("https://127.0.0.1/", "not a public address"),
            ("https://[::1]/", "not a public address"),
            ("https://byoc.example.com/?a=b", "query"),
            ("byoc.example.com", "not a URL"),
        ] {
            let problem = public_url_problem(bad).unwrap_or_default();
            assert!(problem.contains(says), "{bad}: {problem}");
        }
    }
}
