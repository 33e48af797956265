//! The store as the server uses it: every call to the backend bounded by a
//! short timeout (a database that does not answer is `Unavailable`, and the
//! API says 503 instead of hanging), and the private keys sealed with the
//! master key on their way in and opened on their way out (`sealing.rs`),
//! so no caller handles ciphertext and no backend sees a key in clear.
//! On a database one process owns (SQLite), device records are also kept
//! in memory: every device-channel call reads its device, and every write
//! passes through here to invalidate it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rampart_store::{
    AuditQuery, AuditRecord, DeviceProblems, DeviceRecord, DeviceTombstone, NewAudit, ObjectKind,
    ObjectRecord, OnboardingTokenRecord, Result, StatusRecord, Store, StoreError, Tenant,
    TenantSecrets, Timestamp, TokenRecord, TokenUse, UserRecord, Write,
};
use serde_json::Value;

use crate::sealing::Keyring;

/// The default bound on one database call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times the timeout a write batch may take.
const WRITE_TIMEOUT_FACTOR: u32 = 6;

/// Runs one backend call for at most `limit`, and records its latency and
/// outcome in the metrics.
async fn within<T>(limit: Duration, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        // Dropping the call rolls its transaction back.
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from the database within {} ms",
            limit.as_millis()
        ))),
    };
    crate::metrics::observe_store_call(started.elapsed().as_secs_f64(), &result);
    result
}

pub struct GuardedStore {
    inner: Arc<dyn Store>,
    keys: Keyring,
    timeout: Duration,
    /// `None` where other processes write the same database (PostgreSQL
    /// replicas): their writes would not pass through here.
    devices: Option<DeviceCache>,
}

/// Device records by tenant and id. Any write to a tenant drops its
/// entries, and a read that started before the write may not put back what
/// it read (the tenant's generation moved on).
#[derive(Default)]
struct DeviceCache(Mutex<DeviceEntries>);

#[derive(Default)]
struct DeviceEntries {
    /// Tenant → device id → record.
    records: HashMap<String, HashMap<String, DeviceRecord>>,
    generations: HashMap<String, u64>,
    len: usize,
}

/// The most device records kept; past it the cache starts over.
const MAX_CACHED_DEVICES: usize = 500_000;

enum Lookup {
    Hit(Box<DeviceRecord>),
    /// Not cached; the tenant's generation when the lookup was made.
    Miss(u64),
}

impl DeviceCache {
    fn lookup(&self, tenant: &str, id: &str) -> Lookup {
        let Ok(e) = self.0.lock() else {
            return Lookup::Miss(u64::MAX);
        };
        match e.records.get(tenant).and_then(|t| t.get(id)) {
            Some(r) => Lookup::Hit(Box::new(r.clone())),
            None => Lookup::Miss(e.generations.get(tenant).copied().unwrap_or(0)),
        }
    }

    fn insert(&self, tenant: &str, record: &DeviceRecord, generation: u64) {
        let Ok(mut e) = self.0.lock() else { return };
        if e.generations.get(tenant).copied().unwrap_or(0) != generation {
            return;
        }
        if e.len >= MAX_CACHED_DEVICES {
            e.records.clear();
            e.len = 0;
        }
        let added = e
            .records
            .entry(tenant.to_string())
            .or_default()
            .insert(record.id.clone(), record.clone())
            .is_none();
        e.len += usize::from(added);
    }

    fn invalidate(&self, tenant: &str) {
        let Ok(mut e) = self.0.lock() else { return };
        *e.generations.entry(tenant.to_string()).or_default() += 1;
        let dropped = e.records.remove(tenant).map_or(0, |t| t.len());
        e.len = e.len.saturating_sub(dropped);
    }
}

fn ca_key_context(tenant: &str) -> String {
    format!("tenant:{tenant}:ca_key")
}

fn signing_key_context(tenant: &str) -> String {
    format!("tenant:{tenant}:signing_key")
}

fn server_context(name: &str) -> String {
    format!("server:{name}")
}

fn sealing_failed(e: anyhow::Error) -> StoreError {
    StoreError::Backend(format!("{e:#}"))
}

impl GuardedStore {
    /// `sole_writer`: this process is the only one that writes the
    /// database (SQLite), so device records may be cached.
    pub fn new(
        inner: Arc<dyn Store>,
        keys: Keyring,
        timeout: Duration,
        sole_writer: bool,
    ) -> GuardedStore {
        GuardedStore {
            inner,
            keys,
            timeout,
            devices: sole_writer.then(DeviceCache::default),
        }
    }

    /// Drops the tenant's cached device records (before and after every
    /// write that may change one).
    fn devices_changed(&self, tenant: &str) {
        if let Some(cache) = &self.devices {
            cache.invalidate(tenant);
        }
    }

    /// Runs one backend call, or gives up after the timeout.
    async fn bounded<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        within(self.timeout, call).await
    }

    /// A write batch gets longer: a large `apply` or `--load` is legitimately
    /// slow, and a database that does not answer has already failed the
    /// reads (the token look-up) every request starts with.
    async fn bounded_write<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        within(self.timeout * WRITE_TIMEOUT_FACTOR, call).await
    }

    fn seal_tenant(&self, tenant: &str, mut secrets: TenantSecrets) -> Result<TenantSecrets> {
        secrets.ca_key_pem = self
            .keys
            .seal(&ca_key_context(tenant), &secrets.ca_key_pem)
            .map_err(sealing_failed)?;
        secrets.signing_key = self
            .keys
            .seal(&signing_key_context(tenant), &secrets.signing_key)
            .map_err(sealing_failed)?;
        Ok(secrets)
    }

    fn open_tenant(&self, tenant: &str, mut secrets: TenantSecrets) -> Result<TenantSecrets> {
        secrets.ca_key_pem = self
            .keys
            .open(&ca_key_context(tenant), &secrets.ca_key_pem)
            .map_err(sealing_failed)?;
        secrets.signing_key = self
            .keys
            .open(&signing_key_context(tenant), &secrets.signing_key)
            .map_err(sealing_failed)?;
        Ok(secrets)
    }

    /// A write batch with its private keys sealed on their way in.
    fn seal_writes(&self, tenant: &str, writes: Vec<Write>) -> Result<Vec<Write>> {
        writes
            .into_iter()
            .map(|w| match w {
                Write::PutTenantSecrets(s) => {
                    self.seal_tenant(tenant, s).map(Write::PutTenantSecrets)
                }
                Write::RotatePolicyKey {
                    expected_verify_key,
                    signing_key,
                    verify_key,
                    key_announcements,
                } => self
                    .keys
                    .seal(&signing_key_context(tenant), &signing_key)
                    .map_err(sealing_failed)
                    .map(|signing_key| Write::RotatePolicyKey {
                        expected_verify_key,
                        signing_key,
                        verify_key,
                        key_announcements,
                    }),
                other => Ok(other),
            })
            .collect()
    }

    /// Seals, with the primary master key, every stored secret that is not
    /// sealed with it yet: values from before encryption, and all of them
    /// after a new master key was made (rotation). `server_secrets` names
    /// the installation secrets to check. Returns how many were sealed.
    pub async fn reseal_all(&self, server_secrets: &[&str]) -> Result<usize> {
        let mut resealed = 0;
        for tenant in self.bounded(self.inner.tenants()).await? {
            let Some(stored) = self.bounded(self.inner.tenant_secrets(&tenant.id)).await? else {
                continue;
            };
            if !self.keys.needs_reseal(&stored.ca_key_pem)
                && !self.keys.needs_reseal(&stored.signing_key)
            {
                continue;
            }
            let plain = self.open_tenant(&tenant.id, stored)?;
            let sealed = self.seal_tenant(&tenant.id, plain)?;
            let audit = NewAudit {
                actor: "rampart-server".to_owned(),
                action: "tenant.secrets.seal".to_owned(),
                object_kind: "tenant".to_owned(),
                object_name: tenant.name.clone(),
                before: None,
                after: Some(serde_json::json!({ "master_key": self.keys.primary_id() })),
            };
            self.bounded(self.inner.write(
                &tenant.id,
                tenant.created_at,
                vec![Write::PutTenantSecrets(sealed)],
                vec![audit],
            ))
            .await?;
            resealed += 1;
        }
        for name in server_secrets {
            let Some(stored) = self.bounded(self.inner.server_secret(name)).await? else {
                continue;
            };
            if !self.keys.needs_reseal(&stored) {
                continue;
            }
            let context = server_context(name);
            let plain = self.keys.open(&context, &stored).map_err(sealing_failed)?;
            let sealed = self.keys.seal(&context, &plain).map_err(sealing_failed)?;
            self.bounded(self.inner.replace_server_secret(name, &stored, &sealed))
                .await?;
            resealed += 1;
        }
        Ok(resealed)
    }
}

#[async_trait]
impl Store for GuardedStore {
    async fn ready(&self) -> Result<()> {
        self.bounded(self.inner.ready()).await
    }

    async fn create_tenant(&self, name: &str, at: Timestamp) -> Result<Tenant> {
        self.bounded(self.inner.create_tenant(name, at)).await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.bounded(self.inner.tenants()).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        self.bounded(self.inner.tenant_by_name(name)).await
    }

    async fn write(
        &self,
        tenant: &str,
        at: Timestamp,
        writes: Vec<Write>,
        audit: Vec<NewAudit>,
    ) -> Result<()> {
        let writes = self.seal_writes(tenant, writes)?;
        self.devices_changed(tenant);
        let written = self
            .bounded_write(self.inner.write(tenant, at, writes, audit))
            .await;
        self.devices_changed(tenant);
        written
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<Option<Value>> {
        self.bounded(self.inner.tenant_settings(tenant)).await
    }

    async fn tenant_settings_version(&self, tenant: &str) -> Result<u64> {
        self.bounded(self.inner.tenant_settings_version(tenant))
            .await
    }

    async fn tenant_secrets(&self, tenant: &str) -> Result<Option<TenantSecrets>> {
        self.bounded(self.inner.tenant_secrets(tenant))
            .await?
            .map(|s| self.open_tenant(tenant, s))
            .transpose()
    }

    async fn server_secret(&self, name: &str) -> Result<Option<String>> {
        self.bounded(self.inner.server_secret(name))
            .await?
            .map(|v| {
                self.keys
                    .open(&server_context(name), &v)
                    .map_err(sealing_failed)
            })
            .transpose()
    }

    async fn put_server_secret_if_absent(&self, name: &str, value: &str) -> Result<String> {
        let context = server_context(name);
        let sealed = self.keys.seal(&context, value).map_err(sealing_failed)?;
        let stored = self
            .bounded(self.inner.put_server_secret_if_absent(name, &sealed))
            .await?;
        self.keys.open(&context, &stored).map_err(sealing_failed)
    }

    async fn replace_server_secret(&self, name: &str, expected: &str, value: &str) -> Result<()> {
        // Callers give plain values; compare against the stored one opened.
        let context = server_context(name);
        let Some(stored) = self.bounded(self.inner.server_secret(name)).await? else {
            return Err(StoreError::NotFound(format!("server secret {name}")));
        };
        let current = self.keys.open(&context, &stored).map_err(sealing_failed)?;
        if current != expected {
            return Err(StoreError::Conflict(format!(
                "server secret {name} changed meanwhile"
            )));
        }
        let sealed = self.keys.seal(&context, value).map_err(sealing_failed)?;
        self.bounded(self.inner.replace_server_secret(name, &stored, &sealed))
            .await
    }

    async fn objects(&self, tenant: &str, kind: ObjectKind) -> Result<Vec<ObjectRecord>> {
        self.bounded(self.inner.objects(tenant, kind)).await
    }

    async fn object(
        &self,
        tenant: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<ObjectRecord>> {
        self.bounded(self.inner.object(tenant, kind, name)).await
    }

    async fn object_history(
        &self,
        tenant: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Vec<ObjectRecord>> {
        self.bounded(self.inner.object_history(tenant, kind, name))
            .await
    }

    async fn devices(&self, tenant: &str) -> Result<Vec<DeviceRecord>> {
        self.bounded(self.inner.devices(tenant)).await
    }

    async fn device(&self, tenant: &str, name: &str) -> Result<Option<DeviceRecord>> {
        self.bounded(self.inner.device(tenant, name)).await
    }

    async fn device_by_id(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>> {
        let Some(cache) = &self.devices else {
            return self.bounded(self.inner.device_by_id(tenant, id)).await;
        };
        let generation = match cache.lookup(tenant, id) {
            Lookup::Hit(record) => return Ok(Some(*record)),
            Lookup::Miss(generation) => generation,
        };
        let found = self.bounded(self.inner.device_by_id(tenant, id)).await?;
        if let Some(record) = &found {
            cache.insert(tenant, record, generation);
        }
        Ok(found)
    }

    async fn device_tombstone(&self, tenant: &str, id: &str) -> Result<Option<DeviceTombstone>> {
        self.bounded(self.inner.device_tombstone(tenant, id)).await
    }

    async fn touch_devices(&self, tenant: &str, seen: Vec<(String, Timestamp)>) -> Result<()> {
        self.devices_changed(tenant);
        let touched = self.bounded(self.inner.touch_devices(tenant, seen)).await;
        self.devices_changed(tenant);
        touched
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
        let writes = self.seal_writes(tenant, writes)?;
        self.devices_changed(tenant);
        let recorded = self
            .bounded(
                self.inner
                    .record_report(tenant, device, statuses, at, writes, audit),
            )
            .await;
        self.devices_changed(tenant);
        recorded
    }

    async fn statuses(&self, tenant: &str) -> Result<Vec<StatusRecord>> {
        self.bounded(self.inner.statuses(tenant)).await
    }

    async fn device_statuses(&self, tenant: &str, device: &str) -> Result<Vec<StatusRecord>> {
        self.bounded(self.inner.device_statuses(tenant, device))
            .await
    }

    async fn device_problems(&self, tenant: &str) -> Result<Vec<DeviceProblems>> {
        self.bounded(self.inner.device_problems(tenant)).await
    }

    async fn device_problems_of(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<DeviceProblems>> {
        self.bounded(self.inner.device_problems_of(tenant, names))
            .await
    }

    async fn device_page(
        &self,
        tenant: &str,
        query: &rampart_store::page::DeviceQuery,
    ) -> Result<rampart_store::page::DevicePage> {
        self.bounded(self.inner.device_page(tenant, query)).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.bounded(self.inner.token_by_hash(hash)).await
    }

    async fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>> {
        self.bounded(self.inner.tokens(tenant)).await
    }

    async fn touch_token(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()> {
        self.bounded(self.inner.touch_token(tenant, id, at)).await
    }

    async fn purge_tokens(&self, now: Timestamp, idle_since: Timestamp) -> Result<u64> {
        self.bounded(self.inner.purge_tokens(now, idle_since)).await
    }

    async fn users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        self.bounded(self.inner.users(tenant)).await
    }

    async fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>> {
        self.bounded(self.inner.user(tenant, username)).await
    }

    async fn onboarding_tokens(&self, tenant: &str) -> Result<Vec<OnboardingTokenRecord>> {
        self.bounded(self.inner.onboarding_tokens(tenant)).await
    }

    async fn consume_onboarding_token(&self, hash: &str, now: Timestamp) -> Result<TokenUse> {
        self.bounded(self.inner.consume_onboarding_token(hash, now))
            .await
    }

    async fn audit(&self, tenant: &str, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.bounded(self.inner.audit(tenant, query)).await
    }
}

#[cfg(test)]
mod device_cache_tests {
    use super::*;

    fn record(id: &str, tags: &[&str]) -> DeviceRecord {
        DeviceRecord {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..crate::device::api::blank_device(id.into(), format!("name-{id}"), 0)
        }
    }

    #[test]
    fn a_read_that_started_before_a_write_is_not_kept() {
        let cache = DeviceCache::default();
        let Lookup::Miss(generation) = cache.lookup("t", "d") else {
            panic!("empty cache")
        };
        // The write lands (and invalidates) while the read is in flight:
        // what the read got may be from before the write.
        cache.invalidate("t");
        cache.insert("t", &record("d", &["old"]), generation);
        assert!(matches!(cache.lookup("t", "d"), Lookup::Miss(_)));

        let Lookup::Miss(generation) = cache.lookup("t", "d") else {
            panic!("nothing kept")
        };
        cache.insert("t", &record("d", &["new"]), generation);
        let Lookup::Hit(hit) = cache.lookup("t", "d") else {
            panic!("kept")
        };
        assert_eq!(hit.tags, ["new"]);
        // Another tenant's write leaves this tenant's records alone.
        cache.invalidate("other");
        assert!(matches!(cache.lookup("t", "d"), Lookup::Hit(_)));
        cache.invalidate("t");
        assert!(matches!(cache.lookup("t", "d"), Lookup::Miss(_)));
    }
}
