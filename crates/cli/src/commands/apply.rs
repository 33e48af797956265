//! `rampart apply -f DIR`: make the server's policies, groups and tenant
//! settings what a directory of policy-as-code files says.
//!
//! The files are checked locally first, with the same core the server uses,
//! so mistakes are reported with file and line before anything is sent. The
//! server then computes the difference and writes it in one transaction (or
//! nothing): applying the same files twice changes nothing the second time.
//! Policies and groups the files do not hold are kept and listed; only
//! `--prune` deletes them, so a directory holding one new policy cannot wipe
//! a tenant by accident.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use rampart_core::catalog::Catalog;
use rampart_core::documents::{load_documents, load_partial_documents};
use rampart_policy_files::read_documents;
use rampart_proto::{ApplyRequest, ApplyResponse, ObjectRef};

use crate::client::{self, ApiError, Client, Target};
use crate::render;
use crate::yaml::{self, Document};
use crate::Format;

#[derive(clap::Args)]
pub struct Args {
    /// A directory of YAML documents (Policy, Group, TenantSettings), or one
    /// file. `kind: Device` documents are skipped: devices enroll through
    /// rampart-agent.
    #[arg(short, long, value_name = "DIR")]
    pub file: PathBuf,
    /// Show what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete the policies and groups on the server that the files do
    /// not hold: the files become the whole desired state.
    #[arg(long)]
    pub prune: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

pub fn run(target: &Target, args: Args) -> Result<ExitCode> {
    let files = read_documents(&args.file)?;
    let checked = if args.prune {
        load_documents(&files, Catalog::builtin())
    } else {
        load_partial_documents(&files, Catalog::builtin())
    };
    if let Err(errors) = checked {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!(
            "error: {} found; nothing was sent to the server",
            render::count(errors.len(), "problem")
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut documents: Vec<Document> = Vec::new();
    let mut devices = 0;
    for (file, text) in &files {
        for doc in yaml::documents(file, text)? {
            if doc.kind() == Some("Device") {
                devices += 1;
            } else {
                documents.push(doc);
            }
        }
    }
    if devices > 0 {
        eprintln!(
            "note: skipped {}: devices enroll through rampart-agent",
            render::count(devices, "Device document")
        );
    }
    if documents.is_empty() {
        // With --prune an empty request would delete every policy and
        // group; without it, it would do nothing. Either way it is far more
        // likely a wrong directory.
        bail!(
            "{} holds no Policy, Group or TenantSettings documents; nothing was sent",
            args.file.display()
        );
    }
    let request = ApplyRequest {
        documents: documents.iter().map(|d| d.value.clone()).collect(),
        dry_run: args.dry_run,
        prune: args.prune,
    };
    client::online(target, |client| async move {
        let response = send(&client, &request, &documents).await?;
        match args.output {
            Format::Json => render::print_json(&response)?,
            Format::Table => print!("{}", summary(&response, args.dry_run)),
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn send(
    client: &Client,
    request: &ApplyRequest,
    documents: &[Document],
) -> Result<ApplyResponse> {
    match client.post(&["apply"], request).await {
        Ok(r) => Ok(r),
        Err(e) => match e.downcast::<ApiError>() {
            Ok(mut api) => {
                // `documents[3].settings.x` means little to someone who
                // wrote files: say which file and line.
                for (path, _) in &mut api.details {
                    *path = locate(path, documents);
                }
                Err(api.into())
            }
            Err(e) => Err(e),
        },
    }
}

/// `documents[N].rest` → `file:line: Kind "name": rest`.
fn locate(path: &str, documents: &[Document]) -> String {
    let Some(rest) = path.strip_prefix("documents[") else {
        return path.to_string();
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return path.to_string();
    };
    match index.parse::<usize>().ok().and_then(|i| documents.get(i)) {
        Some(doc) => {
            let field = rest.trim_start_matches('.');
            if field.is_empty() {
                doc.origin()
            } else {
                format!("{}: {field}", doc.origin())
            }
        }
        None => path.to_string(),
    }
}

fn object(r: &ObjectRef) -> String {
    match r.kind.as_str() {
        "tenant_settings" => format!("tenant settings of {}", r.name),
        kind => format!("{kind} {}", r.name),
    }
}

/// The plan of an apply, as people read it.
fn summary(r: &ApplyResponse, dry_run: bool) -> String {
    let kept = kept_note(&r.kept);
    if r.created.is_empty() && r.changed.is_empty() && r.deleted.is_empty() {
        return format!("No changes.\n{kept}");
    }
    let mut out = String::new();
    for o in &r.created {
        out.push_str(&format!("+ create {}\n", object(o)));
    }
    for o in &r.changed {
        out.push_str(&format!("~ change {}\n", object(o)));
    }
    for o in &r.deleted {
        out.push_str(&format!("- delete {}\n", object(o)));
    }
    if !r.devices.is_empty() {
        out.push_str("\ndevices whose effective policy changes:\n");
        for d in &r.devices {
            out.push_str(&render::device_impact(d));
        }
    }
    out.push_str(&format!(
        "\n{} to create, {} to change, {} to delete, {} unchanged; {}\n",
        r.created.len(),
        r.changed.len(),
        r.deleted.len(),
        r.unchanged,
        match r.devices.len() {
            0 => "no device changes".to_string(),
            1 => "1 device changes".to_string(),
            n => format!("{n} devices change"),
        }
    ));
    out.push_str(&kept);
    if dry_run {
        out.push_str("(dry run: nothing was changed)\n");
    } else if r.applied {
        out.push_str("Applied.\n");
    }
    out
}

/// What stays on the server though the files leave it out.
fn kept_note(kept: &[ObjectRef]) -> String {
    if kept.is_empty() {
        return String::new();
    }
    let names: Vec<String> = kept.iter().map(object).collect();
    format!(
        "{} on the server but not in the files, kept: {}\n(apply with --prune to delete them)\n",
        render::count(kept.len(), "object"),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_point_at_files() {
        let docs = yaml::documents(
            "fleet/a.yaml",
            "kind: Group\nname: g\nrule: tag(\"x\")\n---\nkind: Policy\nname: p\n",
        )
        .unwrap();
        assert_eq!(
            locate("documents[1].settings.pua_protection", &docs),
            "fleet/a.yaml:5: Policy \"p\": settings.pua_protection"
        );
        assert_eq!(locate("documents[0]", &docs), "fleet/a.yaml:1: Group \"g\"");
        assert_eq!(locate("documents[7].name", &docs), "documents[7].name");
        assert_eq!(locate("dry_run", &docs), "dry_run");
    }

    fn named(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn what_the_files_leave_out_is_listed_as_kept() {
        let r = ApplyResponse {
            created: vec![named("policy", "new-av")],
            changed: vec![],
            deleted: vec![],
            kept: vec![named("policy", "old-fw"), named("group", "web")],
            unchanged: 0,
            devices: vec![],
            applied: true,
        };
        let text = summary(&r, false);
        assert!(text.contains("+ create policy new-av"), "{text}");
        assert!(text.contains("0 to delete"), "{text}");
        assert!(
            text.contains(
                "2 objects on the server but not in the files, kept: policy old-fw, group web"
            ),
            "{text}"
        );
        assert!(text.contains("--prune"), "{text}");
        let nothing = ApplyResponse {
            created: vec![],
            kept: vec![named("policy", "old-fw")],
            ..r
        };
        assert!(summary(&nothing, false).starts_with("No changes.\n1 object on the server"));
    }
}
