-- Device pages sort by one column and then the name, starting after a
-- cursor (`rampart_store::page`), byte by byte: one index per sort, with
-- the collation and expression the query orders by, answers a page without
-- sorting the tenant's devices.
CREATE INDEX devices_by_check_in ON devices (tenant_id, (COALESCE(last_check_in, -1)), name);
CREATE INDEX devices_by_os ON devices (tenant_id, os COLLATE "C", name);
CREATE INDEX devices_by_type ON devices (tenant_id, device_type COLLATE "C", name);
CREATE INDEX devices_by_managed_by ON devices (tenant_id, managed_by COLLATE "C", name);
CREATE INDEX devices_by_enrollment ON devices (tenant_id, enrollment_status COLLATE "C", name);
