//! Scenarios of what may stop or delay a send before the adapter: compliance,
//! approval, enrollments, channel pauses, missing contacts.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use super::{Harness, RecordingNotifier, RejectAll, config, drain, once};
use crate::store::fixtures::{base, new_enrollment, new_message, ok};
use crm_core::DynStore;
use crm_core::anomaly::{AnomalyScanner, FAILURE_RATE};
use crm_core::approval::ManualApproval;
use crm_core::clock::Clock;
use crm_core::ids::UserId;
use crm_core::model::{
    ApprovalStatus, Channel, Consent, ConsentStatus, Enrollment, EnrollmentState, OutboxMessage,
    OutboxStatus, SendWindow, Sequence, SequenceStep, StepDelay, Suppression, SuppressionReason,
    Template,
};
use crm_core::outreach::approvals::{ApprovalInbox, StaticApprovers};
use crm_core::outreach::dispatch::{StubChannel, StubFailure};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::store::ApprovalStoreExt;

fn reason(message: &OutboxMessage) -> &str {
    message.last_error.as_deref().unwrap_or("")
}

/// A suppression added after the message was enqueued cancels it at once (the send
/// gate would refuse it anyway).
pub async fn dispatch_suppression_after_enqueue_blocks_the_send(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let suppression = Suppression::new(
        h.ws,
        None,
        &message.recipient.to_uppercase(),
        SuppressionReason::Unsubscribed,
        base(),
    )
    .expect("valid suppression");
    let added = ok(
        h.store.add_suppression(&suppression).await,
        "add_suppression",
    );
    assert_eq!(
        added.stopped.cancelled,
        vec![message.id],
        "the unsubscribe cancels the queued message and says so"
    );
    assert!(added.stopped.in_flight.is_empty(), "{:?}", added.stopped);

    let report = once(&h.dispatcher()).await;
    assert_eq!(
        report.claimed, 0,
        "a cancelled message is not claimed: {report:?}"
    );
    assert_eq!(
        h.stub.handed_count(),
        0,
        "a suppressed address is never sent to"
    );
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Cancelled);
    assert!(
        reason(&stored).contains("suppressed"),
        "{:?}",
        stored.last_error
    );
}

/// Consent withdrawn after the message was enqueued cancels it at once.
pub async fn dispatch_withdrawn_consent_after_enqueue_blocks_the_send(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let contact = message.contact_id.expect("harness messages have a contact");
    for (status, minutes) in [(ConsentStatus::Granted, 1), (ConsentStatus::Withdrawn, 2)] {
        let consent = Consent::new(
            h.ws,
            contact,
            Channel::Email,
            status,
            "unsubscribe link",
            base() + Duration::minutes(minutes),
        )
        .expect("valid consent");
        let recorded = ok(h.store.record_consent(&consent).await, "record_consent");
        let expected = match status {
            ConsentStatus::Withdrawn => vec![message.id],
            _ => Vec::new(),
        };
        assert_eq!(recorded.stopped.cancelled, expected, "{status:?}");
    }

    let report = once(&h.dispatcher()).await;
    assert_eq!(
        report.claimed, 0,
        "a cancelled message is not claimed: {report:?}"
    );
    assert_eq!(
        h.stub.handed_count(),
        0,
        "withdrawn consent blocks the send"
    );
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Cancelled);
    assert!(
        reason(&stored).contains("consent"),
        "{:?}",
        stored.last_error
    );
}

/// Under the manual policy a message is held with a pending item carrying its
/// metadata, and the notifier hears of it once; once a person approves with an edit,
/// the edited text is what is sent.
pub async fn dispatch_manual_approval_holds_then_sends_the_edited_text(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let (contact, email) = h.contact().await;
    let metadata = json!({
        "requires_approval": true,
        "confidence": 0.7,
        "template_key": "intro",
        "context": { "last_reply": "none" },
    });
    let message = h
        .enqueue_message(&h.message_to(&contact, &email).with_metadata(metadata))
        .await;
    let notifier = Arc::new(RecordingNotifier::default());
    let dispatcher = h
        .dispatcher()
        .with_policy(Arc::new(ManualApproval))
        .with_notifier(notifier.clone());

    let report = once(&dispatcher).await;
    assert_eq!(report.held_for_approval, 1, "{report:?}");
    assert_eq!(h.stub.handed_count(), 0, "nothing is sent before approval");
    let held = h.get(message.id).await;
    assert_eq!(held.status, OutboxStatus::AwaitingApproval);
    assert_eq!(held.attempts, 0, "holding gives the attempt back");
    let item = ok(
        h.store.find_approval_for_outbox(h.ws, message.id).await,
        "find_approval_for_outbox",
    )
    .expect("a pending item is created");
    assert_eq!(item.status, ApprovalStatus::Pending);
    assert_eq!(item.original_body, message.body);
    assert_eq!(item.confidence, Some(0.7));
    assert_eq!(item.template_key.as_deref(), Some("intro"));
    assert_eq!(item.context, json!({ "last_reply": "none" }));
    assert_eq!(
        item.expires_at,
        h.clock.now() + dispatcher.config().approval_ttl()
    );
    assert!(item.reason.is_some(), "the item says why a human is needed");
    assert_eq!(notifier.items().len(), 1, "the notifier hears once");
    assert_eq!(
        once(&dispatcher).await.claimed,
        0,
        "a held message is not claimable"
    );

    h.clock.advance(Duration::minutes(10));
    // The person decides through the inbox, which releases the message.
    let approver = UserId::new();
    let inbox = ApprovalInbox::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticApprovers::new().with_approver(h.ws, approver)),
    );
    let approved = inbox
        .edit_and_approve(h.ws, item.id, approver, "Hi Ada, edited by a person.")
        .await
        .expect("the approver edits and approves");
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert_eq!(h.get(held.id).await.status, OutboxStatus::Pending);

    let report = once(&dispatcher).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let delivered = h.stub.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].body, "Hi Ada, edited by a person.",
        "the approver's edit is what is sent"
    );
    assert_eq!(notifier.items().len(), 1, "no second notification");
    assert_eq!(h.get(message.id).await.status, OutboxStatus::Sent);
}

/// A send to an address suppressed before it was enqueued is cancelled before the
/// approval gate: nobody is asked to approve it and no item is made.
pub async fn dispatch_never_asks_approval_for_a_suppressed_address(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let (contact, email) = h.contact().await;
    let suppression = Suppression::new(h.ws, None, &email, SuppressionReason::Unsubscribed, base())
        .expect("valid suppression");
    ok(
        h.store.add_suppression(&suppression).await,
        "add_suppression",
    );
    let metadata = json!({ "requires_approval": true });
    let message = h
        .enqueue_message(&h.message_to(&contact, &email).with_metadata(metadata))
        .await;
    let notifier = Arc::new(RecordingNotifier::default());
    let dispatcher = h
        .dispatcher()
        .with_policy(Arc::new(ManualApproval))
        .with_notifier(notifier.clone());
    let report = once(&dispatcher).await;
    assert_eq!(
        (report.cancelled, report.held_for_approval),
        (1, 0),
        "{report:?}"
    );
    assert!(notifier.items().is_empty(), "no approver is asked");
    let item = ok(
        h.store.find_approval_for_outbox(h.ws, message.id).await,
        "find_approval_for_outbox",
    );
    assert!(item.is_none(), "no approval item: {item:?}");
    assert_eq!(h.stub.handed_count(), 0);
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Cancelled);
    assert!(
        reason(&stored).contains("suppressed"),
        "{:?}",
        stored.last_error
    );
}

/// A policy rejection cancels the message with the policy's reason.
pub async fn dispatch_policy_rejection_cancels(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let dispatcher = h.dispatcher().with_policy(Arc::new(RejectAll));
    let report = once(&dispatcher).await;
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(h.stub.handed_count(), 0);
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Cancelled);
    assert!(
        reason(&stored).contains("off-brand"),
        "{:?}",
        stored.last_error
    );
}

fn step(delay: StepDelay) -> SequenceStep {
    SequenceStep {
        channel: Channel::Email,
        template: Template {
            subject: Some("Hello".into()),
            body: "Hi {{first_name}}".into(),
        },
        delay,
        window: None,
        requires_approval: false,
        options: Default::default(),
    }
}

/// A two-step sequence (no delay, then 48 hours), an enrollment of a fresh contact
/// waiting on step 0 (`StepPending`), and its enqueued message.
async fn enrolled(h: &Harness) -> (Sequence, Enrollment, OutboxMessage) {
    enrolled_with(h, None).await
}

/// [`enrolled`], with a send window on step 0.
async fn enrolled_with(
    h: &Harness,
    window: Option<SendWindow>,
) -> (Sequence, Enrollment, OutboxMessage) {
    let mut first = step(StepDelay::Hours(0));
    first.window = window;
    let steps = vec![first, step(StepDelay::Hours(48))];
    let sequence = Sequence::create(h.ws, "Two steps", steps, base()).expect("valid sequence");
    let sequence = ok(h.store.insert_sequence(&sequence).await, "insert_sequence");
    let (contact, email) = h.contact().await;
    let mut enrollment = new_enrollment(&sequence, contact.id);
    enrollment.state = EnrollmentState::StepPending;
    enrollment.current_step = 0;
    enrollment.next_run_at = None;
    let enrollment = ok(
        h.store.insert_enrollment(&enrollment).await,
        "insert_enrollment",
    );
    let mut message = new_message(h.ws)
        .with_contact(contact.id)
        .with_enrollment(enrollment.id, 0);
    message.recipient = email;
    let message = h.enqueue_message(&message).await;
    (sequence, enrollment, message)
}

/// A message whose enrollment stopped (replied) after it was enqueued is cancelled.
pub async fn dispatch_cancels_messages_of_stopped_enrollments(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let (_, enrollment, message) = enrolled(&h).await;
    let mut replied = enrollment.clone();
    replied.state = EnrollmentState::Replied;
    ok(
        h.store.update_enrollment(&replied).await,
        "update_enrollment",
    );

    let report = once(&h.dispatcher()).await;
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(
        h.stub.handed_count(),
        0,
        "a stopped enrollment sends nothing"
    );
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Cancelled);
    assert_eq!(reason(&stored), "enrollment is replied");
}

/// Sending step 0 moves the enrollment to `StepSent` at step 1, due after step 1's
/// delay, in the same store call that marks the message sent.
pub async fn dispatch_advances_the_enrollment_with_the_send(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let (_, enrollment, message) = enrolled(&h).await;
    let report = once(&h.dispatcher()).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Sent);
    let sent_at = stored.sent_at.expect("sent_at is recorded");
    let advanced = ok(
        h.store.get_enrollment(h.ws, enrollment.id).await,
        "get_enrollment",
    );
    assert_eq!(advanced.state, EnrollmentState::StepSent);
    assert_eq!(advanced.current_step, 1);
    assert_eq!(advanced.next_run_at, Some(sent_at + Duration::hours(48)));
    assert_eq!(advanced.version, enrollment.version + 1);
}

/// An open error-severity send-health anomaly on the channel postpones its messages by
/// an hour without using an attempt. The anomaly is the scanner's, from ten sends the
/// provider rejected.
pub async fn dispatch_paused_channel_postpones(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let rejecting = StubChannel::failing(Channel::Email, StubFailure::Permanent)
        .with_clock(Arc::new(h.clock.clone()));
    for _ in 0..10 {
        h.enqueue().await;
    }
    let failing = h.dispatcher_with(&rejecting, WorkspaceSettings::default(), config());
    assert_eq!(
        drain(&failing).await.failed,
        10,
        "the provider rejects them"
    );
    let scanner = AnomalyScanner::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticSettings::default()),
    );
    let raised = scanner
        .scan(h.ws)
        .await
        .unwrap_or_else(|e| panic!("scan: unexpected error {e:?}"));
    assert_eq!(
        (raised.len(), raised[0].value.rule.as_str()),
        (1, FAILURE_RATE),
        "{raised:?}"
    );
    let message = h.enqueue().await;

    let dispatcher = h.dispatcher();
    let report = once(&dispatcher).await;
    assert_eq!(report.postponed, 1, "{report:?}");
    assert_eq!(h.stub.handed_count(), 0, "a paused channel sends nothing");
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Pending);
    assert_eq!(
        stored.not_before,
        h.clock.now() + dispatcher.config().pause_delay()
    );
    assert_eq!(stored.attempts, 0, "a pause gives the attempt back");

    let mut off = WorkspaceSettings::default();
    off.pause_channel_on_error_anomaly = false;
    h.clock.set(stored.not_before);
    let report = once(&h.dispatcher_with(&h.stub, off, config())).await;
    assert_eq!(
        report.sent, 1,
        "without the setting the anomaly pauses nothing"
    );
}

/// A message without a contact fails with a clear reason: every send records an
/// activity about its contact.
pub async fn dispatch_fails_messages_without_a_contact(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue_message(&new_message(h.ws)).await;
    let report = once(&h.dispatcher()).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(h.stub.handed_count(), 0);
    let stored = h.get(message.id).await;
    assert_eq!(stored.status, OutboxStatus::Failed);
    assert!(
        reason(&stored).contains("no contact"),
        "{:?}",
        stored.last_error
    );
}

/// A step's message claimed outside its step's send window (approved late, retried,
/// restarted) waits for the window's next opening with its attempt given back, and
/// goes then.
pub async fn dispatch_outside_the_step_window_waits_for_it(store: Arc<DynStore>) {
    use chrono::{Timelike, Weekday};
    let h = Harness::new(store);
    // A one-hour window two hours from now, every day, in the contact's zone (the
    // fixtures' contacts live in Berlin).
    let berlin = chrono_tz::Europe::Berlin;
    let now = h.clock.now();
    let start = u8::try_from((now.with_timezone(&berlin).hour() + 2) % 24).expect("an hour");
    let window = SendWindow {
        start_hour: start,
        start_minute: 0,
        end_hour: start + 1,
        end_minute: 0,
        weekdays: vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ],
    };
    let (_, _, message) = enrolled_with(&h, Some(window)).await;

    let report = once(&h.dispatcher()).await;
    assert_eq!(report.sent, 0, "{report:?}");
    assert_eq!(h.stub.handed_count(), 0, "nothing goes outside the window");
    let waiting = h.get(message.id).await;
    assert_eq!(waiting.status, OutboxStatus::Pending);
    assert_eq!(
        waiting.attempts, 0,
        "waiting for the window gives the attempt back"
    );
    assert!(waiting.not_before > now, "{:?}", waiting.not_before);
    let opens = waiting.not_before.with_timezone(&berlin);
    assert_eq!(u8::try_from(opens.hour()).ok(), Some(start));
    assert_eq!(opens.minute(), 0, "the window's opening");

    h.clock.set(waiting.not_before);
    let report = once(&h.dispatcher()).await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(h.get(message.id).await.status, OutboxStatus::Sent);
}
