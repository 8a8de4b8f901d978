-- Members who sign in through an upstream OIDC provider, keyed by (issuer, subject): the
-- member id their tokens carry as `sub`, and the Gatehouse groups their last sign-in mapped.
CREATE TABLE federated_members (
    member_id TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);
