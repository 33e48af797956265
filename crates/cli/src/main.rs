//! `rampart`: the administrator's command line.
//!
//! `plan` and `catalog` work offline on files and on the catalog built into
//! this binary; the other commands talk to a `rampart-server`.

mod commands;
mod input;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Endpoint security settings management: plan, apply and inspect policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Browse the settings catalog.
    #[command(subcommand)]
    Catalog(commands::catalog::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => commands::plan::run(args),
        Command::Catalog(cmd) => commands::catalog::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
