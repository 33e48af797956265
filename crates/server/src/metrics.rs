//! Prometheus metrics (OpenMetrics text) on `--metrics-listen`.
//!
//! Counters and histograms are process-wide, like the Prometheus clients'
//! default registries: the store guard, the device channel and the request
//! middleware record into them without a handle passed through every
//! layer. Gauges about the fleet (devices by state, statuses by setting) are
//! computed from the store when scraped, at most every
//! [`FLEET_REFRESH`], so a fast scraper cannot load the database.

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// The fleet gauges are recomputed at most this often.
pub const FLEET_REFRESH: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `admin` or `device`.
    pub listener: String,
    /// The route's template (`/api/v1/devices/{name}`), `unmatched` else.
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub listener: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, or the refusal's stable code.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub tenant: String,
    pub enrollment: String,
    pub managed_by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub tenant: String,
    pub setting: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `unavailable` (unreachable or too slow) or `backend`.
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub request_seconds: HistogramFamily<LatencyLabels>,
    pub check_ins: Counter,
    pub enrollments: Family<ResultLabels, Counter>,
    pub nudges: Counter,
    pub long_polls: Gauge,
    pub database_seconds: Histogram,
    pub database_errors: Family<ErrorLabels, Counter>,
    devices: Family<DeviceLabels, Gauge>,
    statuses: Family<StatusLabels, Gauge>,
    fleet_refreshed: Mutex<Option<Instant>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rampart");
        registry.register(
            "build",
            "The running build",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by listener, route, method and status",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<LatencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by listener and route",
            request_seconds.clone(),
        );
        let check_ins = Counter::default();
        registry.register("check_ins", "Device check-ins answered", check_ins.clone());
        let enrollments = Family::<ResultLabels, Counter>::default();
        registry.register(
            "enrollments",
            "Enrollment attempts, by result (ok or the refusal's code)",
            enrollments.clone(),
        );
        let nudges = Counter::default();
        registry.register(
            "nudges",
            "Devices woken from a long poll to fetch a changed policy",
            nudges.clone(),
        );
        let long_polls = Gauge::default();
        registry.register(
            "long_polls_held",
            "Device long polls waiting for a change now",
            long_polls.clone(),
        );
        let database_seconds = latency_histogram();
        registry.register(
            "database_call_duration_seconds",
            "Time of one store call",
            database_seconds.clone(),
        );
        let database_errors = Family::<ErrorLabels, Counter>::default();
        for kind in ["unavailable", "backend"] {
            drop(database_errors.get_or_create(&ErrorLabels {
                kind: kind.to_string(),
            }));
        }
        registry.register(
            "database_errors",
            "Store calls that failed, by kind",
            database_errors.clone(),
        );
        let devices = Family::<DeviceLabels, Gauge>::default();
        registry.register(
            "devices",
            "Devices by tenant, enrollment state and managing authority",
            devices.clone(),
        );
        let statuses = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "setting_statuses",
            "Reported setting statuses, by tenant, setting and status",
            statuses.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            check_ins,
            enrollments,
            nudges,
            long_polls,
            database_seconds,
            database_errors,
            devices,
            statuses,
            fleet_refreshed: Mutex::new(None),
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Recomputes the fleet gauges from the store, unless they are fresh.
    async fn refresh_fleet(&self, state: &AppState) -> rampart_store::Result<()> {
        let due = self
            .fleet_refreshed
            .lock()
            .map(|at| at.is_none_or(|at| at.elapsed() >= FLEET_REFRESH))
            .unwrap_or(true);
        if !due {
            return Ok(());
        }
        let mut devices = std::collections::HashMap::<DeviceLabels, i64>::new();
        let mut statuses = std::collections::HashMap::<StatusLabels, i64>::new();
        for tenant in state.store.tenants().await? {
            for d in state.store.devices(&tenant.id).await? {
                *devices
                    .entry(DeviceLabels {
                        tenant: tenant.name.clone(),
                        enrollment: d.enrollment_status,
                        managed_by: d.managed_by,
                    })
                    .or_default() += 1;
            }
            for s in state.store.statuses(&tenant.id).await? {
                *statuses
                    .entry(StatusLabels {
                        tenant: tenant.name.clone(),
                        setting: s.setting,
                        status: s.status,
                    })
                    .or_default() += 1;
            }
        }
        // Replaced whole, so a state no device is in any more disappears.
        self.devices.clear();
        for (labels, n) in devices {
            self.devices.get_or_create(&labels).set(n);
        }
        self.statuses.clear();
        for (labels, n) in statuses {
            self.statuses.get_or_create(&labels).set(n);
        }
        if let Ok(mut at) = self.fleet_refreshed.lock() {
            *at = Some(Instant::now());
        }
        Ok(())
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Records one answered request.
pub fn observe_request(listener: &str, route: &str, method: &str, status: u16, seconds: f64) {
    let m = get();
    m.requests
        .get_or_create(&RouteLabels {
            listener: listener.to_string(),
            route: route.to_string(),
            method: method.to_string(),
            status: status.to_string(),
        })
        .inc();
    m.request_seconds
        .get_or_create(&LatencyLabels {
            listener: listener.to_string(),
            route: route.to_string(),
        })
        .observe(seconds);
}

/// Records the outcome of one store call.
pub fn observe_store_call<T>(seconds: f64, result: &rampart_store::Result<T>) {
    let m = get();
    m.database_seconds.observe(seconds);
    // A missing record or a failed expectation is an answer, not a
    // database error.
    let kind = match result {
        Err(rampart_store::StoreError::Unavailable(_)) => "unavailable",
        Err(rampart_store::StoreError::Backend(_)) => "backend",
        _ => return,
    };
    {
        m.database_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
            })
            .inc();
    }
}

/// The metrics listener's routes: `/metrics` only.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", routing::get(scrape))
        .with_state(state)
}

async fn scrape(State(state): State<AppState>) -> Response {
    if let Err(e) = get().refresh_fleet(&state).await {
        // The process's own metrics still answer; the fleet gauges keep
        // their last values and the failure shows as a database error.
        tracing::warn!(event = "metrics.fleet_failed", error = %e, "could not count the fleet for /metrics");
    }
    match get().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
