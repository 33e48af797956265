//! Policy as code: reading a set of YAML files (several documents each) into
//! checked policies, groups, devices and tenant settings.
//!
//! The caller reads the files (the core does no IO) and passes their names and
//! texts. Every problem in every file is reported at once, each naming the
//! file, the line, the object and the field; nothing is returned unless the
//! whole set is valid, so a plan or an apply never works on half an input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::catalog::Catalog;
use crate::error::FieldError;
use crate::model::{Device, Group, Membership, Policy, TenantSettings, ALL_DEVICES};
use crate::validate::{
    device_from_json, group_from_json, policy_from_json, tenant_settings_from_json,
};

/// The kinds of document a policy directory may hold.
pub const KINDS: &[&str] = &["Policy", "Group", "Device", "TenantSettings"];

/// A checked set of documents.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    pub policies: Vec<Policy>,
    pub groups: Vec<Group>,
    pub devices: Vec<Device>,
    /// Present when one of the documents was `kind: TenantSettings`.
    pub tenant: Option<TenantSettings>,
}

/// One problem in one document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DocumentError {
    pub file: String,
    /// 1-based line of the field when it could be found, else of the document.
    pub line: usize,
    /// `Policy "linux-av"`, or empty when the document has no usable name.
    pub object: String,
    pub error: FieldError,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.object.is_empty() {
            write!(f, "{}: ", self.object)?;
        }
        write!(f, "{}", self.error)
    }
}

/// One YAML document of a file, with where it starts.
struct RawDocument<'a> {
    file: &'a str,
    /// 1-based line of the document's first line.
    first_line: usize,
    text: String,
}

/// Splits a file at `---` lines. A `---` at column 0 can only be a document
/// marker (block scalar content is indented), so this is exact, and it lets
/// errors carry real line numbers.
fn split_documents<'a>(file: &'a str, text: &str) -> Vec<RawDocument<'a>> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            docs.push(RawDocument {
                file,
                first_line,
                text: std::mem::take(&mut current),
            });
            // The next document's text starts on the marker's own line (with
            // whatever follows the marker), so its first line is the marker's.
            first_line = i + 1;
            current.push_str(line[3..].trim_start());
            current.push('\n');
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push(RawDocument {
        file,
        first_line,
        text: current,
    });
    docs
}

/// Whether a document holds nothing but comments and blank lines.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "..."
    })
}

/// Finds the line of a field path inside a document by looking for each named
/// segment as a mapping key, in order. Falls back to the document's start.
fn line_of(doc: &RawDocument<'_>, path: &str) -> usize {
    let segments = path
        .split(['.', '['])
        .map(|s| s.trim_end_matches(']'))
        .filter(|s| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()));
    let lines: Vec<&str> = doc.text.lines().collect();
    let mut at = 0;
    let mut found = None;
    for segment in segments {
        let key_at = lines.iter().enumerate().skip(at).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(segment)
                .or_else(|| {
                    t.strip_prefix('"')
                        .and_then(|t| t.strip_prefix(segment))
                        .and_then(|t| t.strip_prefix('"'))
                })
                .is_some_and(|rest| rest.starts_with(':'))
        });
        match key_at {
            Some((i, _)) => {
                at = i;
                found = Some(i);
            }
            None => break,
        }
    }
    doc.first_line + found.unwrap_or(0)
}

/// Reads and checks every document of every file: the files are the whole
/// desired state, so every group a policy is assigned to must be in them.
pub fn load_documents(
    files: &[(String, String)],
    catalog: &Catalog,
) -> Result<Bundle, Vec<DocumentError>> {
    load(files, catalog, true)
}

/// As [`load_documents`], for files that add to what a server already
/// holds (`rampart apply` without `--prune`): a policy may be assigned to a
/// group the files do not define, which the server then checks.
pub fn load_partial_documents(
    files: &[(String, String)],
    catalog: &Catalog,
) -> Result<Bundle, Vec<DocumentError>> {
    load(files, catalog, false)
}

fn load(
    files: &[(String, String)],
    catalog: &Catalog,
    groups_complete: bool,
) -> Result<Bundle, Vec<DocumentError>> {
    let mut errors = Vec::new();
    let mut bundle = Bundle::default();
    // Where each named object was first defined, for duplicate and reference
    // errors: (kind, name) → (file, line).
    let mut defined: BTreeMap<(&'static str, String), (String, usize)> = BTreeMap::new();
    // Assignments to check once every group is known: (doc, policy, field path, group).
    let mut references: Vec<(String, usize, String, String, String)> = Vec::new();
    let mut tenant_at: Option<(String, usize)> = None;
    // Group names exactly as written, valid or not, so that a broken group is
    // reported once rather than again at every policy that assigns it.
    let mut group_names: BTreeSet<String> = BTreeSet::new();

    for (file, text) in files {
        for doc in split_documents(file, text) {
            if is_blank(&doc.text) {
                continue;
            }
            let report = |errors: &mut Vec<DocumentError>, object: &str, e: FieldError| {
                errors.push(DocumentError {
                    file: doc.file.to_string(),
                    line: line_of(&doc, &e.path),
                    object: object.to_string(),
                    error: e,
                });
            };
            let value = match parse_yaml(&doc.text) {
                Ok(v) => v,
                Err((line, message)) => {
                    errors.push(DocumentError {
                        file: doc.file.to_string(),
                        line: doc.first_line + line.saturating_sub(1),
                        object: String::new(),
                        error: FieldError::new("", format!("invalid YAML: {message}")),
                    });
                    continue;
                }
            };
            let Some(obj) = value.as_object() else {
                report(
                    &mut errors,
                    "",
                    FieldError::new("", "a document must be a map with a `kind` field"),
                );
                continue;
            };
            let kind = match obj.get("kind").and_then(Value::as_str) {
                Some(k) if KINDS.contains(&k) => k,
                Some(k) => {
                    report(
                        &mut errors,
                        "",
                        FieldError::new(
                            "kind",
                            format!("unknown kind {k:?}; expected one of {}", KINDS.join(", ")),
                        ),
                    );
                    continue;
                }
                None => {
                    report(
                        &mut errors,
                        "",
                        FieldError::new(
                            "kind",
                            format!("is required; one of {}", KINDS.join(", ")),
                        ),
                    );
                    continue;
                }
            };
            let name = obj
                .get("name")
                .and_then(Value::as_str)
                .map(|n| n.trim().to_string());
            let object = match &name {
                Some(n) => format!("{kind} {n:?}"),
                None => kind.to_string(),
            };
            let mut body = obj.clone();
            body.remove("kind");
            let body = Value::Object(body);
            let start = line_of(&doc, "");

            let checked: Result<(), Vec<FieldError>> = match kind {
                "Policy" => {
                    // Assignments are checked against the groups even when the
                    // policy has other mistakes: every problem at once.
                    for field in ["include", "exclude"] {
                        let targets = body
                            .get("assignments")
                            .and_then(|a| a.get(field))
                            .and_then(Value::as_array);
                        for g in targets.into_iter().flatten().filter_map(Value::as_str) {
                            let path = format!("assignments.{field}");
                            references.push((
                                doc.file.to_string(),
                                line_of(&doc, &path),
                                object.clone(),
                                path,
                                g.trim().to_string(),
                            ));
                        }
                    }
                    policy_from_json(&body, catalog, 1, 0).map(|p| bundle.policies.push(p))
                }
                "Group" => group_from_json(&body).map(|g| bundle.groups.push(g)),
                "Device" => device_from_json(&body).map(|d| bundle.devices.push(d)),
                _ => {
                    if let Some((file, line)) = &tenant_at {
                        Err(vec![FieldError::new(
                            "kind",
                            format!("only one TenantSettings document is allowed; the first is at {file}:{line}"),
                        )])
                    } else {
                        tenant_at = Some((doc.file.to_string(), start));
                        tenant_settings_from_json(&body, &TenantSettings::default())
                            .map(|t| bundle.tenant = Some(t))
                    }
                }
            };
            if let Err(field_errors) = checked {
                for e in field_errors {
                    report(&mut errors, &object, e);
                }
            }
            if let (Some(name), "Group") = (&name, kind) {
                group_names.insert(name.clone());
            }
            if let (Some(name), "Policy" | "Group" | "Device") = (name, kind) {
                let key = (kind_key(kind), name.to_lowercase());
                if let Some((file, line)) = defined.get(&key) {
                    report(
                        &mut errors,
                        &object,
                        FieldError::new(
                            "name",
                            format!("duplicate {kind} name; already defined at {file}:{line}"),
                        ),
                    );
                } else {
                    defined.insert(key, (doc.file.to_string(), start));
                }
            }
        }
    }

    for (file, line, object, field, group) in references {
        let known = group_names.contains(&group);
        let all_devices = group == ALL_DEVICES && field.ends_with("include");
        if groups_complete && !(known || all_devices) {
            errors.push(DocumentError {
                file,
                line,
                object,
                error: FieldError::new(
                    field,
                    format!("unknown group {group:?}; define it with `kind: Group` or use {ALL_DEVICES}"),
                ),
            });
        }
    }

    if errors.is_empty() {
        Ok(bundle)
    } else {
        errors.sort();
        errors.dedup();
        Err(errors)
    }
}

fn kind_key(kind: &str) -> &'static str {
    match kind {
        "Policy" => "Policy",
        "Group" => "Group",
        _ => "Device",
    }
}

/// Parses one YAML document into JSON, or the 1-based line and message of the
/// first syntax error.
fn parse_yaml(text: &str) -> Result<Value, (usize, String)> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        (line, e.to_string())
    })?;
    serde_json::to_value(yaml).map_err(|e| {
        (
            1,
            format!("{e} (keys must be strings; tagged values are not supported)"),
        )
    })
}

/// Names of the groups a device belongs to.
pub fn memberships<'a>(device: &Device, groups: &'a [Group]) -> BTreeSet<&'a str> {
    groups
        .iter()
        .filter(|g| g.contains(device))
        .map(|g| g.name.as_str())
        .collect()
}

/// Whether a static group names a device that is not in the bundle; offline
/// plans show these as warnings (a device may simply not be enrolled yet).
pub fn unknown_members(bundle: &Bundle) -> Vec<(String, String)> {
    let known: BTreeSet<String> = bundle
        .devices
        .iter()
        .map(|d| d.name.to_lowercase())
        .collect();
    let mut out = Vec::new();
    for g in &bundle.groups {
        if let Membership::Static(members) = &g.membership {
            for m in members {
                if !known.contains(&m.to_lowercase()) {
                    out.push((g.name.clone(), m.clone()));
                }
            }
        }
    }
    out
}
