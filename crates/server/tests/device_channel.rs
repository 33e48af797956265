//! The device channel over real mutual TLS, spoken directly (no agent):
//! enrollment and its refusals, signed policies, the unchanged check-in,
//! the long-poll push, status reports, renewal, revocation, offboarding.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rampart_proto::device::{
    CheckIn, CheckInResponse, EnrollResponse, Facts, KeyAnnouncement, KeyAnnouncementPayload,
    OnboardingPackage, PolicyPayload, Survey,
};
use rampart_testkit::{Options, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn facts(os: &str, tags: &[&str]) -> Facts {
    Facts {
        hostname: "h".into(),
        os: os.into(),
        os_version: "22.04".into(),
        device_type: "server".into(),
        agent_version: "test".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Facts::default()
    }
}

async fn package(server: &TestServer, body: Value) -> OnboardingPackage {
    let (s, p) = server.admin().post("/onboarding", &body).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{p}");
    serde_json::from_value(p).unwrap()
}

/// A device speaking the channel with its own key.
struct Device {
    tenant: String,
    http: reqwest::Client,
    url: String,
    key: rampart_pki::DeviceKey,
    enrolled: Option<EnrollResponse>,
    ca: String,
}

fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    rampart_pki::install_crypto_provider();
    let tls = rampart_pki::client_config(ca, identity).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Device {
    fn new(p: &OnboardingPackage) -> Device {
        Device {
            tenant: p.tenant_id.clone(),
            http: client(&p.server_ca_pem, None),
            url: p.server_url.clone(),
            key: rampart_pki::new_device_key().unwrap(),
            enrolled: None,
            ca: p.server_ca_pem.clone(),
        }
    }

    async fn enroll(
        &mut self,
        token: &str,
        name: &str,
        facts: Facts,
        survey: Survey,
    ) -> (StatusCode, Value) {
        let body = json!({"token": token, "device_name": name, "csr_pem": rampart_pki::csr_pem(&self.key, name).unwrap(), "facts": facts, "survey": survey});
        let r = self
            .http
            .post(format!("{}/device/v1/enroll", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        if status == StatusCode::OK {
            let e: EnrollResponse = serde_json::from_value(v.clone()).unwrap();
            self.http = client(&self.ca, Some((&e.certificate_pem, &self.key.key_pem)));
            self.enrolled = Some(e);
        }
        (status, v)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn checkin(&self, digest: Option<&str>, facts: Facts) -> (StatusCode, Value) {
        self.checkin_holding(digest, None, facts).await
    }

    /// A check-in that says which policy key the device verifies with.
    async fn checkin_holding(
        &self,
        digest: Option<&str>,
        policy_key: Option<&str>,
        facts: Facts,
    ) -> (StatusCode, Value) {
        let body = serde_json::to_value(CheckIn {
            digest: digest.map(str::to_string),
            version: None,
            facts,
            survey: Survey::default(),
            policy_key: policy_key.map(str::to_string),
        })
        .unwrap();
        self.call(reqwest::Method::POST, "/device/v1/checkin", Some(body))
            .await
    }
}

fn payload(checkin: &Value, policy_key: &str) -> PolicyPayload {
    let r: CheckInResponse = serde_json::from_value(checkin.clone()).unwrap();
    let signed = r.policy.expect("a policy");
    rampart_pki::verify(policy_key, signed.payload.as_bytes(), &signed.signature).unwrap();
    serde_json::from_str(&signed.payload).unwrap()
}

#[tokio::test]
async fn onboarding_tokens_are_refused_when_unknown_expired_or_exhausted() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({"max_uses": 1, "expires_in_seconds": 3600})).await;
    let mut a = Device::new(&p);
    let (s, _) = a
        .enroll(&p.token, "web-new", facts("linux", &[]), Survey::default())
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut b = Device::new(&p);
    let (s, e) = b
        .enroll(
            &p.token,
            "web-other",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("token_exhausted"))
    );
    let (s, e) = b
        .enroll(
            "rmp_not-a-token",
            "web-other",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_unknown"))
    );
    let short = package(&server, json!({"expires_in_seconds": 60})).await;
    server.clock.advance(61);
    let (s, e) = b
        .enroll(
            &short.token,
            "web-other",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );
    let (s, e) = server
        .admin()
        .post(
            "/onboarding",
            &json!({"max_uses": 0, "expires_in_seconds": 5}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // A revoked token enrolls nobody; devices already enrolled keep their trust.
    let revocable = package(&server, json!({})).await;
    let listed = server.admin().get("/onboarding").await.unwrap().1;
    // Listed oldest first: the newest is the one just made.
    let entry = listed.as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["uses"], 0);
    assert!(
        !listed.to_string().contains(&revocable.token),
        "token secrets are never listed"
    );
    let (s, _) = server
        .admin()
        .delete(&format!("/onboarding/{}", entry["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = b
        .enroll(
            &revocable.token,
            "web-revoked",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_unknown"))
    );
    assert_eq!(a.checkin(None, facts("linux", &[])).await.0, StatusCode::OK);
    assert_eq!(
        server.admin().get("/audit").await.unwrap().1[0]["action"],
        "onboarding.revoke"
    );

    // The package pins the server's CA.
    assert_eq!(
        p.server_ca_sha256,
        rampart_pki::sha256_fingerprint(&p.server_ca_pem).unwrap()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_device_gets_a_signed_policy_then_pays_a_few_bytes_per_unchanged_check_in() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    let (s, e) = d
        .enroll(
            &p.token,
            "web-03",
            facts("linux", &["web", "prod"]),
            Survey::default(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let enrolled = d.enrolled.clone().unwrap();
    assert_eq!(enrolled.enrollment.labels, vec!["Joined", "Managed"]);
    let admin = server.admin();
    let dev = admin.get("/devices/web-03").await.unwrap().1;
    assert_eq!(dev["labels"], json!(["Joined", "Managed"]));
    assert_eq!(dev["enrollment"]["status"], "enrolled");

    let (s, first) = d.checkin(None, facts("linux", &["web", "prod"])).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let pl = payload(&first, &enrolled.policy_key);
    assert_eq!(pl.device_id, enrolled.device_id);
    assert_eq!(pl.version, 1);
    assert!(pl.resolution["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["setting"] == "pua_protection"));
    let (_, again) = d
        .checkin(Some(&pl.digest), facts("linux", &["web", "prod"]))
        .await;
    assert!(
        again["policy"].is_null(),
        "an unchanged policy is not sent again"
    );
    assert!(
        again.to_string().len() < 300,
        "an unchanged check-in costs a few bytes: {again}"
    );

    // A change of policy gives a new, higher version.
    admin.delete("/policies/linux-av-web").await.unwrap();
    let (_, changed) = d
        .checkin(Some(&pl.digest), facts("linux", &["web", "prod"]))
        .await;
    let pl2 = payload(&changed, &enrolled.policy_key);
    assert_eq!(pl2.version, 2);
    assert_ne!(pl2.digest, pl.digest);

    // A backend the server does not know is refused, naming the field, and
    // stores nothing.
    let bad = json!({"report_id": "r0", "digest": pl2.digest, "version": 2, "statuses": [
        {"setting": "real_time_protection", "key": null, "status": "succeeded", "observed": true, "error_code": null, "error_message": null, "backend": "magic"}]});
    let (s, e) = d
        .call(reqwest::Method::POST, "/device/v1/status", Some(bad))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("statuses[0].backend"), "{e}");
    let rep = admin.get("/reports/devices/web-03").await.unwrap().1;
    assert_eq!(rep["counts"]["succeeded"], 0, "{rep}");

    // Status reports show through the admin API, each with its backend; a
    // value the file backend only recorded is counted apart from succeeded.
    let report = json!({"report_id": "r1", "digest": pl2.digest, "version": 2, "statuses": [
        {"setting": "real_time_protection", "key": null, "status": "succeeded", "observed": true, "error_code": null, "error_message": null, "backend": "mdatp"},
        {"setting": "pua_protection", "key": null, "status": "recorded", "observed": true, "error_code": null, "error_message": "recorded by the file provider, not enforced", "backend": "file"},
        {"setting": "scan_archives", "key": null, "status": "error", "observed": null, "error_code": "apply_failed", "error_message": "boom", "backend": "clamav"}]});
    let (s, ack) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report.clone()),
        )
        .await;
    assert_eq!((s, ack["changed"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, ack) = d
        .call(reqwest::Method::POST, "/device/v1/status", Some(report))
        .await;
    assert_eq!(ack["changed"], 0, "a resent report changes nothing");
    let rep = admin.get("/reports/devices/web-03").await.unwrap().1;
    let row = |s: &str| {
        rep["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["setting"] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(row("real_time_protection")["status"], "succeeded");
    assert_eq!(row("real_time_protection")["backend"], "mdatp");
    assert_eq!(row("pua_protection")["status"], "recorded");
    assert_eq!(row("pua_protection")["backend"], "file");
    assert_eq!(row("scan_archives")["error_message"], "boom");
    assert_eq!(row("scan_archives")["backend"], "clamav");
    // The devices list counts the problems; a device quiet for longer than
    // two check-ins is stale.
    let listed = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "web-03")
            .unwrap()["problems"]
            .clone()
    };
    let list = admin.get("/devices").await.unwrap().1;
    assert_eq!(
        listed(&list),
        json!({"errors": 1, "conflicts": 0, "stale": false})
    );
    let one = admin.get("/devices/web-03").await.unwrap().1;
    assert_eq!(one["problems"]["errors"], 1, "{one}");
    server.clock.advance(rampart_proto::STALE_AFTER_SECS + 60);
    let list = admin.get("/devices").await.unwrap().1;
    assert_eq!(listed(&list)["stale"], true, "{list}");
    assert_eq!(
        (
            rep["counts"]["succeeded"].as_u64(),
            rep["counts"]["recorded"].as_u64()
        ),
        (Some(1), Some(1)),
        "{rep}"
    );
    let by_setting = admin
        .get("/reports/settings/pua_protection")
        .await
        .unwrap()
        .1;
    assert_eq!(by_setting["counts"]["recorded"], 1, "{by_setting}");
    let web03 = by_setting["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "web-03")
        .unwrap();
    assert_eq!(web03["backend"], "file", "{by_setting}");
    assert_eq!(
        admin.get("/devices/web-03").await.unwrap().1["policy_version"],
        2
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn survey_and_scope_outcomes_carry_stable_codes() {
    let server = TestServer::with_examples().await.unwrap();
    let admin = server.admin();
    admin
        .put(
            "/tenant/settings",
            &json!({"enforcement": {"linux": "tagged", "windows": "off"}}),
        )
        .await
        .unwrap();
    let p = package(&server, json!({})).await;
    let cases = [
        (
            "other-mdm",
            facts("linux", &["MDE-Management"]),
            Survey {
                managed_by: Some("intune".into()),
                evidence: vec!["/opt/microsoft/intune".into()],
            },
            "managed_by_other_authority",
        ),
        (
            "untagged",
            facts("linux", &[]),
            Survey::default(),
            "pilot_tag_missing",
        ),
        (
            "win",
            facts("windows", &[]),
            Survey::default(),
            "platform_not_enabled",
        ),
        (
            "plan9",
            facts("plan9", &[]),
            Survey::default(),
            "os_unsupported",
        ),
    ];
    for (name, f, survey, code) in cases {
        let mut d = Device::new(&p);
        let (s, e) = d.enroll(&p.token, name, f, survey).await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(e["enrollment"]["code"], code, "{name}");
        assert_eq!(e["enrollment"]["labels"], json!(["Joined"]));
        let shown = admin.get(&format!("/devices/{name}")).await.unwrap().1;
        assert_eq!(shown["enrollment"]["code"], code);
        // Each code comes with its cause and fix (docs/troubleshooting.md).
        assert_eq!(shown["enrollment"]["help"]["code"], code, "{shown}");
        assert!(
            !shown["enrollment"]["help"]["fix"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{shown}"
        );
    }
    let other = admin.get("/devices?managed_by=intune").await.unwrap().1;
    assert_eq!(other.as_array().unwrap().len(), 1);
    let mut tagged = Device::new(&p);
    let (_, e) = tagged
        .enroll(
            &p.token,
            "pilot",
            facts("linux", &["mde-management"]),
            Survey::default(),
        )
        .await;
    assert_eq!(e["enrollment"]["status"], "enrolled");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sync_and_policy_changes_wake_a_waiting_device_within_seconds() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    d.enroll(
        &p.token,
        "web-04",
        facts("linux", &["web"]),
        Survey::default(),
    )
    .await;
    let (_, first) = d.checkin(None, facts("linux", &["web"])).await;
    let digest = payload(&first, &d.enrolled.as_ref().unwrap().policy_key).digest;

    // Nothing to do: the poll times out.
    let (_, w) = d
        .call(
            reqwest::Method::GET,
            &format!("/device/v1/wait?digest={digest}&timeout=1"),
            None,
        )
        .await;
    assert_eq!(w["event"], "timeout");
    // A stale digest answers at once.
    let (_, w) = d
        .call(
            reqwest::Method::GET,
            "/device/v1/wait?digest=old&timeout=30",
            None,
        )
        .await;
    assert_eq!(w["event"], "sync");

    for trigger in ["sync", "policy"] {
        let poll = {
            let d_http = d.http.clone();
            let url = format!("{}/device/v1/wait?digest={digest}&timeout=60", d.url);
            tokio::spawn(async move {
                (
                    Instant::now(),
                    d_http
                        .get(url)
                        .send()
                        .await
                        .unwrap()
                        .json::<Value>()
                        .await
                        .unwrap(),
                )
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        if trigger == "sync" {
            let (s, r) = server
                .admin()
                .post("/devices/web-04/sync", &json!({}))
                .await
                .unwrap();
            assert_eq!(s, StatusCode::ACCEPTED);
            assert_eq!(r["connected"], true);
        } else {
            // Leaving the web-servers group changes the device's policy.
            let (s, _) = server
                .admin()
                .put("/devices/web-04/tags", &json!({"tags": ["lab"]}))
                .await
                .unwrap();
            assert_eq!(s, StatusCode::OK);
        }
        let (_, answer) = poll.await.unwrap();
        assert_eq!(answer["event"], "sync", "{trigger}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{trigger} reached the device in {:?}",
            started.elapsed()
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn renewal_supersedes_the_old_certificate_and_deletion_sends_a_signed_notice() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    d.enroll(&p.token, "web-05", facts("linux", &[]), Survey::default())
        .await;
    let old_http = d.http.clone();
    let new_key = rampart_pki::new_device_key().unwrap();
    let (s, r) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/renew",
            Some(json!({"csr_pem": rampart_pki::csr_pem(&new_key, "web-05").unwrap()})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let renewed = client(
        &d.ca,
        Some((r["certificate_pem"].as_str().unwrap(), &new_key.key_pem)),
    );
    let old = old_http
        .post(format!("{}/device/v1/checkin", d.url))
        .json(&CheckIn {
            digest: None,
            version: None,
            facts: facts("linux", &[]),
            survey: Survey::default(),
            policy_key: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        old.json::<Value>().await.unwrap()["error"]["code"],
        "certificate_superseded"
    );
    d.http = renewed;
    d.key = new_key;
    assert_eq!(d.checkin(None, facts("linux", &[])).await.0, StatusCode::OK);

    let (s, e) = server.admin().delete("/devices/web-05").await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let (s, e) = d.checkin(None, facts("linux", &[])).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::GONE, Some("device_offboarded")),
        "{e}"
    );
    // The notice is signed with the tenant's policy key and names this
    // device: the one instruction an agent removes settings on.
    let enrolled = d.enrolled.as_ref().unwrap();
    let notice = &e["notice"];
    let text = notice["payload"].as_str().unwrap();
    rampart_pki::verify(
        &enrolled.policy_key,
        text.as_bytes(),
        notice["signature"].as_str().unwrap(),
    )
    .unwrap();
    let payload: Value = serde_json::from_str(text).unwrap();
    assert_eq!(payload["kind"], "offboard");
    assert_eq!(payload["device_id"], enrolled.device_id.as_str());
    assert!(payload["reason"].as_str().unwrap().contains("deleted by"));
    server.stop().await.unwrap();
}

/// The announcements of a check-in answer, each verified with the key it
/// replaces, as (previous key, new key, generation).
fn announced_keys(answer: &Value) -> Vec<(String, String, u64)> {
    let list: Vec<KeyAnnouncement> =
        serde_json::from_value(answer["key_announcements"].clone()).unwrap_or_default();
    list.iter()
        .map(|a| {
            let p: KeyAnnouncementPayload = serde_json::from_str(&a.payload).unwrap();
            rampart_pki::verify(&p.previous_key, a.payload.as_bytes(), &a.signature)
                .expect("an announcement verifies with the key it replaces");
            assert_eq!(p.kind, "policy_key");
            (p.previous_key, p.key, p.generation)
        })
        .collect()
}

#[tokio::test]
async fn a_rotated_policy_key_reaches_enrolled_devices_announced_by_the_old_one() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    d.enroll(&p.token, "web-07", facts("linux", &[]), Survey::default())
        .await;
    let k0 = d.enrolled.clone().unwrap().policy_key;
    let admin = server.admin();
    let (s, key) = admin.get("/tenant/policy-key").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{key}");
    assert_eq!(
        (key["key"].as_str(), key["generation"].as_u64()),
        (Some(k0.as_str()), Some(0))
    );

    // Only a global admin rotates.
    let operator = server.client_with_role("security_manager").await.unwrap();
    let (s, e) = operator
        .post("/tenant/policy-key/rotate", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");

    let (s, first) = admin
        .post("/tenant/policy-key/rotate", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{first}");
    let k1 = first["key"].as_str().unwrap().to_string();
    assert_ne!(k1, k0);
    assert_eq!(first["generation"], 1);
    let (_, second) = admin
        .post("/tenant/policy-key/rotate", &json!({}))
        .await
        .unwrap();
    let k2 = second["key"].as_str().unwrap().to_string();
    assert_eq!(second["generation"], 2);

    // A device that enrolled under the first key gets the policy signed
    // with the newest and the chain that leads there from its own key.
    let (s, answer) = d
        .checkin_holding(None, Some(&k0), facts("linux", &[]))
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert_eq!(
        announced_keys(&answer),
        vec![(k0.clone(), k1.clone(), 1), (k1.clone(), k2.clone(), 2)]
    );
    let pl = payload(&answer, &k2);
    assert!(
        rampart_pki::verify(
            &k0,
            answer["policy"]["payload"].as_str().unwrap().as_bytes(),
            answer["policy"]["signature"].as_str().unwrap()
        )
        .is_err(),
        "nothing is signed with the old key any more"
    );
    // A device on the current key is not sent the chain, and an unchanged
    // check-in carries neither policy nor announcements.
    let (_, current) = d
        .checkin_holding(None, Some(&k2), facts("linux", &[]))
        .await;
    assert!(current.get("key_announcements").is_none(), "{current}");
    let (_, unchanged) = d
        .checkin_holding(Some(&pl.digest), Some(&k0), facts("linux", &[]))
        .await;
    assert!(unchanged["policy"].is_null(), "{unchanged}");
    assert!(unchanged.get("key_announcements").is_none(), "{unchanged}");

    // The rotations are audited with the keys.
    let (_, audit) = admin.get("/audit?limit=20").await.unwrap();
    let rotations: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "tenant.policy_key.rotate")
        .collect();
    assert_eq!(rotations.len(), 2, "{audit}");
    assert_eq!(rotations[0]["after"]["key"], k2.as_str());

    // A deleted device's notice comes with the chain too.
    admin.delete("/devices/web-07").await.unwrap();
    let (s, gone) = d
        .checkin_holding(None, Some(&k0), facts("linux", &[]))
        .await;
    assert_eq!(s, StatusCode::GONE, "{gone}");
    assert_eq!(announced_keys(&gone).len(), 2);
    let notice = &gone["notice"];
    rampart_pki::verify(
        &k2,
        notice["payload"].as_str().unwrap().as_bytes(),
        notice["signature"].as_str().unwrap(),
    )
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_device_name_is_not_a_credential() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut real = Device::new(&p);
    let (s, e) = real
        .enroll(
            &p.token,
            "Web-09",
            facts("linux", &["web"]),
            Survey::default(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let id = real.enrolled.as_ref().unwrap().device_id.clone();

    // Anyone with a token, under the same name in any case: refused, and
    // the real device's record and certificate are untouched.
    for name in ["Web-09", "web-09", " WEB-09 "] {
        let mut attacker = Device::new(&p);
        let (s, e) = attacker
            .enroll(&p.token, name, facts("windows", &[]), Survey::default())
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("device_name_taken")),
            "{name}: {e}"
        );
    }
    let (_, view) = server.admin().get("/devices/Web-09").await.unwrap();
    assert_eq!(view["os"], "linux", "{view}");
    assert_eq!(
        real.checkin(None, facts("linux", &[])).await.0,
        StatusCode::OK
    );
    // Names with invisible characters are refused outright.
    let mut sneaky = Device::new(&p);
    let (s, e) = sneaky
        .enroll(
            &p.token,
            "Web\u{200B}-09",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // An administrator's approval lets one enrollment take the name, once.
    let (s, a) = server
        .admin()
        .post("/devices/web-09/reenroll", &json!({"expires_in_hours": 2}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{a}");
    let mut replacement = Device::new(&p);
    let (s, e) = replacement
        .enroll(&p.token, "web-09", facts("linux", &[]), Survey::default())
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(replacement.enrolled.as_ref().unwrap().device_id, id);
    let mut second = Device::new(&p);
    let (s, _) = second
        .enroll(&p.token, "web-09", facts("linux", &[]), Survey::default())
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // The old certificate no longer counts.
    let (s, e) = real.checkin(None, facts("linux", &[])).await;
    assert_eq!(e["error"]["code"], "certificate_superseded", "{s} {e}");
    let (s, e) = server
        .admin()
        .post("/devices/web-09/reenroll", &json!({"expires_in_hours": 0}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    let (_, audit) = server.admin().get("/audit?limit=200").await.unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["object_name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("web-09"))
        })
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "device.reenroll",
            "device.reenroll_approve",
            "device.enroll"
        ],
        "{audit}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_enrollments_of_one_name_leave_one_device() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut d = Device::new(&p);
            let name = if i % 2 == 0 { "race-01" } else { "RACE-01" };
            let (s, e) = d
                .enroll(&p.token, name, facts("linux", &[]), Survey::default())
                .await;
            (s, e["error"]["code"].as_str().map(str::to_string))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (StatusCode::OK, _) => ok += 1,
            (s, code) => assert_eq!(
                (s, code.as_deref()),
                (StatusCode::CONFLICT, Some("device_name_taken"))
            ),
        }
    }
    assert_eq!(ok, 1);
    let (_, audit) = server.admin().get("/audit?limit=200").await.unwrap();
    let enrollments = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "device.enroll")
        .count();
    assert_eq!(enrollments, 1, "{audit}");
    server.stop().await.unwrap();
}

fn reattest_body(
    d: &Device,
    key: &rampart_pki::DeviceKey,
    certificate_pem: Option<&str>,
    next: &rampart_pki::DeviceKey,
) -> Value {
    let e = d.enrolled.as_ref().unwrap();
    let tenant = d.tenant.clone();
    let csr = rampart_pki::csr_pem(next, &e.device_name).unwrap();
    let message = rampart_pki::attestation_message(&tenant, &e.device_id, &csr);
    json!({
        "tenant_id": tenant,
        "device_id": e.device_id,
        "device_name": e.device_name,
        "certificate_pem": certificate_pem,
        "public_key": rampart_pki::device_public_key(key).unwrap(),
        "signature": rampart_pki::sign_with_device_key(key, &message).unwrap(),
        "csr_pem": csr,
        "facts": facts("linux", &[]),
        "survey": Survey::default(),
    })
}

async fn reattest(url: &str, ca: &str, body: &Value) -> (StatusCode, Value) {
    let r = client(ca, None)
        .post(format!("{url}/device/v1/reattest"))
        .json(body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_device_proves_itself_with_its_enrolled_key() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    d.enroll(
        &p.token,
        "attest-01",
        facts("linux", &[]),
        Survey::default(),
    )
    .await;
    let cert = d.enrolled.as_ref().unwrap().certificate_pem.clone();
    let id = d.enrolled.as_ref().unwrap().device_id.clone();

    // With its certificate and key: a new certificate for a new key.
    let next = rampart_pki::new_device_key().unwrap();
    let (s, r) = reattest(
        &p.server_url,
        &p.server_ca_pem,
        &reattest_body(&d, &d.key, Some(&cert), &next),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["device_id"], id.as_str());
    let second_cert = r["certificate_pem"].as_str().unwrap().to_string();

    // A stranger's key, even with the real (now superseded) certificate:
    // refused.
    let stranger = rampart_pki::new_device_key().unwrap();
    let (s, r) = reattest(
        &p.server_url,
        &p.server_ca_pem,
        &reattest_body(&d, &stranger, Some(&cert), &stranger),
    )
    .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("attestation_invalid")),
        "{r}"
    );
    let (s, r) = reattest(
        &p.server_url,
        &p.server_ca_pem,
        &reattest_body(&d, &stranger, None, &stranger),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{r}");
    // The old key and its superseded certificate: refused.
    let (s, r) = reattest(
        &p.server_url,
        &p.server_ca_pem,
        &reattest_body(&d, &d.key, Some(&cert), &stranger),
    )
    .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("certificate_superseded")),
        "{r}"
    );

    // The current key alone (its certificate file lost): accepted.
    let third = rampart_pki::new_device_key().unwrap();
    let (s, r) = reattest(
        &p.server_url,
        &p.server_ca_pem,
        &reattest_body(&d, &next, None, &third),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let _ = second_cert;

    // Deleted: the signed notice, not a certificate.
    server.admin().delete("/devices/attest-01").await.unwrap();
    let fourth = rampart_pki::new_device_key().unwrap();
    let (s, r) = reattest(
        &p.server_url,
        &p.server_ca_pem,
        &reattest_body(&d, &third, None, &fourth),
    )
    .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::GONE, Some("device_offboarded")),
        "{r}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn issued_versions_go_above_what_the_agent_holds() {
    let server = TestServer::with_examples().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    d.enroll(
        &p.token,
        "web-01",
        facts("linux", &["web"]),
        Survey::default(),
    )
    .await;
    let key = d.enrolled.as_ref().unwrap().policy_key.clone();
    // The agent says it holds version 40 of another policy (the server
    // forgot, e.g. a restore): the server issues above it.
    let body = json!({"digest": "feed", "version": 40, "facts": facts("linux", &["web"]), "survey": Survey::default()});
    let (s, r) = d
        .call(reqwest::Method::POST, "/device/v1/checkin", Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let issued = payload(&r, &key);
    assert_eq!(issued.version, 41);
    // Holding the current policy at a higher version than the server
    // recorded: nothing sent, and the next change goes above it.
    let body = json!({"digest": issued.digest, "version": 60, "facts": facts("linux", &["web"]), "survey": Survey::default()});
    let (s, r) = d
        .call(reqwest::Method::POST, "/device/v1/checkin", Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["policy"].is_null(), "{r}");
    let (_, view) = server.admin().get("/devices/web-01").await.unwrap();
    let _ = view;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_device_cannot_flood_the_audit_log_or_invent_settings() {
    let server = TestServer::start_with(Options {
        load: Some(std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/fleet"
        ))),
        device_requests_per_minute: Some(30),
        ..Options::default()
    })
    .await
    .unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    d.enroll(
        &p.token,
        "web-01",
        facts("linux", &["web"]),
        Survey::default(),
    )
    .await;
    let (_, r) = d.checkin(None, facts("linux", &["web"])).await;
    let issued = payload(&r, &d.enrolled.as_ref().unwrap().policy_key);
    let tamper = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"setting": "firewall_enabled", "key": null, "provider": "nftables", "expected": true, "found": false, "at": i, "restored": true}))
            .collect()
    };
    let report = |id: &str, statuses: Value, events: Vec<Value>| json!({"report_id": id, "digest": issued.digest, "version": issued.version, "statuses": statuses, "tamper_events": events});
    let (s, e) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report("r1", json!([]), tamper(101))),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("too_many_tamper_events")
        ),
        "{e}"
    );
    let made_up = json!([{"setting": "no_such_setting", "key": null, "status": "succeeded", "observed": null, "error_code": null, "error_message": null}]);
    let (s, e) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report("r2", made_up, Vec::new())),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("setting_not_issued")),
        "{e}"
    );
    // 60 events: one audit entry, with the count and the first events.
    let (s, e) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report("r3", json!([]), tamper(60))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, audit) = server.admin().get("/audit?limit=500").await.unwrap();
    let tampers: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "device.tamper")
        .collect();
    assert_eq!(tampers.len(), 1, "{audit}");
    assert_eq!(tampers[0]["after"]["count"], 60);
    assert_eq!(tampers[0]["after"]["events"].as_array().unwrap().len(), 10);

    // Past its rate, a device is told to come back later.
    let mut limited = None;
    for i in 0..40 {
        let r = d
            .http
            .post(format!("{}/device/v1/status", d.url))
            .json(&report(&format!("q{i}"), json!([]), Vec::new()))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    let limited = limited.expect("a 429 within 40 requests at 30 a minute");
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn calls_without_a_certificate_or_from_another_installation_are_refused() {
    let server = TestServer::with_examples().await.unwrap();
    let other = TestServer::start_with(Options::default()).await.unwrap();
    let p = package(&server, json!({})).await;
    let p_other = package(&other, json!({})).await;
    let anonymous = Device::new(&p);
    let (s, e) = anonymous.checkin(None, facts("linux", &[])).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    // A device of the other installation presents its certificate here:
    // the TLS handshake refuses it.
    let mut foreign = Device::new(&p_other);
    foreign
        .enroll(
            &p_other.token,
            "foreign",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    let cert = foreign.enrolled.as_ref().unwrap().certificate_pem.clone();
    let stranger = client(&p.server_ca_pem, Some((&cert, &foreign.key.key_pem)));
    let r = stranger
        .post(format!("{}/device/v1/checkin", p.server_url))
        .json(&json!({}))
        .send()
        .await;
    assert!(
        r.is_err() || r.unwrap().status() != StatusCode::OK,
        "a certificate from another CA must not be accepted"
    );

    // Offboarding deletes the device and is audited.
    let (s, _) = foreign
        .call(reqwest::Method::POST, "/device/v1/offboard", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        other.admin().get("/devices/foreign").await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.admin().get("/audit").await.unwrap().1[0]["action"],
        "device.offboard"
    );
    server.stop().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test]
async fn tenants_have_their_own_ca_and_never_see_each_others_devices() {
    let server = TestServer::start().await.unwrap();
    let store = server.store().unwrap();
    let (_, token_b) = rampart_server::bootstrap::create_tenant(
        store.as_ref(),
        "acme",
        rampart_testkit::TEST_EPOCH,
    )
    .await
    .unwrap();
    let b = server.client(&token_b);
    let pa = package(&server, json!({})).await;
    let (_, pb) = b.post("/onboarding", &json!({})).await.unwrap();
    let pb: OnboardingPackage = serde_json::from_value(pb).unwrap();
    assert_ne!(pa.tenant_id, pb.tenant_id);
    let mut da = Device::new(&pa);
    da.enroll(
        &pa.token,
        "same-name",
        facts("linux", &[]),
        Survey::default(),
    )
    .await;
    let mut db = Device::new(&pb);
    let (s, _) = db
        .enroll(
            &pb.token,
            "same-name",
            facts("linux", &[]),
            Survey::default(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(
        da.enrolled.as_ref().unwrap().tenant_ca_pem,
        db.enrolled.as_ref().unwrap().tenant_ca_pem
    );
    assert_ne!(
        da.enrolled.as_ref().unwrap().device_id,
        db.enrolled.as_ref().unwrap().device_id
    );
    // Tenant B was created behind the server's back (as another process or
    // replica would): its CA is trusted at once, so the first check-in
    // right after enrollment goes through, with no waiting for a refresh.
    let body = CheckIn {
        digest: None,
        version: None,
        facts: facts("linux", &[]),
        survey: Survey::default(),
        policy_key: None,
    };
    let first = db
        .http
        .post(format!("{}/device/v1/checkin", db.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK, "tenant B's first check-in");
    assert_eq!(
        b.get("/devices").await.unwrap().1.as_array().unwrap().len(),
        1
    );
    assert_eq!(
        server
            .admin()
            .get("/devices")
            .await
            .unwrap()
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Deleting B's device leaves A's device of the same name alone.
    b.delete("/devices/same-name").await.unwrap();
    assert_eq!(
        da.checkin(None, facts("linux", &[])).await.0,
        StatusCode::OK
    );
    server.stop().await.unwrap();
}

/// The rollout gates over what devices say on the channel: a reached device
/// that does not report the new revision fails `max_silent`, one that
/// reports a tamper event fails `no_new_tamper`; with `on_failure: pause`
/// each failure pauses the rollout and names the gate.
#[tokio::test]
async fn rollout_gates_pause_on_silent_devices_and_on_new_tamper_events() {
    let server = TestServer::start().await.unwrap();
    let api = server.admin();
    let (s, b) = api
        .post("/groups", &json!({"name": "canary", "members": ["c1"]}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    let (s, _) = d
        .enroll(&p.token, "c1", facts("linux", &[]), Survey::default())
        .await;
    assert_eq!(s, StatusCode::OK);
    let key = d.enrolled.as_ref().unwrap().policy_key.clone();
    let mut policy = json!({"name": "av", "family": "antivirus", "platform": "linux",
        "settings": {"scan_archives": true}, "assignments": {"include": ["all-devices"]}, "rollout": "immediate"});
    let (s, b) = api.post("/policies", &policy).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Reports the policy it was given: nothing is silent.
    let report = |issued: &PolicyPayload, id: &str, tamper: Vec<Value>| {
        json!({"report_id": id, "digest": issued.digest, "version": issued.version, "statuses": [
            {"setting": "scan_archives", "key": null, "status": "succeeded", "observed": issued.resolution["settings"][0]["value"], "error_code": null, "error_message": null, "backend": "mdatp"}],
            "tamper_events": tamper})
    };
    let (_, r) = d.checkin(None, facts("linux", &[])).await;
    let first = payload(&r, &key);
    let (s, b) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report(&first, "r1", vec![])),
        )
        .await;
    assert!(s.is_success(), "{b}");

    policy["settings"]["scan_archives"] = json!(false);
    policy["rollout"] = json!({
        "stages": [{"group": "canary", "soak": "10m"}, {"percent": 100, "soak": "10m"}],
        "gates": {"max_silent": 0, "no_new_tamper": true},
    });
    let (s, b) = api.put("/policies/av", &policy).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, r) = d.checkin(Some(&first.digest), facts("linux", &[])).await;
    let second = payload(&r, &key);
    assert_ne!(second.digest, first.digest, "the canary is reached");

    let wait_for = |state: &'static str| {
        let api = server.admin();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (_, r) = api.get("/rollouts/av").await.unwrap();
                if r["state"] == state {
                    return r;
                }
                assert!(Instant::now() < deadline, "never {state}: {r}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The canary took the new revision but never reported it.
    server.clock.advance(601);
    let r = wait_for("paused").await;
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "gate_failed", "{r}");
    assert_eq!(last["gates"]["silent"], 1, "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("not reporting: 1 of 1 devices (100%)"),
        "{r}"
    );
    assert_eq!(r["stage"], 0);

    // It reports now, with a tamper event: resumed, the next soak fails on
    // the tamper gate alone.
    let (s, _) = api.post("/rollouts/av/resume", &json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let tamper = vec![
        json!({"setting": "scan_archives", "key": null, "provider": "mdatp", "expected": false, "found": true, "at": 1, "restored": true}),
    ];
    let (s, b) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report(&second, "r2", tamper)),
        )
        .await;
    assert!(s.is_success(), "{b}");
    server.clock.advance(601);
    let r = wait_for("paused").await;
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "gate_failed", "{r}");
    assert_eq!(
        (
            last["gates"]["silent"].as_u64(),
            last["gates"]["tamper_events"].as_u64()
        ),
        (Some(0), Some(1)),
        "{r}"
    );
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("gate failed: tamper: 1 new tamper event"),
        "{r}"
    );
    let (_, audit) = api.get("/audit").await.unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "rollout.gate_failed"
                && a["after"]["gates"]["tamper_events"] == 1),
        "{audit}"
    );

    // No new event: the next soak passes and the rollout moves on.
    let (s, _) = api.post("/rollouts/av/resume", &json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    server.clock.advance(601);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, r) = api.get("/rollouts/av").await.unwrap();
        if r["stage"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never advanced: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

/// The conditions an agent reports are kept and shown with the device:
/// stable codes only, sorted, each once; anything else is dropped.
#[tokio::test]
async fn reported_conditions_are_shown_with_the_device() {
    let server = TestServer::start().await.unwrap();
    let p = package(&server, json!({})).await;
    let mut d = Device::new(&p);
    let mut f = facts("windows", &[]);
    f.conditions = vec![
        "server_core".into(),
        "non_persistent_vdi".into(),
        "Not A Code".into(),
        "server_core".into(),
    ];
    let (s, _) = d
        .enroll(&p.token, "pooled-01", f.clone(), Survey::default())
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, shown) = server.admin().get("/devices/pooled-01").await.unwrap();
    assert_eq!(
        shown["conditions"],
        json!(["non_persistent_vdi", "server_core"]),
        "{shown}"
    );
    // A check-in replaces them with what the agent reports now.
    f.conditions = vec!["constrained_language".into()];
    let (s, _) = d.checkin(None, f).await;
    assert_eq!(s, StatusCode::OK);
    let (_, shown) = server.admin().get("/devices/pooled-01").await.unwrap();
    assert_eq!(
        shown["conditions"],
        json!(["constrained_language"]),
        "{shown}"
    );
    let (_, listed) = server.admin().get("/devices").await.unwrap();
    assert_eq!(listed[0]["conditions"], json!(["constrained_language"]));
    server.stop().await.unwrap();
}
