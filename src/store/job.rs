//! Typed outbox jobs: what one outbox row asks the relay to do.
//!
//! A row is stored as two columns, `kind` and `payload`; [`Job`] is their typed form, tagged
//! adjacently on exactly those two names, with today's kind strings ([`kind`]) as the tags, so
//! every row already stored parses. Writers build a job and store [`Job::kind`] and
//! [`Job::payload`]; the relay parses a claimed row once with [`Job::parse`] and matches on the
//! variants. A row that does not parse (an unknown kind, a payload of the wrong shape) is a
//! [`JobError`]: the relay dead-letters it with an alert, it never panics and never retries it.
//!
//! Each payload struct carries exactly the fields its writers write (the intake, src/domain/,
//! for inbound work, rep work and routing requests; the store's sweeper; the relay itself for
//! follow-ups); fields that old rows may lack, or that the relay always read leniently, have
//! serde defaults.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    providers::InboundContent,
    salesforce::{
        events::{Attachment, Choices},
        types::{
            AcknowledgementType, CapabilitiesRequest, ConsentStatus, RoutingType, SessionOperation,
            SessionOperationBy,
        },
    },
};

use super::{
    FollowUp,
    relay::{Lane, kind},
};

/// One outbox row's work, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload")]
pub enum Job {
    /// An end user's message → `POST /interactions` ([`kind::ISA_MESSAGE`]).
    #[serde(rename = "isa.message")]
    IsaMessage(IsaMessage),
    /// The end user started typing → `TypingStartedIndicator` ([`kind::ISA_TYPING_STARTED`]).
    #[serde(rename = "isa.typing_started")]
    IsaTypingStarted(IsaTyping),
    /// The end user stopped typing → `TypingStoppedIndicator` ([`kind::ISA_TYPING_STOPPED`]).
    #[serde(rename = "isa.typing_stopped")]
    IsaTypingStopped(IsaTyping),
    /// Delivery / read receipts of rep messages → `POST /acknowledgement`
    /// ([`kind::ISA_ACKNOWLEDGEMENT`]).
    #[serde(rename = "isa.acknowledgement")]
    IsaAcknowledgement(IsaAcknowledgement),
    /// A rep message could not be delivered → `MessageDeliveryFailed`
    /// ([`kind::ISA_DELIVERY_FAILED`]).
    #[serde(rename = "isa.delivery_failed")]
    IsaDeliveryFailed(IsaDeliveryFailed),
    /// End or inactivate a Salesforce session → `POST /messagingSession`
    /// ([`kind::ISA_SESSION_OPERATION`]).
    #[serde(rename = "isa.session_operation")]
    IsaSessionOperation(IsaSessionOperation),
    /// The end user's consent changed → `PATCH /consent` ([`kind::ISA_CONSENT`]).
    #[serde(rename = "isa.consent")]
    IsaConsent(IsaConsent),
    /// A new session on a partner-routed channel ([`kind::ROUTING_INITIAL`]).
    #[serde(rename = "routing.initial")]
    RoutingInitial(RoutingInitial),
    /// A rep asked to transfer or conference ([`kind::ROUTING_REQUEST`]).
    #[serde(rename = "routing.request")]
    RoutingRequest(RoutingRequest),
    /// An offer to a rep that may have gone unanswered ([`kind::ROUTING_OFFER_TIMEOUT`]).
    #[serde(rename = "routing.offer_timeout")]
    RoutingOfferTimeout(RoutingOfferTimeout),
    /// Salesforce reported the outcome of an AgentWork ([`kind::ROUTING_WORK_RESULT`]).
    #[serde(rename = "routing.work_result")]
    RoutingWorkResult(RoutingWorkResult),
    /// A rep message, one part of it → the provider ([`kind::PROVIDER_MESSAGE`]).
    #[serde(rename = "provider.message")]
    ProviderMessage(ProviderMessage),
    /// The rep started typing → the provider's typing indicator ([`kind::PROVIDER_TYPING`]).
    #[serde(rename = "provider.typing")]
    ProviderTyping(ProviderTyping),
    /// What a channel can render → `PATCH /capabilities` ([`kind::ISA_CAPABILITIES`]),
    /// written at start and after a reload (src/domain/capabilities.rs).
    #[serde(rename = "isa.capabilities")]
    IsaCapabilities(CapabilitiesRequest),
}

/// The priority of routing work: it runs before everything else (the rest is 0).
pub const ROUTING_PRIORITY: i32 = 10;

/// Every kind a [`Job`] can have, in variant order.
pub const KINDS: [&str; 14] = [
    kind::ISA_MESSAGE,
    kind::ISA_TYPING_STARTED,
    kind::ISA_TYPING_STOPPED,
    kind::ISA_ACKNOWLEDGEMENT,
    kind::ISA_DELIVERY_FAILED,
    kind::ISA_SESSION_OPERATION,
    kind::ISA_CONSENT,
    kind::ROUTING_INITIAL,
    kind::ROUTING_REQUEST,
    kind::ROUTING_OFFER_TIMEOUT,
    kind::ROUTING_WORK_RESULT,
    kind::PROVIDER_MESSAGE,
    kind::PROVIDER_TYPING,
    kind::ISA_CAPABILITIES,
];

/// A stored row that is not a [`Job`].
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has this kind.
    #[error("unknown outbox kind `{0}`")]
    UnknownKind(String),
    /// The payload is not of the kind's shape.
    #[error("the payload of a `{kind}` row does not parse: {source}")]
    Payload {
        /// The row's kind.
        kind: String,
        /// What is wrong, with the path of the field.
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
}

impl Job {
    /// Reads a stored row's `kind` and `payload`.
    pub fn parse(kind: &str, payload: &Value) -> Result<Self, JobError> {
        if !KINDS.contains(&kind) {
            return Err(JobError::UnknownKind(kind.to_owned()));
        }
        let mut row = Map::new();
        row.insert("kind".into(), kind.into());
        row.insert("payload".into(), payload.clone());
        serde_path_to_error::deserialize(Value::Object(row)).map_err(|source| JobError::Payload {
            kind: kind.to_owned(),
            source,
        })
    }

    /// The row's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IsaMessage(_) => kind::ISA_MESSAGE,
            Self::IsaTypingStarted(_) => kind::ISA_TYPING_STARTED,
            Self::IsaTypingStopped(_) => kind::ISA_TYPING_STOPPED,
            Self::IsaAcknowledgement(_) => kind::ISA_ACKNOWLEDGEMENT,
            Self::IsaDeliveryFailed(_) => kind::ISA_DELIVERY_FAILED,
            Self::IsaSessionOperation(_) => kind::ISA_SESSION_OPERATION,
            Self::IsaConsent(_) => kind::ISA_CONSENT,
            Self::RoutingInitial(_) => kind::ROUTING_INITIAL,
            Self::RoutingRequest(_) => kind::ROUTING_REQUEST,
            Self::RoutingOfferTimeout(_) => kind::ROUTING_OFFER_TIMEOUT,
            Self::RoutingWorkResult(_) => kind::ROUTING_WORK_RESULT,
            Self::ProviderMessage(_) => kind::PROVIDER_MESSAGE,
            Self::ProviderTyping(_) => kind::PROVIDER_TYPING,
            Self::IsaCapabilities(_) => kind::ISA_CAPABILITIES,
        }
    }

    /// The row's `payload` column.
    pub fn payload(&self) -> Value {
        // The payload structs hold strings, numbers, UUIDs and string-keyed maps only, which
        // always serialise; `Null` is unreachable, and would be dead-lettered, not sent.
        match serde_json::to_value(self) {
            Ok(Value::Object(mut row)) => row.remove("payload").unwrap_or_default(),
            _ => Value::Null,
        }
    }

    /// The row's priority: routing work runs before everything else (Salesforce gives a
    /// routing request 60 seconds).
    pub fn priority(&self) -> i32 {
        if self.is_routing() {
            ROUTING_PRIORITY
        } else {
            0
        }
    }

    /// Whether it is a step of partner-owned routing.
    pub fn is_routing(&self) -> bool {
        matches!(
            self,
            Self::RoutingInitial(_)
                | Self::RoutingRequest(_)
                | Self::RoutingOfferTimeout(_)
                | Self::RoutingWorkResult(_)
        )
    }

    /// Whether the work goes to Salesforce (`false`: to the end user, through the provider).
    pub fn to_salesforce(&self) -> bool {
        !matches!(self, Self::ProviderMessage(_) | Self::ProviderTyping(_))
    }

    /// `(kind, payload)`, as [`OutboundWork::Outbox`](crate::store::OutboundWork) rows hold them.
    pub fn row(&self) -> (String, Value) {
        (self.kind().to_owned(), self.payload())
    }

    /// The job as work written with a row's completion, due at once or at `due`: a check due
    /// later waits under the conversation's timer key (it never holds up other work), routing
    /// work under its routing key, the rest by its direction.
    pub fn follow_up(&self, due: Option<DateTime<Utc>>) -> FollowUp {
        let lane = if due.is_some() {
            Lane::Timer
        } else if self.is_routing() {
            Lane::Routing
        } else if self.to_salesforce() {
            Lane::ToSalesforce
        } else {
            Lane::ToEndUser
        };
        FollowUp {
            kind: self.kind().to_owned(),
            payload: self.payload(),
            lane,
            priority: self.priority(),
            due,
        }
    }
}

/// [`Job::IsaMessage`]: written by the inbound intake (src/domain/inbound.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsaMessage {
    /// The end user's key at Salesforce.
    pub from: String,
    /// The entry id, fixed when the row was written (the same on every retry).
    pub entry_id: Uuid,
    /// When the provider received it, ms since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// What it says.
    pub content: InboundContent,
    /// The provider message id it replies to, if any.
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// [`Job::IsaTypingStarted`] and [`Job::IsaTypingStopped`]: written by the inbound intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsaTyping {
    /// The end user's key at Salesforce.
    pub from: String,
    /// The entry id.
    pub entry_id: Uuid,
    /// When the end user started typing, ms since the epoch.
    #[serde(default)]
    pub timestamp: i64,
}

/// [`Job::IsaAcknowledgement`]: written by the inbound intake, which coalesces receipts into a
/// pending row (at most 25).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsaAcknowledgement {
    /// The end user's key at Salesforce.
    pub from: String,
    /// The receipts.
    pub acknowledgements: Vec<Acknowledged>,
}

/// One receipt of an [`IsaAcknowledgement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// `Delivered` or `Read`.
    #[serde(rename = "type")]
    pub kind: AcknowledgementType,
    /// The Salesforce entry id of the rep message.
    pub entry: String,
    /// The id of the acknowledgement entry.
    pub created: Uuid,
    /// When, ms since the epoch.
    #[serde(default)]
    pub timestamp: i64,
}

/// [`Job::IsaDeliveryFailed`]: written by the inbound intake (a provider's failure receipt) and
/// by the relay (a provider refused a rep message for good).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsaDeliveryFailed {
    /// The end user's key at Salesforce.
    pub from: String,
    /// The entry id.
    pub entry_id: Uuid,
    /// The Salesforce entry id of the rep message that failed.
    #[serde(default)]
    pub failed_entry: Option<String>,
    /// The provider's error code.
    pub code: String,
    /// The provider's error message.
    #[serde(default)]
    pub message: Option<String>,
    /// When, ms since the epoch.
    #[serde(default)]
    pub timestamp: i64,
}

/// [`Job::IsaSessionOperation`]: written by the store's sweeper and by the inbound intake (an
/// opt-out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsaSessionOperation {
    /// The end user's key at Salesforce.
    pub from: String,
    /// `End` or `Inactivate`.
    pub operation: SessionOperation,
    /// `System` (idle) or `EndUser` (opt-out).
    pub operation_by: SessionOperationBy,
    /// The session's work item; `None` when an opt-out opened the session (the relay reads it
    /// when the row goes out).
    #[serde(default)]
    pub work_item_id: Option<String>,
}

/// [`Job::IsaConsent`]: written by the inbound intake (an opt-out on a channel whose consent owner is
/// Partner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsaConsent {
    /// The end user's key at Salesforce.
    pub from: String,
    /// The new status.
    pub consent_status: ConsentStatus,
}

/// [`Job::RoutingInitial`]: written by the relay after the first message of a new session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingInitial {
    /// The MessagingSession id.
    pub work_item_id: String,
    /// Salesforce's conversation id.
    pub conversation_identifier: String,
    /// The end user's key at Salesforce.
    pub from: String,
    /// The first message's text, for routing attributes.
    #[serde(default)]
    pub text: Option<String>,
}

/// [`Job::RoutingRequest`]: written by the subscriber from a `RoutingRequested` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingRequest {
    /// `Transfer` or `Conference` as Salesforce named it (anything else is served as a
    /// transfer).
    #[serde(default)]
    pub routing_type: String,
    /// Salesforce's conversation id.
    pub conversation_identifier: String,
    /// The MessagingSession id.
    pub work_item_id: String,
    /// The event's `routingParameters`.
    #[serde(default)]
    pub params: Option<RoutingParams>,
    /// The correlation id (the event's `channelData.eventId`).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// By when it must be answered, ms since the epoch.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
}

impl RoutingRequest {
    /// The routing type to send: a conference, else a transfer.
    pub fn routing_type(&self) -> RoutingType {
        if self.routing_type == "Conference" {
            RoutingType::Conference
        } else {
            RoutingType::Transfer
        }
    }
}

/// A routing request's `routingParameters`: the target it names, and the rest kept as it came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingParams {
    /// A rep.
    #[serde(
        rename = "userId",
        default,
        deserialize_with = "text_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    /// A queue (or a flow's fallback queue).
    #[serde(
        rename = "queueId",
        default,
        deserialize_with = "text_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_id: Option<String>,
    /// A flow.
    #[serde(
        rename = "flowId",
        default,
        deserialize_with = "text_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_id: Option<String>,
    /// Everything else Salesforce sent (`channelData` …), kept as it came.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl RoutingParams {
    /// The rep named, if any (an empty id names nothing).
    pub fn user(&self) -> Option<&str> {
        self.user_id.as_deref().filter(|v| !v.is_empty())
    }

    /// The queue named, if any.
    pub fn queue(&self) -> Option<&str> {
        self.queue_id.as_deref().filter(|v| !v.is_empty())
    }

    /// The flow named, if any.
    pub fn flow(&self) -> Option<&str> {
        self.flow_id.as_deref().filter(|v| !v.is_empty())
    }
}

/// A target id that is not text (`null`, a number) names nothing, as Salesforce's optional
/// fields have always been read.
fn text_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// [`Job::RoutingOfferTimeout`]: written by the relay with an offer to a rep, due when the
/// offer times out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingOfferTimeout {
    /// The AgentWork offered.
    pub work_id: String,
    /// Salesforce's conversation id.
    pub conversation_identifier: String,
}

/// [`Job::RoutingWorkResult`]: written by the subscriber from an AgentWork's outcome (and made
/// by the relay from an offer that timed out, as `Unanswered`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingWorkResult {
    /// The AgentWork.
    pub work_id: String,
    /// `Accepted`, `Declined`, `Cancelled`, `Unanswered` …
    pub work_type: String,
    /// Salesforce's conversation id, when the event named it.
    #[serde(default)]
    pub conversation_identifier: Option<String>,
}

/// [`Job::ProviderMessage`]: written by the subscriber, one row per part of a rep message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderMessage {
    /// Salesforce's entry id of the rep message.
    pub entry_id: String,
    /// 0 for the text, then 1, 2 … for each file.
    #[serde(default)]
    pub part: u64,
    /// The text or the file.
    #[serde(flatten)]
    pub body: ProviderMessageBody,
}

impl ProviderMessage {
    /// The reference sent to the provider (echoed in receipts): the entry id, with `#part`
    /// after the first part.
    pub fn reference(&self) -> String {
        if self.part == 0 {
            self.entry_id.clone()
        } else {
            format!("{}#{}", self.entry_id, self.part)
        }
    }
}

/// What one part of a rep message holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProviderMessageBody {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A file at Salesforce.
    File {
        /// Where it is.
        attachment: Attachment,
    },
    /// A rep's choices (buttons, quick replies, a list picker), rendered by the relay in the
    /// channel's native form or as numbered text.
    Choices {
        /// The question and its options.
        choices: Choices,
    },
    /// A rep's rich link, rendered by the relay as an RCS rich card or as text with the URL.
    Link {
        /// The link.
        link: crate::salesforce::events::RichLink,
    },
}

/// [`Job::ProviderTyping`]: written by the subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderTyping {
    /// Always `true`: only the start is relayed (providers clear the indicator by themselves).
    #[serde(default)]
    pub started: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Parses a payload shape of a kind and checks it survives a round trip.
    fn parses(kind: &str, payload: Value) -> Job {
        let job = Job::parse(kind, &payload).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(job.kind(), kind);
        assert_eq!(Job::parse(job.kind(), &job.payload()).unwrap(), job);
        job
    }

    #[test]
    fn every_kind_is_a_tag_and_every_tag_a_kind() {
        // A job's serde tag is its kind, and `kind()` names each variant's tag.
        let samples = [
            Job::ProviderTyping(ProviderTyping { started: true }),
            Job::RoutingOfferTimeout(RoutingOfferTimeout {
                work_id: "0Bz".into(),
                conversation_identifier: "c".into(),
            }),
        ];
        for job in samples {
            let row = serde_json::to_value(&job).unwrap();
            assert_eq!(row["kind"], job.kind());
            assert!(KINDS.contains(&job.kind()));
            // Routing work is named so in its kind, and only routing work.
            assert_eq!(job.is_routing(), job.kind().starts_with("routing."));
        }
        let mut sorted = KINDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), KINDS.len());
        // Each kind is a variant's tag: an empty payload is refused for its fields, not its kind.
        for kind in KINDS {
            if let Err(e) = Job::parse(kind, &json!({})) {
                assert!(matches!(e, JobError::Payload { .. }), "{kind}: {e}");
                assert!(!e.to_string().contains("unknown variant"), "{kind}: {e}");
            }
        }
    }

    // Payloads as the store wrote them with `json!` before the intake built typed jobs (rows
    // still stored in that shape must parse), and as the sweeper writes them.

    #[test]
    fn the_stores_inbound_message_parses() {
        // The intake's payload with the end user's `from`.
        for content in [
            json!({ "kind": "text", "text": "hello" }),
            json!({ "kind": "media", "media": "image", "url": "https://x/y", "mime_type": "image/png", "file_name": null, "caption": null }),
            json!({ "kind": "location", "latitude": 51.5, "longitude": -0.1, "name": null, "address": null }),
            json!({ "kind": "interactive_reply", "id": "b1", "title": "Yes" }),
        ] {
            let job = parses(
                kind::ISA_MESSAGE,
                json!({
                    "entry_id": Uuid::new_v4(),
                    "timestamp": 1_700_000_000_000_i64,
                    "content": content,
                    "reply_to": null,
                    "from": "whatsapp:+447700900001",
                }),
            );
            assert!(matches!(job, Job::IsaMessage(_)));
        }
    }

    #[test]
    fn the_stores_typing_parses() {
        for kind in [kind::ISA_TYPING_STARTED, kind::ISA_TYPING_STOPPED] {
            parses(
                kind,
                json!({
                    "entry_id": Uuid::new_v4(),
                    "timestamp": 1_700_000_000_000_i64,
                    "from": "u",
                }),
            );
        }
    }

    #[test]
    fn the_stores_acknowledgements_parse() {
        let item = |ack: &str| {
            json!({
                "type": ack,
                "entry": "rep-entry-1",
                "created": Uuid::new_v4(),
                "timestamp": 1_700_000_000_000_i64,
            })
        };
        let Job::IsaAcknowledgement(a) = parses(
            kind::ISA_ACKNOWLEDGEMENT,
            json!({ "acknowledgements": [item("Delivered"), item("Read")], "from": "u" }),
        ) else {
            panic!()
        };
        assert_eq!(a.acknowledgements[1].kind, AcknowledgementType::Read);
    }

    #[test]
    fn the_stores_delivery_failure_parses() {
        for message in [json!("Number unreachable"), Value::Null] {
            parses(
                kind::ISA_DELIVERY_FAILED,
                json!({
                    "entry_id": Uuid::new_v4(),
                    "from": "u",
                    "failed_entry": "rep-entry-1",
                    "code": "1234",
                    "message": message,
                    "timestamp": 1_700_000_000_000_i64,
                }),
            );
        }
    }

    #[test]
    fn the_stores_session_operations_parse() {
        // The sweeper's (operation End or Inactivate, by System) and an opt-out's (End by
        // EndUser; the work item may not be known yet).
        for operation in ["End", "Inactivate"] {
            parses(
                kind::ISA_SESSION_OPERATION,
                json!({
                    "operation": operation,
                    "operation_by": "System",
                    "work_item_id": "0Mw000000000001",
                    "from": "u",
                }),
            );
        }
        let Job::IsaSessionOperation(op) = parses(
            kind::ISA_SESSION_OPERATION,
            json!({
                "operation": "End",
                "operation_by": "EndUser",
                "work_item_id": null,
                "from": "u",
            }),
        ) else {
            panic!()
        };
        assert_eq!(op.operation_by, SessionOperationBy::EndUser);
        assert_eq!(op.work_item_id, None);
    }

    #[test]
    fn the_stores_consent_parses() {
        parses(
            kind::ISA_CONSENT,
            json!({ "from": "u", "consent_status": "OptedOut" }),
        );
    }

    #[test]
    fn rows_written_before_typed_jobs_parse() {
        // The subscriber's and the relay's rows as they were written with `json!`.
        parses(
            kind::PROVIDER_MESSAGE,
            json!({ "entry_id": "e-1", "part": 0, "text": "hi" }),
        );
        let Job::ProviderMessage(m) = parses(
            kind::PROVIDER_MESSAGE,
            json!({ "entry_id": "e-1", "part": 2, "attachment": { "id": "069", "name": "a.png", "mime_type": "image/png", "url": "https://sf/a" } }),
        ) else {
            panic!()
        };
        assert_eq!(m.reference(), "e-1#2");
        parses(kind::PROVIDER_TYPING, json!({ "started": true }));
        parses(
            kind::ROUTING_WORK_RESULT,
            json!({ "work_id": "0Bz", "work_type": "Declined", "conversation_identifier": null }),
        );
        let Job::RoutingRequest(r) = parses(
            kind::ROUTING_REQUEST,
            json!({
                "routing_type": "Conference",
                "conversation_identifier": "c",
                "work_item_id": "0Mw",
                "params": { "userId": "005000000000001", "queueId": null, "channelData": "{\"eventId\":\"e\"}" },
                "correlation_id": "e",
                "deadline_ms": 1_700_000_000_000_i64,
            }),
        ) else {
            panic!()
        };
        assert_eq!(r.routing_type(), RoutingType::Conference);
        let params = r.params.unwrap();
        assert_eq!(params.user(), Some("005000000000001"));
        assert_eq!(params.queue(), None);
        assert_eq!(params.other["channelData"], "{\"eventId\":\"e\"}");
        // No routingParameters at all.
        parses(
            kind::ROUTING_REQUEST,
            json!({ "routing_type": "Transfer", "conversation_identifier": "c", "work_item_id": "0Mw", "params": null, "correlation_id": "e", "deadline_ms": 1 }),
        );
        parses(
            kind::ROUTING_INITIAL,
            json!({ "work_item_id": "0Mw", "conversation_identifier": "c", "from": "u", "text": null }),
        );
        parses(
            kind::ROUTING_OFFER_TIMEOUT,
            json!({ "work_id": "0Bz", "conversation_identifier": "c" }),
        );
    }

    #[test]
    fn what_does_not_parse_is_an_error_naming_the_field() {
        let unknown = Job::parse("isa.carrier_pigeon", &json!({})).unwrap_err();
        assert!(matches!(unknown, JobError::UnknownKind(_)), "{unknown}");
        let bad = Job::parse(
            kind::ISA_MESSAGE,
            &json!({ "from": "u", "entry_id": "not-a-uuid", "content": { "kind": "text", "text": "x" } }),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("payload.entry_id"), "{bad}");
        let missing = Job::parse(kind::ISA_CONSENT, &json!({ "from": "u" })).unwrap_err();
        assert!(missing.to_string().contains("consent_status"), "{missing}");
        assert!(Job::parse(kind::PROVIDER_MESSAGE, &json!({ "entry_id": "e" })).is_err());
        assert!(Job::parse(kind::PROVIDER_TYPING, &Value::Null).is_err());
    }
}
