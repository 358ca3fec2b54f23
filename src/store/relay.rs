//! Types of the inbound intake and the outbox, shared by both backends.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Outbox kinds.
pub mod kind {
    /// An end user's message → `POST /interactions` (text, location, reply, or a file to fetch).
    pub const ISA_MESSAGE: &str = "isa.message";
    /// The end user started typing → `TypingStartedIndicator`.
    pub const ISA_TYPING_STARTED: &str = "isa.typing_started";
    /// The end user stopped typing → `TypingStoppedIndicator`.
    pub const ISA_TYPING_STOPPED: &str = "isa.typing_stopped";
    /// Delivery / read receipts of rep messages → `POST /acknowledgement`.
    pub const ISA_ACKNOWLEDGEMENT: &str = "isa.acknowledgement";
    /// A rep message could not be delivered → `MessageDeliveryFailed`.
    pub const ISA_DELIVERY_FAILED: &str = "isa.delivery_failed";
    /// A new session on a partner-routed channel → consent, `/route`, maybe `/agentWork`.
    pub const ROUTING_INITIAL: &str = "routing.initial";
    /// A rep asked to transfer or conference → `/route`, `/agentWork`, `/routingResult` within
    /// the 60-second deadline.
    pub const ROUTING_REQUEST: &str = "routing.request";
    /// An offer to a rep that may have gone unanswered: checked when it is due.
    pub const ROUTING_OFFER_TIMEOUT: &str = "routing.offer_timeout";
    /// Salesforce reported the outcome of an AgentWork (accepted, declined …).
    pub const ROUTING_WORK_RESULT: &str = "routing.work_result";
    /// End or inactivate a Salesforce session → `POST /messagingSession`.
    pub const ISA_SESSION_OPERATION: &str = "isa.session_operation";
    /// The end user's consent changed (channels whose consent owner is Partner) →
    /// `PATCH /consent`.
    pub const ISA_CONSENT: &str = "isa.consent";
    /// What a channel can render → `PATCH /capabilities` (at start, and after a reload that
    /// changes it).
    pub const ISA_CAPABILITIES: &str = "isa.capabilities";
    /// A rep message → the provider (text, then each file).
    pub const PROVIDER_MESSAGE: &str = "provider.message";
    /// The rep started typing → the provider's typing indicator.
    pub const PROVIDER_TYPING: &str = "provider.typing";
}

/// The ordering key of a conversation's routing work: apart from its messages, so a transfer
/// never waits behind them.
pub fn routing_key(conversation: Uuid) -> String {
    format!("{conversation}:routing")
}

/// The ordering key of a conversation's timers (checks due later): apart from everything else,
/// so a timer waiting for its time never holds up other work.
pub fn timer_key(conversation: Uuid) -> String {
    format!("{conversation}:timer")
}

/// The ordering key of a conversation's work towards Salesforce.
pub fn inbound_key(conversation: Uuid) -> String {
    conversation.to_string()
}

/// The ordering key of a conversation's work towards the end user: separate from the inbound
/// key, so a Salesforce outage does not hold up rep messages and the other way round.
pub fn outbound_key(conversation: Uuid) -> String {
    format!("{conversation}:out")
}

/// Which of a conversation's ordering keys a row goes under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Work towards Salesforce ([`inbound_key`]).
    ToSalesforce,
    /// Work towards the end user ([`outbound_key`]).
    ToEndUser,
    /// Routing work ([`routing_key`]).
    Routing,
    /// A check due later ([`timer_key`]).
    Timer,
}

impl Lane {
    /// The lane's ordering key in `conversation`.
    pub fn key(self, conversation: Uuid) -> String {
        match self {
            Self::ToSalesforce => inbound_key(conversation),
            Self::ToEndUser => outbound_key(conversation),
            Self::Routing => routing_key(conversation),
            Self::Timer => timer_key(conversation),
        }
    }
}

/// An end user as a webhook identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndUserIdentity {
    /// The key sent to Salesforce for a new end user.
    pub key: String,
    /// E.164 number, if known.
    pub msisdn: Option<String>,
    /// Provider user id (BSUID), if known.
    pub channel_user_id: Option<String>,
    /// Display name, if known.
    pub display_name: Option<String>,
}

/// What an accepted inbound event means for the state and the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntakeWork {
    /// A message: the session is touched and one `isa.message` row written; a pending
    /// typing-stopped row of the conversation is brought forward so it goes first.
    Message {
        /// The provider's message id (8x8 `umid`): kept as the session's last inbound message.
        provider_message_id: String,
        /// The Salesforce entry id chosen for it.
        entry_id: Uuid,
        /// What it says.
        content: crate::providers::InboundContent,
        /// The provider message id it replies to, if any.
        reply_to: Option<String>,
        /// The message is an opt-out keyword (this one): after it is relayed, the session ends
        /// as for [`IntakeWork::OptOut`].
        opt_out: Option<String>,
    },
    /// The end user opted out (Kaleyra `UNSUBSCRIBE`, or a keyword): the open session ends
    /// (`ended_by: EndUser`), Salesforce is told on partner-routed channels, and consent is
    /// updated where the channel's consent owner is Partner.
    OptOut {
        /// How (`UNSUBSCRIBE`, `keyword STOP`).
        via: String,
    },
    /// The end user is typing: `isa.typing_started` now and `isa.typing_stopped` after the quiet
    /// time, or, when a stop is already pending, that stop pushed back.
    Typing {
        /// When Salesforce is told typing stopped, unless a message comes first.
        stop_at: DateTime<Utc>,
    },
    /// A receipt of a rep message: delivered/read → an acknowledgement (coalesced per
    /// conversation, at most 25 per row); a failure → `isa.delivery_failed`.
    Receipt {
        /// The provider's id of the rep message.
        provider_message_id: String,
        /// `Delivered` or `Read`, for an acknowledgement.
        acknowledgement: Option<String>,
        /// Code and message, for a failure.
        failure: Option<(String, Option<String>)>,
        /// The provider's status, for the audit trail.
        status: String,
    },
    /// Recorded in the audit trail only.
    RecordOnly {
        /// What it was.
        what: String,
    },
}

/// One inbound event to commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeEvent {
    /// Dedupe key (per channel).
    pub event_key: String,
    /// The end user, when the event names one (receipts may not).
    pub user: Option<EndUserIdentity>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What to do.
    pub work: IntakeWork,
}

/// A webhook's events for one channel, committed in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeBatch {
    /// The channel.
    pub channel: String,
    /// Its org.
    pub org_id: String,
    /// The events.
    pub events: Vec<IntakeEvent>,
    /// Whether ending a session is sent to Salesforce (`POST /messagingSession`: partner-routed
    /// channels).
    pub end_sessions_in_salesforce: bool,
    /// Whether byocd reports consent (`consent_owner = "Partner"`).
    pub partner_consent: bool,
    /// Events whose own timestamp is before this are refused as stale, audited, and nothing
    /// else written (their dedupe key may be purged already: `domain::privacy`).
    pub stale_before: Option<DateTime<Utc>>,
}

/// What an intake ([`domain::inbound::accept`](crate::domain::inbound::accept), [`domain::outbound::accept`](crate::domain::outbound::accept)) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IntakeReport {
    /// Events committed now.
    pub new: usize,
    /// Events seen before (provider retries), skipped; includes the stale ones.
    pub duplicates: usize,
    /// Of the duplicates, events refused as older than the dedupe retention.
    pub stale: usize,
    /// Outbox rows written.
    pub outbox_rows: usize,
}

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    /// Row id; increases with time.
    pub id: i64,
    /// What to do ([`kind`]).
    pub kind: String,
    /// The org.
    pub org_id: String,
    /// The channel.
    pub channel: String,
    /// Rows with the same key are delivered one at a time in id order.
    pub ordering_key: String,
    /// The conversation.
    pub conversation_id: Option<Uuid>,
    /// The session.
    pub session_id: Option<Uuid>,
    /// What to send.
    pub payload: Value,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// `pending`, `leased`, `done`, `dead`, `discarded`.
    pub status: String,
    /// When it is due.
    pub next_attempt_at: DateTime<Utc>,
    /// The last error.
    pub last_error: Option<String>,
    /// The last error code.
    pub last_code: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// More work written with a row's completion, in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: Value,
    /// Which of the conversation's ordering keys it goes under.
    pub lane: Lane,
    /// Higher runs first.
    pub priority: i32,
    /// When it is due (`None`: at once).
    pub due: Option<DateTime<Utc>>,
}

/// A delivered row to mark done in a group ([`Store::complete_outbox_group`](super::Store::complete_outbox_group)).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The row, as claimed.
    pub item: OutboxItem,
    /// What was delivered.
    pub delivered: Delivered,
    /// How many of its conversation's next rows to claim in the same transaction (0: none):
    /// the rows that follow it, in order, as long as each is pending and due.
    pub claim_next: u32,
}

/// What marking a row done did.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// False: another worker had taken the row over; nothing was written for it.
    pub settled: bool,
    /// Its ordering key's next rows, in order, due and now leased to the same owner, when
    /// asked for.
    pub next: Vec<OutboxItem>,
}

/// What to record when a row was delivered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivered {
    /// A rep message the provider accepted: (provider message id, Salesforce entry id), kept so
    /// receipts find it.
    pub outbound_message: Option<(String, String)>,
    /// Work to write with the completion (e.g. `MessageDeliveryFailed` after a provider
    /// refused a rep message for good).
    pub follow_ups: Vec<FollowUp>,
    /// Salesforce's `conversationIdentifier`, to keep on the conversation.
    pub conversation_identifier: Option<String>,
    /// Salesforce's `workItemId` (MessagingSession id), to keep on the session.
    pub work_item_id: Option<String>,
    /// Extra audit facts (status, request ids, latency).
    pub detail: Value,
    /// Audit rows to write with the completion, beside `outbox.delivered`: what the delivery
    /// found, e.g. a routing step stopped because its session had ended.
    pub audit: Vec<crate::store::AuditEntry>,
    /// Rep choices as they went out, kept on the conversation so the answer can be matched.
    pub choices_sent: Option<ChoicePrompt>,
    /// The choices (by their Salesforce entry id) an end user's message answered: marked
    /// answered on the conversation.
    pub choice_answered: Option<String>,
}

/// Rep choices as they went out to the end user (table `choice_prompts`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChoicePrompt {
    /// Salesforce's entry id of the rep message.
    pub salesforce_entry_id: String,
    /// Its `abstractMessage.id` (what the answer replies to).
    pub message_id: String,
    /// The provider's id of the message sent.
    pub provider_message_id: Option<String>,
    /// `buttons`, `list`, `suggestions` or `text`.
    pub form: String,
    /// The options as sent (`domain::choices::SentOption`s).
    pub options: Value,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// Whether an answer was already relayed.
    pub answered: bool,
}

/// What the workers need to address a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationContext {
    /// The end user's number, if known.
    pub msisdn: Option<String>,
    /// The end user's provider user id, if known.
    pub channel_user_id: Option<String>,
    /// The current session's last message from the end user: provider id and time.
    pub last_inbound: Option<(String, DateTime<Utc>)>,
    /// Salesforce's `conversationIdentifier`, once known.
    pub conversation_identifier: Option<String>,
    /// The end user's key at Salesforce.
    pub end_user_client_id: String,
    /// The current session's `workItemId`, once known.
    pub work_item_id: Option<String>,
    /// The end user's consent on the channel as Salesforce last reported it (`OptIn`,
    /// `OptOut`), if it did.
    pub consent: Option<String>,
    /// When the end user's newest message on the channel (any session) was sent, by the
    /// provider's own timestamp: what WhatsApp's 24-hour window runs from.
    pub newest_inbound_at: Option<DateTime<Utc>>,
}

/// Which outbox rows to list.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Only this session's.
    pub session_id: Option<Uuid>,
    /// At most this many (newest first); 0 means 100.
    pub limit: u32,
}

/// The end-user message stored by the intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the end user.
    Inbound,
    /// From a rep.
    Outbound,
}

/// Salesforce → end user: what one platform event calls for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum OutboundWork {
    /// Work for the provider, one row per part in order (`provider.message` for the text and
    /// for each file, `provider.typing`).
    Outbox {
        /// The jobs, one row each, in order.
        jobs: Vec<super::job::Job>,
    },
    /// The session's status changed at Salesforce.
    SessionStatus {
        /// The new status (`Active`, `Inactive`, `Ended`, …).
        status: String,
        /// The MessagingSession id, if given.
        work_item_id: Option<String>,
        /// Who ended it.
        ended_by: Option<String>,
    },
    /// Who is in the session changed (`ParticipantChanged`, `ParticipantsConferenced`).
    Participants {
        /// The changes, in order.
        changes: Vec<crate::salesforce::events::ParticipantChange>,
        /// Whether reps were conferenced in.
        conferenced: bool,
    },
    /// Salesforce updated the end user's consent (`EndUserConsentUpdated`).
    Consent {
        /// `OptIn` or `OptOut`.
        status: String,
        /// Whether the end user did it.
        end_user_initiated: bool,
    },
    /// Recorded in the audit trail only.
    Record {
        /// What it was.
        what: String,
    },
}

/// One platform event to commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboundIntake {
    /// The configured channel, or `None` for an address byocd does not serve (audited, skipped).
    pub channel: Option<String>,
    /// The channel address the event named.
    pub channel_address: String,
    /// Dedupe key (the entry identifier).
    pub event_key: String,
    /// The end user, as Salesforce knows them.
    pub end_user: EndUserIdentity,
    /// Salesforce's conversation id.
    pub conversation_identifier: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What to do.
    pub work: OutboundWork,
}

/// A batch of platform events and the replay id to store with them, committed together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboundBatch {
    /// The org.
    pub org_id: String,
    /// The topic (`/event/…`).
    pub topic: String,
    /// The replay id of the last event in the batch.
    pub replay_id: Vec<u8>,
    /// The events.
    pub events: Vec<OutboundIntake>,
}

/// A stored Pub/Sub position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The replay id.
    pub replay_id: Vec<u8>,
    /// When an event was last committed (keep-alives do not change it).
    pub last_event_at: Option<DateTime<Utc>>,
    /// When the cursor last moved.
    pub updated_at: DateTime<Utc>,
}

/// A routing to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRouting {
    /// The session routed.
    pub session_id: Option<Uuid>,
    /// The channel.
    pub channel: String,
    /// `Initial`, `Transfer` or `Conference`.
    pub kind: String,
    /// The MessagingSession id.
    pub work_item_id: Option<String>,
    /// PendingServiceRouting id from `/route`.
    pub psr_id: Option<String>,
    /// Correlation id from `/route` or the routing request.
    pub routing_correlation_id: Option<String>,
    /// AgentWork id, when a rep was offered the work.
    pub agent_work_id: Option<String>,
    /// `channel-default`, `queue`, `flow`, `user`, `external`.
    pub target_type: String,
    /// The queue, flow or rep.
    pub target_id: Option<String>,
    /// `Routed`, `Offered`, `Accepted`, `Declined`, `Failed`, `Succeeded` …
    pub status: String,
    /// Reps tried so far.
    pub attempts: i32,
    /// By when it must be answered.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub last_error: Option<String>,
}

/// A stored routing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingRecord {
    /// Its id.
    pub id: Uuid,
    /// What was recorded.
    pub routing: NewRouting,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

// Statements on unfinished outbox work. Each names `status IN ('pending', 'leased')` — the
// predicate of the partial indexes `outbox_due` and `outbox_by_ordering_key` — word for word,
// even where a narrower status test follows: SQLite uses a partial index only when the query's
// WHERE contains the index's predicate as a term (it does not infer `status IN (…)` from
// `status = 'pending'`), and without one it scans every row the outbox ever held. Public so
// tests check their plans against a table full of finished rows.

/// A conversation's newest pending row of a kind (`$1` ordering key, `$2` kind).
pub const NEWEST_PENDING_OF_KIND_SQL: &str = "SELECT id FROM outbox \
     WHERE ordering_key = $1 AND status IN ('pending', 'leased') AND kind = $2 \
     AND status = 'pending' ORDER BY id DESC LIMIT 1";

/// A conversation's newest unfinished row (`$1` ordering key), for coalescing receipts into it.
/// Unfinished rows only: a finished row is never coalesced into, and earlier rows of a key
/// cannot be unfinished while a later one has finished (rows of a key go out in order).
pub const NEWEST_UNFINISHED_SQL: &str = "SELECT id, kind, status, payload FROM outbox \
     WHERE ordering_key = $1 AND status IN ('pending', 'leased') ORDER BY id DESC LIMIT 1";

/// The sweeper's selection of sessions to end: a channel's sessions not yet ended, idle since
/// before `$2`, oldest activity first, at most `$3` (served by the partial index
/// `sessions_open_by_activity`). Public so the benchmarks time the very query the sweeper runs.
pub const SWEEP_SELECT_END_SQL: &str = "SELECT s.id, s.conversation_id, s.work_item_id, u.salesforce_client_id \
     FROM sessions s JOIN conversations c ON c.id = s.conversation_id \
     JOIN end_users u ON u.id = c.end_user_id \
     WHERE s.channel = $1 AND s.status <> 'ended' AND s.last_activity_at < $2 \
     ORDER BY s.last_activity_at LIMIT $3";

/// The sweeper's selection of active sessions to inactivate (same shape as
/// [`SWEEP_SELECT_END_SQL`]).
pub const SWEEP_SELECT_INACTIVATE_SQL: &str = "SELECT s.id, s.conversation_id, s.work_item_id, u.salesforce_client_id \
     FROM sessions s JOIN conversations c ON c.id = s.conversation_id \
     JOIN end_users u ON u.id = c.end_user_id \
     WHERE s.channel = $1 AND s.status <> 'ended' AND s.status = 'active' \
     AND s.last_activity_at < $2 ORDER BY s.last_activity_at LIMIT $3";

/// What one sweep of a channel did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Sessions inactivated.
    pub inactivated: usize,
    /// Sessions ended.
    pub ended: usize,
}
