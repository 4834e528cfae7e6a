//! Cases for the outreach parts of the send path: the enrollment a send moves on, the
//! provider-id lookup. Parking a claimed message for approval is in `outbox_hold`.

use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Enrollment, EnrollmentState, OutboxMessage, OutboxStatus};
use crm_core::store::ActivityFilter;

use super::fixtures::{
    at, base, claim_one_message, contact, created, enroll, enrolled_message, in_flight_message, ok,
    sent_record, sequence, token,
};

/// An active enrollment with one claimed message of it (leased at [`base`]).
async fn enrollment_in_flight(store: &DynStore, ws: WorkspaceId) -> (Enrollment, OutboxMessage) {
    let seq = sequence(store, ws).await;
    let enrollment = enroll(store, &seq, EnrollmentState::StepPending, None).await;
    created(
        store
            .enqueue_outbox(&enrolled_message(&enrollment, 0))
            .await,
        "enqueue",
    );
    (enrollment, claim_one_message(store, ws, base()).await)
}

/// `enrollment` as the dispatcher computes it after sending step 0 at `at(1)`.
fn step_sent(enrollment: &Enrollment) -> Enrollment {
    let mut next = enrollment.clone();
    next.state = EnrollmentState::StepSent;
    next.current_step = 1;
    next.next_run_at = Some(at(3 * 24 * 60));
    next.updated_at = at(1);
    next
}

/// Asserts the message is Sent and its one activity recorded.
async fn assert_sent_and_recorded(
    store: &DynStore,
    message: &OutboxMessage,
    contact_filter: ActivityFilter,
) {
    let ws = message.workspace_id;
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get").status,
        OutboxStatus::Sent,
        "the message is Sent"
    );
    assert_eq!(
        ok(store.count_activities(ws, &contact_filter).await, "count"),
        1,
        "the send activity is recorded"
    );
}

/// A fresh SentRecord::enrollment is stored with the send (version + 1).
pub async fn sent_record_advances_fresh_enrollment(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (enrollment, message) = enrollment_in_flight(store, ws).await;
    let next = step_sent(&enrollment);
    let mut sent = sent_record(&message, enrollment.contact_id, at(1));
    sent.enrollment = Some(next.clone());
    ok(
        store
            .mark_outbox_sent(ws, message.id, token(message.lease.as_ref()), &sent)
            .await,
        "mark_outbox_sent",
    );
    let mut expected = next;
    expected.version = 2;
    assert_eq!(
        ok(store.get_enrollment(ws, enrollment.id).await, "get"),
        expected,
        "mark_outbox_sent applies a fresh SentRecord::enrollment with version + 1"
    );
    let timeline = ActivityFilter {
        contact_id: Some(enrollment.contact_id),
        ..Default::default()
    };
    assert_sent_and_recorded(store, &message, timeline).await;
}

/// A stale SentRecord::enrollment is skipped without error; send and activity are stored.
pub async fn sent_record_skips_stale_enrollment(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (enrollment, message) = enrollment_in_flight(store, ws).await;
    let mut replied = enrollment.clone();
    replied.state = EnrollmentState::Replied;
    replied.updated_at = at(1);
    let replied = ok(
        store.update_enrollment(&replied).await,
        "the contact replied while the message was in flight",
    );
    let mut sent = sent_record(&message, enrollment.contact_id, at(2));
    sent.enrollment = Some(step_sent(&enrollment));
    let done = ok(
        store
            .mark_outbox_sent(ws, message.id, token(message.lease.as_ref()), &sent)
            .await,
        "mark_outbox_sent with a stale enrollment succeeds",
    );
    assert_eq!(done.status, OutboxStatus::Sent, "the send is recorded");
    assert_eq!(
        ok(store.get_enrollment(ws, enrollment.id).await, "get"),
        replied,
        "the stale enrollment change is skipped"
    );
    let timeline = ActivityFilter {
        contact_id: Some(enrollment.contact_id),
        ..Default::default()
    };
    assert_sent_and_recorded(store, &message, timeline).await;
}

/// find_outbox_by_provider_id finds a sent message in its own workspace only.
pub async fn outbox_find_by_provider_id(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let message = in_flight_message(store, ws, Some(&ada)).await;
    let sent = sent_record(&message, ada.id, at(1));
    let provider_id = sent.provider_message_id.clone().unwrap_or_default();
    assert_eq!(
        ok(
            store.find_outbox_by_provider_id(ws, &provider_id).await,
            "find_outbox_by_provider_id",
        ),
        None,
        "no message carries the id before it is sent"
    );
    let stored = ok(
        store
            .mark_outbox_sent(ws, message.id, token(message.lease.as_ref()), &sent)
            .await,
        "mark_outbox_sent",
    );
    assert_eq!(
        ok(
            store.find_outbox_by_provider_id(ws, &provider_id).await,
            "find_outbox_by_provider_id",
        ),
        Some(stored),
        "the sent message is found by its provider id"
    );
    assert_eq!(
        ok(
            store
                .find_outbox_by_provider_id(ws, "unknown-provider-id")
                .await,
            "find_outbox_by_provider_id",
        ),
        None,
        "an unknown provider id finds nothing"
    );
    assert_eq!(
        ok(
            store
                .find_outbox_by_provider_id(WorkspaceId::new(), &provider_id)
                .await,
            "find_outbox_by_provider_id",
        ),
        None,
        "another workspace never sees the message"
    );
}
