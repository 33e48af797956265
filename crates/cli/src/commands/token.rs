//! `rampart token ...`: API tokens for scripts and for this CLI.

use std::process::ExitCode;

use anyhow::Result;
use rampart_core::model::Role;
use rampart_proto::{TokenCreate, TokenCreated, TokenView};
use serde_json::json;

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
    /// Create a token and print it. It is shown this once: the server keeps
    /// only its hash.
    Create {
        /// What the token may do: read_only, security_manager or global_admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A name to recognize the token by in listings and the audit log
        /// (default: the role).
        #[arg(long)]
        name: Option<String>,
        /// The token stops working after this many days (never by default).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List the tenant's tokens (never their text).
    List,
    /// Revoke a token by its id.
    Delete {
        /// The token id, as `rampart token list` shows it.
        id: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role; expected one of {}", Role::expected()))
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Create {
            role,
            name,
            expires_in_days,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let body = TokenCreate {
                name: name.unwrap_or_else(|| role.as_str().to_string()),
                role: role.as_str().to_string(),
                expires_at: expires_in_days.map(|days| now + i64::from(days) * 86_400),
            };
            let created: TokenCreated = client.post(&["tokens"], &body).await?;
            match args.output {
                Format::Json => render::print_json(&created)?,
                Format::Table => {
                    // The token alone on stdout, so `$(rampart token create …)`
                    // captures it; what it is goes to stderr.
                    println!("{}", created.token);
                    eprintln!(
                        "created token {:?} ({}, id {}); it is shown only this once: store it now",
                        created.name, created.role, created.id
                    );
                }
            }
        }
        Command::List => {
            let tokens: Vec<TokenView> = client.get(&["tokens"]).await?;
            match args.output {
                Format::Json => render::print_json(&tokens)?,
                Format::Table => {
                    let rows: Vec<Vec<String>> = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                t.role.clone(),
                                t.kind.clone(),
                                format!("{} by {}", render::time(Some(t.created_at)), t.created_by),
                                t.expires_at.map_or("-".into(), |at| render::time(Some(at))),
                                t.last_used_at
                                    .map_or("never".into(), |at| render::time(Some(at))),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        render::table(
                            &[
                                "ID",
                                "NAME",
                                "ROLE",
                                "KIND",
                                "CREATED",
                                "EXPIRES",
                                "LAST USED"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
        Command::Delete { id } => {
            client.delete(&["tokens", &id]).await?;
            match args.output {
                Format::Json => {
                    render::print_json(&json!({ "deleted": { "kind": "token", "id": id } }))?
                }
                Format::Table => println!("revoked token {id}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
