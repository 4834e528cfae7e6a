//! The workspace registry.

use std::collections::BTreeMap;
use std::ops::Bound;

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use crm_core::model::Workspace;
use crm_core::model::rules::{require_expected_version, require_new_version};
use crm_core::store::{Page, WorkspaceStore};

use crate::MemoryStore;
use crate::table::limit;

const WORKSPACE: &str = "workspace";

/// Registered workspaces by id (not per tenant: a row is a tenant).
#[derive(Default)]
pub(crate) struct WorkspaceTables {
    workspaces: BTreeMap<WorkspaceId, Workspace>,
}

impl WorkspaceTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.push(("workspaces", self.workspaces.len()));
    }

    fn insert(&mut self, workspace: &Workspace) -> Result<Workspace, StoreError> {
        workspace.validate()?;
        require_new_version(workspace.version)?;
        if self.workspaces.contains_key(&workspace.id) {
            return Err(StoreError::conflict(
                WORKSPACE,
                format!("id {} is already used", workspace.id),
            ));
        }
        self.workspaces.insert(workspace.id, workspace.clone());
        Ok(workspace.clone())
    }

    fn update(&mut self, workspace: &Workspace) -> Result<Workspace, StoreError> {
        workspace.validate()?;
        require_expected_version(workspace.version)?;
        let stored = self
            .workspaces
            .get_mut(&workspace.id)
            .ok_or_else(|| StoreError::not_found(WORKSPACE, workspace.id))?;
        if stored.version != workspace.version {
            return Err(StoreError::VersionConflict {
                entity: WORKSPACE,
                id: workspace.id.to_string(),
                expected: workspace.version,
                actual: stored.version,
            });
        }
        let mut next = workspace.clone();
        next.version = stored.version + 1;
        // Never changes after insert, as an UPDATE that does not list the column.
        next.created_at = stored.created_at;
        *stored = next.clone();
        Ok(next)
    }

    fn list(&self, page: &Page<WorkspaceId>) -> Result<Vec<Workspace>, StoreError> {
        page.validate()?;
        let lower = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .workspaces
            .range((lower, Bound::Unbounded))
            .map(|(_, w)| w.clone())
            .take(limit(page.limit))
            .collect())
    }
}

#[async_trait]
impl WorkspaceStore for MemoryStore {
    async fn insert_workspace(&self, workspace: &Workspace) -> Result<Workspace, StoreError> {
        self.with(|t| t.workspaces.insert(workspace))
    }

    async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace, StoreError> {
        self.with(|t| {
            t.workspaces
                .workspaces
                .get(&id)
                .cloned()
                .ok_or_else(|| StoreError::not_found(WORKSPACE, id))
        })
    }

    async fn update_workspace(&self, workspace: &Workspace) -> Result<Workspace, StoreError> {
        self.with(|t| t.workspaces.update(workspace))
    }

    async fn list_workspaces(&self, page: Page<WorkspaceId>) -> Result<Vec<Workspace>, StoreError> {
        self.with(|t| t.workspaces.list(&page))
    }
}
