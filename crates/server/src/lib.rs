//! `rampart-server`: the control plane. One process serves the admin API
//! (and, later, the console and the device channel) over a store chosen at
//! run time from the database URL.

pub mod api;
pub mod auth;
pub mod body;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod error;
pub mod fleet;
pub mod openapi;
pub mod router;
pub mod state;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use rampart_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{redact_url, ServerConfig};
use crate::state::AppState;

/// Opens the store the URL names: `sqlite:PATH` or `postgres://…`; SQLite in
/// the data directory when there is none.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>> {
    match &config.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = rampart_store_postgres::PostgresStore::connect(url)
                .await
                .with_context(|| format!("cannot open PostgreSQL at {}", redact_url(url)))?;
            Ok(Arc::new(store))
        }
        Some(url) => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let store = rampart_store_sqlite::SqliteStore::open(std::path::Path::new(path))
                .await
                .with_context(|| format!("cannot open SQLite database {path}"))?;
            Ok(Arc::new(store))
        }
        None => {
            let path = config.data_dir.join("rampart.db");
            let store = rampart_store_sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("server task")?.context("server")?;
        Ok(())
    }
}

/// Opens the store, bootstraps the default tenant, loads `--load` files and
/// starts serving. Returns once the listener is bound.
pub async fn start(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<RunningServer> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store = open_store(&config).await?;
    let tenant =
        bootstrap::ensure_default_tenant(store.as_ref(), &config.data_dir, clock.now()).await?;
    if let Some(dir) = &config.load {
        let files = rampart_policy_files::read_documents(dir)?;
        let n = bootstrap::load_dir(store.as_ref(), &tenant.id, &files, clock.now()).await?;
        tracing::info!(dir = %dir.display(), writes = n, "loaded policy files into the default tenant");
    }
    let state = AppState::new(store, clock);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router::router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "admin API listening");
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}
