//! One span per HTTP request, and one log line when it is answered.
//!
//! The span carries `request_id`, `method` and `path`, and the extractors
//! add `tenant` and `device` once they know them, so every line logged
//! while the request is handled names all of them (`--log-format json`
//! puts them at the top level). The id is the caller's `X-Request-Id` when
//! it is a short token, a new one otherwise, and is sent back in the
//! answer's `X-Request-Id` so a caller can quote it.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest caller-chosen request id kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// The admin listener's requests.
pub async fn trace_admin(request: Request, next: Next) -> Response {
    trace("admin", request, next).await
}

/// The device channel's requests.
pub async fn trace_device(request: Request, next: Next) -> Response {
    trace("device", request, next).await
}

async fn trace(listener: &'static str, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string);
    let path = request.uri().path().to_string();
    let method = request.method().to_string();
    // The route's template keeps the metrics' label values few.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %path,
        tenant = tracing::field::Empty,
        device = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    crate::metrics::observe_request(listener, &route, &method, status, seconds);
    let latency_ms = seconds * 1000.0;
    span.in_scope(|| {
        // The admin API's answers and every refusal are worth a line; a
        // device's routine check-in or a console asset only when asked for.
        if status >= 500 {
            tracing::warn!(event = "http.request", status, latency_ms, "answered");
        } else if status >= 400 || path.starts_with("/api/") {
            tracing::info!(event = "http.request", status, latency_ms, "answered");
        } else {
            tracing::debug!(event = "http.request", status, latency_ms, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A caller's id is kept only when it cannot garble a log line.
fn acceptable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Names the tenant (and device) of the request being handled in its span.
pub fn record_caller(tenant: &str, device: Option<&str>) {
    let span = tracing::Span::current();
    span.record("tenant", tenant);
    if let Some(device) = device {
        span.record("device", device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(acceptable_id("5f0c2a-01"));
        assert!(acceptable_id("trace:abc.def_1"));
        assert!(!acceptable_id(""));
        assert!(!acceptable_id("a b"));
        assert!(!acceptable_id("x\"}{\"level\":\"ERROR"));
        assert!(!acceptable_id(&"a".repeat(65)));
    }
}
