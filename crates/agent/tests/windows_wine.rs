//! The Windows agent end to end, from Linux: a real `rampart-server`
//! (in-process, port 0), the Windows build `rampart-agent.exe` running under
//! Wine in a temporary prefix, onboarded with a real package over mutual
//! TLS, enforcing a Windows policy of every family through the registry
//! provider. `wine reg query` must show exactly the rendered values; the
//! device report shows them `succeeded` with the registry backend; a
//! hand-made change is restored and reported as tamper; removing the
//! assignment removes them; a device whose registry says domain controller
//! is reported with its code and managed only once the tenant allows it;
//! the same agent runs as a Windows service (`service install`, started by
//! Wine's service control manager, `service uninstall`).
//!
//! `scripts/windows-test.sh` builds the .exe and runs this test with
//! `RAMPART_WINDOWS_AGENT_EXE` set. Without it (or without Wine) the test
//! prints SKIPPED — and fails when `RAMPART_REQUIRE_WINDOWS_TESTS=1`.
#![cfg(not(windows))]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::providers::windows::map::RegData;
use rampart_agent::providers::windows::render::{self, Rendered};
use rampart_agent::providers::Values;
use rampart_testkit::TestServer;
use serde_json::{json, Value};
use support::{device_report, put_policy, stderr, stop_process, sync};

/// The exe and a working `wine`, or why not.
fn prerequisites() -> Result<PathBuf, String> {
    let exe = std::env::var_os("RAMPART_WINDOWS_AGENT_EXE")
        .map(PathBuf::from)
        .ok_or("RAMPART_WINDOWS_AGENT_EXE is not set (run scripts/windows-test.sh)")?;
    if !exe.is_file() {
        return Err(format!("{} does not exist", exe.display()));
    }
    let wine = Command::new("wine").arg("--version").output();
    if !wine.is_ok_and(|o| o.status.success()) {
        return Err("wine is not installed".into());
    }
    Ok(exe)
}

/// A Wine prefix of its own under a temporary directory, and the agent in it.
struct Wine {
    dir: PathBuf,
    exe: PathBuf,
    child: Option<Child>,
}

impl Wine {
    fn new(exe: PathBuf) -> Wine {
        let dir =
            std::env::temp_dir().join(format!("rampart-wine-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let wine = Wine {
            dir,
            exe,
            child: None,
        };
        let out = wine.command("wineboot", &["-i"]).output().unwrap();
        assert!(out.status.success(), "wineboot: {}", stderr(&out));
        let _ = wine.command("wineserver", &["-w"]).status();
        // Wine 8 lacks bcryptprimitives.dll, which Rust's std imports: the
        // test-only stand-in of scripts/windows-cross.
        let dll = std::env::var_os("RAMPART_WIN_BCRYPT_DLL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/rampart-wintc/bcryptprimitives.dll")
            });
        std::fs::copy(
            &dll,
            wine.prefix()
                .join("drive_c/windows/system32/bcryptprimitives.dll"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dll.display()));
        wine
    }

    fn prefix(&self) -> PathBuf {
        self.dir.join("prefix")
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("WINEPREFIX", self.prefix())
            .env("WINEDEBUG", "-all")
            .env("RAMPART_AGENT_LOG", "info");
        c
    }

    /// `rampart-agent.exe ARGS --state-dir … --config …`.
    fn agent(&self, args: &[&str]) -> Command {
        let mut c = self.command("wine", &[]);
        c.arg(&self.exe)
            .args(args)
            .arg("--state-dir")
            .arg(win(&self.dir.join("state")))
            .arg("--config")
            .arg(win(&self.dir.join("agent.toml")));
        c
    }

    fn reg(&self, args: &[&str]) -> Output {
        self.command("wine", &["reg"]).args(args).output().unwrap()
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("agent.log")).unwrap();
        let child = self
            .agent(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM by PID, then wait for the exit.
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_process(child);
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn status(&self) -> Value {
        let out = self.agent(&["status", "-o", "json"]).output().unwrap();
        assert!(out.status.success(), "status: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every value under `HKLM\Software\Policies\Microsoft`, as
    /// `(key, name, data)` with key and name in lower case.
    fn policy_values(&self) -> BTreeSet<(String, String, RegData)> {
        let out = self.reg(&["query", r"HKLM\Software\Policies\Microsoft", "/s"]);
        parse_reg_query(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        self.stop();
        let _ = self.command("wineserver", &["-k"]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Linux path as Wine's `Z:` drive sees it.
fn win(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// `reg query /s` output: a key line, then `    NAME    REG_TYPE    DATA`.
fn parse_reg_query(text: &str) -> BTreeSet<(String, String, RegData)> {
    let mut out = BTreeSet::new();
    let mut key = String::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("HKEY_") {
            key = line
                .trim_start_matches("HKEY_LOCAL_MACHINE\\")
                .to_ascii_lowercase();
            continue;
        }
        let Some(body) = line.strip_prefix("    ") else {
            continue;
        };
        for (tag, dword) in [("    REG_DWORD    ", true), ("    REG_SZ    ", false)] {
            if let Some((name, data)) = body.split_once(tag) {
                let data = if dword {
                    let hex = data.trim().trim_start_matches("0x");
                    RegData::Dword(u32::from_str_radix(hex, 16).unwrap())
                } else {
                    RegData::Sz(data.to_string())
                };
                out.insert((key.clone(), name.to_ascii_lowercase(), data));
            }
        }
        // `REG_SZ` with empty data prints no trailing separator.
        if let Some(name) = body.strip_suffix("    REG_SZ") {
            out.insert((
                key.clone(),
                name.to_ascii_lowercase(),
                RegData::Sz(String::new()),
            ));
        }
    }
    out
}

/// What the rendering of `desired` says the registry must hold.
fn rendered(desired: &Values) -> BTreeSet<(String, String, RegData)> {
    render::render(desired)
        .into_values()
        .flat_map(|r| match r {
            Rendered::Values(v) => v,
            Rendered::NotCarried(_) => Vec::new(),
        })
        .map(|v| {
            (
                v.key.to_ascii_lowercase(),
                v.name.to_ascii_lowercase(),
                v.data,
            )
        })
        .collect()
}

async fn eventually(secs: u64, what: &str, wine: &Wine, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}\nagent log:\n{}",
            wine.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn windows_policy(name: &str, family: &str, settings: Value, include: &[&str]) -> Value {
    json!({
        "name": name,
        "description": "windows end-to-end test",
        "family": family,
        "platform": "windows",
        "settings": settings,
        "assignments": {"include": include},
    })
}

/// The device's effective settings as the agent was given them (the
/// canonical values; a report splits rule lists into one row per rule).
async fn effective(server: &TestServer, device: &str) -> Values {
    let (s, view) = server
        .admin()
        .get(&format!("/devices/{device}/effective"))
        .await
        .unwrap();
    assert!(s.is_success(), "{view}");
    view["settings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["setting"].as_str().unwrap().to_string(),
                r["value"].clone(),
            )
        })
        .collect()
}

fn policies() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "win-av",
            "antivirus",
            json!({"real_time_protection": true, "scan_archives": false,
                   "pua_protection": "block", "cloud_block_level": "high",
                   "tamper_protection": true}),
        ),
        (
            "win-exclusions",
            "antivirus_exclusions",
            json!({"excluded_paths": [r"C:\Data"], "excluded_extensions": ["log"],
                   "excluded_processes": [r"C:\Tools\backup.exe"]}),
        ),
        (
            "win-asr",
            "asr",
            json!({"asr_rules": {"d4f940ab-401b-4efc-aadc-ad5f3c50688a": "block",
                                 "9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2": "audit"}}),
        ),
        (
            "win-edr",
            "edr",
            json!({"sample_sharing": "none", "edr_device_tag": "finance"}),
        ),
        (
            "win-firewall",
            "firewall",
            json!({"firewall_enabled": true, "default_inbound_action": "block",
                   "default_outbound_action": "allow", "firewall_public_enabled": true}),
        ),
        (
            "win-rules",
            "firewall_rules",
            json!({"firewall_rules": [
                {"name": "web", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "443"},
                {"name": "no-telnet", "direction": "out", "action": "block", "protocol": "tcp", "remote_ports": "23"}
            ]}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_under_wine_enforces_through_the_policy_registry() {
    let exe = match prerequisites() {
        Ok(exe) => exe,
        Err(why) => {
            if std::env::var("RAMPART_REQUIRE_WINDOWS_TESTS").as_deref() == Ok("1") {
                panic!("RAMPART_REQUIRE_WINDOWS_TESTS=1 but {why}");
            }
            eprintln!("SKIPPED: the Windows end-to-end test ({why})");
            return;
        }
    };
    let started = Instant::now();
    let mut wine = Wine::new(exe);
    // A local rule someone made: never Rampart's to touch.
    let rules = r"HKLM\Software\Policies\Microsoft\WindowsFirewall\FirewallRules";
    let local = "v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=17|LPort=53|Name=local dns|";
    assert!(wine
        .reg(&[
            "add",
            rules,
            "/v",
            "local-dns",
            "/t",
            "REG_SZ",
            "/d",
            local,
            "/f"
        ])
        .status
        .success());

    let server = TestServer::start().await.unwrap();
    std::fs::write(
        wine.dir.join("agent.toml"),
        "check_in_interval_secs = 3600\nwait_timeout_secs = 20\ndrift_check_interval_secs = 10\n[survey]\nbuiltin = false\n",
    )
    .unwrap();
    let (s, package) = server
        .admin()
        .post("/onboarding", &json!({}))
        .await
        .unwrap();
    assert!(s.is_success(), "{package}");
    std::fs::write(wine.dir.join("package.json"), package.to_string()).unwrap();
    let out = wine
        .agent(&[
            "onboard",
            "--package",
            &win(&wine.dir.join("package.json")),
            "--device-name",
            "win-01",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "onboard: {}", stderr(&out));

    for (name, family, settings) in policies() {
        put_policy(
            &server,
            &windows_policy(name, family, settings, &["all-devices"]),
        )
        .await;
    }
    wine.start();

    let expected_succeeded = |r: &Value| {
        let rows = r["settings"].as_array().cloned().unwrap_or_default();
        !rows.is_empty()
            && rows.iter().filter(|row| row["key"].is_null()).all(|row| {
                if row["setting"] == "tamper_protection" {
                    row["status"] == "not_applicable"
                } else {
                    row["status"] == "succeeded"
                }
            })
    };
    eventually(180, "every Windows setting succeeds", &wine, async || {
        expected_succeeded(&device_report(&server, "win-01").await)
    })
    .await;
    let r = device_report(&server, "win-01").await;
    for row in r["settings"].as_array().unwrap() {
        if row["status"] == "succeeded" && row["key"].is_null() {
            let message = row["error_message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with(r"registry: HKLM\SOFTWARE\Policies\Microsoft\"),
                "{row}"
            );
            assert_eq!(row["backend"], "registry", "{row}");
        }
    }
    let tamper = r["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["setting"] == "tamper_protection")
        .unwrap();
    assert!(
        tamper["error_message"]
            .as_str()
            .unwrap()
            .contains("tamper protection"),
        "{tamper}"
    );

    // The registry holds exactly the rendered values, and the local rule.
    let desired = effective(&server, "win-01").await;
    let mut want = rendered(&desired);
    want.insert((
        r"software\policies\microsoft\windowsfirewall\firewallrules".into(),
        "local-dns".into(),
        RegData::Sz(local.into()),
    ));
    assert_eq!(wine.policy_values(), want);
    assert!(want
        .iter()
        .any(|(k, n, d)| k.ends_with(r"real-time protection")
            && n == "disablerealtimemonitoring"
            && *d == RegData::Dword(0)));
    assert!(want
        .iter()
        .any(|(k, n, _)| k.ends_with(r"\firewallrules") && n == "rampart-web"));
    assert!(want
        .iter()
        .any(|(k, n, _)| k.ends_with(r"\privateprofile") && n == "enablefirewall"));

    // A hand-made change is restored and reported as tamper.
    let rtp = r"HKLM\Software\Policies\Microsoft\Windows Defender\Real-Time Protection";
    assert!(wine
        .reg(&[
            "add",
            rtp,
            "/v",
            "DisableRealtimeMonitoring",
            "/t",
            "REG_DWORD",
            "/d",
            "1",
            "/f"
        ])
        .status
        .success());
    eventually(
        60,
        "the hand-made change is restored and reported",
        &wine,
        async || {
            let r = device_report(&server, "win-01").await;
            let events = r["tamper_events"].as_array().cloned().unwrap_or_default();
            events
                .iter()
                .any(|e| e["setting"] == "real_time_protection" && e["restored"] == true)
                && wine.policy_values().contains(&(
                    r"software\policies\microsoft\windows defender\real-time protection".into(),
                    "disablerealtimemonitoring".into(),
                    RegData::Dword(0),
                ))
        },
    )
    .await;

    // Removing the assignment removes Rampart's values, and only those.
    for (name, family, settings) in policies() {
        put_policy(&server, &windows_policy(name, family, settings, &[])).await;
    }
    sync(&server, "win-01").await;
    let mut only_local: BTreeSet<_> = [(
        r"software\policies\microsoft\windowsfirewall\firewallrules".to_string(),
        "local-dns".to_string(),
        RegData::Sz(local.into()),
    )]
    .into();
    eventually(60, "the unassigned values are removed", &wine, async || {
        wine.policy_values() == only_local
    })
    .await;

    // A domain controller (and a pooled virtual desktop): reported with its
    // code, not managed until the tenant allows it.
    wine.stop();
    let uev = r"HKLM\Software\Policies\Microsoft\UEV\Agent\Configuration\WindowsSettings";
    assert!(wine
        .reg(&[
            "add",
            uev,
            "/v",
            "VdiState",
            "/t",
            "REG_DWORD",
            "/d",
            "1",
            "/f"
        ])
        .status
        .success());
    // Another product's policy value: Rampart leaves it alone.
    only_local.insert((
        r"software\policies\microsoft\uev\agent\configuration\windowssettings".to_string(),
        "vdistate".to_string(),
        RegData::Dword(1),
    ));
    let options = r"HKLM\System\CurrentControlSet\Control\ProductOptions";
    assert!(wine
        .reg(&[
            "add",
            options,
            "/v",
            "ProductType",
            "/t",
            "REG_SZ",
            "/d",
            "LanmanNt",
            "/f"
        ])
        .status
        .success());
    for (name, family, settings) in policies() {
        put_policy(
            &server,
            &windows_policy(name, family, settings, &["all-devices"]),
        )
        .await;
    }
    wine.start();
    eventually(
        90,
        "the domain controller is not managed, with its code",
        &wine,
        async || {
            let status = wine.status();
            status["state"] == "not_managed"
                && status["enrollment"]["code"] == "domain_controller_not_allowed"
        },
    )
    .await;
    let r = device_report(&server, "win-01").await;
    assert_eq!(r["managed"], false, "{r}");
    let (_, shown) = server.admin().get("/devices/win-01").await.unwrap();
    let conditions: Vec<&str> = shown["conditions"]
        .as_array()
        .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        conditions.contains(&"domain_controller") && conditions.contains(&"non_persistent_vdi"),
        "the conditions the registry shows reach the server: {shown}"
    );
    assert_eq!(
        wine.policy_values(),
        only_local,
        "nothing enforced on the DC"
    );

    let (s, b) = server
        .admin()
        .put(
            "/tenant/settings",
            &json!({"manage_domain_controllers": true}),
        )
        .await
        .unwrap();
    assert!(s.is_success(), "{b}");
    sync(&server, "win-01").await;
    eventually(
        120,
        "the tenant allows domain controllers: enforced",
        &wine,
        async || expected_succeeded(&device_report(&server, "win-01").await),
    )
    .await;
    let mut want = rendered(&effective(&server, "win-01").await);
    want.extend(only_local.iter().cloned());
    assert_eq!(wine.policy_values(), want);
    assert_eq!(wine.status()["state"], "enrolled");

    // The same agent as a Windows service: installed, started by the
    // service control manager, enforcing a change, stopped and removed.
    wine.stop();
    let out = wine.agent(&["service", "install"]).output().unwrap();
    assert!(out.status.success(), "service install: {}", stderr(&out));
    let sc = |args: &[&str]| wine.command("wine", &["sc"]).args(args).output().unwrap();
    // The foreground agent just stopped; under load Wine may take a while
    // to let go of it, and the service manager refuses a start meanwhile.
    // A start that timed out may still have started it: `query` decides.
    let running = || {
        let q = String::from_utf8_lossy(&sc(&["query", "RampartAgent"]).stdout).into_owned();
        q.contains("RUNNING") || q.contains("START_PENDING")
    };
    let mut start_answer = sc(&["start", "RampartAgent"]);
    for _ in 0..30 {
        if start_answer.status.success() || running() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        start_answer = sc(&["start", "RampartAgent"]);
    }
    assert!(
        start_answer.status.success() || running(),
        "sc start: {}{}",
        String::from_utf8_lossy(&start_answer.stdout),
        stderr(&start_answer)
    );
    let (name, family, mut settings) = policies().remove(3);
    settings["edr_device_tag"] = json!("finance-2");
    put_policy(
        &server,
        &windows_policy(name, family, settings, &["all-devices"]),
    )
    .await;
    let tag = (
        r"software\policies\microsoft\windows advanced threat protection\devicetagging".to_string(),
        "group".to_string(),
        RegData::Sz("finance-2".into()),
    );
    eventually(90, "the service enforces a change", &wine, async || {
        String::from_utf8_lossy(&sc(&["query", "RampartAgent"]).stdout).contains("RUNNING")
            && wine.policy_values().contains(&tag)
    })
    .await;
    let out = wine
        .command("wine", &[])
        .arg(&wine.exe)
        .args(["service", "uninstall"])
        .output()
        .unwrap();
    assert!(out.status.success(), "service uninstall: {}", stderr(&out));
    assert!(
        !sc(&["query", "RampartAgent"]).status.success(),
        "the service is gone"
    );

    server.stop().await.unwrap();
    eprintln!(
        "the Windows end-to-end test took {} s",
        started.elapsed().as_secs()
    );
}

#[test]
fn reg_query_output_is_parsed() {
    let text = "HKEY_LOCAL_MACHINE\\Software\\Policies\\Microsoft\\Windows Defender\\Real-Time Protection\r\n    DisableRealtimeMonitoring    REG_DWORD    0x1\r\n\r\nHKEY_LOCAL_MACHINE\\Software\\Policies\\Microsoft\\WindowsFirewall\\FirewallRules\r\n    Rampart-web    REG_SZ    v2.10|Action=Allow|Name=web|\r\n    empty    REG_SZ\r\n";
    let parsed = parse_reg_query(text);
    assert!(parsed.contains(&(
        r"software\policies\microsoft\windows defender\real-time protection".into(),
        "disablerealtimemonitoring".into(),
        RegData::Dword(1)
    )));
    assert!(parsed.contains(&(
        r"software\policies\microsoft\windowsfirewall\firewallrules".into(),
        "rampart-web".into(),
        RegData::Sz("v2.10|Action=Allow|Name=web|".into())
    )));
    assert_eq!(parsed.len(), 3);
}
