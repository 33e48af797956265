-- Rampart's PostgreSQL schema, version 1. Timestamps are BIGINT seconds since
-- the Unix epoch; documents are JSONB. Every table but `tenants` is keyed by
-- the tenant first, so each query stays inside one tenant.
--
-- Names that lists are sorted by use the "C" collation: byte order, the same
-- as SQLite's, whatever the database's locale.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE tenant_settings (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    doc        JSONB NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per policy or group name ever written. The row outlives a delete
-- (current_version becomes NULL) so that last_version keeps counting and a
-- re-created object never reuses a version. Writers lock this row (FOR
-- UPDATE) while they check and change the object.
CREATE TABLE objects (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    kind            TEXT NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    last_version    BIGINT NOT NULL,
    current_version BIGINT,
    PRIMARY KEY (tenant_id, kind, name)
);

-- Every version of every object, the current one included.
CREATE TABLE object_versions (
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    doc         JSONB NOT NULL,
    modified_at BIGINT NOT NULL,
    modified_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name, version),
    FOREIGN KEY (tenant_id, kind, name) REFERENCES objects (tenant_id, kind, name)
);

CREATE TABLE devices (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    name              TEXT COLLATE "C" NOT NULL,
    id                TEXT NOT NULL,
    os                TEXT NOT NULL,
    os_version        TEXT NOT NULL,
    device_type       TEXT NOT NULL,
    agent_version     TEXT NOT NULL,
    tags              JSONB NOT NULL,
    labels            JSONB NOT NULL,
    managed_by        TEXT NOT NULL,
    enrollment_status TEXT NOT NULL,
    enrollment_code   TEXT,
    enrollment_reason TEXT,
    last_check_in     BIGINT,
    applied_digest    TEXT,
    policy_version    BIGINT,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name),
    UNIQUE (tenant_id, id)
);

-- Statuses hang off the device's name; deleting the device deletes them.
CREATE TABLE statuses (
    tenant_id     TEXT NOT NULL,
    device        TEXT COLLATE "C" NOT NULL,
    setting       TEXT COLLATE "C" NOT NULL,
    setting_key   TEXT COLLATE "C" NOT NULL,
    status        TEXT NOT NULL,
    observed      JSONB,
    error_code    TEXT,
    error_message TEXT,
    digest        TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device, setting, setting_key),
    FOREIGN KEY (tenant_id, device) REFERENCES devices (tenant_id, name) ON DELETE CASCADE
);

CREATE TABLE tokens (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         TEXT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    role       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    -- Unique across tenants: a token is looked up by its hash alone.
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE users (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    id            TEXT NOT NULL,
    username      TEXT COLLATE "C" NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, username)
);

CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_name TEXT NOT NULL,
    before_doc  JSONB,
    after_doc   JSONB
);

CREATE INDEX audit_by_tenant ON audit (tenant_id, id);
