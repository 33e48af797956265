//! `rampart-agent`: parses the command line, loads the configuration, sets
//! up logging, and calls the library. Exit codes: 0 done, 1 an error (one
//! `error:` line on stderr says what and what to do), 2 a usage error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rampart_agent::config::AgentConfig;
use rampart_agent::facts::FactsOverride;
use rampart_agent::onboard::OnboardOptions;
use rampart_agent::run::RunExit;
use rampart_agent::state::StateDir;

mod service;

#[derive(Parser)]
#[command(
    name = "rampart-agent",
    version,
    about = "Rampart's device agent: onboard, enforce signed policies, report status"
)]
struct Cli {
    /// How log lines are written: `text` for people, `json` (one object per line) for a log collector.
    #[arg(long, env = "RAMPART_AGENT_LOG_FORMAT", default_value_t, global = true)]
    log_format: rampart_log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Options every command shares.
#[derive(clap::Args)]
struct Common {
    /// Where the agent keeps its identity, policy and outbox
    /// (default: /var/lib/rampart-agent; %ProgramData%\Rampart on Windows).
    #[arg(
        long,
        env = "RAMPART_AGENT_STATE_DIR",
        default_value_os_t = default_state_dir(),
        value_name = "DIR"
    )]
    state_dir: PathBuf,
    /// The agent's TOML configuration (default: DIR/agent.toml when present).
    #[arg(long, env = "RAMPART_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
enum Format {
    /// For people.
    #[default]
    Table,
    /// For programs; the shape is stable.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Establish the trust with a tenant from an onboarding package.
    Onboard {
        /// The onboarding package (`rampart onboarding create`).
        #[arg(long, value_name = "FILE")]
        package: PathBuf,
        /// The device's name in the tenant (default: the hostname).
        #[arg(long, value_name = "NAME")]
        device_name: Option<String>,
        /// YAML overriding detected facts: os, os_version, type, tags, hostname.
        #[arg(long, value_name = "FILE")]
        facts: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Check in, enforce the signed policy and report, until stopped.
    Run {
        /// YAML overriding detected facts (default: those given at onboarding).
        #[arg(long, value_name = "FILE")]
        facts: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Show the local view: enrollment, policy, every setting's status.
    Status {
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: Format,
        #[command(flatten)]
        common: Common,
    },
    /// Read back everything Rampart set now, restore what was changed by
    /// hand and report it (the running agent does it when there is one).
    CheckDrift {
        /// How long to wait for the running agent's answer.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        wait_secs: u64,
        #[command(flatten)]
        common: Common,
    },
    /// The Windows service: install, uninstall, or run as the service
    /// control manager starts it.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Leave the tenant: tell the server, remove what Rampart set, forget
    /// the identity.
    Offboard {
        /// Clean up locally even when the server cannot be reached.
        #[arg(long)]
        force: bool,
        /// When `run` is running, how long to wait for it to offboard.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum ServiceAction {
    /// Register this executable as the auto-start service `RampartAgent`.
    Install {
        #[command(flatten)]
        common: Common,
    },
    /// Stop and remove the service (the state directory is kept).
    Uninstall,
    /// Run as the service (started by the service control manager).
    Run {
        #[command(flatten)]
        common: Common,
    },
}

/// `/var/lib/rampart-agent`; on Windows `%ProgramData%\Rampart`.
fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        std::env::var_os("ProgramData")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
            .join("Rampart")
    } else {
        PathBuf::from("/var/lib/rampart-agent")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    rampart_log::init(
        cli.log_format,
        tracing_subscriber::EnvFilter::try_from_env("RAMPART_AGENT_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        std::io::stderr().is_terminal(),
    );
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load(common: &Common) -> Result<(StateDir, AgentConfig)> {
    let config = AgentConfig::load(common.config.as_deref(), &common.state_dir)?;
    Ok((StateDir::new(&common.state_dir), config))
}

fn facts(path: Option<&PathBuf>) -> Result<Option<FactsOverride>> {
    path.map(|p| FactsOverride::read(p))
        .transpose()
        .map_err(Into::into)
}

fn execute(command: Command) -> Result<ExitCode> {
    match command {
        Command::Onboard {
            package,
            device_name,
            facts: facts_file,
            common,
        } => {
            let (state, config) = load(&common)?;
            let options = OnboardOptions {
                package,
                device_name,
                facts: facts(facts_file.as_ref())?,
            };
            let done =
                runtime()?.block_on(rampart_agent::onboard::onboard(&state, &config, &options))?;
            print!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            facts: facts_file,
            common,
        } => {
            let (state, config) = load(&common)?;
            let overrides = facts(facts_file.as_ref())?;
            let exit = runtime()?.block_on(rampart_agent::run::run(
                state,
                config,
                overrides,
                shutdown_signal(),
            ))?;
            match exit {
                RunExit::Revoked => println!("the tenant revoked this device: Rampart's settings were removed and the agent stopped managing it"),
                RunExit::Offboarded(done) => print!("{done}"),
                RunExit::Stopped => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { output, common } => {
            let state = StateDir::new(&common.state_dir);
            let view = rampart_agent::status::collect(&state)?;
            match output {
                Format::Table => print!("{}", rampart_agent::status::render(&view)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckDrift { wait_secs, common } => {
            let (state, config) = load(&common)?;
            let done = runtime()?.block_on(rampart_agent::run::check_drift(
                state,
                config,
                std::time::Duration::from_secs(wait_secs),
            ))?;
            print!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Service { action } => match action {
            ServiceAction::Install { common } => {
                // Checked now, so that a bad configuration fails here and
                // not in a service that cannot say why.
                load(&common)?;
                print!(
                    "{}",
                    service::install(&common.state_dir, common.config.as_deref())?
                );
                Ok(ExitCode::SUCCESS)
            }
            ServiceAction::Uninstall => {
                print!("{}", service::uninstall()?);
                Ok(ExitCode::SUCCESS)
            }
            ServiceAction::Run { common } => {
                let (state, config) = load(&common)?;
                service::run(state, config)?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Offboard {
            force,
            wait_secs,
            common,
        } => {
            let (state, config) = load(&common)?;
            let done = runtime()?.block_on(rampart_agent::offboard::offboard_device(
                &state,
                &config,
                force,
                std::time::Duration::from_secs(wait_secs),
            ))?;
            print!("{done}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix (what service managers send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
