//! The runner's tick: start, windows, rendering, touch limit, crash re-runs, leases.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use crate::store::fixtures::{created, existing, ok};
use crm_core::DynStore;
use crm_core::model::{
    Channel, Enrollment, EnrollmentState, OutboxMessage, OutboxStatus, StepDelay,
};
use crm_core::outreach::enrollment::step_idempotency_key;
use crm_core::outreach::runner::{RUNNER_LEASE, Runner, RunnerConfig, StaticMergeValues};
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::store::{MAX_CLOCK_SKEW, Page};

use super::world::{World, after, base_time, email, office_hours, reply_wait, step, utc, within};

/// The key the runner uses for `step` of an enrollment it read at `version`.
fn key_at(e: &Enrollment, version: i64, step: i32) -> String {
    step_idempotency_key(
        &Enrollment {
            version,
            ..e.clone()
        },
        step,
    )
}

/// A tick starts the enrollment, renders step 0 with contact and account fields and
/// queues exactly one message; each later step gets exactly one message too.
pub async fn tick_starts_renders_and_enqueues_each_step_once(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    let acme = w.account().await;
    let ada = w.colleague(acme.id).await;
    let mut follow_up = after(
        email("Re: {{company}}", "Following up, {{first_name}}."),
        StepDelay::Hours(24),
    );
    follow_up.requires_approval = true;
    let seq = w
        .sequence(vec![
            email("Hello {{first_name}}", "Hi {{full_name}} at {{company}}!"),
            follow_up,
        ])
        .await;
    let enrolled = w.enroll(&ada, &seq, now).await;
    let runner = w.runner("runner-a");

    let report = w.tick(&runner, now).await.expect("tick");
    let t = report.tenant(w.ws).expect("the workspace was worked on");
    assert_eq!((t.started, t.enqueued, t.failed.len()), (1, 1, 0), "{t:?}");
    let e = w.enrollment(enrolled.id).await;
    assert_eq!(
        (e.state, e.current_step, e.next_run_at, e.version),
        (
            EnrollmentState::StepPending,
            0,
            Some(now + runner.config().step_recheck),
            3
        ),
        "started (v2), then step 0 queued (v3), its message looked at again later"
    );
    let messages = w.outbox().await;
    assert_eq!(messages.len(), 1, "one message for step 0");
    let m = &messages[0];
    assert_eq!(
        e.step_message_id,
        Some(m.id),
        "the enrollment knows its message"
    );
    assert_eq!(m.subject.as_deref(), Some("Hello Ada"));
    assert_eq!(m.body, "Hi Ada Lovelace at Acme!");
    assert_eq!(m.recipient, ada.email.as_ref().expect("email").to_string());
    assert_eq!(
        (m.enrollment_id, m.step_index, m.contact_id),
        (Some(e.id), Some(0), Some(ada.id))
    );
    assert_eq!(
        m.idempotency_key,
        key_at(&e, 2, 0),
        "key of (enrollment, step, version read)"
    );
    assert_eq!(m.status, OutboxStatus::Pending);
    assert_eq!(m.not_before, now);
    assert_eq!(m.metadata["requires_approval"], json!(false));
    assert_eq!(m.metadata["template_key"], json!(format!("{}:1:0", seq.id)));
    assert_eq!(m.metadata["sequence_id"], json!(seq.id));

    let again = w.tick(&runner, now).await.expect("tick");
    assert_eq!(
        again.enqueued(),
        0,
        "nothing is due while the step is queued"
    );
    assert_eq!(w.outbox().await.len(), 1);

    let sent_at = now + Duration::minutes(1);
    assert_eq!(w.dispatch_all(sent_at).await.len(), 1);
    let e = w.enrollment(e.id).await;
    assert_eq!((e.state, e.current_step), (EnrollmentState::StepSent, 1));
    assert_eq!(e.next_run_at, Some(sent_at + Duration::hours(24)));
    assert_eq!(
        w.tick(&runner, sent_at + Duration::hours(23))
            .await
            .expect("tick")
            .enqueued(),
        0
    );
    let due = sent_at + Duration::hours(24);
    assert_eq!(
        w.tick(&runner, due).await.expect("tick").enqueued(),
        1,
        "step 1 when due"
    );
    let messages = w.outbox().await;
    assert_eq!(messages.len(), 2);
    let m1 = messages
        .iter()
        .find(|m| m.step_index == Some(1))
        .expect("step 1 message");
    assert_eq!(m1.subject.as_deref(), Some("Re: Acme"));
    assert_eq!(
        m1.metadata["requires_approval"],
        json!(true),
        "the step's approval flag"
    );
    assert_ne!(m1.idempotency_key, messages[0].idempotency_key);

    w.dispatch_all(due).await;
    let e = w.enrollment(e.id).await;
    assert_eq!((e.state, e.current_step), (EnrollmentState::StepSent, 2));
    let end = due + reply_wait();
    let report = w.tick(&runner, end).await.expect("tick");
    assert_eq!(report.tenant(w.ws).map(|t| t.exhausted), Some(1));
    let done = w.enrollment(e.id).await;
    assert_eq!(done.state, EnrollmentState::Completed);
    assert_eq!(done.end_reason.as_deref(), Some("all_steps_done"));
    assert_eq!(done.ended_at, Some(end));
    assert_eq!(w.outbox().await.len(), 2, "exactly one message per step");
}

/// Outside the send window the step waits for the exact next opening, in the contact's
/// zone or the workspace's default.
pub async fn tick_postpones_outside_the_window(store: Arc<DynStore>) {
    let settings = WorkspaceSettings::default().with_default_time_zone(chrono_tz::Europe::Berlin);
    let w = World::new(&store, settings);
    let now = base_time(); // Monday 09:00 UTC = 04:00 in New York
    let seq = w
        .sequence(vec![within(
            email("Hi", "Hello {{first_name}}"),
            office_hours(),
        )])
        .await;
    let ny = w
        .contact_with(|c| c.time_zone = Some("America/New_York".into()))
        .await;
    let e = w.enroll(&ny, &seq, now).await;
    let runner = w.runner("runner-a");
    let report = w.tick(&runner, now).await.expect("tick");
    assert_eq!(report.enqueued(), 0, "04:00 in New York is outside 09-17");
    let opening = utc(2026, 1, 5, 14, 0); // 09:00 EST
    let e = w.enrollment(e.id).await;
    assert_eq!(
        (e.state, e.next_run_at),
        (EnrollmentState::Active, Some(opening))
    );
    assert_eq!(
        w.tick(&runner, opening - Duration::minutes(1))
            .await
            .expect("tick")
            .enqueued(),
        0
    );
    assert_eq!(w.tick(&runner, opening).await.expect("tick").enqueued(), 1);

    // A due step on Friday evening (Berlin, the workspace default) waits for Monday.
    let local = w.contact_with(|c| c.time_zone = None).await;
    let friday_evening = utc(2026, 1, 9, 17, 30); // 18:30 in Berlin
    let due = w
        .insert_enrollment(&local, &seq, EnrollmentState::Active, Some(friday_evening))
        .await;
    let report = w.tick(&runner, friday_evening).await.expect("tick");
    assert_eq!(report.tenant(w.ws).map(|t| t.postponed), Some(1));
    let due = w.enrollment(due.id).await;
    assert_eq!(
        due.state,
        EnrollmentState::Active,
        "postponed, never dropped"
    );
    assert_eq!(
        due.next_run_at,
        Some(utc(2026, 1, 12, 8, 0)),
        "Monday 09:00 in Berlin"
    );
    assert!(w.messages_of(due.id).await.is_empty());
}

/// A missing merge field never becomes a blank: the enrollment is paused with an
/// audit entry naming the field, and nothing is queued.
pub async fn tick_missing_merge_field_parks_the_enrollment(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    let seq = w.sequence(vec![email("Hi", "Dear {{title}}, hello")]).await;
    let ada = w.contact().await; // no title
    let e = w.enroll(&ada, &seq, now).await;
    let runner = w.runner("runner-a");
    let report = w.tick(&runner, now).await.expect("tick");
    let t = report.tenant(w.ws).expect("worked on");
    assert_eq!((t.enqueued, t.parked, t.failed.len()), (0, 1, 0), "{t:?}");
    assert!(w.outbox().await.is_empty(), "no message with a blank field");
    let e = w.enrollment(e.id).await;
    assert_eq!(
        (e.state, e.next_run_at),
        (EnrollmentState::Paused, None),
        "paused until a person resumes it"
    );
    let subject = e.id.to_string();
    let audit = ok(
        store
            .list_audit(w.ws, Some(&subject), Page::first(10))
            .await,
        "list_audit",
    );
    assert_eq!(audit.len(), 1, "one audit entry about the enrollment");
    assert_eq!(audit[0].action, "outreach.render_failed");
    assert_eq!(audit[0].details["field"], json!("title"));
    assert_eq!(audit[0].details["error"], json!("missing_field"));
    assert_eq!(
        w.tick(&runner, now + Duration::hours(1))
            .await
            .expect("tick")
            .enqueued(),
        0
    );
    assert_eq!(
        ok(
            store
                .list_audit(w.ws, Some(&subject), Page::first(10))
                .await,
            "list"
        )
        .len(),
        1
    );

    // Host-provided `extra.*` values render when the runner is given them.
    let booking = w
        .sequence(vec![step(Channel::CalCom, "Book: {{extra.booking_link}}")])
        .await;
    let grace = w.contact().await;
    let e = w.enroll(&grace, &booking, now).await;
    let values = StaticMergeValues(BTreeMap::from([(
        "booking_link".to_owned(),
        "https://cal.example/ada".to_owned(),
    )]));
    let with_values = w.runner("runner-b").with_merge_values(Arc::new(values));
    assert_eq!(w.tick(&with_values, now).await.expect("tick").enqueued(), 1);
    assert_eq!(
        w.messages_of(e.id).await[0].body,
        "Book: https://cal.example/ada"
    );
}

/// Re-running a tick, or finding the message of a crashed run already queued, never
/// makes a second message.
pub async fn tick_rerun_after_crash_creates_no_duplicate(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    let seq = w.sequence(vec![email("Hi", "Hello {{first_name}}")]).await;
    let ada = w.contact().await;
    w.enroll(&ada, &seq, now).await;
    let runner = w.runner("runner-a");
    w.tick(&runner, now).await.expect("tick");
    w.tick(&runner, now).await.expect("the same tick again");
    assert_eq!(
        w.outbox().await.len(),
        1,
        "the same tick twice queues one message"
    );

    // A crashed run queued the message but its enrollment change was lost.
    let grace = w.contact().await;
    let e = w
        .insert_enrollment(&grace, &seq, EnrollmentState::Active, Some(now))
        .await;
    let key = step_idempotency_key(&e, 0);
    let left = OutboxMessage::new(
        w.ws,
        seq.steps[0].channel,
        "grace@example.com",
        "Hello Grace",
        key.clone(),
        now,
    )
    .expect("message")
    .with_enrollment(e.id, 0)
    .with_contact(grace.id);
    let left = created(
        store.enqueue_outbox(&left).await,
        "the crashed run's message",
    );
    let report = w.tick(&runner, now).await.expect("tick after the crash");
    let t = report.tenant(w.ws).expect("worked on");
    assert_eq!(
        (t.enqueued, t.reused),
        (0, 1),
        "the existing message is reused: {t:?}"
    );
    assert_eq!(
        w.messages_of(e.id).await,
        vec![left.clone()],
        "no duplicate, unchanged"
    );
    assert_eq!(w.enrollment(e.id).await.state, EnrollmentState::StepPending);
    existing(store.enqueue_outbox(&left).await, "the key is still taken");
}

/// At the daily touch limit the step moves to the contact's next local day's window.
pub async fn tick_touch_limit_postpones_to_the_next_local_day(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time(); // Monday 10:00 in Berlin
    let seq = w
        .sequence(vec![within(email("Hi", "Hello"), office_hours())])
        .await;
    let ada = w.contact().await;
    let e = w.enroll(&ada, &seq, now).await;
    w.touch(&ada, now - Duration::minutes(30)).await;
    w.touch(&ada, now - Duration::minutes(20)).await;
    let report = w.tick(&w.runner("runner-a"), now).await.expect("tick");
    assert_eq!(report.enqueued(), 0);
    let e = w.enrollment(e.id).await;
    assert_eq!(e.state, EnrollmentState::Active);
    assert_eq!(
        e.next_run_at,
        Some(utc(2026, 1, 6, 8, 0)),
        "Tuesday 09:00 in Berlin"
    );

    let config = RunnerConfig::default()
        .with_holder("no-limit")
        .with_touch_limit(false);
    let relaxed = Runner::new(store.clone(), w.time(), w.provider(), config).expect("runner");
    let grace = w.contact().await;
    w.enroll(&grace, &seq, now).await;
    w.touch(&grace, now - Duration::minutes(30)).await;
    w.touch(&grace, now - Duration::minutes(20)).await;
    assert_eq!(
        w.tick(&relaxed, now).await.expect("tick").enqueued(),
        1,
        "limit off: sent"
    );
}

/// A workspace whose lease another runner holds is skipped, and left unchanged.
pub async fn tick_skips_a_workspace_leased_elsewhere(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    let seq = w.sequence(vec![email("Hi", "Hello")]).await;
    let ada = w.contact().await;
    let e = w.enroll(&ada, &seq, now).await;
    let ttl = Duration::minutes(5);
    ok(
        store
            .try_acquire_lease(w.ws, RUNNER_LEASE, "other-process", ttl, now)
            .await,
        "lease",
    )
    .expect("the lease is free");
    let runner = w.runner("runner-a");
    let report = w.tick(&runner, now).await.expect("tick");
    assert_eq!(
        report.skipped,
        vec![w.ws],
        "skipped while another runner holds it"
    );
    assert_eq!(w.enrollment(e.id).await, e, "untouched");
    let expired = now + ttl;
    let report = w.tick(&runner, expired).await.expect("tick");
    assert_eq!(
        report.skipped,
        vec![w.ws],
        "still skipped at expiry: within the clock-skew allowance"
    );
    let later = expired + MAX_CLOCK_SKEW;
    let report = w.tick(&runner, later).await.expect("tick");
    assert_eq!(
        report.enqueued(),
        1,
        "taken over once the lease expired by MAX_CLOCK_SKEW"
    );
    let free = ok(
        store
            .try_acquire_lease(w.ws, RUNNER_LEASE, "other-process", ttl, later)
            .await,
        "lease",
    );
    assert!(
        free.is_some(),
        "the runner released its lease after the pass"
    );
}
