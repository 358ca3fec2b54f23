//! What each channel registers with Salesforce (`PATCH /capabilities`): the message and format
//! types byocd renders for a rep on it, with the provider's limits on text and files — derived
//! from the provider and channel kind, narrowed by the channel's `[capabilities]`
//! (docs/salesforce.md, "Capabilities").
//!
//! [`request`] builds the body for one channel (one call per channel: the call carries the
//! channel's `AuthorizationContext`); [`jobs`] decides which channels register at start and
//! after a reload (those whose body changed), as outbox work, so a refusal is retried or
//! remediated like any other Salesforce call. `byocd doctor` can send [`request`] directly.

use crate::{
    config::{ChannelConfig, RENDERED_FORMATS},
    domain::choices::ChannelKind,
    salesforce::types::{
        AppType, Capabilities, CapabilitiesRequest, ChannelCapabilities, CustomIntegration,
        FormatTypeCapability, MessageTypeCapability,
    },
};
use serde_json::json;

/// The MIME types a rep may send on a channel of `kind`, and the largest file in KiB.
///
/// - 8x8 WhatsApp: Meta's media types (images JPEG/PNG up to 5 MB, video MP4/3GPP and audio up
///   to 16 MB, documents up to 100 MB); the registered size is the largest, the provider
///   refuses a smaller type over its own limit (reported as `MessageDeliveryFailed`).
/// - 8x8 RCS and Kaleyra RCS: the RCS file types both publish, up to 100 MB.
pub fn attachment_types(kind: ChannelKind) -> (&'static [&'static str], u64) {
    match kind {
        ChannelKind::EightByEightWhatsapp => (
            &[
                "image/jpeg",
                "image/png",
                "video/mp4",
                "video/3gpp",
                "audio/aac",
                "audio/mpeg",
                "audio/mp4",
                "audio/ogg",
                "application/pdf",
            ],
            100 * 1024,
        ),
        ChannelKind::EightByEightRcs | ChannelKind::KaleyraRcs => (
            &[
                "image/jpeg",
                "image/png",
                "image/gif",
                "video/mp4",
                "video/mpeg",
                "video/webm",
                "audio/aac",
                "audio/mpeg",
                "audio/mp4",
                "audio/3gpp",
                "audio/ogg",
                "application/pdf",
            ],
            100 * 1024,
        ),
    }
}

/// The longest rep text, in characters (WhatsApp 4,096; RCS 3,072).
pub fn max_text(kind: ChannelKind) -> u64 {
    match kind {
        ChannelKind::EightByEightWhatsapp => 4096,
        ChannelKind::EightByEightRcs | ChannelKind::KaleyraRcs => 3072,
    }
}

fn restriction(path: &str, restriction: serde_json::Value) -> serde_json::Value {
    json!({ "fieldJsonPath": path, "restriction": restriction })
}

/// The `PATCH /capabilities` body of one channel.
pub fn request(channel: &ChannelConfig) -> CapabilitiesRequest {
    let kind = ChannelKind::of(channel);
    let limits = &channel.capabilities;
    let wanted = |format: &str| {
        limits
            .formats
            .as_ref()
            .is_none_or(|f| f.iter().any(|w| w == format))
    };
    let mut static_formats = vec![FormatTypeCapability {
        format_type: "Text".into(),
        capability_field_restriction: Some(vec![restriction(
            "$.staticContent.text",
            json!({
                "fieldRestrictionType": "StringFieldRestriction",
                "encoding": "UTF8",
                "maxLength": max_text(kind),
            }),
        )]),
    }];
    if wanted("Attachments") {
        let (types, max_kb) = attachment_types(kind);
        let max_kb = limits.max_attachment_kb.map_or(max_kb, |n| n.min(max_kb));
        let mut restrictions: Vec<serde_json::Value> = types
            .iter()
            .map(|mime| {
                restriction(
                    "$.staticContent.attachments.mimeType",
                    json!({ "fieldRestrictionType": "MimeTypeRestriction", "mimeType": mime }),
                )
            })
            .collect();
        restrictions.push(restriction(
            "$.staticContent.attachments",
            json!({ "fieldRestrictionType": "FileSizeRestriction", "maxSizeInKb": max_kb }),
        ));
        static_formats.push(FormatTypeCapability {
            format_type: "Attachments".into(),
            capability_field_restriction: Some(restrictions),
        });
    }
    // A rich link: an RCS rich card, or text with the URL (src/domain/links.rs). Salesforce
    // also sends a URL a rep types as a rich link once this is registered (link previews).
    if wanted("RichLink") {
        static_formats.push(FormatTypeCapability {
            format_type: "RichLink".into(),
            capability_field_restriction: None,
        });
    }
    let mut message_types = vec![MessageTypeCapability {
        message_type: "StaticContentMessage".into(),
        format_type_capabilities: static_formats,
    }];
    let choices: Vec<FormatTypeCapability> = RENDERED_FORMATS
        .iter()
        .filter(|f| {
            matches!(
                **f,
                "Buttons" | "QuickReplies" | "ListPicker" | "Carousel" | "TimePicker"
            ) && wanted(f)
        })
        .map(|f| FormatTypeCapability {
            format_type: (*f).to_owned(),
            capability_field_restriction: None,
        })
        .collect();
    if !choices.is_empty() {
        message_types.push(MessageTypeCapability {
            message_type: "ChoicesMessage".into(),
            format_type_capabilities: choices,
        });
    }
    CapabilitiesRequest {
        capabilities: Capabilities {
            app_type: AppType::Custom,
            channel_capabilities: vec![ChannelCapabilities {
                channel_type: Some("custom".into()),
                custom_integration: Some(CustomIntegration {
                    custom_integration_type: "CustomChannelIntegration".into(),
                    integration_namespace: channel.org_id.to_string(),
                    conversation_channel_definition_dev_name: channel.authorization_context.clone(),
                }),
                message_type_capabilities: message_types,
            }],
        },
    }
}

/// The channels of `new` to register: all of them at start (`old` is `None`), after a reload
/// those whose body differs from what `old` gave (new channels included). In `new`'s order.
pub fn to_register<'a>(
    old: Option<&[ChannelConfig]>,
    new: &'a [ChannelConfig],
) -> Vec<(&'a ChannelConfig, CapabilitiesRequest)> {
    new.iter()
        .map(|c| (c, request(c)))
        .filter(|(c, body)| match old {
            None => true,
            Some(old) => old
                .iter()
                .find(|o| o.name == c.name)
                .is_none_or(|o| request(o) != *body || o.org_id != c.org_id),
        })
        .collect()
}

/// Writes a `PATCH /capabilities` outbox row for each channel [`to_register`] names, in one
/// transaction, with an audit row; returns the channels' names. Each channel has its own
/// ordering key (`capabilities:<channel>`), so a refused registration holds up nothing else.
pub async fn enqueue(
    store: &crate::store::AnyStore,
    old: Option<&[ChannelConfig]>,
    new: &[ChannelConfig],
) -> crate::store::Result<Vec<String>> {
    use crate::store::{AuditEntry, Store, job::Job, tx::NewOutboxRow};
    let wanted = to_register(old, new);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.transaction().await?;
    let now = tx.now();
    let mut rows = Vec::new();
    let mut audit = Vec::new();
    for (channel, body) in &wanted {
        let job = Job::IsaCapabilities(body.clone());
        rows.push(NewOutboxRow {
            kind: job.kind().to_owned(),
            org_id: channel.org_id.to_string(),
            channel: channel.name.clone(),
            ordering_key: format!("capabilities:{}", channel.name),
            conversation_id: None,
            session_id: None,
            payload: job.payload(),
            priority: 0,
            due: now,
        });
        let formats: Vec<&str> = body.capabilities.channel_capabilities[0]
            .message_type_capabilities
            .iter()
            .flat_map(|m| m.format_type_capabilities.iter())
            .map(|f| f.format_type.as_str())
            .collect();
        audit.push(
            AuditEntry::new(
                "capabilities.queued",
                format!("capabilities of {} queued for Salesforce", channel.name),
            )
            .org(channel.org_id.as_str())
            .channel(&channel.name)
            .detail(json!({ "formats": formats, "at_start": old.is_none() })),
        );
    }
    tx.insert_outbox(&rows).await?;
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    Ok(wanted.into_iter().map(|(c, _)| c.name.clone()).collect())
}
