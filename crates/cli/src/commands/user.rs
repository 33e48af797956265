//! `rampart user ...`: the tenant's local console users.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use rampart_core::model::Role;
use rampart_proto::{UserCreate, UserUpdate, UserView};
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
    /// List the tenant's users.
    List,
    /// Create a user.
    Create {
        username: String,
        /// read_only, security_manager or global_admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// File holding the password (at least 12 characters), or `-` for
        /// standard input; never given on the command line.
        #[arg(long)]
        password_file: PathBuf,
    },
    /// Change a user's role or password; ends the user's sessions.
    Update {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// File holding the new password, or `-` for standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Stop a user from signing in (ends its sessions); the account stays.
    Disable { username: String },
    /// Let a disabled user sign in again.
    Enable { username: String },
    /// Delete a user and end its sessions.
    Delete { username: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role; expected one of {}", Role::expected()))
}

/// The password in a file (or standard input for `-`), without the line end.
fn read_password(path: &Path) -> Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn print_users(users: &[UserView], output: Format) -> Result<()> {
    match output {
        Format::Json => render::print_json(&users)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.username.clone(),
                        u.role.clone(),
                        if u.disabled { "disabled" } else { "enabled" }.to_owned(),
                        render::time(Some(u.created_at)),
                    ]
                })
                .collect();
            print!(
                "{}",
                render::table(&["USERNAME", "ROLE", "STATE", "CREATED"], &rows)
            );
        }
    }
    Ok(())
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let update =
        |role: Option<Role>, password: Option<String>, disabled: Option<bool>| UserUpdate {
            role: role.map(|r| r.as_str().to_owned()),
            password,
            disabled,
        };
    let (username, change) = match args.command {
        Command::List => {
            let users: Vec<UserView> = client.get(&["users"]).await?;
            print_users(&users, args.output)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Create {
            username,
            role,
            password_file,
        } => {
            let body = UserCreate {
                username,
                password: read_password(&password_file)?,
                role: role.as_str().to_owned(),
            };
            let user: UserView = client.post(&["users"], &body).await?;
            print_users(&[user], args.output)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Delete { username } => {
            client.delete(&["users", &username]).await?;
            match args.output {
                Format::Json => render::print_json(
                    &json!({ "deleted": { "kind": "user", "username": username } }),
                )?,
                Format::Table => println!("deleted user {username} and ended its sessions"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Update {
            username,
            role,
            password_file,
        } => {
            let password = password_file.as_deref().map(read_password).transpose()?;
            anyhow::ensure!(
                role.is_some() || password.is_some(),
                "nothing to change: give --role or --password-file"
            );
            (username, update(role, password, None))
        }
        Command::Disable { username } => (username, update(None, None, Some(true))),
        Command::Enable { username } => (username, update(None, None, Some(false))),
    };
    let user: UserView = client.put(&["users", &username], &change).await?;
    print_users(&[user], args.output)?;
    Ok(ExitCode::SUCCESS)
}
