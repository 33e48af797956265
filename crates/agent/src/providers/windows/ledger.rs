//! The ledger of registry values Rampart wrote: per setting, the value it
//! was given and the exact registry values written for it
//! (`<state-dir>/registry/ledger.json`). It is what lets the provider touch
//! only its own values — an exclusion, ASR rule or firewall rule someone
//! else wrote is never read back, changed or removed — and remove exactly
//! what it wrote when a setting is no longer assigned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::render::RegValue;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub settings: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The setting's value when it was written.
    pub value: Value,
    /// The registry values written for it, in render order.
    pub values: Vec<RegValue>,
}

impl Ledger {
    /// The ledger on disk; empty when there is none.
    pub fn load(path: &Path) -> Result<Ledger, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a valid ledger: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        crate::state::write_json(path, self).map_err(|e| e.to_string())
    }

    /// Registry slots held by settings other than `except`.
    fn held_by_others(&self, except: &str) -> BTreeSet<(String, String)> {
        self.settings
            .iter()
            .filter(|(s, _)| s.as_str() != except)
            .flat_map(|(_, e)| e.values.iter().map(RegValue::slot))
            .collect()
    }

    /// The values to delete when `setting` goes from what the ledger holds
    /// to `next` (empty: the setting is removed): those it wrote before,
    /// writes no more, and no other setting holds.
    pub fn stale(&self, setting: &str, next: &[RegValue]) -> Vec<RegValue> {
        let keep: BTreeSet<_> = next.iter().map(RegValue::slot).collect();
        let others = self.held_by_others(setting);
        self.settings
            .get(setting)
            .map(|e| {
                e.values
                    .iter()
                    .filter(|v| !keep.contains(&v.slot()) && !others.contains(&v.slot()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::windows::map::RegData;
    use crate::testutil::TempDir;
    use serde_json::json;

    fn v(key: &str, name: &str, data: RegData) -> RegValue {
        RegValue {
            key: key.into(),
            name: name.into(),
            data,
        }
    }

    #[test]
    fn only_what_no_one_else_holds_is_stale() {
        let switch = v(
            r"T",
            "Threats_ThreatSeverityDefaultAction",
            RegData::Dword(1),
        );
        let low = v(r"T\A", "1", RegData::Sz("2".into()));
        let high = v(r"T\A", "4", RegData::Sz("3".into()));
        let mut ledger = Ledger::default();
        ledger.settings.insert(
            "remediation_action_low".into(),
            Entry {
                value: json!("quarantine"),
                values: vec![low.clone(), switch.clone()],
            },
        );
        ledger.settings.insert(
            "remediation_action_high".into(),
            Entry {
                value: json!("remove"),
                values: vec![high.clone(), switch.clone()],
            },
        );
        // The switch is still held by the other setting.
        assert_eq!(
            ledger.stale("remediation_action_low", &[]),
            std::slice::from_ref(&low)
        );
        ledger.settings.remove("remediation_action_high");
        assert_eq!(
            ledger.stale("remediation_action_low", &[]),
            [low.clone(), switch.clone()]
        );
        // A changed value in the same slot is rewritten, not deleted; the
        // slot compares without case, as the registry does.
        let low_upper = v(r"t\a", "1", RegData::Sz("3".into()));
        assert_eq!(
            ledger.stale("remediation_action_low", &[low_upper, switch]),
            []
        );
        assert!(ledger.stale("unknown", &[]).is_empty());
    }

    #[test]
    fn saved_and_loaded() {
        let dir = TempDir::new();
        let path = dir.path().join("registry/ledger.json");
        assert_eq!(Ledger::load(&path).unwrap(), Ledger::default());
        let mut ledger = Ledger::default();
        ledger.settings.insert(
            "edr_device_tag".into(),
            Entry {
                value: json!("finance"),
                values: vec![v("K", "Group", RegData::Sz("finance".into()))],
            },
        );
        ledger.save(&path).unwrap();
        assert_eq!(Ledger::load(&path).unwrap(), ledger);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("REG_SZ"), "{text}");
        std::fs::write(&path, "{").unwrap();
        assert!(Ledger::load(&path)
            .unwrap_err()
            .contains("not a valid ledger"));
    }
}
