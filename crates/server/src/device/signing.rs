//! What the server signs with a tenant's policy key: the effective policy a
//! device is issued, the notice that tells a deleted device to stop
//! managing, and — when the key is rotated — the announcement of the next
//! key, signed with the one it replaces. All are sent as the exact JSON
//! text signed, so the agent verifies the bytes it received.

use rampart_core::resolve::Resolution;
use rampart_proto::device::{
    KeyAnnouncement, KeyAnnouncementPayload, NoticePayload, OffboardNotice, PolicyPayload,
    SignedPolicy, ANNOUNCE_POLICY_KEY, NOTICE_OFFBOARD,
};
use rampart_store::{DeviceRecord, NewAudit, StoreError, TenantSecrets, Write};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The tenant's key material (the policy key's secret half opened).
async fn secrets(state: &AppState, tenant: &str) -> ApiResult<TenantSecrets> {
    state
        .store
        .tenant_secrets(tenant)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("tenant {tenant} has no signing key")))
}

/// `payload` as JSON text and its signature with `secret`.
fn signed_text(secret: &str, payload: &impl Serialize) -> ApiResult<(String, String)> {
    let text = serde_json::to_string(payload).map_err(|e| ApiError::Internal(e.to_string()))?;
    let signature = rampart_pki::sign(secret, text.as_bytes())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((text, signature))
}

/// The stored announcements, parsed; a broken one is a server fault, not
/// something to send a device.
fn announcements(secrets: &TenantSecrets) -> ApiResult<Vec<KeyAnnouncement>> {
    secrets
        .key_announcements
        .iter()
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| ApiError::Internal(format!("a stored key announcement: {e}")))
        })
        .collect()
}

/// The announcements a device holding `agent_key` needs: none when it
/// holds the current key, else all of them (it follows the chain from its
/// own key, and the list stays short: one entry per rotation).
fn announcements_for(
    secrets: &TenantSecrets,
    agent_key: Option<&str>,
) -> ApiResult<Vec<KeyAnnouncement>> {
    if agent_key == Some(secrets.verify_key.as_str()) {
        return Ok(Vec::new());
    }
    announcements(secrets)
}

/// The device's effective policy at its issued version, signed, and the
/// key announcements a device holding `agent_key` needs to verify it.
pub async fn sign_policy(
    state: &AppState,
    tenant: &str,
    record: &DeviceRecord,
    resolution: &Resolution,
    agent_key: Option<&str>,
    now: i64,
) -> ApiResult<(SignedPolicy, Vec<KeyAnnouncement>)> {
    let payload = PolicyPayload {
        tenant_id: tenant.to_string(),
        device_id: record.id.clone(),
        version: record.issued_version,
        digest: resolution.digest.clone(),
        issued_at: now,
        resolution: serde_json::to_value(resolution)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let secrets = secrets(state, tenant).await?;
    let (payload, signature) = signed_text(&secrets.signing_key, &payload)?;
    Ok((
        SignedPolicy { payload, signature },
        announcements_for(&secrets, agent_key)?,
    ))
}

/// A notice telling device `device_id` of `tenant` to stop managing, with
/// every key announcement (the device's key is not known here).
pub async fn sign_offboard_notice(
    state: &AppState,
    tenant: &str,
    device_id: &str,
    reason: &str,
    now: i64,
) -> ApiResult<(OffboardNotice, Vec<KeyAnnouncement>)> {
    let payload = NoticePayload {
        kind: NOTICE_OFFBOARD.to_string(),
        tenant_id: tenant.to_string(),
        device_id: device_id.to_string(),
        issued_at: now,
        reason: reason.to_string(),
    };
    let secrets = secrets(state, tenant).await?;
    let (payload, signature) = signed_text(&secrets.signing_key, &payload)?;
    Ok((
        OffboardNotice { payload, signature },
        announcements(&secrets)?,
    ))
}

/// The tenant's current policy key and how many rotations led to it.
pub struct PolicyKey {
    pub key: String,
    pub generation: u64,
}

pub async fn policy_key(state: &AppState, tenant: &str) -> ApiResult<PolicyKey> {
    let secrets = secrets(state, tenant).await?;
    Ok(PolicyKey {
        generation: secrets.key_announcements.len() as u64,
        key: secrets.verify_key,
    })
}

/// Replaces the tenant's policy-signing key. The new public key is
/// announced in a message signed with the old secret key, which is then
/// dropped: agents accept the new key on the strength of the old one, and
/// nothing signed with the old key can be made any more. Refused (409)
/// when another rotation won the race.
pub async fn rotate_policy_key(
    state: &AppState,
    tenant: &str,
    audit: impl FnOnce(&str, &str, u64) -> NewAudit,
    now: i64,
) -> ApiResult<PolicyKey> {
    let current = secrets(state, tenant).await?;
    let next = rampart_pki::new_signing_key().map_err(|e| ApiError::Internal(e.to_string()))?;
    let generation = current.key_announcements.len() as u64 + 1;
    let payload = KeyAnnouncementPayload {
        kind: ANNOUNCE_POLICY_KEY.to_string(),
        tenant_id: tenant.to_string(),
        previous_key: current.verify_key.clone(),
        key: next.public_hex.clone(),
        generation,
        issued_at: now,
    };
    let (payload, signature) = signed_text(&current.signing_key, &payload)?;
    let announcement = serde_json::to_string(&KeyAnnouncement { payload, signature })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut key_announcements = current.key_announcements.clone();
    key_announcements.push(announcement);
    let written = state
        .store
        .write(
            tenant,
            now,
            vec![Write::RotatePolicyKey {
                expected_verify_key: current.verify_key.clone(),
                signing_key: next.secret_hex,
                verify_key: next.public_hex.clone(),
                key_announcements,
            }],
            vec![audit(&current.verify_key, &next.public_hex, generation)],
        )
        .await;
    match written {
        Ok(()) => Ok(PolicyKey {
            key: next.public_hex,
            generation,
        }),
        Err(StoreError::Conflict(message)) => Err(ApiError::Conflict(message)),
        Err(e) => Err(e.into()),
    }
}
