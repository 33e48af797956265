//! The settings catalog, read-only.

use axum::extract::{Path, State};
use axum::Json;
use rampart_core::model::{Family, Platform};
use rampart_proto::ErrorBody;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::body::QueryParams;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CatalogFilter {
    pub family: Option<String>,
    pub platform: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/catalog", tag = "catalog", params(CatalogFilter),
    responses((status = 200, description = "Setting definitions", body = Vec<Object>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _who: Principal,
    QueryParams(filter): QueryParams<CatalogFilter>,
) -> ApiResult<Json<Vec<Value>>> {
    let family = match &filter.family {
        Some(f) => Some(Family::parse(f).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown family {f:?}; expected one of {}",
                Family::expected()
            ))
        })?),
        None => None,
    };
    let platform = match &filter.platform {
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown platform {p:?}; expected one of {}",
                Platform::expected()
            ))
        })?),
        None => None,
    };
    Ok(Json(
        state
            .catalog
            .iter()
            .filter(|d| {
                family.is_none_or(|f| d.allows_family(f))
                    && platform.is_none_or(|p| d.allows_platform(p))
            })
            .filter_map(|d| serde_json::to_value(d).ok())
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/catalog/{setting}", tag = "catalog", params(("setting" = String, Path)),
    responses((status = 200, description = "One setting definition", body = Object), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    _who: Principal,
    Path(setting): Path<String>,
) -> ApiResult<Json<Value>> {
    let def = state
        .catalog
        .get(&setting)
        .ok_or_else(|| ApiError::not_found(format!("setting {setting:?}")))?;
    serde_json::to_value(def)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
