-- Version 8: a tenant's policy-signing key can be rotated. Each rotation
-- leaves a signed announcement (JSON text, the new public key signed with
-- the old one); the column holds them as a JSON array, oldest first, so an
-- agent holding any older key can follow the chain to the current one.

ALTER TABLE tenant_secrets ADD COLUMN key_announcements JSONB NOT NULL DEFAULT '[]'::jsonb;
