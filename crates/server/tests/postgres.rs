//! `rampart-server --database-url postgres://…`: the whole server (not just
//! the store) on PostgreSQL, chosen at run time from the URL. Runs when
//! `RAMPART_TEST_POSTGRES_URL` is set; CI sets it and
//! `RAMPART_TEST_POSTGRES_REQUIRED=1`, which turns a skip into a failure.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_testkit::{repo_path, Options, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

#[tokio::test(flavor = "multi_thread")]
async fn the_server_runs_on_postgresql_chosen_by_url() {
    let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
    let Ok(base) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        assert!(
            !required,
            "RAMPART_TEST_POSTGRES_REQUIRED=1 but RAMPART_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: set RAMPART_TEST_POSTGRES_URL to run the server on PostgreSQL");
        return;
    };
    let name = format!("rampart_server_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&base)
        .await
        .expect("PostgreSQL is reachable");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = format!(
        "{}/{name}",
        base.rsplit_once('/')
            .map_or(base.as_str(), |(head, _)| head)
    );

    let server = TestServer::start_with(Options {
        load: Some(repo_path("examples/fleet")),
        database_url: Some(url.clone()),
        ..Options::default()
    })
    .await
    .unwrap();
    let api = server.admin();
    assert_eq!(
        api.get("/devices")
            .await
            .unwrap()
            .1
            .as_array()
            .unwrap()
            .len(),
        12
    );
    let web = api.get("/devices/web-01/effective").await.unwrap().1;
    assert_eq!(web["conflicts"][0]["setting"], "pua_protection");
    let (s, _) = api.post("/policies", &json!({"name": "pg-av", "family": "antivirus", "platform": "linux", "settings": {"scan_archives": true}, "assignments": {"include": ["all-devices"]}})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .post(
            "/policies",
            &json!({"name": "pg-av", "family": "antivirus", "platform": "linux"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        api.get("/audit").await.unwrap().1[0]["action"],
        "policy.create"
    );
    // The rows are in PostgreSQL, not in a SQLite file.
    assert!(!server.data_dir.join("rampart.db").exists());
    let mut db = PgConnection::connect(&url).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM devices")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(count, 12);
    let _ = db.close().await;
    server.stop().await.unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
