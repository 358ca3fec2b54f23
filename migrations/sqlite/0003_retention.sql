-- Retention (docs/security.md): the periodic purge finds each class of personal data past its
-- retention through an index on its age, in bounded chunks.
-- Quarantined webhook bodies, by arrival (retention.quarantine).
CREATE INDEX quarantine_by_time ON quarantine (received_at);
-- Ended sessions, by when they ended (retention.ended_sessions); partial: open sessions are not
-- in it.
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE status = 'ended';
-- Outbox rows of a session: the purge keeps a session some outbox row still refers to, and
-- deleting a session checks its foreign key here instead of scanning the outbox.
CREATE INDEX outbox_by_session ON outbox (session_id) WHERE session_id IS NOT NULL;
