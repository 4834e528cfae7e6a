//! Pausing, resuming and stopping enrollments and sequences by hand
//! ([`SequenceControl`]).
//!
//! | call | does |
//! |---|---|
//! | [`pause_enrollment`](SequenceControl::pause_enrollment) | `Paused` (reason `manual`), queued messages cancelled; resumes at `until` or by hand |
//! | [`resume_enrollment`](SequenceControl::resume_enrollment) | a paused enrollment becomes `Active`, its current step due now |
//! | [`stop_enrollment`](SequenceControl::stop_enrollment) | `Stopped` with a reason code, queued messages cancelled; it no longer blocks re-enrolling |
//! | [`pause_sequence`](SequenceControl::pause_sequence) | the runner holds the sequence's enrollments (queued messages still go) |
//! | [`resume_sequence`](SequenceControl::resume_sequence) | held enrollments are due again |
//! | [`archive_sequence`](SequenceControl::archive_sequence) | every running enrollment `Stopped` (reason `sequence_archived`); nobody can be enrolled |
//!
//! Each enrollment change is a compare-and-set store call with the state machine's
//! effects ([`transition`]), re-read and retried when another actor changed the
//! enrollment meanwhile; the stores append the matching `enrollment.*` events with it.
//! A sequence's status change is a new version of the sequence (`sequence.updated`).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{EnrollmentId, SequenceId, WorkspaceId};
use crate::model::{Enrollment, EnrollmentState, Sequence, SequenceStatus, end_reasons};
use crate::outreach::enroll::all_enrollments;
use crate::outreach::enrollment::{Effect, EnrollmentEvent, TransitionError, transition};
use crate::outreach::runner::{Definitions, step_count};
use crate::store::{EnrollmentChange, EnrollmentFilter, SequenceStore};

/// How often one change is retried when the row keeps changing under it.
const CAS_ATTEMPTS: usize = 5;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The store failed (an unknown enrollment or sequence is `NotFound`).
    #[error("outreach control store call failed")]
    Store(#[from] StoreError),
    /// The enrollment is not in a state the call applies to (resuming one that is
    /// not paused, stopping one that ended).
    #[error("the enrollment does not accept this change")]
    Transition(#[from] TransitionError),
    /// An archived sequence cannot be paused or resumed.
    #[error("sequence {sequence_id} is archived")]
    Archived {
        /// The sequence.
        sequence_id: SequenceId,
    },
    /// The enrollment kept changing under the call; try again.
    #[error("enrollment {enrollment_id} kept changing; try again")]
    Contended {
        /// The enrollment.
        enrollment_id: EnrollmentId,
    },
    /// The sequence kept changing under the call; try again.
    #[error("sequence {sequence_id} kept changing; try again")]
    SequenceContended {
        /// The sequence.
        sequence_id: SequenceId,
    },
}

impl ControlError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Contended { .. } | Self::SequenceContended { .. } => true,
            Self::Transition(_) | Self::Archived { .. } => false,
        }
    }
}

/// What [`SequenceControl::archive_sequence`] and
/// [`SequenceControl::resume_sequence`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SequenceChanged {
    /// The sequence as stored.
    pub sequence: Sequence,
    /// The enrollments changed (stopped by an archive, made due by a resume).
    pub enrollments: Vec<EnrollmentId>,
}

/// Pauses, resumes and stops enrollments and sequences. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SequenceControl {
    store: Arc<dyn SequenceStore>,
    clock: Arc<dyn Clock>,
}

impl SequenceControl {
    /// Control over `store`, timed by `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn SequenceStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Pauses a running enrollment (reason `manual`) and cancels its queued messages;
    /// it resumes by itself at `until`, or only by [`resume_enrollment`] when `None`.
    ///
    /// [`resume_enrollment`]: SequenceControl::resume_enrollment
    pub async fn pause_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
        until: Option<DateTime<Utc>>,
    ) -> Result<Enrollment, ControlError> {
        self.change(workspace_id, id, &EnrollmentEvent::Pause { until })
            .await
    }

    /// Resumes a paused enrollment: `Active`, its current step due now.
    pub async fn resume_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
    ) -> Result<Enrollment, ControlError> {
        let at = self.clock.now();
        self.change(workspace_id, id, &EnrollmentEvent::Resume { at })
            .await
    }

    /// Stops a running enrollment for good with `reason` (a short code, e.g.
    /// [`end_reasons::MANUAL`]) and cancels its queued messages. The contact may be
    /// enrolled again afterwards.
    pub async fn stop_enrollment(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
        reason: &str,
    ) -> Result<Enrollment, ControlError> {
        let event = EnrollmentEvent::Stop {
            reason: reason.to_owned(),
        };
        self.change(workspace_id, id, &event).await
    }

    /// Pauses a sequence: the runner holds its enrollments until it is resumed.
    pub async fn pause_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<Sequence, ControlError> {
        self.set_status(workspace_id, id, SequenceStatus::Paused)
            .await
    }

    /// Resumes a paused sequence; the enrollments the runner held are due now.
    pub async fn resume_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<SequenceChanged, ControlError> {
        let sequence = self
            .set_status(workspace_id, id, SequenceStatus::Active)
            .await?;
        let now = self.clock.now();
        let mut woken = Vec::new();
        for mut e in self.running(workspace_id, id).await? {
            for attempt in 0..=CAS_ATTEMPTS {
                // Held enrollments are the running ones with nothing due; a paused
                // enrollment waits for its own resume and a queued step for its message.
                let held = e.next_run_at.is_none()
                    && matches!(
                        e.state,
                        EnrollmentState::Pending
                            | EnrollmentState::Active
                            | EnrollmentState::StepSent
                    );
                if !held {
                    break;
                }
                if attempt == CAS_ATTEMPTS {
                    return Err(ControlError::Contended {
                        enrollment_id: e.id,
                    });
                }
                let due = Enrollment {
                    next_run_at: Some(now),
                    updated_at: now,
                    ..e.clone()
                };
                match self.store.update_enrollment(&due).await {
                    Ok(_) => {
                        woken.push(e.id);
                        break;
                    }
                    Err(err) if err.kind() == StoreErrorKind::VersionConflict => {
                        e = self.store.get_enrollment(workspace_id, e.id).await?;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(SequenceChanged {
            sequence,
            enrollments: woken,
        })
    }

    /// Archives a sequence: no contact can be enrolled any more, and every running
    /// enrollment is stopped with reason `sequence_archived` (the runner stops one
    /// enrolled in a race with this call).
    pub async fn archive_sequence(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<SequenceChanged, ControlError> {
        let sequence = self
            .set_status(workspace_id, id, SequenceStatus::Archived)
            .await?;
        let event = EnrollmentEvent::Stop {
            reason: end_reasons::SEQUENCE_ARCHIVED.to_owned(),
        };
        let mut stopped = Vec::new();
        for e in self.running(workspace_id, id).await? {
            let eid = e.id;
            match self.apply(e, &event).await {
                Ok(_) => stopped.push(eid),
                // Ended meanwhile (a reply, another archive): nothing to stop.
                Err(ControlError::Transition(_)) => {}
                Err(ControlError::Store(err)) if err.kind() == StoreErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(SequenceChanged {
            sequence,
            enrollments: stopped,
        })
    }

    async fn running(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
    ) -> Result<Vec<Enrollment>, StoreError> {
        let filter = EnrollmentFilter {
            sequence_id: Some(id),
            running_only: true,
            ..EnrollmentFilter::default()
        };
        all_enrollments(&*self.store, workspace_id, &filter).await
    }

    /// Sets the sequence's status (compare-and-set, retried on conflict). Setting the
    /// status it has is a no-op; an archived sequence stays archived.
    async fn set_status(
        &self,
        workspace_id: WorkspaceId,
        id: SequenceId,
        status: SequenceStatus,
    ) -> Result<Sequence, ControlError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.store.get_sequence(workspace_id, id).await?;
            if current.status == status {
                return Ok(current);
            }
            if current.status == SequenceStatus::Archived {
                return Err(ControlError::Archived { sequence_id: id });
            }
            let next = Sequence {
                status,
                updated_at: self.clock.now(),
                ..current
            };
            match self.store.update_sequence(&next).await {
                Ok(stored) => return Ok(stored),
                Err(err) if err.kind() == StoreErrorKind::VersionConflict => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(ControlError::SequenceContended { sequence_id: id })
    }

    async fn change(
        &self,
        workspace_id: WorkspaceId,
        id: EnrollmentId,
        event: &EnrollmentEvent,
    ) -> Result<Enrollment, ControlError> {
        let enrollment = self.store.get_enrollment(workspace_id, id).await?;
        self.apply(enrollment, event).await
    }

    /// Applies `event` with compare-and-set, re-reading on a version conflict.
    async fn apply(
        &self,
        mut enrollment: Enrollment,
        event: &EnrollmentEvent,
    ) -> Result<Enrollment, ControlError> {
        let mut definitions = Definitions::new(&*self.store, enrollment.workspace_id);
        for _ in 0..CAS_ATTEMPTS {
            let n = step_count(&*definitions.for_enrollment(&enrollment).await?);
            let t = transition(&enrollment, n, event)?;
            let now = self.clock.now();
            let cancel_queued = t
                .effects
                .contains(&Effect::CancelQueuedMessages)
                .then(|| format!("enrollment {}", event_reason(event)));
            let change = EnrollmentChange {
                enrollment: t.applied_to(&enrollment, now),
                enqueue: None,
                cancel_queued,
                now,
            };
            match self.store.advance_enrollment(&change).await {
                Ok(advanced) => return Ok(advanced.enrollment),
                Err(err) if err.kind() == StoreErrorKind::VersionConflict => {
                    enrollment = self
                        .store
                        .get_enrollment(enrollment.workspace_id, enrollment.id)
                        .await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(ControlError::Contended {
            enrollment_id: enrollment.id,
        })
    }
}

/// The words a cancelled message records, never free text from a person.
fn event_reason(event: &EnrollmentEvent) -> &'static str {
    match event {
        EnrollmentEvent::Pause { .. } => "paused by hand",
        EnrollmentEvent::Stop { .. } => "stopped",
        _ => "changed by hand",
    }
}
