//! The intake buffer.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::{StoreError, ValidationError};
use crate::ids::{AccountId, ContactId, IntakeRecordId, WorkspaceId};
use crate::model::{Contact, FieldProvenance, IntakeRecord, IntakeStatus, NewEvent};
use crate::store::Page;

/// The most rows [`IntakeStore::insert_intake_batch`] takes at once: large enough that
/// a bulk import is not dominated by per-batch round trips, small enough to bound the
/// memory of one call.
pub const MAX_INTAKE_BATCH: usize = 10_000;

/// The contact write of a processed intake row.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactWrite {
    /// A new contact (version 1), as [`ContactStore::insert_contact`] takes it.
    ///
    /// [`ContactStore::insert_contact`]: crate::store::ContactStore::insert_contact
    Create(Contact),
    /// A merged contact at its stored version, as
    /// [`ContactStore::update_contact`] takes it (compare-and-set).
    ///
    /// [`ContactStore::update_contact`]: crate::store::ContactStore::update_contact
    Update(Contact),
    /// The contact stays as it is (the row added nothing).
    Keep,
}

/// Everything processing one intake row writes, written together by
/// [`IntakeStore::complete_intake`].
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeCompletion {
    /// The contact created or merged into.
    pub contact: ContactWrite,
    /// Where the contact's fields came from (see
    /// [`IntakeStore::upsert_field_provenance`]).
    pub provenance: Vec<FieldProvenance>,
    /// `contact.created` or `contact.merged` (idempotent by key).
    pub event: NewEvent,
    /// The intake row marked processed, at its stored version (compare-and-set).
    pub intake: IntakeRecord,
}

impl IntakeCompletion {
    /// The rules that need no stored row, which every store checks first: each part
    /// valid, a created contact at version 1, and every part in the intake row's
    /// workspace.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let ws = self.intake.workspace_id;
        self.intake.validate()?;
        let contact_ws = match &self.contact {
            ContactWrite::Create(c) => {
                crate::model::rules::require_new_version(c.version)?;
                c.validate()?;
                Some(c.workspace_id)
            }
            ContactWrite::Update(c) => {
                c.validate()?;
                Some(c.workspace_id)
            }
            ContactWrite::Keep => None,
        };
        for p in &self.provenance {
            p.validate()?;
        }
        self.event.validate()?;
        let foreign = contact_ws.is_some_and(|w| w != ws)
            || self.event.workspace_id != ws
            || self.provenance.iter().any(|p| p.workspace_id != ws);
        if foreign {
            return Err(ValidationError::new(
                "intake.completion",
                "every part must belong to the intake row's workspace",
            ));
        }
        Ok(())
    }
}

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

    /// Stores a batch of rows of one workspace, with the rules of
    /// [`insert_intake`](Self::insert_intake) applied row by row in input order: the
    /// first `Pending` row of a fingerprint (in the store or earlier in the batch) stays
    /// `Pending`, later ones are stored `Duplicate` of it. Takes the rows and returns
    /// them as stored, in input order, so the caller sees which were duplicates (a
    /// large batch is never copied only to be answered).
    ///
    /// Every row must belong to `workspace_id` (`Invalid`). The batch is validated
    /// before anything is written; an invalid row or a reused id fails the whole batch
    /// (`Invalid` / `Conflict`) and stores nothing. At most [`MAX_INTAKE_BATCH`] rows
    /// (`Invalid`); an empty batch returns an empty list. Backends SHOULD write a batch
    /// in one bulk operation (PostgreSQL: one `COPY`). Concurrent batches with shared
    /// fingerprints MUST leave one pending row per fingerprint. A backend that cannot
    /// settle such a race after a few attempts answers `Conflict` (the rows it settled
    /// stay stored; re-insert only the rows that `get_intake` does not find); a
    /// deadlock between batches is `Unavailable`.
    async fn insert_intake_batch(
        &self,
        workspace_id: WorkspaceId,
        records: Vec<IntakeRecord>,
    ) -> Result<Vec<IntakeRecord>, StoreError>;

    /// Writes what processing one row produced in one atomic step: the contact write,
    /// its provenance, its event and the row's new state. Each part follows the rules
    /// of its own method ([`insert_contact`] / [`update_contact`],
    /// [`upsert_field_provenance`], [`append_event`], [`update_intake`]); if any part
    /// fails, nothing is written, so a crash or a lost race never leaves a contact
    /// changed without its provenance, event or processed row. Every part must belong
    /// to the intake row's workspace; [`IntakeCompletion::validate`] is checked before
    /// anything else (`Invalid`). Returns the row as stored.
    ///
    /// [`insert_contact`]: crate::store::ContactStore::insert_contact
    /// [`update_contact`]: crate::store::ContactStore::update_contact
    /// [`upsert_field_provenance`]: Self::upsert_field_provenance
    /// [`append_event`]: crate::store::EventStoreExt::append_event
    /// [`update_intake`]: Self::update_intake
    async fn complete_intake(
        &self,
        completion: &IntakeCompletion,
    ) -> Result<IntakeRecord, StoreError>;

    /// Records where contact fields came from: one row per (workspace, contact, field),
    /// replaced by a later write of the same field (upsert). Idempotent. Every row must
    /// belong to `workspace_id` and be valid (`Invalid`); a contact or intake row that
    /// does not exist in the workspace is `InvalidReference`. Atomic for the batch.
    async fn upsert_field_provenance(
        &self,
        workspace_id: WorkspaceId,
        rows: &[FieldProvenance],
    ) -> Result<(), StoreError>;

    /// The provenance rows of one contact, ascending by field name; empty for an
    /// unknown contact.
    async fn list_field_provenance(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
    ) -> Result<Vec<FieldProvenance>, StoreError>;

    /// Contacts of one account, ascending by id: the candidates fuzzy identity rules
    /// compare an intake row against once its domain named the account. Empty for an
    /// unknown account. (Kept on this trait so the intake change stays additive; it
    /// reads contacts only.)
    async fn list_account_contacts(
        &self,
        workspace_id: WorkspaceId,
        account_id: AccountId,
        page: Page<ContactId>,
    ) -> Result<Vec<Contact>, StoreError>;
}
