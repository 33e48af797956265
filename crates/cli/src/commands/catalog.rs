//! `rampart catalog list|show`: what each setting means and who carries it.

use std::process::ExitCode;

use anyhow::{bail, Result};
use rampart_core::catalog::{Catalog, SettingDefinition, SettingKind};
use rampart_core::model::{Family, Platform};

use crate::render;
use crate::Format;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List settings, optionally of one family and platform.
    List {
        /// Only settings allowed in this family.
        #[arg(long, value_parser = parse_family)]
        family: Option<Family>,
        /// Only settings available on this platform.
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Print the JSON Schema of policy files, generated from this catalog
    /// (`schema/policy.schema.json` in the repository is its output).
    Schema,
    /// Show one setting in full.
    Show {
        /// The setting id, e.g. real_time_protection.
        setting: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
}

fn parse_family(s: &str) -> Result<Family, String> {
    Family::parse(s)
        .ok_or_else(|| format!("unknown family; expected one of {}", Family::expected()))
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s)
        .ok_or_else(|| format!("unknown platform; expected one of {}", Platform::expected()))
}

/// Why `catalog list` found nothing: the family's settings exist, only not
/// on that platform.
fn no_match(catalog: &Catalog, family: Option<Family>, platform: Option<Platform>) -> String {
    let (Some(f), Some(p)) = (family, platform) else {
        return "no setting matches".into();
    };
    let mut elsewhere: Vec<&str> = catalog
        .iter()
        .filter(|d| d.allows_family(f))
        .flat_map(|d| d.platforms.iter().map(|p| p.as_str()))
        .collect();
    elsewhere.sort_unstable();
    elsewhere.dedup();
    format!(
        "no {} setting is available on {}; {} settings are available on: {}",
        f.as_str(),
        p.as_str(),
        f.as_str(),
        join(elsewhere.into_iter())
    )
}

pub fn run(cmd: Command) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    match cmd {
        Command::List {
            family,
            platform,
            output,
        } => {
            let defs: Vec<&SettingDefinition> = catalog
                .iter()
                .filter(|d| family.is_none_or(|f| d.allows_family(f)))
                .filter(|d| platform.is_none_or(|p| d.allows_platform(p)))
                .collect();
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&defs)?),
                Format::Table if defs.is_empty() => {
                    println!("{}", no_match(catalog, family, platform));
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = defs
                        .iter()
                        .map(|d| {
                            vec![
                                d.id.clone(),
                                join(d.families.iter().map(|f| f.as_str())),
                                join(d.platforms.iter().map(|p| p.as_str())),
                                type_text(d),
                                if d.deprecated.is_some() {
                                    "deprecated".into()
                                } else {
                                    d.title.clone()
                                },
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        render::table(
                            &["SETTING", "FAMILIES", "PLATFORMS", "TYPE", "TITLE"],
                            &rows
                        )
                    );
                }
            }
        }
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&rampart_core::schema::policy_schema(catalog))?
            );
        }
        Command::Show { setting, output } => {
            let Some(def) = catalog.get(&setting) else {
                let near: Vec<&str> = catalog
                    .iter()
                    .map(|d| d.id.as_str())
                    .filter(|id| id.contains(setting.as_str()) || setting.contains(id))
                    .collect();
                if near.is_empty() {
                    bail!("unknown setting {setting:?}; `rampart catalog list` shows them all");
                }
                bail!(
                    "unknown setting {setting:?}; did you mean {}?",
                    near.join(", ")
                );
            };
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(def)?),
                Format::Table => print!("{}", describe(def)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// The type in one short phrase: `bool`, `enum(off|audit|block)`, `int 1..64`.
fn type_text(d: &SettingDefinition) -> String {
    match d.kind {
        SettingKind::Bool => "bool".into(),
        SettingKind::Enum => format!("enum({})", d.values.join("|")),
        SettingKind::Int => format!(
            "int {}..{}",
            d.min.map(|v| v.to_string()).unwrap_or_default(),
            d.max.map(|v| v.to_string()).unwrap_or_default()
        ),
        SettingKind::String => "string".into(),
        SettingKind::StringList => match d.item {
            Some(item) => format!(
                "list of {}",
                serde_json::to_value(item)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            None => "list".into(),
        },
        SettingKind::FirewallRules => "firewall rules".into(),
        SettingKind::AsrRules => format!("ASR rule id → {}", d.values.join("|")),
    }
}

fn describe(d: &SettingDefinition) -> String {
    let mut s = format!("{} — {}\n\n{}\n\n", d.id, d.title, d.description);
    if let Some(reason) = &d.deprecated {
        s.push_str(&format!("DEPRECATED: {reason}\n\n"));
    }
    let merge = serde_json::to_value(d.merge)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let removal = serde_json::to_value(d.removal)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut rows = vec![
        vec![
            "families".to_string(),
            join(d.families.iter().map(|f| f.as_str())),
        ],
        vec![
            "platforms".to_string(),
            join(d.platforms.iter().map(|p| p.as_str())),
        ],
        vec!["type".to_string(), type_text(d)],
        vec![
            "default".to_string(),
            d.default.as_ref().map_or("-".into(), render::value),
        ],
        vec!["merge".to_string(), merge],
        vec![
            "when unassigned".to_string(),
            match removal.as_str() {
                "revert" => "reverts to the default".into(),
                _ => "keeps the last value".into(),
            },
        ],
    ];
    if let Some(max) = d.max_items {
        rows.push(vec!["at most".into(), format!("{max} per policy")]);
    }
    if !d.security_order.is_empty() {
        rows.push(vec![
            "security order".into(),
            d.security_order
                .iter()
                .map(render::value)
                .collect::<Vec<_>>()
                .join(" < "),
        ]);
    }
    if !d.device_types.is_empty() {
        rows.push(vec!["device types".into(), d.device_types.join(", ")]);
    }
    s.push_str(&render::table(&["PROPERTY", "VALUE"], &rows));
    if !d.backends.is_empty() {
        s.push('\n');
        let rows: Vec<Vec<String>> = d
            .backends
            .iter()
            .map(|b| {
                vec![
                    b.backend.as_str().to_string(),
                    join(b.platforms.iter().map(|p| p.as_str())),
                    b.target.clone(),
                    b.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        s.push_str(&render::table(
            &["BACKEND", "PLATFORMS", "TARGET", "VALUES"],
            &rows,
        ));
    }
    if !d.intune.is_empty() {
        s.push('\n');
        let rows: Vec<Vec<String>> = d
            .intune
            .iter()
            .map(|m| {
                let options = m
                    .options
                    .iter()
                    .map(|(o, v)| format!("_{o} → {}", render::value(v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![
                    m.id.clone(),
                    join(m.platforms.iter().map(|p| p.as_str())),
                    options,
                ]
            })
            .collect();
        s.push_str(&render::table(
            &["INTUNE ID", "PLATFORMS", "OPTIONS"],
            &rows,
        ));
    }
    if !d.keys.is_empty() {
        s.push('\n');
        let rows: Vec<Vec<String>> = d
            .keys
            .iter()
            .map(|k| {
                let mut notes = Vec::new();
                if !k.excluded_values.is_empty() {
                    notes.push(format!("not: {}", k.excluded_values.join(",")));
                }
                if !k.device_types.is_empty() {
                    notes.push(format!("only: {}", k.device_types.join(",")));
                }
                vec![k.key.clone(), k.title.clone(), notes.join("; ")]
            })
            .collect();
        s.push_str(&render::table(&["KEY", "TITLE", "NOTES"], &rows));
    }
    s
}
