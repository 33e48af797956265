//! Strict input: a body of the wrong JSON type is a 400 naming the problem,
//! every error (405 and unknown routes included) has the JSON error body,
//! names are normalized and unique whatever their case, and lists have
//! limits.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A raw request: the status and the body, which must be a JSON error.
async fn raw(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(&server.admin_token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status} {path}: not a JSON body: {text:?}"));
    (status, value)
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_of_the_wrong_json_type_are_refused_with_a_json_error() {
    let server = TestServer::start().await.unwrap();
    // The fuzzer's find: an array where an object is expected made an
    // unlimited onboarding token.
    let (s, body) = raw(&server, Method::POST, "/api/v1/onboarding", Some("[]")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{body}"
    );
    assert!(server
        .admin()
        .get("/onboarding")
        .await
        .unwrap()
        .1
        .as_array()
        .unwrap()
        .is_empty());
    for text in ["\"x\"", "42", "null", "true"] {
        let (s, _) = raw(&server, Method::POST, "/api/v1/tokens", Some(text)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    }
    // A field of the wrong type is named.
    let (s, body) = raw(
        &server,
        Method::POST,
        "/api/v1/tokens",
        Some(r#"{"name": 5, "role": "read_only"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("name"),
        "{body}"
    );
    let (s, body) = raw(&server, Method::PUT, "/api/v1/policies/x", Some("[1]")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_the_json_error_body() {
    let server = TestServer::start().await.unwrap();
    for (method, path, code) in [
        (Method::DELETE, "/api/v1/catalog", "method_not_allowed"),
        (Method::PATCH, "/api/v1/policies", "method_not_allowed"),
        (Method::POST, "/healthz", "method_not_allowed"),
        (Method::GET, "/api/v1/no-such-thing", "not_found"),
        (Method::GET, "/no-such-thing", "not_found"),
    ] {
        let (s, body) = raw(&server, method.clone(), path, None).await;
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert!(s.is_client_error(), "{method} {path}: {s}");
    }
    let (s, body) = raw(&server, Method::POST, "/api/v1/policies", Some("{")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_request");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_normalized_and_unique_whatever_their_case() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let policy = |name: &str| json!({"name": name, "family": "antivirus", "platform": "linux", "settings": {}});
    let (s, body) = admin.post("/policies", &policy("  DUP1 ")).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "DUP1", "trimmed");
    let (s, body) = admin.post("/policies", &policy("dup1")).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    for bad in ["web\u{200B}01", "\u{202E}10-bew", "a\tb", "", "   "] {
        let (s, body) = admin.post("/policies", &policy(bad)).await.unwrap();
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {body}");
        assert_eq!(body["error"]["details"][0]["path"], "name", "{bad:?}");
    }
    let group = |name: &str| json!({"name": name, "rule": "os == \"linux\""});
    let (s, _) = admin.post("/groups", &group("Finance")).await.unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = admin.post("/groups", &group("FINANCE")).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT);

    let user = |name: &str| json!({"username": name, "password": "correct horse battery", "role": "read_only"});
    let (s, _) = admin.post("/users", &user("Alice")).await.unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = admin.post("/users", &user("alice")).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, body) = admin.post("/users", &user("ali\u{200D}ce")).await.unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "username");

    // Tenants, made from the command line.
    let store = server.store().unwrap();
    let now = rampart_server::clock::Clock::now(&server.clock);
    rampart_server::bootstrap::create_tenant(store.as_ref(), "Acme", now)
        .await
        .unwrap();
    assert!(
        rampart_server::bootstrap::create_tenant(store.as_ref(), "ACME", now)
            .await
            .is_err()
    );
    for bad in ["", "a\tb", "x\u{200B}"] {
        let err = rampart_server::bootstrap::create_tenant(store.as_ref(), bad, now)
            .await
            .expect_err(bad);
        assert!(err.to_string().contains("tenant name"), "{err}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_and_lists_have_limits() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let (s, body) = admin
        .put("/devices/web-01/tags", &json!({"tags": tags}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["path"], "tags");
    let (s, body) = admin
        .put(
            "/devices/web-01/tags",
            &json!({"tags": ["ok", "bad\u{200B}"]}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "tags[1]");
    let (s, body) = admin
        .put(
            "/devices/web-01/tags",
            &json!({"tags": ["Prod", "prod", " x "]}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["tags"],
        json!(["Prod", "x"]),
        "normalized and deduplicated"
    );

    let members: Vec<String> = (0..10_001).map(|i| format!("d{i}")).collect();
    let (s, body) = admin
        .post("/groups", &json!({"name": "huge", "members": members}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "members");
    server.stop().await.unwrap();
}
