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
    /// The edition (`Professional`, `ServerDatacenter`…), where the OS has
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    /// Stable codes of configurations the agent found that matter to
    /// management (`conditions` in `docs/device-channel.md`):
    /// `domain_controller`, `server_core`, `constrained_language`,
    /// `configmgr_client`, `mdm_enrolled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

/// The stable codes of [`Facts::conditions`].
pub mod conditions {
    /// Windows: ProductType `LanmanNt`. Managed only when the tenant allows it.
    pub const DOMAIN_CONTROLLER: &str = "domain_controller";
    /// Windows: InstallationType `Server Core`. Managed: the registry
    /// provider needs no desktop and no PowerShell.
    pub const SERVER_CORE: &str = "server_core";
    /// Windows: PowerShell's `__PSLockdownPolicy` asks for Constrained
    /// Language mode. Managed: the registry provider needs no PowerShell.
    pub const CONSTRAINED_LANGUAGE: &str = "constrained_language";
    /// Windows: the Configuration Manager client is installed.
    pub const CONFIGMGR_CLIENT: &str = "configmgr_client";
    /// Windows: an MDM enrollment is present.
    pub const MDM_ENROLLED: &str = "mdm_enrolled";
    /// Windows: a non-persistent (pooled) virtual desktop: the User
    /// Experience Virtualization "VDI Configuration" policy, which its ADMX
    /// says to enable only on such machines, is on
    /// (`HKLM\Software\Policies\Microsoft\UEV\Agent\Configuration\WindowsSettings`,
    /// `VdiState` = 1). Managed; reported because a pooled desktop may be
    /// reset to its image at sign-out, and then onboards again.
    pub const NON_PERSISTENT_VDI: &str = "non_persistent_vdi";
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

/// `POST /device/v1/reattest`: a device proves it is itself with its
/// enrolled key and gets a new certificate, without an onboarding token and
/// without a valid client certificate (its certificate expired, the server
/// forgot it after a restore, or the certificate file broke).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReattestRequest {
    pub tenant_id: String,
    pub device_id: String,
    pub device_name: String,
    /// The device's last certificate, PEM, when it still has one (expired
    /// or not): it proves which key the tenant CA certified for the device.
    pub certificate_pem: Option<String>,
    /// The enrolled key's public half, hex SubjectPublicKeyInfo DER.
    pub public_key: String,
    /// Hex signature with the enrolled key over
    /// `rampart_pki::attestation_message(tenant_id, device_id, csr_pem)`.
    pub signature: String,
    /// A request for the device's next key.
    pub csr_pem: String,
    pub facts: Facts,
    pub survey: Survey,
}

/// A notice signed with the tenant's policy key telling one device to stop
/// managing: the only instruction on which an agent removes what Rampart
/// set. The server issues it when an administrator deleted the device (or
/// the device offboarded itself) and the device's certificate comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffboardNotice {
    /// The JSON text of a [`NoticePayload`], exactly as signed.
    pub payload: String,
    /// Hex Ed25519 signature over `payload`'s bytes.
    pub signature: String,
}

/// What an offboarding notice says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticePayload {
    /// Always `offboard`: a signed policy can never pass for a notice.
    pub kind: String,
    pub tenant_id: String,
    pub device_id: String,
    pub issued_at: i64,
    pub reason: String,
}

/// The value of [`NoticePayload::kind`].
pub const NOTICE_OFFBOARD: &str = "offboard";

/// The error body of `device_offboarded` (410): the usual error and the
/// signed notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffboardedBody {
    pub error: crate::ErrorDetail,
    pub notice: OffboardNotice,
    /// The tenant's policy-key announcements, oldest first, so a device
    /// holding an older key can verify the notice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_announcements: Vec<KeyAnnouncement>,
}

/// A new policy key announced with the key it replaces: the tenant rotated
/// its policy-signing key, and an agent holding `previous_key` accepts
/// `key` because the announcement verifies with `previous_key`. A chain of
/// them takes an agent from any earlier key to the current one, so no
/// device has to be onboarded again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAnnouncement {
    /// The JSON text of a [`KeyAnnouncementPayload`], exactly as signed.
    pub payload: String,
    /// Hex Ed25519 signature over `payload`'s bytes with `previous_key`.
    pub signature: String,
}

/// What a key announcement says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAnnouncementPayload {
    /// Always `policy_key`: neither a policy nor a notice can pass for one.
    pub kind: String,
    pub tenant_id: String,
    /// The key this one replaces, hex; the announcement is signed with it.
    pub previous_key: String,
    /// The new Ed25519 public key, hex.
    pub key: String,
    /// 1 for the first rotation, then counting up.
    pub generation: u64,
    pub issued_at: i64,
}

/// The value of [`KeyAnnouncementPayload::kind`].
pub const ANNOUNCE_POLICY_KEY: &str = "policy_key";

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
    /// The policy key the agent verifies with, hex: when it is not the
    /// tenant's current one, a policy comes with the announcements that
    /// lead to the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckInResponse {
    pub enrollment: EnrollmentState,
    /// Present only when the agent's digest is not current: an unchanged
    /// policy costs a few bytes.
    pub policy: Option<SignedPolicy>,
    /// With a policy, when the agent's key is not the current one: every
    /// announcement, oldest first (the agent follows the chain from its key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_announcements: Vec<KeyAnnouncement>,
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
    /// One of [`SETTING_STATUSES`].
    pub status: String,
    /// The value read back from the component.
    pub observed: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// One of [`BACKENDS`]: what on the device applied the setting. Absent
    /// for a setting no backend handled (not applicable, conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// The states a setting can be reported in. `recorded` is the `file`
/// backend's result: the value was written down and read back, but nothing
/// on the device enforces it, so it is never counted as `succeeded`.
pub const SETTING_STATUSES: &[&str] = &[
    "succeeded",
    "recorded",
    "error",
    "conflict",
    "not_applicable",
    "pending",
];

/// The backends an agent can name as having applied a setting.
/// They are the agent's provider names; `mdatp` covers Defender's managed
/// configuration on Linux and its managed preferences on macOS.
pub const BACKENDS: &[&str] = &["nftables", "clamav", "mdatp", "registry", "file"];

/// `POST /device/v1/status`: one report from the agent's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// Unique per report, so a resent report is stored once.
    pub report_id: String,
    pub digest: String,
    pub version: u64,
    pub statuses: Vec<SettingStatus>,
    /// Hand-made changes the agent found and undid since the last report;
    /// at most [`MAX_TAMPER_EVENTS_PER_REPORT`].
    #[serde(default)]
    pub tamper_events: Vec<TamperEvent>,
    /// What the agent's outbox had to fold or leave out to stay bounded
    /// since the last report the server acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<ReportLoss>,
}

/// The most tamper events one status report may carry; the server refuses
/// more (422 `too_many_tamper_events`), and the agent counts what it had
/// to leave out in [`ReportLoss`].
pub const MAX_TAMPER_EVENTS_PER_REPORT: usize = 100;
/// The most status rows one report may carry (422 `too_many_statuses`).
pub const MAX_STATUSES_PER_REPORT: usize = 5_000;

/// What the outbox folded to stay within its bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportLoss {
    /// Unsent reports folded into this one (the newest status per setting
    /// won).
    pub reports_coalesced: u64,
    /// Tamper events left out (the first ones found are kept).
    pub tamper_events_dropped: u64,
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
    /// Older servers' answer for a deleted or superseded device. Agents no
    /// longer act on it beyond re-attesting: only a signed notice removes
    /// settings.
    pub const DEVICE_REVOKED: &str = "device_revoked";
    /// 410 with an [`super::OffboardedBody`]: the device was deleted; the
    /// signed notice tells the agent to stop managing.
    pub const DEVICE_OFFBOARDED: &str = "device_offboarded";
    /// 401: the server has no record of this device id (a database restored
    /// from before it enrolled): re-attest.
    pub const DEVICE_UNKNOWN: &str = "device_unknown";
    /// 401: the certificate is newer than the one on record (a restored
    /// database): re-attest.
    pub const CERTIFICATE_UNKNOWN: &str = "certificate_unknown";
    /// 401: a newer certificate was issued to this device; this one no
    /// longer counts.
    pub const CERTIFICATE_SUPERSEDED: &str = "certificate_superseded";
    /// 401: the re-attestation's signature or certificate does not prove
    /// the enrolled key.
    pub const ATTESTATION_INVALID: &str = "attestation_invalid";
    /// 409: a device of this name exists; enrolling under it needs its
    /// enrolled key (re-attestation) or an administrator's approval.
    pub const DEVICE_NAME_TAKEN: &str = "device_name_taken";
    /// 422: a status report with more tamper events than allowed.
    pub const TOO_MANY_TAMPER_EVENTS: &str = "too_many_tamper_events";
    /// 422: a status report with more rows than allowed.
    pub const TOO_MANY_STATUSES: &str = "too_many_statuses";
    /// 422: a status report about a setting the device was not issued.
    pub const SETTING_NOT_ISSUED: &str = "setting_not_issued";
    /// 429: the device calls too often; `Retry-After` says when to return.
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    pub const TOKEN_EXHAUSTED: &str = "token_exhausted";
    pub const TOKEN_UNKNOWN: &str = "token_unknown";
    pub const PLATFORM_NOT_ENABLED: &str = "platform_not_enabled";
    pub const PILOT_TAG_MISSING: &str = "pilot_tag_missing";
    pub const OS_UNSUPPORTED: &str = "os_unsupported";
    /// The device is a domain controller and the tenant does not manage
    /// domain controllers (`manage_domain_controllers`).
    pub const DOMAIN_CONTROLLER_NOT_ALLOWED: &str = "domain_controller_not_allowed";
    pub const MANAGED_BY_OTHER: &str = "managed_by_other_authority";
}
