//! `rampart-agent service install|uninstall|run`: the agent as a Windows
//! service (the `windows-service` crate). `install` registers the running
//! executable as the auto-start service `RampartAgent` (LocalSystem) with
//! `service run --state-dir DIR`; the service control manager then starts
//! `service run`, which reports to it and runs the same loop as
//! `rampart-agent run` until told to stop. On other systems the commands
//! say to use the system's service manager instead.

/// The service's name in the service control manager.
#[cfg(windows)]
pub const NAME: &str = "RampartAgent";

#[cfg(not(windows))]
pub use self::other::{install, run, uninstall};

#[cfg(not(windows))]
mod other {
    use std::path::Path;

    use anyhow::Result;
    use rampart_agent::config::AgentConfig;
    use rampart_agent::state::StateDir;

    pub fn install(_state_dir: &Path, _config: Option<&Path>) -> Result<String> {
        anyhow::bail!("`service` is for Windows; on Linux and macOS run `rampart-agent run` under systemd or launchd (see the README)")
    }

    pub fn uninstall() -> Result<String> {
        install(Path::new(""), None)
    }

    pub fn run(_state: StateDir, _config: AgentConfig) -> Result<()> {
        install(Path::new(""), None).map(|_| ())
    }
}

#[cfg(windows)]
pub use self::windows::{install, run, uninstall};

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::path::Path;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use anyhow::{Context, Result};
    use rampart_agent::config::AgentConfig;
    use rampart_agent::state::StateDir;
    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::NAME;

    pub fn install(state_dir: &Path, config: Option<&Path>) -> Result<String> {
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let manager = ServiceManager::local_computer(
            None::<&str>,
            ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        )
        .context("cannot open the service control manager (run as Administrator)")?;
        let mut arguments: Vec<OsString> = vec![
            "service".into(),
            "run".into(),
            "--state-dir".into(),
            state_dir.as_os_str().to_owned(),
        ];
        if let Some(c) = config {
            arguments.push("--config".into());
            arguments.push(c.as_os_str().to_owned());
        }
        let info = ServiceInfo {
            name: NAME.into(),
            display_name: "Rampart agent".into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe.clone(),
            launch_arguments: arguments,
            dependencies: vec![],
            // LocalSystem: the policy registry keys are HKLM.
            account_name: None,
            account_password: None,
        };
        let service = manager
            .create_service(&info, ServiceAccess::CHANGE_CONFIG)
            .with_context(|| format!("cannot create the service {NAME}"))?;
        // A description is a courtesy; its failure is not the install's.
        let _ = service.set_description(
            "Enforces the signed security policies of a Rampart tenant and reports their status",
        );
        Ok(format!(
            "installed the service {NAME} ({} service run --state-dir {}); start it with `sc start {NAME}`\n",
            exe.display(),
            state_dir.display()
        ))
    }

    pub fn uninstall() -> Result<String> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .context("cannot open the service control manager (run as Administrator)")?;
        let service = manager
            .open_service(
                NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .with_context(|| format!("the service {NAME} is not installed"))?;
        if service
            .query_status()
            .is_ok_and(|s| s.current_state != ServiceState::Stopped)
        {
            let _ = service.stop();
            for _ in 0..30 {
                if service
                    .query_status()
                    .is_ok_and(|s| s.current_state == ServiceState::Stopped)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        service
            .delete()
            .with_context(|| format!("cannot delete the service {NAME}"))?;
        Ok(format!(
            "uninstalled the service {NAME}; the state directory is kept\n"
        ))
    }

    /// What `service_main` runs: set before the dispatcher starts.
    static AGENT: OnceLock<Mutex<Option<(StateDir, AgentConfig)>>> = OnceLock::new();

    pub fn run(state: StateDir, config: AgentConfig) -> Result<()> {
        let _ = AGENT.set(Mutex::new(Some((state, config))));
        service_dispatcher::start(NAME, ffi_service_main).context(
            "not started by the service control manager (use `rampart-agent run` in a console)",
        )
    }

    define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<OsString>) {
        if let Err(e) = serve() {
            tracing::error!(event = "service_failed", error = %format!("{e:#}"), "the Rampart agent service stopped on an error");
        }
    }

    fn serve() -> Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_tx = Mutex::new(Some(stop_tx));
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                if let Ok(mut tx) = stop_tx.lock() {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let status = service_control_handler::register(NAME, handler)?;
        let report = |state: ServiceState, code: u32| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: state,
                controls_accepted: if state == ServiceState::Running {
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code: ServiceExitCode::Win32(code),
                checkpoint: 0,
                wait_hint: Duration::from_secs(10),
                process_id: None,
            });
        };
        let Some((state, config)) = AGENT
            .get()
            .and_then(|m| m.lock().ok().and_then(|mut g| g.take()))
        else {
            report(ServiceState::Stopped, 1);
            anyhow::bail!("the service started without its configuration");
        };
        report(ServiceState::Running, 0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let result = runtime.block_on(rampart_agent::run::run(state, config, None, async {
            let _ = stop_rx.await;
        }));
        report(ServiceState::Stopped, u32::from(result.is_err()));
        result.map(|_| ()).map_err(Into::into)
    }
}
