//! Audit log, API tokens, local users and console login.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::model::Role;
use rampart_proto::{
    AuditQuery, AuditView, ErrorBody, LoginRequest, LoginResponse, TokenCreate, TokenCreated,
    TokenView, UserCreate, UserView,
};
use rampart_store::{TokenRecord, UserRecord, Write};
use serde_json::json;

use crate::api::audit;
use crate::auth::{hash_password, hash_token, new_token, verify_password, Principal};
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views::{audit_view, token_view, user_view};

/// How long a console session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditView>), (status = 400, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    who: Principal,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Json<Vec<AuditView>>> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let entries = state.store.audit(&who.tenant_id, limit, q.before).await?;
    Ok(Json(entries.into_iter().map(audit_view).collect()))
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            "role",
            format!(
                "unknown role {role:?}; expected one of {}",
                Role::expected()
            ),
        )])
    })
}

fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > 64
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            field,
            "must be 1 to 64 characters without spaces",
        )]));
    }
    Ok(name.to_string())
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<TokenCreate>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    who.require(Role::GlobalAdmin, "creating a token")?;
    let role = parse_role(&body.role)?;
    let name = check_name("name", &body.name)?;
    let token = new_token();
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: who.tenant_id.clone(),
        name: name.clone(),
        role: role.to_string(),
        kind: "api".into(),
        hash: hash_token(&token),
        created_at: state.clock.now(),
        expires_at: None,
        created_by: who.actor.clone(),
    };
    let id = record.id.clone();
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::PutToken(record)],
            vec![audit(
                &who,
                "token.create",
                "token",
                &name,
                None,
                Some(json!({ "id": id, "role": role })),
            )],
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id,
            name,
            role: role.to_string(),
            token,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenView>), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<TokenView>>> {
    who.require(Role::GlobalAdmin, "listing tokens")?;
    Ok(Json(
        state
            .store
            .tokens(&who.tenant_id)
            .await?
            .into_iter()
            .map(token_view)
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_token(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::GlobalAdmin, "revoking a token")?;
    let token = state
        .store
        .tokens(&who.tenant_id)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("token {id:?}")))?;
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::DeleteToken { id: id.clone() }],
            vec![audit(
                &who,
                "token.delete",
                "token",
                &token.name,
                Some(json!({ "id": id, "role": token.role })),
                None,
            )],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserCreate,
    responses((status = 201, body = UserView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<UserCreate>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    who.require(Role::GlobalAdmin, "creating a user")?;
    let role = parse_role(&body.role)?;
    let username = check_name("username", &body.username)?;
    if body.password.chars().count() < 12 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "password",
            "must be at least 12 characters",
        )]));
    }
    let record = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.clone(),
        password_hash: hash_password(&body.password)?,
        role: role.to_string(),
        created_at: state.clock.now(),
    };
    let view = user_view(record.clone());
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::PutUser(record)],
            vec![audit(
                &who,
                "user.create",
                "user",
                &username,
                None,
                Some(json!({ "role": role })),
            )],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<UserView>>> {
    who.require(Role::GlobalAdmin, "listing users")?;
    Ok(Json(
        state
            .store
            .users(&who.tenant_id)
            .await?
            .into_iter()
            .map(user_view)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/login", tag = "users", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let refused = || ApiError::Unauthorized("unknown user or wrong password".into());
    let tenant_name = body
        .tenant
        .clone()
        .unwrap_or_else(|| crate::bootstrap::DEFAULT_TENANT.to_string());
    let tenant = state
        .store
        .tenant_by_name(&tenant_name)
        .await?
        .ok_or_else(refused)?;
    let user = state
        .store
        .user(&tenant.id, &body.username)
        .await?
        .ok_or_else(refused)?;
    if !verify_password(&body.password, &user.password_hash) {
        return Err(refused());
    }
    let token = new_token();
    let now = state.clock.now();
    let expires_at = now + SESSION_SECONDS;
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant.id.clone(),
        name: user.username.clone(),
        role: user.role.clone(),
        kind: "session".into(),
        hash: hash_token(&token),
        created_at: now,
        expires_at: Some(expires_at),
        created_by: format!("user:{}", user.username),
    };
    state
        .store
        .write(&tenant.id, now, vec![Write::PutToken(record)], Vec::new())
        .await?;
    Ok(Json(LoginResponse {
        token,
        expires_at,
        role: user.role,
        tenant: tenant.name,
    }))
}

#[utoipa::path(post, path = "/api/v1/logout", tag = "users",
    responses((status = 204, description = "The session is revoked"), (status = 409, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, who: Principal) -> ApiResult<StatusCode> {
    if who.token_kind != "session" {
        return Err(ApiError::Conflict(
            "this is an API token, not a session; revoke it with DELETE /api/v1/tokens/{id}".into(),
        ));
    }
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::DeleteToken {
                id: who.token_id.clone(),
            }],
            Vec::new(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
