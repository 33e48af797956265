//! End to end: a real `rampart-server` (in-process, port 0) and several real
//! `rampart-agent` processes on loopback, each with its own state directory
//! and facts, over mutual TLS. Every agent process is stopped by its own PID.
// A real rampart-server runs beside the agent: Linux (and macOS) only;
// the Windows agent's end-to-end test is windows_wine.rs, run from Linux.
#![cfg(not(windows))]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::{Options, TestServer};
use serde_json::{json, Value};

const AGENT: &str = env!("CARGO_BIN_EXE_rampart-agent");

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rampart-e2e-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An onboarding package in a file of its own, removed with its directory
/// when dropped.
struct PackageFile {
    dir: PathBuf,
    path: PathBuf,
}

impl PackageFile {
    fn write(tag: &str, package: &Value) -> PackageFile {
        let dir = temp_dir(tag);
        let path = dir.join("package.json");
        std::fs::write(&path, package.to_string()).unwrap();
        PackageFile { dir, path }
    }
}

impl std::ops::Deref for PackageFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for PackageFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes an onboarding package to a file.
async fn package(server: &TestServer, body: Value) -> PackageFile {
    let (s, p) = server.admin().post("/onboarding", &body).await.unwrap();
    assert!(s.is_success(), "{p}");
    PackageFile::write("package", &p)
}

/// One agent: a state directory, its facts and configuration, and maybe a
/// running `rampart-agent run` process.
struct Agent {
    name: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn new(name: &str, facts: &str, config: &str) -> Agent {
        let dir = temp_dir(name);
        std::fs::write(dir.join("facts.yaml"), facts).unwrap();
        let config = format!("check_in_interval_secs = 3600\nwait_timeout_secs = 20\n[survey]\nbuiltin = false\n{config}");
        std::fs::write(dir.join("agent.toml"), config).unwrap();
        Agent {
            name: name.to_string(),
            dir,
            child: None,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(AGENT);
        c.args(args)
            .arg("--state-dir")
            .arg(self.state())
            .arg("--config")
            .arg(self.dir.join("agent.toml"))
            .env("RAMPART_AGENT_LOG", "info");
        c
    }

    fn onboard(&self, package: &Path) -> Output {
        self.cmd(&[
            "onboard",
            "--package",
            package.to_str().unwrap(),
            "--device-name",
            &self.name,
            "--facts",
            self.dir.join("facts.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap()
    }

    fn start(&mut self) {
        self.start_with_env(&[]);
    }

    fn start_with_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.join("agent.log")).unwrap();
        let child = self
            .cmd(&["run"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM by PID, then wait for the exit.
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            support::stop_process(child);
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    fn status(&self) -> Value {
        let out = self.cmd(&["status", "-o", "json"]).output().unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn enforced(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state().join("enforced/settings.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` until it is true or `secs` pass.
async fn eventually(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn device_report(server: &TestServer, name: &str) -> Value {
    server
        .admin()
        .get(&format!("/reports/devices/{name}"))
        .await
        .unwrap()
        .1
}

fn row<'a>(report: &'a Value, setting: &str) -> &'a Value {
    report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["setting"] == setting)
        .unwrap_or(&Value::Null)
}

const WEB: &str = "os: linux\nos_version: \"22.04\"\ntype: server\ntags: [web, MDE-Management]\n";

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_survey_outcomes_and_pilot_mode() {
    let server = TestServer::with_examples().await.unwrap();
    server
        .admin()
        .put(
            "/tenant/settings",
            &json!({"enforcement": {"linux": "tagged"}}),
        )
        .await
        .unwrap();
    let pkg = package(&server, json!({})).await;

    let pilot = Agent::new("pilot-01", WEB, "");
    let out = pilot.onboard(&pkg);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = pilot.status();
    assert_eq!(st["state"], "enrolled", "{st}");
    let dev = server.admin().get("/devices/pilot-01").await.unwrap().1;
    assert_eq!(dev["labels"], json!(["Joined", "Managed"]));
    assert_eq!(dev["managed_by"], "rampart");

    let untagged = Agent::new("untagged-01", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(untagged.onboard(&pkg).status.success());
    let st = untagged.status();
    assert_eq!(st["state"], "not_managed", "{st}");
    assert_eq!(st["enrollment"]["code"], "pilot_tag_missing");
    let dev = server.admin().get("/devices/untagged-01").await.unwrap().1;
    assert_eq!(dev["enrollment"]["code"], "pilot_tag_missing");
    assert_eq!(dev["labels"], json!(["Joined"]));

    let marker_dir = temp_dir("marker");
    std::fs::write(marker_dir.join("enrolled"), "yes").unwrap();
    let other = Agent::new(
        "other-mdm-01",
        WEB,
        &format!(
            "[[survey.markers]]\npath = \"{}\"\nauthority = \"othermdm\"\n",
            marker_dir.join("enrolled").display()
        ),
    );
    assert!(other.onboard(&pkg).status.success());
    let st = other.status();
    assert_eq!(st["managed_by"], "othermdm", "{st}");
    assert_eq!(st["enrollment"]["code"], "managed_by_other_authority");
    let shown = server.admin().get("/devices/other-mdm-01").await.unwrap().1;
    assert_eq!(shown["managed_by"], "othermdm");

    // Onboarding again reuses the identity: still one device.
    let again = pilot.onboard(&pkg);
    assert!(again.status.success(), "{}", stderr(&again));
    let devices = server.admin().get("/devices").await.unwrap().1;
    assert_eq!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["name"] == "pilot-01")
            .count(),
        1
    );

    // Takeover allowed: the same survey result no longer stops management.
    server
        .admin()
        .put("/tenant/settings", &json!({"allow_takeover": true}))
        .await
        .unwrap();
    let taken = Agent::new(
        "taken-over-01",
        WEB,
        &format!(
            "[[survey.markers]]\npath = \"{}\"\nauthority = \"othermdm\"\n",
            marker_dir.join("enrolled").display()
        ),
    );
    assert!(taken.onboard(&pkg).status.success());
    assert_eq!(taken.status()["state"], "enrolled");
    assert_eq!(
        server
            .admin()
            .get("/devices/taken-over-01")
            .await
            .unwrap()
            .1["managed_by"],
        "rampart"
    );

    // A device of this tenant does not join another tenant.
    let store = server.store().unwrap();
    let (_, other_admin) = rampart_server::bootstrap::create_tenant(
        store.as_ref(),
        "acme",
        rampart_testkit::TEST_EPOCH,
    )
    .await
    .unwrap();
    let (s, acme) = server
        .client(&other_admin)
        .post("/onboarding", &json!({}))
        .await
        .unwrap();
    assert!(s.is_success());
    let acme_pkg = PackageFile::write("acme", &acme);
    let out = pilot.onboard(&acme_pkg);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already onboarded to tenant"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.client(&other_admin).get("/devices").await.unwrap().1,
        json!([])
    );

    // An expired package is refused with the reason.
    let short = package(&server, json!({"expires_in_seconds": 60})).await;
    server.clock.advance(120);
    let late = Agent::new("late-01", WEB, "");
    let out = late.onboard(&short);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&marker_dir);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_changes_and_sync_reach_several_agents_and_statuses_come_back() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agents = vec![
        Agent::new("web-a", "os: linux\ntype: server\ntags: [web]\n", ""),
        Agent::new("web-b", "os: linux\ntype: server\ntags: [web]\n", ""),
        Agent::new("db-a", "os: linux\ntype: server\ntags: [db]\n", ""),
    ];
    for a in &mut agents {
        let out = a.onboard(&pkg);
        assert!(out.status.success(), "{}", stderr(&out));
        a.start();
    }
    for a in &agents {
        eventually(
            30,
            &format!("{} applies its policy and reports", a.name),
            async || {
                let r = device_report(&server, &a.name).await;
                row(&r, "real_time_protection")["status"] == "recorded"
            },
        )
        .await;
        assert_eq!(a.enforced().unwrap()["real_time_protection"], true);
    }
    // The conflict on the web tier shows as a conflict, with both policies.
    let web = device_report(&server, "web-a").await;
    assert_eq!(row(&web, "pua_protection")["status"], "conflict");
    assert_eq!(
        row(&web, "pua_protection")["other_policies"],
        json!(["linux-av-baseline", "linux-av-web"])
    );

    // A policy change reaches every targeted agent within seconds.
    let started = Instant::now();
    let mut p = server
        .admin()
        .get("/policies/linux-av-baseline")
        .await
        .unwrap()
        .1;
    p["settings"]["scan_archives"] = json!(false);
    for k in ["version", "modified_at", "modified_by"] {
        p.as_object_mut().unwrap().remove(k);
    }
    let (s, b) = server
        .admin()
        .put("/policies/linux-av-baseline", &p)
        .await
        .unwrap();
    assert!(s.is_success(), "{b}");
    for a in &agents {
        eventually(
            15,
            &format!("{} gets scan_archives=false", a.name),
            async || a.enforced().is_some_and(|e| e["scan_archives"] == false),
        )
        .await;
        eventually(
            15,
            &format!("{}'s new status reaches the server", a.name),
            async || {
                let r = device_report(&server, &a.name).await;
                r["digest"] == r["applied_digest"]
                    && row(&r, "scan_archives")["status"] == "recorded"
            },
        )
        .await;
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    let report = server
        .admin()
        .get("/reports/policies/linux-av-baseline")
        .await
        .unwrap()
        .1;
    assert!(
        report["settings"]["scan_archives"]["recorded"]
            .as_u64()
            .unwrap()
            >= 3,
        "{report}"
    );

    // "Policy sync" reaches a connected agent.
    let before = agents[2].status()["last_check_in"].clone();
    // Check-in times are whole seconds: make sure the next one is later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, sync) = server
        .admin()
        .post("/devices/db-a/sync", &json!({}))
        .await
        .unwrap();
    assert_eq!(sync["connected"], true, "{sync}");
    eventually(10, "db-a checks in after a sync", async || {
        agents[2].status()["last_check_in"] != before
    })
    .await;

    let local = agents[0].status();
    let rta = local["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["setting"] == "real_time_protection")
        .unwrap()
        .clone();
    assert_eq!(rta["status"], "recorded");
    assert_eq!(rta["backend"], "file");
    assert_eq!(rta["sources"], json!(["linux-av-baseline", "linux-av-web"]));
    for a in &mut agents {
        a.stop();
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_keeps_enforcement_and_the_outbox_drains_after() {
    let mut server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-out", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    agent.start();
    eventually(30, "the first policy is applied", async || {
        agent.enforced().is_some()
    })
    .await;
    let digest = agent.status()["policy"]["digest"].clone();

    server.halt().await.unwrap();
    // The server is gone: the agent keeps what it enforces.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        agent.exited().is_none(),
        "the agent survives the outage: {}",
        agent.log()
    );
    assert_eq!(agent.enforced().unwrap()["real_time_protection"], true);
    // Restarted during the outage, it enforces the last verified policy from
    // disk and queues its report.
    agent.stop();
    std::fs::remove_file(agent.state().join("enforced/settings.json")).unwrap();
    agent.start();
    eventually(20, "the policy is enforced again from disk", async || {
        agent.enforced().is_some()
    })
    .await;
    eventually(10, "a report waits in the outbox", async || {
        agent.status()["outbox"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(agent.status()["policy"]["digest"], digest);

    server.resume().await.unwrap();
    eventually(
        90,
        "the outbox drains once the server is back",
        async || agent.status()["outbox"] == 0,
    )
    .await;
    let r = device_report(&server, "web-out").await;
    assert_eq!(row(&r, "real_time_protection")["status"], "recorded", "{r}");
    agent.stop();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_device_is_refused_at_once_and_removes_what_it_set() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-del", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    agent.start();
    eventually(30, "the policy is applied", async || {
        agent
            .enforced()
            .is_some_and(|e| e["real_time_protection"] == true)
    })
    .await;

    let (s, _) = server.admin().delete("/devices/web-del").await.unwrap();
    assert!(s.is_success());
    eventually(
        15,
        "the agent learns it was deleted and stops",
        async || agent.exited().is_some(),
    )
    .await;
    let st = agent.status();
    assert_eq!(st["state"], "revoked", "{st}");
    // real_time_protection reverts when unassigned: nothing Rampart set stays.
    assert!(
        agent
            .enforced()
            .is_none_or(|e| e.get("real_time_protection").is_none()),
        "{:?}",
        agent.enforced()
    );
    server.stop().await.unwrap();
}

fn identity_key(agent: &Agent) -> String {
    let identity = support::read_json(&agent.state().join("identity.json")).unwrap();
    identity["policy_key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_policy_key_is_taken_without_onboarding_again() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-rot", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    agent.start();
    eventually(30, "the first policy is applied", async || {
        agent
            .enforced()
            .is_some_and(|e| e["real_time_protection"] == true)
    })
    .await;
    let enrolled_key = identity_key(&agent);

    // Two rotations while the agent holds a policy signed with the first
    // key: it keeps enforcing that one, also across a restart.
    let admin = server.admin();
    for _ in 0..2 {
        let (s, r) = admin
            .post("/tenant/policy-key/rotate", &json!({}))
            .await
            .unwrap();
        assert!(s.is_success(), "{r}");
    }
    let current = admin.get("/tenant/policy-key").await.unwrap().1["key"]
        .as_str()
        .unwrap()
        .to_string();
    agent.stop();
    let st = agent.status();
    assert!(st["policy_problem"].is_null(), "{st}");
    assert!(
        st["policy"]["version"].is_u64(),
        "the held policy still counts: {st}"
    );
    agent.start();

    // The next policy is signed with the newest key; the agent follows the
    // announcements from its own key and enforces it.
    support::put_policy(
        &server,
        &support::policy(
            "rotation-check",
            "antivirus_exclusions",
            json!({"excluded_extensions": ["rot"]}),
        ),
    )
    .await;
    eventually(
        30,
        "the policy signed with the new key is applied",
        async || {
            agent
                .enforced()
                .is_some_and(|e| e["excluded_extensions"].to_string().contains("rot"))
        },
    )
    .await;
    assert_eq!(identity_key(&agent), current);
    assert_ne!(current, enrolled_key);
    assert!(
        agent.log().contains("policy_key_rotated"),
        "{}",
        agent.log()
    );
    let st = agent.status();
    assert!(st["policy_problem"].is_null(), "{st}");
    assert!(st["last_error"].is_null(), "{st}");

    // A further rotation, then deletion: the notice is signed with a key
    // the agent has not seen yet and comes with the announcement.
    admin
        .post("/tenant/policy-key/rotate", &json!({}))
        .await
        .unwrap();
    let (s, _) = admin.delete("/devices/web-rot").await.unwrap();
    assert!(s.is_success());
    eventually(15, "the agent verifies the notice and stops", async || {
        agent.exited().is_some()
    })
    .await;
    assert_eq!(agent.status()["state"], "revoked");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn offboarding_tells_the_server_and_cleans_up() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-off", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    agent.start();
    eventually(30, "the policy is applied", async || {
        agent.enforced().is_some()
    })
    .await;
    agent.stop();
    let out = agent.cmd(&["offboard"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        server.admin().get("/devices/web-off").await.unwrap().0,
        reqwest::StatusCode::NOT_FOUND
    );
    assert!(agent
        .enforced()
        .is_none_or(|e| e.get("real_time_protection").is_none()));
    assert_ne!(agent.status()["state"], "enrolled");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn offboarding_while_the_agent_runs_stops_it_promptly() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-off-run", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    // A request an earlier `offboard` left behind when it gave up is not
    // acted on by a later start.
    std::fs::write(agent.state().join("offboard.request"), "{\"force\": false}").unwrap();
    agent.start();
    eventually(30, "the policy is applied", async || {
        agent
            .enforced()
            .is_some_and(|e| e.get("real_time_protection").is_some())
    })
    .await;
    assert_eq!(agent.status()["state"], "enrolled");
    assert!(!agent.state().join("offboard.request").exists());
    // The running agent does the offboarding itself and stops: no check-in
    // interval to wait for, and no "revoked" story afterwards.
    let started = Instant::now();
    let out = agent
        .cmd(&["offboard", "--wait-secs", "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stderr(&out), agent.log());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("offboarded device web-off-run"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eventually(10, "the running agent exits", async || {
        agent.exited().is_some()
    })
    .await;
    assert!(agent.exited().unwrap().success(), "{}", agent.log());
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = agent.log();
    assert!(log.contains("offboard_requested"), "{log}");
    assert!(!log.contains("revoked"), "{log}");
    assert_eq!(
        server.admin().get("/devices/web-off-run").await.unwrap().0,
        reqwest::StatusCode::NOT_FOUND
    );
    assert!(agent
        .enforced()
        .is_none_or(|e| e.get("real_time_protection").is_none()));
    assert_eq!(agent.status()["state"], "not_onboarded");
    assert!(!agent.state().join("offboard.request").exists());
    assert!(!agent.state().join("offboard.result").exists());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_renewed_before_they_expire() {
    let server = TestServer::start_with(Options {
        load: Some(rampart_testkit::repo_path("examples/fleet")),
        cert_lifetime_secs: Some(60),
        ..Options::default()
    })
    .await
    .unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-renew", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    let first = agent.status()["certificate_not_after"].as_i64().unwrap();
    // The test clock stands still unless moved: move it so that a renewed
    // certificate expires later than the first.
    server.clock.advance(5);
    agent.start();
    // Renewal is due when a third of the lifetime is left: after ~40 s.
    eventually(60, "the agent renews its certificate", async || {
        agent.status()["certificate_not_after"]
            .as_i64()
            .unwrap_or(0)
            > first
    })
    .await;
    // And keeps working with the new one.
    server.clock.advance(1);
    let (_, sync) = server
        .admin()
        .post("/devices/web-renew/sync", &json!({}))
        .await
        .unwrap();
    let _ = sync;
    eventually(
        20,
        "check-ins succeed with the renewed certificate",
        async || {
            let d = server.admin().get("/devices/web-renew").await.unwrap().1;
            d["enrollment"]["status"] == "enrolled" && agent.exited().is_none()
        },
    )
    .await;
    agent.stop();
    server.stop().await.unwrap();
}

/// A device channel that answers check-ins with whatever signed policy the
/// test puts in `answer`: the stand-in for a compromised transport. It
/// presents a certificate from the real installation CA, so the agent's pin
/// holds, and accepts the tenant's device certificates.
struct FakeChannel {
    url: String,
    answer: std::sync::Arc<std::sync::Mutex<Value>>,
    task: tokio::task::JoinHandle<()>,
}

async fn fake_channel(server: &TestServer) -> FakeChannel {
    use axum::routing::{get, post};
    let store = server.store().unwrap();
    let ca: (String, String) = serde_json::from_str(
        &store
            .server_secret("device_channel_ca")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let ca = rampart_pki::CaBundle {
        cert_pem: ca.0,
        key_pem: ca.1,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (cert, key) =
        rampart_pki::issue_server_cert(&ca, &["127.0.0.1".into()], now - 60, now + 3600).unwrap();
    let tenant = store.tenant_by_name("default").await.unwrap().unwrap();
    let roots = rampart_pki::ClientCaRoots::new(&[store
        .tenant_secrets(&tenant.id)
        .await
        .unwrap()
        .unwrap()
        .ca_cert_pem])
    .unwrap();
    let tls = rampart_pki::server_config(&cert, &key, roots).unwrap();
    let answer = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let served = answer.clone();
    let app = axum::Router::new()
        .route(
            "/device/v1/checkin",
            post(move || {
                let body = served.lock().unwrap().clone();
                async move { axum::Json(body) }
            }),
        )
        // Ask for a check-in every fraction of a second.
        .route(
            "/device/v1/wait",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                axum::Json(json!({"event": "sync"}))
            }),
        )
        .route(
            "/device/v1/status",
            post(|axum::Json(r): axum::Json<Value>| async move {
                axum::Json(json!({"report_id": r["report_id"], "changed": 0}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                }
            });
        }
    });
    FakeChannel { url, answer, task }
}

fn held(agent: &Agent) -> Value {
    serde_json::from_str(&std::fs::read_to_string(agent.state().join("policy.json")).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_and_replayed_policies_are_refused() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-tamper", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    agent.start();
    eventually(30, "version 1 is applied", async || {
        agent.enforced().is_some()
    })
    .await;
    let v1 = held(&agent)["signed"].clone();
    // A real change gives a real, newer version 2.
    let mut p = server
        .admin()
        .get("/policies/linux-av-baseline")
        .await
        .unwrap()
        .1;
    p["settings"]["scan_archives"] = json!(false);
    for k in ["version", "modified_at", "modified_by"] {
        p.as_object_mut().unwrap().remove(k);
    }
    server
        .admin()
        .put("/policies/linux-av-baseline", &p)
        .await
        .unwrap();
    eventually(15, "version 2 is applied", async || {
        agent
            .enforced()
            .is_some_and(|e| e["scan_archives"] == false)
    })
    .await;
    let v2 = held(&agent)["signed"].clone();
    agent.stop();

    // Point the agent at a channel that lies.
    let fake = fake_channel(&server).await;
    let identity_path = agent.state().join("identity.json");
    let mut identity: Value =
        serde_json::from_str(&std::fs::read_to_string(&identity_path).unwrap()).unwrap();
    identity["server_url"] = json!(fake.url);
    std::fs::write(&identity_path, identity.to_string()).unwrap();
    let enrollment = json!({"status": "enrolled", "code": null, "reason": null, "managed_by": "rampart", "labels": ["Joined", "Managed"]});

    // 1. Version 2's payload with one value changed, under its original signature.
    let mut altered: Value = serde_json::from_str(v2["payload"].as_str().unwrap()).unwrap();
    for s in altered["resolution"]["settings"].as_array_mut().unwrap() {
        if s["setting"] == "scan_archives" {
            s["value"] = json!(true);
        }
    }
    let tampered = altered.to_string();
    assert_ne!(
        tampered,
        v2["payload"].as_str().unwrap(),
        "the payload was altered"
    );
    *fake.answer.lock().unwrap() = json!({"enrollment": enrollment, "policy": {"payload": tampered, "signature": v2["signature"]}});
    agent.start();
    eventually(15, "the tampered policy is refused", async || {
        agent.status()["last_error"]["code"] == "policy_bad_signature"
    })
    .await;
    assert_eq!(
        agent.enforced().unwrap()["scan_archives"],
        false,
        "the held policy stays enforced"
    );
    assert_eq!(held(&agent)["version"], 2);

    // 2. The genuine, validly signed version 1 again: a replay of an older policy.
    *fake.answer.lock().unwrap() = json!({"enrollment": enrollment, "policy": v1});
    eventually(15, "the older policy is refused", async || {
        agent.status()["last_error"]["code"] == "policy_older"
    })
    .await;
    assert_eq!(agent.enforced().unwrap()["scan_archives"], false);
    assert_eq!(held(&agent)["version"], 2);
    agent.stop();
    fake.task.abort();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_takeover_by_name_is_refused_and_the_real_device_keeps_its_settings() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut real = Agent::new("web-take", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(real.onboard(&pkg).status.success());
    real.start();
    eventually(30, "the policy is applied", async || {
        real.enforced()
            .is_some_and(|e| e["real_time_protection"] == true)
    })
    .await;

    // Someone with an onboarding token claims the name, in another case.
    let attacker = Agent::new("WEB-TAKE", "os: windows\ntype: workstation\n", "");
    let out = attacker.onboard(&pkg);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("device_name_taken"),
        "{}",
        stderr(&out)
    );

    // The real device is untouched: its record, its trust, its settings.
    let (_, view) = server.admin().get("/devices/web-take").await.unwrap();
    assert_eq!(view["os"], "linux", "{view}");
    let before = real.status()["last_check_in"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = server
        .admin()
        .post("/devices/web-take/sync", &json!({}))
        .await
        .unwrap();
    assert!(s.is_success());
    eventually(20, "the real device checks in again", async || {
        real.status()["last_check_in"].as_i64().unwrap_or(0) > before
    })
    .await;
    assert!(real.exited().is_none(), "{}", real.log());
    assert_eq!(real.status()["state"], "enrolled");
    assert_eq!(real.enforced().unwrap()["real_time_protection"], true);
    real.stop();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_state_files_are_repaired_and_never_count_as_enforced() {
    let server = TestServer::with_examples().await.unwrap();
    let pkg = package(&server, json!({})).await;
    let mut agent = Agent::new("web-rot", "os: linux\ntype: server\ntags: [web]\n", "");
    assert!(agent.onboard(&pkg).status.success());
    agent.start();
    eventually(30, "the policy is applied", async || {
        agent
            .enforced()
            .is_some_and(|e| e["real_time_protection"] == true)
    })
    .await;
    let digest = agent.status()["policy"]["digest"].clone();
    agent.stop();

    // A policy file the disk mangled: not enforced, not claimed, and the
    // settings already in place stay.
    let policy = agent.state().join("policy.json");
    std::fs::write(&policy, b"{\"signed\": garbage").unwrap();
    let st = agent.status();
    assert!(st["policy"].is_null(), "{st}");
    assert!(
        st["policy_problem"]
            .as_str()
            .unwrap()
            .starts_with("held_policy_invalid"),
        "{st}"
    );
    assert_eq!(agent.enforced().unwrap()["real_time_protection"], true);
    agent.start_with_env(&[("RAMPART_AGENT_LOG_FORMAT", "json")]);
    eventually(30, "the server sends the policy again", async || {
        agent.status()["policy"]["digest"] == digest
    })
    .await;
    assert!(agent.status()["policy_problem"].is_null());
    assert_eq!(agent.enforced().unwrap()["real_time_protection"], true);
    agent.stop();
    // What a log collector reads: one JSON object per line, the problem
    // under its stable event code.
    let lines: Vec<Value> = agent
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "held_policy_invalid" && l["level"] == "ERROR"),
        "{lines:?}"
    );

    // A certificate file that no longer parses: the agent proves itself
    // with its key and carries on.
    let cert = agent.state().join("identity/cert.pem");
    assert!(cert.exists(), "layout changed: {}", cert.display());
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot a cert\n").unwrap();
    assert_eq!(agent.status()["certificate_problem"], "certificate_invalid");
    let before = agent.status()["last_check_in"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.start();
    eventually(30, "the agent re-attests and checks in", async || {
        let st = agent.status();
        st["last_check_in"].as_i64().unwrap_or(0) > before && st["certificate_problem"].is_null()
    })
    .await;
    let (_, audit) = server.admin().get("/audit?limit=100").await.unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "device.reattest" && a["object_name"] == "web-rot"),
        "{audit}"
    );
    assert_eq!(agent.enforced().unwrap()["real_time_protection"], true);
    assert!(agent.exited().is_none(), "{}", agent.log());
    agent.stop();
    server.stop().await.unwrap();
}

/// Where the restore test keeps its server's data, and how it backs that
/// data up and restores it as an operator would.
enum Backend {
    /// The embedded default: `rampart-server backup` while the server runs,
    /// `rampart-server restore` with it stopped.
    Sqlite,
    /// A database of its own on the machine's PostgreSQL: `pg_dump` while
    /// the server runs, `pg_restore` into a recreated database.
    Postgres { admin_url: String, name: String },
}

impl Backend {
    /// PostgreSQL when `RAMPART_TEST_POSTGRES_URL` is set; `None` (a skip,
    /// said on the output) otherwise, and a failure when CI requires it.
    fn postgres() -> Option<Backend> {
        let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
        let Ok(admin_url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
            assert!(
                !required,
                "RAMPART_TEST_POSTGRES_REQUIRED=1 but RAMPART_TEST_POSTGRES_URL is not set"
            );
            eprintln!(
                "SKIPPED: set RAMPART_TEST_POSTGRES_URL to run the restore test on PostgreSQL"
            );
            return None;
        };
        let name = format!("rampart_restore_{}", uuid::Uuid::new_v4().simple());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        Some(Backend::Postgres { admin_url, name })
    }

    fn database_url(&self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres { admin_url, name } => Some(database_url(admin_url, name)),
        }
    }

    /// Takes a backup of the running server's data into `dir`.
    async fn backup(&self, server: &mut TestServer, dir: &Path) {
        match self {
            Backend::Sqlite => {
                let file = dir.join("rampart.backup");
                rampart_server::backup::backup(server.config(), &file)
                    .await
                    .unwrap();
                // No restore under a running server.
                let refused = rampart_server::backup::restore(server.config(), &file, 0)
                    .await
                    .unwrap_err();
                assert!(refused.to_string().contains("stop it first"), "{refused:#}");
            }
            Backend::Postgres { admin_url, name } => {
                let out = Command::new("pg_dump")
                    .args(["--format=custom", "--file"])
                    .arg(dir.join("rampart.dump"))
                    .arg(database_url(admin_url, name))
                    .output()
                    .expect("pg_dump runs (package postgresql-client)");
                assert!(out.status.success(), "pg_dump: {}", stderr(&out));
            }
        }
    }

    /// Puts the backup in `dir` back under the halted server.
    async fn restore(&self, server: &TestServer, dir: &Path) {
        match self {
            Backend::Sqlite => {
                let now = rampart_agent_now();
                rampart_server::backup::restore(server.config(), &dir.join("rampart.backup"), now)
                    .await
                    .unwrap();
                rampart_server::backup::check(server.config())
                    .await
                    .unwrap();
            }
            Backend::Postgres { admin_url, name } => {
                psql(admin_url, &format!("DROP DATABASE {name} WITH (FORCE)"));
                psql(admin_url, &format!("CREATE DATABASE {name}"));
                let out = Command::new("pg_restore")
                    .args(["--exit-on-error", "--dbname"])
                    .arg(database_url(admin_url, name))
                    .arg(dir.join("rampart.dump"))
                    .output()
                    .expect("pg_restore runs (package postgresql-client)");
                assert!(out.status.success(), "pg_restore: {}", stderr(&out));
            }
        }
    }

    fn drop_database(&self) {
        if let Backend::Postgres { admin_url, name } = self {
            psql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// The URL of database `name` on the server of `admin_url`.
fn database_url(admin_url: &str, name: &str) -> String {
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(head, _)| head);
    format!("{base}/{name}")
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([
            "--no-psqlrc",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname",
            url,
            "--command",
            sql,
        ])
        .output()
        .expect("psql runs (package postgresql-client)");
    assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_database_and_an_expired_certificate_cost_no_device_its_settings() {
    restore_under_running_agents(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_postgresql_database_costs_no_device_its_settings() {
    if let Some(backend) = Backend::postgres() {
        restore_under_running_agents(backend).await;
    }
}

/// An older copy of the database restored under running agents (taken
/// before certificate renewals and a policy change): every agent keeps
/// enforcing and converges to the restored server's policy; one offline
/// past its certificate's lifetime comes back without re-onboarding.
async fn restore_under_running_agents(backend: Backend) {
    let mut server = TestServer::start_with(Options {
        load: Some(rampart_testkit::repo_path("examples/fleet")),
        cert_lifetime_secs: Some(60),
        database_url: backend.database_url(),
        ..Options::default()
    })
    .await
    .unwrap();
    let pkg = package(&server, json!({})).await;
    let mut online = Agent::new(
        "web-restore-a",
        "os: linux\ntype: server\ntags: [web]\n",
        "",
    );
    let mut offline = Agent::new(
        "web-restore-b",
        "os: linux\ntype: server\ntags: [web]\n",
        "",
    );
    for a in [&online, &offline] {
        assert!(a.onboard(&pkg).status.success());
    }
    online.start();
    offline.start();
    for a in [&online, &offline] {
        eventually(30, "the policy is applied", async || {
            a.enforced()
                .is_some_and(|e| e["real_time_protection"] == true)
        })
        .await;
    }
    let restored_digest = online.status()["policy"]["digest"].clone();

    // The backup, taken before the renewals and the policy change below.
    let backup = temp_dir("backup");
    backend.backup(&mut server, &backup).await;

    // A policy change, then certificate renewals (a third of 60 s left).
    let (_, mut av) = server
        .admin()
        .get("/policies/linux-av-baseline")
        .await
        .unwrap();
    av["settings"]["scan_archives"] = json!(false);
    av.as_object_mut().unwrap().retain(|k, _| {
        [
            "name",
            "description",
            "family",
            "platform",
            "settings",
            "assignments",
        ]
        .contains(&k.as_str())
    });
    let (s, b) = server
        .admin()
        .put("/policies/linux-av-baseline", &av)
        .await
        .unwrap();
    assert!(s.is_success(), "{b}");
    server.clock.advance(5);
    let first: Vec<i64> = [&online, &offline]
        .iter()
        .map(|a| a.status()["certificate_not_after"].as_i64().unwrap())
        .collect();
    for (a, first) in [&online, &offline].into_iter().zip(first) {
        eventually(60, "the agent renews its certificate", async || {
            a.status()["certificate_not_after"].as_i64().unwrap_or(0) > first
        })
        .await;
        eventually(20, "the changed policy is applied", async || {
            a.enforced().is_some_and(|e| e["scan_archives"] == false)
        })
        .await;
    }
    let newer_version = online.status()["policy"]["version"].as_u64().unwrap();

    // One device goes offline; the old database comes back under the other.
    offline.stop();
    server.halt().await.unwrap();
    backend.restore(&server, &backup).await;
    if let Err(e) = server.resume().await {
        panic!("resume on the restored database: {e:#}");
    }
    server.clock.advance(1);

    // The running agent keeps its settings, proves itself again and
    // converges to the restored server's policy, at a version above the
    // one it held.
    eventually(
        45,
        "the running agent converges to the restored policy",
        async || {
            let st = online.status();
            st["policy"]["digest"] == restored_digest
                && st["policy"]["version"].as_u64().unwrap_or(0) > newer_version
        },
    )
    .await;
    assert!(online.exited().is_none(), "{}", online.log());
    assert_eq!(online.status()["state"], "enrolled");
    assert_eq!(online.enforced().unwrap()["real_time_protection"], true);
    eventually(20, "the server has its report", async || {
        let r = device_report(&server, "web-restore-a").await;
        r["applied_digest"] == restored_digest
            && row(&r, "real_time_protection")["status"] == "recorded"
    })
    .await;
    // The device report says how the device came back: it proved itself
    // with its enrolled key.
    let r = device_report(&server, "web-restore-a").await;
    let actions: Vec<&str> = r["trust_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"device.reattest"), "{r}");
    assert!(actions.contains(&"device.enroll"), "{r}");

    // The other comes back after its certificate expired: no re-onboarding.
    let expires = offline.status()["certificate_not_after"].as_i64().unwrap();
    assert_eq!(offline.enforced().unwrap()["real_time_protection"], true);
    let wait = u64::try_from(expires - rampart_agent_now()).unwrap_or(0) + 2;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        offline.status()["certificate_problem"],
        "certificate_expired"
    );
    // The test server's clock only moves when told: bring it to the real
    // time the agent's certificate expired in, or what it issues next would
    // be born expired.
    let behind = rampart_agent_now() - rampart_server::clock::Clock::now(&server.clock);
    server.clock.advance(behind.max(0));
    offline.start();
    eventually(
        45,
        "the expired device re-attests and converges",
        async || {
            offline.status()["policy"]["digest"] == restored_digest
                && offline.status()["certificate_problem"].is_null()
        },
    )
    .await;
    assert!(offline.exited().is_none(), "{}", offline.log());
    assert_eq!(offline.enforced().unwrap()["real_time_protection"], true);
    online.stop();
    offline.stop();
    let _ = std::fs::remove_dir_all(&backup);
    server.stop().await.unwrap();
    backend.drop_database();
}

/// Seconds since the epoch, as the agent's clock reads them.
fn rampart_agent_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
