//! Access tokens for the Interaction Service (and the Pub/Sub API), one per org, obtained with
//! the OAuth 2.0 JWT bearer flow.
//!
//! - **Mint.** An RS256 assertion (`iss` consumer key, `sub` username, `aud` login URL, `exp` a
//!   few minutes ahead, in seconds — Salesforce's docs say milliseconds, which is an error) is
//!   POSTed as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` to the org's token
//!   endpoint: `orgs.token_url`, by default `<login URL>/services/oauth2/token` (the audience
//!   stays the login URL either way). Salesforce answers with no `expires_in`, so a token is
//!   used until it is rejected (HTTP 401 or code 10004), or until an optional maximum age.
//! - **Kept sealed.** The token is stored in `oauth_tokens` sealed with the token key (see
//!   [`crate::crypto`]) and reused across restarts; memory holds it as a `SecretString`.
//! - **Single flight per org.** Each org has one async mutex held while minting. A caller whose
//!   token was rejected reports the token's generation; if another caller has already replaced
//!   that generation, it gets the new token without a second mint. Fifty callers rejected at
//!   once cause one mint.
//! - **No hot loop.** A mint that fails pauses the org with an exponential backoff; until the
//!   pause ends, callers get [`AuthError::Paused`] at once without a network call. The pause is
//!   also written to the `orgs` table, for operators.
//! - **Audited.** Every mint leaves an audit row (org, outcome, latency, why it was minted);
//!   never the token or the assertion.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth2::{
    ExtraTokenFields, StandardTokenResponse, TokenResponse, basic::BasicErrorResponse,
    basic::BasicTokenType,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use crate::{
    clock::SharedClock,
    config::OrgConfig,
    crypto::TokenKey,
    store::{AnyStore, AuditEntry, SealedToken, Severity, Store},
};

/// The grant type of the JWT bearer flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How far ahead the assertion expires. Salesforce allows about three minutes of clock skew.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(180);
/// Time allowed for one token request.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// First pause after a failed mint; doubles with each further failure.
const FIRST_PAUSE: Duration = Duration::from_secs(5);
/// Longest pause after failed mints.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// An org's token for the attempts of one call ([`TokenManager::authorized`]).
#[derive(Debug)]
pub struct Authorized<'a> {
    tokens: &'a TokenManager,
    org_id: &'a str,
    token: AccessToken,
    reminted: bool,
}

impl Authorized<'_> {
    /// The token to send now.
    pub fn token(&self) -> &AccessToken {
        &self.token
    }

    /// Salesforce refused the token (HTTP 401, or code 10004): `true` with a fresh token to try
    /// once more ([`TokenManager::token_rejected`], single-flight per org); `false` when it was
    /// already re-minted for this call, and the refusal stands.
    pub async fn refused(&mut self) -> Result<bool, AuthError> {
        if self.reminted {
            return Ok(false);
        }
        self.reminted = true;
        self.token = self.tokens.token_rejected(self.org_id, &self.token).await?;
        Ok(true)
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The org is not configured.
    #[error("org {0} is not configured")]
    UnknownOrg(String),
    /// Salesforce refused the grant; says which setting to check.
    #[error(
        "org {org_id}: Salesforce refused the JWT bearer grant ({error}: {description}); {hint}"
    )]
    Refused {
        /// The org.
        org_id: String,
        /// OAuth error code (`invalid_grant`, `invalid_client`, …).
        error: String,
        /// Salesforce's description.
        description: String,
        /// Which settings to check.
        hint: &'static str,
    },
    /// The token endpoint could not be reached or answered something unusable.
    #[error(
        "org {org_id}: token endpoint {url} failed: {reason}; check orgs.token_url (by default orgs.login_url + /services/oauth2/token) and the network"
    )]
    Unreachable {
        /// The org.
        org_id: String,
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The assertion could not be signed (the private key is unusable).
    #[error("org {org_id}: cannot sign the JWT assertion with orgs.private_key_file: {reason}")]
    Signing {
        /// The org.
        org_id: String,
        /// What went wrong.
        reason: String,
    },
    /// The org is paused after failed mints.
    #[error("org {org_id} is paused until {until} after failed token mints (last: {reason})")]
    Paused {
        /// The org.
        org_id: String,
        /// Until when.
        until: DateTime<Utc>,
        /// The last failure.
        reason: String,
    },
    /// The state store failed.
    #[error("org {org_id}: token store: {reason}")]
    Store {
        /// The org.
        org_id: String,
        /// What went wrong.
        reason: String,
    },
}

/// A usable access token. `Debug` does not show it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    generation: u64,
    instance_url: Option<String>,
}

impl AccessToken {
    /// The bearer value, for the one place that builds the `Authorization` header.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// Which mint of this process produced it (0 for one loaded from the store).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The org's instance URL, as the token response gave it.
    pub fn instance_url(&self) -> Option<&str> {
        self.instance_url.as_deref()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Extra fields of Salesforce's token response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SalesforceTokenFields {
    /// The org's instance URL.
    pub instance_url: Option<String>,
    /// Identity URL.
    pub id: Option<String>,
    /// Issue time, ms since the epoch, as a string.
    pub issued_at: Option<String>,
}

impl ExtraTokenFields for SalesforceTokenFields {}

type TokenResponseBody = StandardTokenResponse<SalesforceTokenFields, BasicTokenType>;

#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// Why a mint happens, for the audit trail.
#[derive(Debug, Clone, Copy)]
enum MintReason {
    NoToken,
    Rejected,
    MaxAge,
}

impl MintReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::NoToken => "no stored token",
            Self::Rejected => "token rejected by Salesforce",
            Self::MaxAge => "token older than token_max_age",
        }
    }
}

struct Current {
    token: AccessToken,
    minted_at: DateTime<Utc>,
}

#[derive(Default)]
struct OrgState {
    /// `None` until loaded from the store or minted.
    current: Option<Current>,
    loaded: bool,
    generation: u64,
    failures: u32,
    paused: Option<(DateTime<Utc>, String)>,
}

struct OrgAuth {
    org_id: String,
    /// The JWT audience.
    login_url: String,
    /// Where the assertion is POSTed.
    token_url: String,
    consumer_key: String,
    username: String,
    signing_key: Result<EncodingKey, String>,
    max_age: Option<Duration>,
    state: Mutex<OrgState>,
}

/// Tokens for every configured org. Cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    store: AnyStore,
    key: Arc<TokenKey>,
    clock: SharedClock,
    orgs: HashMap<String, OrgAuth>,
    mints: std::sync::atomic::AtomicU64,
    metrics: std::sync::RwLock<Option<Arc<crate::metrics::Metrics>>>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("orgs", &self.inner.orgs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager for `orgs`, keeping tokens in `store` sealed with `key`.
    pub fn new(
        orgs: &[OrgConfig],
        store: AnyStore,
        key: Arc<TokenKey>,
        clock: SharedClock,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .user_agent(concat!("byocd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with these settings always builds");
        let orgs = orgs
            .iter()
            .map(|org| {
                let auth = OrgAuth {
                    org_id: org.org_id.as_str().to_owned(),
                    login_url: org.login_url.trim_end_matches('/').to_owned(),
                    token_url: org.token_endpoint(),
                    consumer_key: org.consumer_key.clone(),
                    username: org.username.clone(),
                    signing_key: org.jwt_encoding_key().map_err(|e| e.to_string()),
                    max_age: org.token_max_age,
                    state: Mutex::new(OrgState::default()),
                };
                (auth.org_id.clone(), auth)
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                http,
                store,
                key,
                clock,
                orgs,
                mints: Default::default(),
                metrics: std::sync::RwLock::new(None),
            }),
        }
    }

    /// Counts mints in `metrics` (`byocd_token_mints_total{org_id,outcome,reason}`), in this
    /// manager and every clone of it, made before or after.
    pub fn with_metrics(self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        *self.inner.metrics.write().expect("metrics lock poisoned") = Some(metrics);
        self
    }

    fn count_mint(&self, org_id: &str, outcome: &'static str, reason: &str, latency_ms: u64) {
        if let Some(m) = &*self.inner.metrics.read().expect("metrics lock poisoned") {
            m.token_mint(org_id, outcome, reason, latency_ms as f64 / 1000.0);
        }
    }

    /// How many mints this manager has attempted (for tests and metrics).
    pub fn mint_attempts(&self) -> u64 {
        self.inner.mints.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A token for `org_id`: the one in memory, else the stored one, else a new one.
    pub async fn token(&self, org_id: &str) -> Result<AccessToken, AuthError> {
        let org = self.org(org_id)?;
        let mut state = org.state.lock().await;
        self.ensure_loaded(org, &mut state).await;
        if let Some(current) = &state.current {
            let too_old = org.max_age.is_some_and(|max| {
                (self.inner.clock.now() - current.minted_at)
                    .to_std()
                    .is_ok_and(|age| age > max)
            });
            if !too_old {
                return Ok(current.token.clone());
            }
            return self.mint(org, &mut state, MintReason::MaxAge).await;
        }
        self.mint(org, &mut state, MintReason::NoToken).await
    }

    /// Salesforce rejected `rejected` (HTTP 401 or code 10004): returns a fresh token, minting
    /// only if no other caller has already replaced that one.
    pub async fn token_rejected(
        &self,
        org_id: &str,
        rejected: &AccessToken,
    ) -> Result<AccessToken, AuthError> {
        let org = self.org(org_id)?;
        let mut state = org.state.lock().await;
        self.ensure_loaded(org, &mut state).await;
        if let Some(current) = &state.current
            && current.token.generation != rejected.generation
        {
            return Ok(current.token.clone());
        }
        state.current = None;
        if let Err(e) = self.inner.store.discard_token(org_id).await {
            tracing::warn!(org_id, error = %e, "could not discard a rejected token");
        }
        self.mint(org, &mut state, MintReason::Rejected).await
    }

    /// The org's token for the attempts of one call, re-minted at most once when Salesforce
    /// refuses it ([`Authorized::refused`]): the one re-mint path of every Salesforce call (the
    /// Interaction Service client, the download of rep files).
    pub async fn authorized<'a>(&'a self, org_id: &'a str) -> Result<Authorized<'a>, AuthError> {
        Ok(Authorized {
            token: self.token(org_id).await?,
            tokens: self,
            org_id,
            reminted: false,
        })
    }

    /// Lifts a pause (on reload, or when an operator fixed the settings).
    pub async fn resume(&self, org_id: &str) -> Result<(), AuthError> {
        let org = self.org(org_id)?;
        let mut state = org.state.lock().await;
        state.paused = None;
        state.failures = 0;
        if let Err(e) = self.inner.store.set_org_pause(org_id, None).await {
            tracing::warn!(org_id, error = %e, "could not clear the org's pause");
        }
        Ok(())
    }

    fn org(&self, org_id: &str) -> Result<&OrgAuth, AuthError> {
        self.inner
            .orgs
            .get(org_id)
            .ok_or_else(|| AuthError::UnknownOrg(org_id.to_owned()))
    }

    fn context(org_id: &str) -> String {
        format!("oauth_tokens|{org_id}")
    }

    /// Loads the stored token once per process. A token that cannot be opened (another key, a
    /// damaged row) is treated as absent and replaced by the next mint.
    async fn ensure_loaded(&self, org: &OrgAuth, state: &mut OrgState) {
        if state.loaded {
            return;
        }
        state.loaded = true;
        match self.inner.store.token(&org.org_id).await {
            Ok(Some(stored)) => match self
                .inner
                .key
                .open(&stored.token.sealed_token, &Self::context(&org.org_id))
            {
                Ok(secret) => {
                    state.current = Some(Current {
                        token: AccessToken {
                            secret,
                            generation: 0,
                            instance_url: stored.token.instance_url,
                        },
                        minted_at: stored.minted_at,
                    });
                }
                Err(e) => {
                    tracing::warn!(org_id = %org.org_id, error = %e, "stored token unusable; a new one will be minted");
                    self.audit(
                        AuditEntry::new(
                            "token.unreadable",
                            format!("stored token of org {} cannot be opened: {e}", org.org_id),
                        )
                        .severity(Severity::Warning)
                        .org(&org.org_id),
                    )
                    .await;
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(org_id = %org.org_id, error = %e, "cannot read the stored token");
                state.loaded = false;
            }
        }
    }

    async fn mint(
        &self,
        org: &OrgAuth,
        state: &mut OrgState,
        reason: MintReason,
    ) -> Result<AccessToken, AuthError> {
        let now = self.inner.clock.now();
        if let Some((until, why)) = &state.paused
            && *until > now
        {
            return Err(AuthError::Paused {
                org_id: org.org_id.clone(),
                until: *until,
                reason: why.clone(),
            });
        }
        self.inner
            .mints
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let result = self.request_token(org, now).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((secret, instance_url)) => {
                state.generation += 1;
                state.failures = 0;
                let was_paused = state.paused.take().is_some();
                let token = AccessToken {
                    secret,
                    generation: state.generation,
                    instance_url: instance_url.clone(),
                };
                let sealed = SealedToken {
                    org_id: org.org_id.clone(),
                    sealed_token: self
                        .inner
                        .key
                        .seal(token.expose(), &Self::context(&org.org_id)),
                    key_id: self.inner.key.id().to_owned(),
                    instance_url,
                };
                if let Err(e) = self.inner.store.save_token(&sealed).await {
                    // The token works; only its reuse after a restart is lost. Say so and go on.
                    tracing::warn!(org_id = %org.org_id, error = %e, "could not store the new token");
                }
                if was_paused
                    && let Err(e) = self.inner.store.set_org_pause(&org.org_id, None).await
                {
                    // The org works again; only `byocd channels list` may still show the pause
                    // until the next sync. Say so and go on.
                    tracing::warn!(org_id = %org.org_id, error = %e, "could not clear the org's recorded pause");
                }
                state.current = Some(Current {
                    token: token.clone(),
                    minted_at: self.inner.clock.now(),
                });
                tracing::info!(org_id = %org.org_id, latency_ms, reason = reason.as_str(), "token minted");
                self.count_mint(&org.org_id, "ok", reason.as_str(), latency_ms);
                self.audit(
                    AuditEntry::new(
                        "token.minted",
                        format!("minted an access token for org {}", org.org_id),
                    )
                    .org(&org.org_id)
                    .detail(json!({
                        "outcome": "ok",
                        "reason": reason.as_str(),
                        "latency_ms": latency_ms,
                        "key_id": self.inner.key.id(),
                    })),
                )
                .await;
                Ok(token)
            }
            Err(error) => {
                state.failures += 1;
                let pause = FIRST_PAUSE
                    .saturating_mul(1 << (state.failures - 1).min(16))
                    .min(MAX_PAUSE);
                let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
                let why = error.to_string();
                state.paused = Some((until, why.clone()));
                if let Err(e) = self
                    .inner
                    .store
                    .set_org_pause(&org.org_id, Some((until, why.clone())))
                    .await
                {
                    tracing::warn!(org_id = %org.org_id, error = %e, "could not record the org's pause");
                }
                tracing::error!(org_id = %org.org_id, until = %until, "token mint failed: {why}");
                self.count_mint(&org.org_id, "failed", reason.as_str(), latency_ms);
                self.audit(
                    AuditEntry::new("token.mint_failed", why)
                        .severity(Severity::Alert)
                        .org(&org.org_id)
                        .detail(json!({
                            "outcome": "failed",
                            "reason": reason.as_str(),
                            "latency_ms": latency_ms,
                            "failures": state.failures,
                            "paused_until": until.to_rfc3339(),
                            "error": error_code(&error),
                        })),
                )
                .await;
                Err(error)
            }
        }
    }

    async fn request_token(
        &self,
        org: &OrgAuth,
        now: DateTime<Utc>,
    ) -> Result<(SecretString, Option<String>), AuthError> {
        let key = org.signing_key.as_ref().map_err(|e| AuthError::Signing {
            org_id: org.org_id.clone(),
            reason: e.clone(),
        })?;
        let claims = Claims {
            iss: &org.consumer_key,
            sub: &org.username,
            aud: &org.login_url,
            exp: (now + chrono::Duration::from_std(ASSERTION_LIFETIME).unwrap_or_default())
                .timestamp(),
        };
        let assertion = SecretString::from(
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key).map_err(|e| {
                AuthError::Signing {
                    org_id: org.org_id.clone(),
                    reason: e.to_string(),
                }
            })?,
        );
        let url = org.token_url.clone();
        let unreachable = |reason: String| AuthError::Unreachable {
            org_id: org.org_id.clone(),
            url: url.clone(),
            reason,
        };
        let response = self
            .inner
            .http
            .post(&url)
            .form(&[
                ("grant_type", JWT_BEARER_GRANT),
                ("assertion", assertion.expose_secret()),
            ])
            .send()
            .await
            .map_err(|e| unreachable(without_url(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(without_url(&e)))?;
        if status.is_success() {
            let parsed: TokenResponseBody = serde_json::from_slice(&body)
                .map_err(|e| unreachable(format!("unreadable token response: {e}")))?;
            let secret = SecretString::from(parsed.access_token().secret().clone());
            return Ok((secret, parsed.extra_fields().instance_url.clone()));
        }
        match serde_json::from_slice::<BasicErrorResponse>(&body) {
            Ok(err) => {
                let error = err.error().as_ref().to_owned();
                Err(AuthError::Refused {
                    org_id: org.org_id.clone(),
                    hint: hint_for(&error),
                    description: err.error_description().cloned().unwrap_or_default(),
                    error,
                })
            }
            Err(_) => Err(unreachable(format!(
                "HTTP {status} without an OAuth error body"
            ))),
        }
    }

    async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.inner.store.append_audit(&entry).await {
            tracing::error!(error = %e, kind = %entry.kind, "could not write an audit row");
        }
    }
}

/// What to check for each OAuth error Salesforce gives.
fn hint_for(error: &str) -> &'static str {
    match error {
        "invalid_client" | "invalid_client_id" => {
            "check orgs.consumer_key against the connected app's consumer key"
        }
        "invalid_grant" => {
            "check that orgs.username is pre-authorised for the connected app, that the \
             certificate uploaded to the app matches orgs.private_key_file, and that \
             orgs.login_url is the right login host (it is the JWT audience)"
        }
        "unsupported_grant_type" => {
            "check that orgs.token_url (by default orgs.login_url + /services/oauth2/token) is a \
             Salesforce token endpoint"
        }
        _ => "check the org's connected-app settings",
    }
}

impl AuthError {
    /// The word for this failure in the audit trail and the remediation table: the OAuth
    /// `error` Salesforce returned, or byocd's own (`unreachable`, `signing`, `paused`, `store`,
    /// `unknown_org`).
    pub fn word(&self) -> String {
        error_code(self)
    }
}

fn error_code(error: &AuthError) -> String {
    match error {
        AuthError::Refused { error, .. } => error.clone(),
        AuthError::Unreachable { .. } => "unreachable".into(),
        AuthError::Signing { .. } => "signing".into(),
        AuthError::Paused { .. } => "paused".into(),
        AuthError::UnknownOrg(_) => "unknown_org".into(),
        AuthError::Store { .. } => "store".into(),
    }
}

/// A reqwest error's text without its URL (which never carries secrets here, but stays short).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}
