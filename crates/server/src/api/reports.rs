//! Reports: per policy, per setting and per device, as the seeds' "Monitor
//! status" describes them.
//!
//! A status is computed from what the server knows and what the agent
//! reported: a conflict or a not-applicable setting is known from resolution
//! alone; `succeeded` and `error` come from the agent's report, and count only
//! when the report is about the effective policy the device should hold now
//! (same digest) — otherwise the setting is `pending`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use rampart_core::resolve::Resolution;
use rampart_proto::{
    DeviceReport, ErrorBody, PolicyDeviceStatus, PolicyReport, PolicyValue, ReportPage,
    SettingDeviceStatus, SettingReport, SettingStatusView, StatusCounts, TrustEvent,
};
use rampart_store::{DeviceRecord, StatusRecord};

use crate::api::paging::Paging;
use crate::auth::Principal;
use crate::body::QueryParams;
use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::state::AppState;

pub const SUCCEEDED: &str = "succeeded";
pub const RECORDED: &str = "recorded";
pub const ERROR: &str = "error";
pub const CONFLICT: &str = "conflict";
pub const NOT_APPLICABLE: &str = "not_applicable";
pub const PENDING: &str = "pending";
pub const PENDING_ROLLOUT: &str = "pending_rollout";

/// The audit actions a device report lists as its trust events.
const TRUST_ACTIONS: &[&str] = &[
    "device.enroll",
    "device.reenroll",
    "device.reattest",
    "device.report_loss",
    "device.offboard",
];

/// The `status` a report's device list is filtered by; a 400 naming it
/// when it is none of the statuses.
fn status_filter(status: Option<&str>) -> ApiResult<Option<String>> {
    const ALL: &[&str] = &[
        SUCCEEDED,
        RECORDED,
        ERROR,
        CONFLICT,
        NOT_APPLICABLE,
        PENDING,
        PENDING_ROLLOUT,
    ];
    match status {
        None => Ok(None),
        Some(s) if ALL.contains(&s) => Ok(Some(s.to_string())),
        Some(s) => Err(ApiError::BadRequest(format!(
            "status: unknown status {s:?}; expected one of {}",
            ALL.join(", ")
        ))),
    }
}

/// Severity for "the worst status wins" roll-ups.
fn severity(status: &str) -> u8 {
    match status {
        ERROR => 5,
        CONFLICT => 4,
        PENDING => 3,
        RECORDED => 2,
        SUCCEEDED => 1,
        _ => 0,
    }
}

/// Sort key that puts what needs attention (conflicts, errors) first; a
/// stable sort keeps the order of the rest.
fn attention_last(status: &str) -> u8 {
    u8::from(!(status == CONFLICT || status == ERROR))
}

fn worst<'a>(statuses: impl Iterator<Item = &'a str>) -> &'a str {
    statuses
        .max_by_key(|s| severity(s))
        .unwrap_or(NOT_APPLICABLE)
}

pub fn count(counts: &mut StatusCounts, status: &str) {
    match status {
        SUCCEEDED => counts.succeeded += 1,
        RECORDED => counts.recorded += 1,
        ERROR => counts.error += 1,
        CONFLICT => counts.conflict += 1,
        NOT_APPLICABLE => counts.not_applicable += 1,
        PENDING_ROLLOUT => counts.pending_rollout += 1,
        _ => counts.pending += 1,
    }
}

/// Every setting row of one device: effective settings with their reported
/// status, conflicts with each policy's value, and not-applicable entries;
/// problems (conflicts and errors) first. A `per_key` setting (firewall
/// rules, ASR rules) has one row per entry, with that entry's own sources,
/// value and reported status.
pub fn device_settings(
    resolution: &Resolution,
    reports: &[StatusRecord],
) -> Vec<SettingStatusView> {
    let catalog = rampart_core::catalog::Catalog::builtin();
    let current: Vec<&StatusRecord> = reports
        .iter()
        .filter(|r| r.digest == resolution.digest)
        .collect();
    let mut rows = Vec::new();
    for s in &resolution.settings {
        let mine: Vec<&StatusRecord> = current
            .iter()
            .copied()
            .filter(|r| r.setting == s.setting)
            .collect();
        let per_key = catalog
            .get(&s.setting)
            .is_some_and(|d| d.merge == rampart_core::catalog::MergeStrategy::PerKey);
        if per_key && !s.entries.is_empty() {
            for entry in &s.entries {
                // The agent reports an entry under its key, or the whole
                // setting at once.
                let reported: Vec<&StatusRecord> = mine
                    .iter()
                    .copied()
                    .filter(|r| r.key == entry.key)
                    .collect();
                let reported = if reported.is_empty() {
                    mine.iter().copied().filter(|r| r.key.is_empty()).collect()
                } else {
                    reported
                };
                rows.push(status_row(
                    &s.setting,
                    Some(&entry.key),
                    &entry.value,
                    &entry.sources,
                    &reported,
                ));
            }
        } else {
            rows.push(status_row(&s.setting, None, &s.value, &s.sources, &mine));
        }
    }
    for c in &resolution.conflicts {
        let asks: Vec<String> = c
            .policies
            .iter()
            .zip(&c.values)
            .map(|(p, v)| format!("{p} asks for {v}"))
            .collect();
        rows.push(SettingStatusView {
            setting: c.setting.clone(),
            key: c.key.clone(),
            key_name: key_name(&c.setting, c.key.as_deref()),
            status: CONFLICT.into(),
            backend: None,
            value: None,
            observed: None,
            sources: c.policies.clone(),
            error_code: None,
            error_message: None,
            other_policies: c.policies.clone(),
            conflicting: c
                .policies
                .iter()
                .zip(&c.values)
                .map(|(policy, value)| PolicyValue {
                    policy: policy.clone(),
                    value: value.clone(),
                })
                .collect(),
            reason: Some(format!("{}; the setting is not applied", asks.join(", "))),
        });
    }
    for n in &resolution.not_applicable {
        rows.push(SettingStatusView {
            setting: n.setting.clone(),
            key: n.key.clone(),
            key_name: key_name(&n.setting, n.key.as_deref()),
            status: NOT_APPLICABLE.into(),
            backend: None,
            value: None,
            observed: None,
            sources: n.policies.clone(),
            error_code: None,
            error_message: None,
            other_policies: Vec::new(),
            conflicting: Vec::new(),
            reason: Some(n.reason.clone()),
        });
    }
    // What needs attention comes first; the rest keeps the catalog order.
    rows.sort_by_key(|r| attention_last(&r.status));
    rows
}

/// One effective setting (or entry) with the worst status the agent
/// reported for it, `pending` when it reported nothing about this policy.
fn status_row(
    setting: &str,
    key: Option<&str>,
    value: &serde_json::Value,
    sources: &[String],
    reported: &[&StatusRecord],
) -> SettingStatusView {
    let status = if reported.is_empty() {
        PENDING
    } else {
        worst(reported.iter().map(|r| r.status.as_str()))
    };
    let worst_row = reported.iter().find(|r| r.status == status);
    let failing = reported
        .iter()
        .find(|r| r.status == status && r.error_message.is_some());
    let observed = reported
        .iter()
        .find(|r| r.key == key.unwrap_or_default())
        .and_then(|r| r.observed.clone());
    SettingStatusView {
        setting: setting.to_string(),
        key: key.map(str::to_string),
        key_name: key_name(setting, key),
        status: status.to_string(),
        backend: worst_row.and_then(|r| r.backend.clone()),
        value: Some(value.clone()),
        observed,
        sources: sources.to_vec(),
        error_code: failing.and_then(|r| r.error_code.clone()),
        error_message: failing.and_then(|r| r.error_message.clone()),
        other_policies: if sources.len() > 1 {
            sources.to_vec()
        } else {
            Vec::new()
        },
        conflicting: Vec::new(),
        reason: None,
    }
}

/// The catalog's name of a `per_key` entry (an ASR rule's title).
fn key_name(setting: &str, key: Option<&str>) -> Option<String> {
    let key = key?;
    rampart_core::catalog::Catalog::builtin()
        .get(setting)?
        .keys
        .iter()
        .find(|k| k.key.eq_ignore_ascii_case(key))
        .map(|k| k.title.clone())
}

/// Status rows grouped by device.
pub(crate) fn by_device(statuses: Vec<StatusRecord>) -> BTreeMap<String, Vec<StatusRecord>> {
    let mut out: BTreeMap<String, Vec<StatusRecord>> = BTreeMap::new();
    for s in statuses {
        out.entry(s.device.clone()).or_default().push(s);
    }
    out
}

#[utoipa::path(get, path = "/api/v1/reports/devices/{name}", tag = "reports", params(("name" = String, Path)),
    responses((status = 200, body = DeviceReport), (status = 404, body = ErrorBody)))]
pub async fn device(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<DeviceReport>> {
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
    let reports = state.store.device_statuses(&who.tenant_id, &name).await?;
    let settings = if resolution.managed {
        device_settings(&resolution, &reports)
    } else {
        Vec::new()
    };
    let mut counts = StatusCounts::default();
    for s in &settings {
        count(&mut counts, &s.status);
    }
    // The device's own entries, found by the database however busy the
    // rest of the tenant's log is.
    let audit = state
        .store
        .audit(
            &who.tenant_id,
            &rampart_store::AuditQuery {
                object_kind: Some("device".into()),
                object_name: Some(name.clone()),
                ..rampart_store::AuditQuery::recent(1000, None)
            },
        )
        .await?;
    let trust_events = audit
        .iter()
        .filter(|a| TRUST_ACTIONS.contains(&a.action.as_str()))
        .take(20)
        .map(|a| TrustEvent {
            at: a.at,
            action: a.action.clone(),
            detail: a.after.clone(),
        })
        .collect();
    let tamper_events = audit
        .into_iter()
        .filter(|a| a.action == crate::device::api::TAMPER_ACTION)
        .filter_map(|a| a.after)
        // One entry per report holds its first events; older entries were
        // one event each.
        .flat_map(|after| match after.get("events") {
            Some(serde_json::Value::Array(events)) => events.clone(),
            _ => vec![after],
        })
        .take(20)
        .collect();
    Ok(Json(DeviceReport {
        tamper_events,
        trust_events,
        device: name,
        managed: resolution.managed,
        reason: resolution.reason.clone(),
        managed_by: record.managed_by.clone(),
        last_check_in: record.last_check_in,
        digest: resolution.digest.clone(),
        applied_digest: record.applied_digest.clone(),
        counts,
        settings,
    }))
}

#[utoipa::path(get, path = "/api/v1/reports/policies/{name}", tag = "reports", params(("name" = String, Path), ReportPage),
    responses((status = 200, body = PolicyReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn policy(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    QueryParams(page): QueryParams<ReportPage>,
) -> ApiResult<Json<PolicyReport>> {
    let wanted = status_filter(page.status.as_deref())?;
    let page = Paging::of(page.limit, page.cursor.as_deref())?;
    let fleet = Fleet::load_shared(&state, &who.tenant_id).await?;
    let record = fleet
        .policy_records
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ApiError::not_found(format!("policy {name:?}")))?;
    let policy = fleet.policies.iter().find(|p| p.name == name);
    let statuses = by_device(state.store.statuses(&who.tenant_id).await?);
    let mut report = PolicyReport {
        policy: name.clone(),
        version: record.version,
        devices_by_status: StatusCounts::default(),
        settings: BTreeMap::new(),
        devices: Vec::new(),
        devices_total: 0,
        next_cursor: None,
        rollout: match state
            .store
            .object(&who.tenant_id, rampart_store::ObjectKind::Rollout, &name)
            .await?
        {
            Some(r) => Some(crate::rollout::view(&r, &fleet)?),
            None => None,
        },
    };
    let Some(policy) = policy else {
        return Ok(Json(report));
    };
    let stages = report.rollout.as_ref().map_or(0, |r| r.stages.len());
    for device in &fleet.devices {
        let entitlement = fleet.rollout_entitlement(device, &name);
        if let Some(e) = entitlement.filter(|e| !e.reached) {
            count(&mut report.devices_by_status, PENDING_ROLLOUT);
            report.devices.push(PolicyDeviceStatus {
                device: device.name.clone(),
                status: PENDING_ROLLOUT.into(),
                rollout: Some(match e.stage {
                    Some(k) => format!("stage {} of {stages}", k + 1),
                    None => "at completion".into(),
                }),
                last_check_in: device.last_check_in,
                settings: Vec::new(),
            });
            continue;
        }
        let Some(resolution) = fleet
            .resolve_cached(device)
            .filter(|r| r.managed && r.policy_versions.contains_key(&name))
        else {
            continue;
        };
        let rows = device_settings(
            &resolution,
            statuses.get(&device.name).map_or(&[][..], Vec::as_slice),
        );
        let mut mine: Vec<SettingStatusView> = Vec::new();
        for setting in policy.settings.keys() {
            let relevant: Vec<&SettingStatusView> = rows
                .iter()
                .filter(|r| &r.setting == setting && r.sources.contains(&name))
                .collect();
            let mut row = match relevant.as_slice() {
                [] => superseded_row(&resolution, setting, &name),
                [one] => (*one).clone(),
                many => {
                    let mut first = many[0].clone();
                    first.status = worst(many.iter().map(|r| r.status.as_str())).to_string();
                    first
                }
            };
            row.other_policies = row
                .sources
                .iter()
                .filter(|p| **p != name)
                .cloned()
                .collect();
            count(
                report.settings.entry(setting.clone()).or_default(),
                &row.status,
            );
            mine.push(row);
        }
        let status = worst(mine.iter().map(|r| r.status.as_str())).to_string();
        count(&mut report.devices_by_status, &status);
        report.devices.push(PolicyDeviceStatus {
            device: device.name.clone(),
            status,
            rollout: entitlement.map(|_| "reached".to_string()),
            last_check_in: device.last_check_in,
            settings: mine,
        });
    }
    report.devices.sort_by_key(|d| attention_last(&d.status));
    if let Some(status) = &wanted {
        report.devices.retain(|d| &d.status == status);
    }
    report.devices_total = report.devices.len() as u64;
    let (devices, next) = page.cut(std::mem::take(&mut report.devices), |d| {
        (attention_last(&d.status), d.device.clone())
    });
    report.devices = devices;
    report.next_cursor = next;
    Ok(Json(report))
}

/// A setting of the policy that lost under `most_secure_wins`.
fn superseded_row(resolution: &Resolution, setting: &str, policy: &str) -> SettingStatusView {
    let winner = resolution.settings.iter().find(|s| s.setting == setting);
    SettingStatusView {
        setting: setting.to_string(),
        key: None,
        key_name: None,
        status: CONFLICT.into(),
        backend: None,
        value: winner.map(|s| s.value.clone()),
        observed: None,
        sources: vec![policy.to_string()],
        error_code: None,
        error_message: None,
        other_policies: winner.map(|s| s.sources.clone()).unwrap_or_default(),
        conflicting: Vec::new(),
        reason: Some("superseded by a more secure value from another policy".into()),
    }
}

#[utoipa::path(get, path = "/api/v1/reports/settings/{setting}", tag = "reports", params(("setting" = String, Path), ReportPage),
    responses((status = 200, body = SettingReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn setting(
    State(state): State<AppState>,
    who: Principal,
    Path(setting): Path<String>,
    QueryParams(page): QueryParams<ReportPage>,
) -> ApiResult<Json<SettingReport>> {
    let wanted = status_filter(page.status.as_deref())?;
    let page = Paging::of(page.limit, page.cursor.as_deref())?;
    if state.catalog.get(&setting).is_none() {
        return Err(ApiError::not_found(format!("setting {setting:?}")));
    }
    let fleet = Fleet::load_shared(&state, &who.tenant_id).await?;
    let statuses = by_device(state.store.statuses(&who.tenant_id).await?);
    let mut report = SettingReport {
        setting: setting.clone(),
        counts: StatusCounts::default(),
        devices: Vec::new(),
        devices_total: 0,
        next_cursor: None,
    };
    for device in &fleet.devices {
        let Some(resolution) = fleet.resolve_cached(device).filter(|r| r.managed) else {
            continue;
        };
        let rows = device_settings(
            &resolution,
            statuses.get(&device.name).map_or(&[][..], Vec::as_slice),
        );
        let rows: Vec<&SettingStatusView> = rows.iter().filter(|r| r.setting == setting).collect();
        if rows.is_empty() {
            continue;
        }
        let status = worst(rows.iter().map(|r| r.status.as_str())).to_string();
        count(&mut report.counts, &status);
        report.devices.push(device_row(device, &rows, status));
    }
    report.devices.sort_by_key(|d| attention_last(&d.status));
    if let Some(status) = &wanted {
        report.devices.retain(|d| &d.status == status);
    }
    report.devices_total = report.devices.len() as u64;
    let (devices, next) = page.cut(std::mem::take(&mut report.devices), |d| {
        (attention_last(&d.status), d.device.clone())
    });
    report.devices = devices;
    report.next_cursor = next;
    Ok(Json(report))
}

fn device_row(
    device: &DeviceRecord,
    rows: &[&SettingStatusView],
    status: String,
) -> SettingDeviceStatus {
    let mut sources: Vec<String> = rows
        .iter()
        .flat_map(|r| r.sources.iter().cloned())
        .collect();
    sources.sort();
    sources.dedup();
    SettingDeviceStatus {
        device: device.name.clone(),
        backend: rows.iter().find_map(|r| r.backend.clone()),
        status,
        value: rows.iter().find_map(|r| r.value.clone()),
        sources,
        error_message: rows
            .iter()
            .find_map(|r| r.error_message.clone().or_else(|| r.reason.clone())),
        conflicting: rows.iter().flat_map(|r| r.conflicting.clone()).fold(
            Vec::new(),
            |mut all, side| {
                if !all.contains(&side) {
                    all.push(side);
                }
                all
            },
        ),
    }
}
