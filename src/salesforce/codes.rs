//! Interaction Service error vocabulary: every documented ISA error code with a name and a class,
//! the `/messagingSession` `errorReason` values, and the `{code, message}` error body.
//!
//! The code table is data (one sorted `static` slice), not `match` arms, so that the remediation
//! layer, the docs and `byocd explain` can all read the same rows. Each row carries an
//! [`ErrorClass`]: the broad kind of fault, which the remediation table (`lifecycle::remediation`) maps to an action (retry, re-mint,
//! pause the channel, dead-letter, reconcile). Where the class is a judgement call, the reason sits
//! beside the row.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of fault an Interaction Service error reports, which decides what the daemon does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Salesforce is temporarily unable to serve the call (read-only org migration 10019,
    /// precondition/abort races 10055 and 10056, a downstream timeout 10094, internal errors such
    /// as 500 or 20004); the same request may succeed later, so retry it with backoff.
    Retryable,
    /// The access token is rejected or does not carry the needed scope or context (10003, 10004,
    /// 10005); re-mint the token once for 10004 / HTTP 401, otherwise fix the connected app.
    Authorisation,
    /// The Salesforce set-up of the org or channel, or our own configuration of it, is wrong
    /// (AuthorizationContext mismatches, a non-CUSTOM or inactive channel, a missing conversation
    /// channel definition, a consent owner other than Partner, an org not ready for a feature, no
    /// access to an API); nothing changes until an admin acts, so the channel is paused.
    Configuration,
    /// The request itself is invalid (field lengths, enum values, identifiers, ids that do not
    /// match, file size); sending it again cannot succeed, so it is dead-lettered.
    BadInput,
    /// The conversation, session, end user or record the request names no longer exists in
    /// Salesforce; local state is reconciled with that fact.
    NotFound,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::Retryable,
        ErrorClass::Authorisation,
        ErrorClass::Configuration,
        ErrorClass::BadInput,
        ErrorClass::NotFound,
    ];

    /// A stable snake_case label for logs, metrics and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Authorisation => "authorisation",
            ErrorClass::Configuration => "configuration",
            ErrorClass::BadInput => "bad_input",
            ErrorClass::NotFound => "not_found",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One documented Interaction Service error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The numeric code found in the `code` field of the error body.
    pub code: u32,
    /// A short PascalCase name derived from the code's meaning, unique across the table.
    pub name: &'static str,
    /// What kind of fault the code reports.
    pub class: ErrorClass,
    /// One line saying what went wrong, in our words.
    pub summary: &'static str,
}

const fn row(code: u32, name: &'static str, class: ErrorClass, summary: &'static str) -> CodeInfo {
    CodeInfo {
        code,
        name,
        class,
        summary,
    }
}

use ErrorClass::{Authorisation, BadInput, Configuration, NotFound, Retryable};

/// Every code of Salesforce's Interaction Service error list, sorted by code.
static CODES: &[CodeInfo] = &[
    // Other errors.
    row(
        500,
        "InternalServerError",
        Retryable,
        "Salesforce hit an internal error; if it persists, Salesforce Support must look",
    ),
    // Client errors.
    row(
        10001,
        "AuthorizationContextInvalidForChannel",
        Configuration,
        "the AuthorizationContext header does not belong to the addressed channel",
    ),
    row(
        10002,
        "InvalidChannelType",
        Configuration,
        "the addressed channel has a channel type this API does not accept",
    ),
    row(
        10003,
        "MissingInteractionApiScope",
        Authorisation,
        "the access token lacks the interaction_api scope of the connected app",
    ),
    row(
        10004,
        "InvalidAccessToken",
        Authorisation,
        "the access token is not (or no longer) valid",
    ),
    row(
        10005,
        "AuthorizationContextInvalidForToken",
        Authorisation,
        "the AuthorizationContext is not valid for the user or app behind the access token",
    ),
    row(
        10006,
        "InvalidChannelProvider",
        Configuration,
        "the addressed channel has a channel provider this API does not accept",
    ),
    row(
        10007,
        "EmptyFileId",
        BadInput,
        "an attachment's file id is empty",
    ),
    row(
        10008,
        "FileTooLarge",
        BadInput,
        "an attachment is larger than 25 MB",
    ),
    row(
        10009,
        "EmptyOrMissingFile",
        BadInput,
        "an attachment file is empty or absent",
    ),
    row(
        10010,
        "MissingContentLength",
        BadInput,
        "an interaction's contentLength is empty",
    ),
    row(
        10011,
        "AttachmentCountMismatch",
        BadInput,
        "the number of AttachmentInteraction entries differs from the number of files",
    ),
    row(
        10012,
        "InvalidWorkItemId",
        BadInput,
        "the workItemId is not a valid MessagingSession id",
    ),
    row(
        10013,
        "CapacityFieldsExclusive",
        BadInput,
        "capacityWeight and capacityPercentage were both given; only one is allowed",
    ),
    row(
        10014,
        "NegativeCapacityWeight",
        BadInput,
        "capacityWeight is below zero",
    ),
    row(
        10015,
        "CapacityPercentageOutOfRange",
        BadInput,
        "capacityPercentage lies outside 0 to 100",
    ),
    // Header values come mostly from configuration (OrgId, AuthorizationContext) and are checked
    // before sending; if Salesforce still rejects one, every call on the channel would fail the
    // same way, so pause rather than dead-letter each request in turn.
    row(
        10016,
        "InvalidHeader",
        Configuration,
        "a request header is missing or has an invalid value",
    ),
    // The channel address comes from our channel configuration, not from the end user.
    row(
        10017,
        "ChannelAddressNotFound",
        Configuration,
        "no channel exists with the given channelAddressIdentifier",
    ),
    row(
        10018,
        "InvalidConversationIdentifier",
        BadInput,
        "the conversation identifier is not valid",
    ),
    row(
        10019,
        "OrgMigrationReadOnly",
        Retryable,
        "the org is read-only while it is being migrated; try again later",
    ),
    row(
        10020,
        "InvalidEndUserClientId",
        BadInput,
        "the endUserClientId is not valid",
    ),
    row(
        10021,
        "InvalidConsentStatus",
        BadInput,
        "the consent status is not one of the allowed values",
    ),
    row(
        10022,
        "ConsentOwnerNotPartner",
        Configuration,
        "consent can only be updated when the channel's consent owner is Partner",
    ),
    row(
        10023,
        "ChannelSupportsKeywords",
        Configuration,
        "consent cannot be updated on a channel whose SupportsKeywords is true",
    ),
    // Structural: our own validation requires both ids for flow routing before sending.
    row(
        10024,
        "FlowRoutingFieldsMissing",
        BadInput,
        "flow-based routing needs both a flow id and a fallback queue id",
    ),
    // The conversation is gone on Salesforce's side: reconcile, do not resend.
    row(
        10025,
        "ConversationNotFoundForChannel",
        NotFound,
        "no conversation exists for this channel address and the CUSTOM channel type",
    ),
    row(
        10026,
        "ConversationChannelDefinitionMissing",
        Configuration,
        "the addressed channel has no conversation channel definition",
    ),
    // `to` is the channel address from our configuration; a rejected value fails every message.
    row(
        10027,
        "InvalidTo",
        Configuration,
        "the \"to\" field is not a valid channel address",
    ),
    row(
        10028,
        "InvalidFrom",
        BadInput,
        "the \"from\" field is not a valid end-user address",
    ),
    row(
        10029,
        "InvalidInteractionList",
        BadInput,
        "the list of interactions is not valid",
    ),
    row(
        10030,
        "FlowOrQueueRequired",
        BadInput,
        "a route request must name either a flow or a queue",
    ),
    row(
        10031,
        "ChannelAddressInactive",
        Configuration,
        "the channel with this channelAddressIdentifier is not active",
    ),
    // A well-formed queue id that the org does not know: the routing target in config is wrong.
    row(
        10032,
        "InvalidQueueId",
        Configuration,
        "the queue id given for routing is not valid in this org",
    ),
    row(
        10033,
        "UnexpectedRoutingErrorMessage",
        BadInput,
        "a successful routing result must not carry an errorMessage",
    ),
    row(
        10034,
        "MissingRoutingErrorMessage",
        BadInput,
        "a failed routing result must carry an errorMessage",
    ),
    row(
        10035,
        "ChannelNotCustom",
        Configuration,
        "the messaging channel is not of type CUSTOM",
    ),
    // The rep has already left: the participant record no longer exists, so reconcile.
    row(
        10036,
        "ParticipantNotFound",
        NotFound,
        "the participant to remove is not in the conversation",
    ),
    row(
        10037,
        "UnsupportedAppType",
        BadInput,
        "the participant appType is not supported",
    ),
    row(
        10038,
        "UnsupportedParticipantRole",
        BadInput,
        "the participant role is not supported",
    ),
    row(
        10039,
        "ParticipantsRequired",
        BadInput,
        "the conversation needs participants",
    ),
    row(
        10042,
        "EndUserParticipantRequired",
        BadInput,
        "the conversation must include one end-user participant",
    ),
    row(
        10043,
        "InvalidParticipantRoles",
        BadInput,
        "every participant must have the Chatbot or EndUser role",
    ),
    row(
        10044,
        "MultipleEndUserParticipants",
        BadInput,
        "the conversation may include only one end-user participant",
    ),
    row(
        10045,
        "InvalidMessageEntryFormat",
        BadInput,
        "a message entry is not in a valid format",
    ),
    // Resending carries the same timestamp and fails again.
    row(
        10046,
        "ClientTimestampOutOfWindow",
        BadInput,
        "clientTimestamp falls outside the allowed response window",
    ),
    row(
        10047,
        "InvalidMessageType",
        BadInput,
        "the message type is not valid",
    ),
    row(
        10048,
        "InvalidFormatType",
        BadInput,
        "the format type is not valid",
    ),
    row(
        10049,
        "InvalidMessageFormatCombination",
        BadInput,
        "the message type and format type do not go together",
    ),
    // The custom integration is part of the channel set-up, not of one request.
    row(
        10050,
        "InvalidCustomIntegration",
        Configuration,
        "the custom integration named in the request is not valid",
    ),
    row(
        10051,
        "IncorrectFileSize",
        BadInput,
        "the declared byte size of an uploaded attachment is wrong",
    ),
    // Same reasoning as 10027: the channel address comes from configuration.
    row(
        10052,
        "InvalidConversationChannelAddress",
        Configuration,
        "the channelAddressIdentifier of a conversation request is not valid",
    ),
    row(
        10053,
        "InvalidConversationParticipants",
        BadInput,
        "the participants of a conversation request are invalid or empty",
    ),
    row(
        10054,
        "InvalidParticipantSubject",
        BadInput,
        "a participant's subject in a conversation request is not valid",
    ),
    // Salesforce itself asks for a retry.
    row(
        10055,
        "ConversationPreconditionFailed",
        Retryable,
        "a precondition on the conversation failed; retry",
    ),
    row(
        10056,
        "ConversationProcessingAborted",
        Retryable,
        "processing of the conversation was aborted; retry",
    ),
    row(
        10057,
        "NoConversationHistoryAccess",
        Configuration,
        "the org may not use the ConversationHistory API (BYOC for CCaaS partners only)",
    ),
    // Vague by design: the fault lies with the customer org (its set-up or automation), which
    // neither a retry nor a changed request fixes; an admin has to look.
    row(
        10058,
        "CustomerError",
        Configuration,
        "Salesforce reports an error on the customer org's side",
    ),
    row(
        10059,
        "MissingInteractionOrMessageId",
        BadInput,
        "the interaction id or the message id is empty",
    ),
    row(
        10060,
        "InteractionMessageIdMismatch",
        BadInput,
        "the interaction id and the message id differ",
    ),
    row(
        10061,
        "InvalidSessionStartTime",
        BadInput,
        "the messaging session StartTime is not valid",
    ),
    row(
        10062,
        "UnsupportedEndUserMessageType",
        BadInput,
        "end users may only send StaticContent, ChoicesResponse or FormResponse messages",
    ),
    row(
        10063,
        "HistorySessionNotSupported",
        Configuration,
        "the org cannot yet take a messagingSession in a conversation history upload",
    ),
    row(
        10064,
        "InvalidSessionEndTime",
        BadInput,
        "the messaging session EndTime is not valid",
    ),
    row(
        10065,
        "EndUserParticipantHasLeftTime",
        BadInput,
        "an end-user participant must not have a leftTime",
    ),
    row(
        10066,
        "ChatbotLeftTimeRequired",
        BadInput,
        "a chatbot participant of an ended conversation needs a leftTime",
    ),
    row(
        10067,
        "JoinedTimeNotBeforeLeftTime",
        BadInput,
        "a participant's joinedTime must come before its leftTime",
    ),
    row(
        10068,
        "UnapprovedParticipant",
        BadInput,
        "a message comes from someone who is not an approved participant",
    ),
    row(
        10069,
        "ChannelAddressOrAuthorizationInvalid",
        Configuration,
        "the channel address or the authorization set-up for it is not valid",
    ),
    row(
        10070,
        "ChannelAddressNotInAuthorizationContext",
        Configuration,
        "the channel address is not configured with the given AuthorizationContext",
    ),
    row(
        10071,
        "SessionNotFound",
        NotFound,
        "the messaging session does not exist",
    ),
    row(
        10072,
        "InvalidSessionId",
        BadInput,
        "the session id is not valid",
    ),
    row(
        10073,
        "DuplicateMessageId",
        BadInput,
        "two message entries share an id; each needs its own",
    ),
    row(
        10074,
        "MessageTimestampOutsideParticipation",
        BadInput,
        "a message's timestamp falls outside the sender's time in the conversation",
    ),
    row(
        10075,
        "ConferenceRoutingNotSupported",
        Configuration,
        "the org is not ready for conference routing; use Initial or Transfer or upgrade",
    ),
    row(
        10076,
        "CancelReasonNotSupported",
        Configuration,
        "the org is not ready for cancelReason on clearing a route; omit it or upgrade",
    ),
    row(
        10077,
        "ConferenceAgentActionNotSupported",
        Configuration,
        "the org is not ready for the Conference agent action; use Transfer or upgrade",
    ),
    row(
        10078,
        "InvalidHistoryPayload",
        BadInput,
        "a parameter of the conversation history upload is not valid",
    ),
    row(
        10082,
        "InvalidWorkId",
        BadInput,
        "the workId of an AgentWork update is not valid",
    ),
    row(
        10083,
        "InvalidContextType",
        BadInput,
        "the contextType of an AgentWork update is not supported",
    ),
    row(10084, "InvalidBotId", BadInput, "the botId is not valid"),
    row(
        10085,
        "InvalidAgentWorkStatus",
        BadInput,
        "the status of an AgentWork update is not valid",
    ),
    // Bring Your Own Bot only; the external bot id comes from the bot's set-up, not a request.
    row(
        10086,
        "InvalidExternalBotId",
        Configuration,
        "the ExternalBotId is not valid",
    ),
    row(
        10087,
        "AuthorizationContextInvalidForBot",
        Configuration,
        "the AuthorizationContext is not valid for the given botId",
    ),
    row(
        10088,
        "BotInactive",
        Configuration,
        "the bot is inactive and cannot take conversations",
    ),
    row(
        10089,
        "InvalidParameters",
        BadInput,
        "the parameters passed to the API are not valid",
    ),
    row(
        10090,
        "InvalidEntriesStartTime",
        BadInput,
        "the StartTime for fetching conversation entries is not valid",
    ),
    row(
        10091,
        "EndTimeNotAfterStartTime",
        BadInput,
        "the EndTime must come after the StartTime",
    ),
    row(
        10092,
        "InvalidLimit",
        BadInput,
        "the limit lies outside the allowed range",
    ),
    // Fixed per endpoint by the client, not taken from configuration.
    row(
        10093,
        "InvalidAuthorizationContextType",
        BadInput,
        "the AuthorizationContextType header is not valid",
    ),
    row(
        10094,
        "DownstreamTimeout",
        Retryable,
        "a service behind the API timed out; try again later",
    ),
    row(
        10095,
        "UndeterminableMimeType",
        BadInput,
        "the MIME type of the uploaded file cannot be determined",
    ),
    // The limit is set per channel in Salesforce, but it is this request's value that is too long.
    row(
        10096,
        "RoutingAttributeTooLong",
        BadInput,
        "a channel variable in the routing attributes exceeds the channel's configured length",
    ),
    row(
        10097,
        "InvalidParticipantOperation",
        BadInput,
        "the participant operation is not valid",
    ),
    row(
        10098,
        "EmptyProgressIndicatorCapability",
        BadInput,
        "progressIndicatorCapability is present but empty",
    ),
    row(
        10099,
        "OrgMissingPermissions",
        Configuration,
        "the org does not have the permissions this API needs",
    ),
    row(
        10100,
        "EmptyRequestBody",
        BadInput,
        "the request body is missing or empty",
    ),
    row(
        10101,
        "DuplicateParticipants",
        BadInput,
        "the same participant appears more than once",
    ),
    row(
        10102,
        "InvalidSessionOperation",
        BadInput,
        "the operation of a messaging session request is not valid",
    ),
    row(
        10103,
        "InvalidOperationBy",
        BadInput,
        "the operationBy of a messaging session request is not valid",
    ),
    row(
        10104,
        "NoMessagingSessionAccess",
        Configuration,
        "the integration user has no access to the MessagingSession record",
    ),
    row(
        10105,
        "EndUserNotFound",
        NotFound,
        "the messaging end user does not exist",
    ),
    row(
        10106,
        "SessionIdRequired",
        BadInput,
        "inactivating a messaging session needs its session id",
    ),
    // AgentWork (partner-owned routing) codes.
    row(
        15102,
        "CcaasNotEnabled",
        Configuration,
        "Contact Center as a Service must be enabled to use this API",
    ),
    // State of one end user: pausing the channel would hold up everyone else, and resending
    // cannot succeed until that end user opts in, so dead-letter this request.
    row(
        15103,
        "EndUserNotOptedIn",
        BadInput,
        "the messaging end user is not fully opted in",
    ),
    row(
        15104,
        "ChannelNotLinkedToContactCenter",
        Configuration,
        "the messaging channel is not linked to a contact center",
    ),
    row(
        15105,
        "UserLacksPartnerMessaging",
        Configuration,
        "the user needs the Partner Messaging permission to use this API",
    ),
    row(15106, "InvalidUserId", BadInput, "the userId is not valid"),
    row(
        15107,
        "ConversationWorkItemMismatch",
        BadInput,
        "the conversationId does not belong to the workItemId's conversation",
    ),
    row(
        15108,
        "NoServiceChannel",
        Configuration,
        "no service channel is found for this messaging session",
    ),
    // Not transient: resending can only hit the same active AgentWork again. The work is
    // already with that rep, so later work treats this answer to a retried create as success.
    row(
        15109,
        "AgentWorkAlreadyExists",
        BadInput,
        "an active AgentWork already exists for this userId and workItemId",
    ),
    row(
        15110,
        "InvalidSessionWorkItemId",
        BadInput,
        "the workItemId is not a valid MessagingSession id",
    ),
    row(
        15111,
        "WorkItemNotFound",
        NotFound,
        "no messaging session exists for the workItemId",
    ),
    // Which presence statuses map to which service channels is org set-up done by an admin.
    row(
        15112,
        "AgentStatusNotOnChannel",
        Configuration,
        "the rep's presence status is not associated with this work's channel",
    ),
    // Service errors.
    // A failed lookup inside Salesforce, not a missing conversation: retry.
    row(
        20002,
        "ConversationLookupFailed",
        Retryable,
        "Salesforce failed to list conversations for the end-user address",
    ),
    row(
        20003,
        "EmptyInteractionList",
        BadInput,
        "the request carries no interactions",
    ),
    // An internal routing failure while fetching org permissions.
    row(
        20004,
        "OrgPermsPodNotFound",
        Retryable,
        "Salesforce could not find the pod holding the org's permissions",
    ),
    row(
        25005,
        "EndUserNotFoundForWorkItem",
        NotFound,
        "no messaging end user was found for the workItemId",
    ),
    row(
        25006,
        "ConversationNotFoundForWorkItem",
        NotFound,
        "no conversation was found for the workItemId",
    ),
    row(
        25007,
        "ConversationIdNotFoundForWorkItem",
        NotFound,
        "no conversationId was found for the workItemId",
    ),
];

/// The row for `code`, if Salesforce documents it.
pub fn lookup(code: u32) -> Option<&'static CodeInfo> {
    CODES
        .binary_search_by_key(&code, |info| info.code)
        .ok()
        .map(|index| &CODES[index])
}

/// Every documented code, sorted by code.
pub fn all() -> &'static [CodeInfo] {
    CODES
}

/// Why a `POST /messagingSession` call answered `success: false` (its `errorReason`).
///
/// The twelve values of the endpoint's documentation, `NO_ACCESS` from the OpenAPI file, and
/// [`ErrorReason::Unknown`] for anything else, which keeps the raw string so that it can be logged,
/// audited and serialized back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// `ACTIVE_CONVERSATION_NOT_FOUND`: no active conversation matches the request.
    ActiveConversationNotFound,
    /// `END_SESSION_FAILED`: Salesforce could not end the session.
    EndSessionFailed,
    /// `INTERNAL_ERROR`: an internal Salesforce failure.
    InternalError,
    /// `PERMISSION_DENIED`: the caller may not end or inactivate this session.
    PermissionDenied,
    /// `CHANNEL_ADDRESS_NOT_FOUND`: no channel has the given channel address.
    ChannelAddressNotFound,
    /// `SESSION_NOT_FOUND`: the messaging session does not exist.
    SessionNotFound,
    /// `END_USER_NOT_FOUND`: the messaging end user does not exist.
    EndUserNotFound,
    /// `ORG_NOT_FOUND`: the org named by the request is unknown.
    OrgNotFound,
    /// `CONVERSATION_PRECONDITION_FAILED`: a precondition on the conversation failed.
    ConversationPreconditionFailed,
    /// `CONVERSATION_PROCESSING_ABORTED`: processing of the conversation was aborted.
    ConversationProcessingAborted,
    /// `CHANNEL_ADDRESS_IS_INACTIVE`: the channel exists but is not active.
    ChannelAddressIsInactive,
    /// `CUSTOMER_ERROR`: an error on the customer org's side.
    CustomerError,
    /// `NO_ACCESS`: no access to the MessagingSession record (listed only in the OpenAPI file).
    NoAccess,
    /// Any other value, kept verbatim.
    Unknown(String),
}

impl ErrorReason {
    /// Every documented value, in the order the documentation lists them, then `NO_ACCESS`.
    pub const ALL_KNOWN: &'static [ErrorReason] = &[
        ErrorReason::ActiveConversationNotFound,
        ErrorReason::EndSessionFailed,
        ErrorReason::InternalError,
        ErrorReason::PermissionDenied,
        ErrorReason::ChannelAddressNotFound,
        ErrorReason::SessionNotFound,
        ErrorReason::EndUserNotFound,
        ErrorReason::OrgNotFound,
        ErrorReason::ConversationPreconditionFailed,
        ErrorReason::ConversationProcessingAborted,
        ErrorReason::ChannelAddressIsInactive,
        ErrorReason::CustomerError,
        ErrorReason::NoAccess,
    ];

    /// Reads a wire value; anything undocumented becomes [`ErrorReason::Unknown`].
    pub fn parse(raw: &str) -> ErrorReason {
        Self::ALL_KNOWN
            .iter()
            .find(|known| known.as_str() == raw)
            .cloned()
            .unwrap_or_else(|| ErrorReason::Unknown(raw.to_owned()))
    }

    /// The wire string (the raw value for [`ErrorReason::Unknown`]).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorReason::ActiveConversationNotFound => "ACTIVE_CONVERSATION_NOT_FOUND",
            ErrorReason::EndSessionFailed => "END_SESSION_FAILED",
            ErrorReason::InternalError => "INTERNAL_ERROR",
            ErrorReason::PermissionDenied => "PERMISSION_DENIED",
            ErrorReason::ChannelAddressNotFound => "CHANNEL_ADDRESS_NOT_FOUND",
            ErrorReason::SessionNotFound => "SESSION_NOT_FOUND",
            ErrorReason::EndUserNotFound => "END_USER_NOT_FOUND",
            ErrorReason::OrgNotFound => "ORG_NOT_FOUND",
            ErrorReason::ConversationPreconditionFailed => "CONVERSATION_PRECONDITION_FAILED",
            ErrorReason::ConversationProcessingAborted => "CONVERSATION_PROCESSING_ABORTED",
            ErrorReason::ChannelAddressIsInactive => "CHANNEL_ADDRESS_IS_INACTIVE",
            ErrorReason::CustomerError => "CUSTOMER_ERROR",
            ErrorReason::NoAccess => "NO_ACCESS",
            ErrorReason::Unknown(raw) => raw,
        }
    }

    /// Whether this is one of the documented values.
    pub fn is_known(&self) -> bool {
        !matches!(self, ErrorReason::Unknown(_))
    }

    /// The kind of fault this reason reports.
    pub fn class(&self) -> ErrorClass {
        match self {
            // The conversation the session belonged to is gone: reconcile local state, like 10025.
            ErrorReason::ActiveConversationNotFound => ErrorClass::NotFound,
            // A failure of the end operation itself, with no hint that the request or the set-up
            // is at fault: retry with backoff (which ends in a dead letter and an alert).
            ErrorReason::EndSessionFailed => ErrorClass::Retryable,
            // Salesforce's own failure, like code 500.
            ErrorReason::InternalError => ErrorClass::Retryable,
            // The integration user or app lacks a permission: an admin has to grant it.
            ErrorReason::PermissionDenied => ErrorClass::Configuration,
            // The channel address comes from our configuration, like code 10017.
            ErrorReason::ChannelAddressNotFound => ErrorClass::Configuration,
            // The session no longer exists (code 10071): mark it ended locally.
            ErrorReason::SessionNotFound => ErrorClass::NotFound,
            // The end user no longer exists (code 10105).
            ErrorReason::EndUserNotFound => ErrorClass::NotFound,
            // The OrgId we send comes from configuration and names no org: an admin must fix it.
            ErrorReason::OrgNotFound => ErrorClass::Configuration,
            // Same condition as code 10055, which asks for a retry.
            ErrorReason::ConversationPreconditionFailed => ErrorClass::Retryable,
            // Same condition as code 10056, which asks for a retry.
            ErrorReason::ConversationProcessingAborted => ErrorClass::Retryable,
            // The channel was deactivated in Salesforce, like code 10031.
            ErrorReason::ChannelAddressIsInactive => ErrorClass::Configuration,
            // Same as code 10058: the customer org's side is at fault and an admin must look.
            ErrorReason::CustomerError => ErrorClass::Configuration,
            // Same as code 10104: the integration user cannot see MessagingSession records.
            ErrorReason::NoAccess => ErrorClass::Configuration,
            // Nothing is known, so pick the class whose action is bounded and loses nothing:
            // a retry with backoff ends in a dead letter and an alert that a human reads. NotFound
            // could wrongly end a live session locally, Configuration would pause a whole channel
            // and BadInput would give up without a second try.
            ErrorReason::Unknown(_) => ErrorClass::Retryable,
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorReason {
    fn from(raw: &str) -> Self {
        ErrorReason::parse(raw)
    }
}

impl Serialize for ErrorReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ErrorReason::parse(&raw))
    }
}

/// The message Salesforce documents for requests beyond its rate limit; neither the HTTP status
/// nor a code for it is documented, so the message is the only reliable sign.
pub const RATE_LIMIT_MESSAGE: &str = "Interaction request rate limit exceeded";

/// The `{ "code": <int>, "message": "<string>" }` body of an Interaction Service error.
///
/// Read tolerantly: either field may be missing or `null`, `code` may be a number or a string
/// holding one, a field of any other shape is treated as missing, and unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsaErrorBody {
    /// The Interaction Service error code, when present and numeric.
    #[serde(default, deserialize_with = "lenient_code")]
    pub code: Option<u32>,
    /// Salesforce's human-readable message, when present and a string.
    #[serde(default, deserialize_with = "lenient_message")]
    pub message: Option<String>,
}

impl IsaErrorBody {
    /// Parses a raw response body; anything that is not a JSON object (an HTML error page from a
    /// proxy, an empty body, an array) yields an empty body, since the HTTP status still
    /// classifies the error.
    pub fn parse(body: &[u8]) -> IsaErrorBody {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value @ serde_json::Value::Object(_)) => {
                serde_json::from_value(value).unwrap_or_default()
            }
            _ => IsaErrorBody::default(),
        }
    }

    /// The table row for the body's code, if the code is documented.
    pub fn info(&self) -> Option<&'static CodeInfo> {
        self.code.and_then(lookup)
    }

    /// Like [`classify`], and in addition treats the documented rate-limit message as
    /// [`ErrorClass::Retryable`] whatever status carries it, when no documented code decides.
    pub fn class(&self, http_status: u16) -> ErrorClass {
        if self.info().is_none()
            && self
                .message
                .as_deref()
                .is_some_and(|message| message.contains(RATE_LIMIT_MESSAGE))
        {
            return ErrorClass::Retryable;
        }
        classify(http_status, self.code)
    }
}

/// The shapes a `code` field has been seen in, or might arrive in.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawCode {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

fn lenient_code<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let raw = Option::<RawCode>::deserialize(deserializer)?;
    Ok(match raw {
        Some(RawCode::Unsigned(n)) => u32::try_from(n).ok(),
        Some(RawCode::Signed(n)) => u32::try_from(n).ok(),
        Some(RawCode::Float(n)) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => {
            // Exact: integral and within range, checked just above.
            Some(n as u32)
        }
        Some(RawCode::Text(text)) => text.trim().parse().ok(),
        Some(RawCode::Float(_) | RawCode::Other(_)) | None => None,
    })
}

/// The shapes a `message` field might arrive in.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMessage {
    Text(String),
    Other(serde::de::IgnoredAny),
}

fn lenient_message<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<RawMessage>::deserialize(deserializer)? {
        Some(RawMessage::Text(text)) => Some(text),
        Some(RawMessage::Other(_)) | None => None,
    })
}

/// Classifies a failed Interaction Service call from its HTTP status and the body's `code`.
///
/// Salesforce does not document which HTTP status goes with which code, so:
///
/// - A documented `code` decides: its row's class, whatever the status.
/// - Otherwise (no code, or one missing from the table) the status decides:
///   - 401 → [`ErrorClass::Authorisation`]: the token was refused; re-mint it once.
///   - 403 → [`ErrorClass::Configuration`]: authenticated but not allowed; a permission or
///     scope in the org is missing.
///   - 404 → [`ErrorClass::NotFound`]: the thing the call names is gone.
///   - 408, 429, 500, 502, 503, 504 → [`ErrorClass::Retryable`]: timeouts, throttling and
///     server or gateway trouble pass.
///   - any other 4xx → [`ErrorClass::BadInput`]: the server blames the request.
///   - any other 5xx → [`ErrorClass::Retryable`]: the server blames itself.
///   - anything else (1xx, 2xx, 3xx reported as a failure) → [`ErrorClass::Retryable`]: an
///     unexpected answer, most likely from something in between; the retry budget bounds it and
///     its dead letter raises an alert.
pub fn classify(http_status: u16, code: Option<u32>) -> ErrorClass {
    if let Some(info) = code.and_then(lookup) {
        return info.class;
    }
    match http_status {
        401 => ErrorClass::Authorisation,
        403 => ErrorClass::Configuration,
        404 => ErrorClass::NotFound,
        408 | 429 | 500 | 502 | 503 | 504 => ErrorClass::Retryable,
        400..=499 => ErrorClass::BadInput,
        500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_labels_are_distinct_snake_case() {
        let labels: Vec<&str> = ErrorClass::ALL.iter().map(|class| class.as_str()).collect();
        assert_eq!(
            labels,
            [
                "retryable",
                "authorisation",
                "configuration",
                "bad_input",
                "not_found"
            ]
        );
        assert_eq!(ErrorClass::BadInput.to_string(), "bad_input");
    }

    #[test]
    fn lookup_finds_documented_codes_and_only_those() {
        let token = lookup(10004).expect("10004 is documented");
        assert_eq!(token.name, "InvalidAccessToken");
        assert_eq!(token.class, ErrorClass::Authorisation);
        assert_eq!(lookup(10008).map(|i| i.name), Some("FileTooLarge"));
        assert_eq!(
            lookup(15109).map(|i| i.name),
            Some("AgentWorkAlreadyExists")
        );
        assert_eq!(lookup(500).map(|i| i.class), Some(ErrorClass::Retryable));
        // Gaps in the documented numbering stay unknown.
        for missing in [
            0, 10000, 10040, 10041, 10079, 10080, 10081, 10107, 15101, 20001,
        ] {
            assert!(lookup(missing).is_none(), "{missing} is not documented");
        }
    }

    #[test]
    fn all_is_sorted_and_every_row_is_reachable() {
        let rows = all();
        assert!(rows.windows(2).all(|pair| pair[0].code < pair[1].code));
        for info in rows {
            assert_eq!(lookup(info.code), Some(info));
            assert!(!info.summary.is_empty());
        }
    }

    #[test]
    fn classes_of_the_documented_retry_hints() {
        for code in [10019, 10055, 10056, 10094, 500, 20004] {
            assert_eq!(lookup(code).unwrap().class, ErrorClass::Retryable, "{code}");
        }
        for code in [10003, 10004, 10005] {
            assert_eq!(
                lookup(code).unwrap().class,
                ErrorClass::Authorisation,
                "{code}"
            );
        }
        for code in [
            10001, 10022, 10026, 10031, 10035, 10057, 10075, 10076, 10077,
        ] {
            assert_eq!(
                lookup(code).unwrap().class,
                ErrorClass::Configuration,
                "{code}"
            );
        }
        for code in [10008, 10013, 10060, 10102, 15109] {
            assert_eq!(lookup(code).unwrap().class, ErrorClass::BadInput, "{code}");
        }
        for code in [10025, 10071, 10105, 15111, 25005, 25006, 25007] {
            assert_eq!(lookup(code).unwrap().class, ErrorClass::NotFound, "{code}");
        }
    }

    #[test]
    fn error_reason_round_trips_every_known_value() {
        assert_eq!(ErrorReason::ALL_KNOWN.len(), 13);
        for reason in ErrorReason::ALL_KNOWN {
            assert!(reason.is_known());
            assert_eq!(&ErrorReason::parse(reason.as_str()), reason);
            let json = serde_json::to_string(reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            let back: ErrorReason = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, reason);
        }
    }

    #[test]
    fn error_reason_keeps_unknown_values_verbatim() {
        let reason: ErrorReason = serde_json::from_str("\"SOMETHING_NEW\"").unwrap();
        assert_eq!(reason, ErrorReason::Unknown("SOMETHING_NEW".to_owned()));
        assert!(!reason.is_known());
        assert_eq!(reason.as_str(), "SOMETHING_NEW");
        assert_eq!(reason.to_string(), "SOMETHING_NEW");
        assert_eq!(serde_json::to_string(&reason).unwrap(), "\"SOMETHING_NEW\"");
        // Matching is exact: case differences are not silently folded into a known value.
        assert_eq!(
            ErrorReason::from("session_not_found"),
            ErrorReason::Unknown("session_not_found".to_owned())
        );
        assert!(serde_json::from_str::<ErrorReason>("42").is_err());
    }

    #[test]
    fn error_reason_classes() {
        use ErrorReason as R;
        let expected = [
            (R::ActiveConversationNotFound, ErrorClass::NotFound),
            (R::EndSessionFailed, ErrorClass::Retryable),
            (R::InternalError, ErrorClass::Retryable),
            (R::PermissionDenied, ErrorClass::Configuration),
            (R::ChannelAddressNotFound, ErrorClass::Configuration),
            (R::SessionNotFound, ErrorClass::NotFound),
            (R::EndUserNotFound, ErrorClass::NotFound),
            (R::OrgNotFound, ErrorClass::Configuration),
            (R::ConversationPreconditionFailed, ErrorClass::Retryable),
            (R::ConversationProcessingAborted, ErrorClass::Retryable),
            (R::ChannelAddressIsInactive, ErrorClass::Configuration),
            (R::CustomerError, ErrorClass::Configuration),
            (R::NoAccess, ErrorClass::Configuration),
            (R::Unknown("X".to_owned()), ErrorClass::Retryable),
        ];
        for (reason, class) in expected {
            assert_eq!(reason.class(), class, "{reason}");
        }
        // Reasons with a twin code agree with the code table.
        let twins = [
            (R::ConversationPreconditionFailed, 10055),
            (R::ConversationProcessingAborted, 10056),
            (R::ChannelAddressNotFound, 10017),
            (R::ChannelAddressIsInactive, 10031),
            (R::SessionNotFound, 10071),
            (R::EndUserNotFound, 10105),
            (R::CustomerError, 10058),
            (R::NoAccess, 10104),
        ];
        for (reason, code) in twins {
            assert_eq!(
                reason.class(),
                lookup(code).unwrap().class,
                "{reason} vs {code}"
            );
        }
    }

    #[test]
    fn error_body_accepts_numbers_strings_and_gaps() {
        let parse = |json: &str| serde_json::from_str::<IsaErrorBody>(json).unwrap();
        assert_eq!(
            parse(r#"{"code": 10004, "message": "bad token"}"#),
            IsaErrorBody {
                code: Some(10004),
                message: Some("bad token".to_owned())
            }
        );
        assert_eq!(parse(r#"{"code": "10019"}"#).code, Some(10019));
        assert_eq!(parse(r#"{"code": " 10019 "}"#).code, Some(10019));
        assert_eq!(parse(r#"{"code": 10019.0}"#).code, Some(10019));
        assert_eq!(parse(r#"{"message": "only"}"#).code, None);
        assert_eq!(parse("{}"), IsaErrorBody::default());
        assert_eq!(
            parse(r#"{"code": null, "message": null}"#),
            IsaErrorBody::default()
        );
        // Shapes that carry no usable code are treated as missing, not as a parse failure.
        for odd in [
            r#""abc""#,
            "-1",
            "1.5",
            "true",
            "[1]",
            r#"{"n": 1}"#,
            "99999999999",
        ] {
            let body = parse(&format!(r#"{{"code": {odd}, "message": "m"}}"#));
            assert_eq!(body.code, None, "{odd}");
            assert_eq!(body.message.as_deref(), Some("m"));
        }
        assert_eq!(parse(r#"{"code": 1, "message": 5}"#).message, None);
        assert_eq!(parse(r#"{"code": 1, "extra": [1, 2]}"#).code, Some(1));
    }

    #[test]
    fn error_body_parse_never_fails() {
        assert_eq!(
            IsaErrorBody::parse(br#"{"code":10071,"message":"Session is not found."}"#)
                .info()
                .map(|i| i.name),
            Some("SessionNotFound")
        );
        assert_eq!(
            IsaErrorBody::parse(b"<html>Bad Gateway</html>"),
            IsaErrorBody::default()
        );
        assert_eq!(IsaErrorBody::parse(b""), IsaErrorBody::default());
        assert_eq!(IsaErrorBody::parse(b"[1,2]"), IsaErrorBody::default());
    }

    #[test]
    fn error_body_class_recognises_the_rate_limit_message() {
        let limited = IsaErrorBody {
            code: None,
            message: Some(RATE_LIMIT_MESSAGE.to_owned()),
        };
        assert_eq!(limited.class(400), ErrorClass::Retryable);
        let coded = IsaErrorBody {
            code: Some(10008),
            message: Some(RATE_LIMIT_MESSAGE.to_owned()),
        };
        assert_eq!(coded.class(400), ErrorClass::BadInput);
        assert_eq!(IsaErrorBody::default().class(404), ErrorClass::NotFound);
    }

    #[test]
    fn classify_prefers_a_known_code() {
        assert_eq!(classify(400, Some(10004)), ErrorClass::Authorisation);
        assert_eq!(classify(500, Some(10008)), ErrorClass::BadInput);
        assert_eq!(classify(400, Some(10071)), ErrorClass::NotFound);
        assert_eq!(classify(400, Some(10019)), ErrorClass::Retryable);
        // An undocumented code falls back to the status.
        assert_eq!(classify(401, Some(99999)), ErrorClass::Authorisation);
    }

    #[test]
    fn classify_falls_back_to_the_status() {
        let expected = [
            (401, ErrorClass::Authorisation),
            (403, ErrorClass::Configuration),
            (404, ErrorClass::NotFound),
            (408, ErrorClass::Retryable),
            (429, ErrorClass::Retryable),
            (500, ErrorClass::Retryable),
            (502, ErrorClass::Retryable),
            (503, ErrorClass::Retryable),
            (504, ErrorClass::Retryable),
            (400, ErrorClass::BadInput),
            (409, ErrorClass::BadInput),
            (413, ErrorClass::BadInput),
            (422, ErrorClass::BadInput),
            (501, ErrorClass::Retryable),
            (599, ErrorClass::Retryable),
            (200, ErrorClass::Retryable),
            (302, ErrorClass::Retryable),
        ];
        for (status, class) in expected {
            assert_eq!(classify(status, None), class, "{status}");
        }
    }
}
