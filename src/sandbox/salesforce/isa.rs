//! The Interaction Service API endpoints (digest §3.1–3.13): dispatch, and the conversation,
//! acknowledgement, capabilities and consent endpoints. `/interactions` lives in
//! `interactions.rs`, the routing endpoints in `routing.rs`, history in `history.rs`.

use serde_json::{Value, json};

use super::{
    EmulatedChannel,
    errors::IsaError,
    headers::{self, BodyType, ContextType},
    history, interactions, lock, routing,
    server::{Answer, Incoming, Payload, Shared, method_not_allowed, not_found},
    state::{EmulatedAcknowledgement, State},
    validate::{APP_TYPES, INVALID_PARAMETERS, MAX_IDENTIFIER_LEN, Obj, item, join, participant},
};

/// Resources under `/api/v1/` and the methods they take.
const RESOURCES: &[(&str, &[&str])] = &[
    ("interactions", &["POST"]),
    ("acknowledgement", &["POST"]),
    ("conversation", &["POST"]),
    ("capabilities", &["PATCH"]),
    ("consent", &["PATCH"]),
    ("route", &["POST", "DELETE"]),
    ("agentWork", &["POST", "PATCH"]),
    ("routingResult", &["POST"]),
    ("participant", &["POST"]),
    ("messagingSession", &["POST"]),
    ("conversationHistory", &["POST"]),
];

pub(crate) fn handle(shared: &Shared, resource: &str, incoming: &Incoming) -> Answer {
    let result = match (incoming.method.as_str(), resource) {
        ("POST", "interactions") => interactions::post(shared, incoming),
        ("POST", "acknowledgement") => post_acknowledgement(shared, incoming),
        ("POST", "conversation") => post_conversation(shared, incoming),
        ("PATCH", "capabilities") => patch_capabilities(shared, incoming),
        ("PATCH", "consent") => patch_consent(shared, incoming),
        ("POST", "route") => routing::post_route(shared, incoming),
        ("DELETE", "route") => routing::delete_route(shared, incoming),
        ("POST", "agentWork") => routing::post_agent_work(shared, incoming),
        ("PATCH", "agentWork") => routing::patch_agent_work(shared, incoming),
        ("POST", "routingResult") => routing::post_routing_result(shared, incoming),
        ("POST", "participant") => routing::post_participant(shared, incoming),
        ("POST", "messagingSession") => routing::post_messaging_session(shared, incoming),
        ("POST", "conversationHistory") => history::post(shared, incoming),
        (_, r) if RESOURCES.iter().any(|(name, _)| *name == r) => {
            return method_not_allowed(incoming);
        }
        _ => return not_found(incoming),
    };
    result.unwrap_or_else(Answer::from)
}

/// The JSON body: required (10100), parseable (10089).
pub(crate) fn json_body(incoming: &Incoming) -> Result<&Value, IsaError> {
    match &incoming.payload {
        Payload::Json(v) => Ok(v),
        Payload::Empty => Err(IsaError::new(10100, "")),
        _ => Err(IsaError::new(
            INVALID_PARAMETERS,
            "the body is not valid JSON",
        )),
    }
}

/// The conversation `id` (10018 / 404 when unknown) if the AuthorizationContext covers its
/// channel (10001).
pub(crate) fn conversation_index(
    state: &State,
    allowed: &[&EmulatedChannel],
    id: &str,
) -> Result<usize, IsaError> {
    let index = state
        .conversation_index(id)
        .ok_or_else(|| IsaError::new(10018, format!("no conversation {id:?}")).not_found())?;
    let channel = &state.conversations[index].channel_address_identifier;
    if !allowed
        .iter()
        .any(|c| &c.channel_address_identifier == channel)
    {
        return Err(IsaError::new(
            10001,
            format!("conversation {id:?} is on channel {channel:?} of another CCD"),
        ));
    }
    Ok(index)
}

/// A participant that must be the end user: appType `custom` (10037), role `EndUser` (10038).
fn end_user_participant<'a>(value: &'a Value, path: &'a str) -> Result<&'a str, IsaError> {
    let (app_type, subject, role) = participant(value, path, 10054)?;
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
    Ok(subject)
}

/// `POST /api/v1/conversation` (digest §3.3).
fn post_conversation(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // PostConversationRequest properties (YAML).
    root.only(&[
        "routingAttributes",
        "channelAddressIdentifier",
        "participants",
    ])?;
    // channelAddressIdentifier required, ≤240 → 10052 (YAML; ERRORCODES 10052).
    let address = root.req_id("channelAddressIdentifier", MAX_IDENTIFIER_LEN, 10052)?;
    // participants: exactly one (YAML minItems/maxItems 1) → 10053.
    let participants = root.req_array("participants", 1, 1, 10053)?;
    // The participant is the end user, custom/EndUser (digest §3.3) → 10037 / 10038 / 10054.
    let path = item("participants", 0);
    let end_user = end_user_participant(&participants[0], &path)?;
    // routingAttributes: a map of strings (YAML).
    root.opt_string_map("routingAttributes", INVALID_PARAMETERS)?;
    // The channel exists (10017) under this AuthorizationContext (10001).
    headers::channel_for(shared, &allowed, address)?;
    let mut state = lock(&shared.state);
    let (index, _) = state.open_conversation(address, end_user);
    let conversation = &state.conversations[index];
    // PostConversationResponse, 202 (YAML /conversation).
    Ok(Answer::json(
        202,
        json!({
            "conversationIdentifier": conversation.id,
            "messagingSessionId": conversation.current_session().map(|s| s.id.clone()),
            "success": true,
        }),
    ))
}

/// `POST /api/v1/acknowledgement` (digest §3.2).
fn post_acknowledgement(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // AcknowledgementRequest properties (YAML).
    root.only(&["conversationIdentifier", "sender", "acknowledgements"])?;
    // conversationIdentifier required, ≤240 (YAML AcknowledgementRequest) → 10018.
    let conversation_id = root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    // sender required: the end user, custom/EndUser (digest §3.2).
    let sender = root
        .get("sender")
        .ok_or_else(|| IsaError::new(INVALID_PARAMETERS, "sender is required"))?;
    let subject = end_user_participant(sender, "sender")?;
    // acknowledgements: 1..25 (YAML minItems 1, maxItems 25; digest §5).
    let items = root.req_array("acknowledgements", 1, 25, INVALID_PARAMETERS)?;
    let mut acknowledgements = Vec::with_capacity(items.len());
    for (i, value) in items.iter().enumerate() {
        let path = item("acknowledgements", i);
        let a = Obj::of(value, &path, INVALID_PARAMETERS)?;
        // Acknowledgement: four required fields, nothing else (YAML Acknowledgement).
        a.only(&[
            "acknowledgementType",
            "acknowledgedConversationEntryIdentifier",
            "acknowledgmentCreatedConversationEntryIdentifier",
            "acknowledgementTimestamp",
        ])?;
        // acknowledgementType enum Read|Delivered (YAML AcknowledgementType).
        let kind = a.req_enum(
            "acknowledgementType",
            &["Read", "Delivered"],
            INVALID_PARAMETERS,
        )?;
        let acknowledged = a.req_str(
            "acknowledgedConversationEntryIdentifier",
            INVALID_PARAMETERS,
        )?;
        let created = a.req_str(
            "acknowledgmentCreatedConversationEntryIdentifier",
            INVALID_PARAMETERS,
        )?;
        // acknowledgementTimestamp: string (YAML) or number (demo) of ms (digest §6 #7).
        let timestamp = a.get("acknowledgementTimestamp").cloned();
        let valid = match &timestamp {
            Some(Value::String(s)) => !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()),
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n > 0),
            _ => false,
        };
        if !valid {
            return Err(IsaError::new(
                INVALID_PARAMETERS,
                format!("{path}.acknowledgementTimestamp must be milliseconds since the epoch"),
            ));
        }
        acknowledgements.push(EmulatedAcknowledgement {
            acknowledgement_type: kind.to_owned(),
            acknowledged_entry_id: acknowledged.to_owned(),
            created_entry_id: created.to_owned(),
            timestamp: timestamp.unwrap_or_default(),
        });
    }
    let mut state = lock(&shared.state);
    let index = conversation_index(&state, &allowed, conversation_id)?;
    let conversation = &mut state.conversations[index];
    // The sender is the conversation's end user (digest §3.2) → 10054.
    if conversation.end_user_client_id != subject {
        return Err(IsaError::new(
            10054,
            format!("sender.subject {subject:?} is not the conversation's end user"),
        ));
    }
    conversation.acknowledgements.extend(acknowledgements);
    // AcknowledgementResponse, 200 (YAML /acknowledgement).
    Ok(Answer::json(200, json!({ "success": true })))
}

/// `PATCH /api/v1/capabilities` (digest §3.4).
fn patch_capabilities(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Optional, BodyType::Json)?;
    let context = allowed[0].authorization_context.clone();
    let body = json_body(incoming)?;
    let root = Obj::of(body, "", INVALID_PARAMETERS)?;
    // CapabilitiesRequest: capabilities required (YAML).
    root.only(&["capabilities"])?;
    let capabilities = root
        .opt_obj("capabilities", "capabilities", INVALID_PARAMETERS)?
        .ok_or_else(|| IsaError::new(INVALID_PARAMETERS, "capabilities is required"))?;
    // Capabilities: appType and channelCapabilities (≥1) required (YAML Capabilities).
    capabilities.only(&["appType", "channelCapabilities"])?;
    let app_type = capabilities.req_enum("appType", APP_TYPES, 10037)?;
    // BYOC registers for appType custom (digest §3.4) → 10037.
    if app_type != "custom" {
        return Err(IsaError::new(
            10037,
            format!("capabilities.appType must be custom, not {app_type:?}"),
        ));
    }
    let channel_capabilities =
        capabilities.req_array("channelCapabilities", 1, usize::MAX, INVALID_PARAMETERS)?;
    for (i, value) in channel_capabilities.iter().enumerate() {
        let path = item("capabilities.channelCapabilities", i);
        channel_capability(&Obj::of(value, &path, INVALID_PARAMETERS)?, &context)?;
    }
    lock(&shared.state)
        .capabilities
        .insert(context, body.clone());
    // RegisterCapabilitiesResponse, 200 (YAML /capabilities).
    Ok(Answer::json(200, json!({ "success": true })))
}

fn channel_capability(cc: &Obj<'_>, context: &str) -> Result<(), IsaError> {
    // ChannelCapabilities properties (YAML).
    cc.only(&[
        "channelType",
        "customIntegration",
        "messageTypeCapabilities",
        "progressIndicatorTypeCapabilities",
    ])?;
    // channelType enum custom (YAML ChannelType) → 10002.
    cc.opt_enum("channelType", &["custom"], 10002)?;
    // customIntegration: CustomChannelIntegration naming this CCD (YAML) → 10050.
    let path = join(cc.path(), "customIntegration");
    if let Some(ci) = cc.opt_obj("customIntegration", &path, 10050)? {
        ci.only(&[
            "customIntegrationType",
            "integrationNamespace",
            "conversationChannelDefinitionDevName",
        ])?;
        ci.req_enum(
            "customIntegrationType",
            &["CustomChannelIntegration"],
            10050,
        )?;
        // integrationNamespace, conversationChannelDefinitionDevName: required, ≤240 (YAML).
        ci.req_id("integrationNamespace", MAX_IDENTIFIER_LEN, 10050)?;
        let ccd = ci.req_id(
            "conversationChannelDefinitionDevName",
            MAX_IDENTIFIER_LEN,
            10050,
        )?;
        if ccd != context {
            return Err(IsaError::new(
                10050,
                format!(
                    "{path}.conversationChannelDefinitionDevName {ccd:?} is not the AuthorizationContext {context:?}"
                ),
            ));
        }
    }
    // messageTypeCapabilities ≥1 (YAML ChannelCapabilities).
    let mtcs = cc.req_array("messageTypeCapabilities", 1, usize::MAX, INVALID_PARAMETERS)?;
    let base = join(cc.path(), "messageTypeCapabilities");
    for (i, value) in mtcs.iter().enumerate() {
        let path = item(&base, i);
        let mtc = Obj::of(value, &path, INVALID_PARAMETERS)?;
        // MessageTypeCapabilities: messageType enum (10047), formatTypeCapabilities ≥1 (YAML).
        mtc.only(&["messageType", "formatTypeCapabilities"])?;
        mtc.req_enum("messageType", interactions::MESSAGE_TYPES, 10047)?;
        format_capabilities(&mtc, 10048)?;
    }
    // progressIndicatorTypeCapabilities: type ProgressUpdateIndicator, format types not
    // empty (YAML ProgressIndicatorTypeCapabilities; ERRORCODES 10098).
    if let Some(pitcs) = cc.opt_array("progressIndicatorTypeCapabilities", 0, usize::MAX, 10098)? {
        let base = join(cc.path(), "progressIndicatorTypeCapabilities");
        for (i, value) in pitcs.iter().enumerate() {
            let path = item(&base, i);
            let pitc = Obj::of(value, &path, 10098)?;
            pitc.only(&["progressIndicatorType", "formatTypeCapabilities"])?;
            pitc.req_enum("progressIndicatorType", &["ProgressUpdateIndicator"], 10098)?;
            format_capabilities(&pitc, 10098)?;
        }
    }
    Ok(())
}

/// `formatTypeCapabilities` ≥1 of `{formatType, capabilityFieldRestriction?}` (YAML
/// FormatTypeCapabilities; formatType enum → 10048).
fn format_capabilities(parent: &Obj<'_>, empty_code: u32) -> Result<(), IsaError> {
    let ftcs = parent.req_array("formatTypeCapabilities", 1, usize::MAX, empty_code)?;
    let base = join(parent.path(), "formatTypeCapabilities");
    for (i, value) in ftcs.iter().enumerate() {
        let path = item(&base, i);
        let ftc = Obj::of(value, &path, 10048)?;
        ftc.only(&["formatType", "capabilityFieldRestriction"])?;
        ftc.req_enum("formatType", interactions::FORMAT_TYPES, 10048)?;
        if let Some(restrictions) = ftc.opt_array(
            "capabilityFieldRestriction",
            0,
            usize::MAX,
            INVALID_PARAMETERS,
        )? {
            let base = join(&path, "capabilityFieldRestriction");
            for (j, r) in restrictions.iter().enumerate() {
                // CapabilityFieldRestriction: fieldJsonPath and restriction required (YAML).
                let path = item(&base, j);
                let r = Obj::of(r, &path, INVALID_PARAMETERS)?;
                r.only(&["fieldJsonPath", "restriction"])?;
                r.req_str("fieldJsonPath", INVALID_PARAMETERS)?;
                let rpath = join(&path, "restriction");
                let restriction = r
                    .opt_obj("restriction", &rpath, INVALID_PARAMETERS)?
                    .ok_or_else(|| {
                        IsaError::new(INVALID_PARAMETERS, format!("{rpath} is required"))
                    })?;
                field_restriction(&restriction)?;
            }
        }
    }
    Ok(())
}

/// A restriction of its `fieldRestrictionType` with that type's required fields (YAML
/// StringFieldRestriction, MimeTypeRestriction, FileSizeRestriction, ArrayRestriction; the
/// other types are read by their type only).
fn field_restriction(r: &Obj<'_>) -> Result<(), IsaError> {
    let kind = r.req_enum(
        "fieldRestrictionType",
        &[
            "StringFieldRestriction",
            "MimeTypeRestriction",
            "FileSizeRestriction",
            "DimensionRestriction",
            "ArrayRestriction",
            "RequiredFieldRestriction",
            "TypeRestriction",
        ],
        INVALID_PARAMETERS,
    )?;
    let positive = |key: &str| -> Result<(), IsaError> {
        match r.req_i64(key, INVALID_PARAMETERS)? {
            n if n > 0 => Ok(()),
            n => Err(IsaError::new(
                INVALID_PARAMETERS,
                format!("{} must be positive, not {n}", join(r.path(), key)),
            )),
        }
    };
    match kind {
        "StringFieldRestriction" => {
            r.only(&["fieldRestrictionType", "encoding", "maxLength"])?;
            r.req_enum("encoding", &["UTF8", "GSM", "UCS2"], INVALID_PARAMETERS)?;
            positive("maxLength")
        }
        "MimeTypeRestriction" => {
            r.only(&["fieldRestrictionType", "mimeType"])?;
            let mime = r.req_str("mimeType", INVALID_PARAMETERS)?;
            if mime
                .split_once('/')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            {
                Ok(())
            } else {
                Err(IsaError::new(
                    INVALID_PARAMETERS,
                    format!("{} {mime:?} is not a MIME type", join(r.path(), "mimeType")),
                ))
            }
        }
        "FileSizeRestriction" => {
            r.only(&["fieldRestrictionType", "maxSizeInKb"])?;
            positive("maxSizeInKb")
        }
        "ArrayRestriction" => {
            r.only(&["fieldRestrictionType", "maxItems"])?;
            positive("maxItems")
        }
        _ => Ok(()),
    }
}

/// `ConsentEnum` (YAML).
const CONSENT_STATUSES: &[&str] = &[
    "OptedOut",
    "ImplicitlyOptedIn",
    "ExplicitlyOptedIn",
    "DoublyOptedIn",
];

/// `PATCH /api/v1/consent` (digest §3.5).
fn patch_consent(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // ConsentRequest properties, all required (YAML).
    root.only(&[
        "channelAddressIdentifier",
        "endUserClientId",
        "consentStatus",
    ])?;
    // channelAddressIdentifier ≤240 (YAML ConsentRequest) → 10017.
    let address = root.req_id("channelAddressIdentifier", MAX_IDENTIFIER_LEN, 10017)?;
    // endUserClientId ≤240 (YAML ConsentRequest) → 10020.
    let end_user = root.req_id("endUserClientId", MAX_IDENTIFIER_LEN, 10020)?;
    // consentStatus enum (YAML ConsentEnum) → 10021.
    let status = root.req_enum("consentStatus", CONSENT_STATUSES, 10021)?;
    let channel = headers::channel_for(shared, &allowed, address)?;
    // Consent owner must be Partner (digest §3.5; ERRORCODES 10022).
    if channel.consent_owner != "Partner" {
        return Err(IsaError::new(
            10022,
            format!("consent owner is {}", channel.consent_owner),
        ));
    }
    let mut state = lock(&shared.state);
    // The messaging end user must exist on the channel (ERRORCODES 10105).
    let index = state
        .conversation_index_of(address, end_user)
        .ok_or_else(|| {
            IsaError::new(
                10105,
                format!("no messaging end user {end_user:?} on {address:?}"),
            )
            .not_found()
        })?;
    state.conversations[index].consent_status = Some(status.to_owned());
    // ConsentResponse, 200 (YAML /consent).
    Ok(Answer::json(200, json!({ "success": true })))
}
