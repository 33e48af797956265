//! Conversions from stored records and domain values to wire types.

use rampart_core::model::TenantSettings;
use rampart_core::resolve::{Conflict, NotApplicable, Resolution};
use rampart_proto::{
    AssignmentsView, AuditView, ConflictView, DeviceProblemsView, DeviceView, EffectivePolicyView,
    EffectiveSettingView, EnrollmentView, GroupView, NotApplicableView, PolicyView,
    TenantSettingsView, TokenView, UserView,
};
use rampart_store::{
    AuditRecord, DeviceProblems, DeviceRecord, ObjectRecord, TokenRecord, UserRecord,
};
use serde_json::Value;

fn text(doc: &Value, field: &str) -> String {
    doc.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn policy_view(r: &ObjectRecord) -> PolicyView {
    let doc = &r.doc;
    PolicyView {
        name: r.name.clone(),
        description: text(doc, "description"),
        family: text(doc, "family"),
        platform: text(doc, "platform"),
        settings: doc
            .get("settings")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        assignments: AssignmentsView {
            include: strings(doc.pointer("/assignments/include")),
            exclude: strings(doc.pointer("/assignments/exclude")),
        },
        rollout: doc.get("rollout").cloned(),
        version: r.version,
        modified_at: r.modified_at,
        modified_by: r.modified_by.clone(),
    }
}

pub fn group_view(r: &ObjectRecord) -> GroupView {
    let doc = &r.doc;
    GroupView {
        name: r.name.clone(),
        description: text(doc, "description"),
        rule: doc.get("rule").and_then(Value::as_str).map(str::to_string),
        members: doc.get("members").map(|m| strings(Some(m))),
        version: r.version,
        modified_at: r.modified_at,
        modified_by: r.modified_by.clone(),
    }
}

/// The device as the API shows it; `problems` are its error and conflict
/// counts (none when it has none), `now` decides whether it is stale.
pub fn device_view(d: &DeviceRecord, problems: Option<&DeviceProblems>, now: i64) -> DeviceView {
    let agent_run = matches!(d.enrollment_status.as_str(), "enrolled" | "not_managed");
    let stale = agent_run
        && d.last_check_in
            .is_none_or(|at| now - at > rampart_proto::STALE_AFTER_SECS);
    DeviceView {
        id: d.id.clone(),
        name: d.name.clone(),
        os: d.os.clone(),
        os_version: d.os_version.clone(),
        device_type: d.device_type.clone(),
        agent_version: d.agent_version.clone(),
        tags: d.tags.clone(),
        labels: d.labels.clone(),
        managed_by: d.managed_by.clone(),
        enrollment: EnrollmentView {
            status: d.enrollment_status.clone(),
            code: d.enrollment_code.clone(),
            reason: d.enrollment_reason.clone(),
            help: d
                .enrollment_code
                .as_deref()
                .and_then(rampart_proto::troubleshooting::guidance),
        },
        last_check_in: d.last_check_in,
        policy_version: d.policy_version,
        problems: DeviceProblemsView {
            errors: problems.map_or(0, |p| p.errors),
            conflicts: problems.map_or(0, |p| p.conflicts),
            stale,
        },
        conditions: d.conditions.clone(),
    }
}

pub fn tenant_settings_view(s: &TenantSettings) -> TenantSettingsView {
    TenantSettingsView {
        enforcement: s
            .enforcement
            .iter()
            .map(|(p, e)| (p.to_string(), e.to_string()))
            .collect(),
        pilot_tag: s.pilot_tag.clone(),
        conflict_policy: s.conflict_policy.to_string(),
        allow_takeover: s.allow_takeover,
        manage_domain_controllers: s.manage_domain_controllers,
        default_rollout: s
            .default_rollout
            .as_ref()
            .map(rampart_core::rollout::spec_to_json),
    }
}

pub fn conflict_view(c: &Conflict) -> ConflictView {
    ConflictView {
        setting: c.setting.clone(),
        key: c.key.clone(),
        policies: c.policies.clone(),
        values: c.values.clone(),
    }
}

pub fn not_applicable_view(n: &NotApplicable) -> NotApplicableView {
    NotApplicableView {
        setting: n.setting.clone(),
        key: n.key.clone(),
        policies: n.policies.clone(),
        reason: n.reason.clone(),
    }
}

pub fn effective_view(r: &Resolution) -> EffectivePolicyView {
    EffectivePolicyView {
        device: r.device.clone(),
        managed: r.managed,
        reason: r.reason.clone(),
        settings: r
            .settings
            .iter()
            .map(|s| EffectiveSettingView {
                setting: s.setting.clone(),
                value: s.value.clone(),
                sources: s.sources.clone(),
            })
            .collect(),
        conflicts: r.conflicts.iter().map(conflict_view).collect(),
        not_applicable: r.not_applicable.iter().map(not_applicable_view).collect(),
        policy_versions: r.policy_versions.clone(),
        digest: r.digest.clone(),
    }
}

pub fn audit_view(a: AuditRecord) -> AuditView {
    AuditView {
        id: a.id,
        at: a.at,
        actor: a.actor,
        action: a.action,
        object_kind: a.object_kind,
        object_name: a.object_name,
        before: a.before,
        after: a.after,
    }
}

pub fn token_view(t: TokenRecord) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name,
        role: t.role,
        kind: t.kind,
        created_at: t.created_at,
        created_by: t.created_by,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
    }
}

pub fn user_view(u: UserRecord) -> UserView {
    UserView {
        id: u.id,
        username: u.username,
        role: u.role,
        created_at: u.created_at,
        disabled: u.disabled,
    }
}
