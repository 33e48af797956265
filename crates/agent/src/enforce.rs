//! Enforcement: a verified resolution in, per-setting statuses out.
//!
//! For each effective setting the providers that carry it are picked; each
//! provider observes, plans, applies and observes again; a setting is
//! `succeeded` only when every read-back matches, and only when a provider
//! that enforces it did so: the `file` provider's values are `recorded`.
//! Each status names the backend that applied it. Conflicts are reported
//! `conflict` (nothing is applied for them), the resolution's
//! not-applicable entries `not_applicable`, and a setting no provider
//! carries `not_applicable` too — never silently dropped (DESIGN.md §6).
//!
//! Settings Rampart set before and no longer assigned are undone per the
//! catalog's removal behaviour: `revert` restores the component default,
//! `keep` leaves the value. The ledger of what Rampart set, per provider,
//! is what makes that possible; it lives in `applied.json`.

use std::collections::{BTreeMap, BTreeSet};

use rampart_core::catalog::{Catalog, RemovalBehaviour};
use rampart_core::resolve::Resolution;
use rampart_proto::device::{SettingStatus, StatusReport, TamperEvent};
use serde_json::Value;

use crate::providers::{Change, ErrorKind, Provider, ProviderError, Values};
use crate::state::{Applied, Removed};

/// Per provider name, the settings Rampart has set with it.
pub type Ledger = BTreeMap<String, BTreeSet<String>>;

/// What one enforcement did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// One per effective setting, conflict and not-applicable entry, sorted
    /// by setting and key.
    pub statuses: Vec<SettingStatus>,
    pub ledger: Ledger,
    pub removed: Vec<Removed>,
    /// A transient provider error: worth trying again before the next
    /// check-in.
    pub retry_soon: bool,
    /// Settings found changed by hand since the last enforcement (and, when
    /// `restored`, set back): they go into the next status report.
    pub tamper_events: Vec<TamperEvent>,
}

/// Why one provider failed one setting.
enum Failure {
    Provider(ProviderError),
    Mismatch {
        desired: Value,
        observed: Option<Value>,
    },
}

/// Enforces `resolution` (nothing when it says the device is not managed),
/// given what the previous enforcement left (`previous`).
pub fn enforce(
    resolution: &Resolution,
    providers: &mut [Box<dyn Provider>],
    previous: &Applied,
    catalog: &Catalog,
) -> Outcome {
    let desired: Values = if resolution.managed {
        resolution
            .settings
            .iter()
            .map(|s| (s.setting.clone(), s.value.clone()))
            .collect()
    } else {
        Values::new()
    };
    let mut outcome = run_providers(&desired, providers, previous, catalog);

    for s in resolution.settings.iter().filter(|_| resolution.managed) {
        let status = match outcome_of(&s.setting, &outcome.by_setting) {
            None => SettingStatus {
                setting: s.setting.clone(),
                key: None,
                status: "not_applicable".into(),
                observed: None,
                error_code: Some("no_provider".into()),
                error_message: Some("no provider on this device carries it".into()),
                backend: None,
            },
            Some(status) => status,
        };
        outcome.result.statuses.push(status);
    }
    if resolution.managed {
        for c in &resolution.conflicts {
            let sides: Vec<String> = c
                .policies
                .iter()
                .zip(&c.values)
                .map(|(p, v)| format!("{p} ({v})"))
                .collect();
            outcome.result.statuses.push(SettingStatus {
                setting: c.setting.clone(),
                key: c.key.clone(),
                status: "conflict".into(),
                observed: None,
                error_code: Some("conflict".into()),
                error_message: Some(format!(
                    "policies give different values: {}; nothing is applied",
                    sides.join(", ")
                )),
                backend: None,
            });
        }
        for n in &resolution.not_applicable {
            outcome.result.statuses.push(SettingStatus {
                setting: n.setting.clone(),
                key: n.key.clone(),
                status: "not_applicable".into(),
                observed: None,
                error_code: None,
                error_message: Some(n.reason.clone()),
                backend: None,
            });
        }
    }
    outcome
        .result
        .statuses
        .sort_by(|a, b| (&a.setting, &a.key).cmp(&(&b.setting, &b.key)));
    outcome.result
}

/// Undoes everything Rampart set (offboarding, revocation, a device that
/// left the tenant's scope).
pub fn remove_all(
    providers: &mut [Box<dyn Provider>],
    previous: &Applied,
    catalog: &Catalog,
) -> Outcome {
    run_providers(&Values::new(), providers, previous, catalog).result
}

/// A status report of an outcome, ready for the outbox.
pub fn report(version: u64, digest: &str, statuses: &[SettingStatus]) -> StatusReport {
    StatusReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        digest: digest.to_string(),
        version,
        statuses: statuses.to_vec(),
        tamper_events: Vec::new(),
        loss: None,
    }
}

/// One provider's result for one setting: the read-back value (and the
/// provider's note on it) or why it failed.
struct ProviderResult {
    provider: &'static str,
    /// Whether the provider enforces what it applies (see
    /// [`Provider::enforces`]).
    enforces: bool,
    result: Result<(Option<Value>, Option<String>), Failure>,
}

/// Per setting, each handling provider's result.
type ResultsBySetting = BTreeMap<String, Vec<ProviderResult>>;

struct ProviderRun {
    result: Outcome,
    by_setting: ResultsBySetting,
}

fn run_providers(
    desired: &Values,
    providers: &mut [Box<dyn Provider>],
    previous: &Applied,
    catalog: &Catalog,
) -> ProviderRun {
    let mut run = ProviderRun {
        result: Outcome::default(),
        by_setting: BTreeMap::new(),
    };
    let before: BTreeMap<&str, &SettingStatus> = previous
        .statuses
        .iter()
        .filter(|s| s.key.is_none())
        .map(|s| (s.setting.as_str(), s))
        .collect();

    for provider in providers.iter_mut() {
        let name = provider.name();
        let enforces = provider.enforces();
        let mine: Values = desired
            .iter()
            .filter(|(k, _)| provider.handles(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let had = previous.ledger.get(name).cloned().unwrap_or_default();
        let removals: BTreeMap<String, RemovalBehaviour> = had
            .iter()
            .filter(|s| !mine.contains_key(*s))
            .map(|s| {
                // A setting the catalog no longer knows is reverted: leaving
                // a value nobody manages is the riskier choice.
                let removal = catalog
                    .get(s)
                    .map_or(RemovalBehaviour::Revert, |d| d.removal);
                (s.clone(), removal)
            })
            .collect();
        if mine.is_empty() && removals.is_empty() {
            continue;
        }

        let not_carried = provider.not_carried(&mine);
        let mut tampered: Vec<(String, Value, Option<Value>)> = Vec::new();
        let attempt = (|| {
            let observed = provider.observe()?;
            for (setting, value) in &mine {
                let was_in_force = before.get(setting.as_str()).is_some_and(|s| {
                    matches!(s.status.as_str(), "succeeded" | "recorded")
                        && provider.matches(value, s.observed.as_ref())
                });
                if was_in_force
                    && !not_carried.contains_key(setting)
                    && !provider.matches(value, observed.get(setting))
                {
                    tampered.push((
                        setting.clone(),
                        value.clone(),
                        observed.get(setting).cloned(),
                    ));
                    tracing::warn!(
                        event = "tamper",
                        provider = name,
                        setting = %setting,
                        expected = %value,
                        found = ?observed.get(setting),
                        "a setting Rampart enforces was changed on the device; restoring it"
                    );
                }
            }
            let plan = provider.plan(&mine, &observed, &removals);
            if !plan.is_noop() {
                provider.apply(&plan)?;
            }
            for change in &plan.changes {
                if let Change::Keep { setting } = change {
                    tracing::info!(event = "removal", provider = name, setting = %setting, removal = "keep", "no longer assigned; the value stays in place");
                }
            }
            provider.observe()
        })();
        for (setting, expected, found) in tampered {
            let restored = attempt
                .as_ref()
                .is_ok_and(|after| provider.matches(&expected, after.get(&setting)));
            run.result.tamper_events.push(TamperEvent {
                setting,
                key: None,
                provider: name.to_string(),
                expected: Some(expected),
                found,
                at: crate::clock::now(),
                restored,
            });
        }

        let mut ledger: BTreeSet<String> = mine.keys().cloned().collect();
        match attempt {
            Ok(after) => {
                for (setting, value) in &mine {
                    let seen = after.get(setting).cloned();
                    let result = if let Some(why) = not_carried.get(setting) {
                        Err(Failure::Provider(ProviderError::unsupported(why.clone())))
                    } else if provider.matches(value, seen.as_ref()) {
                        Ok((seen, provider.note(setting)))
                    } else {
                        Err(match provider.explain(setting, value) {
                            Some(e) => Failure::Provider(e),
                            None => Failure::Mismatch {
                                desired: value.clone(),
                                observed: seen,
                            },
                        })
                    };
                    run.by_setting
                        .entry(setting.clone())
                        .or_default()
                        .push(ProviderResult {
                            provider: name,
                            enforces,
                            result,
                        });
                }
                for (setting, removal) in &removals {
                    let (label, result) = match removal {
                        RemovalBehaviour::Keep => ("keep", "kept".to_string()),
                        RemovalBehaviour::Revert => {
                            let default = catalog.get(setting).and_then(|d| d.default.as_ref());
                            if provider.is_default(after.get(setting), default) {
                                tracing::info!(event = "removal", provider = name, setting = %setting, removal = "revert", "no longer assigned; the component default is restored");
                                ("revert", "reverted".to_string())
                            } else {
                                ledger.insert(setting.clone());
                                (
                                    "revert",
                                    format!(
                                        "error: still {:?} after reverting",
                                        after.get(setting)
                                    ),
                                )
                            }
                        }
                    };
                    run.result.removed.push(Removed {
                        setting: setting.clone(),
                        provider: name.to_string(),
                        removal: label.to_string(),
                        result,
                    });
                }
            }
            Err(e) => {
                tracing::warn!(event = "provider_failed", provider = name, kind = ?e.kind, error = %e.message);
                if e.kind == ErrorKind::Transient {
                    run.result.retry_soon = true;
                }
                // What was set before may still be in place: keep tracking it.
                ledger.extend(had.iter().cloned());
                for setting in mine.keys() {
                    run.by_setting
                        .entry(setting.clone())
                        .or_default()
                        .push(ProviderResult {
                            provider: name,
                            enforces,
                            result: Err(Failure::Provider(e.clone())),
                        });
                }
                for (setting, removal) in &removals {
                    run.result.removed.push(Removed {
                        setting: setting.clone(),
                        provider: name.to_string(),
                        removal: match removal {
                            RemovalBehaviour::Revert => "revert",
                            RemovalBehaviour::Keep => "keep",
                        }
                        .to_string(),
                        result: format!("error: {}", e.message),
                    });
                }
            }
        }
        if !ledger.is_empty() {
            run.result.ledger.insert(name.to_string(), ledger);
        }
    }
    run
}

/// One setting's status from its providers' results; `None` when no
/// provider carries it.
fn outcome_of(setting: &str, by_setting: &ResultsBySetting) -> Option<SettingStatus> {
    let results = by_setting.get(setting)?;
    let status = |status: &str,
                  observed: Option<Value>,
                  code: Option<&str>,
                  message: Option<String>,
                  backend: Option<&str>| SettingStatus {
        setting: setting.to_string(),
        key: None,
        status: status.into(),
        observed,
        error_code: code.map(str::to_string),
        error_message: message,
        backend: backend.map(str::to_string),
    };
    // A real failure wins; then success by a provider that enforces it; then
    // a value only recorded; a setting that only unsupported providers were
    // asked to carry is not applicable.
    for ProviderResult {
        provider, result, ..
    } in results
    {
        match result {
            Err(Failure::Provider(e)) if e.kind != ErrorKind::Unsupported => {
                return Some(status(
                    "error",
                    None,
                    Some(e.code()),
                    Some(format!("{provider}: {}", e.message)),
                    Some(provider),
                ));
            }
            Err(Failure::Mismatch { desired, observed }) => {
                let seen = observed
                    .as_ref()
                    .map_or_else(|| "nothing".to_string(), Value::to_string);
                return Some(status(
                    "error",
                    observed.clone(),
                    Some("verify_mismatch"),
                    Some(format!("{provider}: read back {seen} instead of {desired}")),
                    Some(provider),
                ));
            }
            _ => {}
        }
    }
    let applied = results
        .iter()
        .filter(|r| r.result.is_ok())
        .max_by_key(|r| r.enforces);
    if let Some(ProviderResult {
        provider,
        enforces,
        result: Ok((observed, note)),
    }) = applied
    {
        let (state, note) = if *enforces {
            ("succeeded", note.clone())
        } else {
            (
                "recorded",
                Some(note.clone().unwrap_or_else(|| {
                    format!("recorded by the {provider} provider, not enforced")
                })),
            )
        };
        return Some(status(state, observed.clone(), None, note, Some(provider)));
    }
    let reasons: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.result {
            Err(Failure::Provider(e)) => Some(format!("{}: {}", r.provider, e.message)),
            _ => None,
        })
        .collect();
    Some(status(
        "not_applicable",
        None,
        Some("provider_unsupported"),
        Some(reasons.join("; ")),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::file::FileProvider;
    use crate::providers::Plan;
    use crate::testutil::TempDir;
    use crate::verify::tests::resolution;
    use rampart_core::resolve::{Conflict, NotApplicable};
    use serde_json::json;

    fn file_provider(dir: &TempDir, catalog: &Catalog) -> Vec<Box<dyn Provider>> {
        vec![Box::new(FileProvider::new(
            dir.path().join("settings.json"),
            catalog,
        ))]
    }

    fn status_of<'a>(o: &'a Outcome, setting: &str, key: Option<&str>) -> &'a SettingStatus {
        o.statuses
            .iter()
            .find(|s| s.setting == setting && s.key.as_deref() == key)
            .unwrap()
    }

    fn applied(o: &Outcome) -> Applied {
        Applied {
            ledger: o.ledger.clone(),
            statuses: o.statuses.clone(),
            ..Applied::default()
        }
    }

    #[test]
    fn the_file_provider_records_values_and_never_claims_them_enforced() {
        let dir = TempDir::new();
        let catalog = Catalog::builtin();
        let mut providers = file_provider(&dir, catalog);
        let r = resolution(&[
            ("real_time_protection", json!(true)),
            ("excluded_paths", json!(["/srv"])),
        ]);
        let o = enforce(&r, &mut providers, &Applied::default(), catalog);
        let s = status_of(&o, "real_time_protection", None);
        assert_eq!(s.status, "recorded");
        assert_eq!(s.backend.as_deref(), Some("file"));
        assert_eq!(
            s.error_message.as_deref(),
            Some("recorded by the file provider, not enforced")
        );
        assert_eq!(s.observed, Some(json!(true)));
        assert_eq!(status_of(&o, "excluded_paths", None).status, "recorded");
        assert_eq!(
            o.ledger["file"],
            BTreeSet::from([
                "excluded_paths".to_string(),
                "real_time_protection".to_string()
            ])
        );
        let text = std::fs::read_to_string(dir.path().join("settings.json")).unwrap();
        let on_disk: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            on_disk,
            json!({"excluded_paths": ["/srv"], "real_time_protection": true})
        );
    }

    #[test]
    fn conflicts_and_not_applicable_entries_are_reported() {
        let dir = TempDir::new();
        let catalog = Catalog::builtin();
        let mut providers = file_provider(&dir, catalog);
        let mut r = resolution(&[("scan_archives", json!(true))]);
        r.conflicts.push(Conflict {
            setting: "real_time_protection".into(),
            key: None,
            policies: vec!["a".into(), "b".into()],
            values: vec![json!(true), json!(false)],
        });
        r.not_applicable.push(NotApplicable {
            setting: "asr_rules".into(),
            key: Some("d4f940ab-401b-4efc-aadc-ad5f3c50688a".into()),
            policies: vec!["a".into()],
            reason: "the rule applies to workstation devices only".into(),
        });
        let o = enforce(&r, &mut providers, &Applied::default(), catalog);
        let c = status_of(&o, "real_time_protection", None);
        assert_eq!(c.status, "conflict");
        assert!(c
            .error_message
            .as_deref()
            .unwrap()
            .contains("a (true), b (false)"));
        let n = status_of(
            &o,
            "asr_rules",
            Some("d4f940ab-401b-4efc-aadc-ad5f3c50688a"),
        );
        assert_eq!(n.status, "not_applicable");
        assert_eq!(n.backend, None);
        assert_eq!(status_of(&o, "scan_archives", None).status, "recorded");
        // The conflicting setting was not written.
        let text = std::fs::read_to_string(dir.path().join("settings.json")).unwrap();
        assert!(!text.contains("real_time_protection"));
    }

    #[test]
    fn a_setting_no_provider_carries_is_not_applicable() {
        let catalog = Catalog::builtin();
        let mut none: Vec<Box<dyn Provider>> = Vec::new();
        let r = resolution(&[("real_time_protection", json!(true))]);
        let o = enforce(&r, &mut none, &Applied::default(), catalog);
        let s = status_of(&o, "real_time_protection", None);
        assert_eq!(s.status, "not_applicable");
        assert_eq!(
            s.error_message.as_deref(),
            Some("no provider on this device carries it")
        );
    }

    #[test]
    fn settings_no_longer_assigned_are_reverted_or_kept() {
        // A catalog with one `keep` setting (the built-in one has none yet).
        let catalog = Catalog::from_files(&[(
            "t.yaml",
            "settings:\n  - {id: kept, title: K, description: d, families: [edr], platforms: [linux], type: bool, merge: scalar, removal: keep, backends: [{backend: mdatp, platforms: [linux], target: x}]}\n  - {id: reverted, title: R, description: d, families: [edr], platforms: [linux], type: bool, merge: scalar, removal: revert, backends: [{backend: mdatp, platforms: [linux], target: y}]}\n",
        )])
        .unwrap();
        let dir = TempDir::new();
        let mut providers = file_provider(&dir, &catalog);
        let first = enforce(
            &resolution(&[("kept", json!(true)), ("reverted", json!(true))]),
            &mut providers,
            &Applied::default(),
            &catalog,
        );
        let second = enforce(&resolution(&[]), &mut providers, &applied(&first), &catalog);
        assert!(second.statuses.is_empty());
        let results: BTreeMap<&str, &str> = second
            .removed
            .iter()
            .map(|r| (r.setting.as_str(), r.result.as_str()))
            .collect();
        assert_eq!(results["kept"], "kept");
        assert_eq!(results["reverted"], "reverted");
        assert!(second.ledger.is_empty());
        let text = std::fs::read_to_string(dir.path().join("settings.json")).unwrap();
        let on_disk: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(on_disk, json!({"kept": true}));
    }

    #[test]
    fn an_unmanaged_resolution_removes_everything() {
        let dir = TempDir::new();
        let catalog = Catalog::builtin();
        let mut providers = file_provider(&dir, catalog);
        let first = enforce(
            &resolution(&[("real_time_protection", json!(true))]),
            &mut providers,
            &Applied::default(),
            catalog,
        );
        let mut out_of_scope = resolution(&[("real_time_protection", json!(true))]);
        out_of_scope.managed = false;
        let second = enforce(&out_of_scope, &mut providers, &applied(&first), catalog);
        assert!(second.statuses.is_empty());
        assert!(second.ledger.is_empty());
        let text = std::fs::read_to_string(dir.path().join("settings.json")).unwrap();
        assert_eq!(text.trim(), "{}");
        // And remove_all on a clean device does nothing.
        let third = remove_all(&mut providers, &applied(&second), catalog);
        assert_eq!(third, Outcome::default());
    }

    #[test]
    fn drift_is_corrected() {
        let dir = TempDir::new();
        let catalog = Catalog::builtin();
        let mut providers = file_provider(&dir, catalog);
        let r = resolution(&[("real_time_protection", json!(true))]);
        let first = enforce(&r, &mut providers, &Applied::default(), catalog);
        std::fs::write(
            dir.path().join("settings.json"),
            "{\"real_time_protection\": false}",
        )
        .unwrap();
        let second = enforce(&r, &mut providers, &applied(&first), catalog);
        assert_eq!(
            status_of(&second, "real_time_protection", None).status,
            "recorded"
        );
        let text = std::fs::read_to_string(dir.path().join("settings.json")).unwrap();
        assert!(text.contains("true"));
        // Reported as a tamper event: what was set, what was found, restored.
        assert_eq!(second.tamper_events.len(), 1, "{:?}", second.tamper_events);
        let t = &second.tamper_events[0];
        assert_eq!(
            (t.setting.as_str(), t.provider.as_str()),
            ("real_time_protection", "file")
        );
        assert_eq!(
            (t.expected.clone(), t.found.clone(), t.restored),
            (Some(json!(true)), Some(json!(false)), true)
        );
        // Nothing changed since: no event.
        let third = enforce(&r, &mut providers, &applied(&second), catalog);
        assert!(third.tamper_events.is_empty());
        assert!(first.tamper_events.is_empty());
    }

    /// A provider that fails as told, or writes what it likes.
    struct Broken {
        fail: Option<ProviderError>,
        writes: Value,
        stored: Values,
    }

    impl Provider for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn handles(&self, setting: &str) -> bool {
            setting == "scan_archives"
        }
        fn observe(&self) -> Result<Values, ProviderError> {
            Ok(self.stored.clone())
        }
        fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError> {
            if let Some(e) = &self.fail {
                return Err(e.clone());
            }
            for c in &plan.changes {
                if let Change::Set { setting, .. } = c {
                    self.stored.insert(setting.clone(), self.writes.clone());
                }
            }
            Ok(())
        }
    }

    #[test]
    fn a_setting_an_enforcing_provider_applied_succeeds_in_its_name() {
        let dir = TempDir::new();
        let catalog = Catalog::builtin();
        // The file provider carries every setting; the other one enforces
        // scan_archives and reads back what it was asked for.
        let mut providers = file_provider(&dir, catalog);
        providers.push(Box::new(Broken {
            fail: None,
            writes: json!(true),
            stored: Values::new(),
        }));
        let r = resolution(&[
            ("scan_archives", json!(true)),
            ("real_time_protection", json!(true)),
        ]);
        let o = enforce(&r, &mut providers, &Applied::default(), catalog);
        let s = status_of(&o, "scan_archives", None);
        assert_eq!(s.status, "succeeded");
        assert_eq!(s.backend.as_deref(), Some("broken"));
        assert_eq!(s.error_message, None);
        let s = status_of(&o, "real_time_protection", None);
        assert_eq!(
            (s.status.as_str(), s.backend.as_deref()),
            ("recorded", Some("file"))
        );
    }

    fn with_broken(fail: Option<ProviderError>) -> Outcome {
        let catalog = Catalog::builtin();
        let mut providers: Vec<Box<dyn Provider>> = vec![Box::new(Broken {
            fail,
            writes: json!("surprise"),
            stored: Values::new(),
        })];
        let r = resolution(&[("scan_archives", json!(true))]);
        enforce(&r, &mut providers, &Applied::default(), catalog)
    }

    #[test]
    fn a_read_back_that_differs_is_an_error() {
        let o = with_broken(None);
        let s = status_of(&o, "scan_archives", None);
        assert_eq!(s.status, "error");
        assert_eq!(s.backend.as_deref(), Some("broken"));
        assert_eq!(s.error_code.as_deref(), Some("verify_mismatch"));
        assert_eq!(s.observed, Some(json!("surprise")));
    }

    #[test]
    fn provider_errors_are_typed_states() {
        let o = with_broken(Some(ProviderError::transient("clamd is busy")));
        let s = status_of(&o, "scan_archives", None);
        assert_eq!(s.status, "error");
        assert_eq!(s.error_code.as_deref(), Some("provider_transient"));
        assert!(o.retry_soon);

        let o = with_broken(Some(ProviderError::misconfigured(
            "clamd.conf is unreadable",
        )));
        assert_eq!(
            status_of(&o, "scan_archives", None).error_code.as_deref(),
            Some("provider_misconfigured")
        );
        assert!(!o.retry_soon);

        let o = with_broken(Some(ProviderError::unsupported(
            "no on-access scanning here",
        )));
        let s = status_of(&o, "scan_archives", None);
        assert_eq!(s.status, "not_applicable");
        assert_eq!(s.error_code.as_deref(), Some("provider_unsupported"));
    }
}
