//! The workspace registry's row: a tenant the store knows, with its settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::model::WorkspaceSettings;
use crate::model::rules::{MAX_NAME_BYTES, require_text_max, stored_time};

/// A workspace (tenant) registered in the store, with its settings.
///
/// Engines find the workspaces to serve by listing these
/// ([`WorkspaceStore::list_workspaces`](crate::store::WorkspaceStore::list_workspaces)),
/// so a host keeps no list of its own, and read a workspace's settings from its row
/// (the store-backed settings provider of the outreach engine).
///
/// Other tables do not reference this row yet (rows written before the registry
/// existed have no workspace row), so a workspace id stays valid in every other
/// repository whether or not it is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    /// Id; every other row of the tenant carries it as its `workspace_id`.
    pub id: WorkspaceId,
    /// Display name (non-blank, at most [`MAX_NAME_BYTES`](crate::model::rules::MAX_NAME_BYTES)).
    pub name: String,
    /// The workspace's settings, [validated](WorkspaceSettings::validate) on every save.
    pub settings: WorkspaceSettings,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl Workspace {
    /// A new workspace (`version` 1) registered at `now`.
    pub fn new(
        id: WorkspaceId,
        name: impl Into<String>,
        settings: WorkspaceSettings,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let now = stored_time(now);
        let workspace = Self {
            id,
            name: name.into(),
            settings,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        workspace.validate()?;
        Ok(workspace)
    }

    /// The name is non-blank and short; the settings are valid.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text_max("workspace.name", &self.name, MAX_NAME_BYTES)?;
        self.settings.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_needs_a_name_and_valid_settings() {
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 1, 9, 0, 0)
            .single()
            .expect("valid time");
        let ws = Workspace::new(
            WorkspaceId::new(),
            "Acme",
            WorkspaceSettings::default(),
            now,
        )
        .expect("valid");
        assert_eq!(ws.version, 1);
        assert_eq!(ws.created_at, stored_time(now));
        assert!(
            Workspace::new(WorkspaceId::new(), " ", WorkspaceSettings::default(), now).is_err()
        );
        let bad = WorkspaceSettings::default().with_daily_touch_limit(0);
        assert!(Workspace::new(WorkspaceId::new(), "Acme", bad, now).is_err());
    }
}
