//! `rampart`: the administrator's command line.
//!
//! `plan`, `catalog`, `import` and `export` work offline on files and on the catalog built into
//! this binary; the other commands talk to a `rampart-server`.

mod client;
mod commands;
mod render;
mod times;
mod yaml;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::online;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Endpoint security settings management: plan, apply and inspect policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: client::Target,
}

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// A table for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Resolve policy files offline and show what every device would get.
    Plan(commands::plan::Args),
    /// Import policies from another product (`rampart import intune FILE|DIR... --out DIR`).
    #[command(subcommand)]
    Import(commands::intune::ImportCommand),
    /// Export policy files for another product (`rampart export intune DIR --out DIR`).
    #[command(subcommand)]
    Export(commands::intune::ExportCommand),
    /// Browse the settings catalog.
    #[command(subcommand)]
    Catalog(commands::catalog::Command),
    /// Make the server's policies, groups and tenant settings match a
    /// directory of YAML files; prints what changes first.
    Apply(commands::apply::Args),
    /// Devices: list, show, tag, delete, sync, effective policy.
    Device(commands::device::Args),
    /// Device groups: list, show, create, delete, members.
    Group(commands::group::Args),
    /// Policies: list, show, create, delete, versions.
    Policy(commands::policy::Args),
    /// The tenant's settings: enforcement scope, pilot tag, conflicts.
    Tenant(commands::tenant::Args),
    /// Where settings stand on devices, per policy, device or setting.
    Report(commands::report::Args),
    /// Staged rollouts of policy changes: list, show, pause, resume,
    /// advance, abort.
    Rollout(commands::rollout::Args),
    /// The audit log: who changed what.
    Audit(commands::audit::Args),
    /// API tokens: create, list, delete.
    Token(commands::token::Args),
    /// Console users: list, create, update, disable, enable, delete.
    User(commands::user::Args),
    /// Onboarding packages that let devices establish a trust with the tenant.
    Onboarding(commands::onboarding::Args),
    /// Show which tenant and role the token gives.
    Whoami(commands::whoami::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => commands::plan::run(args),
        Command::Catalog(cmd) => commands::catalog::run(cmd),
        Command::Import(cmd) => commands::intune::run_import(cmd),
        Command::Export(cmd) => commands::intune::run_export(cmd),
        Command::Apply(args) => commands::apply::run(&cli.target, args),
        Command::Device(args) => online(&cli.target, |c| commands::device::run(c, args)),
        Command::Group(args) => online(&cli.target, |c| commands::group::run(c, args)),
        Command::Policy(args) => online(&cli.target, |c| commands::policy::run(c, args)),
        Command::Tenant(args) => online(&cli.target, |c| commands::tenant::run(c, args)),
        Command::Report(args) => online(&cli.target, |c| commands::report::run(c, args)),
        Command::Rollout(args) => online(&cli.target, |c| commands::rollout::run(c, args)),
        Command::Audit(args) => online(&cli.target, |c| commands::audit::run(c, args)),
        Command::Token(args) => online(&cli.target, |c| commands::token::run(c, args)),
        Command::User(args) => online(&cli.target, |c| commands::user::run(c, args)),
        Command::Onboarding(args) => online(&cli.target, |c| commands::onboarding::run(c, args)),
        Command::Whoami(args) => online(&cli.target, |c| commands::whoami::run(c, args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
