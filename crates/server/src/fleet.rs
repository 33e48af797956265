//! A tenant's whole state as domain values, and what changes would do to it.
//!
//! Stored documents are turned back into checked `rampart-core` values here,
//! and every effective policy the server shows, previews or reports comes
//! from `rampart_core::resolve::resolve` on this state — the same function the
//! offline `rampart plan` calls.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rampart_core::documents::memberships;
use rampart_core::model::{Device, DeviceType, Group, Platform, Policy, TenantSettings};
use rampart_core::resolve::{resolve, targets, unmanaged, Conflict, Resolution};
use rampart_core::validate::{group_from_json, policy_from_json, tenant_settings_from_json};
use rampart_proto::DeviceImpact;
use rampart_store::{DeviceRecord, ObjectKind, ObjectRecord};

use crate::error::ApiResult;
use crate::rollout::ActiveRollout;
use crate::state::AppState;
use crate::views::conflict_view;

/// Where a device stands in a policy's staged rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entitlement {
    /// It has been given the new revision.
    pub reached: bool,
    /// The stage (0-based) that reaches it; `None`: only completion does.
    pub stage: Option<usize>,
}

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
    /// Staged rollouts under way: devices they have not reached resolve
    /// against the policy's previous revision.
    pub rollouts: Vec<ActiveRollout>,
    /// Resolutions already computed against this snapshot. A snapshot never
    /// changes (a policy, group or tenant change makes a new one), so an
    /// entry stays right for as long as the device's own inputs are the ones
    /// it was computed from; those inputs are the key.
    resolved: ResolutionCache,
}

/// What a resolution reads of a device record: everything `Fleet::resolve`
/// looks at, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResolveKey {
    /// A rollout's stages pick devices by id.
    id: String,
    name: String,
    os: String,
    os_version: String,
    device_type: String,
    tags: Vec<String>,
    managed_by: String,
    enrollment_code: Option<String>,
}

impl ResolveKey {
    fn of(record: &DeviceRecord) -> ResolveKey {
        ResolveKey {
            id: record.id.clone(),
            name: record.name.clone(),
            os: record.os.clone(),
            os_version: record.os_version.clone(),
            device_type: record.device_type.clone(),
            tags: record.tags.clone(),
            managed_by: record.managed_by.clone(),
            enrollment_code: record.enrollment_code.clone(),
        }
    }
}

/// The most resolutions one snapshot keeps; past it the cache starts over
/// (devices whose facts changed leave entries nobody asks for again).
const MAX_CACHED_RESOLUTIONS: usize = 250_000;

#[derive(Debug, Default)]
struct ResolutionCache(Arc<Mutex<HashMap<ResolveKey, Option<Arc<Resolution>>>>>);

/// A copy of a fleet starts with an empty cache: copies are made to be
/// changed (a preview adds and removes policies), and the entries of the
/// original would be wrong for them.
impl Clone for ResolutionCache {
    fn clone(&self) -> Self {
        ResolutionCache::default()
    }
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
        let rollouts = store
            .objects(tenant, ObjectKind::Rollout)
            .await?
            .iter()
            .filter_map(|r| ActiveRollout::from_record(r, state.catalog))
            .collect();
        Ok(Fleet {
            settings,
            policies,
            groups,
            devices: Vec::new(),
            policy_records,
            group_records,
            rollouts,
            resolved: ResolutionCache::default(),
        })
    }

    /// The device channel's shared policy snapshot with the tenant's
    /// devices, sharing the snapshot's resolutions: what reports read, so a
    /// report resolves only devices whose inputs changed since the last
    /// check-in or report, not every device every time.
    pub async fn load_shared(state: &AppState, tenant: &str) -> ApiResult<Fleet> {
        let snapshot = state.policies.get(state, tenant).await?;
        let devices = state.store.devices(tenant).await?;
        Ok(snapshot.with_devices(devices))
    }

    /// This snapshot with `devices`; the policies are the same, so the
    /// resolutions already computed are shared, not copied.
    fn with_devices(&self, devices: Vec<DeviceRecord>) -> Fleet {
        Fleet {
            settings: self.settings.clone(),
            policies: self.policies.clone(),
            groups: self.groups.clone(),
            devices,
            policy_records: self.policy_records.clone(),
            group_records: self.group_records.clone(),
            rollouts: self.rollouts.clone(),
            resolved: ResolutionCache(self.resolved.0.clone()),
        }
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
            &self.entitled_policies(record, &device),
            &self.settings,
            rampart_core::catalog::Catalog::builtin(),
        ))
    }

    /// The policy revisions a device is entitled to: the current ones,
    /// except where a staged rollout has not reached it yet.
    fn entitled_policies(&self, record: &DeviceRecord, device: &Device) -> Cow<'_, [Policy]> {
        if self.rollouts.is_empty() {
            return Cow::Borrowed(&self.policies);
        }
        let member_of = memberships(device, &self.groups);
        let mut policies = self.policies.clone();
        for r in &self.rollouts {
            if r.reaches(&record.id, |g| member_of.contains(g)) {
                continue;
            }
            policies.retain(|p| p.name != r.policy);
            policies.extend(r.previous.clone());
        }
        Cow::Owned(policies)
    }

    /// Whether the current revision of `policy` targets the device.
    pub fn targeted_by(&self, record: &DeviceRecord, policy: &str) -> bool {
        let Some(device) = Fleet::device(record) else {
            return false;
        };
        let member_of = memberships(&device, &self.groups);
        self.policies
            .iter()
            .any(|p| p.name == policy && targets(p, &device, &member_of))
    }

    /// Where a device stands in the active rollout of `policy`: `None` when
    /// there is none or neither revision targets the device.
    pub fn rollout_entitlement(&self, record: &DeviceRecord, policy: &str) -> Option<Entitlement> {
        let rollout = self.rollouts.iter().find(|r| r.policy == policy)?;
        let device = Fleet::device(record)?;
        let member_of = memberships(&device, &self.groups);
        let targeted = self
            .policies
            .iter()
            .filter(|p| p.name == policy)
            .chain(rollout.previous.iter())
            .any(|p| targets(p, &device, &member_of));
        targeted.then(|| Entitlement {
            reached: rollout.reaches(&record.id, |g| member_of.contains(g)),
            stage: rollout.stage_of(&record.id, |g| member_of.contains(g)),
        })
    }

    /// [`Fleet::resolve`], computed once per device and snapshot: unchanged
    /// check-ins and long polls cost a hash lookup, not a resolution. Only
    /// for a fleet that is no longer changed (the `PolicyCache`'s shared
    /// snapshots): the key holds the device's inputs, not the policies'.
    pub fn resolve_cached(&self, record: &DeviceRecord) -> Option<Arc<Resolution>> {
        let key = ResolveKey::of(record);
        if let Ok(cache) = self.resolved.0.lock() {
            if let Some(hit) = cache.get(&key) {
                return hit.clone();
            }
        }
        let fresh = self.resolve(record).map(Arc::new);
        if let Ok(mut cache) = self.resolved.0.lock() {
            if cache.len() >= MAX_CACHED_RESOLUTIONS {
                cache.clear();
            }
            cache.insert(key, fresh.clone());
        }
        fresh
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

impl Fleet {
    /// How each device's effective policy would change from this state to
    /// `after`, resolved one device at a time (two resolutions alive at
    /// once, never two of the whole fleet). With `changed`, the change
    /// touches only those policies: a device that no version of them targets
    /// (before, after, or a rollout's previous revision) keeps its policy and
    /// is not resolved at all.
    pub fn impact_on(
        &self,
        after: &Fleet,
        changed: Option<&BTreeSet<String>>,
    ) -> Vec<DeviceImpact> {
        let mut out = Vec::new();
        for record in &self.devices {
            if let Some(names) = changed {
                if !self.targeted_by_any(record, names) && !after.targeted_by_any(record, names) {
                    continue;
                }
            }
            let (b, a) = (self.resolve(record), after.resolve(record));
            out.extend(device_impact(&record.name, b.as_ref(), a.as_ref()));
        }
        out
    }

    /// Whether any revision of the named policies this state holds (the
    /// current ones and rollouts' previous ones) targets the device.
    fn targeted_by_any(&self, record: &DeviceRecord, names: &BTreeSet<String>) -> bool {
        let Some(device) = Fleet::device(record) else {
            return true;
        };
        let member_of = memberships(&device, &self.groups);
        self.policies
            .iter()
            .chain(self.rollouts.iter().filter_map(|r| r.previous.as_ref()))
            .any(|p| names.contains(&p.name) && targets(p, &device, &member_of))
    }
}

/// How one device's effective policy differs between two resolutions;
/// `None` when it does not. A device with only one of them counts as
/// changed.
fn device_impact(
    name: &str,
    b: Option<&Resolution>,
    a: Option<&Resolution>,
) -> Option<DeviceImpact> {
    let settings = |r: Option<&Resolution>| -> BTreeMap<String, (serde_json::Value, Vec<String>)> {
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
        return None;
    }
    Some(DeviceImpact {
        device: name.to_string(),
        managed_before: b.is_some_and(|r| r.managed),
        managed_after: a.is_some_and(|r| r.managed),
        added,
        changed,
        removed,
        conflicts_added,
        conflicts_removed,
        digest_before: b.map(|r| r.digest.clone()).unwrap_or_default(),
        digest_after: a.map(|r| r.digest.clone()).unwrap_or_default(),
        rollout: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example fleet's policies, groups and settings; `keep` picks which
    /// policies are in the snapshot (a policy created or deleted).
    fn snapshot(keep: &[bool], allow_takeover: bool, dc: bool) -> Fleet {
        let files = rampart_policy_files::read_documents(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/fleet"
        )))
        .expect("examples");
        let bundle = rampart_core::documents::load_documents(
            &files,
            rampart_core::catalog::Catalog::builtin(),
        )
        .expect("examples load");
        let mut settings = bundle.tenant.unwrap_or_default();
        settings.allow_takeover = allow_takeover;
        settings.manage_domain_controllers = dc;
        let policies = bundle
            .policies
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.get(*i).copied().unwrap_or(true))
            .map(|(_, p)| p)
            .collect();
        Fleet {
            settings,
            policies,
            groups: bundle.groups,
            devices: Vec::new(),
            policy_records: Vec::new(),
            group_records: Vec::new(),
            rollouts: Vec::new(),
            resolved: ResolutionCache::default(),
        }
    }

    fn record(name: &str) -> DeviceRecord {
        DeviceRecord {
            os: "linux".into(),
            os_version: "22.04".into(),
            device_type: "server".into(),
            managed_by: MANAGED_BY_RAMPART.into(),
            enrollment_status: "enrolled".into(),
            ..crate::device::api::blank_device(format!("id-{name}"), name.to_string(), 0)
        }
    }

    /// One change an administrator or an agent can make.
    #[derive(Debug, Clone)]
    enum Change {
        Tags(usize, Vec<String>),
        Os(usize, &'static str, &'static str),
        Type(usize, &'static str),
        ManagedBy(usize, &'static str),
        DomainController(usize, bool),
        /// Policies created or deleted, tenant switches flipped: a new
        /// snapshot, as the policy cache makes after any such change.
        Policies(Vec<bool>, bool, bool),
        /// Something unrelated to resolution (a check-in time).
        CheckIn(usize, i64),
    }

    fn change() -> impl Strategy<Value = Change> {
        let tag = prop::sample::select(vec![
            "web",
            "db",
            "prod",
            "lab",
            "finance",
            "MDE-Management",
            "exec",
        ]);
        prop_oneof![
            (
                0..4usize,
                prop::collection::vec(tag.prop_map(String::from), 0..4)
            )
                .prop_map(|(d, t)| Change::Tags(d, t)),
            (
                0..4usize,
                prop::sample::select(vec![
                    ("linux", "22.04"),
                    ("windows", "10.0.22631"),
                    ("macos", "14.5"),
                    ("plan9", "4")
                ])
            )
                .prop_map(|(d, (os, v))| Change::Os(d, os, v)),
            (
                0..4usize,
                prop::sample::select(vec!["server", "workstation"])
            )
                .prop_map(|(d, t)| Change::Type(d, t)),
            (
                0..4usize,
                prop::sample::select(vec!["rampart", "intune", "sccm"])
            )
                .prop_map(|(d, m)| Change::ManagedBy(d, m)),
            (0..4usize, any::<bool>()).prop_map(|(d, dc)| Change::DomainController(d, dc)),
            (
                prop::collection::vec(any::<bool>(), 16),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(k, t, dc)| Change::Policies(k, t, dc)),
            (0..4usize, 0..1_000_000i64).prop_map(|(d, at)| Change::CheckIn(d, at)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever changes, the cached resolution is the one a full
        /// resolution gives (it fails if the key misses an input).
        #[test]
        fn the_cache_always_equals_a_full_resolution(changes in prop::collection::vec(change(), 1..40)) {
            let mut fleet = snapshot(&[], false, false);
            let mut devices: Vec<DeviceRecord> = ["a", "b", "c", "d"].iter().map(|n| record(n)).collect();
            for c in changes {
                match c {
                    Change::Tags(d, t) => devices[d].tags = t,
                    Change::Os(d, os, v) => {
                        devices[d].os = os.into();
                        devices[d].os_version = v.into();
                    }
                    Change::Type(d, t) => devices[d].device_type = t.into(),
                    Change::ManagedBy(d, m) => devices[d].managed_by = m.into(),
                    Change::DomainController(d, dc) => {
                        devices[d].enrollment_code = dc.then(|| {
                            rampart_proto::device::codes::DOMAIN_CONTROLLER_NOT_ALLOWED.to_string()
                        });
                    }
                    Change::Policies(keep, takeover, dc) => fleet = snapshot(&keep, takeover, dc),
                    Change::CheckIn(d, at) => devices[d].last_check_in = Some(at),
                }
                for device in &devices {
                    let cached = fleet.resolve_cached(device).map(|r| (*r).clone());
                    prop_assert_eq!(cached, fleet.resolve(device));
                }
            }
        }
    }

    #[test]
    fn a_copy_does_not_share_the_originals_resolutions() {
        let fleet = snapshot(&[], false, false);
        let device = record("web-01");
        let before = fleet.resolve_cached(&device).expect("linux resolves");
        let mut after = fleet.clone();
        after.policies.clear();
        let resolved = after.resolve_cached(&device).expect("resolves");
        assert_ne!(resolved.digest, before.digest);
        assert!(resolved.settings.is_empty());
    }
}
