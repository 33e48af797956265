//! The `file` provider: writes the effective settings to one JSON file
//! (`{setting: value}`, by default `<state>/enforced/settings.json`) and
//! reads them back. It carries every catalog setting, so the whole channel —
//! policy, enforcement, read-back, status — can be tested end to end on any
//! machine before the real providers exist.
//!
//! Rampart owns the file: a value reverted is a key removed (the
//! "component default"), a value kept is left as it is, and a file someone
//! broke by hand is rewritten at the next enforcement.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rampart_core::catalog::Catalog;

use super::{Change, Plan, Provider, ProviderError, Values};
use crate::state::write_atomic;

pub struct FileProvider {
    path: PathBuf,
    settings: BTreeSet<String>,
}

impl FileProvider {
    pub fn new(path: PathBuf, catalog: &Catalog) -> FileProvider {
        FileProvider {
            path,
            settings: catalog.iter().map(|d| d.id.clone()).collect(),
        }
    }

    /// The file's contents; an absent file is an empty one.
    fn read(&self) -> Result<BTreeMap<String, serde_json::Value>, ProviderError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(ProviderError::misconfigured(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )))
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(map) => Ok(map),
            Err(e) => {
                // Someone broke the file by hand: its values are not in
                // force, and apply rewrites it.
                tracing::warn!(
                    event = "drift",
                    provider = "file",
                    path = %self.path.display(),
                    error = %e,
                    "the settings file is not a JSON object; it will be rewritten"
                );
                Ok(BTreeMap::new())
            }
        }
    }
}

impl Provider for FileProvider {
    fn name(&self) -> &'static str {
        "file"
    }

    fn enforces(&self) -> bool {
        false
    }

    fn handles(&self, setting: &str) -> bool {
        self.settings.contains(setting)
    }

    fn observe(&self) -> Result<Values, ProviderError> {
        Ok(self
            .read()?
            .into_iter()
            .filter(|(k, _)| self.handles(k))
            .collect())
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError> {
        let mut content = self.read()?;
        for change in &plan.changes {
            match change {
                Change::Set { setting, value } => {
                    content.insert(setting.clone(), value.clone());
                }
                Change::Revert { setting } => {
                    content.remove(setting);
                }
                Change::Keep { .. } => {}
            }
        }
        let mut bytes = serde_json::to_vec_pretty(&content)
            .map_err(|e| ProviderError::misconfigured(e.to_string()))?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes, false).map_err(|e| {
            ProviderError::misconfigured(format!("cannot write the settings file: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::plan;
    use crate::testutil::TempDir;
    use rampart_core::catalog::RemovalBehaviour;
    use serde_json::json;

    fn provider(dir: &TempDir) -> FileProvider {
        FileProvider::new(
            dir.path().join("enforced/settings.json"),
            Catalog::builtin(),
        )
    }

    #[test]
    fn carries_every_catalog_setting_and_nothing_else() {
        let dir = TempDir::new();
        let p = provider(&dir);
        for def in Catalog::builtin().iter() {
            assert!(p.handles(&def.id), "{}", def.id);
        }
        assert!(!p.handles("no_such_setting"));
    }

    #[test]
    fn observe_plan_apply_observe() {
        let dir = TempDir::new();
        let mut p = provider(&dir);
        assert_eq!(p.observe().unwrap(), Values::new());

        let desired: Values = [
            ("real_time_protection".to_string(), json!(true)),
            ("excluded_paths".to_string(), json!(["/srv", "/tmp"])),
        ]
        .into();
        let observed = p.observe().unwrap();
        let the_plan = p.plan(&desired, &observed, &BTreeMap::new());
        assert_eq!(the_plan.changes.len(), 2);
        p.apply(&the_plan).unwrap();
        assert_eq!(p.observe().unwrap(), desired);

        // A second pass has nothing to do.
        assert!(p
            .plan(&desired, &p.observe().unwrap(), &BTreeMap::new())
            .is_noop());
    }

    #[test]
    fn removal_reverts_or_keeps() {
        let dir = TempDir::new();
        let mut p = provider(&dir);
        let all: Values = [
            ("real_time_protection".to_string(), json!(true)),
            ("scan_archives".to_string(), json!(true)),
        ]
        .into();
        p.apply(&plan(&all, &Values::new(), &BTreeMap::new()))
            .unwrap();

        let removals = BTreeMap::from([
            ("real_time_protection".to_string(), RemovalBehaviour::Revert),
            ("scan_archives".to_string(), RemovalBehaviour::Keep),
        ]);
        let the_plan = p.plan(&Values::new(), &p.observe().unwrap(), &removals);
        p.apply(&the_plan).unwrap();
        let after = p.observe().unwrap();
        assert_eq!(after.get("real_time_protection"), None);
        assert_eq!(after.get("scan_archives"), Some(&json!(true)));
    }

    #[test]
    fn a_file_broken_by_hand_is_rewritten() {
        let dir = TempDir::new();
        let mut p = provider(&dir);
        std::fs::create_dir_all(dir.path().join("enforced")).unwrap();
        std::fs::write(dir.path().join("enforced/settings.json"), "garbage").unwrap();
        assert_eq!(p.observe().unwrap(), Values::new());
        let desired: Values = [("scan_archives".to_string(), json!(false))].into();
        p.apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap();
        assert_eq!(p.observe().unwrap(), desired);
    }

    #[test]
    fn an_unwritable_location_is_misconfigured() {
        let dir = TempDir::new();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let mut p = FileProvider::new(dir.path().join("file/settings.json"), Catalog::builtin());
        let desired: Values = [("scan_archives".to_string(), json!(false))].into();
        let e = p
            .apply(&plan(&desired, &Values::new(), &BTreeMap::new()))
            .unwrap_err();
        assert_eq!(e.kind, crate::providers::ErrorKind::Misconfigured);
    }
}
