//! Endpoint-security policies: list, create, show, update, delete, versions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::model::{Policy, Role, ALL_DEVICES};
use rampart_core::rollout::RolloutChoice;
use rampart_core::validate::{policy_from_json, policy_to_json};
use rampart_proto::{ErrorBody, PolicyView};
use rampart_store::ObjectKind;
use serde_json::Value;

use crate::api::{
    check_base, delete_object, find_object, name_from_path, with_etag, write_object, IfMatch,
};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views::policy_view;

#[utoipa::path(get, path = "/api/v1/policies", tag = "policies",
    responses((status = 200, body = Vec<PolicyView>)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<PolicyView>>> {
    let records = state
        .store
        .objects(&who.tenant_id, ObjectKind::Policy)
        .await?;
    Ok(Json(records.iter().map(policy_view).collect()))
}

#[utoipa::path(get, path = "/api/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let record = find_object(&state, &who, ObjectKind::Policy, &name).await?;
    Ok(with_etag(record.version, policy_view(&record)))
}

#[utoipa::path(get, path = "/api/v1/policies/{name}/versions", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<PolicyView>), (status = 404, body = ErrorBody)))]
pub async fn versions(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<PolicyView>>> {
    let history = state
        .store
        .object_history(&who.tenant_id, ObjectKind::Policy, &name)
        .await?;
    if history.is_empty() {
        return Err(ApiError::not_found(format!("policy {name:?}")));
    }
    Ok(Json(history.iter().map(policy_view).collect()))
}

/// Checks a policy body against the catalog and the tenant's groups; every
/// finding in one answer (an unknown group is reported beside the field
/// errors, not after they are fixed).
pub async fn check(state: &AppState, tenant: &str, body: &Value) -> ApiResult<Policy> {
    let parsed = policy_from_json(body, state.catalog, 1, state.clock.now());
    let groups = state.store.objects(tenant, ObjectKind::Group).await?;
    let known: Vec<&str> = groups.iter().map(|r| r.name.as_str()).collect();
    let (include, exclude) = match &parsed {
        Ok(p) => (p.assignments.include.clone(), p.assignments.exclude.clone()),
        Err(_) => (assigned(body, "include"), assigned(body, "exclude")),
    };
    let mut errors = parsed.as_ref().err().cloned().unwrap_or_default();
    errors.extend(unknown_groups("", &include, &exclude, &known));
    if let Ok(Policy {
        rollout: RolloutChoice::Staged(spec),
        ..
    }) = &parsed
    {
        errors.extend(unknown_stage_groups("rollout", spec, &known));
    }
    match parsed {
        Ok(mut policy) if errors.is_empty() => {
            policy.modified_at = state.clock.now();
            Ok(policy)
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

/// An error for each rollout stage that names a group that is not in
/// `known`; `prefix` is the path of the specification.
pub(crate) fn unknown_stage_groups(
    prefix: &str,
    spec: &rampart_core::rollout::RolloutSpec,
    known: &[&str],
) -> Vec<FieldError> {
    spec.stages
        .iter()
        .enumerate()
        .filter_map(|(i, stage)| match &stage.target {
            rampart_core::rollout::StageTarget::Group(g) if !known.contains(&g.as_str()) => {
                Some(FieldError::new(
                    format!("{prefix}.stages[{i}].group"),
                    format!(
                        "unknown group {g:?};{} define it first",
                        rampart_core::suggest::hint(g, known.iter().copied())
                    ),
                ))
            }
            _ => None,
        })
        .collect()
}

/// The group names of `assignments.<field>` in a body that did not
/// validate, as far as they are strings.
fn assigned(body: &Value, field: &str) -> Vec<String> {
    body.get("assignments")
        .and_then(|a| a.get(field))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|g| g.trim().to_string())
        .collect()
}

/// An error for each assigned group that is not in `known` (with the
/// closest known name); `prefix` leads each field path (`changes[2].`).
pub(crate) fn unknown_groups(
    prefix: &str,
    include: &[String],
    exclude: &[String],
    known: &[&str],
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, names) in [
        ("assignments.include", include),
        ("assignments.exclude", exclude),
    ] {
        for g in names {
            let ok =
                known.contains(&g.as_str()) || (g == ALL_DEVICES && field.ends_with("include"));
            if !ok {
                errors.push(FieldError::new(
                    format!("{prefix}{field}"),
                    format!(
                        "unknown group {g:?};{} define it or use {ALL_DEVICES}",
                        rampart_core::suggest::hint(g, known.iter().copied())
                    ),
                ));
            }
        }
    }
    errors
}

#[utoipa::path(post, path = "/api/v1/policies", tag = "policies",
    request_body(content = Object, description = "A policy document: name, description, family, platform, settings, assignments"),
    responses((status = 201, body = PolicyView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<PolicyView>)> {
    who.require(Role::SecurityManager, "creating a policy")?;
    let policy = check(&state, &who.tenant_id, &body).await?;
    let record = write_object(
        &state,
        &who,
        ObjectKind::Policy,
        &policy.name,
        None,
        policy_to_json(&policy),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(policy_view(&record))))
}

#[utoipa::path(put, path = "/api/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    request_body(content = Object, description = "The whole new policy document; its name must match the path"),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    IfMatch(base): IfMatch,
    JsonBody(mut body): JsonBody<Value>,
) -> ApiResult<impl axum::response::IntoResponse> {
    who.require(Role::SecurityManager, "changing a policy")?;
    name_from_path(&mut body, &name, ObjectKind::Policy)?;
    let before = find_object(&state, &who, ObjectKind::Policy, &name).await?;
    check_base(format!("policy {name:?}"), base, before.version)?;
    let policy = check(&state, &who.tenant_id, &body).await?;
    let record = write_object(
        &state,
        &who,
        ObjectKind::Policy,
        &name,
        Some(before),
        policy_to_json(&policy),
    )
    .await?;
    Ok(with_etag(record.version, policy_view(&record)))
}

#[utoipa::path(delete, path = "/api/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    IfMatch(base): IfMatch,
) -> ApiResult<StatusCode> {
    who.require(Role::SecurityManager, "deleting a policy")?;
    let before = find_object(&state, &who, ObjectKind::Policy, &name).await?;
    check_base(format!("policy {name:?}"), base, before.version)?;
    delete_object(&state, &who, before).await?;
    Ok(StatusCode::NO_CONTENT)
}
