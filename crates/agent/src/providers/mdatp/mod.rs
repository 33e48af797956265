//! The `mdatp` provider: Microsoft Defender for Endpoint on Linux, through
//! its documented managed configuration file `mdatp_managed.json`
//! (`[providers.mdatp] path`, by default
//! `/etc/opt/microsoft/mdatp/managed/mdatp_managed.json`).
//!
//! **What it owns.** Only the keys of the settings it carries (`managed.rs`
//! maps each to its key and spelling); every other key — a proxy someone
//! set, another tool's section, exclusions of a kind no policy sets — is
//! kept as it was. The file is replaced atomically, keeping its owner and
//! mode. A file that is not valid JSON is set aside (`….broken-<time>`) and
//! a new one written: Defender ignores a broken file, so leaving it would
//! leave the device without its managed settings.
//!
//! **Read-back.** The file is read again. When the `mdatp` command exists,
//! `mdatp health` is asked too (`health_command`), and for the settings it
//! reports (real-time protection, cloud protection, sample sharing,
//! behaviour monitoring, automatic definition updates) its value is the
//! read-back: the engine's, not the file's. When the command does not exist
//! the file's read-back stands and each setting's status, `succeeded`,
//! carries the message that the engine is not installed — what an admin
//! needs to know: the device is configured, and nothing enforces it yet.
//!
//! **Removal.** Every mdatp setting's removal is `revert`: its key (or its
//! entries) leave the file and Defender's own default applies again.

pub mod config;
mod health;
pub mod managed;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use serde_json::Value;

use self::config::{Format, MdatpConfig};
use self::health::Health;
use super::command::{self, RunError};
use super::replace::replace_file;
use super::{Change, Plan, Provider, ProviderError, Values};

/// How long `mdatp health` may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Defender gets to pick up a changed managed file before the
/// read-back.
const HEALTH_SETTLE: Duration = Duration::from_secs(15);

pub struct MdatpProvider {
    config: MdatpConfig,
    /// What `mdatp health` said at the last observe, for `explain`/`note`.
    health: RefCell<Health>,
}

impl MdatpProvider {
    pub fn new(config: MdatpConfig) -> MdatpProvider {
        MdatpProvider {
            config,
            health: RefCell::new(Health::NotAsked),
        }
    }

    fn path(&self) -> String {
        self.config.path.display().to_string()
    }

    /// The file's document: `{}` when absent; `Err` with the parse error
    /// when it is not a JSON object.
    fn read(&self) -> Result<Result<Value, String>, ProviderError> {
        let bytes = match std::fs::read(&self.config.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Ok(Value::Object(serde_json::Map::new())))
            }
            Err(e) => {
                return Err(ProviderError::misconfigured(format!(
                    "cannot read {}: {e}",
                    self.path()
                )))
            }
        };
        if self.config.format == Format::Plist {
            return Ok(match plist::from_bytes::<Value>(&bytes) {
                Ok(v) if v.is_object() => Ok(v),
                Ok(_) => Err("the top level is not a dictionary".into()),
                Err(e) => Err(e.to_string()),
            });
        }
        Ok(match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err("the top level is not a JSON object".into()),
            Err(e) => Err(e.to_string()),
        })
    }

    fn ask_health(&self) -> Health {
        if self.config.health_command.is_empty() {
            return Health::NotAsked;
        }
        match command::run(&self.config.health_command, HEALTH_TIMEOUT) {
            Ok(out) => Health::Report(health::parse(&out)),
            Err(RunError::NotFound(_)) => Health::NotInstalled,
            Err(RunError::Failed(e)) => Health::Failed(e),
        }
    }

    /// The file's values, with the engine's where `health` reports them.
    fn read_back(file: Values, health: &Health) -> Values {
        file.into_iter()
            .map(|(setting, value)| {
                let value = match (health, health::engine_field(&setting)) {
                    (Health::Report(r), Some(_)) => {
                        health::engine_value(r, &setting).unwrap_or(value)
                    }
                    // The engine did not answer: not known to be in force.
                    (Health::Failed(_), Some(_)) => Value::Null,
                    _ => value,
                };
                (setting, value)
            })
            .collect()
    }

    /// Waits (a little) until the engine reports the file's values.
    fn settle(&self, file: &Values) {
        if !file.keys().any(|s| health::engine_field(s).is_some()) {
            return;
        }
        let deadline = Instant::now() + HEALTH_SETTLE;
        loop {
            let health = self.ask_health();
            let Health::Report(report) = &health else {
                return;
            };
            let agrees = file.iter().all(|(s, v)| {
                health::engine_value(report, s).is_none_or(|e| super::compare::same(v, Some(&e)))
            });
            if agrees || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The document as the file's format spells it.
fn encode(doc: &Value, format: Format) -> Result<Vec<u8>, ProviderError> {
    let mut bytes = Vec::new();
    match format {
        Format::Json => {
            bytes = serde_json::to_vec_pretty(doc)
                .map_err(|e| ProviderError::misconfigured(e.to_string()))?;
            bytes.push(b'\n');
        }
        // A property list has no null: a key someone set to null is left
        // out rather than failing the whole file.
        Format::Plist => plist::to_writer_xml(&mut bytes, &without_nulls(doc)).map_err(|e| {
            ProviderError::misconfigured(format!("cannot write a property list: {e}"))
        })?,
    }
    Ok(bytes)
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| !v.is_null())
                .map(without_nulls)
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Provider for MdatpProvider {
    fn name(&self) -> &'static str {
        "mdatp"
    }

    fn handles(&self, setting: &str) -> bool {
        managed::target(setting).is_some()
    }

    fn observe(&self) -> Result<Values, ProviderError> {
        let doc = match self.read()? {
            Ok(doc) => doc,
            Err(e) => {
                // Defender ignores it too: nothing of it is in force.
                tracing::warn!(event = "drift", provider = "mdatp", path = %self.path(), error = %e, "mdatp_managed.json is not valid; it will be set aside and rewritten");
                Value::Object(serde_json::Map::new())
            }
        };
        let health = self.ask_health();
        let values = MdatpProvider::read_back(managed::read(&doc), &health);
        *self.health.borrow_mut() = health;
        Ok(values)
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError> {
        let (before, mut doc) = match self.read()? {
            Ok(doc) => (Some(doc.clone()), doc),
            Err(e) => {
                let aside = format!("{}.broken-{}", self.path(), crate::clock::now());
                std::fs::rename(&self.config.path, &aside).map_err(|io| {
                    ProviderError::misconfigured(format!(
                        "{} is not valid JSON ({e}) and cannot be set aside: {io}",
                        self.path()
                    ))
                })?;
                tracing::warn!(event = "file_set_aside", path = %self.path(), moved_to = %aside, error = %e, "set aside an invalid mdatp_managed.json");
                (None, Value::Object(serde_json::Map::new()))
            }
        };
        let is_dir = |p: &str| std::path::Path::new(p).is_dir();
        // Reverts first: a key given up by one setting may be another's
        // (enforcementLevel is both real_time_protection's and
        // enforcement_level's).
        let mut changes: Vec<&Change> = plan.changes.iter().collect();
        changes.sort_by_key(|c| !matches!(c, Change::Revert { .. }));
        for change in changes {
            match change {
                Change::Set { setting, value } => managed::set(&mut doc, setting, value, &is_dir),
                Change::Revert { setting } => managed::remove(&mut doc, setting),
                Change::Keep { .. } => {}
            }
        }
        if before.as_ref() != Some(&doc) {
            let bytes = encode(&doc, self.config.format)?;
            replace_file(&self.config.path, &bytes, 0o644).map_err(|e| {
                ProviderError::misconfigured(format!("cannot write {}: {e}", self.path()))
            })?;
            tracing::info!(event = "mdatp_managed_written", path = %self.path(), "wrote mdatp_managed.json");
            self.settle(&managed::read(&doc));
        }
        Ok(())
    }

    fn matches(&self, desired: &Value, observed: Option<&Value>) -> bool {
        super::compare::same(desired, observed)
    }

    fn plan(
        &self,
        desired: &Values,
        observed: &Values,
        removals: &std::collections::BTreeMap<String, rampart_core::catalog::RemovalBehaviour>,
    ) -> Plan {
        let carried: Values = desired
            .iter()
            .filter(|(k, _)| !self.not_carried(desired).contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        super::plan(&carried, observed, removals)
    }

    /// `enforcement_level` and `real_time_protection` are the same key of
    /// the file; when both are assigned the former decides.
    fn not_carried(&self, desired: &Values) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        if desired.contains_key("enforcement_level") && desired.contains_key("real_time_protection")
        {
            out.insert(
                "real_time_protection".to_string(),
                "enforcement_level is also assigned and decides antivirusEngine.enforcementLevel"
                    .to_string(),
            );
        }
        out
    }

    fn explain(&self, setting: &str, desired: &Value) -> Option<ProviderError> {
        let field = health::engine_field(setting)?;
        match &*self.health.borrow() {
            Health::Failed(e) => Some(ProviderError::transient(format!(
                "mdatp_managed.json holds the value, but the engine could not be asked: {e}"
            ))),
            Health::Report(r) => health::engine_value(r, setting).map(|seen| {
                ProviderError::transient(format!(
                    "mdatp_managed.json holds {desired}, but `mdatp health` reports {field} {seen}: Defender for Endpoint has not applied it"
                ))
            }),
            _ => None,
        }
    }

    fn note(&self, _setting: &str) -> Option<String> {
        match &*self.health.borrow() {
            Health::NotInstalled => Some(format!(
                "Microsoft Defender for Endpoint is not installed (no `{}` command): the value is in {} and was read back from it; the engine applies it once installed",
                self.config.health_command.first().map_or("mdatp", String::as_str),
                self.path()
            )),
            Health::NotAsked => Some(format!(
                "read back from {} only (health_command is empty)",
                self.path()
            )),
            Health::Failed(e) => Some(format!(
                "read back from {}; `mdatp health` failed: {e}",
                self.path()
            )),
            Health::Report(r) => health::unhealthy(r)
                .map(|issues| format!("mdatp health reports the engine unhealthy: {issues}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::plan;
    use crate::testutil::TempDir;
    use rampart_core::catalog::RemovalBehaviour;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn provider(dir: &TempDir, health: &[&str]) -> MdatpProvider {
        MdatpProvider::new(MdatpConfig {
            enabled: true,
            path: dir.path().join("managed/mdatp_managed.json"),
            health_command: health.iter().map(|s| s.to_string()).collect(),
            format: Format::Json,
        })
    }

    #[test]
    fn macos_managed_preferences_are_a_property_list_with_the_same_keys() {
        let dir = TempDir::new();
        let path = dir
            .path()
            .join("Managed Preferences/com.microsoft.wdav.plist");
        let mut p = MdatpProvider::new(MdatpConfig {
            enabled: true,
            path: path.clone(),
            health_command: Vec::new(),
            format: Format::Plist,
        });
        let desired = values(&[
            ("real_time_protection", json!(true)),
            ("excluded_paths", json!(["/tmp/x/"])),
            ("pua_protection", json!("block")),
            ("edr_device_tag", json!("finance")),
        ]);
        p.apply(&plan(&desired, &p.observe().unwrap(), &BTreeMap::new()))
            .unwrap();
        // Parsed as a property list, with mdatp_managed.json's keys.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<?xml"), "{text}");
        let doc: plist::Value = plist::from_file(&path).unwrap();
        let root = doc.as_dictionary().unwrap();
        let av = root["antivirusEngine"].as_dictionary().unwrap();
        assert_eq!(av["enforcementLevel"].as_string(), Some("real_time"));
        let excl = av["exclusions"].as_array().unwrap()[0]
            .as_dictionary()
            .unwrap();
        assert_eq!(excl["$type"].as_string(), Some("excludedPath"));
        assert_eq!(excl["path"].as_string(), Some("/tmp/x/"));
        let tags = root["edr"].as_dictionary().unwrap()["tags"]
            .as_array()
            .unwrap();
        assert_eq!(
            tags[0].as_dictionary().unwrap()["value"].as_string(),
            Some("finance")
        );
        // Read back from the plist.
        let after = p.observe().unwrap();
        for (k, v) in &desired {
            assert!(p.matches(v, after.get(k)), "{k}: {:?}", after.get(k));
        }
        // A broken plist is set aside, like a broken JSON file.
        std::fs::write(&path, "not a plist").unwrap();
        assert!(p.observe().unwrap().is_empty());
        p.apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        let after = p.observe().unwrap();
        assert!(desired.iter().all(|(k, v)| p.matches(v, after.get(k))));
    }

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn observe_plan_apply_observe_without_the_engine() {
        let dir = TempDir::new();
        let mut p = provider(&dir, &["/nonexistent/mdatp", "health"]);
        assert!(p.observe().unwrap().is_empty());
        let desired = values(&[
            ("real_time_protection", json!(true)),
            ("excluded_extensions", json!(["log"])),
            ("sample_sharing", json!("none")),
        ]);
        let the_plan = p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new());
        p.apply(&the_plan).unwrap();
        let after = p.observe().unwrap();
        for (k, v) in &desired {
            assert!(p.matches(v, after.get(k)), "{k}");
        }
        let note = p.note("real_time_protection").unwrap();
        assert!(note.contains("not installed"), "{note}");
        let text = std::fs::read_to_string(dir.path().join("managed/mdatp_managed.json")).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["antivirusEngine"]["enforcementLevel"], "real_time");
        assert_eq!(
            doc["cloudService"]["automaticSampleSubmissionConsent"],
            "none"
        );
    }

    #[test]
    fn a_human_key_survives_and_removal_reverts() {
        let dir = TempDir::new();
        let path = dir.path().join("managed/mdatp_managed.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"cloudService": {"proxy": "http://proxy:3128"}}"#).unwrap();
        let mut p = provider(&dir, &[]);
        let desired = values(&[("cloud_protection", json!(true))]);
        p.apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            doc,
            json!({"cloudService": {"proxy": "http://proxy:3128", "enabled": true}})
        );
        let removals = BTreeMap::from([("cloud_protection".to_string(), RemovalBehaviour::Revert)]);
        p.apply(&p.plan(&Values::new(), &p.observe().unwrap(), &removals))
            .unwrap();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc, json!({"cloudService": {"proxy": "http://proxy:3128"}}));
        assert!(p
            .note("cloud_protection")
            .unwrap()
            .contains("health_command is empty"));
    }

    #[test]
    fn a_broken_file_is_set_aside_and_rewritten() {
        let dir = TempDir::new();
        let path = dir.path().join("managed/mdatp_managed.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{ not json").unwrap();
        let mut p = provider(&dir, &[]);
        assert!(p.observe().unwrap().is_empty());
        let desired = values(&[("scan_archives", json!(false))]);
        p.apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        assert_eq!(p.observe().unwrap(), desired);
        let aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".broken-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read_to_string(aside[0].path()).unwrap(),
            "{ not json"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_engines_word_is_the_read_back_when_it_answers() {
        let dir = TempDir::new();
        let report = dir.path().join("health.json");
        std::fs::write(
            &report,
            r#"{"healthy": true, "real_time_protection_enabled": false, "cloud_enabled": true}"#,
        )
        .unwrap();
        let cat = format!("cat {}", report.display());
        let mut p = provider(&dir, &["sh", "-c", &cat]);
        let desired = values(&[
            ("real_time_protection", json!(true)),
            ("cloud_protection", json!(true)),
            ("scan_archives", json!(true)),
        ]);
        p.apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        let after = p.observe().unwrap();
        // The file says real_time; the engine says it is off.
        assert_eq!(after["real_time_protection"], json!(false));
        let e = p.explain("real_time_protection", &json!(true)).unwrap();
        assert!(
            e.message.contains("real_time_protection_enabled false"),
            "{}",
            e.message
        );
        assert_eq!(after["cloud_protection"], json!(true));
        assert_eq!(p.note("cloud_protection"), None);
        // The engine does not report scan_archives: the file is the read-back.
        assert_eq!(after["scan_archives"], json!(true));

        // An engine that does not answer: its settings are not known to be
        // in force.
        let mut broken = provider(
            &dir,
            &["sh", "-c", "echo 'ERROR: daemon not running' >&2; exit 1"],
        );
        broken
            .apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        let after = broken.observe().unwrap();
        assert_eq!(after["real_time_protection"], Value::Null);
        let e = broken
            .explain("real_time_protection", &json!(true))
            .unwrap();
        assert!(e.message.contains("daemon not running"), "{}", e.message);
        assert!(broken
            .note("scan_archives")
            .unwrap()
            .contains("daemon not running"));
    }

    #[test]
    fn passive_mode_beside_another_antivirus() {
        let dir = TempDir::new();
        let path = dir.path().join("managed/mdatp_managed.json");
        let mut p = provider(&dir, &[]);
        let desired = values(&[
            ("enforcement_level", json!("passive")),
            ("real_time_protection", json!(true)),
        ]);
        assert!(p.not_carried(&desired).contains_key("real_time_protection"));
        p.apply(&p.plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["antivirusEngine"]["enforcementLevel"], "passive");
        assert_eq!(p.observe().unwrap()["enforcement_level"], json!("passive"));
        for level in ["on_demand", "real_time"] {
            let d = values(&[("enforcement_level", json!(level))]);
            p.apply(&plan(&d, &p.observe().unwrap(), &BTreeMap::new()))
                .unwrap();
            assert_eq!(p.observe().unwrap()["enforcement_level"], json!(level));
        }
    }

    #[test]
    fn handles_what_the_mapping_names() {
        let dir = TempDir::new();
        let p = provider(&dir, &[]);
        assert!(p.handles("edr_device_tag"));
        assert!(p.handles("excluded_processes"));
        assert!(!p.handles("max_file_size_mb"));
    }
}
