-- The append-only audit log: one row per event, gapless seq, RFC 6962 leaf hash
-- and SHA-256 chain hash; signed checkpoints beside it. Triggers refuse every
-- UPDATE, DELETE and TRUNCATE for every role (only a superuser who disables
-- triggers can get past them, which the tamper tests do on purpose).
CREATE TABLE audit_event (
    seq             BIGINT PRIMARY KEY,
    event_id        TEXT   NOT NULL UNIQUE,
    kind            TEXT   NOT NULL,
    event_time      BIGINT NOT NULL,
    recorded_at     BIGINT NOT NULL,
    member_id       TEXT   NOT NULL,
    agent_client_id TEXT   NOT NULL,
    virtual_server  TEXT   NOT NULL,
    connector       TEXT   NOT NULL,
    tool            TEXT   NOT NULL,
    verdict         TEXT   NOT NULL,
    outcome         TEXT   NOT NULL,
    trace_id        TEXT   NOT NULL,
    canonical_json  BYTEA  NOT NULL,
    leaf_hash       BYTEA  NOT NULL,
    chain_hash      BYTEA  NOT NULL
);

CREATE INDEX audit_event_member ON audit_event (member_id, seq);
CREATE INDEX audit_event_agent ON audit_event (agent_client_id, seq);
CREATE INDEX audit_event_virtual_server ON audit_event (virtual_server, seq);
CREATE INDEX audit_event_tool ON audit_event (tool, seq);
CREATE INDEX audit_event_time ON audit_event (event_time);

CREATE TABLE audit_checkpoint (
    tree_size   BIGINT PRIMARY KEY,
    origin      TEXT   NOT NULL,
    root_hash   BYTEA  NOT NULL,
    chain_hash  BYTEA  NOT NULL,
    made_at     BIGINT NOT NULL,
    signed_note TEXT   NOT NULL
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
