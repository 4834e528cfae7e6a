//! The enrollment lifecycle with the real runner and dispatcher: a step that cannot be
//! sent is skipped or fails the enrollment by the sequence's policy, the last step
//! completes it, and enrollments and sequences are paused, resumed, stopped and
//! archived through [`SequenceControl`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::store::fixtures::ok;
use crm_core::DynStore;
use crm_core::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, PolicyError};
use crm_core::ids::ApprovalRuleId;
use crm_core::model::{
    Channel, Enrollment, EnrollmentState, OutboxStatus, Sequence, SequenceStatus, SequenceStep,
    StepDelay, StepFailurePolicy, end_reasons,
};
use crm_core::outreach::control::{ControlError, SequenceControl};
use crm_core::outreach::dispatch::{
    ChannelRegistry, DispatchReport, Dispatcher, DispatcherConfig, StubChannel, StubFailure,
};
use crm_core::outreach::enroll::{Conflict, EnrollError};
use crm_core::outreach::settings::WorkspaceSettings;

use super::world::{World, after, base_time, email};

/// Approves every step except those flagged `requires_approval`, which it rejects: a
/// deterministic stand-in for a person rejecting a draft.
#[derive(Debug, Clone, Copy)]
pub struct RejectFlagged;

#[async_trait]
impl ApprovalPolicy for RejectFlagged {
    async fn decide(&self, request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(if request.step_requires_approval {
            ApprovalDecision::Reject {
                reason: "off-brand".into(),
            }
        } else {
            ApprovalDecision::AutoApprove {
                rule: ApprovalRuleId::new(),
            }
        })
    }
}

/// Settings loose enough that only the lifecycle decides: ten touches a day.
fn settings() -> WorkspaceSettings {
    let mut s = WorkspaceSettings::default();
    s.daily_touch_limit = 10;
    s
}

/// A dispatcher of the world sending email through `stub` under `policy`.
fn dispatcher(w: &World, stub: &StubChannel, config: DispatcherConfig) -> Dispatcher {
    Dispatcher::new(
        w.store.clone(),
        w.time(),
        w.provider(),
        ChannelRegistry::new().with(Arc::new(stub.clone())),
        config
            .with_worker("lifecycle-dispatcher")
            .with_env_dry_run(false),
    )
    .with_policy(Arc::new(RejectFlagged))
}

/// Runs one dispatch batch at `now`.
async fn dispatch(w: &World, d: &Dispatcher, now: DateTime<Utc>) -> DispatchReport {
    w.clock.set(now);
    d.dispatch_batch()
        .await
        .unwrap_or_else(|e| panic!("dispatch_batch failed: {e:?}"))
}

/// Saves a sequence of `steps` with `policy`.
async fn sequence_with(w: &World, steps: Vec<SequenceStep>, policy: StepFailurePolicy) -> Sequence {
    let mut seq = w.sequence(steps).await;
    if policy != seq.step_failure_policy {
        seq.step_failure_policy = policy;
        seq = ok(w.store.update_sequence(&seq).await, "update_sequence");
    }
    seq
}

fn control(w: &World) -> SequenceControl {
    SequenceControl::new(w.store.clone(), w.time())
}

/// A step whose approval is rejected is skipped (the default policy): the enrollment
/// does not wait in `StepPending`, and the next step is queued and sent.
pub async fn lifecycle_rejected_step_is_skipped_and_the_next_one_sent(store: Arc<DynStore>) {
    let w = World::new(&store, settings());
    let t0 = base_time();
    let ada = w.contact().await;
    let mut first = email("Hello", "First, {{first_name}}.");
    first.requires_approval = true;
    let second = after(
        email("Again", "Second, {{first_name}}."),
        StepDelay::Hours(1),
    );
    let seq = sequence_with(&w, vec![first, second], StepFailurePolicy::Skip).await;
    let e = w.enroll(&ada, &seq, t0).await;
    let runner = w.runner("lifecycle-runner");
    let stub = StubChannel::ok(Channel::Email).with_clock(w.time());
    let d = dispatcher(&w, &stub, DispatcherConfig::default());

    w.tick(&runner, t0).await.expect("tick");
    let report = dispatch(&w, &d, t0).await;
    assert_eq!(report.cancelled, 1, "{report:?}");
    let step0 = w.messages_of(e.id).await;
    assert_eq!(step0.len(), 1);
    assert_eq!(
        step0[0].status,
        OutboxStatus::Cancelled,
        "rejected: never sent"
    );

    // However the enrollment is woken (by the store as the message ends, or by the
    // runner's own recheck), it moves on.
    let later = t0 + runner.config().step_recheck;
    let report = w.tick(&runner, later).await.expect("tick");
    let t = report.tenant(w.ws).expect("worked on");
    assert_eq!(t.skipped, 1, "{t:?}");
    let moved = w.enrollment(e.id).await;
    assert_eq!(
        (moved.state, moved.current_step),
        (EnrollmentState::Active, 1),
        "step 0 skipped, step 1 waits for its delay"
    );
    assert_eq!(moved.next_run_at, Some(later + Duration::hours(1)));

    let due = later + Duration::hours(1);
    w.tick(&runner, due).await.expect("tick");
    let report = dispatch(&w, &d, due).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let delivered = stub.delivered();
    assert_eq!(delivered.len(), 1, "only the second step went out");
    assert_eq!(delivered[0].body, "Second, Ada.");
    let e = w.enrollment(e.id).await;
    assert_eq!((e.state, e.current_step), (EnrollmentState::StepSent, 2));
    let end = due + Duration::hours(1);
    w.tick(&runner, end).await.expect("tick");
    let e = w.enrollment(e.id).await;
    assert_eq!(e.state, EnrollmentState::Completed, "then it completes");
}

/// With `FailEnrollment`, a dead-lettered step ends the enrollment as `Failed` with
/// reason `step_failed`; the contact may then be enrolled again.
pub async fn lifecycle_dead_lettered_step_fails_the_enrollment(store: Arc<DynStore>) {
    let w = World::new(&store, settings());
    let t0 = base_time();
    let ada = w.contact().await;
    let steps = vec![
        email("Hello", "First."),
        after(email("Again", "Second."), StepDelay::Hours(1)),
    ];
    let seq = sequence_with(&w, steps, StepFailurePolicy::FailEnrollment).await;
    let e = w.enroll(&ada, &seq, t0).await;
    let runner = w.runner("lifecycle-runner");
    let stub = StubChannel::failing(Channel::Email, StubFailure::Retryable { retry_after: None })
        .with_clock(w.time());
    let d = dispatcher(&w, &stub, DispatcherConfig::default().with_max_attempts(1));

    w.tick(&runner, t0).await.expect("tick");
    let report = dispatch(&w, &d, t0).await;
    assert_eq!(report.dead_lettered, 1, "{report:?}");

    let later = t0 + runner.config().step_recheck;
    let report = w.tick(&runner, later).await.expect("tick");
    assert_eq!(report.tenant(w.ws).map(|t| t.step_failed), Some(1));
    let failed = w.enrollment(e.id).await;
    assert_eq!(failed.state, EnrollmentState::Failed);
    assert_eq!(failed.end_reason.as_deref(), Some(end_reasons::STEP_FAILED));
    assert_eq!(failed.ended_at, Some(later));
    assert_eq!(
        w.messages_of(e.id).await.len(),
        1,
        "nothing more was queued"
    );

    let again = w.enroll(&ada, &seq, later).await;
    assert_ne!(
        again.id, e.id,
        "a failed enrollment does not block a new one"
    );
}

/// After the last step the enrollment ends `Completed` with its end time, and the
/// contact can be enrolled in the same sequence again.
pub async fn lifecycle_last_step_completes_and_allows_re_enrollment(store: Arc<DynStore>) {
    let w = World::new(&store, settings());
    let t0 = base_time();
    let ada = w.contact().await;
    let seq = w.sequence(vec![email("Hello", "Only step.")]).await;
    let e = w.enroll(&ada, &seq, t0).await;
    let runner = w.runner("lifecycle-runner");
    let stub = StubChannel::ok(Channel::Email).with_clock(w.time());
    let d = dispatcher(&w, &stub, DispatcherConfig::default());

    w.tick(&runner, t0).await.expect("tick");
    assert_eq!(dispatch(&w, &d, t0).await.sent, 1);
    let refused = w
        .enroller()
        .enroll(w.ws, ada.id, seq.id)
        .await
        .expect_err("still running: refused");
    assert!(
        refused
            .conflicts()
            .iter()
            .any(|c| matches!(c, Conflict::AlreadyEnrolled { .. })),
        "{refused:?}"
    );

    let end = t0 + Duration::minutes(1);
    let report = w.tick(&runner, end).await.expect("tick");
    assert_eq!(report.tenant(w.ws).map(|t| t.exhausted), Some(1));
    let done = w.enrollment(e.id).await;
    assert_eq!(done.state, EnrollmentState::Completed);
    assert_eq!(
        done.end_reason.as_deref(),
        Some(end_reasons::ALL_STEPS_DONE)
    );
    assert_eq!(done.ended_at, Some(end));
    assert_eq!(done.next_run_at, None);

    let again = w.enroll(&ada, &seq, end).await;
    assert!(again.state.is_running(), "re-enrollment is allowed");
}

/// An enrollment paused by hand sends nothing and its queued message is cancelled;
/// resumed, its step is queued again; stopped, it ends for good with its reason.
pub async fn lifecycle_pause_resume_and_stop_an_enrollment(store: Arc<DynStore>) {
    let w = World::new(&store, settings());
    let t0 = base_time();
    let ada = w.contact().await;
    let seq = w
        .sequence(vec![
            email("Hello", "First."),
            after(email("Again", "Second."), StepDelay::Hours(2)),
        ])
        .await;
    let e = w.enroll(&ada, &seq, t0).await;
    let runner = w.runner("lifecycle-runner");
    let control = control(&w);

    w.tick(&runner, t0).await.expect("tick");
    let paused = control
        .pause_enrollment(w.ws, e.id, None)
        .await
        .expect("pause");
    assert_eq!(paused.state, EnrollmentState::Paused);
    assert_eq!(paused.end_reason.as_deref(), Some(end_reasons::MANUAL));
    assert_eq!(paused.ended_at, None, "paused is not ended");
    let queued = w.messages_of(e.id).await;
    assert!(
        queued.iter().all(|m| m.status == OutboxStatus::Cancelled),
        "pausing cancels the queued step"
    );
    let t1 = t0 + Duration::hours(3);
    w.tick(&runner, t1).await.expect("tick");
    assert_eq!(
        w.messages_of(e.id).await.len(),
        1,
        "nothing queued while paused"
    );

    w.clock.set(t1);
    let resumed = control.resume_enrollment(w.ws, e.id).await.expect("resume");
    assert_eq!(
        (
            resumed.state,
            resumed.current_step,
            resumed.end_reason.clone()
        ),
        (EnrollmentState::Active, 0, None)
    );
    w.tick(&runner, t1).await.expect("tick");
    let messages = w.messages_of(e.id).await;
    assert_eq!(messages.len(), 2, "the step is queued again");
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.status == OutboxStatus::Pending)
            .count(),
        1
    );

    let stopped = control
        .stop_enrollment(w.ws, e.id, end_reasons::MANUAL)
        .await
        .expect("stop");
    assert_eq!(stopped.state, EnrollmentState::Stopped);
    assert_eq!(stopped.end_reason.as_deref(), Some("manual"));
    assert_eq!(stopped.ended_at, Some(t1));
    assert!(
        w.messages_of(e.id)
            .await
            .iter()
            .all(|m| m.status == OutboxStatus::Cancelled),
        "stopping cancels the queued step"
    );
    assert!(matches!(
        control.resume_enrollment(w.ws, e.id).await,
        Err(ControlError::Transition(_))
    ));
    let again = w.enroll(&ada, &seq, t1).await;
    assert!(
        again.state.is_running(),
        "a stopped enrollment does not block"
    );
}

/// A paused sequence's enrollments are held by the runner; resumed, they run; archived,
/// its running enrollments stop with reason `sequence_archived` and nobody can be
/// enrolled.
pub async fn lifecycle_paused_sequence_holds_and_archive_stops(store: Arc<DynStore>) {
    let w = World::new(&store, settings());
    let t0 = base_time();
    let ada = w.contact().await;
    let grace = w.contact().await;
    let seq = w.sequence(vec![email("Hello", "First.")]).await;
    let ea = w.enroll(&ada, &seq, t0).await;
    let runner = w.runner("lifecycle-runner");
    let control = control(&w);

    w.clock.set(t0);
    let paused = control.pause_sequence(w.ws, seq.id).await.expect("pause");
    assert_eq!(paused.status, SequenceStatus::Paused);
    let report = w.tick(&runner, t0).await.expect("tick");
    assert_eq!(report.tenant(w.ws).map(|t| t.held), Some(1));
    assert!(
        w.messages_of(ea.id).await.is_empty(),
        "held: nothing queued"
    );
    let held = w.enrollment(ea.id).await;
    assert_eq!(
        (held.state, held.next_run_at),
        (EnrollmentState::Pending, None)
    );
    let eg = w.enroll(&grace, &seq, t0).await;

    let t1 = t0 + Duration::hours(1);
    w.clock.set(t1);
    let resumed = control.resume_sequence(w.ws, seq.id).await.expect("resume");
    assert_eq!(resumed.sequence.status, SequenceStatus::Active);
    assert_eq!(
        resumed.enrollments,
        vec![ea.id],
        "the held enrollment is due again"
    );
    w.tick(&runner, t1).await.expect("tick");
    assert_eq!(w.messages_of(ea.id).await.len(), 1);
    assert_eq!(w.messages_of(eg.id).await.len(), 1);

    let archived = control
        .archive_sequence(w.ws, seq.id)
        .await
        .expect("archive");
    assert_eq!(archived.sequence.status, SequenceStatus::Archived);
    let mut stopped = archived.enrollments.clone();
    stopped.sort();
    let mut expected = vec![ea.id, eg.id];
    expected.sort();
    assert_eq!(stopped, expected);
    for id in expected {
        let e: Enrollment = w.enrollment(id).await;
        assert_eq!(e.state, EnrollmentState::Stopped);
        assert_eq!(
            e.end_reason.as_deref(),
            Some(end_reasons::SEQUENCE_ARCHIVED)
        );
        assert!(
            w.messages_of(id)
                .await
                .iter()
                .all(|m| m.status == OutboxStatus::Cancelled)
        );
    }
    let refused = w
        .enroller()
        .enroll(w.ws, ada.id, seq.id)
        .await
        .expect_err("archived: refused");
    assert!(
        matches!(&refused, EnrollError::Conflicts(c) if c.contains(&Conflict::SequenceArchived)),
        "{refused:?}"
    );
    assert!(matches!(
        control.resume_sequence(w.ws, seq.id).await,
        Err(ControlError::Archived { .. })
    ));
}
