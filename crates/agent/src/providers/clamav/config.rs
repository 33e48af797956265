//! `[providers.clamav]` of the agent's configuration.
//!
//! ```toml
//! [providers.clamav]
//! enabled = true                                  # default false
//! config_path = "/etc/clamav/clamd.conf"          # the clamd.conf Rampart manages a block of
//! socket = "/run/clamav/clamd.ctl"                # clamd's LocalSocket
//! on_access_include_paths = ["/home", "/srv"]     # watched by clamonacc when real-time protection is on
//! clamonacc_command = ["clamonacc", "--foreground", "--fdpass", "--config-file=/etc/clamav/clamd.conf"]
//! restart_command = ["systemctl", "restart", "clamav-daemon.service"]   # [] = never restart clamd
//! restart_timeout_secs = 120
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClamavFile {
    enabled: Option<bool>,
    config_path: Option<PathBuf>,
    socket: Option<PathBuf>,
    on_access_include_paths: Option<Vec<PathBuf>>,
    clamonacc_command: Option<Vec<String>>,
    restart_command: Option<Vec<String>>,
    restart_timeout_secs: Option<u64>,
}

/// The checked section.
#[derive(Debug, Clone, PartialEq)]
pub struct ClamavConfig {
    pub enabled: bool,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub on_access_include_paths: Vec<PathBuf>,
    /// Runs clamonacc in the foreground as the agent's child while
    /// real-time protection is on.
    pub clamonacc_command: Vec<String>,
    /// clamonacc's output goes here (`<state-dir>/clamonacc.log`).
    pub clamonacc_log: PathBuf,
    /// Restarts clamd so that it loads clamd.conf; empty: the agent never
    /// restarts clamd, and a change waits for someone to.
    pub restart_command: Vec<String>,
    /// How long a restart may take, until clamd answers again.
    pub restart_timeout: Duration,
}

const FIELD: &str = "providers.clamav";

impl ClamavFile {
    pub fn check(self, state_dir: &Path) -> Result<ClamavConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            field: FIELD,
            message,
        };
        let config_path = self
            .config_path
            .unwrap_or_else(|| PathBuf::from("/etc/clamav/clamd.conf"));
        let socket = self
            .socket
            .unwrap_or_else(|| PathBuf::from("/run/clamav/clamd.ctl"));
        let include = self.on_access_include_paths.unwrap_or_default();
        for p in [&config_path, &socket].into_iter().chain(&include) {
            // `has_root`: on Windows a default like /etc/clamav/clamd.conf is rooted
            // on the current drive, which is enough for a provider that is off there.
            if !p.has_root() {
                return Err(invalid(format!("{} is not an absolute path", p.display())));
            }
            if p.to_string_lossy().contains(['\n', '\r']) {
                return Err(invalid(format!("{:?} contains a line break", p)));
            }
        }
        let clamonacc_command = self.clamonacc_command.unwrap_or_else(|| {
            vec![
                "clamonacc".into(),
                "--foreground".into(),
                "--fdpass".into(),
                format!("--config-file={}", config_path.display()),
            ]
        });
        if clamonacc_command.is_empty() {
            return Err(invalid("clamonacc_command is empty".into()));
        }
        let restart_command = self.restart_command.unwrap_or_else(|| {
            ["systemctl", "restart", "clamav-daemon.service"]
                .map(String::from)
                .to_vec()
        });
        let timeout = self.restart_timeout_secs.unwrap_or(120);
        if !(1..=3600).contains(&timeout) {
            return Err(invalid(format!(
                "restart_timeout_secs {timeout} is not between 1 and 3600"
            )));
        }
        Ok(ClamavConfig {
            enabled: self.enabled.unwrap_or(false),
            config_path,
            socket,
            on_access_include_paths: include,
            clamonacc_command,
            clamonacc_log: state_dir.join("clamonacc.log"),
            restart_command,
            restart_timeout: Duration::from_secs(timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<ClamavConfig, ConfigError> {
        let file: ClamavFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        file.check(Path::new("/var/lib/rampart-agent"))
    }

    #[test]
    fn defaults() {
        let c = check("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.config_path, Path::new("/etc/clamav/clamd.conf"));
        assert_eq!(c.socket, Path::new("/run/clamav/clamd.ctl"));
        assert!(c.on_access_include_paths.is_empty());
        assert_eq!(
            c.clamonacc_command,
            [
                "clamonacc",
                "--foreground",
                "--fdpass",
                "--config-file=/etc/clamav/clamd.conf"
            ]
        );
        assert_eq!(
            c.restart_command,
            ["systemctl", "restart", "clamav-daemon.service"]
        );
        assert_eq!(
            c.clamonacc_log,
            Path::new("/var/lib/rampart-agent/clamonacc.log")
        );
        assert_eq!(c.restart_timeout, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(check("config_path = \"clamd.conf\"").is_err());
        assert!(check("on_access_include_paths = [\"home\"]").is_err());
        assert!(check("clamonacc_command = []").is_err());
        assert!(check("restart_timeout_secs = 0").is_err());
        assert!(check("socket_path = \"/x\"").is_err());
        let c = check("restart_command = []\nenabled = true").unwrap();
        assert!(c.restart_command.is_empty());
        assert!(c.enabled);
    }
}
