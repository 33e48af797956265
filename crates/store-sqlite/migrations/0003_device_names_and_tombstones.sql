-- Version 3: a device name is not a credential. Names are unique within a
-- tenant whatever their case (`name_key`); the server remembers which key
-- each device's current certificate is for (`key_sha256`, so a device can
-- prove it is itself with that key), and a one-shot re-enrollment an
-- administrator approved (`reenroll_until`). Deleted devices leave a
-- tombstone, so the server can tell an agent that presents a certificate
-- of a deleted device to offboard (with a signed notice) instead of
-- mistaking it for a device it has never heard of.

ALTER TABLE devices ADD COLUMN name_key TEXT;
ALTER TABLE devices ADD COLUMN key_sha256 TEXT;
ALTER TABLE devices ADD COLUMN reenroll_until INTEGER;
UPDATE devices SET name_key = lower(name);
-- Names that differ only in case could exist before this version: the
-- first keeps its key, the others stay distinct (and reachable by their
-- exact name through their id).
UPDATE devices SET name_key = name_key || '#' || id
 WHERE rowid NOT IN (SELECT min(rowid) FROM devices GROUP BY tenant_id, name_key);
CREATE UNIQUE INDEX devices_name_key ON devices (tenant_id, name_key);

CREATE TABLE device_tombstones (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    device_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    deleted_at INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
