//! The device channel (`/device/v1`, mutual TLS): enrollment, check-in, the
//! long-poll push, status reports, certificate renewal and offboarding. The
//! protocol is described in `docs/device-channel.md`.

pub mod api;
pub mod enrollment;
pub mod hub;
pub mod last_seen;
pub mod rate_limit;
pub mod signing;
pub mod trust;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rampart_proto::device::{codes, KeyAnnouncement, OffboardNotice, OffboardedBody};
use rampart_proto::ErrorDetail;
use rampart_store::DeviceRecord;

use crate::error::ApiError;
use crate::state::AppState;

/// The DER of the client certificate the TLS handshake verified, if any; set
/// by the listener on every request of the connection.
#[derive(Clone, Debug, Default)]
pub struct PeerCert(pub Option<Vec<u8>>);

/// A device, authenticated by its certificate and still current.
pub struct DevicePrincipal {
    pub tenant_id: String,
    pub record: DeviceRecord,
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Coded {
        status: StatusCode::UNAUTHORIZED,
        code,
        message: message.into(),
    }
}

/// Why a device-channel call was refused: an ordinary error, or the signed
/// notice a deleted device gets instead (410 with [`OffboardedBody`]).
#[derive(Debug)]
pub enum DeviceRejection {
    Api(ApiError),
    Offboarded {
        message: String,
        notice: OffboardNotice,
        key_announcements: Vec<KeyAnnouncement>,
    },
}

impl From<ApiError> for DeviceRejection {
    fn from(e: ApiError) -> Self {
        DeviceRejection::Api(e)
    }
}

impl From<rampart_store::StoreError> for DeviceRejection {
    fn from(e: rampart_store::StoreError) -> Self {
        DeviceRejection::Api(e.into())
    }
}

impl IntoResponse for DeviceRejection {
    fn into_response(self) -> Response {
        match self {
            DeviceRejection::Api(e) => e.into_response(),
            DeviceRejection::Offboarded {
                message,
                notice,
                key_announcements,
            } => {
                let body = OffboardedBody {
                    error: ErrorDetail {
                        code: codes::DEVICE_OFFBOARDED.to_string(),
                        message,
                        details: Vec::new(),
                    },
                    notice,
                    key_announcements,
                };
                (StatusCode::GONE, Json(body)).into_response()
            }
        }
    }
}

/// The answer to a certificate of a device that is no longer there: the
/// signed notice when it was deleted, else `device_unknown` (the server
/// forgot it, e.g. a database restored from before it enrolled), which
/// the agent answers by re-attesting.
pub async fn gone(state: &AppState, tenant: &str, device_id: &str) -> DeviceRejection {
    match state.store.device_tombstone(tenant, device_id).await {
        Ok(Some(t)) => {
            match signing::sign_offboard_notice(
                state,
                tenant,
                device_id,
                &t.reason,
                state.clock.now(),
            )
            .await
            {
                Ok((notice, key_announcements)) => DeviceRejection::Offboarded {
                    message: format!(
                        "the device {:?} was removed from the tenant ({}); stop managing it",
                        t.name, t.reason
                    ),
                    notice,
                    key_announcements,
                },
                Err(e) => e.into(),
            }
        }
        Ok(None) => refused(
            codes::DEVICE_UNKNOWN,
            "this server has no record of the device; re-attest with the enrolled key",
        )
        .into(),
        Err(e) => e.into(),
    }
}

impl FromRequestParts<AppState> for DevicePrincipal {
    type Rejection = DeviceRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let der = parts
            .extensions
            .get::<PeerCert>()
            .and_then(|p| p.0.clone())
            .ok_or_else(|| {
                ApiError::Unauthorized("this call needs the device's client certificate".into())
            })?;
        let id = rampart_pki::peer_identity(&der).map_err(|e| {
            ApiError::Unauthorized(format!(
                "the client certificate is not a Rampart device certificate: {e}"
            ))
        })?;
        let Some(record) = state
            .store
            .device_by_id(&id.tenant_id, &id.device_id)
            .await?
        else {
            return Err(gone(state, &id.tenant_id, &id.device_id).await);
        };
        // Only the newest certificate counts: renewal and re-enrollment
        // supersede the old one at once. A certificate newer than the one on
        // record means the server forgot a renewal (a restored database):
        // the device proves itself again rather than being cut off.
        if record.cert_serial.as_deref() != Some(id.serial_hex.as_str()) {
            let newer = record
                .cert_not_after
                .is_none_or(|known| id.not_after > known);
            return Err(if newer {
                refused(
                    codes::CERTIFICATE_UNKNOWN,
                    "this certificate is newer than the one on record (was the server's database restored?); re-attest with the enrolled key",
                )
            } else {
                refused(
                    codes::CERTIFICATE_SUPERSEDED,
                    "a newer certificate was issued to this device; this one no longer counts",
                )
            }
            .into());
        }
        crate::request_log::record_caller(&id.tenant_id, Some(&record.name));
        Ok(DevicePrincipal {
            tenant_id: id.tenant_id,
            record,
        })
    }
}

/// Every route of the device channel.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/device/v1/enroll", post(api::enroll))
        .route("/device/v1/reattest", post(api::reattest))
        .route("/device/v1/checkin", post(api::checkin))
        .route("/device/v1/wait", get(api::wait))
        .route("/device/v1/status", post(api::status))
        .route("/device/v1/renew", post(api::renew))
        .route("/device/v1/offboard", post(api::offboard))
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::body::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn_with_state(
            rate_limit::RateLimiter::per_minute(state.device.requests_per_minute),
            rate_limit::limit,
        ))
        .layer(axum::middleware::from_fn(crate::request_log::trace_device))
        .with_state(state)
}
