-- Device pages sort by one column and then the name, starting after a
-- cursor (`rampart_store::page`): one index per sort answers a page without
-- sorting the tenant's devices. The expression is the one the query orders
-- by, so that the index is used.
CREATE INDEX devices_by_check_in ON devices (tenant_id, COALESCE(last_check_in, -1), name);
CREATE INDEX devices_by_os ON devices (tenant_id, os, name);
CREATE INDEX devices_by_type ON devices (tenant_id, device_type, name);
CREATE INDEX devices_by_managed_by ON devices (tenant_id, managed_by, name);
CREATE INDEX devices_by_enrollment ON devices (tenant_id, enrollment_status, name);
