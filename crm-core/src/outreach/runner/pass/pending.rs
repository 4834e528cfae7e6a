//! The runner's side of a queued step: its message went out, ended unsent, or is still
//! on its way; and holding the enrollments of a paused sequence.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Count, Next, Pass};
use crate::error::StoreErrorKind;
use crate::model::{Enrollment, OutboxStatus, Sequence, StepFailurePolicy};
use crate::outreach::enrollment::EnrollmentEvent;
use crate::outreach::runner::{RunnerError, contact_time_zone, step_count};
use crate::outreach::schedule::{DelayOutOfRange, apply_delay, next_allowed};

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
            return Ok(self.recheck(e));
        }
        let at = message
            .as_ref()
            .and_then(|m| m.sent_at)
            .filter(|_| !unsent)
            .unwrap_or(self.now);
        let contact = self.page.contact(e.contact_id)?;
        let tz = contact_time_zone(&contact, &self.settings);
        let step = e.current_step;
        // A stored delay past its maximum cannot be scheduled: the step is recorded as
        // it went (sent or skipped), then the enrollment is parked with the reason.
        let (next, broken) = match checked_next_due(sequence, step, tz, at) {
            Ok(next) => (next, None),
            Err(broken) => (self.now, Some(broken)),
        };
        if !unsent {
            let event = EnrollmentEvent::StepSent {
                step,
                next_due: next,
            };
            let applied = self.apply(e, n, &event, None, Count::Rechecked)?;
            return self.then_park_if_broken(applied, n, broken);
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
        let broken = broken.filter(|_| policy == StepFailurePolicy::Skip);
        tracing::info!(
            workspace_id = %self.workspace_id,
            enrollment_id = %e.id,
            step,
            status = status.map(|s| s.as_str()),
            "outreach runner: step message ended unsent"
        );
        let applied = self.apply(e, n, &event, None, count)?;
        if broken.is_some() {
            return self.then_park_if_broken(applied, n, broken);
        }
        // A skipped step's next one is looked at again in this tick if it is due now.
        Ok(match applied {
            Next::Again(next) if next.state.is_running() => Next::Again(next),
            _ => Next::Done,
        })
    }

    /// After a step was recorded: parks the enrollment (as stored) when its next delay
    /// could not be scheduled.
    fn then_park_if_broken(
        &mut self,
        applied: Next,
        n: i32,
        broken: Option<(i32, DelayOutOfRange)>,
    ) -> Result<Next, RunnerError> {
        match (applied, broken) {
            (Next::Again(stored), Some((step, error))) => {
                self.delay_failed(&stored, n, step, error)
            }
            _ => Ok(Next::Done),
        }
    }

    /// Takes the enrollment of a paused sequence off the due list (`next_run_at`
    /// cleared, state kept); resuming the sequence makes it due again.
    pub(super) fn hold(&mut self, e: &Enrollment) -> Next {
        let held = Enrollment {
            next_run_at: None,
            updated_at: self.now,
            ..e.clone()
        };
        self.write(held, None, false, Count::Held);
        Next::Done
    }

    /// A step whose message is still queued: look again after the recheck interval.
    fn recheck(&mut self, e: &Enrollment) -> Next {
        let again = Enrollment {
            next_run_at: Some(later(self.now, self.config.step_recheck)),
            updated_at: self.now,
            ..e.clone()
        };
        self.write(again, None, false, Count::Held);
        Next::Done
    }
}

/// When the enrollment is due after `step` went (or was skipped) at `at`: the next
/// step's delay moved into its window, or after the last step the reply wait (its
/// delay). The dispatcher's `next_due`, with the reason when a delay cannot be
/// scheduled: the index of the step whose delay failed and why.
fn checked_next_due(
    sequence: &Sequence,
    step: i32,
    tz: Tz,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, (i32, DelayOutOfRange)> {
    let Ok(index) = usize::try_from(step) else {
        return Ok(at);
    };
    let next_index = index.saturating_add(1);
    let next_step = i32::try_from(next_index).unwrap_or(i32::MAX);
    match (sequence.steps.get(index), sequence.steps.get(next_index)) {
        (_, Some(next)) => apply_delay(next.delay, tz, at)
            .map(|due| next_allowed(next.window.as_ref(), tz, due))
            .map_err(|e| (next_step, e)),
        (Some(current), None) => apply_delay(current.delay, tz, at).map_err(|e| (step, e)),
        (None, None) => Ok(at),
    }
}

/// `now + delay`, saturating instead of overflowing.
pub(super) fn later(now: DateTime<Utc>, delay: chrono::Duration) -> DateTime<Utc> {
    now.checked_add_signed(delay.max(chrono::Duration::zero()))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
