//! `rampart import intune` and `rampart export intune`, run as a user runs
//! them: real Intune exports, synthetic ones for the shapes those lack, bad
//! input, and the round trip through both commands.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rampart-intune-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The real exports, kept in the repository as test fixtures (see their
/// README for where they come from).
fn real_exports() -> Option<PathBuf> {
    Some(repo().join("crates/cli/tests/fixtures/intune-exports"))
}

fn import_json(inputs: &[&str], out: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["import", "intune"];
    args.extend_from_slice(inputs);
    args.extend_from_slice(&["--out", s(out), "-o", "json"]);
    args.extend_from_slice(extra);
    let o = rampart(&args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o, v)
}

fn policy_docs(dir: &Path) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        for d in serde_yaml::Deserializer::from_str(&fs::read_to_string(&f).unwrap()) {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            docs.push(v);
        }
    }
    docs
}

fn by_name<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no document {name}: {docs:#?}"))
}

#[test]
fn every_real_export_maps_at_least_95_percent_and_plan_accepts_the_result() {
    let Some(exports) = real_exports() else {
        return;
    };
    let out = scratch("real").join("out");
    let (o, report) = import_json(&[s(&exports)], &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let files = report.as_array().unwrap();
    assert_eq!(files.len(), 3, "{report:#}");
    for f in files {
        let coverage = f["coverage"].as_f64().unwrap();
        assert!(coverage >= 95.0, "{}: {coverage} %\n{f:#}", f["file"]);
        assert_eq!(f["total"], f["settings"].as_array().unwrap().len());
    }
    let plan = rampart(&["plan", s(&out)]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));

    // Choice options, simple values, nested groups and rule groups all map
    // to what Microsoft's definitions say they mean.
    let docs = policy_docs(&out);
    let av = &by_name(
        &docs,
        "Prod-Windows-MicrosoftDefenderAntivirus-Baseline-Device",
    )["settings"];
    assert_eq!(av["cloud_block_level"], "high"); // …_cloudblocklevel_2
    assert_eq!(av["cloud_extended_timeout"], 30);
    assert_eq!(av["local_admin_merge"], true); // disablelocaladminmerge_0
    assert_eq!(av["network_protection"], "block"); // enablenetworkprotection_1
    assert_eq!(av["remediation_action_severe"], "block");
    assert_eq!(av["remediation_action_low"], "clean");
    assert_eq!(av["scheduled_scan_day"], "every_day");
    assert_eq!(av["network_protection_tls_parsing"], true); // disabletlsparsing_0
    let ex = by_name(
        &docs,
        "Prod-Windows-MicrosoftDefenderExclusions-Baseline-Device",
    );
    assert_eq!(ex["family"], "antivirus_exclusions");
    assert_eq!(
        ex["settings"]["excluded_paths"].as_array().unwrap().len(),
        2
    );
    let fw = by_name(&docs, "Prod-Windows-FirewallRules");
    assert_eq!(fw["assignments"]["include"], json!(["all-devices"]));
    let rules = fw["settings"]["firewall_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    let tcp = rules
        .iter()
        .find(|r| r["name"] == "Delivery Optimization (TCP-In)")
        .unwrap();
    assert_eq!(tcp["protocol"], "tcp");
    assert_eq!(tcp["local_ports"], "7680");
    assert_eq!(tcp["profiles"], json!(["all"]));
    assert_eq!(tcp["edge_traversal"], true);
}

#[test]
fn the_table_lists_every_setting_and_the_coverage() {
    let Some(exports) = real_exports() else {
        return;
    };
    let out = scratch("table").join("out");
    let o = rampart(&[
        "import",
        "intune",
        s(&exports.join("Prod-Windows-MicrosoftDefenderAntivirus-Baseline-Device.json")),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t = text(&o.stdout);
    assert!(
        t.contains("device_vendor_msft_policy_config_defender_cloudblocklevel → cloud_block_level"),
        "{t}"
    );
    assert!(
        t.contains("coverage    38 of 38 settings mapped (100.0 %)"),
        "{t}"
    );
}

fn setting(id: &str, inst: Value) -> Value {
    let mut inst = inst;
    inst["settingDefinitionId"] = json!(id);
    json!({"id": "0", "settingInstance": inst})
}

fn choice(id: &str, option: &str) -> Value {
    setting(
        id,
        json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
               "choiceSettingValue": {"value": format!("{id}_{option}"), "children": []}}),
    )
}

fn policy(
    name: &str,
    platform: &str,
    family: &str,
    settings: Vec<Value>,
    assignments: Value,
) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationPolicy",
        "name": name, "description": "", "platforms": platform, "technologies": "mdm,microsoftSense",
        "templateReference": {"templateId": "", "templateFamily": family},
        "settings": settings, "assignments": assignments,
    })
}

const D: &str = "device_vendor_msft_policy_config_defender_";

#[test]
fn arrays_byte_order_marks_and_folders_import_alike() {
    let dir = scratch("shapes");
    let a = policy(
        "AV one",
        "windows10",
        "endpointSecurityAntivirus",
        vec![choice(&format!("{D}allowrealtimemonitoring"), "1")],
        json!([]),
    );
    let b = policy(
        "AV two",
        "windows10",
        "endpointSecurityAntivirus",
        vec![choice(&format!("{D}puaprotection"), "2")],
        json!([]),
    );
    let input = dir.join("in");
    fs::create_dir_all(&input).unwrap();
    fs::write(
        input.join("both.json"),
        format!("\u{feff}{}", json!([a, b])),
    )
    .unwrap();
    fs::write(
        input.join("graph-list.json"),
        json!({"value": [policy("AV three", "windows10", "none",
        vec![choice(&format!("{D}cloudblocklevel"), "6")], json!([]))]})
        .to_string(),
    )
    .unwrap();
    let out = dir.join("out");
    let (o, report) = import_json(&[s(&input)], &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(report.as_array().unwrap().len(), 3);
    let docs = policy_docs(&out);
    assert_eq!(
        by_name(&docs, "AV one")["settings"]["real_time_protection"],
        true
    );
    assert_eq!(
        by_name(&docs, "AV two")["settings"]["pua_protection"],
        "audit"
    );
    assert_eq!(
        by_name(&docs, "AV three")["settings"]["cloud_block_level"],
        "zero_tolerance"
    );
}

#[test]
fn bad_input_is_reported_per_file_and_nothing_is_written() {
    let dir = scratch("bad");
    let good = dir.join("good.json");
    fs::write(
        &good,
        policy(
            "ok",
            "windows10",
            "none",
            vec![choice(&format!("{D}allowrealtimemonitoring"), "1")],
            json!([]),
        )
        .to_string(),
    )
    .unwrap();
    let not_json = dir.join("notes.json");
    fs::write(&not_json, "this is not JSON").unwrap();
    let not_export = dir.join("other.json");
    fs::write(&not_export, r#"{"displayName": "a compliance policy"}"#).unwrap();
    let bad_platform = dir.join("platform.json");
    fs::write(
        &bad_platform,
        policy("p", "iOS", "none", vec![], json!([])).to_string(),
    )
    .unwrap();
    let out = dir.join("out");
    let o = rampart(&[
        "import",
        "intune",
        s(&good),
        s(&not_json),
        s(&not_export),
        s(&bad_platform),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}: not an Intune configuration policy: not JSON",
            not_json.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: not an Intune configuration policy",
            not_export.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: platforms:", bad_platform.display())),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!out.exists(), "the output directory must not appear");
    assert!(fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp-")));
}

#[test]
fn unknown_settings_are_reported_with_a_reason_and_strict_refuses_them() {
    let dir = scratch("unknown");
    let file = dir.join("p.json");
    fs::write(
        &file,
        policy(
            "mixed",
            "windows10",
            "endpointSecurityAntivirus",
            vec![
                choice(&format!("{D}allowrealtimemonitoring"), "1"),
                choice("device_vendor_msft_policy_config_something_new", "1"),
                choice(&format!("{D}cloudblocklevel"), "9"),
                choice(&format!("{D}allowintrusionpreventionsystem"), "1"),
            ],
            json!([]),
        )
        .to_string(),
    )
    .unwrap();
    let out = dir.join("out");
    let (o, report) = import_json(&[s(&file)], &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = &report[0];
    assert_eq!(
        (r["mapped"].as_u64(), r["total"].as_u64()),
        (Some(1), Some(4))
    );
    let reason = |id: &str| -> String {
        r["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["intune_id"] == id)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("device_vendor_msft_policy_config_something_new").contains("no Rampart setting"));
    assert!(reason(&format!("{D}cloudblocklevel")).contains("\"9\" has no Rampart equivalent"));
    assert!(reason(&format!("{D}allowintrusionpreventionsystem")).contains("deprecated"));

    let strict_out = dir.join("strict");
    let o = rampart(&[
        "import",
        "intune",
        s(&file),
        "--out",
        s(&strict_out),
        "--strict",
    ]);
    assert!(!o.status.success());
    assert!(!strict_out.exists());
}

#[test]
fn assignments_map_groups_drop_filters_and_refuse_users() {
    let dir = scratch("assign");
    let file = dir.join("p.json");
    let assignments = json!([
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "11111111-1111-1111-1111-111111111111",
                    "deviceAndAppManagementAssignmentFilterId": "ffffffff-0000-0000-0000-000000000000", "deviceAndAppManagementAssignmentFilterType": "include"}},
        {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "22222222-2222-2222-2222-222222222222"}},
        {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}}
    ]);
    fs::write(
        &file,
        policy(
            "assigned",
            "windows10",
            "none",
            vec![choice(&format!("{D}allowrealtimemonitoring"), "1")],
            assignments,
        )
        .to_string(),
    )
    .unwrap();
    let groups = dir.join("groups.yaml");
    fs::write(
        &groups,
        "11111111-1111-1111-1111-111111111111: windows-workstations\n",
    )
    .unwrap();
    let out = dir.join("out");
    let (o, report) = import_json(&[s(&file)], &out, &["--groups", s(&groups)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let warnings = report[0]["warnings"].to_string();
    assert!(
        warnings.contains("assignment filter ffffffff-0000-0000-0000-000000000000 dropped"),
        "{warnings}"
    );
    assert!(warnings.contains("all users refused"), "{warnings}");
    assert!(
        warnings.contains("22222222-2222-2222-2222-222222222222 has no name"),
        "{warnings}"
    );
    let docs = policy_docs(&out);
    let p = by_name(&docs, "assigned");
    assert_eq!(p["assignments"]["include"], json!(["windows-workstations"]));
    assert_eq!(
        p["assignments"]["exclude"],
        json!(["intune-22222222-2222-2222-2222-222222222222"])
    );
    assert!(docs
        .iter()
        .any(|d| d["kind"] == "Group" && d["name"] == "windows-workstations"));
    let plan = rampart(&["plan", s(&out)]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
}

#[test]
fn asr_rules_per_profile_firewall_and_mixed_families_import() {
    let dir = scratch("asr");
    let asr = format!("{D}attacksurfacereductionrules");
    let rule = |name: &str, mode: &str, exclusions: &[&str]| -> Value {
        let id = format!("{asr}_{name}");
        let children: Vec<Value> = if exclusions.is_empty() {
            vec![]
        } else {
            vec![
                json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingCollectionInstance",
                "settingDefinitionId": format!("{id}_perruleexclusions"),
                "simpleSettingCollectionValue": exclusions.iter().map(|p| json!({"value": p})).collect::<Vec<_>>()}),
            ]
        };
        json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
               "settingDefinitionId": id, "choiceSettingValue": {"value": format!("{id}_{mode}"), "children": children}})
    };
    let asr_setting = setting(
        &asr,
        json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
        "groupSettingCollectionValue": [{"children": [
            rule("blockexecutionofpotentiallyobfuscatedscripts", "block", &[]),
            rule("blockcredentialstealingfromwindowslocalsecurityauthoritysubsystem", "audit", &[]),
            rule("blockallofficeapplicationsfromcreatingchildprocesses", "warn", &["C:\\Tools\\macro.exe"]),
        ]}]}),
    );
    let fw = "vendor_msft_firewall_mdmstore_";
    let firewall = policy(
        "Firewall baseline",
        "windows10",
        "endpointSecurityFirewall",
        vec![
            choice(&format!("{fw}domainprofile_enablefirewall"), "true"),
            choice(&format!("{fw}publicprofile_defaultinboundaction"), "1"),
            choice(&format!("{fw}privateprofile_disablestealthmode"), "false"),
            setting(
                &format!("{fw}publicprofile_logmaxfilesize"),
                json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
            "simpleSettingValue": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationIntegerSettingValue", "value": 16384}}),
            ),
            setting(
                &format!("{fw}firewallrules_{{firewallrulename}}"),
                json!({
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
                "groupSettingCollectionValue": [{"children": [
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_name"), "simpleSettingValue": {"value": "GRE in"}},
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_direction"), "choiceSettingValue": {"value": format!("{fw}firewallrules_{{firewallrulename}}_direction_in"), "children": []}},
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_action_type"), "choiceSettingValue": {"value": format!("{fw}firewallrules_{{firewallrulename}}_action_type_0"), "children": []}},
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_protocol"), "simpleSettingValue": {"value": 47}},
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_remoteaddressranges"), "simpleSettingCollectionValue": [{"value": "LocalSubnet"}, {"value": "10.0.0.0/8"}]},
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_profiles"), "choiceSettingCollectionValue": [{"value": format!("{fw}firewallrules_{{firewallrulename}}_profiles_1"), "children": []}, {"value": format!("{fw}firewallrules_{{firewallrulename}}_profiles_4"), "children": []}]},
                    {"settingDefinitionId": format!("{fw}firewallrules_{{firewallrulename}}_interfacetypes"), "choiceSettingCollectionValue": [{"value": format!("{fw}firewallrules_{{firewallrulename}}_interfacetypes_remoteaccess"), "children": []}]}
                ]}]}),
            ),
        ],
        json!([]),
    );
    let asr_policy = policy(
        "ASR",
        "windows10",
        "endpointSecurityAttackSurfaceReduction",
        // Intune's ASR template carries controlled folder access too.
        vec![
            asr_setting,
            choice(&format!("{D}enablecontrolledfolderaccess"), "2"),
        ],
        json!([]),
    );
    let input = dir.join("in");
    fs::create_dir_all(&input).unwrap();
    fs::write(input.join("asr.json"), asr_policy.to_string()).unwrap();
    fs::write(input.join("fw.json"), firewall.to_string()).unwrap();
    let out = dir.join("out");
    let (o, report) = import_json(&[s(&input)], &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for r in report.as_array().unwrap() {
        assert_eq!(r["mapped"], r["total"], "{r:#}");
    }
    let docs = policy_docs(&out);
    let asr = &by_name(&docs, "ASR")["settings"];
    assert_eq!(
        asr["asr_rules"],
        json!({
            "5beb7efe-fd9a-4556-801d-275e5ffc04cc": "block",
            "9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2": "audit",
            "d4f940ab-401b-4efc-aadc-ad5f3c50688a": "warn",
        })
    );
    assert_eq!(
        asr["asr_rule_exclusions"],
        json!(["d4f940ab-401b-4efc-aadc-ad5f3c50688a=C:\\Tools\\macro.exe"])
    );
    assert_eq!(asr["controlled_folder_access"], "audit");
    assert!(
        !docs.iter().any(|d| d["name"] == "ASR-antivirus"),
        "not split"
    );
    // The firewall template mixes profile settings and rules: two policies.
    let profile = &by_name(&docs, "Firewall baseline-firewall")["settings"];
    assert_eq!(profile["firewall_domain_enabled"], true);
    assert_eq!(profile["firewall_public_default_inbound_action"], "block");
    assert_eq!(profile["firewall_private_stealth_mode"], true);
    assert_eq!(profile["firewall_public_log_max_file_size"], 16384);
    let rules = &by_name(&docs, "Firewall baseline-firewall-rules")["settings"]["firewall_rules"];
    assert_eq!(rules[0]["protocol"], "47");
    assert_eq!(rules[0]["action"], "block");
    assert_eq!(rules[0]["profiles"], json!(["domain", "public"]));
    assert_eq!(rules[0]["interface_types"], json!(["remote_access"]));
    assert_eq!(
        rules[0]["remote_addresses"],
        json!(["10.0.0.0/8", "LocalSubnet"])
    );
    let plan = rampart(&["plan", s(&out)]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
}

#[test]
fn export_then_import_gives_back_the_windows_policies() {
    let dir = scratch("roundtrip");
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("p.yaml"),
        r#"kind: Policy
name: win-av
description: everything Intune can carry
family: antivirus
platform: windows
settings:
  real_time_protection: true
  cloud_block_level: high_plus
  cloud_extended_timeout: 50
  remediation_action_high: quarantine
  remediation_action_severe: remove
  local_admin_merge: false
  controlled_folder_access: audit
  controlled_folder_access_protected_folders: ['C:\Finance']
assignments:
  include: [win]
  exclude: [lab]
---
kind: Policy
name: win-asr
family: asr
platform: windows
settings:
  asr_rules:
    d4f940ab-401b-4efc-aadc-ad5f3c50688a: block
  asr_rule_exclusions: ['d4f940ab-401b-4efc-aadc-ad5f3c50688a=C:\Tools\a.exe']
assignments:
  include: [all-devices]
---
kind: Group
name: win
rule: os == "windows"
---
kind: Group
name: lab
members: []
"#,
    )
    .unwrap();
    let groups = dir.join("groups.yaml");
    fs::write(
        &groups,
        "aaaaaaaa-0000-0000-0000-000000000001: win\naaaaaaaa-0000-0000-0000-000000000002: lab\n",
    )
    .unwrap();
    let exported = dir.join("exported");
    let o = rampart(&[
        "export",
        "intune",
        s(&src),
        "--out",
        s(&exported),
        "--groups",
        s(&groups),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let body: Value =
        serde_json::from_str(&fs::read_to_string(exported.join("win-av.json")).unwrap()).unwrap();
    assert_eq!(body["platforms"], "windows10");
    assert!(body["settings"]
        .to_string()
        .contains(&format!("{D}cloudblocklevel_4")));
    let back = dir.join("back");
    let (o, _) = import_json(&[s(&exported)], &back, &["--groups", s(&groups)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before = policy_docs(&src);
    let after = policy_docs(&back);
    for name in ["win-av", "win-asr"] {
        let (a, b) = (by_name(&before, name), by_name(&after, name));
        for key in ["family", "platform", "settings"] {
            assert_eq!(a[key], b[key], "{name}.{key}");
        }
        assert_eq!(a["assignments"], b["assignments"], "{name}");
    }
}

#[test]
fn export_reports_settings_intune_cannot_carry() {
    let out = scratch("fleet").join("out");
    let o = rampart(&[
        "export",
        "intune",
        "examples/fleet",
        "--out",
        s(&out),
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = report.to_string();
    // ClamAV-only size limits have no Intune definition.
    assert!(all.contains("has no Intune definition on linux"), "{all}");
}
