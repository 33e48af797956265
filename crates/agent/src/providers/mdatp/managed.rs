//! Pure: where each catalog setting lives in `mdatp_managed.json` and how
//! its value is spelled there (reference.md, "Microsoft Defender for
//! Endpoint on Linux"), merged into a document that may hold keys Rampart
//! does not manage — those are left exactly as they are.
//!
//! Lists of entries are shared between settings by a discriminator: the
//! exclusion entries of `antivirusEngine.exclusions` by `$type`, the
//! `antivirusEngine.threatTypeSettings` by `key`, `edr.tags` by `key`. A
//! setting owns the entries of its discriminator only: `excluded_paths`
//! replaces every `excludedPath` entry and leaves `excludedFileExtension`
//! entries (another setting's) and unknown `$type`s alone.

use serde_json::{json, Map, Value};

use crate::providers::Values;

/// How a setting's value is spelled in the file.
#[derive(Debug, Clone, Copy)]
pub enum Spelling {
    /// As is.
    Same,
    /// A bool as one of two strings: (true, false).
    Bool(&'static str, &'static str),
    /// Catalog value → file value.
    Map(&'static [(&'static str, &'static str)]),
}

/// Where a setting lives.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A key at this path of objects.
    Key(&'static [&'static str], Spelling),
    /// Entries of `antivirusEngine.exclusions` with this `$type`, the value
    /// in this field.
    Exclusion(&'static str, &'static str),
    /// The entry of `antivirusEngine.threatTypeSettings` with this key.
    ThreatType(&'static str),
    /// The `GROUP` entry of `edr.tags`.
    EdrGroupTag,
}

const AV: &str = "antivirusEngine";
const CLOUD: &str = "cloudService";

/// Every setting the provider carries, and where.
pub const MAPPING: &[(&str, Target)] = &[
    (
        "real_time_protection",
        Target::Key(
            &[AV, "enforcementLevel"],
            Spelling::Bool("real_time", "on_demand"),
        ),
    ),
    // Passive mode beside another antivirus: the documented values as is.
    (
        "enforcement_level",
        Target::Key(&[AV, "enforcementLevel"], Spelling::Same),
    ),
    (
        "scan_archives",
        Target::Key(&[AV, "scanArchives"], Spelling::Same),
    ),
    (
        "behavior_monitoring",
        Target::Key(
            &[AV, "behaviorMonitoring"],
            Spelling::Bool("enabled", "disabled"),
        ),
    ),
    (
        "pua_protection",
        Target::ThreatType("potentially_unwanted_application"),
    ),
    ("archive_bomb_action", Target::ThreatType("archive_bomb")),
    (
        "scan_after_definition_update",
        Target::Key(&[AV, "scanAfterDefinitionUpdate"], Spelling::Same),
    ),
    (
        "max_on_demand_scan_threads",
        Target::Key(&[AV, "maximumOnDemandScanThreads"], Spelling::Same),
    ),
    (
        "scan_results_retention_days",
        Target::Key(&[AV, "scanResultsRetentionDays"], Spelling::Same),
    ),
    (
        "scan_history_maximum_items",
        Target::Key(&[AV, "scanHistoryMaximumItems"], Spelling::Same),
    ),
    (
        "enable_file_hash_computation",
        Target::Key(&[AV, "enableFileHashComputation"], Spelling::Same),
    ),
    (
        "allowed_threats",
        Target::Key(&[AV, "allowedThreats"], Spelling::Same),
    ),
    (
        "disallowed_threat_actions",
        Target::Key(&[AV, "disallowedThreatActions"], Spelling::Same),
    ),
    (
        "non_exec_mount_policy",
        Target::Key(&[AV, "nonExecMountPolicy"], Spelling::Same),
    ),
    (
        "unmonitored_filesystems",
        Target::Key(&[AV, "unmonitoredFilesystems"], Spelling::Same),
    ),
    (
        "threat_type_settings_merge_policy",
        Target::Key(&[AV, "threatTypeSettingsMergePolicy"], Spelling::Same),
    ),
    ("excluded_paths", Target::Exclusion("excludedPath", "path")),
    (
        "excluded_extensions",
        Target::Exclusion("excludedFileExtension", "extension"),
    ),
    (
        "excluded_processes",
        Target::Exclusion("excludedFileName", "name"),
    ),
    (
        "exclusions_merge_policy",
        Target::Key(&[AV, "exclusionsMergePolicy"], Spelling::Same),
    ),
    (
        "cloud_protection",
        Target::Key(&[CLOUD, "enabled"], Spelling::Same),
    ),
    (
        "cloud_block_level",
        Target::Key(&[CLOUD, "cloudBlockLevel"], Spelling::Same),
    ),
    (
        "automatic_definition_updates",
        Target::Key(&[CLOUD, "automaticDefinitionUpdateEnabled"], Spelling::Same),
    ),
    (
        "diagnostic_level",
        Target::Key(&[CLOUD, "diagnosticLevel"], Spelling::Same),
    ),
    (
        "sample_sharing",
        Target::Key(&[CLOUD, "automaticSampleSubmissionConsent"], Spelling::Same),
    ),
    (
        "network_protection",
        Target::Key(
            &["networkProtection", "enforcementLevel"],
            Spelling::Map(&[("off", "disabled"), ("audit", "audit"), ("block", "block")]),
        ),
    ),
    ("edr_device_tag", Target::EdrGroupTag),
    (
        "edr_group_ids",
        Target::Key(&["edr", "groupIds"], Spelling::Same),
    ),
];

pub fn target(setting: &str) -> Option<Target> {
    MAPPING
        .iter()
        .find(|(id, _)| *id == setting)
        .map(|(_, t)| *t)
}

impl Spelling {
    pub fn to_file(self, v: &Value) -> Value {
        match (self, v) {
            (Spelling::Bool(t, f), Value::Bool(b)) => json!(if *b { t } else { f }),
            (Spelling::Map(pairs), Value::String(s)) => pairs
                .iter()
                .find(|(c, _)| c == s)
                .map_or_else(|| v.clone(), |(_, f)| json!(f)),
            _ => v.clone(),
        }
    }

    /// The catalog value a file value means; a spelling it does not know
    /// comes back as it is, so that it shows as a mismatch.
    pub fn from_file(self, v: &Value) -> Value {
        match (self, v) {
            (Spelling::Bool(t, _), Value::String(s)) if s == t => json!(true),
            (Spelling::Bool(_, f), Value::String(s)) if s == f => json!(false),
            (Spelling::Map(pairs), Value::String(s)) => pairs
                .iter()
                .find(|(_, f)| f == s)
                .map_or_else(|| v.clone(), |(c, _)| json!(c)),
            _ => v.clone(),
        }
    }
}

fn get<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, k| v.get(*k))
}

/// The value at `path`, with objects made on the way (over whatever else
/// was there); a missing key is made `null`.
fn slot<'a>(doc: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut v = doc;
    for k in path {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v = &mut v[*k];
    }
    v
}

/// Removes `path`'s last key, then the objects on the way that it left
/// empty.
fn remove_key(doc: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(Value::Object(map)) = path_mut(doc, parents) else {
        return;
    };
    map.remove(*last);
    if map.is_empty() && !parents.is_empty() {
        remove_key(doc, parents);
    }
}

fn path_mut<'a>(doc: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, k| v.get_mut(*k))
}

/// The entries of the list at `path` that `keep` keeps; the list (and
/// objects it empties) disappears when nothing is left and nothing is
/// added.
fn replace_entries(doc: &mut Value, path: &[&str], keep: impl Fn(&Value) -> bool, add: Vec<Value>) {
    let mut entries: Vec<Value> = match get(doc, path) {
        Some(Value::Array(a)) => a.iter().filter(|e| keep(e)).cloned().collect(),
        _ => Vec::new(),
    };
    entries.extend(add);
    if entries.is_empty() {
        if get(doc, path).is_some() {
            remove_key(doc, path);
        }
    } else {
        *slot(doc, path) = Value::Array(entries);
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `value` of `setting` into `doc`. `is_dir` tells whether a path is
/// an existing directory (for `isDirectory`).
pub fn set(doc: &mut Value, setting: &str, value: &Value, is_dir: &dyn Fn(&str) -> bool) {
    let Some(target) = target(setting) else {
        return;
    };
    match target {
        Target::Key(path, spelling) => *slot(doc, path) = spelling.to_file(value),
        Target::Exclusion(kind, field) => {
            let add = strings(value)
                .into_iter()
                .map(|item| match kind {
                    "excludedPath" => json!({
                        "$type": kind,
                        "isDirectory": item.ends_with('/') || is_dir(&item),
                        field: item,
                    }),
                    "excludedFileExtension" => json!({
                        "$type": kind,
                        field: format!(".{}", item.trim_start_matches('.')),
                    }),
                    _ => json!({ "$type": kind, field: item }),
                })
                .collect();
            replace_entries(
                doc,
                &[AV, "exclusions"],
                |e| e.get("$type").and_then(Value::as_str) != Some(kind),
                add,
            );
        }
        Target::ThreatType(key) => replace_entries(
            doc,
            &[AV, "threatTypeSettings"],
            |e| e.get("key").and_then(Value::as_str) != Some(key),
            vec![json!({"key": key, "value": value})],
        ),
        Target::EdrGroupTag => replace_entries(
            doc,
            &["edr", "tags"],
            |e| e.get("key").and_then(Value::as_str) != Some("GROUP"),
            vec![json!({"key": "GROUP", "value": value})],
        ),
    }
}

/// Takes `setting` out of `doc`: Defender for Endpoint's own default (or a
/// local value) applies again.
pub fn remove(doc: &mut Value, setting: &str) {
    let Some(target) = target(setting) else {
        return;
    };
    match target {
        Target::Key(path, _) => remove_key(doc, path),
        Target::Exclusion(kind, _) => replace_entries(
            doc,
            &[AV, "exclusions"],
            |e| e.get("$type").and_then(Value::as_str) != Some(kind),
            Vec::new(),
        ),
        Target::ThreatType(key) => replace_entries(
            doc,
            &[AV, "threatTypeSettings"],
            |e| e.get("key").and_then(Value::as_str) != Some(key),
            Vec::new(),
        ),
        Target::EdrGroupTag => replace_entries(
            doc,
            &["edr", "tags"],
            |e| e.get("key").and_then(Value::as_str) != Some("GROUP"),
            Vec::new(),
        ),
    }
}

/// The settings `doc` carries, as catalog values. Absent keys and lists
/// with no entry of a setting's kind are not reported.
pub fn read(doc: &Value) -> Values {
    let mut out = Values::new();
    for (setting, target) in MAPPING {
        let value = match *target {
            Target::Key(path, spelling) => get(doc, path).map(|v| spelling.from_file(v)),
            Target::Exclusion(kind, field) => {
                let items: Vec<Value> = entries(doc, &[AV, "exclusions"])
                    .filter(|e| e.get("$type").and_then(Value::as_str) == Some(kind))
                    .map(|e| e.get(field).cloned().unwrap_or(Value::Null))
                    .collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Target::ThreatType(key) => entries(doc, &[AV, "threatTypeSettings"])
                .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
                .map(|e| e.get("value").cloned().unwrap_or(Value::Null)),
            Target::EdrGroupTag => entries(doc, &["edr", "tags"])
                .find(|e| e.get("key").and_then(Value::as_str) == Some("GROUP"))
                .map(|e| e.get("value").cloned().unwrap_or(Value::Null)),
        };
        if let Some(v) = value {
            out.insert((*setting).to_string(), v);
        }
    }
    out
}

fn entries<'a>(doc: &'a Value, path: &[&str]) -> impl Iterator<Item = &'a Value> {
    get(doc, path)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::catalog::{Backend, Catalog};
    use rampart_core::model::Platform;

    fn no_dirs(_: &str) -> bool {
        false
    }

    #[test]
    fn maps_every_mdatp_setting_of_the_catalog() {
        let catalog = Catalog::builtin();
        let from_catalog: Vec<&str> = catalog
            .iter()
            .filter(|d| {
                d.backends_for(Platform::Linux)
                    .any(|b| b.backend == Backend::Mdatp)
            })
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(from_catalog.len(), MAPPING.len());
        for id in from_catalog {
            assert!(target(id).is_some(), "{id}");
        }
    }

    #[test]
    fn writes_the_documented_keys_and_values() {
        let mut doc = json!({});
        let is_dir = |p: &str| p == "/var/lib/db";
        for (k, v) in [
            ("real_time_protection", json!(true)),
            ("behavior_monitoring", json!(false)),
            ("pua_protection", json!("block")),
            ("archive_bomb_action", json!("audit")),
            ("network_protection", json!("off")),
            ("sample_sharing", json!("safe")),
            ("edr_device_tag", json!("linux-fleet")),
            ("edr_group_ids", json!("g1")),
            (
                "excluded_paths",
                json!(["/var/lib/db", "/srv/cache/", "/opt/app.bin"]),
            ),
            ("excluded_extensions", json!(["log", ".tmp"])),
            ("excluded_processes", json!(["/usr/bin/backup"])),
            ("max_on_demand_scan_threads", json!(4)),
            ("unmonitored_filesystems", json!(["nfs"])),
        ] {
            set(&mut doc, k, &v, &is_dir);
        }
        assert_eq!(
            doc,
            json!({
                "antivirusEngine": {
                    "enforcementLevel": "real_time",
                    "behaviorMonitoring": "disabled",
                    "threatTypeSettings": [
                        {"key": "potentially_unwanted_application", "value": "block"},
                        {"key": "archive_bomb", "value": "audit"}
                    ],
                    "exclusions": [
                        {"$type": "excludedPath", "isDirectory": true, "path": "/var/lib/db"},
                        {"$type": "excludedPath", "isDirectory": true, "path": "/srv/cache/"},
                        {"$type": "excludedPath", "isDirectory": false, "path": "/opt/app.bin"},
                        {"$type": "excludedFileExtension", "extension": ".log"},
                        {"$type": "excludedFileExtension", "extension": ".tmp"},
                        {"$type": "excludedFileName", "name": "/usr/bin/backup"}
                    ],
                    "maximumOnDemandScanThreads": 4,
                    "unmonitoredFilesystems": ["nfs"]
                },
                "networkProtection": {"enforcementLevel": "disabled"},
                "cloudService": {"automaticSampleSubmissionConsent": "safe"},
                "edr": {"tags": [{"key": "GROUP", "value": "linux-fleet"}], "groupIds": "g1"}
            })
        );
        let back = read(&doc);
        assert_eq!(back["real_time_protection"], json!(true));
        assert_eq!(back["behavior_monitoring"], json!(false));
        assert_eq!(back["network_protection"], json!("off"));
        assert_eq!(back["pua_protection"], json!("block"));
        assert_eq!(back["edr_device_tag"], json!("linux-fleet"));
        assert_eq!(back["excluded_extensions"], json!([".log", ".tmp"]));
        assert_eq!(back["excluded_processes"], json!(["/usr/bin/backup"]));
        // enforcementLevel reads back as both real_time_protection and
        // enforcement_level.
        assert_eq!(back.len(), 14);
    }

    #[test]
    fn keys_rampart_does_not_manage_are_left_alone() {
        let mut doc = json!({
            "antivirusEngine": {
                "enforcementLevel": "passive",
                "exclusions": [
                    {"$type": "excludedPath", "isDirectory": true, "path": "/by/hand"},
                    {"$type": "excludedFileExtension", "extension": ".iso"}
                ],
                "threatTypeSettings": [{"key": "archive_bomb", "value": "off"}]
            },
            "cloudService": {"proxy": "http://proxy:8080"},
            "someToolsKey": {"x": 1}
        });
        set(&mut doc, "excluded_paths", &json!(["/srv/"]), &no_dirs);
        set(&mut doc, "pua_protection", &json!("audit"), &no_dirs);
        set(&mut doc, "real_time_protection", &json!(false), &no_dirs);
        assert_eq!(doc["someToolsKey"], json!({"x": 1}));
        assert_eq!(doc["cloudService"]["proxy"], "http://proxy:8080");
        assert_eq!(doc["antivirusEngine"]["enforcementLevel"], "on_demand");
        // excluded_paths owns the excludedPath entries, not the others.
        assert_eq!(
            doc["antivirusEngine"]["exclusions"],
            json!([
                {"$type": "excludedFileExtension", "extension": ".iso"},
                {"$type": "excludedPath", "isDirectory": true, "path": "/srv/"}
            ])
        );
        assert_eq!(
            doc["antivirusEngine"]["threatTypeSettings"],
            json!([
                {"key": "archive_bomb", "value": "off"},
                {"key": "potentially_unwanted_application", "value": "audit"}
            ])
        );
    }

    #[test]
    fn removal_takes_out_only_the_settings_keys() {
        let mut doc = json!({"cloudService": {"proxy": "p"}, "edr": {"tags": [{"key": "GROUP", "value": "a"}]}});
        for (k, v) in [
            ("sample_sharing", json!("all")),
            ("excluded_extensions", json!(["log"])),
            ("real_time_protection", json!(true)),
        ] {
            set(&mut doc, k, &v, &no_dirs);
        }
        for k in [
            "sample_sharing",
            "excluded_extensions",
            "real_time_protection",
            "edr_device_tag",
        ] {
            remove(&mut doc, k);
        }
        // Objects Rampart's removals emptied go; the proxy stays.
        assert_eq!(doc, json!({"cloudService": {"proxy": "p"}}));
        assert!(read(&doc).is_empty());
        // Removing what is not there changes nothing.
        remove(&mut doc, "edr_group_ids");
        assert_eq!(doc, json!({"cloudService": {"proxy": "p"}}));
    }

    #[test]
    fn unknown_spellings_read_back_as_they_are() {
        let doc = json!({"antivirusEngine": {"enforcementLevel": "passive"}, "networkProtection": {"enforcementLevel": "weird"}});
        let back = read(&doc);
        assert_eq!(back["real_time_protection"], json!("passive"));
        assert_eq!(back["network_protection"], json!("weird"));
    }

    #[test]
    fn an_empty_list_removes_the_entries() {
        let mut doc = json!({});
        set(&mut doc, "excluded_paths", &json!(["/a/"]), &no_dirs);
        set(&mut doc, "excluded_paths", &json!([]), &no_dirs);
        assert_eq!(doc, json!({}));
    }
}
