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

use rampart_store::NewAudit;
use serde_json::Value;

use crate::auth::Principal;

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
