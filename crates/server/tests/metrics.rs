//! `/metrics` on `--metrics-listen`, scraped from a real server process and
//! read by a real Prometheus text parser (the Python client's OpenMetrics
//! parser); the example Grafana dashboard only asks for metrics the server
//! exports.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod process;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use process::{temp, Device, ServerProcess};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type,
                "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(out))
"#;

/// The families of an OpenMetrics text, by name, as the Python client parses
/// them; `None` when it is not installed (which fails under CI).
fn parse(text: &str) -> Option<BTreeMap<String, Value>> {
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with prometheus_client is required under CI (pip install prometheus-client)"
        );
        eprintln!("SKIPPED: python3 with prometheus_client is not installed");
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        families
            .into_iter()
            .map(|f| (f["name"].as_str().unwrap().to_string(), f))
            .collect(),
    )
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(
    families: &BTreeMap<String, Value>,
    family: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    families.get(family)?["samples"]
        .as_array()?
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .and_then(|s| s[2].as_f64())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_scraped_and_parsed_by_a_prometheus_parser() {
    let data = temp("metrics");
    let server = ServerProcess::spawn(&data, None, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server
        .metrics
        .clone()
        .expect("the banner names the metrics address");
    let package = server.package().await;
    let mut device = Device::new("metered-01");
    assert_eq!(
        device.enroll(&server.device, &package).await.unwrap(),
        StatusCode::OK
    );
    let mut twin = Device::new("metered-01");
    assert_ne!(
        twin.enroll(&server.device, &package).await.unwrap(),
        StatusCode::OK
    );
    let policy = serde_json::json!({"name": "metered-av", "family": "antivirus", "platform": "linux",
        "settings": {"scan_archives": true}, "assignments": {"include": ["all-devices"]}});
    let (s, b) = server.admin(Method::POST, "/policies", Some(policy)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    for _ in 0..2 {
        let (s, answer) = device
            .check_in(&server.device, &package.server_ca_pem)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        if answer["policy"].is_object() {
            let s = device
                .report(&server.device, &package.server_ca_pem, &answer, "succeeded")
                .await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    let (s, _) = server.admin(Method::GET, "/devices/metered-01", None).await;
    assert_eq!(s, StatusCode::OK);

    let r = reqwest::get(format!("{metrics}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    let Some(families) = parse(&text) else {
        return;
    };
    assert_eq!(families["rampart_build"]["type"], "info");
    assert!(
        sample(
            &families,
            "rampart_check_ins",
            "rampart_check_ins_total",
            &[]
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample(
            &families,
            "rampart_enrollments",
            "rampart_enrollments_total",
            &[("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &families,
            "rampart_enrollments",
            "rampart_enrollments_total",
            &[("result", "device_name_taken")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &families,
            "rampart_devices",
            "rampart_devices",
            &[
                ("tenant", "default"),
                ("enrollment", "enrolled"),
                ("managed_by", "rampart")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &families,
            "rampart_http_requests",
            "rampart_http_requests_total",
            &[
                ("listener", "admin"),
                ("route", "/api/v1/devices/{name}"),
                ("method", "GET"),
                ("status", "200")
            ]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &families,
            "rampart_http_request_duration_seconds",
            "rampart_http_request_duration_seconds_count",
            &[("listener", "device"), ("route", "/device/v1/checkin")]
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        families["rampart_database_call_duration_seconds"]["type"],
        "histogram"
    );
    assert!(families.contains_key("rampart_long_polls_held"));
    assert!(families.contains_key("rampart_nudges"));
    assert_eq!(
        sample(
            &families,
            "rampart_setting_statuses",
            "rampart_setting_statuses",
            &[("setting", "scan_archives"), ("status", "succeeded")]
        ),
        Some(1.0),
        "{text}"
    );
    // Error counters start at zero, so a rate is defined before the first.
    assert_eq!(
        sample(
            &families,
            "rampart_database_errors",
            "rampart_database_errors_total",
            &[("kind", "unavailable")]
        ),
        Some(0.0)
    );

    // The dashboard in the repository plots only metrics that exist.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../packaging/grafana/rampart-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 6, "{exprs:?}");
    let exported: Vec<String> = families
        .values()
        .flat_map(|f| {
            f["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s[0].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .chain(families.keys().cloned())
        .collect();
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("rampart_") {
                assert!(
                    exported.iter().any(|e| e == word),
                    "the dashboard asks for {word}, which /metrics does not export"
                );
            }
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(data.with_extension("log"));
}
