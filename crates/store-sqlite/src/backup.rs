//! Backups of the embedded database, and the checks a file must pass
//! before it may replace the database.
//!
//! A backup is `VACUUM INTO`: one consistent, compact copy of the database
//! taken in a read transaction, so the server goes on serving (and writing)
//! while it runs.

use std::path::Path;

use rampart_store::{Result, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use crate::migrate::MIGRATIONS;
use crate::rows::OrBackend;

/// Writes a consistent copy of the database at `db` to `out`, a new file
/// created readable by its owner only. Refuses to overwrite anything.
pub async fn backup(db: &Path, out: &Path) -> Result<()> {
    if !db.exists() {
        return Err(StoreError::Backend(format!(
            "there is no database at {}",
            db.display()
        )));
    }
    create_private_empty(out)?;
    let result = async {
        let mut conn = SqliteConnectOptions::new()
            .filename(db)
            .read_only(true)
            .connect()
            .await
            .or_backend()?;
        // An empty file is allowed as VACUUM INTO's target; it keeps the
        // mode it was created with.
        sqlx::query("VACUUM INTO ?")
            .bind(out.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await
            .or_backend()?;
        conn.close().await.or_backend()
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

/// What a database file holds, as far as a restore cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The schema version it is at.
    pub schema_version: i64,
    pub tenants: i64,
    pub devices: i64,
}

/// Checks that `path` is a whole, uncorrupted Rampart database this build
/// can open: SQLite's integrity check passes and its schema is not newer
/// than this build knows. Opens it read-only; changes nothing.
pub async fn check_file(path: &Path) -> Result<FileCheck> {
    let name = path.display().to_string();
    let not_rampart =
        |e: sqlx::Error| StoreError::Backend(format!("{name} is not a Rampart database: {e}"));
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(not_rampart)?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(not_rampart)?;
    if integrity != "ok" {
        return Err(StoreError::Backend(format!(
            "{name} fails SQLite's integrity check: {integrity}"
        )));
    }
    let schema_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .map_err(not_rampart)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if schema_version > known {
        return Err(StoreError::Backend(format!(
            "{name} is at schema version {schema_version}, newer than this build knows \
             ({known}); restore it with the Rampart version that wrote it"
        )));
    }
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut conn)
        .await
        .map_err(not_rampart)?;
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
        .fetch_one(&mut conn)
        .await
        .map_err(not_rampart)?;
    conn.close().await.or_backend()?;
    Ok(FileCheck {
        schema_version,
        tenants,
        devices,
    })
}

/// Creates `path` as a new, empty file only its owner can read.
fn create_private_empty(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    fn temp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "rampart-backup-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    #[tokio::test]
    async fn a_backup_is_a_checked_copy_and_overwrites_nothing() {
        let db = temp("db");
        let store = SqliteStore::open(&db).await.unwrap();
        let out = temp("out");
        backup(&db, &out).await.unwrap();
        let check = check_file(&out).await.unwrap();
        assert_eq!(check.schema_version, MIGRATIONS.last().unwrap().version);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = backup(&db, &out).await.unwrap_err().to_string();
        assert!(again.contains("cannot create"), "{again}");
        assert!(check_file(&out).await.is_ok(), "the first backup is intact");
        store.close().await;

        // Not a database, and a database with a future schema.
        let junk = temp("junk");
        std::fs::write(&junk, b"not a database at all, just some bytes").unwrap();
        let e = check_file(&junk).await.unwrap_err().to_string();
        assert!(e.contains("is not a Rampart database"), "{e}");
        let mut conn = SqliteConnectOptions::new()
            .filename(&out)
            .connect()
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let e = check_file(&out).await.unwrap_err().to_string();
        assert!(e.contains("newer than this build knows"), "{e}");
        for f in [&db, &out, &junk] {
            let _ = std::fs::remove_file(f);
        }
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
}
