//! What the server signs with a tenant's policy key: the effective policy a
//! device is issued, and the notice that tells a deleted device to stop
//! managing. Both are sent as the exact JSON text signed, so the agent
//! verifies the bytes it received.

use rampart_core::resolve::Resolution;
use rampart_proto::device::{
    NoticePayload, OffboardNotice, PolicyPayload, SignedPolicy, NOTICE_OFFBOARD,
};
use rampart_store::DeviceRecord;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The tenant's Ed25519 policy-signing key (hex secret).
async fn signing_key(state: &AppState, tenant: &str) -> ApiResult<String> {
    Ok(state
        .store
        .tenant_secrets(tenant)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("tenant {tenant} has no signing key")))?
        .signing_key)
}

fn signed(secret: &str, text: &str) -> ApiResult<String> {
    rampart_pki::sign(secret, text.as_bytes()).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The device's effective policy at its issued version, signed.
pub async fn sign_policy(
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
    let signature = signed(&signing_key(state, tenant).await?, &text)?;
    Ok(SignedPolicy {
        payload: text,
        signature,
    })
}

/// A notice telling device `device_id` of `tenant` to stop managing.
pub async fn sign_offboard_notice(
    state: &AppState,
    tenant: &str,
    device_id: &str,
    reason: &str,
    now: i64,
) -> ApiResult<OffboardNotice> {
    let payload = NoticePayload {
        kind: NOTICE_OFFBOARD.to_string(),
        tenant_id: tenant.to_string(),
        device_id: device_id.to_string(),
        issued_at: now,
        reason: reason.to_string(),
    };
    let text = serde_json::to_string(&payload).map_err(|e| ApiError::Internal(e.to_string()))?;
    let signature = signed(&signing_key(state, tenant).await?, &text)?;
    Ok(OffboardNotice {
        payload: text,
        signature,
    })
}
