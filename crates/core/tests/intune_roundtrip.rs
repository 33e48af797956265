//! `import(export(policy)) == policy` for every Windows policy whose
//! settings Intune can carry: random settings of every kind (choices,
//! numbers, strings, lists, nested remediation actions, ASR rules with
//! per-rule exclusions, firewall rules), random assignments.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rampart_core::catalog::{Catalog, ItemKind, SettingDefinition, SettingKind};
use rampart_core::intune::{export_policy, import_policy, with_assignments};
use rampart_core::model::{Family, Platform, Policy};
use rampart_core::validate::policy_from_json;
use serde_json::{json, Map, Value};

const FAMILIES: &[Family] = &[
    Family::Antivirus,
    Family::AntivirusExclusions,
    Family::Firewall,
    Family::FirewallRules,
    Family::Asr,
    Family::Edr,
];

/// Settings of `family` an Intune Windows policy can carry.
fn candidates(family: Family) -> Vec<&'static SettingDefinition> {
    Catalog::builtin()
        .iter()
        .filter(|d| {
            d.deprecated.is_none()
                && d.allows_family(family)
                && d.allows_platform(Platform::Windows)
        })
        .filter(|d| {
            d.id == "asr_rule_exclusions"
                || d.intune
                    .iter()
                    .any(|m| m.platforms.contains(&Platform::Windows))
        })
        .collect()
}

/// A random value for `def` that Intune can express, drawn from `seed`.
fn value_for(def: &SettingDefinition, seed: &[u32]) -> Value {
    let pick = |i: usize, n: usize| (seed[i % seed.len()] as usize) % n.max(1);
    let windows = def
        .intune
        .iter()
        .find(|m| m.platforms.contains(&Platform::Windows));
    match def.kind {
        SettingKind::Bool | SettingKind::Enum => {
            let options: Vec<&Value> = windows.unwrap().options.values().collect();
            options[pick(0, options.len())].clone()
        }
        SettingKind::Int => {
            let (lo, hi) = (def.min.unwrap_or(0), def.max.unwrap_or(1000));
            json!(lo + (seed[0] as i64) % (hi - lo + 1))
        }
        SettingKind::String => json!(
            [
                "C:\\Logs\\fw.log",
                "finance",
                "tag-7",
                "%systemroot%\\fw.log"
            ][pick(0, 4)]
        ),
        SettingKind::StringList => {
            let n = pick(1, 4);
            let item = |i: usize| -> Value {
                match def.item.unwrap_or_default() {
                    ItemKind::Path => json!(format!("C:\\Data\\dir{}", pick(2 + i, 6))),
                    ItemKind::Extension => json!(["log", "tmp", "bak", "iso"][pick(2 + i, 4)]),
                    ItemKind::Process => {
                        json!(["backup.exe", "C:\\Tools\\sync.exe", "agent"][pick(2 + i, 3)])
                    }
                    _ => json!(format!("item{}", pick(2 + i, 5))),
                }
            };
            Value::Array((0..n).map(item).collect())
        }
        SettingKind::AsrRules => {
            let mut map = Map::new();
            for (i, key) in def.keys.iter().enumerate() {
                let modes: Vec<&str> = ["off", "block", "audit", "warn"]
                    .into_iter()
                    .filter(|m| !key.excluded_values.iter().any(|x| x == m))
                    .collect();
                if i == 0 || pick(i, 3) != 0 {
                    map.insert(key.key.clone(), json!(modes[pick(i + 1, modes.len())]));
                }
            }
            Value::Object(map)
        }
        SettingKind::FirewallRules => {
            // At least one: an empty list is "not configured" in Intune.
            let rules: Vec<Value> = (0..1 + pick(0, 3))
                .map(|i| firewall_rule(i, &seed[i % seed.len()..]))
                .collect();
            Value::Array(rules)
        }
    }
}

fn firewall_rule(i: usize, seed: &[u32]) -> Value {
    let pick = |k: usize, n: usize| (seed[k % seed.len()] as usize) % n;
    let direction = ["in", "out"][pick(0, 2)];
    let protocol = ["tcp", "udp", "icmp", "any", "47"][pick(1, 5)];
    let description = ["", "why this rule exists"][pick(2, 2)];
    let action = ["allow", "block"][pick(3, 2)];
    let mut rule = json!({
        "name": format!("rule {i}"),
        "description": description,
        "direction": direction,
        "action": action,
        "protocol": protocol,
        "enabled": pick(4, 2) == 0,
    });
    if matches!(protocol, "tcp" | "udp") && pick(5, 2) == 0 {
        rule["local_ports"] = json!(["443", "80,8000-8100", "3389"][pick(6, 3)]);
    }
    if protocol == "icmp" && pick(5, 2) == 0 {
        rule["icmp_types_and_codes"] = json!(["8:*", "0:0"]);
    }
    if pick(7, 2) == 0 {
        let choices = [
            json!(["10.0.0.0/8"]),
            json!(["LocalSubnet", "192.0.2.1-192.0.2.9"]),
            json!(["DNS"]),
        ];
        rule["remote_addresses"] = choices[pick(8, 3)].clone();
    }
    if pick(9, 2) == 0 {
        rule["app_path"] = json!("%ProgramFiles%\\App\\app.exe");
    }
    if pick(10, 3) == 0 {
        rule["service_name"] = json!("Dnscache");
    }
    let profiles = [
        json!(["all"]),
        json!(["domain"]),
        json!(["private", "public"]),
        json!(["domain", "private", "public"]),
    ];
    rule["profiles"] = profiles[pick(11, 4)].clone();
    let interfaces = [
        json!(["all"]),
        json!(["lan", "wireless"]),
        json!(["remote_access"]),
    ];
    rule["interface_types"] = interfaces[pick(12, 3)].clone();
    if direction == "in" && pick(13, 2) == 0 {
        rule["edge_traversal"] = json!(true);
    }
    rule
}

fn groups() -> BTreeMap<String, String> {
    [
        ("win", "aaaaaaaa-0000-0000-0000-000000000001"),
        ("lab", "aaaaaaaa-0000-0000-0000-000000000002"),
    ]
    .into_iter()
    .map(|(n, id)| (n.to_string(), id.to_string()))
    .collect()
}

fn build(family_index: usize, mask: Vec<bool>, seed: Vec<u32>, assign: u8) -> Option<Policy> {
    let family = FAMILIES[family_index % FAMILIES.len()];
    let defs = candidates(family);
    let mut settings = Map::new();
    for (i, def) in defs.iter().enumerate() {
        if mask[i % mask.len()] && def.id != "asr_rule_exclusions" {
            settings.insert(def.id.clone(), value_for(def, &seed[i % seed.len()..]));
        }
    }
    // Per-rule exclusions ride on a rule's mode in Intune: only for rules set.
    if let Some(rules) = settings.get("asr_rules").and_then(Value::as_object) {
        if let Some(rule) = rules.keys().next() {
            settings.insert(
                "asr_rule_exclusions".into(),
                json!([format!("{rule}=C:\\Tools\\x.exe")]),
            );
        }
    }
    // An antivirus policy of exclusions only reads back as an exclusions
    // policy (Intune's exclusions template); give it one antivirus setting.
    if family == Family::Antivirus {
        settings.insert(
            "real_time_protection".into(),
            json!(seed[0].is_multiple_of(2)),
        );
    }
    if settings.is_empty() {
        return None;
    }
    let (include, exclude): (Vec<&str>, Vec<&str>) = match assign % 4 {
        0 => (vec!["all-devices"], vec![]),
        1 => (vec!["win"], vec![]),
        2 => (vec!["win"], vec!["lab"]),
        _ => (vec![], vec![]),
    };
    let doc = json!({
        "name": format!("roundtrip-{}", family.as_str()),
        "description": "generated",
        "family": family,
        "platform": "windows",
        "settings": settings,
        "assignments": {"include": include, "exclude": exclude},
    });
    Some(
        policy_from_json(&doc, Catalog::builtin(), 1, 0)
            .unwrap_or_else(|e| panic!("{doc:#}\n{e:?}")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn import_of_export_is_the_policy(
        family in 0usize..6,
        mask in proptest::collection::vec(any::<bool>(), 1..80),
        seed in proptest::collection::vec(any::<u32>(), 16..32),
        assign in any::<u8>(),
    ) {
        let Some(policy) = build(family, mask, seed, assign) else { return Ok(()) };
        let catalog = Catalog::builtin();
        let ids = groups();
        let exported = export_policy(&policy, catalog, &ids);
        prop_assert!(exported.skipped.is_empty(), "{:?}", exported.skipped);
        let names: BTreeMap<String, String> = ids.iter().map(|(n, id)| (id.clone(), n.clone())).collect();
        let imported = import_policy(&with_assignments(&exported.body, &exported.assign), catalog, &names).unwrap();
        prop_assert_eq!(imported.mapped, imported.total, "{:?}", imported.settings);
        prop_assert_eq!(imported.policies.len(), 1, "{:#?}", imported.policies);
        let mut doc = imported.policies[0].clone();
        doc.as_object_mut().unwrap().remove("kind");
        let back = policy_from_json(&doc, catalog, 1, 0).unwrap();
        prop_assert_eq!(back, policy);
    }
}

#[test]
fn every_setting_with_a_windows_intune_definition_is_exercised() {
    // The generator draws from these; a family without candidates would make
    // the property vacuous for it.
    for family in FAMILIES {
        assert!(!candidates(*family).is_empty(), "{family}");
    }
}

#[test]
fn a_policy_with_every_carried_setting_of_each_family_round_trips() {
    let catalog = Catalog::builtin();
    let ids = groups();
    let names: BTreeMap<String, String> =
        ids.iter().map(|(n, id)| (id.clone(), n.clone())).collect();
    for (i, family) in FAMILIES.iter().enumerate() {
        let policy = build(i, vec![true], (1..20).collect(), 2).unwrap();
        assert_eq!(policy.family, *family);
        // Every candidate is set (per-rule exclusions with their rule).
        assert_eq!(policy.settings.len(), candidates(*family).len(), "{family}");
        let exported = export_policy(&policy, catalog, &ids);
        assert!(exported.skipped.is_empty(), "{:?}", exported.skipped);
        let imported = import_policy(
            &with_assignments(&exported.body, &exported.assign),
            catalog,
            &names,
        )
        .unwrap();
        let mut doc = imported.policies[0].clone();
        doc.as_object_mut().unwrap().remove("kind");
        assert_eq!(
            policy_from_json(&doc, catalog, 1, 0).unwrap(),
            policy,
            "{family}"
        );
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z_{}0-9]{0,12}".prop_map(Value::from),
        Just(json!(
            "device_vendor_msft_policy_config_defender_cloudblocklevel"
        )),
        Just(json!(rampart_core::intune::FIREWALL_RULE_ID)),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("settingInstance".to_string()),
                    Just("settingDefinitionId".to_string()),
                    Just("choiceSettingValue".to_string()),
                    Just("simpleSettingValue".to_string()),
                    Just("groupSettingCollectionValue".to_string()),
                    Just("simpleSettingCollectionValue".to_string()),
                    Just("children".to_string()),
                    Just("value".to_string()),
                    Just("target".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn no_input_makes_import_panic(settings in proptest::collection::vec(arbitrary_json(), 0..6), assignments in arbitrary_json()) {
        let policy = json!({"name": "fuzz", "platforms": "windows10", "settings": settings, "assignments": assignments});
        let _ = import_policy(&policy, Catalog::builtin(), &BTreeMap::new());
        let _ = rampart_core::intune::policies_in(&policy.to_string());
    }
}
