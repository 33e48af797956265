//! `rampart plan DIR`: resolve policy-as-code files offline.
//!
//! Reads every YAML file under DIR, checks the whole set against the catalog
//! built into this binary, and resolves each `kind: Device` with the same core
//! the server uses. Conflicts are findings, not failures: the exit code is
//! non-zero only when the input is invalid. `-o json` streams: each
//! device is resolved as it is written.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rampart_core::catalog::Catalog;
use rampart_core::documents::{load_documents, unknown_members, Bundle};
use rampart_core::model::{Device, TenantSettings};
use rampart_core::resolve::{resolve, Resolution};
use serde::Serialize;

use crate::render;
use crate::Format;
use rampart_policy_files::read_documents;

#[derive(clap::Args)]
pub struct Args {
    /// A directory of YAML documents (Policy, Group, Device, TenantSettings), or one file.
    pub dir: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Serialize)]
struct Plan<'a> {
    devices: Resolved<'a>,
}

/// The devices' resolutions, computed one at a time as they are written:
/// `-o json` streams, holding neither every resolution nor the whole text
/// in memory.
struct Resolved<'a> {
    devices: &'a [Device],
    bundle: &'a Bundle,
    tenant: &'a TenantSettings,
    catalog: &'a Catalog,
}

impl Serialize for Resolved<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.devices.iter().map(|d| {
            resolve(
                d,
                &self.bundle.groups,
                &self.bundle.policies,
                self.tenant,
                self.catalog,
            )
        }))
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let files = read_documents(&args.dir)?;
    let catalog = Catalog::builtin();
    let bundle = match load_documents(&files, catalog) {
        Ok(b) => b,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "error: {} problem{} found; nothing was planned",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    for (group, member) in unknown_members(&bundle) {
        eprintln!("warning: group {group:?} lists {member:?}, which is not among the devices");
    }
    let tenant = bundle.tenant.clone().unwrap_or_default();
    let mut devices = bundle.devices.clone();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    match args.output {
        Format::Json => {
            let plan = Plan {
                devices: Resolved {
                    devices: &devices,
                    bundle: &bundle,
                    tenant: &tenant,
                    catalog,
                },
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
            out.flush()?;
        }
        Format::Table => {
            let resolutions: Vec<Resolution> = devices
                .iter()
                .map(|d| resolve(d, &bundle.groups, &bundle.policies, &tenant, catalog))
                .collect();
            print!("{}", table(&devices, &resolutions));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(devices: &[rampart_core::model::Device], resolutions: &[Resolution]) -> String {
    let mut out = String::new();
    if devices.is_empty() {
        out.push_str(
            "No devices in the input: add `kind: Device` documents to see what each would get.\n",
        );
    }
    let mut conflicts = 0;
    let mut managed = 0;
    for (device, r) in devices.iter().zip(resolutions) {
        let version = if device.os_version.is_empty() {
            String::new()
        } else {
            format!(" {}", device.os_version)
        };
        out.push_str(&format!(
            "\n{} ({}{}, {})",
            r.device, device.os, version, device.device_type
        ));
        if !r.managed {
            out.push_str(&format!(
                " — not managed: {}\n",
                r.reason.as_deref().unwrap_or("")
            ));
            continue;
        }
        managed += 1;
        conflicts += r.conflicts.len();
        out.push('\n');
        if r.settings.is_empty() && r.conflicts.is_empty() && r.not_applicable.is_empty() {
            out.push_str("  no policy targets this device\n");
            continue;
        }
        let mut rows: Vec<Vec<String>> = r
            .settings
            .iter()
            .map(|s| {
                // Merged settings show each item next to the policies it
                // came from; a scalar shows its value and every source.
                if s.entries.is_empty() {
                    vec![
                        s.setting.clone(),
                        render::cell(&s.value),
                        s.sources.join(", "),
                    ]
                } else {
                    let values: Vec<String> = s
                        .entries
                        .iter()
                        .map(|e| entry_text(&e.key, &e.value))
                        .collect();
                    let sources: Vec<String> =
                        s.entries.iter().map(|e| e.sources.join(", ")).collect();
                    vec![s.setting.clone(), values.join("\n"), sources.join("\n")]
                }
            })
            .collect();
        for c in &r.conflicts {
            let detail: Vec<String> = c
                .policies
                .iter()
                .zip(&c.values)
                .map(|(p, v)| format!("{p}={}", render::value(v)))
                .collect();
            let name = match &c.key {
                Some(k) => format!("{}[{k}]", c.setting),
                None => c.setting.clone(),
            };
            rows.push(vec![
                name,
                "CONFLICT (not applied)".into(),
                detail.join("\n"),
            ]);
        }
        for n in &r.not_applicable {
            let name = match &n.key {
                Some(k) => format!("{}[{k}]", n.setting),
                None => n.setting.clone(),
            };
            rows.push(vec![
                name,
                format!("NOT APPLICABLE: {}", n.reason),
                n.policies.join("\n"),
            ]);
        }
        for line in render::table(&["SETTING", "VALUE", "SOURCES"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!(
        "\n{} device{}: {managed} managed, {} not managed; {conflicts} conflict{}\n",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" },
        devices.len() - managed,
        if conflicts == 1 { "" } else { "s" },
    ));
    out
}

/// One merged entry: a list item as it is, a keyed entry as `key=value` or,
/// for a firewall rule, its name and effect.
fn entry_text(key: &str, value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(v) if v == key => v.clone(),
        serde_json::Value::Object(_) => {
            render::cell(&serde_json::Value::Array(vec![value.clone()]))
        }
        other => format!("{key}={}", render::value(other)),
    }
}
