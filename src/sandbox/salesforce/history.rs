//! `POST /api/v1/conversationHistory` (digest §3.13): a transcript of an end user and a bot,
//! checked participant by participant and entry by entry.

use std::collections::HashSet;

use serde_json::json;

use super::{
    errors::IsaError,
    headers::{self, BodyType, ContextType},
    interactions::{EntryOrigin, entry},
    isa::json_body,
    lock,
    server::{Answer, Incoming, Shared},
    state::{EmulatedEntry, EmulatedSession, SESSION_PREFIX, SessionStatus},
    validate::{MAX_IDENTIFIER_LEN, Obj, item, join, participant},
};

/// Code of a payload problem specific to history uploads (ERRORCODES 10078).
const HISTORY_PAYLOAD: u32 = 10078;
/// Oldest entry accepted, in milliseconds (digest §3.13: not older than 24 h).
const MAX_ENTRY_AGE_MS: i64 = 24 * 60 * 60 * 1000;
/// Most entries per request (YAML maxItems 25; digest §6 #10).
const MAX_ENTRIES: usize = 25;
/// Most participants per request (YAML maxItems 3).
const MAX_PARTICIPANTS: usize = 3;

struct Member<'a> {
    app_type: &'a str,
    subject: &'a str,
    role: &'a str,
    joined: i64,
    left: Option<i64>,
}

pub(crate) fn post(shared: &Shared, incoming: &Incoming) -> Result<Answer, IsaError> {
    let allowed = headers::check(shared, incoming, ContextType::Required, BodyType::Json)?;
    let root = Obj::of(json_body(incoming)?, "", HISTORY_PAYLOAD)?;
    // AddConversationHistoryRequest properties, plus the docs' conversationIdentifier (§6 #10).
    root.only(&[
        "channelAddressIdentifier",
        "conversationIdentifier",
        "conversationParticipants",
        "conversationEntries",
        "messagingSession",
    ])?;
    // channelAddressIdentifier required, ≤240 (YAML; digest §3.13) → 10069.
    let address = root.req_id("channelAddressIdentifier", MAX_IDENTIFIER_LEN, 10069)?;
    // conversationIdentifier optional, ≤240 (docs, digest §3.13) → 10018.
    let conversation_id = root.opt_str("conversationIdentifier", 10018)?;
    if conversation_id.is_some() {
        root.req_id("conversationIdentifier", MAX_IDENTIFIER_LEN, 10018)?;
    }

    // conversationParticipants: 1..3 (YAML); none → 10039.
    let participants = root.req_array(
        "conversationParticipants",
        0,
        MAX_PARTICIPANTS,
        HISTORY_PAYLOAD,
    )?;
    if participants.is_empty() {
        return Err(IsaError::new(10039, "conversationParticipants is empty"));
    }
    let paths: Vec<String> = (0..participants.len())
        .map(|i| item("conversationParticipants", i))
        .collect();
    let mut members = Vec::with_capacity(participants.len());
    for (value, path) in participants.iter().zip(&paths) {
        let p = Obj::of(value, path, HISTORY_PAYLOAD)?;
        // ConversationParticipant properties (YAML).
        p.only(&["participant", "displayName", "joinedTime", "leftTime"])?;
        let ppath = join(path, "participant");
        let pv = p
            .get("participant")
            .ok_or_else(|| IsaError::new(HISTORY_PAYLOAD, format!("{ppath} is required")))?;
        let (app_type, subject, role) = participant(pv, &ppath, 10054)?;
        // Roles only Chatbot or EndUser (ERRORCODES 10043).
        if role != "Chatbot" && role != "EndUser" {
            return Err(IsaError::new(10043, format!("{ppath}.role is {role}")));
        }
        p.opt_str("displayName", HISTORY_PAYLOAD)?;
        // joinedTime required int64 (YAML); leftTime optional int64.
        let joined = p.req_i64("joinedTime", HISTORY_PAYLOAD)?;
        let left = p.opt_i64("leftTime", HISTORY_PAYLOAD)?;
        // End users have no leftTime (10065); bots need one (10066); joined < left (10067).
        match (role, left) {
            ("EndUser", Some(_)) => {
                return Err(IsaError::new(10065, format!("{path}.leftTime is set")));
            }
            ("Chatbot", None) => {
                return Err(IsaError::new(10066, format!("{path}.leftTime is missing")));
            }
            (_, Some(l)) if joined >= l => {
                return Err(IsaError::new(
                    10067,
                    format!("{path}.joinedTime {joined} is not before leftTime {l}"),
                ));
            }
            _ => {}
        }
        // No participant twice (ERRORCODES 10101).
        if members
            .iter()
            .any(|m: &Member<'_>| m.subject == subject && m.role == role && m.app_type == app_type)
        {
            return Err(IsaError::new(10101, format!("{ppath} appears twice")));
        }
        members.push(Member {
            app_type,
            subject,
            role,
            joined,
            left,
        });
    }
    // Exactly one end user (ERRORCODES 10042 / 10044).
    let end_users: Vec<&Member<'_>> = members.iter().filter(|m| m.role == "EndUser").collect();
    let end_user = match end_users.as_slice() {
        [] => return Err(IsaError::new(10042, "")),
        [one] => one.subject,
        _ => return Err(IsaError::new(10044, "")),
    };

    let now_ms = lock(&shared.state).now().timestamp_millis();
    // conversationEntries: 1..25 (YAML).
    let entries = root.req_array("conversationEntries", 1, MAX_ENTRIES, HISTORY_PAYLOAD)?;
    let mut seen = HashSet::new();
    let mut accepted = Vec::with_capacity(entries.len());
    for (i, value) in entries.iter().enumerate() {
        let path = item("conversationEntries", i);
        let e = Obj::of(value, &path, HISTORY_PAYLOAD)?;
        // ConversationEntryHistory: clientTimestamp, sender, entryPayload required (YAML).
        e.only(&["clientTimestamp", "sender", "entryPayload"])?;
        let timestamp = e.req_i64("clientTimestamp", 10046)?;
        // Not older than 24 h, not in the future (digest §3.13; ERRORCODES 10046).
        if timestamp > now_ms || now_ms - timestamp > MAX_ENTRY_AGE_MS {
            return Err(IsaError::new(
                10046,
                format!("{path}.clientTimestamp {timestamp} is not within the last 24 hours"),
            ));
        }
        let spath = join(&path, "sender");
        let sv = e
            .get("sender")
            .ok_or_else(|| IsaError::new(HISTORY_PAYLOAD, format!("{spath} is required")))?;
        let (app_type, subject, role) = participant(sv, &spath, 10054)?;
        // The sender is one of the participants (ERRORCODES 10068).
        let member = members
            .iter()
            .find(|m| m.app_type == app_type && m.subject == subject && m.role == role)
            .ok_or_else(|| IsaError::new(10068, format!("{spath} is not a participant")))?;
        // Sent while the sender was in the conversation (ERRORCODES 10074).
        if timestamp < member.joined || member.left.is_some_and(|l| timestamp > l) {
            return Err(IsaError::new(
                10074,
                format!("{path}.clientTimestamp is outside the sender's presence"),
            ));
        }
        let ppath = join(&path, "entryPayload");
        let payload = e
            .get("entryPayload")
            .ok_or_else(|| IsaError::new(10045, format!("{ppath} is required")))?;
        let payload = Obj::of(payload, &ppath, 10045)?;
        let (id, entry_type) = entry(
            &payload,
            end_user,
            EntryOrigin::History {
                from_end_user: role == "EndUser",
            },
        )?;
        // Message ids are unique (ERRORCODES 10073).
        if !seen.insert(id.clone()) {
            return Err(IsaError::new(10073, format!("{ppath}.id {id:?} repeats")));
        }
        accepted.push((id, entry_type, value.clone()));
    }

    // messagingSession: Establish {startTime, endTime?} or Attach {sessionId} (YAML
    // AbstractMessagingSession).
    enum SessionRequest<'a> {
        Establish { closed: bool },
        Attach(&'a str),
    }
    let mut session_request = None;
    if let Some(ms) = root.opt_obj("messagingSession", "messagingSession", HISTORY_PAYLOAD)? {
        ms.only(&["messagingSessionRequestType", "payload"])?;
        let kind = ms.req_enum(
            "messagingSessionRequestType",
            &["EstablishMessagingSession", "AttachMessagingSession"],
            HISTORY_PAYLOAD,
        )?;
        let payload = ms
            .opt_obj("payload", "messagingSession.payload", HISTORY_PAYLOAD)?
            .ok_or_else(|| {
                IsaError::new(HISTORY_PAYLOAD, "messagingSession.payload is required")
            })?;
        if kind == "EstablishMessagingSession" {
            payload.only(&["startTime", "endTime"])?;
            // startTime required, in the past (ERRORCODES 10061).
            let start = payload.req_i64("startTime", 10061)?;
            if start <= 0 || start > now_ms {
                return Err(IsaError::new(10061, format!("startTime {start}")));
            }
            // endTime after startTime, in the past (ERRORCODES 10064).
            let end = payload.opt_i64("endTime", 10064)?;
            if let Some(end) = end
                && (end <= start || end > now_ms)
            {
                return Err(IsaError::new(10064, format!("endTime {end}")));
            }
            session_request = Some(SessionRequest::Establish {
                closed: end.is_some(),
            });
        } else {
            payload.only(&["sessionId"])?;
            // sessionId: a MessagingSession id (ERRORCODES 10072).
            session_request = Some(SessionRequest::Attach(
                payload.req_record_id("sessionId", 10072)?,
            ));
        }
    }

    let channel = headers::channel_for(shared, &allowed, address)?;
    // Only BYOC for CCaaS partners may upload history (ERRORCODES 10057).
    if channel.product != "CCaaS" {
        return Err(IsaError::new(
            10057,
            format!("channel product is {}", channel.product),
        ));
    }
    let mut state = lock(&shared.state);
    if let Some(id) = conversation_id {
        // A given conversationIdentifier must be this end user's conversation (10018).
        let matches = state.conversation_index(id).is_some_and(|i| {
            let c = &state.conversations[i];
            c.channel_address_identifier == address && c.end_user_client_id == end_user
        });
        if !matches {
            return Err(IsaError::new(
                10018,
                format!("no conversation {id:?} of {end_user:?} on {address:?}"),
            )
            .not_found());
        }
    }
    let session_id = match session_request {
        Some(SessionRequest::Attach(id)) => {
            // The session must exist in this conversation (ERRORCODES 10071).
            let found = state
                .conversation_index_of(address, end_user)
                .is_some_and(|i| state.conversations[i].session(id).is_some());
            if !found {
                return Err(IsaError::new(10071, format!("no session {id:?}")).not_found());
            }
            id.to_owned()
        }
        Some(SessionRequest::Establish { closed: true }) => {
            // A closed historical session, recorded before the current one.
            let (index, _) = state.open_conversation(address, end_user);
            let id = state.record_id(SESSION_PREFIX);
            let started_at = state.now();
            let sessions = &mut state.conversations[index].sessions;
            let at = sessions.len().saturating_sub(1);
            sessions.insert(
                at,
                EmulatedSession {
                    id: id.clone(),
                    status: SessionStatus::Ended,
                    changed_by: Some("System".to_owned()),
                    started_at,
                },
            );
            id
        }
        Some(SessionRequest::Establish { closed: false }) | None => {
            let (index, _) = state.open_conversation(address, end_user);
            state.conversations[index]
                .current_session()
                .map(|s| s.id.clone())
                .unwrap_or_default()
        }
    };
    let (index, _) = state.open_conversation(address, end_user);
    let conversation = &mut state.conversations[index];
    for (id, entry_type, json) in accepted {
        conversation.entries.push(EmulatedEntry {
            interaction_type: "History".to_owned(),
            entry_type: Some(entry_type),
            id,
            session_id: session_id.clone(),
            json,
            attachment: None,
        });
    }
    // AddConversationHistoryResponse, 202 (YAML /conversationHistory).
    Ok(Answer::json(
        202,
        json!({
            "success": true,
            "conversationIdentifier": conversation.id,
            "messagingSessionId": session_id,
        }),
    ))
}
