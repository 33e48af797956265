//! The `nftables` provider (Linux): `firewall_enabled`,
//! `default_inbound_action`, `default_outbound_action` and
//! `firewall_rules` as one table, `inet rampart` by default, that Rampart
//! owns. Other tables — the distribution's own firewall — are never
//! touched.
//!
//! - `observe`: `nft -j list table inet rampart`, parsed (`parse.rs`) into
//!   the settings' values; an absent table reads `firewall_enabled` false,
//!   which is also this component's default (Rampart filters nothing).
//! - `plan` (pure): the table the settings call for (`render.rs`) against
//!   the table read back; any difference, in a setting or in the table's
//!   scaffolding, replaces the whole table.
//! - `apply`: one script — `add table; delete table; table … { … }` —
//!   checked with `nft --check -f -`, then loaded with `nft -f -`: nft
//!   applies a file in one transaction, so the table is never half
//!   replaced. Then the table is read back and compared with what was
//!   rendered.
//!
//! Lockout protection: before a change that installs a table the server
//! has not been reached through yet, the table as it was (`nft list table`,
//! or "absent") is kept — in memory and in a file, so a restart does not
//! lose it — until the run loop says the server answered on a new
//! connection (`confirmed`), or restored (`roll_back`) when it did not
//! within `confirm_window_secs`.
//!
//! The command is configurable (`command = ["ip", "netns", "exec", "NS",
//! "nft"]`), so tests enforce inside a network namespace.

pub mod model;
pub mod parse;
pub mod render;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_core::catalog::{Catalog, RemovalBehaviour};
use serde_json::Value;

use self::model::Verdict;
use self::render::{Defaults, SETTINGS};
use super::{Change, Plan, Provider, ProviderError, Values};
use crate::config::NftablesConfig;
use crate::state::{remove_if_exists, write_atomic};

/// Where `observe` puts the whole `nft -j` answer, for `plan` to compare
/// the complete table (no catalog setting has this id; `enforce` looks only
/// at setting ids).
pub const RULESET_KEY: &str = "nftables:ruleset";

pub struct NftablesProvider {
    command: Vec<String>,
    table: String,
    window: Duration,
    rollback_file: PathBuf,
    defaults: Defaults,
    server_url: String,
    /// Where the agent's server is, as resolved last.
    server: Vec<(IpAddr, u16)>,
    /// A change not yet confirmed: the script that restores the table as
    /// it was before, and when to give up.
    pending: Option<Pending>,
    /// The script last applied, and the one last confirmed: re-applying a
    /// confirmed table (after a hand-made change) needs no new confirmation.
    last_applied: Option<String>,
    confirmed: Option<String>,
}

struct Pending {
    previous: String,
    deadline: Instant,
}

impl NftablesProvider {
    pub fn new(config: &NftablesConfig, catalog: &Catalog, server_url: &str) -> NftablesProvider {
        let default_of = |id: &str, fallback: Verdict| {
            catalog
                .get(id)
                .and_then(|d| d.default.as_ref())
                .and_then(Value::as_str)
                .and_then(Verdict::from_action)
                .unwrap_or(fallback)
        };
        let mut provider = NftablesProvider {
            command: config.command.clone(),
            table: config.table.clone(),
            window: config.confirm_window,
            rollback_file: config.rollback_file.clone(),
            defaults: Defaults {
                inbound: default_of(render::DEFAULT_INBOUND, Verdict::Drop),
                outbound: default_of(render::DEFAULT_OUTBOUND, Verdict::Accept),
            },
            server_url: server_url.to_string(),
            server: Vec::new(),
            pending: None,
            last_applied: None,
            confirmed: None,
        };
        provider.server = provider.resolve_server();
        // A change a previous run applied and never saw confirmed: it is
        // confirmed, or rolled back, by this run.
        if let Ok(previous) = std::fs::read_to_string(&provider.rollback_file) {
            tracing::warn!(
                event = "unconfirmed_change",
                provider = "nftables",
                file = %provider.rollback_file.display(),
                "a firewall change of an earlier run was never confirmed; it is rolled back unless the server is reached within the window"
            );
            provider.pending = Some(Pending {
                previous,
                deadline: Instant::now() + provider.window,
            });
        }
        provider
    }

    /// The server's addresses and port, from its URL. Loopback addresses
    /// need no allowance (the chains accept loopback first).
    fn resolve_server(&self) -> Vec<(IpAddr, u16)> {
        let Ok(url) = reqwest::Url::parse(&self.server_url) else {
            return Vec::new();
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Vec::new();
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match (host, port).to_socket_addrs() {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::warn!(event = "server_unresolved", provider = "nftables", host = %host, error = %e, "cannot resolve the server's address: the default outbound policy may cut the agent off (lockout protection still applies)");
                    Vec::new()
                }
            },
        };
        let mut out: Vec<(IpAddr, u16)> = resolved
            .into_iter()
            .filter(|a| !a.ip().is_loopback())
            .map(|a| (a.ip(), a.port()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Runs the configured command with `args`, `input` on its stdin.
    fn nft(&self, args: &[&str], input: Option<&str>) -> Result<String, ProviderError> {
        let Some((program, prefix)) = self.command.split_first() else {
            return Err(ProviderError::misconfigured(
                "providers.nftables.command is empty",
            ));
        };
        let mut cmd = Command::new(program);
        cmd.args(prefix)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ProviderError::unsupported(format!(
                    "cannot run {program}: not found (install the nftables package)"
                ))
            } else {
                ProviderError::misconfigured(format!("cannot run {program}: {e}"))
            }
        })?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).map_err(|e| {
                ProviderError::misconfigured(format!("cannot write to {program}: {e}"))
            })?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| ProviderError::misconfigured(format!("{program} failed: {e}")))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let message = format!("nft {}: {stderr}", args.join(" "));
        Err(if stderr.contains("Operation not permitted") {
            ProviderError::misconfigured(format!(
                "{message} (the agent must run as root to manage the firewall)"
            ))
        } else if stderr.contains("busy") || stderr.contains("temporarily unavailable") {
            ProviderError::transient(message)
        } else {
            ProviderError::misconfigured(message)
        })
    }

    /// The table as nft's JSON, `None` when it does not exist.
    fn list_json(&self) -> Result<Option<Value>, ProviderError> {
        match self.nft(&["-j", "list", "table", "inet", &self.table], None) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                ProviderError::misconfigured(format!("nft printed JSON that does not parse: {e}"))
            }),
            Err(e) if e.message.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The script that puts the table back as it is now.
    fn current_script(&self) -> Result<String, ProviderError> {
        let absent = render::script(&self.table, None);
        match self.nft(&["list", "table", "inet", &self.table], None) {
            Ok(text) => Ok(format!("{absent}{text}")),
            Err(e) if e.message.contains("No such file or directory") => Ok(absent),
            Err(e) => Err(e),
        }
    }

    fn load(&self, script: &str) -> Result<(), ProviderError> {
        self.nft(&["--check", "-f", "-"], Some(script))?;
        self.nft(&["-f", "-"], Some(script)).map(|_| ())
    }

    fn forget_pending(&mut self) {
        self.pending = None;
        if let Err(e) = remove_if_exists(&self.rollback_file) {
            tracing::warn!(event = "rollback_file", error = %e, "cannot remove the rollback file");
        }
    }
}

impl Provider for NftablesProvider {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn handles(&self, setting: &str) -> bool {
        SETTINGS.contains(&setting)
    }

    fn observe(&self) -> Result<Values, ProviderError> {
        let Some(json) = self.list_json()? else {
            return Ok([(render::FIREWALL_ENABLED.to_string(), Value::Bool(false))].into());
        };
        let ruleset = parse::ruleset(&json, &self.table).map_err(ProviderError::misconfigured)?;
        let mut values = parse::values(&ruleset, &self.server);
        values.insert(RULESET_KEY.into(), json);
        Ok(values)
    }

    /// Whole-state: when the table read back is not exactly the one the
    /// settings call for, every desired setting is set again (apply
    /// renders the whole table from the plan); else nothing changes.
    fn plan(
        &self,
        desired: &Values,
        observed: &Values,
        removals: &BTreeMap<String, RemovalBehaviour>,
    ) -> Plan {
        let values = render::values_for(desired, observed, removals);
        let wanted = render::ruleset(&values, self.defaults, &self.server).ruleset;
        let current = observed
            .get(RULESET_KEY)
            .map(|j| parse::ruleset(j, &self.table));
        let same = match (&current, &wanted) {
            (None, None) => true,
            (Some(Ok(read)), Some(w)) => read == w,
            _ => false,
        };
        let mut changes = Vec::new();
        if !same {
            for (setting, value) in desired {
                if self.handles(setting) {
                    changes.push(Change::Set {
                        setting: setting.clone(),
                        value: value.clone(),
                    });
                }
            }
        }
        for (setting, removal) in removals {
            if desired.contains_key(setting) {
                continue;
            }
            match removal {
                RemovalBehaviour::Keep => changes.push(Change::Keep {
                    setting: setting.clone(),
                }),
                RemovalBehaviour::Revert if !same => changes.push(Change::Revert {
                    setting: setting.clone(),
                }),
                RemovalBehaviour::Revert => {}
            }
        }
        Plan { changes }
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError> {
        if self.server.is_empty() {
            self.server = self.resolve_server();
        }
        let kept = if plan
            .changes
            .iter()
            .any(|c| matches!(c, Change::Keep { .. }))
        {
            self.observe()?
        } else {
            Values::new()
        };
        let mut values = Values::new();
        for change in &plan.changes {
            match change {
                Change::Set { setting, value } => {
                    values.insert(setting.clone(), value.clone());
                }
                Change::Keep { setting } => {
                    if let Some(v) = kept.get(setting) {
                        values.insert(setting.clone(), v.clone());
                    }
                }
                Change::Revert { .. } => {}
            }
        }
        let rendered = render::ruleset(&values, self.defaults, &self.server);
        for note in &rendered.notes {
            tracing::info!(event = "rule_left_out", provider = "nftables", "{note}");
        }
        let script = render::script(&self.table, rendered.ruleset.as_ref());
        // A table the server has not been reached through yet can cut the
        // agent off: keep the last state known to be safe until it has.
        let needs_confirmation =
            rendered.ruleset.is_some() && self.confirmed.as_deref() != Some(script.as_str());
        let previous = match (&self.pending, needs_confirmation) {
            (None, true) => Some(self.current_script()?),
            _ => None,
        };
        self.load(&script)?;
        self.last_applied = Some(script);
        if needs_confirmation {
            let deadline = Instant::now() + self.window;
            match (&mut self.pending, previous) {
                (Some(p), _) => p.deadline = deadline,
                (None, Some(previous)) => {
                    if let Err(e) = write_atomic(&self.rollback_file, previous.as_bytes(), true) {
                        tracing::warn!(event = "rollback_file", error = %e, "cannot keep the previous ruleset on disk; a restart within the confirmation window would lose it");
                    }
                    self.pending = Some(Pending { previous, deadline });
                }
                (None, None) => {}
            }
        } else {
            // Removing Rampart's table, or restoring one already confirmed,
            // cannot cut the agent off.
            self.forget_pending();
            if rendered.ruleset.is_none() {
                self.confirmed = None;
            }
        }

        // Read back the whole table, scaffolding included.
        let after = match self.list_json()? {
            None => None,
            Some(j) => Some(parse::ruleset(&j, &self.table).map_err(ProviderError::misconfigured)?),
        };
        if after != rendered.ruleset {
            return Err(ProviderError::misconfigured(format!(
                "the table read back after nft -f differs from what was written ({})",
                match &after {
                    None => "the table is absent".to_string(),
                    Some(r) => parse::alterations(r, &self.server).join("; "),
                }
            )));
        }
        Ok(())
    }

    /// An array is `firewall_rules`: compared as the table holds it (rule
    /// comments, merged ports and addresses, disabled rules left out). An
    /// absent table is a disabled firewall.
    fn matches(&self, desired: &Value, observed: Option<&Value>) -> bool {
        match desired {
            Value::Array(_) => observed == Some(&render::expected_rules_view(desired)),
            Value::Bool(false) => observed.is_none() || observed == Some(&Value::Bool(false)),
            _ => observed == Some(desired),
        }
    }

    /// On Linux the component's default is no Rampart table: reverting
    /// everything leaves `firewall_enabled` reading false (the catalog's
    /// `true` is Windows Firewall's default).
    fn is_default(&self, observed: Option<&Value>, default: Option<&Value>) -> bool {
        observed.is_none() || observed == default || observed == Some(&Value::Bool(false))
    }

    fn not_carried(&self, desired: &Values) -> BTreeMap<String, String> {
        if desired.get(render::FIREWALL_ENABLED) != Some(&Value::Bool(false)) {
            return BTreeMap::new();
        }
        desired
            .keys()
            .filter(|k| self.handles(k) && k.as_str() != render::FIREWALL_ENABLED)
            .map(|k| {
                (
                    k.clone(),
                    "the firewall is off (firewall_enabled is false): Rampart's table is deleted, so this does not apply".to_string(),
                )
            })
            .collect()
    }

    fn confirm_by(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    fn confirmed(&mut self) {
        if self.pending.is_some() {
            tracing::info!(
                event = "change_confirmed",
                provider = "nftables",
                "the server answered after the firewall change; it stays"
            );
            self.confirmed = self.last_applied.clone();
            self.forget_pending();
        }
    }

    fn roll_back(&mut self) -> Result<(), ProviderError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        self.last_applied = None;
        let result = match self.load(&pending.previous) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The previous table does not load again: with no table at
                // all, at least Rampart blocks nothing.
                tracing::error!(event = "rollback_failed", provider = "nftables", error = %e.message, "the previous ruleset does not load; deleting Rampart's table instead");
                self.load(&render::script(&self.table, None))
                    .and(Err(ProviderError::misconfigured(format!(
                        "the previous ruleset could not be restored ({}); Rampart's table was deleted instead",
                        e.message
                    ))))
            }
        };
        self.forget_pending();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use serde_json::json;

    fn provider(dir: &TempDir) -> NftablesProvider {
        let config = NftablesConfig {
            enabled: true,
            command: vec!["/nonexistent/nft".into()],
            table: "rampart".into(),
            confirm_window: Duration::from_secs(60),
            rollback_file: dir.path().join("nftables/rollback.nft"),
        };
        NftablesProvider::new(&config, Catalog::builtin(), "https://10.213.9.1:8443")
    }

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    /// What `observe` returns for the table `render` makes of `v`.
    fn observed_for(p: &NftablesProvider, v: &Values) -> Values {
        let r = render::ruleset(v, p.defaults, &p.server).ruleset.unwrap();
        let mut out = parse::values(&r, &p.server);
        out.insert(RULESET_KEY.into(), json!("stand-in"));
        out
    }

    #[test]
    fn carries_the_four_firewall_settings_with_catalog_defaults() {
        let dir = TempDir::new();
        let p = provider(&dir);
        for s in SETTINGS {
            assert!(p.handles(s));
        }
        assert!(!p.handles("real_time_protection"));
        assert_eq!(
            p.defaults,
            Defaults {
                inbound: Verdict::Drop,
                outbound: Verdict::Accept
            }
        );
        assert_eq!(p.server, [("10.213.9.1".parse().unwrap(), 8443)]);
    }

    #[test]
    fn a_missing_nft_is_unsupported() {
        let dir = TempDir::new();
        let p = provider(&dir);
        let e = p.observe().unwrap_err();
        assert_eq!(e.kind, crate::providers::ErrorKind::Unsupported);
        assert!(e.message.contains("install the nftables package"), "{e}");
    }

    #[test]
    fn plan_is_empty_when_nothing_is_set_and_nothing_is_there() {
        let dir = TempDir::new();
        let p = provider(&dir);
        assert!(p
            .plan(&Values::new(), &Values::new(), &BTreeMap::new())
            .is_noop());
        // Reverting settings of a table that is gone already: nothing to do.
        let removals = BTreeMap::from([(
            "default_inbound_action".to_string(),
            RemovalBehaviour::Revert,
        )]);
        assert!(p.plan(&Values::new(), &Values::new(), &removals).is_noop());
    }

    #[test]
    fn plan_sets_everything_when_the_table_differs() {
        let dir = TempDir::new();
        let p = provider(&dir);
        let desired = values(&[
            ("firewall_enabled", json!(true)),
            ("default_inbound_action", json!("block")),
        ]);
        let plan = p.plan(&desired, &Values::new(), &BTreeMap::new());
        assert_eq!(plan.changes.len(), 2);
        assert!(plan.changes.iter().all(|c| matches!(c, Change::Set { .. })));
        // A removal makes the whole table change too.
        let removals = BTreeMap::from([("firewall_rules".to_string(), RemovalBehaviour::Revert)]);
        let plan = p.plan(&desired, &Values::new(), &removals);
        assert_eq!(plan.changes.len(), 3);
    }

    #[test]
    fn matches_compares_rules_as_the_table_holds_them() {
        let dir = TempDir::new();
        let p = provider(&dir);
        let rules = json!([
            {"name": "web", "description": "d", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "80,81", "enabled": true},
            {"name": "off", "description": "", "direction": "in", "action": "allow", "protocol": "any", "enabled": false}
        ]);
        let desired = values(&[("firewall_rules", rules.clone())]);
        let observed = observed_for(&p, &desired);
        assert!(p.matches(&rules, observed.get("firewall_rules")));
        assert_eq!(
            observed["firewall_rules"],
            json!([{"name": "web", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "80-81"}])
        );
        assert!(!p.matches(&rules, Some(&json!([]))));
        assert!(p.matches(&json!(false), None));
        assert!(!p.matches(&json!(true), None));
        assert!(p.matches(&json!("block"), Some(&json!("block"))));
    }

    #[test]
    fn actions_do_not_apply_while_the_firewall_is_off() {
        let dir = TempDir::new();
        let p = provider(&dir);
        let off = values(&[
            ("firewall_enabled", json!(false)),
            ("default_inbound_action", json!("block")),
        ]);
        let n = p.not_carried(&off);
        assert_eq!(n.keys().collect::<Vec<_>>(), ["default_inbound_action"]);
        assert!(p
            .not_carried(&values(&[("default_inbound_action", json!("block"))]))
            .is_empty());
    }

    #[test]
    fn an_unconfirmed_change_of_an_earlier_run_is_pending() {
        let dir = TempDir::new();
        assert!(provider(&dir).confirm_by().is_none());
        std::fs::create_dir_all(dir.path().join("nftables")).unwrap();
        std::fs::write(
            dir.path().join("nftables/rollback.nft"),
            "add table inet rampart\n",
        )
        .unwrap();
        let mut p = provider(&dir);
        assert!(p.confirm_by().is_some());
        p.confirmed();
        assert!(p.confirm_by().is_none());
        assert!(!dir.path().join("nftables/rollback.nft").exists());
    }
}
