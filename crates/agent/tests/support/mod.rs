//! What the provider tests share: a real `rampart-agent` process with its
//! own state directory, onboarded to an in-process `TestServer`, stopped by
//! its PID; policies and reports through the admin API.
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::TestServer;
use serde_json::{json, Value};

pub const AGENT: &str = env!("CARGO_BIN_EXE_rampart-agent");

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the root-only tests can run here: `tools` on the PATH and root.
/// Missing, they print "skipped" — unless `RAMPART_REQUIRE_ROOT_TESTS=1`
/// (CI sets it), then they fail.
pub fn root_prerequisites(what: &str, tools: &[&str], install: &str) -> bool {
    let mut missing = Vec::new();
    let uid = Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
        missing.push("root".to_string());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push((*tool).to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the {what} tests need {} ({install}; run as root)",
        missing.join(", ")
    );
    if std::env::var("RAMPART_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("RAMPART_REQUIRE_ROOT_TESTS=1 but {message}");
    }
    eprintln!("skipped: {message}");
    false
}

/// One agent: a state directory, its facts and configuration, and maybe a
/// running `rampart-agent run` process.
pub struct Agent {
    pub name: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// `config` is appended to a configuration that checks in hourly (the
    /// tests use "Policy sync" and the long poll) and skips the survey.
    pub fn new(name: &str, config: &str) -> Agent {
        let dir = temp_dir(name);
        std::fs::write(dir.join("facts.yaml"), "os: linux\ntype: server\n").unwrap();
        let config = format!(
            "check_in_interval_secs = 3600\nwait_timeout_secs = 20\n[survey]\nbuiltin = false\n{config}"
        );
        std::fs::write(dir.join("agent.toml"), config).unwrap();
        Agent {
            name: name.to_string(),
            dir,
            child: None,
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(AGENT);
        c.args(args)
            .arg("--state-dir")
            .arg(self.state())
            .arg("--config")
            .arg(self.dir.join("agent.toml"))
            .env("RAMPART_AGENT_LOG", "info");
        c
    }

    pub async fn onboard(&self, server: &TestServer) {
        let (s, p) = server
            .admin()
            .post("/onboarding", &json!({}))
            .await
            .unwrap();
        assert!(s.is_success(), "{p}");
        let package = self.dir.join("package.json");
        std::fs::write(&package, p.to_string()).unwrap();
        let out = self
            .cmd(&[
                "onboard",
                "--package",
                package.to_str().unwrap(),
                "--device-name",
                &self.name,
                "--facts",
                self.dir.join("facts.yaml").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "onboard: {}", stderr(&out));
    }

    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("agent.log")).unwrap();
        let child = self
            .cmd(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM by PID, then wait for the exit.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_process(child);
        }
    }

    pub fn status(&self) -> Value {
        let out = self.cmd(&["status", "-o", "json"]).output().unwrap();
        assert!(out.status.success(), "status: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Whether the agent logged that `provider` reverted `setting` (no
    /// longer assigned, component default restored). `status` shows only the
    /// last enforcement's removals; the log keeps them all.
    pub fn reverted(&self, provider: &str, setting: &str) -> bool {
        self.log().lines().any(|l| {
            l.contains("event=\"removal\"")
                && l.contains("removal=\"revert\"")
                && l.contains(&format!("provider=\"{provider}\""))
                && l.contains(&format!("setting={setting} "))
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGTERM by PID, up to 10 s for the exit, then SIGKILL; nothing to do
/// for a process that has already exited.
pub fn stop_process(mut child: Child) {
    if child.try_wait().unwrap().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Linux policy of `family` assigned to every device.
pub fn policy(name: &str, family: &str, settings: Value) -> Value {
    json!({
        "name": name,
        "description": "provider test",
        "family": family,
        "platform": "linux",
        "settings": settings,
        "assignments": {"include": ["all-devices"]},
    })
}

/// Creates or replaces a policy.
pub async fn put_policy(server: &TestServer, body: &Value) {
    let name = body["name"].as_str().unwrap();
    let (s, b) = server
        .admin()
        .put(&format!("/policies/{name}"), body)
        .await
        .unwrap();
    if s == reqwest::StatusCode::NOT_FOUND {
        let (s, b) = server.admin().post("/policies", body).await.unwrap();
        assert!(s.is_success(), "create {name}: {b}");
        return;
    }
    assert!(s.is_success(), "update {name}: {b}");
}

/// "Policy sync" for one device.
pub async fn sync(server: &TestServer, device: &str) {
    let (s, b) = server
        .admin()
        .post(&format!("/devices/{device}/sync"), &json!({}))
        .await
        .unwrap();
    assert!(s.is_success(), "sync: {b}");
}

pub async fn device_report(server: &TestServer, name: &str) -> Value {
    server
        .admin()
        .get(&format!("/reports/devices/{name}"))
        .await
        .unwrap()
        .1
}

/// A setting's row of a device report (`null` when absent).
pub fn row<'a>(report: &'a Value, setting: &str) -> &'a Value {
    report["settings"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["setting"] == setting))
        .unwrap_or(&Value::Null)
}

/// Polls `f` until it is true or `secs` pass; the agent's log goes with a
/// timeout.
pub async fn eventually(secs: u64, what: &str, agent: &Agent, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads a file that should be JSON.
pub fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
