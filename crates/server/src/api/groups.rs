//! Device groups, static and dynamic, with a membership preview.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::model::Role;
use rampart_core::validate::{group_from_json, group_to_json};
use rampart_proto::{ErrorBody, GroupMembers, GroupView};
use rampart_store::ObjectKind;
use serde_json::Value;

use crate::api::{
    check_base, delete_object, find_object, name_from_path, with_etag, write_object, IfMatch,
};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::state::AppState;
use crate::views::group_view;

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", responses((status = 200, body = Vec<GroupView>)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<GroupView>>> {
    let records = state
        .store
        .objects(&who.tenant_id, ObjectKind::Group)
        .await?;
    Ok(Json(records.iter().map(group_view).collect()))
}

#[utoipa::path(get, path = "/api/v1/groups/{name}", tag = "groups", params(("name" = String, Path)),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let record = find_object(&state, &who, ObjectKind::Group, &name).await?;
    Ok(with_etag(record.version, group_view(&record)))
}

#[utoipa::path(get, path = "/api/v1/groups/{name}/members", tag = "groups", params(("name" = String, Path)),
    responses((status = 200, body = GroupMembers), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<GroupMembers>> {
    let fleet = Fleet::load(&state, &who.tenant_id).await?;
    let group = fleet
        .groups
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::not_found(format!("group {name:?}")))?;
    Ok(Json(GroupMembers {
        group: name.clone(),
        devices: fleet.members(group),
    }))
}

#[utoipa::path(post, path = "/api/v1/groups/preview", tag = "groups",
    request_body(content = Object, description = "A group document (name, rule or members) that is not saved"),
    responses((status = 200, body = GroupMembers), (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(mut body): JsonBody<Value>,
) -> ApiResult<Json<GroupMembers>> {
    // A preview may be asked for before the group has a name.
    if let Some(obj) = body.as_object_mut() {
        obj.entry("name").or_insert_with(|| Value::from("preview"));
    }
    let group = group_from_json(&body).map_err(ApiError::Validation)?;
    let fleet = Fleet::load(&state, &who.tenant_id).await?;
    Ok(Json(GroupMembers {
        group: group.name.clone(),
        devices: fleet.members(&group),
    }))
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "groups",
    request_body(content = Object, description = "A group document: name, description, and rule or members"),
    responses((status = 201, body = GroupView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    who.require(Role::SecurityManager, "creating a group")?;
    let group = group_from_json(&body).map_err(ApiError::Validation)?;
    let record = write_object(
        &state,
        &who,
        ObjectKind::Group,
        &group.name,
        None,
        group_to_json(&group),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(group_view(&record))))
}

#[utoipa::path(put, path = "/api/v1/groups/{name}", tag = "groups", params(("name" = String, Path)),
    request_body(content = Object, description = "The whole new group document"),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    IfMatch(base): IfMatch,
    JsonBody(mut body): JsonBody<Value>,
) -> ApiResult<impl axum::response::IntoResponse> {
    who.require(Role::SecurityManager, "changing a group")?;
    name_from_path(&mut body, &name, ObjectKind::Group)?;
    let before = find_object(&state, &who, ObjectKind::Group, &name).await?;
    check_base(format!("group {name:?}"), base, before.version)?;
    let group = group_from_json(&body).map_err(ApiError::Validation)?;
    let record = write_object(
        &state,
        &who,
        ObjectKind::Group,
        &name,
        Some(before),
        group_to_json(&group),
    )
    .await?;
    Ok(with_etag(record.version, group_view(&record)))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}", tag = "groups", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    IfMatch(base): IfMatch,
) -> ApiResult<StatusCode> {
    who.require(Role::SecurityManager, "deleting a group")?;
    let before = find_object(&state, &who, ObjectKind::Group, &name).await?;
    check_base(format!("group {name:?}"), base, before.version)?;
    let users = assigning_policies(&state, &who.tenant_id, &name).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "group {name:?} is assigned by policies {}; change their assignments first",
            users.join(", ")
        )));
    }
    delete_object(&state, &who, before).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Policies whose assignments name the group.
async fn assigning_policies(state: &AppState, tenant: &str, group: &str) -> ApiResult<Vec<String>> {
    let policies = state.store.objects(tenant, ObjectKind::Policy).await?;
    Ok(policies
        .into_iter()
        .filter(|p| {
            ["/assignments/include", "/assignments/exclude"]
                .iter()
                .any(|ptr| {
                    p.doc
                        .pointer(ptr)
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|g| g == group))
                })
        })
        .map(|p| p.name)
        .collect())
}
