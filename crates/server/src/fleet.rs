//! A tenant's whole state as domain values, and what changes would do to it.
//!
//! Stored documents are turned back into checked `rampart-core` values here,
//! and every effective policy the server shows, previews or reports comes
//! from `rampart_core::resolve::resolve` on this state — the same function the
//! offline `rampart plan` calls.

use std::collections::{BTreeMap, BTreeSet};

use rampart_core::model::{Device, DeviceType, Group, Platform, Policy, TenantSettings};
use rampart_core::resolve::{resolve, unmanaged, Conflict, Resolution};
use rampart_core::validate::{group_from_json, policy_from_json, tenant_settings_from_json};
use rampart_proto::DeviceImpact;
use rampart_store::{DeviceRecord, ObjectKind, ObjectRecord};

use crate::error::ApiResult;
use crate::state::AppState;
use crate::views::conflict_view;

/// `managed_by` of a device Rampart manages.
pub const MANAGED_BY_RAMPART: &str = "rampart";

/// Everything resolution needs for one tenant.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub settings: TenantSettings,
    pub policies: Vec<Policy>,
    pub groups: Vec<Group>,
    pub devices: Vec<DeviceRecord>,
    pub policy_records: Vec<ObjectRecord>,
    pub group_records: Vec<ObjectRecord>,
}

impl Fleet {
    /// The tenant's policies, groups and settings, without devices: what the
    /// device channel caches (`PolicyCache`).
    pub async fn load_policies(state: &AppState, tenant: &str) -> ApiResult<Fleet> {
        let store = &state.store;
        let settings = match store.tenant_settings(tenant).await? {
            Some(doc) => tenant_settings_from_json(&doc, &TenantSettings::default())
                .unwrap_or_else(|errors| {
                    tracing::warn!(
                        tenant,
                        ?errors,
                        "stored tenant settings no longer validate; using defaults"
                    );
                    TenantSettings::default()
                }),
            None => TenantSettings::default(),
        };
        let policy_records = store.objects(tenant, ObjectKind::Policy).await?;
        let group_records = store.objects(tenant, ObjectKind::Group).await?;
        let policies = policy_records
            .iter()
            .filter_map(|r| match policy_from_json(&r.doc, state.catalog, r.version, r.modified_at) {
                Ok(p) => Some(p),
                Err(errors) => {
                    // A catalog change can invalidate a stored policy; it is
                    // left out of resolution and shown as-is in the API.
                    tracing::warn!(tenant, policy = %r.name, ?errors, "stored policy no longer validates; not resolved");
                    None
                }
            })
            .collect();
        let groups = group_records
            .iter()
            .filter_map(|r| group_from_json(&r.doc).ok())
            .collect();
        Ok(Fleet {
            settings,
            policies,
            groups,
            devices: Vec::new(),
            policy_records,
            group_records,
        })
    }

    /// Everything, devices included.
    pub async fn load(state: &AppState, tenant: &str) -> ApiResult<Fleet> {
        let mut fleet = Fleet::load_policies(state, tenant).await?;
        fleet.devices = state.store.devices(tenant).await?;
        Ok(fleet)
    }

    /// The engine's view of a stored device; `None` when its OS is unknown.
    pub fn device(record: &DeviceRecord) -> Option<Device> {
        Some(Device {
            name: record.name.clone(),
            os: Platform::parse(&record.os)?,
            os_version: record.os_version.clone(),
            device_type: DeviceType::parse(&record.device_type).unwrap_or(DeviceType::Workstation),
            tags: record.tags.clone(),
        })
    }

    /// What the device gets. A device another management authority manages
    /// gets nothing unless the tenant allows takeover; a domain controller
    /// nothing unless the tenant manages domain controllers.
    pub fn resolve(&self, record: &DeviceRecord) -> Option<Resolution> {
        let device = Fleet::device(record)?;
        if record.managed_by != MANAGED_BY_RAMPART && !self.settings.allow_takeover {
            return Some(unmanaged(
                &record.name,
                format!(
                    "the device is managed by {}; the tenant does not allow takeover",
                    record.managed_by
                ),
            ));
        }
        // The device channel found it a domain controller (its facts) and the
        // tenant does not manage those: nothing, until the tenant allows it.
        if record.enrollment_code.as_deref()
            == Some(rampart_proto::device::codes::DOMAIN_CONTROLLER_NOT_ALLOWED)
            && !self.settings.manage_domain_controllers
        {
            return Some(unmanaged(
                &record.name,
                "the device is a domain controller; the tenant does not manage domain controllers (manage_domain_controllers)".to_string(),
            ));
        }
        Some(resolve(
            &device,
            &self.groups,
            &self.policies,
            &self.settings,
            rampart_core::catalog::Catalog::builtin(),
        ))
    }

    /// Every device's resolution, by device name.
    pub fn resolve_all(&self) -> BTreeMap<String, Resolution> {
        self.devices
            .iter()
            .filter_map(|d| self.resolve(d).map(|r| (d.name.clone(), r)))
            .collect()
    }

    /// Names of the devices a group holds now.
    pub fn members(&self, group: &Group) -> Vec<String> {
        self.devices
            .iter()
            .filter_map(Fleet::device)
            .filter(|d| group.contains(d))
            .map(|d| d.name)
            .collect()
    }

    /// The version a changed policy will get: one more than now, or 1.
    pub fn next_version(&self, name: &str) -> u64 {
        self.policy_records
            .iter()
            .find(|r| r.name == name)
            .map_or(1, |r| r.version + 1)
    }
}

/// Devices whose effective policy differs between two resolutions, with what
/// differs. A device only in `after` (or only in `before`) counts as changed.
pub fn impact(
    before: &BTreeMap<String, Resolution>,
    after: &BTreeMap<String, Resolution>,
) -> Vec<DeviceImpact> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        let settings =
            |r: Option<&Resolution>| -> BTreeMap<String, (serde_json::Value, Vec<String>)> {
                r.map(|r| {
                    r.settings
                        .iter()
                        .map(|s| (s.setting.clone(), (s.value.clone(), s.sources.clone())))
                        .collect()
                })
                .unwrap_or_default()
            };
        let (sb, sa) = (settings(b), settings(a));
        let added: Vec<String> = sa
            .keys()
            .filter(|k| !sb.contains_key(*k))
            .cloned()
            .collect();
        let removed: Vec<String> = sb
            .keys()
            .filter(|k| !sa.contains_key(*k))
            .cloned()
            .collect();
        let changed: Vec<String> = sa
            .iter()
            .filter(|(k, v)| sb.get(*k).is_some_and(|old| old != *v))
            .map(|(k, _)| k.clone())
            .collect();
        let conflicts = |r: Option<&Resolution>| -> Vec<Conflict> {
            r.map(|r| r.conflicts.clone()).unwrap_or_default()
        };
        let (cb, ca) = (conflicts(b), conflicts(a));
        let conflicts_added: Vec<_> = ca
            .iter()
            .filter(|c| !cb.contains(c))
            .map(conflict_view)
            .collect();
        let conflicts_removed: Vec<_> = cb
            .iter()
            .filter(|c| !ca.contains(c))
            .map(conflict_view)
            .collect();
        let managed_changed = b.map(|r| r.managed) != a.map(|r| r.managed);
        if added.is_empty()
            && removed.is_empty()
            && changed.is_empty()
            && conflicts_added.is_empty()
            && conflicts_removed.is_empty()
            && !managed_changed
        {
            continue;
        }
        out.push(DeviceImpact {
            device: name.clone(),
            managed_before: b.is_some_and(|r| r.managed),
            managed_after: a.is_some_and(|r| r.managed),
            added,
            changed,
            removed,
            conflicts_added,
            conflicts_removed,
            digest_before: b.map(|r| r.digest.clone()).unwrap_or_default(),
            digest_after: a.map(|r| r.digest.clone()).unwrap_or_default(),
        });
    }
    out
}
