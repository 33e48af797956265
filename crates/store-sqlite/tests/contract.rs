//! Runs the storage contract suite against SQLite, each test on a fresh
//! temporary database file.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use rampart_store::contract::Fixture;
use rampart_store::Store;
use rampart_store_sqlite::SqliteStore;

struct TempStore {
    store: SqliteStore,
    path: PathBuf,
}

#[async_trait]
impl Fixture for TempStore {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn teardown(self) {
        self.store.close().await;
        // WAL mode keeps two companion files next to the database.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

async fn temp_store() -> Option<TempStore> {
    let path = std::env::temp_dir().join(format!(
        "rampart-contract-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let store = SqliteStore::open(&path)
        .await
        .expect("open a temporary SQLite store");
    Some(TempStore { store, path })
}

rampart_store::contract_tests!(temp_store());

/// The in-memory store the other crates' tests use keeps the same contract;
/// one behaviour that depends on sharing its single connection is enough.
#[tokio::test]
async fn in_memory_store_versions_objects() {
    let store = SqliteStore::open_url("sqlite::memory:").await.unwrap();
    rampart_store::contract::objects_are_versioned(&store).await;
    rampart_store::contract::failed_batches_leave_nothing_behind(&store).await;
}
