-- Retention: a prefix of the log may be removed once it is archived. Each prune
-- is recorded (insert-only) with the signed checkpoint of exactly the removed
-- prefix, its chain head and its RFC 6962 compact range (`frontier`: the
-- concatenated roots of the perfect subtrees covering it), so the remaining log
-- still verifies and proves against every later checkpoint. Deleting an event
-- is now allowed for rows a prune record covers, and nothing else; UPDATE and
-- TRUNCATE stay refused. Grant INSERT on audit_prune only to the role that runs
-- retention to keep the service role from pruning.
CREATE TABLE audit_prune (
    through_seq    BIGINT PRIMARY KEY,
    chain_hash     BYTEA  NOT NULL,
    frontier       BYTEA  NOT NULL,
    signed_note    TEXT   NOT NULL,
    archive        TEXT   NOT NULL,
    archive_sha256 BYTEA  NOT NULL,
    pruned_at      BIGINT NOT NULL
);

CREATE TRIGGER audit_prune_append_only BEFORE UPDATE OR DELETE ON audit_prune
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_prune_no_truncate BEFORE TRUNCATE ON audit_prune
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE FUNCTION audit_event_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.seq <= (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prune) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER audit_event_append_only ON audit_event;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
