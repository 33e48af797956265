//! The state directory: where the agent keeps its identity, its enrollment
//! record, the last verified policy, what it applied, and its outbox.
//!
//! ```text
//! <state>/identity/key.pem        device private key (0600); never leaves the device
//! <state>/identity/cert.pem       device certificate from the tenant CA
//! <state>/identity/tenant-ca.pem  the tenant CA
//! <state>/identity/server-ca.pem  the installation CA pinned by the package
//! <state>/identity.json           tenant, device, server, policy key, expiry
//! <state>/enrollment.json         last enrollment state, last check-in, last error
//! <state>/facts.json              facts overrides given at onboarding (tests, simulation)
//! <state>/policy.json             the last verified SignedPolicy, exactly as received
//! <state>/applied.json            what providers applied, per-setting statuses
//! <state>/outbox/                 status reports not yet acknowledged
//! <state>/enforced/               the file provider's output (by default)
//! <state>/nftables/rollback.nft    the ruleset to restore while a firewall change is unconfirmed
//! <state>/lockout.json            a firewall change rolled back for cutting the agent off
//! <state>/run.lock                held (flock) by the running `rampart-agent run`
//! <state>/check-drift.request     `check-drift` asks the running agent for a read-back
//! <state>/check-drift.result      …and the running agent answers (tamper events, JSON)
//! ```
//!
//! Every write is atomic (a temporary file in the same directory, fsync,
//! rename, fsync of the directory), so a crash leaves either the old or the
//! new file, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rampart_proto::device::{EnrollmentState, SettingStatus, SignedPolicy, Survey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The state directory, and the one place its layout is spelled out.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory and its `identity/` folder, both private to the
    /// agent's user.
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.root)?;
        create_private_dir(&self.identity_dir())
    }

    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }
    pub fn key_pem(&self) -> PathBuf {
        self.identity_dir().join("key.pem")
    }
    pub fn cert_pem(&self) -> PathBuf {
        self.identity_dir().join("cert.pem")
    }
    /// A renewal's new key, written before the server is asked, so that a
    /// certificate issued for it is never without its key.
    pub fn next_key_pem(&self) -> PathBuf {
        self.identity_dir().join("key.next.pem")
    }
    /// A renewal's new certificate, until it replaces `cert.pem`.
    pub fn next_cert_pem(&self) -> PathBuf {
        self.identity_dir().join("cert.next.pem")
    }
    pub fn tenant_ca_pem(&self) -> PathBuf {
        self.identity_dir().join("tenant-ca.pem")
    }
    pub fn server_ca_pem(&self) -> PathBuf {
        self.identity_dir().join("server-ca.pem")
    }
    pub fn identity_json(&self) -> PathBuf {
        self.root.join("identity.json")
    }
    pub fn enrollment_json(&self) -> PathBuf {
        self.root.join("enrollment.json")
    }
    pub fn facts_json(&self) -> PathBuf {
        self.root.join("facts.json")
    }
    pub fn policy_json(&self) -> PathBuf {
        self.root.join("policy.json")
    }
    pub fn applied_json(&self) -> PathBuf {
        self.root.join("applied.json")
    }
    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join("outbox")
    }
    pub fn lockout_json(&self) -> PathBuf {
        self.root.join("lockout.json")
    }
    pub fn run_lock(&self) -> PathBuf {
        self.root.join("run.lock")
    }
    pub fn drift_request(&self) -> PathBuf {
        self.root.join("check-drift.request")
    }
    pub fn drift_result(&self) -> PathBuf {
        self.root.join("check-drift.result")
    }
    pub fn offboard_request(&self) -> PathBuf {
        self.root.join("offboard.request")
    }
    pub fn offboard_result(&self) -> PathBuf {
        self.root.join("offboard.result")
    }

    /// Takes the lock the running agent holds for its lifetime; `None`
    /// when another process holds it. Released when the guard is dropped
    /// (or the process ends).
    pub fn try_lock_run(&self) -> Result<Option<RunLock>> {
        let path = self.run_lock();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RunLock(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    pub fn load_lockout(&self) -> Result<Option<Lockout>> {
        read_json(&self.lockout_json())
    }

    pub fn save_lockout(&self, lockout: &Lockout) -> Result<()> {
        write_json(&self.lockout_json(), lockout)
    }

    pub fn load_identity(&self) -> Result<Option<Identity>> {
        read_json(&self.identity_json())
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<()> {
        write_json(&self.identity_json(), identity)
    }

    /// The key and certificate the agent presents, and the CA it trusts.
    pub fn load_credentials(&self) -> Result<Credentials> {
        Ok(Credentials {
            key_pem: read_text(&self.key_pem())?,
            cert_pem: read_text(&self.cert_pem())?,
            server_ca_pem: read_text(&self.server_ca_pem())?,
        })
    }

    /// Stores a key and certificate pair of a fresh trust.
    pub fn save_key_and_cert(&self, key_pem: &str, cert_pem: &str) -> Result<()> {
        write_atomic(&self.key_pem(), key_pem.as_bytes(), true)?;
        write_atomic(&self.cert_pem(), cert_pem.as_bytes(), false)
    }

    /// Finishes a renewal that was interrupted after the new certificate was
    /// stored, and drops one that was interrupted before it (the old
    /// certificate then still holds). Called before the identity is used.
    ///
    /// The states a crash can leave, given that `promote_renewal` moves the
    /// key first: only `key.next` (the server had not answered: drop it);
    /// both (promote them); only `cert.next` (the key was already moved:
    /// move the certificate).
    pub fn settle_renewal(&self) -> Result<()> {
        let (next_key, next_cert) = (self.next_key_pem(), self.next_cert_pem());
        match (next_key.exists(), next_cert.exists()) {
            (true, false) => remove_if_exists(&next_key),
            (_, true) => {
                tracing::info!(
                    event = "renewal_completed",
                    "completing an interrupted certificate renewal"
                );
                self.promote_renewal()
            }
            (false, false) => Ok(()),
        }
    }

    /// Makes `key.next.pem`/`cert.next.pem` the identity, key first (see
    /// `settle_renewal` for why the order matters).
    pub fn promote_renewal(&self) -> Result<()> {
        if self.next_key_pem().exists() {
            rename(&self.next_key_pem(), &self.key_pem())?;
        }
        rename(&self.next_cert_pem(), &self.cert_pem())?;
        sync_dir(&self.identity_dir())
    }

    pub fn load_enrollment(&self) -> Result<Option<EnrollmentRecord>> {
        read_json(&self.enrollment_json())
    }

    pub fn save_enrollment(&self, record: &EnrollmentRecord) -> Result<()> {
        write_json(&self.enrollment_json(), record)
    }

    pub fn load_held_policy(&self) -> Result<Option<HeldPolicy>> {
        read_json(&self.policy_json())
    }

    pub fn save_held_policy(&self, held: &HeldPolicy) -> Result<()> {
        write_json(&self.policy_json(), held)
    }

    pub fn load_applied(&self) -> Result<Applied> {
        Ok(read_json(&self.applied_json())?.unwrap_or_default())
    }

    pub fn save_applied(&self, applied: &Applied) -> Result<()> {
        write_json(&self.applied_json(), applied)
    }

    /// Removes the credentials (the trust is gone) but keeps
    /// `identity.json` so `status` can still say which device it was.
    pub fn forget_credentials(&self) -> Result<()> {
        for path in [
            self.key_pem(),
            self.cert_pem(),
            self.next_key_pem(),
            self.next_cert_pem(),
        ] {
            remove_if_exists(&path)?;
        }
        Ok(())
    }

    /// Removes what belonged to the trust that ended: the policy, what was
    /// applied (already undone by then) and unsent reports.
    pub fn forget_policy(&self) -> Result<()> {
        remove_if_exists(&self.policy_json())?;
        remove_if_exists(&self.applied_json())?;
        match fs::remove_dir_all(self.outbox_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(self.outbox_dir(), e)),
        }
    }

    /// Removes the whole identity (offboarding).
    pub fn forget_identity(&self) -> Result<()> {
        self.forget_credentials()?;
        for path in [
            self.tenant_ca_pem(),
            self.server_ca_pem(),
            self.identity_json(),
            self.facts_json(),
        ] {
            remove_if_exists(&path)?;
        }
        Ok(())
    }
}

/// Who this device is to its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub tenant_id: String,
    pub tenant_name: String,
    pub device_id: String,
    pub device_name: String,
    pub server_url: String,
    /// The tenant's Ed25519 policy key, hex.
    pub policy_key: String,
    /// Policy keys this device held before the tenant rotated them, newest
    /// first: only the policy stored on disk may still be signed with one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_policy_keys: Vec<String>,
    /// When the current certificate was obtained, seconds since the epoch:
    /// the start of the lifetime the renewal threshold is a third of.
    pub issued_at: i64,
    /// When the current certificate expires.
    pub not_after: i64,
}

impl Identity {
    /// When to renew: once less than a third of the lifetime is left.
    pub fn renew_at(&self) -> i64 {
        let lifetime = (self.not_after - self.issued_at).max(0);
        self.not_after - lifetime / 3
    }
}

/// What the agent presents and trusts on the device channel.
pub struct Credentials {
    pub key_pem: String,
    pub cert_pem: String,
    pub server_ca_pem: String,
}

/// Where the device stands, as the agent last learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// Rampart manages the device.
    Enrolled,
    /// The trust exists but the tenant does not manage the device (out of
    /// scope, or another authority is in charge).
    NotManaged,
    /// The tenant deleted the device: credentials are gone.
    Revoked,
    /// No trust (never onboarded, or offboarded).
    NotOnboarded,
}

impl LocalState {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Enrolled => "enrolled",
            LocalState::NotManaged => "not_managed",
            LocalState::Revoked => "revoked",
            LocalState::NotOnboarded => "not_onboarded",
        }
    }

    pub fn of(enrollment: &EnrollmentState) -> LocalState {
        if enrollment.is_managed() {
            LocalState::Enrolled
        } else {
            LocalState::NotManaged
        }
    }
}

/// `enrollment.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRecord {
    pub state: LocalState,
    /// The server's last word on the enrollment.
    pub enrollment: Option<EnrollmentState>,
    /// The survey the server decided on: offline, the agent enforces only
    /// while its own survey still says the same.
    pub survey: Survey,
    pub last_check_in: Option<i64>,
    pub last_error: Option<LastError>,
}

/// The last thing that went wrong talking to the server or with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: i64,
}

/// `policy.json`: the signed policy as received, plus what was read from it
/// after it verified (kept for `status`; it is verified again on load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldPolicy {
    pub signed: SignedPolicy,
    pub version: u64,
    pub digest: String,
    pub received_at: i64,
}

/// `applied.json`: the outcome of the last enforcement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    /// The policy the statuses are about.
    pub version: Option<u64>,
    pub digest: Option<String>,
    pub enforced_at: Option<i64>,
    /// Per provider, the settings Rampart has set there: what removal undoes.
    pub ledger: BTreeMap<String, BTreeSet<String>>,
    pub statuses: Vec<SettingStatus>,
    /// Settings no longer assigned at the last enforcement and what was done.
    #[serde(default)]
    pub removed: Vec<Removed>,
}

impl Applied {
    /// Whether Rampart has anything in place on the device.
    pub fn holds_settings(&self) -> bool {
        self.ledger.values().any(|s| !s.is_empty())
    }
}

/// Held while `rampart-agent run` runs (see [`StateDir::try_lock_run`]).
#[derive(Debug)]
pub struct RunLock(#[allow(dead_code)] File);

/// `lockout.json`: a change rolled back because the agent could not reach
/// its server after it. The same policy is not applied again by those
/// providers; a new policy (another digest) clears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    /// The policy whose change was rolled back.
    pub digest: Option<String>,
    /// The providers that rolled back.
    pub providers: Vec<String>,
    /// What happened, for the settings' `error_message`.
    pub message: String,
    pub at: i64,
}

/// A setting Rampart stopped managing, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Removed {
    pub setting: String,
    pub provider: String,
    /// `revert` or `keep`, from the catalog.
    pub removal: String,
    /// `reverted` (component default restored), `kept` (value left in
    /// place), or `error: …` (retried next time).
    pub result: String,
}

/// Reads a JSON file written by the agent; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, false)
}

pub fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory. `private`
/// makes the file readable by its owner only (keys), from its creation on.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if private { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(from, e))
}

pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes a rename durable: on Unix the directory entry itself must be
/// flushed. Elsewhere there is nothing to open.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = TempDir::new();
        let path = dir.path().join("a").join("x.json");
        write_atomic(&path, b"one", false).unwrap();
        write_atomic(&path, b"two", false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        state.save_key_and_cert("KEY", "CERT").unwrap();
        let mode = fs::metadata(state.key_pem()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(state.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn missing_files_read_as_none_and_corrupt_ones_as_errors() {
        let dir = TempDir::new();
        let state = StateDir::new(dir.path());
        assert!(state.load_identity().unwrap().is_none());
        assert_eq!(state.load_applied().unwrap(), Applied::default());
        fs::write(state.identity_json(), "{not json").unwrap();
        let e = state.load_identity().unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }

    #[test]
    fn interrupted_renewals_settle() {
        let dir = TempDir::new();
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        state.save_key_and_cert("old key", "old cert").unwrap();

        // Crashed before the server answered: the old pair stays.
        write_atomic(&state.next_key_pem(), b"new key", true).unwrap();
        state.settle_renewal().unwrap();
        assert!(!state.next_key_pem().exists());
        assert_eq!(read_text(&state.key_pem()).unwrap(), "old key");

        // Crashed after the new certificate was stored: finish the swap.
        write_atomic(&state.next_key_pem(), b"new key", true).unwrap();
        write_atomic(&state.next_cert_pem(), b"new cert", false).unwrap();
        state.settle_renewal().unwrap();
        assert_eq!(read_text(&state.key_pem()).unwrap(), "new key");
        assert_eq!(read_text(&state.cert_pem()).unwrap(), "new cert");
        assert!(!state.next_key_pem().exists() && !state.next_cert_pem().exists());

        // Crashed between the two renames: the key moved, the certificate
        // follows.
        write_atomic(&state.key_pem(), b"third key", true).unwrap();
        write_atomic(&state.next_cert_pem(), b"third cert", false).unwrap();
        state.settle_renewal().unwrap();
        assert_eq!(read_text(&state.key_pem()).unwrap(), "third key");
        assert_eq!(read_text(&state.cert_pem()).unwrap(), "third cert");
    }

    #[test]
    fn renewal_threshold_is_two_thirds_into_the_lifetime() {
        let id = Identity {
            tenant_id: "t".into(),
            tenant_name: "T".into(),
            device_id: "d".into(),
            device_name: "n".into(),
            server_url: "https://x".into(),
            policy_key: "k".into(),
            retired_policy_keys: Vec::new(),
            issued_at: 0,
            not_after: 3000,
        };
        assert_eq!(id.renew_at(), 2000);
    }
}
