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
//! `--admin-devices N`, the admin API on a tenant of N devices (`admin.rs`);
//! with `--fleet N`, N agents in worker processes against the server as a
//! process of its own, one replica or two behind a load balancer (`fleet.rs`).

mod admin;
mod agent;
mod bare;
mod checkins;
mod fleet;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rampart_proto::device::OnboardingPackage;
use rampart_testkit::{Options, TestServer};
use serde_json::json;

use crate::agent::{enroll, Agent};
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
    /// Run this many agents in worker processes against `rampart-server`
    /// as a process of its own (`fleet.rs`); the server binary is taken
    /// from beside this one.
    #[arg(long)]
    fleet: Option<usize>,
    /// Worker processes for `--fleet`.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Server replicas for `--fleet`: 2 puts two on one PostgreSQL
    /// database (`--database-url`) behind nginx as a TCP load balancer.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Internal: run as one of `--fleet`'s worker processes, with this plan.
    #[arg(long, hide = true)]
    worker: Option<String>,
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
            let mut a = enroll(&package, format!("sim-{i:05}"), &package.server_url).await?;
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
    if let Some(plan) = &args.worker {
        return worker::run(plan).await;
    }
    if let Some(agents) = args.fleet {
        return fleet::measure(fleet::FleetArgs {
            agents,
            workers: args.workers,
            rounds: args.rounds,
            database_url: args.database_url.clone(),
            replicas: args.replicas,
        })
        .await;
    }
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
