//! The API commands and `rampart apply`, run as a user runs them: the real
//! binary against a real server started in this process on port 0.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rampart_testkit::{Options, TestServer};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `rampart` with `args` against `server`, authenticated with `token`.
/// The process runs on a blocking thread so the server keeps serving.
async fn run_as(server: &TestServer, token: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(["--server", &server.url, "--token", token])
        .args(args)
        .env_remove("RAMPART_SERVER")
        .env_remove("RAMPART_TOKEN")
        .current_dir(repo());
    tokio::task::spawn_blocking(move || cmd.output().expect("run rampart"))
        .await
        .unwrap()
}

/// Runs `rampart` as the server's bootstrap admin.
async fn rampart(server: &TestServer, args: &[&str]) -> Output {
    run_as(server, &server.admin_token, args).await
}

/// Runs `rampart` and insists it succeeds; returns stdout.
async fn ok(server: &TestServer, args: &[&str]) -> String {
    let out = rampart(server, args).await;
    assert!(
        out.status.success(),
        "rampart {args:?} failed:\n{}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `rampart ... -o json` and parses what it prints.
async fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let text = ok(server, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{all:?}: {e}\n{text}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rampart-cli-api-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn device_list_show_tag_sync_and_delete() {
    let server = TestServer::with_examples().await.unwrap();

    let devices = json(&server, &["device", "list"]).await;
    assert_eq!(devices.as_array().unwrap().len(), 12);
    let table = ok(&server, &["device", "list"]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("web-01"), "{table}");
    assert!(table.contains("12 devices"), "{table}");
    let macs = json(&server, &["device", "list", "--os", "macos"]).await;
    assert_eq!(names(&macs), ["mac-design-01", "mac-dev-02", "mac-exec-01"]);
    let found = json(
        &server,
        &[
            "device", "list", "--search", "mac", "--desc", "--limit", "2",
        ],
    )
    .await;
    assert_eq!(names(&found), ["mac-exec-01", "mac-dev-02"]);
    let out = rampart(&server, &["device", "list", "--sort", "colour"]).await;
    assert!(
        !out.status.success() && stderr(&out).contains("sort"),
        "{}",
        stderr(&out)
    );

    let shown = ok(&server, &["device", "show", "web-01"]).await;
    assert!(
        shown.contains("22.04") && shown.contains("prod, web"),
        "{shown}"
    );
    let effective = ok(&server, &["device", "effective", "web-01"]).await;
    assert!(effective.contains("CONFLICT (not applied)"), "{effective}");

    // --add keeps the other tags; positional tags replace them all.
    let tagged = json(&server, &["device", "tag", "web-01", "--add", "canary"]).await;
    assert_eq!(tagged["tags"], serde_json::json!(["canary", "prod", "web"]));
    let out = ok(&server, &["device", "tag", "web-01", "blue", "green"]).await;
    assert_eq!(out.trim(), "web-01: blue, green");
    let shown = json(&server, &["device", "show", "web-01"]).await;
    assert_eq!(shown["tags"], serde_json::json!(["blue", "green"]));

    // A bad tag is refused with the field path, and nothing changes.
    let out = rampart(&server, &["device", "tag", "web-01", "a,b"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("  tags[0]: a tag must not contain commas"),
        "{}",
        stderr(&out)
    );
    let shown = json(&server, &["device", "show", "web-01"]).await;
    assert_eq!(shown["tags"], serde_json::json!(["blue", "green"]));

    let synced = ok(&server, &["device", "sync", "web-01"]).await;
    assert!(synced.contains("next check-in"), "{synced}");

    // A re-enrollment approval: one-shot, bounded, audited.
    let approved = ok(&server, &["device", "reenroll", "web-01", "--hours", "2"]).await;
    assert!(
        approved.contains("one enrollment under this name is allowed until"),
        "{approved}"
    );
    let out = rampart(&server, &["device", "reenroll", "web-01", "--hours", "500"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expires_in_hours"),
        "{}",
        stderr(&out)
    );

    let deleted = ok(&server, &["device", "delete", "web-01"]).await;
    assert_eq!(deleted.trim(), "deleted device web-01");
    let devices = json(&server, &["device", "list"]).await;
    assert_eq!(devices.as_array().unwrap().len(), 11);
    let out = rampart(&server, &["device", "show", "web-01"]).await;
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), "error: device \"web-01\" not found");

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_are_created_from_a_file_and_list_their_members() {
    let server = TestServer::with_examples().await.unwrap();
    let dir = tempdir();
    let file = dir.join("prod.yaml");
    std::fs::write(
        &file,
        "# production machines\nkind: Group\nname: prod\ndescription: Production\nrule: tag(\"prod\")\n",
    )
    .unwrap();

    let out = ok(&server, &["group", "create", "-f", file.to_str().unwrap()]).await;
    assert_eq!(out.trim(), "created group prod (rule: tag(\"prod\"))");
    let members = json(&server, &["group", "members", "prod"]).await;
    assert_eq!(
        members["devices"],
        serde_json::json!(["db-01", "dc-01", "web-01", "web-02"])
    );
    let listed = ok(&server, &["group", "members", "prod"]).await;
    assert_eq!(listed, "db-01\ndc-01\nweb-01\nweb-02\n");
    let group = json(&server, &["group", "show", "prod"]).await;
    assert_eq!(group["description"], "Production");
    assert!(names(&json(&server, &["group", "list"]).await).contains(&"prod".to_string()));

    // Creating it again is a conflict; a group a policy assigns cannot go.
    let out = rampart(&server, &["group", "create", "-f", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    let out = rampart(&server, &["group", "delete", "linux-servers"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("assigned by policies"),
        "{}",
        stderr(&out)
    );

    // A file of another kind is refused before anything is sent.
    let out = rampart(
        &server,
        &["group", "create", "-f", "examples/fleet/linux.yaml"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds 7 documents"),
        "{}",
        stderr(&out)
    );

    ok(&server, &["group", "delete", "prod"]).await;
    let out = rampart(&server, &["group", "show", "prod"]).await;
    assert!(stderr(&out).contains("group \"prod\" not found"));

    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_are_created_from_a_file_and_invalid_ones_are_refused_with_field_paths() {
    let server = TestServer::with_examples().await.unwrap();
    let dir = tempdir();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "kind: Policy\nname: lab-av\nfamily: antivirus\nplatform: linux\nsettings:\n  real_time_protection: true\nassignments:\n  include: [lab]\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "kind: Policy\nname: bad-av\nfamily: antivirus\nplatform: linux\nsettings:\n  pua_protection: sometimes\n  scan_archives: 3\nassignments:\n  include: [ghosts]\n",
    )
    .unwrap();
    let before = names(&json(&server, &["policy", "list"]).await);

    let out = ok(&server, &["policy", "create", "-f", good.to_str().unwrap()]).await;
    assert!(out.starts_with("created policy lab-av"), "{out}");
    let policy = json(&server, &["policy", "show", "lab-av"]).await;
    assert_eq!(policy["settings"]["real_time_protection"], true);
    assert_eq!(policy["assignments"]["include"], serde_json::json!(["lab"]));
    let shown = ok(&server, &["policy", "show", "linux-av-baseline"]).await;
    assert!(shown.contains("excluded_paths") && shown.contains("linux-servers"));

    let out = rampart(&server, &["policy", "create", "-f", bad.to_str().unwrap()]).await;
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("\n  settings.pua_protection: unknown value \"sometimes\""),
        "{err}"
    );
    assert!(err.contains("\n  settings.scan_archives: "), "{err}");
    assert!(stdout(&out).is_empty());
    let out = rampart(&server, &["policy", "show", "bad-av"]).await;
    assert!(!out.status.success(), "nothing was created");

    let mut expected = before.clone();
    expected.push("lab-av".into());
    expected.sort();
    let mut now = names(&json(&server, &["policy", "list"]).await);
    now.sort();
    assert_eq!(now, expected);

    let versions = json(&server, &["policy", "versions", "lab-av"]).await;
    assert_eq!(versions.as_array().unwrap().len(), 1);
    let out = ok(&server, &["policy", "delete", "lab-av"]).await;
    assert_eq!(out.trim(), "deleted policy lab-av");
    let out = rampart(&server, &["policy", "delete", "lab-av"]).await;
    assert_eq!(stderr(&out).trim(), "error: policy \"lab-av\" not found");

    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_key_is_shown_and_rotated() {
    let server = TestServer::with_examples().await.unwrap();
    let before = json(&server, &["tenant", "policy-key"]).await;
    assert_eq!(before["generation"], 0);
    let rotated = ok(&server, &["tenant", "rotate-policy-key"]).await;
    assert!(rotated.contains("nothing to re-onboard"), "{rotated}");
    let after = json(&server, &["tenant", "policy-key"]).await;
    assert_eq!(after["generation"], 1);
    assert_ne!(after["key"], before["key"]);
    let table = ok(&server, &["tenant", "policy-key"]).await;
    assert!(table.contains(after["key"].as_str().unwrap()), "{table}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_set_changes_only_the_settings_given() {
    let server = TestServer::with_examples().await.unwrap();
    let tenant = json(&server, &["tenant", "show"]).await;
    assert_eq!(tenant["name"], "default");
    assert_eq!(tenant["settings"]["enforcement"]["windows"], "all");
    let table = ok(&server, &["tenant", "show"]).await;
    assert!(table.contains("MDE-Management"), "{table}");

    // --dry-run shows the impact first and changes nothing.
    let before = json(&server, &["tenant", "show"]).await;
    let text = ok(
        &server,
        &["tenant", "set", "--enforcement", "linux=off", "--dry-run"],
    )
    .await;
    assert!(
        text.contains("web-01 (stops being managed: Rampart's settings are removed)"),
        "{text}"
    );
    assert!(text.contains("    - real_time_protection"), "{text}");
    assert!(text.contains("(dry run: nothing was changed)"), "{text}");
    assert!(
        !text.contains("fin-ws-01"),
        "a Windows device is not affected: {text}"
    );
    let impact = json(
        &server,
        &["tenant", "set", "--enforcement", "linux=off", "--dry-run"],
    )
    .await;
    let web01 = impact["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "web-01")
        .unwrap();
    assert_eq!(
        (&web01["managed_before"], &web01["managed_after"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(json(&server, &["tenant", "show"]).await, before);
    let first_line = text.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("0 devices would become managed, ")
            && first_line.contains("would stop being managed"),
        "{text}"
    );

    ok(
        &server,
        &[
            "tenant",
            "set",
            "--enforcement",
            "linux=tagged",
            "--pilot-tag",
            "Pilot",
            "--conflict-policy",
            "most_secure_wins",
            "--allow-takeover",
            "true",
        ],
    )
    .await;
    let settings = &json(&server, &["tenant", "show"]).await["settings"];
    assert_eq!(settings["enforcement"]["linux"], "tagged");
    assert_eq!(settings["enforcement"]["windows"], "all", "untouched");
    assert_eq!(settings["pilot_tag"], "Pilot");
    assert_eq!(settings["conflict_policy"], "most_secure_wins");
    assert_eq!(settings["allow_takeover"], true);

    // Mistakes are caught locally or by the server, and change nothing.
    let out = rampart(&server, &["tenant", "set", "--enforcement", "bsd=all"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown platform"),
        "{}",
        stderr(&out)
    );
    let out = rampart(&server, &["tenant", "set", "--pilot-tag", "a,b"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("  pilot_tag: "), "{}", stderr(&out));
    let out = rampart(&server, &["tenant", "set"]).await;
    assert!(!out.status.success(), "setting nothing is a usage error");
    assert_eq!(
        json(&server, &["tenant", "show"]).await["settings"]["pilot_tag"],
        "Pilot"
    );

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_token_is_printed_once_and_its_role_is_enforced() {
    let server = TestServer::with_examples().await.unwrap();
    let out = rampart(
        &server,
        &[
            "token",
            "create",
            "--role",
            "read_only",
            "--name",
            "auditor",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let token = printed.trim();
    assert_eq!(printed.lines().count(), 1, "only the token on stdout");
    assert!(token.starts_with("rmp_"), "{printed}");
    assert!(!stderr(&out).contains(token), "shown once");
    assert!(stderr(&out).contains("shown only this once"));

    let me = run_as(&server, token, &["whoami"]).await;
    assert_eq!(
        stdout(&me).trim(),
        "token:auditor in tenant default (read_only)"
    );
    let tokens = json(&server, &["token", "list"]).await;
    assert!(
        !tokens.to_string().contains(token),
        "listings never show it"
    );
    assert!(names(&tokens).contains(&"auditor".to_string()));

    // A read-only token may read but not delete.
    let out = run_as(&server, token, &["policy", "list"]).await;
    assert!(out.status.success());
    let out = run_as(&server, token, &["policy", "delete", "windows-av"]).await;
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out).trim(),
        "error: deleting a policy needs the security_manager role; token:auditor has read_only"
    );
    ok(&server, &["policy", "show", "windows-av"]).await;

    let out = run_as(&server, "rmp_not_a_token", &["whoami"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown or revoked token (check --token or RAMPART_TOKEN)"),
        "{}",
        stderr(&out)
    );
    let out = rampart(&server, &["token", "create", "--role", "root"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("read_only, security_manager, global_admin"));

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_created_updated_disabled_and_deleted_and_the_last_admin_stays() {
    let server = TestServer::start().await.unwrap();
    let dir = tempdir();
    let password = dir.join("password");
    std::fs::write(&password, "correct horse battery\n").unwrap();
    let password = password.to_str().unwrap();
    ok(
        &server,
        &[
            "user",
            "create",
            "grace",
            "--role",
            "security_manager",
            "--password-file",
            password,
        ],
    )
    .await;
    let users = json(&server, &["user", "list"]).await;
    assert_eq!(users[0]["username"], "grace");
    assert_eq!(users[0]["disabled"], false);
    ok(&server, &["user", "update", "grace", "--role", "read_only"]).await;
    let out = ok(&server, &["user", "disable", "grace"]).await;
    assert!(out.contains("disabled"), "{out}");
    let users = json(&server, &["user", "list"]).await;
    assert_eq!(
        (users[0]["role"].as_str(), users[0]["disabled"].as_bool()),
        (Some("read_only"), Some(true))
    );
    ok(&server, &["user", "enable", "grace"]).await;
    let out = rampart(&server, &["user", "update", "grace"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing to change"),
        "{}",
        stderr(&out)
    );
    ok(&server, &["user", "delete", "grace"]).await;
    assert_eq!(
        json(&server, &["user", "list"]).await,
        serde_json::json!([])
    );

    // The bootstrap token is the tenant's last global_admin.
    let tokens = json(&server, &["token", "list"]).await;
    let id = tokens[0]["id"].as_str().unwrap();
    let out = rampart(&server, &["token", "delete", id]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("last global_admin"),
        "{}",
        stderr(&out)
    );

    // A token with an expiry shows it, and when it was last used.
    let out = rampart(
        &server,
        &[
            "token",
            "create",
            "--role",
            "read_only",
            "--name",
            "temp",
            "--expires-in-days",
            "7",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let tokens = json(&server, &["token", "list"]).await;
    let temp = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "temp")
        .unwrap();
    assert!(temp["expires_at"].as_i64().unwrap() > 0);
    assert!(
        tokens[0]["last_used_at"].as_i64().is_some(),
        "the admin token was used"
    );
    let _ = std::fs::remove_dir_all(dir);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_show_status_per_policy_device_and_setting() {
    let server = TestServer::with_examples().await.unwrap();

    let report = ok(&server, &["report", "policy", "linux-av-baseline"]).await;
    assert!(
        report.contains("policy linux-av-baseline (version 1)"),
        "{report}"
    );
    assert!(
        report.contains("web-01") && report.contains("conflict"),
        "{report}"
    );
    let report = json(&server, &["report", "policy", "linux-av-baseline"]).await;
    assert_eq!(report["policy"], "linux-av-baseline");
    assert!(report["devices"].as_array().unwrap().len() >= 2);

    let device = json(&server, &["report", "device", "web-01"]).await;
    assert_eq!(device["managed"], true);
    assert!(device["counts"]["conflict"].as_u64().unwrap() >= 1);
    // The table: the conflict first with both values, each firewall rule on
    // its own row with its own policies.
    let table = ok(&server, &["report", "device", "web-01"]).await;
    let lines: Vec<&str> = table.lines().collect();
    let first_row = lines
        .iter()
        .position(|l| l.starts_with("SETTING"))
        .map(|i| lines[i + 1])
        .unwrap_or_default();
    assert!(first_row.starts_with("pua_protection"), "{table}");
    assert!(
        table.contains("conflict: linux-av-baseline=block, linux-av-web=audit"),
        "{table}"
    );
    let web_rule = lines
        .iter()
        .find(|l| l.starts_with("firewall_rules[allow-web]"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(web_rule.contains("linux-firewall-web-rules"), "{table}");
    assert!(
        !web_rule.contains("linux-firewall-baseline-rules"),
        "{table}"
    );
    // ASR rules by their names.
    let fin = ok(&server, &["report", "device", "fin-ws-01"]).await;
    assert!(
        fin.contains("asr_rules[Block execution of potentially obfuscated scripts]"),
        "{fin}"
    );
    let device = ok(&server, &["report", "device", "mac-design-01"]).await;
    assert!(device.contains("not managed"), "{device}");

    let setting = ok(&server, &["report", "setting", "pua_protection"]).await;
    assert!(setting.contains("mac-exec-01"), "{setting}");
    assert!(json(&server, &["report", "setting", "pua_protection"]).await["counts"].is_object());

    let out = rampart(&server, &["report", "setting", "no_such_setting"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"));

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_lists_changes_newest_first() {
    let server = TestServer::with_examples().await.unwrap();
    ok(&server, &["device", "tag", "db-01", "--add", "audited"]).await;
    ok(&server, &["tenant", "set", "--allow-takeover", "true"]).await;

    let table = ok(&server, &["audit", "list"]).await;
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("device.tags") && table.contains("device db-01"),
        "{table}"
    );
    let entries = json(&server, &["audit", "list", "--limit", "2"]).await;
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "tenant.settings");
    assert_eq!(entries[1]["action"], "device.tags");
    assert_eq!(entries[0]["actor"], "token:bootstrap-admin");

    let out = rampart(&server, &["audit", "list", "--limit", "0"]).await;
    assert!(!out.status.success());

    // Filters, answered by the server.
    let device = json(
        &server,
        &[
            "audit", "list", "--kind", "device", "--object", "db-01", "--since", "1h",
        ],
    )
    .await;
    let actions: Vec<&str> = device
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"device.tags"), "{device}");
    assert!(
        device
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["object_name"] == "db-01"),
        "{device}"
    );
    let tenant = json(&server, &["audit", "list", "--action", "tenant.*"]).await;
    let actions: Vec<&str> = tenant
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["tenant.settings", "tenant.create"], "{tenant}");
    let none = json(&server, &["audit", "list", "--until", "2000-01-01"]).await;
    assert_eq!(none, serde_json::json!([]));
    let out = rampart(&server, &["audit", "list", "--since", "yesterday"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));

    server.stop().await.unwrap();
}

/// A server holding the example devices but no policies, groups or tenant
/// settings: what a new installation looks like once agents have enrolled.
async fn server_with_devices_only() -> (TestServer, PathBuf) {
    let dir = tempdir();
    std::fs::copy(
        repo().join("examples/fleet/devices.yaml"),
        dir.join("devices.yaml"),
    )
    .unwrap();
    let server = TestServer::start_with(Options {
        load: Some(dir.clone()),
        ..Options::default()
    })
    .await
    .unwrap();
    (server, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_the_example_fleet_then_changes_nothing() {
    let (server, dir) = server_with_devices_only().await;
    assert!(json(&server, &["policy", "list"])
        .await
        .as_array()
        .unwrap()
        .is_empty());

    let out = rampart(&server, &["apply", "-f", "examples/fleet"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("+ create group linux-servers\n"), "{text}");
    assert!(
        text.contains("+ create policy linux-av-baseline\n"),
        "{text}"
    );
    assert!(
        text.contains("~ change tenant settings of default\n"),
        "{text}"
    );
    assert!(
        text.contains("devices whose effective policy changes:\n"),
        "{text}"
    );
    assert!(text.contains("\n  web-01\n"), "{text}");
    assert!(
        text.contains(
            "    + conflict pua_protection: linux-av-baseline=block, linux-av-web=audit\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("0 to delete, 0 unchanged; 12 devices change"),
        "{text}"
    );
    assert!(text.ends_with("Applied.\n"), "{text}");
    assert!(
        stderr(&out).contains("skipped 12 Device documents"),
        "{}",
        stderr(&out)
    );

    let policies = json(&server, &["policy", "list"]).await;
    assert!(names(&policies).contains(&"windows-asr-finance".to_string()));
    let tenant = json(&server, &["tenant", "show"]).await;
    assert_eq!(tenant["settings"]["enforcement"]["macos"], "tagged");

    // Idempotent: the second run finds nothing to do.
    let again = ok(&server, &["apply", "-f", "examples/fleet"]).await;
    assert_eq!(again, "No changes.\n");
    let response = json(&server, &["apply", "-f", "examples/fleet"]).await;
    assert_eq!(response["applied"], false);
    assert!(response["created"].as_array().unwrap().is_empty());
    assert!(response["devices"].as_array().unwrap().is_empty());
    assert_eq!(
        response["unchanged"],
        policies.as_array().unwrap().len() + 7 + 1
    );

    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_dry_run_reports_a_change_and_makes_none() {
    let server = TestServer::with_examples().await.unwrap();
    let dir = tempdir();
    let fleet = dir.join("fleet");
    copy_dir(&repo().join("examples/fleet"), &fleet);
    let linux = fleet.join("linux.yaml");
    let text = std::fs::read_to_string(&linux).unwrap();
    // The web tier agrees with the baseline now: the conflict goes away.
    let edited = text.replacen("  pua_protection: audit\n", "  pua_protection: block\n", 1);
    assert_ne!(edited, text);
    std::fs::write(&linux, edited).unwrap();
    let audit_before = json(&server, &["audit", "list"]).await;

    let out = ok(
        &server,
        &["apply", "-f", fleet.to_str().unwrap(), "--dry-run"],
    )
    .await;
    assert!(out.starts_with("~ change policy linux-av-web\n"), "{out}");
    assert!(
        out.contains("  web-01\n    + pua_protection\n    - conflict pua_protection: linux-av-baseline=block, linux-av-web=audit\n"),
        "{out}"
    );
    assert!(
        out.contains("0 to create, 1 to change, 0 to delete"),
        "{out}"
    );
    assert!(out.contains("2 devices change"), "{out}");
    assert!(out.ends_with("(dry run: nothing was changed)\n"), "{out}");
    let policy = json(&server, &["policy", "show", "linux-av-web"]).await;
    assert_eq!(policy["settings"]["pua_protection"], "audit", "unchanged");
    assert_eq!(policy["version"], 1);
    assert_eq!(json(&server, &["audit", "list"]).await, audit_before);

    // A read-only token may ask what would change, but not change it.
    let out = rampart(&server, &["token", "create", "--role", "read_only"]).await;
    let reader = stdout(&out).trim().to_string();
    let out = run_as(
        &server,
        &reader,
        &["apply", "-f", fleet.to_str().unwrap(), "--dry-run"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_as(&server, &reader, &["apply", "-f", fleet.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("needs the security_manager role"));

    let out = ok(&server, &["apply", "-f", fleet.to_str().unwrap()]).await;
    assert!(out.ends_with("Applied.\n"), "{out}");
    let policy = json(&server, &["policy", "show", "linux-av-web"]).await;
    assert_eq!(policy["settings"]["pua_protection"], "block");
    assert_eq!(policy["version"], 2);

    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_deletes_only_with_prune() {
    let server = TestServer::with_examples().await.unwrap();
    let before = names(&json(&server, &["policy", "list"]).await);
    let dir = tempdir();
    std::fs::write(
        dir.join("one.yaml"),
        "kind: Policy\nname: one-new-policy\nfamily: antivirus\nplatform: linux\nsettings:\n  scan_archives: true\nassignments:\n  include: [linux-servers]\n",
    )
    .unwrap();

    // One new policy, assigned to a group the files do not hold: it is
    // created, and everything else stays and is listed as kept.
    let out = ok(&server, &["apply", "-f", dir.to_str().unwrap()]).await;
    assert!(out.contains("+ create policy one-new-policy\n"), "{out}");
    assert!(
        out.contains("1 to create, 0 to change, 0 to delete"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} objects on the server but not in the files, kept: ",
            before.len() + 7
        )),
        "{out}"
    );
    assert!(out.contains("group linux-servers"), "{out}");
    assert!(out.contains("(apply with --prune to delete them)"), "{out}");
    let after = names(&json(&server, &["policy", "list"]).await);
    assert_eq!(after.len(), before.len() + 1, "nothing was deleted");

    // With --prune the files are the whole desired state: a dry run says
    // what would go, and the group the policy needs must then be there.
    let out = rampart(
        &server,
        &["apply", "-f", dir.to_str().unwrap(), "--prune", "--dry-run"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown group \"linux-servers\""),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        dir.join("group.yaml"),
        "kind: Group\nname: linux-servers\nrule: os == \"linux\" and type == \"server\"\n",
    )
    .unwrap();
    let out = ok(
        &server,
        &["apply", "-f", dir.to_str().unwrap(), "--prune", "--dry-run"],
    )
    .await;
    assert!(out.contains("- delete policy linux-av-baseline\n"), "{out}");
    assert!(!out.contains("kept"), "{out}");
    assert_eq!(
        names(&json(&server, &["policy", "list"]).await).len(),
        before.len() + 1
    );
    let out = ok(&server, &["apply", "-f", dir.to_str().unwrap(), "--prune"]).await;
    assert!(out.ends_with("Applied.\n"), "{out}");
    assert_eq!(
        names(&json(&server, &["policy", "list"]).await),
        ["one-new-policy"]
    );

    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_of_invalid_files_reports_every_error_and_sends_nothing() {
    let server = TestServer::start().await.unwrap();
    let dir = tempdir();
    std::fs::write(
        dir.join("a.yaml"),
        "kind: Policy\nname: p\nfamily: antivirus\nplatform: linux\nsettings:\n  pua_protection: sometimes\nassignments:\n  include: [all-devices]\n---\nkind: Group\nname: g\nrule: os = \"linux\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("b.yaml"), "kind: Group\nname: [unclosed\n").unwrap();
    let audit_before = json(&server, &["audit", "list"]).await;

    let out = rampart(&server, &["apply", "-f", dir.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "a.yaml:6: Policy \"p\": settings.pua_protection: unknown value \"sometimes\""
        ),
        "{err}"
    );
    assert!(err.contains(": Group \"g\": rule: syntax error"), "{err}");
    assert!(err.contains("b.yaml:3: invalid YAML"), "{err}");
    assert!(
        err.contains("3 problems found; nothing was sent to the server"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
    assert!(json(&server, &["policy", "list"])
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert!(json(&server, &["group", "list"])
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(json(&server, &["audit", "list"]).await, audit_before);

    // A directory of nothing but devices is a wrong directory: refused.
    let devices = dir.join("devices");
    std::fs::create_dir_all(&devices).unwrap();
    std::fs::copy(
        repo().join("examples/fleet/devices.yaml"),
        devices.join("devices.yaml"),
    )
    .unwrap();
    let out = rampart(&server, &["apply", "-f", devices.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no Policy, Group or TenantSettings documents"),
        "{}",
        stderr(&out)
    );

    let out = rampart(&server, &["apply", "-f", "no/such/dir"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read no/such/dir"));

    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_and_token_come_from_the_environment_too() {
    let server = TestServer::with_examples().await.unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(["whoami", "-o", "json"])
        .env("RAMPART_SERVER", &server.url)
        .env("RAMPART_TOKEN", &server.admin_token);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["role"], "global_admin");
    server.stop().await.unwrap();
}

#[test]
fn a_missing_token_or_an_unreachable_server_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["device", "list"])
        .env_remove("RAMPART_TOKEN")
        .env_remove("RAMPART_SERVER")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pass --token TOKEN or set RAMPART_TOKEN"),
        "{}",
        stderr(&out)
    );

    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["--server", &url, "--token", "x", "policy", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!("error: cannot reach the server at {url}: is rampart-server running? (set --server or RAMPART_SERVER)")
    );
}

#[test]
fn every_api_command_has_help() {
    for args in [
        &["apply", "--help"][..],
        &["device", "--help"],
        &["device", "list", "--help"],
        &["device", "show", "--help"],
        &["device", "effective", "--help"],
        &["device", "tag", "--help"],
        &["device", "delete", "--help"],
        &["device", "sync", "--help"],
        &["group", "list", "--help"],
        &["group", "show", "--help"],
        &["group", "create", "--help"],
        &["group", "delete", "--help"],
        &["group", "members", "--help"],
        &["policy", "list", "--help"],
        &["policy", "show", "--help"],
        &["policy", "create", "--help"],
        &["policy", "delete", "--help"],
        &["policy", "versions", "--help"],
        &["tenant", "show", "--help"],
        &["tenant", "set", "--help"],
        &["report", "policy", "--help"],
        &["report", "device", "--help"],
        &["report", "setting", "--help"],
        &["audit", "list", "--help"],
        &["token", "create", "--help"],
        &["token", "list", "--help"],
        &["token", "delete", "--help"],
        &["user", "list", "--help"],
        &["user", "update", "--help"],
        &["whoami", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(args)
            .env("RAMPART_TOKEN", "rmp_secret_value")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = stdout(&out);
        assert!(help.contains("Usage:"), "{args:?}");
        assert!(help.contains("--output"), "{args:?}: -o everywhere");
        assert!(!help.contains("rmp_secret_value"), "--help hides the token");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_create_writes_a_private_package_and_refuses_to_overwrite() {
    let server = TestServer::start().await.unwrap();
    let dir = tempdir();
    let out_path = dir.join("package.json");
    let out = out_path.to_str().unwrap();
    let created = rampart(
        &server,
        &[
            "onboarding",
            "create",
            "--expires",
            "2h",
            "--max-uses",
            "3",
            "--out",
            out,
        ],
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    // The hint a person reads: a date, and the agent's own state directory.
    let hint = stderr(&created);
    let until = hint
        .split("valid until ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    assert!(
        until.len() == 20 && until.ends_with('Z') && until.as_bytes()[4] == b'-',
        "{hint}"
    );
    assert!(
        hint.contains(&format!("rampart-agent onboard --package {out}\n")),
        "{hint}"
    );
    assert!(hint.contains("/var/lib/rampart-agent"), "{hint}");
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(package["version"], 1);
    assert!(package["server_url"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    assert!(package["token"].as_str().unwrap().starts_with("rmp_"));
    assert!(package["server_ca_pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = rampart(&server, &["onboarding", "create", "--out", out]).await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    let bad = rampart(
        &server,
        &[
            "onboarding",
            "create",
            "--expires",
            "90d",
            "--out",
            dir.join("x.json").to_str().unwrap(),
        ],
    )
    .await;
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("expires_in_seconds"),
        "{}",
        stderr(&bad)
    );
    let audit = json(&server, &["audit", "list"]).await;
    assert_eq!(audit[0]["action"], "onboarding.create");
    let listed = json(&server, &["onboarding", "list"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["max_uses"], 3);
    assert!(!listed
        .to_string()
        .contains(package["token"].as_str().unwrap()));
    ok(
        &server,
        &["onboarding", "revoke", listed[0]["id"].as_str().unwrap()],
    )
    .await;
    assert_eq!(
        json(&server, &["onboarding", "list"]).await,
        serde_json::json!([])
    );
    std::fs::remove_dir_all(dir).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_talks_to_an_https_server_with_a_private_ca() {
    use std::sync::Arc;
    rampart_pki::install_crypto_provider();
    let dir = tempdir();
    let ca = rampart_pki::new_ca("cli test CA", 1).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (cert, key) =
        rampart_pki::issue_server_cert(&ca, &["127.0.0.1".into()], now - 60, now + 3600).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let config = rampart_server::config::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        device_listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(dir.join("cert.pem")),
        tls_key: Some(dir.join("key.pem")),
        ..rampart_server::config::ServerConfig::new(dir.join("data"))
    };
    let server = rampart_server::start(config, Arc::new(rampart_server::clock::SystemClock))
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.join("data/admin-token")).unwrap();
    let url = format!("https://{}", server.addr);
    let ca_path = dir.join("ca.pem");
    let run = |extra: Vec<String>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.args(["--server", &url, "--token", token.trim()])
            .args(extra)
            .env_remove("RAMPART_CA_CERT");
        cmd
    };
    let mut trusted = run(vec![
        "whoami".into(),
        "--ca-cert".into(),
        ca_path.display().to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || trusted.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("global_admin"));
    let mut untrusted = run(vec!["whoami".into()]);
    let out = tokio::task::spawn_blocking(move || untrusted.output().unwrap())
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "a server certificate from an unknown CA is refused"
    );
    server.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn rollouts_are_listed_shown_paused_and_aborted() {
    let server = TestServer::with_examples().await.unwrap();
    assert_eq!(
        ok(&server, &["rollout", "list"]).await.trim(),
        "No rollouts."
    );
    let api = server.admin();
    let (_, mut policy) = api.get("/policies/linux-av-baseline").await.unwrap();
    for field in ["version", "modified_at", "modified_by"] {
        policy.as_object_mut().unwrap().remove(field);
    }
    policy["settings"]["scan_archives"] = Value::Bool(false);
    policy["rollout"] = serde_json::json!({
        "stages": [{"percent": 25, "soak": "2h"}, {"percent": 100, "soak": 5400}],
    });
    let (status, body) = api
        .put("/policies/linux-av-baseline", &policy)
        .await
        .unwrap();
    assert!(status.is_success(), "{body}");

    let table = ok(&server, &["rollout", "list"]).await;
    assert!(table.starts_with("POLICY"), "{table}");
    assert!(
        table.contains("linux-av-baseline")
            && table.contains("running")
            && table.contains("1 of 2 (25%)"),
        "{table}"
    );
    let shown = ok(&server, &["rollout", "show", "linux-av-baseline"]).await;
    for want in [
        "version 1 -> version 2",
        "State:    running",
        "25%",
        "2h",
        "1h30m",
        "start",
    ] {
        assert!(shown.contains(want), "{want:?} missing:\n{shown}");
    }
    let paused = json(
        &server,
        &[
            "rollout",
            "pause",
            "linux-av-baseline",
            "--reason",
            "checking",
        ],
    )
    .await;
    assert_eq!(
        (paused["state"].as_str(), paused["reason"].as_str()),
        (Some("paused"), Some("checking"))
    );
    let aborted = json(&server, &["rollout", "abort", "linux-av-baseline"]).await;
    assert_eq!(aborted["state"], "rolled_back");
    let (_, restored) = api.get("/policies/linux-av-baseline").await.unwrap();
    assert_eq!(restored["settings"]["scan_archives"], true);
    let out = rampart(&server, &["rollout", "resume", "linux-av-baseline"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rolled_back"), "{}", stderr(&out));
    let out = rampart(&server, &["rollout", "show", "no-such-policy"]).await;
    assert!(
        !out.status.success() && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
    server.stop().await.unwrap();
}
