-- Version 10: the conditions a device's agent reports (stable codes such as
-- `domain_controller`, `server_core`, `non_persistent_vdi`), as a JSON
-- array, so that administrators see them.
ALTER TABLE devices ADD COLUMN conditions TEXT NOT NULL DEFAULT '[]';
