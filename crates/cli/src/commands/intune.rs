//! `rampart import intune` and `rampart export intune`: Microsoft Intune
//! settings catalog policies (Graph JSON) to policy-as-code YAML and back.
//!
//! The mapping itself is `rampart_core::intune`; this module reads and
//! writes the files. Output is all or nothing: any unreadable or
//! unrecognised input file stops the run before anything is written, and the
//! output directory appears only once every file in it is complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use rampart_core::catalog::Catalog;
use rampart_core::documents::load_documents;
use rampart_core::intune::{export_policy, import_policy, policies_in, with_assignments, Imported};
use rampart_core::names::name_key;
use rampart_policy_files::{read_documents, write_new_directory};
use serde::Serialize;
use serde_json::Value;

use crate::Format;

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// Intune endpoint security / settings catalog policies exported from
    /// Microsoft Graph (`deviceManagement/configurationPolicies` with
    /// settings and assignments), to Rampart policy YAML.
    Intune(ImportArgs),
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Export files (one policy, a JSON array of policies, or a Graph list
    /// response) or directories of `.json` files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The directory to create with the YAML files; it must not exist or be empty.
    #[arg(long)]
    pub out: PathBuf,
    /// A YAML or JSON map from Entra group id to Rampart group name.
    #[arg(long)]
    pub groups: Option<PathBuf>,
    /// Fail when any setting cannot be mapped.
    #[arg(long)]
    pub strict: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(clap::Subcommand)]
pub enum ExportCommand {
    /// Rampart policy files to Graph JSON bodies for
    /// `POST /deviceManagement/configurationPolicies` (and their `/assign`).
    Intune(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A directory of policy YAML files, or one file.
    pub dir: PathBuf,
    /// The directory to create with the JSON files; it must not exist or be empty.
    #[arg(long)]
    pub out: PathBuf,
    /// A YAML or JSON map from Entra group id to Rampart group name (the
    /// same file `import` takes).
    #[arg(long)]
    pub groups: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

pub fn run_import(cmd: ImportCommand) -> Result<ExitCode> {
    let ImportCommand::Intune(args) = cmd;
    import(args)
}

pub fn run_export(cmd: ExportCommand) -> Result<ExitCode> {
    let ExportCommand::Intune(args) = cmd;
    export(args)
}

/// Entra group id (lower case) → Rampart group name.
fn group_mapping(path: Option<&Path>) -> Result<BTreeMap<String, String>> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let map: BTreeMap<String, String> = serde_yaml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: expected a map from Entra group id to group name: {e}",
            path.display()
        )
    })?;
    Ok(map
        .into_iter()
        .map(|(id, name)| (id.trim().to_ascii_lowercase(), name.trim().to_string()))
        .collect())
}

/// Every input file, directories expanded to their `.json` files in path
/// order. `*.assign.json` files are the `/assign` bodies `export` writes and
/// are read with the policy of the same stem.
fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            for entry in
                fs::read_dir(input).with_context(|| format!("cannot read {}", input.display()))?
            {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if path.is_file() && name.ends_with(".json") && !name.ends_with(".assign.json") {
                    found.push(path);
                }
            }
            if found.is_empty() {
                bail!("{} holds no .json files", input.display());
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct FileReport<'a> {
    file: String,
    #[serde(flatten)]
    imported: &'a Imported,
    coverage: f64,
}

fn import(args: ImportArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let groups = group_mapping(args.groups.as_deref())?;
    let mut failures = Vec::new();
    let mut results: Vec<(String, Imported)> = Vec::new();
    for file in input_files(&args.inputs)? {
        let shown = file.display().to_string();
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{shown}: cannot read: {e}"));
                continue;
            }
        };
        let policies = match policies_in(&text) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let assign = file
            .to_str()
            .and_then(|s| s.strip_suffix(".json"))
            .map(|stem| PathBuf::from(format!("{stem}.assign.json")))
            .filter(|p| p.is_file());
        let assign: Option<Value> = match assign {
            Some(p) => match fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(v) => Some(v),
                Err(e) => {
                    failures.push(format!("{}: {e}", p.display()));
                    continue;
                }
            },
            None => None,
        };
        for (i, policy) in policies.iter().enumerate() {
            let policy = match &assign {
                Some(a) if policies.len() == 1 => with_assignments(policy, a),
                _ => policy.clone(),
            };
            match import_policy(&policy, catalog, &groups) {
                Ok(imported) => results.push((shown.clone(), imported)),
                Err(e) if policies.len() == 1 => failures.push(format!("{shown}: {e}")),
                Err(e) => failures.push(format!("{shown}: policy [{i}]: {e}")),
            }
        }
    }
    // Two Intune policies must not become one Rampart name.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (file, imported) in &results {
        for p in &imported.policies {
            let name = p["name"].as_str().unwrap_or_default();
            if let Some(other) = names.insert(name_key(name), file.clone()) {
                failures.push(format!(
                    "{file}: policy name {name:?} is also imported from {other}; rename one in Intune or import them separately"
                ));
            }
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        eprintln!(
            "error: {} input problem{}; nothing was written",
            failures.len(),
            if failures.len() == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    let unmapped: usize = results.iter().map(|(_, r)| r.total - r.mapped).sum();

    let files = import_files(&results)?;
    match args.output {
        Format::Json => {
            let reports: Vec<FileReport> = results
                .iter()
                .map(|(file, imported)| FileReport {
                    file: file.clone(),
                    imported,
                    coverage: (imported.coverage() * 10.0).round() / 10.0,
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        Format::Table => print!("{}", import_table(&results)),
    }
    if args.strict && unmapped > 0 {
        eprintln!(
            "error: {unmapped} setting(s) not mapped and --strict is set; nothing was written"
        );
        return Ok(ExitCode::FAILURE);
    }
    write_new_directory(&args.out, &files)?;
    if args.output == Format::Table {
        println!(
            "\nwrote {} file{} to {}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A file name from a policy name: letters, digits, `-` and `_` only.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "policy".into()
    } else {
        s
    }
}

/// The documents of a policy, keys in the order people read them.
fn policy_yaml(policy: &Value) -> Result<String> {
    let mut map = serde_yaml::Mapping::new();
    for key in [
        "kind",
        "name",
        "description",
        "family",
        "platform",
        "settings",
        "assignments",
    ] {
        if let Some(v) = policy.get(key) {
            map.insert(
                serde_yaml::Value::from(key),
                serde_yaml::to_value(v).context("policy to YAML")?,
            );
        }
    }
    Ok(serde_yaml::to_string(&map)?)
}

fn import_files(results: &[(String, Imported)]) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups = std::collections::BTreeSet::new();
    for (file, imported) in results {
        if imported.policies.is_empty() {
            continue;
        }
        let mut text = format!(
            "# Imported from Intune policy {:?} ({file}).\n",
            imported.source
        );
        for (i, p) in imported.policies.iter().enumerate() {
            if i > 0 {
                text.push_str("---\n");
            }
            text.push_str(&policy_yaml(p)?);
        }
        let base = slug(&imported.source).to_ascii_lowercase();
        let n = taken.entry(base.clone()).or_insert(0);
        *n += 1;
        let name = if *n == 1 {
            format!("{base}.yaml")
        } else {
            format!("{base}-{n}.yaml")
        };
        files.push((name, text));
        groups.extend(imported.groups.iter().cloned());
    }
    if !groups.is_empty() {
        let mut text = String::from(
            "# Groups the imported assignments use. They are empty static groups:\n# give each members or a rule, or delete this file if the groups exist already.\n",
        );
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                text.push_str("---\n");
            }
            let doc = serde_json::json!({"kind": "Group", "name": g, "members": []});
            text.push_str(&serde_yaml::to_string(&doc)?);
        }
        files.push(("groups.yaml".into(), text));
    }
    Ok(files)
}

fn import_table(results: &[(String, Imported)]) -> String {
    let mut out = String::new();
    let (mut mapped, mut total) = (0, 0);
    for (file, r) in results {
        mapped += r.mapped;
        total += r.total;
        let names: Vec<String> = r
            .policies
            .iter()
            .map(|p| {
                format!(
                    "{} ({}, {})",
                    p["name"].as_str().unwrap_or_default(),
                    p["family"].as_str().unwrap_or_default(),
                    p["platform"].as_str().unwrap_or_default()
                )
            })
            .collect();
        out.push_str(&format!(
            "{} ({file})\n  → {}\n",
            r.source,
            if names.is_empty() {
                "no policy (no setting mapped)".to_string()
            } else {
                names.join(", ")
            }
        ));
        for s in &r.settings {
            match (&s.setting, &s.reason) {
                (Some(setting), _) => {
                    out.push_str(&format!("  mapped      {} → {setting}\n", s.intune_id))
                }
                (None, Some(reason)) => {
                    out.push_str(&format!("  NOT MAPPED  {}: {reason}\n", s.intune_id))
                }
                (None, None) => {}
            }
        }
        for w in &r.warnings {
            out.push_str(&format!("  warning     {w}\n"));
        }
        out.push_str(&format!(
            "  coverage    {} of {} settings mapped ({:.1} %)\n\n",
            r.mapped,
            r.total,
            r.coverage()
        ));
    }
    let pct = if total == 0 {
        100.0
    } else {
        mapped as f64 * 100.0 / total as f64
    };
    out.push_str(&format!(
        "total: {mapped} of {total} settings mapped ({pct:.1} %) from {} polic{}\n",
        results.len(),
        if results.len() == 1 { "y" } else { "ies" }
    ));
    out
}

#[derive(Serialize)]
struct ExportReport {
    policy: String,
    file: String,
    skipped: Vec<rampart_core::intune::SettingOutcome>,
    warnings: Vec<String>,
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let ids: BTreeMap<String, String> = group_mapping(args.groups.as_deref())?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    let docs = read_documents(&args.dir)?;
    let bundle = match load_documents(&docs, catalog) {
        Ok(b) => b,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "error: {} problem(s) found; nothing was exported",
                errors.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut files = Vec::new();
    let mut reports = Vec::new();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    for policy in &bundle.policies {
        let exported = export_policy(policy, catalog, &ids);
        let base = slug(&policy.name).to_ascii_lowercase();
        let n = taken.entry(base.clone()).or_insert(0);
        *n += 1;
        let stem = if *n == 1 { base } else { format!("{base}-{n}") };
        files.push((
            format!("{stem}.json"),
            serde_json::to_string_pretty(&exported.body)? + "\n",
        ));
        files.push((
            format!("{stem}.assign.json"),
            serde_json::to_string_pretty(&exported.assign)? + "\n",
        ));
        reports.push(ExportReport {
            policy: exported.policy,
            file: format!("{stem}.json"),
            skipped: exported.skipped,
            warnings: exported.warnings,
        });
    }
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        Format::Table => {
            for r in &reports {
                println!("{} → {}", r.policy, r.file);
                for s in &r.skipped {
                    println!(
                        "  NOT EXPORTED  {}: {}",
                        s.setting.as_deref().unwrap_or_default(),
                        s.reason.as_deref().unwrap_or_default()
                    );
                }
                for w in &r.warnings {
                    println!("  warning       {w}");
                }
            }
        }
    }
    write_new_directory(&args.out, &files)?;
    if args.output == Format::Table {
        println!("\nwrote {} file(s) to {}", files.len(), args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}
