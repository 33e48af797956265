//! `rampart-server`: parses flags, then runs the control plane until SIGTERM
//! or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rampart_server::clock::SystemClock;
use rampart_server::config::ServerConfig;
use rampart_store::Store as _;

/// mimalloc instead of glibc's allocator: with thousands of connections
/// served by a few threads, glibc's per-thread arenas keep freed buffers
/// (BENCHMARKS.md, "10,000 agents").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rampart-server",
    version,
    about = "Rampart's control plane: devices, groups, policies, reports and the audit log"
)]
struct Args {
    /// Directory for the embedded database and the bootstrap admin token.
    #[arg(
        long,
        env = "RAMPART_DATA_DIR",
        default_value = "rampart-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Address of the admin API.
    #[arg(long, env = "RAMPART_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// `postgres://…` to use PostgreSQL, or `sqlite:PATH`; SQLite in the data directory by default.
    #[arg(
        long,
        env = "RAMPART_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Load the policy-as-code files (and simulated devices) of this directory into the default tenant at every start; objects of the files replace changes made since through the API.
    #[arg(long)]
    load: Option<PathBuf>,
    /// Serve the admin API and console over TLS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Run a real in-process agent (file provider) for each Device document of --load, so reports show live statuses.
    #[arg(long)]
    simulate: bool,
    /// Allow plain HTTP on a non-loopback address because a TLS-terminating proxy is in front.
    #[arg(long)]
    behind_tls_proxy: bool,
    /// Address of the device channel (TLS with client certificates).
    #[arg(long, env = "RAMPART_DEVICE_LISTEN", default_value = "127.0.0.1:8443")]
    device_listen: SocketAddr,
    /// URL agents use to reach the device channel (written into onboarding packages); https://<device-listen> by default.
    #[arg(long, env = "RAMPART_DEVICE_URL")]
    device_url: Option<String>,
    /// Another host name for the device channel's certificate (repeatable).
    #[arg(long = "device-hostname")]
    device_hostnames: Vec<String>,
    /// Lifetime of device certificates, in seconds (agents renew at two thirds).
    #[arg(long, default_value_t = rampart_server::config::DEFAULT_CERT_LIFETIME_SECS)]
    cert_lifetime_secs: i64,
    /// Most connections the device channel holds at once (sized from the open-files limit when absent).
    #[arg(long, env = "RAMPART_DEVICE_MAX_CONNECTIONS")]
    device_max_connections: Option<usize>,
    /// Most connections the admin API holds at once (sized from the open-files limit when absent).
    #[arg(long, env = "RAMPART_ADMIN_MAX_CONNECTIONS")]
    admin_max_connections: Option<usize>,
    /// Seconds a client may take over its TLS handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Requests one device may make per minute before it is answered 429.
    #[arg(long, default_value_t = 120)]
    device_requests_per_minute: u32,
    /// Serve Prometheus metrics on this address at /metrics (plain HTTP without a token: loopback or a monitoring network).
    #[arg(long, env = "RAMPART_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// How log lines are written: `text` for people, `json` (one object per line) for a log collector.
    #[arg(long, env = "RAMPART_LOG_FORMAT", default_value_t, global = true)]
    log_format: rampart_log::LogFormat,
    /// The master key that seals the private keys in the database (64 hex characters, mode 0600); <data-dir>/master.key, created on the first start, by default. Back it up apart from the database.
    #[arg(long, env = "RAMPART_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    /// Seconds one database call may take before the API answers 503 database_unavailable.
    #[arg(
        long,
        env = "RAMPART_DATABASE_TIMEOUT",
        default_value_t = 5.0,
        global = true
    )]
    database_timeout: f64,
    /// Seconds between readings of the health gates of staged rollouts whose soak has ended.
    #[arg(
        long,
        env = "RAMPART_ROLLOUT_CHECK_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    rollout_check_secs: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create another tenant and write its admin token to a file.
    CreateTenant {
        name: String,
        /// Where to write the new tenant's admin token (created with mode 0600).
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Create a local console user (the first one, typically) in a tenant.
    CreateUser {
        #[arg(long)]
        username: String,
        /// `global_admin`, `security_manager` or `read_only`.
        #[arg(long)]
        role: String,
        /// File holding the password (at least 12 characters), or `-` for
        /// standard input; never given on the command line.
        #[arg(long)]
        password_file: PathBuf,
        /// The tenant; the default tenant (created if needed) when absent.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Seal every private key in the database with a new master key and
    /// replace the master key file with it. Stop every server on the
    /// database first, and start them with the new key file.
    RotateMasterKey,
    /// Write a consistent copy of the embedded database to a new file while
    /// the server runs (SQLite; on PostgreSQL use pg_dump). The master key
    /// is not in it: back it up once, apart.
    Backup {
        /// The backup file to create (mode 0600); an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the embedded database with a backup after checking it; no
    /// server may be running on the data directory. The replaced database
    /// is kept beside it.
    Restore {
        /// A file written by `rampart-server backup`.
        file: PathBuf,
    },
    /// Check the database (after a restore, say): integrity, schema, and
    /// that the master key opens every sealed private key.
    Check,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    rampart_log::init(
        args.log_format,
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let config = ServerConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        load: args.load,
        simulate: args.simulate,
        behind_tls_proxy: args.behind_tls_proxy,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        device_listen: args.device_listen,
        device_url: args.device_url,
        device_hostnames: args.device_hostnames,
        cert_lifetime_secs: args.cert_lifetime_secs,
        device_max_connections: args.device_max_connections,
        admin_max_connections: args.admin_max_connections,
        handshake_timeout_secs: args.handshake_timeout,
        device_requests_per_minute: args.device_requests_per_minute,
        metrics_listen: args.metrics_listen,
        master_key_file: args.master_key_file,
        database_timeout: std::time::Duration::try_from_secs_f64(args.database_timeout)
            .map_err(|_| anyhow::anyhow!("--database-timeout must be a number of seconds"))?,
        rollout_check_interval: std::time::Duration::from_secs(args.rollout_check_secs),
    };
    config.validate()?;
    match &args.command {
        Some(Command::Backup { out }) => {
            println!("{}", rampart_server::backup::backup(&config, out).await?);
            return Ok(());
        }
        Some(Command::Restore { file }) => {
            let now = rampart_server::clock::Clock::now(&SystemClock);
            println!(
                "{}",
                rampart_server::backup::restore(&config, file, now).await?
            );
            return Ok(());
        }
        Some(Command::Check) => {
            println!("{}", rampart_server::backup::check(&config).await?);
            return Ok(());
        }
        _ => {}
    }
    if let Some(Command::RotateMasterKey) = args.command {
        let id = rampart_server::rotate_master_key(&config).await?;
        println!(
            "every private key is sealed with the new master key {id}, now in {}; back it up",
            config.master_key_path().display()
        );
        return Ok(());
    }
    let clock = Arc::new(SystemClock);
    if let Some(Command::CreateTenant { name, token_file }) = args.command {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = rampart_server::open_store(&config).await?;
        let (tenant, token) = rampart_server::bootstrap::create_tenant(
            store.as_ref(),
            &name,
            rampart_server::clock::Clock::now(clock.as_ref()),
        )
        .await?;
        rampart_server::bootstrap::write_secret(&token_file, &token)?;
        println!(
            "created tenant {} ({}); its admin token is in {}",
            tenant.name,
            tenant.id,
            token_file.display()
        );
        return Ok(());
    }
    if let Some(Command::CreateUser {
        username,
        role,
        password_file,
        tenant,
    }) = args.command
    {
        let password = rampart_server::bootstrap::read_password(&password_file)?;
        std::fs::create_dir_all(&config.data_dir)?;
        let store = rampart_server::open_store(&config).await?;
        let now = rampart_server::clock::Clock::now(clock.as_ref());
        let tenant = match tenant {
            Some(name) => store
                .tenant_by_name(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant named {name:?}"))?,
            None => {
                rampart_server::bootstrap::ensure_default_tenant(
                    store.as_ref(),
                    &config.data_dir,
                    now,
                )
                .await?
            }
        };
        let user = rampart_server::bootstrap::create_user(
            store.as_ref(),
            &tenant,
            &username,
            &role,
            &password,
            now,
        )
        .await?;
        println!(
            "created user {} ({}) in tenant {}; sign in to the console with it",
            user.username, user.role, tenant.name
        );
        return Ok(());
    }
    let data_dir = config.data_dir.clone();
    let tls = config.tls_cert.is_some();
    let server = rampart_server::start(config, clock).await?;
    let scheme = if tls { "https" } else { "http" };
    println!("rampart-server is listening on {scheme}://{}", server.addr);
    println!(
        "Device channel (mutual TLS) on https://{}",
        server.device_addr
    );
    if let Some(metrics) = server.metrics_addr {
        println!("Metrics on http://{metrics}/metrics");
    }
    println!("Point the CLI at it:");
    println!("  export RAMPART_SERVER={scheme}://{}", server.addr);
    println!(
        "  export RAMPART_TOKEN=$(cat {})",
        rampart_server::bootstrap::admin_token_path(&data_dir).display()
    );
    println!("  rampart device list");
    println!(
        "Console: {scheme}://{}/ (sign in as a user made with `rampart-server create-user`)",
        server.addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
