//! `rampart-agent offboard`: the device leaves its tenant. The server is
//! told (it deletes the device), then the agent removes what Rampart set —
//! per each setting's removal behaviour — and forgets its identity.
//! [`stop_managing`] is the same clean-up the run loop does when the tenant
//! revokes the device.

use std::time::{Duration, Instant};

use rampart_core::catalog::Catalog;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, ChannelError};
use crate::clock::now;
use crate::config::AgentConfig;
use crate::enforce;
use crate::providers::{self, Provider};
use crate::state::{
    read_json, remove_if_exists, write_json, EnrollmentRecord, LastError, LocalState, Removed,
    StateDir,
};
use crate::{Error, Result};

/// What offboarding did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offboarded {
    pub tenant_name: String,
    pub device_name: String,
    /// The server was told; false with `--force` when it could not be.
    pub server_told: bool,
    pub removed: Vec<Removed>,
}

impl std::fmt::Display for Offboarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "offboarded device {} from tenant {}",
            self.device_name, self.tenant_name
        )?;
        if !self.server_told {
            writeln!(
                f,
                "the server could not be told: delete the device there too"
            )?;
        }
        for r in &self.removed {
            writeln!(f, "  {} ({}): {}", r.setting, r.provider, r.result)?;
        }
        Ok(())
    }
}

/// Removes every setting Rampart set, through the providers, and the policy
/// state. Settings whose revert failed are named in the log: nothing will
/// retry them once the trust is gone.
pub fn stop_managing(
    state: &StateDir,
    providers: &mut [Box<dyn Provider>],
    catalog: &Catalog,
) -> Result<Vec<Removed>> {
    let applied = state.load_applied()?;
    let outcome = enforce::remove_all(providers, &applied, catalog);
    for (provider, settings) in &outcome.ledger {
        tracing::error!(
            event = "removal_failed",
            provider = %provider,
            settings = ?settings,
            "could not restore these settings' defaults; they stay as Rampart set them"
        );
    }
    state.forget_policy()?;
    Ok(outcome.removed)
}

/// `<state>/offboard.request`: what `rampart-agent offboard` asks of a
/// running agent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OffboardRequest {
    pub force: bool,
}

/// `<state>/offboard.result`: the running agent's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OffboardAnswer {
    pub offboarded: Option<Offboarded>,
    pub error: Option<String>,
}

/// How often `rampart-agent offboard` looks for the running agent's answer.
const ANSWER_POLL: Duration = Duration::from_millis(200);

/// `rampart-agent offboard`. When `run` is running (it holds `run.lock`),
/// it is asked to offboard — it holds the channel and the providers, and
/// stops at once instead of finding out at its next check-in that the
/// device is gone — and its answer is awaited up to `wait`. Otherwise this
/// process offboards, holding the lock so that no `run` starts meanwhile.
pub async fn offboard_device(
    state: &StateDir,
    config: &AgentConfig,
    force: bool,
    wait: Duration,
) -> Result<Offboarded> {
    if let Some(_lock) = state.try_lock_run()? {
        return offboard(state, config, force).await;
    }
    remove_if_exists(&state.offboard_result())?;
    write_json(&state.offboard_request(), &OffboardRequest { force })?;
    let deadline = Instant::now() + wait;
    loop {
        if let Some(answer) = read_json::<OffboardAnswer>(&state.offboard_result())? {
            remove_if_exists(&state.offboard_result())?;
            return match (answer.offboarded, answer.error) {
                (Some(done), _) => Ok(done),
                (None, e) => Err(Error::Offboard(format!(
                    "the running agent could not offboard: {}",
                    e.unwrap_or_else(|| "no reason given".into())
                ))),
            };
        }
        if Instant::now() >= deadline {
            // A request left behind must not offboard the device later.
            remove_if_exists(&state.offboard_request())?;
            return Err(Error::Offboard(format!(
                "the running agent did not answer within {} s; nothing was changed. Stop it \
                 (e.g. `systemctl stop rampart-agent`) and offboard again",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(ANSWER_POLL).await;
    }
}

/// Tells the server, then cleans up. With `force`, cleans up even when the
/// server cannot be reached. The caller holds `run.lock`.
pub async fn offboard(state: &StateDir, config: &AgentConfig, force: bool) -> Result<Offboarded> {
    let identity = state
        .load_identity()?
        .ok_or_else(|| Error::NotOnboarded(state.root().to_path_buf()))?;
    let record = state.load_enrollment()?;
    let already_revoked = record
        .as_ref()
        .is_some_and(|r| r.state == LocalState::Revoked);

    let mut server_told = already_revoked;
    if !already_revoked {
        state.settle_renewal()?;
        let told = match state.load_credentials() {
            Ok(c) => match Channel::mutual(
                &identity.server_url,
                &c.server_ca_pem,
                &c.cert_pem,
                &c.key_pem,
            ) {
                Ok(channel) => channel.offboard().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(ChannelError::Tls(e.to_string())),
        };
        match told {
            // Deleted already: the end state is the same.
            Ok(()) | Err(ChannelError::Offboarded { .. }) => server_told = true,
            Err(e) if force => {
                tracing::warn!(event = "offboard_unreached", error = %e, "the server was not told; cleaning up anyway (--force)");
            }
            Err(e) => return Err(e.into()),
        }
    }

    let catalog = Catalog::builtin();
    let mut providers = providers::build(&config.providers, catalog, &identity.server_url);
    let removed = stop_managing(state, &mut providers, catalog)?;
    state.forget_identity()?;
    state.save_enrollment(&EnrollmentRecord {
        state: LocalState::NotOnboarded,
        enrollment: None,
        survey: record.map(|r| r.survey).unwrap_or_default(),
        last_check_in: None,
        last_error: Some(LastError {
            code: "offboarded".into(),
            message: format!(
                "offboarded from tenant {} (device {})",
                identity.tenant_name, identity.device_name
            ),
            at: now(),
        }),
    })?;
    tracing::info!(event = "offboarded", device_id = %identity.device_id, "offboarded");
    Ok(Offboarded {
        tenant_name: identity.tenant_name,
        device_name: identity.device_name,
        server_told,
        removed,
    })
}
