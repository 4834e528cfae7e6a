//! Editing sequences (keep version or migrate) and the read-only send forecast.

use std::sync::Arc;

use chrono::Duration;

use crate::store::fixtures::{created, ok};
use crm_core::DynStore;
use crm_core::model::{
    Channel, EnrollmentState, InFlightPolicy, OutboxMessage, OutboxStatus, Sequence, Suppression,
    SuppressionReason,
};
use crm_core::outreach::enroll::{DefinitionError, SequenceEditor};
use crm_core::outreach::forecast::{ForecastEntry, ForecastOutcome, HoldReason};
use crm_core::outreach::settings::{ParallelSequencePolicy, WorkspaceSettings};
use crm_core::store::{ActivityFilter, Page};

use super::world::{World, base_time, email, office_hours, step, utc, within};

fn edited(seq: &Sequence, body: &str) -> Sequence {
    let mut next = seq.clone();
    next.steps[0].template.body = body.to_owned();
    next
}

/// Templates are checked at save time; an edit keeps running enrollments on their
/// version or migrates them, as the policy says.
pub async fn sequence_edit_keeps_or_migrates(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let editor = SequenceEditor::new(store.clone(), w.time());
    let now = base_time();
    let bad = Sequence::create(
        w.ws,
        "Bad",
        vec![email("Hi", "Shoe size {{shoe_size}}")],
        now,
    )
    .expect("valid model");
    assert!(
        matches!(
            editor.create(&bad).await,
            Err(DefinitionError::Template { step: 0, .. })
        ),
        "an unknown merge field fails at save time"
    );
    let valid = Sequence::create(
        w.ws,
        "Keep",
        vec![email("Hi", "Version one, {{first_name}}")],
        now,
    )
    .expect("valid model");
    let keep = editor.create(&valid).await.expect("create");
    w.clock.set(now);
    assert!(
        matches!(
            editor
                .update(
                    &edited(&keep, "Broken {{first_name"),
                    InFlightPolicy::KeepVersion,
                )
                .await,
            Err(DefinitionError::Template { .. })
        ),
        "bad syntax fails at save time"
    );
    assert_eq!(
        ok(store.get_sequence(w.ws, keep.id).await, "get").version,
        1,
        "nothing saved"
    );

    let ada = w.contact().await;
    let old = w.enroll(&ada, &keep, now).await;
    let later = now + Duration::minutes(1);
    w.clock.set(later);
    let update = editor
        .update(
            &edited(&keep, "Version two, {{first_name}}"),
            InFlightPolicy::KeepVersion,
        )
        .await
        .expect("update");
    assert_eq!(update.sequence.version, 2);
    assert_eq!(
        (update.kept.clone(), update.migrated.len()),
        (vec![old.id], 0)
    );
    let grace = w.contact_with(|c| c.first_name = "Grace".into()).await;
    let new = w.enroll(&grace, &update.sequence, later).await;
    assert_eq!(
        new.sequence_version, 2,
        "new enrollments take the new version"
    );
    w.tick(&w.runner("runner-a"), later).await.expect("tick");
    assert_eq!(
        w.messages_of(old.id).await[0].body,
        "Version one, Ada",
        "kept its version"
    );
    assert_eq!(w.messages_of(new.id).await[0].body, "Version two, Grace");

    let migrate = editor
        .create(
            &Sequence::create(w.ws, "Migrate", vec![email("Hi", "First draft")], now)
                .expect("model"),
        )
        .await
        .expect("create");
    let moving = w.enroll(&w.contact().await, &migrate, now).await;
    let stale = World {
        settings: WorkspaceSettings::default()
            .with_parallel_sequences(ParallelSequencePolicy::Allow),
        ..w.clone()
    };
    let also = stale.enroll(&ada, &migrate, now).await;
    w.clock.set(later);
    let update = editor
        .update(&edited(&migrate, "Second draft"), InFlightPolicy::Migrate)
        .await
        .expect("update");
    let mut migrated = update.migrated.clone();
    migrated.sort();
    let mut expected = vec![moving.id, also.id];
    expected.sort();
    assert_eq!(migrated, expected, "every running enrollment moves");
    assert_eq!(w.enrollment(moving.id).await.sequence_version, 2);
    w.tick(&w.runner("runner-a"), later).await.expect("tick");
    assert_eq!(
        w.messages_of(moving.id).await[0].body,
        "Second draft",
        "runs on the new version"
    );
}

fn entry(entries: &[ForecastEntry], id: crm_core::ids::EnrollmentId) -> Vec<&ForecastOutcome> {
    entries
        .iter()
        .filter(|e| e.enrollment_id == id)
        .map(|e| &e.outcome)
        .collect()
}

/// The forecast plans sends with their times, holds back the rest with reasons, and
/// writes nothing.
pub async fn forecast_lists_planned_sends_and_writes_nothing(store: Arc<DynStore>) {
    let settings = WorkspaceSettings::default()
        .with_default_time_zone(chrono_tz::Europe::Berlin)
        .with_daily_cap(Channel::Email, 2)
        .with_parallel_sequences(ParallelSequencePolicy::Allow);
    let w = World::new(&store, settings);
    let now = utc(2026, 1, 9, 15, 0); // Friday 16:00 in Berlin
    let seq = w
        .sequence(vec![
            within(email("Hi", "Hello {{first_name}}"), office_hours()),
            crate::engine::runner::world::after(
                email("Re", "Again"),
                crm_core::model::StepDelay::BusinessDays(1),
            ),
        ])
        .await;
    let titled = w.sequence(vec![email("Hi", "Dear {{title}}")]).await;
    let mut approval_step = step(Channel::WhatsApp, "Ping {{first_name}}");
    approval_step.requires_approval = true;
    let whatsapp = w.sequence(vec![approval_step]).await;

    let contact = || w.contact();
    let (a, b, c) = (contact().await, contact().await, contact().await);
    let tokyo = w
        .contact_with(|c| c.time_zone = Some("Asia/Tokyo".into()))
        .await;
    let (suppressed, untitled, busy) = (contact().await, contact().await, contact().await);
    let phone = w
        .contact_with(|c| c.phone = Some("+4915112345678".into()))
        .await;
    let (paused, waiting) = (contact().await, contact().await);

    let ea = w.enroll(&a, &seq, now).await;
    let eb = w.enroll(&b, &seq, now).await;
    let ec = w.enroll(&c, &seq, now).await;
    let et = w.enroll(&tokyo, &seq, now).await;
    let es = w.enroll(&suppressed, &seq, now).await;
    let eu = w.enroll(&untitled, &titled, now).await;
    let eh = w.enroll(&busy, &seq, now).await;
    let ep = w.enroll(&phone, &whatsapp, now).await;
    let epaused = w
        .insert_enrollment(&paused, &seq, EnrollmentState::Paused, None)
        .await;
    let ew = w
        .insert_enrollment(&waiting, &seq, EnrollmentState::StepPending, None)
        .await;
    let held = OutboxMessage::new(
        w.ws,
        Channel::Email,
        "waiting@example.com",
        "Hello",
        "held-1",
        now,
    )
    .expect("message")
    .with_enrollment(ew.id, 0)
    .with_contact(waiting.id)
    .with_status(OutboxStatus::AwaitingApproval);
    created(
        store.enqueue_outbox(&held).await,
        "a message awaiting approval",
    );
    let address = suppressed.email.clone().expect("email").to_string();
    let s = Suppression::new(
        w.ws,
        Some(Channel::Email),
        &address,
        SuppressionReason::Bounced,
        now,
    )
    .expect("suppression");
    ok(
        store.add_suppression(&s).await.map(|r| r.result),
        "add_suppression",
    );
    w.touch(&busy, now - Duration::hours(2)).await;
    w.touch(&busy, now - Duration::hours(1)).await;

    let before = snapshot(&w).await;
    w.clock.set(now);
    let entries = w.forecast().forecast(w.ws, 3).await.expect("forecast");
    assert_eq!(snapshot(&w).await, before, "the forecast writes nothing");

    let planned = |at, postponed_by: Vec<HoldReason>, needs_approval| ForecastOutcome::Planned {
        due_at: now,
        at,
        needs_approval,
        postponed_by,
    };
    let monday_open = utc(2026, 1, 12, 8, 0);
    let quota = HoldReason::Quota {
        channel: Channel::Email,
        cap: 2,
    };
    assert_eq!(
        entry(&entries, ea.id),
        vec![&planned(now, vec![], false)],
        "a: now; step 1 is past the horizon"
    );
    assert_eq!(
        entry(&entries, eb.id),
        vec![&planned(now, vec![], false)],
        "b: the day's second email"
    );
    assert_eq!(
        entry(&entries, ec.id),
        vec![&planned(monday_open, vec![quota.clone()], false)],
        "c: over the cap"
    );
    let tokyo_open = utc(2026, 1, 12, 0, 0); // Monday 09:00 in Tokyo
    assert_eq!(
        entry(&entries, et.id),
        vec![&planned(tokyo_open, vec![HoldReason::Window], false)]
    );
    assert_eq!(
        entry(&entries, ep.id),
        vec![&planned(now, vec![], true)],
        "needs approval, other channel's cap"
    );
    let held_back = |reason, until| ForecastOutcome::HeldBack {
        reason,
        due_at: Some(now),
        until,
    };
    assert_eq!(
        entry(&entries, es.id),
        vec![&held_back(
            HoldReason::Suppression {
                reason: Some(SuppressionReason::Bounced)
            },
            None
        )]
    );
    assert!(
        matches!(
            entry(&entries, eu.id)[..],
            [ForecastOutcome::HeldBack {
                reason: HoldReason::Conflict { .. },
                ..
            }]
        ),
        "a missing merge field is a conflict: {:?}",
        entry(&entries, eu.id)
    );
    assert_eq!(
        entry(&entries, eh.id),
        vec![&held_back(quota, Some(utc(2026, 1, 13, 8, 0)))],
        "touch limit to Monday, then the cap to Tuesday, past the horizon"
    );
    assert!(matches!(
        entry(&entries, epaused.id)[..],
        [ForecastOutcome::HeldBack {
            reason: HoldReason::Paused,
            ..
        }]
    ));
    assert!(matches!(
        entry(&entries, ew.id)[..],
        [ForecastOutcome::HeldBack {
            reason: HoldReason::Approval,
            ..
        }]
    ));
    assert_eq!(
        entries.len(),
        10,
        "one entry per enrollment here: {entries:#?}"
    );
}

/// Everything the forecast could change, as read back.
async fn snapshot(w: &World) -> impl PartialEq + std::fmt::Debug {
    let store = &w.store;
    let all = ActivityFilter::default();
    (
        w.enrollments().await,
        w.outbox().await,
        ok(store.count_activities(w.ws, &all).await, "count_activities"),
        ok(
            store.list_audit(w.ws, None, Page::first(1000)).await,
            "list_audit",
        ),
        ok(
            store.list_suppressions(w.ws, Page::first(1000)).await,
            "list_suppressions",
        ),
    )
}
