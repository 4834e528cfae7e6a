//! Per-field provenance of contacts: which intake row set a field, and when.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{ContactId, IntakeRecordId, WorkspaceId};
use crate::model::IntakeSource;
use crate::model::rules::require_text;

/// Where the current value of one contact field came from.
///
/// There is one row per (workspace, contact, field): the latest write wins, so the row
/// always explains the value the contact holds now. Values themselves are not copied
/// here (they may be PII); the intake row named by `intake_id` keeps the raw input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProvenance {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The contact whose field this explains.
    pub contact_id: ContactId,
    /// The contact field name (`"email"`, `"phone"`, `"custom.plan"`, ...).
    pub field: String,
    /// The kind of source the value came from.
    pub source: IntakeSource,
    /// The source's name (file name, form id, webhook name).
    pub source_ref: String,
    /// The intake row that carried the value.
    pub intake_id: IntakeRecordId,
    /// When the value was written to the contact.
    pub recorded_at: DateTime<Utc>,
}

impl FieldProvenance {
    /// Rules for a stored row: field and source name are not blank.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_text("provenance.field", &self.field)?;
        require_text("provenance.source_ref", &self.source_ref)
    }
}
