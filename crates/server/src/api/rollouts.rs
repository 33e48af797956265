//! Staged rollouts: list, show, and the steps administrators take (pause,
//! resume, advance, abort). The rollouts themselves start when a policy
//! changes (`crate::rollout`).

use axum::extract::{Path, State};
use axum::Json;
use rampart_core::model::Role;
use rampart_proto::{ErrorBody, RolloutAction, RolloutView};
use rampart_store::{ObjectKind, ObjectRecord};

use crate::auth::Principal;
use crate::body::OptionalJsonBody;
use crate::error::{ApiError, ApiResult};
use crate::fleet::Fleet;
use crate::rollout::{self, Command};
use crate::state::AppState;

/// Longest reason accepted with a step.
const MAX_REASON_LEN: usize = 500;

#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts",
    responses((status = 200, body = Vec<RolloutView>)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<RolloutView>>> {
    let fleet = Fleet::load_shared(&state, &who.tenant_id).await?;
    let records = state
        .store
        .objects(&who.tenant_id, ObjectKind::Rollout)
        .await?;
    let views = records
        .iter()
        .map(|r| rollout::view(r, &fleet))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(views))
}

async fn find(state: &AppState, tenant: &str, policy: &str) -> ApiResult<ObjectRecord> {
    state
        .store
        .object(tenant, ObjectKind::Rollout, policy)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("rollout of policy {policy:?}")))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{policy}", tag = "rollouts",
    params(("policy" = String, Path)),
    responses((status = 200, body = RolloutView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path(policy): Path<String>,
) -> ApiResult<Json<RolloutView>> {
    let record = find(&state, &who.tenant_id, &policy).await?;
    let fleet = Fleet::load_shared(&state, &who.tenant_id).await?;
    Ok(Json(rollout::view(&record, &fleet)?))
}

async fn step(
    state: AppState,
    who: Principal,
    policy: String,
    body: RolloutAction,
    command: Command,
) -> ApiResult<Json<RolloutView>> {
    who.require(
        Role::SecurityManager,
        &format!("{} a rollout", command.as_str()),
    )?;
    let reason = match body.reason.map(|r| r.trim().to_string()) {
        Some(r) if r.chars().count() > MAX_REASON_LEN => {
            return Err(ApiError::Validation(vec![
                rampart_core::error::FieldError::new(
                    "reason",
                    format!("is longer than {MAX_REASON_LEN} characters"),
                ),
            ]))
        }
        Some(r) if r.chars().any(char::is_control) => {
            return Err(ApiError::Validation(vec![
                rampart_core::error::FieldError::new(
                    "reason",
                    "must not contain control characters",
                ),
            ]))
        }
        Some(r) if !r.is_empty() => Some(r),
        _ => None,
    };
    let record = find(&state, &who.tenant_id, &policy).await?;
    rollout::command(&state, &who.tenant_id, &who.actor, &record, command, reason).await?;
    let record = find(&state, &who.tenant_id, &policy).await?;
    let fleet = Fleet::load_shared(&state, &who.tenant_id).await?;
    Ok(Json(rollout::view(&record, &fleet)?))
}

macro_rules! step_handler {
    ($name:ident, $command:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "rollouts",
            params(("policy" = String, Path)),
            request_body(content = RolloutAction, description = "Optional: why (an empty body is the same as {})"),
            responses((status = 200, body = RolloutView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            who: Principal,
            Path(policy): Path<String>,
            OptionalJsonBody(body): OptionalJsonBody<RolloutAction>,
        ) -> ApiResult<Json<RolloutView>> {
            step(state, who, policy, body, $command).await
        }
    };
}

step_handler!(
    pause,
    Command::Pause,
    "/api/v1/rollouts/{policy}/pause",
    "Holds a running rollout at its stage: reached devices keep the new revision, the rest the old."
);
step_handler!(
    resume,
    Command::Resume,
    "/api/v1/rollouts/{policy}/resume",
    "Runs a paused rollout again; the current stage's soak starts over."
);
step_handler!(
    advance,
    Command::Advance,
    "/api/v1/rollouts/{policy}/advance",
    "Moves to the next stage now (or completes after the last), whatever the gates say."
);
step_handler!(
    abort,
    Command::Abort,
    "/api/v1/rollouts/{policy}/abort",
    "Rolls back: the policy's previous revision is written back and every device returns to it."
);
