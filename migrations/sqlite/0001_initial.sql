-- byocd state schema, SQLite. Kept in lockstep with migrations/postgres/0001_initial.sql:
-- same tables, columns and views. Tables are STRICT; timestamps are fixed-width UTC text
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so they sort and compare as text; JSON is checked text.

-- Salesforce orgs, synced from the [[orgs]] of the main configuration file.
CREATE TABLE orgs (
    org_id          text PRIMARY KEY CHECK (length(org_id) = 15),
    name            text NOT NULL,
    content_hash    text NOT NULL,
    settings        text NOT NULL CHECK (json_valid(settings)),
    created_at      text NOT NULL,
    updated_at      text NOT NULL,
    retired_at      text,
    -- Set when token minting keeps failing or a remediation disables the org.
    paused_until    text,
    pause_reason    text
) STRICT;

-- Channels, synced from channels.d/*.toml. A channel removed from the files is retired, not
-- deleted, so its conversations and audit rows keep their meaning.
CREATE TABLE channels (
    name                        text PRIMARY KEY,
    org_id                      text NOT NULL REFERENCES orgs (org_id),
    product                     text NOT NULL CHECK (product IN ('Messaging', 'CCaaS')),
    provider                    text NOT NULL CHECK (provider IN ('8x8', 'kaleyra')),
    channel_address_identifier  text NOT NULL CHECK (length(channel_address_identifier) <= 240),
    content_hash                text NOT NULL,
    settings                    text NOT NULL CHECK (json_valid(settings)),
    created_at                  text NOT NULL,
    updated_at                  text NOT NULL,
    retired_at                  text,
    paused_until                text,
    pause_reason                text
) STRICT;
CREATE UNIQUE INDEX channels_active_address ON channels (channel_address_identifier)
    WHERE retired_at IS NULL;

-- One Interaction Service access token per org, sealed (XChaCha20-Poly1305); never plaintext.
CREATE TABLE oauth_tokens (
    org_id          text PRIMARY KEY REFERENCES orgs (org_id),
    sealed_token    text NOT NULL,
    key_id          text NOT NULL,
    instance_url    text,
    minted_at       text NOT NULL,
    updated_at      text NOT NULL
) STRICT;

-- End users as a provider knows them, and the client id byocd sends to Salesforce for them.
CREATE TABLE end_users (
    id                  text PRIMARY KEY,
    channel             text NOT NULL REFERENCES channels (name),
    -- The key byocd sends to Salesforce (from / endUserClientId): the E.164 number, else the
    -- provider's user id (WhatsApp BSUID). Fixed when the end user is first seen.
    provider_user_key   text NOT NULL,
    salesforce_client_id text NOT NULL CHECK (length(salesforce_client_id) <= 240),
    -- Both identifiers as last seen, so a later message carrying only one finds this end user.
    msisdn              text,
    channel_user_id     text,
    display_name        text,
    created_at          text NOT NULL,
    updated_at          text NOT NULL,
    UNIQUE (channel, provider_user_key)
) STRICT;

CREATE INDEX end_users_by_msisdn ON end_users (channel, msisdn) WHERE msisdn IS NOT NULL;
CREATE INDEX end_users_by_channel_user_id ON end_users (channel, channel_user_id)
    WHERE channel_user_id IS NOT NULL;

-- A conversation is a channel and an end user; Salesforce's conversationIdentifier once known.
CREATE TABLE conversations (
    id                          text PRIMARY KEY,
    channel                     text NOT NULL REFERENCES channels (name),
    end_user_id                 text NOT NULL REFERENCES end_users (id),
    conversation_identifier     text CHECK (length(conversation_identifier) <= 240),
    created_at                  text NOT NULL,
    updated_at                  text NOT NULL,
    UNIQUE (channel, end_user_id)
) STRICT;

-- Messaging sessions (Salesforce MessagingSession = workItemId).
CREATE TABLE sessions (
    id                              text PRIMARY KEY,
    conversation_id                 text NOT NULL REFERENCES conversations (id),
    channel                         text NOT NULL REFERENCES channels (name),
    work_item_id                    text UNIQUE CHECK (length(work_item_id) = 15),
    status                          text NOT NULL CHECK (status IN ('active', 'inactive', 'ended')),
    opened_at                       text NOT NULL,
    last_activity_at                text NOT NULL,
    last_inbound_at                 text,
    last_inbound_provider_message_id text,
    inactivated_at                  text,
    ended_at                        text,
    ended_by                        text CHECK (ended_by IN ('System', 'EndUser', 'Agent', 'Salesforce')),
    end_reason                      text
) STRICT;
-- The sweeper's query: sessions of a channel not yet ended, oldest activity first. Partial, so its
-- size follows the open sessions, not the whole history.
CREATE INDEX sessions_open_by_activity ON sessions (channel, last_activity_at)
    WHERE status <> 'ended';
CREATE INDEX sessions_by_conversation ON sessions (conversation_id, opened_at);

-- Provider message id <-> Salesforce conversation entry id, both directions.
CREATE TABLE message_map (
    channel                 text NOT NULL REFERENCES channels (name),
    provider_message_id     text NOT NULL,
    salesforce_entry_id     text NOT NULL,
    conversation_id         text NOT NULL REFERENCES conversations (id),
    direction               text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    created_at              text NOT NULL,
    PRIMARY KEY (channel, provider_message_id)
) STRICT;
CREATE INDEX message_map_by_entry ON message_map (salesforce_entry_id);

-- Durable work: every call to Salesforce or a provider is a row here first.
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                text NOT NULL,
    org_id              text NOT NULL REFERENCES orgs (org_id),
    channel             text NOT NULL REFERENCES channels (name),
    -- Rows with the same ordering key are delivered one at a time, in id order.
    ordering_key        text NOT NULL,
    conversation_id     text REFERENCES conversations (id),
    session_id          text REFERENCES sessions (id),
    payload             text NOT NULL CHECK (json_valid(payload)),
    -- Higher runs first (routing work jumps the queue).
    priority            integer NOT NULL DEFAULT 0,
    -- pending → leased → done; or → dead (retries exhausted, permanent error) or discarded
    -- (an admin gave up on it). Dead rows can be retried by an admin.
    status              text NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'dead', 'discarded')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     text NOT NULL,
    deadline_at         text,
    lease_owner         text,
    lease_until         text,
    last_error          text,
    last_code           text,
    created_at          text NOT NULL,
    updated_at          text NOT NULL,
    finished_at         text
) STRICT;
CREATE INDEX outbox_due ON outbox (priority DESC, next_attempt_at, id)
    WHERE status IN ('pending', 'leased');
CREATE INDEX outbox_by_ordering_key ON outbox (ordering_key, id)
    WHERE status IN ('pending', 'leased');

-- Webhooks already accepted, so a provider's retry adds nothing.
CREATE TABLE inbound_dedupe (
    channel         text NOT NULL REFERENCES channels (name),
    event_key       text NOT NULL,
    received_at     text NOT NULL,
    PRIMARY KEY (channel, event_key)
) STRICT;
CREATE INDEX inbound_dedupe_by_time ON inbound_dedupe (received_at);

-- Authenticated webhooks that could not be parsed, kept verbatim for an admin.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         text NOT NULL REFERENCES channels (name),
    provider        text NOT NULL,
    reason          text NOT NULL,
    content_type    text,
    body            blob NOT NULL,
    received_at     text NOT NULL
) STRICT;

-- Rep files byocd serves itself, on signed expiring URLs, to providers that host nothing (Kaleyra).
CREATE TABLE hosted_files (
    id              text PRIMARY KEY,
    channel         text NOT NULL REFERENCES channels (name),
    mime_type       text NOT NULL,
    file_name       text NOT NULL,
    body            blob NOT NULL,
    created_at      text NOT NULL,
    expires_at      text NOT NULL
) STRICT;
CREATE INDEX hosted_files_by_expiry ON hosted_files (expires_at);

-- Pub/Sub replay position per org and topic; advanced in the same transaction as the work.
CREATE TABLE pubsub_cursors (
    org_id          text NOT NULL REFERENCES orgs (org_id),
    topic           text NOT NULL,
    replay_id       blob NOT NULL,
    last_event_at   text,
    updated_at      text NOT NULL,
    PRIMARY KEY (org_id, topic)
) STRICT;

-- Partner-owned routing (CCaaS): initial routings, transfers and conferences.
CREATE TABLE routings (
    id                      text PRIMARY KEY,
    session_id              text REFERENCES sessions (id),
    channel                 text NOT NULL REFERENCES channels (name),
    kind                    text NOT NULL CHECK (kind IN ('Initial', 'Transfer', 'Conference')),
    work_item_id            text,
    psr_id                  text,
    routing_correlation_id  text,
    agent_work_id           text,
    target_type             text CHECK (target_type IN ('channel-default', 'queue', 'flow', 'user', 'external')),
    target_id               text,
    status                  text NOT NULL,
    attempts                integer NOT NULL DEFAULT 0,
    deadline_at             text,
    last_error              text,
    created_at              text NOT NULL,
    updated_at              text NOT NULL
) STRICT;
CREATE INDEX routings_by_session ON routings (session_id, created_at);
CREATE INDEX routings_open_by_deadline ON routings (deadline_at)
    WHERE status NOT IN ('Accepted', 'Declined', 'Cancelled', 'Closed', 'Failed', 'Succeeded');

-- The audit trail. Append-only: the Store API cannot change a row and the database refuses to.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              text NOT NULL,
    kind            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'alert')),
    actor           text NOT NULL,
    org_id          text,
    channel         text,
    conversation_id text,
    session_id      text,
    message         text NOT NULL,
    detail          text NOT NULL CHECK (json_valid(detail))
) STRICT;
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_session ON audit_log (session_id, id) WHERE session_id IS NOT NULL;
CREATE INDEX audit_log_by_conversation ON audit_log (conversation_id, id) WHERE conversation_id IS NOT NULL;
CREATE INDEX audit_log_by_channel ON audit_log (channel, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;

-- Views for auditors: same names and columns on both backends (see docs/audit.md).
CREATE VIEW audit_trail AS
SELECT id, at, severity, kind, actor, org_id, channel, conversation_id, session_id, message,
       detail
FROM audit_log;

CREATE VIEW session_timeline AS
SELECT s.id AS session_id, s.work_item_id, s.channel, s.status AS session_status,
       a.id AS audit_id, a.at, a.severity, a.kind, a.message, a.detail
FROM sessions s
JOIN audit_log a ON a.session_id = s.id;

CREATE VIEW channel_status AS
SELECT c.name AS channel, c.org_id, c.product, c.provider, c.channel_address_identifier,
       c.content_hash,
       CASE WHEN c.retired_at IS NOT NULL THEN 'retired'
            WHEN c.paused_until IS NOT NULL THEN 'paused'
            ELSE 'active' END AS state,
       c.pause_reason, c.updated_at, c.retired_at
FROM channels c;

CREATE VIEW outbox_summary AS
SELECT channel, kind, status, count(*) AS items, min(created_at) AS oldest_created_at
FROM outbox
GROUP BY channel, kind, status;
