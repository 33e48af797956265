//! Forward-only schema migrations: SQL files embedded in the binary, applied
//! in order when a store connects, each in its own transaction, under an
//! advisory lock so replicas starting together do not race.

use rampart_store::{Result, StoreError};
use sqlx::{Connection, Executor, PgConnection};

use crate::rows::OrBackend;

pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) file: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, oldest first. A new one gets the next number and a file
/// in `migrations/`; an applied one is never edited.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        file: "0001_init.sql",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        file: "0002_device_trust.sql",
        sql: include_str!("../migrations/0002_device_trust.sql"),
    },
    Migration {
        version: 3,
        file: "0003_device_names_and_tombstones.sql",
        sql: include_str!("../migrations/0003_device_names_and_tombstones.sql"),
    },
    Migration {
        version: 4,
        file: "0004_accounts.sql",
        sql: include_str!("../migrations/0004_accounts.sql"),
    },
    Migration {
        version: 5,
        file: "0005_name_keys.sql",
        sql: include_str!("../migrations/0005_name_keys.sql"),
    },
    Migration {
        version: 6,
        file: "0006_tenant_settings_version.sql",
        sql: include_str!("../migrations/0006_tenant_settings_version.sql"),
    },
    Migration {
        version: 7,
        file: "0007_status_backend.sql",
        sql: include_str!("../migrations/0007_status_backend.sql"),
    },
    Migration {
        version: 8,
        file: "0008_policy_key_rotation.sql",
        sql: include_str!("../migrations/0008_policy_key_rotation.sql"),
    },
    Migration {
        version: 9,
        file: "0009_device_page_indexes.sql",
        sql: include_str!("../migrations/0009_device_page_indexes.sql"),
    },
    Migration {
        version: 10,
        file: "0010_device_conditions.sql",
        sql: include_str!("../migrations/0010_device_conditions.sql"),
    },
    Migration {
        version: 11,
        file: "0011_audit_filters.sql",
        sql: include_str!("../migrations/0011_audit_filters.sql"),
    },
];

/// The advisory lock key ("rampart" and a 1): advisory locks are per
/// database, so this only serialises Rampart servers sharing one.
const LOCK_KEY: i64 = 0x7261_6d70_6172_7401;

/// Brings the schema up to date. `conn` must be a connection of its own (not
/// from the pool): the session-level lock is released by closing it, even if
/// a migration fails half-way.
pub(crate) async fn run(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    apply_pending(conn).await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await
        .or_backend()?;
    Ok(())
}

async fn apply_pending(conn: &mut PgConnection) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await
    .or_backend()?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .or_backend()?;
    check_not_newer(current)?;
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let mut tx = conn.begin().await.or_backend()?;
        // A query without arguments goes over the simple query protocol,
        // which runs several statements in one go.
        tx.execute(migration.sql).await.map_err(|err| {
            StoreError::Backend(format!("migration {} failed: {err}", migration.file))
        })?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
        )
        .bind(migration.version)
        .execute(&mut *tx)
        .await
        .or_backend()?;
        tx.commit().await.or_backend()?;
    }
    Ok(())
}

/// An older build must not write to a schema it does not understand.
pub(crate) fn check_not_newer(current: i64) -> Result<()> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        return Err(StoreError::Backend(format!(
            "the database schema is at version {current}, but this build of Rampart only knows \
             versions up to {known}; run a newer Rampart against it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches a migration file that was added but not listed, or listed out
    /// of order.
    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.file.starts_with(&format!("{:04}_", m.version)));
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        assert!(check_not_newer(1).is_ok());
        let err = check_not_newer(999).unwrap_err().to_string();
        assert!(err.contains("version 999"), "{err}");
    }
}
