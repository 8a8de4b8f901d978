-- Audit events of changes made on the store directly (the `gatehouse agents` CLI),
-- kept until a running server hands them to its audit path, in order.
CREATE TABLE audit_outbox (
    seq BIGSERIAL PRIMARY KEY,
    event BYTEA NOT NULL
);
