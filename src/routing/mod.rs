//! Partner-owned routing (BYOC for CCaaS, `routing_owner = "Partner"`).
//!
//! Three kinds of outbox work, all on the conversation's routing ordering key and at high
//! priority, so they never wait behind messages:
//!
//! - `routing.initial` — a new session: consent first where the channel owns it, then the
//!   channel's policy: `channel-default` (`/route` without `routingInfo`), `queue`, `flow` (with
//!   its fallback queue and routing attributes), or `agents` (byocd picks the least-loaded rep of
//!   its pool from its own record of open AgentWork: `/route`, then `/agentWork` with the
//!   routing context from the answer).
//! - `routing.request` — a rep asked to transfer or conference: served within Salesforce's
//!   60-second deadline (time spent queued counts): `/agentWork` for a rep (correlation id from
//!   the event's `channelData.eventId`), `/route` for a queue or flow, then `/routingResult`. When
//!   it cannot be done in time or at all, `/routingResult` with `success: false` and the reason,
//!   before the deadline.
//! - `routing.work_result` — Salesforce reported an AgentWork's outcome: accepted work is
//!   recorded; a declined offer goes to the next rep of the pool (bounded by `max_attempts`),
//!   then to the fallback queue.
//!
//! The rep may end a session while its routing is under way. Before each Salesforce call a
//! step reads the session's local state; once it has ended (or is gone) the step makes no more
//! calls and finishes: its routing recorded `Cancelled` (a decline stays `Declined`, with no
//! next offer), and an audit row [`SKIPPED_SESSION_ENDED`] naming the call it stopped before.
//! That is a delivery, not a failure: no retry, no dead letter, no 404 from Salesforce to
//! reconcile.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{
    config::{ChannelConfig, ConsentOwner, PoolAgent, RoutingPolicy, WorkCapacity},
    lifecycle::failure::Failure,
    salesforce::{
        codes::ErrorClass,
        isa::{IsaClient, Target},
        types::*,
    },
    store::{
        AnyStore, AuditEntry, Delivered, FollowUp, NewRouting, OutboxItem, Store,
        job::{
            Job, RoutingInitial, RoutingOfferTimeout, RoutingParams, RoutingRequest,
            RoutingWorkResult,
        },
    },
};
use uuid::Uuid;

/// Salesforce's deadline for a routing request.
pub const ROUTING_DEADLINE: Duration = Duration::from_secs(60);
/// Kept back from the deadline for the final `/routingResult`.
const RESULT_RESERVE: Duration = Duration::from_secs(5);
/// Audit kind of a routing step stopped because its session had ended.
pub const SKIPPED_SESSION_ENDED: &str = "routing.skipped_session_ended";
/// Status of a routing stopped because its session had ended.
const CANCELLED: &str = "Cancelled";

fn failure(error: impl Into<String>, class: ErrorClass) -> Failure {
    Failure::new(error, class)
}

fn store_failure(e: crate::store::StoreError) -> Failure {
    failure(e.to_string(), ErrorClass::Retryable)
}

/// A session found ended (or gone) before a routing step's next call.
#[derive(Debug)]
struct Ended {
    /// The session.
    session: Uuid,
    /// Its local status (`ended`); `None` when the session is gone.
    status: Option<String>,
    /// Who ended it, when known.
    ended_by: Option<String>,
}

/// Reads the session's local state before a Salesforce call: `Some` once it has ended or is
/// gone, when nothing more may be sent for it. A step without a session goes on.
async fn ended(store: &AnyStore, session: Option<Uuid>) -> Result<Option<Ended>, Failure> {
    let Some(session) = session else {
        return Ok(None);
    };
    let Some(detail) = store.session(session).await.map_err(store_failure)? else {
        return Ok(Some(Ended {
            session,
            status: None,
            ended_by: None,
        }));
    };
    if detail.summary.status != "ended" {
        return Ok(None);
    }
    Ok(Some(Ended {
        session,
        status: Some(detail.summary.status),
        ended_by: detail.ended_by,
    }))
}

/// The audit row of a step stopped before `before` (the call it did not make); `calls` are
/// those it made.
fn skipped_audit(item: &OutboxItem, ended: &Ended, before: &str, calls: &[&str]) -> AuditEntry {
    let mut entry = AuditEntry::new(
        SKIPPED_SESSION_ENDED,
        format!(
            "{} #{} stopped before {before}: the session has ended",
            item.kind, item.id
        ),
    )
    .org(&item.org_id)
    .channel(&item.channel)
    .session(ended.session)
    .detail(json!({
        "outbox_id": item.id,
        "kind": item.kind,
        "before": before,
        "calls": calls,
        "session_status": ended.status,
        "ended_by": ended.ended_by,
    }));
    if let Some(conversation) = item.conversation_id {
        entry = entry.conversation(conversation);
    }
    entry
}

/// What a step stopped by its session's end delivers: the audit row, nothing more to do.
fn stopped(item: &OutboxItem, ended: &Ended, before: &str, calls: &[&str]) -> Delivered {
    Delivered {
        detail: json!({ "calls": calls, "stopped_before": before, "reason": "session ended" }),
        audit: vec![skipped_audit(item, ended, before, calls)],
        ..Delivered::default()
    }
}

/// Marks `routing` as stopped before `before` by its session's end.
fn cancel(routing: &mut NewRouting, before: &str) {
    routing.status = CANCELLED.into();
    routing.last_error = Some(format!("the session ended before {before}"));
}

/// Stops a routing not yet recorded (initial, transfer, conference) before `before`: recorded
/// as cancelled, audited.
async fn stop_new(
    store: &AnyStore,
    item: &OutboxItem,
    mut routing: NewRouting,
    ended: Ended,
    before: &str,
    calls: &[&str],
) -> Result<Delivered, Failure> {
    cancel(&mut routing, before);
    store
        .record_routing(&routing)
        .await
        .map_err(store_failure)?;
    Ok(stopped(item, &ended, before, calls))
}

/// A new session (`routing.initial`): consent where the channel owns it, then the channel's
/// policy.
pub(crate) async fn initial(
    store: &AnyStore,
    isa: &IsaClient,
    channel: &ChannelConfig,
    target: Target<'_>,
    item: &OutboxItem,
    job: &RoutingInitial,
    now: DateTime<Utc>,
) -> Result<Delivered, Failure> {
    let conversation = job.conversation_identifier.clone();
    let work_item = job.work_item_id.clone();
    let Some(policy) = &channel.routing else {
        return Ok(Delivered::default());
    };
    let mut calls = Vec::new();
    let mut follow_ups = Vec::new();
    let mut routing = NewRouting {
        session_id: item.session_id,
        channel: channel.name.clone(),
        kind: "Initial".into(),
        work_item_id: Some(work_item.clone()),
        psr_id: None,
        routing_correlation_id: None,
        agent_work_id: None,
        target_type: "channel-default".into(),
        target_id: None,
        status: "Routed".into(),
        attempts: 0,
        deadline_at: None,
        last_error: None,
    };
    if channel.consent_owner == ConsentOwner::Partner {
        if let Some(ended) = ended(store, routing.session_id).await? {
            return stop_new(store, item, routing, ended, "PATCH /consent", &calls).await;
        }
        isa.consent(
            target,
            &ConsentRequest {
                end_user_client_id: job.from.clone(),
                channel_address_identifier: channel.channel_address_identifier.clone(),
                // The end user wrote to us first.
                consent_status: ConsentStatus::ImplicitlyOptedIn,
            },
        )
        .await
        .map_err(Failure::from)?;
        calls.push("PATCH /consent");
    }
    let info = match policy {
        RoutingPolicy::ChannelDefault | RoutingPolicy::Agents { .. } => None,
        RoutingPolicy::Queue { queue_id } => {
            routing.target_type = "queue".into();
            routing.target_id = Some(queue_id.to_string());
            Some(RoutingInfo {
                queue_id: Some(queue_id.to_string()),
                ..RoutingInfo::default()
            })
        }
        RoutingPolicy::Flow {
            flow_id,
            fallback_queue_id,
            attributes,
        } => {
            routing.target_type = "flow".into();
            routing.target_id = Some(flow_id.to_string());
            Some(RoutingInfo {
                flow: Some(FlowInfo {
                    flow_id: flow_id.to_string(),
                    queue_id: fallback_queue_id.to_string(),
                }),
                routing_attributes: Some(routing_attributes(attributes, job, channel)),
                ..RoutingInfo::default()
            })
        }
    };
    if let Some(ended) = ended(store, routing.session_id).await? {
        return stop_new(store, item, routing, ended, "POST /route", &calls).await;
    }
    let routed = isa
        .route(
            target,
            &RouteRequest {
                conversation_identifier: conversation.clone(),
                routing_type: RoutingType::Initial,
                routing_info: info,
            },
        )
        .await
        .map_err(Failure::from)?;
    calls.push("POST /route");
    routing.psr_id = routed.value.psr_id.clone();
    routing.routing_correlation_id = routed.value.routing_correlation_id.clone();

    if let RoutingPolicy::Agents {
        agents,
        capacity,
        fallback_queue_id,
        offer_timeout,
        ..
    } = policy
    {
        let loads = store
            .agent_loads(&channel.name)
            .await
            .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
        let pick = pick_agent(agents, &loads, &[]);
        let next = match (&pick, fallback_queue_id) {
            (Some(_), _) => Some("POST /agentWork"),
            (None, Some(_)) => Some("POST /route (fallback queue)"),
            (None, None) => None,
        };
        if let Some(before) = next
            && let Some(ended) = ended(store, routing.session_id).await?
        {
            return stop_new(store, item, routing, ended, before, &calls).await;
        }
        match pick {
            Some(user) => {
                routing.attempts = 1;
                offer(
                    isa,
                    target,
                    &mut routing,
                    &conversation,
                    &user,
                    capacity.as_ref(),
                )
                .await?;
                calls.push("POST /agentWork");
                follow_ups.extend(timeout_check(&routing, &conversation, now, *offer_timeout));
            }
            None => {
                if let Some(queue) = fallback_queue_id {
                    route_to_queue(isa, target, &conversation, &queue.to_string()).await?;
                    routing.target_type = "queue".into();
                    routing.target_id = Some(queue.to_string());
                    calls.push("POST /route (fallback queue)");
                } else {
                    routing.last_error = Some("every rep of the pool is at capacity".into());
                }
            }
        }
    }
    store
        .record_routing(&routing)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
    Ok(Delivered {
        detail: json!({ "calls": calls, "psr_id": routing.psr_id, "target": routing.target_id }),
        follow_ups,
        ..Delivered::default()
    })
}

/// The check, after `timeout`, that an offer was answered.
fn timeout_check(
    routing: &NewRouting,
    conversation: &str,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Option<FollowUp> {
    let agent_work = routing.agent_work_id.clone()?;
    let check = Job::RoutingOfferTimeout(RoutingOfferTimeout {
        work_id: agent_work,
        conversation_identifier: conversation.to_owned(),
    });
    Some(check.follow_up(Some(crate::clock::later(now, timeout))))
}

/// An offer's time is up (`routing.offer_timeout`): if no rep accepted it, cancel it and
/// re-route as for a decline.
pub(crate) async fn offer_timeout(
    store: &AnyStore,
    isa: &IsaClient,
    channel: &ChannelConfig,
    target: Target<'_>,
    item: &OutboxItem,
    job: &RoutingOfferTimeout,
    now: DateTime<Utc>,
) -> Result<Delivered, Failure> {
    let work_id = job.work_id.as_str();
    let still_offered = store
        .routing_by_agent_work(work_id)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?
        .filter(|r| r.routing.status == "Offered");
    let Some(record) = still_offered else {
        return Ok(Delivered {
            detail: json!({ "work_id": work_id, "outcome": "answered in time" }),
            ..Delivered::default()
        });
    };
    if let Some(ended) = ended(store, record.routing.session_id).await? {
        // The offer went with the session: it no longer counts against the rep.
        let mut routing = record.routing;
        cancel(&mut routing, "PATCH /agentWork");
        store
            .update_routing(record.id, &routing)
            .await
            .map_err(store_failure)?;
        return Ok(stopped(item, &ended, "PATCH /agentWork", &[]));
    }
    // Cancel the first offer before the next, or both reps could accept.
    match isa
        .patch_agent_work(
            target,
            &PatchAgentWorkRequest {
                work_id: work_id.to_owned(),
                context_type: AgentWorkContextType::Agent,
                status: AgentWorkStatus::Cancel,
            },
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.class() == ErrorClass::NotFound || e.class() == ErrorClass::BadInput => {}
        Err(e) => return Err(Failure::from(e)),
    }
    let as_declined = RoutingWorkResult {
        work_id: job.work_id.clone(),
        work_type: "Unanswered".into(),
        conversation_identifier: Some(job.conversation_identifier.clone()),
    };
    work_result(store, isa, channel, target, item, &as_declined, now).await
}

/// Routing attributes from the channel's `[routing.attributes]`: each value is `end_user`
/// (the end user's client id), `message` (the first message's text), `channel` (the channel
/// name), or a literal after `=`. Values are cut to 240 characters.
fn routing_attributes(
    attributes: &BTreeMap<String, String>,
    job: &RoutingInitial,
    channel: &ChannelConfig,
) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|(name, source)| {
            let value = match source.as_str() {
                "end_user" => job.from.clone(),
                "message" => job.text.clone().unwrap_or_default(),
                "channel" => channel.name.clone(),
                literal => literal.strip_prefix('=').unwrap_or(literal).to_owned(),
            };
            (name.clone(), value.chars().take(240).collect())
        })
        .collect()
}

/// The least-loaded rep of the pool with room left, in pool order on ties; `exclude` lists
/// reps already tried.
pub fn pick_agent(
    pool: &[PoolAgent],
    loads: &[(String, i64)],
    exclude: &[String],
) -> Option<String> {
    pool.iter()
        .filter(|a| !exclude.iter().any(|e| e == a.user_id.as_str()))
        .filter_map(|a| {
            let load = loads
                .iter()
                .find(|(u, _)| u == a.user_id.as_str())
                .map_or(0, |(_, n)| *n);
            (load < i64::from(a.capacity)).then(|| {
                (
                    load as f64 / f64::from(a.capacity.max(1)),
                    a.user_id.to_string(),
                )
            })
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, user)| user)
}

async fn offer(
    isa: &IsaClient,
    target: Target<'_>,
    routing: &mut NewRouting,
    conversation: &str,
    user: &str,
    capacity: Option<&WorkCapacity>,
) -> Result<(), Failure> {
    let request = AgentWorkRequest {
        user_id: user.to_owned(),
        work_item_id: routing.work_item_id.clone().unwrap_or_default(),
        capacity_weight: match capacity {
            Some(WorkCapacity::Weight(w)) => Some(*w),
            _ => None,
        },
        capacity_percentage: match capacity {
            Some(WorkCapacity::Percentage(p)) => Some(*p),
            _ => None,
        },
        routing_context: routing
            .routing_correlation_id
            .clone()
            .map(|correlation| RoutingContext {
                conversation_identifier: conversation.to_owned(),
                routing_type: match routing.kind.as_str() {
                    "Transfer" => RoutingType::Transfer,
                    "Conference" => RoutingType::Conference,
                    _ => RoutingType::Initial,
                },
                routing_correlation_id: correlation,
            }),
        agent_action_visibilities: None,
    };
    match isa.agent_work(target, &request).await {
        Ok(answer) => routing.agent_work_id = answer.value.agent_work_id.clone(),
        // An AgentWork for this rep and work item already exists: the offer stands.
        Err(e) if e.code() == Some(15109) => {}
        Err(e) => return Err(Failure::from(e)),
    }
    routing.target_type = "user".into();
    routing.target_id = Some(user.to_owned());
    routing.status = "Offered".into();
    Ok(())
}

async fn route_to_queue(
    isa: &IsaClient,
    target: Target<'_>,
    conversation: &str,
    queue: &str,
) -> Result<(), Failure> {
    isa.route(
        target,
        &RouteRequest {
            conversation_identifier: conversation.to_owned(),
            routing_type: RoutingType::Initial,
            routing_info: Some(RoutingInfo {
                queue_id: Some(queue.to_owned()),
                ..RoutingInfo::default()
            }),
        },
    )
    .await
    .map_err(Failure::from)?;
    Ok(())
}

/// A rep asked to transfer or conference (`routing.request`): served, and answered with
/// `/routingResult`, within Salesforce's deadline.
pub(crate) async fn request(
    store: &AnyStore,
    isa: &IsaClient,
    channel: &ChannelConfig,
    target: Target<'_>,
    item: &OutboxItem,
    job: &RoutingRequest,
    now: DateTime<Utc>,
) -> Result<Delivered, Failure> {
    let conversation = job.conversation_identifier.clone();
    let work_item = job.work_item_id.clone();
    let routing_type = job.routing_type();
    let deadline = job
        .deadline_ms
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(now);
    let no_params = RoutingParams::default();
    let params = job.params.as_ref().unwrap_or(&no_params);
    let mut routing = NewRouting {
        session_id: item.session_id,
        channel: channel.name.clone(),
        kind: if routing_type == RoutingType::Conference {
            "Conference".into()
        } else {
            "Transfer".into()
        },
        work_item_id: Some(work_item.clone()),
        psr_id: None,
        routing_correlation_id: job.correlation_id.clone(),
        agent_work_id: None,
        target_type: "queue".into(),
        target_id: None,
        status: "Requested".into(),
        attempts: 1,
        deadline_at: Some(deadline),
        last_error: None,
    };
    // Time left for the routing calls, keeping some for the final answer.
    let left = (deadline - now)
        .to_std()
        .unwrap_or_default()
        .saturating_sub(RESULT_RESERVE);
    if !left.is_zero()
        && let Some(ended) = ended(store, routing.session_id).await?
    {
        return stop_new(store, item, routing, ended, serve_call(params), &[]).await;
    }
    let outcome: Result<(), String> = if left.is_zero() {
        Err("the routing request could not be served within Salesforce's 60-second deadline".into())
    } else {
        match tokio::time::timeout(
            left,
            serve(
                isa,
                target,
                &conversation,
                routing_type,
                params,
                transfer_capacity(channel),
                &mut routing,
            ),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err("routing did not finish within Salesforce's 60-second deadline".into()),
        }
    };
    // `serve` names its target before its one call.
    let mut calls: Vec<&str> = routing
        .target_id
        .is_some()
        .then(|| serve_call(params))
        .into_iter()
        .collect();
    if let Some(ended) = ended(store, routing.session_id).await? {
        return stop_new(store, item, routing, ended, "POST /routingResult", &calls).await;
    }
    let answer = RoutingResultRequest {
        work_item_id: work_item,
        conversation_identifier: conversation,
        success: outcome.is_ok(),
        externally_routed: false,
        error_message: outcome.as_ref().err().cloned(),
        routing_type: Some(routing_type),
    };
    isa.routing_result(target, &answer)
        .await
        .map_err(Failure::from)?;
    calls.push("POST /routingResult");
    let mut removed = None;
    let mut audit = Vec::new();
    if outcome.is_ok()
        && routing.target_type == "user"
        && routing_type == RoutingType::Transfer
        && channel.remove_previous_agent
    {
        match ended(store, routing.session_id).await? {
            Some(ended) => audit.push(skipped_audit(item, &ended, "POST /participant", &calls)),
            None => {
                removed = remove_previous(
                    store,
                    isa,
                    target,
                    item,
                    &job.conversation_identifier,
                    &routing,
                )
                .await?
            }
        }
    }
    routing.status = if outcome.is_ok() {
        "Succeeded"
    } else {
        "Failed"
    }
    .into();
    routing.last_error = outcome.err();
    store
        .record_routing(&routing)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
    Ok(Delivered {
        detail: json!({
            "routing": routing.kind,
            "success": answer.success,
            "error": answer.error_message,
            "target": routing.target_id,
            "removed_rep": removed,
        }),
        audit,
        ..Delivered::default()
    })
}

/// After a transfer to another rep, removes the rep who had the session (the last rep byocd
/// offered it to who is not the new one) with `POST /participant`; a rep already gone (10036)
/// is fine. Returns the rep removed.
async fn remove_previous(
    store: &AnyStore,
    isa: &IsaClient,
    target: Target<'_>,
    item: &OutboxItem,
    conversation: &str,
    routing: &NewRouting,
) -> Result<Option<String>, Failure> {
    let Some(session) = item.session_id else {
        return Ok(None);
    };
    // Who Salesforce says is in the session (ParticipantChanged, ParticipantsConferenced):
    // the latest-joined rep other than the new one; a rep already gone is not removed again.
    // Without such a report, the last rep byocd routed the session to.
    let reported = store
        .session_participants(session)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
    let previous = match present_reps(reported.as_ref()) {
        Some(reps) => reps
            .into_iter()
            .rev()
            .find(|rep| Some(rep) != routing.target_id.as_ref()),
        None => store
            .routings_of_session(session)
            .await
            .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?
            .into_iter()
            .rev()
            .filter(|r| r.routing.target_type == "user")
            .filter(|r| {
                matches!(
                    r.routing.status.as_str(),
                    "Accepted" | "Offered" | "Succeeded"
                )
            })
            .filter_map(|r| r.routing.target_id)
            .find(|rep| Some(rep) != routing.target_id.as_ref()),
    };
    let Some(rep) = previous else {
        return Ok(None);
    };
    let request = ParticipantRequest {
        conversation_identifier: conversation.to_owned(),
        operation: ParticipantOperation::Remove,
        participants: vec![Participant::agent(rep.clone())],
    };
    match isa.participant(target, &request).await {
        Ok(_) => Ok(Some(rep)),
        Err(e) if e.code() == Some(10036) => Ok(None),
        Err(e) => Err(Failure::from(e)),
    }
}

/// The reps (role `Agent` or `Supervisor`) in a session's participant list as the outbound
/// intake keeps it (`domain::participants`), oldest joined first; `None` when Salesforce never
/// reported the session's participants.
pub fn present_reps(stored: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let list = stored?.as_array()?;
    Some(
        list.iter()
            .filter(|p| {
                matches!(
                    p["role"].as_str().map(str::to_ascii_lowercase).as_deref(),
                    Some("agent" | "supervisor")
                )
            })
            .filter_map(|p| p["subject"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// The capacity a transferred work item takes: the pool's setting, else a weight of 1.
fn transfer_capacity(channel: &ChannelConfig) -> WorkCapacity {
    match &channel.routing {
        Some(RoutingPolicy::Agents {
            capacity: Some(capacity),
            ..
        }) => *capacity,
        _ => WorkCapacity::Weight(1.0),
    }
}

/// The call [`serve`] makes for these routing parameters.
fn serve_call(params: &RoutingParams) -> &'static str {
    if params.user_id.as_deref().is_some_and(|v| !v.is_empty()) {
        "POST /agentWork"
    } else {
        "POST /route"
    }
}

/// The routing calls of a transfer or conference; `Err` is the reason to give Salesforce.
#[allow(clippy::too_many_arguments)]
async fn serve(
    isa: &IsaClient,
    target: Target<'_>,
    conversation: &str,
    routing_type: RoutingType,
    params: &RoutingParams,
    capacity: WorkCapacity,
    routing: &mut NewRouting,
) -> Result<(), String> {
    if let Some(user) = params.user().map(str::to_owned) {
        // To a rep: the AgentWork names them; the correlation id comes from the event.
        routing.target_type = "user".into();
        routing.target_id = Some(user.clone());
        // Without a pending routing Salesforce needs the capacity; with one it ignores it.
        let request = AgentWorkRequest {
            user_id: user,
            work_item_id: routing.work_item_id.clone().unwrap_or_default(),
            capacity_weight: match capacity {
                WorkCapacity::Weight(w) => Some(w),
                WorkCapacity::Percentage(_) => None,
            },
            capacity_percentage: match capacity {
                WorkCapacity::Percentage(p) => Some(p),
                WorkCapacity::Weight(_) => None,
            },
            routing_context: routing.routing_correlation_id.clone().map(|correlation| {
                RoutingContext {
                    conversation_identifier: conversation.to_owned(),
                    routing_type,
                    routing_correlation_id: correlation,
                }
            }),
            agent_action_visibilities: None,
        };
        return match isa.agent_work(target, &request).await {
            Ok(answer) => {
                routing.agent_work_id = answer.value.agent_work_id.clone();
                Ok(())
            }
            Err(e) if e.code() == Some(15109) => Ok(()),
            Err(e) => Err(format!("the rep could not be offered the work: {e}")),
        };
    }
    let info = if let Some(flow) = params.flow().map(str::to_owned) {
        routing.target_type = "flow".into();
        routing.target_id = Some(flow.clone());
        RoutingInfo {
            flow: Some(FlowInfo {
                flow_id: flow,
                queue_id: params.queue().unwrap_or_default().to_owned(),
            }),
            ..RoutingInfo::default()
        }
    } else if let Some(queue) = params.queue().map(str::to_owned) {
        routing.target_type = "queue".into();
        routing.target_id = Some(queue.clone());
        RoutingInfo {
            queue_id: Some(queue),
            ..RoutingInfo::default()
        }
    } else {
        return Err("the routing request names no rep, queue or flow".into());
    };
    let routed = isa
        .route(
            target,
            &RouteRequest {
                conversation_identifier: conversation.to_owned(),
                routing_type,
                routing_info: Some(info),
            },
        )
        .await
        .map_err(|e| format!("routing failed: {e}"))?;
    routing.psr_id = routed.value.psr_id.clone();
    Ok(())
}

/// Salesforce reported an AgentWork's outcome (`routing.work_result`): accepted work is
/// recorded; a declined or unanswered offer goes to the next rep, then the fallback queue.
pub(crate) async fn work_result(
    store: &AnyStore,
    isa: &IsaClient,
    channel: &ChannelConfig,
    target: Target<'_>,
    item: &OutboxItem,
    job: &RoutingWorkResult,
    now: DateTime<Utc>,
) -> Result<Delivered, Failure> {
    let work_id = job.work_id.as_str();
    let work_type = job.work_type.clone();
    let Some(record) = store
        .routing_by_agent_work(work_id)
        .await
        .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?
    else {
        return Ok(Delivered {
            detail: json!({ "ignored": "no routing of byocd offered this work", "work_id": work_id }),
            ..Delivered::default()
        });
    };
    let mut routing = record.routing.clone();
    let mut follow_ups = Vec::new();
    match work_type.as_str() {
        "Declined" | "Cancelled" | "Unanswered" => {
            routing.status = work_type.clone();
            store
                .update_routing(record.id, &routing)
                .await
                .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
            // Re-route by the policy: the next rep, then the fallback queue.
            if let Some(RoutingPolicy::Agents {
                agents,
                capacity,
                max_attempts,
                fallback_queue_id,
                offer_timeout,
            }) = &channel.routing
            {
                let conversation = job.conversation_identifier.clone().ok_or_else(|| {
                    failure(
                        "routing payload lacks `conversation_identifier`",
                        ErrorClass::BadInput,
                    )
                })?;
                let tried: Vec<String> = store
                    .routings_of_session(routing.session_id.unwrap_or_default())
                    .await
                    .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?
                    .into_iter()
                    .filter(|r| r.routing.target_type == "user")
                    .filter_map(|r| r.routing.target_id)
                    .collect();
                let loads = store
                    .agent_loads(&channel.name)
                    .await
                    .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
                let mut next = routing.clone();
                next.attempts = routing.attempts + 1;
                next.agent_work_id = None;
                next.last_error = None;
                let next_rep = (next.attempts as u32 <= *max_attempts)
                    .then(|| pick_agent(agents, &loads, &tried))
                    .flatten();
                let before = match (&next_rep, fallback_queue_id) {
                    (Some(_), _) => "POST /agentWork",
                    (None, Some(_)) => "POST /route (fallback queue)",
                    (None, None) => "DELETE /route",
                };
                if let Some(ended) = ended(store, routing.session_id).await? {
                    // The declined routing is recorded above; no next one is started.
                    return Ok(stopped(item, &ended, before, &[]));
                }
                match next_rep {
                    Some(user) => {
                        offer(
                            isa,
                            target,
                            &mut next,
                            &conversation,
                            &user,
                            capacity.as_ref(),
                        )
                        .await?;
                        follow_ups.extend(timeout_check(&next, &conversation, now, *offer_timeout));
                    }
                    None => match fallback_queue_id {
                        Some(queue) => {
                            route_to_queue(isa, target, &conversation, &queue.to_string()).await?;
                            next.target_type = "queue".into();
                            next.target_id = Some(queue.to_string());
                            next.status = "Routed".into();
                        }
                        None => {
                            // Nobody will take it: clear the pending routing so it does not
                            // linger in Salesforce.
                            isa.delete_route(
                                target,
                                &DeleteRouteRequest {
                                    conversation_identifier: conversation.clone(),
                                    cancel_reason: Some(CancelReason::Unavailable),
                                },
                            )
                            .await
                            .map_err(Failure::from)?;
                            next.status = "Failed".into();
                            next.last_error = Some("no rep of the pool took the work".into());
                        }
                    },
                }
                store
                    .record_routing(&next)
                    .await
                    .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
            }
        }
        other => {
            routing.status = other.to_owned();
            store
                .update_routing(record.id, &routing)
                .await
                .map_err(|e| failure(e.to_string(), ErrorClass::Retryable))?;
        }
    }
    Ok(Delivered {
        detail: json!({ "work_id": work_id, "work_type": work_type }),
        follow_ups,
        ..Delivered::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SalesforceId;

    fn agent(id: &str, capacity: u32) -> PoolAgent {
        PoolAgent {
            user_id: SalesforceId::parse(id).unwrap(),
            capacity,
        }
    }

    #[test]
    fn the_least_loaded_rep_with_room_is_picked() {
        let pool = [
            agent("005000000000001", 2),
            agent("005000000000002", 4),
            agent("005000000000003", 1),
        ];
        assert_eq!(pick_agent(&pool, &[], &[]).unwrap(), "005000000000001");
        let loads = vec![
            ("005000000000001".to_string(), 1),
            ("005000000000002".to_string(), 1),
        ];
        // 1/2 = 0.5, 1/4 = 0.25, 0/1 = 0 → the third.
        assert_eq!(pick_agent(&pool, &loads, &[]).unwrap(), "005000000000003");
        let full = vec![
            ("005000000000001".to_string(), 2),
            ("005000000000002".to_string(), 4),
            ("005000000000003".to_string(), 1),
        ];
        assert_eq!(pick_agent(&pool, &full, &[]), None);
        assert_eq!(
            pick_agent(&pool, &[], &["005000000000001".to_string()]).unwrap(),
            "005000000000002"
        );
    }
}
