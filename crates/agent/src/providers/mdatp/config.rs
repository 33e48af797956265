//! `[providers.mdatp]` of the agent's configuration.
//!
//! ```toml
//! [providers.mdatp]
//! enabled = true                                                      # default false
//! path = "/etc/opt/microsoft/mdatp/managed/mdatp_managed.json"        # the default on Linux
//! health_command = ["mdatp", "health", "--output", "json"]            # [] = never ask
//! ```
//!
//! On macOS the default path is Defender's managed preferences,
//! `/Library/Managed Preferences/com.microsoft.wdav.plist`: the same keys as
//! `mdatp_managed.json`, as a property list. A path ending in `.plist` is
//! written as a property list (XML), any other as JSON.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

pub const DEFAULT_PATH: &str = "/etc/opt/microsoft/mdatp/managed/mdatp_managed.json";
/// The file name of Defender's managed preferences on macOS.
pub const MACOS_PLIST_NAME: &str = "com.microsoft.wdav.plist";
pub const MACOS_DEFAULT_PATH: &str = "/Library/Managed Preferences/com.microsoft.wdav.plist";

/// How the managed file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// A property list (macOS managed preferences).
    Plist,
}

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdatpFile {
    enabled: Option<bool>,
    path: Option<PathBuf>,
    health_command: Option<Vec<String>>,
}

/// The checked section.
#[derive(Debug, Clone, PartialEq)]
pub struct MdatpConfig {
    pub enabled: bool,
    pub path: PathBuf,
    /// Asks Defender for Endpoint what it enforces; empty: never asked.
    pub health_command: Vec<String>,
    pub format: Format,
}

impl MdatpFile {
    pub fn check(self) -> Result<MdatpConfig, ConfigError> {
        let default = if cfg!(target_os = "macos") {
            MACOS_DEFAULT_PATH
        } else {
            DEFAULT_PATH
        };
        let path = self.path.unwrap_or_else(|| PathBuf::from(default));
        let format = if path.extension().is_some_and(|e| e == "plist") {
            Format::Plist
        } else {
            Format::Json
        };
        // `has_root`, not `is_absolute`: the Linux default is rooted, not
        // absolute, on Windows, where the provider is off.
        if !path.has_root() {
            return Err(ConfigError::Invalid {
                field: "providers.mdatp",
                message: format!("{} is not an absolute path", path.display()),
            });
        }
        Ok(MdatpConfig {
            enabled: self.enabled.unwrap_or(false),
            path,
            health_command: self.health_command.unwrap_or_else(|| {
                ["mdatp", "health", "--output", "json"]
                    .map(String::from)
                    .to_vec()
            }),
            format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<MdatpConfig, ConfigError> {
        let file: MdatpFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        file.check()
    }

    #[test]
    fn defaults_and_checks() {
        let c = check("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.path, PathBuf::from(DEFAULT_PATH));
        assert_eq!(c.health_command, ["mdatp", "health", "--output", "json"]);
        assert!(check("path = \"mdatp_managed.json\"").is_err());
        assert!(check("health = []").is_err());
        let c = check("enabled = true\nhealth_command = []\npath = \"/tmp/m.json\"").unwrap();
        assert!(c.enabled && c.health_command.is_empty());
        assert_eq!(c.format, Format::Json);
        let c = check("path = \"/Library/Managed Preferences/com.microsoft.wdav.plist\"").unwrap();
        assert_eq!(c.format, Format::Plist);
    }
}
