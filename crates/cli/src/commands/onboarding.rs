//! `rampart onboarding create`: an onboarding package for devices.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rampart_proto::OnboardingCreate;

use crate::client::Client;
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Output format (for `list`).
    #[arg(short, long, value_enum, default_value_t, global = true)]
    output: crate::Format,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a package (server URL, CA pin, onboarding token) and write it to a file readable only by you.
    Create {
        /// How long the token stays valid: e.g. 30m, 24h, 7d (default 24h, at most 30d).
        #[arg(long, default_value = "24h", value_parser = crate::times::parse_duration)]
        expires: i64,
        /// How many devices may use it (unlimited by default).
        #[arg(long)]
        max_uses: Option<u32>,
        /// Where to write the package (it holds a secret).
        #[arg(long)]
        out: PathBuf,
    },
    /// List the tenant's onboarding tokens (never their secret).
    List,
    /// Revoke a token: devices can no longer enroll with it; enrolled
    /// devices keep their trust.
    Revoke {
        /// The token id, as `rampart onboarding list` shows it.
        id: String,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let (expires, max_uses, out) = match args.command {
        Command::Create {
            expires,
            max_uses,
            out,
        } => (expires, max_uses, out),
        Command::List => {
            let tokens: Vec<rampart_proto::OnboardingTokenView> =
                client.get(&["onboarding"]).await?;
            match args.output {
                crate::Format::Json => crate::render::print_json(&tokens)?,
                crate::Format::Table => {
                    let rows: Vec<Vec<String>> = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                crate::render::time(Some(t.created_at)),
                                crate::render::time(Some(t.expires_at)),
                                match t.max_uses {
                                    Some(m) => format!("{}/{m}", t.uses),
                                    None => t.uses.to_string(),
                                },
                                t.created_by.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        crate::render::table(&["ID", "CREATED", "EXPIRES", "USES", "BY"], &rows)
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Revoke { id } => {
            client.delete(&["onboarding", &id]).await?;
            eprintln!("revoked onboarding token {id}; devices can no longer enroll with it");
            return Ok(ExitCode::SUCCESS);
        }
    };
    if out.exists() {
        bail!(
            "{} exists; choose another --out (a package is never overwritten)",
            out.display()
        );
    }
    let package: serde_json::Value = client
        .post(
            &["onboarding"],
            &OnboardingCreate {
                expires_in_seconds: Some(expires),
                max_uses,
            },
        )
        .await?;
    let text = serde_json::to_string_pretty(&package)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write as _;
    let mut file = options
        .open(&out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(text.as_bytes())?;
    eprintln!(
        "wrote the onboarding package to {} (valid until {}{}); onboard a device with:\n  rampart-agent onboard --package {}\n(the agent keeps its state in /var/lib/rampart-agent unless given --state-dir)",
        out.display(),
        render::time(package["expires_at"].as_i64()),
        max_uses.map(|n| format!(", {n} uses")).unwrap_or_default(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        assert_eq!(crate::times::parse_duration("24h"), Ok(86_400));
        assert_eq!(crate::times::parse_duration("90"), Ok(90));
        assert!(crate::times::parse_duration("3w").is_err());
        assert!(crate::times::parse_duration("h").is_err());
    }
}
