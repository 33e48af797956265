//! The device channel (`/device/v1`, mutual TLS): what `rampart-agent` and
//! `rampart-server` say to each other, and the onboarding package.
//!
//! Signed policies travel as the exact JSON text that was signed
//! (`SignedPolicy::payload`), so the agent verifies the bytes it received and
//! only then parses them: no re-serialization can change what was signed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The file an administrator downloads to onboard devices
/// (`rampart onboarding create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingPackage {
    /// Format version; 1.
    pub version: u32,
    pub tenant_id: String,
    pub tenant_name: String,
    /// Base URL of the device channel, e.g. `https://rampart.example:8443`.
    pub server_url: String,
    /// The CA that signed the device channel's TLS certificate, PEM.
    pub server_ca_pem: String,
    /// Hex SHA-256 of that CA certificate's DER: the pin the agent checks.
    pub server_ca_sha256: String,
    /// The onboarding token (secret).
    pub token: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// Facts about the device, detected on it (or overridden for tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    pub hostname: String,
    /// `linux`, `windows`, `macos`.
    pub os: String,
    pub os_version: String,
    /// `workstation` or `server`.
    #[serde(rename = "type")]
    pub device_type: String,
    pub agent_version: String,
    pub tags: Vec<String>,
}

/// What the agent's survey found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    /// The other management authority in charge, if one was found.
    pub managed_by: Option<String>,
    /// What gave it away (marker paths, agent binaries).
    pub evidence: Vec<String>,
}

/// Where a device stands with the tenant, with a stable code when it is not
/// managed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentState {
    /// `enrolled` (Rampart manages it), `not_managed` (trust exists but the
    /// device is out of scope or managed by another authority).
    pub status: String,
    /// Stable code when not managed: `platform_not_enabled`,
    /// `pilot_tag_missing`, `os_unsupported`, `managed_by_other_authority`.
    pub code: Option<String>,
    pub reason: Option<String>,
    /// `rampart`, or the other authority.
    pub managed_by: String,
    /// `Joined`, `Managed`.
    pub labels: Vec<String>,
}

impl EnrollmentState {
    pub fn is_managed(&self) -> bool {
        self.status == "enrolled"
    }
}

/// `POST /device/v1/enroll`: the only call without a client certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub device_name: String,
    /// A PKCS#10 request for the key the agent generated; the key never
    /// leaves the device.
    pub csr_pem: String,
    pub facts: Facts,
    pub survey: Survey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub device_id: String,
    pub device_name: String,
    /// The device certificate, PEM, issued by the tenant CA.
    pub certificate_pem: String,
    /// The tenant CA certificate, PEM.
    pub tenant_ca_pem: String,
    /// Seconds since the epoch.
    pub not_after: i64,
    /// The tenant's Ed25519 policy-signing public key, hex.
    pub policy_key: String,
    pub enrollment: EnrollmentState,
}

/// `POST /device/v1/checkin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// Digest of the policy the agent holds.
    pub digest: Option<String>,
    /// Version of the policy the agent holds.
    pub version: Option<u64>,
    pub facts: Facts,
    pub survey: Survey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckInResponse {
    pub enrollment: EnrollmentState,
    /// Present only when the agent's digest is not current: an unchanged
    /// policy costs a few bytes.
    pub policy: Option<SignedPolicy>,
}

/// A policy signed with the tenant's Ed25519 key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPolicy {
    /// The JSON text of a [`PolicyPayload`], exactly as signed.
    pub payload: String,
    /// Hex Ed25519 signature over `payload`'s bytes.
    pub signature: String,
}

/// What a signed policy says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPayload {
    pub tenant_id: String,
    pub device_id: String,
    /// Monotonic per device: the agent refuses anything older than it holds.
    pub version: u64,
    pub digest: String,
    pub issued_at: i64,
    /// `rampart_core::resolve::Resolution` as JSON: settings with
    /// provenance, conflicts, not-applicable entries.
    pub resolution: Value,
}

/// One setting's (or one key's) state on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingStatus {
    pub setting: String,
    pub key: Option<String>,
    /// `succeeded`, `error`, `conflict`, `not_applicable`, `pending`.
    pub status: String,
    /// The value read back from the component.
    pub observed: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// `POST /device/v1/status`: one report from the agent's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// Unique per report, so a resent report is stored once.
    pub report_id: String,
    pub digest: String,
    pub version: u64,
    pub statuses: Vec<SettingStatus>,
    /// Hand-made changes the agent found and undid since the last report.
    #[serde(default)]
    pub tamper_events: Vec<TamperEvent>,
}

/// A change to something Rampart manages, made behind its back and undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TamperEvent {
    pub setting: String,
    pub key: Option<String>,
    /// Which provider (component) it was found in.
    pub provider: String,
    /// What Rampart had set.
    pub expected: Option<Value>,
    /// What the read-back found instead.
    pub found: Option<Value>,
    /// When it was found, seconds since the epoch (the device's clock).
    pub at: i64,
    /// Whether the provider restored the expected value.
    pub restored: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAck {
    pub report_id: String,
    /// Rows that changed (the server stores changes only).
    pub changed: usize,
}

/// `POST /device/v1/renew`: a new certificate for a new key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub certificate_pem: String,
    pub not_after: i64,
}

/// `GET /device/v1/wait?digest=…`: the push channel (long poll).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitResponse {
    /// `sync` (check in now) or `timeout` (nothing happened; wait again).
    pub event: String,
}

/// Error codes of the device channel that the agent acts on.
pub mod codes {
    /// The device was deleted or offboarded: stop managing, clean up.
    pub const DEVICE_REVOKED: &str = "device_revoked";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    pub const TOKEN_EXHAUSTED: &str = "token_exhausted";
    pub const TOKEN_UNKNOWN: &str = "token_unknown";
    pub const PLATFORM_NOT_ENABLED: &str = "platform_not_enabled";
    pub const PILOT_TAG_MISSING: &str = "pilot_tag_missing";
    pub const OS_UNSUPPORTED: &str = "os_unsupported";
    pub const MANAGED_BY_OTHER: &str = "managed_by_other_authority";
}
