//! Per-device request limits on the device channel: a token bucket per
//! client certificate. A device over its limit gets 429 `rate_limited` with
//! `Retry-After`, so one device — broken or hostile — cannot take the
//! server's time from the rest of the fleet. Calls without a certificate
//! (enrollment, re-attestation) are not limited by source address: many
//! devices share one behind NAT, and those calls cost a token or a
//! signature check before any work.

use std::collections::HashMap;
#[cfg(test)]
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_proto::device::codes;
use sha2::{Digest, Sha256};

use crate::device::PeerCert;
use crate::error::ApiError;

/// Who a bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Caller {
    Certificate([u8; 32]),
    #[cfg(test)]
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one listener.
#[derive(Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<Caller, Bucket>>>,
}

/// Buckets kept before full ones are swept out.
const SWEEP_AT: usize = 50_000;

impl RateLimiter {
    /// `per_minute` requests a minute, with a burst of as many.
    pub fn per_minute(per_minute: u32) -> RateLimiter {
        let per_minute = f64::from(per_minute.max(1));
        RateLimiter {
            per_second: per_minute / 60.0,
            burst: per_minute,
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `caller`; when there is none, how long until there
    /// is.
    fn take(&self, caller: Caller, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(caller).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

/// The middleware: refuses a request over its caller's limit.
pub async fn limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let caller = request
        .extensions()
        .get::<PeerCert>()
        .and_then(|p| p.0.as_ref())
        .map(|der| Caller::Certificate(Sha256::digest(der).into()));
    if let Some(caller) = caller {
        if let Err(wait) = limiter.take(caller, Instant::now()) {
            let secs = wait.as_secs().max(1);
            let mut response = ApiError::Coded {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: codes::RATE_LIMITED,
                message: format!("too many requests from this device; try again in {secs} s"),
            }
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let limiter = RateLimiter::per_minute(60);
        let me = Caller::Address(IpAddr::from([127, 0, 0, 1]));
        let other = Caller::Address(IpAddr::from([127, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.take(me.clone(), t0).unwrap();
        }
        let wait = limiter.take(me.clone(), t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another caller has its own bucket.
        limiter.take(other, t0).unwrap();
        // One token a second comes back.
        limiter
            .take(me.clone(), t0 + Duration::from_millis(1100))
            .unwrap();
        assert!(limiter.take(me, t0 + Duration::from_millis(1200)).is_err());
    }
}
