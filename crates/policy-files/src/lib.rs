//! Reading policy-as-code files from disk, for the core to check, and
//! writing generated ones (imports, exports) all or nothing.
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
    #[error("{0} already exists and is not empty; choose a new output directory")]
    NotEmpty(String),
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

/// Writes `files` (relative path, contents) as the new directory `out`, all
/// or nothing: they go to a temporary sibling directory first, which is
/// renamed to `out` only when every file is written. `out` must not exist,
/// or be an empty directory, so nothing of the user's is overwritten.
pub fn write_new_directory(out: &Path, files: &[(String, String)]) -> Result<(), FilesError> {
    if let Ok(mut entries) = fs::read_dir(out) {
        if entries.next().is_some() {
            return Err(FilesError::NotEmpty(out.display().to_string()));
        }
    } else if out.exists() {
        return Err(FilesError::NotEmpty(out.display().to_string()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let result = (|| {
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for (name, text) in files {
            let path = tmp.join(name);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io(dir))?;
            }
            fs::write(&path, text).map_err(io(&path))?;
        }
        if out.exists() {
            // An empty directory, checked above: rename cannot replace it on
            // every platform, so it goes first.
            fs::remove_dir(out).map_err(io(out))?;
        }
        fs::rename(&tmp, out).map_err(io(out))
    })();
    if result.is_err() {
        // Best effort: a leftover temporary directory is not the output.
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rampart-pf-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_a_new_directory_whole_and_leaves_no_temporary() {
        let dir = scratch("new");
        let out = dir.join("out");
        let files = vec![
            ("a.yaml".to_string(), "kind: Policy\n".to_string()),
            ("sub/b.yaml".to_string(), "kind: Group\n".to_string()),
        ];
        write_new_directory(&out, &files).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("sub/b.yaml")).unwrap(),
            "kind: Group\n"
        );
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["out".to_string()]);
    }

    #[test]
    fn an_empty_directory_is_filled_and_a_non_empty_one_refused() {
        let dir = scratch("existing");
        let empty = dir.join("empty");
        fs::create_dir_all(&empty).unwrap();
        write_new_directory(&empty, &[("a.yaml".into(), "x".into())]).unwrap();
        assert!(empty.join("a.yaml").is_file());
        let err = write_new_directory(&empty, &[("b.yaml".into(), "y".into())]).unwrap_err();
        assert!(matches!(err, FilesError::NotEmpty(_)));
        assert!(!empty.join("b.yaml").exists(), "nothing written");
    }
}
