//! `[providers.registry]` of the agent's configuration (Windows).
//!
//! ```toml
//! [providers.registry]
//! enabled = true        # default: true on Windows; the provider exists only there
//! base_key = ""         # a key under HKLM the policy keys are placed below
//!                       # (tests only); "" = the real policy keys
//! ```
//!
//! The ledger of values Rampart wrote is `<state-dir>/registry/ledger.json`
//! (not configurable: part of the state directory).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    enabled: Option<bool>,
    base_key: Option<String>,
}

/// The checked section.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub enabled: bool,
    /// Prefix of every key written, under HKLM; empty for the real keys.
    pub base_key: String,
    pub ledger: PathBuf,
}

impl RegistryFile {
    pub fn check(self, state_dir: &Path) -> Result<RegistryConfig, ConfigError> {
        let on_windows = cfg!(windows);
        let enabled = self.enabled.unwrap_or(on_windows);
        if enabled && !on_windows {
            return Err(ConfigError::Invalid {
                field: "providers.registry.enabled",
                message: "the registry provider exists only in the Windows build of the agent"
                    .into(),
            });
        }
        let base_key = self.base_key.unwrap_or_default();
        let base_key = base_key.trim_matches('\\').to_string();
        if base_key.contains("\\\\") || base_key.contains('/') {
            return Err(ConfigError::Invalid {
                field: "providers.registry.base_key",
                message: format!("{base_key:?} is not a registry key path (KEY\\SUBKEY)"),
            });
        }
        Ok(RegistryConfig {
            enabled,
            base_key,
            ledger: state_dir.join("registry").join("ledger.json"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<RegistryConfig, ConfigError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        file.check(Path::new("/state"))
    }

    #[test]
    fn defaults_and_checks() {
        let c = check("").unwrap();
        assert_eq!(c.enabled, cfg!(windows));
        assert_eq!(c.base_key, "");
        assert_eq!(c.ledger, Path::new("/state/registry/ledger.json"));
        assert_eq!(
            check(r#"base_key = 'SOFTWARE\Test\'"#).unwrap().base_key,
            r"SOFTWARE\Test"
        );
        assert!(check("base_key = 'a/b'").is_err());
        assert!(check("colour = 1").is_err());
        if !cfg!(windows) {
            let e = check("enabled = true").unwrap_err().to_string();
            assert!(e.contains("only in the Windows build"), "{e}");
        }
    }
}
