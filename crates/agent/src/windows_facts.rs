//! Facts about a Windows device, from its registry: version and build,
//! edition, installation type (Server Core), domain controller, PowerShell
//! Constrained Language mode, and other management authorities (the
//! Configuration Manager client, an MDM enrollment).
//!
//! The seeds list configurations their product cannot manage (domain
//! controllers, Server Core, Constrained Language, non-persistent VDI).
//! Rampart reports each as
//! a condition with a stable code (`rampart_proto::device::conditions`). It
//! manages Server Core and Constrained Language devices — its registry
//! provider needs neither a desktop nor PowerShell — and domain controllers
//! only when the tenant allows it (the server decides, from the condition).
//!
//! The parsing is pure and tested on every platform; reading the registry
//! into a [`Snapshot`] is Windows-only.

use std::collections::BTreeMap;

use rampart_proto::device::conditions;

/// Where each fact is read.
pub const CURRENT_VERSION: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";
pub const PRODUCT_OPTIONS: &str = r"SYSTEM\CurrentControlSet\Control\ProductOptions";
/// The machine environment, where `__PSLockdownPolicy` is set.
pub const ENVIRONMENT: &str = r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment";
/// The Configuration Manager client's key.
pub const CCM: &str = r"SOFTWARE\Microsoft\CCM";
/// One subkey per MDM enrollment.
pub const ENROLLMENTS: &str = r"SOFTWARE\Microsoft\Enrollments";
/// The User Experience Virtualization policy key whose `VdiState` (the
/// "VDI Configuration" policy, ConfigureVdi in UserExperienceVirtualization.admx)
/// is enabled only on non-persistent, pooled virtual desktops.
pub const UEV_WINDOWS_SETTINGS: &str =
    r"SOFTWARE\Policies\Microsoft\UEV\Agent\Configuration\WindowsSettings";

/// The registry values the facts come from, as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Values of `CurrentVersion` (`CurrentMajorVersionNumber`,
    /// `CurrentMinorVersionNumber`, `CurrentBuildNumber`, `UBR`,
    /// `EditionID`, `InstallationType`, `ProductName`, `DisplayVersion`).
    pub current_version: BTreeMap<String, String>,
    /// `ProductOptions\ProductType`: `WinNT`, `ServerNT` or `LanmanNt`.
    pub product_type: Option<String>,
    /// `__PSLockdownPolicy` of the machine environment (or the process's).
    pub ps_lockdown_policy: Option<String>,
    /// Whether the Configuration Manager client's key exists.
    pub ccm_client: bool,
    /// Per enrollment subkey: its `ProviderID` and `EnrollmentState`.
    pub enrollments: Vec<(Option<String>, Option<String>)>,
    /// `UEV_WINDOWS_SETTINGS\VdiState`.
    pub uev_vdi_state: Option<String>,
}

/// What the snapshot means.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowsFacts {
    /// `10.0.26100.2314`.
    pub os_version: String,
    pub edition: Option<String>,
    /// `workstation` or `server`.
    pub device_type: &'static str,
    /// Stable codes, sorted.
    pub conditions: Vec<String>,
    /// MDM enrollments found (their provider ids), as survey evidence.
    pub mdm_providers: Vec<String>,
}

pub fn parse(s: &Snapshot) -> WindowsFacts {
    let get = |k: &str| s.current_version.get(k).map(|v| v.trim().to_string());
    let major = get("CurrentMajorVersionNumber").unwrap_or_else(|| "10".into());
    let minor = get("CurrentMinorVersionNumber").unwrap_or_else(|| "0".into());
    let build = get("CurrentBuildNumber").or_else(|| get("CurrentBuild"));
    let os_version = match (build, get("UBR")) {
        (Some(b), Some(u)) => format!("{major}.{minor}.{b}.{u}"),
        (Some(b), None) => format!("{major}.{minor}.{b}"),
        (None, _) => get("CurrentVersion").unwrap_or_default(),
    };
    let installation = get("InstallationType").unwrap_or_default();
    let product_type = s.product_type.as_deref().map(str::trim).unwrap_or("");
    let is_server = installation.to_ascii_lowercase().starts_with("server")
        || product_type.eq_ignore_ascii_case("ServerNT")
        || product_type.eq_ignore_ascii_case("LanmanNt");
    let mut found = Vec::new();
    if product_type.eq_ignore_ascii_case("LanmanNt") {
        found.push(conditions::DOMAIN_CONTROLLER);
    }
    if installation.eq_ignore_ascii_case("Server Core") {
        found.push(conditions::SERVER_CORE);
    }
    // PowerShell reads 4 (and higher values with that bit) as Constrained
    // Language; 8 is Full Language.
    if s.ps_lockdown_policy
        .as_deref()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|n| n & 4 == 4)
    {
        found.push(conditions::CONSTRAINED_LANGUAGE);
    }
    if s.ccm_client {
        found.push(conditions::CONFIGMGR_CLIENT);
    }
    if s.uev_vdi_state.as_deref().map(str::trim) == Some("1") {
        found.push(conditions::NON_PERSISTENT_VDI);
    }
    // An enrollment is active when its state is 1 and it names a provider.
    let mdm_providers: Vec<String> = s
        .enrollments
        .iter()
        .filter(|(provider, state)| {
            provider.as_deref().is_some_and(|p| !p.trim().is_empty())
                && state.as_deref().map(str::trim) == Some("1")
        })
        .filter_map(|(p, _)| p.clone())
        .collect();
    if !mdm_providers.is_empty() {
        found.push(conditions::MDM_ENROLLED);
    }
    let mut conditions: Vec<String> = found.into_iter().map(String::from).collect();
    conditions.sort();
    WindowsFacts {
        os_version,
        edition: get("EditionID").filter(|e| !e.is_empty()),
        device_type: if is_server { "server" } else { "workstation" },
        conditions,
        mdm_providers,
    }
}

/// The snapshot of this machine's registry.
#[cfg(windows)]
pub fn snapshot() -> Snapshot {
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ};
    use winreg::RegKey;

    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    let text = |key: &RegKey, name: &str| -> Option<String> {
        key.get_value::<String, _>(name)
            .ok()
            .or_else(|| key.get_value::<u32, _>(name).ok().map(|n| n.to_string()))
    };
    let mut snap = Snapshot::default();
    if let Ok(cv) = hklm.open_subkey_with_flags(CURRENT_VERSION, KEY_READ) {
        for name in [
            "CurrentMajorVersionNumber",
            "CurrentMinorVersionNumber",
            "CurrentBuildNumber",
            "CurrentBuild",
            "CurrentVersion",
            "UBR",
            "EditionID",
            "InstallationType",
            "ProductName",
            "DisplayVersion",
        ] {
            if let Some(v) = text(&cv, name) {
                snap.current_version.insert(name.to_string(), v);
            }
        }
    }
    snap.product_type = hklm
        .open_subkey_with_flags(PRODUCT_OPTIONS, KEY_READ)
        .ok()
        .and_then(|k| text(&k, "ProductType"));
    snap.ps_lockdown_policy = hklm
        .open_subkey_with_flags(ENVIRONMENT, KEY_READ)
        .ok()
        .and_then(|k| text(&k, "__PSLockdownPolicy"))
        .or_else(|| std::env::var("__PSLockdownPolicy").ok());
    snap.ccm_client = hklm.open_subkey_with_flags(CCM, KEY_READ).is_ok();
    snap.uev_vdi_state = hklm
        .open_subkey_with_flags(UEV_WINDOWS_SETTINGS, KEY_READ)
        .ok()
        .and_then(|k| text(&k, "VdiState"));
    if let Ok(enrollments) = hklm.open_subkey_with_flags(ENROLLMENTS, KEY_READ) {
        for name in enrollments.enum_keys().filter_map(Result::ok) {
            if let Ok(e) = enrollments.open_subkey_with_flags(&name, KEY_READ) {
                snap.enrollments
                    .push((text(&e, "ProviderID"), text(&e, "EnrollmentState")));
            }
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pairs: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            current_version: pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_windows_11_workstation() {
        let mut s = snapshot(&[
            ("CurrentMajorVersionNumber", "10"),
            ("CurrentMinorVersionNumber", "0"),
            ("CurrentBuildNumber", "26100"),
            ("UBR", "2314"),
            ("EditionID", "Professional"),
            ("InstallationType", "Client"),
        ]);
        s.product_type = Some("WinNT".into());
        let f = parse(&s);
        assert_eq!(f.os_version, "10.0.26100.2314");
        assert_eq!(f.edition.as_deref(), Some("Professional"));
        assert_eq!(f.device_type, "workstation");
        assert!(f.conditions.is_empty());
    }

    #[test]
    fn a_pooled_virtual_desktop_is_non_persistent_vdi() {
        let mut s = snapshot(&[("CurrentBuildNumber", "22631")]);
        s.uev_vdi_state = Some("1".into());
        assert_eq!(parse(&s).conditions, ["non_persistent_vdi"]);
        s.uev_vdi_state = Some("0".into());
        assert!(parse(&s).conditions.is_empty());
    }

    #[test]
    fn a_server_core_domain_controller_in_constrained_language() {
        let mut s = snapshot(&[
            ("CurrentBuildNumber", "20348"),
            ("EditionID", "ServerDatacenter"),
            ("InstallationType", "Server Core"),
        ]);
        s.product_type = Some("LanmanNt".into());
        s.ps_lockdown_policy = Some("4".into());
        let f = parse(&s);
        assert_eq!(f.os_version, "10.0.20348");
        assert_eq!(f.device_type, "server");
        assert_eq!(
            f.conditions,
            ["constrained_language", "domain_controller", "server_core"]
        );
        s.ps_lockdown_policy = Some("8".into());
        assert!(!parse(&s)
            .conditions
            .contains(&"constrained_language".to_string()));
    }

    #[test]
    fn other_management_authorities() {
        let mut s = snapshot(&[("CurrentBuildNumber", "19045")]);
        s.ccm_client = true;
        s.enrollments = vec![
            (Some("MS DM Server".into()), Some("1".into())),
            (None, Some("1".into())),
            (Some("stale".into()), Some("0".into())),
        ];
        let f = parse(&s);
        assert_eq!(f.conditions, ["configmgr_client", "mdm_enrolled"]);
        assert_eq!(f.mdm_providers, ["MS DM Server"]);
        // Nothing at all (a broken registry): no panic, no conditions.
        let empty = parse(&Snapshot::default());
        assert_eq!(empty.os_version, "");
        assert_eq!(empty.device_type, "workstation");
    }
}
