//! Resolution as DESIGN.md §4 states it, one table-like case per rule, each
//! written as the YAML an administrator would write.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_core::catalog::Catalog;
use rampart_core::documents::load_documents;
use rampart_core::resolve::{resolve, Resolution};
use serde_json::json;

/// Loads the documents and resolves every device, by device name.
fn plan(yaml: &str) -> Vec<Resolution> {
    let bundle = match load_documents(&[("test.yaml".into(), yaml.into())], Catalog::builtin()) {
        Ok(b) => b,
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("test input is invalid:\n{}", text.join("\n"));
        }
    };
    let tenant = bundle.tenant.clone().unwrap_or_default();
    let mut out: Vec<Resolution> = bundle
        .devices
        .iter()
        .map(|d| {
            resolve(
                d,
                &bundle.groups,
                &bundle.policies,
                &tenant,
                Catalog::builtin(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.device.cmp(&b.device));
    out
}

fn one(yaml: &str) -> Resolution {
    plan(yaml).remove(0)
}

fn setting<'a>(r: &'a Resolution, id: &str) -> Option<&'a rampart_core::resolve::EffectiveSetting> {
    r.settings.iter().find(|s| s.setting == id)
}

const LINUX_SERVER: &str = r#"
kind: Device
name: srv
os: linux
os_version: "22.04"
type: server
tags: [web]
---
kind: Group
name: web
rule: tag("web")
"#;

fn av(name: &str, settings: &str) -> String {
    format!(
        "---\nkind: Policy\nname: {name}\nfamily: antivirus\nplatform: linux\nsettings:\n{settings}\nassignments:\n  include: [web]\n"
    )
}

#[test]
fn equal_scalar_values_apply_with_every_source() {
    let r = one(&format!(
        "{LINUX_SERVER}{}{}",
        av("a", "  real_time_protection: true"),
        av("b", "  real_time_protection: true")
    ));
    let s = setting(&r, "real_time_protection").expect("applied");
    assert_eq!(s.value, json!(true));
    assert_eq!(s.sources, vec!["a", "b"]);
    assert!(r.conflicts.is_empty());
}

#[test]
fn different_scalar_values_conflict_and_nothing_is_applied() {
    let r = one(&format!(
        "{LINUX_SERVER}{}{}{}",
        av("b", "  pua_protection: audit"),
        av("a", "  pua_protection: block"),
        av("c", "  pua_protection: block")
    ));
    assert!(setting(&r, "pua_protection").is_none());
    assert_eq!(r.conflicts.len(), 1);
    let c = &r.conflicts[0];
    assert_eq!(c.setting, "pua_protection");
    assert_eq!(c.key, None);
    assert_eq!(c.policies, vec!["a", "b", "c"]);
    assert_eq!(
        c.values,
        vec![json!("block"), json!("audit"), json!("block")]
    );
}

#[test]
fn not_configured_is_absent_and_never_conflicts() {
    let r = one(&format!(
        "{LINUX_SERVER}{}{}",
        av("a", "  pua_protection: block"),
        av("b", "  pua_protection:\n  scan_archives: true")
    ));
    assert_eq!(
        setting(&r, "pua_protection").map(|s| s.sources.clone()),
        Some(vec!["a".to_string()])
    );
    assert!(r.conflicts.is_empty());
}

#[test]
fn exclusions_union_with_sources_per_item() {
    let r = one(&format!(
        "{LINUX_SERVER}{}{}",
        av("a", "  excluded_paths: [/var/lib/docker, /opt/x]"),
        av("b", "  excluded_paths: [/opt/x, /srv/cache]")
    ));
    let s = setting(&r, "excluded_paths").expect("merged");
    assert_eq!(s.value, json!(["/opt/x", "/srv/cache", "/var/lib/docker"]));
    let opt = s.entries.iter().find(|e| e.key == "/opt/x").expect("entry");
    assert_eq!(opt.sources, vec!["a", "b"]);
    assert!(r.conflicts.is_empty());
}

const WINDOWS_WS: &str = r#"
kind: Device
name: ws
os: windows
os_version: "10.0.22631"
type: workstation
---
"#;

fn asr(name: &str, rules: &str) -> String {
    format!(
        "---\nkind: Policy\nname: {name}\nfamily: asr\nplatform: windows\nsettings:\n  asr_rules:\n{rules}\nassignments:\n  include: [all-devices]\n"
    )
}

const LSASS: &str = "9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2";
const OFFICE_CHILD: &str = "d4f940ab-401b-4efc-aadc-ad5f3c50688a";
const WEBSHELL: &str = "a8f5898e-1dc8-49a9-9878-85004b8a61e6";

#[test]
fn asr_rules_merge_rule_by_rule_and_only_a_differing_rule_conflicts() {
    let r = one(&format!(
        "{WINDOWS_WS}{}{}",
        asr(
            "base",
            &format!("    {LSASS}: block\n    {OFFICE_CHILD}: block")
        ),
        asr(
            "fin",
            &format!("    {LSASS}: block\n    {OFFICE_CHILD}: audit")
        )
    ));
    let s = setting(&r, "asr_rules").expect("merged");
    assert_eq!(s.value, json!({ LSASS: "block" }));
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].key.as_deref(), Some(OFFICE_CHILD));
    assert_eq!(r.conflicts[0].policies, vec!["base", "fin"]);
}

#[test]
fn asr_not_configured_never_conflicts_but_off_does() {
    let r = one(&format!(
        "{WINDOWS_WS}{}{}",
        asr("a", &format!("    {LSASS}: block\n    {OFFICE_CHILD}: off")),
        asr(
            "b",
            &format!("    {LSASS}: not_configured\n    {OFFICE_CHILD}: block")
        )
    ));
    assert_eq!(
        setting(&r, "asr_rules").map(|s| s.value.clone()),
        Some(json!({ LSASS: "block" }))
    );
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].key.as_deref(), Some(OFFICE_CHILD));
}

#[test]
fn a_server_only_asr_rule_is_not_applicable_on_a_workstation() {
    let r = one(&format!(
        "{WINDOWS_WS}{}",
        asr("a", &format!("    {WEBSHELL}: block\n    {LSASS}: block"))
    ));
    assert_eq!(r.not_applicable.len(), 1);
    assert_eq!(r.not_applicable[0].key.as_deref(), Some(WEBSHELL));
    assert_eq!(
        setting(&r, "asr_rules").map(|s| s.value.clone()),
        Some(json!({ LSASS: "block" }))
    );
}

fn rules(name: &str, body: &str) -> String {
    format!(
        "---\nkind: Policy\nname: {name}\nfamily: firewall_rules\nplatform: linux\nsettings:\n  firewall_rules:\n{body}\nassignments:\n  include: [web]\n"
    )
}

#[test]
fn firewall_rules_combine_by_name_and_equal_rules_do_not_conflict() {
    let ssh =
        "    - {name: ssh, direction: in, action: allow, protocol: tcp, local_ports: \"22\"}\n";
    let r = one(&format!(
        "{LINUX_SERVER}{}{}",
        rules("a", &format!("{ssh}    - {{name: web, direction: in, action: allow, protocol: tcp, local_ports: \"80, 443\"}}")),
        // Same rule written differently (defaults spelled out, ports spaced):
        // canonical forms compare equal.
        rules("b", "    - {name: ssh, direction: in, action: allow, protocol: tcp, local_ports: \" 22\", enabled: true, description: \"\"}\n    - {name: dns, direction: out, action: allow, protocol: udp, remote_ports: \"53\"}")
    ));
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    let s = setting(&r, "firewall_rules").expect("rules");
    let names: Vec<&str> = s
        .value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["dns", "ssh", "web"]);
    assert_eq!(
        s.entries
            .iter()
            .find(|e| e.key == "ssh")
            .map(|e| e.sources.clone()),
        Some(vec!["a".to_string(), "b".to_string()])
    );
}

#[test]
fn two_rules_with_one_name_and_different_content_conflict_on_that_rule_only() {
    let r = one(&format!(
        "{LINUX_SERVER}{}{}",
        rules("a", "    - {name: ssh, direction: in, action: allow, protocol: tcp, local_ports: \"22\"}\n    - {name: web, direction: in, action: allow, protocol: tcp, local_ports: \"80\"}"),
        rules("b", "    - {name: ssh, direction: in, action: block, protocol: tcp, local_ports: \"22\"}")
    ));
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].key.as_deref(), Some("ssh"));
    let s = setting(&r, "firewall_rules").expect("rules");
    assert_eq!(s.value.as_array().map(Vec::len), Some(1));
}

#[test]
fn a_rule_with_windows_only_fields_is_not_applicable_on_linux_with_the_reason() {
    let r = one(&format!(
        "{LINUX_SERVER}{}",
        rules("a", "    - {name: app, direction: out, action: block, app_path: 'C:\\app.exe'}\n    - {name: web, direction: in, action: allow, protocol: tcp, local_ports: \"80\"}")
    ));
    assert_eq!(r.not_applicable.len(), 1);
    assert_eq!(r.not_applicable[0].key.as_deref(), Some("app"));
    assert!(
        r.not_applicable[0].reason.contains("app_path"),
        "{}",
        r.not_applicable[0].reason
    );
}

#[test]
fn address_keywords_ranges_and_protocol_numbers_are_not_applicable_on_linux() {
    let r = one(&format!(
        "{LINUX_SERVER}{}",
        rules("a", "    - {name: lan, direction: in, action: allow, remote_addresses: [LocalSubnet]}\n    - {name: range, direction: in, action: allow, remote_addresses: [10.0.0.1-10.0.0.9]}\n    - {name: gre, direction: in, action: allow, protocol: 47}\n    - {name: web, direction: in, action: allow, protocol: 6, local_ports: \"80\", remote_addresses: [10.0.0.0/8]}")
    ));
    let keys: Vec<&str> = r
        .not_applicable
        .iter()
        .filter_map(|n| n.key.as_deref())
        .collect();
    assert_eq!(keys, ["gre", "lan", "range"]);
    let reason = |k: &str| {
        &r.not_applicable
            .iter()
            .find(|n| n.key.as_deref() == Some(k))
            .unwrap()
            .reason
    };
    assert!(reason("lan").contains("LocalSubnet"), "{}", reason("lan"));
    assert!(
        reason("gre").contains("protocol number 47"),
        "{}",
        reason("gre")
    );
    let s = setting(&r, "firewall_rules").expect("rules");
    assert_eq!(s.value.as_array().map(Vec::len), Some(1));
}

#[test]
fn exclusion_beats_inclusion() {
    let r = one(&format!(
        "{LINUX_SERVER}---\nkind: Group\nname: everyone-linux\nrule: os == \"linux\"\n---\nkind: Policy\nname: p\nfamily: antivirus\nplatform: linux\nsettings: {{scan_archives: true}}\nassignments: {{include: [all-devices], exclude: [web]}}\n"
    ));
    assert!(r.settings.is_empty());
    assert!(r.policy_versions.is_empty());
}

#[test]
fn a_policy_for_another_platform_does_not_apply() {
    let r = one(&format!(
        "{LINUX_SERVER}---\nkind: Policy\nname: p\nfamily: antivirus\nplatform: windows\nsettings: {{scan_archives: true}}\nassignments: {{include: [all-devices]}}\n"
    ));
    assert!(r.settings.is_empty());
}

#[test]
fn enforcement_scope_off_and_tagged_leave_devices_unmanaged_with_a_reason() {
    let yaml = r#"
kind: TenantSettings
enforcement: {linux: tagged, windows: off, macos: all}
pilot_tag: pilot
---
kind: Device
name: tagged-linux
os: linux
tags: [Pilot]
---
kind: Device
name: plain-linux
os: linux
---
kind: Device
name: win
os: windows
---
kind: Policy
name: p
family: antivirus
platform: linux
settings: {scan_archives: true}
assignments: {include: [all-devices]}
---
kind: Policy
name: w
family: antivirus
platform: windows
settings: {scan_archives: true}
assignments: {include: [all-devices]}
"#;
    let r = plan(yaml);
    let by = |n: &str| r.iter().find(|x| x.device == n).expect("device");
    assert!(
        by("tagged-linux").managed,
        "tags compare case-insensitively"
    );
    assert_eq!(
        setting(by("tagged-linux"), "scan_archives").map(|s| s.value.clone()),
        Some(json!(true))
    );
    let plain = by("plain-linux");
    assert!(!plain.managed);
    assert!(plain.reason.as_deref().is_some_and(|m| m.contains("pilot")));
    assert!(plain.settings.is_empty());
    let win = by("win");
    assert!(!win.managed);
    assert!(win.reason.as_deref().is_some_and(|m| m.contains("off")));
}

#[test]
fn most_secure_wins_picks_by_security_order_then_recency() {
    let yaml = format!(
        "kind: TenantSettings\nconflict_policy: most_secure_wins\n---\n{LINUX_SERVER}{}{}{}",
        av(
            "a",
            "  pua_protection: audit\n  real_time_protection: false"
        ),
        av("b", "  pua_protection: block\n  real_time_protection: true"),
        av("c", "  pua_protection: off")
    );
    let r = one(&yaml);
    assert!(r.conflicts.is_empty());
    let pua = setting(&r, "pua_protection").expect("applied");
    assert_eq!(pua.value, json!("block"));
    assert_eq!(pua.sources, vec!["b"]);
    let losers: Vec<&str> = pua.superseded.iter().map(|s| s.policy.as_str()).collect();
    assert_eq!(losers, vec!["a", "c"]);
    assert_eq!(
        setting(&r, "real_time_protection").map(|s| s.value.clone()),
        Some(json!(true))
    );
}

#[test]
fn most_secure_wins_breaks_ties_by_the_most_recently_modified_policy() {
    use rampart_core::model::{ConflictPolicy, TenantSettings};
    let bundle = load_documents(
        &[(
            "t.yaml".into(),
            format!(
                "{LINUX_SERVER}{}{}",
                rules("old", "    - {name: ssh, direction: in, action: allow, protocol: tcp, local_ports: \"22\"}"),
                rules("new", "    - {name: ssh, direction: in, action: allow, protocol: tcp, local_ports: \"2222\"}")
            ),
        )],
        Catalog::builtin(),
    )
    .expect("valid");
    let mut policies = bundle.policies.clone();
    for p in &mut policies {
        p.modified_at = if p.name == "new" { 200 } else { 100 };
    }
    let tenant = TenantSettings {
        conflict_policy: ConflictPolicy::MostSecureWins,
        ..TenantSettings::default()
    };
    let r = resolve(
        &bundle.devices[0],
        &bundle.groups,
        &policies,
        &tenant,
        Catalog::builtin(),
    );
    let s = setting(&r, "firewall_rules").expect("rules");
    assert_eq!(s.value[0]["local_ports"], json!("2222"));
    assert_eq!(s.sources, vec!["new"]);
}

#[test]
fn provenance_names_policy_versions_and_the_digest_tracks_content() {
    let base = format!("{LINUX_SERVER}{}", av("a", "  scan_archives: true"));
    let r1 = one(&base);
    assert_eq!(r1.policy_versions.get("a"), Some(&1));
    assert_eq!(r1.digest.len(), 64);
    assert_eq!(one(&base).digest, r1.digest, "same input, same digest");
    let r2 = one(&format!(
        "{LINUX_SERVER}{}",
        av("a", "  scan_archives: false")
    ));
    assert_ne!(r2.digest, r1.digest, "a changed value changes the digest");
}
