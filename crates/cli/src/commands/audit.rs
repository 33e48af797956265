//! `rampart audit list`: who changed what, newest first.

use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::{AuditQuery, AuditView};

use crate::client::Client;
use crate::render;
use crate::Format;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t, global = true)]
    output: Format,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List audit entries, newest first.
    List {
        /// At most this many entries (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only entries older than this id, to page back.
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let Command::List { limit, before } = args.command;
    let query = AuditQuery {
        limit: Some(limit),
        before,
    };
    let entries: Vec<AuditView> = client.get_query(&["audit"], &query).await?;
    match args.output {
        Format::Json => render::print_json(&entries)?,
        Format::Table if entries.is_empty() => println!("No audit entries."),
        Format::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        render::time(Some(e.at)),
                        e.actor.clone(),
                        e.action.clone(),
                        format!("{} {}", e.object_kind, e.object_name),
                    ]
                })
                .collect();
            print!(
                "{}",
                render::table(&["ID", "TIME", "ACTOR", "ACTION", "OBJECT"], &rows)
            );
            if entries.len() == limit as usize {
                if let Some(last) = entries.last() {
                    eprintln!("more may exist: --before {} shows older entries", last.id);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
