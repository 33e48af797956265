//! Resolution: which settings one device gets, which merge and which
//! conflict (DESIGN.md §4).
//!
//! `resolve` is a pure, deterministic function of its inputs. Policies are
//! visited in name order and every output list is sorted, so the order in
//! which policies or groups are passed never changes the result or its
//! digest — the property the tests check with random permutations.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, MergeStrategy, SettingDefinition, SettingKind};
use crate::documents::memberships;
use crate::model::{
    ConflictPolicy, Device, Enforcement, Group, Policy, TenantSettings, ALL_DEVICES,
};
use crate::value::WINDOWS_ONLY_RULE_FIELDS;

/// What one device gets.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Resolution {
    pub device: String,
    /// False when the tenant's enforcement scope leaves the device out.
    pub managed: bool,
    /// Why the device is not managed.
    pub reason: Option<String>,
    /// Effective settings, by setting id.
    pub settings: Vec<EffectiveSetting>,
    pub conflicts: Vec<Conflict>,
    pub not_applicable: Vec<NotApplicable>,
    /// Every policy that targets the device, with the version resolved:
    /// the provenance of each value's sources.
    pub policy_versions: BTreeMap<String, u64>,
    /// Hex SHA-256 of everything above but the device name; what an agent
    /// compares to know whether its policy is current.
    pub digest: String,
}

/// One applied setting with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EffectiveSetting {
    pub setting: String,
    pub value: Value,
    /// Names of the policies the value came from.
    pub sources: Vec<String>,
    /// For `union` and `per_key` settings: each item or entry with its own
    /// sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Entry>,
    /// Values that lost under `most_secure_wins`, with their policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Superseded>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Entry {
    /// The list item, ASR rule id or firewall rule name.
    pub key: String,
    pub value: Value,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Superseded {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub policy: String,
    pub value: Value,
}

/// Policies that give one setting (or one key of it) different values; the
/// setting or key is held back.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Conflict {
    pub setting: String,
    /// The ASR rule id or firewall rule name for `per_key` settings.
    pub key: Option<String>,
    /// Policy names, sorted; `values[i]` is what `policies[i]` asks for.
    pub policies: Vec<String>,
    pub values: Vec<Value>,
}

/// A configured setting (or entry) this device cannot carry.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct NotApplicable {
    pub setting: String,
    pub key: Option<String>,
    pub policies: Vec<String>,
    pub reason: String,
}

/// Why a device is outside the enforcement scope, if it is.
pub fn scope_exclusion(device: &Device, tenant: &TenantSettings) -> Option<String> {
    match tenant.enforcement_for(device.os) {
        Enforcement::All => None,
        Enforcement::Off => Some(format!(
            "security management is off for {} in the tenant's enforcement scope",
            device.os
        )),
        Enforcement::Tagged if device.has_tag(&tenant.pilot_tag) => None,
        Enforcement::Tagged => Some(format!(
            "the tenant manages only {} devices tagged {:?} (pilot mode) and this device lacks the tag",
            device.os, tenant.pilot_tag
        )),
    }
}

/// Whether `policy` targets `device`, given the device's group names.
pub fn targets(policy: &Policy, device: &Device, member_of: &BTreeSet<&str>) -> bool {
    let a = &policy.assignments;
    policy.platform == device.os
        && a.include
            .iter()
            .any(|g| g == ALL_DEVICES || member_of.contains(g.as_str()))
        && !a.exclude.iter().any(|g| member_of.contains(g.as_str()))
}

/// One policy's value for one setting.
struct Contribution<'a> {
    policy: &'a Policy,
    value: &'a Value,
}

/// Resolves the effective policy of one device.
pub fn resolve(
    device: &Device,
    groups: &[Group],
    policies: &[Policy],
    tenant: &TenantSettings,
    catalog: &Catalog,
) -> Resolution {
    let mut out = Resolution {
        device: device.name.clone(),
        managed: true,
        reason: None,
        settings: Vec::new(),
        conflicts: Vec::new(),
        not_applicable: Vec::new(),
        policy_versions: BTreeMap::new(),
        digest: String::new(),
    };
    if let Some(reason) = scope_exclusion(device, tenant) {
        out.managed = false;
        out.reason = Some(reason);
        out.digest = digest(&out);
        return out;
    }

    let member_of = memberships(device, groups);
    let mut applicable: Vec<&Policy> = policies
        .iter()
        .filter(|p| targets(p, device, &member_of))
        .collect();
    applicable.sort_by(|a, b| a.name.cmp(&b.name));

    let mut by_setting: BTreeMap<&str, Vec<Contribution<'_>>> = BTreeMap::new();
    for policy in &applicable {
        out.policy_versions
            .insert(policy.name.clone(), policy.version);
        for (id, value) in &policy.settings {
            by_setting
                .entry(id.as_str())
                .or_default()
                .push(Contribution { policy, value });
        }
    }

    for (id, contributions) in by_setting {
        let Some(def) = catalog.get(id) else {
            // A stored policy may name a setting a newer catalog dropped;
            // say so rather than silently skipping it.
            out.not_applicable.push(NotApplicable {
                setting: id.to_string(),
                key: None,
                policies: names(&contributions),
                reason: "the setting is not in this server's catalog".into(),
            });
            continue;
        };
        if !def.device_types.is_empty()
            && !def
                .device_types
                .iter()
                .any(|t| t == device.device_type.as_str())
        {
            out.not_applicable.push(NotApplicable {
                setting: id.to_string(),
                key: None,
                policies: names(&contributions),
                reason: format!("applies to {} devices only", def.device_types.join(" and ")),
            });
            continue;
        }
        match def.merge {
            MergeStrategy::Scalar => resolve_scalar(def, &contributions, tenant, &mut out),
            MergeStrategy::Union => resolve_union(def, &contributions, &mut out),
            MergeStrategy::PerKey => resolve_per_key(def, &contributions, device, tenant, &mut out),
        }
    }

    out.conflicts
        .sort_by(|a, b| (&a.setting, &a.key).cmp(&(&b.setting, &b.key)));
    out.not_applicable
        .sort_by(|a, b| (&a.setting, &a.key).cmp(&(&b.setting, &b.key)));
    out.digest = digest(&out);
    out
}

fn names(contributions: &[Contribution<'_>]) -> Vec<String> {
    let set: BTreeSet<&str> = contributions
        .iter()
        .map(|c| c.policy.name.as_str())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Distinct values, each with the policies that ask for it, in policy order.
fn group_values<'a>(
    contributions: &[(&'a Policy, &'a Value)],
) -> Vec<(&'a Value, Vec<&'a Policy>)> {
    let mut groups: Vec<(&Value, Vec<&Policy>)> = Vec::new();
    for (policy, value) in contributions {
        match groups.iter_mut().find(|(v, _)| v == value) {
            Some((_, ps)) => ps.push(policy),
            None => groups.push((value, vec![policy])),
        }
    }
    groups
}

/// What to do with a set of contributions to one scalar or one key.
enum Outcome<'a> {
    Agreed(&'a Value, Vec<&'a Policy>),
    Conflict(Vec<(&'a Policy, &'a Value)>),
    Won {
        value: &'a Value,
        winners: Vec<&'a Policy>,
        losers: Vec<(&'a Policy, &'a Value)>,
    },
}

/// Decides one scalar or one key. `rank` orders values by security for
/// `most_secure_wins`; ties go to the most recently modified policy, then to
/// the name, so the choice is deterministic.
fn decide<'a>(
    contributions: Vec<(&'a Policy, &'a Value)>,
    tenant: &TenantSettings,
    rank: impl Fn(&Value) -> usize,
) -> Outcome<'a> {
    let groups = group_values(&contributions);
    if groups.len() == 1 {
        let (value, policies) = groups
            .into_iter()
            .next()
            .map_or((&Value::Null, Vec::new()), |g| g);
        return Outcome::Agreed(value, policies);
    }
    if tenant.conflict_policy == ConflictPolicy::Report {
        return Outcome::Conflict(contributions);
    }
    let best = groups.iter().max_by(|(va, pa), (vb, pb)| {
        let newest = |ps: &Vec<&Policy>| ps.iter().map(|p| p.modified_at).max().unwrap_or(i64::MIN);
        let first_name =
            |ps: &Vec<&Policy>| ps.iter().map(|p| p.name.clone()).min().unwrap_or_default();
        rank(va)
            .cmp(&rank(vb))
            .then(newest(pa).cmp(&newest(pb)))
            // Reversed so that, all else equal, the alphabetically first policy wins.
            .then(first_name(pb).cmp(&first_name(pa)))
    });
    let Some((value, winners)) = best.map(|(v, ps)| (*v, ps.clone())) else {
        return Outcome::Conflict(contributions);
    };
    let losers = contributions
        .into_iter()
        .filter(|(_, v)| *v != value)
        .collect();
    Outcome::Won {
        value,
        winners,
        losers,
    }
}

fn policy_names(policies: &[&Policy]) -> Vec<String> {
    let mut v: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
    v.sort();
    v.dedup();
    v
}

fn conflict(setting: &str, key: Option<String>, mut pairs: Vec<(&Policy, &Value)>) -> Conflict {
    pairs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Conflict {
        setting: setting.to_string(),
        key,
        policies: pairs.iter().map(|(p, _)| p.name.clone()).collect(),
        values: pairs.iter().map(|(_, v)| (*v).clone()).collect(),
    }
}

fn resolve_scalar(
    def: &SettingDefinition,
    contributions: &[Contribution<'_>],
    tenant: &TenantSettings,
    out: &mut Resolution,
) {
    let pairs = contributions.iter().map(|c| (c.policy, c.value)).collect();
    match decide(pairs, tenant, |v| def.security_rank(v)) {
        Outcome::Agreed(value, policies) => out.settings.push(EffectiveSetting {
            setting: def.id.clone(),
            value: value.clone(),
            sources: policy_names(&policies),
            entries: Vec::new(),
            superseded: Vec::new(),
        }),
        Outcome::Conflict(pairs) => out.conflicts.push(conflict(&def.id, None, pairs)),
        Outcome::Won {
            value,
            winners,
            losers,
        } => out.settings.push(EffectiveSetting {
            setting: def.id.clone(),
            value: value.clone(),
            sources: policy_names(&winners),
            entries: Vec::new(),
            superseded: superseded(None, losers),
        }),
    }
}

fn superseded(key: Option<&str>, mut losers: Vec<(&Policy, &Value)>) -> Vec<Superseded> {
    losers.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    losers
        .into_iter()
        .map(|(p, v)| Superseded {
            key: key.map(str::to_string),
            policy: p.name.clone(),
            value: v.clone(),
        })
        .collect()
}

fn resolve_union(
    def: &SettingDefinition,
    contributions: &[Contribution<'_>],
    out: &mut Resolution,
) {
    let mut items: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for c in contributions {
        for item in c.value.as_array().into_iter().flatten() {
            if let Some(text) = item.as_str() {
                items
                    .entry(text.to_string())
                    .or_default()
                    .insert(c.policy.name.as_str());
            }
        }
    }
    if items.is_empty() {
        return;
    }
    let entries: Vec<Entry> = items
        .iter()
        .map(|(item, sources)| Entry {
            key: item.clone(),
            value: Value::from(item.as_str()),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    out.settings.push(EffectiveSetting {
        setting: def.id.clone(),
        value: Value::from(items.keys().cloned().collect::<Vec<_>>()),
        sources: names(contributions),
        entries,
        superseded: Vec::new(),
    });
}

/// Splits a per-key setting's value into (key, entry value) pairs.
fn keyed_entries(kind: SettingKind, value: &Value) -> Vec<(String, &Value)> {
    match kind {
        SettingKind::AsrRules => value
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect())
            .unwrap_or_default(),
        _ => value
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| Some((r.get("name")?.as_str()?.to_string(), r)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Why a firewall rule cannot be carried on a non-Windows device, if so.
fn rule_not_applicable(rule: &Value, device: &Device) -> Option<String> {
    if device.os == crate::model::Platform::Windows {
        return None;
    }
    let fields: Vec<&str> = WINDOWS_ONLY_RULE_FIELDS
        .iter()
        .copied()
        .filter(|f| {
            rule.get(*f)
                .is_some_and(|v| !v.is_null() && v != &Value::Array(Vec::new()))
        })
        .collect();
    if !fields.is_empty() {
        return Some(format!(
            "{} cannot express the rule field(s) {}; the rule is not applied",
            device.os,
            fields.join(", ")
        ));
    }
    // Address keywords (LocalSubnet, DNS, …) and ranges are Windows Firewall
    // constructs; elsewhere only CIDR blocks are carried.
    let windows_addresses: Vec<&str> = ["local_addresses", "remote_addresses"]
        .iter()
        .filter_map(|f| rule.get(*f).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .filter(|a| crate::value::parse_cidr(a).is_err())
        .collect();
    if !windows_addresses.is_empty() {
        return Some(format!(
            "{} cannot express the address(es) {}; the rule is not applied",
            device.os,
            windows_addresses.join(", ")
        ));
    }
    let protocol = rule
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("any");
    protocol.parse::<u8>().is_ok().then(|| {
        format!(
            "{} cannot filter on IP protocol number {protocol}; the rule is not applied",
            device.os
        )
    })
}

fn resolve_per_key(
    def: &SettingDefinition,
    contributions: &[Contribution<'_>],
    device: &Device,
    tenant: &TenantSettings,
    out: &mut Resolution,
) {
    let mut by_key: BTreeMap<String, Vec<(&Policy, &Value)>> = BTreeMap::new();
    for c in contributions {
        for (key, value) in keyed_entries(def.kind, c.value) {
            by_key.entry(key).or_default().push((c.policy, value));
        }
    }
    let rank = |v: &Value| match def.kind {
        SettingKind::FirewallRules => v.get("action").map_or(0, |a| def.security_rank(a)),
        _ => def.security_rank(v),
    };
    let mut entries = Vec::new();
    let mut lost = Vec::new();
    for (key, pairs) in by_key {
        let key_def = def.key(&key);
        let not_for_type = key_def.is_some_and(|k| {
            !k.device_types.is_empty()
                && !k
                    .device_types
                    .iter()
                    .any(|t| t == device.device_type.as_str())
        });
        if not_for_type {
            let types = key_def
                .map(|k| k.device_types.join(" and "))
                .unwrap_or_default();
            out.not_applicable.push(NotApplicable {
                setting: def.id.clone(),
                key: Some(key),
                policies: policy_names(&pairs.iter().map(|(p, _)| *p).collect::<Vec<_>>()),
                reason: format!("the rule applies to {types} devices only"),
            });
            continue;
        }
        match decide(pairs, tenant, rank) {
            Outcome::Agreed(value, policies) => entries.push((key, value, policies)),
            Outcome::Conflict(pairs) => out.conflicts.push(conflict(&def.id, Some(key), pairs)),
            Outcome::Won {
                value,
                winners,
                losers,
            } => {
                lost.extend(superseded(Some(&key), losers));
                entries.push((key, value, winners));
            }
        }
    }
    let mut applied = Vec::new();
    for (key, value, policies) in entries {
        if def.kind == SettingKind::FirewallRules {
            if let Some(reason) = rule_not_applicable(value, device) {
                out.not_applicable.push(NotApplicable {
                    setting: def.id.clone(),
                    key: Some(key),
                    policies: policy_names(&policies),
                    reason,
                });
                continue;
            }
        }
        applied.push(Entry {
            key,
            value: value.clone(),
            sources: policy_names(&policies),
        });
    }
    if applied.is_empty() {
        return;
    }
    let value = match def.kind {
        SettingKind::AsrRules => Value::Object(
            applied
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
        ),
        _ => Value::Array(applied.iter().map(|e| e.value.clone()).collect()),
    };
    let sources: BTreeSet<String> = applied
        .iter()
        .flat_map(|e| e.sources.iter().cloned())
        .collect();
    out.settings.push(EffectiveSetting {
        setting: def.id.clone(),
        value,
        sources: sources.into_iter().collect(),
        entries: applied,
        superseded: lost,
    });
}

/// Hex SHA-256 over the canonical JSON of the resolution, device name and
/// digest left out. serde_json's maps are ordered, so the encoding is stable.
fn digest(r: &Resolution) -> String {
    let body = serde_json::json!({
        "managed": r.managed,
        "reason": r.reason,
        "settings": r.settings,
        "conflicts": r.conflicts,
        "not_applicable": r.not_applicable,
        "policy_versions": r.policy_versions,
    });
    let hash = Sha256::digest(body.to_string().as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The resolution of a device Rampart does not manage for a reason outside
/// the engine's inputs (another management authority, say): no settings, the
/// reason, and a digest like any other.
pub fn unmanaged(device: &str, reason: String) -> Resolution {
    let mut out = Resolution {
        device: device.to_string(),
        managed: false,
        reason: Some(reason),
        settings: Vec::new(),
        conflicts: Vec::new(),
        not_applicable: Vec::new(),
        policy_versions: BTreeMap::new(),
        digest: String::new(),
    };
    out.digest = digest(&out);
    out
}
