//! Unchanged check-ins per second: C enrolled agents, each checking in over
//! and over with the digest it holds (the server answers "nothing new"),
//! for a fixed time; then the same C clients, each with its own client
//! certificate, posting the same body to the bare mutual-TLS handler for
//! the same time. The ratio of the two rates is the number to compare.
//!
//! Clients and server share the machine, so both rates include the
//! clients' own work; the ratio is what the application costs on top of
//! TLS and HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rampart_proto::device::{CheckIn, OnboardingPackage, Survey};
use rampart_testkit::{Options, TestServer};
use serde_json::json;

use crate::agent::{enroll, facts, Agent};
use crate::bare::BareHandler;

pub struct Rates {
    pub clients: usize,
    /// Unchanged check-ins per second.
    pub rampart: f64,
    /// Requests per second to the bare handler.
    pub bare: f64,
}

/// Runs `request` from every client until `secs` pass; returns requests
/// per second.
async fn rate<C, F, Fut>(clients: Vec<C>, secs: f64, request: F) -> Result<f64>
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut joins = Vec::new();
    for c in clients {
        let (done, request, c) = (done.clone(), request.clone(), Arc::new(c));
        joins.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                request(c.clone()).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for j in joins {
        j.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// A PostgreSQL database outlives each measurement's server, so they share
/// one master key (each would otherwise make its own and could not open the
/// keys the first one sealed).
pub struct Database {
    pub url: String,
    pub master_key_file: std::path::PathBuf,
    /// The admin token the first server made; the later ones join with it.
    admin_token: std::sync::Mutex<Option<String>>,
}

impl Database {
    pub fn new(url: String) -> Result<Database> {
        let master_key_file =
            std::env::temp_dir().join(format!("rampart-sim-master-{}.key", std::process::id()));
        let key = rampart_pki::new_signing_key()?.secret_hex;
        std::fs::write(&master_key_file, format!("{key}\n"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&master_key_file, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Database {
            url,
            master_key_file,
            admin_token: std::sync::Mutex::new(None),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.master_key_file);
    }
}

pub async fn measure(clients: usize, secs: f64, database: Option<&Database>) -> Result<Rates> {
    let server = TestServer::start_with(Options {
        load: Some(rampart_testkit::repo_path("examples/fleet")),
        database_url: database.map(|d| d.url.clone()),
        master_key_file: database.map(|d| d.master_key_file.clone()),
        admin_token: database.and_then(|d| d.admin_token.lock().ok()?.clone()),
        device_requests_per_minute: Some(u32::MAX),
        ..Options::default()
    })
    .await?;
    if let Some(d) = database {
        if let Ok(mut token) = d.admin_token.lock() {
            token.get_or_insert_with(|| server.admin_token.clone());
        }
    }
    // Names of their own: on PostgreSQL the devices of an earlier
    // measurement are still there.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let (_, p) = server
        .admin()
        .post("/onboarding", &json!({"max_uses": clients}))
        .await?;
    let package: OnboardingPackage = serde_json::from_value(p).context("package")?;
    let mut agents = Vec::new();
    for i in 0..clients {
        let mut a = enroll(&package, format!("bench-{run}-{i:05}"), &package.server_url).await?;
        a.sync().await?;
        agents.push(a);
    }
    // One round first: connections open, caches warm.
    let unchanged = |a: Arc<Agent>| async move {
        let r = a.check_in().await?;
        anyhow::ensure!(r.policy.is_none(), "an unchanged check-in got a policy");
        Ok(())
    };
    rate(agents.iter().map(Agent::clone).collect(), 0.5, unchanged).await?;
    let rampart = rate(agents, secs, unchanged).await?;
    server.stop().await?;

    let bare = BareHandler::start().await?;
    let body = serde_json::to_vec(&CheckIn {
        digest: Some("0".repeat(64)),
        version: None,
        facts: facts(),
        survey: Survey::default(),
        policy_key: Some("0".repeat(64)),
    })?;
    let mut bare_clients = Vec::new();
    for _ in 0..clients {
        bare_clients.push((bare.client()?, bare.url.clone(), body.clone()));
    }
    let post = |c: Arc<(reqwest::Client, String, Vec<u8>)>| async move {
        let (http, url, body) = &*c;
        http.post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        Ok(())
    };
    rate(bare_clients.clone(), 0.5, post).await?;
    let bare_rate = rate(bare_clients, secs, post).await?;
    Ok(Rates {
        clients,
        rampart,
        bare: bare_rate,
    })
}
