//! The inbound intake: a webhook's parsed events become state and outbox rows, committed with
//! whatever other webhooks are waiting ([`group_commit`](super::group_commit)); only after that
//! commit is the webhook answered, and the relay workers are woken.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use tokio::sync::Notify;

use super::group_commit::{GroupCommit, IntakeWrites};
use crate::{
    clock::SharedClock,
    config::{ChannelConfig, ConsentOwner, RoutingOwner},
    http::{Accepted, ChannelRuntime, InboundSink, SinkError, SinkFuture},
    providers::{DeliveryStatus, EndUser, InboundContent, InboundEvent},
    store::{AnyStore, EndUserIdentity, IntakeBatch, IntakeEvent, IntakeWork, Store},
};

/// The durable inbound sink.
#[derive(Debug, Clone)]
pub struct Intake {
    store: AnyStore,
    clock: SharedClock,
    wake: Arc<Notify>,
    group: Option<GroupCommit<IntakeWrites>>,
}

impl Intake {
    /// An intake writing to `store`, each webhook in its own transaction, waking `wake` after
    /// each commit.
    pub fn new(store: AnyStore, clock: SharedClock, wake: Arc<Notify>) -> Self {
        Self {
            store,
            clock,
            wake,
            group: None,
        }
    }

    /// Commits webhooks in groups of at most `max_group` ([`GroupCommit`]) with `writers`
    /// writers; a webhook that waits `wait` for room in the queue is refused as busy.
    pub fn with_group_commit(mut self, max_group: usize, writers: usize, wait: Duration) -> Self {
        let writes = IntakeWrites {
            store: self.store.clone(),
            wake: self.wake.clone(),
        };
        self.group = Some(GroupCommit::start(writes, max_group, writers, wait));
        self
    }

    /// Maps events to the work they call for, by the channel's settings.
    pub fn plan(&self, channel: &ChannelConfig, events: Vec<InboundEvent>) -> IntakeBatch {
        let now = self.clock.now();
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
                                payload: json!({
                                    "entry_id": entry_id,
                                    "timestamp": m.received_at.timestamp_millis(),
                                    "content": m.content,
                                    "reply_to": m.reply_to,
                                }),
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
        }
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

impl InboundSink for Intake {
    fn accept<'a>(
        &'a self,
        channel: &'a ChannelRuntime,
        events: Vec<InboundEvent>,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            let batch = self.plan(&channel.config, events);
            let report = match &self.group {
                Some(group) => group.commit(batch).await?,
                None => {
                    let report = self
                        .store
                        .accept_inbound(&batch)
                        .await
                        .map_err(|e| SinkError(e.to_string()))?;
                    if report.outbox_rows > 0 {
                        self.wake.notify_one();
                    }
                    report
                }
            };
            Ok(Accepted {
                new: report.new,
                duplicates: report.duplicates,
            })
        })
    }
}
