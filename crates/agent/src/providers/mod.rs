//! Providers: each owns one real component on the device (a file, nftables,
//! ClamAV, Microsoft Defender's managed configuration…) and has the same
//! shape (DESIGN.md §6, STYLE.md point 10):
//!
//! 1. `observe()` — read the component's current values;
//! 2. `plan(desired, observed, removals)` — pure: what must change;
//! 3. `apply(plan)` — make the change, atomically where the component allows;
//! 4. `observe()` again — `enforce` calls a setting `succeeded` only when
//!    this read-back matches.
//!
//! Failures are [`ProviderError`]s of a [`ErrorKind`] the agent acts on, not
//! strings. To add a provider: a folder under `providers/` with a type that
//! implements [`Provider`], and one line in [`build`] that adds it when its
//! component is present and the configuration enables it.

pub mod clamav;
mod command;
mod compare;
pub mod file;
pub mod mdatp;
pub mod nftables;
mod replace;
pub mod windows;

use std::collections::BTreeMap;

use rampart_core::catalog::{Catalog, RemovalBehaviour};
use serde_json::Value;

use crate::config::ProvidersConfig;

/// Setting id → value.
pub type Values = BTreeMap<String, Value>;

/// What the agent does about a provider failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Might work in a moment (a busy daemon, a lock): retried soon.
    Transient,
    /// The component cannot carry the setting on this device: reported
    /// `not_applicable`.
    Unsupported,
    /// The component is broken or set up in a way the provider cannot work
    /// with: reported `error` until a person fixes it.
    Misconfigured,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ProviderError {
    pub fn transient(message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind: ErrorKind::Unsupported,
            message: message.into(),
        }
    }

    pub fn misconfigured(message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind: ErrorKind::Misconfigured,
            message: message.into(),
        }
    }

    /// The stable `error_code` of a setting status.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Transient => "provider_transient",
            ErrorKind::Unsupported => "provider_unsupported",
            ErrorKind::Misconfigured => "provider_misconfigured",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Give the setting this value.
    Set { setting: String, value: Value },
    /// No longer assigned and its removal behaviour is `revert`: restore the
    /// component's default.
    Revert { setting: String },
    /// No longer assigned and its removal behaviour is `keep`: the value
    /// stays; Rampart stops managing it. Nothing to do, said for the record.
    Keep { setting: String },
}

/// What `apply` is to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    /// Whether applying would change nothing on the component.
    pub fn is_noop(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c, Change::Keep { .. }))
    }
}

/// One component on the device.
pub trait Provider: Send {
    /// Stable name, used in statuses, logs and `applied.json`'s ledger.
    fn name(&self) -> &'static str;

    /// Whether a value this provider applies is in force on the device.
    /// The `file` provider only writes values down, so what it applies is
    /// reported `recorded`, never `succeeded`.
    fn enforces(&self) -> bool {
        true
    }

    /// Whether this provider carries `setting` (a catalog id).
    fn handles(&self, setting: &str) -> bool;

    /// The component's current values of the settings it carries.
    fn observe(&self) -> Result<Values, ProviderError>;

    /// Pure: the changes that take `observed` to `desired`, and undo
    /// `removals` (settings Rampart set before that are no longer assigned,
    /// with their catalog removal behaviour). Providers whose component
    /// needs a whole-state plan (an nftables table) override it.
    fn plan(
        &self,
        desired: &Values,
        observed: &Values,
        removals: &BTreeMap<String, RemovalBehaviour>,
    ) -> Plan {
        plan(desired, observed, removals)
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError>;

    /// Whether a read-back value is the desired one. Providers whose
    /// component normalizes values (case, order) override it.
    fn matches(&self, desired: &Value, observed: Option<&Value>) -> bool {
        observed == Some(desired)
    }

    /// Whether a read-back value is the component's default (after a
    /// revert): absent, or equal to the catalog's default.
    fn is_default(&self, observed: Option<&Value>, default: Option<&Value>) -> bool {
        observed.is_none() || observed == default
    }

    /// Why `setting`'s read-back differs from `desired`, in the component's
    /// own words, when the provider knows (a daemon that did not restart, a
    /// value the component cannot carry): reported instead of a bare
    /// `verify_mismatch`. Called after the read-back.
    fn explain(&self, _setting: &str, _desired: &Value) -> Option<ProviderError> {
        None
    }

    /// A remark that goes with a `succeeded` status (e.g. "the engine is not
    /// installed: the managed file is in place and read back"). Called after
    /// the read-back.
    fn note(&self, _setting: &str) -> Option<String> {
        None
    }

    /// Settings of `desired` the component does not carry *given the rest
    /// of `desired`* (a default action while the firewall is off), each
    /// with why: planned with the rest, but reported `not_applicable`
    /// rather than verified.
    fn not_carried(&self, _desired: &Values) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Lockout protection (DESIGN.md §6), for components whose change can
    /// cut the device off from its server (a firewall): the deadline of the
    /// last change the server has not been reached since. The run loop then
    /// calls `confirmed` after a successful call on a new connection, or
    /// `roll_back` once the deadline passes.
    fn confirm_by(&self) -> Option<std::time::Instant> {
        None
    }

    /// The server answered after the change: it stays.
    fn confirmed(&mut self) {}

    /// Restores the component as it was before the unconfirmed change.
    fn roll_back(&mut self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// The plan most providers need: set what differs, revert or keep what is
/// no longer assigned. Deterministic: changes come in setting order.
pub fn plan(
    desired: &Values,
    observed: &Values,
    removals: &BTreeMap<String, RemovalBehaviour>,
) -> Plan {
    let mut changes = Vec::new();
    for (setting, value) in desired {
        if observed.get(setting) != Some(value) {
            changes.push(Change::Set {
                setting: setting.clone(),
                value: value.clone(),
            });
        }
    }
    for (setting, removal) in removals {
        if desired.contains_key(setting) {
            continue;
        }
        changes.push(match removal {
            RemovalBehaviour::Revert if observed.contains_key(setting) => Change::Revert {
                setting: setting.clone(),
            },
            // Already at the default: nothing to revert.
            RemovalBehaviour::Revert => continue,
            RemovalBehaviour::Keep => Change::Keep {
                setting: setting.clone(),
            },
        });
    }
    Plan { changes }
}

/// The providers of this device: those the configuration enables and whose
/// component is present.
/// `server_url` is the device channel's URL (the nftables provider keeps
/// the agent's way to it open).
pub fn build(
    config: &ProvidersConfig,
    catalog: &Catalog,
    server_url: &str,
) -> Vec<Box<dyn Provider>> {
    let mut providers: Vec<Box<dyn Provider>> = Vec::new();
    if config.file.enabled {
        providers.push(Box::new(file::FileProvider::new(
            config.file.path.clone(),
            catalog,
        )));
    }
    if config.nftables.enabled {
        providers.push(Box::new(nftables::NftablesProvider::new(
            &config.nftables,
            catalog,
            server_url,
        )));
    }
    #[cfg(unix)]
    if config.clamav.enabled {
        providers.push(Box::new(clamav::ClamavProvider::new(config.clamav.clone())));
    }
    if config.mdatp.enabled {
        providers.push(Box::new(mdatp::MdatpProvider::new(config.mdatp.clone())));
    }
    #[cfg(windows)]
    if config.registry.enabled {
        providers.push(Box::new(windows::RegistryProvider::new(
            config.registry.clone(),
        )));
    }
    providers
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn plan_sets_only_what_differs() {
        let desired = values(&[("a", json!(true)), ("b", json!(3))]);
        let observed = values(&[("a", json!(true)), ("b", json!(2))]);
        let p = plan(&desired, &observed, &BTreeMap::new());
        assert_eq!(
            p.changes,
            [Change::Set {
                setting: "b".into(),
                value: json!(3)
            }]
        );
        assert!(plan(&desired, &desired, &BTreeMap::new()).is_noop());
    }

    #[test]
    fn plan_reverts_or_keeps_what_is_no_longer_assigned() {
        let observed = values(&[("r", json!(1)), ("k", json!(2))]);
        let removals = BTreeMap::from([
            ("r".to_string(), RemovalBehaviour::Revert),
            ("k".to_string(), RemovalBehaviour::Keep),
            ("gone".to_string(), RemovalBehaviour::Revert),
        ]);
        let p = plan(&Values::new(), &observed, &removals);
        assert_eq!(
            p.changes,
            [
                Change::Keep {
                    setting: "k".into()
                },
                Change::Revert {
                    setting: "r".into()
                },
            ]
        );
        assert!(!p.is_noop());
    }
}
