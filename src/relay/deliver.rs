//! Delivering each kind of job to the Interaction Service, the routing module or the provider.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Outcome, Relay};
use crate::{
    channels::ChannelRuntime,
    domain::{
        choices::{self, ChannelKind, Reply, SentOption},
        links,
        window::{self, Decision, Part},
    },
    lifecycle::{
        failure::Failure,
        remediation::{Action as RemedyAction, Trigger, remedy},
    },
    providers::{
        AnyProvider, E164, EndUser, InboundContent, LastInbound, MediaForm, MediaKind,
        OutboundMedia, Provider, ProviderErrorClass, TypingOutcome,
    },
    routing,
    salesforce::{
        codes::ErrorClass,
        files,
        isa::{Called, IsaClient, IsaError, MAX_ATTACHMENT_BYTES, SUPPORTED_MIME_TYPES, Target},
        types::*,
    },
    store::{
        AuditEntry, ChoicePrompt, ConversationContext, Delivered, OutboxItem, Severity, Store,
        job::{
            IsaAcknowledgement, IsaConsent, IsaDeliveryFailed, IsaMessage, IsaSessionOperation,
            IsaTyping, Job, ProviderMessage, ProviderMessageBody, RoutingInitial,
        },
    },
};

/// Time allowed to download an end user's file from the provider.
pub const MEDIA_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

fn failure(error: impl Into<String>, class: ErrorClass) -> Failure {
    Failure::new(error, class)
}

fn called<T>(called: &Called<T>, endpoint: &str) -> Value {
    json!({
        "endpoint": endpoint,
        "status": called.status,
        "request_ids": called.request_ids,
        "latency_ms": called.latency.as_millis() as u64,
    })
}

/// The Interaction Service client in force, or why Salesforce work cannot go out.
fn isa_of(relay: &Relay) -> Result<IsaClient, Failure> {
    relay
        .isa()
        .ok_or_else(|| failure("no Salesforce org is configured", ErrorClass::Configuration))
}

fn target<'a>(item: &'a OutboxItem, channel: &'a ChannelRuntime) -> Target<'a> {
    Target {
        org_id: &item.org_id,
        authorization_context: &channel.config.authorization_context,
    }
}

/// Delivers one row, read as `job`.
pub(super) async fn deliver(relay: &Relay, item: &OutboxItem, job: &Job) -> Outcome {
    let inner = &relay.inner;
    let Some(channel) = inner
        .channels
        .read()
        .expect("channel map lock poisoned")
        .get(&item.channel)
        .cloned()
    else {
        return Err(failure(
            format!(
                "channel {} is no longer configured; its work cannot be delivered",
                item.channel
            ),
            ErrorClass::Configuration,
        ));
    };
    let store = &inner.store;
    let config = &channel.config;
    let now = relay.now();
    match job {
        Job::ProviderTyping(_) => provider_typing(relay, item, &channel).await,
        Job::ProviderMessage(message) => provider_message(relay, item, &channel, message).await,
        Job::RoutingInitial(j) => {
            let isa = isa_of(relay)?;
            routing::initial(store, &isa, config, target(item, &channel), item, j, now).await
        }
        Job::RoutingRequest(j) => {
            let isa = isa_of(relay)?;
            routing::request(store, &isa, config, target(item, &channel), item, j, now).await
        }
        Job::RoutingWorkResult(j) => {
            let isa = isa_of(relay)?;
            routing::work_result(store, &isa, config, target(item, &channel), item, j, now).await
        }
        Job::RoutingOfferTimeout(j) => {
            let isa = isa_of(relay)?;
            routing::offer_timeout(store, &isa, config, target(item, &channel), item, j, now).await
        }
        Job::IsaMessage(message) => isa_message(relay, item, &channel, message).await,
        Job::IsaTypingStarted(typing) => {
            let body = EntryBody::TypingStarted {
                timestamp: typing.timestamp,
            };
            isa_typing(relay, item, &channel, typing, body).await
        }
        Job::IsaTypingStopped(typing) => {
            let body = EntryBody::TypingStopped {
                timestamp: typing.timestamp,
            };
            isa_typing(relay, item, &channel, typing, body).await
        }
        Job::IsaAcknowledgement(ack) => isa_acknowledgement(relay, item, &channel, ack).await,
        Job::IsaSessionOperation(op) => isa_session_operation(relay, item, &channel, op).await,
        Job::IsaConsent(consent) => isa_consent(relay, item, &channel, consent).await,
        Job::IsaDeliveryFailed(failed) => isa_delivery_failed(relay, item, &channel, failed).await,
        Job::IsaCapabilities(request) => {
            let isa = isa_of(relay)?;
            let answer = isa
                .capabilities(target(item, &channel), request)
                .await
                .map_err(Failure::from)?;
            Ok(Delivered {
                detail: called(&answer, "PATCH /api/v1/capabilities"),
                ..Delivered::default()
            })
        }
    }
}

/// An end user's message → `POST /interactions` (a file is downloaded and attached).
async fn isa_message(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    message: &IsaMessage,
) -> Outcome {
    let isa = isa_of(relay)?;
    let to = channel.config.channel_address_identifier.clone();
    let from = message.from.clone();
    let entry_id = message.entry_id;
    let at = message.timestamp;
    let answered = choice_answer(relay, item, message).await?;
    let content = match &answered {
        Some((_, message_id, option)) => Err(choices_request(
            to.clone(),
            from.clone(),
            entry_id,
            at,
            message_id,
            option,
        )),
        None => Ok(message.content.clone()),
    };
    let (request, file) = match content {
        Err(request) => (request, None),
        Ok(InboundContent::Media {
            media,
            url,
            mime_type,
            file_name,
            caption,
        }) => match fetch_media(relay, channel, &url, mime_type.as_deref()).await {
            Ok((bytes, mime)) => {
                let request = InteractionRequest {
                    to,
                    from,
                    routing_attributes: None,
                    interactions: vec![Interaction::Attachment {
                        timestamp: at,
                        id: entry_id,
                        attachment_index: 0,
                        content_length: bytes.len() as u64,
                        text: caption,
                    }],
                };
                let name = file_name.unwrap_or_else(|| default_name(media, &mime));
                (
                    request,
                    Some(FilePart {
                        file_name: name,
                        mime_type: mime,
                        bytes,
                    }),
                )
            }
            Err(MediaProblem::Transient(e)) => {
                return Err(failure(e, ErrorClass::Retryable));
            }
            Err(MediaProblem::Unforwardable(reason)) => {
                // The rep still learns a file was sent.
                audit_unforwardable(relay, item, &url, &reason).await;
                let name = file_name.as_deref().unwrap_or("a file");
                let text = match caption {
                    Some(c) => format!(
                        "[The end user sent {name} that cannot be shown here: {reason}. Caption: {c}]"
                    ),
                    None => {
                        format!("[The end user sent {name} that cannot be shown here: {reason}]")
                    }
                };
                (text_request(to, from, entry_id, at, text), None)
            }
        },
        Ok(other) => (
            text_request(to, from, entry_id, at, render_text(&other)),
            None,
        ),
    };
    // Partner-routed channels route each new session (a work item not seen before).
    let prior = match (&channel.config.routing, item.conversation_id) {
        (Some(_), Some(conversation)) => relay
            .inner
            .store
            .conversation_context(conversation)
            .await
            .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?
            .and_then(|c| c.work_item_id),
        _ => None,
    };
    let first_text = match &request.interactions[0] {
        Interaction::Entry {
            payload:
                Entry {
                    body: EntryBody::Message { abstract_message },
                    ..
                },
            ..
        } => match &abstract_message.content {
            MessageContent::StaticContent {
                static_content: StaticContent::Text { text },
            } => Some(text.clone()),
            _ => None,
        },
        _ => None,
    };
    let answer = isa
        .interaction(target(item, channel), &request, file)
        .await
        .map_err(Failure::from)?;
    let work_item = answer.value.work_item_ids.first().cloned();
    let mut follow_ups = Vec::new();
    if channel.config.routing.is_some()
        && let (Some(work_item), Some(conversation)) =
            (&work_item, &answer.value.conversation_identifier)
        && prior.as_deref() != Some(work_item.as_str())
    {
        follow_ups.push(
            Job::RoutingInitial(RoutingInitial {
                work_item_id: work_item.clone(),
                conversation_identifier: conversation.clone(),
                from: message.from.clone(),
                text: first_text,
            })
            .follow_up(None),
        );
    }
    let mut detail = called(&answer, "POST /api/v1/interactions");
    if let Some((_, _, option)) = &answered {
        detail["choice_number"] = json!(option.number);
    }
    Ok(Delivered {
        conversation_identifier: answer.value.conversation_identifier.clone(),
        work_item_id: work_item,
        follow_ups,
        detail,
        choice_answered: answered.map(|(entry, _, _)| entry),
        ..Delivered::default()
    })
}

/// The rep choices an end user's message answers, if any: `(the choices' entry id, their
/// message id, the option)`. A tap is looked for among the conversation's recent choices (the
/// ones it replies to first); a typed number only answers the newest choices, sent as numbered
/// text and not answered yet (`domain::choices::answer`).
async fn choice_answer(
    relay: &Relay,
    item: &OutboxItem,
    message: &IsaMessage,
) -> Result<Option<(String, String, SentOption)>, Failure> {
    /// How many recent choices a tap is looked for in.
    const RECENT: i64 = 5;
    let reply = match &message.content {
        InboundContent::InteractiveReply { id, title } => Reply::Picked {
            id: id.as_deref(),
            title,
        },
        InboundContent::Text { text } if text.trim().len() <= 4 => Reply::Typed(text),
        _ => return Ok(None),
    };
    let Some(conversation) = item.conversation_id else {
        return Ok(None);
    };
    let mut prompts = relay
        .inner
        .store
        .choice_prompts(conversation, RECENT)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
    if let Reply::Typed(_) = reply {
        prompts.truncate(1);
        prompts.retain(|p| !p.answered);
    } else if let Some(to) = &message.reply_to {
        // The choices the reply names first.
        prompts.sort_by_key(|p| p.provider_message_id.as_deref() != Some(to.as_str()));
    }
    for prompt in prompts {
        let Ok(form) = serde_json::from_value::<choices::Form>(json!(prompt.form)) else {
            continue;
        };
        let Ok(options) = serde_json::from_value::<Vec<SentOption>>(prompt.options) else {
            continue;
        };
        if let Some(option) = choices::answer(reply, &form, &options) {
            return Ok(Some((
                prompt.salesforce_entry_id,
                prompt.message_id,
                option.clone(),
            )));
        }
    }
    Ok(None)
}

/// A `ChoicesResponseMessage` naming the selected option and replying to the rep's message.
fn choices_request(
    to: String,
    from: String,
    entry_id: Uuid,
    at: i64,
    message_id: &str,
    option: &SentOption,
) -> InteractionRequest {
    InteractionRequest {
        to,
        from,
        routing_attributes: None,
        interactions: vec![Interaction::Entry {
            timestamp: at,
            payload: Entry {
                id: entry_id,
                body: EntryBody::Message {
                    abstract_message: Message {
                        id: entry_id,
                        in_reply_to_message_id: Some(message_id.to_owned()),
                        content: MessageContent::ChoicesResponse {
                            choices_response: ChoicesResponse::Selections {
                                selected_options: vec![SelectedOption {
                                    option_identifier: option.option_identifier.clone(),
                                }],
                            },
                        },
                    },
                },
            },
        }],
    }
}

/// The end user started or stopped typing → a typing indicator entry (`body`).
async fn isa_typing(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    typing: &IsaTyping,
    body: EntryBody,
) -> Outcome {
    let isa = isa_of(relay)?;
    let request = InteractionRequest {
        to: channel.config.channel_address_identifier.clone(),
        from: typing.from.clone(),
        routing_attributes: None,
        interactions: vec![Interaction::Entry {
            timestamp: typing.timestamp,
            payload: Entry {
                id: typing.entry_id,
                body,
            },
        }],
    };
    let answer = isa
        .interaction(target(item, channel), &request, None)
        .await
        .map_err(Failure::from)?;
    Ok(Delivered {
        conversation_identifier: answer.value.conversation_identifier.clone(),
        work_item_id: answer.value.work_item_ids.first().cloned(),
        detail: called(&answer, "POST /api/v1/interactions"),
        ..Delivered::default()
    })
}

/// Receipts of rep messages → `POST /acknowledgement`.
async fn isa_acknowledgement(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    ack: &IsaAcknowledgement,
) -> Outcome {
    let isa = isa_of(relay)?;
    let conversation_identifier = conversation_identifier(relay, item).await?;
    let acknowledgements: Vec<Acknowledgement> = ack
        .acknowledgements
        .iter()
        .map(|a| Acknowledgement {
            kind: a.kind,
            acknowledged_entry: a.entry.clone(),
            created_entry: a.created,
            timestamp: a.timestamp,
        })
        .collect();
    let count = acknowledgements.len();
    let answers = isa
        .acknowledge(
            target(item, channel),
            &AcknowledgementRequest {
                conversation_identifier,
                sender: Participant::end_user(ack.from.clone()),
                acknowledgements,
            },
        )
        .await
        .map_err(Failure::from)?;
    let mut detail = answers
        .last()
        .map(|a| called(a, "POST /api/v1/acknowledgement"))
        .unwrap_or_default();
    detail["acknowledgements"] = count.into();
    Ok(Delivered {
        detail,
        ..Delivered::default()
    })
}

/// End or inactivate the session → `POST /messagingSession`; a session Salesforce no longer
/// has is reconciled.
async fn isa_session_operation(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    op: &IsaSessionOperation,
) -> Outcome {
    let isa = isa_of(relay)?;
    let context = context_of(relay, item).await?;
    let Some(conversation_identifier) = context.conversation_identifier.clone() else {
        return Err(failure(
            "the conversation has no Salesforce conversationIdentifier",
            ErrorClass::NotFound,
        ));
    };
    let request = MessagingSessionRequest {
        channel_address_identifier: channel.config.channel_address_identifier.clone(),
        end_user_client_id: context.end_user_client_id.clone(),
        conversation_identifier,
        // An opt-out row written before the session's work item was known reads it now.
        session_id: op
            .work_item_id
            .clone()
            .or_else(|| context.work_item_id.clone()),
        operation: op.operation,
        operation_by: Some(op.operation_by),
    };
    match isa.messaging_session(target(item, channel), &request).await {
        Ok(answer) => Ok(Delivered {
            detail: called(&answer, "POST /api/v1/messagingSession"),
            ..Delivered::default()
        }),
        Err(e) => {
            // Salesforce no longer has the session or conversation: it is over here too
            // (reconcile), not a failure to retry.
            if let IsaError::Refused {
                reason: Some(reason),
                ..
            } = &e
            {
                let trigger = Trigger::ErrorReason(reason.clone());
                if remedy(&trigger).action == RemedyAction::Reconcile {
                    if let Some(session) = item.session_id {
                        relay
                            .inner
                            .store
                            .reconcile_session(session, reason.as_str())
                            .await
                            .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
                    }
                    return Ok(Delivered {
                        detail: json!({
                            "endpoint": "POST /api/v1/messagingSession",
                            "reconciled": reason.as_str(),
                        }),
                        ..Delivered::default()
                    });
                }
            }
            Err(Failure::from(e))
        }
    }
}

/// The end user's consent → `PATCH /consent`.
async fn isa_consent(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    consent: &IsaConsent,
) -> Outcome {
    let isa = isa_of(relay)?;
    let answer = isa
        .consent(
            target(item, channel),
            &ConsentRequest {
                end_user_client_id: consent.from.clone(),
                channel_address_identifier: channel.config.channel_address_identifier.clone(),
                consent_status: consent.consent_status,
            },
        )
        .await
        .map_err(Failure::from)?;
    Ok(Delivered {
        detail: called(&answer, "PATCH /api/v1/consent"),
        ..Delivered::default()
    })
}

/// A rep message could not be delivered → `MessageDeliveryFailed`.
async fn isa_delivery_failed(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    failed: &IsaDeliveryFailed,
) -> Outcome {
    let isa = isa_of(relay)?;
    let request = InteractionRequest {
        to: channel.config.channel_address_identifier.clone(),
        from: failed.from.clone(),
        routing_attributes: None,
        interactions: vec![Interaction::Entry {
            timestamp: failed.timestamp,
            payload: Entry {
                id: failed.entry_id,
                body: EntryBody::MessageDeliveryFailed {
                    recipient: Participant::end_user(failed.from.clone()),
                    error_code: failed.code.clone(),
                    failed_conversation_entry_identifier: failed.failed_entry.clone(),
                    error_message: failed.message.clone(),
                },
            },
        }],
    };
    let answer = isa
        .interaction(target(item, channel), &request, None)
        .await
        .map_err(Failure::from)?;
    Ok(Delivered {
        conversation_identifier: answer.value.conversation_identifier.clone(),
        work_item_id: None,
        detail: called(&answer, "POST /api/v1/interactions"),
        ..Delivered::default()
    })
}

fn text_request(
    to: String,
    from: String,
    entry_id: Uuid,
    at: i64,
    text: String,
) -> InteractionRequest {
    InteractionRequest {
        to,
        from,
        routing_attributes: None,
        interactions: vec![Interaction::Entry {
            timestamp: at,
            payload: Entry {
                id: entry_id,
                body: EntryBody::Message {
                    abstract_message: Message {
                        id: entry_id,
                        in_reply_to_message_id: None,
                        content: MessageContent::StaticContent {
                            static_content: StaticContent::Text { text },
                        },
                    },
                },
            },
        }],
    }
}

/// The text a rep sees for content Salesforce has no end-user form for.
fn render_text(content: &InboundContent) -> String {
    match content {
        InboundContent::Text { text } => text.clone(),
        InboundContent::Location {
            latitude,
            longitude,
            name,
            address,
        } => {
            let place = [name.as_deref(), address.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            if place.is_empty() {
                format!("[Location shared: {latitude}, {longitude}]")
            } else {
                format!("[Location shared: {place} ({latitude}, {longitude})]")
            }
        }
        InboundContent::InteractiveReply { title, .. } => title.clone(),
        InboundContent::Media { url, .. } => format!("[File: {url}]"),
    }
}

fn default_name(media: MediaKind, mime: &str) -> String {
    let ext = mime.rsplit('/').next().unwrap_or("bin");
    let stem = match media {
        MediaKind::Image => "image",
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::File => "file",
    };
    format!("{stem}.{ext}")
}

enum MediaProblem {
    /// Try again later (network, 5xx).
    Transient(String),
    /// Will never reach Salesforce as a file (too large, type, gone).
    Unforwardable(String),
}

/// Downloads an end user's file, streamed and cut off past Salesforce's 25 MB, under the rules
/// of [`super::media`]: https to an allowed public host, every redirect checked again, the type
/// sniffed from the bytes, the URL never in an error.
async fn fetch_media(
    relay: &Relay,
    channel: &ChannelRuntime,
    url: &str,
    declared: Option<&str>,
) -> Result<(bytes::Bytes, String), MediaProblem> {
    let allow_private = relay.inner.settings.allow_private_media_urls;
    let hosts: &[String] = match &channel.config.provider {
        crate::config::Provider::EightByEight(account) => &account.media_hosts,
        _ => &[],
    };
    let mut url = reqwest::Url::parse(url)
        .map_err(|_| MediaProblem::Unforwardable("its URL cannot be read".into()))?;
    let mut redirects = 0;
    let response = loop {
        super::media::check_url(&url, hosts, allow_private).map_err(MediaProblem::Unforwardable)?;
        let response = relay
            .inner
            .inbound_media
            .get(url.clone())
            .send()
            .await
            .map_err(|e| match super::media::not_public(&e) {
                Some(refused) => MediaProblem::Unforwardable(refused),
                None => MediaProblem::Transient(format!(
                    "downloading the file failed: {}",
                    e.without_url()
                )),
            })?;
        if !response.status().is_redirection() {
            break response;
        }
        redirects += 1;
        if redirects > super::media::MAX_REDIRECTS {
            return Err(MediaProblem::Unforwardable(format!(
                "its URL redirects more than {} times",
                super::media::MAX_REDIRECTS
            )));
        }
        let next = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| url.join(location).ok());
        match next {
            Some(next) => url = next,
            None => {
                return Err(MediaProblem::Unforwardable(format!(
                    "the provider answered HTTP {} without a usable Location",
                    response.status()
                )));
            }
        }
    };
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(MediaProblem::Transient(format!(
            "downloading the file failed: HTTP {status}"
        )));
    }
    if !status.is_success() {
        return Err(MediaProblem::Unforwardable(format!(
            "the provider no longer serves it (HTTP {status})"
        )));
    }
    if let Some(len) = response.content_length()
        && len > MAX_ATTACHMENT_BYTES
    {
        return Err(MediaProblem::Unforwardable(format!(
            "it is {len} bytes and Salesforce accepts at most {MAX_ATTACHMENT_BYTES}"
        )));
    }
    // The server's type, else the webhook's: only a hint between types the bytes cannot tell
    // apart; the bytes decide.
    let claimed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
        .filter(|m| m != "application/octet-stream")
        .or_else(|| declared.map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if !claimed.is_empty() && !SUPPORTED_MIME_TYPES.contains(&claimed.as_str()) {
        return Err(MediaProblem::Unforwardable(format!(
            "its type `{claimed}` is not one Salesforce accepts"
        )));
    }
    let mut response = response;
    let mut buf = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (buf.len() + chunk.len()) as u64 > MAX_ATTACHMENT_BYTES {
                    return Err(MediaProblem::Unforwardable(format!(
                        "it is larger than the {MAX_ATTACHMENT_BYTES} bytes Salesforce accepts"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(MediaProblem::Transient(format!(
                    "downloading the file failed: {}",
                    e.without_url()
                )));
            }
        }
    }
    if buf.is_empty() {
        return Err(MediaProblem::Unforwardable("the file is empty".into()));
    }
    let Some(mime) = super::media::sniff(&buf, Some(&claimed)) else {
        return Err(MediaProblem::Unforwardable(format!(
            "its content is not a type Salesforce accepts (declared `{claimed}`)"
        )));
    };
    Ok((buf.freeze(), mime.to_owned()))
}

async fn audit_unforwardable(relay: &Relay, item: &OutboxItem, url: &str, reason: &str) {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    let mut entry = AuditEntry::new(
        "inbound.media_not_forwarded",
        format!("a file from the end user could not be forwarded: {reason}; the rep was told"),
    )
    .severity(Severity::Warning)
    .org(&item.org_id)
    .channel(&item.channel)
    .detail(json!({ "outbox_id": item.id, "reason": reason, "host": host }));
    if let Some(c) = item.conversation_id {
        entry = entry.conversation(c);
    }
    if let Some(s) = item.session_id {
        entry = entry.session(s);
    }
    if let Err(e) = relay.inner.store.append_audit(&entry).await {
        tracing::error!(error = %e, "could not audit an unforwardable file");
    }
}

async fn conversation_identifier(relay: &Relay, item: &OutboxItem) -> Result<String, Failure> {
    let Some(conversation) = item.conversation_id else {
        return Err(failure(
            "outbox row has no conversation",
            ErrorClass::BadInput,
        ));
    };
    let context = relay
        .inner
        .store
        .conversation_context(conversation)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
    context
        .and_then(|c| c.conversation_identifier)
        .ok_or_else(|| {
            failure(
                "the conversation has no Salesforce conversationIdentifier yet",
                ErrorClass::Retryable,
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Salesforce → end user

/// The end user of a conversation as the provider addresses them.
fn end_user_of(context: &ConversationContext) -> Result<EndUser, Failure> {
    let msisdn = context
        .msisdn
        .as_deref()
        .map(E164::parse)
        .transpose()
        .map_err(|e| {
            failure(
                format!("stored number is not E.164: {e}"),
                ErrorClass::BadInput,
            )
        })?;
    if msisdn.is_none() && context.channel_user_id.is_none() {
        return Err(failure(
            "the end user has neither a number nor a provider user id",
            ErrorClass::BadInput,
        ));
    }
    Ok(EndUser {
        msisdn,
        channel_user_id: context.channel_user_id.clone(),
        display_name: None,
    })
}

async fn context_of(relay: &Relay, item: &OutboxItem) -> Result<ConversationContext, Failure> {
    let conversation = item
        .conversation_id
        .ok_or_else(|| failure("outbox row has no conversation", ErrorClass::BadInput))?;
    relay
        .inner
        .store
        .conversation_context(conversation)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?
        .ok_or_else(|| failure("the conversation no longer exists", ErrorClass::NotFound))
}

/// The rep started typing → the provider's typing indicator (dropped, not retried, when it
/// cannot be shown).
async fn provider_typing(relay: &Relay, item: &OutboxItem, channel: &ChannelRuntime) -> Outcome {
    let context = context_of(relay, item).await?;
    let to = end_user_of(&context)?;
    let outcome = channel
        .provider
        .send_typing(
            &to,
            context
                .last_inbound
                .as_ref()
                .map(|(id, at)| LastInbound {
                    provider_message_id: id.clone(),
                    at: *at,
                })
                .as_ref(),
            relay.now(),
        )
        .await;
    let detail = match outcome {
        Ok(TypingOutcome::Sent) => json!({ "outcome": "sent" }),
        Ok(TypingOutcome::Dropped { reason }) => {
            audit_outbound(
                relay,
                item,
                "outbound.typing_dropped",
                Severity::Info,
                format!("rep typing not shown to the end user: {reason}"),
            )
            .await;
            json!({ "outcome": "dropped", "reason": reason })
        }
        // A typing indicator is worth nothing later: record the failure, do not retry.
        Err(e) => {
            audit_outbound(
                relay,
                item,
                "outbound.typing_dropped",
                Severity::Warning,
                format!("rep typing not shown to the end user: {e}"),
            )
            .await;
            json!({ "outcome": "failed", "error": e.to_string() })
        }
    };
    Ok(Delivered {
        detail,
        ..Delivered::default()
    })
}

/// One part of a rep message → the provider; a refusal for good tells the rep through
/// Salesforce (`MessageDeliveryFailed`).
async fn provider_message(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    message: &ProviderMessage,
) -> Outcome {
    let context = context_of(relay, item).await?;
    let to = end_user_of(&context)?;
    let entry_id = message.entry_id.clone();
    let reference = message.reference();
    // A rich link's form on this channel (src/domain/links.rs): its text also fills a template.
    let link = match &message.body {
        ProviderMessageBody::Link { link } => {
            Some(links::render(link, ChannelKind::of(&channel.config)))
        }
        _ => None,
    };
    // Consent and WhatsApp's 24-hour window (src/domain/window.rs).
    let part = match (&message.body, &link) {
        (ProviderMessageBody::Text { text }, _) => Part::Text(text),
        (ProviderMessageBody::File { .. }, _) => Part::File,
        // Outside the window a rep's choices go out as the template, with their question.
        (ProviderMessageBody::Choices { choices }, _) => Part::Text(&choices.text),
        (ProviderMessageBody::Link { .. }, Some(rendered)) => Part::Text(&rendered.text),
        (ProviderMessageBody::Link { link }, None) => Part::Text(&link.url),
    };
    let decision = window::decide(
        &channel.config,
        context.consent.as_deref(),
        context.newest_inbound_at,
        relay.now(),
        part,
    );
    let mut audit = Vec::new();
    let mut prompt = None;
    let sent = match (decision, &message.body) {
        (
            Decision::Refuse {
                audit_kind,
                code,
                reason,
            },
            _,
        ) => {
            let failed = Job::IsaDeliveryFailed(IsaDeliveryFailed {
                entry_id: Uuid::new_v4(),
                from: context.end_user_client_id.clone(),
                failed_entry: Some(entry_id.clone()),
                code: code.to_owned(),
                message: Some(reason.clone()),
                timestamp: relay.now().timestamp_millis(),
            });
            return Ok(Delivered {
                follow_ups: vec![failed.follow_up(None)],
                detail: json!({ "refused": code, "reason": reason }),
                audit: vec![outbound_entry(
                    item,
                    audit_kind,
                    Severity::Warning,
                    format!("a rep message part was {reason}; Salesforce is told"),
                    json!({ "entry_id": entry_id, "part": message.part, "code": code }),
                )],
                ..Delivered::default()
            });
        }
        (
            Decision::Template {
                name,
                language,
                parameters,
            },
            _,
        ) => {
            let AnyProvider::EightByEight(provider) = &channel.provider else {
                return Err(failure(
                    "a template can only be sent through 8x8",
                    ErrorClass::Configuration,
                ));
            };
            let sent = provider
                .send_template(&to, &name, &language, &parameters, &reference)
                .await;
            if sent.is_ok() {
                audit.push(outbound_entry(
                    item,
                    "outbound.template_sent",
                    Severity::Info,
                    format!(
                        "WhatsApp's 24-hour window is closed: the rep's text was sent as the approved template `{name}` ({language})"
                    ),
                    json!({
                        "entry_id": entry_id,
                        "part": message.part,
                        "template": name,
                        "language": language,
                        "parameters": parameters.len(),
                    }),
                ));
            }
            sent
        }
        (Decision::Send, ProviderMessageBody::Text { text }) => {
            channel.provider.send_text(&to, text, &reference).await
        }
        (Decision::Send, ProviderMessageBody::File { attachment }) => {
            let media = rep_file(relay, item, channel, attachment).await?;
            channel
                .provider
                .send_media(&to, &media, None, &reference)
                .await
        }
        (Decision::Send, ProviderMessageBody::Link { .. }) => {
            let rendered = link.as_ref().expect("rendered above for a link");
            if !rendered.notes.is_empty() {
                audit.push(outbound_entry(
                    item,
                    "outbound.link_rendered",
                    Severity::Info,
                    format!(
                        "a rep's rich link went out {}: {}",
                        if rendered.native.is_some() {
                            "as a rich card"
                        } else {
                            "as text"
                        },
                        rendered.notes.join("; ")
                    ),
                    json!({ "entry_id": entry_id, "part": message.part, "notes": rendered.notes }),
                ));
            }
            match &rendered.native {
                Some(card) => channel.provider.send_rich(&to, card, &reference).await,
                None => {
                    channel
                        .provider
                        .send_text(&to, &rendered.text, &reference)
                        .await
                }
            }
        }
        (Decision::Send, ProviderMessageBody::Choices { choices: asked }) => {
            let rendered = choices::render(asked, ChannelKind::of(&channel.config));
            let sent = match &rendered.native {
                Some(native) => channel.provider.send_rich(&to, native, &reference).await,
                None => {
                    channel
                        .provider
                        .send_text(&to, &rendered.text, &reference)
                        .await
                }
            };
            prompt = Some((asked.message_id.clone(), rendered));
            sent
        }
    };
    match sent {
        Ok(sent) => {
            let mut detail = json!({
                "provider": channel.provider.name(),
                "provider_message_id": sent.provider_message_id,
            });
            let choices_sent = prompt.map(|(message_id, rendered)| {
                detail["choices_form"] = json!(rendered.form.as_str());
                if !rendered.notes.is_empty() {
                    detail["choices_notes"] = json!(rendered.notes);
                }
                ChoicePrompt {
                    salesforce_entry_id: entry_id.clone(),
                    message_id,
                    provider_message_id: Some(sent.provider_message_id.clone()),
                    form: rendered.form.as_str().to_owned(),
                    options: serde_json::to_value(&rendered.options).unwrap_or_default(),
                    created_at: relay.now(),
                    answered: false,
                }
            });
            Ok(Delivered {
                outbound_message: Some((sent.provider_message_id.clone(), entry_id)),
                choices_sent,
                detail,
                audit,
                ..Delivered::default()
            })
        }
        Err(e) if e.class == ProviderErrorClass::Permanent => {
            // The end user will never get it: tell the rep through Salesforce.
            audit_outbound(
                relay,
                item,
                "outbound.provider_refused",
                Severity::Warning,
                format!("the provider refused a rep message for good: {e}"),
            )
            .await;
            let failed = Job::IsaDeliveryFailed(IsaDeliveryFailed {
                entry_id: Uuid::new_v4(),
                from: context.end_user_client_id.clone(),
                failed_entry: Some(entry_id),
                code: e.code.clone().unwrap_or_else(|| "provider_refused".into()),
                message: e.message.clone(),
                timestamp: relay.now().timestamp_millis(),
            });
            Ok(Delivered {
                follow_ups: vec![failed.follow_up(None)],
                detail: json!({ "provider_refused": e.to_string() }),
                ..Delivered::default()
            })
        }
        Err(e) => Err(Failure::from(e)),
    }
}

/// Fetches a rep's file from Salesforce with the org's token, and makes it what the provider
/// sends ([`Provider::media_form`]): its bytes (8x8 uploads them), or a public URL byocd serves
/// it at (Kaleyra).
async fn rep_file(
    relay: &Relay,
    item: &OutboxItem,
    channel: &ChannelRuntime,
    attachment: &crate::salesforce::events::Attachment,
) -> Result<OutboundMedia, Failure> {
    let isa = relay
        .isa()
        .ok_or_else(|| failure("no Salesforce org is configured", ErrorClass::Configuration))?;
    let bytes = files::download(
        &relay.inner.media,
        isa.tokens(),
        &item.org_id,
        &attachment.url,
    )
    .await
    .map_err(Failure::from)?;
    match channel.provider.media_form() {
        MediaForm::Bytes => Ok(OutboundMedia::Bytes {
            bytes,
            mime_type: attachment.mime_type.clone(),
            file_name: attachment.name.clone(),
        }),
        MediaForm::Url => {
            let host = relay.inner.file_host.as_ref().ok_or_else(|| {
                failure(
                    format!(
                        "provider {} takes files by public URL and server.public_base_url is not configured",
                        channel.provider.name()
                    ),
                    ErrorClass::Configuration,
                )
            })?;
            let url = host
                .host(
                    &item.channel,
                    bytes,
                    &attachment.mime_type,
                    &attachment.name,
                )
                .await
                .map_err(|e| failure(e, ErrorClass::Retryable))?;
            Ok(OutboundMedia::Url {
                url,
                mime_type: attachment.mime_type.clone(),
                file_name: Some(attachment.name.clone()),
            })
        }
    }
}

/// An audit row about a rep message part, written with the row's completion.
fn outbound_entry(
    item: &OutboxItem,
    kind: &str,
    severity: Severity,
    message: String,
    mut detail: Value,
) -> AuditEntry {
    detail["outbox_id"] = item.id.into();
    let mut entry = AuditEntry::new(kind, message)
        .severity(severity)
        .org(&item.org_id)
        .channel(&item.channel)
        .detail(detail);
    if let Some(c) = item.conversation_id {
        entry = entry.conversation(c);
    }
    if let Some(s) = item.session_id {
        entry = entry.session(s);
    }
    entry
}

async fn audit_outbound(
    relay: &Relay,
    item: &OutboxItem,
    kind: &str,
    severity: Severity,
    message: String,
) {
    let mut entry = AuditEntry::new(kind, message)
        .severity(severity)
        .org(&item.org_id)
        .channel(&item.channel)
        .detail(json!({ "outbox_id": item.id }));
    if let Some(c) = item.conversation_id {
        entry = entry.conversation(c);
    }
    if let Some(s) = item.session_id {
        entry = entry.session(s);
    }
    if let Err(e) = relay.inner.store.append_audit(&entry).await {
        tracing::error!(error = %e, "could not write an audit row");
    }
}
