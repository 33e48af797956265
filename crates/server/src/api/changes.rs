//! Previewing changes before they are saved, and applying a whole desired
//! state (policy as code) idempotently.
//!
//! Both compute the same thing: the tenant's state with the changes made, and
//! every device's effective policy before and after. Apply then writes the
//! difference in one transaction, or nothing.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::model::{Group, Policy, Role, TenantSettings};
use rampart_core::validate::{
    group_from_json, group_to_json, policy_from_json, policy_to_json, tenant_settings_from_json,
    tenant_settings_to_json,
};
use rampart_proto::{
    ApplyRequest, ApplyResponse, Change, ErrorBody, ObjectRef, PreviewRequest, PreviewResponse,
};
use rampart_store::{Expect, ObjectKind, Write};
use serde_json::Value;

use crate::api::audit;
use crate::api::paging::Paging;
use crate::api::policies::unknown_groups;
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::state::AppState;

fn kind_of(kind: &str, path: &str, errors: &mut Vec<FieldError>) -> Option<ObjectKind> {
    match kind {
        "policy" => Some(ObjectKind::Policy),
        "group" => Some(ObjectKind::Group),
        other => {
            errors.push(FieldError::new(
                path,
                format!("unknown kind {other:?}; expected policy, group or tenant_settings"),
            ));
            None
        }
    }
}

/// The `kind` of a preview change to the tenant settings.
const TENANT_SETTINGS: &str = "tenant_settings";

/// Reports assignments to groups the state does not hold.
fn check_assignments(
    policies: &[(String, Policy)],
    groups: &[Group],
    errors: &mut Vec<FieldError>,
) {
    let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    for (path, p) in policies {
        errors.extend(unknown_groups(
            &format!("{path}."),
            &p.assignments.include,
            &p.assignments.exclude,
            &known,
        ));
    }
}

#[utoipa::path(post, path = "/api/v1/preview", tag = "changes", request_body = PreviewRequest,
    responses((status = 200, body = PreviewResponse), (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<PreviewRequest>,
) -> ApiResult<Json<PreviewResponse>> {
    let fleet = Fleet::load(&state, &who.tenant_id).await?;
    let mut after = fleet.clone();
    let mut errors = Vec::new();
    let mut touched = Vec::new();
    // Policies changed, with their new documents (none: deleted).
    let mut staged: Vec<(String, Option<Value>)> = Vec::new();
    let now = state.clock.now();
    for (i, change) in req.changes.iter().enumerate() {
        let path = format!("changes[{i}]");
        match change {
            Change::Put { kind, document } if kind == TENANT_SETTINGS => {
                match tenant_settings_from_json(document, &after.settings) {
                    Ok(s) => after.settings = s,
                    Err(e) => {
                        errors.extend(e.into_iter().map(|e| e.under(&format!("{path}.document"))))
                    }
                }
            }
            Change::Delete { kind, .. } if kind == TENANT_SETTINGS => {
                errors.push(FieldError::new(
                    format!("{path}.op"),
                    "the tenant settings cannot be deleted; put the values to change",
                ));
            }
            Change::Put { kind, document } => {
                match kind_of(kind, &format!("{path}.kind"), &mut errors) {
                    Some(ObjectKind::Policy) => {
                        let name = document
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        match policy_from_json(
                            document,
                            state.catalog,
                            fleet.next_version(name),
                            now,
                        ) {
                            Ok(p) => {
                                after.policies.retain(|x| x.name != p.name);
                                staged.push((p.name.clone(), Some(policy_to_json(&p))));
                                touched.push((format!("{path}.document"), p.clone()));
                                after.policies.push(p);
                            }
                            Err(e) => errors.extend(
                                e.into_iter().map(|e| e.under(&format!("{path}.document"))),
                            ),
                        }
                    }
                    Some(ObjectKind::Group) => match group_from_json(document) {
                        Ok(g) => {
                            after.groups.retain(|x| x.name != g.name);
                            after.groups.push(g);
                        }
                        Err(e) => errors
                            .extend(e.into_iter().map(|e| e.under(&format!("{path}.document")))),
                    },
                    Some(ObjectKind::Rollout) | None => {}
                }
            }
            Change::Delete { kind, name } => {
                match kind_of(kind, &format!("{path}.kind"), &mut errors) {
                    Some(ObjectKind::Policy) => {
                        let before = after.policies.len();
                        after.policies.retain(|x| &x.name != name);
                        staged.push((name.clone(), None));
                        if after.policies.len() == before {
                            errors.push(FieldError::new(
                                format!("{path}.name"),
                                format!("no policy named {name:?}"),
                            ));
                        }
                    }
                    Some(ObjectKind::Group) => {
                        let before = after.groups.len();
                        after.groups.retain(|x| &x.name != name);
                        if after.groups.len() == before {
                            errors.push(FieldError::new(
                                format!("{path}.name"),
                                format!("no group named {name:?}"),
                            ));
                        }
                    }
                    Some(ObjectKind::Rollout) | None => {}
                }
            }
        }
    }
    check_assignments(&touched, &after.groups, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // Only policies changed: only the devices their versions target can
    // be affected.
    let only_policies = req.changes.iter().all(|c| match c {
        Change::Put { kind, .. } | Change::Delete { kind, .. } => kind == "policy",
    });
    let names: BTreeSet<String> = staged.iter().map(|(name, _)| name.clone()).collect();
    let page = Paging::of(req.limit, req.cursor.as_deref())?;
    let mut devices = fleet.impact_on(&after, only_policies.then_some(&names));
    let devices_total = devices.len() as u64;
    // Only the page's devices are annotated with their stage.
    let (page_devices, next_cursor) =
        page.cut(std::mem::take(&mut devices), |d| (0, d.device.clone()));
    devices = page_devices;
    annotate_stages(&who.tenant_id, &fleet, &after, &staged, &mut devices);
    Ok(Json(PreviewResponse {
        devices,
        devices_total,
        next_cursor,
    }))
}

/// Marks each affected device with the rollout stage that brings it a
/// staged change (the first such change, when several are previewed).
fn annotate_stages(
    tenant: &str,
    before: &Fleet,
    after: &Fleet,
    staged: &[(String, Option<Value>)],
    devices: &mut [rampart_proto::DeviceImpact],
) {
    let rollouts: Vec<_> = staged
        .iter()
        .filter_map(|(name, doc)| {
            crate::rollout::previewed(
                tenant,
                before,
                after.settings.default_rollout.as_ref(),
                name,
                doc.as_ref(),
            )
        })
        .collect();
    if rollouts.is_empty() {
        return;
    }
    for impact in devices.iter_mut() {
        let Some(record) = before.devices.iter().find(|d| d.name == impact.device) else {
            continue;
        };
        let Some(device) = Fleet::device(record) else {
            continue;
        };
        let member_of = rampart_core::documents::memberships(&device, &after.groups);
        let targeted =
            |policy: &str| {
                before.policies.iter().chain(&after.policies).any(|p| {
                    p.name == policy && rampart_core::resolve::targets(p, &device, &member_of)
                })
            };
        impact.rollout = rollouts
            .iter()
            .find(|r| targeted(&r.policy))
            .map(|r| crate::rollout::stage_of_device(r, &record.id, |g| member_of.contains(g)));
    }
}

/// The desired state an apply request describes.
struct Desired {
    policies: Vec<(String, Policy)>,
    groups: Vec<Group>,
    settings: Option<TenantSettings>,
}

/// The documents of an apply, checked. Without `prune`, the server's
/// policies and groups the documents leave out stay, so the documents'
/// policies may be assigned to those groups too.
fn parse_documents(
    state: &AppState,
    fleet: &Fleet,
    documents: &[Value],
    prune: bool,
) -> Result<Desired, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut desired = Desired {
        policies: Vec::new(),
        groups: Vec::new(),
        settings: None,
    };
    let mut names: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, doc) in documents.iter().enumerate() {
        let path = format!("documents[{i}]");
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut body = doc.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("kind");
        }
        if let Some(name) = body.get("name").and_then(Value::as_str) {
            if let Some(first) = names.insert((kind.clone(), name.to_string()), i) {
                errors.push(FieldError::new(
                    format!("{path}.name"),
                    format!("duplicate {kind} {name:?}; also documents[{first}]"),
                ));
            }
        }
        let under = |e: Vec<FieldError>| e.into_iter().map(|e| e.under(&path)).collect::<Vec<_>>();
        match kind.as_str() {
            "Policy" => {
                let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
                match policy_from_json(
                    &body,
                    state.catalog,
                    fleet.next_version(name),
                    state.clock.now(),
                ) {
                    Ok(p) => desired.policies.push((path, p)),
                    Err(e) => errors.extend(under(e)),
                }
            }
            "Group" => match group_from_json(&body) {
                Ok(g) => desired.groups.push(g),
                Err(e) => errors.extend(under(e)),
            },
            "TenantSettings" if desired.settings.is_some() => errors.push(FieldError::new(
                format!("{path}.kind"),
                "only one TenantSettings document is allowed",
            )),
            // The document is the whole desired state, as in `rampart plan`: fields
            // left out take their defaults, not the current values.
            "TenantSettings" => {
                match tenant_settings_from_json(&body, &TenantSettings::default()) {
                    Ok(s) => desired.settings = Some(s),
                    Err(e) => errors.extend(under(e)),
                }
            }
            "Device" => errors.push(FieldError::new(
                format!("{path}.kind"),
                "Device documents are not applied; devices enroll through rampart-agent",
            )),
            other => errors.push(FieldError::new(
                format!("{path}.kind"),
                format!("unknown kind {other:?}; expected Policy, Group or TenantSettings"),
            )),
        }
    }
    let mut known_groups = desired.groups.clone();
    if !prune {
        known_groups.extend(
            fleet
                .groups
                .iter()
                .filter(|g| !desired.groups.iter().any(|d| d.name == g.name))
                .cloned(),
        );
    }
    check_assignments(&desired.policies, &known_groups, &mut errors);
    if errors.is_empty() {
        Ok(desired)
    } else {
        Err(errors)
    }
}

#[utoipa::path(post, path = "/api/v1/apply", tag = "changes", request_body = ApplyRequest,
    responses((status = 200, body = ApplyResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn apply(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> ApiResult<Json<ApplyResponse>> {
    if !req.dry_run {
        who.require(Role::SecurityManager, "applying policies")?;
    }
    // Read before the fleet: a change in between makes the write below fail
    // rather than undo it.
    let settings_version = state.store.tenant_settings_version(&who.tenant_id).await?;
    let fleet = Fleet::load(&state, &who.tenant_id).await?;
    let desired =
        parse_documents(&state, &fleet, &req.documents, req.prune).map_err(ApiError::Validation)?;

    let mut created = Vec::new();
    let mut changed = Vec::new();
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    let mut unchanged = 0;
    let mut writes = Vec::new();
    let mut entries = Vec::new();
    let mut diff = |kind: ObjectKind,
                    name: &str,
                    doc: Value,
                    current: Option<&rampart_store::ObjectRecord>| {
        let what = ObjectRef {
            kind: kind.as_str().to_string(),
            name: name.to_string(),
        };
        match current {
            Some(c) if c.doc == doc => unchanged += 1,
            Some(c) => {
                writes.push(Write::PutObject {
                    kind,
                    name: name.to_string(),
                    doc: doc.clone(),
                    expect: Expect::Version(c.version),
                    by: who.actor.clone(),
                });
                entries.push(audit(
                    &who,
                    &format!("{}.update", kind.as_str()),
                    kind.as_str(),
                    name,
                    Some(c.doc.clone()),
                    Some(doc),
                ));
                changed.push(what);
            }
            None => {
                writes.push(Write::PutObject {
                    kind,
                    name: name.to_string(),
                    doc: doc.clone(),
                    expect: Expect::Absent,
                    by: who.actor.clone(),
                });
                entries.push(audit(
                    &who,
                    &format!("{}.create", kind.as_str()),
                    kind.as_str(),
                    name,
                    None,
                    Some(doc),
                ));
                created.push(what);
            }
        }
    };
    for g in &desired.groups {
        diff(
            ObjectKind::Group,
            &g.name,
            group_to_json(g),
            fleet.group_records.iter().find(|r| r.name == g.name),
        );
    }
    for (_, p) in &desired.policies {
        diff(
            ObjectKind::Policy,
            &p.name,
            policy_to_json(p),
            fleet.policy_records.iter().find(|r| r.name == p.name),
        );
    }
    for (kind, records, keep) in [
        (
            ObjectKind::Policy,
            &fleet.policy_records,
            desired
                .policies
                .iter()
                .map(|(_, p)| p.name.clone())
                .collect::<Vec<_>>(),
        ),
        (
            ObjectKind::Group,
            &fleet.group_records,
            desired
                .groups
                .iter()
                .map(|g| g.name.clone())
                .collect::<Vec<_>>(),
        ),
    ] {
        for r in records.iter().filter(|r| !keep.contains(&r.name)) {
            let what = ObjectRef {
                kind: kind.as_str().to_string(),
                name: r.name.clone(),
            };
            if !req.prune {
                kept.push(what);
                continue;
            }
            // Deletions go first: an object renamed only in case (`dup1` to
            // `DUP1`) is deleted before its new name is created.
            writes.insert(
                0,
                Write::DeleteObject {
                    kind,
                    name: r.name.clone(),
                    expect: Expect::Version(r.version),
                },
            );
            entries.push(audit(
                &who,
                &format!("{}.delete", kind.as_str()),
                kind.as_str(),
                &r.name,
                Some(r.doc.clone()),
                None,
            ));
            deleted.push(what);
        }
    }
    if let Some(settings) = desired.settings.as_ref().filter(|s| **s != fleet.settings) {
        if !req.dry_run {
            who.require(Role::GlobalAdmin, "changing tenant settings")?;
        }
        let (b, a) = (
            tenant_settings_to_json(&fleet.settings),
            tenant_settings_to_json(settings),
        );
        writes.push(Write::ExpectTenantSettings {
            version: settings_version,
        });
        writes.push(Write::PutTenantSettings { doc: a.clone() });
        entries.push(audit(
            &who,
            "tenant.settings",
            "tenant",
            &who.tenant_name,
            Some(b),
            Some(a),
        ));
        changed.push(ObjectRef {
            kind: "tenant_settings".into(),
            name: who.tenant_name.clone(),
        });
    } else if desired.settings.is_some() {
        unchanged += 1;
    }

    let mut after = fleet.clone();
    // Unchanged policies keep their version, so their provenance is exact;
    // without `prune`, the ones the documents leave out stay as they are.
    let is_kept = |kind: ObjectKind, name: &str| {
        kept.iter()
            .any(|k: &ObjectRef| k.kind == kind.as_str() && k.name == name)
    };
    let kept_policies: Vec<Policy> = fleet
        .policies
        .iter()
        .filter(|p| is_kept(ObjectKind::Policy, &p.name))
        .cloned()
        .collect();
    let kept_groups: Vec<Group> = fleet
        .groups
        .iter()
        .filter(|g| is_kept(ObjectKind::Group, &g.name))
        .cloned()
        .collect();
    after.policies = desired
        .policies
        .into_iter()
        .map(|(_, mut p)| {
            if let Some(r) = fleet
                .policy_records
                .iter()
                .find(|r| r.name == p.name && r.doc == policy_to_json(&p))
            {
                p.version = r.version;
                p.modified_at = r.modified_at;
            }
            p
        })
        .chain(kept_policies)
        .collect();
    after.groups = desired.groups.into_iter().chain(kept_groups).collect();
    if let Some(s) = desired.settings {
        after.settings = s;
    }
    let mut devices = fleet.impact_on(&after, None);
    let staged: Vec<(String, Option<Value>)> = created
        .iter()
        .chain(&changed)
        .chain(&deleted)
        .filter(|what| what.kind == ObjectKind::Policy.as_str())
        .map(|what| {
            let doc = after
                .policies
                .iter()
                .find(|p| p.name == what.name)
                .map(policy_to_json);
            (what.name.clone(), doc)
        })
        .collect();
    annotate_stages(&who.tenant_id, &fleet, &after, &staged, &mut devices);
    let applied = !req.dry_run && !writes.is_empty();
    if applied {
        // Each policy change starts (or joins) its staged rollout in the
        // same transaction.
        for (name, after_doc) in &staged {
            let before = fleet.policy_records.iter().find(|r| &r.name == name);
            let (w, e) = crate::rollout::on_policy_change(
                &state,
                &who.tenant_id,
                &who.actor,
                name,
                before,
                after_doc.as_ref(),
            )
            .await?;
            writes.extend(w);
            entries.extend(e);
        }
        // Every write expects the version this plan was computed from: a
        // change by someone else in between fails the whole batch.
        let written = state
            .store
            .write(&who.tenant_id, state.clock.now(), writes, entries)
            .await;
        if let Err(rampart_store::StoreError::Conflict(detail)) = written {
            return Err(ApiError::Coded {
                status: StatusCode::CONFLICT,
                code: "version_mismatch",
                message: format!(
                    "someone else changed the tenant while this apply ran ({detail}); \
                     nothing was applied: run it again to see the plan against the new state"
                ),
            });
        }
        written?;
        state.policy_changed(&who.tenant_id);
    }
    Ok(Json(ApplyResponse {
        created,
        changed,
        deleted,
        kept,
        unchanged,
        devices,
        applied,
    }))
}
