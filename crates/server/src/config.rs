//! The server's configuration: flags overlaid on environment variables,
//! checked once in `main` and passed down.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};

/// Everything `start` needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Holds the SQLite database (by default) and the admin token.
    pub data_dir: PathBuf,
    /// Admin API and console listener.
    pub listen: SocketAddr,
    /// `sqlite:PATH` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// A directory of policy-as-code files to load into the default tenant.
    pub load: Option<PathBuf>,
    /// Run a real in-process agent for every `kind: Device` of `load`.
    pub simulate: bool,
    /// Serve plain HTTP on a non-loopback address because a TLS-terminating
    /// proxy sits in front.
    pub behind_tls_proxy: bool,
    /// Certificate chain and key (PEM) to serve the admin API and console
    /// over TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Device channel listener (always TLS, client certificates).
    pub device_listen: SocketAddr,
    /// The device channel URL agents use, written into onboarding packages;
    /// `https://<device_listen>` when not given.
    pub device_url: Option<String>,
    /// More host names for the device channel's certificate.
    pub device_hostnames: Vec<String>,
    /// Lifetime of device certificates.
    pub cert_lifetime_secs: i64,
    /// Most connections open at once on the device channel; `None` sizes
    /// it from the open-files limit.
    pub device_max_connections: Option<usize>,
    /// Most connections open at once on the admin API.
    pub admin_max_connections: Option<usize>,
    /// How long a client may take over its TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Requests a device may make per minute (a burst of as many is
    /// allowed); more are answered 429 with `Retry-After`.
    pub device_requests_per_minute: u32,
    /// Where `/metrics` is served (plain HTTP, no token: keep it on
    /// loopback or a monitoring network); not served when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// The master key file that seals the private keys in the database;
    /// see [`ServerConfig::master_key_path`] for the default.
    pub master_key_file: Option<PathBuf>,
    /// The longest one database call may take before the API answers 503.
    pub database_timeout: std::time::Duration,
    /// How often staged rollouts whose soak ended have their gates read.
    pub rollout_check_interval: std::time::Duration,
}

/// Device certificates live a day by default: short enough that a stolen
/// one is soon useless, long enough to ride out an outage of the server.
pub const DEFAULT_CERT_LIFETIME_SECS: i64 = 24 * 3600;

impl ServerConfig {
    /// A configuration with the defaults of the command line.
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            load: None,
            simulate: false,
            behind_tls_proxy: false,
            tls_cert: None,
            tls_key: None,
            device_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            device_url: None,
            device_hostnames: Vec::new(),
            cert_lifetime_secs: DEFAULT_CERT_LIFETIME_SECS,
            device_max_connections: None,
            admin_max_connections: None,
            handshake_timeout_secs: 10,
            device_requests_per_minute: 120,
            metrics_listen: None,
            master_key_file: None,
            database_timeout: crate::store_guard::DEFAULT_TIMEOUT,
            rollout_check_interval: std::time::Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for ServerConfig {
    /// Redacts the database URL, which may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|u| redact_url(u)),
            )
            .field("load", &self.load)
            .field("behind_tls_proxy", &self.behind_tls_proxy)
            .field("device_listen", &self.device_listen)
            .field("device_url", &self.device_url)
            .field("cert_lifetime_secs", &self.cert_lifetime_secs)
            .field("master_key_file", &self.master_key_file)
            .field("database_timeout", &self.database_timeout)
            .field("rollout_check_interval", &self.rollout_check_interval)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The file name of the master key a systemd unit passes with
/// `LoadCredential=rampart-master-key:/path`.
pub const MASTER_KEY_CREDENTIAL: &str = "rampart-master-key";

impl ServerConfig {
    /// The SQLite database file: the `sqlite:` URL's, or `rampart.db` in the
    /// data directory; `None` on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => None,
            Some(url) => Some(PathBuf::from(
                url.trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:"),
            )),
            None => Some(self.data_dir.join("rampart.db")),
        }
    }

    /// The master key file: `--master-key-file` (or `RAMPART_MASTER_KEY_FILE`)
    /// when given, else a systemd credential named `rampart-master-key` when
    /// the unit passes one, else `master.key` in the data directory
    /// (created on the first start).
    pub fn master_key_path(&self) -> PathBuf {
        if let Some(path) = &self.master_key_file {
            return path.clone();
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(MASTER_KEY_CREDENTIAL);
            if path.exists() {
                return path;
            }
        }
        self.data_dir.join("master.key")
    }

    /// Checks what flags alone cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("--tls-cert and --tls-key go together");
        }
        if !self.listen.ip().is_loopback() && !self.behind_tls_proxy && self.tls_cert.is_none() {
            bail!(
                "--listen {} is not a loopback address: the admin API carries tokens and must not be served in plain HTTP there; \
                 give --tls-cert and --tls-key, or serve it behind a TLS-terminating proxy and pass --behind-tls-proxy",
                self.listen
            );
        }
        if self.simulate && self.load.is_none() {
            bail!(
                "--simulate runs an agent for each Device document of --load; give --load DIR too"
            );
        }
        if self.handshake_timeout_secs == 0 {
            bail!("--handshake-timeout must be at least 1 second");
        }
        if self.device_requests_per_minute == 0 {
            bail!("--device-requests-per-minute must be at least 1");
        }
        if self.device_max_connections == Some(0) || self.admin_max_connections == Some(0) {
            bail!("connection caps must be at least 1");
        }
        if self.database_timeout < std::time::Duration::from_millis(100) {
            bail!("--database-timeout must be at least 0.1 seconds");
        }
        if self.cert_lifetime_secs < 60 {
            bail!("the device certificate lifetime must be at least 60 seconds");
        }
        if let Some(url) = &self.device_url {
            if !url.starts_with("https://") {
                bail!("--device-url must be an https:// URL: the device channel is always TLS");
            }
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                bail!(
                    "--database-url must start with sqlite: or postgres://, not {}",
                    redact_url(url)
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        let c = ServerConfig {
            database_url: Some("postgres://u:hunter2@h/db".into()),
            ..ServerConfig::new("d".into())
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn plain_http_off_loopback_needs_an_explicit_proxy_flag() {
        let mut c = ServerConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..ServerConfig::new("d".into())
        };
        assert!(c.validate().is_err());
        c.behind_tls_proxy = true;
        assert!(c.validate().is_ok());
        c.database_url = Some("mysql://x".into());
        assert!(c.validate().is_err());
    }
}
