//! Microsoft Intune settings catalog policies (Graph
//! `deviceManagement/configurationPolicies`) to Rampart policies and back.
//!
//! Import flattens a policy's settings tree (choice, simple, collection and
//! group collection instances), maps each setting definition id and choice
//! option through the catalog's `intune` definitions, places every mapped
//! setting in a Rampart family (splitting a policy that mixes families) and
//! reports every setting it could not map, with the reason. Export is the
//! reverse, for every setting that has an Intune definition.
//!
//! Pure: callers pass parsed JSON in and write the results themselves.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, IntuneMapping, SettingDefinition, SettingKind};
use crate::model::{Family, Platform, Policy, ALL_DEVICES};
use crate::validate::policy_from_json;
use crate::value::{check_value, parse_protocol};

/// Intune's setting definition id of one firewall rule (a group collection;
/// each item is one rule).
pub const FIREWALL_RULE_ID: &str = "vendor_msft_firewall_mdmstore_firewallrules_{firewallrulename}";
/// Suffix of an ASR rule's per-rule exclusions in Intune.
const PER_RULE_EXCLUSIONS: &str = "_perruleexclusions";
/// Intune's "all profiles" value of a firewall rule's profile bitmask.
const ALL_PROFILES: u64 = 0x7FFF_FFFF;

/// Why a whole Intune policy cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not an Intune configuration policy: {0}")]
    NotAPolicy(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

fn field_error(field: &str, message: impl Into<String>) -> ImportError {
    ImportError::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The policies found in one export file: one policy object, a JSON array of
/// them, or a Graph list response (`{"value": [...]}`). A UTF-8 byte-order
/// mark is ignored.
pub fn policies_in(text: &str) -> Result<Vec<Value>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ImportError::NotAPolicy(format!("not JSON ({e})")))?;
    let list = match value {
        Value::Array(items) => items,
        Value::Object(ref obj) if obj.get("value").is_some_and(Value::is_array) => obj
            .get("value")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Value::Object(_) => vec![value],
        other => {
            return Err(ImportError::NotAPolicy(format!(
                "expected a policy object or a list of them, found {}",
                crate::value::describe(&other)
            )))
        }
    };
    if list.is_empty() {
        return Err(ImportError::NotAPolicy("holds no policy".into()));
    }
    for (i, p) in list.iter().enumerate() {
        let ok = p.as_object().is_some_and(|o| {
            o.get("settings").is_some_and(Value::is_array)
                && (o.contains_key("platforms") || o.contains_key("name"))
        });
        if !ok {
            return Err(ImportError::NotAPolicy(format!(
                "item {i} has no `settings` list and `platforms`; export policies with \
                 `$expand=settings,assignments`"
            )));
        }
    }
    Ok(list)
}

/// What happened to one Intune setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingOutcome {
    /// The Intune setting definition id (for a firewall rule, its name).
    pub intune_id: String,
    /// The Rampart setting it became, when mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// Why it was not mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The result of importing one Intune policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imported {
    /// The Intune policy's name.
    pub source: String,
    /// Rampart policy documents (`kind: Policy` objects), one per family.
    pub policies: Vec<Value>,
    /// Group names the assignments use (besides all-devices).
    pub groups: Vec<String>,
    /// Every setting, mapped or not.
    pub settings: Vec<SettingOutcome>,
    /// Assignment findings: dropped filters, refused user targets, unnamed groups.
    pub warnings: Vec<String>,
    pub mapped: usize,
    pub total: usize,
}

impl Imported {
    /// Mapped settings as a percentage of all (100 for an empty policy).
    pub fn coverage(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.mapped as f64 * 100.0 / self.total as f64
        }
    }
}

/// Intune's platform string to Rampart's.
pub fn platform_from_intune(text: &str) -> Option<Platform> {
    let found: BTreeSet<Platform> = text
        .split(',')
        .filter_map(|p| match p.trim().to_ascii_lowercase().as_str() {
            "windows10" | "windows" | "windows10x" => Some(Platform::Windows),
            "macos" => Some(Platform::Macos),
            "linux" => Some(Platform::Linux),
            _ => None,
        })
        .collect();
    match found.len() {
        1 => found.into_iter().next(),
        _ => None,
    }
}

/// Rampart's platform to Intune's.
pub fn platform_to_intune(platform: Platform) -> &'static str {
    match platform {
        Platform::Windows => "windows10",
        Platform::Macos => "macOS",
        Platform::Linux => "linux",
    }
}

/// The Rampart families an Intune template family holds, most specific first.
fn families_of_template(template_family: &str) -> Vec<Family> {
    match template_family {
        "endpointSecurityAntivirus" => vec![Family::AntivirusExclusions, Family::Antivirus],
        "endpointSecurityFirewall" => vec![Family::FirewallRules, Family::Firewall],
        "endpointSecurityEndpointDetectionAndResponse" => vec![Family::Edr],
        "endpointSecurityAttackSurfaceReduction"
        | "endpointSecurityAttackSurfaceReductionRules" => vec![Family::Asr],
        // A settings catalog policy (`none`) or a template Rampart does not
        // know: every family, the narrower of two overlapping ones first, so
        // that the family taking the most settings wins.
        _ => vec![
            Family::AntivirusExclusions,
            Family::Antivirus,
            Family::FirewallRules,
            Family::Firewall,
            Family::Asr,
            Family::Edr,
        ],
    }
}

/// The Intune template family of a Rampart family, for export.
pub fn template_family(family: Family) -> &'static str {
    match family {
        Family::Antivirus | Family::AntivirusExclusions => "endpointSecurityAntivirus",
        Family::Firewall | Family::FirewallRules => "endpointSecurityFirewall",
        Family::Edr => "endpointSecurityEndpointDetectionAndResponse",
        Family::Asr => "endpointSecurityAttackSurfaceReduction",
    }
}

/// One setting instance reduced to what mapping needs.
#[derive(Debug, Clone)]
enum Leaf {
    Choice(String),
    Simple(Value),
    SimpleList(Vec<Value>),
    ChoiceList(Vec<String>),
}

fn instance_id(inst: &Value) -> String {
    inst.get("settingDefinitionId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn children_of(v: &Value) -> Vec<&Value> {
    v.get("children")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

/// Group items of a group collection (or the one group of a group setting).
fn group_items(inst: &Value) -> Option<Vec<&Value>> {
    if let Some(items) = inst
        .get("groupSettingCollectionValue")
        .and_then(Value::as_array)
    {
        return Some(items.iter().collect());
    }
    inst.get("groupSettingValue").map(|g| vec![g])
}

/// The instance's own value, and the dependent children of its choices.
fn leaf(inst: &Value) -> Option<(Leaf, Vec<&Value>)> {
    if let Some(c) = inst.get("choiceSettingValue") {
        let value = c.get("value").and_then(Value::as_str)?.to_ascii_lowercase();
        return Some((Leaf::Choice(value), children_of(c)));
    }
    if let Some(s) = inst.get("simpleSettingValue") {
        return Some((Leaf::Simple(s.get("value")?.clone()), Vec::new()));
    }
    if let Some(items) = inst
        .get("simpleSettingCollectionValue")
        .and_then(Value::as_array)
    {
        let values = items
            .iter()
            .filter_map(|i| i.get("value").cloned())
            .collect();
        return Some((Leaf::SimpleList(values), Vec::new()));
    }
    if let Some(items) = inst
        .get("choiceSettingCollectionValue")
        .and_then(Value::as_array)
    {
        let mut children = Vec::new();
        let mut values = Vec::new();
        for i in items {
            if let Some(v) = i.get("value").and_then(Value::as_str) {
                values.push(v.to_ascii_lowercase());
            }
            children.extend(children_of(i));
        }
        return Some((Leaf::ChoiceList(values), children));
    }
    None
}

/// The option of a choice value `<id>_<option>`.
fn option_of<'a>(id: &str, value: &'a str) -> Option<&'a str> {
    value
        .strip_prefix(id)
        .and_then(|rest| rest.strip_prefix('_'))
}

/// A leaf's value as the Rampart setting's value, before checking.
fn leaf_value(def: &SettingDefinition, m: &IntuneMapping, leaf: &Leaf) -> Result<Value, String> {
    let choice = |v: &str| -> Result<Value, String> {
        let option = option_of(&m.id, v)
            .ok_or_else(|| format!("choice {v:?} is not an option of {}", m.id))?;
        m.options.get(option).cloned().ok_or_else(|| {
            format!(
                "option {option:?} has no Rampart equivalent (known: {})",
                m.options.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    };
    match (def.kind, leaf) {
        (SettingKind::Bool | SettingKind::Enum, Leaf::Choice(v)) => choice(v),
        (SettingKind::Int, Leaf::Simple(v)) => match v {
            Value::Number(_) => Ok(v.clone()),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{s:?} is not a whole number")),
            other => Err(format!(
                "expected a number, found {}",
                crate::value::describe(other)
            )),
        },
        (SettingKind::String, Leaf::Simple(v)) => Ok(v.clone()),
        (SettingKind::StringList, Leaf::SimpleList(items)) => Ok(Value::Array(items.clone())),
        (SettingKind::StringList, Leaf::ChoiceList(items)) => items
            .iter()
            .map(|v| choice(v))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (kind, _) => Err(format!(
            "the Intune value's shape does not fit a setting of type {kind:?}"
        )),
    }
}

/// Settings found so far, by family placement later.
#[derive(Default)]
struct Found {
    values: BTreeMap<String, Value>,
    outcomes: Vec<SettingOutcome>,
}

impl Found {
    fn mapped(&mut self, intune_id: &str, setting: &str) {
        self.outcomes.push(SettingOutcome {
            intune_id: intune_id.to_string(),
            setting: Some(setting.to_string()),
            reason: None,
        });
    }

    fn unmapped(&mut self, intune_id: &str, reason: impl Into<String>) {
        self.outcomes.push(SettingOutcome {
            intune_id: intune_id.to_string(),
            setting: None,
            reason: Some(reason.into()),
        });
    }
}

/// Imports one Intune policy object. `group_names` maps Entra group ids to
/// Rampart group names.
pub fn import_policy(
    policy: &Value,
    catalog: &Catalog,
    group_names: &BTreeMap<String, String>,
) -> Result<Imported, ImportError> {
    let obj = policy
        .as_object()
        .ok_or_else(|| ImportError::NotAPolicy("expected a policy object".into()))?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| field_error("name", "is required"))?
        .to_string();
    let platforms = obj
        .get("platforms")
        .and_then(Value::as_str)
        .ok_or_else(|| field_error("platforms", "is required"))?;
    let platform = platform_from_intune(platforms).ok_or_else(|| {
        field_error(
            "platforms",
            format!("{platforms:?} is not one of windows10, macOS, linux"),
        )
    })?;
    let settings = obj
        .get("settings")
        .and_then(Value::as_array)
        .ok_or_else(|| field_error("settings", "expected a list of settings"))?;

    let mut found = Found::default();
    for (i, s) in settings.iter().enumerate() {
        let inst = s
            .get("settingInstance")
            .ok_or_else(|| field_error(&format!("settings[{i}]"), "has no settingInstance"))?;
        import_instance(inst, catalog, platform, &mut found);
    }

    let template_family = obj
        .get("templateReference")
        .and_then(|t| t.get("templateFamily"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let placed = place_in_families(
        &found.values,
        catalog,
        &families_of_template(template_family),
    );

    let mut warnings = Vec::new();
    let (include, exclude) = assignments(obj, group_names, &mut warnings);
    let groups: BTreeSet<String> = include
        .iter()
        .chain(&exclude)
        .filter(|g| *g != ALL_DEVICES)
        .cloned()
        .collect();

    let description = obj
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    let several = placed.len() > 1;
    let mut policies = Vec::new();
    for (family, settings) in placed {
        let policy_name = if several {
            format!("{name}-{}", family.as_str().replace('_', "-"))
        } else {
            name.clone()
        };
        let mut assigned = json!({"include": include});
        if !exclude.is_empty() {
            assigned["exclude"] = json!(exclude);
        }
        let doc = json!({
            "kind": "Policy",
            "name": policy_name,
            "description": description,
            "family": family,
            "platform": platform,
            "settings": settings,
            "assignments": assigned,
        });
        // Every value was checked one by one; this checks the whole policy
        // (name, description, assignments) so that nothing written is refused
        // later by `rampart plan`.
        let mut checked = doc.clone();
        if let Some(o) = checked.as_object_mut() {
            o.remove("kind");
        }
        if let Err(errors) = policy_from_json(&checked, catalog, 1, 0) {
            let first = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(field_error(
                "name",
                format!("policy {policy_name:?}: {first}"),
            ));
        }
        policies.push(doc);
    }

    let mapped = found
        .outcomes
        .iter()
        .filter(|o| o.setting.is_some())
        .count();
    Ok(Imported {
        source: name,
        total: found.outcomes.len(),
        mapped,
        settings: found.outcomes,
        policies,
        groups: groups.into_iter().collect(),
        warnings,
    })
}

fn import_instance(inst: &Value, catalog: &Catalog, platform: Platform, found: &mut Found) {
    let id = instance_id(inst);
    if id.is_empty() {
        found.unmapped(
            "(no settingDefinitionId)",
            "the setting instance names no definition",
        );
        return;
    }
    let Some((def, mapping)) = catalog.by_intune_id(&id, platform) else {
        // A group with no catalog entry of its own may still hold mapped
        // children (the remediation actions under threatseveritydefaultaction).
        if let Some(items) = group_items(inst) {
            let known_parent = catalog.iter().any(|d| {
                d.intune
                    .iter()
                    .any(|m| m.parent.as_deref() == Some(id.as_str()))
            });
            if known_parent {
                for item in items {
                    for child in children_of(item) {
                        import_instance(child, catalog, platform, found);
                    }
                }
                return;
            }
        }
        found.unmapped(
            &id,
            format!("no Rampart setting has this Intune definition on {platform}"),
        );
        return;
    };
    match def.kind {
        SettingKind::FirewallRules => import_firewall_rules(inst, def, found),
        SettingKind::AsrRules => import_asr_rules(inst, def, catalog, found),
        _ => {
            let Some((leaf, children)) = leaf(inst) else {
                found.unmapped(&id, "the setting instance carries no value");
                return;
            };
            if let Some(reason) = &def.deprecated {
                found.unmapped(&id, format!("{} is deprecated: {reason}", def.id));
            } else {
                match leaf_value(def, mapping, &leaf)
                    .and_then(|raw| check_value(def, &raw).map_err(|e| join_errors(&e)))
                {
                    Ok(v) => match merge_repeated(def, found.values.get(&def.id), v) {
                        Ok(v) => {
                            found.values.insert(def.id.clone(), v);
                            found.mapped(&id, &def.id);
                        }
                        Err(reason) => found.unmapped(&id, reason),
                    },
                    Err(reason) => found.unmapped(&id, format!("{}: {reason}", def.id)),
                }
            }
            for child in children {
                import_instance(child, catalog, platform, found);
            }
        }
    }
}

/// A setting met a second time in one policy: lists are combined, an equal
/// value is the same setting, a different one cannot be both.
fn merge_repeated(
    def: &SettingDefinition,
    earlier: Option<&Value>,
    value: Value,
) -> Result<Value, String> {
    let Some(earlier) = earlier else {
        return Ok(value);
    };
    if *earlier == value {
        return Ok(value);
    }
    match (earlier, &value) {
        (Value::Array(a), Value::Array(b)) if def.kind == SettingKind::StringList => {
            let both: Vec<Value> = a.iter().chain(b).cloned().collect();
            check_value(def, &Value::Array(both)).map_err(|e| join_errors(&e))
        }
        _ => Err(format!(
            "{} is set twice in this policy, to {earlier} and to {value}",
            def.id
        )),
    }
}

fn join_errors(errors: &[crate::error::FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every child instance of a group item, with the children of its choices,
/// keyed by the part of the id after `prefix_`.
fn fields<'a>(item: &'a Value, prefix: &str) -> BTreeMap<String, &'a Value> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<&Value> = children_of(item);
    while let Some(inst) = stack.pop() {
        let id = instance_id(inst);
        let key = id
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('_'))
            .unwrap_or(&id)
            .to_string();
        if let Some((_, children)) = leaf(inst) {
            stack.extend(children);
        }
        out.insert(key, inst);
    }
    out
}

fn import_firewall_rules(inst: &Value, def: &SettingDefinition, found: &mut Found) {
    let items = group_items(inst).unwrap_or_default();
    let mut rules: Vec<Value> = found
        .values
        .get(&def.id)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, item) in items.into_iter().enumerate() {
        let label = format!("{FIREWALL_RULE_ID}[{i}]");
        match firewall_rule(item) {
            Ok(rule) => {
                let name = rule
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let label = format!("{label} ({name})");
                match check_value(def, &Value::Array(vec![rule.clone()])) {
                    Ok(_) if rules.iter().any(|r| r.get("name") == rule.get("name")) => {
                        found.unmapped(&label, format!("a rule named {name:?} appears twice"))
                    }
                    Ok(_) => {
                        rules.push(rule);
                        found.mapped(&label, &def.id);
                    }
                    Err(e) => found.unmapped(&label, format!("{}: {}", def.id, join_errors(&e))),
                }
            }
            Err(reason) => found.unmapped(&label, reason),
        }
    }
    if !rules.is_empty() {
        if let Ok(v) = check_value(def, &Value::Array(rules)) {
            found.values.insert(def.id.clone(), v);
        }
    }
}

/// One Intune firewall rule group to a Rampart rule. A field Rampart cannot
/// carry refuses the whole rule: dropping, say, an address restriction would
/// widen what the rule allows.
fn firewall_rule(item: &Value) -> Result<Value, String> {
    let mut rule = Map::new();
    let fields = fields(item, FIREWALL_RULE_ID);
    let choice = |key: &str, inst: &Value| -> Result<String, String> {
        match leaf(inst) {
            Some((Leaf::Choice(v), _)) => option_of(&format!("{FIREWALL_RULE_ID}_{key}"), &v)
                .map(str::to_string)
                .ok_or_else(|| format!("{key}: {v:?} is not one of its options")),
            _ => Err(format!("{key}: expected a choice")),
        }
    };
    let simple = |key: &str, inst: &Value| -> Result<Value, String> {
        match leaf(inst) {
            Some((Leaf::Simple(v), _)) => Ok(v),
            _ => Err(format!("{key}: expected a simple value")),
        }
    };
    let list = |key: &str, inst: &Value| -> Result<Vec<String>, String> {
        match leaf(inst) {
            Some((Leaf::SimpleList(v), _)) => Ok(v
                .iter()
                .filter_map(|x| x.as_str().map(|s| s.trim().to_string()))
                .filter(|s| !s.is_empty() && s != "*")
                .collect()),
            _ => Err(format!("{key}: expected a list")),
        }
    };
    let choices = |key: &str, inst: &Value| -> Result<Vec<String>, String> {
        let prefix = format!("{FIREWALL_RULE_ID}_{key}");
        match leaf(inst) {
            Some((Leaf::ChoiceList(v), _)) => v
                .iter()
                .map(|x| {
                    option_of(&prefix, x)
                        .map(str::to_string)
                        .ok_or_else(|| format!("{key}: {x:?} is not one of its options"))
                })
                .collect(),
            Some((Leaf::Choice(x), _)) => option_of(&prefix, &x)
                .map(|o| vec![o.to_string()])
                .ok_or_else(|| format!("{key}: {x:?} is not one of its options")),
            _ => Err(format!("{key}: expected a choice list")),
        }
    };
    for (key, inst) in &fields {
        let inst = *inst;
        match key.as_str() {
            "name" | "description" => {
                rule.insert(key.clone(), simple(key, inst)?);
            }
            "app_filepath" => {
                rule.insert("app_path".into(), simple(key, inst)?);
            }
            "app_packagefamilyname" => {
                rule.insert("package_family_name".into(), simple(key, inst)?);
            }
            "app_servicename" => {
                rule.insert("service_name".into(), simple(key, inst)?);
            }
            // A choice whose only job is to hold `action_type`.
            "action" if matches!(leaf(inst), Some((Leaf::Choice(_), _))) => {}
            "action_type" => {
                let action = match choice(key, inst)?.as_str() {
                    "0" => "block",
                    "1" => "allow",
                    other => return Err(format!("action_type: unknown action {other:?}")),
                };
                rule.insert("action".into(), Value::from(action));
            }
            "direction" => {
                rule.insert("direction".into(), Value::from(choice(key, inst)?));
            }
            "enabled" | "edgetraversal" => {
                let on = match choice(key, inst)?.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    other => return Err(format!("{key}: unknown value {other:?}")),
                };
                let name = if key == "enabled" {
                    "enabled"
                } else {
                    "edge_traversal"
                };
                rule.insert(name.into(), Value::Bool(on));
            }
            "protocol" => {
                let p =
                    parse_protocol(&simple(key, inst)?).map_err(|e| format!("protocol: {e}"))?;
                rule.insert("protocol".into(), Value::from(p));
            }
            "localportranges" | "remoteportranges" => {
                let ports = list(key, inst)?;
                if !ports.is_empty() {
                    let name = if key == "localportranges" {
                        "local_ports"
                    } else {
                        "remote_ports"
                    };
                    rule.insert(name.into(), Value::from(ports.join(",")));
                }
            }
            "localaddressranges" | "remoteaddressranges" => {
                let addrs = list(key, inst)?;
                if !addrs.is_empty() {
                    let name = if key == "localaddressranges" {
                        "local_addresses"
                    } else {
                        "remote_addresses"
                    };
                    rule.insert(name.into(), Value::from(addrs));
                }
            }
            "icmptypesandcodes" => {
                rule.insert("icmp_types_and_codes".into(), Value::from(list(key, inst)?));
            }
            "profiles" => {
                let mut mask = 0u64;
                for o in choices(key, inst)? {
                    mask |= o
                        .parse::<u64>()
                        .map_err(|_| format!("profiles: {o:?} is not a profile number"))?;
                }
                rule.insert("profiles".into(), Value::from(profiles_from_mask(mask)?));
            }
            "interfacetypes" => {
                let mut out = Vec::new();
                for o in choices(key, inst)? {
                    out.push(match o.as_str() {
                        "all" => "all",
                        "lan" => "lan",
                        "wireless" => "wireless",
                        "remoteaccess" => "remote_access",
                        other => return Err(format!("interfacetypes: unknown type {other:?}")),
                    });
                }
                rule.insert("interface_types".into(), Value::from(out));
            }
            other => {
                return Err(format!(
                    "rule field {other} has no Rampart equivalent; the rule is not imported \
                     rather than imported wider than intended"
                ))
            }
        }
    }
    if !rule.contains_key("name") {
        return Err("the rule has no name".into());
    }
    Ok(Value::Object(rule))
}

/// A Firewall CSP profile bitmask (1 domain, 2 private, 4 public) to names.
pub fn profiles_from_mask(mask: u64) -> Result<Vec<&'static str>, String> {
    if mask == ALL_PROFILES {
        return Ok(vec!["all"]);
    }
    if mask == 0 || mask & !7 != 0 {
        return Err(format!(
            "profiles: {mask} is not a combination of 1, 2 and 4"
        ));
    }
    Ok([(1, "domain"), (2, "private"), (4, "public")]
        .into_iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, n)| n)
        .collect())
}

fn import_asr_rules(inst: &Value, def: &SettingDefinition, catalog: &Catalog, found: &mut Found) {
    let Some(mapping) = def.intune.first() else {
        return;
    };
    let prefix = mapping.id.clone();
    let mut modes = found
        .values
        .get(&def.id)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut exclusions: Vec<Value> = Vec::new();
    for item in group_items(inst).unwrap_or_default() {
        for (key, child) in fields(item, &prefix) {
            let label = format!("{prefix}_{key}");
            if let Some(rule_name) = key.strip_suffix(PER_RULE_EXCLUSIONS) {
                let Some(rule) = def
                    .keys
                    .iter()
                    .find(|k| k.intune.as_deref() == Some(rule_name))
                else {
                    found.unmapped(&label, format!("unknown ASR rule {rule_name:?}"));
                    continue;
                };
                match leaf(child) {
                    Some((Leaf::SimpleList(paths), _)) => {
                        for p in paths.iter().filter_map(Value::as_str) {
                            exclusions.push(Value::from(format!("{}={}", rule.key, p.trim())));
                        }
                        found.mapped(&label, "asr_rule_exclusions");
                    }
                    _ => found.unmapped(&label, "expected a list of paths"),
                }
                continue;
            }
            let Some(rule) = def
                .keys
                .iter()
                .find(|k| k.intune.as_deref() == Some(key.as_str()))
            else {
                found.unmapped(&label, format!("unknown ASR rule {key:?}"));
                continue;
            };
            let mode = match leaf(child) {
                Some((Leaf::Choice(v), _)) => option_of(&label, &v).map(str::to_string),
                _ => None,
            };
            match mode {
                Some(m) if def.values.contains(&m) => {
                    let one = json!({ rule.key.clone(): m });
                    match check_value(def, &one) {
                        Ok(_) => {
                            if m != "not_configured" {
                                modes.insert(rule.key.to_ascii_lowercase(), Value::from(m));
                            }
                            found.mapped(&label, &def.id);
                        }
                        Err(e) => found.unmapped(&label, join_errors(&e)),
                    }
                }
                other => found.unmapped(
                    &label,
                    format!("mode {other:?} is not one of {}", def.values.join(", ")),
                ),
            }
        }
    }
    if !modes.is_empty() {
        found.values.insert(def.id.clone(), Value::Object(modes));
    }
    if !exclusions.is_empty() {
        if let Some(ex_def) = catalog.get("asr_rule_exclusions") {
            match check_value(ex_def, &Value::Array(exclusions)) {
                Ok(v) => {
                    found.values.insert(ex_def.id.clone(), v);
                }
                Err(e) => {
                    found.unmapped(&format!("{prefix}{PER_RULE_EXCLUSIONS}"), join_errors(&e))
                }
            }
        }
    }
}

/// Puts each setting in a family: the template's families first (the one
/// that takes the most settings wins ties in template order), then the
/// setting's own first family. A policy that mixes families becomes one
/// Rampart policy per family.
fn place_in_families(
    values: &BTreeMap<String, Value>,
    catalog: &Catalog,
    preferred: &[Family],
) -> BTreeMap<Family, BTreeMap<String, Value>> {
    let mut order: Vec<Family> = preferred.to_vec();
    let accepts = |f: Family| {
        values
            .keys()
            .filter(|id| catalog.get(id).is_some_and(|d| d.allows_family(f)))
            .count()
    };
    // Stable: equal counts keep the template's order.
    order.sort_by_key(|f| std::cmp::Reverse(accepts(*f)));
    let mut out: BTreeMap<Family, BTreeMap<String, Value>> = BTreeMap::new();
    for (id, value) in values {
        let Some(def) = catalog.get(id) else { continue };
        let family = order
            .iter()
            .copied()
            .find(|f| def.allows_family(*f))
            .or_else(|| def.families.first().copied());
        if let Some(f) = family {
            out.entry(f).or_default().insert(id.clone(), value.clone());
        }
    }
    out
}

fn assignments(
    obj: &Map<String, Value>,
    group_names: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut include = BTreeSet::new();
    let mut exclude = BTreeSet::new();
    let list = obj
        .get("assignments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in &list {
        let target = a.get("target").unwrap_or(a);
        let kind = target
            .get("@odata.type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_start_matches("#microsoft.graph.")
            .to_string();
        let filter = target
            .get("deviceAndAppManagementAssignmentFilterId")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty());
        if let Some(f) = filter {
            warnings.push(format!(
                "assignment filter {f} dropped: assignment filters are not supported; \
                 express it as a dynamic group rule"
            ));
        }
        match kind.as_str() {
            "allDevicesAssignmentTarget" => {
                include.insert(ALL_DEVICES.to_string());
            }
            "groupAssignmentTarget" => {
                include.insert(group_name(target, group_names, warnings));
            }
            "exclusionGroupAssignmentTarget" => {
                exclude.insert(group_name(target, group_names, warnings));
            }
            "allLicensedUsersAssignmentTarget" => warnings.push(
                "assignment to all users refused: Rampart targets devices only".to_string(),
            ),
            other => warnings.push(format!(
                "assignment target {other:?} refused: Rampart targets device groups and all devices only"
            )),
        }
    }
    (include.into_iter().collect(), exclude.into_iter().collect())
}

/// The Rampart name of an assignment's group: from the mapping, or
/// `intune-<id>` with a warning.
fn group_name(
    target: &Value,
    group_names: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> String {
    let id = target
        .get("groupId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    match group_names.get(&id) {
        Some(n) => n.clone(),
        None => {
            warnings.push(format!(
                "group {id} has no name in the group mapping; imported as intune-{id}"
            ));
            format!("intune-{id}")
        }
    }
}

/// The result of exporting one Rampart policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exported {
    pub policy: String,
    /// The body for `POST /deviceManagement/configurationPolicies`.
    pub body: Value,
    /// The body for `POST …/configurationPolicies/{id}/assign`.
    pub assign: Value,
    /// Settings with no Intune definition, with the reason.
    pub skipped: Vec<SettingOutcome>,
    pub warnings: Vec<String>,
}

/// Exports a checked policy. `group_ids` maps Rampart group names to Entra
/// group ids.
pub fn export_policy(
    policy: &Policy,
    catalog: &Catalog,
    group_ids: &BTreeMap<String, String>,
) -> Exported {
    let mut instances: Vec<Value> = Vec::new();
    let mut grouped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let platform = policy.platform;
    let asr_exclusions: BTreeMap<String, Vec<String>> = policy
        .settings
        .get("asr_rule_exclusions")
        .and_then(Value::as_array)
        .map(|items| {
            let mut by_rule: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for i in items.iter().filter_map(Value::as_str) {
                if let Some((rule, path)) = i.split_once('=') {
                    by_rule
                        .entry(rule.to_string())
                        .or_default()
                        .push(path.to_string());
                }
            }
            by_rule
        })
        .unwrap_or_default();
    for (id, value) in &policy.settings {
        let Some(def) = catalog.get(id) else { continue };
        if id == "asr_rule_exclusions" {
            // Written with the ASR rules they belong to.
            let modes = policy.settings.get("asr_rules").and_then(Value::as_object);
            for rule in asr_exclusions.keys() {
                if !modes.is_some_and(|m| m.contains_key(rule)) {
                    skipped.push(SettingOutcome {
                        intune_id: format!("asr_rule_exclusions ({rule})"),
                        setting: Some(id.clone()),
                        reason: Some(
                            "Intune attaches per-rule exclusions to a rule's mode; this policy sets no mode for the rule".into(),
                        ),
                    });
                }
            }
            continue;
        }
        let Some(m) = def.intune.iter().find(|m| m.platforms.contains(&platform)) else {
            skipped.push(SettingOutcome {
                intune_id: String::new(),
                setting: Some(id.clone()),
                reason: Some(format!("{id} has no Intune definition on {platform}")),
            });
            continue;
        };
        let inst = match def.kind {
            SettingKind::FirewallRules => export_firewall_rules(&m.id, value),
            SettingKind::AsrRules => export_asr_rules(def, &m.id, value, &asr_exclusions),
            _ => match export_leaf(def, m, value) {
                Ok(inst) => inst,
                Err(reason) => {
                    skipped.push(SettingOutcome {
                        intune_id: m.id.clone(),
                        setting: Some(id.clone()),
                        reason: Some(reason),
                    });
                    continue;
                }
            },
        };
        match &m.parent {
            Some(parent) => grouped.entry(parent.clone()).or_default().push(inst),
            None => instances.push(inst),
        }
    }
    for (parent, children) in grouped {
        instances.push(json!({
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
            "settingDefinitionId": parent,
            "groupSettingCollectionValue": [{"@odata.type": GROUP_VALUE, "children": children}],
        }));
    }
    let settings: Vec<Value> = instances
        .into_iter()
        .map(|i| json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationSetting", "settingInstance": i}))
        .collect();
    let mut warnings = Vec::new();
    let mut targets = Vec::new();
    for (names, kind) in [
        (&policy.assignments.include, "groupAssignmentTarget"),
        (
            &policy.assignments.exclude,
            "exclusionGroupAssignmentTarget",
        ),
    ] {
        for name in names {
            if name == ALL_DEVICES {
                targets.push(json!({"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}));
                continue;
            }
            let id = match group_ids.get(name) {
                Some(id) => id.clone(),
                None => {
                    warnings.push(format!(
                        "group {name:?} has no Entra group id in the group mapping; its assignment is left out"
                    ));
                    continue;
                }
            };
            targets.push(json!({"target": {"@odata.type": format!("#microsoft.graph.{kind}"), "groupId": id}}));
        }
    }
    Exported {
        policy: policy.name.clone(),
        body: json!({
            "name": policy.name,
            "description": policy.description,
            "platforms": platform_to_intune(platform),
            "technologies": if platform == Platform::Windows { "mdm,microsoftSense" } else { "microsoftSense" },
            "templateReference": {"templateId": "", "templateFamily": template_family(policy.family)},
            "settings": settings,
        }),
        assign: json!({"assignments": targets}),
        skipped,
        warnings,
    }
}

const CHOICE_VALUE: &str = "#microsoft.graph.deviceManagementConfigurationChoiceSettingValue";
const GROUP_VALUE: &str = "#microsoft.graph.deviceManagementConfigurationGroupSettingValue";

fn choice_instance(id: &str, option: &str, children: Vec<Value>) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
        "settingDefinitionId": id,
        "choiceSettingValue": {"@odata.type": CHOICE_VALUE, "value": format!("{id}_{option}"), "children": children},
    })
}

fn simple_value(v: &Value) -> Value {
    match v {
        Value::Number(_) => {
            json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationIntegerSettingValue", "value": v})
        }
        _ => {
            json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationStringSettingValue", "value": v})
        }
    }
}

fn simple_instance(id: &str, v: &Value) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
        "settingDefinitionId": id,
        "simpleSettingValue": simple_value(v),
    })
}

fn simple_collection(id: &str, items: &[Value]) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingCollectionInstance",
        "settingDefinitionId": id,
        "simpleSettingCollectionValue": items.iter().map(simple_value).collect::<Vec<_>>(),
    })
}

fn choice_collection(id: &str, options: &[String]) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingCollectionInstance",
        "settingDefinitionId": id,
        "choiceSettingCollectionValue": options
            .iter()
            .map(|o| json!({"@odata.type": CHOICE_VALUE, "value": format!("{id}_{o}"), "children": []}))
            .collect::<Vec<_>>(),
    })
}

fn option_for<'a>(m: &'a IntuneMapping, value: &Value) -> Option<&'a str> {
    m.options
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(k, _)| k.as_str())
}

fn export_leaf(def: &SettingDefinition, m: &IntuneMapping, value: &Value) -> Result<Value, String> {
    match def.kind {
        SettingKind::Bool | SettingKind::Enum => option_for(m, value)
            .map(|o| choice_instance(&m.id, o, Vec::new()))
            .ok_or_else(|| format!("{value} has no Intune option in {}", m.id)),
        SettingKind::Int | SettingKind::String => Ok(simple_instance(&m.id, value)),
        SettingKind::StringList if !m.options.is_empty() => {
            let items = value.as_array().cloned().unwrap_or_default();
            let options = items
                .iter()
                .map(|v| option_for(m, v).map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("a value of {} has no Intune option", def.id))?;
            Ok(choice_collection(&m.id, &options))
        }
        SettingKind::StringList => Ok(simple_collection(
            &m.id,
            value.as_array().map(Vec::as_slice).unwrap_or_default(),
        )),
        SettingKind::FirewallRules | SettingKind::AsrRules => {
            Err("structured settings are exported by their own functions".into())
        }
    }
}

fn export_firewall_rules(id: &str, value: &Value) -> Value {
    let f = |field: &str| format!("{id}_{field}");
    let mut items = Vec::new();
    for rule in value.as_array().map(Vec::as_slice).unwrap_or_default() {
        let mut children = Vec::new();
        let get = |k: &str| rule.get(k).filter(|v| !v.is_null());
        for (k, field) in [
            ("name", "name"),
            ("description", "description"),
            ("app_path", "app_filepath"),
            ("package_family_name", "app_packagefamilyname"),
            ("service_name", "app_servicename"),
        ] {
            if let Some(v) = get(k) {
                if k == "description" && v.as_str() == Some("") {
                    continue;
                }
                children.push(simple_instance(&f(field), v));
            }
        }
        if let Some(d) = get("direction").and_then(Value::as_str) {
            children.push(choice_instance(&f("direction"), d, Vec::new()));
        }
        if let Some(a) = get("action").and_then(Value::as_str) {
            let o = if a == "allow" { "1" } else { "0" };
            children.push(choice_instance(&f("action_type"), o, Vec::new()));
        }
        for (k, field) in [("enabled", "enabled"), ("edge_traversal", "edgetraversal")] {
            if let Some(b) = get(k).and_then(Value::as_bool) {
                children.push(choice_instance(
                    &f(field),
                    if b { "1" } else { "0" },
                    Vec::new(),
                ));
            }
        }
        if let Some(p) = get("protocol")
            .and_then(Value::as_str)
            .filter(|p| *p != "any")
        {
            // Canonical protocols are these names or a decimal number.
            let number = match p {
                "icmp" => Some(1),
                "tcp" => Some(6),
                "udp" => Some(17),
                "icmpv6" => Some(58),
                other => other.parse::<u64>().ok(),
            };
            if let Some(n) = number {
                children.push(simple_instance(&f("protocol"), &Value::from(n)));
            }
        }
        for (k, field) in [
            ("local_ports", "localportranges"),
            ("remote_ports", "remoteportranges"),
        ] {
            if let Some(p) = get(k).and_then(Value::as_str) {
                let items: Vec<Value> = p.split(',').map(Value::from).collect();
                children.push(simple_collection(&f(field), &items));
            }
        }
        for (k, field) in [
            ("local_addresses", "localaddressranges"),
            ("remote_addresses", "remoteaddressranges"),
            ("icmp_types_and_codes", "icmptypesandcodes"),
        ] {
            if let Some(items) = get(k).and_then(Value::as_array) {
                children.push(simple_collection(&f(field), items));
            }
        }
        if let Some(p) = get("profiles").and_then(Value::as_array) {
            // One option per profile, as Intune's own editor writes them.
            let options: Vec<String> = p
                .iter()
                .filter_map(Value::as_str)
                .map(|n| match n {
                    "domain" => 1,
                    "private" => 2,
                    "public" => 4,
                    _ => ALL_PROFILES,
                })
                .map(|bit| bit.to_string())
                .collect();
            children.push(choice_collection(&f("profiles"), &options));
        }
        if let Some(t) = get("interface_types").and_then(Value::as_array) {
            let options: Vec<String> = t
                .iter()
                .filter_map(Value::as_str)
                .map(|x| x.replace('_', ""))
                .collect();
            children.push(choice_collection(&f("interfacetypes"), &options));
        }
        items.push(json!({"@odata.type": GROUP_VALUE, "children": children}));
    }
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
        "settingDefinitionId": id,
        "groupSettingCollectionValue": items,
    })
}

fn export_asr_rules(
    def: &SettingDefinition,
    id: &str,
    value: &Value,
    exclusions: &BTreeMap<String, Vec<String>>,
) -> Value {
    let mut children = Vec::new();
    for (rule, mode) in value.as_object().into_iter().flatten() {
        let (Some(key), Some(mode)) = (def.key(rule), mode.as_str()) else {
            continue;
        };
        let Some(name) = &key.intune else { continue };
        let child_id = format!("{id}_{name}");
        let mut dependents = Vec::new();
        if let Some(paths) = exclusions.get(&key.key.to_ascii_lowercase()) {
            let items: Vec<Value> = paths.iter().map(|p| Value::from(p.as_str())).collect();
            dependents.push(simple_collection(
                &format!("{child_id}{PER_RULE_EXCLUSIONS}"),
                &items,
            ));
        }
        children.push(choice_instance(&child_id, mode, dependents));
    }
    json!({
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
        "settingDefinitionId": id,
        "groupSettingCollectionValue": [{"@odata.type": GROUP_VALUE, "children": children}],
    })
}

/// A policy body with the assignments of its `/assign` body attached, the
/// shape Graph returns for `configurationPolicies?$expand=assignments` and
/// the one `import_policy` reads.
pub fn with_assignments(body: &Value, assign: &Value) -> Value {
    let mut out = body.clone();
    if let (Some(o), Some(a)) = (out.as_object_mut(), assign.get("assignments")) {
        o.insert("assignments".into(), a.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const D: &str = "device_vendor_msft_policy_config_defender_";

    fn choice(id: &str, option: &str) -> Value {
        json!({"settingInstance": {"settingDefinitionId": id,
            "choiceSettingValue": {"value": format!("{id}_{option}"), "children": []}}})
    }

    fn list(id: &str, items: &[&str]) -> Value {
        json!({"settingInstance": {"settingDefinitionId": id,
            "simpleSettingCollectionValue": items.iter().map(|v| json!({"value": v})).collect::<Vec<_>>()}})
    }

    fn families_of(settings: Vec<Value>) -> Vec<(String, Vec<String>)> {
        let p = json!({"name": "p", "platforms": "windows10", "settings": settings,
            "templateReference": {"templateFamily": "none"}});
        import_policy(&p, Catalog::builtin(), &BTreeMap::new())
            .unwrap()
            .policies
            .iter()
            .map(|d| {
                let ids = d["settings"].as_object().unwrap().keys().cloned().collect();
                (d["family"].as_str().unwrap().to_string(), ids)
            })
            .collect()
    }

    #[test]
    fn a_settings_catalog_policy_goes_to_the_family_that_takes_the_most_settings() {
        let exclusions_only = families_of(vec![list(&format!("{D}excludedpaths"), &["C:\\x"])]);
        assert_eq!(exclusions_only[0].0, "antivirus_exclusions");
        let mixed = families_of(vec![
            list(&format!("{D}excludedpaths"), &["C:\\x"]),
            choice(&format!("{D}allowrealtimemonitoring"), "1"),
        ]);
        assert_eq!(mixed.len(), 1);
        assert_eq!(mixed[0].0, "antivirus");
        let asr = families_of(vec![
            choice(&format!("{D}enablecontrolledfolderaccess"), "1"),
            list(
                &format!("{D}attacksurfacereductiononlyexclusions"),
                &["C:\\x"],
            ),
        ]);
        assert_eq!(asr.len(), 1);
        assert_eq!(asr[0].0, "asr");
        let split = families_of(vec![
            choice(&format!("{D}allowrealtimemonitoring"), "1"),
            choice(
                "vendor_msft_firewall_mdmstore_domainprofile_enablefirewall",
                "true",
            ),
        ]);
        let names: Vec<&str> = split.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names, ["antivirus", "firewall"]);
    }

    #[test]
    fn profile_bitmasks_and_platforms() {
        assert_eq!(profiles_from_mask(ALL_PROFILES).unwrap(), ["all"]);
        assert_eq!(profiles_from_mask(5).unwrap(), ["domain", "public"]);
        assert_eq!(
            profiles_from_mask(7).unwrap(),
            ["domain", "private", "public"]
        );
        assert!(profiles_from_mask(0).is_err());
        assert!(profiles_from_mask(8).is_err());
        assert_eq!(platform_from_intune("windows10"), Some(Platform::Windows));
        assert_eq!(platform_from_intune("macOS"), Some(Platform::Macos));
        assert_eq!(platform_from_intune("linux"), Some(Platform::Linux));
        assert_eq!(platform_from_intune("windows10,macOS"), None);
        assert_eq!(platform_from_intune("iOS"), None);
    }

    #[test]
    fn export_files_of_every_shape_are_read_and_others_refused() {
        let one = json!({"name": "a", "platforms": "linux", "settings": []}).to_string();
        assert_eq!(policies_in(&format!("\u{feff}{one}")).unwrap().len(), 1);
        assert_eq!(policies_in(&format!("[{one},{one}]")).unwrap().len(), 2);
        assert_eq!(
            policies_in(&format!("{{\"value\": [{one}]}}"))
                .unwrap()
                .len(),
            1
        );
        for bad in [
            "",
            "nope",
            "[]",
            "42",
            r#"{"displayName": "x"}"#,
            r#"[{"name": "a", "settings": 3}]"#,
        ] {
            assert!(
                matches!(policies_in(bad), Err(ImportError::NotAPolicy(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_setting_met_twice_combines_lists_and_refuses_two_values() {
        let p = json!({"name": "p", "platforms": "windows10", "settings": [
            list(&format!("{D}excludedpaths"), &["C:\\a"]),
            list(&format!("{D}excludedpaths"), &["C:\\b"]),
            choice(&format!("{D}puaprotection"), "1"),
            choice(&format!("{D}puaprotection"), "2"),
        ]});
        let r = import_policy(&p, Catalog::builtin(), &BTreeMap::new()).unwrap();
        assert_eq!((r.mapped, r.total), (3, 4));
        let av = r
            .policies
            .iter()
            .find(|d| d["family"] == "antivirus")
            .unwrap();
        assert_eq!(av["settings"]["excluded_paths"], json!(["C:\\a", "C:\\b"]));
        assert_eq!(av["settings"]["pua_protection"], "block");
        assert!(r.settings[3]
            .reason
            .as_deref()
            .unwrap()
            .contains("set twice"));
    }

    #[test]
    fn a_choice_of_another_setting_is_not_taken_for_an_option() {
        let p = json!({"name": "p", "platforms": "windows10", "settings": [
            {"settingInstance": {"settingDefinitionId": format!("{D}puaprotection"),
             "choiceSettingValue": {"value": format!("{D}cloudblocklevel_2"), "children": []}}}]});
        let r = import_policy(&p, Catalog::builtin(), &BTreeMap::new()).unwrap();
        assert_eq!(r.mapped, 0);
        assert!(r.settings[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("is not an option"));
    }
}
