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
    created_at INTEGER NOT NULL,
    rotated_at INTEGER,
    last_used_at INTEGER,
    decommissioned_at INTEGER
);

CREATE TABLE agent_secrets (
    secret_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    secret_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);

CREATE INDEX agent_secrets_agent ON agent_secrets (agent_id);

-- Client assertion ids seen, per assertion issuer, until the assertion expires (RFC 7523 replay cache).
CREATE TABLE assertion_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);

-- Every revocation in order, so that other processes (a running server when the CLI
-- decommissions, every edge through WatchRevocations) learn of it by cursor.
CREATE TABLE revocation_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
