//! The workspace registry: `workspaces`, settings as jsonb (migration 0009).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use crm_core::model::rules::{require_expected_version, require_new_version};
use crm_core::model::{Workspace, WorkspaceSettings};
use crm_core::store::{Page, WorkspaceStore};
use serde_json::Value;
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{cas_error, corrupt, db, invalid};

const WORKSPACE: &str = "workspace";

/// One `workspaces` row.
#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    id: Uuid,
    name: String,
    settings: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl WorkspaceRow {
    /// The entity; settings that no longer deserialize (written by a newer version,
    /// or by hand) are `Backend`, so a settings read fails closed.
    fn into_workspace(self) -> Result<Workspace, StoreError> {
        let settings: WorkspaceSettings =
            serde_json::from_value(self.settings).map_err(|e| corrupt("workspaces.settings", e))?;
        Ok(Workspace {
            id: WorkspaceId::from_uuid(self.id),
            name: self.name,
            settings,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// The settings as the jsonb value to store.
fn settings_json(workspace: &Workspace) -> Result<Value, StoreError> {
    serde_json::to_value(&workspace.settings)
        .map_err(|e| invalid("workspace.settings", e.to_string()))
}

#[async_trait]
impl WorkspaceStore for PostgresStore {
    async fn insert_workspace(&self, workspace: &Workspace) -> Result<Workspace, StoreError> {
        workspace.validate()?;
        require_new_version(workspace.version)?;
        sqlx::query_as::<_, WorkspaceRow>(
            "INSERT INTO workspaces (id, name, settings, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING *",
        )
        .bind(workspace.id.as_uuid())
        .bind(workspace.name.as_str())
        .bind(settings_json(workspace)?)
        .bind(workspace.created_at)
        .bind(workspace.updated_at)
        .bind(workspace.version)
        .fetch_one(&self.pool)
        .await
        .map_err(db(WORKSPACE))?
        .into_workspace()
    }

    async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace, StoreError> {
        sqlx::query_as::<_, WorkspaceRow>("SELECT * FROM workspaces WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db(WORKSPACE))?
            .ok_or_else(|| StoreError::not_found(WORKSPACE, id))?
            .into_workspace()
    }

    async fn update_workspace(&self, workspace: &Workspace) -> Result<Workspace, StoreError> {
        workspace.validate()?;
        require_expected_version(workspace.version)?;
        let row = sqlx::query_as::<_, WorkspaceRow>(
            "UPDATE workspaces
             SET name = $2, settings = $3, updated_at = $4, version = version + 1
             WHERE id = $1 AND version = $5
             RETURNING *",
        )
        .bind(workspace.id.as_uuid())
        .bind(workspace.name.as_str())
        .bind(settings_json(workspace)?)
        .bind(workspace.updated_at)
        .bind(workspace.version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(WORKSPACE))?;
        match row {
            Some(row) => row.into_workspace(),
            None => {
                let current =
                    sqlx::query_scalar::<_, i64>("SELECT version FROM workspaces WHERE id = $1")
                        .bind(workspace.id.as_uuid())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db(WORKSPACE))?;
                Err(cas_error(
                    WORKSPACE,
                    workspace.id.as_uuid(),
                    workspace.version,
                    current,
                ))
            }
        }
    }

    async fn list_workspaces(&self, page: Page<WorkspaceId>) -> Result<Vec<Workspace>, StoreError> {
        page.validate()?;
        sqlx::query_as::<_, WorkspaceRow>(
            "SELECT * FROM workspaces
             WHERE $1::uuid IS NULL OR id > $1
             ORDER BY id
             LIMIT $2",
        )
        .bind(page.after.map(|id| id.as_uuid()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(WORKSPACE))?
        .into_iter()
        .map(WorkspaceRow::into_workspace)
        .collect()
    }
}
