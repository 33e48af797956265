-- Version 4: account lifecycle. A user can be disabled without losing
-- its history; usernames are unique within a tenant whatever their case
-- (`username_key`, as device names are since version 3); tokens remember
-- when they were last used, so idle console sessions end.

ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN username_key TEXT;
UPDATE users SET username_key = lower(username);
-- Usernames that differ only in case could exist before: the first keeps
-- its key, the others stay distinct.
UPDATE users SET username_key = username_key || '#' || id
 WHERE rowid NOT IN (SELECT min(rowid) FROM users GROUP BY tenant_id, username_key);
CREATE UNIQUE INDEX users_username_key ON users (tenant_id, username_key);

ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
