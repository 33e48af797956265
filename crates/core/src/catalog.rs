//! The settings catalog: every setting Rampart knows, as data.
//!
//! The catalog lives in YAML files under `catalog/` at the repository root and
//! is embedded into the binary at compile time, so a build always carries the
//! catalog it was tested with. Everything that decides what a setting means —
//! its type, bounds, merge strategy, removal behaviour, security order and the
//! backends that carry it — is read from here, never hard-coded elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::model::{Family, Platform};

/// The catalog files, embedded. Order does not matter: ids are unique.
const CATALOG_FILES: &[(&str, &str)] = &[
    (
        "catalog/antivirus.yaml",
        include_str!("../../../catalog/antivirus.yaml"),
    ),
    (
        "catalog/antivirus_exclusions.yaml",
        include_str!("../../../catalog/antivirus_exclusions.yaml"),
    ),
    (
        "catalog/firewall.yaml",
        include_str!("../../../catalog/firewall.yaml"),
    ),
    (
        "catalog/firewall_rules.yaml",
        include_str!("../../../catalog/firewall_rules.yaml"),
    ),
    (
        "catalog/edr.yaml",
        include_str!("../../../catalog/edr.yaml"),
    ),
    (
        "catalog/asr.yaml",
        include_str!("../../../catalog/asr.yaml"),
    ),
];

/// How values from several policies combine for one device (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    /// One value; different values from two policies are a conflict.
    Scalar,
    /// Lists merged item by item, each item keeping its sources.
    Union,
    /// Entries keyed (ASR rule id, firewall rule name); only a key whose
    /// values differ is a conflict.
    PerKey,
}

/// What happens on the device when a setting is no longer assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalBehaviour {
    /// The component's default is restored.
    Revert,
    /// The last value stays in place.
    Keep,
}

/// The shape of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    Bool,
    Enum,
    Int,
    String,
    StringList,
    /// A list of firewall rules keyed by `name`.
    FirewallRules,
    /// A map from ASR rule id to a mode.
    AsrRules,
}

/// What one item of a `string_list` must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// Any non-empty string.
    #[default]
    String,
    /// An absolute file system path (`/…`, `C:\…`, or one starting with an
    /// environment variable such as `%ProgramData%`).
    Path,
    /// A file extension, with or without the leading dot.
    Extension,
    /// A process name or path.
    Process,
    /// An IPv4 or IPv6 address or CIDR block.
    Cidr,
    /// One of the setting's `values`.
    Enum,
    /// An ASR rule id and a path that rule ignores, `<rule id>=<path>`.
    AsrRuleExclusion,
}

/// A backend that can carry a setting onto a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Windows Policy CSP (Defender, Firewall, ASR, EDR).
    WindowsCsp,
    /// Microsoft Defender for Endpoint's `mdatp_managed.json` (Linux, macOS).
    Mdatp,
    /// ClamAV's `clamd.conf` and clamonacc (Linux).
    Clamav,
    /// A Rampart-owned nftables table (Linux).
    Nftables,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::WindowsCsp => "windows_csp",
            Backend::Mdatp => "mdatp",
            Backend::Clamav => "clamav",
            Backend::Nftables => "nftables",
        }
    }
}

/// How one backend carries a setting on some platforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendMapping {
    pub backend: Backend,
    pub platforms: Vec<Platform>,
    /// The backend's own name for the setting: a CSP path, a JSON key path, a
    /// clamd directive, an nftables construct.
    pub target: String,
    /// How values translate, in words (e.g. `true → 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A key of a `per_key` map setting (ASR rules), with its own constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDefinition {
    pub key: String,
    pub title: String,
    /// Values this key refuses although the setting allows them (e.g. `warn`
    /// for the LSASS rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_values: Vec<String>,
    /// Device types the key applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_types: Vec<String>,
    /// The rule's name in Intune's settings catalog: the last part of the
    /// child setting definition id under the setting's Intune id (for ASR,
    /// `…_attacksurfacereductionrules_<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intune: Option<String>,
}

/// How a setting appears in Microsoft Intune's settings catalog (Graph
/// `deviceManagement/configurationPolicies`), for `rampart import intune`
/// and `rampart export intune`.
///
/// Intune names a setting by a setting definition id (e.g.
/// `device_vendor_msft_policy_config_defender_cloudblocklevel`) and a choice
/// by that id followed by `_` and an option (`…_cloudblocklevel_2`); the
/// mapping below is read from Microsoft's definitions, not from any one
/// export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntuneMapping {
    /// The setting definition id, lower case as Intune writes it.
    pub id: String,
    /// Platforms whose Intune policies use this id.
    pub platforms: Vec<Platform>,
    /// For choice settings (`bool`, `enum`, and `string_list` of kind
    /// `enum`): option suffix → the Rampart value. Integer, string and list
    /// settings have none: Intune's simple value is the Rampart value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, serde_json::Value>,
    /// The group collection setting this one is a child of in Intune, when
    /// Intune nests it (remediation actions under
    /// `…_threatseveritydefaultaction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// One setting of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingDefinition {
    pub id: String,
    pub title: String,
    pub description: String,
    pub families: Vec<Family>,
    pub platforms: Vec<Platform>,
    #[serde(rename = "type")]
    pub kind: SettingKind,
    /// Allowed values of an `enum`, of `string_list` items of kind `enum`, and
    /// of the modes of `asr_rules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Item kind of a `string_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemKind>,
    /// Most items a list may hold in one policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    /// The component's default, in the setting's own type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    pub merge: MergeStrategy,
    pub removal: RemovalBehaviour,
    /// Values from least to most secure, used by `most_secure_wins`. For
    /// `asr_rules` it orders modes; for `firewall_rules` it orders `action`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_order: Vec<serde_json::Value>,
    /// Why the setting is refused, when it is deprecated on this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
    /// Device types the setting applies to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_types: Vec<String>,
    /// Known keys of a `per_key` map (ASR rule ids); other keys are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyDefinition>,
    #[serde(default)]
    pub backends: Vec<BackendMapping>,
    /// Its Intune settings catalog definitions, one per platform family of
    /// ids; empty when Intune has no equivalent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intune: Vec<IntuneMapping>,
}

impl SettingDefinition {
    pub fn allows_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }

    pub fn allows_platform(&self, platform: Platform) -> bool {
        self.platforms.contains(&platform)
    }

    pub fn key(&self, key: &str) -> Option<&KeyDefinition> {
        self.keys.iter().find(|k| k.key.eq_ignore_ascii_case(key))
    }

    /// Rank of a value in the security order; unknown values rank lowest.
    pub fn security_rank(&self, value: &serde_json::Value) -> usize {
        self.security_order
            .iter()
            .position(|v| v == value)
            .map_or(0, |p| p + 1)
    }

    /// Backends that carry this setting on `platform`.
    pub fn backends_for(&self, platform: Platform) -> impl Iterator<Item = &BackendMapping> {
        self.backends
            .iter()
            .filter(move |b| b.platforms.contains(&platform))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    settings: Vec<SettingDefinition>,
}

/// A problem in the catalog's own data: a build that has one is broken.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        source: serde_yaml::Error,
    },
    #[error("{file}: setting {id}: {reason}")]
    Invalid {
        file: String,
        id: String,
        reason: String,
    },
}

/// All settings, by id.
#[derive(Debug, Clone)]
pub struct Catalog {
    settings: BTreeMap<String, SettingDefinition>,
}

impl Catalog {
    /// The catalog embedded in this build.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The embedded files are checked by this crate's tests
            // (`builtin_catalog_loads`), so a failure here is a broken build,
            // not a runtime condition anyone could handle.
            #[allow(clippy::expect_used)]
            Catalog::from_files(CATALOG_FILES).expect("embedded catalog is valid")
        })
    }

    /// Parses and checks catalog files given as `(name, text)` pairs.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Catalog, CatalogError> {
        let mut settings = BTreeMap::new();
        for (file, text) in files {
            let parsed: CatalogFile =
                serde_yaml::from_str(text).map_err(|source| CatalogError::Parse {
                    file: (*file).to_string(),
                    source,
                })?;
            for def in parsed.settings {
                check_definition(&def).map_err(|reason| CatalogError::Invalid {
                    file: (*file).to_string(),
                    id: def.id.clone(),
                    reason,
                })?;
                if settings.contains_key(&def.id) {
                    return Err(CatalogError::Invalid {
                        file: (*file).to_string(),
                        id: def.id.clone(),
                        reason: "id is defined twice".into(),
                    });
                }
                settings.insert(def.id.clone(), def);
            }
        }
        let catalog = Catalog { settings };
        catalog.check_intune_ids()?;
        Ok(catalog)
    }

    pub fn get(&self, id: &str) -> Option<&SettingDefinition> {
        self.settings.get(id)
    }

    /// Settings in id order.
    pub fn iter(&self) -> impl Iterator<Item = &SettingDefinition> {
        self.settings.values()
    }

    /// Settings of a family (deprecated ones included, so they can be
    /// explained), in id order.
    pub fn in_family(&self, family: Family) -> impl Iterator<Item = &SettingDefinition> {
        self.iter().filter(move |d| d.allows_family(family))
    }

    /// The setting whose Intune definition id is `intune_id` on `platform`,
    /// with that mapping.
    pub fn by_intune_id(
        &self,
        intune_id: &str,
        platform: Platform,
    ) -> Option<(&SettingDefinition, &IntuneMapping)> {
        self.iter().find_map(|d| {
            d.intune
                .iter()
                .find(|m| m.id.eq_ignore_ascii_case(intune_id) && m.platforms.contains(&platform))
                .map(|m| (d, m))
        })
    }

    /// One Intune definition id maps to one setting per platform, or import
    /// would have to guess.
    fn check_intune_ids(&self) -> Result<(), CatalogError> {
        let mut seen: BTreeMap<(String, Platform), &str> = BTreeMap::new();
        for def in self.iter() {
            for m in &def.intune {
                for p in &m.platforms {
                    if let Some(other) = seen.insert((m.id.clone(), *p), def.id.as_str()) {
                        return Err(CatalogError::Invalid {
                            file: "catalog".into(),
                            id: def.id.clone(),
                            reason: format!(
                                "Intune id {} on {} is also mapped by {other}",
                                m.id,
                                p.as_str()
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Ids that may appear in `family` on `platform`, for error messages.
    pub fn ids_for(&self, family: Family, platform: Platform) -> Vec<&str> {
        self.iter()
            .filter(|d| {
                d.deprecated.is_none() && d.allows_family(family) && d.allows_platform(platform)
            })
            .map(|d| d.id.as_str())
            .collect()
    }
}

/// Checks that a definition is internally consistent: what the type needs is
/// there, the default is a valid value, merge strategy fits the type.
fn check_definition(def: &SettingDefinition) -> Result<(), String> {
    if def.id.is_empty() || !def.id.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Err("id must be lower_snake_case".into());
    }
    if def.families.is_empty() || def.platforms.is_empty() {
        return Err("families and platforms must not be empty".into());
    }
    let needs_values = matches!(def.kind, SettingKind::Enum | SettingKind::AsrRules)
        || def.item == Some(ItemKind::Enum);
    if needs_values && def.values.is_empty() {
        return Err("type needs `values`".into());
    }
    if def.kind == SettingKind::StringList && def.item.is_none() {
        return Err("string_list needs `item`".into());
    }
    let expected_merge = match def.kind {
        SettingKind::StringList => MergeStrategy::Union,
        SettingKind::FirewallRules | SettingKind::AsrRules => MergeStrategy::PerKey,
        _ => MergeStrategy::Scalar,
    };
    if def.merge != expected_merge {
        return Err(format!(
            "merge must be {expected_merge:?} for type {:?}",
            def.kind
        ));
    }
    if let (Some(min), Some(max)) = (def.min, def.max) {
        if min > max {
            return Err("min is greater than max".into());
        }
    }
    let mut seen = BTreeSet::new();
    for key in &def.keys {
        if !seen.insert(key.key.to_ascii_lowercase()) {
            return Err(format!("key {} is listed twice", key.key));
        }
    }
    for mapping in &def.backends {
        if let Some(p) = mapping
            .platforms
            .iter()
            .find(|p| !def.platforms.contains(p))
        {
            return Err(format!(
                "backend {} names platform {} that the setting does not support",
                mapping.backend.as_str(),
                p.as_str()
            ));
        }
    }
    if def.deprecated.is_none() {
        for platform in &def.platforms {
            if def.backends_for(*platform).next().is_none() {
                return Err(format!(
                    "no backend carries it on platform {}",
                    platform.as_str()
                ));
            }
        }
    }
    check_intune(def)?;
    if let Some(default) = &def.default {
        crate::value::check_value(def, default)
            .map_err(|errors| format!("default is invalid: {}", errors[0].message))?;
    }
    for v in &def.security_order {
        let valid = match def.kind {
            SettingKind::Bool => v.is_boolean(),
            SettingKind::Enum | SettingKind::AsrRules => v
                .as_str()
                .is_some_and(|s| def.values.iter().any(|x| x == s)),
            SettingKind::FirewallRules => matches!(v.as_str(), Some("allow" | "block")),
            _ => false,
        };
        if !valid {
            return Err(format!("security_order holds an invalid value {v}"));
        }
    }
    Ok(())
}

/// An Intune mapping must name platforms the setting has, give options
/// exactly for choice settings, and map every option to a valid value.
fn check_intune(def: &SettingDefinition) -> Result<(), String> {
    let choice = matches!(def.kind, SettingKind::Bool | SettingKind::Enum)
        || (def.kind == SettingKind::StringList && def.item == Some(ItemKind::Enum));
    for m in &def.intune {
        if m.id.is_empty()
            || m.id
                .chars()
                .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            return Err(format!("Intune id {:?} must be lower case", m.id));
        }
        if m.platforms.is_empty() {
            return Err(format!("Intune id {} names no platform", m.id));
        }
        if let Some(p) = m.platforms.iter().find(|p| !def.platforms.contains(p)) {
            return Err(format!(
                "Intune id {} names platform {} that the setting does not support",
                m.id,
                p.as_str()
            ));
        }
        if choice && m.options.is_empty() {
            return Err(format!("Intune id {} needs `options` for a choice", m.id));
        }
        if !choice && !m.options.is_empty() {
            return Err(format!(
                "Intune id {} has `options` but the setting is not a choice",
                m.id
            ));
        }
        let mut values = BTreeSet::new();
        for (option, value) in &m.options {
            let as_setting = if def.kind == SettingKind::StringList {
                serde_json::Value::Array(vec![value.clone()])
            } else {
                value.clone()
            };
            if crate::value::check_value(def, &as_setting).is_err() {
                return Err(format!(
                    "Intune option {option} of {} maps to invalid value {value}",
                    m.id
                ));
            }
            // Export picks the option of a value: it must be unique.
            if !values.insert(value.to_string()) {
                return Err(format!(
                    "Intune id {} maps two options to the value {value}",
                    m.id
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads() {
        let catalog = Catalog::from_files(CATALOG_FILES);
        assert!(catalog.is_ok(), "{:?}", catalog.err());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let file = "settings:\n  - {id: a, title: A, description: d, families: [edr], platforms: [linux], type: bool, merge: scalar, removal: revert, backends: [{backend: mdatp, platforms: [linux], target: x}]}\n";
        let err = Catalog::from_files(&[("one", file), ("two", file)]).err();
        assert!(
            matches!(err, Some(CatalogError::Invalid { reason, .. }) if reason.contains("twice"))
        );
    }

    #[test]
    fn a_setting_without_a_backend_on_a_platform_is_refused() {
        let file = "settings:\n  - {id: a, title: A, description: d, families: [edr], platforms: [linux, macos], type: bool, merge: scalar, removal: revert, backends: [{backend: mdatp, platforms: [linux], target: x}]}\n";
        let err = Catalog::from_files(&[("one", file)]).err();
        assert!(
            matches!(err, Some(CatalogError::Invalid { reason, .. }) if reason.contains("macos"))
        );
    }
}
