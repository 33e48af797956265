//! `rampart-server`: the control plane. One process serves the admin API
//! (and, later, the console and the device channel) over a store chosen at
//! run time from the database URL.

pub mod api;
pub mod auth;
pub mod backup;
pub mod body;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod console;
pub mod device;
pub mod error;
pub mod fanout;
pub mod fleet;
pub mod health;
pub mod listener;
pub mod login_throttle;
pub mod metrics;
pub mod openapi;
pub mod policy_cache;
pub mod request_log;
pub mod rollout;
pub mod router;
pub mod sealing;
pub mod simulate;
pub mod state;
pub mod store_guard;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use rampart_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{redact_url, ServerConfig};
use crate::state::AppState;

/// Opens the backend the URL names: `sqlite:PATH` or `postgres://…`;
/// SQLite in the data directory when there is none.
async fn open_backend(config: &ServerConfig) -> Result<Arc<dyn Store>> {
    match config.sqlite_path() {
        None => {
            let url = config.database_url.as_deref().unwrap_or_default();
            let store = rampart_store_postgres::PostgresStore::connect(url)
                .await
                .with_context(|| format!("cannot open PostgreSQL at {}", redact_url(url)))?;
            Ok(Arc::new(store))
        }
        Some(path) => {
            let store = rampart_store_sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

/// Creates the data directory, or makes an existing one private (0700): it
/// holds the database, the admin token and, by default, the master key.
pub fn prepare_data_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// The store the server uses: the backend behind [`store_guard::GuardedStore`]
/// (timeouts, sealed keys) with the master key of the configuration, and
/// every stored private key sealed with it.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<store_guard::GuardedStore>> {
    prepare_data_dir(&config.data_dir)?;
    let keys = sealing::Keyring::load_or_create(&config.master_key_path())?;
    open_store_with(config, keys).await
}

/// [`open_store`] with a given keyring (a master key rotation).
pub async fn open_store_with(
    config: &ServerConfig,
    keys: sealing::Keyring,
) -> Result<Arc<store_guard::GuardedStore>> {
    let backend = open_backend(config).await?;
    // A SQLite database belongs to the one server holding the data
    // directory's lock; PostgreSQL is shared by replicas.
    let sole_writer = config.sqlite_path().is_some();
    let store = Arc::new(store_guard::GuardedStore::new(
        backend,
        keys,
        config.database_timeout,
        sole_writer,
    ));
    let sealed = store
        .reseal_all(&[device::trust::SERVER_CA])
        .await
        .context("cannot seal the stored private keys")?;
    if sealed > 0 {
        tracing::info!(sealed, "sealed stored private keys with the master key");
    }
    Ok(store)
}

/// Seals every stored private key with a new master key, then makes it the
/// master key file: `<file>.next` holds the new key until every value is
/// sealed with it, so an interrupted rotation resumes at the next start or
/// run. Servers sharing the database must be stopped first and given the new
/// key file.
pub async fn rotate_master_key(config: &ServerConfig) -> Result<String> {
    prepare_data_dir(&config.data_dir)?;
    let path = config.master_key_path();
    let current = sealing::MasterKey::read(&path)?;
    let next_path = sealing::next_key_path(&path);
    let next = if next_path.exists() {
        sealing::MasterKey::read(&next_path)?
    } else {
        let key = sealing::MasterKey::generate();
        key.write_new(&next_path)?;
        key
    };
    let id = next.id().to_owned();
    let store = open_store_with(config, sealing::Keyring::rotating(next, current)).await?;
    drop(store);
    std::fs::rename(&next_path, &path).with_context(|| {
        format!(
            "every key is sealed with {}; rename it to {} to finish",
            next_path.display(),
            path.display()
        )
    })?;
    Ok(id)
}

/// A server running in this process.
pub struct RunningServer {
    /// The admin API.
    pub addr: SocketAddr,
    /// The device channel (TLS).
    pub device_addr: SocketAddr,
    /// `/metrics`, when served.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    device_shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    device_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    /// Released when the server stops.
    _lock: backup::DataDirLock,
}

impl RunningServer {
    /// Stops accepting, lets admin requests in flight finish, ends the
    /// device connections, writes pending check-in times, and waits.
    pub async fn stop(self) -> Result<()> {
        let _ = self.device_shutdown.send(true);
        for task in &self.background {
            task.abort();
        }
        self.device_task.await.context("device channel task")?;
        self.task.await.context("server task")?.context("server")?;
        self.state.last_seen.flush(self.state.store.as_ref()).await;
        Ok(())
    }
}

/// Deletes expired tokens and idle console sessions, in every tenant.
pub async fn purge_tokens(state: &AppState) -> Result<u64> {
    let now = state.clock.now();
    let purged = state
        .store
        .purge_tokens(now, now - auth::SESSION_IDLE_SECONDS)
        .await?;
    if purged > 0 {
        tracing::info!(purged, "purged expired tokens and idle sessions");
    }
    Ok(purged)
}

/// Host names the device channel's certificate covers: the URL's host, plus
/// loopback names so local agents and tests can always connect.
fn device_hostnames(url: &str, extra: &[String]) -> Vec<String> {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("");
    let host = if authority.starts_with('[') {
        // An IPv6 literal: [::1]:8443
        authority
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let mut names: Vec<String> = vec![host.to_string(), "localhost".into(), "127.0.0.1".into()];
    names.extend(extra.iter().cloned());
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

/// Opens the store, bootstraps the default tenant, loads `--load` files and
/// starts serving. Returns once the listener is bound.
pub async fn start(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<RunningServer> {
    config.validate()?;
    // One server per data directory: a second one, or a restore, is
    // refused while this one runs.
    prepare_data_dir(&config.data_dir)?;
    let lock = backup::DataDirLock::acquire(&config.data_dir)?;
    let store: Arc<dyn Store> = open_store(&config).await?;
    let tenant =
        bootstrap::ensure_default_tenant(store.as_ref(), &config.data_dir, clock.now()).await?;
    let mut simulated_devices = Vec::new();
    if let Some(dir) = &config.load {
        let files = rampart_policy_files::read_documents(dir)?;
        let n = bootstrap::load_dir(store.as_ref(), &tenant.id, &files, clock.now()).await?;
        tracing::info!(dir = %dir.display(), writes = n, "loaded policy files into the default tenant");
        if config.simulate {
            if let Ok(bundle) = rampart_core::documents::load_documents(
                &files,
                rampart_core::catalog::Catalog::builtin(),
            ) {
                simulated_devices = bundle.devices;
            }
        }
    }
    let device_listener = tokio::net::TcpListener::bind(config.device_listen)
        .await
        .with_context(|| format!("cannot listen on {} for devices", config.device_listen))?;
    let device_addr = device_listener.local_addr()?;
    let device_url = config
        .device_url
        .clone()
        .unwrap_or_else(|| format!("https://{device_addr}"));
    let hostnames = device_hostnames(&device_url, &config.device_hostnames);
    let trust = device::trust::Trust::init(store.as_ref(), &hostnames, clock.now()).await?;
    rampart_pki::install_crypto_provider();
    let tls = rampart_pki::server_config(
        &trust.server_cert_pem,
        &trust.server_key_pem,
        trust.roots.clone(),
    )?;
    let settings = state::DeviceSettings {
        cert_lifetime_secs: config.cert_lifetime_secs,
        url: device_url,
        requests_per_minute: config.device_requests_per_minute,
    };
    let mut state = AppState::new(store, clock, trust, settings);
    state.behind_proxy = config.behind_tls_proxy;
    let postgres_url = config
        .database_url
        .clone()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if let Some(url) = &postgres_url {
        state.fanout = fanout::Fanout::postgres(url).context("the nudge channel")?;
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = router::router(state.clone());
    let admin_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?;
            let key = std::fs::read_to_string(key)
                .with_context(|| format!("cannot read --tls-key {}", key.display()))?;
            Some(rampart_pki::plain_server_config(&cert, &key).context("--tls-cert/--tls-key")?)
        }
        _ => None,
    };
    let (device_shutdown, device_rx) = watch::channel(false);
    let fd_limit = listener::raise_fd_limit();
    let (device_cap, admin_cap) = listener::default_caps(fd_limit);
    let handshake = std::time::Duration::from_secs(config.handshake_timeout_secs);
    let admin_limits = listener::Limits {
        handshake_timeout: handshake,
        drain: std::time::Duration::from_secs(5),
        ..listener::Limits::with_cap(config.admin_max_connections.unwrap_or(admin_cap))
    };
    let device_limits = listener::Limits {
        handshake_timeout: handshake,
        ..listener::Limits::with_cap(config.device_max_connections.unwrap_or(device_cap))
    };
    tracing::info!(
        fd_limit,
        device_max_connections = device_limits.max_connections,
        admin_max_connections = admin_limits.max_connections,
        "connection caps"
    );
    // The admin listener stops with the device channel's signal.
    let stop = device_shutdown.subscribe();
    let task = tokio::spawn(async move {
        listener::serve(listener, admin_tls, app, admin_limits, stop).await;
        Ok::<(), std::io::Error>(())
    });
    let device_task = tokio::spawn(listener::serve(
        device_listener,
        Some(tls),
        device::router(state.clone()),
        device_limits,
        device_rx,
    ));
    let mut background = vec![state.last_seen.spawn_flusher(state.store.clone())];
    let mut metrics_addr = None;
    if let Some(at) = config.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot listen on --metrics-listen {at}"))?;
        metrics_addr = Some(metrics_listener.local_addr()?);
        background.push(tokio::spawn(listener::serve(
            metrics_listener,
            None,
            metrics::router(state.clone()),
            listener::Limits {
                handshake_timeout: handshake,
                ..listener::Limits::with_cap(64)
            },
            device_shutdown.subscribe(),
        )));
    }
    // Expired tokens and idle sessions are refused at once; this only
    // clears them out of the database.
    let purger = state.clone();
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = purge_tokens(&purger).await {
                tracing::warn!(error = %e, "could not purge expired tokens");
            }
        }
    }));
    if let Some(url) = postgres_url {
        background.push(fanout::spawn_listener(state.clone(), url));
    }
    // Staged rollouts advance (or pause, or roll back) as their soaks end.
    let gatekeeper = state.clone();
    let every = config.rollout_check_interval;
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = rollout::evaluate_due(&gatekeeper).await {
                tracing::warn!(error = ?e, "could not read the gates of staged rollouts");
            }
        }
    }));
    // Tenants created by another process (`rampart-server create-tenant`) or
    // replica become acceptable to the device listener within seconds.
    let refresher = state.clone();
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = refresher
                .trust
                .refresh_roots(refresher.store.as_ref())
                .await
            {
                tracing::warn!(error = %e, "could not refresh tenant CAs");
            }
        }
    }));
    // Simulated devices stop with the device channel.
    background.extend(
        simulate::start(
            &state,
            &tenant.id,
            &simulated_devices,
            &config.data_dir,
            device_shutdown.subscribe(),
        )
        .await?,
    );
    tracing::info!(%device_addr, "device channel listening");
    tracing::info!(%addr, "admin API listening");
    Ok(RunningServer {
        addr,
        device_addr,
        metrics_addr,
        state,
        device_shutdown,
        task,
        device_task,
        background,
        _lock: lock,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_hostnames_come_from_the_url() {
        assert_eq!(
            super::device_hostnames("https://rampart.example:8443", &[]),
            ["127.0.0.1", "localhost", "rampart.example"]
        );
        assert_eq!(
            super::device_hostnames("https://[::1]:8443/x", &["b".into()]),
            ["127.0.0.1", "::1", "b", "localhost"]
        );
        assert_eq!(
            super::device_hostnames("https://h", &[]),
            ["127.0.0.1", "h", "localhost"]
        );
    }
}
