//! Pure: where each catalog setting lives in the Windows policy registry —
//! the key (under `HKEY_LOCAL_MACHINE`), value name, type and encoding that
//! Group Policy writes and Defender and Windows Firewall read.
//!
//! Sources (also in `docs/windows-registry.md`, one line per setting):
//! - Defender Antivirus, exclusions, ASR, network protection, controlled
//!   folder access: Microsoft's `WindowsDefender.admx` (the ADMX published
//!   in github.com/microsoft/defender-updatecontrols): each policy's `key`,
//!   `valueName` and enabled/disabled or enum values are copied from it.
//!   List policies (`<list additive="true" explicitValue="true">`) keep one
//!   REG_SZ value per item under their own subkey (the item is the value
//!   name, `0` the data) and switch themselves on with a REG_DWORD `1`
//!   named after the policy under the parent key.
//! - Windows Firewall: [MS-GPFAS] (Group Policy: Firewall and Advanced
//!   Security Data Structure) §2.2: per-profile keys `DomainProfile`,
//!   `PrivateProfile`, `PublicProfile` under
//!   `Software\Policies\Microsoft\WindowsFirewall` (`StandardProfile` is the
//!   pre-Vista profile, which the specification says these values MUST NOT
//!   be written to); rules under `...\FirewallRules` (`firewall_rule.rs`).
//! - EDR: Defender for Endpoint's documented device-tag registry value
//!   (`Windows Advanced Threat Protection\DeviceTagging`, `Group`), and its
//!   Group Policy sample-sharing value (`AllowSampleCollection`).
//! - Windows Security app: `WindowsDefenderSecurityCenter.admx` as listed
//!   in Policy CSP - WindowsDefenderSecurityCenter (each CSP policy names
//!   its ADMX registry value).
//!
//! Settings whose CSP node has no documented Group Policy registry value
//! (Defender/Configuration CSP-only settings such as update channels or
//! tamper protection) map to [`Target::Unsupported`] with the reason: they
//! are reported `not_applicable`, never silently dropped.

use serde_json::Value;

pub const DEFENDER: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender";
pub const FIREWALL: &str = r"SOFTWARE\Policies\Microsoft\WindowsFirewall";
pub const ATP: &str = r"SOFTWARE\Policies\Microsoft\Windows Advanced Threat Protection";
pub const SECURITY_CENTER: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center";

/// The three firewall profiles: (Rampart's name, the registry key name).
pub const PROFILES: [(&str, &str); 3] = [
    ("domain", "DomainProfile"),
    ("private", "PrivateProfile"),
    ("public", "PublicProfile"),
];

/// Registry data Rampart writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RegData {
    #[serde(rename = "REG_DWORD")]
    Dword(u32),
    #[serde(rename = "REG_SZ")]
    Sz(String),
}

impl std::fmt::Display for RegData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegData::Dword(n) => write!(f, "REG_DWORD {n}"),
            RegData::Sz(s) => write!(f, "REG_SZ {s:?}"),
        }
    }
}

/// How a catalog value becomes a REG_DWORD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Enc {
    /// A bool: (true, false). `Disable…` values invert: (0, 1).
    Bool(u32, u32),
    /// An enum: catalog value → number.
    Map(&'static [(&'static str, u32)]),
    /// A number, as is.
    Int,
}

/// Where a setting lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// One REG_DWORD.
    Dword(&'static str, &'static str, Enc),
    /// One REG_DWORD under a profile key of each firewall profile the
    /// setting covers (`None`: all three).
    Profile(Option<usize>, &'static str, &'static str, Enc),
    /// One REG_SZ, the string as is.
    Sz(&'static str, &'static str),
    /// One REG_SZ, the string as is, under a profile key of one firewall
    /// profile (its index in `PROFILES`).
    ProfileSz(usize, &'static str, &'static str),
    /// A list policy: items as value names under `key\sub`, data `0`, and
    /// the switch REG_DWORD `name` = 1 under `key`.
    List {
        key: &'static str,
        sub: &'static str,
        switch: &'static str,
    },
    /// ASR rules: one REG_SZ per rule GUID under `ASR\Rules`, the mode's
    /// number as data; switch `ExploitGuard_ASR_Rules` = 1.
    AsrRules,
    /// One severity's default action: REG_SZ under
    /// `Threats\ThreatSeverityDefaultAction`, value name = severity id.
    ThreatSeverity(&'static str),
    /// Firewall rules: one REG_SZ per rule under `FirewallRules`.
    FirewallRules,
    /// No documented policy registry value: reported not applicable.
    Unsupported(&'static str),
}

const ON_OFF: Enc = Enc::Bool(1, 0);
/// `Disable…` values: true (the feature on) is 0.
const INVERTED: Enc = Enc::Bool(0, 1);
const ACTION: Enc = Enc::Map(&[("allow", 0), ("block", 1)]);

const RTP: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Real-Time Protection";
const SCAN: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Scan";
const SPYNET: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Spynet";
const MPENGINE: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\MpEngine";
const SIGNATURES: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Signature Updates";
const NETWORK_PROTECTION: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Windows Defender Exploit Guard\Network Protection";
const CFA: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Windows Defender Exploit Guard\Controlled Folder Access";
pub const ASR: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender\Windows Defender Exploit Guard\ASR";
const EXCLUSIONS: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Exclusions";
pub const THREATS: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender\Threats";
pub const FIREWALL_RULES: &str = r"SOFTWARE\Policies\Microsoft\WindowsFirewall\FirewallRules";

const OFF_BLOCK_AUDIT: Enc = Enc::Map(&[("off", 0), ("block", 1), ("audit", 2)]);

/// ASR rule modes (reference.md, "Windows: ASR rules").
pub const ASR_MODES: &[(&str, u32)] = &[
    ("off", 0),
    ("block", 1),
    ("audit", 2),
    ("not_configured", 5),
    ("warn", 6),
];

/// Default actions by threat severity (WindowsDefender.admx list values;
/// the catalog's ids).
pub const THREAT_ACTIONS: &[(&str, u32)] = &[
    ("clean", 1),
    ("quarantine", 2),
    ("remove", 3),
    ("allow", 6),
    ("user_defined", 8),
    ("block", 10),
];

const NO_GP: &str = "Microsoft documents this setting only as a Defender Configuration CSP node, with no Group Policy registry value for the registry provider to write";

/// Where `setting` lives, or `None` when the setting is not a Windows one.
pub fn target(setting: &str) -> Option<Target> {
    use Target::*;
    if let Some(t) = firewall_profile_target(setting) {
        return Some(t);
    }
    let t = match setting {
        // Antivirus: WindowsDefender.admx.
        "real_time_protection" => Dword(RTP, "DisableRealtimeMonitoring", INVERTED),
        "behavior_monitoring" => Dword(RTP, "DisableBehaviorMonitoring", INVERTED),
        "ioav_protection" => Dword(RTP, "DisableIOAVProtection", INVERTED),
        "on_access_protection" => Dword(RTP, "DisableOnAccessProtection", INVERTED),
        "script_scanning" => Dword(RTP, "DisableScriptScanning", INVERTED),
        "realtime_scan_direction" => Dword(
            RTP,
            "RealtimeScanDirection",
            Enc::Map(&[("both", 0), ("incoming", 1), ("outgoing", 2)]),
        ),
        "scan_archives" => Dword(SCAN, "DisableArchiveScanning", INVERTED),
        "email_scanning" => Dword(SCAN, "DisableEmailScanning", INVERTED),
        "full_scan_removable_drives" => Dword(SCAN, "DisableRemovableDriveScanning", INVERTED),
        "full_scan_mapped_network_drives" => Dword(
            SCAN,
            "DisableScanningMappedNetworkDrivesForFullScan",
            INVERTED,
        ),
        "scan_network_files" => Dword(SCAN, "DisableScanningNetworkFiles", INVERTED),
        "catch_up_full_scan" => Dword(SCAN, "DisableCatchupFullScan", INVERTED),
        "catch_up_quick_scan" => Dword(SCAN, "DisableCatchupQuickScan", INVERTED),
        "check_signatures_before_scan" => {
            Dword(SCAN, "CheckForSignaturesBeforeRunningScan", ON_OFF)
        }
        "scan_type" => Dword(
            SCAN,
            "ScanParameters",
            Enc::Map(&[("quick", 1), ("full", 2)]),
        ),
        "scheduled_scan_day" => Dword(
            SCAN,
            "ScheduleDay",
            Enc::Map(&[
                ("every_day", 0),
                ("sunday", 1),
                ("monday", 2),
                ("tuesday", 3),
                ("wednesday", 4),
                ("thursday", 5),
                ("friday", 6),
                ("saturday", 7),
                ("never", 8),
            ]),
        ),
        "scheduled_scan_time" => Dword(SCAN, "ScheduleTime", Enc::Int),
        "scheduled_quick_scan_time" => Dword(SCAN, "ScheduleQuickScanTime", Enc::Int),
        "avg_cpu_load_factor" => Dword(SCAN, "AvgCPULoadFactor", Enc::Int),
        "low_cpu_priority" => Dword(SCAN, "LowCpuPriority", ON_OFF),
        "days_to_retain_cleaned_malware" => Dword(SCAN, "PurgeItemsAfterDelay", Enc::Int),
        "pua_protection" => Dword(DEFENDER, "PUAProtection", OFF_BLOCK_AUDIT),
        "randomize_scheduled_task_times" => Dword(DEFENDER, "RandomizeScheduleTaskTimes", ON_OFF),
        "scheduler_randomization_hours" => Dword(DEFENDER, "SchedulerRandomizationTime", Enc::Int),
        "local_admin_merge" => Dword(DEFENDER, "DisableLocalAdminMerge", INVERTED),
        "hide_exclusions_from_local_admins" => {
            Dword(DEFENDER, "HideExclusionsFromLocalAdmins", ON_OFF)
        }
        "user_ui_access" => Dword(
            r"SOFTWARE\Policies\Microsoft\Windows Defender\UX Configuration",
            "UILockdown",
            INVERTED,
        ),
        // Cloud protection is MAPS membership: 2 (advanced) when on.
        "cloud_protection" => Dword(SPYNET, "SpynetReporting", Enc::Bool(2, 0)),
        "submit_samples_consent" => Dword(
            SPYNET,
            "SubmitSamplesConsent",
            Enc::Map(&[
                ("always_prompt", 0),
                ("send_safe_samples", 1),
                ("never_send", 2),
                ("send_all_samples", 3),
            ]),
        ),
        // The ADMX has a moderate level (1), which the CSP lacks.
        "cloud_block_level" => Dword(
            MPENGINE,
            "MpCloudBlockLevel",
            Enc::Map(&[
                ("normal", 0),
                ("moderate", 1),
                ("high", 2),
                ("high_plus", 4),
                ("zero_tolerance", 6),
            ]),
        ),
        "cloud_extended_timeout" => Dword(MPENGINE, "MpBafsExtendedTimeout", Enc::Int),
        "enable_file_hash_computation" => Dword(MPENGINE, "EnableFileHashComputation", ON_OFF),
        "signature_update_interval" => Dword(SIGNATURES, "SignatureUpdateInterval", Enc::Int),
        "metered_connection_updates" => Dword(SIGNATURES, "MeteredConnectionUpdates", ON_OFF),
        "signature_update_fallback_order" => Sz(SIGNATURES, "FallbackOrder"),
        "signature_update_file_shares_sources" => {
            Sz(SIGNATURES, "DefinitionUpdateFileSharesSources")
        }
        "network_protection" => Dword(NETWORK_PROTECTION, "EnableNetworkProtection", OFF_BLOCK_AUDIT),
        "network_protection_on_servers" => Dword(
            NETWORK_PROTECTION,
            "AllowNetworkProtectionOnWinServer",
            ON_OFF,
        ),
        "controlled_folder_access" => Dword(
            CFA,
            "EnableControlledFolderAccess",
            Enc::Map(&[
                ("off", 0),
                ("block", 1),
                ("audit", 2),
                ("block_disk_modification", 3),
                ("audit_disk_modification", 4),
            ]),
        ),
        "controlled_folder_access_protected_folders" => List {
            key: CFA,
            sub: "ProtectedFolders",
            switch: "ExploitGuard_ControlledFolderAccess_ProtectedFolders",
        },
        "controlled_folder_access_allowed_applications" => List {
            key: CFA,
            sub: "AllowedApplications",
            switch: "ExploitGuard_ControlledFolderAccess_AllowedApplications",
        },
        "remediation_action_low" => ThreatSeverity("1"),
        "remediation_action_moderate" => ThreatSeverity("2"),
        "remediation_action_high" => ThreatSeverity("4"),
        "remediation_action_severe" => ThreatSeverity("5"),
        // Exclusions: WindowsDefender.admx list policies.
        "excluded_paths" => List {
            key: EXCLUSIONS,
            sub: "Paths",
            switch: "Exclusions_Paths",
        },
        "excluded_extensions" => List {
            key: EXCLUSIONS,
            sub: "Extensions",
            switch: "Exclusions_Extensions",
        },
        "excluded_processes" => List {
            key: EXCLUSIONS,
            sub: "Processes",
            switch: "Exclusions_Processes",
        },
        // ASR.
        "asr_rules" => AsrRules,
        "asr_only_exclusions" => List {
            key: ASR,
            sub: "ASROnlyExclusions",
            switch: "ExploitGuard_ASR_ASROnlyExclusions",
        },
        "asr_rule_exclusions" => Unsupported(
            "per-rule ASR exclusions have no value in Microsoft's published WindowsDefender.admx; use asr_only_exclusions",
        ),
        // EDR.
        "sample_sharing" => Dword(ATP, "AllowSampleCollection", Enc::Map(&[("none", 0), ("all", 1)])),
        "edr_device_tag" => Sz(
            r"SOFTWARE\Policies\Microsoft\Windows Advanced Threat Protection\DeviceTagging",
            "Group",
        ),
        "telemetry_reporting_frequency" => Unsupported(
            "expedited telemetry reporting is deprecated on this channel and refused",
        ),
        "allow_intrusion_prevention_system" => {
            Unsupported("AllowIntrusionPreventionSystem is deprecated and refused")
        }
        "tamper_protection" => Unsupported(
            "tamper protection cannot be set through policy registry values; Microsoft manages it from the Defender portal or Intune",
        ),
        // Firewall: MS-GPFAS §2.2.3 and §2.2.2 (global values).
        "firewall_enabled" => Profile(None, "", "EnableFirewall", ON_OFF),
        "default_inbound_action" => Profile(None, "", "DefaultInboundAction", ACTION),
        "default_outbound_action" => Profile(None, "", "DefaultOutboundAction", ACTION),
        "firewall_preshared_key_encoding" => Dword(
            FIREWALL,
            "PresharedKeyEncoding",
            Enc::Map(&[("none", 0), ("utf8", 1)]),
        ),
        "firewall_rules" => FirewallRules,
        // Windows Security app: WindowsDefenderSecurityCenter.admx.
        "security_center_hide_account_protection" => {
            Dword(SC_ACCOUNT, "UILockdown", ON_OFF)
        }
        "security_center_hide_app_browser_control" => Dword(SC_APP, "UILockdown", ON_OFF),
        "security_center_hide_device_security" => Dword(SC_DEVICE, "UILockdown", ON_OFF),
        "security_center_hide_family_options" => Dword(SC_FAMILY, "UILockdown", ON_OFF),
        "security_center_hide_device_performance" => Dword(SC_HEALTH, "UILockdown", ON_OFF),
        "security_center_hide_firewall_network" => Dword(SC_NETWORK, "UILockdown", ON_OFF),
        "security_center_hide_virus_protection" => Dword(SC_VIRUS, "UILockdown", ON_OFF),
        "security_center_hide_ransomware_recovery" => {
            Dword(SC_VIRUS, "HideRansomwareRecovery", ON_OFF)
        }
        "security_center_hide_notifications" => {
            Dword(SC_NOTIFICATIONS, "DisableNotifications", ON_OFF)
        }
        "security_center_hide_enhanced_notifications" => {
            Dword(SC_NOTIFICATIONS, "DisableEnhancedNotifications", ON_OFF)
        }
        "security_center_hide_tray_icon" => Dword(SC_SYSTRAY, "HideSystray", ON_OFF),
        "security_center_hide_clear_tpm" => Dword(SC_DEVICE, "DisableClearTpmButton", ON_OFF),
        "security_center_hide_tpm_update_warning" => {
            Dword(SC_DEVICE, "DisableTpmFirmwareUpdateWarning", ON_OFF)
        }
        "security_center_contact_company" => Sz(SC_CUSTOM, "CompanyName"),
        "security_center_contact_email" => Sz(SC_CUSTOM, "Email"),
        "security_center_contact_phone" => Sz(SC_CUSTOM, "Phone"),
        "security_center_contact_url" => Sz(SC_CUSTOM, "URL"),
        "security_center_customized_notifications" => Dword(SC_CUSTOM, "EnableForToasts", ON_OFF),
        "security_center_customized_contact_card" => Dword(SC_CUSTOM, "EnableInApp", ON_OFF),
        other if WINDOWS_CSP_ONLY.contains(&other) => Unsupported(NO_GP),
        _ => return None,
    };
    Some(t)
}

const SC_ACCOUNT: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Account protection";
const SC_APP: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\App and Browser protection";
const SC_DEVICE: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Device security";
const SC_FAMILY: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Family options";
const SC_HEALTH: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Device performance and health";
const SC_NETWORK: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Firewall and network protection";
const SC_VIRUS: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Virus and threat protection";
const SC_NOTIFICATIONS: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Notifications";
const SC_SYSTRAY: &str = r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Systray";
const SC_CUSTOM: &str =
    r"SOFTWARE\Policies\Microsoft\Windows Defender Security Center\Enterprise Customization";

/// Windows settings of the catalog whose only documented form is a CSP node.
const WINDOWS_CSP_ONLY: &[&str] = &[
    "network_protection_down_level",
    "network_protection_dns_over_tcp_parsing",
    "network_protection_http_parsing",
    "network_protection_ssh_parsing",
    "network_protection_tls_parsing",
    "network_protection_dns_sinkhole",
    "network_protection_dns_parsing",
    "network_protection_rdp_parsing",
    "network_protection_inbound_connection_filtering",
    "network_protection_datagram_processing_on_servers",
    "network_protection_async_inspection",
    "engine_update_channel",
    "platform_update_channel",
    "security_intelligence_update_channel",
    "quick_scan_include_exclusions",
    "firewall_stateful_ftp",
    "firewall_crl_check",
    "firewall_sa_idle_time",
];

/// The per-profile firewall settings: `firewall_<profile>_<what>`.
fn firewall_profile_target(setting: &str) -> Option<Target> {
    let rest = setting.strip_prefix("firewall_")?;
    let (index, what) = PROFILES
        .iter()
        .enumerate()
        .find_map(|(i, (p, _))| Some((i, rest.strip_prefix(p)?.strip_prefix('_')?)))?;
    let (sub, name, enc) = match what {
        "enabled" => ("", "EnableFirewall", ON_OFF),
        "default_inbound_action" => ("", "DefaultInboundAction", ACTION),
        "default_outbound_action" => ("", "DefaultOutboundAction", ACTION),
        "inbound_notifications" => ("", "DisableNotifications", INVERTED),
        "stealth_mode" => ("", "DisableStealthMode", INVERTED),
        "shielded" => ("", "DoNotAllowExceptions", ON_OFF),
        "unicast_responses_to_multicast" => {
            ("", "DisableUnicastResponsesToMulticastBroadcast", INVERTED)
        }
        "local_policy_merge" => ("", "AllowLocalPolicyMerge", ON_OFF),
        "local_ipsec_policy_merge" => ("", "AllowLocalIPsecPolicyMerge", ON_OFF),
        "log_max_file_size" => ("Logging", "LogFileSize", Enc::Int),
        "log_dropped_packets" => ("Logging", "LogDroppedPackets", ON_OFF),
        "log_successful_connections" => ("Logging", "LogSuccessfulConnections", ON_OFF),
        // [MS-GPFAS] 2.2.3: the log file's path, a REG_SZ of the profile's
        // Logging key.
        "log_file_path" => return Some(Target::ProfileSz(index, "Logging", "LogFilePath")),
        "local_app_rules_merge" | "local_port_rules_merge" => {
            return Some(Target::Unsupported(
                "the Windows XP-era authorized-application and globally-open-port merge switches have no Windows Firewall with Advanced Security policy value",
            ))
        }
        _ => return None,
    };
    Some(Target::Profile(Some(index), sub, name, enc))
}

/// The key of a firewall profile, with a subkey.
pub fn profile_key(index: usize, sub: &str) -> String {
    let name = PROFILES.get(index).map_or("PublicProfile", |(_, k)| k);
    if sub.is_empty() {
        format!(r"{FIREWALL}\{name}")
    } else {
        format!(r"{FIREWALL}\{name}\{sub}")
    }
}

impl Enc {
    /// The number a catalog value is written as; `Err` says why it cannot be.
    pub fn encode(self, value: &Value) -> Result<u32, String> {
        match (self, value) {
            (Enc::Bool(t, f), Value::Bool(b)) => Ok(if *b { t } else { f }),
            (Enc::Map(pairs), Value::String(s)) => pairs
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| *n)
                .ok_or_else(|| format!("{s:?} has no registry value")),
            // The catalog's "off" may come through as a YAML bool.
            (Enc::Map(pairs), Value::Bool(false)) => pairs
                .iter()
                .find(|(k, _)| *k == "off")
                .map(|(_, n)| *n)
                .ok_or_else(|| "false has no registry value".to_string()),
            (Enc::Int, Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{n} does not fit a REG_DWORD")),
            (_, other) => Err(format!("{other} has no registry value")),
        }
    }

    /// The catalog value a number means; a number the mapping does not know
    /// comes back as the number, so that it shows as a mismatch.
    pub fn decode(self, n: u32) -> Value {
        match self {
            Enc::Bool(t, _) if n == t => Value::Bool(true),
            Enc::Bool(_, f) if n == f => Value::Bool(false),
            // Cloud protection: basic MAPS (1) is on too.
            Enc::Bool(2, 0) if n == 1 => Value::Bool(true),
            Enc::Map(pairs) => pairs
                .iter()
                .find(|(_, v)| *v == n)
                .map_or_else(|| Value::from(n), |(k, _)| Value::from(*k)),
            _ => Value::from(n),
        }
    }
}

/// One line per setting for `docs/windows-registry.md`: where it lives and
/// how its value is written.
pub fn describe(setting: &str) -> Option<String> {
    let enc = |e: Enc| match e {
        Enc::Bool(t, f) => format!("true → {t}, false → {f}"),
        Enc::Map(pairs) => pairs
            .iter()
            .map(|(k, n)| format!("{k} → {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        Enc::Int => "the number".into(),
    };
    Some(match target(setting)? {
        Target::Dword(key, name, e) => format!(r"`HKLM\{key}` `{name}` REG_DWORD ({})", enc(e)),
        Target::Profile(which, sub, name, e) => {
            let profiles = match which {
                Some(i) => profile_key(i, sub),
                None => format!(r"{FIREWALL}\{{DomainProfile,PrivateProfile,PublicProfile}}"),
            };
            format!(r"`HKLM\{profiles}` `{name}` REG_DWORD ({})", enc(e))
        }
        Target::Sz(key, name) => format!(r"`HKLM\{key}` `{name}` REG_SZ (the string)"),
        Target::ProfileSz(i, sub, name) => format!(
            r"`HKLM\{}` `{name}` REG_SZ (the string)",
            profile_key(i, sub)
        ),
        Target::List { key, sub, switch } => format!(
            r"`HKLM\{key}\{sub}`: one REG_SZ `0` per item, named after it; `{switch}` REG_DWORD 1 under `HKLM\{key}`"
        ),
        Target::AsrRules => format!(
            r"`HKLM\{ASR}\Rules`: one REG_SZ per rule GUID (off → 0, block → 1, audit → 2, warn → 6; not_configured writes nothing); `ExploitGuard_ASR_Rules` REG_DWORD 1 under `HKLM\{ASR}`"
        ),
        Target::ThreatSeverity(id) => format!(
            r"`HKLM\{THREATS}\ThreatSeverityDefaultAction` `{id}` REG_SZ (clean → 1, quarantine → 2, remove → 3, allow → 6, user_defined → 8, block → 10); `Threats_ThreatSeverityDefaultAction` REG_DWORD 1"
        ),
        Target::FirewallRules => format!(
            r"`HKLM\{FIREWALL_RULES}`: one REG_SZ per rule, named `Rampart-<name>`, in the [MS-GPFAS] rule grammar"
        ),
        Target::Unsupported(why) => format!("not applicable: {why}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::catalog::Catalog;
    use serde_json::json;

    #[test]
    fn every_windows_setting_of_the_catalog_has_a_target() {
        let catalog = Catalog::builtin();
        for s in catalog.iter() {
            if s.allows_platform(rampart_core::model::Platform::Windows) {
                assert!(target(&s.id).is_some(), "{} has no registry target", s.id);
            }
        }
    }

    /// `docs/windows-registry.md` lists every setting the provider knows,
    /// with this module's own description of it.
    #[test]
    fn the_documentation_lists_every_setting() {
        let doc = include_str!("../../../../../docs/windows-registry.md");
        let catalog = Catalog::builtin();
        let mut missing = Vec::new();
        for s in catalog.iter() {
            if let Some(line) = describe(&s.id) {
                let row = format!("| `{}` | {line} |", s.id);
                if !doc.contains(&row) {
                    missing.push(row);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/windows-registry.md lacks (or has stale) rows:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn group_policy_spellings() {
        assert_eq!(
            target("real_time_protection"),
            Some(Target::Dword(RTP, "DisableRealtimeMonitoring", INVERTED))
        );
        assert_eq!(INVERTED.encode(&json!(true)), Ok(0));
        assert_eq!(INVERTED.encode(&json!(false)), Ok(1));
        assert_eq!(INVERTED.decode(1), json!(false));
        let Some(Target::Dword(_, name, enc)) = target("cloud_block_level") else {
            panic!("cloud_block_level")
        };
        assert_eq!(name, "MpCloudBlockLevel");
        assert_eq!(enc.encode(&json!("high_plus")), Ok(4));
        assert_eq!(enc.decode(6), json!("zero_tolerance"));
        assert_eq!(enc.decode(9), json!(9));
        assert_eq!(OFF_BLOCK_AUDIT.encode(&json!("off")), Ok(0));
        assert_eq!(OFF_BLOCK_AUDIT.encode(&json!(false)), Ok(0));
        assert!(Enc::Int.encode(&json!(-1)).is_err());
        assert!(Enc::Int.encode(&json!(5_000_000_000u64)).is_err());
        assert_eq!(
            target("firewall_private_default_inbound_action"),
            Some(Target::Profile(Some(1), "", "DefaultInboundAction", ACTION))
        );
        assert_eq!(
            profile_key(1, ""),
            r"SOFTWARE\Policies\Microsoft\WindowsFirewall\PrivateProfile"
        );
        assert_eq!(
            profile_key(0, "Logging"),
            r"SOFTWARE\Policies\Microsoft\WindowsFirewall\DomainProfile\Logging"
        );
        assert!(matches!(
            target("tamper_protection"),
            Some(Target::Unsupported(_))
        ));
        assert_eq!(target("max_file_size_mb"), None);
    }
}
