//! Test support: a real `rampart-server` in this process on an ephemeral
//! loopback port, over a temporary SQLite database (or a fresh PostgreSQL
//! database when asked), with its bootstrap admin token at hand.
//!
//! Everything a test starts is stopped and removed by `TestServer::stop`, or
//! on drop as a fallback.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use rampart_server::clock::ManualClock;
use rampart_server::config::ServerConfig;
use rampart_server::RunningServer;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A fresh, empty database on the PostgreSQL server that
/// `RAMPART_TEST_POSTGRES_URL` names (`label` goes into its name); `drop`
/// removes it. `None`, with a note on stderr, when no server is named — and
/// a failure instead when `RAMPART_TEST_POSTGRES_REQUIRED=1` (as CI sets
/// it), so that a missing PostgreSQL never passes as a skipped test there.
pub struct PostgresDatabase {
    /// The database's URL, for `Options::database_url`.
    pub url: String,
    name: String,
    server_url: String,
}

impl PostgresDatabase {
    #[allow(clippy::expect_used)] // An unreachable server fails the test.
    pub async fn create(label: &str) -> Option<PostgresDatabase> {
        use sqlx::{Connection, Executor};
        let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
        let Ok(base) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
            assert!(
                !required,
                "RAMPART_TEST_POSTGRES_REQUIRED=1 but RAMPART_TEST_POSTGRES_URL is not set"
            );
            eprintln!(
                "skipped: set RAMPART_TEST_POSTGRES_URL to run the {label} test on PostgreSQL"
            );
            return None;
        };
        let name = format!("rampart_{label}_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .expect("PostgreSQL is reachable");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = format!(
            "{}/{name}",
            base.rsplit_once('/')
                .map_or(base.as_str(), |(head, _)| head)
        );
        Some(PostgresDatabase {
            url,
            name,
            server_url: base,
        })
    }

    /// Removes the database (whoever is still connected to it).
    pub async fn drop(self) {
        use sqlx::{Connection, Executor};
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.server_url).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = admin.execute(sql.as_str()).await;
            let _ = admin.close().await;
        }
    }
}

/// A time before any test clock (2026-01-01); test clocks start at the real
/// time.
pub const TEST_EPOCH: i64 = 1_767_225_600;

pub struct TestServer {
    pub url: String,
    /// The device channel, `https://127.0.0.1:PORT`.
    pub device_url: String,
    pub admin_token: String,
    pub data_dir: PathBuf,
    pub clock: ManualClock,
    server: Option<RunningServer>,
    config: ServerConfig,
}

/// What to start.
#[derive(Default)]
pub struct Options {
    /// Files to load at start, as `--load` does.
    pub load: Option<PathBuf>,
    /// A database URL; a temporary SQLite file when `None`.
    pub database_url: Option<String>,
    /// The admin token to use instead of the data directory's token file
    /// (a replica joining another's database).
    pub admin_token: Option<String>,
    /// Device certificate lifetime; the server's default when `None`.
    pub cert_lifetime_secs: Option<i64>,
    /// Where the device channel listens (port 0 for any); `127.0.0.1:0`
    /// when `None`. Its URL and certificate follow the address.
    pub device_listen: Option<std::net::SocketAddr>,
    /// Requests a device may make per minute; the server's default when
    /// `None`.
    pub device_requests_per_minute: Option<u32>,
    /// The master key file; the data directory's own when `None`. Replicas
    /// on one database share the first one's (`TestServer::master_key_path`).
    pub master_key_file: Option<PathBuf>,
    /// Bound on one database call; the server's default when `None`.
    pub database_timeout: Option<std::time::Duration>,
    /// As `--behind-tls-proxy`: client addresses come from `X-Forwarded-For`.
    pub behind_tls_proxy: bool,
    /// How often rollout gates are read; every 200 ms when `None`, so that
    /// a test that moves the clock past a soak sees the step at once.
    pub rollout_check_interval: Option<std::time::Duration>,
    /// As `--simulate`: an in-process agent for each `kind: Device` of `load`.
    pub simulate: bool,
}

impl TestServer {
    pub async fn start() -> Result<TestServer> {
        TestServer::start_with(Options::default()).await
    }

    /// The repository's example fleet loaded.
    pub async fn with_examples() -> Result<TestServer> {
        TestServer::start_with(Options {
            load: Some(repo_path("examples/fleet")),
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Result<TestServer> {
        let data_dir =
            std::env::temp_dir().join(format!("rampart-test-{}", uuid::Uuid::new_v4().simple()));
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            device_listen: match options.device_listen {
                Some(addr) => addr,
                None => "127.0.0.1:0".parse()?,
            },
            database_url: options.database_url,
            load: options.load,
            cert_lifetime_secs: options
                .cert_lifetime_secs
                .unwrap_or(rampart_server::config::DEFAULT_CERT_LIFETIME_SECS),
            device_requests_per_minute: options.device_requests_per_minute.unwrap_or(120),
            master_key_file: options.master_key_file,
            behind_tls_proxy: options.behind_tls_proxy,
            database_timeout: options
                .database_timeout
                .unwrap_or(rampart_server::store_guard::DEFAULT_TIMEOUT),
            simulate: options.simulate,
            rollout_check_interval: options
                .rollout_check_interval
                .unwrap_or(std::time::Duration::from_millis(200)),
            ..ServerConfig::new(data_dir.clone())
        };
        // Real time at start, then moved only by the test: certificates are
        // checked by TLS against the real clock, so they must be issued in it.
        let clock = ManualClock::new(
            rampart_server::clock::Clock::now(&rampart_server::clock::SystemClock).max(TEST_EPOCH),
        );
        let server = rampart_server::start(config.clone(), Arc::new(clock.clone())).await?;
        // A second replica on a shared database writes no token file: the
        // first replica's token serves both.
        let admin_token = match options.admin_token {
            Some(token) => token,
            None => std::fs::read_to_string(rampart_server::bootstrap::admin_token_path(&data_dir))
                .context("admin token file")?
                .trim()
                .to_string(),
        };
        Ok(TestServer {
            url: format!("http://{}", server.addr),
            device_url: format!("https://{}", server.device_addr),
            admin_token,
            data_dir,
            clock,
            config: ServerConfig {
                listen: server.addr,
                device_listen: server.device_addr,
                load: None,
                ..config
            },
            server: Some(server),
        })
    }

    /// The master key file the server seals its private keys with.
    pub fn master_key_path(&self) -> PathBuf {
        self.config.master_key_path()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn store(&self) -> Option<Arc<dyn rampart_store::Store>> {
        self.server.as_ref().map(|s| s.state.store.clone())
    }

    /// A client authenticated with the bootstrap admin token.
    pub fn admin(&self) -> Client {
        self.client(&self.admin_token)
    }

    pub fn client(&self, token: &str) -> Client {
        Client {
            base: format!("{}/api/v1", self.url),
            token: Some(token.to_string()),
            http: reqwest::Client::new(),
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            base: format!("{}/api/v1", self.url),
            token: None,
            http: reqwest::Client::new(),
        }
    }

    /// Creates a token with `role` and returns a client using it.
    pub async fn client_with_role(&self, role: &str) -> Result<Client> {
        let (status, body) = self
            .admin()
            .post(
                "/tokens",
                &serde_json::json!({ "name": format!("{role}-test"), "role": role }),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "token create: {status} {body}"
        );
        let token = body["token"].as_str().context("token")?.to_string();
        Ok(self.client(&token))
    }

    /// Stops the server, keeping its data, as an outage would.
    pub async fn halt(&mut self) -> Result<()> {
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same data and the same ports.
    pub async fn resume(&mut self) -> Result<()> {
        anyhow::ensure!(self.server.is_none(), "the server is running");
        let server =
            rampart_server::start(self.config.clone(), Arc::new(self.clock.clone())).await?;
        self.server = Some(server);
        Ok(())
    }

    /// Stops the server and removes its data directory.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked before `stop`: the runtime ends the server
        // task; the files go here.
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A small JSON client for the admin API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.send(Method::DELETE, path, None).await
    }
}
