//! Onboarding packages: what an administrator hands to devices so they can
//! establish a trust with this tenant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::model::Role;
use rampart_proto::{ErrorBody, OnboardingCreate, OnboardingTokenView};
use rampart_store::{OnboardingTokenRecord, Write};
use serde_json::{json, Value};

use crate::api::audit;
use crate::auth::{hash_token, new_token, Principal};
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const DEFAULT_EXPIRY_SECS: i64 = 24 * 3600;
pub const MAX_EXPIRY_SECS: i64 = 30 * 24 * 3600;

#[utoipa::path(post, path = "/api/v1/onboarding", tag = "devices", request_body = OnboardingCreate,
    responses((status = 201, description = "The onboarding package (contains the token: keep it secret)", body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<OnboardingCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Role::SecurityManager, "creating an onboarding package")?;
    let expires_in = req.expires_in_seconds.unwrap_or(DEFAULT_EXPIRY_SECS);
    let mut errors = Vec::new();
    if !(60..=MAX_EXPIRY_SECS).contains(&expires_in) {
        errors.push(FieldError::new(
            "expires_in_seconds",
            format!("must be between 60 and {MAX_EXPIRY_SECS}"),
        ));
    }
    if req.max_uses == Some(0) {
        errors.push(FieldError::new("max_uses", "must be at least 1"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let now = state.clock.now();
    let token = new_token();
    let record = OnboardingTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_token(&token),
        created_at: now,
        created_by: who.actor.clone(),
        expires_at: now + expires_in,
        max_uses: req.max_uses,
        uses: 0,
    };
    let package = rampart_proto::device::OnboardingPackage {
        version: 1,
        tenant_id: who.tenant_id.clone(),
        tenant_name: who.tenant_name.clone(),
        server_url: state.device.url.clone(),
        server_ca_pem: state.trust.server_ca.cert_pem.clone(),
        server_ca_sha256: state
            .trust
            .server_ca_sha256()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        token,
        expires_at: record.expires_at,
    };
    let summary =
        json!({ "id": record.id, "expires_at": record.expires_at, "max_uses": record.max_uses });
    state
        .store
        .write(
            &who.tenant_id,
            now,
            vec![Write::PutOnboardingToken(record)],
            vec![audit(
                &who,
                "onboarding.create",
                "onboarding_token",
                "package",
                None,
                Some(summary),
            )],
        )
        .await?;
    let body = serde_json::to_value(package).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, path = "/api/v1/onboarding", tag = "devices",
    responses((status = 200, body = Vec<OnboardingTokenView>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<OnboardingTokenView>>> {
    who.require(Role::SecurityManager, "listing onboarding tokens")?;
    let tokens = state.store.onboarding_tokens(&who.tenant_id).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| OnboardingTokenView {
                id: t.id,
                created_at: t.created_at,
                created_by: t.created_by,
                expires_at: t.expires_at,
                max_uses: t.max_uses,
                uses: t.uses,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/onboarding/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 204, description = "Devices can no longer enroll with it; enrolled devices keep their trust"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::SecurityManager, "revoking an onboarding token")?;
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::DeleteOnboardingToken { id: id.clone() }],
            vec![audit(
                &who,
                "onboarding.revoke",
                "onboarding_token",
                &id,
                None,
                None,
            )],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
