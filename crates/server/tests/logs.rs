//! `rampart-server --log-format json`: every line on standard error is one
//! JSON object, and the lines of a request carry its id, the caller's
//! tenant and, on the device channel, the device, at the top level.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod process;

use std::time::Duration;

use process::{temp, Device, ServerProcess};
use reqwest::StatusCode;
use serde_json::Value;

fn lines(server: &ServerProcess) -> Vec<Value> {
    server
        .log()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_name_the_request_tenant_and_device() {
    let data = temp("logs");
    let server = ServerProcess::spawn(&data, None, &["--log-format", "json"]);
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", server.admin))
        .bearer_auth(&server.token)
        .header("X-Request-Id", "req-test-1")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], "req-test-1");
    // A request id the caller garbled is replaced, not logged.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", server.admin))
        .header("X-Request-Id", "bad id\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let replaced = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(replaced.len(), 32, "{replaced}");

    let package = server.package().await;
    let mut device = Device::new("logged-01");
    assert_eq!(
        device.enroll(&server.device, &package).await.unwrap(),
        StatusCode::OK
    );
    let (s, _) = device
        .check_in(&server.device, &package.server_ca_pem)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);

    let mut found = Vec::new();
    for _ in 0..50 {
        found = lines(&server);
        if found.iter().any(|l| l["event"] == "device.enrolled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in &found {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(l[key].is_string(), "{key} missing: {l}");
        }
    }
    let whoami = found
        .iter()
        .find(|l| l["request_id"] == "req-test-1")
        .unwrap_or_else(|| panic!("no line of the request: {found:?}"));
    assert_eq!(whoami["event"], "http.request");
    assert_eq!(whoami["method"], "GET");
    assert_eq!(whoami["path"], "/api/v1/whoami");
    assert_eq!(whoami["status"], 200);
    let tenant = whoami["tenant"].as_str().unwrap_or_default();
    assert!(!tenant.is_empty(), "the caller's tenant: {whoami}");
    assert!(whoami["latency_ms"].is_number(), "{whoami}");
    let refused = found
        .iter()
        .find(|l| l["request_id"] == replaced.as_str())
        .unwrap_or_else(|| panic!("no line of the refused request: {found:?}"));
    assert_eq!(refused["status"], 401);
    let enrolled = found
        .iter()
        .find(|l| l["event"] == "device.enrolled")
        .unwrap_or_else(|| panic!("no enrollment line: {found:?}"));
    assert_eq!(enrolled["device"], "logged-01");
    assert_eq!(enrolled["tenant"], tenant);
    assert!(enrolled["request_id"].is_string(), "{enrolled}");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(data.with_extension("log"));
}

#[tokio::test(flavor = "multi_thread")]
async fn load_at_start_names_each_change_it_overwrites() {
    let data = temp("load");
    let files = rampart_testkit::repo_path("examples/fleet");
    let args = ["--log-format", "json", "--load", files.to_str().unwrap()];
    {
        let server = ServerProcess::spawn(&data, None, &args);
        let (s, view) = server
            .admin(reqwest::Method::GET, "/policies/linux-av-baseline", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{view}");
        let mut doc = serde_json::Map::new();
        for field in ["name", "family", "platform", "settings", "assignments"] {
            doc.insert(field.into(), view[field].clone());
        }
        doc.insert("description".into(), "changed in the console".into());
        let (s, body) = server
            .admin(
                reqwest::Method::PUT,
                "/policies/linux-av-baseline",
                Some(Value::Object(doc)),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        // A first load overwrites nothing.
        assert!(!server.log().contains("load_overwrote"), "{}", server.log());
    }
    // The next start with the same files puts the file's policy back, and
    // says so, naming it.
    let server = ServerProcess::spawn(&data, None, &args);
    let overwritten: Vec<Value> = lines(&server)
        .into_iter()
        .filter(|l| l["event"] == "load_overwrote")
        .collect();
    assert_eq!(overwritten.len(), 1, "{}", server.log());
    assert_eq!(overwritten[0]["name"], "linux-av-baseline");
    assert_eq!(overwritten[0]["kind"], "policy");
    assert_eq!(overwritten[0]["level"], "WARN");
    let (_, view) = server
        .admin(reqwest::Method::GET, "/policies/linux-av-baseline", None)
        .await;
    assert_ne!(view["description"], "changed in the console", "{view}");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(data.with_extension("log"));
}
