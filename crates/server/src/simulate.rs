//! `--simulate`: real agents in this process, one for each `kind: Device`
//! document of `--load`, so that a newcomer's console shows live statuses
//! and conflicts at once.
//!
//! Each simulated device is a genuine `rampart-agent` (the library, not a
//! mock): its own key and certificate, mutual TLS to this server's device
//! channel, signed policies verified, the `file` provider recording into its
//! own state directory under `DATA_DIR/simulated/` (reported `recorded`, not
//! enforced: nothing on this machine acts on them), statuses through the
//! outbox.

use std::path::Path;

use anyhow::{Context, Result};
use rampart_agent::config::AgentConfig;
use rampart_agent::facts::FactsOverride;
use rampart_agent::onboard::OnboardOptions;
use rampart_agent::state::StateDir;
use rampart_core::model::Device;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{hash_token, new_token};
use crate::state::AppState;

/// The agents' configuration: the `file` provider, no survey of this
/// machine (it is not theirs), the default push channel.
const AGENT_CONFIG: &str = "check_in_interval_secs = 5400\n[survey]\nbuiltin = false\n";

/// Onboards and runs one agent per device; returns their tasks. They stop
/// when `shutdown` turns true.
pub async fn start(
    state: &AppState,
    tenant_id: &str,
    devices: &[Device],
    data_dir: &Path,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let package_path = data_dir.join("simulated").join("package.json");
    std::fs::create_dir_all(data_dir.join("simulated"))?;
    let package = package(state, tenant_id, devices.len()).await?;
    std::fs::write(&package_path, serde_json::to_vec(&package)?)
        .context("simulated devices' package")?;
    let mut tasks = Vec::new();
    for device in devices {
        let root = data_dir.join("simulated").join(&device.name);
        let state_dir = StateDir::new(&root);
        std::fs::create_dir_all(&root)?;
        let config =
            AgentConfig::parse(AGENT_CONFIG, &root).context("simulated agent configuration")?;
        let facts = FactsOverride {
            hostname: Some(device.name.clone()),
            os: Some(device.os.to_string()),
            os_version: Some(device.os_version.clone()),
            device_type: Some(device.device_type.to_string()),
            tags: Some(device.tags.clone()),
        };
        let options = OnboardOptions {
            package: package_path.clone(),
            device_name: Some(device.name.clone()),
            facts: Some(facts.clone()),
        };
        let mut stop = shutdown.clone();
        let name = device.name.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = rampart_agent::onboard::onboard(&state_dir, &config, &options).await {
                tracing::warn!(device = %name, error = %e, "a simulated device could not onboard");
                return;
            }
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = rampart_agent::run::run(state_dir, config, Some(facts), stopped).await {
                tracing::warn!(device = %name, error = %e, "a simulated device stopped");
            }
        }));
    }
    tracing::info!(devices = devices.len(), "simulated devices are onboarding");
    Ok(tasks)
}

/// An onboarding package for the simulated devices, valid for an hour.
async fn package(
    state: &AppState,
    tenant_id: &str,
    uses: usize,
) -> Result<rampart_proto::device::OnboardingPackage> {
    let now = state.clock.now();
    let token = new_token();
    let record = rampart_store::OnboardingTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_token(&token),
        created_at: now,
        created_by: "rampart-server --simulate".into(),
        expires_at: now + 3600,
        max_uses: Some(u32::try_from(uses).unwrap_or(u32::MAX)),
        uses: 0,
    };
    state
        .store
        .write(
            tenant_id,
            now,
            vec![rampart_store::Write::PutOnboardingToken(record)],
            Vec::new(),
        )
        .await?;
    let tenant_name = state
        .tenant_name(tenant_id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(rampart_proto::device::OnboardingPackage {
        version: 1,
        tenant_id: tenant_id.to_string(),
        tenant_name,
        server_url: state.device.url.clone(),
        server_ca_pem: state.trust.server_ca.cert_pem.clone(),
        server_ca_sha256: state.trust.server_ca_sha256()?,
        token,
        expires_at: now + 3600,
    })
}
