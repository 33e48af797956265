//! The OpenAPI document, generated from the handlers' annotations and the
//! wire types. `openapi.json` at the repository root is this document,
//! committed; a test fails when the two differ.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{
    admin, catalog, changes, devices, groups, onboarding, policies, reports, rollouts, tenant,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Rampart admin API", description = "Endpoint security settings management: devices, groups, policies, tenant settings, reports and the audit log."),
    paths(
        tenant::whoami, tenant::show, tenant::update, tenant::policy_key, tenant::rotate_policy_key,
        devices::list, devices::show, devices::set_tags, devices::delete, devices::sync, devices::reenroll, devices::effective,
        groups::list, groups::create, groups::preview, groups::show, groups::update, groups::delete, groups::members,
        policies::list, policies::create, policies::show, policies::update, policies::delete, policies::versions,
        catalog::list, catalog::show,
        changes::preview, changes::apply,
        reports::policy, reports::setting, reports::device,
        rollouts::list, rollouts::show, rollouts::pause, rollouts::resume, rollouts::advance, rollouts::abort,
        admin::audit_log, admin::list_tokens, admin::create_token, admin::delete_token,
        admin::list_users, admin::create_user, admin::update_user, admin::delete_user, admin::login, admin::logout,
        onboarding::create, onboarding::list, onboarding::revoke,
    ),
    modifiers(&BearerAuth, &ErrorResponses),
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

/// Adds the error answers every operation can give, so the document lists
/// every status the server sends (a conformance run checks it): 401 and 503
/// everywhere a token is looked up or the database read, 400/413/415 where
/// a body or query is read, 403 where a role is checked, 404 where a path
/// names an object. Operations keep the more specific descriptions they
/// declare themselves.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, ParameterIn};
        use utoipa::openapi::{RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                let Some(op) = op else { continue };
                let public = path.ends_with("/login");
                let has_body = op.request_body.is_some();
                let params = op.parameters.as_deref().unwrap_or(&[]);
                let has_query = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query));
                let has_path = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let writes = !matches!(method, HttpMethod::Get);
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(description));
                };
                if has_body
                    || has_query
                    || path.ends_with("/policies/{name}")
                    || path.ends_with("/groups/{name}")
                    || path.ends_with("/tenant/settings")
                {
                    // Also a malformed If-Match.
                    add("400", "`invalid_request`: the body or query is not what the operation reads (not JSON, not an object, a field of the wrong type)");
                }
                if !public {
                    add(
                        "401",
                        "`unauthorized`: no token, or an unknown, revoked, expired or idle one",
                    );
                }
                if writes && !public && !path.ends_with("/logout") {
                    add("403", "`forbidden`: the caller's role does not allow this");
                }
                if has_path {
                    add(
                        "404",
                        "`not_found`: the object named in the path does not exist",
                    );
                }
                if has_body {
                    add(
                        "413",
                        "`payload_too_large`: the body is larger than the server accepts",
                    );
                    add(
                        "415",
                        "`unsupported_media_type`: the body is not sent as application/json",
                    );
                }
                add("503", "`database_unavailable`: the database does not answer; retry after `Retry-After` seconds");
            }
        }
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
