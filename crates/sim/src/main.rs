//! `rampart-sim`: simulates N agents in one process, each with its own key
//! and certificate over real mutual TLS, against an in-process
//! `rampart-server` on SQLite, and measures how long a policy change takes to
//! reach every agent and come back as status.
//!
//! Each virtual agent does what `rampart-agent` does on the wire: enroll,
//! check in, report status, hold a long poll. The measured cycle is: an
//! administrator changes a policy → the server wakes the waiting agents
//! (paced) → each checks in, verifies the signed policy, reports status →
//! the server acknowledges. For scale, the same N agents then each make one
//! request to a bare TLS handler on the same machine; the ratio of the two
//! is the number to compare across machines.
//!
//! With `--checkins`, it measures unchanged check-ins per second instead
//! (`checkins.rs`), on SQLite or, with `--database-url`, PostgreSQL; with
//! `--admin-devices N`, the admin API on a tenant of N devices (`admin.rs`).

mod admin;
mod bare;
mod checkins;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rampart_proto::device::{
    CheckIn, CheckInResponse, EnrollResponse, Facts, OnboardingPackage, PolicyPayload, Survey,
};
use rampart_testkit::{Options, TestServer};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(
    name = "rampart-sim",
    about = "How long a policy change takes to reach N agents over mutual TLS"
)]
struct Args {
    /// Agent counts to measure, e.g. `--agents 1 --agents 100 --agents 1000`.
    #[arg(long, default_values_t = vec![1, 100])]
    agents: Vec<usize>,
    /// Policy changes measured per agent count (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measure unchanged check-ins per second instead, with this many
    /// clients (repeatable).
    #[arg(long)]
    checkins: Vec<usize>,
    /// How long each check-in measurement runs, in seconds.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// A PostgreSQL URL for the server of `--checkins` or
    /// `--admin-devices`; SQLite when absent.
    #[arg(long)]
    database_url: Option<String>,
    /// Time the admin API (device pages, a policy report, a preview) on a
    /// tenant with this many devices, written straight into the store.
    #[arg(long)]
    admin_devices: Option<usize>,
}

struct Agent {
    http: reqwest::Client,
    url: String,
    policy_key: String,
    digest: String,
}

fn facts() -> Facts {
    Facts {
        hostname: "sim".into(),
        os: "linux".into(),
        os_version: "22.04".into(),
        device_type: "server".into(),
        agent_version: "sim".into(),
        tags: vec!["web".into()],
        ..Facts::default()
    }
}

async fn enroll(package: &OnboardingPackage, name: String) -> Result<Agent> {
    let key = rampart_pki::new_device_key()?;
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(rampart_pki::client_config(&package.server_ca_pem, None)?)
        .build()?;
    let body = json!({"token": package.token, "device_name": name, "csr_pem": rampart_pki::csr_pem(&key, &name)?, "facts": facts(), "survey": Survey::default()});
    let resp = anonymous
        .post(format!("{}/device/v1/enroll", package.server_url))
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("enroll {name}: {}", resp.text().await?);
    }
    let e: EnrollResponse = resp.json().await?;
    let tls = rampart_pki::client_config(
        &package.server_ca_pem,
        Some((&e.certificate_pem, &key.key_pem)),
    )?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(2)
        .build()?;
    Ok(Agent {
        http,
        url: package.server_url.clone(),
        policy_key: e.policy_key,
        digest: String::new(),
    })
}

impl Agent {
    /// The check-in this agent sends: the digest and key it holds.
    fn checkin(&self) -> CheckIn {
        CheckIn {
            digest: Some(self.digest.clone()),
            version: None,
            facts: facts(),
            survey: Survey::default(),
            policy_key: Some(self.policy_key.clone()),
        }
    }

    /// Check in; verify and "apply" a new policy; report; returns whether a
    /// new policy came.
    async fn sync(&mut self) -> Result<bool> {
        let body = self.checkin();
        let r: CheckInResponse = self
            .http
            .post(format!("{}/device/v1/checkin", self.url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let Some(signed) = r.policy else {
            return Ok(false);
        };
        rampart_pki::verify(
            &self.policy_key,
            signed.payload.as_bytes(),
            &signed.signature,
        )?;
        let payload: PolicyPayload = serde_json::from_str(&signed.payload)?;
        let statuses: Vec<Value> = payload.resolution["settings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| json!({"setting": s["setting"], "key": null, "status": "succeeded", "observed": s["value"], "error_code": null, "error_message": null}))
            .collect();
        let report = json!({"report_id": format!("{}-{}", payload.device_id, payload.version), "digest": payload.digest, "version": payload.version, "statuses": statuses});
        self.http
            .post(format!("{}/device/v1/status", self.url))
            .json(&report)
            .send()
            .await?
            .error_for_status()?;
        self.digest = payload.digest;
        Ok(true)
    }

    /// Long-polls until the server says sync, then syncs.
    async fn wait_and_sync(&mut self) -> Result<()> {
        loop {
            let w: Value = self
                .http
                .get(format!(
                    "{}/device/v1/wait?digest={}&timeout=120",
                    self.url, self.digest
                ))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if w["event"] == "sync" && self.sync().await? {
                return Ok(());
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

struct Measurement {
    agents: usize,
    /// Change → every agent's status acknowledged, per round.
    full: Vec<Duration>,
    /// Per-agent latency of the last round.
    per_agent: Vec<Duration>,
    /// N agents each making one request to a bare TLS handler.
    bare: Duration,
}

async fn measure(n: usize, rounds: usize) -> Result<Measurement> {
    let server = TestServer::start_with(Options {
        load: Some(rampart_testkit::repo_path("examples/fleet")),
        ..Options::default()
    })
    .await?;
    let admin = server.admin();
    let (_, p) = admin.post("/onboarding", &json!({"max_uses": n})).await?;
    let package: OnboardingPackage = serde_json::from_value(p).context("package")?;
    // Enroll with bounded concurrency: key generation and TLS handshakes are
    // CPU work on a small machine.
    let gate = Arc::new(Semaphore::new(32));
    let mut joins = Vec::new();
    for i in 0..n {
        let (gate, package) = (gate.clone(), package.clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let mut a = enroll(&package, format!("sim-{i:05}")).await?;
            a.sync().await?;
            Ok::<_, anyhow::Error>(a)
        }));
    }
    let mut agents = Vec::new();
    for j in joins {
        agents.push(j.await??);
    }

    let mut full = Vec::new();
    let mut per_agent = Vec::new();
    for round in 0..rounds {
        let mut waiting = Vec::new();
        for mut a in agents.drain(..) {
            waiting.push(tokio::spawn(async move {
                a.wait_and_sync().await?;
                Ok::<_, anyhow::Error>((a, Instant::now()))
            }));
        }
        // Let every long poll reach the server before the change.
        tokio::time::sleep(Duration::from_millis(500 + n as u64)).await;
        let started = Instant::now();
        let mut policy = admin.get("/policies/linux-av-baseline").await?.1;
        policy["settings"]["max_file_size_mb"] = json!(100 + round);
        for k in ["version", "modified_at", "modified_by"] {
            policy.as_object_mut().map(|o| o.remove(k));
        }
        let (s, b) = admin.put("/policies/linux-av-baseline", &policy).await?;
        if !s.is_success() {
            bail!("policy change refused: {b}");
        }
        per_agent.clear();
        for w in waiting {
            let (a, done) = w.await??;
            per_agent.push(done - started);
            agents.push(a);
        }
        full.push(started.elapsed());
    }
    let bare = bare_tls_round(&agents).await?;
    server.stop().await?;
    Ok(Measurement {
        agents: n,
        full,
        per_agent,
        bare,
    })
}

/// N clients, one request each, to the bare mutual-TLS handler (same
/// rustls configuration, no database, no policy): the machine's floor.
async fn bare_tls_round(agents: &[Agent]) -> Result<Duration> {
    let bare = bare::BareHandler::start().await?;
    let clients: Vec<reqwest::Client> = agents
        .iter()
        .map(|_| bare.client())
        .collect::<Result<_>>()?;
    // Warm: one request each opens the connections, as the agents' are open.
    for c in &clients {
        c.get(&bare.url).send().await?.error_for_status()?;
    }
    let started = Instant::now();
    let mut joins = Vec::new();
    for c in clients {
        let url = bare.url.clone();
        joins.push(tokio::spawn(async move {
            c.get(url)
                .send()
                .await?
                .error_for_status()
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }));
    }
    for j in joins {
        j.await??;
    }
    Ok(started.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    rampart_pki::install_crypto_provider();
    if let Some(devices) = args.admin_devices {
        return admin::measure(devices, args.database_url.clone()).await;
    }
    if !args.checkins.is_empty() {
        let backend = if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        println!("| clients | unchanged check-ins/s ({backend}) | bare mTLS handler, requests/s | ratio |");
        println!("|---:|---:|---:|---:|");
        let database = args
            .database_url
            .clone()
            .map(checkins::Database::new)
            .transpose()?;
        for &clients in &args.checkins {
            let r = checkins::measure(clients, args.secs, database.as_ref()).await?;
            println!(
                "| {} | {:.0} | {:.0} | {:.2} |",
                r.clients,
                r.rampart,
                r.bare,
                r.rampart / r.bare.max(1e-9)
            );
        }
        return Ok(());
    }
    println!("| agents | change → all statuses back (median of {}) | per agent p50 | p95 | max | bare TLS round, same agents | ratio |", args.rounds);
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.agents {
        let m = measure(n, args.rounds.max(1)).await?;
        let full = median(m.full.clone());
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1}× |",
            m.agents,
            ms(full),
            ms(percentile(&m.per_agent, 0.5)),
            ms(percentile(&m.per_agent, 0.95)),
            ms(percentile(&m.per_agent, 1.0)),
            ms(m.bare),
            full.as_secs_f64() / m.bare.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
