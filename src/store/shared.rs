//! The SQL both backends share, written once.
//!
//! Most statements are the same text on SQLite and PostgreSQL (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`); what differs is how values are bound and read back (timestamps are
//! `timestamptz` on PostgreSQL and fixed-width text on SQLite, ids are `uuid` or text, JSON is
//! `jsonb` or text) and how a write transaction starts. Each backend module therefore defines:
//!
//! - `type Db`, and the column types `Ts`, `Id`, `Js` with `enc_*` / `dec_*` conversions;
//! - inherent methods `begin_write`, `reader`, `backend_migrate`, `backend_schema_status`,
//!   `backend_close`, `backend_release_earlier_leases`;
//!
//! and then invokes [`impl_store!`], which writes the [`Store`](super::Store) implementation
//! from those pieces. Statements that must differ (row locking, advisory locks) belong in the
//! backend modules.

/// Writes `impl Store for $store` from the backend's conversions and inherent methods.
macro_rules! impl_store {
    ($store:ty, $tx:ident) => {
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> Result<Vec<AppliedMigration>> {
                self.backend_migrate().await
            }

            async fn schema_status(&self) -> Result<SchemaStatus> {
                self.backend_schema_status().await
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn sync_config(
                &self,
                orgs: &[OrgRecord],
                channels: &[ChannelRecord],
            ) -> Result<SyncReport> {
                use std::collections::BTreeMap;
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;

                let stored_orgs: BTreeMap<String, (String, bool)> =
                    sqlx::query_as::<_, (String, String, Option<Ts>)>(
                        "SELECT org_id, content_hash, retired_at FROM orgs",
                    )
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(id, hash, retired)| (id, (hash, retired.is_some())))
                    .collect();
                let stored_channels: BTreeMap<String, (String, bool)> =
                    sqlx::query_as::<_, (String, String, Option<Ts>)>(
                        "SELECT name, content_hash, retired_at FROM channels",
                    )
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(name, hash, retired)| (name, (hash, retired.is_some())))
                    .collect();

                let (org_changes, org_upserts) = $crate::store::plan_sync(
                    &stored_orgs,
                    orgs.iter().map(|o| (o.org_id.as_str(), o.content_hash.as_str())),
                );
                let (channel_changes, channel_upserts) = $crate::store::plan_sync(
                    &stored_channels,
                    channels.iter().map(|c| (c.name.as_str(), c.content_hash.as_str())),
                );

                // Retire channels first: it frees their addresses for channels added now.
                for name in &channel_changes.retired {
                    sqlx::query(
                        "UPDATE channels SET retired_at = $1, updated_at = $1 WHERE name = $2",
                    )
                    .bind(enc_ts(now))
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                for org in orgs.iter().filter(|o| org_upserts.contains(&o.org_id)) {
                    sqlx::query(
                        "INSERT INTO orgs (org_id, name, content_hash, settings, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
                         ON CONFLICT (org_id) DO UPDATE SET name = excluded.name, \
                         content_hash = excluded.content_hash, settings = excluded.settings, \
                         updated_at = excluded.updated_at, retired_at = NULL",
                    )
                    .bind(&org.org_id)
                    .bind(&org.name)
                    .bind(&org.content_hash)
                    .bind(enc_json(&org.settings))
                    .bind(enc_ts(now))
                    .execute(&mut *tx)
                    .await?;
                }
                for channel in channels.iter().filter(|c| channel_upserts.contains(&c.name)) {
                    sqlx::query(
                        "INSERT INTO channels (name, org_id, product, provider, \
                         channel_address_identifier, content_hash, settings, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                         ON CONFLICT (name) DO UPDATE SET org_id = excluded.org_id, \
                         product = excluded.product, provider = excluded.provider, \
                         channel_address_identifier = excluded.channel_address_identifier, \
                         content_hash = excluded.content_hash, settings = excluded.settings, \
                         updated_at = excluded.updated_at, retired_at = NULL",
                    )
                    .bind(&channel.name)
                    .bind(&channel.org_id)
                    .bind(&channel.product)
                    .bind(&channel.provider)
                    .bind(&channel.channel_address_identifier)
                    .bind(&channel.content_hash)
                    .bind(enc_json(&channel.settings))
                    .bind(enc_ts(now))
                    .execute(&mut *tx)
                    .await?;
                }
                for org_id in &org_changes.retired {
                    sqlx::query(
                        "UPDATE orgs SET retired_at = $1, updated_at = $1 WHERE org_id = $2",
                    )
                    .bind(enc_ts(now))
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
                }

                let org_hash = |id: &str| {
                    orgs.iter()
                        .find(|o| o.org_id == id)
                        .map(|o| o.content_hash.clone())
                };
                let channel_hash = |name: &str| {
                    channels
                        .iter()
                        .find(|c| c.name == name)
                        .map(|c| c.content_hash.clone())
                };
                let channel_org = |name: &str| {
                    channels
                        .iter()
                        .find(|c| c.name == name)
                        .map(|c| c.org_id.clone())
                };
                let mut entries = $crate::store::sync_audit_entries(
                    "org",
                    &org_changes,
                    org_hash,
                    |id| Some(id.to_owned()),
                );
                entries.extend($crate::store::sync_audit_entries(
                    "channel",
                    &channel_changes,
                    channel_hash,
                    channel_org,
                ));
                for entry in &entries {
                    insert_audit(&mut tx, now, entry).await?;
                }
                tx.commit().await?;
                Ok(SyncReport {
                    orgs: org_changes,
                    channels: channel_changes,
                })
            }

            async fn lift_recorded_pauses(
                &self,
                audit: &(dyn Fn(&RecordedPause) -> AuditEntry + Sync),
            ) -> Result<Vec<RecordedPause>> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let channels: Vec<(String, String, Option<String>)> = sqlx::query_as(
                    "SELECT name, org_id, pause_reason FROM channels \
                     WHERE paused_until IS NOT NULL OR pause_reason IS NOT NULL ORDER BY name",
                )
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE channels SET paused_until = NULL, pause_reason = NULL \
                     WHERE paused_until IS NOT NULL OR pause_reason IS NOT NULL",
                )
                .execute(&mut *tx)
                .await?;
                let orgs: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT org_id, pause_reason FROM orgs \
                     WHERE paused_until IS NULL AND pause_reason IS NOT NULL ORDER BY org_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE orgs SET pause_reason = NULL \
                     WHERE paused_until IS NULL AND pause_reason IS NOT NULL",
                )
                .execute(&mut *tx)
                .await?;
                let mut lifted: Vec<RecordedPause> = channels
                    .into_iter()
                    .map(|(name, org_id, reason)| RecordedPause::Channel {
                        name,
                        org_id,
                        reason,
                    })
                    .collect();
                lifted.extend(
                    orgs.into_iter()
                        .map(|(org_id, reason)| RecordedPause::Org { org_id, reason }),
                );
                for pause in &lifted {
                    insert_audit(&mut tx, now, &audit(pause)).await?;
                }
                tx.commit().await?;
                Ok(lifted)
            }

            async fn channels(&self) -> Result<Vec<StoredChannel>> {
                type Row = (
                    String,
                    String,
                    String,
                    String,
                    String,
                    String,
                    Js,
                    Ts,
                    Ts,
                    Option<Ts>,
                    Option<Ts>,
                    Option<String>,
                );
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT name, org_id, product, provider, channel_address_identifier, \
                     content_hash, settings, created_at, updated_at, retired_at, paused_until, \
                     pause_reason FROM channels ORDER BY name",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(StoredChannel {
                            name: r.0,
                            org_id: r.1,
                            product: r.2,
                            provider: r.3,
                            channel_address_identifier: r.4,
                            content_hash: r.5,
                            settings: dec_json(r.6)?,
                            created_at: dec_ts(r.7)?,
                            updated_at: dec_ts(r.8)?,
                            retired_at: r.9.map(dec_ts).transpose()?,
                            paused_until: r.10.map(dec_ts).transpose()?,
                            pause_reason: r.11,
                        })
                    })
                    .collect()
            }

            async fn orgs(&self) -> Result<Vec<StoredOrg>> {
                type Row = (String, String, String, Ts, Option<Ts>, Option<Ts>, Option<String>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT org_id, name, content_hash, created_at, retired_at, paused_until, \
                     pause_reason FROM orgs ORDER BY org_id",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(StoredOrg {
                            org_id: r.0,
                            name: r.1,
                            content_hash: r.2,
                            created_at: dec_ts(r.3)?,
                            retired_at: r.4.map(dec_ts).transpose()?,
                            paused_until: r.5.map(dec_ts).transpose()?,
                            pause_reason: r.6,
                        })
                    })
                    .collect()
            }

            async fn save_token(&self, token: &SealedToken) -> Result<()> {
                let now = enc_ts(self.clock.now());
                sqlx::query(
                    "INSERT INTO oauth_tokens (org_id, sealed_token, key_id, instance_url, \
                     minted_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (org_id) DO UPDATE SET sealed_token = excluded.sealed_token, \
                     key_id = excluded.key_id, instance_url = excluded.instance_url, \
                     minted_at = excluded.minted_at, updated_at = excluded.updated_at",
                )
                .bind(&token.org_id)
                .bind(&token.sealed_token)
                .bind(&token.key_id)
                .bind(&token.instance_url)
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn token(&self, org_id: &str) -> Result<Option<StoredToken>> {
                let row: Option<(String, String, String, Option<String>, Ts)> = sqlx::query_as(
                    "SELECT org_id, sealed_token, key_id, instance_url, minted_at \
                     FROM oauth_tokens WHERE org_id = $1",
                )
                .bind(org_id)
                .fetch_optional(self.reader())
                .await?;
                row.map(|(org_id, sealed_token, key_id, instance_url, minted_at)| {
                    Ok(StoredToken {
                        token: SealedToken {
                            org_id,
                            sealed_token,
                            key_id,
                            instance_url,
                        },
                        minted_at: dec_ts(minted_at)?,
                    })
                })
                .transpose()
            }

            async fn discard_token(&self, org_id: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM oauth_tokens WHERE org_id = $1")
                    .bind(org_id)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_org_pause(
                &self,
                org_id: &str,
                pause: Option<(chrono::DateTime<chrono::Utc>, String)>,
            ) -> Result<bool> {
                let (until, reason) = match pause {
                    Some((until, reason)) => (Some(enc_ts(until)), Some(reason)),
                    None => (None, None),
                };
                // A disabled org (a reason without an end) stays disabled.
                let done = sqlx::query(
                    "UPDATE orgs SET \
                     paused_until = CASE WHEN paused_until IS NULL AND pause_reason IS NOT NULL \
                       THEN NULL ELSE $1 END, \
                     pause_reason = CASE WHEN paused_until IS NULL AND pause_reason IS NOT NULL \
                       THEN pause_reason ELSE $2 END \
                     WHERE org_id = $3",
                )
                .bind(until)
                .bind(reason)
                .bind(org_id)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_org_disabled(&self, org_id: &str, reason: Option<&str>) -> Result<bool> {
                let done = match reason {
                    Some(reason) => sqlx::query(
                        "UPDATE orgs SET paused_until = NULL, pause_reason = $1 WHERE org_id = $2",
                    )
                    .bind(reason)
                    .bind(org_id),
                    None => sqlx::query(
                        "UPDATE orgs SET pause_reason = NULL WHERE org_id = $1 \
                         AND paused_until IS NULL AND pause_reason IS NOT NULL",
                    )
                    .bind(org_id),
                }
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_channel_pause(
                &self,
                channel: &str,
                until: Option<chrono::DateTime<chrono::Utc>>,
                reason: Option<&str>,
            ) -> Result<bool> {
                let done = match until {
                    Some(until) => sqlx::query(
                        "UPDATE channels SET paused_until = $1, \
                         pause_reason = COALESCE($2, pause_reason) WHERE name = $3",
                    )
                    .bind(enc_ts(until))
                    .bind(reason)
                    .bind(channel),
                    None => sqlx::query(
                        "UPDATE channels SET paused_until = NULL, pause_reason = NULL \
                         WHERE name = $1",
                    )
                    .bind(channel),
                }
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn sessions(
                &self,
                filter: &$crate::store::SessionFilter,
            ) -> Result<Vec<$crate::store::SessionSummary>> {
                self.session_summaries(
                    None,
                    filter.channel.as_deref(),
                    filter.status.as_deref(),
                    if filter.limit == 0 { 100 } else { filter.limit },
                )
                .await
            }

            async fn session(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::SessionDetail>> {
                let Some(summary) = self
                    .session_summaries(Some(id), None, None, 1)
                    .await?
                    .into_iter()
                    .next()
                else {
                    return Ok(None);
                };
                type Row = (
                    Option<Ts>,
                    Option<Ts>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Ts,
                    Id,
                    String,
                    String,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Ts,
                );
                let row: Option<Row> = sqlx::query_as(
                    "SELECT s.last_inbound_at, s.inactivated_at, s.ended_by, s.end_reason, \
                     c.conversation_identifier, c.created_at, u.id, u.provider_user_key, \
                     u.salesforce_client_id, u.msisdn, u.channel_user_id, u.display_name, \
                     u.created_at \
                     FROM sessions s JOIN conversations c ON c.id = s.conversation_id \
                     JOIN end_users u ON u.id = c.end_user_id WHERE s.id = $1",
                )
                .bind(enc_uuid(id))
                .fetch_optional(self.reader())
                .await?;
                let Some(r) = row else {
                    return Ok(None);
                };
                Ok(Some($crate::store::SessionDetail {
                    summary,
                    last_inbound_at: r.0.map(dec_ts).transpose()?,
                    inactivated_at: r.1.map(dec_ts).transpose()?,
                    ended_by: r.2,
                    end_reason: r.3,
                    conversation_identifier: r.4,
                    conversation_created_at: dec_ts(r.5)?,
                    end_user: $crate::store::EndUserRecord {
                        id: dec_uuid(r.6)?,
                        provider_user_key: r.7,
                        salesforce_client_id: r.8,
                        msisdn: r.9,
                        channel_user_id: r.10,
                        display_name: r.11,
                        created_at: dec_ts(r.12)?,
                    },
                }))
            }

            async fn session_by_work_item(
                &self,
                work_item_id: &str,
            ) -> Result<Option<uuid::Uuid>> {
                // A routing may hold the 18-character form; the session holds 15 characters.
                let row: Option<(Id,)> = sqlx::query_as(
                    "SELECT id FROM sessions WHERE work_item_id = $1",
                )
                .bind(work_item_id)
                .fetch_optional(self.reader())
                .await?;
                let row = match row {
                    Some(row) => Some(row),
                    None => {
                        sqlx::query_as(
                            "SELECT session_id FROM routings WHERE session_id IS NOT NULL \
                             AND substr(work_item_id, 1, 15) = $1 \
                             ORDER BY created_at DESC LIMIT 1",
                        )
                        .bind(work_item_id)
                        .fetch_optional(self.reader())
                        .await?
                    }
                };
                row.map(|(id,)| dec_uuid(id)).transpose()
            }

            async fn quarantine(&self, item: &NewQuarantine) -> Result<i64> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO quarantine (channel, provider, reason, content_type, body, \
                     received_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(&item.channel)
                .bind(&item.provider)
                .bind(&item.reason)
                .bind(&item.content_type)
                .bind(&item.body)
                .bind(enc_ts(now))
                .fetch_one(&mut *tx)
                .await?;
                let entry = AuditEntry::new(
                    "webhook.quarantined",
                    format!(
                        "{} webhook for channel {} could not be read and was quarantined as #{id}: {}",
                        item.provider, item.channel, item.reason
                    ),
                )
                .severity(Severity::Warning)
                .actor("provider")
                .channel(&item.channel)
                .detail(serde_json::json!({
                    "quarantine_id": id,
                    "reason": item.reason,
                    "size": item.body.len(),
                }));
                insert_audit(&mut tx, now, &entry).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn quarantined(
                &self,
                channel: Option<&str>,
                limit: u32,
            ) -> Result<Vec<QuarantinedWebhook>> {
                let rows: Vec<QuarantineRow> = sqlx::query_as(
                    "SELECT id, channel, provider, reason, content_type, body, received_at \
                     FROM quarantine WHERE ($1 IS NULL OR channel = $1) ORDER BY id DESC LIMIT $2",
                )
                .bind(channel)
                .bind(i64::from(limit.max(1)))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(quarantine_row).collect()
            }

            async fn quarantined_item(&self, id: i64) -> Result<Option<QuarantinedWebhook>> {
                let row: Option<QuarantineRow> = sqlx::query_as(
                    "SELECT id, channel, provider, reason, content_type, body, received_at \
                     FROM quarantine WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                row.map(quarantine_row).transpose()
            }

            async fn transaction(&self) -> Result<$crate::store::tx::Tx> {
                let now = self.clock.now();
                Ok($tx::new(self.begin_write().await?, now).into())
            }

            async fn advance_cursor(
                &self,
                org_id: &str,
                topic: &str,
                replay_id: &[u8],
            ) -> Result<()> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                upsert_cursor(&mut tx, org_id, topic, replay_id, None, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn cursor(&self, org_id: &str, topic: &str) -> Result<Option<Cursor>> {
                let row: Option<(Vec<u8>, Option<Ts>, Ts)> = sqlx::query_as(
                    "SELECT replay_id, last_event_at, updated_at FROM pubsub_cursors \
                     WHERE org_id = $1 AND topic = $2",
                )
                .bind(org_id)
                .bind(topic)
                .fetch_optional(self.reader())
                .await?;
                row.map(|(replay_id, last_event_at, updated_at)| {
                    Ok(Cursor {
                        replay_id,
                        last_event_at: last_event_at.map(dec_ts).transpose()?,
                        updated_at: dec_ts(updated_at)?,
                    })
                })
                .transpose()
            }

            async fn claim_outbox(
                &self,
                owner: &str,
                limit: u32,
                lease: std::time::Duration,
            ) -> Result<Vec<OutboxItem>> {
                let now = self.clock.now();
                let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                let mut tx = self.begin_claim().await?;
                let rows: Vec<OutboxRow> = sqlx::query_as(CLAIM_SQL)
                    .bind(owner)
                    .bind(enc_ts(until))
                    .bind(enc_ts(now))
                    .bind(i64::from(limit.max(1)))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let mut items = rows
                    .into_iter()
                    .map(outbox_row)
                    .collect::<Result<Vec<_>>>()?;
                items.sort_by_key(|i| i.id);
                Ok(items)
            }

            async fn complete_outbox(
                &self,
                item: &OutboxItem,
                owner: &str,
                delivered: &Delivered,
            ) -> Result<bool> {
                let row = Completion {
                    item: item.clone(),
                    delivered: delivered.clone(),
                    claim_next: 0,
                };
                let done = self
                    .complete_outbox_group(owner, std::time::Duration::ZERO, &[row])
                    .await?;
                Ok(done.first().is_some_and(|d| d.settled))
            }

            async fn complete_outbox_group(
                &self,
                owner: &str,
                lease: std::time::Duration,
                rows: &[Completion],
            ) -> Result<Vec<Completed>> {
                use std::collections::{HashMap, HashSet};
                let now = self.clock.now();
                let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                let mut tx = $tx::new(self.begin_write().await?, now);
                // The rows still leased to this owner are marked done; one another worker took
                // over is left alone, and nothing of it is written here.
                let ids: Vec<i64> = rows.iter().map(|r| r.item.id).collect();
                let settled: HashSet<i64> = sqlx::query_as::<_, (i64,)>(DONE_SQL)
                    .bind(enc_ts(now))
                    .bind(enc_ids(&ids))
                    .bind(owner)
                    .fetch_all(&mut *tx.tx)
                    .await?
                    .into_iter()
                    .map(|(id,)| id)
                    .collect();
                let mut identifiers = Vec::new();
                let mut work_items = Vec::new();
                let mut maps = Vec::new();
                let mut follow_ups = Vec::new();
                let mut audit = Vec::new();
                // The keys whose next rows to claim, by how many each asked for.
                let mut next_keys: std::collections::BTreeMap<u32, Vec<String>> =
                    std::collections::BTreeMap::new();
                for row in rows.iter().filter(|r| settled.contains(&r.item.id)) {
                    let (item, delivered) = (&row.item, &row.delivered);
                    if let (Some(conversation), Some(identifier)) =
                        (item.conversation_id, &delivered.conversation_identifier)
                    {
                        identifiers.push((conversation, identifier.clone()));
                    }
                    if let (Some(session), Some(work_item)) =
                        (item.session_id, &delivered.work_item_id)
                        // A work item already known to another session means Salesforce
                        // continued that session: keep the first mapping.
                        && !work_items
                            .iter()
                            .any(|(s, w): &(uuid::Uuid, String)| *s == session || w == work_item)
                    {
                        work_items.push((session, work_item.clone()));
                    }
                    if let Some(conversation) = item.conversation_id {
                        if let Some(prompt) = &delivered.choices_sent {
                            sqlx::query(
                                "INSERT INTO choice_prompts (conversation_id, salesforce_entry_id, \
                                 message_id, outbox_id, provider_message_id, form, options, \
                                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                                 ON CONFLICT (conversation_id, salesforce_entry_id) DO NOTHING",
                            )
                            .bind(enc_uuid(conversation))
                            .bind(&prompt.salesforce_entry_id)
                            .bind(&prompt.message_id)
                            .bind(item.id)
                            .bind(&prompt.provider_message_id)
                            .bind(&prompt.form)
                            .bind(enc_json(&prompt.options))
                            .bind(enc_ts(prompt.created_at))
                            .execute(&mut *tx.tx)
                            .await?;
                        }
                        if let Some(entry) = &delivered.choice_answered {
                            sqlx::query(
                                "UPDATE choice_prompts SET answered_at = $1 \
                                 WHERE conversation_id = $2 AND salesforce_entry_id = $3 \
                                 AND answered_at IS NULL",
                            )
                            .bind(enc_ts(now))
                            .bind(enc_uuid(conversation))
                            .bind(entry)
                            .execute(&mut *tx.tx)
                            .await?;
                        }
                        if let Some((provider_message_id, entry_id)) = &delivered.outbound_message {
                            maps.push($crate::store::tx::MessageMapRow {
                                channel: item.channel.clone(),
                                provider_message_id: provider_message_id.clone(),
                                salesforce_entry_id: entry_id.clone(),
                                conversation_id: conversation,
                                direction: "outbound",
                            });
                        }
                        for follow in &delivered.follow_ups {
                            follow_ups.push($crate::store::tx::NewOutboxRow {
                                kind: follow.kind.clone(),
                                org_id: item.org_id.clone(),
                                channel: item.channel.clone(),
                                ordering_key: follow.lane.key(conversation),
                                conversation_id: Some(conversation),
                                session_id: item.session_id,
                                payload: follow.payload.clone(),
                                priority: follow.priority,
                                due: follow.due.unwrap_or(now),
                            });
                        }
                    }
                    audit.extend(delivered_audit(item, owner, delivered));
                    if row.claim_next > 0 {
                        let keys = next_keys.entry(row.claim_next).or_default();
                        if !keys.contains(&item.ordering_key) {
                            keys.push(item.ordering_key.clone());
                        }
                    }
                }
                tx.set_conversation_identifiers(&identifiers).await?;
                tx.set_work_items(&work_items).await?;
                tx.insert_message_map(&maps).await?;
                tx.insert_outbox(&follow_ups).await?;
                // Each conversation's next rows, claimed at once: its first unfinished rows, in
                // order, as long as each is pending and due (on PostgreSQL a concurrent claim
                // that took one first leaves it leased, and the run stops before it). One
                // statement per run length asked for: in practice one.
                let mut next: HashMap<String, Vec<OutboxItem>> = HashMap::new();
                for (run, keys) in &next_keys {
                    let claimed: Vec<OutboxRow> = sqlx::query_as(CLAIM_NEXT_OF_KEYS_SQL)
                        .bind(owner)
                        .bind(enc_ts(until))
                        .bind(enc_ts(now))
                        .bind(enc_texts(keys))
                        .bind(i64::from(*run))
                        .fetch_all(&mut *tx.tx)
                        .await?;
                    for row in claimed {
                        let item = outbox_row(row)?;
                        next.entry(item.ordering_key.clone()).or_default().push(item);
                    }
                }
                for run in next.values_mut() {
                    run.sort_by_key(|item| item.id);
                }
                tx.insert_audit(&audit).await?;
                tx.commit().await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let settled = settled.contains(&r.item.id);
                        Completed {
                            settled,
                            next: if settled && r.claim_next > 0 {
                                next.remove(&r.item.ordering_key).unwrap_or_default()
                            } else {
                                Vec::new()
                            },
                        }
                    })
                    .collect())
            }

            async fn retry_outbox(
                &self,
                item: &OutboxItem,
                owner: &str,
                at: chrono::DateTime<chrono::Utc>,
                error: &str,
                code: Option<&str>,
            ) -> Result<bool> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = $1, updated_at = $2, \
                     lease_owner = NULL, lease_until = NULL, last_error = $3, last_code = $4 \
                     WHERE id = $5 AND status = 'leased' AND lease_owner = $6",
                )
                .bind(enc_ts(at))
                .bind(enc_ts(now))
                .bind(error)
                .bind(code)
                .bind(item.id)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if done {
                    let entry = outbox_audit(
                        item,
                        "outbox.retry_scheduled",
                        Severity::Warning,
                        format!(
                            "{} #{} failed (attempt {}), retry at {}: {error}",
                            item.kind,
                            item.id,
                            item.attempts,
                            at.to_rfc3339()
                        ),
                        serde_json::json!({
                            "outbox_id": item.id,
                            "kind": item.kind,
                            "attempt": item.attempts,
                            "code": code,
                            "error": error,
                            "next_attempt_at": at.to_rfc3339(),
                        }),
                    );
                    insert_audit(&mut tx, now, &entry).await?;
                }
                tx.commit().await?;
                Ok(done)
            }

            async fn defer_outbox(
                &self,
                item: &OutboxItem,
                owner: &str,
                at: chrono::DateTime<chrono::Utc>,
                reason: &str,
            ) -> Result<bool> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = $1, updated_at = $2, \
                     lease_owner = NULL, lease_until = NULL, last_error = $3, \
                     attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
                     WHERE id = $4 AND status = 'leased' AND lease_owner = $5",
                )
                .bind(enc_ts(at))
                .bind(enc_ts(now))
                .bind(reason)
                .bind(item.id)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                tx.commit().await?;
                Ok(done)
            }

            async fn defer_pending(
                &self,
                scope: crate::relay::gate::HoldScope,
                key: &str,
                at: chrono::DateTime<chrono::Utc>,
                reason: &str,
            ) -> Result<u64> {
                let sql = match scope {
                    crate::relay::gate::HoldScope::Channel => {
                        "UPDATE outbox SET next_attempt_at = $1, updated_at = $2, last_error = $3 \
                         WHERE status = 'pending' AND channel = $4 AND next_attempt_at < $1"
                    }
                    crate::relay::gate::HoldScope::Org => {
                        "UPDATE outbox SET next_attempt_at = $1, updated_at = $2, last_error = $3 \
                         WHERE status = 'pending' AND org_id = $4 AND next_attempt_at < $1"
                    }
                };
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let held = sqlx::query(sql)
                    .bind(enc_ts(at))
                    .bind(enc_ts(now))
                    .bind(reason)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(held)
            }

            async fn release_outbox(&self, owner: &str, ids: &[i64]) -> Result<u64> {
                if ids.is_empty() {
                    return Ok(0);
                }
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let released = sqlx::query_as::<_, (i64,)>(RELEASE_SQL)
                    .bind(enc_ts(now))
                    .bind(enc_ids(ids))
                    .bind(owner)
                    .fetch_all(&mut *tx)
                    .await?
                    .len();
                tx.commit().await?;
                Ok(released as u64)
            }

            async fn dead_letter_outbox(
                &self,
                item: &OutboxItem,
                owner: &str,
                error: &str,
                code: Option<&str>,
            ) -> Result<bool> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE outbox SET status = 'dead', finished_at = $1, updated_at = $1, \
                     lease_owner = NULL, lease_until = NULL, last_error = $2, last_code = $3 \
                     WHERE id = $4 AND status = 'leased' AND lease_owner = $5",
                )
                .bind(enc_ts(now))
                .bind(error)
                .bind(code)
                .bind(item.id)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if done {
                    let entry = outbox_audit(
                        item,
                        "outbox.dead_lettered",
                        Severity::Alert,
                        format!(
                            "{} #{} dead-lettered after {} attempt(s): {error}",
                            item.kind, item.id, item.attempts
                        ),
                        serde_json::json!({
                            "outbox_id": item.id,
                            "kind": item.kind,
                            "attempt": item.attempts,
                            "code": code,
                            "error": error,
                        }),
                    );
                    insert_audit(&mut tx, now, &entry).await?;
                }
                tx.commit().await?;
                Ok(done)
            }

            async fn choice_prompts(
                &self,
                conversation_id: uuid::Uuid,
                limit: i64,
            ) -> Result<Vec<$crate::store::ChoicePrompt>> {
                type Row = (String, String, Option<String>, String, Js, Ts, Option<Ts>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT salesforce_entry_id, message_id, provider_message_id, form, options, \
                     created_at, answered_at FROM choice_prompts WHERE conversation_id = $1 \
                     ORDER BY outbox_id DESC LIMIT $2",
                )
                .bind(enc_uuid(conversation_id))
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::store::ChoicePrompt {
                            salesforce_entry_id: r.0,
                            message_id: r.1,
                            provider_message_id: r.2,
                            form: r.3,
                            options: dec_json(r.4)?,
                            created_at: dec_ts(r.5)?,
                            answered: r.6.is_some(),
                        })
                    })
                    .collect()
            }

            async fn conversation_context(
                &self,
                conversation_id: uuid::Uuid,
            ) -> Result<Option<ConversationContext>> {
                type Row = (
                    Option<String>,
                    String,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<Ts>,
                    Option<String>,
                    Option<Ts>,
                );
                let row: Option<Row> = sqlx::query_as(
                    "SELECT c.conversation_identifier, u.salesforce_client_id, u.msisdn, \
                     u.channel_user_id, s.work_item_id, s.last_inbound_provider_message_id, \
                     s.last_inbound_at, u.consent, \
                     (SELECT max(s3.last_inbound_at) FROM sessions s3 \
                       WHERE s3.conversation_id = c.id) \
                     FROM conversations c JOIN end_users u ON u.id = c.end_user_id \
                     LEFT JOIN sessions s ON s.id = (SELECT s2.id FROM sessions s2 \
                       WHERE s2.conversation_id = c.id ORDER BY s2.opened_at DESC LIMIT 1) \
                     WHERE c.id = $1",
                )
                .bind(enc_uuid(conversation_id))
                .fetch_optional(self.reader())
                .await?;
                row.map(|r| {
                    Ok(ConversationContext {
                        conversation_identifier: r.0,
                        end_user_client_id: r.1,
                        msisdn: r.2,
                        channel_user_id: r.3,
                        work_item_id: r.4,
                        last_inbound: match (r.5, r.6) {
                            (Some(id), Some(at)) => Some((id, dec_ts(at)?)),
                            _ => None,
                        },
                        consent: r.7,
                        newest_inbound_at: r.8.map(dec_ts).transpose()?,
                    })
                })
                .transpose()
            }

            async fn session_participants(
                &self,
                session_id: uuid::Uuid,
            ) -> Result<Option<serde_json::Value>> {
                let row: Option<(Option<Js>,)> =
                    sqlx::query_as("SELECT participants FROM sessions WHERE id = $1")
                        .bind(enc_uuid(session_id))
                        .fetch_optional(self.reader())
                        .await?;
                row.and_then(|(p,)| p).map(dec_json).transpose()
            }

            async fn map_outbound_message(
                &self,
                channel: &str,
                provider_message_id: &str,
                salesforce_entry_id: &str,
                conversation_id: uuid::Uuid,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO message_map (channel, provider_message_id, salesforce_entry_id, \
                     conversation_id, direction, created_at) VALUES ($1, $2, $3, $4, 'outbound', $5) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(channel)
                .bind(provider_message_id)
                .bind(salesforce_entry_id)
                .bind(enc_uuid(conversation_id))
                .bind(enc_ts(self.clock.now()))
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn host_file(
                &self,
                channel: &str,
                mime_type: &str,
                file_name: &str,
                body: &[u8],
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<uuid::Uuid> {
                let id = uuid::Uuid::new_v4();
                sqlx::query(
                    "INSERT INTO hosted_files (id, channel, mime_type, file_name, body, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(enc_uuid(id))
                .bind(channel)
                .bind(mime_type)
                .bind(file_name)
                .bind(body)
                .bind(enc_ts(self.clock.now()))
                .bind(enc_ts(expires_at))
                .execute(self.writer())
                .await?;
                Ok(id)
            }

            async fn hosted_file(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<(String, String, Vec<u8>, chrono::DateTime<chrono::Utc>)>> {
                let row: Option<(String, String, Vec<u8>, Ts)> = sqlx::query_as(
                    "SELECT mime_type, file_name, body, expires_at FROM hosted_files \
                     WHERE id = $1",
                )
                .bind(enc_uuid(id))
                .fetch_optional(self.reader())
                .await?;
                row.map(|(m, n, b, e)| Ok((m, n, b, dec_ts(e)?))).transpose()
            }

            async fn purge_hosted_files(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM hosted_files WHERE expires_at < $1")
                    .bind(enc_ts(before))
                    .execute(self.writer())
                    .await?
                    .rows_affected())
            }

            async fn purge_finished_outbox(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<u64> {
                Ok(sqlx::query(PURGE_SQL)
                    .bind(enc_ts(before))
                    .bind(i64::from(limit))
                    .execute(self.writer())
                    .await?
                    .rows_affected())
            }

            async fn purge_expired(
                &self,
                class: $crate::store::PurgeClass,
                before: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<u64> {
                use $crate::store::PurgeClass;
                let one = |sql| {
                    sqlx::query(sql)
                        .bind(enc_ts(before))
                        .bind(i64::from(limit))
                };
                Ok(match class {
                    PurgeClass::FinishedOutbox => {
                        one(PURGE_SQL).execute(self.writer()).await?.rows_affected()
                    }
                    PurgeClass::Quarantine => one(PURGE_QUARANTINE_SQL)
                        .execute(self.writer())
                        .await?
                        .rows_affected(),
                    PurgeClass::HostedFiles => one(PURGE_HOSTED_FILES_SQL)
                        .execute(self.writer())
                        .await?
                        .rows_affected(),
                    PurgeClass::Dedupe => one(PURGE_DEDUPE_SQL)
                        .execute(self.writer())
                        .await?
                        .rows_affected(),
                    PurgeClass::EndedSessions => {
                        let mut tx = self.begin_write().await?;
                        one(PURGE_ENDED_ROUTINGS_SQL).execute(&mut *tx).await?;
                        let n = one(PURGE_ENDED_SESSIONS_SQL)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        tx.commit().await?;
                        n
                    }
                })
            }

            async fn erase_end_users(
                &self,
                identifiers: &[String],
                channel: Option<&str>,
                extra_needles: &(dyn Fn(&str) -> Vec<String> + Sync),
                audit: &(dyn Fn(&$crate::store::Erasure) -> AuditEntry + Sync),
            ) -> Result<$crate::store::Erasure> {
                use std::collections::BTreeSet;
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let mut erasure = $crate::store::Erasure::default();
                // (id, channel, identifiers)
                let mut found: Vec<(uuid::Uuid, String, Vec<String>)> = Vec::new();
                for identifier in identifiers {
                    let rows: Vec<(Id, String, String, String, Option<String>, Option<String>)> =
                        sqlx::query_as(
                            "SELECT id, channel, provider_user_key, salesforce_client_id, msisdn, \
                             channel_user_id FROM end_users WHERE ($2 IS NULL OR channel = $2) \
                             AND (provider_user_key = $1 OR msisdn = $1 OR channel_user_id = $1 \
                             OR salesforce_client_id = $1)",
                        )
                        .bind(identifier)
                        .bind(channel)
                        .fetch_all(&mut *tx)
                        .await?;
                    for (id, ch, key, client, msisdn, user_id) in rows {
                        let id = dec_uuid(id)?;
                        if found.iter().any(|(f, _, _)| *f == id) {
                            continue;
                        }
                        let mut ids = vec![key, client];
                        ids.extend(msisdn);
                        ids.extend(user_id);
                        found.push((id, ch, ids));
                    }
                }
                if found.is_empty() {
                    tx.rollback().await?;
                    return Ok(erasure);
                }
                let mut needles = BTreeSet::new();
                let mut quarantine_needles = BTreeSet::new();
                for (id, ch, ids) in &found {
                    let conversations: Vec<(Id,)> = sqlx::query_as(
                        "SELECT id FROM conversations WHERE channel = $1 AND end_user_id = $2",
                    )
                    .bind(ch)
                    .bind(enc_uuid(*id))
                    .fetch_all(&mut *tx)
                    .await?;
                    for (conversation,) in conversations {
                        let conversation = dec_uuid(conversation)?;
                        let sessions: Vec<(Id,)> =
                            sqlx::query_as("SELECT id FROM sessions WHERE conversation_id = $1")
                                .bind(enc_uuid(conversation))
                                .fetch_all(&mut *tx)
                                .await?;
                        for (session,) in sessions {
                            let session = dec_uuid(session)?;
                            erasure.outbox += sqlx::query("DELETE FROM outbox WHERE session_id = $1")
                                .bind(enc_uuid(session))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                            erasure.routings +=
                                sqlx::query("DELETE FROM routings WHERE session_id = $1")
                                    .bind(enc_uuid(session))
                                    .execute(&mut *tx)
                                    .await?
                                    .rows_affected();
                        }
                        erasure.outbox +=
                            sqlx::query("DELETE FROM outbox WHERE conversation_id = $1")
                                .bind(enc_uuid(conversation))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                        erasure.message_map +=
                            sqlx::query("DELETE FROM message_map WHERE conversation_id = $1")
                                .bind(enc_uuid(conversation))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                        erasure.sessions +=
                            sqlx::query("DELETE FROM sessions WHERE conversation_id = $1")
                                .bind(enc_uuid(conversation))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                        erasure.conversations +=
                            sqlx::query("DELETE FROM conversations WHERE id = $1")
                                .bind(enc_uuid(conversation))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                    }
                    for needle in ids {
                        quarantine_needles.extend(extra_needles(needle));
                        quarantine_needles.insert(needle.clone());
                        needles.insert(needle.clone());
                    }
                }
                for needle in &needles {
                    erasure.outbox += sqlx::query(ERASE_OUTBOX_TEXT_SQL)
                        .bind(needle)
                        .bind(channel)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                for needle in &quarantine_needles {
                    erasure.quarantine += sqlx::query(ERASE_QUARANTINE_SQL)
                        .bind(needle.as_bytes())
                        .bind(channel)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                for (id, _, _) in &found {
                    erasure.end_users += sqlx::query("DELETE FROM end_users WHERE id = $1")
                        .bind(enc_uuid(*id))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    erasure.end_user_ids.push(*id);
                }
                let mut mentions = BTreeSet::new();
                for needle in &needles {
                    let ids: Vec<(i64,)> = sqlx::query_as(AUDIT_MENTIONS_SQL)
                        .bind(needle)
                        .fetch_all(&mut *tx)
                        .await?;
                    mentions.extend(ids.into_iter().map(|(id,)| id));
                }
                erasure.audit_mentions = mentions.len() as u64;
                erasure.audit_id = Some(insert_audit(&mut tx, now, &audit(&erasure)).await?);
                tx.commit().await?;
                Ok(erasure)
            }

            async fn record_routing(&self, routing: &NewRouting) -> Result<uuid::Uuid> {
                let id = uuid::Uuid::now_v7();
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO routings (id, session_id, channel, kind, work_item_id, psr_id, \
                     routing_correlation_id, agent_work_id, target_type, target_id, status, \
                     attempts, deadline_at, last_error, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
                )
                .bind(enc_uuid(id))
                .bind(routing.session_id.map(enc_uuid))
                .bind(&routing.channel)
                .bind(&routing.kind)
                .bind(&routing.work_item_id)
                .bind(&routing.psr_id)
                .bind(&routing.routing_correlation_id)
                .bind(&routing.agent_work_id)
                .bind(&routing.target_type)
                .bind(&routing.target_id)
                .bind(&routing.status)
                .bind(routing.attempts)
                .bind(routing.deadline_at.map(enc_ts))
                .bind(&routing.last_error)
                .bind(enc_ts(now))
                .execute(&mut *tx)
                .await?;
                insert_audit(&mut tx, now, &routing_audit(id, routing, "routing.recorded")).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn update_routing(&self, id: uuid::Uuid, routing: &NewRouting) -> Result<()> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE routings SET psr_id = $1, routing_correlation_id = $2, \
                     agent_work_id = $3, target_type = $4, target_id = $5, status = $6, \
                     attempts = $7, last_error = $8, updated_at = $9 WHERE id = $10",
                )
                .bind(&routing.psr_id)
                .bind(&routing.routing_correlation_id)
                .bind(&routing.agent_work_id)
                .bind(&routing.target_type)
                .bind(&routing.target_id)
                .bind(&routing.status)
                .bind(routing.attempts)
                .bind(&routing.last_error)
                .bind(enc_ts(now))
                .bind(enc_uuid(id))
                .execute(&mut *tx)
                .await?;
                insert_audit(&mut tx, now, &routing_audit(id, routing, "routing.updated")).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn routing_by_agent_work(
                &self,
                agent_work_id: &str,
            ) -> Result<Option<RoutingRecord>> {
                let row: Option<RoutingRow> = sqlx::query_as(
                    "SELECT id, session_id, channel, kind, work_item_id, psr_id, \
                     routing_correlation_id, agent_work_id, target_type, target_id, status, \
                     attempts, deadline_at, last_error, created_at FROM routings \
                     WHERE agent_work_id = $1 ORDER BY created_at DESC LIMIT 1",
                )
                .bind(agent_work_id)
                .fetch_optional(self.reader())
                .await?;
                row.map(routing_row).transpose()
            }

            async fn routings_of_session(
                &self,
                session_id: uuid::Uuid,
            ) -> Result<Vec<RoutingRecord>> {
                let rows: Vec<RoutingRow> = sqlx::query_as(
                    "SELECT id, session_id, channel, kind, work_item_id, psr_id, \
                     routing_correlation_id, agent_work_id, target_type, target_id, status, \
                     attempts, deadline_at, last_error, created_at FROM routings \
                     WHERE session_id = $1 ORDER BY created_at",
                )
                .bind(enc_uuid(session_id))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(routing_row).collect()
            }

            async fn agent_loads(&self, channel: &str) -> Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT target_id, count(*) FROM routings WHERE channel = $1 \
                     AND target_type = 'user' AND target_id IS NOT NULL \
                     AND status IN ('Offered', 'Accepted') GROUP BY target_id ORDER BY target_id",
                )
                .bind(channel)
                .fetch_all(self.reader())
                .await?)
            }

            async fn outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxItem>> {
                let rows: Vec<OutboxRow> = sqlx::query_as(
                    "SELECT id, kind, org_id, channel, ordering_key, conversation_id, session_id, \
                     payload, attempts, status, next_attempt_at, last_error, last_code, created_at, \
                     finished_at FROM outbox WHERE ($1 IS NULL OR status = $1) \
                     AND ($2 IS NULL OR channel = $2) AND ($4 IS NULL OR session_id = $4) \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(&filter.status)
                .bind(&filter.channel)
                .bind(i64::from(if filter.limit == 0 { 100 } else { filter.limit }))
                .bind(filter.session_id.map(enc_uuid))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(outbox_row).collect()
            }

            async fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>> {
                let row: Option<OutboxRow> = sqlx::query_as(
                    "SELECT id, kind, org_id, channel, ordering_key, conversation_id, session_id, \
                     payload, attempts, status, next_attempt_at, last_error, last_code, created_at, \
                     finished_at FROM outbox WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                row.map(outbox_row).transpose()
            }

            async fn requeue_outbox(&self, id: i64, actor: &str) -> Result<bool> {
                self.admin_outbox(
                    id,
                    actor,
                    "UPDATE outbox SET status = 'pending', next_attempt_at = $1, updated_at = $1, \
                     finished_at = NULL WHERE id = $2 AND status IN ('dead', 'discarded')",
                    "outbox.requeued",
                    "sent again by an admin",
                )
                .await
            }

            async fn discard_outbox(&self, id: i64, actor: &str) -> Result<bool> {
                self.admin_outbox(
                    id,
                    actor,
                    "UPDATE outbox SET status = 'discarded', finished_at = $1, updated_at = $1 \
                     WHERE id = $2 AND status IN ('pending', 'dead')",
                    "outbox.discarded",
                    "discarded by an admin",
                )
                .await
            }

            async fn append_audit(&self, entry: &AuditEntry) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let id = insert_audit(&mut tx, self.clock.now(), entry).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn audit_seal_horizon(&self) -> Result<$crate::store::SealHorizon> {
                self.backend_seal_horizon().await
            }

            async fn audit_horizon_reached(
                &self,
                horizon: &$crate::store::SealHorizon,
            ) -> Result<bool> {
                self.backend_horizon_reached(horizon).await
            }

            async fn seal_audit(
                &self,
                up_to: i64,
                limit: u32,
                link: &$crate::store::ChainLink,
            ) -> Result<(u64, Option<$crate::store::AuditSeal>)> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let mut head = sqlx::query_as::<_, SealDbRow>(SEAL_HEAD_SQL)
                .fetch_optional(&mut *tx)
                .await?
                .map(dec_seal)
                .transpose()?;
                let after = head.as_ref().map_or(0, |h| h.audit_id);
                let rows: Vec<AuditDbRow> = sqlx::query_as(
                    "SELECT id, at, kind, severity, actor, org_id, channel, conversation_id, \
                     session_id, message, detail FROM audit_log WHERE id > $1 AND id <= $2 \
                     ORDER BY id LIMIT $3",
                )
                .bind(after)
                .bind(up_to)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    tx.rollback().await?;
                    return Ok((0, head));
                }
                let mut seals = Vec::with_capacity(rows.len());
                for row in rows {
                    let row = dec_audit_row(row)?;
                    let seal = $crate::store::AuditSeal {
                        audit_id: row.id,
                        prev_audit_id: head.as_ref().map_or(0, |h| h.audit_id),
                        hash: link(head.as_ref(), &row),
                        sealed_at: now,
                    };
                    head = Some(seal.clone());
                    seals.push(seal);
                }
                let mut insert = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO audit_seal (audit_id, prev_audit_id, hash, sealed_at) ",
                );
                insert.push_values(&seals, |mut b, seal| {
                    b.push_bind(seal.audit_id)
                        .push_bind(seal.prev_audit_id)
                        .push_bind(seal.hash.clone())
                        .push_bind(enc_ts(seal.sealed_at));
                });
                insert.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok((seals.len() as u64, head))
            }

            async fn audit_chain_head(&self) -> Result<Option<$crate::store::AuditSeal>> {
                sqlx::query_as::<_, SealDbRow>(SEAL_HEAD_SQL)
                .fetch_optional(self.reader())
                .await?
                .map(dec_seal)
                .transpose()
            }

            async fn audit_chain(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::ChainEntry>> {
                type Row = (
                    i64,
                    Option<i64>,
                    Option<Ts>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<Id>,
                    Option<Id>,
                    Option<String>,
                    Option<Js>,
                    Option<i64>,
                    Option<String>,
                    Option<Ts>,
                );
                // The first `limit` ids of either table, each table read through its key with
                // a limit: the `limit` smallest of their union are among them.
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT k.id, a.id, a.at, a.kind, a.severity, a.actor, a.org_id, a.channel, \
                     a.conversation_id, a.session_id, a.message, a.detail, s.prev_audit_id, \
                     s.hash, s.sealed_at FROM (\
                       SELECT id FROM (SELECT id FROM audit_log WHERE id > $1 ORDER BY id \
                         LIMIT $2) AS r \
                       UNION SELECT audit_id FROM (SELECT audit_id FROM audit_seal \
                         WHERE audit_id > $1 ORDER BY audit_id LIMIT $2) AS q) AS k \
                     LEFT JOIN audit_log a ON a.id = k.id \
                     LEFT JOIN audit_seal s ON s.audit_id = k.id \
                     ORDER BY k.id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|r| {
                        let row = match (r.1, r.2, r.3, r.4, r.5, r.10, r.11) {
                            (
                                Some(id),
                                Some(at),
                                Some(kind),
                                Some(severity),
                                Some(actor),
                                Some(message),
                                Some(detail),
                            ) => Some(dec_audit_row((
                                id, at, kind, severity, actor, r.6, r.7, r.8, r.9, message,
                                detail,
                            ))?),
                            _ => None,
                        };
                        let seal = match (r.12, r.13, r.14) {
                            (Some(prev), Some(hash), Some(at)) => {
                                Some(dec_seal((r.0, prev, hash, at))?)
                            }
                            _ => None,
                        };
                        Ok($crate::store::ChainEntry { id: r.0, row, seal })
                    })
                    .collect()
            }

            async fn gauges(&self) -> Result<StoreGauges> {
                let outbox: Vec<(String, String, i64, Ts)> = sqlx::query_as(
                    "SELECT kind, status, count(*), min(created_at) FROM outbox \
                     WHERE status IN ('pending', 'leased') GROUP BY kind, status ORDER BY kind, status",
                )
                .fetch_all(self.reader())
                .await?;
                let routings: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status, count(*) FROM routings GROUP BY status ORDER BY status",
                )
                .fetch_all(self.reader())
                .await?;
                Ok(StoreGauges {
                    outbox: outbox
                        .into_iter()
                        .map(|(k, s, n, t)| Ok((k, s, n, dec_ts(t)?)))
                        .collect::<Result<_>>()?,
                    routings,
                })
            }

            async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
                type Row = (
                    i64,
                    Ts,
                    String,
                    String,
                    String,
                    Option<String>,
                    Option<String>,
                    Option<Id>,
                    Option<Id>,
                    String,
                    Js,
                );
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT * FROM (SELECT id, at, kind, severity, actor, org_id, channel, \
                     conversation_id, session_id, message, detail FROM audit_log \
                     WHERE ($1 IS NULL OR kind = $1 OR kind LIKE $2) \
                     AND ($3 IS NULL OR org_id = $3) \
                     AND ($4 IS NULL OR channel = $4) \
                     AND ($5 IS NULL OR conversation_id = $5) \
                     AND ($6 IS NULL OR session_id = $6) \
                     AND ($7 IS NULL OR at >= $7) \
                     AND ($8 IS NULL OR at < $8) \
                     ORDER BY id DESC LIMIT $9) AS newest ORDER BY id",
                )
                .bind(&filter.kind)
                .bind(filter.kind_prefix())
                .bind(&filter.org_id)
                .bind(&filter.channel)
                .bind(filter.conversation_id.map(enc_uuid))
                .bind(filter.session_id.map(enc_uuid))
                .bind(filter.since.map(enc_ts))
                .bind(filter.until.map(enc_ts))
                .bind(filter.effective_limit())
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(AuditRow {
                            id: r.0,
                            at: dec_ts(r.1)?,
                            entry: AuditEntry {
                                kind: r.2,
                                severity: Severity::parse(&r.3)?,
                                actor: r.4,
                                org_id: r.5,
                                channel: r.6,
                                conversation_id: r.7.map(dec_uuid).transpose()?,
                                session_id: r.8.map(dec_uuid).transpose()?,
                                message: r.9,
                                detail: dec_json(r.10)?,
                            },
                        })
                    })
                    .collect()
            }

            async fn close(&self) {
                self.backend_close().await
            }

            async fn try_exclusive(&self, key: &str) -> Result<Option<ExclusiveGuard>> {
                self.backend_try_exclusive(key).await
            }

            async fn release_earlier_leases(&self) -> Result<u64> {
                self.backend_release_earlier_leases().await
            }

            async fn reconcile_session(&self, session_id: uuid::Uuid, reason: &str) -> Result<bool> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let row: Option<(String, Id)> = sqlx::query_as(
                    "SELECT channel, conversation_id FROM sessions WHERE id = $1",
                )
                .bind(enc_uuid(session_id))
                .fetch_optional(&mut *tx)
                .await?;
                let changed = sqlx::query(
                    "UPDATE sessions SET status = 'ended', ended_at = COALESCE(ended_at, $1), \
                     ended_by = COALESCE(ended_by, 'Salesforce'), end_reason = $2 \
                     WHERE id = $3 AND status <> 'ended'",
                )
                .bind(enc_ts(now))
                .bind(reason)
                .bind(enc_uuid(session_id))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if let Some((channel, conversation)) = row {
                    let entry = AuditEntry::new(
                        "session.reconciled",
                        format!("Salesforce no longer knows the session ({reason}); ended here"),
                    )
                    .channel(channel)
                    .conversation(dec_uuid(conversation)?)
                    .session(session_id)
                    .detail(serde_json::json!({ "reason": reason, "changed": changed }));
                    insert_audit(&mut tx, now, &entry).await?;
                }
                tx.commit().await?;
                Ok(changed)
            }
        }

        impl $store {
            /// Sessions with their latest routing, most recently active first: one session when
            /// `id` is given, else those of `channel` and `status` (each when given).
            async fn session_summaries(
                &self,
                id: Option<uuid::Uuid>,
                channel: Option<&str>,
                status: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::store::SessionSummary>> {
                type Row = (
                    Id,
                    String,
                    Id,
                    Option<String>,
                    String,
                    Ts,
                    Ts,
                    Option<Ts>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                );
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT s.id, s.channel, s.conversation_id, s.work_item_id, s.status, \
                     s.opened_at, s.last_activity_at, s.ended_at, r.kind, r.target_type, \
                     r.target_id, r.status \
                     FROM sessions s LEFT JOIN routings r ON r.id = (SELECT r2.id FROM routings r2 \
                       WHERE r2.session_id = s.id ORDER BY r2.created_at DESC, r2.id DESC LIMIT 1) \
                     WHERE ($1 IS NULL OR s.id = $1) AND ($2 IS NULL OR s.channel = $2) \
                     AND ($3 IS NULL OR s.status = $3) \
                     ORDER BY s.last_activity_at DESC, s.id LIMIT $4",
                )
                .bind(id.map(enc_uuid))
                .bind(channel)
                .bind(status)
                .bind(i64::from(limit.max(1)))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::store::SessionSummary {
                            id: dec_uuid(r.0)?,
                            channel: r.1,
                            conversation_id: dec_uuid(r.2)?,
                            work_item_id: r.3,
                            status: r.4,
                            opened_at: dec_ts(r.5)?,
                            last_activity_at: dec_ts(r.6)?,
                            ended_at: r.7.map(dec_ts).transpose()?,
                            routed_to: match (r.8, r.11) {
                                (Some(kind), Some(status)) => Some($crate::store::RoutedTo {
                                    kind,
                                    target_type: r.9,
                                    target_id: r.10,
                                    status,
                                }),
                                _ => None,
                            },
                        })
                    })
                    .collect()
            }

            async fn admin_outbox(
                &self,
                id: i64,
                actor: &str,
                sql: &'static str,
                kind: &str,
                what: &str,
            ) -> Result<bool> {
                let now = self.clock.now();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(sql)
                    .bind(enc_ts(now))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                if done {
                    let row: OutboxRow = sqlx::query_as(
                        "SELECT id, kind, org_id, channel, ordering_key, conversation_id, \
                         session_id, payload, attempts, status, next_attempt_at, last_error, \
                         last_code, created_at, finished_at FROM outbox WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let item = outbox_row(row)?;
                    let entry = outbox_audit(
                        &item,
                        kind,
                        Severity::Warning,
                        format!("{} #{} {what} ({actor})", item.kind, item.id),
                        serde_json::json!({ "outbox_id": item.id, "kind": item.kind }),
                    )
                    .actor(actor);
                    insert_audit(&mut tx, now, &entry).await?;
                }
                tx.commit().await?;
                Ok(done)
            }
        }

        type OutboxRow = (
            i64,
            String,
            String,
            String,
            String,
            Option<Id>,
            Option<Id>,
            Js,
            i32,
            String,
            Ts,
            Option<String>,
            Option<String>,
            Ts,
            Option<Ts>,
        );

        fn outbox_row(r: OutboxRow) -> Result<OutboxItem> {
            Ok(OutboxItem {
                id: r.0,
                kind: r.1,
                org_id: r.2,
                channel: r.3,
                ordering_key: r.4,
                conversation_id: r.5.map(dec_uuid).transpose()?,
                session_id: r.6.map(dec_uuid).transpose()?,
                payload: dec_json(r.7)?,
                attempts: r.8,
                status: r.9,
                next_attempt_at: dec_ts(r.10)?,
                last_error: r.11,
                last_code: r.12,
                created_at: dec_ts(r.13)?,
                finished_at: r.14.map(dec_ts).transpose()?,
            })
        }

        fn outbox_audit(
            item: &OutboxItem,
            kind: &str,
            severity: Severity,
            message: String,
            detail: serde_json::Value,
        ) -> AuditEntry {
            let mut entry = AuditEntry::new(kind, message)
                .severity(severity)
                .org(&item.org_id)
                .channel(&item.channel)
                .detail(detail);
            if let Some(c) = item.conversation_id {
                entry = entry.conversation(c);
            }
            if let Some(s) = item.session_id {
                entry = entry.session(s);
            }
            entry
        }


        async fn upsert_cursor(
            tx: &mut sqlx::Transaction<'static, Db>,
            org_id: &str,
            topic: &str,
            replay_id: &[u8],
            event_at: Option<chrono::DateTime<chrono::Utc>>,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO pubsub_cursors (org_id, topic, replay_id, last_event_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, topic) DO UPDATE SET \
                 replay_id = excluded.replay_id, \
                 last_event_at = COALESCE(excluded.last_event_at, pubsub_cursors.last_event_at), \
                 updated_at = excluded.updated_at",
            )
            .bind(org_id)
            .bind(topic)
            .bind(replay_id)
            .bind(event_at.map(enc_ts))
            .bind(enc_ts(now))
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        /// Marks a delivered row done inside `tx` (if `owner` still holds its lease), with what
        /// Salesforce answered and its follow-up work; its audit rows are added to `audit`, for
        /// the caller to write with the others. False: the lease was lost and nothing was
        /// written.
        /// The audit rows of a delivered row: `outbox.delivered` with the delivery's facts, and
        /// what the delivery found.
        fn delivered_audit(item: &OutboxItem, owner: &str, delivered: &Delivered) -> Vec<AuditEntry> {
            let mut detail = delivered.detail.clone();
            if let serde_json::Value::Object(map) = &mut detail {
                map.insert("outbox_id".into(), item.id.into());
                map.insert("kind".into(), item.kind.clone().into());
                map.insert("attempt".into(), item.attempts.into());
                // Which replica delivered it.
                map.insert("owner".into(), owner.into());
            }
            let entry = outbox_audit(
                item,
                "outbox.delivered",
                Severity::Info,
                format!("{} #{} delivered (attempt {})", item.kind, item.id, item.attempts),
                detail,
            );
            let mut audit = vec![entry];
            audit.extend(delivered.audit.iter().cloned());
            audit
        }


        type RoutingRow = (
            Id,
            Option<Id>,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            i32,
            Option<Ts>,
            Option<String>,
            Ts,
        );

        fn routing_row(r: RoutingRow) -> Result<RoutingRecord> {
            Ok(RoutingRecord {
                id: dec_uuid(r.0)?,
                routing: NewRouting {
                    session_id: r.1.map(dec_uuid).transpose()?,
                    channel: r.2,
                    kind: r.3,
                    work_item_id: r.4,
                    psr_id: r.5,
                    routing_correlation_id: r.6,
                    agent_work_id: r.7,
                    target_type: r.8.unwrap_or_default(),
                    target_id: r.9,
                    status: r.10,
                    attempts: r.11,
                    deadline_at: r.12.map(dec_ts).transpose()?,
                    last_error: r.13,
                },
                created_at: dec_ts(r.14)?,
            })
        }

        fn routing_audit(id: uuid::Uuid, routing: &NewRouting, kind: &str) -> AuditEntry {
            let mut entry = AuditEntry::new(
                kind,
                format!(
                    "{} routing to {} {}: {}",
                    routing.kind,
                    routing.target_type,
                    routing.target_id.as_deref().unwrap_or(""),
                    routing.status
                ),
            )
            .severity(if routing.status == "Failed" {
                Severity::Warning
            } else {
                Severity::Info
            })
            .channel(&routing.channel)
            .detail(serde_json::json!({
                "routing_id": id,
                "work_item_id": routing.work_item_id,
                "psr_id": routing.psr_id,
                "routing_correlation_id": routing.routing_correlation_id,
                "agent_work_id": routing.agent_work_id,
                "attempts": routing.attempts,
                "error": routing.last_error,
            }));
            if let Some(s) = routing.session_id {
                entry = entry.session(s);
            }
            entry
        }

        type QuarantineRow = (i64, String, String, String, Option<String>, Vec<u8>, Ts);

        fn quarantine_row(r: QuarantineRow) -> Result<QuarantinedWebhook> {
            Ok(QuarantinedWebhook {
                id: r.0,
                channel: r.1,
                provider: r.2,
                reason: r.3,
                content_type: r.4,
                size: r.5.len(),
                body: r.5,
                received_at: dec_ts(r.6)?,
            })
        }

        /// An `audit_seal` row as read.
        type SealDbRow = (i64, i64, String, Ts);

        /// The chain's head: the newest seal.
        const SEAL_HEAD_SQL: &str = "SELECT audit_id, prev_audit_id, hash, sealed_at \
             FROM audit_seal ORDER BY audit_id DESC LIMIT 1";

        fn dec_seal(r: SealDbRow) -> Result<$crate::store::AuditSeal> {
            Ok($crate::store::AuditSeal {
                audit_id: r.0,
                prev_audit_id: r.1,
                hash: r.2,
                sealed_at: dec_ts(r.3)?,
            })
        }

        /// An `audit_log` row as read, every column in table order.
        type AuditDbRow = (
            i64,
            Ts,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<Id>,
            Option<Id>,
            String,
            Js,
        );

        fn dec_audit_row(r: AuditDbRow) -> Result<AuditRow> {
            Ok(AuditRow {
                id: r.0,
                at: dec_ts(r.1)?,
                entry: AuditEntry {
                    kind: r.2,
                    severity: Severity::parse(&r.3)?,
                    actor: r.4,
                    org_id: r.5,
                    channel: r.6,
                    conversation_id: r.7.map(dec_uuid).transpose()?,
                    session_id: r.8.map(dec_uuid).transpose()?,
                    message: r.9,
                    detail: dec_json(r.10)?,
                },
            })
        }

        /// Inserts one audit row inside a write transaction.
        async fn insert_audit(
            tx: &mut sqlx::Transaction<'static, Db>,
            at: chrono::DateTime<chrono::Utc>,
            entry: &AuditEntry,
        ) -> Result<i64> {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO audit_log (at, kind, severity, actor, org_id, channel, \
                 conversation_id, session_id, message, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .bind(enc_ts(at))
            .bind(&entry.kind)
            .bind(entry.severity.as_str())
            .bind(&entry.actor)
            .bind(&entry.org_id)
            .bind(&entry.channel)
            .bind(entry.conversation_id.map(enc_uuid))
            .bind(entry.session_id.map(enc_uuid))
            .bind(&entry.message)
            .bind(enc_json(&entry.detail))
            .fetch_one(&mut **tx)
            .await?;
            Ok(id)
        }
    };
}

pub(crate) use impl_store;

/// Writes the backend's write transaction type `$tx` ([`Tx`](super::tx::Tx)'s variant) with its
/// operations whose SQL both backends share; the multi-row inserts, whose SQL differs, are in
/// the backend modules.
macro_rules! impl_tx {
    ($tx:ident) => {
        /// A write transaction of this backend: see [`Tx`](crate::store::tx::Tx).
        pub struct $tx {
            tx: sqlx::Transaction<'static, Db>,
            /// When it began, by the store's clock.
            pub(crate) now: chrono::DateTime<chrono::Utc>,
        }

        impl std::fmt::Debug for $tx {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($tx)).field("now", &self.now).finish()
            }
        }

        impl $tx {
            pub(crate) fn new(
                tx: sqlx::Transaction<'static, Db>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Self {
                Self { tx, now }
            }

            pub(crate) async fn commit(self) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn rollback(self) -> Result<()> {
                self.tx.rollback().await?;
                Ok(())
            }

            pub(crate) async fn end_user_key_of(
                &mut self,
                conversation: uuid::Uuid,
            ) -> Result<String> {
                let (key,): (String,) = sqlx::query_as(
                    "SELECT u.salesforce_client_id FROM conversations c \
                     JOIN end_users u ON u.id = c.end_user_id WHERE c.id = $1",
                )
                .bind(enc_uuid(conversation))
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(key)
            }

            pub(crate) async fn open_session_of(
                &mut self,
                channel: &str,
                end_user: uuid::Uuid,
            ) -> Result<Option<(uuid::Uuid, uuid::Uuid)>> {
                let open: Option<(Id, Id)> = sqlx::query_as(
                    "SELECT s.id, s.conversation_id FROM sessions s \
                     JOIN conversations c ON c.id = s.conversation_id \
                     WHERE c.channel = $1 AND c.end_user_id = $2 AND s.status <> 'ended' \
                     ORDER BY s.opened_at DESC LIMIT 1",
                )
                .bind(channel)
                .bind(enc_uuid(end_user))
                .fetch_optional(&mut *self.tx)
                .await?;
                match open {
                    Some((session, conversation)) => {
                        Ok(Some((dec_uuid(conversation)?, dec_uuid(session)?)))
                    }
                    None => Ok(None),
                }
            }

            pub(crate) async fn newest_session(
                &mut self,
                conversation: uuid::Uuid,
            ) -> Result<Option<uuid::Uuid>> {
                sqlx::query_as::<_, (Id,)>(
                    "SELECT id FROM sessions WHERE conversation_id = $1 \
                     ORDER BY opened_at DESC LIMIT 1",
                )
                .bind(enc_uuid(conversation))
                .fetch_optional(&mut *self.tx)
                .await?
                .map(|(id,)| dec_uuid(id))
                .transpose()
            }

            pub(crate) async fn end_session(
                &mut self,
                session: uuid::Uuid,
                ended_by: &str,
                reason: &str,
            ) -> Result<Option<Option<String>>> {
                let ended: Option<(Option<String>,)> = sqlx::query_as(
                    "UPDATE sessions SET status = 'ended', ended_at = $1, ended_by = $2, \
                     end_reason = $3 WHERE id = $4 AND status <> 'ended' \
                     RETURNING work_item_id",
                )
                .bind(enc_ts(self.now))
                .bind(ended_by)
                .bind(reason)
                .bind(enc_uuid(session))
                .fetch_optional(&mut *self.tx)
                .await?;
                Ok(ended.map(|(work_item,)| work_item))
            }

            pub(crate) async fn idle_sessions(
                &mut self,
                channel: &str,
                before: chrono::DateTime<chrono::Utc>,
                limit: u32,
                active_only: bool,
            ) -> Result<Vec<$crate::store::tx::IdleSession>> {
                let sql = if active_only {
                    $crate::store::relay::SWEEP_SELECT_INACTIVATE_SQL
                } else {
                    $crate::store::relay::SWEEP_SELECT_END_SQL
                };
                let rows: Vec<(Id, Id, Option<String>, String)> = sqlx::query_as(sql)
                    .bind(channel)
                    .bind(enc_ts(before))
                    .bind(i64::from(limit.max(1)))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.into_iter()
                    .map(|(session, conversation, work_item_id, end_user_key)| {
                        Ok($crate::store::tx::IdleSession {
                            session: dec_uuid(session)?,
                            conversation: dec_uuid(conversation)?,
                            work_item_id,
                            end_user_key,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn inactivate_session(&mut self, session: uuid::Uuid) -> Result<bool> {
                Ok(sqlx::query(
                    "UPDATE sessions SET status = 'inactive', inactivated_at = $1 \
                     WHERE id = $2 AND status = 'active'",
                )
                .bind(enc_ts(self.now))
                .bind(enc_uuid(session))
                .execute(&mut *self.tx)
                .await?
                .rows_affected()
                    > 0)
            }

            pub(crate) async fn set_session_status(
                &mut self,
                session: uuid::Uuid,
                status: &str,
                ended_by: &str,
                work_item_id: Option<&str>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE sessions SET status = $1, \
                     ended_at = CASE WHEN $1 = 'ended' THEN $2 ELSE ended_at END, \
                     ended_by = CASE WHEN $1 = 'ended' THEN $3 ELSE ended_by END, \
                     inactivated_at = CASE WHEN $1 = 'inactive' THEN $2 ELSE inactivated_at END, \
                     work_item_id = COALESCE(work_item_id, $4) \
                     WHERE id = $5 AND status <> 'ended'",
                )
                .bind(status)
                .bind(enc_ts(self.now))
                .bind(ended_by)
                .bind(work_item_id)
                .bind(enc_uuid(session))
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            pub(crate) async fn set_end_user_consent(
                &mut self,
                end_user: uuid::Uuid,
                consent: &str,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE end_users SET consent = $1, consent_updated_at = $2, updated_at = $2 \
                     WHERE id = $3",
                )
                .bind(consent)
                .bind(enc_ts(self.now))
                .bind(enc_uuid(end_user))
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            pub(crate) async fn session_participants(
                &mut self,
                session: uuid::Uuid,
            ) -> Result<Option<serde_json::Value>> {
                let row: Option<(Option<Js>,)> =
                    sqlx::query_as("SELECT participants FROM sessions WHERE id = $1")
                        .bind(enc_uuid(session))
                        .fetch_optional(&mut *self.tx)
                        .await?;
                row.and_then(|(p,)| p).map(dec_json).transpose()
            }

            pub(crate) async fn set_session_participants(
                &mut self,
                session: uuid::Uuid,
                participants: &serde_json::Value,
            ) -> Result<()> {
                sqlx::query("UPDATE sessions SET participants = $1 WHERE id = $2")
                    .bind(enc_json(participants))
                    .bind(enc_uuid(session))
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            pub(crate) async fn mapped_message(
                &mut self,
                channel: &str,
                provider_message_id: &str,
                direction: &str,
            ) -> Result<Option<(String, uuid::Uuid)>> {
                let mapped: Option<(String, Id)> = sqlx::query_as(
                    "SELECT salesforce_entry_id, conversation_id FROM message_map \
                     WHERE channel = $1 AND provider_message_id = $2 AND direction = $3",
                )
                .bind(channel)
                .bind(provider_message_id)
                .bind(direction)
                .fetch_optional(&mut *self.tx)
                .await?;
                match mapped {
                    Some((entry, conversation)) => Ok(Some((entry, dec_uuid(conversation)?))),
                    None => Ok(None),
                }
            }

            pub(crate) async fn newest_unfinished(
                &mut self,
                ordering_key: &str,
            ) -> Result<Option<$crate::store::tx::UnfinishedRow>> {
                let last: Option<(i64, String, String, Js)> =
                    sqlx::query_as($crate::store::relay::NEWEST_UNFINISHED_SQL)
                        .bind(ordering_key)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                last.map(|(id, kind, status, payload)| {
                    Ok($crate::store::tx::UnfinishedRow {
                        id,
                        kind,
                        status,
                        payload: dec_json(payload)?,
                    })
                })
                .transpose()
            }

            pub(crate) async fn newest_pending_of_kind(
                &mut self,
                ordering_key: &str,
                kind: &str,
            ) -> Result<Option<i64>> {
                let pending: Option<(i64,)> =
                    sqlx::query_as($crate::store::relay::NEWEST_PENDING_OF_KIND_SQL)
                        .bind(ordering_key)
                        .bind(kind)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                Ok(pending.map(|(id,)| id))
            }

            pub(crate) async fn postpone(
                &mut self,
                id: i64,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool> {
                Ok(sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $1, updated_at = $2 \
                     WHERE id = $3 AND status = 'pending' AND next_attempt_at < $1",
                )
                .bind(enc_ts(at))
                .bind(enc_ts(self.now))
                .bind(id)
                .execute(&mut *self.tx)
                .await?
                .rows_affected()
                    > 0)
            }

            pub(crate) async fn set_pending_payload(
                &mut self,
                id: i64,
                payload: &serde_json::Value,
            ) -> Result<bool> {
                Ok(sqlx::query(
                    "UPDATE outbox SET payload = $1, updated_at = $2 \
                     WHERE id = $3 AND status = 'pending'",
                )
                .bind(enc_json(payload))
                .bind(enc_ts(self.now))
                .bind(id)
                .execute(&mut *self.tx)
                .await?
                .rows_affected()
                    > 0)
            }

            pub(crate) async fn save_cursor(
                &mut self,
                org_id: &str,
                topic: &str,
                replay_id: &[u8],
                event_at: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<()> {
                let now = self.now;
                upsert_cursor(&mut self.tx, org_id, topic, replay_id, event_at, now).await
            }
        }
    };
}

pub(crate) use impl_tx;
