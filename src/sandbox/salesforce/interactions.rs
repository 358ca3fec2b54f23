//! `POST /api/v1/interactions` (digest §3.1): multipart structure, the interaction schema,
//! attachment limits, and the conversation / messaging session it lands in.

use serde_json::json;

use super::{
    MAX_ATTACHMENT_BYTES,
    errors::IsaError,
    headers::{self, BodyType, ContextType},
    lock,
    server::{Answer, FilePart, Incoming, Payload, Shared},
    state::EmulatedEntry,
    validate::{INVALID_PARAMETERS, MAX_IDENTIFIER_LEN, Obj, item, join, participant},
};

/// `InteractionType` (YAML).
const INTERACTION_TYPES: &[&str] = &["EntryInteraction", "AttachmentInteraction"];
/// `EntryType` (YAML).
const ENTRY_TYPES: &[&str] = &[
    "Message",
    "MessageDeliveryFailed",
    "TypingStartedIndicator",
    "TypingStoppedIndicator",
    "DeliveryAcknowledgement",
    "ReadAcknowledgement",
    "RoutingWorkResult",
    "ParticipantChanged",
    "RoutingResult",
    "Note",
    "FlagRaise",
    "FlagLower",
    "EndUserConsentUpdated",
    "SessionStatusChanged",
    "ConsultConversationInfo",
];
/// `MessageType` (YAML).
pub(crate) const MESSAGE_TYPES: &[&str] = &[
    "ChoicesMessage",
    "ChoicesResponseMessage",
    "FormMessage",
    "FormResponseMessage",
    "StaticContentMessage",
];
/// Message types an end user may send (ERRORCODES 10062).
const END_USER_MESSAGE_TYPES: &[&str] = &[
    "StaticContentMessage",
    "ChoicesResponseMessage",
    "FormResponseMessage",
];
/// `FormatType` (YAML).
pub(crate) const FORMAT_TYPES: &[&str] = &[
    "Attachments",
    "RichLink",
    "Media",
    "Buttons",
    "Carousel",
    "QuickReplies",
    "ListPicker",
    "Selections",
    "Links",
    "TimePicker",
    "Application",
    "Result",
    "Inputs",
    "WebView",
    "Text",
    "ExperienceType",
    "Flow",
    "MessageDefinition",
];
/// MIME types an attachment may have (digest §3.1, ISA file attachment page).
pub(crate) const ATTACHMENT_MIME_TYPES: &[&str] = &[
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
/// Fields common to every `AbstractMessage` (YAML).
const MESSAGE_FIELDS: &[&str] = &[
    "id",
    "messageType",
    "inReplyToMessageId",
    "customHandlingType",
    "references",
];

/// What was accepted, for the state.
struct Accepted {
    id: String,
    interaction_type: &'static str,
    entry_type: Option<String>,
    attachment: Option<FilePart>,
}

pub(crate) fn post(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Multipart)?;
    let body = match &incoming.payload {
        Payload::Multipart(m) => m,
        // requestBody required (YAML /interactions) → 10100.
        Payload::Empty => return Err(IsaError::new(10100, "multipart body is empty")),
        Payload::BadMultipart(e) => {
            return Err(IsaError::new(
                INVALID_PARAMETERS,
                format!("multipart body cannot be parsed: {e}"),
            ));
        }
        _ => return Err(IsaError::new(INVALID_PARAMETERS, "body is not multipart")),
    };
    // Only the parts `json` and `attachments` exist (YAML InteractionRequest).
    if let Some(other) = body.other.first() {
        return Err(IsaError::new(
            INVALID_PARAMETERS,
            format!("unknown multipart part {other:?}; only json and attachments exist"),
        ));
    }
    // Part `json` is required, once (YAML InteractionRequest.required).
    let json = match body.json.as_slice() {
        [] => return Err(IsaError::new(10100, "the json part is missing")),
        [one] => one,
        _ => {
            return Err(IsaError::new(INVALID_PARAMETERS, "more than one json part"));
        }
    };
    let json = json
        .as_ref()
        .map_err(|_| IsaError::new(INVALID_PARAMETERS, "the json part is not valid JSON"))?;
    let root = Obj::of(json, "", INVALID_PARAMETERS)?;
    // InteractionRequestJson properties (YAML).
    root.only(&["to", "from", "routingAttributes", "interactions"])?;
    // `to` required, ≤240 → 10027 (YAML InteractionRequestJson.to; ERRORCODES 10027).
    let to = root.req_id("to", MAX_IDENTIFIER_LEN, 10027)?;
    // `from` required, ≤240 (digest §6 #6: docs 240 over YAML 255) → 10028.
    let from = root.req_id("from", MAX_IDENTIFIER_LEN, 10028)?;
    // `to` must be a channel of the org (10017) under this AuthorizationContext (10001).
    let channel = headers::channel_for(shared, &allowed, to)?;
    // routingAttributes: map of strings, Salesforce-owned routing only (digest §3.1, §1.4).
    if root
        .opt_string_map("routingAttributes", INVALID_PARAMETERS)?
        .is_some()
        && channel.routing_owner != "Salesforce"
    {
        return Err(IsaError::new(
            INVALID_PARAMETERS,
            "routingAttributes only apply to Salesforce-routed channels; send them on /route",
        ));
    }
    // `interactions`: exactly one (YAML minItems 1, maxItems 1) → 10029.
    let interactions = root.req_array("interactions", 1, 1, 10029)?;
    let path = item("interactions", 0);
    let interaction = Obj::of(&interactions[0], &path, 10029)?;
    // interactionType enum, timestamp int64 ms, both required (YAML AbstractInteraction) → 10029.
    let interaction_type = interaction.req_enum("interactionType", INTERACTION_TYPES, 10029)?;
    interaction.req_i64("timestamp", 10029)?;
    // One file per AttachmentInteraction, no file otherwise → 10011 (digest §3.1; ERRORCODES 10011).
    let expected_files = usize::from(interaction_type == "AttachmentInteraction");
    if body.files.len() != expected_files {
        return Err(IsaError::new(
            10011,
            format!(
                "{expected_files} AttachmentInteraction but {} attachment file(s)",
                body.files.len()
            ),
        ));
    }
    let accepted = if interaction_type == "AttachmentInteraction" {
        attachment(&interaction, &body.files[0])?
    } else {
        entry_interaction(&interaction, from)?
    };

    let mut state = lock(&shared.state);
    let (index, _) = state.open_conversation(to, from);
    let conversation = &mut state.conversations[index];
    let session_id = conversation
        .current_session()
        .map(|s| s.id.clone())
        .unwrap_or_default();
    conversation.entries.push(EmulatedEntry {
        interaction_type: accepted.interaction_type.to_owned(),
        entry_type: accepted.entry_type,
        id: accepted.id.clone(),
        session_id: session_id.clone(),
        json: interactions[0].clone(),
        attachment: accepted.attachment.as_ref().map(FilePart::logged),
    });
    // PostInteractionResponse, 202 (YAML /interactions).
    Ok(Answer::json(
        202,
        json!({
            "conversationIdentifier": conversation.id,
            "id": accepted.id,
            "workItemIds": [session_id],
            "success": true,
        }),
    ))
}

fn attachment(interaction: &Obj<'_>, file: &FilePart) -> Result<Accepted, IsaError> {
    // AttachmentInteraction properties (YAML).
    interaction.only(&[
        "interactionType",
        "timestamp",
        "id",
        "attachmentIndex",
        "contentLength",
        "text",
    ])?;
    // id required, non-empty → 10007 (YAML AttachmentInteraction; ERRORCODES 10007).
    let id = interaction.req_str("id", 10007)?;
    // attachmentIndex required, indexes the only file → 10011 (YAML; digest §3.1).
    let index = interaction.req_i64("attachmentIndex", 10011)?;
    if index != 0 {
        return Err(IsaError::new(
            10011,
            format!("attachmentIndex {index} names no attachment file; the only one is 0"),
        ));
    }
    // contentLength required → 10010 (YAML; ERRORCODES 10010).
    let declared = interaction.req_i64("contentLength", 10010)?;
    // text: nullable string (YAML).
    interaction.opt_str("text", INVALID_PARAMETERS)?;
    // Empty file → 10009 (ERRORCODES 10009).
    if file.data.is_empty() {
        return Err(IsaError::new(10009, "the attachments part is empty"));
    }
    // At most 25 MB → 10008 (digest §3.1, §5; ERRORCODES 10008).
    if file.data.len() > MAX_ATTACHMENT_BYTES {
        return Err(IsaError::new(
            10008,
            format!("{} bytes > {MAX_ATTACHMENT_BYTES}", file.data.len()),
        ));
    }
    // MIME type from the listed set → 10095 (digest §3.1; ERRORCODES 10095).
    let mime = file.content_type.as_deref().map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match mime.as_deref() {
        Some(m) if ATTACHMENT_MIME_TYPES.contains(&m) => {}
        other => {
            return Err(IsaError::new(
                10095,
                format!(
                    "content type {} is not supported",
                    other.unwrap_or("missing")
                ),
            ));
        }
    }
    // contentLength equals the file's byte length → 10051 (digest §3.1; ERRORCODES 10051).
    if usize::try_from(declared).ok() != Some(file.data.len()) {
        return Err(IsaError::new(
            10051,
            format!(
                "contentLength is {declared} but the file has {} bytes",
                file.data.len()
            ),
        ));
    }
    Ok(Accepted {
        id: id.to_owned(),
        interaction_type: "AttachmentInteraction",
        entry_type: None,
        attachment: Some(file.clone()),
    })
}

fn entry_interaction(interaction: &Obj<'_>, from: &str) -> Result<Accepted, IsaError> {
    // EntryInteraction properties (YAML).
    interaction.only(&["interactionType", "timestamp", "payload"])?;
    // payload required (YAML EntryInteraction.required) → 10045.
    let path = join(interaction.path(), "payload");
    let payload = interaction
        .get("payload")
        .ok_or_else(|| IsaError::new(10045, format!("{path} is required")))?;
    let payload = Obj::of(payload, &path, 10045)?;
    let (id, entry_type) = entry(&payload, from, EntryOrigin::Interaction)?;
    Ok(Accepted {
        id,
        interaction_type: "EntryInteraction",
        entry_type: Some(entry_type),
        attachment: None,
    })
}

/// Where an entry comes from: a live inbound interaction, or a history upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryOrigin {
    /// A live inbound interaction from the end user.
    Interaction,
    /// A history entry; `from_end_user` says whether the sender is the end user.
    History { from_end_user: bool },
}

/// Checks an `AbstractEntry`; returns its id and entry type.
pub(crate) fn entry(
    payload: &Obj<'_>,
    end_user: &str,
    origin: EntryOrigin,
) -> Result<(String, String), IsaError> {
    // payload.id required and non-empty → 10059 (YAML AbstractEntry; ERRORCODES 10059).
    let id = payload
        .opt_str("id", 10059)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IsaError::new(10059, format!("{}.id is empty", payload.path())))?;
    // entryType enum, required (YAML EntryType) → 10045.
    let entry_type = payload.req_enum("entryType", ENTRY_TYPES, 10045)?;
    match (entry_type, origin) {
        ("Message", _) => {
            // Message.abstractMessage required (YAML Message) → 10045.
            payload.only(&["id", "entryType", "abstractMessage"])?;
            let path = join(payload.path(), "abstractMessage");
            let message = payload
                .get("abstractMessage")
                .ok_or_else(|| IsaError::new(10045, format!("{path} is required")))?;
            let from_end_user = match origin {
                EntryOrigin::Interaction => true,
                EntryOrigin::History { from_end_user } => from_end_user,
            };
            abstract_message(&Obj::of(message, &path, 10045)?, id, from_end_user)?;
        }
        ("TypingStartedIndicator" | "TypingStoppedIndicator", EntryOrigin::Interaction) => {
            // Typing indicators carry an int64 timestamp (YAML TypingStartedIndicator).
            payload.only(&["id", "entryType", "timestamp"])?;
            payload.req_i64("timestamp", 10045)?;
        }
        ("MessageDeliveryFailed", EntryOrigin::Interaction) => {
            // MessageDeliveryFailed properties (YAML MessageDeliveryFailed).
            payload.only(&[
                "id",
                "entryType",
                "recipient",
                "errorCode",
                "errorMessage",
                "failedConversationEntryIdentifier",
            ])?;
            // recipient required; appType custom (10037), role EndUser (10038), the end user
            // of the request (10054) (digest §3.1: since Spring '24).
            let path = join(payload.path(), "recipient");
            let recipient = payload
                .get("recipient")
                .ok_or_else(|| IsaError::new(10045, format!("{path} is required")))?;
            let (app_type, subject, role) = participant(recipient, &path, 10054)?;
            if app_type != "custom" {
                return Err(IsaError::new(
                    10037,
                    format!("{path}.appType must be custom, not {app_type:?}"),
                ));
            }
            if role != "EndUser" {
                return Err(IsaError::new(
                    10038,
                    format!("{path}.role must be EndUser, not {role:?}"),
                ));
            }
            if subject != end_user {
                return Err(IsaError::new(
                    10054,
                    format!("{path}.subject must be the end user {end_user:?}"),
                ));
            }
            // errorCode required (YAML MessageDeliveryFailed.required).
            payload.req_str("errorCode", 10045)?;
            payload.opt_str("errorMessage", 10045)?;
            payload.opt_str("failedConversationEntryIdentifier", 10045)?;
        }
        (other, _) => {
            return Err(IsaError::new(
                10045,
                format!("entryType {other} cannot be sent here"),
            ));
        }
    }
    Ok((id.to_owned(), entry_type.to_owned()))
}

/// Checks an `AbstractMessage`; `from_end_user` limits the message types.
fn abstract_message(
    message: &Obj<'_>,
    payload_id: &str,
    from_end_user: bool,
) -> Result<(), IsaError> {
    // abstractMessage.id non-empty (10059) and equal to payload.id (10060) (digest §3.1.1).
    let id = message
        .opt_str("id", 10059)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IsaError::new(10059, format!("{}.id is empty", message.path())))?;
    if id != payload_id {
        return Err(IsaError::new(
            10060,
            format!(
                "{}.id {id:?} differs from payload.id {payload_id:?}",
                message.path()
            ),
        ));
    }
    // messageType enum (YAML MessageType) → 10047; end-user types only → 10062.
    let message_type = message.req_enum("messageType", MESSAGE_TYPES, 10047)?;
    if from_end_user && !END_USER_MESSAGE_TYPES.contains(&message_type) {
        return Err(IsaError::new(10062, format!("messageType {message_type}")));
    }
    // Common optional fields (YAML AbstractMessage).
    message.opt_str("inReplyToMessageId", INVALID_PARAMETERS)?;
    message.opt_enum(
        "customHandlingType",
        &["None", "Survey"],
        INVALID_PARAMETERS,
    )?;
    if let Some(references) = message.opt_array("references", 0, usize::MAX, INVALID_PARAMETERS)? {
        let base = join(message.path(), "references");
        for (i, reference) in references.iter().enumerate() {
            // RecordReference: id and recordId required, nothing else (YAML RecordReference).
            let path = item(&base, i);
            let r = Obj::of(reference, &path, INVALID_PARAMETERS)?;
            r.only(&["id", "recordId"])?;
            r.req_str("id", INVALID_PARAMETERS)?;
            r.req_str("recordId", INVALID_PARAMETERS)?;
        }
    }
    let (field, allowed_formats) = match message_type {
        "StaticContentMessage" => (
            "staticContent",
            &["Text", "Attachments", "Links", "ExperienceType"][..],
        ),
        "ChoicesResponseMessage" => ("choicesResponse", &["Selections"][..]),
        "FormResponseMessage" => ("formResponse", &["Inputs", "Result"][..]),
        // A bot's structured message in a history upload: only its envelope is checked.
        "ChoicesMessage" => ("choices", FORMAT_TYPES),
        _ => ("form", FORMAT_TYPES),
    };
    let mut fields = MESSAGE_FIELDS.to_vec();
    fields.push(field);
    message.only(&fields)?;
    // The type's content object is required (YAML StaticContentMessage / ChoicesResponseMessage
    // / FormResponseMessage) → 10045.
    let path = join(message.path(), field);
    let content = message
        .get(field)
        .ok_or_else(|| IsaError::new(10045, format!("{path} is required")))?;
    let content = Obj::of(content, &path, 10045)?;
    // formatType enum (YAML FormatType) → 10048; combination with the message type → 10049.
    let format = content.req_enum("formatType", FORMAT_TYPES, 10048)?;
    if !allowed_formats.contains(&format) {
        return Err(IsaError::new(
            10049,
            format!("{message_type} cannot have formatType {format}"),
        ));
    }
    if matches!(message_type, "ChoicesMessage" | "FormMessage") {
        return Ok(());
    }
    format_content(&content, format)
}

/// Checks the content of one format type.
fn format_content(content: &Obj<'_>, format: &str) -> Result<(), IsaError> {
    match format {
        "Text" => {
            // StaticContentText: text required (YAML).
            content.only(&["formatType", "text"])?;
            content.req_str("text", 10045)?;
        }
        "Attachments" => {
            // StaticContentAttachments: attachments ≥1 of Attachment (YAML).
            content.only(&["formatType", "text", "attachments"])?;
            content.opt_str("text", 10045)?;
            let attachments = content.req_array("attachments", 1, usize::MAX, 10045)?;
            let base = join(content.path(), "attachments");
            for (i, a) in attachments.iter().enumerate() {
                // Attachment: id, name, mimeType, url required; no other field (YAML Attachment).
                let path = item(&base, i);
                let a = Obj::of(a, &path, 10045)?;
                a.only(&[
                    "id",
                    "name",
                    "mimeType",
                    "url",
                    "referenceId",
                    "attachmentUploadResult",
                ])?;
                for key in ["id", "name", "mimeType", "url"] {
                    a.req_str(key, 10045)?;
                }
            }
        }
        "Links" => {
            // StaticContentLinks: exactly one link with a url (YAML).
            content.only(&["formatType", "links"])?;
            let links = content.req_array("links", 1, 1, 10045)?;
            let path = item(&join(content.path(), "links"), 0);
            let link = Obj::of(&links[0], &path, 10045)?;
            link.only(&["url"])?;
            link.req_str("url", 10045)?;
        }
        "ExperienceType" => {
            // StaticContentExperienceType: values ≥1 (YAML).
            content.only(&["formatType", "message", "values"])?;
            content.opt_str("message", 10045)?;
            content.req_array("values", 1, usize::MAX, 10045)?;
        }
        "Selections" => {
            // ChoicesResponseSelections: selectedOptions ≥1, each with optionIdentifier (YAML).
            content.only(&["formatType", "selectedOptions"])?;
            let options = content.req_array("selectedOptions", 1, usize::MAX, 10045)?;
            let base = join(content.path(), "selectedOptions");
            for (i, option) in options.iter().enumerate() {
                let path = item(&base, i);
                let option = Obj::of(option, &path, 10045)?;
                // SelectedOption: no other field (YAML SelectedOption).
                option.only(&["optionIdentifier", "optionTitle"])?;
                option.req_str("optionIdentifier", 10045)?;
            }
        }
        "Inputs" => {
            // FormResponseInputs: inputValues required (YAML).
            content.only(&["formatType", "formTitle", "inputValues"])?;
            content.req_array("inputValues", 0, usize::MAX, 10045)?;
        }
        _ => {
            // FormResponseResult: result required (YAML).
            content.only(&["formatType", "result"])?;
            let path = join(content.path(), "result");
            content
                .opt_obj("result", &path, 10045)?
                .ok_or_else(|| IsaError::new(10045, format!("{path} is required")))?;
        }
    }
    Ok(())
}
