//! Enrollment lifecycle columns: why and when an enrollment ended, the message of its
//! queued step, a sequence's status and step-failure policy, and `Stopped` as a final
//! state.

use chrono::Duration;

use super::fixtures::{base, contact, new_enrollment, new_message, ok, sequence};
use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::model::{EnrollmentState, SequenceStatus, StepFailurePolicy, end_reasons};
use crm_core::store::{EnrollmentChange, EnrollmentFilter, Page};

/// A sequence's status and failure policy are stored, updated and kept per version.
pub async fn lifecycle_sequence_status_and_policy_round_trip(store: &DynStore) {
    let ws = WorkspaceId::new();
    let v1 = sequence(store, ws).await;
    assert_eq!(
        (v1.status, v1.step_failure_policy),
        (SequenceStatus::Active, StepFailurePolicy::Skip),
        "a new sequence is active and skips unsendable steps"
    );
    let mut next = v1.clone();
    next.status = SequenceStatus::Paused;
    next.step_failure_policy = StepFailurePolicy::FailEnrollment;
    next.updated_at = base() + Duration::minutes(1);
    let v2 = ok(store.update_sequence(&next).await, "update_sequence");
    assert_eq!(
        (v2.status, v2.step_failure_policy, v2.version),
        (SequenceStatus::Paused, StepFailurePolicy::FailEnrollment, 2)
    );
    assert_eq!(ok(store.get_sequence(ws, v1.id).await, "get_sequence"), v2);
    assert_eq!(
        ok(
            store.get_sequence_version(ws, v1.id, 1).await,
            "get_sequence_version"
        ),
        v1,
        "version 1 reads back as saved, status and policy included"
    );
    assert_eq!(
        ok(
            store.get_sequence_version(ws, v1.id, 2).await,
            "get_sequence_version"
        ),
        v2
    );
}

/// `end_reason`, `ended_at` and `step_message_id` are written by `update_enrollment`
/// and `advance_enrollment` and read back as written.
pub async fn lifecycle_enrollment_fields_round_trip(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let c = contact(store, ws).await;
    let inserted = ok(
        store.insert_enrollment(&new_enrollment(&seq, c.id)).await,
        "insert_enrollment",
    );
    assert_eq!(
        (
            &inserted.end_reason,
            inserted.ended_at,
            inserted.step_message_id
        ),
        (&None, None, None)
    );

    // A step queued: the enrollment points at its message.
    let message = new_message(ws)
        .with_contact(c.id)
        .with_enrollment(inserted.id, 0);
    let mut queued = inserted.clone();
    queued.state = EnrollmentState::StepPending;
    queued.step_message_id = Some(message.id);
    queued.next_run_at = Some(base() + Duration::hours(1));
    let change = EnrollmentChange {
        enrollment: queued,
        enqueue: Some(message.clone()),
        cancel_queued: None,
        now: base(),
    };
    let advanced = ok(
        store.advance_enrollment(&change).await,
        "advance_enrollment",
    );
    assert_eq!(advanced.enrollment.step_message_id, Some(message.id));
    assert_eq!(
        ok(store.get_enrollment(ws, inserted.id).await, "get").step_message_id,
        Some(message.id)
    );

    // Stopped with a reason: not running, no longer due, no longer blocking.
    let ended_at = base() + Duration::minutes(5);
    let mut stopped = advanced.enrollment.clone();
    stopped.state = EnrollmentState::Stopped;
    stopped.end_reason = Some(end_reasons::MANUAL.to_owned());
    stopped.ended_at = Some(ended_at);
    stopped.next_run_at = None;
    stopped.updated_at = ended_at;
    let stored = ok(store.update_enrollment(&stopped).await, "update_enrollment");
    assert_eq!(stored.end_reason.as_deref(), Some("manual"));
    assert_eq!(stored.ended_at, Some(ended_at));
    assert_eq!(stored.step_message_id, Some(message.id));
    let read = ok(store.get_enrollment(ws, inserted.id).await, "get");
    assert_eq!(read, stored, "every lifecycle field reads back as written");

    let running = EnrollmentFilter {
        sequence_id: Some(seq.id),
        running_only: true,
        ..EnrollmentFilter::default()
    };
    assert!(
        ok(
            store.list_enrollments(ws, &running, Page::first(10)).await,
            "list_enrollments"
        )
        .is_empty(),
        "a stopped enrollment is not running"
    );
    let again = ok(
        store.insert_enrollment(&new_enrollment(&seq, c.id)).await,
        "a stopped enrollment does not block enrolling again",
    );
    assert!(again.state.is_running());
}

/// A clear of `end_reason` and `ended_at` is stored too (a paused enrollment resumed).
pub async fn lifecycle_enrollment_fields_clear(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let c = contact(store, ws).await;
    let e = ok(
        store.insert_enrollment(&new_enrollment(&seq, c.id)).await,
        "insert_enrollment",
    );
    let mut paused = e.clone();
    paused.state = EnrollmentState::Paused;
    paused.end_reason = Some(end_reasons::OUT_OF_OFFICE.to_owned());
    let change = EnrollmentChange {
        enrollment: paused,
        enqueue: None,
        cancel_queued: Some("paused".into()),
        now: base(),
    };
    let paused = ok(store.advance_enrollment(&change).await, "advance").enrollment;
    assert_eq!(paused.end_reason.as_deref(), Some("out_of_office"));
    let mut resumed = paused.clone();
    resumed.state = EnrollmentState::Active;
    resumed.end_reason = None;
    let resumed = ok(store.update_enrollment(&resumed).await, "update_enrollment");
    assert_eq!(resumed.end_reason, None, "resuming clears the reason");
    assert_eq!(
        ok(store.get_enrollment(ws, e.id).await, "get").end_reason,
        None
    );
}
