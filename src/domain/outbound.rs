//! Salesforce platform events → state and outbox rows: the rules of the outbound intake.
//!
//! The Pub/Sub subscriber only decodes events and hands them over: [`plan`] reads what each
//! calls for by its channel's settings ([`OutboundWork`]: provider jobs, a session status, a
//! record), and [`accept`] carries a batch out in one store transaction together with the
//! replay id — dedupe, end user, conversation, session, the jobs for the provider, the
//! session's status.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Writes, state::State};
use crate::{
    config::ChannelConfig,
    providers::E164,
    salesforce::events::{Entry, OutboundEvent},
    store::job::{
        Job, ProviderMessage, ProviderMessageBody, ProviderTyping, RoutingRequest,
        RoutingWorkResult,
    },
    store::{
        AnyStore, AuditEntry, EndUserIdentity, IntakeReport, OutboundBatch, OutboundIntake,
        OutboundWork, Result, Severity, Store,
        relay::{outbound_key, routing_key},
        tx::Tx,
    },
};

/// What a platform event calls for, by the settings of the channel it names (one of
/// `channels`, the channels of its topic); `at` is when it arrived.
pub fn plan(channels: &[ChannelConfig], event: OutboundEvent, at: DateTime<Utc>) -> OutboundIntake {
    let address = event.channel_address_identifier().to_owned();
    let channel = channels
        .iter()
        .find(|c| c.channel_address_identifier == address);
    let subject = event.end_user().to_owned();
    let end_user = match E164::parse(&subject) {
        Ok(number) => EndUserIdentity {
            key: subject.clone(),
            msisdn: Some(number.as_str().to_owned()),
            channel_user_id: None,
            display_name: None,
        },
        Err(_) => EndUserIdentity {
            key: subject.clone(),
            msisdn: None,
            // A WhatsApp BSUID, or whatever id the provider uses for users without a number.
            channel_user_id: Some(subject.clone()),
            display_name: None,
        },
    };
    match event {
        OutboundEvent::Interaction(e) => {
            let typing = channel.is_some_and(|c| c.features.typing);
            let work = match e.entry {
                Entry::Message { text, attachments } => {
                    let mut rows = Vec::new();
                    if let Some(text) = text.filter(|t| !t.is_empty()) {
                        rows.push(Job::ProviderMessage(ProviderMessage {
                            entry_id: e.identifier.clone(),
                            part: 0,
                            body: ProviderMessageBody::Text { text },
                        }));
                    }
                    for (part, attachment) in (1..).zip(attachments) {
                        rows.push(Job::ProviderMessage(ProviderMessage {
                            entry_id: e.identifier.clone(),
                            part,
                            body: ProviderMessageBody::File { attachment },
                        }));
                    }
                    OutboundWork::Outbox { jobs: rows }
                }
                Entry::Link(link) => OutboundWork::Outbox {
                    jobs: vec![Job::ProviderMessage(ProviderMessage {
                        entry_id: e.identifier.clone(),
                        part: 0,
                        body: ProviderMessageBody::Link { link },
                    })],
                },
                Entry::Choices(choices) => OutboundWork::Outbox {
                    jobs: vec![Job::ProviderMessage(ProviderMessage {
                        entry_id: e.identifier.clone(),
                        part: 0,
                        body: ProviderMessageBody::Choices { choices },
                    })],
                },
                Entry::TypingStarted if typing => OutboundWork::Outbox {
                    jobs: vec![Job::ProviderTyping(ProviderTyping { started: true })],
                },
                Entry::TypingStarted => OutboundWork::Record {
                    what: "rep typing not relayed: features.typing is off".into(),
                },
                Entry::TypingStopped => OutboundWork::Record {
                    what: "rep stopped typing (providers clear the indicator by themselves)".into(),
                },
                Entry::SessionStatusChanged {
                    session_id,
                    status,
                    ended_by,
                } => OutboundWork::SessionStatus {
                    status,
                    work_item_id: session_id.filter(|s| s.len() == 15),
                    ended_by,
                },
                Entry::RoutingWorkResult { work_id, work_type } => OutboundWork::Outbox {
                    jobs: vec![Job::RoutingWorkResult(RoutingWorkResult {
                        work_id,
                        work_type,
                        conversation_identifier: e.conversation_identifier.clone(),
                    })],
                },
                Entry::Participants {
                    changes,
                    conferenced,
                } => OutboundWork::Participants {
                    changes,
                    conferenced,
                },
                Entry::ConsentUpdated {
                    status,
                    end_user_initiated,
                } if matches!(status.as_str(), "OptIn" | "OptOut") => OutboundWork::Consent {
                    status,
                    end_user_initiated,
                },
                Entry::ConsentUpdated { status, .. } => OutboundWork::Record {
                    what: format!(
                        "EndUserConsentUpdated with consentStatus `{status}` (neither OptIn nor OptOut) recorded; consent unchanged"
                    ),
                },
                Entry::MessageUpdated {
                    message_id,
                    upload,
                    attachments,
                    text,
                } => message_updated(message_id, upload, attachments, text),
                Entry::Other => OutboundWork::Record {
                    what: format!("{} from Salesforce recorded", e.entry_type),
                },
            };
            OutboundIntake {
                channel: channel.map(|c| c.name.clone()),
                channel_address: address,
                event_key: e.identifier,
                end_user,
                conversation_identifier: e.conversation_identifier,
                at,
                work,
            }
        }
        OutboundEvent::RoutingRequested(r) => {
            let event_id = r.payload["routingParameters"]["channelData"]
                .as_str()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d["eventId"].as_str().map(str::to_owned))
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let partner_routed = channel.is_some_and(|c| c.routing.is_some());
            let work_item = r.payload["workRecordId"].as_str().map(str::to_owned);
            let work = match (&r.conversation_identifier, work_item) {
                (Some(conversation), Some(work_item)) if partner_routed => {
                    // Salesforce allows 60 s from the request; keep a margin for the clock
                    // and the network.
                    let deadline = at
                        + chrono::Duration::from_std(crate::routing::ROUTING_DEADLINE)
                            .unwrap_or_default()
                        - chrono::Duration::seconds(2);
                    // The parameters as Salesforce sent them (`None` when absent).
                    let params =
                        serde_json::from_value(r.payload["routingParameters"].clone()).ok();
                    OutboundWork::Outbox {
                        jobs: vec![Job::RoutingRequest(RoutingRequest {
                            routing_type: r.routing_type.clone(),
                            conversation_identifier: conversation.clone(),
                            work_item_id: work_item,
                            params,
                            correlation_id: Some(event_id.clone()),
                            deadline_ms: Some(deadline.timestamp_millis()),
                        })],
                    }
                }
                _ => OutboundWork::Record {
                    what: format!(
                        "{} routing request recorded (channel not partner-routed, or no work record)",
                        r.routing_type
                    ),
                },
            };
            OutboundIntake {
                channel: channel.map(|c| c.name.clone()),
                channel_address: address,
                event_key: format!("routing:{event_id}"),
                end_user,
                conversation_identifier: r.conversation_identifier,
                at,
                work,
            }
        }
    }
}
/// A `MessageUpdated`. With an `attachmentUploadResult` it reports the upload of an end
/// user's file to Salesforce (Salesforce documents it as the result of an asynchronous inbound
/// upload): nothing for the end user, recorded with the result. Without one, a rep message's
/// attachments at URLs are relayed (one `provider.message` row per file, the updated message's
/// id with `#1001`, `#1002`… as its reference); a changed text cannot be shown (neither 8x8 nor
/// Kaleyra edits a sent message) and is recorded with that reason.
fn message_updated(
    message_id: Option<String>,
    upload: Option<(String, Option<String>)>,
    attachments: Vec<crate::salesforce::events::Attachment>,
    text: Option<String>,
) -> OutboundWork {
    let reason = match upload {
        Some((kind, Some(error))) => format!(
            "the end user's file upload to Salesforce ended as {kind} ({error}); nothing to send to the end user"
        ),
        Some((kind, None)) => format!(
            "the end user's file upload to Salesforce is {kind}; nothing to send to the end user"
        ),
        None if !attachments.is_empty() => {
            let entry_id = message_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let jobs = (1..)
                .zip(attachments)
                .map(|(part, attachment)| {
                    Job::ProviderMessage(ProviderMessage {
                        entry_id: entry_id.clone(),
                        // An update's parts count from 1001, apart from the message's own.
                        part: 1000 + part,
                        body: ProviderMessageBody::File { attachment },
                    })
                })
                .collect();
            return OutboundWork::Outbox { jobs };
        }
        None if text.is_some() => {
            "a rep message's text was changed at Salesforce; neither 8x8 nor Kaleyra can change a message already sent".into()
        }
        None => "nothing in the updated message can be shown to the end user".into(),
    };
    OutboundWork::Record {
        what: format!("MessageUpdated not relayed: {reason}"),
    }
}

/// Commits platform events and their replay id in one transaction: each event not seen before
/// is carried out, then the cursor moves to `batch.replay_id`. Only after this may the
/// subscriber ask for more.
/// Done again (up to three times in all) when a concurrent transaction created the same end user
/// or conversation first ([`StoreError::Raced`](crate::store::StoreError::Raced)).
pub async fn accept(store: &AnyStore, batch: &OutboundBatch) -> Result<IntakeReport> {
    let mut attempt = 1;
    loop {
        let mut tx = store.transaction().await?;
        match take_in(&mut tx, batch).await {
            Ok(report) => {
                tx.commit().await?;
                return Ok(report);
            }
            Err(crate::store::StoreError::Raced(_)) if attempt < 3 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Takes a batch of platform events in inside `tx`, with its replay id.
pub async fn take_in(tx: &mut Tx, batch: &OutboundBatch) -> Result<IntakeReport> {
    let now = tx.now();
    let keys: Vec<(String, String)> = batch
        .events
        .iter()
        .filter_map(|e| {
            e.channel
                .as_ref()
                .map(|c| (c.clone(), format!("sf:{}", e.event_key)))
        })
        .collect();
    let fresh = tx.first_sights(&keys).await?;
    // Every end user the new events name, read at once.
    let mut is_new = fresh.iter();
    let probes: Vec<(&str, &EndUserIdentity)> = batch
        .events
        .iter()
        .filter_map(|e| e.channel.as_deref().map(|c| (c, &e.end_user)))
        .filter(|_| *is_new.next().unwrap_or(&false))
        .collect();
    let mut state = State::load(tx, probes).await?;
    let mut fresh = fresh.into_iter();
    let mut writes = Writes::default();
    let mut report = IntakeReport::default();
    for event in &batch.events {
        let Some(channel) = &event.channel else {
            writes.audit(
                AuditEntry::new(
                    "outbound.unknown_channel",
                    format!(
                        "event for channel address {} skipped: no channel with that address is configured",
                        event.channel_address
                    ),
                )
                .severity(Severity::Warning)
                .actor("salesforce")
                .org(&batch.org_id)
                .detail(json!({
                    "channel_address_identifier": event.channel_address,
                    "event_key": event.event_key,
                })),
            );
            continue;
        };
        if !fresh.next().unwrap_or(false) {
            report.duplicates += 1;
            continue;
        }
        report.new += 1;
        report.outbox_rows +=
            take_event(tx, &mut state, &mut writes, batch, channel, event).await?;
    }
    tx.save_cursor(&batch.org_id, &batch.topic, &batch.replay_id, Some(now))
        .await?;
    // Sessions' activity last: see `State::flush_records`.
    state.flush_records(tx).await?;
    writes.flush(tx).await?;
    state.flush(tx).await?;
    Ok(report)
}

/// One new platform event; returns the number of outbox rows it writes.
async fn take_event(
    tx: &mut Tx,
    st: &mut State,
    w: &mut Writes,
    batch: &OutboundBatch,
    channel: &str,
    event: &OutboundIntake,
) -> Result<usize> {
    let now = tx.now();
    let (end_user, _) = st.end_user(channel, &event.end_user, now);
    let had_session = st.open_session_of(channel, end_user).is_some();
    let conversation = st.conversation(channel, end_user);
    let session = st.open_session(conversation, event.at.max(now), None, now)?;
    if let Some(identifier) = &event.conversation_identifier {
        st.set_conversation_identifier(conversation, identifier)?;
    }
    let audit = |kind: &str, message: String, detail: serde_json::Value| {
        AuditEntry::new(kind, message)
            .actor("salesforce")
            .org(&batch.org_id)
            .channel(channel)
            .conversation(conversation)
            .session(session)
            .detail(detail)
    };
    match &event.work {
        OutboundWork::Outbox { jobs } => {
            let mut rows = Vec::new();
            for job in jobs {
                // Routing work has a key of its own, so a transfer never waits behind messages.
                let key = if job.is_routing() {
                    routing_key(conversation)
                } else {
                    outbound_key(conversation)
                };
                rows.push(w.outbox(
                    &batch.org_id,
                    channel,
                    key,
                    Some(conversation),
                    Some(session),
                    job.clone(),
                    now,
                ));
            }
            if !had_session && jobs.iter().any(|j| matches!(j, Job::ProviderMessage(_))) {
                w.audit(audit(
                    "outbound.proactive",
                    "rep-initiated conversation: the rep's message opens a new session with the \
                     end user and goes out as a business-initiated message"
                        .into(),
                    json!({ "event_key": event.event_key }),
                ));
            }
            let kinds: Vec<&str> = jobs.iter().map(Job::kind).collect();
            let entry = audit(
                "outbound.accepted",
                format!("{} from Salesforce accepted", kinds.join(", ")),
                json!({ "event_key": event.event_key, "outbox_ids": [] }),
            );
            w.audit_listing(entry, "outbox_ids", rows);
            Ok(jobs.len())
        }
        OutboundWork::SessionStatus {
            status,
            work_item_id,
            ended_by,
        } => {
            let local = match status.as_str() {
                "Ended" => Some("ended"),
                "Inactive" => Some("inactive"),
                "Active" => Some("active"),
                _ => None,
            };
            if let Some(local) = local {
                let by = match ended_by.as_deref() {
                    Some("EndUser") => "EndUser",
                    Some("Agent") | Some("Supervisor") => "Agent",
                    _ => "Salesforce",
                };
                st.flush(tx).await?;
                tx.set_session_status(session, local, by, work_item_id.as_deref())
                    .await?;
                if local == "ended" {
                    st.session_ended(conversation, session);
                }
            }
            w.audit(audit(
                "session.status_changed",
                format!("Salesforce reports the session {status}"),
                json!({
                    "event_key": event.event_key,
                    "status": status,
                    "work_item_id": work_item_id,
                    "ended_by": ended_by,
                }),
            ));
            Ok(0)
        }
        OutboundWork::Consent {
            status,
            end_user_initiated,
        } => {
            st.flush(tx).await?;
            tx.set_end_user_consent(end_user, status).await?;
            let message = if status == "OptOut" {
                "Salesforce reports the end user opted out: no rep message is sent to them until they opt in"
            } else {
                "Salesforce reports the end user opted in: rep messages are sent again (WhatsApp's 24-hour window still applies)"
            };
            w.audit(
                audit(
                    "end_user.consent_updated",
                    message.into(),
                    json!({
                        "event_key": event.event_key,
                        "end_user_id": end_user,
                        "consent": status,
                        "end_user_initiated": end_user_initiated,
                    }),
                )
                .severity(if status == "OptOut" {
                    Severity::Warning
                } else {
                    Severity::Info
                }),
            );
            Ok(0)
        }
        OutboundWork::Participants {
            changes,
            conferenced,
        } => {
            st.flush(tx).await?;
            let stored = tx.session_participants(session).await?;
            let (participants, applied) = super::participants::apply(stored, changes, now);
            tx.set_session_participants(session, &participants).await?;
            w.audit(audit(
                if *conferenced {
                    "session.participants_conferenced"
                } else {
                    "session.participants_changed"
                },
                format!(
                    "{} participant change(s) from Salesforce; {} in the session now",
                    applied.len(),
                    participants.as_array().map_or(0, Vec::len)
                ),
                json!({
                    "event_key": event.event_key,
                    "changes": applied,
                    "participants": participants,
                }),
            ));
            Ok(0)
        }
        OutboundWork::Record { what } => {
            w.audit(audit(
                "outbound.recorded",
                what.clone(),
                json!({ "event_key": event.event_key }),
            ));
            Ok(0)
        }
    }
}
