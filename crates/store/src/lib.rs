//! Rampart's storage interface: one trait, implemented by `rampart-store-sqlite`
//! (the embedded default) and `rampart-store-postgres`, and one contract test
//! suite (`contract`) both must pass.
//!
//! The store is deliberately dumb: it keeps tenant-scoped records and JSON
//! documents and knows nothing of policies' meaning. Validation happens before
//! anything reaches it; the server turns documents back into domain values
//! with `rampart-core`. Every mutation goes through [`Store::write`], which
//! applies a batch of writes and their audit entries in one transaction: all
//! or nothing, so a failed call never leaves half a change behind.

pub mod audit_query;
pub mod contract;
pub mod page;

pub use audit_query::AuditQuery;

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

/// Seconds since the Unix epoch. The store never reads the clock: callers
/// pass the time, so tests can control it.
pub type Timestamp = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness or version expectation failed (`Expect`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed; not the caller's fault.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The database cannot be reached (connection refused or lost, no
    /// answer in time): the same call may succeed once it is back.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A tenant: the trust boundary every other record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Opaque, stable id.
    pub id: String,
    /// Unique, human-chosen name (`default` for the first one).
    pub name: String,
    pub created_at: Timestamp,
}

/// Versioned documents: the policies and groups administrators write, and
/// the state of a policy's staged rollout (named after its policy; each step
/// is a new version, so its history is the rollout's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Policy,
    Group,
    Rollout,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Policy => "policy",
            ObjectKind::Group => "group",
            ObjectKind::Rollout => "rollout",
        }
    }
}

/// One version of a policy or group document.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    pub kind: ObjectKind,
    pub name: String,
    /// The canonical JSON of the checked object.
    pub doc: Value,
    /// 1 for a new object, +1 on every change; never reused, even after a
    /// delete and re-create.
    pub version: u64,
    pub modified_at: Timestamp,
    pub modified_by: String,
}

/// A device as the control plane keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// Opaque, stable id.
    pub id: String,
    /// Unique within the tenant.
    pub name: String,
    /// `linux`, `windows`, `macos`.
    pub os: String,
    pub os_version: String,
    /// `workstation` or `server`.
    pub device_type: String,
    pub agent_version: String,
    pub tags: Vec<String>,
    /// `Joined`, `Managed`.
    pub labels: Vec<String>,
    /// `rampart`, or the other management authority the agent found.
    pub managed_by: String,
    /// e.g. `enrolled`, `failed`, `pending`, `simulated`.
    pub enrollment_status: String,
    /// Stable code when enrollment failed.
    pub enrollment_code: Option<String>,
    pub enrollment_reason: Option<String>,
    pub last_check_in: Option<Timestamp>,
    /// Digest of the effective policy the agent last applied.
    pub applied_digest: Option<String>,
    pub policy_version: Option<u64>,
    pub created_at: Timestamp,
    /// Hex serial of the client certificate issued to the device last; the
    /// device channel refuses any other. `None` for a device never enrolled.
    pub cert_serial: Option<String>,
    /// When that certificate expires.
    pub cert_not_after: Option<Timestamp>,
    /// Version of the signed policy issued to the device last: monotonic per
    /// device, 0 when none was issued.
    pub issued_version: u64,
    /// Digest of that signed policy.
    pub issued_digest: Option<String>,
    /// Hex SHA-256 of the public key (SubjectPublicKeyInfo DER) of the
    /// device's current certificate: a device that can sign with that key
    /// is the device, even when its certificate is lost or expired.
    pub key_sha256: Option<String>,
    /// An administrator approved one re-enrollment of this device under its
    /// name (with an onboarding token) until this time; `None` otherwise.
    pub reenroll_until: Option<Timestamp>,
    /// Stable codes of configurations that matter to management, as the
    /// agent reported them (`rampart_proto::device::conditions`).
    pub conditions: Vec<String>,
}

/// What is left of a deleted device: enough for the server to recognise a
/// certificate it issued to it and answer with a signed offboarding notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTombstone {
    pub device_id: String,
    pub name: String,
    pub deleted_at: Timestamp,
    /// Why it went, in words for the device's log and status.
    pub reason: String,
}

/// The key names are compared by: two names with the same key are one name
/// (see `rampart_core::names`).
pub fn name_key(name: &str) -> String {
    rampart_core::names::name_key(name)
}

/// How many of a device's reported statuses are problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProblems {
    pub device: String,
    pub errors: u64,
    pub conflicts: u64,
}

/// What an agent reported for one setting (or one key of a per-key setting).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord {
    pub device: String,
    pub setting: String,
    /// Empty for a whole setting; the ASR rule id or firewall rule name else.
    pub key: String,
    /// `succeeded`, `recorded`, `error`, `conflict`, `not_applicable`,
    /// `pending`.
    pub status: String,
    /// The value read back from the component.
    pub observed: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The backend on the device that applied the setting (one of
    /// `rampart_proto::device::BACKENDS`); none when no backend handled it.
    pub backend: Option<String>,
    /// Digest of the effective policy the report is about.
    pub digest: String,
    pub updated_at: Timestamp,
}

/// An API token or a console session, stored hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// `global_admin`, `security_manager`, `read_only`.
    pub role: String,
    /// `api` or `session`.
    pub kind: String,
    /// Hex SHA-256 of the secret; the secret itself is never stored.
    pub hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub created_by: String,
    /// When the token was last used, to the minute ([`Store::touch_token`]);
    /// `None` if never. A session idle too long is refused and purged.
    pub last_used_at: Option<Timestamp>,
}

/// A local user of the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub role: String,
    pub created_at: Timestamp,
    /// A disabled user cannot sign in; the account and its history stay.
    pub disabled: bool,
}

/// A tenant's key material, written when the tenant is created: the CA that
/// issues its devices' certificates and the key that signs its policies.
/// `Debug` leaves the private halves out.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantSecrets {
    pub ca_cert_pem: String,
    /// Private key of the CA, PEM.
    pub ca_key_pem: String,
    /// Hex Ed25519 secret key that signs policies.
    pub signing_key: String,
    /// Hex Ed25519 public key agents verify policies with.
    pub verify_key: String,
    /// One entry per rotation of the policy key, oldest first: the JSON
    /// text of a signed announcement (`rampart_proto::device::KeyAnnouncement`),
    /// opaque to the store. Agents holding an older key follow the chain.
    pub key_announcements: Vec<String>,
}

impl fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSecrets")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("ca_key_pem", &"<redacted>")
            .field("signing_key", &"<redacted>")
            .field("verify_key", &self.verify_key)
            .field("key_announcements", &self.key_announcements.len())
            .finish()
    }
}

/// A token that lets agents enroll devices into its tenant, stored hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingTokenRecord {
    pub id: String,
    /// Hex SHA-256 of the secret; unique across every tenant.
    pub hash: String,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The token is refused from this time on.
    pub expires_at: Timestamp,
    /// How many enrollments it allows; `None` for no limit.
    pub max_uses: Option<u32>,
    /// How many it has been used for.
    pub uses: u32,
}

/// The outcome of [`Store::consume_onboarding_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    /// The token was valid; its use has been counted.
    Accepted { tenant_id: String, token_id: String },
    /// No token has this hash.
    Unknown,
    /// The token has expired (checked before its uses).
    Expired,
    /// The token has been used `max_uses` times.
    Exhausted,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Increasing within a store.
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    /// e.g. `policy.create`, `device.delete`, `tenant.settings`.
    pub action: String,
    pub object_kind: String,
    pub object_name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// An audit entry to write with a batch; `id` and `at` come from the store and
/// the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// What a write expects of the record's current state. A failed expectation
/// fails the whole batch: with [`StoreError::NotFound`] when `Present` or
/// `Version` finds no record, with [`StoreError::Conflict`] otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Any,
    /// Create only.
    Absent,
    /// Update or delete only.
    Present,
    /// Exactly this version (optimistic concurrency).
    Version(u64),
}

/// One mutation inside a [`Store::write`] batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Creates or replaces a document; the store assigns the next version
    /// and keeps the old one in the history.
    PutObject {
        kind: ObjectKind,
        name: String,
        doc: Value,
        expect: Expect,
        by: String,
    },
    DeleteObject {
        kind: ObjectKind,
        name: String,
        expect: Expect,
    },
    /// Replaces the tenant settings; their version goes up by one (1 for
    /// the first).
    PutTenantSettings {
        doc: Value,
    },
    /// Fails the batch with Conflict unless the tenant settings are at
    /// `version` (0: none stored yet). Put before `PutTenantSettings` in one
    /// batch, it makes the update conditional; of concurrent such batches
    /// based on one version, one succeeds.
    ExpectTenantSettings {
        version: u64,
    },
    /// Inserts or replaces a device by name.
    PutDevice(DeviceRecord),
    /// Inserts a new device; Conflict when a device with the same name key
    /// ([`name_key`]) or id exists in the tenant. Of concurrent enrollments
    /// of one name exactly one succeeds.
    EnrollDevice(DeviceRecord),
    /// Sets (or with `None` clears) an administrator's approval to
    /// re-enroll the device under its name until `until`. NotFound when the
    /// device does not exist.
    ApproveReenroll {
        name: String,
        until: Option<Timestamp>,
    },
    /// Uses the device's re-enrollment approval: Conflict unless one is
    /// set and later than the batch's time; it is cleared either way it
    /// succeeds, so it works once.
    ConsumeReenroll {
        name: String,
    },
    SetDeviceTags {
        name: String,
        tags: Vec<String>,
    },
    /// Deletes a device and its statuses, leaving a tombstone with
    /// `reason` under its id. NotFound when absent.
    DeleteDevice {
        name: String,
        reason: String,
    },
    /// Inserts a token; Conflict if its hash exists.
    PutToken(TokenRecord),
    /// NotFound when absent.
    DeleteToken {
        id: String,
    },
    /// Inserts a user; Conflict if a username with the same [`name_key`]
    /// exists in the tenant.
    PutUser(UserRecord),
    /// Changes what is given of a user (found by [`name_key`]) and ends its
    /// console sessions, which carry the role and password they were opened
    /// with. NotFound when absent.
    UpdateUser {
        username: String,
        role: Option<String>,
        password_hash: Option<String>,
        disabled: Option<bool>,
    },
    /// Deletes a user (found by [`name_key`]) and its sessions. NotFound
    /// when absent.
    DeleteUser {
        username: String,
    },
    /// Inserts or replaces the tenant's key material.
    PutTenantSecrets(TenantSecrets),
    /// Replaces the tenant's policy key and its announcements, only if the
    /// current public key is still `expected_verify_key` (else Conflict:
    /// another rotation won); NotFound when the tenant has no secrets.
    RotatePolicyKey {
        expected_verify_key: String,
        signing_key: String,
        verify_key: String,
        /// The whole list, the new announcement last.
        key_announcements: Vec<String>,
    },
    /// Inserts an onboarding token into the batch's tenant; Conflict if its
    /// hash exists (in any tenant) or its id exists in the tenant.
    PutOnboardingToken(OnboardingTokenRecord),
    /// Revokes an onboarding token: devices can no longer enroll with it
    /// (devices already enrolled keep their trust). NotFound when absent.
    DeleteOnboardingToken {
        id: String,
    },
    /// Records what an agent reported about its device, leaving everything
    /// else (id, identity, issued policy, applied policy, creation time) as
    /// it is. Fields are written as given, except two that keep the stored
    /// value when `None`: `tags` (tags set by administrators and tags from
    /// the agent share one list) and `last_check_in`. NotFound when the
    /// device does not exist.
    UpdateDeviceFacts {
        name: String,
        os: String,
        os_version: String,
        device_type: String,
        agent_version: String,
        tags: Option<Vec<String>>,
        managed_by: String,
        labels: Vec<String>,
        enrollment_status: String,
        enrollment_code: Option<String>,
        enrollment_reason: Option<String>,
        last_check_in: Option<Timestamp>,
        conditions: Vec<String>,
    },
    /// Records the certificate issued to a device last, as given (`None`
    /// clears it, so no certificate is accepted for the device). NotFound
    /// when the device does not exist.
    SetDeviceIdentity {
        name: String,
        cert_serial: Option<String>,
        cert_not_after: Option<Timestamp>,
        key_sha256: Option<String>,
    },
    /// Records the signed policy issued to a device last. Versions only go
    /// up: Conflict when `version` is below the stored one, or equal to it
    /// with another digest (setting the same version and digest again is a
    /// no-op), so two writers racing to issue the same next version cannot
    /// both succeed. NotFound when the device does not exist.
    SetIssuedPolicy {
        name: String,
        version: u64,
        digest: String,
    },
    /// Records the policy the agent says it holds (`applied_digest`,
    /// `policy_version`), as given. NotFound when the device does not exist.
    SetAppliedPolicy {
        name: String,
        digest: Option<String>,
        version: Option<u64>,
    },
}

/// The storage interface. Every method but the tenant, token and
/// installation-secret look-ups is scoped to one tenant id: a tenant's
/// records are invisible to another.
///
/// Names are sorted byte by byte (`B` before `a`) in every backend. Tenants,
/// users, devices and live policies and groups are unique by [`name_key`]
/// (ignoring case): `DUP1` and `dup1` cannot both exist.
#[async_trait]
pub trait Store: Send + Sync {
    /// Ok when the database answers and every migration this build knows
    /// is applied (readiness); Unavailable or Backend otherwise.
    async fn ready(&self) -> Result<()>;

    /// Creates a tenant; Conflict when the name is taken.
    async fn create_tenant(&self, name: &str, at: Timestamp) -> Result<Tenant>;
    /// Every tenant, sorted by name.
    async fn tenants(&self) -> Result<Vec<Tenant>>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;

    /// Applies every write and audit entry in one transaction, in order.
    async fn write(
        &self,
        tenant: &str,
        at: Timestamp,
        writes: Vec<Write>,
        audit: Vec<NewAudit>,
    ) -> Result<()>;

    async fn tenant_settings(&self, tenant: &str) -> Result<Option<Value>>;
    /// The version of the tenant settings; 0 when none are stored.
    async fn tenant_settings_version(&self, tenant: &str) -> Result<u64>;
    /// The tenant's key material; `None` until `PutTenantSecrets`.
    async fn tenant_secrets(&self, tenant: &str) -> Result<Option<TenantSecrets>>;

    /// An installation-wide secret (shared by every replica and tenant),
    /// e.g. the device channel's server CA.
    async fn server_secret(&self, name: &str) -> Result<Option<String>>;
    /// Stores `value` under `name` unless a value is stored already, and
    /// returns the stored value either way: of replicas racing to create a
    /// secret, every one gets the value of the one that won.
    async fn put_server_secret_if_absent(&self, name: &str, value: &str) -> Result<String>;
    /// Replaces the value stored under `name` if it still is `expected`
    /// (re-encryption under a new master key): NotFound when there is no
    /// value, Conflict when another writer changed it first.
    async fn replace_server_secret(&self, name: &str, expected: &str, value: &str) -> Result<()>;

    /// Current documents of a kind, sorted by name.
    async fn objects(&self, tenant: &str, kind: ObjectKind) -> Result<Vec<ObjectRecord>>;
    async fn object(
        &self,
        tenant: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<ObjectRecord>>;
    /// Every version of a document, oldest first, including those before a
    /// delete and re-create.
    async fn object_history(
        &self,
        tenant: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Vec<ObjectRecord>>;

    /// Devices sorted by name.
    async fn devices(&self, tenant: &str) -> Result<Vec<DeviceRecord>>;
    /// The device whose name has the same [`name_key`] as `name`.
    async fn device(&self, tenant: &str, name: &str) -> Result<Option<DeviceRecord>>;
    /// The device with this id, in this tenant only.
    async fn device_by_id(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>>;
    /// The tombstone a deleted device with this id left, in this tenant.
    async fn device_tombstone(&self, tenant: &str, id: &str) -> Result<Option<DeviceTombstone>>;
    /// Records when devices were last seen, in one transaction: each named
    /// device's `last_check_in` becomes the later of the stored time and the
    /// given one (so a delayed batch never moves it back). Names that do not
    /// exist (and a tenant that does not) are ignored; of a name given twice
    /// the later time counts.
    async fn touch_devices(&self, tenant: &str, seen: Vec<(String, Timestamp)>) -> Result<()>;

    /// Upserts the reported statuses of one device, storing only rows that
    /// changed (status, observed value, error or digest); returns how many
    /// did. NotFound when the device does not exist.
    async fn record_statuses(
        &self,
        tenant: &str,
        device: &str,
        statuses: Vec<StatusRecord>,
    ) -> Result<usize> {
        self.record_report(tenant, device, statuses, 0, Vec::new(), Vec::new())
            .await
    }
    /// [`Store::record_statuses`] and a [`Store::write`] batch (`writes` and
    /// `audit` at `at`) in one transaction: a device's status report, the
    /// policy it says it applied and what it reported for the audit log
    /// cost the single writer one commit, and none lands without the rest.
    async fn record_report(
        &self,
        tenant: &str,
        device: &str,
        statuses: Vec<StatusRecord>,
        at: Timestamp,
        writes: Vec<Write>,
        audit: Vec<NewAudit>,
    ) -> Result<usize>;
    /// Every status row of the tenant, sorted by device, setting, key.
    async fn statuses(&self, tenant: &str) -> Result<Vec<StatusRecord>>;
    async fn device_statuses(&self, tenant: &str, device: &str) -> Result<Vec<StatusRecord>>;
    /// Per device with any, how many of its status rows are errors and
    /// conflicts: counted by the database, not by loading every row.
    async fn device_problems(&self, tenant: &str) -> Result<Vec<DeviceProblems>>;
    /// [`Store::device_problems`] of the named devices only (a page).
    async fn device_problems_of(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<DeviceProblems>>;
    /// One page of the tenant's devices, filtered and sorted by the
    /// database (`page::device_page_sql`), with how many match in all.
    async fn device_page(
        &self,
        tenant: &str,
        query: &page::DeviceQuery,
    ) -> Result<page::DevicePage>;

    /// Looks a token up by the hash of its secret, in any tenant.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// The tenant's tokens, oldest first (by `created_at`, then name, then
    /// id).
    async fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>>;
    /// Records that a token was used at `at`, unless it was recorded less
    /// than a minute before (one write a minute per token, not one per
    /// request). Unknown ids are ignored.
    async fn touch_token(&self, tenant: &str, id: &str, at: Timestamp) -> Result<()>;
    /// Deletes, in every tenant, the tokens that expired (`expires_at <=
    /// now`) and the sessions last used (or, if never, created) before
    /// `idle_since`; returns how many.
    async fn purge_tokens(&self, now: Timestamp, idle_since: Timestamp) -> Result<u64>;
    /// The tenant's users, sorted by username.
    async fn users(&self, tenant: &str) -> Result<Vec<UserRecord>>;
    /// The user whose username has the same [`name_key`] as `username`.
    async fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>>;

    /// The tenant's onboarding tokens, oldest first (by `created_at`, then
    /// id).
    async fn onboarding_tokens(&self, tenant: &str) -> Result<Vec<OnboardingTokenRecord>>;
    /// Uses the onboarding token whose secret hashes to `hash`, in any
    /// tenant, atomically: `Expired` when `expires_at <= now`, else
    /// `Exhausted` when it has been used `max_uses` times, else its `uses`
    /// goes up by one and the answer is `Accepted`. Of concurrent callers,
    /// no more are accepted than the token has uses left.
    async fn consume_onboarding_token(&self, hash: &str, now: Timestamp) -> Result<TokenUse>;

    /// Newest first, filtered and paged as `query` says
    /// (`audit_query::audit_sql`).
    async fn audit(&self, tenant: &str, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_secrets_debug_leaves_the_private_keys_out() {
        let secrets = TenantSecrets {
            ca_cert_pem: "-----BEGIN CERTIFICATE-----".to_owned(),
            ca_key_pem: "-----BEGIN PRIVATE KEY----- ca-secret".to_owned(),
            signing_key: "5ec2e75ec2e7".to_owned(),
            verify_key: "0b11c0b11c".to_owned(),
            key_announcements: Vec::new(),
        };
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("ca-secret"), "{debug}");
        assert!(!debug.contains("5ec2e7"), "{debug}");
        assert!(debug.contains("BEGIN CERTIFICATE"), "{debug}");
        assert!(debug.contains("0b11c0b11c"), "{debug}");
        let write = format!("{:?}", Write::PutTenantSecrets(secrets));
        assert!(
            !write.contains("ca-secret") && !write.contains("5ec2e7"),
            "{write}"
        );
    }
}
