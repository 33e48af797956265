-- Rampart's SQLite schema, version 1. Timestamps are seconds since the Unix
-- epoch; JSON documents are TEXT. Every table but `tenants` is keyed by the
-- tenant first, so each query stays inside one tenant.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE tenant_settings (
    tenant_id  TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    doc        TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One row per policy or group name ever written. The row outlives a delete
-- (current_version becomes NULL) so that last_version keeps counting and a
-- re-created object never reuses a version.
CREATE TABLE objects (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    last_version    INTEGER NOT NULL,
    current_version INTEGER,
    PRIMARY KEY (tenant_id, kind, name)
);

-- Every version of every object, the current one included.
CREATE TABLE object_versions (
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    modified_at INTEGER NOT NULL,
    modified_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name, version),
    FOREIGN KEY (tenant_id, kind, name) REFERENCES objects (tenant_id, kind, name)
);

CREATE TABLE devices (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    name              TEXT NOT NULL,
    id                TEXT NOT NULL,
    os                TEXT NOT NULL,
    os_version        TEXT NOT NULL,
    device_type       TEXT NOT NULL,
    agent_version     TEXT NOT NULL,
    tags              TEXT NOT NULL,
    labels            TEXT NOT NULL,
    managed_by        TEXT NOT NULL,
    enrollment_status TEXT NOT NULL,
    enrollment_code   TEXT,
    enrollment_reason TEXT,
    last_check_in     INTEGER,
    applied_digest    TEXT,
    policy_version    INTEGER,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name),
    UNIQUE (tenant_id, id)
);

-- Statuses hang off the device's name; deleting the device deletes them.
CREATE TABLE statuses (
    tenant_id     TEXT NOT NULL,
    device        TEXT NOT NULL,
    setting       TEXT NOT NULL,
    setting_key   TEXT NOT NULL,
    status        TEXT NOT NULL,
    observed      TEXT,
    error_code    TEXT,
    error_message TEXT,
    digest        TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device, setting, setting_key),
    FOREIGN KEY (tenant_id, device) REFERENCES devices (tenant_id, name) ON DELETE CASCADE
);

CREATE TABLE tokens (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    -- Unique across tenants: a token is looked up by its hash alone.
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE users (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    id            TEXT NOT NULL,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, username)
);

-- AUTOINCREMENT so an id is never handed out twice, even after the newest
-- rows are gone.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_name TEXT NOT NULL,
    before_doc  TEXT,
    after_doc   TEXT
);

CREATE INDEX audit_by_tenant ON audit (tenant_id, id);
