//! Handlers of the device channel.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::resolve::Resolution;
use rampart_core::validate::normalize_tags;
use rampart_proto::device::{
    codes, CheckIn, CheckInResponse, EnrollRequest, EnrollResponse, PolicyPayload, RenewRequest,
    RenewResponse, SignedPolicy, StatusAck, StatusReport, WaitResponse,
};
use rampart_store::{DeviceRecord, NewAudit, StatusRecord, TokenUse, Write};
use serde::Deserialize;

use crate::auth::hash_token;
use crate::body::{JsonBody, QueryParams};
use crate::device::enrollment::{enrollment_state, ENROLLED};
use crate::device::trust::ensure_tenant_secrets;
use crate::device::DevicePrincipal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Coded {
        status,
        code,
        message: message.into(),
    }
}

fn device_audit(device: &str, action: &str, after: Option<serde_json::Value>) -> NewAudit {
    NewAudit {
        actor: format!("device:{device}"),
        action: action.to_string(),
        object_kind: "device".into(),
        object_name: device.to_string(),
        before: None,
        after,
    }
}

fn check_device_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "device_name",
            "must be 1 to 128 characters without control characters",
        )]));
    }
    Ok(name.to_string())
}

/// `POST /device/v1/enroll`: token + CSR + facts → device certificate.
pub async fn enroll(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let name = check_device_name(&req.device_name)?;
    let now = state.clock.now();
    let tenant_id = match state.store.consume_onboarding_token(&hash_token(req.token.trim()), now).await? {
        TokenUse::Accepted { tenant_id, .. } => tenant_id,
        TokenUse::Unknown => return Err(coded(StatusCode::UNAUTHORIZED, codes::TOKEN_UNKNOWN, "the onboarding token is unknown to this server (revoked, or from another tenant's server)")),
        TokenUse::Expired => return Err(coded(StatusCode::UNAUTHORIZED, codes::TOKEN_EXPIRED, "the onboarding token has expired; download a new onboarding package")),
        TokenUse::Exhausted => return Err(coded(StatusCode::FORBIDDEN, codes::TOKEN_EXHAUSTED, "the onboarding token has been used as many times as it allows")),
    };
    let tenant_name = state.tenant_name(&tenant_id).await?.unwrap_or_default();
    let secrets = ensure_tenant_secrets(state.store.as_ref(), &tenant_id, &tenant_name, now)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let existing = state.store.device(&tenant_id, &name).await?;
    let device_id = existing
        .as_ref()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |d| d.id.clone());
    let ca = rampart_pki::CaBundle {
        cert_pem: secrets.ca_cert_pem.clone(),
        key_pem: secrets.ca_key_pem.clone(),
    };
    let issued = rampart_pki::issue_device_cert(
        &ca,
        &req.csr_pem,
        &tenant_id,
        &device_id,
        now - 300,
        now + state.device.cert_lifetime_secs,
    )
    .map_err(|e| ApiError::Validation(vec![FieldError::new("csr_pem", e.to_string())]))?;
    let fleet = state.policies.get(&state, &tenant_id).await?;
    let tags = normalize_tags(
        existing
            .as_ref()
            .map(|d| d.tags.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(req.facts.tags.iter().cloned())
            .collect(),
    );
    let enrollment = enrollment_state(&req.facts, &req.survey, &tags, &fleet.settings);
    let mut record = existing.clone().unwrap_or(DeviceRecord {
        id: device_id.clone(),
        name: name.clone(),
        os: String::new(),
        os_version: String::new(),
        device_type: String::new(),
        agent_version: String::new(),
        tags: Vec::new(),
        labels: Vec::new(),
        managed_by: String::new(),
        enrollment_status: String::new(),
        enrollment_code: None,
        enrollment_reason: None,
        last_check_in: None,
        applied_digest: None,
        policy_version: None,
        created_at: now,
        cert_serial: None,
        cert_not_after: None,
        issued_version: 0,
        issued_digest: None,
    });
    apply_facts(&mut record, &req.facts, &tags, &enrollment, now);
    record.cert_serial = Some(issued.serial_hex.clone());
    record.cert_not_after = Some(issued.not_after);
    let action = if existing.is_some() {
        "device.reenroll"
    } else {
        "device.enroll"
    };
    state
        .store
        .write(&tenant_id, now, vec![Write::PutDevice(record)], vec![device_audit(&name, action, Some(serde_json::json!({ "id": device_id, "enrollment": enrollment.status, "code": enrollment.code })))])
        .await?;
    tracing::info!(tenant = %tenant_id, device = %name, status = %enrollment.status, "device enrolled");
    Ok(Json(EnrollResponse {
        device_id,
        device_name: name,
        certificate_pem: issued.cert_pem,
        tenant_ca_pem: secrets.ca_cert_pem,
        not_after: issued.not_after,
        policy_key: secrets.verify_key,
        enrollment,
    }))
}

fn apply_facts(
    record: &mut DeviceRecord,
    facts: &rampart_proto::device::Facts,
    tags: &[String],
    e: &rampart_proto::device::EnrollmentState,
    now: i64,
) {
    record.os = facts.os.clone();
    record.os_version = facts.os_version.clone();
    record.device_type = facts.device_type.clone();
    record.agent_version = facts.agent_version.clone();
    record.tags = tags.to_vec();
    record.labels = e.labels.clone();
    record.managed_by = e.managed_by.clone();
    record.enrollment_status = e.status.clone();
    record.enrollment_code = e.code.clone();
    record.enrollment_reason = e.reason.clone();
    record.last_check_in = Some(now);
}

/// The device's resolution now, from the cached policy set.
async fn current_resolution(
    state: &AppState,
    tenant: &str,
    record: &DeviceRecord,
) -> ApiResult<Resolution> {
    let fleet = state.policies.get(state, tenant).await?;
    fleet.resolve(record).ok_or_else(|| {
        ApiError::Conflict(format!(
            "device {:?} reports an unknown OS {:?}",
            record.name, record.os
        ))
    })
}

/// `POST /device/v1/checkin`.
pub async fn checkin(
    State(state): State<AppState>,
    device: DevicePrincipal,
    JsonBody(req): JsonBody<CheckIn>,
) -> ApiResult<Json<CheckInResponse>> {
    let now = state.clock.now();
    let tenant = device.tenant_id.clone();
    let mut record = device.record;
    let fleet = state.policies.get(&state, &tenant).await?;
    // Tags from the agent's configuration are added to the ones the
    // administrators set; an agent never removes an administrator's tag.
    let tags = normalize_tags(
        record
            .tags
            .iter()
            .cloned()
            .chain(req.facts.tags.iter().cloned())
            .collect(),
    );
    let enrollment = enrollment_state(&req.facts, &req.survey, &tags, &fleet.settings);
    let before = record.clone();
    apply_facts(&mut record, &req.facts, &tags, &enrollment, now);
    let mut writes = Vec::new();
    let facts_changed = DeviceRecord {
        last_check_in: before.last_check_in,
        ..record.clone()
    } != before;
    let resolution = current_resolution(&state, &tenant, &record).await?;
    if resolution.digest.as_str() != record.issued_digest.as_deref().unwrap_or("") {
        record.issued_version += 1;
        record.issued_digest = Some(resolution.digest.clone());
        writes.push(Write::SetIssuedPolicy {
            name: record.name.clone(),
            version: record.issued_version,
            digest: resolution.digest.clone(),
        });
    }
    if facts_changed {
        writes.insert(
            0,
            Write::UpdateDeviceFacts {
                name: record.name.clone(),
                os: record.os.clone(),
                os_version: record.os_version.clone(),
                device_type: record.device_type.clone(),
                agent_version: record.agent_version.clone(),
                tags: Some(record.tags.clone()),
                managed_by: record.managed_by.clone(),
                labels: record.labels.clone(),
                enrollment_status: record.enrollment_status.clone(),
                enrollment_code: record.enrollment_code.clone(),
                enrollment_reason: record.enrollment_reason.clone(),
                last_check_in: Some(now),
            },
        );
    } else {
        state.last_seen.note(&tenant, &record.name, now);
    }
    if !writes.is_empty() {
        match state.store.write(&tenant, now, writes, Vec::new()).await {
            Ok(()) => {}
            // Another replica issued this device's next version first; its
            // record is the truth, and the agent will get it at next contact.
            Err(rampart_store::StoreError::Conflict(m)) => {
                tracing::debug!(device = %record.name, conflict = %m, "issued version raced another writer");
                if let Some(fresh) = state.store.device_by_id(&tenant, &record.id).await? {
                    record.issued_version = fresh.issued_version;
                    record.issued_digest = fresh.issued_digest;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let policy = if req.digest.as_deref() == Some(resolution.digest.as_str()) {
        None
    } else {
        Some(sign(&state, &tenant, &record, &resolution, now).await?)
    };
    Ok(Json(CheckInResponse { enrollment, policy }))
}

async fn sign(
    state: &AppState,
    tenant: &str,
    record: &DeviceRecord,
    resolution: &Resolution,
    now: i64,
) -> ApiResult<SignedPolicy> {
    let payload = PolicyPayload {
        tenant_id: tenant.to_string(),
        device_id: record.id.clone(),
        version: record.issued_version,
        digest: resolution.digest.clone(),
        issued_at: now,
        resolution: serde_json::to_value(resolution)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let text = serde_json::to_string(&payload).map_err(|e| ApiError::Internal(e.to_string()))?;
    let secrets = state
        .store
        .tenant_secrets(tenant)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("tenant {tenant} has no signing key")))?;
    let signature = rampart_pki::sign(&secrets.signing_key, text.as_bytes())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(SignedPolicy {
        payload: text,
        signature,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    pub digest: Option<String>,
    pub timeout: Option<u64>,
}

/// The audit action of a tamper event a device reported.
pub const TAMPER_ACTION: &str = "device.tamper";

/// Longest a long poll is held open.
pub const MAX_WAIT_SECS: u64 = 300;

/// `GET /device/v1/wait`: answers `sync` when the device should check in.
pub async fn wait(
    State(state): State<AppState>,
    device: DevicePrincipal,
    QueryParams(q): QueryParams<WaitQuery>,
) -> ApiResult<Json<WaitResponse>> {
    let timeout = q.timeout.unwrap_or(60).clamp(1, MAX_WAIT_SECS);
    let held = q.digest.unwrap_or_default();
    let resolution = current_resolution(&state, &device.tenant_id, &device.record).await?;
    if resolution.digest != held {
        return Ok(Json(WaitResponse {
            event: "sync".into(),
        }));
    }
    let registration = state
        .hub
        .register(&device.tenant_id, &device.record.id, &held);
    let event = tokio::select! {
        _ = registration.notified() => "sync",
        _ = tokio::time::sleep(Duration::from_secs(timeout)) => "timeout",
    };
    Ok(Json(WaitResponse {
        event: event.into(),
    }))
}

const STATUSES: &[&str] = &[
    "succeeded",
    "error",
    "conflict",
    "not_applicable",
    "pending",
];

/// `POST /device/v1/status`: stores the changed rows, then acknowledges.
pub async fn status(
    State(state): State<AppState>,
    device: DevicePrincipal,
    JsonBody(report): JsonBody<StatusReport>,
) -> ApiResult<Json<StatusAck>> {
    let now = state.clock.now();
    let mut errors = Vec::new();
    for (i, s) in report.statuses.iter().enumerate() {
        if !STATUSES.contains(&s.status.as_str()) {
            errors.push(FieldError::new(
                format!("statuses[{i}].status"),
                format!(
                    "unknown status {:?}; expected one of {}",
                    s.status,
                    STATUSES.join(", ")
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let rows = report
        .statuses
        .iter()
        .map(|s| StatusRecord {
            device: device.record.name.clone(),
            setting: s.setting.clone(),
            key: s.key.clone().unwrap_or_default(),
            status: s.status.clone(),
            observed: s.observed.clone(),
            error_code: s.error_code.clone(),
            error_message: s.error_message.clone(),
            digest: report.digest.clone(),
            updated_at: now,
        })
        .collect();
    let changed = state
        .store
        .record_statuses(&device.tenant_id, &device.record.name, rows)
        .await?;
    // Tamper events go to the audit log, where the device report finds them.
    if !report.tamper_events.is_empty() {
        let entries = report
            .tamper_events
            .iter()
            .map(|t| {
                device_audit(
                    &device.record.name,
                    TAMPER_ACTION,
                    serde_json::to_value(t).ok(),
                )
            })
            .collect();
        state
            .store
            .write(&device.tenant_id, now, Vec::new(), entries)
            .await?;
    }
    if device.record.applied_digest.as_deref() != Some(report.digest.as_str())
        || device.record.policy_version != Some(report.version)
    {
        let write = Write::SetAppliedPolicy {
            name: device.record.name.clone(),
            digest: Some(report.digest.clone()),
            version: Some(report.version),
        };
        state
            .store
            .write(&device.tenant_id, now, vec![write], Vec::new())
            .await?;
    }
    Ok(Json(StatusAck {
        report_id: report.report_id,
        changed,
    }))
}

/// `POST /device/v1/renew`: a new certificate; the old one stops working.
pub async fn renew(
    State(state): State<AppState>,
    device: DevicePrincipal,
    JsonBody(req): JsonBody<RenewRequest>,
) -> ApiResult<Json<RenewResponse>> {
    let now = state.clock.now();
    let secrets = state
        .store
        .tenant_secrets(&device.tenant_id)
        .await?
        .ok_or_else(|| ApiError::Internal("tenant has no CA".into()))?;
    let ca = rampart_pki::CaBundle {
        cert_pem: secrets.ca_cert_pem,
        key_pem: secrets.ca_key_pem,
    };
    let issued = rampart_pki::issue_device_cert(
        &ca,
        &req.csr_pem,
        &device.tenant_id,
        &device.record.id,
        now - 300,
        now + state.device.cert_lifetime_secs,
    )
    .map_err(|e| ApiError::Validation(vec![FieldError::new("csr_pem", e.to_string())]))?;
    state
        .store
        .write(
            &device.tenant_id,
            now,
            vec![Write::SetDeviceIdentity {
                name: device.record.name.clone(),
                cert_serial: Some(issued.serial_hex.clone()),
                cert_not_after: Some(issued.not_after),
            }],
            Vec::new(),
        )
        .await?;
    Ok(Json(RenewResponse {
        certificate_pem: issued.cert_pem,
        not_after: issued.not_after,
    }))
}

/// `POST /device/v1/offboard`: the device leaves; its record goes.
pub async fn offboard(
    State(state): State<AppState>,
    device: DevicePrincipal,
) -> ApiResult<StatusCode> {
    let name = device.record.name.clone();
    state
        .store
        .write(
            &device.tenant_id,
            state.clock.now(),
            vec![Write::DeleteDevice { name: name.clone() }],
            vec![device_audit(&name, "device.offboard", None)],
        )
        .await?;
    state.policies.invalidate(&device.tenant_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a stored state means Rampart manages the device.
pub fn is_enrolled(record: &DeviceRecord) -> bool {
    record.enrollment_status == ENROLLED
}
