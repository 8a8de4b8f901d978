-- Scheduled signing key rotation: a retired key stays published until the last
-- token it signed has expired (unix seconds), then it is deleted.
ALTER TABLE signing_keys ADD COLUMN retired_until INTEGER;
