//! Staged rollouts on the server: starting one when a policy changes, the
//! revision each device is entitled to, reading the health gates at the end
//! of every soak, and the steps administrators take (pause, resume, advance,
//! abort).
//!
//! A rollout is a versioned store document named after its policy
//! (`ObjectKind::Rollout`): every step writes a new version with an
//! expected-version check, so of two replicas reading the same gate only one
//! advances, and the document's history is the rollout's.
//!
//! Decisions this module keeps:
//! - One rollout per policy. A change to a policy whose rollout is running or
//!   paused joins it: devices already reached get the newest revision, the
//!   others keep the revision they had before the rollout began and skip
//!   straight to the newest when their stage comes; the current stage's soak
//!   starts again. The running rollout keeps its stages and gates.
//! - Rolling back writes the previous revision back as the policy's next
//!   version (or deletes a policy the rollout created, or re-creates one it
//!   deleted), so every device converges on it at once and the policy's
//!   history shows what happened.

use rampart_core::catalog::Catalog;
use rampart_core::model::Policy;
use rampart_core::rollout::{
    bucket, choice_from_json, failed_gates, percent_text, spec_from_json, GateInputs, OnFailure,
    RolloutChoice, RolloutSpec, StageTarget,
};
use rampart_core::validate::policy_from_json;
use rampart_proto::{GateValues, Rollout, RolloutEvent, RolloutStageView, RolloutView};
use rampart_store::{Expect, NewAudit, ObjectKind, ObjectRecord, StoreError, Write};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::state::AppState;

/// The actor of steps the server takes by itself.
pub const SERVER_ACTOR: &str = "rampart-server (rollout gates)";

pub const RUNNING: &str = "running";
pub const PAUSED: &str = "paused";
pub const COMPLETED: &str = "completed";
pub const ROLLED_BACK: &str = "rolled_back";

/// The agent's error code for a firewall change it rolled back because the
/// change cut it off from the server.
const LOCKOUT_CODE: &str = "lockout_rolled_back";

/// A rollout that decides what devices get: running or paused.
#[derive(Debug, Clone)]
pub struct ActiveRollout {
    pub policy: String,
    pub id: String,
    pub stage: usize,
    pub spec: RolloutSpec,
    /// The revision devices not yet reached keep; `None` when the change
    /// created the policy.
    pub previous: Option<Policy>,
}

impl ActiveRollout {
    /// The rollout a stored document describes, if it is still active.
    pub fn from_record(record: &ObjectRecord, catalog: &Catalog) -> Option<ActiveRollout> {
        let rollout: Rollout = serde_json::from_value(record.doc.clone()).ok()?;
        if rollout.state != RUNNING && rollout.state != PAUSED {
            return None;
        }
        let spec = spec_from_json(&rollout.spec).ok()?;
        let previous = match &rollout.previous {
            Some(doc) => Some(
                policy_from_json(
                    &previous_policy_doc(doc),
                    catalog,
                    rollout.from_version.unwrap_or(1),
                    previous_modified_at(&rollout),
                )
                .ok()?,
            ),
            None => None,
        };
        Some(ActiveRollout {
            policy: rollout.policy,
            id: rollout.id,
            stage: rollout.stage,
            spec,
            previous,
        })
    }

    /// Whether the device has been given the new revision.
    pub fn reaches(&self, device_id: &str, member_of: impl Fn(&str) -> bool) -> bool {
        self.spec
            .reaches(self.stage, bucket(&self.id, device_id), member_of)
    }

    /// The stage that reaches the device (0-based); `None`: only completion.
    pub fn stage_of(&self, device_id: &str, member_of: impl Fn(&str) -> bool) -> Option<usize> {
        self.spec.stage_of(bucket(&self.id, device_id), member_of)
    }
}

/// When the previous revision was last modified: kept in the document so
/// that its resolution (and digest) is exactly the one devices hold.
fn previous_modified_at(rollout: &Rollout) -> i64 {
    rollout
        .previous
        .as_ref()
        .and_then(|d| d.get("modified_at"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The previous revision as the rollout stores it: the policy document, plus
/// its modification time (which resolution reads).
fn previous_doc(record: &ObjectRecord) -> Value {
    let mut doc = record.doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("modified_at".into(), json!(record.modified_at));
    }
    doc
}

/// The policy document of a stored previous revision (without the
/// modification time it carries for resolution).
fn previous_policy_doc(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("modified_at");
    }
    doc
}

pub fn read(record: &ObjectRecord) -> ApiResult<Rollout> {
    serde_json::from_value(record.doc.clone()).map_err(|e| {
        ApiError::Internal(format!(
            "stored rollout of policy {:?} is unreadable: {e}",
            record.name
        ))
    })
}

fn to_doc(rollout: &Rollout) -> Value {
    serde_json::to_value(rollout).unwrap_or(Value::Null)
}

/// A rollout's id, from the change that starts it: the preview of a change
/// computes the same id, so the stages it shows are the ones devices get.
pub fn rollout_id(
    tenant: &str,
    policy: &str,
    from_version: Option<u64>,
    after: Option<&Value>,
) -> String {
    use sha2::Digest;
    let text = format!(
        "{tenant}\n{policy}\n{}\n{}",
        from_version.unwrap_or(0),
        after.map_or_else(|| "deleted".to_string(), Value::to_string)
    );
    let hash = sha2::Sha256::digest(text.as_bytes());
    hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn audit_entry(actor: &str, action: &str, policy: &str, rollout: &Rollout) -> NewAudit {
    NewAudit {
        actor: actor.to_string(),
        action: format!("rollout.{action}"),
        object_kind: "rollout".into(),
        object_name: policy.to_string(),
        before: None,
        after: Some(json!({
            "id": rollout.id,
            "state": rollout.state,
            "stage": rollout.stage,
            "reason": rollout.reason,
            "gates": rollout.gates,
        })),
    }
}

/// The writes (for the same batch as the change) that start the rollout of
/// a change to policy `name`, or make the change join the running one.
/// `before` is the stored policy (none: the change creates it); `after` the
/// new document (none: the change deletes it). Nothing when the change goes
/// everywhere at once.
pub async fn on_policy_change(
    state: &AppState,
    tenant: &str,
    actor: &str,
    name: &str,
    before: Option<&ObjectRecord>,
    after: Option<&Value>,
) -> ApiResult<(Vec<Write>, Vec<NewAudit>)> {
    let now = state.clock.now();
    let current = state
        .store
        .object(tenant, ObjectKind::Rollout, name)
        .await?;
    if let Some(record) = &current {
        let mut rollout = read(record)?;
        if rollout.state == RUNNING || rollout.state == PAUSED {
            rollout.stage_started_at = now;
            rollout.deletes = after.is_none();
            rollout.history.push(RolloutEvent {
                at: now,
                actor: actor.to_string(),
                action: "superseded".into(),
                stage: rollout.stage,
                detail: Some(if after.is_some() {
                    "the policy changed again: reached devices get the newest revision, the others skip to it at their stage; the stage's soak starts again".into()
                } else {
                    "the policy was deleted: reached devices lose it, the others at their stage".into()
                }),
                gates: None,
            });
            return Ok((
                vec![put(name, &rollout, Expect::Version(record.version), actor)],
                vec![audit_entry(actor, "superseded", name, &rollout)],
            ));
        }
    }
    let choice = after
        .or(before.map(|b| &b.doc))
        .map(|doc| choice_from_json(doc.get("rollout")))
        .transpose()
        .map_err(ApiError::Validation)?
        .unwrap_or_default();
    let spec = match choice {
        RolloutChoice::Immediate => return Ok((Vec::new(), Vec::new())),
        RolloutChoice::Staged(spec) => spec,
        RolloutChoice::TenantDefault => {
            match state
                .policies
                .get(state, tenant)
                .await?
                .settings
                .default_rollout
                .clone()
            {
                Some(spec) => spec,
                None => return Ok((Vec::new(), Vec::new())),
            }
        }
    };
    let rollout = Rollout {
        id: rollout_id(tenant, name, before.map(|b| b.version), after),
        policy: name.to_string(),
        state: RUNNING.into(),
        stage: 0,
        spec: rampart_core::rollout::spec_to_json(&spec),
        from_version: before.map(|b| b.version),
        previous: before.map(previous_doc),
        deletes: after.is_none(),
        started_at: now,
        started_by: actor.to_string(),
        stage_started_at: now,
        reason: None,
        gates: None,
        history: vec![RolloutEvent {
            at: now,
            actor: actor.to_string(),
            action: "start".into(),
            stage: 0,
            detail: Some(format!(
                "stage 1 of {}: {}",
                spec.stages.len(),
                stage_text(&spec, 0)
            )),
            gates: None,
        }],
    };
    let expect = current.map_or(Expect::Absent, |r| Expect::Version(r.version));
    Ok((
        vec![put(name, &rollout, expect, actor)],
        vec![audit_entry(actor, "start", name, &rollout)],
    ))
}

/// The rollout a change to `policy` would go out with, as a preview sees
/// it: the running one it would join, or the one it would start (with the
/// id it would get); `None` when it would go everywhere at once.
pub fn previewed(
    tenant: &str,
    before: &Fleet,
    default: Option<&RolloutSpec>,
    policy: &str,
    after: Option<&Value>,
) -> Option<ActiveRollout> {
    if let Some(running) = before.rollouts.iter().find(|r| r.policy == policy) {
        return Some(running.clone());
    }
    let record = before.policy_records.iter().find(|r| r.name == policy);
    let doc = after.or(record.map(|r| &r.doc))?;
    let spec = match choice_from_json(doc.get("rollout")).ok()? {
        RolloutChoice::Immediate => return None,
        RolloutChoice::Staged(spec) => spec,
        RolloutChoice::TenantDefault => default?.clone(),
    };
    Some(ActiveRollout {
        policy: policy.to_string(),
        id: rollout_id(tenant, policy, record.map(|r| r.version), after),
        stage: 0,
        spec,
        previous: None,
    })
}

/// Where a device stands in a (previewed) rollout, in words:
/// `stage 2 of 3 (50%)`; `…, at once` when that stage has begun (a new
/// rollout's first stage begins when the change is saved).
pub fn stage_of_device(
    rollout: &ActiveRollout,
    device_id: &str,
    member_of: impl Fn(&str) -> bool,
) -> String {
    let n = rollout.spec.stages.len();
    match rollout.stage_of(device_id, member_of) {
        Some(k) if k <= rollout.stage => {
            format!(
                "stage {} of {n} ({}), at once",
                k + 1,
                stage_text(&rollout.spec, k)
            )
        }
        Some(k) => format!("stage {} of {n} ({})", k + 1, stage_text(&rollout.spec, k)),
        None => format!("at completion, after stage {n}"),
    }
}

fn put(name: &str, rollout: &Rollout, expect: Expect, by: &str) -> Write {
    Write::PutObject {
        kind: ObjectKind::Rollout,
        name: name.to_string(),
        doc: to_doc(rollout),
        expect,
        by: by.to_string(),
    }
}

fn stage_text(spec: &RolloutSpec, stage: usize) -> String {
    match spec.stages.get(stage).map(|s| &s.target) {
        Some(StageTarget::Percent(bp)) => percent_text(*bp),
        Some(StageTarget::Group(g)) => format!("group {g}"),
        None => "every device".into(),
    }
}

/// A rollout as the API shows it, with its devices counted in `fleet`.
pub fn view(record: &ObjectRecord, fleet: &Fleet) -> ApiResult<RolloutView> {
    let rollout = read(record)?;
    let spec = spec_from_json(&rollout.spec).map_err(|e| {
        ApiError::Internal(format!("stored rollout specification is unreadable: {e:?}"))
    })?;
    let stages = spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| RolloutStageView {
            target: stage_text(&spec, i),
            soak_secs: s.soak_secs,
        })
        .collect();
    let soak_ends_at = (rollout.state == RUNNING)
        .then(|| spec.stages.get(rollout.stage))
        .flatten()
        .map(|s| rollout.stage_started_at + s.soak_secs as i64);
    let (targeted, reached) = count_devices(fleet, &rollout);
    Ok(RolloutView {
        to_version: fleet
            .policy_records
            .iter()
            .find(|p| p.name == rollout.policy)
            .map(|p| p.version),
        rollout,
        stages,
        soak_ends_at,
        devices_targeted: targeted,
        devices_reached: reached,
        version: record.version,
    })
}

/// Devices the policy targets before or after the change, and how many of
/// them have the new revision.
fn count_devices(fleet: &Fleet, rollout: &Rollout) -> (u64, u64) {
    let (mut targeted, mut reached) = (0, 0);
    for record in &fleet.devices {
        let entitled = match fleet.rollout_entitlement(record, &rollout.policy) {
            Some(e) => Some(e.reached),
            // Finished: the policy as it stands is what every device has,
            // the new revision when completed, the old one when rolled back.
            None if rollout.state == COMPLETED || rollout.state == ROLLED_BACK => fleet
                .targeted_by(record, &rollout.policy)
                .then_some(rollout.state == COMPLETED),
            None => None,
        };
        if let Some(is_reached) = entitled {
            targeted += 1;
            reached += u64::from(is_reached);
        }
    }
    (targeted, reached)
}

/// What the gates read for a rollout over the devices it has reached.
async fn measure(
    state: &AppState,
    tenant: &str,
    fleet: &Fleet,
    rollout: &Rollout,
) -> ApiResult<GateValues> {
    let statuses = crate::api::reports::by_device(state.store.statuses(tenant).await?);
    let mut inputs = GateInputs::default();
    let mut reached_names = std::collections::BTreeSet::new();
    for record in &fleet.devices {
        let Some(entitled) = fleet.rollout_entitlement(record, &rollout.policy) else {
            continue;
        };
        if !entitled.reached {
            continue;
        }
        let Some(resolution) = fleet.resolve_cached(record).filter(|r| r.managed) else {
            continue;
        };
        inputs.reached += 1;
        reached_names.insert(record.name.clone());
        let mine = statuses
            .get(&record.name)
            .into_iter()
            .flatten()
            .filter(|s| s.digest == resolution.digest);
        let (mut error, mut lockout) = (false, false);
        for s in mine {
            if s.error_code.as_deref() == Some(LOCKOUT_CODE) {
                lockout = true;
            } else if s.status == "error" {
                error = true;
            }
        }
        inputs.errors += u64::from(error);
        inputs.lockouts += u64::from(lockout);
        inputs.silent += u64::from(record.applied_digest.as_deref() != Some(&resolution.digest));
    }
    inputs.tamper_events =
        tamper_since(state, tenant, rollout.stage_started_at, &reached_names).await?;
    Ok(GateValues {
        reached: inputs.reached,
        errors: inputs.errors,
        lockouts: inputs.lockouts,
        silent: inputs.silent,
        tamper_events: inputs.tamper_events,
    })
}

/// Tamper events the named devices reported since `since`.
async fn tamper_since(
    state: &AppState,
    tenant: &str,
    since: i64,
    devices: &std::collections::BTreeSet<String>,
) -> ApiResult<u64> {
    let mut count = 0;
    let mut query = rampart_store::AuditQuery {
        action: Some(crate::device::api::TAMPER_ACTION.to_string()),
        object_kind: Some("device".to_string()),
        since: Some(since),
        ..rampart_store::AuditQuery::recent(500, None)
    };
    // Newest first, page by page: the database keeps only the stage's
    // tamper reports.
    loop {
        let page = state.store.audit(tenant, &query).await?;
        let Some(last) = page.last() else { break };
        query.before = Some(last.id);
        for entry in &page {
            if devices.contains(&entry.object_name) {
                count += entry
                    .after
                    .as_ref()
                    .and_then(|a| a.get("events"))
                    .and_then(Value::as_array)
                    .map_or(1, |events| events.len().max(1) as u64);
            }
        }
    }
    Ok(count)
}

fn inputs_of(g: &GateValues) -> GateInputs {
    GateInputs {
        reached: g.reached,
        errors: g.errors,
        lockouts: g.lockouts,
        silent: g.silent,
        tamper_events: g.tamper_events,
    }
}

/// A step on a rollout: what it does to the document, and whether the
/// policy goes back to its previous revision.
enum Step {
    Advance,
    Pause,
    /// A gate failed and the rollout pauses (`on_failure: pause`).
    GateFailed,
    Resume,
    Rollback,
}

/// Who takes a step, why, and what the gates read if they were read.
struct Why<'a> {
    actor: &'a str,
    detail: Option<String>,
    gates: Option<GateValues>,
}

/// Moves a rollout one step and writes it (with the policy's restore for a
/// rollback) in one batch, expecting the document's version; tells the
/// device channel.
async fn take_step(
    state: &AppState,
    tenant: &str,
    record: &ObjectRecord,
    mut rollout: Rollout,
    step: Step,
    why: Why<'_>,
) -> ApiResult<Rollout> {
    let Why {
        actor,
        detail,
        gates,
    } = why;
    let now = state.clock.now();
    let spec = spec_from_json(&rollout.spec).map_err(|e| {
        ApiError::Internal(format!("stored rollout specification is unreadable: {e:?}"))
    })?;
    let mut writes = Vec::new();
    let mut entries = Vec::new();
    let action = match step {
        Step::Advance if rollout.stage + 1 >= spec.stages.len() => {
            rollout.state = COMPLETED.into();
            rollout.reason = None;
            "complete"
        }
        Step::Advance => {
            rollout.stage += 1;
            rollout.state = RUNNING.into();
            rollout.reason = None;
            rollout.stage_started_at = now;
            "advance"
        }
        Step::Pause => {
            rollout.state = PAUSED.into();
            rollout.reason = detail.clone();
            "pause"
        }
        Step::GateFailed => {
            rollout.state = PAUSED.into();
            rollout.reason = detail.clone();
            "gate_failed"
        }
        Step::Resume => {
            rollout.state = RUNNING.into();
            rollout.reason = None;
            rollout.stage_started_at = now;
            "resume"
        }
        Step::Rollback => {
            rollout.state = ROLLED_BACK.into();
            rollout.reason = detail.clone();
            let current = state
                .store
                .object(tenant, ObjectKind::Policy, &rollout.policy)
                .await?;
            let restore = rollout.previous.as_ref().map(previous_policy_doc);
            match (restore, &current) {
                (Some(doc), current) => {
                    writes.push(Write::PutObject {
                        kind: ObjectKind::Policy,
                        name: rollout.policy.clone(),
                        doc: doc.clone(),
                        expect: current
                            .as_ref()
                            .map_or(Expect::Absent, |c| Expect::Version(c.version)),
                        by: actor.to_string(),
                    });
                    entries.push(NewAudit {
                        actor: actor.to_string(),
                        action: "policy.rollback".into(),
                        object_kind: "policy".into(),
                        object_name: rollout.policy.clone(),
                        before: current.as_ref().map(|c| c.doc.clone()),
                        after: Some(doc),
                    });
                }
                (None, Some(c)) => {
                    writes.push(Write::DeleteObject {
                        kind: ObjectKind::Policy,
                        name: rollout.policy.clone(),
                        expect: Expect::Version(c.version),
                    });
                    entries.push(NewAudit {
                        actor: actor.to_string(),
                        action: "policy.rollback".into(),
                        object_kind: "policy".into(),
                        object_name: rollout.policy.clone(),
                        before: Some(c.doc.clone()),
                        after: None,
                    });
                }
                (None, None) => {}
            }
            "rollback"
        }
    };
    if gates.is_some() {
        rollout.gates = gates;
    }
    rollout.history.push(RolloutEvent {
        at: now,
        actor: actor.to_string(),
        action: action.into(),
        stage: rollout.stage,
        detail,
        gates,
    });
    writes.push(put(
        &record.name,
        &rollout,
        Expect::Version(record.version),
        actor,
    ));
    entries.push(audit_entry(actor, action, &record.name, &rollout));
    match state.store.write(tenant, now, writes, entries).await {
        Err(StoreError::Conflict(_)) | Err(StoreError::NotFound(_)) => {
            return Err(ApiError::Coded {
                status: axum::http::StatusCode::CONFLICT,
                code: "rollout_changed",
                message: format!(
                    "the rollout of policy {:?} (or the policy) changed while this step was taken; nothing was done: look at it again",
                    record.name
                ),
            })
        }
        other => other?,
    }
    state.policy_changed(tenant);
    Ok(rollout)
}

/// What an administrator asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Advance,
    Abort,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Advance => "advance",
            Command::Abort => "abort",
        }
    }
}

/// Takes an administrator's step; 409 `rollout_finished` on a completed or
/// rolled-back rollout, 409 `rollout_not_paused` / `rollout_not_running`
/// for a resume or pause that does not apply.
pub async fn command(
    state: &AppState,
    tenant: &str,
    actor: &str,
    record: &ObjectRecord,
    command: Command,
    reason: Option<String>,
) -> ApiResult<Rollout> {
    let rollout = read(record)?;
    let refuse = |code: &'static str, message: String| ApiError::Coded {
        status: axum::http::StatusCode::CONFLICT,
        code,
        message,
    };
    if rollout.state != RUNNING && rollout.state != PAUSED {
        return Err(refuse(
            "rollout_finished",
            format!(
                "the rollout of policy {:?} is {}; nothing is left to {}",
                record.name,
                rollout.state,
                command.as_str()
            ),
        ));
    }
    let step = match command {
        Command::Pause if rollout.state == PAUSED => {
            return Err(refuse(
                "rollout_not_running",
                format!("the rollout of policy {:?} is already paused", record.name),
            ))
        }
        Command::Resume if rollout.state == RUNNING => {
            return Err(refuse(
                "rollout_not_paused",
                format!(
                    "the rollout of policy {:?} is running, not paused",
                    record.name
                ),
            ))
        }
        Command::Pause => Step::Pause,
        Command::Resume => Step::Resume,
        Command::Advance => Step::Advance,
        Command::Abort => Step::Rollback,
    };
    let detail = Some(reason.unwrap_or_else(|| format!("{} by {actor}", command.as_str())));
    let why = Why {
        actor,
        detail,
        gates: None,
    };
    take_step(state, tenant, record, rollout, step, why).await
}

/// Reads the gates of every running rollout whose soak has ended, in every
/// tenant, and advances, completes, pauses or rolls back each. Another
/// replica doing the same at once loses the version check and steps aside.
pub async fn evaluate_due(state: &AppState) -> ApiResult<usize> {
    let now = state.clock.now();
    let mut stepped = 0;
    for tenant in state.store.tenants().await? {
        let records = state.store.objects(&tenant.id, ObjectKind::Rollout).await?;
        let due: Vec<(ObjectRecord, Rollout, RolloutSpec)> = records
            .into_iter()
            .filter_map(|r| {
                let rollout: Rollout = serde_json::from_value(r.doc.clone()).ok()?;
                let spec = spec_from_json(&rollout.spec).ok()?;
                let soak = spec.stages.get(rollout.stage)?.soak_secs as i64;
                (rollout.state == RUNNING && now >= rollout.stage_started_at + soak)
                    .then_some((r, rollout, spec))
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        let fleet = Fleet::load_shared(state, &tenant.id).await?;
        for (record, rollout, spec) in due {
            let gates = measure(state, &tenant.id, &fleet, &rollout).await?;
            let failed = failed_gates(&spec.gates, &inputs_of(&gates));
            let (step, detail) = if failed.is_empty() {
                (
                    Step::Advance,
                    Some(format!(
                        "gates passed at {}",
                        stage_text(&spec, rollout.stage)
                    )),
                )
            } else {
                let step = match spec.on_failure {
                    OnFailure::Pause => Step::GateFailed,
                    OnFailure::Rollback => Step::Rollback,
                };
                (step, Some(format!("gate failed: {}", failed.join("; "))))
            };
            match take_step(
                state,
                &tenant.id,
                &record,
                rollout,
                step,
                Why {
                    actor: SERVER_ACTOR,
                    detail,
                    gates: Some(gates),
                },
            )
            .await
            {
                Ok(_) => stepped += 1,
                Err(ApiError::Coded {
                    code: "rollout_changed",
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(stepped)
}
