//! The JSON Schema of policy-as-code documents, generated from the catalog.
//!
//! Editors (through the `yaml-language-server` comment at the top of a file)
//! use it to complete setting ids and values and flag mistakes as you type.
//! It describes what `documents::load_documents` accepts; the validator stays
//! the authority (cross-object checks, group rule syntax and path shapes are
//! beyond a schema). `schema/policy.schema.json` is this function's output,
//! committed and checked by a test.

use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, ItemKind, SettingDefinition, SettingKind};
use crate::model::{ConflictPolicy, DeviceType, Enforcement, Family, Platform};
use crate::validate::{MAX_DESCRIPTION_LEN, MAX_NAME_LEN};
use crate::value::{ADDRESS_KEYWORDS, MAX_FIREWALL_RULES};

fn strings<T: Copy>(all: &[T], f: impl Fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|x| f(*x)).collect()
}

/// The schema of every document kind, keyed on `kind`.
pub fn policy_schema(catalog: &Catalog) -> Value {
    let mut settings = Map::new();
    for def in catalog.iter() {
        settings.insert(def.id.clone(), setting_schema(def));
    }
    // Per family, only that family's settings: the editor then completes
    // exactly the ids the validator accepts.
    let family_rules: Vec<Value> = Family::ALL
        .iter()
        .map(|f| {
            let ids: Vec<&str> = catalog.in_family(*f).map(|d| d.id.as_str()).collect();
            json!({
                "if": {"properties": {"family": {"const": f.as_str()}}, "required": ["family"]},
                "then": {"properties": {"settings": {"propertyNames": {"enum": ids}}}},
            })
        })
        .collect();
    let name = json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Rampart policy-as-code document",
        "description": "One YAML document: a Policy, Group, Device or TenantSettings. Generated from the settings catalog by `rampart catalog schema`.",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": crate::documents::KINDS}},
        "allOf": [
            {"if": {"properties": {"kind": {"const": "Policy"}}}, "then": {"$ref": "#/$defs/Policy"}},
            {"if": {"properties": {"kind": {"const": "Group"}}}, "then": {"$ref": "#/$defs/Group"}},
            {"if": {"properties": {"kind": {"const": "Device"}}}, "then": {"$ref": "#/$defs/Device"}},
            {"if": {"properties": {"kind": {"const": "TenantSettings"}}}, "then": {"$ref": "#/$defs/TenantSettings"}},
        ],
        "$defs": {
            "Policy": {
                "type": "object",
                "required": ["kind", "name", "family", "platform"],
                "additionalProperties": false,
                "properties": {
                    "kind": {"const": "Policy"},
                    "name": name,
                    "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LEN},
                    "family": {"enum": strings(Family::ALL, Family::as_str)},
                    "platform": {"enum": strings(Platform::ALL, Platform::as_str)},
                    "settings": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": settings,
                    },
                    "assignments": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "include": {"type": "array", "items": {"type": "string", "minLength": 1}},
                            "exclude": {"type": "array", "items": {"type": "string", "minLength": 1}},
                        },
                    },
                    "rollout": {"oneOf": [{"const": crate::rollout::IMMEDIATE}, {"$ref": "#/$defs/Rollout"}]},
                },
                "allOf": family_rules,
            },
            "Rollout": rollout_schema(),
            "Group": {
                "type": "object",
                "required": ["kind", "name"],
                "additionalProperties": false,
                "properties": {
                    "kind": {"const": "Group"},
                    "name": name,
                    "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LEN},
                    "rule": {"type": "string", "minLength": 1, "description": "A dynamic membership rule, e.g. os == \"linux\" and tag(\"web\")."},
                    "members": {"type": "array", "items": {"type": "string", "minLength": 1}},
                },
                "not": {"required": ["rule", "members"]},
            },
            "Device": {
                "type": "object",
                "required": ["kind", "name", "os"],
                "additionalProperties": false,
                "properties": {
                    "kind": {"const": "Device"},
                    "name": name,
                    "os": {"enum": strings(Platform::ALL, Platform::as_str)},
                    "os_version": {"type": "string"},
                    "type": {"enum": strings(DeviceType::ALL, DeviceType::as_str)},
                    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
                },
            },
            "TenantSettings": {
                "type": "object",
                "required": ["kind"],
                "additionalProperties": false,
                "properties": {
                    "kind": {"const": "TenantSettings"},
                    "enforcement": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": Platform::ALL.iter().map(|p| (p.as_str().to_string(), json!({"enum": strings(Enforcement::ALL, Enforcement::as_str)}))).collect::<Map<_, _>>(),
                    },
                    "pilot_tag": {"type": "string", "minLength": 1, "maxLength": 64},
                    "conflict_policy": {"enum": strings(ConflictPolicy::ALL, ConflictPolicy::as_str)},
                    "allow_takeover": {"type": "boolean"},
                    "manage_domain_controllers": {"type": "boolean"},
                    "default_rollout": {"oneOf": [{"const": crate::rollout::IMMEDIATE}, {"type": "null"}, {"$ref": "#/$defs/Rollout"}]},
                },
            },
        },
    })
}

fn setting_schema(def: &SettingDefinition) -> Value {
    if let Some(reason) = &def.deprecated {
        // Refused by the validator: the schema refuses it too, and says why.
        return json!({"description": format!("Deprecated and refused: {reason}"), "not": {}});
    }
    let platforms: Vec<&str> = def.platforms.iter().map(|p| p.as_str()).collect();
    let description = format!(
        "{}. {} (platforms: {})",
        def.title.trim_end_matches('.'),
        def.description,
        platforms.join(", ")
    );
    let mut schema = match def.kind {
        SettingKind::Bool => json!({"type": "boolean"}),
        SettingKind::Enum => json!({"enum": def.values}),
        SettingKind::Int => {
            let mut s = json!({"type": "integer"});
            if let Some(min) = def.min {
                s["minimum"] = json!(min);
            }
            if let Some(max) = def.max {
                s["maximum"] = json!(max);
            }
            s
        }
        SettingKind::String => {
            let mut s = json!({"type": "string", "minLength": 1});
            if let Some(max) = def.max {
                s["maxLength"] = json!(max);
            }
            s
        }
        SettingKind::StringList => {
            let mut s = json!({"type": "array", "items": item_schema(def)});
            if let Some(max) = def.max_items {
                s["maxItems"] = json!(max);
            }
            s
        }
        SettingKind::AsrRules => {
            let keys: Vec<&str> = def.keys.iter().map(|k| k.key.as_str()).collect();
            json!({
                "type": "object",
                "propertyNames": {"enum": keys},
                "additionalProperties": {"enum": def.values},
            })
        }
        SettingKind::FirewallRules => json!({
            "type": "array",
            "maxItems": def.max_items.unwrap_or(MAX_FIREWALL_RULES),
            "items": firewall_rule_schema(),
        }),
    };
    schema["description"] = json!(description);
    if let Some(default) = &def.default {
        schema["default"] = default.clone();
    }
    schema
}

fn item_schema(def: &SettingDefinition) -> Value {
    match def.item.unwrap_or_default() {
        ItemKind::Enum => json!({"enum": def.values}),
        ItemKind::AsrRuleExclusion => json!({
            "type": "string",
            "pattern": "^\\s*[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\s*=.+$",
        }),
        ItemKind::Path => {
            json!({"type": "string", "pattern": "^\\s*(/|[A-Za-z]:[\\\\/]|%[^%]+%|\\\\\\\\)"})
        }
        _ => json!({"type": "string", "minLength": 1}),
    }
}

fn firewall_rule_schema() -> Value {
    let ports = json!({"type": ["string", "integer"], "description": "Ports and ascending ranges, e.g. \"80,443,8000-8100\"."});
    let addresses = json!({
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "description": format!("CIDR blocks, ranges like 10.0.0.1-10.0.0.20, or (Windows only) {}", ADDRESS_KEYWORDS.join(", ")),
    });
    json!({
        "type": "object",
        "required": ["name", "direction", "action"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string"},
            "direction": {"enum": ["in", "out"]},
            "action": {"enum": ["allow", "block"]},
            "protocol": {
                "description": "tcp, udp, icmp, icmpv6, any, or an IP protocol number 0..255",
                "anyOf": [
                    {"enum": ["tcp", "udp", "icmp", "icmpv6", "any"]},
                    {"type": "integer", "minimum": 0, "maximum": 255},
                    {"type": "string", "pattern": "^[0-9]{1,3}$"},
                ],
            },
            "local_ports": ports,
            "remote_ports": ports,
            "local_addresses": addresses,
            "remote_addresses": addresses,
            "enabled": {"type": "boolean"},
            "app_path": {"type": "string"},
            "package_family_name": {"type": "string"},
            "service_name": {"type": "string"},
            "profiles": {"type": "array", "items": {"enum": ["domain", "private", "public", "all"]}},
            "interface_types": {"type": "array", "items": {"enum": ["all", "lan", "wireless", "remote_access"]}},
            "edge_traversal": {"type": "boolean"},
            "icmp_types_and_codes": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{1,3}:([0-9]{1,3}|\\*)$"}},
        },
    })
}

/// The map form of a staged rollout (`rollout:` of a policy,
/// `default_rollout:` of the tenant settings).
fn rollout_schema() -> Value {
    let percent = json!({"oneOf": [
        {"type": "number", "minimum": 0, "maximum": 100},
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,2})?%?$"},
    ]});
    json!({
        "type": "object",
        "required": ["stages"],
        "additionalProperties": false,
        "description": "Release a change in stages: each stage adds a share of the devices or a group, soaks, and passes the gates before the next.",
        "properties": {
            "stages": {
                "type": "array",
                "minItems": 1,
                "maxItems": crate::rollout::MAX_STAGES,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "percent": percent,
                        "group": {"type": "string", "minLength": 1},
                        "soak": {"oneOf": [
                            {"type": "integer", "minimum": 0, "maximum": crate::rollout::MAX_SOAK_SECS},
                            {"type": "string", "pattern": "^[0-9]+ ?[smhd]?$"},
                        ]},
                    },
                    "oneOf": [{"required": ["percent"]}, {"required": ["group"]}],
                },
            },
            "gates": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "max_errors": percent,
                    "max_lockouts": percent,
                    "max_silent": percent,
                    "no_new_tamper": {"type": "boolean"},
                },
            },
            "on_failure": {"enum": ["pause", "rollback"]},
        },
    })
}
