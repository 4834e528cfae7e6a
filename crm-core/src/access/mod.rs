//! API keys for a host's API: issue, authenticate, authorize, revoke, rate-limit.
//!
//! A host (the reference server in `examples/server`, or yours) wires these into its
//! HTTP layer; the rules live here, the persistence in every store
//! ([`ApiKeyStore`](crate::store::ApiKeyStore), part of [`Store`](crate::Store)).
//!
//! # The public API
//!
//! ```text
//! crm_core::access::{ApiKeys, IssuedApiKey, AccessError, ApiKeyRateLimiter, RateLimited,
//!     bearer_token, DEFAULT_REQUESTS_PER_MINUTE, TOKEN_PRODUCT_PREFIX, TOKEN_LEN}
//! re-exported from the model: ApiKey, ApiKeyId, ApiScope, ApiKeyRecord, TokenHash
//!
//! ApiKeys::new(store: Arc<dyn ApiKeyStore>, clock: Arc<dyn Clock>) -> ApiKeys
//!     // an Arc<DynStore> coerces to Arc<dyn ApiKeyStore>
//! ApiKeys::with_touch_interval(self, chrono::Duration) -> ApiKeys      // default 1 minute
//! async ApiKeys::issue(&self, WorkspaceId, name: &str, scopes: &[ApiScope],
//!     expires_at: Option<DateTime<Utc>>) -> Result<IssuedApiKey, AccessError>
//! async ApiKeys::authenticate(&self, presented: &str) -> Result<ApiKey, AccessError>
//! ApiKeys::authorize(key: &ApiKey, scope: ApiScope) -> Result<(), AccessError>
//! async ApiKeys::authenticate_for(&self, presented: &str, scope: ApiScope)
//!     -> Result<ApiKey, AccessError>
//! async ApiKeys::revoke(&self, WorkspaceId, ApiKeyId) -> Result<ApiKey, AccessError>
//! async ApiKeys::list(&self, WorkspaceId) -> Result<Vec<ApiKey>, AccessError>
//! bearer_token(authorization: Option<&str>) -> Result<&str, AccessError>
//!
//! IssuedApiKey { key: ApiKey, token: SecretString }   // token.expose_secret(); Debug redacted
//! AccessError::{Missing, Malformed, Unknown, Expired, Revoked, MissingScope(ApiScope),
//!     Invalid(ValidationError), Store(StoreError), Randomness(BoxError)}
//!     .is_unauthenticated() (401) .is_forbidden() (403) .is_retryable()
//!
//! ApiKeyRateLimiter::new(NonZeroU32, Arc<dyn Clock>) / ::with_default_limit(Arc<dyn Clock>)
//! ApiKeyRateLimiter::check(&self, ApiKeyId) -> Result<(), RateLimited>
//! RateLimited::retry_after() -> std::time::Duration, ::retry_after_secs() -> u64 (>= 1)
//! ```
//!
//! # Rules
//! - A token is `crm_` + the 8-character visible prefix + `_` + 256 bits of secret from
//!   the OS random number generator, all URL-safe (see [`TOKEN_LEN`]). It is returned
//!   once, by [`ApiKeys::issue`], inside a [`SecretString`](crate::secret::SecretString)
//!   whose `Debug` is redacted; nothing here logs it. Stores keep its SHA-256 only,
//!   and authentication compares digests in constant time.
//! - The prefix is the unique lookup key across all workspaces; the workspace of the
//!   authenticated [`ApiKey`] is the only one a host may act on with it. Revoking and
//!   listing are scoped by workspace: a key of another workspace is `NotFound`.
//! - Expiry is judged by the [`Clock`](crate::Clock); revocation is immediate (the
//!   next `authenticate` reads the store).
//! - `last_used_at` is recorded on authentication, coalesced: only when the stored
//!   value is older than the touch interval (one minute by default), so a busy key
//!   costs one write a minute per process, not one per request.
//! - The [`ApiKeyRateLimiter`] is in-process: each host process counts on its own.
//!
//! ```
//! use std::sync::Arc;
//! # use crm_core::access::{AccessError, ApiKeys, ApiScope};
//! # use crm_core::{DynStore, SystemClock};
//! # use crm_core::ids::WorkspaceId;
//! # use crm_core::secret::ExposeSecret;
//! # async fn demo(store: Arc<DynStore>) -> Result<(), AccessError> {
//! let keys = ApiKeys::new(store, Arc::new(SystemClock));
//! let ws = WorkspaceId::new();
//! let issued = keys.issue(ws, "importer", &[ApiScope::ContactsWrite], None).await?;
//! let token = issued.token.expose_secret(); // show it once
//! let key = keys.authenticate_for(token, ApiScope::ContactsWrite).await?;
//! assert_eq!(key.workspace_id, ws);
//! assert!(ApiKeys::authorize(&key, ApiScope::InboxWrite).unwrap_err().is_forbidden());
//! # Ok(())
//! # }
//! ```

mod error;
mod rate_limit;
mod service;
mod token;

pub use error::AccessError;
pub use rate_limit::{ApiKeyRateLimiter, DEFAULT_REQUESTS_PER_MINUTE, RateLimited};
pub use service::{ApiKeys, IssuedApiKey, bearer_token};
pub use token::{TOKEN_LEN, TOKEN_PRODUCT_PREFIX};

pub use crate::ids::ApiKeyId;
pub use crate::model::{ApiKey, ApiKeyRecord, ApiScope, TokenHash};
