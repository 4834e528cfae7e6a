use chrono::{Duration, TimeZone};
use proptest::prelude::*;

use super::*;
use crate::ids::{ContactId, SequenceId, WorkspaceId};
use crate::model::end_reasons;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn enrollment() -> Enrollment {
    Enrollment::new(
        WorkspaceId::new(),
        SequenceId::new(),
        1,
        ContactId::new(),
        t0(),
    )
}

fn apply(
    e: &Enrollment,
    steps: i32,
    event: EnrollmentEvent,
) -> Result<(Enrollment, Vec<Effect>), TransitionError> {
    let t = transition(e, steps, &event)?;
    let mut next = t.applied_to(e, t0());
    next.version += 1;
    Ok((next, t.effects))
}

#[test]
fn a_three_step_sequence_runs_to_completed() {
    let mut e = enrollment();
    let later = t0() + Duration::days(2);
    (e, _) = apply(&e, 3, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    assert_eq!(
        (e.state, e.current_step, e.next_run_at),
        (EnrollmentState::Active, 0, Some(t0()))
    );
    for step in 0..3 {
        let effects;
        (e, effects) = apply(&e, 3, EnrollmentEvent::StepDue { step }).unwrap();
        assert_eq!(effects, vec![Effect::EnqueueStep { step }]);
        assert_eq!(e.state, EnrollmentState::StepPending);
        (e, _) = apply(
            &e,
            3,
            EnrollmentEvent::StepSent {
                step,
                next_due: later,
            },
        )
        .unwrap();
        assert_eq!(
            (e.state, e.current_step),
            (EnrollmentState::StepSent, step + 1)
        );
    }
    assert_eq!(
        apply(&e, 3, EnrollmentEvent::StepDue { step: 3 }).unwrap_err(),
        TransitionError::Illegal {
            state: EnrollmentState::StepSent,
            event: "step_due"
        }
    );
    (e, _) = apply(&e, 3, EnrollmentEvent::Exhausted).unwrap();
    assert_eq!(e.state, EnrollmentState::Completed);
    assert_eq!(e.end_reason.as_deref(), Some(end_reasons::ALL_STEPS_DONE));
    assert_eq!(e.ended_at, Some(t0()));
    // A late reply is still recorded.
    (e, _) = apply(&e, 3, EnrollmentEvent::Replied).unwrap();
    assert_eq!(e.state, EnrollmentState::Replied);
    assert_eq!(e.end_reason.as_deref(), Some(end_reasons::REPLIED));
}

#[test]
fn a_reply_stops_everything_and_cancels_the_queued_message() {
    let mut e = enrollment();
    (e, _) = apply(&e, 3, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    (e, _) = apply(&e, 3, EnrollmentEvent::StepDue { step: 0 }).unwrap();
    let (replied, effects) = apply(&e, 3, EnrollmentEvent::Replied).unwrap();
    assert_eq!(replied.state, EnrollmentState::Replied);
    assert_eq!(effects, vec![Effect::CancelQueuedMessages]);
    assert_eq!(
        apply(
            &replied,
            3,
            EnrollmentEvent::StepSent {
                step: 0,
                next_due: t0()
            }
        )
        .unwrap_err(),
        TransitionError::Ended {
            state: EnrollmentState::Replied
        }
    );
}

#[test]
fn unsubscribe_and_bounce_suppress_the_address() {
    let mut e = enrollment();
    (e, _) = apply(&e, 2, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    let (_, effects) = apply(&e, 2, EnrollmentEvent::Unsubscribed).unwrap();
    assert!(effects.contains(&Effect::Suppress(SuppressionReason::Unsubscribed)));
    assert!(effects.contains(&Effect::WithdrawConsent));
    let (bounced, effects) = apply(&e, 2, EnrollmentEvent::Bounced).unwrap();
    assert_eq!(bounced.state, EnrollmentState::Bounced);
    assert!(effects.contains(&Effect::Suppress(SuppressionReason::Bounced)));
}

#[test]
fn out_of_office_pauses_until_the_return_date_then_resends_the_step() {
    let back = t0() + Duration::days(7);
    let mut e = enrollment();
    (e, _) = apply(&e, 2, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    (e, _) = apply(&e, 2, EnrollmentEvent::StepDue { step: 0 }).unwrap();
    let key_before = step_idempotency_key(&e, 0);
    let effects;
    (e, effects) = apply(&e, 2, EnrollmentEvent::OutOfOffice { until: back }).unwrap();
    assert_eq!(
        (e.state, e.next_run_at),
        (EnrollmentState::Paused, Some(back))
    );
    assert_eq!(effects, vec![Effect::CancelQueuedMessages]);
    assert!(
        apply(&e, 2, EnrollmentEvent::StepDue { step: 0 }).is_err(),
        "nothing is sent while paused"
    );
    (e, _) = apply(&e, 2, EnrollmentEvent::Resume { at: back }).unwrap();
    assert_eq!((e.state, e.current_step), (EnrollmentState::Active, 0));
    assert_ne!(
        step_idempotency_key(&e, 0),
        key_before,
        "a re-sent step gets a new key"
    );
}

#[test]
fn events_for_another_step_are_refused() {
    let mut e = enrollment();
    (e, _) = apply(&e, 3, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    assert_eq!(
        apply(&e, 3, EnrollmentEvent::StepDue { step: 1 }).unwrap_err(),
        TransitionError::WrongStep {
            expected: 0,
            got: 1
        }
    );
}

#[test]
fn the_idempotency_key_is_stable_for_the_same_stored_version() {
    let e = enrollment();
    assert_eq!(
        step_idempotency_key(&e, 0),
        step_idempotency_key(&e.clone(), 0)
    );
}

fn any_event() -> impl Strategy<Value = EnrollmentEvent> {
    let at = (0i64..30).prop_map(|d| t0() + Duration::days(d));
    prop_oneof![
        at.clone()
            .prop_map(|first_due| EnrollmentEvent::Start { first_due }),
        (0i32..5).prop_map(|step| EnrollmentEvent::StepDue { step }),
        at.clone()
            .prop_map(|until| EnrollmentEvent::Postpone { until }),
        ((0i32..5), at.clone())
            .prop_map(|(step, next_due)| EnrollmentEvent::StepSent { step, next_due }),
        (0i32..5).prop_map(|step| EnrollmentEvent::StepFailed { step }),
        ((0i32..5), at.clone())
            .prop_map(|(step, next_due)| EnrollmentEvent::StepSkipped { step, next_due }),
        Just(EnrollmentEvent::Stop {
            reason: "manual".into()
        }),
        Just(EnrollmentEvent::Exhausted),
        Just(EnrollmentEvent::Replied),
        Just(EnrollmentEvent::MeetingBooked),
        Just(EnrollmentEvent::Bounced),
        Just(EnrollmentEvent::Unsubscribed),
        at.clone()
            .prop_map(|until| EnrollmentEvent::OutOfOffice { until }),
        proptest::option::of(at.clone()).prop_map(|until| EnrollmentEvent::Pause { until }),
        at.prop_map(|at| EnrollmentEvent::Resume { at }),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_for_any_event_sequence(steps in 1i32..5, events in proptest::collection::vec(any_event(), 0..60)) {
        let mut e = enrollment();
        let mut sent: Vec<i32> = Vec::new();
        let mut queued: Option<i32> = None;
        for event in &events {
            let before = e.state;
            let Ok(t) = transition(&e, steps, event) else { continue };
            // Deterministic: the same input gives the same output.
            prop_assert_eq!(transition(&e, steps, event).ok(), Some(t.clone()));
            for effect in &t.effects {
                if let Effect::EnqueueStep { step } = effect {
                    prop_assert!(
                        !matches!(before, EnrollmentState::Replied | EnrollmentState::Unsubscribed | EnrollmentState::Bounced | EnrollmentState::Paused | EnrollmentState::Completed | EnrollmentState::NoResponse | EnrollmentState::Failed | EnrollmentState::Stopped),
                        "enqueued step {} from {}", step, before
                    );
                    // No step is skipped or queued while another is in flight.
                    prop_assert_eq!(*step, i32::try_from(sent.len()).unwrap());
                    prop_assert!(*step < steps);
                    prop_assert!(queued.is_none());
                    queued = Some(*step);
                }
                if *effect == Effect::CancelQueuedMessages {
                    queued = None;
                }
            }
            if let EnrollmentEvent::StepSent { step, .. } | EnrollmentEvent::StepSkipped { step, .. } = event {
                // Only the queued step can be confirmed or skipped, and only once.
                prop_assert_eq!(queued.take(), Some(*step));
                prop_assert!(!sent.contains(step));
                sent.push(*step);
            }
            let mut next = t.applied_to(&e, t0());
            next.version += 1;
            e = next;
        }
        prop_assert!(e.current_step <= steps);
    }
}

#[test]
fn a_step_that_cannot_be_sent_is_skipped_or_fails_the_enrollment() {
    let later = t0() + Duration::days(1);
    let mut e = enrollment();
    (e, _) = apply(&e, 2, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    (e, _) = apply(&e, 2, EnrollmentEvent::StepDue { step: 0 }).unwrap();
    let (failed, _) = apply(&e, 2, EnrollmentEvent::StepFailed { step: 0 }).unwrap();
    assert_eq!(failed.state, EnrollmentState::Failed);
    assert_eq!(failed.end_reason.as_deref(), Some(end_reasons::STEP_FAILED));
    assert_eq!(failed.ended_at, Some(t0()));

    (e, _) = apply(
        &e,
        2,
        EnrollmentEvent::StepSkipped {
            step: 0,
            next_due: later,
        },
    )
    .unwrap();
    assert_eq!(
        (e.state, e.current_step, e.next_run_at),
        (EnrollmentState::Active, 1, Some(later))
    );
    (e, _) = apply(&e, 2, EnrollmentEvent::StepDue { step: 1 }).unwrap();
    (e, _) = apply(
        &e,
        2,
        EnrollmentEvent::StepSkipped {
            step: 1,
            next_due: later,
        },
    )
    .unwrap();
    assert_eq!((e.state, e.current_step), (EnrollmentState::Active, 2));
    (e, _) = apply(&e, 2, EnrollmentEvent::Exhausted).unwrap();
    assert_eq!(e.state, EnrollmentState::Completed);
}

#[test]
fn a_stop_ends_with_its_reason_and_a_pause_keeps_one_until_resumed() {
    let mut e = enrollment();
    (e, _) = apply(&e, 2, EnrollmentEvent::Start { first_due: t0() }).unwrap();
    (e, _) = apply(&e, 2, EnrollmentEvent::Pause { until: None }).unwrap();
    assert_eq!(e.end_reason.as_deref(), Some(end_reasons::MANUAL));
    assert_eq!(e.ended_at, None, "a paused enrollment has not ended");
    (e, _) = apply(&e, 2, EnrollmentEvent::Resume { at: t0() }).unwrap();
    assert_eq!(e.end_reason, None);
    let (stopped, effects) = apply(
        &e,
        2,
        EnrollmentEvent::Stop {
            reason: end_reasons::ACCOUNT_REPLY.into(),
        },
    )
    .unwrap();
    assert_eq!(stopped.state, EnrollmentState::Stopped);
    assert!(!stopped.state.is_running());
    assert_eq!(stopped.end_reason.as_deref(), Some("account_reply"));
    assert_eq!(stopped.ended_at, Some(t0()));
    assert_eq!(effects, vec![Effect::CancelQueuedMessages]);
    assert!(matches!(
        apply(&stopped, 2, EnrollmentEvent::Resume { at: t0() }),
        Err(TransitionError::Ended { .. })
    ));
}
