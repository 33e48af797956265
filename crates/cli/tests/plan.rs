//! `rampart plan` and `rampart catalog`, run as a user runs them: the real
//! binary on the example fleet and on broken inputs.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run rampart")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn plan_json() -> Value {
    let out = rampart(&["plan", "examples/fleet", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn device<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == name)
        .unwrap_or_else(|| panic!("no device {name}"))
}

#[test]
fn plan_json_has_the_documented_shape() {
    let plan = plan_json();
    let devices = plan["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 12);
    for d in devices {
        assert!(d["device"].is_string());
        assert!(d["managed"].is_boolean());
        assert!(d["reason"].is_null() || d["reason"].is_string());
        for s in d["settings"].as_array().unwrap() {
            assert!(s["setting"].is_string());
            assert!(!s["value"].is_null());
            assert!(s["sources"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string));
        }
        for c in d["conflicts"].as_array().unwrap() {
            assert!(c["setting"].is_string());
            assert!(c["key"].is_null() || c["key"].is_string());
            assert_eq!(
                c["policies"].as_array().unwrap().len(),
                c["values"].as_array().unwrap().len()
            );
        }
        assert!(d["not_applicable"].is_array());
    }
}

#[test]
fn plan_shows_the_conflict_and_the_union_of_the_example_fleet() {
    let plan = plan_json();
    let web = device(&plan, "web-01");
    let conflict = web["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["setting"] == "pua_protection")
        .expect("conflict");
    assert_eq!(
        conflict["policies"],
        serde_json::json!(["linux-av-baseline", "linux-av-web"])
    );
    assert_eq!(conflict["values"], serde_json::json!(["block", "audit"]));
    assert!(
        !web["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["setting"] == "pua_protection"),
        "a conflicting setting is not applied"
    );
    let paths = web["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["setting"] == "excluded_paths")
        .expect("union");
    assert_eq!(
        paths["value"],
        serde_json::json!(["/var/lib/docker", "/var/www/cache"])
    );
    assert_eq!(
        paths["sources"],
        serde_json::json!(["linux-av-baseline", "linux-av-web"])
    );
}

#[test]
fn devices_outside_the_enforcement_scope_are_unmanaged_with_a_reason() {
    let plan = plan_json();
    let mac = device(&plan, "mac-design-01");
    assert_eq!(mac["managed"], false);
    assert!(mac["reason"].as_str().unwrap().contains("MDE-Management"));
    assert!(mac["settings"].as_array().unwrap().is_empty());
    let pilot = device(&plan, "mac-exec-01");
    assert_eq!(pilot["managed"], true);
    assert!(pilot["reason"].is_null());
    assert!(!pilot["settings"].as_array().unwrap().is_empty());
}

#[test]
fn plan_table_is_readable_and_summarizes() {
    let out = rampart(&["plan", "examples/fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("web-01 (linux 22.04, server)"));
    assert!(text.contains("CONFLICT (not applied)"));
    assert!(text.contains("mac-design-01 (macos 14.5, workstation) — not managed"));
    assert!(
        text.contains("12 devices: 10 managed, 2 not managed; 3 conflicts"),
        "{text}"
    );
}

#[test]
fn invalid_input_exits_non_zero_with_every_error_on_stderr() {
    let dir = tempdir();
    std::fs::write(dir.join("a.yaml"), "kind: Policy\nname: p\nfamily: antivirus\nplatform: linux\nsettings:\n  pua_protection: sometimes\n  scan_archives: 3\nassignments:\n  include: [ghosts]\n").unwrap();
    std::fs::write(
        dir.join("b.yml"),
        "kind: Group\nname: g\nrule: os = \"linux\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml: [").unwrap();
    let out = rampart(&["plan", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "a.yaml:6: Policy \"p\": settings.pua_protection: unknown value \"sometimes\""
        ),
        "{err}"
    );
    assert!(
        err.contains("a.yaml:7: Policy \"p\": settings.scan_archives: expected true or false"),
        "{err}"
    );
    assert!(err.contains("unknown group \"ghosts\""), "{err}");
    assert!(
        err.contains("b.yml:3: Group \"g\": rule: syntax error at column"),
        "{err}"
    );
    assert!(err.contains("4 problems found"), "{err}");
    assert!(!err.contains("notes.txt"), "only YAML files are read");
    assert!(stdout(&out).is_empty(), "nothing is planned");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let out = rampart(&["plan", "no/such/dir"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read no/such/dir"));
}

#[test]
fn catalog_list_filters_by_family_and_platform() {
    let out = rampart(&[
        "catalog",
        "list",
        "--family",
        "asr",
        "--platform",
        "windows",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"asr_rules"));
    assert!(!ids.contains(&"real_time_protection"));
    let linux = rampart(&["catalog", "list", "--platform", "linux"]);
    let text = stdout(&linux);
    assert!(
        text.contains("real_time_protection") && !text.contains("asr_rules"),
        "{text}"
    );
    // Both filters hold at once; an empty answer says why, not just a header.
    let none = rampart(&["catalog", "list", "--family", "asr", "--platform", "linux"]);
    assert!(none.status.success(), "{}", stderr(&none));
    assert_eq!(
        stdout(&none).trim(),
        "no asr setting is available on linux; asr settings are available on: windows"
    );
    let bad = rampart(&["catalog", "list", "--family", "antivirs"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("expected one of antivirus"));
}

#[test]
fn catalog_show_explains_a_setting_and_its_backends() {
    let out = rampart(&["catalog", "show", "pua_protection"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "enum(off|audit|block)",
        "merge",
        "windows_csp",
        "PUAProtection",
        "mdatp",
        "clamav",
        "DetectPUA",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    let json = rampart(&["catalog", "show", "excluded_paths", "-o", "json"]);
    let def: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(def["merge"], "union");
    assert_eq!(
        def["families"],
        serde_json::json!(["antivirus", "antivirus_exclusions"])
    );
    let dep = stdout(&rampart(&[
        "catalog",
        "show",
        "allow_intrusion_prevention_system",
    ]));
    assert!(dep.contains("DEPRECATED"));
    let unknown = rampart(&["catalog", "show", "real_time"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("did you mean real_time_protection"));
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rampart-cli-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
