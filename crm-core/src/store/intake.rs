//! The intake buffer.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{IntakeRecordId, WorkspaceId};
use crate::model::{IntakeRecord, IntakeStatus};
use crate::store::Page;

/// Raw rows waiting to become contacts.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore). Nothing is ever
/// dropped: duplicates and invalid rows are stored with their status.
#[async_trait]
pub trait IntakeStore: Send + Sync + Debug {
    /// Stores a row. `version` must be 1 and the status `Pending` or `Invalid`.
    ///
    /// A `Pending` row with a fingerprint is unique by (workspace, fingerprint) among
    /// rows that are not themselves duplicates or invalid: if such a row exists, this
    /// row is stored with status `Duplicate` and `duplicate_of` naming the first one.
    /// Atomic: of many concurrent inserts with one fingerprint exactly one stays
    /// `Pending`. Returns the row as stored. A reused id is `Conflict`.
    async fn insert_intake(&self, record: &IntakeRecord) -> Result<IntakeRecord, StoreError>;

    /// The row, or `NotFound`.
    async fn get_intake(
        &self,
        workspace_id: WorkspaceId,
        id: IntakeRecordId,
    ) -> Result<IntakeRecord, StoreError>;

    /// Compare-and-set update (for processing: status, errors, contact id).
    async fn update_intake(&self, record: &IntakeRecord) -> Result<IntakeRecord, StoreError>;

    /// Rows of the workspace, optionally with one status, ascending by id.
    async fn list_intake(
        &self,
        workspace_id: WorkspaceId,
        status: Option<IntakeStatus>,
        page: Page<IntakeRecordId>,
    ) -> Result<Vec<IntakeRecord>, StoreError>;
}
