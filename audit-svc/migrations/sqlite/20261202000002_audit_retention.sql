-- Retention: a prefix of the log may be removed once it is archived. Each prune
-- is recorded (insert-only) with the signed checkpoint of exactly the removed
-- prefix, its chain head and its RFC 6962 compact range (`frontier`: the
-- concatenated roots of the perfect subtrees covering it), so the remaining log
-- still verifies and proves against every later checkpoint. The delete trigger
-- now lets through rows a prune record covers, and nothing else.
CREATE TABLE audit_prune (
    through_seq    INTEGER PRIMARY KEY,
    chain_hash     BLOB    NOT NULL,
    frontier       BLOB    NOT NULL,
    signed_note    TEXT    NOT NULL,
    archive        TEXT    NOT NULL,
    archive_sha256 BLOB    NOT NULL,
    pruned_at      INTEGER NOT NULL
);

CREATE TRIGGER audit_prune_no_update BEFORE UPDATE ON audit_prune
BEGIN SELECT RAISE(ABORT, 'audit_prune is append-only'); END;
CREATE TRIGGER audit_prune_no_delete BEFORE DELETE ON audit_prune
BEGIN SELECT RAISE(ABORT, 'audit_prune is append-only'); END;

DROP TRIGGER audit_event_no_delete;
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prune)
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;
