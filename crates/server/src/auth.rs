//! Who is calling, and may they: bearer tokens (API tokens and console
//! sessions), argon2 passwords for local users, and role checks.
//!
//! Secrets are never stored: a token is kept as the SHA-256 of its text (it
//! carries 244 random bits, so a fast hash is enough), a password as an
//! argon2id PHC string (people choose weak passwords, so a slow hash is not).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rampart_core::model::Role;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// A console session ends this long after sign-in, however busy.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// A console session not used for this long ends.
pub const SESSION_IDLE_SECONDS: i64 = 3600;

/// The prefix of every Rampart token, so a leaked one is recognizable.
pub const TOKEN_PREFIX: &str = "rmp_";

/// A new random token text.
pub fn new_token() -> String {
    format!(
        "{TOKEN_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// What the store keeps of a token.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| ApiError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("password hash: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The authenticated caller of an admin API request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    pub tenant_name: String,
    pub role: Role,
    /// `token:NAME` or `user:NAME`, as the audit log records it.
    pub actor: String,
    /// The id of the token (or session) the call came with.
    pub token_id: String,
    /// `api` or `session`.
    pub token_kind: String,
}

impl Principal {
    /// Refuses the call with 403 unless the caller's role includes `needed`.
    pub fn require(&self, needed: Role, doing: &str) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{doing} needs the {needed} role; {} has {}",
                self.actor, self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::Unauthorized("send a token as `Authorization: Bearer TOKEN`".into())
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer TOKEN`".into())
            })?;
        let record = state
            .store
            .token_by_hash(&hash_token(token))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("unknown or revoked token".into()))?;
        let now = state.clock.now();
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiError::Unauthorized(
                "the token has expired; log in again".into(),
            ));
        }
        let last_used = record.last_used_at.unwrap_or(record.created_at);
        if record.kind == "session" && now - last_used >= SESSION_IDLE_SECONDS {
            return Err(ApiError::Unauthorized(
                "the session was idle too long; log in again".into(),
            ));
        }
        // The store records use to the minute; skip the call in between.
        if record.last_used_at.is_none_or(|at| now - at >= 60) {
            state
                .store
                .touch_token(&record.tenant_id, &record.id, now)
                .await?;
        }
        let role = Role::parse(&record.role).ok_or_else(|| {
            ApiError::Internal(format!(
                "token {} has unknown role {}",
                record.id, record.role
            ))
        })?;
        let tenant = state
            .tenant_name(&record.tenant_id)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the token's tenant no longer exists".into()))?;
        let actor = match record.kind.as_str() {
            "session" => format!("user:{}", record.name),
            _ => format!("token:{}", record.name),
        };
        crate::request_log::record_caller(&record.tenant_id, None);
        Ok(Principal {
            tenant_id: record.tenant_id,
            tenant_name: tenant,
            role,
            actor,
            token_id: record.id,
            token_kind: record.kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsf", &phc));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
