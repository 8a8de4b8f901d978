-- vault-svc: one shared-secret rotation schedule per connector that declares
-- `rotation` (a persisted state machine: scheduled → rotating → overlap →
-- retired, or needs_attention). `previous_sealed` holds the value being
-- retired during the overlap; `version` is the compare-and-swap token and
-- `fence` the highest lock fencing token that claimed the row.
CREATE TABLE vault_rotation (
    tenant          TEXT   NOT NULL,
    connector       TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    next_at         INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    cycle           INTEGER NOT NULL,
    previous_sealed BLOB,
    last_error      TEXT   NOT NULL,
    version         INTEGER NOT NULL,
    fence           INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, connector)
);
