-- The append-only audit log: one row per event, gapless seq, RFC 6962 leaf hash
-- and SHA-256 chain hash; signed checkpoints beside it. Triggers refuse every
-- UPDATE and DELETE (SQLite has no TRUNCATE; DELETE without WHERE hits the
-- trigger too).
CREATE TABLE audit_event (
    seq             INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    event_time      INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    member_id       TEXT    NOT NULL,
    agent_client_id TEXT    NOT NULL,
    virtual_server  TEXT    NOT NULL,
    connector       TEXT    NOT NULL,
    tool            TEXT    NOT NULL,
    verdict         TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    trace_id        TEXT    NOT NULL,
    canonical_json  BLOB    NOT NULL,
    leaf_hash       BLOB    NOT NULL,
    chain_hash      BLOB    NOT NULL
);

CREATE INDEX audit_event_member ON audit_event (member_id, seq);
CREATE INDEX audit_event_agent ON audit_event (agent_client_id, seq);
CREATE INDEX audit_event_virtual_server ON audit_event (virtual_server, seq);
CREATE INDEX audit_event_tool ON audit_event (tool, seq);
CREATE INDEX audit_event_time ON audit_event (event_time);

CREATE TABLE audit_checkpoint (
    tree_size   INTEGER PRIMARY KEY,
    origin      TEXT    NOT NULL,
    root_hash   BLOB    NOT NULL,
    chain_hash  BLOB    NOT NULL,
    made_at     INTEGER NOT NULL,
    signed_note TEXT    NOT NULL
);

CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;
