-- Version 3: a device name is not a credential. Names are unique within a
-- tenant whatever their case (`name_key`); the server remembers which key
-- each device's current certificate is for (`key_sha256`, so a device can
-- prove it is itself with that key), and a one-shot re-enrollment an
-- administrator approved (`reenroll_until`). Deleted devices leave a
-- tombstone, so the server can tell an agent that presents a certificate
-- of a deleted device to offboard (with a signed notice) instead of
-- mistaking it for a device it has never heard of.

ALTER TABLE devices
    ADD COLUMN name_key       TEXT,
    ADD COLUMN key_sha256     TEXT,
    ADD COLUMN reenroll_until BIGINT;
UPDATE devices SET name_key = lower(name);
-- Names that differ only in case could exist before this version: the
-- first keeps its key, the others stay distinct.
UPDATE devices d SET name_key = d.name_key || '#' || d.id
 WHERE d.ctid NOT IN (SELECT min(ctid) FROM devices GROUP BY tenant_id, name_key);
CREATE UNIQUE INDEX devices_name_key ON devices (tenant_id, name_key);

CREATE TABLE device_tombstones (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    device_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    deleted_at BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
