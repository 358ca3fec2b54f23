-- Tamper evidence for the audit trail (docs/audit.md, "Verifying the trail"). One seal per audit
-- row, appended in id order by one sealer after the row committed: `hash` is the SHA-256 of the
-- previous seal's hash and a canonical encoding of every column of the row
-- (src/domain/audit_chain.rs). `prev_audit_id` names the previous sealed row (0 for the first);
-- being unique, two sealers can never fork the chain. Append-only like audit_log.
--
-- The daemon may run as a role with only INSERT and SELECT on audit_log and audit_seal while
-- migrations run as the owner (docs/security.md, "A runtime role that cannot rewrite the
-- trail"): the triggers below belong to the owner, and only the owner can disable them.
CREATE TABLE audit_seal (
    audit_id        bigint PRIMARY KEY CHECK (audit_id > 0),
    prev_audit_id   bigint NOT NULL UNIQUE CHECK (prev_audit_id >= 0 AND prev_audit_id < audit_id),
    hash            text NOT NULL CHECK (length(hash) = 64),
    sealed_at       timestamptz NOT NULL
);

CREATE FUNCTION byocd_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER audit_seal_no_update BEFORE UPDATE ON audit_seal
    FOR EACH ROW EXECUTE FUNCTION byocd_append_only();
CREATE TRIGGER audit_seal_no_delete BEFORE DELETE ON audit_seal
    FOR EACH ROW EXECUTE FUNCTION byocd_append_only();
CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON audit_seal
    FOR EACH STATEMENT EXECUTE FUNCTION byocd_append_only();
