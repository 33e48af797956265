-- The audit log filtered by object (`rampart_store::audit_query`): a
-- device's or a policy's history, newest first, without reading the rest
-- of the tenant's log.
CREATE INDEX audit_by_object ON audit (tenant_id, object_kind, object_name, id);
