//! What the admin commands read about sessions (`byocd sessions list|show`), shared by both
//! backends.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Which sessions to list. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only this channel's.
    pub channel: Option<String>,
    /// Only sessions in this status: `active`, `inactive` or `ended`.
    pub status: Option<String>,
    /// At most this many; 0 means 100.
    pub limit: u32,
}

/// Where a session was last routed (partner-owned routing, CCaaS channels only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutedTo {
    /// `Initial`, `Transfer` or `Conference`.
    pub kind: String,
    /// `channel-default`, `queue`, `flow`, `user` or `external`.
    pub target_type: Option<String>,
    /// The queue, flow or user id, if the target has one.
    pub target_id: Option<String>,
    /// The routing's status (`Requested`, `Offered`, `Accepted`, …).
    pub status: String,
}

/// One session, as `sessions list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// byocd's session id.
    pub id: Uuid,
    /// Its channel.
    pub channel: String,
    /// Its conversation.
    pub conversation_id: Uuid,
    /// Salesforce's MessagingSession id, once known.
    pub work_item_id: Option<String>,
    /// `active`, `inactive` or `ended`.
    pub status: String,
    /// When it started.
    pub opened_at: DateTime<Utc>,
    /// The last message or event in it.
    pub last_activity_at: DateTime<Utc>,
    /// When it ended, if it did.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its latest routing, if byocd routed it.
    pub routed_to: Option<RoutedTo>,
}

/// The end user of a conversation. Their address is what an operator needs to find them; it is
/// shown by `sessions show`, never by a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndUserRecord {
    /// byocd's end-user id.
    pub id: Uuid,
    /// The key byocd sends to Salesforce: the E.164 number, else the provider's user id.
    pub provider_user_key: String,
    /// The client id Salesforce knows them by.
    pub salesforce_client_id: String,
    /// Their number, as last seen.
    pub msisdn: Option<String>,
    /// The provider's user id, as last seen.
    pub channel_user_id: Option<String>,
    /// Their display name, if the provider gave one.
    pub display_name: Option<String>,
    /// When byocd first saw them.
    pub created_at: DateTime<Utc>,
}

/// One session with its conversation and end user, as `sessions show` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionDetail {
    /// The session.
    #[serde(flatten)]
    pub summary: SessionSummary,
    /// When the end user last wrote.
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// When it became inactive, if it did.
    pub inactivated_at: Option<DateTime<Utc>>,
    /// `System`, `EndUser`, `Agent` or `Salesforce`, once ended.
    pub ended_by: Option<String>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Salesforce's `conversationIdentifier`, once known.
    pub conversation_identifier: Option<String>,
    /// When the conversation started.
    pub conversation_created_at: DateTime<Utc>,
    /// The end user.
    pub end_user: EndUserRecord,
}
