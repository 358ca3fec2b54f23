//! The emulated org's records: tokens, conversations, messaging sessions, pending service
//! routings and AgentWork, plus the emulator's clock.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::LoggedAttachment;

/// Key prefix of MessagingSession ids.
pub(crate) const SESSION_PREFIX: &str = "0Mw";
/// Key prefix of PendingServiceRouting ids.
pub(crate) const PSR_PREFIX: &str = "0JR";
/// Key prefix of AgentWork ids.
pub(crate) const AGENT_WORK_PREFIX: &str = "0Bz";
/// Key prefix of ContentVersion ids (files a rep attaches).
pub(crate) const CONTENT_VERSION_PREFIX: &str = "068";
/// Length of a case-sensitive Salesforce record id.
pub(crate) const RECORD_ID_LEN: usize = 15;

/// Status of a messaging session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Open and routable.
    Active,
    /// Suspended by `Inactivate`; the next inbound interaction reactivates it.
    Inactive,
    /// Closed for good.
    Ended,
}

/// A MessagingSession record.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedSession {
    /// 15-character id starting `0Mw`.
    pub id: String,
    /// Current status.
    pub status: SessionStatus,
    /// Who ended or inactivated it last (`EndUser`, `System`, `Agent`), if anyone.
    pub changed_by: Option<String>,
    /// When it was opened (emulator clock).
    pub started_at: DateTime<Utc>,
}

/// One inbound interaction accepted by `/interactions` or `/conversationHistory`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedEntry {
    /// `EntryInteraction`, `AttachmentInteraction` or `History`.
    pub interaction_type: String,
    /// The entry type (`Message`, `TypingStartedIndicator`, …); `None` for attachments.
    pub entry_type: Option<String>,
    /// The interaction's id (`payload.id` or the attachment interaction's `id`).
    pub id: String,
    /// The session it was added to.
    pub session_id: String,
    /// The interaction as sent.
    pub json: Value,
    /// The file, for an attachment interaction.
    pub attachment: Option<LoggedAttachment>,
}

impl EmulatedEntry {
    /// The text of a text message entry (`payload.abstractMessage.staticContent.text`).
    pub fn text(&self) -> Option<&str> {
        self.json["payload"]["abstractMessage"]["staticContent"]["text"].as_str()
    }
}

/// One acknowledgement received by `/acknowledgement`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedAcknowledgement {
    /// `Read` or `Delivered`.
    pub acknowledgement_type: String,
    /// The outbound entry acknowledged.
    pub acknowledged_entry_id: String,
    /// The client-supplied id of the acknowledgement entry.
    pub created_entry_id: String,
    /// `acknowledgementTimestamp` as sent (string or number).
    pub timestamp: Value,
}

/// Status of a pending service routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsrStatus {
    /// Waiting for a rep.
    Pending,
    /// Removed because a rep accepted the work.
    Accepted,
    /// Removed by `DELETE /route`.
    Deleted,
    /// Replaced by a later `/route` on the same session.
    Replaced,
}

/// A PendingServiceRouting record created by `/route`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedPsr {
    /// 15-character id starting `0JR`.
    pub id: String,
    /// The MessagingSession routed.
    pub session_id: String,
    /// `Initial`, `Transfer` or `Conference`.
    pub routing_type: String,
    /// The `routingCorrelationId` answered.
    pub routing_correlation_id: String,
    /// Queue named (directly or as the flow's fallback).
    pub queue_id: Option<String>,
    /// Flow named.
    pub flow_id: Option<String>,
    /// `routingInfo.routingAttributes` as sent.
    pub routing_attributes: BTreeMap<String, String>,
    /// Current status.
    pub status: PsrStatus,
    /// `cancelReason` of `DELETE /route`, if given.
    pub cancel_reason: Option<String>,
}

/// Status of an AgentWork record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentWorkStatus {
    /// Pushed to the rep, not answered yet.
    Assigned,
    /// Accepted by the rep.
    Accepted,
    /// Declined by the rep.
    Declined,
    /// Cancelled by the partner.
    Cancelled,
    /// Closed.
    Closed,
}

impl AgentWorkStatus {
    /// Whether the work still counts as active (for the one-active-per-user rule, 15109).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Assigned | Self::Accepted)
    }
}

/// An AgentWork record created by `POST /agentWork`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedAgentWork {
    /// 15-character id starting `0Bz`.
    pub id: String,
    /// The rep.
    pub user_id: String,
    /// The MessagingSession (work item).
    pub session_id: String,
    /// Current status.
    pub status: AgentWorkStatus,
    /// `capacityWeight`, if sent.
    pub capacity_weight: Option<f64>,
    /// `capacityPercentage`, if sent.
    pub capacity_percentage: Option<f64>,
    /// The PSR pending when the work was created, if any.
    pub psr_id: Option<String>,
    /// `routingContext` as sent.
    pub routing_context: Option<Value>,
    /// `agentActionVisibilities` as sent.
    pub agent_action_visibilities: Option<Value>,
}

/// A conversation between an end user and a channel, with everything recorded on it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedConversation {
    /// `conversationIdentifier` (a UUID).
    pub id: String,
    /// The channel.
    pub channel_address_identifier: String,
    /// The end user (`from` / participant subject).
    pub end_user_client_id: String,
    /// Messaging sessions, oldest first; the last one is the current one.
    pub sessions: Vec<EmulatedSession>,
    /// Consent status set by `/consent`, if any.
    pub consent_status: Option<String>,
    /// Inbound interactions accepted, in order.
    pub entries: Vec<EmulatedEntry>,
    /// Acknowledgements received, in order.
    pub acknowledgements: Vec<EmulatedAcknowledgement>,
    /// PSRs created by `/route`, in order.
    pub psrs: Vec<EmulatedPsr>,
    /// AgentWork records, in order.
    pub agent_works: Vec<EmulatedAgentWork>,
    /// `/routingResult` bodies received, in order.
    pub routing_results: Vec<Value>,
    /// Reps currently in the conversation (user ids), in order of joining.
    pub participants: Vec<String>,
    /// Reps removed by `/participant`, in order.
    pub removed_participants: Vec<String>,
}

impl EmulatedConversation {
    /// The current (latest) session.
    pub fn current_session(&self) -> Option<&EmulatedSession> {
        self.sessions.last()
    }

    /// The session with `id`.
    pub fn session(&self, id: &str) -> Option<&EmulatedSession> {
        self.sessions.iter().find(|s| s.id == id)
    }

    /// The PSR still pending on `session_id`, if any.
    pub fn pending_psr(&self, session_id: &str) -> Option<&EmulatedPsr> {
        self.psrs
            .iter()
            .rev()
            .find(|p| p.session_id == session_id && p.status == PsrStatus::Pending)
    }
}

#[derive(Debug)]
struct TokenRecord {
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Unknown,
    Revoked,
    Expired,
}

/// Everything the emulator remembers.
#[derive(Debug)]
pub(crate) struct State {
    clock_offset: chrono::Duration,
    tokens: HashMap<String, TokenRecord>,
    pub(crate) token_lifetime: Option<Duration>,
    pub(crate) conversations: Vec<EmulatedConversation>,
    /// Index of `conversations` by (channel, end user) and by id: conversations are only ever
    /// appended, so the indexes stay valid, and lookups stay cheap with many end users.
    by_end_user: HashMap<(String, String), usize>,
    by_id: HashMap<String, usize>,
    pub(crate) capabilities: BTreeMap<String, Value>,
    /// Files reps attached, by ContentVersion id.
    pub(crate) rep_files: BTreeMap<String, super::RepFile>,
    next_record: u64,
    record_salt: String,
}

impl State {
    pub(crate) fn new() -> Self {
        let salt: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(4)
            .collect::<String>()
            .to_ascii_uppercase();
        Self {
            clock_offset: chrono::Duration::zero(),
            tokens: HashMap::new(),
            token_lifetime: None,
            conversations: Vec::new(),
            by_end_user: HashMap::new(),
            by_id: HashMap::new(),
            capabilities: BTreeMap::new(),
            rep_files: BTreeMap::new(),
            next_record: 1,
            record_salt: salt,
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub(crate) fn advance_clock(&mut self, by: Duration) {
        self.clock_offset += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    /// A new 15-character record id with the 3-character key `prefix`.
    pub(crate) fn record_id(&mut self, prefix: &str) -> String {
        let n = self.next_record;
        self.next_record += 1;
        let id = format!("{prefix}{}{n:08}", self.record_salt);
        debug_assert_eq!(id.len(), RECORD_ID_LEN);
        id
    }

    pub(crate) fn issue_token(&mut self, token: String) {
        let now = self.now();
        let expires_at = self
            .token_lifetime
            .and_then(|l| chrono::Duration::from_std(l).ok())
            .map(|l| now + l);
        self.tokens.insert(
            token,
            TokenRecord {
                expires_at,
                revoked: false,
            },
        );
    }

    pub(crate) fn check_token(&self, token: &str) -> Result<(), TokenProblem> {
        let record = self.tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if record.revoked {
            return Err(TokenProblem::Revoked);
        }
        if record.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(TokenProblem::Expired);
        }
        Ok(())
    }

    pub(crate) fn revoke_tokens(&mut self) {
        for record in self.tokens.values_mut() {
            record.revoked = true;
        }
    }

    pub(crate) fn is_valid_token(&self, token: &str) -> bool {
        self.check_token(token).is_ok()
    }

    pub(crate) fn tokens_issued(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn conversation_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn conversation_index_of(&self, channel: &str, end_user: &str) -> Option<usize> {
        self.by_end_user
            .get(&(channel.to_owned(), end_user.to_owned()))
            .copied()
    }

    /// The index of the conversation and session holding `session_id`.
    pub(crate) fn session_location(&self, session_id: &str) -> Option<(usize, usize)> {
        self.conversations.iter().enumerate().find_map(|(ci, c)| {
            c.sessions
                .iter()
                .position(|s| s.id == session_id)
                .map(|si| (ci, si))
        })
    }

    /// The index of the conversation and AgentWork with id `work_id`.
    pub(crate) fn work_location(&self, work_id: &str) -> Option<(usize, usize)> {
        self.conversations.iter().enumerate().find_map(|(ci, c)| {
            c.agent_works
                .iter()
                .position(|w| w.id == work_id)
                .map(|wi| (ci, wi))
        })
    }

    /// Looks up or creates the conversation of (`channel`, `end_user`) and makes sure it has an
    /// open session: an inactive one is reactivated, after an ended one a new one is opened.
    /// Returns the conversation's index and whether it was created.
    pub(crate) fn open_conversation(&mut self, channel: &str, end_user: &str) -> (usize, bool) {
        let (index, created) = match self.conversation_index_of(channel, end_user) {
            Some(i) => (i, false),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let index = self.conversations.len();
                self.by_id.insert(id.clone(), index);
                self.by_end_user
                    .insert((channel.to_owned(), end_user.to_owned()), index);
                self.conversations.push(EmulatedConversation {
                    id,
                    channel_address_identifier: channel.to_owned(),
                    end_user_client_id: end_user.to_owned(),
                    sessions: Vec::new(),
                    consent_status: None,
                    entries: Vec::new(),
                    acknowledgements: Vec::new(),
                    psrs: Vec::new(),
                    agent_works: Vec::new(),
                    routing_results: Vec::new(),
                    participants: Vec::new(),
                    removed_participants: Vec::new(),
                });
                (self.conversations.len() - 1, true)
            }
        };
        let needs_new = match self.conversations[index].sessions.last_mut() {
            Some(s) if s.status == SessionStatus::Inactive => {
                s.status = SessionStatus::Active;
                false
            }
            Some(s) => s.status == SessionStatus::Ended,
            None => true,
        };
        if needs_new {
            self.open_session(index);
        }
        (index, created)
    }

    /// Opens a new active session on conversation `index` and returns its id.
    pub(crate) fn open_session(&mut self, index: usize) -> String {
        let id = self.record_id(SESSION_PREFIX);
        let started_at = self.now();
        let conversation = &mut self.conversations[index];
        conversation.participants.clear();
        conversation.sessions.push(EmulatedSession {
            id: id.clone(),
            status: SessionStatus::Active,
            changed_by: None,
            started_at,
        });
        id
    }

    /// Ends the open session `session_id`; false if there is none.
    pub(crate) fn end_session(&mut self, session_id: &str, by: &str) -> bool {
        let Some((ci, si)) = self.session_location(session_id) else {
            return false;
        };
        let conversation = &mut self.conversations[ci];
        let session = &mut conversation.sessions[si];
        if session.status == SessionStatus::Ended {
            return false;
        }
        session.status = SessionStatus::Ended;
        session.changed_by = Some(by.to_owned());
        for psr in conversation
            .psrs
            .iter_mut()
            .filter(|p| p.session_id == session_id && p.status == PsrStatus::Pending)
        {
            psr.status = PsrStatus::Deleted;
        }
        for work in conversation
            .agent_works
            .iter_mut()
            .filter(|w| w.session_id == session_id && w.status.is_active())
        {
            work.status = AgentWorkStatus::Closed;
        }
        conversation.participants.clear();
        true
    }

    /// A rep accepts the assigned AgentWork `work_id`; false if there is none.
    pub(crate) fn accept_work(&mut self, work_id: &str) -> bool {
        let Some((ci, wi)) = self.work_location(work_id) else {
            return false;
        };
        let conversation = &mut self.conversations[ci];
        if conversation.agent_works[wi].status != AgentWorkStatus::Assigned {
            return false;
        }
        conversation.agent_works[wi].status = AgentWorkStatus::Accepted;
        let session_id = conversation.agent_works[wi].session_id.clone();
        let user = conversation.agent_works[wi].user_id.clone();
        for psr in conversation
            .psrs
            .iter_mut()
            .filter(|p| p.session_id == session_id && p.status == PsrStatus::Pending)
        {
            psr.status = PsrStatus::Accepted;
        }
        if !conversation.participants.contains(&user) {
            conversation.participants.push(user);
        }
        true
    }
}
