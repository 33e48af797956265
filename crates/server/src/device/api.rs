//! Handlers of the device channel.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::resolve::Resolution;
use rampart_core::validate::{check_tags, normalize_tags};
use rampart_proto::device::{
    codes, CheckIn, CheckInResponse, EnrollRequest, EnrollResponse, ReattestRequest, RenewRequest,
    RenewResponse, StatusAck, StatusReport, WaitResponse, BACKENDS, MAX_STATUSES_PER_REPORT,
    MAX_TAMPER_EVENTS_PER_REPORT, SETTING_STATUSES,
};
use rampart_store::{DeviceRecord, NewAudit, StatusRecord, TokenUse, Write};
use serde::Deserialize;

use crate::auth::hash_token;
use crate::body::{JsonBody, QueryParams};
use crate::device::enrollment::{enrollment_state, ENROLLED};
use crate::device::signing::sign_policy;
use crate::device::trust::ensure_tenant_secrets;
use crate::device::{DevicePrincipal, DeviceRejection};
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
    rampart_core::names::normalize_name(name, rampart_core::names::MAX_OBJECT_NAME_CHARS)
        .map_err(|m| ApiError::Validation(vec![FieldError::new("device_name", m)]))
}

fn name_taken(name: &str) -> ApiError {
    coded(
        StatusCode::CONFLICT,
        codes::DEVICE_NAME_TAKEN,
        format!(
            "a device named {name:?} is enrolled in this tenant; a device name is not a credential: \
             the device itself recovers with its enrolled key, and enrolling another machine under \
             this name needs an administrator's approval (`rampart device reenroll {name}`)"
        ),
    )
}

/// A new device record for `name`, before the facts are applied.
pub(crate) fn blank_device(id: String, name: String, now: i64) -> DeviceRecord {
    DeviceRecord {
        id,
        name,
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
        key_sha256: None,
        reenroll_until: None,
        conditions: Vec::new(),
    }
}

/// What enrollment and re-attestation share: the certificate issued for the
/// CSR, the record updated with it and the facts, and the answer.
struct Issued {
    record: DeviceRecord,
    response: EnrollResponse,
}

async fn issue(
    state: &AppState,
    tenant_id: &str,
    mut record: DeviceRecord,
    csr_pem: &str,
    facts: &rampart_proto::device::Facts,
    survey: &rampart_proto::device::Survey,
    now: i64,
) -> ApiResult<Issued> {
    let tenant_name = state.tenant_name(tenant_id).await?.unwrap_or_default();
    let secrets = ensure_tenant_secrets(state.store.as_ref(), tenant_id, &tenant_name, now)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // A tenant created a moment ago (by another process or replica) must
    // be trusted before this device's first check-in.
    state
        .trust
        .ensure_tenant_trusted(state.store.as_ref(), tenant_id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let ca = rampart_pki::CaBundle {
        cert_pem: secrets.ca_cert_pem.clone(),
        key_pem: secrets.ca_key_pem.clone(),
    };
    let issued = rampart_pki::issue_device_cert(
        &ca,
        csr_pem,
        tenant_id,
        &record.id,
        now - 300,
        now + state.device.cert_lifetime_secs,
    )
    .map_err(|e| ApiError::Validation(vec![FieldError::new("csr_pem", e.to_string())]))?;
    let fleet = state.policies.get(state, tenant_id).await?;
    let reported = check_tags("facts.tags", &facts.tags).map_err(ApiError::Validation)?;
    let tags = normalize_tags(record.tags.iter().cloned().chain(reported).collect());
    let enrollment = enrollment_state(facts, survey, &tags, &fleet.settings);
    apply_facts(&mut record, facts, &tags, &enrollment, now);
    record.cert_serial = Some(issued.serial_hex.clone());
    record.cert_not_after = Some(issued.not_after);
    record.key_sha256 = Some(issued.key_sha256.clone());
    record.reenroll_until = None;
    let response = EnrollResponse {
        device_id: record.id.clone(),
        device_name: record.name.clone(),
        certificate_pem: issued.cert_pem,
        tenant_ca_pem: secrets.ca_cert_pem,
        not_after: issued.not_after,
        policy_key: secrets.verify_key,
        enrollment,
    };
    Ok(Issued { record, response })
}

/// `POST /device/v1/enroll`: token + CSR + facts → device certificate.
///
/// A name that belongs to an enrolled device is refused
/// (`device_name_taken`) unless an administrator approved re-enrolling it;
/// a record no agent has enrolled yet (created from policy files) is
/// claimed by the first enrollment. Of concurrent enrollments of one name
/// exactly one succeeds.
pub async fn enroll(
    state: State<AppState>,
    body: JsonBody<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let result = enroll_device(state, body).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.parts().1,
    };
    crate::metrics::get()
        .enrollments
        .get_or_create(&crate::metrics::ResultLabels {
            result: outcome.to_string(),
        })
        .inc();
    result
}

async fn enroll_device(
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
    let existing = state.store.device(&tenant_id, &name).await?;
    let new = existing.is_none();
    let (record, mut writes, action) = match existing {
        None => (
            blank_device(uuid::Uuid::new_v4().to_string(), name.clone(), now),
            Vec::new(),
            "device.enroll",
        ),
        Some(d) if d.cert_serial.is_none() && d.key_sha256.is_none() => {
            (d, Vec::new(), "device.enroll")
        }
        Some(d) if d.reenroll_until.is_some_and(|until| until > now) => {
            let consume = Write::ConsumeReenroll {
                name: d.name.clone(),
            };
            (d, vec![consume], "device.reenroll")
        }
        Some(d) => return Err(name_taken(&d.name)),
    };
    let Issued { record, response } = issue(
        &state,
        &tenant_id,
        record,
        &req.csr_pem,
        &req.facts,
        &req.survey,
        now,
    )
    .await?;
    writes.push(if new {
        Write::EnrollDevice(record.clone())
    } else {
        Write::PutDevice(record.clone())
    });
    let audit = device_audit(
        &record.name,
        action,
        Some(
            serde_json::json!({ "id": record.id, "enrollment": response.enrollment.status, "code": response.enrollment.code }),
        ),
    );
    match state
        .store
        .write(&tenant_id, now, writes, vec![audit])
        .await
    {
        Ok(()) => {}
        // Another enrollment of this name (in any case) won the race, or
        // used the approval first.
        Err(rampart_store::StoreError::Conflict(_)) => return Err(name_taken(&record.name)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(event = "device.enrolled", tenant = %tenant_id, device = %record.name, status = %response.enrollment.status, action, "device enrolled");
    Ok(Json(response))
}

fn attestation_invalid(message: impl Into<String>) -> ApiError {
    coded(
        StatusCode::UNAUTHORIZED,
        codes::ATTESTATION_INVALID,
        message,
    )
}

/// `POST /device/v1/reattest`: the device proves possession of its
/// enrolled key and gets a new certificate for a new key.
///
/// The key is accepted when it is the one on record for the device, or the
/// key of a certificate the tenant CA issued for this device id that is not
/// older than the one on record (expired or not: a device offline longer
/// than its certificate's lifetime, or a database restored from before a
/// renewal). A deleted device gets its signed offboarding notice; a device
/// the server has no trace of (restored from before it enrolled) is
/// recorded again under its id when its certificate proves it.
pub async fn reattest(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ReattestRequest>,
) -> Result<Json<EnrollResponse>, DeviceRejection> {
    let now = state.clock.now();
    let name = check_device_name(&req.device_name)?;
    let tenant_id = req.tenant_id.clone();
    if state.tenant_name(&tenant_id).await?.is_none() {
        return Err(attestation_invalid("unknown tenant").into());
    }
    let secrets = state
        .store
        .tenant_secrets(&tenant_id)
        .await?
        .ok_or_else(|| attestation_invalid("the tenant has no CA"))?;
    let certified = match &req.certificate_pem {
        Some(pem) => {
            let c = rampart_pki::certified_device_key(&secrets.ca_cert_pem, pem)
                .map_err(|e| attestation_invalid(format!("certificate_pem: {e}")))?;
            if c.identity.tenant_id != tenant_id || c.identity.device_id != req.device_id {
                return Err(attestation_invalid("certificate_pem names another device").into());
            }
            if c.public_key != req.public_key.trim().to_ascii_lowercase() {
                return Err(attestation_invalid("public_key is not the certificate's key").into());
            }
            Some(c)
        }
        None => None,
    };
    let message = rampart_pki::attestation_message(&tenant_id, &req.device_id, &req.csr_pem);
    rampart_pki::verify_with_public_key(&req.public_key, &message, &req.signature)
        .map_err(|e| attestation_invalid(format!("signature: {e}")))?;
    let key_sha256 = certified.as_ref().map_or_else(
        || spki_sha256(&req.public_key.trim().to_ascii_lowercase()),
        |c| c.key_sha256.clone(),
    );
    let existing = state.store.device_by_id(&tenant_id, &req.device_id).await?;
    let (record, write) = match existing {
        Some(d) => {
            let key_on_record = d.key_sha256.as_deref() == Some(key_sha256.as_str());
            let cert_not_older = certified.as_ref().is_some_and(|c| {
                d.cert_serial.as_deref() == Some(c.identity.serial_hex.as_str())
                    || d.cert_not_after
                        .is_none_or(|known| c.identity.not_after > known)
            });
            if !key_on_record && !cert_not_older {
                return Err(coded(
                    StatusCode::UNAUTHORIZED,
                    codes::CERTIFICATE_SUPERSEDED,
                    "this key is not the device's current key: a newer certificate was issued to it; an administrator can approve a re-enrollment (`rampart device reenroll NAME`)",
                )
                .into());
            }
            (d, None)
        }
        None => {
            if state
                .store
                .device_tombstone(&tenant_id, &req.device_id)
                .await?
                .is_some()
            {
                return Err(super::gone(&state, &tenant_id, &req.device_id).await);
            }
            if certified.is_none() {
                return Err(attestation_invalid(
                    "the server has no record of this device: only its certificate can prove it",
                )
                .into());
            }
            if let Some(other) = state.store.device(&tenant_id, &name).await? {
                return Err(name_taken(&other.name).into());
            }
            (
                blank_device(req.device_id.clone(), name.clone(), now),
                Some(()),
            )
        }
    };
    let Issued { record, response } = issue(
        &state,
        &tenant_id,
        record,
        &req.csr_pem,
        &req.facts,
        &req.survey,
        now,
    )
    .await?;
    let write = match write {
        Some(()) => Write::EnrollDevice(record.clone()),
        None => Write::PutDevice(record.clone()),
    };
    let audit = device_audit(
        &record.name,
        "device.reattest",
        Some(
            serde_json::json!({ "id": record.id, "with": if certified.is_some() { "certificate" } else { "enrolled key" } }),
        ),
    );
    match state
        .store
        .write(&tenant_id, now, vec![write], vec![audit])
        .await
    {
        Ok(()) => {}
        Err(rampart_store::StoreError::Conflict(_)) => return Err(name_taken(&record.name).into()),
        Err(e) => return Err(ApiError::from(e).into()),
    }
    tracing::info!(tenant = %tenant_id, device = %record.name, "device re-attested");
    Ok(Json(response))
}

/// Hex SHA-256 of a hex SubjectPublicKeyInfo (already checked to parse).
fn spki_sha256(public_key_hex: &str) -> String {
    let bytes: Vec<u8> = (0..public_key_hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(public_key_hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    rampart_pki::key_sha256(&bytes)
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
    record.conditions = stored_conditions(&facts.conditions);
}

/// The most conditions one device keeps.
const MAX_CONDITIONS: usize = 32;

/// The conditions an agent reported, as stored: stable codes only (lower
/// case, digits and `_`, at most 64 characters), sorted, each once, at most
/// [`MAX_CONDITIONS`]; anything else an agent sends is dropped, not stored.
fn stored_conditions(reported: &[String]) -> Vec<String> {
    let mut codes: Vec<String> = reported
        .iter()
        .filter(|c| {
            (1..=64).contains(&c.len())
                && c.starts_with(|ch: char| ch.is_ascii_lowercase())
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        })
        .cloned()
        .collect();
    codes.sort();
    codes.dedup();
    codes.truncate(MAX_CONDITIONS);
    codes
}

/// The device's resolution now, from the cached policy set.
async fn current_resolution(
    state: &AppState,
    tenant: &str,
    record: &DeviceRecord,
) -> ApiResult<Arc<Resolution>> {
    let fleet = state.policies.get(state, tenant).await?;
    fleet.resolve_cached(record).ok_or_else(|| {
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
) -> Result<Json<CheckInResponse>, DeviceRejection> {
    let _busy = state.hub.busy();
    crate::metrics::get().check_ins.inc();
    let now = state.clock.now();
    let tenant = device.tenant_id.clone();
    let mut record = device.record;
    let fleet = state.policies.get(&state, &tenant).await?;
    // Tags from the agent's configuration are added to the ones the
    // administrators set; an agent never removes an administrator's tag.
    let reported = check_tags("facts.tags", &req.facts.tags).map_err(ApiError::Validation)?;
    let tags = normalize_tags(record.tags.iter().cloned().chain(reported).collect());
    let enrollment = enrollment_state(&req.facts, &req.survey, &tags, &fleet.settings);
    let before = record.clone();
    apply_facts(&mut record, &req.facts, &tags, &enrollment, now);
    let mut writes = Vec::new();
    let facts_changed = DeviceRecord {
        last_check_in: before.last_check_in,
        ..record.clone()
    } != before;
    let resolution = current_resolution(&state, &tenant, &record).await?;
    let (version, digest) = next_issue(
        record.issued_version,
        record.issued_digest.as_deref(),
        &resolution.digest,
        req.version,
        req.digest.as_deref(),
    );
    if version != record.issued_version || record.issued_digest.as_deref() != Some(digest) {
        record.issued_version = version;
        record.issued_digest = Some(digest.to_string());
        writes.push(Write::SetIssuedPolicy {
            name: record.name.clone(),
            version,
            digest: digest.to_string(),
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
                conditions: record.conditions.clone(),
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
            Err(e) => return Err(ApiError::from(e).into()),
        }
    }
    let (policy, key_announcements) = if req.digest.as_deref() == Some(resolution.digest.as_str()) {
        (None, Vec::new())
    } else {
        let agent_key = req.policy_key.as_deref();
        let (signed, announcements) =
            sign_policy(&state, &tenant, &record, &resolution, agent_key, now).await?;
        (Some(signed), announcements)
    };
    Ok(Json(CheckInResponse {
        enrollment,
        policy,
        key_announcements,
    }))
}

/// The version and digest to issue, given what was issued last, the
/// current digest and what the agent says it holds. Versions never go
/// backwards for an agent: after a database restore the server may
/// remember an older version than the agent holds, and issuing at or below
/// it would be refused forever, so the next version is above both.
pub fn next_issue<'a>(
    issued_version: u64,
    issued_digest: Option<&str>,
    current: &'a str,
    held_version: Option<u64>,
    held_digest: Option<&str>,
) -> (u64, &'a str) {
    let mut version = issued_version;
    if issued_digest != Some(current) {
        version += 1;
    }
    let held = held_version.unwrap_or(0);
    if held_digest == Some(current) {
        // The agent holds the current policy: remember its version.
        version = version.max(held);
    } else if held >= version {
        version = held + 1;
    }
    (version, current)
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

/// Tamper events copied into the audit entry of one report; the rest are
/// counted.
const TAMPER_EVENTS_AUDITED: usize = 10;

fn unprocessable(code: &'static str, message: String) -> ApiError {
    coded(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// `POST /device/v1/status`: checks the report against what the device was
/// issued, stores the changed rows, audits tamper events (one entry per
/// report, however many it carries), then acknowledges.
pub async fn status(
    State(state): State<AppState>,
    device: DevicePrincipal,
    JsonBody(report): JsonBody<StatusReport>,
) -> Result<Json<StatusAck>, DeviceRejection> {
    let _busy = state.hub.busy();
    let now = state.clock.now();
    if report.tamper_events.len() > MAX_TAMPER_EVENTS_PER_REPORT {
        return Err(unprocessable(
            codes::TOO_MANY_TAMPER_EVENTS,
            format!(
                "tamper_events: {} events in one report; at most {MAX_TAMPER_EVENTS_PER_REPORT} are allowed (count the rest in loss.tamper_events_dropped)",
                report.tamper_events.len()
            ),
        )
        .into());
    }
    if report.statuses.len() > MAX_STATUSES_PER_REPORT {
        return Err(unprocessable(
            codes::TOO_MANY_STATUSES,
            format!(
                "statuses: {} rows in one report; at most {MAX_STATUSES_PER_REPORT} are allowed",
                report.statuses.len()
            ),
        )
        .into());
    }
    let mut errors = Vec::new();
    for (i, s) in report.statuses.iter().enumerate() {
        if !SETTING_STATUSES.contains(&s.status.as_str()) {
            errors.push(FieldError::new(
                format!("statuses[{i}].status"),
                format!(
                    "unknown status {:?}; expected one of {}",
                    s.status,
                    SETTING_STATUSES.join(", ")
                ),
            ));
        }
        if let Some(backend) = &s.backend {
            if !BACKENDS.contains(&backend.as_str()) {
                errors.push(FieldError::new(
                    format!("statuses[{i}].backend"),
                    format!(
                        "unknown backend {backend:?}; expected one of {}",
                        BACKENDS.join(", ")
                    ),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors).into());
    }
    // A report may only speak of settings the device was issued: those of
    // its current policy when it reports on it, else (a report delayed in
    // the outbox) settings that exist at all.
    let resolution = current_resolution(&state, &device.tenant_id, &device.record).await?;
    let issued: std::collections::BTreeSet<&str> = if resolution.digest == report.digest {
        resolution
            .settings
            .iter()
            .map(|s| s.setting.as_str())
            .chain(resolution.conflicts.iter().map(|c| c.setting.as_str()))
            .chain(resolution.not_applicable.iter().map(|n| n.setting.as_str()))
            .collect()
    } else {
        state.catalog.iter().map(|s| s.id.as_str()).collect()
    };
    let strays: Vec<String> = report
        .statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| !issued.contains(s.setting.as_str()))
        .map(|(i, s)| format!("statuses[{i}].setting {:?}", s.setting))
        .collect();
    if !strays.is_empty() {
        let shown: Vec<_> = strays.iter().take(5).cloned().collect();
        return Err(unprocessable(
            codes::SETTING_NOT_ISSUED,
            format!(
                "{} status rows are about settings this device was not issued: {}{}",
                strays.len(),
                shown.join(", "),
                if strays.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        )
        .into());
    }
    let rows: Vec<StatusRecord> = report
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
            backend: s.backend.clone(),
            digest: report.digest.clone(),
            updated_at: now,
        })
        .collect();
    let mut entries = Vec::new();
    let dropped = report.loss.as_ref().map_or(0, |l| l.tamper_events_dropped);
    if !report.tamper_events.is_empty() || dropped > 0 {
        let total = report.tamper_events.len() as u64 + dropped;
        let events: Vec<serde_json::Value> = report
            .tamper_events
            .iter()
            .take(TAMPER_EVENTS_AUDITED)
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect();
        entries.push(device_audit(
            &device.record.name,
            TAMPER_ACTION,
            Some(serde_json::json!({ "count": total, "events": events, "report_id": report.report_id })),
        ));
    }
    if let Some(loss) = report.loss.as_ref().filter(|l| l.reports_coalesced > 0) {
        entries.push(device_audit(
            &device.record.name,
            "device.report_loss",
            Some(serde_json::json!({ "reports_coalesced": loss.reports_coalesced, "tamper_events_dropped": loss.tamper_events_dropped })),
        ));
    }
    let mut writes = Vec::new();
    if device.record.applied_digest.as_deref() != Some(report.digest.as_str())
        || device.record.policy_version != Some(report.version)
    {
        writes.push(Write::SetAppliedPolicy {
            name: device.record.name.clone(),
            digest: Some(report.digest.clone()),
            version: Some(report.version),
        });
    }
    // One transaction: the statuses, the policy applied and the audit.
    let changed = state
        .store
        .record_report(
            &device.tenant_id,
            &device.record.name,
            rows,
            now,
            writes,
            entries,
        )
        .await?;
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
                key_sha256: Some(issued.key_sha256.clone()),
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
            vec![Write::DeleteDevice {
                name: name.clone(),
                reason: "offboarded on the device".into(),
            }],
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
