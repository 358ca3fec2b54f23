//! The Interaction Service API client (partner → Salesforce), for every BYOC endpoint.
//!
//! Each call: validates the request (a request Salesforce would reject is never sent) → waits
//! for the org's request-rate limit → takes the org's token → sends with the documented headers
//! (`Authorization`, `OrgId`, a fresh `RequestId` UUID for every HTTP attempt,
//! `AuthorizationContext`, `AuthorizationContextType` where the endpoint requires it) → on HTTP
//! 401 or code 10004 re-mints the token once (single-flight per org) and tries again with a new
//! `RequestId` → parses the answer. Errors carry Salesforce's `{code, message}`, the code's
//! class and any `Retry-After`; a `Retry-After` also holds back the org's other calls until it
//! has passed. Retrying is the caller's business (the outbox): ids inside the body stay the same
//! across retries, only `RequestId` changes.

mod ratelimit;
mod validate;

use std::{collections::HashMap, sync::Arc, time::Duration};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use self::ratelimit::RateLimiter;
pub use self::validate::InvalidRequest;
use super::{
    auth::{AccessToken, AuthError, TokenManager},
    codes::{self, ErrorClass, ErrorReason},
    types::*,
};
use crate::config::OrgConfig;

/// Longest identifier Salesforce accepts (`to`, `from`, `channelAddressIdentifier`,
/// `endUserClientId`, `conversationIdentifier`). The OpenAPI file allows 255 for `from`; the
/// documentation says 240, and byocd keeps to the smaller.
pub const MAX_IDENTIFIER_LEN: usize = 240;
/// Length of a MessagingSession id (`workItemId`).
pub const WORK_ITEM_ID_LEN: usize = 15;
/// Largest attachment: Salesforce says 25 MB; byocd takes the decimal reading, the smaller one.
pub const MAX_ATTACHMENT_BYTES: u64 = 25_000_000;
/// Receipts per `/acknowledgement` call.
pub const MAX_ACKNOWLEDGEMENTS: usize = 25;
/// Participants of a `/conversationHistory` upload.
pub const MAX_HISTORY_PARTICIPANTS: usize = 3;
/// Entries of a `/conversationHistory` upload (the OpenAPI file's limit).
pub const MAX_HISTORY_ENTRIES: usize = 25;
/// MIME types Salesforce accepts for attachments.
pub const SUPPORTED_MIME_TYPES: &[&str] = &[
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/png",
    "application/pdf",
    "video/3gpp2",
    "audio/3gpp2",
    "video/3gpp",
    "audio/3gpp",
    "video/mpeg",
    "audio/mpeg",
    "video/mp4",
    "audio/mp4",
];
/// Default time allowed for one HTTP attempt.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a call goes and under which channel definition.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The org (15 characters).
    pub org_id: &'a str,
    /// The channel's CCD developer name (`AuthorizationContext`).
    pub authorization_context: &'a str,
}

/// An Interaction Service endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path under the SCRT base URL.
    pub path: &'static str,
    /// Whether `AuthorizationContextType: ConversationChannelDefinition` is sent.
    pub sends_context_type: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

macro_rules! endpoints {
    ($($name:ident = $method:literal $path:literal $ctx:literal;)*) => {
        /// Every BYOC endpoint of the Interaction Service.
        pub mod endpoint {
            use super::Endpoint;
            $(
                #[doc = concat!("`", $method, " ", $path, "`")]
                pub const $name: Endpoint =
                    Endpoint { method: $method, path: $path, sends_context_type: $ctx };
            )*
            /// All of them.
            pub const ALL: &[Endpoint] = &[$($name),*];
        }
    };
}

endpoints! {
    INTERACTIONS = "POST" "/api/v1/interactions" false;
    ACKNOWLEDGEMENT = "POST" "/api/v1/acknowledgement" false;
    CONVERSATION = "POST" "/api/v1/conversation" false;
    CAPABILITIES = "PATCH" "/api/v1/capabilities" true;
    CONSENT = "PATCH" "/api/v1/consent" false;
    ROUTE = "POST" "/api/v1/route" true;
    DELETE_ROUTE = "DELETE" "/api/v1/route" false;
    AGENT_WORK = "POST" "/api/v1/agentWork" false;
    PATCH_AGENT_WORK = "PATCH" "/api/v1/agentWork" true;
    ROUTING_RESULT = "POST" "/api/v1/routingResult" false;
    PARTICIPANT = "POST" "/api/v1/participant" false;
    MESSAGING_SESSION = "POST" "/api/v1/messagingSession" false;
    CONVERSATION_HISTORY = "POST" "/api/v1/conversationHistory" true;
}

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum IsaError {
    /// Not sent: Salesforce would reject it.
    #[error("{endpoint}: not sent, the request is invalid: {invalid}")]
    Invalid {
        /// The endpoint.
        endpoint: Endpoint,
        /// Which field and why.
        invalid: InvalidRequest,
    },
    /// Not sent: no token could be had.
    #[error("{endpoint}: not sent: {source}")]
    Auth {
        /// The endpoint.
        endpoint: Endpoint,
        /// Why.
        source: Box<AuthError>,
    },
    /// Salesforce answered with an error status.
    #[error("{endpoint}: HTTP {status}{}{}", code.map(|c| format!(", code {c}")).unwrap_or_default(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Api {
        /// The endpoint.
        endpoint: Endpoint,
        /// HTTP status.
        status: u16,
        /// Salesforce error code.
        code: Option<u32>,
        /// Salesforce's message.
        message: Option<String>,
        /// What the failure means.
        class: ErrorClass,
        /// How long Salesforce asked us to wait.
        retry_after: Option<Duration>,
        /// `RequestId` of the failed attempt.
        request_id: Uuid,
    },
    /// Salesforce answered 2xx with `success: false`.
    #[error("{endpoint}: refused{}{}{}", reason.as_ref().map(|r| format!(": {}", r.as_str())).unwrap_or_default(), code.map(|c| format!(", code {c}")).unwrap_or_default(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The endpoint.
        endpoint: Endpoint,
        /// `errorReason` (`/messagingSession`).
        reason: Option<ErrorReason>,
        /// `errorDetail.code`.
        code: Option<u32>,
        /// `errorDetail.message`.
        message: Option<String>,
        /// What the failure means.
        class: ErrorClass,
        /// `RequestId` of the attempt.
        request_id: Uuid,
    },
    /// No usable answer: connection, timeout, or a body that does not parse.
    #[error("{endpoint}: {reason}")]
    Transport {
        /// The endpoint.
        endpoint: Endpoint,
        /// What happened.
        reason: String,
        /// Whether it was a timeout.
        timeout: bool,
        /// `RequestId` of the attempt.
        request_id: Uuid,
    },
    /// The org is not configured.
    #[error("{endpoint}: org {org_id} is not configured")]
    UnknownOrg {
        /// The endpoint.
        endpoint: Endpoint,
        /// The org.
        org_id: String,
    },
}

impl IsaError {
    /// What the failure means, for remediation.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid { .. } => ErrorClass::BadInput,
            Self::Auth { source, .. } => match **source {
                AuthError::Unreachable { .. } | AuthError::Store { .. } => ErrorClass::Retryable,
                AuthError::Paused { .. } => ErrorClass::Retryable,
                _ => ErrorClass::Configuration,
            },
            Self::Api { class, .. } | Self::Refused { class, .. } => *class,
            Self::Transport { .. } => ErrorClass::Retryable,
            Self::UnknownOrg { .. } => ErrorClass::Configuration,
        }
    }

    /// The Salesforce error code, when there is one.
    pub fn code(&self) -> Option<u32> {
        match self {
            Self::Api { code, .. } | Self::Refused { code, .. } => *code,
            _ => None,
        }
    }

    /// How long to wait before retrying, if Salesforce said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A successful call: the answer and what an audit row needs.
#[derive(Debug, Clone)]
pub struct Called<T> {
    /// The parsed answer.
    pub value: T,
    /// HTTP status.
    pub status: u16,
    /// `RequestId` of each HTTP attempt made (two when the token was re-minted).
    pub request_ids: Vec<Uuid>,
    /// Time from the first attempt to the answer.
    pub latency: Duration,
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Time allowed for one HTTP attempt.
    pub request_timeout: Duration,
    /// The longest `Retry-After` that holds an org's calls back (`relay.max_retry_after`).
    pub max_retry_after: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retry_after: crate::config::DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

struct OrgTarget {
    base_url: String,
    limiter: RateLimiter,
}

/// The Interaction Service client for every configured org. Cheap to clone; connections are
/// reused.
#[derive(Clone)]
pub struct IsaClient {
    http: reqwest::Client,
    tokens: TokenManager,
    orgs: Arc<HashMap<String, OrgTarget>>,
    max_retry_after: Duration,
}

impl std::fmt::Debug for IsaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsaClient")
            .field("orgs", &self.orgs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

enum Body {
    Json(serde_json::Value),
    Multipart {
        json: String,
        file: Option<FilePart>,
    },
}

impl IsaClient {
    /// A client for `orgs`, taking tokens from `tokens`.
    pub fn new(orgs: &[OrgConfig], tokens: TokenManager, settings: ClientSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("byocd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with these settings always builds");
        let orgs = orgs
            .iter()
            .map(|org| {
                (
                    org.org_id.as_str().to_owned(),
                    OrgTarget {
                        base_url: org.scrt_base_url.trim_end_matches('/').to_owned(),
                        limiter: RateLimiter::new(org.requests_per_second),
                    },
                )
            })
            .collect();
        Self {
            http,
            tokens,
            orgs: Arc::new(orgs),
            max_retry_after: settings.max_retry_after,
        }
    }

    /// The token manager this client takes tokens from ([`super::files::download`] uses it).
    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    /// `POST /interactions`: one inbound interaction, with its file for an
    /// `AttachmentInteraction`.
    pub async fn interaction(
        &self,
        target: Target<'_>,
        request: &InteractionRequest,
        file: Option<FilePart>,
    ) -> Result<Called<InteractionResponse>, IsaError> {
        let endpoint = endpoint::INTERACTIONS;
        check(endpoint, request.validate(file.as_ref()))?;
        let json = serde_json::to_string(request).expect("requests serialize");
        let called = self
            .call::<InteractionResponse>(target, endpoint, Body::Multipart { json, file })
            .await?;
        if !called.value.success {
            return Err(refused(endpoint, None, None, &called));
        }
        Ok(called)
    }

    /// `POST /acknowledgement`: receipts, split into calls of at most 25. Returns one result
    /// per call made, in order; stops at the first failure.
    pub async fn acknowledge(
        &self,
        target: Target<'_>,
        request: &AcknowledgementRequest,
    ) -> Result<Vec<Called<SuccessResponse>>, IsaError> {
        let endpoint = endpoint::ACKNOWLEDGEMENT;
        if request.acknowledgements.is_empty() {
            check(
                endpoint,
                Err(InvalidRequest {
                    field: "acknowledgements".into(),
                    reason: "must hold at least one receipt".into(),
                }),
            )?;
        }
        let mut results = Vec::new();
        for chunk in request.acknowledgements.chunks(MAX_ACKNOWLEDGEMENTS) {
            let part = AcknowledgementRequest {
                conversation_identifier: request.conversation_identifier.clone(),
                sender: request.sender.clone(),
                acknowledgements: chunk.to_vec(),
            };
            check(endpoint, part.validate())?;
            results.push(self.json_success(target, endpoint, &part).await?);
        }
        Ok(results)
    }

    /// `POST /conversation`: look up or create the conversation with an end user.
    pub async fn conversation(
        &self,
        target: Target<'_>,
        request: &ConversationRequest,
    ) -> Result<Called<ConversationResponse>, IsaError> {
        let endpoint = endpoint::CONVERSATION;
        check(endpoint, request.validate())?;
        let called = self.json(target, endpoint, request).await?;
        let called: Called<ConversationResponse> = called;
        if !called.value.success {
            return Err(refused(endpoint, None, None, &called));
        }
        Ok(called)
    }

    /// `PATCH /capabilities`.
    pub async fn capabilities(
        &self,
        target: Target<'_>,
        request: &CapabilitiesRequest,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        check(endpoint::CAPABILITIES, request.validate())?;
        self.json_success(target, endpoint::CAPABILITIES, request)
            .await
    }

    /// `PATCH /consent`.
    pub async fn consent(
        &self,
        target: Target<'_>,
        request: &ConsentRequest,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        check(endpoint::CONSENT, request.validate())?;
        self.json_success(target, endpoint::CONSENT, request).await
    }

    /// `POST /route`.
    pub async fn route(
        &self,
        target: Target<'_>,
        request: &RouteRequest,
    ) -> Result<Called<RouteResponse>, IsaError> {
        let endpoint = endpoint::ROUTE;
        check(endpoint, request.validate())?;
        let called: Called<RouteResponse> = self.json(target, endpoint, request).await?;
        if !called.value.success {
            let message = called.value.reason_for_not_routing.clone();
            return Err(refused(endpoint, None, message, &called));
        }
        Ok(called)
    }

    /// `DELETE /route` (with a JSON body).
    pub async fn delete_route(
        &self,
        target: Target<'_>,
        request: &DeleteRouteRequest,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        check(endpoint::DELETE_ROUTE, request.validate())?;
        self.json_success(target, endpoint::DELETE_ROUTE, request)
            .await
    }

    /// `POST /agentWork`.
    pub async fn agent_work(
        &self,
        target: Target<'_>,
        request: &AgentWorkRequest,
    ) -> Result<Called<AgentWorkResponse>, IsaError> {
        let endpoint = endpoint::AGENT_WORK;
        check(endpoint, request.validate())?;
        let called: Called<AgentWorkResponse> = self.json(target, endpoint, request).await?;
        if !called.value.success {
            return Err(refused(endpoint, None, None, &called));
        }
        Ok(called)
    }

    /// `PATCH /agentWork`.
    pub async fn patch_agent_work(
        &self,
        target: Target<'_>,
        request: &PatchAgentWorkRequest,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        check(endpoint::PATCH_AGENT_WORK, request.validate())?;
        self.json_success(target, endpoint::PATCH_AGENT_WORK, request)
            .await
    }

    /// `POST /routingResult`.
    pub async fn routing_result(
        &self,
        target: Target<'_>,
        request: &RoutingResultRequest,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        check(endpoint::ROUTING_RESULT, request.validate())?;
        self.json_success(target, endpoint::ROUTING_RESULT, request)
            .await
    }

    /// `POST /participant`.
    pub async fn participant(
        &self,
        target: Target<'_>,
        request: &ParticipantRequest,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        check(endpoint::PARTICIPANT, request.validate())?;
        self.json_success(target, endpoint::PARTICIPANT, request)
            .await
    }

    /// `POST /messagingSession`. `success: false` becomes [`IsaError::Refused`] with the
    /// `errorReason`.
    pub async fn messaging_session(
        &self,
        target: Target<'_>,
        request: &MessagingSessionRequest,
    ) -> Result<Called<MessagingSessionResponse>, IsaError> {
        let endpoint = endpoint::MESSAGING_SESSION;
        check(endpoint, request.validate())?;
        let called: Called<MessagingSessionResponse> = self.json(target, endpoint, request).await?;
        if !called.value.success {
            let reason = called
                .value
                .error_reason
                .clone()
                .unwrap_or_else(|| ErrorReason::Unknown(String::new()));
            return Err(IsaError::Refused {
                endpoint,
                class: reason.class(),
                reason: Some(reason),
                code: None,
                message: None,
                request_id: last_request_id(&called),
            });
        }
        Ok(called)
    }

    /// `POST /conversationHistory`.
    pub async fn conversation_history(
        &self,
        target: Target<'_>,
        request: &ConversationHistoryRequest,
    ) -> Result<Called<ConversationHistoryResponse>, IsaError> {
        let endpoint = endpoint::CONVERSATION_HISTORY;
        check(endpoint, request.validate())?;
        let called: Called<ConversationHistoryResponse> =
            self.json(target, endpoint, request).await?;
        if !called.value.success {
            return Err(refused(endpoint, None, None, &called));
        }
        Ok(called)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        target: Target<'_>,
        endpoint: Endpoint,
        request: &impl Serialize,
    ) -> Result<Called<T>, IsaError> {
        let body = serde_json::to_value(request).expect("requests serialize");
        self.call(target, endpoint, Body::Json(body)).await
    }

    /// A JSON call answered by `{ success, errorDetail? }`; `success: false` is an error.
    async fn json_success(
        &self,
        target: Target<'_>,
        endpoint: Endpoint,
        request: &impl Serialize,
    ) -> Result<Called<SuccessResponse>, IsaError> {
        let called: Called<SuccessResponse> = self.json(target, endpoint, request).await?;
        if !called.value.success {
            let detail = called.value.error_detail.clone();
            let code = detail
                .as_ref()
                .and_then(|d| d.code.as_ref())
                .and_then(code_of);
            let message = detail.and_then(|d| d.message);
            return Err(refused(endpoint, code, message, &called));
        }
        Ok(called)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        target: Target<'_>,
        endpoint: Endpoint,
        body: Body,
    ) -> Result<Called<T>, IsaError> {
        let org = self
            .orgs
            .get(target.org_id)
            .ok_or_else(|| IsaError::UnknownOrg {
                endpoint,
                org_id: target.org_id.to_owned(),
            })?;
        let auth = |source| IsaError::Auth {
            endpoint,
            source: Box::new(source),
        };
        let started = std::time::Instant::now();
        let mut token = self.tokens.authorized(target.org_id).await.map_err(auth)?;
        let mut request_ids = Vec::new();
        loop {
            org.limiter.acquire().await;
            let request_id = Uuid::new_v4();
            request_ids.push(request_id);
            let response = self
                .send(org, target, endpoint, &body, token.token(), request_id)
                .await?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let bytes = response.bytes().await.map_err(|e| IsaError::Transport {
                endpoint,
                reason: format!("reading the answer failed: {e}"),
                timeout: e.is_timeout(),
                request_id,
            })?;
            if status.is_success() {
                let value = serde_json::from_slice(&bytes).map_err(|e| IsaError::Transport {
                    endpoint,
                    reason: format!("HTTP {status} with an unreadable body: {e}"),
                    timeout: false,
                    request_id,
                })?;
                return Ok(Called {
                    value,
                    status: status.as_u16(),
                    request_ids,
                    latency: started.elapsed(),
                });
            }
            let error: codes::IsaErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            let rejected_token = status == StatusCode::UNAUTHORIZED || error.code == Some(10004);
            if rejected_token && token.refused().await.map_err(auth)? {
                continue;
            }
            if let Some(wait) = retry_after {
                org.limiter.hold_for(wait.min(self.max_retry_after)).await;
            }
            return Err(IsaError::Api {
                endpoint,
                status: status.as_u16(),
                class: codes::classify(status.as_u16(), error.code),
                code: error.code,
                message: error.message,
                retry_after,
                request_id,
            });
        }
    }

    async fn send(
        &self,
        org: &OrgTarget,
        target: Target<'_>,
        endpoint: Endpoint,
        body: &Body,
        token: &AccessToken,
        request_id: Uuid,
    ) -> Result<reqwest::Response, IsaError> {
        let method = Method::from_bytes(endpoint.method.as_bytes()).expect("known HTTP method");
        let mut request = self
            .http
            .request(method, format!("{}{}", org.base_url, endpoint.path))
            .bearer_auth(token.expose())
            .header("OrgId", target.org_id)
            .header("RequestId", request_id.to_string())
            .header("AuthorizationContext", target.authorization_context)
            .header(reqwest::header::ACCEPT, "application/json");
        if endpoint.sends_context_type {
            request = request.header("AuthorizationContextType", "ConversationChannelDefinition");
        }
        request = match body {
            Body::Json(json) => request.json(json),
            Body::Multipart { json, file } => {
                let mut form = reqwest::multipart::Form::new().part(
                    "json",
                    reqwest::multipart::Part::text(json.clone())
                        .mime_str("application/json")
                        .expect("valid MIME"),
                );
                if let Some(file) = file {
                    form = form.part(
                        "attachments",
                        reqwest::multipart::Part::stream(file.bytes.clone())
                            .file_name(file.file_name.clone())
                            .mime_str(&file.mime_type)
                            .map_err(|e| IsaError::Invalid {
                                endpoint,
                                invalid: InvalidRequest {
                                    field: "attachments content type".into(),
                                    reason: e.to_string(),
                                },
                            })?,
                    );
                }
                request.multipart(form)
            }
        };
        request.send().await.map_err(|e| IsaError::Transport {
            endpoint,
            reason: if e.is_timeout() {
                "timed out waiting for Salesforce".into()
            } else {
                format!(
                    "request failed: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_else(|| e.to_string())
                )
            },
            timeout: e.is_timeout(),
            request_id,
        })
    }
}

fn check(endpoint: Endpoint, result: Result<(), InvalidRequest>) -> Result<(), IsaError> {
    result.map_err(|invalid| IsaError::Invalid { endpoint, invalid })
}

fn last_request_id<T>(called: &Called<T>) -> Uuid {
    called.request_ids.last().copied().unwrap_or_default()
}

fn refused<T>(
    endpoint: Endpoint,
    code: Option<u32>,
    message: Option<String>,
    called: &Called<T>,
) -> IsaError {
    IsaError::Refused {
        endpoint,
        reason: None,
        class: codes::classify(called.status, code),
        code,
        message,
        request_id: last_request_id(called),
    }
}

fn code_of(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Salesforce's gateways).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
