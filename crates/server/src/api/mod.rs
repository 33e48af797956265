//! Admin API handlers, one module per resource. Routes are listed in
//! `router.rs`; each handler checks the caller's role before anything else.

pub mod admin;
pub mod catalog;
pub mod changes;
pub mod devices;
pub mod groups;
pub mod onboarding;
pub mod policies;
pub mod reports;
pub mod tenant;

use rampart_core::error::FieldError;
use rampart_store::{NewAudit, ObjectKind, ObjectRecord};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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
pub async fn saved(
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
