//! Provider webhooks → state and outbox rows: the rules of the inbound intake.
//!
//! [`plan`] reads what each parsed webhook event calls for by its channel's settings
//! ([`IntakeWork`]); [`take_in`] carries that out in a store transaction — dedupe, end user,
//! conversation, session, the jobs for Salesforce, receipts coalescing, typing-stopped timers,
//! opt-out — for a whole group of webhooks at once ([`accept_group`]: one transaction, one
//! statement per table for the rows it writes).

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{RowRef, Unfinished, Writes, privacy, state::State};
use crate::{
    config::{ChannelConfig, ConsentOwner, RoutingOwner},
    providers::{DeliveryStatus, EndUser, InboundContent, InboundEvent},
    salesforce::{
        isa::MAX_ACKNOWLEDGEMENTS,
        types::{AcknowledgementType, ConsentStatus, SessionOperation, SessionOperationBy},
    },
    store::job::{
        Acknowledged, IsaAcknowledgement, IsaConsent, IsaDeliveryFailed, IsaMessage,
        IsaSessionOperation, IsaTyping, Job,
    },
    store::{
        AnyStore, AuditEntry, EndUserIdentity, IntakeBatch, IntakeEvent, IntakeReport, IntakeWork,
        Result, Severity, Store, StoreError,
        relay::{inbound_key, kind},
        tx::{MessageMapRow, Tx},
    },
};

/// Maps a webhook's events to the work they call for, by the channel's settings; `now` is when
/// the webhook arrived (typing stops `features.typing_quiet_time` after it).
pub fn plan(channel: &ChannelConfig, events: Vec<InboundEvent>, now: DateTime<Utc>) -> IntakeBatch {
    let events = events
        .into_iter()
        .map(|event| {
            let event_key = event.event_key().to_owned();
            match event {
                InboundEvent::Message(m) => IntakeEvent {
                    event_key,
                    user: Some(identity(&m.user)),
                    at: m.received_at,
                    work: {
                        let entry_id = uuid::Uuid::new_v4();
                        let opt_out = match &m.content {
                            InboundContent::Text { text } => channel
                                .session
                                .opt_out_keyword(text)
                                .map(|k| format!("keyword {k}")),
                            _ => None,
                        };
                        IntakeWork::Message {
                            opt_out,
                            provider_message_id: m.provider_message_id,
                            entry_id,
                            content: m.content,
                            reply_to: m.reply_to,
                        }
                    },
                },
                InboundEvent::Typing(t) if channel.features.typing => IntakeEvent {
                    event_key,
                    user: Some(identity(&t.user)),
                    at: t.at,
                    work: IntakeWork::Typing {
                        stop_at: now
                            + chrono::Duration::from_std(channel.features.typing_quiet_time)
                                .unwrap_or_default(),
                    },
                },
                InboundEvent::Typing(t) => IntakeEvent {
                    event_key,
                    user: Some(identity(&t.user)),
                    at: t.at,
                    work: IntakeWork::RecordOnly {
                        what: "end user typing not relayed: features.typing is off".into(),
                    },
                },
                InboundEvent::Receipt(r) if channel.features.receipts => {
                    let acknowledgement = match r.status {
                        DeliveryStatus::Delivered => Some("Delivered".to_owned()),
                        DeliveryStatus::Read => Some("Read".to_owned()),
                        _ => None,
                    };
                    let failure = r.status.is_failure().then(|| match &r.error {
                        Some(e) => (e.code.clone(), e.message.clone()),
                        None => (status_name(r.status).to_owned(), None),
                    });
                    IntakeEvent {
                        event_key,
                        user: r.user.as_ref().map(identity),
                        at: r.at,
                        work: IntakeWork::Receipt {
                            provider_message_id: r.provider_message_id,
                            acknowledgement,
                            failure,
                            status: status_name(r.status).to_owned(),
                        },
                    }
                }
                InboundEvent::Receipt(r) => IntakeEvent {
                    event_key,
                    user: r.user.as_ref().map(identity),
                    at: r.at,
                    work: IntakeWork::RecordOnly {
                        what: format!(
                            "{} receipt for {} not relayed: features.receipts is off",
                            status_name(r.status),
                            r.provider_message_id
                        ),
                    },
                },
                InboundEvent::Subscription(s) if !s.subscribed => IntakeEvent {
                    event_key,
                    user: Some(identity(&s.user)),
                    at: s.at,
                    work: IntakeWork::OptOut {
                        via: "UNSUBSCRIBE".into(),
                    },
                },
                InboundEvent::Subscription(s) => IntakeEvent {
                    event_key,
                    user: Some(identity(&s.user)),
                    at: s.at,
                    work: IntakeWork::RecordOnly {
                        what: if s.subscribed {
                            "the end user subscribed".into()
                        } else {
                            "the end user unsubscribed".into()
                        },
                    },
                },
                InboundEvent::Recorded(r) => IntakeEvent {
                    event_key,
                    user: r.user.as_ref().map(identity),
                    at: r.at,
                    work: IntakeWork::RecordOnly {
                        what: format!("{} recorded", r.kind),
                    },
                },
            }
        })
        .collect();
    IntakeBatch {
        channel: channel.name.clone(),
        org_id: channel.org_id.as_str().to_owned(),
        events,
        end_sessions_in_salesforce: channel.routing_owner == RoutingOwner::Partner,
        partner_consent: channel.consent_owner == ConsentOwner::Partner,
        stale_before: None,
    }
}

fn identity(user: &EndUser) -> EndUserIdentity {
    EndUserIdentity {
        // Providers never emit an end user without a number or a user id.
        key: user.salesforce_key().unwrap_or_default(),
        msisdn: user.msisdn.as_ref().map(|m| m.as_str().to_owned()),
        channel_user_id: user.channel_user_id.clone(),
        display_name: user.display_name.clone(),
    }
}

fn status_name(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Queued => "queued",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Read => "read",
        DeliveryStatus::Undelivered => "undelivered",
        DeliveryStatus::Rejected => "rejected",
        DeliveryStatus::Expired => "expired",
        DeliveryStatus::Failed => "failed",
    }
}

/// Commits one webhook's events in a transaction of its own; done again (up to three times in
/// all) when a concurrent transaction created the same end user or conversation first
/// ([`StoreError::Raced`]: the next attempt finds it).
pub async fn accept(store: &AnyStore, batch: &IntakeBatch) -> Result<IntakeReport> {
    let mut attempt = 1;
    loop {
        match accept_group(store, std::slice::from_ref(batch)).await {
            Ok(mut reports) => return Ok(reports.pop().unwrap_or_default()),
            Err(StoreError::Raced(_)) if attempt < 3 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Group commit: several webhooks in **one** transaction, in order, one report each. All or
/// nothing: on an error nothing is written (the caller commits them one by one, so one bad
/// webhook fails only itself). Only after this returns may the webhooks be acknowledged.
pub async fn accept_group(store: &AnyStore, batches: &[IntakeBatch]) -> Result<Vec<IntakeReport>> {
    let mut tx = store.transaction().await?;
    let reports = take_in(&mut tx, batches).await?;
    tx.commit().await?;
    Ok(reports)
}

/// Takes webhooks' events in inside `tx`: each event seen for the first time (by channel and
/// event key) is carried out; one report per webhook.
pub async fn take_in(tx: &mut Tx, batches: &[IntakeBatch]) -> Result<Vec<IntakeReport>> {
    // Events older than the dedupe retention are refused before their keys are looked at.
    let stale: Vec<Vec<bool>> = batches
        .iter()
        .map(|b| {
            b.events
                .iter()
                .map(|e| privacy::is_stale(e.at, b.stale_before))
                .collect()
        })
        .collect();
    let keys: Vec<(String, String)> = batches
        .iter()
        .zip(&stale)
        .flat_map(|(b, stale)| {
            b.events
                .iter()
                .zip(stale)
                .filter(|(_, stale)| !**stale)
                .map(|(e, _)| (b.channel.clone(), e.event_key.clone()))
        })
        .collect();
    let fresh = tx.first_sights(&keys).await?;
    // Every end user the new events name, read at once.
    let mut probes: Vec<(&str, &EndUserIdentity)> = Vec::new();
    let mut is_new = fresh.iter();
    for (batch, stale) in batches.iter().zip(&stale) {
        for (event, _) in batch.events.iter().zip(stale).filter(|(_, s)| !**s) {
            if *is_new.next().unwrap_or(&false)
                && names_end_user(&event.work)
                && let Some(user) = &event.user
            {
                probes.push((batch.channel.as_str(), user));
            }
        }
    }
    let mut state = State::load(tx, probes).await?;
    let mut fresh = fresh.into_iter();
    let mut writes = Writes::default();
    let mut reports = Vec::with_capacity(batches.len());
    for (batch, stale) in batches.iter().zip(&stale) {
        let mut report = IntakeReport::default();
        for (event, is_stale) in batch.events.iter().zip(stale) {
            if *is_stale {
                report.duplicates += 1;
                report.stale += 1;
                writes.audit(stale_entry(batch, event));
                continue;
            }
            if !fresh.next().unwrap_or(false) {
                report.duplicates += 1;
                continue;
            }
            report.new += 1;
            report.outbox_rows += take_event(tx, &mut state, &mut writes, batch, event).await?;
        }
        reports.push(report);
    }
    // Sessions' activity last: see `State::flush_records`.
    state.flush_records(tx).await?;
    writes.flush(tx).await?;
    state.flush(tx).await?;
    Ok(reports)
}

/// The audit row of an event refused as older than the dedupe retention: its key and times,
/// nothing of the end user.
fn stale_entry(batch: &IntakeBatch, event: &IntakeEvent) -> AuditEntry {
    AuditEntry::new(
        "inbound.stale",
        "event older than the dedupe retention refused (a replay could not be recognised)",
    )
    .severity(Severity::Warning)
    .actor("provider")
    .org(&batch.org_id)
    .channel(&batch.channel)
    .detail(json!({
        "event_key": event.event_key,
        "event_at": event.at.to_rfc3339(),
        "stale_before": batch.stale_before.map(|t| t.to_rfc3339()),
    }))
}

/// Whether the event's rules find or create its end user (receipts find the conversation by the
/// message id instead; what is only recorded touches no state).
fn names_end_user(work: &IntakeWork) -> bool {
    matches!(
        work,
        IntakeWork::Message { .. } | IntakeWork::OptOut { .. } | IntakeWork::Typing { .. }
    )
}

/// One new event; returns the number of outbox rows it writes.
async fn take_event(
    tx: &mut Tx,
    st: &mut State,
    w: &mut Writes,
    batch: &IntakeBatch,
    event: &IntakeEvent,
) -> Result<usize> {
    let now = tx.now();
    let channel = batch.channel.as_str();
    let user = |what: &str| {
        event
            .user
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt(format!("{what} without an end user")))
    };
    match &event.work {
        IntakeWork::Message {
            provider_message_id,
            entry_id,
            content,
            reply_to,
            opt_out,
        } => {
            let (end_user, from) = st.end_user(channel, user("a message")?, now);
            let conversation = st.conversation(channel, end_user);
            let session = st.open_session(
                conversation,
                event.at.max(now),
                Some((event.at, provider_message_id)),
                now,
            )?;
            let key = inbound_key(conversation);
            // A typing-stopped still waiting goes out before this message.
            w.make_due_now(now, &key, kind::ISA_TYPING_STOPPED);
            let job = Job::IsaMessage(IsaMessage {
                from: from.clone(),
                entry_id: *entry_id,
                timestamp: event.at.timestamp_millis(),
                content: content.clone(),
                reply_to: reply_to.clone(),
            });
            let row = w.outbox(
                &batch.org_id,
                channel,
                key,
                Some(conversation),
                Some(session),
                job,
                now,
            );
            w.message_map(MessageMapRow {
                channel: channel.to_owned(),
                provider_message_id: provider_message_id.clone(),
                salesforce_entry_id: entry_id.to_string(),
                conversation_id: conversation,
                direction: "inbound",
            });
            let entry = AuditEntry::new(
                "inbound.message",
                format!("message {provider_message_id} from the end user accepted"),
            )
            .actor("provider")
            .org(&batch.org_id)
            .channel(channel)
            .conversation(conversation)
            .session(session)
            .detail(json!({
                "event_key": event.event_key,
                "provider_message_id": provider_message_id,
                "entry_id": entry_id,
                "outbox_id": null,
                "content": serde_json::to_value(content).ok().and_then(|c| c.get("kind").cloned()),
            }));
            w.audit_naming(entry, "outbox_id", Some(row));
            let mut rows = 1;
            if let Some(via) = opt_out {
                rows += opt_out_end_user(
                    tx,
                    st,
                    w,
                    batch,
                    end_user,
                    &from,
                    Some((conversation, session)),
                    via,
                )
                .await?;
            }
            Ok(rows)
        }
        IntakeWork::OptOut { via } => {
            let (end_user, from) = st.end_user(channel, user("an opt-out")?, now);
            let open = st.open_session_of(channel, end_user);
            opt_out_end_user(tx, st, w, batch, end_user, &from, open, via).await
        }
        IntakeWork::Typing { stop_at } => {
            let (end_user, from) = st.end_user(channel, user("typing")?, now);
            let conversation = st.conversation(channel, end_user);
            let session = st.open_session(conversation, event.at.max(now), None, now)?;
            let key = inbound_key(conversation);
            let pending = w
                .newest_pending_of_kind(tx, &key, kind::ISA_TYPING_STOPPED)
                .await?;
            let rows = if let Some(row) = pending {
                // Still typing: the stop waits longer; no second start.
                w.postpone(tx, row, *stop_at).await?;
                0
            } else {
                let typing = || IsaTyping {
                    from: from.clone(),
                    entry_id: Uuid::new_v4(),
                    timestamp: event.at.timestamp_millis(),
                };
                for (job, due) in [
                    (Job::IsaTypingStarted(typing()), now),
                    (Job::IsaTypingStopped(typing()), *stop_at),
                ] {
                    w.outbox(
                        &batch.org_id,
                        channel,
                        key.clone(),
                        Some(conversation),
                        Some(session),
                        job,
                        due,
                    );
                }
                2
            };
            w.audit(
                AuditEntry::new("inbound.typing", "the end user is typing")
                    .actor("provider")
                    .org(&batch.org_id)
                    .channel(channel)
                    .conversation(conversation)
                    .session(session)
                    .detail(json!({
                        "event_key": event.event_key,
                        "stop_at": stop_at.to_rfc3339(),
                    })),
            );
            Ok(rows)
        }
        IntakeWork::Receipt {
            provider_message_id,
            acknowledgement,
            failure,
            status,
        } => {
            // The receipt's conversation is read from the database, with what this group
            // changed so far.
            st.flush(tx).await?;
            let Some((entry_id, conversation)) = tx
                .mapped_message(channel, provider_message_id, "outbound")
                .await?
            else {
                w.audit(
                    AuditEntry::new(
                        "inbound.receipt_unmatched",
                        format!(
                            "{status} receipt for message {provider_message_id}, which byocd did not send; ignored"
                        ),
                    )
                    .severity(Severity::Warning)
                    .actor("provider")
                    .org(&batch.org_id)
                    .channel(channel)
                    .detail(json!({
                        "event_key": event.event_key,
                        "provider_message_id": provider_message_id,
                        "status": status,
                    })),
                );
                return Ok(0);
            };
            let from = tx.end_user_key_of(conversation).await?;
            let session = tx.newest_session(conversation).await?;
            let key = inbound_key(conversation);
            let mut rows = 0;
            let mut outbox_row = None;
            if let Some(ack) = acknowledgement {
                let item = Acknowledged {
                    kind: if ack == "Read" {
                        AcknowledgementType::Read
                    } else {
                        AcknowledgementType::Delivered
                    },
                    entry: entry_id.clone(),
                    created: Uuid::new_v4(),
                    timestamp: event.at.timestamp_millis(),
                };
                let merged = coalesce(tx, w, &key, &item).await?;
                outbox_row = merged;
                if merged.is_none() {
                    let job = Job::IsaAcknowledgement(IsaAcknowledgement {
                        from: from.clone(),
                        acknowledgements: vec![item],
                    });
                    outbox_row = Some(w.outbox(
                        &batch.org_id,
                        channel,
                        key.clone(),
                        Some(conversation),
                        session,
                        job,
                        now,
                    ));
                    rows += 1;
                }
            }
            if let Some((code, message)) = failure {
                let job = Job::IsaDeliveryFailed(IsaDeliveryFailed {
                    from: from.clone(),
                    entry_id: Uuid::new_v4(),
                    failed_entry: Some(entry_id.clone()),
                    code: code.clone(),
                    message: message.clone(),
                    timestamp: event.at.timestamp_millis(),
                });
                outbox_row = Some(w.outbox(
                    &batch.org_id,
                    channel,
                    key.clone(),
                    Some(conversation),
                    session,
                    job,
                    now,
                ));
                rows += 1;
            }
            let mut entry = AuditEntry::new(
                "inbound.receipt",
                format!("{status} receipt for rep message {entry_id}"),
            )
            .severity(if failure.is_some() {
                Severity::Warning
            } else {
                Severity::Info
            })
            .actor("provider")
            .org(&batch.org_id)
            .channel(channel)
            .conversation(conversation)
            .detail(json!({
                "event_key": event.event_key,
                "provider_message_id": provider_message_id,
                "entry_id": entry_id,
                "status": status,
                "failure": failure.as_ref().map(|(code, message)| json!({"code": code, "message": message})),
                "outbox_id": null,
            }));
            if let Some(session) = session {
                entry = entry.session(session);
            }
            w.audit_naming(entry, "outbox_id", outbox_row);
            Ok(rows)
        }
        IntakeWork::RecordOnly { what } => {
            w.audit(
                AuditEntry::new("inbound.recorded", what.clone())
                    .actor("provider")
                    .org(&batch.org_id)
                    .channel(channel)
                    // Never the end user's number or id: audit rows are append-only and must
                    // hold no personal data (docs/security.md).
                    .detail(json!({
                        "event_key": event.event_key,
                    })),
            );
            Ok(0)
        }
    }
}

/// Adds a receipt to the conversation's last row when that is a pending acknowledgement with
/// room left (at most [`MAX_ACKNOWLEDGEMENTS`]); the row it joined, if it did.
async fn coalesce(
    tx: &mut Tx,
    w: &mut Writes,
    key: &str,
    item: &Acknowledged,
) -> Result<Option<RowRef>> {
    match w.newest_unfinished(tx, key).await? {
        Some(Unfinished::New(index)) => match w.job_mut(index) {
            Job::IsaAcknowledgement(ack) if ack.acknowledgements.len() < MAX_ACKNOWLEDGEMENTS => {
                ack.acknowledgements.push(item.clone());
                Ok(Some(RowRef::New(index)))
            }
            _ => Ok(None),
        },
        Some(Unfinished::Stored(row))
            if row.kind == kind::ISA_ACKNOWLEDGEMENT && row.status == "pending" =>
        {
            let mut payload = row.payload;
            let Some(list) = payload
                .get_mut("acknowledgements")
                .and_then(|a| a.as_array_mut())
                .filter(|list| list.len() < MAX_ACKNOWLEDGEMENTS)
            else {
                return Ok(None);
            };
            list.push(serde_json::to_value(item).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            if tx.set_pending_payload(row.id, &payload).await? {
                Ok(Some(RowRef::Stored(row.id)))
            } else {
                Ok(None)
            }
        }
        _ => Ok(None),
    }
}

/// The end user opted out: ends `open` (conversation, session) with `ended_by: EndUser`, tells
/// Salesforce on partner-routed channels, and records the opt-out as consent where byocd owns
/// it. Returns the outbox rows written.
#[allow(clippy::too_many_arguments)]
async fn opt_out_end_user(
    tx: &mut Tx,
    st: &mut State,
    w: &mut Writes,
    batch: &IntakeBatch,
    end_user: Uuid,
    from: &str,
    open: Option<(Uuid, Uuid)>,
    via: &str,
) -> Result<usize> {
    let now = tx.now();
    let channel = batch.channel.as_str();
    let mut rows = 0;
    let mut outbox_rows = Vec::new();
    let conversation = match open {
        Some((conversation, session)) => {
            st.flush(tx).await?;
            let ended = tx.end_session(session, "EndUser", "opt_out").await?;
            st.session_ended(conversation, session);
            if let Some(work_item) = ended {
                if batch.end_sessions_in_salesforce {
                    // The work item may not be known yet (the keyword opened the session): the
                    // relay reads it when the row goes out, after the conversation's earlier
                    // rows.
                    let job = Job::IsaSessionOperation(IsaSessionOperation {
                        from: from.to_owned(),
                        operation: SessionOperation::End,
                        operation_by: SessionOperationBy::EndUser,
                        work_item_id: work_item.clone(),
                    });
                    outbox_rows.push(w.outbox(
                        &batch.org_id,
                        channel,
                        inbound_key(conversation),
                        Some(conversation),
                        Some(session),
                        job,
                        now,
                    ));
                    rows += 1;
                }
                w.audit(
                    AuditEntry::new(
                        "session.ended",
                        format!("session ended by the end user ({via})"),
                    )
                    .actor("provider")
                    .org(&batch.org_id)
                    .channel(channel)
                    .conversation(conversation)
                    .session(session)
                    .detail(json!({
                        "operation": "End",
                        "operation_by": "EndUser",
                        "via": via,
                        "work_item_id": work_item,
                    })),
                );
            }
            Some(conversation)
        }
        None => st.find_conversation(channel, end_user),
    };
    if batch.partner_consent {
        let key = match conversation {
            Some(c) => inbound_key(c),
            None => format!("consent:{channel}:{from}"),
        };
        let job = Job::IsaConsent(IsaConsent {
            from: from.to_owned(),
            consent_status: ConsentStatus::OptedOut,
        });
        outbox_rows.push(w.outbox(&batch.org_id, channel, key, conversation, None, job, now));
        rows += 1;
    }
    let entry = AuditEntry::new(
        "end_user.opted_out",
        format!("the end user opted out ({via})"),
    )
    .actor("provider")
    .org(&batch.org_id)
    .channel(channel)
    .detail(json!({
        "via": via,
        "end_user_id": end_user,
        "session_ended": open.is_some(),
        "outbox_ids": [],
        "consent_reported": batch.partner_consent,
    }));
    w.audit_listing(entry, "outbox_ids", outbox_rows);
    Ok(rows)
}
