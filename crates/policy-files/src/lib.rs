//! Reading policy-as-code files from disk, for the core to check.
//!
//! The core does no IO; the CLI (`rampart plan`, `rampart apply`) and the
//! server (`--load`) read files through this one function, so both see the
//! same files in the same order.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds no .yaml or .yml files")]
    Empty(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Every `*.yaml` / `*.yml` file under `path` (or `path` itself when it is a
/// file), sorted by path so that output and error order are stable, as
/// `(display name, text)` pairs.
pub fn read_documents(path: &Path) -> Result<Vec<(String, String)>, FilesError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    let mut files = Vec::new();
    if meta.is_file() {
        files.push(path.to_path_buf());
    } else {
        collect(path, &mut files)?;
        if files.is_empty() {
            return Err(FilesError::Empty(path.display().to_string()));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = fs::read_to_string(&f).map_err(io(&f))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FilesError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
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
