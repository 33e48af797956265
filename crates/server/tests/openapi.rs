//! The committed OpenAPI document matches the code, and names every route of
//! the route table.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_testkit::repo_path;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = rampart_server::openapi::document();
    let path = repo_path("openapi.json");
    if std::env::var_os("RAMPART_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is stale; regenerate it with: RAMPART_UPDATE_OPENAPI=1 cargo test -p rampart-server --test openapi"
    );
}

/// `(method, path)` pairs of `router.rs`, read from its source.
fn routes_in_router() -> Vec<(String, String)> {
    let source = std::fs::read_to_string(repo_path("crates/server/src/router.rs")).unwrap();
    let mut out = Vec::new();
    // Each `.route("PATH", handlers)` call, however rustfmt wrapped it, runs
    // until the next `.route(`, `.fallback(` or `.layer(`.
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    for chunk in compact.split(".route(\"").skip(1) {
        let path = chunk.split('"').next().unwrap().to_string();
        let call = chunk.split(".route(").next().unwrap();
        let call = call
            .split(".fallback(")
            .next()
            .unwrap()
            .split(".layer(")
            .next()
            .unwrap();
        let handlers = call.split_once(',').unwrap().1;
        let compact = handlers;
        for method in ["get", "post", "put", "delete"] {
            let open = format!("{method}(");
            if compact.starts_with(&open) || compact.contains(&format!(".{open}")) {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_api_route_is_documented_and_every_documented_route_exists() {
    let doc: serde_json::Value =
        serde_json::from_str(&rampart_server::openapi::document()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = routes_in_router()
        .into_iter()
        .filter(|(_, p)| !matches!(p.as_str(), "/openapi.json" | "/healthz" | "/readyz"))
        .map(|(m, p)| (m, format!("/api/v1{p}")))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
}
