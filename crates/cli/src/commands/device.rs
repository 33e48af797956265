//! `rampart device ...`: the devices the server knows, their tags, and their
//! effective policy.

use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::{
    DeviceFilter, DeviceView, EffectivePolicyView, ReenrollApproval, ReenrollApprove, SetTags,
    SyncAccepted,
};
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
    /// List devices; each filter given must match (case-insensitive).
    List {
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only devices of this OS: linux, windows or macos.
        #[arg(long)]
        os: Option<String>,
        /// Only devices with this label, e.g. Managed.
        #[arg(long)]
        label: Option<String>,
        /// Only devices managed by this authority, e.g. rampart.
        #[arg(long)]
        managed_by: Option<String>,
        /// Only devices in this enrollment state, e.g. enrolled or simulated.
        #[arg(long)]
        enrollment: Option<String>,
        /// Only devices whose name, OS, type, managed-by, enrollment, tags
        /// or labels contain every word.
        #[arg(long)]
        search: Option<String>,
        /// Sort by name, os, type, managed_by, enrollment or last_check_in.
        #[arg(long, default_value = "name")]
        sort: String,
        /// Sort descending.
        #[arg(long)]
        desc: bool,
        /// At most this many devices (1 to 1000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Show one device.
    Show {
        /// The device name.
        name: String,
    },
    /// Show the settings a device gets now, where each comes from, and its
    /// conflicts.
    Effective {
        /// The device name.
        name: String,
    },
    /// Set a device's tags: the given tags replace all of them, or --add and
    /// --remove change some.
    #[command(
        group = clap::ArgGroup::new("change").required(true).multiple(true).args(["tags", "add", "remove", "clear"])
    )]
    Tag {
        /// The device name.
        name: String,
        /// The new tags; they replace the current ones.
        #[arg(conflicts_with_all = ["add", "remove", "clear"])]
        tags: Vec<String>,
        /// Add this tag (repeatable).
        #[arg(long, value_name = "TAG")]
        add: Vec<String>,
        /// Remove this tag (repeatable).
        #[arg(long, value_name = "TAG")]
        remove: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with_all = ["add", "remove"])]
        clear: bool,
    },
    /// Remove a device from the server.
    Delete {
        /// The device name.
        name: String,
    },
    /// Ask a device to fetch its policy now rather than at its next check-in.
    Sync {
        /// The device name.
        name: String,
    },
    /// Let one enrollment take over this device's name (a reinstalled
    /// machine that lost its key): the next agent onboarding under the name
    /// before the approval expires gets the device's id and a new
    /// certificate, and the current certificate stops counting. A device
    /// that still has its key never needs this: it re-attests by itself.
    Reenroll {
        /// The device name.
        name: String,
        /// How long the approval lasts, in hours (1 to 168).
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let output = args.output;
    match args.command {
        Command::List {
            tag,
            os,
            label,
            managed_by,
            enrollment,
            search,
            sort,
            desc,
            limit,
        } => {
            let filter = DeviceFilter {
                managed_by,
                label,
                tag,
                os,
                enrollment,
                search,
                sort: Some(sort),
                order: desc.then(|| "desc".to_string()),
                limit,
                cursor: None,
            };
            let devices: Vec<DeviceView> = client.get_query(&["devices"], &filter).await?;
            match output {
                Format::Json => render::print_json(&devices)?,
                Format::Table => print!("{}", list_table(&devices)),
            }
        }
        Command::Show { name } => {
            let device: DeviceView = client.get(&["devices", &name]).await?;
            match output {
                Format::Json => render::print_json(&device)?,
                Format::Table => print!("{}", describe(&device)),
            }
        }
        Command::Effective { name } => {
            let effective: EffectivePolicyView =
                client.get(&["devices", &name, "effective"]).await?;
            match output {
                Format::Json => render::print_json(&effective)?,
                Format::Table => print!("{}", effective_table(&effective)),
            }
        }
        Command::Tag {
            name,
            tags,
            add,
            remove,
            clear,
        } => {
            let tags = if clear {
                Vec::new()
            } else if add.is_empty() && remove.is_empty() {
                tags
            } else {
                let current: DeviceView = client.get(&["devices", &name]).await?;
                let mut tags: Vec<String> = current
                    .tags
                    .into_iter()
                    .filter(|t| !remove.iter().any(|r| r.eq_ignore_ascii_case(t)))
                    .collect();
                for a in add {
                    if !tags.iter().any(|t| t.eq_ignore_ascii_case(&a)) {
                        tags.push(a);
                    }
                }
                tags
            };
            let device: DeviceView = client
                .put(&["devices", &name, "tags"], &SetTags { tags })
                .await?;
            match output {
                Format::Json => render::print_json(&device)?,
                Format::Table => {
                    let tags = if device.tags.is_empty() {
                        "no tags".to_string()
                    } else {
                        device.tags.join(", ")
                    };
                    println!("{}: {tags}", device.name);
                }
            }
        }
        Command::Delete { name } => {
            client.delete(&["devices", &name]).await?;
            match output {
                Format::Json => {
                    render::print_json(&json!({ "deleted": { "kind": "device", "name": name } }))?
                }
                Format::Table => println!("deleted device {name}"),
            }
        }
        Command::Sync { name } => {
            let accepted: SyncAccepted =
                client.post(&["devices", &name, "sync"], &json!({})).await?;
            match output {
                Format::Json => render::print_json(&accepted)?,
                Format::Table if accepted.connected => {
                    println!("{}: asked to sync now", accepted.device)
                }
                Format::Table => println!(
                    "{}: not connected; it fetches its policy at its next check-in",
                    accepted.device
                ),
            }
        }
        Command::Reenroll { name, hours } => {
            let approval: ReenrollApproval = client
                .post(
                    &["devices", &name, "reenroll"],
                    &ReenrollApprove {
                        expires_in_hours: Some(hours),
                    },
                )
                .await?;
            match output {
                Format::Json => render::print_json(&approval)?,
                Format::Table => println!(
                    "{}: one enrollment under this name is allowed until {}; onboard the machine with `rampart-agent onboard --package FILE --device-name {}`",
                    approval.device,
                    render::time(Some(approval.until)),
                    approval.device
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_table(devices: &[DeviceView]) -> String {
    if devices.is_empty() {
        return "No devices.\n".into();
    }
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                format!("{} {}", d.os, d.os_version).trim().to_string(),
                d.device_type.clone(),
                d.tags.join(","),
                d.managed_by.clone(),
                d.enrollment.status.clone(),
                render::time(d.last_check_in),
            ]
        })
        .collect();
    format!(
        "{}\n{}\n",
        render::table(
            &[
                "NAME",
                "OS",
                "TYPE",
                "TAGS",
                "MANAGED BY",
                "ENROLLMENT",
                "LAST CHECK-IN"
            ],
            &rows
        )
        .trim_end(),
        render::count(devices.len(), "device")
    )
}

fn describe(d: &DeviceView) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut enrollment = d.enrollment.status.clone();
    if let Some(code) = &d.enrollment.code {
        enrollment.push_str(&format!(" ({code})"));
    }
    if let Some(reason) = &d.enrollment.reason {
        enrollment.push_str(&format!(": {reason}"));
    }
    let mut rows = vec![
        vec!["name".to_string(), d.name.clone()],
        vec!["id".to_string(), d.id.clone()],
        vec!["os".to_string(), d.os.clone()],
        vec!["os version".to_string(), or_dash(&d.os_version)],
        vec!["type".to_string(), d.device_type.clone()],
        vec!["tags".to_string(), or_dash(&d.tags.join(", "))],
        vec!["labels".to_string(), or_dash(&d.labels.join(", "))],
        vec!["managed by".to_string(), d.managed_by.clone()],
        vec!["enrollment".to_string(), enrollment],
        vec!["conditions".to_string(), or_dash(&d.conditions.join(", "))],
        vec!["agent version".to_string(), or_dash(&d.agent_version)],
        vec!["last check-in".to_string(), render::time(d.last_check_in)],
        vec![
            "policy version".to_string(),
            d.policy_version.map_or("-".into(), |v| v.to_string()),
        ],
    ];
    // Why the device is in this state and what to do, after the state.
    if let Some(help) = &d.enrollment.help {
        rows.insert(9, vec!["cause".to_string(), help.cause.clone()]);
        rows.insert(10, vec!["fix".to_string(), help.fix.clone()]);
    }
    render::table(&["PROPERTY", "VALUE"], &rows)
}

fn effective_table(e: &EffectivePolicyView) -> String {
    if !e.managed {
        return format!(
            "{}: not managed: {}\n",
            e.device,
            e.reason
                .as_deref()
                .unwrap_or("outside the enforcement scope")
        );
    }
    if e.settings.is_empty() && e.conflicts.is_empty() && e.not_applicable.is_empty() {
        return format!("{}: no policy targets this device\n", e.device);
    }
    let mut rows: Vec<Vec<String>> = e
        .settings
        .iter()
        .map(|s| {
            vec![
                s.setting.clone(),
                render::cell(&s.value),
                s.sources.join(", "),
            ]
        })
        .collect();
    for c in &e.conflicts {
        rows.push(vec![
            render::keyed(&c.setting, c.key.as_deref()),
            "CONFLICT (not applied)".into(),
            render::conflict_detail(c).join("\n"),
        ]);
    }
    for n in &e.not_applicable {
        rows.push(vec![
            render::keyed(&n.setting, n.key.as_deref()),
            format!("NOT APPLICABLE: {}", n.reason),
            n.policies.join("\n"),
        ]);
    }
    let versions: Vec<String> = e
        .policy_versions
        .iter()
        .map(|(p, v)| format!("{p} v{v}"))
        .collect();
    format!(
        "{}\n{}\npolicies: {}\n",
        e.device,
        render::table(&["SETTING", "VALUE", "SOURCES"], &rows).trim_end(),
        versions.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_out_of_scope_shows_the_cause_and_the_fix() {
        let d: DeviceView = serde_json::from_value(serde_json::json!({
            "id": "d1", "name": "ws-07", "os": "windows", "os_version": "10.0.22631",
            "type": "workstation", "agent_version": "0.1.0", "tags": [], "labels": ["Joined"],
            "managed_by": "rampart",
            "enrollment": {"status": "not_managed", "code": "pilot_tag_missing",
                "reason": "the platform is in pilot mode",
                "help": rampart_proto::troubleshooting::guidance("pilot_tag_missing")},
            "last_check_in": null, "policy_version": null
        }))
        .unwrap();
        let text = describe(&d);
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            row("enrollment").contains("not_managed (pilot_tag_missing)"),
            "{text}"
        );
        assert!(
            row("cause").contains("does not carry the pilot tag"),
            "{text}"
        );
        assert!(
            row("fix").contains("rampart device tag NAME --add TAG"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let at = |name: &str| lines.iter().position(|l| l.starts_with(name)).unwrap();
        assert!(
            at("enrollment") < at("cause") && at("cause") < at("fix"),
            "{text}"
        );
    }
}
