//! Checks made before a request leaves: a request Salesforce would reject is never sent, and the
//! caller learns which field is wrong and why. Each rule names the error code Salesforce would
//! answer, so the check and the emulator's rejection can be compared.

use std::collections::HashSet;

use super::{
    MAX_ACKNOWLEDGEMENTS, MAX_ATTACHMENT_BYTES, MAX_HISTORY_ENTRIES, MAX_HISTORY_PARTICIPANTS,
    MAX_IDENTIFIER_LEN, SUPPORTED_MIME_TYPES, WORK_ITEM_ID_LEN,
};
use crate::salesforce::types::*;

/// A request that was not sent because Salesforce would reject it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidRequest {
    /// The JSON path of the offending field (`interactions[0].payload.id`, `workItemId`, …).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

type Check = Result<(), InvalidRequest>;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Check {
    Err(InvalidRequest {
        field: field.into(),
        reason: reason.into(),
    })
}

/// Non-empty and at most 240 characters.
pub(super) fn identifier(field: &str, value: &str) -> Check {
    let len = value.chars().count();
    if len == 0 {
        invalid(field, "must not be empty")
    } else if len > MAX_IDENTIFIER_LEN {
        invalid(
            field,
            format!("must be at most {MAX_IDENTIFIER_LEN} characters, got {len}"),
        )
    } else {
        Ok(())
    }
}

/// A MessagingSession id: exactly 15 characters (10012).
fn work_item_id(field: &str, value: &str) -> Check {
    let len = value.chars().count();
    if len != WORK_ITEM_ID_LEN || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
        invalid(
            field,
            format!("must be the 15-character MessagingSession id, got {len} characters"),
        )
    } else {
        Ok(())
    }
}

fn not_empty(field: &str, value: &str) -> Check {
    if value.trim().is_empty() {
        invalid(field, "must not be empty")
    } else {
        Ok(())
    }
}

fn end_user(field: &str, p: &Participant) -> Check {
    if p.app_type != AppType::Custom || p.role != ParticipantRole::EndUser {
        return invalid(field, "must be the end user (appType custom, role EndUser)");
    }
    identifier(&format!("{field}.subject"), &p.subject)
}

fn routing_attributes(
    field: &str,
    attrs: &Option<std::collections::BTreeMap<String, String>>,
) -> Check {
    for (name, value) in attrs.iter().flatten() {
        not_empty(&format!("{field} key"), name)?;
        if value.chars().count() > MAX_IDENTIFIER_LEN {
            return invalid(
                format!("{field}.{name}"),
                format!("must be at most {MAX_IDENTIFIER_LEN} characters"),
            );
        }
    }
    Ok(())
}

fn entry(field: &str, entry: &Entry) -> Check {
    match &entry.body {
        EntryBody::Message { abstract_message } => {
            // 10060: the message id must be the entry id.
            if abstract_message.id != entry.id {
                return invalid(
                    format!("{field}.abstractMessage.id"),
                    "must equal the entry id (payload.id)",
                );
            }
            match &abstract_message.content {
                MessageContent::StaticContent { static_content } => match static_content {
                    StaticContent::Text { text } => {
                        not_empty(&format!("{field}.abstractMessage.staticContent.text"), text)
                    }
                    StaticContent::Attachments { attachments, .. } => {
                        let f = format!("{field}.abstractMessage.staticContent.attachments");
                        if attachments.is_empty() {
                            return invalid(f, "must hold at least one attachment");
                        }
                        for (i, a) in attachments.iter().enumerate() {
                            not_empty(&format!("{f}[{i}].id"), &a.id)?;
                            not_empty(&format!("{f}[{i}].name"), &a.name)?;
                            not_empty(&format!("{f}[{i}].url"), &a.url)?;
                            mime(&format!("{f}[{i}].mimeType"), &a.mime_type)?;
                        }
                        Ok(())
                    }
                },
                MessageContent::ChoicesResponse { choices_response } => {
                    let ChoicesResponse::Selections { selected_options } = choices_response;
                    if selected_options.is_empty() {
                        return invalid(
                            format!("{field}.abstractMessage.choicesResponse.selectedOptions"),
                            "must hold at least one option",
                        );
                    }
                    Ok(())
                }
            }
        }
        EntryBody::TypingStarted { .. } | EntryBody::TypingStopped { .. } => Ok(()),
        EntryBody::MessageDeliveryFailed {
            recipient,
            error_code,
            ..
        } => {
            end_user(&format!("{field}.recipient"), recipient)?;
            not_empty(&format!("{field}.errorCode"), error_code)
        }
    }
}

fn mime(field: &str, mime: &str) -> Check {
    if SUPPORTED_MIME_TYPES.contains(&mime) {
        Ok(())
    } else {
        invalid(
            field,
            format!(
                "MIME type `{mime}` is not one Salesforce accepts ({})",
                SUPPORTED_MIME_TYPES.join(", ")
            ),
        )
    }
}

impl InteractionRequest {
    /// Checks the request and its optional file part.
    pub fn validate(&self, file: Option<&FilePart>) -> Check {
        identifier("to", &self.to)?;
        identifier("from", &self.from)?;
        routing_attributes("routingAttributes", &self.routing_attributes)?;
        // 10029: exactly one interaction per request.
        if self.interactions.len() != 1 {
            return invalid(
                "interactions",
                format!(
                    "must hold exactly one interaction, got {}",
                    self.interactions.len()
                ),
            );
        }
        match (&self.interactions[0], file) {
            (Interaction::Entry { payload, .. }, None) => entry("interactions[0].payload", payload),
            (Interaction::Entry { .. }, Some(_)) => invalid(
                "attachments",
                "a file may only accompany an AttachmentInteraction (10011)",
            ),
            (Interaction::Attachment { .. }, None) => invalid(
                "attachments",
                "an AttachmentInteraction needs exactly one file (10011)",
            ),
            (
                Interaction::Attachment {
                    attachment_index,
                    content_length,
                    ..
                },
                Some(file),
            ) => {
                if *attachment_index != 0 {
                    return invalid(
                        "interactions[0].attachmentIndex",
                        "must be 0: one file per request",
                    );
                }
                let len = file.bytes.len() as u64;
                if len == 0 {
                    return invalid("attachments", "the file is empty (10009)");
                }
                if len > MAX_ATTACHMENT_BYTES {
                    return invalid(
                        "attachments",
                        format!(
                            "the file has {len} bytes; Salesforce accepts at most {MAX_ATTACHMENT_BYTES} (10008)"
                        ),
                    );
                }
                if *content_length != len {
                    return invalid(
                        "interactions[0].contentLength",
                        format!("is {content_length} but the file has {len} bytes (10051)"),
                    );
                }
                not_empty("attachments filename", &file.file_name)?;
                mime("attachments content type", &file.mime_type)
            }
        }
    }
}

impl AcknowledgementRequest {
    /// Checks one call's worth (at most 25) of receipts.
    pub fn validate(&self) -> Check {
        identifier("conversationIdentifier", &self.conversation_identifier)?;
        end_user("sender", &self.sender)?;
        if self.acknowledgements.is_empty() || self.acknowledgements.len() > MAX_ACKNOWLEDGEMENTS {
            return invalid(
                "acknowledgements",
                format!(
                    "must hold 1 to {MAX_ACKNOWLEDGEMENTS} receipts, got {}",
                    self.acknowledgements.len()
                ),
            );
        }
        for (i, ack) in self.acknowledgements.iter().enumerate() {
            not_empty(
                &format!("acknowledgements[{i}].acknowledgedConversationEntryIdentifier"),
                &ack.acknowledged_entry,
            )?;
        }
        Ok(())
    }
}

impl ConversationRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("channelAddressIdentifier", &self.channel_address_identifier)?;
        // 10053: exactly one participant, the end user.
        if self.participants.len() != 1 {
            return invalid(
                "participants",
                format!(
                    "must hold exactly one participant, got {}",
                    self.participants.len()
                ),
            );
        }
        end_user("participants[0]", &self.participants[0])?;
        routing_attributes("routingAttributes", &self.routing_attributes)
    }
}

impl CapabilitiesRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        let caps = &self.capabilities.channel_capabilities;
        if caps.is_empty() {
            return invalid(
                "capabilities.channelCapabilities",
                "must hold at least one channel",
            );
        }
        for (i, channel) in caps.iter().enumerate() {
            let f = format!("capabilities.channelCapabilities[{i}]");
            if let Some(ci) = &channel.custom_integration {
                identifier(
                    &format!("{f}.customIntegration.integrationNamespace"),
                    &ci.integration_namespace,
                )?;
                identifier(
                    &format!("{f}.customIntegration.conversationChannelDefinitionDevName"),
                    &ci.conversation_channel_definition_dev_name,
                )?;
            }
            if channel.message_type_capabilities.is_empty() {
                return invalid(
                    format!("{f}.messageTypeCapabilities"),
                    "must hold at least one message type",
                );
            }
            for (j, m) in channel.message_type_capabilities.iter().enumerate() {
                if m.format_type_capabilities.is_empty() {
                    return invalid(
                        format!("{f}.messageTypeCapabilities[{j}].formatTypeCapabilities"),
                        "must hold at least one format type",
                    );
                }
            }
        }
        Ok(())
    }
}

impl ConsentRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("endUserClientId", &self.end_user_client_id)?;
        identifier("channelAddressIdentifier", &self.channel_address_identifier)
    }
}

impl RouteRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("conversationIdentifier", &self.conversation_identifier)?;
        if let Some(info) = &self.routing_info {
            // 10030: routingInfo names a flow or a queue.
            if info.queue_id.is_none() && info.flow.is_none() {
                return invalid("routingInfo", "must name a flow or a queue (10030)");
            }
            if let Some(q) = &info.queue_id {
                not_empty("routingInfo.queueId", q)?;
            }
            if let Some(flow) = &info.flow {
                // 10024: flow routing needs the flow and its fallback queue.
                not_empty("routingInfo.flow.flowId", &flow.flow_id)?;
                not_empty("routingInfo.flow.queueId", &flow.queue_id)?;
            }
            routing_attributes("routingInfo.routingAttributes", &info.routing_attributes)?;
        }
        Ok(())
    }
}

impl DeleteRouteRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("conversationIdentifier", &self.conversation_identifier)
    }
}

impl AgentWorkRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        not_empty("userId", &self.user_id)?;
        work_item_id("workItemId", &self.work_item_id)?;
        match (self.capacity_weight, self.capacity_percentage) {
            (Some(_), Some(_)) => {
                return invalid(
                    "capacityWeight",
                    "give a capacity weight or a percentage, not both (10013)",
                );
            }
            (Some(w), None) if !(w >= 0.0 && w.is_finite()) => {
                return invalid("capacityWeight", "must be 0 or more (10014)");
            }
            (None, Some(p)) if !(0.0..=100.0).contains(&p) => {
                return invalid("capacityPercentage", "must be between 0 and 100 (10015)");
            }
            _ => {}
        }
        if let Some(ctx) = &self.routing_context {
            identifier(
                "routingContext.conversationIdentifier",
                &ctx.conversation_identifier,
            )?;
            not_empty(
                "routingContext.routingCorrelationId",
                &ctx.routing_correlation_id,
            )?;
        }
        Ok(())
    }
}

impl PatchAgentWorkRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        not_empty("workId", &self.work_id)?;
        if self.context_type != AgentWorkContextType::Agent {
            return invalid(
                "contextType",
                "byocd updates rep AgentWork only (contextType Agent)",
            );
        }
        Ok(())
    }
}

impl RoutingResultRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        work_item_id("workItemId", &self.work_item_id)?;
        identifier("conversationIdentifier", &self.conversation_identifier)?;
        match (&self.success, &self.error_message) {
            (true, Some(_)) => invalid(
                "errorMessage",
                "must be absent when success is true (10033)",
            ),
            (false, None) => invalid("errorMessage", "is required when success is false (10034)"),
            (false, Some(m)) => not_empty("errorMessage", m),
            (true, None) => Ok(()),
        }
    }
}

impl ParticipantRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("conversationIdentifier", &self.conversation_identifier)?;
        if self.participants.len() != 1 {
            return invalid(
                "participants",
                format!(
                    "must hold exactly one participant, got {}",
                    self.participants.len()
                ),
            );
        }
        not_empty("participants[0].subject", &self.participants[0].subject)
    }
}

impl MessagingSessionRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("channelAddressIdentifier", &self.channel_address_identifier)?;
        identifier("endUserClientId", &self.end_user_client_id)?;
        identifier("conversationIdentifier", &self.conversation_identifier)?;
        match (&self.operation, &self.session_id) {
            // 10106: inactivating needs the session id.
            (SessionOperation::Inactivate, None) => {
                invalid("sessionId", "is required to inactivate a session (10106)")
            }
            (_, Some(id)) => not_empty("sessionId", id),
            _ => Ok(()),
        }
    }
}

impl ConversationHistoryRequest {
    /// Checks the request.
    pub fn validate(&self) -> Check {
        identifier("channelAddressIdentifier", &self.channel_address_identifier)?;
        let participants = &self.conversation_participants;
        if participants.is_empty() || participants.len() > MAX_HISTORY_PARTICIPANTS {
            return invalid(
                "conversationParticipants",
                format!(
                    "must hold 1 to {MAX_HISTORY_PARTICIPANTS} participants, got {}",
                    participants.len()
                ),
            );
        }
        let end_users = participants
            .iter()
            .filter(|p| p.participant.role == ParticipantRole::EndUser)
            .count();
        if end_users != 1 {
            return invalid(
                "conversationParticipants",
                format!("must hold exactly one end user, got {end_users} (10042/10044)"),
            );
        }
        for (i, p) in participants.iter().enumerate() {
            let f = format!("conversationParticipants[{i}]");
            match p.participant.role {
                ParticipantRole::EndUser if p.left_time.is_some() => {
                    return invalid(
                        format!("{f}.leftTime"),
                        "the end user has no leftTime (10065)",
                    );
                }
                ParticipantRole::Chatbot => match p.left_time {
                    None => {
                        return invalid(format!("{f}.leftTime"), "a bot needs a leftTime (10066)");
                    }
                    Some(left) if left <= p.joined_time => {
                        return invalid(
                            format!("{f}.leftTime"),
                            "must be after joinedTime (10067)",
                        );
                    }
                    _ => {}
                },
                ParticipantRole::EndUser => {}
                _ => {
                    return invalid(
                        format!("{f}.participant.role"),
                        "must be Chatbot or EndUser (10043)",
                    );
                }
            }
        }
        let entries = &self.conversation_entries;
        if entries.is_empty() || entries.len() > MAX_HISTORY_ENTRIES {
            return invalid(
                "conversationEntries",
                format!(
                    "must hold 1 to {MAX_HISTORY_ENTRIES} entries, got {}",
                    entries.len()
                ),
            );
        }
        let mut ids = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            // 10073: message ids are unique.
            if !ids.insert(e.entry_payload.id) {
                return invalid(
                    format!("conversationEntries[{i}].entryPayload.id"),
                    "duplicates an earlier entry id (10073)",
                );
            }
            entry(
                &format!("conversationEntries[{i}].entryPayload"),
                &e.entry_payload,
            )?;
        }
        Ok(())
    }
}
