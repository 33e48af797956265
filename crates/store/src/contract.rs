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
    DeviceRecord, Expect, NewAudit, ObjectKind, Result, StatusRecord, Store, StoreError, Tenant,
    Timestamp, TokenRecord, UserRecord, Write,
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
            objects_are_versioned,
            versions_are_not_reused_after_delete,
            writes_apply_in_order,
            expectations_are_enforced,
            failed_batches_leave_nothing_behind,
            devices_round_trip,
            deleting_a_device_deletes_its_statuses,
            statuses_store_only_changes,
            tokens_are_found_by_hash,
            users_are_unique_per_tenant,
            audit_is_newest_first_and_paged,
            tenants_are_isolated,
        );
        // These spawn tasks of their own, so they take the `Arc`.
        $crate::contract_tests!(@each $fixture, |store| &store;
            concurrent_version_writers_one_wins,
            concurrent_creators_one_wins,
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
    }
}

fn user(username: &str) -> UserRecord {
    UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role: "global_admin".to_owned(),
        created_at: T0,
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
        },
    ];
    let result = store
        .write(t, T0 + 3, writes, vec![audit("policy.create", "fresh")])
        .await;
    assert_not_found(result, "device \"ghost\"");

    // The third write fails on a uniqueness rule.
    let first = user("root");
    let writes = vec![Write::PutUser(first)];
    write(store, &tenant, writes).await.expect("setup user");
    let tok = token(&tenant, "ci");
    let writes = vec![
        Write::PutToken(tok.clone()),
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
    assert!(store.audit(t, 100, None).await.expect("audit").is_empty());

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
    }];
    write(store, &tenant, writes).await.expect("delete");
    assert_eq!(store.device(t, "db-1").await.expect("read"), None);
    let writes = vec![Write::DeleteDevice {
        name: "db-1".to_owned(),
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
    assert_eq!(listed, [admin, viewer]);

    let writes = vec![Write::PutUser(user("admin"))];
    assert_conflict(write(store, &tenant, writes).await, &["user", "\"admin\""]);
}

pub async fn audit_is_newest_first_and_paged(store: &dyn Store) {
    let tenant = new_tenant(store, "audit").await;
    let t = &tenant.id;
    assert!(store.audit(t, 10, None).await.expect("empty").is_empty());

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

    let all = store.audit(t, 100, None).await.expect("all");
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
        let page = store.audit(t, 3, before).await.expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(store.audit(t, 0, None).await.expect("limit 0").is_empty());
    let oldest = all.last().expect("entries").id;
    assert!(store
        .audit(t, 10, Some(oldest))
        .await
        .expect("past the end")
        .is_empty());
}

pub async fn tenants_are_isolated(store: &dyn Store) {
    let a = new_tenant(store, "isolation-a").await;
    let b = new_tenant(store, "isolation-b").await;
    let a_token = token(&a, "ci");
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
        Write::PutDevice(device("dev")),
        Write::PutToken(a_token.clone()),
        Write::PutUser(user("admin")),
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
    assert!(store.audit(bt, 100, None).await.expect("audit").is_empty());

    // B cannot reach A's records through writes either.
    assert_not_found(
        store.record_statuses(bt, "dev", report.clone()).await,
        "dev",
    );
    let writes = vec![Write::DeleteDevice {
        name: "dev".to_owned(),
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
    assert!(store.device(&a.id, "dev").await.expect("device").is_some());
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
    assert_eq!(store.audit(&a.id, 100, None).await.expect("audit").len(), 1);
    assert_eq!(store.audit(bt, 100, None).await.expect("audit").len(), 1);
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
