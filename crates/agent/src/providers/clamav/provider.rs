//! The ClamAV provider proper: observe, a pure plan, apply (write, restart
//! clamd, run clamonacc), and the component's own words when a read-back
//! differs. The design is described in `mod.rs`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_core::catalog::RemovalBehaviour;
use serde_json::Value;

use super::clamd::{self, Clamd};
use super::conf::{self, ConfFile, RenderContext, CLAMD_SETTINGS};
use super::config::ClamavConfig;
use super::procs;
use crate::providers::command::{self, show, tail};
use crate::providers::replace::replace_file;
use crate::providers::{Change, Plan, Provider, ProviderError, Values};

const RTP: &str = "real_time_protection";

/// The catalog settings this provider carries, or reports not applicable
/// with the reason (`excluded_processes`).
pub const SETTINGS: [&str; 8] = [
    "real_time_protection",
    "scan_archives",
    "pua_protection",
    "max_file_size_mb",
    "max_scan_size_mb",
    "excluded_paths",
    "excluded_extensions",
    "excluded_processes",
];

/// How long clamonacc gets to say it is watching.
const CLAMONACC_READY: Duration = Duration::from_secs(10);
/// How long a stopped clamonacc gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// clamonacc's line once its watches are in place.
const CLAMONACC_WATCHING: &str = "ClamInotif: watching";

/// clamonacc is started as the agent's child but outlives it: real-time
/// protection does not stop while the agent restarts, and the next agent
/// adopts it (any clamonacc whose command line names the managed
/// clamd.conf). It stops when real-time protection is turned off or no
/// longer assigned (offboarding included).
pub struct ClamavProvider {
    config: ClamavConfig,
    /// The clamonacc this provider started.
    clamonacc: Option<Child>,
    /// Per setting, why the last apply could not carry it.
    failures: BTreeMap<String, ProviderError>,
    clamd_loaded: RefCell<Option<Loaded>>,
    clamonacc_loaded: RefCell<Option<Loaded>>,
}

/// What observe finds on the device.
struct Observation {
    conf: ConfFile,
    clamd: Clamd,
    /// The settings the running clamd loaded, when this agent knows (it saw
    /// that clamd start after a version of the file).
    clamd_loaded: Option<Values>,
    /// Running clamonacc processes of this configuration.
    clamonacc: Vec<u32>,
    /// Whether one of them runs the file's current on-access lines.
    clamonacc_current: bool,
}

/// The managed block a process loaded: seen when the process was found to
/// have started after the file's last change. It tells a hand edit of one
/// line (that setting is not in force) from a change of everything.
#[derive(Debug, Clone)]
struct Loaded {
    pid: u32,
    block: Vec<String>,
}

/// The block's on-access lines: what clamonacc reads.
fn on_access(block: &[String]) -> Vec<&String> {
    block
        .iter()
        .filter(|l| {
            conf::directive(l).is_some_and(|(k, _)| k.to_ascii_lowercase().starts_with("onaccess"))
        })
        .collect()
}

impl ClamavProvider {
    pub fn new(config: ClamavConfig) -> ClamavProvider {
        ClamavProvider {
            config,
            clamonacc: None,
            failures: BTreeMap::new(),
            clamd_loaded: RefCell::new(None),
            clamonacc_loaded: RefCell::new(None),
        }
    }

    fn path(&self) -> String {
        self.config.config_path.display().to_string()
    }

    fn read_config(&self) -> Result<(String, Duration), ProviderError> {
        let cannot = |e: std::io::Error| {
            ProviderError::misconfigured(format!(
                "cannot read {}: {e} (is ClamAV installed, and config_path in [providers.clamav] right?)",
                self.path()
            ))
        };
        let text = std::fs::read_to_string(&self.config.config_path).map_err(cannot)?;
        let age = std::fs::metadata(&self.config.config_path)
            .and_then(|m| m.modified())
            .map_err(cannot)?
            .elapsed()
            .unwrap_or(Duration::ZERO);
        Ok((text, age))
    }

    fn parse(&self, text: &str) -> Result<ConfFile, ProviderError> {
        ConfFile::parse(text)
            .map_err(|e| ProviderError::misconfigured(format!("{}: {e}", self.path())))
    }

    fn observation(&self) -> Result<Observation, ProviderError> {
        let (text, config_age) = self.read_config()?;
        let conf = self.parse(&text)?;
        let block = conf.block().to_vec();
        let clamd = clamd::probe(&self.config.socket, config_age);
        let clamd_loaded = match &clamd {
            Clamd::Running {
                pid: Some(pid),
                current,
            } => {
                let mut seen = self.clamd_loaded.borrow_mut();
                if *current {
                    *seen = Some(Loaded {
                        pid: *pid,
                        block: block.clone(),
                    });
                }
                seen.as_ref()
                    .filter(|l| l.pid == *pid)
                    .map(|l| conf::parse(&l.block))
            }
            _ => None,
        };
        let clamonacc = self.clamonacc_pids();
        let mut clamonacc_current = false;
        let mut seen = self.clamonacc_loaded.borrow_mut();
        for pid in &clamonacc {
            let fresh =
                procs::running_for(*pid).is_some_and(|ran| clamd::started_after(ran, config_age));
            if fresh {
                *seen = Some(Loaded {
                    pid: *pid,
                    block: block.clone(),
                });
            }
            clamonacc_current |= seen
                .as_ref()
                .is_some_and(|l| l.pid == *pid && on_access(&l.block) == on_access(&block));
        }
        Ok(Observation {
            conf,
            clamd,
            clamd_loaded,
            clamonacc,
            clamonacc_current,
        })
    }

    /// Running clamonacc processes of this configuration: the child, and
    /// any other clamonacc whose command line names the managed file (one
    /// left behind by an agent that crashed).
    fn clamonacc_pids(&self) -> Vec<u32> {
        let child = self.clamonacc.as_ref().map(Child::id);
        let config = self.config.config_path.to_string_lossy();
        procs::pids()
            .into_iter()
            .filter(|pid| {
                procs::comm(*pid).as_deref() == Some("clamonacc")
                    && procs::alive(*pid)
                    && (Some(*pid) == child
                        || procs::cmdline(*pid)
                            .iter()
                            .any(|a| a.contains(config.as_ref())))
            })
            .collect()
    }

    /// Checks `text` with ClamAV's own parser (`clamconf`), when installed.
    fn validate(&self, text: &str) -> Result<(), ProviderError> {
        let dir = std::env::temp_dir().join(format!(
            "rampart-clamconf-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("clamd.conf"), text));
        let output = written.and_then(|()| {
            Command::new("clamconf")
                .arg("-c")
                .arg(&dir)
                .stdin(Stdio::null())
                .output()
        });
        let _ = std::fs::remove_dir_all(&dir);
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(event = "clamconf_unavailable", error = %e, "clamd.conf not checked with clamconf");
                return Ok(());
            }
        };
        // clamconf exits 0 even when it refuses a line; its errors start
        // with "ERROR:".
        let errors: Vec<String> = String::from_utf8_lossy(&output.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&output.stdout).lines())
            .filter(|l| l.trim_start().starts_with("ERROR"))
            .map(|l| l.replace(&dir.join("clamd.conf").display().to_string(), &self.path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::misconfigured(format!(
                "clamconf refuses the new clamd.conf, which was not written: {}",
                errors.join("; ")
            )))
        }
    }

    /// Runs `restart_command` and waits until clamd answers with the
    /// current configuration.
    fn restart_clamd(&self) -> Result<(), String> {
        let command = &self.config.restart_command;
        tracing::info!(event = "clamd_restart", command = %show(command), "restarting clamd so that it loads clamd.conf");
        command::run(command, self.config.restart_timeout).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + self.config.restart_timeout;
        loop {
            let age = std::fs::metadata(&self.config.config_path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or(Duration::ZERO);
            let state = clamd::probe(&self.config.socket, age);
            if state.is_current() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "after `{}`, within {} s: {}",
                    show(command),
                    self.config.restart_timeout.as_secs(),
                    state.describe(&self.config.config_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts clamonacc as a child and waits until it watches (or exits).
    fn start_clamonacc(&mut self) -> Result<(), ProviderError> {
        let command = &self.config.clamonacc_command;
        let log_path = &self.config.clamonacc_log;
        let log_error = |e: std::io::Error| {
            ProviderError::misconfigured(format!(
                "cannot open clamonacc's log {}: {e}",
                log_path.display()
            ))
        };
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(log_error)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(log_error)?;
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let (program, args) = command
            .split_first()
            .ok_or_else(|| ProviderError::misconfigured("clamonacc_command is empty"))?;
        // Its own process group: a signal meant for the agent (Ctrl-C in a
        // terminal) does not stop real-time protection.
        let mut child = Command::new(program)
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(log_error)?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                ProviderError::misconfigured(format!(
                    "cannot run clamonacc (`{}`): {e}",
                    show(command)
                ))
            })?;
        tracing::info!(
            event = "clamonacc_started",
            pid = child.id(),
            "started clamonacc for real-time protection"
        );
        let deadline = Instant::now() + CLAMONACC_READY;
        loop {
            let output = read_from(log_path, offset);
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ProviderError::misconfigured(format!(
                    "clamonacc exited ({status}): {}",
                    tail(&output)
                )));
            }
            if output.contains(CLAMONACC_WATCHING) {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    event = "clamonacc_slow",
                    pid = child.id(),
                    "clamonacc runs but has not said it is watching yet"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.clamonacc = Some(child);
        Ok(())
    }

    /// Stops every clamonacc of this configuration: TERM, then KILL.
    fn stop_clamonacc(&mut self) {
        let pids = self.clamonacc_pids();
        for pid in &pids {
            procs::signal(*pid, "TERM");
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut child = self.clamonacc.take();
        loop {
            if let Some(c) = child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    child = None;
                }
            }
            let left: Vec<u32> = pids.iter().copied().filter(|p| procs::alive(*p)).collect();
            if left.is_empty() && child.is_none() {
                break;
            }
            if Instant::now() >= deadline {
                for pid in left {
                    procs::signal(pid, "KILL");
                }
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !pids.is_empty() {
            tracing::info!(event = "clamonacc_stopped", pids = ?pids, "stopped clamonacc");
        }
    }
}

/// What a file holds from `offset` on.
fn read_from(path: &std::path::Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_string(&mut text);
        }
    }
    text
}

/// Why ClamAV cannot carry `value` of `setting`, if it cannot.
pub fn unsupported(setting: &str, value: &Value) -> Option<ProviderError> {
    match setting {
        "excluded_processes" if value.as_array().is_some_and(|a| !a.is_empty()) => {
            Some(ProviderError::unsupported(
                "ClamAV has no process exclusion (clamonacc excludes users, not processes)",
            ))
        }
        "pua_protection" if value == "audit" => Some(ProviderError::unsupported(
            "ClamAV cannot detect PUA without acting on it: audit has no ClamAV equivalent (off and block do)",
        )),
        _ => None,
    }
}

/// What runs, for the read-back.
#[derive(Debug, Clone, Default)]
struct Running<'a> {
    /// clamd started after the file last changed.
    clamd_current: bool,
    /// What the running clamd loaded, when known.
    clamd_loaded: Option<&'a Values>,
    clamonacc_running: bool,
    /// A clamonacc runs the file's current on-access lines.
    clamonacc_current: bool,
}

/// Pure: the settings as read back from the file (`conf`), given what runs:
/// a clamd value the running clamd has not loaded is `null` (not in force).
fn read_back(conf: &ConfFile, running: &Running<'_>) -> Values {
    let mut effective = conf::parse(conf.block());
    // A single-valued directive above the block wins over the block.
    let above: Vec<String> = conf
        .shadowed()
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    effective.extend(conf::parse(&above));
    let mut out = Values::new();
    for (setting, value) in effective {
        if CLAMD_SETTINGS.contains(&setting.as_str()) {
            let in_force = running.clamd_current
                || running.clamd_loaded.and_then(|l| l.get(&setting)) == Some(&value);
            out.insert(setting, if in_force { value } else { Value::Null });
        } else if setting == RTP {
            let seen = match value {
                Value::Bool(true) => Value::Bool(running.clamonacc_current),
                Value::Bool(false) => Value::Bool(running.clamonacc_running),
                raw => raw,
            };
            out.insert(setting, seen);
        }
    }
    if running.clamonacc_running {
        out.entry(RTP.to_string()).or_insert(Value::Bool(true));
    }
    out
}

/// Pure: the changes that take `observed` to `desired`. Values ClamAV
/// cannot carry are not set (and what Rampart wrote for them before is
/// taken back); lists compare as sets.
pub fn plan(
    desired: &Values,
    observed: &Values,
    removals: &BTreeMap<String, RemovalBehaviour>,
) -> Plan {
    let mut changes = Vec::new();
    for (setting, value) in desired {
        if unsupported(setting, value).is_some() {
            if observed.contains_key(setting) {
                changes.push(Change::Revert {
                    setting: setting.clone(),
                });
            }
            continue;
        }
        if !conf::same(value, observed.get(setting)) {
            changes.push(Change::Set {
                setting: setting.clone(),
                value: value.clone(),
            });
        }
    }
    let removals: BTreeMap<String, RemovalBehaviour> = removals
        .iter()
        .filter(|(k, _)| !desired.contains_key(*k))
        .map(|(k, r)| (k.clone(), *r))
        .collect();
    changes.extend(crate::providers::plan(&Values::new(), observed, &removals).changes);
    Plan { changes }
}

impl Provider for ClamavProvider {
    fn name(&self) -> &'static str {
        "clamav"
    }

    fn handles(&self, setting: &str) -> bool {
        SETTINGS.contains(&setting)
    }

    fn observe(&self) -> Result<Values, ProviderError> {
        let obs = self.observation()?;
        Ok(read_back(
            &obs.conf,
            &Running {
                clamd_current: obs.clamd.is_current(),
                clamd_loaded: obs.clamd_loaded.as_ref(),
                clamonacc_running: !obs.clamonacc.is_empty(),
                clamonacc_current: obs.clamonacc_current,
            },
        ))
    }

    fn plan(
        &self,
        desired: &Values,
        observed: &Values,
        removals: &BTreeMap<String, RemovalBehaviour>,
    ) -> Plan {
        plan(desired, observed, removals)
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ProviderError> {
        self.failures.clear();
        let (text, _) = self.read_config()?;
        let file = self.parse(&text)?;
        let mut values = conf::parse(file.block());
        for change in &plan.changes {
            match change {
                Change::Set { setting, value } => {
                    values.insert(setting.clone(), value.clone());
                }
                Change::Revert { setting } => {
                    values.remove(setting);
                }
                Change::Keep { .. } => {}
            }
        }
        for setting in ["excluded_paths", "excluded_extensions"] {
            let bad = values
                .get(setting)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| !v.as_str().is_some_and(conf::is_safe)));
            if bad {
                self.failures.insert(
                    setting.to_string(),
                    ProviderError::misconfigured(
                        "an entry contains a line break, which clamd.conf cannot hold; it was left out",
                    ),
                );
            }
        }
        let wants_rtp = values.get(RTP) == Some(&Value::Bool(true));
        if wants_rtp && self.config.on_access_include_paths.is_empty() {
            self.failures.insert(
                RTP.to_string(),
                ProviderError::misconfigured(
                    "real-time protection needs the folders to watch: set on_access_include_paths in [providers.clamav]",
                ),
            );
        }
        let run_clamonacc = wants_rtp && !self.config.on_access_include_paths.is_empty();
        let is_dir = |p: &str| std::path::Path::new(p).is_dir();
        let ctx = RenderContext {
            include_paths: &self.config.on_access_include_paths,
            // clamonacc refuses to start without an exclusion of clamd's
            // own user (to avoid scanning loops): clamd's `User`, else
            // ClamAV's conventional `clamav`.
            clamd_user: Some(
                file.outside_value("User")
                    .unwrap_or_else(|| "clamav".to_string()),
            ),
            is_dir: &is_dir,
        };
        let new_text = file.with_block(&conf::render(&values, &ctx));
        let changed = new_text != text;
        if changed {
            self.validate(&new_text)?;
            replace_file(&self.config.config_path, new_text.as_bytes(), 0o644).map_err(|e| {
                ProviderError::misconfigured(format!("cannot write {}: {e}", self.path()))
            })?;
            tracing::info!(event = "clamd_conf_written", path = %self.path(), "wrote the managed block of clamd.conf");
        }

        // clamd reads clamd.conf only when it starts.
        let needs_clamd = run_clamonacc || CLAMD_SETTINGS.iter().any(|s| values.contains_key(*s));
        let (_, age) = self.read_config()?;
        let state = clamd::probe(&self.config.socket, age);
        let restart = (changed && (state.is_running() || needs_clamd))
            || (needs_clamd && !state.is_current());
        if restart && !self.config.restart_command.is_empty() {
            if let Err(e) = self.restart_clamd() {
                if changed {
                    // Leave the device with the antivirus it had rather
                    // than without one.
                    let restored = replace_file(&self.config.config_path, text.as_bytes(), 0o644)
                        .is_ok()
                        && self.restart_clamd().is_ok();
                    tracing::error!(event = "clamd_restart_failed", error = %e, restored, "clamd did not come back with the new clamd.conf");
                    return Err(ProviderError::misconfigured(format!(
                        "clamd did not come back with the new clamd.conf: {e}; {}",
                        if restored {
                            "the previous clamd.conf was restored and clamd restarted with it"
                        } else {
                            "restoring the previous clamd.conf did not bring clamd back either"
                        }
                    )));
                }
                return Err(ProviderError::transient(format!("clamd: {e}")));
            }
        }

        // clamonacc reads clamd.conf only when it starts, too.
        if run_clamonacc {
            let current = self.observation()?.clamonacc_current;
            if changed || restart || !current {
                self.stop_clamonacc();
                if let Err(e) = self.start_clamonacc() {
                    self.failures.insert(RTP.to_string(), e);
                }
            }
        } else {
            self.stop_clamonacc();
        }
        Ok(())
    }

    fn matches(&self, desired: &Value, observed: Option<&Value>) -> bool {
        conf::same(desired, observed)
    }

    fn not_carried(&self, desired: &Values) -> BTreeMap<String, String> {
        desired
            .iter()
            .filter_map(|(s, v)| Some((s.clone(), unsupported(s, v)?.message)))
            .collect()
    }

    fn explain(&self, setting: &str, desired: &Value) -> Option<ProviderError> {
        if let Some(e) = self.failures.get(setting) {
            return Some(e.clone());
        }
        let obs = self.observation().ok()?;
        for (k, v) in obs.conf.shadowed() {
            let line = format!("{k} {v}");
            if conf::parse(std::slice::from_ref(&line)).contains_key(setting) {
                return Some(ProviderError::misconfigured(format!(
                    "`{line}` above Rampart's managed block in {} wins over it (ClamAV uses the first occurrence of a directive)",
                    self.path()
                )));
            }
        }
        if CLAMD_SETTINGS.contains(&setting) && !obs.clamd.is_current() {
            let why = obs.clamd.describe(&self.config.config_path);
            return Some(if self.config.restart_command.is_empty() {
                ProviderError::misconfigured(format!(
                    "{why}; restart_command is empty in [providers.clamav], so restart clamd to apply it"
                ))
            } else {
                ProviderError::transient(why)
            });
        }
        if setting == RTP && desired == &Value::Bool(false) && !obs.clamonacc.is_empty() {
            return Some(ProviderError::transient(format!(
                "clamonacc still runs (pid {:?}) and could not be stopped",
                obs.clamonacc
            )));
        }
        if setting == RTP {
            let log = self.config.clamonacc_log.display();
            if obs.clamonacc.is_empty() {
                return Some(ProviderError::transient(format!(
                    "clamonacc is not running (its output is in {log})"
                )));
            }
            if !obs.clamonacc_current {
                return Some(ProviderError::transient(format!(
                    "clamonacc has been running since before {} last changed, so it has not loaded it",
                    self.path()
                )));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::clamav::conf::{BEGIN, END};
    use rampart_core::catalog::{Backend, Catalog};
    use rampart_core::model::Platform;
    use serde_json::json;

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn carries_the_catalogs_clamav_settings() {
        let from_catalog: Vec<&str> = Catalog::builtin()
            .iter()
            .filter(|d| {
                d.backends_for(Platform::Linux)
                    .any(|b| b.backend == Backend::Clamav)
            })
            .map(|d| d.id.as_str())
            .collect();
        for id in &from_catalog {
            assert!(SETTINGS.contains(id), "{id} has a clamav backend");
        }
        // And excluded_processes, to say why ClamAV cannot carry it.
        assert_eq!(SETTINGS.len(), from_catalog.len() + 1);
    }

    #[test]
    fn plan_leaves_out_what_clamav_cannot_carry() {
        let desired = values(&[
            ("pua_protection", json!("audit")),
            ("excluded_processes", json!(["/usr/bin/app"])),
            ("excluded_paths", json!(["/srv/"])),
            ("scan_archives", json!(true)),
        ]);
        let observed = values(&[
            ("pua_protection", json!("block")),
            ("excluded_paths", json!(["/srv/"])),
            ("scan_archives", Value::Null),
        ]);
        let removals = BTreeMap::from([
            ("max_file_size_mb".to_string(), RemovalBehaviour::Revert),
            ("scan_archives".to_string(), RemovalBehaviour::Revert),
        ]);
        let observed_with_max = {
            let mut o = observed.clone();
            o.insert("max_file_size_mb".into(), json!(200));
            o
        };
        assert_eq!(
            plan(&desired, &observed_with_max, &removals).changes,
            [
                // audit: what Rampart wrote for block is taken back.
                Change::Revert {
                    setting: "pua_protection".into()
                },
                // clamd has not loaded the value: set it again.
                Change::Set {
                    setting: "scan_archives".into(),
                    value: json!(true)
                },
                Change::Revert {
                    setting: "max_file_size_mb".into()
                },
            ]
        );
        // Nothing more to do once the read-back agrees.
        let settled = values(&[
            ("excluded_paths", json!(["/srv/"])),
            ("scan_archives", json!(true)),
        ]);
        assert!(plan(&desired, &settled, &BTreeMap::new()).is_noop());
        // An empty list needs no block line.
        assert!(plan(
            &values(&[("excluded_extensions", json!([]))]),
            &Values::new(),
            &BTreeMap::new()
        )
        .is_noop());
    }

    fn conf(text: &str) -> ConfFile {
        ConfFile::parse(text).unwrap()
    }

    fn runs(clamd_current: bool, clamonacc: Option<bool>) -> Running<'static> {
        Running {
            clamd_current,
            clamd_loaded: None,
            clamonacc_running: clamonacc.is_some(),
            clamonacc_current: clamonacc == Some(true),
        }
    }

    #[test]
    fn read_back_depends_on_what_runs() {
        let c = conf(&format!(
            "{BEGIN}\nScanArchive no\nExcludePath ^/srv/\nOnAccessPrevention yes\nOnAccessIncludePath /home\n{END}\nLocalSocket /run/clamd.ctl\n"
        ));
        // clamd runs the file; clamonacc runs and started after the change.
        let v = read_back(&c, &runs(true, Some(true)));
        assert_eq!(v["scan_archives"], json!(false));
        assert_eq!(v["excluded_paths"], json!(["/srv/"]));
        assert_eq!(v[RTP], json!(true));
        // clamd has not loaded it, and clamonacc is older than the change.
        let v = read_back(&c, &runs(false, Some(false)));
        assert_eq!(v["scan_archives"], Value::Null);
        assert_eq!(v["excluded_paths"], Value::Null);
        assert_eq!(v[RTP], json!(false));
        // No clamonacc at all.
        assert_eq!(read_back(&c, &runs(true, None))[RTP], json!(false));
    }

    #[test]
    fn a_hand_edit_puts_only_the_edited_setting_out_of_force() {
        // clamd loaded ScanArchive no and the exclusion; then someone
        // changed ScanArchive in the file without restarting clamd.
        let loaded = values(&[
            ("scan_archives", json!(false)),
            ("excluded_paths", json!(["/srv/"])),
        ]);
        let c = conf(&format!(
            "{BEGIN}\nScanArchive yes\nExcludePath ^/srv/\n{END}\n"
        ));
        let v = read_back(
            &c,
            &Running {
                clamd_loaded: Some(&loaded),
                ..Running::default()
            },
        );
        assert_eq!(v["scan_archives"], Value::Null);
        assert_eq!(v["excluded_paths"], json!(["/srv/"]));
    }

    #[test]
    fn read_back_reports_a_clamonacc_nobody_asked_for() {
        let off = conf(&format!("{BEGIN}\nOnAccessPrevention no\n{END}\n"));
        assert_eq!(read_back(&off, &runs(true, None))[RTP], json!(false));
        assert_eq!(read_back(&off, &runs(true, Some(true)))[RTP], json!(true));
        let none = conf("LocalSocket /x\n");
        assert!(read_back(&none, &runs(true, None)).is_empty());
        assert_eq!(read_back(&none, &runs(true, Some(false)))[RTP], json!(true));
    }

    #[test]
    fn a_directive_above_the_block_wins_in_the_read_back() {
        let c = conf(&format!(
            "ScanArchive yes\n{BEGIN}\nScanArchive no\n{END}\n"
        ));
        assert_eq!(
            read_back(&c, &runs(true, None))["scan_archives"],
            json!(true)
        );
    }

    #[test]
    fn on_access_lines_are_what_clamonacc_reads() {
        let block: Vec<String> = [
            "ScanArchive no",
            "OnAccessPrevention yes",
            "onaccessincludepath /home",
            "# x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(on_access(&block), [&block[1], &block[2]]);
    }

    #[test]
    fn unsupported_values_say_why() {
        let e = unsupported("pua_protection", &json!("audit")).unwrap();
        assert_eq!(e.kind, crate::providers::ErrorKind::Unsupported);
        assert!(e.message.contains("audit"));
        assert!(unsupported("pua_protection", &json!("block")).is_none());
        assert!(unsupported("excluded_processes", &json!(["x"])).is_some());
        assert!(unsupported("excluded_processes", &json!([])).is_none());
    }

    /// A stand-in for clamd: answers PONG to every PING on `socket`.
    fn fake_clamd(socket: &std::path::Path) {
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut buf = [0u8; 6];
                if s.read_exact(&mut buf).is_ok() {
                    let _ = std::io::Write::write_all(&mut s, b"PONG\0");
                }
            }
        });
    }

    fn provider(dir: &crate::testutil::TempDir, restart: &[&str]) -> ClamavProvider {
        ClamavProvider::new(ClamavConfig {
            enabled: true,
            config_path: dir.path().join("clamd.conf"),
            socket: dir.path().join("clamd.sock"),
            on_access_include_paths: Vec::new(),
            clamonacc_command: vec!["clamonacc".into()],
            clamonacc_log: dir.path().join("clamonacc.log"),
            restart_command: restart.iter().map(|s| s.to_string()).collect(),
            restart_timeout: Duration::from_secs(5),
        })
    }

    #[test]
    fn observe_plan_apply_observe_against_a_stand_in_clamd() {
        let dir = crate::testutil::TempDir::new();
        let conf_path = dir.path().join("clamd.conf");
        let mine = format!(
            "LocalSocket {}\nMaxFileSize 25M\n",
            dir.path().join("clamd.sock").display()
        );
        std::fs::write(&conf_path, &mine).unwrap();
        fake_clamd(&dir.path().join("clamd.sock"));
        let mut p = provider(&dir, &["true"]);
        assert!(p.observe().unwrap().is_empty());

        let desired = values(&[
            ("max_file_size_mb", json!(50)),
            ("excluded_extensions", json!(["log"])),
            ("excluded_processes", json!(["/usr/bin/x"])),
        ]);
        assert_eq!(p.not_carried(&desired).len(), 1);
        let the_plan = p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new());
        assert_eq!(the_plan.changes.len(), 2, "{the_plan:?}");
        p.apply(&the_plan).unwrap();
        let after = p.observe().unwrap();
        assert_eq!(after["max_file_size_mb"], json!(50));
        assert!(p.matches(&json!([".log"]), after.get("excluded_extensions")));
        assert!(p.plan(&desired, &after, &BTreeMap::new()).is_noop());
        let text = std::fs::read_to_string(&conf_path).unwrap();
        assert!(text.starts_with(BEGIN), "{text}");
        assert!(
            text.ends_with(&mine),
            "the rest of the file is untouched: {text}"
        );

        // No longer assigned: the block goes, the file is as it was.
        let removals = BTreeMap::from([
            ("max_file_size_mb".to_string(), RemovalBehaviour::Revert),
            ("excluded_extensions".to_string(), RemovalBehaviour::Revert),
        ]);
        p.apply(&p.plan(&Values::new(), &p.observe().unwrap(), &removals))
            .unwrap();
        assert!(p.observe().unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&conf_path).unwrap(), mine);
    }

    #[test]
    fn a_failed_restart_restores_the_previous_file_and_says_why() {
        let dir = crate::testutil::TempDir::new();
        let conf_path = dir.path().join("clamd.conf");
        std::fs::write(&conf_path, "LocalSocket /nonexistent/clamd.sock\n").unwrap();
        let mut p = provider(
            &dir,
            &[
                "sh",
                "-c",
                "echo 'Job for clamav-daemon.service failed' >&2; exit 1",
            ],
        );
        let desired = values(&[("scan_archives", json!(false))]);
        let e = p
            .apply(&p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new()))
            .unwrap_err();
        assert_eq!(e.kind, crate::providers::ErrorKind::Misconfigured);
        assert!(
            e.message.contains("Job for clamav-daemon.service failed"),
            "{}",
            e.message
        );
        assert_eq!(
            std::fs::read_to_string(&conf_path).unwrap(),
            "LocalSocket /nonexistent/clamd.sock\n"
        );
    }

    #[test]
    fn without_a_restart_command_the_read_back_says_what_to_do() {
        let dir = crate::testutil::TempDir::new();
        let conf_path = dir.path().join("clamd.conf");
        std::fs::write(&conf_path, "LocalSocket /nonexistent/clamd.sock\n").unwrap();
        let mut p = provider(&dir, &[]);
        let desired = values(&[("scan_archives", json!(false))]);
        p.apply(&p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new()))
            .unwrap();
        // Written, but clamd does not run it.
        assert_eq!(p.observe().unwrap()["scan_archives"], Value::Null);
        let e = p.explain("scan_archives", &json!(false)).unwrap();
        assert!(
            e.message.contains("clamd is not answering"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("restart_command is empty"),
            "{}",
            e.message
        );
    }

    #[test]
    fn real_time_protection_without_folders_to_watch_is_misconfigured() {
        let dir = crate::testutil::TempDir::new();
        std::fs::write(dir.path().join("clamd.conf"), "LocalSocket x\n").unwrap();
        fake_clamd(&dir.path().join("clamd.sock"));
        let mut p = provider(&dir, &["true"]);
        let desired = values(&[("real_time_protection", json!(true))]);
        p.apply(&p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new()))
            .unwrap();
        assert_eq!(p.observe().unwrap().get(RTP), None);
        let e = p.explain(RTP, &json!(true)).unwrap();
        assert!(
            e.message.contains("on_access_include_paths"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_missing_or_broken_clamd_conf_is_misconfigured() {
        let dir = crate::testutil::TempDir::new();
        let p = provider(&dir, &["true"]);
        let e = p.observe().unwrap_err();
        assert!(e.message.contains("cannot read"), "{}", e.message);
        std::fs::write(
            dir.path().join("clamd.conf"),
            format!("{BEGIN}\nScanArchive no\n"),
        )
        .unwrap();
        let e = p.observe().unwrap_err();
        assert!(e.message.contains("has no"), "{}", e.message);
    }

    #[test]
    fn clamconf_refuses_a_broken_file_before_it_is_written() {
        let dir = crate::testutil::TempDir::new();
        let conf_path = dir.path().join("clamd.conf");
        let broken = "LocalSocket /nonexistent/clamd.sock\nScanArchiv yes\n";
        std::fs::write(&conf_path, broken).unwrap();
        let mut p = provider(&dir, &["true"]);
        let desired = values(&[("scan_archives", json!(false))]);
        let result = p.apply(&p.plan(&desired, &p.observe().unwrap(), &BTreeMap::new()));
        let clamconf = Command::new("clamconf").arg("--version").output().is_ok();
        if clamconf {
            let e = result.unwrap_err();
            assert!(e.message.contains("ScanArchiv"), "{}", e.message);
            assert!(
                e.message.contains(&format!("{}:", conf_path.display())),
                "{}",
                e.message
            );
            assert_eq!(std::fs::read_to_string(&conf_path).unwrap(), broken);
        }
    }
}
