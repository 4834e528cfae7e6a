//! The inbound pipeline scenarios.

use std::sync::Arc;

use chrono::Duration;
use crm_channels::webhooks::WebhookConfig;
use crm_core::DynStore;
use crm_core::anomaly::{AnomalyScanner, BOUNCE_SPIKE, RecordingAnomalyNotifier};
use crm_core::clock::Clock;
use crm_core::inbound::InboundEvent;
use crm_core::model::scoring::Intent;
use crm_core::model::{
    ActivityKind, Channel, Contact, EnrollmentState, OutboxMessage, SuppressionReason,
};
use crm_core::outreach::inbound::{
    DeliveryOutcome, InboundEndpoint, InboundOutcome, InboundPipeline,
};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::store::{
    ActivityFilter, ComplianceStoreExt, DeliveryClaim, EnrollmentFilter, MAX_CLOCK_SKEW, Page,
};
use serde_json::json;

use super::faults::FailingOnce;
use super::harness::{
    Inbound, OTHER_SECRET, SECRET, accepted, body, bounce, resend, resend_event, sign,
};
use crate::engine::dispatch::once;
use crate::engine::runner::world::base_time;
use crate::store::fixtures::ok;

fn address(c: &Contact) -> String {
    c.email.as_ref().expect("email").to_string()
}

/// The state of `contact`'s only enrollment.
async fn enrollment_state(h: &Inbound, contact: &Contact) -> EnrollmentState {
    let filter = EnrollmentFilter {
        contact_id: Some(contact.id),
        ..EnrollmentFilter::default()
    };
    let rows = ok(
        h.w.store
            .list_enrollments(h.w.ws, &filter, Page::first(10))
            .await,
        "list_enrollments",
    );
    assert_eq!(rows.len(), 1, "one enrollment per contact");
    rows[0].state
}

/// Asserts `contact` has exactly one `kind` activity, about `message`, on email, with
/// `status` in its details.
async fn one_activity(
    h: &Inbound,
    contact: &Contact,
    kind: ActivityKind,
    message: &OutboxMessage,
    status: &str,
) {
    let rows = h.activities(contact, kind).await;
    assert_eq!(rows.len(), 1, "one {kind} activity: {rows:?}");
    let a = &rows[0];
    assert_eq!(
        a.outbox_message_id,
        Some(message.id),
        "{kind} links to the message"
    );
    assert_eq!(a.channel, Some(Channel::Email), "{kind} has its channel");
    assert_eq!(a.details["status"], json!(status), "{kind} status");
}

/// Signed delivered, opened, clicked, failed and bounced webhooks about messages the
/// dispatcher sent each record their activity, linked to the message, with a status;
/// a hard bounce moves the enrollment to `Bounced` and suppresses the address, a soft
/// one moves nothing; opens and clicks reach the scoring inputs.
pub async fn inbound_signed_feedback_records_activities_and_moves_enrollments(
    store: Arc<DynStore>,
) {
    let h = Inbound::new(&store, WorkspaceSettings::default());
    let seq = h.sequence().await;
    let (ada, grace) = (h.w.contact().await, h.w.contact().await);
    let sent = h
        .send_first_steps(&[ada.clone(), grace.clone()], &seq)
        .await;
    let (to_ada, to_grace) = (&sent[0], &sent[1]);
    h.w.clock.set(base_time() + Duration::minutes(5));

    let deliveries = [
        (
            "msg_delivered",
            resend_event("email.delivered", to_ada, json!({})),
        ),
        (
            "msg_opened",
            resend_event("email.opened", to_ada, json!({})),
        ),
        (
            "msg_clicked",
            resend_event(
                "email.clicked",
                to_ada,
                json!({ "click": { "link": "https://example.com/pricing", "ipAddress": "192.0.2.1" } }),
            ),
        ),
        (
            "msg_failed",
            resend_event(
                "email.failed",
                to_ada,
                json!({ "failed": { "reason": "reached_daily_quota" } }),
            ),
        ),
        ("msg_soft", bounce(to_ada, false)),
        ("msg_hard", bounce(to_grace, true)),
    ];
    for (id, event) in &deliveries {
        let report = accepted(h.deliver(id, event).await, id);
        assert_eq!(report.delivery_id.as_deref(), Some(*id));
        assert_eq!(report.outcomes.len(), 1, "{id}: one event");
        assert!(
            matches!(&report.outcomes[0], InboundOutcome::Handled(a) if a.activity_recorded),
            "{id}: the event recorded its activity: {:?}",
            report.outcomes
        );
    }

    one_activity(&h, &ada, ActivityKind::Delivered, to_ada, "delivered").await;
    one_activity(&h, &ada, ActivityKind::Opened, to_ada, "opened").await;
    one_activity(&h, &ada, ActivityKind::Clicked, to_ada, "clicked").await;
    one_activity(&h, &ada, ActivityKind::SendFailed, to_ada, "failed").await;
    one_activity(&h, &ada, ActivityKind::Bounced, to_ada, "soft_bounced").await;
    one_activity(&h, &grace, ActivityKind::Bounced, to_grace, "bounced").await;
    let failed = h.activities(&ada, ActivityKind::SendFailed).await;
    assert_eq!(failed[0].details["reason"], json!("reached_daily_quota"));

    assert_eq!(
        enrollment_state(&h, &ada).await,
        EnrollmentState::StepSent,
        "feedback and a soft bounce leave the enrollment running"
    );
    assert_eq!(
        enrollment_state(&h, &grace).await,
        EnrollmentState::Bounced,
        "a hard bounce stops the enrollment"
    );
    let suppressed = |c: &Contact| {
        let store = h.w.store.clone();
        let (ws, address) = (h.w.ws, address(c));
        async move {
            ok(
                store.find_suppression(ws, Channel::Email, &address).await,
                "find_suppression",
            )
        }
    };
    assert_eq!(
        suppressed(&grace).await.map(|s| s.reason),
        Some(SuppressionReason::Bounced)
    );
    assert!(
        suppressed(&ada).await.is_none(),
        "a soft bounce suppresses nothing"
    );

    let since = base_time() - Duration::days(30);
    let inputs = ok(
        h.w.store.scoring_inputs_for(h.w.ws, &[ada.id], since).await,
        "scoring_inputs_for",
    );
    assert_eq!(inputs.len(), 1);
    assert_eq!(
        (inputs[0].opens.len(), inputs[0].clicks.len()),
        (1, 1),
        "the open and the click recorded from webhooks feed behavioral scoring"
    );
}

/// The same signed delivery reaching two processes at once (two pipelines sharing the
/// store) is handled by exactly one; the other answers a duplicate, or, while the first
/// still holds it, "in progress" (503, so the provider retries); a later retry is a
/// duplicate; a second open of the same message (another delivery) is counted.
pub async fn inbound_same_delivery_through_two_pipelines_is_handled_once(store: Arc<DynStore>) {
    let h = Inbound::new(&store, WorkspaceSettings::default());
    let seq = h.sequence().await;
    let ada = h.w.contact().await;
    let sent = h.send_first_steps(std::slice::from_ref(&ada), &seq).await;
    h.w.clock.set(base_time() + Duration::minutes(5));

    let opened = body(&resend_event("email.opened", &sent[0], json!({})));
    let request = h.signed("msg_open_1", &opened);
    let (one, two) = (h.pipeline.clone(), h.another_pipeline());
    let (a, b) = tokio::join!(
        one.receive(&h.endpoint, &request),
        two.receive(&h.endpoint, &request)
    );
    let accepted_count = [&a, &b]
        .iter()
        .filter(|o| matches!(o, DeliveryOutcome::Accepted(_)))
        .count();
    let losers = [&a, &b]
        .iter()
        .filter(|o| match o {
            DeliveryOutcome::Duplicate { delivery_id } => delivery_id == "msg_open_1",
            DeliveryOutcome::InProgress { delivery_id, .. } => {
                delivery_id == "msg_open_1" && o.http_status() == 503
            }
            _ => false,
        })
        .count();
    assert_eq!(
        (accepted_count, losers),
        (1, 1),
        "one pipeline handles it, the other answers duplicate or in progress: {a:?} / {b:?}"
    );

    let retry = h.pipeline.receive(&h.endpoint, &request).await;
    assert!(
        matches!(retry, DeliveryOutcome::Duplicate { .. }),
        "a provider retry later is a duplicate: {retry:?}"
    );
    assert_eq!(h.activities(&ada, ActivityKind::Opened).await.len(), 1);

    accepted(
        h.another_pipeline()
            .receive(&h.endpoint, &h.signed("msg_open_2", &opened))
            .await,
        "a second open is another delivery",
    );
    assert_eq!(
        h.activities(&ada, ActivityKind::Opened).await.len(),
        2,
        "two opens of one message are two activities"
    );
}

/// A process that claimed a delivery and crashed before handling it (the claim is
/// recorded, never completed) loses nothing: a retry while its lease holds answers
/// `InProgress` (503 with a short `Retry-After`) and applies nothing; a retry once the
/// lease has run out by every clock (lease + `MAX_CLOCK_SKEW`) takes the delivery over
/// and handles it; the next retry is a duplicate.
pub async fn inbound_delivery_of_a_crashed_process_is_handled_after_its_lease(
    store: Arc<DynStore>,
) {
    let h = Inbound::new(&store, WorkspaceSettings::default());
    let lease = Duration::seconds(20);
    let pipeline = h.pipeline.clone().with_delivery_lease(lease);
    let seq = h.sequence().await;
    let ada = h.w.contact().await;
    let sent = h.send_first_steps(std::slice::from_ref(&ada), &seq).await;
    let crashed_at = base_time() + Duration::minutes(5);
    h.w.clock.set(crashed_at);
    let opened = body(&resend_event("email.opened", &sent[0], json!({})));

    // The crashed process got as far as claiming the delivery.
    let claim = h.w.store.record_webhook_delivery(
        h.w.ws,
        h.endpoint.provider(),
        "msg_crash",
        crashed_at,
        lease,
    );
    assert_eq!(ok(claim.await, "claim"), DeliveryClaim::Claimed);

    for wait in [
        Duration::seconds(1),
        lease + MAX_CLOCK_SKEW - Duration::seconds(1),
    ] {
        h.w.clock.set(crashed_at + wait);
        let early = pipeline
            .receive(&h.endpoint, &h.signed("msg_crash", &opened))
            .await;
        assert!(
            matches!(&early, DeliveryOutcome::InProgress { delivery_id, .. } if delivery_id == "msg_crash"),
            "{wait}: {early:?}"
        );
        assert_eq!(early.http_status(), 503, "the provider retries");
        let retry_after = early.retry_after().expect("a Retry-After");
        assert!(
            (1..=5).contains(&retry_after.as_secs()),
            "a short Retry-After: {retry_after:?}"
        );
        assert!(!early.is_accepted());
        assert!(h.activities(&ada, ActivityKind::Opened).await.is_empty());
    }

    h.w.clock.set(crashed_at + lease + MAX_CLOCK_SKEW);
    accepted(
        pipeline
            .receive(&h.endpoint, &h.signed("msg_crash", &opened))
            .await,
        "the retry after the lease",
    );
    assert_eq!(h.activities(&ada, ActivityKind::Opened).await.len(), 1);
    h.w.clock.set(crashed_at + Duration::hours(1));
    let again = h
        .another_pipeline()
        .receive(&h.endpoint, &h.signed("msg_crash", &opened))
        .await;
    assert!(
        matches!(again, DeliveryOutcome::Duplicate { .. }),
        "handled to the end: {again:?}"
    );
    assert_eq!(h.activities(&ada, ActivityKind::Opened).await.len(), 1);
}

/// A delivery whose handling fails (the store fails once while the handler records
/// the event) answers a retryable `Failed` (503) and releases its claim: the
/// provider's retry right after is handled, not answered as a duplicate or in
/// progress; the retry after that is a duplicate.
pub async fn inbound_failed_delivery_is_handled_on_the_retry(store: Arc<DynStore>) {
    let h = Inbound::new(&store, WorkspaceSettings::default());
    let seq = h.sequence().await;
    let ada = h.w.contact().await;
    let sent = h.send_first_steps(std::slice::from_ref(&ada), &seq).await;
    h.w.clock.set(base_time() + Duration::minutes(5));
    let faulty = Arc::new(FailingOnce::new(store.clone()));
    let pipeline = InboundPipeline::new(faulty.clone(), h.w.time(), h.w.provider());
    let opened = body(&resend_event("email.opened", &sent[0], json!({})));

    faulty.arm();
    let first = pipeline
        .receive(&h.endpoint, &h.signed("msg_flaky", &opened))
        .await;
    assert!(
        matches!(&first, DeliveryOutcome::Failed(e) if e.is_retryable()),
        "{first:?}"
    );
    assert_eq!(first.http_status(), 503, "the provider retries");
    assert!(h.activities(&ada, ActivityKind::Opened).await.is_empty());

    h.w.clock
        .set(base_time() + Duration::minutes(5) + Duration::seconds(1));
    accepted(
        pipeline
            .receive(&h.endpoint, &h.signed("msg_flaky", &opened))
            .await,
        "the retry right after the failure",
    );
    assert_eq!(h.activities(&ada, ActivityKind::Opened).await.len(), 1);
    let again = pipeline
        .receive(&h.endpoint, &h.signed("msg_flaky", &opened))
        .await;
    assert!(
        matches!(again, DeliveryOutcome::Duplicate { .. }),
        "{again:?}"
    );
}

/// A request not signed with the endpoint's secret, tampered with, unsigned or stale
/// is `BadSignature` (401) and burns no delivery id; an authentic but unreadable body is
/// `Malformed` (400); a body over the limit is `TooLarge` (413). None records anything.
pub async fn inbound_refuses_bad_signatures_garbage_and_oversized_bodies(store: Arc<DynStore>) {
    let h = Inbound::new(&store, WorkspaceSettings::default());
    let seq = h.sequence().await;
    let ada = h.w.contact().await;
    let sent = h.send_first_steps(std::slice::from_ref(&ada), &seq).await;
    h.w.clock.set(base_time() + Duration::minutes(5));
    let now = h.w.clock.now().timestamp();
    let delivered = body(&resend_event("email.delivered", &sent[0], json!({})));

    let forged = sign(
        &resend(OTHER_SECRET, WebhookConfig::default()),
        "msg_1",
        now,
        &delivered,
    );
    let mut tampered = h.signed("msg_1", &delivered);
    tampered.body = body(&resend_event("email.opened", &sent[0], json!({})));
    let mut unsigned = h.signed("msg_1", &delivered);
    unsigned.headers.remove("webhook-signature");
    let stale = sign(
        &resend(SECRET, WebhookConfig::default()),
        "msg_1",
        now - 3600,
        &delivered,
    );
    for (what, request) in [
        ("another secret", forged),
        ("a tampered body", tampered),
        ("no signature", unsigned),
        ("an hour-old timestamp", stale),
    ] {
        let outcome = h.pipeline.receive(&h.endpoint, &request).await;
        assert!(
            matches!(outcome, DeliveryOutcome::BadSignature(_)),
            "{what}: {outcome:?}"
        );
        assert_eq!(outcome.http_status(), 401, "{what}");
    }
    for kind in [ActivityKind::Delivered, ActivityKind::Opened] {
        assert!(
            h.activities(&ada, kind).await.is_empty(),
            "nothing forged is recorded"
        );
    }

    accepted(
        h.pipeline
            .receive(&h.endpoint, &h.signed("msg_1", &delivered))
            .await,
        "the authentic delivery with the id a forgery used",
    );
    assert_eq!(h.activities(&ada, ActivityKind::Delivered).await.len(), 1);

    for (id, garbage) in [
        ("msg_garbage", b"not json {".to_vec()),
        ("msg_no_data", br#"{"type":"email.delivered"}"#.to_vec()),
        (
            "msg_no_email_id",
            br#"{"type":"email.opened","data":{}}"#.to_vec(),
        ),
    ] {
        let outcome = h
            .pipeline
            .receive(&h.endpoint, &h.signed(id, &garbage))
            .await;
        assert!(
            matches!(outcome, DeliveryOutcome::Malformed(_)),
            "{id}: {outcome:?}"
        );
        assert_eq!(outcome.http_status(), 400);
    }

    let small = InboundEndpoint::new(
        h.w.ws,
        resend(SECRET, WebhookConfig::new().with_max_body_bytes(64)),
    );
    let outcome = h
        .pipeline
        .receive(&small, &h.signed("msg_big", &delivered))
        .await;
    assert!(
        matches!(outcome, DeliveryOutcome::TooLarge { limit: 64, .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.http_status(), 413);
    assert!(h.activities(&ada, ActivityKind::Opened).await.is_empty());
}

/// Bounces arriving as signed webhooks about messages the dispatcher sent raise the
/// bounce-spike anomaly; the scanner hands it to the notifier once, and with the
/// workspace's pause setting on, the dispatcher holds the channel's next messages.
pub async fn inbound_bounce_spike_from_signed_webhooks_reaches_the_notifier(store: Arc<DynStore>) {
    let mut settings = WorkspaceSettings::default();
    settings.pause_channel_on_error_anomaly = true;
    let h = Inbound::new(&store, settings.clone());
    let seq = h.sequence().await;
    let mut contacts = Vec::new();
    for _ in 0..20 {
        contacts.push(h.w.contact().await);
    }
    let sent = h.send_first_steps(&contacts, &seq).await;
    let sends = ActivityFilter {
        kinds: vec![ActivityKind::MessageSent],
        channel: Some(Channel::Email),
        ..ActivityFilter::default()
    };
    assert_eq!(
        ok(h.w.store.count_activities(h.w.ws, &sends).await, "count"),
        20,
        "the dispatcher recorded every send"
    );

    let notifier = RecordingAnomalyNotifier::new();
    let scanner = AnomalyScanner::new(
        h.w.store.clone(),
        h.w.time(),
        Arc::new(StaticSettings::new(settings)),
    )
    .with_notifier(Arc::new(notifier.clone()));
    h.w.clock.set(base_time() + Duration::minutes(30));
    scanner.scan(h.w.ws).await.expect("scan");
    assert!(notifier.notified().is_empty(), "no bounce yet, no anomaly");

    for (i, message) in sent.iter().take(2).enumerate() {
        accepted(
            h.deliver(&format!("msg_bounce_{i}"), &bounce(message, true))
                .await,
            "a hard bounce",
        );
    }
    let raised = scanner.scan(h.w.ws).await.expect("scan");
    let spike: Vec<_> = raised
        .iter()
        .filter(|r| r.value.rule == BOUNCE_SPIKE && r.value.channel == Some(Channel::Email))
        .collect();
    assert_eq!(
        spike.len(),
        1,
        "2 bounces of 20 sends is a spike: {raised:?}"
    );
    assert!(spike[0].created);
    let told = notifier.notified();
    assert_eq!(told.len(), 1, "the notifier hears of the anomaly: {told:?}");
    assert_eq!(told[0].id, spike[0].value.id);
    assert!(
        scanner
            .is_channel_paused(h.w.ws, Channel::Email)
            .await
            .expect("is_channel_paused"),
        "the open bounce spike pauses email for the workspace"
    );

    scanner.scan(h.w.ws).await.expect("scan again");
    assert_eq!(
        notifier.notified().len(),
        1,
        "an anomaly still open is not announced again"
    );

    // Two days on, the 18 running enrollments queue their second step; the paused
    // channel holds them.
    let later = base_time() + Duration::hours(49);
    let report =
        h.w.tick(&h.w.runner("inbound-runner"), later)
            .await
            .expect("tick");
    assert_eq!(report.enqueued(), 18, "{report:?}");
    let handed = h.stub.handed_count();
    let dispatched = once(&h.dispatcher()).await;
    assert_eq!(dispatched.sent, 0, "{dispatched:?}");
    assert_eq!(dispatched.postponed, 18, "{dispatched:?}");
    assert_eq!(
        h.stub.handed_count(),
        handed,
        "nothing reaches the provider"
    );
}

/// A booked meeting completes the enrollment and counts as a demo request for scoring;
/// its cancellation is recorded with its status and reopens nothing (a person follows
/// up), and the demo request stays on record. A redelivered cancellation is recorded
/// once.
pub async fn inbound_meeting_cancelled_is_recorded_and_reopens_nothing(store: Arc<DynStore>) {
    let h = Inbound::new(&store, WorkspaceSettings::default());
    let seq = h.sequence().await;
    let ada = h.w.contact().await;
    h.send_first_steps(std::slice::from_ref(&ada), &seq).await;
    h.w.clock.set(base_time() + Duration::hours(2));
    let handler = h.pipeline.handler();

    let booked = InboundEvent::MeetingBooked {
        email: address(&ada),
        starts_at: Some(base_time() + Duration::days(1)),
        booking_id: Some("booking-1".into()),
    };
    ok_handled(handler.handle_delivery(h.w.ws, &booked, Some("d-1")).await);
    assert_eq!(enrollment_state(&h, &ada).await, EnrollmentState::Completed);

    let cancelled = InboundEvent::MeetingCancelled {
        email: address(&ada).to_uppercase(),
        booking_id: Some("booking-1".into()),
    };
    let first = ok_handled(
        handler
            .handle_delivery(h.w.ws, &cancelled, Some("d-2"))
            .await,
    );
    assert!(
        first.activity_recorded && first.changed.is_empty(),
        "{first:?}"
    );
    let again = ok_handled(
        handler
            .handle_delivery(h.w.ws, &cancelled, Some("d-3"))
            .await,
    );
    assert!(
        !again.activity_recorded,
        "the same booking's cancellation is recorded once"
    );

    let rows = h.activities(&ada, ActivityKind::MeetingCancelled).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].details["status"], json!("cancelled"));
    assert_eq!(rows[0].details["booking_id"], json!("booking-1"));
    assert_eq!(
        enrollment_state(&h, &ada).await,
        EnrollmentState::Completed,
        "a cancellation does not reopen the enrollment the booking completed"
    );
    let inputs = ok(
        h.w.store
            .scoring_inputs_for(h.w.ws, &[ada.id], base_time() - Duration::days(30))
            .await,
        "scoring_inputs_for",
    );
    assert!(
        inputs[0].intents.contains(Intent::DemoRequest),
        "the booked meeting counts as a demo request, cancelled or not"
    );
}

#[track_caller]
fn ok_handled(
    outcome: Result<InboundOutcome, crm_core::outreach::inbound::InboundError>,
) -> crm_core::outreach::inbound::InboundApplied {
    match outcome {
        Ok(InboundOutcome::Handled(applied)) => applied,
        other => panic!("expected the event to be handled, got {other:?}"),
    }
}
