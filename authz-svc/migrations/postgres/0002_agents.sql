CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    owner TEXT NOT NULL,
    virtual_servers TEXT NOT NULL,
    scopes TEXT NOT NULL,
    authentication TEXT NOT NULL,
    quotas TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    last_used_at BIGINT,
    decommissioned_at BIGINT
);

CREATE TABLE agent_secrets (
    secret_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    secret_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE INDEX agent_secrets_agent ON agent_secrets (agent_id);

-- Client assertion ids seen, per assertion issuer, until the assertion expires (RFC 7523 replay cache).
CREATE TABLE assertion_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);

-- Every revocation in order, so that other processes (a running server when the CLI
-- decommissions, every edge through WatchRevocations) learn of it by cursor.
CREATE TABLE revocation_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
