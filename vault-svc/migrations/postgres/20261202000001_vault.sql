-- vault-svc: sealed credentials keyed by (tenant, connector, owner), the
-- authoritative revoked-principal list, and pending per-member consents.
-- `version` counts every write and is the compare-and-swap token; `fence` is the
-- highest refresh-lock fencing token that claimed the row.
CREATE TABLE vault_credential (
    id               TEXT   PRIMARY KEY,
    tenant           TEXT   NOT NULL,
    connector        TEXT   NOT NULL,
    owner_kind       TEXT   NOT NULL,
    owner_id         TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    fence            BIGINT NOT NULL DEFAULT 0,
    kek_version      BIGINT NOT NULL,
    sealed           BYTEA  NOT NULL,
    description      TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    expires_at       BIGINT,
    refresh_due_at   BIGINT,
    refresh_failures BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant, connector, owner_kind, owner_id)
);

CREATE INDEX vault_credential_owner ON vault_credential (tenant, owner_kind, owner_id);
CREATE INDEX vault_credential_refresh ON vault_credential (refresh_due_at);
CREATE INDEX vault_credential_kek ON vault_credential (kek_version);

CREATE TABLE vault_revoked_principal (
    tenant     TEXT   NOT NULL,
    owner_kind TEXT   NOT NULL,
    owner_id   TEXT   NOT NULL,
    revoked_at BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    PRIMARY KEY (tenant, owner_kind, owner_id)
);

CREATE TABLE vault_consent (
    state_hash BYTEA  PRIMARY KEY,
    tenant     TEXT   NOT NULL,
    connector  TEXT   NOT NULL,
    member_id  TEXT   NOT NULL,
    sealed     BYTEA  NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX vault_consent_expiry ON vault_consent (expires_at);
