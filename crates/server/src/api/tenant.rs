//! The caller's tenant and its settings (enforcement scope, pilot tag,
//! takeover, conflict policy).

use axum::extract::State;
use axum::Json;
use rampart_core::model::{Role, TenantSettings};
use rampart_core::validate::{tenant_settings_from_json, tenant_settings_to_json};
use rampart_proto::{ErrorBody, TenantView, WhoAmI};
use rampart_store::Write;
use serde_json::Value;

use crate::api::audit;
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
pub async fn show(State(state): State<AppState>, who: Principal) -> ApiResult<Json<TenantView>> {
    let settings = current_settings(&state, &who.tenant_id).await?;
    Ok(Json(TenantView {
        id: who.tenant_id,
        name: who.tenant_name,
        settings: tenant_settings_view(&settings),
    }))
}

#[utoipa::path(put, path = "/api/v1/tenant/settings", tag = "tenant",
    request_body(content = Object, description = "Any of enforcement, pilot_tag, conflict_policy, allow_takeover, manage_domain_controllers; fields left out keep their values"),
    responses((status = 200, body = TenantView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<TenantView>> {
    who.require(Role::GlobalAdmin, "changing tenant settings")?;
    let before = current_settings(&state, &who.tenant_id).await?;
    let after = tenant_settings_from_json(&body, &before).map_err(ApiError::Validation)?;
    if after != before {
        let (b, a) = (
            tenant_settings_to_json(&before),
            tenant_settings_to_json(&after),
        );
        state
            .store
            .write(
                &who.tenant_id,
                state.clock.now(),
                vec![Write::PutTenantSettings { doc: a.clone() }],
                vec![audit(
                    &who,
                    "tenant.settings",
                    "tenant",
                    &who.tenant_name,
                    Some(b),
                    Some(a),
                )],
            )
            .await?;
        state.policy_changed(&who.tenant_id);
    }
    Ok(Json(TenantView {
        id: who.tenant_id,
        name: who.tenant_name,
        settings: tenant_settings_view(&after),
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
