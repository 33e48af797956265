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
        /// Only changes by this actor (a user, a token's name, device:NAME).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (policy.update), or every action of a kind
        /// (policy.*).
        #[arg(long)]
        action: Option<String>,
        /// Only changes to this kind of object (policy, group, device, …).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only changes to the object with this name.
        #[arg(long, value_name = "NAME")]
        object: Option<String>,
        /// Only entries at or after this time: a UTC date and time
        /// (2026-12-01, 2026-12-01T14:30Z) or a time ago (2h, 7d).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only entries before this time (as --since).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let Command::List {
        limit,
        before,
        actor,
        action,
        kind,
        object,
        since,
        until,
    } = args.command;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let instant = |flag: &str, value: Option<String>| {
        value
            .map(|v| {
                crate::times::parse_instant(&v, now).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
            })
            .transpose()
    };
    let query = AuditQuery {
        limit: Some(limit),
        before,
        actor,
        action,
        object_kind: kind,
        object_name: object,
        since: instant("--since", since)?,
        until: instant("--until", until)?,
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
