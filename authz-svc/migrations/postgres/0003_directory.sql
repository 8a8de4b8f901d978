-- The member directory SCIM provisions: users, groups and who is in which group.
-- `version` is the resource's ETag; `revision` below moves on every change so that
-- other processes reload their view of members' groups.
CREATE TABLE directory_users (
    user_id TEXT PRIMARY KEY,
    -- userName is case-insensitive (RFC 7643 §4.1.1): unique by its lowercase form.
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL UNIQUE,
    external_id TEXT,
    display_name TEXT,
    active BOOLEAN NOT NULL,
    password_hash TEXT,
    attributes TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX directory_users_external_id ON directory_users (external_id);

CREATE TABLE directory_groups (
    group_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL UNIQUE,
    external_id TEXT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE directory_memberships (
    group_id TEXT NOT NULL REFERENCES directory_groups (group_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES directory_users (user_id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX directory_memberships_user ON directory_memberships (user_id);

CREATE TABLE directory_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);

INSERT INTO directory_revision (id, revision) VALUES (1, 0);

CREATE INDEX grant_families_subject ON grant_families (subject);
