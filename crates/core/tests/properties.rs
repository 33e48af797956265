//! Properties of resolution: the order of policies and groups never changes
//! the result, and the digest is a deterministic function of the content.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use proptest::prelude::*;
use rampart_core::catalog::Catalog;
use rampart_core::documents::{load_documents, Bundle};
use rampart_core::model::{ConflictPolicy, TenantSettings};
use rampart_core::resolve::{resolve, Resolution};

fn fleet() -> Bundle {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    load_documents(&files, Catalog::builtin()).unwrap()
}

fn resolve_all(
    b: &Bundle,
    policies: &[rampart_core::model::Policy],
    groups: &[rampart_core::model::Group],
    tenant: &TenantSettings,
) -> Vec<Resolution> {
    b.devices
        .iter()
        .map(|d| resolve(d, groups, policies, tenant, Catalog::builtin()))
        .collect()
}

fn tenants() -> impl Strategy<Value = TenantSettings> {
    prop_oneof![
        Just(TenantSettings::default()),
        Just(TenantSettings {
            conflict_policy: ConflictPolicy::MostSecureWins,
            ..TenantSettings::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn resolution_does_not_depend_on_the_order_of_policies_or_groups(
        seed_policies in Just(fleet().policies).prop_shuffle(),
        seed_groups in Just(fleet().groups).prop_shuffle(),
        tenant in tenants(),
    ) {
        let b = fleet();
        let expected = resolve_all(&b, &b.policies, &b.groups, &tenant);
        let shuffled = resolve_all(&b, &seed_policies, &seed_groups, &tenant);
        prop_assert_eq!(expected, shuffled);
    }

    #[test]
    fn any_subset_of_policies_resolves_the_same_in_any_order(
        keep in proptest::collection::vec(any::<bool>(), 16),
        order in Just((0..16usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let b = fleet();
        let tenant = TenantSettings::default();
        let subset: Vec<_> = b.policies.iter().enumerate().filter(|(i, _)| keep[*i % keep.len()]).map(|(_, p)| p.clone()).collect();
        let reordered: Vec<_> = order.iter().filter_map(|i| subset.get(*i).cloned()).chain(subset.iter().skip(16).cloned()).collect();
        prop_assert_eq!(resolve_all(&b, &subset, &b.groups, &tenant), resolve_all(&b, &reordered, &b.groups, &tenant));
    }
}

#[test]
fn the_digest_is_deterministic_and_distinct_per_effective_policy() {
    let b = fleet();
    let tenant = b.tenant.clone().unwrap_or_default();
    let first = resolve_all(&b, &b.policies, &b.groups, &tenant);
    let again = resolve_all(&b, &b.policies, &b.groups, &tenant);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.digest, b.digest);
    }
    // web-01 and web-02 get identical policies: identical digests, although
    // their names differ. db-01 gets something else.
    let by = |n: &str| first.iter().find(|r| r.device == n).unwrap().digest.clone();
    assert_eq!(by("web-01"), by("web-02"));
    assert_ne!(by("web-01"), by("db-01"));
}
