//! Inbound events: reply, bounce, unsubscribe, complaint, out of office, meetings,
//! the account-level stop.

use std::sync::Arc;

use chrono::{Duration, NaiveDate};

use crate::store::fixtures::ok;
use crm_core::DynStore;
use crm_core::inbound::InboundEvent;
use crm_core::model::{
    ActivityKind, Channel, ConsentStatus, Contact, Enrollment, EnrollmentState, OutboxStatus,
    StepDelay, SuppressionReason,
};
use crm_core::outreach::inbound::{InboundApplied, InboundOutcome};
use crm_core::outreach::settings::{
    MeetingBookedPolicy, ParallelSequencePolicy, WorkspaceSettings,
};
use crm_core::store::ComplianceStoreExt;
use crm_core::store::{ActivityFilter, Page};

use super::world::{World, after, base_time, email, office_hours, utc, within};

fn handled(
    outcome: Result<InboundOutcome, crm_core::outreach::inbound::InboundError>,
) -> InboundApplied {
    match outcome {
        Ok(InboundOutcome::Handled(applied)) => applied,
        other => panic!("expected the event to be handled, got {other:?}"),
    }
}

fn address(c: &Contact) -> String {
    c.email.as_ref().expect("email").to_string()
}

async fn count(w: &World, contact: &Contact, kind: ActivityKind) -> u64 {
    let filter = ActivityFilter {
        contact_id: Some(contact.id),
        kinds: vec![kind],
        ..ActivityFilter::default()
    };
    ok(
        w.store.count_activities(w.ws, &filter).await,
        "count_activities",
    )
}

/// Enrolls `contact` in `steps` and ticks at [`base_time`] so step 0 is queued.
async fn queued(w: &World, contact: &Contact, seq: &crm_core::model::Sequence) -> Enrollment {
    let e = w.enroll(contact, seq, base_time()).await;
    w.tick(&w.runner("runner-a"), base_time())
        .await
        .expect("tick");
    w.enrollment(e.id).await
}

/// A reply stops the enrollment, cancels its queued message and is recorded once.
pub async fn reply_stops_the_enrollment_and_cancels_queued(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let seq = w
        .sequence(vec![
            email("Hi", "One"),
            after(email("Re", "Two"), StepDelay::Hours(1)),
        ])
        .await;
    let ada = w.contact().await;
    let e = queued(&w, &ada, &seq).await;
    let sent_at = base_time() + Duration::minutes(1);
    let sent = w.dispatch_all(sent_at).await;
    let provider_id = sent[0].provider_message_id.clone().expect("provider id");
    let due = sent_at + Duration::hours(1);
    assert_eq!(
        w.tick(&w.runner("runner-a"), due)
            .await
            .expect("tick")
            .enqueued(),
        1
    );
    let step_one = w
        .messages_of(e.id)
        .await
        .into_iter()
        .find(|m| m.step_index == Some(1))
        .expect("step 1 queued");

    let reply = InboundEvent::Reply {
        channel: Channel::Email,
        from: "someone-else@example.com".into(),
        text: Some("Thanks, let's talk".into()),
        in_reply_to: Some(provider_id),
    };
    let now = due + Duration::minutes(5);
    let out = handled(w.handle(&reply, now).await);
    assert_eq!(
        out.contact_id,
        Some(ada.id),
        "matched through the provider id"
    );
    assert_eq!(out.changed, vec![e.id]);
    assert_eq!(out.cancelled_messages, vec![step_one.id]);
    assert!(out.activity_recorded);
    let e = w.enrollment(e.id).await;
    assert_eq!(
        (e.state, e.next_run_at),
        (EnrollmentState::Replied, None),
        "no further steps"
    );
    let m = ok(store.get_outbox(w.ws, step_one.id).await, "get_outbox");
    assert_eq!(
        m.status,
        OutboxStatus::Cancelled,
        "the queued step is cancelled"
    );
    assert_eq!(count(&w, &ada, ActivityKind::ReplyReceived).await, 1);

    let again = handled(w.handle(&reply, now + Duration::minutes(1)).await);
    assert!(
        again.changed.is_empty() && !again.activity_recorded,
        "twice is harmless: {again:?}"
    );
    assert_eq!(again.unchanged, vec![e.id]);
    assert_eq!(
        count(&w, &ada, ActivityKind::ReplyReceived).await,
        1,
        "recorded once"
    );
    assert_eq!(
        w.tick(&w.runner("runner-a"), now + Duration::days(2))
            .await
            .expect("tick")
            .enqueued(),
        0
    );

    let stranger = InboundEvent::Reply {
        channel: Channel::Email,
        from: "nobody@example.com".into(),
        text: None,
        in_reply_to: None,
    };
    let out = handled(w.handle(&stranger, now).await);
    assert_eq!(out.contact_id, None, "an unknown sender matches no contact");
    assert!(out.changed.is_empty());
}

/// A hard bounce ends the enrollment and suppresses the address; a soft one is only
/// recorded on the timeline.
pub async fn bounce_suppresses_the_address(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let seq = w.sequence(vec![email("Hi", "One")]).await;
    let ada = w.contact().await;
    let grace = w.contact().await;
    let e = queued(&w, &ada, &seq).await;
    let g = queued(&w, &grace, &seq).await;
    let now = base_time() + Duration::hours(1);
    let soft = InboundEvent::Bounced {
        channel: Channel::Email,
        provider_message_id: None,
        address: address(&grace),
        permanent: false,
    };
    let out = handled(w.handle(&soft, now).await);
    assert!(
        out.activity_recorded && !out.suppressed && out.changed.is_empty(),
        "a soft bounce is recorded, suppresses nothing and moves nothing: {out:?}"
    );
    assert_eq!(count(&w, &grace, ActivityKind::Bounced).await, 1);
    assert_eq!(w.enrollment(g.id).await.state, EnrollmentState::StepPending);

    let hard = InboundEvent::Bounced {
        channel: Channel::Email,
        provider_message_id: None,
        address: address(&ada).to_uppercase(),
        permanent: true,
    };
    let out = handled(w.handle(&hard, now).await);
    assert!(out.suppressed);
    assert_eq!(out.changed, vec![e.id]);
    assert_eq!(w.enrollment(e.id).await.state, EnrollmentState::Bounced);
    let s = ok(
        store
            .find_suppression(w.ws, Channel::Email, &address(&ada))
            .await,
        "find",
    );
    assert_eq!(s.map(|s| s.reason), Some(SuppressionReason::Bounced));
    assert!(
        w.messages_of(e.id)
            .await
            .iter()
            .all(|m| m.status == OutboxStatus::Cancelled)
    );
    let again = handled(w.handle(&hard, now).await);
    assert!(
        !again.suppressed && again.changed.is_empty(),
        "twice is harmless"
    );
}

/// Unsubscribe and complaint: suppressed, consent withdrawn, enrollment unsubscribed.
pub async fn unsubscribe_suppresses_and_withdraws_consent(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let seq = w.sequence(vec![email("Hi", "One")]).await;
    let ada = w.contact().await;
    let grace = w.contact().await;
    let e = queued(&w, &ada, &seq).await;
    let g = queued(&w, &grace, &seq).await;
    let now = base_time() + Duration::hours(1);
    let unsubscribe = InboundEvent::Unsubscribed {
        channel: Channel::Email,
        address: address(&ada),
    };
    let ada_step = w.messages_of(e.id).await;
    assert_eq!(ada_step.len(), 1, "ada's step is queued");
    let out = handled(w.handle(&unsubscribe, now).await);
    assert!(out.suppressed && out.consent_withdrawn, "{out:?}");
    assert_eq!(
        out.cancelled_messages,
        vec![ada_step[0].id],
        "the opt-out reports the queued send it cancelled: {out:?}"
    );
    assert!(out.in_flight_messages.is_empty(), "{out:?}");
    assert_eq!(
        ok(store.get_outbox(w.ws, ada_step[0].id).await, "get_outbox").status,
        OutboxStatus::Cancelled
    );
    assert_eq!(
        w.enrollment(e.id).await.state,
        EnrollmentState::Unsubscribed
    );
    let s = ok(
        store
            .find_suppression(w.ws, Channel::Email, &address(&ada))
            .await,
        "find",
    );
    assert_eq!(s.map(|s| s.reason), Some(SuppressionReason::Unsubscribed));
    let consent = ok(
        store.current_consent(w.ws, ada.id, Channel::Email).await,
        "consent",
    );
    assert_eq!(consent.map(|c| c.status), Some(ConsentStatus::Withdrawn));
    let again = handled(w.handle(&unsubscribe, now).await);
    assert!(
        !again.suppressed && !again.consent_withdrawn,
        "twice is harmless: {again:?}"
    );

    let complaint = InboundEvent::Complained {
        channel: Channel::Email,
        provider_message_id: None,
        address: address(&grace),
    };
    let out = handled(w.handle(&complaint, now).await);
    assert!(out.suppressed && out.consent_withdrawn);
    assert_eq!(
        w.enrollment(g.id).await.state,
        EnrollmentState::Unsubscribed
    );
    let s = ok(
        store
            .find_suppression(w.ws, Channel::Email, &address(&grace))
            .await,
        "find",
    );
    assert_eq!(s.map(|s| s.reason), Some(SuppressionReason::Complained));
}

/// Out of office pauses until the start of the return day, then the step resumes in
/// its window with a new message.
pub async fn out_of_office_pauses_and_resumes(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let seq = w
        .sequence(vec![within(email("Hi", "One"), office_hours())])
        .await;
    let ada = w.contact().await; // Berlin
    let e = queued(&w, &ada, &seq).await;
    let first = w.messages_of(e.id).await;
    let now = base_time() + Duration::hours(1);
    let ooo = InboundEvent::OutOfOffice {
        channel: Channel::Email,
        address: address(&ada),
        return_on: NaiveDate::from_ymd_opt(2026, 1, 8),
    };
    let out = handled(w.handle(&ooo, now).await);
    assert_eq!(out.changed, vec![e.id]);
    let back = utc(2026, 1, 7, 23, 0); // Thursday 00:00 in Berlin
    let paused = w.enrollment(e.id).await;
    assert_eq!(
        (paused.state, paused.next_run_at),
        (EnrollmentState::Paused, Some(back))
    );
    assert_eq!(
        ok(store.get_outbox(w.ws, first[0].id).await, "get").status,
        OutboxStatus::Cancelled
    );

    let runner = w.runner("runner-a");
    assert_eq!(
        w.tick(&runner, back - Duration::minutes(1))
            .await
            .expect("tick")
            .enqueued(),
        0
    );
    let report = w.tick(&runner, back).await.expect("tick");
    let t = report.tenant(w.ws).expect("worked on");
    assert_eq!(
        (t.resumed, t.postponed),
        (1, 1),
        "resumed, then the window: {t:?}"
    );
    let opening = utc(2026, 1, 8, 8, 0);
    assert_eq!(w.enrollment(e.id).await.next_run_at, Some(opening));
    assert_eq!(w.tick(&runner, opening).await.expect("tick").enqueued(), 1);
    let messages = w.messages_of(e.id).await;
    assert_eq!(messages.len(), 2, "the cancelled message and its re-send");
    assert_ne!(
        messages[0].idempotency_key, messages[1].idempotency_key,
        "a new attempt"
    );

    let grace = w.contact().await;
    let g = queued(&w, &grace, &seq).await;
    let no_date = InboundEvent::OutOfOffice {
        channel: Channel::Email,
        address: address(&grace),
        return_on: None,
    };
    handled(w.handle(&no_date, now).await);
    let g = w.enrollment(g.id).await;
    assert_eq!(
        g.next_run_at,
        Some(now + w.settings.out_of_office_pause),
        "the configured pause"
    );
}

/// A reply stops the other contacts of the account in the same sequence, when enabled.
pub async fn account_level_stop(store: Arc<DynStore>) {
    for on in [true, false] {
        let settings = WorkspaceSettings::default()
            .with_account_level_stop(on)
            .with_parallel_sequences(ParallelSequencePolicy::Allow);
        let w = World::new(&store, settings);
        let (acme, other) = (w.account().await, w.account().await);
        let seq = w.sequence(vec![email("Hi", "One")]).await;
        let side = w.sequence(vec![email("Hi", "Side")]).await;
        let ada = w.colleague(acme.id).await;
        let bob = w.colleague(acme.id).await;
        let cy = w.colleague(other.id).await;
        let dee = w.contact().await;
        let now = base_time();
        let ea = w.enroll(&ada, &seq, now).await;
        let eb = w.enroll(&bob, &seq, now).await;
        let eb_side = w.enroll(&bob, &side, now).await;
        let ec = w.enroll(&cy, &seq, now).await;
        let ed = w.enroll(&dee, &seq, now).await;
        w.tick(&w.runner("runner-a"), now).await.expect("tick");
        let reply = InboundEvent::Reply {
            channel: Channel::Email,
            from: address(&ada),
            text: Some("Yes".into()),
            in_reply_to: None,
        };
        let out = handled(w.handle(&reply, now + Duration::hours(1)).await);
        assert_eq!(out.changed, vec![ea.id]);
        assert_eq!(w.enrollment(ea.id).await.state, EnrollmentState::Replied);
        let running = [eb_side.id, ec.id, ed.id];
        for id in running {
            assert!(
                w.enrollment(id).await.state.is_running(),
                "other accounts and sequences run on"
            );
        }
        let bob_state = w.enrollment(eb.id).await.state;
        let audit = ok(
            store
                .list_audit(w.ws, Some(&eb.id.to_string()), Page::first(5))
                .await,
            "audit",
        );
        if on {
            assert_eq!(out.account_stopped, vec![eb.id]);
            assert_eq!(
                bob_state,
                EnrollmentState::Stopped,
                "stopped by the account-level stop"
            );
            assert_eq!(
                w.enrollment(eb.id).await.end_reason.as_deref(),
                Some("account_reply"),
                "the account-level stop records its own reason"
            );
            assert!(
                w.messages_of(eb.id)
                    .await
                    .iter()
                    .all(|m| m.status == OutboxStatus::Cancelled)
            );
            assert_eq!(audit.len(), 1);
            assert_eq!(audit[0].action, "outreach.account_stop");
        } else {
            assert!(out.account_stopped.is_empty());
            assert!(bob_state.is_running(), "off: colleagues run on");
            assert!(audit.is_empty());
        }
    }
}

/// A booked meeting completes the contact's enrollments, or not, per the policy.
pub async fn meeting_booked_follows_the_policy(store: Arc<DynStore>) {
    for policy in [MeetingBookedPolicy::Complete, MeetingBookedPolicy::Continue] {
        let w = World::new(
            &store,
            WorkspaceSettings::default().with_meeting_booked(policy),
        );
        let seq = w.sequence(vec![email("Hi", "One")]).await;
        let ada = w.contact().await;
        let e = queued(&w, &ada, &seq).await;
        let booked = InboundEvent::MeetingBooked {
            email: address(&ada),
            starts_at: Some(base_time() + Duration::days(2)),
            booking_id: Some("booking-1".into()),
        };
        let now = base_time() + Duration::hours(1);
        handled(w.handle(&booked, now).await);
        handled(w.handle(&booked, now).await);
        let state = w.enrollment(e.id).await.state;
        match policy {
            MeetingBookedPolicy::Complete => assert_eq!(state, EnrollmentState::Completed),
            MeetingBookedPolicy::Continue => assert_eq!(state, EnrollmentState::StepPending),
        }
        assert_eq!(
            count(&w, &ada, ActivityKind::MeetingBooked).await,
            1,
            "recorded once"
        );
    }
}
