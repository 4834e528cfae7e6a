//! The intake buffer.

use async_trait::async_trait;
use crm_core::ids::{IntakeRecordId, WorkspaceId};
use crm_core::model::{Fingerprint, IntakeRecord, IntakeStatus};
use crm_core::store::{IntakeStore, Page};
use crm_core::{StoreError, ValidationError};

use crate::table::{Table, Unique, cloned, require_first_version};
use crate::{MemoryStore, Tables};

/// The intake tables.
#[derive(Default)]
pub(crate) struct IntakeTables {
    records: Table<IntakeRecord>,
    /// Fingerprint -> the one row with it that is neither a duplicate nor invalid
    /// (a partial unique index in SQL).
    primaries: Unique<Fingerprint, IntakeRecordId>,
}

impl IntakeTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.push(("intake", self.records.len()));
    }

    /// Stores a row and keeps the fingerprint index; `old_key` is the stored row's key.
    fn put(&mut self, row: IntakeRecord, old_key: Option<Fingerprint>) -> IntakeRecord {
        self.primaries
            .replace(row.workspace_id, old_key, primary_key(&row), row.id);
        self.records.put(row).clone()
    }
}

/// The fingerprint under which `row` is unique, if it takes part in deduplication.
fn primary_key(row: &IntakeRecord) -> Option<Fingerprint> {
    match row.status {
        IntakeStatus::Pending | IntakeStatus::Processed => row.fingerprint.clone(),
        IntakeStatus::Duplicate | IntakeStatus::Invalid => None,
    }
}

fn insert_intake(t: &mut Tables, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
    record.validate()?;
    require_first_version(record.version)?;
    if !matches!(record.status, IntakeStatus::Pending | IntakeStatus::Invalid) {
        return Err(
            ValidationError::new("intake.status", "a new row must be pending or invalid").into(),
        );
    }
    let intake = &mut t.intake;
    intake.records.ensure_vacant(record)?;
    t.crm
        .contacts
        .ensure_ref(record.workspace_id, record.contact_id)?;
    let mut row = record.clone();
    if let Some(first) =
        primary_key(&row).and_then(|fp| intake.primaries.get(row.workspace_id, &fp))
    {
        row.status = IntakeStatus::Duplicate;
        row.duplicate_of = Some(first);
    }
    Ok(intake.put(row, None))
}

fn update_intake(t: &mut Tables, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
    record.validate()?;
    let intake = &mut t.intake;
    let (row, old) = intake.records.cas(record)?;
    let old_key = primary_key(old);
    // The partial unique index: a row cannot become a second primary of a fingerprint.
    intake.primaries.check(
        row.workspace_id,
        primary_key(&row).as_ref(),
        row.id,
        "fingerprint",
    )?;
    t.crm
        .contacts
        .ensure_ref(row.workspace_id, row.contact_id)?;
    Ok(intake.put(row, old_key))
}

#[async_trait]
impl IntakeStore for MemoryStore {
    async fn insert_intake(&self, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
        self.with(|t| insert_intake(t, record))
    }

    async fn get_intake(
        &self,
        workspace_id: WorkspaceId,
        id: IntakeRecordId,
    ) -> Result<IntakeRecord, StoreError> {
        self.with(|t| t.intake.records.find(workspace_id, id).cloned())
    }

    async fn update_intake(&self, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
        self.with(|t| update_intake(t, record))
    }

    async fn list_intake(
        &self,
        workspace_id: WorkspaceId,
        status: Option<IntakeStatus>,
        page: Page<IntakeRecordId>,
    ) -> Result<Vec<IntakeRecord>, StoreError> {
        self.with(|t| {
            cloned(t.intake.records.page(workspace_id, &page, |r| {
                status.is_none_or(|s| r.status == s)
            }))
        })
    }
}
