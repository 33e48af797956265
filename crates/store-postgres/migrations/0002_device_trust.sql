-- Version 2: what the device channel needs. Devices get the identity the
-- server issued them (certificate serial and expiry) and the last signed
-- policy it issued; tenants get their CA and policy-signing keys; the
-- installation gets secrets shared by every tenant and replica; onboarding
-- tokens let agents enroll.

ALTER TABLE devices
    ADD COLUMN cert_serial    TEXT,
    ADD COLUMN cert_not_after BIGINT,
    -- 0 for devices that were never issued a signed policy.
    ADD COLUMN issued_version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN issued_digest  TEXT;

CREATE TABLE tenant_secrets (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id),
    ca_cert_pem TEXT NOT NULL,
    ca_key_pem  TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    verify_key  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Installation-wide, not per tenant: written once, by whichever replica
-- gets there first.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- A use is counted under the row's lock (FOR UPDATE), so concurrent
-- enrollments never take more uses than the token has.
CREATE TABLE onboarding_tokens (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         TEXT COLLATE "C" NOT NULL,
    -- Unique across tenants: a token is looked up by its hash alone.
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses   BIGINT,
    uses       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
