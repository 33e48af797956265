//! The `registry` provider (Windows only): writes the policy registry values
//! of `render.rs`, remembers each one in the ledger, and reads them back.
//!
//! **What it owns.** Only the values in its ledger. A value someone else
//! wrote — a local exclusion, a firewall rule of another tool — is never
//! read, changed or removed; a hand-made change to one of Rampart's values
//! reads back as a mismatch, which `enforce` restores and reports as a
//! tamper event.
//!
//! **Read-back.** The registry itself, value by value. Defender and Windows
//! Firewall may also be asked for their effective state on real Windows
//! (`Get-MpPreference`, `Get-NetFirewallProfile`); this version does not:
//! the status says the value is in the policy registry and read back from
//! it, nothing more.
//!
//! **Removal.** Every Windows setting's removal is `revert`: its values are
//! deleted and Windows' own default applies again.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::Value;

use super::config::RegistryConfig;
use super::ledger::{Entry, Ledger};
use super::map;
use super::registry::Hklm;
use super::render::{self, RegValue, Rendered};
use crate::providers::{Change, Plan, Provider, ProviderError, Values};

pub struct RegistryProvider {
    config: RegistryConfig,
    hklm: Hklm,
    /// The whole desired set of the last plan: which profile a firewall
    /// setting owns depends on the others.
    desired: RefCell<Values>,
}

impl RegistryProvider {
    pub fn new(config: RegistryConfig) -> RegistryProvider {
        let hklm = Hklm::new(&config.base_key);
        RegistryProvider {
            config,
            hklm,
            desired: RefCell::new(Values::new()),
        }
    }

    fn ledger(&self) -> Result<Ledger, ProviderError> {
        Ledger::load(&self.config.ledger).map_err(ProviderError::misconfigured)
    }

    fn write(&self, v: &RegValue) -> Result<(), ProviderError> {
        self.hklm.set(&v.key, &v.name, &v.data).map_err(|e| {
            ProviderError::misconfigured(format!(r"cannot write HKLM\{}\{}: {e}", v.key, v.name))
        })
    }

    fn delete(&self, v: &RegValue) -> Result<(), ProviderError> {
        self.hklm.delete(&v.key, &v.name).map_err(|e| {
            ProviderError::misconfigured(format!(r"cannot delete HKLM\{}\{}: {e}", v.key, v.name))
        })
    }

    /// Applies `plan` to `ledger`, which records every value as soon as it
    /// is written, so that a failure half-way leaves a ledger that still
    /// names all of Rampart's values.
    fn apply_to(&self, plan: &Plan, ledger: &mut Ledger) -> Result<(), ProviderError> {
        let desired = self.desired.borrow().clone();
        let rendered = render::render(&desired);
        let mut to_write: BTreeSet<String> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Set { setting, .. } => Some(setting.clone()),
                _ => None,
            })
            .collect();
        // A setting whose values moved (a profile a narrower setting took
        // over) is rewritten too.
        for (setting, r) in &rendered {
            if let Rendered::Values(values) = r {
                if ledger.settings.get(setting).map(|e| &e.values) != Some(values) {
                    to_write.insert(setting.clone());
                }
            }
        }
        for setting in &to_write {
            let next: &[RegValue] = match rendered.get(setting) {
                Some(Rendered::Values(values)) => values,
                _ => &[],
            };
            for stale in ledger.stale(setting, next) {
                self.delete(&stale)?;
            }
            match (rendered.get(setting), desired.get(setting)) {
                (Some(Rendered::Values(values)), Some(value)) => {
                    ledger.settings.insert(
                        setting.clone(),
                        Entry {
                            value: value.clone(),
                            values: Vec::new(),
                        },
                    );
                    for v in values {
                        self.write(v)?;
                        if let Some(e) = ledger.settings.get_mut(setting) {
                            e.values.push(v.clone());
                        }
                    }
                    tracing::info!(event = "registry_written", setting = %setting, values = values.len(), "wrote the policy registry values of a setting");
                }
                _ => {
                    ledger.settings.remove(setting);
                }
            }
        }
        for change in &plan.changes {
            match change {
                Change::Revert { setting } => {
                    for stale in ledger.stale(setting, &[]) {
                        self.delete(&stale)?;
                    }
                    ledger.settings.remove(setting);
                    tracing::info!(event = "registry_reverted", setting = %setting, "deleted the policy registry values of a setting");
                }
                Change::Keep { setting } => {
                    ledger.settings.remove(setting);
                }
                Change::Set { .. } => {}
            }
        }
        Ok(())
    }
}

impl Provider for RegistryProvider {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn handles(&self, setting: &str) -> bool {
        map::target(setting).is_some()
    }

    fn observe(&self) -> Result<Values, ProviderError> {
        let ledger = self.ledger()?;
        let mut out = Values::new();
        for (setting, entry) in &ledger.settings {
            let found = entry
                .values
                .iter()
                .map(|v| self.hklm.get(&v.key, &v.name))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| {
                    ProviderError::transient(format!("cannot read the policy registry: {e}"))
                })?;
            out.insert(
                setting.clone(),
                render::read_back(setting, &entry.value, &entry.values, &found),
            );
        }
        Ok(out)
    }

    fn plan(
        &self,
        desired: &Values,
        observed: &Values,
        removals: &std::collections::BTreeMap<String, rampart_core::catalog::RemovalBehaviour>,
    ) -> Plan {
        *self.desired.borrow_mut() = desired.clone();
        crate::providers::plan(desired, observed, removals)
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError> {
        let mut ledger = self.ledger()?;
        let result = self.apply_to(plan, &mut ledger);
        ledger
            .save(&self.config.ledger)
            .map_err(ProviderError::misconfigured)?;
        result
    }

    fn matches(&self, desired: &Value, observed: Option<&Value>) -> bool {
        crate::providers::compare::same(desired, observed)
    }

    fn not_carried(&self, desired: &Values) -> std::collections::BTreeMap<String, String> {
        render::render(desired)
            .into_iter()
            .filter_map(|(s, r)| match r {
                Rendered::NotCarried(why) => Some((s, why)),
                Rendered::Values(_) => None,
            })
            .collect()
    }

    fn note(&self, setting: &str) -> Option<String> {
        let ledger = self.ledger().ok()?;
        let entry = ledger.settings.get(setting)?;
        let first = entry.values.first()?;
        let more = match entry.values.len() {
            1 => String::new(),
            n => format!(" and {} more value(s)", n - 1),
        };
        Some(format!(
            r"registry: HKLM\{}\{} = {}{more}, written and read back (the policy registry; Defender and Windows Firewall are not asked)",
            first.key, first.name, first.data
        ))
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

    /// A provider over a key of its own under HKLM, in the real registry
    /// (under Wine in CI).
    fn provider(dir: &TempDir) -> RegistryProvider {
        RegistryProvider::new(RegistryConfig {
            enabled: true,
            base_key: format!(r"SOFTWARE\RampartTest\{}", uuid::Uuid::new_v4().simple()),
            ledger: dir.path().join("registry/ledger.json"),
        })
    }

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    fn enforce(
        p: &mut RegistryProvider,
        desired: &Values,
        removals: &BTreeMap<String, RemovalBehaviour>,
    ) -> Values {
        let observed = p.observe().unwrap();
        let the_plan = p.plan(desired, &observed, removals);
        p.apply(&the_plan).unwrap();
        p.observe().unwrap()
    }

    #[test]
    fn writes_reads_back_restores_and_removes_only_its_own_values() {
        let dir = TempDir::new();
        let mut p = provider(&dir);
        let desired = values(&[
            ("real_time_protection", json!(true)),
            ("excluded_paths", json!([r"C:\a", r"C:\b"])),
            (
                "asr_rules",
                json!({"d4f940ab-401b-4efc-aadc-ad5f3c50688a": "audit"}),
            ),
            ("firewall_enabled", json!(true)),
            (
                "firewall_rules",
                json!([{"name": "web", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "443", "enabled": true}]),
            ),
            ("tamper_protection", json!(true)),
        ]);
        let after = enforce(&mut p, &desired, &BTreeMap::new());
        for (k, v) in &desired {
            if k != "tamper_protection" {
                assert!(p.matches(v, after.get(k)), "{k}: {:?}", after.get(k));
            }
        }
        assert!(p.not_carried(&desired).contains_key("tamper_protection"));
        let rtp = r"SOFTWARE\Policies\Microsoft\Windows Defender\Real-Time Protection";
        assert_eq!(
            p.hklm.get(rtp, "DisableRealtimeMonitoring").unwrap(),
            Some(map::RegData::Dword(0))
        );
        assert!(p
            .note("real_time_protection")
            .unwrap()
            .contains("DisableRealtimeMonitoring"));

        // A local rule and a local exclusion are not Rampart's.
        let rules = r"SOFTWARE\Policies\Microsoft\WindowsFirewall\FirewallRules";
        let local = map::RegData::Sz("v2.10|Action=Allow|Dir=In|Name=local|".into());
        p.hklm.set(rules, "local-rule", &local).unwrap();
        let paths = r"SOFTWARE\Policies\Microsoft\Windows Defender\Exclusions\Paths";
        p.hklm
            .set(paths, r"C:\local", &map::RegData::Sz("0".into()))
            .unwrap();

        // Hand-made changes read back as mismatches and are restored.
        p.hklm
            .set(rtp, "DisableRealtimeMonitoring", &map::RegData::Dword(1))
            .unwrap();
        p.hklm.delete(paths, r"C:\b").unwrap();
        let seen = p.observe().unwrap();
        assert_eq!(seen["real_time_protection"], json!(false));
        assert_eq!(seen["excluded_paths"], json!([r"C:\a"]));
        let after = enforce(&mut p, &desired, &BTreeMap::new());
        assert_eq!(after["real_time_protection"], json!(true));
        assert!(p.matches(&desired["excluded_paths"], after.get("excluded_paths")));

        // Removal deletes Rampart's values and only those.
        let removals: BTreeMap<String, RemovalBehaviour> = desired
            .keys()
            .map(|k| (k.clone(), RemovalBehaviour::Revert))
            .collect();
        let after = enforce(&mut p, &Values::new(), &removals);
        assert!(after.is_empty(), "{after:?}");
        assert_eq!(p.hklm.get(rtp, "DisableRealtimeMonitoring").unwrap(), None);
        assert_eq!(p.hklm.get(rules, "Rampart-web").unwrap(), None);
        assert_eq!(p.hklm.get(rules, "local-rule").unwrap(), Some(local));
        assert!(p.hklm.get(paths, r"C:\local").unwrap().is_some());
        assert_eq!(p.hklm.get(paths, r"C:\a").unwrap(), None);
        assert!(plan(&Values::new(), &p.observe().unwrap(), &BTreeMap::new()).is_noop());
    }
}
