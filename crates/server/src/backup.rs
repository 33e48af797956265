//! `rampart-server backup`, `restore` and `check`, and the lock that keeps
//! a restore from replacing the database under a running server.
//!
//! The master key is never in a backup (it seals the signing keys the
//! database holds): it is backed up once, apart, and `check` proves a
//! restored database and the master key belong together.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rampart_store::Store as _;

use crate::config::ServerConfig;

/// An exclusive lock on the data directory (`rampart.lock`), held by a
/// running server and by a restore.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, or says which server holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        let path = data_dir.join("rampart.lock");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "a rampart-server is running on {} (it holds {}); stop it first",
                data_dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// The SQLite file of the configuration, or why there is none.
fn sqlite_file(config: &ServerConfig, what: &str) -> Result<PathBuf> {
    config.sqlite_path().ok_or_else(|| {
        anyhow::anyhow!(
            "{what} works on the embedded SQLite database; on PostgreSQL use pg_dump \
             --format=custom and pg_restore, then `rampart-server check` (see the README's \
             \"Install and operate\")"
        )
    })
}

/// Writes a consistent copy of the database to `out` (a new file, mode
/// 0600) while the server may be running. SQLite only.
pub async fn backup(config: &ServerConfig, out: &Path) -> Result<String> {
    let db = sqlite_file(config, "backup")?;
    rampart_store_sqlite::backup::backup(&db, out)
        .await
        .with_context(|| format!("cannot back up {}", db.display()))?;
    let check = rampart_store_sqlite::backup::check_file(out).await?;
    Ok(format!(
        "wrote a backup of {} to {} (schema version {}, {} tenants, {} devices); the master key \
         {} is not in it: keep its own copy",
        db.display(),
        out.display(),
        check.schema_version,
        check.tenants,
        check.devices,
        config.master_key_path().display()
    ))
}

/// Replaces the database with the backup `file` after checking it, with no
/// server running on the data directory. The replaced database is kept
/// beside it, renamed; nothing is deleted. SQLite only.
pub async fn restore(config: &ServerConfig, file: &Path, now: i64) -> Result<String> {
    let db = sqlite_file(config, "restore")?;
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let check = rampart_store_sqlite::backup::check_file(file)
        .await
        .with_context(|| format!("{} cannot be restored", file.display()))?;
    let kept = with_suffix(&db, &format!(".before-restore-{now}"));
    let staged = with_suffix(&db, ".restoring");
    copy_private(file, &staged)?;
    let mut moved = false;
    // The database and its WAL move together, so the kept copy opens as
    // it was.
    for suffix in ["", "-wal", "-shm"] {
        let from = with_suffix(&db, suffix);
        if from.exists() {
            let to = with_suffix(&kept, suffix);
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
            moved = true;
        }
    }
    std::fs::rename(&staged, &db)
        .with_context(|| format!("cannot move {} to {}", staged.display(), db.display()))?;
    let previous = if moved {
        format!("; the database it replaced is kept as {}", kept.display())
    } else {
        String::new()
    };
    Ok(format!(
        "restored {} from {} (schema version {}, {} tenants, {} devices){previous}. Run \
         `rampart-server check` with the master key, then start the server: agents keep their \
         settings and converge to the restored policies",
        db.display(),
        file.display(),
        check.schema_version,
        check.tenants,
        check.devices,
    ))
}

/// Checks the configured database, SQLite or PostgreSQL (a restored one,
/// say): a whole file, a schema this build knows (brought up to date as a
/// start would), and every sealed private key opening with the master key.
pub async fn check(config: &ServerConfig) -> Result<String> {
    let key = config.master_key_path();
    if !key.exists() {
        bail!(
            "the master key {} is missing: restore it from its own backup (a new key cannot \
             open the keys this database holds)",
            key.display()
        );
    }
    if let Some(db) = config.sqlite_path() {
        if !db.exists() {
            bail!("there is no database at {}", db.display());
        }
        rampart_store_sqlite::backup::check_file(&db).await?;
    }
    let store = crate::open_store(config)
        .await
        .context("the database does not open with this master key")?;
    // Reading a tenant's secrets opens its sealed keys: a key that does not
    // open is an error here, not at the first device's check-in.
    store
        .server_secret(crate::device::trust::SERVER_CA)
        .await
        .context("the installation CA key does not open")?;
    let mut devices = 0;
    let tenants = store.tenants().await?;
    for tenant in &tenants {
        store
            .tenant_secrets(&tenant.id)
            .await
            .with_context(|| format!("the keys of tenant {} do not open", tenant.name))?;
        devices += store.devices(&tenant.id).await?.len();
    }
    Ok(format!(
        "the database is sound: {} tenants, {devices} devices, every private key opens with the \
         master key {}",
        tenants.len(),
        key.display()
    ))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies `from` to a new file `to` (mode 0600), synced to disk.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut target = options
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut source = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    std::io::copy(&mut source, &mut target)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    target.sync_all()?;
    Ok(())
}
