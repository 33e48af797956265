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

/// Two replicas on one PostgreSQL database: a device long-polls replica B,
/// an administrator asks replica A for a sync, and LISTEN/NOTIFY carries the
/// nudge across within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_on_one_replica_reaches_a_device_waiting_on_another() {
    use rampart_proto::device::{CheckInResponse, EnrollResponse, OnboardingPackage};
    use std::time::{Duration, Instant};

    let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
    let Ok(base) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        assert!(
            !required,
            "RAMPART_TEST_POSTGRES_REQUIRED=1 but RAMPART_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: set RAMPART_TEST_POSTGRES_URL to run the replica test");
        return;
    };
    let name = format!("rampart_replicas_test_{}", uuid::Uuid::new_v4().simple());
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

    let a = TestServer::start_with(Options {
        load: Some(repo_path("examples/fleet")),
        database_url: Some(url.clone()),
        ..Options::default()
    })
    .await
    .unwrap();
    let b = TestServer::start_with(Options {
        database_url: Some(url.clone()),
        admin_token: Some(a.admin_token.clone()),
        // Replicas share the master key that seals the tenant keys.
        master_key_file: Some(a.master_key_path()),
        ..Options::default()
    })
    .await
    .unwrap();

    // A device enrolls through replica B and long-polls it.
    rampart_pki::install_crypto_provider();
    let (_, p) = b.admin().post("/onboarding", &json!({})).await.unwrap();
    let package: OnboardingPackage = serde_json::from_value(p).unwrap();
    assert_eq!(package.server_url, b.device_url);
    let key = rampart_pki::new_device_key().unwrap();
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(rampart_pki::client_config(&package.server_ca_pem, None).unwrap())
        .build()
        .unwrap();
    let facts = json!({"hostname": "h", "os": "linux", "os_version": "22.04", "type": "server", "agent_version": "t", "tags": ["web"]});
    let enrolled: EnrollResponse = anonymous
        .post(format!("{}/device/v1/enroll", package.server_url))
        .json(&json!({"token": package.token, "device_name": "replica-dev", "csr_pem": rampart_pki::csr_pem(&key, "replica-dev").unwrap(), "facts": facts, "survey": {"managed_by": null, "evidence": []}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device = reqwest::Client::builder()
        .use_preconfigured_tls(
            rampart_pki::client_config(
                &package.server_ca_pem,
                Some((&enrolled.certificate_pem, &key.key_pem)),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let checkin: CheckInResponse = device
        .post(format!("{}/device/v1/checkin", package.server_url))
        .json(&json!({"digest": null, "version": null, "facts": facts, "survey": {"managed_by": null, "evidence": []}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signed = checkin.policy.unwrap();
    let digest = serde_json::from_str::<serde_json::Value>(&signed.payload).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let wait_url = format!(
        "{}/device/v1/wait?digest={digest}&timeout=60",
        package.server_url
    );
    let poll = tokio::spawn(async move {
        device
            .get(wait_url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The sync goes to replica A.
    let started = Instant::now();
    let (s, r) = a
        .admin()
        .post("/devices/replica-dev/sync", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let answer = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the nudge crossed replicas")
        .unwrap();
    assert_eq!(answer["event"], "sync");
    assert!(started.elapsed() < Duration::from_secs(5));

    b.stop().await.unwrap();
    a.stop().await.unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
