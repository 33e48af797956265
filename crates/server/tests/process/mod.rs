//! A real `rampart-server` process for the tests that need one of their
//! own (a signal, an open-files limit, its log output), and a device that
//! talks to its device channel. Shared by several test files, so not every
//! file uses every part.
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_proto::device::{CheckIn, EnrollResponse, Facts, OnboardingPackage, Survey};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A `rampart-server` process, stopped by its PID when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub admin: String,
    pub device: String,
    pub token: String,
    pub log: PathBuf,
    /// `http://ADDR` of `/metrics`, when `--metrics-listen` was given.
    pub metrics: Option<String>,
}

impl ServerProcess {
    /// Starts the server on `data`; with `nofile`, under that open-files
    /// limit (soft and hard), set by `prlimit`.
    pub fn spawn(data: &Path, nofile: Option<u64>, extra: &[&str]) -> ServerProcess {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg(env!("CARGO_BIN_EXE_rampart-server"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_rampart-server")),
        };
        let mut child = cmd
            .args(["--data-dir", data.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let (mut admin, mut device, mut metrics) = (String::new(), String::new(), None);
        for _ in 0..3 {
            line.clear();
            out.read_line(&mut line).unwrap();
            if let Some(a) = line.trim().strip_prefix("rampart-server is listening on ") {
                admin = a.to_string();
            }
            if let Some(d) = line.trim().strip_prefix("Device channel (mutual TLS) on ") {
                device = d.to_string();
            }
            if let Some(m) = line.trim().strip_prefix("Metrics on ") {
                metrics = Some(m.trim_end_matches("/metrics").to_string());
            }
        }
        assert!(
            !admin.is_empty() && !device.is_empty(),
            "server output: {line}"
        );
        // The rest of the banner is not needed; keep the pipe drained.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let token = std::fs::read_to_string(data.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        ServerProcess {
            child,
            admin,
            device,
            token,
            log,
            metrics,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.admin))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn package(&self) -> OnboardingPackage {
        let (s, p) = self
            .admin(reqwest::Method::POST, "/onboarding", Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        serde_json::from_value(p).unwrap()
    }

    /// SIGKILL by PID: no shutdown, no flush.
    pub fn kill_9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn temp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rampart-{tag}-{}", uuid::Uuid::new_v4().simple()))
}

pub fn facts() -> Facts {
    Facts {
        hostname: "h".into(),
        os: "linux".into(),
        os_version: "12".into(),
        device_type: "server".into(),
        agent_version: "test".into(),
        tags: Vec::new(),
        ..Facts::default()
    }
}

pub fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    rampart_pki::install_crypto_provider();
    let tls = rampart_pki::client_config(ca, identity).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A device: its key, and once enrolled its certificate.
pub struct Device {
    pub name: String,
    pub key: rampart_pki::DeviceKey,
    pub enrolled: Option<EnrollResponse>,
}

impl Device {
    pub fn new(name: &str) -> Device {
        Device {
            name: name.into(),
            key: rampart_pki::new_device_key().unwrap(),
            enrolled: None,
        }
    }

    pub async fn enroll(&mut self, url: &str, p: &OnboardingPackage) -> Result<StatusCode, String> {
        let body = json!({"token": p.token, "device_name": self.name, "csr_pem": rampart_pki::csr_pem(&self.key, &self.name).unwrap(), "facts": facts(), "survey": Survey::default()});
        let r = client(&p.server_ca_pem, None)
            .post(format!("{url}/device/v1/enroll"))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let s = r.status();
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if s == StatusCode::OK {
            self.enrolled = Some(serde_json::from_value(v).unwrap());
        }
        Ok(s)
    }

    /// Sends a status report for the policy of a check-in's answer: every
    /// setting of it with `status`.
    pub async fn report(&self, url: &str, ca: &str, answer: &Value, status: &str) -> StatusCode {
        let e = self.enrolled.as_ref().unwrap();
        let payload: Value =
            serde_json::from_str(answer["policy"]["payload"].as_str().unwrap()).unwrap();
        let settings = payload["resolution"]["settings"].as_array().unwrap();
        let statuses: Vec<Value> = settings
            .iter()
            .map(|s| json!({"setting": s["setting"], "key": null, "status": status, "observed": null, "error_code": null, "error_message": null}))
            .collect();
        let body = json!({"report_id": uuid::Uuid::new_v4().to_string(), "digest": payload["digest"], "version": payload["version"], "statuses": statuses});
        client(ca, Some((&e.certificate_pem, &self.key.key_pem)))
            .post(format!("{url}/device/v1/status"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn check_in(&self, url: &str, ca: &str) -> Result<(StatusCode, Value), String> {
        let e = self.enrolled.as_ref().unwrap();
        let r = client(ca, Some((&e.certificate_pem, &self.key.key_pem)))
            .post(format!("{url}/device/v1/checkin"))
            .json(&CheckIn {
                digest: None,
                version: None,
                facts: facts(),
                survey: Survey::default(),
                policy_key: None,
            })
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let s = r.status();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }
}
