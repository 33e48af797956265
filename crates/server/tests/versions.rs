//! No lost updates: updates of policies, groups and tenant settings carry
//! the version they were based on (`If-Match`, from the `ETag` or the
//! `version` of a read), and one based on an old version is refused with
//! 412 `version_mismatch` and the current version, changing nothing.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_testkit::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A request with an optional `If-Match`; the status, the ETag and the body.
async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    if_match: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.url))
        .bearer_auth(&server.admin_token);
    if let Some(v) = if_match {
        request = request.header("if-match", v);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn policy(scan_archives: bool) -> Value {
    json!({"name": "av", "family": "antivirus", "platform": "linux",
           "settings": {"scan_archives": scan_archives}})
}

#[tokio::test(flavor = "multi_thread")]
async fn two_updates_based_on_one_version_do_not_both_succeed() {
    let server = TestServer::start().await.unwrap();
    let (s, _, _) = send(
        &server,
        Method::POST,
        "/policies",
        None,
        Some(&policy(false)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, etag, body) = send(&server, Method::GET, "/policies/av", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(body["version"], 1);

    // Alice saves first, based on version 1.
    let mut alice = policy(true);
    alice["description"] = json!("alice");
    let (s, etag, body) = send(
        &server,
        Method::PUT,
        "/policies/av",
        Some("\"1\""),
        Some(&alice),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    // Bob's change was also based on version 1: refused, with the current
    // version, and Alice's change stays.
    let mut bob = policy(false);
    bob["description"] = json!("bob");
    let (s, etag, body) = send(
        &server,
        Method::PUT,
        "/policies/av",
        Some("\"1\""),
        Some(&bob),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["error"]["code"], "version_mismatch");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("version 2"));
    let (_, _, current) = send(&server, Method::GET, "/policies/av", None, None).await;
    assert_eq!(current["description"], "alice");
    // Based on the current version, Bob's change goes through.
    let (s, _, _) = send(&server, Method::PUT, "/policies/av", Some("2"), Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    // A delete based on an old version is refused too.
    let (s, _, body) = send(&server, Method::DELETE, "/policies/av", Some("\"2\""), None).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{body}");
    let (s, _, body) = send(
        &server,
        Method::PUT,
        "/policies/av",
        Some("\"latest\""),
        Some(&bob),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("If-Match"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn of_concurrent_updates_based_on_one_version_exactly_one_wins() {
    let server = TestServer::start().await.unwrap();
    let group = |d: &str| json!({"name": "g", "description": d, "rule": "os == \"linux\""});
    let (s, _, _) = send(&server, Method::POST, "/groups", None, Some(&group("v1"))).await;
    assert_eq!(s, StatusCode::CREATED);
    let url = server.url.clone();
    let token = server.admin_token.clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (url, token, body) = (url.clone(), token.clone(), group(&format!("writer {i}")));
            tokio::spawn(async move {
                reqwest::Client::new()
                    .put(format!("{url}/api/v1/groups/g"))
                    .bearer_auth(token)
                    .header("if-match", "\"1\"")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED));
    let (_, etag, _) = send(&server, Method::GET, "/groups/g", None, None).await;
    assert_eq!(etag.as_deref(), Some("\"2\""));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_settings_updates_carry_their_version() {
    let server = TestServer::start().await.unwrap();
    let (_, etag, tenant) = send(&server, Method::GET, "/tenant", None, None).await;
    let v0 = tenant["settings_version"].as_u64().unwrap();
    assert_eq!(etag, Some(format!("\"{v0}\"")));
    let (s, _, body) = send(
        &server,
        Method::PUT,
        "/tenant/settings",
        Some(&format!("\"{v0}\"")),
        Some(&json!({"pilot_tag": "first"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["settings_version"], v0 + 1);
    let (s, etag, body) = send(
        &server,
        Method::PUT,
        "/tenant/settings",
        Some(&format!("\"{v0}\"")),
        Some(&json!({"pilot_tag": "second"})),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["error"]["code"], "version_mismatch");
    assert_eq!(etag, Some(format!("\"{}\"", v0 + 1)));
    let (_, _, tenant) = send(&server, Method::GET, "/tenant", None, None).await;
    assert_eq!(tenant["settings"]["pilot_tag"], "first");
    server.stop().await.unwrap();
}

/// `apply` computes its plan from what it read; another administrator's
/// change landing before its write must fail the apply (nothing written)
/// with a message saying so, not be overwritten. On PostgreSQL the test
/// holds the policy's row lock, so the apply's write waits, then commits
/// "the other change" and lets the apply continue.
#[tokio::test(flavor = "multi_thread")]
async fn apply_overtaken_by_another_change_applies_nothing_and_says_so() {
    use sqlx::{Connection, Executor, PgConnection};
    use std::time::{Duration, Instant};

    let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
    let Ok(base) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        assert!(!required, "RAMPART_TEST_POSTGRES_URL is not set");
        eprintln!("skipped: set RAMPART_TEST_POSTGRES_URL");
        return;
    };
    let db = format!("rampart_apply_race_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&base).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .unwrap();
    let url = format!(
        "{}/{db}",
        base.rsplit_once('/')
            .map_or(base.as_str(), |(head, _)| head)
    );
    let server = TestServer::start_with(rampart_testkit::Options {
        database_url: Some(url.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let (s, _, _) = send(
        &server,
        Method::POST,
        "/policies",
        None,
        Some(&policy(false)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, _, tenant) = send(&server, Method::GET, "/tenant", None, None).await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();

    // Someone else's change, in progress: the row is locked.
    let mut other = PgConnection::connect(&url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT 1 FROM objects WHERE tenant_id = $1 AND name = 'av' FOR UPDATE")
        .bind(&tenant_id)
        .execute(&mut other)
        .await
        .unwrap();
    let mut doc = policy(true);
    doc["kind"] = json!("Policy");
    let apply = {
        let (url, token) = (server.url.clone(), server.admin_token.clone());
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/apply"))
                .bearer_auth(token)
                .json(&json!({"documents": [doc]}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    // Wait until the apply's write waits on the lock.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&db)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the apply never reached its write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other change lands as version 2.
    sqlx::query(
        "UPDATE objects SET last_version = 2, current_version = 2 \
         WHERE tenant_id = $1 AND kind = 'policy' AND name = 'av'",
    )
    .bind(&tenant_id)
    .execute(&mut other)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO object_versions (tenant_id, kind, name, version, doc, modified_at, modified_by) \
         SELECT tenant_id, kind, name, 2, doc, modified_at, 'user:bob' FROM object_versions \
         WHERE tenant_id = $1 AND kind = 'policy' AND name = 'av' AND version = 1",
    )
    .bind(&tenant_id)
    .execute(&mut other)
    .await
    .unwrap();
    other.execute("COMMIT").await.unwrap();

    let (status, body) = apply.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "version_mismatch");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was applied"), "{message}");
    let (_, _, current) = send(&server, Method::GET, "/policies/av", None, None).await;
    assert_eq!(current["version"], 2);
    assert_eq!(current["modified_by"], "user:bob");
    assert_eq!(
        current["settings"]["scan_archives"], false,
        "the apply wrote nothing"
    );

    let _ = other.close().await;
    server.stop().await.unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
