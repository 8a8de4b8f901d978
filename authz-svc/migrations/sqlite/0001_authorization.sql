CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    secret_hash BLOB,
    client_name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    application_type TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE auth_codes (
    code_hash BLOB PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    family_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE grant_families (
    family_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at INTEGER NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES grant_families (family_id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL,
    public_x TEXT NOT NULL,
    public_y TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- At most one active and one pre-published key: concurrent first starts of
-- several replicas agree on one pair.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (status) WHERE status = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (status) WHERE status = 'next';
