-- Version 7: each status row names the backend on the device that applied
-- the setting (nftables, clamav, mdatp, registry, file), so a report says
-- who enforced what. Rows stored before carry none.

ALTER TABLE statuses ADD COLUMN backend TEXT;
