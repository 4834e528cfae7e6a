//! The batched send-path writes: `mark_outbox_sent_many` (each mark fenced by its own
//! token, all in one atomic step) and `insert_approvals`.

use crm_core::DynStore;
use crm_core::StoreErrorKind;
use crm_core::ids::{ActivityId, WorkspaceId};
use crm_core::model::{ApprovalStatus, EnrollmentState, OutboxStatus};
use crm_core::store::{ActivityFilter, SentMark};

use super::fixtures::{
    at, base, claim_one_message, contact, created, enroll, enrolled_message, in_flight_message,
    new_approval, new_message, ok, sent_record, sequence, token,
};

/// Each mark is fenced by its own token: a lost lease is answered in its place while
/// the others are recorded with their activity and enrollment; a refused record fails
/// the whole call and stores nothing.
pub async fn mark_outbox_sent_many_fences_each_mark(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let enrollment = enroll(store, &seq, EnrollmentState::StepPending, None).await;
    created(
        store
            .enqueue_outbox(&enrolled_message(&enrollment, 0))
            .await,
        "enqueue",
    );
    let stepped = claim_one_message(store, ws, base()).await;
    let ada = contact(store, ws).await;
    let plain = in_flight_message(store, ws, Some(&ada)).await;
    let lost = in_flight_message(store, ws, Some(&ada)).await;
    let mut next = enrollment.clone();
    next.state = EnrollmentState::StepSent;
    next.current_step = 1;
    next.next_run_at = Some(at(3 * 24 * 60));
    next.updated_at = at(1);
    let mut step_record = sent_record(&stepped, enrollment.contact_id, at(1));
    step_record.enrollment = Some(next.clone());
    let mark = |m: &crm_core::model::OutboxMessage, token, sent| SentMark {
        workspace_id: ws,
        id: m.id,
        lease_token: token,
        sent,
    };
    let marks = vec![
        mark(&stepped, token(stepped.lease.as_ref()), step_record),
        mark(
            &plain,
            token(plain.lease.as_ref()),
            sent_record(&plain, ada.id, at(1)),
        ),
        mark(
            &lost,
            token(lost.lease.as_ref()) + 1,
            sent_record(&lost, ada.id, at(1)),
        ),
    ];
    // A record of another workspace refuses the whole call.
    let mut foreign = marks.clone();
    if let Some(m) = foreign.get_mut(1) {
        m.sent.activity.workspace_id = WorkspaceId::new();
    }
    let refused = store.mark_outbox_sent_many(&foreign).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == StoreErrorKind::Invalid),
        "a foreign activity refuses the call: {refused:?}"
    );
    assert_eq!(
        ok(store.get_outbox(ws, stepped.id).await, "get").status,
        OutboxStatus::InFlight,
        "a refused call stores nothing"
    );
    // A message named twice refuses the whole call too.
    let mut repeated = marks.clone();
    if let Some(first) = marks.first() {
        let mut again = first.clone();
        again.sent.activity.id = ActivityId::new();
        repeated.push(again);
    }
    let refused = store.mark_outbox_sent_many(&repeated).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == StoreErrorKind::Invalid),
        "a message named twice refuses the call: {refused:?}"
    );
    assert_eq!(
        ok(store.get_outbox(ws, plain.id).await, "get").status,
        OutboxStatus::InFlight,
        "a refused call stores nothing"
    );
    // One activity given for two messages is a conflict, and nothing is stored.
    let mut shared_activity = marks.clone();
    if let (Some(first), Some(second)) = (marks.first(), shared_activity.get_mut(1)) {
        second.sent.activity.id = first.sent.activity.id;
    }
    let refused = store.mark_outbox_sent_many(&shared_activity).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == StoreErrorKind::Conflict),
        "an activity given twice refuses the call: {refused:?}"
    );
    assert_eq!(
        ok(store.get_outbox(ws, stepped.id).await, "get").status,
        OutboxStatus::InFlight,
        "a refused call stores nothing"
    );
    let answers = ok(
        store.mark_outbox_sent_many(&marks).await,
        "mark_outbox_sent_many",
    );
    assert_eq!(answers.len(), 3, "one answer per mark");
    for (answer, m) in answers.iter().zip([&stepped, &plain]) {
        let sent = answer.as_ref().expect("a held message is recorded");
        assert_eq!((sent.id, sent.status), (m.id, OutboxStatus::Sent));
    }
    assert!(
        matches!(answers.get(2), Some(Err(e)) if e.kind() == StoreErrorKind::LeaseLost),
        "the wrong token is answered LeaseLost: {answers:?}"
    );
    assert_eq!(
        ok(store.get_outbox(ws, lost.id).await, "get").status,
        OutboxStatus::InFlight,
        "the message under another token is untouched"
    );
    let mut expected = next;
    expected.version = 2;
    assert_eq!(
        ok(store.get_enrollment(ws, enrollment.id).await, "get"),
        expected,
        "the step's enrollment is moved on with the send"
    );
    let ada_timeline = ActivityFilter {
        contact_id: Some(ada.id),
        ..Default::default()
    };
    assert_eq!(
        ok(store.count_activities(ws, &ada_timeline).await, "count"),
        1,
        "only the recorded send has its activity"
    );
    let again = ok(
        store.mark_outbox_sent_many(&marks[..1]).await,
        "mark_outbox_sent_many",
    );
    assert!(
        matches!(again.first(), Some(Err(e)) if e.kind() == StoreErrorKind::LeaseLost),
        "a sent message is not recorded twice: {again:?}"
    );
}

/// Items are stored together; a message's existing item, or an earlier item of the
/// same call, is the answer for a later one; a missing message refuses the call.
pub async fn insert_approvals_batch(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut messages = Vec::new();
    for _ in 0..2 {
        let m = new_message(ws);
        created(store.enqueue_outbox(&m).await, "enqueue");
        messages.push(m);
    }
    let [a, b] = [&messages[0], &messages[1]];
    let item_a = new_approval(a, at(60));
    let item_b = new_approval(b, at(60));
    let repeat_a = new_approval(a, at(60));
    let missing = new_approval(&new_message(ws), at(60));
    let refused = store
        .insert_approvals(&[item_a.clone(), missing.clone()])
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == StoreErrorKind::InvalidReference),
        "an item of a missing message refuses the call: {refused:?}"
    );
    assert_eq!(
        ok(store.find_approvals_for_outbox(ws, &[a.id]).await, "find"),
        vec![None],
        "a refused call stores nothing"
    );
    let inserted = ok(
        store
            .insert_approvals(&[item_a.clone(), item_b.clone(), repeat_a])
            .await,
        "insert_approvals",
    );
    let created_flags: Vec<bool> = inserted.iter().map(|i| i.created).collect();
    assert_eq!(created_flags, vec![true, true, false]);
    let ids: Vec<_> = inserted.iter().map(|i| i.value.id).collect();
    assert_eq!(
        ids,
        vec![item_a.id, item_b.id, item_a.id],
        "the first item wins"
    );
    let again = ok(
        store.insert_approvals(&[new_approval(b, at(60))]).await,
        "insert_approvals",
    );
    assert_eq!(
        again.first().map(|i| (i.value.id, i.created)),
        Some((item_b.id, false)),
        "the message's existing item is the answer"
    );
    let found = ok(
        store.find_approvals_for_outbox(ws, &[a.id, b.id]).await,
        "find",
    );
    assert!(
        found.iter().all(|i| i
            .as_ref()
            .is_some_and(|i| i.status == ApprovalStatus::Pending)),
        "both items are stored: {found:?}"
    );
}
