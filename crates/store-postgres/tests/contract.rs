//! Runs the storage contract suite against PostgreSQL, each test in a fresh
//! database created through `RAMPART_TEST_POSTGRES_URL` and dropped after.
//!
//! Without that variable the tests say they were skipped and pass, so
//! `cargo test` works with no services. CI sets
//! `RAMPART_TEST_POSTGRES_REQUIRED=1`, which turns a missing or unreachable
//! server into a failure rather than a silent skip.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use rampart_store::contract::Fixture;
use rampart_store::Store;
use rampart_store_postgres::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};

const URL_VAR: &str = "RAMPART_TEST_POSTGRES_URL";
const REQUIRED_VAR: &str = "RAMPART_TEST_POSTGRES_REQUIRED";

/// A database of its own for one test.
struct TestDatabase {
    admin: PgConnectOptions,
    name: String,
    options: PgConnectOptions,
}

impl TestDatabase {
    /// Creates `rampart_test_<random>` on the configured server, or returns
    /// `None` (after saying so) when no server is configured.
    async fn create() -> Option<TestDatabase> {
        let required = std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "1");
        let Ok(url) = std::env::var(URL_VAR) else {
            assert!(!required, "{REQUIRED_VAR}=1 but {URL_VAR} is not set");
            eprintln!("skipped: set {URL_VAR} to run the PostgreSQL contract tests");
            return None;
        };
        let admin = PgConnectOptions::from_str(&url).expect("a valid PostgreSQL URL");
        let mut conn = match admin.connect().await {
            Ok(conn) => conn,
            Err(err) if required => panic!("{REQUIRED_VAR}=1 but PostgreSQL is unreachable: {err}"),
            Err(err) => {
                eprintln!("skipped: PostgreSQL at {URL_VAR} is unreachable: {err}");
                return None;
            }
        };
        let name = format!("rampart_test_{}", uuid::Uuid::new_v4().simple());
        let create = format!("CREATE DATABASE {name}");
        conn.execute(create.as_str())
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        let options = admin.clone().database(&name);
        Some(TestDatabase {
            admin,
            name,
            options,
        })
    }

    async fn drop(&self) {
        let mut conn: PgConnection = self.admin.connect().await.expect("reconnect to drop");
        // FORCE ends connections a failed test may have left open.
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        conn.execute(drop.as_str())
            .await
            .expect("drop the test database");
        let _ = conn.close().await;
    }
}

struct PgFixture {
    db: TestDatabase,
    store: PostgresStore,
}

#[async_trait]
impl Fixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn teardown(self) {
        self.store.close().await;
        self.db.drop().await;
    }
}

async fn fresh_store() -> Option<PgFixture> {
    let db = TestDatabase::create().await?;
    let store = PostgresStore::connect_with(db.options.clone())
        .await
        .expect("connect to the test database");
    Some(PgFixture { db, store })
}

rampart_store::contract_tests!(fresh_store());

/// Several replicas starting at once against an empty database: the advisory
/// lock lets one migrate while the others wait, and all of them start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut starts = Vec::new();
    for _ in 0..4 {
        let options = db.options.clone();
        starts.push(tokio::spawn(PostgresStore::connect_with(options)));
    }
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap());
    }
    let mut applied = None;
    for store in &stores {
        let store = store.as_ref().expect("every replica starts");
        store
            .create_tenant(&uuid::Uuid::new_v4().to_string(), 0)
            .await
            .unwrap();
        store.close().await;
    }
    let mut conn = db.options.connect().await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    applied.get_or_insert(versions);
    let _ = conn.close().await;
    db.drop().await;
    assert_eq!(
        applied,
        Some(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        "each migration applied once"
    );
}

/// A database a version-1 build wrote keeps its devices when a newer build
/// migrates it, with the identity fields empty.
#[tokio::test]
async fn upgrading_from_version_1_keeps_devices() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut conn = db.options.connect().await.unwrap();
    conn.execute(include_str!("../migrations/0001_init.sql"))
        .await
        .unwrap();
    conn.execute(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); \
         INSERT INTO schema_migrations VALUES (1, 0); \
         INSERT INTO tenants VALUES ('t1', 'default', 1); \
         INSERT INTO devices (tenant_id, name, id, os, os_version, device_type, agent_version, \
         tags, labels, managed_by, enrollment_status, created_at) \
         VALUES ('t1', 'old', 'd1', 'linux', '12', 'server', '0.1.0', '[\"a\"]', '[]', \
         'rampart', 'enrolled', 5);",
    )
    .await
    .unwrap();
    let _ = conn.close().await;

    let migrated = PostgresStore::connect_with(db.options.clone()).await;
    let device = match &migrated {
        Ok(store) => store.device_by_id("t1", "d1").await,
        Err(_) => Ok(None),
    };
    if let Ok(store) = &migrated {
        store.close().await;
    }
    db.drop().await;
    let device = device.unwrap().expect("the device survives");
    assert_eq!(device.name, "old");
    assert_eq!(device.tags, ["a"]);
    assert_eq!(device.cert_serial, None);
    assert_eq!(device.cert_not_after, None);
    assert_eq!(device.issued_version, 0);
    assert_eq!(device.issued_digest, None);
}

/// An older build must refuse a schema from a newer one, and say why.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(fixture) = fresh_store().await else {
        return;
    };
    let mut conn = fixture.db.options.connect().await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let err = PostgresStore::connect_with(fixture.db.options.clone())
        .await
        .unwrap_err()
        .to_string();
    fixture.teardown().await;
    assert!(err.contains("version 999"), "{err}");
}

/// `Debug` names the database but never prints a password.
#[tokio::test]
async fn debug_output_has_no_password() {
    let Some(fixture) = fresh_store().await else {
        return;
    };
    let with_password = fixture.db.options.clone().password("s3cr3t-pw");
    let debug = match PostgresStore::connect_with(with_password).await {
        Ok(store) => {
            let debug = format!("{store:?}");
            store.close().await;
            debug
        }
        // A server that checks passwords rejects this one; the error must
        // not echo it either.
        Err(err) => format!("{err:?}"),
    };
    fixture.teardown().await;
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("rampart_test_"), "{debug}");
}
