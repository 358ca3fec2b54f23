//! The intake's rules: what a provider webhook ([`inbound`]) or a Salesforce platform event
//! ([`outbound`]) becomes — end user, conversation, session, which jobs, receipts coalescing,
//! typing-stopped timers, opt-out — decided here in ordinary Rust, one module per direction;
//! and the sweeper's ([`lifecycle`]): which idle sessions end or go inactive, and what
//! Salesforce is told.
//!
//! The rules drive a store transaction ([`Tx`]): small data operations that decide nothing.
//! The rows a group of webhooks (or a batch of platform events) writes are gathered in
//! [`Writes`] and inserted at the end with one statement per table (outbox, message map,
//! audit log). A rule that looks at outbox work (the newest unfinished row of a conversation, a
//! waiting typing-stopped) sees the gathered rows first, as it would have seen them inserted:
//! they are newer than anything stored.

pub mod audit_chain;
pub mod capabilities;
pub mod carousel;
pub mod choices;
pub mod inbound;
pub mod lifecycle;
pub mod links;
pub mod outbound;
pub mod participants;
pub mod privacy;
pub mod state;
pub mod time_picker;
pub mod window;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    store::job::Job,
    store::{
        AuditEntry, Result,
        tx::{MessageMapRow, NewOutboxRow, Tx},
    },
};

/// An outbox row: one already stored, or one gathered in [`Writes`] (by its place there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRef {
    /// Stored, with this id.
    Stored(i64),
    /// Gathered, not inserted yet.
    New(usize),
}

/// Where an audit row's detail names outbox rows, filled in once they are inserted.
#[derive(Debug, Clone)]
enum Ids {
    /// `field: id` (or `null`).
    One(&'static str, Option<RowRef>),
    /// `field: [ids]`.
    Many(&'static str, Vec<RowRef>),
}

/// A gathered outbox row.
#[derive(Debug, Clone)]
struct Gathered {
    org_id: String,
    channel: String,
    ordering_key: String,
    conversation_id: Option<Uuid>,
    session_id: Option<Uuid>,
    job: Job,
    due: DateTime<Utc>,
}

/// The newest unfinished outbox row of an ordering key.
#[derive(Debug, Clone)]
pub enum Unfinished {
    /// Stored: its id, kind, status and payload.
    Stored(crate::store::tx::UnfinishedRow),
    /// Gathered (pending), by its place.
    New(usize),
}

/// Rows gathered for one transaction, inserted together by [`Writes::flush`].
#[derive(Debug, Default)]
pub struct Writes {
    outbox: Vec<Gathered>,
    message_map: Vec<MessageMapRow>,
    audit: Vec<(AuditEntry, Option<Ids>)>,
    /// (ordering key, kind) whose stored pending rows are to be made due now.
    due_now: Vec<(String, String)>,
}

impl Writes {
    /// Gathers an outbox row.
    #[allow(clippy::too_many_arguments)]
    pub fn outbox(
        &mut self,
        org_id: &str,
        channel: &str,
        ordering_key: String,
        conversation_id: Option<Uuid>,
        session_id: Option<Uuid>,
        job: Job,
        due: DateTime<Utc>,
    ) -> RowRef {
        self.outbox.push(Gathered {
            org_id: org_id.to_owned(),
            channel: channel.to_owned(),
            ordering_key,
            conversation_id,
            session_id,
            job,
            due,
        });
        RowRef::New(self.outbox.len() - 1)
    }

    /// Gathers a `message_map` row.
    pub fn message_map(&mut self, row: MessageMapRow) {
        self.message_map.push(row);
    }

    /// Gathers an audit row.
    pub fn audit(&mut self, entry: AuditEntry) {
        self.audit.push((entry, None));
    }

    /// Gathers an audit row whose detail `field` is the id of `row` (`null` without one).
    pub fn audit_naming(&mut self, entry: AuditEntry, field: &'static str, row: Option<RowRef>) {
        self.audit.push((entry, Some(Ids::One(field, row))));
    }

    /// Gathers an audit row whose detail `field` lists the ids of `rows`.
    pub fn audit_listing(&mut self, entry: AuditEntry, field: &'static str, rows: Vec<RowRef>) {
        self.audit.push((entry, Some(Ids::Many(field, rows))));
    }

    /// A gathered row's job.
    pub fn job_mut(&mut self, index: usize) -> &mut Job {
        &mut self.outbox[index].job
    }

    /// The newest unfinished row of `ordering_key`: a gathered one, else a stored one.
    pub async fn newest_unfinished(
        &mut self,
        tx: &mut Tx,
        ordering_key: &str,
    ) -> Result<Option<Unfinished>> {
        if let Some(index) = self
            .outbox
            .iter()
            .rposition(|r| r.ordering_key == ordering_key)
        {
            return Ok(Some(Unfinished::New(index)));
        }
        self.flush_due_now(tx).await?;
        Ok(tx
            .newest_unfinished(ordering_key)
            .await?
            .map(Unfinished::Stored))
    }

    /// The newest pending row of `kind` of `ordering_key`: a gathered one, else a stored one.
    pub async fn newest_pending_of_kind(
        &mut self,
        tx: &mut Tx,
        ordering_key: &str,
        kind: &str,
    ) -> Result<Option<RowRef>> {
        if let Some(index) = self
            .outbox
            .iter()
            .rposition(|r| r.ordering_key == ordering_key && r.job.kind() == kind)
        {
            return Ok(Some(RowRef::New(index)));
        }
        self.flush_due_now(tx).await?;
        Ok(tx
            .newest_pending_of_kind(ordering_key, kind)
            .await?
            .map(RowRef::Stored))
    }

    /// Makes the pending rows of `kind` of `ordering_key` that are due later due now: gathered
    /// ones at once, stored ones with one statement for the lot, before anything reads stored
    /// rows again or the gathered rows are inserted.
    pub fn make_due_now(&mut self, now: DateTime<Utc>, ordering_key: &str, kind: &str) {
        for row in self
            .outbox
            .iter_mut()
            .filter(|r| r.ordering_key == ordering_key && r.job.kind() == kind && r.due > now)
        {
            row.due = now;
        }
        let wanted = (ordering_key.to_owned(), kind.to_owned());
        if !self.due_now.contains(&wanted) {
            self.due_now.push(wanted);
        }
    }

    /// Carries out the stored half of [`Writes::make_due_now`]: one statement per kind.
    async fn flush_due_now(&mut self, tx: &mut Tx) -> Result<()> {
        while let Some((_, kind)) = self.due_now.first().cloned() {
            let (keys, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.due_now)
                .into_iter()
                .partition(|(_, k)| *k == kind);
            self.due_now = rest;
            let keys: Vec<String> = keys.into_iter().map(|(key, _)| key).collect();
            tx.make_due_now(&keys, &kind).await?;
        }
        Ok(())
    }

    /// Makes a pending row due at `at`, if it was due earlier.
    pub async fn postpone(&mut self, tx: &mut Tx, row: RowRef, at: DateTime<Utc>) -> Result<()> {
        match row {
            RowRef::New(index) => {
                let row = &mut self.outbox[index];
                if row.due < at {
                    row.due = at;
                }
            }
            RowRef::Stored(id) => {
                self.flush_due_now(tx).await?;
                tx.postpone(id, at).await?;
            }
        }
        Ok(())
    }

    /// Inserts what was gathered — outbox rows, then message map rows, then audit rows, each
    /// with one statement, in the order gathered — with the outbox ids filled into the audit
    /// rows that name them. Returns the outbox ids.
    pub async fn flush(mut self, tx: &mut Tx) -> Result<Vec<i64>> {
        self.flush_due_now(tx).await?;
        let rows: Vec<NewOutboxRow> = self
            .outbox
            .into_iter()
            .map(|r| NewOutboxRow {
                kind: r.job.kind().to_owned(),
                payload: r.job.payload(),
                priority: r.job.priority(),
                org_id: r.org_id,
                channel: r.channel,
                ordering_key: r.ordering_key,
                conversation_id: r.conversation_id,
                session_id: r.session_id,
                due: r.due,
            })
            .collect();
        let ids = tx.insert_outbox(&rows).await?;
        tx.insert_message_map(&self.message_map).await?;
        let id_of = |row: &RowRef| match row {
            RowRef::Stored(id) => Value::from(*id),
            RowRef::New(index) => Value::from(ids[*index]),
        };
        let entries: Vec<AuditEntry> = self
            .audit
            .into_iter()
            .map(|(mut entry, named)| {
                if let (Some(named), Value::Object(detail)) = (named, &mut entry.detail) {
                    match named {
                        Ids::One(field, row) => {
                            detail.insert(field.into(), row.as_ref().map_or(Value::Null, id_of));
                        }
                        Ids::Many(field, rows) => {
                            detail.insert(field.into(), rows.iter().map(id_of).collect());
                        }
                    }
                }
                entry
            })
            .collect();
        tx.insert_audit(&entries).await?;
        Ok(ids)
    }
}
