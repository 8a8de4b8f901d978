-- Remembered consent: the scopes a member approved for a client at a resource, so that a later
-- authorization asking for no more is not put to the member again; forgotten when the member
-- revokes a grant of that client at that resource.
CREATE TABLE consents (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (subject, client_id, resource)
);
