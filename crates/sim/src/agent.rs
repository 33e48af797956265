//! One virtual agent: what `rampart-agent` does on the wire (enroll, check
//! in, verify the signed policy, report status, hold a long poll), with a
//! key and certificate of its own over mutual TLS.

use std::time::Duration;

use anyhow::{bail, Result};
use rampart_proto::device::{
    CheckIn, CheckInResponse, EnrollResponse, Facts, OnboardingPackage, PolicyPayload, Survey,
};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Agent {
    pub http: reqwest::Client,
    /// The device channel's base URL.
    pub url: String,
    pub policy_key: String,
    /// The digest of the policy applied and reported.
    pub digest: String,
    /// A status report not acknowledged yet, with the digest it is about:
    /// sent again until it is, as the agent's outbox does.
    unsent: Option<(Value, String)>,
}

pub fn facts() -> Facts {
    Facts {
        hostname: "sim".into(),
        os: "linux".into(),
        os_version: "22.04".into(),
        device_type: "server".into(),
        agent_version: "sim".into(),
        tags: vec!["web".into()],
        ..Facts::default()
    }
}

/// Enrolls a new device named `name` with the package's token at the
/// device channel `url` (the package's own, or a load balancer's).
pub async fn enroll(package: &OnboardingPackage, name: String, url: &str) -> Result<Agent> {
    let key = rampart_pki::new_device_key()?;
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(rampart_pki::client_config(&package.server_ca_pem, None)?)
        .build()?;
    let body = json!({"token": package.token, "device_name": name, "csr_pem": rampart_pki::csr_pem(&key, &name)?, "facts": facts(), "survey": Survey::default()});
    let resp = anonymous
        .post(format!("{url}/device/v1/enroll"))
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("enroll {name}: {}", resp.text().await?);
    }
    let e: EnrollResponse = resp.json().await?;
    let tls = rampart_pki::client_config(
        &package.server_ca_pem,
        Some((&e.certificate_pem, &key.key_pem)),
    )?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(2)
        // Longer than a long poll (120 s): a connection that died without
        // a word is given up.
        .timeout(Duration::from_secs(150))
        .build()?;
    Ok(Agent {
        http,
        url: url.to_string(),
        policy_key: e.policy_key,
        digest: String::new(),
        unsent: None,
    })
}

impl Agent {
    /// The check-in this agent sends: the digest and key it holds.
    pub fn checkin(&self) -> CheckIn {
        CheckIn {
            digest: Some(self.digest.clone()),
            version: None,
            facts: facts(),
            survey: Survey::default(),
            policy_key: Some(self.policy_key.clone()),
        }
    }

    /// One check-in with the digest held, as it is answered.
    pub async fn check_in(&self) -> Result<CheckInResponse> {
        Ok(self
            .http
            .post(format!("{}/device/v1/checkin", self.url))
            .json(&self.checkin())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Sends a report not acknowledged yet (if any) and then checks in;
    /// verifies and "applies" a new policy and reports on it. Returns
    /// whether a policy was applied and reported. On an error the report
    /// stays to be sent again.
    pub async fn sync(&mut self) -> Result<bool> {
        if self.unsent.is_some() {
            self.send_report().await?;
            return Ok(true);
        }
        let r = self.check_in().await?;
        let Some(signed) = r.policy else {
            return Ok(false);
        };
        rampart_pki::verify(
            &self.policy_key,
            signed.payload.as_bytes(),
            &signed.signature,
        )?;
        let payload: PolicyPayload = serde_json::from_str(&signed.payload)?;
        let statuses: Vec<Value> = payload.resolution["settings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| json!({"setting": s["setting"], "key": null, "status": "succeeded", "observed": s["value"], "error_code": null, "error_message": null}))
            .collect();
        let report = json!({"report_id": format!("{}-{}", payload.device_id, payload.version), "digest": payload.digest, "version": payload.version, "statuses": statuses});
        self.unsent = Some((report, payload.digest));
        self.send_report().await?;
        Ok(true)
    }

    /// Sends the unacknowledged report; the digest it is about becomes the
    /// one held once the server acknowledges it.
    async fn send_report(&mut self) -> Result<()> {
        let Some((report, digest)) = &self.unsent else {
            return Ok(());
        };
        self.http
            .post(format!("{}/device/v1/status", self.url))
            .json(report)
            .send()
            .await?
            .error_for_status()?;
        self.digest = digest.clone();
        self.unsent = None;
        Ok(())
    }

    /// Holds one long poll; true when the server says to sync.
    pub async fn wait(&self) -> Result<bool> {
        let w: Value = self
            .http
            .get(format!(
                "{}/device/v1/wait?digest={}&timeout=120",
                self.url, self.digest
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(w["event"] == "sync")
    }

    /// Long-polls until the server says sync, then syncs.
    pub async fn wait_and_sync(&mut self) -> Result<()> {
        loop {
            if self.wait().await? && self.sync().await? {
                return Ok(());
            }
        }
    }
}
