//! The caller's tenant and its settings (enforcement scope, pilot tag,
//! takeover, conflict policy).

use axum::extract::State;
use axum::Json;
use rampart_core::model::{Role, TenantSettings};
use rampart_core::validate::{tenant_settings_from_json, tenant_settings_to_json};
use rampart_proto::{ErrorBody, PolicyKeyView, TenantView, WhoAmI};
use rampart_store::{ObjectKind, StoreError, Write};
use serde_json::Value;

use crate::api::{audit, check_base, with_etag, IfMatch};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views::tenant_settings_view;

pub async fn current_settings(state: &AppState, tenant: &str) -> ApiResult<TenantSettings> {
    Ok(match state.store.tenant_settings(tenant).await? {
        Some(doc) => {
            tenant_settings_from_json(&doc, &TenantSettings::default()).unwrap_or_default()
        }
        None => TenantSettings::default(),
    })
}

#[utoipa::path(get, path = "/api/v1/tenant", tag = "tenant", responses((status = 200, body = TenantView)))]
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<impl axum::response::IntoResponse> {
    let version = state.store.tenant_settings_version(&who.tenant_id).await?;
    let settings = current_settings(&state, &who.tenant_id).await?;
    Ok(with_etag(
        version,
        TenantView {
            id: who.tenant_id,
            name: who.tenant_name,
            settings: tenant_settings_view(&settings),
            settings_version: version,
        },
    ))
}

#[utoipa::path(put, path = "/api/v1/tenant/settings", tag = "tenant",
    request_body(content = Object, description = "Any of enforcement, pilot_tag, conflict_policy, allow_takeover, manage_domain_controllers; fields left out keep their values"),
    params(("If-Match" = Option<String>, Header, description = "The settings_version the change is based on, as \"N\"; refused with 412 version_mismatch when the settings changed since")),
    responses((status = 200, body = TenantView), (status = 403, body = ErrorBody), (status = 412, description = "`version_mismatch`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    IfMatch(base): IfMatch,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl axum::response::IntoResponse> {
    who.require(Role::GlobalAdmin, "changing tenant settings")?;
    let version = state.store.tenant_settings_version(&who.tenant_id).await?;
    check_base("the tenant settings", base, version)?;
    let before = current_settings(&state, &who.tenant_id).await?;
    let after = tenant_settings_from_json(&body, &before).map_err(ApiError::Validation)?;
    if let Some(spec) = after
        .default_rollout
        .as_ref()
        .filter(|_| after.default_rollout != before.default_rollout)
    {
        let groups = state
            .store
            .objects(&who.tenant_id, ObjectKind::Group)
            .await?;
        let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let errors = crate::api::policies::unknown_stage_groups("default_rollout", spec, &known);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
    }
    if after != before {
        let (b, a) = (
            tenant_settings_to_json(&before),
            tenant_settings_to_json(&after),
        );
        // Conditional on the version the settings were read at, so a
        // change made in between is never undone silently.
        let written = state
            .store
            .write(
                &who.tenant_id,
                state.clock.now(),
                vec![
                    Write::ExpectTenantSettings { version },
                    Write::PutTenantSettings { doc: a.clone() },
                ],
                vec![audit(
                    &who,
                    "tenant.settings",
                    "tenant",
                    &who.tenant_name,
                    Some(b),
                    Some(a),
                )],
            )
            .await;
        if let Err(StoreError::Conflict(_)) = written {
            return Err(ApiError::VersionMismatch {
                what: "the tenant settings".into(),
                current: state.store.tenant_settings_version(&who.tenant_id).await?,
            });
        }
        written?;
        state.policy_changed(&who.tenant_id);
    }
    let version = state.store.tenant_settings_version(&who.tenant_id).await?;
    Ok(with_etag(
        version,
        TenantView {
            id: who.tenant_id,
            name: who.tenant_name,
            settings: tenant_settings_view(&after),
            settings_version: version,
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/tenant/policy-key", tag = "tenant", responses((status = 200, body = PolicyKeyView)))]
pub async fn policy_key(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<PolicyKeyView>> {
    let key = crate::device::signing::policy_key(&state, &who.tenant_id).await?;
    Ok(Json(PolicyKeyView {
        key: key.key,
        generation: key.generation,
    }))
}

/// Rotates the policy-signing key: enrolled agents move to the new key by
/// themselves (it reaches them announced with the old one), and the old
/// secret key is gone.
#[utoipa::path(post, path = "/api/v1/tenant/policy-key/rotate", tag = "tenant",
    responses((status = 200, body = PolicyKeyView), (status = 403, body = ErrorBody), (status = 409, description = "`conflict`: another rotation happened at the same time", body = ErrorBody)))]
pub async fn rotate_policy_key(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<PolicyKeyView>> {
    who.require(Role::GlobalAdmin, "rotating the policy-signing key")?;
    let record = |before: &str, after: &str, generation: u64| {
        audit(
            &who,
            "tenant.policy_key.rotate",
            "tenant",
            &who.tenant_name,
            Some(serde_json::json!({ "key": before })),
            Some(serde_json::json!({ "key": after, "generation": generation })),
        )
    };
    let key = crate::device::signing::rotate_policy_key(
        &state,
        &who.tenant_id,
        record,
        state.clock.now(),
    )
    .await?;
    tracing::info!(
        event = "policy_key_rotated",
        tenant = %who.tenant_name,
        generation = key.generation,
        "rotated the tenant's policy-signing key"
    );
    Ok(Json(PolicyKeyView {
        key: key.key,
        generation: key.generation,
    }))
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "tenant", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(who: Principal) -> Json<WhoAmI> {
    Json(WhoAmI {
        tenant: who.tenant_name,
        actor: who.actor,
        role: who.role.to_string(),
    })
}
