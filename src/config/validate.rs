//! Semantic validation: raw (file-shaped) values in, model values out, every problem reported.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::SecretString;

use super::{
    Problem,
    duration::Humane,
    model::*,
    net::{IpNetwork, check_endpoint_url},
    raw::*,
    secret::{SecretDirs, SecretFile},
};
use crate::crypto::TokenKey;

/// Default of `server.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default of `server.metrics_listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Default of `server.max_body_bytes` (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default of `server.shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default of `server.header_timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `server.body_timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `server.max_connections`.
pub const DEFAULT_SERVER_MAX_CONNECTIONS: usize = 512;
/// Default of `server.max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// Default of `relay.concurrency`.
pub const DEFAULT_RELAY_CONCURRENCY: u32 = 32;
/// Default of `relay.batch_size`.
pub const DEFAULT_RELAY_BATCH_SIZE: u32 = 32;
/// Default of `relay.poll_interval`.
pub const DEFAULT_RELAY_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default of `relay.finished_retention`.
pub const DEFAULT_FINISHED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default of `retention.quarantine`.
pub const DEFAULT_QUARANTINE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default of `retention.dedupe`.
pub const DEFAULT_DEDUPE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest `retention.dedupe`: Salesforce keeps platform events 72 hours, and a Pub/Sub
/// subscription resumed from its stored position may bring back events of that long ago.
pub const MIN_DEDUPE_RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);
/// Default of `retention.ended_sessions`.
pub const DEFAULT_ENDED_SESSIONS_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default of `relay.lease`.
pub const DEFAULT_RELAY_LEASE: Duration = Duration::from_secs(90);
/// Default of `relay.max_retry_after`.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Default of `relay.retry_schedule`: about seven hours of retries in all.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 8] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(3 * 3600),
];
/// Default of `routing.offer_timeout`.
pub const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `server.hosted_file_ttl`.
pub const DEFAULT_HOSTED_FILE_TTL: Duration = Duration::from_secs(3600);
/// Default of `pubsub.num_requested`.
pub const DEFAULT_NUM_REQUESTED: i32 = 100;
/// Largest `pubsub.num_requested`: the Pub/Sub API never keeps more events requested.
pub const MAX_NUM_REQUESTED: i32 = 100;
/// Default of `pubsub.retention`: platform events are kept about three days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(72 * 3600);
/// Default of `features.typing_quiet_time`.
pub const DEFAULT_TYPING_QUIET_TIME: Duration = Duration::from_secs(5);
/// Default of `database.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// Default of `database.commit_batch_size`.
pub const DEFAULT_COMMIT_BATCH_SIZE: u32 = 64;
/// Default of `database.acquire_timeout`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default of `channels_dir`, relative to the main file's directory.
pub const DEFAULT_CHANNELS_DIR: &str = "channels.d";
/// Default `state_dir` when `$STATE_DIRECTORY` is not set (relative to the working directory).
pub const DEFAULT_STATE_DIR: &str = "byocd-state";
/// File name of the SQLite database inside `state_dir`.
pub const SQLITE_FILE: &str = "byocd.db";
/// Default of `orgs[].login_url`.
pub const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
/// Default of `orgs[].pubsub_endpoint`.
pub const DEFAULT_PUBSUB_ENDPOINT: &str = "https://api.pubsub.salesforce.com:7443";
/// Default of `orgs[].requests_per_second`: the documented Interaction Service limit.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 2000;
/// Default of `platform_event.event_type_field`.
pub const DEFAULT_EVENT_TYPE_FIELD: &str = "EventType__c";
/// Default of `platform_event.payload_field`.
pub const DEFAULT_PAYLOAD_FIELD: &str = "Payload__c";
/// Default of `session.inactivate_after`.
pub const DEFAULT_INACTIVATE_AFTER: Duration = Duration::from_secs(30 * 60);
/// Default of `session.end_after`.
pub const DEFAULT_END_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Default of `session.sweep_cron`: every minute, at second 0.
pub const DEFAULT_SWEEP_CRON: &str = "0 * * * * *";
/// Default of `routing.max_attempts` for the `agents` policy.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default of `provider.base_url` for 8x8 (Asia-Pacific; the other regions are
/// `https://chatapps.us.8x8.com`, `https://chatapps.8x8.uk`, `https://chatapps.8x8.id`).
pub const DEFAULT_8X8_BASE_URL: &str = "https://chatapps.8x8.com";
/// Longest channel address, AuthorizationContext and the like (Interaction Service limit).
pub const MAX_IDENTIFIER_LEN: usize = 240;
/// Longest channel name.
pub const MAX_CHANNEL_NAME_LEN: usize = 64;

/// Problems of one file, with the keys already reported (so a removed bad key is not reported
/// again as missing).
pub(crate) struct FileCtx<'a> {
    pub file: String,
    pub problems: Vec<Problem>,
    pub reported: BTreeSet<String>,
    /// Env var names by the dotted key they set (main file only).
    pub env_keys: BTreeMap<String, String>,
    pub secrets: &'a SecretDirs,
    /// Keys whose secret was left unread (`SecretDirs::database_only`): no problem is reported
    /// about them, since their values were never looked at.
    pub unread: BTreeSet<String>,
}

impl<'a> FileCtx<'a> {
    pub fn new(file: String, secrets: &'a SecretDirs) -> Self {
        Self {
            file,
            problems: Vec::new(),
            reported: BTreeSet::new(),
            env_keys: BTreeMap::new(),
            secrets,
            unread: BTreeSet::new(),
        }
    }

    /// Which "file" a key's value came from: the env var that set it, or this file.
    fn source_of(&self, key: &str) -> String {
        self.env_keys
            .iter()
            .find(|(env_key, _)| {
                key == env_key.as_str()
                    || key
                        .strip_prefix(env_key.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map_or_else(|| self.file.clone(), |(_, var)| format!("env:{var}"))
    }

    pub fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        self.reported.insert(key.clone());
        if self.unread.contains(&key) {
            return;
        }
        self.problems.push(Problem {
            file: self.source_of(&key),
            key,
            message: message.into(),
        });
    }

    /// A required value: reports it missing unless its key was already reported.
    pub fn require<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.reported.contains(key) {
            self.problem(key, "missing required key");
        }
        value
    }

    /// A required non-empty string of at most `max` characters.
    pub fn text(&mut self, key: &str, value: Option<String>, max: usize) -> Option<String> {
        let value = self.require(key, value)?;
        self.check_text(key, value, max)
    }

    fn check_text(&mut self, key: &str, value: String, max: usize) -> Option<String> {
        let len = value.chars().count();
        if value.trim().is_empty() {
            self.problem(key, "must not be empty");
            None
        } else if len > max {
            self.problem(key, format!("must be at most {max} characters, got {len}"));
            None
        } else {
            Some(value)
        }
    }

    /// An endpoint URL under the one rule of [`check_endpoint_url`] (https, or http only to a
    /// loopback host), without a query or fragment; returned without a trailing `/`.
    pub fn url(
        &mut self,
        key: &str,
        value: Option<String>,
        default: Option<&str>,
    ) -> Option<String> {
        let value = match (value, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => return self.require(key, None),
        };
        if let Err(message) = check_endpoint_url(&value) {
            self.problem(key, format!("`{value}` {message}"));
            return None;
        }
        match reqwest::Url::parse(&value) {
            Ok(url) if url.query().is_some() || url.fragment().is_some() => {
                self.problem(key, format!("`{value}` must not have a query or fragment"));
                None
            }
            _ => Some(value.trim_end_matches('/').to_owned()),
        }
    }

    /// Reads the secret a `*_file` key refers to.
    pub fn secret(&mut self, key: &str, reference: Option<String>) -> Option<SecretFile> {
        let reference = self.require(key, reference)?;
        self.optional_secret(key, Some(reference))
    }

    /// Reads an optional secret; for an admin command (`SecretDirs::database_only`) leaves it
    /// unread.
    pub fn optional_secret(&mut self, key: &str, reference: Option<String>) -> Option<SecretFile> {
        let reference = reference?;
        if self.secrets.database_only {
            self.unread.insert(key.to_owned());
            let path = self
                .secrets
                .resolve(&reference)
                .unwrap_or_else(|_| reference.clone().into());
            return Some(SecretFile::unread(&reference, path));
        }
        self.read_secret(key, &reference)
    }

    /// Reads a secret, whatever the mode.
    fn read_secret(&mut self, key: &str, reference: &str) -> Option<SecretFile> {
        match self.secrets.read(reference) {
            Ok(secret) => Some(secret),
            Err(message) => {
                self.problem(key, message);
                None
            }
        }
    }

    fn salesforce_id(&mut self, key: &str, value: Option<String>) -> Option<SalesforceId> {
        let value = self.require(key, value)?;
        SalesforceId::parse(&value)
            .map_err(|m| self.problem(key, m))
            .ok()
    }

    fn positive<T: PartialOrd + Default>(&mut self, key: &str, value: T) -> Option<T> {
        if value > T::default() {
            Some(value)
        } else {
            self.problem(key, "must be greater than 0");
            None
        }
    }

    /// Reports keys set that the chosen variant does not use.
    fn unused(&mut self, prefix: &str, what: &str, keys: &[(&str, bool)]) {
        for (key, set) in keys {
            if *set {
                self.problem(format!("{prefix}.{key}"), format!("is not used by {what}"));
            }
        }
    }
}

/// The validated main file.
pub(crate) struct MainParts {
    pub state_dir: PathBuf,
    pub channels_dir: PathBuf,
    pub server: Option<ServerSettings>,
    pub database: Option<DatabaseSettings>,
    pub token_key: Option<TokenKey>,
    pub log: Option<LogSettings>,
    pub relay: Option<RelaySettings>,
    pub pubsub: Option<PubSubSettings>,
    pub retention: Option<RetentionSettings>,
    pub orgs: Vec<OrgConfig>,
    /// Number of `[[orgs]]` entries, valid or not.
    pub org_count: usize,
}

fn humane(value: Option<Humane>, default: Duration) -> Duration {
    value.map_or(default, |h| h.0)
}

/// Where a relative path in the configuration points: the main file's directory.
fn resolve_path(base: &Path, value: &str) -> PathBuf {
    let path = Path::new(value);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

pub(crate) fn main_file(
    ctx: &mut FileCtx<'_>,
    raw: RawMain,
    base: &Path,
    state_directory: Option<&str>,
) -> MainParts {
    let state_dir = match raw.state_dir.filter(|s| !s.is_empty()) {
        Some(dir) => resolve_path(base, &dir),
        None => match state_directory
            .and_then(|s| s.split(':').next())
            .filter(|s| !s.is_empty())
        {
            Some(dir) => PathBuf::from(dir),
            None => std::path::absolute(DEFAULT_STATE_DIR)
                .unwrap_or_else(|_| PathBuf::from(DEFAULT_STATE_DIR)),
        },
    };
    let channels_dir = resolve_path(
        base,
        raw.channels_dir.as_deref().unwrap_or(DEFAULT_CHANNELS_DIR),
    );

    let server = server(ctx, raw.server);
    let database = database(ctx, raw.database, &state_dir);
    let log = log(ctx, raw.log);
    let relay = relay(ctx, raw.relay);
    let pubsub = pubsub(ctx, raw.pubsub);
    let retention = retention(ctx, raw.retention);

    let token_key = raw.security.token_key_file.and_then(|reference| {
        if ctx.secrets.database_only {
            // Admin commands only name the key (`token status`): read it if they can.
            ctx.unread.insert("security.token_key_file".to_owned());
            let secret = ctx.secrets.read(&reference).ok()?;
            return TokenKey::from_file_contents(secret.expose()).ok();
        }
        let secret = ctx.optional_secret("security.token_key_file", Some(reference))?;
        TokenKey::from_file_contents(secret.expose())
            .map_err(|e| {
                ctx.problem(
                    "security.token_key_file",
                    format!("{}: {e}", secret.path().display()),
                )
            })
            .ok()
    });

    let org_count = raw.orgs.len();
    let mut orgs: Vec<OrgConfig> = Vec::new();
    for (i, raw_org) in raw.orgs.into_iter().enumerate() {
        let Some(org) = org(ctx, &format!("orgs[{i}]"), raw_org) else {
            continue;
        };
        if let Some(first) = orgs.iter().position(|o| o.org_id == org.org_id) {
            ctx.problem(
                format!("orgs[{i}].org_id"),
                format!(
                    "org `{}` is already configured as orgs[{first}]",
                    org.org_id
                ),
            );
            continue;
        }
        orgs.push(org);
    }
    if org_count > 0 && token_key.is_none() && !ctx.reported.contains("security.token_key_file") {
        ctx.problem(
            "security.token_key_file",
            "required when orgs are configured (tokens are encrypted at rest); create one with `byocd keygen`",
        );
    }

    MainParts {
        state_dir,
        channels_dir,
        server,
        database,
        token_key,
        log,
        relay,
        pubsub,
        retention,
        orgs,
        org_count,
    }
}

fn pubsub(ctx: &mut FileCtx<'_>, raw: RawPubSub) -> Option<PubSubSettings> {
    // The Pub/Sub API keeps at most 100 events requested and treats more as 100; a larger
    // credit would never fall to the half at which the subscriber asks for more, and the
    // stream would stall after 100 events.
    let num_requested = match raw.num_requested.unwrap_or(DEFAULT_NUM_REQUESTED) {
        n if (1..=MAX_NUM_REQUESTED).contains(&n) => Some(n),
        n => {
            ctx.problem(
                "pubsub.num_requested",
                format!(
                    "must be between 1 and {MAX_NUM_REQUESTED} (the Pub/Sub API's limit), got {n}"
                ),
            );
            None
        }
    };
    let retention = ctx.positive("pubsub.retention", humane(raw.retention, DEFAULT_RETENTION));
    Some(PubSubSettings {
        initial_replay: raw.initial_replay.unwrap_or(InitialReplay::Latest),
        num_requested: num_requested?,
        retention: retention?,
    })
}

fn retention(ctx: &mut FileCtx<'_>, raw: RawRetention) -> Option<RetentionSettings> {
    let quarantine = ctx.positive(
        "retention.quarantine",
        humane(raw.quarantine, DEFAULT_QUARANTINE_RETENTION),
    );
    let dedupe = humane(raw.dedupe, DEFAULT_DEDUPE_RETENTION);
    let dedupe = if dedupe < MIN_DEDUPE_RETENTION {
        ctx.problem(
            "retention.dedupe",
            "must be at least 4d: Salesforce replays platform events of the last 72 hours, and \
             an event must still be recognised as already taken in",
        );
        None
    } else {
        Some(dedupe)
    };
    let ended_sessions = ctx.positive(
        "retention.ended_sessions",
        humane(raw.ended_sessions, DEFAULT_ENDED_SESSIONS_RETENTION),
    );
    Some(RetentionSettings {
        quarantine: quarantine?,
        dedupe: dedupe?,
        ended_sessions: ended_sessions?,
    })
}

fn relay(ctx: &mut FileCtx<'_>, raw: RawRelay) -> Option<RelaySettings> {
    let concurrency = ctx.positive(
        "relay.concurrency",
        raw.concurrency.unwrap_or(DEFAULT_RELAY_CONCURRENCY),
    );
    let batch_size = ctx.positive(
        "relay.batch_size",
        raw.batch_size.unwrap_or(DEFAULT_RELAY_BATCH_SIZE),
    );
    let poll_interval = ctx.positive(
        "relay.poll_interval",
        humane(raw.poll_interval, DEFAULT_RELAY_POLL_INTERVAL),
    );
    let lease = ctx.positive("relay.lease", humane(raw.lease, DEFAULT_RELAY_LEASE));
    let retry_schedule = match raw.retry_schedule {
        None => DEFAULT_RETRY_SCHEDULE.to_vec(),
        Some(list) if list.is_empty() => {
            ctx.problem(
                "relay.retry_schedule",
                "must list at least one delay (the first retry)",
            );
            return None;
        }
        Some(list) => list.into_iter().map(|h| h.0).collect(),
    };
    let finished_retention = ctx.positive(
        "relay.finished_retention",
        humane(raw.finished_retention, DEFAULT_FINISHED_RETENTION),
    );
    let max_retry_after = ctx.positive(
        "relay.max_retry_after",
        humane(raw.max_retry_after, DEFAULT_MAX_RETRY_AFTER),
    );
    Some(RelaySettings {
        concurrency: concurrency?,
        batch_size: batch_size?,
        poll_interval: poll_interval?,
        lease: lease?,
        retry_schedule,
        finished_retention: finished_retention?,
        max_retry_after: max_retry_after?,
        allow_private_media_urls: raw.allow_private_media_urls.unwrap_or(false),
    })
}

fn socket(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: Option<SocketAddr>,
    default: &str,
) -> Option<SocketAddr> {
    match value {
        Some(v) => Some(v),
        None if ctx.reported.contains(key) => None,
        None => Some(default.parse().expect("default socket address parses")),
    }
}

fn server(ctx: &mut FileCtx<'_>, raw: RawServer) -> Option<ServerSettings> {
    let listen = socket(ctx, "server.listen", raw.listen, DEFAULT_LISTEN);
    let metrics_listen = socket(
        ctx,
        "server.metrics_listen",
        raw.metrics_listen,
        DEFAULT_METRICS_LISTEN,
    );
    let max_body_bytes = ctx.positive(
        "server.max_body_bytes",
        raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
    );
    let header_timeout = ctx.positive(
        "server.header_timeout",
        humane(raw.header_timeout, DEFAULT_HEADER_TIMEOUT),
    );
    let body_timeout = ctx.positive(
        "server.body_timeout",
        humane(raw.body_timeout, DEFAULT_BODY_TIMEOUT),
    );
    let max_connections = ctx.positive(
        "server.max_connections",
        raw.max_connections
            .unwrap_or(DEFAULT_SERVER_MAX_CONNECTIONS),
    );
    let max_concurrent_requests = ctx.positive(
        "server.max_concurrent_requests",
        raw.max_concurrent_requests
            .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS),
    );
    if let (Some(a), Some(b)) = (listen, metrics_listen)
        && a == b
        && a.port() != 0
    {
        ctx.problem(
            "server.metrics_listen",
            format!("must differ from server.listen ({a})"),
        );
        return None;
    }
    Some(ServerSettings {
        listen: listen?,
        metrics_listen: metrics_listen?,
        max_body_bytes: max_body_bytes?,
        shutdown_grace: humane(raw.shutdown_grace, DEFAULT_SHUTDOWN_GRACE),
        public_base_url: public_base_url(ctx, raw.public_base_url),
        hosted_file_ttl: humane(raw.hosted_file_ttl, DEFAULT_HOSTED_FILE_TTL),
        header_timeout: header_timeout?,
        body_timeout: body_timeout?,
        max_connections: max_connections?,
        max_concurrent_requests: max_concurrent_requests?,
    })
}

fn public_base_url(ctx: &mut FileCtx<'_>, value: Option<String>) -> Option<String> {
    let value = value.filter(|v| !v.is_empty())?;
    ctx.url("server.public_base_url", Some(value), None)
}

/// A PostgreSQL URL reaches its server over a Unix socket or loopback, or verifies the server's
/// certificate: `sslmode=verify-full` (or `verify-ca`). sqlx's default, `prefer`, accepts any
/// certificate and falls back to clear text, so anyone on the path could read or change every
/// query. (`PGSSLMODE` and the other `PG…` variables count, as they do when connecting.)
pub fn check_postgres_tls(url: &str) -> Result<(), String> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("`{}` is not a PostgreSQL URL: {e}", redact_url(url)))?;
    if options.get_socket().is_some() {
        return Ok(());
    }
    let host = options
        .get_host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match options.get_ssl_mode() {
        _ if loopback => Ok(()),
        PgSslMode::VerifyFull | PgSslMode::VerifyCa => Ok(()),
        mode => Err(format!(
            "connects to {host} with sslmode={}, which accepts any certificate{}: add \
             `sslmode=verify-full` to the URL (and `sslrootcert=PATH` for a private CA), or set \
             database.allow_unverified_tls = true if the network is trusted",
            match mode {
                PgSslMode::Disable => "disable",
                PgSslMode::Allow => "allow",
                PgSslMode::Prefer => "prefer",
                PgSslMode::Require => "require",
                _ => "?",
            },
            if matches!(
                mode,
                PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer
            ) {
                " or none (clear text)"
            } else {
                ""
            }
        )),
    }
}

fn database(ctx: &mut FileCtx<'_>, raw: RawDatabase, state_dir: &Path) -> Option<DatabaseSettings> {
    let configured = raw.url.unwrap_or_default();
    let url = if configured.is_empty() {
        format!("sqlite://{}", state_dir.join(SQLITE_FILE).display())
    } else if configured.starts_with("sqlite:")
        || configured.starts_with("postgres://")
        || configured.starts_with("postgresql://")
    {
        configured
    } else {
        ctx.problem(
            "database.url",
            format!(
                "`{}` is not a database URL: use `sqlite://PATH`, `postgres://…`, or leave it empty for {}/{SQLITE_FILE}",
                redact_url(&configured),
                state_dir.display()
            ),
        );
        return None;
    };
    let is_postgres = url.starts_with("postgres");
    if is_postgres && !raw.allow_unverified_tls.unwrap_or(false) {
        if let Err(message) = check_postgres_tls(&url) {
            ctx.problem("database.url", message);
        }
    } else if !is_postgres && raw.allow_unverified_tls.is_some() {
        ctx.problem(
            "database.allow_unverified_tls",
            "is only used with a postgres:// URL",
        );
    }
    let password = match raw.password_file {
        Some(_) if !is_postgres => {
            ctx.problem(
                "database.password_file",
                "is only used with a postgres:// URL",
            );
            None
        }
        // Read even for admin commands: they connect to the database.
        Some(reference) => Some(
            ctx.read_secret("database.password_file", &reference)
                .map(|s| SecretString::from(s.expose().to_owned()))?,
        ),
        None => None,
    };
    let max_connections = ctx.positive(
        "database.max_connections",
        raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
    )?;
    let commit_batch_size = ctx.positive(
        "database.commit_batch_size",
        raw.commit_batch_size.unwrap_or(DEFAULT_COMMIT_BATCH_SIZE),
    )?;
    Some(DatabaseSettings {
        url,
        password,
        max_connections,
        acquire_timeout: humane(raw.acquire_timeout, DEFAULT_ACQUIRE_TIMEOUT),
        commit_batch_size,
    })
}

fn log(ctx: &mut FileCtx<'_>, raw: RawLog) -> Option<LogSettings> {
    let level = raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
        ctx.problem("log.level", format!("`{level}` is not a log filter: {e}"));
        return None;
    }
    Some(LogSettings {
        level,
        format: raw.format.unwrap_or(LogFormat::Auto),
    })
}

fn org(ctx: &mut FileCtx<'_>, prefix: &str, raw: RawOrg) -> Option<OrgConfig> {
    let k = |key: &str| format!("{prefix}.{key}");
    let org_id = ctx.require(&k("org_id"), raw.org_id).and_then(|id| {
        OrgId::parse(&id)
            .map_err(|m| ctx.problem(k("org_id"), m))
            .ok()
    });
    let login_url = ctx.url(&k("login_url"), raw.login_url, Some(DEFAULT_LOGIN_URL));
    let token_url = match raw.token_url {
        Some(u) => Some(ctx.url(&k("token_url"), Some(u), None)),
        None => Some(None),
    };
    let scrt_base_url = ctx.url(&k("scrt_base_url"), raw.scrt_base_url, None);
    let instance_url = match raw.instance_url {
        Some(u) => Some(ctx.url(&k("instance_url"), Some(u), None)),
        None => Some(None),
    };
    let pubsub_endpoint = ctx.url(
        &k("pubsub_endpoint"),
        raw.pubsub_endpoint,
        Some(DEFAULT_PUBSUB_ENDPOINT),
    );
    let consumer_key = ctx.text(&k("consumer_key"), raw.consumer_key, usize::MAX);
    let username = ctx.text(&k("username"), raw.username, usize::MAX);
    let private_key = ctx
        .secret(&k("private_key_file"), raw.private_key_file)
        .and_then(
            |key| match jsonwebtoken::EncodingKey::from_rsa_pem(key.expose().as_bytes()) {
                _ if ctx.secrets.database_only => Some(key),
                Ok(_) => Some(key),
                Err(e) => {
                    ctx.problem(
                        k("private_key_file"),
                        format!("{} is not a PEM RSA private key: {e}", key.path().display()),
                    );
                    None
                }
            },
        );
    let requests_per_second = ctx.positive(
        &k("requests_per_second"),
        raw.requests_per_second
            .unwrap_or(DEFAULT_REQUESTS_PER_SECOND),
    );
    let token_max_age = match raw.token_max_age {
        Some(Humane(d)) if d.is_zero() => {
            ctx.problem(k("token_max_age"), "must be greater than 0");
            return None;
        }
        other => other.map(|h| h.0),
    };
    let org_id = org_id?;
    Some(OrgConfig {
        name: raw
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| org_id.to_string()),
        org_id,
        login_url: login_url?,
        token_url: token_url?,
        scrt_base_url: scrt_base_url?,
        instance_url: instance_url?,
        pubsub_endpoint: pubsub_endpoint?,
        consumer_key: consumer_key?,
        username: username?,
        private_key: private_key?,
        requests_per_second: requests_per_second?,
        token_max_age,
    })
}

/// An 8x8 sub-account id: `^[A-Za-z0-9\-._&]{3,50}$`.
pub(crate) fn check_sub_account_id(id: &str) -> Result<(), String> {
    let len = id.chars().count();
    if !(3..=50).contains(&len) {
        return Err(format!(
            "`{id}` is not an 8x8 sub-account id: must be 3 to 50 characters, got {len}"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '&')))
    {
        return Err(format!(
            "`{id}` is not an 8x8 sub-account id: `{bad}` is not allowed (letters, digits, `-`, `.`, `_`, `&`)"
        ));
    }
    Ok(())
}

/// A channel name: letters, digits, `-`, `_`, `.`; used in webhook paths and logs.
fn check_channel_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > MAX_CHANNEL_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_CHANNEL_NAME_LEN} characters, got {len}"
        ));
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{name}` must contain only letters, digits, `-`, `_` and `.` (and not start with `.`)"
        ));
    }
    Ok(())
}

/// Checks a six-field cron expression (seconds first) the way the sweeper will parse it.
pub(crate) fn check_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "`{expr}` must have 6 fields (second minute hour day-of-month month day-of-week), got {fields}"
        ));
    }
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| format!("`{expr}` is not a valid cron expression"))
}

/// The API name of a custom field or event: letters, digits and `_`, with the given suffix.
fn check_api_name(name: &str, suffix: &str, what: &str) -> Result<(), String> {
    let stem = name.strip_suffix(suffix).unwrap_or("");
    if stem.is_empty()
        || !stem.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "`{name}` is not the API name of a {what} (letters, digits and `_`, ending in `{suffix}`)"
        ));
    }
    Ok(())
}

/// What cross-file checks need of a channel, even when the channel itself has problems.
#[derive(Debug, Default)]
pub(crate) struct ChannelKeys {
    pub name: Option<String>,
    pub address: Option<String>,
    pub org_id: Option<OrgId>,
}

pub(crate) fn channel(
    ctx: &mut FileCtx<'_>,
    raw: RawChannel,
    stem: &str,
) -> (ChannelKeys, Option<ChannelConfig>) {
    let name = match raw.name {
        Some(n) => Some(n),
        None => Some(stem.to_owned()),
    }
    .and_then(|n| {
        check_channel_name(&n)
            .map_err(|m| ctx.problem("name", m))
            .ok()
            .map(|()| n)
    });
    let org_id = ctx
        .require("org_id", raw.org_id)
        .and_then(|id| OrgId::parse(&id).map_err(|m| ctx.problem("org_id", m)).ok());
    let product = ctx.require("product", raw.product);
    let authorization_context = ctx.text(
        "authorization_context",
        raw.authorization_context,
        MAX_IDENTIFIER_LEN,
    );
    let channel_address_identifier = ctx.text(
        "channel_address_identifier",
        raw.channel_address_identifier,
        MAX_IDENTIFIER_LEN,
    );
    let routing_owner = match raw.routing_owner {
        None if ctx.reported.contains("routing_owner") => None,
        other => Some(other.unwrap_or(RoutingOwner::Salesforce)),
    };
    let consent_owner = match raw.consent_owner {
        None if ctx.reported.contains("consent_owner") => None,
        other => Some(other.unwrap_or(ConsentOwner::Salesforce)),
    };
    if product == Some(Product::Messaging) {
        if routing_owner == Some(RoutingOwner::Partner) {
            ctx.problem(
                "routing_owner",
                "`Partner` routing needs product = \"CCaaS\"; BYOC for Messaging is routed by Salesforce",
            );
        }
        if consent_owner == Some(ConsentOwner::Partner) {
            ctx.problem(
                "consent_owner",
                "product = \"Messaging\" requires consent_owner = \"Salesforce\"",
            );
        }
    }

    let platform_event = platform_event(ctx, raw.platform_event);
    let features = Features {
        typing: raw.features.typing.unwrap_or(true),
        receipts: raw.features.receipts.unwrap_or(true),
        typing_quiet_time: humane(raw.features.typing_quiet_time, DEFAULT_TYPING_QUIET_TIME),
    };
    let session = session(ctx, raw.session);
    let capabilities = capabilities(ctx, raw.capabilities);
    let remove_previous_agent = raw
        .routing
        .as_ref()
        .and_then(|r| r.remove_previous_agent)
        .unwrap_or(false);
    let routing = match (routing_owner, raw.routing) {
        (Some(RoutingOwner::Partner), raw) => routing(ctx, raw.unwrap_or_default()),
        (Some(RoutingOwner::Salesforce), Some(_)) => {
            ctx.problem(
                "routing",
                "[routing] is used only with routing_owner = \"Partner\"; remove it or change routing_owner",
            );
            None
        }
        _ => None,
    };
    let routing_ok = routing_owner != Some(RoutingOwner::Partner) || routing.is_some();
    let provider = match ctx.require("provider", raw.provider) {
        Some(p) => provider(ctx, p),
        None => None,
    };
    let whatsapp_template = match raw.whatsapp_template {
        Some(t) => whatsapp_template(ctx, t, provider.as_ref()),
        None => Some(None),
    };

    let keys = ChannelKeys {
        name: name.clone(),
        address: channel_address_identifier.clone(),
        org_id: org_id.clone(),
    };
    if !routing_ok || !ctx.problems.is_empty() {
        return (keys, None);
    }
    let config = (|| {
        Some(ChannelConfig {
            name: name?,
            org_id: org_id?,
            product: product?,
            authorization_context: authorization_context?,
            channel_address_identifier: channel_address_identifier?,
            routing_owner: routing_owner?,
            consent_owner: consent_owner?,
            platform_event: platform_event?,
            features,
            session: session?,
            capabilities,
            routing: routing.flatten(),
            remove_previous_agent,
            provider: provider?,
            whatsapp_template: whatsapp_template?,
            file: PathBuf::new(),
            hash: String::new(),
        })
    })();
    (keys, config)
}

/// Most body parameters a [`WhatsappTemplate`] may name (WhatsApp's templates have a handful).
pub const MAX_TEMPLATE_PARAMETERS: usize = 10;

/// `[whatsapp_template]`: only 8x8 WhatsApp channels have the 24-hour window it serves;
/// `Some(None)` never happens here (the caller handles an absent table), `None` is a problem.
fn whatsapp_template(
    ctx: &mut FileCtx<'_>,
    raw: RawWhatsappTemplate,
    provider: Option<&Provider>,
) -> Option<Option<WhatsappTemplate>> {
    let errors_before = ctx.problems.len();
    match provider {
        Some(Provider::EightByEight(a)) if a.channel == EightByEightChannel::Whatsapp => {}
        Some(_) => ctx.problem(
            "whatsapp_template",
            "only 8x8 WhatsApp channels (provider.kind = \"8x8\", provider.channel = \"whatsapp\") have WhatsApp's 24-hour window; remove the table",
        ),
        None => {}
    }
    let name = ctx.require("whatsapp_template.name", raw.name);
    if let Some(name) = &name
        && (name.is_empty()
            || name.len() > 512
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    {
        ctx.problem(
            "whatsapp_template.name",
            format!(
                "`{name}` is not a WhatsApp template name (1 to 512 lower-case letters, digits and `_`)"
            ),
        );
    }
    let language = ctx.require("whatsapp_template.language", raw.language);
    if let Some(language) = &language {
        let mut parts = language.split('_');
        let lang = parts.next().unwrap_or_default();
        let region = parts.next();
        let valid = (2..=3).contains(&lang.len())
            && lang.bytes().all(|b| b.is_ascii_lowercase())
            && region.is_none_or(|r| {
                (2..=3).contains(&r.len())
                    && r.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            })
            && parts.next().is_none();
        if !valid {
            ctx.problem(
                "whatsapp_template.language",
                format!("`{language}` is not a WhatsApp language code (`en`, `en_US`, `pt_BR`, …)"),
            );
        }
    }
    let raw_parameters = raw.body_parameters.unwrap_or_else(|| vec!["text".into()]);
    if raw_parameters.len() > MAX_TEMPLATE_PARAMETERS {
        ctx.problem(
            "whatsapp_template.body_parameters",
            format!(
                "{} parameters; at most {MAX_TEMPLATE_PARAMETERS}",
                raw_parameters.len()
            ),
        );
    }
    let mut body_parameters = Vec::new();
    for (i, value) in raw_parameters.into_iter().enumerate() {
        let key = format!("whatsapp_template.body_parameters[{i}]");
        match value.as_str() {
            "text" => body_parameters.push(TemplateParameter::Text),
            literal if literal.starts_with('=') => {
                let text = &literal[1..];
                if text.trim().is_empty()
                    || text.contains(['\n', '\t'])
                    || text.contains("     ")
                    || text.chars().count() > MAX_TEMPLATE_PARAMETER_CHARS
                {
                    ctx.problem(
                        key,
                        format!(
                            "a fixed parameter must be 1 to {} characters without line breaks, tabs or more than 4 spaces in a row",
                            MAX_TEMPLATE_PARAMETER_CHARS
                        ),
                    );
                } else {
                    body_parameters.push(TemplateParameter::Literal(text.to_owned()));
                }
            }
            other => ctx.problem(
                key,
                format!("`{other}` is neither \"text\" (the rep's text) nor \"=…\" (a fixed text)"),
            ),
        }
    }
    if ctx.problems.len() > errors_before {
        return None;
    }
    Some(Some(WhatsappTemplate {
        name: name?,
        language: language?,
        body_parameters,
    }))
}

/// `[capabilities]`: known format names, `Text` among them, no repeats; a positive size.
fn capabilities(ctx: &mut FileCtx<'_>, raw: RawCapabilities) -> CapabilityLimits {
    if let Some(formats) = &raw.formats {
        for (i, format) in formats.iter().enumerate() {
            if !RENDERED_FORMATS.contains(&format.as_str()) {
                ctx.problem(
                    "capabilities.formats",
                    format!(
                        "`{format}` is not a format byocd renders; use some of {}",
                        RENDERED_FORMATS.join(", ")
                    ),
                );
            } else if formats[..i].contains(format) {
                ctx.problem(
                    "capabilities.formats",
                    format!("`{format}` is listed twice"),
                );
            }
        }
        if !formats.iter().any(|f| f == "Text") {
            ctx.problem(
                "capabilities.formats",
                "must include `Text`: every channel relays a rep's text",
            );
        }
    }
    if raw.max_attachment_kb == Some(0) {
        ctx.problem("capabilities.max_attachment_kb", "must be at least 1 (KiB)");
    }
    CapabilityLimits {
        formats: raw.formats,
        max_attachment_kb: raw.max_attachment_kb,
    }
}

fn platform_event(ctx: &mut FileCtx<'_>, raw: RawPlatformEvent) -> Option<PlatformEvent> {
    let name = ctx.require("platform_event.name", raw.name).and_then(|n| {
        check_api_name(&n, "__e", "platform event")
            .map_err(|m| ctx.problem("platform_event.name", m))
            .ok()
            .map(|()| n)
    });
    let mut field = |key: &str, value: Option<String>, default: &str| {
        let value = value.unwrap_or_else(|| default.to_owned());
        check_api_name(&value, "__c", "custom field")
            .map_err(|m| ctx.problem(key, m))
            .ok()
            .map(|()| value)
    };
    let event_type_field = field(
        "platform_event.event_type_field",
        raw.event_type_field,
        DEFAULT_EVENT_TYPE_FIELD,
    );
    let payload_field = field(
        "platform_event.payload_field",
        raw.payload_field,
        DEFAULT_PAYLOAD_FIELD,
    );
    Some(PlatformEvent {
        name: name?,
        event_type_field: event_type_field?,
        payload_field: payload_field?,
    })
}

fn session(ctx: &mut FileCtx<'_>, raw: RawSession) -> Option<SessionPolicy> {
    let inactivate_after = humane(raw.inactivate_after, DEFAULT_INACTIVATE_AFTER);
    let end_after = humane(raw.end_after, DEFAULT_END_AFTER);
    let sweep_cron = raw
        .sweep_cron
        .unwrap_or_else(|| DEFAULT_SWEEP_CRON.to_owned());
    let mut ok = true;
    if inactivate_after.is_zero() {
        ctx.problem("session.inactivate_after", "must be greater than 0");
        ok = false;
    }
    if end_after <= inactivate_after {
        ctx.problem(
            "session.end_after",
            format!(
                "must be longer than session.inactivate_after ({}), got {}",
                super::duration::format_duration(inactivate_after),
                super::duration::format_duration(end_after)
            ),
        );
        ok = false;
    }
    if let Err(m) = check_cron(&sweep_cron) {
        ctx.problem("session.sweep_cron", m);
        ok = false;
    }
    let mut opt_out_keywords = Vec::new();
    for keyword in raw.opt_out_keywords.unwrap_or_default() {
        let word = keyword.trim();
        if word.is_empty() || word.chars().count() > 32 || word.chars().any(char::is_whitespace) {
            ctx.problem(
                "session.opt_out_keywords",
                format!("`{keyword}` must be one word of 1 to 32 characters"),
            );
            ok = false;
        } else if !opt_out_keywords.contains(&word.to_uppercase()) {
            opt_out_keywords.push(word.to_uppercase());
        }
    }
    ok.then_some(SessionPolicy {
        inactivate_after,
        end_after,
        sweep_cron,
        opt_out_keywords,
    })
}

/// `Some(policy)` when valid; `None` after reporting problems.
fn routing(ctx: &mut FileCtx<'_>, raw: RawRouting) -> Option<Option<RoutingPolicy>> {
    let kind = match raw.policy {
        Some(kind) => kind,
        None if ctx.reported.contains("routing.policy") => return None,
        None => PolicyKind::ChannelDefault,
    };
    let what = format!("policy \"{}\"", kind.name());
    let errors_before = ctx.problems.len();
    let policy = match kind {
        PolicyKind::ChannelDefault => {
            ctx.unused(
                "routing",
                &what,
                &[
                    ("queue_id", raw.queue_id.is_some()),
                    ("flow_id", raw.flow_id.is_some()),
                    ("fallback_queue_id", raw.fallback_queue_id.is_some()),
                    ("attributes", raw.attributes.is_some()),
                    ("agents", raw.agents.is_some()),
                    ("capacity_weight", raw.capacity_weight.is_some()),
                    ("capacity_percentage", raw.capacity_percentage.is_some()),
                    ("max_attempts", raw.max_attempts.is_some()),
                    ("offer_timeout", raw.offer_timeout.is_some()),
                ],
            );
            Some(RoutingPolicy::ChannelDefault)
        }
        PolicyKind::Queue => {
            ctx.unused(
                "routing",
                &what,
                &[
                    ("flow_id", raw.flow_id.is_some()),
                    ("fallback_queue_id", raw.fallback_queue_id.is_some()),
                    ("attributes", raw.attributes.is_some()),
                    ("agents", raw.agents.is_some()),
                    ("capacity_weight", raw.capacity_weight.is_some()),
                    ("capacity_percentage", raw.capacity_percentage.is_some()),
                    ("max_attempts", raw.max_attempts.is_some()),
                    ("offer_timeout", raw.offer_timeout.is_some()),
                ],
            );
            ctx.salesforce_id("routing.queue_id", raw.queue_id)
                .map(|queue_id| RoutingPolicy::Queue { queue_id })
        }
        PolicyKind::Flow => {
            ctx.unused(
                "routing",
                &what,
                &[
                    ("queue_id", raw.queue_id.is_some()),
                    ("agents", raw.agents.is_some()),
                    ("capacity_weight", raw.capacity_weight.is_some()),
                    ("capacity_percentage", raw.capacity_percentage.is_some()),
                    ("max_attempts", raw.max_attempts.is_some()),
                    ("offer_timeout", raw.offer_timeout.is_some()),
                ],
            );
            let flow_id = ctx.salesforce_id("routing.flow_id", raw.flow_id);
            let fallback_queue_id =
                ctx.salesforce_id("routing.fallback_queue_id", raw.fallback_queue_id);
            let attributes = raw.attributes.unwrap_or_default();
            for (name, source) in &attributes {
                if name.trim().is_empty() || source.trim().is_empty() {
                    ctx.problem(
                        format!("routing.attributes.{name}"),
                        "attribute names and source expressions must not be empty",
                    );
                }
            }
            match (flow_id, fallback_queue_id) {
                (Some(flow_id), Some(fallback_queue_id)) => Some(RoutingPolicy::Flow {
                    flow_id,
                    fallback_queue_id,
                    attributes,
                }),
                _ => None,
            }
        }
        PolicyKind::Agents => {
            ctx.unused(
                "routing",
                &what,
                &[
                    ("queue_id", raw.queue_id.is_some()),
                    ("flow_id", raw.flow_id.is_some()),
                    ("attributes", raw.attributes.is_some()),
                ],
            );
            let mut agents = Vec::new();
            let raw_agents = ctx
                .require("routing.agents", raw.agents)
                .unwrap_or_default();
            if raw_agents.is_empty() && !ctx.reported.contains("routing.agents") {
                ctx.problem("routing.agents", "must name at least one agent");
            }
            let mut seen = BTreeSet::new();
            for (i, agent) in raw_agents.into_iter().enumerate() {
                let key = format!("routing.agents[{i}]");
                let user_id = ctx.salesforce_id(&format!("{key}.user_id"), agent.user_id);
                let capacity =
                    ctx.positive(&format!("{key}.capacity"), agent.capacity.unwrap_or(1));
                if let Some(id) = &user_id
                    && !seen.insert(id.clone())
                {
                    ctx.problem(
                        format!("{key}.user_id"),
                        format!("agent `{id}` is listed twice"),
                    );
                }
                if let (Some(user_id), Some(capacity)) = (user_id, capacity) {
                    agents.push(PoolAgent { user_id, capacity });
                }
            }
            let capacity = match (raw.capacity_weight, raw.capacity_percentage) {
                (Some(_), Some(_)) => {
                    ctx.problem(
                        "routing.capacity_percentage",
                        "give capacity_weight or capacity_percentage, not both",
                    );
                    None
                }
                (Some(w), None) if !(w >= 0.0 && w.is_finite()) => {
                    ctx.problem("routing.capacity_weight", "must be 0 or more");
                    None
                }
                (None, Some(p)) if !(p > 0.0 && p <= 100.0) => {
                    ctx.problem(
                        "routing.capacity_percentage",
                        "must be more than 0 and at most 100",
                    );
                    None
                }
                (Some(w), None) => Some(WorkCapacity::Weight(w)),
                (None, Some(p)) => Some(WorkCapacity::Percentage(p)),
                (None, None) => None,
            };
            let max_attempts = ctx.positive(
                "routing.max_attempts",
                raw.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            );
            let fallback_queue_id = match raw.fallback_queue_id {
                Some(id) => Some(ctx.salesforce_id("routing.fallback_queue_id", Some(id))?),
                None => None,
            };
            let offer_timeout = ctx.positive(
                "routing.offer_timeout",
                humane(raw.offer_timeout, DEFAULT_OFFER_TIMEOUT),
            );
            match (max_attempts, offer_timeout) {
                (Some(max_attempts), Some(offer_timeout)) => Some(RoutingPolicy::Agents {
                    agents,
                    capacity,
                    max_attempts,
                    fallback_queue_id,
                    offer_timeout,
                }),
                _ => None,
            }
        }
    };
    if ctx.problems.len() > errors_before {
        return None;
    }
    policy.map(Some)
}

fn provider(ctx: &mut FileCtx<'_>, raw: RawProvider) -> Option<Provider> {
    let kind = ctx.require("provider.kind", raw.kind)?;
    let what = format!("provider kind \"{}\"", kind.name());
    match kind {
        ProviderKind::EightByEight => {
            ctx.unused(
                "provider",
                &what,
                &[
                    ("sid", raw.sid.is_some()),
                    ("agent_id", raw.agent_id.is_some()),
                    ("basic_username", raw.basic_username.is_some()),
                    ("basic_password_file", raw.basic_password_file.is_some()),
                ],
            );
            let sub_account_id = ctx
                .require("provider.sub_account_id", raw.sub_account_id)
                .and_then(|id| {
                    check_sub_account_id(&id)
                        .map_err(|m| ctx.problem("provider.sub_account_id", m))
                        .ok()
                        .map(|()| id)
                });
            let channel = ctx.require("provider.channel", raw.channel);
            let base_url = ctx.url(
                "provider.base_url",
                raw.base_url,
                Some(DEFAULT_8X8_BASE_URL),
            );
            let api_key = ctx.secret("provider.api_key_file", raw.api_key_file);
            let webhook_authorization = webhook_authentication(
                ctx,
                raw.webhook_authentication,
                raw.webhook_authorization_file,
            );
            let mut networks = Vec::new();
            let mut networks_ok = true;
            for (i, text) in raw
                .webhook_allow_networks
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                match text.parse::<IpNetwork>() {
                    Ok(n) => networks.push(n),
                    Err(m) => {
                        ctx.problem(format!("provider.webhook_allow_networks[{i}]"), m);
                        networks_ok = false;
                    }
                }
            }
            networks_ok.then_some(())?;
            let mut media_hosts = Vec::new();
            for (i, host) in raw.media_hosts.unwrap_or_default().into_iter().enumerate() {
                let host = host.trim().to_ascii_lowercase();
                let name = host.strip_prefix("*.").unwrap_or(&host);
                let valid = !name.is_empty()
                    && name.split('.').all(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if valid {
                    media_hosts.push(host);
                } else {
                    ctx.problem(
                        format!("provider.media_hosts[{i}]"),
                        format!("`{host}` is not a host name or `*.domain`"),
                    );
                    networks_ok = false;
                }
            }
            networks_ok.then_some(())?;
            Some(Provider::EightByEight(EightByEightAccount {
                sub_account_id: sub_account_id?,
                channel: channel?,
                base_url: base_url?,
                api_key: api_key?,
                webhook_authorization: webhook_authorization?,
                webhook_allow_networks: networks,
                media_hosts,
            }))
        }
        ProviderKind::Kaleyra => {
            ctx.unused(
                "provider",
                &what,
                &[
                    ("sub_account_id", raw.sub_account_id.is_some()),
                    ("channel", raw.channel.is_some()),
                    (
                        "webhook_allow_networks",
                        raw.webhook_allow_networks.is_some(),
                    ),
                    ("media_hosts", raw.media_hosts.is_some()),
                ],
            );
            let sid = ctx.text("provider.sid", raw.sid, MAX_IDENTIFIER_LEN);
            let base_url = ctx.url("provider.base_url", raw.base_url, None);
            let api_key = ctx.secret("provider.api_key_file", raw.api_key_file);
            let agent_id = ctx.text("provider.agent_id", raw.agent_id, MAX_IDENTIFIER_LEN);
            let basic = match (raw.basic_username, raw.basic_password_file) {
                (Some(username), Some(password)) => ctx
                    .secret("provider.basic_password_file", Some(password))
                    .map(|password| Some(BasicCredentials { username, password })),
                (None, None) => Some(None),
                (Some(_), None) => {
                    ctx.problem(
                        "provider.basic_password_file",
                        "required when basic_username is set",
                    );
                    None
                }
                (None, Some(_)) => {
                    ctx.problem(
                        "provider.basic_username",
                        "required when basic_password_file is set",
                    );
                    None
                }
            };
            let webhook_authorization = webhook_authentication(
                ctx,
                raw.webhook_authentication,
                raw.webhook_authorization_file,
            );
            Some(Provider::Kaleyra(KaleyraAccount {
                sid: sid?,
                base_url: base_url?,
                api_key: api_key?,
                agent_id: agent_id?,
                basic: basic?,
                webhook_authorization: webhook_authorization?,
            }))
        }
    }
}

/// `provider.webhook_authentication` and `provider.webhook_authorization_file`: every channel
/// authenticates its webhooks with a secret of at least [`MIN_WEBHOOK_SECRET_CHARS`]
/// characters, unless it says explicitly that a proxy does.
fn webhook_authentication(
    ctx: &mut FileCtx<'_>,
    kind: Option<RawWebhookAuthentication>,
    file: Option<String>,
) -> Option<WebhookAuthentication> {
    const FILE_KEY: &str = "provider.webhook_authorization_file";
    match kind.unwrap_or(RawWebhookAuthentication::Authorization) {
        RawWebhookAuthentication::None => {
            if file.is_some() {
                ctx.problem(
                    FILE_KEY,
                    "is not used when provider.webhook_authentication = \"none\"; remove one of the two",
                );
                return None;
            }
            Some(WebhookAuthentication::None)
        }
        RawWebhookAuthentication::Authorization => {
            let Some(reference) = file else {
                if !ctx.reported.contains(FILE_KEY) {
                    ctx.problem(
                        FILE_KEY,
                        format!(
                            "missing required key: webhooks are authenticated on every channel; point it at a file \
                             holding the exact `Authorization` value the provider sends (at least \
                             {MIN_WEBHOOK_SECRET_CHARS} characters, e.g. `Bearer ` and `openssl rand -hex 32`), \
                             or set provider.webhook_authentication = \"none\" if a proxy in front of byocd \
                             authenticates them"
                        ),
                    );
                }
                return None;
            };
            let secret = ctx.optional_secret(FILE_KEY, Some(reference))?;
            let chars = secret.expose().chars().count();
            // Left unread (admin commands): its length is not known, and not needed.
            if chars < MIN_WEBHOOK_SECRET_CHARS && !ctx.unread.contains(FILE_KEY) {
                ctx.problem(
                    FILE_KEY,
                    format!(
                        "{} holds {chars} character(s); a webhook `Authorization` value needs at least \
                         {MIN_WEBHOOK_SECRET_CHARS} (a long random one, e.g. `Bearer ` and \
                         `openssl rand -hex 32`), set the same on the provider's side",
                        secret.path().display()
                    ),
                );
                return None;
            }
            Some(WebhookAuthentication::Authorization(secret))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_account_ids_follow_the_8x8_pattern() {
        for ok in ["abc", "Acme_WA-01.x&y", &"a".repeat(50)] {
            assert!(check_sub_account_id(ok).is_ok(), "{ok}");
        }
        assert!(check_sub_account_id("ab").unwrap_err().contains("3 to 50"));
        assert!(
            check_sub_account_id(&"a".repeat(51))
                .unwrap_err()
                .contains("got 51")
        );
        assert!(
            check_sub_account_id("acme wa")
                .unwrap_err()
                .contains("` ` is not allowed")
        );
        assert!(
            check_sub_account_id("acmé")
                .unwrap_err()
                .contains("`é` is not allowed")
        );
    }

    #[test]
    fn cron_needs_six_valid_fields() {
        assert!(check_cron(DEFAULT_SWEEP_CRON).is_ok());
        assert!(check_cron("*/30 * * * * *").is_ok());
        assert!(check_cron("* * * * *").unwrap_err().contains("got 5"));
        assert!(
            check_cron("0 61 * * * *")
                .unwrap_err()
                .contains("not a valid cron")
        );
    }

    #[test]
    fn api_names_need_their_suffix() {
        assert!(check_api_name("Acme_Event__e", "__e", "platform event").is_ok());
        assert!(check_api_name("ns__Acme_Event__e", "__e", "platform event").is_ok());
        assert!(check_api_name("AcmeEvent", "__e", "platform event").is_err());
        assert!(check_api_name("__e", "__e", "platform event").is_err());
        assert!(check_api_name("EventType__c", "__c", "custom field").is_ok());
    }
}
