//! The catalog entries added for real Intune baselines (issue 13): each one
//! accepts a value an administrator would write, refuses a wrong one with a
//! message naming the setting, and stays in its family and platform.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_core::catalog::Catalog;
use rampart_core::model::{Family, Platform};
use rampart_core::validate::policy_from_json;
use serde_json::{json, Value};

/// (setting, family, a valid value, an invalid value).
fn cases() -> Vec<(&'static str, Family, Value, Value)> {
    use Family::*;
    let mut cases = vec![
        ("tamper_protection", Antivirus, json!(true), json!("on")),
        (
            "controlled_folder_access",
            Antivirus,
            json!("audit"),
            json!("warn"),
        ),
        (
            "controlled_folder_access_protected_folders",
            Antivirus,
            json!(["C:\\Finance", "%USERPROFILE%\\Secrets"]),
            json!(["relative\\dir"]),
        ),
        (
            "controlled_folder_access_allowed_applications",
            Antivirus,
            json!(["C:\\Tools\\backup.exe"]),
            json!("C:\\Tools\\backup.exe"),
        ),
        (
            "network_protection_down_level",
            Antivirus,
            json!(true),
            json!(1),
        ),
        (
            "network_protection_on_servers",
            Antivirus,
            json!(true),
            json!("yes"),
        ),
        (
            "network_protection_dns_over_tcp_parsing",
            Antivirus,
            json!(false),
            json!(0),
        ),
        (
            "network_protection_http_parsing",
            Antivirus,
            json!(true),
            json!("maybe"),
        ),
        (
            "network_protection_ssh_parsing",
            Antivirus,
            json!(true),
            json!([]),
        ),
        (
            "network_protection_tls_parsing",
            Antivirus,
            json!(true),
            json!({}),
        ),
        (
            "network_protection_dns_sinkhole",
            Antivirus,
            json!(true),
            json!("true"),
        ),
        (
            "check_signatures_before_scan",
            Antivirus,
            json!(true),
            json!(2),
        ),
        ("scan_network_files", Antivirus, json!(false), json!("no")),
        ("catch_up_full_scan", Antivirus, json!(true), json!(1)),
        ("catch_up_quick_scan", Antivirus, json!(true), json!(1)),
        (
            "scheduled_quick_scan_time",
            Antivirus,
            json!(720),
            json!(1440),
        ),
        ("avg_cpu_load_factor", Antivirus, json!(50), json!(101)),
        ("low_cpu_priority", Antivirus, json!(true), json!("low")),
        (
            "realtime_scan_direction",
            Antivirus,
            json!("incoming"),
            json!("inbound"),
        ),
        (
            "remediation_action_low",
            Antivirus,
            json!("clean"),
            json!("ignore"),
        ),
        (
            "remediation_action_moderate",
            Antivirus,
            json!("quarantine"),
            json!(2),
        ),
        (
            "remediation_action_high",
            Antivirus,
            json!("remove"),
            json!("delete"),
        ),
        (
            "remediation_action_severe",
            Antivirus,
            json!("block"),
            json!("stop"),
        ),
        (
            "engine_update_channel",
            Antivirus,
            json!("staged"),
            json!("nightly"),
        ),
        (
            "platform_update_channel",
            Antivirus,
            json!("critical"),
            json!(6),
        ),
        (
            "security_intelligence_update_channel",
            Antivirus,
            json!("broad"),
            json!("beta"),
        ),
        (
            "metered_connection_updates",
            Antivirus,
            json!(true),
            json!("metered"),
        ),
        (
            "local_admin_merge",
            AntivirusExclusions,
            json!(false),
            json!("off"),
        ),
        (
            "hide_exclusions_from_local_admins",
            AntivirusExclusions,
            json!(true),
            json!(1),
        ),
        ("user_ui_access", Antivirus, json!(false), json!("hidden")),
        (
            "network_protection_dns_parsing",
            Antivirus,
            json!(true),
            json!("dns"),
        ),
        (
            "network_protection_rdp_parsing",
            Antivirus,
            json!(false),
            json!(0),
        ),
        (
            "network_protection_inbound_connection_filtering",
            Antivirus,
            json!(true),
            json!(1),
        ),
        (
            "network_protection_datagram_processing_on_servers",
            Antivirus,
            json!(true),
            json!("udp"),
        ),
        (
            "network_protection_async_inspection",
            Antivirus,
            json!(true),
            json!({"on": true}),
        ),
        (
            "quick_scan_include_exclusions",
            Antivirus,
            json!(true),
            json!([true]),
        ),
        (
            "randomize_scheduled_task_times",
            Antivirus,
            json!(false),
            json!("random"),
        ),
        (
            "scheduler_randomization_hours",
            Antivirus,
            json!(4),
            json!(0),
        ),
        (
            "signature_update_fallback_order",
            Antivirus,
            json!("MicrosoftUpdateServer|MMPC"),
            json!(""),
        ),
        (
            "signature_update_file_shares_sources",
            Antivirus,
            json!("\\\\fs01\\updates"),
            json!(["\\\\fs01"]),
        ),
        (
            "enable_file_hash_computation",
            Antivirus,
            json!(true),
            json!("sha256"),
        ),
        (
            "firewall_stateful_ftp",
            Firewall,
            json!(false),
            json!("ftp"),
        ),
        (
            "firewall_crl_check",
            Firewall,
            json!("require"),
            json!("strict"),
        ),
        ("firewall_sa_idle_time", Firewall, json!(600), json!(60)),
        (
            "firewall_preshared_key_encoding",
            Firewall,
            json!("utf8"),
            json!("utf16"),
        ),
        (
            "asr_rule_exclusions",
            Asr,
            json!(["d4f940ab-401b-4efc-aadc-ad5f3c50688a=C:\\Tools\\macro.exe"]),
            json!(["C:\\Tools\\macro.exe"]),
        ),
    ];
    for area in [
        "account_protection",
        "app_browser_control",
        "device_security",
        "family_options",
        "device_performance",
        "firewall_network",
        "virus_protection",
        "notifications",
        "enhanced_notifications",
        "ransomware_recovery",
        "tray_icon",
        "clear_tpm",
        "tpm_update_warning",
    ] {
        let id: &'static str = Box::leak(format!("security_center_hide_{area}").into_boxed_str());
        cases.push((id, Antivirus, json!(true), json!("hidden")));
    }
    cases.extend([
        (
            "security_center_contact_company",
            Antivirus,
            json!("Example Ltd IT"),
            json!(""),
        ),
        (
            "security_center_contact_email",
            Antivirus,
            json!("it@example.com"),
            json!(["it@example.com"]),
        ),
        (
            "security_center_contact_phone",
            Antivirus,
            json!("+1 555 0100"),
            json!(5550100),
        ),
        (
            "security_center_contact_url",
            Antivirus,
            json!("https://help.example.com"),
            json!("a\nb"),
        ),
        (
            "security_center_customized_notifications",
            Antivirus,
            json!(true),
            json!("on"),
        ),
        (
            "security_center_customized_contact_card",
            Antivirus,
            json!(false),
            json!(0),
        ),
    ]);
    for profile in ["domain", "private", "public"] {
        let id = |s: &str| -> &'static str {
            Box::leak(format!("firewall_{profile}_{s}").into_boxed_str())
        };
        cases.extend([
            (id("enabled"), Firewall, json!(true), json!("on")),
            (
                id("default_inbound_action"),
                Firewall,
                json!("block"),
                json!("drop"),
            ),
            (
                id("default_outbound_action"),
                Firewall,
                json!("allow"),
                json!(0),
            ),
            (
                id("inbound_notifications"),
                Firewall,
                json!(false),
                json!("quiet"),
            ),
            (id("stealth_mode"), Firewall, json!(true), json!(1)),
            (id("shielded"), Firewall, json!(false), json!("no")),
            (
                id("unicast_responses_to_multicast"),
                Firewall,
                json!(false),
                json!(0),
            ),
            (
                id("local_policy_merge"),
                Firewall,
                json!(false),
                json!("merge"),
            ),
            (
                id("local_ipsec_policy_merge"),
                Firewall,
                json!(true),
                json!(1),
            ),
            (
                id("log_file_path"),
                Firewall,
                json!("%systemroot%\\system32\\LogFiles\\Firewall\\pfirewall.log"),
                json!(""),
            ),
            (
                id("log_max_file_size"),
                Firewall,
                json!(16384),
                json!(40000),
            ),
            (
                id("log_dropped_packets"),
                Firewall,
                json!(true),
                json!("yes"),
            ),
            (
                id("log_successful_connections"),
                Firewall,
                json!(false),
                json!(0),
            ),
            (
                id("local_app_rules_merge"),
                Firewall,
                json!(false),
                json!("no"),
            ),
            (
                id("local_port_rules_merge"),
                Firewall,
                json!(true),
                json!(1),
            ),
        ]);
    }
    cases
}

fn policy(family: Family, id: &str, value: &Value) -> Value {
    json!({
        "name": "p",
        "family": family,
        "platform": "windows",
        "settings": { id: value },
        "assignments": {"include": ["all-devices"]},
    })
}

#[test]
fn every_new_setting_accepts_a_good_value_and_refuses_a_bad_one() {
    let catalog = Catalog::builtin();
    for (id, family, good, bad) in cases() {
        let def = catalog
            .get(id)
            .unwrap_or_else(|| panic!("{id} is in the catalog"));
        assert!(def.allows_platform(Platform::Windows), "{id} on windows");
        // Per-rule ASR exclusions ride on the ASR rules' Intune setting.
        assert!(
            !def.intune.is_empty() || id == "asr_rule_exclusions",
            "{id} has an Intune definition"
        );
        let ok = policy_from_json(&policy(family, id, &good), catalog, 1, 0);
        assert!(ok.is_ok(), "{id} = {good}: {:?}", ok.err());
        let errors = policy_from_json(&policy(family, id, &bad), catalog, 1, 0)
            .expect_err(&format!("{id} = {bad} is refused"));
        assert!(
            errors
                .iter()
                .all(|e| e.path.starts_with(&format!("settings.{id}"))),
            "{id}: {errors:?}"
        );
    }
}

#[test]
fn new_windows_only_settings_are_refused_on_linux() {
    let catalog = Catalog::builtin();
    let p = json!({"name": "p", "family": "antivirus", "platform": "linux",
        "settings": {"tamper_protection": true}});
    let errors = policy_from_json(&p, catalog, 1, 0).unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("not available on platform linux"),
        "{errors:?}"
    );
}

#[test]
fn deprecated_settings_stay_refused_with_their_reason() {
    let catalog = Catalog::builtin();
    for (family, id, value) in [
        (
            "antivirus",
            "allow_intrusion_prevention_system",
            json!(true),
        ),
        ("edr", "telemetry_reporting_frequency", json!("expedite")),
    ] {
        let p =
            json!({"name": "p", "family": family, "platform": "windows", "settings": {id: value}});
        let errors = policy_from_json(&p, catalog, 1, 0).unwrap_err();
        assert!(errors[0].message.contains("deprecated"), "{id}: {errors:?}");
    }
}

#[test]
fn firewall_rules_take_protocol_numbers_icmp_types_and_address_keywords() {
    let catalog = Catalog::builtin();
    let rules = json!([
        {"name": "gre", "direction": "in", "action": "allow", "protocol": 47},
        {"name": "tcp by number", "direction": "in", "action": "allow", "protocol": "6", "local_ports": "443"},
        {"name": "ping", "direction": "in", "action": "allow", "protocol": "icmp", "icmp_types_and_codes": ["8:*", "0:0"]},
        {"name": "lan", "direction": "in", "action": "allow", "remote_addresses": ["localsubnet", "DNS", "10.0.0.1-10.0.0.20", "192.168.0.0/16"],
         "interface_types": ["lan", "wireless"], "app_path": "%ProgramFiles%\\App\\app.exe", "service_name": "Dnscache"}
    ]);
    let p = json!({"name": "p", "family": "firewall_rules", "platform": "windows", "settings": {"firewall_rules": rules}});
    let policy = policy_from_json(&p, catalog, 1, 0).unwrap();
    let rules = policy.settings["firewall_rules"].as_array().unwrap();
    let by = |n: &str| rules.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(by("gre")["protocol"], "47");
    assert_eq!(by("tcp by number")["protocol"], "tcp");
    assert_eq!(by("ping")["icmp_types_and_codes"], json!(["0:0", "8:*"]));
    assert_eq!(
        by("lan")["remote_addresses"],
        json!(["10.0.0.1-10.0.0.20", "192.168.0.0/16", "DNS", "LocalSubnet"])
    );

    let bad = json!([
        {"name": "a", "direction": "in", "action": "allow", "protocol": 256},
        {"name": "b", "direction": "in", "action": "allow", "protocol": 47, "local_ports": "80"},
        {"name": "c", "direction": "in", "action": "allow", "protocol": "tcp", "icmp_types_and_codes": ["8:*"]},
        {"name": "d", "direction": "in", "action": "allow", "remote_addresses": ["10.0.0.9-10.0.0.1", "Everywhere"]},
        {"name": "e", "direction": "in", "action": "allow", "protocol": "icmp", "icmp_types_and_codes": ["echo"]}
    ]);
    let p = json!({"name": "p", "family": "firewall_rules", "platform": "windows", "settings": {"firewall_rules": bad}});
    let errors = policy_from_json(&p, catalog, 1, 0).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "settings.firewall_rules[0].protocol",
        "settings.firewall_rules[1].local_ports",
        "settings.firewall_rules[2].icmp_types_and_codes",
        "settings.firewall_rules[3].remote_addresses[0]",
        "settings.firewall_rules[3].remote_addresses[1]",
        "settings.firewall_rules[4].icmp_types_and_codes[0]",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
}
