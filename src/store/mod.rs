//! The state store: one [`Store`] trait of use-case methods, implemented for SQLite (embedded
//! default, one daemon per file) and PostgreSQL (several replicas on one database).
//!
//! The backend is chosen by the URL scheme (`sqlite:` or `postgres:`). Each backend owns its
//! migrations (`migrations/sqlite`, `migrations/postgres`), kept in lockstep: the same tables,
//! columns and auditor views, in each backend's native types. No SQL lives outside this module.
//!
//! Every method that changes state writes its audit rows in the same transaction, so an auditor
//! never sees a change without its reason. The audit log itself is append-only: this API has no
//! way to change or delete an audit row, and both databases refuse to (triggers).

pub mod admin;
pub mod job;
mod postgres;
pub mod relay;
pub mod tx;

/// The relay's claim statement of each backend, for tests that check its plan.
pub fn claim_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => sqlite::CLAIM_SQL,
        Backend::Postgres => postgres::CLAIM_SQL,
    }
}

/// The purge of finished outbox rows of each backend, for tests that check its plan.
pub fn purge_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => sqlite::PURGE_SQL,
        Backend::Postgres => postgres::PURGE_SQL,
    }
}

/// The retention purges of each backend (quarantine, dedupe keys, ended sessions' routings, ended
/// sessions, expired hosted files), for tests that check their plans.
pub fn retention_purge_sql(backend: Backend) -> [&'static str; 5] {
    match backend {
        Backend::Sqlite => [
            sqlite::PURGE_QUARANTINE_SQL,
            sqlite::PURGE_DEDUPE_SQL,
            sqlite::PURGE_ENDED_ROUTINGS_SQL,
            sqlite::PURGE_ENDED_SESSIONS_SQL,
            sqlite::PURGE_HOSTED_FILES_SQL,
        ],
        Backend::Postgres => [
            postgres::PURGE_QUARANTINE_SQL,
            postgres::PURGE_DEDUPE_SQL,
            postgres::PURGE_ENDED_ROUTINGS_SQL,
            postgres::PURGE_ENDED_SESSIONS_SQL,
            postgres::PURGE_HOSTED_FILES_SQL,
        ],
    }
}

/// The intake's end-user lookup of each backend (one statement for a group's end users), for
/// tests and the benchmark that check its plan.
pub fn known_end_users_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => sqlite::KNOWN_END_USERS_SQL,
        Backend::Postgres => postgres::KNOWN_END_USERS_SQL,
    }
}

/// The statement that brings waiting typing-stopped rows forward to now, of each backend, for
/// tests that check its plan.
pub fn typing_stop_now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => sqlite::TYPING_STOP_NOW_SQL,
        Backend::Postgres => postgres::TYPING_STOP_NOW_SQL,
    }
}

/// SQLite's statement keeping sessions' work items, for the test that checks its plan.
pub fn sqlite_set_work_items_sql() -> &'static str {
    sqlite::SET_WORK_ITEMS_SQL
}

/// The statements that settle a group of delivered rows, of each backend — marking them done,
/// claiming their conversations' next rows, releasing rows of a run never tried — for tests
/// that check their plans.
pub fn settle_sql(backend: Backend) -> [&'static str; 3] {
    match backend {
        Backend::Sqlite => [
            sqlite::DONE_SQL,
            sqlite::CLAIM_NEXT_OF_KEYS_SQL,
            sqlite::RELEASE_SQL,
        ],
        Backend::Postgres => [
            postgres::DONE_SQL,
            postgres::CLAIM_NEXT_OF_KEYS_SQL,
            postgres::RELEASE_SQL,
        ],
    }
}
mod shared;
mod sqlite;

use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

pub use self::{
    admin::{EndUserRecord, RoutedTo, SessionDetail, SessionFilter, SessionSummary},
    postgres::PgStore,
    relay::{
        ChoicePrompt, Completed, Completion, ConversationContext, Cursor, Delivered, Direction,
        EndUserIdentity, FollowUp, IntakeBatch, IntakeEvent, IntakeReport, IntakeWork, Lane,
        NewRouting, OutboundBatch, OutboundIntake, OutboundWork, OutboxFilter, OutboxItem,
        RoutingRecord, SweepReport,
    },
    sqlite::SqliteStore,
};
use crate::clock::{SharedClock, SystemClock};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("database url must start with sqlite: or postgres:, got `{0}`")]
    UnsupportedUrl(String),
    /// Another daemon holds the SQLite database.
    #[error(
        "another byocd is already using the SQLite database {db} (its lock file {lock} is held); \
         stop that daemon first, or use PostgreSQL to run several replicas"
    )]
    Locked {
        /// The database file.
        db: String,
        /// The lock file beside it.
        lock: String,
    },
    /// The database could not be reached or refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// An I/O error around the database file.
    #[error("{0}")]
    Io(String),
    /// A concurrent transaction wrote the same row first (an end user or conversation looked
    /// up as new): nothing of this transaction is kept, and doing it again finds that row.
    #[error("a concurrent transaction created the same {0} first")]
    Raced(&'static str),
}

impl StoreError {
    /// Whether the database itself could not be used (no connection within the acquire
    /// timeout, a broken connection, a server shutting down, starting or gone), rather than
    /// refusing this statement: anything else tried now would fail alike.
    pub fn is_database_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                matches!(&*code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
            }),
            _ => false,
        }
    }

    /// Whether the database refused a write because its disk (or its size limit) is full:
    /// SQLite's `SQLITE_FULL` (13), PostgreSQL's `disk_full` (53100). Nothing of the
    /// transaction was kept.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("13" | "53100"))
                    || e.message().contains("database or disk is full")
            }
            _ => false,
        }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the pool (PostgreSQL) or in the read pool (SQLite; writes use one).
    pub max_connections: u32,
    /// How long to wait for a connection before failing.
    pub acquire_timeout: Duration,
    /// Password for PostgreSQL, when it is not in the URL.
    pub password: Option<secrecy::SecretString>,
    /// The clock used to stamp rows.
    pub clock: SharedClock,
    /// Open for reading only, beside a running daemon: SQLite takes no lock file and opens no
    /// writer; PostgreSQL sessions start every transaction read-only; writes fail.
    pub read_only: bool,
    /// Take the SQLite lock file that keeps a second daemon off the database. Admin commands
    /// that write beside a running daemon open without it; SQLite's own locking keeps their
    /// short transactions safe.
    pub exclusive: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            password: None,
            clock: std::sync::Arc::new(SystemClock),
            read_only: false,
            exclusive: true,
        }
    }
}

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend a database URL selects.
    pub fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// A URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Where the schema stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaStatus {
    /// The newest migration applied to the database, if any.
    pub applied: Option<i64>,
    /// The newest migration this binary knows.
    pub expected: i64,
}

impl SchemaStatus {
    /// True when the database has exactly the schema this binary expects.
    pub fn is_current(&self) -> bool {
        self.applied == Some(self.expected)
    }
}

/// A migration applied by [`Store::migrate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
}

/// An org as the configuration defines it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrgRecord {
    /// 15-character Salesforce org id.
    pub org_id: String,
    /// A label for people.
    pub name: String,
    /// Hash of the org's settings, to notice changes.
    pub content_hash: String,
    /// The settings, with secrets shown only by reference.
    pub settings: Value,
}

/// A channel as its configuration file defines it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRecord {
    /// Channel name (unique).
    pub name: String,
    /// The org it belongs to.
    pub org_id: String,
    /// `Messaging` or `CCaaS`.
    pub product: String,
    /// `8x8` or `kaleyra`.
    pub provider: String,
    /// Salesforce `channelAddressIdentifier`.
    pub channel_address_identifier: String,
    /// SHA-256 of the channel file.
    pub content_hash: String,
    /// The settings, with secrets shown only by reference.
    pub settings: Value,
}

/// What a configuration sync changed, for one kind of record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Names new to the database.
    pub added: Vec<String>,
    /// Names whose content changed (or that came back after being retired).
    pub changed: Vec<String>,
    /// Names no longer configured; kept with their history, marked retired.
    pub retired: Vec<String>,
    /// How many were already up to date.
    pub unchanged: usize,
}

/// What [`Store::sync_config`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Orgs.
    pub orgs: Changes,
    /// Channels.
    pub channels: Changes,
}

/// A recorded channel pause or org disablement ([`Store::lift_recorded_pauses`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RecordedPause {
    /// A channel's pause.
    Channel {
        /// The channel.
        name: String,
        /// Its org.
        org_id: String,
        /// The code and error that paused it, if recorded.
        reason: Option<String>,
    },
    /// An org's disablement.
    Org {
        /// The org.
        org_id: String,
        /// The code and error that disabled it.
        reason: Option<String>,
    },
}

impl RecordedPause {
    /// The channel's name or the org's id.
    pub fn name(&self) -> &str {
        match self {
            Self::Channel { name, .. } => name,
            Self::Org { org_id, .. } => org_id,
        }
    }
}

/// A channel as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredChannel {
    /// Channel name.
    pub name: String,
    /// Its org.
    pub org_id: String,
    /// `Messaging` or `CCaaS`.
    pub product: String,
    /// `8x8` or `kaleyra`.
    pub provider: String,
    /// Salesforce `channelAddressIdentifier`.
    pub channel_address_identifier: String,
    /// SHA-256 of the file it was last synced from.
    pub content_hash: String,
    /// Its settings (secrets by reference only).
    pub settings: Value,
    /// When it was first synced.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was retired, if it was.
    pub retired_at: Option<DateTime<Utc>>,
    /// Paused (by the relay's gate, `pause_channel`) with the next probe at this time.
    pub paused_until: Option<DateTime<Utc>>,
    /// Why it is paused: the code and error that paused it.
    pub pause_reason: Option<String>,
}

/// An org as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOrg {
    /// 15-character org id.
    pub org_id: String,
    /// Its label.
    pub name: String,
    /// Hash of its settings when last synced.
    pub content_hash: String,
    /// When it was first synced.
    pub created_at: DateTime<Utc>,
    /// When it was retired, if it was.
    pub retired_at: Option<DateTime<Utc>>,
    /// Token minting paused until this time, if it is (it failed).
    pub paused_until: Option<DateTime<Utc>>,
    /// Why it is paused. Set without `paused_until`: the relay disabled the org (`disable_org`)
    /// until the configuration is reloaded.
    pub pause_reason: Option<String>,
}

impl StoredOrg {
    /// The relay disabled the org until the configuration is reloaded.
    pub fn disabled(&self) -> bool {
        self.paused_until.is_none() && self.pause_reason.is_some()
    }
}

/// A class of stored data the periodic purge deletes after its retention
/// ([`Store::purge_expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeClass {
    /// Outbox rows delivered or discarded, by `finished_at`.
    FinishedOutbox,
    /// Quarantined webhook bodies, by `received_at`.
    Quarantine,
    /// Dedupe keys of accepted events, by `received_at`.
    Dedupe,
    /// Ended sessions and their routings, by `ended_at` (a session an outbox row still refers
    /// to stays).
    EndedSessions,
    /// Hosted files, by `expires_at` (`before` is now: they are deleted once expired).
    HostedFiles,
}

/// The rows of one end user (or several: the same person on several channels) that
/// [`Store::erase_end_users`] deleted, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// byocd's internal ids of the end users erased (opaque; never a number).
    pub end_user_ids: Vec<uuid::Uuid>,
    /// `end_users` rows.
    pub end_users: u64,
    /// `conversations` rows.
    pub conversations: u64,
    /// `sessions` rows.
    pub sessions: u64,
    /// `routings` rows of those sessions.
    pub routings: u64,
    /// `outbox` rows (of their conversations, or naming them), unfinished or finished.
    pub outbox: u64,
    /// `message_map` rows of their conversations.
    pub message_map: u64,
    /// `quarantine` bodies that contain one of their identifiers.
    pub quarantine: u64,
    /// Audit rows written before this release whose text still contains one of their
    /// identifiers: the audit log is append-only, so these are counted, not changed.
    pub audit_mentions: u64,
    /// The audit row that records the erasure.
    pub audit_id: Option<i64>,
}

/// A webhook body that could not be parsed, to keep verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuarantine {
    /// The channel whose webhook it came to.
    pub channel: String,
    /// `8x8` or `kaleyra`.
    pub provider: String,
    /// Why it could not be read.
    pub reason: String,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

/// A quarantined webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedWebhook {
    /// Its id.
    pub id: i64,
    /// The channel.
    pub channel: String,
    /// The provider.
    pub provider: String,
    /// Why it was quarantined.
    pub reason: String,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// The body, byte for byte.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Its size in bytes.
    pub size: usize,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// An access token to store. The token is already sealed: the store never sees plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedToken {
    /// The org.
    pub org_id: String,
    /// `crypto::TokenKey::seal` output.
    pub sealed_token: String,
    /// Id of the key that sealed it.
    pub key_id: String,
    /// `instance_url` from the token response.
    pub instance_url: Option<String>,
}

/// A stored access token, still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The sealed token and its key id.
    pub token: SealedToken,
    /// When it was minted.
    pub minted_at: DateTime<Utc>,
}

/// How serious an audit row is. `Alert` rows are the ones an operator must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A normal event.
    Info,
    /// Something unusual that byocd handled.
    Warning,
    /// A failure byocd handled by a remediation.
    Error,
    /// A failure an operator must look at.
    Alert,
}

impl Severity {
    /// The value stored in the `severity` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Alert => "alert",
        }
    }

    /// Parses a stored value.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "info" => Ok(Self::Info),
            "warning" => Ok(Self::Warning),
            "error" => Ok(Self::Error),
            "alert" => Ok(Self::Alert),
            other => Err(StoreError::Corrupt(format!("unknown severity `{other}`"))),
        }
    }
}

/// A new audit row. `detail` must never hold a secret or a message body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// What happened, dotted (`channel.added`, `token.minted`, `isa.call`, …).
    pub kind: String,
    /// How serious.
    pub severity: Severity,
    /// Who did it: `daemon`, `admin`, `salesforce`, `provider`.
    pub actor: String,
    /// The org concerned.
    pub org_id: Option<String>,
    /// The channel concerned.
    pub channel: Option<String>,
    /// The conversation concerned.
    pub conversation_id: Option<uuid::Uuid>,
    /// The session concerned.
    pub session_id: Option<uuid::Uuid>,
    /// One line for people.
    pub message: String,
    /// Structured facts (ids, codes, latencies, hashes).
    pub detail: Value,
}

impl AuditEntry {
    /// An `info` entry by the daemon with no subject; set the rest with the builder methods.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            severity: Severity::Info,
            actor: "daemon".into(),
            org_id: None,
            channel: None,
            conversation_id: None,
            session_id: None,
            message: message.into(),
            detail: Value::Object(Default::default()),
        }
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the actor.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Sets the org.
    pub fn org(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    /// Sets the channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Sets the conversation.
    pub fn conversation(mut self, id: uuid::Uuid) -> Self {
        self.conversation_id = Some(id);
        self
    }

    /// Sets the session.
    pub fn session(mut self, id: uuid::Uuid) -> Self {
        self.session_id = Some(id);
        self
    }

    /// Sets the structured detail.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    /// Position in the log; increases with time.
    pub id: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which audit rows to read. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this kind, or kinds under it (`token` matches `token.minted`).
    pub kind: Option<String>,
    /// Only this org.
    pub org_id: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Only this conversation.
    pub conversation_id: Option<uuid::Uuid>,
    /// Only this session.
    pub session_id: Option<uuid::Uuid>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows (newest last); 0 means the default of 1,000.
    pub limit: u32,
}

/// One link of the audit trail's hash chain: the seal of one audit row (`audit_seal`),
/// appended by the sealer after the row committed (`lifecycle::seal`,
/// `domain::audit_chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSeal {
    /// The audit row it seals.
    pub audit_id: i64,
    /// The audit row the previous seal sealed; 0 for the first seal.
    pub prev_audit_id: i64,
    /// SHA-256 (hex) of the previous seal's hash and every column of the row.
    pub hash: String,
    /// When it was sealed.
    pub sealed_at: DateTime<Utc>,
}

/// One id of the audit trail as a walk of the chain sees it ([`Store::audit_chain`]): its row,
/// its seal, or both. Both come from one statement, so they are seen at the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEntry {
    /// The id.
    pub id: i64,
    /// The audit row with this id, if one exists.
    pub row: Option<AuditRow>,
    /// Its seal, if one exists.
    pub seal: Option<AuditSeal>,
}

/// How far the sealer may seal, once every transaction in `in_flight` has ended
/// ([`Store::audit_seal_horizon`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealHorizon {
    /// The highest audit id that may be sealed.
    pub up_to: i64,
    /// PostgreSQL: the transactions (virtual transaction ids) that were inserting audit rows
    /// when the horizon was taken; SQLite: none.
    pub in_flight: Vec<String>,
}

/// Computes a seal's hash from the previous seal (`None` for the first) and the row
/// (`domain::audit_chain::link`): the store appends seals, the chain's rule lives outside it.
pub type ChainLink = dyn Fn(Option<&AuditSeal>, &AuditRow) -> String + Sync;

/// Outbox and routing figures for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreGauges {
    /// (kind, status, rows, oldest created_at) of pending and leased rows.
    pub outbox: Vec<(String, String, i64, DateTime<Utc>)>,
    /// (status, routings).
    pub routings: Vec<(String, i64)>,
}

/// Rows [`Store::audit`] returns when the filter gives no limit.
pub const DEFAULT_AUDIT_LIMIT: u32 = 1_000;

impl AuditFilter {
    fn effective_limit(&self) -> i64 {
        i64::from(if self.limit == 0 {
            DEFAULT_AUDIT_LIMIT
        } else {
            self.limit
        })
    }

    /// The `LIKE` pattern for child kinds of `kind`.
    fn kind_prefix(&self) -> Option<String> {
        self.kind.as_ref().map(|k| format!("{k}.%"))
    }
}

/// The use cases of the state store. Both backends implement all of it, and the same test suite
/// runs against both.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Applies the migrations this binary carries that the database lacks (PostgreSQL: under the
    /// migrator's advisory lock, so replicas may start together). Returns the ones applied now;
    /// running it again applies nothing.
    async fn migrate(&self) -> Result<Vec<AppliedMigration>>;

    /// Which migration the database is at, and which this binary expects.
    async fn schema_status(&self) -> Result<SchemaStatus>;

    /// One round trip to the database.
    async fn ping(&self) -> Result<()>;

    /// Makes the stored orgs and channels match the configuration: adds new ones, updates
    /// changed ones (by content hash), retires those no longer configured (history kept), and
    /// writes one audit row per change — all in one transaction.
    async fn sync_config(
        &self,
        orgs: &[OrgRecord],
        channels: &[ChannelRecord],
    ) -> Result<SyncReport>;

    /// Clears every recorded channel pause and org disablement (a token pause with its own
    /// deadline stays), with the audit row `audit` makes of each, in one transaction. Returns
    /// what it cleared: channels by name, then orgs by id.
    async fn lift_recorded_pauses(
        &self,
        audit: &(dyn Fn(&RecordedPause) -> AuditEntry + Sync),
    ) -> Result<Vec<RecordedPause>>;

    /// Every stored channel, retired ones included, by name.
    async fn channels(&self) -> Result<Vec<StoredChannel>>;

    /// Every stored org, retired ones included, by org id.
    async fn orgs(&self) -> Result<Vec<StoredOrg>>;

    /// Stores (replaces) an org's sealed access token.
    async fn save_token(&self, token: &SealedToken) -> Result<()>;

    /// The org's sealed access token, if one is stored.
    async fn token(&self, org_id: &str) -> Result<Option<StoredToken>>;

    /// Forgets the org's token (it was rejected); returns whether one was stored.
    async fn discard_token(&self, org_id: &str) -> Result<bool>;

    /// Pauses an org's token minting until a time, with the reason, or lifts the pause with
    /// `None`. An org the relay disabled ([`Store::set_org_disabled`]) stays so. Returns whether
    /// the org is stored.
    async fn set_org_pause(
        &self,
        org_id: &str,
        pause: Option<(DateTime<Utc>, String)>,
    ) -> Result<bool>;

    /// Records that the relay disabled an org until the configuration is reloaded (`reason`:
    /// the code and error), or lifts that with `None`, so admin commands in another process see
    /// it. Returns whether the org's row changed.
    async fn set_org_disabled(&self, org_id: &str, reason: Option<&str>) -> Result<bool>;

    /// Records a channel's pause as the relay's gate decided it, so admin commands in another
    /// process see it: `until` is when the next probe may go, `reason` the code and error that
    /// paused it (`None` keeps the recorded reason: a probe only moved the next probe). `until`
    /// = `None` lifts the pause. Returns whether the channel is stored.
    async fn set_channel_pause(
        &self,
        channel: &str,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Result<bool>;

    /// Sessions for admins, most recently active first, each with its latest routing.
    async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>>;

    /// One session with its conversation and end user.
    async fn session(&self, id: uuid::Uuid) -> Result<Option<SessionDetail>>;

    /// The session whose Salesforce MessagingSession id (its work item id) is `work_item_id`, in
    /// its 15-character form: the session's own, else one a routing of the session recorded.
    async fn session_by_work_item(&self, work_item_id: &str) -> Result<Option<uuid::Uuid>>;

    /// Keeps an unparseable webhook body verbatim, with an audit row, in one transaction;
    /// returns its id.
    async fn quarantine(&self, item: &NewQuarantine) -> Result<i64>;

    /// Quarantined webhooks, newest first, optionally of one channel.
    async fn quarantined(
        &self,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QuarantinedWebhook>>;

    /// One quarantined webhook.
    async fn quarantined_item(&self, id: i64) -> Result<Option<QuarantinedWebhook>>;

    /// Opens a write transaction of plain data operations ([`tx::Tx`]), for the intake
    /// (src/domain/), which decides what webhooks and platform events become. Every row it
    /// writes is stamped with the store clock's time at this call.
    async fn transaction(&self) -> Result<tx::Tx>;

    /// Moves a cursor without events (keep-alives carry the latest replay id).
    async fn advance_cursor(&self, org_id: &str, topic: &str, replay_id: &[u8]) -> Result<()>;

    /// The stored position of a subscription.
    async fn cursor(&self, org_id: &str, topic: &str) -> Result<Option<Cursor>>;

    /// Claims up to `limit` due outbox rows for `owner` until `lease` has passed: pending rows
    /// whose time has come, and leased rows whose lease expired (their worker died), skipping
    /// any row with an earlier unfinished row of the same ordering key. Highest priority first,
    /// then oldest.
    async fn claim_outbox(
        &self,
        owner: &str,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxItem>>;

    /// Batched settling: [`Store::complete_outbox`] for several rows in **one** transaction,
    /// one answer each. All or nothing: on an error nothing is written.
    /// Each row's next row of its ordering key is claimed for `owner` (leased for `lease`) in the
    /// same transaction when the completion asks for it.
    async fn complete_outbox_group(
        &self,
        owner: &str,
        lease: std::time::Duration,
        rows: &[Completion],
    ) -> Result<Vec<Completed>>;

    /// Marks a claimed row delivered and records what Salesforce answered, with an audit row.
    /// Returns `false` when `owner` no longer holds the lease (another worker took over).
    async fn complete_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        delivered: &Delivered,
    ) -> Result<bool>;

    /// Puts a claimed row back to be tried again at `at`, with the error; audited.
    async fn retry_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        at: DateTime<Utc>,
        error: &str,
        code: Option<&str>,
    ) -> Result<bool>;

    /// Puts rows claimed by `owner` but never tried back in the queue, as due as they were,
    /// without spending an attempt: the rest of a run whose delivery stopped early. Not audited:
    /// nothing was sent and nothing about the rows changed. Returns how many were still leased
    /// to `owner`.
    async fn release_outbox(&self, owner: &str, ids: &[i64]) -> Result<u64>;

    /// Puts a claimed row back, held until `at`, without spending an attempt: its channel is
    /// paused or its org disabled (the pause itself is audited once, not each hold).
    async fn defer_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool>;

    /// Holds every pending row of a paused channel (`channel`) or a disabled org (`org_id`)
    /// that is due before `at` until `at`, without spending an attempt, in one statement: so a
    /// long pause costs one write per probe, not one claim and one write per row. Returns how
    /// many rows it held.
    async fn defer_pending(
        &self,
        scope: crate::relay::gate::HoldScope,
        key: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<u64>;

    /// Dead-letters a claimed row with an alert.
    async fn dead_letter_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        error: &str,
        code: Option<&str>,
    ) -> Result<bool>;

    /// What workers need to address a conversation at Salesforce.
    async fn conversation_context(
        &self,
        conversation_id: uuid::Uuid,
    ) -> Result<Option<ConversationContext>>;

    /// Who is in a session as last reported by Salesforce (the JSON list
    /// `domain::participants` keeps); `None` when never reported.
    async fn session_participants(&self, session_id: uuid::Uuid) -> Result<Option<Value>>;

    /// The rep choices sent in a conversation, newest first, at most `limit`.
    async fn choice_prompts(
        &self,
        conversation_id: uuid::Uuid,
        limit: i64,
    ) -> Result<Vec<ChoicePrompt>>;

    /// Remembers that the rep message `salesforce_entry_id` went out as the provider's
    /// `provider_message_id`, so receipts find it.
    async fn map_outbound_message(
        &self,
        channel: &str,
        provider_message_id: &str,
        salesforce_entry_id: &str,
        conversation_id: uuid::Uuid,
    ) -> Result<()>;

    /// Keeps a file to serve on a signed URL until `expires_at`; returns its id.
    async fn host_file(
        &self,
        channel: &str,
        mime_type: &str,
        file_name: &str,
        body: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<uuid::Uuid>;

    /// A hosted file: (MIME type, file name, body, expiry).
    async fn hosted_file(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(String, String, Vec<u8>, DateTime<Utc>)>>;

    /// Forgets hosted files that expired before `before`; returns how many.
    async fn purge_hosted_files(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Deletes at most `limit` outbox rows that finished before `before` (delivered or
    /// discarded; never pending, leased or dead ones); returns how many.
    async fn purge_finished_outbox(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;

    /// Deletes at most `limit` rows of `class` older than `before` (see [`PurgeClass`] for what
    /// each counts from), oldest first; returns how many.
    async fn purge_expired(
        &self,
        class: PurgeClass,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64>;

    /// Erasure of an end user, in **one** transaction: finds the end users whose number,
    /// provider user id or Salesforce key is one of `identifiers` (on `channel`, or on every
    /// channel), and deletes them with their conversations, sessions, routings, message id map
    /// and outbox rows, the outbox rows and quarantined bodies whose text contains one of
    /// their identifiers (or one of `extra_needles`, e.g. a number without its `+`, searched in
    /// quarantined bodies only), and appends the audit row `audit` makes of what was deleted.
    /// When no end user matches, nothing is written and the answer has no ids.
    async fn erase_end_users(
        &self,
        identifiers: &[String],
        channel: Option<&str>,
        extra_needles: &(dyn Fn(&str) -> Vec<String> + Sync),
        audit: &(dyn Fn(&Erasure) -> AuditEntry + Sync),
    ) -> Result<Erasure>;

    /// Records a routing (with an audit row); returns its id.
    async fn record_routing(&self, routing: &NewRouting) -> Result<uuid::Uuid>;

    /// Replaces a routing's state (with an audit row).
    async fn update_routing(&self, id: uuid::Uuid, routing: &NewRouting) -> Result<()>;

    /// The routing that offered AgentWork `agent_work_id`, if any.
    async fn routing_by_agent_work(&self, agent_work_id: &str) -> Result<Option<RoutingRecord>>;

    /// Routings of a session, oldest first.
    async fn routings_of_session(&self, session_id: uuid::Uuid) -> Result<Vec<RoutingRecord>>;

    /// Open work per rep of a channel (AgentWork offered or accepted and not closed).
    async fn agent_loads(&self, channel: &str) -> Result<Vec<(String, i64)>>;

    /// Ends a session locally because Salesforce no longer knows it (reconcile), so it is not
    /// swept again; audited with `reason`.
    async fn reconcile_session(&self, session_id: uuid::Uuid, reason: &str) -> Result<bool>;

    /// Takes the run of singleton job `key` if no other replica holds it (PostgreSQL advisory
    /// lock held by the guard's connection; SQLite has one daemon by construction). `None`: skip.
    async fn try_exclusive(&self, key: &str) -> Result<Option<ExclusiveGuard>>;

    /// Outbox rows for admins, newest first.
    async fn outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxItem>>;

    /// One outbox row.
    async fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>>;

    /// An admin sends a dead or discarded row again, now; audited with `actor`.
    async fn requeue_outbox(&self, id: i64, actor: &str) -> Result<bool>;

    /// An admin gives up on a pending or dead row; audited with `actor`.
    async fn discard_outbox(&self, id: i64, actor: &str) -> Result<bool>;

    /// Appends an audit row; returns its id.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64>;

    /// Audit rows matching `filter`, oldest first (the newest `limit` of them).
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>>;

    /// Where the sealer may seal up to. SQLite has one writer at a time, so every committed
    /// row is final: `up_to` is unbounded and nothing is in flight. PostgreSQL: ids are taken
    /// from a sequence when a row is inserted and become visible when its transaction commits,
    /// so a row with a smaller id may still appear. `up_to` is the highest visible id, read
    /// **before** the list of transactions holding a row-exclusive lock on `audit_log` (every
    /// insert takes it before its id and keeps it until it ends); once those have all ended,
    /// every id up to `up_to` is committed or rolled back for good ([`Store::audit_horizon_reached`]).
    async fn audit_seal_horizon(&self) -> Result<SealHorizon>;

    /// Whether every transaction of `horizon.in_flight` has ended.
    async fn audit_horizon_reached(&self, horizon: &SealHorizon) -> Result<bool>;

    /// Seals, in one write transaction, the audit rows after the chain's head with ids up to
    /// `up_to`, at most `limit` of them, in id order, each with the hash `link` computes from
    /// the previous seal. Returns how many it sealed and the head after it. The caller
    /// guarantees that no row with an id up to `up_to` can still appear (the horizon).
    async fn seal_audit(
        &self,
        up_to: i64,
        limit: u32,
        link: &ChainLink,
    ) -> Result<(u64, Option<AuditSeal>)>;

    /// The newest seal: the chain's head.
    async fn audit_chain_head(&self) -> Result<Option<AuditSeal>>;

    /// The ids after `after` that have an audit row or a seal, at most `limit`, in id order,
    /// each with its row and its seal, read in one statement.
    async fn audit_chain(&self, after: i64, limit: u32) -> Result<Vec<ChainEntry>>;

    /// What `/metrics` reads from the database: work waiting (pending or leased) by kind and
    /// status with its oldest row, and routings by status.
    async fn gauges(&self) -> Result<StoreGauges>;

    /// At start: makes work leased by an earlier process of this database due again at once,
    /// and returns how many rows that was. Only where this process is provably the only one —
    /// SQLite with its lock file held — since a dead process's lease would otherwise hold its
    /// rows for the whole lease. On PostgreSQL (replicas) leases stand until they expire: the
    /// owner may be alive. Returns 0 there.
    async fn release_earlier_leases(&self) -> Result<u64>;

    /// Closes the connections (and, for SQLite, releases the file lock).
    async fn close(&self);
}

/// Held while a singleton job runs; dropping it lets another replica run the job.
#[derive(Debug)]
pub struct ExclusiveGuard {
    /// On PostgreSQL, the transaction holding `pg_try_advisory_xact_lock`: dropping it rolls
    /// back and releases the lock, even through a connection pooler.
    _tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

impl ExclusiveGuard {
    pub(crate) fn new(tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>) -> Self {
        Self { _tx: tx }
    }

    /// Releases the lock now. Merely dropping the guard queues the rollback until its
    /// connection is next used, so the lock may outlive the job by a while; a job that ends
    /// normally releases it here.
    pub async fn release(mut self) {
        if let Some(tx) = self._tx.take()
            && let Err(e) = tx.rollback().await
        {
            tracing::warn!(error = %e, "releasing an advisory lock failed; it ends with its connection");
        }
    }
}

/// The store the daemon uses: whichever backend the URL selected.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the database at `url`, choosing the backend by its scheme. Does not migrate.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self> {
        Ok(match Backend::of_url(url)? {
            Backend::Sqlite => Self::Sqlite(SqliteStore::open(url, options).await?),
            Backend::Postgres => Self::Postgres(PgStore::open(url, options).await?),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether a transaction that failed with `error` may well succeed if run again. On
    /// PostgreSQL: no connection was free within `database.acquire_timeout`, the connection
    /// broke, the server aborted the transaction for a deadlock (40P01) or a serialization
    /// failure (40001), or the server ended the session or refused it while it shut down or
    /// started (57P01–57P03: a restart, a failover, `pg_terminate_backend`; class 08: the
    /// connection failed). On SQLite never: its writes already wait their turn on the one writer
    /// connection for `database.acquire_timeout`.
    pub fn is_transient(&self, error: &StoreError) -> bool {
        if self.backend() != Backend::Postgres {
            return false;
        }
        match error {
            StoreError::Raced(_) => true,
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                matches!(&*code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                    || code.starts_with("08")
            }),
            _ => false,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn migrate(&self) -> Result<Vec<AppliedMigration>> {
        dispatch!(self, s => s.migrate().await)
    }
    async fn schema_status(&self) -> Result<SchemaStatus> {
        dispatch!(self, s => s.schema_status().await)
    }
    async fn ping(&self) -> Result<()> {
        dispatch!(self, s => s.ping().await)
    }
    async fn sync_config(
        &self,
        orgs: &[OrgRecord],
        channels: &[ChannelRecord],
    ) -> Result<SyncReport> {
        dispatch!(self, s => s.sync_config(orgs, channels).await)
    }
    async fn lift_recorded_pauses(
        &self,
        audit: &(dyn Fn(&RecordedPause) -> AuditEntry + Sync),
    ) -> Result<Vec<RecordedPause>> {
        dispatch!(self, s => s.lift_recorded_pauses(audit).await)
    }
    async fn channels(&self) -> Result<Vec<StoredChannel>> {
        dispatch!(self, s => s.channels().await)
    }
    async fn orgs(&self) -> Result<Vec<StoredOrg>> {
        dispatch!(self, s => s.orgs().await)
    }
    async fn save_token(&self, token: &SealedToken) -> Result<()> {
        dispatch!(self, s => s.save_token(token).await)
    }
    async fn token(&self, org_id: &str) -> Result<Option<StoredToken>> {
        dispatch!(self, s => s.token(org_id).await)
    }
    async fn discard_token(&self, org_id: &str) -> Result<bool> {
        dispatch!(self, s => s.discard_token(org_id).await)
    }
    async fn set_org_pause(
        &self,
        org_id: &str,
        pause: Option<(DateTime<Utc>, String)>,
    ) -> Result<bool> {
        dispatch!(self, s => s.set_org_pause(org_id, pause).await)
    }
    async fn set_org_disabled(&self, org_id: &str, reason: Option<&str>) -> Result<bool> {
        dispatch!(self, s => s.set_org_disabled(org_id, reason).await)
    }
    async fn set_channel_pause(
        &self,
        channel: &str,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Result<bool> {
        dispatch!(self, s => s.set_channel_pause(channel, until, reason).await)
    }
    async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
        dispatch!(self, s => s.sessions(filter).await)
    }
    async fn session(&self, id: uuid::Uuid) -> Result<Option<SessionDetail>> {
        dispatch!(self, s => s.session(id).await)
    }
    async fn session_by_work_item(&self, work_item_id: &str) -> Result<Option<uuid::Uuid>> {
        dispatch!(self, s => s.session_by_work_item(work_item_id).await)
    }
    async fn quarantine(&self, item: &NewQuarantine) -> Result<i64> {
        dispatch!(self, s => s.quarantine(item).await)
    }
    async fn quarantined(
        &self,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QuarantinedWebhook>> {
        dispatch!(self, s => s.quarantined(channel, limit).await)
    }
    async fn quarantined_item(&self, id: i64) -> Result<Option<QuarantinedWebhook>> {
        dispatch!(self, s => s.quarantined_item(id).await)
    }
    async fn transaction(&self) -> Result<tx::Tx> {
        dispatch!(self, s => s.transaction().await)
    }
    async fn advance_cursor(&self, org_id: &str, topic: &str, replay_id: &[u8]) -> Result<()> {
        dispatch!(self, s => s.advance_cursor(org_id, topic, replay_id).await)
    }
    async fn cursor(&self, org_id: &str, topic: &str) -> Result<Option<Cursor>> {
        dispatch!(self, s => s.cursor(org_id, topic).await)
    }
    async fn claim_outbox(
        &self,
        owner: &str,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxItem>> {
        dispatch!(self, s => s.claim_outbox(owner, limit, lease).await)
    }
    async fn complete_outbox_group(
        &self,
        owner: &str,
        lease: std::time::Duration,
        rows: &[Completion],
    ) -> Result<Vec<Completed>> {
        dispatch!(self, s => s.complete_outbox_group(owner, lease, rows).await)
    }
    async fn complete_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        delivered: &Delivered,
    ) -> Result<bool> {
        dispatch!(self, s => s.complete_outbox(item, owner, delivered).await)
    }
    async fn retry_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        at: DateTime<Utc>,
        error: &str,
        code: Option<&str>,
    ) -> Result<bool> {
        dispatch!(self, s => s.retry_outbox(item, owner, at, error, code).await)
    }
    async fn release_outbox(&self, owner: &str, ids: &[i64]) -> Result<u64> {
        dispatch!(self, s => s.release_outbox(owner, ids).await)
    }
    async fn defer_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool> {
        dispatch!(self, s => s.defer_outbox(item, owner, at, reason).await)
    }
    async fn defer_pending(
        &self,
        scope: crate::relay::gate::HoldScope,
        key: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<u64> {
        dispatch!(self, s => s.defer_pending(scope, key, at, reason).await)
    }
    async fn dead_letter_outbox(
        &self,
        item: &OutboxItem,
        owner: &str,
        error: &str,
        code: Option<&str>,
    ) -> Result<bool> {
        dispatch!(self, s => s.dead_letter_outbox(item, owner, error, code).await)
    }
    async fn conversation_context(
        &self,
        conversation_id: uuid::Uuid,
    ) -> Result<Option<ConversationContext>> {
        dispatch!(self, s => s.conversation_context(conversation_id).await)
    }
    async fn session_participants(&self, session_id: uuid::Uuid) -> Result<Option<Value>> {
        dispatch!(self, s => s.session_participants(session_id).await)
    }
    async fn choice_prompts(
        &self,
        conversation_id: uuid::Uuid,
        limit: i64,
    ) -> Result<Vec<ChoicePrompt>> {
        dispatch!(self, s => s.choice_prompts(conversation_id, limit).await)
    }
    async fn map_outbound_message(
        &self,
        channel: &str,
        provider_message_id: &str,
        salesforce_entry_id: &str,
        conversation_id: uuid::Uuid,
    ) -> Result<()> {
        dispatch!(self, s => s.map_outbound_message(channel, provider_message_id, salesforce_entry_id, conversation_id).await)
    }
    async fn host_file(
        &self,
        channel: &str,
        mime_type: &str,
        file_name: &str,
        body: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<uuid::Uuid> {
        dispatch!(self, s => s.host_file(channel, mime_type, file_name, body, expires_at).await)
    }
    async fn hosted_file(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(String, String, Vec<u8>, DateTime<Utc>)>> {
        dispatch!(self, s => s.hosted_file(id).await)
    }
    async fn purge_hosted_files(&self, before: DateTime<Utc>) -> Result<u64> {
        dispatch!(self, s => s.purge_hosted_files(before).await)
    }
    async fn purge_finished_outbox(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        dispatch!(self, s => s.purge_finished_outbox(before, limit).await)
    }
    async fn purge_expired(
        &self,
        class: PurgeClass,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64> {
        dispatch!(self, s => s.purge_expired(class, before, limit).await)
    }
    async fn erase_end_users(
        &self,
        identifiers: &[String],
        channel: Option<&str>,
        extra_needles: &(dyn Fn(&str) -> Vec<String> + Sync),
        audit: &(dyn Fn(&Erasure) -> AuditEntry + Sync),
    ) -> Result<Erasure> {
        dispatch!(self, s => s.erase_end_users(identifiers, channel, extra_needles, audit).await)
    }
    async fn record_routing(&self, routing: &NewRouting) -> Result<uuid::Uuid> {
        dispatch!(self, s => s.record_routing(routing).await)
    }
    async fn update_routing(&self, id: uuid::Uuid, routing: &NewRouting) -> Result<()> {
        dispatch!(self, s => s.update_routing(id, routing).await)
    }
    async fn routing_by_agent_work(&self, agent_work_id: &str) -> Result<Option<RoutingRecord>> {
        dispatch!(self, s => s.routing_by_agent_work(agent_work_id).await)
    }
    async fn routings_of_session(&self, session_id: uuid::Uuid) -> Result<Vec<RoutingRecord>> {
        dispatch!(self, s => s.routings_of_session(session_id).await)
    }
    async fn agent_loads(&self, channel: &str) -> Result<Vec<(String, i64)>> {
        dispatch!(self, s => s.agent_loads(channel).await)
    }
    async fn reconcile_session(&self, session_id: uuid::Uuid, reason: &str) -> Result<bool> {
        dispatch!(self, s => s.reconcile_session(session_id, reason).await)
    }
    async fn try_exclusive(&self, key: &str) -> Result<Option<ExclusiveGuard>> {
        dispatch!(self, s => s.try_exclusive(key).await)
    }
    async fn outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxItem>> {
        dispatch!(self, s => s.outbox(filter).await)
    }
    async fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>> {
        dispatch!(self, s => s.outbox_item(id).await)
    }
    async fn requeue_outbox(&self, id: i64, actor: &str) -> Result<bool> {
        dispatch!(self, s => s.requeue_outbox(id, actor).await)
    }
    async fn discard_outbox(&self, id: i64, actor: &str) -> Result<bool> {
        dispatch!(self, s => s.discard_outbox(id, actor).await)
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64> {
        dispatch!(self, s => s.append_audit(entry).await)
    }
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        dispatch!(self, s => s.audit(filter).await)
    }
    async fn audit_seal_horizon(&self) -> Result<SealHorizon> {
        dispatch!(self, s => s.audit_seal_horizon().await)
    }
    async fn audit_horizon_reached(&self, horizon: &SealHorizon) -> Result<bool> {
        dispatch!(self, s => s.audit_horizon_reached(horizon).await)
    }
    async fn seal_audit(
        &self,
        up_to: i64,
        limit: u32,
        link: &ChainLink,
    ) -> Result<(u64, Option<AuditSeal>)> {
        dispatch!(self, s => s.seal_audit(up_to, limit, link).await)
    }
    async fn audit_chain_head(&self) -> Result<Option<AuditSeal>> {
        dispatch!(self, s => s.audit_chain_head().await)
    }
    async fn audit_chain(&self, after: i64, limit: u32) -> Result<Vec<ChainEntry>> {
        dispatch!(self, s => s.audit_chain(after, limit).await)
    }
    async fn gauges(&self) -> Result<StoreGauges> {
        dispatch!(self, s => s.gauges().await)
    }
    async fn release_earlier_leases(&self) -> Result<u64> {
        dispatch!(self, s => s.release_earlier_leases().await)
    }
    async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

/// Plans a configuration sync: compares what is stored (name → (hash, retired)) with what is
/// configured, and says what to add, change and retire. Shared by both backends.
fn plan_sync<'a>(
    stored: &std::collections::BTreeMap<String, (String, bool)>,
    configured: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Changes, Vec<String>) {
    let mut changes = Changes::default();
    let mut seen = std::collections::BTreeSet::new();
    for (name, hash) in configured {
        seen.insert(name.to_owned());
        match stored.get(name) {
            None => changes.added.push(name.to_owned()),
            Some((stored_hash, retired)) if *retired || stored_hash != hash => {
                changes.changed.push(name.to_owned())
            }
            Some(_) => changes.unchanged += 1,
        }
    }
    for (name, (_, retired)) in stored {
        if !retired && !seen.contains(name) {
            changes.retired.push(name.clone());
        }
    }
    let upserts = changes
        .added
        .iter()
        .chain(&changes.changed)
        .cloned()
        .collect();
    (changes, upserts)
}

/// The audit rows a sync writes, in order: retirements first (they free channel addresses), then
/// additions and changes.
fn sync_audit_entries(
    kind: &str,
    changes: &Changes,
    hash_of: impl Fn(&str) -> Option<String>,
    org_of: impl Fn(&str) -> Option<String>,
) -> Vec<AuditEntry> {
    let subject = |entry: AuditEntry, name: &str| {
        let entry = match org_of(name) {
            Some(org) => entry.org(org),
            None => entry,
        };
        if kind == "channel" {
            entry.channel(name)
        } else {
            entry
        }
    };
    let mut out = Vec::new();
    for name in &changes.retired {
        out.push(subject(
            AuditEntry::new(
                format!("{kind}.retired"),
                format!("{kind} {name} is no longer configured; retired, history kept"),
            )
            .detail(serde_json::json!({ "name": name })),
            name,
        ));
    }
    for (verb, names) in [("added", &changes.added), ("changed", &changes.changed)] {
        for name in names {
            out.push(subject(
                AuditEntry::new(
                    format!("{kind}.{verb}"),
                    format!("{kind} {name} {verb} from configuration"),
                )
                .detail(serde_json::json!({ "name": name, "content_hash": hash_of(name) })),
                name,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_and_passwords_are_hidden() {
        assert_eq!(
            Backend::of_url("sqlite:///var/lib/byocd/byocd.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::of_url("postgres://byocd@db/byocd").unwrap(),
            Backend::Postgres
        );
        let err = Backend::of_url("mysql://root:hunter2@db/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql://root:***@db/x"), "{err}");
        assert!(!err.contains("hunter2"));
        assert_eq!(
            redact_url("postgres://u:p@h:5432/d?sslmode=require"),
            "postgres://u:***@h:5432/d?sslmode=require"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn sync_plan_sorts_names_into_added_changed_retired() {
        let stored = [
            ("same".to_string(), ("h1".to_string(), false)),
            ("edited".to_string(), ("h2".to_string(), false)),
            ("gone".to_string(), ("h3".to_string(), false)),
            ("back".to_string(), ("h4".to_string(), true)),
            ("long-gone".to_string(), ("h5".to_string(), true)),
        ]
        .into_iter()
        .collect();
        let configured = [
            ("same", "h1"),
            ("edited", "h2b"),
            ("back", "h4"),
            ("new", "h6"),
        ];
        let (changes, upserts) = plan_sync(&stored, configured.into_iter());
        assert_eq!(changes.added, ["new"]);
        assert_eq!(changes.changed, ["edited", "back"]);
        assert_eq!(changes.retired, ["gone"]);
        assert_eq!(changes.unchanged, 1);
        assert_eq!(upserts, ["new", "edited", "back"]);
    }
}
