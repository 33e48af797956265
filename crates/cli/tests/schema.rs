//! The policy JSON Schema: `schema/policy.schema.json` is what
//! `rampart catalog schema` generates from the catalog, every example names
//! it, and every example document passes it under a real JSON Schema
//! validator (Python's `jsonschema`, draft 2020-12).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const SCHEMA: &str = "schema/policy.schema.json";
const COMMENT: &str = "# yaml-language-server: $schema=../../schema/policy.schema.json";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generated() -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["catalog", "schema"])
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_committed_schema_is_what_the_catalog_generates() {
    let fresh = generated();
    let path = repo().join(SCHEMA);
    if std::env::var_os("RAMPART_UPDATE_SCHEMA").is_some() {
        fs::write(&path, &fresh).unwrap();
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{SCHEMA} is stale; regenerate it with: RAMPART_UPDATE_SCHEMA=1 cargo test -p rampart-cli --test schema"
    );
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join("examples/fleet"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn every_example_names_the_schema_for_editors() {
    for f in examples() {
        let text = fs::read_to_string(&f).unwrap();
        assert_eq!(text.lines().next(), Some(COMMENT), "{}", f.display());
    }
}

/// Documents as Rampart reads them (YAML 1.2: `off` is a string), as JSON.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

const VALIDATE: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
out = []
for label, doc in json.load(sys.stdin):
    out.append([label, [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]])
print(json.dumps(out))
"#;

/// Each labelled document's errors under the schema, or `None` when no
/// validator is installed (which fails under CI).
fn validate(docs: &[(String, Value)]) -> Option<Vec<(String, Vec<String>)>> {
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with jsonschema is required under CI (Debian: python3-jsonschema)");
        }
        eprintln!("skipping: python3 with jsonschema is not installed");
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE, repo().join(SCHEMA).to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input =
        serde_json::to_vec(&docs.iter().map(|(l, d)| json!([l, d])).collect::<Vec<_>>()).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn every_example_document_passes_the_schema() {
    let mut docs = Vec::new();
    for f in examples() {
        for (i, d) in documents(&fs::read_to_string(&f).unwrap())
            .into_iter()
            .enumerate()
        {
            docs.push((format!("{} document {i}", f.display()), d));
        }
    }
    let Some(results) = validate(&docs) else {
        return;
    };
    assert_eq!(results.len(), docs.len());
    for (label, errors) in results {
        assert!(errors.is_empty(), "{label}: {errors:#?}");
    }
}

#[test]
fn the_schema_refuses_what_the_validator_refuses() {
    let bad = [
        json!({"kind": "Policy", "name": "p", "family": "antivirus", "platform": "linux", "settings": {"pua_protection": "blok"}}),
        json!({"kind": "Policy", "name": "p", "family": "antivirus", "platform": "linux", "settings": {"no_such_setting": true}}),
        json!({"kind": "Policy", "name": "p", "family": "firewall", "platform": "windows", "settings": {"real_time_protection": true}}),
        json!({"kind": "Policy", "name": "p", "family": "antivirus", "platform": "windows", "settings": {"allow_intrusion_prevention_system": true}}),
        json!({"kind": "Policy", "name": "p", "family": "antivirus", "platform": "windows", "settings": {"avg_cpu_load_factor": 101}}),
        json!({"kind": "Policy", "name": "p", "family": "firewall_rules", "platform": "windows", "settings": {"firewall_rules": [{"name": "r", "direction": "sideways", "action": "allow"}]}}),
        json!({"kind": "Policy", "name": "p", "family": "asr", "platform": "windows", "settings": {"asr_rules": {"not-a-rule": "block"}}}),
        json!({"kind": "Group", "name": "g", "rule": "tag(\"a\")", "members": ["x"]}),
        json!({"kind": "Gadget", "name": "x"}),
    ];
    let docs: Vec<(String, Value)> = bad
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("bad {i}"), d.clone()))
        .collect();
    let Some(results) = validate(&docs) else {
        return;
    };
    for (label, errors) in results {
        assert!(!errors.is_empty(), "{label} should be refused");
    }
}

#[test]
fn imported_intune_policies_pass_the_schema() {
    let exports = repo().join("crates/cli/tests/fixtures/intune-exports");
    let out = std::env::temp_dir().join(format!("rampart-schema-import-{}", std::process::id()));
    let _ = fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "import",
            "intune",
            exports.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut docs = Vec::new();
    for entry in fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        for (i, d) in documents(&fs::read_to_string(&path).unwrap())
            .into_iter()
            .enumerate()
        {
            docs.push((format!("{} document {i}", path.display()), d));
        }
    }
    assert!(!docs.is_empty());
    let Some(results) = validate(&docs) else {
        return;
    };
    for (label, errors) in results {
        assert!(errors.is_empty(), "{label}: {errors:#?}");
    }
}
