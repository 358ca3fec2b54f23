//! A Salesforce rep, played by tests: each action publishes the platform event Salesforce
//! would, on the Pub/Sub emulator, about a conversation held by the Salesforce emulator.
//!
//! Payloads follow Salesforce's AsyncAPI file of outbound custom events
//! (`outbound-custom-event-payload.yaml`): an `Interaction` event is an `InteractionEvent`
//! (`conversationIdentifier`, `channelAddressIdentifier`, `recipient`, `payload`), its
//! `payload` a `ConversationEntry` whose `entryPayload` is the typed entry; a transfer is a
//! `RoutingRequested` event. Conversations are named by (channel address, end-user client id),
//! so tests act on conversations byocd created; the conversation identifier and session come
//! from the Salesforce emulator's state.
//!
//! # Decisions where the schema leaves room
//!
//! - `payload.identifier` and `entryPayload.id` are the same UUID (what acknowledgements name);
//!   the `abstractMessage.id` of a message is another UUID.
//! - `clientDuration` (required by the schema) is 0; timestamps are the Salesforce emulator's
//!   clock in epoch milliseconds.
//! - The sender of every entry is the rep (`agent` / `Agent`), also for `MessageUpdated`.
//! - `ParticipantChanged` carries `entries[]` and, since the schema lists it as required, the
//!   changed `participant` beside them.
//! - Acknowledgements name the rep as `recipient` (the participant who received or read).
//! - `RoutingRequested.payload.workRecordId` is the current MessagingSession id; `channelData`
//!   is a JSON string with `eventId`, `routerParticipantSubject`, `routingType` and
//!   `conversationId`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    pubsub::{PubSubEmulator, PublishError},
    salesforce::{EmulatedConversation, FILE_DOWNLOAD_PATH, SalesforceEmulator, SessionStatus},
};

/// The rep's user id unless [`Rep::as_user`] says otherwise (15 characters).
pub const DEFAULT_REP_USER_ID: &str = "005000000000REP";

/// The rep's display name unless [`Rep::as_user`] says otherwise.
pub const DEFAULT_REP_NAME: &str = "Riley Rep";

/// Value of the event-type field for conversation entries.
pub const INTERACTION_EVENT: &str = "Interaction";

/// Value of the event-type field for routing requests.
pub const ROUTING_REQUESTED_EVENT: &str = "RoutingRequested";

/// A conversation, named by its channel address and end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationKey {
    /// The channel address identifier.
    pub channel_address_identifier: String,
    /// The end user's client id (`recipient.subject`).
    pub end_user_client_id: String,
}

impl ConversationKey {
    /// The conversation of `end_user_client_id` on `channel_address_identifier`.
    pub fn new(channel_address_identifier: &str, end_user_client_id: &str) -> Self {
        Self {
            channel_address_identifier: channel_address_identifier.to_owned(),
            end_user_client_id: end_user_client_id.to_owned(),
        }
    }
}

impl From<(&str, &str)> for ConversationKey {
    fn from((channel, end_user): (&str, &str)) -> Self {
        Self::new(channel, end_user)
    }
}

impl From<&ConversationKey> for ConversationKey {
    fn from(key: &ConversationKey) -> Self {
        key.clone()
    }
}

/// Why a rep action could not be played.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepError {
    /// The Salesforce emulator has no such conversation.
    #[error("no conversation of {end_user} on {channel}")]
    UnknownConversation {
        /// Channel address identifier.
        channel: String,
        /// End-user client id.
        end_user: String,
    },
    /// The conversation has no open session to end.
    #[error("conversation {0} has no open session")]
    NoOpenSession(String),
    /// The Pub/Sub emulator refused the event.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What `ParticipantChanged` says happened to the rep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantOperation {
    /// The rep joined.
    Add,
    /// The rep left.
    Remove,
    /// The rep's details changed.
    Update,
}

impl ParticipantOperation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Update => "update",
        }
    }
}

/// The outcome of an end user's file upload that `MessageUpdated` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadResult {
    /// `CompletedAttachmentUploadResult`.
    Completed,
    /// `PendingAttachmentUploadResult` with its `referenceId`.
    Pending {
        /// The reference id.
        reference_id: String,
    },
    /// `ErrorAttachmentUploadResult`.
    Error {
        /// `errorType`, e.g. `AttachmentTooLarge`.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
}

impl UploadResult {
    fn json(&self) -> Value {
        match self {
            Self::Completed => json!({ "resultType": "CompletedAttachmentUploadResult" }),
            Self::Pending { reference_id } => json!({
                "resultType": "PendingAttachmentUploadResult",
                "referenceId": reference_id,
            }),
            Self::Error {
                error_type,
                message,
            } => json!({
                "resultType": "ErrorAttachmentUploadResult",
                "errorType": error_type,
                "errorMessage": message,
            }),
        }
    }
}

/// Where a rep transfers a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// Another rep (`routingParameters.userId`).
    User(String),
    /// A queue (`routingParameters.queueId`).
    Queue(String),
    /// A flow (`routingParameters.flowId`).
    Flow(String),
}

/// A `RoutingRequested` event the rep published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// `channelData.eventId`: the routing correlation id to answer with.
    pub event_id: String,
    /// The event's replay id.
    pub replay_id: Vec<u8>,
}

/// An entry the rep published.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedEntry {
    /// `payload.identifier` (also `entryPayload.id`).
    pub identifier: String,
    /// The event's replay id.
    pub replay_id: Vec<u8>,
    /// The payload JSON as published.
    pub json: Value,
}

/// A rep acting in the Salesforce console.
#[derive(Debug, Clone)]
pub struct Rep {
    salesforce: SalesforceEmulator,
    pubsub: PubSubEmulator,
    topic_name: String,
    user_id: String,
    display_name: String,
}

impl Rep {
    /// A rep [`DEFAULT_REP_USER_ID`] publishing on the Pub/Sub emulator's first topic.
    pub fn new(salesforce: SalesforceEmulator, pubsub: PubSubEmulator) -> Self {
        let topic_name = pubsub
            .first_topic()
            .map(|t| t.topic_name)
            .unwrap_or_default();
        Self {
            salesforce,
            pubsub,
            topic_name,
            user_id: DEFAULT_REP_USER_ID.to_owned(),
            display_name: DEFAULT_REP_NAME.to_owned(),
        }
    }

    /// The same rep publishing on `topic_name`.
    pub fn on_topic(mut self, topic_name: &str) -> Self {
        topic_name.clone_into(&mut self.topic_name);
        self
    }

    /// The same actions played by user `user_id` (15 characters) named `display_name`.
    pub fn as_user(mut self, user_id: &str, display_name: &str) -> Self {
        user_id.clone_into(&mut self.user_id);
        display_name.clone_into(&mut self.display_name);
        self
    }

    /// The rep's user id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The topic the rep publishes on.
    pub fn topic_name(&self) -> &str {
        &self.topic_name
    }

    /// Sends a text message; returns the entry identifier.
    pub fn message(
        &self,
        conversation: impl Into<ConversationKey>,
        text: &str,
    ) -> Result<String, RepError> {
        self.message_entry(conversation, text).map(|e| e.identifier)
    }

    /// Sends a text message; returns the whole entry published.
    pub fn message_entry(
        &self,
        conversation: impl Into<ConversationKey>,
        text: &str,
    ) -> Result<PublishedEntry, RepError> {
        let message = json!({
            "messageType": "StaticContentMessage",
            "id": new_id(),
            "staticContent": { "formatType": "Text", "text": text },
        });
        self.entry(
            conversation,
            "Message",
            json!({ "abstractMessage": message }),
        )
    }

    /// Sends a `ChoicesMessage` of `format` (`Buttons`, `QuickReplies`, `ListPicker`) asking
    /// `text` (a list picker's `title`) with `options` as `(optionIdentifier, title)`; returns
    /// the entry published and the message's `abstractMessage.id`.
    pub fn choices(
        &self,
        conversation: impl Into<ConversationKey>,
        format: &str,
        text: &str,
        options: &[(&str, &str)],
    ) -> Result<(PublishedEntry, String), RepError> {
        let message_id = new_id();
        let items: Vec<Value> = options
            .iter()
            .map(|(id, title)| {
                json!({
                    "itemType": "TitleOptionItem",
                    "optionIdentifier": id,
                    "titleItem": { "itemType": "TitleItem", "title": title },
                })
            })
            .collect();
        let mut choices = json!({ "formatType": format, "optionItems": items });
        let text_key = if format == "ListPicker" {
            "title"
        } else {
            "text"
        };
        choices[text_key] = Value::String(text.to_owned());
        self.choices_entry(conversation, message_id, choices)
    }

    /// Publishes a `ChoicesMessage` with id `message_id` and body `choices`.
    fn choices_entry(
        &self,
        conversation: impl Into<ConversationKey>,
        message_id: String,
        choices: Value,
    ) -> Result<(PublishedEntry, String), RepError> {
        let message = json!({
            "messageType": "ChoicesMessage",
            "id": message_id,
            "choices": choices,
        });
        let entry = self.entry(
            conversation,
            "Message",
            json!({ "abstractMessage": message }),
        )?;
        Ok((entry, message_id))
    }

    /// Sends a `ChoicesMessage` of format `Carousel` (Salesforce's `ChoicesCarousel`): an
    /// optional `title`, one item per card (its `titleItem` with a `subTitle` and an `imageId`
    /// naming one of the message's `images`, and its interactions), the images with their
    /// `assetUrl`s; returns the entry published and the message's `abstractMessage.id`.
    pub fn carousel(
        &self,
        conversation: impl Into<ConversationKey>,
        title: Option<&str>,
        cards: &[RepCard<'_>],
    ) -> Result<(PublishedEntry, String), RepError> {
        let message_id = new_id();
        let mut images = Vec::new();
        let items: Vec<Value> = cards
            .iter()
            .map(|card| {
                let mut title_item = json!({ "itemType": "TitleItem", "title": card.title });
                if let Some(subtitle) = card.subtitle {
                    title_item["subTitle"] = json!(subtitle);
                }
                if let Some(url) = card.image_url {
                    let id = new_id();
                    title_item["itemType"] = json!("TitleImageItem");
                    title_item["imageId"] = json!(id);
                    images.push(json!({
                        "assetType": "ImageAsset", "id": id, "mimeType": "image/png", "assetUrl": url,
                    }));
                }
                let interactions: Vec<Value> = card
                    .items
                    .iter()
                    .map(|item| match item {
                        RepCardItem::Option(id, title) => json!({
                            "itemType": "TitleOptionItem",
                            "optionIdentifier": id,
                            "titleItem": { "itemType": "TitleItem", "title": title },
                        }),
                        RepCardItem::Link(title, url) => json!({
                            "itemType": "TitleLinkItem",
                            "url": url,
                            "titleItem": { "itemType": "TitleItem", "title": title },
                        }),
                    })
                    .collect();
                json!({ "titleItem": title_item, "interactionItems": interactions })
            })
            .collect();
        let mut choices = json!({ "formatType": "Carousel", "items": items, "images": images });
        if let Some(title) = title {
            choices["title"] = json!(title);
        }
        self.choices_entry(conversation, message_id, choices)
    }

    /// Sends a `TimePicker` (`ChoicesMessage`) in the shape of Salesforce's
    /// `ChoicesTimePicker`: `message.title` the question, a `calendarEvent` titled `event` with
    /// a `timezoneOffset` in minutes (when given) and one `TimeSlotOptionItem` per slot
    /// (`(optionIdentifier, startTime, duration in seconds)`); returns the entry published and
    /// the message's `abstractMessage.id`.
    pub fn time_picker(
        &self,
        conversation: impl Into<ConversationKey>,
        question: &str,
        event: &str,
        offset_minutes: Option<i32>,
        slots: &[(&str, chrono::DateTime<chrono::Utc>, u32)],
    ) -> Result<(PublishedEntry, String), RepError> {
        let items: Vec<Value> = slots
            .iter()
            .map(|(id, start, duration)| {
                json!({
                    "itemType": "TimeSlotOptionItem",
                    "optionIdentifier": id,
                    "startTime": start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "duration": duration,
                })
            })
            .collect();
        let mut calendar_event = json!({
            "itemType": "CalendarEventOptionsItem",
            "identifier": new_id(),
            "title": event,
            "timeSlotOptionItems": items,
        });
        if let Some(offset) = offset_minutes {
            calendar_event["timezoneOffset"] = json!(offset);
        }
        let choices = json!({
            "formatType": "TimePicker",
            "message": { "itemType": "TitleItem", "title": question },
            "calendarEvent": calendar_event,
        });
        self.choices_entry(conversation, new_id(), choices)
    }

    /// Sends a `RichLink` (`StaticContentMessage`): a URL with a title, an optional image (its
    /// `assetUrl`) and an optional text, in the shape of Salesforce's `StaticContentRichLink`.
    pub fn rich_link(
        &self,
        conversation: impl Into<ConversationKey>,
        url: &str,
        title: &str,
        image_url: Option<&str>,
        text: Option<&str>,
    ) -> Result<PublishedEntry, RepError> {
        let mut content = json!({
            "formatType": "RichLink",
            "linkItem": {
                "itemType": "TitleLinkItem",
                "url": url,
                "titleItem": { "itemType": "TitleItem", "title": title },
            },
        });
        if let Some(image) = image_url {
            content["image"] = json!({
                "assetType": "ImageAsset",
                "id": new_id(),
                "mimeType": "image/png",
                "assetUrl": image,
            });
        }
        if let Some(text) = text {
            content["text"] = Value::String(text.to_owned());
        }
        let message = json!({
            "messageType": "StaticContentMessage",
            "id": new_id(),
            "staticContent": content,
        });
        self.entry(
            conversation,
            "Message",
            json!({ "abstractMessage": message }),
        )
    }

    /// Sends a file (kept by the Salesforce emulator, linked by its authenticated download
    /// URL) with an optional text; returns the entry identifier.
    pub fn attachment(
        &self,
        conversation: impl Into<ConversationKey>,
        file_name: &str,
        mime_type: &str,
        bytes: impl Into<Bytes>,
        text: Option<&str>,
    ) -> Result<String, RepError> {
        let conversation = conversation.into();
        self.conversation(&conversation)?;
        let file = self.salesforce.store_rep_file(file_name, mime_type, bytes);
        let mut content = json!({
            "formatType": "Attachments",
            "attachments": [{
                "id": new_id(),
                "name": file.name,
                "mimeType": file.mime_type,
                "url": file.url,
                "referenceId": file.id,
            }],
        });
        if let Some(text) = text {
            content["text"] = Value::String(text.to_owned());
        }
        let message = json!({
            "messageType": "StaticContentMessage",
            "id": new_id(),
            "staticContent": content,
        });
        self.entry(
            conversation,
            "Message",
            json!({ "abstractMessage": message }),
        )
        .map(|e| e.identifier)
    }

    /// Starts or stops typing; returns the entry identifier.
    pub fn typing(
        &self,
        conversation: impl Into<ConversationKey>,
        started: bool,
    ) -> Result<String, RepError> {
        let entry_type = if started {
            "TypingStartedIndicator"
        } else {
            "TypingStoppedIndicator"
        };
        let timestamp = self.now_ms();
        self.entry(conversation, entry_type, json!({ "timestamp": timestamp }))
            .map(|e| e.identifier)
    }

    /// Ends the conversation's open session in the Salesforce emulator and publishes
    /// `SessionStatusChanged` (`Ended`, ended by `Agent`); returns the entry identifier.
    pub fn end_session(
        &self,
        conversation: impl Into<ConversationKey>,
    ) -> Result<String, RepError> {
        let conversation = conversation.into();
        let record = self.conversation(&conversation)?;
        let session = record
            .current_session()
            .filter(|s| s.status != SessionStatus::Ended)
            .cloned()
            .ok_or_else(|| RepError::NoOpenSession(record.id.clone()))?;
        if !self.salesforce.rep_ends_session(&session.id) {
            return Err(RepError::NoOpenSession(record.id.clone()));
        }
        let previous = match session.status {
            SessionStatus::Active => "Active",
            SessionStatus::Inactive => "Inactive",
            SessionStatus::Ended => "Ended",
        };
        let entry = json!({
            "sessionId": session.id,
            "conversationIdentifier": record.id,
            "channelAddressIdentifier": record.channel_address_identifier,
            "sessionStatus": "Ended",
            "sessionStatusPrev": previous,
            "sessionStartTime": session.started_at.timestamp_millis(),
            "sessionEndTime": self.now_ms(),
            "sessionEndedByRole": "Agent",
        });
        self.entry(conversation, "SessionStatusChanged", entry)
            .map(|e| e.identifier)
    }

    /// Publishes `ParticipantChanged` for the rep; returns the entry identifier.
    pub fn participant_changed(
        &self,
        conversation: impl Into<ConversationKey>,
        operation: ParticipantOperation,
    ) -> Result<String, RepError> {
        let participant = self.sender();
        let entry = json!({
            "entries": [{
                "operation": operation.as_str(),
                "participant": participant,
                "displayName": self.display_name,
            }],
            "participant": participant,
        });
        self.entry(conversation, "ParticipantChanged", entry)
            .map(|e| e.identifier)
    }

    /// Publishes `ParticipantsConferenced` naming `reps` (user ids) as joining the session.
    /// Salesforce publishes no schema for it: the payload is read like `ParticipantChanged`
    /// (`entries[]` of `{operation: add, participant}`); returns the entry identifier.
    pub fn participants_conferenced(
        &self,
        conversation: impl Into<ConversationKey>,
        reps: &[&str],
    ) -> Result<String, RepError> {
        let entries: Vec<Value> = reps
            .iter()
            .map(|rep| {
                json!({
                    "operation": "add",
                    "participant": { "appType": "agent", "subject": rep, "role": "Agent" },
                })
            })
            .collect();
        self.entry(
            conversation,
            "ParticipantsConferenced",
            json!({ "entries": entries }),
        )
        .map(|e| e.identifier)
    }

    /// Publishes `EndUserConsentUpdated` with `consentStatus` `status` (`OptIn` or `OptOut`)
    /// for the conversation's end user; returns the entry identifier.
    pub fn consent_updated(
        &self,
        conversation: impl Into<ConversationKey>,
        status: &str,
        end_user_initiated: bool,
    ) -> Result<String, RepError> {
        let conversation = conversation.into();
        let subject = conversation.end_user_client_id.clone();
        self.entry(
            conversation,
            "EndUserConsentUpdated",
            json!({
                "endUserSubject": subject,
                "consentStatus": status,
                "isEndUserInitiated": end_user_initiated,
            }),
        )
        .map(|e| e.identifier)
    }

    /// Publishes `MessageUpdated` for the rep's message `message_id` now carrying a file (kept
    /// by the Salesforce emulator at its download URL), without an upload result; returns the
    /// entry identifier.
    pub fn message_updated_with_file(
        &self,
        conversation: impl Into<ConversationKey>,
        message_id: &str,
        file_name: &str,
        mime_type: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<String, RepError> {
        let file = self.salesforce.store_rep_file(file_name, mime_type, bytes);
        let updated = json!({
            "messageType": "StaticContentMessage",
            "id": message_id,
            "staticContent": {
                "formatType": "Attachments",
                "attachments": [{
                    "id": new_id(),
                    "name": file.name,
                    "mimeType": file.mime_type,
                    "url": file.url,
                    "referenceId": file.id,
                }],
            },
        });
        self.entry(
            conversation,
            "MessageUpdated",
            json!({ "updatedMessage": updated }),
        )
        .map(|e| e.identifier)
    }

    /// Acknowledges the end user's entry `entry_identifier` as read (`ReadAcknowledgement`)
    /// or delivered (`DeliveryAcknowledgement`); returns the entry identifier.
    pub fn acknowledgement(
        &self,
        conversation: impl Into<ConversationKey>,
        entry_identifier: &str,
        read: bool,
    ) -> Result<String, RepError> {
        let entry_type = if read {
            "ReadAcknowledgement"
        } else {
            "DeliveryAcknowledgement"
        };
        let entry = json!({
            "recipient": self.sender(),
            "acknowledgedConversationEntryIdentifier": entry_identifier,
            "acknowledgementTimestamp": self.now_ms(),
        });
        self.entry(conversation, entry_type, entry)
            .map(|e| e.identifier)
    }

    /// Publishes `MessageUpdated` reporting the upload of the end user's file `file_name` sent
    /// in message `message_id`; returns the entry identifier.
    pub fn message_updated(
        &self,
        conversation: impl Into<ConversationKey>,
        message_id: &str,
        file_name: &str,
        result: &UploadResult,
    ) -> Result<String, RepError> {
        let attachment_id = new_id();
        let url = format!(
            "{}{FILE_DOWNLOAD_PATH}/{attachment_id}",
            self.salesforce.base_url()
        );
        let updated = json!({
            "messageType": "StaticContentMessage",
            "id": message_id,
            "staticContent": {
                "formatType": "Attachments",
                "attachments": [{
                    "id": attachment_id,
                    "name": file_name,
                    "mimeType": "application/octet-stream",
                    "url": url,
                    "attachmentUploadResult": result.json(),
                }],
            },
        });
        self.entry(
            conversation,
            "MessageUpdated",
            json!({ "updatedMessage": updated }),
        )
        .map(|e| e.identifier)
    }

    /// Asks to transfer the conversation: publishes `RoutingRequested` with `routingType`
    /// `Transfer`.
    pub fn transfer_request(
        &self,
        conversation: impl Into<ConversationKey>,
        target: &TransferTarget,
    ) -> Result<TransferRequest, RepError> {
        let conversation = conversation.into();
        let record = self.conversation(&conversation)?;
        let event_id = new_id();
        let channel_data = json!({
            "eventId": event_id,
            "routerParticipantSubject": self.user_id,
            "routingType": "Transfer",
            "conversationId": record.id,
        })
        .to_string();
        let mut parameters = json!({ "isTransfer": true, "channelData": channel_data });
        let (key, id) = match target {
            TransferTarget::User(id) => ("userId", id),
            TransferTarget::Queue(id) => ("queueId", id),
            TransferTarget::Flow(id) => ("flowId", id),
        };
        parameters[key] = Value::String(id.clone());
        let work_record = record.current_session().map(|s| s.id.clone());
        let event = json!({
            "channelAddressIdentifier": record.channel_address_identifier,
            "recipient": end_user(&record),
            "payload": {
                "conversationIdentifier": record.id,
                "routingType": "Transfer",
                "workRecordId": work_record,
                "routingParameters": parameters,
            },
        });
        let replay_id = self.pubsub.try_publish(
            &self.topic_name,
            Some(ROUTING_REQUESTED_EVENT),
            Some(&event.to_string()),
        )?;
        Ok(TransferRequest {
            event_id,
            replay_id,
        })
    }

    /// Sends a text message in the variant of Salesforce's README example: the entry's fields
    /// at the top level, without the `payload` wrapper and `conversationIdentifier` (digest §6
    /// #11); returns the entry identifier.
    pub fn message_without_wrapper(
        &self,
        conversation: impl Into<ConversationKey>,
        text: &str,
    ) -> Result<String, RepError> {
        let conversation = conversation.into();
        let record = self.conversation(&conversation)?;
        let identifier = new_id();
        let mut event = self.conversation_entry(
            &identifier,
            "Message",
            json!({
                "abstractMessage": {
                    "messageType": "StaticContentMessage",
                    "id": new_id(),
                    "staticContent": { "formatType": "Text", "text": text },
                },
            }),
        );
        event["channelAddressIdentifier"] = Value::String(record.channel_address_identifier);
        event["recipient"] = end_user_of(&conversation.end_user_client_id);
        self.pubsub.try_publish(
            &self.topic_name,
            Some(INTERACTION_EVENT),
            Some(&event.to_string()),
        )?;
        Ok(identifier)
    }

    /// Publishes an `Interaction` event with any entry type and entry fields (the
    /// `entryType` and `id` of `entry_payload` are filled in); returns the entry published.
    pub fn entry(
        &self,
        conversation: impl Into<ConversationKey>,
        entry_type: &str,
        entry_payload: Value,
    ) -> Result<PublishedEntry, RepError> {
        let conversation = conversation.into();
        let record = self.conversation(&conversation)?;
        let identifier = new_id();
        let json = json!({
            "conversationIdentifier": record.id,
            "channelAddressIdentifier": record.channel_address_identifier,
            "recipient": end_user(&record),
            "payload": self.conversation_entry(&identifier, entry_type, entry_payload),
        });
        let replay_id = self.pubsub.try_publish(
            &self.topic_name,
            Some(INTERACTION_EVENT),
            Some(&json.to_string()),
        )?;
        Ok(PublishedEntry {
            identifier,
            replay_id,
            json,
        })
    }

    /// A `ConversationEntry` sent by the rep.
    fn conversation_entry(&self, identifier: &str, entry_type: &str, fields: Value) -> Value {
        let mut entry_payload = json!({ "entryType": entry_type, "id": identifier });
        if let (Value::Object(target), Value::Object(fields)) = (&mut entry_payload, fields) {
            for (key, value) in fields {
                target.entry(key).or_insert(value);
            }
        }
        let now = self.now_ms();
        json!({
            "identifier": identifier,
            "entryType": entry_type,
            "entryPayload": entry_payload,
            "sender": self.sender(),
            "senderDisplayName": self.display_name,
            "clientTimestamp": now,
            "transcriptedTimestamp": now,
            "clientDuration": 0,
        })
    }

    fn sender(&self) -> Value {
        json!({ "appType": "agent", "subject": self.user_id, "role": "Agent" })
    }

    fn conversation(&self, key: &ConversationKey) -> Result<EmulatedConversation, RepError> {
        self.salesforce
            .conversation_of(&key.channel_address_identifier, &key.end_user_client_id)
            .ok_or_else(|| RepError::UnknownConversation {
                channel: key.channel_address_identifier.clone(),
                end_user: key.end_user_client_id.clone(),
            })
    }

    fn now_ms(&self) -> i64 {
        self.salesforce.now().timestamp_millis()
    }
}

fn end_user(conversation: &EmulatedConversation) -> Value {
    end_user_of(&conversation.end_user_client_id)
}

fn end_user_of(client_id: &str) -> Value {
    json!({ "appType": "custom", "subject": client_id, "role": "EndUser" })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One card of [`Rep::carousel`].
#[derive(Debug, Clone, Copy)]
pub struct RepCard<'a> {
    /// The card's title.
    pub title: &'a str,
    /// Its subtitle.
    pub subtitle: Option<&'a str>,
    /// Its image's URL.
    pub image_url: Option<&'a str>,
    /// Its options and links, in order.
    pub items: &'a [RepCardItem<'a>],
}

/// An interaction of a [`RepCard`].
#[derive(Debug, Clone, Copy)]
pub enum RepCardItem<'a> {
    /// An option: `(optionIdentifier, title)`.
    Option(&'a str, &'a str),
    /// A link: `(title, url)`.
    Link(&'a str, &'a str),
}
