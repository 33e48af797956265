//! `rampart-agent onboard`: establish the trust with a tenant from an
//! onboarding package (DESIGN.md §5, "Trust").
//!
//! The package's server CA must match its pin. An existing valid identity
//! for the same tenant is reused — onboarding again never makes a second
//! device — and one for another tenant is refused. Otherwise the agent
//! surveys the device, makes a key (it never leaves the device), sends a CSR
//! with the token and its facts, and stores what the tenant CA issued. A
//! refusal (token expired, used up, unknown; another tenant) has a stable
//! code and a reason for people, and is recorded for `status`.

use std::path::{Path, PathBuf};

use rampart_proto::device::{codes, EnrollRequest, EnrollmentState, OnboardingPackage};

use crate::channel::{Channel, ChannelError};
use crate::clock::now;
use crate::config::AgentConfig;
use crate::facts::{self, FactsOverride};
use crate::state::{
    read_json, write_atomic, write_json, EnrollmentRecord, Identity, LastError, LocalState,
    StateDir,
};
use crate::survey::survey;
use crate::{Error, Result};

/// Why onboarding was refused.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("the onboarding package {} cannot be used: {message}", path.display())]
    Package { path: PathBuf, message: String },
    #[error("the onboarding package's server CA does not match its pin (server_ca_sha256): the package was altered or is corrupt")]
    PinMismatch,
    /// The server's own sentence is the reason (it says what to do).
    #[error("onboarding refused (token_expired): {0}")]
    TokenExpired(String),
    #[error("onboarding refused (token_exhausted): {0}")]
    TokenExhausted(String),
    #[error("onboarding refused (token_unknown): {0}")]
    TokenUnknown(String),
    #[error("this device is already onboarded to tenant {tenant_name:?} ({tenant_id}) as {device_name:?}; the package is for tenant {package_tenant:?}. Run `rampart-agent offboard` first to move it")]
    ForeignTenant {
        tenant_id: String,
        tenant_name: String,
        device_name: String,
        package_tenant: String,
    },
    #[error("onboarding refused ({code}): {message}")]
    Refused { code: String, message: String },
}

impl OnboardError {
    /// The stable code `status` shows.
    pub fn code(&self) -> &str {
        match self {
            OnboardError::Package { .. } => "package_invalid",
            OnboardError::PinMismatch => "package_pin_mismatch",
            OnboardError::TokenExpired(_) => codes::TOKEN_EXPIRED,
            OnboardError::TokenExhausted(_) => codes::TOKEN_EXHAUSTED,
            OnboardError::TokenUnknown(_) => codes::TOKEN_UNKNOWN,
            OnboardError::ForeignTenant { .. } => "foreign_tenant",
            OnboardError::Refused { code, .. } => code,
        }
    }
}

/// What `onboard` was given besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct OnboardOptions {
    pub package: PathBuf,
    pub device_name: Option<String>,
    pub facts: Option<FactsOverride>,
}

/// The outcome, for the command to print.
#[derive(Debug, Clone)]
pub struct Onboarded {
    /// An existing identity was reused: nothing was sent to the server.
    pub reused: bool,
    pub identity: Identity,
    pub enrollment: Option<EnrollmentState>,
}

impl std::fmt::Display for Onboarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = &self.identity;
        if self.reused {
            writeln!(
                f,
                "already onboarded to tenant {} as device {} ({}); reusing the existing identity",
                id.tenant_name, id.device_name, id.device_id
            )?;
        } else {
            writeln!(
                f,
                "onboarded to tenant {} as device {} ({})",
                id.tenant_name, id.device_name, id.device_id
            )?;
        }
        if let Some(e) = &self.enrollment {
            write!(f, "enrollment: {} (managed by {})", e.status, e.managed_by)?;
            if let Some(code) = &e.code {
                write!(f, ", code {code}")?;
            }
            if let Some(reason) = &e.reason {
                write!(f, ": {reason}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Reads an onboarding package and checks its pin.
pub fn read_package(path: &Path) -> Result<OnboardingPackage, OnboardError> {
    let bad = |message: String| OnboardError::Package {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let package: OnboardingPackage =
        serde_json::from_str(&text).map_err(|e| bad(format!("not an onboarding package: {e}")))?;
    if package.version != 1 {
        return Err(bad(format!(
            "format version {} is not supported by this agent (1)",
            package.version
        )));
    }
    let actual = rampart_pki::sha256_fingerprint(&package.server_ca_pem)
        .map_err(|e| bad(format!("server_ca_pem: {e}")))?;
    let pin: String = package
        .server_ca_sha256
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if actual != pin {
        return Err(OnboardError::PinMismatch);
    }
    Ok(package)
}

pub async fn onboard(
    state: &StateDir,
    config: &AgentConfig,
    options: &OnboardOptions,
) -> Result<Onboarded> {
    match onboard_inner(state, config, options).await {
        Err(Error::Onboard(e)) => {
            record_refusal(state, &e);
            Err(Error::Onboard(e))
        }
        other => other,
    }
}

async fn onboard_inner(
    state: &StateDir,
    config: &AgentConfig,
    options: &OnboardOptions,
) -> Result<Onboarded> {
    let package = read_package(&options.package)?;
    state.create()?;
    state.settle_renewal()?;

    let existing = state.load_identity()?;
    let record = state.load_enrollment()?;
    // A trust that ended (revoked, offboarded) is never reused.
    let ended = record
        .as_ref()
        .is_some_and(|r| r.state == LocalState::Revoked || r.state == LocalState::NotOnboarded);
    let has_credentials = state.key_pem().exists() && state.cert_pem().exists();
    if let Some(id) = existing.as_ref().filter(|_| !ended && has_credentials) {
        if id.tenant_id != package.tenant_id {
            return Err(OnboardError::ForeignTenant {
                tenant_id: id.tenant_id.clone(),
                tenant_name: id.tenant_name.clone(),
                device_name: id.device_name.clone(),
                package_tenant: package.tenant_name.clone(),
            }
            .into());
        }
        if now() < id.not_after {
            tracing::info!(event = "onboard_reused", device_id = %id.device_id, "a valid identity exists for this tenant; reusing it");
            if let Some(o) = &options.facts {
                write_json(&state.facts_json(), o)?;
            }
            return Ok(Onboarded {
                reused: true,
                identity: id.clone(),
                enrollment: record.and_then(|r| r.enrollment),
            });
        }
        tracing::info!(event = "onboard_renew_trust", device_id = %id.device_id, "the device certificate has expired; enrolling again");
    }

    let overrides = match &options.facts {
        Some(o) => Some(o.clone()),
        None => read_json::<FactsOverride>(&state.facts_json())?,
    };
    let facts = facts::gather(&config.tags, overrides.as_ref());
    let found = survey(&config.survey);
    let device_name = options
        .device_name
        .clone()
        .or_else(|| existing.as_ref().map(|i| i.device_name.clone()))
        .unwrap_or_else(|| facts.hostname.clone());
    if device_name.trim().is_empty() {
        return Err(OnboardError::Package {
            path: options.package.clone(),
            message: "the device name is empty; pass --device-name".into(),
        }
        .into());
    }

    let key = rampart_pki::new_device_key()?;
    let csr_pem = rampart_pki::csr_pem(&key, &device_name)?;
    let channel = Channel::anonymous(&package.server_url, &package.server_ca_pem)?;
    let request = EnrollRequest {
        token: package.token.clone(),
        device_name: device_name.clone(),
        csr_pem,
        facts,
        survey: found.clone(),
    };
    let response = channel.enroll(&request).await.map_err(refusal)?;

    let issued_at = now();
    let identity = Identity {
        tenant_id: package.tenant_id.clone(),
        tenant_name: package.tenant_name.clone(),
        device_id: response.device_id.clone(),
        device_name: response.device_name.clone(),
        server_url: package.server_url.clone(),
        policy_key: response.policy_key.clone(),
        retired_policy_keys: Vec::new(),
        issued_at,
        not_after: response.not_after,
    };
    if existing.as_ref().is_some_and(|old| {
        old.device_id != identity.device_id || old.tenant_id != identity.tenant_id
    }) || ended
    {
        // A new device: the old one's policy and reports mean nothing now.
        state.forget_policy()?;
    }
    state.save_key_and_cert(&key.key_pem, &response.certificate_pem)?;
    write_atomic(
        &state.tenant_ca_pem(),
        response.tenant_ca_pem.as_bytes(),
        false,
    )?;
    write_atomic(
        &state.server_ca_pem(),
        package.server_ca_pem.as_bytes(),
        false,
    )?;
    match &overrides {
        Some(o) => write_json(&state.facts_json(), o)?,
        None => crate::state::remove_if_exists(&state.facts_json())?,
    }
    state.save_enrollment(&EnrollmentRecord {
        state: LocalState::of(&response.enrollment),
        enrollment: Some(response.enrollment.clone()),
        survey: found,
        last_check_in: Some(issued_at),
        last_error: None,
    })?;
    // Written last: its presence is what "onboarded" means.
    state.save_identity(&identity)?;
    tracing::info!(
        event = "onboarded",
        tenant_id = %identity.tenant_id,
        device_id = %identity.device_id,
        status = %response.enrollment.status,
        "onboarded"
    );
    Ok(Onboarded {
        reused: false,
        identity,
        enrollment: Some(response.enrollment),
    })
}

/// A channel error of `enroll` → the refusal people read. The server's
/// message is kept; when it has none, the agent says what the code means.
fn refusal(e: ChannelError) -> Error {
    match e {
        ChannelError::Refused { code, message, .. } => {
            let or = |default: &str| {
                if message.trim().is_empty() {
                    default.to_string()
                } else {
                    message.clone()
                }
            };
            match code.as_str() {
                codes::TOKEN_EXPIRED => OnboardError::TokenExpired(or(
                    "the onboarding token has expired; download a new onboarding package",
                ))
                .into(),
                codes::TOKEN_EXHAUSTED => OnboardError::TokenExhausted(or(
                    "the onboarding token has been used as many times as it allows",
                ))
                .into(),
                codes::TOKEN_UNKNOWN => OnboardError::TokenUnknown(or(
                    "the onboarding token is unknown to this server (revoked, or from another installation)",
                ))
                .into(),
                _ => OnboardError::Refused {
                    code: code.clone(),
                    message: or("no reason given"),
                }
                .into(),
            }
        }
        other => other.into(),
    }
}

/// Keeps the refusal in `enrollment.json` so `status` can show it. Best
/// effort: the command reports the error either way.
fn record_refusal(state: &StateDir, e: &OnboardError) {
    let result = (|| -> Result<()> {
        state.create()?;
        let mut record = state.load_enrollment()?.unwrap_or(EnrollmentRecord {
            state: LocalState::NotOnboarded,
            enrollment: None,
            survey: Default::default(),
            last_check_in: None,
            last_error: None,
        });
        record.last_error = Some(LastError {
            code: e.code().to_string(),
            message: e.to_string(),
            at: now(),
        });
        state.save_enrollment(&record)
    })();
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not record the onboarding refusal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn package_file(dir: &TempDir, pin: Option<&str>) -> PathBuf {
        let ca = rampart_pki::new_ca("Test installation CA", 1).unwrap();
        let fingerprint = rampart_pki::sha256_fingerprint(&ca.cert_pem).unwrap();
        let package = OnboardingPackage {
            version: 1,
            tenant_id: "t1".into(),
            tenant_name: "Tenant One".into(),
            // Nothing listens here: the tests below never get that far.
            server_url: "https://127.0.0.1:9".into(),
            server_ca_pem: ca.cert_pem,
            server_ca_sha256: pin.map_or(fingerprint, str::to_string),
            token: "secret".into(),
            expires_at: 0,
        };
        let path = dir.path().join("package.json");
        std::fs::write(&path, serde_json::to_string(&package).unwrap()).unwrap();
        path
    }

    #[test]
    fn the_pin_is_checked() {
        let dir = TempDir::new();
        assert!(read_package(&package_file(&dir, None)).is_ok());
        let e = read_package(&package_file(&dir, Some(&"0".repeat(64)))).unwrap_err();
        assert_eq!(e.code(), "package_pin_mismatch");
    }

    #[test]
    fn a_pin_with_colons_and_capitals_is_the_same_pin() {
        let dir = TempDir::new();
        let path = package_file(&dir, None);
        let mut p: OnboardingPackage =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let fp = p.server_ca_sha256.to_ascii_uppercase();
        p.server_ca_sha256 = fp
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        std::fs::write(&path, serde_json::to_string(&p).unwrap()).unwrap();
        assert!(read_package(&path).is_ok());
    }

    #[test]
    fn a_file_that_is_not_a_package_is_refused() {
        let dir = TempDir::new();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{\"hello\": 1}").unwrap();
        assert_eq!(read_package(&path).unwrap_err().code(), "package_invalid");
    }

    #[tokio::test]
    async fn a_device_of_another_tenant_is_refused_and_the_refusal_recorded() {
        let dir = TempDir::new();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        state.save_key_and_cert("key", "cert").unwrap();
        state
            .save_identity(&Identity {
                tenant_id: "t2".into(),
                tenant_name: "Tenant Two".into(),
                device_id: "d1".into(),
                device_name: "web-1".into(),
                server_url: "https://x".into(),
                policy_key: "k".into(),
                retired_policy_keys: Vec::new(),
                issued_at: 0,
                not_after: i64::MAX,
            })
            .unwrap();
        let config = AgentConfig::parse("", state.root()).unwrap();
        let options = OnboardOptions {
            package: package_file(&dir, None),
            ..OnboardOptions::default()
        };
        let e = onboard(&state, &config, &options).await.unwrap_err();
        assert!(e.to_string().contains("Tenant Two"), "{e}");
        let record = state.load_enrollment().unwrap().unwrap();
        assert_eq!(record.last_error.unwrap().code, "foreign_tenant");
    }

    #[tokio::test]
    async fn a_valid_identity_of_the_same_tenant_is_reused() {
        let dir = TempDir::new();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        state.save_key_and_cert("key", "cert").unwrap();
        let identity = Identity {
            tenant_id: "t1".into(),
            tenant_name: "Tenant One".into(),
            device_id: "d1".into(),
            device_name: "web-1".into(),
            server_url: "https://127.0.0.1:9".into(),
            policy_key: "k".into(),
            retired_policy_keys: Vec::new(),
            issued_at: 0,
            not_after: i64::MAX,
        };
        state.save_identity(&identity).unwrap();
        let config = AgentConfig::parse("", state.root()).unwrap();
        let options = OnboardOptions {
            package: package_file(&dir, None),
            ..OnboardOptions::default()
        };
        let done = onboard(&state, &config, &options).await.unwrap();
        assert!(done.reused);
        assert_eq!(done.identity, identity);
        assert!(done.to_string().contains("reusing"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_not_a_refusal() {
        let dir = TempDir::new();
        let state = StateDir::new(dir.path().join("state"));
        let config = AgentConfig::parse("", state.root()).unwrap();
        let options = OnboardOptions {
            package: package_file(&dir, None),
            device_name: Some("web-1".into()),
            ..OnboardOptions::default()
        };
        let e = onboard(&state, &config, &options).await.unwrap_err();
        assert!(
            matches!(e, Error::Channel(ChannelError::Unreachable { .. })),
            "{e}"
        );
        assert!(state.load_identity().unwrap().is_none());
        assert!(!state.key_pem().exists());
    }
}
