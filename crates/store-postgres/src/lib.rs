//! The PostgreSQL backend of [`rampart_store::Store`], for deployments that
//! already run PostgreSQL or run several server replicas.
//!
//! Each `write` is one transaction; version expectations are checked on
//! rows locked `FOR UPDATE` inside it, so of two writers expecting the same
//! version exactly one succeeds. Connection URLs may carry a password: it is
//! never printed, neither by `Debug` nor in errors.

mod migrate;
mod rows;
mod write;

use std::fmt;
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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection};

use crate::rows::{is_unique_violation, OrBackend};

const MAX_CONNECTIONS: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A Rampart store in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Where the store is, without credentials, for Debug and errors.
    location: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately not the pool: sqlx prints its connect options, which
        // hold the password.
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database a `postgres://` (or `postgresql://`) URL
    /// names and brings its schema up to date. Fails if the schema is newer
    /// than this build knows.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        // sqlx's parse errors do not echo the URL; neither does this one.
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::Backend(format!("invalid PostgreSQL URL: {err}")))?;
        PostgresStore::connect_with(options).await
    }

    /// Like [`PostgresStore::connect`], with options built in code.
    pub async fn connect_with(options: PgConnectOptions) -> Result<PostgresStore> {
        let location = describe(&options);
        // Migrations run on a connection of their own so that closing it
        // releases their advisory lock whatever happens.
        let mut conn = match options.connect().await {
            Ok(conn) => conn,
            Err(err) => return Err(connect_error(&location, err)),
        };
        let migrated = migrate::run(&mut conn).await;
        // Closing politely can fail on a broken connection; the server ends
        // the session either way.
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await;
        match pool {
            Ok(pool) => Ok(PostgresStore { pool, location }),
            Err(err) => Err(connect_error(&location, err)),
        }
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn connect_error(location: &str, err: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("cannot connect to PostgreSQL at {location}: {err}"))
}

/// `postgres://user@host:port/database`, never with the password.
fn describe(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!(
        "postgres://{}@{host}/{}",
        options.get_username(),
        options.get_database().unwrap_or("")
    )
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds a shared page query's parameters in order.
fn bind_params<'q>(mut query: PgQuery<'q>, params: &[Param]) -> PgQuery<'q> {
    for p in params {
        query = match p {
            Param::Text(s) => query.bind(s.clone()),
            Param::Int(i) => query.bind(*i),
        };
    }
    query
}

/// Reads run on the pool and decode every row or fail.
impl PostgresStore {
    async fn fetch_all<T>(
        &self,
        query: PgQuery<'_>,
        decode: fn(&PgRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let rows = query.fetch_all(&self.pool).await.or_backend()?;
        rows.iter().map(decode).collect()
    }

    async fn fetch_optional<T>(
        &self,
        query: PgQuery<'_>,
        decode: fn(&PgRow) -> Result<T>,
    ) -> Result<Option<T>> {
        let row = query.fetch_optional(&self.pool).await.or_backend()?;
        row.as_ref().map(decode).transpose()
    }
}

/// Selects the current version of live objects: the head row in `objects`
/// points into `object_versions`. `filter` adds conditions after the tenant
/// and kind.
fn current_objects_sql(filter: &str) -> String {
    format!(
        "SELECT {} FROM objects o JOIN object_versions v \
         ON v.tenant_id = o.tenant_id AND v.kind = o.kind AND v.name = o.name \
         AND v.version = o.current_version \
         WHERE o.tenant_id = $1 AND o.kind = $2 {filter}",
        rows::OBJECT_COLUMNS
    )
}

#[async_trait]
impl Store for PostgresStore {
    async fn ready(&self) -> Result<()> {
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&self.pool)
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
        let result = sqlx::query(
            "INSERT INTO tenants (id, name, created_at, name_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(tenant.created_at)
        .bind(rampart_store::name_key(name))
        .execute(&self.pool)
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
        let query = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name_key = $1")
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
        let mut tx = self.pool.begin().await.or_backend()?;
        write::batch(&mut tx, tenant, at, writes, audit).await?;
        tx.commit().await.or_backend()
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<Option<Value>> {
        // Version 0 is the placeholder a conditional update locks.
        sqlx::query_scalar("SELECT doc FROM tenant_settings WHERE tenant_id = $1 AND version > 0")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await
            .or_backend()
    }

    async fn tenant_settings_version(&self, tenant: &str) -> Result<u64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM tenant_settings WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await
                .or_backend()?;
        Ok(version.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
    }

    async fn tenant_secrets(&self, tenant: &str) -> Result<Option<TenantSecrets>> {
        let sql = format!(
            "SELECT {} FROM tenant_secrets WHERE tenant_id = $1",
            rows::TENANT_SECRETS_COLUMNS
        );
        self.fetch_optional(sqlx::query(&sql).bind(tenant), rows::tenant_secrets)
            .await
    }

    async fn server_secret(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .or_backend()
    }

    async fn put_server_secret_if_absent(&self, name: &str, value: &str) -> Result<String> {
        // A replica inserting the same name at the same time makes this
        // insert wait for its commit, and then do nothing; the read after it
        // (a statement of its own, so a fresh snapshot) sees the winner.
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .or_backend()?;
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .or_backend()
    }

    async fn replace_server_secret(&self, name: &str, expected: &str, value: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE server_secrets SET value = $3 WHERE name = $1 AND value = $2")
                .bind(name)
                .bind(expected)
                .bind(value)
                .execute(&self.pool)
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
        let sql = current_objects_sql("AND o.name = $3");
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
            "SELECT {} FROM object_versions v \
             WHERE v.tenant_id = $1 AND v.kind = $2 AND v.name = $3 ORDER BY v.version",
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
            "SELECT {} FROM devices WHERE tenant_id = $1 ORDER BY name",
            rows::DEVICE_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::device)
            .await
    }

    async fn device(&self, tenant: &str, name: &str) -> Result<Option<DeviceRecord>> {
        let sql = format!(
            "SELECT {} FROM devices WHERE tenant_id = $1 AND name_key = $2",
            rows::DEVICE_COLUMNS
        );
        let query = sqlx::query(&sql).bind(tenant).bind(name_key(name));
        self.fetch_optional(query, rows::device).await
    }

    async fn device_by_id(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>> {
        let sql = format!(
            "SELECT {} FROM devices WHERE tenant_id = $1 AND id = $2",
            rows::DEVICE_COLUMNS
        );
        let query = sqlx::query(&sql).bind(tenant).bind(id);
        self.fetch_optional(query, rows::device).await
    }

    async fn device_tombstone(&self, tenant: &str, id: &str) -> Result<Option<DeviceTombstone>> {
        let query = sqlx::query(
            "SELECT device_id, name, deleted_at, reason FROM device_tombstones \
             WHERE tenant_id = $1 AND device_id = $2",
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
        let mut tx = self.pool.begin().await.or_backend()?;
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
        let mut tx = self.pool.begin().await.or_backend()?;
        let changed = write::statuses(&mut tx, tenant, device, statuses).await?;
        if !writes.is_empty() || !audit.is_empty() {
            write::batch(&mut tx, tenant, at, writes, audit).await?;
        }
        tx.commit().await.or_backend()?;
        Ok(changed)
    }

    async fn statuses(&self, tenant: &str) -> Result<Vec<StatusRecord>> {
        let sql = format!(
            "SELECT {} FROM statuses WHERE tenant_id = $1 ORDER BY device, setting, setting_key",
            rows::STATUS_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::status)
            .await
    }

    async fn device_statuses(&self, tenant: &str, device: &str) -> Result<Vec<StatusRecord>> {
        let sql = format!(
            "SELECT {} FROM statuses WHERE tenant_id = $1 AND device = $2 \
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
             FROM statuses WHERE tenant_id = $1 AND status IN ('error', 'conflict') \
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
        let query = sqlx::query(
            "SELECT device, \
             SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors, \
             SUM(CASE WHEN status = 'conflict' THEN 1 ELSE 0 END) AS conflicts \
             FROM statuses WHERE tenant_id = $1 AND status IN ('error', 'conflict') \
             AND device = ANY($2) GROUP BY device ORDER BY device",
        )
        .bind(tenant)
        .bind(names.to_vec());
        self.fetch_all(query, rows::device_problems).await
    }

    async fn device_page(&self, tenant: &str, q: &DeviceQuery) -> Result<DevicePage> {
        use sqlx::Row;
        let sql = device_page_sql(Dialect::Postgres, rows::DEVICE_COLUMNS, tenant, q);
        // Counted for the first page only: the pages after it share it.
        let total: Option<i64> = match &q.after {
            Some(_) => None,
            None => Some(
                bind_params(sqlx::query(&sql.count), &sql.count_params)
                    .fetch_one(&self.pool)
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
        let sql = format!("SELECT {} FROM tokens WHERE hash = $1", rows::TOKEN_COLUMNS);
        self.fetch_optional(sqlx::query(&sql).bind(hash), rows::token)
            .await
    }

    async fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>> {
        let sql = format!(
            "SELECT {} FROM tokens WHERE tenant_id = $1 ORDER BY created_at, name, id",
            rows::TOKEN_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::token)
            .await
    }

    async fn touch_token(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE tokens SET last_used_at = $1 WHERE tenant_id = $2 AND id = $3 \
             AND (last_used_at IS NULL OR last_used_at < $1 - 60)",
        )
        .bind(at)
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await
        .or_backend()?;
        Ok(())
    }

    async fn purge_tokens(&self, now: Timestamp, idle_since: Timestamp) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM tokens WHERE expires_at <= $1 \
             OR (kind = 'session' AND COALESCE(last_used_at, created_at) < $2)",
        )
        .bind(now)
        .bind(idle_since)
        .execute(&self.pool)
        .await
        .or_backend()?;
        Ok(done.rows_affected())
    }

    async fn users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        let sql = format!(
            "SELECT {} FROM users WHERE tenant_id = $1 ORDER BY username",
            rows::USER_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::user)
            .await
    }

    async fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
        let sql = format!(
            "SELECT {} FROM users WHERE tenant_id = $1 AND username_key = $2",
            rows::USER_COLUMNS
        );
        let query = sqlx::query(&sql)
            .bind(tenant)
            .bind(rampart_store::name_key(username));
        self.fetch_optional(query, rows::user).await
    }

    async fn onboarding_tokens(&self, tenant: &str) -> Result<Vec<OnboardingTokenRecord>> {
        let sql = format!(
            "SELECT {} FROM onboarding_tokens WHERE tenant_id = $1 ORDER BY created_at, id",
            rows::ONBOARDING_TOKEN_COLUMNS
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant), rows::onboarding_token)
            .await
    }

    async fn consume_onboarding_token(&self, hash: &str, now: Timestamp) -> Result<TokenUse> {
        let mut tx = self.pool.begin().await.or_backend()?;
        let used = write::consume_onboarding_token(&mut tx, hash, now).await?;
        tx.commit().await.or_backend()?;
        Ok(used)
    }

    async fn audit(&self, tenant: &str, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let (sql, params) = audit_sql(Dialect::Postgres, rows::AUDIT_COLUMNS, tenant, q);
        self.fetch_all(bind_params(sqlx::query(&sql), &params), rows::audit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_PASSWORD: &str = "postgres://rampart:s3cr3t-pw@127.0.0.1:1/rampart";

    #[test]
    fn descriptions_leave_the_password_out() {
        let options = PgConnectOptions::from_str(WITH_PASSWORD).unwrap();
        assert_eq!(describe(&options), "postgres://rampart@127.0.0.1:1/rampart");
    }

    #[tokio::test]
    async fn connection_errors_leave_the_password_out() {
        // Nothing listens on port 1: the connection is refused at once.
        let err = PostgresStore::connect(WITH_PASSWORD).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        assert!(!format!("{err:?}").contains("s3cr3t"));

        let err = PostgresStore::connect("postgres://rampart:s3cr3t-pw@[bad/x")
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
