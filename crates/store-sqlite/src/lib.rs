//! The SQLite backend of [`rampart_store::Store`]: the embedded default, one
//! file next to the server, no service to run.
//!
//! SQLite allows one writer at a time. Rather than let concurrent batches
//! collide and fail with `SQLITE_BUSY`, every mutation goes through a pool of
//! exactly one connection, which queues writers in the process, and opens its
//! transaction with `BEGIN IMMEDIATE`, which takes the write lock up front (so
//! another process on the same file waits for the busy timeout instead of
//! failing half-way). Reads use a separate pool and, thanks to WAL mode, are
//! never blocked by the writer.

pub mod backup;
mod migrate;
mod rows;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rampart_store::audit_query::audit_sql;
use rampart_store::page::{device_page_sql, finish_page, DevicePage, DeviceQuery, Dialect, Param};
use rampart_store::{
    name_key, AuditQuery, AuditRecord, DeviceProblems, DeviceRecord, DeviceTombstone, NewAudit,
    ObjectKind, ObjectRecord, OnboardingTokenRecord, Result, StatusRecord, Store, StoreError,
    Tenant, TenantSecrets, Timestamp, TokenRecord, TokenUse, UserRecord, Write,
};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::rows::{is_unique_violation, OrBackend};

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for its turn on the single writer connection.
const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);
const READERS: u32 = 8;

/// A Rampart store in one SQLite file (or in memory, for tests).
#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: see the module documentation.
    writer: SqlitePool,
    reader: SqlitePool,
    location: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` and brings
    /// its schema up to date. Fails if the file's schema is newer than this
    /// build knows.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        make_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL makes NORMAL durable against application crashes; only a
            // power loss may drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let location = path.display().to_string();
        let fail = |err: sqlx::Error| {
            StoreError::Backend(format!("cannot open SQLite database {location}: {err}"))
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITE_QUEUE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(fail)?;
        migrate_pool(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await
            .map_err(fail)?;
        Ok(SqliteStore {
            writer,
            reader,
            location,
        })
    }

    /// A fresh, private database that lives as long as the store; for tests.
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .or_backend()?
            .foreign_keys(true);
        // Every connection to `:memory:` is a database of its own, so reads
        // and writes share the one connection, and it must never be recycled.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(WRITE_QUEUE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| StoreError::Backend(format!("cannot open SQLite in memory: {err}")))?;
        migrate_pool(&pool).await?;
        Ok(SqliteStore {
            writer: pool.clone(),
            reader: pool,
            location: ":memory:".to_owned(),
        })
    }

    /// Opens the store a `sqlite:` URL names: `sqlite:///abs/path.db`,
    /// `sqlite://relative/path.db`, `sqlite:path.db` or `sqlite::memory:`.
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        match parse_url(url)? {
            None => SqliteStore::open_in_memory().await,
            Some(path) => SqliteStore::open(&path).await,
        }
    }

    /// Closes every connection; later calls fail. Lets a caller remove the
    /// file right after.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The database holds hashes of credentials and (sealed) keys: its file,
/// created here if new, and its `-wal` and `-shm` files are readable by
/// their owner only. SQLite gives the files it creates later the mode of
/// the database file.
fn make_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let fail = |err: std::io::Error| {
            StoreError::Backend(format!("cannot make {} private: {err}", path.display()))
        };
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(fail)?;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = PathBuf::from(name);
            // A `-wal` or `-shm` file may be absent, or vanish as we look:
            // the last connection of another store closing removes them.
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
                other => other.map_err(fail)?,
            }
        }
    }
    Ok(())
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database.
fn parse_url(url: &str) -> Result<Option<PathBuf>> {
    let invalid = |why: &str| StoreError::Backend(format!("invalid SQLite URL {url:?}: {why}"));
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| invalid("it must start with sqlite:"))?;
    if rest == ":memory:" || rest == "//:memory:" {
        return Ok(None);
    }
    // A query string would be silently taken as part of the file name.
    if rest.contains('?') {
        return Err(invalid("options after '?' are not supported"));
    }
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err(invalid("it names no file"));
    }
    Ok(Some(PathBuf::from(path)))
}

async fn migrate_pool(pool: &SqlitePool) -> Result<()> {
    let mut conn = pool.acquire().await.or_backend()?;
    migrate::run(&mut conn).await
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds a shared page query's parameters in order.
fn bind_params<'q>(mut query: SqliteQuery<'q>, params: &[Param]) -> SqliteQuery<'q> {
    for p in params {
        query = match p {
            Param::Text(s) => query.bind(s.clone()),
            Param::Int(i) => query.bind(*i),
        };
    }
    query
}

/// Reads run on the reader pool and decode every row or fail.
impl SqliteStore {
    async fn fetch_all<'q, T>(
        &self,
        query: SqliteQuery<'q>,
        decode: fn(&sqlx::sqlite::SqliteRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let rows = query.fetch_all(&self.reader).await.or_backend()?;
        rows.iter().map(decode).collect()
    }

    async fn fetch_optional<'q, T>(
        &self,
        query: SqliteQuery<'q>,
        decode: fn(&sqlx::sqlite::SqliteRow) -> Result<T>,
    ) -> Result<Option<T>> {
        let row = query.fetch_optional(&self.reader).await.or_backend()?;
        row.as_ref().map(decode).transpose()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ready(&self) -> Result<()> {
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&self.reader)
                .await
                .or_backend()?;
        let expected = migrate::MIGRATIONS.last().map_or(0, |m| m.version);
        if current != expected {
            return Err(StoreError::Backend(format!(
                "the schema is at version {current}, this build expects {expected}"
            )));
        }
        Ok(())
    }

    async fn create_tenant(&self, name: &str, at: Timestamp) -> Result<Tenant> {
        let tenant = Tenant {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: at,
        };
        let result =
            sqlx::query("INSERT INTO tenants (id, name, created_at, name_key) VALUES (?, ?, ?, ?)")
                .bind(&tenant.id)
                .bind(&tenant.name)
                .bind(tenant.created_at)
                .bind(rampart_store::name_key(name))
                .execute(&self.writer)
                .await;
        match result {
            Ok(_) => Ok(tenant),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
                "tenant {name:?} already exists"
            ))),
            Err(err) => Err(StoreError::Backend(err.to_string())),
        }
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        let query = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name");
        self.fetch_all(query, rows::tenant).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let query = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name_key = ?")
            .bind(rampart_store::name_key(name));
        self.fetch_optional(query, rows::tenant).await
    }

    async fn write(
        &self,
        tenant: &str,
        at: Timestamp,
        writes: Vec<Write>,
        audit: Vec<NewAudit>,
    ) -> Result<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .or_backend()?;
        write::batch(&mut tx, tenant, at, writes, audit).await?;
        tx.commit().await.or_backend()
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<Option<Value>> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT doc FROM tenant_settings WHERE tenant_id = ?")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await
                .or_backend()?;
        doc.map(|text| {
            serde_json::from_str(&text).map_err(|err| {
                StoreError::Backend(format!("stored tenant settings are not valid JSON: {err}"))
            })
        })
        .transpose()
    }

    async fn tenant_settings_version(&self, tenant: &str) -> Result<u64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM tenant_settings WHERE tenant_id = ?")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await
                .or_backend()?;
        Ok(version.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
    }

    async fn tenant_secrets(&self, tenant: &str) -> Result<Option<TenantSecrets>> {
        let sql = format!(
            "SELECT {} FROM tenant_secrets WHERE tenant_id = ?",
            rows::TENANT_SECRETS_COLUMNS
        );
        self.fetch_optional(sqlx::query(&sql).bind(tenant), rows::tenant_secrets)
            .await
    }

    async fn server_secret(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .or_backend()
    }

    async fn put_server_secret_if_absent(&self, name: &str, value: &str) -> Result<String> {
        // Another process on the same file may insert first; the write lock
        // makes the insert and the read one step.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .or_backend()?;
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await
        .or_backend()?;
        let stored: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .or_backend()?;
        tx.commit().await.or_backend()?;
        Ok(stored)
    }

    async fn replace_server_secret(&self, name: &str, expected: &str, value: &str) -> Result<()> {
        let done = sqlx::query("UPDATE server_secrets SET value = ? WHERE name = ? AND value = ?")
            .bind(value)
            .bind(name)
            .bind(expected)
            .execute(&self.writer)
            .await
            .or_backend()?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match self.server_secret(name).await? {
            None => Err(StoreError::NotFound(format!("server secret {name}"))),
            Some(_) => Err(StoreError::Conflict(format!(
                "server secret {name} changed meanwhile"
            ))),
        }
    }

    async fn objects(&self, tenant: &str, kind: ObjectKind) -> Result<Vec<ObjectRecord>> {
        let sql = current_objects_sql("ORDER BY o.name");
        let query = sqlx::query(&sql).bind(tenant).bind(kind.as_str());
        self.fetch_all(query, rows::object).await
    }

    async fn object(
        &self,
        tenant: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<ObjectRecord>> {
        let sql = current_objects_sql("AND o.name = ?");
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(kind.as_str())
            .bind(name);
        self.fetch_optional(query, rows::object).await
    }

    async fn object_history(
        &self,
        tenant: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Vec<ObjectRecord>> {
        let sql = format!(
            "SELECT {} FROM object_versions WHERE tenant_id = ? AND kind = ? AND name = ? \
             ORDER BY version",
            rows::OBJECT_COLUMNS
        );
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(kind.as_str())
            .bind(name);
        self.fetch_all(query, rows::object).await
    }

    async fn devices(&self, tenant: &str) -> Result<Vec<DeviceRecord>> {
        let sql = format!(
            "SELECT {} FROM devices WHERE tenant_id = ? ORDER BY name",
            rows::DEVICE_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::device)
            .await
    }

    async fn device(&self, tenant: &str, name: &str) -> Result<Option<DeviceRecord>> {
        let sql = format!(
            "SELECT {} FROM devices WHERE tenant_id = ? AND name_key = ?",
            rows::DEVICE_COLUMNS
        );
        let query = sqlx::query(&sql).bind(tenant).bind(name_key(name));
        self.fetch_optional(query, rows::device).await
    }

    async fn device_by_id(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>> {
        let sql = format!(
            "SELECT {} FROM devices WHERE tenant_id = ? AND id = ?",
            rows::DEVICE_COLUMNS
        );
        let query = sqlx::query(&sql).bind(tenant).bind(id);
        self.fetch_optional(query, rows::device).await
    }

    async fn device_tombstone(&self, tenant: &str, id: &str) -> Result<Option<DeviceTombstone>> {
        let query = sqlx::query(
            "SELECT device_id, name, deleted_at, reason FROM device_tombstones \
             WHERE tenant_id = ? AND device_id = ?",
        )
        .bind(tenant)
        .bind(id);
        self.fetch_optional(query, rows::tombstone).await
    }

    async fn touch_devices(&self, tenant: &str, seen: Vec<(String, Timestamp)>) -> Result<()> {
        let latest = write::latest_per_name(seen);
        if latest.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .or_backend()?;
        write::touch_devices(&mut tx, tenant, &latest).await?;
        tx.commit().await.or_backend()
    }

    async fn record_report(
        &self,
        tenant: &str,
        device: &str,
        statuses: Vec<StatusRecord>,
        at: Timestamp,
        writes: Vec<Write>,
        audit: Vec<NewAudit>,
    ) -> Result<usize> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .or_backend()?;
        let changed = write::statuses(&mut tx, tenant, device, statuses).await?;
        if !writes.is_empty() || !audit.is_empty() {
            write::batch(&mut tx, tenant, at, writes, audit).await?;
        }
        tx.commit().await.or_backend()?;
        Ok(changed)
    }

    async fn statuses(&self, tenant: &str) -> Result<Vec<StatusRecord>> {
        let sql = format!(
            "SELECT {} FROM statuses WHERE tenant_id = ? ORDER BY device, setting, setting_key",
            rows::STATUS_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::status)
            .await
    }

    async fn device_statuses(&self, tenant: &str, device: &str) -> Result<Vec<StatusRecord>> {
        let sql = format!(
            "SELECT {} FROM statuses WHERE tenant_id = ? AND device = ? \
             ORDER BY setting, setting_key",
            rows::STATUS_COLUMNS
        );
        let query = sqlx::query(&sql).bind(tenant).bind(device);
        self.fetch_all(query, rows::status).await
    }

    async fn device_problems(&self, tenant: &str) -> Result<Vec<DeviceProblems>> {
        let query = sqlx::query(
            "SELECT device, \
             SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors, \
             SUM(CASE WHEN status = 'conflict' THEN 1 ELSE 0 END) AS conflicts \
             FROM statuses WHERE tenant_id = ? AND status IN ('error', 'conflict') \
             GROUP BY device ORDER BY device",
        )
        .bind(tenant);
        self.fetch_all(query, rows::device_problems).await
    }

    async fn device_problems_of(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<DeviceProblems>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT device, \
             SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors, \
             SUM(CASE WHEN status = 'conflict' THEN 1 ELSE 0 END) AS conflicts \
             FROM statuses WHERE tenant_id = ? AND status IN ('error', 'conflict') \
             AND device IN ({}) GROUP BY device ORDER BY device",
            vec!["?"; names.len()].join(", ")
        );
        let mut query = sqlx::query(&sql).bind(tenant);
        for name in names {
            query = query.bind(name);
        }
        self.fetch_all(query, rows::device_problems).await
    }

    async fn device_page(&self, tenant: &str, q: &DeviceQuery) -> Result<DevicePage> {
        use sqlx::Row;
        let sql = device_page_sql(Dialect::Sqlite, rows::DEVICE_COLUMNS, tenant, q);
        // Counted for the first page only: the pages after it share it.
        let total: Option<i64> = match &q.after {
            Some(_) => None,
            None => Some(
                bind_params(sqlx::query(&sql.count), &sql.count_params)
                    .fetch_one(&self.reader)
                    .await
                    .or_backend()?
                    .try_get(0)
                    .or_backend()?,
            ),
        };
        let rows = self
            .fetch_all(
                bind_params(sqlx::query(&sql.select), &sql.select_params),
                rows::device,
            )
            .await?;
        finish_page(rows, q, total.map(|t| t.max(0) as u64))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {} FROM tokens WHERE hash = ?", rows::TOKEN_COLUMNS);
        self.fetch_optional(sqlx::query(&sql).bind(hash), rows::token)
            .await
    }

    async fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>> {
        let sql = format!(
            "SELECT {} FROM tokens WHERE tenant_id = ? ORDER BY created_at, name, id",
            rows::TOKEN_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::token)
            .await
    }

    async fn touch_token(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE tokens SET last_used_at = ? WHERE tenant_id = ? AND id = ? \
             AND (last_used_at IS NULL OR last_used_at < ? - 60)",
        )
        .bind(at)
        .bind(tenant)
        .bind(id)
        .bind(at)
        .execute(&self.writer)
        .await
        .or_backend()?;
        Ok(())
    }

    async fn purge_tokens(&self, now: Timestamp, idle_since: Timestamp) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM tokens WHERE expires_at <= ? \
             OR (kind = 'session' AND COALESCE(last_used_at, created_at) < ?)",
        )
        .bind(now)
        .bind(idle_since)
        .execute(&self.writer)
        .await
        .or_backend()?;
        Ok(done.rows_affected())
    }

    async fn users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        let sql = format!(
            "SELECT {} FROM users WHERE tenant_id = ? ORDER BY username",
            rows::USER_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::user)
            .await
    }

    async fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
        let sql = format!(
            "SELECT {} FROM users WHERE tenant_id = ? AND username_key = ?",
            rows::USER_COLUMNS
        );
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(rampart_store::name_key(username));
        self.fetch_optional(query, rows::user).await
    }

    async fn onboarding_tokens(&self, tenant: &str) -> Result<Vec<OnboardingTokenRecord>> {
        let sql = format!(
            "SELECT {} FROM onboarding_tokens WHERE tenant_id = ? ORDER BY created_at, id",
            rows::ONBOARDING_TOKEN_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::onboarding_token)
            .await
    }

    async fn consume_onboarding_token(&self, hash: &str, now: Timestamp) -> Result<TokenUse> {
        // The write lock, taken up front, makes the check and the count one
        // step: no two callers can both take a token's last use.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .or_backend()?;
        let used = write::consume_onboarding_token(&mut tx, hash, now).await?;
        tx.commit().await.or_backend()?;
        Ok(used)
    }

    async fn audit(&self, tenant: &str, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let (sql, params) = audit_sql(Dialect::Sqlite, rows::AUDIT_COLUMNS, tenant, q);
        self.fetch_all(bind_params(sqlx::query(&sql), &params), rows::audit)
            .await
    }
}

/// Selects the current version of live objects: the head row in `objects`
/// points into `object_versions`. `filter` adds conditions after the tenant
/// and kind.
fn current_objects_sql(filter: &str) -> String {
    let columns: Vec<String> = rows::OBJECT_COLUMNS
        .split(", ")
        .map(|column| format!("v.{column}"))
        .collect();
    format!(
        "SELECT {} FROM objects o JOIN object_versions v \
         ON v.tenant_id = o.tenant_id AND v.kind = o.kind AND v.name = o.name \
         AND v.version = o.current_version \
         WHERE o.tenant_id = ? AND o.kind = ? {filter}",
        columns.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file_or_memory() {
        assert_eq!(parse_url("sqlite::memory:").unwrap(), None);
        assert_eq!(
            parse_url("sqlite:///var/lib/rampart/rampart.db").unwrap(),
            Some(PathBuf::from("/var/lib/rampart/rampart.db"))
        );
        assert_eq!(
            parse_url("sqlite://data/rampart.db").unwrap(),
            Some(PathBuf::from("data/rampart.db"))
        );
        assert_eq!(
            parse_url("sqlite:rampart.db").unwrap(),
            Some(PathBuf::from("rampart.db"))
        );
        assert!(parse_url("postgres://localhost/db").is_err());
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("sqlite:///x.db?mode=ro").is_err());
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)")
            .execute(&store.writer)
            .await
            .unwrap();
        let mut conn = store.writer.acquire().await.unwrap();
        let err = migrate::run(&mut conn).await.unwrap_err().to_string();
        assert!(err.contains("version 999"), "{err}");
    }

    /// A database written by a build that knew only version 1 keeps its
    /// devices, with the identity fields empty.
    #[tokio::test]
    async fn upgrading_from_version_1_keeps_devices() {
        use sqlx::{Connection, Executor};
        let path =
            std::env::temp_dir().join(format!("rampart-upgrade-{}.db", uuid::Uuid::new_v4()));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        conn.execute(migrate::MIGRATIONS[0].sql).await.unwrap();
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, \
             applied_at INTEGER NOT NULL); \
             INSERT INTO schema_migrations VALUES (1, 0); \
             INSERT INTO tenants VALUES ('t1', 'default', 1); \
             INSERT INTO devices (tenant_id, name, id, os, os_version, device_type, \
             agent_version, tags, labels, managed_by, enrollment_status, created_at) \
             VALUES ('t1', 'old', 'd1', 'linux', '12', 'server', '0.1.0', '[\"a\"]', '[]', \
             'rampart', 'enrolled', 5), \
             ('t1', 'OLD', 'd2', 'linux', '12', 'server', '0.1.0', '[]', '[]', \
             'rampart', 'enrolled', 6);",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = SqliteStore::open(&path).await.unwrap();
        let device = store.device_by_id("t1", "d1").await.unwrap().unwrap();
        assert_eq!(device.name, "old");
        assert_eq!(device.tags, ["a"]);
        assert_eq!(device.cert_serial, None);
        assert_eq!(device.cert_not_after, None);
        assert_eq!(device.issued_version, 0);
        assert_eq!(device.issued_digest, None);
        // Names that differed only in case both survive version 3's
        // case-insensitive uniqueness; the first keeps the plain name.
        assert_eq!(store.device("t1", "Old").await.unwrap().unwrap().id, "d1");
        assert!(store.device_by_id("t1", "d2").await.unwrap().is_some());
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&store.reader)
                .await
                .unwrap();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn reopening_a_file_keeps_its_data() {
        let path = std::env::temp_dir().join(format!("rampart-reopen-{}.db", uuid::Uuid::new_v4()));
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_tenant("default", 1).await.unwrap();
        store.close().await;
        let store = SqliteStore::open_url(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        assert!(store.tenant_by_name("default").await.unwrap().is_some());
        let debug = format!("{store:?}");
        assert!(debug.contains("rampart-reopen"), "{debug}");
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
