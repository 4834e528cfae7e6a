//! The outreach contract on PostgreSQL, where the shared suite cannot look: the 0002
//! migration on a database that only had 0001, races on the enrollment change-set and
//! the event-with-jobs append, and the rollback of a change-set that fails half-way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Activity, ActivityKind, Channel, Contact, Enrollment, EnrollmentState, Job, NewContact,
    NewEvent, OutboxMessage, OutboxStatus, Sequence, SequenceStep, StepDelay, Template,
};
use crm_core::store::{
    Claim, ContactStore, EnrollmentChange, EventStore, JobStore, OutboxStore, Page, Scope,
    SentRecord, SequenceStore,
};
use crm_core::{StoreError, StoreErrorKind};
use crm_store_postgres::testing::{database_url, fresh_schema_name, fresh_store};
use crm_store_postgres::{MIGRATOR, PostgresConfig, PostgresStore};

const TASKS: usize = 16;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn contact(ws: WorkspaceId) -> Contact {
    Contact::create(
        ws,
        NewContact {
            first_name: "Ada".into(),
            email: Some("ada@example.com".into()),
            phone: Some("+4915112345678".into()),
            ..Default::default()
        },
        t0(),
    )
    .unwrap()
}

fn sequence(ws: WorkspaceId, name: &str) -> Sequence {
    let step = SequenceStep {
        channel: Channel::Email,
        template: Template {
            subject: None,
            body: "Hi".into(),
        },
        delay: StepDelay::Hours(1),
        window: None,
        requires_approval: false,
        options: Default::default(),
    };
    Sequence::create(ws, name, vec![step.clone(), step], t0()).unwrap()
}

/// A contact enrolled (version 1) in a new two-step sequence.
async fn enrolled(store: &PostgresStore, ws: WorkspaceId) -> (Contact, Enrollment) {
    let c = store.insert_contact(&contact(ws)).await.unwrap();
    let seq = store.insert_sequence(&sequence(ws, "Intro")).await.unwrap();
    let e = Enrollment::new(ws, seq.id, 1, c.id, t0());
    (c, store.insert_enrollment(&e).await.unwrap())
}

/// The change that renders step 0: the enrollment waits for the send.
fn render_step(e: &Enrollment, c: &Contact, key: &str) -> EnrollmentChange {
    let mut next = e.clone();
    next.state = EnrollmentState::StepPending;
    next.next_run_at = None;
    next.updated_at = t0() + Duration::minutes(1);
    let message = OutboxMessage::new(
        e.workspace_id,
        Channel::Email,
        "ada@example.com",
        "Hi",
        key,
        t0(),
    )
    .unwrap()
    .with_contact(c.id)
    .with_enrollment(e.id, 0);
    EnrollmentChange {
        enrollment: next,
        enqueue: Some(message),
        cancel_queued: None,
        now: t0() + Duration::minutes(1),
    }
}

async fn outbox(store: &PostgresStore, ws: WorkspaceId) -> Vec<OutboxMessage> {
    store.list_outbox(ws, None, Page::first(100)).await.unwrap()
}

#[tokio::test]
async fn migration_0002_applies_on_a_0001_database_and_backfills_versions() {
    let config = PostgresConfig::default()
        .with_schema(fresh_schema_name())
        .with_max_connections(4);
    let store = PostgresStore::connect(&database_url(), config)
        .await
        .unwrap();
    MIGRATOR.run_to(1, store.pool()).await.unwrap();

    // A sequence already at version 3, written as the 0001 store wrote it.
    let ws = WorkspaceId::new();
    let mut seq = sequence(ws, "Before 0002");
    seq.version = 3;
    sqlx::query(
        "INSERT INTO sequences (workspace_id, id, name, steps, in_flight_policy, created_at,
             updated_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ws.as_uuid())
    .bind(seq.id.as_uuid())
    .bind(seq.name.clone())
    .bind(serde_json::to_value(&seq.steps).unwrap())
    .bind(seq.in_flight_policy.as_str())
    .bind(seq.created_at)
    .bind(seq.updated_at)
    .bind(seq.version)
    .execute(store.pool())
    .await
    .unwrap();
    // And a contact with a phone, which the new E.164 check must accept, written as
    // the 0001 store wrote it (0007 adds and backfills `email_key`).
    let c = contact(ws);
    sqlx::query(
        "INSERT INTO contacts (workspace_id, id, first_name, last_name, email, phone,
             custom_fields, created_at, updated_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(ws.as_uuid())
    .bind(c.id.as_uuid())
    .bind(c.first_name.clone())
    .bind(c.last_name.clone())
    .bind(c.email.as_ref().map(|e| e.as_str().to_owned()))
    .bind(c.phone.as_ref().map(|p| p.as_str().to_owned()))
    .bind(serde_json::json!({}))
    .bind(c.created_at)
    .bind(c.updated_at)
    .bind(c.version)
    .execute(store.pool())
    .await
    .unwrap();

    store.migrate().await.unwrap();
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    // Every embedded migration applies on top of 0001 (0002 and any later ones).
    assert_eq!(applied, i64::try_from(MIGRATOR.iter().count()).unwrap());

    assert_eq!(
        store.get_sequence_version(ws, seq.id, 3).await.unwrap(),
        seq
    );
    let err = store.get_sequence_version(ws, seq.id, 2).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound);
    let mut next = seq.clone();
    next.name = "After 0002".into();
    next.updated_at = t0() + Duration::hours(1);
    let v4 = store.update_sequence(&next).await.unwrap();
    assert_eq!(v4.version, 4);
    assert_eq!(
        store.get_sequence_version(ws, seq.id, 3).await.unwrap(),
        seq
    );
    assert_eq!(store.get_sequence_version(ws, seq.id, 4).await.unwrap(), v4);

    let found = store
        .find_contact_by_address(ws, Channel::Sms, "+49 151 1234-5678")
        .await
        .unwrap();
    assert_eq!(found, Some(c.clone()));
    let email = c.email.clone().unwrap();
    let by_email = store.find_contact_by_email(ws, &email).await.unwrap();
    assert_eq!(by_email, Some(c), "0007 backfilled the email key");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
    )
    .bind(store.schema())
    .fetch_all(store.pool())
    .await
    .unwrap();
    for name in [
        "approval_items_streak_idx",
        "contacts_instagram_idx",
        "contacts_linkedin_idx",
        "contacts_phone_idx",
        "outbox_messages_enrollment_idx",
        "outbox_messages_provider_idx",
        "sequence_versions_pkey",
    ] {
        assert!(indexes.iter().any(|i| i == name), "{name} in {indexes:?}");
    }
    // Rerunning is a no-op.
    store.migrate().await.unwrap();
}

#[tokio::test]
async fn stored_phones_must_be_e164() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let c = store.insert_contact(&contact(ws)).await.unwrap();
    let err = sqlx::query("UPDATE contacts SET phone = '0151 1234 5678' WHERE id = $1")
        .bind(c.id.as_uuid())
        .execute(store.pool())
        .await
        .unwrap_err();
    let db = err.as_database_error().unwrap();
    assert_eq!(db.constraint(), Some("contacts_phone_e164_check"));
}

#[tokio::test]
async fn advance_enrollment_has_one_winner_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let (c, e) = enrolled(&store, ws).await;
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        // Every caller read version 1 and renders its own message (its own key), so a
        // loser that left its message behind would show up in the outbox.
        let change = render_step(&e, &c, &format!("step-0-{i}"));
        tasks.push(tokio::spawn(async move {
            store.advance_enrollment(&change).await.map(|a| (i, a))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(won) => winners.push(won),
            Err(StoreError::VersionConflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (1, 2)),
            Err(other) => panic!("expected a version conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let (i, advanced) = &winners[0];
    assert_eq!(advanced.enrollment.version, 2);
    assert_eq!(advanced.enrollment.state, EnrollmentState::StepPending);
    let enqueued = advanced.enqueued.as_ref().unwrap();
    assert!(enqueued.created);
    let stored = outbox(&store, ws).await;
    assert_eq!(stored, vec![enqueued.value.clone()]);
    assert_eq!(stored[0].idempotency_key, format!("step-0-{i}"));
    assert_eq!(
        store.get_enrollment(ws, e.id).await.unwrap(),
        advanced.enrollment
    );
}

#[tokio::test]
async fn a_change_that_fails_half_way_leaves_nothing() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let (c, e) = enrolled(&store, ws).await;
    // The message names a contact the workspace does not have: the enqueue, the last
    // statement, fails after the compare-and-set matched.
    let mut change = render_step(&e, &c, "step-0");
    if let Some(m) = change.enqueue.as_mut() {
        m.contact_id = Some(crm_core::ids::ContactId::new());
    }
    let err = store.advance_enrollment(&change).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidReference, "{err:?}");
    assert_eq!(store.get_enrollment(ws, e.id).await.unwrap(), e);
    assert!(outbox(&store, ws).await.is_empty());
    // The same change with a good message goes through.
    let advanced = store
        .advance_enrollment(&render_step(&e, &c, "step-0"))
        .await
        .unwrap();
    assert_eq!(advanced.enrollment.version, 2);
}

/// The send path and a stop race for the same enrollment: whichever writes first wins
/// it, the send is recorded either way, and neither call deadlocks or fails for any
/// other reason.
#[tokio::test]
async fn mark_sent_and_a_stop_race_for_the_enrollment() {
    let store = Arc::new(fresh_store().await);
    for round in 0..8 {
        let ws = WorkspaceId::new();
        let (c, e) = enrolled(&store, ws).await;
        let advanced = store
            .advance_enrollment(&render_step(&e, &c, "step-0"))
            .await
            .unwrap();
        let waiting = advanced.enrollment;
        let m = advanced.enqueued.unwrap().value;
        // A second queued message of the enrollment, for the stop to cancel.
        let queued =
            OutboxMessage::new(ws, Channel::Email, "ada@example.com", "Hi", "step-1", t0())
                .unwrap()
                .with_enrollment(e.id, 1)
                .with_not_before(t0() + Duration::days(3));
        let queued = store.enqueue_outbox(&queued).await.unwrap().value;
        let claim = Claim::new(Scope::Workspace(ws), "w", t0(), Duration::minutes(5), 10);
        let claimed = store.claim_outbox(&claim).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let token = claimed[0].lease.as_ref().unwrap().token;

        let mut sent_state = waiting.clone();
        sent_state.state = EnrollmentState::StepSent;
        sent_state.current_step = 1;
        sent_state.next_run_at = Some(t0() + Duration::days(3));
        let sent = SentRecord {
            provider_message_id: Some(format!("p-{round}")),
            sent_at: t0(),
            activity: Activity::for_contact(ws, c.id, ActivityKind::MessageSent, "sent", t0())
                .unwrap()
                .with_outbox_message(m.id),
            enrollment: Some(sent_state.clone()),
        };
        let mut replied = waiting.clone();
        replied.state = EnrollmentState::Replied;
        let stop = EnrollmentChange {
            enrollment: replied.clone(),
            enqueue: None,
            cancel_queued: Some("replied".into()),
            now: t0() + Duration::minutes(2),
        };
        let (send, stopped) = {
            let (a, b) = (Arc::clone(&store), Arc::clone(&store));
            let send =
                tokio::spawn(async move { a.mark_outbox_sent(ws, m.id, token, &sent).await });
            let stopped = tokio::spawn(async move { b.advance_enrollment(&stop).await });
            (send.await.unwrap(), stopped.await.unwrap())
        };
        let sent_message = send.unwrap();
        assert_eq!(sent_message.status, OutboxStatus::Sent);
        let now = store.get_enrollment(ws, e.id).await.unwrap();
        assert_eq!(now.version, waiting.version + 1, "exactly one writer won");
        match stopped {
            Ok(advanced) => {
                assert_eq!(now.state, EnrollmentState::Replied);
                assert_eq!(advanced.cancelled, vec![queued.id]);
            }
            Err(err) => {
                assert_eq!(err.kind(), StoreErrorKind::VersionConflict, "{err:?}");
                assert_eq!(now.state, EnrollmentState::StepSent);
                let left = store.get_outbox(ws, queued.id).await.unwrap();
                assert_eq!(left.status, OutboxStatus::Pending);
            }
        }
    }
}

#[tokio::test]
async fn append_event_with_jobs_enqueues_once_under_concurrency() {
    let store = Arc::new(fresh_store().await);
    let ws = WorkspaceId::new();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let event = NewEvent::new(
                ws,
                "reply.received",
                "c",
                serde_json::json!({}),
                "reply-1",
                t0(),
            )
            .unwrap();
            // Each caller brings its own job keys: a non-creator that enqueued anyway
            // would add jobs.
            let jobs: Vec<Job> = (0..3)
                .map(|j| {
                    Job::new(ws, "notify", serde_json::json!({ "j": j }), t0())
                        .unwrap()
                        .with_idempotency_key(format!("task-{i}-job-{j}"))
                })
                .collect();
            store.append_event_with_jobs(&event, &jobs).await.unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut events = HashSet::new();
    for t in tasks {
        let appended = t.await.unwrap();
        events.insert(appended.value.id);
        if appended.created {
            created.push(appended.value);
        }
    }
    assert_eq!(created.len(), 1);
    assert_eq!(events.len(), 1);
    let jobs = store.list_jobs(ws, None, Page::first(100)).await.unwrap();
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let prefix: HashSet<_> = jobs
        .iter()
        .map(|j| {
            let key = j.idempotency_key.as_deref().unwrap();
            key.split("-job-").next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(prefix.len(), 1, "the jobs come from one caller");
}
