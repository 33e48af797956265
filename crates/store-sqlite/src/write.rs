//! Applying a `Write` batch and a status report inside one transaction. The
//! caller owns the transaction: any error here rolls everything back.

use std::collections::{BTreeMap, HashMap};

use rampart_store::{
    name_key, DeviceRecord, Expect, NewAudit, ObjectKind, OnboardingTokenRecord, Result,
    StatusRecord, StoreError, TenantSecrets, Timestamp, TokenRecord, TokenUse, UserRecord, Write,
};
use serde_json::Value;
use sqlx::{Row, SqliteConnection};

use crate::rows::{self, is_unique_violation, to_db_u64, to_json_text, OrBackend};

pub(crate) async fn batch(
    conn: &mut SqliteConnection,
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
             before_doc, after_doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant)
        .bind(at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.object_kind)
        .bind(&entry.object_name)
        .bind(entry.before.as_ref().map(to_json_text).transpose()?)
        .bind(entry.after.as_ref().map(to_json_text).transpose()?)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    }
    Ok(())
}

async fn ensure_tenant(conn: &mut SqliteConnection, tenant: &str) -> Result<()> {
    let found = sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await
        .or_backend()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant {tenant:?}"))),
    }
}

async fn one(conn: &mut SqliteConnection, tenant: &str, at: Timestamp, write: Write) -> Result<()> {
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
                 VALUES (?, ?, ?, 1) \
                 ON CONFLICT (tenant_id) DO UPDATE \
                 SET doc = excluded.doc, updated_at = excluded.updated_at, \
                 version = tenant_settings.version + 1",
            )
            .bind(tenant)
            .bind(to_json_text(&doc)?)
            .bind(at)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            Ok(())
        }
        Write::ExpectTenantSettings { version } => {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM tenant_settings WHERE tenant_id = ?")
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
            let done = sqlx::query("UPDATE devices SET tags = ? WHERE tenant_id = ? AND name = ?")
                .bind(to_json_text(&tags)?)
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
                 SELECT tenant_id, id, name, ?, ? FROM devices \
                 WHERE tenant_id = ? AND name = ? \
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
            // The foreign key cascades too; deleting explicitly keeps this
            // correct even on a connection without foreign keys enabled.
            sqlx::query("DELETE FROM statuses WHERE tenant_id = ? AND device = ?")
                .bind(tenant)
                .bind(&name)
                .execute(&mut *conn)
                .await
                .or_backend()?;
            let done = sqlx::query("DELETE FROM devices WHERE tenant_id = ? AND name = ?")
                .bind(tenant)
                .bind(&name)
                .execute(&mut *conn)
                .await
                .or_backend()?;
            found_one(done.rows_affected(), || format!("device {name:?}"))
        }
        Write::PutToken(token) => put_token(conn, tenant, &token).await,
        Write::DeleteToken { id } => {
            let done = sqlx::query("DELETE FROM tokens WHERE tenant_id = ? AND id = ?")
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
                "UPDATE users SET role = COALESCE(?, role), \
                 password_hash = COALESCE(?, password_hash), \
                 disabled = COALESCE(?, disabled) \
                 WHERE tenant_id = ? AND username_key = ?",
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
            let done = sqlx::query("DELETE FROM users WHERE tenant_id = ? AND username_key = ?")
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
                "UPDATE tenant_secrets SET signing_key = ?, verify_key = ?, key_announcements = ?, updated_at = ? WHERE tenant_id = ? AND verify_key = ?",
            )
            .bind(&signing_key)
            .bind(&verify_key)
            .bind(to_json_text(&key_announcements)?)
            .bind(at)
            .bind(tenant)
            .bind(&expected_verify_key)
            .execute(&mut *conn)
            .await
            .or_backend()?;
            if done.rows_affected() == 1 {
                return Ok(());
            }
            let exists = sqlx::query("SELECT 1 FROM tenant_secrets WHERE tenant_id = ?")
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
            let done = sqlx::query("DELETE FROM onboarding_tokens WHERE tenant_id = ? AND id = ?")
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
                "UPDATE devices SET os = ?, os_version = ?, device_type = ?, \
                 agent_version = ?, tags = COALESCE(?, tags), managed_by = ?, labels = ?, \
                 enrollment_status = ?, enrollment_code = ?, enrollment_reason = ?, \
                 last_check_in = COALESCE(?, last_check_in), conditions = ? \
                 WHERE tenant_id = ? AND name = ?",
            )
            .bind(&os)
            .bind(&os_version)
            .bind(&device_type)
            .bind(&agent_version)
            .bind(tags.as_ref().map(to_json_text).transpose()?)
            .bind(&managed_by)
            .bind(to_json_text(&labels)?)
            .bind(&enrollment_status)
            .bind(&enrollment_code)
            .bind(&enrollment_reason)
            .bind(last_check_in)
            .bind(to_json_text(&conditions)?)
            .bind(tenant)
            .bind(&name)
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
                "UPDATE devices SET cert_serial = ?, cert_not_after = ?, key_sha256 = ? \
                 WHERE tenant_id = ? AND name = ?",
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
                "UPDATE devices SET applied_digest = ?, policy_version = ? \
                 WHERE tenant_id = ? AND name = ?",
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

/// The object's row: (last version ever written, current version if live).
async fn object_head(
    conn: &mut SqliteConnection,
    tenant: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<Option<(u64, Option<u64>)>> {
    let row = sqlx::query(
        "SELECT last_version, current_version FROM objects \
         WHERE tenant_id = ? AND kind = ? AND name = ?",
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
    let to_u64 = |v: i64| {
        u64::try_from(v).map_err(|_| StoreError::Backend(format!("stored version {v} is negative")))
    };
    Ok(Some((to_u64(last)?, current.map(to_u64).transpose()?)))
}

#[allow(clippy::too_many_arguments)]
async fn put_object(
    conn: &mut SqliteConnection,
    tenant: &str,
    at: Timestamp,
    kind: ObjectKind,
    name: &str,
    doc: &Value,
    expect: Expect,
    by: &str,
) -> Result<()> {
    let head = object_head(conn, tenant, kind, name).await?;
    let (last, current) = head.unwrap_or((0, None));
    check(kind, name, current, expect)?;
    let version = to_db_u64(last + 1)?;
    sqlx::query(
        "INSERT INTO objects (tenant_id, kind, name, last_version, current_version, name_key) \
         VALUES (?1, ?2, ?3, ?4, ?4, ?5) \
         ON CONFLICT (tenant_id, kind, name) DO UPDATE \
         SET last_version = excluded.last_version, current_version = excluded.current_version, \
         name_key = excluded.name_key",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .bind(name)
    .bind(version)
    .bind(name_key(name))
    .execute(&mut *conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            StoreError::Conflict(format!(
                "a {} named {name:?} already exists (names are compared ignoring case)",
                kind.as_str()
            ))
        } else {
            crate::rows::classify(err)
        }
    })?;
    sqlx::query(
        "INSERT INTO object_versions \
         (tenant_id, kind, name, version, doc, modified_at, modified_by) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .bind(name)
    .bind(version)
    .bind(to_json_text(doc)?)
    .bind(at)
    .bind(by)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

async fn delete_object(
    conn: &mut SqliteConnection,
    tenant: &str,
    kind: ObjectKind,
    name: &str,
    expect: Expect,
) -> Result<()> {
    let current = object_head(conn, tenant, kind, name)
        .await?
        .and_then(|(_, current)| current);
    check(kind, name, current, expect)?;
    if current.is_some() {
        // The row stays so that its last version keeps counting.
        sqlx::query(
            "UPDATE objects SET current_version = NULL \
             WHERE tenant_id = ? AND kind = ? AND name = ?",
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

const SET_REENROLL: &str = "UPDATE devices SET reenroll_until = ? WHERE tenant_id = ? AND name = ?";
/// Clears the approval only while it is in force, so of two enrollments
/// racing for it one succeeds.
const CONSUME_REENROLL: &str = "UPDATE devices SET reenroll_until = NULL \
     WHERE tenant_id = ? AND name = ? AND reenroll_until > ?";

/// Inserts a device, or with `insert_only` false replaces the one of that
/// name.
async fn put_device(
    conn: &mut SqliteConnection,
    tenant: &str,
    d: &DeviceRecord,
    insert_only: bool,
) -> Result<()> {
    // An upsert rather than INSERT OR REPLACE: replacing would delete the row
    // and cascade to the device's statuses.
    const INSERT: &str =
        "INSERT INTO devices (tenant_id, name, id, os, os_version, device_type, agent_version, \
         tags, labels, managed_by, enrollment_status, enrollment_code, enrollment_reason, \
         last_check_in, applied_digest, policy_version, created_at, cert_serial, \
         cert_not_after, issued_version, issued_digest, name_key, key_sha256, reenroll_until, \
         conditions) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
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
        .bind(to_json_text(&d.tags)?)
        .bind(to_json_text(&d.labels)?)
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
        .bind(to_json_text(&d.conditions)?)
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
    conn: &mut SqliteConnection,
    tenant: &str,
    at: Timestamp,
    secrets: &TenantSecrets,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO tenant_secrets \
         (tenant_id, ca_cert_pem, ca_key_pem, signing_key, verify_key, key_announcements, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
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
    .bind(to_json_text(&secrets.key_announcements)?)
    .bind(at)
    .execute(&mut *conn)
    .await
    .or_backend()?;
    Ok(())
}

async fn put_onboarding_token(
    conn: &mut SqliteConnection,
    tenant: &str,
    t: &OnboardingTokenRecord,
) -> Result<()> {
    let result = sqlx::query(
        "INSERT INTO onboarding_tokens (tenant_id, id, hash, created_at, created_by, \
         expires_at, max_uses, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    conn: &mut SqliteConnection,
    tenant: &str,
    name: &str,
    version: u64,
    digest: &str,
) -> Result<()> {
    // The batch holds the write lock, so nothing changes between the read
    // and the update.
    let row = sqlx::query(
        "SELECT issued_version, issued_digest FROM devices WHERE tenant_id = ? AND name = ?",
    )
    .bind(tenant)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .or_backend()?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(format!("device {name:?}")));
    };
    let stored: i64 = row.try_get("issued_version").or_backend()?;
    let stored_digest: Option<String> = row.try_get("issued_digest").or_backend()?;
    let stored = u64::try_from(stored)
        .map_err(|_| StoreError::Backend(format!("stored issued_version {stored} is negative")))?;
    issued_check(name, stored, stored_digest.as_deref(), version, digest)?;
    sqlx::query(
        "UPDATE devices SET issued_version = ?, issued_digest = ? \
         WHERE tenant_id = ? AND name = ?",
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

/// Decides whether an onboarding token may be used once more; the caller
/// holds the write lock and counts the use when accepted.
pub(crate) async fn consume_onboarding_token(
    conn: &mut SqliteConnection,
    hash: &str,
    now: Timestamp,
) -> Result<TokenUse> {
    let row = sqlx::query(
        "SELECT tenant_id, id, expires_at, max_uses, uses FROM onboarding_tokens WHERE hash = ?",
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
    sqlx::query("UPDATE onboarding_tokens SET uses = uses + 1 WHERE hash = ?")
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
    conn: &mut SqliteConnection,
    tenant: &str,
    seen: &BTreeMap<String, Timestamp>,
) -> Result<()> {
    for (name, at) in seen {
        sqlx::query(
            "UPDATE devices SET last_check_in = MAX(COALESCE(last_check_in, ?1), ?1) \
             WHERE tenant_id = ?2 AND name = ?3",
        )
        .bind(*at)
        .bind(tenant)
        .bind(name)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    }
    Ok(())
}

async fn put_token(conn: &mut SqliteConnection, tenant: &str, t: &TokenRecord) -> Result<()> {
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
         created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
async fn delete_sessions(conn: &mut SqliteConnection, tenant: &str, username: &str) -> Result<()> {
    sqlx::query("DELETE FROM tokens WHERE tenant_id = ? AND kind = 'session' AND lower(name) = ?")
        .bind(tenant)
        .bind(name_key(username))
        .execute(&mut *conn)
        .await
        .or_backend()?;
    Ok(())
}

async fn put_user(conn: &mut SqliteConnection, tenant: &str, u: &UserRecord) -> Result<()> {
    let result = sqlx::query(
        "INSERT INTO users (tenant_id, id, username, password_hash, role, created_at, \
         disabled, username_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    conn: &mut SqliteConnection,
    tenant: &str,
    device: &str,
    statuses: Vec<StatusRecord>,
) -> Result<usize> {
    let exists = sqlx::query("SELECT 1 FROM devices WHERE tenant_id = ? AND name = ?")
        .bind(tenant)
        .bind(device)
        .fetch_optional(&mut *conn)
        .await
        .or_backend()?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("device {device:?}")));
    }

    // Comparing in Rust rather than SQL compares JSON by value, not by text.
    let stored = sqlx::query(&format!(
        "SELECT {} FROM statuses WHERE tenant_id = ? AND device = ?",
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
        .bind(s.observed.as_ref().map(to_json_text).transpose()?)
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
