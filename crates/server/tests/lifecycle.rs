//! The real `rampart-server` binary: quick start with `--load`, and a clean
//! exit on SIGTERM.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::repo_path;

#[test]
fn the_readme_main_command_loads_the_examples_serves_and_stops_cleanly_on_sigterm() {
    // reqwest is built without a default TLS provider in this crate's tests;
    // alone (`cargo test -p rampart-server`) nothing else installs one.
    rampart_pki::install_crypto_provider();
    let data = std::env::temp_dir().join(format!("rampart-lifecycle-{}", std::process::id()));
    // The README's main command, on a port and in a directory of our own.
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let main = readme
        .lines()
        .find_map(|l| l.strip_prefix("cargo run --bin rampart-server -- "))
        .expect("the README's quick start runs rampart-server");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart-server"))
        .args(main.split_whitespace())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--device-listen",
            "127.0.0.1:0",
        ])
        .current_dir(repo_path(""))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first.trim().rsplit("http://").next().unwrap().to_string();
    assert!(first.contains("listening"), "{first}");
    let mut rest = String::new();
    for _ in 0..4 {
        stdout.read_line(&mut rest).unwrap();
    }
    assert!(
        rest.contains("RAMPART_TOKEN"),
        "the server says how to point the CLI at it: {rest}"
    );

    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let log = std::fs::read_to_string(data.join("rampart.db")).unwrap_or_default();
    assert!(
        !log.contains(token.trim()),
        "the token is never stored in clear"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let devices: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/api/v1/devices"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(devices.as_array().unwrap().len(), 12);
    // --simulate: the example devices are live agents; statuses and the
    // example's conflict show within seconds.
    let started = Instant::now();
    loop {
        let report: serde_json::Value = rt.block_on(async {
            reqwest::Client::new()
                .get(format!("http://{addr}/api/v1/reports/devices/web-01"))
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let live = report["counts"]["recorded"].as_u64().unwrap_or(0) > 0
            && report["counts"]["conflict"].as_u64().unwrap_or(0) >= 1;
        if live {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no live statuses from the simulated devices: {report}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // SIGTERM by the child's own PID.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the server did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&data).unwrap();
}
