//! Sequences (with their version history) and enrollments, including the enrollment
//! change-set the outreach runner writes.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, EnrollmentId, SequenceId, WorkspaceId};
use crm_core::model::NewEvent;
use crm_core::model::rules::require_new_version;
use crm_core::model::{Enrollment, Sequence};
use crm_core::store::{
    EnrollmentAdvanced, EnrollmentChange, EnrollmentFilter, Page, Scope, SequenceStore,
    validate_limit,
};
use crm_core::{StoreError, ValidationError, events};

use crate::outbox::{apply_enqueue, cancel_queued, check_enqueue};
use crate::queue::append_changes;
use crate::table::{Table, Unique, cloned, limit};
use crate::{MemoryStore, Tables};

/// The sequence tables.
#[derive(Default)]
pub(crate) struct SequenceTables {
    sequences: Table<Sequence>,
    /// (workspace, sequence) -> every earlier definition by version; the current one
    /// lives in `sequences`.
    history: HashMap<(WorkspaceId, SequenceId), BTreeMap<i64, Sequence>>,
    enrollments: Table<Enrollment>,
    /// (contact, sequence) -> its one running enrollment.
    running: Unique<(ContactId, SequenceId), EnrollmentId>,
}

impl SequenceTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.extend([
            ("sequences", self.sequences.len()),
            (
                "sequence_versions",
                self.history.values().map(BTreeMap::len).sum(),
            ),
            ("enrollments", self.enrollments.len()),
        ]);
    }
}

/// The key under which `e` blocks a second running enrollment, if it is running.
fn running_key(e: &Enrollment) -> Option<(ContactId, SequenceId)> {
    e.state
        .is_running()
        .then_some((e.contact_id, e.sequence_id))
}

/// An enrollment row that passed every check, ready to be stored with its events.
pub(crate) struct EnrollmentWrite {
    row: Enrollment,
    /// The running key of the row it replaces (`None` on insert).
    old_key: Option<(ContactId, SequenceId)>,
    /// The catalogue events of the change (`enrollment.enrolled`, or the transition's).
    events: Vec<NewEvent>,
}

/// Checks the one-running rule and the references of a row about to be stored, and
/// builds its events: `before` is the stored row it replaces (`None` on insert).
fn check_enrollment(
    t: &Tables,
    row: Enrollment,
    before: Option<&Enrollment>,
) -> Result<EnrollmentWrite, StoreError> {
    let old_key = before.and_then(running_key);
    let events = match before {
        None => vec![events::enrollment_enrolled(&row)?],
        Some(before) => events::enrollment_transition(before, &row)?,
    };
    let ws = row.workspace_id;
    let s = &t.sequences;
    s.running.check(
        ws,
        running_key(&row).as_ref(),
        row.id,
        "a running enrollment of the contact in the sequence",
    )?;
    s.sequences.ensure_ref(ws, Some(row.sequence_id))?;
    t.crm.contacts.ensure_ref(ws, Some(row.contact_id))?;
    Ok(EnrollmentWrite {
        row,
        old_key,
        events,
    })
}

/// The compare-and-set update of `enrollment`, checked (`NotFound`, `VersionConflict`,
/// `Conflict`, `InvalidReference`) but not yet stored.
pub(crate) fn check_update_enrollment(
    t: &Tables,
    enrollment: &Enrollment,
) -> Result<EnrollmentWrite, StoreError> {
    let (row, old) = t.sequences.enrollments.cas(enrollment)?;
    check_enrollment(t, row, Some(old))
}

/// Stores a checked enrollment with its events, keeping the one-running index in step.
pub(crate) fn apply_enrollment(t: &mut Tables, write: EnrollmentWrite) -> Enrollment {
    let EnrollmentWrite {
        row,
        old_key,
        events,
    } = write;
    let s = &mut t.sequences;
    let ws = row.workspace_id;
    s.running.replace(ws, old_key, running_key(&row), row.id);
    let stored = s.enrollments.put(row).clone();
    append_changes(t, &events);
    stored
}

/// Makes a step-pending enrollment waiting on `step` due at `at` (a version bump, no
/// state change, so no event): its step's message ended unsent, and the runner
/// should move it on promptly rather than at its old due time. Anything else is left
/// alone.
pub(crate) fn nudge_enrollment(
    t: &mut Tables,
    ws: WorkspaceId,
    id: EnrollmentId,
    step: Option<i32>,
    at: DateTime<Utc>,
) {
    let Some(stored) = t.sequences.enrollments.get(ws, id) else {
        return;
    };
    let waiting = stored.state == crm_core::model::EnrollmentState::StepPending
        && step == Some(stored.current_step);
    if !waiting {
        return;
    }
    let mut row = stored.clone();
    row.next_run_at = Some(at);
    row.updated_at = at.max(row.updated_at);
    row.version += 1;
    t.sequences.enrollments.put(row);
}

fn insert_enrollment(t: &mut Tables, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
    require_new_version(enrollment.version)?;
    t.sequences.enrollments.ensure_vacant(enrollment)?;
    let write = check_enrollment(t, enrollment.clone(), None)?;
    Ok(apply_enrollment(t, write))
}

fn update_enrollment(t: &mut Tables, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
    let write = check_update_enrollment(t, enrollment)?;
    Ok(apply_enrollment(t, write))
}

fn update_sequence(t: &mut Tables, sequence: &Sequence) -> Result<Sequence, StoreError> {
    sequence.validate()?;
    let s = &mut t.sequences;
    let (row, previous) = s.sequences.cas(sequence)?;
    let event = events::sequence_saved(&row)?;
    let previous = previous.clone();
    s.history
        .entry((previous.workspace_id, previous.id))
        .or_default()
        .insert(previous.version, previous);
    let stored = s.sequences.put(row).clone();
    append_changes(t, &[event]);
    Ok(stored)
}

fn sequence_version(
    t: &Tables,
    ws: WorkspaceId,
    id: SequenceId,
    version: i64,
) -> Result<Sequence, StoreError> {
    let s = &t.sequences;
    s.sequences
        .get(ws, id)
        .filter(|current| current.version == version)
        .or_else(|| s.history.get(&(ws, id)).and_then(|h| h.get(&version)))
        .cloned()
        .ok_or_else(|| StoreError::not_found(SequenceId::ENTITY, format!("{id} version {version}")))
}

/// The due time of `e` at `now`, if it is due (see `list_due_enrollments`).
fn due_at(e: &Enrollment, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    e.next_run_at
        .filter(|at| e.state.is_running() && *at <= now)
}

fn workspaces_with_due(t: &Tables, now: DateTime<Utc>, limit_rows: u32) -> Vec<WorkspaceId> {
    let mut earliest: HashMap<WorkspaceId, DateTime<Utc>> = HashMap::new();
    for e in t.sequences.enrollments.in_scope(Scope::All) {
        if let Some(at) = due_at(e, now) {
            earliest
                .entry(e.workspace_id)
                .and_modify(|first| *first = (*first).min(at))
                .or_insert(at);
        }
    }
    let mut due: Vec<(DateTime<Utc>, WorkspaceId)> =
        earliest.into_iter().map(|(ws, at)| (at, ws)).collect();
    due.sort_unstable();
    due.into_iter()
        .take(limit(limit_rows))
        .map(|(_, ws)| ws)
        .collect()
}

/// Applies an enrollment change-set: every check first, then every write.
fn advance(t: &mut Tables, change: &EnrollmentChange) -> Result<EnrollmentAdvanced, StoreError> {
    let enrollment = &change.enrollment;
    if change.enqueue.is_some() && change.cancel_queued.is_some() {
        return Err(
            ValidationError::new("change", "enqueue and cancel_queued cannot both be set").into(),
        );
    }
    if let Some(message) = &change.enqueue {
        if message.workspace_id != enrollment.workspace_id {
            return Err(ValidationError::new(
                "change.enqueue.workspace_id",
                "must be the enrollment's workspace",
            )
            .into());
        }
        if message.enrollment_id != Some(enrollment.id) {
            return Err(ValidationError::new(
                "change.enqueue.enrollment_id",
                "must be the enrollment's id",
            )
            .into());
        }
    }
    let mut row = enrollment.clone();
    row.updated_at = change.now;
    let write = check_update_enrollment(t, &row)?;
    let enqueue = change
        .enqueue
        .as_ref()
        .map(|message| check_enqueue(t, message))
        .transpose()?;
    // Every check passed: from here on nothing fails.
    let stored = apply_enrollment(t, write);
    let enqueued = enqueue.map(|plan| apply_enqueue(t, plan));
    let cancelled = match &change.cancel_queued {
        Some(reason) => cancel_queued(t, &stored, reason, change.now),
        None => Vec::new(),
    };
    Ok(EnrollmentAdvanced {
        enrollment: stored,
        enqueued,
        cancelled,
    })
}

#[async_trait]
impl SequenceStore for MemoryStore {
    async fn insert_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError> {
        sequence.validate()?;
        require_new_version(sequence.version)?;
        self.with(|t| {
            t.sequences.sequences.ensure_vacant(sequence)?;
            let event = events::sequence_saved(sequence)?;
            let stored = t.sequences.sequences.put(sequence.clone()).clone();
            append_changes(t, &[event]);
            Ok(stored)
        })
    }

    async fn get_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<Sequence, StoreError> {
        self.with(|t| t.sequences.sequences.find(workspace_id, id).cloned())
    }

    async fn update_sequence(&self, sequence: &Sequence) -> Result<Sequence, StoreError> {
        self.with(|t| update_sequence(t, sequence))
    }

    async fn get_sequence_version(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
        version: i64,
    ) -> Result<Sequence, StoreError> {
        self.with(|t| sequence_version(t, workspace_id, id, version))
    }

    async fn list_sequences(
        &self,
        workspace_id: WorkspaceId,
        page: Page<SequenceId>,
    ) -> Result<Vec<Sequence>, StoreError> {
        self.with(|t| cloned(t.sequences.sequences.page(workspace_id, &page, |_| true)))
    }

    async fn insert_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
        self.with(|t| insert_enrollment(t, enrollment))
    }

    async fn get_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
    ) -> Result<Enrollment, StoreError> {
        self.with(|t| t.sequences.enrollments.find(workspace_id, id).cloned())
    }

    async fn update_enrollment(&self, enrollment: &Enrollment) -> Result<Enrollment, StoreError> {
        self.with(|t| update_enrollment(t, enrollment))
    }

    async fn list_due_enrollments(
        &self,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
        limit_rows: u32,
    ) -> Result<Vec<Enrollment>, StoreError> {
        validate_limit(limit_rows)?;
        self.with(|t| {
            let mut due: Vec<(DateTime<Utc>, &Enrollment)> = t
                .sequences
                .enrollments
                .rows(workspace_id)
                .filter_map(|e| due_at(e, now).map(|at| (at, e)))
                .collect();
            due.sort_unstable_by_key(|(at, e)| (*at, e.id));
            Ok(due
                .into_iter()
                .take(limit(limit_rows))
                .map(|(_, e)| e.clone())
                .collect())
        })
    }

    async fn list_workspaces_with_due_enrollments(
        &self,
        now: DateTime<Utc>,
        limit_rows: u32,
    ) -> Result<Vec<WorkspaceId>, StoreError> {
        validate_limit(limit_rows)?;
        Ok(self.with(|t| workspaces_with_due(t, now, limit_rows)))
    }

    async fn advance_enrollment(
        &self,
        change: &EnrollmentChange,
    ) -> Result<EnrollmentAdvanced, StoreError> {
        self.with(|t| advance(t, change))
    }

    async fn advance_enrollments(
        &self,
        changes: &[EnrollmentChange],
    ) -> Result<Vec<Result<EnrollmentAdvanced, StoreError>>, StoreError> {
        // One lock for the page; each change is atomic on its own, as advance is.
        self.with(|t| Ok(changes.iter().map(|change| advance(t, change)).collect()))
    }

    async fn list_enrollments(
        &self,
        workspace_id: WorkspaceId,
        filter: &EnrollmentFilter,
        page: Page<EnrollmentId>,
    ) -> Result<Vec<Enrollment>, StoreError> {
        self.with(|t| {
            cloned(t.sequences.enrollments.page(workspace_id, &page, |e| {
                filter.contact_id.is_none_or(|c| e.contact_id == c)
                    && filter.sequence_id.is_none_or(|s| e.sequence_id == s)
                    && (!filter.running_only || e.state.is_running())
            }))
        })
    }
}
