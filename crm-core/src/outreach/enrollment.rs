//! The enrollment state machine: pure, with time as an argument.
//!
//! `current_step` always names the step the enrollment is about: the next step to send
//! in `Active` and `StepSent`, the step whose message is queued in `StepPending`. After
//! the last step is handled the enrollment waits (in `StepSent`, or `Active` after a
//! skipped last step) with `current_step == steps` for a reply until `next_run_at`,
//! then ends as `Completed` (reason `all_steps_done`).
//!
//! | from | event | to | effects |
//! |---|---|---|---|
//! | Pending | Start | Active(0) | |
//! | Active(k), StepSent(k) | StepDue(k) | StepPending(k) | enqueue step k |
//! | Active, StepSent | Postpone | same, later | |
//! | StepPending(k) | StepSent(k) | StepSent(k+1) | |
//! | StepPending(k) | StepSkipped(k) | Active(k+1) | |
//! | StepSent(n), Active(n) | Exhausted | Completed | |
//! | StepPending(k) | StepFailed(k) | Failed | |
//! | running | Replied | Replied | cancel queued |
//! | running | MeetingBooked | Completed | cancel queued |
//! | running | Bounced | Bounced | cancel queued, suppress |
//! | running | Unsubscribed | Unsubscribed | cancel queued, suppress, withdraw consent |
//! | running | Stop(reason) | Stopped | cancel queued |
//! | Pending, Active, StepPending, StepSent | Pause / OutOfOffice | Paused | cancel queued |
//! | Paused | Resume | Active(k) | |
//!
//! Every transition into a state that is not running sets the enrollment's `ended_at`
//! and `end_reason` (see [`end_reasons`]); a pause sets
//! `end_reason` too and resuming clears it.
//!
//! A late reply after `NoResponse` or after completing every step is still recorded as
//! `Replied`. Anything else from a final state, or an event that does not fit the
//! state, is a [`TransitionError`].

use chrono::{DateTime, Utc};

use crate::model::{Enrollment, EnrollmentState, SuppressionReason, end_reasons};

/// Something that happened to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentEvent {
    /// Begin; the first step is due at `first_due`.
    Start {
        /// When step 0 is due.
        first_due: DateTime<Utc>,
    },
    /// The runner found `step` due and may render and queue it.
    StepDue {
        /// The step index.
        step: i32,
    },
    /// The due step cannot go yet (send window, touch limit); look again at `until`.
    Postpone {
        /// The next allowed time.
        until: DateTime<Utc>,
    },
    /// The message of `step` was handed to the provider; the next step (or, after the
    /// last one, the end of the reply wait) is due at `next_due`.
    StepSent {
        /// The step index.
        step: i32,
        /// When to look at the enrollment next.
        next_due: DateTime<Utc>,
    },
    /// The message of `step` could not be sent; the sequence fails the enrollment.
    StepFailed {
        /// The step index.
        step: i32,
    },
    /// The message of `step` could not be sent; the sequence skips the step and the
    /// next one (or, after the last one, the end of the reply wait) is due at
    /// `next_due`.
    StepSkipped {
        /// The step index.
        step: i32,
        /// When to look at the enrollment next.
        next_due: DateTime<Utc>,
    },
    /// Stopped on purpose (by a person, an account-level stop, an archived sequence),
    /// with a short reason code.
    Stop {
        /// Why, e.g. [`end_reasons::MANUAL`].
        reason: String,
    },
    /// Every step was sent and the reply wait is over.
    Exhausted,
    /// The contact replied.
    Replied,
    /// The contact booked a meeting.
    MeetingBooked,
    /// The contact's address bounced.
    Bounced,
    /// The contact unsubscribed.
    Unsubscribed,
    /// An out-of-office answer: pause until the contact is back.
    OutOfOffice {
        /// When to resume.
        until: DateTime<Utc>,
    },
    /// Paused by a person; resumes at `until`, or only by hand when `None`.
    Pause {
        /// When to resume automatically.
        until: Option<DateTime<Utc>>,
    },
    /// Resume a paused enrollment at `at`.
    Resume {
        /// When the current step becomes due.
        at: DateTime<Utc>,
    },
}

/// A side effect the caller must carry out together with storing the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Render step `step` and put it in the outbox.
    EnqueueStep {
        /// The step index.
        step: i32,
    },
    /// Cancel this enrollment's messages that are queued but not sent.
    CancelQueuedMessages,
    /// Add the contact's address to the suppression list.
    Suppress(SuppressionReason),
    /// Record withdrawn consent for the channel.
    WithdrawConsent,
}

/// The result of applying an event: the enrollment's next fields and the effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Next state.
    pub state: EnrollmentState,
    /// Next `current_step`.
    pub current_step: i32,
    /// Next `next_run_at`.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Why it ends or pauses (kept as `end_reason`); `None` otherwise.
    pub end_reason: Option<String>,
    /// Effects to carry out.
    pub effects: Vec<Effect>,
}

impl Transition {
    /// `enrollment` with this transition applied at `now` (version untouched: the
    /// store bumps it on compare-and-set). Leaving the running states sets `ended_at`
    /// to `now`; `end_reason` is the transition's.
    #[must_use]
    pub fn applied_to(&self, enrollment: &Enrollment, now: DateTime<Utc>) -> Enrollment {
        let ended_at = match (enrollment.state.is_running(), self.state.is_running()) {
            (true, false) => Some(now),
            (_, true) => None,
            (false, false) => enrollment.ended_at.or(Some(now)),
        };
        Enrollment {
            state: self.state,
            current_step: self.current_step,
            next_run_at: self.next_run_at,
            end_reason: self.end_reason.clone(),
            ended_at,
            updated_at: now,
            ..enrollment.clone()
        }
    }
}

/// Why an event does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The enrollment has ended; nothing but a late reply applies.
    #[error("enrollment already ended as {state}")]
    Ended {
        /// The final state.
        state: EnrollmentState,
    },
    /// The event does not fit the state.
    #[error("{event} does not apply to an enrollment in state {state}")]
    Illegal {
        /// Current state.
        state: EnrollmentState,
        /// The event's name.
        event: &'static str,
    },
    /// The event names another step than the one the enrollment is at.
    #[error("event is for step {got} but the enrollment is at step {expected}")]
    WrongStep {
        /// The enrollment's step.
        expected: i32,
        /// The event's step.
        got: i32,
    },
}

impl EnrollmentEvent {
    fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::StepDue { .. } => "step_due",
            Self::Postpone { .. } => "postpone",
            Self::StepSent { .. } => "step_sent",
            Self::StepFailed { .. } => "step_failed",
            Self::StepSkipped { .. } => "step_skipped",
            Self::Stop { .. } => "stop",
            Self::Exhausted => "exhausted",
            Self::Replied => "replied",
            Self::MeetingBooked => "meeting_booked",
            Self::Bounced => "bounced",
            Self::Unsubscribed => "unsubscribed",
            Self::OutOfOffice { .. } => "out_of_office",
            Self::Pause { .. } => "pause",
            Self::Resume { .. } => "resume",
        }
    }
}

/// Applies `event` to `enrollment`, whose sequence has `step_count` steps.
pub fn transition(
    enrollment: &Enrollment,
    step_count: i32,
    event: &EnrollmentEvent,
) -> Result<Transition, TransitionError> {
    use EnrollmentEvent as E;
    use EnrollmentState as S;

    let state = enrollment.state;
    let step = enrollment.current_step;
    let to = |state, current_step, next_run_at, effects| Transition {
        state,
        current_step,
        next_run_at,
        end_reason: None,
        effects,
    };
    let ends = |state, reason: &str, effects| Transition {
        state,
        current_step: step,
        next_run_at: None,
        end_reason: Some(reason.to_owned()),
        effects,
    };
    let check_step = |got: i32| {
        if got == step {
            Ok(())
        } else {
            Err(TransitionError::WrongStep {
                expected: step,
                got,
            })
        }
    };
    let illegal = || TransitionError::Illegal {
        state,
        event: event.name(),
    };

    if !state.is_running() {
        let waited_out = state == S::NoResponse
            || (state == S::Completed
                && enrollment.end_reason.as_deref() == Some(end_reasons::ALL_STEPS_DONE));
        return match event {
            E::Replied if waited_out => Ok(ends(S::Replied, end_reasons::REPLIED, Vec::new())),
            _ => Err(TransitionError::Ended { state }),
        };
    }

    match event {
        E::Replied => Ok(ends(
            S::Replied,
            end_reasons::REPLIED,
            vec![Effect::CancelQueuedMessages],
        )),
        E::MeetingBooked => Ok(ends(
            S::Completed,
            end_reasons::MEETING_BOOKED,
            vec![Effect::CancelQueuedMessages],
        )),
        E::Stop { reason } => Ok(ends(S::Stopped, reason, vec![Effect::CancelQueuedMessages])),
        E::Bounced => Ok(ends(
            S::Bounced,
            end_reasons::BOUNCED,
            vec![
                Effect::CancelQueuedMessages,
                Effect::Suppress(SuppressionReason::Bounced),
            ],
        )),
        E::Unsubscribed => Ok(ends(
            S::Unsubscribed,
            end_reasons::UNSUBSCRIBED,
            vec![
                Effect::CancelQueuedMessages,
                Effect::Suppress(SuppressionReason::Unsubscribed),
                Effect::WithdrawConsent,
            ],
        )),
        E::OutOfOffice { until } if state != S::Paused => Ok(Transition {
            next_run_at: Some(*until),
            ..ends(
                S::Paused,
                end_reasons::OUT_OF_OFFICE,
                vec![Effect::CancelQueuedMessages],
            )
        }),
        E::Pause { until } if state != S::Paused => Ok(Transition {
            next_run_at: *until,
            ..ends(
                S::Paused,
                end_reasons::MANUAL,
                vec![Effect::CancelQueuedMessages],
            )
        }),
        E::Resume { at } if state == S::Paused => Ok(to(S::Active, step, Some(*at), Vec::new())),
        E::Start { first_due } if state == S::Pending => {
            Ok(to(S::Active, 0, Some(*first_due), Vec::new()))
        }
        E::StepDue { step: due } if matches!(state, S::Active | S::StepSent) => {
            check_step(*due)?;
            if *due >= step_count {
                return Err(illegal());
            }
            Ok(to(
                S::StepPending,
                *due,
                None,
                vec![Effect::EnqueueStep { step: *due }],
            ))
        }
        E::Postpone { until } if matches!(state, S::Active | S::StepSent) => {
            Ok(to(state, step, Some(*until), Vec::new()))
        }
        E::StepSent {
            step: sent,
            next_due,
        } if state == S::StepPending => {
            check_step(*sent)?;
            Ok(to(S::StepSent, sent + 1, Some(*next_due), Vec::new()))
        }
        E::StepFailed { step: failed } if state == S::StepPending => {
            check_step(*failed)?;
            Ok(ends(S::Failed, end_reasons::STEP_FAILED, Vec::new()))
        }
        E::StepSkipped {
            step: skipped,
            next_due,
        } if state == S::StepPending => {
            check_step(*skipped)?;
            Ok(to(S::Active, skipped + 1, Some(*next_due), Vec::new()))
        }
        E::Exhausted if matches!(state, S::StepSent | S::Active) && step >= step_count => {
            Ok(ends(S::Completed, end_reasons::ALL_STEPS_DONE, Vec::new()))
        }
        _ => Err(illegal()),
    }
}

/// The outbox idempotency key for sending `step` of `enrollment`: the enrollment, the
/// step, and the enrollment's version at render time as the attempt. A runner that
/// crashes after enqueueing and re-reads the same version produces the same key (no
/// duplicate); a step re-sent after a pause has a new version, hence a new key.
#[must_use]
pub fn step_idempotency_key(enrollment: &Enrollment, step: i32) -> String {
    format!(
        "enrollment:{}:step:{}:attempt:{}",
        enrollment.id, step, enrollment.version
    )
}

#[cfg(test)]
mod tests;
