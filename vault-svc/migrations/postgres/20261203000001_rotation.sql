-- vault-svc: one shared-secret rotation schedule per connector that declares
-- `rotation` (a persisted state machine: scheduled → rotating → overlap →
-- retired, or needs_attention). `previous_sealed` holds the value being
-- retired during the overlap; `version` is the compare-and-swap token and
-- `fence` the highest lock fencing token that claimed the row.
CREATE TABLE vault_rotation (
    tenant          TEXT   NOT NULL,
    connector       TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    next_at         BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    cycle           BIGINT NOT NULL,
    previous_sealed BYTEA,
    last_error      TEXT   NOT NULL,
    version         BIGINT NOT NULL,
    fence           BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, connector)
);
