//! `rampart policy ...`: endpoint-security policies stored on the server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::PolicyView;
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
    /// List policies.
    List,
    /// Show one policy: its settings and assignments.
    Show {
        /// The policy name.
        name: String,
    },
    /// Create a policy from a YAML file holding one `kind: Policy` document.
    Create {
        /// The YAML file.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a policy; the devices it targeted stop getting its settings.
    Delete {
        /// The policy name.
        name: String,
    },
    /// List every stored version of a policy, newest last.
    Versions {
        /// The policy name.
        name: String,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let output = args.output;
    match args.command {
        Command::List => {
            let policies: Vec<PolicyView> = client.get(&["policies"]).await?;
            match output {
                Format::Json => render::print_json(&policies)?,
                Format::Table if policies.is_empty() => println!("No policies."),
                Format::Table => print!("{}", list_table(&policies, false)),
            }
        }
        Command::Show { name } => {
            let policy: PolicyView = client.get(&["policies", &name]).await?;
            match output {
                Format::Json => render::print_json(&policy)?,
                Format::Table => print!("{}", describe(&policy)),
            }
        }
        Command::Create { file } => {
            let body = yaml::single(&file, "Policy")?;
            let policy: PolicyView = client.post(&["policies"], &body).await?;
            match output {
                Format::Json => render::print_json(&policy)?,
                Format::Table => println!(
                    "created policy {} ({} {}, {}; version {})",
                    policy.name,
                    policy.platform,
                    policy.family,
                    render::count(policy.settings.len(), "setting"),
                    policy.version
                ),
            }
        }
        Command::Delete { name } => {
            client.delete(&["policies", &name]).await?;
            match output {
                Format::Json => {
                    render::print_json(&json!({ "deleted": { "kind": "policy", "name": name } }))?
                }
                Format::Table => println!("deleted policy {name}"),
            }
        }
        Command::Versions { name } => {
            let versions: Vec<PolicyView> = client.get(&["policies", &name, "versions"]).await?;
            match output {
                Format::Json => render::print_json(&versions)?,
                Format::Table => print!("{}", list_table(&versions, true)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn assigned(p: &PolicyView) -> String {
    let mut s = p.assignments.include.join(",");
    if !p.assignments.exclude.is_empty() {
        s.push_str(&format!(" except {}", p.assignments.exclude.join(",")));
    }
    s
}

fn list_table(policies: &[PolicyView], history: bool) -> String {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.platform.clone(),
                p.family.clone(),
                p.settings.len().to_string(),
                assigned(p),
                p.version.to_string(),
                if history {
                    format!("{} by {}", render::time(Some(p.modified_at)), p.modified_by)
                } else {
                    p.description.clone()
                },
            ]
        })
        .collect();
    let last = if history { "MODIFIED" } else { "DESCRIPTION" };
    render::table(
        &[
            "NAME", "PLATFORM", "FAMILY", "SETTINGS", "ASSIGNED", "VERSION", last,
        ],
        &rows,
    )
}

fn describe(p: &PolicyView) -> String {
    let mut out = format!("{} (version {})\n", p.name, p.version);
    if !p.description.is_empty() {
        out.push_str(&format!("{}\n", p.description));
    }
    let rows = vec![
        vec!["platform".to_string(), p.platform.clone()],
        vec!["family".to_string(), p.family.clone()],
        vec![
            "include".to_string(),
            if p.assignments.include.is_empty() {
                "-".into()
            } else {
                p.assignments.include.join(", ")
            },
        ],
        vec![
            "exclude".to_string(),
            if p.assignments.exclude.is_empty() {
                "-".into()
            } else {
                p.assignments.exclude.join(", ")
            },
        ],
        vec![
            "modified".to_string(),
            format!("{} by {}", render::time(Some(p.modified_at)), p.modified_by),
        ],
    ];
    out.push('\n');
    out.push_str(&render::table(&["PROPERTY", "VALUE"], &rows));
    out.push('\n');
    if p.settings.is_empty() {
        out.push_str("no settings\n");
    } else {
        let rows: Vec<Vec<String>> = p
            .settings
            .iter()
            .map(|(k, v)| vec![k.clone(), render::cell(v)])
            .collect();
        out.push_str(&render::table(&["SETTING", "VALUE"], &rows));
    }
    out
}
