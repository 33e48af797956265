//! The device channel over real mutual TLS, spoken directly (no agent):
//! enrollment and its refusals, signed policies, the unchanged check-in,
//! the long-poll push, status reports, renewal, revocation, offboarding.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rampart_proto::device::{
    CheckIn, CheckInResponse, EnrollResponse, Facts, OnboardingPackage, PolicyPayload, Survey,
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
    }
}

async fn package(server: &TestServer, body: Value) -> OnboardingPackage {
    let (s, p) = server.admin().post("/onboarding", &body).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{p}");
    serde_json::from_value(p).unwrap()
}

/// A device speaking the channel with its own key.
struct Device {
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
        let body = serde_json::to_value(CheckIn {
            digest: digest.map(str::to_string),
            version: None,
            facts,
            survey: Survey::default(),
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

    // Status reports show through the admin API.
    let report = json!({"report_id": "r1", "digest": pl2.digest, "version": 2, "statuses": [
        {"setting": "real_time_protection", "key": null, "status": "succeeded", "observed": true, "error_code": null, "error_message": null},
        {"setting": "scan_archives", "key": null, "status": "error", "observed": null, "error_code": "apply_failed", "error_message": "boom"}]});
    let (s, ack) = d
        .call(
            reqwest::Method::POST,
            "/device/v1/status",
            Some(report.clone()),
        )
        .await;
    assert_eq!((s, ack["changed"].as_u64()), (StatusCode::OK, Some(2)));
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
    assert_eq!(row("scan_archives")["error_message"], "boom");
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
async fn renewal_supersedes_the_old_certificate_and_deletion_revokes_at_once() {
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
        })
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        old.json::<Value>().await.unwrap()["error"]["code"],
        "device_revoked"
    );
    d.http = renewed;
    assert_eq!(d.checkin(None, facts("linux", &[])).await.0, StatusCode::OK);

    // Re-enrolling the same name keeps one device.
    let mut again = Device::new(&p);
    again
        .enroll(&p.token, "web-05", facts("linux", &[]), Survey::default())
        .await;
    assert_eq!(
        again.enrolled.as_ref().unwrap().device_id,
        d.enrolled.as_ref().unwrap().device_id
    );
    assert_eq!(
        server
            .admin()
            .get("/devices?os=linux")
            .await
            .unwrap()
            .1
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["name"] == "web-05")
            .count(),
        1
    );

    let (s, _) = server.admin().delete("/devices/web-05").await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = again.checkin(None, facts("linux", &[])).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("device_revoked"))
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
    // Wait for the listener to learn tenant B's CA (refreshed every 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = CheckIn {
            digest: None,
            version: None,
            facts: facts("linux", &[]),
            survey: Survey::default(),
        };
        let answer = db
            .http
            .post(format!("{}/device/v1/checkin", db.url))
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == StatusCode::OK => break,
            other => assert!(
                Instant::now() < deadline,
                "tenant B's device is still refused: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
