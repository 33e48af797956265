//! Every HTTP route of the admin API, in one table.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::api::{
    admin, catalog, changes, devices, groups, onboarding, policies, reports, rollouts, tenant,
};
use crate::body::MAX_BODY_BYTES;
use crate::openapi;
use crate::state::AppState;
use crate::{error, health};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/whoami", get(tenant::whoami))
        .route("/tenant", get(tenant::show))
        .route("/tenant/settings", put(tenant::update))
        .route("/tenant/policy-key", get(tenant::policy_key))
        .route("/tenant/policy-key/rotate", post(tenant::rotate_policy_key))
        .route("/devices", get(devices::list))
        .route(
            "/devices/{name}",
            get(devices::show).delete(devices::delete),
        )
        .route("/devices/{name}/tags", put(devices::set_tags))
        .route("/devices/{name}/sync", post(devices::sync))
        .route("/devices/{name}/reenroll", post(devices::reenroll))
        .route("/devices/{name}/effective", get(devices::effective))
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/preview", post(groups::preview))
        .route(
            "/groups/{name}",
            get(groups::show).put(groups::update).delete(groups::delete),
        )
        .route("/groups/{name}/members", get(groups::members))
        .route("/policies", get(policies::list).post(policies::create))
        .route(
            "/policies/{name}",
            get(policies::show)
                .put(policies::update)
                .delete(policies::delete),
        )
        .route("/policies/{name}/versions", get(policies::versions))
        .route("/catalog", get(catalog::list))
        .route("/catalog/{setting}", get(catalog::show))
        .route("/preview", post(changes::preview))
        .route("/apply", post(changes::apply))
        .route("/reports/policies/{name}", get(reports::policy))
        .route("/reports/settings/{setting}", get(reports::setting))
        .route("/reports/devices/{name}", get(reports::device))
        .route("/rollouts", get(rollouts::list))
        .route("/rollouts/{policy}", get(rollouts::show))
        .route("/rollouts/{policy}/pause", post(rollouts::pause))
        .route("/rollouts/{policy}/resume", post(rollouts::resume))
        .route("/rollouts/{policy}/advance", post(rollouts::advance))
        .route("/rollouts/{policy}/abort", post(rollouts::abort))
        .route("/audit", get(admin::audit_log))
        .route("/tokens", get(admin::list_tokens).post(admin::create_token))
        .route("/tokens/{id}", delete(admin::delete_token))
        .route("/users", get(admin::list_users).post(admin::create_user))
        .route(
            "/users/{username}",
            put(admin::update_user).delete(admin::delete_user),
        )
        .route("/login", post(admin::login))
        .route("/logout", post(admin::logout))
        .route(
            "/onboarding",
            get(onboarding::list).post(onboarding::create),
        )
        .route("/onboarding/{id}", delete(onboarding::revoke))
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route);
    Router::new()
        .nest("/api/v1", api)
        .route("/openapi.json", get(openapi::serve))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .merge(crate::console::router())
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(crate::request_log::trace_admin))
        .with_state(state)
}
