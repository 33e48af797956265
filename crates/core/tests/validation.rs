//! Validation of policy-as-code documents: every problem reported at once,
//! each naming file, line, object and field path, and no input panics.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_core::catalog::Catalog;
use rampart_core::documents::{load_documents, load_partial_documents, DocumentError};

fn errors(yaml: &str) -> Vec<DocumentError> {
    match load_documents(&[("dir/p.yaml".into(), yaml.into())], Catalog::builtin()) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e,
    }
}

/// Asserts one error names `object` and `path` and says `words`.
fn has(errors: &[DocumentError], object: &str, path: &str, words: &str) {
    let found = errors
        .iter()
        .any(|e| e.object == object && e.error.path == path && e.error.message.contains(words));
    assert!(
        found,
        "no error for {object} {path} containing {words:?}; got:\n{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn policy(family: &str, platform: &str, settings: &str) -> String {
    format!(
        "kind: Policy\nname: p\nfamily: {family}\nplatform: {platform}\nsettings:\n{settings}\nassignments:\n  include: [all-devices]\n"
    )
}

#[test]
fn every_problem_is_reported_at_once_with_file_line_object_and_path() {
    let yaml = r#"kind: Policy
name: broken
family: antivirus
platform: linux
settings:
  real_time_protection: "yes"
  pua_protection: blok
  no_such_setting: 1
  max_file_size_mb: 999999
  excluded_paths: [relative/path, /ok]
assignments:
  include: [nowhere]
  bogus: 1
colour: red
---
kind: Group
name: g
rule: os == "linux" and (tag("a"
"#;
    let e = errors(yaml);
    let p = "Policy \"broken\"";
    has(
        &e,
        p,
        "settings.real_time_protection",
        "expected true or false",
    );
    has(
        &e,
        p,
        "settings.pua_protection",
        "expected one of off, audit, block",
    );
    has(&e, p, "settings.no_such_setting", "unknown setting");
    has(&e, p, "settings.max_file_size_mb", "out of range");
    has(&e, p, "settings.excluded_paths[0]", "not an absolute path");
    has(&e, p, "assignments.bogus", "unknown field");
    has(&e, p, "colour", "unknown field");
    has(&e, p, "assignments.include", "unknown group \"nowhere\"");
    has(&e, "Group \"g\"", "rule", "column");
    assert!(e.iter().all(|x| x.file == "dir/p.yaml"));
    let pua = e
        .iter()
        .find(|x| x.error.path == "settings.pua_protection")
        .unwrap();
    assert_eq!(pua.line, 7, "the line of the field itself");
    assert!(pua
        .to_string()
        .starts_with("dir/p.yaml:7: Policy \"broken\": settings.pua_protection: "));
}

#[test]
fn partial_files_may_name_groups_they_do_not_define_and_nothing_else_is_relaxed() {
    let assigned = "kind: Policy\nname: p\nfamily: antivirus\nplatform: linux\nsettings:\n  scan_archives: true\nassignments:\n  include: [on-the-server]\n";
    let files = [("dir/p.yaml".to_string(), assigned.to_string())];
    assert!(load_documents(&files, Catalog::builtin()).is_err());
    let bundle = load_partial_documents(&files, Catalog::builtin()).unwrap();
    assert_eq!(bundle.policies.len(), 1);
    let broken = [(
        "dir/p.yaml".to_string(),
        assigned.replace("scan_archives: true", "scan_archives: maybe"),
    )];
    let e = load_partial_documents(&broken, Catalog::builtin()).unwrap_err();
    has(
        &e,
        "Policy \"p\"",
        "settings.scan_archives",
        "expected true or false",
    );
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn unknown_family_and_platform_list_the_valid_ones() {
    let e = errors("kind: Policy\nname: p\nfamily: antivirs\nplatform: bsd\n");
    has(
        &e,
        "Policy \"p\"",
        "family",
        "expected one of antivirus, antivirus_exclusions, firewall",
    );
    has(
        &e,
        "Policy \"p\"",
        "platform",
        "expected one of linux, windows, macos",
    );
}

#[test]
fn a_setting_outside_its_family_or_platform_is_refused() {
    has(
        &errors(&policy("firewall", "linux", "  real_time_protection: true")),
        "Policy \"p\"",
        "settings.real_time_protection",
        "not allowed in family firewall",
    );
    has(
        &errors(&policy("asr", "linux", "  asr_rules: {}")),
        "Policy \"p\"",
        "settings.asr_rules",
        "not available on platform linux",
    );
}

#[test]
fn exclusions_are_allowed_in_both_antivirus_families() {
    for family in ["antivirus", "antivirus_exclusions"] {
        let yaml = policy(family, "linux", "  excluded_paths: [/srv]\n  excluded_extensions: [.log]\n  excluded_processes: [/usr/bin/backup]");
        load_documents(&[("p.yaml".into(), yaml)], Catalog::builtin()).unwrap();
    }
}

#[test]
fn deprecated_settings_are_refused_with_the_reason() {
    has(
        &errors(&policy(
            "antivirus",
            "windows",
            "  allow_intrusion_prevention_system: true",
        )),
        "Policy \"p\"",
        "settings.allow_intrusion_prevention_system",
        "deprecated",
    );
    has(
        &errors(&policy(
            "edr",
            "windows",
            "  telemetry_reporting_frequency: normal",
        )),
        "Policy \"p\"",
        "settings.telemetry_reporting_frequency",
        "deprecated",
    );
}

#[test]
fn firewall_rule_mistakes_are_each_named() {
    let rules = r#"  firewall_rules:
    - {name: a, direction: in, action: allow, protocol: tcp, remote_addresses: [10.0.0.0/33, 300.1.1.1, 10.1.0.0/16]}
    - {name: b, direction: in, action: allow, protocol: tcp, local_ports: "9000-8000"}
    - {name: c, direction: in, action: allow, protocol: icmp, local_ports: "80"}
    - {name: d, direction: in, action: allow, local_ports: "80"}
    - {name: a, direction: in, action: block}
    - {name: e, direction: sideways, action: maybe}
    - {name: f, direction: out, action: allow, edge_traversal: true, interface_types: [all, lan]}
    - {name: g, direction: in, action: allow, protocol: tcp, remote_ports: "80;443"}"#;
    let e = errors(&policy("firewall_rules", "linux", rules));
    let p = "Policy \"p\"";
    has(
        &e,
        p,
        "settings.firewall_rules[0].remote_addresses[0]",
        "prefix length",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[0].remote_addresses[1]",
        "not an IP address",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[1].local_ports",
        "descending",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[2].local_ports",
        "need protocol tcp or udp",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[3].local_ports",
        "need protocol tcp or udp",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[4].name",
        "duplicate rule name \"a\"",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[5].direction",
        "expected one of in, out",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[5].action",
        "expected one of allow, block",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[6].edge_traversal",
        "inbound",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[6].interface_types",
        "cannot be combined",
    );
    has(
        &e,
        p,
        "settings.firewall_rules[7].remote_ports",
        "not a port number",
    );
}

#[test]
fn more_than_150_rules_in_one_policy_are_refused() {
    let mut rules = String::from("  firewall_rules:\n");
    for i in 0..151 {
        rules.push_str(&format!("    - {{name: r{i}, direction: in, action: allow, protocol: tcp, local_ports: \"{}\"}}\n", 1000 + i));
    }
    has(
        &errors(&policy("firewall_rules", "linux", &rules)),
        "Policy \"p\"",
        "settings.firewall_rules",
        "at most 150",
    );
    // Exactly 150 is fine.
    let ok: String = rules.lines().take(151).collect::<Vec<_>>().join("\n");
    load_documents(
        &[("p.yaml".into(), policy("firewall_rules", "linux", &ok))],
        Catalog::builtin(),
    )
    .unwrap();
}

#[test]
fn unknown_asr_rule_ids_and_unavailable_modes_are_refused() {
    let e = errors(&policy(
        "asr",
        "windows",
        "  asr_rules:\n    00000000-0000-0000-0000-000000000000: block\n    9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2: warn\n    d4f940ab-401b-4efc-aadc-ad5f3c50688a: sometimes",
    ));
    has(
        &e,
        "Policy \"p\"",
        "settings.asr_rules[00000000-0000-0000-0000-000000000000]",
        "unknown ASR rule id",
    );
    has(
        &e,
        "Policy \"p\"",
        "settings.asr_rules[9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2]",
        "not available",
    );
    has(
        &e,
        "Policy \"p\"",
        "settings.asr_rules[d4f940ab-401b-4efc-aadc-ad5f3c50688a]",
        "expected one of off, block, audit, warn, not_configured",
    );
}

#[test]
fn group_rule_syntax_errors_carry_their_position() {
    let e = errors("kind: Group\nname: g\nrule: os == \"linux\" andd tag(\"x\")\n");
    let err = e
        .iter()
        .find(|x| x.error.path == "rule")
        .expect("rule error");
    assert!(
        err.error.message.contains("column 15"),
        "{}",
        err.error.message
    );
}

#[test]
fn groups_need_exactly_one_of_rule_and_members() {
    has(
        &errors("kind: Group\nname: g\n"),
        "Group \"g\"",
        "rule",
        "needs a rule",
    );
    has(
        &errors("kind: Group\nname: g\nrule: tag(\"a\")\nmembers: [x]\n"),
        "Group \"g\"",
        "rule",
        "not both",
    );
}

#[test]
fn duplicate_names_are_refused_across_files() {
    let files = vec![
        ("a.yaml".to_string(), "kind: Group\nname: g\nmembers: []\n".to_string()),
        ("b.yaml".to_string(), "kind: Group\nname: g\nmembers: [x]\n---\nkind: Device\nname: d\nos: linux\n---\nkind: Device\nname: d\nos: linux\n".to_string()),
    ];
    let e = load_documents(&files, Catalog::builtin()).unwrap_err();
    assert!(
        e.iter().any(|x| x.file == "b.yaml"
            && x.error
                .message
                .contains("duplicate Group name; already defined at a.yaml:1")),
        "{e:?}"
    );
    assert!(
        e.iter().any(
            |x| x.object == "Device \"d\"" && x.error.message.contains("duplicate Device name")
        ),
        "{e:?}"
    );
}

#[test]
fn documents_without_a_known_kind_and_bad_yaml_are_reported() {
    let e = errors("kind: Policcy\nname: x\n---\n- just\n- a list\n---\nkey: [unclosed\n");
    assert!(e
        .iter()
        .any(|x| x.error.message.contains("unknown kind \"Policcy\"")));
    assert!(e.iter().any(|x| x.error.message.contains("must be a map")));
    assert!(
        e.iter()
            .any(|x| x.error.message.contains("invalid YAML") && x.line >= 7),
        "{e:?}"
    );
}

#[test]
fn device_and_tenant_documents_are_checked() {
    let e = errors("kind: Device\nname: d\nos: linuks\ntype: laptop\ntags: [ok, 'a,b']\n---\nkind: TenantSettings\nenforcement: {linux: sometimes, plan9: all}\nconflict_policy: loudest\n");
    has(
        &e,
        "Device \"d\"",
        "os",
        "expected one of linux, windows, macos",
    );
    has(
        &e,
        "Device \"d\"",
        "type",
        "expected one of workstation, server",
    );
    has(&e, "Device \"d\"", "tags[1]", "commas");
    has(
        &e,
        "TenantSettings",
        "enforcement.linux",
        "expected one of off, all, tagged",
    );
    has(&e, "TenantSettings", "enforcement.plan9", "unknown field");
    has(
        &e,
        "TenantSettings",
        "conflict_policy",
        "expected one of report, most_secure_wins",
    );
}

#[test]
fn only_one_tenant_settings_document_is_allowed() {
    let e = errors("kind: TenantSettings\n---\nkind: TenantSettings\n");
    assert!(e
        .iter()
        .any(|x| x.error.message.contains("only one TenantSettings")));
}

#[test]
fn the_example_fleet_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        files.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    let bundle = load_documents(&files, Catalog::builtin()).unwrap();
    assert_eq!(bundle.devices.len(), 12);
    let families: std::collections::BTreeSet<_> =
        bundle.policies.iter().map(|p| p.family).collect();
    assert_eq!(families.len(), 6, "at least one policy per family");
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    fn example_text() -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet");
        let mut all = String::new();
        for name in ["linux.yaml", "windows.yaml", "groups.yaml", "devices.yaml"] {
            all.push_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap());
            all.push_str("\n---\n");
        }
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = load_documents(&[("f.yaml".into(), text)], Catalog::builtin());
        }

        #[test]
        fn damaged_examples_never_panic(cut in 0usize..6000, len in 0usize..40, junk in "[-:\\[\\]{}\"' a-z0-9#\n]{0,12}") {
            let text = example_text();
            let mut chars: Vec<char> = text.chars().collect();
            let start = cut.min(chars.len());
            let end = (start + len).min(chars.len());
            chars.splice(start..end, junk.chars());
            let damaged: String = chars.into_iter().collect();
            let _ = load_documents(&[("f.yaml".into(), damaged)], Catalog::builtin());
        }
    }
}
