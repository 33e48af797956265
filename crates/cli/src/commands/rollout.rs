//! `rampart rollout`: staged rollouts of policy changes — where each stands,
//! and the steps an administrator takes (pause, resume, advance, abort).

use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::{RolloutAction, RolloutView};

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
    /// Every policy's current or last rollout.
    List,
    /// One policy's rollout: stages, devices reached, gates, history.
    Show {
        /// The policy whose rollout to show.
        policy: String,
    },
    /// Hold a running rollout at its stage.
    Pause {
        /// The policy whose rollout this is.
        policy: String,
        /// Why, for the history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a paused rollout again (its stage's soak starts over).
    Resume {
        /// The policy whose rollout this is.
        policy: String,
        /// Why, for the history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Go to the next stage now, whatever the gates say.
    Advance {
        /// The policy whose rollout this is.
        policy: String,
        /// Why, for the history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Roll back: the previous revision is written back and every device
    /// returns to it.
    Abort {
        /// The policy whose rollout this is.
        policy: String,
        /// Why, for the history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let (step, policy, reason) = match args.command {
        Command::List => {
            let rollouts: Vec<RolloutView> = client.get(&["rollouts"]).await?;
            match args.output {
                Format::Json => render::print_json(&rollouts)?,
                Format::Table if rollouts.is_empty() => println!("No rollouts."),
                Format::Table => {
                    let rows: Vec<Vec<String>> = rollouts.iter().map(summary_row).collect();
                    print!(
                        "{}",
                        render::table(
                            &["POLICY", "STATE", "STAGE", "REACHED", "STARTED", "BY"],
                            &rows
                        )
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Show { policy } => {
            let rollout: RolloutView = client.get(&["rollouts", &policy]).await?;
            show(&rollout, args.output)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Pause { policy, reason } => ("pause", policy, reason),
        Command::Resume { policy, reason } => ("resume", policy, reason),
        Command::Advance { policy, reason } => ("advance", policy, reason),
        Command::Abort { policy, reason } => ("abort", policy, reason),
    };
    let rollout: RolloutView = client
        .post(&["rollouts", &policy, step], &RolloutAction { reason })
        .await?;
    show(&rollout, args.output)?;
    Ok(ExitCode::SUCCESS)
}

fn stage_text(r: &RolloutView) -> String {
    match r.stages.get(r.rollout.stage) {
        Some(s) => format!(
            "{} of {} ({})",
            r.rollout.stage + 1,
            r.stages.len(),
            s.target
        ),
        None => "-".into(),
    }
}

fn summary_row(r: &RolloutView) -> Vec<String> {
    vec![
        r.rollout.policy.clone(),
        r.rollout.state.clone(),
        stage_text(r),
        format!("{} of {}", r.devices_reached, r.devices_targeted),
        render::time(Some(r.rollout.started_at)),
        r.rollout.started_by.clone(),
    ]
}

fn show(r: &RolloutView, output: Format) -> Result<()> {
    if output == Format::Json {
        return render::print_json(r);
    }
    let from = r
        .rollout
        .from_version
        .map_or("none (created)".to_string(), |v| format!("version {v}"));
    let to = if r.rollout.deletes {
        "deleted".to_string()
    } else {
        r.to_version
            .map_or("-".to_string(), |v| format!("version {v}"))
    };
    println!("Policy:   {}", r.rollout.policy);
    println!("Change:   {from} -> {to}");
    println!("State:    {}", r.rollout.state);
    if let Some(reason) = &r.rollout.reason {
        println!("Reason:   {reason}");
    }
    println!("Stage:    {}", stage_text(r));
    if let Some(at) = r.soak_ends_at {
        println!("Soak ends {}", render::time(Some(at)));
    }
    println!(
        "Devices:  {} of {} targeted have the new revision",
        r.devices_reached, r.devices_targeted
    );
    if let Some(g) = &r.rollout.gates {
        println!(
            "Gates:    {} reached, {} with errors, {} locked out, {} not reporting, {} tamper events",
            g.reached, g.errors, g.lockouts, g.silent, g.tamper_events
        );
    }
    println!();
    let stages: Vec<Vec<String>> = r
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                (i + 1).to_string(),
                s.target.clone(),
                render::duration(s.soak_secs),
            ]
        })
        .collect();
    print!("{}", render::table(&["STAGE", "REACHES", "SOAK"], &stages));
    println!();
    let history: Vec<Vec<String>> = r
        .rollout
        .history
        .iter()
        .map(|e| {
            vec![
                render::time(Some(e.at)),
                e.actor.clone(),
                e.action.clone(),
                (e.stage + 1).to_string(),
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        render::table(&["TIME", "ACTOR", "STEP", "STAGE", "DETAIL"], &history)
    );
    Ok(())
}
