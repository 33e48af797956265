//! `rampart-sim --admin-devices N`: the admin API on a big tenant. N devices
//! are written straight into the store (in batches, as enrollment would
//! leave them, each with one reported status), then each admin request is
//! timed over HTTP against the in-process server: the first page of the
//! device list (plain, sorted by check-in, searched), a deep page through
//! the cursor, a policy report (a page of it, first and again, and whole)
//! and the preview of a change. The process's
//! resident memory is read before and after.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rampart_store::{DeviceRecord, StatusRecord, Write};
use rampart_testkit::{Options, TestServer};
use serde_json::json;

/// Devices per write batch.
const BATCH: usize = 1000;

fn device(i: usize) -> DeviceRecord {
    let os = ["linux", "windows", "macos"][i % 3];
    DeviceRecord {
        id: format!("bench-{i:08}"),
        name: format!("dev-{i:06}"),
        os: os.into(),
        os_version: if os == "windows" {
            "10.0.22631"
        } else {
            "22.04"
        }
        .into(),
        device_type: if i.is_multiple_of(4) {
            "workstation"
        } else {
            "server"
        }
        .into(),
        agent_version: "bench".into(),
        tags: match i % 5 {
            0 => vec!["web".into(), "prod".into()],
            1 => vec!["db".into()],
            _ => Vec::new(),
        },
        labels: vec!["Joined".into(), "Managed".into()],
        managed_by: "rampart".into(),
        enrollment_status: "enrolled".into(),
        enrollment_code: None,
        enrollment_reason: None,
        last_check_in: Some(1_767_225_600 + (i % 7200) as i64),
        applied_digest: None,
        policy_version: None,
        created_at: 1_767_225_600,
        cert_serial: None,
        cert_not_after: None,
        issued_version: 0,
        issued_digest: None,
        key_sha256: None,
        reenroll_until: None,
        conditions: Vec::new(),
    }
}

/// Resident memory of this process (server and client), in MiB.
fn rss_mib() -> f64 {
    crate::fleet::rss_mib(std::process::id())
}

/// The median of `rounds` timings of one request.
async fn time(
    http: &reqwest::Client,
    token: &str,
    rounds: usize,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> Result<(Duration, usize)> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let r = request(http).bearer_auth(token).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        times.push(started.elapsed());
        bytes = body.len();
    }
    times.sort();
    Ok((times[times.len() / 2], bytes))
}

pub async fn measure(devices: usize, database_url: Option<String>) -> Result<()> {
    let rss_start = rss_mib();
    let server = TestServer::start_with(Options {
        load: Some(rampart_testkit::repo_path("examples/fleet")),
        database_url,
        ..Options::default()
    })
    .await?;
    let store = server.store().context("the server's store")?;
    let admin = server.admin();
    let tenant = admin.get("/tenant").await?.1["id"]
        .as_str()
        .context("tenant id")?
        .to_string();
    let started = Instant::now();
    for start in (0..devices).step_by(BATCH) {
        let writes = (start..(start + BATCH).min(devices))
            .map(|i| Write::PutDevice(device(i)))
            .collect();
        store.write(&tenant, 0, writes, Vec::new()).await?;
    }
    for i in 0..devices {
        let d = device(i);
        let status = StatusRecord {
            device: d.name.clone(),
            setting: "real_time_protection".into(),
            key: String::new(),
            status: if i.is_multiple_of(50) {
                "error"
            } else {
                "succeeded"
            }
            .into(),
            observed: Some(json!(true)),
            error_code: None,
            error_message: None,
            backend: Some("mdatp".into()),
            digest: "bench".into(),
            updated_at: 0,
        };
        store
            .record_statuses(&tenant, &d.name, vec![status])
            .await?;
    }
    println!(
        "inserted {devices} devices and {devices} statuses in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::new();
    let token = server.admin_token.clone();
    let api = format!("{}/api/v1", server.url);
    println!("| request | median | body |");
    println!("|---|---:|---:|");
    let report = |what: &str, (d, bytes): (Duration, usize)| {
        println!(
            "| {what} | {:.1} ms | {:.1} KB |",
            d.as_secs_f64() * 1000.0,
            bytes as f64 / 1024.0
        );
    };
    for (what, query) in [
        ("GET /devices?limit=100", "limit=100"),
        (
            "GET /devices?limit=100&sort=last_check_in&order=desc",
            "limit=100&sort=last_check_in&order=desc",
        ),
        (
            "GET /devices?limit=100&os=windows&tag=web",
            "limit=100&os=windows&tag=web",
        ),
        (
            "GET /devices?limit=100&search=dev-0999",
            "limit=100&search=dev-0999",
        ),
    ] {
        let url = format!("{api}/devices?{query}");
        report(what, time(&http, &token, 21, |c| c.get(&url)).await?);
    }
    // A page in the middle, through the cursor of the page before.
    let middle = http
        .get(format!("{api}/devices?limit=100&sort=os"))
        .bearer_auth(&token)
        .send()
        .await?;
    if let Some(cursor) = middle.headers().get("x-next-cursor") {
        let url = format!(
            "{api}/devices?limit=100&sort=os&cursor={}",
            cursor.to_str()?
        );
        report(
            "GET /devices?limit=100&sort=os&cursor=… (page 2)",
            time(&http, &token, 21, |c| c.get(&url)).await?,
        );
    }
    // The first report resolves every device; the ones after find the
    // resolutions in the shared snapshot (as check-ins leave them).
    let url = format!("{api}/reports/policies/linux-av-baseline?limit=100");
    report(
        "GET /reports/policies/linux-av-baseline?limit=100, first",
        time(&http, &token, 1, |c| c.get(&url)).await?,
    );
    report(
        "GET /reports/policies/linux-av-baseline?limit=100, again",
        time(&http, &token, 5, |c| c.get(&url)).await?,
    );
    let url = format!("{api}/reports/policies/linux-av-baseline");
    report(
        "GET /reports/policies/linux-av-baseline (every device)",
        time(&http, &token, 3, |c| c.get(&url)).await?,
    );
    let mut policy = admin.get("/policies/linux-av-baseline").await?.1;
    for k in ["version", "modified_at", "modified_by"] {
        policy.as_object_mut().map(|o| o.remove(k));
    }
    policy["settings"]["scan_archives"] = json!(false);
    let body = json!({"changes": [{"op": "put", "kind": "policy", "document": policy}]});
    let url = format!("{api}/preview");
    report(
        "POST /preview (one policy change)",
        time(&http, &token, 3, |c| c.post(&url).json(&body)).await?,
    );
    println!(
        "process RSS (server and client): {:.0} MiB at start, {:.0} MiB after",
        rss_start,
        rss_mib()
    );
    server.stop().await?;
    Ok(())
}
