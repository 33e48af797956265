-- Version 6: tenant settings are versioned like policies and groups, so an
-- update based on an old version is refused instead of silently undoing the
-- change made in between. Existing settings start at version 1.

ALTER TABLE tenant_settings ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
