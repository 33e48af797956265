//! Staged rollouts: how a policy change is released in stages, which devices
//! each stage reaches, and whether a stage's health gates pass.
//!
//! Pure, like the rest of this crate: the server keeps the rollout's state
//! (which stage, since when) and calls these functions with it.
//!
//! A device is *reached* by stage `k` when any stage up to `k` includes it:
//! a percentage stage includes the devices whose bucket — a hash of the
//! rollout's id and the device's id, in basis points — is below it, so a
//! stage's devices are stable while the rollout runs, spread across groups,
//! and different from one rollout to the next; a group stage includes the
//! group's members.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::FieldError;

/// Most stages one rollout may have.
pub const MAX_STAGES: usize = 10;
/// Longest soak time of one stage: 30 days.
pub const MAX_SOAK_SECS: u64 = 30 * 24 * 3600;
/// Basis points in a whole (100 %).
pub const WHOLE: u32 = 10_000;

/// Who a stage adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageTarget {
    /// This share of the devices, in basis points (1 % = 100).
    Percent(u32),
    /// The members of this group (a canary group).
    Group(String),
}

/// One stage: who it adds, and how long it soaks before its gates are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub target: StageTarget,
    pub soak_secs: u64,
}

/// Health gates, read at the end of every stage's soak over the devices the
/// rollout has reached. Shares in basis points; `None` is no gate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gates {
    /// Devices that report an error for the new revision.
    pub max_error: Option<u32>,
    /// Devices whose agent rolled a firewall change back because it cut the
    /// agent off (`lockout_rolled_back`).
    pub max_lockout: Option<u32>,
    /// Devices that have not reported the revision they are entitled to.
    pub max_silent: Option<u32>,
    /// Fail on any tamper event a reached device reports during the stage.
    pub no_new_tamper: bool,
}

/// What a failing gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Stop where it is; an administrator resumes, advances or aborts.
    #[default]
    Pause,
    /// Stop and return every reached device to the previous revision.
    Rollback,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Pause => "pause",
            OnFailure::Rollback => "rollback",
        }
    }
}

/// How a change is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSpec {
    pub stages: Vec<Stage>,
    pub gates: Gates,
    pub on_failure: OnFailure,
}

/// A policy's `rollout:` field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RolloutChoice {
    /// Not given: the tenant's default rollout, if it has one.
    #[default]
    TenantDefault,
    /// `rollout: immediate`: everywhere at once, whatever the tenant default.
    Immediate,
    Staged(RolloutSpec),
}

/// The word that asks for no staging.
pub const IMMEDIATE: &str = "immediate";

/// The stable bucket of a device in a rollout, in `0..WHOLE`.
pub fn bucket(rollout_id: &str, device_id: &str) -> u32 {
    let hash = Sha256::digest(format!("{rollout_id}\n{device_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % u64::from(WHOLE)) as u32
}

impl RolloutSpec {
    /// Whether a device is reached once stage `stage` (0-based) has begun.
    /// `member_of` answers whether the device is in a group.
    pub fn reaches(&self, stage: usize, bucket: u32, member_of: impl Fn(&str) -> bool) -> bool {
        self.stages.iter().take(stage + 1).any(|s| match &s.target {
            StageTarget::Percent(bp) => bucket < *bp,
            StageTarget::Group(g) => member_of(g),
        })
    }

    /// The first stage that reaches the device; `None` when none does (the
    /// device is reached when the rollout completes).
    pub fn stage_of(&self, bucket: u32, member_of: impl Fn(&str) -> bool) -> Option<usize> {
        (0..self.stages.len()).find(|k| self.reaches(*k, bucket, &member_of))
    }

    /// Groups the stages name.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().filter_map(|s| match &s.target {
            StageTarget::Group(g) => Some(g.as_str()),
            StageTarget::Percent(_) => None,
        })
    }
}

/// What the gates read, over the reached devices the change targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateInputs {
    pub reached: u64,
    pub errors: u64,
    pub lockouts: u64,
    pub silent: u64,
    pub tamper_events: u64,
}

/// A share in basis points; 0 of 0 is 0.
pub fn share(count: u64, of: u64) -> u32 {
    (count.min(of) * u64::from(WHOLE))
        .checked_div(of)
        .map_or(0, |bp| bp as u32)
}

/// Every gate that fails, in words; empty when all pass.
pub fn failed_gates(gates: &Gates, inputs: &GateInputs) -> Vec<String> {
    let mut failed = Vec::new();
    let mut check = |what: &str, count: u64, max: Option<u32>| {
        if let Some(max) = max {
            let got = share(count, inputs.reached);
            if got > max {
                failed.push(format!(
                    "{what}: {count} of {} devices ({}) is above the gate ({})",
                    inputs.reached,
                    percent_text(got),
                    percent_text(max)
                ));
            }
        }
    };
    check("errors", inputs.errors, gates.max_error);
    check("lockouts", inputs.lockouts, gates.max_lockout);
    check("not reporting", inputs.silent, gates.max_silent);
    if gates.no_new_tamper && inputs.tamper_events > 0 {
        failed.push(format!(
            "tamper: {} new tamper event(s) on reached devices",
            inputs.tamper_events
        ));
    }
    failed
}

/// `1250` → `12.5%`.
pub fn percent_text(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        format!("{}%", bp / 100)
    } else {
        let text = format!("{:.2}", f64::from(bp) / 100.0);
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A percentage (`10`, `12.5`, `"10%"`) in basis points, within `min..=WHOLE`.
fn basis_points(v: &Value, min: u32) -> Result<u32, String> {
    let number = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(number) = number.filter(|n| n.is_finite()) else {
        return Err(format!(
            "expected a percentage such as 10 or \"12.5%\", found {}",
            describe(v)
        ));
    };
    let bp = (number * 100.0).round();
    if (bp - number * 100.0).abs() > 1e-6 {
        return Err(format!(
            "{number} has more than two decimals; use a percentage such as 12.5"
        ));
    }
    if bp < f64::from(min) || bp > f64::from(WHOLE) {
        return Err(format!(
            "{number} is out of range; expected {} to 100",
            percent_text(min).trim_end_matches('%')
        ));
    }
    Ok(bp as u32)
}

/// A soak time: seconds, or a number with `s`, `m`, `h` or `d`.
fn soak_secs(v: &Value) -> Result<u64, String> {
    let secs = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let (digits, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let factor = match unit.trim() {
                "" | "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3600),
                "d" => Some(86_400),
                _ => None,
            };
            digits
                .parse::<u64>()
                .ok()
                .zip(factor)
                .and_then(|(n, f)| n.checked_mul(f))
        }
        _ => None,
    };
    match secs {
        Some(s) if s <= MAX_SOAK_SECS => Ok(s),
        Some(_) => Err("is longer than 30 days".to_string()),
        None => Err(format!(
            "expected seconds or a duration such as 30m, 2h or 1d, found {}",
            match v {
                Value::String(s) => format!("{s:?}"),
                other => describe(other).to_string(),
            }
        )),
    }
}

fn unknown_fields(obj: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.as_str(),
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        }
    }
}

/// Checks a rollout specification (the map form of `rollout:`), reporting
/// every error with its path below the spec.
pub fn spec_from_json(value: &Value) -> Result<RolloutSpec, Vec<FieldError>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new(
            "",
            format!(
                "expected {IMMEDIATE:?} or a map with stages, gates and on_failure, found {}",
                describe(value)
            ),
        )]);
    };
    let mut errors = Vec::new();
    unknown_fields(obj, &["stages", "gates", "on_failure"], &mut errors);
    let mut stages = Vec::new();
    match obj.get("stages") {
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push(FieldError::new("stages", "must list at least one stage"))
        }
        Some(Value::Array(items)) if items.len() > MAX_STAGES => errors.push(FieldError::new(
            "stages",
            format!(
                "has {} stages; at most {MAX_STAGES} are allowed",
                items.len()
            ),
        )),
        Some(Value::Array(items)) => {
            let mut last_percent = 0;
            for (i, item) in items.iter().enumerate() {
                let path = format!("stages[{i}]");
                if let Some(stage) = stage_from_json(item, &path, &mut errors) {
                    {
                        if let StageTarget::Percent(bp) = stage.target {
                            if bp <= last_percent {
                                errors.push(FieldError::new(
                                    format!("{path}.percent"),
                                    format!(
                                        "is {} but an earlier stage already reaches {}; each percentage stage must reach more devices than the one before",
                                        percent_text(bp),
                                        percent_text(last_percent)
                                    ),
                                ));
                            }
                            last_percent = bp;
                        }
                        stages.push(stage);
                    }
                }
            }
        }
        Some(other) => errors.push(FieldError::new(
            "stages",
            format!("expected a list of stages, found {}", describe(other)),
        )),
        None => errors.push(FieldError::new("stages", "is required")),
    }
    let gates = match obj.get("gates") {
        None | Some(Value::Null) => Gates::default(),
        Some(v) => gates_from_json(v, &mut errors),
    };
    let on_failure = match obj.get("on_failure") {
        None | Some(Value::Null) => OnFailure::Pause,
        Some(Value::String(s)) if s == "pause" => OnFailure::Pause,
        Some(Value::String(s)) if s == "rollback" => OnFailure::Rollback,
        Some(other) => {
            errors.push(FieldError::new(
                "on_failure",
                format!(
                    "expected pause or rollback, found {}",
                    match other {
                        Value::String(s) => format!("{s:?}"),
                        v => describe(v).to_string(),
                    }
                ),
            ));
            OnFailure::Pause
        }
    };
    if errors.is_empty() {
        Ok(RolloutSpec {
            stages,
            gates,
            on_failure,
        })
    } else {
        Err(errors)
    }
}

fn stage_from_json(item: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Stage> {
    let Some(obj) = item.as_object() else {
        errors.push(FieldError::new(
            path,
            format!(
                "expected a map with percent or group, and soak; found {}",
                describe(item)
            ),
        ));
        return None;
    };
    let before = errors.len();
    let mut own = Vec::new();
    unknown_fields(obj, &["percent", "group", "soak"], &mut own);
    let target = match (obj.get("percent"), obj.get("group")) {
        (Some(p), None) => match basis_points(p, 1) {
            Ok(bp) => Some(StageTarget::Percent(bp)),
            Err(m) => {
                own.push(FieldError::new("percent", m));
                None
            }
        },
        (None, Some(Value::String(g))) => match crate::names::normalize_name(g, 128) {
            Ok(g) => Some(StageTarget::Group(g)),
            Err(m) => {
                own.push(FieldError::new("group", m));
                None
            }
        },
        (None, Some(other)) => {
            own.push(FieldError::new(
                "group",
                format!("expected a group name, found {}", describe(other)),
            ));
            None
        }
        (Some(_), Some(_)) => {
            own.push(FieldError::new(
                "",
                "give percent or group, not both (make them two stages)",
            ));
            None
        }
        (None, None) => {
            own.push(FieldError::new(
                "",
                "needs percent (a share of the devices) or group (a canary group)",
            ));
            None
        }
    };
    let soak = match obj.get("soak") {
        None | Some(Value::Null) => Some(0),
        Some(v) => match soak_secs(v) {
            Ok(s) => Some(s),
            Err(m) => {
                own.push(FieldError::new("soak", m));
                None
            }
        },
    };
    errors.extend(own.into_iter().map(|e| e.under(path)));
    match (target, soak) {
        (Some(target), Some(soak_secs)) if errors.len() == before => {
            Some(Stage { target, soak_secs })
        }
        _ => None,
    }
}

fn gates_from_json(v: &Value, errors: &mut Vec<FieldError>) -> Gates {
    let Some(obj) = v.as_object() else {
        errors.push(FieldError::new(
            "gates",
            format!("expected a map of gates, found {}", describe(v)),
        ));
        return Gates::default();
    };
    let mut own = Vec::new();
    unknown_fields(
        obj,
        &["max_errors", "max_lockouts", "max_silent", "no_new_tamper"],
        &mut own,
    );
    let mut share = |field: &str| match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(v) => match basis_points(v, 0) {
            Ok(bp) => Some(bp),
            Err(m) => {
                own.push(FieldError::new(field, m));
                None
            }
        },
    };
    let max_error = share("max_errors");
    let max_lockout = share("max_lockouts");
    let max_silent = share("max_silent");
    let no_new_tamper = match obj.get("no_new_tamper") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            own.push(FieldError::new(
                "no_new_tamper",
                format!("expected true or false, found {}", describe(other)),
            ));
            false
        }
    };
    errors.extend(own.into_iter().map(|e| e.under("gates")));
    Gates {
        max_error,
        max_lockout,
        max_silent,
        no_new_tamper,
    }
}

/// A percentage as the canonical JSON writes it: a whole number when it is
/// one.
fn percent_json(bp: u32) -> Value {
    if bp.is_multiple_of(100) {
        json!(bp / 100)
    } else {
        json!(f64::from(bp) / 100.0)
    }
}

/// The canonical JSON of a specification: what `spec_from_json` reads back
/// into the same value.
pub fn spec_to_json(spec: &RolloutSpec) -> Value {
    let stages: Vec<Value> = spec
        .stages
        .iter()
        .map(|s| match &s.target {
            StageTarget::Percent(bp) => {
                json!({ "percent": percent_json(*bp), "soak": s.soak_secs })
            }
            StageTarget::Group(g) => json!({ "group": g, "soak": s.soak_secs }),
        })
        .collect();
    let mut gates = Map::new();
    for (field, value) in [
        ("max_errors", spec.gates.max_error),
        ("max_lockouts", spec.gates.max_lockout),
        ("max_silent", spec.gates.max_silent),
    ] {
        if let Some(bp) = value {
            gates.insert(field.to_string(), percent_json(bp));
        }
    }
    if spec.gates.no_new_tamper {
        gates.insert("no_new_tamper".to_string(), json!(true));
    }
    json!({
        "stages": stages,
        "gates": gates,
        "on_failure": spec.on_failure.as_str(),
    })
}

/// Reads a policy's `rollout:` field (absent → the tenant default).
pub fn choice_from_json(value: Option<&Value>) -> Result<RolloutChoice, Vec<FieldError>> {
    match value {
        None | Some(Value::Null) => Ok(RolloutChoice::TenantDefault),
        Some(Value::String(s)) if s == IMMEDIATE => Ok(RolloutChoice::Immediate),
        Some(v) => spec_from_json(v).map(RolloutChoice::Staged),
    }
}

/// The canonical JSON of a `rollout:` field; `None` leaves it out.
pub fn choice_to_json(choice: &RolloutChoice) -> Option<Value> {
    match choice {
        RolloutChoice::TenantDefault => None,
        RolloutChoice::Immediate => Some(json!(IMMEDIATE)),
        RolloutChoice::Staged(spec) => Some(spec_to_json(spec)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> RolloutSpec {
        spec_from_json(&v).unwrap()
    }

    #[test]
    fn specifications_read_back_from_their_canonical_json() {
        let s = spec(json!({
            "stages": [{"group": "canary", "soak": "30m"}, {"percent": "12.5%", "soak": "2h"}, {"percent": 100}],
            "gates": {"max_errors": 5, "max_lockouts": 0, "max_silent": "20%", "no_new_tamper": true},
            "on_failure": "rollback",
        }));
        assert_eq!(s.stages[0].soak_secs, 1800);
        assert_eq!(s.stages[1].target, StageTarget::Percent(1250));
        assert_eq!(s.stages[2].soak_secs, 0);
        assert_eq!(s.gates.max_lockout, Some(0));
        assert_eq!(spec_from_json(&spec_to_json(&s)).unwrap(), s);
    }

    #[test]
    fn bad_specifications_name_every_field() {
        let errors = spec_from_json(&json!({
            "stages": [{"percent": 50}, {"percent": 10}, {"group": 3}, {}, {"percent": 0.001}, {"percent": 60, "soak": "1w"}],
            "gates": {"max_errors": 150, "typo": 1},
            "on_failure": "explode",
        }))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "stages[1].percent",
            "stages[5].soak",
            "stages[2].group",
            "stages[3]",
            "stages[4].percent",
            "gates.max_errors",
            "gates.typo",
            "on_failure",
        ] {
            assert!(paths.contains(&want), "{want} missing from {errors:?}");
        }
        assert!(spec_from_json(&json!({"stages": []})).is_err());
        assert!(spec_from_json(&json!("soon")).is_err());
    }

    #[test]
    fn stages_reach_stable_growing_sets_of_devices() {
        let s = spec(json!({"stages": [{"percent": 10}, {"percent": 50}, {"percent": 100}]}));
        let ids: Vec<String> = (0..2000).map(|i| format!("device-{i}")).collect();
        let reached = |k: usize| -> Vec<&String> {
            ids.iter()
                .filter(|id| s.reaches(k, bucket("r1", id), |_| false))
                .collect()
        };
        let (ten, half, all) = (reached(0), reached(1), reached(2));
        assert!((150..250).contains(&ten.len()), "{}", ten.len());
        assert!((900..1100).contains(&half.len()), "{}", half.len());
        assert_eq!(all.len(), ids.len());
        assert!(ten.iter().all(|d| half.contains(d)), "stages only grow");
        // Another rollout picks other devices first.
        let other: Vec<&String> = ids
            .iter()
            .filter(|id| s.reaches(0, bucket("r2", id), |_| false))
            .collect();
        assert_ne!(ten, other);
        let canary = spec(json!({"stages": [{"group": "canary"}, {"percent": 100}]}));
        assert!(canary.reaches(0, 9_999, |g| g == "canary"));
        assert!(!canary.reaches(0, 0, |_| false));
        assert_eq!(canary.stage_of(5, |_| false), Some(1));
    }

    #[test]
    fn gates_fail_above_their_share_only() {
        let gates = Gates {
            max_error: Some(1000),
            max_lockout: Some(0),
            max_silent: None,
            no_new_tamper: true,
        };
        let ok = GateInputs {
            reached: 20,
            errors: 2,
            silent: 20,
            ..GateInputs::default()
        };
        assert!(failed_gates(&gates, &ok).is_empty());
        let bad = GateInputs {
            errors: 3,
            lockouts: 1,
            tamper_events: 2,
            ..ok
        };
        let failed = failed_gates(&gates, &bad);
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(failed[0].contains("3 of 20 devices (15%)"), "{failed:?}");
        assert!(failed_gates(&gates, &GateInputs::default()).is_empty());
    }
}
