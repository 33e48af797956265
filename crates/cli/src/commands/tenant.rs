//! `rampart tenant show|set`: the tenant's enforcement scope, pilot tag,
//! conflict policy and takeover switch; `rampart tenant policy-key` and
//! `rotate-policy-key`: the key agents verify policies with.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use rampart_core::model::{ConflictPolicy, Enforcement, Platform};
use rampart_proto::{PolicyKeyView, PreviewResponse, TenantView};
use serde_json::{Map, Value};

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
    /// Show the tenant and its settings.
    Show,
    /// Change some tenant settings; the ones not given keep their values.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    Set {
        /// Enforcement scope of one platform, PLATFORM=off|all|tagged
        /// (repeatable, or comma-separated), e.g. linux=tagged.
        #[arg(
            long,
            value_name = "PLATFORM=MODE",
            value_delimiter = ',',
            value_parser = parse_enforcement,
            group = "change"
        )]
        enforcement: Vec<(Platform, Enforcement)>,
        /// The tag that marks pilot devices on platforms in `tagged` mode.
        #[arg(long, value_name = "TAG", group = "change")]
        pilot_tag: Option<String>,
        /// What happens when policies disagree: report or most_secure_wins.
        #[arg(long, value_name = "POLICY", value_parser = parse_conflict_policy, group = "change")]
        conflict_policy: Option<ConflictPolicy>,
        /// Whether devices another management authority manages may be taken
        /// over: true or false.
        #[arg(long, value_name = "BOOL", group = "change")]
        allow_takeover: Option<bool>,
        /// Whether devices whose registry says domain controller are
        /// managed: true or false (off by default).
        #[arg(long, value_name = "BOOL", group = "change")]
        manage_domain_controllers: Option<bool>,
        /// Show which devices would enter or leave the enforcement scope and
        /// which settings would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the policy-signing key agents verify policies with.
    PolicyKey,
    /// Replace the policy-signing key. Enrolled devices move to the new key
    /// at their next policy, announced with the old one; no device has to
    /// be onboarded again, and the old secret key is destroyed.
    RotatePolicyKey,
}

fn parse_enforcement(s: &str) -> Result<(Platform, Enforcement), String> {
    let (platform, mode) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PLATFORM=MODE, e.g. linux=tagged; got {s:?}"))?;
    let platform = Platform::parse(platform.trim()).ok_or_else(|| {
        format!(
            "unknown platform {platform:?}; expected one of {}",
            Platform::expected()
        )
    })?;
    let mode = Enforcement::parse(mode.trim()).ok_or_else(|| {
        format!(
            "unknown enforcement {mode:?}; expected one of {}",
            Enforcement::expected()
        )
    })?;
    Ok((platform, mode))
}

fn parse_conflict_policy(s: &str) -> Result<ConflictPolicy, String> {
    ConflictPolicy::parse(s).ok_or_else(|| {
        format!(
            "unknown conflict policy; expected one of {}",
            ConflictPolicy::expected()
        )
    })
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let tenant: TenantView = match args.command {
        Command::PolicyKey => {
            let key: PolicyKeyView = client.get(&["tenant", "policy-key"]).await?;
            return print_policy_key(&key, args.output, "");
        }
        Command::RotatePolicyKey => {
            let key: PolicyKeyView = client
                .post(&["tenant", "policy-key", "rotate"], &serde_json::json!({}))
                .await?;
            return print_policy_key(
                &key,
                args.output,
                "Rotated. Devices take the new key with their next policy; nothing to re-onboard.\n",
            );
        }
        Command::Show => client.get(&["tenant"]).await?,
        Command::Set {
            enforcement,
            pilot_tag,
            conflict_policy,
            allow_takeover,
            manage_domain_controllers,
            dry_run,
        } => {
            // Only the fields given are sent: the server keeps the others.
            let mut body = Map::new();
            if !enforcement.is_empty() {
                let scope: BTreeMap<&str, &str> = enforcement
                    .iter()
                    .map(|(p, e)| (p.as_str(), e.as_str()))
                    .collect();
                body.insert("enforcement".into(), serde_json::to_value(scope)?);
            }
            if let Some(tag) = pilot_tag {
                body.insert("pilot_tag".into(), Value::from(tag));
            }
            if let Some(policy) = conflict_policy {
                body.insert("conflict_policy".into(), Value::from(policy.as_str()));
            }
            if let Some(allow) = allow_takeover {
                body.insert("allow_takeover".into(), Value::from(allow));
            }
            if let Some(manage) = manage_domain_controllers {
                body.insert("manage_domain_controllers".into(), Value::from(manage));
            }
            if dry_run {
                let preview: PreviewResponse = client
                    .post(
                        &["preview"],
                        &serde_json::json!({"changes": [
                            {"op": "put", "kind": "tenant_settings", "document": body}
                        ]}),
                    )
                    .await?;
                match args.output {
                    Format::Json => render::print_json(&preview)?,
                    Format::Table => print!("{}", impact_text(&preview)),
                }
                return Ok(ExitCode::SUCCESS);
            }
            // Based on the settings as they are now: a change someone else
            // makes in between is refused, not overwritten.
            let current: TenantView = client.get(&["tenant"]).await?;
            client
                .put_if_match(
                    &["tenant", "settings"],
                    &Value::Object(body),
                    current.settings_version,
                )
                .await?
        }
    };
    match args.output {
        Format::Json => render::print_json(&tenant)?,
        Format::Table => print!("{}", describe(&tenant)),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_policy_key(key: &PolicyKeyView, output: Format, note: &str) -> Result<ExitCode> {
    match output {
        Format::Json => render::print_json(key)?,
        Format::Table => {
            let rows = vec![
                vec!["policy key".to_string(), key.key.clone()],
                vec!["rotations".to_string(), key.generation.to_string()],
            ];
            print!("{}{note}", render::table(&["SETTING", "VALUE"], &rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a tenant change would do, for `--dry-run`.
fn impact_text(p: &PreviewResponse) -> String {
    let entering = p
        .devices
        .iter()
        .filter(|d| !d.managed_before && d.managed_after)
        .count();
    let leaving = p
        .devices
        .iter()
        .filter(|d| d.managed_before && !d.managed_after)
        .count();
    let mut out = format!(
        "{} would become managed, {} would stop being managed, {} in all would change\n",
        render::count(entering, "device"),
        render::count(leaving, "device"),
        render::count(p.devices.len(), "device"),
    );
    for d in &p.devices {
        out.push_str(&render::device_impact(d));
    }
    out.push_str("(dry run: nothing was changed)\n");
    out
}

fn describe(t: &TenantView) -> String {
    let s = &t.settings;
    let scope: Vec<String> = s
        .enforcement
        .iter()
        .map(|(p, e)| format!("{p}={e}"))
        .collect();
    let rows = vec![
        vec!["tenant".to_string(), t.name.clone()],
        vec!["id".to_string(), t.id.clone()],
        vec!["enforcement".to_string(), scope.join("\n")],
        vec!["pilot tag".to_string(), s.pilot_tag.clone()],
        vec!["conflict policy".to_string(), s.conflict_policy.clone()],
        vec!["allow takeover".to_string(), s.allow_takeover.to_string()],
        vec![
            "manage domain controllers".to_string(),
            s.manage_domain_controllers.to_string(),
        ],
        vec![
            "default rollout".to_string(),
            s.default_rollout
                .as_ref()
                .map_or("none (everywhere at once)".to_string(), |r| {
                    serde_json::to_string(r).unwrap_or_default()
                }),
        ],
    ];
    render::table(&["SETTING", "VALUE"], &rows)
}
