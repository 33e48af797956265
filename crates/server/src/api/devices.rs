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
use rampart_store::page::{DeviceQuery, DeviceSort};
use rampart_store::{DeviceProblems, DeviceRecord, Write};
use serde_json::json;

use crate::api::audit;
use crate::auth::Principal;
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::state::AppState;
use crate::views::{device_view, effective_view};

/// The most devices one page holds.
pub const MAX_PAGE: u32 = 1000;

/// The store's page request for a list request, or the 400 naming the
/// parameter that is wrong.
fn device_query(f: &DeviceFilter) -> ApiResult<DeviceQuery> {
    let bad = |field: &str, message: String| ApiError::BadRequest(format!("{field}: {message}"));
    let sort = match f.sort.as_deref() {
        None => DeviceSort::Name,
        Some(s) => DeviceSort::parse(s).ok_or_else(|| {
            let known: Vec<&str> = DeviceSort::ALL.iter().map(|(n, _)| *n).collect();
            bad(
                "sort",
                format!("unknown sort {s:?}; expected one of {}", known.join(", ")),
            )
        })?,
    };
    let descending = match f.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(bad(
                "order",
                format!("unknown order {o:?}; expected asc or desc"),
            ))
        }
    };
    let limit = match f.limit {
        None => u32::MAX - 1,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(bad(
                "limit",
                format!("{n} is out of range; expected 1 to {MAX_PAGE}"),
            ))
        }
    };
    let after = f
        .cursor
        .as_deref()
        .map(|c| cursor::decode(c, sort, descending))
        .transpose()
        .map_err(|m| bad("cursor", m))?;
    let text = |v: &Option<String>| {
        v.as_ref()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Ok(DeviceQuery {
        os: text(&f.os),
        managed_by: text(&f.managed_by),
        enrollment: text(&f.enrollment),
        tag: text(&f.tag),
        label: text(&f.label),
        search: text(&f.search),
        sort,
        descending,
        after,
        limit,
    })
}

/// Page cursors: opaque to callers, hex of a small JSON object that names
/// the sort it belongs to, so a cursor is never read under another sort.
mod cursor {
    use rampart_store::page::{DeviceCursor, DeviceSort, SortKey};
    use serde_json::{json, Value};

    pub fn encode(c: &DeviceCursor, sort: DeviceSort, descending: bool) -> String {
        let key = match &c.key {
            SortKey::Text(s) => json!(s),
            SortKey::Int(i) => json!(i),
        };
        let text = json!({"s": sort.as_str(), "d": descending, "k": key, "n": c.name}).to_string();
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(text: &str, sort: DeviceSort, descending: bool) -> Result<DeviceCursor, String> {
        let invalid = || "not a cursor this server gave; start again without one".to_string();
        if !text.len().is_multiple_of(2) || text.len() > 4096 {
            return Err(invalid());
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if v["s"].as_str() != Some(sort.as_str()) || v["d"].as_bool() != Some(descending) {
            return Err("belongs to another sort or order; start again without it".to_string());
        }
        let key = match &v["k"] {
            Value::String(s) => SortKey::Text(s.clone()),
            Value::Number(n) => SortKey::Int(n.as_i64().ok_or_else(invalid)?),
            _ => return Err(invalid()),
        };
        let name = v["n"].as_str().ok_or_else(invalid)?.to_string();
        Ok(DeviceCursor { key, name })
    }
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceFilter),
    responses((status = 200, body = Vec<DeviceView>, headers(
        ("X-Total-Count" = u64, description = "How many devices match the filters in all; on a first page (no cursor) only"),
        ("X-Next-Cursor" = String, description = "The cursor of the next page; absent on the last"))),
        (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    QueryParams(filter): QueryParams<DeviceFilter>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let query = device_query(&filter)?;
    let page = state.store.device_page(&who.tenant_id, &query).await?;
    let names: Vec<String> = page.devices.iter().map(|d| d.name.clone()).collect();
    // A page's problems are counted for its devices; the whole list's in
    // one pass over the statuses.
    let problems = if names.len() <= MAX_PAGE as usize {
        state
            .store
            .device_problems_of(&who.tenant_id, &names)
            .await?
    } else {
        state.store.device_problems(&who.tenant_id).await?
    };
    let problems: HashMap<String, DeviceProblems> = problems
        .into_iter()
        .map(|p| (p.device.clone(), p))
        .collect();
    let now = state.clock.now();
    let views: Vec<DeviceView> = page
        .devices
        .iter()
        .map(|d| device_view(d, problems.get(&d.name), now))
        .collect();
    let mut headers = axum::http::HeaderMap::new();
    if let Some(Ok(v)) = page.total.map(|t| t.to_string().parse()) {
        headers.insert("x-total-count", v);
    }
    if let Some(next) = &page.next {
        if let Ok(v) = cursor::encode(next, query.sort, query.descending).parse() {
            headers.insert("x-next-cursor", v);
        }
    }
    Ok((headers, Json(views)))
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
