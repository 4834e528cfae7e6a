//! [`WorkspaceDirectory`]: which workspaces exist, for the periodic jobs that span them.

use std::collections::BTreeSet;
use std::fmt::{self, Debug};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::WorkspaceId;
use crate::store::{Page, WorkspaceStore};

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

/// Every workspace registered in the store's registry
/// ([`WorkspaceStore::list_workspaces`]), read page by page on every call: the
/// engine's default directory, so a workspace registered by any process is scanned
/// and decayed from the next run on.
#[derive(Clone)]
pub struct StoreWorkspaces {
    store: Arc<dyn WorkspaceStore>,
}

impl StoreWorkspaces {
    /// The workspaces of `store`'s registry.
    #[must_use]
    pub fn new(store: Arc<dyn WorkspaceStore>) -> Self {
        Self { store }
    }
}

impl fmt::Debug for StoreWorkspaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreWorkspaces").finish_non_exhaustive()
    }
}

#[async_trait]
impl WorkspaceDirectory for StoreWorkspaces {
    async fn workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let mut ids = Vec::new();
        let mut page = Page::first(Page::<WorkspaceId>::MAX_LIMIT);
        loop {
            let rows = self.store.list_workspaces(page).await?;
            let full = rows.len() == page.limit as usize;
            ids.extend(rows.iter().map(|w| w.id));
            match ids.last() {
                Some(last) if full => page = Page::after(*last, page.limit),
                _ => return Ok(ids),
            }
        }
    }
}

/// A fixed set of workspaces, for a host whose engine serves only some of the
/// registered ones ([`EngineBuilder::workspaces`](super::EngineBuilder::workspaces)).
/// Shared by clones.
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
