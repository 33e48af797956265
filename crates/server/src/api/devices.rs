//! Devices: list and filter, show, tags, delete, policy sync, effective policy.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::model::Role;
use rampart_core::validate::check_tags;
use rampart_proto::{
    DeviceFilter, DeviceView, EffectivePolicyView, ErrorBody, ReenrollApproval, ReenrollApprove,
    SetTags, SyncAccepted,
};
use rampart_store::{DeviceProblems, DeviceRecord, Write};
use serde_json::json;

use crate::api::audit;
use crate::auth::Principal;
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::state::AppState;
use crate::views::{device_view, effective_view};

fn matches(d: &DeviceRecord, f: &DeviceFilter) -> bool {
    let eq = |want: &Option<String>, have: &str| {
        want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
    };
    let has = |want: &Option<String>, list: &[String]| {
        want.as_ref()
            .is_none_or(|w| list.iter().any(|x| x.eq_ignore_ascii_case(w)))
    };
    eq(&f.managed_by, &d.managed_by)
        && eq(&f.os, &d.os)
        && eq(&f.enrollment, &d.enrollment_status)
        && has(&f.tag, &d.tags)
        && has(&f.label, &d.labels)
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceFilter),
    responses((status = 200, body = Vec<DeviceView>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    QueryParams(filter): QueryParams<DeviceFilter>,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let devices = state.store.devices(&who.tenant_id).await?;
    let problems: HashMap<String, DeviceProblems> = state
        .store
        .device_problems(&who.tenant_id)
        .await?
        .into_iter()
        .map(|p| (p.device.clone(), p))
        .collect();
    let now = state.clock.now();
    Ok(Json(
        devices
            .iter()
            .filter(|d| matches(d, &filter))
            .map(|d| device_view(d, problems.get(&d.name), now))
            .collect(),
    ))
}

/// One device as the API shows it, with its problem counts.
async fn view_of(state: &AppState, tenant: &str, record: &DeviceRecord) -> ApiResult<DeviceView> {
    let statuses = state.store.device_statuses(tenant, &record.name).await?;
    let count = |status: &str| statuses.iter().filter(|s| s.status == status).count() as u64;
    let problems = DeviceProblems {
        device: record.name.clone(),
        errors: count("error"),
        conflicts: count("conflict"),
    };
    Ok(device_view(record, Some(&problems), state.clock.now()))
}

pub async fn find(state: &AppState, tenant: &str, name: &str) -> ApiResult<DeviceRecord> {
    state
        .store
        .device(tenant, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {name:?}")))
}

#[utoipa::path(get, path = "/api/v1/devices/{name}", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    let record = find(&state, &who.tenant_id, &name).await?;
    Ok(Json(view_of(&state, &who.tenant_id, &record).await?))
}

#[utoipa::path(put, path = "/api/v1/devices/{name}/tags", tag = "devices", params(("name" = String, Path)),
    request_body = SetTags,
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_tags(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SetTags>,
) -> ApiResult<Json<DeviceView>> {
    who.require(Role::SecurityManager, "tagging a device")?;
    let tags = check_tags("tags", &body.tags).map_err(ApiError::Validation)?;
    let before = find(&state, &who.tenant_id, &name).await?;
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::SetDeviceTags {
                name: name.clone(),
                tags: tags.clone(),
            }],
            vec![audit(
                &who,
                "device.tags",
                "device",
                &name,
                Some(json!({ "tags": before.tags })),
                Some(json!({ "tags": tags })),
            )],
        )
        .await?;
    state.policy_changed(&who.tenant_id);
    let record = find(&state, &who.tenant_id, &name).await?;
    Ok(Json(view_of(&state, &who.tenant_id, &record).await?))
}

#[utoipa::path(delete, path = "/api/v1/devices/{name}", tag = "devices", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::SecurityManager, "deleting a device")?;
    let before = find(&state, &who.tenant_id, &name).await?;
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::DeleteDevice {
                name: before.name.clone(),
                reason: format!("deleted by {}", who.actor),
            }],
            vec![audit(
                &who,
                "device.delete",
                "device",
                &name,
                Some(
                    serde_json::to_value(device_view(&before, None, state.clock.now()))
                        .unwrap_or_default(),
                ),
                None,
            )],
        )
        .await?;
    // A waiting agent learns at once that its trust is gone.
    state.nudge_device(&who.tenant_id, &before.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Longest a re-enrollment approval may last.
const MAX_REENROLL_HOURS: u32 = 168;

#[utoipa::path(post, path = "/api/v1/devices/{name}/reenroll", tag = "devices", params(("name" = String, Path)),
    request_body = ReenrollApprove,
    responses((status = 200, body = ReenrollApproval), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Approves one re-enrollment of the device under its name: the next
/// enrollment with a valid onboarding token before the approval expires
/// gets the device's id and a new certificate; the current certificate
/// stops counting then. One-shot and audited.
pub async fn reenroll(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ReenrollApprove>,
) -> ApiResult<Json<ReenrollApproval>> {
    who.require(Role::SecurityManager, "approving a device re-enrollment")?;
    let hours = body.expires_in_hours.unwrap_or(24);
    if !(1..=MAX_REENROLL_HOURS).contains(&hours) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "expires_in_hours",
            format!("must be 1 to {MAX_REENROLL_HOURS}"),
        )]));
    }
    let device = find(&state, &who.tenant_id, &name).await?;
    let now = state.clock.now();
    let until = now + i64::from(hours) * 3600;
    state
        .store
        .write(
            &who.tenant_id,
            now,
            vec![Write::ApproveReenroll {
                name: device.name.clone(),
                until: Some(until),
            }],
            vec![audit(
                &who,
                "device.reenroll_approve",
                "device",
                &device.name,
                None,
                Some(json!({ "until": until })),
            )],
        )
        .await?;
    Ok(Json(ReenrollApproval {
        device: device.name,
        until,
    }))
}

#[utoipa::path(post, path = "/api/v1/devices/{name}/sync", tag = "devices", params(("name" = String, Path)),
    responses((status = 202, body = SyncAccepted), (status = 404, body = ErrorBody)))]
pub async fn sync(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<SyncAccepted>)> {
    who.require(Role::SecurityManager, "syncing a device")?;
    let device = find(&state, &who.tenant_id, &name).await?;
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            Vec::new(),
            vec![audit(&who, "device.sync", "device", &name, None, None)],
        )
        .await?;
    let connected = state.nudge_device(&who.tenant_id, &device.id);
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncAccepted {
            device: name,
            connected,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{name}/effective", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = EffectivePolicyView), (status = 404, body = ErrorBody)))]
pub async fn effective(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<EffectivePolicyView>> {
    let fleet = Fleet::load(&state, &who.tenant_id).await?;
    let record = fleet
        .devices
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found(format!("device {name:?}")))?;
    let resolution = fleet.resolve(record).ok_or_else(|| {
        ApiError::Conflict(format!(
            "device {name:?} reports an unknown OS {:?}",
            record.os
        ))
    })?;
    Ok(Json(effective_view(&resolution)))
}
