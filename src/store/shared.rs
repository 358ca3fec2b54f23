//! The SQL both backends share, written once.
//!
//! Most statements are the same text on SQLite and PostgreSQL (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`); what differs is how values are bound and read back (timestamps are
//! `timestamptz` on PostgreSQL and fixed-width text on SQLite, ids are `uuid` or text, JSON is
//! `jsonb` or text) and how a write transaction starts. Each backend module therefore defines:
//!
//! - `type Db`, and the column types `Ts`, `Id`, `Js` with `enc_*` / `dec_*` conversions;
//! - inherent methods `begin_write`, `reader`, `backend_migrate`, `backend_schema_status`,
//!   `backend_close`;
//!
//! and then invokes [`impl_store!`], which writes the [`Store`](super::Store) implementation
//! from those pieces. Statements that must differ (row locking, advisory locks) belong in the
//! backend modules.

/// Writes `impl Store for $store` from the backend's conversions and inherent methods.
macro_rules! impl_store {
    ($store:ty) => {
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
                let done = sqlx::query(
                    "UPDATE orgs SET paused_until = $1, pause_reason = $2 WHERE org_id = $3",
                )
                .bind(until)
                .bind(reason)
                .bind(org_id)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn append_audit(&self, entry: &AuditEntry) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let id = insert_audit(&mut tx, self.clock.now(), entry).await?;
                tx.commit().await?;
                Ok(id)
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
