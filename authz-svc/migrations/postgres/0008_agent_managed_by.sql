-- Who owns an agent bundle's declaration: `gateway-file` for a bundle the gateway file declares
-- (`gatehouse apply` decommissions it once the file stops declaring it), NULL for one created
-- through the admin API, the CLI or the console (never touched by `gatehouse apply`).
ALTER TABLE agents ADD COLUMN managed_by TEXT;
