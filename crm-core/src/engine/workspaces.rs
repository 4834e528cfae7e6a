//! [`WorkspaceDirectory`]: which workspaces exist, for the periodic jobs that span them.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::WorkspaceId;

/// Lists the workspaces the engine serves, for work that spans them (the anomaly scan,
/// nightly score decay). Per-message work never needs it: the runner asks the store
/// which workspaces have due enrollments, and the dispatcher and the worker claim
/// across every workspace.
///
/// # Contract
/// - SHOULD list every workspace with outreach; a workspace left out is not scanned
///   for anomalies and its scores do not decay, nothing else.
/// - A failure is returned, never an empty list in its place, so the job retries.
#[async_trait]
pub trait WorkspaceDirectory: Send + Sync + Debug + 'static {
    /// The workspaces, in any order, without duplicates.
    async fn workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError>;
}

// SEAM(settings): once the store keeps a workspace registry
// (`WorkspaceStore::list_workspaces`), the builder's default becomes a directory over
// the store and hosts stop registering workspaces by hand. Until then the default is
// a `KnownWorkspaces` that the host fills through `EngineBuilder::workspace` (or
// `Engine::workspaces().add`).

/// Workspaces registered by the host, shared by clones.
#[derive(Debug, Clone, Default)]
pub struct KnownWorkspaces {
    ids: Arc<RwLock<BTreeSet<WorkspaceId>>>,
}

impl KnownWorkspaces {
    /// No workspaces.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `workspace_id` (again is a no-op).
    pub fn add(&self, workspace_id: WorkspaceId) {
        self.ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(workspace_id);
    }

    /// Forgets `workspace_id`.
    pub fn remove(&self, workspace_id: WorkspaceId) {
        self.ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&workspace_id);
    }

    /// The registered workspaces, ascending.
    #[must_use]
    pub fn list(&self) -> Vec<WorkspaceId> {
        self.ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

#[async_trait]
impl WorkspaceDirectory for KnownWorkspaces {
    async fn workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        Ok(self.list())
    }
}
