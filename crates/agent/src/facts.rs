//! Facts about the device, detected on it: hostname, OS family and version,
//! device type, agent version, and the tags of the agent's configuration.
//! A facts file (`--facts FILE`, YAML) overrides what was detected, for tests
//! and for simulating devices of other kinds from one machine.
//!
//! The device type heuristic: a device is a `workstation` when it carries a
//! desktop session — on Linux a display manager's session definitions
//! (`/usr/share/xsessions` or `/usr/share/wayland-sessions` not empty) or
//! `graphical.target` as systemd's default target; every macOS device; a
//! Windows device whose registry says client (`windows_facts.rs` reads the
//! version, edition, installation type and conditions such as domain
//! controller) — and a `server` otherwise. On Linux it errs on the side of
//! `server`, whose policies are the more conservative ones. On macOS the
//! version is `sw_vers`' product version and build.

use std::fs;
use std::path::Path;

use rampart_proto::device::Facts;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a facts file may override. Absent fields keep the detected value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactsOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl FactsOverride {
    /// Reads and checks a facts file.
    pub fn read(path: &Path) -> Result<FactsOverride> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        FactsOverride::parse(&text).map_err(|message| Error::Corrupt {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<FactsOverride, String> {
        let o: FactsOverride = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(os) = &o.os {
            if !["linux", "windows", "macos"].contains(&os.as_str()) {
                return Err(format!("os: {os:?} is not linux, windows or macos"));
            }
        }
        if let Some(t) = &o.device_type {
            if !["workstation", "server"].contains(&t.as_str()) {
                return Err(format!("type: {t:?} is not workstation or server"));
            }
        }
        if o.hostname.as_deref().is_some_and(|h| h.trim().is_empty()) {
            return Err("hostname: empty".into());
        }
        Ok(o)
    }

    pub fn apply(&self, facts: &mut Facts) {
        if let Some(v) = &self.hostname {
            facts.hostname = v.clone();
        }
        if let Some(v) = &self.os {
            facts.os = v.clone();
        }
        if let Some(v) = &self.os_version {
            facts.os_version = v.clone();
        }
        if let Some(v) = &self.device_type {
            facts.device_type = v.clone();
        }
        if let Some(v) = &self.tags {
            facts.tags = v.clone();
        }
    }
}

/// The facts of this machine, with the configuration's tags, then the
/// overrides.
pub fn gather(config_tags: &[String], overrides: Option<&FactsOverride>) -> Facts {
    let mut facts = Facts {
        hostname: hostname(),
        os: os_family(std::env::consts::OS).to_string(),
        os_version: os_version(),
        device_type: device_type().to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        tags: config_tags.to_vec(),
        ..Facts::default()
    };
    #[cfg(windows)]
    {
        let w = crate::windows_facts::parse(&crate::windows_facts::snapshot());
        if !w.os_version.is_empty() {
            facts.os_version = w.os_version;
        }
        facts.device_type = w.device_type.to_string();
        facts.edition = w.edition;
        facts.conditions = w.conditions;
    }
    if let Some(o) = overrides {
        o.apply(&mut facts);
    }
    facts
}

/// Rust's name for the OS → Rampart's platform names.
pub fn os_family(rust_os: &str) -> &str {
    match rust_os {
        "macos" => "macos",
        "windows" => "windows",
        "linux" => "linux",
        other => other,
    }
}

fn hostname() -> String {
    let from_proc = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    from_proc
        .or_else(|| command_output("hostname", &[]))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn os_version() -> String {
    match std::env::consts::OS {
        "linux" => fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| os_release_field(&text, "VERSION_ID"))
            .unwrap_or_default(),
        "macos" => command_output("sw_vers", &[])
            .map(|out| sw_vers_version(&out))
            .unwrap_or_default(),
        // "Microsoft Windows [Version 10.0.19045.3570]" → "10.0.19045.3570".
        "windows" => command_output("cmd", &["/C", "ver"])
            .and_then(|v| {
                let start = v.find("Version ")? + "Version ".len();
                Some(v[start..].trim_end_matches(']').trim().to_string())
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `sw_vers`' output (`ProductName:\tmacOS`, `ProductVersion:\t14.4.1`,
/// `BuildVersion:\t23E224`) → `14.4.1 (23E224)`.
pub fn sw_vers_version(text: &str) -> String {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    match (field("ProductVersion"), field("BuildVersion")) {
        (Some(v), Some(b)) => format!("{v} ({b})"),
        (Some(v), None) => v,
        _ => String::new(),
    }
}

/// A field of `/etc/os-release` (shell-style `KEY=value`, maybe quoted).
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

fn device_type() -> &'static str {
    match std::env::consts::OS {
        "macos" | "windows" => "workstation",
        _ => linux_device_type(Path::new("/")),
    }
}

/// The Linux heuristic, against a root directory so tests can build one.
pub fn linux_device_type(root: &Path) -> &'static str {
    let has_sessions = |dir: &str| {
        fs::read_dir(root.join(dir))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    };
    let graphical_default = fs::read_link(root.join("etc/systemd/system/default.target"))
        .map(|target| target.to_string_lossy().contains("graphical"))
        .unwrap_or(false);
    if has_sessions("usr/share/xsessions")
        || has_sessions("usr/share/wayland-sessions")
        || graphical_default
    {
        "workstation"
    } else {
        "server"
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn detected_facts_are_complete() {
        let f = gather(&["lab".into()], None);
        assert!(!f.hostname.is_empty());
        assert_eq!(f.os, os_family(std::env::consts::OS));
        assert!(["workstation", "server"].contains(&f.device_type.as_str()));
        assert_eq!(f.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(f.tags, ["lab"]);
    }

    #[test]
    fn a_facts_file_overrides_what_was_detected() {
        let o = FactsOverride::parse(
            "os: windows\nos_version: '11'\ntype: workstation\ntags: [finance, MDE-Management]\n",
        )
        .unwrap();
        let f = gather(&["lab".into()], Some(&o));
        assert_eq!(f.os, "windows");
        assert_eq!(f.os_version, "11");
        assert_eq!(f.device_type, "workstation");
        assert_eq!(f.tags, ["finance", "MDE-Management"]);
        // Not overridden: detected.
        assert!(!f.hostname.is_empty());

        let partial = FactsOverride::parse("os_version: '9.4'").unwrap();
        let f = gather(&["lab".into()], Some(&partial));
        assert_eq!(f.os_version, "9.4");
        assert_eq!(f.tags, ["lab"]);
    }

    #[test]
    fn facts_files_are_checked() {
        assert!(FactsOverride::parse("os: beos").unwrap_err().contains("os"));
        assert!(FactsOverride::parse("type: laptop")
            .unwrap_err()
            .contains("type"));
        assert!(FactsOverride::parse("colour: red")
            .unwrap_err()
            .contains("unknown field"));
        assert!(FactsOverride::parse("hostname: ''").is_err());
    }

    #[test]
    fn os_release_values() {
        let text = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(os_release_field(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_field(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_field(text, "VERSION"), None);
    }

    #[test]
    fn sw_vers_output() {
        let text = "ProductName:\t\tmacOS\nProductVersion:\t\t14.4.1\nBuildVersion:\t\t23E224\n";
        assert_eq!(sw_vers_version(text), "14.4.1 (23E224)");
        assert_eq!(sw_vers_version("ProductVersion: 13.0"), "13.0");
        assert_eq!(sw_vers_version("garbage"), "");
    }

    #[test]
    fn desktop_sessions_make_a_workstation() {
        let root = TempDir::new();
        assert_eq!(linux_device_type(root.path()), "server");
        fs::create_dir_all(root.path().join("usr/share/xsessions")).unwrap();
        assert_eq!(linux_device_type(root.path()), "server");
        fs::write(root.path().join("usr/share/xsessions/gnome.desktop"), "").unwrap();
        assert_eq!(linux_device_type(root.path()), "workstation");
    }
}
