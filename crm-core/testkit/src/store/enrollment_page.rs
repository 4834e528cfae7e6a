//! Cases for the runner's page-at-a-time store calls:
//! [`advance_enrollments`](crm_core::store::SequenceStore::advance_enrollments) (a page
//! of change-sets, each on its own),
//! [`get_contacts`](crm_core::store::ContactStore::get_contacts) and
//! [`count_day_touches`](crm_core::store::TouchStore::count_day_touches).

use std::collections::BTreeSet;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::events;
use crm_core::ids::{ContactId, EnrollmentId, WorkspaceId};
use crm_core::model::{ActivityKind, Channel, Contact, Enrollment, EnrollmentState, OutboxStatus};
use crm_core::store::{
    ActivityFilter, ContactDay, EnrollmentAdvanced, EnrollmentChange, Inserted, Scope,
};

use super::fixtures::{
    activity, at, change, contact, created, enroll, enrolled_message, expect_err, new_message, ok,
    sequence,
};

/// The row `change` stores when it applies.
fn stored(change: &EnrollmentChange) -> Enrollment {
    Enrollment {
        version: change.enrollment.version + 1,
        updated_at: change.now,
        ..change.enrollment.clone()
    }
}

fn applied(
    result: &Result<EnrollmentAdvanced, crm_core::StoreError>,
    what: &str,
) -> EnrollmentAdvanced {
    match result {
        Ok(advanced) => advanced.clone(),
        Err(err) => panic!("{what}: unexpected error {err:?}"),
    }
}

fn refused(result: &Result<EnrollmentAdvanced, crm_core::StoreError>, kind: Kind, what: &str) {
    match result {
        Ok(advanced) => panic!("{what}: expected {kind:?}, got Ok({advanced:?})"),
        Err(err) => assert_eq!(err.kind(), kind, "{what}: {err:?}"),
    }
}

/// A page of change-sets applies each on its own, in order: a new message, a chain of
/// two changes of one enrollment, a taken key, a cancellation; a stale, an unknown, an
/// invalid change and one whose message names no contact are refused alone.
pub async fn advance_enrollments_applies_each_change_on_its_own(store: &DynStore) {
    let ws = WorkspaceId::new();
    let seq = sequence(store, ws).await;
    let active = |at_| enroll(store, &seq, EnrollmentState::Active, Some(at_));
    let fresh = active(at(0)).await;
    let stale = active(at(0)).await;
    let paused = enroll(store, &seq, EnrollmentState::Paused, Some(at(0))).await;
    let taken = active(at(0)).await;
    let invalid = active(at(0)).await;
    let orphan = active(at(0)).await;
    let replying = enroll(store, &seq, EnrollmentState::StepPending, Some(at(0))).await;
    let queued = created(
        store.enqueue_outbox(&enrolled_message(&replying, 0)).await,
        "enqueue the step of the replying enrollment",
    );
    let existing = created(
        store.enqueue_outbox(&enrolled_message(&taken, 0)).await,
        "a message holding the key",
    );

    let now = at(5);
    let step = |e: &Enrollment| {
        let mut c = change(e, EnrollmentState::StepPending, Some(at(65)), now);
        let message = enrolled_message(e, 0);
        c.enrollment.step_message_id = Some(message.id);
        c.enqueue = Some(message);
        c
    };
    let first = step(&fresh);
    let mut outdated = step(&stale);
    outdated.enrollment.version += 1;
    let resume = change(&paused, EnrollmentState::Active, Some(now), now);
    let then_step = step(&stored(&resume));
    let mut same_key = step(&taken);
    if let Some(m) = same_key.enqueue.as_mut() {
        m.idempotency_key = existing.idempotency_key.clone();
    }
    let mut unknown = change(&fresh, EnrollmentState::Active, None, now);
    unknown.enrollment.id = EnrollmentId::new();
    let mut both = step(&invalid);
    both.cancel_queued = Some("both".into());
    let mut no_contact = step(&orphan);
    if let Some(m) = no_contact.enqueue.as_mut() {
        *m = m.clone().with_contact(ContactId::new());
    }
    let mut reply = change(&replying, EnrollmentState::Replied, None, now);
    reply.cancel_queued = Some("contact replied".into());

    let page = vec![
        first.clone(),
        outdated,
        resume.clone(),
        same_key.clone(),
        unknown,
        both,
        then_step.clone(),
        no_contact,
        reply.clone(),
    ];
    let results = ok(
        store.advance_enrollments(&page).await,
        "advance_enrollments",
    );
    assert_eq!(results.len(), page.len(), "one result per change, in order");

    let done = applied(&results[0], "a new step");
    assert_eq!(done.enrollment, stored(&first), "stored with version + 1");
    assert_eq!(
        done.enqueued,
        first.enqueue.clone().map(|value| Inserted {
            value,
            created: true
        }),
        "its message is enqueued with it"
    );
    refused(&results[1], Kind::VersionConflict, "a stale change");
    assert_eq!(
        ok(store.get_enrollment(ws, stale.id).await, "get"),
        stale,
        "a refused change leaves its enrollment"
    );
    assert_eq!(
        applied(&results[2], "resume").enrollment,
        stored(&resume),
        "the first change of a chain"
    );
    let reused = applied(&results[3], "a taken key");
    assert_eq!(
        reused.enqueued,
        Some(Inserted {
            value: existing.clone(),
            created: false
        }),
        "a taken key answers the message holding it"
    );
    refused(&results[4], Kind::NotFound, "an unknown enrollment");
    refused(&results[5], Kind::Invalid, "enqueue and cancel together");
    assert_eq!(
        applied(&results[6], "the chained step").enrollment,
        stored(&then_step),
        "a later change of the same enrollment applies on the earlier one's version"
    );
    refused(
        &results[7],
        Kind::InvalidReference,
        "a message to no contact",
    );
    assert_eq!(
        ok(store.get_enrollment(ws, orphan.id).await, "get"),
        orphan,
        "the change of a refused message is not applied either"
    );
    let replied = applied(&results[8], "reply");
    assert_eq!(
        replied.cancelled,
        vec![queued.id],
        "its queued step is cancelled"
    );
    assert_eq!(
        ok(store.get_outbox(ws, queued.id).await, "get").status,
        OutboxStatus::Cancelled
    );

    // Every message of the page: the two new steps, nothing for refused changes.
    for (c, expect) in [(&first, true), (&then_step, true), (&same_key, false)] {
        let id = c.enqueue.as_ref().map(|m| m.id).expect("a message");
        assert_eq!(
            store.get_outbox(ws, id).await.is_ok(),
            expect,
            "message {id} stored: {expect}"
        );
    }

    // The events are those of each applied change, as advance_enrollment appends them.
    let mut expected = BTreeSet::new();
    for (c, before) in [(&resume, &paused), (&reply, &replying)] {
        for e in ok(
            events::enrollment_transition(before, &stored(c)).map_err(Into::into),
            "events",
        ) {
            expected.insert(e.idempotency_key);
        }
    }
    let listed = ok(
        store.list_events(Scope::Workspace(ws), 0, 1000).await,
        "list_events",
    );
    let keys: BTreeSet<String> = listed
        .iter()
        .filter(|e| e.kind.starts_with("enrollment.") && e.kind != "enrollment.enrolled")
        .map(|e| e.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys, expected,
        "the transition events of the applied changes"
    );
    assert!(
        listed.iter().any(|e| e.subject == queued.id.to_string()),
        "the cancelled message's event is appended"
    );
    assert!(
        ok(store.advance_enrollments(&[]).await, "empty page").is_empty(),
        "no changes, no results"
    );
}

/// The contacts of a list of ids: one answer per id, in order, repeats included; an
/// unknown id and another workspace's contact answer `None`.
pub async fn get_contacts_answers_each_id_in_order(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let bob = contact(store, ws).await;
    let foreign = contact(store, WorkspaceId::new()).await;
    let found = ok(
        store
            .get_contacts(ws, &[bob.id, ContactId::new(), ada.id, foreign.id, bob.id])
            .await,
        "get_contacts",
    );
    assert_eq!(
        found,
        vec![Some(bob.clone()), None, Some(ada), None, Some(bob)],
        "one answer per id, in order"
    );
    assert!(
        ok(store.get_contacts(ws, &[]).await, "empty").is_empty(),
        "no ids, no answers"
    );
}

/// A day's touches are its sent messages since the day's start plus its queued ones
/// due before its end, per entry, exactly as the single counts answer them.
pub async fn count_day_touches_matches_the_single_counts(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let bob = contact(store, ws).await;
    let sent = |who: &Contact, minutes: i64| {
        let a = activity(ws, who.id, ActivityKind::MessageSent, at(minutes))
            .with_channel(Channel::Email);
        async move { ok(store.record_activity(&a).await, "record_activity") }
    };
    sent(&ada, -30).await;
    sent(&ada, 0).await;
    sent(&ada, 30).await;
    sent(&bob, 10).await;
    let note = activity(ws, ada.id, ActivityKind::Note, at(20));
    ok(store.record_activity(&note).await, "a note is no touch");
    for due in [-60, 60, 24 * 60] {
        let m = new_message(ws)
            .with_contact(ada.id)
            .with_not_before(at(due));
        created(store.enqueue_outbox(&m).await, "queue");
    }
    let mut task = new_message(ws).with_contact(ada.id);
    task.channel = Channel::ManualTask;
    created(
        store.enqueue_outbox(&task).await,
        "a manual task is no touch",
    );

    let day = |who: &Contact, since: i64, before: i64| ContactDay {
        contact_id: who.id,
        since: at(since),
        before: at(before),
    };
    let days = [
        day(&ada, 0, 24 * 60),
        day(&bob, 0, 24 * 60),
        day(&ada, -60, 0),
        ContactDay {
            contact_id: ContactId::new(),
            since: at(0),
            before: at(60),
        },
        day(&ada, 0, 24 * 60),
    ];
    let counts = ok(
        store.count_day_touches(ws, &days).await,
        "count_day_touches",
    );
    let mut single = Vec::new();
    for d in &days {
        let filter = ActivityFilter {
            contact_id: Some(d.contact_id),
            kinds: vec![ActivityKind::MessageSent],
            since: Some(d.since),
            ..ActivityFilter::default()
        };
        let sent = ok(
            store.count_activities(ws, &filter).await,
            "count_activities",
        );
        let queued = ok(
            store.count_queued_touches(ws, d.contact_id, d.before).await,
            "count_queued_touches",
        );
        single.push(sent + queued);
    }
    assert_eq!(counts, single, "each entry as the single counts answer it");
    assert_eq!(
        counts,
        vec![2 + 2, 1, 3 + 1, 0, 4],
        "sent since the start (inclusive) plus queued before the end (exclusive)"
    );
    let elsewhere = ok(
        store
            .count_day_touches(WorkspaceId::new(), &days[..1])
            .await,
        "another workspace",
    );
    assert_eq!(elsewhere, vec![0], "another workspace sees no touches");
    assert!(
        ok(store.count_day_touches(ws, &[]).await, "empty").is_empty(),
        "no entries, no answers"
    );
    let too_many = vec![days[0]; 1001];
    expect_err(
        store.count_day_touches(ws, &too_many).await,
        Kind::Invalid,
        "more than 1000 entries",
    );
}
