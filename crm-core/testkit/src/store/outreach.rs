//! Cases for the outreach parts of [`SequenceStore`]: sequence versions, the workspaces
//! a runner works on, and the enrollment change-set of `advance_enrollment`.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{EnrollmentId, SequenceId, WorkspaceId};
use crm_core::model::{ApprovalStatus, EnrollmentState, OutboxMessage, OutboxStatus};
use crm_core::store::{EnrollmentChange, Inserted, Page, Scope};

use super::fixtures::{
    at, change, claim_one_message, contact, created, enroll, enrolled_message, era, expect_err,
    new_approval, new_enrollment, new_message, ok, sent_record, sequence, token,
};

/// Every sequence version stays readable; unknown versions and other workspaces are NotFound.
pub async fn sequence_versions_stay_readable(store: &DynStore) {
    let ws = WorkspaceId::new();
    let v1 = sequence(store, ws).await;
    let mut edit = v1.clone();
    edit.name = "Onboarding v2".into();
    edit.steps.push(edit.steps[0].clone());
    edit.updated_at = at(1);
    let v2 = ok(store.update_sequence(&edit).await, "update_sequence");
    let mut edit = v2.clone();
    edit.steps[1].template.body = "Any news, {{first_name}}?".into();
    edit.updated_at = at(2);
    let v3 = ok(store.update_sequence(&edit).await, "update_sequence");
    expect_err(
        store.update_sequence(&edit).await,
        Kind::VersionConflict,
        "update_sequence with a stale version",
    );
    for (version, expected) in [(1, &v1), (2, &v2), (3, &v3)] {
        assert_eq!(
            &ok(
                store.get_sequence_version(ws, v1.id, version).await,
                "get_sequence_version",
            ),
            expected,
            "get_sequence_version({version}) returns that definition exactly, the current one included"
        );
    }
    for version in [0, -1, 4] {
        expect_err(
            store.get_sequence_version(ws, v1.id, version).await,
            Kind::NotFound,
            &format!("version {version} never existed (a refused update makes none)"),
        );
    }
    expect_err(
        store.get_sequence_version(ws, SequenceId::new(), 1).await,
        Kind::NotFound,
        "get_sequence_version of an unknown sequence",
    );
    let other = WorkspaceId::new();
    sequence(store, other).await;
    for version in [1, 3] {
        expect_err(
            store.get_sequence_version(other, v1.id, version).await,
            Kind::NotFound,
            "get_sequence_version from another workspace",
        );
    }
}

/// Due workspaces (paused included), earliest due first, ties by id, at most `limit` (era 1999).
pub async fn due_workspaces_order_and_limit(store: &DynStore) {
    let t = |minutes: i64| era(1999) + Duration::minutes(minutes);
    let wss: [WorkspaceId; 7] = std::array::from_fn(|_| WorkspaceId::new());
    let [early, tie_a, tie_b, late, finished, future, undated] = wss;
    let rows: [(WorkspaceId, EnrollmentState, Option<DateTime<Utc>>); 9] = [
        (late, EnrollmentState::StepSent, Some(t(50))),
        (late, EnrollmentState::Active, Some(t(30))),
        (early, EnrollmentState::Paused, Some(t(10))),
        (tie_a, EnrollmentState::Pending, Some(t(20))),
        (tie_b, EnrollmentState::StepPending, Some(t(20))),
        (finished, EnrollmentState::Completed, Some(t(1))),
        (finished, EnrollmentState::Replied, Some(t(2))),
        (future, EnrollmentState::Active, Some(t(100))),
        (undated, EnrollmentState::Active, None),
    ];
    for (ws, state, next_run_at) in rows {
        let seq = sequence(store, ws).await;
        enroll(store, &seq, state, next_run_at).await;
    }
    let mine: BTreeSet<WorkspaceId> = wss.into_iter().collect();
    let list = |now: DateTime<Utc>, limit: u32| async move {
        let listed = ok(
            store.list_workspaces_with_due_enrollments(now, limit).await,
            "list_workspaces_with_due_enrollments",
        );
        assert!(
            listed.len() <= limit as usize,
            "list_workspaces_with_due_enrollments returns at most `limit`"
        );
        let unique: BTreeSet<_> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "each workspace is listed once");
        listed
    };
    let only_mine = |listed: Vec<WorkspaceId>| -> Vec<WorkspaceId> {
        listed.into_iter().filter(|ws| mine.contains(ws)).collect()
    };
    let (first_tie, second_tie) = (tie_a.min(tie_b), tie_a.max(tie_b));
    let expected = vec![early, first_tie, second_tie, late];
    assert_eq!(
        only_mine(list(t(60), 1000).await),
        expected,
        "due workspaces by earliest due next_run_at (paused included), ties by id; \
         finished, future and undated enrollments make no workspace due"
    );
    assert_eq!(
        only_mine(list(t(10), 1000).await),
        vec![early],
        "next_run_at equal to now is due"
    );
    assert!(
        only_mine(list(t(9), 1000).await).is_empty(),
        "nothing is due before the earliest next_run_at"
    );
    let limited = list(t(60), 2).await;
    assert_eq!(limited.len(), 2, "`limit` caps the list");
    let head = only_mine(limited);
    assert_eq!(
        head,
        expected[..head.len()],
        "a limited list is the head of the full order"
    );
    for limit in [0, 1001] {
        expect_err(
            store
                .list_workspaces_with_due_enrollments(t(60), limit)
                .await,
            Kind::Invalid,
            &format!("list_workspaces_with_due_enrollments with limit {limit} (1 to 1000)"),
        );
    }
}

/// advance_enrollment enqueues with its CAS; stale: nothing enqueued; known key: created false.
pub async fn advance_enrollment_enqueues_with_compare_and_set(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let e1 = enroll(store, &seq, EnrollmentState::Active, Some(at(0))).await;
    let first = enrolled_message(&e1, 0);
    let mut step = change(&e1, EnrollmentState::StepPending, Some(at(60)), at(1));
    step.enrollment.current_step = 1;
    step.enqueue = Some(first.clone());
    let done = ok(store.advance_enrollment(&step).await, "advance_enrollment");
    let mut e2 = step.enrollment.clone();
    e2.version = 2;
    assert_eq!(
        done.enrollment, e2,
        "advance_enrollment stores the new state with version + 1"
    );
    assert_eq!(
        done.enqueued,
        Some(Inserted {
            value: first.clone(),
            created: true
        }),
        "the message is enqueued with the change"
    );
    assert!(done.cancelled.is_empty(), "nothing was cancelled");
    assert_eq!(ok(store.get_enrollment(ws, e1.id).await, "get"), e2);
    assert_eq!(ok(store.get_outbox(ws, first.id).await, "get"), first);

    let mut stale = step.clone();
    let second = enrolled_message(&e1, 1);
    stale.enqueue = Some(second.clone());
    expect_err(
        store.advance_enrollment(&stale).await,
        Kind::VersionConflict,
        "advance_enrollment with a stale version",
    );
    expect_err(
        store.get_outbox(ws, second.id).await,
        Kind::NotFound,
        "a refused change enqueues nothing",
    );
    assert_eq!(ok(store.get_enrollment(ws, e1.id).await, "get"), e2);

    let mut retry = change(&e2, EnrollmentState::StepPending, Some(at(90)), at(2));
    let mut same_key = enrolled_message(&e1, 0);
    same_key.idempotency_key = first.idempotency_key.clone();
    retry.enqueue = Some(same_key.clone());
    let again = ok(store.advance_enrollment(&retry).await, "advance_enrollment");
    assert_eq!(
        again.enqueued,
        Some(Inserted {
            value: first.clone(),
            created: false
        }),
        "an existing idempotency key returns the stored message with created: false"
    );
    assert_eq!(again.enrollment.version, 3, "the enrollment still advances");
    expect_err(
        store.get_outbox(ws, same_key.id).await,
        Kind::NotFound,
        "no second message is stored for the key",
    );

    let plain = change(&again.enrollment, EnrollmentState::Active, None, at(3));
    let moved = ok(store.advance_enrollment(&plain).await, "advance_enrollment");
    assert_eq!(moved.enqueued, None, "no enqueue, nothing enqueued");
    assert_eq!(moved.enrollment.version, 4);
    let mut unknown = plain.clone();
    unknown.enrollment.id = EnrollmentId::new();
    expect_err(
        store.advance_enrollment(&unknown).await,
        Kind::NotFound,
        "advance_enrollment of an unknown enrollment",
    );
    let mut foreign = plain.clone();
    foreign.enrollment.workspace_id = WorkspaceId::new();
    expect_err(
        store.advance_enrollment(&foreign).await,
        Kind::NotFound,
        "advance_enrollment from another workspace",
    );
}

/// cancel_queued cancels only the enrollment's queued messages and rejects their pending items.
pub async fn advance_enrollment_cancels_only_its_queued_messages(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let mine = enroll(store, &seq, EnrollmentState::StepPending, Some(at(0))).await;
    let theirs = enroll(store, &seq, EnrollmentState::StepPending, Some(at(0))).await;
    let enqueue = |message| async move { created(store.enqueue_outbox(&message).await, "enqueue") };

    enqueue(enrolled_message(&mine, 0)).await;
    let sent = claim_one_message(store, ws, at(0)).await;
    let record = sent_record(&sent, mine.contact_id, at(1));
    let sent = ok(
        store
            .mark_outbox_sent(ws, sent.id, token(sent.lease.as_ref()), &record)
            .await,
        "mark_outbox_sent",
    );
    enqueue(enrolled_message(&mine, 1)).await;
    let in_flight = claim_one_message(store, ws, at(1)).await;

    let pending = enqueue(enrolled_message(&mine, 2)).await;
    let awaiting = enrolled_message(&mine, 3).with_status(OutboxStatus::AwaitingApproval);
    let awaiting = enqueue(awaiting).await;
    let item = created(
        store
            .insert_approval(&new_approval(&awaiting, at(600)))
            .await,
        "insert_approval",
    );
    let expired_msg = enrolled_message(&mine, 4).with_status(OutboxStatus::AwaitingApproval);
    let expired_msg = enqueue(expired_msg).await;
    created(
        store
            .insert_approval(&new_approval(&expired_msg, at(0)))
            .await,
        "insert_approval",
    );
    let expired = ok(
        store.expire_approvals(Scope::Workspace(ws), at(0)).await,
        "expire_approvals",
    );
    assert_eq!(expired.len(), 1, "one item expired before the change");
    let others = [
        enqueue(enrolled_message(&theirs, 0)).await,
        enqueue(new_message(ws)).await,
    ];

    let mut stop = change(&mine, EnrollmentState::Replied, None, at(5));
    stop.cancel_queued = Some("contact replied".into());
    let mut stale = stop.clone();
    stale.enrollment.version += 1;
    expect_err(
        store.advance_enrollment(&stale).await,
        Kind::VersionConflict,
        "advance_enrollment with a stale version",
    );
    assert_eq!(
        ok(store.get_outbox(ws, pending.id).await, "get").status,
        OutboxStatus::Pending,
        "a refused change cancels nothing"
    );
    assert_eq!(
        ok(store.get_approval(ws, item.id).await, "get").status,
        ApprovalStatus::Pending,
        "a refused change rejects nothing"
    );

    let done = ok(store.advance_enrollment(&stop).await, "advance_enrollment");
    let mut expected = vec![pending.id, awaiting.id, expired_msg.id];
    expected.sort();
    let mut cancelled = done.cancelled.clone();
    cancelled.sort();
    assert_eq!(
        cancelled, expected,
        "cancelled lists the enrollment's Pending and AwaitingApproval messages"
    );
    assert_eq!(done.enrollment.state, EnrollmentState::Replied);
    for id in expected {
        let got = ok(store.get_outbox(ws, id).await, "get");
        assert_eq!(
            got.status,
            OutboxStatus::Cancelled,
            "queued messages are Cancelled"
        );
        assert_eq!(
            got.last_error.as_deref(),
            Some("contact replied"),
            "with the reason in last_error"
        );
        assert_eq!(got.version, 2, "cancelling bumps the version");
        assert_eq!(got.updated_at, at(5), "updated_at is the change's now");
    }
    let rejected = ok(store.get_approval(ws, item.id).await, "get");
    assert_eq!(
        (
            rejected.status,
            rejected.reason.as_deref(),
            rejected.version
        ),
        (ApprovalStatus::Withdrawn, Some("contact replied"), 2),
        "the pending item of a cancelled message is Withdrawn with the reason"
    );
    assert_eq!(
        ok(store.get_approval(ws, expired[0].id).await, "get"),
        expired[0],
        "an item that is no longer pending is left alone"
    );
    assert_eq!(
        ok(store.get_outbox(ws, sent.id).await, "get"),
        sent,
        "a Sent message is never cancelled"
    );
    assert_eq!(
        ok(store.get_outbox(ws, in_flight.id).await, "get"),
        in_flight,
        "an InFlight message is never cancelled"
    );
    for other in &others {
        assert_eq!(
            &ok(store.get_outbox(ws, other.id).await, "get"),
            other,
            "messages of other enrollments, or of none, are untouched"
        );
    }
}

/// advance_enrollment is all or nothing: Invalid, InvalidReference and Conflict write nothing.
pub async fn advance_enrollment_refuses_bad_change_sets(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let e = enroll(store, &seq, EnrollmentState::Active, Some(at(0))).await;
    let other_e = enroll(store, &seq, EnrollmentState::Active, Some(at(0))).await;
    let base_change = change(&e, EnrollmentState::StepPending, Some(at(60)), at(1));
    let with_enqueue = |edit: &dyn Fn(&mut OutboxMessage)| {
        let mut message = enrolled_message(&e, 0);
        edit(&mut message);
        EnrollmentChange {
            enqueue: Some(message),
            ..base_change.clone()
        }
    };
    let other = WorkspaceId::new();
    let foreign_contact = contact(store, other).await;
    let refused: Vec<(EnrollmentChange, Kind, &str)> = vec![
        (
            with_enqueue(&|m| m.enrollment_id = Some(other_e.id)),
            Kind::Invalid,
            "an enqueue for another enrollment",
        ),
        (
            with_enqueue(&|m| m.enrollment_id = None),
            Kind::Invalid,
            "an enqueue without enrollment_id",
        ),
        (
            with_enqueue(&|m| {
                m.workspace_id = other;
                m.contact_id = None;
            }),
            Kind::Invalid,
            "an enqueue in another workspace",
        ),
        (
            EnrollmentChange {
                cancel_queued: Some("stop".into()),
                ..with_enqueue(&|_| {})
            },
            Kind::Invalid,
            "both enqueue and cancel_queued",
        ),
        (
            with_enqueue(&|m| m.body = " ".into()),
            Kind::Invalid,
            "an enqueue of an invalid message",
        ),
        (
            with_enqueue(&|m| m.contact_id = Some(foreign_contact.id)),
            Kind::InvalidReference,
            "an enqueue to another workspace's contact",
        ),
    ];
    for (bad, kind, what) in refused {
        expect_err(store.advance_enrollment(&bad).await, kind, what);
    }

    let mut done = e.clone();
    done.state = EnrollmentState::Completed;
    done.next_run_at = None;
    let done = ok(store.update_enrollment(&done).await, "update_enrollment");
    let ada = ok(store.get_contact(ws, e.contact_id).await, "get_contact");
    let rerun = ok(
        store.insert_enrollment(&new_enrollment(&seq, ada.id)).await,
        "a new running enrollment of the contact",
    );
    let mut revive = change(&done, EnrollmentState::Active, Some(at(5)), at(2));
    revive.enqueue = Some(enrolled_message(&done, 0));
    expect_err(
        store.advance_enrollment(&revive).await,
        Kind::Conflict,
        "advance_enrollment back to running while another enrollment runs",
    );

    assert_eq!(
        ok(store.get_enrollment(ws, e.id).await, "get"),
        done,
        "refused changes leave the enrollment as it was"
    );
    assert_eq!(
        ok(store.get_enrollment(ws, rerun.id).await, "get"),
        rerun,
        "and the running one too"
    );
    for workspace in [ws, other] {
        assert!(
            ok(
                store.list_outbox(workspace, None, Page::first(10)).await,
                "list_outbox",
            )
            .is_empty(),
            "refused changes enqueue nothing"
        );
    }
}
