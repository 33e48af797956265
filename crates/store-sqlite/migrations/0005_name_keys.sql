-- Version 5: names that look the same are the same name. Tenant names and
-- the names of live policies and groups are unique whatever their case
-- (`name_key`, as device names since version 3 and usernames since 4). A
-- deleted object's row keeps counting versions but no longer holds its key.

ALTER TABLE tenants ADD COLUMN name_key TEXT;
UPDATE tenants SET name_key = lower(name);
UPDATE tenants SET name_key = name_key || '#' || id
 WHERE rowid NOT IN (SELECT min(rowid) FROM tenants GROUP BY name_key);
CREATE UNIQUE INDEX tenants_by_name_key ON tenants (name_key);

ALTER TABLE objects ADD COLUMN name_key TEXT;
UPDATE objects SET name_key = lower(name);
UPDATE objects SET name_key = name_key || '#' || name
 WHERE current_version IS NOT NULL
   AND rowid NOT IN (SELECT min(rowid) FROM objects WHERE current_version IS NOT NULL
                     GROUP BY tenant_id, kind, name_key);
CREATE UNIQUE INDEX objects_live_name_key ON objects (tenant_id, kind, name_key)
 WHERE current_version IS NOT NULL;
