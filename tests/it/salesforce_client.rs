//! The Salesforce side against the emulator: JWT bearer tokens kept sealed in the store (on both
//! backends), a round trip for every Interaction Service endpoint, and every client-side
//! refusal of a request Salesforce would reject.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use std::collections::BTreeMap;

use byocd::{
    config::OrgConfig,
    salesforce::{
        auth::AuthError,
        codes::{ErrorClass, ErrorReason},
        isa::IsaError,
        types::*,
    },
    sandbox::salesforce::{EmulatorSettings, Failure, SalesforceEmulator, SessionStatus},
    store::{AuditFilter, Severity, Store},
};
use support::{
    TestDb,
    salesforce::{
        CC_ADDRESS, FLOW, MSG_ADDRESS, ORG_ID, QUEUE, REP_1, REP_2, Rig, ccaas, emulator_settings,
        keys, messaging, org_config,
    },
};
use uuid::Uuid;

const NOW_MS: i64 = 1_763_700_000_000;

fn text_message(from: &str, text: &str) -> InteractionRequest {
    let id = Uuid::new_v4();
    InteractionRequest {
        to: MSG_ADDRESS.into(),
        from: from.into(),
        routing_attributes: None,
        interactions: vec![Interaction::Entry {
            timestamp: NOW_MS,
            payload: Entry {
                id,
                body: EntryBody::Message {
                    abstract_message: Message {
                        id,
                        in_reply_to_message_id: None,
                        content: MessageContent::StaticContent {
                            static_content: StaticContent::Text { text: text.into() },
                        },
                    },
                },
            },
        }],
    }
}

fn with_to(mut request: InteractionRequest, to: &str) -> InteractionRequest {
    request.to = to.into();
    request
}

fn entry_interaction(to: &str, from: &str, body: EntryBody) -> InteractionRequest {
    InteractionRequest {
        to: to.into(),
        from: from.into(),
        routing_attributes: None,
        interactions: vec![Interaction::Entry {
            timestamp: NOW_MS,
            payload: Entry {
                id: Uuid::new_v4(),
                body,
            },
        }],
    }
}

/// Opens a CCaaS conversation for `end_user`: (conversation id, work item id).
async fn open_ccaas_conversation(rig: &Rig, end_user: &str) -> (String, String) {
    let answer = rig
        .client
        .interaction(
            ccaas(),
            &with_to(text_message(end_user, "hello"), CC_ADDRESS),
            None,
        )
        .await
        .unwrap();
    (
        answer.value.conversation_identifier.unwrap(),
        answer.value.work_item_ids[0].clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// Tokens (state: both backends)

async fn a_token_is_minted_once_and_reused_after_a_restart(db: TestDb) {
    let mut rig = Rig::start(db).await;
    let first = rig.tokens.token(ORG_ID).await.unwrap();
    assert_eq!(rig.emulator.tokens_issued(), 1);
    assert!(
        first.expose().starts_with(ORG_ID),
        "token format {{orgId}}!{{token}}"
    );

    rig.restart().await;
    let again = rig.tokens.token(ORG_ID).await.unwrap();
    assert_eq!(again.expose(), first.expose(), "the stored token is reused");
    rig.client
        .interaction(messaging(), &text_message("+447700900001", "hi"), None)
        .await
        .unwrap();
    assert_eq!(
        rig.emulator.tokens_issued(),
        1,
        "no second mint after a restart"
    );

    let mints = rig
        .store
        .audit(&AuditFilter {
            kind: Some("token.minted".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mints.len(), 1);
    assert_eq!(mints[0].entry.org_id.as_deref(), Some(ORG_ID));
    assert!(mints[0].entry.detail["latency_ms"].is_u64());
    let everything =
        serde_json::to_string(&rig.store.audit(&AuditFilter::default()).await.unwrap()).unwrap();
    assert!(
        !everything.contains(first.expose()),
        "the audit trail holds the token"
    );
    assert_token_not_in_clear(&rig, first.expose()).await;
}

async fn assert_token_not_in_clear(rig: &Rig, token: &str) {
    if let Some(path) = rig.db.url.strip_prefix("sqlite://") {
        for file in [path.to_string(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "{file} holds the token in clear"
                );
            }
        }
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&rig.db.url).await.unwrap();
        let (dump,): (String,) =
            sqlx::query_as("SELECT string_agg(t::text, '|') FROM oauth_tokens t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(
            !dump.contains(token),
            "oauth_tokens holds the token in clear"
        );
    }
}

async fn a_rejected_token_is_reminted_once_and_the_call_succeeds(db: TestDb) {
    let rig = Rig::start(db).await;
    rig.client
        .interaction(messaging(), &text_message("+447700900001", "one"), None)
        .await
        .unwrap();
    rig.emulator.revoke_tokens();
    rig.emulator.clear_log();
    let answer = rig
        .client
        .interaction(messaging(), &text_message("+447700900001", "two"), None)
        .await
        .unwrap();
    assert_eq!(rig.emulator.tokens_issued(), 2);
    assert_eq!(answer.request_ids.len(), 2, "one attempt per token");
    assert_ne!(answer.request_ids[0], answer.request_ids[1]);
    let calls = rig.emulator.requests_to("/api/v1/interactions");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [401, 202]
    );
    assert_ne!(calls[0].header("RequestId"), calls[1].header("RequestId"));
    let reason = rig
        .store
        .audit(&AuditFilter {
            kind: Some("token.minted".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .last()
        .unwrap()
        .entry
        .detail["reason"]
        .clone();
    assert_eq!(reason, "token rejected by Salesforce");
}

async fn fifty_callers_on_a_revoked_token_cause_one_mint(db: TestDb) {
    let rig = Rig::start(db).await;
    rig.tokens.token(ORG_ID).await.unwrap();
    rig.emulator.revoke_tokens();
    let calls = (0..50).map(|i| {
        let client = rig.client.clone();
        tokio::spawn(async move {
            client
                .interaction(
                    messaging(),
                    &text_message(&format!("+4477009{i:05}"), "hello"),
                    None,
                )
                .await
        })
    });
    let results = futures_join(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        rig.emulator.tokens_issued(),
        2,
        "one mint for fifty callers"
    );
    assert_eq!(rig.tokens.mint_attempts(), 2);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

async fn a_wrong_key_pauses_the_org_with_a_clear_error_and_no_loop(db: TestDb) {
    let rig = Rig::start_with_key(db, &keys().1.private_pem).await;
    let err = rig.tokens.token(ORG_ID).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, AuthError::Refused { .. }), "{message}");
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("orgs.private_key_file"), "{message}");
    assert!(message.contains(ORG_ID), "{message}");

    // Callers now fail at once, without asking Salesforce again.
    for _ in 0..20 {
        let err = rig
            .client
            .interaction(messaging(), &text_message("+447700900001", "hi"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, IsaError::Auth { source, .. } if matches!(**source, AuthError::Paused { .. })),
            "{err}"
        );
    }
    assert_eq!(rig.emulator.requests_to("/services/oauth2/token").len(), 1);
    assert!(rig.emulator.requests_to("/api/v1/interactions").is_empty());

    let orgs = rig.store.orgs().await.unwrap();
    assert!(orgs[0].paused_until.is_some());
    assert!(
        orgs[0]
            .pause_reason
            .as_deref()
            .unwrap()
            .contains("invalid_grant")
    );
    let alerts = rig
        .store
        .audit(&AuditFilter {
            kind: Some("token.mint_failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].entry.severity, Severity::Alert);
    assert_eq!(alerts[0].entry.detail["error"], "invalid_grant");

    // An operator fixed it: resume lifts the pause (the key is still wrong, so one more try).
    rig.tokens.resume(ORG_ID).await.unwrap();
    assert!(rig.store.orgs().await.unwrap()[0].paused_until.is_none());
    rig.tokens.token(ORG_ID).await.unwrap_err();
    assert_eq!(rig.emulator.requests_to("/services/oauth2/token").len(), 2);
}

async fn token_endpoint_errors_are_explained(db: TestDb) {
    let rig = Rig::start(db).await;
    rig.emulator.inject(
        "/services/oauth2/token",
        Failure::TokenError {
            error: "invalid_client".into(),
            description: "invalid client credentials".into(),
        },
        1,
    );
    let message = rig.tokens.token(ORG_ID).await.unwrap_err().to_string();
    assert!(message.contains("orgs.consumer_key"), "{message}");

    let unreachable = Rig::start(TestDb::sqlite().await).await;
    unreachable.emulator.clone().shutdown().await;
    let err = unreachable.tokens.token(ORG_ID).await.unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("orgs.login_url"), "{err}");
}

/// `orgs.token_url` is where the assertion goes, `orgs.login_url` stays its audience: a partner
/// behind a proxy (here the emulator) for a My Domain audience.
#[tokio::test]
async fn the_token_is_requested_at_token_url_with_login_url_as_the_audience() {
    const AUDIENCE: &str = "https://acme.my.salesforce.com";
    let org = |emulator: &SalesforceEmulator| OrgConfig {
        login_url: AUDIENCE.into(),
        token_url: Some(format!("{}/services/oauth2/token", emulator.base_url())),
        ..org_config(emulator, &keys().0.private_pem)
    };
    let settings = EmulatorSettings {
        audience: Some(AUDIENCE.into()),
        ..emulator_settings()
    };
    let rig = Rig::start_with(TestDb::sqlite().await, settings, org).await;
    assert_eq!(
        rig.org.token_endpoint(),
        format!("{}/services/oauth2/token", rig.emulator.base_url())
    );
    let token = rig.tokens.token(ORG_ID).await.unwrap();
    assert!(rig.emulator.is_valid_token(token.expose()));
    let mints = rig.emulator.requests_to("/services/oauth2/token");
    assert_eq!(mints.len(), 1);
    assert_eq!(mints[0].status, 200, "{:?}", mints[0].response);
    rig.client
        .interaction(messaging(), &text_message("+447700900001", "hi"), None)
        .await
        .unwrap();

    // The audience is login_url, not the token URL: an emulator that expects its own URL as
    // the audience refuses the same org, and says so.
    let other = Rig::start_with(TestDb::sqlite().await, emulator_settings(), org).await;
    let err = other.tokens.token(ORG_ID).await.unwrap_err();
    assert!(matches!(err, AuthError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("audience is invalid"), "{err}");
    assert_eq!(
        other.emulator.requests_to("/services/oauth2/token").len(),
        1
    );
}

on_both_backends!(
    a_token_is_minted_once_and_reused_after_a_restart,
    a_rejected_token_is_reminted_once_and_the_call_succeeds,
    fifty_callers_on_a_revoked_token_cause_one_mint,
    a_wrong_key_pauses_the_org_with_a_clear_error_and_no_loop,
    token_endpoint_errors_are_explained,
);

// ---------------------------------------------------------------------------------------------
// Every endpoint, a round trip (no state of byocd's own involved: SQLite is enough)

async fn rig() -> Rig {
    Rig::start(TestDb::sqlite().await).await
}

#[tokio::test]
async fn interactions_message_typing_failure_and_attachment_round_trip() {
    let rig = rig().await;
    let user = "+447700900123";
    let answer = rig
        .client
        .interaction(messaging(), &text_message(user, "Hello there"), None)
        .await
        .unwrap();
    let conversation = answer.value.conversation_identifier.clone().unwrap();
    assert_eq!(answer.status, 202);
    assert_eq!(answer.value.work_item_ids.len(), 1);

    let call = &rig.emulator.requests_to("/api/v1/interactions")[0];
    assert_eq!(call.header("OrgId"), Some(ORG_ID));
    assert_eq!(call.header("AuthorizationContext"), Some("Acme_WhatsApp"));
    assert!(Uuid::parse_str(call.header("RequestId").unwrap()).is_ok());
    assert!(call.header("AuthorizationContextType").is_none());
    assert!(
        call.header("Content-Type")
            .unwrap()
            .starts_with("multipart/form-data")
    );
    let body = call.body.as_ref().unwrap();
    assert_eq!(body["to"], MSG_ADDRESS);
    assert_eq!(body["from"], user);
    let payload = &body["interactions"][0]["payload"];
    assert_eq!(
        body["interactions"][0]["interactionType"],
        "EntryInteraction"
    );
    assert_eq!(payload["entryType"], "Message");
    assert_eq!(payload["abstractMessage"]["id"], payload["id"]);
    assert_eq!(
        payload["abstractMessage"]["messageType"],
        "StaticContentMessage"
    );
    assert_eq!(
        payload["abstractMessage"]["staticContent"],
        serde_json::json!({ "formatType": "Text", "text": "Hello there" })
    );

    for body in [
        EntryBody::TypingStarted { timestamp: NOW_MS },
        EntryBody::TypingStopped { timestamp: NOW_MS },
        EntryBody::MessageDeliveryFailed {
            recipient: Participant::end_user(user),
            error_code: "1004".into(),
            failed_conversation_entry_identifier: Some("entry-1".into()),
            error_message: Some("undeliverable".into()),
        },
    ] {
        let answer = rig
            .client
            .interaction(
                messaging(),
                &entry_interaction(MSG_ADDRESS, user, body),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            answer.value.conversation_identifier.as_deref(),
            Some(conversation.as_str())
        );
    }

    let picture = bytes::Bytes::from(vec![0x89u8; 4096]);
    let attachment = InteractionRequest {
        to: MSG_ADDRESS.into(),
        from: user.into(),
        routing_attributes: None,
        interactions: vec![Interaction::Attachment {
            timestamp: NOW_MS,
            id: Uuid::new_v4(),
            attachment_index: 0,
            content_length: picture.len() as u64,
            text: Some("my receipt".into()),
        }],
    };
    rig.client
        .interaction(
            messaging(),
            &attachment,
            Some(FilePart {
                file_name: "receipt.png".into(),
                mime_type: "image/png".into(),
                bytes: picture,
            }),
        )
        .await
        .unwrap();
    let call = rig
        .emulator
        .requests_to("/api/v1/interactions")
        .pop()
        .unwrap();
    assert_eq!(call.attachments.len(), 1);
    assert_eq!(call.attachments[0].part_name, "attachments");
    assert_eq!(call.attachments[0].length, 4096);
    assert_eq!(
        call.attachments[0].content_type.as_deref(),
        Some("image/png")
    );
    assert_eq!(
        call.body.as_ref().unwrap()["interactions"][0]["contentLength"],
        4096
    );

    let stored = rig.emulator.conversation(&conversation).unwrap();
    let kinds: Vec<_> = stored
        .entries
        .iter()
        .map(|e| e.entry_type.clone().unwrap_or(e.interaction_type.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            "Message",
            "TypingStartedIndicator",
            "TypingStoppedIndicator",
            "MessageDeliveryFailed",
            "AttachmentInteraction"
        ]
    );
}

#[tokio::test]
async fn thirty_receipts_go_in_two_calls_of_at_most_25() {
    let rig = rig().await;
    let user = "+447700900124";
    let conversation = rig
        .client
        .interaction(messaging(), &text_message(user, "hi"), None)
        .await
        .unwrap()
        .value
        .conversation_identifier
        .unwrap();
    let acknowledgements = (0..30)
        .map(|i| Acknowledgement {
            kind: if i % 2 == 0 {
                AcknowledgementType::Delivered
            } else {
                AcknowledgementType::Read
            },
            acknowledged_entry: format!("rep-entry-{i}"),
            created_entry: Uuid::new_v4(),
            timestamp: NOW_MS + i,
        })
        .collect();
    let results = rig
        .client
        .acknowledge(
            messaging(),
            &AcknowledgementRequest {
                conversation_identifier: conversation.clone(),
                sender: Participant::end_user(user),
                acknowledgements,
            },
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    let calls = rig.emulator.requests_to("/api/v1/acknowledgement");
    let sizes: Vec<_> = calls
        .iter()
        .map(|c| {
            c.body.as_ref().unwrap()["acknowledgements"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, [25, 5]);
    let first = &calls[0].body.as_ref().unwrap()["acknowledgements"][0];
    assert!(first["acknowledgmentCreatedConversationEntryIdentifier"].is_string());
    assert_eq!(first["acknowledgementType"], "Delivered");
    assert_eq!(
        rig.emulator
            .conversation(&conversation)
            .unwrap()
            .acknowledgements
            .len(),
        30
    );
}

#[tokio::test]
async fn conversation_capabilities_and_consent_round_trip() {
    let rig = rig().await;
    let answer = rig
        .client
        .conversation(
            messaging(),
            &ConversationRequest {
                channel_address_identifier: MSG_ADDRESS.into(),
                participants: vec![Participant::end_user("+447700900125")],
                routing_attributes: None,
            },
        )
        .await
        .unwrap();
    assert!(answer.value.conversation_identifier.is_some());
    assert!(answer.value.messaging_session_id.is_some());

    rig.client
        .capabilities(
            messaging(),
            &CapabilitiesRequest {
                capabilities: Capabilities {
                    app_type: AppType::Custom,
                    channel_capabilities: vec![ChannelCapabilities {
                        channel_type: Some("custom".into()),
                        custom_integration: Some(CustomIntegration {
                            custom_integration_type: "CustomChannelIntegration".into(),
                            integration_namespace: ORG_ID.into(),
                            conversation_channel_definition_dev_name: "Acme_WhatsApp".into(),
                        }),
                        message_type_capabilities: vec![MessageTypeCapability {
                            message_type: "StaticContentMessage".into(),
                            format_type_capabilities: vec![
                                FormatTypeCapability {
                                    format_type: "Text".into(),
                                    capability_field_restriction: None,
                                },
                                FormatTypeCapability {
                                    format_type: "Attachments".into(),
                                    capability_field_restriction: None,
                                },
                            ],
                        }],
                    }],
                },
            },
        )
        .await
        .unwrap();
    let call = rig
        .emulator
        .requests_to("/api/v1/capabilities")
        .pop()
        .unwrap();
    assert_eq!(call.method, "PATCH");
    assert_eq!(
        call.header("AuthorizationContextType"),
        Some("ConversationChannelDefinition")
    );

    open_ccaas_conversation(&rig, "+447700900126").await;
    rig.client
        .consent(
            ccaas(),
            &ConsentRequest {
                end_user_client_id: "+447700900126".into(),
                channel_address_identifier: CC_ADDRESS.into(),
                consent_status: ConsentStatus::ExplicitlyOptedIn,
            },
        )
        .await
        .unwrap();
    // Consent owned by Salesforce: refused with 10022, classed as configuration.
    let err = rig
        .client
        .consent(
            messaging(),
            &ConsentRequest {
                end_user_client_id: "+447700900126".into(),
                channel_address_identifier: MSG_ADDRESS.into(),
                consent_status: ConsentStatus::OptedOut,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(10022), "{err}");
    assert_eq!(err.class(), ErrorClass::Configuration);
}

#[tokio::test]
async fn partner_routing_calls_round_trip() {
    let rig = rig().await;
    let (conversation, work_item) = open_ccaas_conversation(&rig, "+447700900127").await;

    let route = rig
        .client
        .route(
            ccaas(),
            &RouteRequest {
                conversation_identifier: conversation.clone(),
                routing_type: RoutingType::Initial,
                routing_info: Some(RoutingInfo {
                    flow: Some(FlowInfo {
                        flow_id: FLOW.into(),
                        queue_id: QUEUE.into(),
                    }),
                    routing_attributes: Some(BTreeMap::from([(
                        "Language".to_string(),
                        "en".to_string(),
                    )])),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    let psr = route.value.psr_id.clone().unwrap();
    let correlation = route.value.routing_correlation_id.clone().unwrap();
    assert!(psr.starts_with("0JR"));
    assert_eq!(
        rig.emulator.requests_to("/api/v1/route")[0].header("AuthorizationContextType"),
        Some("ConversationChannelDefinition")
    );

    let work = rig
        .client
        .agent_work(
            ccaas(),
            &AgentWorkRequest {
                user_id: REP_1.into(),
                work_item_id: work_item.clone(),
                capacity_weight: Some(1.0),
                capacity_percentage: None,
                routing_context: Some(RoutingContext {
                    conversation_identifier: conversation.clone(),
                    routing_type: RoutingType::Initial,
                    routing_correlation_id: correlation,
                }),
                agent_action_visibilities: Some(vec![AgentActionVisibility {
                    agent_action: AgentAction::Transfer,
                    visible: true,
                }]),
            },
        )
        .await
        .unwrap();
    let agent_work = work.value.agent_work_id.clone().unwrap();
    assert!(agent_work.starts_with("0Bz"));

    // A second active AgentWork for the same rep and work item: 15109.
    let err = rig
        .client
        .agent_work(
            ccaas(),
            &AgentWorkRequest {
                user_id: REP_1.into(),
                work_item_id: work_item.clone(),
                capacity_weight: None,
                capacity_percentage: None,
                routing_context: None,
                agent_action_visibilities: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(15109), "{err}");

    rig.client
        .patch_agent_work(
            ccaas(),
            &PatchAgentWorkRequest {
                work_id: agent_work,
                context_type: AgentWorkContextType::Agent,
                status: AgentWorkStatus::Cancel,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rig.emulator
            .requests_to("/api/v1/agentWork")
            .last()
            .unwrap()
            .header("AuthorizationContextType"),
        Some("ConversationChannelDefinition")
    );

    rig.client
        .routing_result(
            ccaas(),
            &RoutingResultRequest {
                work_item_id: work_item.clone(),
                conversation_identifier: conversation.clone(),
                success: true,
                externally_routed: false,
                error_message: None,
                routing_type: Some(RoutingType::Initial),
            },
        )
        .await
        .unwrap();

    rig.client
        .participant(
            ccaas(),
            &ParticipantRequest {
                conversation_identifier: conversation.clone(),
                operation: ParticipantOperation::Remove,
                participants: vec![Participant::agent(REP_2)],
            },
        )
        .await
        .ok();
    assert_eq!(rig.emulator.requests_to("/api/v1/participant").len(), 1);

    rig.client
        .delete_route(
            ccaas(),
            &DeleteRouteRequest {
                conversation_identifier: conversation.clone(),
                cancel_reason: Some(CancelReason::Unavailable),
            },
        )
        .await
        .unwrap();
    let delete = rig.emulator.requests_to("/api/v1/route").pop().unwrap();
    assert_eq!(delete.method, "DELETE");
    assert_eq!(delete.body.as_ref().unwrap()["cancelReason"], "Unavailable");
    let state = rig.emulator.conversation(&conversation).unwrap();
    assert_eq!(state.routing_results.len(), 1);
    assert_eq!(state.psrs.len(), 1);
}

#[tokio::test]
async fn sessions_are_inactivated_ended_and_a_second_end_is_refused_with_its_reason() {
    let rig = rig().await;
    let user = "+447700900128";
    let (conversation, work_item) = open_ccaas_conversation(&rig, user).await;
    let request = |operation, session_id: Option<&str>| MessagingSessionRequest {
        channel_address_identifier: CC_ADDRESS.into(),
        end_user_client_id: user.into(),
        conversation_identifier: conversation.clone(),
        session_id: session_id.map(str::to_owned),
        operation,
        operation_by: Some(SessionOperationBy::System),
    };
    rig.client
        .messaging_session(
            ccaas(),
            &request(SessionOperation::Inactivate, Some(&work_item)),
        )
        .await
        .unwrap();
    let status = |rig: &Rig| {
        rig.emulator
            .conversation(&conversation)
            .unwrap()
            .session(&work_item)
            .unwrap()
            .status
    };
    assert_eq!(status(&rig), SessionStatus::Inactive);
    rig.client
        .messaging_session(ccaas(), &request(SessionOperation::End, Some(&work_item)))
        .await
        .unwrap();
    assert_eq!(status(&rig), SessionStatus::Ended);
    let body = rig.emulator.requests_to("/api/v1/messagingSession")[1]
        .body
        .clone()
        .unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "channelAddressIdentifier": CC_ADDRESS,
            "endUserClientId": user,
            "conversationIdentifier": conversation,
            "sessionId": work_item,
            "operation": "End",
            "operationBy": "System",
        })
    );

    let err = rig
        .client
        .messaging_session(ccaas(), &request(SessionOperation::End, Some(&work_item)))
        .await
        .unwrap_err();
    match &err {
        IsaError::Refused {
            reason: Some(reason),
            ..
        } => assert!(!matches!(reason, ErrorReason::Unknown(_)), "{err}"),
        other => panic!("expected a refusal with its reason, got {other}"),
    }

    // Every documented errorReason comes back typed, with its class.
    rig.emulator.inject(
        "/api/v1/messagingSession",
        Failure::ErrorReason("CONVERSATION_PROCESSING_ABORTED".into()),
        1,
    );
    let err = rig
        .client
        .messaging_session(ccaas(), &request(SessionOperation::End, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            IsaError::Refused {
                reason: Some(ErrorReason::ConversationProcessingAborted),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);
}

#[tokio::test]
async fn conversation_history_round_trips() {
    let rig = rig().await;
    let message = |text: &str| {
        let id = Uuid::new_v4();
        Entry {
            id,
            body: EntryBody::Message {
                abstract_message: Message {
                    id,
                    in_reply_to_message_id: None,
                    content: MessageContent::StaticContent {
                        static_content: StaticContent::Text { text: text.into() },
                    },
                },
            },
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let bot = Participant {
        app_type: AppType::Chatbot,
        subject: "acme-bot".into(),
        role: ParticipantRole::Chatbot,
    };
    let answer = rig
        .client
        .conversation_history(
            ccaas(),
            &ConversationHistoryRequest {
                channel_address_identifier: CC_ADDRESS.into(),
                conversation_participants: vec![
                    HistoryParticipant {
                        participant: Participant::end_user("+447700900129"),
                        display_name: Some("Sam".into()),
                        joined_time: now - 60_000,
                        left_time: None,
                    },
                    HistoryParticipant {
                        participant: bot.clone(),
                        display_name: Some("Acme bot".into()),
                        joined_time: now - 60_000,
                        left_time: Some(now - 1_000),
                    },
                ],
                conversation_entries: vec![
                    HistoryEntry {
                        client_timestamp: now - 20_000,
                        sender: bot,
                        entry_payload: message("Let me get a person"),
                    },
                    HistoryEntry {
                        client_timestamp: now - 30_000,
                        sender: Participant::end_user("+447700900129"),
                        entry_payload: message("I need help"),
                    },
                ],
                messaging_session: Some(HistorySession::Establish {
                    start_time: now - 60_000,
                    end_time: None,
                }),
            },
        )
        .await
        .unwrap();
    assert!(answer.value.messaging_session_id.is_some());
    let call = rig
        .emulator
        .requests_to("/api/v1/conversationHistory")
        .pop()
        .unwrap();
    assert_eq!(
        call.header("AuthorizationContextType"),
        Some("ConversationChannelDefinition")
    );
    assert_eq!(
        call.body.as_ref().unwrap()["messagingSession"]["messagingSessionRequestType"],
        "EstablishMessagingSession"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors from Salesforce

#[tokio::test]
async fn salesforce_errors_are_parsed_and_classified() {
    let rig = rig().await;
    let request = text_message("+447700900130", "x");
    let send = || rig.client.interaction(messaging(), &request, None);
    rig.emulator.inject(
        "/api/v1/interactions",
        Failure::IsaError {
            http_status: 503,
            code: 10094,
        },
        1,
    );
    let err = send().await.unwrap_err();
    assert_eq!(err.code(), Some(10094));
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(matches!(err, IsaError::Api { status: 503, .. }));

    rig.emulator.inject(
        "/api/v1/interactions",
        Failure::RetryAfter {
            http_status: 429,
            seconds: 1,
        },
        1,
    );
    let err = send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(1)));
    assert_eq!(err.class(), ErrorClass::Retryable);
    // The org's next call waits for the Retry-After before going out.
    let started = std::time::Instant::now();
    send().await.unwrap();
    eprintln!(
        "call after Retry-After: 1 went out after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    rig.emulator
        .inject("/api/v1/interactions", Failure::Disconnect, 1);
    let err = send().await.unwrap_err();
    assert!(matches!(err, IsaError::Transport { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);

    // A channel the org does not have: 10017, not found / configuration.
    let err = rig
        .client
        .interaction(
            messaging(),
            &with_to(text_message("+447700900130", "x"), "no-such-channel"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, IsaError::Api { .. }), "{err}");
    assert!(err.code().is_some(), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Requests Salesforce would reject are never sent

#[tokio::test]
async fn invalid_requests_are_refused_before_sending_and_name_the_field() {
    let rig = rig().await;
    let long = "x".repeat(241);
    let work_item = "0Mw000000000001".to_string();

    let mut cases: Vec<(&str, Result<(), IsaError>)> = Vec::new();
    macro_rules! case {
        ($field:expr, $call:expr) => {
            cases.push(($field, $call.await.map(|_| ())));
        };
    }

    case!(
        "from",
        rig.client
            .interaction(messaging(), &text_message(&long, "x"), None)
    );
    case!(
        "to",
        rig.client
            .interaction(messaging(), &with_to(text_message("+1", "x"), &long), None)
    );
    let mut two = text_message("+447700900131", "a");
    two.interactions
        .extend(text_message("+447700900131", "b").interactions);
    case!(
        "interactions",
        rig.client.interaction(messaging(), &two, None)
    );
    let mut mismatch = text_message("+447700900131", "a");
    if let Interaction::Entry { payload, .. } = &mut mismatch.interactions[0]
        && let EntryBody::Message { abstract_message } = &mut payload.body
    {
        abstract_message.id = Uuid::new_v4();
    }
    case!(
        "interactions[0].payload.abstractMessage.id",
        rig.client.interaction(messaging(), &mismatch, None)
    );
    case!(
        "interactions[0].payload.abstractMessage.staticContent.text",
        rig.client
            .interaction(messaging(), &text_message("+447700900131", ""), None)
    );
    case!(
        "interactions[0].payload.recipient",
        rig.client.interaction(
            messaging(),
            &entry_interaction(
                MSG_ADDRESS,
                "+447700900131",
                EntryBody::MessageDeliveryFailed {
                    recipient: Participant::agent(REP_1),
                    error_code: "1".into(),
                    failed_conversation_entry_identifier: None,
                    error_message: None,
                },
            ),
            None,
        )
    );
    let attachment = |len: u64| InteractionRequest {
        to: MSG_ADDRESS.into(),
        from: "+447700900131".into(),
        routing_attributes: None,
        interactions: vec![Interaction::Attachment {
            timestamp: NOW_MS,
            id: Uuid::new_v4(),
            attachment_index: 0,
            content_length: len,
            text: None,
        }],
    };
    let file = |mime: &str, len: usize| FilePart {
        file_name: "f".into(),
        mime_type: mime.into(),
        bytes: bytes::Bytes::from(vec![1u8; len]),
    };
    case!(
        "attachments",
        rig.client.interaction(messaging(), &attachment(10), None)
    );
    case!(
        "interactions[0].contentLength",
        rig.client
            .interaction(messaging(), &attachment(11), Some(file("image/png", 10)))
    );
    case!(
        "attachments content type",
        rig.client
            .interaction(messaging(), &attachment(10), Some(file("image/webp", 10)))
    );
    case!(
        "attachments",
        rig.client
            .interaction(messaging(), &attachment(0), Some(file("image/png", 0)))
    );
    case!(
        "attachments",
        rig.client.interaction(
            messaging(),
            &attachment(25_000_001),
            Some(file("video/mp4", 25_000_001))
        )
    );
    case!(
        "attachments",
        rig.client.interaction(
            messaging(),
            &text_message("+1", "x"),
            Some(file("image/png", 1))
        )
    );
    case!(
        "sender",
        rig.client.acknowledge(
            messaging(),
            &AcknowledgementRequest {
                conversation_identifier: "c".into(),
                sender: Participant::agent(REP_1),
                acknowledgements: vec![Acknowledgement {
                    kind: AcknowledgementType::Read,
                    acknowledged_entry: "e".into(),
                    created_entry: Uuid::new_v4(),
                    timestamp: NOW_MS,
                }],
            },
        )
    );
    case!(
        "participants",
        rig.client.conversation(
            messaging(),
            &ConversationRequest {
                channel_address_identifier: MSG_ADDRESS.into(),
                participants: vec![],
                routing_attributes: None,
            },
        )
    );
    case!(
        "endUserClientId",
        rig.client.consent(
            ccaas(),
            &ConsentRequest {
                end_user_client_id: long.clone(),
                channel_address_identifier: CC_ADDRESS.into(),
                consent_status: ConsentStatus::OptedOut,
            },
        )
    );
    case!(
        "routingInfo",
        rig.client.route(
            ccaas(),
            &RouteRequest {
                conversation_identifier: "c".into(),
                routing_type: RoutingType::Initial,
                routing_info: Some(RoutingInfo::default()),
            },
        )
    );
    case!(
        "routingInfo.flow.queueId",
        rig.client.route(
            ccaas(),
            &RouteRequest {
                conversation_identifier: "c".into(),
                routing_type: RoutingType::Initial,
                routing_info: Some(RoutingInfo {
                    flow: Some(FlowInfo {
                        flow_id: FLOW.into(),
                        queue_id: String::new(),
                    }),
                    ..Default::default()
                }),
            },
        )
    );
    let agent_work = |work_item_id: &str, weight, percentage| AgentWorkRequest {
        user_id: REP_1.into(),
        work_item_id: work_item_id.into(),
        capacity_weight: weight,
        capacity_percentage: percentage,
        routing_context: None,
        agent_action_visibilities: None,
    };
    case!(
        "workItemId",
        rig.client
            .agent_work(ccaas(), &agent_work("0Mw000000000001AAA", None, None))
    );
    case!(
        "capacityWeight",
        rig.client
            .agent_work(ccaas(), &agent_work(&work_item, Some(1.0), Some(50.0)))
    );
    case!(
        "capacityWeight",
        rig.client
            .agent_work(ccaas(), &agent_work(&work_item, Some(-1.0), None))
    );
    case!(
        "capacityPercentage",
        rig.client
            .agent_work(ccaas(), &agent_work(&work_item, None, Some(100.5)))
    );
    let routing_result = |success, error_message: Option<&str>| RoutingResultRequest {
        work_item_id: work_item.clone(),
        conversation_identifier: "c".into(),
        success,
        externally_routed: false,
        error_message: error_message.map(str::to_owned),
        routing_type: None,
    };
    case!(
        "errorMessage",
        rig.client
            .routing_result(ccaas(), &routing_result(true, Some("why")))
    );
    case!(
        "errorMessage",
        rig.client
            .routing_result(ccaas(), &routing_result(false, None))
    );
    case!(
        "participants",
        rig.client.participant(
            ccaas(),
            &ParticipantRequest {
                conversation_identifier: "c".into(),
                operation: ParticipantOperation::Remove,
                participants: vec![Participant::agent(REP_1), Participant::agent(REP_2)],
            },
        )
    );
    case!(
        "sessionId",
        rig.client.messaging_session(
            ccaas(),
            &MessagingSessionRequest {
                channel_address_identifier: CC_ADDRESS.into(),
                end_user_client_id: "+1".into(),
                conversation_identifier: "c".into(),
                session_id: None,
                operation: SessionOperation::Inactivate,
                operation_by: Some(SessionOperationBy::System),
            },
        )
    );

    for (field, result) in &cases {
        match result {
            Err(IsaError::Invalid { invalid, .. }) => {
                assert_eq!(&invalid.field, field, "{invalid}")
            }
            other => panic!("{field}: expected a refusal before sending, got {other:?}"),
        }
    }
    assert_eq!(cases.len(), 25);
    assert!(
        rig.emulator
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/api/")),
        "an invalid request reached Salesforce"
    );
}
