//! Turning PostgreSQL rows into store records, and sqlx errors into
//! `StoreError`s.

use rampart_store::{
    AuditRecord, DeviceProblems, DeviceRecord, DeviceTombstone, ObjectKind, ObjectRecord,
    OnboardingTokenRecord, Result, StatusRecord, StoreError, Tenant, TenantSecrets, TokenRecord,
    UserRecord,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;

/// Maps database failures to [`StoreError::Backend`]; the write paths look
/// for uniqueness violations themselves before they get here.
pub(crate) trait OrBackend<T> {
    fn or_backend(self) -> Result<T>;
}

impl<T> OrBackend<T> for std::result::Result<T, sqlx::Error> {
    fn or_backend(self) -> Result<T> {
        self.map_err(classify)
    }
}

/// Connection failures are `Unavailable` (the server answers 503 and the
/// call may succeed later); everything else is a `Backend` failure.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    let lost = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_code(&c)),
        _ => false,
    };
    if lost {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Backend(err.to_string())
    }
}

/// SQLSTATE classes 08 (connection exception) and 57P (operator
/// intervention: shutdown, cannot connect now), and 53300 (too many
/// connections).
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).or_backend()
}

/// Versions are `u64` in the API and BIGINT in PostgreSQL.
pub(crate) fn to_db_u64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{value} is too large to store")))
}

pub(crate) fn from_db_u64(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| StoreError::Backend(format!("stored {column} {value} is negative")))
}

fn u64_column(row: &PgRow, column: &str) -> Result<u64> {
    from_db_u64(get(row, column)?, column)
}

fn opt_u64_column(row: &PgRow, column: &str) -> Result<Option<u64>> {
    let value: Option<i64> = get(row, column)?;
    value.map(|v| from_db_u64(v, column)).transpose()
}

pub(crate) fn from_db_u32(value: i64, column: &str) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::Backend(format!("stored {column} {value} is out of range")))
}

fn strings_column(row: &PgRow, column: &str) -> Result<Vec<String>> {
    let Json(list) = get::<Json<Vec<String>>>(row, column)?;
    Ok(list)
}

pub(crate) fn kind_from_db(kind: &str) -> Result<ObjectKind> {
    match kind {
        "policy" => Ok(ObjectKind::Policy),
        "group" => Ok(ObjectKind::Group),
        "rollout" => Ok(ObjectKind::Rollout),
        other => Err(StoreError::Backend(format!(
            "unknown object kind {other:?}"
        ))),
    }
}

pub(crate) fn tenant(row: &PgRow) -> Result<Tenant> {
    Ok(Tenant {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

pub(crate) const OBJECT_COLUMNS: &str =
    "v.kind, v.name, v.version, v.doc, v.modified_at, v.modified_by";

pub(crate) fn object(row: &PgRow) -> Result<ObjectRecord> {
    let kind: String = get(row, "kind")?;
    Ok(ObjectRecord {
        kind: kind_from_db(&kind)?,
        name: get(row, "name")?,
        doc: get(row, "doc")?,
        version: u64_column(row, "version")?,
        modified_at: get(row, "modified_at")?,
        modified_by: get(row, "modified_by")?,
    })
}

pub(crate) const DEVICE_COLUMNS: &str = "id, name, os, os_version, device_type, agent_version, \
    tags, labels, managed_by, enrollment_status, enrollment_code, enrollment_reason, \
    last_check_in, applied_digest, policy_version, created_at, cert_serial, cert_not_after, \
    issued_version, issued_digest, key_sha256, reenroll_until, conditions";

pub(crate) fn device(row: &PgRow) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        os: get(row, "os")?,
        os_version: get(row, "os_version")?,
        device_type: get(row, "device_type")?,
        agent_version: get(row, "agent_version")?,
        tags: strings_column(row, "tags")?,
        labels: strings_column(row, "labels")?,
        managed_by: get(row, "managed_by")?,
        enrollment_status: get(row, "enrollment_status")?,
        enrollment_code: get(row, "enrollment_code")?,
        enrollment_reason: get(row, "enrollment_reason")?,
        last_check_in: get(row, "last_check_in")?,
        applied_digest: get(row, "applied_digest")?,
        policy_version: opt_u64_column(row, "policy_version")?,
        created_at: get(row, "created_at")?,
        cert_serial: get(row, "cert_serial")?,
        cert_not_after: get(row, "cert_not_after")?,
        issued_version: u64_column(row, "issued_version")?,
        issued_digest: get(row, "issued_digest")?,
        key_sha256: get(row, "key_sha256")?,
        reenroll_until: get(row, "reenroll_until")?,
        conditions: strings_column(row, "conditions")?,
    })
}

pub(crate) fn tombstone(row: &PgRow) -> Result<DeviceTombstone> {
    Ok(DeviceTombstone {
        device_id: get(row, "device_id")?,
        name: get(row, "name")?,
        deleted_at: get(row, "deleted_at")?,
        reason: get(row, "reason")?,
    })
}

pub(crate) const STATUS_COLUMNS: &str = "device, setting, setting_key, status, observed, \
    error_code, error_message, backend, digest, updated_at";

pub(crate) fn device_problems(row: &PgRow) -> Result<DeviceProblems> {
    Ok(DeviceProblems {
        device: get(row, "device")?,
        errors: from_db_u64(get(row, "errors")?, "errors")?,
        conflicts: from_db_u64(get(row, "conflicts")?, "conflicts")?,
    })
}

pub(crate) fn status(row: &PgRow) -> Result<StatusRecord> {
    Ok(StatusRecord {
        device: get(row, "device")?,
        setting: get(row, "setting")?,
        key: get(row, "setting_key")?,
        status: get(row, "status")?,
        observed: get(row, "observed")?,
        error_code: get(row, "error_code")?,
        error_message: get(row, "error_message")?,
        backend: get(row, "backend")?,
        digest: get(row, "digest")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(crate) const TOKEN_COLUMNS: &str =
    "id, tenant_id, name, role, kind, hash, created_at, expires_at, created_by, last_used_at";

pub(crate) fn token(row: &PgRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: get(row, "id")?,
        tenant_id: get(row, "tenant_id")?,
        name: get(row, "name")?,
        role: get(row, "role")?,
        kind: get(row, "kind")?,
        hash: get(row, "hash")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        created_by: get(row, "created_by")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, username, password_hash, role, created_at, disabled";

pub(crate) fn user(row: &PgRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: get(row, "id")?,
        username: get(row, "username")?,
        password_hash: get(row, "password_hash")?,
        role: get(row, "role")?,
        created_at: get(row, "created_at")?,
        disabled: get(row, "disabled")?,
    })
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, actor, action, object_kind, object_name, before_doc, after_doc";

pub(crate) fn audit(row: &PgRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: get(row, "id")?,
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        object_kind: get(row, "object_kind")?,
        object_name: get(row, "object_name")?,
        before: get(row, "before_doc")?,
        after: get(row, "after_doc")?,
    })
}

pub(crate) const TENANT_SECRETS_COLUMNS: &str =
    "ca_cert_pem, ca_key_pem, signing_key, verify_key, key_announcements";

pub(crate) fn tenant_secrets(row: &PgRow) -> Result<TenantSecrets> {
    Ok(TenantSecrets {
        ca_cert_pem: get(row, "ca_cert_pem")?,
        ca_key_pem: get(row, "ca_key_pem")?,
        signing_key: get(row, "signing_key")?,
        verify_key: get(row, "verify_key")?,
        key_announcements: strings_column(row, "key_announcements")?,
    })
}

pub(crate) const ONBOARDING_TOKEN_COLUMNS: &str =
    "id, hash, created_at, created_by, expires_at, max_uses, uses";

pub(crate) fn onboarding_token(row: &PgRow) -> Result<OnboardingTokenRecord> {
    let max_uses: Option<i64> = get(row, "max_uses")?;
    Ok(OnboardingTokenRecord {
        id: get(row, "id")?,
        hash: get(row, "hash")?,
        created_at: get(row, "created_at")?,
        created_by: get(row, "created_by")?,
        expires_at: get(row, "expires_at")?,
        max_uses: max_uses.map(|v| from_db_u32(v, "max_uses")).transpose()?,
        uses: from_db_u32(get(row, "uses")?, "uses")?,
    })
}
