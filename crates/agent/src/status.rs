//! `rampart-agent status`: the local view — what `Get-MpPreference` is for
//! Defender. Read from the state directory only (it works offline and never
//! changes anything): enrollment, managed-by, server, tenant, device, last
//! check-in, policy, certificate expiry, outbox, and every effective setting
//! with its value, sources and status.
//!
//! `-o json` prints [`StatusView`]; its shape is a contract for scripts and
//! tests: fields are only ever added.

use std::collections::BTreeMap;

use rampart_core::resolve::Resolution;
use rampart_core::text::{cell, table};
use rampart_proto::device::{EnrollmentState, SettingStatus};
use rampart_proto::troubleshooting::{guidance, Guidance};
use serde::Serialize;
use serde_json::Value;

use crate::clock::format_utc;
use crate::outbox::Outbox;
use crate::run::{held_policy_in, CERTIFICATE_EXPIRED, CERTIFICATE_INVALID, DEVICE_KEY_INVALID};
use crate::state::{Applied, LastError, LocalState, Removed, StateDir};
use crate::verify::Expected;
use crate::Result;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// `enrolled`, `not_managed`, `revoked`, `not_onboarded`.
    pub state: &'static str,
    /// The server's last word on the enrollment (status, code, reason,
    /// managed_by, labels), when there was one.
    pub enrollment: Option<EnrollmentState>,
    /// The last refusal or failure (onboarding refused, server unreachable,
    /// policy refused, revoked), with a stable code.
    pub last_error: Option<LastError>,
    /// `rampart`, another authority, or `null` when unknown.
    pub managed_by: Option<String>,
    pub server: Option<String>,
    pub tenant: Option<Named>,
    pub device: Option<Named>,
    /// Seconds since the epoch.
    pub last_check_in: Option<i64>,
    pub policy: Option<PolicyView>,
    /// Seconds since the epoch.
    pub certificate_not_after: Option<i64>,
    /// Why the held policy is not enforced (`held_policy_invalid: …`): the
    /// file does not load or verify; the agent asks the server for it again.
    pub policy_problem: Option<String>,
    /// Why the device certificate cannot be used as it is
    /// (`certificate_invalid`, `certificate_expired`, `device_key_invalid`):
    /// the agent re-attests with its enrolled key at the next check-in.
    pub certificate_problem: Option<String>,
    /// Cause and fix of the enrollment code and of the last error's code
    /// (`docs/troubleshooting.md`), when they have one.
    pub help: Vec<Guidance>,
    /// Status reports not yet acknowledged by the server.
    pub outbox: usize,
    pub settings: Vec<SettingView>,
    /// Settings no longer assigned at the last enforcement, and what became
    /// of them (`reverted`, `kept`).
    pub removed: Vec<Removed>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Named {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyView {
    pub version: u64,
    pub digest: String,
    /// Seconds since the epoch.
    pub received_at: i64,
    /// When it was last enforced, if it was.
    pub enforced_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingView {
    pub setting: String,
    pub key: Option<String>,
    /// The effective value; `null` for a conflict or a not-applicable entry.
    pub value: Value,
    /// The policies the value (or the conflict) comes from.
    pub sources: Vec<String>,
    /// One of `rampart_proto::device::SETTING_STATUSES`.
    pub status: String,
    pub observed: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The provider that applied it, when one did.
    pub backend: Option<String>,
}

/// Reads the state directory into the view.
pub fn collect(state: &StateDir) -> Result<StatusView> {
    let identity = state.load_identity()?;
    let record = state.load_enrollment()?;
    let (verified, policy_problem) = match &identity {
        Some(i) => {
            let expected = Expected {
                tenant_id: &i.tenant_id,
                device_id: &i.device_id,
                policy_key: &i.policy_key,
            };
            match held_policy_in(state, expected, &i.retired_policy_keys) {
                Ok(v) => (v, None),
                Err(problem) => (None, Some(problem)),
            }
        }
        None => (None, None),
    };
    let received_at = state
        .load_held_policy()
        .ok()
        .flatten()
        .map_or(0, |h| h.received_at);
    let applied = state.load_applied().unwrap_or_default();
    let outbox = if state.outbox_dir().exists() {
        Outbox::open(state.outbox_dir())?.len()?
    } else {
        0
    };

    let local = match (&record, &identity) {
        (Some(r), _) => r.state,
        (None, Some(_)) => LocalState::NotManaged,
        (None, None) => LocalState::NotOnboarded,
    };
    let enrollment = record.as_ref().and_then(|r| r.enrollment.clone());
    let managed_by = enrollment
        .as_ref()
        .map(|e| e.managed_by.clone())
        .or_else(|| record.as_ref().and_then(|r| r.survey.managed_by.clone()));

    let settings = match &verified {
        Some(v) if local != LocalState::Revoked && local != LocalState::NotOnboarded => {
            rows(&v.resolution, &v.payload.digest, &applied)
        }
        _ => Vec::new(),
    };
    let certificate_problem = match (&identity, local) {
        (Some(i), LocalState::Enrolled | LocalState::NotManaged) => {
            let parses = crate::state::read_text(&state.cert_pem())
                .ok()
                .is_some_and(|pem| rampart_pki::cert_not_after(&pem).is_ok());
            let key_ok = crate::state::read_text(&state.key_pem())
                .ok()
                .is_some_and(|pem| {
                    rampart_pki::device_public_key(&rampart_pki::DeviceKey { key_pem: pem }).is_ok()
                });
            if !key_ok {
                Some(DEVICE_KEY_INVALID.to_string())
            } else if !parses {
                Some(CERTIFICATE_INVALID.to_string())
            } else if crate::clock::now() >= i.not_after {
                Some(CERTIFICATE_EXPIRED.to_string())
            } else {
                None
            }
        }
        _ => None,
    };

    let last_error = record.as_ref().and_then(|r| r.last_error.clone());
    let mut help: Vec<Guidance> = Vec::new();
    let codes = [
        enrollment.as_ref().and_then(|e| e.code.clone()),
        last_error.as_ref().map(|e| e.code.clone()),
    ];
    for g in codes.iter().flatten().filter_map(|c| guidance(c)) {
        if !help.contains(&g) {
            help.push(g);
        }
    }
    Ok(StatusView {
        state: local.as_str(),
        enrollment,
        last_error,
        help,
        managed_by,
        server: identity.as_ref().map(|i| i.server_url.clone()),
        tenant: identity.as_ref().map(|i| Named {
            id: i.tenant_id.clone(),
            name: i.tenant_name.clone(),
        }),
        device: identity.as_ref().map(|i| Named {
            id: i.device_id.clone(),
            name: i.device_name.clone(),
        }),
        last_check_in: record.as_ref().and_then(|r| r.last_check_in),
        policy: verified.as_ref().map(|v| PolicyView {
            version: v.payload.version,
            digest: v.payload.digest.clone(),
            received_at,
            enforced_at: applied
                .enforced_at
                .filter(|_| applied.digest.as_deref() == Some(v.payload.digest.as_str())),
        }),
        certificate_not_after: identity
            .as_ref()
            .filter(|_| local != LocalState::Revoked)
            .map(|i| i.not_after),
        outbox,
        settings,
        removed: applied.removed.clone(),
        policy_problem,
        certificate_problem,
    })
}

/// One row per effective setting, conflict and not-applicable entry, with
/// the status of the last enforcement when it was of this policy, else
/// `pending` (conflicts and not-applicable entries are known without
/// enforcing anything).
fn rows(r: &Resolution, digest: &str, applied: &Applied) -> Vec<SettingView> {
    if !r.managed {
        return Vec::new();
    }
    let current = applied.digest.as_deref() == Some(digest);
    let statuses: BTreeMap<(&str, Option<&str>), &SettingStatus> = applied
        .statuses
        .iter()
        .filter(|_| current)
        .map(|s| ((s.setting.as_str(), s.key.as_deref()), s))
        .collect();
    let mut out = Vec::new();
    let mut push = |setting: &str,
                    key: Option<&str>,
                    value: Value,
                    sources: &[String],
                    fallback: SettingStatus| {
        let s = statuses.get(&(setting, key)).copied().unwrap_or(&fallback);
        out.push(SettingView {
            setting: setting.to_string(),
            key: key.map(str::to_string),
            value,
            sources: sources.to_vec(),
            status: s.status.clone(),
            observed: s.observed.clone(),
            error_code: s.error_code.clone(),
            error_message: s.error_message.clone(),
            backend: s.backend.clone(),
        });
    };
    let plain =
        |setting: &str, key: Option<&str>, status: &str, message: Option<String>| SettingStatus {
            setting: setting.to_string(),
            key: key.map(str::to_string),
            status: status.to_string(),
            observed: None,
            error_code: None,
            error_message: message,
            backend: None,
        };
    for s in &r.settings {
        push(
            &s.setting,
            None,
            s.value.clone(),
            &s.sources,
            plain(&s.setting, None, "pending", None),
        );
    }
    for c in &r.conflicts {
        push(
            &c.setting,
            c.key.as_deref(),
            Value::Null,
            &c.policies,
            plain(&c.setting, c.key.as_deref(), "conflict", None),
        );
    }
    for n in &r.not_applicable {
        push(
            &n.setting,
            n.key.as_deref(),
            Value::Null,
            &n.policies,
            plain(
                &n.setting,
                n.key.as_deref(),
                "not_applicable",
                Some(n.reason.clone()),
            ),
        );
    }
    out.sort_by(|a, b| (&a.setting, &a.key).cmp(&(&b.setting, &b.key)));
    out
}

/// The view for people.
pub fn render(v: &StatusView) -> String {
    let mut out = String::new();
    let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), format_utc);
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("{:<15} {value}\n", format!("{name}:")));
    };
    field("state", v.state.to_string());
    if let Some(e) = &v.enrollment {
        let mut text = e.status.clone();
        if let Some(code) = &e.code {
            text.push_str(&format!(" ({code})"));
        }
        if let Some(reason) = &e.reason {
            text.push_str(&format!(": {reason}"));
        }
        if !e.labels.is_empty() {
            text.push_str(&format!(" [{}]", e.labels.join(", ")));
        }
        field("enrollment", text);
    }
    field(
        "managed by",
        v.managed_by.clone().unwrap_or_else(|| "-".into()),
    );
    let named = |n: &Option<Named>| {
        n.as_ref()
            .map_or_else(|| "-".to_string(), |n| format!("{} ({})", n.name, n.id))
    };
    field("tenant", named(&v.tenant));
    field("device", named(&v.device));
    field("server", v.server.clone().unwrap_or_else(|| "-".into()));
    field("last check-in", time(v.last_check_in));
    if let Some(e) = &v.last_error {
        field(
            "last error",
            format!("{} ({}, {})", e.message, e.code, format_utc(e.at)),
        );
    }
    for g in &v.help {
        field("cause", format!("{}: {}", g.code, g.cause));
        field("fix", g.fix.clone());
    }
    field(
        "policy",
        v.policy.as_ref().map_or_else(
            || {
                v.policy_problem.as_ref().map_or_else(
                    || "-".to_string(),
                    |p| format!("NOT ENFORCED: {p}; the server will be asked for it again"),
                )
            },
            |p| {
                format!(
                    "version {}, digest {}, enforced {}",
                    p.version,
                    p.digest.chars().take(12).collect::<String>(),
                    time(p.enforced_at)
                )
            },
        ),
    );
    field(
        "certificate",
        match (&v.certificate_problem, v.certificate_not_after) {
            (Some(p), _) if p != CERTIFICATE_EXPIRED => {
                format!("{p}: the agent re-attests with its enrolled key at the next check-in")
            }
            (_, Some(t)) if t <= crate::clock::now() => format!(
                "EXPIRED {}: the agent re-attests with its enrolled key at the next check-in",
                format_utc(t)
            ),
            (_, Some(t)) => format!("expires {}", format_utc(t)),
            (_, None) => "-".into(),
        },
    );
    field("outbox", format!("{} report(s) waiting", v.outbox));

    if !v.settings.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = v
            .settings
            .iter()
            .map(|s| {
                let name = match &s.key {
                    Some(k) => format!("{} [{k}]", s.setting),
                    None => s.setting.clone(),
                };
                let detail = match (&s.error_code, &s.error_message, &s.observed) {
                    (_, Some(m), _) => m.clone(),
                    (Some(c), None, _) => c.clone(),
                    (None, None, Some(o)) if s.status != "succeeded" && s.status != "recorded" => {
                        format!("observed {o}")
                    }
                    _ => String::new(),
                };
                vec![
                    name,
                    cell(&s.value),
                    s.sources.join(", "),
                    s.status.clone(),
                    s.backend.clone().unwrap_or_else(|| "-".into()),
                    detail,
                ]
            })
            .collect();
        out.push_str(&table(
            &["SETTING", "VALUE", "SOURCES", "STATUS", "BACKEND", "DETAIL"],
            &rows,
        ));
    }
    if !v.removed.is_empty() {
        out.push_str("\nno longer assigned:\n");
        for r in &v.removed {
            out.push_str(&format!(
                "  {} ({}, removal {}): {}\n",
                r.setting, r.provider, r.removal, r.result
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{EnrollmentRecord, HeldPolicy, Identity};
    use crate::testutil::TempDir;
    use crate::verify::tests::{payload, resolution, Signer};
    use rampart_core::resolve::Conflict;
    use rampart_proto::device::Survey;
    use serde_json::json;

    #[test]
    fn a_fresh_state_dir_is_not_onboarded() {
        let dir = TempDir::new();
        let v = collect(&StateDir::new(dir.path())).unwrap();
        assert_eq!(v.state, "not_onboarded");
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(
            j,
            json!({
                "state": "not_onboarded", "enrollment": null, "last_error": null,
                "managed_by": null, "server": null, "tenant": null, "device": null,
                "last_check_in": null, "policy": null, "certificate_not_after": null,
                "help": [], "outbox": 0, "settings": [], "removed": [],
                "policy_problem": null, "certificate_problem": null
            })
        );
        assert!(render(&v).contains("state:          not_onboarded"));
    }

    fn enrolled_state(dir: &TempDir) -> StateDir {
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        state
            .save_identity(&Identity {
                tenant_id: "t1".into(),
                tenant_name: "Tenant One".into(),
                device_id: "d1".into(),
                device_name: "web-1".into(),
                server_url: "https://rampart.test:8443".into(),
                policy_key: "k".into(),
                retired_policy_keys: Vec::new(),
                issued_at: 1_767_225_600,
                not_after: 1_767_312_000,
            })
            .unwrap();
        state
            .save_enrollment(&EnrollmentRecord {
                state: LocalState::Enrolled,
                enrollment: Some(EnrollmentState {
                    status: "enrolled".into(),
                    code: None,
                    reason: None,
                    managed_by: "rampart".into(),
                    labels: vec!["Joined".into(), "Managed".into()],
                }),
                survey: Survey::default(),
                last_check_in: Some(1_767_225_700),
                last_error: None,
            })
            .unwrap();
        state
    }

    #[test]
    fn a_broken_or_forged_policy_file_is_never_shown_as_enforced() {
        let dir = TempDir::new();
        let state = enrolled_state(&dir);
        // Signed by a key that is not the tenant's ("k" in the identity).
        let forged = Signer::new().sign(&payload(
            3,
            "d3",
            &resolution(&[("real_time_protection", json!(true))]),
        ));
        state
            .save_held_policy(&HeldPolicy {
                signed: forged,
                version: 3,
                digest: "d3".into(),
                received_at: 1,
            })
            .unwrap();
        let v = collect(&state).unwrap();
        assert!(v.policy.is_none());
        assert!(v.settings.is_empty());
        assert!(v
            .policy_problem
            .as_deref()
            .unwrap()
            .starts_with("held_policy_invalid"));
        assert!(render(&v).contains("NOT ENFORCED"), "{}", render(&v));
        // Garbage on disk: the same, and `status` still works.
        std::fs::write(state.policy_json(), b"{ not json").unwrap();
        let v = collect(&state).unwrap();
        assert!(v.policy.is_none());
        assert!(v.policy_problem.is_some());
    }

    #[test]
    fn every_effective_setting_is_shown_with_its_status() {
        let dir = TempDir::new();
        let state = enrolled_state(&dir);
        let mut r = resolution(&[
            ("real_time_protection", json!(true)),
            ("scan_archives", json!(false)),
            ("excluded_paths", json!(["/srv/cache", "/var/tmp"])),
        ]);
        r.conflicts.push(Conflict {
            setting: "cloud_protection".into(),
            key: None,
            policies: vec!["a".into(), "b".into()],
            values: vec![json!(true), json!(false)],
        });
        let signer = Signer::new();
        let mut identity = state.load_identity().unwrap().unwrap();
        identity.policy_key = signer.key.public_hex.clone();
        state.save_identity(&identity).unwrap();
        let signed = signer.sign(&payload(7, "digest-7", &r));
        state
            .save_held_policy(&HeldPolicy {
                signed,
                version: 7,
                digest: "digest-7".into(),
                received_at: 1_767_225_700,
            })
            .unwrap();

        // Not enforced yet: pending (the conflict is known regardless).
        let v = collect(&state).unwrap();
        let by: BTreeMap<&str, &str> = v
            .settings
            .iter()
            .map(|s| (s.setting.as_str(), s.status.as_str()))
            .collect();
        assert_eq!(by["real_time_protection"], "pending");
        assert_eq!(by["cloud_protection"], "conflict");

        state
            .save_applied(&Applied {
                version: Some(7),
                digest: Some("digest-7".into()),
                enforced_at: Some(1_767_225_701),
                ledger: Default::default(),
                statuses: vec![
                    SettingStatus {
                        setting: "real_time_protection".into(),
                        key: None,
                        status: "succeeded".into(),
                        observed: Some(json!(true)),
                        error_code: None,
                        error_message: None,
                        backend: Some("mdatp".into()),
                    },
                    SettingStatus {
                        setting: "scan_archives".into(),
                        key: None,
                        status: "error".into(),
                        observed: Some(json!(true)),
                        error_code: Some("verify_mismatch".into()),
                        error_message: Some("file: read back true instead of false".into()),
                        backend: Some("file".into()),
                    },
                ],
                removed: Vec::new(),
            })
            .unwrap();
        let v = collect(&state).unwrap();
        assert_eq!(v.state, "enrolled");
        assert_eq!(v.managed_by.as_deref(), Some("rampart"));
        assert_eq!(v.policy.as_ref().unwrap().version, 7);
        let rtp = v
            .settings
            .iter()
            .find(|s| s.setting == "real_time_protection")
            .unwrap();
        assert_eq!(rtp.status, "succeeded");
        assert_eq!(rtp.value, json!(true));
        assert_eq!(rtp.sources, ["p1"]);
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["tenant"], json!({"id": "t1", "name": "Tenant One"}));
        assert_eq!(j["policy"]["digest"], "digest-7");
        let scan_archives = j["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["setting"] == "scan_archives")
            .unwrap();
        assert_eq!(
            *scan_archives,
            json!({
                "setting": "scan_archives", "key": null, "value": false, "sources": ["p1"],
                "status": "error", "observed": true, "error_code": "verify_mismatch",
                "error_message": "file: read back true instead of false", "backend": "file"
            })
        );

        let text = render(&v);
        assert!(text.contains("enrolled [Joined, Managed]"), "{text}");
        assert!(text.contains("Tenant One (t1)"), "{text}");
        assert!(text.contains("2026-01-01T00:01:40Z"), "{text}");
        assert!(text.contains("SETTING"), "{text}");
        assert!(text.contains("read back true instead of false"), "{text}");
        // Each row names the backend that applied it, and a list is one item
        // a line, as the CLI prints it.
        let line = |needle: &str| text.lines().find(|l| l.contains(needle)).unwrap_or("");
        assert!(line("real_time_protection").contains("mdatp"), "{text}");
        assert!(line("excluded_paths").contains("/srv/cache"), "{text}");
        assert!(!line("excluded_paths").contains("/var/tmp"), "{text}");
        assert!(!text.contains("[\"/srv/cache\""), "{text}");
        assert!(text.lines().any(|l| l.trim() == "/var/tmp"), "{text}");
    }

    #[test]
    fn a_device_another_authority_manages_shows_it() {
        let dir = TempDir::new();
        let state = enrolled_state(&dir);
        state
            .save_enrollment(&EnrollmentRecord {
                state: LocalState::NotManaged,
                enrollment: Some(EnrollmentState {
                    status: "not_managed".into(),
                    code: Some("managed_by_other_authority".into()),
                    reason: Some("intune manages this device".into()),
                    managed_by: "intune".into(),
                    labels: vec!["Joined".into()],
                }),
                survey: Survey {
                    managed_by: Some("intune".into()),
                    evidence: vec![],
                },
                last_check_in: None,
                last_error: None,
            })
            .unwrap();
        let v = collect(&state).unwrap();
        assert_eq!(v.state, "not_managed");
        assert_eq!(v.managed_by.as_deref(), Some("intune"));
        let text = render(&v);
        assert!(
            text.contains("not_managed (managed_by_other_authority): intune manages this device"),
            "{text}"
        );
        // The code's cause and fix, from docs/troubleshooting.md's table.
        assert_eq!(v.help.len(), 1);
        assert_eq!(v.help[0].code, "managed_by_other_authority");
        assert!(
            text.contains(
                "cause:          managed_by_other_authority: Another management authority"
            ),
            "{text}"
        );
        assert!(
            text.contains("fix:            Remove the other authority from the device, or let Rampart take over: `rampart tenant set --allow-takeover true`."),
            "{text}"
        );
    }
}
