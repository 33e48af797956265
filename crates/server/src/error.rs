//! API errors: every failure maps to an HTTP status and a stable code.
//!
//! The caller's mistakes are 4xx with a message that says what to fix;
//! only a failure of the server itself is a 500, and its details go to the log,
//! not to the caller.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::error::FieldError;
use rampart_proto::{ErrorBody, ErrorDetail, FieldErrorView};
use rampart_store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON, or not the expected shape.
    BadRequest(String),
    /// The body is well-formed but its content is invalid; every field error.
    Validation(Vec<FieldError>),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    Internal(String),
    /// The database does not answer: 503 with `Retry-After`; the same call
    /// may succeed in a few seconds.
    Unavailable(String),
    /// An update based on an old version (`If-Match`): 412
    /// `version_mismatch`, with the current version as `ETag`.
    VersionMismatch {
        what: String,
        current: u64,
    },
    /// Too many attempts (failed logins): 429 with `Retry-After`.
    TooManyRequests {
        message: String,
        retry_after_secs: i64,
    },
    /// A refusal with its own stable code (the device channel's
    /// `device_revoked`, `token_expired`, …).
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

/// What a 503 asks the client to wait, in seconds.
pub const RETRY_AFTER_SECS: &str = "5";

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::NotFound(format!("{} not found", what.into()))
    }

    /// The status and stable code it answers with.
    pub fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Coded { status, code, .. } => (*status, code),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
            }
            ApiError::VersionMismatch { .. } => {
                (StatusCode::PRECONDITION_FAILED, "version_mismatch")
            }
        }
    }
}

/// The answer to a known path with a method it does not have (axum's own
/// 405 has an empty body).
pub async fn method_not_allowed() -> ApiError {
    ApiError::Coded {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this path does not accept that method; see /openapi.json".into(),
    }
}

/// The answer to a path that does not exist.
pub async fn no_route() -> ApiError {
    ApiError::not_found("route")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Backend(m) => ApiError::Internal(m),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let etag = match &self {
            ApiError::VersionMismatch { current, .. } => Some(format!("\"{current}\"")),
            _ => None,
        };
        let retry_after = match &self {
            ApiError::Unavailable(_) => Some(RETRY_AFTER_SECS.to_string()),
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(retry_after_secs.max(&1).to_string()),
            _ => None,
        };
        let (message, details) = match self {
            ApiError::Validation(errors) => (
                format!(
                    "the request has {} invalid field{}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
                errors
                    .into_iter()
                    .map(|e| FieldErrorView {
                        path: e.path,
                        message: e.message,
                    })
                    .collect(),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ("the server failed; see its log".to_string(), Vec::new())
            }
            ApiError::VersionMismatch { what, current } => (
                format!(
                    "{what} was changed by someone else meanwhile and is now at version {current}; \
                     reload it, make your change again and send If-Match: \"{current}\""
                ),
                vec![FieldErrorView {
                    path: "If-Match".into(),
                    message: format!("the current version is {current}"),
                }],
            ),
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                (
                    "the database is unavailable; try again in a few seconds".to_string(),
                    Vec::new(),
                )
            }
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::TooManyRequests { message: m, .. }
            | ApiError::Coded { message: m, .. } => (m, Vec::new()),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                details,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(value) = etag.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::ETAG, value);
        }
        if let Some(value) = retry_after.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}
