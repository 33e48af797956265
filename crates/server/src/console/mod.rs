//! The web console: a single HTML page and its static assets (plain HTML, CSS
//! and JavaScript modules, no build step), embedded in the binary and served
//! at `/` beside the admin API, which the page calls with a session token.
//!
//! Every response carries a strict Content-Security-Policy: scripts, styles
//! and connections come from this origin only, nothing inline runs, and the
//! page cannot be framed. The page holds no secret of its own; what a user may
//! do is decided by the API (`auth.rs`), not by what the page shows.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The policy every console response carries.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        /// Every file under `assets/` but `index.html`, by its path there.
        pub const ASSETS: &[(&str, &[u8])] = &[
            $(($path, include_bytes!(concat!("assets/", $path)))),*
        ];
    };
}

assets!(
    "app.css",
    "favicon.svg",
    "js/app.js",
    "js/api.js",
    "js/dom.js",
    "js/format.js",
    "js/forms.js",
    "js/dialog.js",
    "js/pages/login.js",
    "js/pages/devices.js",
    "js/pages/device.js",
    "js/pages/groups.js",
    "js/pages/group_edit.js",
    "js/pages/policies.js",
    "js/pages/wizard.js",
    "js/pages/settings_form.js",
    "js/pages/policy_report.js",
    "js/pages/policy_view.js",
    "js/pages/rollout_form.js",
    "js/pages/rollout_view.js",
    "js/pages/setting_report.js",
    "js/pages/tenant.js",
    "js/pages/audit.js",
);

const INDEX_HTML: &str = include_str!("assets/index.html");

/// The content type of an asset, from its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The console's routes: `/` and `/assets/…`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(asset))
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Assets are embedded in the binary, so a new binary may change them
    // under the same name: revalidate rather than cache blindly.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index() -> Response {
    respond(
        StatusCode::OK,
        content_type("index.html"),
        INDEX_HTML.as_bytes().to_vec(),
    )
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == path) {
        Some((name, bytes)) => respond(StatusCode::OK, content_type(name), bytes.to_vec()),
        None => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_known_content_types() {
        for (name, _) in ASSETS {
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
        }
    }
}
