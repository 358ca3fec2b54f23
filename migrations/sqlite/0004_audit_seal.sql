-- Tamper evidence for the audit trail (docs/audit.md, "Verifying the trail"). One seal per audit
-- row, appended in id order by one sealer after the row committed: `hash` is the SHA-256 of the
-- previous seal's hash and a canonical encoding of every column of the row
-- (src/domain/audit_chain.rs). `prev_audit_id` names the previous sealed row (0 for the first);
-- being unique, two sealers can never fork the chain. Append-only like audit_log.
CREATE TABLE audit_seal (
    audit_id        INTEGER PRIMARY KEY CHECK (audit_id > 0),
    prev_audit_id   INTEGER NOT NULL UNIQUE CHECK (prev_audit_id >= 0 AND prev_audit_id < audit_id),
    hash            text NOT NULL CHECK (length(hash) = 64),
    sealed_at       text NOT NULL
) STRICT;

CREATE TRIGGER audit_seal_no_update BEFORE UPDATE ON audit_seal
BEGIN
    SELECT RAISE(ABORT, 'audit_seal is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_seal_no_delete BEFORE DELETE ON audit_seal
BEGIN
    SELECT RAISE(ABORT, 'audit_seal is append-only: DELETE refused');
END;
