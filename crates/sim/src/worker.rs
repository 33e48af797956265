//! `rampart-sim --worker PLAN`: one process of `--fleet`'s virtual agents.
//! The coordinator (`fleet.rs`) starts several, so that the agents' keys,
//! TLS sessions and sockets are not the server's process and no process
//! runs out of file descriptors.
//!
//! The plan (JSON) names the onboarding package, the device channel's URL
//! and which agents this worker runs. The worker enrolls them, lets each
//! check in once, prints `ready N`, and from then on every agent holds a
//! long poll and syncs when woken, as `rampart-agent` does: a lost
//! connection is retried after a pause and followed by a check-in, and a
//! status report is sent again until it is acknowledged. Events go to
//! stdout, one per line, with the machine's clock in microseconds:
//! `woke I US` (a long poll said sync), `applied I US` (a new policy
//! verified and its report acknowledged), `lost I US` (a long poll failed).
//! Commands come on stdin: `bare JSON` (make one client per agent for the
//! bare handler whose CA is given; answers `bare-ready`), `go` (each of
//! those clients makes one request; answers `bare-done`), `quit`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rampart_pki::CaBundle;
use rampart_proto::device::OnboardingPackage;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::agent::{enroll, Agent};

/// Microseconds since the Unix epoch: the clock every process of the
/// benchmark shares.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The pause before the `attempt`th retry, as `rampart-agent` backs off
/// (`run.rs`): 1 s doubling to a minute, each pause between half and all
/// of it, different per agent, so that agents that lost their server
/// together do not all come back in the same moment.
fn backoff(agent: usize, attempt: u32) -> Duration {
    let full = Duration::from_secs(1 << (attempt.clamp(1, 7) - 1)).min(Duration::from_secs(60));
    let unit = ((agent as u64 * 7919 + u64::from(attempt) * 104_729) % 1000) as f64 / 1000.0;
    full.mul_f64(0.5 + 0.5 * unit)
}

pub async fn run(plan_path: &str) -> Result<()> {
    let plan: Value = serde_json::from_str(
        &std::fs::read_to_string(plan_path).with_context(|| format!("reading {plan_path}"))?,
    )
    .context("the worker plan")?;
    let package: OnboardingPackage =
        serde_json::from_value(plan["package"].clone()).context("plan: package")?;
    let url = plan["device_url"]
        .as_str()
        .context("plan: device_url")?
        .to_string();
    let first = plan["first"].as_u64().context("plan: first")? as usize;
    let count = plan["count"].as_u64().context("plan: count")? as usize;

    let (events, mut lines) = mpsc::unbounded_channel::<String>();
    let printer = std::thread::spawn(move || {
        let stdout = std::io::stdout();
        while let Some(line) = lines.blocking_recv() {
            let mut out = stdout.lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return;
            }
        }
    });

    // Enroll with bounded concurrency: key generation and handshakes are
    // CPU work, and the server shares the machine.
    let gate = Arc::new(Semaphore::new(16));
    let mut joins = Vec::new();
    for i in first..first + count {
        let (gate, package, url) = (gate.clone(), package.clone(), url.clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let mut attempt = 0;
            let mut agent = loop {
                attempt += 1;
                match enroll(&package, format!("fleet-{i:05}"), &url).await {
                    Ok(a) => break a,
                    Err(e) if attempt >= 5 => return Err(e.context(format!("agent {i}"))),
                    Err(_) => tokio::time::sleep(backoff(i, attempt)).await,
                }
            };
            let mut attempt = 0;
            while let Err(e) = agent.sync().await {
                attempt += 1;
                if attempt >= 5 {
                    return Err(e.context(format!("agent {i}: first check-in")));
                }
                tokio::time::sleep(backoff(i, attempt)).await;
            }
            Ok::<_, anyhow::Error>(agent)
        }));
    }
    let mut agents = Vec::new();
    for j in joins {
        agents.push(j.await??);
    }
    events.send(format!("ready {count}"))?;

    for (k, agent) in agents.into_iter().enumerate() {
        tokio::spawn(hold(first + k, agent, events.clone()));
    }

    let mut bare: Vec<reqwest::Client> = Vec::new();
    let mut bare_url = String::new();
    // Commands are read on a thread of their own: stdin is blocking.
    let (commands_tx, mut commands) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if commands_tx.send(line).is_err() {
                return;
            }
        }
    });
    while let Some(line) = commands.recv().await {
        let (command, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match command {
            "bare" => {
                let spec: Value = serde_json::from_str(rest).context("bare: JSON")?;
                let ca = CaBundle {
                    cert_pem: spec["ca_cert"].as_str().context("bare: ca_cert")?.into(),
                    key_pem: spec["ca_key"].as_str().context("bare: ca_key")?.into(),
                };
                bare_url = spec["url"].as_str().context("bare: url")?.into();
                bare.clear();
                for _ in 0..count {
                    let c = crate::bare::client_of(&ca)?;
                    // One request opens the connection, as the agents' are open.
                    c.get(&bare_url).send().await?.error_for_status()?;
                    bare.push(c);
                }
                events.send("bare-ready".into())?;
            }
            "go" => {
                let mut joins = Vec::new();
                for c in &bare {
                    let (c, url) = (c.clone(), bare_url.clone());
                    joins.push(tokio::spawn(async move {
                        c.get(url).send().await?.error_for_status()?;
                        Ok::<_, anyhow::Error>(())
                    }));
                }
                for j in joins {
                    j.await??;
                }
                events.send("bare-done".into())?;
            }
            "quit" => break,
            other => bail!("unknown command {other:?}"),
        }
    }
    drop(events);
    // The agents' tasks still hold senders; the printer ends with the process.
    drop(printer);
    Ok(())
}

/// One agent, for the rest of the run: long poll, sync when told, and after
/// a lost connection a pause and a check-in.
async fn hold(i: usize, mut agent: Agent, events: mpsc::UnboundedSender<String>) {
    // Long polls lost in a row: the pause grows with them.
    let mut lost = 0;
    loop {
        match agent.wait().await {
            Ok(false) => {
                lost = 0;
                continue;
            }
            Ok(true) => {
                lost = 0;
                let _ = events.send(format!("woke {i} {}", now_us()));
            }
            Err(_) => {
                lost += 1;
                let _ = events.send(format!("lost {i} {}", now_us()));
                tokio::time::sleep(backoff(i, lost)).await;
            }
        }
        let mut attempt = 0;
        loop {
            match agent.sync().await {
                Ok(applied) => {
                    if applied {
                        let _ = events.send(format!("applied {i} {}", now_us()));
                    }
                    break;
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(backoff(i, attempt)).await;
                }
            }
        }
    }
}
