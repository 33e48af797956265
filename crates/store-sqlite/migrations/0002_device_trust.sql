-- Version 2: what the device channel needs. Devices get the identity the
-- server issued them (certificate serial and expiry) and the last signed
-- policy it issued; tenants get their CA and policy-signing keys; the
-- installation gets secrets shared by every tenant; onboarding tokens let
-- agents enroll.

ALTER TABLE devices ADD COLUMN cert_serial TEXT;
ALTER TABLE devices ADD COLUMN cert_not_after INTEGER;
-- 0 for devices that were never issued a signed policy.
ALTER TABLE devices ADD COLUMN issued_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN issued_digest TEXT;

CREATE TABLE tenant_secrets (
    tenant_id   TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    ca_cert_pem TEXT NOT NULL,
    ca_key_pem  TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    verify_key  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Installation-wide, not per tenant: written once, by whichever replica
-- gets there first.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE onboarding_tokens (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         TEXT NOT NULL,
    -- Unique across tenants: a token is looked up by its hash alone.
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
