//! The partner-routing endpoints (digest §3.6–3.12): `/route` (POST, DELETE), `/agentWork`
//! (POST, PATCH), `/routingResult`, `/participant`, `/messagingSession`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    EmulatedChannel,
    errors::IsaError,
    headers::{self, BodyType, ContextType},
    isa::{conversation_index, json_body},
    lock,
    server::{Answer, Incoming, Shared},
    state::{
        AGENT_WORK_PREFIX, AgentWorkStatus, EmulatedAgentWork, EmulatedPsr, PSR_PREFIX, PsrStatus,
        SessionStatus,
    },
    validate::{INVALID_PARAMETERS, MAX_IDENTIFIER_LEN, Obj, item, participant},
};

/// `RoutingType` (YAML).
const ROUTING_TYPES: &[&str] = &["Initial", "Transfer", "Conference"];
/// `CancelReason` (YAML; digest §6 #8).
const CANCEL_REASONS: &[&str] = &["Unknown", "Unavailable", "Decline", "Cancel"];

/// The channel `address` must be a CCaaS channel (15102) with partner-owned routing (15104)
/// (digest §1.4, §6 #15: the routing APIs are CCaaS-only and partner-routing-only).
fn partner_routed<'s>(shared: &'s Shared, address: &str) -> Result<&'s EmulatedChannel, IsaError> {
    let channel = shared
        .settings
        .channels
        .iter()
        .find(|c| c.channel_address_identifier == address)
        .ok_or_else(|| IsaError::new(10017, format!("no channel {address:?}")).not_found())?;
    if channel.product != "CCaaS" {
        return Err(IsaError::new(
            15102,
            format!("channel {address:?} is a {} channel", channel.product),
        ));
    }
    if channel.routing_owner != "Partner" {
        return Err(IsaError::new(
            15104,
            format!(
                "routing of channel {address:?} is owned by {}",
                channel.routing_owner
            ),
        ));
    }
    Ok(channel)
}

/// A required, non-empty string of `obj` that must be present, else `code`.
fn present<'a>(obj: &Obj<'a>, key: &str, code: u32) -> Result<Option<&'a str>, IsaError> {
    match obj.opt_str(key, code)? {
        Some("") => Err(IsaError::new(
            code,
            format!("{}.{key} is empty", obj.path()),
        )),
        other => Ok(other),
    }
}

/// `POST /api/v1/route` (digest §3.6).
pub(crate) fn post_route(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Optional, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // PostRouteRequest properties (YAML).
    root.only(&["conversationIdentifier", "routingInfo", "routingType"])?;
    // conversationIdentifier required (YAML PostRouteRequest) → 10018.
    let conversation_id = root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    // routingType required enum (YAML RoutingType).
    let routing_type = root.req_enum("routingType", ROUTING_TYPES, INVALID_PARAMETERS)?;
    let mut queue_id = None;
    let mut flow_id = None;
    let mut attributes = BTreeMap::new();
    if let Some(info) = root.opt_obj("routingInfo", "routingInfo", INVALID_PARAMETERS)? {
        // RoutingInfo properties (YAML).
        info.only(&["routingAttributes", "queueId", "flow"])?;
        attributes = info
            .opt_string_map("routingAttributes", INVALID_PARAMETERS)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let queue = present(&info, "queueId", 10032)?;
        let flow = info.opt_obj("flow", "routingInfo.flow", 10024)?;
        match (queue, flow) {
            // routingInfo must name a flow or a queue (digest §3.6; ERRORCODES 10030).
            (None, None) => {
                return Err(IsaError::new(
                    10030,
                    "routingInfo has neither flow nor queueId",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(IsaError::new(
                    10030,
                    "routingInfo has both flow and queueId",
                ));
            }
            (Some(q), None) => queue_id = Some(q.to_owned()),
            (None, Some(flow)) => {
                // FlowInfo properties (YAML); flowId and fallback queueId both required
                // (digest §3.6; ERRORCODES 10024).
                flow.only(&["flowId", "queueId"])?;
                let id = present(&flow, "flowId", 10024)?;
                let fallback = present(&flow, "queueId", 10024)?;
                let (Some(id), Some(fallback)) = (id, fallback) else {
                    return Err(IsaError::new(
                        10024,
                        "routingInfo.flow needs both flowId and queueId",
                    ));
                };
                flow_id = Some(id.to_owned());
                queue_id = Some(fallback.to_owned());
            }
        }
    }

    let mut state = lock(&shared.state);
    let index = conversation_index(&state, &allowed, conversation_id)?;
    let channel = partner_routed(
        shared,
        &state.conversations[index].channel_address_identifier,
    )?;
    // The queue must exist (ERRORCODES 10032).
    if let Some(q) = &queue_id
        && !channel.queues.contains(q)
    {
        return Err(IsaError::new(10032, format!("no queue {q:?}")));
    }
    // The flow must exist (digest §3.6: flow DurableId).
    if let Some(f) = &flow_id
        && !channel.flows.contains(f)
    {
        return Err(IsaError::new(
            INVALID_PARAMETERS,
            format!("routingInfo.flow.flowId {f:?} names no flow"),
        ));
    }
    // The conversation needs an open session to route (ERRORCODES 10071).
    let session_id = match state.conversations[index].current_session() {
        Some(s) if s.status != SessionStatus::Ended => s.id.clone(),
        _ => {
            return Err(IsaError::new(10071, "the conversation's session has ended").not_found());
        }
    };
    let psr_id = state.record_id(PSR_PREFIX);
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let conversation = &mut state.conversations[index];
    for psr in conversation
        .psrs
        .iter_mut()
        .filter(|p| p.session_id == session_id && p.status == PsrStatus::Pending)
    {
        psr.status = PsrStatus::Replaced;
    }
    conversation.psrs.push(EmulatedPsr {
        id: psr_id.clone(),
        session_id: session_id.clone(),
        routing_type: routing_type.to_owned(),
        routing_correlation_id: correlation_id.clone(),
        queue_id: queue_id.clone(),
        flow_id: flow_id.clone(),
        routing_attributes: attributes,
        status: PsrStatus::Pending,
        cancel_reason: None,
    });
    let mut context = Map::new();
    if let Some(q) = queue_id {
        context.insert("queueId".into(), Value::String(q));
    }
    if let Some(f) = flow_id {
        context.insert("flowId".into(), Value::String(f));
    }
    // PostRouteResponse, 202 (YAML /route).
    Ok(Answer::json(
        202,
        json!({
            "success": true,
            "psrId": psr_id,
            "workItemId": session_id,
            "routingCorrelationId": correlation_id,
            "contextParamMap": context,
        }),
    ))
}

/// `DELETE /api/v1/route` with a JSON body (digest §3.7).
pub(crate) fn delete_route(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // DeleteRouteRequest properties (YAML).
    root.only(&["conversationIdentifier", "cancelReason"])?;
    // conversationIdentifier required (YAML) → 10018.
    let conversation_id = root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    // cancelReason enum (YAML CancelReason).
    let reason = root.opt_enum("cancelReason", CANCEL_REASONS, INVALID_PARAMETERS)?;
    let mut state = lock(&shared.state);
    let index = conversation_index(&state, &allowed, conversation_id)?;
    partner_routed(
        shared,
        &state.conversations[index].channel_address_identifier,
    )?;
    let conversation = &mut state.conversations[index];
    let pending = conversation
        .psrs
        .iter_mut()
        .rev()
        .find(|p| p.status == PsrStatus::Pending);
    let success = match pending {
        Some(psr) => {
            psr.status = PsrStatus::Deleted;
            psr.cancel_reason = reason.map(str::to_owned);
            true
        }
        None => false,
    };
    // DeleteRouteResponse, 202 (YAML /route delete).
    Ok(Answer::json(202, json!({ "success": success })))
}

/// `POST /api/v1/agentWork` (digest §3.8).
pub(crate) fn post_agent_work(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let body = json_body(incoming)?;
    let root = Obj::of(body, "", INVALID_PARAMETERS)?;
    // AgentWorkRequest properties (YAML).
    root.only(&[
        "capacityPercentage",
        "capacityWeight",
        "workItemId",
        "agentActionVisibilities",
        "routingContext",
        "userId",
    ])?;
    // userId required (YAML AgentWorkRequest) → 15106.
    let user_id = root.req_str("userId", 15106)?;
    // workItemId exactly 15 characters (YAML minLength/maxLength 15) → 15110.
    let work_item = root.req_record_id("workItemId", 15110)?;
    // capacityWeight ≥0 (10014), capacityPercentage 0..=100 (10015), not both (10013)
    // (digest §3.8; ERRORCODES 10013–10015).
    let weight = root.opt_f64("capacityWeight", 10014)?;
    let percentage = root.opt_f64("capacityPercentage", 10015)?;
    if weight.is_some() && percentage.is_some() {
        return Err(IsaError::new(
            10013,
            "both capacityWeight and capacityPercentage given",
        ));
    }
    if let Some(w) = weight
        && w < 0.0
    {
        return Err(IsaError::new(10014, format!("capacityWeight is {w}")));
    }
    if let Some(p) = percentage
        && !(0.0..=100.0).contains(&p)
    {
        return Err(IsaError::new(10015, format!("capacityPercentage is {p}")));
    }
    // routingContext: all three fields required when present (YAML RoutingContext).
    let mut context_conversation = None;
    if let Some(rc) = root.opt_obj("routingContext", "routingContext", INVALID_PARAMETERS)? {
        rc.only(&[
            "conversationIdentifier",
            "routingType",
            "routingCorrelationId",
        ])?;
        context_conversation = Some(rc.req_str("conversationIdentifier", INVALID_PARAMETERS)?);
        rc.req_enum("routingType", ROUTING_TYPES, INVALID_PARAMETERS)?;
        rc.req_str("routingCorrelationId", INVALID_PARAMETERS)?;
    }
    // agentActionVisibilities: {agentAction Transfer|Conference, visible} (YAML
    // AgentActionVisibilityItem).
    if let Some(items) =
        root.opt_array("agentActionVisibilities", 0, usize::MAX, INVALID_PARAMETERS)?
    {
        for (i, value) in items.iter().enumerate() {
            let path = item("agentActionVisibilities", i);
            let v = Obj::of(value, &path, INVALID_PARAMETERS)?;
            v.only(&["agentAction", "visible"])?;
            v.req_enum(
                "agentAction",
                &["Transfer", "Conference"],
                INVALID_PARAMETERS,
            )?;
            v.req_bool("visible", INVALID_PARAMETERS)?;
        }
    }

    let mut state = lock(&shared.state);
    // The work item is a MessagingSession of the org (ERRORCODES 15111).
    let (ci, si) = state.session_location(work_item).ok_or_else(|| {
        IsaError::new(15111, format!("no MessagingSession {work_item:?}")).not_found()
    })?;
    let conversation_id = state.conversations[ci].id.clone();
    conversation_index(&state, &allowed, &conversation_id)?;
    let channel = partner_routed(shared, &state.conversations[ci].channel_address_identifier)?;
    if state.conversations[ci].sessions[si].status == SessionStatus::Ended {
        return Err(
            IsaError::new(15111, format!("MessagingSession {work_item:?} has ended")).not_found(),
        );
    }
    // routingContext.conversationIdentifier is the work item's conversation (ERRORCODES 15107).
    if let Some(c) = context_conversation
        && c != conversation_id
    {
        return Err(IsaError::new(
            15107,
            format!("routingContext.conversationIdentifier {c:?} is not {conversation_id:?}"),
        ));
    }
    // userId is a user of the org (ERRORCODES 15106).
    if !channel.users.iter().any(|u| u == user_id) {
        return Err(IsaError::new(15106, format!("no user {user_id:?}")));
    }
    let conversation = &state.conversations[ci];
    // One active AgentWork per user and work item (digest §5; ERRORCODES 15109).
    if conversation
        .agent_works
        .iter()
        .any(|w| w.user_id == user_id && w.session_id == work_item && w.status.is_active())
    {
        return Err(IsaError::new(
            15109,
            format!("user {user_id:?} already has active work on {work_item:?}"),
        ));
    }
    // Without a pending PSR the capacity is needed (digest §3.8).
    let psr = conversation.pending_psr(work_item).cloned();
    if psr.is_none() && weight.is_none() && percentage.is_none() {
        return Err(IsaError::new(
            INVALID_PARAMETERS,
            "no PendingServiceRouting for this work item: capacityWeight or capacityPercentage is required",
        ));
    }
    let routing_context = root.get("routingContext").cloned().unwrap_or_else(|| {
        json!({
            "conversationIdentifier": conversation_id,
            "routingType": psr.as_ref().map_or("Initial", |p| p.routing_type.as_str()),
            "routingCorrelationId": psr.as_ref().map(|p| p.routing_correlation_id.clone()),
        })
    });
    let work_id = state.record_id(AGENT_WORK_PREFIX);
    state.conversations[ci].agent_works.push(EmulatedAgentWork {
        id: work_id.clone(),
        user_id: user_id.to_owned(),
        session_id: work_item.to_owned(),
        status: AgentWorkStatus::Assigned,
        capacity_weight: weight,
        capacity_percentage: percentage,
        psr_id: psr.as_ref().map(|p| p.id.clone()),
        routing_context: root.get("routingContext").cloned(),
        agent_action_visibilities: root.get("agentActionVisibilities").cloned(),
    });
    let mut details = json!({
        "existPsr": psr.is_some(),
        "routingContext": routing_context,
    });
    if let Some(p) = &psr {
        details["psrId"] = json!(p.id);
    }
    if let Some(w) = weight {
        details["capacityWeight"] = json!(w);
    }
    if let Some(p) = percentage {
        details["capacityPercentage"] = json!(p);
    }
    // AgentWorkResponse, 202 (YAML /agentWork post).
    Ok(Answer::json(
        202,
        json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "agentWorkId": work_id,
            "success": true,
            "agentWorkDetails": details,
        }),
    ))
}

/// `PATCH /api/v1/agentWork` (digest §3.9).
pub(crate) fn patch_agent_work(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Required, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // PatchAgentWorkRequest (+ BotAgentWork) properties (YAML).
    root.only(&["workId", "contextType", "status", "workItemId", "botId"])?;
    // workId required, an AgentWork id (YAML; ERRORCODES 10082).
    let work_id = root.req_record_id("workId", 10082)?;
    // contextType enum Agent|Chatbot (YAML AgentWorkContextType; ERRORCODES 10083).
    let context_type = root.req_enum("contextType", &["Agent", "Chatbot"], 10083)?;
    // status enum (YAML AgentWorkStatus; ERRORCODES 10085).
    let status = root.req_enum("status", &["Accept", "Close", "Decline", "Cancel"], 10085)?;
    if context_type == "Chatbot" {
        // BotAgentWork: workItemId and botId required (YAML); no bots in this org (10084).
        root.req_str("workItemId", INVALID_PARAMETERS)?;
        let bot = root.req_str("botId", 10084)?;
        return Err(IsaError::new(10084, format!("no bot {bot:?}")));
    }
    // UserAgentWork has no workItemId / botId (YAML UserAgentWork).
    if root.has("workItemId") || root.has("botId") {
        return Err(IsaError::new(
            INVALID_PARAMETERS,
            "workItemId and botId only go with contextType Chatbot",
        ));
    }
    let mut state = lock(&shared.state);
    let (ci, wi) = state
        .work_location(work_id)
        .ok_or_else(|| IsaError::new(10082, format!("no AgentWork {work_id:?}")).not_found())?;
    let conversation_id = state.conversations[ci].id.clone();
    conversation_index(&state, &allowed, &conversation_id)?;
    partner_routed(shared, &state.conversations[ci].channel_address_identifier)?;
    let current = state.conversations[ci].agent_works[wi].status;
    // Allowed transitions: Accept/Decline/Cancel from Assigned, Close from Assigned or
    // Accepted (digest §3.9) → else 10085.
    let next = match (status, current) {
        ("Accept", AgentWorkStatus::Assigned) => AgentWorkStatus::Accepted,
        ("Decline", AgentWorkStatus::Assigned) => AgentWorkStatus::Declined,
        ("Cancel", AgentWorkStatus::Assigned) => AgentWorkStatus::Cancelled,
        ("Close", AgentWorkStatus::Assigned | AgentWorkStatus::Accepted) => AgentWorkStatus::Closed,
        _ => {
            return Err(IsaError::new(
                10085,
                format!("cannot {status} AgentWork {work_id:?} in status {current:?}"),
            ));
        }
    };
    if next == AgentWorkStatus::Accepted {
        state.accept_work(work_id);
    } else {
        let conversation = &mut state.conversations[ci];
        let user = conversation.agent_works[wi].user_id.clone();
        conversation.agent_works[wi].status = next;
        if next == AgentWorkStatus::Closed {
            conversation.participants.retain(|p| *p != user);
        }
    }
    // PatchAgentWorkResponse, 202 (YAML /agentWork patch).
    Ok(Answer::json(202, json!({ "success": true })))
}

/// `POST /api/v1/routingResult` (digest §3.10).
pub(crate) fn post_routing_result(
    shared: &Shared,
    incoming: &Incoming,
) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let body = json_body(incoming)?;
    let root = Obj::of(body, "", INVALID_PARAMETERS)?;
    // RoutingResultRequest properties (YAML).
    root.only(&[
        "conversationIdentifier",
        "externallyRouted",
        "errorMessage",
        "workItemId",
        "routingType",
        "success",
    ])?;
    // workItemId exactly 15 characters (YAML minLength/maxLength 15) → 10012.
    let work_item = root.req_record_id("workItemId", 10012)?;
    // conversationIdentifier required, ≤240 (YAML) → 10018.
    let conversation_id = root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    // success and externallyRouted required booleans (YAML RoutingResultRequest.required).
    let success = root.req_bool("success", INVALID_PARAMETERS)?;
    root.req_bool("externallyRouted", INVALID_PARAMETERS)?;
    root.opt_enum("routingType", ROUTING_TYPES, INVALID_PARAMETERS)?;
    // errorMessage iff success is false (digest §3.10; ERRORCODES 10033 / 10034).
    let error_message = root.opt_str("errorMessage", INVALID_PARAMETERS)?;
    if success && error_message.is_some() {
        return Err(IsaError::new(10033, "errorMessage given with success true"));
    }
    if !success && error_message.is_none_or(str::is_empty) {
        return Err(IsaError::new(
            10034,
            "success is false but errorMessage is missing",
        ));
    }
    let mut state = lock(&shared.state);
    // The work item is a MessagingSession of the org (ERRORCODES 10012).
    let (ci, _) = state.session_location(work_item).ok_or_else(|| {
        IsaError::new(10012, format!("no MessagingSession {work_item:?}")).not_found()
    })?;
    let actual = state.conversations[ci].id.clone();
    conversation_index(&state, &allowed, &actual)?;
    partner_routed(shared, &state.conversations[ci].channel_address_identifier)?;
    // The conversation is the work item's (ERRORCODES 15107).
    if actual != conversation_id {
        return Err(IsaError::new(
            15107,
            format!("workItemId {work_item:?} belongs to conversation {actual:?}"),
        ));
    }
    state.conversations[ci].routing_results.push(body.clone());
    // RoutingResultResponse, 202 (YAML /routingResult).
    Ok(Answer::json(202, json!({ "success": true })))
}

/// `POST /api/v1/participant` (digest §3.11).
pub(crate) fn post_participant(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // PostParticipantRequest properties (YAML).
    root.only(&["conversationIdentifier", "participants", "operation"])?;
    let conversation_id = root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    // operation: Remove only (YAML ParticipantOperationType; ERRORCODES 10097).
    root.req_enum("operation", &["Remove"], 10097)?;
    // participants: exactly one (YAML minItems/maxItems 1); none → 10039.
    let participants = root.req_array("participants", 0, usize::MAX, 10039)?;
    match participants.len() {
        0 => return Err(IsaError::new(10039, "participants is empty")),
        1 => {}
        n => {
            return Err(IsaError::new(
                INVALID_PARAMETERS,
                format!("participants holds {n} items; exactly 1 allowed"),
            ));
        }
    }
    let path = item("participants", 0);
    // The participant is a rep: appType agent (10037), role Agent (10038) (digest §3.11).
    let (app_type, subject, role) = participant(&participants[0], &path, 10054)?;
    if app_type != "agent" {
        return Err(IsaError::new(
            10037,
            format!("{path}.appType must be agent, not {app_type:?}"),
        ));
    }
    if role != "Agent" {
        return Err(IsaError::new(
            10038,
            format!("{path}.role must be Agent, not {role:?}"),
        ));
    }
    let mut state = lock(&shared.state);
    let index = conversation_index(&state, &allowed, conversation_id)?;
    partner_routed(
        shared,
        &state.conversations[index].channel_address_identifier,
    )?;
    let conversation = &mut state.conversations[index];
    // The rep must be in the conversation (ERRORCODES 10036).
    let Some(position) = conversation.participants.iter().position(|p| p == subject) else {
        return Err(IsaError::new(
            10036,
            format!("user {subject:?} is not in the conversation"),
        )
        .not_found());
    };
    let removed = conversation.participants.remove(position);
    conversation.removed_participants.push(removed);
    // PostParticipantResponse, 200 (YAML /participant).
    Ok(Answer::json(200, json!({ "success": true })))
}

fn session_failure(reason: &str) -> Answer {
    Answer::json(200, json!({ "success": false, "errorReason": reason }))
}

/// `POST /api/v1/messagingSession` (digest §3.12).
pub(crate) fn post_messaging_session(
    shared: &Shared,
    incoming: &Incoming,
) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Ignored, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", INVALID_PARAMETERS)?;
    // PostMessagingSessionRequest properties (YAML).
    root.only(&[
        "channelAddressIdentifier",
        "endUserClientId",
        "conversationIdentifier",
        "sessionId",
        "operation",
        "operationBy",
    ])?;
    // channelAddressIdentifier required, ≤240 (digest §3.12) → 10069.
    let address = root.req_id("channelAddressIdentifier", MAX_IDENTIFIER_LEN, 10069)?;
    // endUserClientId required, ≤240 (digest §3.12) → 10020.
    let end_user = root.req_id("endUserClientId", MAX_IDENTIFIER_LEN, 10020)?;
    // conversationIdentifier required (YAML) → 10018.
    let conversation_id = root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    // operation End|Inactivate (YAML MessagingSessionOperationType; ERRORCODES 10102).
    let operation = root.req_enum("operation", &["End", "Inactivate"], 10102)?;
    // operationBy EndUser|System (YAML MessagingSessionOperationByType; ERRORCODES 10103).
    let operation_by = root.opt_enum("operationBy", &["EndUser", "System"], 10103)?;
    // sessionId required to Inactivate (digest §3.12; ERRORCODES 10106); an id when given (10072).
    let session_id = match root.opt_str("sessionId", 10072)? {
        None | Some("") if operation == "Inactivate" => {
            return Err(IsaError::new(
                10106,
                "operation Inactivate without sessionId",
            ));
        }
        None | Some("") => None,
        Some(_) => Some(root.req_record_id("sessionId", 10072)?),
    };
    // Unknown channel → CHANNEL_ADDRESS_NOT_FOUND (digest §3.12 errorReason).
    if !shared
        .settings
        .channels
        .iter()
        .any(|c| c.channel_address_identifier == address)
    {
        return Ok(session_failure("CHANNEL_ADDRESS_NOT_FOUND"));
    }
    headers::channel_for(shared, &allowed, address)?;
    partner_routed(shared, address)?;
    let mut state = lock(&shared.state);
    // No conversation of this end user on this channel → END_USER_NOT_FOUND.
    let Some(index) = state.conversation_index_of(address, end_user) else {
        return Ok(session_failure("END_USER_NOT_FOUND"));
    };
    let conversation = &mut state.conversations[index];
    // Another conversation id → ACTIVE_CONVERSATION_NOT_FOUND.
    if conversation.id != conversation_id {
        return Ok(session_failure("ACTIVE_CONVERSATION_NOT_FOUND"));
    }
    // The session named (or the current one) must exist and not be ended → SESSION_NOT_FOUND.
    let target = match session_id {
        Some(id) => conversation.sessions.iter_mut().find(|s| s.id == id),
        None => conversation.sessions.last_mut(),
    };
    let Some(session) = target.filter(|s| s.status != SessionStatus::Ended) else {
        return Ok(session_failure("SESSION_NOT_FOUND"));
    };
    let by = operation_by.unwrap_or("System").to_owned();
    if operation == "Inactivate" {
        if session.status == SessionStatus::Active {
            session.status = SessionStatus::Inactive;
            session.changed_by = Some(by);
        }
    } else {
        let id = session.id.clone();
        state.end_session(&id, &by);
    }
    // PostMessagingSessionResponse, 200 (YAML /messagingSession).
    Ok(Answer::json(200, json!({ "success": true })))
}
