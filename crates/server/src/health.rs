//! Health for load balancers and orchestrators: `/healthz` says the process
//! answers (restart it if not); `/readyz` says it can serve, that is the
//! database answers within the store timeout and holds every migration this
//! build knows (send it traffic only then).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn alive() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    match state.store.ready().await {
        Ok(()) => Ok(Json(json!({ "status": "ready" }))),
        // Not ready is a 503 whatever the reason: a schema this build does
        // not know is as unservable as a database that does not answer.
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}
