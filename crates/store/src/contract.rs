//! The contract every [`Store`] backend passes: one suite, run by each
//! backend's `tests/contract.rs` through [`contract_tests!`](crate::contract_tests).
//!
//! Each function is one behaviour of the trait, written against `&dyn Store`
//! (the concurrency checks take an `Arc` so they can spawn tasks). Every
//! function creates its own tenant with a unique name, so the suite can run
//! in parallel and again and again against one shared database.
//!
//! A backend wires the suite up like this:
//!
//! ```text
//! rampart_store::contract_tests!(fresh_store());
//! ```
//!
//! where `fresh_store()` is an async expression yielding
//! `Option<impl Fixture>`; `None` skips the tests (say, when the database the
//! backend needs is not configured).

// This module is test code that lives in the library so both backends can
// share it; a failed check is reported by panicking, as in any test.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::{
    AuditQuery, DeviceRecord, DeviceTombstone, Expect, NewAudit, ObjectKind, OnboardingTokenRecord,
    Result, StatusRecord, Store, StoreError, Tenant, TenantSecrets, Timestamp, TokenRecord,
    TokenUse, UserRecord, Write,
};

/// A fresh store for one contract test, and whatever cleans up after it
/// (closing pools, removing a temporary file, dropping a test database).
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    fn store(&self) -> Arc<dyn Store>;
    /// Called once the test is over, whether it passed or not.
    async fn teardown(self);
}

/// Expands to one `#[tokio::test]` per contract function, so a failure names
/// the behaviour that broke. The argument is an async expression yielding
/// `Option<F>` where `F: Fixture`; it is evaluated once per test. The calling
/// crate needs `tokio` (with `rt-multi-thread` and `macros`) as a
/// dev-dependency.
#[macro_export]
macro_rules! contract_tests {
    ($fixture:expr) => {
        $crate::contract_tests!(@each $fixture, |store| &*store;
            tenants_are_unique_by_name,
            writes_to_an_unknown_tenant_fail,
            tenant_settings_round_trip,
            tenant_settings_updates_can_expect_a_version,
            objects_are_versioned,
            versions_are_not_reused_after_delete,
            writes_apply_in_order,
            expectations_are_enforced,
            failed_batches_leave_nothing_behind,
            devices_round_trip,
            deleting_a_device_deletes_its_statuses,
            statuses_store_only_changes,
            a_status_report_and_its_writes_are_one_transaction,
            problems_are_counted_per_device,
            device_pages_filter_sort_and_walk_like_the_whole_list,
            tokens_are_found_by_hash,
            users_are_unique_per_tenant,
            tenant_and_object_names_are_unique_whatever_their_case,
            users_are_updated_and_deleted_with_their_sessions,
            tokens_record_use_and_expired_ones_are_purged,
            audit_is_newest_first_and_paged,
            tenants_are_isolated,
            tenant_secrets_round_trip,
            policy_keys_rotate_only_from_the_expected_key,
            server_secrets_are_written_once,
            a_migrated_store_is_ready,
            server_secrets_are_replaced_only_from_the_expected_value,
            onboarding_tokens_round_trip,
            onboarding_tokens_are_consumed,
            revoked_onboarding_tokens_are_unknown,
            device_identity_round_trips,
            issued_policy_versions_only_go_up,
            device_facts_keep_what_the_agent_does_not_report,
            touch_devices_moves_last_check_in_forward,
            device_names_are_unique_whatever_their_case,
            deleted_devices_leave_tombstones,
            reenroll_approvals_work_once,
        );
        // These spawn tasks of their own, so they take the `Arc`.
        $crate::contract_tests!(@each $fixture, |store| &store;
            concurrent_version_writers_one_wins,
            concurrent_creators_one_wins,
            concurrent_token_consumers_share_its_uses,
            concurrent_server_secret_writers_converge,
            concurrent_policy_issuers_one_wins,
            concurrent_enrollments_of_one_name_one_wins,
        );
    };
    (@each $fixture:expr, |$store:ident| $arg:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(fixture) = $fixture.await else {
                    return;
                };
                let $store = $crate::contract::Fixture::store(&fixture);
                // The check runs in its own task so that a failure (a panic)
                // still lets the fixture clean up before it is reported.
                let outcome =
                    ::tokio::spawn(async move { $crate::contract::$name($arg).await }).await;
                $crate::contract::Fixture::teardown(fixture).await;
                if let Err(err) = outcome {
                    ::std::panic::resume_unwind(err.into_panic());
                }
            }
        )*
    };
}

const T0: Timestamp = 1_700_000_000;

/// A name no other run of the suite uses, so runs can share a database.
fn unique(label: &str) -> String {
    format!("contract-{label}-{}", uuid::Uuid::new_v4().simple())
}

async fn new_tenant(store: &dyn Store, label: &str) -> Tenant {
    store
        .create_tenant(&unique(label), T0)
        .await
        .expect("create a tenant")
}

fn put(kind: ObjectKind, name: &str, doc: Value, expect: Expect) -> Write {
    Write::PutObject {
        kind,
        name: name.to_owned(),
        doc,
        expect,
        by: "alice".to_owned(),
    }
}

fn put_policy(name: &str, doc: Value, expect: Expect) -> Write {
    put(ObjectKind::Policy, name, doc, expect)
}

fn delete_policy(name: &str, expect: Expect) -> Write {
    Write::DeleteObject {
        kind: ObjectKind::Policy,
        name: name.to_owned(),
        expect,
    }
}

fn device(name: &str) -> DeviceRecord {
    DeviceRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        os: "linux".to_owned(),
        os_version: "12".to_owned(),
        device_type: "server".to_owned(),
        agent_version: "0.1.0".to_owned(),
        tags: vec!["prod".to_owned(), "web".to_owned()],
        labels: vec!["Managed".to_owned()],
        managed_by: "rampart".to_owned(),
        enrollment_status: "enrolled".to_owned(),
        enrollment_code: None,
        enrollment_reason: None,
        last_check_in: Some(T0 + 5),
        applied_digest: Some("abc123".to_owned()),
        policy_version: Some(7),
        created_at: T0,
        cert_serial: Some("4f2a9c01d3".to_owned()),
        cert_not_after: Some(T0 + 90 * 86_400),
        issued_version: 7,
        issued_digest: Some("abc123".to_owned()),
        key_sha256: Some("9e1a".to_owned()),
        reenroll_until: None,
        conditions: vec!["server_core".to_owned()],
    }
}

fn status(device: &str, setting: &str, key: &str, status: &str) -> StatusRecord {
    StatusRecord {
        device: device.to_owned(),
        setting: setting.to_owned(),
        key: key.to_owned(),
        status: status.to_owned(),
        observed: Some(json!({ "enabled": true, "ports": [22, 443] })),
        error_code: None,
        error_message: None,
        backend: Some("nftables".to_owned()),
        digest: "digest-1".to_owned(),
        updated_at: T0 + 10,
    }
}

fn token(tenant: &Tenant, name: &str) -> TokenRecord {
    TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant.id.clone(),
        name: name.to_owned(),
        role: "security_manager".to_owned(),
        kind: "api".to_owned(),
        // Hashes are unique across every tenant, so each run needs its own.
        hash: unique("hash"),
        created_at: T0,
        expires_at: Some(T0 + 3600),
        created_by: "alice".to_owned(),
        last_used_at: None,
    }
}

fn user(username: &str) -> UserRecord {
    UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role: "global_admin".to_owned(),
        created_at: T0,
        disabled: false,
    }
}

fn secrets(label: &str) -> TenantSecrets {
    TenantSecrets {
        ca_cert_pem: format!("-----BEGIN CERTIFICATE-----\n{label}-cert\n"),
        ca_key_pem: format!("-----BEGIN PRIVATE KEY-----\n{label}-key\n"),
        signing_key: format!("5ec2e7{label}"),
        verify_key: format!("0b11c0{label}"),
        key_announcements: Vec::new(),
    }
}

fn onboarding_token(max_uses: Option<u32>) -> OnboardingTokenRecord {
    OnboardingTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        // Hashes are unique across every tenant, so each run needs its own.
        hash: unique("onboarding-hash"),
        created_at: T0,
        created_by: "alice".to_owned(),
        expires_at: T0 + 3600,
        max_uses,
        uses: 0,
    }
}

/// What an agent reports at check-in, as `UpdateDeviceFacts`.
fn facts(name: &str, tags: Option<Vec<String>>, at: Option<Timestamp>) -> Write {
    Write::UpdateDeviceFacts {
        name: name.to_owned(),
        os: "windows".to_owned(),
        os_version: "11 23H2".to_owned(),
        device_type: "workstation".to_owned(),
        agent_version: "0.2.0".to_owned(),
        tags,
        managed_by: "intune".to_owned(),
        labels: vec!["Joined".to_owned()],
        enrollment_status: "failed".to_owned(),
        enrollment_code: Some("E_MDM".to_owned()),
        enrollment_reason: Some("managed by another MDM".to_owned()),
        last_check_in: at,
        conditions: vec!["non_persistent_vdi".to_owned()],
    }
}

fn audit(action: &str, name: &str) -> NewAudit {
    NewAudit {
        actor: "alice".to_owned(),
        action: action.to_owned(),
        object_kind: "policy".to_owned(),
        object_name: name.to_owned(),
        before: None,
        after: Some(json!({ "name": name })),
    }
}

async fn write(store: &dyn Store, tenant: &Tenant, writes: Vec<Write>) -> Result<()> {
    store.write(&tenant.id, T0 + 1, writes, Vec::new()).await
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T>, mentions: &[&str]) {
    match result {
        Err(StoreError::Conflict(message)) => {
            for needle in mentions {
                assert!(
                    message.contains(needle),
                    "conflict message {message:?} should mention {needle:?}"
                );
            }
        }
        other => panic!("expected a conflict mentioning {mentions:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T>, mentions: &str) {
    match result {
        Err(StoreError::NotFound(message)) => assert!(
            message.contains(mentions),
            "not-found message {message:?} should mention {mentions:?}"
        ),
        other => panic!("expected not found mentioning {mentions:?}, got {other:?}"),
    }
}

async fn versions(store: &dyn Store, tenant: &Tenant, kind: ObjectKind, name: &str) -> Vec<u64> {
    store
        .object_history(&tenant.id, kind, name)
        .await
        .expect("history")
        .iter()
        .map(|record| record.version)
        .collect()
}

pub async fn tenants_are_unique_by_name(store: &dyn Store) {
    let name = unique("tenant");
    let tenant = store.create_tenant(&name, T0).await.expect("create");
    assert_eq!(tenant.name, name);
    assert_eq!(tenant.created_at, T0);
    assert!(!tenant.id.is_empty());

    assert_conflict(store.create_tenant(&name, T0 + 1).await, &[&name]);

    let found = store.tenant_by_name(&name).await.expect("look up");
    assert_eq!(found.as_ref(), Some(&tenant));
    assert_eq!(
        store
            .tenant_by_name(&unique("absent"))
            .await
            .expect("look up"),
        None
    );

    let other = new_tenant(store, "tenant-other").await;
    assert_ne!(other.id, tenant.id, "tenant ids are distinct");
    let all = store.tenants().await.expect("list");
    assert!(all.contains(&tenant) && all.contains(&other), "{all:?}");
}

pub async fn writes_to_an_unknown_tenant_fail(store: &dyn Store) {
    let missing = unique("no-such-tenant");
    let result = store
        .write(
            &missing,
            T0,
            vec![put_policy("p", json!({}), Expect::Any)],
            Vec::new(),
        )
        .await;
    assert_not_found(result, &missing);
    assert_not_found(
        store.record_statuses(&missing, "dev", Vec::new()).await,
        "dev",
    );
}

pub async fn tenant_settings_round_trip(store: &dyn Store) {
    let tenant = new_tenant(store, "settings").await;
    assert_eq!(store.tenant_settings(&tenant.id).await.expect("read"), None);

    let first = json!({ "defaults": { "firewall": "on" }, "pilot": false });
    let writes = vec![Write::PutTenantSettings { doc: first.clone() }];
    write(store, &tenant, writes).await.expect("put settings");
    assert_eq!(
        store.tenant_settings(&tenant.id).await.expect("read"),
        Some(first)
    );

    let second = json!({ "pilot": true });
    let writes = vec![Write::PutTenantSettings {
        doc: second.clone(),
    }];
    write(store, &tenant, writes)
        .await
        .expect("replace settings");
    assert_eq!(
        store.tenant_settings(&tenant.id).await.expect("read"),
        Some(second)
    );
}

pub async fn objects_are_versioned(store: &dyn Store) {
    let tenant = new_tenant(store, "versions").await;
    let t = &tenant.id;

    for (i, at) in [(1, T0 + 1), (2, T0 + 2), (3, T0 + 3)] {
        let writes = vec![Write::PutObject {
            kind: ObjectKind::Policy,
            name: "baseline".to_owned(),
            doc: json!({ "rev": i }),
            expect: Expect::Any,
            by: format!("admin{i}"),
        }];
        store.write(t, at, writes, Vec::new()).await.expect("put");
    }
    let current = store
        .object(t, ObjectKind::Policy, "baseline")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.kind, ObjectKind::Policy);
    assert_eq!(current.name, "baseline");
    assert_eq!(current.version, 3);
    assert_eq!(current.doc, json!({ "rev": 3 }));
    assert_eq!(current.modified_at, T0 + 3);
    assert_eq!(current.modified_by, "admin3");

    let history = store
        .object_history(t, ObjectKind::Policy, "baseline")
        .await
        .expect("history");
    let seen: Vec<_> = history.iter().map(|r| (r.version, r.doc.clone())).collect();
    assert_eq!(
        seen,
        vec![
            (1, json!({ "rev": 1 })),
            (2, json!({ "rev": 2 })),
            (3, json!({ "rev": 3 }))
        ]
    );
    assert_eq!(history[0].modified_by, "admin1");
    assert_eq!(history[0].modified_at, T0 + 1);

    // Kinds are separate namespaces, and lists are sorted by name.
    let writes = vec![
        put(
            ObjectKind::Group,
            "baseline",
            json!({ "g": 1 }),
            Expect::Absent,
        ),
        put_policy("zeta", json!({}), Expect::Absent),
        put_policy("alpha", json!({}), Expect::Absent),
        put_policy("Beta", json!({}), Expect::Absent),
    ];
    write(store, &tenant, writes).await.expect("more objects");
    let group = store
        .object(t, ObjectKind::Group, "baseline")
        .await
        .expect("read");
    assert_eq!(group.map(|g| g.version), Some(1));
    let names: Vec<_> = store
        .objects(t, ObjectKind::Policy)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["Beta", "alpha", "baseline", "zeta"]);
    let groups = store.objects(t, ObjectKind::Group).await.expect("list");
    assert_eq!(groups.len(), 1);
    assert_eq!(
        store
            .object(t, ObjectKind::Policy, "nope")
            .await
            .expect("read"),
        None
    );
    assert!(versions(store, &tenant, ObjectKind::Policy, "nope")
        .await
        .is_empty());
}

pub async fn versions_are_not_reused_after_delete(store: &dyn Store) {
    let tenant = new_tenant(store, "recreate").await;
    let t = &tenant.id;
    let writes = vec![put_policy("p", json!({ "n": 1 }), Expect::Absent)];
    write(store, &tenant, writes).await.expect("create");
    let writes = vec![put_policy("p", json!({ "n": 2 }), Expect::Version(1))];
    write(store, &tenant, writes).await.expect("update");
    let writes = vec![delete_policy("p", Expect::Version(2))];
    write(store, &tenant, writes).await.expect("delete");

    assert_eq!(
        store
            .object(t, ObjectKind::Policy, "p")
            .await
            .expect("read"),
        None
    );
    assert!(store
        .objects(t, ObjectKind::Policy)
        .await
        .expect("list")
        .is_empty());
    // The history outlives the object.
    assert_eq!(
        versions(store, &tenant, ObjectKind::Policy, "p").await,
        [1, 2]
    );

    let writes = vec![put_policy("p", json!({ "n": 3 }), Expect::Absent)];
    write(store, &tenant, writes).await.expect("re-create");
    let current = store
        .object(t, ObjectKind::Policy, "p")
        .await
        .expect("read");
    assert_eq!(
        current.map(|r| (r.version, r.doc)),
        Some((3, json!({ "n": 3 })))
    );
    assert_eq!(
        versions(store, &tenant, ObjectKind::Policy, "p").await,
        [1, 2, 3]
    );
}

pub async fn writes_apply_in_order(store: &dyn Store) {
    let tenant = new_tenant(store, "order").await;
    let writes = vec![
        put_policy("p", json!({ "n": 1 }), Expect::Absent),
        put_policy("p", json!({ "n": 2 }), Expect::Version(1)),
        delete_policy("p", Expect::Present),
        put_policy("p", json!({ "n": 3 }), Expect::Absent),
        Write::PutDevice(device("d")),
        Write::SetDeviceTags {
            name: "d".to_owned(),
            tags: vec!["later".to_owned()],
        },
    ];
    write(store, &tenant, writes).await.expect("batch");
    let current = store
        .object(&tenant.id, ObjectKind::Policy, "p")
        .await
        .expect("read");
    assert_eq!(
        current.map(|r| (r.version, r.doc)),
        Some((3, json!({ "n": 3 })))
    );
    let dev = store
        .device(&tenant.id, "d")
        .await
        .expect("read")
        .expect("device");
    assert_eq!(dev.tags, ["later"]);
}

pub async fn expectations_are_enforced(store: &dyn Store) {
    let tenant = new_tenant(store, "expect").await;
    let t = &tenant.id;
    let writes = vec![put_policy("p", json!({ "n": 1 }), Expect::Absent)];
    write(store, &tenant, writes).await.expect("create");

    // Absent: create only.
    let writes = vec![put_policy("p", json!({}), Expect::Absent)];
    assert_conflict(
        write(store, &tenant, writes).await,
        &["policy", "\"p\"", "exists"],
    );

    // Version: exactly that version; the message says which one it is at.
    let writes = vec![put_policy("p", json!({}), Expect::Version(5))];
    assert_conflict(
        write(store, &tenant, writes).await,
        &["\"p\"", "version 1", "not 5"],
    );
    let writes = vec![put_policy("p", json!({ "n": 2 }), Expect::Version(1))];
    write(store, &tenant, writes)
        .await
        .expect("matching version");

    // Present: update only; a missing object is not found.
    let writes = vec![put_policy("p", json!({ "n": 3 }), Expect::Present)];
    write(store, &tenant, writes).await.expect("present");
    let writes = vec![put_policy("q", json!({}), Expect::Present)];
    assert_not_found(write(store, &tenant, writes).await, "\"q\"");
    let writes = vec![put_policy("q", json!({}), Expect::Version(1))];
    assert_not_found(write(store, &tenant, writes).await, "\"q\"");

    // Any: create or replace.
    let writes = vec![
        put_policy("p", json!({ "n": 4 }), Expect::Any),
        put_policy("q", json!({ "n": 1 }), Expect::Any),
    ];
    write(store, &tenant, writes).await.expect("any");
    assert_eq!(
        versions(store, &tenant, ObjectKind::Policy, "p").await,
        [1, 2, 3, 4]
    );
    assert_eq!(versions(store, &tenant, ObjectKind::Policy, "q").await, [1]);

    // Deletes check the same expectations.
    let writes = vec![delete_policy("p", Expect::Version(3))];
    assert_conflict(
        write(store, &tenant, writes).await,
        &["\"p\"", "version 4", "not 3"],
    );
    let writes = vec![delete_policy("p", Expect::Absent)];
    assert_conflict(write(store, &tenant, writes).await, &["\"p\""]);
    let writes = vec![delete_policy("missing", Expect::Present)];
    assert_not_found(write(store, &tenant, writes).await, "\"missing\"");
    let writes = vec![delete_policy("missing", Expect::Version(1))];
    assert_not_found(write(store, &tenant, writes).await, "\"missing\"");
    let writes = vec![delete_policy("missing", Expect::Any)];
    write(store, &tenant, writes)
        .await
        .expect("deleting nothing with Any");
    let writes = vec![
        delete_policy("p", Expect::Version(4)),
        delete_policy("q", Expect::Present),
    ];
    write(store, &tenant, writes).await.expect("delete");
    assert!(store
        .objects(t, ObjectKind::Policy)
        .await
        .expect("list")
        .is_empty());

    // Each kind's name appears in its messages.
    let writes = vec![put(ObjectKind::Group, "g", json!({}), Expect::Version(2))];
    assert_not_found(write(store, &tenant, writes).await, "group \"g\"");
}

pub async fn failed_batches_leave_nothing_behind(store: &dyn Store) {
    let tenant = new_tenant(store, "atomic").await;
    let t = &tenant.id;
    let writes = vec![put_policy("taken", json!({ "n": 1 }), Expect::Absent)];
    write(store, &tenant, writes).await.expect("setup");

    // The third write fails on an expectation.
    let writes = vec![
        put_policy("fresh", json!({}), Expect::Absent),
        Write::PutDevice(device("dev")),
        put_policy("taken", json!({ "n": 2 }), Expect::Absent),
    ];
    let entries = vec![audit("policy.create", "fresh"), audit("device.put", "dev")];
    let result = store.write(t, T0 + 2, writes, entries).await;
    assert_conflict(result, &["\"taken\""]);

    // The third write fails on a missing record.
    let writes = vec![
        put_policy("fresh", json!({}), Expect::Absent),
        Write::PutTenantSettings {
            doc: json!({ "x": 1 }),
        },
        Write::DeleteDevice {
            name: "ghost".to_owned(),
            reason: "deleted in a test".into(),
        },
    ];
    let result = store
        .write(t, T0 + 3, writes, vec![audit("policy.create", "fresh")])
        .await;
    assert_not_found(result, "device \"ghost\"");

    // The last write fails on a uniqueness rule.
    let first = user("root");
    let writes = vec![Write::PutUser(first)];
    write(store, &tenant, writes).await.expect("setup user");
    let tok = token(&tenant, "ci");
    let onboarding = onboarding_token(Some(1));
    let writes = vec![
        Write::PutToken(tok.clone()),
        Write::PutTenantSecrets(secrets("atomic")),
        Write::PutOnboardingToken(onboarding.clone()),
        put_policy("fresh", json!({}), Expect::Any),
        Write::PutUser(user("root")),
    ];
    let result = store
        .write(t, T0 + 4, writes, vec![audit("user.create", "root")])
        .await;
    assert_conflict(result, &["user", "\"root\""]);

    assert_eq!(
        store
            .object(t, ObjectKind::Policy, "fresh")
            .await
            .expect("read"),
        None
    );
    assert!(versions(store, &tenant, ObjectKind::Policy, "fresh")
        .await
        .is_empty());
    assert_eq!(
        versions(store, &tenant, ObjectKind::Policy, "taken").await,
        [1]
    );
    assert!(store.devices(t).await.expect("devices").is_empty());
    assert_eq!(store.tenant_settings(t).await.expect("settings"), None);
    assert_eq!(store.token_by_hash(&tok.hash).await.expect("token"), None);
    assert!(store.tokens(t).await.expect("tokens").is_empty());
    assert_eq!(store.users(t).await.expect("users").len(), 1);
    assert_eq!(store.tenant_secrets(t).await.expect("secrets"), None);
    assert!(store
        .onboarding_tokens(t)
        .await
        .expect("onboarding tokens")
        .is_empty());
    assert_eq!(
        store
            .consume_onboarding_token(&onboarding.hash, T0)
            .await
            .expect("consume"),
        TokenUse::Unknown
    );
    assert!(store
        .audit(t, &AuditQuery::recent(100, None))
        .await
        .expect("audit")
        .is_empty());

    // The failed batches used up nothing: the name is created at version 1.
    let writes = vec![put_policy("fresh", json!({}), Expect::Absent)];
    write(store, &tenant, writes)
        .await
        .expect("fresh on its own");
    assert_eq!(
        versions(store, &tenant, ObjectKind::Policy, "fresh").await,
        [1]
    );
}

pub async fn devices_round_trip(store: &dyn Store) {
    let tenant = new_tenant(store, "devices").await;
    let t = &tenant.id;
    let mut web = device("web-1");
    web.enrollment_code = Some("E_MDM".to_owned());
    web.enrollment_reason = Some("managed by another MDM".to_owned());
    web.managed_by = "intune".to_owned();
    let mut bare = device("Alpha");
    bare.tags = Vec::new();
    bare.labels = Vec::new();
    bare.last_check_in = None;
    bare.applied_digest = None;
    bare.policy_version = None;
    bare.cert_serial = None;
    bare.cert_not_after = None;
    bare.issued_version = 0;
    bare.issued_digest = None;
    let writes = vec![
        Write::PutDevice(web.clone()),
        Write::PutDevice(bare.clone()),
        Write::PutDevice(device("db-1")),
    ];
    write(store, &tenant, writes).await.expect("put devices");

    assert_eq!(
        store.device(t, "web-1").await.expect("read"),
        Some(web.clone())
    );
    assert_eq!(store.device(t, "Alpha").await.expect("read"), Some(bare));
    assert_eq!(store.device(t, "nope").await.expect("read"), None);
    let names: Vec<_> = store
        .devices(t)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["Alpha", "db-1", "web-1"]);

    // Replacing by name keeps one device with the new fields.
    let mut replaced = web.clone();
    replaced.os_version = "13".to_owned();
    replaced.enrollment_status = "failed".to_owned();
    replaced.policy_version = Some(u64::from(u32::MAX) + 5);
    replaced.cert_serial = Some("00ff".to_owned());
    replaced.cert_not_after = None;
    replaced.issued_version = u64::from(u32::MAX) + 9;
    replaced.issued_digest = None;
    write(store, &tenant, vec![Write::PutDevice(replaced.clone())])
        .await
        .expect("replace");
    assert_eq!(
        store.device(t, "web-1").await.expect("read"),
        Some(replaced.clone())
    );
    assert_eq!(store.devices(t).await.expect("list").len(), 3);

    let tags = vec!["pilot".to_owned(), "eu".to_owned()];
    let writes = vec![Write::SetDeviceTags {
        name: "web-1".to_owned(),
        tags: tags.clone(),
    }];
    write(store, &tenant, writes).await.expect("tags");
    let tagged = store
        .device(t, "web-1")
        .await
        .expect("read")
        .expect("device");
    assert_eq!(tagged.tags, tags, "tags keep their order");
    assert_eq!(
        DeviceRecord {
            tags: replaced.tags.clone(),
            ..tagged
        },
        replaced
    );

    let writes = vec![Write::SetDeviceTags {
        name: "ghost".to_owned(),
        tags: Vec::new(),
    }];
    assert_not_found(write(store, &tenant, writes).await, "device \"ghost\"");

    let writes = vec![Write::DeleteDevice {
        name: "db-1".to_owned(),
        reason: "deleted in a test".into(),
    }];
    write(store, &tenant, writes).await.expect("delete");
    assert_eq!(store.device(t, "db-1").await.expect("read"), None);
    let writes = vec![Write::DeleteDevice {
        name: "db-1".to_owned(),
        reason: "deleted in a test".into(),
    }];
    assert_not_found(write(store, &tenant, writes).await, "device \"db-1\"");
}

pub async fn deleting_a_device_deletes_its_statuses(store: &dyn Store) {
    let tenant = new_tenant(store, "device-statuses").await;
    let t = &tenant.id;
    let writes = vec![Write::PutDevice(device("a")), Write::PutDevice(device("b"))];
    write(store, &tenant, writes).await.expect("devices");
    let a = vec![status("a", "firewall.enabled", "", "succeeded")];
    let b = vec![status("b", "firewall.enabled", "", "succeeded")];
    assert_eq!(store.record_statuses(t, "a", a).await.expect("a"), 1);
    assert_eq!(store.record_statuses(t, "b", b).await.expect("b"), 1);

    // Replacing a device by name keeps its statuses.
    write(store, &tenant, vec![Write::PutDevice(device("a"))])
        .await
        .expect("replace");
    assert_eq!(store.device_statuses(t, "a").await.expect("a").len(), 1);

    let writes = vec![Write::DeleteDevice {
        name: "a".to_owned(),
        reason: "deleted in a test".into(),
    }];
    write(store, &tenant, writes).await.expect("delete");
    assert!(store.device_statuses(t, "a").await.expect("a").is_empty());
    let left: Vec<_> = store
        .statuses(t)
        .await
        .expect("all")
        .into_iter()
        .map(|s| s.device)
        .collect();
    assert_eq!(left, ["b"]);

    // A device created again under the old name starts with no statuses.
    write(store, &tenant, vec![Write::PutDevice(device("a"))])
        .await
        .expect("re-create");
    assert!(store.device_statuses(t, "a").await.expect("a").is_empty());
}

pub async fn device_names_are_unique_whatever_their_case(store: &dyn Store) {
    let tenant = new_tenant(store, "device-names").await;
    let t = &tenant.id;
    write(store, &tenant, vec![Write::EnrollDevice(device("Web-01"))])
        .await
        .expect("first enrollment");
    // Found by any spelling of its name, under the name it was given.
    let found = store
        .device(t, "wEB-01")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(found.name, "Web-01");

    // Another device under the same name in another case is refused, by
    // enrollment and by a plain put alike, and the batch leaves nothing.
    let audit = NewAudit {
        actor: "device:web-01".into(),
        action: "device.enroll".into(),
        object_kind: "device".into(),
        object_name: "web-01".into(),
        before: None,
        after: None,
    };
    let refused = store
        .write(
            t,
            T0 + 1,
            vec![Write::EnrollDevice(device("web-01"))],
            vec![audit],
        )
        .await;
    assert_conflict(refused, &["web-01"]);
    assert!(store
        .audit(t, &AuditQuery::recent(10, None))
        .await
        .expect("audit")
        .is_empty());
    assert_conflict(
        write(store, &tenant, vec![Write::PutDevice(device("WEB-01"))]).await,
        &[],
    );
    // Enrolling is insert-only even for the exact name.
    assert_conflict(
        write(store, &tenant, vec![Write::EnrollDevice(device("Web-01"))]).await,
        &[],
    );
    let names: Vec<_> = store
        .devices(t)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["Web-01"]);
}

pub async fn deleted_devices_leave_tombstones(store: &dyn Store) {
    let tenant = new_tenant(store, "tombstones").await;
    let t = &tenant.id;
    let d = device("gone");
    write(store, &tenant, vec![Write::PutDevice(d.clone())])
        .await
        .expect("device");
    assert_eq!(store.device_tombstone(t, &d.id).await.expect("read"), None);
    let writes = vec![Write::DeleteDevice {
        name: "gone".into(),
        reason: "deleted by admin".into(),
    }];
    store
        .write(t, T0 + 9, writes, Vec::new())
        .await
        .expect("delete");
    assert_eq!(store.device_by_id(t, &d.id).await.expect("read"), None);
    assert_eq!(
        store.device_tombstone(t, &d.id).await.expect("read"),
        Some(DeviceTombstone {
            device_id: d.id.clone(),
            name: "gone".into(),
            deleted_at: T0 + 9,
            reason: "deleted by admin".into(),
        })
    );
    // Tombstones are per tenant, like everything else.
    let other = new_tenant(store, "tombstones-other").await;
    assert_eq!(
        store
            .device_tombstone(&other.id, &d.id)
            .await
            .expect("read"),
        None
    );
    // Deleting what does not exist leaves no tombstone either.
    let missing = vec![Write::DeleteDevice {
        name: "never".into(),
        reason: "x".into(),
    }];
    assert!(matches!(
        write(store, &tenant, missing).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn reenroll_approvals_work_once(store: &dyn Store) {
    let tenant = new_tenant(store, "reenroll").await;
    let t = &tenant.id;
    write(store, &tenant, vec![Write::PutDevice(device("pc"))])
        .await
        .expect("device");
    let approve = |until| Write::ApproveReenroll {
        name: "pc".into(),
        until,
    };
    let consume = || Write::ConsumeReenroll { name: "pc".into() };
    // Nothing approved: refused.
    assert_conflict(
        store.write(t, T0, vec![consume()], Vec::new()).await,
        &["pc"],
    );
    store
        .write(t, T0, vec![approve(Some(T0 + 100))], Vec::new())
        .await
        .expect("approve");
    let stored = store.device(t, "pc").await.expect("read").expect("pc");
    assert_eq!(stored.reenroll_until, Some(T0 + 100));
    store
        .write(t, T0 + 50, vec![consume()], Vec::new())
        .await
        .expect("first use");
    assert_conflict(
        store.write(t, T0 + 51, vec![consume()], Vec::new()).await,
        &[],
    );
    // An approval that expired is refused.
    store
        .write(t, T0, vec![approve(Some(T0 + 10))], Vec::new())
        .await
        .expect("approve again");
    assert_conflict(
        store.write(t, T0 + 10, vec![consume()], Vec::new()).await,
        &[],
    );
    let missing = Write::ApproveReenroll {
        name: "nobody".into(),
        until: Some(T0),
    };
    assert!(matches!(
        store.write(t, T0, vec![missing], Vec::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Every sort, both directions and several filters: walking the pages with
/// their cursors gives exactly the devices (and order) that filtering and
/// sorting the whole list in memory gives, and the total counts them.
pub async fn device_pages_filter_sort_and_walk_like_the_whole_list(store: &dyn Store) {
    use crate::page::{DeviceQuery, DeviceSort};
    let tenant = new_tenant(store, "pages").await;
    let other = new_tenant(store, "pages-other").await;
    let oses = ["linux", "windows", "macos"];
    let mut devices = Vec::new();
    for i in 0..23u32 {
        let mut d = device(&format!("{}dev-{i:02}", if i % 4 == 0 { "B" } else { "a" }));
        d.os = oses[i as usize % 3].to_owned();
        d.os_version = format!("{}.{}", 10 + i % 2, i);
        d.device_type = if i % 2 == 0 { "server" } else { "workstation" }.to_owned();
        d.managed_by = if i % 5 == 0 { "intune" } else { "rampart" }.to_owned();
        d.enrollment_status = if i % 7 == 0 { "failed" } else { "enrolled" }.to_owned();
        d.tags = match i % 3 {
            0 => vec!["Web_1".to_owned(), "prod".to_owned()],
            1 => vec!["db".to_owned()],
            _ => Vec::new(),
        };
        d.labels = if i % 2 == 0 {
            vec!["Joined".to_owned()]
        } else {
            Vec::new()
        };
        // Ties on purpose: the name decides among equal times.
        d.last_check_in = (i % 4 != 3).then(|| T0 + i64::from(i % 6));
        devices.push(d);
    }
    write(
        store,
        &tenant,
        devices.iter().cloned().map(Write::PutDevice).collect(),
    )
    .await
    .expect("devices");
    write(store, &other, vec![Write::PutDevice(device("adev-99"))])
        .await
        .expect("another tenant's device");
    let matches = |d: &DeviceRecord, q: &DeviceQuery| {
        let eq = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        let has = |want: &Option<String>, list: &[String]| {
            want.as_ref()
                .is_none_or(|w| list.iter().any(|x| x.eq_ignore_ascii_case(w)))
        };
        let text = [
            d.name.as_str(),
            &d.os,
            &d.os_version,
            &d.device_type,
            &d.managed_by,
            &d.enrollment_status,
        ]
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .chain(
            d.tags
                .iter()
                .chain(&d.labels)
                .map(|s| s.to_ascii_lowercase()),
        )
        .collect::<Vec<_>>();
        eq(&q.os, &d.os)
            && eq(&q.managed_by, &d.managed_by)
            && eq(&q.enrollment, &d.enrollment_status)
            && has(&q.tag, &d.tags)
            && has(&q.label, &d.labels)
            && q.search.as_ref().is_none_or(|s| {
                s.split_whitespace()
                    .all(|w| text.iter().any(|t| t.contains(&w.to_ascii_lowercase())))
            })
    };
    let filters: Vec<DeviceQuery> = vec![
        DeviceQuery::default(),
        DeviceQuery {
            os: Some("WINDOWS".into()),
            ..DeviceQuery::default()
        },
        DeviceQuery {
            tag: Some("web_1".into()),
            ..DeviceQuery::default()
        },
        DeviceQuery {
            tag: Some("web%".into()),
            ..DeviceQuery::default()
        },
        DeviceQuery {
            label: Some("joined".into()),
            managed_by: Some("rampart".into()),
            ..DeviceQuery::default()
        },
        DeviceQuery {
            enrollment: Some("failed".into()),
            ..DeviceQuery::default()
        },
        DeviceQuery {
            search: Some("dev-1 workstation".into()),
            ..DeviceQuery::default()
        },
        DeviceQuery {
            search: Some("EB_".into()),
            ..DeviceQuery::default()
        },
    ];
    for filter in filters {
        for (_, sort) in DeviceSort::ALL {
            for descending in [false, true] {
                let mut want: Vec<&DeviceRecord> =
                    devices.iter().filter(|d| matches(d, &filter)).collect();
                want.sort_by(|a, b| {
                    let order = match (sort.key_of(a), sort.key_of(b)) {
                        (crate::page::SortKey::Text(x), crate::page::SortKey::Text(y)) => {
                            x.as_bytes().cmp(y.as_bytes())
                        }
                        (crate::page::SortKey::Int(x), crate::page::SortKey::Int(y)) => x.cmp(&y),
                        _ => std::cmp::Ordering::Equal,
                    }
                    .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()));
                    if descending {
                        order.reverse()
                    } else {
                        order
                    }
                });
                let want: Vec<&str> = want.iter().map(|d| d.name.as_str()).collect();
                let mut got = Vec::new();
                let mut query = DeviceQuery {
                    sort: *sort,
                    descending,
                    limit: 4,
                    ..filter.clone()
                };
                for _ in 0..20 {
                    let page = store.device_page(&tenant.id, &query).await.expect("page");
                    let expected_total = query.after.is_none().then_some(want.len() as u64);
                    assert_eq!(page.total, expected_total, "total of {query:?}");
                    assert!(page.devices.len() <= 4);
                    got.extend(page.devices.iter().map(|d| d.name.clone()));
                    match page.next {
                        Some(next) => query.after = Some(next),
                        None => break,
                    }
                }
                assert_eq!(got, want, "{filter:?} by {sort:?} descending {descending}");
            }
        }
    }
    // The devices come back whole.
    let first = store
        .device_page(
            &tenant.id,
            &DeviceQuery {
                limit: 1,
                ..DeviceQuery::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(
        first.devices,
        [devices
            .iter()
            .find(|d| d.name == "Bdev-00")
            .cloned()
            .unwrap()]
    );
    // Problems of a page's devices only.
    store
        .record_statuses(
            &tenant.id,
            "adev-01",
            vec![status("adev-01", "a", "", "error")],
        )
        .await
        .expect("report");
    store
        .record_statuses(
            &tenant.id,
            "adev-02",
            vec![status("adev-02", "a", "", "conflict")],
        )
        .await
        .expect("report");
    let problems = store
        .device_problems_of(&tenant.id, &["adev-01".to_owned(), "adev-03".to_owned()])
        .await
        .expect("problems");
    assert_eq!(problems.len(), 1);
    assert_eq!(
        (problems[0].device.as_str(), problems[0].errors),
        ("adev-01", 1)
    );
}

pub async fn problems_are_counted_per_device(store: &dyn Store) {
    let tenant = new_tenant(store, "problems").await;
    let other = new_tenant(store, "problems-other").await;
    let t = &tenant.id;
    let devices = ["calm", "troubled", "torn"].map(|n| Write::PutDevice(device(n)));
    write(store, &tenant, devices.to_vec())
        .await
        .expect("devices");
    write(store, &other, vec![Write::PutDevice(device("troubled"))])
        .await
        .expect("other's device");
    let reports = [
        (
            "calm",
            vec![
                status("calm", "a", "", "succeeded"),
                status("calm", "b", "", "recorded"),
            ],
        ),
        (
            "troubled",
            vec![
                status("troubled", "a", "", "error"),
                status("troubled", "r", "k1", "error"),
                status("troubled", "r", "k2", "conflict"),
                status("troubled", "b", "", "succeeded"),
            ],
        ),
        ("torn", vec![status("torn", "a", "", "conflict")]),
    ];
    for (name, rows) in reports {
        store.record_statuses(t, name, rows).await.expect("report");
    }
    let theirs = vec![status("troubled", "a", "", "error")];
    store
        .record_statuses(&other.id, "troubled", theirs)
        .await
        .expect("other's report");
    let problems = store.device_problems(t).await.expect("problems");
    let counts: Vec<_> = problems
        .iter()
        .map(|p| (p.device.as_str(), p.errors, p.conflicts))
        .collect();
    assert_eq!(counts, [("torn", 0, 1), ("troubled", 2, 1)]);
}

pub async fn a_status_report_and_its_writes_are_one_transaction(store: &dyn Store) {
    let tenant = new_tenant(store, "status-report").await;
    let t = &tenant.id;
    write(store, &tenant, vec![Write::PutDevice(device("dev"))])
        .await
        .expect("device");
    let applied = || Write::SetAppliedPolicy {
        name: "dev".into(),
        digest: Some("digest-1".into()),
        version: Some(3),
    };
    let report = vec![status("dev", "firewall.enabled", "", "succeeded")];
    let changed = store
        .record_report(
            t,
            "dev",
            report.clone(),
            T0 + 20,
            vec![applied()],
            vec![audit("device.tamper", "dev")],
        )
        .await
        .expect("report");
    assert_eq!(changed, 1);
    let stored = store.device(t, "dev").await.expect("read").expect("dev");
    assert_eq!(
        (stored.applied_digest.as_deref(), stored.policy_version),
        (Some("digest-1"), Some(3))
    );
    let entries = store
        .audit(t, &AuditQuery::recent(10, None))
        .await
        .expect("audit");
    assert_eq!(
        (entries[0].action.as_str(), entries[0].at),
        ("device.tamper", T0 + 20)
    );

    // A write of the batch that fails takes the statuses down with it.
    let mut changed_report = report;
    changed_report[0].status = "error".into();
    let failed = store
        .record_report(
            t,
            "dev",
            changed_report,
            T0 + 30,
            vec![Write::ExpectTenantSettings { version: 99 }],
            vec![audit("device.tamper", "dev")],
        )
        .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    let statuses = store.device_statuses(t, "dev").await.expect("statuses");
    assert_eq!(
        statuses[0].status, "succeeded",
        "nothing of the report landed"
    );
    assert_eq!(
        store
            .audit(t, &AuditQuery::recent(10, None))
            .await
            .expect("audit")
            .len(),
        entries.len()
    );
    // A device that does not exist: NotFound, and nothing written.
    let missing = store
        .record_report(
            t,
            "ghost",
            vec![status("ghost", "firewall.enabled", "", "succeeded")],
            T0,
            vec![applied()],
            Vec::new(),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub async fn statuses_store_only_changes(store: &dyn Store) {
    let tenant = new_tenant(store, "statuses").await;
    let t = &tenant.id;
    write(store, &tenant, vec![Write::PutDevice(device("dev"))])
        .await
        .expect("device");

    let mut failed = status("dev", "asr.rules", "d4f940ab", "error");
    failed.observed = None;
    failed.error_code = Some("E_ACCESS".to_owned());
    failed.error_message = Some("access denied".to_owned());
    let report = vec![
        status("dev", "firewall.enabled", "", "succeeded"),
        failed.clone(),
        status("dev", "asr.rules", "be9ba2d9", "succeeded"),
    ];
    assert_eq!(
        store
            .record_statuses(t, "dev", report.clone())
            .await
            .expect("first"),
        3
    );
    assert_eq!(
        store
            .record_statuses(t, "dev", report.clone())
            .await
            .expect("same"),
        0
    );

    // Sorted by device, setting, key.
    let stored = store.device_statuses(t, "dev").await.expect("read");
    let keys: Vec<_> = stored
        .iter()
        .map(|s| (s.setting.as_str(), s.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("asr.rules", "be9ba2d9"),
            ("asr.rules", "d4f940ab"),
            ("firewall.enabled", "")
        ]
    );
    assert_eq!(stored[1], failed);

    // The same values reported later change nothing, not even the time.
    let mut later = report.clone();
    for row in &mut later {
        row.updated_at = T0 + 99;
    }
    assert_eq!(
        store
            .record_statuses(t, "dev", later.clone())
            .await
            .expect("later"),
        0
    );
    assert!(store
        .device_statuses(t, "dev")
        .await
        .expect("read")
        .iter()
        .all(|s| s.updated_at == T0 + 10));

    // Each field that matters counts as a change.
    let mut changed = later.clone();
    changed[0].status = "conflict".to_owned();
    changed[1].error_message = Some("still denied".to_owned());
    changed[2].observed = Some(json!({ "enabled": false }));
    assert_eq!(
        store
            .record_statuses(t, "dev", changed.clone())
            .await
            .expect("changed"),
        3
    );
    let mut digest = changed.clone();
    digest[0].digest = "digest-2".to_owned();
    assert_eq!(
        store
            .record_statuses(t, "dev", digest.clone())
            .await
            .expect("digest"),
        1
    );
    let mut observed_null = digest.clone();
    observed_null[0].observed = Some(Value::Null);
    assert_eq!(
        store
            .record_statuses(t, "dev", observed_null)
            .await
            .expect("null"),
        1
    );
    let first = store.device_statuses(t, "dev").await.expect("read");
    let row = first
        .iter()
        .find(|s| s.setting == "firewall.enabled")
        .expect("row");
    assert_eq!(
        row.observed,
        Some(Value::Null),
        "JSON null is not a missing value"
    );
    assert_eq!(row.updated_at, T0 + 99);

    // A report may cover part of the settings; the others stay.
    let partial = vec![status("dev", "defender.realtime", "", "pending")];
    assert_eq!(
        store
            .record_statuses(t, "dev", partial)
            .await
            .expect("partial"),
        1
    );
    assert_eq!(
        store.device_statuses(t, "dev").await.expect("read").len(),
        4
    );

    assert_eq!(
        store
            .record_statuses(t, "dev", Vec::new())
            .await
            .expect("empty"),
        0
    );
    assert_not_found(
        store.record_statuses(t, "ghost", report).await,
        "device \"ghost\"",
    );

    // Every status of the tenant, sorted by device first.
    write(store, &tenant, vec![Write::PutDevice(device("another"))])
        .await
        .expect("device");
    let other = vec![status("another", "zzz", "", "succeeded")];
    assert_eq!(
        store
            .record_statuses(t, "another", other)
            .await
            .expect("other"),
        1
    );
    let all: Vec<_> = store
        .statuses(t)
        .await
        .expect("all")
        .into_iter()
        .map(|s| (s.device, s.setting))
        .collect();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0], ("another".to_owned(), "zzz".to_owned()));
    assert!(all[1..].iter().all(|(device, _)| device == "dev"));
}

pub async fn tokens_are_found_by_hash(store: &dyn Store) {
    let tenant = new_tenant(store, "tokens").await;
    let t = &tenant.id;
    let api = token(&tenant, "ci");
    let mut session = token(&tenant, "alice-session");
    session.kind = "session".to_owned();
    session.expires_at = None;
    let writes = vec![
        Write::PutToken(api.clone()),
        Write::PutToken(session.clone()),
    ];
    write(store, &tenant, writes).await.expect("tokens");

    assert_eq!(
        store.token_by_hash(&api.hash).await.expect("by hash"),
        Some(api.clone())
    );
    assert_eq!(
        store.token_by_hash(&session.hash).await.expect("by hash"),
        Some(session.clone())
    );
    assert_eq!(
        store.token_by_hash(&unique("nope")).await.expect("by hash"),
        None
    );
    let mut listed = store.tokens(t).await.expect("list");
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(listed, [session.clone(), api.clone()]);

    // A hash is unique across the whole store.
    let mut again = token(&tenant, "copy");
    again.hash = api.hash.clone();
    assert_conflict(
        write(store, &tenant, vec![Write::PutToken(again)]).await,
        &["token"],
    );

    let writes = vec![Write::DeleteToken { id: api.id.clone() }];
    write(store, &tenant, writes).await.expect("delete");
    assert_eq!(store.token_by_hash(&api.hash).await.expect("by hash"), None);
    assert_eq!(store.tokens(t).await.expect("list"), [session]);
    let writes = vec![Write::DeleteToken { id: api.id.clone() }];
    assert_not_found(write(store, &tenant, writes).await, &api.id);
}

pub async fn users_are_unique_per_tenant(store: &dyn Store) {
    let tenant = new_tenant(store, "users").await;
    let t = &tenant.id;
    let admin = user("admin");
    let mut viewer = user("viewer");
    viewer.role = "read_only".to_owned();
    let writes = vec![
        Write::PutUser(viewer.clone()),
        Write::PutUser(admin.clone()),
    ];
    write(store, &tenant, writes).await.expect("users");

    assert_eq!(
        store.user(t, "admin").await.expect("read"),
        Some(admin.clone())
    );
    assert_eq!(store.user(t, "nobody").await.expect("read"), None);
    let mut listed = store.users(t).await.expect("list");
    listed.sort_by(|a, b| a.username.cmp(&b.username));
    assert_eq!(listed, [admin.clone(), viewer]);

    let writes = vec![Write::PutUser(user("admin"))];
    assert_conflict(write(store, &tenant, writes).await, &["user", "\"admin\""]);
    // Whatever the case: `Admin` is `admin`.
    let writes = vec![Write::PutUser(user("Admin"))];
    assert_conflict(write(store, &tenant, writes).await, &["user", "\"Admin\""]);
    assert_eq!(
        store.user(t, "ADMIN").await.expect("read").map(|u| u.id),
        Some(admin.id)
    );
}

pub async fn tenant_and_object_names_are_unique_whatever_their_case(store: &dyn Store) {
    let name = unique("Case-Tenant");
    let tenant = store.create_tenant(&name, T0).await.expect("tenant");
    assert_conflict(
        store.create_tenant(&name.to_lowercase(), T0).await,
        &["tenant"],
    );
    let found = store
        .tenant_by_name(&name.to_uppercase())
        .await
        .expect("read")
        .expect("found whatever the case");
    assert_eq!(found.id, tenant.id);

    let writes = vec![put_policy("Dup1", json!({ "n": 1 }), Expect::Absent)];
    write(store, &tenant, writes).await.expect("create");
    let writes = vec![put_policy("dup1", json!({ "n": 2 }), Expect::Absent)];
    assert_conflict(write(store, &tenant, writes).await, &["\"dup1\""]);
    // A group may share a policy's name: kinds are separate.
    let writes = vec![Write::PutObject {
        kind: ObjectKind::Group,
        name: "DUP1".to_owned(),
        doc: json!({}),
        expect: Expect::Absent,
        by: "alice".to_owned(),
    }];
    write(store, &tenant, writes).await.expect("group");
    // Once deleted, the name is free in any case.
    let writes = vec![Write::DeleteObject {
        kind: ObjectKind::Policy,
        name: "Dup1".to_owned(),
        expect: Expect::Present,
    }];
    write(store, &tenant, writes).await.expect("delete");
    let writes = vec![put_policy("dup1", json!({ "n": 3 }), Expect::Absent)];
    write(store, &tenant, writes)
        .await
        .expect("re-create in another case");
}

pub async fn tenant_settings_updates_can_expect_a_version(store: &dyn Store) {
    let tenant = new_tenant(store, "settings-version").await;
    let t = &tenant.id;
    assert_eq!(store.tenant_settings_version(t).await.expect("v"), 0);
    let put = |n: i64| Write::PutTenantSettings {
        doc: json!({ "n": n }),
    };
    // A stale expectation alone changes nothing, not even on first use.
    let writes = vec![Write::ExpectTenantSettings { version: 1 }, put(1)];
    assert_conflict(write(store, &tenant, writes).await, &["version 0"]);
    assert_eq!(store.tenant_settings(t).await.expect("read"), None);
    assert_eq!(store.tenant_settings_version(t).await.expect("v"), 0);

    let writes = vec![Write::ExpectTenantSettings { version: 0 }, put(1)];
    write(store, &tenant, writes).await.expect("first");
    assert_eq!(store.tenant_settings_version(t).await.expect("v"), 1);
    write(store, &tenant, vec![put(2)])
        .await
        .expect("unconditional");
    assert_eq!(store.tenant_settings_version(t).await.expect("v"), 2);
    let writes = vec![Write::ExpectTenantSettings { version: 1 }, put(3)];
    assert_conflict(write(store, &tenant, writes).await, &["version 2"]);
    assert_eq!(
        store.tenant_settings(t).await.expect("read"),
        Some(json!({ "n": 2 }))
    );
    let writes = vec![Write::ExpectTenantSettings { version: 2 }, put(3)];
    write(store, &tenant, writes)
        .await
        .expect("based on the current one");
    assert_eq!(store.tenant_settings_version(t).await.expect("v"), 3);
}

pub async fn users_are_updated_and_deleted_with_their_sessions(store: &dyn Store) {
    let tenant = new_tenant(store, "user-life").await;
    let t = &tenant.id;
    let alice = user("alice");
    let mut session = token(&tenant, "alice");
    session.kind = "session".to_owned();
    let api = token(&tenant, "alice");
    let writes = vec![
        Write::PutUser(alice.clone()),
        Write::PutToken(session.clone()),
        Write::PutToken(api.clone()),
    ];
    write(store, &tenant, writes).await.expect("create");

    let writes = vec![Write::UpdateUser {
        username: "ALICE".to_owned(),
        role: Some("read_only".to_owned()),
        password_hash: None,
        disabled: Some(true),
    }];
    write(store, &tenant, writes).await.expect("update");
    let updated = store.user(t, "alice").await.expect("read").expect("there");
    assert_eq!(
        (
            updated.role.as_str(),
            updated.disabled,
            &updated.password_hash
        ),
        ("read_only", true, &alice.password_hash)
    );
    let tokens = store.tokens(t).await.expect("tokens");
    assert_eq!(
        tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [api.id.as_str()],
        "the session ended, the API token of the same name stays"
    );

    let writes = vec![Write::DeleteUser {
        username: "alice".to_owned(),
    }];
    write(store, &tenant, writes).await.expect("delete");
    assert_eq!(store.user(t, "alice").await.expect("read"), None);
    let writes = vec![Write::DeleteUser {
        username: "alice".to_owned(),
    }];
    assert_not_found(write(store, &tenant, writes).await, "alice");
    let writes = vec![Write::UpdateUser {
        username: "nobody".to_owned(),
        role: None,
        password_hash: None,
        disabled: Some(false),
    }];
    assert_not_found(write(store, &tenant, writes).await, "nobody");
}

pub async fn tokens_record_use_and_expired_ones_are_purged(store: &dyn Store) {
    let tenant = new_tenant(store, "token-life").await;
    let t = &tenant.id;
    // Long before the other tests' tokens, which run on the same database
    // and must not be purged here.
    const B: Timestamp = T0 - 100_000;
    let mut idle = token(&tenant, "idle-session");
    idle.kind = "session".to_owned();
    idle.expires_at = Some(B + 100_000);
    idle.created_at = B;
    let mut active = token(&tenant, "active-session");
    active.kind = "session".to_owned();
    active.expires_at = Some(B + 100_000);
    active.created_at = B;
    let mut expired = token(&tenant, "expired-api");
    expired.expires_at = Some(B + 10);
    expired.created_at = B;
    let mut forever = token(&tenant, "forever-api");
    forever.expires_at = None;
    forever.created_at = B;
    let writes = vec![
        Write::PutToken(idle.clone()),
        Write::PutToken(active.clone()),
        Write::PutToken(expired.clone()),
        Write::PutToken(forever.clone()),
    ];
    write(store, &tenant, writes).await.expect("tokens");

    store
        .touch_token(t, &active.id, B + 500)
        .await
        .expect("touch");
    // Within a minute of the last record: not written again.
    store
        .touch_token(t, &active.id, B + 530)
        .await
        .expect("touch");
    store
        .touch_token(t, "unknown", B + 530)
        .await
        .expect("ignored");
    let used = |tokens: &[TokenRecord], id: &str| {
        tokens
            .iter()
            .find(|t| t.id == id)
            .and_then(|t| t.last_used_at)
    };
    let tokens = store.tokens(t).await.expect("tokens");
    assert_eq!(used(&tokens, &active.id), Some(B + 500));
    assert_eq!(used(&tokens, &idle.id), None);
    store
        .touch_token(t, &active.id, B + 600)
        .await
        .expect("touch");
    let tokens = store.tokens(t).await.expect("tokens");
    assert_eq!(used(&tokens, &active.id), Some(B + 600));

    // Now B + 1000; sessions idle since before B + 400 go, and so do
    // expired tokens.
    let purged = store.purge_tokens(B + 1000, B + 400).await.expect("purge");
    assert!(purged >= 2, "{purged}");
    let mut left: Vec<String> = store
        .tokens(t)
        .await
        .expect("tokens")
        .into_iter()
        .map(|t| t.name)
        .collect();
    left.sort();
    assert_eq!(left, ["active-session", "forever-api"]);
}

pub async fn audit_is_newest_first_and_paged(store: &dyn Store) {
    let tenant = new_tenant(store, "audit").await;
    let t = &tenant.id;
    assert!(store
        .audit(t, &AuditQuery::recent(10, None))
        .await
        .expect("empty")
        .is_empty());

    for i in 0..5 {
        let name = format!("p{i}");
        let writes = vec![put_policy(&name, json!({ "i": i }), Expect::Absent)];
        let entry = NewAudit {
            before: Some(json!({ "i": i - 1 })),
            ..audit("policy.create", &name)
        };
        store
            .write(t, T0 + i, writes, vec![entry])
            .await
            .expect("write");
    }
    // Several entries in one batch keep their order; an audit-only batch is fine.
    let entries = vec![audit("tenant.settings", "a"), audit("tenant.settings", "b")];
    store
        .write(t, T0 + 10, Vec::new(), entries)
        .await
        .expect("audit only");

    let all = store
        .audit(t, &AuditQuery::recent(100, None))
        .await
        .expect("all");
    let names: Vec<_> = all.iter().map(|a| a.object_name.as_str()).collect();
    assert_eq!(names, ["b", "a", "p4", "p3", "p2", "p1", "p0"]);
    assert!(
        all.windows(2).all(|w| w[0].id > w[1].id),
        "ids decrease: {all:?}"
    );
    let p3 = &all[3];
    assert_eq!(p3.at, T0 + 3);
    assert_eq!(p3.actor, "alice");
    assert_eq!(p3.action, "policy.create");
    assert_eq!(p3.object_kind, "policy");
    assert_eq!(p3.before, Some(json!({ "i": 2 })));
    assert_eq!(p3.after, Some(json!({ "name": "p3" })));
    assert_eq!(all[0].before, None);

    // Paging with `before` walks the same list.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit(t, &AuditQuery::recent(3, before))
            .await
            .expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(store
        .audit(t, &AuditQuery::recent(0, None))
        .await
        .expect("limit 0")
        .is_empty());
    let oldest = all.last().expect("entries").id;
    assert!(store
        .audit(t, &AuditQuery::recent(10, Some(oldest)))
        .await
        .expect("past the end")
        .is_empty());

    // Filters are the database's: each given one must hold.
    let names_of = |q: AuditQuery| async move {
        store
            .audit(t, &q)
            .await
            .expect("filtered")
            .into_iter()
            .map(|a| a.object_name)
            .collect::<Vec<_>>()
    };
    let q = || AuditQuery::recent(100, None);
    let action = |a: &str| AuditQuery {
        action: Some(a.into()),
        ..q()
    };
    assert_eq!(
        names_of(action("policy.create")).await,
        ["p4", "p3", "p2", "p1", "p0"]
    );
    assert_eq!(names_of(action("tenant.*")).await, ["b", "a"]);
    assert_eq!(names_of(action("policy.*")).await.len(), 5);
    assert!(
        names_of(action("policy")).await.is_empty(),
        "exact, not a prefix"
    );
    // LIKE's wildcards in a kind stand for themselves.
    assert!(names_of(action("polic_.*")).await.is_empty());
    assert!(names_of(action("%.*")).await.is_empty());
    let named = AuditQuery {
        object_kind: Some("policy".into()),
        object_name: Some("p3".into()),
        ..q()
    };
    assert_eq!(names_of(named).await, ["p3"]);
    let by = |actor: &str| AuditQuery {
        actor: Some(actor.into()),
        ..q()
    };
    assert_eq!(names_of(by("alice")).await.len(), 7);
    assert!(names_of(by("bob")).await.is_empty());
    let window = |since: Option<i64>, until: Option<i64>| AuditQuery {
        since,
        until,
        ..q()
    };
    assert_eq!(
        names_of(window(Some(T0 + 3), None)).await,
        ["b", "a", "p4", "p3"]
    );
    assert_eq!(
        names_of(window(None, Some(T0 + 3))).await,
        ["p2", "p1", "p0"]
    );
    assert_eq!(
        names_of(window(Some(T0 + 1), Some(T0 + 3))).await,
        ["p2", "p1"]
    );
    // Filters and paging together.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit(
                t,
                &AuditQuery {
                    before,
                    limit: 2,
                    ..action("policy.create")
                },
            )
            .await
            .expect("filtered page");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        pages.push(page.into_iter().map(|a| a.object_name).collect::<Vec<_>>());
    }
    assert_eq!(pages, [vec!["p4", "p3"], vec!["p2", "p1"], vec!["p0"]]);
}

pub async fn tenants_are_isolated(store: &dyn Store) {
    let a = new_tenant(store, "isolation-a").await;
    let b = new_tenant(store, "isolation-b").await;
    let a_token = token(&a, "ci");
    let a_device = device("dev");
    let a_onboarding = onboarding_token(None);
    let writes = vec![
        put_policy("shared", json!({ "owner": "a" }), Expect::Absent),
        put_policy(
            "shared",
            json!({ "owner": "a", "v": 2 }),
            Expect::Version(1),
        ),
        put(
            ObjectKind::Group,
            "all",
            json!({ "owner": "a" }),
            Expect::Absent,
        ),
        Write::PutTenantSettings {
            doc: json!({ "owner": "a" }),
        },
        Write::PutDevice(a_device.clone()),
        Write::PutToken(a_token.clone()),
        Write::PutUser(user("admin")),
        Write::PutTenantSecrets(secrets("a")),
        Write::PutOnboardingToken(a_onboarding.clone()),
    ];
    store
        .write(&a.id, T0, writes, vec![audit("policy.create", "shared")])
        .await
        .expect("tenant a");
    let report = vec![status("dev", "firewall.enabled", "", "succeeded")];
    assert_eq!(
        store
            .record_statuses(&a.id, "dev", report.clone())
            .await
            .expect("a"),
        1
    );

    // B sees none of A's records.
    let bt = &b.id;
    assert!(store
        .objects(bt, ObjectKind::Policy)
        .await
        .expect("objects")
        .is_empty());
    assert!(store
        .objects(bt, ObjectKind::Group)
        .await
        .expect("objects")
        .is_empty());
    assert_eq!(
        store
            .object(bt, ObjectKind::Policy, "shared")
            .await
            .expect("object"),
        None
    );
    assert!(versions(store, &b, ObjectKind::Policy, "shared")
        .await
        .is_empty());
    assert_eq!(store.tenant_settings(bt).await.expect("settings"), None);
    assert!(store.devices(bt).await.expect("devices").is_empty());
    assert_eq!(store.device(bt, "dev").await.expect("device"), None);
    assert!(store.statuses(bt).await.expect("statuses").is_empty());
    assert!(store
        .device_statuses(bt, "dev")
        .await
        .expect("statuses")
        .is_empty());
    assert!(store.tokens(bt).await.expect("tokens").is_empty());
    assert!(store.users(bt).await.expect("users").is_empty());
    assert_eq!(store.user(bt, "admin").await.expect("user"), None);
    assert!(store
        .audit(bt, &AuditQuery::recent(100, None))
        .await
        .expect("audit")
        .is_empty());
    assert_eq!(store.tenant_secrets(bt).await.expect("secrets"), None);
    assert!(store
        .onboarding_tokens(bt)
        .await
        .expect("onboarding tokens")
        .is_empty());
    assert_eq!(
        store
            .device_by_id(bt, &a_device.id)
            .await
            .expect("device by id"),
        None
    );

    // B cannot reach A's records through writes either.
    assert_not_found(
        store.record_statuses(bt, "dev", report.clone()).await,
        "dev",
    );
    let writes = vec![Write::DeleteDevice {
        name: "dev".to_owned(),
        reason: "deleted in a test".into(),
    }];
    assert_not_found(write(store, &b, writes).await, "dev");
    let writes = vec![Write::SetDeviceTags {
        name: "dev".to_owned(),
        tags: Vec::new(),
    }];
    assert_not_found(write(store, &b, writes).await, "dev");
    let writes = vec![Write::DeleteToken {
        id: a_token.id.clone(),
    }];
    assert_not_found(write(store, &b, writes).await, &a_token.id);
    let writes = vec![delete_policy("shared", Expect::Present)];
    assert_not_found(write(store, &b, writes).await, "shared");
    for write_to_a in [
        facts("dev", Some(Vec::new()), Some(T0 + 9)),
        Write::SetDeviceIdentity {
            name: "dev".to_owned(),
            cert_serial: Some("b0b0".to_owned()),
            cert_not_after: Some(T0 + 9),
            key_sha256: None,
        },
        Write::SetIssuedPolicy {
            name: "dev".to_owned(),
            version: 99,
            digest: "b".to_owned(),
        },
        Write::SetAppliedPolicy {
            name: "dev".to_owned(),
            digest: None,
            version: None,
        },
    ] {
        assert_not_found(write(store, &b, vec![write_to_a]).await, "dev");
    }
    store
        .touch_devices(bt, vec![("dev".to_owned(), T0 + 999)])
        .await
        .expect("touching nothing");

    // The same names in B are B's own, with their own versions.
    let writes = vec![
        put_policy("shared", json!({ "owner": "b" }), Expect::Absent),
        put(
            ObjectKind::Group,
            "all",
            json!({ "owner": "b" }),
            Expect::Absent,
        ),
        Write::PutTenantSettings {
            doc: json!({ "owner": "b" }),
        },
        Write::PutDevice(device("dev")),
        Write::PutToken(token(&b, "ci")),
        Write::PutUser(user("admin")),
        Write::PutTenantSecrets(secrets("b")),
    ];
    store
        .write(bt, T0, writes, vec![audit("policy.create", "shared")])
        .await
        .expect("tenant b");
    assert_eq!(
        store
            .record_statuses(bt, "dev", report.clone())
            .await
            .expect("b"),
        1
    );
    let b_policy = store
        .object(bt, ObjectKind::Policy, "shared")
        .await
        .expect("read");
    assert_eq!(
        b_policy.map(|p| (p.version, p.doc)),
        Some((1, json!({ "owner": "b" })))
    );
    let writes = vec![Write::DeleteDevice {
        name: "dev".to_owned(),
        reason: "deleted in a test".into(),
    }];
    write(store, &b, writes).await.expect("delete b's device");

    // A is untouched.
    let a_policy = store
        .object(&a.id, ObjectKind::Policy, "shared")
        .await
        .expect("read");
    assert_eq!(a_policy.map(|p| p.version), Some(2));
    assert_eq!(
        versions(store, &a, ObjectKind::Policy, "shared").await,
        [1, 2]
    );
    assert_eq!(versions(store, &b, ObjectKind::Policy, "shared").await, [1]);
    assert_eq!(
        store.tenant_settings(&a.id).await.expect("settings"),
        Some(json!({ "owner": "a" }))
    );
    assert_eq!(
        store.device(&a.id, "dev").await.expect("device"),
        Some(a_device.clone())
    );
    assert_eq!(
        store
            .device_by_id(&a.id, &a_device.id)
            .await
            .expect("by id"),
        Some(a_device)
    );
    assert_eq!(
        store.tenant_secrets(&a.id).await.expect("secrets"),
        Some(secrets("a"))
    );
    assert_eq!(
        store.tenant_secrets(bt).await.expect("secrets"),
        Some(secrets("b"))
    );
    assert_eq!(
        store.onboarding_tokens(&a.id).await.expect("onboarding"),
        vec![a_onboarding.clone()]
    );
    assert_eq!(
        store
            .consume_onboarding_token(&a_onboarding.hash, T0)
            .await
            .expect("consume"),
        TokenUse::Accepted {
            tenant_id: a.id.clone(),
            token_id: a_onboarding.id.clone()
        }
    );
    assert_eq!(
        store
            .device_statuses(&a.id, "dev")
            .await
            .expect("statuses")
            .len(),
        1
    );
    assert_eq!(store.users(&a.id).await.expect("users").len(), 1);
    assert_eq!(
        store.tokens(&a.id).await.expect("tokens"),
        vec![a_token.clone()]
    );
    let found = store.token_by_hash(&a_token.hash).await.expect("by hash");
    assert_eq!(found.map(|tok| tok.tenant_id), Some(a.id.clone()));
    assert_eq!(
        store
            .audit(&a.id, &AuditQuery::recent(100, None))
            .await
            .expect("audit")
            .len(),
        1
    );
    assert_eq!(
        store
            .audit(bt, &AuditQuery::recent(100, None))
            .await
            .expect("audit")
            .len(),
        1
    );
}

pub async fn tenant_secrets_round_trip(store: &dyn Store) {
    let tenant = new_tenant(store, "secrets").await;
    let other = new_tenant(store, "secrets-other").await;
    let t = &tenant.id;
    assert_eq!(store.tenant_secrets(t).await.expect("read"), None);

    let first = secrets("first");
    let writes = vec![Write::PutTenantSecrets(first.clone())];
    write(store, &tenant, writes).await.expect("put secrets");
    assert_eq!(
        store.tenant_secrets(t).await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(
        store.tenant_secrets(&other.id).await.expect("read"),
        None,
        "secrets belong to their tenant"
    );

    // Writing them again replaces them.
    let mut second = secrets("second");
    second.ca_cert_pem = format!("{}\n-----END CERTIFICATE-----\n", "MIIB".repeat(2000));
    let writes = vec![Write::PutTenantSecrets(second.clone())];
    write(store, &tenant, writes)
        .await
        .expect("replace secrets");
    assert_eq!(
        store.tenant_secrets(t).await.expect("read"),
        Some(second.clone())
    );

    let theirs = secrets("theirs");
    let writes = vec![Write::PutTenantSecrets(theirs.clone())];
    write(store, &other, writes).await.expect("other's secrets");
    assert_eq!(
        store.tenant_secrets(t).await.expect("read"),
        Some(second.clone())
    );
    assert_eq!(
        store.tenant_secrets(&other.id).await.expect("read"),
        Some(theirs)
    );

    // What the store hands back still keeps the private keys out of Debug.
    let debug = format!("{:?}", store.tenant_secrets(t).await.expect("read"));
    assert!(!debug.contains(&second.ca_key_pem), "{debug}");
    assert!(!debug.contains(&second.signing_key), "{debug}");
    assert!(debug.contains(&second.verify_key), "{debug}");

    let missing = unique("no-such-tenant");
    let result = store
        .write(
            &missing,
            T0,
            vec![Write::PutTenantSecrets(secrets("x"))],
            Vec::new(),
        )
        .await;
    assert_not_found(result, &missing);
}

pub async fn policy_keys_rotate_only_from_the_expected_key(store: &dyn Store) {
    let tenant = new_tenant(store, "rotation").await;
    let t = &tenant.id;
    let rotate = |expected: &str, label: &str, announcements: Vec<String>| Write::RotatePolicyKey {
        expected_verify_key: expected.to_owned(),
        signing_key: format!("5ec2e7{label}"),
        verify_key: format!("0b11c0{label}"),
        key_announcements: announcements,
    };
    let result = write(store, &tenant, vec![rotate("0b11c0first", "x", Vec::new())]).await;
    assert_not_found(result, "secrets");

    let first = secrets("first");
    write(store, &tenant, vec![Write::PutTenantSecrets(first.clone())])
        .await
        .expect("put secrets");
    let announced = vec!["{\"payload\":\"1\",\"signature\":\"ab\"}".to_owned()];
    write(
        store,
        &tenant,
        vec![rotate(&first.verify_key, "second", announced.clone())],
    )
    .await
    .expect("rotate from the current key");
    let stored = store
        .tenant_secrets(t)
        .await
        .expect("read")
        .expect("secrets");
    assert_eq!(stored.signing_key, "5ec2e7second");
    assert_eq!(stored.verify_key, "0b11c0second");
    assert_eq!(stored.key_announcements, announced);
    assert_eq!(stored.ca_key_pem, first.ca_key_pem, "the CA is not touched");

    // A rotation based on the key that was current before loses: another
    // rotation won, and its announcements stay.
    let stale = rotate(&first.verify_key, "third", vec!["other".to_owned()]);
    assert_conflict(write(store, &tenant, vec![stale]).await, &["policy key"]);
    let stored = store
        .tenant_secrets(t)
        .await
        .expect("read")
        .expect("secrets");
    assert_eq!(stored.verify_key, "0b11c0second");
    assert_eq!(stored.key_announcements, announced);

    // Replacing the secrets wholesale keeps what the caller gives.
    let mut replaced = secrets("replaced");
    replaced.key_announcements = vec!["a".to_owned(), "b".to_owned()];
    write(
        store,
        &tenant,
        vec![Write::PutTenantSecrets(replaced.clone())],
    )
    .await
    .expect("replace");
    assert_eq!(store.tenant_secrets(t).await.expect("read"), Some(replaced));
}

pub async fn server_secrets_are_written_once(store: &dyn Store) {
    // Installation secrets are shared by every tenant (and every run of the
    // suite on one database), so each run uses names of its own.
    let name = unique("server-ca");
    assert_eq!(store.server_secret(&name).await.expect("read"), None);

    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        store
            .put_server_secret_if_absent(&name, pem)
            .await
            .expect("put"),
        pem
    );
    assert_eq!(
        store
            .put_server_secret_if_absent(&name, "second")
            .await
            .expect("put again"),
        pem,
        "the first value stays"
    );
    assert_eq!(
        store.server_secret(&name).await.expect("read"),
        Some(pem.to_owned())
    );

    let other = unique("server-key");
    assert_eq!(
        store
            .put_server_secret_if_absent(&other, "second")
            .await
            .expect("put other"),
        "second"
    );
    assert_eq!(
        store.server_secret(&name).await.expect("read"),
        Some(pem.to_owned())
    );
    assert_eq!(
        store.server_secret(&other).await.expect("read"),
        Some("second".to_owned())
    );
}

pub async fn a_migrated_store_is_ready(store: &dyn Store) {
    store.ready().await.expect("ready");
}

pub async fn server_secrets_are_replaced_only_from_the_expected_value(store: &dyn Store) {
    let name = unique("sealed-ca");
    assert!(matches!(
        store.replace_server_secret(&name, "a", "b").await,
        Err(StoreError::NotFound(_))
    ));
    store
        .put_server_secret_if_absent(&name, "sealed-1")
        .await
        .expect("put");
    assert!(matches!(
        store
            .replace_server_secret(&name, "stale", "sealed-2")
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.server_secret(&name).await.expect("read").as_deref(),
        Some("sealed-1")
    );
    store
        .replace_server_secret(&name, "sealed-1", "sealed-2")
        .await
        .expect("replace");
    assert_eq!(
        store.server_secret(&name).await.expect("read").as_deref(),
        Some("sealed-2")
    );
}

pub async fn onboarding_tokens_round_trip(store: &dyn Store) {
    let tenant = new_tenant(store, "onboarding").await;
    let other = new_tenant(store, "onboarding-other").await;
    let t = &tenant.id;
    assert!(store.onboarding_tokens(t).await.expect("list").is_empty());

    let mut later = onboarding_token(Some(5));
    later.created_at = T0 + 10;
    later.uses = 2;
    let unlimited = onboarding_token(None);
    let mut most = onboarding_token(Some(u32::MAX));
    most.uses = u32::MAX - 1;
    let writes = vec![
        Write::PutOnboardingToken(later.clone()),
        Write::PutOnboardingToken(unlimited.clone()),
        Write::PutOnboardingToken(most.clone()),
    ];
    write(store, &tenant, writes).await.expect("put tokens");

    // Oldest first; tokens created at the same time by id.
    let mut same_time = vec![unlimited.clone(), most.clone()];
    same_time.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = same_time;
    expected.push(later.clone());
    assert_eq!(store.onboarding_tokens(t).await.expect("list"), expected);
    assert!(store
        .onboarding_tokens(&other.id)
        .await
        .expect("list")
        .is_empty());

    // A hash is unique across the whole store.
    let mut copy = onboarding_token(Some(1));
    copy.hash = later.hash.clone();
    let writes = vec![Write::PutOnboardingToken(copy)];
    assert_conflict(write(store, &other, writes).await, &["onboarding token"]);
    // An id is unique within its tenant.
    let mut same_id = onboarding_token(None);
    same_id.id = later.id.clone();
    let writes = vec![Write::PutOnboardingToken(same_id.clone())];
    assert_conflict(
        write(store, &tenant, writes).await,
        &["onboarding token", &later.id],
    );
    let writes = vec![Write::PutOnboardingToken(same_id.clone())];
    write(store, &other, writes)
        .await
        .expect("the same id in another tenant");
    assert_eq!(
        store.onboarding_tokens(&other.id).await.expect("list"),
        [same_id]
    );
    assert_eq!(store.onboarding_tokens(t).await.expect("list"), expected);
}

/// A revoked onboarding token is gone: consuming it answers Unknown, and
/// revoking it again (or from another tenant) is NotFound.
pub async fn revoked_onboarding_tokens_are_unknown(store: &dyn Store) {
    let tenant = new_tenant(store, "revoke").await;
    let other = new_tenant(store, "revoke-other").await;
    let token = onboarding_token(None);
    write(
        store,
        &tenant,
        vec![Write::PutOnboardingToken(token.clone())],
    )
    .await
    .expect("token");
    assert_not_found(
        write(
            store,
            &other,
            vec![Write::DeleteOnboardingToken {
                id: token.id.clone(),
            }],
        )
        .await,
        "onboarding token",
    );
    write(
        store,
        &tenant,
        vec![Write::DeleteOnboardingToken {
            id: token.id.clone(),
        }],
    )
    .await
    .expect("revoke");
    assert_eq!(
        store
            .consume_onboarding_token(&token.hash, T0)
            .await
            .expect("consume"),
        TokenUse::Unknown
    );
    assert!(store
        .onboarding_tokens(&tenant.id)
        .await
        .expect("list")
        .is_empty());
    assert_not_found(
        write(
            store,
            &tenant,
            vec![Write::DeleteOnboardingToken {
                id: token.id.clone(),
            }],
        )
        .await,
        "onboarding token",
    );
}

pub async fn onboarding_tokens_are_consumed(store: &dyn Store) {
    let tenant = new_tenant(store, "consume").await;
    let t = &tenant.id;
    let twice = onboarding_token(Some(2));
    let mut expiring = onboarding_token(None);
    expiring.expires_at = T0 + 100;
    let none_left = onboarding_token(Some(0));
    let mut spent_and_expired = onboarding_token(Some(1));
    spent_and_expired.uses = 1;
    spent_and_expired.expires_at = T0 + 100;
    let unlimited = onboarding_token(None);
    let all = [
        &twice,
        &expiring,
        &none_left,
        &spent_and_expired,
        &unlimited,
    ];
    let writes = all
        .iter()
        .map(|token| Write::PutOnboardingToken((*token).clone()))
        .collect();
    write(store, &tenant, writes).await.expect("tokens");

    let accepted = |token: &OnboardingTokenRecord| TokenUse::Accepted {
        tenant_id: tenant.id.clone(),
        token_id: token.id.clone(),
    };
    let consume = |hash: String, now: Timestamp| async move {
        store
            .consume_onboarding_token(&hash, now)
            .await
            .expect("consume")
    };
    let now = T0 + 50;

    assert_eq!(
        consume(unique("no-such-hash"), now).await,
        TokenUse::Unknown
    );

    // `expires_at` is the first moment the token is refused.
    assert_eq!(
        consume(expiring.hash.clone(), T0 + 99).await,
        accepted(&expiring)
    );
    assert_eq!(
        consume(expiring.hash.clone(), T0 + 100).await,
        TokenUse::Expired
    );
    assert_eq!(
        consume(expiring.hash.clone(), T0 + 5000).await,
        TokenUse::Expired
    );

    // `max_uses` uses, then no more.
    assert_eq!(consume(twice.hash.clone(), now).await, accepted(&twice));
    assert_eq!(consume(twice.hash.clone(), now).await, accepted(&twice));
    assert_eq!(consume(twice.hash.clone(), now).await, TokenUse::Exhausted);
    assert_eq!(consume(twice.hash.clone(), now).await, TokenUse::Exhausted);
    assert_eq!(
        consume(none_left.hash.clone(), now).await,
        TokenUse::Exhausted
    );
    // Expiry is checked first.
    assert_eq!(
        consume(spent_and_expired.hash.clone(), T0 + 100).await,
        TokenUse::Expired
    );
    assert_eq!(
        consume(spent_and_expired.hash.clone(), now).await,
        TokenUse::Exhausted
    );
    for _ in 0..5 {
        assert_eq!(
            consume(unlimited.hash.clone(), now).await,
            accepted(&unlimited)
        );
    }

    // Only accepted uses count, and nothing else about a token changes.
    let stored = store.onboarding_tokens(t).await.expect("list");
    let expected_uses = [
        (&twice, 2),
        (&expiring, 1),
        (&none_left, 0),
        (&spent_and_expired, 1),
        (&unlimited, 5),
    ];
    for (token, uses) in expected_uses {
        let found = stored
            .iter()
            .find(|s| s.id == token.id)
            .expect("token listed");
        assert_eq!(
            found,
            &OnboardingTokenRecord {
                uses,
                ..token.clone()
            }
        );
    }
}

pub async fn device_identity_round_trips(store: &dyn Store) {
    let tenant = new_tenant(store, "identity").await;
    let other = new_tenant(store, "identity-other").await;
    let t = &tenant.id;
    let enrolled = device("laptop-1");
    let mut fresh = device("laptop-2");
    fresh.cert_serial = None;
    fresh.cert_not_after = None;
    fresh.issued_version = 0;
    fresh.issued_digest = None;
    let writes = vec![
        Write::PutDevice(enrolled.clone()),
        Write::PutDevice(fresh.clone()),
    ];
    write(store, &tenant, writes).await.expect("devices");
    let writes = vec![Write::PutDevice(device("laptop-1"))];
    write(store, &other, writes).await.expect("other's device");

    assert_eq!(
        store.device_by_id(t, &enrolled.id).await.expect("by id"),
        Some(enrolled.clone())
    );
    assert_eq!(
        store.device_by_id(t, &fresh.id).await.expect("by id"),
        Some(fresh.clone())
    );
    assert_eq!(
        store.device_by_id(t, "no-such-id").await.expect("by id"),
        None
    );
    assert_eq!(
        store
            .device_by_id(&other.id, &enrolled.id)
            .await
            .expect("by id"),
        None,
        "an id is looked up in its tenant only"
    );

    // A certificate replaces the identity and changes nothing else.
    let writes = vec![Write::SetDeviceIdentity {
        name: "laptop-2".to_owned(),
        cert_serial: Some("7e57c0de".to_owned()),
        cert_not_after: Some(T0 + 1000),
        key_sha256: Some("5ca1ab1e".to_owned()),
    }];
    write(store, &tenant, writes).await.expect("identity");
    let identified = DeviceRecord {
        cert_serial: Some("7e57c0de".to_owned()),
        cert_not_after: Some(T0 + 1000),
        key_sha256: Some("5ca1ab1e".to_owned()),
        ..fresh.clone()
    };
    assert_eq!(
        store.device(t, "laptop-2").await.expect("read"),
        Some(identified.clone())
    );
    assert_eq!(
        store.device_by_id(t, &fresh.id).await.expect("by id"),
        Some(identified.clone())
    );
    let writes = vec![Write::SetDeviceIdentity {
        name: "laptop-1".to_owned(),
        cert_serial: Some("a1b2".to_owned()),
        cert_not_after: Some(T0 + 2000),
        key_sha256: Some("b0b0".to_owned()),
    }];
    write(store, &tenant, writes).await.expect("renew");
    assert_eq!(
        store.device(t, "laptop-1").await.expect("read"),
        Some(DeviceRecord {
            cert_serial: Some("a1b2".to_owned()),
            cert_not_after: Some(T0 + 2000),
            key_sha256: Some("b0b0".to_owned()),
            ..enrolled.clone()
        })
    );
    // Clearing the identity leaves no certificate to accept.
    let writes = vec![Write::SetDeviceIdentity {
        name: "laptop-1".to_owned(),
        cert_serial: None,
        cert_not_after: None,
        key_sha256: None,
    }];
    write(store, &tenant, writes).await.expect("clear");
    assert_eq!(
        store.device_by_id(t, &enrolled.id).await.expect("read"),
        Some(DeviceRecord {
            cert_serial: None,
            cert_not_after: None,
            key_sha256: None,
            ..enrolled.clone()
        })
    );
    let other_device = store
        .device(&other.id, "laptop-1")
        .await
        .expect("read")
        .expect("other's device");
    assert_eq!(other_device.cert_serial, device("x").cert_serial);
    let writes = vec![Write::SetDeviceIdentity {
        name: "ghost".to_owned(),
        cert_serial: Some("00".to_owned()),
        cert_not_after: Some(T0),
        key_sha256: None,
    }];
    assert_not_found(write(store, &tenant, writes).await, "device \"ghost\"");

    // What the agent holds is recorded as given, and only that.
    let writes = vec![Write::SetAppliedPolicy {
        name: "laptop-2".to_owned(),
        digest: Some("held".to_owned()),
        version: Some(u64::from(u32::MAX) + 1),
    }];
    write(store, &tenant, writes).await.expect("applied");
    let applied = DeviceRecord {
        applied_digest: Some("held".to_owned()),
        policy_version: Some(u64::from(u32::MAX) + 1),
        ..identified.clone()
    };
    assert_eq!(
        store.device(t, "laptop-2").await.expect("read"),
        Some(applied.clone())
    );
    let writes = vec![Write::SetAppliedPolicy {
        name: "laptop-2".to_owned(),
        digest: None,
        version: None,
    }];
    write(store, &tenant, writes).await.expect("cleared");
    assert_eq!(
        store.device(t, "laptop-2").await.expect("read"),
        Some(DeviceRecord {
            applied_digest: None,
            policy_version: None,
            ..applied
        })
    );
    let writes = vec![Write::SetAppliedPolicy {
        name: "ghost".to_owned(),
        digest: None,
        version: None,
    }];
    assert_not_found(write(store, &tenant, writes).await, "device \"ghost\"");
}

pub async fn issued_policy_versions_only_go_up(store: &dyn Store) {
    let tenant = new_tenant(store, "issued").await;
    let t = &tenant.id;
    let mut dev = device("dev");
    dev.issued_version = 0;
    dev.issued_digest = None;
    write(store, &tenant, vec![Write::PutDevice(dev.clone())])
        .await
        .expect("device");
    let issue = |version: u64, digest: &str| Write::SetIssuedPolicy {
        name: "dev".to_owned(),
        version,
        digest: digest.to_owned(),
    };
    let issued = |version: u64, digest: &str| DeviceRecord {
        issued_version: version,
        issued_digest: Some(digest.to_owned()),
        ..dev.clone()
    };

    write(store, &tenant, vec![issue(1, "d1")])
        .await
        .expect("first");
    assert_eq!(
        store.device(t, "dev").await.expect("read"),
        Some(issued(1, "d1"))
    );
    // Versions may skip, and issuing the same one again changes nothing.
    write(store, &tenant, vec![issue(3, "d3")])
        .await
        .expect("skip");
    write(store, &tenant, vec![issue(3, "d3")])
        .await
        .expect("same again");
    assert_eq!(
        store.device(t, "dev").await.expect("read"),
        Some(issued(3, "d3"))
    );

    // The same version with another digest, or an older one, is refused.
    assert_conflict(
        write(store, &tenant, vec![issue(3, "other")]).await,
        &["\"dev\"", "version 3"],
    );
    assert_conflict(
        write(store, &tenant, vec![issue(2, "d2")]).await,
        &["\"dev\"", "version 3"],
    );
    assert_conflict(
        write(store, &tenant, vec![issue(0, "d0")]).await,
        &["\"dev\""],
    );
    // A refused version fails its whole batch.
    let writes = vec![
        Write::SetDeviceTags {
            name: "dev".to_owned(),
            tags: vec!["changed".to_owned()],
        },
        issue(1, "old"),
    ];
    assert_conflict(write(store, &tenant, writes).await, &["\"dev\""]);
    assert_eq!(
        store.device(t, "dev").await.expect("read"),
        Some(issued(3, "d3"))
    );

    let big = u64::from(u32::MAX) + 1;
    write(store, &tenant, vec![issue(big, "big")])
        .await
        .expect("big");
    assert_eq!(
        store.device(t, "dev").await.expect("read"),
        Some(issued(big, "big"))
    );

    // Replacing the device writes what it is given.
    write(store, &tenant, vec![Write::PutDevice(dev.clone())])
        .await
        .expect("replace");
    assert_eq!(store.device(t, "dev").await.expect("read"), Some(dev));

    let writes = vec![Write::SetIssuedPolicy {
        name: "ghost".to_owned(),
        version: 1,
        digest: "d".to_owned(),
    }];
    assert_not_found(write(store, &tenant, writes).await, "device \"ghost\"");
}

pub async fn device_facts_keep_what_the_agent_does_not_report(store: &dyn Store) {
    let tenant = new_tenant(store, "facts").await;
    let t = &tenant.id;
    let dev = device("desk-1");
    write(store, &tenant, vec![Write::PutDevice(dev.clone())])
        .await
        .expect("device");
    let report = vec![status("desk-1", "firewall.enabled", "", "succeeded")];
    assert_eq!(
        store
            .record_statuses(t, "desk-1", report)
            .await
            .expect("statuses"),
        1
    );

    // An administrator tags the device; a check-in without tags keeps them
    // and updates everything it reports.
    let admin_tags = vec!["finance".to_owned(), "pilot".to_owned()];
    let writes = vec![Write::SetDeviceTags {
        name: "desk-1".to_owned(),
        tags: admin_tags.clone(),
    }];
    write(store, &tenant, writes).await.expect("admin tags");
    write(store, &tenant, vec![facts("desk-1", None, Some(T0 + 50))])
        .await
        .expect("check-in");
    let checked_in = DeviceRecord {
        os: "windows".to_owned(),
        os_version: "11 23H2".to_owned(),
        device_type: "workstation".to_owned(),
        agent_version: "0.2.0".to_owned(),
        tags: admin_tags,
        managed_by: "intune".to_owned(),
        labels: vec!["Joined".to_owned()],
        enrollment_status: "failed".to_owned(),
        enrollment_code: Some("E_MDM".to_owned()),
        enrollment_reason: Some("managed by another MDM".to_owned()),
        last_check_in: Some(T0 + 50),
        // Conditions are as reported, the stored ones replaced.
        conditions: vec!["non_persistent_vdi".to_owned()],
        // Id, creation time, identity, issued and applied policy stay.
        ..dev.clone()
    };
    assert_eq!(
        store.device(t, "desk-1").await.expect("read"),
        Some(checked_in.clone())
    );
    // The row is updated in place: the device keeps its statuses.
    assert_eq!(
        store
            .device_statuses(t, "desk-1")
            .await
            .expect("statuses")
            .len(),
        1
    );

    // Tags that are given replace the stored ones, in order.
    let agent_tags = vec!["zeta".to_owned(), "agent".to_owned()];
    let writes = vec![facts("desk-1", Some(agent_tags.clone()), Some(T0 + 60))];
    write(store, &tenant, writes).await.expect("with tags");
    assert_eq!(
        store.device(t, "desk-1").await.expect("read"),
        Some(DeviceRecord {
            tags: agent_tags,
            last_check_in: Some(T0 + 60),
            ..checked_in.clone()
        })
    );
    let writes = vec![facts("desk-1", Some(Vec::new()), Some(T0 + 70))];
    write(store, &tenant, writes).await.expect("no tags");
    let untagged = store
        .device(t, "desk-1")
        .await
        .expect("read")
        .expect("device");
    assert!(untagged.tags.is_empty(), "{untagged:?}");

    // Optional facts can be cleared.
    let mut enrolled = facts("desk-1", None, Some(T0 + 80));
    if let Write::UpdateDeviceFacts {
        enrollment_status,
        enrollment_code,
        enrollment_reason,
        labels,
        ..
    } = &mut enrolled
    {
        *enrollment_status = "enrolled".to_owned();
        *enrollment_code = None;
        *enrollment_reason = None;
        labels.clear();
    }
    write(store, &tenant, vec![enrolled])
        .await
        .expect("enrolled");
    assert_eq!(
        store.device(t, "desk-1").await.expect("read"),
        Some(DeviceRecord {
            tags: Vec::new(),
            labels: Vec::new(),
            enrollment_status: "enrolled".to_owned(),
            enrollment_code: None,
            enrollment_reason: None,
            last_check_in: Some(T0 + 80),
            ..checked_in.clone()
        })
    );

    // Without a time the stored one stays.
    write(store, &tenant, vec![facts("desk-1", None, None)])
        .await
        .expect("no time");
    let kept = store
        .device(t, "desk-1")
        .await
        .expect("read")
        .expect("device");
    assert_eq!(kept.last_check_in, Some(T0 + 80));
    assert_eq!(
        kept.enrollment_status, "failed",
        "the other facts are written"
    );

    assert_not_found(
        write(store, &tenant, vec![facts("ghost", None, Some(T0))]).await,
        "device \"ghost\"",
    );
}

pub async fn touch_devices_moves_last_check_in_forward(store: &dyn Store) {
    let tenant = new_tenant(store, "touch").await;
    let other = new_tenant(store, "touch-other").await;
    let t = &tenant.id;
    let mut never = device("never");
    never.last_check_in = None;
    let seen = device("seen");
    let untouched = device("untouched");
    let writes = vec![
        Write::PutDevice(never.clone()),
        Write::PutDevice(seen.clone()),
        Write::PutDevice(untouched.clone()),
    ];
    write(store, &tenant, writes).await.expect("devices");
    write(store, &other, vec![Write::PutDevice(device("seen"))])
        .await
        .expect("other's device");

    let touches = vec![
        ("seen".to_owned(), T0 + 100),
        ("never".to_owned(), T0 + 50),
        ("ghost".to_owned(), T0 + 100),
        // Of a name given twice, the later time counts.
        ("seen".to_owned(), T0 + 90),
    ];
    store.touch_devices(t, touches).await.expect("touch");
    // Nothing else about a device changes.
    assert_eq!(
        store.device(t, "seen").await.expect("read"),
        Some(DeviceRecord {
            last_check_in: Some(T0 + 100),
            ..seen.clone()
        })
    );
    assert_eq!(
        store.device(t, "never").await.expect("read"),
        Some(DeviceRecord {
            last_check_in: Some(T0 + 50),
            ..never
        })
    );
    assert_eq!(
        store.device(t, "untouched").await.expect("read"),
        Some(untouched)
    );
    assert_eq!(store.device(t, "ghost").await.expect("read"), None);
    let theirs = store
        .device(&other.id, "seen")
        .await
        .expect("read")
        .expect("other's device");
    assert_eq!(theirs.last_check_in, seen.last_check_in);

    // An older time never moves it back.
    let touches = vec![("seen".to_owned(), T0 + 20)];
    store.touch_devices(t, touches).await.expect("older");
    let last = |device: Option<DeviceRecord>| device.and_then(|d| d.last_check_in);
    assert_eq!(
        last(store.device(t, "seen").await.expect("read")),
        Some(T0 + 100)
    );

    // Nothing to touch, or a tenant that does not exist, is fine.
    store.touch_devices(t, Vec::new()).await.expect("empty");
    store
        .touch_devices(&unique("no-such-tenant"), vec![("seen".to_owned(), T0)])
        .await
        .expect("unknown tenant");

    // A write-behind batch touches many devices at once.
    let names: Vec<String> = (0..60).map(|i| format!("bulk-{i:02}")).collect();
    let writes = names.iter().map(|n| Write::PutDevice(device(n))).collect();
    write(store, &tenant, writes).await.expect("bulk devices");
    let touches = names
        .iter()
        .zip(1000..)
        .map(|(name, i)| (name.clone(), T0 + i))
        .collect();
    store.touch_devices(t, touches).await.expect("bulk touch");
    for (name, i) in names.iter().zip(1000..) {
        assert_eq!(
            last(store.device(t, name).await.expect("read")),
            Some(T0 + i),
            "{name}"
        );
    }
}

/// Runs `writers` copies of a write at once; returns each one's result.
async fn race(
    store: &Arc<dyn Store>,
    tenant: &Tenant,
    writers: usize,
    make: impl Fn(usize) -> Write,
) -> Vec<Result<()>> {
    // A barrier makes the writers start together rather than one after the
    // other as they are spawned.
    let barrier = Arc::new(tokio::sync::Barrier::new(writers));
    let mut tasks = Vec::new();
    for i in 0..writers {
        let store = Arc::clone(store);
        let barrier = Arc::clone(&barrier);
        let tenant = tenant.id.clone();
        let write = make(i);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.write(&tenant, T0, vec![write], Vec::new()).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("writer task"));
    }
    results
}

/// The index of the one writer that succeeded; every other one must have
/// failed with a conflict (or, when `gone_ok`, found the record gone).
fn winner(results: &[Result<()>], gone_ok: bool) -> usize {
    let winners: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        let expected = match result {
            Err(StoreError::Conflict(_)) => true,
            Err(StoreError::NotFound(_)) => gone_ok,
            _ => false,
        };
        assert!(expected, "losers get a conflict: {results:?}");
    }
    winners[0]
}

pub async fn concurrent_version_writers_one_wins(store: &Arc<dyn Store>) {
    let tenant = new_tenant(&**store, "race-version").await;
    let writes = vec![put_policy("p", json!({ "writer": null }), Expect::Absent)];
    write(&**store, &tenant, writes).await.expect("create");

    for round in 1..=5u64 {
        let results = race(store, &tenant, 4, |i| {
            put_policy("p", json!({ "writer": i }), Expect::Version(round))
        })
        .await;
        let won = winner(&results, false);
        let current = store
            .object(&tenant.id, ObjectKind::Policy, "p")
            .await
            .expect("read")
            .expect("present");
        assert_eq!(current.version, round + 1);
        assert_eq!(current.doc, json!({ "writer": won }));
    }
    let all = versions(&**store, &tenant, ObjectKind::Policy, "p").await;
    assert_eq!(all, (1..=6).collect::<Vec<u64>>());

    // A delete that runs after the winner's finds nothing left to delete.
    let results = race(store, &tenant, 3, |_| {
        delete_policy("p", Expect::Version(6))
    })
    .await;
    winner(&results, true);
    assert_eq!(
        store
            .object(&tenant.id, ObjectKind::Policy, "p")
            .await
            .expect("read"),
        None
    );
}

pub async fn concurrent_creators_one_wins(store: &Arc<dyn Store>) {
    let tenant = new_tenant(&**store, "race-create").await;
    for round in 0..5 {
        let name = format!("p{round}");
        let results = race(store, &tenant, 4, |i| {
            put_policy(&name, json!({ "writer": i }), Expect::Absent)
        })
        .await;
        winner(&results, false);
        assert_eq!(
            versions(&**store, &tenant, ObjectKind::Policy, &name).await,
            [1]
        );
    }

    // Writers that expect nothing all succeed, each with its own version.
    let results = race(store, &tenant, 4, |i| {
        put_policy("free", json!({ "writer": i }), Expect::Any)
    })
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        versions(&**store, &tenant, ObjectKind::Policy, "free").await,
        [1, 2, 3, 4]
    );
    let names: BTreeSet<_> = store
        .objects(&tenant.id, ObjectKind::Policy)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 6);
}

pub async fn concurrent_enrollments_of_one_name_one_wins(store: &Arc<dyn Store>) {
    let tenant = new_tenant(&**store, "race-enroll").await;
    let spellings = ["laptop-7", "Laptop-7", "LAPTOP-7", "laptop-7"];
    let results = race(store, &tenant, 8, |i| {
        Write::EnrollDevice(device(spellings[i % spellings.len()]))
    })
    .await;
    winner(&results, false);
    assert_eq!(store.devices(&tenant.id).await.expect("list").len(), 1);
}

pub async fn concurrent_token_consumers_share_its_uses(store: &Arc<dyn Store>) {
    let tenant = new_tenant(&**store, "race-onboarding").await;
    // (max_uses, consumers): two consumers of a single-use token, several
    // times over, then crowds.
    let rounds = [(1, 2), (1, 2), (1, 2), (1, 2), (1, 2), (1, 8), (3, 8)];
    for (max_uses, consumers) in rounds {
        let token = onboarding_token(Some(max_uses));
        let writes = vec![Write::PutOnboardingToken(token.clone())];
        write(&**store, &tenant, writes).await.expect("token");

        let barrier = Arc::new(tokio::sync::Barrier::new(consumers));
        let mut tasks = Vec::new();
        for _ in 0..consumers {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            let hash = token.hash.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.consume_onboarding_token(&hash, T0 + 1).await
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("consumer task").expect("consume"));
        }
        let accepted = TokenUse::Accepted {
            tenant_id: tenant.id.clone(),
            token_id: token.id.clone(),
        };
        let winners = results.iter().filter(|r| **r == accepted).count();
        assert_eq!(
            winners,
            usize::try_from(max_uses).expect("small"),
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .all(|r| *r == accepted || *r == TokenUse::Exhausted),
            "the others find it used up: {results:?}"
        );
        let stored = store
            .onboarding_tokens(&tenant.id)
            .await
            .expect("list")
            .into_iter()
            .find(|t| t.id == token.id)
            .expect("listed");
        assert_eq!(stored.uses, max_uses);
    }
}

pub async fn concurrent_server_secret_writers_converge(store: &Arc<dyn Store>) {
    for _ in 0..3 {
        let name = unique("race-secret");
        let writers = 6;
        let barrier = Arc::new(tokio::sync::Barrier::new(writers));
        let mut tasks = Vec::new();
        for i in 0..writers {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .put_server_secret_if_absent(&name, &format!("value-{i}"))
                    .await
            }));
        }
        let mut values = BTreeSet::new();
        for task in tasks {
            values.insert(task.await.expect("writer task").expect("put"));
        }
        assert_eq!(values.len(), 1, "every replica gets one value: {values:?}");
        let value = values.into_iter().next().expect("a value");
        assert!(value.starts_with("value-"), "{value}");
        assert_eq!(store.server_secret(&name).await.expect("read"), Some(value));
    }
}

pub async fn concurrent_policy_issuers_one_wins(store: &Arc<dyn Store>) {
    let tenant = new_tenant(&**store, "race-issue").await;
    let mut dev = device("dev");
    dev.issued_version = 0;
    dev.issued_digest = None;
    write(&**store, &tenant, vec![Write::PutDevice(dev)])
        .await
        .expect("device");
    // Replicas that computed the same next version for different policies:
    // one issues it, the others must start over.
    for version in 1..=5u64 {
        let results = race(store, &tenant, 4, |i| Write::SetIssuedPolicy {
            name: "dev".to_owned(),
            version,
            digest: format!("digest-{i}"),
        })
        .await;
        let won = winner(&results, false);
        let current = store
            .device(&tenant.id, "dev")
            .await
            .expect("read")
            .expect("device");
        assert_eq!(current.issued_version, version);
        assert_eq!(current.issued_digest, Some(format!("digest-{won}")));
    }
}
