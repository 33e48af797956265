//! Applying a `Write` batch and a status report inside one transaction. The
//! caller owns the transaction: any error here rolls everything back.
//!
//! PostgreSQL runs these at READ COMMITTED, so every check that a later write
//! depends on first locks the row it reads (`FOR UPDATE`): a concurrent
//! writer waits for this transaction and then sees its result.

use std::collections::{BTreeMap, HashMap};

use rampart_store::{
    name_key, DeviceRecord, Expect, NewAudit, ObjectKind, OnboardingTokenRecord, Result,
    StatusRecord, StoreError, TenantSecrets, Timestamp, TokenRecord, TokenUse, UserRecord, Write,
};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use crate::rows::{self, from_db_u64, is_unique_violation, to_db_u64, OrBackend};

pub(crate) async fn batch(
    conn: &mut PgConnection,
    tenant: &str,
    at: Timestamp,
    writes: Vec<Write>,
    audit: Vec<NewAudit>,
) -> Result<()> {
    ensure_tenant(conn, tenant).await?;
    for write in writes {
        one(conn, tenant, at, write).await?;
    }
    for entry in audit {
        sqlx::query(
            "INSERT INTO audit (tenant_id, at, actor, action, object_kind, object_name, \
             before_doc, after_doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant)
        .bind(at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.object_kind)
        .bind(&entry.object_name)
        .bind(&entry.before)
        .bind(&entry.after)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    }
    Ok(())
}

async fn ensure_tenant(conn: &mut PgConnection, tenant: &str) -> Result<()> {
    let found = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await
        .or_backend()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant {tenant:?}"))),
    }
}

async fn one(conn: &mut PgConnection, tenant: &str, at: Timestamp, write: Write) -> Result<()> {
    match write {
        Write::PutObject {
            kind,
            name,
            doc,
            expect,
            by,
        } => put_object(conn, tenant, at, kind, &name, &doc, expect, &by).await,
        Write::DeleteObject { kind, name, expect } => {
            delete_object(conn, tenant, kind, &name, expect).await
        }
        Write::PutTenantSettings { doc } => {
            sqlx::query(
                "INSERT INTO tenant_settings (tenant_id, doc, updated_at, version) \
                 VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (tenant_id) DO UPDATE \
                 SET doc = excluded.doc, updated_at = excluded.updated_at, \
                 version = tenant_settings.version + 1",
            )
            .bind(tenant)
            .bind(&doc)
            .bind(at)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            Ok(())
        }
        Write::ExpectTenantSettings { version } => {
            // A row to lock, so concurrent conditional updates queue up; a
            // placeholder at version 0 reads as no settings (defaults).
            sqlx::query(
                "INSERT INTO tenant_settings (tenant_id, doc, updated_at, version) \
                 VALUES ($1, '{}'::jsonb, 0, 0) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM tenant_settings WHERE tenant_id = $1 FOR UPDATE",
            )
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .or_backend()?;
            let current = current.unwrap_or(0);
            if u64::try_from(current).ok() != Some(version) {
                return Err(StoreError::Conflict(format!(
                    "the tenant settings are at version {current}, not {version}"
                )));
            }
            Ok(())
        }
        Write::PutDevice(device) => put_device(conn, tenant, &device, false).await,
        Write::EnrollDevice(device) => put_device(conn, tenant, &device, true).await,
        Write::ApproveReenroll { name, until } => {
            let done = sqlx::query(SET_REENROLL)
                .bind(until)
                .bind(tenant)
                .bind(&name)
                .execute(&mut *conn)
                .await
                .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
        Write::ConsumeReenroll { name } => {
            let done = sqlx::query(CONSUME_REENROLL)
                .bind(tenant)
                .bind(&name)
                .bind(at)
                .execute(&mut *conn)
                .await
                .or_backend()?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict(format!(
                    "device {name:?} has no re-enrollment approval in force"
                )))
            }
        }
        Write::SetDeviceTags { name, tags } => {
            let done =
                sqlx::query("UPDATE devices SET tags = $1 WHERE tenant_id = $2 AND name = $3")
                    .bind(Json(&tags))
                    .bind(tenant)
                    .bind(&name)
                    .execute(&mut *conn)
                    .await
                    .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
        Write::DeleteDevice { name, reason } => {
            // The tombstone first, while the row still says which id the
            // name had; nothing is written when there is no such device.
            sqlx::query(
                "INSERT INTO device_tombstones (tenant_id, device_id, name, deleted_at, reason) \
                 SELECT tenant_id, id, name, $1, $2 FROM devices \
                 WHERE tenant_id = $3 AND name = $4 \
                 ON CONFLICT (tenant_id, device_id) DO UPDATE \
                 SET name = excluded.name, deleted_at = excluded.deleted_at, reason = excluded.reason",
            )
            .bind(at)
            .bind(&reason)
            .bind(tenant)
            .bind(&name)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            // The foreign key cascades to the statuses.
            let done = sqlx::query("DELETE FROM devices WHERE tenant_id = $1 AND name = $2")
                .bind(tenant)
                .bind(&name)
                .execute(&mut *conn)
                .await
                .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
        Write::PutToken(token) => put_token(conn, tenant, &token).await,
        Write::DeleteToken { id } => {
            let done = sqlx::query("DELETE FROM tokens WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(&id)
                .execute(&mut *conn)
                .await
                .or_backend()?;
            found_one(done.rows_affected(), || format!("token {id:?}"))
        }
        Write::PutUser(user) => put_user(conn, tenant, &user).await,
        Write::UpdateUser {
            username,
            role,
            password_hash,
            disabled,
        } => {
            let done = sqlx::query(
                "UPDATE users SET role = COALESCE($1, role), \
                 password_hash = COALESCE($2, password_hash), \
                 disabled = COALESCE($3, disabled) \
                 WHERE tenant_id = $4 AND username_key = $5",
            )
            .bind(role)
            .bind(password_hash)
            .bind(disabled)
            .bind(tenant)
            .bind(name_key(&username))
            .execute(&mut *conn)
            .await
            .or_backend()?;
            found_one(done.rows_affected(), || format!("user {username:?}"))?;
            delete_sessions(conn, tenant, &username).await
        }
        Write::DeleteUser { username } => {
            let done = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND username_key = $2")
                .bind(tenant)
                .bind(name_key(&username))
                .execute(&mut *conn)
                .await
                .or_backend()?;
            found_one(done.rows_affected(), || format!("user {username:?}"))?;
            delete_sessions(conn, tenant, &username).await
        }
        Write::PutTenantSecrets(secrets) => put_tenant_secrets(conn, tenant, at, &secrets).await,
        Write::RotatePolicyKey {
            expected_verify_key,
            signing_key,
            verify_key,
            key_announcements,
        } => {
            let done = sqlx::query(
                "UPDATE tenant_secrets SET signing_key = $1, verify_key = $2, key_announcements = $3, updated_at = $4 WHERE tenant_id = $5 AND verify_key = $6",
            )
            .bind(&signing_key)
            .bind(&verify_key)
            .bind(Json(&key_announcements))
            .bind(at)
            .bind(tenant)
            .bind(&expected_verify_key)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            if done.rows_affected() == 1 {
                return Ok(());
            }
            let exists = sqlx::query("SELECT 1 FROM tenant_secrets WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(&mut *conn)
                .await
                .or_backend()?;
            Err(match exists {
                Some(_) => StoreError::Conflict(
                    "the tenant's policy key was rotated meanwhile; read it again".to_owned(),
                ),
                None => StoreError::NotFound(format!("secrets of tenant {tenant:?}")),
            })
        }
        Write::PutOnboardingToken(token) => put_onboarding_token(conn, tenant, &token).await,
        Write::DeleteOnboardingToken { id } => {
            let done =
                sqlx::query("DELETE FROM onboarding_tokens WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await
                    .or_backend()?;
            found_one(done.rows_affected(), || format!("onboarding token {id:?}"))
        }
        Write::UpdateDeviceFacts {
            name,
            os,
            os_version,
            device_type,
            agent_version,
            tags,
            managed_by,
            labels,
            enrollment_status,
            enrollment_code,
            enrollment_reason,
            last_check_in,
            conditions,
        } => {
            // `COALESCE` keeps the stored tags and time when none are given.
            let done = sqlx::query(
                "UPDATE devices SET os = $1, os_version = $2, device_type = $3, \
                 agent_version = $4, tags = COALESCE($5, tags), managed_by = $6, labels = $7, \
                 enrollment_status = $8, enrollment_code = $9, enrollment_reason = $10, \
                 last_check_in = COALESCE($11, last_check_in), conditions = $14 \
                 WHERE tenant_id = $12 AND name = $13",
            )
            .bind(&os)
            .bind(&os_version)
            .bind(&device_type)
            .bind(&agent_version)
            .bind(tags.as_ref().map(Json))
            .bind(&managed_by)
            .bind(Json(&labels))
            .bind(&enrollment_status)
            .bind(&enrollment_code)
            .bind(&enrollment_reason)
            .bind(last_check_in)
            .bind(tenant)
            .bind(&name)
            .bind(Json(&conditions))
            .execute(&mut *conn)
            .await
            .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
        Write::SetDeviceIdentity {
            name,
            cert_serial,
            cert_not_after,
            key_sha256,
        } => {
            let done = sqlx::query(
                "UPDATE devices SET cert_serial = $1, cert_not_after = $2, key_sha256 = $3 \
                 WHERE tenant_id = $4 AND name = $5",
            )
            .bind(&cert_serial)
            .bind(cert_not_after)
            .bind(&key_sha256)
            .bind(tenant)
            .bind(&name)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
        Write::SetIssuedPolicy {
            name,
            version,
            digest,
        } => set_issued_policy(conn, tenant, &name, version, &digest).await,
        Write::SetAppliedPolicy {
            name,
            digest,
            version,
        } => {
            let done = sqlx::query(
                "UPDATE devices SET applied_digest = $1, policy_version = $2 \
                 WHERE tenant_id = $3 AND name = $4",
            )
            .bind(&digest)
            .bind(version.map(to_db_u64).transpose()?)
            .bind(tenant)
            .bind(&name)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
    }
}

fn found_one(rows: u64, what: impl FnOnce() -> String) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(what()));
    }
    Ok(())
}

fn describe(kind: ObjectKind, name: &str) -> String {
    format!("{} {name:?}", kind.as_str())
}

/// Checks an expectation against the object's current version (`None` when
/// it does not exist). Expecting an object that is missing is NotFound, as a
/// delete or update of a missing record is elsewhere.
fn check(kind: ObjectKind, name: &str, current: Option<u64>, expect: Expect) -> Result<()> {
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) | (Expect::Present, Some(_)) => Ok(()),
        (Expect::Absent, Some(_)) => Err(StoreError::Conflict(format!(
            "{} already exists",
            describe(kind, name)
        ))),
        (Expect::Present | Expect::Version(_), None) => {
            Err(StoreError::NotFound(describe(kind, name)))
        }
        (Expect::Version(wanted), Some(at)) if wanted == at => Ok(()),
        (Expect::Version(wanted), Some(at)) => Err(StoreError::Conflict(format!(
            "{} is at version {at}, not {wanted}",
            describe(kind, name)
        ))),
    }
}

/// Locks the object's row and returns (last version ever written, current
/// version if live); `None` when the name was never written.
async fn lock_object(
    conn: &mut PgConnection,
    tenant: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<Option<(u64, Option<u64>)>> {
    let row = sqlx::query(
        "SELECT last_version, current_version FROM objects \
         WHERE tenant_id = $1 AND kind = $2 AND name = $3 FOR UPDATE",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .or_backend()?;
    let Some(row) = row else { return Ok(None) };
    let last: i64 = row.try_get("last_version").or_backend()?;
    let current: Option<i64> = row.try_get("current_version").or_backend()?;
    let current = current
        .map(|v| from_db_u64(v, "current_version"))
        .transpose()?;
    Ok(Some((from_db_u64(last, "last_version")?, current)))
}

/// A live object whose name has the same key exists (`objects_live_name_key`).
fn same_name_taken(err: sqlx::Error, kind: ObjectKind, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict(format!(
            "a {} named {name:?} already exists (names are compared ignoring case)",
            kind.as_str()
        ))
    } else {
        crate::rows::classify(err)
    }
}

#[allow(clippy::too_many_arguments)]
async fn put_object(
    conn: &mut PgConnection,
    tenant: &str,
    at: Timestamp,
    kind: ObjectKind,
    name: &str,
    doc: &Value,
    expect: Expect,
    by: &str,
) -> Result<()> {
    // Make sure there is a row to lock. A concurrent creator's insert makes
    // this one wait until it commits (then it does nothing), so two creators
    // of one name are serialised like two updaters.
    sqlx::query(
        "INSERT INTO objects (tenant_id, kind, name, last_version, current_version, name_key) \
         VALUES ($1, $2, $3, 0, NULL, $4) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .bind(name)
    .bind(name_key(name))
    .execute(&mut *conn)
    .await
    .or_backend()?;
    let head = lock_object(conn, tenant, kind, name).await?;
    let (last, current) = head.unwrap_or((0, None));
    check(kind, name, current, expect)?;
    let version = to_db_u64(last + 1)?;
    sqlx::query(
        "UPDATE objects SET last_version = $4, current_version = $4, name_key = $5 \
         WHERE tenant_id = $1 AND kind = $2 AND name = $3",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .bind(name)
    .bind(version)
    .bind(name_key(name))
    .execute(&mut *conn)
    .await
    .map_err(|err| same_name_taken(err, kind, name))?;
    sqlx::query(
        "INSERT INTO object_versions \
         (tenant_id, kind, name, version, doc, modified_at, modified_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .bind(name)
    .bind(version)
    .bind(doc)
    .bind(at)
    .bind(by)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

async fn delete_object(
    conn: &mut PgConnection,
    tenant: &str,
    kind: ObjectKind,
    name: &str,
    expect: Expect,
) -> Result<()> {
    let current = lock_object(conn, tenant, kind, name)
        .await?
        .and_then(|(_, current)| current);
    check(kind, name, current, expect)?;
    if current.is_some() {
        // The row stays so that its last version keeps counting.
        sqlx::query(
            "UPDATE objects SET current_version = NULL \
             WHERE tenant_id = $1 AND kind = $2 AND name = $3",
        )
        .bind(tenant)
        .bind(kind.as_str())
        .bind(name)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    }
    Ok(())
}

const SET_REENROLL: &str =
    "UPDATE devices SET reenroll_until = $1 WHERE tenant_id = $2 AND name = $3";
/// Clears the approval only while it is in force, so of two enrollments
/// racing for it one succeeds.
const CONSUME_REENROLL: &str = "UPDATE devices SET reenroll_until = NULL \
     WHERE tenant_id = $1 AND name = $2 AND reenroll_until > $3";

/// Inserts a device, or with `insert_only` false replaces the one of that
/// name.
async fn put_device(
    conn: &mut PgConnection,
    tenant: &str,
    d: &DeviceRecord,
    insert_only: bool,
) -> Result<()> {
    // An upsert keeps the row, and with it the device's statuses.
    const INSERT: &str =
        "INSERT INTO devices (tenant_id, name, id, os, os_version, device_type, agent_version, \
         tags, labels, managed_by, enrollment_status, enrollment_code, enrollment_reason, \
         last_check_in, applied_digest, policy_version, created_at, cert_serial, \
         cert_not_after, issued_version, issued_digest, name_key, key_sha256, reenroll_until, \
         conditions) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24, $25)";
    const UPSERT: &str = " ON CONFLICT (tenant_id, name) DO UPDATE SET \
         id = excluded.id, os = excluded.os, os_version = excluded.os_version, \
         device_type = excluded.device_type, agent_version = excluded.agent_version, \
         tags = excluded.tags, labels = excluded.labels, managed_by = excluded.managed_by, \
         enrollment_status = excluded.enrollment_status, \
         enrollment_code = excluded.enrollment_code, \
         enrollment_reason = excluded.enrollment_reason, \
         last_check_in = excluded.last_check_in, applied_digest = excluded.applied_digest, \
         policy_version = excluded.policy_version, created_at = excluded.created_at, \
         cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after, \
         issued_version = excluded.issued_version, issued_digest = excluded.issued_digest, \
         name_key = excluded.name_key, key_sha256 = excluded.key_sha256, \
         reenroll_until = excluded.reenroll_until, conditions = excluded.conditions";
    let sql = if insert_only {
        INSERT.to_string()
    } else {
        format!("{INSERT}{UPSERT}")
    };
    let result = sqlx::query(&sql)
        .bind(tenant)
        .bind(&d.name)
        .bind(&d.id)
        .bind(&d.os)
        .bind(&d.os_version)
        .bind(&d.device_type)
        .bind(&d.agent_version)
        .bind(Json(&d.tags))
        .bind(Json(&d.labels))
        .bind(&d.managed_by)
        .bind(&d.enrollment_status)
        .bind(&d.enrollment_code)
        .bind(&d.enrollment_reason)
        .bind(d.last_check_in)
        .bind(&d.applied_digest)
        .bind(d.policy_version.map(to_db_u64).transpose()?)
        .bind(d.created_at)
        .bind(&d.cert_serial)
        .bind(d.cert_not_after)
        .bind(to_db_u64(d.issued_version)?)
        .bind(&d.issued_digest)
        .bind(name_key(&d.name))
        .bind(&d.key_sha256)
        .bind(d.reenroll_until)
        .bind(Json(&d.conditions))
        .execute(&mut *conn)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
            "a device named {:?} (in any case) or with id {:?} exists already",
            d.name, d.id
        ))),
        Err(err) => Err(StoreError::Backend(err.to_string())),
    }
}

async fn put_tenant_secrets(
    conn: &mut PgConnection,
    tenant: &str,
    at: Timestamp,
    secrets: &TenantSecrets,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO tenant_secrets \
         (tenant_id, ca_cert_pem, ca_key_pem, signing_key, verify_key, key_announcements, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tenant_id) DO UPDATE SET \
         ca_cert_pem = excluded.ca_cert_pem, ca_key_pem = excluded.ca_key_pem, \
         signing_key = excluded.signing_key, verify_key = excluded.verify_key, \
         key_announcements = excluded.key_announcements, \
         updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(&secrets.ca_cert_pem)
    .bind(&secrets.ca_key_pem)
    .bind(&secrets.signing_key)
    .bind(&secrets.verify_key)
    .bind(Json(&secrets.key_announcements))
    .bind(at)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

async fn put_onboarding_token(
    conn: &mut PgConnection,
    tenant: &str,
    t: &OnboardingTokenRecord,
) -> Result<()> {
    let result = sqlx::query(
        "INSERT INTO onboarding_tokens (tenant_id, id, hash, created_at, created_by, \
         expires_at, max_uses, uses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(&t.id)
    .bind(&t.hash)
    .bind(t.created_at)
    .bind(&t.created_by)
    .bind(t.expires_at)
    .bind(t.max_uses.map(i64::from))
    .bind(i64::from(t.uses))
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
            "onboarding token {:?} already exists",
            t.id
        ))),
        Err(err) => Err(StoreError::Backend(err.to_string())),
    }
}

async fn set_issued_policy(
    conn: &mut PgConnection,
    tenant: &str,
    name: &str,
    version: u64,
    digest: &str,
) -> Result<()> {
    // The lock makes a second writer of the same version wait for this one,
    // then see its version and fail.
    let row = sqlx::query(
        "SELECT issued_version, issued_digest FROM devices \
         WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .or_backend()?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(format!("device {name:?}")));
    };
    let stored = from_db_u64(
        row.try_get("issued_version").or_backend()?,
        "issued_version",
    )?;
    let stored_digest: Option<String> = row.try_get("issued_digest").or_backend()?;
    issued_check(name, stored, stored_digest.as_deref(), version, digest)?;
    sqlx::query(
        "UPDATE devices SET issued_version = $1, issued_digest = $2 \
         WHERE tenant_id = $3 AND name = $4",
    )
    .bind(to_db_u64(version)?)
    .bind(digest)
    .bind(tenant)
    .bind(name)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

/// Issued policy versions only go up; the same version again is fine only
/// with the same digest.
fn issued_check(
    name: &str,
    stored: u64,
    stored_digest: Option<&str>,
    version: u64,
    digest: &str,
) -> Result<()> {
    if version > stored || (version == stored && stored_digest == Some(digest)) {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "device {name:?} was issued policy version {stored} already; cannot issue version \
         {version} with digest {digest:?}"
    )))
}

/// Decides whether an onboarding token may be used once more and counts the
/// use, holding the token's row lock throughout: a concurrent consumer waits
/// and then sees the new count.
pub(crate) async fn consume_onboarding_token(
    conn: &mut PgConnection,
    hash: &str,
    now: Timestamp,
) -> Result<TokenUse> {
    let row = sqlx::query(
        "SELECT tenant_id, id, expires_at, max_uses, uses FROM onboarding_tokens \
         WHERE hash = $1 FOR UPDATE",
    )
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await
    .or_backend()?;
    let Some(row) = row else {
        return Ok(TokenUse::Unknown);
    };
    let expires_at: i64 = row.try_get("expires_at").or_backend()?;
    let max_uses: Option<i64> = row.try_get("max_uses").or_backend()?;
    let uses: i64 = row.try_get("uses").or_backend()?;
    if expires_at <= now {
        return Ok(TokenUse::Expired);
    }
    // A token without a limit still stops where its count would overflow.
    if uses >= max_uses.unwrap_or(i64::from(u32::MAX)) {
        return Ok(TokenUse::Exhausted);
    }
    let tenant_id: String = row.try_get("tenant_id").or_backend()?;
    let token_id: String = row.try_get("id").or_backend()?;
    sqlx::query("UPDATE onboarding_tokens SET uses = uses + 1 WHERE hash = $1")
        .bind(hash)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    Ok(TokenUse::Accepted {
        tenant_id,
        token_id,
    })
}

/// Each name once, with the latest time given for it, in name order.
pub(crate) fn latest_per_name(seen: Vec<(String, Timestamp)>) -> BTreeMap<String, Timestamp> {
    let mut latest = BTreeMap::new();
    for (name, at) in seen {
        latest
            .entry(name)
            .and_modify(|t: &mut Timestamp| *t = (*t).max(at))
            .or_insert(at);
    }
    latest
}

/// Moves each named device's last check-in forward; see
/// `Store::touch_devices`.
pub(crate) async fn touch_devices(
    conn: &mut PgConnection,
    tenant: &str,
    seen: &BTreeMap<String, Timestamp>,
) -> Result<()> {
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    let times: Vec<Timestamp> = seen.values().copied().collect();
    // Locking the rows in name order first means two batches touching the
    // same devices wait for each other instead of deadlocking.
    sqlx::query(
        "SELECT 1 FROM devices WHERE tenant_id = $1 AND name = ANY($2) \
         ORDER BY name FOR UPDATE",
    )
    .bind(tenant)
    .bind(&names)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    sqlx::query(
        "UPDATE devices d SET last_check_in = GREATEST(d.last_check_in, s.at) \
         FROM UNNEST($2::TEXT[], $3::BIGINT[]) AS s (name, at) \
         WHERE d.tenant_id = $1 AND d.name = s.name",
    )
    .bind(tenant)
    .bind(&names)
    .bind(&times)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

async fn put_token(conn: &mut PgConnection, tenant: &str, t: &TokenRecord) -> Result<()> {
    // The batch's tenant is the one the caller is authorised for; a token
    // naming another tenant is a mistake that must not grant access there.
    if t.tenant_id != tenant {
        return Err(StoreError::Conflict(format!(
            "token {:?} belongs to tenant {:?}, not {tenant:?}",
            t.name, t.tenant_id
        )));
    }
    let result = sqlx::query(
        "INSERT INTO tokens (tenant_id, id, name, role, kind, hash, created_at, expires_at, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tenant)
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.role)
    .bind(&t.kind)
    .bind(&t.hash)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(&t.created_by)
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
            "token {:?} already exists",
            t.name
        ))),
        Err(err) => Err(StoreError::Backend(err.to_string())),
    }
}

/// Ends the console sessions of a user (sessions are named after their
/// user).
async fn delete_sessions(conn: &mut PgConnection, tenant: &str, username: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM tokens WHERE tenant_id = $1 AND kind = 'session' AND lower(name) = $2",
    )
    .bind(tenant)
    .bind(name_key(username))
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

async fn put_user(conn: &mut PgConnection, tenant: &str, u: &UserRecord) -> Result<()> {
    let result = sqlx::query(
        "INSERT INTO users (tenant_id, id, username, password_hash, role, created_at, \
         disabled, username_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(&u.id)
    .bind(&u.username)
    .bind(&u.password_hash)
    .bind(&u.role)
    .bind(u.created_at)
    .bind(u.disabled)
    .bind(name_key(&u.username))
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
            "user {:?} already exists",
            u.username
        ))),
        Err(err) => Err(StoreError::Backend(err.to_string())),
    }
}

/// The parts of a status row whose change is worth storing; `updated_at`
/// is deliberately not one of them.
#[derive(PartialEq)]
struct Reported {
    status: String,
    observed: Option<Value>,
    error_code: Option<String>,
    error_message: Option<String>,
    backend: Option<String>,
    digest: String,
}

impl From<&StatusRecord> for Reported {
    fn from(s: &StatusRecord) -> Self {
        Reported {
            status: s.status.clone(),
            observed: s.observed.clone(),
            error_code: s.error_code.clone(),
            error_message: s.error_message.clone(),
            backend: s.backend.clone(),
            digest: s.digest.clone(),
        }
    }
}

/// Upserts the rows of `statuses` that differ from what is stored; the
/// device named by the call wins over each record's `device` field.
pub(crate) async fn statuses(
    conn: &mut PgConnection,
    tenant: &str,
    device: &str,
    statuses: Vec<StatusRecord>,
) -> Result<usize> {
    // Locking the device serialises two reports from one device (so each
    // counts its own changes) and a report against the device's deletion.
    let exists = sqlx::query("SELECT 1 FROM devices WHERE tenant_id = $1 AND name = $2 FOR UPDATE")
        .bind(tenant)
        .bind(device)
        .fetch_optional(&mut *conn)
        .await
        .or_backend()?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("device {device:?}")));
    }

    // Comparing in Rust keeps "changed" meaning the same as in SQLite.
    let stored = sqlx::query(&format!(
        "SELECT {} FROM statuses WHERE tenant_id = $1 AND device = $2",
        rows::STATUS_COLUMNS
    ))
    .bind(tenant)
    .bind(device)
    .fetch_all(&mut *conn)
    .await
    .or_backend()?;
    let mut known = HashMap::new();
    for row in &stored {
        let s = rows::status(row)?;
        known.insert((s.setting.clone(), s.key.clone()), Reported::from(&s));
    }

    let mut changed = 0;
    for s in statuses {
        let reported = Reported::from(&s);
        let key = (s.setting.clone(), s.key.clone());
        if known.get(&key) == Some(&reported) {
            continue;
        }
        sqlx::query(
            "INSERT INTO statuses (tenant_id, device, setting, setting_key, status, observed, \
             error_code, error_message, backend, digest, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (tenant_id, device, setting, setting_key) DO UPDATE SET \
             status = excluded.status, observed = excluded.observed, \
             error_code = excluded.error_code, error_message = excluded.error_message, \
             backend = excluded.backend, \
             digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(device)
        .bind(&s.setting)
        .bind(&s.key)
        .bind(&s.status)
        .bind(&s.observed)
        .bind(&s.error_code)
        .bind(&s.error_message)
        .bind(&s.backend)
        .bind(&s.digest)
        .bind(s.updated_at)
        .execute(&mut *conn)
        .await
        .or_backend()?;
        known.insert(key, reported);
        changed += 1;
    }
    Ok(changed)
}
