-- Finished work leaves the outbox after relay.finished_retention: the purge finds it by when it
-- finished, through this index of finished rows only (the hot indexes hold unfinished rows).
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE status IN ('done', 'discarded');
