//! Replacing a component's configuration file atomically: a temporary file
//! beside it, written and flushed, given the original's owner and mode, then
//! renamed over it (and the directory flushed). A reader sees the old file
//! or the new one, never half of one; a file the component reads as another
//! user (clamd reads clamd.conf as `clamav`) stays readable to it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`; a new file gets `new_mode`.
pub fn replace_file(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let existing = fs::metadata(path).ok();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.rampart-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let mode = match &existing {
                Some(m) => {
                    std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))?;
                    m.mode() & 0o7777
                }
                None => new_mode,
            };
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = (new_mode, &existing);
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keeps_the_mode_of_the_file_it_replaces() {
        let dir = TempDir::new();
        let path = dir.path().join("clamd.conf");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_new_file_gets_the_given_mode_and_its_directories() {
        let dir = TempDir::new();
        let path = dir.path().join("a/b/mdatp_managed.json");
        replace_file(&path, b"{}", 0o644).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}
