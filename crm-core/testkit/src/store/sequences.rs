//! Cases for [`SequenceStore`]: sequences and enrollments.

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, EnrollmentId, SequenceId, WorkspaceId};
use crm_core::model::{Enrollment, EnrollmentState, Sequence};
use crm_core::store::{EnrollmentFilter, Page};

use super::fixtures::{
    assert_pagination, at, base, contact, enroll, expect_err, ids, new_enrollment, new_sequence,
    ok, sequence, sorted,
};

/// insert/get/update/list of sequences: round trip, compare-and-set, validation, paging.
pub async fn sequence_round_trip_and_update(store: &DynStore) {
    let ws = WorkspaceId::new();
    let original = new_sequence(ws);
    let stored = ok(store.insert_sequence(&original).await, "insert_sequence");
    assert_eq!(
        stored, original,
        "insert_sequence returns the row as stored"
    );
    assert_eq!(
        ok(store.get_sequence(ws, original.id).await, "get"),
        original,
        "get_sequence round trip"
    );

    let mut edit = original.clone();
    edit.name = "Onboarding v2".into();
    edit.steps.push(edit.steps[0].clone());
    edit.updated_at = at(1);
    let updated = ok(store.update_sequence(&edit).await, "update_sequence");
    let mut expected = edit.clone();
    expected.version = 2;
    assert_eq!(
        updated, expected,
        "update_sequence stores the definition with version + 1"
    );
    expect_err(
        store.update_sequence(&edit).await,
        Kind::VersionConflict,
        "update_sequence with a stale version",
    );
    let mut blank = updated.clone();
    blank.name = " ".into();
    expect_err(
        store.update_sequence(&blank).await,
        Kind::Invalid,
        "update_sequence with a blank name",
    );
    assert_eq!(
        ok(store.get_sequence(ws, original.id).await, "get"),
        expected,
        "refused updates change nothing"
    );

    let mut v2 = new_sequence(ws);
    v2.version = 2;
    expect_err(
        store.insert_sequence(&v2).await,
        Kind::Invalid,
        "insert_sequence with version 2",
    );
    let mut no_steps = new_sequence(ws);
    no_steps.steps.clear();
    expect_err(
        store.insert_sequence(&no_steps).await,
        Kind::Invalid,
        "insert_sequence without steps",
    );
    let mut same_id = new_sequence(ws);
    same_id.id = original.id;
    expect_err(
        store.insert_sequence(&same_id).await,
        Kind::Conflict,
        "insert_sequence with a reused id",
    );
    expect_err(
        store.get_sequence(ws, SequenceId::new()).await,
        Kind::NotFound,
        "get_sequence of an unknown id",
    );
    let more = [sequence(store, ws).await.id, sequence(store, ws).await.id];
    assert_pagination(
        "list_sequences",
        vec![original.id, more[0], more[1]],
        |s: &Sequence| s.id,
        |page| store.list_sequences(ws, page),
    )
    .await;
}

/// Another workspace can neither read, list, update nor enroll into a sequence, nor see
/// its enrollments.
pub async fn sequence_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let enrollment = enroll(store, &seq, EnrollmentState::Active, Some(base())).await;
    expect_err(
        store.get_sequence(other, seq.id).await,
        Kind::NotFound,
        "get_sequence from another workspace",
    );
    assert!(
        ok(store.list_sequences(other, Page::first(10)).await, "list").is_empty(),
        "list_sequences is scoped"
    );
    let mut hijack = seq.clone();
    hijack.workspace_id = other;
    expect_err(
        store.update_sequence(&hijack).await,
        Kind::NotFound,
        "update_sequence from another workspace",
    );

    expect_err(
        store.get_enrollment(other, enrollment.id).await,
        Kind::NotFound,
        "get_enrollment from another workspace",
    );
    let listed = ok(
        store
            .list_enrollments(other, &EnrollmentFilter::default(), Page::first(10))
            .await,
        "list",
    );
    assert!(
        listed.is_empty(),
        "list_enrollments never returns another workspace's rows"
    );
    let due = ok(
        store.list_due_enrollments(other, at(60), 10).await,
        "list_due_enrollments",
    );
    assert!(
        due.is_empty(),
        "list_due_enrollments never returns another workspace's rows"
    );
    let mut hijack = enrollment.clone();
    hijack.workspace_id = other;
    hijack.state = EnrollmentState::Failed;
    expect_err(
        store.update_enrollment(&hijack).await,
        Kind::NotFound,
        "update_enrollment from another workspace",
    );
    assert_eq!(
        ok(store.get_enrollment(ws, enrollment.id).await, "get"),
        enrollment,
        "the row is unchanged"
    );

    let own_contact = contact(store, other).await;
    let mut foreign = new_enrollment(&seq, own_contact.id);
    foreign.workspace_id = other;
    expect_err(
        store.insert_enrollment(&foreign).await,
        Kind::InvalidReference,
        "insert_enrollment into another workspace's sequence",
    );
}

/// insert_enrollment round trip; version 1 (Invalid); sequence and contact must exist in
/// the workspace (InvalidReference).
pub async fn enrollment_round_trip_and_references(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let ada = contact(store, ws).await;
    let enrollment = new_enrollment(&seq, ada.id);
    let stored = ok(
        store.insert_enrollment(&enrollment).await,
        "insert_enrollment",
    );
    assert_eq!(
        stored, enrollment,
        "insert_enrollment returns the row as stored"
    );
    assert_eq!(
        ok(store.get_enrollment(ws, enrollment.id).await, "get"),
        enrollment,
        "get_enrollment round trip"
    );
    expect_err(
        store.get_enrollment(ws, EnrollmentId::new()).await,
        Kind::NotFound,
        "get_enrollment of an unknown id",
    );

    let grace = contact(store, ws).await;
    let mut v2 = new_enrollment(&seq, grace.id);
    v2.version = 2;
    expect_err(
        store.insert_enrollment(&v2).await,
        Kind::Invalid,
        "insert_enrollment with version 2",
    );
    let foreign_contact = contact(store, WorkspaceId::new()).await;
    for (contact_id, what) in [
        (foreign_contact.id, "another workspace's"),
        (ContactId::new(), "an unknown"),
    ] {
        expect_err(
            store
                .insert_enrollment(&new_enrollment(&seq, contact_id))
                .await,
            Kind::InvalidReference,
            &format!("insert_enrollment of {what} contact"),
        );
    }
    let mut unknown_sequence = new_enrollment(&seq, grace.id);
    unknown_sequence.sequence_id = SequenceId::new();
    expect_err(
        store.insert_enrollment(&unknown_sequence).await,
        Kind::InvalidReference,
        "insert_enrollment into an unknown sequence",
    );
}

/// At most one running enrollment per contact and sequence, on insert and on update.
pub async fn enrollment_one_running_per_contact_and_sequence(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let ada = contact(store, ws).await;
    let first = ok(
        store.insert_enrollment(&new_enrollment(&seq, ada.id)).await,
        "insert_enrollment",
    );
    expect_err(
        store.insert_enrollment(&new_enrollment(&seq, ada.id)).await,
        Kind::Conflict,
        "a second running enrollment of the contact in the sequence",
    );
    let other_seq = sequence(store, ws).await;
    ok(
        store
            .insert_enrollment(&new_enrollment(&other_seq, ada.id))
            .await,
        "another sequence is fine",
    );
    let grace = contact(store, ws).await;
    ok(
        store
            .insert_enrollment(&new_enrollment(&seq, grace.id))
            .await,
        "another contact is fine",
    );

    let mut done = first.clone();
    done.state = EnrollmentState::Completed;
    done.next_run_at = None;
    done.updated_at = at(10);
    let done = ok(store.update_enrollment(&done).await, "update_enrollment");
    assert_eq!(done.version, 2, "update_enrollment bumps the version");
    let second = ok(
        store.insert_enrollment(&new_enrollment(&seq, ada.id)).await,
        "once the first enrollment finished, the contact may be enrolled again",
    );
    let mut revive = done.clone();
    revive.state = EnrollmentState::Active;
    expect_err(
        store.update_enrollment(&revive).await,
        Kind::Conflict,
        "moving an enrollment back to running while another runs",
    );
    let mut stale = first.clone();
    stale.state = EnrollmentState::Failed;
    expect_err(
        store.update_enrollment(&stale).await,
        Kind::VersionConflict,
        "update_enrollment with a stale version",
    );
    assert_eq!(
        ok(store.get_enrollment(ws, first.id).await, "get"),
        done,
        "refused updates change nothing"
    );
    assert_eq!(
        ok(store.get_enrollment(ws, second.id).await, "get").state,
        EnrollmentState::Pending,
        "the running enrollment is untouched"
    );
}

/// list_due_enrollments: running, next_run_at <= now, earliest first (ties by id), at most `limit`.
pub async fn due_enrollments_order(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let a = enroll(store, &seq, EnrollmentState::Active, Some(at(10))).await;
    let b = enroll(store, &seq, EnrollmentState::StepSent, Some(at(5))).await;
    let c = enroll(store, &seq, EnrollmentState::Pending, Some(at(5))).await;
    enroll(store, &seq, EnrollmentState::Active, Some(at(30))).await;
    enroll(store, &seq, EnrollmentState::Active, None).await;
    enroll(store, &seq, EnrollmentState::Completed, Some(at(1))).await;
    enroll(store, &seq, EnrollmentState::Replied, Some(at(1))).await;

    let tie = sorted(vec![b.id, c.id]);
    let due = ok(
        store.list_due_enrollments(ws, at(20), 10).await,
        "list_due_enrollments",
    );
    assert_eq!(
        ids(&due, |e| e.id),
        vec![tie[0], tie[1], a.id],
        "due: running with next_run_at <= now, earliest first, ties by id; finished and undated excluded"
    );
    let exact = ok(
        store.list_due_enrollments(ws, at(10), 10).await,
        "list_due_enrollments",
    );
    assert_eq!(exact.len(), 3, "next_run_at equal to now is due");
    let limited = ok(
        store.list_due_enrollments(ws, at(20), 2).await,
        "list_due_enrollments",
    );
    assert_eq!(
        ids(&limited, |e| e.id),
        tie,
        "list_due_enrollments returns at most `limit`"
    );
    let early = ok(
        store.list_due_enrollments(ws, at(4), 10).await,
        "list_due_enrollments",
    );
    assert!(
        early.is_empty(),
        "nothing is due before the earliest next_run_at"
    );
    for limit in [0, 1001] {
        expect_err(
            store.list_due_enrollments(ws, at(20), limit).await,
            Kind::Invalid,
            &format!("list_due_enrollments with limit {limit} (1 to 1000)"),
        );
    }
}

/// list_enrollments applies every filter condition and pages by id.
pub async fn enrollment_list_filters(store: &DynStore) {
    let ws = WorkspaceId::new();
    let (s1, s2) = (sequence(store, ws).await, sequence(store, ws).await);
    let (ada, grace) = (contact(store, ws).await, contact(store, ws).await);
    let e1 = ok(
        store.insert_enrollment(&new_enrollment(&s1, ada.id)).await,
        "insert",
    );
    let mut finished = new_enrollment(&s1, grace.id);
    finished.state = EnrollmentState::NoResponse;
    let e2 = ok(store.insert_enrollment(&finished).await, "insert");
    let e3 = ok(
        store.insert_enrollment(&new_enrollment(&s2, ada.id)).await,
        "insert",
    );
    let filter = |contact_id, sequence_id, running_only| EnrollmentFilter {
        contact_id,
        sequence_id,
        running_only,
    };
    for (what, f, expected) in [
        (
            "contact",
            filter(Some(ada.id), None, false),
            vec![e1.id, e3.id],
        ),
        (
            "sequence",
            filter(None, Some(s1.id), false),
            vec![e1.id, e2.id],
        ),
        ("running_only", filter(None, None, true), vec![e1.id, e3.id]),
        (
            "sequence and running",
            filter(None, Some(s1.id), true),
            vec![e1.id],
        ),
        (
            "contact and sequence",
            filter(Some(grace.id), Some(s2.id), false),
            vec![],
        ),
    ] {
        let listed = ok(
            store.list_enrollments(ws, &f, Page::first(10)).await,
            "list_enrollments",
        );
        assert_eq!(
            ids(&listed, |e| e.id),
            sorted(expected),
            "list_enrollments by {what}, ascending by id"
        );
    }
    let everything = EnrollmentFilter::default();
    assert_pagination(
        "list_enrollments",
        vec![e1.id, e2.id, e3.id],
        |e: &Enrollment| e.id,
        |page| store.list_enrollments(ws, &everything, page),
    )
    .await;
}
