//! The `{code, message}` refusals of the Interaction Service and the HTTP status the emulator
//! gives each code (see the table in the module above).

use serde_json::{Value, json};

/// An ISA refusal: HTTP status and `{code, message}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IsaError {
    pub(crate) status: u16,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl IsaError {
    /// A refusal with `code`, the status the table gives it, and `detail` appended to the
    /// code's own message.
    pub(crate) fn new(code: u32, detail: impl AsRef<str>) -> Self {
        let detail = detail.as_ref();
        let base = message_of(code);
        let message = if detail.is_empty() {
            base.to_owned()
        } else {
            format!("{base} ({detail})")
        };
        Self {
            status: status_of(code),
            code,
            message,
        }
    }

    /// The same refusal with another HTTP status.
    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same refusal answered as 404 (a referenced record does not exist).
    pub(crate) fn not_found(self) -> Self {
        self.with_status(404)
    }

    pub(crate) fn body(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// The HTTP status the emulator answers with `code`.
pub(crate) fn status_of(code: u32) -> u16 {
    match code {
        10003 | 10004 => 401,
        10001 | 10005 | 10022 | 10023 | 10057 | 10099 | 10104 | 15102 | 15104 | 15105 => 403,
        10017 | 10036 | 10071 | 10082 | 10105 | 15111 | 25005 | 25006 | 25007 => 404,
        15109 | 10055 | 10056 => 409,
        10008 => 413,
        10019 | 10094 => 503,
        500 | 20002 | 20004 => 500,
        RATE_LIMIT => 429,
        _ => 400,
    }
}

const RATE_LIMIT: u32 = super::RATE_LIMIT_CODE;

/// A short text for `code`, written for this emulator.
pub(crate) fn message_of(code: u32) -> &'static str {
    match code {
        10001 => "AuthorizationContext does not match the channel addressed",
        10002 => "Channel type of the channel addressed is not valid",
        10003 => "Access token lacks the interaction_api scope",
        10004 => "Access token is not valid",
        10005 => "AuthorizationContext is not valid for this access token",
        10007 => "Attachment interaction id is empty",
        10008 => "Attachment is larger than 25 MB",
        10009 => "Attachment is empty or missing",
        10010 => "contentLength is empty",
        10011 => "Number of AttachmentInteraction entries differs from the number of files",
        10012 => "workItemId is not a valid MessagingSession id",
        10013 => "Give capacityPercentage or capacityWeight, not both",
        10014 => "capacityWeight must be 0 or more",
        10015 => "capacityPercentage must be between 0 and 100",
        10016 => "Invalid header",
        10017 => "channelAddressIdentifier does not exist",
        10018 => "conversationIdentifier is not valid",
        10019 => "Read-only while an org migration runs; try again later",
        10020 => "endUserClientId is not valid",
        10021 => "consentStatus is not a valid value",
        10022 => "Consent owner of the channel is not Partner",
        10023 => "Channel supports keywords",
        10024 => "Flow routing needs a flowId and a fallback queueId",
        10025 => "No conversation for this channel",
        10026 => "No conversation channel definition for this channel",
        10027 => "\"to\" is not valid",
        10028 => "\"from\" is not valid",
        10029 => "Interaction list is not valid",
        10030 => "routingInfo must name a flow or a queue",
        10031 => "Channel is not active",
        10032 => "queueId is not valid",
        10033 => "errorMessage given although routing succeeded",
        10034 => "errorMessage missing although routing failed",
        10035 => "Channel is not of type CUSTOM",
        10036 => "Participant does not exist",
        10037 => "appType is not supported",
        10038 => "Participant role is not supported",
        10039 => "Participants are missing",
        10042 => "One end-user participant is required",
        10043 => "Participant roles must be Chatbot or EndUser",
        10044 => "Only one end-user participant is allowed",
        10045 => "Entry format is not valid",
        10046 => "clientTimestamp is outside the allowed time frame",
        10047 => "messageType is not valid",
        10048 => "formatType is not valid",
        10049 => "messageType and formatType do not go together",
        10050 => "customIntegration is not valid",
        10051 => "contentLength differs from the attachment's size",
        10052 => "channelAddressIdentifier is not valid",
        10053 => "participants is invalid or empty",
        10054 => "Participant subject is not valid",
        10055 => "Conversation precondition failed; retry",
        10056 => "Conversation processing aborted; retry",
        10057 => "No access to the ConversationHistory API",
        10058 => "Customer error",
        10059 => "Interaction id or message id is empty",
        10060 => "Interaction id and message id differ",
        10061 => "Session startTime is not valid",
        10062 => {
            "End users may only send StaticContentMessage, ChoicesResponseMessage or FormResponseMessage"
        }
        10063 => "messagingSession is not available here",
        10064 => "Session endTime is not valid",
        10065 => "End-user participants have no leftTime",
        10066 => "Chatbot participants need a leftTime",
        10067 => "joinedTime must be before leftTime",
        10068 => "Sender is not a participant",
        10069 => "Channel or authorization configuration is not valid",
        10070 => "Channel is not configured with this authorization context",
        10071 => "Session not found",
        10072 => "Session id is not valid",
        10073 => "Message ids must be unique",
        10074 => "Message timestamp is outside the sender's presence",
        10075 => "Conference routing is not available in this org",
        10076 => "cancelReason is not available in this org",
        10077 => "Conference agent action is not available in this org",
        10078 => "Invalid payload parameter",
        10082 => "workId is not valid",
        10083 => "contextType is not valid",
        10084 => "botId is not valid",
        10085 => "status is not valid",
        10089 => "Invalid parameters",
        10093 => "AuthorizationContextType is not valid",
        10094 => "A downstream service timed out; try again later",
        10095 => "MIME type of the attachment is not supported",
        10096 => "Routing attribute value is too long",
        10097 => "operation is not valid",
        10098 => "progressIndicatorTypeCapabilities is empty",
        10099 => "Org lacks the required permissions",
        10100 => "A request body is required",
        10101 => "Duplicate participants",
        10102 => "operation is not valid",
        10103 => "operationBy is not valid",
        10104 => "No access to the MessagingSession record",
        10105 => "End user not found",
        10106 => "sessionId is required to inactivate a session",
        15102 => "Contact Center as a Service is not enabled for this channel",
        15103 => "End user is not fully opted in",
        15104 => "Channel is not linked to a contact center",
        15105 => "User lacks Partner Messaging",
        15106 => "userId is not valid",
        15107 => "conversationIdentifier does not match the work item's conversation",
        15108 => "No service channel for this messaging session",
        15109 => "An active AgentWork already exists for this user and work item",
        15110 => "workItemId is not a valid MessagingSession id",
        15111 => "workItemId not found",
        15112 => "Agent status is not associated with the channel",
        20002 => "Conversation lookup by end user failed",
        20003 => "Interaction list is empty",
        20004 => "Pod not found",
        25005 => "Messaging end user not found for the work item",
        25006 => "Conversation not found for the work item",
        25007 => "conversationId not found for the work item",
        500 => "Internal server error",
        RATE_LIMIT => super::RATE_LIMIT_MESSAGE,
        _ => "Error",
    }
}
