//! The channel's platform event, decoded: the event-type field says `Interaction` or
//! `RoutingRequested`, and the payload field holds a JSON string parsed here into typed events.
//!
//! Parsing is tolerant where Salesforce's own documents disagree: the payload may come without
//! its `payload` wrapper (the README's "latest schema" example), in which case the object itself
//! is taken as the entry.

use serde_json::Value;

/// A decoded outbound event.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundEvent {
    /// A conversation entry (rep message, typing, session change, …).
    Interaction(InteractionEvent),
    /// A rep asked to transfer or conference (partner-owned routing).
    RoutingRequested(RoutingRequestedEvent),
}

impl OutboundEvent {
    /// The channel the event is for.
    pub fn channel_address_identifier(&self) -> &str {
        match self {
            Self::Interaction(e) => &e.channel_address_identifier,
            Self::RoutingRequested(e) => &e.channel_address_identifier,
        }
    }

    /// The end user the event concerns (`recipient.subject`).
    pub fn end_user(&self) -> &str {
        match self {
            Self::Interaction(e) => &e.end_user,
            Self::RoutingRequested(e) => &e.end_user,
        }
    }
}

/// `EventType` = `Interaction`.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionEvent {
    /// The conversation; the variant without the `payload` wrapper may not carry it (then the
    /// conversation is found by channel and end user).
    pub conversation_identifier: Option<String>,
    /// The channel.
    pub channel_address_identifier: String,
    /// The end user's client id.
    pub end_user: String,
    /// The entry's id (what receipts acknowledge).
    pub identifier: String,
    /// The entry type as Salesforce names it.
    pub entry_type: String,
    /// What the entry means for byocd.
    pub entry: Entry,
    /// The sender's Salesforce id (a rep's user id), if given.
    pub sender: Option<String>,
    /// The sender's display name.
    pub sender_display_name: Option<String>,
    /// The sender's role (`Agent`, `EndUser`, `Chatbot`, …), if given.
    pub sender_role: Option<String>,
    /// When the entry was made, ms since the epoch.
    pub client_timestamp: i64,
}

/// The entries byocd acts on; the rest are recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A rep message: text and/or files at Salesforce URLs.
    Message {
        /// The text.
        text: Option<String>,
        /// Files to fetch (with the org's token) and pass on.
        attachments: Vec<Attachment>,
    },
    /// The rep started typing.
    TypingStarted,
    /// The rep stopped typing.
    TypingStopped,
    /// The session's status changed.
    SessionStatusChanged {
        /// The MessagingSession id.
        session_id: Option<String>,
        /// The new status (`Active`, `Ended`, `Inactive`, …).
        status: String,
        /// Who ended it, when it ended.
        ended_by: Option<String>,
    },
    /// The outcome of an AgentWork (accepted, declined …).
    RoutingWorkResult {
        /// The AgentWork id.
        work_id: String,
        /// `Assigned`, `Accepted`, `Declined`, `Cancelled`, `Closed`, …
        work_type: String,
    },
    /// Who is in the session changed (`ParticipantChanged`), or reps were conferenced in
    /// (`ParticipantsConferenced`, read the same way: its `entries`, else its `participants`,
    /// as joining).
    Participants {
        /// The changes, in order.
        changes: Vec<ParticipantChange>,
        /// Whether it was `ParticipantsConferenced`.
        conferenced: bool,
    },
    /// Salesforce updated the end user's consent (`EndUserConsentUpdated`).
    ConsentUpdated {
        /// `OptIn` or `OptOut`.
        status: String,
        /// Whether the end user did it.
        end_user_initiated: bool,
    },
    /// A message entry was updated (`MessageUpdated`): an attachment upload's result, or a
    /// message's new content.
    MessageUpdated {
        /// The updated message's id.
        message_id: Option<String>,
        /// `attachmentUploadResult.resultType` of its attachments, if any
        /// (`CompletedAttachmentUploadResult`, `PendingAttachmentUploadResult`,
        /// `ErrorAttachmentUploadResult`), with the error type of an error.
        upload: Option<(String, Option<String>)>,
        /// Its attachments that have a URL.
        attachments: Vec<Attachment>,
        /// Its text, if any.
        text: Option<String>,
    },
    /// A rep `ChoicesMessage` byocd renders natively (`Buttons`, `QuickReplies`, `ListPicker`,
    /// `Carousel`).
    Choices(Choices),
    /// A rep `StaticContentMessage` of format `RichLink` (a link with a title and perhaps an
    /// image): an RCS rich card, or text with the URL.
    Link(RichLink),
    /// Anything else: recorded in the audit trail.
    Other,
}

/// One change of a session's participants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParticipantChange {
    /// `add`, `remove` or `update`.
    pub operation: String,
    /// The participant's Salesforce id (a rep's user id).
    pub subject: String,
    /// `Agent`, `Supervisor`, `Chatbot`, `EndUser`, …
    pub role: String,
}

/// A rep's `RichLink` (`staticContent.linkItem` and its optional `image` and `text`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RichLink {
    /// `linkItem.url`.
    pub url: String,
    /// `linkItem.titleItem.title`.
    pub title: String,
    /// `image.assetUrl`, when the link has an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// `text`, when the rep wrote some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A rep's `ChoicesMessage` of a format byocd renders: what the end user is asked and the
/// options, in Salesforce's order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Choices {
    /// The message's `abstractMessage.id`: what the end user's answer replies to
    /// (`inReplyToMessageId`).
    pub message_id: String,
    /// `Buttons`, `QuickReplies`, `ListPicker`, `Carousel` or `TimePicker`.
    pub format: String,
    /// The question (`text`; a list picker's or a carousel's `title`, empty when it has none; a
    /// time picker's `message.title`, else its event's title).
    pub text: String,
    /// The options, in Salesforce's order (a carousel's: card by card); at least one, except
    /// for a carousel of links only.
    pub options: Vec<ChoiceOption>,
    /// A carousel's cards (`items`), in order; empty for the other formats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<CarouselCard>,
    /// A time picker's event and slots (the slot of option `i` is `slots[i]`); `None` for the
    /// other formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_picker: Option<Box<TimePicker>>,
}

/// A rep's `TimePicker`: its `calendarEvent` (`CalendarEventOptionsItem`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimePicker {
    /// `calendarEvent.title`.
    pub event: String,
    /// `calendarEvent.timezoneOffset`: minutes east of UTC of the event's place, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_minutes: Option<i32>,
    /// `calendarEvent.location.name`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `timeSlotOptionItems`, in order: the same order as [`Choices::options`].
    pub slots: Vec<TimeSlot>,
}

/// One `TimeSlotOptionItem` of a time picker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeSlot {
    /// `startTime`.
    pub start: chrono::DateTime<chrono::Utc>,
    /// `duration`, in seconds.
    pub duration_seconds: u32,
}

/// One card of a rep's `Carousel` (a `TitleItemWithInteractions`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CarouselCard {
    /// `titleItem.title`.
    pub title: String,
    /// `titleItem.subTitle`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    /// The `assetUrl` of the carousel's image whose `id` is the card's `titleItem.imageId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// `interactionItems`, in order.
    pub actions: Vec<CardAction>,
}

/// One interaction of a carousel card.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardAction {
    /// A `TitleOptionItem`: the option at this index of [`Choices::options`].
    Option(usize),
    /// A `TitleLinkItem`: a link with its title.
    Link {
        /// `titleItem.title`.
        title: String,
        /// `url`.
        url: String,
    },
}

/// One option of a [`Choices`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChoiceOption {
    /// Salesforce's `optionIdentifier`: what a `ChoicesResponseMessage` names.
    pub id: String,
    /// `titleItem.title`: what the end user sees.
    pub title: String,
}

/// The `ChoicesMessage` formats rendered natively; the others pass on their text.
pub const CHOICES_FORMATS: [&str; 5] = [
    "Buttons",
    "QuickReplies",
    "ListPicker",
    "Carousel",
    "TimePicker",
];

/// A file a rep sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// Salesforce's id.
    pub id: String,
    /// File name.
    pub name: String,
    /// MIME type.
    pub mime_type: String,
    /// Where Salesforce serves it (needs the org's token).
    pub url: String,
}

/// `EventType` = `RoutingRequested`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingRequestedEvent {
    /// The channel.
    pub channel_address_identifier: String,
    /// The end user's client id.
    pub end_user: String,
    /// The conversation.
    pub conversation_identifier: Option<String>,
    /// `Transfer`, `Conference` or `Initial`.
    pub routing_type: String,
    /// The whole routing request, for the routing work.
    pub payload: Value,
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, EventError> {
    v.as_str()
        .ok_or_else(|| EventError(format!("{path}: missing or not a string")))
}

/// Parses the payload field's JSON for an event of `event_type`.
pub fn parse(event_type: &str, payload_json: &str) -> Result<OutboundEvent, EventError> {
    let root: Value = serde_json::from_str(payload_json)
        .map_err(|e| EventError(format!("payload is not JSON: {e}")))?;
    let channel_address_identifier = text(
        &root["channelAddressIdentifier"],
        "channelAddressIdentifier",
    )?
    .to_owned();
    let end_user = text(&root["recipient"]["subject"], "recipient.subject")?.to_owned();
    match event_type {
        "Interaction" => {
            // The entry is under `payload`; one documented example leaves the wrapper out.
            let entry = if root["payload"].is_object() {
                &root["payload"]
            } else {
                &root
            };
            let identifier = text(&entry["identifier"], "payload.identifier")?.to_owned();
            let entry_type = text(&entry["entryType"], "payload.entryType")?.to_owned();
            let body = &entry["entryPayload"];
            let conversation_identifier = root["conversationIdentifier"]
                .as_str()
                .or_else(|| body["conversationIdentifier"].as_str())
                .map(str::to_owned);
            let parsed = match entry_type.as_str() {
                "Message" => message(body)?,
                "TypingStartedIndicator" => Entry::TypingStarted,
                "RoutingWorkResult" => Entry::RoutingWorkResult {
                    work_id: text(&body["workId"], "payload.entryPayload.workId")?.to_owned(),
                    work_type: text(&body["workType"], "payload.entryPayload.workType")?.to_owned(),
                },
                "TypingStoppedIndicator" => Entry::TypingStopped,
                "SessionStatusChanged" => Entry::SessionStatusChanged {
                    session_id: body["sessionId"].as_str().map(str::to_owned),
                    status: text(&body["sessionStatus"], "payload.entryPayload.sessionStatus")?
                        .to_owned(),
                    ended_by: body["sessionEndedByRole"].as_str().map(str::to_owned),
                },
                "ParticipantChanged" => participants(body, false),
                "ParticipantsConferenced" => participants(body, true),
                "EndUserConsentUpdated" => Entry::ConsentUpdated {
                    status: text(&body["consentStatus"], "payload.entryPayload.consentStatus")?
                        .to_owned(),
                    end_user_initiated: body["isEndUserInitiated"].as_bool().unwrap_or(false),
                },
                "MessageUpdated" => message_updated(body),
                _ => Entry::Other,
            };
            Ok(OutboundEvent::Interaction(InteractionEvent {
                conversation_identifier,
                channel_address_identifier,
                end_user,
                identifier,
                entry_type,
                entry: parsed,
                sender: entry["sender"]["subject"].as_str().map(str::to_owned),
                sender_display_name: entry["senderDisplayName"].as_str().map(str::to_owned),
                sender_role: entry["sender"]["role"].as_str().map(str::to_owned),
                client_timestamp: entry["clientTimestamp"].as_i64().unwrap_or_default(),
            }))
        }
        "RoutingRequested" => {
            let payload = root["payload"].clone();
            Ok(OutboundEvent::RoutingRequested(RoutingRequestedEvent {
                channel_address_identifier,
                end_user,
                conversation_identifier: payload["conversationIdentifier"]
                    .as_str()
                    .map(str::to_owned),
                routing_type: payload["routingType"]
                    .as_str()
                    .unwrap_or("Transfer")
                    .to_owned(),
                payload,
            }))
        }
        other => Err(EventError(format!("unknown event type `{other}`"))),
    }
}

/// A `ChoicesMessage` of a format in [`CHOICES_FORMATS`], read strictly; `None` for anything
/// else.
fn choices(message: &Value) -> Result<Option<Choices>, EventError> {
    let choices = &message["choices"];
    let Some(format) = choices["formatType"].as_str() else {
        return Ok(None);
    };
    if message["messageType"].as_str() != Some("ChoicesMessage")
        || !CHOICES_FORMATS.contains(&format)
    {
        return Ok(None);
    }
    if format == "Carousel" {
        return carousel(message).map(Some);
    }
    if format == "TimePicker" {
        return time_picker(message).map(Some);
    }
    let text_key = if format == "ListPicker" {
        "title"
    } else {
        "text"
    };
    let question = text(
        &choices[text_key],
        &format!("abstractMessage.choices.{text_key}"),
    )?
    .to_owned();
    let items = choices["optionItems"]
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| {
            EventError("abstractMessage.choices.optionItems: missing or empty".into())
        })?;
    let options = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("abstractMessage.choices.optionItems[{i}]");
            Ok(ChoiceOption {
                id: text_of(item, "optionIdentifier", &path)?,
                title: text_of(&item["titleItem"], "title", &format!("{path}.titleItem"))?,
            })
        })
        .collect::<Result<Vec<_>, EventError>>()?;
    let message_id = text(&message["id"], "abstractMessage.id")?.to_owned();
    Ok(Some(Choices {
        message_id,
        format: format.to_owned(),
        text: question,
        options,
        cards: Vec::new(),
        time_picker: None,
    }))
}

/// A `ChoicesCarousel`: its optional `title`, its `items` as cards (each a title, an optional
/// subtitle, an optional image from `images` by `titleItem.imageId`, and its options and
/// links), and the options of all cards in order.
fn carousel(message: &Value) -> Result<Choices, EventError> {
    let choices = &message["choices"];
    let items = choices["items"]
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| EventError("abstractMessage.choices.items: missing or empty".into()))?;
    let image = |id: &str| {
        choices["images"].as_array().and_then(|images| {
            images
                .iter()
                .find(|i| i["id"].as_str() == Some(id))
                .and_then(|i| i["assetUrl"].as_str())
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
        })
    };
    let mut options = Vec::new();
    let mut cards = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("abstractMessage.choices.items[{i}]");
        let title_item = &item["titleItem"];
        let interactions = item["interactionItems"]
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| EventError(format!("{path}.interactionItems: missing or empty")))?;
        let mut actions = Vec::new();
        for (j, interaction) in interactions.iter().enumerate() {
            let path = format!("{path}.interactionItems[{j}]");
            let title = text_of(
                &interaction["titleItem"],
                "title",
                &format!("{path}.titleItem"),
            )?;
            match interaction["itemType"].as_str() {
                Some("TitleOptionItem") => {
                    options.push(ChoiceOption {
                        id: text_of(interaction, "optionIdentifier", &path)?,
                        title,
                    });
                    actions.push(CardAction::Option(options.len() - 1));
                }
                Some("TitleLinkItem") => actions.push(CardAction::Link {
                    title,
                    url: text_of(interaction, "url", &path)?,
                }),
                other => {
                    return Err(EventError(format!(
                        "{path}.itemType: {other:?} is neither TitleOptionItem nor TitleLinkItem"
                    )));
                }
            }
        }
        cards.push(CarouselCard {
            title: text_of(title_item, "title", &format!("{path}.titleItem"))?,
            subtitle: title_item["subTitle"]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned),
            image_url: title_item["imageId"].as_str().and_then(image),
            actions,
        });
    }
    Ok(Choices {
        message_id: text(&message["id"], "abstractMessage.id")?.to_owned(),
        format: "Carousel".to_owned(),
        text: choices["title"].as_str().unwrap_or_default().to_owned(),
        options,
        cards,
        time_picker: None,
    })
}

/// A `ChoicesTimePicker`: its `calendarEvent` (title, optional `timezoneOffset` and location)
/// and its `timeSlotOptionItems` (each a `startTime`, a `duration` in seconds and an
/// `optionIdentifier`); the question is `message.title`, else the event's title. Each option's
/// title here is the slot's start as RFC 3339: the end user's wording is `domain::time_picker`'s.
fn time_picker(message: &Value) -> Result<Choices, EventError> {
    let choices = &message["choices"];
    let event = &choices["calendarEvent"];
    let path = "abstractMessage.choices.calendarEvent";
    if !event.is_object() {
        return Err(EventError(format!("{path}: missing")));
    }
    let title = text_of(event, "title", path)?;
    let offset_minutes = match &event["timezoneOffset"] {
        Value::Null => None,
        v => Some(
            v.as_i64()
                .and_then(|m| i32::try_from(m).ok())
                .ok_or_else(|| EventError(format!("{path}.timezoneOffset: not an integer")))?,
        ),
    };
    let items = event["timeSlotOptionItems"]
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| EventError(format!("{path}.timeSlotOptionItems: missing or empty")))?;
    let mut options = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}.timeSlotOptionItems[{i}]");
        let start = text_of(item, "startTime", &path)?;
        let start = chrono::DateTime::parse_from_rfc3339(&start)
            .map_err(|e| EventError(format!("{path}.startTime: not an RFC 3339 time ({e})")))?
            .with_timezone(&chrono::Utc);
        let duration_seconds = item["duration"]
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| EventError(format!("{path}.duration: not a number of seconds")))?;
        options.push(ChoiceOption {
            id: text_of(item, "optionIdentifier", &path)?,
            title: start.to_rfc3339(),
        });
        slots.push(TimeSlot {
            start,
            duration_seconds,
        });
    }
    let question = choices["message"]["title"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .map_or_else(|| title.clone(), str::to_owned);
    Ok(Choices {
        message_id: text(&message["id"], "abstractMessage.id")?.to_owned(),
        format: "TimePicker".to_owned(),
        text: question,
        options,
        cards: Vec::new(),
        time_picker: Some(Box::new(TimePicker {
            event: title,
            offset_minutes,
            location: event["location"]["name"]
                .as_str()
                .filter(|t| !t.trim().is_empty())
                .map(str::to_owned),
            slots,
        })),
    })
}

fn message(body: &Value) -> Result<Entry, EventError> {
    if let Some(choices) = choices(&body["abstractMessage"])? {
        return Ok(Entry::Choices(choices));
    }
    let content = &body["abstractMessage"]["staticContent"];
    if !content.is_object() {
        // Choices, forms and other structured rep messages: pass on their text if any.
        let fallback = body["abstractMessage"]["choices"]["text"]
            .as_str()
            .map(str::to_owned);
        return Ok(Entry::Message {
            text: fallback,
            attachments: Vec::new(),
        });
    }
    let text = content["text"].as_str().map(str::to_owned);
    if content["formatType"].as_str() == Some("RichLink") {
        let link = &content["linkItem"];
        return Ok(Entry::Link(RichLink {
            url: text_of(link, "url", "staticContent.linkItem")?,
            title: text_of(
                &link["titleItem"],
                "title",
                "staticContent.linkItem.titleItem",
            )?,
            image_url: content["image"]["assetUrl"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            text: text.filter(|t| !t.trim().is_empty()),
        }));
    }
    let attachments = match content["formatType"].as_str() {
        Some("Attachments") => content["attachments"]
            .as_array()
            .ok_or_else(|| EventError("staticContent.attachments: missing".into()))?
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let path = format!("staticContent.attachments[{i}]");
                Ok(Attachment {
                    id: a["id"].as_str().unwrap_or_default().to_owned(),
                    name: text_of(a, "name", &path)?,
                    mime_type: text_of(a, "mimeType", &path)?,
                    url: text_of(a, "url", &path)?,
                })
            })
            .collect::<Result<Vec<_>, EventError>>()?,
        _ => Vec::new(),
    };
    if text.is_none() && attachments.is_empty() {
        return Err(EventError(
            "Message entry with neither text nor attachments".into(),
        ));
    }
    Ok(Entry::Message { text, attachments })
}

/// `ParticipantChanged.entries[]` (`{operation, participant: {subject, role}}`); for
/// `ParticipantsConferenced`, whose schema Salesforce does not publish, the same `entries`, else
/// a `participants` array of participants, all as joining. Entries without a subject are
/// skipped.
fn participants(body: &Value, conferenced: bool) -> Entry {
    let mut changes = Vec::new();
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    for entry in &entries {
        let participant = &entry["participant"];
        if let Some(subject) = participant["subject"].as_str() {
            changes.push(ParticipantChange {
                operation: entry["operation"]
                    .as_str()
                    .unwrap_or(if conferenced { "add" } else { "update" })
                    .to_ascii_lowercase(),
                subject: subject.to_owned(),
                role: participant["role"].as_str().unwrap_or("Agent").to_owned(),
            });
        }
    }
    if conferenced && entries.is_empty() {
        for participant in body["participants"].as_array().into_iter().flatten() {
            if let Some(subject) = participant["subject"].as_str() {
                changes.push(ParticipantChange {
                    operation: "add".into(),
                    subject: subject.to_owned(),
                    role: participant["role"].as_str().unwrap_or("Agent").to_owned(),
                });
            }
        }
    }
    Entry::Participants {
        changes,
        conferenced,
    }
}

/// `MessageUpdated.updatedMessage`: its attachments (with their upload result) and text.
fn message_updated(body: &Value) -> Entry {
    let message = &body["updatedMessage"];
    let content = &message["staticContent"];
    let mut upload = None;
    let mut attachments = Vec::new();
    for a in content["attachments"].as_array().into_iter().flatten() {
        let result = &a["attachmentUploadResult"];
        if let Some(kind) = result["resultType"].as_str() {
            upload = Some((
                kind.to_owned(),
                result["errorType"].as_str().map(str::to_owned),
            ));
        }
        if let (Some(url), Some(name), Some(mime)) = (
            a["url"].as_str(),
            a["name"].as_str(),
            a["mimeType"].as_str(),
        ) {
            attachments.push(Attachment {
                id: a["id"].as_str().unwrap_or_default().to_owned(),
                name: name.to_owned(),
                mime_type: mime.to_owned(),
                url: url.to_owned(),
            });
        }
    }
    Entry::MessageUpdated {
        message_id: message["id"].as_str().map(str::to_owned),
        upload,
        attachments,
        text: content["text"].as_str().map(str::to_owned),
    }
}

fn text_of(v: &Value, key: &str, path: &str) -> Result<String, EventError> {
    Ok(text(&v[key], &format!("{path}.{key}"))?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rich_link_is_read_with_its_title_image_and_text() {
        let body = serde_json::json!({ "abstractMessage": {
            "messageType": "StaticContentMessage", "id": "m-1",
            "staticContent": {
                "formatType": "RichLink",
                "linkItem": { "itemType": "TitleLinkItem", "url": "https://acme.example/offer",
                    "titleItem": { "itemType": "TitleItem", "title": "Winter offer", "subTitle": null } },
                "image": { "assetType": "ImageAsset", "id": "i-1", "mimeType": "image/png",
                    "assetUrl": "https://acme.example/offer.png" },
                "text": null } } });
        assert_eq!(
            message(&body).unwrap(),
            Entry::Link(RichLink {
                url: "https://acme.example/offer".into(),
                title: "Winter offer".into(),
                image_url: Some("https://acme.example/offer.png".into()),
                text: None,
            })
        );
        let mut no_url = body.clone();
        no_url["abstractMessage"]["staticContent"]["linkItem"]["url"] = Value::Null;
        let e = message(&no_url).unwrap_err();
        assert!(e.0.contains("staticContent.linkItem.url"), "{e:?}");
    }

    #[test]
    fn a_carousel_is_read_card_by_card_with_images_options_and_links() {
        let body = serde_json::json!({ "abstractMessage": {
            "messageType": "ChoicesMessage", "id": "m-2",
            "choices": {
                "formatType": "Carousel", "title": "Our rooms",
                "images": [{ "assetType": "ImageAsset", "id": "img-1", "mimeType": "image/png",
                    "assetUrl": "https://acme.example/room.png" }],
                "items": [
                    { "titleItem": { "itemType": "TitleImageItem", "title": "Double room",
                        "subTitle": "Sea view", "imageId": "img-1" },
                      "interactionItems": [
                        { "itemType": "TitleOptionItem", "optionIdentifier": "o-1",
                          "titleItem": { "itemType": "TitleItem", "title": "Book" } },
                        { "itemType": "TitleLinkItem", "url": "https://acme.example/room",
                          "titleItem": { "itemType": "TitleItem", "title": "Photos" } }] },
                    { "titleItem": { "itemType": "TitleItem", "title": "Suite" },
                      "interactionItems": [
                        { "itemType": "TitleOptionItem", "optionIdentifier": "o-2",
                          "titleItem": { "itemType": "TitleItem", "title": "Book" } }] }] } } });
        let Entry::Choices(choices) = message(&body).unwrap() else {
            panic!("not choices")
        };
        assert_eq!(choices.text, "Our rooms");
        let ids: Vec<&str> = choices.options.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["o-1", "o-2"]);
        assert_eq!(
            choices.cards[0],
            CarouselCard {
                title: "Double room".into(),
                subtitle: Some("Sea view".into()),
                image_url: Some("https://acme.example/room.png".into()),
                actions: vec![
                    CardAction::Option(0),
                    CardAction::Link {
                        title: "Photos".into(),
                        url: "https://acme.example/room".into(),
                    },
                ],
            }
        );
        assert_eq!(choices.cards[1].image_url, None);
        assert_eq!(choices.cards[1].actions, [CardAction::Option(1)]);
        let mut odd = body.clone();
        odd["abstractMessage"]["choices"]["items"][1]["interactionItems"][0]["itemType"] =
            serde_json::json!("TitleDateItem");
        let e = message(&odd).unwrap_err();
        assert!(
            e.0.contains("choices.items[1].interactionItems[0].itemType"),
            "{e:?}"
        );
    }

    #[test]
    fn a_time_picker_is_read_with_its_event_zone_place_and_slots() {
        let body = serde_json::json!({ "abstractMessage": {
            "messageType": "ChoicesMessage", "id": "m-3",
            "choices": {
                "formatType": "TimePicker",
                "message": { "itemType": "TitleItem", "title": "When can we visit?" },
                "calendarEvent": {
                    "itemType": "CalendarEventOptionsItem", "identifier": "ev-1",
                    "title": "Boiler service", "timezoneOffset": 60,
                    "location": { "itemType": "LocationItem", "name": "12 High Street",
                        "latitude": 51.5, "longitude": -0.1 },
                    "timeSlotOptionItems": [
                        { "itemType": "TimeSlotOptionItem", "optionIdentifier": "slot-a",
                          "startTime": "2026-12-08T13:00:00.000Z", "duration": 3600 },
                        { "itemType": "TimeSlotOptionItem", "optionIdentifier": "slot-b",
                          "startTime": "2026-12-08T15:00:00+01:00", "duration": 1800 }] } } } });
        let Entry::Choices(choices) = message(&body).unwrap() else {
            panic!("not choices")
        };
        assert_eq!(choices.format, "TimePicker");
        assert_eq!(choices.text, "When can we visit?");
        let ids: Vec<&str> = choices.options.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["slot-a", "slot-b"]);
        let picker = choices.time_picker.unwrap();
        assert_eq!(picker.event, "Boiler service");
        assert_eq!(picker.offset_minutes, Some(60));
        assert_eq!(picker.location.as_deref(), Some("12 High Street"));
        assert_eq!(
            picker.slots[1].start.to_rfc3339(),
            "2026-12-08T14:00:00+00:00"
        );
        assert_eq!(picker.slots[1].duration_seconds, 1800);

        // Without `message`, the event's title is the question.
        let mut bare = body.clone();
        bare["abstractMessage"]["choices"]
            .as_object_mut()
            .unwrap()
            .remove("message");
        let Entry::Choices(bare) = message(&bare).unwrap() else {
            panic!("not choices")
        };
        assert_eq!(bare.text, "Boiler service");

        for (field, value, named) in [
            (
                "startTime",
                serde_json::json!("8 Dec 14:00"),
                "timeSlotOptionItems[0].startTime",
            ),
            (
                "duration",
                serde_json::json!(-5),
                "timeSlotOptionItems[0].duration",
            ),
            (
                "optionIdentifier",
                Value::Null,
                "timeSlotOptionItems[0].optionIdentifier",
            ),
        ] {
            let mut odd = body.clone();
            odd["abstractMessage"]["choices"]["calendarEvent"]["timeSlotOptionItems"][0][field] =
                value;
            let e = message(&odd).unwrap_err();
            assert!(e.0.contains(named), "{field}: {e:?}");
        }
    }

    fn interaction(entry_type: &str, entry_payload: Value) -> String {
        serde_json::json!({
            "conversationIdentifier": "c-1",
            "channelAddressIdentifier": "addr",
            "recipient": { "appType": "custom", "subject": "+447700900001", "role": "EndUser" },
            "payload": {
                "identifier": "entry-1",
                "entryType": entry_type,
                "entryPayload": entry_payload,
                "sender": { "appType": "agent", "subject": "005000000000001", "role": "Agent" },
                "senderDisplayName": "Ann",
                "clientTimestamp": 1_763_700_000_000_i64,
                "transcriptedTimestamp": 1_763_700_000_001_i64,
                "clientDuration": 0
            }
        })
        .to_string()
    }

    #[test]
    fn rep_text_and_attachments_are_read() {
        let event = parse(
            "Interaction",
            &interaction(
                "Message",
                serde_json::json!({ "entryType": "Message", "abstractMessage": {
                    "messageType": "StaticContentMessage", "id": "entry-1",
                    "staticContent": { "formatType": "Text", "text": "Hello" } } }),
            ),
        )
        .unwrap();
        let OutboundEvent::Interaction(e) = event else {
            panic!()
        };
        assert_eq!(e.identifier, "entry-1");
        assert_eq!(e.end_user, "+447700900001");
        assert_eq!(e.sender.as_deref(), Some("005000000000001"));
        assert_eq!(
            e.entry,
            Entry::Message {
                text: Some("Hello".into()),
                attachments: vec![]
            }
        );

        let event = parse(
            "Interaction",
            &interaction(
                "Message",
                serde_json::json!({ "entryType": "Message", "abstractMessage": {
                    "messageType": "StaticContentMessage", "id": "entry-1",
                    "staticContent": { "formatType": "Attachments", "text": "see this",
                        "attachments": [{ "id": "069x", "name": "a.pdf", "mimeType": "application/pdf",
                                          "url": "https://x/sfc/a" }] } } }),
            ),
        )
        .unwrap();
        let OutboundEvent::Interaction(e) = event else {
            panic!()
        };
        let Entry::Message { attachments, text } = e.entry else {
            panic!()
        };
        assert_eq!(text.as_deref(), Some("see this"));
        assert_eq!(attachments[0].name, "a.pdf");
    }

    #[test]
    fn the_payload_without_its_wrapper_is_read_too() {
        let body = serde_json::json!({
            "channelAddressIdentifier": "addr",
            "recipient": { "subject": "+447700900001" },
            "identifier": "entry-9",
            "entryType": "TypingStartedIndicator",
            "entryPayload": { "entryType": "TypingStartedIndicator", "conversationIdentifier": "c-9" },
        });
        let OutboundEvent::Interaction(e) = parse("Interaction", &body.to_string()).unwrap() else {
            panic!()
        };
        assert_eq!(e.entry, Entry::TypingStarted);
        assert_eq!(e.conversation_identifier.as_deref(), Some("c-9"));
    }

    #[test]
    fn session_changes_and_routing_requests_are_read() {
        let OutboundEvent::Interaction(e) = parse(
            "Interaction",
            &interaction(
                "SessionStatusChanged",
                serde_json::json!({ "entryType": "SessionStatusChanged", "sessionId": "0Mw000000000001",
                    "sessionStatus": "Ended", "sessionEndedByRole": "Agent" }),
            ),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            e.entry,
            Entry::SessionStatusChanged {
                session_id: Some("0Mw000000000001".into()),
                status: "Ended".into(),
                ended_by: Some("Agent".into())
            }
        );
        let routing = serde_json::json!({
            "channelAddressIdentifier": "addr",
            "recipient": { "subject": "+447700900001" },
            "payload": { "conversationIdentifier": "c-1", "routingType": "Transfer",
                         "routingParameters": { "queueId": "00G000000000001" } }
        });
        let OutboundEvent::RoutingRequested(r) =
            parse("RoutingRequested", &routing.to_string()).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.routing_type, "Transfer");
        assert_eq!(r.conversation_identifier.as_deref(), Some("c-1"));
    }

    #[test]
    fn what_cannot_be_read_is_explained() {
        assert!(
            parse("Interaction", "{")
                .unwrap_err()
                .0
                .contains("not JSON")
        );
        assert!(
            parse("Interaction", r#"{"recipient":{"subject":"x"}}"#)
                .unwrap_err()
                .0
                .contains("channelAddressIdentifier")
        );
        assert!(
            parse(
                "Something",
                r#"{"channelAddressIdentifier":"a","recipient":{"subject":"x"}}"#
            )
            .unwrap_err()
            .0
            .contains("unknown event type")
        );
    }
}
