//! Turning untyped objects (a YAML document, an API request body) into checked
//! domain values: a policy, a group, a device, tenant settings.
//!
//! Each function reads a JSON object, reports *every* problem it finds with
//! the field's path, and only returns the typed value when there are none —
//! "parse, don't validate": the rest of the system only ever sees checked
//! values. Cross-object checks (unknown groups, duplicate names) live in
//! `documents`, which sees the whole set.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::error::{join_path, FieldError};
use crate::group_rule::GroupRule;
use crate::model::{
    Assignments, ConflictPolicy, Device, DeviceType, Enforcement, Family, Group, Membership,
    Platform, Policy, TenantSettings, ALL_DEVICES,
};
use crate::value::{check_value, describe};

/// Longest object name accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Most tags one device carries (set by administrators, or reported by
/// its agent).
pub const MAX_TAGS_PER_DEVICE: usize = 64;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Most devices a static group lists.
pub const MAX_GROUP_MEMBERS: usize = 10_000;
/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 2000;

/// Reads fields of one object, collecting errors instead of stopping.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    /// Starts reading `value`, which must be a map whose keys are all in
    /// `known`; unknown keys are reported.
    fn new(value: &'a Value, known: &[&str], what: &str) -> Result<Reader<'a>, Vec<FieldError>> {
        let Some(obj) = value.as_object() else {
            return Err(vec![FieldError::new(
                "",
                format!("expected {what} (a map), found {}", describe(value)),
            )]);
        };
        let mut errors = Vec::new();
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    key.as_str(),
                    format!("unknown field; expected one of {}", known.join(", ")),
                ));
            }
        }
        Ok(Reader { obj, errors })
    }

    fn present(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    /// A single-line string; `None` (after reporting) when missing or bad.
    fn string(&mut self, field: &str, required: bool, max_len: usize) -> Option<String> {
        match self.present(field) {
            None => {
                if required {
                    self.error(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                let s = s.trim();
                if required && s.is_empty() {
                    self.error(field, "must not be empty");
                    None
                } else if s.chars().count() > max_len {
                    self.error(field, format!("is longer than {max_len} characters"));
                    None
                } else if s.chars().any(|c| c.is_control() && c != '\n') {
                    self.error(field, "must not contain control characters");
                    None
                } else {
                    Some(s.to_string())
                }
            }
            Some(other) => {
                self.error(
                    field,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// An object name, normalized (`names::normalize_name`): NFC, trimmed,
    /// no control or invisible characters.
    fn name(&mut self) -> Option<String> {
        match self.present("name") {
            Some(Value::String(raw)) => match crate::names::normalize_name(raw, MAX_NAME_LEN) {
                Ok(name) => Some(name),
                Err(message) => {
                    self.error("name", message);
                    None
                }
            },
            _ => self.string("name", true, MAX_NAME_LEN),
        }
    }

    /// One of a closed set of spellings.
    fn choice<T>(
        &mut self,
        field: &str,
        parse: fn(&str) -> Option<T>,
        expected: &str,
        default: Option<T>,
    ) -> Option<T> {
        match self.present(field) {
            None => {
                if default.is_none() {
                    self.error(field, format!("is required; one of {expected}"));
                }
                default
            }
            Some(Value::String(s)) => match parse(s) {
                Some(v) => Some(v),
                None => {
                    self.error(
                        field,
                        format!("unknown value {s:?}; expected one of {expected}"),
                    );
                    None
                }
            },
            Some(other) => {
                self.error(
                    field,
                    format!("expected one of {expected}, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A list of single-line strings, each checked by `check`.
    fn string_list(
        &mut self,
        field: &str,
        check: impl Fn(&str) -> Result<String, String>,
    ) -> Vec<String> {
        let Some(value) = self.present(field) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.error(field, format!("expected a list, found {}", describe(value)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{field}[{i}]");
            match item.as_str().map(str::trim) {
                Some(s) if !s.is_empty() => match check(s) {
                    Ok(v) => out.push(v),
                    Err(m) => self.error(path, m),
                },
                Some(_) => self.error(path, "must not be empty"),
                None => self.error(path, format!("expected a string, found {}", describe(item))),
            }
        }
        out
    }

    fn bool(&mut self, field: &str, default: bool) -> bool {
        match self.present(field) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    field,
                    format!("expected true or false, found {}", describe(other)),
                );
                default
            }
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => {
                let mut errors = self.errors;
                if errors.is_empty() {
                    errors.push(FieldError::new("", "is invalid"));
                }
                Err(errors)
            }
        }
    }
}

fn plain_name(s: &str) -> Result<String, String> {
    crate::names::normalize_name(s, MAX_NAME_LEN)
}

/// Fields of a policy object (`kind` is the documents layer's business).
pub const POLICY_FIELDS: &[&str] = &[
    "name",
    "description",
    "family",
    "platform",
    "settings",
    "assignments",
    "rollout",
];

/// Checks a policy object against the catalog. Version and modification time
/// are the caller's: a new policy is version 1.
pub fn policy_from_json(
    value: &Value,
    catalog: &Catalog,
    version: u64,
    modified_at: i64,
) -> Result<Policy, Vec<FieldError>> {
    let mut r = Reader::new(value, POLICY_FIELDS, "a policy")?;
    let name = r.name();
    let description = r
        .string("description", false, MAX_DESCRIPTION_LEN)
        .unwrap_or_default();
    let family = r.choice("family", Family::parse, &Family::expected(), None);
    let platform = r.choice("platform", Platform::parse, &Platform::expected(), None);
    let settings = match (family, platform) {
        (Some(family), Some(platform)) => check_settings(&mut r, catalog, family, platform),
        // Without a valid family and platform no setting can be judged; the
        // errors above already say why.
        _ => Some(BTreeMap::new()),
    };
    let assignments = check_assignments(&mut r);
    let rollout = match crate::rollout::choice_from_json(r.present("rollout")) {
        Ok(choice) => choice,
        Err(errors) => {
            r.errors
                .extend(errors.into_iter().map(|e| e.under("rollout")));
            crate::rollout::RolloutChoice::TenantDefault
        }
    };
    let policy = match (name, family, platform, settings) {
        (Some(name), Some(family), Some(platform), Some(settings)) => Some(Policy {
            name,
            description,
            family,
            platform,
            settings,
            assignments,
            version,
            modified_at,
            rollout,
        }),
        _ => None,
    };
    r.finish(policy)
}

fn check_settings(
    r: &mut Reader<'_>,
    catalog: &Catalog,
    family: Family,
    platform: Platform,
) -> Option<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let Some(value) = r.present("settings") else {
        return Some(out);
    };
    let Some(settings) = value.as_object() else {
        r.error(
            "settings",
            format!(
                "expected a map of setting id to value, found {}",
                describe(value)
            ),
        );
        return None;
    };
    for (id, value) in settings {
        let path = join_path("settings", id);
        let Some(def) = catalog.get(id) else {
            r.error(
                path,
                format!(
                    "unknown setting;{} settings of family {family} on {platform} are: {}",
                    crate::suggest::hint(id, catalog.ids_for(family, platform)),
                    catalog.ids_for(family, platform).join(", ")
                ),
            );
            continue;
        };
        if let Some(reason) = &def.deprecated {
            r.error(path, format!("setting is deprecated and refused: {reason}"));
            continue;
        }
        if !def.allows_family(family) {
            let families: Vec<&str> = def.families.iter().map(|f| f.as_str()).collect();
            r.error(
                path,
                format!(
                    "setting is not allowed in family {family}; it belongs to {}",
                    families.join(", ")
                ),
            );
            continue;
        }
        if !def.allows_platform(platform) {
            let platforms: Vec<&str> = def.platforms.iter().map(|p| p.as_str()).collect();
            r.error(
                path,
                format!(
                    "setting is not available on platform {platform}; it is available on {}",
                    platforms.join(", ")
                ),
            );
            continue;
        }
        // "Not configured" is written as an empty value; it is simply absent.
        if value.is_null() {
            continue;
        }
        match check_value(def, value) {
            Ok(normalized) => {
                out.insert(id.clone(), normalized);
            }
            Err(errors) => r.errors.extend(errors.into_iter().map(|e| e.under(&path))),
        }
    }
    Some(out)
}

fn check_assignments(r: &mut Reader<'_>) -> Assignments {
    let Some(value) = r.present("assignments") else {
        return Assignments::default();
    };
    let mut inner = match Reader::new(value, &["include", "exclude"], "assignments") {
        Ok(inner) => inner,
        Err(errors) => {
            r.errors
                .extend(errors.into_iter().map(|e| e.under("assignments")));
            return Assignments::default();
        }
    };
    let mut include = inner.string_list("include", plain_name);
    let mut exclude = inner.string_list("exclude", plain_name);
    if exclude.iter().any(|g| g == ALL_DEVICES) {
        inner.error(
            "exclude",
            format!("{ALL_DEVICES} cannot be excluded; remove the assignment instead"),
        );
    }
    include.sort();
    include.dedup();
    exclude.sort();
    exclude.dedup();
    r.errors
        .extend(inner.errors.into_iter().map(|e| e.under("assignments")));
    Assignments { include, exclude }
}

pub const GROUP_FIELDS: &[&str] = &["name", "description", "rule", "members"];

/// Checks a group object: a name and exactly one of `rule` or `members`.
pub fn group_from_json(value: &Value) -> Result<Group, Vec<FieldError>> {
    let mut r = Reader::new(value, GROUP_FIELDS, "a group")?;
    let name = r.name();
    if name.as_deref() == Some(ALL_DEVICES) {
        r.error("name", format!("{ALL_DEVICES} is reserved"));
    }
    let description = r
        .string("description", false, MAX_DESCRIPTION_LEN)
        .unwrap_or_default();
    let membership = match (r.present("rule"), r.present("members")) {
        (Some(_), Some(_)) => {
            r.error("rule", "a group has either a rule or members, not both");
            None
        }
        (None, None) => {
            r.error("rule", "a group needs a rule (dynamic) or members (static)");
            None
        }
        (Some(_), None) => {
            r.string("rule", true, 4096)
                .and_then(|text| match GroupRule::parse(&text) {
                    Ok(rule) => Some(Membership::Dynamic(rule)),
                    Err(e) => {
                        r.error("rule", format!("syntax error {e}"));
                        None
                    }
                })
        }
        (None, Some(_)) => {
            let mut members = r.string_list("members", plain_name);
            if members.len() > MAX_GROUP_MEMBERS {
                r.error(
                    "members",
                    format!(
                        "lists {} devices; a static group lists at most {MAX_GROUP_MEMBERS} (use a rule)",
                        members.len()
                    ),
                );
            }
            members.sort();
            members.dedup();
            Some(Membership::Static(members))
        }
    };
    let group = match (name, membership) {
        (Some(name), Some(membership)) => Some(Group {
            name,
            description,
            membership,
        }),
        _ => None,
    };
    r.finish(group)
}

pub const DEVICE_FIELDS: &[&str] = &["name", "os", "os_version", "type", "tags"];

/// Checks a device object (offline plans and simulated devices).
pub fn device_from_json(value: &Value) -> Result<Device, Vec<FieldError>> {
    let mut r = Reader::new(value, DEVICE_FIELDS, "a device")?;
    let name = r.name();
    let os = r.choice("os", Platform::parse, &Platform::expected(), None);
    let os_version = r.string("os_version", false, 64).unwrap_or_default();
    let device_type = r.choice(
        "type",
        DeviceType::parse,
        &DeviceType::expected(),
        Some(DeviceType::Workstation),
    );
    let tags = normalize_tags(r.string_list("tags", check_tag));
    if tags.len() > MAX_TAGS_PER_DEVICE {
        r.error(
            "tags",
            format!("a device carries at most {MAX_TAGS_PER_DEVICE} tags"),
        );
    }
    let device = match (name, os, device_type) {
        (Some(name), Some(os), Some(device_type)) => Some(Device {
            name,
            os,
            os_version,
            device_type,
            tags,
        }),
        _ => None,
    };
    r.finish(device)
}

/// Checks one device tag and returns its normalized form
/// (`names::normalize_name`, at most [`MAX_TAG_CHARS`], no commas).
pub fn check_tag(tag: &str) -> Result<String, String> {
    let tag = crate::names::normalize_name(tag, MAX_TAG_CHARS)?;
    if tag.contains(',') {
        return Err("a tag must not contain commas".into());
    }
    Ok(tag)
}

/// Checks a list of tags as given for one device: at most
/// [`MAX_TAGS_PER_DEVICE`], each one [`check_tag`]; every finding under
/// `field[i]`.
pub fn check_tags(field: &str, tags: &[String]) -> Result<Vec<String>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if tags.len() > MAX_TAGS_PER_DEVICE {
        errors.push(FieldError::new(
            field,
            format!(
                "has {} tags; a device carries at most {MAX_TAGS_PER_DEVICE}",
                tags.len()
            ),
        ));
        return Err(errors);
    }
    let mut out = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        match check_tag(tag) {
            Ok(t) => out.push(t),
            Err(m) => errors.push(FieldError::new(format!("{field}[{i}]"), m)),
        }
    }
    if errors.is_empty() {
        Ok(normalize_tags(out))
    } else {
        Err(errors)
    }
}

/// Sorts tags and drops duplicates (tags compare by `names::name_key`,
/// ignoring case).
pub fn normalize_tags(mut tags: Vec<String>) -> Vec<String> {
    tags.sort_by_key(|t| crate::names::name_key(t));
    tags.dedup_by(|a, b| crate::names::name_key(a) == crate::names::name_key(b));
    tags
}

pub const TENANT_FIELDS: &[&str] = &[
    "enforcement",
    "pilot_tag",
    "conflict_policy",
    "allow_takeover",
    "manage_domain_controllers",
    "default_rollout",
];

/// Checks tenant settings; fields left out keep the values of `base`.
pub fn tenant_settings_from_json(
    value: &Value,
    base: &TenantSettings,
) -> Result<TenantSettings, Vec<FieldError>> {
    let mut r = Reader::new(value, TENANT_FIELDS, "tenant settings")?;
    let mut enforcement = base.enforcement.clone();
    if let Some(scope) = r.present("enforcement") {
        let platforms: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        match Reader::new(scope, &platforms, "a map of platform to off, all or tagged") {
            Ok(mut inner) => {
                for platform in Platform::ALL {
                    let current = enforcement.get(platform).copied();
                    if let Some(level) = inner.choice(
                        platform.as_str(),
                        Enforcement::parse,
                        &Enforcement::expected(),
                        current.or(Some(Enforcement::Off)),
                    ) {
                        enforcement.insert(*platform, level);
                    }
                }
                r.errors
                    .extend(inner.errors.into_iter().map(|e| e.under("enforcement")));
            }
            Err(errors) => r
                .errors
                .extend(errors.into_iter().map(|e| e.under("enforcement"))),
        }
    }
    let pilot_tag = match r.string("pilot_tag", false, 64) {
        Some(tag) if tag.is_empty() => {
            r.error("pilot_tag", "must not be empty");
            base.pilot_tag.clone()
        }
        Some(tag) => match check_tag(&tag) {
            Ok(tag) => tag,
            Err(m) => {
                r.error("pilot_tag", m);
                base.pilot_tag.clone()
            }
        },
        None => base.pilot_tag.clone(),
    };
    let conflict_policy = r.choice(
        "conflict_policy",
        ConflictPolicy::parse,
        &ConflictPolicy::expected(),
        Some(base.conflict_policy),
    );
    let allow_takeover = r.bool("allow_takeover", base.allow_takeover);
    let manage_domain_controllers =
        r.bool("manage_domain_controllers", base.manage_domain_controllers);
    // `default_rollout: immediate` (or null) removes the default.
    let default_rollout = match r.obj.get("default_rollout") {
        None => base.default_rollout.clone(),
        Some(v) => match crate::rollout::choice_from_json(Some(v)) {
            Ok(crate::rollout::RolloutChoice::Staged(spec)) => Some(spec),
            Ok(_) => None,
            Err(errors) => {
                r.errors
                    .extend(errors.into_iter().map(|e| e.under("default_rollout")));
                None
            }
        },
    };
    let settings = conflict_policy.map(|conflict_policy| TenantSettings {
        enforcement,
        pilot_tag,
        conflict_policy,
        allow_takeover,
        manage_domain_controllers,
        default_rollout,
    });
    r.finish(settings)
}

/// The canonical JSON of a checked policy: what the server stores and what
/// `policy_from_json` reads back into the same policy.
pub fn policy_to_json(policy: &Policy) -> Value {
    let mut doc = serde_json::json!({
        "name": policy.name,
        "description": policy.description,
        "family": policy.family,
        "platform": policy.platform,
        "settings": policy.settings,
        "assignments": {
            "include": policy.assignments.include,
            "exclude": policy.assignments.exclude,
        },
    });
    if let (Some(rollout), Some(obj)) = (
        crate::rollout::choice_to_json(&policy.rollout),
        doc.as_object_mut(),
    ) {
        obj.insert("rollout".to_string(), rollout);
    }
    doc
}

/// The canonical JSON of a checked group.
pub fn group_to_json(group: &Group) -> Value {
    match &group.membership {
        Membership::Static(members) => serde_json::json!({
            "name": group.name,
            "description": group.description,
            "members": members,
        }),
        Membership::Dynamic(rule) => serde_json::json!({
            "name": group.name,
            "description": group.description,
            "rule": rule.source(),
        }),
    }
}

/// The canonical JSON of tenant settings.
pub fn tenant_settings_to_json(settings: &TenantSettings) -> Value {
    serde_json::json!({
        "enforcement": settings.enforcement,
        "pilot_tag": settings.pilot_tag,
        "conflict_policy": settings.conflict_policy,
        "allow_takeover": settings.allow_takeover,
        "manage_domain_controllers": settings.manage_domain_controllers,
        "default_rollout": settings.default_rollout.as_ref().map(crate::rollout::spec_to_json),
    })
}

#[cfg(test)]
mod round_trip {
    use super::*;

    #[test]
    fn canonical_json_reads_back_into_the_same_objects() {
        let catalog = Catalog::builtin();
        let draft = serde_json::json!({
            "name": "p", "family": "firewall_rules", "platform": "linux",
            "settings": {"firewall_rules": [{"name": "ssh", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "22, 2222"}]},
            "assignments": {"include": ["b", "a", "a"]},
        });
        let policy = policy_from_json(&draft, catalog, 3, 7).unwrap();
        let again = policy_from_json(&policy_to_json(&policy), catalog, 3, 7).unwrap();
        assert_eq!(policy, again);
        assert_eq!(policy.assignments.include, vec!["a", "b"]);

        let group =
            group_from_json(&serde_json::json!({"name": "g", "rule": "tag(\"x\")"})).unwrap();
        assert_eq!(group_from_json(&group_to_json(&group)).unwrap(), group);

        let tenant = TenantSettings::default();
        assert_eq!(
            tenant_settings_from_json(
                &tenant_settings_to_json(&tenant),
                &TenantSettings::default()
            )
            .unwrap(),
            tenant
        );
    }
}
