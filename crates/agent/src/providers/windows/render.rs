//! Pure: the settings a device is to have → the registry values Rampart
//! owns for each of them, and the registry's values → what each setting
//! reads back as.
//!
//! A setting owns exactly the values it renders. Where two settings would
//! write the same value — `firewall_enabled` (all profiles) beside
//! `firewall_domain_enabled` (one) — the narrower one wins that profile and
//! the wider one owns only the others, so that they never fight.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::firewall_rule;
use super::map::{self, Enc, RegData, Target};
use crate::providers::Values;

/// One registry value: the key under HKLM, the value name and its data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RegValue {
    pub key: String,
    pub name: String,
    #[serde(flatten)]
    pub data: RegData,
}

impl RegValue {
    fn new(key: impl Into<String>, name: impl Into<String>, data: RegData) -> RegValue {
        RegValue {
            key: key.into(),
            name: name.into(),
            data,
        }
    }

    /// `(key, name)`: what identifies the value in the registry.
    pub fn slot(&self) -> (String, String) {
        (
            self.key.to_ascii_lowercase(),
            self.name.to_ascii_lowercase(),
        )
    }
}

/// What one setting renders to.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    /// The values the setting owns.
    Values(Vec<RegValue>),
    /// The setting cannot be carried; why.
    NotCarried(String),
}

/// Every desired setting the registry provider handles → its values.
pub fn render(desired: &Values) -> BTreeMap<String, Rendered> {
    desired
        .iter()
        .filter_map(|(setting, value)| {
            let target = map::target(setting)?;
            let rendered = match render_one(setting, target, value, desired) {
                Ok(values) => Rendered::Values(values),
                Err(reason) => Rendered::NotCarried(reason),
            };
            Some((setting.clone(), rendered))
        })
        .collect()
}

/// The profiles a profile-wide setting writes, given the per-profile
/// settings also desired.
fn profiles_of(name: &str, desired: &Values) -> Vec<usize> {
    (0..map::PROFILES.len())
        .filter(|i| {
            !desired.keys().any(|other| {
                matches!(map::target(other), Some(Target::Profile(Some(j), "", n, _)) if j == *i && n == name)
            })
        })
        .collect()
}

fn render_one(
    setting: &str,
    target: Target,
    value: &Value,
    desired: &Values,
) -> Result<Vec<RegValue>, String> {
    let strings = |v: &Value| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("{setting}: expected a list, found {v}"))?
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{setting}: expected strings, found {i}"))
            })
            .collect()
    };
    Ok(match target {
        Target::Dword(key, name, enc) => {
            vec![RegValue::new(
                key,
                name,
                RegData::Dword(encode(setting, enc, value)?),
            )]
        }
        Target::Profile(which, sub, name, enc) => {
            let n = encode(setting, enc, value)?;
            let indexes = match which {
                Some(i) => vec![i],
                None => profiles_of(name, desired),
            };
            indexes
                .into_iter()
                .map(|i| RegValue::new(map::profile_key(i, sub), name, RegData::Dword(n)))
                .collect()
        }
        Target::Sz(key, name) => match value {
            Value::String(s) => vec![RegValue::new(key, name, RegData::Sz(s.clone()))],
            other => return Err(format!("{setting}: expected a string, found {other}")),
        },
        Target::ProfileSz(i, sub, name) => match value {
            Value::String(s) => vec![RegValue::new(
                map::profile_key(i, sub),
                name,
                RegData::Sz(s.clone()),
            )],
            other => return Err(format!("{setting}: expected a string, found {other}")),
        },
        Target::List { key, sub, switch } => {
            let items = strings(value)?;
            let mut out: Vec<RegValue> = items
                .iter()
                .map(|i| {
                    RegValue::new(
                        format!(r"{key}\{sub}"),
                        list_item(setting, i),
                        RegData::Sz("0".into()),
                    )
                })
                .collect();
            if !out.is_empty() {
                out.push(RegValue::new(key, switch, RegData::Dword(1)));
            }
            out
        }
        Target::AsrRules => {
            let rules = value
                .as_object()
                .ok_or_else(|| format!("{setting}: expected rule → mode pairs, found {value}"))?;
            let mut out = Vec::new();
            for (guid, mode) in rules {
                let mode = mode.as_str().map_or("off", |m| m);
                // Not configured is the absence of the rule (reference.md).
                if mode == "not_configured" {
                    continue;
                }
                let n = map::ASR_MODES
                    .iter()
                    .find(|(m, _)| *m == mode)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| {
                        format!("asr_rules: {guid}: mode {mode:?} has no registry value")
                    })?;
                out.push(RegValue::new(
                    format!(r"{}\Rules", map::ASR),
                    guid.clone(),
                    RegData::Sz(n.to_string()),
                ));
            }
            if !out.is_empty() {
                out.push(RegValue::new(
                    map::ASR,
                    "ExploitGuard_ASR_Rules",
                    RegData::Dword(1),
                ));
            }
            out
        }
        Target::ThreatSeverity(severity) => {
            let action = value.as_str().unwrap_or_default();
            let n = map::THREAT_ACTIONS
                .iter()
                .find(|(a, _)| *a == action)
                .map(|(_, n)| *n)
                .ok_or_else(|| format!("{setting}: {value} has no registry value"))?;
            vec![
                RegValue::new(
                    format!(r"{}\ThreatSeverityDefaultAction", map::THREATS),
                    severity,
                    RegData::Sz(n.to_string()),
                ),
                RegValue::new(
                    map::THREATS,
                    "Threats_ThreatSeverityDefaultAction",
                    RegData::Dword(1),
                ),
            ]
        }
        Target::FirewallRules => {
            let rules = value
                .as_array()
                .ok_or_else(|| format!("firewall_rules: expected a list, found {value}"))?;
            // All or nothing, like a policy's rule block on Windows.
            let mut out = Vec::new();
            let mut ids = BTreeSet::new();
            for rule in rules {
                let (id, data) = firewall_rule::render(rule)?;
                if !ids.insert(id.to_ascii_lowercase()) {
                    return Err(format!("firewall_rules: two rules are named {id:?}"));
                }
                out.push(RegValue::new(map::FIREWALL_RULES, id, RegData::Sz(data)));
            }
            out
        }
        Target::Unsupported(reason) => return Err(reason.to_string()),
    })
}

/// Extensions are written without their dot, as Defender lists them.
fn list_item(setting: &str, item: &str) -> String {
    if setting == "excluded_extensions" {
        item.trim_start_matches('.').to_string()
    } else {
        item.to_string()
    }
}

fn encode(setting: &str, enc: Enc, value: &Value) -> Result<u32, String> {
    enc.encode(value).map_err(|e| format!("{setting}: {e}"))
}

/// What `setting` reads back as, given the values it owns (`owned`, as
/// written) and what the registry holds for each of them now (`found`,
/// `None` when absent). `written` is the value the setting was given.
///
/// A setting whose values are all as written reads back as `written`.
/// Otherwise: a one-value setting decodes what is there (`null` when it is
/// gone); a list or rule set reads back as the items still intact, so a
/// removed or altered item shows as missing.
pub fn read_back(
    setting: &str,
    written: &Value,
    owned: &[RegValue],
    found: &[Option<RegData>],
) -> Value {
    let intact = |i: usize| owned.get(i).map(|v| &v.data) == found.get(i).and_then(Option::as_ref);
    if (0..owned.len()).all(intact) {
        return written.clone();
    }
    match map::target(setting) {
        Some(Target::Dword(_, _, enc)) => match found.first() {
            Some(Some(RegData::Dword(n))) => enc.decode(*n),
            Some(Some(RegData::Sz(s))) => Value::from(s.clone()),
            _ => Value::Null,
        },
        Some(Target::Sz(..) | Target::ProfileSz(..)) => match found.first() {
            Some(Some(RegData::Sz(s))) => Value::from(s.clone()),
            Some(Some(RegData::Dword(n))) => Value::from(*n),
            _ => Value::Null,
        },
        Some(Target::Profile(_, _, _, enc)) => {
            // All profiles it owns must agree; else say what differs.
            let mut decoded: Vec<Value> = found
                .iter()
                .map(|f| match f {
                    Some(RegData::Dword(n)) => enc.decode(*n),
                    _ => Value::Null,
                })
                .collect();
            decoded.dedup();
            match decoded.as_slice() {
                [one] => one.clone(),
                _ => Value::from(format!(
                    "altered: {}",
                    owned
                        .iter()
                        .zip(found)
                        .map(|(o, f)| format!(
                            r"{}\{} = {}",
                            o.key,
                            o.name,
                            f.as_ref().map_or("absent".to_string(), ToString::to_string)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        Some(Target::ThreatSeverity(_)) => match found.first() {
            Some(Some(RegData::Sz(s))) => s
                .parse::<u32>()
                .ok()
                .and_then(|n| map::THREAT_ACTIONS.iter().find(|(_, v)| *v == n))
                .map_or_else(|| Value::from(s.clone()), |(a, _)| Value::from(*a)),
            _ => Value::Null,
        },
        // Element-wise: the items whose values are intact (the switch
        // must be intact too, else none of them is in force).
        Some(Target::List { .. } | Target::AsrRules | Target::FirewallRules) => {
            let switch_ok = owned
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v.data, RegData::Dword(_)))
                .all(|(i, _)| intact(i));
            let kept: BTreeSet<String> = owned
                .iter()
                .enumerate()
                .filter(|(i, v)| switch_ok && matches!(v.data, RegData::Sz(_)) && intact(*i))
                .map(|(_, v)| v.name.to_ascii_lowercase())
                .collect();
            filter_items(setting, written, &kept)
        }
        _ => Value::Null,
    }
}

/// The items of `written` whose value names are in `kept`.
fn filter_items(setting: &str, written: &Value, kept: &BTreeSet<String>) -> Value {
    match written {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|item| {
                    let name = if setting == "firewall_rules" {
                        firewall_rule::render(item)
                            .map(|(id, _)| id)
                            .unwrap_or_default()
                    } else {
                        list_item(setting, item.as_str().unwrap_or_default())
                    };
                    kept.contains(&name.to_ascii_lowercase())
                })
                .cloned()
                .collect(),
        ),
        Value::Object(rules) => Value::Object(
            rules
                .iter()
                .filter(|(guid, mode)| {
                    mode.as_str() == Some("not_configured")
                        || kept.contains(&guid.to_ascii_lowercase())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    fn owned(r: &Rendered) -> &[RegValue] {
        match r {
            Rendered::Values(v) => v,
            Rendered::NotCarried(why) => panic!("not carried: {why}"),
        }
    }

    #[test]
    fn a_policy_of_every_family_renders_to_its_group_policy_values() {
        let desired = values(&[
            ("real_time_protection", json!(true)),
            ("cloud_block_level", json!("high")),
            ("excluded_extensions", json!([".log", "tmp"])),
            (
                "asr_rules",
                json!({"d4f940ab-401b-4efc-aadc-ad5f3c50688a": "block", "9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2": "not_configured"}),
            ),
            ("sample_sharing", json!("all")),
            ("edr_device_tag", json!("finance")),
            ("firewall_enabled", json!(true)),
            ("firewall_public_enabled", json!(false)),
            (
                "firewall_rules",
                json!([{"name": "web", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "443", "enabled": true}]),
            ),
            ("max_file_size_mb", json!(100)),
            (
                "firewall_public_log_file_path",
                json!(r"%systemroot%\system32\LogFiles\Firewall\public.log"),
            ),
        ]);
        let r = render(&desired);
        assert!(!r.contains_key("max_file_size_mb"), "not a Windows setting");
        assert_eq!(
            owned(&r["firewall_public_log_file_path"]),
            [RegValue::new(
                r"SOFTWARE\Policies\Microsoft\WindowsFirewall\PublicProfile\Logging",
                "LogFilePath",
                RegData::Sz(r"%systemroot%\system32\LogFiles\Firewall\public.log".into())
            )]
        );
        let d = r"SOFTWARE\Policies\Microsoft\Windows Defender";
        assert_eq!(
            owned(&r["real_time_protection"]),
            [RegValue::new(
                format!(r"{d}\Real-Time Protection"),
                "DisableRealtimeMonitoring",
                RegData::Dword(0)
            )]
        );
        assert_eq!(
            owned(&r["cloud_block_level"]),
            [RegValue::new(
                format!(r"{d}\MpEngine"),
                "MpCloudBlockLevel",
                RegData::Dword(2)
            )]
        );
        assert_eq!(
            owned(&r["excluded_extensions"]),
            [
                RegValue::new(
                    format!(r"{d}\Exclusions\Extensions"),
                    "log",
                    RegData::Sz("0".into())
                ),
                RegValue::new(
                    format!(r"{d}\Exclusions\Extensions"),
                    "tmp",
                    RegData::Sz("0".into())
                ),
                RegValue::new(
                    format!(r"{d}\Exclusions"),
                    "Exclusions_Extensions",
                    RegData::Dword(1)
                ),
            ]
        );
        let asr = format!(r"{d}\Windows Defender Exploit Guard\ASR");
        assert_eq!(
            owned(&r["asr_rules"]),
            [
                RegValue::new(
                    format!(r"{asr}\Rules"),
                    "d4f940ab-401b-4efc-aadc-ad5f3c50688a",
                    RegData::Sz("1".into())
                ),
                RegValue::new(asr.clone(), "ExploitGuard_ASR_Rules", RegData::Dword(1)),
            ]
        );
        let atp = r"SOFTWARE\Policies\Microsoft\Windows Advanced Threat Protection";
        assert_eq!(
            owned(&r["sample_sharing"]),
            [RegValue::new(
                atp,
                "AllowSampleCollection",
                RegData::Dword(1)
            )]
        );
        assert_eq!(
            owned(&r["edr_device_tag"]),
            [RegValue::new(
                format!(r"{atp}\DeviceTagging"),
                "Group",
                RegData::Sz("finance".into())
            )]
        );
        let fw = r"SOFTWARE\Policies\Microsoft\WindowsFirewall";
        // The public profile belongs to the narrower setting.
        assert_eq!(
            owned(&r["firewall_enabled"]),
            [
                RegValue::new(
                    format!(r"{fw}\DomainProfile"),
                    "EnableFirewall",
                    RegData::Dword(1)
                ),
                RegValue::new(
                    format!(r"{fw}\PrivateProfile"),
                    "EnableFirewall",
                    RegData::Dword(1)
                ),
            ]
        );
        assert_eq!(
            owned(&r["firewall_public_enabled"]),
            [RegValue::new(
                format!(r"{fw}\PublicProfile"),
                "EnableFirewall",
                RegData::Dword(0)
            )]
        );
        assert_eq!(
            owned(&r["firewall_rules"]),
            [RegValue::new(
                format!(r"{fw}\FirewallRules"),
                "Rampart-web",
                RegData::Sz(
                    "v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=443|Name=web|".into()
                )
            )]
        );
    }

    #[test]
    fn what_cannot_be_carried_says_why() {
        let r = render(&values(&[
            ("sample_sharing", json!("safe")),
            ("tamper_protection", json!(true)),
            (
                "firewall_rules",
                json!([{"name": "a|b", "direction": "in", "action": "allow"}]),
            ),
        ]));
        for s in ["sample_sharing", "tamper_protection", "firewall_rules"] {
            assert!(matches!(&r[s], Rendered::NotCarried(_)), "{s}");
        }
    }

    #[test]
    fn read_back_of_intact_altered_and_missing_values() {
        let desired = values(&[
            ("scan_archives", json!(true)),
            ("excluded_paths", json!([r"C:\a", r"C:\b"])),
            ("default_inbound_action", json!("block")),
        ]);
        let r = render(&desired);
        let o = owned(&r["scan_archives"]);
        let as_written: Vec<_> = o.iter().map(|v| Some(v.data.clone())).collect();
        assert_eq!(
            read_back("scan_archives", &json!(true), o, &as_written),
            json!(true)
        );
        assert_eq!(
            read_back("scan_archives", &json!(true), o, &[Some(RegData::Dword(1))]),
            json!(false)
        );
        assert_eq!(
            read_back("scan_archives", &json!(true), o, &[None]),
            Value::Null
        );

        let o = owned(&r["excluded_paths"]);
        let mut found: Vec<_> = o.iter().map(|v| Some(v.data.clone())).collect();
        found[1] = None;
        assert_eq!(
            read_back("excluded_paths", &desired["excluded_paths"], o, &found),
            json!([r"C:\a"])
        );
        let last = found.len() - 1;
        found[last] = Some(RegData::Dword(0));
        assert_eq!(
            read_back("excluded_paths", &desired["excluded_paths"], o, &found),
            json!([])
        );

        let o = owned(&r["default_inbound_action"]);
        assert_eq!(o.len(), 3);
        let found = [
            Some(RegData::Dword(1)),
            Some(RegData::Dword(0)),
            Some(RegData::Dword(1)),
        ];
        let back = read_back("default_inbound_action", &json!("block"), o, &found);
        assert!(
            back.as_str()
                .unwrap()
                .contains(r"PrivateProfile\DefaultInboundAction = REG_DWORD 0"),
            "{back}"
        );
    }
}
