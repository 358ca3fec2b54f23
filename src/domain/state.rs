//! The end users, conversations and sessions a group of events touches: read with one
//! statement, decided on in memory, written with one statement per table.
//!
//! [`State::load`] reads every end user the group's events name (by any identifier), with their
//! conversation on the channel and its open session. The rules then ask [`State`] — find or
//! create an end user, their conversation, an open session — exactly as they would ask the
//! database one event after another, and get the same answers: a lookup sees what earlier
//! events of the group created or changed. [`State::flush`] writes what changed, before the
//! outbox rows that name it; an operation that must see the state in the database (ending a
//! session, a receipt's conversation) flushes first.
//!
//! New rows get their ids here. If a concurrent transaction (another PostgreSQL writer or
//! replica) created the same end user or conversation after the read, the insert finds it and
//! the transaction fails with [`StoreError::Raced`]; done again, the read finds that row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{
    EndUserIdentity, Result, StoreError,
    tx::{ConversationRow, EndUserRow, SessionActivity, Tx, UserProbe},
};

/// An end user the group knows: stored, or new in this group.
#[derive(Debug)]
struct User {
    row: EndUserRow,
    salesforce_client_id: String,
    /// Oldest first: stored ones by when they were first seen, then new ones in order.
    order: (DateTime<Utc>, usize),
    stored: bool,
    changed: bool,
}

/// A conversation the group knows.
#[derive(Debug)]
struct Conversation {
    id: Uuid,
    identifier: Option<String>,
    open_session: Option<Uuid>,
    stored: bool,
    identifier_changed: bool,
}

/// A session's activity waiting to be written.
#[derive(Debug)]
struct Activity {
    row: SessionActivity,
    new: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct State {
    users: Vec<User>,
    /// (channel, end user) → conversation.
    conversations: HashMap<(String, Uuid), Conversation>,
    /// Conversation id → (channel, end user).
    conversation_keys: HashMap<Uuid, (String, Uuid)>,
    activity: Vec<Activity>,
    created: usize,
}

impl State {
    /// Reads the end users that `probes` (channel, identity) name, in one statement.
    pub async fn load<'a>(
        tx: &mut Tx,
        probes: impl IntoIterator<Item = (&'a str, &'a EndUserIdentity)>,
    ) -> Result<Self> {
        let mut unique: Vec<UserProbe> = Vec::new();
        for (channel, who) in probes {
            let probe = UserProbe {
                channel: channel.to_owned(),
                key: who.key.clone(),
                msisdn: who.msisdn.clone(),
                channel_user_id: who.channel_user_id.clone(),
            };
            if !unique.contains(&probe) {
                unique.push(probe);
            }
        }
        let mut state = Self::default();
        for known in tx.known_end_users(&unique).await? {
            if state.users.iter().any(|u| u.row.id == known.user.id) {
                continue;
            }
            if let Some((id, identifier)) = known.conversation {
                let key = (known.user.channel.clone(), known.user.id);
                state.conversation_keys.insert(id, key.clone());
                state.conversations.insert(
                    key,
                    Conversation {
                        id,
                        identifier,
                        open_session: known.open_session,
                        stored: true,
                        identifier_changed: false,
                    },
                );
            }
            state.users.push(User {
                order: (known.created_at, 0),
                row: known.user,
                salesforce_client_id: known.salesforce_client_id,
                stored: true,
                changed: false,
            });
        }
        state.users.sort_by_key(|u| (u.order, u.row.id));
        Ok(state)
    }

    /// The end user of a channel that any of `who`'s identifiers matches (the oldest), their
    /// identifiers refreshed with those given; or a new end user. Their id and the key
    /// Salesforce knows them by.
    pub fn end_user(
        &mut self,
        channel: &str,
        who: &EndUserIdentity,
        now: DateTime<Utc>,
    ) -> (Uuid, String) {
        let same = |mine: &Option<String>, theirs: &Option<String>| {
            theirs.is_some() && mine.as_deref() == theirs.as_deref()
        };
        let found = self.users.iter_mut().find(|u| {
            u.row.channel == channel
                && (u.row.provider_user_key == who.key
                    || same(&u.row.msisdn, &who.msisdn)
                    || same(&u.row.channel_user_id, &who.channel_user_id))
        });
        if let Some(user) = found {
            for (mine, theirs) in [
                (&mut user.row.msisdn, &who.msisdn),
                (&mut user.row.channel_user_id, &who.channel_user_id),
                (&mut user.row.display_name, &who.display_name),
            ] {
                if theirs.is_some() && mine != theirs {
                    mine.clone_from(theirs);
                    user.changed = true;
                }
            }
            return (user.row.id, user.salesforce_client_id.clone());
        }
        self.created += 1;
        let id = Uuid::now_v7();
        self.users.push(User {
            row: EndUserRow {
                id,
                channel: channel.to_owned(),
                provider_user_key: who.key.clone(),
                msisdn: who.msisdn.clone(),
                channel_user_id: who.channel_user_id.clone(),
                display_name: who.display_name.clone(),
            },
            salesforce_client_id: who.key.clone(),
            order: (now, self.created),
            stored: false,
            changed: false,
        });
        (id, who.key.clone())
    }

    /// The end user's conversation on the channel, if there is one.
    pub fn find_conversation(&self, channel: &str, end_user: Uuid) -> Option<Uuid> {
        self.conversations
            .get(&(channel.to_owned(), end_user))
            .map(|c| c.id)
    }

    /// The end user's conversation on the channel, created if there is none.
    pub fn conversation(&mut self, channel: &str, end_user: Uuid) -> Uuid {
        let key = (channel.to_owned(), end_user);
        if let Some(c) = self.conversations.get(&key) {
            return c.id;
        }
        let id = Uuid::now_v7();
        self.conversation_keys.insert(id, key.clone());
        self.conversations.insert(
            key,
            Conversation {
                id,
                identifier: None,
                open_session: None,
                stored: false,
                identifier_changed: false,
            },
        );
        id
    }

    fn known(&mut self, conversation: Uuid) -> Result<&mut Conversation> {
        self.conversation_keys
            .get(&conversation)
            .and_then(|key| self.conversations.get_mut(key))
            .ok_or_else(|| {
                StoreError::Corrupt(format!("conversation {conversation} was not looked up"))
            })
    }

    /// Sets the conversation's Salesforce `conversationIdentifier`.
    pub fn set_conversation_identifier(
        &mut self,
        conversation: Uuid,
        identifier: &str,
    ) -> Result<()> {
        let c = self.known(conversation)?;
        if c.identifier.as_deref() != Some(identifier) {
            c.identifier = Some(identifier.to_owned());
            c.identifier_changed = true;
        }
        Ok(())
    }

    /// The (conversation, open session) of an end user on a channel, if a session is open.
    pub fn open_session_of(&self, channel: &str, end_user: Uuid) -> Option<(Uuid, Uuid)> {
        let c = self.conversations.get(&(channel.to_owned(), end_user))?;
        c.open_session.map(|s| (c.id, s))
    }

    /// The conversation's newest session that has not ended, made active with its activity
    /// stamped `activity_at` (and the end user's message `inbound` kept: when, provider id);
    /// or a new active session, opened now.
    pub fn open_session(
        &mut self,
        conversation: Uuid,
        activity_at: DateTime<Utc>,
        inbound: Option<(DateTime<Utc>, &str)>,
        now: DateTime<Utc>,
    ) -> Result<Uuid> {
        let (channel, _) = self
            .conversation_keys
            .get(&conversation)
            .cloned()
            .unwrap_or_default();
        let c = self.known(conversation)?;
        let inbound = inbound.map(|(at, id)| (at, id.to_owned()));
        let Some(session) = c.open_session else {
            let id = Uuid::now_v7();
            c.open_session = Some(id);
            self.activity.push(Activity {
                row: SessionActivity {
                    id,
                    conversation_id: conversation,
                    channel,
                    last_activity_at: now,
                    last_inbound: inbound,
                },
                new: true,
            });
            return Ok(id);
        };
        match self.activity.iter_mut().find(|a| a.row.id == session) {
            Some(a) => {
                a.row.last_activity_at = activity_at;
                if inbound.is_some() {
                    a.row.last_inbound = inbound;
                }
            }
            None => self.activity.push(Activity {
                row: SessionActivity {
                    id: session,
                    conversation_id: conversation,
                    channel,
                    last_activity_at: activity_at,
                    last_inbound: inbound,
                },
                new: false,
            }),
        }
        Ok(session)
    }

    /// The conversation's open session ended (by an operation in the database, after
    /// [`State::flush`]): the next event opens a new one.
    pub fn session_ended(&mut self, conversation: Uuid, session: Uuid) {
        if let Ok(c) = self.known(conversation)
            && c.open_session == Some(session)
        {
            c.open_session = None;
        }
    }

    /// Writes what changed since the last flush: new end users, refreshed identifiers, new
    /// conversations and their identifiers, new sessions, sessions' activity — one statement
    /// per kind of change, none when nothing changed.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<()> {
        self.flush_records(tx).await?;
        let touched: Vec<SessionActivity> = std::mem::take(&mut self.activity)
            .into_iter()
            .map(|a| a.row)
            .collect();
        tx.touch_sessions(&touched).await
    }

    /// [`State::flush`] but for existing sessions' activity: every row new work can refer to
    /// (end users, conversations, new sessions). A group's last flush writes its outbox and
    /// audit rows between the two, so that on PostgreSQL, where two writers touching one
    /// session take turns, the session's row is locked for as short a time as possible: from
    /// the last statement to the commit.
    pub async fn flush_records(&mut self, tx: &mut Tx) -> Result<()> {
        let new_users: Vec<EndUserRow> = self
            .users
            .iter()
            .filter(|u| !u.stored)
            .map(|u| u.row.clone())
            .collect();
        tx.insert_end_users(&new_users).await?;
        let changed: Vec<EndUserRow> = self
            .users
            .iter()
            .filter(|u| u.stored && u.changed)
            .map(|u| u.row.clone())
            .collect();
        tx.update_end_users(&changed).await?;
        for user in &mut self.users {
            user.stored = true;
            user.changed = false;
        }
        let mut new_conversations = Vec::new();
        let mut identifiers = Vec::new();
        for ((channel, end_user), c) in &self.conversations {
            if !c.stored {
                new_conversations.push(ConversationRow {
                    id: c.id,
                    channel: channel.clone(),
                    end_user_id: *end_user,
                });
            }
            if c.identifier_changed
                && let Some(identifier) = &c.identifier
            {
                identifiers.push((c.id, identifier.clone()));
            }
        }
        new_conversations.sort_by_key(|c| c.id);
        tx.insert_conversations(&new_conversations).await?;
        tx.set_conversation_identifiers(&identifiers).await?;
        for c in self.conversations.values_mut() {
            c.stored = true;
            c.identifier_changed = false;
        }
        let (new, touched): (Vec<Activity>, Vec<Activity>) = std::mem::take(&mut self.activity)
            .into_iter()
            .partition(|a| a.new);
        let new: Vec<SessionActivity> = new.into_iter().map(|a| a.row).collect();
        tx.insert_sessions(&new).await?;
        self.activity = touched;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(key: &str, msisdn: Option<&str>, user_id: Option<&str>) -> EndUserIdentity {
        EndUserIdentity {
            key: key.into(),
            msisdn: msisdn.map(Into::into),
            channel_user_id: user_id.map(Into::into),
            display_name: None,
        }
    }

    #[test]
    fn an_end_user_created_in_the_group_is_found_by_any_identifier_later_in_it() {
        let now = Utc::now();
        let mut state = State::default();
        let (first, key) =
            state.end_user("wa", &who("+6591234567", Some("+6591234567"), None), now);
        assert_eq!(key, "+6591234567");
        // Later the same person comes with their user id too, then with the user id only.
        let (again, _) = state.end_user(
            "wa",
            &who("+6591234567", Some("+6591234567"), Some("SG.1")),
            now,
        );
        let (by_user_id, key) = state.end_user("wa", &who("SG.1", None, Some("SG.1")), now);
        assert_eq!((again, by_user_id), (first, first));
        assert_eq!(key, "+6591234567", "the key stays the one first seen");
        // Another channel is another end user.
        let (other, _) = state.end_user("rcs", &who("+6591234567", Some("+6591234567"), None), now);
        assert_ne!(other, first);
        assert_eq!(state.users.len(), 2);
    }

    #[test]
    fn a_session_opened_in_the_group_is_reused_until_it_ends() {
        let now = Utc::now();
        let mut state = State::default();
        let (user, _) = state.end_user("wa", &who("+6591234567", None, None), now);
        let conversation = state.conversation("wa", user);
        assert_eq!(state.conversation("wa", user), conversation);
        let first = state.open_session(conversation, now, None, now).unwrap();
        let later = now + chrono::Duration::seconds(5);
        let same = state
            .open_session(conversation, later, Some((later, "m2")), now)
            .unwrap();
        assert_eq!(same, first);
        assert_eq!(state.activity.len(), 1, "one row for the session");
        assert_eq!(state.activity[0].row.last_activity_at, later);
        assert_eq!(
            state.activity[0].row.last_inbound,
            Some((later, "m2".to_owned()))
        );
        state.session_ended(conversation, first);
        let next = state.open_session(conversation, later, None, now).unwrap();
        assert_ne!(next, first);
    }
}
