//! Real ClamAV, as root: a private clamd (its own directory, socket and a
//! signature database holding only a custom `.hdb` of the EICAR test file,
//! so no internet is needed) and a real `rampart-agent` enforcing policies
//! from an in-process server through the `clamav` provider.
//!
//! Checked with the scanners themselves: a policy's exclusion makes the
//! excluded folder scan clean (clamdscan, and clamd's own `CONTSCAN`, which
//! shows clamd was restarted with the managed configuration) while the same
//! file elsewhere is detected; real-time protection makes opening the EICAR
//! file in a watched folder fail; unassigning the exclusion makes the file
//! detected again.
//!
//! Prerequisites: root, `clamd`, `clamdscan`, `clamonacc`, `clamconf`
//! (Debian: `apt-get install clamav clamav-daemon clamdscan`). Missing, the tests
//! print "skipped" — unless `RAMPART_REQUIRE_ROOT_TESTS=1` (CI sets it),
//! then they fail. The machine's own clamd, if any, is not touched.
// A real rampart-server runs beside the agent: Linux (and macOS) only;
// the Windows agent's end-to-end test is windows_wine.rs, run from Linux.
#![cfg(not(windows))]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rampart_testkit::TestServer;
use serde_json::json;
use support::{device_report, eventually, policy, put_policy, row, sync, Agent};

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const SIGNATURE: &str = "Agent.Test.EICAR.UNOFFICIAL";

fn prerequisites() -> bool {
    support::root_prerequisites(
        "ClamAV",
        &["clamd", "clamdscan", "clamonacc", "clamconf", "md5sum"],
        "apt-get install clamav clamav-daemon clamdscan",
    )
}

/// A private clamd: directory, configuration, signatures, and the script
/// the agent restarts it with. Stopped (clamd and any clamonacc of its
/// configuration, by PID) and removed on drop.
struct Clam {
    dir: PathBuf,
}

impl Clam {
    fn new() -> Clam {
        let dir = support::temp_dir("clamav");
        for sub in ["db", "scan", "excluded", "watched"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for file in ["scan/eicar.com", "excluded/eicar.com", "watched/eicar.com"] {
            std::fs::write(dir.join(file), EICAR).unwrap();
        }
        std::fs::write(dir.join("watched/clean.txt"), "clean\n").unwrap();
        let md5 = Command::new("md5sum")
            .arg(dir.join("scan/eicar.com"))
            .output()
            .unwrap();
        let md5 = String::from_utf8_lossy(&md5.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        // A hash signature: md5:size:name.
        std::fs::write(
            dir.join("db/agent.hdb"),
            format!("{md5}:{}:Agent.Test.EICAR\n", EICAR.len()),
        )
        .unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("clamd.conf"),
            format!(
                "# The test's private clamd.\nLocalSocket {d}/clamd.sock\nDatabaseDirectory {d}/db\nLogFile {d}/clamd.log\nTemporaryDirectory {d}\nPidFile {d}/clamd.pid\nForeground no\n"
            ),
        )
        .unwrap();
        // Stops the clamd of the PID file (waiting until it is gone or a
        // zombie), then starts a new one; clamd returns once it listens.
        std::fs::write(
            dir.join("restart.sh"),
            format!(
                "#!/bin/sh\nif [ -f {d}/clamd.pid ]; then\n  pid=$(cat {d}/clamd.pid)\n  kill \"$pid\" 2>/dev/null\n  i=0\n  while [ -d /proc/$pid ] && [ \"$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)\" != Z ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\nfi\nexec clamd -c {d}/clamd.conf\n"
            ),
        )
        .unwrap();
        Clam { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn conf(&self) -> PathBuf {
        self.path("clamd.conf")
    }

    fn restart(&self) {
        let out = Command::new("sh")
            .arg(self.path("restart.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "clamd did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.path("clamd.log")).unwrap_or_default()
        );
        assert_eq!(self.command("PING"), "PONG");
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.path("clamd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// One clamd command over its socket; the answer, trimmed.
    fn command(&self, command: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(self.path("clamd.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("n{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer.trim().to_string()
    }

    /// `clamdscan --fdpass` with this configuration: (exit code, output).
    fn clamdscan(&self, file: &str) -> (i32, String) {
        let out = Command::new("clamdscan")
            .args(["--fdpass", "--no-summary", "-c"])
            .arg(self.conf())
            .arg(self.path(file))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// clamonacc processes of this configuration.
    fn clamonacc(&self) -> Vec<u32> {
        let conf = self.conf().display().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if comm.trim() == "clamonacc"
                && !zombie
                && String::from_utf8_lossy(&cmdline).contains(&conf)
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Whether opening `file` is refused (what clamonacc's prevention does).
    fn open_refused(&self, file: &str) -> bool {
        match std::fs::read(self.path(file)) {
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
        }
    }
}

impl Drop for Clam {
    fn drop(&mut self) {
        let mut pids = self.clamonacc();
        pids.extend(self.pid());
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        // Let them go before their directory does.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && pids.iter().any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    !s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
            })
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent_config(clam: &Clam) -> String {
    let d = clam.dir.display();
    format!(
        "[providers.file]\nenabled = false\n[providers.clamav]\nenabled = true\nconfig_path = \"{d}/clamd.conf\"\nsocket = \"{d}/clamd.sock\"\non_access_include_paths = [\"{d}/watched\"]\nrestart_command = [\"sh\", \"{d}/restart.sh\"]\nrestart_timeout_secs = 60\n"
    )
}

fn block_of(conf: &Path) -> String {
    let text = std::fs::read_to_string(conf).unwrap();
    let start = text.find("# BEGIN rampart managed").unwrap_or(0);
    let end = text
        .find("# END rampart managed")
        .map_or(0, |i| i + "# END rampart managed".len());
    text[start..end.max(start)].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn clamd_and_clamonacc_enforce_exclusions_and_real_time_protection() {
    if !prerequisites() {
        return;
    }
    let clam = Clam::new();
    clam.restart();
    let first_clamd = clam.pid();
    // Before any policy: the file is detected everywhere, and opens.
    let (code, out) = clam.clamdscan("excluded/eicar.com");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(SIGNATURE), "{out}");
    assert!(!clam.open_refused("watched/eicar.com"));

    let server = TestServer::start().await.unwrap();
    let mut agent = Agent::new("clam-01", &agent_config(&clam));
    agent.onboard(&server).await;
    let excluded = clam.path("excluded").display().to_string();
    put_policy(
        &server,
        &policy(
            "clam-av",
            "antivirus",
            json!({
                "real_time_protection": true,
                "scan_archives": true,
                "max_file_size_mb": 50,
                "pua_protection": "audit",
                "excluded_paths": [excluded],
                "excluded_processes": ["/usr/bin/backup"],
            }),
        ),
    )
    .await;
    agent.start();

    let succeeded = [
        "real_time_protection",
        "scan_archives",
        "max_file_size_mb",
        "excluded_paths",
    ];
    eventually(60, "the ClamAV settings succeed", &agent, async || {
        let r = device_report(&server, "clam-01").await;
        succeeded
            .iter()
            .all(|s| row(&r, s)["status"] == "succeeded" && row(&r, s)["backend"] == "clamav")
    })
    .await;
    let r = device_report(&server, "clam-01").await;
    // What ClamAV cannot carry says so, with the reason.
    let pua = row(&r, "pua_protection");
    assert_eq!(pua["status"], "not_applicable", "{r}");
    assert!(
        pua["error_message"].as_str().unwrap().contains("audit"),
        "{pua}"
    );
    let processes = row(&r, "excluded_processes");
    assert_eq!(processes["status"], "not_applicable", "{r}");
    assert!(
        processes["error_message"]
            .as_str()
            .unwrap()
            .contains("no process exclusion"),
        "{processes}"
    );

    // The managed block comes first, and the test's own lines stay.
    let text = std::fs::read_to_string(clam.conf()).unwrap();
    assert!(text.starts_with("# BEGIN rampart managed"), "{text}");
    assert!(text.contains("# The test's private clamd."), "{text}");
    let block = block_of(&clam.conf());
    for line in [
        "ScanArchive yes",
        "MaxFileSize 50M",
        &format!("ExcludePath ^{excluded}/"),
        &format!("OnAccessExcludePath {excluded}"),
        "OnAccessPrevention yes",
        &format!("OnAccessIncludePath {}", clam.path("watched").display()),
    ] {
        assert!(block.contains(line), "{line} in\n{block}");
    }
    assert!(!block.contains("DetectPUA"), "{block}");
    assert_ne!(clam.pid(), first_clamd, "clamd was restarted to load it");

    // The exclusion: clean in the excluded folder, detected elsewhere.
    let (code, out) = clam.clamdscan("excluded/eicar.com");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FOUND"), "{out}");
    let (code, out) = clam.clamdscan("scan/eicar.com");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(SIGNATURE), "{out}");
    // clamd itself (not only clamdscan, which reads the file too) runs the
    // managed configuration.
    assert_eq!(
        clam.command(&format!("CONTSCAN {excluded}")),
        format!("{excluded}: Excluded")
    );
    assert!(clam
        .command(&format!("CONTSCAN {}", clam.path("scan").display()))
        .contains(&format!("eicar.com: {SIGNATURE} FOUND")));

    // Real-time protection: opening the EICAR file in the watched folder is
    // refused; a clean file opens.
    eventually(20, "clamonacc blocks the EICAR file", &agent, async || {
        clam.open_refused("watched/eicar.com")
    })
    .await;
    assert!(std::fs::read(clam.path("watched/clean.txt")).is_ok());
    let watching = clam.clamonacc();
    assert_eq!(watching.len(), 1);

    // The agent restarts: real-time protection does not stop meanwhile, and
    // the new agent adopts the clamonacc it finds (no restart, no tamper).
    agent.stop();
    assert_eq!(clam.clamonacc(), watching);
    assert!(clam.open_refused("watched/eicar.com"));
    let enforced = agent.status()["policy"]["enforced_at"].as_i64().unwrap();
    // Times are whole seconds: make sure the next enforcement is later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.start();
    eventually(20, "the restarted agent enforces", &agent, async || {
        agent.status()["policy"]["enforced_at"]
            .as_i64()
            .is_some_and(|t| t > enforced)
    })
    .await;
    assert_eq!(clam.clamonacc(), watching, "{}", agent.log());
    assert!(!agent.log().contains("event=\"tamper\""), "{}", agent.log());

    // A hand edit of the block is drift: the next enforcement restores it,
    // and clamd is restarted so that it runs the restored file.
    let edited = std::fs::read_to_string(clam.conf())
        .unwrap()
        .replace("MaxFileSize 50M", "MaxFileSize 10M");
    std::fs::write(clam.conf(), edited).unwrap();
    let before = clam.pid();
    sync(&server, "clam-01").await;
    eventually(30, "the hand edit is undone", &agent, async || {
        block_of(&clam.conf()).contains("MaxFileSize 50M") && clam.pid() != before
    })
    .await;

    // Unassigning the exclusion: the lines go, the file is detected again.
    put_policy(
        &server,
        &policy(
            "clam-av",
            "antivirus",
            json!({
                "real_time_protection": true,
                "scan_archives": true,
                "max_file_size_mb": 50,
            }),
        ),
    )
    .await;
    eventually(30, "the exclusion is removed", &agent, async || {
        !block_of(&clam.conf()).contains("ExcludePath")
            && agent.reverted("clamav", "excluded_paths")
    })
    .await;
    assert!(row(&device_report(&server, "clam-01").await, "excluded_paths").is_null());
    let (code, out) = clam.clamdscan("excluded/eicar.com");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(SIGNATURE), "{out}");
    assert!(clam
        .command(&format!("CONTSCAN {excluded}"))
        .contains(SIGNATURE));
    // Real-time protection off: clamonacc stops, the file opens again.
    put_policy(
        &server,
        &policy(
            "clam-av",
            "antivirus",
            json!({"real_time_protection": false, "scan_archives": false}),
        ),
    )
    .await;
    eventually(30, "real-time protection is off", &agent, async || {
        let r = device_report(&server, "clam-01").await;
        row(&r, "real_time_protection")["status"] == "succeeded"
            && row(&r, "real_time_protection")["observed"] == false
            && row(&r, "scan_archives")["observed"] == false
    })
    .await;
    assert!(clam.clamonacc().is_empty());
    assert!(!clam.open_refused("watched/eicar.com"));
    let block = block_of(&clam.conf());
    assert!(block.contains("ScanArchive no"), "{block}");
    assert!(block.contains("OnAccessPrevention no"), "{block}");
    assert!(!block.contains("MaxFileSize"), "{block}");

    // Offboarding removes what Rampart set: the file is the test's again.
    agent.stop();
    let out = agent.cmd(&["offboard"]).output().unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let text = std::fs::read_to_string(clam.conf()).unwrap();
    assert!(!text.contains("rampart managed"), "{text}");
    assert!(text.starts_with("# The test's private clamd."), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_clamd_is_an_error_in_clamds_own_words() {
    if !prerequisites() {
        return;
    }
    let clam = Clam::new();
    // No clamd, and a restart command that cannot bring one up.
    let config = agent_config(&clam).replace(
        &format!("restart_command = [\"sh\", \"{}/restart.sh\"]", clam.dir.display()),
        "restart_command = [\"sh\", \"-c\", \"echo 'clamav-daemon.service: unit not found' >&2; exit 5\"]",
    );
    let server = TestServer::start().await.unwrap();
    let mut agent = Agent::new("clam-down", &config);
    agent.onboard(&server).await;
    put_policy(
        &server,
        &policy("clam-av", "antivirus", json!({"scan_archives": false})),
    )
    .await;
    agent.start();
    eventually(30, "the error reaches the server", &agent, async || {
        let r = device_report(&server, "clam-down").await;
        row(&r, "scan_archives")["status"] == "error"
    })
    .await;
    let r = device_report(&server, "clam-down").await;
    let message = row(&r, "scan_archives")["error_message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("unit not found"), "{message}");
    // The file is left as it was: the restart failed, so the change was
    // taken back.
    assert!(!std::fs::read_to_string(clam.conf())
        .unwrap()
        .contains("rampart managed"));
    agent.stop();
    server.stop().await.unwrap();
}
