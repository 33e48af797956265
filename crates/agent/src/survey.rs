//! The survey: is another management authority in charge of this device?
//! It runs at onboarding and at every start, and its answer travels with
//! every check-in; the server decides from it (and the tenant's takeover
//! setting) whether Rampart manages the device.
//!
//! Evidence is the presence of a path: the markers of the configuration
//! (`[survey] markers`), and — unless `survey.builtin = false` — the known
//! management agents of [`BUILTIN_MARKERS`]. The first marker found names
//! the authority; every one found is listed as evidence.

use std::path::Path;

use rampart_proto::device::Survey;

use crate::config::SurveyConfig;

/// Known management agents: `(authority, path)`. Paths of other platforms
/// simply never exist, so one table serves every build.
pub const BUILTIN_MARKERS: &[(&str, &str)] = &[
    // Microsoft Intune: the Linux company portal and agent, the macOS agent,
    // the Windows management extension.
    ("intune", "/opt/microsoft/intune"),
    ("intune", "/usr/bin/intune-portal"),
    ("intune", "/Library/Intune/Microsoft Intune Agent.app"),
    (
        "intune",
        r"C:\Program Files (x86)\Microsoft Intune Management Extension",
    ),
    // Jamf Pro (macOS): its binary and its support folder.
    ("jamf", "/usr/local/jamf/bin/jamf"),
    ("jamf", "/Library/Application Support/JAMF"),
    // Kandji (macOS).
    ("kandji", "/Library/Kandji"),
    // VMware Workspace ONE / AirWatch.
    ("workspace_one", "/Library/Application Support/AirWatch"),
    ("workspace_one", "/opt/vmware/ws1-hub"),
    // Any MDM on macOS: configuration profiles land here.
    ("mdm", MANAGED_PREFERENCES),
];

/// macOS configuration profiles land here.
pub const MANAGED_PREFERENCES: &str = "/Library/Managed Preferences";

/// Whether `dir` holds anything but the Defender preferences Rampart writes.
pub fn foreign_entries(dir: &Path) -> bool {
    let own = crate::providers::mdatp::config::MACOS_PLIST_NAME;
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy() != own)
    })
}

/// Looks for every marker; `exists` is the file system check (a parameter
/// so tests can stage a machine).
pub fn survey_with(config: &SurveyConfig, exists: impl Fn(&Path) -> bool) -> Survey {
    let configured = config
        .markers
        .iter()
        .map(|m| (m.authority.as_str(), m.path.as_path()));
    let builtin = BUILTIN_MARKERS
        .iter()
        .filter(|_| config.builtin)
        .map(|(a, p)| (*a, Path::new(*p)));
    let mut survey = Survey::default();
    for (authority, path) in configured.chain(builtin) {
        if exists(path) {
            if survey.managed_by.is_none() {
                survey.managed_by = Some(authority.to_string());
            }
            survey
                .evidence
                .push(format!("{authority}: {} exists", path.display()));
        }
    }
    survey
}

/// The survey of this machine.
pub fn survey(config: &SurveyConfig) -> Survey {
    #[allow(unused_mut)]
    let mut found = survey_with(config, |p| {
        // Rampart's own Defender preferences live there too (the mdatp
        // provider on macOS): they are no sign of another MDM.
        if p == Path::new(MANAGED_PREFERENCES) {
            return foreign_entries(p);
        }
        p.exists()
    });
    // Windows: an active MDM enrollment in the registry.
    #[cfg(windows)]
    if config.builtin {
        let w = crate::windows_facts::parse(&crate::windows_facts::snapshot());
        for provider in &w.mdm_providers {
            if found.managed_by.is_none() {
                found.managed_by = Some("mdm".into());
            }
            found.evidence.push(format!(
                r"mdm: HKLM\{}\… names ProviderID {provider}",
                crate::windows_facts::ENROLLMENTS
            ));
        }
    }
    if let Some(authority) = &found.managed_by {
        tracing::info!(
            event = "survey",
            managed_by = %authority,
            evidence = ?found.evidence,
            "another management authority manages this device"
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Marker;
    use crate::testutil::TempDir;

    #[test]
    fn a_configured_marker_names_the_authority() {
        let dir = TempDir::new();
        let marker = dir.path().join("acme-enrolled");
        let config = SurveyConfig {
            builtin: false,
            markers: vec![
                Marker {
                    path: dir.path().join("absent"),
                    authority: "other".into(),
                },
                Marker {
                    path: marker.clone(),
                    authority: "acme".into(),
                },
            ],
        };
        assert_eq!(survey(&config), Survey::default());
        std::fs::write(&marker, "").unwrap();
        let found = survey(&config);
        assert_eq!(found.managed_by.as_deref(), Some("acme"));
        assert_eq!(found.evidence.len(), 1);
        assert!(found.evidence[0].contains("acme-enrolled"));
    }

    #[test]
    fn builtin_agents_are_found_unless_disabled() {
        let staged = |p: &Path| p == Path::new("/usr/local/jamf/bin/jamf");
        let on = SurveyConfig {
            builtin: true,
            markers: Vec::new(),
        };
        assert_eq!(survey_with(&on, staged).managed_by.as_deref(), Some("jamf"));
        let off = SurveyConfig {
            builtin: false,
            markers: Vec::new(),
        };
        assert_eq!(survey_with(&off, staged), Survey::default());
    }

    #[test]
    fn rampart_s_own_managed_preferences_are_no_other_mdm() {
        let dir = TempDir::new();
        assert!(!foreign_entries(dir.path()));
        std::fs::write(dir.path().join("com.microsoft.wdav.plist"), "").unwrap();
        assert!(!foreign_entries(dir.path()));
        std::fs::write(dir.path().join("com.apple.screensaver.plist"), "").unwrap();
        assert!(foreign_entries(dir.path()));
        assert!(!foreign_entries(&dir.path().join("absent")));
    }

    #[test]
    fn configured_markers_come_first_and_all_evidence_is_kept() {
        let config = SurveyConfig {
            builtin: true,
            markers: vec![Marker {
                path: "/etc/acme".into(),
                authority: "acme".into(),
            }],
        };
        let found = survey_with(&config, |p| {
            p == Path::new("/etc/acme") || p == Path::new("/opt/microsoft/intune")
        });
        assert_eq!(found.managed_by.as_deref(), Some("acme"));
        assert_eq!(found.evidence.len(), 2);
    }
}
