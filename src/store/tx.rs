//! Write transactions as plain data operations, for the intake (src/domain/).
//!
//! [`Store::transaction`](super::Store::transaction) opens a write transaction; [`Tx`] offers
//! small operations on it — find or create an end user, a conversation, a session; the newest
//! unfinished outbox row of an ordering key; insert outbox, message map and audit rows — and
//! decides nothing: what an event becomes is decided by the caller, in ordinary Rust. Inserts
//! take slices and write them with one statement per table (SQLite: `json_each` over a JSON
//! array parameter; PostgreSQL: `UNNEST` of array parameters), so a group of webhooks costs one
//! statement per table, not one per row.
//!
//! Nothing is written until [`Tx::commit`]; a `Tx` dropped without it rolls back.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{AuditEntry, Result};

/// An outbox row to insert, pending.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    /// Its kind ([`Job::kind`](crate::store::job::Job::kind)).
    pub kind: String,
    /// The org.
    pub org_id: String,
    /// The channel.
    pub channel: String,
    /// Rows of a key are delivered one at a time, in id order.
    pub ordering_key: String,
    /// The conversation, if any.
    pub conversation_id: Option<Uuid>,
    /// The session, if any.
    pub session_id: Option<Uuid>,
    /// The payload.
    pub payload: Value,
    /// Higher runs first.
    pub priority: i32,
    /// When it is due.
    pub due: DateTime<Utc>,
}

/// A `message_map` row to insert (kept if the provider message id is known already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMapRow {
    /// The channel.
    pub channel: String,
    /// The provider's message id.
    pub provider_message_id: String,
    /// The Salesforce entry id.
    pub salesforce_entry_id: String,
    /// The conversation.
    pub conversation_id: Uuid,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
}

/// What a group's events say of an end user, to find them by ([`Tx::known_end_users`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProbe {
    /// The channel.
    pub channel: String,
    /// The key Salesforce knows them by (provider user key).
    pub key: String,
    /// Their number, if the event carries it.
    pub msisdn: Option<String>,
    /// Their provider user id, if the event carries it.
    pub channel_user_id: Option<String>,
}

/// An end user as stored, with their conversation on the channel and its open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownEndUser {
    /// The end user's row.
    pub user: EndUserRow,
    /// The key Salesforce knows them by.
    pub salesforce_client_id: String,
    /// When they were first seen (the oldest match wins).
    pub created_at: DateTime<Utc>,
    /// Their conversation on the channel, if any: its id and Salesforce identifier.
    pub conversation: Option<(Uuid, Option<String>)>,
    /// That conversation's newest session that has not ended.
    pub open_session: Option<Uuid>,
}

/// An end user's row: inserted as it is, or its identifiers refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUserRow {
    /// Its id.
    pub id: Uuid,
    /// The channel.
    pub channel: String,
    /// The provider user key, fixed when first seen (also the Salesforce client id).
    pub provider_user_key: String,
    /// The number as last seen.
    pub msisdn: Option<String>,
    /// The provider user id as last seen.
    pub channel_user_id: Option<String>,
    /// The display name as last seen.
    pub display_name: Option<String>,
}

/// A conversation to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    /// Its id.
    pub id: Uuid,
    /// The channel.
    pub channel: String,
    /// The end user.
    pub end_user_id: Uuid,
}

/// A session's activity to write: a new active session (opened now), or an open one made
/// active again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionActivity {
    /// The session.
    pub id: Uuid,
    /// Its conversation.
    pub conversation_id: Uuid,
    /// The channel.
    pub channel: String,
    /// Its last activity.
    pub last_activity_at: DateTime<Utc>,
    /// The end user's last message: when, and its provider id (kept as stored if `None`).
    pub last_inbound: Option<(DateTime<Utc>, String)>,
}

/// An unfinished outbox row, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedRow {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// `pending` or `leased`.
    pub status: String,
    /// Its payload.
    pub payload: Value,
}

/// A session idle long enough for the sweeper to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleSession {
    /// The session.
    pub session: Uuid,
    /// Its conversation.
    pub conversation: Uuid,
    /// Its work item, once known.
    pub work_item_id: Option<String>,
    /// The key Salesforce knows its end user by.
    pub end_user_key: String,
}

/// A write transaction of either backend.
#[derive(Debug)]
pub enum Tx {
    /// SQLite.
    Sqlite(super::sqlite::SqliteTx),
    /// PostgreSQL.
    Postgres(super::postgres::PgTx),
}

macro_rules! on {
    ($self:ident, $t:ident => $call:expr) => {
        match $self {
            Tx::Sqlite($t) => $call,
            Tx::Postgres($t) => $call,
        }
    };
}

impl Tx {
    /// The store clock's time when the transaction began: every row it writes is stamped with
    /// it.
    pub fn now(&self) -> DateTime<Utc> {
        on!(self, t => t.now)
    }

    /// Commits.
    pub async fn commit(self) -> Result<()> {
        on!(self, t => t.commit().await)
    }

    /// Rolls back now (dropping a `Tx` rolls back too, once its connection is next used).
    pub async fn rollback(self) -> Result<()> {
        on!(self, t => t.rollback().await)
    }

    /// Records each `(channel, event key)` as seen, in one statement; true for each one seen
    /// for the first time (a key given twice is new only the first time).
    pub async fn first_sights(&mut self, keys: &[(String, String)]) -> Result<Vec<bool>> {
        on!(self, t => t.first_sights(keys).await)
    }

    /// The end users of the probes' channels that any probe's identifier matches (key, number
    /// or user id), possibly more than once, with their conversation on the channel and its open session; in
    /// one statement.
    pub async fn known_end_users(&mut self, probes: &[UserProbe]) -> Result<Vec<KnownEndUser>> {
        on!(self, t => t.known_end_users(probes).await)
    }

    /// Inserts end users in one statement. [`StoreError::Raced`](super::StoreError::Raced) if
    /// one exists already (a concurrent transaction created them since they were looked up).
    pub async fn insert_end_users(&mut self, rows: &[EndUserRow]) -> Result<()> {
        on!(self, t => t.insert_end_users(rows).await)
    }

    /// Refreshes end users' identifiers (each given one replaces the stored one), in one
    /// statement.
    pub async fn update_end_users(&mut self, rows: &[EndUserRow]) -> Result<()> {
        on!(self, t => t.update_end_users(rows).await)
    }

    /// The key Salesforce knows a conversation's end user by.
    pub async fn end_user_key_of(&mut self, conversation: Uuid) -> Result<String> {
        on!(self, t => t.end_user_key_of(conversation).await)
    }

    /// Inserts conversations in one statement. [`StoreError::Raced`](super::StoreError::Raced)
    /// if an end user has one on the channel already.
    pub async fn insert_conversations(&mut self, rows: &[ConversationRow]) -> Result<()> {
        on!(self, t => t.insert_conversations(rows).await)
    }

    /// Sets conversations' Salesforce `conversationIdentifier`s, in one statement.
    pub async fn set_conversation_identifiers(&mut self, rows: &[(Uuid, String)]) -> Result<()> {
        on!(self, t => t.set_conversation_identifiers(rows).await)
    }

    /// Inserts new active sessions, opened now, in one statement.
    pub async fn insert_sessions(&mut self, rows: &[SessionActivity]) -> Result<()> {
        on!(self, t => t.insert_sessions(rows).await)
    }

    /// Stamps open sessions' activity and makes them active, in one statement.
    pub async fn touch_sessions(&mut self, rows: &[SessionActivity]) -> Result<()> {
        on!(self, t => t.touch_sessions(rows).await)
    }

    /// The newest session of an end user on a channel that has not ended: (conversation,
    /// session).
    pub async fn open_session_of(
        &mut self,
        channel: &str,
        end_user: Uuid,
    ) -> Result<Option<(Uuid, Uuid)>> {
        on!(self, t => t.open_session_of(channel, end_user).await)
    }

    /// A conversation's newest session, whatever its status.
    pub async fn newest_session(&mut self, conversation: Uuid) -> Result<Option<Uuid>> {
        on!(self, t => t.newest_session(conversation).await)
    }

    /// Ends a session that has not ended, now, with `ended_by` and `reason`. `Some(work item)`
    /// if it ended now, `None` if it had ended already.
    pub async fn end_session(
        &mut self,
        session: Uuid,
        ended_by: &str,
        reason: &str,
    ) -> Result<Option<Option<String>>> {
        on!(self, t => t.end_session(session, ended_by, reason).await)
    }

    /// A channel's sessions idle since before `before`, oldest activity first, at most `limit`:
    /// those not ended ([`SWEEP_SELECT_END_SQL`](super::relay::SWEEP_SELECT_END_SQL)), or
    /// only the active ones ([`SWEEP_SELECT_INACTIVATE_SQL`](super::relay::SWEEP_SELECT_INACTIVATE_SQL)).
    pub async fn idle_sessions(
        &mut self,
        channel: &str,
        before: DateTime<Utc>,
        limit: u32,
        active_only: bool,
    ) -> Result<Vec<IdleSession>> {
        on!(self, t => t.idle_sessions(channel, before, limit, active_only).await)
    }

    /// Makes an active session inactive, now. False if it was not active.
    pub async fn inactivate_session(&mut self, session: Uuid) -> Result<bool> {
        on!(self, t => t.inactivate_session(session).await)
    }

    /// Sets the status of a session that has not ended (`active`, `inactive`, `ended`), stamping
    /// when it ended (with `ended_by`) or was inactivated, and its work item if it had none.
    pub async fn set_session_status(
        &mut self,
        session: Uuid,
        status: &str,
        ended_by: &str,
        work_item_id: Option<&str>,
    ) -> Result<()> {
        on!(self, t => t.set_session_status(session, status, ended_by, work_item_id).await)
    }

    /// Sets an end user's consent (`OptIn` or `OptOut`), stamped now.
    pub async fn set_end_user_consent(&mut self, end_user: Uuid, consent: &str) -> Result<()> {
        on!(self, t => t.set_end_user_consent(end_user, consent).await)
    }

    /// Who is in a session as last written (`None`: never written).
    pub async fn session_participants(&mut self, session: Uuid) -> Result<Option<Value>> {
        on!(self, t => t.session_participants(session).await)
    }

    /// Replaces who is in a session.
    pub async fn set_session_participants(
        &mut self,
        session: Uuid,
        participants: &Value,
    ) -> Result<()> {
        on!(self, t => t.set_session_participants(session, participants).await)
    }

    /// The rep message a provider message id maps to, in `direction`: (Salesforce entry id,
    /// conversation).
    pub async fn mapped_message(
        &mut self,
        channel: &str,
        provider_message_id: &str,
        direction: &str,
    ) -> Result<Option<(String, Uuid)>> {
        on!(self, t => t.mapped_message(channel, provider_message_id, direction).await)
    }

    /// The newest unfinished row of an ordering key.
    pub async fn newest_unfinished(&mut self, ordering_key: &str) -> Result<Option<UnfinishedRow>> {
        on!(self, t => t.newest_unfinished(ordering_key).await)
    }

    /// The newest pending row of `kind` of an ordering key.
    pub async fn newest_pending_of_kind(
        &mut self,
        ordering_key: &str,
        kind: &str,
    ) -> Result<Option<i64>> {
        on!(self, t => t.newest_pending_of_kind(ordering_key, kind).await)
    }

    /// Makes the pending rows of `kind` of the ordering keys that are due later due now, in one
    /// statement.
    pub async fn make_due_now(&mut self, ordering_keys: &[String], kind: &str) -> Result<u64> {
        on!(self, t => t.make_due_now(ordering_keys, kind).await)
    }

    /// Makes a pending row due at `at`, if it was due earlier. False if it was not changed.
    pub async fn postpone(&mut self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        on!(self, t => t.postpone(id, at).await)
    }

    /// Replaces a pending row's payload. False if the row is no longer pending.
    pub async fn set_pending_payload(&mut self, id: i64, payload: &Value) -> Result<bool> {
        on!(self, t => t.set_pending_payload(id, payload).await)
    }

    /// Inserts outbox rows, in order, in one statement; their ids, in the same order.
    pub async fn insert_outbox(&mut self, rows: &[NewOutboxRow]) -> Result<Vec<i64>> {
        on!(self, t => t.insert_outbox(rows).await)
    }

    /// Inserts `message_map` rows in one statement (a provider message id already mapped keeps
    /// its mapping).
    pub async fn insert_message_map(&mut self, rows: &[MessageMapRow]) -> Result<()> {
        on!(self, t => t.insert_message_map(rows).await)
    }

    /// Appends audit rows, in order, in one statement, stamped now; their ids.
    pub async fn insert_audit(&mut self, entries: &[AuditEntry]) -> Result<Vec<i64>> {
        on!(self, t => t.insert_audit(entries).await)
    }

    /// Stores a subscription's replay id (and when it last carried an event).
    pub async fn save_cursor(
        &mut self,
        org_id: &str,
        topic: &str,
        replay_id: &[u8],
        event_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        on!(self, t => t.save_cursor(org_id, topic, replay_id, event_at).await)
    }
}

impl From<super::sqlite::SqliteTx> for Tx {
    fn from(t: super::sqlite::SqliteTx) -> Self {
        Self::Sqlite(t)
    }
}

impl From<super::postgres::PgTx> for Tx {
    fn from(t: super::postgres::PgTx) -> Self {
        Self::Postgres(t)
    }
}

/// Sorts the ids a multi-row `INSERT … RETURNING id` gave back: ids grow in insertion order
/// (one statement's rows get ascending ids on both backends), but neither database promises
/// `RETURNING` lists them in that order.
pub(crate) fn in_insert_order(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

/// Which of `keys` a dedupe insert took as new, given the keys it returned: each returned key
/// once, at its first occurrence.
pub(crate) fn first_sightings(
    keys: &[(String, String)],
    fresh: Vec<(String, String)>,
) -> Vec<bool> {
    let mut fresh: std::collections::HashSet<(String, String)> = fresh.into_iter().collect();
    keys.iter().map(|key| fresh.remove(key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_new_only_the_first_time() {
        let key = |c: &str, k: &str| (c.to_owned(), k.to_owned());
        let keys = [
            key("wa", "a"),
            key("wa", "b"),
            key("wa", "a"),
            key("rcs", "a"),
        ];
        let fresh = vec![key("rcs", "a"), key("wa", "a")];
        assert_eq!(first_sightings(&keys, fresh), [true, false, false, true]);
        assert_eq!(in_insert_order(vec![7, 3, 5]), [3, 5, 7]);
    }
}
