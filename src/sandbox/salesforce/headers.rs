//! Header checks common to every ISA endpoint (digest §2.4; YAML `parameters` of each path).

use axum::http::header;

use super::{
    EmulatedChannel,
    errors::IsaError,
    lock,
    server::{Incoming, Shared},
    state::TokenProblem,
};

/// Whether an endpoint takes `AuthorizationContextType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextType {
    /// Required (`PATCH /agentWork`, `POST /conversationHistory`).
    Required,
    /// Optional, validated when present (`POST /route`, `PATCH /capabilities`).
    Optional,
    /// Not a parameter of the endpoint; ignored.
    Ignored,
}

/// The body an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyType {
    Json,
    Multipart,
}

/// `AuthorizationContextType` values (YAML `AuthorizationContextType`).
const CONTEXT_TYPES: &[&str] = &[
    "ConversationChannelDefinition",
    "EmbeddedMessagingChannel",
    "ExternalConversationParticipant",
];
/// The one a BYOC channel's CCD goes with.
const CCD_CONTEXT_TYPE: &str = "ConversationChannelDefinition";
/// Length of the `OrgId` header (digest §2.4: 15-character org id).
const ORG_ID_LEN: usize = 15;
/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;

fn header<'a>(incoming: &'a Incoming, name: &str) -> Option<&'a str> {
    incoming.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks every header; returns the channels whose CCD the `AuthorizationContext` names.
pub(crate) fn check<'s>(
    shared: &'s Shared,
    incoming: &Incoming,
    context_type: ContextType,
    body: BodyType,
) -> Result<Vec<&'s EmulatedChannel>, IsaError> {
    // Authorization: Bearer <token issued, not revoked, not expired> → else 401/10004
    // (digest §2.4, §2.2; ERRORCODES 10004).
    let authorization = header(incoming, header::AUTHORIZATION.as_str())
        .ok_or_else(|| IsaError::new(10004, "Authorization header is missing"))?;
    let token = authorization
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IsaError::new(10004, "Authorization must be \"Bearer <access token>\""))?;
    match lock(&shared.state).check_token(token) {
        Ok(()) => {}
        Err(TokenProblem::Unknown) => return Err(IsaError::new(10004, "unknown access token")),
        Err(TokenProblem::Revoked) => return Err(IsaError::new(10004, "access token revoked")),
        Err(TokenProblem::Expired) => return Err(IsaError::new(10004, "access token expired")),
    }

    // OrgId: required, the 15-character id of this org → else 10016 (digest §2.4; YAML OrgId).
    let org_id =
        header(incoming, "OrgId").ok_or_else(|| IsaError::new(10016, "OrgId header is missing"))?;
    if org_id.chars().count() != ORG_ID_LEN {
        return Err(IsaError::new(
            10016,
            format!(
                "OrgId must be the 15-character org id, got {} characters",
                org_id.chars().count()
            ),
        ));
    }
    if org_id != shared.settings.org_id {
        return Err(IsaError::new(
            10016,
            "OrgId is not the org of the access token",
        ));
    }

    // RequestId: required, a UUID → else 10016 (digest §2.4; YAML RequestId).
    let request_id = header(incoming, "RequestId")
        .ok_or_else(|| IsaError::new(10016, "RequestId header is missing"))?;
    if request_id.len() != UUID_LEN || uuid::Uuid::parse_str(request_id).is_err() {
        return Err(IsaError::new(
            10016,
            format!("RequestId must be a UUID, got {request_id:?}"),
        ));
    }

    // AuthorizationContext: required (10016), naming a CCD of this org (10005)
    // (digest §2.4; ERRORCODES 10005).
    let context = header(incoming, "AuthorizationContext")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| IsaError::new(10016, "AuthorizationContext header is missing"))?;
    let channels: Vec<&EmulatedChannel> = shared
        .settings
        .channels
        .iter()
        .filter(|c| c.authorization_context == context)
        .collect();
    if channels.is_empty() {
        return Err(IsaError::new(
            10005,
            format!("no conversation channel definition named {context:?}"),
        ));
    }

    // AuthorizationContextType: required on PATCH /agentWork and POST /conversationHistory
    // (10016 when missing), enum checked where it is a parameter (10093); case-insensitive
    // (digest §2.4, §6 #9; YAML AuthorizationContextType).
    if context_type != ContextType::Ignored {
        match header(incoming, "AuthorizationContextType") {
            None if context_type == ContextType::Required => {
                return Err(IsaError::new(
                    10016,
                    "AuthorizationContextType header is missing",
                ));
            }
            None => {}
            Some(value) => {
                if !CONTEXT_TYPES.iter().any(|t| t.eq_ignore_ascii_case(value)) {
                    return Err(IsaError::new(
                        10093,
                        format!("{value:?} is not one of {}", CONTEXT_TYPES.join(", ")),
                    ));
                }
                if !CCD_CONTEXT_TYPE.eq_ignore_ascii_case(value) {
                    return Err(IsaError::new(
                        10093,
                        format!("{value:?} does not fit a ConversationChannelDefinition context"),
                    ));
                }
            }
        }
    }

    // Content-Type: multipart/form-data for /interactions, application/json elsewhere
    // (digest §2.4, §6 #3) → else 415 / 10016.
    let expected = match body {
        BodyType::Json => "application/json",
        BodyType::Multipart => "multipart/form-data",
    };
    let media_type = incoming.media_type();
    if media_type.as_deref() != Some(expected) {
        return Err(IsaError::new(
            10016,
            format!(
                "Content-Type must be {expected}, got {}",
                media_type.as_deref().unwrap_or("none")
            ),
        )
        .with_status(415));
    }
    Ok(channels)
}

/// The channel `address` if it belongs to the org; 10017 / 404 otherwise, 10001 / 403 when the
/// `AuthorizationContext` names another CCD (ERRORCODES 10001, 10017).
pub(crate) fn channel_for<'s>(
    shared: &'s Shared,
    allowed: &[&'s EmulatedChannel],
    address: &str,
) -> Result<&'s EmulatedChannel, IsaError> {
    let channel = shared
        .settings
        .channels
        .iter()
        .find(|c| c.channel_address_identifier == address)
        .ok_or_else(|| {
            IsaError::new(10017, format!("no channel with address {address:?}")).not_found()
        })?;
    if !allowed
        .iter()
        .any(|c| c.channel_address_identifier == channel.channel_address_identifier)
    {
        return Err(IsaError::new(
            10001,
            format!(
                "channel {address:?} belongs to CCD {:?}",
                channel.authorization_context
            ),
        ));
    }
    Ok(channel)
}
