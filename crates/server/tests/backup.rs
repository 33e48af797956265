//! `rampart-server backup`, `restore` and `check`, run as an operator runs
//! them against a real server process: a backup while it serves, a restore
//! refused while it runs, a restore that keeps what it replaces, and a
//! check that tells a wrong master key from the right one.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod process;

use std::path::Path;
use std::process::{Command, Output};

use process::{temp, ServerProcess};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn server_cmd(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart-server"))
        .args(args)
        .args(["--data-dir", data.to_str().unwrap()])
        .env_remove("RAMPART_MASTER_KEY_FILE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_while_serving_restore_only_when_stopped_check_the_master_key() {
    let data = temp("backup-data");
    let out = temp("backup-file");
    let server = ServerProcess::spawn(&data, None, &[]);
    let policy = json!({"name": "before-backup", "family": "antivirus", "platform": "linux",
        "settings": {"scan_archives": true}, "assignments": {"include": ["all-devices"]}});
    let (s, b) = server.admin(Method::POST, "/policies", Some(policy)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let backup = server_cmd(&data, &["backup", "--out", out.to_str().unwrap()]);
    assert!(backup.status.success(), "{}", text(&backup));
    assert!(text(&backup).contains("is not in it"), "{}", text(&backup));
    let again = server_cmd(&data, &["backup", "--out", out.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );

    // A change after the backup, which the restore takes back.
    let later = json!({"name": "after-backup", "family": "antivirus", "platform": "linux",
        "settings": {"scan_archives": false}, "assignments": {"include": ["all-devices"]}});
    let (s, _) = server.admin(Method::POST, "/policies", Some(later)).await;
    assert_eq!(s, StatusCode::CREATED);
    let refused = server_cmd(&data, &["restore", out.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("is running") && text(&refused).contains("stop it first"),
        "{}",
        text(&refused)
    );
    drop(server);

    // Not a backup: refused, and the database is untouched.
    let junk = temp("junk");
    std::fs::write(&junk, "hello").unwrap();
    let bad = server_cmd(&data, &["restore", junk.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("cannot be restored"), "{}", text(&bad));

    let restored = server_cmd(&data, &["restore", out.to_str().unwrap()]);
    assert!(restored.status.success(), "{}", text(&restored));
    let kept: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rampart.db.before-restore-"))
        .collect();
    assert!(!kept.is_empty(), "the replaced database is kept");

    // The right master key opens every key; another one does not.
    let check = server_cmd(&data, &["check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("is sound"), "{}", text(&check));
    let key = data.join("master.key");
    let right = std::fs::read(&key).unwrap();
    let other = temp("other-key");
    let o = server_cmd(&other, &["check"]);
    assert!(!o.status.success(), "no database there");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let wrong = server_cmd(&data, &["check"]);
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("does not open with this master key"),
        "{}",
        text(&wrong)
    );
    std::fs::write(&key, right).unwrap();
    std::fs::remove_file(&key).unwrap();
    let missing = server_cmd(&data, &["check"]);
    assert!(text(&missing).contains("master key"), "{}", text(&missing));
    assert!(!data.join("master.key").exists(), "check creates no key");
    for p in [&out, &junk] {
        let _ = std::fs::remove_file(p);
    }
    for d in [&data, &other] {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_file(data.with_extension("log"));
}
