//! The device channel (`/device/v1`, mutual TLS): enrollment, check-in, the
//! long-poll push, status reports, certificate renewal and offboarding. The
//! protocol is described in `docs/device-channel.md`.

pub mod api;
pub mod enrollment;
pub mod hub;
pub mod last_seen;
pub mod listener;
pub mod trust;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use rampart_proto::device::codes;
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

fn revoked(message: impl Into<String>) -> ApiError {
    ApiError::Coded {
        status: StatusCode::UNAUTHORIZED,
        code: codes::DEVICE_REVOKED,
        message: message.into(),
    }
}

impl FromRequestParts<AppState> for DevicePrincipal {
    type Rejection = ApiError;

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
        let record = state
            .store
            .device_by_id(&id.tenant_id, &id.device_id)
            .await?
            .ok_or_else(|| {
                revoked("the device was deleted or offboarded; onboard it again to manage it")
            })?;
        // Only the newest certificate counts: renewal and re-enrollment
        // supersede the old one at once.
        if record.cert_serial.as_deref() != Some(id.serial_hex.as_str()) {
            return Err(revoked("this certificate was superseded or revoked"));
        }
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
        .route("/device/v1/checkin", post(api::checkin))
        .route("/device/v1/wait", get(api::wait))
        .route("/device/v1/status", post(api::status))
        .route("/device/v1/renew", post(api::renew))
        .route("/device/v1/offboard", post(api::offboard))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::body::MAX_BODY_BYTES,
        ))
        .with_state(state)
}
