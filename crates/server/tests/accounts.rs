//! Accounts: login throttling per username and per address, the same work
//! for unknown usernames, logins audited, users updated, disabled and
//! deleted, sessions that end when idle, API tokens that expire and record
//! their use, and a tenant that always keeps a global_admin.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rampart_testkit::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

async fn create_user(server: &TestServer, username: &str, role: &str) {
    let (s, body) = server
        .admin()
        .post(
            "/users",
            &json!({"username": username, "password": PASSWORD, "role": role}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// Logs in; returns the status, the body and the `Retry-After` header.
async fn login(
    server: &TestServer,
    username: &str,
    password: &str,
) -> (StatusCode, Value, Option<i64>) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/login", server.url))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, response.json().await.unwrap(), retry)
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_throttled_per_username_with_growing_delays() {
    let server = TestServer::start().await.unwrap();
    create_user(&server, "alice", "read_only").await;
    for _ in 0..6 {
        let (s, body, _) = login(&server, "alice", "wrong password!").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    }
    // Even the right password waits now, and is not checked.
    let (s, body, retry) = login(&server, "Alice", PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert_eq!(retry, Some(1));
    server.clock.advance(2);
    let (s, _, _) = login(&server, "alice", "wrong password!").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, retry) = login(&server, "alice", PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry, Some(2), "the delay doubles");
    server.clock.advance(3);
    let (s, body, _) = login(&server, "alice", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A success clears the count.
    let (s, _, _) = login(&server, "alice", "wrong password!").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Both outcomes are in the audit log, with the address.
    let audit = server.admin().get("/audit?limit=50").await.unwrap().1;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"user.login"), "{actions:?}");
    assert!(
        actions
            .iter()
            .filter(|a| **a == "user.login_failed")
            .count()
            >= 7,
        "{actions:?}"
    );
    let failed = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.login_failed")
        .unwrap();
    assert_eq!(failed["after"]["address"], "127.0.0.1");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_trying_many_usernames_is_throttled() {
    let server = TestServer::start().await.unwrap();
    create_user(&server, "bob", "read_only").await;
    for i in 0..21 {
        let (s, _, _) = login(&server, &format!("guess{i}"), "whatever-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _, retry) = login(&server, "bob", PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.unwrap() >= 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_proxy_addresses_come_from_x_forwarded_for() {
    let server = TestServer::start_with(rampart_testkit::Options {
        behind_tls_proxy: true,
        ..Default::default()
    })
    .await
    .unwrap();
    create_user(&server, "ivan", "read_only").await;
    let attempt = |from: &'static str, username: String, password: &'static str| {
        let url = format!("{}/api/v1/login", server.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-forwarded-for", format!("203.0.113.99, {from}"))
                .json(&json!({"username": username, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // One address sweeping usernames through the proxy is slowed down...
    for i in 0..21 {
        let s = attempt("198.51.100.7", format!("guess{i}"), "whatever-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let s = attempt("198.51.100.7", "ivan".into(), PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // ...while everyone else behind the same proxy still signs in.
    let s = attempt("198.51.100.8", "ivan".into(), PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let audit = server.admin().get("/audit?limit=5").await.unwrap().1;
    let login = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.login")
        .unwrap();
    assert_eq!(login["after"]["address"], "198.51.100.8");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_usernames_cost_the_same_work_as_wrong_passwords() {
    let server = TestServer::start().await.unwrap();
    create_user(&server, "carol", "read_only").await;
    async fn timed(server: &TestServer, username: &str) -> Duration {
        let started = Instant::now();
        let (s, _, _) = login(server, username, "not the password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        started.elapsed()
    }
    // Warm the dummy hash up.
    timed(&server, "nobody-0").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..4 {
        known.push(timed(&server, "carol").await);
        unknown.push(timed(&server, &format!("nobody-{}", i + 1)).await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[1], unknown[1]);
    assert!(
        u * 2 > k && k * 2 > u,
        "known user {k:?} and unknown user {u:?} must take about as long"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_updated_disabled_and_deleted_and_their_sessions_end() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    create_user(&server, "dave", "security_manager").await;
    let (s, body, _) = login(&server, "dave", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let session = server.client(body["token"].as_str().unwrap());
    assert_eq!(session.get("/whoami").await.unwrap().0, StatusCode::OK);

    // A new role and password end the session.
    let (s, body) = admin
        .put(
            "/users/DAVE",
            &json!({"role": "read_only", "password": "another long password"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "read_only");
    assert_eq!(
        session.get("/whoami").await.unwrap().0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&server, "dave", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, body, _) = login(&server, "dave", "another long password").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["role"], "read_only");

    // Bad input names its field and changes nothing.
    let (s, body) = admin
        .put("/users/dave", &json!({"role": "root"}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "role");
    let (s, body) = admin
        .put("/users/dave", &json!({"password": "short"}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "password");
    let (s, _) = admin
        .put("/users/dave", &json!({"colour": "red"}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = admin
        .put("/users/nobody", &json!({"disabled": true}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Disabled: the password no longer signs in.
    let (s, body) = admin
        .put("/users/dave", &json!({"disabled": true}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["disabled"], true);
    let (s, body, _) = login(&server, "dave", "another long password").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "user_disabled");

    // Deleted.
    let (s, _) = admin.delete("/users/dave").await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        login(&server, "dave", "another long password").await.0,
        StatusCode::UNAUTHORIZED
    );
    let audit = admin.get("/audit").await.unwrap().1;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"user.update") && actions.contains(&"user.delete"));
    assert!(!audit.to_string().contains("another long password"));

    // Only a global_admin manages users.
    let manager = server.client_with_role("security_manager").await.unwrap();
    let (s, _) = manager.delete("/users/anyone").await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_global_admin_cannot_be_removed_or_demoted() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let tokens = admin.get("/tokens").await.unwrap().1;
    let bootstrap = tokens[0]["id"].as_str().unwrap().to_owned();
    let (s, body) = admin.delete(&format!("/tokens/{bootstrap}")).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "last_global_admin");

    // With a global_admin user, the token may go; then the user is the last.
    create_user(&server, "erin", "global_admin").await;
    let (_, body, _) = login(&server, "erin", PASSWORD).await;
    let erin = server.client(body["token"].as_str().unwrap());
    let (s, _) = erin.delete(&format!("/tokens/{bootstrap}")).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    for change in [json!({"role": "read_only"}), json!({"disabled": true})] {
        let (s, body) = erin.put("/users/erin", &change).await.unwrap();
        assert_eq!(s, StatusCode::CONFLICT, "{change}");
        assert_eq!(body["error"]["code"], "last_global_admin");
    }
    let (s, body) = erin.delete("/users/erin").await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "last_global_admin");
    // Changes that keep the role are fine.
    let (s, _) = erin
        .put("/users/erin", &json!({"disabled": false}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    // Any change ends the user's sessions.
    assert_eq!(
        erin.get("/whoami").await.unwrap().0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body, _) = login(&server, "erin", PASSWORD).await;
    let erin = server.client(body["token"].as_str().unwrap());
    // An expired global_admin token does not count.
    let now = rampart_server::clock::Clock::now(&server.clock);
    let (s, body) = erin
        .post(
            "/tokens",
            &json!({"name": "short", "role": "global_admin", "expires_at": now + 60}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    server.clock.advance(61);
    let (_, body, _) = login(&server, "erin", PASSWORD).await;
    let erin = server.client(body["token"].as_str().unwrap());
    let (s, _) = erin
        .put("/users/erin", &json!({"role": "read_only"}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_when_idle_and_tokens_expire_and_record_their_use() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    create_user(&server, "frank", "read_only").await;
    let (_, body, _) = login(&server, "frank", PASSWORD).await;
    let session = server.client(body["token"].as_str().unwrap());
    // Used within the idle time, the session lives on.
    server
        .clock
        .advance(rampart_server::auth::SESSION_IDLE_SECONDS - 60);
    assert_eq!(session.get("/whoami").await.unwrap().0, StatusCode::OK);
    server
        .clock
        .advance(rampart_server::auth::SESSION_IDLE_SECONDS - 60);
    assert_eq!(session.get("/whoami").await.unwrap().0, StatusCode::OK);
    server
        .clock
        .advance(rampart_server::auth::SESSION_IDLE_SECONDS);
    let (s, body) = session.get("/whoami").await.unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("idle"));

    // An API token with an expiry; one in the past is refused.
    let now = rampart_server::clock::Clock::now(&server.clock);
    let (s, body) = admin
        .post(
            "/tokens",
            &json!({"name": "old", "role": "read_only", "expires_at": now - 1}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "expires_at");
    let (s, body) = admin
        .post(
            "/tokens",
            &json!({"name": "ci", "role": "read_only", "expires_at": now + 600}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let ci = server.client(body["token"].as_str().unwrap());
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(ci.get("/whoami").await.unwrap().0, StatusCode::OK);
    let listed = admin.get("/tokens").await.unwrap().1;
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert_eq!(entry["last_used_at"], json!(now));
    assert_eq!(entry["expires_at"], json!(now + 600));
    server.clock.advance(601);
    assert_eq!(ci.get("/whoami").await.unwrap().0, StatusCode::UNAUTHORIZED);

    // The purge removes both from the database.
    let state = server.store().unwrap();
    let before = state.tokens(&tenant_id(&server).await).await.unwrap().len();
    let purged = purge(&server).await;
    assert!(purged >= 2, "{purged}");
    let after = state.tokens(&tenant_id(&server).await).await.unwrap();
    assert_eq!(after.len(), before - purged as usize);
    assert!(after.iter().all(|t| t.name != "ci" && t.name != "frank"));
    server.stop().await.unwrap();
}

async fn tenant_id(server: &TestServer) -> String {
    server.admin().get("/tenant").await.unwrap().1["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn purge(server: &TestServer) -> u64 {
    let store = server.store().unwrap();
    let now = rampart_server::clock::Clock::now(&server.clock);
    store
        .purge_tokens(now, now - rampart_server::auth::SESSION_IDLE_SECONDS)
        .await
        .unwrap()
}
