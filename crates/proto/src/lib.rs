//! Wire types of the admin API (`/api/v1`): what `rampart-server` sends and
//! accepts, what the `rampart` CLI and the console read.
//!
//! These types are the API's public contract and the source of its OpenAPI
//! document. Request types refuse unknown fields, so a typo is an error rather
//! than a silently ignored setting. Policy and group bodies are plain JSON
//! objects on purpose: the core checks them against the catalog and reports
//! every field error at once, which serde alone cannot do.

pub mod device;
pub mod troubleshooting;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Every error response: a stable machine code, a sentence for people, and
/// for validation failures the field errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `validation_failed`, `not_found`, `forbidden`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldErrorView>,
}

/// One invalid field: its path in the request body and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldErrorView {
    pub path: String,
    pub message: String,
}

// ---- closed sets, for the document ------------------------------------------
//
// The wire carries these as strings (`rampart-core` owns the values); these
// types only give the OpenAPI document their enums.

/// An administrator's role.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    ReadOnly,
    SecurityManager,
    GlobalAdmin,
}

/// `api` (made with `POST /tokens`) or `session` (a console sign-in).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Api,
    Session,
}

/// A policy family.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FamilyName {
    Antivirus,
    AntivirusExclusions,
    Firewall,
    FirewallRules,
    Edr,
    Asr,
}

/// A platform (a device's operating system family).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformName {
    Linux,
    Windows,
    Macos,
}

/// Per-platform enforcement scope.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementScope {
    Off,
    All,
    Tagged,
}

/// What happens when two policies give one setting different values.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicyName {
    Report,
    MostSecureWins,
}

// ---- tenant ---------------------------------------------------------------

/// The tenant's settings (the seeds' "enforcement scope" and more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantSettingsView {
    /// Platform (`linux`, `windows`, `macos`) → `off`, `all` or `tagged`.
    #[schema(value_type = BTreeMap<PlatformName, EnforcementScope>)]
    pub enforcement: BTreeMap<String, String>,
    /// The tag that marks pilot devices in `tagged` mode.
    pub pilot_tag: String,
    /// `report` or `most_secure_wins`.
    #[schema(value_type = ConflictPolicyName)]
    pub conflict_policy: String,
    /// Whether devices another management authority manages may be taken over.
    pub allow_takeover: bool,
    /// Whether devices whose facts say domain controller are managed (off
    /// by default).
    #[serde(default)]
    pub manage_domain_controllers: bool,
    /// How a policy change is released when the policy does not say; none:
    /// everywhere at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub default_rollout: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub settings: TenantSettingsView,
    /// Goes up with every change of the settings (0 before the first);
    /// send it as `If-Match` with an update.
    pub settings_version: u64,
}

/// The tenant's policy-signing key: what agents verify policies with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyKeyView {
    /// The Ed25519 public key, hex.
    pub key: String,
    /// How many times the key was rotated (0: the key the tenant was made
    /// with). Agents enrolled under any earlier key follow the signed
    /// announcements to this one.
    pub generation: u64,
}

// ---- devices --------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentView {
    /// `enrolled`, `pending`, `failed`, `simulated`, …
    pub status: String,
    /// Stable code when enrollment failed.
    pub code: Option<String>,
    pub reason: Option<String>,
    /// What `code` means and how to fix it (`docs/troubleshooting.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<troubleshooting::Guidance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub os: String,
    pub os_version: String,
    #[serde(rename = "type")]
    pub device_type: String,
    pub agent_version: String,
    pub tags: Vec<String>,
    /// `Joined`, `Managed`.
    pub labels: Vec<String>,
    /// `rampart` or another management authority.
    pub managed_by: String,
    pub enrollment: EnrollmentView,
    /// Seconds since the epoch.
    pub last_check_in: Option<i64>,
    pub policy_version: Option<u64>,
    /// What needs looking at on this device.
    #[serde(default)]
    pub problems: DeviceProblemsView,
    /// Configurations that matter to management, as the agent reported
    /// them: `domain_controller`, `server_core`, `constrained_language`,
    /// `non_persistent_vdi`, `configmgr_client`, `mdm_enrolled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

/// A device's problems at a glance (the device report has the detail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceProblemsView {
    /// Settings (or rules) the device reported as failed.
    pub errors: u64,
    /// Settings (or rules) not applied because policies disagree.
    pub conflicts: u64,
    /// An agent-run device that has not checked in for longer than
    /// [`STALE_AFTER_SECS`] (or never did).
    pub stale: bool,
}

/// How long an enrolled device may go without a check-in before it counts
/// as stale: two missed check-ins at the agent's default 90 minutes.
pub const STALE_AFTER_SECS: i64 = 3 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTags {
    pub tags: Vec<String>,
}

/// Filters for the device list; each given filter must match.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    pub managed_by: Option<String>,
    pub label: Option<String>,
    pub tag: Option<String>,
    pub os: Option<String>,
    pub enrollment: Option<String>,
    /// Words that must each appear in the name, OS, OS version, type,
    /// managed-by, enrollment status, a tag or a label (ignoring case).
    pub search: Option<String>,
    /// `name` (default), `os`, `type`, `managed_by`, `enrollment` or
    /// `last_check_in`; ties go by name.
    pub sort: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// At most this many devices (1 to 1000); every device when left out.
    /// The answer's `X-Total-Count` header counts all that match (on a
    /// first page, without `cursor`), and `X-Next-Cursor`, when more
    /// follow, is the `cursor` of the next page.
    pub limit: Option<u32>,
    /// Where the page starts: the `X-Next-Cursor` of the page before.
    pub cursor: Option<String>,
}

// ---- groups and policies --------------------------------------------------

/// A stored policy: the checked document plus its version and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    pub name: String,
    pub description: String,
    #[schema(value_type = FamilyName)]
    pub family: String,
    #[schema(value_type = PlatformName)]
    pub platform: String,
    /// Setting id → value, in canonical form.
    #[schema(value_type = Object)]
    pub settings: BTreeMap<String, Value>,
    pub assignments: AssignmentsView,
    /// How a change to it is released: `immediate`, or stages, gates and
    /// what a failing gate does; left out for the tenant's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rollout: Option<Value>,
    pub version: u64,
    pub modified_at: i64,
    pub modified_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentsView {
    /// Group names, or `all-devices`.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    pub description: String,
    /// The rule of a dynamic group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The members of a static group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    pub version: u64,
    pub modified_at: i64,
    pub modified_by: String,
}

/// A group draft to preview before it is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupMembers {
    pub group: String,
    pub devices: Vec<String>,
}

// ---- effective policy, preview, apply -------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictView {
    pub setting: String,
    pub key: Option<String>,
    pub policies: Vec<String>,
    #[schema(value_type = Vec<serde_json::Value>)]
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotApplicableView {
    pub setting: String,
    pub key: Option<String>,
    pub policies: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EffectiveSettingView {
    pub setting: String,
    #[schema(value_type = serde_json::Value)]
    pub value: Value,
    pub sources: Vec<String>,
}

/// What one device gets now, with provenance and conflicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EffectivePolicyView {
    pub device: String,
    pub managed: bool,
    pub reason: Option<String>,
    pub settings: Vec<EffectiveSettingView>,
    pub conflicts: Vec<ConflictView>,
    pub not_applicable: Vec<NotApplicableView>,
    /// Policy name → version resolved.
    pub policy_versions: BTreeMap<String, u64>,
    pub digest: String,
}

/// One proposed change for a preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Create or replace a policy or group with this document; for
    /// `tenant_settings`, the fields given replace the current ones (as
    /// `PUT /tenant/settings` does).
    Put {
        /// `policy`, `group` or `tenant_settings`.
        kind: String,
        #[schema(value_type = Object)]
        document: Value,
    },
    /// Delete a policy or group.
    Delete { kind: String, name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub changes: Vec<Change>,
    /// At most this many affected devices in the answer (1 to 1000); all
    /// of them when left out. `devices_total` counts them all.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Where the page starts: the `next_cursor` of the page before.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// How one device's effective policy would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceImpact {
    pub device: String,
    /// Whether Rampart manages the device's settings now, and would after
    /// the change (a tenant's enforcement scope decides it).
    #[serde(default)]
    pub managed_before: bool,
    #[serde(default)]
    pub managed_after: bool,
    /// Settings the device would newly get.
    pub added: Vec<String>,
    /// Settings whose value or sources would change.
    pub changed: Vec<String>,
    /// Settings the device would no longer get.
    pub removed: Vec<String>,
    pub conflicts_added: Vec<ConflictView>,
    pub conflicts_removed: Vec<ConflictView>,
    pub digest_before: String,
    pub digest_after: String,
    /// When the change goes out in a staged rollout: the stage that brings
    /// it to this device (`stage 1 of 3 (10%)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PreviewResponse {
    /// Only devices whose effective policy would change, by name.
    pub devices: Vec<DeviceImpact>,
    /// How many devices would change in all (`devices` may be a page).
    #[serde(default)]
    pub devices_total: u64,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Policy, Group and TenantSettings documents (each with `kind`): the
    /// desired state of the tenant's policies and groups. Objects not in it
    /// are kept (and listed in `kept`) unless `prune` is set.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    /// Compute and return the diff, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Delete the policies and groups that are not in `documents`: the
    /// documents are then the whole desired state.
    #[serde(default)]
    pub prune: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct ObjectRef {
    /// `policy`, `group` or `tenant_settings`.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResponse {
    pub created: Vec<ObjectRef>,
    pub changed: Vec<ObjectRef>,
    pub deleted: Vec<ObjectRef>,
    /// Policies and groups not in the documents, kept because `prune` was
    /// not asked; with `prune` they would be deleted.
    #[serde(default)]
    pub kept: Vec<ObjectRef>,
    pub unchanged: usize,
    pub devices: Vec<DeviceImpact>,
    /// False for a dry run, and when there was nothing to change.
    pub applied: bool,
}

// ---- reports --------------------------------------------------------------

/// Counts per status, as in the seeds' "Monitor status".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    pub succeeded: u64,
    /// Written down by the agent's `file` backend, not enforced.
    #[serde(default)]
    pub recorded: u64,
    pub error: u64,
    pub conflict: u64,
    pub not_applicable: u64,
    pub pending: u64,
    /// Targeted by a change a staged rollout has not brought them yet;
    /// left out when none are.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_rollout: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One setting (or key of one) on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingStatusView {
    pub setting: String,
    /// The ASR rule id or firewall rule name of a row about one entry of a
    /// `per_key` setting (each entry has its own row, status and sources).
    pub key: Option<String>,
    /// The entry's name when the catalog knows one (an ASR rule's title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// `succeeded`, `recorded` (written down by the `file` backend, not
    /// enforced), `error`, `conflict`, `not_applicable`, `pending`.
    pub status: String,
    /// The backend on the device that applied it (`nftables`, `clamav`,
    /// `mdatp`, `registry`, `file`), as the agent reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The effective value the device should hold.
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Value>,
    /// What the agent read back from the component.
    #[schema(value_type = Option<serde_json::Value>)]
    pub observed: Option<Value>,
    pub sources: Vec<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// For a conflict (or when several policies set it): the other policies
    /// that manage this setting.
    pub other_policies: Vec<String>,
    /// For a conflict: each policy with the value it asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicting: Vec<PolicyValue>,
    pub reason: Option<String>,
}

/// A policy and the value it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyValue {
    pub policy: String,
    #[schema(value_type = Object)]
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceReport {
    pub device: String,
    pub managed: bool,
    pub reason: Option<String>,
    pub managed_by: String,
    pub last_check_in: Option<i64>,
    /// Digest of the effective policy now, and of the one the agent applied.
    pub digest: String,
    pub applied_digest: Option<String>,
    pub counts: StatusCounts,
    pub settings: Vec<SettingStatusView>,
    /// Recent hand-made changes the agent found and undid, newest first
    /// (the audit log's `device.tamper` entries).
    #[schema(value_type = Vec<Object>)]
    pub tamper_events: Vec<Value>,
    /// The device's recent trust events, newest first: enrollment,
    /// approved re-enrollment, re-attestation with its enrolled key (a
    /// certificate the server no longer knew, as after a restore), reports
    /// its outbox had to fold, offboarding.
    #[serde(default)]
    pub trust_events: Vec<TrustEvent>,
}

/// An entry of [`DeviceReport::trust_events`], from the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrustEvent {
    pub at: i64,
    /// `device.enroll`, `device.reenroll`, `device.reattest`,
    /// `device.report_loss` or `device.offboard`.
    pub action: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// One device's status for one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyDeviceStatus {
    pub device: String,
    /// The worst of its settings' statuses; `pending_rollout` for a device
    /// a staged rollout has not reached (it keeps the previous revision).
    pub status: String,
    /// In a staged rollout: the stage that brings the device the new
    /// revision (`stage 2 of 3`), or `reached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    pub last_check_in: Option<i64>,
    pub settings: Vec<SettingStatusView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyReport {
    pub policy: String,
    pub version: u64,
    /// Devices by their overall status for this policy.
    pub devices_by_status: StatusCounts,
    /// Per setting of the policy: counts over the targeted devices.
    pub settings: BTreeMap<String, StatusCounts>,
    pub devices: Vec<PolicyDeviceStatus>,
    /// How many devices the whole list holds (`devices` may be a page).
    #[serde(default)]
    pub devices_total: u64,
    /// The `cursor` of the next page of devices; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The policy's staged rollout, the current or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingDeviceStatus {
    pub device: String,
    pub status: String,
    /// The backend on the device that applied it, as the agent reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Value>,
    pub sources: Vec<String>,
    pub error_message: Option<String>,
    /// In a conflict: each policy with the value it sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicting: Vec<PolicyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingReport {
    pub setting: String,
    pub counts: StatusCounts,
    pub devices: Vec<SettingDeviceStatus>,
    /// How many devices the whole list holds (`devices` may be a page).
    #[serde(default)]
    pub devices_total: u64,
    /// The `cursor` of the next page of devices; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of a report's device list, which lists conflicts and errors
/// first, then the rest, each part by device name.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportPage {
    /// At most this many devices (1 to 1000); every device when left out.
    /// The counts always cover every device.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where the page starts: the `next_cursor` of the page before.
    pub cursor: Option<String>,
    /// Only devices in this status: `succeeded`, `recorded`, `error`,
    /// `conflict`, `not_applicable`, `pending` or `pending_rollout`.
    pub status: Option<String>,
}

// ---- staged rollouts --------------------------------------------------------

/// `running`: stages advance as their soaks end and gates pass; `paused`:
/// held where it is (by an administrator or a failing gate); `completed`:
/// every device has the new revision; `rolled_back`: every device is back
/// on the previous revision.
pub const ROLLOUT_STATES: &[&str] = &["running", "paused", "completed", "rolled_back"];

/// A policy change released in stages: what the server stores (one document
/// per policy, a new version per step) and shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    /// Random; with a device's id it decides the device's stage.
    pub id: String,
    pub policy: String,
    /// One of [`ROLLOUT_STATES`].
    pub state: String,
    /// The stage reached so far, 0-based.
    pub stage: usize,
    /// The specification, as the policy or the tenant default gave it.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// The policy's version before the change (none: the change created it).
    pub from_version: Option<u64>,
    /// The policy document devices not yet reached keep (none: they do not
    /// get the policy).
    #[schema(value_type = Option<Object>)]
    pub previous: Option<Value>,
    /// The change deletes the policy.
    #[serde(default)]
    pub deletes: bool,
    pub started_at: i64,
    pub started_by: String,
    /// When the current stage began (its soak runs from here).
    pub stage_started_at: i64,
    /// Why it is paused or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The gates as read at the end of the last soak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<GateValues>,
    /// Every step, oldest first.
    pub history: Vec<RolloutEvent>,
}

/// What the gates read over the devices the rollout had reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateValues {
    pub reached: u64,
    pub errors: u64,
    pub lockouts: u64,
    pub silent: u64,
    pub tamper_events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutEvent {
    pub at: i64,
    pub actor: String,
    /// `start`, `advance`, `pause`, `resume`, `gate_failed`, `superseded`,
    /// `complete`, `rollback`.
    pub action: String,
    /// The stage after the step.
    pub stage: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<GateValues>,
}

/// A rollout with where it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    #[serde(flatten)]
    pub rollout: Rollout,
    /// Each stage in words (`10%`, `group canary`) with its soak.
    pub stages: Vec<RolloutStageView>,
    /// When the current stage's soak ends (running only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_ends_at: Option<i64>,
    /// Devices the policy targets before or after the change.
    pub devices_targeted: u64,
    /// Of those, the ones that have been given the new revision.
    pub devices_reached: u64,
    /// The policy's version now (none when the change deleted it).
    pub to_version: Option<u64>,
    /// Version of the rollout document, for `If-Match`.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutStageView {
    /// `10%` or `group canary`.
    pub target: String,
    pub soak_secs: u64,
}

/// A pause, resume, advance or abort, with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutAction {
    /// Recorded in the rollout's history and the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

// ---- audit, tokens, users, login ------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_name: String,
    #[schema(value_type = Option<serde_json::Value>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub after: Option<Value>,
}

#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Entries older than this id, for paging: the last id of the page
    /// before.
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Only changes by this actor (a user, a token's name, `device:NAME`),
    /// exactly as recorded.
    pub actor: Option<String>,
    /// Only this action (`policy.update`), or every action of a kind when
    /// it ends in `.*` (`policy.*`).
    pub action: Option<String>,
    /// Only changes to this kind of object (`policy`, `group`, `device`, …).
    pub object_kind: Option<String>,
    /// Only changes to the object with this name.
    pub object_name: Option<String>,
    /// Only entries at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only entries before this time (Unix seconds).
    pub until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    /// `global_admin`, `security_manager` or `read_only`.
    #[schema(value_type = RoleName)]
    pub role: String,
    /// When the token stops working (Unix seconds, in the future); never
    /// when absent.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A new token. `token` is shown this once; the server keeps only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    #[schema(value_type = TokenKind)]
    pub kind: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    /// When the token was last used (to the minute); `null` if never.
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub username: String,
    pub password: String,
    #[schema(value_type = RoleName)]
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    pub created_at: i64,
    /// A disabled user cannot sign in.
    pub disabled: bool,
}

/// A change to a user: only what is given changes. Any change ends the
/// user's console sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// `global_admin`, `security_manager` or `read_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<String>,
    /// A new password, at least 12 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Defaults to `default`.
    #[serde(default)]
    pub tenant: Option<String>,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// A session token for `Authorization: Bearer`.
    pub token: String,
    pub expires_at: i64,
    #[schema(value_type = RoleName)]
    pub role: String,
    pub tenant: String,
}

/// Who the caller is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub tenant: String,
    pub actor: String,
    #[schema(value_type = RoleName)]
    pub role: String,
}

/// The answer to a sync request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncAccepted {
    pub device: String,
    /// Whether the device holds a push connection now (it is nudged within
    /// seconds); otherwise it syncs at its next check-in.
    pub connected: bool,
}

/// `POST /api/v1/devices/{name}/reenroll`: lets one enrollment (with an
/// onboarding token) take over the device's name, e.g. for a reinstalled
/// machine that lost its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReenrollApprove {
    /// How long the approval lasts, in hours (1 to 168); 24 when absent.
    pub expires_in_hours: Option<u32>,
}

/// A re-enrollment approval in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReenrollApproval {
    pub device: String,
    /// Until when (seconds since the epoch) one enrollment may take the name.
    pub until: i64,
}

/// `POST /api/v1/onboarding`: a new onboarding package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardingCreate {
    /// How long the token is valid, in seconds (default a day, at most 30 days).
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
    /// How many devices may use it (unlimited when absent).
    #[serde(default)]
    pub max_uses: Option<u32>,
}

/// An onboarding token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OnboardingTokenView {
    pub id: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: i64,
    pub max_uses: Option<u32>,
    pub uses: u32,
}
