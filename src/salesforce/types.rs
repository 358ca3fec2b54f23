//! Typed requests and responses of the Interaction Service API (BYOC endpoints), shaped exactly
//! as Salesforce's OpenAPI file describes them (camelCase on the wire).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::salesforce::codes::ErrorReason;

/// A participant of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// `custom` for BYOC end users, `agent` for reps.
    pub app_type: AppType,
    /// End-user client id, or the rep's Salesforce user id.
    pub subject: String,
    /// The participant's role.
    pub role: ParticipantRole,
}

impl Participant {
    /// The BYOC end user with this client id (`appType: custom`, `role: EndUser`).
    pub fn end_user(client_id: impl Into<String>) -> Self {
        Self {
            app_type: AppType::Custom,
            subject: client_id.into(),
            role: ParticipantRole::EndUser,
        }
    }

    /// A rep, by Salesforce user id (`appType: agent`, `role: Agent`).
    pub fn agent(user_id: impl Into<String>) -> Self {
        Self {
            app_type: AppType::Agent,
            subject: user_id.into(),
            role: ParticipantRole::Agent,
        }
    }
}

/// `AppType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    /// A custom (BYOC) channel.
    Custom,
    /// A Salesforce rep.
    Agent,
    /// A bot.
    Chatbot,
    /// Conversation service.
    Conversation,
    /// Live message.
    LiveMessage,
    /// Apple Messages for Business.
    Iamessage,
}

/// `ParticipantRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParticipantRole {
    /// The end user.
    EndUser,
    /// A bot.
    Chatbot,
    /// A rep.
    Agent,
    /// A supervisor.
    Supervisor,
    /// The system.
    System,
}

// ---------------------------------------------------------------------------------------------
// POST /interactions

/// The `json` part of `POST /interactions`: one interaction between an end user and a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionRequest {
    /// The channel address identifier.
    pub to: String,
    /// The end-user client id.
    pub from: String,
    /// Channel variables for Salesforce-owned routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_attributes: Option<BTreeMap<String, String>>,
    /// Exactly one interaction.
    pub interactions: Vec<Interaction>,
}

/// One interaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "interactionType")]
pub enum Interaction {
    /// A conversation entry: message, typing indicator, delivery failure.
    #[serde(rename = "EntryInteraction")]
    Entry {
        /// Milliseconds since the epoch.
        timestamp: i64,
        /// The entry.
        payload: Entry,
    },
    /// A file, sent as the request's `attachments` part.
    #[serde(rename = "AttachmentInteraction", rename_all = "camelCase")]
    Attachment {
        /// Milliseconds since the epoch.
        timestamp: i64,
        /// Client-chosen id of the attachment entry (a UUID).
        id: Uuid,
        /// Index into the attachment parts: always 0, one file per request.
        attachment_index: u32,
        /// The file's exact size in bytes.
        content_length: u64,
        /// Optional caption.
        text: Option<String>,
    },
}

/// A conversation entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Client-chosen entry id (a UUID), stable across retries.
    pub id: Uuid,
    /// What the entry is.
    #[serde(flatten)]
    pub body: EntryBody,
}

/// The entry types an end user's side may send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "entryType")]
pub enum EntryBody {
    /// A message.
    #[serde(rename_all = "camelCase")]
    Message {
        /// The message; its `id` must equal the entry id.
        abstract_message: Message,
    },
    /// The end user started typing.
    #[serde(rename = "TypingStartedIndicator")]
    TypingStarted {
        /// Milliseconds since the epoch.
        timestamp: i64,
    },
    /// The end user stopped typing.
    #[serde(rename = "TypingStoppedIndicator")]
    TypingStopped {
        /// Milliseconds since the epoch.
        timestamp: i64,
    },
    /// A rep's message could not be delivered to the end user.
    #[serde(rename_all = "camelCase")]
    MessageDeliveryFailed {
        /// Must be the end user (`custom` / `EndUser`).
        recipient: Participant,
        /// The provider's error code.
        error_code: String,
        /// The Salesforce entry id of the message that failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_conversation_entry_identifier: Option<String>,
        /// The provider's error message.
        #[serde(skip_serializing_if = "Option::is_none")]
        error_message: Option<String>,
    },
}

/// An end-user message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Message id; the same as the entry id.
    pub id: Uuid,
    /// The message this one answers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to_message_id: Option<String>,
    /// What kind of message.
    #[serde(flatten)]
    pub content: MessageContent,
}

/// Message types an end user may send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "messageType")]
pub enum MessageContent {
    /// Static content: text or attachments by URL.
    #[serde(rename = "StaticContentMessage", rename_all = "camelCase")]
    StaticContent {
        /// The content.
        static_content: StaticContent,
    },
    /// A reply to a choices message.
    #[serde(rename = "ChoicesResponseMessage", rename_all = "camelCase")]
    ChoicesResponse {
        /// The selection.
        choices_response: ChoicesResponse,
    },
}

/// `StaticContent` formats an end user may send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "formatType")]
pub enum StaticContent {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// Files available at URLs, with optional text.
    Attachments {
        /// At least one file.
        attachments: Vec<AttachmentRef>,
        /// Optional text.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
}

/// A file reachable at a URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRef {
    /// Client-chosen id.
    pub id: String,
    /// File name.
    pub name: String,
    /// MIME type.
    pub mime_type: String,
    /// Where the file is.
    pub url: String,
}

/// A reply to a choices message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "formatType")]
pub enum ChoicesResponse {
    /// Selected options.
    #[serde(rename_all = "camelCase")]
    Selections {
        /// At least one option.
        selected_options: Vec<SelectedOption>,
    },
}

/// One selected option.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedOption {
    /// The option's identifier.
    pub option_identifier: String,
}

/// A file sent with an `AttachmentInteraction`, as the `attachments` part.
#[derive(Clone, PartialEq, Eq)]
pub struct FilePart {
    /// File name.
    pub file_name: String,
    /// MIME type, one of [`SUPPORTED_MIME_TYPES`](super::isa::SUPPORTED_MIME_TYPES).
    pub mime_type: String,
    /// The bytes.
    pub bytes: bytes::Bytes,
}

impl std::fmt::Debug for FilePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePart")
            .field("file_name", &self.file_name)
            .field("mime_type", &self.mime_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Answer of `POST /interactions` (202).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionResponse {
    /// The conversation the interaction joined or created.
    pub conversation_identifier: Option<String>,
    /// Id of the interaction.
    pub id: Option<String>,
    /// MessagingSession ids.
    #[serde(default)]
    pub work_item_ids: Vec<String>,
    /// Whether it succeeded.
    #[serde(default = "yes")]
    pub success: bool,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// POST /acknowledgement

/// `POST /acknowledgement`: delivery and read receipts of rep messages. At most 25 per call; the
/// client splits longer lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcknowledgementRequest {
    /// The conversation.
    pub conversation_identifier: String,
    /// The end user who received or read the messages.
    pub sender: Participant,
    /// 1 to 25 receipts.
    pub acknowledgements: Vec<Acknowledgement>,
}

/// One receipt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acknowledgement {
    /// `Delivered` or `Read`.
    #[serde(rename = "acknowledgementType")]
    pub kind: AcknowledgementType,
    /// The rep message's entry identifier.
    #[serde(rename = "acknowledgedConversationEntryIdentifier")]
    pub acknowledged_entry: String,
    /// A fresh id for the receipt entry (note Salesforce's spelling without the "e").
    #[serde(rename = "acknowledgmentCreatedConversationEntryIdentifier")]
    pub created_entry: Uuid,
    /// When it was delivered or read, milliseconds since the epoch, sent as a string as the
    /// OpenAPI file types it.
    #[serde(
        rename = "acknowledgementTimestamp",
        serialize_with = "serialize_millis_as_string"
    )]
    pub timestamp: i64,
}

fn serialize_millis_as_string<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ms.to_string())
}

/// `AcknowledgementType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcknowledgementType {
    /// Delivered to the end user's device.
    Delivered,
    /// Read by the end user.
    Read,
}

/// `{ success, errorDetail? }`, the answer of most endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessResponse {
    /// Whether it succeeded.
    pub success: bool,
    /// Why not.
    pub error_detail: Option<ErrorDetail>,
}

/// `Error` object inside a response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    /// Salesforce error code.
    pub code: Option<serde_json::Value>,
    /// Its message.
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// POST /conversation

/// `POST /conversation`: look up or create the conversation with an end user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRequest {
    /// The channel.
    pub channel_address_identifier: String,
    /// Exactly one participant: the end user.
    pub participants: Vec<Participant>,
    /// Channel variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_attributes: Option<BTreeMap<String, String>>,
}

/// Answer of `POST /conversation`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationResponse {
    /// The conversation.
    pub conversation_identifier: Option<String>,
    /// Its MessagingSession.
    pub messaging_session_id: Option<String>,
    /// Whether it succeeded.
    #[serde(default = "yes")]
    pub success: bool,
}

// ---------------------------------------------------------------------------------------------
// PATCH /capabilities

/// `PATCH /capabilities`: what the channel can render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilitiesRequest {
    /// The capabilities.
    pub capabilities: Capabilities,
}

/// The capabilities of the app's channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// `custom` for BYOC.
    pub app_type: AppType,
    /// At least one.
    pub channel_capabilities: Vec<ChannelCapabilities>,
}

/// Capabilities of one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelCapabilities {
    /// `custom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_type: Option<String>,
    /// The custom integration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_integration: Option<CustomIntegration>,
    /// At least one.
    pub message_type_capabilities: Vec<MessageTypeCapability>,
}

/// `CustomChannelIntegration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomIntegration {
    /// `CustomChannelIntegration`.
    pub custom_integration_type: String,
    /// Package namespace, or the org id; at most 240 characters.
    pub integration_namespace: String,
    /// The CCD developer name; at most 240 characters.
    pub conversation_channel_definition_dev_name: String,
}

/// One message type and its formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageTypeCapability {
    /// A `MessageType` value.
    pub message_type: String,
    /// At least one.
    pub format_type_capabilities: Vec<FormatTypeCapability>,
}

/// One format type and its restrictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormatTypeCapability {
    /// A `FormatType` value.
    pub format_type: String,
    /// Field restrictions, as Salesforce describes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability_field_restriction: Option<Vec<serde_json::Value>>,
}

// ---------------------------------------------------------------------------------------------
// PATCH /consent

/// `PATCH /consent` (partner-owned consent only).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRequest {
    /// The end user.
    pub end_user_client_id: String,
    /// The channel.
    pub channel_address_identifier: String,
    /// The new status.
    pub consent_status: ConsentStatus,
}

/// `ConsentEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentStatus {
    /// Opted out.
    OptedOut,
    /// Implicitly opted in.
    ImplicitlyOptedIn,
    /// Explicitly opted in.
    ExplicitlyOptedIn,
    /// Double opt-in.
    DoublyOptedIn,
}

// ---------------------------------------------------------------------------------------------
// POST /route, DELETE /route

/// `RoutingType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingType {
    /// A new conversation.
    Initial,
    /// A transfer.
    Transfer,
    /// A conference.
    Conference,
}

/// `POST /route`: ask Salesforce to route (partner-owned routing).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRequest {
    /// The conversation.
    pub conversation_identifier: String,
    /// Why.
    pub routing_type: RoutingType,
    /// Where; absent = the channel's own routing setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_info: Option<RoutingInfo>,
}

/// Where to route.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingInfo {
    /// A queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// A flow with its fallback queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowInfo>,
    /// Channel variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_attributes: Option<BTreeMap<String, String>>,
}

/// A flow and its fallback queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowInfo {
    /// The flow's DurableId (starts with `300`).
    pub flow_id: String,
    /// The fallback queue.
    pub queue_id: String,
}

/// Answer of `POST /route`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteResponse {
    /// Whether it succeeded.
    #[serde(default = "yes")]
    pub success: bool,
    /// PendingServiceRouting id.
    pub psr_id: Option<String>,
    /// The work item.
    pub work_item_id: Option<String>,
    /// Correlation id to pass on in `routingContext`.
    pub routing_correlation_id: Option<String>,
    /// Why it was not routed.
    pub reason_for_not_routing: Option<String>,
    /// Extra context (userId, queueId …).
    #[serde(default)]
    pub context_param_map: BTreeMap<String, String>,
    /// Errors.
    pub errors: Option<serde_json::Value>,
}

/// `DELETE /route` (JSON body): clear a conversation's PSR.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRouteRequest {
    /// The conversation.
    pub conversation_identifier: String,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<CancelReason>,
}

/// `CancelReason` (the OpenAPI spelling; see docs/salesforce.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelReason {
    /// Unknown.
    Unknown,
    /// The rep was unavailable.
    Unavailable,
    /// The rep declined.
    Decline,
    /// Cancelled.
    Cancel,
}

// ---------------------------------------------------------------------------------------------
// POST /agentWork, PATCH /agentWork

/// `POST /agentWork`: push the work item to a rep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentWorkRequest {
    /// The rep's user id.
    pub user_id: String,
    /// The MessagingSession id, exactly 15 characters.
    pub work_item_id: String,
    /// Capacity weight (≥ 0); not with a percentage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_weight: Option<f64>,
    /// Capacity percentage (0–100); not with a weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_percentage: Option<f64>,
    /// The routing this work comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_context: Option<RoutingContext>,
    /// Which rep actions are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_action_visibilities: Option<Vec<AgentActionVisibility>>,
}

/// `RoutingContext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingContext {
    /// The conversation.
    pub conversation_identifier: String,
    /// The routing type.
    pub routing_type: RoutingType,
    /// The correlation id from `/route` or the `RoutingRequested` event.
    pub routing_correlation_id: String,
}

/// One rep action and whether it is usable.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentActionVisibility {
    /// `Transfer` or `Conference`.
    pub agent_action: AgentAction,
    /// Whether it is usable.
    pub visible: bool,
}

/// `AgentActionEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentAction {
    /// Transfer.
    Transfer,
    /// Conference.
    Conference,
}

/// Answer of `POST /agentWork`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentWorkResponse {
    /// Response id.
    pub id: Option<String>,
    /// The AgentWork id.
    pub agent_work_id: Option<String>,
    /// Whether it succeeded.
    #[serde(default = "yes")]
    pub success: bool,
    /// Details.
    pub agent_work_details: Option<serde_json::Value>,
}

/// `PATCH /agentWork`: accept, close, decline or cancel an AgentWork.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchAgentWorkRequest {
    /// The AgentWork id.
    pub work_id: String,
    /// `Agent` (or `Chatbot`).
    pub context_type: AgentWorkContextType,
    /// The new status.
    pub status: AgentWorkStatus,
}

/// `AgentWorkContextType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentWorkContextType {
    /// A rep.
    Agent,
    /// A bot.
    Chatbot,
}

/// `AgentWorkStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentWorkStatus {
    /// Accept.
    Accept,
    /// Close.
    Close,
    /// Decline.
    Decline,
    /// Cancel (before reassigning).
    Cancel,
}

// ---------------------------------------------------------------------------------------------
// POST /routingResult, POST /participant, POST /messagingSession

/// `POST /routingResult`: whether routing succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingResultRequest {
    /// The MessagingSession id, exactly 15 characters.
    pub work_item_id: String,
    /// The conversation.
    pub conversation_identifier: String,
    /// Whether routing succeeded.
    pub success: bool,
    /// Whether the target is outside Salesforce.
    pub externally_routed: bool,
    /// Why it failed: required when `success` is false, forbidden otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The routing type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_type: Option<RoutingType>,
}

/// `POST /participant`: remove a rep from a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantRequest {
    /// The conversation.
    pub conversation_identifier: String,
    /// `Remove`, the only operation.
    pub operation: ParticipantOperation,
    /// Exactly one participant.
    pub participants: Vec<Participant>,
}

/// `ParticipantOperationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParticipantOperation {
    /// Remove the participant.
    Remove,
}

/// `POST /messagingSession`: end or inactivate a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagingSessionRequest {
    /// The channel.
    pub channel_address_identifier: String,
    /// The end user.
    pub end_user_client_id: String,
    /// The conversation.
    pub conversation_identifier: String,
    /// The MessagingSession id; required to inactivate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// End or inactivate.
    pub operation: SessionOperation,
    /// Who asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_by: Option<SessionOperationBy>,
}

/// `MessagingSessionOperationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOperation {
    /// End the session.
    End,
    /// Inactivate (suspend) the session.
    Inactivate,
}

/// `MessagingSessionOperationByType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOperationBy {
    /// The end user asked (opt-out).
    EndUser,
    /// byocd decided (idle sweep).
    System,
}

/// Answer of `POST /messagingSession`: 200 with `success: false` and an `errorReason` on
/// failure.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagingSessionResponse {
    /// Whether it was done.
    pub success: bool,
    /// Why not.
    pub error_reason: Option<ErrorReason>,
}

// ---------------------------------------------------------------------------------------------
// POST /conversationHistory

/// `POST /conversationHistory`: an earlier transcript for the rep to see.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationHistoryRequest {
    /// The channel.
    pub channel_address_identifier: String,
    /// 1 to 3 participants, exactly one of them the end user.
    pub conversation_participants: Vec<HistoryParticipant>,
    /// 1 to 25 entries, newest first.
    pub conversation_entries: Vec<HistoryEntry>,
    /// Establish a new session or attach to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_session: Option<HistorySession>,
}

/// A participant of a historical conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryParticipant {
    /// Who.
    pub participant: Participant,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Joined, ms since the epoch.
    pub joined_time: i64,
    /// Left, ms since the epoch (bots must have one, the end user must not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_time: Option<i64>,
}

/// A historical entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it was sent, ms since the epoch.
    pub client_timestamp: i64,
    /// Who sent it.
    pub sender: Participant,
    /// The entry.
    pub entry_payload: Entry,
}

/// `AbstractMessagingSession`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "messagingSessionRequestType", content = "payload")]
pub enum HistorySession {
    /// Start a new session.
    #[serde(rename = "EstablishMessagingSession", rename_all = "camelCase")]
    Establish {
        /// Start, ms since the epoch.
        start_time: i64,
        /// End, ms since the epoch.
        #[serde(skip_serializing_if = "Option::is_none")]
        end_time: Option<i64>,
    },
    /// Attach to an existing session.
    #[serde(rename = "AttachMessagingSession", rename_all = "camelCase")]
    Attach {
        /// The session.
        session_id: String,
    },
}

/// Answer of `POST /conversationHistory`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationHistoryResponse {
    /// Whether it succeeded.
    pub success: bool,
    /// The conversation.
    pub conversation_identifier: Option<String>,
    /// The session, usable for routing.
    pub messaging_session_id: Option<String>,
}
