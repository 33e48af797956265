-- Version 5: names that look the same are the same name. Tenant names and
-- the names of live policies and groups are unique whatever their case
-- (`name_key`, as device names since version 3 and usernames since 4). A
-- deleted object's row keeps counting versions but no longer holds its key.

ALTER TABLE tenants ADD COLUMN name_key TEXT COLLATE "C";
UPDATE tenants SET name_key = lower(name);
UPDATE tenants t SET name_key = t.name_key || '#' || t.id
 WHERE EXISTS (SELECT 1 FROM tenants o
                WHERE o.name_key = t.name_key AND (o.created_at, o.id) < (t.created_at, t.id));
CREATE UNIQUE INDEX tenants_by_name_key ON tenants (name_key);

ALTER TABLE objects ADD COLUMN name_key TEXT COLLATE "C";
UPDATE objects SET name_key = lower(name);
UPDATE objects x SET name_key = x.name_key || '#' || x.name
 WHERE x.current_version IS NOT NULL
   AND EXISTS (SELECT 1 FROM objects o
                WHERE o.tenant_id = x.tenant_id AND o.kind = x.kind
                  AND o.name_key = x.name_key AND o.current_version IS NOT NULL
                  AND o.name < x.name);
CREATE UNIQUE INDEX objects_live_name_key ON objects (tenant_id, kind, name_key)
 WHERE current_version IS NOT NULL;
