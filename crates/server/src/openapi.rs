//! The OpenAPI document, generated from the handlers' annotations and the
//! wire types. `openapi.json` at the repository root is this document,
//! committed; a test fails when the two differ.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{admin, catalog, changes, devices, groups, onboarding, policies, reports, tenant};

#[derive(OpenApi)]
#[openapi(
    info(title = "Rampart admin API", description = "Endpoint security settings management: devices, groups, policies, tenant settings, reports and the audit log."),
    paths(
        tenant::whoami, tenant::show, tenant::update,
        devices::list, devices::show, devices::set_tags, devices::delete, devices::sync, devices::reenroll, devices::effective,
        groups::list, groups::create, groups::preview, groups::show, groups::update, groups::delete, groups::members,
        policies::list, policies::create, policies::show, policies::update, policies::delete, policies::versions,
        catalog::list, catalog::show,
        changes::preview, changes::apply,
        reports::policy, reports::setting, reports::device,
        admin::audit_log, admin::list_tokens, admin::create_token, admin::delete_token,
        admin::list_users, admin::create_user, admin::update_user, admin::delete_user, admin::login, admin::logout,
        onboarding::create, onboarding::list, onboarding::revoke,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON with a trailing newline, as committed.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
