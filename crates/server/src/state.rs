//! Shared state of one server process, handed to every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rampart_core::catalog::Catalog;
use rampart_store::Store;

use crate::clock::Clock;
use crate::device::hub::SyncHub;
use crate::device::last_seen::LastSeen;
use crate::device::trust::Trust;
use crate::error::ApiResult;
use crate::policy_cache::PolicyCache;

/// Settings of the device channel.
#[derive(Clone, Debug)]
pub struct DeviceSettings {
    /// Lifetime of a device certificate; agents renew at two thirds.
    pub cert_lifetime_secs: i64,
    /// The device channel's base URL, as written into onboarding packages.
    pub url: String,
    /// Requests one device may make per minute.
    pub requests_per_minute: u32,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub catalog: &'static Catalog,
    pub clock: Arc<dyn Clock>,
    pub trust: Arc<Trust>,
    pub device: DeviceSettings,
    pub hub: SyncHub,
    pub policies: PolicyCache,
    pub last_seen: LastSeen,
    /// Nudges to and from the other replicas.
    pub fanout: crate::fanout::Fanout,
    /// Failed logins per username and per address.
    pub logins: crate::login_throttle::LoginThrottle,
    /// Serializes the changes that could remove a tenant's last
    /// global_admin, so two concurrent ones cannot each leave the other
    /// as the last and both proceed (within this process).
    pub admin_changes: Arc<tokio::sync::Mutex<()>>,
    /// A TLS-terminating proxy sits in front (`--behind-tls-proxy`): the
    /// client's address is the last one it appends to `X-Forwarded-For`,
    /// not the connection's (which is the proxy's for everyone).
    pub behind_proxy: bool,
    /// Tenant id → name. Tenants are never renamed, so entries never go stale.
    tenant_names: Arc<RwLock<HashMap<String, String>>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        trust: Arc<Trust>,
        device: DeviceSettings,
    ) -> AppState {
        AppState {
            store,
            catalog: Catalog::builtin(),
            clock,
            trust,
            device,
            hub: SyncHub::default(),
            policies: PolicyCache::default(),
            last_seen: LastSeen::default(),
            fanout: crate::fanout::Fanout::default(),
            logins: Default::default(),
            admin_changes: Arc::default(),
            behind_proxy: false,
            tenant_names: Arc::default(),
        }
    }

    /// Something that can change effective policies changed in `tenant`:
    /// forget the cached policy set and wake, paced, the waiting devices
    /// whose policy is no longer the one they hold.
    pub fn policy_changed(&self, tenant: &str) {
        self.fanout.publish(crate::fanout::Nudge::Policies {
            tenant: tenant.to_string(),
        });
        self.apply_policy_change(tenant);
    }

    /// Wakes a device, here or on the replica that holds its long poll;
    /// true when it is waiting on this replica.
    pub fn nudge_device(&self, tenant: &str, device: &str) -> bool {
        self.fanout.publish(crate::fanout::Nudge::Device {
            tenant: tenant.to_string(),
            device: device.to_string(),
        });
        self.hub.nudge(tenant, device)
    }

    /// `policy_changed` for this replica only.
    pub fn apply_policy_change(&self, tenant: &str) {
        self.policies.invalidate(tenant);
        let state = self.clone();
        let tenant = tenant.to_string();
        tokio::spawn(async move {
            let waiting = state.hub.waiting_in(&tenant);
            if waiting.is_empty() {
                return;
            }
            let (fleet, devices) = match (
                state.policies.get(&state, &tenant).await,
                state.store.devices(&tenant).await,
            ) {
                (Ok(f), Ok(d)) => (f, d),
                _ => return,
            };
            // One pass over the devices, not one per waiting device; the
            // resolutions computed here are the ones the woken devices'
            // check-ins then find in the snapshot's cache.
            let by_id: std::collections::HashMap<&str, &rampart_store::DeviceRecord> =
                devices.iter().map(|d| (d.id.as_str(), d)).collect();
            let stale: Vec<String> = waiting
                .into_iter()
                .filter(|(id, held)| {
                    by_id
                        .get(id.as_str())
                        .and_then(|d| fleet.resolve_cached(d))
                        .is_none_or(|r| &r.digest != held)
                })
                .map(|(id, _)| id)
                .collect();
            let woken = state.hub.nudge_paced(&tenant, stale).await;
            tracing::debug!(tenant, woken, "nudged devices after a policy change");
        });
    }

    /// The name of a tenant, from the cache or the store.
    pub async fn tenant_name(&self, id: &str) -> ApiResult<Option<String>> {
        if let Ok(names) = self.tenant_names.read() {
            if let Some(name) = names.get(id) {
                return Ok(Some(name.clone()));
            }
        }
        let tenants = self.store.tenants().await?;
        let mut found = None;
        if let Ok(mut names) = self.tenant_names.write() {
            for t in tenants {
                if t.id == id {
                    found = Some(t.name.clone());
                }
                names.insert(t.id, t.name);
            }
        }
        Ok(found)
    }
}
