//! Sequences and enrollments.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{ContactId, EnrollmentId, OutboxMessageId, SequenceId, WorkspaceId};
use crate::model::{Enrollment, OutboxMessage, Sequence};
use crate::store::{Inserted, Page};

/// One atomic step of an enrollment: its new state, plus the outbox work that must
/// happen together with it (the change-set the outreach runner writes).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentChange {
    /// The enrollment's new field values. `version` is the version the change was
    /// computed from (compare-and-set).
    pub enrollment: Enrollment,
    /// A message to enqueue (idempotent on its key), for example the step just rendered.
    pub enqueue: Option<OutboxMessage>,
    /// When set, every `Pending` or `AwaitingApproval` message of this enrollment is
    /// `Cancelled` with this reason, and their `Pending` approval items are `Withdrawn`
    /// with it.
    pub cancel_queued: Option<String>,
    /// The time of the change (`updated_at` of everything it touches).
    pub now: DateTime<Utc>,
}

/// What [`SequenceStore::advance_enrollment`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentAdvanced {
    /// The enrollment as stored (version bumped).
    pub enrollment: Enrollment,
    /// The enqueued message, or the existing one with the same key.
    pub enqueued: Option<Inserted<OutboxMessage>>,
    /// The messages that were cancelled.
    pub cancelled: Vec<OutboxMessageId>,
}

/// Which enrollments to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrollmentFilter {
    /// Only this contact's.
    pub contact_id: Option<ContactId>,
    /// Only in this sequence.
    pub sequence_id: Option<SequenceId>,
    /// Only running ones ([`EnrollmentState::is_running`](crate::model::EnrollmentState::is_running)).
    pub running_only: bool,
}

/// Sequence definitions and enrollments.
///
/// # Contract
/// Tenant scoping and validation as for [`ContactStore`](crate::store::ContactStore).
#[async_trait]
pub trait SequenceStore: Send + Sync + Debug {
    /// Inserts a sequence (`version` 1); a reused id is `Conflict`.
    async fn insert_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError>;

    /// The sequence, or `NotFound`.
    async fn get_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<Sequence, StoreError>;

    /// Compare-and-set update of the definition. The previous definition stays
    /// readable with [`SequenceStore::get_sequence_version`], so enrollments that keep
    /// their version can finish on it.
    async fn update_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError>;

    /// The definition as it was at `version` (the current one included), or `NotFound`
    /// if the sequence never had that version.
    async fn get_sequence_version(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
        version: i64,
    ) -> Result<Sequence, StoreError>;

    /// Sequences of the workspace, ascending by id.
    async fn list_sequences(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SequenceId>,
    ) -> Result<Vec<Sequence>, StoreError>;

    /// Inserts an enrollment (`version` 1). The sequence and contact must exist in the
    /// workspace (`InvalidReference`). A contact has at most one running enrollment per
    /// sequence: a second one is `Conflict`, atomically even under concurrent inserts.
    async fn insert_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError>;

    /// The enrollment, or `NotFound`.
    async fn get_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
    ) -> Result<Enrollment, StoreError>;

    /// Compare-and-set update (state transitions). Moving an enrollment back to a
    /// running state while another running one exists for the contact and sequence
    /// is `Conflict`.
    async fn update_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError>;

    /// Running enrollments whose `next_run_at` is at or before `now`, earliest first
    /// (ties by id), at most `limit`. Paused enrollments with a due `next_run_at` are
    /// included: that is their automatic resume time.
    async fn list_due_enrollments(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Enrollment>, StoreError>;

    /// The workspaces that have due enrollments (as [`SequenceStore::list_due_enrollments`]
    /// defines them), ordered by their earliest due `next_run_at` (ties by workspace
    /// id), at most `limit`. This is how a runner finds tenants to work on.
    async fn list_workspaces_with_due_enrollments(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WorkspaceId>, StoreError>;

    /// Applies `change` atomically: either everything or nothing.
    ///
    /// - Compare-and-set on `change.enrollment.version` (`VersionConflict`, `NotFound`),
    ///   with the same validation and uniqueness rules as `update_enrollment`.
    /// - `enqueue`, if set, must belong to the same workspace and have `enrollment_id`
    ///   equal to the enrollment's id (`Invalid`); it is enqueued as by
    ///   [`OutboxStore::enqueue_outbox`](crate::store::OutboxStore::enqueue_outbox).
    /// - `cancel_queued`, if set, cancels as documented on [`EnrollmentChange`].
    /// - Setting both `enqueue` and `cancel_queued` is `Invalid`.
    /// - Appends, in the same step, the enrollment's transition events
    ///   ([`crate::events::enrollment_transition`]), `outbox.cancelled` for each
    ///   cancelled message and `approval.decided` for each withdrawn item.
    async fn advance_enrollment(
        &self,
        change: &EnrollmentChange,
    ) -> Result<EnrollmentAdvanced, StoreError>;

    /// Applies a page of change-sets, in order, as if by one
    /// [`advance_enrollment`](SequenceStore::advance_enrollment) call each; answers
    /// one result per change, in order. The outreach runner writes each page of due
    /// enrollments with one call.
    ///
    /// - Each change keeps its own contract: its compare-and-set, validation,
    ///   idempotent enqueue, cancellation and events. A change that fails
    ///   (`VersionConflict`, `NotFound`, `Invalid`, ...) gets its error in its slot and
    ///   changes nothing; the others MUST still apply.
    /// - Several changes of one enrollment apply in their order: a later one names the
    ///   version the earlier one stores (so it fails with `VersionConflict` when the
    ///   earlier one did not apply).
    /// - The outer `Err` means nothing was applied (the backend failed as a whole, for
    ///   example its connection); the caller may retry the page.
    ///
    /// A backend SHOULD apply the page in a few round trips (PostgreSQL: one
    /// transaction, a statement per kind of write, not per change); it MAY commit the
    /// changes separately.
    async fn advance_enrollments(
        &self,
        changes: &[EnrollmentChange],
    ) -> Result<Vec<Result<EnrollmentAdvanced, StoreError>>, StoreError>;

    /// Enrollments matching `filter`, ascending by id.
    async fn list_enrollments(
        &self,
        workspace_id: WorkspaceId,
        filter: &EnrollmentFilter,
        page: Page<EnrollmentId>,
    ) -> Result<Vec<Enrollment>, StoreError>;
}
