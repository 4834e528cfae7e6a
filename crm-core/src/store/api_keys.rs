//! API keys: the hashed credentials a host's API accepts (issued and checked by
//! `crate::access::ApiKeys`).

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{ApiKeyId, WorkspaceId};
use crate::model::{ApiKey, ApiKeyRecord};
use crate::store::Page;

/// The API keys of every workspace, each stored with the SHA-256 of its token and
/// never the token itself.
///
/// # Contract
/// - The visible prefix is the lookup key of authentication, which does not know the
///   workspace yet: it MUST be unique across all workspaces.
///   [`insert_api_key`](Self::insert_api_key) answers `Conflict` for a prefix (or id)
///   already stored, and the caller draws a new one.
/// - [`find_api_key_by_prefix`](Self::find_api_key_by_prefix) is the one method not
///   scoped to a workspace (like [`WorkspaceStore`](crate::store::WorkspaceStore));
///   it answers the record with its workspace, and callers MUST check the token hash
///   before trusting it. Every other method is scoped: a key of another workspace is
///   `NotFound` (or absent from a list), exactly like a missing one.
/// - Records are validated ([`ApiKeyRecord::validate`]) on insert; bad input is
///   `Invalid`. Times are kept to the microsecond.
/// - `last_used_at` only moves forward; `revoked_at`, once set, never changes.
///
/// # Implementing
/// PostgreSQL: migration 0021, a unique index on `prefix`. The conformance cases in
/// `crm-testkit`'s `store::api_keys` are the executable contract.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + Debug {
    /// Stores a new key with its token hash and returns the key as stored. `Conflict`
    /// if the prefix or the id is already stored (in any workspace). Atomic.
    async fn insert_api_key(&self, record: &ApiKeyRecord) -> Result<ApiKey, StoreError>;

    /// The key whose visible prefix is `prefix`, with its token hash and workspace,
    /// whatever its state (expired and revoked keys are found too, so the caller can
    /// say why it refuses them); `None` when no key has that prefix.
    async fn find_api_key_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Records that the key was used at `at`: sets `last_used_at` to `at` when it is
    /// unset or earlier, and returns whether it changed (a later use recorded by
    /// another process wins). `NotFound` if the key is not in `workspace_id`.
    async fn touch_api_key(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Revokes the key at `at` and returns it. Idempotent: a key already revoked is
    /// returned unchanged, keeping its first `revoked_at`. `NotFound` if the key is not
    /// in `workspace_id`. Atomic.
    async fn revoke_api_key(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<ApiKey, StoreError>;

    /// The keys of `workspace_id` (revoked and expired ones included) with an id after
    /// `page.after`, ascending by id (so in issue order), at most `page.limit` (1 to
    /// [`Page::MAX_LIMIT`], else `Invalid`).
    async fn list_api_keys(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ApiKeyId>,
    ) -> Result<Vec<ApiKey>, StoreError>;
}

// Compile-time guard: the repository stays dyn-compatible.
const _: Option<&dyn ApiKeyStore> = None;
