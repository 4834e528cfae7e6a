//! The workspace registry: which tenants exist, and their settings.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::WorkspaceId;
use crate::model::Workspace;
use crate::store::Page;

/// The workspace registry.
///
/// This is how an engine learns which workspaces to serve without a host-kept list:
/// page through [`list_workspaces`](Self::list_workspaces). It is also where a
/// workspace's [`WorkspaceSettings`](crate::model::WorkspaceSettings) live.
///
/// # Contract
/// - A workspace row is keyed by its id alone: unlike every other repository, these
///   methods are not scoped to a caller's workspace (a workspace *is* the scope).
/// - Rows are versioned: [`insert_workspace`](Self::insert_workspace) requires
///   `version == 1`, [`update_workspace`](Self::update_workspace) is a compare-and-set
///   on `version`. Both validate the row ([`Workspace::validate`], which validates the
///   settings) and answer `Invalid` on bad input.
/// - Other tables do not reference workspace rows (data written before the registry
///   existed has none), so registering a workspace is never required by another
///   repository, and no other method checks it.
///
/// # Implementing
/// Store the settings as their serde JSON form (see
/// [`WorkspaceSettings`](crate::model::WorkspaceSettings)); a stored value that no
/// longer deserializes is `Backend` (not `Invalid`: the caller's input is not at fault).
#[async_trait]
pub trait WorkspaceStore: Send + Sync + Debug {
    /// Registers `workspace`; `Conflict` if its id is already registered. Returns the
    /// stored row. Atomic.
    async fn insert_workspace(&self, workspace: &Workspace) -> Result<Workspace, StoreError>;

    /// The workspace, or `NotFound`.
    async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace, StoreError>;

    /// Compare-and-set update of name and settings: succeeds only if the stored
    /// `version` is `workspace.version`, then stores `version + 1` and returns the new
    /// row; `created_at` is kept from the stored row. `NotFound` if the id is not
    /// registered, `VersionConflict` if the version moved on. Atomic.
    async fn update_workspace(&self, workspace: &Workspace) -> Result<Workspace, StoreError>;

    /// Registered workspaces with an id after `page.after`, ascending by id, at most
    /// `page.limit` (1 to [`Page::MAX_LIMIT`], else `Invalid`). Page through every
    /// workspace by passing the last id back.
    async fn list_workspaces(&self, page: Page<WorkspaceId>) -> Result<Vec<Workspace>, StoreError>;
}
