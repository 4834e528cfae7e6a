//! API-key authentication for the JSON API: the [`Caller`] extractor, the per-key
//! rate limit, scope checks, and the approver directory over the keys.
//!
//! The key logic (tokens, hashing, expiry, revocation, the limiter) is crm-core's
//! [`crm_core::access`]; this module only maps it onto HTTP:
//! 401 `unauthenticated` for a missing, malformed, unknown, expired or revoked key,
//! 403 `forbidden` for a missing scope, 429 `rate_limited` with `Retry-After`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use crm_core::access::{AccessError, ApiKey, ApiKeyRateLimiter, ApiKeys, bearer_token};
use crm_core::ids::{UserId, WorkspaceId};
use crm_core::outreach::approvals::ApproverDirectory;

use super::ApiError;
use crate::state::AppState;

pub use crm_core::access::ApiScope as Scope;

/// The keys and the per-key limiter the routes share.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    /// Issue, authenticate, list.
    pub keys: ApiKeys,
    /// Requests per minute per key, in this process.
    pub limiter: Arc<ApiKeyRateLimiter>,
}

/// The person a key acts as when it decides approval items: a user id equal to the
/// key's id, so the audit trail names the key.
#[must_use]
pub fn user_of(key: &ApiKey) -> UserId {
    UserId::from_uuid(key.id.as_uuid())
}

/// An authenticated, rate-limited request: the key and the workspace it acts in.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The workspace of the key: the only one the request may read or change.
    pub workspace_id: WorkspaceId,
    /// The user id the key decides approvals as.
    pub user: UserId,
    /// The key.
    pub key: ApiKey,
}

impl Caller {
    /// Refuses with 403 unless the key holds `scope`.
    ///
    /// # Errors
    /// 403 `forbidden`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        ApiKeys::authorize(&self.key, scope).map_err(access_error)
    }
}

/// The HTTP answer to an [`AccessError`].
#[must_use]
pub fn access_error(e: AccessError) -> ApiError {
    if e.is_unauthenticated() {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
    } else if e.is_forbidden() {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
    } else if e.is_retryable() {
        ApiError::unavailable("api keys", &e)
    } else {
        ApiError::internal("api keys", &e)
    }
}

/// Authenticates `token` and counts the request against the key's limit.
///
/// # Errors
/// 401, 429, 503 as the module docs say.
pub async fn authenticate(auth: &KeyAuth, token: &str) -> Result<Caller, ApiError> {
    let key = auth.keys.authenticate(token).await.map_err(access_error)?;
    if let Err(limited) = auth.limiter.check(key.id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this API key",
        )
        .with_retry_after(limited.retry_after_secs()));
    }
    Ok(Caller {
        workspace_id: key.workspace_id,
        user: user_of(&key),
        key,
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let token = bearer_token(header).map_err(access_error)?;
        authenticate(&state.auth, token).await
    }
}

/// Who may decide approval items: the workspace's keys that hold `inbox:write`, are
/// neither revoked nor expired, and whose id is the user id (see [`user_of`]).
#[derive(Debug, Clone)]
pub struct KeyApprovers {
    keys: ApiKeys,
    clock: Arc<dyn crm_core::Clock>,
}

impl KeyApprovers {
    /// The directory over `keys`, judging expiry by `clock`.
    #[must_use]
    pub fn new(keys: ApiKeys, clock: Arc<dyn crm_core::Clock>) -> Self {
        Self { keys, clock }
    }
}

#[async_trait]
impl ApproverDirectory for KeyApprovers {
    async fn can_approve(&self, workspace_id: WorkspaceId, user: UserId) -> bool {
        let Ok(keys) = self.keys.list(workspace_id).await else {
            return false; // deny when the lookup fails
        };
        let now = self.clock.now();
        keys.iter().any(|k| {
            user_of(k) == user
                && k.revoked_at.is_none()
                && !k.is_expired_at(now)
                && k.has_scope(Scope::InboxWrite)
        })
    }
}
