//! `rampart group ...`: device groups, static (a list of devices) or dynamic
//! (a rule over device attributes).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::{GroupMembers, GroupView};
use serde_json::json;

use crate::client::Client;
use crate::render;
use crate::yaml;
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
    /// List groups.
    List,
    /// Show one group.
    Show {
        /// The group name.
        name: String,
    },
    /// Create a group from a YAML file holding one `kind: Group` document.
    Create {
        /// The YAML file.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a group no policy assigns.
    Delete {
        /// The group name.
        name: String,
    },
    /// List the devices a group holds now.
    Members {
        /// The group name.
        name: String,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let output = args.output;
    match args.command {
        Command::List => {
            let groups: Vec<GroupView> = client.get(&["groups"]).await?;
            match output {
                Format::Json => render::print_json(&groups)?,
                Format::Table if groups.is_empty() => println!("No groups."),
                Format::Table => {
                    let rows: Vec<Vec<String>> = groups
                        .iter()
                        .map(|g| {
                            vec![
                                g.name.clone(),
                                membership(g),
                                g.version.to_string(),
                                g.description.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        render::table(&["NAME", "MEMBERSHIP", "VERSION", "DESCRIPTION"], &rows)
                    );
                }
            }
        }
        Command::Show { name } => {
            let group: GroupView = client.get(&["groups", &name]).await?;
            match output {
                Format::Json => render::print_json(&group)?,
                Format::Table => print!("{}", describe(&group)),
            }
        }
        Command::Create { file } => {
            let body = yaml::single(&file, "Group")?;
            let group: GroupView = client.post(&["groups"], &body).await?;
            match output {
                Format::Json => render::print_json(&group)?,
                Format::Table => println!("created group {} ({})", group.name, membership(&group)),
            }
        }
        Command::Delete { name } => {
            client.delete(&["groups", &name]).await?;
            match output {
                Format::Json => {
                    render::print_json(&json!({ "deleted": { "kind": "group", "name": name } }))?
                }
                Format::Table => println!("deleted group {name}"),
            }
        }
        Command::Members { name } => {
            let members: GroupMembers = client.get(&["groups", &name, "members"]).await?;
            match output {
                Format::Json => render::print_json(&members)?,
                Format::Table if members.devices.is_empty() => {
                    println!("group {} holds no devices", members.group)
                }
                Format::Table => {
                    for d in &members.devices {
                        println!("{d}");
                    }
                    eprintln!(
                        "group {} holds {}",
                        members.group,
                        render::count(members.devices.len(), "device")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rule: …` for a dynamic group, `members: …` for a static one.
fn membership(g: &GroupView) -> String {
    match (&g.rule, &g.members) {
        (Some(rule), _) => format!("rule: {rule}"),
        (None, Some(members)) => format!("members: {}", members.join(", ")),
        (None, None) => "-".into(),
    }
}

fn describe(g: &GroupView) -> String {
    let mut rows = vec![
        vec!["name".to_string(), g.name.clone()],
        vec![
            "description".to_string(),
            if g.description.is_empty() {
                "-".into()
            } else {
                g.description.clone()
            },
        ],
    ];
    match (&g.rule, &g.members) {
        (Some(rule), _) => rows.push(vec!["rule".into(), rule.clone()]),
        (None, Some(members)) => rows.push(vec!["members".into(), members.join("\n")]),
        (None, None) => {}
    }
    rows.push(vec!["version".into(), g.version.to_string()]);
    rows.push(vec![
        "modified".into(),
        format!("{} by {}", render::time(Some(g.modified_at)), g.modified_by),
    ]);
    render::table(&["PROPERTY", "VALUE"], &rows)
}
