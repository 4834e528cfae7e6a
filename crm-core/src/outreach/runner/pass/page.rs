//! A page of due enrollments: what is read for all of them at once (their contacts,
//! their day's touches), and writing every change worked out for them in one store
//! call.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Count, Pass, Problem};
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{ContactId, EnrollmentId, WorkspaceId};
use crate::model::{Actor, AuditEntry, Contact, Enrollment};
use crate::outreach::runner::support::{contact_time_zone, start_of_local_day};
use crate::outreach::runner::{EnrollmentFailure, RunnerError};
use crate::outreach::schedule::{local_day, start_of_next_day};
use crate::outreach::settings::WorkspaceSettings;
use crate::store::{ContactDay, EnrollmentAdvanced, EnrollmentChange, RunnerStore};

/// What the pass read for the whole page.
#[derive(Debug, Default)]
pub(super) struct PageData {
    contacts: HashMap<ContactId, Contact>,
    /// Each contact's touches of its local day: as read, plus the steps this pass
    /// queued to it since.
    touches: HashMap<ContactId, u64>,
}

impl PageData {
    /// Reads the contacts of `due` in one call and, when the touch limit is on, their
    /// touches of the local day in another.
    pub(super) async fn load(
        store: &dyn RunnerStore,
        workspace_id: WorkspaceId,
        settings: &WorkspaceSettings,
        now: DateTime<Utc>,
        due: &[Enrollment],
        touch_limit: bool,
    ) -> Result<Self, StoreError> {
        let mut ids: Vec<ContactId> = Vec::with_capacity(due.len());
        let mut seen = HashSet::with_capacity(due.len());
        for e in due {
            if seen.insert(e.contact_id) {
                ids.push(e.contact_id);
            }
        }
        let mut page = Self::default();
        if ids.is_empty() {
            return Ok(page);
        }
        let found = store.get_contacts(workspace_id, &ids).await?;
        page.contacts = found.into_iter().flatten().map(|c| (c.id, c)).collect();
        if touch_limit {
            let contacts: Vec<&Contact> =
                ids.iter().filter_map(|id| page.contacts.get(id)).collect();
            page.touches = day_touches(store, workspace_id, settings, now, &contacts).await?;
        }
        Ok(page)
    }

    /// The contact, or `NotFound` as `get_contact` answers it.
    pub(super) fn contact(&self, id: ContactId) -> Result<Contact, StoreError> {
        self.contacts
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::not_found(ContactId::ENTITY, id))
    }

    /// The contact's touches of its local day, counting the steps queued this pass.
    pub(super) fn touches(&self, id: ContactId) -> u64 {
        self.touches.get(&id).copied().unwrap_or(0)
    }

    /// Counts a step just queued to the contact (due at once, so today's).
    pub(super) fn queued(&mut self, id: ContactId) {
        let n = self.touches.entry(id).or_default();
        *n = n.saturating_add(1);
    }

    /// Reads the contact's touches again (after writes that cancelled messages).
    pub(super) async fn reload_touches(
        &mut self,
        store: &dyn RunnerStore,
        id: ContactId,
        settings: &WorkspaceSettings,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(contact) = self.contacts.get(&id) else {
            return Ok(());
        };
        let workspace_id = contact.workspace_id;
        let fresh = day_touches(store, workspace_id, settings, now, &[contact]).await?;
        self.touches.extend(fresh);
        Ok(())
    }
}

/// The touches of each contact's local day at `now`: sent since its local midnight
/// plus queued to go before the next one, read in one call.
async fn day_touches(
    store: &dyn RunnerStore,
    workspace_id: WorkspaceId,
    settings: &WorkspaceSettings,
    now: DateTime<Utc>,
    contacts: &[&Contact],
) -> Result<HashMap<ContactId, u64>, StoreError> {
    let days: Vec<ContactDay> = contacts
        .iter()
        .map(|c| {
            let tz = contact_time_zone(c, settings);
            ContactDay {
                contact_id: c.id,
                since: start_of_local_day(tz, now),
                before: start_of_next_day(tz, local_day(tz, now)),
            }
        })
        .collect();
    if days.is_empty() {
        return Ok(HashMap::new());
    }
    let counts = store.count_day_touches(workspace_id, &days).await?;
    Ok(days.iter().map(|d| d.contact_id).zip(counts).collect())
}

/// One change worked out for an enrollment, not yet written.
pub(super) struct Planned {
    pub(super) change: EnrollmentChange,
    pub(super) count: Count,
    /// Recorded in the audit trail once the change is stored (a park).
    pub(super) audit: Option<Problem>,
}

/// What the pass worked out for an enrollment, in order.
pub(super) enum Action {
    /// A change to write.
    Write(Box<Planned>),
    /// A failure to report unless an earlier change of its enrollment was refused.
    Fail(EnrollmentFailure),
}

/// What to report of one action once the page is written.
enum Outcome {
    Written {
        enrollment_id: EnrollmentId,
        count: Count,
        audit: Option<Problem>,
    },
    Failed(EnrollmentFailure),
}

/// Whether any of `actions` cancels queued messages.
pub(super) fn cancels(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Write(p) if p.change.cancel_queued.is_some()))
}

impl Pass<'_> {
    /// Writes every planned change in one store call and reports each outcome: an
    /// enrollment whose change was refused is superseded (its later changes with it).
    pub(super) async fn flush(&mut self) -> Result<(), RunnerError> {
        let actions = std::mem::take(&mut self.actions);
        if actions.is_empty() {
            return Ok(());
        }
        // The changes go to the store; what to report of each stays here, in order.
        let mut changes: Vec<EnrollmentChange> = Vec::with_capacity(actions.len());
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(actions.len());
        for action in actions {
            match action {
                Action::Write(planned) => {
                    let Planned {
                        change,
                        count,
                        audit,
                    } = *planned;
                    outcomes.push(Outcome::Written {
                        enrollment_id: change.enrollment.id,
                        count,
                        audit,
                    });
                    changes.push(change);
                }
                Action::Fail(failure) => outcomes.push(Outcome::Failed(failure)),
            }
        }
        let mut results = if changes.is_empty() {
            Vec::new()
        } else {
            self.store.advance_enrollments(&changes).await?
        }
        .into_iter();
        let mut lost: HashSet<EnrollmentId> = HashSet::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Failed(failure) => {
                    if !lost.contains(&failure.enrollment_id) {
                        self.fail(failure);
                    }
                }
                Outcome::Written {
                    enrollment_id: id,
                    count,
                    audit,
                } => {
                    let result = results.next().unwrap_or_else(|| {
                        Err(StoreError::Backend {
                            backend: "runner",
                            source: "advance_enrollments answered fewer results than changes"
                                .into(),
                        })
                    });
                    if lost.contains(&id) {
                        continue;
                    }
                    if let Err(error) = self.settle(count, audit, result).await {
                        lost.insert(id);
                        if let Some(error) = error {
                            self.fail(EnrollmentFailure {
                                enrollment_id: id,
                                error,
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, failure: EnrollmentFailure) {
        tracing::warn!(
            workspace_id = %self.workspace_id,
            enrollment_id = %failure.enrollment_id,
            error = %failure.error,
            "outreach runner: enrollment failed"
        );
        self.report.failed.push(failure);
    }

    /// Reports one written change. `Err(None)`: another actor moved the enrollment
    /// first (superseded); `Err(Some(_))`: it failed.
    async fn settle(
        &mut self,
        count: Count,
        audit: Option<Problem>,
        result: Result<EnrollmentAdvanced, StoreError>,
    ) -> Result<(), Option<RunnerError>> {
        let advanced = match result {
            Ok(advanced) => advanced,
            Err(err)
                if matches!(
                    err.kind(),
                    StoreErrorKind::VersionConflict
                        | StoreErrorKind::NotFound
                        | StoreErrorKind::Conflict
                ) =>
            {
                self.report.superseded += 1;
                return Err(None);
            }
            Err(err) => return Err(Some(err.into())),
        };
        self.count(count, &advanced);
        if let Some(inserted) = &advanced.enqueued
            && advanced.enrollment.step_message_id != Some(inserted.value.id)
        {
            // The key was taken already: point at the message that exists.
            let fixed = Enrollment {
                step_message_id: Some(inserted.value.id),
                ..advanced.enrollment.clone()
            };
            if let Err(error) = self.store.update_enrollment(&fixed).await {
                tracing::debug!(enrollment_id = %fixed.id, error = %error, "outreach runner: could not point the enrollment at its existing message");
            }
        }
        if let Some(problem) = audit {
            self.audit(&advanced.enrollment, problem)
                .await
                .map_err(|e| Some(e.into()))?;
        }
        Ok(())
    }

    /// Records why an enrollment was parked (the step and the field, never the text).
    async fn audit(&self, e: &Enrollment, problem: Problem) -> Result<(), StoreError> {
        let entry = AuditEntry::new(
            self.workspace_id,
            Actor::System,
            problem.action,
            e.id.to_string(),
            problem.details,
            self.now,
        )?;
        self.store.append_audit(&entry).await?;
        tracing::info!(
            workspace_id = %self.workspace_id,
            enrollment_id = %e.id,
            action = problem.action,
            "outreach runner: enrollment paused"
        );
        Ok(())
    }

    fn count(&mut self, count: Count, advanced: &EnrollmentAdvanced) {
        let r = &mut self.report;
        match count {
            Count::Started => r.started += 1,
            Count::Resumed => r.resumed += 1,
            Count::Postponed => r.postponed += 1,
            Count::Exhausted => r.exhausted += 1,
            Count::Parked => r.parked += 1,
            Count::Skipped => r.skipped += 1,
            Count::Failed => r.step_failed += 1,
            Count::Stopped => r.stopped += 1,
            Count::Held => r.held += 1,
            Count::Rechecked => r.rechecked += 1,
            Count::Enqueued => match &advanced.enqueued {
                Some(inserted) if inserted.created => r.enqueued += 1,
                Some(_) => r.reused += 1,
                None => {}
            },
        }
    }
}
