//! The API key service: issue, authenticate, authorize, revoke, list.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::access::AccessError;
use crate::access::token;
use crate::clock::Clock;
use crate::error::StoreErrorKind;
use crate::ids::{ApiKeyId, WorkspaceId};
use crate::model::rules::stored_time;
use crate::model::{ApiKey, ApiKeyRecord, ApiScope};
use crate::secret::SecretString;
use crate::store::{ApiKeyStore, Page};

/// How many fresh prefixes [`ApiKeys::issue`] draws before it gives up on `Conflict`.
/// With 48 random bits per prefix a second draw is already a curiosity.
const ISSUE_ATTEMPTS: usize = 3;

/// A key just issued, with its token: the only time the token exists outside the
/// client. Show it once, then drop it. `Debug` redacts the token.
#[derive(Debug)]
pub struct IssuedApiKey {
    /// The key as stored.
    pub key: ApiKey,
    /// The token to hand to the client (`secrecy::ExposeSecret::expose_secret` reads it).
    pub token: SecretString,
}

/// Issues, checks and revokes the API keys of a host's API. Cheap to clone.
///
/// See the [module docs](crate::access) for the token format and the rules.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    touch_interval: Duration,
}

impl ApiKeys {
    /// The service over `store` (an `Arc<DynStore>` coerces to it), timed by `clock`.
    /// `last_used_at` is recorded at most once a minute per key and process (see
    /// [`with_touch_interval`](Self::with_touch_interval)).
    #[must_use]
    pub fn new(store: Arc<dyn ApiKeyStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            touch_interval: Duration::minutes(1),
        }
    }

    /// Records `last_used_at` only when the stored one is at least `interval` old
    /// (zero records every use). Coalescing spares the store a write per request.
    #[must_use]
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval.max(Duration::zero());
        self
    }

    /// Issues a key of `workspace_id` named `name` holding `scopes` (at least one),
    /// expiring at `expires_at` (which must be in the future) or never.
    ///
    /// # Errors
    /// `Invalid` for a blank or over-long name, no scope, or an expiry not after now;
    /// `Store` when the store fails; `Randomness` if the OS random number generator
    /// fails.
    pub async fn issue(
        &self,
        workspace_id: WorkspaceId,
        name: &str,
        scopes: &[ApiScope],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedApiKey, AccessError> {
        let now = self.clock.now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let minted = token::mint()?;
            let record = ApiKeyRecord {
                key: ApiKey {
                    id: ApiKeyId::new(),
                    workspace_id,
                    name: name.to_owned(),
                    prefix: minted.prefix,
                    scopes: scopes.iter().copied().collect(),
                    created_at: now,
                    expires_at,
                    last_used_at: None,
                    revoked_at: None,
                }
                .at_stored_precision(),
                token_hash: minted.hash,
            };
            record.validate()?;
            match self.store.insert_api_key(&record).await {
                Ok(key) => {
                    tracing::info!(api_key = %key.id, workspace = %workspace_id, "API key issued");
                    return Ok(IssuedApiKey {
                        key,
                        token: minted.token,
                    });
                }
                // Two keys drew the same prefix: draw again.
                Err(e) if e.kind() == StoreErrorKind::Conflict && attempt < ISSUE_ATTEMPTS => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The key behind the token `presented` (the bare token, see
    /// [`bearer_token`](crate::access::bearer_token) for an `Authorization` header),
    /// if it is known, its secret matches (compared in constant time), it is not
    /// revoked and not expired by the clock. Records `last_used_at` (coalesced); a
    /// failure to record it is logged, not returned.
    ///
    /// # Errors
    /// `Missing`, `Malformed`, `Unknown`, `Revoked`, `Expired`; `Store` when the
    /// lookup fails.
    pub async fn authenticate(&self, presented: &str) -> Result<ApiKey, AccessError> {
        let presented = token::parse(presented)?;
        let record = self
            .store
            .find_api_key_by_prefix(presented.prefix)
            .await?
            .ok_or(AccessError::Unknown)?;
        // Nothing about the key is told before the secret matched it.
        if !record.token_hash.matches(&presented.hash) {
            return Err(AccessError::Unknown);
        }
        let mut key = record.key;
        if key.revoked_at.is_some() {
            return Err(AccessError::Revoked);
        }
        let now = self.clock.now();
        if key.is_expired_at(now) {
            return Err(AccessError::Expired);
        }
        if key
            .last_used_at
            .is_none_or(|last| now - last >= self.touch_interval)
        {
            match self
                .store
                .touch_api_key(key.workspace_id, key.id, now)
                .await
            {
                Ok(_) => key.last_used_at = key.last_used_at.max(Some(stored_time(now))),
                Err(e) => {
                    tracing::warn!(api_key = %key.id, error = %e, "could not record API key use")
                }
            }
        }
        Ok(key)
    }

    /// `Ok` when `key` holds `scope`.
    ///
    /// # Errors
    /// `MissingScope(scope)` otherwise.
    pub fn authorize(key: &ApiKey, scope: ApiScope) -> Result<(), AccessError> {
        if key.has_scope(scope) {
            Ok(())
        } else {
            Err(AccessError::MissingScope(scope))
        }
    }

    /// [`authenticate`](Self::authenticate) then [`authorize`](Self::authorize) for
    /// `scope`: what a request handler needs.
    ///
    /// # Errors
    /// Those of both.
    pub async fn authenticate_for(
        &self,
        presented: &str,
        scope: ApiScope,
    ) -> Result<ApiKey, AccessError> {
        let key = self.authenticate(presented).await?;
        Self::authorize(&key, scope)?;
        Ok(key)
    }

    /// Revokes key `id` of `workspace_id` now; it is refused from the next request on.
    /// Idempotent (a revoked key keeps its first `revoked_at`).
    ///
    /// # Errors
    /// `Store(NotFound)` when the workspace has no such key (a key of another workspace
    /// included).
    pub async fn revoke(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
    ) -> Result<ApiKey, AccessError> {
        let key = self
            .store
            .revoke_api_key(workspace_id, id, self.clock.now())
            .await?;
        tracing::info!(api_key = %id, workspace = %workspace_id, "API key revoked");
        Ok(key)
    }

    /// Every key of `workspace_id`, revoked and expired ones included, in issue order.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub async fn list(&self, workspace_id: WorkspaceId) -> Result<Vec<ApiKey>, AccessError> {
        let mut keys: Vec<ApiKey> = Vec::new();
        loop {
            let after = keys.last().map(|k| k.id);
            let page = Page {
                after,
                limit: Page::<ApiKeyId>::MAX_LIMIT,
            };
            let batch = self.store.list_api_keys(workspace_id, page).await?;
            let full = batch.len() == Page::<ApiKeyId>::MAX_LIMIT as usize;
            keys.extend(batch);
            if !full {
                return Ok(keys);
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme is
/// case-insensitive, RFC 9110 §11.1).
///
/// # Errors
/// `Missing` for no header or a blank one, `Malformed` for another scheme or an empty
/// token.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AccessError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AccessError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AccessError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AccessError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_parsed() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), "abc");
        assert!(matches!(bearer_token(None), Err(AccessError::Missing)));
        assert!(matches!(
            bearer_token(Some("  ")),
            Err(AccessError::Missing)
        ));
        assert!(matches!(
            bearer_token(Some("Basic abc")),
            Err(AccessError::Malformed)
        ));
        assert!(matches!(
            bearer_token(Some("Bearer")),
            Err(AccessError::Malformed)
        ));
        assert!(matches!(
            bearer_token(Some("abc")),
            Err(AccessError::Malformed)
        ));
    }
}
