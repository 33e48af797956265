//! `rampart-sim --fleet N`: N agents in worker processes (`worker.rs`)
//! against `rampart-server` running as its own process, one replica or two
//! on one PostgreSQL database behind a TCP load balancer (nginx). Measured: the server's
//! resident memory with N long polls held, how long a nudge takes to reach
//! every held long poll, how long a policy change takes until every agent
//! has applied it and its report is acknowledged — and, with two replicas,
//! that a change made through one reaches the agents connected to the
//! other, and that killing a replica in the middle of a change moves its
//! agents to the other without losing a report. The same agents' processes
//! then each make one request per agent to a bare mutual-TLS handler: the
//! ratio is the cycle over that round.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::worker::now_us;

/// The policy every round changes (it targets the agents' Linux servers).
const POLICY: &str = "linux-av-baseline";

pub struct FleetArgs {
    pub agents: usize,
    pub workers: usize,
    pub rounds: usize,
    pub database_url: Option<String>,
    pub replicas: usize,
}

/// A `rampart-server` process, stopped by its PID when dropped.
struct ServerProcess {
    child: Child,
    admin: String,
    device: String,
}

impl ServerProcess {
    fn spawn(bin: &Path, data: &Path, extra: &[String]) -> Result<ServerProcess> {
        std::fs::create_dir_all(data)?;
        let log = std::fs::File::create(data.with_extension("log"))?;
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut out = BufReader::new(child.stdout.take().context("server stdout")?);
        let (mut admin, mut device) = (String::new(), String::new());
        let mut line = String::new();
        while admin.is_empty() || device.is_empty() {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
                bail!("the server stopped before it listened:\n{log}");
            }
            if let Some(a) = line.trim().strip_prefix("rampart-server is listening on ") {
                admin = a.to_string();
            }
            if let Some(d) = line.trim().strip_prefix("Device channel (mutual TLS) on ") {
                device = d.to_string();
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(ServerProcess {
            child,
            admin,
            device,
        })
    }

    fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }

    fn kill_9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// Waits for a child asked to stop; kills it after `limit`.
fn wait_or_kill(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process (the load balancer) stopped by its PID when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// nginx's TCP (stream) proxy in front of the replicas' device channels:
/// TLS passes through (each replica's certificate names 127.0.0.1), and a
/// connection to a replica that does not answer is tried on the next.
/// Four worker processes share the port (`reuseport`): each holds two
/// descriptors per agent, and one process may open at most 20,000 here.
/// Returns the process and the device URL.
fn start_balancer(dir: &Path, backends: &[&str]) -> Result<(Stopped, String)> {
    let port = free_port()?;
    let servers: String = backends
        .iter()
        .map(|url| {
            format!(
                "    server {} max_fails=3 fail_timeout=2s;\n",
                url.trim_start_matches("https://")
            )
        })
        .collect();
    let d = dir.display();
    let config = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         worker_processes 4;\nworker_rlimit_nofile 19000;\n\
         pid {d}/nginx.pid;\nerror_log {d}/nginx.log warn;\n\
         events {{ worker_connections 18000; }}\n\
         stream {{\n  upstream replicas {{\n{servers}  }}\n\
           server {{\n    listen 127.0.0.1:{port} reuseport;\n    proxy_pass replicas;\n\
             proxy_connect_timeout 1s;\n    proxy_timeout 180s;\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config)?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.stderr"))?)
        .spawn()
        .context("starting nginx (apt-get install nginx libnginx-mod-stream)")?;
    let child = Stopped(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default();
            bail!("nginx did not listen:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, format!("https://127.0.0.1:{port}")))
}

/// Connections each replica's device channel holds now.
fn connections(servers: &[ServerProcess]) -> Vec<usize> {
    let listing = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    servers
        .iter()
        .map(|s| {
            let port = format!(":{}", s.device.rsplit(':').next().unwrap_or_default());
            // Local address is the third column: the replica's own end.
            listing
                .lines()
                .filter(|l| {
                    l.split_whitespace()
                        .nth(2)
                        .is_some_and(|a| a.ends_with(&port))
                })
                .count()
        })
        .collect()
}

/// One worker process and the way to command it.
struct Worker {
    child: Child,
    stdin: ChildStdin,
}

impl Worker {
    fn command(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        wait_or_kill(&mut self.child, Duration::from_secs(5));
    }
}

/// What a worker printed: the event, the agent, the time (µs).
#[derive(Debug)]
struct Event {
    kind: String,
    agent: usize,
    at: i64,
}

fn spawn_worker(plan: &Path, events: mpsc::UnboundedSender<Event>) -> Result<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--worker")
        .arg(plan)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a worker")?;
    let stdin = child.stdin.take().context("worker stdin")?;
    let out = BufReader::new(child.stdout.take().context("worker stdout")?);
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            let mut f = line.split(' ');
            let kind = f.next().unwrap_or_default().to_string();
            let agent = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let at = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if events.send(Event { kind, agent, at }).is_err() {
                return;
            }
        }
    });
    Ok(Worker { child, stdin })
}

/// Waits for events until `done` says so, or fails after `limit`.
async fn collect(
    events: &mut mpsc::UnboundedReceiver<Event>,
    limit: Duration,
    what: &str,
    mut take: impl FnMut(Event) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => {
                if take(e) {
                    return Ok(());
                }
            }
            Ok(None) => bail!("{what}: the workers stopped"),
            Err(_) => bail!("{what}: not done within {} s", limit.as_secs()),
        }
    }
}

/// The admin API of one replica.
struct Admin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status}: {body}");
        }
        Ok(body)
    }

    /// Changes the policy's `max_file_size_mb` to `value`.
    async fn change(&self, value: u64) -> Result<()> {
        let mut policy = self
            .call(reqwest::Method::GET, &format!("/policies/{POLICY}"), None)
            .await?;
        policy["settings"]["max_file_size_mb"] = json!(value);
        for k in ["version", "modified_at", "modified_by"] {
            policy.as_object_mut().map(|o| o.remove(k));
        }
        self.call(
            reqwest::Method::PUT,
            &format!("/policies/{POLICY}"),
            Some(&policy),
        )
        .await?;
        Ok(())
    }

    /// How many devices the report of the setting each round changes counts
    /// as `succeeded`: each an agent whose report on the policy it should
    /// hold now is stored (the example fleet's own devices never report).
    async fn succeeded(&self) -> Result<u64> {
        let r = self
            .call(
                reqwest::Method::GET,
                "/reports/settings/max_file_size_mb?status=succeeded&limit=1",
                None,
            )
            .await?;
        r["devices_total"].as_u64().context("devices_total")
    }
}

/// One round's timings, in ms from the change.
struct Round {
    nudged_all: f64,
    applied: Vec<f64>,
}

impl Round {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.applied.clone();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default()
    }
}

/// Makes the change through `admin` and waits until every agent applied it
/// and had its report acknowledged; `midway` runs once half of them have.
async fn round(
    admin: &Admin,
    value: u64,
    agents: usize,
    events: &mut mpsc::UnboundedReceiver<Event>,
    mut midway: impl FnMut(),
) -> Result<Round> {
    // Events from before the change (a late reconnect) are not this round's.
    while events.try_recv().is_ok() {}
    let started = now_us();
    admin.change(value).await?;
    let mut woke: HashMap<usize, i64> = HashMap::new();
    let mut applied: HashMap<usize, i64> = HashMap::new();
    let mut half = false;
    let done = collect(events, Duration::from_secs(600), "the change", |e| {
        if e.at >= started {
            match e.kind.as_str() {
                "woke" => {
                    woke.entry(e.agent).or_insert(e.at);
                }
                "applied" => {
                    applied.entry(e.agent).or_insert(e.at);
                }
                _ => {}
            }
        }
        if !half && applied.len() * 2 >= agents {
            half = true;
            midway();
        }
        applied.len() >= agents
    })
    .await;
    if let Err(e) = done {
        bail!(
            "{e}: {} of {agents} agents woken, {} applied and reported",
            woke.len(),
            applied.len()
        );
    }
    let ms = |at: i64| (at - started) as f64 / 1000.0;
    Ok(Round {
        nudged_all: woke.values().copied().max().map_or(0.0, ms),
        applied: applied.values().copied().map(ms).collect(),
    })
}

pub async fn measure(args: FleetArgs) -> Result<()> {
    if args.replicas > 1 && args.database_url.is_none() {
        bail!("--replicas 2 needs --database-url: replicas share one PostgreSQL database");
    }
    let bin = std::env::current_exe()?
        .parent()
        .context("the executable's directory")?
        .join("rampart-server");
    if !bin.exists() {
        bail!(
            "{} not found: build it beside rampart-sim (cargo build --release -p rampart-server -p rampart-sim)",
            bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("rampart-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&args, &bin, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(args: &FleetArgs, bin: &Path, dir: &Path) -> Result<()> {
    let n = args.agents;
    let mut common: Vec<String> = Vec::new();
    if let Some(url) = &args.database_url {
        common.extend(["--database-url".into(), url.clone()]);
    }
    let mut first = common.clone();
    first.extend([
        "--load".into(),
        rampart_testkit::repo_path("examples/fleet")
            .display()
            .to_string(),
    ]);
    let data_a = dir.join("replica-a");
    let mut servers = vec![ServerProcess::spawn(bin, &data_a, &first)?];
    for k in 1..args.replicas {
        let mut extra = common.clone();
        extra.extend([
            "--master-key-file".into(),
            data_a.join("master.key").display().to_string(),
        ]);
        servers.push(ServerProcess::spawn(
            bin,
            &dir.join(format!("replica-{k}")),
            &extra,
        )?);
    }
    let backends: Vec<&str> = servers.iter().map(|s| s.device.as_str()).collect();
    let (balancer, device_url) = if servers.len() > 1 {
        let (b, url) = start_balancer(dir, &backends)?;
        (Some(b), url)
    } else {
        (None, servers[0].device.clone())
    };
    let admin = Admin {
        http: reqwest::Client::new(),
        url: servers[0].admin.clone(),
        token: std::fs::read_to_string(data_a.join("admin-token"))?
            .trim()
            .to_string(),
    };
    let package = admin
        .call(
            reqwest::Method::POST,
            "/onboarding",
            Some(&json!({"max_uses": n})),
        )
        .await?;

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let per = n.div_ceil(args.workers.max(1));
    let mut workers = Vec::new();
    let started = Instant::now();
    for (w, first) in (0..n).step_by(per).enumerate() {
        let plan = dir.join(format!("worker-{w}.json"));
        std::fs::write(
            &plan,
            serde_json::to_vec(&json!({
                "package": package,
                "device_url": device_url,
                "first": first,
                "count": per.min(n - first),
            }))?,
        )?;
        workers.push(spawn_worker(&plan, events_tx.clone())?);
    }
    drop(events_tx);
    let mut ready = 0;
    collect(&mut events, Duration::from_secs(1800), "enrollment", |e| {
        if e.kind == "ready" {
            ready += e.agent;
        }
        ready >= n
    })
    .await?;
    println!(
        "{n} agents in {} worker processes enrolled and checked in once in {:.1} s",
        workers.len(),
        started.elapsed().as_secs_f64()
    );
    // Let every long poll reach the server.
    tokio::time::sleep(Duration::from_millis(2000 + n as u64 / 2)).await;
    for (k, s) in servers.iter().enumerate() {
        println!(
            "replica {k}: RSS {:.0} MiB with the long polls held",
            s.rss_mib()
        );
    }
    println!("connections per replica: {:?}", connections(&servers));

    println!("| round | change → every agent woken | → all applied and reported | per agent p50 | p95 | reports stored |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut cycles: Vec<f64> = Vec::new();
    for r in 0..args.rounds {
        let round = round(&admin, 100 + r as u64, n, &mut events, || {}).await?;
        let stored = admin.succeeded().await?;
        cycles.push(round.pct(1.0));
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {stored} of {n} |",
            r + 1,
            round.nudged_all,
            round.pct(1.0),
            round.pct(0.5),
            round.pct(0.95)
        );
        if stored != n as u64 {
            bail!("round {}: {stored} reports stored of {n}", r + 1);
        }
    }

    if servers.len() > 1 {
        // The last replica dies (SIGKILL) once half the agents have the
        // change: its agents' long polls, check-ins and status reports are
        // cut wherever they were; each must reach the other replica through
        // the load balancer, and every report must be stored.
        let mut victim = servers.pop().context("a replica")?;
        let round = round(&admin, 500, n, &mut events, || {
            victim.kill_9();
        })
        .await?;
        let stored = admin.succeeded().await?;
        println!(
            "| replica killed at half | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {stored} of {n} |",
            round.nudged_all,
            round.pct(1.0),
            round.pct(0.5),
            round.pct(0.95)
        );
        println!(
            "connections on the replica left: {:?}",
            connections(&servers)
        );
        if stored != n as u64 {
            bail!("after losing a replica: {stored} reports stored of {n}");
        }
        drop(victim);
    }
    for (k, s) in servers.iter().enumerate() {
        println!("replica {k}: RSS {:.0} MiB at the end", s.rss_mib());
    }

    // The machine's floor: one request per agent, from the same worker
    // processes, to a bare mutual-TLS handler in this process.
    let bare = crate::bare::BareHandler::start().await?;
    let spec = json!({"url": bare.url, "ca_cert": bare.ca.cert_pem, "ca_key": bare.ca.key_pem});
    for w in &mut workers {
        w.command(&format!("bare {spec}"))?;
    }
    let mut count = 0;
    collect(&mut events, Duration::from_secs(600), "bare clients", |e| {
        count += usize::from(e.kind == "bare-ready");
        count >= workers.len()
    })
    .await?;
    let go = Instant::now();
    for w in &mut workers {
        w.command("go")?;
    }
    let mut count = 0;
    collect(&mut events, Duration::from_secs(600), "bare round", |e| {
        count += usize::from(e.kind == "bare-done");
        count >= workers.len()
    })
    .await?;
    let bare_ms = go.elapsed().as_secs_f64() * 1000.0;
    // Each round's own ratio: one round can be far off the others (a
    // database that fell behind), and a median of two hides which.
    let ratios: Vec<String> = cycles
        .iter()
        .map(|c| format!("{:.1}×", c / bare_ms.max(1e-9)))
        .collect();
    println!(
        "bare mutual-TLS round, {n} clients: {bare_ms:.0} ms; ratio per round (change → all reported / bare round): {}",
        ratios.join(", ")
    );
    drop(workers);
    drop(balancer);
    drop(servers);
    Ok(())
}
