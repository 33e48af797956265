//! The admin API against a real in-process server on port 0: bootstrap,
//! roles, tenant isolation, audit, bad input, preview, apply and reports.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_testkit::{repo_path, Client, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn policy(name: &str, settings: Value, include: &[&str]) -> Value {
    json!({
        "name": name,
        "description": "test",
        "family": "antivirus",
        "platform": "linux",
        "settings": settings,
        "assignments": { "include": include },
    })
}

async fn audit_len(c: &Client) -> usize {
    c.get("/audit?limit=1000")
        .await
        .unwrap()
        .1
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn first_start_writes_a_private_admin_token_and_restart_reuses_the_tenant() {
    let server = TestServer::start().await.unwrap();
    let path = rampart_server::bootstrap::admin_token_path(&server.data_dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (status, me) = server.admin().get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["tenant"], "default");
    assert_eq!(me["role"], "global_admin");
    let (status, body) = server.anonymous().get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = server.client("rmp_wrong").get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn policies_are_created_versioned_updated_and_deleted_with_audit_entries() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let (s, created) = admin
        .post(
            "/policies",
            &policy(
                "av",
                json!({"real_time_protection": true}),
                &["all-devices"],
            ),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["modified_by"], "token:bootstrap-admin");
    let (s, updated) = admin
        .put(
            "/policies/av",
            &policy(
                "av",
                json!({"real_time_protection": false}),
                &["all-devices"],
            ),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    // The same content again is not a new version.
    let (_, same) = admin
        .put(
            "/policies/av",
            &policy(
                "av",
                json!({"real_time_protection": false}),
                &["all-devices"],
            ),
        )
        .await
        .unwrap();
    assert_eq!(same["version"], 2);
    let (_, versions) = admin.get("/policies/av/versions").await.unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let (s, _) = admin.delete("/policies/av").await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = admin.get("/policies/av").await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, audit) = admin.get("/audit").await.unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        ["policy.delete", "policy.update", "policy.create"],
        "newest first"
    );
    let update = &audit[1];
    assert_eq!(update["actor"], "token:bootstrap-admin");
    assert_eq!(update["object_name"], "av");
    assert_eq!(update["before"]["settings"]["real_time_protection"], true);
    assert_eq!(update["after"]["settings"]["real_time_protection"], false);
    assert!(update["at"].as_i64().unwrap() >= rampart_testkit::TEST_EPOCH);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn validation_errors_are_422_and_name_every_field_and_nothing_is_written() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let before = audit_len(&admin).await;
    let bad = json!({
        "name": "bad", "family": "antivirus", "platform": "linux",
        "settings": {"pua_protection": "blok", "scan_archives": 1, "nope": true},
        "assignments": {"include": ["ghosts"]},
        "colour": "red"
    });
    let (s, body) = admin.post("/policies", &bad).await.unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "validation_failed");
    let paths: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    // The unknown group is reported in the same answer as the field errors.
    for p in [
        "settings.pua_protection",
        "settings.scan_archives",
        "settings.nope",
        "colour",
        "assignments.include",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    // A misspelt group gets the closest existing name.
    admin
        .post(
            "/groups",
            &json!({"name": "linux-servers", "rule": "os == \"linux\""}),
        )
        .await
        .unwrap();
    let (s, body) = admin
        .post("/policies", &policy("p", json!({}), &["linux-server"]))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["path"], "assignments.include");
    let message = body["error"]["details"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("did you mean \"linux-servers\"?"),
        "{message}"
    );
    assert_eq!(admin.get("/policies").await.unwrap().1, json!([]));
    assert_eq!(
        audit_len(&admin).await,
        before + 1,
        "only the group was written"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_stable_codes_never_a_500() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    admin
        .post("/policies", &policy("p", json!({}), &["all-devices"]))
        .await
        .unwrap();
    let before = audit_len(&admin).await;

    let (s, b) = admin
        .send_raw(
            Method::POST,
            "/policies",
            "application/json",
            b"{not json".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (s, b) = admin
        .send_raw(Method::POST, "/policies", "text/plain", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
    let (s, b) = admin
        .send_raw(
            Method::POST,
            "/policies",
            "application/json",
            huge.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let (s, b) = admin
        .post("/policies", &policy("p", json!({}), &["all-devices"]))
        .await
        .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("\"p\""),
        "{b}"
    );
    let (s, b) = admin.get("/policies/missing").await.unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, b) = admin.get("/no/such/route").await.unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, b) = admin
        .post("/tokens", &json!({"name": "x", "role": "root", "extra": 1}))
        .await
        .unwrap();
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {b}"
    );
    let (s, b) = admin
        .post("/tokens", &json!({"name": "x", "role": "root"}))
        .await
        .unwrap();
    assert_eq!(
        (s, b["error"]["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );
    let (s, _) = admin.get("/devices?colour=red").await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = admin.get("/audit?limit=0").await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = admin
        .put("/policies/p", &policy("other", json!({}), &["all-devices"]))
        .await
        .unwrap();
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "renaming through PUT is refused: {b}"
    );
    assert_eq!(
        audit_len(&admin).await,
        before,
        "no refused call wrote anything"
    );
    server.stop().await.unwrap();
}

/// (method, path, body, least role that may do it)
fn role_matrix() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    vec![
        (Method::GET, "/devices", None, "read_only"),
        (Method::GET, "/policies", None, "read_only"),
        (
            Method::GET,
            "/reports/policies/linux-av-baseline",
            None,
            "read_only",
        ),
        (Method::GET, "/audit", None, "read_only"),
        (
            Method::POST,
            "/preview",
            Some(json!({"changes": []})),
            "read_only",
        ),
        (
            Method::POST,
            "/policies",
            Some(policy(
                "new-av",
                json!({"scan_archives": true}),
                &["all-devices"],
            )),
            "security_manager",
        ),
        (
            Method::PUT,
            "/devices/web-01/tags",
            Some(json!({"tags": ["web", "prod", "x"]})),
            "security_manager",
        ),
        (
            Method::POST,
            "/devices/web-01/sync",
            None,
            "security_manager",
        ),
        (
            Method::POST,
            "/groups",
            Some(json!({"name": "g-new", "rule": "tag(\"x\")"})),
            "security_manager",
        ),
        (
            Method::PUT,
            "/tenant/settings",
            Some(json!({"pilot_tag": "pilot"})),
            "global_admin",
        ),
        (
            Method::POST,
            "/tokens",
            Some(json!({"name": "t-new", "role": "read_only"})),
            "global_admin",
        ),
        (Method::GET, "/tokens", None, "global_admin"),
        (
            Method::POST,
            "/users",
            Some(
                json!({"username": "u-new", "password": "a long enough password", "role": "read_only"}),
            ),
            "global_admin",
        ),
        (
            Method::DELETE,
            "/devices/dev-ws-01",
            None,
            "security_manager",
        ),
    ]
}

#[tokio::test]
async fn the_role_matrix_holds_and_refusals_are_403_with_the_reason() {
    let ranks = ["read_only", "security_manager", "global_admin"];
    for role in ranks {
        // A fresh server per role so that each successful mutation starts
        // from the same state.
        let server = TestServer::with_examples().await.unwrap();
        let client = server.client_with_role(role).await.unwrap();
        for (method, path, body, needed) in role_matrix() {
            let allowed =
                ranks.iter().position(|r| *r == role) >= ranks.iter().position(|r| *r == needed);
            let (status, resp) = client
                .send(method.clone(), path, body.as_ref())
                .await
                .unwrap();
            if allowed {
                assert!(
                    status.is_success(),
                    "{role} {method} {path}: {status} {resp}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {resp}"
                );
                assert_eq!(resp["error"]["code"], "forbidden");
                assert!(
                    resp["error"]["message"].as_str().unwrap().contains(needed),
                    "{resp}"
                );
            }
        }
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_objects() {
    let server = TestServer::with_examples().await.unwrap();
    let store = server.store().unwrap();
    let (_, other_token) = rampart_server::bootstrap::create_tenant(
        store.as_ref(),
        "acme",
        rampart_testkit::TEST_EPOCH,
    )
    .await
    .unwrap();
    let a = server.admin();
    let b = server.client(&other_token);
    assert_eq!(b.get("/whoami").await.unwrap().1["tenant"], "acme");

    assert!(!a
        .get("/devices")
        .await
        .unwrap()
        .1
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(b.get("/devices").await.unwrap().1, json!([]));
    assert_eq!(b.get("/policies").await.unwrap().1, json!([]));
    assert_eq!(b.get("/groups").await.unwrap().1, json!([]));
    for path in [
        "/devices/web-01",
        "/policies/linux-av-baseline",
        "/groups/linux-servers",
        "/devices/web-01/effective",
        "/reports/devices/web-01",
        "/reports/policies/linux-av-baseline",
    ] {
        let (s, _) = b.get(path).await.unwrap();
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _) = b.delete("/devices/web-01").await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        a.get("/devices/web-01").await.unwrap().0,
        StatusCode::OK,
        "A's device survived B's delete"
    );
    // B may use A's names for its own objects.
    let (s, _) = b
        .post(
            "/policies",
            &policy(
                "linux-av-baseline",
                json!({"scan_archives": false}),
                &["all-devices"],
            ),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        a.get("/policies/linux-av-baseline").await.unwrap().1["settings"]["scan_archives"],
        true
    );
    let b_audit = b.get("/audit").await.unwrap().1;
    assert!(b_audit
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["object_name"] != "linux-av-web"));
    let a_audit = a.get("/audit?limit=1000").await.unwrap().1;
    assert!(a_audit
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] != "token:bootstrap-admin"
            || e["after"]["settings"]["scan_archives"] != false));
    assert_eq!(b.get("/tenant").await.unwrap().1["name"], "acme");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn devices_filter_tag_and_delete() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let all = admin.get("/devices").await.unwrap().1;
    assert_eq!(all.as_array().unwrap().len(), 12);
    let linux = admin.get("/devices?os=linux&tag=prod").await.unwrap().1;
    let names: Vec<&str> = linux
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-01", "web-01", "web-02"]);
    assert_eq!(
        admin
            .get("/devices?enrollment=simulated&managed_by=rampart")
            .await
            .unwrap()
            .1
            .as_array()
            .unwrap()
            .len(),
        12
    );

    let (s, d) = admin
        .put(
            "/devices/dev-ws-01/tags",
            &json!({"tags": ["dev", "Dev", "web"]}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["tags"], json!(["dev", "web"]));
    // The new tag puts it in web-servers: its effective policy changes.
    let eff = admin.get("/devices/dev-ws-01/effective").await.unwrap().1;
    assert!(
        eff["policy_versions"].get("linux-av-web").is_some(),
        "{eff}"
    );
    let (s, b) = admin
        .put("/devices/dev-ws-01/tags", &json!({"tags": ["a,b"]}))
        .await
        .unwrap();
    assert_eq!(
        (s, b["error"]["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("tags[0]"))
    );

    let (s, _) = admin.delete("/devices/dev-ws-01").await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        admin.get("/devices/dev-ws-01").await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    let audit = admin.get("/audit").await.unwrap().1;
    assert_eq!(audit[0]["action"], "device.delete");
    assert_eq!(audit[0]["before"]["name"], "dev-ws-01");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_effective_policy_is_what_the_offline_plan_computes() {
    let server = TestServer::with_examples().await.unwrap();
    let files = rampart_policy_files::read_documents(&repo_path("examples/fleet")).unwrap();
    let bundle =
        rampart_core::documents::load_documents(&files, rampart_core::catalog::Catalog::builtin())
            .unwrap();
    let tenant = bundle.tenant.clone().unwrap();
    for device in &bundle.devices {
        let offline = rampart_core::resolve::resolve(
            device,
            &bundle.groups,
            &bundle.policies,
            &tenant,
            rampart_core::catalog::Catalog::builtin(),
        );
        let (s, online) = server
            .admin()
            .get(&format!("/devices/{}/effective", device.name))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(online["managed"], offline.managed, "{}", device.name);
        assert_eq!(
            online["settings"].as_array().unwrap().len(),
            offline.settings.len(),
            "{}",
            device.name
        );
        assert_eq!(
            online["conflicts"].as_array().unwrap().len(),
            offline.conflicts.len(),
            "{}",
            device.name
        );
    }
    let web = server
        .admin()
        .get("/devices/web-01/effective")
        .await
        .unwrap()
        .1;
    assert_eq!(web["conflicts"][0]["setting"], "pua_protection");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn group_membership_preview_and_refusal_to_delete_an_assigned_group() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let (s, m) = admin
        .post(
            "/groups/preview",
            &json!({"rule": "os == \"windows\" and tag(\"finance\")"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["devices"], json!(["fin-ws-01", "fin-ws-02"]));
    let (s, e) = admin
        .post("/groups/preview", &json!({"rule": "os == "}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("column"));
    assert_eq!(
        admin.get("/groups/finance/members").await.unwrap().1["devices"],
        json!(["db-01", "fin-ws-01"])
    );
    let (s, e) = admin.delete("/groups/finance").await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("windows-asr-finance"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_tenant_settings_preview_names_devices_entering_and_leaving_the_scope() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let before = admin.get("/tenant").await.unwrap().1;
    let change = json!({"changes": [{"op": "put", "kind": "tenant_settings",
        "document": {"enforcement": {"windows": "off", "macos": "all"}}}]});
    let (s, preview) = admin.post("/preview", &change).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{preview}");
    let by_name = |name: &str| {
        preview["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ws = by_name("fin-ws-01");
    assert_eq!(
        (&ws["managed_before"], &ws["managed_after"]),
        (&json!(true), &json!(false)),
        "{preview}"
    );
    assert!(!ws["removed"].as_array().unwrap().is_empty(), "{ws}");
    // Linux devices are not in the answer: their scope did not change.
    assert_eq!(by_name("web-01"), Value::Null, "{preview}");
    // Nothing was saved.
    assert_eq!(admin.get("/tenant").await.unwrap().1, before);
    // A bad value is named under its change, and tenant settings cannot be
    // deleted.
    let bad = json!({"changes": [
        {"op": "put", "kind": "tenant_settings", "document": {"enforcement": {"linux": "sometimes"}}},
        {"op": "delete", "kind": "tenant_settings", "name": "x"}]});
    let (s, e) = admin.post("/preview", &bad).await.unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let paths: Vec<&str> = e["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("changes[0].document.enforcement")),
        "{paths:?}"
    );
    assert!(paths.contains(&"changes[1].op"), "{paths:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn preview_shows_impact_and_new_conflicts_without_saving() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let before = admin.get("/policies").await.unwrap().1;
    let change = json!({"changes": [{"op": "put", "kind": "policy", "document":
        policy("linux-av-strict", json!({"real_time_protection": false, "scan_archives": true}), &["linux-servers"])}]});
    let (s, preview) = admin.post("/preview", &change).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{preview}");
    let devices: Vec<&str> = preview["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["build-01", "db-01", "web-01", "web-02"]);
    let web = &preview["devices"][2];
    assert!(
        web["conflicts_added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["setting"] == "real_time_protection"),
        "{web}"
    );
    let build = &preview["devices"][0];
    assert_eq!(
        build["added"],
        json!(["real_time_protection", "scan_archives"])
    );
    assert_eq!(
        admin.get("/policies").await.unwrap().1,
        before,
        "a preview saves nothing"
    );

    let (s, removal) = admin
        .post(
            "/preview",
            &json!({"changes": [{"op": "delete", "kind": "policy", "name": "linux-av-web"}]}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let web = removal["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "web-01")
        .unwrap();
    assert!(web["conflicts_removed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["setting"] == "pua_protection"));
    assert!(
        web["added"]
            .as_array()
            .unwrap()
            .contains(&json!("pua_protection")),
        "the conflict's loser falls away: {web}"
    );

    let (s, e) = admin.post("/preview", &json!({"changes": [{"op": "delete", "kind": "policy", "name": "nope"}, {"op": "put", "kind": "widget", "document": {}}]})).await.unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = e["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["changes[0].name", "changes[1].kind"]);
    server.stop().await.unwrap();
}

fn fleet_documents() -> Vec<Value> {
    let mut docs = Vec::new();
    for (_, text) in rampart_policy_files::read_documents(&repo_path("examples/fleet")).unwrap() {
        for doc in text.split("\n---\n") {
            let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
            let v: Value = serde_json::to_value(v).unwrap();
            if v.is_object() && v["kind"] != "Device" {
                docs.push(v);
            }
        }
    }
    docs
}

#[tokio::test]
async fn apply_creates_then_is_idempotent_and_dry_run_changes_nothing() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    // Without `prune`, what the documents leave out is kept and listed.
    let (_, kept) = admin
        .post("/apply", &json!({"documents": []}))
        .await
        .unwrap();
    assert_eq!(kept["applied"], false, "{kept}");
    assert!(kept["deleted"].as_array().unwrap().is_empty(), "{kept}");
    assert!(kept["kept"].as_array().unwrap().len() > 10, "{kept}");
    assert_ne!(admin.get("/policies").await.unwrap().1, json!([]));
    // Start from an empty policy set on the same devices.
    let (_, wiped) = admin
        .post("/apply", &json!({"documents": [], "prune": true}))
        .await
        .unwrap();
    assert!(wiped["deleted"].as_array().unwrap().len() > 10, "{wiped}");
    assert!(wiped["kept"].as_array().unwrap().is_empty(), "{wiped}");
    assert_eq!(admin.get("/policies").await.unwrap().1, json!([]));

    let docs = fleet_documents();
    let (s, dry) = admin
        .post("/apply", &json!({"documents": docs, "dry_run": true}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert!(!dry["applied"].as_bool().unwrap());
    assert!(dry["created"].as_array().unwrap().len() > 10);
    assert!(!dry["devices"].as_array().unwrap().is_empty());
    assert_eq!(
        admin.get("/policies").await.unwrap().1,
        json!([]),
        "dry run changed nothing"
    );

    let (_, first) = admin
        .post("/apply", &json!({"documents": docs}))
        .await
        .unwrap();
    assert!(first["applied"].as_bool().unwrap());
    assert_eq!(first["created"], dry["created"]);
    let (_, second) = admin
        .post("/apply", &json!({"documents": docs}))
        .await
        .unwrap();
    assert!(!second["applied"].as_bool().unwrap());
    assert_eq!(second["created"], json!([]));
    assert_eq!(second["changed"], json!([]));
    assert_eq!(second["deleted"], json!([]));
    assert_eq!(second["devices"], json!([]));

    // One edited value: one change, the affected devices listed.
    let mut edited = docs.clone();
    for d in &mut edited {
        if d["name"] == "linux-av-web" {
            d["settings"]["pua_protection"] = json!("block");
        }
    }
    let (_, third) = admin
        .post("/apply", &json!({"documents": edited}))
        .await
        .unwrap();
    assert_eq!(
        third["changed"],
        json!([{"kind": "policy", "name": "linux-av-web"}])
    );
    let devices: Vec<&str> = third["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(
        devices,
        ["web-01", "web-02"],
        "the conflict disappears on the web servers"
    );

    // An invalid document set is refused whole.
    let mut broken = edited.clone();
    broken.push(json!({"kind": "Policy", "name": "x", "family": "nope", "platform": "linux"}));
    let (s, e) = admin
        .post("/apply", &json!({"documents": broken}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"]["details"][0]["path"]
        .as_str()
        .unwrap()
        .starts_with(&format!("documents[{}]", edited.len())));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reports_count_statuses_per_policy_setting_and_device() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let store = server.store().unwrap();
    let tenant = store.tenant_by_name("default").await.unwrap().unwrap().id;
    // web-01 reports its current effective policy: two settings applied, one failed.
    let eff = admin.get("/devices/web-01/effective").await.unwrap().1;
    let digest = eff["digest"].as_str().unwrap().to_string();
    let report = |setting: &str, status: &str, error: Option<&str>| rampart_store::StatusRecord {
        device: "web-01".into(),
        setting: setting.into(),
        key: String::new(),
        status: status.into(),
        observed: Some(json!(true)),
        error_code: error.map(|_| "apply_failed".into()),
        error_message: error.map(str::to_string),
        backend: Some("file".into()),
        digest: digest.clone(),
        updated_at: rampart_testkit::TEST_EPOCH,
    };
    store
        .record_statuses(
            &tenant,
            "web-01",
            vec![
                report("real_time_protection", "succeeded", None),
                report(
                    "scan_archives",
                    "error",
                    Some("clamd refused the configuration"),
                ),
            ],
        )
        .await
        .unwrap();

    let device = admin.get("/reports/devices/web-01").await.unwrap().1;
    let row = |s: &str| {
        device["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["setting"] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(row("real_time_protection")["status"], "succeeded");
    assert_eq!(row("scan_archives")["status"], "error");
    assert_eq!(
        row("scan_archives")["error_message"],
        "clamd refused the configuration"
    );
    assert_eq!(row("pua_protection")["status"], "conflict");
    assert_eq!(
        row("pua_protection")["other_policies"],
        json!(["linux-av-baseline", "linux-av-web"])
    );
    assert_eq!(row("firewall_enabled")["status"], "pending");
    assert_eq!(device["counts"]["succeeded"], 1);
    assert_eq!(device["counts"]["error"], 1);
    assert_eq!(device["counts"]["conflict"], 1);

    let policy = admin
        .get("/reports/policies/linux-av-baseline")
        .await
        .unwrap()
        .1;
    let statuses: Vec<(&str, &str)> = policy["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["device"].as_str().unwrap(), d["status"].as_str().unwrap()))
        .collect();
    // Errors and conflicts first, then the rest, each part by name.
    assert_eq!(
        statuses,
        [
            ("web-01", "error"),
            ("web-02", "conflict"),
            ("db-01", "pending")
        ]
    );
    assert_eq!(
        policy["devices_by_status"],
        json!({"succeeded": 0, "recorded": 0, "error": 1, "conflict": 1, "not_applicable": 0, "pending": 1})
    );
    assert_eq!(policy["settings"]["pua_protection"]["conflict"], 2);
    assert_eq!(policy["settings"]["real_time_protection"]["succeeded"], 1);
    let web1 = &policy["devices"][0];
    let pua = web1["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["setting"] == "pua_protection")
        .unwrap();
    assert_eq!(
        pua["other_policies"],
        json!(["linux-av-web"]),
        "the other policy that manages the setting"
    );

    let setting = admin
        .get("/reports/settings/real_time_protection")
        .await
        .unwrap()
        .1;
    assert_eq!(setting["counts"]["succeeded"], 1);
    assert!(setting["counts"]["pending"].as_u64().unwrap() >= 3);
    let asr = admin.get("/reports/settings/asr_rules").await.unwrap().1;
    assert!(asr["counts"]["conflict"].as_u64().unwrap() >= 1, "{asr}");
    // The devices that need attention lead the list.
    let order: Vec<&str> = asr["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    let first_fine = order
        .iter()
        .position(|s| *s != "conflict" && *s != "error")
        .unwrap_or(order.len());
    assert!(
        order[first_fine..]
            .iter()
            .all(|s| *s != "conflict" && *s != "error"),
        "{order:?}"
    );
    assert!(first_fine >= 1 && first_fine < order.len(), "{order:?}");

    // A report about an older policy does not count for the new one.
    admin
        .put(
            "/policies/linux-av-baseline",
            &policy_doc_with(&admin, "linux-av-baseline", "scan_archives", json!(false)).await,
        )
        .await
        .unwrap();
    let device = admin.get("/reports/devices/web-01").await.unwrap().1;
    assert_eq!(device["counts"]["succeeded"], 0);
    assert_eq!(
        admin.get("/reports/settings/nope").await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    server.stop().await.unwrap();
}

async fn policy_doc_with(admin: &Client, name: &str, setting: &str, value: Value) -> Value {
    let mut p = admin.get(&format!("/policies/{name}")).await.unwrap().1;
    p["settings"][setting] = value;
    let obj = p.as_object_mut().unwrap();
    for k in ["version", "modified_at", "modified_by"] {
        obj.remove(k);
    }
    p
}

#[tokio::test]
async fn tenant_settings_change_scope_and_are_audited() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let (s, t) = admin
        .put(
            "/tenant/settings",
            &json!({"enforcement": {"linux": "tagged"}, "pilot_tag": "web"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["settings"]["enforcement"]["linux"], "tagged");
    assert_eq!(
        t["settings"]["enforcement"]["windows"], "all",
        "fields left out keep their values"
    );
    let db = admin.get("/devices/db-01/effective").await.unwrap().1;
    assert_eq!(db["managed"], false);
    let web = admin.get("/devices/web-01/effective").await.unwrap().1;
    assert_eq!(web["managed"], true);
    let (s, e) = admin
        .put(
            "/tenant/settings",
            &json!({"enforcement": {"linux": "sometimes"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, e["error"]["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("enforcement.linux"))
    );
    let audit = admin.get("/audit").await.unwrap().1;
    assert_eq!(audit[0]["action"], "tenant.settings");
    assert_eq!(audit[0]["before"]["pilot_tag"], "MDE-Management");
    assert_eq!(audit[0]["after"]["pilot_tag"], "web");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn users_log_in_with_passwords_and_sessions_expire() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let (s, _) = admin.post("/users", &json!({"username": "alice", "password": "correct horse battery", "role": "security_manager"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = admin
        .post(
            "/users",
            &json!({"username": "bob", "password": "short", "role": "read_only"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, e["error"]["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );
    let (s, _) = admin
        .post(
            "/users",
            &json!({"username": "alice", "password": "another long password", "role": "read_only"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT);
    let anon = server.anonymous();
    let (s, _) = anon
        .post(
            "/login",
            &json!({"username": "alice", "password": "wrong password!"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, login) = anon
        .post(
            "/login",
            &json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let session = server.client(login["token"].as_str().unwrap());
    let me = session.get("/whoami").await.unwrap().1;
    assert_eq!(me["actor"], "user:alice");
    assert_eq!(me["role"], "security_manager");
    // Signing out revokes that session at once; API tokens are not sessions.
    let (_, second) = anon
        .post(
            "/login",
            &json!({"username": "alice", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    let other = server.client(second["token"].as_str().unwrap());
    let (s, _) = other.post("/logout", &json!({})).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        other.get("/whoami").await.unwrap().0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        session.get("/whoami").await.unwrap().0,
        StatusCode::OK,
        "only that session ends"
    );
    assert_eq!(
        admin.post("/logout", &json!({})).await.unwrap().0,
        StatusCode::CONFLICT
    );
    server
        .clock
        .advance(rampart_server::auth::SESSION_SECONDS + 1);
    let (s, e) = session.get("/whoami").await.unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["error"]["message"].as_str().unwrap().contains("expired"));
    let users = admin.get("/users").await.unwrap().1;
    assert!(
        users.to_string().find("argon2").is_none(),
        "password hashes never leave the server"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn revoked_tokens_are_refused_at_once() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let (_, created) = admin
        .post("/tokens", &json!({"name": "ci", "role": "read_only"}))
        .await
        .unwrap();
    let ci = server.client(created["token"].as_str().unwrap());
    assert_eq!(ci.get("/policies").await.unwrap().0, StatusCode::OK);
    let tokens = admin.get("/tokens").await.unwrap().1;
    assert!(
        !tokens
            .to_string()
            .contains(created["token"].as_str().unwrap()),
        "token secrets are never listed"
    );
    let (s, _) = admin
        .delete(&format!("/tokens/{}", created["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        ci.get("/policies").await.unwrap().0,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn device_reports_give_each_rule_its_own_row_and_conflicts_their_values() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();

    // web-01: the allow-ssh rule comes from both rule policies, the others
    // from one each; each row says which.
    let (s, web) = admin.get("/reports/devices/web-01").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{web}");
    let rows = web["settings"].as_array().unwrap();
    let rule = |name: &str| {
        rows.iter()
            .find(|r| r["setting"] == "firewall_rules" && r["key"] == name)
            .unwrap_or_else(|| panic!("no row for rule {name}: {web}"))
            .clone()
    };
    assert_eq!(
        rule("allow-ssh")["sources"],
        json!(["linux-firewall-baseline-rules", "linux-firewall-web-rules"])
    );
    assert_eq!(
        rule("allow-node-exporter")["sources"],
        json!(["linux-firewall-baseline-rules"])
    );
    assert_eq!(
        rule("allow-web")["sources"],
        json!(["linux-firewall-web-rules"])
    );
    assert_eq!(rule("allow-web")["value"]["local_ports"], "80,443");
    assert_eq!(rule("allow-web")["status"], "pending");
    // The conflict comes first, with each policy's value.
    assert_eq!(rows[0]["status"], "conflict", "{web}");
    assert_eq!(rows[0]["setting"], "pua_protection");
    assert_eq!(
        rows[0]["conflicting"],
        json!([
            {"policy": "linux-av-baseline", "value": "block"},
            {"policy": "linux-av-web", "value": "audit"}
        ])
    );
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .contains("linux-av-web asks for \"audit\""),
        "{}",
        rows[0]
    );

    // fin-ws-01: one ASR rule conflicts, the others have rows of their own,
    // named by the catalog.
    let (_, fin) = admin.get("/reports/devices/fin-ws-01").await.unwrap();
    let rows = fin["settings"].as_array().unwrap();
    let asr: Vec<&Value> = rows
        .iter()
        .filter(|r| r["setting"] == "asr_rules")
        .collect();
    let conflicting: Vec<&&Value> = asr.iter().filter(|r| r["status"] == "conflict").collect();
    assert_eq!(conflicting.len(), 1, "{fin}");
    assert_eq!(
        conflicting[0]["key"],
        "d4f940ab-401b-4efc-aadc-ad5f3c50688a"
    );
    assert!(
        conflicting[0]["key_name"]
            .as_str()
            .unwrap()
            .contains("Office"),
        "{}",
        conflicting[0]
    );
    let obfuscated = asr
        .iter()
        .find(|r| r["key"] == "5beb7efe-fd9a-4556-801d-275e5ffc04cc")
        .unwrap_or_else(|| panic!("{fin}"));
    assert_eq!(obfuscated["status"], "pending");
    assert_eq!(obfuscated["value"], "block");
    assert_eq!(obfuscated["sources"].as_array().unwrap().len(), 1);
    assert!(
        obfuscated["key_name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("obfuscated"),
        "{obfuscated}"
    );
    assert!(asr.len() >= 4, "one row per rule: {fin}");
    server.stop().await.unwrap();
}

/// `GET /devices` pages with a cursor, filters and sorts in the database:
/// walking the pages gives every matching device once, in order, and bad
/// parameters are a 400 naming the parameter.
#[tokio::test]
async fn devices_are_paged_filtered_and_sorted_by_the_server() {
    let server = TestServer::with_examples().await.unwrap();
    let http = reqwest::Client::new();
    let get = |query: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/devices?{query}", server.url);
        let token = server.admin_token.clone();
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status();
            let total = r
                .headers()
                .get("x-total-count")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let next = r
                .headers()
                .get("x-next-cursor")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            (status, total, next, body)
        }
    };
    let names = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, total, next, all) = get(String::new()).await;
    assert_eq!((total, next), (Some(12), None));
    let all = names(&all);
    assert_eq!(all.len(), 12);

    // Newest OS name first, five at a time.
    let (_, _, _, whole) = get("sort=os&order=desc".into()).await;
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = match &cursor {
            Some(c) => format!("sort=os&order=desc&limit=5&cursor={c}"),
            None => "sort=os&order=desc&limit=5".into(),
        };
        let (status, total, next, page) = get(query).await;
        // The total comes with the first page; the pages after share it.
        let first = walked.is_empty();
        assert_eq!((status, total), (StatusCode::OK, first.then_some(12)));
        assert!(page.as_array().unwrap().len() <= 5);
        walked.extend(names(&page));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(walked, names(&whole));
    let oses: Vec<String> = whole
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["os"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = oses.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(oses, sorted);

    // Filters and search are the server's.
    let (_, total, _, web) = get("search=web%20linux&limit=2".into()).await;
    assert_eq!(total, Some(2), "{web}");
    assert_eq!(names(&web), ["web-01", "web-02"]);
    let (_, total, _, _) = get("os=linux&tag=WEB".into()).await;
    assert_eq!(total, Some(2));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("sort=colour", "sort"),
        ("order=up", "order"),
        ("cursor=zz", "cursor"),
    ] {
        let (status, _, _, body) = get(query.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{query}: {body}"
        );
    }
    // A cursor is only read under the sort it came from.
    let (_, _, next, _) = get("sort=os&limit=2".into()).await;
    let (status, _, _, body) = get(format!("sort=name&limit=2&cursor={}", next.unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another sort"),
        "{body}"
    );
    server.stop().await.unwrap();
}

/// Report device lists page with a cursor in their own order (what needs
/// attention first, then by name); the counts always cover every device.
#[tokio::test]
async fn report_device_lists_are_paged_and_counts_cover_every_device() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    for path in [
        "/reports/policies/linux-av-baseline",
        "/reports/settings/pua_protection",
    ] {
        let (s, whole) = admin.get(path).await.unwrap();
        assert_eq!(s, StatusCode::OK, "{whole}");
        let all: Vec<Value> = whole["devices"].as_array().unwrap().clone();
        assert!(all.len() >= 3, "{path}: {whole}");
        assert_eq!(whole["devices_total"].as_u64(), Some(all.len() as u64));
        assert!(whole.get("next_cursor").is_none(), "{whole}");
        let mut walked = Vec::new();
        let mut query = format!("{path}?limit=2");
        for _ in 0..10 {
            let (s, page) = admin.get(&query).await.unwrap();
            assert_eq!(s, StatusCode::OK, "{page}");
            assert!(page["devices"].as_array().unwrap().len() <= 2);
            assert_eq!(page["devices_total"], whole["devices_total"]);
            for counts in ["devices_by_status", "counts", "settings"] {
                assert_eq!(
                    page.get(counts),
                    whole.get(counts),
                    "{path}: {counts} cover every device"
                );
            }
            walked.extend(page["devices"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => query = format!("{path}?limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(
            walked, all,
            "{path}: the pages, in order, are the whole list"
        );
        // The list filtered by status, on the server; the counts stay whole.
        let first_status = all[0]["status"].as_str().unwrap().to_string();
        let (_, only) = admin
            .get(&format!("{path}?status={first_status}"))
            .await
            .unwrap();
        let want: Vec<Value> = all
            .iter()
            .filter(|d| d["status"] == first_status.as_str())
            .cloned()
            .collect();
        assert_eq!(
            only["devices"].as_array().unwrap(),
            &want,
            "{path}?status={first_status}"
        );
        assert_eq!(only["devices_total"].as_u64(), Some(want.len() as u64));
        for counts in ["devices_by_status", "counts", "settings"] {
            assert_eq!(only.get(counts), whole.get(counts));
        }
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("cursor=xyz", "cursor"),
            ("colour=red", "colour"),
        ] {
            let (s, body) = admin.get(&format!("{path}?{query}")).await.unwrap();
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path}?{query}: {body}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(field),
                "{body}"
            );
        }
    }
    server.stop().await.unwrap();
}

/// A preview answers with every affected device counted and, when asked, a
/// page of them; walking the pages gives the whole list.
#[tokio::test]
async fn a_preview_counts_every_affected_device_and_pages_them() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let change = json!({"op": "put", "kind": "policy", "document": {
        "name": "everyone-edr", "family": "edr", "platform": "linux",
        "settings": {"edr_group_ids": "all"}, "assignments": {"include": ["all-devices"]}}});
    let (s, whole) = admin
        .post("/preview", &json!({"changes": [change]}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{whole}");
    let all = whole["devices"].as_array().unwrap().clone();
    assert!(all.len() >= 3, "{whole}");
    assert_eq!(whole["devices_total"].as_u64(), Some(all.len() as u64));
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut body = json!({"changes": [change], "limit": 2});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let (s, page) = admin.post("/preview", &body).await.unwrap();
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["devices_total"], whole["devices_total"]);
        walked.extend(page["devices"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, all);
    let (s, body) = admin
        .post("/preview", &json!({"changes": [change], "limit": 0}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit:"),
        "{body}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_audit_log_is_filtered_and_paged_by_the_server() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    let (s, b) = admin
        .post(
            "/policies",
            &policy("p", json!({"real_time_protection": true}), &["all-devices"]),
        )
        .await
        .unwrap();
    assert!(s.is_success(), "{b}");
    let (s, b) = admin
        .put(
            "/policies/p",
            &policy(
                "p",
                json!({"real_time_protection": false}),
                &["all-devices"],
            ),
        )
        .await
        .unwrap();
    assert!(s.is_success(), "{b}");
    let list = |query: &'static str| {
        let admin = admin.clone();
        async move {
            let (s, b) = admin.get(&format!("/audit?{query}")).await.unwrap();
            assert_eq!(s, StatusCode::OK, "{query}: {b}");
            b.as_array().unwrap().clone()
        }
    };
    let all = list("limit=1000").await;
    assert!(all.len() > 3, "the example fleet's load is audited too");

    let mine = list("object_kind=policy&object_name=p").await;
    let actions: Vec<&str> = mine.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.len(), 2, "{mine:?}");
    assert!(mine
        .iter()
        .all(|e| e["object_kind"] == "policy" && e["object_name"] == "p"));
    let actor = mine[0]["actor"].as_str().unwrap().to_string();

    let policy_kind = list("action=policy.*&limit=1000").await;
    assert!(!policy_kind.is_empty());
    assert!(policy_kind
        .iter()
        .all(|e| e["action"].as_str().unwrap().starts_with("policy.")));
    assert_eq!(
        policy_kind.len(),
        all.iter()
            .filter(|e| e["action"].as_str().unwrap().starts_with("policy."))
            .count()
    );
    let (_, by_actor) = admin
        .get(&format!("/audit?limit=1000&actor={actor}"))
        .await
        .unwrap();
    assert_eq!(
        by_actor.as_array().unwrap().len(),
        all.iter().filter(|e| e["actor"] == actor.as_str()).count()
    );
    // A time window: nothing before the epoch, everything before the end of time.
    assert!(list("until=1").await.is_empty());
    assert_eq!(list("limit=1000&since=1").await.len(), all.len());
    // Paging with filters: `before` is the last id of the page before.
    let first = list("object_name=p&limit=1").await;
    let (_, second) = admin
        .get(&format!(
            "/audit?object_name=p&limit=1&before={}",
            first[0]["id"]
        ))
        .await
        .unwrap();
    assert_eq!(
        [first[0]["id"].clone(), second[0]["id"].clone()],
        [mine[0]["id"].clone(), mine[1]["id"].clone()]
    );

    for (query, names) in [
        ("action=", "action"),
        ("actor=%20", "actor"),
        ("since=20&until=10", "since"),
        ("since=yesterday", "since"),
        ("object_kind=policy&colour=red", "colour"),
    ] {
        let (s, b) = admin.get(&format!("/audit?{query}")).await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {b}");
        assert!(
            b.to_string().contains(names),
            "{query}: the error names {names}: {b}"
        );
    }
}
