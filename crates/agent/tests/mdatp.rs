//! Microsoft Defender for Endpoint's managed file, end to end: a real
//! `rampart-agent` with `[providers.mdatp]` pointed at a temporary
//! `mdatp_managed.json`, enforcing antivirus, exclusion and EDR policies
//! from an in-process server. No root and no Defender needed: without the
//! `mdatp` command the file is the read-back, and the statuses say the
//! engine is not installed.
// A real rampart-server runs beside the agent: Linux (and macOS) only;
// the Windows agent's end-to-end test is windows_wine.rs, run from Linux.
#![cfg(not(windows))]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};

use rampart_testkit::TestServer;
use serde_json::json;
use support::{device_report, eventually, policy, put_policy, read_json, row, Agent};

fn mdatp_installed() -> bool {
    Command::new("sh")
        .args(["-c", "command -v mdatp"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_managed_file_gets_the_documented_keys_and_keeps_the_rest() {
    let dir = support::temp_dir("mdatp");
    let file = dir.join("managed/mdatp_managed.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // Keys a person (or another tool) put there.
    std::fs::write(
        &file,
        json!({
            "cloudService": {"proxy": "http://proxy.example:3128"},
            "antivirusEngine": {"exclusions": [{"$type": "excludedFileExtension", "extension": ".iso"}]},
            "exampleTool": {"keep": true}
        })
        .to_string(),
    )
    .unwrap();

    let server = TestServer::start().await.unwrap();
    let mut agent = Agent::new(
        "mde-01",
        &format!(
            "[providers.file]\nenabled = false\n[providers.mdatp]\nenabled = true\npath = \"{}\"\n",
            file.display()
        ),
    );
    agent.onboard(&server).await;
    put_policy(
        &server,
        &policy(
            "mde-av",
            "antivirus",
            json!({
                "real_time_protection": true,
                "scan_archives": false,
                "pua_protection": "audit",
                "network_protection": "block",
                "excluded_paths": ["/var/lib/db/"],
                "excluded_processes": ["/usr/bin/backup"],
            }),
        ),
    )
    .await;
    put_policy(
        &server,
        &policy(
            "mde-edr",
            "edr",
            json!({"sample_sharing": "none", "edr_device_tag": "linux-fleet"}),
        ),
    )
    .await;
    agent.start();

    let settings = [
        "real_time_protection",
        "scan_archives",
        "pua_protection",
        "network_protection",
        "excluded_paths",
        "excluded_processes",
        "sample_sharing",
        "edr_device_tag",
    ];
    eventually(30, "every setting succeeds", &agent, async || {
        let r = device_report(&server, "mde-01").await;
        settings
            .iter()
            .all(|s| row(&r, s)["status"] == "succeeded" && row(&r, s)["backend"] == "mdatp")
    })
    .await;
    if !mdatp_installed() {
        let r = device_report(&server, "mde-01").await;
        let rtp = row(&r, "real_time_protection");
        let message = rtp["error_message"].as_str().unwrap_or_default();
        assert!(message.contains("not installed"), "{rtp}");
        assert!(rtp["error_code"].is_null(), "{rtp}");
    }

    let doc = read_json(&file).unwrap();
    let engine = &doc["antivirusEngine"];
    assert_eq!(engine["enforcementLevel"], "real_time", "{doc}");
    assert_eq!(engine["scanArchives"], false);
    assert_eq!(
        engine["threatTypeSettings"],
        json!([{"key": "potentially_unwanted_application", "value": "audit"}])
    );
    assert_eq!(doc["networkProtection"]["enforcementLevel"], "block");
    assert_eq!(
        doc["cloudService"]["automaticSampleSubmissionConsent"],
        "none"
    );
    assert_eq!(
        doc["edr"]["tags"],
        json!([{"key": "GROUP", "value": "linux-fleet"}])
    );
    let exclusions = engine["exclusions"].as_array().unwrap();
    for entry in [
        json!({"$type": "excludedFileExtension", "extension": ".iso"}),
        json!({"$type": "excludedPath", "isDirectory": true, "path": "/var/lib/db/"}),
        json!({"$type": "excludedFileName", "name": "/usr/bin/backup"}),
    ] {
        assert!(exclusions.contains(&entry), "{entry} in {doc}");
    }
    // What a person put there stays.
    assert_eq!(doc["cloudService"]["proxy"], "http://proxy.example:3128");
    assert_eq!(doc["exampleTool"], json!({"keep": true}));

    // No longer assigned: the catalog says revert, so the keys go and
    // Defender's defaults apply again; the rest stays.
    put_policy(
        &server,
        &policy("mde-av", "antivirus", json!({"scan_archives": false})),
    )
    .await;
    eventually(
        30,
        "the unassigned settings are removed",
        &agent,
        async || {
            read_json(&file).is_some_and(|d| {
                d["antivirusEngine"].get("enforcementLevel").is_none()
                    && d["networkProtection"].is_null()
                    && d["antivirusEngine"].get("threatTypeSettings").is_none()
            }) && agent.reverted("mdatp", "network_protection")
        },
    )
    .await;
    let doc = read_json(&file).unwrap();
    assert_eq!(
        doc["antivirusEngine"]["exclusions"],
        json!([{"$type": "excludedFileExtension", "extension": ".iso"}]),
        "only the policy's exclusions went: {doc}"
    );
    assert_eq!(doc["antivirusEngine"]["scanArchives"], false);
    assert_eq!(doc["cloudService"]["proxy"], "http://proxy.example:3128");
    assert_eq!(doc["exampleTool"], json!({"keep": true}));
    for setting in [
        "real_time_protection",
        "excluded_paths",
        "network_protection",
    ] {
        assert!(
            agent.reverted("mdatp", setting),
            "{setting}: {}",
            agent.log()
        );
    }

    // A hand edit is drift: the next enforcement puts the value back.
    let mut edited = read_json(&file).unwrap();
    edited["antivirusEngine"]["scanArchives"] = json!(true);
    std::fs::write(&file, edited.to_string()).unwrap();
    support::sync(&server, "mde-01").await;
    eventually(20, "the hand edit is undone", &agent, async || {
        read_json(&file).is_some_and(|d| d["antivirusEngine"]["scanArchives"] == false)
    })
    .await;

    agent.stop();
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
