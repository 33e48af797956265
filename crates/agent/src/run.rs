//! `rampart-agent run`: the long-running loop.
//!
//! At start: survey and facts, then a check-in. After that a check-in on a
//! timer (the configured interval ± jitter), whenever the long poll answers
//! `sync`, and right after a certificate renewal. A background task holds the
//! long poll over the same mutual TLS and reconnects with backoff (1 s
//! doubling to 60 s, jittered) while the server is unreachable.
//!
//! After each check-in the held policy (verified, on disk) is enforced —
//! also when the server could not be reached, so the device keeps its
//! policy offline — the report goes to the outbox, and the outbox is
//! drained. `device_revoked` from any call removes what Rampart set, forgets
//! the credentials, marks the state `revoked`, and ends the loop.
//!
//! Drift: every `drift_check_interval_secs` (and when `rampart-agent
//! check-drift` asks, through `<state>/check-drift.request`) the held policy
//! is enforced again without a check-in: each provider reads its component
//! back, `enforce` notices what was changed by hand, restores it, and the
//! tamper events go into the next status report.
//!
//! Lockout protection: after a provider change that can cut the agent off
//! (a firewall ruleset), the loop checks in again on a *new* connection
//! (pooled ones ride on the established-traffic rule) every couple of
//! seconds. Success confirms the change; when the provider's confirmation
//! window passes first, the change is rolled back, `lockout.json` holds
//! that policy back for that provider until a new one arrives (else the
//! agent would apply it again and again), and its settings are reported
//! `error` with code `lockout_rolled_back`.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use rampart_core::catalog::Catalog;
use rampart_core::resolve::Resolution;
use rampart_proto::device::{
    CheckIn, Facts, KeyAnnouncement, OffboardNotice, ReattestRequest, RenewRequest, Survey,
    TamperEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::channel::{Channel, ChannelError};
use crate::clock::{now, random_unit};
use crate::config::AgentConfig;
use crate::enforce;
use crate::facts::{self, FactsOverride};
use crate::offboard::{stop_managing, OffboardAnswer, OffboardRequest, Offboarded};
use crate::outbox::Outbox;
use crate::providers::{self, Provider};
use crate::state::{
    read_json, read_text, remove_if_exists, write_atomic, write_json, Applied, EnrollmentRecord,
    HeldPolicy, Identity, LastError, LocalState, Lockout, StateDir,
};
use crate::survey::survey;
use crate::verify::{
    follow_key_announcements, verify, verify_notice, verify_stored, Expected, Held, VerifiedPolicy,
};
use crate::{Error, Result};

/// How long after a failed renewal the agent tries again.
const RENEW_RETRY_SECS: i64 = 600;
/// How soon to try again after a failed check-in or a transient provider
/// error (never more often than the configured interval, though).
const RETRY_AFTER: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the loop tries to reach the server while a change waits for
/// its confirmation.
const CONFIRM_RETRY: Duration = Duration::from_secs(2);
/// How often the loop looks for a `check-drift` request.
const DRIFT_REQUEST_POLL: Duration = Duration::from_secs(1);
/// The `error_code` of settings whose change was rolled back.
pub const LOCKOUT_ROLLED_BACK: &str = "lockout_rolled_back";
/// Stable codes of the agent's own state (`status`, logs).
pub const HELD_POLICY_INVALID: &str = "held_policy_invalid";
pub const CERTIFICATE_INVALID: &str = "certificate_invalid";
pub const CERTIFICATE_EXPIRED: &str = "certificate_expired";
pub const DEVICE_KEY_INVALID: &str = "device_key_invalid";
/// How many policy keys left behind by rotations an agent remembers (to
/// verify the policy on disk until the next one arrives).
const MAX_RETIRED_POLICY_KEYS: usize = 8;

/// The verified policy in `state`; `Err` with a [`HELD_POLICY_INVALID`]
/// message when the file is there but does not load or verify.
pub fn held_policy_in(
    state: &StateDir,
    expected: Expected<'_>,
    retired_keys: &[String],
) -> std::result::Result<Option<VerifiedPolicy>, String> {
    let held = match state.load_held_policy() {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::error!(event = HELD_POLICY_INVALID, error = %e, "the policy on disk does not load; it is not enforced, and the server is asked for it again");
            return Err(format!("{HELD_POLICY_INVALID}: {e}"));
        }
    };
    match verify_stored(&held.signed, expected, retired_keys) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::error!(event = HELD_POLICY_INVALID, error = %e, "the policy on disk does not verify; it is not enforced, and the server is asked for it again");
            Err(format!("{HELD_POLICY_INVALID}: {e}"))
        }
    }
}

/// Why `run` returned.
#[derive(Debug, Clone, PartialEq)]
pub enum RunExit {
    /// Asked to stop (SIGTERM, Ctrl-C).
    Stopped,
    /// The tenant revoked the device; Rampart's settings were removed.
    Revoked,
    /// `rampart-agent offboard` asked this agent to leave the tenant, and
    /// it did.
    Offboarded(Offboarded),
}

/// The agent with a trust: everything a check-in needs.
pub struct Agent {
    state: StateDir,
    config: AgentConfig,
    catalog: &'static Catalog,
    identity: Identity,
    channel: Channel,
    /// Bumped whenever `channel` is rebuilt (renewal), so the long poll
    /// picks up the new certificate.
    channel_generation: u64,
    providers: Vec<Box<dyn Provider>>,
    facts: Facts,
    survey: Survey,
    outbox: Outbox,
    renew_not_before: i64,
    /// A transient provider error asks for another pass soon.
    retry_soon: bool,
    /// Whether this process has queued a report yet: the first enforcement
    /// after a start is always reported, so the server learns the device
    /// (re)applied its policy even when nothing changed.
    reported: bool,
    /// Why the device's certificate cannot be used as it is (the server does
    /// not take it, it expired, its file broke): the next check-in
    /// re-attests first. `None` while the certificate is good.
    trust_problem: Option<String>,
}

/// What a check-in achieved, for the long poll's pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckedIn {
    /// The server answered and the device holds its current policy.
    Current,
    /// The server answered but its policy was refused (bad signature,
    /// older version…): the device keeps the one it held.
    PolicyRefused,
}

impl Agent {
    /// Loads the trust from the state directory; surveys and gathers facts.
    pub fn open(
        state: StateDir,
        config: AgentConfig,
        facts_override: Option<FactsOverride>,
    ) -> Result<Agent> {
        let identity = state
            .load_identity()?
            .ok_or_else(|| Error::NotOnboarded(state.root().to_path_buf()))?;
        if let Some(record) = state.load_enrollment()? {
            match record.state {
                LocalState::Revoked => {
                    let why = record
                        .last_error
                        .map_or_else(|| "revoked".to_string(), |e| e.message);
                    return Err(Error::Revoked(why));
                }
                LocalState::NotOnboarded => {
                    return Err(Error::NotOnboarded(state.root().to_path_buf()))
                }
                LocalState::Enrolled | LocalState::NotManaged => {}
            }
        }
        state.settle_renewal()?;
        // A certificate or key that does not load is no reason to stop
        // enforcing: the agent keeps the policy it holds and re-attests.
        let (channel, trust_problem) = match state.load_credentials().and_then(|c| {
            Ok(Channel::mutual(
                &identity.server_url,
                &c.server_ca_pem,
                &c.cert_pem,
                &c.key_pem,
            )?)
        }) {
            Ok(channel) => (channel, None),
            Err(e) => {
                tracing::error!(event = "credentials_invalid", error = %e, "the device certificate or key does not load; re-attesting");
                let server_ca = read_text(&state.server_ca_pem())?;
                (
                    Channel::anonymous(&identity.server_url, &server_ca)?,
                    Some(CERTIFICATE_INVALID.to_string()),
                )
            }
        };
        let overrides = match facts_override {
            Some(o) => Some(o),
            None => read_json::<FactsOverride>(&state.facts_json())?,
        };
        let facts = facts::gather(&config.tags, overrides.as_ref());
        let survey = survey(&config.survey);
        let catalog = Catalog::builtin();
        let providers = providers::build(&config.providers, catalog, &identity.server_url);
        let outbox = Outbox::open(state.outbox_dir())?;
        if now() >= identity.not_after {
            tracing::error!(event = "certificate_expired", not_after = identity.not_after, "the device certificate has expired: the server will refuse this device until it is onboarded again");
        }
        Ok(Agent {
            state,
            config,
            catalog,
            identity,
            channel,
            channel_generation: 0,
            providers,
            facts,
            survey,
            outbox,
            renew_not_before: 0,
            retry_soon: false,
            reported: false,
            trust_problem,
        })
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            tenant_id: &self.identity.tenant_id,
            device_id: &self.identity.device_id,
            policy_key: &self.identity.policy_key,
        }
    }

    /// The policy on disk, verified again (a file edited by hand or broken
    /// by the disk is not enforced, and not claimed: its digest is not sent,
    /// so the server sends the policy again).
    pub fn held_policy(&self) -> Result<Option<VerifiedPolicy>> {
        Ok(held_policy_in(
            &self.state,
            self.expected(),
            &self.identity.retired_policy_keys,
        )
        .ok()
        .flatten())
    }

    fn held_digest(&self) -> Option<String> {
        self.held_policy().ok().flatten().map(|h| h.payload.digest)
    }

    fn record(&self) -> Result<EnrollmentRecord> {
        Ok(self.state.load_enrollment()?.unwrap_or(EnrollmentRecord {
            state: LocalState::NotManaged,
            enrollment: None,
            survey: Survey::default(),
            last_check_in: None,
            last_error: None,
        }))
    }

    /// One check-in (see [`Agent::check_in_once`]), re-attesting first when
    /// the certificate cannot be used, and once more when the server does
    /// not take it.
    pub async fn check_in(&mut self) -> Result<CheckedIn> {
        if self.trust_problem.is_none() && now() >= self.identity.not_after {
            self.trust_problem = Some(CERTIFICATE_EXPIRED.to_string());
        }
        for attempt in 0..2 {
            if self.trust_problem.is_some() {
                if let Err(e) = self.reattest().await {
                    self.note_error(&e)?;
                    self.enforce_current(false)?;
                    return Err(e);
                }
            }
            match self.check_in_once().await {
                Err(Error::Channel(ChannelError::Untrusted { code, message })) if attempt == 0 => {
                    tracing::warn!(event = "certificate_refused", code = %code, reason = %message, "the server does not take this certificate; re-attesting with the enrolled key");
                    self.trust_problem = Some(code);
                }
                other => return other,
            }
        }
        Err(Error::Channel(ChannelError::Untrusted {
            code: self.trust_problem.clone().unwrap_or_default(),
            message: "the server refused the certificate it just issued".into(),
        }))
    }

    /// Records what went wrong in `enrollment.json`, for `status`.
    fn note_error(&self, e: &Error) -> Result<()> {
        let mut record = self.record()?;
        let code = match e {
            Error::Channel(c) => c.code().to_string(),
            _ => self
                .trust_problem
                .clone()
                .unwrap_or_else(|| "error".to_string()),
        };
        record.last_error = Some(LastError {
            code,
            message: e.to_string(),
            at: now(),
        });
        self.state.save_enrollment(&record)
    }

    /// Proves to the server with the enrolled key that this is the device
    /// (`POST /device/v1/reattest`), then takes the new certificate for a
    /// new key, as a renewal does.
    pub async fn reattest(&mut self) -> Result<()> {
        let why = self.trust_problem.clone().unwrap_or_default();
        tracing::info!(event = "reattesting", reason = %why, "proving this device's identity with its enrolled key");
        let key_pem = read_text(&self.state.key_pem()).map_err(|e| {
            Error::Corrupt {
                path: self.state.key_pem(),
                message: format!("{DEVICE_KEY_INVALID}: the enrolled key cannot be read ({e}); an administrator must approve a re-enrollment (`rampart device reenroll {}`) and the device be onboarded again", self.identity.device_name),
            }
        })?;
        let enrolled = rampart_pki::DeviceKey { key_pem };
        let public_key = rampart_pki::device_public_key(&enrolled).map_err(|e| Error::Corrupt {
            path: self.state.key_pem(),
            message: format!("{DEVICE_KEY_INVALID}: {e}"),
        })?;
        // The certificate, when it still parses, proves which key the tenant
        // CA certified (the server may not know it after a restore).
        let certificate_pem = read_text(&self.state.cert_pem())
            .ok()
            .filter(|pem| rampart_pki::cert_not_after(pem).is_ok());
        let next = rampart_pki::new_device_key()?;
        let csr_pem = rampart_pki::csr_pem(&next, &self.identity.device_name)?;
        let message = rampart_pki::attestation_message(
            &self.identity.tenant_id,
            &self.identity.device_id,
            &csr_pem,
        );
        let signature = rampart_pki::sign_with_device_key(&enrolled, &message)?;
        let request = ReattestRequest {
            tenant_id: self.identity.tenant_id.clone(),
            device_id: self.identity.device_id.clone(),
            device_name: self.identity.device_name.clone(),
            certificate_pem,
            public_key,
            signature,
            csr_pem,
            facts: self.facts.clone(),
            survey: self.survey.clone(),
        };
        let server_ca = read_text(&self.state.server_ca_pem())?;
        let anonymous = Channel::anonymous(&self.identity.server_url, &server_ca)?;
        let response = anonymous.reattest(&request).await?;
        if response.device_id != self.identity.device_id {
            return Err(Error::Channel(ChannelError::Protocol {
                url: self.identity.server_url.clone(),
                message: format!("re-attestation answered for device {}", response.device_id),
            }));
        }
        if response.policy_key != self.identity.policy_key {
            // An unsigned answer never changes the key policies are verified
            // with: the next policy brings the signed announcements that
            // lead from this device's key to the tenant's current one.
            tracing::info!(
                event = "policy_key_differs",
                "the tenant's policy key changed; keeping this one until a signed announcement leads to the new one"
            );
        }
        write_atomic(&self.state.next_key_pem(), next.key_pem.as_bytes(), true)?;
        write_atomic(
            &self.state.next_cert_pem(),
            response.certificate_pem.as_bytes(),
            false,
        )?;
        self.state.promote_renewal()?;
        self.identity.issued_at = now();
        self.identity.not_after = response.not_after;
        self.state.save_identity(&self.identity)?;
        self.trust_problem = None;
        self.reconnect()?;
        tracing::info!(
            event = "reattested",
            not_after = response.not_after,
            "re-attested: a new certificate for a new key"
        );
        Ok(())
    }

    /// If the server sent a signed offboarding notice that verifies, stops
    /// managing (removes what Rampart set) and returns true; anything else
    /// leaves every setting in place.
    pub fn offboard_on_notice(
        &mut self,
        message: &str,
        notice: &OffboardNotice,
        key_announcements: &[KeyAnnouncement],
    ) -> Result<bool> {
        self.take_announced_keys(key_announcements)?;
        match verify_notice(notice, self.expected()) {
            Ok(payload) => {
                self.revoke(&format!("{message} ({})", payload.reason))?;
                Ok(true)
            }
            Err(e) => {
                tracing::error!(event = "notice_refused", code = e.code(), error = %e, "an offboarding notice did not verify; keeping the last verified policy enforced");
                self.note_error(&Error::Verify(e))?;
                Ok(false)
            }
        }
    }

    /// Moves to the tenant's rotated policy key when `announcements` lead to
    /// it from the key held, each signed with the key before it; the keys
    /// left behind are kept only to verify the policy already on disk. An
    /// announcement that does not verify changes nothing (fail static: the
    /// policy held stays enforced, and a policy signed with an unknown key
    /// is refused).
    fn take_announced_keys(&mut self, announcements: &[KeyAnnouncement]) -> Result<()> {
        if announcements.is_empty() {
            return Ok(());
        }
        let taken = match follow_key_announcements(
            &self.identity.tenant_id,
            &self.identity.policy_key,
            announcements,
        ) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::error!(event = "policy_key_refused", code = e.code(), error = %e, "refused the announcement of a new policy key; keeping the one held");
                return self.note_error(&Error::Verify(e));
            }
        };
        let Some(newest) = taken.last() else {
            return Ok(());
        };
        let mut retired: Vec<String> = taken[..taken.len() - 1].iter().rev().cloned().collect();
        retired.push(self.identity.policy_key.clone());
        retired.append(&mut self.identity.retired_policy_keys);
        retired.truncate(MAX_RETIRED_POLICY_KEYS);
        self.identity.retired_policy_keys = retired;
        self.identity.policy_key = newest.clone();
        self.state.save_identity(&self.identity)?;
        tracing::info!(
            event = "policy_key_rotated",
            rotations = taken.len(),
            key = %newest,
            "the tenant rotated its policy key; verifying policies with the new one"
        );
        Ok(())
    }

    /// One check-in: renew if due, send digest, facts and survey; store and
    /// enforce what comes back; drain the outbox. When the server cannot be
    /// reached the held policy is enforced anyway and the error returned.
    async fn check_in_once(&mut self) -> Result<CheckedIn> {
        match self.renew_if_due().await {
            Err(Error::Channel(
                e @ (ChannelError::Offboarded { .. } | ChannelError::Untrusted { .. }),
            )) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(event = "renew_failed", error = %e, "certificate renewal failed; retrying later")
            }
            Ok(_) => {}
        }
        // After a change that can cut the agent off, only a call on a new
        // connection proves the server can still be reached.
        let confirming = self.confirm_by().is_some();
        if confirming {
            self.reconnect()?;
        }
        // Only a policy that verifies counts as held: a broken one is not
        // claimed, so the server sends it again.
        let held = self.held_policy()?.map(|v| HeldPolicy {
            version: v.payload.version,
            digest: v.payload.digest.clone(),
            signed: v.signed,
            received_at: 0,
        });
        let request = CheckIn {
            digest: held.as_ref().map(|h| h.digest.clone()),
            version: held.as_ref().map(|h| h.version),
            facts: self.facts.clone(),
            survey: self.survey.clone(),
            policy_key: Some(self.identity.policy_key.clone()),
        };
        let mut record = self.record()?;
        let response = match self.channel.checkin(&request).await {
            Ok(r) => r,
            Err(e @ (ChannelError::Offboarded { .. } | ChannelError::Untrusted { .. })) => {
                return Err(e.into())
            }
            Err(e) => {
                tracing::warn!(event = "check_in_failed", error = %e, "check-in failed; enforcing the last verified policy");
                let expired = now() >= self.identity.not_after;
                record.last_error = Some(if expired {
                    // The server refuses an expired certificate in the TLS
                    // handshake; say what that means rather than how it
                    // looked on the wire.
                    LastError {
                        code: "certificate_expired".into(),
                        message: format!(
                            "the device certificate expired at {} before it could be renewed; onboard the device again ({e})",
                            crate::clock::format_utc(self.identity.not_after)
                        ),
                        at: now(),
                    }
                } else {
                    LastError {
                        code: e.code().to_string(),
                        message: e.to_string(),
                        at: now(),
                    }
                });
                self.state.save_enrollment(&record)?;
                self.enforce_current(false)?;
                return Err(e.into());
            }
        };
        if confirming {
            for provider in &mut self.providers {
                provider.confirmed();
            }
        }

        let mut outcome = CheckedIn::Current;
        record.state = LocalState::of(&response.enrollment);
        record.enrollment = Some(response.enrollment);
        record.survey = self.survey.clone();
        record.last_check_in = Some(now());
        record.last_error = None;
        self.take_announced_keys(&response.key_announcements)?;
        if let Some(signed) = response.policy {
            let held_ref = held.as_ref().map(|h| Held {
                version: h.version,
                digest: &h.digest,
            });
            match verify(&signed, self.expected(), held_ref) {
                Ok(v) => {
                    tracing::info!(event = "policy_received", version = v.payload.version, digest = %v.payload.digest, "verified a new policy");
                    self.state.save_held_policy(&HeldPolicy {
                        version: v.payload.version,
                        digest: v.payload.digest.clone(),
                        signed: v.signed,
                        received_at: now(),
                    })?;
                }
                Err(e) => {
                    tracing::error!(event = "policy_refused", code = e.code(), error = %e, "refused the server's policy; keeping the one held");
                    record.last_error = Some(LastError {
                        code: e.code().to_string(),
                        message: e.to_string(),
                        at: now(),
                    });
                    outcome = CheckedIn::PolicyRefused;
                }
            }
        }
        self.state.save_enrollment(&record)?;
        tracing::info!(
            event = "checked_in",
            state = record.state.as_str(),
            "checked in"
        );
        self.enforce_current(true)?;
        self.drain_outbox().await?;
        Ok(outcome)
    }

    /// Enforces the held policy when Rampart manages the device; removes
    /// what it set when it no longer does. `online`: the enrollment record
    /// was just confirmed by the server; offline, the agent enforces only
    /// while its survey still says what the server decided on.
    /// Returns the hand-made changes it found (and reported).
    ///
    /// Fail static: what decides is the verified policy held and the
    /// device's own survey, never an unsigned answer. Without a policy that
    /// verifies nothing is enforced *and nothing is removed*; only a signed
    /// policy saying the device is out of scope, another management
    /// authority found on the device, or a verified offboarding notice
    /// removes what Rampart set.
    pub fn enforce_current(&mut self, online: bool) -> Result<Vec<TamperEvent>> {
        let _ = online;
        let held = self.held_policy()?;
        let other_authority = self.survey.managed_by.is_some();
        let managed = !other_authority && held.as_ref().is_none_or(|p| p.resolution.managed);
        let mut applied = self.state.load_applied()?;
        if held.is_none() && !other_authority {
            return Ok(Vec::new());
        }
        if !managed {
            remove_if_exists(&self.state.lockout_json())?;
            if applied.holds_settings() {
                tracing::info!(
                    event = "not_managed",
                    "Rampart does not manage this device now; removing what it set"
                );
                let o = enforce::remove_all(&mut self.providers, &applied, self.catalog);
                applied.ledger = o.ledger;
                applied.removed = o.removed;
                applied.statuses.clear();
                applied.enforced_at = Some(now());
                self.state.save_applied(&applied)?;
            }
            return Ok(Vec::new());
        }
        let Some(policy) = held else {
            return Ok(Vec::new());
        };
        let (version, digest) = (policy.payload.version, policy.payload.digest.clone());
        let lockout = self.lockout_for(&digest)?;
        let held_back: Vec<String> = lockout
            .as_ref()
            .map(|l| l.providers.clone())
            .unwrap_or_default();
        let mut o = self.enforce_without(&held_back, &policy.resolution, &applied);
        if let Some(lockout) = &lockout {
            self.mark_rolled_back(&mut o, lockout, &policy.resolution, &applied);
        }
        self.retry_soon = o.retry_soon;
        let changed = applied.version != Some(version)
            || applied.digest.as_deref() != Some(digest.as_str())
            || applied.statuses != o.statuses;
        let tamper = std::mem::take(&mut o.tamper_events);
        if changed || !self.reported || !tamper.is_empty() {
            // The report is durable before anything else records it.
            let mut report = enforce::report(version, &digest, &o.statuses);
            report.tamper_events = tamper.clone();
            self.outbox.push(&report)?;
            self.reported = true;
        }
        applied.version = Some(version);
        applied.digest = Some(digest);
        applied.enforced_at = Some(now());
        applied.ledger = o.ledger;
        applied.statuses = o.statuses;
        applied.removed = o.removed;
        self.state.save_applied(&applied)?;
        Ok(tamper)
    }

    /// The rollback record of the policy `digest`, if its change was rolled
    /// back; a record of another policy is dropped (a new policy is applied
    /// again).
    fn lockout_for(&self, digest: &str) -> Result<Option<Lockout>> {
        let Some(lockout) = self.state.load_lockout()? else {
            return Ok(None);
        };
        if lockout.digest.as_deref() == Some(digest) {
            return Ok(Some(lockout));
        }
        tracing::info!(
            event = "lockout_cleared",
            providers = ?lockout.providers,
            "a new policy arrived: what was rolled back is applied again"
        );
        remove_if_exists(&self.state.lockout_json())?;
        Ok(None)
    }

    /// Enforces with every provider but those named in `held_back`, which
    /// are left exactly as they are.
    fn enforce_without(
        &mut self,
        held_back: &[String],
        resolution: &Resolution,
        applied: &Applied,
    ) -> enforce::Outcome {
        let mut active: Vec<Box<dyn Provider>> = Vec::new();
        let mut held: Vec<(usize, Box<dyn Provider>)> = Vec::new();
        let mut order = Vec::new();
        for (i, p) in std::mem::take(&mut self.providers).into_iter().enumerate() {
            if held_back.iter().any(|n| n == p.name()) {
                held.push((i, p));
            } else {
                order.push(i);
                active.push(p);
            }
        }
        let o = enforce::enforce(resolution, &mut active, applied, self.catalog);
        let mut all: Vec<(usize, Box<dyn Provider>)> = order.into_iter().zip(active).collect();
        all.extend(held);
        all.sort_by_key(|(i, _)| *i);
        self.providers = all.into_iter().map(|(_, p)| p).collect();
        o
    }

    /// The settings of providers whose change was rolled back: `error`
    /// `lockout_rolled_back`, still in the ledger (a later policy without
    /// them undoes them as usual).
    fn mark_rolled_back(
        &self,
        o: &mut enforce::Outcome,
        lockout: &Lockout,
        resolution: &Resolution,
        applied: &Applied,
    ) {
        for name in &lockout.providers {
            let Some(provider) = self.providers.iter().find(|p| p.name() == name) else {
                continue;
            };
            let settings: BTreeSet<String> = resolution
                .settings
                .iter()
                .filter(|s| resolution.managed && provider.handles(&s.setting))
                .map(|s| s.setting.clone())
                .collect();
            let mut ledger = applied.ledger.get(name).cloned().unwrap_or_default();
            ledger.extend(settings.iter().cloned());
            if !ledger.is_empty() {
                o.ledger.insert(name.clone(), ledger);
            }
            for s in o
                .statuses
                .iter_mut()
                .filter(|s| s.key.is_none() && settings.contains(&s.setting))
            {
                s.status = "error".into();
                s.observed = None;
                s.error_code = Some(LOCKOUT_ROLLED_BACK.into());
                s.error_message = Some(format!("{name}: {}", lockout.message));
            }
        }
    }

    /// The earliest deadline of a provider change the server has not been
    /// reached since.
    pub fn confirm_by(&self) -> Option<std::time::Instant> {
        self.providers.iter().filter_map(|p| p.confirm_by()).min()
    }

    /// Rolls back every change whose confirmation window has passed,
    /// records it (`lockout.json`) and reports it.
    pub fn roll_back_unconfirmed(&mut self) -> Result<()> {
        let now_instant = std::time::Instant::now();
        let mut rolled = Vec::new();
        let mut failures = Vec::new();
        for provider in &mut self.providers {
            if provider.confirm_by().is_some_and(|by| by <= now_instant) {
                let name = provider.name();
                if let Err(e) = provider.roll_back() {
                    failures.push(format!("{name}: {}", e.message));
                }
                rolled.push(name.to_string());
            }
        }
        if rolled.is_empty() {
            return Ok(());
        }
        let window = self.config.providers.nftables.confirm_window.as_secs();
        let mut message = format!(
            "the change cut the agent off from its server ({}): no check-in succeeded within the {window} s confirmation window, so the previous ruleset was restored; this policy is not applied again until it changes",
            self.identity.server_url
        );
        if !failures.is_empty() {
            message.push_str(&format!(" (restoring failed: {})", failures.join("; ")));
        }
        tracing::error!(event = "lockout_rolled_back", providers = ?rolled, "{message}");
        let digest = self
            .state
            .load_applied()?
            .digest
            .or_else(|| self.held_digest());
        self.state.save_lockout(&Lockout {
            digest,
            providers: rolled,
            message,
            at: now(),
        })?;
        // Connections made while cut off may hang: start afresh.
        self.reconnect()?;
        self.enforce_current(false)?;
        Ok(())
    }

    /// A drift read-back: the held policy enforced again (no check-in),
    /// then the outbox drained. Returns what was found changed by hand.
    pub async fn check_drift_now(&mut self) -> Result<Vec<TamperEvent>> {
        let events = self.enforce_current(false)?;
        if events.is_empty() {
            tracing::debug!(event = "drift_checked", "no drift");
        } else {
            tracing::warn!(
                event = "drift_checked",
                changed = events.len(),
                "settings changed by hand were found; restored and reported"
            );
        }
        self.drain_outbox().await?;
        Ok(events)
    }

    /// Until no change waits for confirmation: tries to check in on a new
    /// connection, and rolls back once the window passes. For commands
    /// that enforce outside the run loop (`check-drift`).
    pub async fn settle_confirmation(&mut self) -> Result<()> {
        while let Some(by) = self.confirm_by().map(Instant::from_std) {
            if Instant::now() >= by {
                self.roll_back_unconfirmed()?;
                if let Err(e) = self.check_in().await {
                    tracing::warn!(event = "check_in_failed", error = %e);
                }
                break;
            }
            let url = self.identity.server_url.clone();
            match bounded(Some(by), &url, self.check_in()).await {
                Err(Error::Channel(e @ ChannelError::Offboarded { .. })) => return Err(e.into()),
                Err(e) => tracing::warn!(event = "confirmation_failed", error = %e),
                Ok(_) => {}
            }
            if self.confirm_by().is_some() {
                tokio::time::sleep(CONFIRM_RETRY.min(by.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
        Ok(())
    }

    /// A new channel (and so new connections) with the current credentials.
    fn reconnect(&mut self) -> Result<()> {
        let credentials = self.state.load_credentials()?;
        self.channel = Channel::mutual(
            &self.identity.server_url,
            &credentials.server_ca_pem,
            &credentials.cert_pem,
            &credentials.key_pem,
        )?;
        self.channel_generation += 1;
        Ok(())
    }

    /// Answers a `check-drift` request: the result file, then the request
    /// removed.
    fn answer_drift_request(&self, answer: &Result<Vec<TamperEvent>>) -> Result<()> {
        let body = match answer {
            Ok(events) => DriftAnswer {
                tamper_events: events.clone(),
                error: None,
            },
            Err(e) => DriftAnswer {
                tamper_events: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        write_json(&self.state.drift_result(), &body)?;
        remove_if_exists(&self.state.drift_request())
    }

    /// Sends pending reports in order; stops at the first that cannot be
    /// sent now.
    pub async fn drain_outbox(&mut self) -> Result<()> {
        for report in self.outbox.pending()? {
            match self.channel.report_status(&report).await {
                Ok(_) => self.outbox.ack(&report.report_id)?,
                // Not the report's fault: it stays for after re-attestation.
                Err(e @ (ChannelError::Offboarded { .. } | ChannelError::Untrusted { .. })) => {
                    return Err(e.into())
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(event = "report_deferred", error = %e, "status report not sent; it stays in the outbox");
                    break;
                }
                Err(e) => {
                    tracing::error!(event = "report_rejected", report_id = %report.report_id, error = %e, "the server refused a status report; set aside");
                    self.outbox.reject(&report.report_id)?;
                }
            }
        }
        Ok(())
    }

    /// Renews the certificate once less than a third of its lifetime is
    /// left: a new key (written before the server is asked, so a certificate
    /// issued for it is never without it), a CSR, the new certificate stored,
    /// then both swapped in.
    pub async fn renew_if_due(&mut self) -> Result<bool> {
        let t = now();
        if t < self.identity.renew_at() || t < self.renew_not_before {
            return Ok(false);
        }
        self.renew_not_before = t + RENEW_RETRY_SECS;
        tracing::info!(
            event = "renewing",
            not_after = self.identity.not_after,
            "renewing the device certificate"
        );
        let key = rampart_pki::new_device_key()?;
        let csr_pem = rampart_pki::csr_pem(&key, &self.identity.device_name)?;
        write_atomic(&self.state.next_key_pem(), key.key_pem.as_bytes(), true)?;
        let response = match self.channel.renew(&RenewRequest { csr_pem }).await {
            Ok(r) => r,
            Err(e) => {
                remove_if_exists(&self.state.next_key_pem())?;
                return Err(e.into());
            }
        };
        write_atomic(
            &self.state.next_cert_pem(),
            response.certificate_pem.as_bytes(),
            false,
        )?;
        self.state.promote_renewal()?;
        self.identity.issued_at = now();
        self.identity.not_after = response.not_after;
        self.state.save_identity(&self.identity)?;
        if self.identity.renew_at() <= now() {
            tracing::warn!(event = "clock_skew", not_after = response.not_after, "the new certificate is already due for renewal: this device's clock and the server's disagree");
        }
        self.reconnect()?;
        tracing::info!(
            event = "renewed",
            not_after = response.not_after,
            "renewed the device certificate"
        );
        Ok(true)
    }

    /// The tenant revoked the device: undo, forget, record.
    pub fn revoke(&mut self, message: &str) -> Result<()> {
        tracing::warn!(event = "revoked", reason = %message, "the device was revoked; removing Rampart's settings");
        stop_managing(&self.state, &mut self.providers, self.catalog)?;
        self.state.forget_credentials()?;
        let mut record = self.record()?;
        record.state = LocalState::Revoked;
        record.enrollment = None;
        record.last_error = Some(LastError {
            code: rampart_proto::device::codes::DEVICE_REVOKED.to_string(),
            message: message.to_string(),
            at: now(),
        });
        self.state.save_enrollment(&record)
    }

    /// When the timer should next wake the loop for a renewal.
    fn renewal_due_in(&self) -> Duration {
        let at = self.identity.renew_at().max(self.renew_not_before);
        Duration::from_secs(u64::try_from(at - now()).unwrap_or(0))
    }

    fn wait_target(&self) -> WaitTarget {
        WaitTarget {
            generation: self.channel_generation,
            channel: self.channel.clone(),
            digest: self.held_digest(),
        }
    }
}

/// What the long poll waits with.
#[derive(Clone)]
struct WaitTarget {
    generation: u64,
    channel: Channel,
    digest: Option<String>,
}

impl WaitTarget {
    fn same_as(&self, other: &WaitTarget) -> bool {
        self.generation == other.generation && self.digest == other.digest
    }
}

/// What the long poll tells the loop.
enum WaitEvent {
    /// Check in now; answer whether the device then holds a current policy.
    Sync(oneshot::Sender<bool>),
    /// The server answers again after an outage.
    Reconnected,
    /// The long poll was refused: the certificate is not taken, or the
    /// device was offboarded. A check-in decides what it means.
    Refused(String),
}

/// Runs until `shutdown` completes or the device is revoked.
pub async fn run(
    state: StateDir,
    config: AgentConfig,
    facts_override: Option<FactsOverride>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunExit> {
    let Some(_lock) = state.try_lock_run()? else {
        return Err(Error::Busy(state.root().to_path_buf()));
    };
    let wait_timeout = config.wait_timeout_secs;
    let interval = config.check_in_interval;
    let drift_every = config.drift_check_interval;
    let mut agent = Agent::open(state, config, facts_override)?;
    // Requests a `check-drift` or an `offboard` left behind when they gave
    // up are stale: acting on them now would surprise (fail static).
    remove_if_exists(&agent.state.drift_request())?;
    remove_if_exists(&agent.state.offboard_request())?;
    tracing::info!(
        event = "started",
        device_id = %agent.identity.device_id,
        server = %agent.identity.server_url,
        managed_by = ?agent.survey.managed_by,
        "rampart-agent running"
    );

    // The long poll starts after the first check-in, with the digest that
    // check-in produced: started before, it would answer `sync` at once.
    let (event_tx, mut event_rx) = mpsc::channel(4);
    let mut event_tx = Some(event_tx);
    let mut push: Option<(watch::Sender<WaitTarget>, AbortOnDrop)> = None;
    tokio::pin!(shutdown);

    let mut next_check_in = Instant::now();
    let mut next_drift = Instant::now() + drift_every;
    let mut requests = tokio::time::interval(DRIFT_REQUEST_POLL);
    requests.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_ok = false;
    loop {
        // While a change waits for confirmation, every check-in is bounded
        // by its deadline, and the deadline itself wakes the loop.
        let confirm_by = agent.confirm_by().map(Instant::from_std);
        let due = next_check_in.min(Instant::now() + agent.renewal_due_in());
        let wake = due.min(next_drift).min(confirm_by.unwrap_or(due));
        let url = agent.identity.server_url.clone();
        let result = tokio::select! {
            () = &mut shutdown => {
                tracing::info!(event = "stopping", "rampart-agent stopping");
                return Ok(RunExit::Stopped);
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if confirm_by.is_some_and(|by| now >= by) {
                    if let Err(e) = agent.roll_back_unconfirmed() {
                        tracing::error!(event = "rollback_error", error = %e);
                    }
                    Some(agent.check_in().await)
                } else if now >= due {
                    Some(bounded(confirm_by, &url, agent.check_in()).await)
                } else {
                    next_drift = now + drift_every;
                    match agent.check_drift_now().await {
                        Err(Error::Channel(ChannelError::Offboarded {
                            message,
                            notice,
                            key_announcements,
                        })) => {
                            if agent.offboard_on_notice(&message, &notice, &key_announcements)? {
                                return Ok(RunExit::Revoked);
                            }
                        }
                        Err(e) => tracing::error!(event = "drift_check_failed", error = %e),
                        Ok(_) => {}
                    }
                    None
                }
            }
            _ = requests.tick() => {
                if let Some(request) = read_json::<OffboardRequest>(&agent.state.offboard_request())? {
                    remove_if_exists(&agent.state.offboard_request())?;
                    tracing::info!(event = "offboard_requested", force = request.force, "rampart-agent offboard asked this agent to leave the tenant");
                    let outcome = crate::offboard::offboard(&agent.state, &agent.config, request.force).await;
                    let answer = match &outcome {
                        Ok(done) => OffboardAnswer { offboarded: Some(done.clone()), error: None },
                        Err(e) => OffboardAnswer { offboarded: None, error: Some(e.to_string()) },
                    };
                    write_json(&agent.state.offboard_result(), &answer)?;
                    match outcome {
                        Ok(done) => return Ok(RunExit::Offboarded(done)),
                        Err(e) => tracing::error!(event = "offboard_failed", error = %e, "offboarding failed; the device stays managed"),
                    }
                }
                if agent.state.drift_request().exists() {
                    tracing::info!(event = "drift_requested", "check-drift asked for a read-back");
                    next_drift = Instant::now() + drift_every;
                    let answer = agent.check_drift_now().await;
                    agent.answer_drift_request(&answer)?;
                    if let Err(Error::Channel(ChannelError::Offboarded {
                            message,
                            notice,
                            key_announcements,
                        })) = answer {
                        if agent.offboard_on_notice(&message, &notice, &key_announcements)? {
                            return Ok(RunExit::Revoked);
                        }
                    }
                }
                None
            }
            Some(event) = event_rx.recv() => Some(match event {
                WaitEvent::Sync(done) => {
                    tracing::info!(event = "sync", "the server asked for a check-in");
                    let result = bounded(confirm_by, &url, agent.check_in()).await;
                    let _ = done.send(matches!(result, Ok(CheckedIn::Current)));
                    result
                }
                WaitEvent::Reconnected if last_ok => {
                    agent.drain_outbox().await.map(|()| CheckedIn::Current)
                }
                WaitEvent::Reconnected => bounded(confirm_by, &url, agent.check_in()).await,
                // The long poll may have used a certificate a renewal just
                // superseded: only a check-in with the current one decides.
                WaitEvent::Refused(message) => {
                    tracing::info!(event = "wait_refused", reason = %message, "the push channel was refused; confirming with a check-in");
                    bounded(confirm_by, &url, agent.check_in()).await
                }
            }),
        };
        let Some(result) = result else {
            // A drift check may have changed a firewall: confirm it soon.
            if agent.confirm_by().is_some() {
                next_check_in = next_check_in.min(Instant::now() + CONFIRM_RETRY);
            }
            continue;
        };
        match result {
            Ok(_) => {
                last_ok = true;
                let delay = if agent.retry_soon {
                    RETRY_AFTER.min(interval)
                } else {
                    agent.config.next_check_in(random_unit())
                };
                next_check_in = Instant::now() + delay;
            }
            Err(Error::Channel(ChannelError::Offboarded {
                message,
                notice,
                key_announcements,
            })) => {
                if agent.offboard_on_notice(&message, &notice, &key_announcements)? {
                    return Ok(RunExit::Revoked);
                }
                last_ok = false;
                next_check_in = Instant::now() + RETRY_AFTER.min(interval);
            }
            Err(e) => {
                last_ok = false;
                // Channel failures were logged where they happened.
                if !matches!(e, Error::Channel(_)) {
                    tracing::error!(event = "check_in_error", error = %e);
                }
                next_check_in = Instant::now() + RETRY_AFTER.min(interval);
            }
        }
        if agent.confirm_by().is_some() {
            next_check_in = next_check_in.min(Instant::now() + CONFIRM_RETRY);
        }
        let target = agent.wait_target();
        match (&push, event_tx.take()) {
            (None, Some(tx)) => {
                let (target_tx, target_rx) = watch::channel(target);
                let task = tokio::spawn(wait_loop(target_rx, tx, wait_timeout));
                push = Some((target_tx, AbortOnDrop(task)));
            }
            (Some((target_tx, _)), _) => {
                target_tx.send_if_modified(|current| {
                    if current.same_as(&target) {
                        false
                    } else {
                        *current = target;
                        true
                    }
                });
            }
            (None, None) => {}
        }
    }
}

/// `fut`, given up at `by` (a confirmation deadline) as if the server had
/// not answered.
async fn bounded<T>(
    by: Option<Instant>,
    url: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(by) = by else {
        return fut.await;
    };
    match tokio::time::timeout_at(by, fut).await {
        Ok(result) => result,
        Err(_) => Err(Error::Channel(ChannelError::Unreachable {
            url: url.to_string(),
            message: "no answer before the confirmation window closed".into(),
        })),
    }
}

/// `<state>/check-drift.result`: the running agent's answer to a
/// `check-drift` request.
#[derive(Debug, Serialize, Deserialize)]
struct DriftAnswer {
    tamper_events: Vec<TamperEvent>,
    error: Option<String>,
}

/// What `rampart-agent check-drift` found.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftCheck {
    /// The running agent did the read-back (else this command did).
    pub by_running_agent: bool,
    /// What was found changed by hand, and whether it was restored.
    pub tamper_events: Vec<TamperEvent>,
}

impl std::fmt::Display for DriftCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.by_running_agent {
            "the running agent"
        } else {
            "this command (no `rampart-agent run` is running)"
        };
        writeln!(f, "drift read-back done by {who}")?;
        if self.tamper_events.is_empty() {
            return writeln!(
                f,
                "no drift: everything Rampart set reads back as it set it"
            );
        }
        let show = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .map_or_else(|| "nothing".to_string(), |v| v.to_string())
        };
        for t in &self.tamper_events {
            writeln!(
                f,
                "  {} ({}): expected {}, found {}; {}",
                t.setting,
                t.provider,
                show(&t.expected),
                show(&t.found),
                if t.restored {
                    "restored"
                } else {
                    "NOT restored"
                }
            )?;
        }
        Ok(())
    }
}

/// `rampart-agent check-drift`: a drift read-back now. When `run` is
/// running (it holds `run.lock`), it is asked to do it and its answer is
/// awaited up to `wait`; else this process does it, and also settles a
/// firewall change it made (confirms it with a check-in, or rolls it back).
pub async fn check_drift(
    state: StateDir,
    config: AgentConfig,
    wait: Duration,
) -> Result<DriftCheck> {
    if let Some(_lock) = state.try_lock_run()? {
        let mut agent = Agent::open(state, config, None)?;
        let tamper_events = agent.check_drift_now().await?;
        agent.settle_confirmation().await?;
        return Ok(DriftCheck {
            by_running_agent: false,
            tamper_events,
        });
    }
    remove_if_exists(&state.drift_result())?;
    write_atomic(&state.drift_request(), b"{}\n", false)?;
    let deadline = Instant::now() + wait;
    loop {
        if let Some(answer) = read_json::<DriftAnswer>(&state.drift_result())? {
            remove_if_exists(&state.drift_result())?;
            if let Some(e) = answer.error {
                return Err(Error::DriftCheck(format!("the running agent failed: {e}")));
            }
            return Ok(DriftCheck {
                by_running_agent: true,
                tamper_events: answer.tamper_events,
            });
        }
        if Instant::now() >= deadline {
            remove_if_exists(&state.drift_request())?;
            return Err(Error::DriftCheck(format!(
                "the running agent did not answer within {} s",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The push channel: long polls, one after the other, with backoff while
/// the server cannot be reached.
async fn wait_loop(
    mut target: watch::Receiver<WaitTarget>,
    events: mpsc::Sender<WaitEvent>,
    timeout_secs: u64,
) {
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        let current = target.borrow_and_update().clone();
        let result = tokio::select! {
            r = current.channel.wait(current.digest.as_deref(), timeout_secs) => r,
            changed = target.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        match result {
            Ok(answer) if answer.event == "sync" => {
                failing = false;
                let (done_tx, done_rx) = oneshot::channel();
                if events.send(WaitEvent::Sync(done_tx)).await.is_err() {
                    return;
                }
                // A check-in that left the device behind (server down, policy
                // refused) would make the next poll answer `sync` at once:
                // back off instead of spinning.
                if done_rx.await.unwrap_or(false) {
                    backoff.reset();
                } else {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
            Ok(_) => {
                if failing {
                    failing = false;
                    backoff.reset();
                    if events.send(WaitEvent::Reconnected).await.is_err() {
                        return;
                    }
                }
            }
            Err(e @ (ChannelError::Offboarded { .. } | ChannelError::Untrusted { .. })) => {
                if events
                    .send(WaitEvent::Refused(e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
                // Revoked for real, the loop ends and so does this task;
                // else a renewed certificate arrives through `target`.
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                failing = true;
                let delay = backoff.next_delay();
                tracing::warn!(event = "wait_failed", error = %e, retry_in_ms = delay.as_millis() as u64, "push channel down; reconnecting");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// 1 s doubling to 60 s, each delay jittered to between half and all of it,
/// so devices that lost the server together do not come back together.
struct Backoff {
    current: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            current: BACKOFF_START,
        }
    }

    fn reset(&mut self) {
        self.current = BACKOFF_START;
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.current.mul_f64(0.5 + 0.5 * random_unit());
        self.current = (self.current * 2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4) && delays[3] <= Duration::from_secs(8));
        for d in &delays {
            assert!(*d <= BACKOFF_MAX);
        }
        assert!(delays[9] >= Duration::from_secs(30));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
