//! Admin API handlers, one module per resource. Routes are listed in
//! `router.rs`; each handler checks the caller's role before anything else.

pub mod admin;
pub mod catalog;
pub mod changes;
pub mod devices;
pub mod groups;
pub mod onboarding;
pub mod paging;
pub mod policies;
pub mod reports;
pub mod rollouts;
pub mod tenant;

use axum::extract::FromRequestParts;
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::request::Parts;
use rampart_core::error::FieldError;
use rampart_store::{Expect, NewAudit, ObjectKind, ObjectRecord, StoreError, Write};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The version an update is based on, from `If-Match: "N"` (the `ETag` of
/// the read it started from, or the `version` of the body it shows).
/// `None` without the header: the write is then unconditional, last writer
/// wins; the CLI and the console always send it.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().unwrap_or("").trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        text.trim_matches('"')
            .parse::<u64>()
            .map(|v| IfMatch(Some(v)))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "If-Match must be the version the change is based on, as \"N\"; got {text:?}"
                ))
            })
    }
}

/// Refuses (412 `version_mismatch`) a change based on another version than
/// the current one.
pub fn check_base(what: impl Into<String>, base: Option<u64>, current: u64) -> ApiResult<()> {
    match base {
        Some(b) if b != current => Err(ApiError::VersionMismatch {
            what: what.into(),
            current,
        }),
        _ => Ok(()),
    }
}

/// A body with its version as `ETag`, for the next `If-Match`.
pub fn with_etag<T>(
    version: u64,
    body: T,
) -> ([(axum::http::HeaderName, String); 1], axum::Json<T>) {
    ([(ETAG, format!("\"{version}\""))], axum::Json(body))
}

/// An audit entry for a mutation by `who`.
pub fn audit(
    who: &Principal,
    action: &str,
    kind: &str,
    name: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> NewAudit {
    NewAudit {
        actor: who.actor.clone(),
        action: action.to_string(),
        object_kind: kind.to_string(),
        object_name: name.to_string(),
        before,
        after,
    }
}

/// The body of a `PUT …/{name}`: the name may be left out (the path gives
/// it) but may not differ, since objects cannot be renamed.
pub fn name_from_path(body: &mut Value, name: &str, kind: ObjectKind) -> ApiResult<()> {
    if let Some(obj) = body.as_object_mut() {
        match obj.get("name").and_then(Value::as_str) {
            None => {
                obj.insert("name".into(), Value::from(name));
            }
            Some(n) if n != name => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "name",
                    format!(
                        "is {n:?} but the path names {name:?}; a {} cannot be renamed",
                        kind.as_str()
                    ),
                )]));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An object just written, read back for the response.
async fn saved(
    state: &AppState,
    who: &Principal,
    kind: ObjectKind,
    name: &str,
) -> ApiResult<ObjectRecord> {
    state
        .store
        .object(&who.tenant_id, kind, name)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(format!("{} {name:?} vanished after a write", kind.as_str()))
        })
}

/// A stored policy or group, or 404 naming it.
pub async fn find_object(
    state: &AppState,
    who: &Principal,
    kind: ObjectKind,
    name: &str,
) -> ApiResult<ObjectRecord> {
    state
        .store
        .object(&who.tenant_id, kind, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} {name:?}", kind.as_str())))
}

/// Writes a checked document as a new object (`before` is `None`) or as the
/// next version of `before`, with its audit entry, and tells the device
/// channel; returns the stored record. An unchanged document writes nothing.
pub async fn write_object(
    state: &AppState,
    who: &Principal,
    kind: ObjectKind,
    name: &str,
    before: Option<ObjectRecord>,
    doc: Value,
) -> ApiResult<ObjectRecord> {
    let updating = before.is_some();
    let before_record = before.clone();
    let (expect, action, old) = match before {
        Some(b) if b.doc == doc => return Ok(b),
        Some(b) => (Expect::Version(b.version), "update", Some(b.doc)),
        None => (Expect::Absent, "create", None),
    };
    let put = Write::PutObject {
        kind,
        name: name.to_string(),
        doc: doc.clone(),
        expect,
        by: who.actor.clone(),
    };
    let (mut writes, mut entries) = if kind == ObjectKind::Policy {
        crate::rollout::on_policy_change(
            state,
            &who.tenant_id,
            &who.actor,
            name,
            before_record.as_ref(),
            Some(&doc),
        )
        .await?
    } else {
        (Vec::new(), Vec::new())
    };
    writes.insert(0, put);
    entries.insert(
        0,
        audit(
            who,
            &format!("{}.{action}", kind.as_str()),
            kind.as_str(),
            name,
            old,
            Some(doc),
        ),
    );
    let written = state
        .store
        .write(&who.tenant_id, state.clock.now(), writes, entries)
        .await;
    match written {
        // Another writer got in between the read and this write.
        Err(StoreError::Conflict(_)) if updating => {
            let current = saved(state, who, kind, name).await?;
            return Err(ApiError::VersionMismatch {
                what: format!("{} {name:?}", kind.as_str()),
                current: current.version,
            });
        }
        other => other?,
    }
    state.policy_changed(&who.tenant_id);
    saved(state, who, kind, name).await
}

/// Deletes the object `before` names, if it is still at that version, with
/// its audit entry.
pub async fn delete_object(
    state: &AppState,
    who: &Principal,
    before: ObjectRecord,
) -> ApiResult<()> {
    let kind = before.kind;
    let (mut writes, mut entries) = if kind == ObjectKind::Policy {
        crate::rollout::on_policy_change(
            state,
            &who.tenant_id,
            &who.actor,
            &before.name,
            Some(&before),
            None,
        )
        .await?
    } else {
        (Vec::new(), Vec::new())
    };
    writes.insert(
        0,
        Write::DeleteObject {
            kind,
            name: before.name.clone(),
            expect: Expect::Version(before.version),
        },
    );
    entries.insert(
        0,
        audit(
            who,
            &format!("{}.delete", kind.as_str()),
            kind.as_str(),
            &before.name,
            Some(before.doc),
            None,
        ),
    );
    state
        .store
        .write(&who.tenant_id, state.clock.now(), writes, entries)
        .await?;
    state.policy_changed(&who.tenant_id);
    Ok(())
}
