//! Policy-as-code YAML turned into the JSON documents the API takes, each
//! with the file and line it came from so server errors can point there.
//!
//! Files are split at `---` lines exactly as `rampart_core::documents` splits
//! them, so the documents here are the ones `load_documents` checked, in the
//! same order.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// One non-empty YAML document.
pub struct Document {
    pub file: String,
    /// 1-based line where the document starts.
    pub line: usize,
    /// The document as JSON, `kind` included.
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    pub fn name(&self) -> Option<&str> {
        self.value.get("name").and_then(Value::as_str)
    }

    /// `file:line`, and the kind and name when the document has them.
    pub fn origin(&self) -> String {
        match (self.kind(), self.name()) {
            (Some(k), Some(n)) => format!("{}:{}: {k} {n:?}", self.file, self.line),
            _ => format!("{}:{}", self.file, self.line),
        }
    }
}

/// Every non-empty document of one file.
pub fn documents(file: &str, text: &str) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for (line, text) in split(text) {
        if is_blank(&text) {
            continue;
        }
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
            let at = line + e.location().map_or(1, |l| l.line()).saturating_sub(1);
            anyhow!("{file}:{at}: invalid YAML: {e}")
        })?;
        let value = serde_json::to_value(yaml).map_err(|e| {
            anyhow!("{file}:{line}: {e} (keys must be strings; tagged values are not supported)")
        })?;
        if !value.is_null() {
            out.push(Document {
                file: file.to_string(),
                line,
                value,
            });
        }
    }
    Ok(out)
}

/// The one document of `kind` a file holds, as the body the API's create
/// call takes: `kind` removed. A file without `kind` is taken as that kind.
pub fn single(path: &Path, kind: &str) -> Result<Value> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {file}"))?;
    let mut docs = documents(&file, &text)?;
    let doc = match docs.len() {
        1 => docs.remove(0),
        0 => bail!("{file} holds no document; expected one `kind: {kind}` document"),
        n => bail!(
            "{file} holds {n} documents; expected one `kind: {kind}` document \
             (`rampart apply -f DIR` takes many)"
        ),
    };
    let origin = doc.origin();
    let Value::Object(mut body) = doc.value else {
        bail!("{origin}: a document must be a map with a `kind` field");
    };
    match body.remove("kind") {
        None => {}
        Some(Value::String(k)) if k == kind => {}
        Some(other) => bail!(
            "{origin}: kind is {}, but this command creates a {kind}",
            crate::render::value(&other)
        ),
    }
    Ok(Value::Object(body))
}

/// The documents of a file with the line each starts on. A `---` at column 0
/// can only be a document marker (block scalar content is indented).
fn split(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (i, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            docs.push((first_line, std::mem::take(&mut current)));
            // Content after the marker belongs to the next document and
            // starts it on the marker's line; otherwise it starts below.
            let rest = line[3..].trim_start();
            if rest.is_empty() {
                first_line = i + 2;
            } else {
                first_line = i + 1;
                current.push_str(rest);
                current.push('\n');
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((first_line, current));
    docs
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "..."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_first_line_and_skip_empty_ones() {
        let text = "# a comment\nkind: Group\nname: a\nrule: tag(\"x\")\n---\n# only a comment\n---\nkind: Policy\nname: b\n---\n";
        let docs = documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[0].kind()), (1, Some("Group")));
        assert_eq!((docs[1].line, docs[1].name()), (8, Some("b")));
        assert_eq!(docs[1].origin(), "f.yaml:8: Policy \"b\"");
        let docs = documents("f.yaml", "kind: Group\n--- kind: Policy\nname: b\n").unwrap();
        assert_eq!(docs[1].origin(), "f.yaml:2: Policy \"b\"");
    }

    #[test]
    fn a_syntax_error_names_the_file_line() {
        let e = documents(
            "f.yaml",
            "kind: Group\n---\nkind: Group\nname: [a, b\nrule: x\n",
        )
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("f.yaml:5:"), "{e}");
        assert!(e.to_string().contains("invalid YAML"), "{e}");
    }
}
