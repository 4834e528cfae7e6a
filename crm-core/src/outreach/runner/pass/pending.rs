//! The runner's side of a queued step: its message went out, ended unsent, or is still
//! on its way; and holding the enrollments of a paused sequence.

use chrono::{DateTime, Utc};

use super::{Count, Next, Pass};
use crate::error::StoreErrorKind;
use crate::model::{Enrollment, OutboxStatus, Sequence, StepFailurePolicy};
use crate::outreach::dispatch::next_due;
use crate::outreach::enrollment::EnrollmentEvent;
use crate::outreach::runner::{RunnerError, contact_time_zone, step_count};

impl Pass<'_> {
    /// A due `StepPending` enrollment: its step's message either went out (the
    /// dispatcher's enrollment write lost a race), ended unsent (the failure policy
    /// moves the enrollment on), or is still on its way (look again later).
    pub(super) async fn step_pending(
        &mut self,
        e: &Enrollment,
        sequence: &Sequence,
        policy: StepFailurePolicy,
    ) -> Result<Next, RunnerError> {
        let n = step_count(sequence);
        let message = match e.step_message_id {
            Some(id) => match self.store.get_outbox(self.workspace_id, id).await {
                Ok(m) => Some(m),
                Err(err) if err.kind() == StoreErrorKind::NotFound => None,
                Err(err) => return Err(err.into()),
            },
            None => None,
        };
        let status = message.as_ref().map(|m| m.status);
        // No message to wait for (never recorded, or gone) counts as unsent.
        let unsent = matches!(
            status,
            None | Some(
                OutboxStatus::Failed | OutboxStatus::DeadLettered | OutboxStatus::Cancelled
            )
        );
        if !unsent && status != Some(OutboxStatus::Sent) {
            return self.recheck(e).await;
        }
        let at = message
            .as_ref()
            .and_then(|m| m.sent_at)
            .filter(|_| !unsent)
            .unwrap_or(self.now);
        let contact = self
            .store
            .get_contact(self.workspace_id, e.contact_id)
            .await?;
        let tz = contact_time_zone(&contact, &self.settings);
        let next = next_due(sequence, e.current_step, tz, at).unwrap_or(self.now);
        let step = e.current_step;
        if !unsent {
            let event = EnrollmentEvent::StepSent {
                step,
                next_due: next,
            };
            return self.apply(e, n, &event, None, Count::Rechecked).await;
        }
        let (event, count) = match policy {
            StepFailurePolicy::Skip => (
                EnrollmentEvent::StepSkipped {
                    step,
                    next_due: next,
                },
                Count::Skipped,
            ),
            StepFailurePolicy::FailEnrollment => {
                (EnrollmentEvent::StepFailed { step }, Count::Failed)
            }
        };
        tracing::info!(
            workspace_id = %self.workspace_id,
            enrollment_id = %e.id,
            step,
            status = status.map(|s| s.as_str()),
            "outreach runner: step message ended unsent"
        );
        let applied = self.apply(e, n, &event, None, count).await?;
        // A skipped step's next one is looked at again in this tick if it is due now.
        Ok(match applied {
            Next::Again(next) if next.state.is_running() => Next::Again(next),
            _ => Next::Done,
        })
    }

    /// Takes the enrollment of a paused sequence off the due list (`next_run_at`
    /// cleared, state kept); resuming the sequence makes it due again.
    pub(super) async fn hold(&mut self, e: &Enrollment) -> Result<Next, RunnerError> {
        let held = Enrollment {
            next_run_at: None,
            updated_at: self.now,
            ..e.clone()
        };
        self.write(held, None, false, Count::Held).await?;
        Ok(Next::Done)
    }

    /// A step whose message is still queued: look again after the recheck interval.
    async fn recheck(&mut self, e: &Enrollment) -> Result<Next, RunnerError> {
        let again = Enrollment {
            next_run_at: Some(later(self.now, self.config.step_recheck)),
            updated_at: self.now,
            ..e.clone()
        };
        self.write(again, None, false, Count::Held).await?;
        Ok(Next::Done)
    }
}

/// `now + delay`, saturating instead of overflowing.
pub(super) fn later(now: DateTime<Utc>, delay: chrono::Duration) -> DateTime<Utc> {
    now.checked_add_signed(delay.max(chrono::Duration::zero()))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
