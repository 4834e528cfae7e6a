//! The intake buffer.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet};

use crm_core::ids::{AccountId, ContactId, IntakeRecordId, WorkspaceId};
use crm_core::model::rules::require_new_version;
use crm_core::model::{Contact, FieldProvenance, Fingerprint, IntakeRecord, IntakeStatus};
use crm_core::store::{ContactWrite, IntakeCompletion, IntakeStore, MAX_INTAKE_BATCH, Page};
use crm_core::{StoreError, ValidationError};

use crate::crm::{insert_contact_row, update_contact_row};
use crate::queue::{append_events, check_events};
use crate::table::{Table, Unique, cloned};
use crate::{MemoryStore, Tables};

/// The intake tables.
#[derive(Default)]
pub(crate) struct IntakeTables {
    records: Table<IntakeRecord>,
    /// Fingerprint -> the one row with it that is pending or processed (a partial
    /// unique index in SQL).
    primaries: Unique<Fingerprint, IntakeRecordId>,
    /// (workspace, contact, field) -> where the field's value came from.
    provenance: BTreeMap<(WorkspaceId, ContactId, String), FieldProvenance>,
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
        IntakeStatus::Duplicate | IntakeStatus::Invalid | IntakeStatus::Failed => None,
    }
}

/// The checks `insert_intake` makes before writing anything.
fn check_new(t: &Tables, record: &IntakeRecord) -> Result<(), StoreError> {
    record.validate()?;
    require_new_version(record.version)?;
    if !matches!(record.status, IntakeStatus::Pending | IntakeStatus::Invalid) {
        return Err(
            ValidationError::new("intake.status", "a new row must be pending or invalid").into(),
        );
    }
    t.intake.records.ensure_vacant(record)?;
    t.crm
        .contacts
        .ensure_ref(record.workspace_id, record.contact_id)
}

fn insert_intake_batch(
    t: &mut Tables,
    workspace_id: WorkspaceId,
    records: Vec<IntakeRecord>,
) -> Result<Vec<IntakeRecord>, StoreError> {
    if records.len() > MAX_INTAKE_BATCH {
        return Err(ValidationError::new("intake.batch", "at most 10000 rows").into());
    }
    // Validate the whole batch first, so a bad row stores nothing (as one SQL statement).
    let mut ids = HashSet::with_capacity(records.len());
    for record in &records {
        if record.workspace_id != workspace_id {
            return Err(ValidationError::new(
                "intake.workspace_id",
                "every row must belong to the batch's workspace",
            )
            .into());
        }
        check_new(t, record)?;
        if record.contact_id.is_some() || record.duplicate_of.is_some() {
            return Err(ValidationError::new(
                "intake.contact_id",
                "a batched row cannot carry a contact or duplicate link yet",
            )
            .into());
        }
        if !ids.insert(record.id) {
            return Err(StoreError::conflict(
                "intake_record",
                "id repeated in the batch",
            ));
        }
    }
    records.iter().map(|r| insert_intake(t, r)).collect()
}

fn upsert_field_provenance(
    t: &mut Tables,
    workspace_id: WorkspaceId,
    rows: &[FieldProvenance],
) -> Result<(), StoreError> {
    for row in rows {
        row.validate()?;
        if row.workspace_id != workspace_id {
            return Err(ValidationError::new(
                "provenance.workspace_id",
                "every row must belong to the batch's workspace",
            )
            .into());
        }
        t.crm
            .contacts
            .ensure_ref(workspace_id, Some(row.contact_id))?;
        t.intake
            .records
            .ensure_ref(workspace_id, Some(row.intake_id))?;
    }
    for row in rows {
        t.intake.provenance.insert(
            (workspace_id, row.contact_id, row.field.clone()),
            row.clone(),
        );
    }
    Ok(())
}

fn insert_intake(t: &mut Tables, record: &IntakeRecord) -> Result<IntakeRecord, StoreError> {
    record.validate()?;
    require_new_version(record.version)?;
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

/// See [`IntakeStore::complete_intake`]: every check first; then the contact write
/// (the only write that can still refuse, and it checks before it writes); then the
/// writes those checks cleared.
fn complete_intake(t: &mut Tables, c: &IntakeCompletion) -> Result<IntakeRecord, StoreError> {
    c.validate()?;
    let ws = c.intake.workspace_id;
    let (next, _) = t.intake.records.cas(&c.intake)?;
    t.intake
        .primaries
        .check(ws, primary_key(&next).as_ref(), next.id, "fingerprint")?;
    let created = match &c.contact {
        ContactWrite::Create(x) => {
            t.crm.contacts.ensure_vacant(x)?;
            Some(x.id)
        }
        ContactWrite::Update(x) => {
            t.crm.contacts.cas(x)?;
            None
        }
        ContactWrite::Keep => None,
    };
    let contact_ref = |t: &Tables, id: ContactId| {
        if created == Some(id) {
            Ok(())
        } else {
            t.crm.contacts.ensure_ref(ws, Some(id))
        }
    };
    for p in &c.provenance {
        contact_ref(t, p.contact_id)?;
        t.intake.records.ensure_ref(ws, Some(p.intake_id))?;
    }
    check_events(t, std::slice::from_ref(&c.event))?;
    if let Some(id) = c.intake.contact_id {
        contact_ref(t, id)?;
    }
    match &c.contact {
        // The completion's own event (`contact.created` / `contact.merged`) is the
        // contact's one event: the rows are written without another.
        ContactWrite::Create(x) => {
            insert_contact_row(t, x)?;
        }
        ContactWrite::Update(x) => {
            update_contact_row(t, x)?;
        }
        ContactWrite::Keep => {}
    }
    upsert_field_provenance(t, ws, &c.provenance)?;
    append_events(t, std::slice::from_ref(&c.event))?;
    update_intake(t, &c.intake)
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

    async fn complete_intake(
        &self,
        completion: &IntakeCompletion,
    ) -> Result<IntakeRecord, StoreError> {
        self.with(|t| complete_intake(t, completion))
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

    async fn insert_intake_batch(
        &self,
        workspace_id: WorkspaceId,
        records: Vec<IntakeRecord>,
    ) -> Result<Vec<IntakeRecord>, StoreError> {
        self.with(|t| insert_intake_batch(t, workspace_id, records))
    }

    async fn upsert_field_provenance(
        &self,
        workspace_id: WorkspaceId,
        rows: &[FieldProvenance],
    ) -> Result<(), StoreError> {
        self.with(|t| upsert_field_provenance(t, workspace_id, rows))
    }

    async fn list_field_provenance(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
    ) -> Result<Vec<FieldProvenance>, StoreError> {
        self.with(|t| {
            Ok(t.intake
                .provenance
                .range((workspace_id, contact_id, String::new())..)
                .take_while(|((ws, c, _), _)| *ws == workspace_id && *c == contact_id)
                .map(|(_, row)| row.clone())
                .collect())
        })
    }

    async fn list_account_contacts(
        &self,
        workspace_id: WorkspaceId,
        account_id: AccountId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError> {
        self.with(|t| {
            cloned(
                t.crm
                    .contacts
                    .page(workspace_id, &page, |c| c.account_id == Some(account_id)),
            )
        })
    }
}
