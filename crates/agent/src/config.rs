//! The agent's configuration: a TOML file (`--config FILE`, or
//! `<state-dir>/agent.toml` when it exists), parsed into a raw file struct
//! that refuses unknown fields, then checked once into [`AgentConfig`], which
//! `main` passes down. Nothing else reads configuration.
//!
//! ```toml
//! check_in_interval_secs = 5400   # 90 minutes; at least 10
//! jitter_fraction = 0.1           # ± up to 10 % of the interval; 0 to 0.5
//! wait_timeout_secs = 60          # long-poll length; 1 to 300
//! drift_check_interval_secs = 300 # read-back of everything Rampart set; at least 10
//! tags = ["finance"]              # reported as the device's tags
//!
//! [survey]
//! builtin = true                  # the known management agents (survey.rs)
//! markers = [{ path = "/etc/acme-mdm", authority = "acme-mdm" }]
//!
//! [providers.file]
//! enabled = true
//! path = "/var/lib/rampart-agent/enforced/settings.json"
//!
//! [providers.nftables]
//! enabled = false                 # off unless asked: it changes the host firewall
//! command = ["nft"]               # e.g. ["ip", "netns", "exec", "NS", "nft"]
//! table = "rampart"               # the inet table Rampart owns
//! confirm_window_secs = 60        # lockout protection; 1 to 3600
//!
//! [providers.clamav]              # providers/clamav/config.rs
//! enabled = false
//! config_path = "/etc/clamav/clamd.conf"
//! on_access_include_paths = ["/home"]
//!
//! [providers.mdatp]               # providers/mdatp/config.rs
//! enabled = false
//! path = "/etc/opt/microsoft/mdatp/managed/mdatp_managed.json"
//!
//! [providers.registry]            # providers/windows/config.rs (Windows only)
//! enabled = true                  # the default on Windows
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The shortest check-in interval accepted: the device channel's rule
/// ("never more often than every 10 s").
pub const MIN_CHECK_IN_INTERVAL_SECS: u64 = 10;
/// The server answers a long poll after at most this long.
pub const MAX_WAIT_TIMEOUT_SECS: u64 = 300;
/// The shortest drift read-back interval accepted.
pub const MIN_DRIFT_CHECK_INTERVAL_SECS: u64 = 10;

/// A configuration the agent refuses, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// The configuration file as written; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    check_in_interval_secs: Option<u64>,
    jitter_fraction: Option<f64>,
    wait_timeout_secs: Option<u64>,
    drift_check_interval_secs: Option<u64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    survey: SurveyFile,
    #[serde(default)]
    providers: ProvidersFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SurveyFile {
    builtin: Option<bool>,
    #[serde(default)]
    markers: Vec<Marker>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    #[serde(default)]
    file: FileProviderFile,
    #[serde(default)]
    nftables: NftablesFile,
    #[serde(default)]
    clamav: crate::providers::clamav::config::ClamavFile,
    #[serde(default)]
    mdatp: crate::providers::mdatp::config::MdatpFile,
    #[serde(default)]
    registry: crate::providers::windows::config::RegistryFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NftablesFile {
    enabled: Option<bool>,
    command: Option<Vec<String>>,
    table: Option<String>,
    confirm_window_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProviderFile {
    enabled: Option<bool>,
    path: Option<PathBuf>,
}

/// A path whose presence means another authority manages the device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub path: PathBuf,
    /// The name reported as `managed_by`, e.g. `intune`.
    pub authority: String,
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub check_in_interval: Duration,
    /// Each interval is stretched or shortened by up to this fraction.
    pub jitter_fraction: f64,
    pub wait_timeout_secs: u64,
    /// How often everything Rampart set is read back (drift).
    pub drift_check_interval: Duration,
    pub tags: Vec<String>,
    pub survey: SurveyConfig,
    pub providers: ProvidersConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SurveyConfig {
    /// Whether the built-in table of known management agents is consulted.
    pub builtin: bool,
    pub markers: Vec<Marker>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProvidersConfig {
    pub file: FileProviderConfig,
    pub nftables: NftablesConfig,
    pub clamav: crate::providers::clamav::config::ClamavConfig,
    pub mdatp: crate::providers::mdatp::config::MdatpConfig,
    pub registry: crate::providers::windows::config::RegistryConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileProviderConfig {
    pub enabled: bool,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NftablesConfig {
    pub enabled: bool,
    /// The program and its leading arguments; `nft`'s own arguments follow.
    pub command: Vec<String>,
    /// The name of the `inet` table Rampart owns.
    pub table: String,
    /// How long after a firewall change the agent has to reach its server
    /// before the change is rolled back.
    pub confirm_window: Duration,
    /// Where the ruleset to restore is kept while a change is unconfirmed
    /// (not configurable: part of the state directory).
    pub rollback_file: PathBuf,
}

impl NftablesConfig {
    fn check(file: NftablesFile, state_dir: &Path) -> Result<NftablesConfig, ConfigError> {
        let invalid = |field, message: String| ConfigError::Invalid { field, message };
        let command = file.command.unwrap_or_else(|| vec!["nft".to_string()]);
        if command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(invalid(
                "providers.nftables.command",
                "names no program".into(),
            ));
        }
        let table = file.table.unwrap_or_else(|| "rampart".to_string());
        let valid_name = table.len() <= 64
            && table.starts_with(|c: char| c.is_ascii_alphabetic())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(invalid(
                "providers.nftables.table",
                format!("{table:?} is not a table name (a letter, then letters, digits or _)"),
            ));
        }
        let window = file.confirm_window_secs.unwrap_or(60);
        if !(1..=3600).contains(&window) {
            return Err(invalid(
                "providers.nftables.confirm_window_secs",
                format!("{window} is not between 1 and 3600"),
            ));
        }
        Ok(NftablesConfig {
            enabled: file.enabled.unwrap_or(false),
            command,
            table,
            confirm_window: Duration::from_secs(window),
            rollback_file: state_dir.join("nftables").join("rollback.nft"),
        })
    }
}

impl AgentConfig {
    /// Reads and checks `path`, or `<state_dir>/agent.toml` when no path is
    /// given and that file exists, or the defaults.
    pub fn load(path: Option<&Path>, state_dir: &Path) -> Result<AgentConfig, ConfigError> {
        let default_path = state_dir.join("agent.toml");
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if default_path.exists() => default_path,
            None => return AgentConfig::parse("", state_dir),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        AgentConfig::parse(&text, state_dir).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path, message },
            other => other,
        })
    }

    /// Parses and checks TOML text; relative defaults hang off `state_dir`.
    pub fn parse(text: &str, state_dir: &Path) -> Result<AgentConfig, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        AgentConfig::check(file, state_dir)
    }

    fn check(file: ConfigFile, state_dir: &Path) -> Result<AgentConfig, ConfigError> {
        let interval = file.check_in_interval_secs.unwrap_or(5400);
        if interval < MIN_CHECK_IN_INTERVAL_SECS {
            return Err(ConfigError::Invalid {
                field: "check_in_interval_secs",
                message: format!(
                    "{interval} is below the minimum of {MIN_CHECK_IN_INTERVAL_SECS} seconds: devices must not check in more often than that"
                ),
            });
        }
        let jitter = file.jitter_fraction.unwrap_or(0.1);
        if !(0.0..=0.5).contains(&jitter) {
            return Err(ConfigError::Invalid {
                field: "jitter_fraction",
                message: format!("{jitter} is not between 0 and 0.5"),
            });
        }
        let wait = file.wait_timeout_secs.unwrap_or(60);
        if !(1..=MAX_WAIT_TIMEOUT_SECS).contains(&wait) {
            return Err(ConfigError::Invalid {
                field: "wait_timeout_secs",
                message: format!("{wait} is not between 1 and {MAX_WAIT_TIMEOUT_SECS}"),
            });
        }
        let drift = file.drift_check_interval_secs.unwrap_or(300);
        if drift < MIN_DRIFT_CHECK_INTERVAL_SECS {
            return Err(ConfigError::Invalid {
                field: "drift_check_interval_secs",
                message: format!(
                    "{drift} is below the minimum of {MIN_DRIFT_CHECK_INTERVAL_SECS} seconds"
                ),
            });
        }
        let nftables = NftablesConfig::check(file.providers.nftables, state_dir)?;
        let clamav = file.providers.clamav.check(state_dir)?;
        let mdatp = file.providers.mdatp.check()?;
        let registry = file.providers.registry.check(state_dir)?;
        for tag in &file.tags {
            if tag.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    field: "tags",
                    message: "a tag is empty".into(),
                });
            }
        }
        for marker in &file.survey.markers {
            if !marker.path.has_root() {
                return Err(ConfigError::Invalid {
                    field: "survey.markers",
                    message: format!("{} is not an absolute path", marker.path.display()),
                });
            }
            if marker.authority.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    field: "survey.markers",
                    message: format!("the marker {} names no authority", marker.path.display()),
                });
            }
        }
        let file_path = file
            .providers
            .file
            .path
            .unwrap_or_else(|| state_dir.join("enforced").join("settings.json"));
        Ok(AgentConfig {
            check_in_interval: Duration::from_secs(interval),
            jitter_fraction: jitter,
            wait_timeout_secs: wait,
            drift_check_interval: Duration::from_secs(drift),
            tags: file.tags,
            survey: SurveyConfig {
                builtin: file.survey.builtin.unwrap_or(true),
                markers: file.survey.markers,
            },
            providers: ProvidersConfig {
                file: FileProviderConfig {
                    // The file provider stands in for real components; once
                    // one is enabled it is off unless asked for, or every
                    // setting would also "succeed" through a mere file.
                    enabled: file.providers.file.enabled.unwrap_or(
                        !(nftables.enabled || clamav.enabled || mdatp.enabled || registry.enabled),
                    ),
                    path: file_path,
                },
                nftables,
                clamav,
                mdatp,
                registry,
            },
        })
    }

    /// The next check-in delay: the interval, jittered by up to
    /// `jitter_fraction` either way; `unit` is a random number in `[0, 1)`.
    pub fn next_check_in(&self, unit: f64) -> Duration {
        let base = self.check_in_interval.as_secs_f64();
        let offset = base * self.jitter_fraction * (2.0 * unit - 1.0);
        let secs = (base + offset).max(MIN_CHECK_IN_INTERVAL_SECS as f64);
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("/var/lib/rampart-agent"))
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.check_in_interval, Duration::from_secs(5400));
        assert_eq!(c.jitter_fraction, 0.1);
        assert_eq!(c.wait_timeout_secs, 60);
        assert!(c.survey.builtin);
        assert!(c.providers.file.enabled);
        assert_eq!(
            c.providers.file.path,
            Path::new("/var/lib/rampart-agent/enforced/settings.json")
        );
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            check_in_interval_secs = 30
            jitter_fraction = 0.5
            wait_timeout_secs = 5
            tags = ["finance", "MDE-Management"]
            [survey]
            builtin = false
            markers = [{ path = "/etc/acme", authority = "acme" }]
            [providers.file]
            enabled = false
            path = "/tmp/x.json"
            "#,
        )
        .unwrap();
        assert_eq!(c.check_in_interval, Duration::from_secs(30));
        assert_eq!(c.tags, ["finance", "MDE-Management"]);
        assert!(!c.survey.builtin);
        assert_eq!(c.survey.markers[0].authority, "acme");
        assert!(!c.providers.file.enabled);
        assert_eq!(c.providers.file.path, Path::new("/tmp/x.json"));
    }

    #[test]
    fn the_file_provider_is_off_by_default_once_a_real_provider_is_on() {
        let c = parse("[providers.mdatp]\nenabled = true\n").unwrap();
        assert!(!c.providers.file.enabled);
        let c =
            parse("[providers.mdatp]\nenabled = true\n[providers.file]\nenabled = true\n").unwrap();
        assert!(c.providers.file.enabled, "an explicit choice wins");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse("check_in_interval = 60").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("[providers.file]\nenable = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("[survey]\nmarkers = [{ path = \"/x\", authority = \"a\", extra = 1 }]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn interval_below_the_minimum_is_refused() {
        let e = parse("check_in_interval_secs = 9").unwrap_err().to_string();
        assert!(e.contains("check_in_interval_secs"), "{e}");
        assert!(e.contains("minimum of 10"), "{e}");
        assert!(parse("check_in_interval_secs = 10").is_ok());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(parse("jitter_fraction = 0.6").is_err());
        assert!(parse("jitter_fraction = -0.1").is_err());
        assert!(parse("wait_timeout_secs = 0").is_err());
        assert!(parse("wait_timeout_secs = 301").is_err());
        assert!(parse("[survey]\nmarkers = [{ path = \"rel\", authority = \"a\" }]").is_err());
        assert!(parse("[survey]\nmarkers = [{ path = \"/x\", authority = \" \" }]").is_err());
        assert!(parse("tags = [\"\"]").is_err());
    }

    #[test]
    fn jitter_stays_within_the_fraction() {
        let c = parse("").unwrap();
        assert_eq!(c.next_check_in(0.0), Duration::from_secs(4860));
        assert_eq!(c.next_check_in(0.5), Duration::from_secs(5400));
        assert!(c.next_check_in(0.999_999) <= Duration::from_secs(5940));
        let short = parse("check_in_interval_secs = 10\njitter_fraction = 0.5").unwrap();
        assert_eq!(short.next_check_in(0.0), Duration::from_secs(10));
    }

    #[test]
    fn missing_default_file_means_defaults() {
        let dir = crate::testutil::TempDir::new();
        let c = AgentConfig::load(None, dir.path()).unwrap();
        assert_eq!(c.check_in_interval, Duration::from_secs(5400));
        std::fs::write(dir.path().join("agent.toml"), "tags = [\"lab\"]").unwrap();
        assert_eq!(AgentConfig::load(None, dir.path()).unwrap().tags, ["lab"]);
        let e = AgentConfig::load(Some(&dir.path().join("nope.toml")), dir.path()).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }
}
