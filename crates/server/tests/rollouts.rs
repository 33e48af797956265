//! Staged rollouts with real agents: the server's simulated devices are
//! genuine `rampart-agent`s (their own keys, mutual TLS, signed policies, the
//! `file` provider), so what a test reads from their state directories is
//! what each device actually received and applied.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rampart_core::rollout::bucket;
use rampart_testkit::{Client, Options, PostgresDatabase, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DEVICES: usize = 20;
const POLICY: &str = "av";

/// A fleet of `DEVICES` Linux servers and a two-device canary group.
fn fleet_dir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("rampart-rollout-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let devices: Vec<String> = (0..DEVICES)
        .map(|i| {
            format!(
                "kind: Device\nname: dev-{i:02}\nos: linux\nos_version: \"22.04\"\ntype: server\n"
            )
        })
        .collect();
    std::fs::write(dir.join("devices.yaml"), devices.join("---\n")).unwrap();
    std::fs::write(
        dir.join("groups.yaml"),
        "kind: Group\nname: canary\nmembers: [dev-01, dev-02]\n",
    )
    .unwrap();
    dir
}

struct Fleet {
    server: TestServer,
    api: Client,
    dir: PathBuf,
}

impl Fleet {
    async fn start(database_url: Option<String>) -> Fleet {
        let dir = fleet_dir();
        let server = TestServer::start_with(Options {
            load: Some(dir.clone()),
            simulate: true,
            database_url,
            ..Options::default()
        })
        .await
        .unwrap();
        let api = server.admin();
        let fleet = Fleet { server, api, dir };
        fleet
            .until("every simulated device enrolled", || async {
                let (_, devices) = fleet.api.get("/devices").await.unwrap();
                let enrolled = devices
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["last_check_in"].is_i64())
                    .count();
                (enrolled == DEVICES).then_some(())
            })
            .await;
        fleet
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    async fn until<T, F: std::future::Future<Output = Option<T>>>(
        &self,
        what: &str,
        mut f: impl FnMut() -> F,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn state_dir(&self, device: &str) -> PathBuf {
        self.server.data_dir.join("simulated").join(device)
    }

    /// The digest of the policy the device's agent last applied, from its
    /// own state directory.
    fn applied_digest(&self, device: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.state_dir(device).join("applied.json")).ok()?;
        let applied: Value = serde_json::from_str(&text).ok()?;
        applied["digest"].as_str().map(str::to_string)
    }

    /// Waits until every agent applied what the server says it is entitled
    /// to, then returns each device's revision of the policy (none: the
    /// device does not get it).
    async fn settled(&self) -> BTreeMap<String, Option<u64>> {
        self.settled_except(&[]).await
    }

    async fn ids(&self) -> BTreeMap<String, String> {
        let (_, devices) = self.api.get("/devices").await.unwrap();
        devices
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn rollout(&self) -> Value {
        let (status, body) = self.api.get(&format!("/rollouts/{POLICY}")).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Moves the server's clock past the current soak and waits for the
    /// gates to be read (the stage to move, or the state to change).
    async fn end_soak(&self) -> Value {
        let before = self.rollout().await;
        self.server.clock.advance(3601);
        self.until("the gates are read", || async {
            let now = self.rollout().await;
            (now["stage"] != before["stage"] || now["state"] != before["state"]).then_some(now)
        })
        .await
    }
}

impl Fleet {
    /// Version 1 of the policy, everywhere at once, applied by every agent.
    async fn first_everywhere(&self, api: &Client) {
        let (s, body) = api
            .post("/policies", &av(true, json!("immediate")))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::CREATED, "{body}");
        self.settled().await;
    }
}

/// A change to the policy through `api`, accepted.
async fn change(api: &Client, body: &Value) {
    let (s, answer) = api.put(&format!("/policies/{POLICY}"), body).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{answer}");
}

fn av(scan_archives: bool, rollout: Value) -> Value {
    json!({
        "name": POLICY,
        "family": "antivirus",
        "platform": "linux",
        "settings": {"real_time_protection": true, "scan_archives": scan_archives},
        "assignments": {"include": ["all-devices"]},
        "rollout": rollout,
    })
}

fn percent_stages() -> Value {
    json!({
        "stages": [{"percent": 10, "soak": "1h"}, {"percent": 50, "soak": "1h"}, {"percent": 100, "soak": "1h"}],
        "gates": {"max_errors": 0},
    })
}

/// The devices a percentage stage reaches, computed here from the
/// rollout's id and the devices' ids as the documentation describes.
fn expected(ids: &BTreeMap<String, String>, rollout_id: &str, percent: u32) -> Vec<String> {
    ids.iter()
        .filter(|(_, id)| bucket(rollout_id, id) < percent * 100)
        .map(|(name, _)| name.clone())
        .collect()
}

fn holding(revisions: &BTreeMap<String, Option<u64>>, version: u64) -> Vec<String> {
    revisions
        .iter()
        .filter(|(_, v)| **v == Some(version))
        .map(|(n, _)| n.clone())
        .collect()
}

async fn stages_reach_exactly_their_devices(database_url: Option<String>) {
    let fleet = Fleet::start(database_url).await;
    let api = &fleet.api;
    let (s, body) = api
        .post("/policies", &av(true, json!("immediate")))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let first = fleet.settled().await;
    assert_eq!(
        holding(&first, 1).len(),
        DEVICES,
        "immediate: everywhere at once"
    );
    assert_eq!(
        fleet.api.get("/rollouts/av").await.unwrap().0,
        StatusCode::NOT_FOUND
    );

    // The preview says which stage brings the change to each device.
    let (s, preview) = api
        .post("/preview", &json!({"changes": [{"op": "put", "kind": "policy", "document": av(false, percent_stages())}]}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{preview}");
    change(api, &av(false, percent_stages())).await;
    let rollout = fleet.rollout().await;
    assert_eq!(rollout["state"], "running");
    assert_eq!(rollout["stage"], 0);
    let id = rollout["id"].as_str().unwrap().to_string();
    let ids = fleet.ids().await;
    let ten = expected(&ids, &id, 10);
    let half = expected(&ids, &id, 50);
    // Half of twenty devices: neither none nor all, but for a 2^-19 chance.
    assert!(!half.is_empty() && half.len() < DEVICES, "{half:?}");
    for d in preview["devices"].as_array().unwrap() {
        let name = d["device"].as_str().unwrap().to_string();
        let stage = d["rollout"].as_str().unwrap_or_default();
        let want = if ten.contains(&name) {
            "stage 1 of 3 (10%), at once"
        } else if half.contains(&name) {
            "stage 2 of 3 (50%)"
        } else {
            "stage 3 of 3 (100%)"
        };
        assert_eq!(stage, want, "preview of {name}: {d}");
    }
    assert_eq!(preview["devices"].as_array().unwrap().len(), DEVICES);

    // Stage 1: exactly the 10 % — every other device keeps version 1.
    let revisions = fleet.settled().await;
    assert_eq!(holding(&revisions, 2), ten, "stage 1");
    assert_eq!(holding(&revisions, 1).len(), DEVICES - ten.len());
    let (_, report) = api
        .get(&format!("/reports/policies/{POLICY}"))
        .await
        .unwrap();
    assert_eq!(
        report["devices_by_status"]["pending_rollout"]
            .as_u64()
            .unwrap() as usize,
        DEVICES - ten.len(),
        "{report}"
    );
    assert_eq!(
        report["rollout"]["devices_reached"].as_u64().unwrap() as usize,
        ten.len()
    );

    // The soak ends, the gates pass (no errors): stage 2, exactly the 50 %.
    let rollout = fleet.end_soak().await;
    assert_eq!(
        (rollout["state"].as_str(), rollout["stage"].as_u64()),
        (Some("running"), Some(1)),
        "{rollout}"
    );
    let last = rollout["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "advance");
    assert_eq!(
        last["gates"]["reached"].as_u64().unwrap() as usize,
        ten.len(),
        "{last}"
    );
    assert_eq!(
        last["gates"]["silent"], 0,
        "every reached device reported: {last}"
    );
    let revisions = fleet.settled().await;
    assert_eq!(holding(&revisions, 2), half, "stage 2");

    // Stage 3 reaches everyone; the end of its soak completes the rollout.
    fleet.end_soak().await;
    let revisions = fleet.settled().await;
    assert_eq!(holding(&revisions, 2).len(), DEVICES);
    let rollout = fleet.end_soak().await;
    assert_eq!(rollout["state"], "completed", "{rollout}");
    assert_eq!(
        rollout["devices_reached"].as_u64().unwrap() as usize,
        DEVICES
    );
    let actions: Vec<&str> = rollout["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["start", "advance", "advance", "complete"]);
    let (_, audit) = api.get("/audit").await.unwrap();
    assert_eq!(audit[0]["action"], "rollout.complete");
    assert_eq!(audit[0]["actor"], "rampart-server (rollout gates)");
    let (s, body) = api
        .post(&format!("/rollouts/{POLICY}/pause"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("rollout_finished"))
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_percentage_rollout_reaches_exactly_each_stages_devices_in_order() {
    stages_reach_exactly_their_devices(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_percentage_rollout_on_postgresql_reaches_exactly_each_stages_devices() {
    let Some(db) = PostgresDatabase::create("rollout").await else {
        return;
    };
    stages_reach_exactly_their_devices(Some(db.url.clone())).await;
    db.drop().await;
}

/// Makes the device's `file` provider fail: its settings file becomes a
/// directory, so every write reports an error.
fn break_provider(fleet: &Fleet, device: &str) {
    let file = fleet
        .state_dir(device)
        .join("enforced")
        .join("settings.json");
    let _ = std::fs::remove_file(&file);
    std::fs::create_dir_all(file.join("blocker")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_stage_with_errors_fails_its_gate_and_rolls_back() {
    let fleet = Fleet::start(None).await;
    let api = &fleet.api;
    fleet.first_everywhere(api).await;
    for canary in ["dev-01", "dev-02"] {
        break_provider(&fleet, canary);
    }
    let staged = json!({
        "stages": [{"group": "canary", "soak": "30m"}, {"percent": 100, "soak": "1h"}],
        "gates": {"max_errors": 10},
        "on_failure": "rollback",
    });
    change(api, &av(false, staged)).await;
    // Only the canaries are given version 2, and both report errors.
    fleet
        .until("both canaries report errors", || async {
            let mut errors = 0;
            for canary in ["dev-01", "dev-02"] {
                let (_, r) = api
                    .get(&format!("/reports/devices/{canary}"))
                    .await
                    .unwrap();
                errors += u64::from(r["counts"]["error"].as_u64().unwrap_or(0) > 0);
            }
            (errors == 2).then_some(())
        })
        .await;
    let (_, effective) = api.get("/devices/dev-05/effective").await.unwrap();
    assert_eq!(
        effective["policy_versions"][POLICY], 1,
        "not a canary: keeps version 1"
    );
    let (_, effective) = api.get("/devices/dev-01/effective").await.unwrap();
    assert_eq!(effective["policy_versions"][POLICY], 2);

    let rollout = fleet.end_soak().await;
    assert_eq!(rollout["state"], "rolled_back", "{rollout}");
    let last = rollout["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["gates"]["errors"], 2, "{last}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("errors: 2 of 2 devices (100%)"),
        "{last}"
    );
    // The previous revision is the policy again (as version 3), everywhere.
    let (_, policy) = api.get(&format!("/policies/{POLICY}")).await.unwrap();
    assert_eq!(policy["version"], 3);
    assert_eq!(policy["settings"]["scan_archives"], true);
    let (_, audit) = api.get("/audit").await.unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollout.rollback", "policy.rollback"], "{audit}");
    let revisions = fleet.settled_except(&["dev-01", "dev-02"]).await;
    assert!(revisions.values().all(|v| *v == Some(3)), "{revisions:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_advance_and_abort_are_the_administrators_and_audited() {
    let fleet = Fleet::start(None).await;
    let api = &fleet.api;
    fleet.first_everywhere(api).await;
    change(api, &av(false, percent_stages())).await;

    // A second change joins the running rollout: the devices it reached get
    // the newest revision, the rest keep version 1 and skip version 2.
    let id = fleet.rollout().await["id"].as_str().unwrap().to_string();
    let ten = expected(&fleet.ids().await, &id, 10);
    let mut newer = av(false, percent_stages());
    newer["settings"]["real_time_protection"] = json!(false);
    change(api, &newer).await;
    let rollout = fleet.rollout().await;
    assert_eq!(
        (rollout["id"].as_str(), rollout["stage"].as_u64()),
        (Some(id.as_str()), Some(0))
    );
    assert_eq!(
        rollout["history"].as_array().unwrap().last().unwrap()["action"],
        "superseded"
    );
    let revisions = fleet.settled().await;
    assert_eq!(
        holding(&revisions, 3),
        ten,
        "reached devices: the newest revision"
    );
    assert_eq!(
        holding(&revisions, 1).len(),
        DEVICES - ten.len(),
        "the rest: still version 1"
    );

    let (s, body) = api
        .post(
            &format!("/rollouts/{POLICY}/pause"),
            &json!({"reason": "looking at the first reports"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["state"].as_str(), body["reason"].as_str()),
        (Some("paused"), Some("looking at the first reports"))
    );
    // A paused rollout does not move when its soak ends.
    fleet.server.clock.advance(7200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fleet.rollout().await["stage"], 0);
    let (s, body) = api
        .post(&format!("/rollouts/{POLICY}/pause"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("rollout_not_running"))
    );
    // The body may be left out, as `curl -X POST` sends it.
    let (s, body) = api
        .send_raw(
            reqwest::Method::POST,
            &format!("/rollouts/{POLICY}/resume"),
            "application/json",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, body["state"].as_str()),
        (StatusCode::OK, Some("running")),
        "{body}"
    );
    let (s, body) = api
        .post(&format!("/rollouts/{POLICY}/advance"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (s, body["stage"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let half = expected(&fleet.ids().await, &id, 50);
    let revisions = fleet.settled().await;
    assert_eq!(holding(&revisions, 3), half);
    assert!(
        holding(&revisions, 2).is_empty(),
        "version 2 was skipped: {revisions:?}"
    );

    // A read-only token may look but not act; bad input changes nothing.
    let reader = fleet.server.client_with_role("read_only").await.unwrap();
    let (s, _) = reader
        .post(&format!("/rollouts/{POLICY}/abort"), &json!({}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = api
        .post(
            &format!("/rollouts/{POLICY}/abort"),
            &json!({"reason": "x".repeat(501)}),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, body["error"]["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")),
        "{body}"
    );
    let (s, _) = api.post("/rollouts/nope/abort", &json!({})).await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(fleet.rollout().await["state"], "running");

    // Abort: every reached device returns to the previous revision.
    let (s, body) = api
        .post(
            &format!("/rollouts/{POLICY}/abort"),
            &json!({"reason": "wrong exclusions"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, body["state"].as_str()),
        (StatusCode::OK, Some("rolled_back")),
        "{body}"
    );
    let revisions = fleet.settled().await;
    assert!(revisions.values().all(|v| *v == Some(4)), "{revisions:?}");
    let (_, policy) = api.get(&format!("/policies/{POLICY}")).await.unwrap();
    assert_eq!(
        policy["settings"],
        json!({"real_time_protection": true, "scan_archives": true})
    );
    let actions: Vec<String> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "start:admin",
            "superseded:admin",
            "pause:admin",
            "resume:admin",
            "advance:admin",
            "rollback:admin"
        ]
        .map(|a| a.replace("admin", &actor(&body)))
    );
    fleet.stop().await;
}

/// The actor the admin token's steps are recorded under.
fn actor(rollout: &Value) -> String {
    rollout["started_by"].as_str().unwrap().to_string()
}

impl Fleet {
    /// `settled` for every device but `skip` (whose provider is broken, so
    /// it never applies anything).
    async fn settled_except(&self, skip: &[&str]) -> BTreeMap<String, Option<u64>> {
        self.until(
            "every other agent holds the revision it is entitled to",
            || async {
                let mut out = BTreeMap::new();
                for i in 0..DEVICES {
                    let name = format!("dev-{i:02}");
                    if skip.contains(&name.as_str()) {
                        continue;
                    }
                    let (_, effective) = self
                        .api
                        .get(&format!("/devices/{name}/effective"))
                        .await
                        .unwrap();
                    if self.applied_digest(&name).as_deref() != effective["digest"].as_str() {
                        return None;
                    }
                    out.insert(name, effective["policy_versions"][POLICY].as_u64());
                }
                Some(out)
            },
        )
        .await
    }
}

/// Two replicas on one PostgreSQL database, agents on the first, changes
/// and the second replica's clock also past the soak: each step is taken
/// once (the other replica loses the version check), and a change made
/// through either reaches the agents.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_take_each_step_once_and_the_agents_follow() {
    let Some(db) = PostgresDatabase::create("rollout_replicas").await else {
        return;
    };
    let fleet = Fleet::start(Some(db.url.clone())).await;
    let b = TestServer::start_with(Options {
        database_url: Some(db.url.clone()),
        admin_token: Some(fleet.server.admin_token.clone()),
        master_key_file: Some(fleet.server.master_key_path()),
        ..Options::default()
    })
    .await
    .unwrap();
    let api_b = b.admin();
    fleet.first_everywhere(&api_b).await;

    // The staged change goes in through replica B; the agents hold long
    // polls on replica A.
    change(&api_b, &av(false, percent_stages())).await;
    let id = fleet.rollout().await["id"].as_str().unwrap().to_string();
    let ids = fleet.ids().await;
    let revisions = fleet.settled().await;
    assert_eq!(holding(&revisions, 2), expected(&ids, &id, 10));

    // Both replicas see the soak end; one of them takes the step.
    b.clock.advance(3601);
    let rollout = fleet.end_soak().await;
    assert_eq!(rollout["stage"], 1, "{rollout}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rollout = fleet.rollout().await;
    let steps: Vec<&str> = rollout["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["start", "advance"], "{rollout}");
    assert_eq!(rollout["stage"], 1);
    let revisions = fleet.settled().await;
    assert_eq!(holding(&revisions, 2), expected(&ids, &id, 50));

    // An abort through replica B brings every agent on A back.
    let (s, body) = api_b
        .post(&format!("/rollouts/{POLICY}/abort"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (s, body["state"].as_str()),
        (StatusCode::OK, Some("rolled_back")),
        "{body}"
    );
    let revisions = fleet.settled().await;
    assert!(revisions.values().all(|v| *v == Some(3)), "{revisions:?}");
    b.stop().await.unwrap();
    fleet.stop().await;
    db.drop().await;
}

/// The tenant's default rollout applies to policies that do not choose;
/// `rollout: immediate` opts out; a created policy reaches only its first
/// stage's devices, a deleted one leaves the devices not yet reached.
/// Checked on the example fleet's devices through each device's effective
/// policy (what the device channel signs for it).
#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_default_stages_creates_and_deletes_and_immediate_opts_out() {
    let server = TestServer::with_examples().await.unwrap();
    let api = server.admin();
    // A bad default is refused with its path, and nothing is saved.
    let (s, body) = api
        .put(
            "/tenant/settings",
            &json!({"default_rollout": {"stages": [{"percent": 150}]}}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"][0]["path"], "default_rollout.stages[0].percent",
        "{body}"
    );
    let (s, body) = api
        .put(
            "/tenant/settings",
            &json!({"default_rollout": {"stages": [{"group": "canaryy"}]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, body["error"]["details"][0]["path"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("default_rollout.stages[0].group")
        ),
        "{body}"
    );
    assert!(api.get("/tenant").await.unwrap().1["settings"]
        .get("default_rollout")
        .is_none());
    let (s, body) = api
        .put(
            "/tenant/settings",
            &json!({"default_rollout": {"stages": [{"percent": 50, "soak": "1h"}, {"percent": 100, "soak": "1h"}]}}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, tenant) = api.get("/tenant").await.unwrap();
    assert_eq!(
        tenant["settings"]["default_rollout"]["stages"][0]["percent"], 50,
        "{tenant}"
    );

    let linux = |name: &str| json!({"name": name, "family": "edr", "platform": "linux", "settings": {"edr_group_ids": "g"}, "assignments": {"include": ["all-devices"]}});
    let (s, body) = api.post("/policies", &linux("staged-new")).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, rollout) = api.get("/rollouts/staged-new").await.unwrap();
    assert_eq!(
        (rollout["state"].as_str(), rollout["from_version"].as_u64()),
        (Some("running"), None),
        "{rollout}"
    );
    let id = rollout["id"].as_str().unwrap().to_string();
    let (_, devices) = api.get("/devices?os=linux").await.unwrap();
    let linux_devices: Vec<(String, String)> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(linux_devices.len() >= 4, "{devices}");
    let gets_it = |name: String| {
        let api = server.admin();
        async move {
            let (_, e) = api
                .get(&format!("/devices/{name}/effective"))
                .await
                .unwrap();
            e["policy_versions"].get("staged-new").is_some()
        }
    };
    for (name, device_id) in &linux_devices {
        assert_eq!(
            gets_it(name.clone()).await,
            bucket(&id, device_id) < 5000,
            "{name}: only the first stage's devices get the new policy"
        );
    }
    assert_eq!(
        rollout["devices_reached"].as_u64().unwrap() as usize,
        linux_devices
            .iter()
            .filter(|(_, d)| bucket(&id, d) < 5000)
            .count()
    );
    let (s, _) = api
        .post("/rollouts/staged-new/advance", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let (_, done) = api
        .post("/rollouts/staged-new/advance", &json!({}))
        .await
        .unwrap();
    assert_eq!(done["state"], "completed", "{done}");
    for (name, _) in &linux_devices {
        assert!(gets_it(name.clone()).await, "{name}: completed");
    }

    // Deleting goes out in stages too: devices not reached keep the policy.
    let (s, _) = api.delete("/policies/staged-new").await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, rollout) = api.get("/rollouts/staged-new").await.unwrap();
    assert_eq!(
        (rollout["deletes"].as_bool(), rollout["state"].as_str()),
        (Some(true), Some("running")),
        "{rollout}"
    );
    let id = rollout["id"].as_str().unwrap().to_string();
    for (name, device_id) in &linux_devices {
        assert_eq!(
            gets_it(name.clone()).await,
            bucket(&id, device_id) >= 5000,
            "{name}: only reached devices lose the deleted policy"
        );
    }
    // Aborting the deletion brings the policy back for every device.
    let (_, aborted) = api
        .post("/rollouts/staged-new/abort", &json!({}))
        .await
        .unwrap();
    assert_eq!(aborted["state"], "rolled_back", "{aborted}");
    for (name, _) in &linux_devices {
        assert!(
            gets_it(name.clone()).await,
            "{name}: the deletion was rolled back"
        );
    }

    // `rollout: immediate` ignores the default.
    let mut now = linux("right-away");
    now["rollout"] = json!("immediate");
    let (s, _) = api.post("/policies", &now).await.unwrap();
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        api.get("/rollouts/right-away").await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    for (name, _) in &linux_devices {
        let (_, e) = api
            .get(&format!("/devices/{name}/effective"))
            .await
            .unwrap();
        assert!(e["policy_versions"].get("right-away").is_some(), "{name}");
    }
    server.stop().await.unwrap();
}
