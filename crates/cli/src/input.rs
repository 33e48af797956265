//! Reading policy-as-code files from disk for the core to check.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Every `*.yaml` / `*.yml` file under `path` (or `path` itself when it is a
/// file), sorted by path so that output and error order are stable, as
/// `(display name, text)` pairs.
pub fn read_documents(path: &Path) -> Result<Vec<(String, String)>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut files = Vec::new();
    if meta.is_file() {
        files.push(path.to_path_buf());
    } else {
        collect(path, &mut files)?;
        if files.is_empty() {
            bail!("{} holds no .yaml or .yml files", path.display());
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = fs::read_to_string(&f)
                .with_context(|| format!("cannot read {} as UTF-8 text", f.display()))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}
