-- Version 4: account lifecycle. A user can be disabled without losing
-- its history; usernames are unique within a tenant whatever their case
-- (`username_key`, as device names are since version 3); tokens remember
-- when they were last used, so idle console sessions end.

ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN username_key TEXT COLLATE "C";
UPDATE users SET username_key = lower(username);
-- Usernames that differ only in case could exist before: the first keeps
-- its key, the others stay distinct.
UPDATE users u SET username_key = u.username_key || '#' || u.id
 WHERE EXISTS (SELECT 1 FROM users o
                WHERE o.tenant_id = u.tenant_id AND o.username_key = u.username_key
                  AND (o.created_at, o.id) < (u.created_at, u.id));
CREATE UNIQUE INDEX users_username_key ON users (tenant_id, username_key);

ALTER TABLE tokens ADD COLUMN last_used_at BIGINT;
