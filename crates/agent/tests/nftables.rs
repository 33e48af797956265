//! Real effects, as root: the nftables provider enforcing inside network
//! namespaces these tests create, checked with real traffic.
//!
//! Each test makes a `srv` namespace (the firewalled device, running two
//! `python3 -m http.server`s) and a `cli` namespace joined to it by a veth
//! pair; addresses are 10.213.X.0/24, and exist only inside those
//! namespaces — except in the lockout test, whose extra veth pair has its
//! root end (10.213.X.129/30) in the host's namespace so that the device
//! channel of the in-process server is reachable from the agent running in
//! `srv`. Everything is removed by a guard on drop, also when a test fails.
//!
//! Prerequisites: root, `ip`, `nft`, `curl`, `python3`. Missing, the tests
//! print "skipped" — unless `RAMPART_REQUIRE_ROOT_TESTS=1` (CI sets it),
//! then they fail.
// A real rampart-server runs beside the agent: Linux (and macOS) only;
// the Windows agent's end-to-end test is windows_wine.rs, run from Linux.
#![cfg(not(windows))]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::config::NftablesConfig;
use rampart_agent::providers::nftables::{parse, render, NftablesProvider};
use rampart_agent::providers::{Provider, Values};
use rampart_core::catalog::Catalog;
use rampart_testkit::{Options, TestServer};
use serde_json::{json, Value};
use support::{device_report, put_policy, row};

const AGENT: &str = env!("CARGO_BIN_EXE_rampart-agent");

/// Whether the tests can run here; fails when CI requires them.
fn prerequisites() -> bool {
    let mut missing = Vec::new();
    let uid = Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
        missing.push("root".to_string());
    }
    for tool in ["ip", "nft", "curl", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(tool.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "the nftables tests need {} (apt-get install nftables iproute2 curl python3; run as root)",
        missing.join(", ")
    );
    if std::env::var("RAMPART_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("RAMPART_REQUIRE_ROOT_TESTS=1 but {what}");
    }
    eprintln!("skipped: {what}");
    false
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces, a veth pair between them, web servers in `srv`, and
/// optionally a veth pair from the host into `srv`.
struct Lab {
    srv: String,
    cli: String,
    net: u8,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    /// `index` (0..3) picks this test's 10.213.<net>.0/24, from the
    /// process id too, so that test processes running at once do not
    /// share the host's uplink address; `uplink` adds the host link.
    fn new(tag: &str, index: u32, uplink: bool) -> Lab {
        let pid = std::process::id();
        let net = u8::try_from(10 + (pid % 80) * 3 + index).unwrap();
        let lab = Lab {
            srv: format!("rmp-{pid}-{tag}-srv"),
            cli: format!("rmp-{pid}-{tag}-cli"),
            net,
            children: Vec::new(),
            dir: std::env::temp_dir().join(format!(
                "rampart-nft-{tag}-{}",
                uuid::Uuid::new_v4().simple()
            )),
        };
        std::fs::create_dir_all(lab.dir.join("www")).unwrap();
        std::fs::write(lab.dir.join("www/index.html"), "hello\n").unwrap();
        // Interface names: at most 15 characters.
        let short = format!("{}{tag}", pid % 100_000);
        let (a, b) = (format!("rv{short}a"), format!("rv{short}b"));
        must(&["ip", "netns", "add", &lab.srv]);
        must(&["ip", "netns", "add", &lab.cli]);
        must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        must(&["ip", "link", "set", &a, "netns", &lab.srv]);
        must(&["ip", "link", "set", &b, "netns", &lab.cli]);
        let (srv_cidr, cli_cidr) = (format!("{}/25", lab.srv_ip()), format!("10.213.{net}.2/25"));
        must(&["ip", "-n", &lab.srv, "addr", "add", &srv_cidr, "dev", &a]);
        must(&["ip", "-n", &lab.cli, "addr", "add", &cli_cidr, "dev", &b]);
        for (ns, dev) in [(&lab.srv, &a), (&lab.cli, &b)] {
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        if uplink {
            let (h, n) = (format!("rv{short}h"), format!("rv{short}n"));
            must(&["ip", "link", "add", &h, "type", "veth", "peer", "name", &n]);
            must(&["ip", "link", "set", &n, "netns", &lab.srv]);
            must(&[
                "ip",
                "addr",
                "add",
                &format!("{}/30", lab.host_ip()),
                "dev",
                &h,
            ]);
            must(&[
                "ip",
                "-n",
                &lab.srv,
                "addr",
                "add",
                &format!("10.213.{net}.130/30"),
                "dev",
                &n,
            ]);
            must(&["ip", "link", "set", &h, "up"]);
            must(&["ip", "-n", &lab.srv, "link", "set", &n, "up"]);
        }
        lab
    }

    fn srv_ip(&self) -> String {
        format!("10.213.{}.1", self.net)
    }

    /// The host's end of the uplink.
    fn host_ip(&self) -> String {
        format!("10.213.{}.129", self.net)
    }

    fn serve(&mut self, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.srv, "python3", "-m", "http.server"])
            .arg(port.to_string())
            .args(["--bind", &self.srv_ip(), "--directory"])
            .arg(self.dir.join("www"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Whether an HTTP request from `cli` to `srv:port` gets through.
    fn reachable(&self, port: u16) -> bool {
        let url = format!("http://{}:{port}/", self.srv_ip());
        sh(&[
            "ip", "netns", "exec", &self.cli, "curl", "-sf", "-m", "2", &url,
        ])
        .status
        .success()
    }

    fn wait_reachable(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.reachable(port) {
            assert!(Instant::now() < deadline, "port {port} never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn nft(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.srv, "nft"];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// The Rampart table as text; `None` when absent.
    fn table(&self) -> Option<String> {
        let out = self.nft(&["list", "table", "inet", "rampart"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn nft_command(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.srv, "nft"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        // Deleting a namespace deletes the veth ends in it, and with them
        // their peers (the host's end of the uplink included).
        let _ = sh(&["ip", "netns", "del", &self.srv]);
        let _ = sh(&["ip", "netns", "del", &self.cli]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One agent: state directory, facts, configuration, maybe a `run`
/// process (inside `netns` when given), stopped by PID.
struct Agent {
    name: String,
    dir: PathBuf,
    netns: Option<String>,
    child: Option<Child>,
}

impl Agent {
    fn new(name: &str, config: &str, netns: Option<&str>) -> Agent {
        let dir = std::env::temp_dir().join(format!(
            "rampart-nft-agent-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("facts.yaml"),
            "os: linux\ntype: server\ntags: [fw]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("agent.toml"),
            format!("check_in_interval_secs = 3600\nwait_timeout_secs = 20\ndrift_check_interval_secs = 10\n[survey]\nbuiltin = false\n[providers.file]\nenabled = false\n{config}"),
        )
        .unwrap();
        Agent {
            name: name.to_string(),
            dir,
            netns: netns.map(str::to_string),
            child: None,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, AGENT]);
                c
            }
            None => Command::new(AGENT),
        };
        c.args(args)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--config")
            .arg(self.dir.join("agent.toml"))
            .env("RAMPART_AGENT_LOG", "info");
        c
    }

    fn onboard(&self, package: &Path) {
        let facts = self.dir.join("facts.yaml");
        let out = self
            .cmd(&[
                "onboard",
                "--package",
                package.to_str().unwrap(),
                "--device-name",
                &self.name,
                "--facts",
                facts.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "onboard: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("agent.log")).unwrap();
        // `ip netns exec` execs the agent: the child's PID is the agent's.
        self.child = Some(
            self.cmd(&["run"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            support::stop_process(child);
        }
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

async fn package(server: &TestServer, dir: &Path) -> PathBuf {
    let (s, p) = server
        .admin()
        .post("/onboarding", &json!({}))
        .await
        .unwrap();
    assert!(s.is_success(), "{p}");
    let path = dir.join("package.json");
    std::fs::write(&path, p.to_string()).unwrap();
    path
}

fn policy(name: &str, family: &str, settings: Value) -> Value {
    json!({
        "name": name,
        "description": "nftables test",
        "family": family,
        "platform": "linux",
        "settings": settings,
        "assignments": {"include": ["all-devices"]},
    })
}

/// Polls `f` until it is true or `secs` pass.
async fn eventually(secs: u64, what: &str, agent: &Agent, mut f: impl AsyncFnMut() -> bool) {
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A traffic check that runs `curl` without blocking the runtime.
async fn reachable(lab: &Lab, port: u16) -> bool {
    tokio::task::block_in_place(|| lab.reachable(port))
}

fn rules(list: Value) -> Value {
    json!({ "firewall_rules": list })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_provider_reads_back_what_it_wrote_in_real_nft() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::new("p", 0, false);
    // A table that is not Rampart's stays as it is.
    must(&[
        "ip", "netns", "exec", &lab.srv, "nft", "add", "table", "inet", "theirs",
    ]);
    let config = NftablesConfig {
        enabled: true,
        command: lab.nft_command(),
        table: "rampart".into(),
        confirm_window: Duration::from_secs(60),
        rollback_file: lab.dir.join("rollback.nft"),
    };
    let mut p = NftablesProvider::new(
        &config,
        Catalog::builtin(),
        &format!("https://{}:8443", lab.host_ip()),
    );
    assert_eq!(
        p.observe().unwrap(),
        Values::from([("firewall_enabled".to_string(), json!(false))]),
        "no table at first"
    );

    let desired: Values = [
        ("firewall_enabled".to_string(), json!(true)),
        ("default_inbound_action".to_string(), json!("block")),
        ("default_outbound_action".to_string(), json!("allow")),
        (
            "firewall_rules".to_string(),
            json!([
                {"name": "web", "description": "", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "80,81,82,443,8000-8100", "remote_addresses": ["10.0.0.0/9", "10.128.0.0/9", "192.168.1.1", "fd00::/8"], "enabled": true},
                {"name": "dns", "description": "", "direction": "out", "action": "block", "protocol": "udp", "remote_ports": "53", "local_addresses": [lab.srv_ip()], "enabled": true},
                {"name": "ping", "description": "", "direction": "in", "action": "allow", "protocol": "icmp", "enabled": true},
                {"name": "ping6", "description": "", "direction": "in", "action": "allow", "protocol": "icmpv6", "enabled": true},
                {"name": "say \"hi\"", "description": "", "direction": "in", "action": "block", "protocol": "any", "remote_addresses": ["203.0.113.0/24"], "enabled": true},
                {"name": "off", "description": "", "direction": "in", "action": "allow", "protocol": "any", "enabled": false}
            ]),
        ),
    ]
    .into();
    let plan = p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new());
    assert!(!plan.is_noop());
    p.apply(&plan).unwrap();
    let after = p.observe().unwrap();
    for (setting, value) in &desired {
        assert!(
            p.matches(value, after.get(setting)),
            "{setting}: {value} vs {:?}",
            after.get(setting)
        );
    }
    assert!(
        p.plan(&desired, &after, &BTreeMap::new()).is_noop(),
        "a second pass has nothing to do"
    );
    let read = parse::ruleset(&after["nftables:ruleset"], "rampart").unwrap();
    assert!(
        parse::alterations(&read, &[(lab.host_ip().parse().unwrap(), 8443)]).is_empty(),
        "{read:?}"
    );
    assert!(lab
        .nft(&["list", "table", "inet", "theirs"])
        .status
        .success());
    // The change waits for confirmation, and rolling back restores "absent".
    assert!(p.confirm_by().is_some());
    assert!(lab.dir.join("rollback.nft").exists());
    p.roll_back().unwrap();
    assert_eq!(lab.table(), None);
    assert!(!lab.dir.join("rollback.nft").exists());

    // Disabled: the table goes, the actions are said not to apply.
    p.apply(&plan).unwrap();
    p.confirmed();
    let off: Values = [
        ("firewall_enabled".to_string(), json!(false)),
        ("default_inbound_action".to_string(), json!("block")),
    ]
    .into();
    let plan = p.plan(&off, &p.observe().unwrap(), &BTreeMap::new());
    p.apply(&plan).unwrap();
    assert_eq!(lab.table(), None);
    assert!(p.matches(&json!(false), p.observe().unwrap().get("firewall_enabled")));
    assert!(p.not_carried(&off).contains_key("default_inbound_action"));
    assert!(lab
        .nft(&["list", "table", "inet", "theirs"])
        .status
        .success());

    // nft's own message comes back on a script it refuses.
    let bad =
        render::script("rampart", None) + "table inet rampart { chain input { policy dorp; } }\n";
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.srv, "nft", "--check", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bad.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_filters_real_traffic_drift_is_restored_and_unassigning_removes_it() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("t", 1, false);
    lab.serve(8080);
    lab.serve(8081);
    lab.wait_reachable(8080);
    lab.wait_reachable(8081);
    must(&[
        "ip", "netns", "exec", &lab.srv, "nft", "add", "table", "inet", "theirs",
    ]);

    let server = TestServer::start().await.unwrap();
    let pkg = package(&server, &lab.dir).await;
    let mut agent = Agent::new(
        "fw-traffic",
        &format!(
            "[providers.nftables]\nenabled = true\ncommand = {}\n",
            serde_json::to_string(&lab.nft_command()).unwrap()
        ),
        None,
    );
    agent.onboard(&pkg);
    agent.start();

    put_policy(
        &server,
        &policy(
            "fw",
            "firewall",
            json!({"firewall_enabled": true, "default_inbound_action": "block", "default_outbound_action": "allow"}),
        ),
    )
    .await;
    put_policy(
        &server,
        &policy(
            "fw-rules",
            "firewall_rules",
            rules(json!([
                {"name": "allow-8080", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "8080"},
                {"name": "allow-8081-later", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "8081", "enabled": false}
            ])),
        ),
    )
    .await;
    eventually(
        40,
        "the firewall settings are applied and read back",
        &agent,
        async || {
            let r = device_report(&server, "fw-traffic").await;
            [
                "firewall_enabled",
                "default_inbound_action",
                "default_outbound_action",
                "firewall_rules",
            ]
            .iter()
            .all(|s| row(&r, s)["status"] == "succeeded" && row(&r, s)["backend"] == "nftables")
        },
    )
    .await;
    assert!(reachable(&lab, 8080).await, "the allowed port passes");
    assert!(!reachable(&lab, 8081).await, "the other port is blocked");
    let table = lab.table().unwrap();
    assert!(table.contains("allow-8080"), "{table}");
    assert!(
        !table.contains("allow-8081-later"),
        "a disabled rule is left out: {table}"
    );
    assert!(lab
        .nft(&["list", "table", "inet", "theirs"])
        .status
        .success());

    // Drift: the table deleted by hand comes back within the interval (10
    // s), and the device report shows a tamper event.
    assert!(lab
        .nft(&["delete", "table", "inet", "rampart"])
        .status
        .success());
    assert!(reachable(&lab, 8081).await, "the table is really gone");
    eventually(
        40,
        "the drift is restored and reported",
        &agent,
        async || {
            let r = device_report(&server, "fw-traffic").await;
            let events = r["tamper_events"].as_array().cloned().unwrap_or_default();
            lab.table().is_some()
                && events
                    .iter()
                    .any(|e| e["setting"] == "firewall_rules" && e["restored"] == true)
        },
    )
    .await;
    assert!(!reachable(&lab, 8081).await, "blocked again");
    assert!(reachable(&lab, 8080).await);
    let audit = server.admin().get("/audit?limit=100").await.unwrap().1;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "device.tamper"),
        "{audit}"
    );

    // `check-drift` asks the running agent; nothing changed since.
    let out = agent.cmd(&["check-drift"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("the running agent"), "{text}");
    assert!(text.contains("no drift"), "{text}");

    // With no agent running, `check-drift` reads back and restores itself.
    agent.stop();
    assert!(lab
        .nft(&["delete", "table", "inet", "rampart"])
        .status
        .success());
    let out = agent.cmd(&["check-drift"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("this command"), "{text}");
    assert!(text.contains("firewall_rules (nftables)"), "{text}");
    assert!(text.contains("restored"), "{text}");
    assert!(lab.table().is_some());
    assert!(!reachable(&lab, 8081).await);
    agent.start();

    // Unassigned: the catalog's removal is `revert` — the table goes and
    // both ports pass again.
    for name in ["fw", "fw-rules"] {
        let (s, b) = server
            .admin()
            .delete(&format!("/policies/{name}"))
            .await
            .unwrap();
        assert!(s.is_success(), "{b}");
    }
    eventually(40, "the table is removed", &agent, async || {
        lab.table().is_none()
    })
    .await;
    assert!(reachable(&lab, 8080).await);
    assert!(reachable(&lab, 8081).await);
    assert!(lab
        .nft(&["list", "table", "inet", "theirs"])
        .status
        .success());
    let status = agent.cmd(&["status", "-o", "json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let removed = status["removed"].as_array().unwrap();
    assert!(
        removed
            .iter()
            .any(|r| r["setting"] == "firewall_rules" && r["result"] == "reverted"),
        "{status}"
    );
    agent.stop();
    server.stop().await.unwrap();
}

/// A lab whose `srv` namespace runs an agent (`name`) with the nftables
/// provider, its server on the host's end of the uplink (so the firewall
/// filters the agent's own traffic to it), and a first rule set — inbound and
/// outbound blocked by default, 8080 allowed in — applied and confirmed, so
/// that it is what a rollback returns to. Returns the allow rule too.
async fn firewalled_agent(tag: &str, name: &str) -> (Lab, TestServer, Agent, Value) {
    let mut lab = Lab::new(tag, 2, true);
    lab.serve(8080);
    lab.wait_reachable(8080);
    let server = TestServer::start_with(Options {
        device_listen: Some(format!("{}:0", lab.host_ip()).parse().unwrap()),
        ..Options::default()
    })
    .await
    .unwrap();
    let pkg = package(&server, &lab.dir).await;
    let srv = lab.srv.clone();
    let mut agent = Agent::new(
        name,
        "[providers.nftables]\nenabled = true\nconfirm_window_secs = 5\n",
        Some(&srv),
    );
    agent.onboard(&pkg);
    agent.start();
    let allow = json!({"name": "allow-8080", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "8080"});
    put_policy(
        &server,
        &policy(
            "fw",
            "firewall",
            json!({"firewall_enabled": true, "default_inbound_action": "block", "default_outbound_action": "block"}),
        ),
    )
    .await;
    put_policy(
        &server,
        &policy("fw-rules", "firewall_rules", rules(json!([allow.clone()]))),
    )
    .await;
    eventually(40, "the first rule set is applied", &agent, async || {
        row(&device_report(&server, name).await, "firewall_rules")["status"] == "succeeded"
    })
    .await;
    // Confirmed: the agent reached the server on a new connection since.
    let rollback_file = agent.dir.join("state/nftables/rollback.nft");
    eventually(20, "the first rule set is confirmed", &agent, async || {
        !rollback_file.exists() && lab.table().is_some_and(|t| t.contains("allow-8080"))
    })
    .await;
    (lab, server, agent, allow)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_set_that_cuts_the_agent_off_is_rolled_back() {
    if !prerequisites() {
        return;
    }
    let (lab, server, mut agent, allow) = firewalled_agent("l", "fw-lockout").await;
    // Outbound is blocked by default, yet the agent still reaches its
    // server: the allowance rule.
    let table = lab.table().unwrap();
    assert!(table.contains("rampart: server"), "{table}");
    assert!(reachable(&lab, 8080).await);

    // A rule that blocks the server: applied, never confirmed, rolled back.
    let cut = json!({"name": "cut-off", "direction": "out", "action": "block", "protocol": "any", "remote_addresses": [format!("{}/32", lab.host_ip())]});
    put_policy(
        &server,
        &policy("fw-rules", "firewall_rules", rules(json!([allow, cut]))),
    )
    .await;
    eventually(60, "the rollback is reported", &agent, async || {
        let r = device_report(&server, "fw-lockout").await;
        row(&r, "firewall_rules")["error_code"] == "lockout_rolled_back"
    })
    .await;
    let r = device_report(&server, "fw-lockout").await;
    assert_eq!(
        row(&r, "default_inbound_action")["error_code"],
        "lockout_rolled_back"
    );
    assert!(
        row(&r, "firewall_rules")["error_message"]
            .as_str()
            .unwrap()
            .contains("previous ruleset was restored"),
        "{r}"
    );
    let table = lab.table().unwrap();
    assert!(!table.contains("cut-off"), "{table}");
    assert!(
        table.contains("allow-8080"),
        "the previous rule set is back: {table}"
    );
    assert!(agent.log().contains("lockout_rolled_back"));

    // The same policy is not applied again (no loop) ...
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(!lab.table().unwrap().contains("cut-off"));
    // ... a new one is.
    put_policy(
        &server,
        &policy("fw-rules", "firewall_rules", rules(json!([allow]))),
    )
    .await;
    eventually(40, "a corrected policy applies again", &agent, async || {
        row(
            &device_report(&server, "fw-lockout").await,
            "firewall_rules",
        )["status"]
            == "succeeded"
    })
    .await;
    agent.stop();
    server.stop().await.unwrap();
}

/// A staged change whose new rule set cuts the canary's agent off: the agent
/// rolls it back on the device and reports `lockout_rolled_back`, the
/// rollout's lockout gate fails at the end of the soak, and the server rolls
/// the policy back, which the agent then applies.
#[tokio::test(flavor = "multi_thread")]
async fn a_staged_rule_set_that_locks_its_canary_out_fails_the_gate_and_is_rolled_back() {
    if !prerequisites() {
        return;
    }
    let (lab, server, mut agent, allow) = firewalled_agent("r", "fw-canary").await;
    let api = server.admin();
    let (s, b) = api
        .post(
            "/groups",
            &json!({"name": "canary", "members": ["fw-canary"]}),
        )
        .await
        .unwrap();
    assert!(s.is_success(), "{b}");

    // The cutting change goes to the canary group first; a lockout fails
    // the gate and rolls the whole change back.
    let cut = json!({"name": "cut-off", "direction": "out", "action": "block", "protocol": "any", "remote_addresses": [format!("{}/32", lab.host_ip())]});
    let mut staged = policy("fw-rules", "firewall_rules", rules(json!([allow, cut])));
    staged["rollout"] = json!({
        "stages": [{"group": "canary", "soak": "10m"}, {"percent": 100, "soak": "1h"}],
        "gates": {"max_lockouts": 0},
        "on_failure": "rollback",
    });
    put_policy(&server, &staged).await;
    eventually(
        60,
        "the agent rolls the cut back and reports it",
        &agent,
        async || {
            row(&device_report(&server, "fw-canary").await, "firewall_rules")["error_code"]
                == "lockout_rolled_back"
        },
    )
    .await;
    server.clock.advance(601);
    let mut rollout = Value::Null;
    eventually(
        20,
        "the lockout gate fails and rolls back",
        &agent,
        async || {
            rollout = api.get("/rollouts/fw-rules").await.unwrap().1;
            rollout["state"] == "rolled_back"
        },
    )
    .await;
    let last = rollout["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["gates"]["lockouts"], 1, "{rollout}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("lockouts: 1 of 1 devices"),
        "{rollout}"
    );
    let (_, restored) = api.get("/policies/fw-rules").await.unwrap();
    assert_eq!(
        restored["settings"]["firewall_rules"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{restored}"
    );
    // The restored revision applies on the device: no lockout, no cut rule.
    eventually(60, "the restored rule set applies", &agent, async || {
        row(&device_report(&server, "fw-canary").await, "firewall_rules")["status"] == "succeeded"
    })
    .await;
    let table = lab.table().unwrap();
    assert!(
        !table.contains("cut-off") && table.contains("allow-8080"),
        "{table}"
    );
    agent.stop();
    server.stop().await.unwrap();
}
