//! The `rampart-agent` binary as scripts see it: exit codes (0 done, 1 error
//! with one `error:` line, 2 usage) and the stable `status -o json` shape.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
        .args(args)
        .env_remove("RAMPART_AGENT_STATE_DIR")
        .env_remove("RAMPART_AGENT_CONFIG")
        .output()
        .expect("run rampart-agent")
}

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let p = std::env::temp_dir().join(format!(
            "rampart-agent-cli-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(agent(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(agent(&["onboard"]).status.code(), Some(2));
    assert_eq!(agent(&["status", "-o", "yaml"]).status.code(), Some(2));
}

#[test]
fn status_of_a_fresh_directory_is_not_onboarded() {
    let dir = Dir::new();
    let out = agent(&["status", "--state-dir", dir.path(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "not_onboarded");
    assert_eq!(v["outbox"], 0);
    assert_eq!(v["settings"], json!([]));
    for field in [
        "enrollment",
        "last_error",
        "managed_by",
        "server",
        "tenant",
        "device",
        "last_check_in",
        "policy",
        "certificate_not_after",
    ] {
        assert!(v.get(field).is_some(), "status JSON lacks {field}");
    }
    let table = agent(&["status", "--state-dir", dir.path()]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("not_onboarded"));
}

#[test]
fn errors_exit_1_with_one_clear_line() {
    let dir = Dir::new();
    let out = agent(&["run", "--state-dir", dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: this device is not onboarded"),
        "{stderr}"
    );

    let missing = format!("{}/nope.json", dir.path());
    let out = agent(&["onboard", "--package", &missing, "--state-dir", dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: the onboarding package"), "{stderr}");
    // The refusal is recorded for `status`.
    let status = agent(&["status", "--state-dir", dir.path(), "-o", "json"]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["last_error"]["code"], "package_invalid");
}

#[test]
fn a_bad_configuration_is_refused_before_anything_happens() {
    let dir = Dir::new();
    std::fs::write(
        format!("{}/agent.toml", dir.path()),
        "check_in_interval_secs = 1\n",
    )
    .unwrap();
    let out = agent(&["run", "--state-dir", dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("check_in_interval_secs"), "{stderr}");
}

#[test]
fn offboarding_a_device_that_was_never_onboarded_is_an_error() {
    let dir = Dir::new();
    let out = agent(&["offboard", "--state-dir", dir.path()]);
    assert_eq!(out.status.code(), Some(1));
}
