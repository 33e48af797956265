//! Audit log, API tokens, local users and console login.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use rampart_core::error::FieldError;
use rampart_core::model::Role;
use rampart_proto::{
    AuditQuery, AuditView, ErrorBody, LoginRequest, LoginResponse, TokenCreate, TokenCreated,
    TokenView, UserCreate, UserUpdate, UserView,
};
use rampart_store::{TokenRecord, UserRecord, Write};
use serde_json::json;

use crate::api::audit;
use crate::auth::{
    hash_password, hash_token, new_token, verify_password, Principal, SESSION_SECONDS,
};
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::listener::PeerAddr;
use crate::state::AppState;
use crate::views::{audit_view, token_view, user_view};

/// Shortest password a user may have.
const MIN_PASSWORD_CHARS: usize = 12;

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditView>), (status = 400, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    who: Principal,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Json<Vec<AuditView>>> {
    let query = audit_query(q)?;
    let entries = state.store.audit(&who.tenant_id, &query).await?;
    Ok(Json(entries.into_iter().map(audit_view).collect()))
}

/// The store's query for the API's; a 400 naming the parameter that is
/// out of range or empty.
fn audit_query(q: AuditQuery) -> ApiResult<rampart_store::AuditQuery> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::BadRequest(
            "before must be an audit entry id (1 or more)".into(),
        ));
    }
    for (name, value) in [
        ("actor", &q.actor),
        ("action", &q.action),
        ("object_kind", &q.object_kind),
        ("object_name", &q.object_name),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ApiError::BadRequest(format!(
                "{name} must not be empty; leave it out to match every entry"
            )));
        }
    }
    if let (Some(since), Some(until)) = (q.since, q.until) {
        if since >= until {
            return Err(ApiError::BadRequest(format!(
                "since ({since}) must be before until ({until})"
            )));
        }
    }
    Ok(rampart_store::AuditQuery {
        limit,
        before: q.before,
        actor: q.actor,
        action: q.action,
        object_kind: q.object_kind,
        object_name: q.object_name,
        since: q.since,
        until: q.until,
    })
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

/// A username or token name: normalized (`names::normalize_name`) and,
/// since people type it to sign in, without spaces.
fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let invalid = |m: String| ApiError::Validation(vec![FieldError::new(field, m)]);
    let name = rampart_core::names::normalize_name(name, 64).map_err(invalid)?;
    if name.chars().any(char::is_whitespace) {
        return Err(invalid("must not contain spaces".into()));
    }
    Ok(name)
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
    let now = state.clock.now();
    if body.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "expires_at",
            format!("must be in the future (Unix seconds after {now})"),
        )]));
    }
    let token = new_token();
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: who.tenant_id.clone(),
        name: name.clone(),
        role: role.to_string(),
        kind: "api".into(),
        hash: hash_token(&token),
        created_at: now,
        expires_at: body.expires_at,
        created_by: who.actor.clone(),
        last_used_at: None,
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
                Some(json!({ "id": id, "role": role, "expires_at": body.expires_at })),
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
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`last_global_admin`: the tenant's last global_admin token or user", body = ErrorBody)))]
pub async fn delete_token(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::GlobalAdmin, "revoking a token")?;
    let _serial = state.admin_changes.lock().await;
    let token = state
        .store
        .tokens(&who.tenant_id)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("token {id:?}")))?;
    if token.kind == "api" {
        keep_a_global_admin(&state, &who.tenant_id, Leaving::Token(&token.id)).await?;
    }
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
    check_password(&body.password)?;
    let record = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.clone(),
        password_hash: hash_password(&body.password)?,
        role: role.to_string(),
        created_at: state.clock.now(),
        disabled: false,
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

fn check_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::Validation(vec![FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        )]));
    }
    Ok(())
}

/// What a change takes away from the tenant's global_admins.
enum Leaving<'a> {
    /// An API token is revoked.
    Token(&'a str),
    /// A user is deleted, disabled or given another role (by id).
    User(&'a str),
}

/// Refuses (409 `last_global_admin`) a change that would leave the tenant
/// with no way to administer it: no enabled global_admin user and no
/// unexpired global_admin API token. Callers hold `state.admin_changes`.
async fn keep_a_global_admin(
    state: &AppState,
    tenant: &str,
    leaving: Leaving<'_>,
) -> ApiResult<()> {
    let now = state.clock.now();
    let admin = Role::GlobalAdmin.to_string();
    let tokens = state.store.tokens(tenant).await?;
    let users = state.store.users(tenant).await?;
    let is_leaving_token = |id: &str| matches!(leaving, Leaving::Token(t) if t == id);
    let is_leaving_user = |id: &str| matches!(leaving, Leaving::User(u) if u == id);
    let was_admin = match leaving {
        Leaving::Token(id) => tokens.iter().any(|t| t.id == id && t.role == admin),
        Leaving::User(id) => users
            .iter()
            .any(|u| u.id == id && u.role == admin && !u.disabled),
    };
    if !was_admin {
        return Ok(());
    }
    let remaining = tokens
        .iter()
        .filter(|t| t.kind == "api" && t.role == admin && !is_leaving_token(&t.id))
        .filter(|t| t.expires_at.is_none_or(|at| at > now))
        .count()
        + users
            .iter()
            .filter(|u| u.role == admin && !u.disabled && !is_leaving_user(&u.id))
            .count();
    if remaining == 0 {
        return Err(ApiError::Coded {
            status: StatusCode::CONFLICT,
            code: "last_global_admin",
            message: "this is the tenant's last global_admin (user or API token); create another one first".into(),
        });
    }
    Ok(())
}

#[utoipa::path(put, path = "/api/v1/users/{username}", tag = "users", request_body = UserUpdate,
    params(("username" = String, Path)),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`last_global_admin`: the change would leave the tenant without a global_admin", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
    JsonBody(body): JsonBody<UserUpdate>,
) -> ApiResult<Json<UserView>> {
    who.require(Role::GlobalAdmin, "changing a user")?;
    let role = body.role.as_deref().map(parse_role).transpose()?;
    if let Some(password) = &body.password {
        check_password(password)?;
    }
    let _serial = state.admin_changes.lock().await;
    let user = state
        .store
        .user(&who.tenant_id, &username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?}")))?;
    let demoted = role.is_some_and(|r| r != Role::GlobalAdmin);
    if demoted || body.disabled == Some(true) {
        keep_a_global_admin(&state, &who.tenant_id, Leaving::User(&user.id)).await?;
    }
    let password_hash = match &body.password {
        Some(p) => Some(hash_password(p)?),
        None => None,
    };
    let before = json!({ "role": user.role, "disabled": user.disabled });
    let mut after = before.clone();
    if let Some(r) = role {
        after["role"] = json!(r);
    }
    if let Some(d) = body.disabled {
        after["disabled"] = json!(d);
    }
    if body.password.is_some() {
        after["password"] = json!("changed");
    }
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::UpdateUser {
                username: user.username.clone(),
                role: role.map(|r| r.to_string()),
                password_hash,
                disabled: body.disabled,
            }],
            vec![audit(
                &who,
                "user.update",
                "user",
                &user.username,
                Some(before),
                Some(after),
            )],
        )
        .await?;
    let updated = state
        .store
        .user(&who.tenant_id, &user.username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?}")))?;
    Ok(Json(user_view(updated)))
}

#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path)),
    responses((status = 204, description = "The user and its sessions are gone"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`last_global_admin`", body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::GlobalAdmin, "deleting a user")?;
    let _serial = state.admin_changes.lock().await;
    let user = state
        .store
        .user(&who.tenant_id, &username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?}")))?;
    keep_a_global_admin(&state, &who.tenant_id, Leaving::User(&user.id)).await?;
    state
        .store
        .write(
            &who.tenant_id,
            state.clock.now(),
            vec![Write::DeleteUser {
                username: user.username.clone(),
            }],
            vec![audit(
                &who,
                "user.delete",
                "user",
                &user.username,
                Some(json!({ "role": user.role, "disabled": user.disabled })),
                None,
            )],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The address failed logins are counted against: the connection's, or,
/// behind a TLS-terminating proxy, the last address the proxy appended to
/// `X-Forwarded-For` (earlier ones come from the client and prove nothing).
fn client_address(
    state: &AppState,
    peer: Option<std::net::IpAddr>,
    headers: &axum::http::HeaderMap,
) -> Option<std::net::IpAddr> {
    if !state.behind_proxy {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .next_back()
        .or(peer)
}

/// An argon2id hash of a password nobody has, verified against when the
/// user does not exist, so an unknown username costs the same time as a
/// wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

/// Checks a password off the async workers: argon2 takes tens of
/// milliseconds of CPU on purpose.
async fn password_matches(password: String, phc: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))
}

#[utoipa::path(post, path = "/api/v1/login", tag = "users", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: wait `Retry-After` seconds", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let refused = || ApiError::Unauthorized("unknown user or wrong password".into());
    let now = state.clock.now();
    let addr = client_address(&state, peer.map(|Extension(PeerAddr(a))| a.ip()), &headers);
    let tenant_name = body
        .tenant
        .clone()
        .unwrap_or_else(|| crate::bootstrap::DEFAULT_TENANT.to_string());
    if let Some(wait) = state.logins.wait(&tenant_name, &body.username, addr, now) {
        return Err(ApiError::TooManyRequests {
            message: format!("too many failed logins; try again in {wait} seconds"),
            retry_after_secs: wait,
        });
    }
    let tenant = state.store.tenant_by_name(&tenant_name).await?;
    let user = match &tenant {
        Some(t) => state.store.user(&t.id, &body.username).await?,
        None => None,
    };
    // The same argon2 work whether or not the user exists.
    let phc = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
    let matches = password_matches(body.password.clone(), phc).await?;
    let (Some(tenant), Some(user), true) = (tenant, user, matches) else {
        state.logins.failed(&tenant_name, &body.username, addr, now);
        tracing::info!(tenant = %tenant_name, username = %body.username, ?addr, "failed login");
        if let Some(t) = state.store.tenant_by_name(&tenant_name).await? {
            let entry = rampart_store::NewAudit {
                actor: format!("user:{}", body.username),
                action: "user.login_failed".into(),
                object_kind: "user".into(),
                object_name: body.username.clone(),
                before: None,
                after: Some(json!({ "address": addr.map(|a| a.to_string()) })),
            };
            state
                .store
                .write(&t.id, now, Vec::new(), vec![entry])
                .await?;
        }
        return Err(refused());
    };
    if user.disabled {
        // Only someone who knows the password learns the account is
        // disabled.
        return Err(ApiError::Coded {
            status: StatusCode::FORBIDDEN,
            code: "user_disabled",
            message: format!("user {:?} is disabled; ask a global_admin", user.username),
        });
    }
    state.logins.succeeded(&tenant_name, &body.username);
    let token = new_token();
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
        last_used_at: None,
    };
    let entry = rampart_store::NewAudit {
        actor: format!("user:{}", user.username),
        action: "user.login".into(),
        object_kind: "user".into(),
        object_name: user.username.clone(),
        before: None,
        after: Some(json!({ "address": addr.map(|a| a.to_string()), "expires_at": expires_at })),
    };
    state
        .store
        .write(&tenant.id, now, vec![Write::PutToken(record)], vec![entry])
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
