//! Forward-only schema migrations: SQL files embedded in the binary, applied
//! in order when a store opens, each in its own transaction.

use rampart_store::{Result, StoreError};
use sqlx::{Connection, Executor, SqliteConnection};

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

/// Brings the schema up to date. Safe against another process opening the
/// same file at the same time: each step re-reads the schema version inside a
/// write-locked (`BEGIN IMMEDIATE`) transaction.
pub(crate) async fn run(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await
    .or_backend()?;

    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.or_backend()?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await
                .or_backend()?;
        check_not_newer(current)?;
        let Some(next) = MIGRATIONS.iter().find(|m| m.version > current) else {
            return tx.commit().await.or_backend();
        };
        // A query without arguments may hold several statements.
        tx.execute(next.sql)
            .await
            .map_err(|err| StoreError::Backend(format!("migration {} failed: {err}", next.file)))?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES (?, CAST(strftime('%s', 'now') AS INTEGER))",
        )
        .bind(next.version)
        .execute(&mut *tx)
        .await
        .or_backend()?;
        tx.commit().await.or_backend()?;
    }
}

/// An older build must not write to a schema it does not understand.
fn check_not_newer(current: i64) -> Result<()> {
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
}
